//! A fixed amount of tern-codec work for `valgrind --tool=callgrind`, whose
//! instruction counts are stable on a shared, noisy machine where wall-clock
//! timings are not: decodes 10,000 copies of the 64-byte QoS 1 PUBLISH of
//! `benches/codec.rs`, then encodes it 10,000 times.
//!
//! ```sh
//! cargo build --release -p tern-benches --example codec_loop
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/codec_loop 5
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'Packet::(decode|encode) \['
//! ```
//!
//! The argument is the protocol level, 4 (MQTT 3.1.1, the default) or 5.

use bytes::{Bytes, BytesMut};
use tern_codec::{
    MqttString, Packet, PacketId, PayloadFormat, ProtocolVersion, Publish, PublishProperties, QoS,
    UserProperty,
};

const COPIES: usize = 10_000;

fn main() {
    let v5 = std::env::args().nth(1).as_deref() == Some("5");
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

    let mut buf = BytesMut::from(&wire.repeat(COPIES)[..]);
    let mut decoded = 0;
    while let Ok(Some(p)) = Packet::decode(&mut buf, version, 1 << 20) {
        std::hint::black_box(&p);
        decoded += 1;
    }
    assert_eq!(decoded, COPIES);

    let mut out = BytesMut::with_capacity(4096);
    for _ in 0..COPIES {
        out.clear();
        std::hint::black_box(&packet)
            .encode(version, &mut out)
            .expect("valid packet");
        std::hint::black_box(&out);
    }
}
