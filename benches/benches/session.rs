//! tern-session round trips in memory: a client and a server connection back
//! to back, every packet encoded and decoded, no sockets.
//!
//! One iteration publishes a batch of messages, moves the PUBLISH bytes to
//! the server, and the acknowledgements back, until every flow is complete;
//! throughput is reported per message (one publish → delivery → ack round
//! trip, with a QoS 2 round trip being PUBLISH/PUBREC/PUBREL/PUBCOMP).
//!
//! `session_client_side` times only the client's half of a round trip, for
//! tern-session and rumqttc 0.24's `MqttState` side by side (see
//! `session_client/mod.rs`).

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_benches::session_pair::Pair;
use tern_codec::{MqttString, ProtocolVersion, Publish, QoS};
use tern_session::Instant;

mod session_client;

const BATCH: usize = 64;

fn round_trips(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x5a; 64]);
    let topic = MqttString::from_static("sensors/building-7/floor-3/temp");
    let mut group = c.benchmark_group("session_round_trip");
    group.throughput(Throughput::Elements(BATCH as u64));
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let mut pair = Pair::new(version);
            let name = format!("v{}_qos{}", version, qos.as_u8());
            group.bench_function(name, |b| {
                b.iter(|| {
                    for _ in 0..BATCH {
                        pair.client
                            .publish(
                                Instant::ZERO,
                                Publish {
                                    topic: topic.clone(),
                                    qos,
                                    payload: payload.clone(),
                                    ..Publish::default()
                                },
                            )
                            .unwrap();
                    }
                    let done = pair.pump();
                    assert_eq!(done, if qos == QoS::AtMostOnce { 0 } else { BATCH });
                })
            });
        }
    }
    group.finish();
}

fn client_side(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_client_side");
    group.throughput(Throughput::Elements(session_client::BATCH as u64));
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for system in ["tern", "rumqttc"] {
                let mut side = session_client::client_side(system, version, qos);
                let expect = if qos == QoS::AtMostOnce {
                    0
                } else {
                    session_client::BATCH
                };
                let name = format!("v{}_qos{}/{system}", version, qos.as_u8());
                group.bench_function(name, |b| {
                    b.iter(|| assert_eq!(side.batch(), expect));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, round_trips, client_side);
criterion_main!(benches);
