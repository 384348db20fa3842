//! Messages end to end: QoS flows, routing rules, subscription options,
//! shared subscriptions, properties, topic aliases, expiry and size limits.

mod common;

use bytes::Bytes;
use common::*;
use std::time::Duration;
use tern_codec::{
    Packet, PayloadFormat, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubscriptionOptions, UserProperty,
};

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::with_qos(qos)
}

#[tokio::test]
async fn qos_0_1_and_2_flows_end_to_end() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "flows-sub").await;
    sub.subscribe("flows/#", QoS::ExactlyOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "flows-pub").await;
    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let code = publisher
            .publish(publish("flows/t", b"m", qos, n as u16 + 1))
            .await;
        assert_eq!(code, ReasonCode::Success, "{qos:?}");
        // `recv_publish` completes the subscriber's side of the flow.
        let got = sub.recv_publish().await;
        assert_eq!(got.qos, qos);
        assert_eq!(got.packet_id.is_some(), qos != QoS::AtMostOnce);
    }
    sub.ping().await;
}

#[tokio::test]
async fn rumqttc_qos_2_round_trip() {
    let broker = start().await;
    let (mut v5, _) = V5::connect(broker.tcp, "rumqttc-qos2", |_| {}).await;
    v5.subscribe("q2/t", rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
        .await;
    v5.client
        .publish(
            "q2/t",
            rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
            false,
            "twice?",
        )
        .await
        .unwrap();
    let got = v5.next_publish().await;
    assert_eq!(got.qos, rumqttc::v5::mqttbytes::QoS::ExactlyOnce);
    assert_eq!(&got.payload[..], b"twice?");
    // The broker's own QoS 2 flow towards us completes too.
    v5.wait(|e| match e {
        rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubComp(_)) => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn delivered_qos_is_the_minimum_of_published_and_granted() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "min-sub").await;
    sub.subscribe("min/t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "min-pub").await;
    for (published, delivered) in [
        (QoS::ExactlyOnce, QoS::AtLeastOnce),
        (QoS::AtLeastOnce, QoS::AtLeastOnce),
        (QoS::AtMostOnce, QoS::AtMostOnce),
    ] {
        publisher
            .publish(publish("min/t", b"x", published, 7))
            .await;
        assert_eq!(
            sub.recv_publish().await.qos,
            delivered,
            "published {published:?}"
        );
    }
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_with_every_identifier_mqtt_3_3_4_3() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "overlap").await;
    sub.subscribe_with(1, &[("ov/+", opts(QoS::AtMostOnce))], Some(11))
        .await;
    sub.subscribe_with(2, &[("ov/#", opts(QoS::AtLeastOnce))], Some(22))
        .await;
    sub.subscribe_with(3, &[("ov/t", opts(QoS::AtMostOnce))], None)
        .await;
    sub.subscribe_with(4, &[("marker", opts(QoS::AtMostOnce))], None)
        .await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "overlap-pub").await;
    publisher
        .publish(publish("ov/t", b"once", QoS::AtLeastOnce, 1))
        .await;
    publisher
        .publish(publish("marker", b"m", QoS::AtLeastOnce, 2))
        .await;

    let got = sub.recv_publish().await;
    assert_eq!(got.payload, "once");
    // The highest granted QoS of the matching subscriptions.
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let mut ids: Vec<u32> = got
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![11, 22]);
    // No second copy: the marker is next.
    assert_eq!(sub.recv_publish().await.topic.as_str(), "marker");
}

#[tokio::test]
async fn dollar_topics_are_not_matched_by_wildcards_mqtt_4_7_2_1() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "dollar").await;
    sub.subscribe_with(
        1,
        &[("#", opts(QoS::AtMostOnce)), ("+/x", opts(QoS::AtMostOnce))],
        None,
    )
    .await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "dollar-pub").await;
    publisher
        .publish(publish("$app/x", b"hidden", QoS::AtLeastOnce, 1))
        .await;
    publisher
        .publish(publish("visible/x", b"seen", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(sub.recv_publish().await.payload, "seen");

    // An explicit `$` filter does match.
    let mut explicit = Raw::connected(broker.tcp, ProtocolVersion::V5, "dollar-explicit").await;
    explicit.subscribe("$app/#", QoS::AtMostOnce).await;
    publisher
        .publish(publish("$app/x", b"found", QoS::AtLeastOnce, 3))
        .await;
    assert_eq!(explicit.recv_publish().await.payload, "found");
}

#[tokio::test]
async fn publishing_to_sys_is_refused() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-watch").await;
    sub.subscribe_with(
        1,
        &[
            ("$SYS/#", opts(QoS::AtMostOnce)),
            ("marker", opts(QoS::AtMostOnce)),
        ],
        None,
    )
    .await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-forger").await;
    let code = publisher
        .publish(publish(
            "$SYS/broker/uptime",
            b"forged",
            QoS::AtLeastOnce,
            1,
        ))
        .await;
    assert_eq!(code, ReasonCode::NotAuthorized);
    publisher
        .publish(publish("marker", b"m", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(sub.recv_publish().await.topic.as_str(), "marker");
}

#[tokio::test]
async fn no_local_keeps_a_clients_own_messages_from_it_mqtt_3_8_3_3() {
    let broker = start().await;
    let mut me = Raw::connected(broker.tcp, ProtocolVersion::V5, "no-local").await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    me.subscribe_with(
        1,
        &[("nl/t", no_local), ("marker", opts(QoS::AtMostOnce))],
        None,
    )
    .await;
    let mut other = Raw::connected(broker.tcp, ProtocolVersion::V5, "no-local-other").await;
    other.subscribe("nl/t", QoS::AtMostOnce).await;

    // Our own message reaches the other subscriber, not us.
    assert_eq!(
        me.publish(publish("nl/t", b"mine", QoS::AtLeastOnce, 1))
            .await,
        ReasonCode::Success
    );
    assert_eq!(other.recv_publish().await.payload, "mine");
    me.publish(publish("marker", b"m", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(me.recv_publish().await.topic.as_str(), "marker");
    // Someone else's message on the same topic does reach us.
    other
        .publish(publish("nl/t", b"theirs", QoS::AtLeastOnce, 3))
        .await;
    assert_eq!(me.recv_publish().await.payload, "theirs");
}

#[tokio::test]
async fn retain_as_published_mqtt_3_3_1_12_and_13() {
    let broker = start().await;
    let mut keep = Raw::connected(broker.tcp, ProtocolVersion::V5, "rap-1").await;
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..opts(QoS::AtMostOnce)
    };
    keep.subscribe_with(1, &[("rap/t", rap)], None).await;
    let mut clear = Raw::connected(broker.tcp, ProtocolVersion::V5, "rap-0").await;
    clear.subscribe("rap/t", QoS::AtMostOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "rap-pub").await;
    publisher
        .publish(Publish {
            retain: true,
            ..publish("rap/t", b"r", QoS::AtLeastOnce, 1)
        })
        .await;
    assert!(keep.recv_publish().await.retain);
    assert!(!clear.recv_publish().await.retain);
}

#[tokio::test]
async fn retain_handling_0_1_and_2_mqtt_3_3_1_9_to_11() {
    let broker = start().await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "rh-pub").await;
    publisher
        .publish(Publish {
            retain: true,
            ..publish("rh/t", b"kept", QoS::AtLeastOnce, 1)
        })
        .await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "rh-sub").await;
    let with = |handling| SubscriptionOptions {
        retain_handling: handling,
        ..opts(QoS::AtMostOnce)
    };
    // 0: sent at every subscribe, with RETAIN set.
    for id in 1..=2 {
        sub.subscribe_with(id, &[("rh/+", with(RetainHandling::SendAtSubscribe))], None)
            .await;
        let got = sub.recv_publish().await;
        assert_eq!((got.payload.as_ref(), got.retain), (&b"kept"[..], true));
    }
    // 1: only for a new subscription.
    sub.subscribe_with(
        3,
        &[("rh/#", with(RetainHandling::SendAtSubscribeIfNew))],
        None,
    )
    .await;
    assert_eq!(sub.recv_publish().await.payload, "kept");
    sub.subscribe_with(
        4,
        &[("rh/#", with(RetainHandling::SendAtSubscribeIfNew))],
        None,
    )
    .await;
    sub.ping().await;
    // 2: never.
    sub.subscribe_with(5, &[("rh/t", with(RetainHandling::DoNotSend))], None)
        .await;
    sub.ping().await;
}

#[tokio::test]
async fn shared_subscriptions_take_turns_across_3_1_1_and_5_members() {
    let broker = start().await;
    let mut five = Raw::connected(broker.tcp, ProtocolVersion::V5, "share-5").await;
    five.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce)
        .await;
    let mut four = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "share-4").await;
    four.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce)
        .await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "share-pub").await;
    for n in 1..=6u16 {
        publisher
            .publish(publish("jobs/a", b"job", QoS::AtLeastOnce, n))
            .await;
    }
    // Round robin: three each, and nothing more (all six were routed before the pings).
    for _ in 0..3 {
        five.recv_publish().await;
        four.recv_publish().await;
    }
    five.ping().await;
    four.ping().await;
}

#[tokio::test]
async fn properties_are_forwarded_unchanged_and_in_order_mqtt_3_3_2_17() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "props-sub").await;
    sub.subscribe("props/t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "props-pub").await;
    let properties = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        content_type: Some(s("application/json")),
        response_topic: Some(s("replies/props")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01\xff")),
        user_properties: vec![
            UserProperty::new(s("b"), s("2")),
            UserProperty::new(s("a"), s("1")),
            UserProperty::new(s("b"), s("3")),
        ]
        .into(),
        ..PublishProperties::default()
    };
    publisher
        .publish(Publish {
            properties: properties.clone().into(),
            ..publish("props/t", b"{}", QoS::AtLeastOnce, 1)
        })
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.properties, properties);
}

#[tokio::test]
async fn inbound_topic_aliases_mqtt_3_3_2_12() {
    let broker = start_with(|s| s.limits.topic_alias_maximum = 4).await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "alias-sub").await;
    sub.subscribe("alias/#", QoS::AtMostOnce).await;
    let (mut publisher, ack) =
        Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "alias-pub")).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(4));
    let aliased = |topic: &str, alias, payload: &'static [u8]| Publish {
        properties: PublishProperties {
            topic_alias: Some(pid(alias)),
            ..PublishProperties::default()
        }
        .into(),
        ..publish(topic, payload, QoS::AtMostOnce, 0)
    };
    publisher.send(aliased("alias/long/topic", 4, b"set")).await;
    publisher.send(aliased("", 4, b"used")).await;
    for payload in ["set", "used"] {
        let got = sub.recv_publish().await;
        assert_eq!(
            (got.topic.as_str(), got.payload.as_ref()),
            ("alias/long/topic", payload.as_bytes())
        );
        // The alias is the publisher's connection's, not forwarded.
        assert_eq!(got.properties.topic_alias, None);
    }
    // Above the maximum: DISCONNECT 0x94.
    publisher.send(aliased("alias/x", 5, b"bad")).await;
    publisher
        .disconnected_with(ReasonCode::TopicAliasInvalid)
        .await;
}

#[tokio::test]
async fn an_expired_queued_message_is_not_delivered_and_the_rest_carry_the_remaining_interval_mqtt_3_3_2_5_and_6()
 {
    let broker = start().await;
    let mut sub_connect = connect(ProtocolVersion::V5, "expiry-sub");
    sub_connect.clean_start = false;
    sub_connect.properties.session_expiry_interval = Some(60);
    let (mut sub, _) = Raw::connect(broker.tcp, sub_connect.clone()).await;
    sub.subscribe("exp/t", QoS::AtLeastOnce).await;
    sub.send(tern_codec::Disconnect::new(ReasonCode::Success))
        .await;
    assert!(sub.closed(WAIT).await.is_empty());

    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "expiry-pub").await;
    let expiring = |secs, payload: &'static [u8], id| Publish {
        properties: PublishProperties {
            message_expiry_interval: Some(secs),
            ..PublishProperties::default()
        }
        .into(),
        ..publish("exp/t", payload, QoS::AtLeastOnce, id)
    };
    publisher.publish(expiring(1, b"short", 1)).await;
    publisher.publish(expiring(100, b"long", 2)).await;
    // The behaviour under test is the passing of time: let the first expire.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (mut sub, ack) = Raw::connect(broker.tcp, sub_connect).await;
    assert!(ack.session_present);
    let got = sub.recv_publish().await;
    assert_eq!(got.payload, "long");
    let left = got
        .properties
        .message_expiry_interval
        .expect("interval forwarded");
    assert!((98..=99).contains(&left), "remaining interval {left}");
    sub.ping().await;

    // Online, the interval is forwarded as received (nothing waited).
    publisher.publish(expiring(30, b"now", 3)).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.properties.message_expiry_interval, Some(30));
}

#[tokio::test]
async fn a_packet_over_the_maximum_size_closes_with_0x95_mqtt_3_2_2_15() {
    let broker = start_with(|s| s.limits.max_packet_size = 1024).await;
    let mut big = Raw::connected(broker.tcp, ProtocolVersion::V5, "too-big").await;
    let payload: &'static [u8] = Box::leak(vec![b'x'; 2000].into_boxed_slice());
    big.send(publish("big/t", payload, QoS::AtMostOnce, 0))
        .await;
    big.disconnected_with(ReasonCode::PacketTooLarge).await;
    // 3.1.1: just closed.
    let mut big = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "too-big-3").await;
    big.send(publish("big/t", payload, QoS::AtMostOnce, 0))
        .await;
    assert_eq!(big.closed(WAIT).await, vec![]);
}

#[tokio::test]
async fn the_broker_sends_nothing_over_the_clients_maximum_packet_size_mqtt_3_1_2_24() {
    let broker = start().await;
    let mut small = connect(ProtocolVersion::V5, "small-client");
    small.properties.maximum_packet_size = std::num::NonZeroU32::new(100);
    let (mut sub, _) = Raw::connect(broker.tcp, small).await;
    sub.subscribe("size/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "size-pub").await;
    let payload: &'static [u8] = Box::leak(vec![b'y'; 200].into_boxed_slice());
    publisher
        .publish(publish("size/big", payload, QoS::AtLeastOnce, 1))
        .await;
    publisher
        .publish(publish("size/small", b"fits", QoS::AtLeastOnce, 2))
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.topic.as_str(), "size/small");
}

#[tokio::test]
async fn exceeding_receive_maximum_closes_with_0x93_mqtt_3_3_4_7() {
    let broker = start_with(|s| {
        s.limits.max_inflight = std::num::NonZeroU16::new(2).unwrap();
    })
    .await;
    let (mut client, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "greedy")).await;
    assert_eq!(ack.properties.receive_maximum.map(|r| r.get()), Some(2));
    // QoS 2 messages stay unacknowledged until PUBREL: two are allowed...
    for id in 1..=2 {
        client
            .send(publish("rm/t", b"q2", QoS::ExactlyOnce, id))
            .await;
        match client.recv().await {
            Packet::PubRec(r) => assert_eq!(r.packet_id, pid(id)),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    // ... a third is one too many.
    client
        .send(publish("rm/t", b"q2", QoS::ExactlyOnce, 3))
        .await;
    client
        .disconnected_with(ReasonCode::ReceiveMaximumExceeded)
        .await;
}

#[tokio::test]
async fn a_large_payload_reaches_every_subscriber_intact() {
    let broker = start().await;
    let mut subs = Vec::new();
    for (n, version) in [
        ProtocolVersion::V5,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ]
    .into_iter()
    .enumerate()
    {
        let mut sub = Raw::connected(broker.tcp, version, &format!("large-{n}")).await;
        sub.subscribe("large/t", QoS::AtLeastOnce).await;
        subs.push(sub);
    }
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let payload: &'static [u8] = Box::leak(payload.into_boxed_slice());
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "large-pub").await;
    for id in 1..=3 {
        publisher
            .publish(publish("large/t", payload, QoS::AtLeastOnce, id))
            .await;
    }
    for sub in &mut subs {
        for _ in 0..3 {
            assert!(sub.recv_publish().await.payload == payload);
        }
    }
}

#[tokio::test]
async fn unsubscribe_answers_per_filter_and_stops_delivery_mqtt_3_10_4_4_and_5() {
    let broker = start().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("unsub-{version}");
        let mut sub = Raw::connected(broker.tcp, version, &id).await;
        sub.subscribe_with(
            1,
            &[
                ("unsub/t", opts(QoS::AtLeastOnce)),
                ("marker", opts(QoS::AtMostOnce)),
            ],
            None,
        )
        .await;
        sub.send(tern_codec::Unsubscribe {
            packet_id: pid(2),
            properties: Default::default(),
            filters: vec![s("unsub/t"), s("never/subscribed")],
        })
        .await;
        match sub.recv().await {
            Packet::UnsubAck(ack) => {
                assert_eq!(ack.packet_id, pid(2));
                if version.is_v5() {
                    // One reason code per filter [MQTT-3.11.3-1].
                    assert_eq!(
                        ack.reason_codes,
                        vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
                    );
                }
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "unsub-pub").await;
        publisher
            .publish(publish("unsub/t", b"gone", QoS::AtLeastOnce, 1))
            .await;
        publisher
            .publish(publish("marker", b"m", QoS::AtLeastOnce, 2))
            .await;
        assert_eq!(
            sub.recv_publish().await.topic.as_str(),
            "marker",
            "{version}"
        );
    }
}

#[tokio::test]
async fn one_publishers_messages_keep_their_order_across_qos_levels_mqtt_4_6_0_5() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "order-sub").await;
    sub.subscribe("order/t", QoS::ExactlyOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "order-pub").await;
    // Sent back to back, without waiting for any acknowledgement.
    const N: u16 = 60;
    for n in 1..=N {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(n % 3)];
        let mut p = publish("order/t", b"", qos, n);
        p.payload = Bytes::from(n.to_string());
        publisher.send(p).await;
    }
    // Acknowledged as they come (a PUBREL may arrive between PUBLISHes).
    let mut next = 1;
    while next <= N {
        match sub.recv().await {
            Packet::Publish(p) => {
                assert_eq!(p.payload, next.to_string());
                next += 1;
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => sub.send(tern_codec::PubAck::new(id)).await,
                    (QoS::ExactlyOnce, Some(id)) => sub.send(tern_codec::PubRec::new(id)).await,
                    _ => {}
                }
            }
            Packet::PubRel(r) => sub.send(tern_codec::PubComp::new(r.packet_id)).await,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn outbound_topic_aliases_are_used_up_to_the_clients_maximum_mqtt_3_3_2_11() {
    let broker = start().await;
    let mut c = connect(ProtocolVersion::V5, "alias-out");
    c.properties.topic_alias_maximum = Some(1);
    let (mut sub, _) = Raw::connect(broker.tcp, c).await;
    sub.subscribe("aout/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "alias-out-pub").await;
    for topic in ["aout/a/long/topic/name", "aout/a/long/topic/name", "aout/b"] {
        publisher
            .publish(publish(topic, b"x", QoS::AtLeastOnce, 1))
            .await;
    }
    // The first message sets alias 1, the second uses it with an empty topic.
    let first = sub.recv_publish().await;
    let alias = first.properties.topic_alias.expect("an alias is set");
    assert_eq!(alias.get(), 1, "never above the client's maximum");
    assert_eq!(first.topic.as_str(), "aout/a/long/topic/name");
    let second = sub.recv_publish().await;
    assert_eq!(second.properties.topic_alias, Some(alias));
    assert_eq!(second.topic.as_str(), "", "the alias stands for the topic");
    // Another topic either replaces the alias (with its full topic) or goes without one.
    let third = sub.recv_publish().await;
    assert_eq!(third.topic.as_str(), "aout/b");
    assert!(third.properties.topic_alias.is_none_or(|a| a.get() == 1));

    // A client that announced no Topic Alias Maximum gets none [MQTT-3.1.2-27].
    let mut plain = Raw::connected(broker.tcp, ProtocolVersion::V5, "alias-none").await;
    plain.subscribe("aout/#", QoS::AtMostOnce).await;
    for _ in 0..2 {
        publisher
            .publish(publish("aout/b", b"x", QoS::AtLeastOnce, 2))
            .await;
        let got = plain.recv_publish().await;
        assert_eq!(
            (got.topic.as_str(), got.properties.topic_alias),
            ("aout/b", None)
        );
    }
}

#[tokio::test]
async fn a_message_too_big_for_one_subscriber_still_reaches_the_others() {
    let broker = start().await;
    let mut small = connect(ProtocolVersion::V5, "small-one");
    small.properties.maximum_packet_size = std::num::NonZeroU32::new(100);
    let (mut small, _) = Raw::connect(broker.tcp, small).await;
    small.subscribe("fit/#", QoS::AtLeastOnce).await;
    let mut big = Raw::connected(broker.tcp, ProtocolVersion::V5, "big-one").await;
    big.subscribe("fit/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "fit-pub").await;
    let payload: &'static [u8] = Box::leak(vec![b'y'; 500].into_boxed_slice());
    publisher
        .publish(publish("fit/big", payload, QoS::AtLeastOnce, 1))
        .await;
    publisher
        .publish(publish("fit/small", b"fits", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(big.recv_publish().await.payload.len(), 500);
    assert_eq!(big.recv_publish().await.topic.as_str(), "fit/small");
    assert_eq!(small.recv_publish().await.topic.as_str(), "fit/small");
    // The small client stays connected.
    small.ping().await;
}

#[tokio::test]
async fn the_broker_keeps_to_the_clients_receive_maximum_mqtt_3_3_4_9() {
    let broker = start().await;
    let mut c = connect(ProtocolVersion::V5, "rm-client");
    c.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let (mut sub, _) = Raw::connect(broker.tcp, c).await;
    sub.subscribe("rmo/t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "rm-pub").await;
    for n in 1..=4u16 {
        let mut p = publish("rmo/t", b"", QoS::AtLeastOnce, n);
        p.payload = Bytes::from(n.to_string());
        publisher.publish(p).await;
    }
    // Two in flight, then nothing more until one is acknowledged: the
    // PINGRESP comes right after the second.
    let mut held = Vec::new();
    for n in 1..=2 {
        match sub.recv().await {
            Packet::Publish(p) => {
                assert_eq!(p.payload, n.to_string());
                held.push(p);
            }
            other => panic!("expected PUBLISH {n}, got {other:?}"),
        }
    }
    sub.ping().await;
    for (n, p) in held.iter().enumerate() {
        sub.ack(p).await;
        let next = match sub.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        assert_eq!(next.payload, (n + 3).to_string());
        sub.ack(&next).await;
    }
    sub.ping().await;
}

#[tokio::test]
async fn shared_subscriptions_deliver_only_to_online_members_while_there_are_any() {
    let broker = start().await;
    // A persistent member that goes offline keeps its membership...
    let mut away = connect(ProtocolVersion::V5, "share-away");
    away.clean_start = false;
    away.properties.session_expiry_interval = Some(600);
    let (mut a, _) = Raw::connect(broker.tcp, away.clone()).await;
    a.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await;
    a.send(tern_codec::Disconnect::new(ReasonCode::Success))
        .await;
    assert!(a.closed(WAIT).await.is_empty());
    // ... but while another member is online, that one gets every message.
    let mut online = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "share-online").await;
    online.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "share-pub2").await;
    for n in 1..=4u16 {
        publisher
            .publish(publish("sh/t", b"job", QoS::AtLeastOnce, n))
            .await;
    }
    for _ in 1..=4 {
        online.recv_publish().await;
    }
    online.ping().await;
    // Nothing was queued for the offline member.
    let (mut a, ack) = Raw::connect(broker.tcp, away).await;
    assert!(ack.session_present);
    a.ping().await;
}

#[tokio::test]
async fn rumqttc_resolves_the_aliases_the_broker_sends() {
    let broker = start().await;
    let (mut v5, _) = V5::connect(broker.tcp, "rumqttc-aliases", |o| {
        o.set_topic_alias_max(Some(2));
    })
    .await;
    v5.subscribe("ra/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "ra-pub").await;
    let topics = [
        "ra/long/topic/name",
        "ra/long/topic/name",
        "ra/b",
        "ra/long/topic/name",
    ];
    for (n, topic) in topics.iter().enumerate() {
        publisher
            .publish(publish(topic, b"x", QoS::AtLeastOnce, n as u16 + 1))
            .await;
    }
    for topic in topics {
        let got = v5.next_publish().await;
        assert_eq!(&got.topic[..], topic.as_bytes());
    }
}

#[tokio::test]
async fn outbound_topic_aliases_start_afresh_on_each_connection_mqtt_3_3_2_7() {
    let broker = start().await;
    let mut c = connect(ProtocolVersion::V5, "alias-again");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    c.properties.topic_alias_maximum = Some(1);
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "alias-again-pub").await;
    let (mut sub, _) = Raw::connect(broker.tcp, c.clone()).await;
    sub.subscribe("again/#", QoS::AtLeastOnce).await;
    for (id, expect_topic) in [(1, "again/t"), (2, "")] {
        publisher
            .publish(publish("again/t", b"x", QoS::AtLeastOnce, id))
            .await;
        let got = sub.recv_publish().await;
        assert_eq!(got.topic.as_str(), expect_topic);
        assert!(got.properties.topic_alias.is_some());
    }
    sub.send(tern_codec::Disconnect::new(ReasonCode::Success))
        .await;
    assert!(sub.closed(WAIT).await.is_empty());
    // Queued while away, and sent live after: the alias is set again first.
    publisher
        .publish(publish("again/t", b"queued", QoS::AtLeastOnce, 3))
        .await;
    let (mut sub, ack) = Raw::connect(broker.tcp, c).await;
    assert!(ack.session_present);
    let got = sub.recv_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        ("again/t", &b"queued"[..]),
        "a new connection has no aliases yet"
    );
}

#[tokio::test]
async fn retained_messages_sent_on_subscribe_carry_its_subscription_identifier() {
    let broker = start().await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "sid-pub").await;
    publisher
        .publish(Publish {
            retain: true,
            ..publish("sid/t", b"kept", QoS::AtLeastOnce, 1)
        })
        .await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "sid-sub").await;
    sub.subscribe_with(1, &[("sid/#", opts(QoS::AtLeastOnce))], Some(77))
        .await;
    let got = sub.recv_publish().await;
    assert!(got.retain);
    let ids: Vec<u32> = got
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, vec![77]);
}
