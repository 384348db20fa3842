//! Byte-exact vectors: wire bytes written by hand from the specifications'
//! figures and field tables, for every packet type in MQTT 3.1, 3.1.1 and 5.0.
//!
//! Each vector says what the bytes decode to, and (unless it is a form only a
//! peer would send) that encoding the value gives back exactly those bytes.
//! Nothing here is computed by the code under test: lengths and offsets are
//! counted by hand in the comments.

use bytes::{Bytes, BytesMut};
use tern_codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Disconnect, DisconnectProperties, MAX_PACKET_SIZE, MqttString, Packet, PacketId, PayloadFormat,
    ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscribeFilter, SubscribeProperties, SubscriptionId,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty, Will,
    WillProperties,
};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero")
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn user(key: &'static str, value: &'static str) -> UserProperty {
    UserProperty::new(s(key), s(value))
}

fn sub_id(id: u32) -> SubscriptionId {
    SubscriptionId::new(id).expect("valid subscription identifier")
}

/// Concatenates hand-written pieces; only for readability.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes `wire` as exactly one packet of `version`.
fn decode(wire: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(wire);
    let packet = Packet::decode(&mut buf, version, MAX_PACKET_SIZE)
        .unwrap_or_else(|e| panic!("{wire:02x?} does not decode in {version}: {e}"))
        .unwrap_or_else(|| panic!("{wire:02x?} is incomplete in {version}"));
    assert!(buf.is_empty(), "bytes left after decoding {wire:02x?}");
    packet
}

fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet
        .encode(version, &mut out)
        .unwrap_or_else(|e| panic!("{packet:?} does not encode in {version}: {e}"));
    assert_eq!(out.len(), packet.encoded_len(version), "encoded_len");
    out.to_vec()
}

/// `wire` decodes to `expected`, and `expected` encodes to `wire`.
#[track_caller]
fn vector(version: ProtocolVersion, wire: &[u8], expected: impl Into<Packet>) {
    let expected = expected.into();
    assert_eq!(decode(wire, version), expected, "decode in {version}");
    assert_eq!(encode(&expected, version), wire, "encode in {version}");
}

/// `wire` (a form a peer may send but our encoder does not produce) decodes to
/// `expected`, which encodes to the canonical `canonical`.
#[track_caller]
fn decode_only(
    version: ProtocolVersion,
    wire: &[u8],
    expected: impl Into<Packet>,
    canonical: &[u8],
) {
    let expected = expected.into();
    assert_eq!(decode(wire, version), expected, "decode in {version}");
    assert_eq!(encode(&expected, version), canonical, "encode in {version}");
}

// ---------------------------------------------------------------- CONNECT

/// MQTT 3.1.1 §3.1.2.10, Figure 3.6's variable header (flags 0xCE: user name,
/// password, will QoS 1, will flag, clean session; keep alive 10), with a
/// payload in the order of [MQTT-3.1.3-1].
#[test]
fn connect_v311_figure_3_6_with_will_and_credentials() {
    let wire = cat(&[
        &[0x10, 39],                           // CONNECT, Remaining Length 39
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name (6)
        &[0x04],                               // level 4 (1)
        &[0xCE],                               // flags (1)
        &[0x00, 0x0A],                         // keep alive 10 (2)
        &[0x00, 0x04, b'c', b'i', b'd', b'1'], // client id (6)
        &[0x00, 0x03, b'w', b'/', b't'],       // will topic (5)
        &[0x00, 0x04, b'g', b'o', b'n', b'e'], // will payload (6)
        &[0x00, 0x04, b'u', b's', b'e', b'r'], // user name (6)
        &[0x00, 0x04, b'p', b'a', b's', b's'], // password (6)
    ]);
    assert_eq!(wire.len(), 2 + 39);
    vector(
        V311,
        &wire,
        Connect {
            protocol: V311,
            clean_start: true,
            keep_alive: 10,
            properties: ConnectProperties::default(),
            client_id: s("cid1"),
            will: Some(Will {
                topic: s("w/t"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: WillProperties::default(),
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(b"pass")),
            bridge: false,
        },
    );
}

/// The smallest MQTT 3.1.1 CONNECT: empty client id, clean session.
#[test]
fn connect_v311_minimal_empty_client_id() {
    let wire = [
        0x10, 12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00,
    ];
    vector(
        V311,
        &wire,
        Connect {
            protocol: V311,
            clean_start: true,
            keep_alive: 60,
            ..Connect::default()
        },
    );
}

/// MQTT 3.1: protocol name "MQIsdp", level 3, will retain at QoS 2.
#[test]
fn connect_v31_mqisdp_with_retained_will() {
    let wire = cat(&[
        &[0x10, 25],                                       // Remaining Length 25
        &[0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p'], // protocol name (8)
        &[0x03],                                           // level 3 (1)
        &[0x34],                                           // will retain, will QoS 2, will (1)
        &[0x00, 0x1E],                                     // keep alive 30 (2)
        &[0x00, 0x03, b'c', b'3', b'1'],                   // client id (5)
        &[0x00, 0x01, b'w'],                               // will topic (3)
        &[0x00, 0x03, b'b', b'y', b'e'],                   // will payload (5)
    ]);
    assert_eq!(wire.len(), 2 + 25);
    vector(
        V31,
        &wire,
        Connect {
            protocol: V31,
            clean_start: false,
            keep_alive: 30,
            client_id: s("c31"),
            will: Some(Will {
                topic: s("w"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            ..Connect::default()
        },
    );
}

/// A CONNECT carries its own version: decoding it on a connection still
/// marked as another version reads the packet's protocol level.
#[test]
fn connect_is_decoded_by_its_own_protocol_level() {
    let wire = [
        0x10, 12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00,
    ];
    for version in ProtocolVersion::ALL {
        match decode(&wire, version) {
            Packet::Connect(c) => assert_eq!(c.protocol, V311),
            other => panic!("{other:?}"),
        }
    }
}

/// MQTT 5.0 §3.1.2.11, Figure 3-6's variable header (flags 0xCE, keep alive
/// 10, Session Expiry Interval 10), with a will and no payload beyond it.
#[test]
fn connect_v5_figure_3_6_session_expiry() {
    let wire = cat(&[
        &[0x10, 34],                           // Remaining Length 34
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name (6)
        &[0x05],                               // level 5 (1)
        &[0xCE],                               // flags (1)
        &[0x00, 0x0A],                         // keep alive 10 (2)
        &[0x05, 0x11, 0x00, 0x00, 0x00, 0x0A], // properties: Session Expiry 10 (6)
        &[0x00, 0x01, b'c'],                   // client id (3)
        &[0x00],                               // will properties: none (1)
        &[0x00, 0x01, b't'],                   // will topic (3)
        &[0x00, 0x00],                         // will payload: empty (2)
        &[0x00, 0x01, b'u'],                   // user name (3)
        &[0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF], // password (6)
    ]);
    assert_eq!(wire.len(), 2 + 34);
    vector(
        V5,
        &wire,
        Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 10,
            properties: ConnectProperties {
                session_expiry_interval: Some(10),
                ..ConnectProperties::default()
            },
            client_id: s("c"),
            will: Some(Will {
                topic: s("t"),
                payload: Bytes::new(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: WillProperties::default(),
            }),
            username: Some(s("u")),
            password: Some(Bytes::from_static(&[0xDE, 0xAD, 0xBE, 0xEF])),
            bridge: false,
        },
    );
}

/// Every CONNECT property and every Will property (MQTT 5.0 §3.1.2.11,
/// §3.1.3.2), a retained QoS 1 will, user name and password.
#[test]
fn connect_v5_every_property_will_and_credentials() {
    let wire = cat(&[
        &[0x10, 120],                                      // Remaining Length 120
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'],             // protocol name (6)
        &[0x05],                                           // level (1)
        &[0xEE],       // user, password, will retain, will QoS 1, will, clean (1)
        &[0x00, 0x3C], // keep alive 60 (2)
        &[40],         // property length (1) + 40:
        &[0x11, 0x00, 0x00, 0x00, 0x1E], //   Session Expiry Interval 30 (5)
        &[0x21, 0x00, 0x14], //   Receive Maximum 20 (3)
        &[0x27, 0x00, 0x00, 0x04, 0x00], //   Maximum Packet Size 1024 (5)
        &[0x22, 0x00, 0x0A], //   Topic Alias Maximum 10 (3)
        &[0x19, 0x01], //   Request Response Information 1 (2)
        &[0x17, 0x00], //   Request Problem Information 0 (2)
        &[0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M'], // Authentication Method (8)
        &[0x16, 0x00, 0x02, 0x01, 0x02], //   Authentication Data (5)
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'], // User Property (7)
        &[0x00, 0x03, b'c', b'i', b'd'], // client id (5)
        &[43],         // will property length (1) + 43:
        &[0x18, 0x00, 0x00, 0x00, 0x05], //   Will Delay Interval 5 (5)
        &[0x01, 0x01], //   Payload Format Indicator UTF-8 (2)
        &[0x02, 0x00, 0x00, 0x00, 0x3C], //   Message Expiry Interval 60 (5)
        &[0x03, 0x00, 0x0A], //   Content Type (13)
        b"text/plain",
        &[0x08, 0x00, 0x03, b'r', b'/', b't'], //   Response Topic (6)
        &[0x09, 0x00, 0x02, 0xCA, 0xFE],       //   Correlation Data (5)
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b'], // User Property (7)
        &[0x00, 0x03, b'w', b'/', b't'],       // will topic (5)
        &[0x00, 0x03, b'b', b'y', b'e'],       // will payload (5)
        &[0x00, 0x04, b'u', b's', b'e', b'r'], // user name (6)
        &[0x00, 0x02, b'p', b'w'],             // password (4)
    ]);
    assert_eq!(wire.len(), 2 + 120);
    vector(
        V5,
        &wire,
        Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties {
                session_expiry_interval: Some(30),
                receive_maximum: Some(20.try_into().unwrap()),
                maximum_packet_size: Some(1024.try_into().unwrap()),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[1, 2])),
                user_properties: vec![user("k", "v")],
            },
            client_id: s("cid"),
            will: Some(Will {
                topic: s("w/t"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(60),
                    content_type: Some(s("text/plain")),
                    response_topic: Some(s("r/t")),
                    correlation_data: Some(Bytes::from_static(&[0xCA, 0xFE])),
                    user_properties: vec![user("a", "b")].into(),
                },
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(b"pw")),
            bridge: false,
        },
    );
}

/// MQTT 5 allows a password without a user name (§3.1.2.9).
#[test]
fn connect_v5_password_without_username() {
    let wire = [
        0x10, 17, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, b'p', b'w',
    ];
    vector(
        V5,
        &wire,
        Connect {
            protocol: V5,
            password: Some(Bytes::from_static(b"pw")),
            ..Connect::default()
        },
    );
}

// ---------------------------------------------------------------- CONNACK

/// MQTT 3.1.1 §3.2: every return code of Table 3.1 decodes to the MQTT 5
/// reason code with its meaning, and encodes back to the same byte.
#[test]
fn connack_v311_every_return_code() {
    let table = [
        (0x00, ReasonCode::Success),
        (0x01, ReasonCode::UnsupportedProtocolVersion),
        (0x02, ReasonCode::ClientIdentifierNotValid),
        (0x03, ReasonCode::ServerUnavailable),
        (0x04, ReasonCode::BadUserNameOrPassword),
        (0x05, ReasonCode::NotAuthorized),
    ];
    for (code, reason) in table {
        for version in [V31, V311] {
            vector(
                version,
                &[0x20, 0x02, 0x00, code],
                ConnAck {
                    reason_code: reason,
                    ..ConnAck::default()
                },
            );
        }
    }
}

/// MQTT 3.1.1 Session Present (§3.2.2.2); MQTT 3.1 has no such bit.
#[test]
fn connack_v311_session_present() {
    vector(
        V311,
        &[0x20, 0x02, 0x01, 0x00],
        ConnAck {
            session_present: true,
            ..ConnAck::default()
        },
    );
}

/// MQTT 5.0 CONNACK with no properties: Property Length 0 is required.
#[test]
fn connack_v5_minimal_and_refused() {
    vector(V5, &[0x20, 0x03, 0x00, 0x00, 0x00], ConnAck::default());
    vector(
        V5,
        &[0x20, 0x03, 0x00, 0x9F, 0x00],
        ConnAck {
            reason_code: ReasonCode::ConnectionRateExceeded,
            ..ConnAck::default()
        },
    );
}

/// Every CONNACK property (MQTT 5.0 §3.2.2.3), with Session Present.
#[test]
fn connack_v5_every_property() {
    let wire = cat(&[
        &[0x20, 74],                                             // Remaining Length 74
        &[0x01, 0x00],                                           // session present, Success (2)
        &[71],                                                   // property length (1) + 71:
        &[0x11, 0x00, 0x00, 0x00, 0x78], //   Session Expiry Interval 120 (5)
        &[0x21, 0x00, 0x0A],             //   Receive Maximum 10 (3)
        &[0x24, 0x01],                   //   Maximum QoS 1 (2)
        &[0x25, 0x01],                   //   Retain Available (2)
        &[0x27, 0x00, 0x00, 0x10, 0x00], //   Maximum Packet Size 4096 (5)
        &[0x12, 0x00, 0x06, b'a', b'u', b't', b'o', b'-', b'1'], // Assigned Client Identifier (9)
        &[0x22, 0x00, 0x05],             //   Topic Alias Maximum 5 (3)
        &[0x1F, 0x00, 0x02, b'o', b'k'], //   Reason String (5)
        &[0x28, 0x00],                   //   Wildcard Subscription Available 0 (2)
        &[0x29, 0x01],                   //   Subscription Identifier Available 1 (2)
        &[0x2A, 0x00],                   //   Shared Subscription Available 0 (2)
        &[0x13, 0x00, 0x1E],             //   Server Keep Alive 30 (3)
        &[0x1A, 0x00, 0x02, b'r', b'i'], //   Response Information (5)
        &[0x1C, 0x00, 0x05, b'o', b't', b'h', b'e', b'r'], //   Server Reference (8)
        &[0x15, 0x00, 0x01, b'm'],       //   Authentication Method (4)
        &[0x16, 0x00, 0x01, b'd'],       //   Authentication Data (4)
        &[0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y'], //   User Property (7)
    ]);
    assert_eq!(wire.len(), 2 + 74);
    vector(
        V5,
        &wire,
        ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties {
                session_expiry_interval: Some(120),
                receive_maximum: Some(10.try_into().unwrap()),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(true),
                maximum_packet_size: Some(4096.try_into().unwrap()),
                assigned_client_identifier: Some(s("auto-1")),
                topic_alias_maximum: Some(5),
                reason_string: Some(s("ok")),
                wildcard_subscription_available: Some(false),
                subscription_identifier_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(30),
                response_information: Some(s("ri")),
                server_reference: Some(s("other")),
                authentication_method: Some(s("m")),
                authentication_data: Some(Bytes::from_static(b"d")),
                user_properties: vec![user("x", "y")],
            },
        },
    );
}

/// Property order on the wire is not significant (only User Properties keep
/// theirs): the same set in another order decodes to the same value.
#[test]
fn connack_v5_properties_in_any_order() {
    let reordered = [
        0x20, 0x0D, 0x00, 0x00, 10, // Remaining Length 13, property length 10
        0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y', // User Property first (7)
        0x21, 0x00, 0x0A, // Receive Maximum (3)
    ];
    let canonical = [
        0x20, 0x0D, 0x00, 0x00, 10, 0x21, 0x00, 0x0A, 0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y',
    ];
    decode_only(
        V5,
        &reordered,
        ConnAck {
            properties: ConnAckProperties {
                receive_maximum: Some(10.try_into().unwrap()),
                user_properties: vec![user("x", "y")],
                ..ConnAckProperties::default()
            },
            ..ConnAck::default()
        },
        &canonical,
    );
}

// ---------------------------------------------------------------- PUBLISH

/// MQTT 3.1.1 §3.3.2, Figure 3.11: topic "a/b", packet identifier 10.
#[test]
fn publish_v3_figure_3_11_qos1() {
    let wire = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
    ];
    for version in [V31, V311] {
        vector(
            version,
            &wire,
            Publish {
                qos: QoS::AtLeastOnce,
                topic: s("a/b"),
                packet_id: Some(pid(10)),
                payload: Bytes::from_static(b"hi"),
                ..Publish::default()
            },
        );
    }
}

/// QoS 0 has no packet identifier [MQTT-2.3.1-5]; RETAIN and an empty payload.
#[test]
fn publish_v3_qos0_retained_empty_payload() {
    let wire = [0x31, 0x05, 0x00, 0x03, b'a', b'/', b'b'];
    for version in [V31, V311] {
        vector(
            version,
            &wire,
            Publish {
                retain: true,
                topic: s("a/b"),
                ..Publish::default()
            },
        );
    }
}

/// DUP on a QoS 2 retry [MQTT-3.3.1-1], with a two-byte Remaining Length.
#[test]
fn publish_v311_qos2_dup_two_byte_remaining_length() {
    let mut wire = vec![0x3C, 0x87, 0x01, 0x00, 0x01, b't', 0xFF, 0xFE];
    // Remaining Length 135 = 0x87 0x01: 3 (topic) + 2 (id) + 130 payload bytes.
    let payload = [0x5A; 130];
    wire.extend_from_slice(&payload);
    vector(
        V311,
        &wire,
        Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            topic: s("t"),
            packet_id: Some(pid(0xFFFE)),
            payload: Bytes::copy_from_slice(&payload),
            ..Publish::default()
        },
    );
}

/// MQTT 5.0 §3.3.2, Figure 3-9: topic "a/b", packet identifier 10, no properties.
#[test]
fn publish_v5_figure_3_9_no_properties() {
    vector(
        V5,
        &[0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x00],
        Publish {
            qos: QoS::AtLeastOnce,
            topic: s("a/b"),
            packet_id: Some(pid(10)),
            ..Publish::default()
        },
    );
}

/// Every PUBLISH property (MQTT 5.0 §3.3.2.3), with two Subscription
/// Identifiers, one needing a two-byte Variable Byte Integer.
#[test]
fn publish_v5_every_property() {
    let wire = cat(&[
        &[0x32, 51],                                 // QoS 1, Remaining Length 51
        &[0x00, 0x03, b'a', b'/', b'b'],             // topic (5)
        &[0x00, 0x0A],                               // packet identifier 10 (2)
        &[41],                                       // property length (1) + 41:
        &[0x01, 0x01],                               //   Payload Format Indicator (2)
        &[0x02, 0x00, 0x00, 0x00, 0x64],             //   Message Expiry Interval 100 (5)
        &[0x23, 0x00, 0x03],                         //   Topic Alias 3 (3)
        &[0x08, 0x00, 0x04, b'r', b'e', b's', b'p'], //   Response Topic (7)
        &[0x09, 0x00, 0x02, b'i', b'd'],             //   Correlation Data (5)
        &[0x03, 0x00, 0x04, b'j', b's', b'o', b'n'], //   Content Type (7)
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b'], //   User Property (7)
        &[0x0B, 0x05],                               //   Subscription Identifier 5 (2)
        &[0x0B, 0x81, 0x01],                         //   Subscription Identifier 129 (3)
        b"hi",                                       // payload (2)
    ]);
    assert_eq!(wire.len(), 2 + 51);
    vector(
        V5,
        &wire,
        Publish {
            qos: QoS::AtLeastOnce,
            topic: s("a/b"),
            packet_id: Some(pid(10)),
            properties: PublishProperties {
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(100),
                topic_alias: Some(3.try_into().unwrap()),
                response_topic: Some(s("resp")),
                correlation_data: Some(Bytes::from_static(b"id")),
                content_type: Some(s("json")),
                user_properties: vec![user("a", "b")].into(),
                subscription_identifiers: vec![sub_id(5), sub_id(129)],
            }
            .into(),
            payload: Bytes::from_static(b"hi"),
            ..Publish::default()
        },
    );
}

/// A Topic Alias stands for an empty topic name (MQTT 5.0 §3.3.2.3.4).
#[test]
fn publish_v5_topic_alias_with_empty_topic() {
    vector(
        V5,
        &[0x30, 0x08, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, b'o', b'k'],
        Publish {
            topic: MqttString::new(),
            properties: PublishProperties {
                topic_alias: Some(1.try_into().unwrap()),
                ..PublishProperties::default()
            }
            .into(),
            payload: Bytes::from_static(b"ok"),
            ..Publish::default()
        },
    );
}

/// Multi-byte UTF-8 in a topic, including U+FEFF, which must not be
/// stripped [MQTT-1.5.4-3].
#[test]
fn publish_v5_utf8_topic_keeps_bom() {
    // "é/" then U+FEFF: C3 A9 2F EF BB BF (6 bytes).
    let wire = [
        0x30, 0x09, 0x00, 0x06, 0xC3, 0xA9, b'/', 0xEF, 0xBB, 0xBF, 0x00,
    ];
    let packet = decode(&wire, V5);
    let Packet::Publish(p) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(p.topic, "é/\u{FEFF}");
    assert_eq!(encode(&packet, V5), wire);
}

// ---------------------------------------------------------------- acks

/// MQTT 3.x PUBACK, PUBREC, PUBREL, PUBCOMP: the packet identifier only.
#[test]
fn acks_v3() {
    for version in [V31, V311] {
        vector(version, &[0x40, 0x02, 0x00, 0x0A], PubAck::new(pid(10)));
        vector(version, &[0x50, 0x02, 0x00, 0x0B], PubRec::new(pid(11)));
        vector(version, &[0x62, 0x02, 0x00, 0x0C], PubRel::new(pid(12)));
        vector(version, &[0x70, 0x02, 0x00, 0x0D], PubComp::new(pid(13)));
    }
}

/// MQTT 5 short form: reason Success and no properties is Remaining Length 2
/// (§3.4.2.1).
#[test]
fn acks_v5_remaining_length_2() {
    vector(V5, &[0x40, 0x02, 0x01, 0x00], PubAck::new(pid(256)));
    vector(V5, &[0x50, 0x02, 0x00, 0x01], PubRec::new(pid(1)));
    vector(V5, &[0x62, 0x02, 0xFF, 0xFF], PubRel::new(pid(0xFFFF)));
    vector(V5, &[0x70, 0x02, 0x00, 0x02], PubComp::new(pid(2)));
}

/// MQTT 5 short form: a reason code and no Property Length is Remaining Length 3.
#[test]
fn acks_v5_remaining_length_3_reason_only() {
    vector(
        V5,
        &[0x40, 0x03, 0x00, 0x0A, 0x10],
        PubAck::with_reason(pid(10), ReasonCode::NoMatchingSubscribers),
    );
    vector(
        V5,
        &[0x50, 0x03, 0x00, 0x0A, 0x80],
        PubRec::with_reason(pid(10), ReasonCode::UnspecifiedError),
    );
    vector(
        V5,
        &[0x62, 0x03, 0x00, 0x0A, 0x92],
        PubRel::with_reason(pid(10), ReasonCode::PacketIdentifierNotFound),
    );
    vector(
        V5,
        &[0x70, 0x03, 0x00, 0x0A, 0x92],
        PubComp::with_reason(pid(10), ReasonCode::PacketIdentifierNotFound),
    );
}

/// Longer-than-needed ack forms a peer may send: reason 0 written out
/// (Remaining Length 3), and a Property Length of 0 written out (Remaining
/// Length 4). Both decode to the same value; we send the shortest form.
#[test]
fn acks_v5_longer_forms_decode_to_the_short_value() {
    decode_only(
        V5,
        &[0x40, 0x03, 0x00, 0x0A, 0x00],
        PubAck::new(pid(10)),
        &[0x40, 0x02, 0x00, 0x0A],
    );
    decode_only(
        V5,
        &[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00],
        PubAck::new(pid(10)),
        &[0x40, 0x02, 0x00, 0x0A],
    );
    decode_only(
        V5,
        &[0x50, 0x04, 0x00, 0x0A, 0x10, 0x00],
        PubRec::with_reason(pid(10), ReasonCode::NoMatchingSubscribers),
        &[0x50, 0x03, 0x00, 0x0A, 0x10],
    );
}

/// Ack properties: Reason String and User Property (§3.4.2.2).
#[test]
fn acks_v5_with_properties() {
    let props = AckProperties {
        reason_string: Some(s("no")),
        user_properties: vec![user("k", "v")],
    };
    let body = |first: u8, code: u8| {
        cat(&[
            &[first, 16, 0x00, 0x0A, code, 12], // Remaining Length 2 + 1 + 1 + 12
            &[0x1F, 0x00, 0x02, b'n', b'o'],
            &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        ])
    };
    vector(
        V5,
        &body(0x40, 0x87),
        PubAck {
            packet_id: pid(10),
            reason_code: ReasonCode::NotAuthorized,
            properties: props.clone(),
        },
    );
    vector(
        V5,
        &body(0x50, 0x97),
        PubRec {
            packet_id: pid(10),
            reason_code: ReasonCode::QuotaExceeded,
            properties: props.clone(),
        },
    );
    vector(
        V5,
        &body(0x62, 0x00),
        PubRel {
            packet_id: pid(10),
            reason_code: ReasonCode::Success,
            properties: props.clone(),
        },
    );
    vector(
        V5,
        &body(0x70, 0x00),
        PubComp {
            packet_id: pid(10),
            reason_code: ReasonCode::Success,
            properties: props,
        },
    );
}

// ---------------------------------------------------------------- SUBSCRIBE

/// MQTT 3.1.1 §3.8.3, Figure 3.22: "a/b" at QoS 1 and "c/d" at QoS 2.
#[test]
fn subscribe_v3_figure_3_22() {
    let wire = [
        0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd',
        0x02,
    ];
    for version in [V31, V311] {
        vector(
            version,
            &wire,
            Subscribe {
                packet_id: pid(10),
                properties: SubscribeProperties::default(),
                filters: vec![
                    SubscribeFilter {
                        filter: s("a/b"),
                        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                    },
                    SubscribeFilter {
                        filter: s("c/d"),
                        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                    },
                ],
            },
        );
    }
}

/// MQTT 3.1 let a retried SUBSCRIBE, UNSUBSCRIBE or PUBREL carry DUP
/// (header 0x8A); we decode it and send the 3.1.1 form.
#[test]
fn subscribe_v31_with_dup_flag() {
    let expected = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![SubscribeFilter {
            filter: s("x"),
            options: SubscriptionOptions::default(),
        }],
    };
    decode_only(
        V31,
        &[0x8A, 0x06, 0x00, 0x01, 0x00, 0x01, b'x', 0x00],
        expected,
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'x', 0x00],
    );
    decode_only(
        V31,
        &[0x6A, 0x02, 0x00, 0x05],
        PubRel::new(pid(5)),
        &[0x62, 0x02, 0x00, 0x05],
    );
    decode_only(
        V31,
        &[0xAA, 0x05, 0x00, 0x05, 0x00, 0x01, b'x'],
        Unsubscribe {
            packet_id: pid(5),
            properties: UnsubscribeProperties::default(),
            filters: vec![s("x")],
        },
        &[0xA2, 0x05, 0x00, 0x05, 0x00, 0x01, b'x'],
    );
}

/// MQTT 5 subscription options (§3.8.3.1) and SUBSCRIBE properties.
#[test]
fn subscribe_v5_options_and_properties() {
    let wire = cat(&[
        &[0x82, 31],                                 // Remaining Length 31
        &[0x00, 0x0F],                               // packet identifier (2)
        &[9],                                        // property length (1) + 9:
        &[0x0B, 0x2A],                               //   Subscription Identifier 42 (2)
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'], //   User Property (7)
        &[0x00, 0x03, b'a', b'/', b'+'],             // filter (5)
        &[0x2D],       // QoS 1, No Local, Retain As Published, Retain Handling 2 (1)
        &[0x00, 0x0A], // filter (12)
        b"$share/g/#",
        &[0x10], // QoS 0, Retain Handling 1 (1)
    ]);
    assert_eq!(wire.len(), 2 + 31);
    vector(
        V5,
        &wire,
        Subscribe {
            packet_id: pid(15),
            properties: SubscribeProperties {
                subscription_identifier: Some(sub_id(42)),
                user_properties: vec![user("k", "v")],
            },
            filters: vec![
                SubscribeFilter {
                    filter: s("a/+"),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                },
                SubscribeFilter {
                    filter: s("$share/g/#"),
                    options: SubscriptionOptions {
                        retain_handling: RetainHandling::SendAtSubscribeIfNew,
                        ..SubscriptionOptions::default()
                    },
                },
            ],
        },
    );
}

// ---------------------------------------------------------------- SUBACK

/// MQTT 3.1.1 §3.9.3, Figure 3.26: granted QoS 0, 1, 2 and failure 0x80.
#[test]
fn suback_v3_figure_3_26() {
    let wire = [0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80];
    for version in [V31, V311] {
        vector(
            version,
            &wire,
            SubAck {
                packet_id: pid(10),
                properties: AckProperties::default(),
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_0,
                    ReasonCode::GrantedQos1,
                    ReasonCode::GrantedQos2,
                    ReasonCode::UnspecifiedError,
                ],
            },
        );
    }
}

/// MQTT 3.x has one failure code: any MQTT 5 SUBACK error goes out as 0x80.
#[test]
fn suback_v311_projects_errors_to_0x80() {
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(3),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQos1],
    });
    assert_eq!(encode(&packet, V311), [0x90, 0x04, 0x00, 0x03, 0x80, 0x01]);
}

/// Every SUBACK reason code of MQTT 5.0 §3.9.3, with a Reason String.
#[test]
fn suback_v5_every_reason_code() {
    let wire = cat(&[
        &[0x90, 20],                        // Remaining Length 2 + 1 + 5 + 12
        &[0x00, 0x0F],                      // packet identifier
        &[5, 0x1F, 0x00, 0x02, b'o', b'k'], // properties: Reason String
        &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ],
    ]);
    assert_eq!(wire.len(), 2 + 20);
    vector(
        V5,
        &wire,
        SubAck {
            packet_id: pid(15),
            properties: AckProperties {
                reason_string: Some(s("ok")),
                user_properties: Vec::new(),
            },
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::UnspecifiedError,
                ReasonCode::ImplementationSpecificError,
                ReasonCode::NotAuthorized,
                ReasonCode::TopicFilterInvalid,
                ReasonCode::PacketIdentifierInUse,
                ReasonCode::QuotaExceeded,
                ReasonCode::SharedSubscriptionsNotSupported,
                ReasonCode::SubscriptionIdentifiersNotSupported,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
        },
    );
}

// ---------------------------------------------------------------- UNSUBSCRIBE

/// MQTT 3.1.1 §3.10.3, Figure 3.30: "a/b" and "c/d".
#[test]
fn unsubscribe_v3_figure_3_30() {
    let wire = [
        0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd',
    ];
    for version in [V31, V311] {
        vector(
            version,
            &wire,
            Unsubscribe {
                packet_id: pid(10),
                properties: UnsubscribeProperties::default(),
                filters: vec![s("a/b"), s("c/d")],
            },
        );
    }
}

/// MQTT 5 UNSUBSCRIBE with a User Property (§3.10.2.1).
#[test]
fn unsubscribe_v5_with_user_property() {
    let wire = cat(&[
        &[0xA2, 20, 0x00, 0x10],                        // Remaining Length 2 + 8 + 10
        &[7, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'], // properties (8)
        &[0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'#'], // filters (10)
    ]);
    vector(
        V5,
        &wire,
        Unsubscribe {
            packet_id: pid(16),
            properties: UnsubscribeProperties {
                user_properties: vec![user("k", "v")],
            },
            filters: vec![s("a/b"), s("c/#")],
        },
    );
}

// ---------------------------------------------------------------- UNSUBACK

/// MQTT 3.x UNSUBACK: packet identifier only (§3.11).
#[test]
fn unsuback_v3() {
    for version in [V31, V311] {
        vector(version, &[0xB0, 0x02, 0x00, 0x0A], UnsubAck::v3(pid(10)));
    }
}

/// Every UNSUBACK reason code of MQTT 5.0 §3.11.3.
#[test]
fn unsuback_v5_every_reason_code() {
    let wire = [
        0xB0, 10, 0x00, 0x10, 0x00, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91,
    ];
    vector(
        V5,
        &wire,
        UnsubAck {
            packet_id: pid(16),
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::Success,
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::UnspecifiedError,
                ReasonCode::ImplementationSpecificError,
                ReasonCode::NotAuthorized,
                ReasonCode::TopicFilterInvalid,
                ReasonCode::PacketIdentifierInUse,
            ],
        },
    );
}

// ---------------------------------------------------------------- PING

#[test]
fn pingreq_and_pingresp_every_version() {
    for version in ProtocolVersion::ALL {
        vector(version, &[0xC0, 0x00], Packet::PingReq);
        vector(version, &[0xD0, 0x00], Packet::PingResp);
    }
}

// ---------------------------------------------------------------- DISCONNECT

#[test]
fn disconnect_v3() {
    for version in [V31, V311] {
        vector(version, &[0xE0, 0x00], Disconnect::default());
    }
}

/// MQTT 5 DISCONNECT with Remaining Length 0: Normal disconnection (§3.14.2.1).
#[test]
fn disconnect_v5_remaining_length_0() {
    vector(
        V5,
        &[0xE0, 0x00],
        Disconnect::new(ReasonCode::NORMAL_DISCONNECTION),
    );
}

/// Remaining Length 1: a reason code and no Property Length (§3.14.2.2.1).
#[test]
fn disconnect_v5_remaining_length_1() {
    vector(
        V5,
        &[0xE0, 0x01, 0x04],
        Disconnect::new(ReasonCode::DisconnectWithWill),
    );
    vector(
        V5,
        &[0xE0, 0x01, 0x8E],
        Disconnect::new(ReasonCode::SessionTakenOver),
    );
    // Normal disconnection written out is the same value as Remaining Length 0.
    decode_only(
        V5,
        &[0xE0, 0x01, 0x00],
        Disconnect::default(),
        &[0xE0, 0x00],
    );
    decode_only(
        V5,
        &[0xE0, 0x02, 0x00, 0x00],
        Disconnect::default(),
        &[0xE0, 0x00],
    );
}

/// Every DISCONNECT property (MQTT 5.0 §3.14.2.2).
#[test]
fn disconnect_v5_every_property() {
    let wire = cat(&[
        &[0xE0, 29, 0x9C, 27],                             //  RL 1 + 1 + 27
        &[0x11, 0x00, 0x00, 0x0E, 0x10],                   // Session Expiry Interval 3600 (5)
        &[0x1F, 0x00, 0x04, b'm', b'o', b'v', b'e'],       // Reason String (7)
        &[0x1C, 0x00, 0x05, b'o', b't', b'h', b'e', b'r'], // Server Reference (8)
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b'],       // User Property (7)
    ]);
    assert_eq!(wire.len(), 2 + 29);
    vector(
        V5,
        &wire,
        Disconnect {
            reason_code: ReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                session_expiry_interval: Some(3600),
                reason_string: Some(s("move")),
                server_reference: Some(s("other")),
                user_properties: vec![user("a", "b")],
            },
        },
    );
}

// ---------------------------------------------------------------- AUTH

/// AUTH with Remaining Length 0 is Success with no properties (§3.15.2.1).
#[test]
fn auth_v5_remaining_length_0() {
    vector(V5, &[0xF0, 0x00], Auth::default());
}

/// Every AUTH property (MQTT 5.0 §3.15.2.2), Continue authentication.
#[test]
fn auth_v5_every_property() {
    let wire = cat(&[
        &[0xF0, 30, 0x18, 28],                             // RL 1 + 1 + 28
        &[0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M'], // Authentication Method (8)
        &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03],             // Authentication Data (6)
        &[0x1F, 0x00, 0x04, b'm', b'o', b'r', b'e'],       // Reason String (7)
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],       // User Property (7)
    ]);
    assert_eq!(wire.len(), 2 + 30);
    vector(
        V5,
        &wire,
        Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
                reason_string: Some(s("more")),
                user_properties: vec![user("k", "v")],
            },
        },
    );
}

/// Re-authenticate, and a reason with no properties (Property Length 0).
#[test]
fn auth_v5_reauthenticate() {
    vector(
        V5,
        &[0xF0, 0x06, 0x19, 0x04, 0x15, 0x00, 0x01, b'm'],
        Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties {
                authentication_method: Some(s("m")),
                ..AuthProperties::default()
            },
        },
    );
    vector(
        V5,
        &[0xF0, 0x02, 0x18, 0x00],
        Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties::default(),
        },
    );
}

// ---------------------------------------------------------------- streams

/// Several packets back to back in one buffer decode one at a time, each
/// consuming exactly its own bytes.
#[test]
fn back_to_back_packets_in_one_buffer() {
    let mut buf = BytesMut::from(
        &[
            0x40, 0x02, 0x00, 0x01, // PUBACK 1
            0xC0, 0x00, // PINGREQ
            0x30, 0x04, 0x00, 0x01, b't', b'!', // PUBLISH "t" "!"
            0xE0, 0x00, // DISCONNECT
        ][..],
    );
    let mut got = Vec::new();
    while let Some(p) = Packet::decode(&mut buf, V311, 1024).unwrap() {
        got.push(p);
    }
    assert_eq!(
        got,
        [
            Packet::PubAck(PubAck::new(pid(1))),
            Packet::PingReq,
            Packet::Publish(Publish {
                topic: s("t"),
                payload: Bytes::from_static(b"!"),
                ..Publish::default()
            }),
            Packet::from(Disconnect::default()),
        ]
    );
    assert!(buf.is_empty());
}

/// The property tables above name every MQTT 5 property identifier at least
/// once; this keeps that claim honest when a property is added.
#[test]
fn every_property_identifier_appears_in_a_vector() {
    let source = include_str!("vectors.rs");
    for id in (0u8..=0x7F).filter_map(tern_codec::PropertyId::from_u8) {
        assert!(
            source.contains(id.name()),
            "no vector mentions property {id}"
        );
    }
}
