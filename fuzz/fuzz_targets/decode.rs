//! Arbitrary bytes into the decoder, for each protocol version: it never
//! panics, never consumes bytes on "need more", and whatever it decodes
//! re-encodes to bytes that decode to an equal packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_codec::{Packet, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let version = ProtocolVersion::ALL[usize::from(selector % 3)];
    let max = 1 + u32::from(selector) * 64;
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match Packet::decode(&mut buf, version, max) {
            Ok(Some(packet)) => {
                // A CONNECT sets its own version for what it encodes.
                let v = match &packet {
                    Packet::Connect(c) => c.protocol,
                    _ => version,
                };
                let mut wire = BytesMut::new();
                packet
                    .encode(v, &mut wire)
                    .expect("a decoded packet re-encodes");
                assert_eq!(wire.len(), packet.encoded_len(v));
                let again = Packet::decode(&mut wire, v, tern_codec::MAX_PACKET_SIZE)
                    .expect("re-encoded bytes decode")
                    .expect("re-encoded bytes are a whole packet");
                assert_eq!(again, packet);
                assert!(buf.len() < before);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "need-more consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
});
