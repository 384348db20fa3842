//! Property test: random operations with faults on a client/server pair.
//!
//! After every run the link is healed and drained, then the delivery
//! guarantees are checked:
//! - every QoS 1 message the client was told was published reached the
//!   server application at least once, and likewise server → client;
//! - every QoS 2 message reached the other application exactly once (when
//!   the server never lost the session; a clean start may legitimately
//!   duplicate, since the protocol state that prevents it is gone);
//! - per topic, QoS 1 and 2 messages arrive in publish order (first
//!   occurrences), across reconnects [MQTT-4.6.0-1] [MQTT-4.6.0-6];
//! - packet identifiers are never reused while in flight (checked as
//!   `publish` returns them);
//! - nothing is left queued or in flight once everything is acknowledged.

mod support;

use core::time::Duration;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use support::{MsgId, Pair};
use tern_codec::{ProtocolVersion, QoS};

#[derive(Debug, Clone)]
enum Op {
    ClientPublish {
        topic: u8,
        qos: u8,
    },
    ServerPublish {
        topic: u8,
        qos: u8,
    },
    /// Move up to this many bytes client → server.
    DeliverC2s(usize),
    /// Move up to this many bytes server → client.
    DeliverS2c(usize),
    Flush,
    Advance(u64),
    /// Reset the link and reconnect; `clean` starts a new session.
    Reconnect {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u8..3).prop_map(|(topic, qos)| Op::ClientPublish { topic, qos }),
        4 => (0u8..3, 0u8..3).prop_map(|(topic, qos)| Op::ServerPublish { topic, qos }),
        5 => (1usize..200).prop_map(Op::DeliverC2s),
        5 => (1usize..200).prop_map(Op::DeliverS2c),
        4 => Just(Op::Flush),
        1 => (0u64..5_000).prop_map(Op::Advance),
        2 => Just(Op::Reconnect { clean: false }),
        1 => Just(Op::Reconnect { clean: true }),
    ]
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap()
}

fn run(version: ProtocolVersion, ops: &[Op]) {
    let mut pair = Pair::new(version);
    pair.connect(false);
    pair.settle();
    for op in ops {
        match *op {
            Op::ClientPublish { topic, qos: q } => {
                if pair.client.is_some() {
                    let _ = pair.client_publish(&format!("t/{topic}"), qos(q));
                }
            }
            Op::ServerPublish { topic, qos: q } => {
                pair.server_publish(&format!("t/{topic}"), qos(q));
            }
            Op::DeliverC2s(n) => {
                pair.flush_client();
                pair.deliver_c2s(n);
            }
            Op::DeliverS2c(n) => {
                pair.flush_server();
                pair.deliver_s2c(n);
            }
            Op::Flush => {
                pair.flush_client();
                pair.flush_server();
            }
            Op::Advance(ms) => pair.advance(Duration::from_millis(ms)),
            Op::Reconnect { clean } => {
                pair.reset();
                pair.connect(clean);
                pair.settle();
            }
        }
    }
    // Heal: a fresh link with the session, then drain everything.
    pair.reset();
    pair.connect(false);
    pair.settle();
    check(&pair);
}

fn check(pair: &Pair) {
    let rec = &pair.rec;
    let lossless = rec.session_losses == 0;
    // Client → server.
    check_direction(
        "client→server",
        &rec.client_published,
        &rec.server_got,
        lossless,
    );
    // Server → client: a clean start discards what the server had queued
    // for the client, so only a lossless run promises delivery.
    check_direction(
        "server→client",
        &rec.server_published,
        &rec.client_got,
        lossless,
    );
    // Every client QoS 1/2 publish finished its flow and was confirmed.
    assert!(
        rec.client_open.is_empty(),
        "flows left open: {:?}",
        rec.client_open
    );
    assert!(
        rec.client_failed.is_empty(),
        "failed: {:?}",
        rec.client_failed
    );
    let client = pair.client.as_ref().unwrap();
    assert_eq!(client.session().inflight_len(), 0);
    assert_eq!(client.session().queue_len(), 0);
    assert_eq!(client.session().packet_ids_in_use(), 0);
    assert_eq!(client.session().incoming_qos2_len(), 0);
    let server = pair.server.as_ref().unwrap().session().unwrap();
    assert_eq!(server.inflight_len(), 0);
    assert_eq!(server.queue_len(), 0);
    assert_eq!(server.incoming_qos2_len(), 0);
}

fn check_direction(
    what: &str,
    sent: &[(String, MsgId, QoS)],
    got: &[(String, MsgId, QoS)],
    lossless: bool,
) {
    let mut counts: BTreeMap<MsgId, usize> = BTreeMap::new();
    for (_, id, _) in got {
        *counts.entry(*id).or_default() += 1;
    }
    let sent_ids: BTreeSet<MsgId> = sent.iter().map(|s| s.1).collect();
    for (_, id, _) in got {
        assert!(sent_ids.contains(id), "{what}: {id:?} was never sent");
    }
    for (_, id, q) in sent {
        let n = counts.get(id).copied().unwrap_or(0);
        let may_lose = !lossless && what.starts_with("server");
        match q {
            QoS::AtMostOnce => assert!(n <= 1, "{what}: QoS 0 {id:?} delivered {n} times"),
            _ if may_lose => {}
            QoS::AtLeastOnce => assert!(n >= 1, "{what}: QoS 1 {id:?} lost"),
            QoS::ExactlyOnce if lossless => {
                assert_eq!(n, 1, "{what}: QoS 2 {id:?} delivered {n} times")
            }
            QoS::ExactlyOnce => assert!(n >= 1, "{what}: QoS 2 {id:?} lost"),
        }
    }
    // Order per topic, QoS 1 and 2, by first occurrence.
    let position: BTreeMap<MsgId, usize> = sent.iter().enumerate().map(|(i, s)| (s.1, i)).collect();
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (topic, id, q) in got {
        if *q == QoS::AtMostOnce || !seen.insert(*id) {
            continue;
        }
        let pos = position[id];
        if let Some(&prev) = last.get(topic.as_str()) {
            assert!(prev < pos, "{what}: {topic} out of order at {id:?}");
        }
        last.insert(topic, pos);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn guarantees_hold_under_faults_v5(ops in proptest::collection::vec(op(), 0..120)) {
        run(ProtocolVersion::V5, &ops);
    }

    #[test]
    fn guarantees_hold_under_faults_v311(ops in proptest::collection::vec(op(), 0..120)) {
        run(ProtocolVersion::V3_1_1, &ops);
    }
}
