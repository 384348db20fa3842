//! `cargo xtask conformance`: runs the MQTT conformance suite
//! (crates/tern-conformance) against our broker, mosquitto, or any broker.
//!
//! - no broker flag: builds `tern` and `tern-conformance`, starts
//!   `tern broker` on port 0 (TCP and WebSocket) with tern-testkit's
//!   launcher, which reads the ports from its `--ready-file`, runs the
//!   suite with `skips/tern.toml` (plus the client-side tests of
//!   tern-client against a scripted broker), and stops the broker by PID;
//! - `--against-mosquitto`: the same with Debian's mosquitto (installed with
//!   apt-get when missing), started by the launcher on loopback ports,
//!   and `skips/mosquitto.toml`;
//! - in both cases a second instance of the broker, configured with Maximum
//!   QoS 1 and without retained messages, serves the few statements about
//!   such servers (`--restricted`);
//! - `--broker HOST:PORT [--ws URL]`: a broker that is already running, no
//!   skip list.
//!
//! The suite prints one line per test and ends with `N passed, N failed,
//! N skipped`; the command fails if any test failed. `--write-doc` runs the
//! suite against both ours and mosquitto and writes CONFORMANCE.md.

use crate::tools::{cargo, ensure_apt, root, run, target_dir};
use std::{path::PathBuf, process::Command};
use tern_testkit::Broker;

const USAGE: &str = "usage: cargo xtask conformance [--broker HOST:PORT] [--ws URL] \
[--version 3.1.1|5] [--filter TEXT] [--json FILE] [--threads N] [--against-mosquitto] [--write-doc]";

/// Flags passed through to the suite unchanged.
const PASS_THROUGH: &[&str] = &["--version", "--filter", "--json", "--threads"];

/// The parsed command line.
#[derive(Default)]
struct Options {
    broker: Option<String>,
    ws: Option<String>,
    mosquitto: bool,
    write_doc: bool,
    pass: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--broker" => o.broker = Some(value()?),
            "--ws" => o.ws = Some(value()?),
            "--against-mosquitto" => o.mosquitto = true,
            "--write-doc" => o.write_doc = true,
            flag if PASS_THROUGH.contains(&flag) => {
                let v = value()?;
                o.pass.push(flag.to_string());
                o.pass.push(v);
            }
            other => return Err(format!("unexpected argument `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    build()?;
    if o.write_doc {
        return write_doc(&o);
    }
    if let Some(broker) = &o.broker {
        return suite(broker, o.ws.as_deref(), "broker", None, &o.pass);
    }
    let (running, restricted) = if o.mosquitto {
        (start_mosquitto()?, start_mosquitto_restricted()?)
    } else {
        (start_tern()?, start_tern_restricted()?)
    };
    let mut pass = o.pass.clone();
    pass.extend(["--restricted".to_string(), restricted.tcp().to_string()]);
    let name = running.name().to_string();
    let result = suite(
        &running.tcp().to_string(),
        running.ws_url().as_deref(),
        &name,
        Some(&name),
        &pass,
    );
    drop(running);
    drop(restricted);
    result
}

/// Builds the broker and the suite: debug with all features, as `cargo
/// test --workspace --all-features` builds them, so CI reuses that build.
fn build() -> Result<(), String> {
    run(cargo().args([
        "build",
        "--quiet",
        "-p",
        "tern-cli",
        "-p",
        "tern-conformance",
        "--bins",
        "--all-features",
    ]))
}

fn binary(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// Runs the suite binary against `tcp`.
fn suite(
    tcp: &str,
    ws: Option<&str>,
    name: &str,
    skips: Option<&str>,
    pass: &[String],
) -> Result<(), String> {
    let mut cmd = Command::new(binary("tern-conformance"));
    cmd.args(["run", "--broker", tcp, "--name", name]);
    if let Some(ws) = ws {
        cmd.args(["--ws", ws]);
    }
    if let Some(skips) = skips {
        cmd.args(["--skips", skips]);
    }
    if name == "tern" {
        // The client-side tests (tern-client against a scripted broker)
        // belong with our own run.
        cmd.args(["--client", "yes"]);
    }
    cmd.args(pass);
    run(&mut cmd).map_err(|_| format!("conformance: tests failed against {name}"))
}

/// Where the brokers' configuration and logs go.
fn work_dir() -> PathBuf {
    target_dir().join("conformance")
}

/// Starts `tern broker` on port 0 (TCP and WebSocket).
fn start_tern() -> Result<Broker, String> {
    Broker::tern(binary("tern"))
        .websocket(true)
        .dir(work_dir())
        .name("tern")
        .start()
}

/// The settings of the second, restricted Tern broker (`acl_file` is
/// appended once the ACL file is written).
const TERN_RESTRICTED: &str = "\
# Written by `cargo xtask conformance`: the broker for the statements about
# servers without QoS 2, without retained messages or wildcard
# subscriptions, and refusing some
# publications (access control).
[listeners]
tcp = [\"127.0.0.1:0\"]
ws = []

[limits]
maximum_qos = 1
retain_available = false
wildcard_subscriptions = false
";

/// The restricted brokers' ACL file: anonymous clients may do anything but
/// publish (or receive) under `acl-denied/`. A copy of
/// `tern_conformance::RESTRICTED_ACL` (xtask does not build the suite's
/// crate); `tern-conformance`'s `against_tern` test uses the original.
const RESTRICTED_ACL: &str = "topic readwrite #\ntopic deny acl-denied/#\n";

/// The SCRAM-SHA-256 user of the restricted Tern broker: copies of
/// `tern_conformance::SCRAM_USER` and `SCRAM_PASSWORD`.
const SCRAM_USER: &str = "scram-user";
/// A copy of `tern_conformance::SCRAM_SHA512_USER`: the SCRAM-SHA-512 user.
const SCRAM_SHA512_USER: &str = "scram-user-512";
/// A copy of `tern_conformance::RESTRICTED_CLIENT_ID_PREFIX`: the
/// restricted brokers' `clientid_prefixes`.
const RESTRICTED_CLIENT_ID_PREFIX: &str = "tc";
const SCRAM_PASSWORD: &str = "scram-pass";

/// Writes [`RESTRICTED_ACL`] into the work directory; returns its path.
fn restricted_acl() -> Result<PathBuf, String> {
    let dir = work_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("restricted.acl");
    std::fs::write(&path, RESTRICTED_ACL).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// A password file with the SCRAM-SHA-256 and SCRAM-SHA-512 users the
/// enhanced authentication statements log in as, written by `tern passwd
/// --scram` and `--scram-sha512`.
fn restricted_passwords() -> Result<PathBuf, String> {
    let path = work_dir().join("restricted.passwd");
    run(Command::new(binary("tern"))
        .args(["passwd", "-c", "-b", "--scram"])
        .arg(&path)
        .args([SCRAM_USER, SCRAM_PASSWORD]))?;
    run(Command::new(binary("tern"))
        .args(["passwd", "-b", "--scram-sha512"])
        .arg(&path)
        .args([SCRAM_SHA512_USER, SCRAM_PASSWORD]))?;
    Ok(path)
}

/// Starts a second `tern broker` with Maximum QoS 1, no retain, the ACL,
/// and SCRAM-SHA-256 for one user (anonymous clients still allowed).
fn start_tern_restricted() -> Result<Broker, String> {
    let settings = format!(
        "{TERN_RESTRICTED}\n[security]\nacl_file = {:?}\npassword_file = {:?}\nallow_anonymous = true\n\
         clientid_prefixes = {RESTRICTED_CLIENT_ID_PREFIX:?}\n",
        restricted_acl()?.display().to_string(),
        restricted_passwords()?.display().to_string()
    );
    Broker::tern(binary("tern"))
        .settings(&settings)
        .dir(work_dir())
        .name("tern-restricted")
        .start()
}

/// Starts Debian's mosquitto as the suite runs against it: anonymous
/// clients, a TCP and a WebSocket listener on loopback, no persistence,
/// defaults for everything else (mosquitto 2.0's defaults: QoS 2, retain,
/// wildcard, shared subscriptions and subscription identifiers available).
fn start_mosquitto() -> Result<Broker, String> {
    ensure_apt(&["mosquitto"], &["mosquitto"])?;
    Broker::mosquitto()
        .websocket(true)
        .dir(work_dir())
        .name("mosquitto")
        .start()
}

/// Starts a second mosquitto: Maximum QoS 1 on its listener, no retained
/// messages, and the ACL.
fn start_mosquitto_restricted() -> Result<Broker, String> {
    ensure_apt(&["mosquitto"], &["mosquitto"])?;
    let settings = format!(
        "retain_available false\nacl_file {}\nclientid_prefixes {RESTRICTED_CLIENT_ID_PREFIX}",
        restricted_acl()?.display()
    );
    Broker::mosquitto()
        .settings(&settings)
        .listener_settings("max_qos 1")
        .dir(work_dir())
        .name("mosquitto-restricted")
        .start()
}

/// Runs the suite against ours and mosquitto, then writes CONFORMANCE.md.
fn write_doc(o: &Options) -> Result<(), String> {
    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut reports = Vec::new();
    type Start = fn() -> Result<Broker, String>;
    let brokers: [(Start, Start); 2] = [
        (start_tern, start_tern_restricted),
        (start_mosquitto, start_mosquitto_restricted),
    ];
    for (start, start_restricted) in brokers {
        let running = start()?;
        let restricted = start_restricted()?;
        let name = running.name().to_string();
        let json = dir.join(format!("{name}.json"));
        let mut pass = o.pass.clone();
        pass.extend(["--json".to_string(), json.display().to_string()]);
        pass.extend(["--restricted".to_string(), restricted.tcp().to_string()]);
        // Failures are recorded in the document, not fatal here.
        let result = suite(
            &running.tcp().to_string(),
            running.ws_url().as_deref(),
            &name,
            Some(&name),
            &pass,
        );
        if let Err(e) = result {
            eprintln!("conformance: {e} (recorded in CONFORMANCE.md)");
        }
        drop(running);
        drop(restricted);
        reports.push(json);
    }
    run(Command::new(binary("tern-conformance"))
        .arg("doc")
        .arg("--tern")
        .arg(&reports[0])
        .arg("--mosquitto")
        .arg(&reports[1])
        .arg("--out")
        .arg(root().join("CONFORMANCE.md")))
}
