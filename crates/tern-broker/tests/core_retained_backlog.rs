//! Retained messages matched by a new subscription wait as references,
//! not packets (issue 13, retained fan-out): a `#` subscriber over many
//! retained topics whose connection takes nothing makes the broker hold a
//! few dozen bytes per waiting message, every message still arrives once
//! it reads [MQTT-3.3.1-9], and a topic changed in the meantime is not
//! sent with its old value.
//!
//! One test in this binary: the allocator counts the whole process.

use bytes::{Bytes, BytesMut};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;
use tern_broker::{Broker, BrokerConfig, ConnId};
use tern_codec::{
    Connect, MqttString, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use tern_session::Instant;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed, by the whole process.
fn live_bytes() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Retained topics.
const N: usize = 20_000;

fn input(broker: &mut Broker, conn: ConnId, packet: Packet) {
    let mut bytes = BytesMut::new();
    packet.encode(V5, &mut bytes).unwrap();
    broker.handle_bytes(Instant::ZERO, conn, &mut bytes);
}

/// Takes every transmit the core has now, without reporting anything
/// written; the PUBLISHes for `conn` with their wire lengths.
fn drain(broker: &mut Broker, conn: ConnId) -> Vec<(Publish, usize)> {
    let mut out = Vec::new();
    while let Some(t) = broker.poll_transmit(Instant::ZERO) {
        if let (true, Packet::Publish(p)) = (t.conn == conn, t.packet) {
            let len = Packet::Publish(p.clone()).encoded_len(V5);
            out.push((p, len));
        }
    }
    while broker.poll_event().is_some() {}
    out
}

fn connected(broker: &mut Broker, id: &'static str) -> ConnId {
    let conn = broker.accept(Instant::ZERO);
    let c = Connect {
        protocol: V5,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    };
    input(broker, conn, Packet::Connect(Box::new(c)));
    drain(broker, conn);
    conn
}

fn retain(broker: &mut Broker, publisher: ConnId, i: usize, payload: &'static [u8]) {
    let p = Publish {
        qos: QoS::AtMostOnce,
        retain: true,
        topic: MqttString::try_from(format!("r/{i}")).unwrap(),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    };
    input(broker, publisher, Packet::Publish(p));
}

/// A broker holding the `N` retained messages, its publisher, and a
/// connected subscriber.
fn setup() -> (Broker, ConnId, ConnId) {
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    let publisher = connected(&mut broker, "pub");
    for i in 0..N {
        retain(&mut broker, publisher, i, b"0123456789abcdef");
    }
    drain(&mut broker, publisher);
    let sub = connected(&mut broker, "sub");
    (broker, publisher, sub)
}

/// `sub` subscribes to `#`; what it is sent before anything is written.
fn subscribe_all(broker: &mut Broker, sub: ConnId) -> Vec<(Publish, usize)> {
    input(
        broker,
        sub,
        Packet::Subscribe(Subscribe {
            packet_id: tern_codec::PacketId::new(1).unwrap(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("#"),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
            properties: Default::default(),
        }),
    );
    drain(broker, sub)
}

/// Reports everything in `got` written, and what that lets out, until
/// nothing more comes.
fn read_all(broker: &mut Broker, sub: ConnId, got: &mut Vec<(Publish, usize)>) {
    let mut reported = 0;
    loop {
        let written: usize = got[reported..].iter().map(|(_, n)| n).sum();
        reported = got.len();
        broker.handle_written(sub, written);
        got.extend(drain(broker, sub));
        if got.len() == reported {
            break;
        }
    }
}

fn index(p: &Publish) -> usize {
    p.topic.as_str()[2..].parse().unwrap()
}

#[test]
fn a_subscription_over_many_retained_topics_waits_as_references_and_delivers_each_once() {
    // The order retained messages go out in (deterministic: the same on
    // an identical broker), to change two that are surely still waiting.
    let order: Vec<usize> = {
        let (mut broker, _, sub) = setup();
        let mut got = subscribe_all(&mut broker, sub);
        read_all(&mut broker, sub, &mut got);
        got.iter().map(|(p, _)| index(p)).collect()
    };
    assert_eq!(order.len(), N);

    let (mut broker, publisher, sub) = setup();
    let before = live_bytes();
    // The connection takes what its output credit allows, then nothing
    // more is written: the rest waits.
    let mut got = subscribe_all(&mut broker, sub);
    assert!(
        got.len() < N / 4,
        "{} sent before anything was written",
        got.len()
    );
    let held = live_bytes() - before;
    let waiting = (N - got.len()) as isize;
    eprintln!("{held} bytes held for {waiting} waiting retained messages");
    // A slot in the index and a number (16 bytes) per waiting
    // message, plus what the session queue and the output hold; building
    // each as a delivery up front held 172 bytes a message.
    assert!(
        held < 64 * waiting,
        "{held} bytes held for {waiting} waiting retained messages ({} a message)",
        held / waiting
    );

    // The last two still wait: one gets a new value (which the subscriber
    // gets as it is published), one is removed.
    let (changed, removed) = (order[N - 1], order[N - 2]);
    retain(&mut broker, publisher, changed, b"new value");
    retain(&mut broker, publisher, removed, b"");
    drain(&mut broker, publisher);

    // Now the subscriber reads: everything else arrives, each once.
    read_all(&mut broker, sub, &mut got);
    let mut seen = vec![0_u32; N];
    for (p, _) in &got {
        seen[index(p)] += 1;
        if index(p) == changed {
            assert_eq!(
                &p.payload[..],
                b"new value",
                "the old value of a changed topic"
            );
        }
        if index(p) == removed {
            // The removal itself is routed like any message [MQTT-3.3.1-6].
            assert!(p.payload.is_empty(), "a removed retained message was sent");
        }
    }
    assert_eq!(seen[removed], 1, "the removal, once");
    assert_eq!(seen[changed], 1, "the changed topic's new value, once");
    let wrong: Vec<usize> = (0..N)
        .filter(|&i| i != removed && i != changed && seen[i] != 1)
        .collect();
    assert!(wrong.is_empty(), "not delivered exactly once: {wrong:?}");
}
