//! A fixed number of broker-core deliveries, for instruction counting:
//! `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.broker.out \
//! target/release/examples/broker_ir out 1 100000` delivers 100,000
//! messages fan-out 1→8 at QoS 1 (`in` for fan-in 4→1; QoS 0 or 1), 64-byte
//! payloads, MQTT 3.1.1. Divide the total by the count printed (set-up is a
//! few hundred thousand instructions; compare against a run with a count of 0).

use tern_benches::broker_core::{Scenario, Shape};
use tern_codec::{ProtocolVersion, QoS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shape = match args.first().map(String::as_str) {
        Some("in") => Shape::FanIn,
        _ => Shape::FanOut,
    };
    let qos = QoS::from_u8(args.get(1).and_then(|q| q.parse().ok()).unwrap_or(1)).unwrap();
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut scenario = Scenario::new(shape, qos, ProtocolVersion::V3_1_1, 64);
    let mut delivered = 0;
    while delivered < count {
        delivered += scenario.round();
    }
    println!("{delivered}");
}
