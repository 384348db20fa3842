//! `$SYS/broker/store/messages/count` and `.../bytes` mean what mosquitto's
//! do (mosquitto(8): "messages currently held in the message store",
//! "bytes currently held by message payloads in the message store", both
//! "including retained messages and messages queued for durable clients"),
//! checked against a running mosquitto 2.0.11 given the same traffic; and
//! `/metrics` carries the same figures.

mod common;

use common::*;
use std::{net::SocketAddr, time::Duration};
use tern_codec::{Connect, ProtocolVersion, Publish, QoS, ReasonCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Instant,
};

/// What a new subscriber gets (retained) from the broker's `$SYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Store {
    /// `store/messages/count`.
    count: i64,
    /// `store/messages/bytes`.
    bytes: i64,
    /// `retained messages/count`.
    retained: i64,
}

async fn store(addr: SocketAddr, id: &str) -> Store {
    let mut raw = Raw::connected(addr, ProtocolVersion::V5, id).await;
    let options = tern_codec::SubscriptionOptions::with_qos(QoS::AtMostOnce);
    raw.subscribe_with(
        1,
        &[
            ("$SYS/broker/store/messages/+", options),
            ("$SYS/broker/retained messages/count", options),
        ],
        None,
    )
    .await;
    let (mut count, mut bytes, mut retained) = (None, None, None);
    while count.is_none() || bytes.is_none() || retained.is_none() {
        let p = raw.recv_publish().await;
        let value: i64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        match p.topic.as_str() {
            "$SYS/broker/store/messages/count" => count = Some(value),
            "$SYS/broker/store/messages/bytes" => bytes = Some(value),
            "$SYS/broker/retained messages/count" => retained = Some(value),
            other => panic!("{other}"),
        }
    }
    // Gone before the next tick: mosquitto's store also holds what waits
    // to be written to a connected client.
    raw.send(tern_codec::Packet::Disconnect(Default::default()))
        .await;
    raw.closed(WAIT).await;
    Store {
        count: count.unwrap(),
        bytes: bytes.unwrap(),
        retained: retained.unwrap(),
    }
}

/// Two durable subscribers (MQTT 3.1.1, clean session false) to `q/#` go
/// away; two QoS 1 messages (1,000 and 2,000 bytes) are queued for both, a
/// QoS 0 one (not queued for offline clients) goes nowhere, and one
/// retained message of 1,000 bytes is kept.
async fn traffic(addr: SocketAddr) {
    for id in ["store-d1", "store-d2"] {
        let (mut sub, ack) = Raw::connect(
            addr,
            Connect {
                clean_start: false,
                ..connect(ProtocolVersion::V3_1_1, id)
            },
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        sub.subscribe("q/#", QoS::AtLeastOnce).await;
        sub.send(tern_codec::Packet::Disconnect(Default::default()))
            .await;
        sub.closed(WAIT).await;
    }
    let mut publisher = Raw::connected(addr, ProtocolVersion::V3_1_1, "store-pub").await;
    for (i, (topic, size, qos, retain)) in [
        ("q/a", 1000, QoS::AtLeastOnce, false),
        ("q/a", 2000, QoS::AtLeastOnce, false),
        ("q/b", 10, QoS::AtMostOnce, false),
        ("r/1", 1000, QoS::AtMostOnce, true),
    ]
    .into_iter()
    .enumerate()
    {
        let publish = Publish {
            retain,
            payload: vec![b'x'; size].into(),
            ..publish(topic, b"", qos, i as u16 + 1)
        };
        assert_eq!(publisher.publish(publish).await, ReasonCode::Success);
    }
    publisher.ping().await;
}

/// The change after [`traffic`], once a `$SYS` tick has counted it, in
/// the messages in store that are not retained (queued or in flight) and
/// in the store's bytes: mosquitto counts each stored message once however
/// many clients it waits for, retained ones included, and its payload
/// bytes only. (The change in retained messages is not compared: `$SYS`
/// topics are retained messages too, and mosquitto adds some, such as
/// `clients/maximum`, only once they are non-zero.)
async fn store_change(addr: SocketAddr) -> (i64, i64) {
    // Settled: `$SYS` adds topics over its first ticks (each a retained
    // message in store); the same figures more than a tick apart are the
    // starting point (mosquitto, at `sys_interval 1`, ticks once its clock
    // has moved on by more than a whole second: up to 2 s apart).
    let mut before = store(addr, "store-before").await;
    loop {
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let again = store(addr, "store-before").await;
        if (again.count, again.retained) == (before.count, before.retained) {
            break;
        }
        before = again;
    }
    traffic(addr).await;
    // Expected from the traffic: 2 queued messages (each once, though
    // queued for two sessions) and 1 retained: 1,000 + 2,000 + 1,000
    // payload bytes. `$SYS`'s own retained
    // values change length by a few bytes from tick to tick.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = store(addr, "store-after").await;
        let change = (
            (now.count - now.retained) - (before.count - before.retained),
            now.bytes - before.bytes,
        );
        if (change.0 == 2 && (change.1 - 4000).abs() <= 64) || Instant::now() > deadline {
            return change;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn store_messages_count_and_bytes_change_as_mosquittos_do() {
    let mosquitto = tern_testkit::Broker::mosquitto()
        .settings("allow_anonymous true\nsys_interval 1\n")
        .start()
        .expect("mosquitto starts (Debian package `mosquitto`)");
    let tern = start_with(|s| {
        s.limits.sys_interval = Duration::from_millis(100);
        s.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let metrics = tern.running.metrics_addr().expect("a metrics listener");
    let theirs = store_change(mosquitto.tcp()).await;
    let before = scrape(metrics).await;
    let ours = store_change(tern.tcp).await;
    assert_eq!(theirs.0, 2, "mosquitto: {theirs:?}");
    assert!((theirs.1 - 4000).abs() <= 64, "mosquitto: {theirs:?}");
    assert_eq!(
        ours.0, theirs.0,
        "count: tern {ours:?}, mosquitto {theirs:?}"
    );
    assert!(
        (ours.1 - theirs.1).abs() <= 64,
        "bytes: tern {ours:?}, mosquitto {theirs:?}"
    );
    // `/metrics` says the same (counted by the same walk).
    let after = scrape(metrics).await;
    let change = |name: &str| after[name] - before[name];
    assert_eq!(
        change("tern_store_messages") - change("tern_retained_messages"),
        ours.0,
        "{after:?}"
    );
    assert!(
        (change("tern_store_payload_bytes") - ours.1).abs() <= 64,
        "{after:?}"
    );
}

/// `/metrics`' unlabelled samples, by name.
async fn scrape(addr: SocketAddr) -> std::collections::BTreeMap<String, i64> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, v)| Some((name.to_string(), v.trim().parse().ok()?)))
        .collect()
}
