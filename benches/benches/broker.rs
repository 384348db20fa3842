//! The broker core in memory: fan-in (4 publishers → 1 subscriber) and
//! fan-out (1 publisher → 8 subscribers), QoS 0 and QoS 1 (the subscribers
//! acknowledging), 64-byte payloads, MQTT 3.1.1. Pre-encoded PUBLISH bytes go
//! in through `Broker::handle_bytes`; every transmit is encoded into a reused
//! buffer as the shell does. Throughput is messages delivered.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_benches::broker_core::{BATCH, Scenario, Shape};
use tern_codec::{ProtocolVersion, QoS};

fn broker_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_core");
    for shape in [Shape::FanIn, Shape::FanOut] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let mut scenario = Scenario::new(shape, qos, ProtocolVersion::V3_1_1, 64);
            let (pubs, subs) = shape.counts();
            let per_round = BATCH * pubs * subs;
            assert_eq!(scenario.round(), per_round);
            group.throughput(Throughput::Elements(per_round as u64));
            group.bench_function(format!("{}_qos{}", shape.name(), qos.as_u8()), |b| {
                b.iter(|| scenario.round())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, broker_core);
criterion_main!(benches);
