//! `tern`: the Tern MQTT command-line tool.
//!
//! `broker` runs the MQTT broker; `decode` and `encode` are debugging tools
//! for people reading captures. `pub`, `sub` and `bench` join the [`Command`]
//! enum as their crates land, each in its own module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod broker;
mod codec;

const ABOUT: &str = "\
Tern's MQTT command-line tool.

`broker` runs an MQTT 3.1.1 and 5.0 broker over TCP and WebSocket.
`decode` and `encode` are debugging tools for people reading captures: they
turn the hex of MQTT 3.1, 3.1.1 and 5.0 packets into readable JSON and back,
and say which rule a bad packet breaks and at which byte.";

const EXAMPLE: &str = "\
Example:
  $ tern broker
  $ tern decode --protocol 4 '30 0c 00 05 61 2f 62 2f 63 68 65 6c 6c 6f'
  $ tern encode '{\"type\":\"PINGREQ\"}'
  c0 00

Run `tern help broker` or `tern help decode` for more.";

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
    /// Run the MQTT broker (TCP 127.0.0.1:1883, WebSocket 127.0.0.1:8083/mqtt).
    #[command(long_about = broker::ABOUT, after_help = broker::EXAMPLE)]
    Broker(broker::BrokerArgs),
    /// Decode MQTT packets from hex into JSON.
    #[command(long_about = codec::DECODE_ABOUT, after_help = codec::DECODE_EXAMPLE)]
    Decode(codec::DecodeArgs),
    /// Encode MQTT packets from JSON into hex.
    #[command(long_about = codec::ENCODE_ABOUT, after_help = codec::ENCODE_EXAMPLE)]
    Encode(codec::EncodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Broker(args) => broker::run(&args),
        Command::Decode(args) => codec::decode(&args),
        Command::Encode(args) => codec::encode(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
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
