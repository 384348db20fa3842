//! SCRAM-SHA-256's message parsers on arbitrary bytes: the server's
//! (client-first, client-final: what any client can send a broker) and
//! the client's (server-first, server-final). None panics; a client-final
//! is only accepted if it carries the proof (never, for random bytes, but
//! the known-good one built below is, which the target asserts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tern_session::scram::{ClientFirst, ScramClient, ScramCredential, ScramServer};

/// A server mid-exchange (after client-first), the client's good final
/// message, and a client holding the server's signature. Built once: the
/// key derivation is deliberately slow.
struct Fixture {
    server: ScramServer,
    good_final: Vec<u8>,
    client: ScramClient,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let credential = ScramCredential::derive(b"pencil", b"salt-salt", 4096);
        let mut client = ScramClient::new("user", b"pencil", "cnonce").unwrap();
        let first = ClientFirst::parse(&client.client_first()).unwrap();
        let (server, server_first) = ScramServer::start(&first, credential, "snonce").unwrap();
        let good_final = client.server_first(&server_first).unwrap();
        Fixture {
            server,
            good_final,
            client,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match selector % 4 {
        0 => {
            if let Ok(first) = ClientFirst::parse(bytes) {
                assert!(!first.username.is_empty());
            }
        }
        1 => {
            let accepted = f.server.finish(bytes).is_ok();
            assert_eq!(accepted, bytes == f.good_final.as_slice(), "{bytes:?}");
        }
        2 => {
            // Only under cargo-fuzz's `--cfg fuzzing` (clippy builds without).
            #[cfg(fuzzing)]
            let _ = tern_session::scram::fuzzing::server_first(bytes, "cnonce");
        }
        _ => {
            let _ = f.client.server_final(bytes);
        }
    }
});
