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
