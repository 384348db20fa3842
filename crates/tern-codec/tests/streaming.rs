//! Streaming: a stream of packets fed in any chunking decodes to exactly the
//! packets that were encoded; "need more" never consumes bytes, and
//! `check_frame`'s `needed` is a true lower bound on the bytes still to come.

use arbitrary::Unstructured;
use bytes::BytesMut;
use proptest::prelude::*;
use tern_codec::{
    FrameStatus, MAX_PACKET_SIZE, Packet, ProtocolVersion, arbitrary_packet, check_frame,
};

fn version_strategy() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

/// Up to `max` valid packets and their wire bytes, back to back, with the
/// offset at which each packet ends.
fn stream(seed: &[u8], version: ProtocolVersion, max: usize) -> (Vec<Packet>, Vec<u8>, Vec<usize>) {
    let mut u = Unstructured::new(seed);
    let mut packets = Vec::new();
    let mut wire = BytesMut::new();
    let mut ends = Vec::new();
    while packets.len() < max && !u.is_empty() {
        let packet = arbitrary_packet(&mut u, version).expect("enough bytes for a packet");
        packet
            .encode(version, &mut wire)
            .expect("arbitrary packets are valid");
        ends.push(wire.len());
        packets.push(packet);
    }
    (packets, wire.to_vec(), ends)
}

/// Feeds `wire` in the given chunk sizes (cycled), decoding after each chunk.
/// Checks the streaming contract at every `Ok(None)`.
fn feed(
    wire: &[u8],
    chunks: &[usize],
    version: ProtocolVersion,
    ends: &[usize],
) -> Result<Vec<Packet>, TestCaseError> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Vec::new();
    let mut sizes = chunks.iter().cycle();
    while fed < wire.len() {
        let n = (*sizes.next().unwrap()).min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match Packet::decode(&mut buf, version, MAX_PACKET_SIZE) {
                Ok(Some(packet)) => out.push(packet),
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before, "need-more consumed bytes");
                    // Between packets at the very end nothing is in progress.
                    let Some(&end) = ends.get(out.len()) else {
                        prop_assert!(buf.is_empty());
                        break;
                    };
                    // The packet in progress ends at `end`; the bytes still
                    // missing for it are at least `needed`.
                    let missing = end - fed;
                    match check_frame(&buf, version, MAX_PACKET_SIZE) {
                        Ok(FrameStatus::Incomplete { needed }) => {
                            prop_assert!(needed >= 1);
                            prop_assert!(
                                needed <= missing,
                                "needed {} but only {} bytes are missing",
                                needed,
                                missing
                            );
                        }
                        other => prop_assert!(false, "check_frame said {:?}", other),
                    }
                    break;
                }
                Err(e) => prop_assert!(false, "valid stream refused: {}", e),
            }
        }
    }
    prop_assert!(buf.is_empty(), "{} bytes left", buf.len());
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_chunking_yields_the_same_packets(
        version in version_strategy(),
        seed in proptest::collection::vec(any::<u8>(), 64..4096),
        chunks in proptest::collection::vec(1usize..96, 1..16),
    ) {
        let (packets, wire, ends) = stream(&seed, version, 24);
        prop_assume!(!packets.is_empty());

        let whole = feed(&wire, &[wire.len()], version, &ends)?;
        prop_assert_eq!(&whole, &packets);
        let bytewise = feed(&wire, &[1], version, &ends)?;
        prop_assert_eq!(&bytewise, &packets);
        let chunked = feed(&wire, &chunks, version, &ends)?;
        prop_assert_eq!(&chunked, &packets);
    }
}

/// `Packet::decode` reads two-byte acknowledgements, PINGREQ and PINGRESP in
/// place instead of splitting a frame off the buffer. Every short input
/// whose first two bytes could start such a packet decodes as the general
/// path (`decode_exact`) decodes the same bytes, error kinds included, and
/// consumes exactly the packet.
#[test]
fn short_packets_decode_as_the_general_path_does() {
    let versions = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];
    for version in versions {
        for first in 0..=255u8 {
            for len in [0u8, 2] {
                for id in [0u16, 1, 0x1234, 0xFFFF] {
                    let mut wire = vec![first, len];
                    if len == 2 {
                        wire.extend_from_slice(&id.to_be_bytes());
                    }
                    for max in [2u32, 3, 4, MAX_PACKET_SIZE] {
                        let mut buf = BytesMut::from(&wire[..]);
                        buf.extend_from_slice(&[0xEE]); // the next packet's first byte
                        let fast = Packet::decode(&mut buf, version, max);
                        let general = if wire.len() > max as usize {
                            check_frame(&wire, version, max).map(|_| unreachable!())
                        } else {
                            Packet::decode_exact(bytes::Bytes::from(wire.clone()), version)
                        };
                        match (&fast, &general) {
                            (Ok(Some(a)), Ok(b)) => {
                                assert_eq!(a, b, "{wire:02x?} {version:?}");
                                assert_eq!(&buf[..], &[0xEE], "{wire:02x?} consumed exactly");
                            }
                            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{wire:02x?}"),
                            _ => {
                                panic!("{wire:02x?} {version:?} max {max}: {fast:?} vs {general:?}")
                            }
                        }
                    }
                }
            }
        }
    }
}
