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

/// Subscribes `conn` (MQTT 5) to `filter` at QoS 1.
fn subscribe(broker: &mut Broker, conn: ConnId, filter: &'static str) {
    send(
        broker,
        conn,
        Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static(filter),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
            properties: Default::default(),
        },
    );
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
    subscribe(&mut broker, sub, "a/b/c");
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
    subscribe(&mut broker, sub, "big");
    let publisher = connected(&mut broker, "pub", false);
    let idle = broker.memory_use();
    send(&mut broker, publisher, publish("big", 1_000, false, 1));
    assert_eq!(broker.stats().drops.too_large, 1, "dropped as too large");
    assert_eq!(broker.memory_use(), broker.memory_recount());
    assert_eq!(broker.memory_use().sessions, idle.sessions);
}

/// A QoS 2 PUBLISH refused at the memory budget is not half-accepted: for
/// an MQTT 3.1.1 client (closed, since 3.1.1 has no refusal code) its
/// packet identifier is not kept as received, so the resend after the
/// reconnect is a new message, answered and routed [MQTT-4.3.3-9]. Found
/// by tern-sim with a memory budget: the resends were swallowed as
/// duplicates of a message the broker never took.
#[test]
fn a_qos2_publish_refused_at_the_budget_can_be_sent_again() {
    let v4 = ProtocolVersion::V3_1_1;
    // Every packet the broker sends meanwhile, with its connection.
    let send4 = |broker: &mut Broker, conn: ConnId, packet: Packet| -> Vec<(ConnId, Packet)> {
        let mut bytes = BytesMut::new();
        packet.encode(v4, &mut bytes).unwrap();
        broker.handle_bytes(Instant::ZERO, conn, &mut bytes);
        let mut out = Vec::new();
        while let Some(t) = broker.poll_transmit(Instant::ZERO) {
            out.push((t.conn, t.packet));
        }
        while broker.poll_event().is_some() {}
        out
    };
    let connect = || {
        Packet::Connect(Box::new(Connect {
            protocol: v4,
            clean_start: false,
            client_id: MqttString::from_static("pub2"),
            ..Connect::default()
        }))
    };
    let qos2 = || {
        Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            dup: false,
            ..publish("t", 10, false, 9)
        })
    };
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    let sub = connected(&mut broker, "sub", true);
    subscribe(&mut broker, sub, "t");
    let publisher = broker.accept(Instant::ZERO);
    send4(&mut broker, publisher, connect());
    let lifted = broker.config().clone();
    broker.set_config(
        Instant::ZERO,
        BrokerConfig {
            max_memory: Some(1),
            ..lifted.clone()
        },
    );
    let refused = send4(&mut broker, publisher, qos2());
    assert!(
        !refused.iter().any(|(_, p)| matches!(p, Packet::PubRec(_))),
        "refused, not acknowledged: {refused:?}"
    );
    broker.handle_closed(Instant::ZERO, publisher);
    while broker.poll_event().is_some() {}
    broker.set_config(Instant::ZERO, lifted);

    let again = broker.accept(Instant::ZERO);
    send4(&mut broker, again, connect());
    let answered = send4(&mut broker, again, qos2());
    assert!(
        answered
            .iter()
            .any(|(c, p)| *c == again && matches!(p, Packet::PubRec(_))),
        "the resend is answered: {answered:?}"
    );
    assert!(
        answered
            .iter()
            .any(|(c, p)| *c == sub && matches!(p, Packet::Publish(_))),
        "the resend is routed to the subscriber: {answered:?}"
    );
}

/// A QoS 0 PUBLISH dropped at the memory budget is reported like the
/// others (a `Refused` event with the client id, for the log and for
/// tern-sim's model), not only counted.
#[test]
fn a_qos0_publish_dropped_at_the_budget_is_reported() {
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    let publisher = connected(&mut broker, "pub0", false);
    let config = BrokerConfig {
        max_memory: Some(1),
        ..broker.config().clone()
    };
    broker.set_config(Instant::ZERO, config);
    let mut bytes = BytesMut::new();
    Packet::Publish(Publish {
        qos: QoS::AtMostOnce,
        packet_id: None,
        ..publish("t0", 10, true, 1)
    })
    .encode(V5, &mut bytes)
    .unwrap();
    broker.handle_bytes(Instant::ZERO, publisher, &mut bytes);
    let events: Vec<_> = std::iter::from_fn(|| broker.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            tern_broker::BrokerEvent::Refused {
                what: tern_broker::Refusal::Publish(topic),
                limit: Some(tern_broker::Limit::Memory),
                client_id,
                ..
            } if topic.as_str() == "t0" && client_id.as_str() == "pub0"
        )),
        "{events:?}"
    );
    assert_eq!(broker.stats().drops.memory_limit, 1);
    assert_eq!(broker.retained_count(), 0, "not retained either");
}
