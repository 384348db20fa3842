//! The sans-IO core removes an ended session's subscriptions in slices
//! (issue 13: work proportional to one client's state never stops the
//! broker for long), and routing skips what is left meanwhile.

use bytes::{Bytes, BytesMut};
use core::time::Duration;
use tern_broker::{Broker, BrokerConfig, ConnId};
use tern_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use tern_session::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Sends `packet`; returns every packet the broker sends back to `conn`.
fn send(broker: &mut Broker, now: Instant, conn: ConnId, packet: impl Into<Packet>) -> Vec<Packet> {
    let mut bytes = BytesMut::new();
    packet.into().encode(V5, &mut bytes).unwrap();
    broker.handle_bytes(now, conn, &mut bytes);
    let mut out = Vec::new();
    while let Some(t) = broker.poll_transmit(now) {
        if t.conn == conn {
            out.push(t.packet);
        }
    }
    while broker.poll_event().is_some() {}
    out
}

fn connected(broker: &mut Broker, id: &'static str) -> ConnId {
    let conn = broker.accept(Instant::ZERO);
    let mut c = Connect {
        protocol: V5,
        clean_start: true,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    };
    if id == "other" {
        // A session that outlives its connection.
        c.properties.session_expiry_interval = Some(600);
    }
    send(broker, Instant::ZERO, conn, Packet::Connect(Box::new(c)));
    conn
}

fn subscribe(broker: &mut Broker, conn: ConnId, id: u16, filters: Vec<String>) {
    let subscribe = Subscribe {
        packet_id: PacketId::new(id).unwrap(),
        filters: filters
            .into_iter()
            .map(|f| SubscribeFilter {
                filter: MqttString::try_from(f).unwrap(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            })
            .collect(),
        properties: Default::default(),
    };
    send(broker, Instant::ZERO, conn, subscribe);
}

fn puback(broker: &mut Broker, conn: ConnId, topic: &'static str, id: u16) -> ReasonCode {
    let p = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static(topic),
        packet_id: PacketId::new(id),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    match &send(broker, Instant::ZERO, conn, p)[..] {
        [Packet::PubAck(a)] => a.reason_code,
        other => panic!("expected a PUBACK, got {other:?}"),
    }
}

#[test]
fn an_ended_sessions_subscriptions_leave_in_slices_and_are_never_routed_to() {
    let config = BrokerConfig {
        max_subscriptions: 20_000,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config, Instant::ZERO);
    let many = connected(&mut broker, "many");
    for batch in 0..10 {
        let filters = (0..1000).map(|i| format!("s/{batch}/{i}/+/#")).collect();
        subscribe(&mut broker, many, batch + 1, filters);
    }
    // More shared subscriptions than one slice removes.
    let groups: Vec<String> = (0..300).map(|g| format!("$share/g{g}/t")).collect();
    subscribe(&mut broker, many, 11, groups.clone());
    let other = connected(&mut broker, "other");
    subscribe(&mut broker, other, 1, groups);
    // Offline: the group has no online member, so one is chosen among the
    // live sessions.
    broker.handle_closed(Instant::ZERO, other);
    assert_eq!(broker.subscription_count(), 10_600);
    let publisher = connected(&mut broker, "pub");

    // Its connection closes and its session (no expiry) ends: a slice goes
    // at once, the rest waits for the sweep timer.
    broker.handle_closed(Instant::ZERO, many);
    while broker.poll_event().is_some() {}
    let left = broker.subscription_count();
    assert!(left > 5_000, "removed all at once: {left} left");
    // Meanwhile it is never routed to: no other subscriber matches
    // `s/0/0/x/y`, so MQTT 5 says so (0x10) [MQTT-3.4.2-1] ...
    assert_eq!(
        puback(&mut broker, publisher, "s/0/0/x/y", 1),
        ReasonCode::NoMatchingSubscribers
    );
    // ... and its shared subscription's group has the live (offline)
    // member only.
    for id in 2..4 {
        assert_eq!(puback(&mut broker, publisher, "t", id), ReasonCode::Success);
    }
    let to_other = broker.session("other").map(|s| s.held().0);
    assert_eq!(
        to_other,
        Some(600),
        "every group's messages went to its live member"
    );

    // The sweep: slices at the timer, until nothing is left.
    let mut slices = 0;
    let mut now = Instant::ZERO;
    while broker.subscription_count() > 300 {
        let at = broker.poll_timeout().expect("a sweep is armed");
        assert!(at <= now + Duration::from_millis(1));
        now = at;
        broker.handle_timeout(now);
        slices += 1;
        assert!(slices < 1_000, "the sweep does not end");
    }
    assert!(slices >= 10, "{slices} slices for 10,000 subscriptions");
    assert_eq!(broker.subscription_count(), 300, "the live member's");
}
