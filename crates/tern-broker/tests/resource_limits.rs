//! Resource limits (issue 13) against a real broker on 127.0.0.1:0: each
//! refusal is visible to the client (a reason code, or for MQTT 3.1.1 a
//! refusal code or a closed connection), nothing refused is kept, and each
//! is counted in `$SYS/broker/limits/refused`.

mod common;

use bytes::Bytes;
use common::*;
use std::time::Duration;
use tern_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions};

/// A topic (or filter) of `levels` levels.
fn deep(levels: usize) -> String {
    vec!["l"; levels].join("/")
}

fn deep_publish(topic: &str, qos: QoS, id: u16) -> Publish {
    Publish {
        qos,
        retain: true,
        topic: s(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        payload: Bytes::from_static(b"deep"),
        ..Publish::default()
    }
}

/// Waits for `$SYS/broker/limits/refused` to read `want` (retained, and
/// republished at a `$SYS` tick when it changes); fails after [`WAIT`].
async fn refusals(broker: &TestBroker, want: u64) {
    let mut sys = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-limits").await;
    sys.subscribe("$SYS/broker/limits/refused", QoS::AtMostOnce)
        .await;
    let mut seen = Vec::new();
    loop {
        let p = sys.recv_publish().await;
        let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        if n == want {
            return;
        }
        seen.push(n);
        assert!(n < want, "limits/refused went past {want}: {seen:?}");
    }
}

fn with_sys(s: &mut tern_broker::server::BrokerSettings) {
    s.limits.sys_interval = Duration::from_millis(50);
    s.limits.max_topic_levels = 8;
    s.limits.max_subscriptions = 3;
}

#[tokio::test]
async fn a_publish_deeper_than_max_topic_levels_is_refused_and_not_retained() {
    let broker = start_with(with_sys).await;
    let ok = deep(8);
    let too_deep = deep(9);

    // MQTT 5: PUBACK / PUBREC 0x90 Topic Name invalid ("not accepted by
    // this Server", 3.4.2.1 and 3.5.2.1): refused visibly, never
    // acknowledged and dropped.
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "deep-5").await;
    assert_eq!(
        v5.publish(deep_publish(&too_deep, QoS::AtLeastOnce, 1))
            .await,
        ReasonCode::TopicNameInvalid
    );
    v5.send(deep_publish(&too_deep, QoS::ExactlyOnce, 2)).await;
    match v5.recv().await {
        Packet::PubRec(r) => assert_eq!(r.reason_code, ReasonCode::TopicNameInvalid),
        other => panic!("expected PUBREC 0x90, got {other:?}"),
    }
    // QoS 0 has no acknowledgement: dropped; the connection stays.
    v5.send(deep_publish(&too_deep, QoS::AtMostOnce, 0)).await;
    assert_eq!(
        v5.publish(deep_publish(&ok, QoS::AtLeastOnce, 3)).await,
        ReasonCode::NoMatchingSubscribers,
        "as deep as allowed is accepted"
    );

    // MQTT 3.1.1 cannot say no in a PUBACK: the connection is closed
    // [MQTT-3.3.5-2] rather than the message acknowledged and dropped.
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "deep-3").await;
    v3.send(deep_publish(&too_deep, QoS::AtLeastOnce, 1)).await;
    assert_eq!(v3.closed(WAIT).await, vec![], "closed without a PUBACK");

    // Only the allowed one was retained.
    let mut reader = Raw::connected(broker.tcp, ProtocolVersion::V5, "deep-reader").await;
    reader.subscribe("l/#", QoS::AtMostOnce).await;
    assert_eq!(reader.recv_publish().await.topic.as_str(), ok);
    reader.ping().await; // nothing else came before the PINGRESP

    // 0x90 twice, the QoS 0 drop, the 3.1.1 close.
    refusals(&broker, 4).await;
}

#[tokio::test]
async fn a_filter_deeper_than_max_topic_levels_gets_its_own_refusal_code() {
    let broker = start_with(with_sys).await;
    let opts = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let (ok, too_deep) = (deep(8), deep(9));
    let filters = [(too_deep.as_str(), opts), (ok.as_str(), opts)];

    // MQTT 5: 0x8F Topic Filter invalid for that filter only (3.9.3), in
    // order [MQTT-3.9.3-1].
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "filters-5").await;
    let ack = v5.subscribe_with(1, &filters, None).await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::TopicFilterInvalid, ReasonCode::GrantedQos1]
    );
    // MQTT 3.1.1: 0x80 Failure [MQTT-3.9.3-2].
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "filters-3").await;
    let ack = v3.subscribe_with(1, &filters, None).await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::UnspecifiedError, ReasonCode::GrantedQos1]
    );
    refusals(&broker, 2).await;
}

#[tokio::test]
async fn subscriptions_past_max_subscriptions_get_quota_exceeded() {
    let broker = start_with(with_sys).await;
    let opts = SubscriptionOptions::with_qos(QoS::AtMostOnce);
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "many-5").await;
    let ack = v5
        .subscribe_with(
            1,
            &[("a", opts), ("b", opts), ("c", opts), ("d", opts)],
            None,
        )
        .await;
    // The fourth is past the limit of 3: 0x97 Quota exceeded (3.9.3).
    assert_eq!(
        ack.reason_codes,
        vec![
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded
        ]
    );
    // Replacing one adds none; after an UNSUBSCRIBE there is room again.
    let ack = v5.subscribe_with(2, &[("a", opts)], None).await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::Success]);
    v5.send(tern_codec::Unsubscribe {
        packet_id: pid(3),
        filters: vec![s("b")],
        properties: Default::default(),
    })
    .await;
    assert!(matches!(v5.recv().await, Packet::UnsubAck(_)));
    let ack = v5.subscribe_with(4, &[("d", opts)], None).await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::Success]);

    // MQTT 3.1.1: 0x80 Failure [MQTT-3.9.3-2].
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "many-3").await;
    let ack = v3
        .subscribe_with(
            1,
            &[("a", opts), ("b", opts), ("c", opts), ("d", opts)],
            None,
        )
        .await;
    assert_eq!(ack.reason_codes[3], ReasonCode::UnspecifiedError);
    refusals(&broker, 2).await;
}

#[tokio::test]
async fn a_client_without_receive_maximum_gets_max_inflight_messages_and_in_flight_counts_as_queued()
 {
    let broker = start_with(|s| {
        s.limits.max_inflight_messages = std::num::NonZeroU16::new(20).unwrap();
        s.limits.max_queued_messages = 30;
    })
    .await;
    // MQTT 3.1.1 has no Receive Maximum: the broker's own bound applies.
    let mut slow = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "never-acks").await;
    slow.subscribe("q", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "q-publisher").await;
    for id in 1..=40 {
        // 30 held at most, in flight included; the rest refused (0x97).
        let want = if id <= 30 {
            ReasonCode::Success
        } else {
            ReasonCode::QuotaExceeded
        };
        assert_eq!(
            publisher
                .publish(publish("q", b"m", QoS::AtLeastOnce, id))
                .await,
            want
        );
    }
    let mut first = Vec::new();
    for _ in 0..20 {
        match slow.recv().await {
            Packet::Publish(p) => first.push(p),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    // No 21st before the PINGRESP: 20 in flight, the rest wait.
    slow.ping().await;
    for p in &first {
        slow.ack(p).await;
    }
    // 30 held at most, in flight included: 10 more, then nothing.
    for _ in 0..10 {
        let _ = slow.recv_publish().await;
    }
    slow.ping().await;
}

#[tokio::test]
async fn a_qos1_message_no_queue_has_room_for_is_refused_with_quota_exceeded() {
    let broker = start_with(|s| s.limits.max_queued_messages = 1).await;
    // A persistent session, offline: its queue holds one message.
    let mut c = connect(ProtocolVersion::V5, "offline-1");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(600);
    let (mut sub, _) = Raw::connect(broker.tcp, c.clone()).await;
    sub.subscribe("o", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Box::default())).await;
    assert_eq!(sub.closed(WAIT).await, vec![]);

    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "o-pub").await;
    assert_eq!(
        publisher
            .publish(publish("o", b"1", QoS::AtLeastOnce, 1))
            .await,
        ReasonCode::Success
    );
    // Nobody can take the second: refused visibly, not acknowledged and
    // dropped (MQTT 5 PUBACK 0x97 Quota exceeded, 3.4.2.1).
    assert_eq!(
        publisher
            .publish(publish("o", b"2", QoS::AtLeastOnce, 2))
            .await,
        ReasonCode::QuotaExceeded
    );
    // The one accepted is delivered when the session comes back.
    let (mut sub, ack) = Raw::connect(broker.tcp, c).await;
    assert!(ack.session_present);
    assert_eq!(&sub.recv_publish().await.payload[..], b"1");
    sub.ping().await;
}

#[tokio::test]
async fn retained_messages_for_a_new_subscription_are_all_delivered_however_small_the_queue() {
    let broker = start_with(|s| s.limits.max_queued_messages = 10).await;
    const N: u16 = 500;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "r-pub").await;
    for i in 1..=N {
        let mut p = publish(&format!("r/{i}"), b"v", QoS::AtLeastOnce, i);
        p.retain = true;
        assert_eq!(
            publisher.publish(p).await,
            ReasonCode::NoMatchingSubscribers
        );
    }
    // Retained messages pass through the queue as it drains: all of them,
    // though the queue holds 10 [MQTT-3.3.1-9] (3.1.1 [MQTT-3.3.1-6]).
    for (version, qos) in [
        (ProtocolVersion::V5, QoS::AtMostOnce),
        (ProtocolVersion::V3_1_1, QoS::AtLeastOnce),
    ] {
        let mut sub = Raw::connected(broker.tcp, version, &format!("r-sub-{version}")).await;
        sub.subscribe("r/#", qos).await;
        let mut got = std::collections::BTreeSet::new();
        for _ in 0..N {
            let p = sub.recv_publish().await;
            assert!(p.retain);
            got.insert(p.topic.as_str().to_string());
        }
        assert_eq!(got.len(), usize::from(N));
        sub.ping().await;
    }
}

fn short_topics(s: &mut tern_broker::server::BrokerSettings) {
    s.limits.sys_interval = Duration::from_millis(50);
    // Room for `$SYS/broker/limits/refused` (26 bytes).
    s.limits.max_topic_length = 32;
}

#[tokio::test]
async fn a_topic_or_filter_longer_than_max_topic_length_is_refused() {
    let broker = start_with(short_topics).await;
    let (ok, long) = ("a".repeat(32), "a".repeat(33));

    // MQTT 5: PUBACK 0x90 for the PUBLISH (3.4.2.1), SUBACK 0x8F for the
    // filter (3.9.3); as long as allowed is accepted.
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "long-5").await;
    assert_eq!(
        v5.publish(deep_publish(&long, QoS::AtLeastOnce, 1)).await,
        ReasonCode::TopicNameInvalid
    );
    assert_eq!(
        v5.publish(deep_publish(&ok, QoS::AtLeastOnce, 2)).await,
        ReasonCode::NoMatchingSubscribers
    );
    let opts = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let ack = v5
        .subscribe_with(3, &[(long.as_str(), opts), (ok.as_str(), opts)], None)
        .await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::TopicFilterInvalid, ReasonCode::GrantedQos1]
    );
    // The long one was not retained: only the allowed one comes back.
    assert_eq!(v5.recv_publish().await.topic.as_str(), ok);
    v5.ping().await;

    // MQTT 3.1.1: the connection is closed without a PUBACK [MQTT-3.3.5-2].
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "long-3").await;
    v3.send(deep_publish(&long, QoS::AtLeastOnce, 1)).await;
    assert_eq!(v3.closed(WAIT).await, vec![], "closed without a PUBACK");

    refusals(&broker, 3).await;
}

/// A CONNECT with a will on `topic`.
fn will_connect(version: ProtocolVersion, id: &str, topic: &str) -> tern_codec::Connect {
    let mut c = connect(version, id);
    c.will = Some(tern_codec::Will {
        topic: s(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        ..tern_codec::Will::default()
    });
    c
}

#[tokio::test]
async fn a_will_topic_over_the_limits_is_refused_at_connect() {
    let broker = start_with(|s| {
        short_topics(s);
        s.limits.max_topic_levels = 4;
    })
    .await;
    let mut watcher = Raw::connected(broker.tcp, ProtocolVersion::V5, "will-watch").await;
    watcher.subscribe("#", QoS::AtLeastOnce).await;

    // MQTT 5: CONNACK 0x90 "the Will Topic Name is not malformed, but is
    // not accepted by this Server" (3.2.2.2), then the close [MQTT-3.2.2-7]:
    // too long, then too deep.
    for (id, topic) in [("will-long", "w".repeat(33)), ("will-deep", deep(5))] {
        let (mut c, ack) =
            Raw::connect(broker.tcp, will_connect(ProtocolVersion::V5, id, &topic)).await;
        assert_eq!(ack.reason_code, ReasonCode::TopicNameInvalid, "{id}");
        assert!(!ack.session_present, "[MQTT-3.2.2-6]");
        assert_eq!(c.closed(WAIT).await, vec![], "{id}: closed after CONNACK");
    }
    // MQTT 3.1.1: no return code applies, so no CONNACK [MQTT-3.2.2-6].
    let mut v3 = Raw::open(broker.tcp).await;
    v3.version = ProtocolVersion::V3_1_1;
    v3.send(will_connect(ProtocolVersion::V3_1_1, "will-3", &deep(5)))
        .await;
    assert_eq!(v3.closed(WAIT).await, vec![], "closed without a CONNACK");

    // An allowed will topic is accepted, and its will still goes out.
    let (c, ack) = Raw::connect(
        broker.tcp,
        will_connect(ProtocolVersion::V5, "will-ok", &deep(4)),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    drop(c);
    let will = watcher.recv_publish().await;
    assert_eq!(will.topic.as_str(), deep(4), "the refused wills never came");
    refusals(&broker, 3).await;
}

fn few_retained(s: &mut tern_broker::server::BrokerSettings) {
    s.limits.sys_interval = Duration::from_millis(50);
    s.limits.max_retained_messages = 2;
    s.limits.max_retained_bytes = 4096;
}

fn retained(topic: &str, payload: Bytes, id: u16) -> Publish {
    Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: s(topic),
        packet_id: Some(pid(id)),
        payload,
        ..Publish::default()
    }
}

#[tokio::test]
async fn retained_messages_past_the_limits_are_delivered_but_not_retained() {
    let broker = start_with(few_retained).await;
    let mut live = Raw::connected(broker.tcp, ProtocolVersion::V5, "ret-live").await;
    live.subscribe("r/#", QoS::AtMostOnce).await;
    let small = || Bytes::from_static(b"x");
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "ret-5").await;
    assert_eq!(
        v5.publish(retained("r/a", small(), 1)).await,
        ReasonCode::Success
    );
    assert_eq!(
        v5.publish(retained("r/b", small(), 2)).await,
        ReasonCode::Success
    );
    // A third topic is past max_retained_messages = 2: MQTT 5 PUBACK 0x97
    // Quota exceeded (3.4.2.1), yet delivered to the live subscriber.
    assert_eq!(
        v5.publish(retained("r/c", small(), 3)).await,
        ReasonCode::QuotaExceeded
    );
    // Replacing a kept topic adds no message: accepted.
    assert_eq!(
        v5.publish(retained("r/a", Bytes::from_static(b"y"), 4))
            .await,
        ReasonCode::Success
    );
    // A replacement past max_retained_bytes is refused, and the topic keeps
    // what it held.
    assert_eq!(
        v5.publish(retained("r/b", Bytes::from(vec![b'z'; 5000]), 5))
            .await,
        ReasonCode::QuotaExceeded
    );
    // MQTT 3.1.1 has no failure code in PUBACK: acknowledged [MQTT-3.3.5-2].
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "ret-3").await;
    v3.send(retained("r/d", small(), 1)).await;
    match v3.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(1)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let live_topics: Vec<String> = {
        let mut t = Vec::new();
        for _ in 0..6 {
            t.push(live.recv_publish().await.topic.as_str().to_owned());
        }
        t
    };
    assert_eq!(live_topics, ["r/a", "r/b", "r/c", "r/a", "r/b", "r/d"]);

    // A new subscriber gets the two kept, with what they held.
    let mut late = Raw::connected(broker.tcp, ProtocolVersion::V5, "ret-late").await;
    late.subscribe("r/#", QoS::AtMostOnce).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = late.recv_publish().await;
        got.push((p.topic.as_str().to_owned(), p.payload));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("r/a".to_owned(), Bytes::from_static(b"y")),
            ("r/b".to_owned(), Bytes::from_static(b"x")),
        ]
    );
    late.ping().await; // nothing else before the PINGRESP
    refusals(&broker, 3).await;
}

#[tokio::test]
async fn each_client_owns_at_most_its_share_of_retained_messages() {
    let broker = start_with(|s| {
        s.limits.sys_interval = Duration::from_millis(50);
        s.limits.max_retained_messages_per_client = 2;
        s.limits.max_retained_bytes_per_client = 4096;
    })
    .await;
    let small = || Bytes::from_static(b"x");
    let mut a = Raw::connected(broker.tcp, ProtocolVersion::V5, "owner-a").await;
    let mut b = Raw::connected(broker.tcp, ProtocolVersion::V5, "owner-b").await;
    for (id, topic) in [(1, "o/1"), (2, "o/2")] {
        assert_eq!(
            a.publish(retained(topic, small(), id)).await,
            ReasonCode::NoMatchingSubscribers
        );
    }
    // A third topic of a's: past max_retained_messages_per_client = 2,
    // MQTT 5 PUBACK 0x97 Quota exceeded (3.4.2.1); replacing its own adds
    // nothing and is kept.
    assert_eq!(
        a.publish(retained("o/3", small(), 3)).await,
        ReasonCode::QuotaExceeded
    );
    assert_eq!(
        a.publish(retained("o/1", Bytes::from_static(b"y"), 4))
            .await,
        ReasonCode::NoMatchingSubscribers
    );
    // Another client has its own share, also on a's topics: replacing o/2
    // makes it b's, and a may retain one more.
    assert_eq!(
        b.publish(retained("o/2", Bytes::from_static(b"b"), 1))
            .await,
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        a.publish(retained("o/3", small(), 5)).await,
        ReasonCode::NoMatchingSubscribers
    );
    // Bytes: past max_retained_bytes_per_client, refused.
    assert_eq!(
        b.publish(retained("o/4", Bytes::from(vec![b'z'; 5000]), 2))
            .await,
        ReasonCode::QuotaExceeded
    );
    // What is kept: o/1 = y (a), o/2 = b (b), o/3 = x (a).
    let mut late = Raw::connected(broker.tcp, ProtocolVersion::V5, "owner-late").await;
    late.subscribe("o/#", QoS::AtMostOnce).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = late.recv_publish().await;
        got.push((p.topic.as_str().to_owned(), p.payload));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("o/1".to_owned(), Bytes::from_static(b"y")),
            ("o/2".to_owned(), Bytes::from_static(b"b")),
            ("o/3".to_owned(), Bytes::from_static(b"x")),
        ]
    );
    late.ping().await;
    refusals(&broker, 2).await;
}
