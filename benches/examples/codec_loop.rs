//! A fixed amount of tern-codec work for `valgrind --tool=callgrind`, whose
//! instruction counts are stable on a shared, noisy machine where wall-clock
//! timings are not: decodes 10,000 copies of the 64-byte QoS 1 PUBLISH of
//! `benches/codec.rs`, then encodes it 10,000 times.
//!
//! ```sh
//! cargo build --release -p tern-benches --example codec_loop
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/codec_loop 5
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'codec_loop::(decode_all|encode) \['
//! ```
//!
//! The argument is the protocol level, 4 (MQTT 3.1.1, the default) or 5.
//! A second argument, `decode` or `encode`, runs only that half, and a
//! third the number of packets (10,000): the difference between two counts
//! divided by their difference is the instructions per packet, set-up
//! cancelled out.

use bytes::{Bytes, BytesMut};
use tern_codec::{
    MqttString, Packet, PacketId, PayloadFormat, ProtocolVersion, Publish, PublishProperties, QoS,
    UserProperty,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let v5 = args.first().map(String::as_str) == Some("5");
    let only = args.get(1).map(String::as_str).unwrap_or("both");
    let copies: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let version = if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let properties = if v5 {
        PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            message_expiry_interval: Some(3600),
            content_type: Some(MqttString::from_static("application/octet-stream")),
            user_properties: vec![UserProperty::new(
                MqttString::from_static("site"),
                MqttString::from_static("b7"),
            )]
            .into(),
            ..PublishProperties::default()
        }
    } else {
        PublishProperties::default()
    };
    let packet = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static("sensors/building-7/floor-3/temp"),
        packet_id: PacketId::new(42),
        properties: properties.into(),
        payload: Bytes::from(vec![0xA5; 64]),
        ..Publish::default()
    });
    let mut wire = Vec::new();
    packet.encode(version, &mut wire).expect("valid packet");

    if only != "encode" {
        decode(&wire, version, copies);
    }
    if only != "decode" {
        encode(&packet, version, copies);
    }
}

fn decode(wire: &[u8], version: ProtocolVersion, copies: usize) {
    let buf = BytesMut::from(&wire.repeat(copies)[..]);
    assert_eq!(decode_all(buf, version), copies);
}

/// Decodes every packet in `buf`; apart from set-up, so callgrind's
/// inclusive count for it is the decoding alone.
#[inline(never)]
fn decode_all(mut buf: BytesMut, version: ProtocolVersion) -> usize {
    let mut decoded = 0;
    while let Ok(Some(p)) = Packet::decode(&mut buf, version, 1 << 20) {
        std::hint::black_box(&p);
        decoded += 1;
    }
    decoded
}

#[inline(never)]
fn encode(packet: &Packet, version: ProtocolVersion, copies: usize) {
    let mut out = BytesMut::with_capacity(4096);
    for _ in 0..copies {
        out.clear();
        std::hint::black_box(packet)
            .encode(version, &mut out)
            .expect("valid packet");
        std::hint::black_box(&out);
    }
}
