//! The core's cluster seam on its own (issue 18), two sans-IO brokers wired
//! back to back the way a cluster link wires them: local interest is
//! counted per distinct filter and announced on its first and last
//! subscription; a message leaves its node only when another node has
//! interest (or it is retained), once; a message from the cluster is
//! routed locally at each subscription's QoS and never handed out again.
//! Sessions move between nodes: a CONNECT for a client identifier a node
//! does not hold waits for a claim; the node that held the session closes
//! its connection (0x8E) and hands the session over, and the claiming node
//! resumes it (session present 1) with its subscriptions and queued
//! messages; a clean start discards it.

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
    answer_claims(b);
    assert!(matches!(transmits(b).as_slice(), [(_, Packet::ConnAck(_))]));
    conn
}

/// Answers this node's claims as a cluster that holds no session for them
/// would (a broker without the cluster makes none).
fn answer_claims(b: &mut Broker) {
    while let Some(out) = b.poll_cluster() {
        match out {
            ClusterOutput::Claim { client_id, .. } => {
                b.handle_cluster_claimed(Instant::ZERO, client_id.as_str(), None)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A CONNECT for a session that outlives its connection (MQTT 5: Session
/// Expiry Interval 3600 s; 3.1.1: Clean Session 0), or with a clean start;
/// what the node tells the cluster is left for the caller.
fn connect_persistent(
    b: &mut Broker,
    now: Instant,
    id: &'static str,
    version: ProtocolVersion,
    clean_start: bool,
) -> ConnId {
    let conn = b.accept(now);
    let mut connect = Connect {
        protocol: version,
        clean_start,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    };
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(3600);
    }
    b.handle_packet(now, conn, Packet::Connect(Box::new(connect)));
    conn
}

fn close(b: &mut Broker, conn: ConnId) {
    while b.poll_event().is_some() {}
    b.handle_closed(Instant::ZERO, conn);
    while b.poll_event().is_some() {}
}

fn claims(b: &mut Broker) -> Vec<(String, bool)> {
    outputs(b)
        .into_iter()
        .filter_map(|o| match o {
            ClusterOutput::Claim {
                client_id,
                clean_start,
            } => Some((client_id.as_str().to_string(), clean_start)),
            _ => None,
        })
        .collect()
}

fn connack(out: &[(ConnId, Packet)], conn: ConnId) -> Option<(bool, ReasonCode)> {
    out.iter().find_map(|(c, p)| match p {
        Packet::ConnAck(a) if *c == conn => Some((a.session_present, a.reason_code)),
        _ => None,
    })
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
            other => panic!("unexpected {other:?}"),
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

/// A persistent session moves from node A to node B with its client
/// [MQTT-3.1.2-4]: B claims it, A hands over its subscription (options and
/// identifier) and the QoS 1 messages queued while the client was offline
/// [MQTT-3.1.2-5]; B answers CONNACK with Session Present 1
/// [MQTT-3.2.2-2], delivers them, and the subscription delivers there.
#[test]
fn a_session_taken_over_from_another_node_keeps_its_subscriptions_and_queued_messages() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut a, mut b) = (broker(true), broker(true));
        let now = Instant::ZERO;
        let c = connect_persistent(&mut a, now, "roamer", version, false);
        assert_eq!(claims(&mut a), vec![("roamer".into(), false)]);
        a.handle_cluster_claimed(now, "roamer", None);
        assert_eq!(
            connack(&transmits(&mut a), c),
            Some((false, ReasonCode::Success))
        );
        subscribe(&mut a, c, "plant/#", QoS::AtLeastOnce);
        carry(&mut a, "A", &mut b);
        close(&mut a, c);
        // Queued on A while the client is away.
        let publisher = connect(&mut a, "pub", ProtocolVersion::V5);
        publish(&mut a, publisher, "plant/1", QoS::AtLeastOnce, false);
        publish(&mut a, publisher, "plant/2", QoS::AtLeastOnce, false);
        transmits(&mut a);
        // The client comes back on B: its CONNECT waits for the claim.
        let c2 = connect_persistent(&mut b, now, "roamer", version, false);
        assert_eq!(claims(&mut b), vec![("roamer".into(), false)]);
        assert_eq!(transmits(&mut b), vec![], "no CONNACK before the claim");
        let handover = a
            .handle_cluster_release(now, "roamer", true)
            .expect("A hands the session over");
        assert_eq!(handover.subscriptions.len(), 1);
        assert_eq!(handover.messages.len(), 2);
        // A no longer holds it, nor its interest.
        assert_eq!(
            outputs(&mut a),
            vec![ClusterOutput::Interest {
                filter: MqttString::from_static("plant/#"),
                on: false
            }]
        );
        assert!(a.handle_cluster_release(now, "roamer", true).is_none());
        b.handle_cluster_claimed(now, "roamer", Some(handover));
        let out = transmits(&mut b);
        assert_eq!(
            connack(&out, c2),
            Some((true, ReasonCode::Success)),
            "{version:?}"
        );
        assert_eq!(
            publishes_to(&out, c2),
            vec![QoS::AtLeastOnce, QoS::AtLeastOnce],
            "{version:?}"
        );
        // B now has the subscription's interest, and it delivers there.
        assert_eq!(
            outputs(&mut b),
            vec![ClusterOutput::Interest {
                filter: MqttString::from_static("plant/#"),
                on: true
            }]
        );
        let local = connect(&mut b, "pub-b", ProtocolVersion::V5);
        publish(&mut b, local, "plant/3", QoS::AtMostOnce, false);
        assert_eq!(publishes_to(&transmits(&mut b), c2), vec![QoS::AtMostOnce]);
        assert_eq!(a.cluster_stats().sessions_out, 1);
        assert_eq!(b.cluster_stats().sessions_in, 1);
    }
}

/// A client still connected to node A connects again to node B: A closes
/// the old connection, with DISCONNECT 0x8E Session taken over in MQTT 5
/// [MQTT-3.1.4-3] and by closing it in 3.1.1, then hands over the session.
#[test]
fn a_client_still_connected_elsewhere_is_disconnected_with_session_taken_over() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut a, mut b) = (broker(true), broker(true));
        let now = Instant::ZERO;
        let c = connect_persistent(&mut a, now, "twice", version, false);
        answer_claims(&mut a);
        transmits(&mut a);
        subscribe(&mut a, c, "x", QoS::ExactlyOnce);
        while a.poll_event().is_some() {}
        let c2 = connect_persistent(&mut b, now, "twice", version, false);
        assert_eq!(claims(&mut b), vec![("twice".into(), false)]);
        let handover = a.handle_cluster_release(now, "twice", true);
        let out = transmits(&mut a);
        let disconnects: Vec<ReasonCode> = out
            .iter()
            .filter_map(|(conn, p)| match p {
                Packet::Disconnect(d) if *conn == c => Some(d.reason_code),
                _ => None,
            })
            .collect();
        let expected = if version.is_v5() {
            vec![ReasonCode::SessionTakenOver]
        } else {
            vec![]
        };
        assert_eq!(disconnects, expected, "{version:?}");
        let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, tern_broker::BrokerEvent::Close(x) if *x == c)),
            "{version:?}: the old connection is closed: {events:?}"
        );
        let handover = handover.expect("the session outlived its connection");
        assert_eq!(handover.subscriptions.len(), 1);
        b.handle_cluster_claimed(now, "twice", Some(handover));
        assert_eq!(
            connack(&transmits(&mut b), c2),
            Some((true, ReasonCode::Success))
        );
    }
}

/// A clean start on another node discards the session [MQTT-3.1.2-4]: the
/// node that held it ends it, nothing travels, and CONNACK says Session
/// Present 0 [MQTT-3.2.2-2].
#[test]
fn a_clean_start_on_another_node_discards_the_session() {
    let (mut a, mut b) = (broker(true), broker(true));
    let now = Instant::ZERO;
    let c = connect_persistent(&mut a, now, "fresh", ProtocolVersion::V5, false);
    answer_claims(&mut a);
    transmits(&mut a);
    subscribe(&mut a, c, "q/#", QoS::AtLeastOnce);
    outputs(&mut a);
    close(&mut a, c);
    let c2 = connect_persistent(&mut b, now, "fresh", ProtocolVersion::V5, true);
    assert_eq!(claims(&mut b), vec![("fresh".into(), true)]);
    assert_eq!(a.handle_cluster_release(now, "fresh", false), None);
    // A ended it: its interest went with it.
    assert_eq!(
        outputs(&mut a),
        vec![ClusterOutput::Interest {
            filter: MqttString::from_static("q/#"),
            on: false
        }]
    );
    b.handle_cluster_claimed(now, "fresh", None);
    assert_eq!(
        connack(&transmits(&mut b), c2),
        Some((false, ReasonCode::Success))
    );
}

/// Without the cluster a CONNECT never waits (the first test's `connect`
/// sees its CONNACK at once) and release and claim do nothing.
#[test]
fn without_the_cluster_sessions_never_move() {
    let mut b = broker(false);
    let now = Instant::ZERO;
    let c = connect_persistent(&mut b, now, "stay", ProtocolVersion::V5, false);
    assert_eq!(
        connack(&transmits(&mut b), c),
        Some((false, ReasonCode::Success))
    );
    close(&mut b, c);
    assert_eq!(b.handle_cluster_release(now, "stay", true), None);
    b.handle_cluster_claimed(now, "stay", None);
    let again = connect_persistent(&mut b, now, "stay", ProtocolVersion::V5, false);
    assert_eq!(
        connack(&transmits(&mut b), again),
        Some((true, ReasonCode::Success))
    );
    assert_eq!(outputs(&mut b), vec![]);
}

/// `$SYS/broker/cluster/connected` follows the link: retained, 1 or 0.
#[test]
fn sys_says_whether_the_cluster_is_reachable() {
    let mut b = broker(true);
    let now = Instant::ZERO;
    let c = connect(&mut b, "ops", ProtocolVersion::V5);
    subscribe(&mut b, c, "$SYS/broker/cluster/#", QoS::AtMostOnce);
    let payloads = |b: &mut Broker| -> Vec<(String, bool)> {
        transmits(b)
            .into_iter()
            .filter_map(|(_, p)| match p {
                Packet::Publish(p) => Some((
                    String::from_utf8(p.payload.to_vec()).unwrap(),
                    p.topic.as_str() == "$SYS/broker/cluster/connected",
                )),
                _ => None,
            })
            .collect()
    };
    b.handle_cluster_connected(now, true);
    assert_eq!(payloads(&mut b), vec![("1".to_string(), true)]);
    b.handle_cluster_connected(now, false);
    assert_eq!(payloads(&mut b), vec![("0".to_string(), true)]);
    // Unchanged: not published again.
    b.handle_cluster_connected(now, false);
    assert_eq!(payloads(&mut b), vec![]);
    // Retained: a late subscriber sees the last value [MQTT-3.3.1-9].
    let late = connect(&mut b, "late", ProtocolVersion::V5);
    let retained = subscribe(
        &mut b,
        late,
        "$SYS/broker/cluster/connected",
        QoS::AtMostOnce,
    );
    assert!(
        matches!(retained.as_slice(), [(_, Packet::Publish(p))] if &p.payload[..] == b"0" && p.retain)
    );
    assert_eq!(outputs(&mut b), vec![], "$SYS never leaves its node");
}
