//! The monitoring listener's request parser (`--metrics`) on arbitrary
//! bytes, as a peer on that port can send them: finding the end of the
//! head, then reading its request line. Neither panics; a head is found
//! only at its first blank line; a request is accepted only as GET or HEAD
//! of an origin-form path (no query, no space, no control character), and
//! every refusal is 400 or 405.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Only under cargo-fuzz's `--cfg fuzzing` (clippy builds without).
    #[cfg(fuzzing)]
    check(data);
    #[cfg(not(fuzzing))]
    let _ = data;
});

#[cfg(fuzzing)]
fn check(data: &[u8]) {
    use tern_broker::server::fuzzing::{MAX_HEAD, find_head_end, parse_request_line};

    // The listener reads at most MAX_HEAD bytes before giving up (431).
    let buf = &data[..data.len().min(MAX_HEAD)];
    let Some(end) = find_head_end(buf) else {
        assert!(!buf.windows(4).any(|w| w == b"\r\n\r\n"));
        return;
    };
    assert!(end >= 4 && end <= buf.len());
    assert_eq!(&buf[end - 4..end], b"\r\n\r\n");
    assert!(!buf[..end - 1].windows(4).any(|w| w == b"\r\n\r\n"));
    let head = &buf[..end];
    match parse_request_line(head) {
        Ok((method, path)) => {
            assert!(method == "GET" || method == "HEAD", "{method:?}");
            assert!(path.starts_with('/'), "{path:?}");
            assert!(!path.contains(['?', ' ']), "{path:?}");
            assert!(!path.bytes().any(|b| b.is_ascii_control()), "{path:?}");
            let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
            let want = format!("{method} {path}");
            assert!(line.starts_with(want.as_bytes()), "{line:?}");
        }
        Err(status) => assert!(status == 400 || status == 405, "{status}"),
    }
}
