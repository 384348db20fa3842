//! `tern`: the Tern MQTT command-line tool.
//!
//! `broker` runs the MQTT broker; `pub` and `sub` are MQTT clients with
//! mosquitto_pub's and mosquitto_sub's flags; `decode` and `encode` are
//! debugging tools for people reading captures. Each command lives in its
//! own module.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod broker;
mod codec;
mod mqtt;
mod passwd;
mod publish;
mod store;
mod subscribe;

const ABOUT: &str = "\
Tern's MQTT command-line tool.

`broker` runs an MQTT 3.1.1 and 5.0 broker over TCP and WebSocket.
`decode` and `encode` are debugging tools for people reading captures: they
turn the hex of MQTT 3.1, 3.1.1 and 5.0 packets into readable JSON and back,
and say which rule a bad packet breaks and at which byte.

`pub` and `sub` publish and subscribe, with mosquitto_pub's and
mosquitto_sub's flags (so -h is the host; use --help for help).

`bench` load-tests a broker (pub, sub, conn, pubsub), like emqtt-bench.

`passwd` manages a password file, as mosquitto_passwd does.

`store check` and `store dump` inspect a broker's data directory.";

const EXAMPLE: &str = "\
Example:
  $ tern broker
  $ tern decode --protocol 4 '30 0c 00 05 61 2f 62 2f 63 68 65 6c 6c 6f'
  $ tern encode '{\"type\":\"PINGREQ\"}'
  c0 00
  $ tern sub -h broker.local -t 'sensors/#' -v
  $ tern pub -h broker.local -t sensors/17/temp -m 21.5 -q 1
  $ tern bench pubsub -h broker.local -c 4 -S 1 -q 1 --rate 5000

Run `tern help COMMAND` for more.";

/// The Tern MQTT tool.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about = ABOUT, after_help = EXAMPLE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `tern` can do. Each subcommand lives in its own module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Load-test a broker: publishers, subscribers, idle connections.
    #[command(long_about = bench::ABOUT, after_help = bench::EXAMPLE,
              disable_help_flag = true)]
    Bench(bench::BenchArgs),
    /// Run the MQTT broker (TCP 127.0.0.1:1883, WebSocket 127.0.0.1:8083/mqtt).
    #[command(long_about = broker::ABOUT, after_help = broker::EXAMPLE)]
    Broker(broker::BrokerArgs),
    /// Decode MQTT packets from hex into JSON.
    #[command(long_about = codec::DECODE_ABOUT, after_help = codec::DECODE_EXAMPLE)]
    Decode(codec::DecodeArgs),
    /// Encode MQTT packets from JSON into hex.
    #[command(long_about = codec::ENCODE_ABOUT, after_help = codec::ENCODE_EXAMPLE)]
    Encode(codec::EncodeArgs),
    /// Manage a password file (flags and format as mosquitto_passwd).
    #[command(long_about = passwd::ABOUT, after_help = passwd::EXAMPLE)]
    Passwd(passwd::PasswdArgs),
    /// Publish MQTT messages (flags as mosquitto_pub).
    #[command(long_about = publish::ABOUT, after_help = publish::after_help(),
              disable_help_flag = true)]
    Pub(publish::PubArgs),
    /// Check or print a broker's data directory (tern-store).
    #[command(long_about = store::ABOUT, after_help = store::EXAMPLE)]
    Store(store::StoreArgs),
    /// Subscribe and print messages (flags as mosquitto_sub).
    #[command(long_about = subscribe::ABOUT, after_help = subscribe::after_help(),
              disable_help_flag = true)]
    Sub(subscribe::SubArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub_matches = matches.subcommand().map(|(_, m)| m);
    let outcome = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Broker(args) => broker::run(&args),
        Command::Decode(args) => codec::decode(&args),
        Command::Encode(args) => codec::encode(&args),
        Command::Passwd(args) => passwd::run(&args),
        Command::Pub(mut args) => {
            if let Some(m) = sub_matches {
                args.connect.take_groups(m);
            }
            publish::run(&args)
        }
        Command::Store(args) => store::run(&args),
        Command::Sub(mut args) => {
            if let Some(m) = sub_matches {
                args.connect.take_groups(m);
            }
            subscribe::run(&args)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("{}", failure.message);
            }
            ExitCode::from(failure.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
