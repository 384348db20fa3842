//! `tern sub`: subscribe and print what arrives, with `mosquitto_sub`'s
//! flags and a subset of its `-F` output format.

use crate::{
    codec::Failure,
    mqtt::{ConnectArgs, PROPERTIES_HELP, Properties, failure, parse_qos, usage},
};
use clap::Args;
use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tern_client::{Client, Message, State};
use tern_codec::QoS;

pub(crate) const ABOUT: &str = "\
Subscribe to MQTT topics and print the messages, with mosquitto_sub's flags.

Prints each message's payload on its own line (-v: the topic, a space, the
payload; -F: a format of your own). Reconnects if the connection is lost,
resubscribing if the broker lost the session. MQTT 5 by default (-V 311 for
3.1.1).

Exit status: 0 after -C messages, or on end of input; 1 when the broker is
unreachable, refuses the connection or every subscription (reason codes and
their names are printed), or the connection ends for good; 27 when -W
seconds pass first (as mosquitto_sub); 2 for bad arguments.";

pub(crate) fn after_help() -> String {
    format!(
        "-F FORMAT (a subset of mosquitto_sub's; a newline follows unless -N):
  %t topic          %p payload        %x payload as hex   %l payload length
  %q QoS            %r retain (0/1)   %I time, ISO 8601   %U Unix time (s.ns)
  %j the message as JSON: tst, topic, qos, retain, payloadlen, payload
     (payload_hex instead when the payload is not UTF-8)
  %C content type   %E message expiry %R response topic   %S subscription ids
  %P user properties as key:value, space separated
  %% a percent sign; \\n \\t \\r \\\\ \\0 \\e \\a \\v escapes
Not supported: %m %A %D %F %J %X %T and @-prefixed date formats.

{PROPERTIES_HELP}

Examples:
  $ tern sub -h broker.local -t 'sensors/#' -v
  $ tern sub -t status -C 1 -W 5                # the retained status, or give up
  $ tern sub -t 'logs/#' -F '%I %t %p'
  $ tern sub -t a -t b -q 2 -c -i archiver      # a persistent session"
    )
}

/// Arguments of `tern sub`.
#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Topic filter to subscribe to; repeatable.
    #[arg(short = 't', long = "topic", value_name = "FILTER")]
    topics: Vec<String>,
    /// Maximum QoS of the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Print the topic before the payload.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Exit after this many messages.
    #[arg(short = 'C', long, value_name = "COUNT")]
    count: Option<u64>,
    /// Exit with status 27 after this many seconds.
    #[arg(short = 'W', long = "timeout", value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Output format (see below).
    #[arg(short = 'F', long = "format", value_name = "FORMAT", value_parser = Format::parse)]
    format: Option<Format>,
    /// No newline after each message.
    #[arg(short = 'N', long = "no-eol")]
    no_eol: bool,
    /// Skip retained messages (those the broker had before the subscription).
    #[arg(short = 'R', long = "no-retained")]
    no_retained: bool,
}

/// Exit status when `-W` expires (ETIMEDOUT, as `mosquitto_sub`).
const TIMED_OUT: u8 = 27;

/// Runs `tern sub`.
pub(crate) fn run(args: &SubArgs) -> Result<(), Failure> {
    let connection = args.connect.connection("sub")?;
    let mut topics = args.topics.clone();
    if topics.is_empty() {
        topics.extend(connection.url_topic.clone());
    }
    if topics.is_empty() {
        return Err(usage("a topic filter is needed: -t FILTER".into()));
    }
    let debug = args.connect.debug;
    let options = connection.options;
    let properties = connection.properties;
    let format = match &args.format {
        Some(f) => f.clone(),
        None if args.verbose => Format(vec![Piece::Topic, Piece::Text(" ".into()), Piece::Payload]),
        None => Format(vec![Piece::Payload]),
    };
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let address = options.address.clone();
        let (client, mut messages) = Client::connect(options)
            .await
            .map_err(|e| failure(e.to_string()))?;
        if debug {
            eprintln!("tern sub: connected to {address}");
            tokio::spawn(report_states(client.state_changes()));
        }
        let outcome = receive(
            &client,
            &mut messages,
            args,
            &topics,
            &properties,
            &format,
            deadline,
        )
        .await;
        // Leave politely whatever happened (a closed client makes this a no-op).
        let left = client
            .disconnect()
            .properties(properties.disconnect.clone())
            .await
            .map_err(|e| failure(e.to_string()));
        outcome.and(left)
    })
}

/// Subscribes, then prints messages until `-C`, `-W` or the end.
async fn receive(
    client: &Client,
    messages: &mut tern_client::Messages,
    args: &SubArgs,
    topics: &[String],
    properties: &Properties,
    format: &Format,
    deadline: Option<tokio::time::Instant>,
) -> Result<(), Failure> {
    let debug = args.connect.debug;
    let eol = !args.no_eol;
    let filters: Vec<_> = topics.iter().map(|t| (t.as_str(), args.qos)).collect();
    let suback = client
        .subscribe(filters)
        .properties(properties.subscribe.clone())
        .await
        .map_err(|e| failure(e.to_string()))?;
    let mut granted = 0;
    for (topic, code) in topics.iter().zip(&suback.reason_codes) {
        if code.is_success() {
            granted += 1;
            if debug {
                eprintln!("tern sub: subscribed to {topic:?}: {code}");
            }
        } else {
            eprintln!("subscription to {topic:?} refused: {code}");
        }
    }
    if granted == 0 {
        return Err(failure("every subscription was refused".into()));
    }
    let mut received = 0;
    let stdout = std::io::stdout();
    loop {
        if args.count.is_some_and(|c| received >= c) {
            return Ok(());
        }
        let next = tokio::select! {
            m = messages.recv() => m,
            () = sleep_until(deadline) => {
                return Err(Failure {
                    message: String::new(),
                    status: TIMED_OUT,
                });
            }
        };
        let Some(message) = next else {
            // The client closed for good; say why.
            return Err(failure(match client.state() {
                State::Closed { error: Some(e) } => e.to_string(),
                _ => "the connection ended".into(),
            }));
        };
        if args.no_retained && message.retain {
            continue;
        }
        let mut out = format.render(&message, SystemTime::now());
        if eol {
            out.push(b'\n');
        }
        let mut lock = stdout.lock();
        // A closed pipe (`tern sub ... | head -1`) ends the program quietly.
        if lock.write_all(&out).and_then(|()| lock.flush()).is_err() {
            return Ok(());
        }
        received += 1;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// With `-d`: reconnections and their causes, on standard error.
async fn report_states(mut states: tokio::sync::watch::Receiver<State>) {
    states.borrow_and_update(); // `run` reported the first connection
    while states.changed().await.is_ok() {
        let line = match &*states.borrow_and_update() {
            State::Connecting => "connecting".to_string(),
            State::Connected {
                session_present, ..
            } => format!("connected (session present: {session_present})"),
            State::Disconnected { error, retry_in } => {
                format!("disconnected: {error}; retrying in {retry_in:?}")
            }
            State::Closed { error: Some(e) } => format!("closed: {e}"),
            State::Closed { error: None } => "closed".to_string(),
            _ => continue,
        };
        eprintln!("tern sub: {line}");
    }
}

/// A parsed `-F` format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Format(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(Vec<u8>),
    Topic,
    Payload,
    PayloadHex,
    Length,
    Qos,
    Retain,
    IsoTime,
    UnixTime,
    Json,
    ContentType,
    MessageExpiry,
    ResponseTopic,
    SubscriptionIds,
    UserProperties,
}

impl Format {
    fn parse(s: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let piece = match chars.next() {
                        Some('%') => {
                            text.push(b'%');
                            continue;
                        }
                        Some('t') => Piece::Topic,
                        Some('p') => Piece::Payload,
                        Some('x') => Piece::PayloadHex,
                        Some('l') => Piece::Length,
                        Some('q') => Piece::Qos,
                        Some('r') => Piece::Retain,
                        Some('I') => Piece::IsoTime,
                        Some('U') => Piece::UnixTime,
                        Some('j') => Piece::Json,
                        Some('C') => Piece::ContentType,
                        Some('E') => Piece::MessageExpiry,
                        Some('R') => Piece::ResponseTopic,
                        Some('S') => Piece::SubscriptionIds,
                        Some('P') => Piece::UserProperties,
                        Some(other) => {
                            return Err(format!("%{other} is not supported (see --help)"));
                        }
                        None => return Err("the format ends with a lone %".into()),
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                '\\' => text.push(match chars.next() {
                    Some('n') => b'\n',
                    Some('t') => b'\t',
                    Some('r') => b'\r',
                    Some('\\') => b'\\',
                    Some('0') => 0,
                    Some('a') => 7,
                    Some('e') => 27,
                    Some('v') => 11,
                    Some(other) => return Err(format!("\\{other} is not a known escape")),
                    None => return Err("the format ends with a lone \\".into()),
                }),
                c => {
                    let mut buf = [0; 4];
                    text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format(pieces))
    }

    fn render(&self, m: &Message, now: SystemTime) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Topic => out.extend_from_slice(m.topic.as_bytes()),
                Piece::Payload => out.extend_from_slice(&m.payload),
                Piece::PayloadHex => {
                    for b in m.payload.iter() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                }
                Piece::Length => out.extend_from_slice(m.payload.len().to_string().as_bytes()),
                Piece::Qos => out.extend_from_slice(m.qos.as_u8().to_string().as_bytes()),
                Piece::Retain => out.push(if m.retain { b'1' } else { b'0' }),
                Piece::IsoTime => out.extend_from_slice(iso8601(now, false).as_bytes()),
                Piece::UnixTime => {
                    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                    out.extend_from_slice(
                        format!("{}.{:09}", d.as_secs(), d.subsec_nanos()).as_bytes(),
                    );
                }
                Piece::Json => {
                    // Written by hand to keep mosquitto's key order.
                    let quoted = |s: &str| serde_json::Value::from(s).to_string();
                    let payload = match std::str::from_utf8(&m.payload) {
                        Ok(text) => format!("\"payload\":{}", quoted(text)),
                        Err(_) => {
                            let hex: String =
                                m.payload.iter().map(|b| format!("{b:02x}")).collect();
                            format!("\"payload_hex\":\"{hex}\"")
                        }
                    };
                    let json = format!(
                        "{{\"tst\":\"{}\",\"topic\":{},\"qos\":{},\"retain\":{},\"payloadlen\":{},{payload}}}",
                        iso8601(now, true),
                        quoted(m.topic.as_str()),
                        m.qos.as_u8(),
                        u8::from(m.retain),
                        m.payload.len(),
                    );
                    out.extend_from_slice(json.as_bytes());
                }
                Piece::ContentType => {
                    if let Some(c) = &m.properties.content_type {
                        out.extend_from_slice(c.as_bytes());
                    }
                }
                Piece::MessageExpiry => {
                    if let Some(e) = m.properties.message_expiry_interval {
                        out.extend_from_slice(e.to_string().as_bytes());
                    }
                }
                Piece::ResponseTopic => {
                    if let Some(r) = &m.properties.response_topic {
                        out.extend_from_slice(r.as_bytes());
                    }
                }
                Piece::SubscriptionIds => {
                    let ids: Vec<String> = m
                        .properties
                        .subscription_identifiers
                        .iter()
                        .map(|s| s.get().to_string())
                        .collect();
                    out.extend_from_slice(ids.join(" ").as_bytes());
                }
                Piece::UserProperties => {
                    let props: Vec<String> = m
                        .properties
                        .user_properties
                        .iter()
                        .map(|p| format!("{}:{}", p.key, p.value))
                        .collect();
                    out.extend_from_slice(props.join(" ").as_bytes());
                }
            }
        }
        out
    }
}

/// `2024-05-06T22:12:00Z` (or with microseconds), in UTC.
fn iso8601(t: SystemTime, micros: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if micros {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
            d.subsec_micros()
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(iso8601(at(0), false), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(at(951_782_400), false), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(at(1_715_033_520), false), "2024-05-06T22:12:00Z");
        assert_eq!(
            iso8601(at(1_715_033_520) + Duration::from_micros(42), true),
            "2024-05-06T22:12:00.000042Z"
        );
    }

    #[test]
    fn formats_render() {
        let mut publish = tern_codec::Publish {
            topic: tern_codec::MqttString::from_static("a/b"),
            qos: QoS::AtLeastOnce,
            packet_id: tern_codec::PacketId::new(1),
            retain: true,
            payload: bytes::Bytes::from_static(b"hi \"there\""),
            ..Default::default()
        };
        publish
            .properties
            .user_properties
            .push(tern_codec::UserProperty::new(
                tern_codec::MqttString::from_static("k"),
                tern_codec::MqttString::from_static("v"),
            ));
        let m = Message::from(publish.clone());
        let now = UNIX_EPOCH + Duration::from_secs(1_715_033_520);
        let render =
            |f: &str| String::from_utf8(Format::parse(f).unwrap().render(&m, now)).unwrap();
        assert_eq!(
            render("%t|%q|%r|%l|%P|%x"),
            "a/b|1|1|10|k:v|68692022746865726522"
        );
        assert_eq!(render("%I %U"), "2024-05-06T22:12:00Z 1715033520.000000000");
        assert!(render("%j").starts_with(r#"{"tst":"2024-05-06T22:12:00.000000Z","topic":"a/b","#));
        let json: serde_json::Value = serde_json::from_str(&render("%j")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"tst": "2024-05-06T22:12:00.000000Z", "topic": "a/b", "qos": 1,
                "retain": 1, "payloadlen": 10, "payload": "hi \"there\""})
        );
        publish.payload = bytes::Bytes::from_static(&[0xff, 0x00]);
        let m = Message::from(publish);
        let json: serde_json::Value =
            serde_json::from_slice(&Format::parse("%j").unwrap().render(&m, now)).unwrap();
        assert_eq!(json["payload_hex"], "ff00");
    }

    #[test]
    fn formats() {
        assert!(
            Format::parse("%z")
                .unwrap_err()
                .contains("%z is not supported")
        );
        assert!(Format::parse("50%").is_err());
        assert!(Format::parse("\\q").is_err());
        assert_eq!(
            Format::parse("a%%b\\n").unwrap(),
            Format(vec![Piece::Text(b"a%b\n".to_vec())])
        );
    }
}
