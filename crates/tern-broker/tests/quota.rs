//! A QoS 1 PUBLISH is refused with 0x97 Quota exceeded only when no
//! recipient took it; a queue that makes room by dropping its oldest
//! message took it (MQTT 5 PUBACK, 3.4.2.1). Sans-IO, against the core.

use bytes::BytesMut;
use tern_broker::{Broker, BrokerConfig, ConnId, OutputCredit};
use tern_codec::{
    Connect, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use tern_session::{Instant, OverflowPolicy, QueueLimits};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn send(broker: &mut Broker, conn: ConnId, packet: Packet) {
    let mut buf = BytesMut::new();
    packet.encode(V5, &mut buf).unwrap();
    broker.handle_bytes(Instant::ZERO, conn, &mut buf);
}

fn connect(broker: &mut Broker, id: &'static str) -> ConnId {
    let conn = broker.accept(Instant::ZERO);
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    };
    send(broker, conn, Packet::Connect(Box::new(connect)));
    conn
}

/// The PUBACK reason codes `publisher` got for 5 QoS 1 PUBLISHes to a
/// subscriber whose queue holds 2 messages and whose socket takes nothing.
fn pubacks(overflow: OverflowPolicy) -> Vec<ReasonCode> {
    let mut config = BrokerConfig {
        sys_interval: None,
        output_credit: Some(OutputCredit {
            high_water: 0,
            low_water: 0,
        }),
        ..BrokerConfig::default()
    };
    config.server.queue = QueueLimits {
        max_messages: 2,
        overflow,
        ..QueueLimits::default()
    };
    let mut broker = Broker::new(config, Instant::ZERO);
    let subscriber = connect(&mut broker, "sub");
    let publisher = connect(&mut broker, "pub");
    let filter = SubscribeFilter {
        filter: MqttString::from_static("q"),
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
    };
    let subscribe = Subscribe {
        packet_id: 1.try_into().unwrap(),
        properties: Default::default(),
        filters: vec![filter],
    };
    send(&mut broker, subscriber, Packet::Subscribe(subscribe));
    let mut codes = Vec::new();
    for id in 1..=5u16 {
        let publish = Publish {
            topic: MqttString::from_static("q"),
            qos: QoS::AtLeastOnce,
            packet_id: id.try_into().ok(),
            payload: "x".into(),
            ..Publish::default()
        };
        send(&mut broker, publisher, Packet::Publish(publish));
        while let Some(t) = broker.poll_transmit(Instant::ZERO) {
            if t.conn == publisher {
                let len = t.packet.encoded_len(t.version);
                broker.handle_written(publisher, len);
                if let Packet::PubAck(ack) = t.packet {
                    codes.push(ack.reason_code);
                }
            }
        }
        while broker.poll_event().is_some() {}
    }
    codes
}

#[test]
fn a_queue_that_drops_its_oldest_takes_every_message() {
    assert_eq!(
        pubacks(OverflowPolicy::DropOldest),
        vec![ReasonCode::Success; 5]
    );
}

#[test]
fn a_full_queue_that_refuses_new_messages_gets_quota_exceeded() {
    let codes = pubacks(OverflowPolicy::DropNewest);
    assert_eq!(codes.len(), 5);
    assert_eq!(codes[0], ReasonCode::Success);
    assert_eq!(codes[4], ReasonCode::QuotaExceeded, "{codes:?}");
}
