//! Architecture invariant: decoding copies nothing. Topic names, payloads, and
//! string and binary properties are slices of the buffer the packet was read
//! from.

use bytes::{Bytes, BytesMut};
use std::ops::Range;
use tern_codec::{
    Connect, MAX_PACKET_SIZE, MqttString, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, UserProperty, Will,
};

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

/// The address range of a buffer's whole allocation.
fn allocation(buf: &BytesMut) -> Range<usize> {
    let start = buf.as_ptr() as usize;
    start..start + buf.capacity()
}

#[track_caller]
fn inside(what: &str, bytes: &[u8], alloc: &Range<usize>) {
    assert!(!bytes.is_empty(), "{what} is empty: nothing to check");
    let start = bytes.as_ptr() as usize;
    let end = start + bytes.len();
    assert!(
        alloc.contains(&start) && end <= alloc.end,
        "{what} at {start:#x}..{end:#x} is not inside the input buffer {alloc:#x?}"
    );
}

fn encode(packet: &Packet, version: ProtocolVersion, dst: &mut BytesMut) {
    packet.encode(version, dst).expect("valid packet");
}

#[test]
fn decoded_publish_shares_the_input_buffer() {
    let publish = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: s("sensors/kitchen/temperature"),
        packet_id: PacketId::new(7),
        properties: PublishProperties {
            response_topic: Some(s("replies/kitchen")),
            correlation_data: Some(Bytes::from_static(b"\x01\x02\x03\x04")),
            content_type: Some(s("application/json")),
            user_properties: vec![UserProperty::new(s("unit"), s("celsius"))].into(),
            ..PublishProperties::default()
        }
        .into(),
        payload: Bytes::from_static(b"{\"t\":21.5}"),
        ..Publish::default()
    });
    // A PINGREQ first, so the PUBLISH does not start at the allocation's start.
    let mut buf = BytesMut::with_capacity(256);
    encode(&Packet::PingReq, ProtocolVersion::V5, &mut buf);
    encode(&publish, ProtocolVersion::V5, &mut buf);
    let alloc = allocation(&buf);

    let first = Packet::decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE).unwrap();
    assert_eq!(first, Some(Packet::PingReq));
    let decoded = Packet::decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(decoded, publish);
    let Packet::Publish(p) = &decoded else {
        unreachable!()
    };
    inside("payload", &p.payload, &alloc);
    inside("topic", p.topic.as_bytes(), &alloc);
    let props = &p.properties;
    inside(
        "response topic",
        props.response_topic.as_ref().unwrap().as_bytes(),
        &alloc,
    );
    inside(
        "correlation data",
        props.correlation_data.as_ref().unwrap(),
        &alloc,
    );
    inside(
        "content type",
        props.content_type.as_ref().unwrap().as_bytes(),
        &alloc,
    );
    inside(
        "user property key",
        props.user_properties.get(0).unwrap().key.as_bytes(),
        &alloc,
    );
    inside(
        "user property value",
        props.user_properties.get(0).unwrap().value.as_bytes(),
        &alloc,
    );
    inside(
        "user properties' wire bytes",
        props.user_properties.wire_bytes(),
        &alloc,
    );
}

#[test]
fn decoded_connect_shares_the_input_buffer() {
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V3_1_1,
        client_id: s("client-1"),
        will: Some(Will {
            topic: s("status/client-1"),
            payload: Bytes::from_static(b"offline"),
            ..Will::default()
        }),
        username: Some(s("alice")),
        password: Some(Bytes::from_static(b"secret")),
        ..Connect::default()
    }));
    let mut buf = BytesMut::new();
    encode(&connect, ProtocolVersion::V3_1_1, &mut buf);
    let alloc = allocation(&buf);
    let decoded = Packet::decode(&mut buf, ProtocolVersion::V3_1_1, MAX_PACKET_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(decoded, connect);
    let Packet::Connect(c) = &decoded else {
        unreachable!()
    };
    let will = c.will.as_ref().unwrap();
    inside("client id", c.client_id.as_bytes(), &alloc);
    inside("will topic", will.topic.as_bytes(), &alloc);
    inside("will payload", &will.payload, &alloc);
    inside("user name", c.username.as_ref().unwrap().as_bytes(), &alloc);
    inside("password", c.password.as_ref().unwrap(), &alloc);
}

/// The check itself can fail: a copied payload is outside the buffer.
#[test]
fn a_copy_is_detected() {
    let buf = BytesMut::from(&b"abcdef"[..]);
    let alloc = allocation(&buf);
    let copy = buf[1..3].to_vec();
    let result = std::panic::catch_unwind(|| inside("copy", &copy, &alloc));
    assert!(result.is_err());
}

/// The other direction: a server writes the header and sends the payload
/// `Bytes` itself, shared by every subscriber. Header + payload must be the
/// packet `encode` writes, byte for byte, in every version.
#[test]
fn publish_header_then_payload_is_the_whole_packet() {
    let big = Bytes::from(vec![0xa5; 70_000]); // a Remaining Length of three bytes
    let cases = [
        (
            ProtocolVersion::V3_1,
            QoS::AtMostOnce,
            PublishProperties::default(),
            Bytes::from_static(b"x"),
        ),
        (
            ProtocolVersion::V3_1_1,
            QoS::AtLeastOnce,
            PublishProperties::default(),
            big.clone(),
        ),
        (
            ProtocolVersion::V5,
            QoS::ExactlyOnce,
            PublishProperties {
                content_type: Some(s("text/plain")),
                user_properties: vec![UserProperty::new(s("k"), s("v"))].into(),
                ..PublishProperties::default()
            },
            big,
        ),
        (
            ProtocolVersion::V5,
            QoS::AtMostOnce,
            PublishProperties::default(),
            Bytes::new(),
        ),
    ];
    for (version, qos, properties, payload) in cases {
        let publish = Publish {
            qos,
            retain: true,
            topic: s("a/b"),
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(9).unwrap()),
            properties: properties.into(),
            payload,
            ..Publish::default()
        };
        let mut whole = BytesMut::new();
        publish.encode(version, &mut whole).unwrap();
        let mut split = BytesMut::new();
        publish.encode_header(version, &mut split).unwrap();
        assert_eq!(
            split.len() + publish.payload.len(),
            publish.encoded_len(version)
        );
        split.extend_from_slice(&publish.payload);
        assert_eq!(split, whole, "{version:?} {qos:?}");
    }
}

#[test]
fn publish_header_refuses_what_encode_refuses_and_writes_nothing() {
    let publish = Publish {
        topic: s("a/b"),
        properties: PublishProperties {
            content_type: Some(s("text/plain")),
            ..PublishProperties::default()
        }
        .into(),
        ..Publish::default()
    };
    let mut dst = BytesMut::new();
    assert_eq!(
        publish.encode_header(ProtocolVersion::V3_1_1, &mut dst),
        publish.encode(ProtocolVersion::V3_1_1, &mut BytesMut::new())
    );
    assert!(
        publish
            .encode_header(ProtocolVersion::V3_1_1, &mut dst)
            .is_err()
    );
    assert!(dst.is_empty());
}
