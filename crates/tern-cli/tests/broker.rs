//! `tern broker` as a user runs it: help, settings errors, a port in use,
//! the listening lines, and a graceful stop on SIGTERM.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use support::*;
use tern_codec::{Connect, MqttString, Packet, ProtocolVersion, ReasonCode};

fn tern() -> Command {
    Command::cargo_bin("tern").expect("the tern binary is built")
}

#[test]
fn help_explains_flags_defaults_and_every_settings_key() {
    let output = tern().args(["broker", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--tcp",
        "--ws",
        "--config",
        "--log",
        "--ready-file",
        "--metrics",
        "--log-format",
        "--check-config",
        "[metrics]",
        "127.0.0.1:1883",
        "127.0.0.1:8083",
        "/mqtt",
        "listening tcp",
        "SIGTERM",
        "0x8B",
        "[listeners]",
        "[limits]",
        "ws_path",
        "max_connections",
        "max_packet_size",
        "max_inflight",
        "max_queued_messages",
        "max_queued_bytes",
        "queue_qos0",
        "max_topic_levels = 200",
        "max_topic_length = 4096",
        "max_retained_messages = 1000000",
        "max_retained_bytes = 268435456",
        "publisher_backpressure",
        "connect_timeout",
        "max_keep_alive",
        "retain_available",
        "maximum_qos",
        "topic_alias_maximum",
        "sys_interval",
    ] {
        assert!(
            help.contains(needle),
            "`tern broker --help` does not mention {needle}"
        );
    }
}

#[test]
fn a_bad_settings_file_names_the_file_key_and_line() {
    let dir = std::env::temp_dir().join(format!("tern-cli-broker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        "[listeners]\ntcp = [\"127.0.0.1:0\"]\n[limits]\nmax_inflight = \"many\"\n",
    )
    .unwrap();
    let assert = tern()
        .args(["broker", "--config"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(path.display().to_string()))
        .stderr(predicate::str::contains("limits.max_inflight"))
        .stderr(predicate::str::contains("line 4"));
    drop(assert);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_port_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    tern()
        .args(["broker", "--tcp", &addr])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(addr.as_str()))
        .stderr(predicate::str::contains("in use"));
}

#[test]
fn it_reports_its_ports_serves_and_stops_gracefully_on_sigterm() {
    let mut broker = BrokerProcess::start();
    let mut client = Raw::open(broker.tcp, ProtocolVersion::V5);
    client.send(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: MqttString::from_static("cli-test"),
        ..Connect::default()
    });
    match client.next() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // The WebSocket listener answers HTTP too.
    std::net::TcpStream::connect(broker.ws).expect("the ws listener accepts");

    broker.terminate();
    match client.next() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown),
        other => {
            let status = broker.wait_exit();
            let log: Vec<String> = broker.stderr.try_iter().collect();
            panic!("expected DISCONNECT 0x8B, got {other:?}; exit {status:?}; log {log:#?}")
        }
    }
    assert_eq!(client.next(), None, "closed after the DISCONNECT");
    let status = broker.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    // The log says who connected (the process has exited: its stderr ends).
    let log: Vec<String> = broker.stderr.iter().collect();
    assert!(
        log.iter()
            .any(|l| l.contains("client connected") && l.contains("cli-test")),
        "{log:#?}"
    );
}

/// CONNECT and a successful CONNACK on `addr`.
fn connects(addr: std::net::SocketAddr, id: &'static str) -> Raw {
    let mut client = Raw::open(addr, ProtocolVersion::V5);
    client.send(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    });
    match client.next() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK on {addr}, got {other:?}"),
    }
    client
}

/// `--ready-file` holds the process id and every bound address as JSON once
/// the listeners are up, and the `listening` lines are printed as before.
#[test]
fn the_ready_file_and_the_listening_lines_name_the_bound_addresses() {
    let (broker, tcp, ws) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
        ],
        2,
        1,
    );
    let stdout = broker.stdout();
    for line in tcp
        .iter()
        .map(|a| format!("listening tcp {a}"))
        .chain(ws.iter().map(|a| format!("listening ws {a}")))
    {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout:?}");
    }
    for addr in tcp.iter().chain(&ws) {
        std::net::TcpStream::connect(addr).expect("a listener named in the ready file accepts");
    }
    // The file itself: complete JSON with our process id.
    let dir = std::env::temp_dir().join(format!("tern-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "broker",
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no ready file");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let json: serde_json::Value = serde_json::from_str(&text).expect("whole JSON");
    assert_eq!(json["pid"], child.id());
    assert_eq!(json["tcp"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json["ws"].as_array().map(Vec::len), Some(1), "{json}");
    // The monitoring listener's bound address, answering /health.
    let metrics = json["metrics"].as_str().expect("the metrics address");
    let mut s = std::net::TcpStream::connect(metrics).expect("the metrics listener accepts");
    s.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!dir.join("ready.json.tmp").exists(), "renamed into place");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_and_ws_flags_are_repeatable() {
    let (broker, tcp, ws) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
        ],
        2,
        2,
    );
    assert_eq!((tcp.len(), ws.len()), (2, 2));
    assert_ne!(tcp[0], tcp[1]);
    connects(tcp[0], "first-listener");
    connects(tcp[1], "second-listener");
    for addr in ws {
        // An HTTP upgrade to /mqtt is answered with 101 on each.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!(
                "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Protocol: mqtt\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101", "{addr}");
    }
    drop(broker);
}

#[test]
fn a_settings_file_gives_listeners_and_limits_and_flags_replace_its_listeners() {
    let dir = std::env::temp_dir().join(format!("tern-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[limits]\nconnect_timeout = 0.3\nmax_inflight = 7\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let (broker, tcp, ws) = BrokerProcess::start_with(&["--config", config], 1, 0);
    assert!(ws.is_empty());
    // Limits from the file: Receive Maximum, connect timeout.
    let mut client = Raw::open(tcp[0], ProtocolVersion::V5);
    client.send(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: MqttString::from_static("configured"),
        ..Connect::default()
    });
    match client.next() {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.properties.receive_maximum.map(|r| r.get()), Some(7))
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let mut silent = Raw::open(tcp[0], ProtocolVersion::V5);
    let started = std::time::Instant::now();
    assert_eq!(silent.next(), None, "closed at the connect timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    drop(broker);

    // `--ws` on the command line replaces the file's listeners.
    let (broker, tcp, ws) =
        BrokerProcess::start_with(&["--config", config, "--ws", "127.0.0.1:0"], 0, 1);
    assert!(tcp.is_empty());
    assert_eq!(ws.len(), 1);
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_stops_it_gracefully_too() {
    let mut broker = BrokerProcess::start();
    let mut client = connects(broker.tcp, "interrupted");
    broker.signal("-INT");
    match client.next() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert!(broker.wait_exit().success());
}

/// `--check-config`: the effective settings with every default written
/// out, exit 0; a bad file or a missing password file named, exit 1.
#[test]
fn check_config_prints_the_effective_settings_or_names_the_problem() {
    let dir = std::env::temp_dir().join(format!("tern-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[limits]\nmax_inflight = 7\n").unwrap();
    let out = tern()
        .args(["broker", "--check-config"])
        .arg(&good)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for line in [
        "max_inflight = 7",
        "max_connections = 10000",
        "tcp = [\"127.0.0.1:1883\"]",
        "sys_interval = 10",
        "allow_anonymous = true",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    // What it prints is itself a settings file that checks.
    let again = dir.join("again.toml");
    std::fs::write(&again, &text).unwrap();
    tern()
        .args(["broker", "--check-config"])
        .arg(&again)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("max_inflight = 7"));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_inflight = 7\nmaximum_qos = 5\n").unwrap();
    tern()
        .args(["broker", "--check-config"])
        .arg(&bad)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(bad.display().to_string()))
        .stderr(predicate::str::contains("limits.maximum_qos"))
        .stderr(predicate::str::contains("line 3"));
    let missing = dir.join("missing.toml");
    std::fs::write(
        &missing,
        "[security]\npassword_file = \"/nonexistent/passwd\"\n",
    )
    .unwrap();
    tern()
        .args(["broker", "--check-config"])
        .arg(&missing)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/passwd"));
    // `[[bridge]]` tables print too, defaults filled in, the password hidden.
    let bridged = dir.join("bridged.toml");
    std::fs::write(
        &bridged,
        "[[bridge]]\nname = \"cloud\"\naddress = \"127.0.0.1:1884\"\nusername = \"u\"\n\
         password = \"s3cret\"\ntopic = [{ pattern = \"a/#\" }]\n",
    )
    .unwrap();
    let out = tern()
        .args(["broker", "--check-config"])
        .arg(&bridged)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for line in [
        "[[bridge]]",
        "name = \"cloud\"",
        "password = \"(hidden)\"",
        "keep_alive = 60",
        "restart_timeout = [5, 30]",
        "  { pattern = \"a/#\", direction = \"out\", qos = 0, local_prefix = \"\", remote_prefix = \"\" },",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(!text.contains("s3cret"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP with changes a reload cannot apply (here `[metrics] listen`):
/// each is logged as not applied, and the limits in the same file are.
#[test]
fn sighup_names_the_changes_it_cannot_apply() {
    let dir = std::env::temp_dir().join(format!("tern-cli-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("broker.toml");
    let base = "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n";
    std::fs::write(&config, format!("{base}[limits]\nmax_inflight = 10\n")).unwrap();
    let (broker, _, _) = BrokerProcess::start_with(&["--config", config.to_str().unwrap()], 1, 0);
    std::fs::write(
        &config,
        format!("{base}[limits]\nmax_inflight = 20\n[metrics]\nlisten = \"127.0.0.1:9\"\n"),
    )
    .unwrap();
    broker.signal("-HUP");
    let mut want = vec![
        "not applied until the next start: metrics.listen: unset -> \"127.0.0.1:9\"",
        "limits.max_inflight: 10 -> 20",
    ];
    let deadline = std::time::Instant::now() + WAIT;
    while !want.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker did not log {want:?}"
        );
        if let Ok(line) = broker
            .stderr
            .recv_timeout(std::time::Duration::from_millis(100))
        {
            want.retain(|w| !line.contains(w));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_flags_are_checked_and_an_unreachable_nats_is_named() {
    // --cluster needs --node-id, and a node id must fit a NATS token.
    tern()
        .args([
            "broker",
            "--tcp",
            "127.0.0.1:0",
            "--cluster",
            "nats://127.0.0.1:1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--node-id"));
    tern()
        .args(["broker", "--tcp", "127.0.0.1:0", "--node-id", "a"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("without --cluster"));
    tern()
        .args([
            "broker",
            "--cluster",
            "nats://127.0.0.1:1",
            "--node-id",
            "a.b",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("\"a.b\""));
    // No NATS there: the node does not start, and says where it looked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", closed.local_addr().unwrap());
    drop(closed);
    tern()
        .args(["broker", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"])
        .args(["--cluster", &url, "--node-id", "a"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot reach NATS"))
        .stderr(predicate::str::contains(url.as_str()));
}
