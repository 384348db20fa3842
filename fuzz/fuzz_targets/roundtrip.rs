//! An arbitrary valid packet survives encode → decode unchanged, byte-for-byte
//! sized as `encoded_len` says, in every protocol version.
#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_codec::{MAX_PACKET_SIZE, Packet, ProtocolVersion, arbitrary_packet};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(version) = u.arbitrary::<ProtocolVersion>() else {
        return;
    };
    let Ok(packet) = arbitrary_packet(&mut u, version) else {
        return;
    };
    let mut wire = BytesMut::new();
    packet
        .encode(version, &mut wire)
        .expect("arbitrary packets are valid");
    assert_eq!(wire.len(), packet.encoded_len(version));
    let decoded = Packet::decode(&mut wire, version, MAX_PACKET_SIZE).expect("decodes");
    assert_eq!(decoded, Some(packet));
    assert!(wire.is_empty());
});
