//! Encode packets into a socket and decode what comes back as it arrives,
//! a few bytes at a time: `Packet::decode` returns `Ok(None)` until a whole
//! packet is buffered. `cargo run -p tern-codec --example stream_decode -- mqtt://127.0.0.1:1883`
#![allow(
    clippy::disallowed_types,
    reason = "an example is the application: it owns the socket the codec never touches"
)]
use std::io::{Read, Write};
use tern_codec::bytes::BytesMut;
use tern_codec::{Connect, MqttString, Packet, ProtocolVersion, Publish, QoS};
use tern_codec::{Subscribe, SubscribeFilter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://127.0.0.1:1883".into());
    let mut socket = std::net::TcpStream::connect(url.trim_start_matches("mqtt://"))?;
    let version = ProtocolVersion::V5;
    let topic = MqttString::from_static("tern/codec/example");
    let connect = Connect::new(version, MqttString::from_static("tern-codec-example"));
    let filter = SubscribeFilter::new(topic.clone(), QoS::AtMostOnce);
    let subscribe = Subscribe::new(1.try_into()?, vec![filter]);
    let publish = Publish::new(topic, "hello", QoS::AtMostOnce);

    // Encode all three back to back into one buffer and write it at once.
    let mut out = BytesMut::new();
    for packet in [Packet::from(connect), subscribe.into(), publish.into()] {
        packet.encode(version, &mut out)?;
    }
    socket.write_all(&out)?;

    // Read 3 bytes at a time to show streaming decode at work.
    let (mut input, mut chunk) = (BytesMut::new(), [0u8; 3]);
    loop {
        while let Some(packet) = Packet::decode(&mut input, version, 1 << 20)? {
            println!(
                "decoded {:?} ({} bytes still buffered)",
                packet.packet_type(),
                input.len()
            );
            if let Packet::Publish(p) = packet {
                println!("message on {}: {:?}", p.topic, p.payload);
                return Ok(());
            }
        }
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            return Err("the broker closed the connection".into());
        }
        input.extend_from_slice(&chunk[..n]);
    }
}
