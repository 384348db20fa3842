//! MQTT 5 enhanced authentication in the simulation: the broker offers
//! SCRAM-SHA-256 (`SimAuth`) for every simulated client (user = client
//! identifier, password [`password`]); some MQTT 5 clients log in with it
//! (`App::connect_options`). Every nonce, the broker's and the clients',
//! comes from the seed, so a run replays exactly.

use crate::rng::Rng;
use std::sync::Arc;
use tern_broker::{
    AuthDecision, AuthExchange, AuthStart, Authenticator,
    security::{
        PasswordFile, PasswordHash, SCRAM_SALT_LEN,
        scram::{MIN_ITERATIONS, NONCE_RANDOM_LEN, SCRAM_SHA_256, start_scram},
    },
};
use tern_codec::Connect;

/// Simulated client `index`'s password.
pub fn password(index: usize) -> Vec<u8> {
    format!("pw-c{index}").into_bytes()
}

/// The password file: a SCRAM-SHA-256 credential per client `c0..cN`.
pub(crate) fn users(clients: usize) -> Arc<PasswordFile> {
    let text: String = (0..clients)
        .map(|i| {
            let salt = [i as u8; SCRAM_SALT_LEN];
            let hash = PasswordHash::scram_sha256(&password(i), salt, MIN_ITERATIONS);
            format!("c{i}:{hash}\n")
        })
        .collect();
    Arc::new(PasswordFile::parse(&text).expect("the simulation's password file parses"))
}

/// Lets every client in (as `AllowAll`), and offers SCRAM-SHA-256 with
/// server nonces from the seed.
pub(crate) struct SimAuth {
    pub(crate) users: Arc<PasswordFile>,
    pub(crate) rng: Rng,
}

impl Authenticator for SimAuth {
    fn authenticate(&mut self, _connect: &Connect, _identity: Option<&str>) -> AuthDecision {
        AuthDecision::Accept
    }

    fn start_auth(&mut self, method: &str, start: AuthStart<'_>) -> Option<Box<dyn AuthExchange>> {
        if method != SCRAM_SHA_256 {
            return None;
        }
        let mut random = [0u8; NONCE_RANDOM_LEN];
        for chunk in random.chunks_mut(8) {
            let bytes = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Some(start_scram(self.users.clone(), start, &random))
    }
}
