//! `tern bench` against Tern's broker (a child process on port 0): the JSON
//! summary must agree with what the protocol guarantees. At QoS 1 and 2
//! every message published to a matching subscription reaches every
//! subscriber [MQTT-4.3.3], so `delivered == sent × subscribers` exactly;
//! each QoS 1/2 PUBLISH is acknowledged once [MQTT-4.3.2-4], so `acked ==
//! sent`. Counts are small so the tests are quick; no timing is asserted.

mod support;

use serde_json::Value;
use std::{
    path::PathBuf,
    process::{Command, Stdio},
};
use support::*;

fn tern() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tern"))
}

/// A fresh JSON summary path for one test.
fn json_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs `tern bench ARGS --json FILE --quiet` against `broker` and returns
/// the summary; the command must succeed.
fn bench(broker: &BrokerProcess, name: &str, args: &[&str]) -> Value {
    let path = json_path(name);
    let output = tern()
        .arg("bench")
        .args(args)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.tcp.port().to_string(),
            "--quiet",
        ])
        // A loaded machine may stall for seconds: wait long for QoS 1/2.
        .args(["--drain", "60", "--json"])
        .arg(&path)
        .output()
        .expect("tern bench runs");
    assert!(
        output.status.success(),
        "tern bench {args:?} failed: {output:?}"
    );
    read_summary(&path)
}

fn read_summary(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the summary was written"))
        .expect("the summary is JSON")
}

fn u(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {summary:#}"))
}

/// Latency percentiles are present, positive and ordered.
fn assert_latency_sane(summary: &Value, count: u64) {
    let l = &summary["latency_us"];
    let f = |k: &str| {
        l[k].as_f64()
            .unwrap_or_else(|| panic!("latency {k} missing: {summary:#}"))
    };
    assert_eq!(l["count"].as_u64(), Some(count), "{summary:#}");
    assert!(f("min") > 0.0, "{summary:#}");
    assert!(f("min") <= f("p50"), "{summary:#}");
    assert!(f("p50") <= f("p90"), "{summary:#}");
    assert!(f("p90") <= f("p99"), "{summary:#}");
    assert!(f("p99") <= f("p99_9"), "{summary:#}");
    assert!(f("p99_9") <= f("max"), "{summary:#}");
    // Loopback, a few hundred messages: anything near a minute is a bug
    // (a wrong epoch or byte order in the timestamp), not a slow machine.
    assert!(f("max") < 60e6, "{summary:#}");
}

#[test]
fn pubsub_qos1_delivers_every_message_to_every_subscriber_mqtt_4_3_3() {
    let broker = BrokerProcess::start();
    let s = bench(
        &broker,
        "pubsub-q1",
        &[
            "pubsub", "-c", "2", "-S", "3", "-q", "1", "-n", "150", "-t", "q1/%i",
        ],
    );
    assert_eq!(u(&s, "connected"), 5, "{s:#}");
    assert_eq!(u(&s, "sent"), 300, "{s:#}");
    assert_eq!(u(&s, "acked"), 300, "MQTT-4.3.2-4: {s:#}");
    assert_eq!(u(&s, "expected"), 900, "{s:#}");
    assert_eq!(u(&s, "delivered"), 900, "{s:#}");
    assert_eq!(s["delivered_percent"].as_f64(), Some(100.0), "{s:#}");
    assert_eq!(u(&s, "errors"), 0, "{s:#}");
    assert_latency_sane(&s, 900);
    assert!(s["delivered_per_second"].as_f64().unwrap() > 0.0, "{s:#}");
}

#[test]
fn pubsub_qos2_mqtt311_completes_every_flow_mqtt_4_3_3() {
    let broker = BrokerProcess::start();
    // Paced (2 ms apart) with a small window, so the window and the pacing
    // both take part.
    let s = bench(
        &broker,
        "pubsub-q2",
        &[
            "pubsub",
            "-V",
            "311",
            "-c",
            "1",
            "-S",
            "2",
            "-q",
            "2",
            "-n",
            "200",
            "-I",
            "2",
            "--inflight",
            "4",
            "-s",
            "100",
            "-t",
            "q2/x",
            "-T",
            "q2/#",
        ],
    );
    assert_eq!(s["mqtt_version"], "3.1.1");
    assert_eq!(u(&s, "sent"), 200, "{s:#}");
    assert_eq!(
        u(&s, "acked"),
        200,
        "every PUBREC answered and PUBCOMP counted: {s:#}"
    );
    assert_eq!(u(&s, "delivered"), 400, "{s:#}");
    assert_eq!(u(&s, "errors"), 0, "{s:#}");
    assert_latency_sane(&s, 400);
    // 200 messages 2 ms apart take about 0.4 s to publish.
    assert!(s["publish_seconds"].as_f64().unwrap() >= 0.35, "{s:#}");
}

#[test]
fn separate_pub_and_sub_processes_agree_on_the_count() {
    let broker = BrokerProcess::start();
    let port = broker.tcp.port().to_string();
    let sub_json = json_path("sub");
    let mut sub = tern()
        .args(["bench", "sub", "-h", "127.0.0.1", "-p", &port])
        .args([
            "-c", "2", "-t", "ps/#", "-q", "1", "-n", "300", "-d", "60", "--json",
        ])
        .arg(&sub_json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern bench sub starts");
    let stderr = lines(sub.stderr.take().unwrap());
    // Publish only once both subscriptions are in place.
    loop {
        let line = stderr
            .recv_timeout(WAIT)
            .expect("tern bench sub says when it is ready");
        if line.starts_with("tern bench: ready (2 connected") {
            break;
        }
    }
    let p = bench(
        &broker,
        "pub",
        &["pub", "-c", "3", "-q", "1", "-n", "100", "-t", "ps/%i"],
    );
    assert_eq!(u(&p, "sent"), 300, "{p:#}");
    assert_eq!(u(&p, "acked"), 300, "{p:#}");
    assert_eq!(u(&p, "delivered"), 0, "{p:#}");
    let status = sub.wait().expect("tern bench sub exits");
    assert!(status.success(), "{status:?}");
    let s = read_summary(&sub_json);
    assert_eq!(u(&s, "subscribers"), 2, "{s:#}");
    assert_eq!(
        u(&s, "delivered"),
        600,
        "each of 2 subscribers gets all 300: {s:#}"
    );
    assert!(
        s["latency_us"].is_null(),
        "no shared clock across processes: {s:#}"
    );
}

#[test]
fn conn_opens_and_holds_every_connection() {
    let broker = BrokerProcess::start();
    let s = bench(
        &broker,
        "conn",
        &["conn", "-c", "40", "--conn-rate", "400", "-d", "0.3"],
    );
    assert_eq!(u(&s, "connected"), 40, "{s:#}");
    assert_eq!(u(&s, "connect_failed"), 0, "{s:#}");
    assert!(s["connect_rate"].as_f64().unwrap() > 0.0, "{s:#}");
    // 40 connections at 400/s take at least 39/400 s.
    assert!(s["connect_seconds"].as_f64().unwrap() >= 0.095, "{s:#}");
    // The broker saw 40 distinct bench clients connect.
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < 40 {
        let line = broker
            .stderr
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("only {} bench clients in the log", ids.len()));
        if line.contains("client connected") {
            if let Some(id) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("client_id=tern-bench-"))
            {
                ids.insert(id.to_owned());
            }
        }
    }
}

#[test]
fn conn_spreads_connections_over_the_bind_addresses() {
    let broker = BrokerProcess::start();
    let s = bench(
        &broker,
        "bind",
        &[
            "conn",
            "-c",
            "50",
            "--bind",
            "127.0.0.1-127.0.0.3",
            "-d",
            "0.2",
        ],
    );
    assert_eq!(u(&s, "connected"), 50, "{s:#}");
    // The broker logs each client's peer address: round robin over the
    // three sources gives 17, 17 and 16.
    let mut peers = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    while peers.values().map(|ids| ids.len()).sum::<usize>() < 50 {
        let line = broker
            .stderr
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("only {peers:?} in the log"));
        if !line.contains("client connected") {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_owned)
        };
        if let (Some(id), Some(peer)) = (field("client_id=tern-bench-"), field("peer=")) {
            let ip = peer
                .trim_matches('"')
                .rsplit_once(':')
                .unwrap()
                .0
                .to_owned();
            peers.entry(ip).or_default().insert(id);
        }
    }
    let counts: Vec<(String, usize)> = peers
        .iter()
        .map(|(ip, ids)| (ip.clone(), ids.len()))
        .collect();
    assert_eq!(
        counts,
        [("127.0.0.1", 17), ("127.0.0.2", 17), ("127.0.0.3", 16)]
            .map(|(ip, n)| (ip.to_owned(), n))
            .to_vec()
    );
}

#[test]
fn a_bad_bind_range_is_a_usage_error_naming_it() {
    let output = tern()
        .args(["bench", "conn", "--bind", "127.0.0.9-127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.9-127.0.0.1"));
}

#[test]
fn a_missing_broker_is_a_failure_with_a_summary() {
    let port = tern_testkit::unused_port().unwrap();
    let path = json_path("refused");
    let output = tern()
        .args(["bench", "conn", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "3", "-d", "0", "--quiet", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let s = read_summary(&path);
    assert_eq!(u(&s, "connected"), 0, "{s:#}");
    assert_eq!(u(&s, "connect_failed"), 3, "{s:#}");
}

#[test]
fn a_payload_too_small_for_the_timestamp_is_a_usage_error() {
    let output = tern()
        .args(["bench", "pubsub", "-s", "4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 8"));
}
