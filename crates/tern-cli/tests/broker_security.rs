//! `tern broker --password-file --acl-file --allow-anonymous` as a user
//! runs it, with Debian's mosquitto_pub and mosquitto_sub as the clients:
//! right and wrong passwords in MQTT 3.1.1 and 5, anonymous clients, ACL
//! filtering of deliveries, SIGHUP reloading a changed password file
//! without dropping connections, and errors naming the file.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};
use support::*;
use tern_codec::{Connect, MqttString, Packet, ProtocolVersion, ReasonCode};

fn tern() -> Command {
    Command::cargo_bin("tern").expect("the tern binary is built")
}

/// A scratch directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("tern-cli-sec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn passwd(file: &Path, create: bool, user: &str, password: &str) {
    let mut args = vec!["passwd"];
    if create {
        args.push("-c");
    }
    args.extend(["-b", file.to_str().unwrap(), user, password]);
    tern().args(&args).assert().success();
}

/// mosquitto_pub (or _sub) against the broker; `user` is `(name, password)`.
fn mosquitto(
    tool: &str,
    broker: &BrokerProcess,
    version: &str,
    user: Option<(&str, &str)>,
    args: &[&str],
) -> Output {
    let mut cmd = std::process::Command::new(tool);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.tcp.port().to_string(),
        "-V",
        version,
    ]);
    if let Some((name, password)) = user {
        cmd.args(["-u", name, "-P", password]);
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (Debian's mosquitto-clients): {e}"))
}

fn publishes(broker: &BrokerProcess, version: &str, user: Option<(&str, &str)>) -> Output {
    mosquitto(
        "mosquitto_pub",
        broker,
        version,
        user,
        &["-t", "t", "-m", "x", "-q", "1"],
    )
}

/// Waits until the broker's log has a line containing `needle`.
fn logged(broker: &BrokerProcess, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(line) = broker.stderr.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return;
            }
        }
    }
    panic!("the broker did not log {needle:?}");
}

#[test]
fn help_names_the_security_and_tls_flags_and_settings() {
    let output = tern().args(["broker", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--password-file",
        "--acl-file",
        "--allow-anonymous",
        "[security]",
        "--tls",
        "--wss",
        "--cert",
        "--key",
        "--cafile",
        "--require-certificate",
        "--use-identity-as-username",
        "[tls]",
        "use_identity_as_username",
        "password_file",
        "acl_file",
        "allow_anonymous",
        "SIGHUP",
        "0x86",
        "0x87",
        "connections_per_second_per_listener",
        "wildcard_subscriptions",
        "check_threads_nice",
    ] {
        assert!(
            help.contains(needle),
            "`tern broker --help` does not mention {needle}"
        );
    }
}

#[test]
fn mosquitto_clients_log_in_with_the_right_password_only() {
    let dir = Dir::new("login");
    let file = dir.path("passwd");
    passwd(&file, true, "alice", "secret");
    let (broker, _, _) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            file.to_str().unwrap(),
        ],
        1,
        0,
    );
    for version in ["mqttv311", "mqttv5"] {
        let ok = publishes(&broker, version, Some(("alice", "secret")));
        assert!(ok.status.success(), "{version}: {ok:?}");
        for user in [Some(("alice", "wrong")), Some(("bob", "secret")), None] {
            let refused = publishes(&broker, version, user);
            assert!(!refused.status.success(), "{version} {user:?}: {refused:?}");
            let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
            assert!(
                stderr.contains("not authori") || stderr.contains("bad user"),
                "{version} {user:?}: {stderr}"
            );
        }
    }
    // --allow-anonymous lets clients without a user name in, not wrong passwords.
    let (anon, _, _) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            file.to_str().unwrap(),
            "--allow-anonymous",
        ],
        1,
        0,
    );
    assert!(publishes(&anon, "mqttv5", None).status.success());
    assert!(
        !publishes(&anon, "mqttv5", Some(("alice", "wrong")))
            .status
            .success()
    );
}

/// Written by Debian's `argon2` tool (libargon2, the library mosquitto 2.1
/// hashes with; Debian's mosquitto 2.0.11 cannot write argon2id lines):
/// `echo -n pencil | argon2 SALT -id -t 1 -k 47104 -p 1 -l 64 -e` with
/// mosquitto 2.1's parameters and a 64-byte salt.
const LIBARGON2_LINE: &str = "carol:$argon2id$v=19$m=47104,t=1,p=1$bW9zcXVpdHRvLTIuMS11c2VzLWEtNjQtYnl0ZS1zYWx0LXNvLXRoaXMtb25lLWlzLTY0LWJ5dGVzLWxvbmchIQ$4RzEe4RnxEa8TIw+0x6Dhe5w9wzQmVYFsD4uzjx2NVxAwLjwBl8I3wtlgGQpqMGiwKtDRVzpiXaNKuYAqGxMQw";

#[test]
fn argon2id_lines_as_mosquitto_2_1_writes_them_log_in() {
    let dir = Dir::new("argon2id");
    let file = dir.path("passwd");
    std::fs::write(&file, format!("{LIBARGON2_LINE}\n")).unwrap();
    tern()
        .args(["passwd", "-H", "argon2id", "-b", file.to_str().unwrap()])
        .args(["dana", "s3cret"])
        .assert()
        .success();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\ndana:$argon2id$v=19$m=47104,t=1,p=1$"),
        "{text}"
    );
    let (broker, _, _) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            file.to_str().unwrap(),
        ],
        1,
        0,
    );
    for version in ["mqttv311", "mqttv5"] {
        for user in [("carol", "pencil"), ("dana", "s3cret")] {
            let ok = publishes(&broker, version, Some(user));
            assert!(ok.status.success(), "{version} {user:?}: {ok:?}");
        }
        for user in [("carol", "pencil!"), ("dana", "s3cre")] {
            let refused = publishes(&broker, version, Some(user));
            assert!(!refused.status.success(), "{version} {user:?}");
        }
    }
}

#[test]
fn mosquitto_sub_receives_only_what_the_acl_lets_it_read() {
    let dir = Dir::new("acl");
    let acl = dir.path("acl");
    std::fs::write(&acl, "topic read public/#\ntopic write #\n").unwrap();
    let (broker, _, _) = BrokerProcess::start_with(
        &["--tcp", "127.0.0.1:0", "--acl-file", acl.to_str().unwrap()],
        1,
        0,
    );
    // Retained messages, one readable; then mosquitto_sub takes what arrives.
    for topic in ["secret/a", "public/a"] {
        let out = mosquitto(
            "mosquitto_pub",
            &broker,
            "mqttv311",
            None,
            &["-t", topic, "-m", topic, "-r", "-q", "1"],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let out = mosquitto(
        "mosquitto_sub",
        &broker,
        "mqttv5",
        None,
        &["-t", "#", "-v", "-W", "1"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "public/a public/a\n");
}

#[test]
fn sighup_reloads_a_changed_password_file_and_keeps_connections() {
    let dir = Dir::new("reload");
    let file = dir.path("passwd");
    passwd(&file, true, "alice", "old");
    let (broker, _, _) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            file.to_str().unwrap(),
        ],
        1,
        0,
    );
    let mut client = Raw::open(broker.tcp, ProtocolVersion::V5);
    client.send(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: MqttString::from_static("stays"),
        username: Some(MqttString::from_static("alice")),
        password: Some(bytes::Bytes::from_static(b"old")),
        ..Connect::default()
    });
    match client.next() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    passwd(&file, false, "alice", "new");
    assert!(
        !publishes(&broker, "mqttv5", Some(("alice", "new")))
            .status
            .success(),
        "not yet"
    );
    broker.signal("-HUP");
    logged(&broker, "reloaded");
    assert!(
        publishes(&broker, "mqttv5", Some(("alice", "new")))
            .status
            .success()
    );
    assert!(
        !publishes(&broker, "mqttv5", Some(("alice", "old")))
            .status
            .success()
    );
    // A broken file: logged with its name, the rules in force stay.
    std::fs::write(&file, "alice\n").unwrap();
    broker.signal("-HUP");
    logged(&broker, &file.display().to_string());
    assert!(
        publishes(&broker, "mqttv5", Some(("alice", "new")))
            .status
            .success()
    );
    // The connection made before the reloads is still served.
    client.send(Packet::PingReq);
    assert_eq!(client.next(), Some(Packet::PingResp));
}

/// The reload's log line names the users added, removed and given a new
/// password, and the ACL sections whose rules changed; never a hash.
#[test]
fn sighup_logs_which_users_and_rules_changed() {
    let dir = Dir::new("reload-diff");
    let file = dir.path("passwd");
    passwd(&file, true, "alice", "a");
    passwd(&file, false, "bob", "b");
    passwd(&file, false, "carol", "c");
    let acl = dir.path("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic read a/#\ntopic write b/#\nuser bob\ntopic bob/#\n",
    )
    .unwrap();
    let (broker, _, _) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            file.to_str().unwrap(),
            "--acl-file",
            acl.to_str().unwrap(),
        ],
        1,
        0,
    );
    // carol leaves, dave arrives, bob gets a new password; alice's rules
    // change and bob's go.
    let kept: String = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("carol:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, kept).unwrap();
    passwd(&file, false, "bob", "new");
    passwd(&file, false, "dave", "d");
    std::fs::write(
        &acl,
        "user alice\ntopic read a/#\ntopic read c/#\ntopic deny a/secret\n",
    )
    .unwrap();
    broker.signal("-HUP");
    let line = log_line(&broker, "reloaded the password and ACL files");
    assert!(
        line.contains(
            "users: added [dave], removed [carol], new password [bob]; \
             acl: user alice 2 -> 3 rules (+2 -1), user bob removed (1 rule)"
        ),
        "{line}"
    );
    assert!(!line.contains('$'), "a hash in the log: {line}");
    // Nothing changed: said so.
    broker.signal("-HUP");
    let line = log_line(&broker, "reloaded the password and ACL files");
    assert!(line.ends_with("files: no change"), "{line}");
}

/// The first line of the broker's log containing `needle`.
fn log_line(broker: &BrokerProcess, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(line) = broker.stderr.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return line;
            }
        }
    }
    panic!("the broker did not log {needle:?}");
}

#[test]
fn a_bad_password_or_acl_file_stops_it_naming_the_file_and_line() {
    let dir = Dir::new("bad");
    let acl = dir.path("acl");
    std::fs::write(&acl, "topic read a\nuser\n").unwrap();
    let acl = acl.to_str().unwrap();
    tern()
        .args(["broker", "--tcp", "127.0.0.1:0", "--acl-file", acl])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(acl).and(predicate::str::contains("line 2")));
    tern()
        .args([
            "broker",
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            "/nonexistent/passwd",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/passwd"));
}

/// Waits for a JSON log line whose `message` is `message` and whose fields
/// contain every `(key, value)`; returns it.
fn logged_json(
    broker: &BrokerProcess,
    message: &str,
    fields: &[(&str, &str)],
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = broker.stderr.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if json["message"] == message && fields.iter().all(|(k, v)| json[*k].as_str() == Some(*v)) {
            return json;
        }
        seen.push(line);
    }
    panic!("no {message:?} line with {fields:?} in {seen:#?}");
}

/// `--log-format json`: every refusal (a wrong password, an ACL refusal, a
/// malformed packet) is one WARN line with the client id, the peer address
/// and the reason code.
#[test]
fn refusals_are_logged_as_json_with_client_peer_and_reason_code() {
    let dir = Dir::new("jsonlog");
    let file = dir.path("passwd");
    passwd(&file, true, "alice", "secret");
    let acl = dir.path("acl");
    std::fs::write(&acl, "user alice\ntopic read #\n").unwrap();
    let (broker, _, _) = BrokerProcess::start_with(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--password-file",
            file.to_str().unwrap(),
            "--acl-file",
            acl.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        1,
        0,
    );
    // A wrong password.
    let out = mosquitto(
        "mosquitto_pub",
        &broker,
        "mqttv5",
        Some(("alice", "wrong")),
        &["-i", "wrong-pw", "-t", "t", "-m", "x"],
    );
    assert!(!out.status.success());
    let line = logged_json(
        &broker,
        "refused",
        &[
            ("client_id", "wrong-pw"),
            ("what", "connect"),
            ("reason_code", "0x86"),
        ],
    );
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(
        line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    // One line: no second "refused: connection closed" for it before the
    // next client's.
    let out = mosquitto(
        "mosquitto_pub",
        &broker,
        "mqttv5",
        Some(("alice", "secret")),
        &["-i", "after-wrong-pw", "-t", "a", "-m", "x"],
    );
    assert!(out.status.success());
    let deadline = Instant::now() + WAIT;
    loop {
        let line = broker
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the next client's connect is logged");
        assert!(
            !line.contains("refused: connection closed"),
            "a refused CONNECT logged twice: {line}"
        );
        if line.contains("after-wrong-pw") {
            break;
        }
    }
    // A PUBLISH the ACL does not allow (alice may only read).
    let out = mosquitto(
        "mosquitto_pub",
        &broker,
        "mqttv5",
        Some(("alice", "secret")),
        &["-i", "acl-pub", "-t", "not/hers", "-m", "x", "-q", "1"],
    );
    drop(out);
    logged_json(
        &broker,
        "refused",
        &[
            ("client_id", "acl-pub"),
            ("what", "publish"),
            ("topic", "not/hers"),
            ("reason_code", "0x87"),
        ],
    );
    // A malformed packet after CONNECT: a PUBLISH with an invalid flag (QoS 3).
    let mut raw = Raw::open(broker.tcp, ProtocolVersion::V5);
    raw.send(tern_codec::Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: tern_codec::MqttString::from_static("malformed"),
        username: Some(tern_codec::MqttString::from_static("alice")),
        password: Some(bytes::Bytes::from_static(b"secret")),
        ..tern_codec::Connect::default()
    });
    assert!(matches!(raw.next(), Some(tern_codec::Packet::ConnAck(_))));
    std::io::Write::write_all(&mut raw.stream, &[0x36, 0x03, 0x00, 0x01, b'a']).unwrap();
    let line = logged_json(
        &broker,
        "refused: connection closed",
        &[("client_id", "malformed"), ("reason_code", "0x81")],
    );
    assert!(line["peer"].as_str().is_some(), "{line}");
}

/// SIGHUP reads the settings file's `[limits]` again: each change is
/// logged, new connections get it, and a broken file is logged with its
/// name, key and line while the settings in force stay.
#[test]
fn sighup_reloads_the_settings_files_limits() {
    let dir = Dir::new("hup-limits");
    let config = dir.path("broker.toml");
    let file = |inflight: &str| {
        format!(
            "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[limits]\nmax_inflight = {inflight}\n"
        )
    };
    std::fs::write(&config, file("10")).unwrap();
    let (broker, _, _) = BrokerProcess::start_with(&["--config", config.to_str().unwrap()], 1, 0);
    let receive_maximum = |id: &'static str| {
        let mut client = Raw::open(broker.tcp, ProtocolVersion::V5);
        client.send(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: MqttString::from_static(id),
            ..Connect::default()
        });
        match client.next() {
            Some(Packet::ConnAck(ack)) => ack.properties.receive_maximum.map(|r| r.get()),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    assert_eq!(receive_maximum("before"), Some(10));
    std::fs::write(&config, file("25")).unwrap();
    broker.signal("-HUP");
    logged(&broker, "limits.max_inflight: 10 -> 25");
    assert_eq!(receive_maximum("after"), Some(25));
    std::fs::write(&config, file("0")).unwrap();
    broker.signal("-HUP");
    logged(&broker, "limits.max_inflight");
    assert_eq!(
        receive_maximum("kept"),
        Some(25),
        "the settings in force stay"
    );
}

/// `[limits] connections_per_second_per_listener`, set by a SIGHUP on a
/// running `tern broker` with two listeners: past the rate, the next
/// CONNECT into the first listener gets CONNACK 0x9F and is logged with
/// the setting's name [MQTT-3.2.2-6], while the second listener, same
/// source address, still takes connections.
#[test]
fn sighup_sets_a_per_listener_connection_rate() {
    let dir = Dir::new("hup-listener-rate");
    let config = dir.path("broker.toml");
    let file = |rate: u32| {
        format!(
            "[listeners]\ntcp = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nws = []\n\
             [limits]\nconnections_per_second_per_listener = {rate}\n"
        )
    };
    std::fs::write(&config, file(0)).unwrap();
    let (broker, tcps, _) =
        BrokerProcess::start_with(&["--config", config.to_str().unwrap()], 2, 0);
    let connack = |addr, id: String| {
        let mut client = Raw::open(addr, ProtocolVersion::V5);
        client.send(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: MqttString::try_from(id).unwrap(),
            ..Connect::default()
        });
        match client.next() {
            Some(Packet::ConnAck(ack)) => ack.reason_code,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    for i in 0..5 {
        assert_eq!(connack(tcps[0], format!("free-{i}")), ReasonCode::Success);
    }
    std::fs::write(&config, file(2)).unwrap();
    broker.signal("-HUP");
    logged(
        &broker,
        "limits.connections_per_second_per_listener: 0 -> 2",
    );
    // Two get in within any one second; a machine slow enough to spread
    // them over more than a second only lets more in before the refusal.
    let refused = (0..20)
        .find(|i| connack(tcps[0], format!("rated-{i}")) == ReasonCode::ConnectionRateExceeded);
    assert!(refused.is_some_and(|i| i >= 2), "refused at {refused:?}");
    logged(&broker, "connections_per_second_per_listener");
    assert_eq!(connack(tcps[1], "other".into()), ReasonCode::Success);
}

/// The nice value of the thread named `name` in process `pid` (Linux:
/// /proc/PID/task/TID/stat, field 19), once it is `want` or the wait is over.
#[cfg(target_os = "linux")]
fn thread_nice(pid: u32, name: &str, want: i32) -> i32 {
    // The thread has its name from its spawn, and sets its nice value
    // first thing after: read until it is `want`, or the last value seen
    // once the wait is over.
    let deadline = Instant::now() + WAIT;
    let mut seen = None;
    loop {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
                // The fields after the command name, which is in brackets.
                let Some(end) = stat.rfind(')') else { continue };
                let nice = stat[end + 2..]
                    .split(' ')
                    .nth(16)
                    .and_then(|n| n.parse().ok());
                if nice == Some(want) {
                    return want;
                }
                seen = nice.or(seen);
            }
        }
        if Instant::now() >= deadline {
            return seen.unwrap_or_else(|| panic!("no thread {name} in {pid}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `[security] check_threads_nice` sets the password check threads' nice
/// value on a running `tern broker` (10 when absent); `--check-config`
/// prints it and refuses a value outside -20..19, naming the key.
#[cfg(target_os = "linux")]
#[test]
fn check_threads_run_at_the_configured_nice_value() {
    let dir = Dir::new("check-nice");
    for (line, want) in [("", 10), ("check_threads_nice = 17\n", 17)] {
        let config = dir.path("broker.toml");
        std::fs::write(
            &config,
            format!(
                "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[security]\ncheck_threads = 1\n{line}"
            ),
        )
        .unwrap();
        let (broker, _, _) =
            BrokerProcess::start_with(&["--config", config.to_str().unwrap()], 1, 0);
        assert_eq!(
            thread_nice(broker.broker.pid(), "tern-check-0", want),
            want,
            "{line:?}"
        );
        tern()
            .args(["broker", "--check-config"])
            .arg(&config)
            .assert()
            .code(0)
            .stdout(predicate::str::contains(format!(
                "check_threads_nice = {want}\n"
            )));
    }
    let bad = dir.path("bad.toml");
    std::fs::write(&bad, "[security]\ncheck_threads_nice = 20\n").unwrap();
    tern()
        .args(["broker", "--check-config"])
        .arg(&bad)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("check_threads_nice").and(predicate::str::contains("19")));
}
