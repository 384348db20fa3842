//! Wills and keep alive end to end, with short intervals and upper bounds.

mod common;

use bytes::Bytes;
use common::*;
use std::time::Duration;
use tern_codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will};
use tokio::time::Instant;

fn with_will(version: ProtocolVersion, id: &str, delay: Option<u32>) -> Connect {
    let mut c = connect(version, id);
    let mut will = Will {
        topic: s("wills/gone"),
        payload: Bytes::from(id.to_string()),
        qos: QoS::AtLeastOnce,
        ..Will::default()
    };
    will.properties.will_delay_interval = delay;
    c.will = Some(will);
    c
}

/// A watcher of `wills/#` and `marker`.
async fn watcher(broker: &TestBroker, id: &str) -> Raw {
    let mut w = Raw::connected(broker.tcp, ProtocolVersion::V5, id).await;
    w.subscribe_with(
        1,
        &[
            (
                "wills/#",
                tern_codec::SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            ),
            (
                "marker",
                tern_codec::SubscriptionOptions::with_qos(QoS::AtMostOnce),
            ),
        ],
        None,
    )
    .await;
    w
}

/// Publishes `marker`: once the watcher gets it, it got everything routed before.
async fn marker(broker: &TestBroker) {
    let mut m = Raw::connected(broker.tcp, ProtocolVersion::V5, "marker-pub").await;
    m.publish(publish("marker", b"m", QoS::AtLeastOnce, 1))
        .await;
}

#[tokio::test]
async fn a_will_is_published_when_the_socket_drops_mqtt_3_1_2_8() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-drop").await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("dropper-{version}");
        let (raw, _) = Raw::connect(broker.tcp, with_will(version, &id, None)).await;
        drop(raw);
        let got = w.recv_publish().await;
        assert_eq!(
            (got.topic.as_str(), got.payload.as_ref()),
            ("wills/gone", id.as_bytes())
        );
        assert_eq!(got.qos, QoS::AtLeastOnce);
    }
}

#[tokio::test]
async fn no_will_on_a_normal_disconnect_mqtt_3_1_2_10() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-normal").await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut raw, _) = Raw::connect(broker.tcp, with_will(version, "polite", None)).await;
        raw.send(Disconnect::new(ReasonCode::Success)).await;
        assert!(raw.closed(WAIT).await.is_empty());
    }
    marker(&broker).await;
    assert_eq!(w.recv_publish().await.topic.as_str(), "marker");
}

#[tokio::test]
async fn a_will_on_disconnect_with_reason_0x04() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-04").await;
    let (mut raw, _) = Raw::connect(
        broker.tcp,
        with_will(ProtocolVersion::V5, "asks-for-will", None),
    )
    .await;
    raw.send(Disconnect::new(ReasonCode::DisconnectWithWill))
        .await;
    assert_eq!(w.recv_publish().await.payload, "asks-for-will");
}

#[tokio::test]
async fn keep_alive_closes_at_one_and_a_half_times_and_publishes_the_will_mqtt_3_1_2_22() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-ka").await;
    let mut c = with_will(ProtocolVersion::V5, "silent", None);
    c.keep_alive = 1;
    let (mut silent, _) = Raw::connect(broker.tcp, c).await;
    let started = Instant::now();
    silent.disconnected_with(ReasonCode::KeepAliveTimeout).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed early: {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_millis(2500),
        "closed late: {elapsed:?}"
    );
    assert_eq!(w.recv_publish().await.payload, "silent");

    // A client that pings in time stays.
    let mut c = connect(ProtocolVersion::V3_1_1, "chatty");
    c.keep_alive = 1;
    let (mut chatty, _) = Raw::connect(broker.tcp, c).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        chatty.ping().await;
    }
}

#[tokio::test]
async fn keep_alive_of_a_3_1_1_client_closes_without_disconnect() {
    let broker = start().await;
    let mut c = connect(ProtocolVersion::V3_1_1, "silent-3");
    c.keep_alive = 1;
    let (mut silent, _) = Raw::connect(broker.tcp, c).await;
    let started = Instant::now();
    assert_eq!(silent.closed(WAIT).await, vec![]);
    assert!(started.elapsed() <= Duration::from_millis(2500));
}

#[tokio::test]
async fn max_keep_alive_is_announced_as_server_keep_alive() {
    let broker = start_with(|s| s.limits.max_keep_alive = Some(10)).await;
    let (_c, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "long-ka")).await;
    assert_eq!(ack.properties.server_keep_alive, Some(10));
}

#[tokio::test]
async fn a_will_delay_is_cancelled_by_reconnecting_in_time_mqtt_3_1_3_9() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-delay").await;
    let mut c = with_will(ProtocolVersion::V5, "comes-back", Some(1));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let (raw, _) = Raw::connect(broker.tcp, c.clone()).await;
    drop(raw);
    let (mut back, ack) = Raw::connect(broker.tcp, c).await;
    assert!(ack.session_present);
    // Past the will delay: the behaviour under test is time passing.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    marker(&broker).await;
    assert_eq!(w.recv_publish().await.topic.as_str(), "marker");
    back.ping().await;
}

#[tokio::test]
async fn a_delayed_will_is_published_after_its_delay() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-delayed").await;
    let mut c = with_will(ProtocolVersion::V5, "late-will", Some(1));
    c.properties.session_expiry_interval = Some(60);
    let (raw, _) = Raw::connect(broker.tcp, c).await;
    let started = Instant::now();
    drop(raw);
    assert_eq!(w.recv_publish().await.payload, "late-will");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "too early: {elapsed:?}"
    );
    assert!(elapsed <= Duration::from_secs(2), "too late: {elapsed:?}");
}

#[tokio::test]
async fn a_will_is_published_at_session_end_when_that_comes_first_mqtt_3_1_3_9() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-session-end").await;
    let mut c = with_will(ProtocolVersion::V5, "short-session", Some(60));
    c.properties.session_expiry_interval = Some(1);
    let (raw, _) = Raw::connect(broker.tcp, c).await;
    let started = Instant::now();
    drop(raw);
    assert_eq!(w.recv_publish().await.payload, "short-session");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "too early: {elapsed:?}"
    );
    assert!(elapsed <= Duration::from_secs(2), "too late: {elapsed:?}");
}

#[tokio::test]
async fn will_retain_and_qos_mqtt_3_1_2_14_and_17() {
    let broker = start().await;
    let mut c = with_will(ProtocolVersion::V3_1_1, "retained-will", None);
    if let Some(will) = &mut c.will {
        will.retain = true;
        will.qos = QoS::ExactlyOnce;
        will.topic = s("wills/retained");
    }
    let mut live = Raw::connected(broker.tcp, ProtocolVersion::V5, "will-live").await;
    live.subscribe("wills/#", QoS::ExactlyOnce).await;
    let (raw, _) = Raw::connect(broker.tcp, c).await;
    drop(raw);
    let got = live.recv_publish().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    // A later subscriber gets it as a retained message.
    let mut late = Raw::connected(broker.tcp, ProtocolVersion::V5, "will-late").await;
    late.send(tern_codec::Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![tern_codec::SubscribeFilter {
            filter: s("wills/#"),
            options: tern_codec::SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    })
    .await;
    assert!(matches!(late.recv().await, Packet::SubAck(_)));
    let got = late.recv_publish().await;
    assert_eq!(
        (got.payload.as_ref(), got.retain, got.qos),
        (&b"retained-will"[..], true, QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn a_will_is_published_after_a_protocol_error_mqtt_3_1_2_8() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-protocol").await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("violator-{version}");
        let (mut raw, _) = Raw::connect(broker.tcp, with_will(version, &id, None)).await;
        // PUBLISH with QoS 3: malformed.
        raw.send_bytes(&[0x36, 0x03, 0x00, 0x01, b'a']).await;
        raw.closed(WAIT).await;
        assert_eq!(w.recv_publish().await.payload, id.as_bytes());
    }
}

#[tokio::test]
async fn will_properties_are_forwarded_mqtt_3_1_3_10() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-props").await;
    let mut c = with_will(ProtocolVersion::V5, "propertied", None);
    let user_properties = vec![
        tern_codec::UserProperty::new(s("z"), s("1")),
        tern_codec::UserProperty::new(s("a"), s("2")),
    ];
    if let Some(will) = &mut c.will {
        let p = &mut will.properties;
        p.payload_format_indicator = Some(tern_codec::PayloadFormat::Utf8);
        p.message_expiry_interval = Some(120);
        p.content_type = Some(s("text/plain"));
        p.response_topic = Some(s("wills/reply"));
        p.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
        p.user_properties = user_properties.clone().into();
    }
    let (raw, _) = Raw::connect(broker.tcp, c).await;
    drop(raw);
    let got = w.recv_publish().await;
    let p = got.properties;
    assert_eq!(
        p.payload_format_indicator,
        Some(tern_codec::PayloadFormat::Utf8)
    );
    assert_eq!(p.message_expiry_interval, Some(120));
    assert_eq!(p.content_type, Some(s("text/plain")));
    assert_eq!(p.response_topic, Some(s("wills/reply")));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(p.user_properties, user_properties);
}

#[tokio::test]
async fn take_over_publishes_the_old_connections_will_mqtt_3_1_4_3() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-takeover").await;
    // No will delay: the old connection ended without DISCONNECT, so its
    // will goes out, in 3.1.1 and in 5.
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("overtaken-{version}");
        let (_old, _) = Raw::connect(broker.tcp, with_will(version, &id, None)).await;
        let mut new = Raw::connected(broker.tcp, version, &id).await;
        assert_eq!(w.recv_publish().await.payload, id.as_bytes(), "{version}");
        new.ping().await;
    }
}

#[tokio::test]
async fn take_over_that_resumes_within_the_will_delay_publishes_no_will_mqtt_3_1_3_9() {
    let broker = start().await;
    let mut w = watcher(&broker, "w-takeover-delay").await;
    let mut c = with_will(ProtocolVersion::V5, "overtaken-delay", Some(60));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let (mut old, _) = Raw::connect(broker.tcp, c.clone()).await;
    let (mut new, ack) = Raw::connect(broker.tcp, c).await;
    assert!(ack.session_present);
    old.disconnected_with(ReasonCode::SessionTakenOver).await;
    // With a clean start instead, the old session ends: its will goes out.
    let (_newer, ack) = Raw::connect(
        broker.tcp,
        with_will(ProtocolVersion::V5, "overtaken-delay", Some(60)),
    )
    .await;
    assert!(!ack.session_present);
    new.disconnected_with(ReasonCode::SessionTakenOver).await;
    let got = w.recv_publish().await;
    assert_eq!(got.payload, "overtaken-delay");
    // Exactly one will: the resumed take-over sent none.
    marker(&broker).await;
    assert_eq!(w.recv_publish().await.topic.as_str(), "marker");
}

#[tokio::test]
async fn server_keep_alive_is_announced_and_enforced() {
    let broker = start_with(|s| s.limits.max_keep_alive = Some(1)).await;
    // Asks for 60 s (and for none): told 1 s (§3.2.2.3.14), and held to it.
    for asked in [60, 0] {
        let mut c = connect(ProtocolVersion::V5, "held-to-it");
        c.keep_alive = asked;
        let (mut raw, ack) = Raw::connect(broker.tcp, c).await;
        assert_eq!(ack.properties.server_keep_alive, Some(1), "asked {asked}");
        let started = Instant::now();
        raw.disconnected_with(ReasonCode::KeepAliveTimeout).await;
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_millis(1400)..=Duration::from_millis(2500)).contains(&elapsed),
            "closed after {elapsed:?}"
        );
    }
}
