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
//! cancelled out. A fourth argument, `mqttbytes` or `mqttrs` (3.1.1 only),
//! runs that peer on the same wire bytes instead of tern-codec (`tern`),
//! inside the same two functions, so the counts compare directly. As in
//! `benches/codec.rs`, mqttrs borrows from the buffer and steps over each
//! packet with `BytesMut::advance`.

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
    let imp = match args.get(3).map(String::as_str) {
        None | Some("tern") => Impl::Tern,
        Some("mqttbytes") => Impl::Mqttbytes,
        Some("mqttrs") if !v5 => Impl::Mqttrs,
        Some(other) => panic!("unknown implementation {other:?} (tern, mqttbytes, mqttrs for 4)"),
    };
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

    let peer = Peer::new(imp, &wire, v5);
    if only != "encode" {
        let buf = BytesMut::from(&wire.repeat(copies)[..]);
        assert_eq!(decode_all(buf, version, imp), copies);
    }
    if only != "decode" {
        encode(&packet, &peer, version, copies);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Tern,
    Mqttbytes,
    Mqttrs,
}

/// The same packet as a peer holds it, read from tern-codec's bytes.
#[allow(
    clippy::large_enum_variant,
    reason = "built once and only borrowed in the loop"
)]
enum Peer {
    Tern,
    V4(mqttbytes::v4::Packet),
    V5(mqttbytes::v5::Packet),
    Mqttrs(mqttrs::Packet<'static>),
}

impl Peer {
    fn new(imp: Impl, wire: &[u8], v5: bool) -> Self {
        let mut buf = BytesMut::from(wire);
        match imp {
            Impl::Tern => Peer::Tern,
            Impl::Mqttbytes if v5 => Peer::V5(mqttbytes::v5::read(&mut buf, 1 << 20).unwrap()),
            Impl::Mqttbytes => Peer::V4(mqttbytes::v4::read(&mut buf, 1 << 20).unwrap()),
            Impl::Mqttrs => {
                let wire: &'static [u8] = Box::leak(wire.to_vec().into_boxed_slice());
                Peer::Mqttrs(mqttrs::decode_slice(wire).unwrap().unwrap())
            }
        }
    }
}

/// Decodes every packet in `buf`; apart from set-up, so callgrind's
/// inclusive count for it is the decoding alone (each packet's drop
/// included).
#[inline(never)]
fn decode_all(mut buf: BytesMut, version: ProtocolVersion, imp: Impl) -> usize {
    let mut decoded = 0;
    match imp {
        Impl::Tern => {
            while let Ok(Some(p)) = Packet::decode(&mut buf, version, 1 << 20) {
                std::hint::black_box(&p);
                decoded += 1;
            }
        }
        Impl::Mqttbytes if version.is_v5() => {
            while let Ok(p) = mqttbytes::v5::read(&mut buf, 1 << 20) {
                std::hint::black_box(&p);
                decoded += 1;
            }
        }
        Impl::Mqttbytes => {
            while let Ok(p) = mqttbytes::v4::read(&mut buf, 1 << 20) {
                std::hint::black_box(&p);
                decoded += 1;
            }
        }
        Impl::Mqttrs => {
            while let Ok(Some(p)) = mqttrs::decode_slice(&buf) {
                std::hint::black_box(&p);
                let len = mqttrs_len(&p);
                bytes::Buf::advance(&mut buf, len);
                decoded += 1;
            }
        }
    }
    decoded
}

/// The wire length of a decoded mqttrs PUBLISH (it does not report it).
fn mqttrs_len(p: &mqttrs::Packet<'_>) -> usize {
    match p {
        mqttrs::Packet::Publish(p) => {
            let body = 2 + p.topic_name.len() + 2 + p.payload.len();
            1 + tern_codec::varint_len(body as u32) + body
        }
        _ => unreachable!("only PUBLISH is decoded here"),
    }
}

#[inline(never)]
fn encode(packet: &Packet, peer: &Peer, version: ProtocolVersion, copies: usize) {
    let mut out = BytesMut::with_capacity(4096);
    let mut slice = vec![0u8; 4096];
    for _ in 0..copies {
        out.clear();
        match std::hint::black_box(peer) {
            Peer::Tern => std::hint::black_box(packet)
                .encode(version, &mut out)
                .expect("valid packet"),
            Peer::V4(mqttbytes::v4::Packet::Publish(p)) => {
                p.write(&mut out).expect("valid packet");
            }
            Peer::V5(mqttbytes::v5::Packet::Publish(p)) => {
                p.write(&mut out).expect("valid packet");
            }
            Peer::Mqttrs(p) => {
                let n = mqttrs::encode_slice(p, &mut slice).expect("valid packet");
                std::hint::black_box(&slice[..n]);
            }
            _ => unreachable!("only PUBLISH is encoded here"),
        }
        std::hint::black_box(&out);
    }
}
