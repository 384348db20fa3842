//! Property tests: every valid packet of every version survives encode → decode.

use arbitrary::Unstructured;
use bytes::BytesMut;
use proptest::prelude::*;
use tern_codec::{MAX_PACKET_SIZE, Packet, ProtocolVersion, arbitrary_packet};

fn version_strategy() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// decode(encode(p)) == p and encoded_len() == bytes written, for every
    /// packet type of every version.
    #[test]
    fn encode_decode_round_trip(
        version in version_strategy(),
        seed in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut u = Unstructured::new(&seed);
        let packet = arbitrary_packet(&mut u, version).unwrap();
        let mut wire = BytesMut::new();
        packet.encode(version, &mut wire).unwrap();
        prop_assert_eq!(wire.len(), packet.encoded_len(version));
        let decoded = Packet::decode(&mut wire, version, MAX_PACKET_SIZE).unwrap();
        prop_assert_eq!(decoded.as_ref(), Some(&packet));
        prop_assert!(wire.is_empty());
    }
}

/// Found by the `roundtrip` fuzz target (kept as a seed in its corpus): a
/// generated plain filter whose first level is `$share` ("$share/#") reads
/// as a shared subscription in MQTT 5, with "#" as its share name, which
/// the decoder refuses. The generator must only make filters the decoder
/// accepts.
#[test]
fn a_generated_plain_filter_never_reads_as_a_bad_shared_one() {
    let seed: &[u8] =
        include_bytes!("../../../fuzz/corpus/roundtrip/seed-share-level-as-plain-filter-v5");
    let mut u = Unstructured::new(seed);
    let version = u.arbitrary::<ProtocolVersion>().unwrap();
    let packet = arbitrary_packet(&mut u, version).unwrap();
    let mut wire = BytesMut::new();
    packet.encode(version, &mut wire).unwrap();
    let decoded = Packet::decode(&mut wire, version, MAX_PACKET_SIZE).unwrap();
    assert_eq!(decoded, Some(packet));
}

/// One property of a generated PUBLISH property block: a User Property
/// (name, value), or a Subscription Identifier (1..=127, one byte).
#[derive(Debug, Clone)]
enum Prop {
    User(String, String),
    SubscriptionId(u8),
}

/// Appends `n` as a Variable Byte Integer.
fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn prop_strategy() -> impl Strategy<Value = Prop> {
    prop_oneof![
        3 => ("[a-z]{0,3}", "[a-zé]{0,3}").prop_map(|(k, v)| Prop::User(k, v)),
        1 => (1u8..=127).prop_map(Prop::SubscriptionId),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// User Properties held as one buffer (`UserProperties`) keep every
    /// property, in order [MQTT-3.3.2-18], however they interleave with
    /// other properties in the received block (a run of them shares the
    /// packet, a property after another one is appended to an owned
    /// buffer), and re-encode to the same list.
    #[test]
    fn user_properties_keep_order_however_they_interleave(
        props in proptest::collection::vec(prop_strategy(), 0..40),
    ) {
        use tern_codec::{MqttString, UserProperty};
        let mut block = Vec::new();
        let mut users = Vec::new();
        let mut ids = Vec::new();
        for p in &props {
            match p {
                Prop::User(k, v) => {
                    block.push(0x26);
                    for s in [k, v] {
                        block.extend_from_slice(&(s.len() as u16).to_be_bytes());
                        block.extend_from_slice(s.as_bytes());
                    }
                    users.push(UserProperty::new(
                        MqttString::try_from(k.as_str()).unwrap(),
                        MqttString::try_from(v.as_str()).unwrap(),
                    ));
                }
                Prop::SubscriptionId(id) => {
                    block.extend_from_slice(&[0x0B, *id]);
                    ids.push(u32::from(*id));
                }
            }
        }
        // PUBLISH QoS 0, topic "t", the block, payload "x".
        let mut body = vec![0x00, 0x01, b't'];
        varint(&mut body, block.len());
        body.extend_from_slice(&block);
        body.push(b'x');
        let mut head = vec![0x30];
        varint(&mut head, body.len());
        let mut wire = BytesMut::from(&head[..]);
        wire.extend_from_slice(&body);
        let Some(Packet::Publish(p)) =
            Packet::decode(&mut wire, ProtocolVersion::V5, MAX_PACKET_SIZE).unwrap()
        else {
            panic!("not a PUBLISH");
        };
        prop_assert_eq!(&p.properties.user_properties, &users);
        prop_assert_eq!(p.properties.user_properties.len(), users.len());
        let got_ids: Vec<u32> =
            p.properties.subscription_identifiers.iter().map(|i| i.get()).collect();
        prop_assert_eq!(got_ids, ids);
        // Re-encoded (user properties together now) and decoded: the same.
        let packet = Packet::Publish(p);
        let mut again = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut again).unwrap();
        prop_assert_eq!(again.len(), packet.encoded_len(ProtocolVersion::V5));
        let decoded = Packet::decode(&mut again, ProtocolVersion::V5, MAX_PACKET_SIZE).unwrap();
        prop_assert_eq!(decoded.as_ref(), Some(&packet));
    }
}
