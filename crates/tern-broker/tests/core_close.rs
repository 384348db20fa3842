//! The sans-IO core on its own: a connection that the protocol closes while
//! its bytes are being handled still gets its last packet (a refusing
//! CONNACK, a DISCONNECT) from `poll_transmit` before the `Close` event.

use bytes::BytesMut;
use tern_broker::{Broker, BrokerConfig, BrokerEvent};
use tern_codec::{Connect, MqttString, Packet, ProtocolVersion, ReasonCode};
use tern_session::Instant;

fn connect(version: ProtocolVersion) -> BytesMut {
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        client_id: MqttString::from_static("c"),
        ..Connect::default()
    }))
    .encode(version, &mut bytes)
    .unwrap();
    bytes
}

/// Everything the broker has to send, then the events.
fn drain(broker: &mut Broker) -> (Vec<Packet>, Vec<BrokerEvent>) {
    let mut packets = Vec::new();
    while let Some(t) = broker.poll_transmit(Instant::ZERO) {
        packets.push(t.packet);
    }
    let mut events = Vec::new();
    while let Some(e) = broker.poll_event() {
        events.push(e);
    }
    (packets, events)
}

#[test]
fn a_refusing_connack_is_sent_before_the_close_mqtt_3_1_2_2() {
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    let conn = broker.accept(Instant::ZERO);
    let mut bytes = connect(ProtocolVersion::V3_1_1);
    bytes[8] = 6; // protocol level 6
    broker.handle_bytes(Instant::ZERO, conn, &mut bytes);
    let (packets, events) = drain(&mut broker);
    match &packets[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::UnsupportedProtocolVersion)
        }
        other => panic!("expected the refusing CONNACK, got {other:?}"),
    }
    assert!(events.contains(&BrokerEvent::Close(conn)), "{events:?}");
}

#[test]
fn a_protocol_error_disconnect_is_sent_before_the_close_mqtt_3_1_0_2() {
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    let conn = broker.accept(Instant::ZERO);
    // CONNECT, then a second CONNECT in the same read.
    let mut bytes = connect(ProtocolVersion::V5);
    bytes.extend_from_slice(&connect(ProtocolVersion::V5));
    broker.handle_bytes(Instant::ZERO, conn, &mut bytes);
    let (packets, events) = drain(&mut broker);
    match &packets[..] {
        [Packet::ConnAck(ack), Packet::Disconnect(d)] => {
            assert_eq!(ack.reason_code, ReasonCode::Success);
            assert_eq!(d.reason_code, ReasonCode::ProtocolError);
        }
        other => panic!("expected CONNACK then DISCONNECT 0x82, got {other:?}"),
    }
    assert!(events.contains(&BrokerEvent::Close(conn)), "{events:?}");
}
