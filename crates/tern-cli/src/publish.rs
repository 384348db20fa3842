//! `tern pub`: publish one message, a file, standard input, or standard
//! input line by line, with `mosquitto_pub`'s flags.

use crate::{
    codec::Failure,
    mqtt::{ConnectArgs, PROPERTIES_HELP, failure, parse_qos, usage},
};
use bytes::Bytes;
use clap::Args;
use std::io::Read;
use tern_client::{Client, Published};
use tern_codec::QoS;
use tokio::io::{AsyncBufReadExt, BufReader};

pub(crate) const ABOUT: &str = "\
Publish MQTT messages, with mosquitto_pub's flags.

Connects, publishes, waits until each message's QoS flow is complete (PUBACK
for QoS 1, PUBCOMP for QoS 2), then disconnects. The message comes from
exactly one of -m, -f, -s, -l or -n. MQTT 5 by default (-V 311 for 3.1.1).

Exit status: 0 when every message was accepted; 1 when the broker is
unreachable, refuses the connection or a message (the reason code and its
name are printed), or a file cannot be read; 2 for bad arguments.";

pub(crate) fn after_help() -> String {
    format!(
        "{PROPERTIES_HELP}

Examples:
  $ tern pub -h broker.local -t sensors/17/temp -m 21.5 -q 1
  $ tern pub -t config/led -m on -r -q 2
  $ tern pub -t config/led -r -n                  # clear the retained message
  $ tail -f app.log | tern pub -t logs/app -l
  $ tern pub -L mqtt://user:secret@broker.local/sensors/17 -m hi
  $ tern pub -t a/b -m x -D publish user-property unit celsius -D publish message-expiry-interval 60"
    )
}

/// Arguments of `tern pub`.
#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Topic to publish to (or the path of an mqtt:// URL given with -L).
    #[arg(short = 't', long)]
    topic: Option<String>,
    /// The message.
    #[arg(short = 'm', long, group = "source")]
    message: Option<String>,
    /// Send the contents of FILE as the message.
    #[arg(short = 'f', long, value_name = "FILE", group = "source")]
    file: Option<std::path::PathBuf>,
    /// Send all of standard input as the message.
    #[arg(short = 's', long = "stdin-file", group = "source")]
    stdin: bool,
    /// Send each line of standard input as a message (blank lines are skipped).
    #[arg(short = 'l', long = "stdin-line", group = "source")]
    lines: bool,
    /// Send an empty message (with -r: clear the retained message).
    #[arg(short = 'n', long = "null-message", group = "source")]
    null: bool,
    /// QoS: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Retain the message.
    #[arg(short = 'r', long)]
    retain: bool,
}

/// Runs `tern pub`.
pub(crate) fn run(args: &PubArgs) -> Result<(), Failure> {
    let connection = args.connect.connection("pub")?;
    let topic = match (&args.topic, &connection.url_topic) {
        (Some(t), _) | (None, Some(t)) => t.clone(),
        (None, None) => return Err(usage("a topic is needed: -t TOPIC".into())),
    };
    if !(args.message.is_some() || args.file.is_some() || args.stdin || args.lines || args.null) {
        return Err(usage(
            "a message is needed: one of -m MESSAGE, -f FILE, -s, -l or -n".into(),
        ));
    }
    // Read a file before connecting, so a bad path costs no connection.
    let whole: Option<Bytes> = if let Some(m) = &args.message {
        Some(Bytes::from(m.clone()))
    } else if let Some(path) = &args.file {
        Some(Bytes::from(std::fs::read(path).map_err(|e| {
            failure(format!("cannot read {}: {e}", path.display()))
        })?))
    } else if args.stdin {
        let mut all = Vec::new();
        std::io::stdin()
            .read_to_end(&mut all)
            .map_err(|e| failure(format!("cannot read standard input: {e}")))?;
        Some(Bytes::from(all))
    } else if args.null {
        Some(Bytes::new())
    } else {
        None // line mode
    };
    let debug = args.connect.debug;
    let options = connection.options.reconnect(None);
    let properties = connection.properties;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let address = options.address.clone();
        let (client, _messages) = Client::connect(options)
            .await
            .map_err(|e| failure(e.to_string()))?;
        if debug {
            eprintln!("tern pub: connected to {address}");
        }
        let publish = |payload: Bytes| {
            client
                .publish(&topic, payload, args.qos, args.retain)
                .properties(properties.publish.clone())
        };
        let report = |result: Result<Published, tern_client::Error>| -> Result<(), Failure> {
            let published = result.map_err(|e| failure(e.to_string()))?;
            if debug {
                eprintln!(
                    "tern pub: published to {topic:?} at QoS {}: {}",
                    published.qos.as_u8(),
                    published.reason_code
                );
            }
            if published.is_success() {
                Ok(())
            } else {
                Err(failure(format!(
                    "the broker refused the message to {topic:?}: {}",
                    published.reason_code
                )))
            }
        };
        let outcome = async {
            match whole {
                Some(payload) => report(publish(payload).await),
                None => {
                    let mut lines = BufReader::new(tokio::io::stdin()).lines();
                    while let Some(line) = lines
                        .next_line()
                        .await
                        .map_err(|e| failure(format!("cannot read standard input: {e}")))?
                    {
                        if !line.is_empty() {
                            report(publish(Bytes::from(line)).await)?;
                        }
                    }
                    Ok(())
                }
            }
        }
        .await;
        // Leave politely even after a refusal (a lost connection makes
        // this a no-op).
        let left = client
            .disconnect()
            .properties(properties.disconnect.clone())
            .await
            .map_err(|e| failure(e.to_string()));
        outcome.and(left)
    })
}
