//! MQTT 5 enhanced authentication (section 4.12) on the client side, for
//! every client driver: the [`AuthMethod`] callback a driver runs, and SCRAM
//! ([`ScramSha256`], RFC 5802 and RFC 7677; SCRAM-SHA-512 through
//! [`ScramSha256::sha512`]) built in.
//!
//! A driver calls [`start`](AuthMethod::start) for a CONNECT's (or a
//! re-authenticating AUTH 0x19's) Authentication Data,
//! [`step`](AuthMethod::step) for each AUTH 0x18 the server sends, and
//! [`finish`](AuthMethod::finish) with the data of the CONNACK 0x00 or
//! AUTH 0x00 that ends the exchange. An error from any of them ends the
//! exchange; the driver sends DISCONNECT 0x80 and reports it.
//!
//! Like time, randomness comes in as an argument: `start` takes fresh bytes
//! from the driver's random source, so this crate reads none and a
//! simulation replays exactly.

use alloc::{
    borrow::ToOwned,
    string::{String, ToString},
    vec::Vec,
};
use bytes::Bytes;
use core::fmt;

use crate::scram::{Mechanism, ScramClient, nonce_from_bytes};

/// How many random bytes a driver hands to [`AuthMethod::start`].
pub const AUTH_RANDOM_LEN: usize = 18;

/// One enhanced authentication method, as a client runs it.
pub trait AuthMethod: Send + 'static {
    /// The Authentication Method's name (for example `SCRAM-SHA-256`).
    fn method(&self) -> &str;

    /// A new exchange begins: the Authentication Data for the CONNECT (or
    /// the re-authenticating AUTH 0x19), if the method sends any. `random`
    /// is fresh from the driver's random source, for methods that need a
    /// nonce; others ignore it.
    fn start(&mut self, random: &[u8; AUTH_RANDOM_LEN]) -> Result<Option<Bytes>, String>;

    /// The server's next step (AUTH 0x18): our answer's data.
    fn step(&mut self, data: Option<&[u8]>) -> Result<Option<Bytes>, String>;

    /// The server accepted (CONNACK 0x00 or AUTH 0x00) with this final
    /// data: check it (a mutual method verifies the server here).
    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), String>;
}

/// SCRAM-SHA-256, or SCRAM-SHA-512 with [`sha512`](Self::sha512): proves
/// the password without sending it, and checks in the final step that the
/// server holds the credential (its signature). The client nonce is made
/// from the bytes given to [`start`](AuthMethod::start).
pub struct ScramSha256 {
    mechanism: Mechanism,
    username: String,
    password: Vec<u8>,
    exchange: Option<ScramClient>,
}

impl fmt::Debug for ScramSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password stays out of logs.
        f.debug_struct("ScramSha256")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramSha256 {
    /// SCRAM-SHA-256 as `username` with `password`.
    pub fn new(username: &str, password: &[u8]) -> Self {
        Self {
            mechanism: Mechanism::Sha256,
            username: username.to_owned(),
            password: password.to_vec(),
            exchange: None,
        }
    }

    /// SCRAM-SHA-512 (method `SCRAM-SHA-512`) as `username` with `password`.
    pub fn sha512(username: &str, password: &[u8]) -> Self {
        Self {
            mechanism: Mechanism::Sha512,
            ..Self::new(username, password)
        }
    }
}

impl AuthMethod for ScramSha256 {
    fn method(&self) -> &str {
        self.mechanism.name()
    }

    fn start(&mut self, random: &[u8; AUTH_RANDOM_LEN]) -> Result<Option<Bytes>, String> {
        let nonce = nonce_from_bytes(random);
        let client =
            ScramClient::with_mechanism(self.mechanism, &self.username, &self.password, &nonce)
                .map_err(|e| e.to_string())?;
        let first = client.client_first();
        self.exchange = Some(client);
        Ok(Some(Bytes::from(first)))
    }

    fn step(&mut self, data: Option<&[u8]>) -> Result<Option<Bytes>, String> {
        let client = self
            .exchange
            .as_mut()
            .ok_or("SCRAM step before the exchange started")?;
        let data = data.ok_or("SCRAM server-first without data")?;
        let last = client.server_first(data).map_err(|e| e.to_string())?;
        Ok(Some(Bytes::from(last)))
    }

    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), String> {
        let client = self
            .exchange
            .take()
            .ok_or("SCRAM success before the exchange started")?;
        let data = data.ok_or("the server sent no SCRAM server signature")?;
        client.server_final(data).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::{ClientFirst, ScramCredential, ScramServer};

    /// Runs `method` through a whole exchange against the crate's SCRAM
    /// server; returns what `finish` said about the server's signature,
    /// flipped in one byte when `tamper` is set.
    fn exchange(
        method: &mut ScramSha256,
        random: &[u8; AUTH_RANDOM_LEN],
        tamper: bool,
    ) -> Result<(), String> {
        let credential = ScramCredential::derive(b"secret", b"salt-salt", 4096);
        let first = method.start(random)?.expect("client-first");
        let parsed = ClientFirst::parse(&first).map_err(|e| e.to_string())?;
        let (server, server_first) =
            ScramServer::start(&parsed, credential, "servernonce").map_err(|e| e.to_string())?;
        let last = method.step(Some(&server_first))?.expect("client-final");
        let mut signature = server.finish(&last).map_err(|e| e.to_string())?;
        if tamper {
            let at = signature.len() - 2;
            signature[at] ^= 1;
        }
        method.finish(Some(&signature))
    }

    #[test]
    fn scram_runs_a_whole_exchange_with_the_randomness_it_is_given() {
        let random = [7u8; AUTH_RANDOM_LEN];
        let mut method = ScramSha256::new("alice", b"secret");
        let first = method.start(&random).unwrap().unwrap();
        let text = core::str::from_utf8(&first).unwrap();
        assert!(
            text.contains(&nonce_from_bytes(&random)),
            "the client nonce is made from the driver's bytes: {text}"
        );
        assert_eq!(exchange(&mut method, &random, false), Ok(()));
        assert!(method.finish(Some(b"v=")).is_err(), "an exchange ends once");
        let method = ScramSha256::sha512("alice", b"secret");
        assert_eq!(method.method(), "SCRAM-SHA-512");
        let mut method = ScramSha256::new("alice", b"secret");
        assert!(
            exchange(&mut method, &random, true).is_err(),
            "a wrong server signature is refused"
        );
    }
}
