//! `cargo xtask interop`: real third-party MQTT clients against `tern
//! broker`, and Tern's client against Debian's mosquitto broker.
//!
//! Every pairing runs the same five checks, in MQTT 3.1.1 and 5: a message
//! at QoS 0, 1 and 2 from a publisher to a subscriber (both of the client
//! under test), a retained message that a later subscriber receives with
//! the retain flag set, and a will that the broker publishes when the will
//! client's connection dies without DISCONNECT (the client is killed, or
//! its socket closed under it). rumqttc, paho-mqtt and MQTT.js also check a
//! persistent session (the QoS 1 message published while the client was
//! away arrives on reconnect, with session present), a 300 kB payload, a
//! publisher of the other protocol version and (paho-mqtt, MQTT.js) MQTT 5
//! publish properties end to end; MQTT.js also unsubscribing and, in MQTT
//! 5, shared subscriptions, No Local, Retain As Published, Will Delay
//! Interval and topic aliases.
//!
//! The clients: rumqttc (the `interop_rumqttc` example of tern-benches) over
//! `mqtt://`; paho-mqtt (Python, in a venv under `target/interop/`) and
//! MQTT.js from npm in Node, over `mqtt://` and `ws://`; MQTT.js in
//! headless Chromium over `ws://` (a page served on 127.0.0.1 that loads
//! MQTT.js's browser bundle and posts its results back); mosquitto_pub /
//! mosquitto_sub. Then `tern pub` / `tern sub` against mosquitto. And
//! MQTT.js does MQTT 5 enhanced authentication with SCRAM-SHA-256 and
//! SCRAM-SHA-512 (its `handleAuth` hook, a SCRAM client of its own) against
//! a `tern broker` with credentials from `tern passwd --scram` and
//! `--scram-sha512`. Over TLS, with a test CA made by openssl for the run
//! (`interop_pki.rs`): paho-mqtt over `mqtts://` verifying the broker
//! against the CA file and presenting a client certificate to a broker
//! that requires one (`--cafile`, `--require-certificate`); MQTT.js in
//! headless Chromium over `wss://`, trusting the CA through an NSS
//! database in the `HOME` Chromium is given (no flag that turns
//! certificate checks off). The drivers live in `xtask/interop/`; each prints `PASS CHECK` or `FAIL
//! CHECK: why`, and this command prints one line per pairing and check,
//! then `N passed, N failed`.
//!
//! Whatever is missing is installed (apt-get, pip, npm, all pinned);
//! anything that cannot be is an error, never a skip.

use crate::tools::{cargo, ensure_apt, root, run, target_dir};
use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};
use tern_testkit::Broker;

/// The pinned paho-mqtt (Python) version.
const PAHO_MQTT: &str = "2.1.0";

/// The pinned MQTT.js version.
const MQTT_JS: &str = "5.16.0";

/// The checks every driver reports, in order.
const CHECKS: [&str; 5] = ["qos0", "qos1", "qos2", "retained", "will"];

/// The checks the rumqttc, paho-mqtt and MQTT.js drivers add: a persistent session
/// that gets what was published while its client was away, a 300 kB
/// payload, and a publisher of the other protocol version.
const MORE_CHECKS: [&str; 3] = ["session", "large", "cross-version"];

/// The MQTT.js driver's further checks, in MQTT 3.1.1 and 5.
const MQTT_JS_CHECKS: [&str; 1] = ["unsubscribe"];

/// The MQTT.js driver's MQTT 5 checks (paho-mqtt does `properties`).
const MQTT_JS_V5_CHECKS: [&str; 6] = [
    "shared",
    "no-local",
    "retain-as-published",
    "will-delay",
    "properties",
    "topic-alias",
];

/// The MQTT.js SCRAM driver's checks (MQTT 5 only), for each mechanism.
const MQTT_JS_SCRAM_CHECKS: [&str; 2] = ["scram-login", "scram-wrong-password"];

/// The MQTT versions, as the drivers take them.
const VERSIONS: [&str; 2] = ["3.1.1", "5"];

/// How long one driver run (five checks) may take before it is killed.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);

/// How long one expected event (a line, a message) may take.
const WAIT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: cargo xtask interop [--filter TEXT] [--against-mosquitto]";

pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let mut filter = None;
    let mut against_mosquitto = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--filter" => filter = Some(it.next().ok_or(USAGE)?.clone()),
            "--against-mosquitto" => against_mosquitto = true,
            _ => return Err(USAGE.into()),
        }
    }
    let started = Instant::now();
    let dir = target_dir().join("interop");
    // Fresh logs: one file per driver and broker, named after it.
    let _ = fs::remove_dir_all(dir.join("logs"));
    fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;

    ensure_apt(
        &["mosquitto", "mosquitto_pub", "mosquitto_sub", "chromium"],
        &["mosquitto", "mosquitto-clients", "chromium"],
    )?;
    // Separately, so a Node.js or Python from elsewhere is left alone.
    ensure_apt(&["node", "npm"], &["nodejs", "npm"])?;
    ensure_apt(&["python3"], &["python3", "python3-venv"])?;
    // The TLS pairings' test CA, and Chromium's trust store for it.
    ensure_apt(&["openssl", "certutil"], &["openssl", "libnss3-tools"])?;
    let drivers = Drivers {
        python: ensure_paho(&dir)?,
        node_modules: ensure_mqtt_js(&dir)?,
        rumqttc: target_dir()
            .join("debug")
            .join("examples")
            .join("interop_rumqttc"),
        scripts: root().join("xtask").join("interop"),
        profile: dir.join("chromium-profile"),
    };
    // The same features as `cargo test --workspace --all-features`, so after
    // CI's test step this builds nothing.
    run(cargo().args([
        "build",
        "--workspace",
        "--all-features",
        "--bin",
        "tern",
        "--example",
        "interop_rumqttc",
    ]))?;
    let tern = target_dir().join("debug").join("tern");
    eprintln!("xtask: interop set up in {}s", started.elapsed().as_secs());

    let mut report = Report {
        filter,
        logs: dir.join("logs"),
        passed: 0,
        failed: 0,
    };
    // Brokers through tern-testkit's launcher: ready within a deadline,
    // SIGTERM then SIGKILL when dropped; logs in the logs directory.
    let logs = dir.join("logs");
    if against_mosquitto {
        // The same drivers against mosquitto: a check of the drivers.
        let mosquitto = Broker::mosquitto()
            .websocket(true)
            .args(["-v"])
            .dir(&logs)
            .name("mosquitto-drivers")
            .start()?;
        let ws = mosquitto.ws().expect("started with WebSocket").port();
        report.third_party(&drivers, mosquitto.tcp().port(), ws, " to mosquitto");
    } else {
        let broker = Broker::tern(&tern)
            .websocket(true)
            .dir(&logs)
            .name("tern-broker")
            .start()?;
        eprintln!(
            "xtask: tern broker (pid {}) on tcp {}, ws {:?}",
            broker.pid(),
            broker.tcp(),
            broker.ws()
        );
        let ws = broker.ws().expect("started with WebSocket").port();
        report.third_party(&drivers, broker.tcp().port(), ws, "");
        drop(broker);
        report.scram(&drivers, &tern, &dir)?;
        report.tls(&drivers, &tern, &dir)?;
    }
    {
        let mosquitto = Broker::mosquitto()
            .args(["-v"])
            .dir(&logs)
            .name("mosquitto-cli")
            .start()?;
        let tern = tern.to_string_lossy();
        let cli = CliClient {
            publish: &[&tern, "pub"],
            subscribe: &[&tern, "sub"],
        };
        for version in VERSIONS {
            report.cli(
                "tern pub/sub",
                version,
                mosquitto.tcp().port(),
                " to mosquitto",
                &cli,
            );
        }
    }

    println!("{} passed, {} failed", report.passed, report.failed);
    eprintln!(
        "xtask: interop took {}s; logs in {}",
        started.elapsed().as_secs(),
        report.logs.display()
    );
    if report.failed > 0 {
        Err(format!("{} interop checks failed", report.failed))
    } else if report.passed == 0 {
        Err("no interop check ran (is the --filter right?)".into())
    } else {
        Ok(())
    }
}

/// Where the third-party drivers are.
struct Drivers {
    /// The venv's python, with paho-mqtt.
    python: PathBuf,
    /// MQTT.js's `node_modules`.
    node_modules: PathBuf,
    /// The `interop_rumqttc` example binary.
    rumqttc: PathBuf,
    /// `xtask/interop/`.
    scripts: PathBuf,
    /// Chromium's (fresh) profile directory.
    profile: PathBuf,
}

/// A venv under `dir` with the pinned paho-mqtt; returns its python.
fn ensure_paho(dir: &Path) -> Result<PathBuf, String> {
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    let installed = Command::new(&python)
        .args(["-c", "import paho.mqtt; print(paho.mqtt.__version__)"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == PAHO_MQTT);
    if !installed {
        eprintln!(
            "xtask: installing paho-mqtt {PAHO_MQTT} into {}",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("paho-mqtt=={PAHO_MQTT}"),
        ]))?;
    }
    Ok(python)
}

/// MQTT.js at the pinned version under `dir`; returns its `node_modules`.
fn ensure_mqtt_js(dir: &Path) -> Result<PathBuf, String> {
    let prefix = dir.join("node");
    let modules = prefix.join("node_modules");
    let manifest = modules.join("mqtt").join("package.json");
    let installed = fs::read_to_string(&manifest)
        .is_ok_and(|text| text.contains(&format!("\"version\": \"{MQTT_JS}\"")));
    if !installed {
        eprintln!(
            "xtask: installing MQTT.js {MQTT_JS} into {}",
            prefix.display()
        );
        fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        run(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(format!("mqtt@{MQTT_JS}")))?;
    }
    for file in [manifest, modules.join("mqtt/dist/mqtt.min.js")] {
        if !file.is_file() {
            return Err(format!("{} missing after npm install", file.display()));
        }
    }
    Ok(modules)
}

/// The results so far, printed as they come.
struct Report {
    /// Runs only pairings whose name contains this.
    filter: Option<String>,
    /// Where each driver's standard error goes.
    logs: PathBuf,
    passed: usize,
    failed: usize,
}

impl Report {
    fn wanted(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    fn record(&mut self, line: &str, result: &Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {line}");
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {line}: {why}");
            }
        }
    }

    /// Every third-party client against the broker on 127.0.0.1 at `tcp`
    /// (MQTT) and `ws` (WebSocket, path /mqtt).
    fn third_party(&mut self, drivers: &Drivers, tcp: u16, ws: u16, to: &str) {
        let tcp_url = format!("mqtt://127.0.0.1:{tcp}");
        let ws_url = format!("ws://127.0.0.1:{ws}/mqtt");
        let node = |script: &str, url: &str| {
            let mut cmd = Command::new("node");
            cmd.arg(drivers.scripts.join(script))
                .arg(url)
                .env("NODE_PATH", &drivers.node_modules)
                .env("CHROMIUM", "/usr/bin/chromium")
                .env("PROFILE_DIR", &drivers.profile);
            cmd
        };
        let mosquitto_clients = CliClient {
            publish: &["mosquitto_pub"],
            subscribe: &["mosquitto_sub"],
        };
        for version in VERSIONS {
            let v5 = version == "5";
            let paho_checks = [&CHECKS[..], &MORE_CHECKS, &["properties"][..v5 as usize]].concat();
            let mqtt_js_v5 = if v5 { &MQTT_JS_V5_CHECKS[..] } else { &[] };
            let mqtt_js_checks = [&CHECKS[..], &MORE_CHECKS, &MQTT_JS_CHECKS, mqtt_js_v5].concat();
            let mut rumqttc = Command::new(&drivers.rumqttc);
            rumqttc.arg(&tcp_url);
            let rumqttc_checks = [&CHECKS[..], &MORE_CHECKS].concat();
            self.driver(
                ("rumqttc", version, "tcp", to),
                &rumqttc_checks,
                &mut rumqttc,
            );
            for (transport, url) in [("tcp", &tcp_url), ("ws", &ws_url)] {
                let mut paho = Command::new(&drivers.python);
                paho.arg(drivers.scripts.join("paho_driver.py")).arg(url);
                let pairing = ("paho-mqtt", version, transport, to);
                self.driver(pairing, &paho_checks, &mut paho);
            }
            for (transport, url) in [("tcp", &tcp_url), ("ws", &ws_url)] {
                let mut node_js = node("mqttjs.js", url);
                let pairing = ("mqtt.js node", version, transport, to);
                self.driver(pairing, &mqtt_js_checks, &mut node_js);
            }
            let mut browser = node("browser.js", &ws_url);
            let pairing = ("mqtt.js chromium", version, "ws", to);
            self.driver(pairing, &mqtt_js_checks, &mut browser);
            self.cli("mosquitto_pub/sub", version, tcp, to, &mosquitto_clients);
        }
    }

    /// MQTT.js's enhanced authentication (`xtask/interop/scram.js`) against
    /// a `tern broker` whose password file has a SCRAM-SHA-256 user and a
    /// SCRAM-SHA-512 one.
    fn scram(&mut self, drivers: &Drivers, tern: &Path, dir: &Path) -> Result<(), String> {
        // (pairing, `tern passwd` flag, user, scram.js's SCRAM_HASH)
        let mechanisms = [
            ("mqtt.js node scram", "--scram", "scram-user", "sha256"),
            (
                "mqtt.js node scram-sha-512",
                "--scram-sha512",
                "scram-user-512",
                "sha512",
            ),
        ];
        if !mechanisms
            .iter()
            .any(|(pairing, ..)| self.wanted(&format!("{pairing} v5 over tcp")))
        {
            return Ok(());
        }
        let passwd = dir.join("scram-passwd");
        for (i, (_, flag, user, _)) in mechanisms.iter().enumerate() {
            let mut cmd = Command::new(tern);
            cmd.args(["passwd", "-b"]);
            if i == 0 {
                cmd.arg("-c"); // a new file
            }
            run(cmd.arg(flag).arg(&passwd).args([user, "scram-pass"]))?;
        }
        let broker = Broker::tern(tern)
            .args(["--password-file".as_ref(), passwd.as_os_str()])
            .dir(&self.logs)
            .name("tern-broker-scram")
            .start()?;
        for (pairing, _, user, hash) in mechanisms {
            let mut node = Command::new("node");
            node.arg(drivers.scripts.join("scram.js"))
                .arg(format!("mqtt://127.0.0.1:{}", broker.tcp().port()))
                .env("NODE_PATH", &drivers.node_modules)
                .env("SCRAM_USER", user)
                .env("SCRAM_HASH", hash);
            self.driver((pairing, "5", "tcp", ""), &MQTT_JS_SCRAM_CHECKS, &mut node);
        }
        Ok(())
    }

    /// The TLS pairings, against `tern broker`s using a test PKI made for
    /// the run: paho-mqtt over `mqtts://` with the CA file and a client
    /// certificate, to a broker that requires one; MQTT.js in headless
    /// Chromium over `wss://`, Chromium trusting the CA through the NSS
    /// database in the `HOME` it is given.
    fn tls(&mut self, drivers: &Drivers, tern: &Path, dir: &Path) -> Result<(), String> {
        let paho = VERSIONS.map(|v| format!("paho-mqtt v{v} over tls"));
        let browser = VERSIONS.map(|v| format!("mqtt.js chromium v{v} over wss"));
        if !paho.iter().chain(&browser).any(|name| self.wanted(name)) {
            return Ok(());
        }
        let pki = crate::interop_pki::Pki::make(&dir.join("pki"))?;
        let files = |extra: &[&Path]| -> Vec<std::ffi::OsString> {
            let mut args: Vec<std::ffi::OsString> = vec![
                "--cert".into(),
                pki.server_cert.clone().into(),
                "--key".into(),
                pki.server_key.clone().into(),
            ];
            args.extend(extra.iter().map(|p| p.as_os_str().to_owned()));
            args
        };

        let port = tern_testkit::unused_port()?;
        let mut args = files(&[Path::new("--cafile"), &pki.ca]);
        args.extend([
            "--require-certificate".into(),
            "--tls".into(),
            format!("127.0.0.1:{port}").into(),
        ]);
        let broker = Broker::tern(tern)
            .args(args)
            .dir(&self.logs)
            .name("tern-broker-mtls")
            .start()?;
        for version in VERSIONS {
            let v5 = version == "5";
            let checks = [&CHECKS[..], &MORE_CHECKS, &["properties"][..v5 as usize]].concat();
            let mut python = Command::new(&drivers.python);
            python
                .arg(drivers.scripts.join("paho_driver.py"))
                .arg(format!("mqtts://127.0.0.1:{port}"))
                .env("TLS_CAFILE", &pki.ca)
                .env("TLS_CERT", &pki.client_cert)
                .env("TLS_KEY", &pki.client_key);
            self.driver(("paho-mqtt", version, "tls", ""), &checks, &mut python);
        }
        drop(broker);

        let port = tern_testkit::unused_port()?;
        let mut args = files(&[]);
        args.extend(["--wss".into(), format!("127.0.0.1:{port}").into()]);
        let broker = Broker::tern(tern)
            .args(args)
            .dir(&self.logs)
            .name("tern-broker-wss")
            .start()?;
        for version in VERSIONS {
            let v5 = if version == "5" {
                &MQTT_JS_V5_CHECKS[..]
            } else {
                &[]
            };
            let checks = [&CHECKS[..], &MORE_CHECKS, &MQTT_JS_CHECKS, v5].concat();
            let mut node = Command::new("node");
            node.arg(drivers.scripts.join("browser.js"))
                .arg(format!("wss://127.0.0.1:{port}/mqtt"))
                .env("NODE_PATH", &drivers.node_modules)
                .env("CHROMIUM", "/usr/bin/chromium")
                .env("PROFILE_DIR", &drivers.profile)
                // Chromium on Linux reads its trusted CAs from
                // $HOME/.pki/nssdb.
                .env("HOME", &pki.home);
            self.driver(("mqtt.js chromium", version, "wss", ""), &checks, &mut node);
        }
        drop(broker);
        Ok(())
    }

    /// Runs an external driver (`DRIVER URL VERSION PREFIX`) for a pairing
    /// (client, version, transport, broker suffix) and records its checks;
    /// an expected check it did not report fails.
    fn driver(&mut self, pairing: (&str, &str, &str, &str), checks: &[&str], cmd: &mut Command) {
        let (client, version, transport, to) = pairing;
        let name = format!("{client} v{version} over {transport}{to}");
        if !self.wanted(&name) {
            return;
        }
        let tag = name.replace(['/', ' ', '.'], "-");
        let log = self.logs.join(format!("{tag}.log"));
        let prefix = format!("interop/{tag}/{}", std::process::id());
        cmd.arg(version).arg(&prefix);
        let started = Instant::now();
        let (results, problem) = run_driver(cmd, &log);
        eprintln!("xtask: {name}: {:.1}s", started.elapsed().as_secs_f64());
        for (check, result) in judge_driver(checks, &results, problem.as_deref(), &log) {
            self.record(
                &format!("{client} v{version} {check} over {transport}{to}"),
                &result,
            );
        }
    }

    /// Runs the checks with a mosquitto_pub / mosquitto_sub style client.
    fn cli(&mut self, client: &str, version: &str, port: u16, to: &str, cli: &CliClient<'_>) {
        let name = format!("{client} v{version} over tcp{to}");
        if !self.wanted(&name) {
            return;
        }
        let tag = name.replace(['/', ' ', '.'], "-");
        let prefix = format!("interop/{tag}/{}", std::process::id());
        let ctx = CliRun {
            cli,
            port,
            version: if version == "5" { "mqttv5" } else { "mqttv311" },
            prefix: &prefix,
        };
        let started = Instant::now();
        for check in CHECKS {
            let result = match check {
                "qos0" => ctx.qos(0),
                "qos1" => ctx.qos(1),
                "qos2" => ctx.qos(2),
                "retained" => ctx.retained(),
                _ => ctx.will(),
            };
            self.record(
                &format!("{client} v{version} {check} over tcp{to}"),
                &result,
            );
        }
        eprintln!("xtask: {name}: {:.1}s", started.elapsed().as_secs_f64());
    }
}

/// Every check of one driver run, judged: the expected `checks` in order,
/// then any it reported that were not expected. A check it did not report
/// fails; and when the driver itself went wrong (exited non-zero, was
/// killed), even the checks it reported as passed fail, since a crash can
/// come after a PASS line that then meant nothing.
fn judge_driver<'a>(
    checks: &[&'a str],
    results: &'a BTreeMap<String, Result<(), String>>,
    problem: Option<&str>,
    log: &Path,
) -> Vec<(&'a str, Result<(), String>)> {
    let unexpected = results.keys().filter(|c| !checks.contains(&c.as_str()));
    checks
        .iter()
        .copied()
        .chain(unexpected.map(String::as_str))
        .map(|check| {
            let result = match (results.get(check), problem) {
                (Some(Ok(())), Some(problem)) => Err(format!(
                    "reported PASS, but then {problem}; see {}",
                    log.display()
                )),
                (Some(result), _) => result.clone(),
                (None, problem) => Err(format!(
                    "not reported ({}); see {}",
                    problem.unwrap_or("the driver ended early"),
                    log.display()
                )),
            };
            (check, result)
        })
        .collect()
}

/// Runs one driver to completion (or [`DRIVER_TIMEOUT`]): the checks it
/// reported, and what went wrong with the process itself, if anything.
fn run_driver(
    cmd: &mut Command,
    log: &Path,
) -> (BTreeMap<String, Result<(), String>>, Option<String>) {
    let mut results = BTreeMap::new();
    let stderr = match fs::File::create(log) {
        Ok(f) => f,
        Err(e) => {
            return (
                results,
                Some(format!("cannot create {}: {e}", log.display())),
            );
        }
    };
    let mut child = match cmd
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return (results, Some(format!("cannot start {cmd:?}: {e}"))),
    };
    let lines = lines(child.stdout.take().expect("piped stdout"));
    let deadline = Instant::now() + DRIVER_TIMEOUT;
    let mut problem = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(check) = line.strip_prefix("PASS ") {
                    results.insert(check.trim().to_string(), Ok(()));
                } else if let Some(rest) = line.strip_prefix("FAIL ") {
                    let (check, why) = rest.split_once(": ").unwrap_or((rest, "failed"));
                    results.insert(check.trim().to_string(), Err(why.to_string()));
                } else {
                    eprintln!("  {line}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                problem = Some(format!(
                    "the driver was killed after {}s",
                    DRIVER_TIMEOUT.as_secs()
                ));
                let _ = child.kill();
                break;
            }
        }
    }
    match child.wait() {
        Ok(status) if !status.success() && problem.is_none() => {
            problem = Some(format!("the driver exited with {status}"));
        }
        Err(e) => problem = Some(format!("waiting for the driver: {e}")),
        _ => {}
    }
    (results, problem)
}

/// The lines a stream prints, as they come, until it closes.
fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A publisher and subscriber with mosquitto_pub's and mosquitto_sub's
/// flags: mosquitto's own, or `tern pub` / `tern sub`.
struct CliClient<'a> {
    publish: &'a [&'a str],
    subscribe: &'a [&'a str],
}

/// One pairing's run of the checks with a [`CliClient`].
struct CliRun<'a> {
    cli: &'a CliClient<'a>,
    port: u16,
    /// `mqttv311` or `mqttv5`.
    version: &'a str,
    prefix: &'a str,
}

/// A running subscriber, killed by its PID when dropped.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// The next line that `pick` accepts, within [`WAIT`].
    fn until(&self, what: &str, pick: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if pick(&line) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err(format!("no {what} within {}s", WAIT.as_secs())),
            }
        }
    }

    /// The next message line (`MSG qos retain topic payload`).
    fn message(&self) -> Result<String, String> {
        self.until("message", |l| l.starts_with("MSG "))
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CliRun<'_> {
    fn command(&self, program: &[&str]) -> Command {
        // stdbuf: mosquitto_sub's output is block-buffered into a pipe.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL")
            .args(program)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-V", self.version]);
        cmd
    }

    /// Starts a subscriber (with `-d`, so it says when it is subscribed) and
    /// waits until the broker has granted the subscription.
    fn subscribe(&self, id: &str, topic: &str, extra: &[&str]) -> Result<Sub, String> {
        let mut cmd = self.command(self.cli.subscribe);
        cmd.args(["-i", id, "-t", topic, "-q", "2", "-d"])
            .args(["-F", "MSG %q %r %t %p"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", self.cli.subscribe))?;
        // mosquitto_sub -d says `Client ... received SUBACK` on stdout;
        // tern sub -d says `tern sub: subscribed to ...` on stderr.
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let sub = Sub { child, lines: rx };
        sub.until("SUBACK", |l| {
            l.contains("SUBACK") || l.contains("subscribed to")
        })?;
        Ok(sub)
    }

    fn publish(&self, id: &str, args: &[&str]) -> Result<(), String> {
        let mut child = self
            .command(self.cli.publish)
            .args(["-i", id])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", self.cli.publish))?;
        // Standard error closes when the publisher exits; a publisher still
        // waiting for an acknowledgement after WAIT is killed.
        let mut stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let stderr = rx.recv_timeout(WAIT);
        if stderr.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        match stderr {
            Ok(_) if status.success() => Ok(()),
            Ok(text) => Err(format!(
                "{:?} {args:?} failed with {status}: {}",
                self.cli.publish,
                text.trim()
            )),
            Err(_) => Err(format!(
                "{:?} {args:?} did not finish within {}s",
                self.cli.publish,
                WAIT.as_secs()
            )),
        }
    }

    fn id(&self, role: &str) -> String {
        format!("interop-{role}-{}-{}", self.version, std::process::id())
    }

    fn qos(&self, qos: u8) -> Result<(), String> {
        let topic = format!("{}/q/{qos}", self.prefix);
        let sub = self.subscribe(&self.id("sub"), &topic, &[])?;
        let payload = format!("qos{qos}");
        self.publish(
            &self.id("pub"),
            &["-t", &topic, "-q", &qos.to_string(), "-m", &payload],
        )?;
        expect(&sub.message()?, &format!("MSG {qos} 0 {topic} {payload}"))
    }

    fn retained(&self) -> Result<(), String> {
        let topic = format!("{}/retained", self.prefix);
        let publisher = self.id("pub");
        self.publish(&publisher, &["-t", &topic, "-q", "1", "-r", "-m", "kept"])?;
        let late = self.subscribe(&self.id("late"), &topic, &[])?;
        let line = late.message()?;
        // Clear it whatever happened.
        self.publish(&publisher, &["-t", &topic, "-q", "1", "-r", "-n"])?;
        expect(&line, &format!("MSG 1 1 {topic} kept"))
    }

    fn will(&self) -> Result<(), String> {
        let topic = format!("{}/will", self.prefix);
        let sub = self.subscribe(&self.id("sub"), &topic, &[])?;
        let mut will = self.subscribe(
            &self.id("will"),
            &format!("{}/idle", self.prefix),
            &[
                "--will-topic",
                &topic,
                "--will-payload",
                "gone",
                "--will-qos",
                "1",
            ],
        )?;
        // SIGKILL: the connection dies without DISCONNECT.
        will.child
            .kill()
            .map_err(|e| format!("cannot kill the will client: {e}"))?;
        let _ = will.child.wait();
        expect(&sub.message()?, &format!("MSG 1 0 {topic} gone"))
    }
}

fn expect(got: &str, want: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("expected `{want}`, got `{got}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver's report is read line by line; a check it fails, or never
    /// reports because it crashed, counts as failed.
    #[test]
    fn unreported_and_failed_checks_fail() {
        let logs = std::env::temp_dir().join(format!("xtask-interop-{}", std::process::id()));
        fs::create_dir_all(&logs).unwrap();
        let log = logs.join("driver.log");
        let mut report = Report {
            filter: None,
            logs: logs.clone(),
            passed: 0,
            failed: 0,
        };
        let mut driver = Command::new("sh");
        driver.args([
            "-c",
            "echo PASS qos0; echo 'FAIL qos1: no PUBACK'; echo noise; echo PASS qos2; exit 3",
            "driver",
        ]);
        let (results, problem) = run_driver(&mut driver, &log);
        assert_eq!(results.get("qos0"), Some(&Ok(())));
        assert_eq!(results.get("qos1"), Some(&Err("no PUBACK".to_string())));
        assert_eq!(results.get("qos2"), Some(&Ok(())));
        assert_eq!(results.len(), 3);
        assert!(problem.is_some_and(|p| p.contains("exit status: 3")));

        // A driver that exits non-zero fails every check, PASS lines included.
        report.driver(("sh", "5", "tcp", ""), &CHECKS, &mut driver);
        assert_eq!((report.passed, report.failed), (0, 5));

        // The same lines from a driver that exits 0: only the unreported
        // and failed checks fail.
        let mut clean = Command::new("sh");
        clean.args([
            "-c",
            "echo PASS qos0; echo 'FAIL qos1: no PUBACK'; echo PASS qos2",
            "driver",
        ]);
        report.driver(("sh", "3.1.1", "tcp", ""), &CHECKS, &mut clean);
        assert_eq!((report.passed, report.failed), (2, 8));
        let _ = fs::remove_dir_all(logs);
    }

    #[test]
    fn a_pass_followed_by_a_crash_is_a_failure() {
        let results: BTreeMap<String, Result<(), String>> =
            [("qos0".to_string(), Ok(()))].into_iter().collect();
        let log = Path::new("driver.log");
        let judged = judge_driver(&["qos0"], &results, Some("the driver exited with 139"), log);
        assert!(
            judged[0].1.as_ref().is_err_and(|e| e.contains("139")),
            "{judged:?}"
        );
        let judged = judge_driver(&["qos0"], &results, None, log);
        assert_eq!(judged, [("qos0", Ok(()))]);
    }
}
