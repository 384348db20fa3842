//! The broker-wide memory budget (`max_memory`, issue 13) against a real
//! broker on 127.0.0.1:0: at the budget every refusal is visible to the
//! client, nothing accepted is lost, the budget frees up as clients drain,
//! and the refusals are counted in `$SYS/broker/limits/refused`.

mod common;

use bytes::Bytes;
use common::*;
use std::time::Duration;
use tern_broker::server::memory_budget::MaxMemory;
use tern_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions};

const BUDGET: u64 = 64 * 1024;

fn big(qos: QoS, id: u16, retain: bool) -> Publish {
    Publish {
        qos,
        retain,
        topic: s("m"),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        payload: Bytes::from(vec![b'x'; 4096]),
        ..Publish::default()
    }
}

/// The persistent session that hoards: subscribed to `m` at QoS 1.
fn hoarder() -> tern_codec::Connect {
    let mut c = connect(ProtocolVersion::V5, "hoarder");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(600);
    c
}

#[tokio::test]
async fn at_the_memory_budget_clients_are_refused_visibly_and_nothing_accepted_is_lost() {
    let broker = start_with(|s| {
        s.limits.max_memory = MaxMemory::Bytes(BUDGET);
        // The broker-wide budget alone (a client's share is tested below).
        s.limits.max_memory_per_client = MaxMemory::Bytes(0);
        s.limits.max_queued_messages = 10_000;
        s.limits.sys_interval = Duration::from_millis(50);
    })
    .await;
    let (mut sub, _) = Raw::connect(broker.tcp, hoarder()).await;
    sub.subscribe("m", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Box::default())).await;
    assert_eq!(sub.closed(WAIT).await, vec![]);
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "v3-pub").await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "pub").await;

    // The offline session's queue grows until the budget is spent: then
    // MQTT 5 PUBACK 0x97 Quota exceeded (3.4.2.1), not acknowledged and
    // dropped.
    let mut accepted = 0u16;
    loop {
        let code = publisher
            .publish(big(QoS::AtLeastOnce, accepted + 1, false))
            .await;
        if code != ReasonCode::Success {
            assert_eq!(code, ReasonCode::QuotaExceeded);
            break;
        }
        accepted += 1;
        assert!(accepted < 100, "64 KiB hold far fewer than 100 × 4 KiB");
    }
    assert!(accepted >= 5, "the budget was spent too early: {accepted}");

    // QoS 2: PUBREC 0x97 (3.5.2.1), and no QoS 2 state is kept.
    publisher.send(big(QoS::ExactlyOnce, 500, false)).await;
    match publisher.recv().await {
        Packet::PubRec(r) => assert_eq!(r.reason_code, ReasonCode::QuotaExceeded),
        other => panic!("expected PUBREC 0x97, got {other:?}"),
    }
    // A retained one is refused too (and so not retained: see below).
    assert_eq!(
        publisher.publish(big(QoS::AtLeastOnce, 501, true)).await,
        ReasonCode::QuotaExceeded
    );
    // QoS 0 has no acknowledgement: dropped (the hoarder never gets it).
    publisher.send(big(QoS::AtMostOnce, 0, false)).await;
    // A new subscription: SUBACK 0x97 (3.9.3).
    let ack = publisher
        .subscribe_with(
            7,
            &[("new/#", SubscriptionOptions::with_qos(QoS::AtMostOnce))],
            None,
        )
        .await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::QuotaExceeded]);
    // A new connection: CONNACK 0x89 Server busy (3.2.2.2) ...
    let (mut late, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "late")).await;
    assert_eq!(ack.reason_code, ReasonCode::ServerBusy);
    assert_eq!(late.closed(WAIT).await, vec![]);
    // ... and MQTT 3.1.1 return code 3, Server unavailable.
    let mut late3 = Raw::open(broker.tcp).await;
    late3.send(connect(ProtocolVersion::V3_1_1, "late-3")).await;
    match late3.recv().await {
        Packet::ConnAck(a) => assert_eq!(a.reason_code, ReasonCode::ServerUnavailable),
        other => panic!("expected CONNACK 3, got {other:?}"),
    }
    // MQTT 3.1.1 has no failure code in PUBACK: a QoS 1 PUBLISH closes the
    // connection, unacknowledged, so the client keeps it [MQTT-3.3.5-2].
    v3.send(big(QoS::AtLeastOnce, 1, false)).await;
    assert_eq!(v3.closed(WAIT).await, vec![], "closed without a PUBACK");

    // The hoarder may resume (it drains what it holds): every accepted
    // message arrives, nothing refused does.
    let (mut sub, ack) = Raw::connect(broker.tcp, hoarder()).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(ack.session_present);
    for _ in 0..accepted {
        let p = sub.recv_publish().await;
        assert_eq!(p.payload.len(), 4096);
        assert!(!p.retain);
        sub.ack(&p).await;
    }
    // Nothing more came (the refused messages were not queued).
    sub.ping().await;

    // Drained: the budget has room again.
    let mut watcher = Raw::connected(broker.tcp, ProtocolVersion::V5, "watcher").await;
    let ack = watcher
        .subscribe_with(
            1,
            &[
                ("m", SubscriptionOptions::with_qos(QoS::AtMostOnce)),
                (
                    "$SYS/broker/limits/refused",
                    SubscriptionOptions::with_qos(QoS::AtMostOnce),
                ),
            ],
            None,
        )
        .await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::Success; 2]);
    // `m` has no retained message: the refused retained one was not kept.
    // The refusals (QoS 1, QoS 2, retained, QoS 0, SUBSCRIBE, two CONNECTs,
    // 3.1.1 PUBLISH) are counted.
    loop {
        let p = watcher.recv_publish().await;
        assert_ne!(p.topic.as_str(), "m", "nothing was retained at the budget");
        let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        if n == 8 {
            break;
        }
        assert!(n < 8, "more refusals than made: {n}");
    }
    broker.shutdown().await;
}

/// One anonymous client id cannot spend the whole budget: past its share
/// (`max_memory_per_client`, here its default, a tenth of `max_memory`) its
/// own PUBLISHes are refused (MQTT 5 PUBACK 0x97 Quota exceeded, 3.4.2.1;
/// MQTT 3.1.1 only its connection closed, unacknowledged [MQTT-3.3.5-2]),
/// messages for the sessions it hoards with stop being queued, and an
/// MQTT 3.1.1 QoS 1 bystander pair and new clients go on. Without the share
/// the attack spends the budget and the bystander's publisher is closed.
#[tokio::test]
async fn past_its_share_one_client_is_refused_and_the_others_go_on() {
    let broker = start_with(|s| {
        s.limits.max_memory = MaxMemory::Bytes(512 * 1024);
        s.limits.max_queued_messages = 10_000;
        s.limits.sys_interval = Duration::from_millis(50);
    })
    .await;
    let mut by_sub = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "by-sub").await;
    by_sub.subscribe("by", QoS::AtLeastOnce).await;
    let mut by_pub = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "by-pub").await;
    // Four offline sessions that hoard everything under `hoard/`.
    for i in 0..4 {
        let mut c = connect(ProtocolVersion::V5, &format!("hoarder-{i}"));
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(600);
        let (mut h, _) = Raw::connect(broker.tcp, c).await;
        h.subscribe("hoard/#", QoS::AtLeastOnce).await;
        h.send(Packet::Disconnect(Box::default())).await;
        assert_eq!(h.closed(WAIT).await, vec![]);
    }
    let retained = |n: u16| Publish {
        topic: s(&format!("hoard/{n}")),
        ..big(QoS::AtLeastOnce, n, true)
    };

    // The attacker retains 4 KiB messages on new topics, each queued for
    // the four hoarders, until it is refused: then every one is.
    let mut attacker = Raw::connected(broker.tcp, ProtocolVersion::V5, "attacker").await;
    let mut accepted = 0;
    for n in 1..=200u16 {
        match attacker.publish(retained(n)).await {
            ReasonCode::Success if n == accepted + 1 => accepted += 1,
            code => assert_eq!(code, ReasonCode::QuotaExceeded, "message {n}"),
        }
    }
    assert!(
        (1..200).contains(&accepted),
        "refused after {accepted} of 200 (800 KiB against a 512 KiB budget)"
    );
    // The bystanders go on: every QoS 1 message acknowledged and delivered.
    for n in 1..=20u16 {
        let mut p = publish("by", b"", QoS::AtLeastOnce, n);
        p.payload = Bytes::from(n.to_be_bytes().to_vec());
        assert_eq!(
            by_pub.publish(p).await,
            ReasonCode::Success,
            "bystander {n}"
        );
        let got = by_sub.recv_publish().await;
        assert_eq!(&got.payload[..], &n.to_be_bytes());
        by_sub.ack(&got).await;
    }
    // MQTT 3.1.1 has no failure code in PUBACK: the attacker's 3.1.1
    // connection (the same share: its client id owns the retained
    // messages) is closed.
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "attacker").await;
    v3.send(retained(1000)).await;
    assert_eq!(v3.closed(WAIT).await, vec![], "closed without a PUBACK");

    // A new client is accepted, and sees the refusals counted.
    let mut watcher = Raw::connected(broker.tcp, ProtocolVersion::V5, "watcher").await;
    watcher
        .subscribe("$SYS/broker/limits/refused", QoS::AtMostOnce)
        .await;
    let refusals = 200 - u64::from(accepted) + 1;
    loop {
        let p = watcher.recv_publish().await;
        let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        if n >= refusals {
            break;
        }
    }
    broker.shutdown().await;
}
