//! A fixed number of tern-session round trips, for instruction counting:
//! `valgrind --tool=callgrind target/release/examples/session_ir 5 1 20000`
//! runs 20,000 QoS 1 round trips on MQTT 5 (version `4` is 3.1.1); divide
//! the total by the count (the set-up is a few thousand instructions).
//!
//! A fourth argument, `tern` or `rumqttc`, runs only the client's half of
//! each round trip instead (the `session_client_side` bench group); rumqttc's
//! set-up allocates and zeroes a 65,536-entry table, so measure two counts
//! and take the difference.

use bytes::Bytes;
use tern_benches::session_pair::Pair;
use tern_codec::{MqttString, ProtocolVersion, Publish, QoS};
use tern_session::Instant;

#[path = "../benches/session_client/mod.rs"]
mod session_client;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let version = match args.first().map(String::as_str) {
        Some("4") => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let qos = QoS::from_u8(args.get(1).and_then(|q| q.parse().ok()).unwrap_or(1)).unwrap();
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    if let Some(system) = args.get(3) {
        let mut side = session_client::client_side(system, version, qos);
        for _ in 0..count / session_client::BATCH {
            side.batch();
        }
        return;
    }
    let payload = Bytes::from(vec![0x5a; 64]);
    let topic = MqttString::from_static("sensors/building-7/floor-3/temp");
    let mut pair = Pair::new(version);
    for _ in 0..count / 64 {
        for _ in 0..64 {
            let publish = Publish {
                topic: topic.clone(),
                qos,
                payload: payload.clone(),
                ..Publish::default()
            };
            pair.client.publish(Instant::ZERO, publish).unwrap();
        }
        pair.pump();
    }
}
