//! CONNECT and CONNACK end to end: versions, the first-packet and
//! connect-timeout rules, client identifiers, take-over, the connection cap.

mod common;

use common::*;
use std::time::Duration;
use tern_codec::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

#[tokio::test]
async fn connack_for_mqtt_3_1_3_1_1_and_5() {
    let broker = start().await;
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let (mut raw, ack) = Raw::connect(broker.tcp, connect(version, "versions")).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "{version:?}");
        assert!(!ack.session_present);
        if version.is_v5() {
            // What the broker announces [MQTT-3.2.2-...]: our limits.
            assert_eq!(ack.properties.receive_maximum.map(|r| r.get()), Some(1024));
            assert_eq!(
                ack.properties.maximum_packet_size.map(|m| m.get()),
                Some(1024 * 1024)
            );
        }
        raw.ping().await;
        raw.send(Disconnect::new(ReasonCode::Success)).await;
        assert!(raw.closed(WAIT).await.is_empty());
    }
}

#[tokio::test]
async fn rumqttc_3_1_1_and_5_clients_exchange_messages_on_one_broker() {
    let broker = start().await;
    let (mut v4, ack) = V4::connect(broker.tcp, "mixed-v4", |_| {}).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let (mut v5, ack) = V5::connect(broker.tcp, "mixed-v5", |_| {}).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );

    v4.subscribe("to/v4", rumqttc::QoS::AtLeastOnce).await;
    v5.subscribe("to/v5", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;

    v5.client
        .publish(
            "to/v4",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "from five",
        )
        .await
        .unwrap();
    let got = v4.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        ("to/v4", &b"from five"[..])
    );
    assert_eq!(got.qos, rumqttc::QoS::AtLeastOnce);

    v4.client
        .publish("to/v5", rumqttc::QoS::AtLeastOnce, false, "from four")
        .await
        .unwrap();
    let got = v5.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"to/v5"[..], &b"from four"[..])
    );
}

#[tokio::test]
async fn the_first_packet_must_be_connect_mqtt_3_1_0_1() {
    let broker = start().await;
    let mut raw = Raw::open(broker.tcp).await;
    raw.send(Packet::PingReq).await;
    // Closed without any answer: a DISCONNECT may not precede CONNACK.
    assert_eq!(raw.closed(WAIT).await, vec![]);
}

#[tokio::test]
async fn a_first_packet_that_is_not_connect_is_refused_from_its_first_byte() {
    // [MQTT-3.1.0-1]. The connect timeout is far away, so only the first
    // byte (a PUBLISH type whose body never comes) can explain the close.
    let broker = start_with(|s| s.limits.connect_timeout = Duration::from_secs(60)).await;
    for first in [0x30, 0x82, 0xC0, 0xF0] {
        let mut raw = Raw::open(broker.tcp).await;
        raw.send_bytes(&[first]).await;
        assert_eq!(raw.closed(WAIT).await, vec![], "first byte {first:#04x}");
    }
}

#[tokio::test]
async fn a_half_open_socket_is_closed_at_the_connect_timeout() {
    let timeout = Duration::from_millis(500);
    let broker = start_with(|s| s.limits.connect_timeout = timeout).await;
    let started = Instant::now();
    // A socket that sends nothing, and one that sends half a CONNECT.
    let mut silent = Raw::open(broker.tcp).await;
    let mut partial = Raw::open(broker.tcp).await;
    partial.send_bytes(&[0x10, 0x20, 0x00, 0x04, b'M']).await;
    assert_eq!(silent.closed(WAIT).await, vec![]);
    assert_eq!(partial.closed(WAIT).await, vec![]);
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout, "closed early: {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "closed late: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_flood_of_half_open_sockets_is_closed_by_the_connect_timeout() {
    let broker = start_with(|s| s.limits.connect_timeout = Duration::from_millis(300)).await;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(Raw::open(broker.tcp).await);
    }
    // Meanwhile a real client is served.
    let mut ok = Raw::connected(broker.tcp, ProtocolVersion::V5, "unbothered").await;
    for mut socket in sockets {
        assert_eq!(socket.closed(WAIT).await, vec![]);
    }
    ok.ping().await;
}

#[tokio::test]
async fn a_second_connect_is_a_protocol_error_mqtt_3_1_0_2() {
    let broker = start().await;
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "twice-5").await;
    v5.send(connect(ProtocolVersion::V5, "twice-5")).await;
    v5.disconnected_with(ReasonCode::ProtocolError).await;

    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "twice-3").await;
    v3.send(connect(ProtocolVersion::V3_1_1, "twice-3")).await;
    assert_eq!(v3.closed(WAIT).await, vec![]);
}

#[tokio::test]
async fn an_unsupported_protocol_level_gets_connack_0x01_mqtt_3_1_2_2() {
    let broker = start().await;
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect(ProtocolVersion::V3_1_1, "level-6")))
        .encode(ProtocolVersion::V3_1_1, &mut bytes)
        .unwrap();
    // Fixed header (2) + protocol name (2 + 4): the level byte.
    assert_eq!(bytes[8], 4);
    bytes[8] = 6;
    let mut raw = Raw::open(broker.tcp).await;
    raw.version = ProtocolVersion::V3_1_1;
    raw.send_bytes(&bytes).await;
    let packets = raw.closed(WAIT).await;
    match &packets[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::UnsupportedProtocolVersion);
            assert_eq!(ack.reason_code.v3_connack_code(), Some(0x01));
        }
        other => panic!("expected one CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn an_empty_client_id_is_assigned_in_mqtt_5_mqtt_3_2_2_16() {
    let broker = start().await;
    let (mut a, ack_a) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "")).await;
    let (_b, ack_b) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "")).await;
    assert_eq!(ack_a.reason_code, ReasonCode::Success);
    let id_a = ack_a
        .properties
        .assigned_client_identifier
        .expect("assigned");
    let id_b = ack_b
        .properties
        .assigned_client_identifier
        .expect("assigned");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "assigned identifiers are unique");
    a.ping().await;
}

#[tokio::test]
async fn an_empty_client_id_needs_a_clean_session_in_3_1_1_mqtt_3_1_3_8() {
    let broker = start().await;
    let mut persistent = connect(ProtocolVersion::V3_1_1, "");
    persistent.clean_start = false;
    let (mut raw, ack) = Raw::connect(broker.tcp, persistent).await;
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert_eq!(ack.reason_code.v3_connack_code(), Some(0x02));
    assert_eq!(raw.closed(WAIT).await, vec![]);

    // With a clean session it is accepted (and no identifier is sent back).
    let (mut raw, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V3_1_1, "")).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    raw.ping().await;
}

#[tokio::test]
async fn take_over_disconnects_the_old_connection_with_0x8e_mqtt_3_1_4_3() {
    let broker = start().await;
    let mut old = Raw::connected(broker.tcp, ProtocolVersion::V5, "taken").await;
    old.subscribe("take/over", QoS::AtLeastOnce).await;
    let mut new = connect(ProtocolVersion::V5, "taken");
    new.clean_start = false;
    new.properties.session_expiry_interval = Some(60);
    let (mut new, ack) = Raw::connect(broker.tcp, new).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    old.disconnected_with(ReasonCode::SessionTakenOver).await;
    // The old connection had no session expiry: its session ended with it,
    // so the new connection starts afresh.
    assert!(!ack.session_present);
    new.ping().await;
}

#[tokio::test]
async fn take_over_of_a_3_1_1_client_closes_it() {
    let broker = start().await;
    let (mut old, _) = V4::connect(broker.tcp, "taken-v4", |_| {}).await;
    let mut raw = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "taken-v4").await;
    let error = old.connection_lost().await;
    assert!(!error.is_empty());
    raw.ping().await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let broker = start_with(|s| s.limits.max_connections = 2).await;
    let mut a = Raw::connected(broker.tcp, ProtocolVersion::V5, "cap-a").await;
    let mut b = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "cap-b").await;
    let mut c = Raw::open(broker.tcp).await;
    c.send(connect(ProtocolVersion::V5, "cap-c")).await;
    assert_eq!(c.closed(WAIT).await, vec![]);
    a.ping().await;
    // A freed place is usable again.
    b.send(Disconnect::new(ReasonCode::Success)).await;
    assert!(b.closed(WAIT).await.is_empty());
    let mut d = Raw::open(broker.tcp).await;
    d.send(connect(ProtocolVersion::V5, "cap-d")).await;
    // The permit is released when b's task ends, which may be a moment after
    // the close: retry once on an immediate close.
    match d.next(WAIT).await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        Some(other) => panic!("expected CONNACK, got {other:?}"),
        None => {
            let mut d = Raw::connected(broker.tcp, ProtocolVersion::V5, "cap-d").await;
            d.ping().await;
        }
    }
}

#[tokio::test]
async fn a_port_in_use_names_the_address() {
    let broker = start().await;
    let mut settings = settings();
    settings.listeners.tcp = vec![broker.tcp];
    let error = tern_broker::server::start(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&broker.tcp.to_string()), "{error}");
    assert!(error.contains("tcp"), "{error}");
}

#[tokio::test]
async fn take_over_resumes_the_session_and_its_subscriptions_mqtt_3_1_4_3() {
    let broker = start().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("resumed-{version}");
        let mut c = connect(version, &id);
        c.clean_start = false;
        c.properties.session_expiry_interval = version.is_v5().then_some(60);
        let (mut old, _) = Raw::connect(broker.tcp, c.clone()).await;
        old.subscribe("resume/t", QoS::AtLeastOnce).await;
        let (mut new, ack) = Raw::connect(broker.tcp, c).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(ack.session_present, "{version}");
        if version.is_v5() {
            old.disconnected_with(ReasonCode::SessionTakenOver).await;
        } else {
            assert_eq!(old.closed(WAIT).await, vec![]);
        }
        // The subscription came along.
        let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "resume-pub").await;
        assert_eq!(
            publisher
                .publish(publish("resume/t", b"to the new", QoS::AtLeastOnce, 1))
                .await,
            ReasonCode::Success
        );
        assert_eq!(new.recv_publish().await.payload, "to the new");
    }
}

#[tokio::test]
async fn empty_client_ids_in_3_1_1_get_separate_sessions() {
    // Two clean 3.1.1 clients with empty identifiers are not one client
    // taking over the other [MQTT-3.1.3-6].
    let broker = start().await;
    let mut a = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "").await;
    let mut b = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "").await;
    a.ping().await;
    b.ping().await;
}

#[tokio::test]
async fn take_over_resends_what_the_old_connection_left_unacknowledged_mqtt_4_4_0_1() {
    let broker = start().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("inflight-{version}");
        let mut c = connect(version, &id);
        c.clean_start = false;
        c.properties.session_expiry_interval = version.is_v5().then_some(60);
        let (mut old, _) = Raw::connect(broker.tcp, c.clone()).await;
        old.subscribe("inflight/t", QoS::AtLeastOnce).await;
        let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "inflight-pub").await;
        publisher
            .publish(publish("inflight/t", b"unacked", QoS::AtLeastOnce, 1))
            .await;
        // Received, never acknowledged.
        let first = match old.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        assert!(!first.dup);
        let (mut new, ack) = Raw::connect(broker.tcp, c).await;
        assert!(ack.session_present);
        let again = match new.recv().await {
            Packet::Publish(p) => p,
            other => panic!("{version}: expected the PUBLISH again, got {other:?}"),
        };
        assert_eq!(
            (again.payload.as_ref(), again.dup, again.packet_id),
            (&b"unacked"[..], true, first.packet_id),
            "{version}"
        );
        new.ack(&again).await;
        new.ping().await;
    }
}
