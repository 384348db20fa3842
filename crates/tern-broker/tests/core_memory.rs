//! The sans-IO core's memory account (`Broker::memory_use`, issue 13):
//! each part grows with what clients make the broker hold and comes back
//! to nothing when they leave, so the budget never drifts.

use bytes::{Bytes, BytesMut};
use tern_broker::{Broker, BrokerConfig, ConnId};
use tern_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use tern_session::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn send(broker: &mut Broker, conn: ConnId, packet: impl Into<Packet>) {
    let mut bytes = BytesMut::new();
    packet.into().encode(V5, &mut bytes).unwrap();
    broker.handle_bytes(Instant::ZERO, conn, &mut bytes);
    while broker.poll_transmit(Instant::ZERO).is_some() {}
    while broker.poll_event().is_some() {}
}

fn connected(broker: &mut Broker, id: &'static str, persistent: bool) -> ConnId {
    let conn = broker.accept(Instant::ZERO);
    let mut c = Connect {
        protocol: V5,
        clean_start: !persistent,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    };
    if persistent {
        c.properties.session_expiry_interval = Some(600);
    }
    send(broker, conn, Packet::Connect(Box::new(c)));
    conn
}

fn publish(topic: &'static str, payload: usize, retain: bool, id: u16) -> Publish {
    Publish {
        qos: QoS::AtLeastOnce,
        retain,
        topic: MqttString::from_static(topic),
        packet_id: PacketId::new(id),
        payload: Bytes::from(vec![0; payload]),
        ..Publish::default()
    }
}

#[test]
fn every_part_grows_with_what_clients_leave_and_returns_to_nothing() {
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    assert_eq!(broker.memory_use().total(), 0);

    let sub = connected(&mut broker, "sub", true);
    let before = broker.memory_use();
    assert!(before.connections > 0 && before.sessions > 0, "{before:?}");
    send(
        &mut broker,
        sub,
        Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("a/b/c"),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
            properties: Default::default(),
        },
    );
    let subscribed = broker.memory_use();
    assert!(subscribed.subscriptions > 5, "{subscribed:?}");
    // Offline, its session queues what is published for it.
    broker.handle_closed(Instant::ZERO, sub);
    while broker.poll_event().is_some() {}

    let publisher = connected(&mut broker, "pub", false);
    let idle = broker.memory_use();
    send(&mut broker, publisher, publish("a/b/c", 10_000, false, 1));
    let queued = broker.memory_use();
    assert!(
        queued.sessions >= idle.sessions + 10_000,
        "{idle:?} -> {queued:?}"
    );
    send(&mut broker, publisher, publish("r", 5_000, true, 2));
    assert!(broker.memory_use().retained >= 5_000);
    // Deleting the retained message gives its bytes back.
    send(&mut broker, publisher, publish("r", 0, true, 3));
    assert_eq!(broker.memory_use().retained, 0);

    // The subscriber comes back with a clean start: its session, queue
    // and subscription end; then everyone leaves.
    let back = connected(&mut broker, "sub", false);
    broker.handle_closed(Instant::ZERO, back);
    broker.handle_closed(Instant::ZERO, publisher);
    while broker.poll_event().is_some() {}
    assert_eq!(broker.session_count(), 0);
    assert_eq!(broker.memory_use(), Default::default());
}

/// A message the session drops on its way out (too large for the client's
/// Maximum Packet Size [MQTT-3.1.2-25]) gives its bytes back at once: the
/// running account equals a recount. Before, it stayed counted until the
/// next packet touched the session (found by tern-sim's bounds checker).
#[test]
fn a_message_dropped_on_the_way_out_leaves_the_account() {
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    let sub = broker.accept(Instant::ZERO);
    let mut c = Connect {
        protocol: V5,
        client_id: MqttString::from_static("small"),
        ..Connect::default()
    };
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(200);
    send(&mut broker, sub, Packet::Connect(Box::new(c)));
    send(
        &mut broker,
        sub,
        Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("big"),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
            properties: Default::default(),
        },
    );
    let publisher = connected(&mut broker, "pub", false);
    let idle = broker.memory_use();
    send(&mut broker, publisher, publish("big", 1_000, false, 1));
    assert_eq!(broker.stats().drops.too_large, 1, "dropped as too large");
    assert_eq!(broker.memory_use(), broker.memory_recount());
    assert_eq!(broker.memory_use().sessions, idle.sessions);
}
