//! Project automation for Tern, in the rust-analyzer manner: one small binary,
//! run as `cargo xtask <command>` through the alias in `.cargo/config.toml`.
//!
//! Commands:
//! - `bench-broker [--seconds N]`: Tern's broker against mosquitto with
//!   `tern bench`, written to BENCHMARKS.md; `--metrics` adds the cost of
//!   the monitoring listener, `--instructions` counts it in instructions.
//! - `ci`: every check CI runs, in order; the README's test command.
//! - `conformance [--against-mosquitto] [--broker HOST:PORT] ...`: the MQTT
//!   conformance suite (crates/tern-conformance) against a broker.
//! - `crash [--runs N] [--against-mosquitto]`: kill -9 a persistent broker
//!   and check that nothing it acknowledged is lost (issue 14).
//! - `examples`: runs tern-client's examples against real brokers.
//! - `fuzz TARGET [--seconds N]`: runs one cargo-fuzz target on the stable toolchain.
//! - `hostile [--case NAME] [--broker tern|mosquitto|both] [--scale smoke|full]`:
//!   attacks by anonymous clients against both brokers, measured (issue 13).
//! - `interop [--filter TEXT] [--against-mosquitto]`: third-party MQTT
//!   clients against our broker, and our client against mosquitto.
//! - `sim --seeds N [--start S] [--clients C] [--faults PROFILE]`: runs
//!   deterministic simulation seeds in parallel (the `tern-sim` binary).
//!
//! Checks that matter also run as ordinary `#[test]`s (see `tidy.rs`), so
//! `cargo test` enforces them too.

mod bench_broker;
mod bench_instructions;
mod ci;
mod cluster;
mod conformance;
mod crash;
mod examples;
mod fuzz;
mod hostile;
mod interop;
mod interop_pki;
mod sim;
#[cfg(test)]
mod tidy;
mod tools;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

Commands:
  bench-broker [--seconds N] [--runs R] [--rumqttd PATH] [--no-write]
                              Tern's broker against Debian's mosquitto (and
                              rumqttd if given) under `tern bench` load
                              (default 10 s per scenario, ~5 minutes);
                              writes the table into BENCHMARKS.md
  bench-broker --metrics [--scrape-connections N] [--scrape-offline M] [--scrape-only]
                              adds Tern with `--metrics` (scraped every 1 s)
                              and the broker CPU of one scrape with N clients
                              connected and M offline sessions
  bench-broker --instructions [--messages N] [--runs R]
                              instructions per message with and without
                              `--metrics`, Tern under cachegrind (valgrind)
  ci [--fuzz-seconds N]       run every check CI runs, in this order (installs
                              the tools it needs when missing):
{ci_steps}  cluster [--smoke] [--seconds N]
                              3 nats-server (clustered, JetStream) and 3 `tern
                              broker --cluster` nodes: cross-node QoS 0/1/2 in
                              3.1.1 and 5, retained from every node, a NATS
                              server killed with SIGKILL mid-stream; prints
                              cross-node and local-only latency (installs
                              Debian's nats-server when missing)
  conformance [--broker HOST:PORT] [--ws URL] [--version 3.1.1|5]
              [--filter TEXT] [--json FILE] [--against-mosquitto] [--write-doc]
                              run the MQTT conformance suite against our broker
                              (started on free ports), mosquitto, or any broker;
                              --write-doc runs ours and mosquitto and writes
                              CONFORMANCE.md
  crash [--runs N] [--messages M] [--seed S] [--against-mosquitto [--autosave-on-changes]]
                              kill -9 a persistent broker at random moments
                              (persistent subscribers offline and online, 3.1.1
                              QoS 1 and 5.0 QoS 2, retained values), restart it,
                              and check nothing acknowledged was lost; prints
                              `N passed, N failed`. Tern's side waits for
                              `tern broker --data-dir` (issue 14)
  examples                    run tern-client's examples against `tern broker`
                              (and the TLS one against mosquitto with TLS),
                              checking what each prints
  fuzz TARGET [--seconds N]   run one fuzz target (default 60 s); TARGET `all`
                              runs each target in turn
  hostile [--case NAME[,NAME…]] [--broker tern|mosquitto|both]
          [--scale smoke|full] [--expect-fail BROKER/CASE[,…]] [--list]
                              attacks by anonymous clients (issue 13) against
                              `tern broker` and mosquitto, each on a fresh
                              broker: RSS growth, a bystander's latency, what
                              the attacker got; known failures in
                              xtask/hostile-expected-failures.txt; writes
                              target/hostile/report.md
  interop [--filter TEXT] [--against-mosquitto]
                              rumqttc, paho-mqtt, MQTT.js (Node and Chromium) and
                              mosquitto_pub/sub against `tern broker` (or, to check
                              the drivers, against mosquitto), and `tern pub/sub`
                              against mosquitto; installs what is missing; prints
                              `N passed, N failed`
  sim --seeds N [--start S] [--clients C] [--steps K] [--faults PROFILE]
                              run deterministic simulation seeds in parallel
                              (PROFILE: none, light (default), heavy); prints
                              `N seeds, N failed` and the failing seeds.
                              Nightly: sim --seeds 100000 --faults heavy
  sim --seed S [--trace]      replay one seed, printing every trace line
  help                        this text
";

/// The help text, with `cargo xtask ci`'s steps from [`ci::STEPS`].
fn help() -> String {
    let steps: String = ci::STEPS
        .iter()
        .map(|(name, what)| format!("    {name:<26}{what}\n"))
        .collect();
    HELP.replace("{ci_steps}", &steps)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench-broker") => bench_broker::command(&args[1..]),
        Some("ci") => ci::command(&args[1..]),
        Some("cluster") => cluster::command(&args[1..]),
        Some("conformance") => conformance::command(&args[1..]),
        Some("crash") => crash::command(&args[1..]),
        Some("examples") => examples::command(&args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("hostile") => hostile::command(&args[1..]),
        Some("interop") => interop::command(&args[1..]),
        Some("sim") => sim::command(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{}", help());
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{}", help())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
