//! Project automation for Tern, in the rust-analyzer manner: one small binary,
//! run as `cargo xtask <command>` through the alias in `.cargo/config.toml`.
//!
//! Commands:
//! - `ci`: every check CI runs, in order; the README's test command.
//! - `conformance [--against-mosquitto] [--broker HOST:PORT] ...`: the MQTT
//!   conformance suite (crates/tern-conformance) against a broker.
//! - `fuzz TARGET [--seconds N]`: runs one cargo-fuzz target on the stable toolchain.
//! - `sim --seeds N [--start S] [--clients C] [--faults PROFILE]`: runs
//!   deterministic simulation seeds in parallel (the `tern-sim` binary).
//!
//! Checks that matter also run as ordinary `#[test]`s (see `tidy.rs`), so
//! `cargo test` enforces them too.

mod ci;
mod conformance;
mod fuzz;
mod sim;
#[cfg(test)]
mod tidy;
mod tools;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

Commands:
  ci                          run every check CI runs (fmt, clippy, tests, docs,
                              packaging, cargo-deny, fuzz smoke); installs the
                              tools it needs when missing
  conformance [--broker HOST:PORT] [--ws URL] [--version 3.1.1|5]
              [--filter TEXT] [--json FILE] [--against-mosquitto] [--write-doc]
                              run the MQTT conformance suite against our broker
                              (started on free ports), mosquitto, or any broker;
                              --write-doc runs ours and mosquitto and writes
                              CONFORMANCE.md
  fuzz TARGET [--seconds N]   run one fuzz target (default 60 s); TARGET `all`
                              runs each target in turn
  sim --seeds N [--start S] [--clients C] [--steps K] [--faults PROFILE]
                              run deterministic simulation seeds in parallel
                              (PROFILE: none, light (default), heavy); prints
                              `N seeds, N failed` and the failing seeds.
                              Nightly: sim --seeds 100000 --faults heavy
  sim --seed S [--trace]      replay one seed, printing every trace line
  help                        this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::command(&args[1..]),
        Some("conformance") => conformance::command(&args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("sim") => sim::command(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
