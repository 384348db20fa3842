//! `tern pub` and `tern sub` end to end, run as a user would, against
//! Debian's mosquitto broker and against `tern broker`, each started for
//! each test on free ports. The tests that need a broker run against both
//! (`both_brokers!` makes `on_mosquitto::NAME` and `on_tern::NAME`).

#[path = "../../tern-client/tests/support/mosquitto.rs"]
mod mosquitto;
mod support;

use assert_cmd::Command;
use bytes::BytesMut;
use mosquitto::{Mosquitto, free_port};
use predicates::prelude::*;
use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};
use tern_codec::{ConnAck, Packet, ProtocolVersion, ReasonCode, SubAck};

/// How long any one awaited event may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Mosquitto,
    Tern,
}

/// Debian's mosquitto, or `tern broker` (a child process on port 0); both
/// are killed by their PID when dropped.
enum TestBroker {
    Mosquitto(Mosquitto),
    Tern(support::BrokerProcess),
}

impl TestBroker {
    fn start(kind: Kind) -> Self {
        match kind {
            Kind::Mosquitto => TestBroker::Mosquitto(Mosquitto::start()),
            Kind::Tern => TestBroker::Tern(support::BrokerProcess::start()),
        }
    }

    /// With a WebSocket listener (path `/mqtt`) too.
    fn start_with_websocket(kind: Kind) -> Self {
        match kind {
            Kind::Mosquitto => TestBroker::Mosquitto(Mosquitto::start_with_websocket()),
            // Tern's test broker always has one.
            Kind::Tern => TestBroker::start(kind),
        }
    }

    fn port(&self) -> u16 {
        match self {
            TestBroker::Mosquitto(m) => m.port,
            TestBroker::Tern(t) => t.tcp.port(),
        }
    }

    fn ws_port(&self) -> u16 {
        match self {
            TestBroker::Mosquitto(m) => m.ws_port.expect("started with a WebSocket listener"),
            TestBroker::Tern(t) => t.ws.port(),
        }
    }
}

fn tern() -> Command {
    Command::cargo_bin("tern").expect("the tern binary is built")
}

/// `tern pub -h 127.0.0.1 -p PORT ARGS...`, expected to succeed.
fn publish(broker: &TestBroker, args: &[&str]) {
    tern()
        .args(["pub", "-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(args)
        .timeout(PATIENCE)
        .assert()
        .success();
}

/// A running `tern sub`, started with `-d` so its standard error says when
/// the subscriptions are in place.
struct Sub {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Sub {
    /// Starts `tern sub -d ARGS...` and waits until every `-t` is subscribed.
    fn start(args: &[&str]) -> Self {
        let topics = args.iter().filter(|a| **a == "-t").count();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tern"))
            .arg("sub")
            .arg("-d")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tern sub");
        let mut out = child.stdout.take().unwrap();
        let stdout = thread::spawn(move || {
            let mut all = Vec::new();
            let _ = out.read_to_end(&mut all);
            all
        });
        let err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = Sub {
            child,
            stderr,
            stdout: Some(stdout),
        };
        for _ in 0..topics {
            sub.wait_for_stderr("subscribed to");
        }
        sub
    }

    /// Waits for a line of standard error containing `text`.
    fn wait_for_stderr(&mut self, text: &str) -> String {
        loop {
            match self.stderr.recv_timeout(PATIENCE) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(e) => panic!(
                    "tern sub never printed {text:?} on stderr ({e}); it printed:\n{}",
                    self.stderr_rest()
                ),
            }
        }
    }

    /// Waits for it to exit; returns the exit code and standard output.
    fn finish(mut self) -> (Option<i32>, String) {
        let (tx, rx) = mpsc::channel();
        let stdout = self.stdout.take().unwrap();
        thread::spawn(move || {
            let _ = tx.send(stdout.join().unwrap());
        });
        let out = rx
            .recv_timeout(PATIENCE)
            .expect("tern sub did not finish in time");
        let status = self.child.wait().expect("wait");
        (status.code(), String::from_utf8_lossy(&out).into_owned())
    }

    /// What standard error still holds.
    fn stderr_rest(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        // Its own PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `-h 127.0.0.1 -p PORT REST...`
fn sub_args<'a>(port: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-h", "127.0.0.1", "-p", port];
    args.extend_from_slice(rest);
    args
}

fn every_qos_in_both_versions(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    for version in ["311", "5"] {
        for qos in ["0", "1", "2"] {
            let sub = Sub::start(&sub_args(
                &port,
                &["-V", version, "-t", "t/#", "-q", "2", "-v", "-C", "1"],
            ));
            let message = format!("hello at {qos}");
            publish(
                &broker,
                &["-V", version, "-t", "t/x", "-q", qos, "-m", &message],
            );
            let (code, out) = sub.finish();
            assert_eq!(code, Some(0));
            assert_eq!(out, format!("t/x {message}\n"), "MQTT {version} QoS {qos}");
        }
    }
}

fn retained_messages_and_clearing_them(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    publish(&broker, &["-t", "state", "-m", "on", "-r", "-q", "1"]);
    // No need to wait for the subscription: the message is retained.
    let out = tern()
        .arg("sub")
        .args(sub_args(
            &port,
            &["-t", "state", "-C", "1", "-F", "%t %p %r"],
        ))
        .timeout(PATIENCE)
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "state on 1\n"
    );
    // -R skips it.
    tern()
        .arg("sub")
        .args(sub_args(&port, &["-t", "state", "-R", "-W", "1"]))
        .timeout(PATIENCE)
        .assert()
        .code(27)
        .stdout("");
    // An empty retained message clears it.
    publish(&broker, &["-t", "state", "-r", "-n", "-q", "1"]);
    tern()
        .arg("sub")
        .args(sub_args(&port, &["-t", "state", "-W", "1"]))
        .timeout(PATIENCE)
        .assert()
        .code(27)
        .stdout("");
}

fn messages_from_files_standard_input_and_lines_at_qos_2(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    let sub = Sub::start(&sub_args(
        &port,
        &["-t", "in", "-q", "2", "-C", "4", "-F", "[%p] %q %l"],
    ));
    let file = std::env::temp_dir().join(format!("tern-pub-{}.txt", std::process::id()));
    std::fs::write(&file, "from a file").unwrap();
    publish(
        &broker,
        &["-t", "in", "-q", "2", "-f", file.to_str().unwrap()],
    );
    std::fs::remove_file(&file).unwrap();
    tern()
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "in",
            "-q",
            "2",
            "-s",
        ])
        .write_stdin("all of\nstdin")
        .timeout(PATIENCE)
        .assert()
        .success();
    tern()
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "in",
            "-q",
            "2",
            "-l",
        ])
        .write_stdin("line one\n\nline two\n")
        .timeout(PATIENCE)
        .assert()
        .success();
    let (code, out) = sub.finish();
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "[from a file] 2 11\n[all of\nstdin] 2 12\n[line one] 2 8\n[line two] 2 8\n"
    );
}

fn the_will_is_published_when_a_client_dies(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    for version in ["311", "5"] {
        let watcher = Sub::start(&sub_args(
            &port,
            &["-V", version, "-t", "wills/#", "-q", "1", "-v", "-C", "1"],
        ));
        let mut dying = Sub::start(&sub_args(
            &port,
            &[
                "-V",
                version,
                "-i",
                "dying",
                "-t",
                "anything",
                "--will-topic",
                "wills/dying",
                "--will-payload",
                "gone",
                "--will-qos",
                "1",
            ],
        ));
        // SIGKILL: no DISCONNECT, so the broker publishes the will.
        dying.child.kill().unwrap();
        let (code, out) = watcher.finish();
        assert_eq!(code, Some(0));
        assert_eq!(out, "wills/dying gone\n", "MQTT {version}");
    }
}

fn persistent_sessions_keep_messages_for_later(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    for version in ["311", "5"] {
        let id = format!("keeper-{version}");
        let sub = |count: &'static str| {
            tern()
                .arg("sub")
                .args(sub_args(
                    &port,
                    &[
                        "-V", version, "-c", "-i", &id, "-t", "box", "-q", "1", "-C", count,
                    ],
                ))
                .timeout(PATIENCE)
                .assert()
                .success()
        };
        sub("0"); // subscribe, then leave
        publish(
            &broker,
            &["-V", version, "-t", "box", "-q", "1", "-m", "kept for you"],
        );
        let out = sub("1");
        assert_eq!(
            String::from_utf8_lossy(&out.get_output().stdout),
            "kept for you\n",
            "MQTT {version}"
        );
    }
    tern()
        .args(["sub", "-c", "-t", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs a client id (-i)"));
}

fn mqtt5_properties_and_formats(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    let sub = Sub::start(&sub_args(
        &port,
        &[
            "-t",
            "p/+",
            "-q",
            "1",
            "-C",
            "1",
            "-D",
            "subscribe",
            "subscription-identifier",
            "9",
            "-F",
            "%t|%P|%C|%R|%S|%E|%x",
        ],
    ));
    publish(
        &broker,
        &[
            "-t",
            "p/1",
            "-q",
            "1",
            "-m",
            "hi",
            "-D",
            "publish",
            "user-property",
            "unit",
            "celsius",
            "-D",
            "publish",
            "user-property",
            "by",
            "tern",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "p/reply",
            "-D",
            "publish",
            "message-expiry-interval",
            "600",
            "-D",
            "connect",
            "session-expiry-interval",
            "0",
        ],
    );
    let (code, out) = sub.finish();
    assert_eq!(code, Some(0));
    let fields: Vec<&str> = out.trim_end().split('|').collect();
    assert_eq!(
        fields[..5],
        ["p/1", "unit:celsius by:tern", "text/plain", "p/reply", "9"]
    );
    let expiry: u32 = fields[5].parse().unwrap();
    assert!((590..=600).contains(&expiry), "{expiry}");
    assert_eq!(fields[6], "6869");
}

fn json_output(kind: Kind) {
    let broker = TestBroker::start(kind);
    let port = broker.port().to_string();
    let sub = Sub::start(&sub_args(&port, &["-t", "j", "-C", "1", "-F", "%j"]));
    publish(&broker, &["-t", "j", "-m", "say \"hi\""]);
    let (_, out) = sub.finish();
    let json: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(json["topic"], "j");
    assert_eq!(json["payload"], "say \"hi\"");
    assert_eq!(json["payloadlen"], 8);
    assert_eq!(json["qos"], 0);
    assert_eq!(json["retain"], 0);
    assert!(json["tst"].as_str().unwrap().ends_with('Z'));
}

fn websocket_and_urls(kind: Kind) {
    let broker = TestBroker::start_with_websocket(kind);
    let ws = broker.ws_port().to_string();
    let port = broker.port().to_string();
    let sub = Sub::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &ws,
        "--ws",
        "-t",
        "w/#",
        "-v",
        "-C",
        "3",
        "-q",
        "1",
    ]);
    tern()
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &ws,
            "--ws",
            "-t",
            "w/1",
            "-m",
            "over ws",
            "-q",
            "1",
        ])
        .timeout(PATIENCE)
        .assert()
        .success();
    // mosquitto_pub's -L: the URL's path is the topic.
    tern()
        .args([
            "pub",
            "-L",
            &format!("mqtt://127.0.0.1:{port}/w/2"),
            "-m",
            "by url",
        ])
        .timeout(PATIENCE)
        .assert()
        .success();
    // A ws:// URL: its path is the WebSocket path.
    tern()
        .args([
            "pub",
            "-L",
            &format!("ws://127.0.0.1:{ws}/mqtt"),
            "-t",
            "w/3",
            "-m",
            "by ws url",
            "-q",
            "2",
        ])
        .timeout(PATIENCE)
        .assert()
        .success();
    let (code, out) = sub.finish();
    assert_eq!(code, Some(0));
    assert_eq!(out, "w/1 over ws\nw/2 by url\nw/3 by ws url\n");
}

#[test]
fn errors_name_the_problem() {
    let port = free_port();
    tern()
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "t",
            "-m",
            "x",
        ])
        .timeout(PATIENCE)
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "broker unreachable at 127.0.0.1:{port}: "
        )));
    let locked = Mosquitto::start_with(false, "allow_anonymous false\n");
    let locked_port = locked.port.to_string();
    for version in ["311", "5"] {
        for command in [&["pub", "-m", "x"][..], &["sub"]] {
            tern()
                .args(&command[..1])
                .args([
                    "-V",
                    version,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &locked_port,
                    "-t",
                    "t",
                ])
                .args(&command[1..])
                .timeout(PATIENCE)
                .assert()
                .code(1)
                .stderr("connection refused: 0x87 Not authorized\n");
        }
    }
    for (args, message) in [
        (&["pub", "-t", "t"][..], "a message is needed"),
        (&["pub", "-m", "x"], "a topic is needed"),
        (&["pub", "-t", "t", "-m", "x", "-n"], "cannot be used with"),
        (
            &["pub", "-t", "t", "-m", "x", "-q", "3"],
            "QoS must be 0, 1 or 2",
        ),
        (
            &["pub", "-t", "t", "-m", "x", "-V", "4"],
            "unknown MQTT version",
        ),
        (
            &[
                "pub",
                "-t",
                "t",
                "-m",
                "x",
                "-V",
                "311",
                "-D",
                "publish",
                "content-type",
                "a",
            ],
            "-D needs MQTT 5",
        ),
        (
            &[
                "pub",
                "-t",
                "t",
                "-m",
                "x",
                "-D",
                "connect",
                "authentication-method",
                "SCRAM",
            ],
            "enhanced authentication",
        ),
        (&["sub", "-t", "t", "-F", "%Q"], "%Q is not supported"),
        (&["sub"], "a topic filter is needed"),
    ] {
        tern()
            .args(args)
            .timeout(PATIENCE)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    // A refused message names its reason code (mosquitto refuses a topic
    // the ACL denies with 0x87 in PUBACK).
    let dir = std::env::temp_dir().join(format!("tern-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let acl = dir.join("acl");
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    let strict = Mosquitto::start_with(
        false,
        &format!("allow_anonymous true\nacl_file {}\n", acl.display()),
    );
    tern()
        .args(["pub", "-h", "127.0.0.1", "-p", &strict.port.to_string()])
        .args(["-t", "closed/x", "-m", "x", "-q", "1"])
        .timeout(PATIENCE)
        .assert()
        .code(1)
        .stderr("the broker refused the message to \"closed/x\": 0x87 Not authorized\n");
    drop(strict);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fake broker for one connection (mosquitto grants every subscription):
/// CONNACK, then SUBACK with `codes`, then it waits for the client to leave.
fn refusing_broker(codes: Vec<ReasonCode>) -> (u16, thread::JoinHandle<Vec<Packet>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        loop {
            let Some(packet) = Packet::decode(&mut buf, ProtocolVersion::V5, u32::MAX).unwrap()
            else {
                let mut chunk = [0; 4096];
                match stream.read(&mut chunk).unwrap() {
                    0 => return seen,
                    n => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let reply = match &packet {
                Packet::Connect(_) => Some(Packet::from(ConnAck::default())),
                Packet::Subscribe(s) => Some(Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    properties: Default::default(),
                    reason_codes: codes.clone(),
                })),
                _ => None,
            };
            seen.push(packet);
            if let Some(reply) = reply {
                let mut out = BytesMut::new();
                reply.encode(ProtocolVersion::V5, &mut out).unwrap();
                stream.write_all(&out).unwrap();
            }
        }
    });
    (port, script)
}

#[test]
fn refused_subscriptions_are_named() {
    let refused = [ReasonCode::NotAuthorized, ReasonCode::TopicFilterInvalid];
    let (port, script) = refusing_broker(refused.to_vec());
    tern()
        .args([
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "a",
            "-t",
            "b",
        ])
        .timeout(PATIENCE)
        .assert()
        .code(1)
        .stderr(
            "subscription to \"a\" refused: 0x87 Not authorized\n\
             subscription to \"b\" refused: 0x8F Topic Filter invalid\n\
             every subscription was refused\n",
        );
    let seen = script.join().unwrap();
    assert!(
        matches!(seen.last(), Some(Packet::Disconnect(_))),
        "{seen:?}"
    );

    // One of two refused: a warning, and the other one stands.
    let (port, script) = refusing_broker(vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQos1]);
    tern()
        .args(["sub", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "a", "-t", "b", "-C", "0"])
        .timeout(PATIENCE)
        .assert()
        .success()
        .stderr("subscription to \"a\" refused: 0x87 Not authorized\n");
    script.join().unwrap();

    // An invalid filter is not even sent.
    let (port, script) = refusing_broker(vec![]);
    tern()
        .args([
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "a/#/b",
        ])
        .timeout(PATIENCE)
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "invalid topic filter \"a/#/b\"",
        ));
    let seen = script.join().unwrap();
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::Subscribe(_))),
        "{seen:?}"
    );
}

#[test]
fn dash_h_is_the_host_and_help_is_long() {
    tern()
        .args(["pub", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("-h, --host <HOST>"))
        .stdout(predicate::str::contains("-D, --property"));
    tern()
        .args(["sub", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("%j"));
    // -h takes a value: the host.
    tern()
        .args(["pub", "-h"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "a value is required for '--host <HOST>'",
        ));
}

/// `on_mosquitto::NAME` and `on_tern::NAME` for each test body `NAME(kind)`.
macro_rules! both_brokers {
    ($($name:ident),* $(,)?) => {
        mod on_mosquitto {
            $(#[test]
            fn $name() {
                super::$name(super::Kind::Mosquitto)
            })*
        }
        mod on_tern {
            $(#[test]
            fn $name() {
                super::$name(super::Kind::Tern)
            })*
        }
    };
}

both_brokers!(
    every_qos_in_both_versions,
    retained_messages_and_clearing_them,
    messages_from_files_standard_input_and_lines_at_qos_2,
    the_will_is_published_when_a_client_dies,
    persistent_sessions_keep_messages_for_later,
    mqtt5_properties_and_formats,
    json_output,
    websocket_and_urls,
);
