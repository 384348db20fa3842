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
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
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
