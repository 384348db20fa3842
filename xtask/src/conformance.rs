//! `cargo xtask conformance`: runs the MQTT conformance suite
//! (crates/tern-conformance) against our broker, mosquitto, or any broker.
//!
//! - no broker flag: builds `tern` and `tern-conformance`, starts
//!   `tern broker --tcp 127.0.0.1:0 --ws 127.0.0.1:0`, reads the ports from
//!   its `listening ...` lines, runs the suite with `skips/tern.toml` (plus
//!   the client-side tests of tern-client against a scripted broker), and
//!   stops the broker by PID;
//! - `--against-mosquitto`: the same with Debian's mosquitto (installed with
//!   apt-get when missing), started on free loopback ports with the config
//!   written by [`mosquitto_config`], and `skips/mosquitto.toml`;
//! - in both cases a second instance of the broker, configured with Maximum
//!   QoS 1 and without retained messages, serves the few statements about
//!   such servers (`--restricted`);
//! - `--broker HOST:PORT [--ws URL]`: a broker that is already running, no
//!   skip list.
//!
//! The suite prints one line per test and ends with `N passed, N failed,
//! N skipped`; the command fails if any test failed. `--write-doc` runs the
//! suite against both ours and mosquitto and writes CONFORMANCE.md.

use crate::tools::{cargo, ensure_apt, root, run, which};
use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

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
    pass.extend(["--restricted".to_string(), restricted.tcp.to_string()]);
    let result = suite(
        &running.tcp.to_string(),
        running.ws.as_deref(),
        running.name,
        Some(running.name),
        &pass,
    );
    running.stop();
    restricted.stop();
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

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
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

/// A broker this command started.
struct Running {
    name: &'static str,
    child: Child,
    tcp: SocketAddr,
    ws: Option<String>,
}

impl Running {
    /// Stops the broker by PID: SIGTERM, then SIGKILL after 5 s.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(name: &str) -> Result<std::fs::File, String> {
    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts `tern broker` on port 0 (TCP and WebSocket).
fn start_tern() -> Result<Running, String> {
    spawn_tern(
        &["broker", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"],
        "tern",
        true,
    )
}

/// The settings of the second, restricted Tern broker.
const TERN_RESTRICTED: &str = "\
# Written by `cargo xtask conformance`: the broker for the statements about
# servers without QoS 2 and without retained messages.
[listeners]
tcp = [\"127.0.0.1:0\"]
ws = []

[limits]
maximum_qos = 1
retain_available = false
";

/// Starts a second `tern broker` with Maximum QoS 1 and no retain.
fn start_tern_restricted() -> Result<Running, String> {
    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("tern-restricted.toml");
    std::fs::write(&config, TERN_RESTRICTED).map_err(|e| e.to_string())?;
    let config = config.display().to_string();
    spawn_tern(&["broker", "--config", &config], "tern-restricted", false)
}

/// Starts `tern` with `args` and reads its listening lines.
fn spawn_tern(args: &[&str], log: &str, want_ws: bool) -> Result<Running, String> {
    let mut child = Command::new(binary("tern"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log_file(log)?)
        .spawn()
        .map_err(|e| format!("cannot start tern broker: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut tcp = None;
    let mut ws = None;
    while tcp.is_none() || (want_ws && ws.is_none()) {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            return Err("tern broker exited before printing its listeners".into());
        };
        if let Some(addr) = line.strip_prefix("listening tcp ") {
            tcp = Some(
                addr.parse::<SocketAddr>()
                    .map_err(|e| format!("{line}: {e}"))?,
            );
        } else if let Some(addr) = line.strip_prefix("listening ws ") {
            ws = Some(format!("ws://{addr}/mqtt"));
        }
    }
    // Keep draining stdout so the broker never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let tcp = tcp.ok_or("no tcp listener")?;
    eprintln!("conformance: {log} broker (pid {}) on {tcp}", child.id());
    Ok(Running {
        name: "tern",
        child,
        tcp,
        ws,
    })
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// The mosquitto configuration the suite runs against: anonymous clients, a
/// TCP and a WebSocket listener on loopback, no persistence, defaults for
/// everything else (mosquitto 2.0's defaults: QoS 2, retain, wildcard,
/// shared subscriptions and subscription identifiers available).
pub(crate) fn mosquitto_config(tcp: u16, ws: u16) -> String {
    format!(
        "# Written by `cargo xtask conformance --against-mosquitto`.\n\
         allow_anonymous true\n\
         persistence false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         listener {tcp} 127.0.0.1\n\
         listener {ws} 127.0.0.1\n\
         protocol websockets\n"
    )
}

/// The config of the second, restricted mosquitto: Maximum QoS 1 on its
/// listener, no retained messages.
pub(crate) fn mosquitto_restricted_config(tcp: u16) -> String {
    format!(
        "# Written by `cargo xtask conformance --against-mosquitto`.\n\
         allow_anonymous true\n\
         persistence false\n\
         retain_available false\n\
         log_dest stderr\n\
         log_type error\n\
         listener {tcp} 127.0.0.1\n\
         max_qos 1\n"
    )
}

/// Starts Debian's mosquitto on free loopback ports.
fn start_mosquitto() -> Result<Running, String> {
    let (tcp, ws) = (free_port()?, free_port()?);
    spawn_mosquitto("mosquitto", &mosquitto_config(tcp, ws), tcp, Some(ws))
}

/// Starts a second mosquitto with Maximum QoS 1 and no retain.
fn start_mosquitto_restricted() -> Result<Running, String> {
    let tcp = free_port()?;
    spawn_mosquitto(
        "mosquitto-restricted",
        &mosquitto_restricted_config(tcp),
        tcp,
        None,
    )
}

/// Starts mosquitto with `config_text` and waits for its TCP listener.
fn spawn_mosquitto(
    name: &str,
    config_text: &str,
    tcp_port: u16,
    ws_port: Option<u16>,
) -> Result<Running, String> {
    ensure_apt(&["mosquitto"], &["mosquitto"])?;
    let program = if which("mosquitto") {
        PathBuf::from("mosquitto")
    } else {
        PathBuf::from("/usr/sbin/mosquitto")
    };
    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join(format!("{name}.conf"));
    std::fs::write(&config, config_text).map_err(|e| e.to_string())?;
    let mut child = Command::new(&program)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log_file(name)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let tcp: SocketAddr = ([127, 0, 0, 1], tcp_port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(tcp).is_err() {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            return Err(format!(
                "mosquitto did not listen on {tcp} (log: {})",
                dir.join(format!("{name}.log")).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("conformance: {name} (pid {}) on {tcp}", child.id());
    Ok(Running {
        name: "mosquitto",
        child,
        tcp,
        ws: ws_port.map(|p| format!("ws://127.0.0.1:{p}/mqtt")),
    })
}

/// Runs the suite against ours and mosquitto, then writes CONFORMANCE.md.
fn write_doc(o: &Options) -> Result<(), String> {
    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut reports = Vec::new();
    type Start = fn() -> Result<Running, String>;
    let brokers: [(Start, Start); 2] = [
        (start_tern, start_tern_restricted),
        (start_mosquitto, start_mosquitto_restricted),
    ];
    for (start, start_restricted) in brokers {
        let running = start()?;
        let restricted = start_restricted()?;
        let json = dir.join(format!("{}.json", running.name));
        let mut pass = o.pass.clone();
        pass.extend(["--json".to_string(), json.display().to_string()]);
        pass.extend(["--restricted".to_string(), restricted.tcp.to_string()]);
        // Failures are recorded in the document, not fatal here.
        let result = suite(
            &running.tcp.to_string(),
            running.ws.as_deref(),
            running.name,
            Some(running.name),
            &pass,
        );
        if let Err(e) = result {
            eprintln!("conformance: {e} (recorded in CONFORMANCE.md)");
        }
        running.stop();
        restricted.stop();
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
