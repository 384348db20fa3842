//! Encode a packet for MQTT 3.1.1 and 5.0, see the bytes, decode them back,
//! and see the typed error of a malformed packet with the reason code a
//! server sends for it. `cargo run -p tern-codec --example encode`
use tern_codec::bytes::BytesMut;
use tern_codec::{MqttString, Packet, ProtocolVersion, Publish, QoS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let publish = Publish {
        topic: MqttString::from_static("sensors/kitchen/temp"),
        payload: "21.5".into(),
        qos: QoS::AtLeastOnce,
        packet_id: Some(7.try_into()?),
        retain: true,
        ..Publish::default()
    };
    let packet = Packet::Publish(publish);
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut wire = BytesMut::new();
        packet.encode(version, &mut wire)?;
        println!("{version:?}: {} bytes: {:02x?}", wire.len(), &wire[..]);
        let decoded = Packet::decode(&mut wire, version, 1024)?;
        assert_eq!(decoded.as_ref(), Some(&packet));
    }

    // A QoS 1 PUBLISH without its packet identifier's second byte, and a
    // remaining length that says so: malformed.
    let mut bad = BytesMut::from(&[0x32, 0x03, 0x00, 0x01, b'a'][..]);
    let error = Packet::decode(&mut bad, ProtocolVersion::V5, 1024).unwrap_err();
    println!(
        "malformed: {error} -> reason code {:?}",
        error.reason_code()
    );
    Ok(())
}
