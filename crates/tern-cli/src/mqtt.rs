//! What `tern pub` and `tern sub` share: mosquitto's connection flags, the
//! `-D` MQTT 5 properties, and turning client errors into messages.
//!
//! The flags follow `mosquitto_pub` / `mosquitto_sub` so habits carry over;
//! every protocol rule is tern-client's and tern-session's.

use crate::codec::Failure;
use bytes::Bytes;
use clap::{ArgAction, Args};
use std::num::{NonZeroU16, NonZeroU32};
use tern_client::{Address, Options, ParsedUrl, TlsOptions};
use tern_codec::{
    ConnectProperties, DisconnectProperties, MqttString, PayloadFormat, ProtocolVersion,
    PublishProperties, QoS, SubscribeProperties, SubscriptionId, UserProperty, Will,
    WillProperties,
};

/// The port `--ws` uses when `-p` is not given (Tern broker's default).
pub(crate) const DEFAULT_WS_PORT: u16 = 8083;
/// The WebSocket path `--ws` connects to.
pub(crate) const DEFAULT_WS_PATH: &str = "/mqtt";

/// Connection flags, as `mosquitto_pub` and `mosquitto_sub` spell them.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub(crate) host: String,
    /// Broker port [default: 1883, or 8083 with --ws].
    #[arg(short = 'p', long)]
    pub(crate) port: Option<u16>,
    // Not a doc comment: rustdoc would read the brackets as links.
    #[arg(short = 'L', long, value_name = "URL", conflicts_with_all = ["host", "port", "ws"],
          help = "The broker as a URL, instead of -h/-p: \
                  mqtt://[user[:password]@]host[:port][/topic] (the path is the topic, as for \
                  mosquitto) or ws://[user[:password]@]host[:port][/path] (the path is the \
                  WebSocket path; give the topic with -t); mqtts:// and wss:// for TLS")]
    pub(crate) url: Option<String>,
    /// Connect over WebSocket (to /mqtt, subprotocol mqtt) instead of TCP.
    #[arg(long)]
    pub(crate) ws: bool,
    /// Client identifier [default: tern-pub-PID / tern-sub-PID].
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub(crate) client_id: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub(crate) password: Option<String>,
    /// Authenticate -u with -P by MQTT 5 enhanced authentication,
    /// SCRAM-SHA-256: the password is not sent, and the broker's proof that
    /// it holds the credential is checked (`tern passwd --scram` writes it).
    #[arg(long)]
    pub(crate) scram: bool,
    /// As --scram, with SCRAM-SHA-512 (`tern passwd --scram-sha512`
    /// writes its credential).
    #[arg(long = "scram-sha512", conflicts_with = "scram")]
    pub(crate) scram_sha512: bool,
    /// Keep alive in seconds (0: off).
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub(crate) keep_alive: u16,
    /// MQTT version: 311 (or mqttv311) or 5 (or mqttv5).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION",
          default_value = "5", value_parser = parse_version)]
    pub(crate) version: ProtocolVersion,
    /// Keep the session when disconnected (Clean Session / Clean Start 0;
    /// MQTT 5: with a session expiry of one day unless -D connect
    /// session-expiry-interval says otherwise). Needs -i.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub(crate) persistent: bool,
    /// Will topic: published by the broker if the connection dies.
    #[arg(long, value_name = "TOPIC")]
    pub(crate) will_topic: Option<String>,
    /// Will payload.
    #[arg(long, value_name = "PAYLOAD", requires = "will_topic")]
    pub(crate) will_payload: Option<String>,
    /// Will QoS.
    #[arg(long, value_name = "QOS", default_value = "0", value_parser = parse_qos, requires = "will_topic")]
    pub(crate) will_qos: QoS,
    /// Retain the will.
    #[arg(long, requires = "will_topic")]
    pub(crate) will_retain: bool,
    /// An MQTT 5 property: -D COMMAND NAME VALUE, or -D COMMAND user-property
    /// KEY VALUE. Repeatable. See the list below.
    #[arg(short = 'D', long = "property", num_args = 3..=4, action = ArgAction::Append,
          value_names = ["COMMAND", "NAME", "VALUE"])]
    pub(crate) properties: Vec<String>,
    /// `properties`, one list per `-D` (see [`ConnectArgs::take_groups`]).
    #[arg(skip)]
    pub(crate) property_groups: Vec<Vec<String>>,
    /// Connect with TLS, trusting the CA certificates in this PEM file
    /// [default port: 8883].
    #[arg(long, value_name = "FILE")]
    pub(crate) cafile: Option<std::path::PathBuf>,
    /// Connect with TLS, trusting the operating system's root certificates
    /// [default port: 8883].
    #[arg(long)]
    pub(crate) tls_use_os_certs: bool,
    /// TLS client certificate (PEM), with --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// TLS client private key (PEM), with --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// TLS: do not check that the broker's certificate names the host
    /// (it must still be signed by a trusted CA). For testing only.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Print connection events to standard error.
    #[arg(short = 'd', long)]
    pub(crate) debug: bool,
    /// Print help (-h is the host, as for mosquitto).
    #[arg(long, action = ArgAction::Help)]
    pub(crate) help: Option<bool>,
}

pub(crate) fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "5" | "mqttv5" => Ok(ProtocolVersion::V5),
        "311" | "mqttv311" => Ok(ProtocolVersion::V3_1_1),
        "31" | "mqttv31" => Err("MQTT 3.1 is not supported by tern's client; use 311 or 5".into()),
        _ => Err(format!("unknown MQTT version {s:?}: use 311 or 5")),
    }
}

pub(crate) fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("QoS must be 0, 1 or 2, not {s:?}"))
}

/// The `-D` properties, by the packet they go into.
#[derive(Debug, Default)]
pub(crate) struct Properties {
    pub(crate) connect: ConnectProperties,
    pub(crate) publish: PublishProperties,
    pub(crate) subscribe: SubscribeProperties,
    pub(crate) disconnect: DisconnectProperties,
    pub(crate) will: WillProperties,
}

/// Help text for `-D`, shared by both commands.
pub(crate) const PROPERTIES_HELP: &str = "\
MQTT 5 properties (-D COMMAND NAME VALUE; user-property takes KEY VALUE):
  connect      session-expiry-interval, receive-maximum, maximum-packet-size,
               topic-alias-maximum, request-problem-information,
               request-response-information, user-property
  publish      content-type, correlation-data, message-expiry-interval,
               payload-format-indicator, response-topic, user-property (tern pub)
  subscribe    subscription-identifier, user-property (tern sub)
  will         content-type, correlation-data, message-expiry-interval,
               payload-format-indicator, response-topic, will-delay-interval,
               user-property
  disconnect   session-expiry-interval, reason-string, user-property
Not supported: authentication-method and authentication-data (enhanced
authentication), publish topic-alias (tern assigns topic aliases itself).";

/// What a connection needs besides the `Options`.
pub(crate) struct Connection {
    pub(crate) options: Options,
    pub(crate) properties: Properties,
    /// The path of an `mqtt://` URL: the topic, as `mosquitto_pub -L` reads it.
    pub(crate) url_topic: Option<String>,
}

impl ConnectArgs {
    /// Reads the `-D` occurrences, each kept whole (clap's derive flattens
    /// them into one list, and a property may take one or two values).
    pub(crate) fn take_groups(&mut self, matches: &clap::ArgMatches) {
        self.property_groups = matches
            .get_occurrences::<String>("properties")
            .map(|groups| groups.map(|g| g.cloned().collect()).collect())
            .unwrap_or_default();
    }

    /// Builds the client options. `command` is "pub" or "sub" (for the
    /// default client id and which `-D` commands apply).
    pub(crate) fn connection(&self, command: &str) -> Result<Connection, Failure> {
        let allowed: &[&str] = match command {
            "pub" => &["connect", "publish", "will", "disconnect"],
            _ => &["connect", "subscribe", "will", "disconnect"],
        };
        if !self.property_groups.is_empty() && !self.version.is_v5() {
            return Err(usage("-D needs MQTT 5 (-V 5)".into()));
        }
        let properties = parse_properties(&self.property_groups, allowed).map_err(usage)?;
        let tls_flag = self.cafile.is_some() || self.tls_use_os_certs;
        let default_port = if tls_flag { 8883 } else { 1883 };
        let (mut address, mut username, mut password, url_topic) = match &self.url {
            Some(url) => {
                let parsed = ParsedUrl::parse(url).map_err(|e| usage(e.to_string()))?;
                let topic = (!parsed.path.is_empty()).then_some(parsed.path);
                (parsed.address, parsed.username, parsed.password, topic)
            }
            None if self.ws => (
                Address::websocket(
                    self.host.clone(),
                    self.port.unwrap_or(DEFAULT_WS_PORT),
                    DEFAULT_WS_PATH,
                ),
                None,
                None,
                None,
            ),
            None => (
                Address::tcp(self.host.clone(), self.port.unwrap_or(default_port)),
                None,
                None,
                None,
            ),
        };
        address.tls |= tls_flag;
        if !address.tls && (self.cert.is_some() || self.insecure) {
            return Err(usage(
                "--cert, --key and --insecure need TLS: --cafile, --tls-use-os-certs or an \
                 mqtts:// URL"
                    .into(),
            ));
        }
        if self.username.is_some() {
            username.clone_from(&self.username);
        }
        if self.password.is_some() {
            password.clone_from(&self.password);
        }
        if password.is_some() && username.is_none() {
            return Err(usage("a password (-P) needs a user name (-u)".into()));
        }
        if self.persistent && self.client_id.is_none() {
            return Err(usage(
                "-c (a persistent session) needs a client id (-i)".into(),
            ));
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("tern-{command}-{}", std::process::id()));
        let address_tls = address.tls;
        let mut options = Options::new(address)
            .client_id(&client_id)
            .map_err(|e| usage(format!("client id: {e}")))?
            .version(self.version)
            .keep_alive(std::time::Duration::from_secs(self.keep_alive.into()))
            .clean_start(!self.persistent);
        if address_tls {
            let mut tls = TlsOptions::new().skip_hostname_check(self.insecure);
            if let Some(ca) = &self.cafile {
                tls = tls.ca_file(ca);
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.client_auth(cert, key);
            }
            options = options.tls(tls);
        }
        let scram = match (self.scram || self.scram_sha512, &username, &password) {
            (false, _, _) => None,
            (true, Some(user), Some(password)) if self.version.is_v5() => Some((user, password)),
            (true, _, _) => {
                return Err(usage(
                    "--scram needs MQTT 5 (-V 5), a user name (-u) and a password (-P)".into(),
                ));
            }
        };
        if let (Some(user), None) = (&username, scram) {
            options = options
                .credentials(user, password.as_deref().map(str::as_bytes))
                .map_err(|e| usage(format!("user name: {e}")))?;
        }
        let mut connect = properties.connect.clone();
        if self.persistent && self.version.is_v5() && connect.session_expiry_interval.is_none() {
            // MQTT 5 ends a session with its connection unless told otherwise.
            connect.session_expiry_interval = Some(86_400);
        }
        options = options.properties(connect);
        if let Some((user, password)) = scram {
            options = if self.scram_sha512 {
                options.scram_sha512(user, password.as_bytes())
            } else {
                options.scram_sha256(user, password.as_bytes())
            }
            .map_err(|e| usage(format!("--scram: {e}")))?;
        }
        if let Some(topic) = &self.will_topic {
            options = options.will(Will {
                topic: string("--will-topic", topic)?,
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default()),
                qos: self.will_qos,
                retain: self.will_retain,
                properties: properties.will.clone(),
            });
        } else if properties.will != WillProperties::default() {
            return Err(usage("-D will ... needs --will-topic".into()));
        }
        Ok(Connection {
            options,
            properties,
            url_topic,
        })
    }
}

/// A usage error: exit status 2, as clap's own.
pub(crate) fn usage(message: String) -> Failure {
    Failure { message, status: 2 }
}

/// A runtime error (the broker, the network, a file): exit status 1.
pub(crate) fn failure(message: String) -> Failure {
    Failure { message, status: 1 }
}

fn string(what: &str, s: &str) -> Result<MqttString, Failure> {
    MqttString::try_from(s).map_err(|e| usage(format!("{what}: {e}")))
}

fn parse_properties(groups: &[Vec<String>], allowed: &[&str]) -> Result<Properties, String> {
    let mut p = Properties::default();
    for group in groups {
        let (command, name) = (group[0].as_str(), group[1].as_str());
        let values = &group[2..];
        let what = format!("-D {command} {name}");
        if !allowed.contains(&command) {
            let known = [
                "connect",
                "publish",
                "subscribe",
                "unsubscribe",
                "will",
                "disconnect",
            ];
            return Err(if known.contains(&command) {
                format!(
                    "-D {command}: this command sends no {} (it accepts {})",
                    command.to_uppercase(),
                    allowed.join(", ")
                )
            } else {
                format!(
                    "-D {command}: unknown command (accepted: {})",
                    allowed.join(", ")
                )
            });
        }
        if name == "user-property" {
            let [key, value] = values else {
                return Err(format!("{what} needs a KEY and a VALUE"));
            };
            let user = UserProperty::new(
                MqttString::try_from(key.as_str()).map_err(|e| format!("{what}: {e}"))?,
                MqttString::try_from(value.as_str()).map_err(|e| format!("{what}: {e}"))?,
            );
            match command {
                "connect" => p.connect.user_properties.push(user),
                "publish" => p.publish.user_properties.push(user),
                "subscribe" => p.subscribe.user_properties.push(user),
                "will" => p.will.user_properties.push(user),
                _ => p.disconnect.user_properties.push(user),
            }
            continue;
        }
        let [value] = values else {
            return Err(format!("{what} takes one VALUE"));
        };
        let value = value.as_str();
        let unsupported = |why: &str| Err(format!("{what}: not supported by tern ({why})"));
        match (command, name) {
            (_, "authentication-method" | "authentication-data") => {
                return unsupported("enhanced authentication");
            }
            ("publish", "topic-alias") => {
                return unsupported("tern assigns topic aliases itself");
            }
            ("connect" | "disconnect", "session-expiry-interval") => {
                let v = Some(number::<u32>(&what, value)?);
                if command == "connect" {
                    p.connect.session_expiry_interval = v;
                } else {
                    p.disconnect.session_expiry_interval = v;
                }
            }
            ("connect", "receive-maximum") => {
                p.connect.receive_maximum = Some(nonzero(&what, value, NonZeroU16::new)?);
            }
            ("connect", "maximum-packet-size") => {
                p.connect.maximum_packet_size = Some(nonzero(&what, value, NonZeroU32::new)?);
            }
            ("connect", "topic-alias-maximum") => {
                p.connect.topic_alias_maximum = Some(number(&what, value)?);
            }
            ("connect", "request-problem-information") => {
                p.connect.request_problem_information = Some(flag(&what, value)?);
            }
            ("connect", "request-response-information") => {
                p.connect.request_response_information = Some(flag(&what, value)?);
            }
            ("publish" | "will", "content-type") => {
                let v = Some(mqtt_string(&what, value)?);
                if command == "will" {
                    p.will.content_type = v;
                } else {
                    p.publish.content_type = v;
                }
            }
            ("publish" | "will", "response-topic") => {
                let v = Some(mqtt_string(&what, value)?);
                if command == "will" {
                    p.will.response_topic = v;
                } else {
                    p.publish.response_topic = v;
                }
            }
            ("publish" | "will", "correlation-data") => {
                let v = Some(Bytes::copy_from_slice(value.as_bytes()));
                if command == "will" {
                    p.will.correlation_data = v;
                } else {
                    p.publish.correlation_data = v;
                }
            }
            ("publish" | "will", "message-expiry-interval") => {
                let v = Some(number::<u32>(&what, value)?);
                if command == "will" {
                    p.will.message_expiry_interval = v;
                } else {
                    p.publish.message_expiry_interval = v;
                }
            }
            ("publish" | "will", "payload-format-indicator") => {
                let v = Some(if flag(&what, value)? {
                    PayloadFormat::Utf8
                } else {
                    PayloadFormat::Unspecified
                });
                if command == "will" {
                    p.will.payload_format_indicator = v;
                } else {
                    p.publish.payload_format_indicator = v;
                }
            }
            ("will", "will-delay-interval") => {
                p.will.will_delay_interval = Some(number(&what, value)?);
            }
            ("subscribe", "subscription-identifier") => {
                let id = number::<u32>(&what, value)?;
                p.subscribe.subscription_identifier = Some(
                    SubscriptionId::new(id)
                        .ok_or_else(|| format!("{what}: must be 1 to 268435455"))?,
                );
            }
            ("disconnect", "reason-string") => {
                p.disconnect.reason_string = Some(mqtt_string(&what, value)?);
            }
            _ => {
                return Err(format!(
                    "{what}: unknown property for {command} (see --help)"
                ));
            }
        }
    }
    Ok(p)
}

fn number<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{what}: {value:?} is not a number in range"))
}

fn nonzero<N: std::str::FromStr, T>(
    what: &str,
    value: &str,
    make: impl Fn(N) -> Option<T>,
) -> Result<T, String> {
    number::<N>(what, value)
        .ok()
        .and_then(make)
        .ok_or_else(|| format!("{what}: {value:?} must be a positive number in range"))
}

fn flag(what: &str, value: &str) -> Result<bool, String> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("{what}: must be 0 or 1, not {value:?}")),
    }
}

fn mqtt_string(what: &str, value: &str) -> Result<MqttString, String> {
    MqttString::try_from(value).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(args: &[&[&str]]) -> Vec<Vec<String>> {
        args.iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    const PUB: &[&str] = &["connect", "publish", "will", "disconnect"];

    #[test]
    fn properties_land_in_their_packets() {
        let p = parse_properties(
            &groups(&[
                &["connect", "session-expiry-interval", "60"],
                &["connect", "user-property", "a", "1"],
                &["publish", "content-type", "text/plain"],
                &["publish", "message-expiry-interval", "10"],
                &["publish", "payload-format-indicator", "1"],
                &["will", "will-delay-interval", "5"],
                &["disconnect", "reason-string", "bye"],
            ]),
            PUB,
        )
        .unwrap();
        assert_eq!(p.connect.session_expiry_interval, Some(60));
        assert_eq!(p.connect.user_properties[0].key, "a");
        assert_eq!(p.publish.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.publish.message_expiry_interval, Some(10));
        assert_eq!(
            p.publish.payload_format_indicator,
            Some(PayloadFormat::Utf8)
        );
        assert_eq!(p.will.will_delay_interval, Some(5));
        assert_eq!(p.disconnect.reason_string.as_deref(), Some("bye"));
    }

    #[test]
    fn bad_properties_are_named() {
        for (g, expected) in [
            (
                &["connect", "authentication-method", "x"][..],
                "not supported by tern (enhanced authentication)",
            ),
            (
                &["publish", "topic-alias", "1"],
                "tern assigns topic aliases itself",
            ),
            (
                &["publish", "session-expiry-interval", "1"],
                "unknown property for publish",
            ),
            (
                &["connect", "session-expiry-interval", "-1"],
                "is not a number",
            ),
            (
                &["connect", "receive-maximum", "0"],
                "must be a positive number",
            ),
            (
                &["publish", "user-property", "k"],
                "needs a KEY and a VALUE",
            ),
            (&["publish", "content-type", "a", "b"], "takes one VALUE"),
            (
                &["subscribe", "user-property", "k", "v"],
                "this command sends no SUBSCRIBE",
            ),
            (&["frobnicate", "x", "y"], "unknown command"),
        ] {
            let e = parse_properties(&groups(&[g]), PUB).unwrap_err();
            assert!(e.contains(expected), "{g:?}: {e}");
        }
    }
}
