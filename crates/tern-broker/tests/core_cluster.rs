//! The core's cluster seam on its own (issue 18), two sans-IO brokers wired
//! back to back the way a cluster link wires them: local interest is
//! counted per distinct filter and announced on its first and last
//! subscription; a message leaves its node only when another node has
//! interest (or it is retained), once; a message from the cluster is
//! routed locally at each subscription's QoS and never handed out again.

use tern_broker::{Broker, BrokerConfig, ClusterOutput, ConnId};
use tern_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions, Unsubscribe,
};
use tern_session::Instant;

fn broker(cluster: bool) -> Broker {
    Broker::new(
        BrokerConfig {
            cluster,
            ..BrokerConfig::default()
        },
        Instant::ZERO,
    )
}

fn connect(b: &mut Broker, id: &'static str, version: ProtocolVersion) -> ConnId {
    let conn = b.accept(Instant::ZERO);
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_start: true,
            client_id: MqttString::from_static(id),
            ..Connect::default()
        })),
    );
    assert!(matches!(transmits(b).as_slice(), [(_, Packet::ConnAck(_))]));
    conn
}

/// Subscribes; returns what followed the SUBACK (retained messages).
fn subscribe(
    b: &mut Broker,
    conn: ConnId,
    filter: &'static str,
    qos: QoS,
) -> Vec<(ConnId, Packet)> {
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static(filter),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Default::default(),
        }),
    );
    let mut out = transmits(b);
    assert!(matches!(out.first(), Some((_, Packet::SubAck(_)))));
    out.remove(0);
    out
}

fn unsubscribe(b: &mut Broker, conn: ConnId, filter: &'static str) {
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: PacketId::new(2).unwrap(),
            filters: vec![MqttString::from_static(filter)],
            properties: Default::default(),
        }),
    );
    transmits(b);
}

fn publish(b: &mut Broker, conn: ConnId, topic: &'static str, qos: QoS, retain: bool) {
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Publish(Publish {
            qos,
            retain,
            topic: MqttString::from_static(topic),
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(9).unwrap()),
            payload: bytes::Bytes::from_static(b"21.5"),
            ..Publish::default()
        }),
    );
}

fn transmits(b: &mut Broker) -> Vec<(ConnId, Packet)> {
    let mut out = Vec::new();
    while let Some(t) = b.poll_transmit(Instant::ZERO) {
        out.push((t.conn, t.packet));
    }
    out
}

fn outputs(b: &mut Broker) -> Vec<ClusterOutput> {
    std::iter::from_fn(|| b.poll_cluster()).collect()
}

fn interest(filter: &'static str, on: bool) -> ClusterOutput {
    ClusterOutput::Interest {
        filter: MqttString::from_static(filter),
        on,
    }
}

/// Moves `from`'s cluster output into `to`, as a link would; returns how
/// many messages it carried.
fn carry(from: &mut Broker, name: &str, to: &mut Broker) -> usize {
    let mut messages = 0;
    while let Some(out) = from.poll_cluster() {
        match out {
            ClusterOutput::Interest { filter, on } => {
                to.handle_cluster_interest(name, filter.as_str(), on)
            }
            ClusterOutput::Publish(p) => {
                messages += 1;
                to.handle_cluster_publish(Instant::ZERO, p)
            }
            _ => unreachable!("no other output"),
        }
    }
    messages
}

fn publishes_to(out: &[(ConnId, Packet)], conn: ConnId) -> Vec<QoS> {
    out.iter()
        .filter_map(|(c, p)| match p {
            Packet::Publish(p) if *c == conn => Some(p.qos),
            _ => None,
        })
        .collect()
}

#[test]
fn without_the_cluster_nothing_is_counted_or_handed_out() {
    let mut b = broker(false);
    let c = connect(&mut b, "c", ProtocolVersion::V5);
    subscribe(&mut b, c, "a/+", QoS::AtLeastOnce);
    publish(&mut b, c, "a/b", QoS::AtMostOnce, true);
    assert_eq!(outputs(&mut b), vec![]);
    assert!(b.cluster_interest().is_empty());
    assert_eq!(b.cluster_stats(), Default::default());
}

#[test]
fn interest_is_announced_on_a_filters_first_and_last_subscription() {
    let mut b = broker(true);
    let c1 = connect(&mut b, "c1", ProtocolVersion::V5);
    let c2 = connect(&mut b, "c2", ProtocolVersion::V3_1_1);
    subscribe(&mut b, c1, "a/+", QoS::AtLeastOnce);
    assert_eq!(outputs(&mut b), vec![interest("a/+", true)]);
    // A second subscriber, and a replaced subscription: no change.
    subscribe(&mut b, c2, "a/+", QoS::AtMostOnce);
    subscribe(&mut b, c2, "a/+", QoS::ExactlyOnce);
    // A shared subscription counts under the filter it shares.
    subscribe(&mut b, c1, "$share/g/a/+", QoS::AtMostOnce);
    // $SYS stays on its node.
    subscribe(&mut b, c1, "$SYS/#", QoS::AtMostOnce);
    assert_eq!(outputs(&mut b), vec![]);
    unsubscribe(&mut b, c1, "a/+");
    unsubscribe(&mut b, c1, "$share/g/a/+");
    assert_eq!(outputs(&mut b), vec![]);
    assert_eq!(b.cluster_interest(), vec![MqttString::from_static("a/+")]);
    // The last one goes with its (clean) session.
    b.handle_packet(Instant::ZERO, c2, Packet::Disconnect(Box::default()));
    transmits(&mut b);
    while b.poll_event().is_some() {}
    b.handle_closed(Instant::ZERO, c2);
    assert_eq!(outputs(&mut b), vec![interest("a/+", false)]);
    assert!(b.cluster_interest().is_empty());
}

#[test]
fn a_message_leaves_its_node_only_for_remote_interest_and_is_never_echoed() {
    let (mut a, mut b) = (broker(true), broker(true));
    let publisher = connect(&mut a, "pub", ProtocolVersion::V5);
    let sub = connect(&mut b, "sub", ProtocolVersion::V3_1_1);
    // No one anywhere wants it: it stays on A (and MQTT 5 hears 0x10).
    publish(&mut a, publisher, "plant/7/temp", QoS::AtLeastOnce, false);
    assert!(matches!(
        transmits(&mut a).as_slice(),
        [(_, Packet::PubAck(ack))] if ack.reason_code == ReasonCode::NoMatchingSubscribers
    ));
    assert_eq!(carry(&mut a, "A", &mut b), 0);
    // B's interest reaches A; `plant/#` also matches `plant`.
    subscribe(&mut b, sub, "plant/#", QoS::AtLeastOnce);
    carry(&mut b, "B", &mut a);
    for (topic, qos) in [
        ("plant/7/temp", QoS::ExactlyOnce),
        ("plant", QoS::AtMostOnce),
    ] {
        publish(&mut a, publisher, topic, qos, false);
        // Acknowledged as delivered: a node took it.
        assert!(!transmits(&mut a).iter().any(|(_, p)| matches!(
            p,
            Packet::PubAck(x) if x.reason_code != ReasonCode::Success
        )));
        assert_eq!(carry(&mut a, "A", &mut b), 1, "{topic}");
    }
    // Each delivered at the subscription's QoS at most [MQTT-3.8.4-6].
    let out = transmits(&mut b);
    assert_eq!(
        publishes_to(&out, sub),
        vec![QoS::AtLeastOnce, QoS::AtMostOnce]
    );
    // B does not hand out what came from the cluster.
    assert_eq!(outputs(&mut b), vec![]);
    // A topic no remote filter matches stays on A.
    publish(&mut a, publisher, "other", QoS::AtMostOnce, false);
    assert_eq!(carry(&mut a, "A", &mut b), 0);
    assert_eq!(a.cluster_stats().sent, 2);
    assert_eq!(b.cluster_stats().received, 2);
    // B leaves: its interest goes with it.
    a.handle_cluster_node_gone("B");
    publish(&mut a, publisher, "plant/7/temp", QoS::AtMostOnce, false);
    assert_eq!(carry(&mut a, "A", &mut b), 0);
}

#[test]
fn retained_messages_go_to_every_node_and_are_kept_there() {
    let (mut a, mut b) = (broker(true), broker(true));
    let publisher = connect(&mut a, "pub", ProtocolVersion::V3_1_1);
    publish(&mut a, publisher, "plant/7/temp", QoS::AtLeastOnce, true);
    transmits(&mut a);
    assert_eq!(carry(&mut a, "A", &mut b), 1);
    assert_eq!(b.retained_count(), 1);
    let sub = connect(&mut b, "late", ProtocolVersion::V5);
    let retained = subscribe(&mut b, sub, "plant/+/temp", QoS::ExactlyOnce);
    assert_eq!(publishes_to(&retained, sub), vec![QoS::AtLeastOnce]);
    // An empty retained message clears it everywhere [MQTT-3.3.1-6].
    b.handle_packet(
        Instant::ZERO,
        sub,
        Packet::Publish(Publish {
            retain: true,
            topic: MqttString::from_static("plant/7/temp"),
            ..Publish::default()
        }),
    );
    transmits(&mut b);
    assert_eq!(carry(&mut b, "B", &mut a), 1);
    assert_eq!(a.retained_count(), 0);
    assert_eq!(b.retained_count(), 0);
}
