//! The `serde` feature: every packet survives JSON and back, and binary data
//! is written as lowercase hex strings.

use arbitrary::Unstructured;
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tern_codec::{
    Auth, AuthProperties, Connect, MqttString, Packet, ProtocolVersion, Publish, PublishProperties,
    ReasonCode, Will, arbitrary_packet,
};

fn version_strategy() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_packet_round_trips_through_json(
        version in version_strategy(),
        seed in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let packet = arbitrary_packet(&mut Unstructured::new(&seed), version).unwrap();
        let text = serde_json::to_string(&packet).unwrap();
        let back: Packet = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &packet);
        // The tag is the specification's name for the type.
        let value: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(value["type"].as_str(), Some(packet.packet_type().name()));
    }
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

#[test]
fn binary_fields_are_hex_strings() {
    let publish = Packet::Publish(Publish {
        topic: s("a/b"),
        properties: PublishProperties {
            correlation_data: Some(Bytes::from_static(&[0x00, 0xAB, 0xFF])),
            ..PublishProperties::default()
        }
        .into(),
        payload: Bytes::from_static(&[0xDE, 0xAD, 0xBE, 0xEF]),
        ..Publish::default()
    });
    let value = serde_json::to_value(&publish).unwrap();
    assert_eq!(value["payload"], json!("deadbeef"));
    assert_eq!(value["properties"]["correlation_data"], json!("00abff"));
    assert_eq!(value["topic"], json!("a/b"));

    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        client_id: s("c"),
        will: Some(Will {
            topic: s("w"),
            payload: Bytes::from_static(b"\x01\x02"),
            ..Will::default()
        }),
        username: Some(s("u")),
        password: Some(Bytes::from_static(b"pw")),
        ..Connect::default()
    }));
    let value = serde_json::to_value(&connect).unwrap();
    assert_eq!(value["password"], json!("7077"));
    assert_eq!(value["will"]["payload"], json!("0102"));

    let auth = Packet::Auth(Box::new(Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("m")),
            authentication_data: Some(Bytes::from_static(&[0x10])),
            ..AuthProperties::default()
        },
    }));
    let value = serde_json::to_value(&auth).unwrap();
    assert_eq!(value["properties"]["authentication_data"], json!("10"));
}

#[test]
fn hex_input_accepts_upper_case_and_rejects_bad_digits() {
    let packet: Packet =
        serde_json::from_value(json!({"type": "PUBLISH", "topic": "t", "payload": "DEADbeef"}))
            .unwrap();
    let Packet::Publish(p) = packet else { panic!() };
    assert_eq!(&p.payload[..], [0xDE, 0xAD, 0xBE, 0xEF]);
    for bad in ["abc", "zz", "0x00"] {
        let result: Result<Packet, _> =
            serde_json::from_value(json!({"type": "PUBLISH", "topic": "t", "payload": bad}));
        assert!(result.is_err(), "{bad:?} accepted");
    }
}

#[test]
fn invalid_strings_are_refused_on_input() {
    let result: Result<Packet, _> =
        serde_json::from_value(json!({"type": "PUBLISH", "topic": "a\u{0}b", "payload": ""}));
    assert!(result.is_err());
}
