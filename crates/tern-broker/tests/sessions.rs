//! Sessions end to end: offline queues, session present, expiry; and
//! retained messages.

mod common;

use common::*;
use std::time::Duration;
use tern_codec::{Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

fn persistent(version: ProtocolVersion, id: &str, expiry: Option<u32>) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = expiry;
    c
}

async fn leave(mut raw: Raw) {
    raw.send(Disconnect::new(ReasonCode::Success)).await;
    assert!(raw.closed(WAIT).await.is_empty());
}

#[tokio::test]
async fn an_offline_queue_is_delivered_in_order_with_session_present_mqtt_4_6_0_1() {
    let broker = start().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("offline-{version}");
        let session = persistent(version, &id, version.is_v5().then_some(600));
        let (mut sub, ack) = Raw::connect(broker.tcp, session.clone()).await;
        assert!(!ack.session_present);
        sub.subscribe("queue/t", QoS::AtLeastOnce).await;
        leave(sub).await;

        let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "queue-pub").await;
        for n in 1..=5u16 {
            let payload: &'static [u8] = Box::leak(n.to_string().into_bytes().into_boxed_slice());
            let qos = if n % 2 == 0 {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            };
            publisher.publish(publish("queue/t", payload, qos, n)).await;
        }
        // QoS 0 is not queued for offline sessions (queue_qos0 is off).
        publisher
            .publish(publish("queue/t", b"qos0", QoS::AtMostOnce, 0))
            .await;
        leave(publisher).await;

        let (mut sub, ack) = Raw::connect(broker.tcp, session).await;
        assert!(ack.session_present, "{version}");
        for n in 1..=5 {
            let got = sub.recv_publish().await;
            assert_eq!(got.payload, n.to_string(), "{version}");
            assert_eq!(got.qos, QoS::AtLeastOnce);
        }
        sub.ping().await;
        leave(sub).await;
    }
}

#[tokio::test]
async fn rumqttc_persistent_session_gets_what_it_missed() {
    let broker = start().await;
    let (mut sub, _) = V4::connect(broker.tcp, "rumqttc-persistent", |o| {
        o.set_clean_session(false);
    })
    .await;
    sub.subscribe("missed/t", rumqttc::QoS::AtLeastOnce).await;
    sub.client.disconnect().await.unwrap();
    sub.connection_lost().await;
    drop(sub);

    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "missed-pub").await;
    publisher
        .publish(publish("missed/t", b"while away", QoS::AtLeastOnce, 1))
        .await;

    let (mut sub, ack) = V4::connect(broker.tcp, "rumqttc-persistent", |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present);
    assert_eq!(&sub.next_publish().await.payload[..], b"while away");
}

#[tokio::test]
async fn a_clean_start_discards_the_old_session() {
    let broker = start().await;
    let (mut sub, _) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "clean", Some(600)),
    )
    .await;
    sub.subscribe("clean/t", QoS::AtLeastOnce).await;
    leave(sub).await;
    let (mut sub, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "clean")).await;
    assert!(!ack.session_present);
    // The old subscription is gone too.
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "clean-pub").await;
    let code = publisher
        .publish(publish("clean/t", b"x", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(code, ReasonCode::NoMatchingSubscribers);
    sub.ping().await;
}

#[tokio::test]
async fn session_expiry_removes_the_session_mqtt_4_1_0_2() {
    let broker = start().await;
    // Expiry 0 (the MQTT 5 default): the session ends with the connection.
    let (mut sub, _) =
        Raw::connect(broker.tcp, persistent(ProtocolVersion::V5, "exp-0", None)).await;
    sub.subscribe("exp/t", QoS::AtLeastOnce).await;
    leave(sub).await;
    let (_sub, ack) =
        Raw::connect(broker.tcp, persistent(ProtocolVersion::V5, "exp-0", None)).await;
    assert!(!ack.session_present);

    // Expiry 1 s: present right after, gone once the second has passed.
    let (mut sub, _) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "exp-1", Some(1)),
    )
    .await;
    sub.subscribe("exp/t", QoS::AtLeastOnce).await;
    leave(sub).await;
    let (sub, ack) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "exp-1", Some(1)),
    )
    .await;
    assert!(ack.session_present);
    leave(sub).await;
    // The behaviour under test is the passing of time.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "exp-pub").await;
    let code = publisher
        .publish(publish("exp/t", b"x", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(
        code,
        ReasonCode::NoMatchingSubscribers,
        "the subscription went with the session"
    );
    let (_sub, ack) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "exp-1", Some(1)),
    )
    .await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn retained_messages_are_set_replaced_cleared_and_sent_on_subscribe_mqtt_3_3_1_5_to_7() {
    let broker = start().await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "retain-pub").await;
    let retained = |payload: &'static [u8], id| Publish {
        retain: true,
        ..publish("retained/t", payload, QoS::AtLeastOnce, id)
    };
    publisher.publish(retained(b"first", 1)).await;
    publisher.publish(retained(b"second", 2)).await;

    let versions = [
        (ProtocolVersion::V3_1_1, &b"second"[..], &b"third"[..]),
        (ProtocolVersion::V5, &b"third"[..], &b"fourth"[..]),
    ];
    for (n, (version, stored, replacement)) in versions.into_iter().enumerate() {
        let mut sub = Raw::connected(broker.tcp, version, &format!("retain-{version}")).await;
        sub.subscribe("retained/#", QoS::AtLeastOnce).await;
        let got = sub.recv_publish().await;
        assert_eq!(
            (got.payload.as_ref(), got.retain),
            (stored, true),
            "{version}"
        );
        assert_eq!(got.qos, QoS::AtLeastOnce);
        sub.ping().await;
        // Forwarded live, the RETAIN flag is cleared (no Retain As Published).
        let payload: &'static [u8] = Box::leak(replacement.to_vec().into_boxed_slice());
        publisher.publish(retained(payload, 3 + n as u16)).await;
        let got = sub.recv_publish().await;
        assert_eq!((got.payload.as_ref(), got.retain), (replacement, false));
    }

    // An empty retained payload clears it (and is itself delivered live).
    publisher.publish(retained(b"", 9)).await;
    let mut late = Raw::connected(broker.tcp, ProtocolVersion::V5, "retain-late").await;
    late.subscribe("retained/#", QoS::AtLeastOnce).await;
    late.ping().await;
}

#[tokio::test]
async fn the_offline_queue_is_bounded_and_drops_are_counted_in_sys() {
    let broker = start_with(|s| {
        s.limits.max_queued_messages = 3;
        s.limits.sys_interval = Duration::from_millis(100);
    })
    .await;
    let session = persistent(ProtocolVersion::V5, "bounded", Some(600));
    let (mut sub, _) = Raw::connect(broker.tcp, session.clone()).await;
    sub.subscribe("bounded/t", QoS::AtLeastOnce).await;
    leave(sub).await;

    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "bounded-pub").await;
    for n in 1..=5u16 {
        let payload: &'static [u8] = Box::leak(n.to_string().into_bytes().into_boxed_slice());
        publisher
            .publish(publish("bounded/t", payload, QoS::AtLeastOnce, n))
            .await;
    }
    // The two that did not fit are counted, and the count is visible.
    let mut sys = Raw::connected(broker.tcp, ProtocolVersion::V5, "bounded-sys").await;
    sys.subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
        .await;
    loop {
        let got = sys.recv_publish().await;
        let dropped: u64 = std::str::from_utf8(&got.payload).unwrap().parse().unwrap();
        assert!(dropped <= 2, "{dropped}");
        if dropped == 2 {
            break;
        }
    }
    // The first three are kept (the newest are dropped), in order.
    let (mut sub, ack) = Raw::connect(broker.tcp, session).await;
    assert!(ack.session_present);
    for n in 1..=3 {
        assert_eq!(sub.recv_publish().await.payload, n.to_string());
    }
    sub.ping().await;
}

#[tokio::test]
async fn the_offline_queue_is_bounded_in_bytes_too() {
    let broker = start_with(|s| s.limits.max_queued_bytes = 2500).await;
    let session = persistent(ProtocolVersion::V3_1_1, "bounded-bytes", None);
    let (mut sub, _) = Raw::connect(broker.tcp, session.clone()).await;
    sub.subscribe("bytes/t", QoS::AtLeastOnce).await;
    leave(sub).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "bytes-pub").await;
    for n in 1..=5u16 {
        let mut p = publish("bytes/t", b"", QoS::AtLeastOnce, n);
        p.payload = bytes::Bytes::from(vec![b'0' + n as u8; 1000]);
        publisher.publish(p).await;
    }
    let (mut sub, ack) = Raw::connect(broker.tcp, session).await;
    assert!(ack.session_present);
    // 2 × ~1 kB fit in 2.5 kB, the third does not.
    for n in 1..=2u8 {
        assert_eq!(sub.recv_publish().await.payload[0], b'0' + n);
    }
    sub.ping().await;
}

#[tokio::test]
async fn qos_0_is_queued_for_offline_sessions_when_configured() {
    let broker = start_with(|s| s.limits.queue_qos0 = true).await;
    let session = persistent(ProtocolVersion::V5, "qos0-kept", Some(600));
    let (mut sub, _) = Raw::connect(broker.tcp, session.clone()).await;
    sub.subscribe("q0/t", QoS::AtLeastOnce).await;
    leave(sub).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "qos0-pub").await;
    publisher
        .publish(publish("q0/t", b"zero", QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish("q0/t", b"one", QoS::AtLeastOnce, 1))
        .await;
    let (mut sub, ack) = Raw::connect(broker.tcp, session).await;
    assert!(ack.session_present);
    let got = sub.recv_publish().await;
    assert_eq!(
        (got.payload.as_ref(), got.qos),
        (&b"zero"[..], QoS::AtMostOnce)
    );
    assert_eq!(sub.recv_publish().await.payload, "one");
}

#[tokio::test]
async fn qos_2_flows_cut_in_the_middle_finish_on_the_resumed_session_mqtt_4_4_0_1() {
    let broker = start().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let sub_id = format!("cut-sub-{version}");
        let pub_id = format!("cut-pub-{version}");
        let expiry = version.is_v5().then_some(600);
        let (mut sub, _) = Raw::connect(broker.tcp, persistent(version, &sub_id, expiry)).await;
        sub.subscribe("cut/t", QoS::ExactlyOnce).await;

        // Publisher: PUBLISH, PUBREC, PUBREL sent, then the connection dies
        // before PUBCOMP. On the resumed session it sends PUBREL again and
        // must get its PUBCOMP; the message is delivered once.
        let (mut publisher, _) =
            Raw::connect(broker.tcp, persistent(version, &pub_id, expiry)).await;
        publisher
            .send(publish("cut/t", b"once", QoS::ExactlyOnce, 7))
            .await;
        assert!(matches!(publisher.recv().await, Packet::PubRec(r) if r.packet_id == pid(7)));
        publisher.send(tern_codec::PubRel::new(pid(7))).await;
        drop(publisher);

        // Subscriber: PUBLISH, PUBREC sent, PUBREL received, then its
        // connection dies before PUBCOMP: the broker sends PUBREL again.
        let got = match sub.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        assert_eq!(got.payload, "once");
        let id = got.packet_id.unwrap();
        sub.send(tern_codec::PubRec::new(id)).await;
        assert!(matches!(sub.recv().await, Packet::PubRel(r) if r.packet_id == id));
        drop(sub);

        let (mut publisher, ack) =
            Raw::connect(broker.tcp, persistent(version, &pub_id, expiry)).await;
        assert!(ack.session_present, "{version}");
        publisher.send(tern_codec::PubRel::new(pid(7))).await;
        match publisher.recv().await {
            Packet::PubComp(c) => {
                assert_eq!(c.packet_id, pid(7));
                // 0x92 if the first PUBREL was handled before the cut: "not
                // an error during recovery" (§3.7.2.1).
                assert!(
                    matches!(
                        c.reason_code,
                        ReasonCode::Success | ReasonCode::PacketIdentifierNotFound
                    ),
                    "{version}: {:?}",
                    c.reason_code
                );
            }
            other => panic!("expected PUBCOMP, got {other:?}"),
        }

        let (mut sub, ack) = Raw::connect(broker.tcp, persistent(version, &sub_id, expiry)).await;
        assert!(ack.session_present, "{version}");
        match sub.recv().await {
            Packet::PubRel(r) => {
                assert_eq!(r.packet_id, id);
                sub.send(tern_codec::PubComp::new(id)).await;
            }
            other => panic!("{version}: expected PUBREL again, got {other:?}"),
        }
        // Nothing else: the message is not delivered a second time.
        sub.ping().await;
        leave(sub).await;
        leave(publisher).await;
    }
}

#[tokio::test]
async fn a_retained_message_expires_mqtt_3_3_2_5() {
    let broker = start().await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "expiring-pub").await;
    let mut p = Publish {
        retain: true,
        ..publish("fading/t", b"soon gone", QoS::AtLeastOnce, 1)
    };
    p.properties.message_expiry_interval = Some(1);
    publisher.publish(p).await;
    let mut early = Raw::connected(broker.tcp, ProtocolVersion::V5, "fading-early").await;
    early.subscribe("fading/#", QoS::AtLeastOnce).await;
    let got = early.recv_publish().await;
    assert!(got.retain);
    assert!(
        got.properties
            .message_expiry_interval
            .is_some_and(|s| s <= 1),
        "{:?}",
        got.properties
    );
    // The behaviour under test is the passing of time.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut late = Raw::connected(broker.tcp, ProtocolVersion::V5, "fading-late").await;
    late.subscribe("fading/#", QoS::AtLeastOnce).await;
    late.ping().await;
}

#[tokio::test]
async fn disconnect_can_change_the_session_expiry_interval() {
    // §3.14.2.2.2.
    let broker = start().await;
    // 600 at CONNECT, 0 at DISCONNECT: the session ends with the connection.
    let (mut sub, _) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "shortened", Some(600)),
    )
    .await;
    sub.subscribe("short/t", QoS::AtLeastOnce).await;
    let mut bye = Disconnect::new(ReasonCode::Success);
    bye.properties.session_expiry_interval = Some(0);
    sub.send(bye).await;
    assert!(sub.closed(WAIT).await.is_empty());
    let (_sub, ack) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "shortened", Some(600)),
    )
    .await;
    assert!(!ack.session_present);

    // 0 at CONNECT, non-zero at DISCONNECT: a protocol error (§3.14.2.2.2):
    // DISCONNECT 0x82, the session still ends, and the will goes out.
    let mut w = Raw::connected(broker.tcp, ProtocolVersion::V5, "short-watch").await;
    w.subscribe("short/will", QoS::AtLeastOnce).await;
    let mut c = persistent(ProtocolVersion::V5, "lengthened", None);
    c.will = Some(tern_codec::Will {
        topic: s("short/will"),
        payload: bytes::Bytes::from_static(b"protocol error"),
        qos: QoS::AtLeastOnce,
        ..tern_codec::Will::default()
    });
    let (mut sub, _) = Raw::connect(broker.tcp, c).await;
    let mut bye = Disconnect::new(ReasonCode::Success);
    bye.properties.session_expiry_interval = Some(600);
    sub.send(bye).await;
    sub.disconnected_with(ReasonCode::ProtocolError).await;
    assert_eq!(w.recv_publish().await.payload, "protocol error");
    let (_sub, ack) = Raw::connect(
        broker.tcp,
        persistent(ProtocolVersion::V5, "lengthened", None),
    )
    .await;
    assert!(!ack.session_present);
}
