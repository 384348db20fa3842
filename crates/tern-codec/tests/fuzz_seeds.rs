//! The checked-in fuzz seeds are real packets: every `seed-*` of the decode
//! corpus decodes completely, with no error and no byte left over, under the
//! same reading the `decode` target gives it (first byte picks the version
//! and the size limit).

use bytes::BytesMut;
use std::path::Path;
use tern_codec::{Packet, ProtocolVersion};

#[test]
fn decode_seeds_are_whole_valid_packets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        // Not in a workspace checkout (for example a packaged crate).
        eprintln!("no fuzz corpus at {}", dir.display());
        return;
    };
    let mut seeds = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("seed-") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let (&selector, bytes) = data.split_first().expect("non-empty seed");
        let version = ProtocolVersion::ALL[usize::from(selector % 3)];
        let max = 1 + u32::from(selector) * 64;
        let mut buf = BytesMut::from(bytes);
        let mut packets = 0;
        while !buf.is_empty() {
            Packet::decode(&mut buf, version, max)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: incomplete"));
            packets += 1;
        }
        assert!(packets > 0, "{name}");
        seeds += 1;
    }
    assert!(seeds >= 5, "only {seeds} seeds in {}", dir.display());
}
