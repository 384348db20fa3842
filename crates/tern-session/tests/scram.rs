//! SCRAM-SHA-256's invariants under proptest: a client-final message
//! changed in any one byte is refused by the server, and a server-final
//! changed in any one byte is refused by the client (RFC 5802 §5: each
//! side's proof covers the whole exchange). The key derivation is run once.

use proptest::prelude::*;
use std::sync::OnceLock;
use tern_session::scram::{ClientFirst, ScramClient, ScramCredential, ScramServer};

struct Exchange {
    server: ScramServer,
    client: ScramClient,
    client_final: Vec<u8>,
    server_final: Vec<u8>,
}

fn exchange() -> &'static Exchange {
    static EXCHANGE: OnceLock<Exchange> = OnceLock::new();
    EXCHANGE.get_or_init(|| {
        let credential = ScramCredential::derive(b"pencil", b"NaCl-NaCl", 4096);
        let mut client = ScramClient::new("user", b"pencil", "fyko+d2lbbFgONRv9qkxdawL").unwrap();
        let first = ClientFirst::parse(&client.client_first()).unwrap();
        let (server, server_first) =
            ScramServer::start(&first, credential, "3rfcNHYJY1ZVvWVs7j").unwrap();
        let client_final = client.server_first(&server_first).unwrap();
        let server_final = server.finish(&client_final).unwrap();
        client.server_final(&server_final).unwrap();
        Exchange {
            server,
            client,
            client_final,
            server_final,
        }
    })
}

proptest! {
    #[test]
    fn a_client_final_changed_in_one_byte_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let e = exchange();
        let mut forged = e.client_final.clone();
        let i = at.index(forged.len());
        forged[i] ^= flip;
        prop_assert!(e.server.finish(&forged).is_err(), "{:?}", String::from_utf8_lossy(&forged));
    }

    #[test]
    fn a_server_final_changed_in_one_byte_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let e = exchange();
        let mut forged = e.server_final.clone();
        let i = at.index(forged.len());
        forged[i] ^= flip;
        prop_assert!(e.client.server_final(&forged).is_err(), "{:?}", String::from_utf8_lossy(&forged));
    }

    #[test]
    fn a_truncated_or_extended_client_final_is_refused(cut in 0usize..200, tail in "[a-z=,]{1,8}") {
        let e = exchange();
        let cut = cut.min(e.client_final.len() - 1);
        prop_assert!(e.server.finish(&e.client_final[..cut]).is_err());
        let mut longer = e.client_final.clone();
        longer.extend_from_slice(tail.as_bytes());
        prop_assert!(e.server.finish(&longer).is_err());
    }
}
