//! Every malformed input the decoder refuses, with the exact rule
//! ([`DecodeError::kind`]), byte offset from the start of the packet
//! ([`DecodeError::offset`]) and reason code ([`DecodeError::reason_code`]);
//! and every packet the encoder refuses, with nothing written.
//!
//! Offsets are counted by hand in the comments: byte 0 is the packet's first
//! fixed-header byte.

use bytes::{Bytes, BytesMut};
use tern_codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    DecodeError, DecodeErrorKind as K, Disconnect, EncodeError, MAX_PACKET_SIZE, MqttString,
    Packet, PacketId, PacketType, PropertyId, ProtocolVersion, PubAck, PubRel, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeFilter,
    SubscriptionOptions, TopicError, UnsubAck, Unsubscribe, UserProperty, Will, check_frame,
};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL: ReasonCode = ReasonCode::ProtocolError;

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero")
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

/// Decodes `wire` in `version` and insists on exactly this error.
#[track_caller]
fn rejects(
    version: ProtocolVersion,
    wire: &[u8],
    kind: K,
    offset: usize,
    reason: ReasonCode,
) -> DecodeError {
    let mut buf = BytesMut::from(wire);
    let err = match Packet::decode(&mut buf, version, MAX_PACKET_SIZE) {
        Err(e) => e,
        Ok(p) => panic!("{wire:02x?} in {version} decoded to {p:?}; expected {kind:?}"),
    };
    assert_eq!(err.kind(), kind, "kind for {wire:02x?} in {version}: {err}");
    assert_eq!(
        err.offset(),
        offset,
        "offset for {wire:02x?} in {version}: {err}"
    );
    assert_eq!(err.reason_code(), reason, "reason for {wire:02x?}: {err}");
    // Display names the rule and the offset.
    let text = err.to_string();
    assert!(text.contains(&format!("byte {offset}")), "{text}");
    err
}

/// Decodes `wire` in `version` and returns the one packet it holds.
#[track_caller]
fn accepts(version: ProtocolVersion, wire: &[u8]) -> Packet {
    let mut buf = BytesMut::from(wire);
    let packet = Packet::decode(&mut buf, version, MAX_PACKET_SIZE)
        .unwrap_or_else(|e| panic!("{wire:02x?} in {version}: {e}"))
        .expect("whole packet");
    assert!(buf.is_empty());
    packet
}

/// An MQTT 5 CONNECT (clean start, keep alive 60, empty client id) with these
/// property bytes. Byte 12 is the Property Length, byte 13 the first property.
fn connect_v5(props: &[u8]) -> Vec<u8> {
    assert!(props.len() < 100);
    let rl = 10 + 1 + props.len() + 2;
    let mut v = vec![
        0x10, rl as u8, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
    ];
    v.push(props.len() as u8);
    v.extend_from_slice(props);
    v.extend_from_slice(&[0x00, 0x00]);
    v
}

/// An MQTT 3.1.1 CONNECT with these flags, keep alive 60, empty client id,
/// then `rest`. Byte 9 is the flags byte.
fn connect_v311(flags: u8, rest: &[u8]) -> Vec<u8> {
    let rl = 10 + 2 + rest.len();
    let mut v = vec![
        0x10, rl as u8, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x3C, 0x00, 0x00,
    ];
    v.extend_from_slice(rest);
    v
}

/// An MQTT 5 QoS 0 PUBLISH to "t" with these property bytes and payload "x".
/// Byte 5 is the Property Length, byte 6 the first property.
fn publish_v5(props: &[u8]) -> Vec<u8> {
    let rl = 3 + 1 + props.len() + 1;
    let mut v = vec![0x30, rl as u8, 0x00, 0x01, b't', props.len() as u8];
    v.extend_from_slice(props);
    v.push(b'x');
    v
}

/// An MQTT 5 ack (`first` byte) for packet 1, reason `code`, with these
/// property bytes. Byte 4 is the reason code, 5 the Property Length, 6 the
/// first property.
fn ack_v5(first: u8, code: u8, props: &[u8]) -> Vec<u8> {
    let rl = 2 + 1 + 1 + props.len();
    let mut v = vec![first, rl as u8, 0x00, 0x01, code, props.len() as u8];
    v.extend_from_slice(props);
    v
}

// ============================================================ Variable Byte Integers

/// MQTT 5.0 §1.5.5: at most four bytes; a fifth continuation is malformed.
#[test]
fn remaining_length_longer_than_four_bytes() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
            K::VarIntTooLong,
            1,
            MALFORMED,
        );
        rejects(
            version,
            &[0xC0, 0xFF, 0xFF, 0xFF, 0xFF],
            K::VarIntTooLong,
            1,
            MALFORMED,
        );
    }
}

/// [MQTT-1.5.5-1]: the minimum number of bytes.
#[test]
fn remaining_length_not_minimal_mqtt_1_5_5_1() {
    for version in ProtocolVersion::ALL {
        // 0 in two bytes.
        rejects(
            version,
            &[0xC0, 0x80, 0x00],
            K::VarIntNotMinimal,
            1,
            MALFORMED,
        );
        // 127 in two bytes.
        rejects(
            version,
            &[0x30, 0xFF, 0x00],
            K::VarIntNotMinimal,
            1,
            MALFORMED,
        );
    }
}

/// The same rules inside the body: Property Length and Subscription Identifier.
#[test]
fn body_varints_too_long_or_not_minimal() {
    // PUBLISH "t", Property Length 80 00 at byte 5.
    rejects(
        V5,
        &[0x30, 0x05, 0x00, 0x01, b't', 0x80, 0x00],
        K::VarIntNotMinimal,
        5,
        MALFORMED,
    );
    // Property Length 80 80 80 80 at byte 5, a fifth byte after it.
    rejects(
        V5,
        &[0x30, 0x08, 0x00, 0x01, b't', 0x80, 0x80, 0x80, 0x80, 0x01],
        K::VarIntTooLong,
        5,
        MALFORMED,
    );
    // Subscription Identifier 81 00 (1 in two bytes): value at byte 7.
    rejects(
        V5,
        &publish_v5(&[0x0B, 0x81, 0x00]),
        K::VarIntNotMinimal,
        7,
        MALFORMED,
    );
    // A property identifier is a Variable Byte Integer too [MQTT-1.5.5-1]:
    // 81 00 (Payload Format Indicator in two bytes) at byte 6 is not
    // minimal, and 80 01 (128, well formed) names no property.
    rejects(
        V5,
        &publish_v5(&[0x81, 0x00, 0x01]),
        K::VarIntNotMinimal,
        6,
        MALFORMED,
    );
    rejects(
        V5,
        &publish_v5(&[0x80, 0x01, 0x01]),
        K::PropertyNotAllowed { id: 0x80 },
        6,
        MALFORMED,
    );
}

// ============================================================ UTF-8

/// [MQTT-1.5.4-1] / [MQTT-1.5.3-1]: ill-formed UTF-8. The offset is the
/// string's first byte (after its two-byte length).
#[test]
fn ill_formed_utf8_mqtt_1_5_4_1() {
    for version in ProtocolVersion::ALL {
        // A lone continuation byte.
        rejects(
            version,
            &[0x30, 0x03, 0x00, 0x01, 0x80],
            K::InvalidUtf8,
            4,
            MALFORMED,
        );
        // 0xFF never appears in UTF-8.
        rejects(
            version,
            &[0x30, 0x04, 0x00, 0x02, b'a', 0xFF],
            K::InvalidUtf8,
            4,
            MALFORMED,
        );
        // Overlong encoding of '/' (C0 AF).
        rejects(
            version,
            &[0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF],
            K::InvalidUtf8,
            4,
            MALFORMED,
        );
        // Truncated three-byte sequence.
        rejects(
            version,
            &[0x30, 0x04, 0x00, 0x02, 0xE2, 0x82],
            K::InvalidUtf8,
            4,
            MALFORMED,
        );
    }
}

/// [MQTT-1.5.4-1]: no encodings of U+D800..U+DFFF; ED A0 80 is U+D800.
#[test]
fn surrogate_code_point_mqtt_1_5_4_1() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80],
            K::InvalidUtf8,
            4,
            MALFORMED,
        );
        // U+DFFF, the last surrogate.
        rejects(
            version,
            &[0x30, 0x05, 0x00, 0x03, 0xED, 0xBF, 0xBF],
            K::InvalidUtf8,
            4,
            MALFORMED,
        );
    }
}

/// [MQTT-1.5.4-2] / [MQTT-1.5.3-2]: U+0000 is not allowed.
#[test]
fn null_character_mqtt_1_5_4_2() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'],
            K::NullCharacter,
            4,
            MALFORMED,
        );
    }
}

/// Strings are checked wherever they are: client id, user property key and
/// value, filters.
#[test]
fn utf8_checked_in_every_string_field() {
    // CONNECT v3.1.1 client id "\xff" at bytes 14..: length at 12, text at 14.
    let mut wire = connect_v311(0x02, &[]);
    wire[1] += 1;
    wire[13] = 1;
    wire.push(0xFF);
    rejects(V311, &wire, K::InvalidUtf8, 14, MALFORMED);
    // User Property value with U+0000: id at 6, key 00 01 'k' at 7..10, value
    // length at 10, text at 12.
    rejects(
        V5,
        &publish_v5(&[0x26, 0x00, 0x01, b'k', 0x00, 0x01, 0x00]),
        K::NullCharacter,
        12,
        MALFORMED,
    );
    // UNSUBSCRIBE filter with a surrogate: id at 2, filter text at 6.
    rejects(
        V311,
        &[0xA2, 0x07, 0x00, 0x01, 0x00, 0x03, 0xED, 0xA0, 0x80],
        K::InvalidUtf8,
        6,
        MALFORMED,
    );
}

// ============================================================ fixed header

/// [MQTT-2.2.2-1] / [MQTT-2.1.3-1]: every flag nibble other than the one
/// Table 2-2 lists is malformed, for every packet type but PUBLISH.
#[test]
fn fixed_header_flags_every_type_mqtt_2_1_3_1() {
    let required: &[(u8, u8)] = &[
        (1, 0b0000),
        (2, 0b0000),
        (4, 0b0000),
        (5, 0b0000),
        (6, 0b0010),
        (7, 0b0000),
        (8, 0b0010),
        (9, 0b0000),
        (10, 0b0010),
        (11, 0b0000),
        (12, 0b0000),
        (13, 0b0000),
        (14, 0b0000),
        (15, 0b0000),
    ];
    for version in ProtocolVersion::ALL {
        for &(nibble, good) in required {
            if nibble == 15 && !version.is_v5() {
                continue;
            }
            for flags in 0..16u8 {
                if flags == good || (version == V31 && good == 0b0010 && flags == 0b1010) {
                    continue;
                }
                let err = rejects(
                    version,
                    &[(nibble << 4) | flags, 0x00],
                    K::InvalidHeaderFlags { flags },
                    0,
                    MALFORMED,
                );
                assert_eq!(err.packet_type().map(|t| t as u8), Some(nibble));
            }
        }
    }
}

/// MQTT 3.1 allowed DUP (0b1010) on retried PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE; 3.1.1 and 5.0 do not [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1].
#[test]
fn dup_on_subscribe_only_in_mqtt_3_1() {
    let subscribe = [0x8A, 0x06, 0x00, 0x01, 0x00, 0x01, b'x', 0x00];
    assert!(matches!(accepts(V31, &subscribe), Packet::Subscribe(_)));
    let pubrel = [0x6A, 0x02, 0x00, 0x01];
    assert!(matches!(accepts(V31, &pubrel), Packet::PubRel(_)));
    let unsubscribe = [0xAA, 0x05, 0x00, 0x01, 0x00, 0x01, b'x'];
    assert!(matches!(accepts(V31, &unsubscribe), Packet::Unsubscribe(_)));
    for version in [V311, V5] {
        for wire in [&subscribe[..], &pubrel, &unsubscribe] {
            rejects(
                version,
                wire,
                K::InvalidHeaderFlags { flags: 0b1010 },
                0,
                MALFORMED,
            );
        }
    }
    // Other flags stay wrong in 3.1: DUP without the 0b0010 bit.
    rejects(
        V31,
        &[0x88, 0x00],
        K::InvalidHeaderFlags { flags: 0b1000 },
        0,
        MALFORMED,
    );
}

/// Packet type 0 is reserved; 15 is AUTH only in MQTT 5.
#[test]
fn reserved_packet_types() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x00, 0x00],
            K::ReservedPacketType(0),
            0,
            MALFORMED,
        );
    }
    for version in [V31, V311] {
        rejects(
            version,
            &[0xF0, 0x00],
            K::ReservedPacketType(15),
            0,
            MALFORMED,
        );
    }
}

// ============================================================ PUBLISH

/// [MQTT-3.3.1-4]: QoS 3 is malformed.
#[test]
fn publish_qos_3_mqtt_3_3_1_4() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
            K::InvalidPublishQos,
            0,
            MALFORMED,
        );
    }
}

/// [MQTT-3.3.1-2]: DUP must be 0 at QoS 0.
#[test]
fn publish_dup_with_qos_0_mqtt_3_3_1_2() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x38, 0x03, 0x00, 0x01, b't'],
            K::DupWithQos0,
            0,
            MALFORMED,
        );
        rejects(
            version,
            &[0x39, 0x03, 0x00, 0x01, b't'],
            K::DupWithQos0,
            0,
            MALFORMED,
        );
    }
}

/// [MQTT-2.2.1-3] / [MQTT-2.3.1-1]: packet identifiers are non-zero.
#[test]
fn packet_identifier_zero_mqtt_2_2_1_3() {
    for version in ProtocolVersion::ALL {
        // PUBLISH QoS 1 "t", id 00 00 at byte 5.
        rejects(
            version,
            &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00],
            K::ZeroPacketId,
            5,
            PROTOCOL,
        );
        // PUBLISH QoS 2.
        rejects(
            version,
            &[0x34, 0x05, 0x00, 0x01, b't', 0x00, 0x00],
            K::ZeroPacketId,
            5,
            PROTOCOL,
        );
        // Acks, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK: id at byte 2.
        for first in [0x40, 0x50, 0x62, 0x70, 0xB0] {
            rejects(
                version,
                &[first, 0x02, 0x00, 0x00],
                K::ZeroPacketId,
                2,
                PROTOCOL,
            );
        }
        rejects(
            version,
            &[0x90, 0x03, 0x00, 0x00, 0x00],
            K::ZeroPacketId,
            2,
            PROTOCOL,
        );
    }
    for version in [V31, V311] {
        rejects(
            version,
            &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'x', 0x00],
            K::ZeroPacketId,
            2,
            PROTOCOL,
        );
        rejects(
            version,
            &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'x'],
            K::ZeroPacketId,
            2,
            PROTOCOL,
        );
    }
}

/// [MQTT-3.3.2-2]: no wildcards in a topic name. The offset is the topic's
/// length field.
#[test]
fn publish_topic_with_wildcard_mqtt_3_3_2_2() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'],
            K::WildcardInTopicName,
            2,
            ReasonCode::TopicNameInvalid,
        );
        rejects(
            version,
            &[0x30, 0x05, 0x00, 0x03, b'+', b'/', b'b'],
            K::WildcardInTopicName,
            2,
            ReasonCode::TopicNameInvalid,
        );
    }
}

/// [MQTT-4.7.3-1]: a topic name has at least one character; in MQTT 5 an
/// empty one is allowed only with a Topic Alias (§3.3.2.3.4).
#[test]
fn publish_empty_topic() {
    for version in [V31, V311] {
        rejects(
            version,
            &[0x30, 0x02, 0x00, 0x00],
            K::EmptyTopic,
            2,
            PROTOCOL,
        );
    }
    rejects(
        V5,
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        K::EmptyTopic,
        2,
        PROTOCOL,
    );
    // With another property but no alias it is still refused.
    rejects(
        V5,
        &[0x30, 0x05, 0x00, 0x00, 0x02, 0x01, 0x01],
        K::EmptyTopic,
        2,
        PROTOCOL,
    );
}

/// [MQTT-3.3.2-14]: the Response Topic must not contain wildcards.
#[test]
fn publish_response_topic_with_wildcard_mqtt_3_3_2_14() {
    rejects(
        V5,
        &publish_v5(&[0x08, 0x00, 0x01, b'#']),
        K::InvalidPropertyValue(PropertyId::ResponseTopic),
        5,
        PROTOCOL,
    );
}

// ============================================================ CONNECT

/// [MQTT-3.1.2-3]: the reserved flag is 0. The version is known already,
/// so the error says which version to answer in.
#[test]
fn connect_reserved_flag_mqtt_3_1_2_3() {
    let err = rejects(
        V311,
        &connect_v311(0x03, &[]),
        K::ConnectReservedFlag,
        9,
        MALFORMED,
    );
    assert_eq!(err.connect_version(), Some(V311));
    assert_eq!(err.packet_type(), Some(PacketType::Connect));
    let mut v5 = connect_v5(&[]);
    v5[9] = 0x01;
    let err = rejects(V311, &v5, K::ConnectReservedFlag, 9, MALFORMED);
    assert_eq!(err.connect_version(), Some(V5));
}

/// [MQTT-3.1.2-11] [MQTT-3.1.2-13] (5.0), [MQTT-3.1.2-13] [MQTT-3.1.2-15]
/// (3.1.1): Will QoS and Will Retain are 0 without the Will Flag.
#[test]
fn connect_will_qos_or_retain_without_will_flag() {
    // Will QoS 1 (0x08), Will QoS 2 (0x10), Will Retain (0x20), with clean session.
    for flags in [0x0A, 0x12, 0x22, 0x3A] {
        rejects(
            V311,
            &connect_v311(flags, &[]),
            K::WillFlagsWithoutWill,
            9,
            MALFORMED,
        );
    }
}

/// [MQTT-3.1.2-14] (3.1.1), [MQTT-3.1.2-12] (5.0): Will QoS 3 is malformed.
#[test]
fn connect_will_qos_3() {
    // Will flag 0x04, QoS bits 0x18, clean 0x02.
    let err = rejects(
        V311,
        &connect_v311(0x1E, &[0x00, 0x01, b't', 0x00, 0x00]),
        K::InvalidWillQos,
        9,
        MALFORMED,
    );
    assert_eq!(err.connect_version(), Some(V311));
}

/// [MQTT-3.1.2-22] (3.1.1): no password without a user name; MQTT 5 allows it.
#[test]
fn connect_password_without_username_only_before_mqtt_5() {
    rejects(
        V311,
        &connect_v311(0x42, &[0x00, 0x02, b'p', b'w']),
        K::PasswordWithoutUsername,
        9,
        MALFORMED,
    );
    // MQTT 3.1: "MQIsdp" (8 bytes), flags at byte 11.
    let v31 = [
        0x10, 0x12, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x42, 0x00, 0x3C, 0x00,
        0x00, 0x00, 0x02, b'p', b'w',
    ];
    rejects(V31, &v31, K::PasswordWithoutUsername, 11, MALFORMED);
    let mut v5 = connect_v5(&[]);
    v5[9] = 0x42;
    v5[1] += 4;
    v5.extend_from_slice(&[0x00, 0x02, b'p', b'w']);
    let Packet::Connect(c) = accepts(V5, &v5) else {
        panic!()
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

/// [MQTT-3.1.2-1]: the protocol name; no version is known, so none is reported.
#[test]
fn connect_bad_protocol_name_mqtt_3_1_2_1() {
    let mut wire = connect_v311(0x02, &[]);
    wire[7] = b'X'; // "MQTX"
    let err = rejects(
        V311,
        &wire,
        K::InvalidProtocolName,
        2,
        ReasonCode::UnsupportedProtocolVersion,
    );
    assert_eq!(err.connect_version(), None);
    // "mqtt" in lower case is a different name.
    let mut wire = connect_v311(0x02, &[]);
    wire[4..8].copy_from_slice(b"mqtt");
    rejects(
        V5,
        &wire,
        K::InvalidProtocolName,
        2,
        ReasonCode::UnsupportedProtocolVersion,
    );
}

/// [MQTT-3.1.2-2]: an unsupported protocol level; offset is the level byte.
#[test]
fn connect_unsupported_protocol_level_mqtt_3_1_2_2() {
    // 0x84 is mosquitto's try_private bridge mark on 3.1.1 (decoded, see
    // `connect_try_private_level`); on 5 (0x85) it is not a level.
    for level in [0u8, 1, 2, 3, 6, 0x85, 0x86, 0xFF] {
        let mut wire = connect_v311(0x02, &[]);
        wire[8] = level;
        let err = rejects(
            V311,
            &wire,
            K::UnsupportedProtocolLevel(level),
            8,
            ReasonCode::UnsupportedProtocolVersion,
        );
        assert_eq!(err.connect_version(), None);
    }
    // "MQIsdp" with level 4: the name is 3.1's, the level is not.
    let wire = [
        0x10, 0x0E, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x04, 0x02, 0x00, 0x3C, 0x00,
        0x00,
    ];
    rejects(
        V311,
        &wire,
        K::UnsupportedProtocolLevel(4),
        10,
        ReasonCode::UnsupportedProtocolVersion,
    );
}

/// mosquitto's `try_private`: protocol level 0x84 ("MQTT") and 0x83
/// ("MQIsdp") are 3.1.1 and 3.1 from a bridge, and encode back the same.
#[test]
fn connect_try_private_level() {
    let mut wire = connect_v311(0x02, &[]);
    wire[8] = 0x84;
    let Packet::Connect(connect) = accepts(V311, &wire) else {
        panic!("not a CONNECT");
    };
    assert_eq!((connect.protocol, connect.bridge), (V311, true));
    let mut again = BytesMut::new();
    Packet::Connect(connect.clone())
        .encode(V311, &mut again)
        .unwrap();
    assert_eq!(&again[..], &wire[..]);
    wire[8] = 0x04;
    let Packet::Connect(plain) = accepts(V311, &wire) else {
        panic!("not a CONNECT");
    };
    assert!(!plain.bridge);
    let wire = [
        0x10, 0x0E, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x83, 0x02, 0x00, 0x3C, 0x00,
        0x00,
    ];
    let Packet::Connect(old) = accepts(V31, &wire) else {
        panic!("not a CONNECT");
    };
    assert_eq!((old.protocol, old.bridge), (V31, true));
    // MQTT 5 has No Local instead: the mark is refused there.
    let v5 = Connect {
        bridge: true,
        ..Connect::new(V5, s("b"))
    };
    assert!(
        Packet::Connect(Box::new(v5))
            .encode(V5, &mut BytesMut::new())
            .is_err()
    );
}

/// [MQTT-3.1.3-11] / [MQTT-3.3.2-2]: a will topic is a topic name.
#[test]
fn connect_will_topic_with_wildcard() {
    // Will flag + clean session; client id at 12 (empty), will topic at 14.
    let wire = connect_v311(0x06, &[0x00, 0x03, b'a', b'/', b'+', 0x00, 0x00]);
    rejects(
        V311,
        &wire,
        K::WildcardInTopicName,
        14,
        ReasonCode::TopicNameInvalid,
    );
    let wire = connect_v311(0x06, &[0x00, 0x00, 0x00, 0x00]);
    rejects(V311, &wire, K::EmptyTopic, 14, PROTOCOL);
}

/// Authentication Data without an Authentication Method (§3.1.2.11.10);
/// the offset is the Property Length.
#[test]
fn connect_auth_data_without_method() {
    let err = rejects(
        V5,
        &connect_v5(&[0x16, 0x00, 0x01, 0x01]),
        K::AuthDataWithoutMethod,
        12,
        PROTOCOL,
    );
    assert_eq!(err.connect_version(), Some(V5));
}

/// A valid protocol level with a later error reports the version to answer in;
/// an error in any other packet reports none.
#[test]
fn connect_version_is_reported_once_the_level_is_valid() {
    let err = rejects(
        V311,
        &connect_v5(&[0x23, 0x00, 0x01]),
        K::PropertyNotAllowed { id: 0x23 },
        13,
        MALFORMED,
    );
    assert_eq!(err.connect_version(), Some(V5));
    // Truncated after the level: still known.
    let wire = [0x10, 0x07, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05];
    let err = rejects(V5, &wire, K::UnexpectedEnd, 9, MALFORMED);
    assert_eq!(err.connect_version(), Some(V5));
    let err = rejects(V5, &[0x40, 0x02, 0x00, 0x00], K::ZeroPacketId, 2, PROTOCOL);
    assert_eq!(err.connect_version(), None);
}

// ============================================================ CONNACK

/// [MQTT-3.2.2-1] (5.0): acknowledge flags bits 7-1 are reserved; in 3.1 the
/// whole byte is.
#[test]
fn connack_reserved_flags() {
    rejects(
        V311,
        &[0x20, 0x02, 0x02, 0x00],
        K::ConnAckReservedFlags,
        2,
        MALFORMED,
    );
    rejects(
        V5,
        &[0x20, 0x03, 0x80, 0x00, 0x00],
        K::ConnAckReservedFlags,
        2,
        MALFORMED,
    );
    rejects(
        V31,
        &[0x20, 0x02, 0x01, 0x00],
        K::ConnAckReservedFlags,
        2,
        MALFORMED,
    );
}

/// [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1): Session Present is 0 with
/// an error code.
#[test]
fn connack_session_present_with_error() {
    rejects(
        V311,
        &[0x20, 0x02, 0x01, 0x05],
        K::SessionPresentOnError,
        2,
        PROTOCOL,
    );
    rejects(
        V5,
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        K::SessionPresentOnError,
        2,
        PROTOCOL,
    );
}

/// [MQTT-3.2.2-8]: only CONNACK reason codes; 3.x return codes 0 to 5.
#[test]
fn connack_undefined_reason_code() {
    rejects(
        V311,
        &[0x20, 0x02, 0x00, 0x06],
        K::InvalidReasonCode(6),
        3,
        PROTOCOL,
    );
    rejects(
        V311,
        &[0x20, 0x02, 0x00, 0x80],
        K::InvalidReasonCode(0x80),
        3,
        PROTOCOL,
    );
    // 0x04 is DISCONNECT's, 0x8E is DISCONNECT's, 0x01 is SUBACK's.
    for code in [0x01, 0x04, 0x8E, 0xFF] {
        rejects(
            V5,
            &[0x20, 0x03, 0x00, code, 0x00],
            K::InvalidReasonCode(code),
            3,
            PROTOCOL,
        );
    }
}

/// Maximum QoS may only be 0 or 1 (§3.2.2.3.4).
#[test]
fn connack_maximum_qos_2() {
    rejects(
        V5,
        &[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02],
        K::InvalidPropertyValue(PropertyId::MaximumQos),
        6,
        PROTOCOL,
    );
}

/// Authentication Data without Method, in CONNACK.
#[test]
fn connack_auth_data_without_method() {
    rejects(
        V5,
        &[0x20, 0x07, 0x00, 0x00, 0x04, 0x16, 0x00, 0x01, 0x01],
        K::AuthDataWithoutMethod,
        4,
        PROTOCOL,
    );
}

// ============================================================ properties

/// §2.2.2.2: an identifier not valid for the packet type is malformed; the
/// offset is the identifier.
#[test]
fn properties_not_allowed_in_the_packet() {
    // Topic Alias in CONNECT.
    rejects(
        V5,
        &connect_v5(&[0x23, 0x00, 0x01]),
        K::PropertyNotAllowed { id: 0x23 },
        13,
        MALFORMED,
    );
    // Will Delay Interval in PUBLISH.
    rejects(
        V5,
        &publish_v5(&[0x18, 0x00, 0x00, 0x00, 0x01]),
        K::PropertyNotAllowed { id: 0x18 },
        6,
        MALFORMED,
    );
    // Payload Format Indicator in PUBACK.
    rejects(
        V5,
        &ack_v5(0x40, 0x00, &[0x01, 0x01]),
        K::PropertyNotAllowed { id: 0x01 },
        6,
        MALFORMED,
    );
    // Subscription Identifier in UNSUBSCRIBE: props at 4, id at 5.
    rejects(
        V5,
        &[0xA2, 0x08, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x01, b'x'],
        K::PropertyNotAllowed { id: 0x0B },
        5,
        MALFORMED,
    );
    // Receive Maximum in DISCONNECT: reason at 2, props at 3, id at 4.
    rejects(
        V5,
        &[0xE0, 0x05, 0x00, 0x03, 0x21, 0x00, 0x01],
        K::PropertyNotAllowed { id: 0x21 },
        4,
        MALFORMED,
    );
    // Session Expiry in AUTH.
    rejects(
        V5,
        &[0xF0, 0x07, 0x18, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01],
        K::PropertyNotAllowed { id: 0x11 },
        4,
        MALFORMED,
    );
    // An identifier no packet has (0x00, 0x7F).
    rejects(
        V5,
        &publish_v5(&[0x00]),
        K::PropertyNotAllowed { id: 0x00 },
        6,
        MALFORMED,
    );
    rejects(
        V5,
        &publish_v5(&[0x7F, 0x00]),
        K::PropertyNotAllowed { id: 0x7F },
        6,
        MALFORMED,
    );
}

/// §2.2.2.2: a property other than User Property (and, in PUBLISH,
/// Subscription Identifier) appears at most once. The offset is the second
/// identifier.
#[test]
fn duplicated_properties() {
    // Session Expiry Interval twice in CONNECT: second id at 13 + 5.
    rejects(
        V5,
        &connect_v5(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
        K::DuplicateProperty(PropertyId::SessionExpiryInterval),
        18,
        PROTOCOL,
    );
    // Topic Alias twice in PUBLISH: second id at 6 + 3.
    rejects(
        V5,
        &publish_v5(&[0x23, 0x00, 0x01, 0x23, 0x00, 0x02]),
        K::DuplicateProperty(PropertyId::TopicAlias),
        9,
        PROTOCOL,
    );
    // Reason String twice in PUBACK: second id at 6 + 3.
    rejects(
        V5,
        &ack_v5(0x40, 0x10, &[0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00]),
        K::DuplicateProperty(PropertyId::ReasonString),
        9,
        PROTOCOL,
    );
    // Subscription Identifier twice in SUBSCRIBE: props at 4, second id at 7.
    rejects(
        V5,
        &[
            0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'x', 0x00,
        ],
        K::DuplicateProperty(PropertyId::SubscriptionIdentifier),
        7,
        PROTOCOL,
    );
    // Authentication Method twice in AUTH: props at 3, second id at 4 + 4.
    rejects(
        V5,
        &[
            0xF0, 0x0A, 0x18, 0x08, 0x15, 0x00, 0x01, b'a', 0x15, 0x00, 0x01, b'b',
        ],
        K::DuplicateProperty(PropertyId::AuthenticationMethod),
        8,
        PROTOCOL,
    );
}

/// User Property may repeat anywhere, in order, even with the same name
/// (§3.1.2.11.8); Subscription Identifier may repeat in PUBLISH (§3.3.2.3.8).
#[test]
fn properties_that_may_repeat() {
    let Packet::Publish(p) = accepts(
        V5,
        &publish_v5(&[
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'2', // k=2
            0x0B, 0x07, // id 7
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1', // k=1
            0x0B, 0x03, // id 3
        ]),
    ) else {
        panic!()
    };
    let pairs: Vec<(String, String)> = p
        .properties
        .user_properties
        .iter()
        .map(|u| (u.key.as_str().to_owned(), u.value.as_str().to_owned()))
        .collect();
    assert_eq!(pairs, [("k".into(), "2".into()), ("k".into(), "1".into())]);
    let ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [7, 3]);

    let Packet::PubAck(ack) = accepts(
        V5,
        &ack_v5(
            0x40,
            0x00,
            &[0x26, 0, 1, b'a', 0, 0, 0x26, 0, 1, b'a', 0, 0],
        ),
    ) else {
        panic!()
    };
    assert_eq!(ack.properties.user_properties.len(), 2);
}

/// Values outside their range (§3.1.2.11, §3.2.2.3, §3.3.2.3, §3.8.2.1): the
/// offset is the value, right after the identifier.
#[test]
fn invalid_property_values() {
    let cases: &[(&[u8], PropertyId)] = &[
        (&[0x21, 0x00, 0x00], PropertyId::ReceiveMaximum),
        (
            &[0x27, 0x00, 0x00, 0x00, 0x00],
            PropertyId::MaximumPacketSize,
        ),
        (&[0x17, 0x02], PropertyId::RequestProblemInformation),
        (&[0x19, 0x02], PropertyId::RequestResponseInformation),
    ];
    for &(props, id) in cases {
        // Identifier at 13, value at 14.
        rejects(
            V5,
            &connect_v5(props),
            K::InvalidPropertyValue(id),
            14,
            PROTOCOL,
        );
    }
    // [MQTT-3.3.2-8]: Topic Alias 0. Identifier at 6, value at 7.
    rejects(
        V5,
        &publish_v5(&[0x23, 0x00, 0x00]),
        K::InvalidPropertyValue(PropertyId::TopicAlias),
        7,
        PROTOCOL,
    );
    // Payload Format Indicator 2.
    rejects(
        V5,
        &publish_v5(&[0x01, 0x02]),
        K::InvalidPropertyValue(PropertyId::PayloadFormatIndicator),
        7,
        PROTOCOL,
    );
    // Subscription Identifier 0, in PUBLISH and in SUBSCRIBE (value at 6).
    rejects(
        V5,
        &publish_v5(&[0x0B, 0x00]),
        K::InvalidPropertyValue(PropertyId::SubscriptionIdentifier),
        7,
        PROTOCOL,
    );
    rejects(
        V5,
        &[
            0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'x', 0x00,
        ],
        K::InvalidPropertyValue(PropertyId::SubscriptionIdentifier),
        6,
        PROTOCOL,
    );
    // Retain Available 2 in CONNACK: props at 4, id at 5, value at 6.
    rejects(
        V5,
        &[0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02],
        K::InvalidPropertyValue(PropertyId::RetainAvailable),
        6,
        PROTOCOL,
    );
}

/// A property value that runs past the Property Length is a short field.
#[test]
fn property_value_past_the_property_length() {
    // Property Length 2 but Message Expiry Interval needs 1 + 4: value at 7,
    // the block ends at 8.
    rejects(
        V5,
        &[
            0x30, 0x09, 0x00, 0x01, b't', 0x02, 0x02, 0x00, 0x00, 0x00, 0x00,
        ],
        K::UnexpectedEnd,
        7,
        MALFORMED,
    );
    // Property Length larger than the rest of the packet: after the length at 6.
    rejects(
        V5,
        &[0x30, 0x04, 0x00, 0x01, b't', 0x05],
        K::UnexpectedEnd,
        6,
        MALFORMED,
    );
}

// ============================================================ reason codes

/// [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1]: only the
/// codes Table 2-6 lists for the packet. The offset is the reason code (byte 4).
#[test]
fn undefined_reason_codes_for_the_ack_type() {
    let cases: &[(u8, u8)] = &[
        (0x40, 0x92), // Packet Identifier not found is PUBREL/PUBCOMP's
        (0x40, 0x04), // Disconnect with Will is DISCONNECT's
        (0x40, 0x01), // Granted QoS 1 is SUBACK's
        (0x40, 0x81), // Malformed Packet is CONNACK/DISCONNECT's
        (0x50, 0x92),
        (0x50, 0x11),
        (0x62, 0x80), // PUBREL has only 0x00 and 0x92
        (0x62, 0x10),
        (0x70, 0x80),
        (0x70, 0x87),
        (0x40, 0x03), // no code at all
        (0x40, 0xFF),
    ];
    for &(first, code) in cases {
        // Short form with the reason only (Remaining Length 3).
        rejects(
            V5,
            &[first, 0x03, 0x00, 0x01, code],
            K::InvalidReasonCode(code),
            4,
            PROTOCOL,
        );
        // And with a Property Length.
        rejects(
            V5,
            &ack_v5(first, code, &[]),
            K::InvalidReasonCode(code),
            4,
            PROTOCOL,
        );
    }
}

/// [MQTT-3.9.3-2] [MQTT-3.11.3-2] [MQTT-3.14.2-1] [MQTT-3.15.2-1].
#[test]
fn undefined_reason_codes_for_other_types() {
    // SUBACK v3.1.1: only 0, 1, 2, 0x80; codes at byte 4.
    rejects(
        V311,
        &[0x90, 0x04, 0x00, 0x01, 0x01, 0x03],
        K::InvalidReasonCode(3),
        5,
        PROTOCOL,
    );
    rejects(
        V311,
        &[0x90, 0x03, 0x00, 0x01, 0x87],
        K::InvalidReasonCode(0x87),
        4,
        PROTOCOL,
    );
    // SUBACK v5: 0x11 is UNSUBACK's; props at 4, codes at 5.
    rejects(
        V5,
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x11],
        K::InvalidReasonCode(0x11),
        5,
        PROTOCOL,
    );
    // UNSUBACK v5: 0x01 is SUBACK's.
    rejects(
        V5,
        &[0xB0, 0x05, 0x00, 0x01, 0x00, 0x00, 0x01],
        K::InvalidReasonCode(0x01),
        6,
        PROTOCOL,
    );
    // DISCONNECT v5: 0x18 is AUTH's, 0x84 is CONNACK's; code at byte 2.
    rejects(
        V5,
        &[0xE0, 0x01, 0x18],
        K::InvalidReasonCode(0x18),
        2,
        PROTOCOL,
    );
    rejects(
        V5,
        &[0xE0, 0x01, 0x84],
        K::InvalidReasonCode(0x84),
        2,
        PROTOCOL,
    );
    // AUTH: 0x87 is not an authenticate code.
    rejects(
        V5,
        &[0xF0, 0x02, 0x87, 0x00],
        K::InvalidReasonCode(0x87),
        2,
        PROTOCOL,
    );
}

// ============================================================ SUBSCRIBE / UNSUBSCRIBE

/// [MQTT-3.8.3-2] (5.0) / [MQTT-3.8.3-3] (3.1.1): at least one filter.
/// The offset is the end of the packet, where a filter should start.
#[test]
fn empty_subscribe() {
    for version in [V31, V311] {
        rejects(
            version,
            &[0x82, 0x02, 0x00, 0x01],
            K::NoTopicFilters,
            4,
            PROTOCOL,
        );
    }
    rejects(
        V5,
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        K::NoTopicFilters,
        5,
        PROTOCOL,
    );
}

/// [MQTT-3.10.3-2]: at least one filter.
#[test]
fn empty_unsubscribe_mqtt_3_10_3_2() {
    for version in [V31, V311] {
        rejects(
            version,
            &[0xA2, 0x02, 0x00, 0x01],
            K::NoTopicFilters,
            4,
            PROTOCOL,
        );
    }
    rejects(
        V5,
        &[0xA2, 0x03, 0x00, 0x01, 0x00],
        K::NoTopicFilters,
        5,
        PROTOCOL,
    );
}

/// [MQTT-3.8.3-5] (5.0): bits 6 and 7 of the options are reserved; in 3.1.1
/// bits 2-7 are [MQTT-3.8.3-4]. The offset is the options byte.
#[test]
fn subscription_options_reserved_bits() {
    // v5: id 2-3, props 4, filter 5-7, options at 8.
    for byte in [0x40, 0x80, 0xC1] {
        rejects(
            V5,
            &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'x', byte],
            K::SubscriptionOptionsReserved,
            8,
            MALFORMED,
        );
    }
    // v3: filter 4-6, options at 7. No Local is an MQTT 5 option.
    for version in [V31, V311] {
        for byte in [0x04, 0x08, 0x10, 0x80] {
            rejects(
                version,
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'x', byte],
                K::SubscriptionOptionsReserved,
                7,
                MALFORMED,
            );
        }
    }
}

/// §3.8.3.1: Retain Handling 3 and Maximum QoS 3 are protocol errors.
#[test]
fn subscription_retain_handling_3_and_qos_3() {
    rejects(
        V5,
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'x', 0x30],
        K::InvalidRetainHandling,
        8,
        PROTOCOL,
    );
    rejects(
        V5,
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'x', 0x03],
        K::InvalidRequestedQos,
        8,
        PROTOCOL,
    );
    // The second filter's options byte: first pair at 4-7, second at 8-11.
    rejects(
        V311,
        &[
            0x82, 0x0A, 0x00, 0x01, 0x00, 0x01, b'x', 0x01, 0x00, 0x01, b'y', 0x03,
        ],
        K::InvalidRequestedQos,
        11,
        PROTOCOL,
    );
}

/// A filter without its options byte.
#[test]
fn subscribe_filter_without_options() {
    rejects(
        V311,
        &[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'x'],
        K::UnexpectedEnd,
        7,
        MALFORMED,
    );
}

/// A SUBSCRIBE with one filter and options byte: in 3.x the filter text
/// starts at byte 6, in MQTT 5 (after the empty property block) at byte 7.
fn subscribe_one(version: ProtocolVersion, filter: &[u8], options: u8) -> Vec<u8> {
    let v5 = version == V5;
    let mut body = vec![0x00, 0x01];
    if v5 {
        body.push(0x00);
    }
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter);
    body.push(options);
    let mut wire = vec![0x82, body.len() as u8];
    wire.extend_from_slice(&body);
    wire
}

/// An UNSUBSCRIBE with one filter, which starts where it does in
/// [`subscribe_one`].
fn unsubscribe_one(version: ProtocolVersion, filter: &[u8]) -> Vec<u8> {
    let mut wire = subscribe_one(version, filter, 0);
    wire.pop();
    wire[0] = 0xA2;
    wire[1] -= 1;
    wire
}

/// Filters that break the topic filter rules, in every version: 3.1.1
/// [MQTT-4.7.1-2] [MQTT-4.7.1-3], 5.0 [MQTT-4.7.1-1] [MQTT-4.7.1-2], both
/// [MQTT-4.7.3-1]. The filter is not correctly formed, so the packet is
/// malformed (0x81); SUBACK 0x8F is for well-formed filters a server refuses.
const BAD_FILTERS: &[(&[u8], TopicError)] = &[
    (b"a/#/b", TopicError::MultiLevelWildcardNotLast),
    (b"#/", TopicError::MultiLevelWildcardNotLast),
    (b"a#", TopicError::MultiLevelWildcardNotAlone),
    (b"a/b#", TopicError::MultiLevelWildcardNotAlone),
    (b"a+/b", TopicError::SingleLevelWildcardNotAlone),
    (b"a/+b", TopicError::SingleLevelWildcardNotAlone),
    (b"", TopicError::Empty),
];

/// MQTT 5 shared subscriptions that break [MQTT-4.8.2-1] [MQTT-4.8.2-2].
const BAD_SHARED_FILTERS: &[(&[u8], TopicError)] = &[
    (b"$share//a", TopicError::EmptyShareName),
    (b"$share/", TopicError::EmptyShareName),
    (b"$share/g", TopicError::MissingSharedFilter),
    (b"$share/g/", TopicError::MissingSharedFilter),
    (b"$share/a+b/x", TopicError::WildcardInShareName),
    (b"$share/a#/x", TopicError::WildcardInShareName),
    (b"$share/g/a/#/b", TopicError::MultiLevelWildcardNotLast),
    (b"$share/g/a+", TopicError::SingleLevelWildcardNotAlone),
];

#[test]
fn subscribe_filter_breaking_the_topic_filter_rules_mqtt_4_7_1() {
    for &(filter, error) in BAD_FILTERS {
        for version in [V31, V311] {
            let e = rejects(
                version,
                &subscribe_one(version, filter, 0),
                K::InvalidTopicFilter(error),
                6,
                MALFORMED,
            );
            assert!(e.to_string().contains("[MQTT-4.7."), "{e}");
        }
        rejects(
            V5,
            &subscribe_one(V5, filter, 0),
            K::InvalidTopicFilter(error),
            7,
            MALFORMED,
        );
    }
    // The second filter is the bad one: reported where its text starts.
    rejects(
        V311,
        &[
            0x82, 0x0C, 0x00, 0x01, 0x00, 0x01, b'x', 0x01, 0x00, 0x03, b'a', b'b', b'#', 0x01,
        ],
        K::InvalidTopicFilter(TopicError::MultiLevelWildcardNotAlone),
        10,
        MALFORMED,
    );
    // Wildcards where they may stand are fine.
    for filter in [
        &b"#"[..],
        b"+",
        b"a/+/b/#",
        b"+/+",
        b"/",
        b"a//b",
        b"$SYS/#",
    ] {
        for version in ProtocolVersion::ALL {
            accepts(version, &subscribe_one(version, filter, 0));
            accepts(version, &unsubscribe_one(version, filter));
        }
    }
}

#[test]
fn unsubscribe_filter_breaking_the_topic_filter_rules_mqtt_4_7_1() {
    for &(filter, error) in BAD_FILTERS {
        for version in [V31, V311] {
            rejects(
                version,
                &unsubscribe_one(version, filter),
                K::InvalidTopicFilter(error),
                6,
                MALFORMED,
            );
        }
        rejects(
            V5,
            &unsubscribe_one(V5, filter),
            K::InvalidTopicFilter(error),
            7,
            MALFORMED,
        );
    }
}

/// [MQTT-4.8.2-1] [MQTT-4.8.2-2]: in MQTT 5 a filter that starts with
/// `$share/` is a shared subscription and must be well formed, in SUBSCRIBE
/// and UNSUBSCRIBE. MQTT 3.x has no shared subscriptions: there it is a plain
/// filter, checked as one.
#[test]
fn shared_subscription_syntax_mqtt_4_8_2_1_and_4_8_2_2() {
    for &(filter, error) in BAD_SHARED_FILTERS {
        let e = rejects(
            V5,
            &subscribe_one(V5, filter, 0),
            K::InvalidTopicFilter(error),
            7,
            MALFORMED,
        );
        assert!(e.to_string().contains("[MQTT-4."), "{e}");
        rejects(
            V5,
            &unsubscribe_one(V5, filter),
            K::InvalidTopicFilter(error),
            7,
            MALFORMED,
        );
    }
    for filter in [&b"$share//a"[..], b"$share/g", b"$share/"] {
        accepts(V311, &subscribe_one(V311, filter, 0));
        accepts(V311, &unsubscribe_one(V311, filter));
    }
    match accepts(V5, &subscribe_one(V5, b"$share/g/a/+", 1)) {
        Packet::Subscribe(s) => assert_eq!(s.filters[0].filter, "$share/g/a/+"),
        other => panic!("{other:?}"),
    }
}

/// [MQTT-3.8.3-4] (5.0): No Local on a shared subscription is a protocol
/// error, reported at the options byte.
#[test]
fn no_local_on_a_shared_subscription_mqtt_3_8_3_4() {
    let filter = b"$share/g/t";
    rejects(
        V5,
        &subscribe_one(V5, filter, 0x04),
        K::NoLocalOnSharedSubscription,
        7 + filter.len(),
        PROTOCOL,
    );
    // No Local on a plain filter is fine.
    accepts(V5, &subscribe_one(V5, b"t", 0x04));
}

/// A SUBACK carries one reason code per filter of the SUBSCRIBE, which has at
/// least one: 3.1.1 [MQTT-3.8.4-5], 5.0 [MQTT-3.8.4-6] [MQTT-3.9.3-2]. An MQTT 5
/// UNSUBACK likewise [MQTT-3.11.3-2]; an MQTT 3.x UNSUBACK has none.
#[test]
fn suback_and_unsuback_without_reason_codes() {
    for version in [V31, V311] {
        let e = rejects(
            version,
            &[0x90, 0x02, 0x00, 0x01],
            K::NoReasonCodes,
            4,
            PROTOCOL,
        );
        assert!(e.to_string().contains("[MQTT-3.8.4-5]"), "{e}");
        accepts(version, &[0xB0, 0x02, 0x00, 0x01]);
    }
    let e = rejects(
        V5,
        &[0x90, 0x03, 0x00, 0x01, 0x00],
        K::NoReasonCodes,
        5,
        PROTOCOL,
    );
    assert!(e.to_string().contains("[MQTT-3.9.3-2]"), "{e}");
    let e = rejects(
        V5,
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        K::NoReasonCodes,
        5,
        PROTOCOL,
    );
    assert!(e.to_string().contains("[MQTT-3.11.3-2]"), "{e}");
    // With properties and still no code.
    rejects(
        V5,
        &[0x90, 0x07, 0x00, 0x01, 0x04, 0x1F, 0x00, 0x01, b'r'],
        K::NoReasonCodes,
        9,
        PROTOCOL,
    );
}

#[test]
fn encoder_refuses_suback_and_unsuback_without_reason_codes() {
    for version in ProtocolVersion::ALL {
        refuses(
            SubAck {
                packet_id: pid(1),
                properties: Default::default(),
                reason_codes: Vec::new(),
            },
            version,
            EncodeError::NoReasonCodes,
        );
    }
    refuses(UnsubAck::v3(pid(1)), V5, EncodeError::NoReasonCodes);
}

// ============================================================ Remaining Length vs content

/// A Remaining Length too short for the fields: the field that runs out is
/// reported where it starts.
#[test]
fn remaining_length_shorter_than_the_content() {
    for version in ProtocolVersion::ALL {
        // PUBACK with one byte of packet identifier.
        rejects(version, &[0x40, 0x01, 0x00], K::UnexpectedEnd, 2, MALFORMED);
        // PUBLISH whose topic says 5 bytes but 1 follows: data at 4.
        rejects(
            version,
            &[0x30, 0x03, 0x00, 0x05, b'a'],
            K::UnexpectedEnd,
            4,
            MALFORMED,
        );
        // PUBLISH QoS 1 with no room for the identifier: id at 5.
        rejects(
            version,
            &[0x32, 0x03, 0x00, 0x01, b't'],
            K::UnexpectedEnd,
            5,
            MALFORMED,
        );
    }
    // CONNECT whose flags say a user name follows, but none does: at 14.
    rejects(
        V311,
        &connect_v311(0x82, &[]),
        K::UnexpectedEnd,
        14,
        MALFORMED,
    );
    // CONNACK v5 without its Property Length: at 4.
    rejects(
        V5,
        &[0x20, 0x02, 0x00, 0x00],
        K::UnexpectedEnd,
        4,
        MALFORMED,
    );
}

/// Bytes left over after the last field are malformed; the offset is the
/// first extra byte.
#[test]
fn remaining_length_longer_than_the_content() {
    for version in ProtocolVersion::ALL {
        rejects(
            version,
            &[0xC0, 0x01, 0x00],
            K::TrailingBytes { count: 1 },
            2,
            MALFORMED,
        );
        rejects(
            version,
            &[0xD0, 0x02, 0x00, 0x00],
            K::TrailingBytes { count: 2 },
            2,
            MALFORMED,
        );
    }
    for version in [V31, V311] {
        rejects(
            version,
            &[0x40, 0x03, 0x00, 0x01, 0xFF],
            K::TrailingBytes { count: 1 },
            4,
            MALFORMED,
        );
        rejects(
            version,
            &[0xB0, 0x03, 0x00, 0x01, 0x00],
            K::TrailingBytes { count: 1 },
            4,
            MALFORMED,
        );
        rejects(
            version,
            &[0xE0, 0x01, 0x00],
            K::TrailingBytes { count: 1 },
            2,
            MALFORMED,
        );
        rejects(
            version,
            &[0x20, 0x03, 0x00, 0x00, 0x00],
            K::TrailingBytes { count: 1 },
            4,
            MALFORMED,
        );
    }
    // CONNECT with a byte after the client id.
    rejects(
        V311,
        &connect_v311(0x02, &[0x00]),
        K::TrailingBytes { count: 1 },
        14,
        MALFORMED,
    );
    // AUTH with properties and one extra byte.
    rejects(
        V5,
        &[0xF0, 0x07, 0x18, 0x04, 0x15, 0x00, 0x01, b'm', 0xEE],
        K::TrailingBytes { count: 1 },
        8,
        MALFORMED,
    );
}

// ============================================================ packet size

/// A packet over the receiver's maximum is refused from its fixed header
/// alone, before its body arrives (MQTT 5.0 §3.1.2.11.4, §3.2.2.3.6).
#[test]
fn packet_too_large_refused_from_the_fixed_header() {
    // PUBLISH with Remaining Length 200 (C8 01): 203 bytes with its header.
    let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
    let err = Packet::decode(&mut buf, V5, 100).unwrap_err();
    assert_eq!(
        err.kind(),
        K::PacketTooLarge {
            size: 203,
            max: 100
        }
    );
    assert_eq!(err.offset(), 1);
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    assert_eq!(err.packet_type(), Some(PacketType::Publish));
    // At the limit it is not refused, only incomplete; one over is refused.
    let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
    assert_eq!(Packet::decode(&mut buf, V5, 203), Ok(None));
    assert_eq!(buf.len(), 3, "need-more consumes nothing");
    assert_eq!(
        check_frame(&[0x30, 0xC8, 0x01], V5, 202)
            .unwrap_err()
            .kind(),
        K::PacketTooLarge {
            size: 203,
            max: 202
        }
    );
    // Before the Remaining Length is complete: 0xFF 0xFF promises at least
    // 2^14 + 0x3FFF + 4 bytes.
    let err = check_frame(&[0x30, 0xFF, 0xFF], V5, 1000).unwrap_err();
    assert_eq!(
        err.kind(),
        K::PacketTooLarge {
            size: 4 + 0x3FFF + (1 << 14),
            max: 1000
        }
    );
    // A whole packet over the limit too.
    rejects_with_max(&[0xC0, 0x00], 1, K::PacketTooLarge { size: 2, max: 1 });
}

fn rejects_with_max(wire: &[u8], max: u32, kind: K) {
    let mut buf = BytesMut::from(wire);
    let err = Packet::decode(&mut buf, V5, max).unwrap_err();
    assert_eq!(err.kind(), kind);
    assert_eq!(err.offset(), 1);
}

/// Errors from `check_frame` come before any body is needed: a bad first byte
/// is an error with one byte, not "need more".
#[test]
fn header_errors_need_no_body() {
    let mut buf = BytesMut::from(&[0x00][..]);
    assert_eq!(
        Packet::decode(&mut buf, V5, 100).unwrap_err().kind(),
        K::ReservedPacketType(0)
    );
    let mut buf = BytesMut::from(&[0x81][..]);
    assert_eq!(
        Packet::decode(&mut buf, V5, 100).unwrap_err().kind(),
        K::InvalidHeaderFlags { flags: 1 }
    );
}

// ============================================================ AUTH

#[test]
fn auth_only_in_mqtt_5() {
    rejects(V311, &[0xF0, 0x00], K::ReservedPacketType(15), 0, MALFORMED);
    rejects(
        V5,
        &[0xF0, 0x06, 0x18, 0x04, 0x16, 0x00, 0x01, 0x01],
        K::AuthDataWithoutMethod,
        3,
        PROTOCOL,
    );
}

// ============================================================ encoder refusals

/// Encodes into a buffer holding one sentinel byte; on error insists nothing
/// was written (into either a `BytesMut` or a `Vec`).
#[track_caller]
fn refuses(packet: impl Into<Packet>, version: ProtocolVersion, expected: EncodeError) {
    let packet = packet.into();
    let mut buf = BytesMut::from(&[0xAA][..]);
    assert_eq!(
        packet.encode(version, &mut buf),
        Err(expected),
        "{packet:?}"
    );
    assert_eq!(&buf[..], [0xAA], "bytes written on error");
    let mut vec = vec![0xAA];
    assert_eq!(packet.encode(version, &mut vec), Err(expected));
    assert_eq!(vec, [0xAA]);
}

fn publish(qos: QoS, id: Option<u16>) -> Publish {
    Publish {
        qos,
        topic: s("t"),
        packet_id: id.map(pid),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    }
}

#[test]
fn encoder_refuses_properties_in_mqtt_3() {
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties.message_expiry_interval = Some(1);
    let not_in = |version| EncodeError::NotInVersion {
        what: "MQTT 5 properties",
        version,
    };
    refuses(p.clone(), V311, not_in(V311));
    refuses(p, V31, not_in(V31));
    let ack = PubAck {
        packet_id: pid(1),
        reason_code: ReasonCode::Success,
        properties: AckProperties {
            reason_string: Some(s("r")),
            ..AckProperties::default()
        },
    };
    refuses(ack, V311, not_in(V311));
    let connect = Connect {
        protocol: V311,
        properties: ConnectProperties {
            session_expiry_interval: Some(1),
            ..ConnectProperties::default()
        },
        ..Connect::default()
    };
    refuses(connect, V311, not_in(V311));
    let connect = Connect {
        protocol: V311,
        will: Some(Will {
            topic: s("w"),
            properties: tern_codec::WillProperties {
                will_delay_interval: Some(1),
                ..Default::default()
            },
            ..Will::default()
        }),
        ..Connect::default()
    };
    refuses(connect, V311, not_in(V311));
    let disconnect = Disconnect {
        properties: tern_codec::DisconnectProperties {
            user_properties: vec![UserProperty::new(s("k"), s("v"))],
            ..Default::default()
        },
        ..Disconnect::default()
    };
    refuses(disconnect, V311, not_in(V311));
}

#[test]
fn encoder_refuses_what_mqtt_3_cannot_express() {
    refuses(
        Auth::default(),
        V311,
        EncodeError::NotInVersion {
            what: "AUTH",
            version: V311,
        },
    );
    refuses(
        PubAck::with_reason(pid(1), ReasonCode::NotAuthorized),
        V311,
        EncodeError::NotInVersion {
            what: "a reason code other than success",
            version: V311,
        },
    );
    refuses(
        Disconnect::new(ReasonCode::ServerShuttingDown),
        V311,
        EncodeError::NotInVersion {
            what: "a DISCONNECT reason code",
            version: V311,
        },
    );
    refuses(
        ConnAck {
            reason_code: ReasonCode::ServerBusy,
            ..ConnAck::default()
        },
        V311,
        EncodeError::NotInVersion {
            what: "this CONNACK reason code",
            version: V311,
        },
    );
    refuses(
        ConnAck {
            session_present: true,
            ..ConnAck::default()
        },
        V31,
        EncodeError::NotInVersion {
            what: "session present",
            version: V31,
        },
    );
    refuses(
        Connect {
            protocol: V311,
            password: Some(Bytes::from_static(b"pw")),
            ..Connect::default()
        },
        V311,
        EncodeError::NotInVersion {
            what: "a password without a user name",
            version: V311,
        },
    );
    refuses(
        Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: s("a"),
                options: SubscriptionOptions {
                    retain_handling: RetainHandling::DoNotSend,
                    ..SubscriptionOptions::default()
                },
            }],
        },
        V311,
        EncodeError::NotInVersion {
            what: "MQTT 5 subscription options",
            version: V311,
        },
    );
    refuses(
        UnsubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::Success],
        },
        V311,
        EncodeError::NotInVersion {
            what: "UNSUBACK reason codes",
            version: V311,
        },
    );
}

/// [MQTT-2.2.1-2] / [MQTT-2.3.1-5]: an identifier exactly when QoS > 0.
#[test]
fn encoder_refuses_packet_id_qos_mismatch() {
    for version in ProtocolVersion::ALL {
        refuses(
            publish(QoS::AtLeastOnce, None),
            version,
            EncodeError::PacketIdMismatch,
        );
        refuses(
            publish(QoS::ExactlyOnce, None),
            version,
            EncodeError::PacketIdMismatch,
        );
        refuses(
            publish(QoS::AtMostOnce, Some(1)),
            version,
            EncodeError::PacketIdMismatch,
        );
    }
}

/// [MQTT-3.3.1-2].
#[test]
fn encoder_refuses_dup_with_qos_0() {
    let mut p = publish(QoS::AtMostOnce, None);
    p.dup = true;
    for version in ProtocolVersion::ALL {
        refuses(p.clone(), version, EncodeError::DupWithQos0);
    }
}

/// [MQTT-3.3.2-2], in a PUBLISH and in a will; empty topics.
#[test]
fn encoder_refuses_bad_topic_names() {
    for topic in ["a/+", "#", "a/#/b"] {
        let mut p = publish(QoS::AtMostOnce, None);
        p.topic = MqttString::try_from(topic).unwrap();
        refuses(p, V5, EncodeError::WildcardInTopicName);
    }
    let connect = Connect {
        protocol: V5,
        will: Some(Will {
            topic: s("w/#"),
            ..Will::default()
        }),
        ..Connect::default()
    };
    refuses(connect, V5, EncodeError::WildcardInTopicName);
    let mut p = publish(QoS::AtMostOnce, None);
    p.topic = MqttString::new();
    refuses(p.clone(), V5, EncodeError::EmptyTopic);
    refuses(p, V311, EncodeError::EmptyTopic);
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties = PublishProperties {
        response_topic: Some(s("r/+")),
        ..PublishProperties::default()
    }
    .into();
    refuses(
        p,
        V5,
        EncodeError::InvalidValue("Response Topic must not contain wildcards"),
    );
}

/// [MQTT-3.8.3-2] [MQTT-3.10.3-2].
#[test]
fn encoder_refuses_empty_subscribe_and_unsubscribe() {
    for version in ProtocolVersion::ALL {
        refuses(
            Subscribe {
                packet_id: pid(1),
                properties: Default::default(),
                filters: Vec::new(),
            },
            version,
            EncodeError::NoTopicFilters,
        );
        refuses(
            Unsubscribe {
                packet_id: pid(1),
                properties: Default::default(),
                filters: Vec::new(),
            },
            version,
            EncodeError::NoTopicFilters,
        );
    }
}

/// [MQTT-3.4.2-1] and friends: only the reason codes defined for the type.
#[test]
fn encoder_refuses_reason_codes_not_defined_for_the_type() {
    let cases: Vec<(Packet, ReasonCode)> = vec![
        (
            PubAck::with_reason(pid(1), ReasonCode::PacketIdentifierNotFound).into(),
            ReasonCode::PacketIdentifierNotFound,
        ),
        (
            PubRel::with_reason(pid(1), ReasonCode::UnspecifiedError).into(),
            ReasonCode::UnspecifiedError,
        ),
        (
            Disconnect::new(ReasonCode::GrantedQos1).into(),
            ReasonCode::GrantedQos1,
        ),
        (
            ConnAck {
                reason_code: ReasonCode::DisconnectWithWill,
                ..ConnAck::default()
            }
            .into(),
            ReasonCode::DisconnectWithWill,
        ),
        (
            SubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::GrantedQos1, ReasonCode::NoSubscriptionExisted],
            }
            .into(),
            ReasonCode::NoSubscriptionExisted,
        ),
        (
            UnsubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::GrantedQos2],
            }
            .into(),
            ReasonCode::GrantedQos2,
        ),
        (
            Auth {
                reason_code: ReasonCode::NotAuthorized,
                properties: AuthProperties::default(),
            }
            .into(),
            ReasonCode::NotAuthorized,
        ),
    ];
    for (packet, code) in cases {
        refuses(packet, V5, EncodeError::InvalidReasonCode(code));
    }
}

#[test]
fn encoder_refuses_other_invalid_packets() {
    refuses(
        ConnAck {
            session_present: true,
            reason_code: ReasonCode::NotAuthorized,
            properties: ConnAckProperties::default(),
        },
        V5,
        EncodeError::SessionPresentOnError,
    );
    refuses(
        Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_data: Some(Bytes::from_static(b"d")),
                ..AuthProperties::default()
            },
        },
        V5,
        EncodeError::AuthDataWithoutMethod,
    );
    refuses(
        ConnAck {
            properties: ConnAckProperties {
                maximum_qos: Some(QoS::ExactlyOnce),
                ..ConnAckProperties::default()
            },
            ..ConnAck::default()
        },
        V5,
        EncodeError::InvalidValue("Maximum QoS property must be 0 or 1"),
    );
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties.correlation_data = Some(Bytes::from(vec![0; 65_536]));
    refuses(p, V5, EncodeError::BinaryTooLong);
    refuses(
        Connect {
            protocol: V5,
            password: Some(Bytes::from(vec![0; 65_536])),
            ..Connect::default()
        },
        V5,
        EncodeError::BinaryTooLong,
    );
}

/// Regression: a string or binary field whose length prefix runs past the
/// data used to be parsed in nom's streaming mode. At the top level that put
/// the error at the end of the frame; inside a property block it lost the
/// position altogether (offset 0). The offset is now where the data starts.
#[test]
fn short_length_prefixed_field_reports_where_its_data_starts() {
    // PUBLISH "t", property block 26 00 05 'k': the key says 5 bytes and 1
    // follows inside the block. Key data at byte 9.
    rejects(
        V5,
        &[
            0x30, 0x09, 0x00, 0x01, b't', 0x04, 0x26, 0x00, 0x05, b'k', b'x',
        ],
        K::UnexpectedEnd,
        9,
        MALFORMED,
    );
    // Correlation Data 09 00 03 01 in a block of 4: data at byte 9.
    rejects(
        V5,
        &[
            0x30, 0x09, 0x00, 0x01, b't', 0x04, 0x09, 0x00, 0x03, 0x01, b'x',
        ],
        K::UnexpectedEnd,
        9,
        MALFORMED,
    );
    // A will payload whose length runs past the packet: length at 17, data at 19.
    rejects(
        V311,
        &connect_v311(0x06, &[0x00, 0x01, b'w', 0x00, 0x09, b'x']),
        K::UnexpectedEnd,
        19,
        MALFORMED,
    );
}

/// The will is published as a PUBLISH with the will properties, so its
/// Response Topic must not contain wildcards either [MQTT-3.3.2-14]; before
/// this check a CONNECT could carry a will that the encoder would then refuse
/// to publish. The offset is the will's Property Length.
#[test]
fn will_response_topic_with_wildcard() {
    // MQTT 5 CONNECT: will flag + clean (0x06), no properties (byte 12), empty
    // client id (13-14), will Property Length at 15: Response Topic "r/#".
    let wire = [
        0x10, 0x19, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x00,
        0x06, 0x08, 0x00, 0x03, b'r', b'/', b'#', 0x00, 0x01, b'w', 0x00, 0x00,
    ];
    let err = rejects(
        V5,
        &wire,
        K::InvalidPropertyValue(PropertyId::ResponseTopic),
        15,
        PROTOCOL,
    );
    assert_eq!(err.connect_version(), Some(V5));
    refuses(
        Connect {
            protocol: V5,
            will: Some(Will {
                topic: s("w"),
                properties: tern_codec::WillProperties {
                    response_topic: Some(s("r/+")),
                    ..Default::default()
                },
                ..Will::default()
            }),
            ..Connect::default()
        },
        V5,
        EncodeError::InvalidValue("Response Topic must not contain wildcards"),
    );
}

/// The same CONNECT with "r/x" decodes: the bytes above are well framed.
#[test]
fn will_response_topic_without_wildcard_is_fine() {
    let wire = [
        0x10, 0x19, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x00,
        0x06, 0x08, 0x00, 0x03, b'r', b'/', b'x', 0x00, 0x01, b'w', 0x00, 0x00,
    ];
    let Packet::Connect(c) = accepts(V5, &wire) else {
        panic!()
    };
    let will = c.will.expect("a will");
    assert_eq!(will.properties.response_topic, Some(s("r/x")));
}
