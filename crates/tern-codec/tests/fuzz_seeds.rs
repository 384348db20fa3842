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
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // Outside a workspace checkout (a packaged crate) there is no
        // corpus; only an explicit TERN_NO_FUZZ_CORPUS=1 lets that pass.
        Err(e) if std::env::var_os("TERN_NO_FUZZ_CORPUS").is_some_and(|v| v == "1") => {
            eprintln!(
                "TERN_NO_FUZZ_CORPUS=1: no fuzz corpus at {}: {e}",
                dir.display()
            );
            return;
        }
        Err(e) => panic!(
            "no fuzz corpus at {}: {e}; set TERN_NO_FUZZ_CORPUS=1 if that is expected",
            dir.display()
        ),
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
