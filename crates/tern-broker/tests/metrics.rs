//! The monitoring listener: `/metrics` counts what clients really did
//! (messages by QoS, drops by reason), `/health` answers, and the HTTP
//! server keeps its limits against slow and bad clients.

mod common;

use common::*;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tern_codec::{ProtocolVersion, QoS, ReasonCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn start_monitored(f: impl FnOnce(&mut tern_broker::server::BrokerSettings)) -> TestBroker {
    start_with(|s| {
        s.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        f(s);
    })
    .await
}

fn metrics_addr(broker: &TestBroker) -> SocketAddr {
    broker.running.metrics_addr().expect("a metrics listener")
}

/// Sends `request` as is and returns the status code and body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: tern\r\n\r\n")).await
}

/// `/metrics` as `name{labels} -> value`.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_messages_by_qos_and_drops_by_reason() {
    let broker = start_monitored(|s| s.limits.max_queued_messages = 2).await;
    let addr = metrics_addr(&broker);
    let before = scrape(addr).await;
    assert_eq!(before["tern_messages_received_total{qos=\"1\"}"], 0.0);
    assert_eq!(before["tern_connections"], 0.0);

    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "m-sub").await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    // An offline session with a queue of 2: the third message is dropped.
    let mut offline = connect(ProtocolVersion::V3_1_1, "m-offline");
    offline.clean_start = false;
    let (mut away, _) = Raw::connect(broker.tcp, offline).await;
    away.subscribe("m/#", QoS::AtLeastOnce).await;
    away.send(tern_codec::Packet::Disconnect(Default::default()))
        .await;
    away.closed(WAIT).await;

    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "m-pub").await;
    publisher
        .publish(publish("m/a", b"zero", QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish("m/a", b"one", QoS::AtLeastOnce, 1))
        .await;
    publisher
        .publish(publish("m/a", b"two", QoS::ExactlyOnce, 2))
        .await;
    assert_eq!(
        publisher
            .publish(publish("nobody/here", b"x", QoS::AtLeastOnce, 3))
            .await,
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        publisher
            .publish(publish("$SYS/forged", b"x", QoS::AtLeastOnce, 4))
            .await,
        ReasonCode::NotAuthorized
    );
    for _ in 0..3 {
        let p = sub.recv_publish().await;
        sub.ack(&p).await;
    }
    sub.ping().await;

    let m = scrape(addr).await;
    let expect = [
        ("tern_messages_received_total{qos=\"0\"}", 1.0),
        ("tern_messages_received_total{qos=\"1\"}", 3.0),
        ("tern_messages_received_total{qos=\"2\"}", 1.0),
        // To the online subscriber at min(message, granted QoS 1).
        ("tern_messages_sent_total{qos=\"0\"}", 1.0),
        ("tern_messages_sent_total{qos=\"1\"}", 2.0),
        ("tern_messages_sent_total{qos=\"2\"}", 0.0),
        (
            "tern_messages_received_payload_bytes_total{qos=\"1\"}",
            5.0, // "one", "x", "x"
        ),
        (
            "tern_messages_dropped_total{reason=\"no_subscribers\"}",
            1.0,
        ),
        (
            "tern_messages_dropped_total{reason=\"not_authorized\"}",
            1.0,
        ),
        // QoS 0 is not queued offline (queue_qos0 off): one, two fill the
        // queue of 2; nothing dropped for being full yet.
        ("tern_messages_dropped_total{reason=\"queue_full\"}", 0.0),
        ("tern_connections", 2.0),
        ("tern_sessions", 3.0),
        ("tern_sockets_accepted_total", 3.0),
        ("tern_client_connect_total", 3.0),
    ];
    for (name, want) in expect {
        assert_eq!(m.get(name), Some(&want), "{name} in {m:#?}");
    }
    // A third message for the offline session overflows its queue.
    publisher
        .publish(publish("m/a", b"three", QoS::AtLeastOnce, 5))
        .await;
    let m = scrape(addr).await;
    assert_eq!(
        m["tern_messages_dropped_total{reason=\"queue_full\"}"], 1.0,
        "{m:#?}"
    );
    assert!(m["tern_received_bytes_total"] > before["tern_received_bytes_total"]);
    assert!(m["tern_packets_received_total"] >= 14.0, "{m:#?}");

    // The same numbers as JSON for the dashboard, with the busiest topics.
    let (status, json) = get(addr, "/api/stats").await;
    assert_eq!(status, 200);
    assert!(json.contains("\"connections\":2"), "{json}");
    assert!(json.contains("\"no_subscribers\":1"), "{json}");
    broker.shutdown().await;
}

/// With `--data-dir`, `/health` says the store is in use and writing.
#[tokio::test]
async fn health_shows_the_storage_state() {
    let dir = std::env::temp_dir().join(format!("tern-health-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = start_monitored(|s| s.storage.dir = Some(dir.clone())).await;
    let addr = metrics_addr(&broker);
    // A durable session is written to the store before its CONNACK.
    let mut raw = Raw::connected(broker.tcp, tern_codec::ProtocolVersion::V3_1_1, "h").await;
    raw.ping().await;
    assert_eq!(
        get(addr, "/health").await,
        (200, "ok\nstorage: ok\n".to_string())
    );
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn health_and_errors() {
    let broker = start_monitored(|_| {}).await;
    let addr = metrics_addr(&broker);
    assert_eq!(
        get(addr, "/health").await,
        (200, "ok\nstorage: memory\n".to_string())
    );
    assert_eq!(get(addr, "/nope").await.0, 404);
    assert_eq!(
        http(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .0,
        405
    );
    assert_eq!(http(addr, "GARBAGE\r\n\r\n").await.0, 400);
    let (status, page) = get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>Tern broker</title>"));
    // A head larger than the limit is refused, not buffered.
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await;
    assert!(
        String::from_utf8_lossy(&response).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    broker.shutdown().await;
    // Gone with the broker.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn off_by_default() {
    let broker = start().await;
    assert_eq!(broker.running.metrics_addr(), None);
    broker.shutdown().await;
}

/// Clients that connect and say nothing cannot hold off a scrape: with
/// every slot taken by silent connections, a new request is answered at
/// once, and the connections it pushed out are the ones that waited
/// longest. MQTT is not affected, and the rest are closed after the time
/// limit.
#[tokio::test]
async fn silent_http_clients_cannot_hold_off_a_scrape() {
    let broker = start_monitored(|_| {}).await;
    let addr = metrics_addr(&broker);
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // All 40 still connected from our side, the listener full: a scrape
    // and a health check are answered (they were refused until the silent
    // ones timed out).
    let sample = scrape(addr).await;
    assert!(sample.contains_key("tern_connections"), "{sample:?}");
    assert_eq!(get(addr, "/health").await.0, 200);
    // The oldest silent connection was pushed out, closed without an answer.
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, silent[0].read(&mut byte))
        .await
        .expect("the oldest silent connection closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // MQTT goes on.
    let _ = Raw::connected(broker.tcp, ProtocolVersion::V5, "unaffected").await;
    // The newest silent one is closed after the time limit (5 s).
    let last = silent.last_mut().unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), last.read(&mut byte))
        .await
        .expect("closed after the time limit");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    broker.shutdown().await;
}

/// Queue depths are counted with `$SYS` off too (`sys_interval = 0`), on
/// the monitoring listener's own 10 s period: they read 0 for good before.
#[tokio::test]
async fn queue_depths_are_counted_with_sys_off() {
    use tokio::time::Instant;
    let broker = start_monitored(|s| s.limits.sys_interval = Duration::ZERO).await;
    let addr = metrics_addr(&broker);
    let mut offline = connect(ProtocolVersion::V3_1_1, "q-offline");
    offline.clean_start = false;
    let (mut away, _) = Raw::connect(broker.tcp, offline).await;
    away.subscribe("q/#", QoS::AtLeastOnce).await;
    away.send(tern_codec::Packet::Disconnect(Default::default()))
        .await;
    away.closed(WAIT).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "q-pub").await;
    for id in 1..=3 {
        let code = publisher
            .publish(publish("q/a", b"queued", QoS::AtLeastOnce, id))
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    // Counted within one period (10 s); the deadline leaves room for load.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(addr).await;
        if m["tern_messages_queued"] == 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "queues never counted: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.shutdown().await;
}

/// mosquitto(8)'s `$SYS/broker/messages/inflight` ("the number of
/// messages with QoS>0 that are awaiting acknowledgments"), and the same
/// figure in `/metrics`: a subscriber that does not acknowledge holds one.
#[tokio::test]
async fn inflight_messages_are_counted() {
    use tokio::time::Instant;
    let broker = start_monitored(|s| s.limits.sys_interval = Duration::from_millis(100)).await;
    let addr = metrics_addr(&broker);
    let mut slow = Raw::connected(broker.tcp, ProtocolVersion::V5, "i-slow").await;
    slow.subscribe("i/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "i-pub").await;
    let code = publisher
        .publish(publish("i/a", b"unacknowledged", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(code, ReasonCode::Success);
    // Received and not acknowledged (`recv_publish` would acknowledge).
    let got = match slow.recv().await {
        tern_codec::Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let mut sys = Raw::connected(broker.tcp, ProtocolVersion::V5, "i-sys").await;
    sys.subscribe("$SYS/broker/messages/inflight", QoS::AtMostOnce)
        .await;
    loop {
        let p = sys.recv_publish().await;
        if &p.payload[..] == b"1" {
            break;
        }
    }
    let deadline = Instant::now() + WAIT;
    while scrape(addr).await["tern_messages_inflight"] != 1.0 {
        assert!(Instant::now() < deadline, "inflight never 1 in /metrics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Acknowledged: back to 0.
    slow.ack(&got).await;
    loop {
        let p = sys.recv_publish().await;
        if &p.payload[..] == b"0" {
            break;
        }
    }
    broker.shutdown().await;
}

/// The drops that happen inside sessions and at the client's quota are
/// counted too: too large for a subscriber, expired while queued, over the
/// client's Receive Maximum.
#[tokio::test]
async fn drops_too_large_expired_and_quota_are_counted() {
    use tern_codec::{Packet, Publish, PublishProperties};
    let broker = start_monitored(|s| {
        s.limits.max_inflight = std::num::NonZeroU16::new(2).unwrap();
    })
    .await;
    let addr = metrics_addr(&broker);
    let dropped = |m: &BTreeMap<String, f64>, reason: &str| {
        m[&format!("tern_messages_dropped_total{{reason=\"{reason}\"}}")]
    };

    // Too large: a subscriber allowing 100-byte packets, a 200-byte payload.
    let mut small = connect(ProtocolVersion::V5, "d-small");
    small.properties.maximum_packet_size = std::num::NonZeroU32::new(100);
    let (mut sub, _) = Raw::connect(broker.tcp, small).await;
    sub.subscribe("d/size", QoS::AtMostOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "d-pub").await;
    let big: &'static [u8] = Box::leak(vec![b'y'; 200].into_boxed_slice());
    publisher
        .publish(publish("d/size", big, QoS::AtLeastOnce, 1))
        .await;
    publisher
        .publish(publish("d/size", b"fits", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(sub.recv_publish().await.payload, "fits");
    assert_eq!(dropped(&scrape(addr).await, "too_large"), 1.0);

    // Expired: queued for an offline session with a 1 s expiry interval.
    let mut away = connect(ProtocolVersion::V5, "d-away");
    away.clean_start = false;
    away.properties.session_expiry_interval = Some(60);
    let (mut sub, _) = Raw::connect(broker.tcp, away.clone()).await;
    sub.subscribe("d/exp", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Default::default())).await;
    sub.closed(WAIT).await;
    publisher
        .publish(Publish {
            properties: PublishProperties {
                message_expiry_interval: Some(1),
                ..PublishProperties::default()
            }
            .into(),
            ..publish("d/exp", b"short", QoS::AtLeastOnce, 3)
        })
        .await;
    publisher
        .publish(publish("d/exp", b"marker", QoS::AtLeastOnce, 4))
        .await;
    // The behaviour under test is the passing of time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mut sub, _) = Raw::connect(broker.tcp, away).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.payload, "marker");
    assert_eq!(dropped(&scrape(addr).await, "expired"), 1.0);

    // Quota: a third QoS 2 message unreleased with a Receive Maximum of 2.
    let mut greedy = Raw::connected(broker.tcp, ProtocolVersion::V5, "d-greedy").await;
    for id in 1..=3 {
        greedy
            .send(publish("d/quota", b"q2", QoS::ExactlyOnce, id))
            .await;
    }
    greedy
        .disconnected_with(ReasonCode::ReceiveMaximumExceeded)
        .await;
    let m = scrape(addr).await;
    assert_eq!(dropped(&m, "quota"), 1.0, "{m:#?}");
    assert_eq!(dropped(&m, "queue_full"), 0.0);
    broker.shutdown().await;
}
