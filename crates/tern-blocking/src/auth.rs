//! MQTT 5 enhanced authentication (section 4.12) on the blocking client:
//! the [`AuthMethod`] callback the driver runs, and SCRAM-SHA-256 and
//! SCRAM-SHA-512 ([`ScramSha256`], RFC 5802 and RFC 7677) built in, as
//! tern-client has them.
//!
//! [`Client::connect_with_auth`](crate::Client::connect_with_auth) calls
//! [`start`](AuthMethod::start) for the CONNECT's Authentication Data,
//! [`step`](AuthMethod::step) for each AUTH 0x18 the server sends, and
//! [`finish`](AuthMethod::finish) with the successful CONNACK's data;
//! [`Client::reauthenticate`](crate::Client::reauthenticate) does the same
//! with AUTH 0x19 and the AUTH 0x00 that ends it. An error from the method
//! sends DISCONNECT 0x80 and is returned as [`Error::Auth`](crate::Error::Auth).

use bytes::Bytes;
use std::fmt;
use tern_session::scram::{Mechanism, ScramClient, nonce_from_bytes};

/// One enhanced authentication method, as the client runs it.
pub trait AuthMethod: Send + 'static {
    /// The Authentication Method's name (for example `SCRAM-SHA-256`).
    fn method(&self) -> &str;

    /// A new exchange begins: the Authentication Data for the CONNECT (or
    /// the re-authenticating AUTH 0x19), if the method sends any.
    fn start(&mut self) -> Result<Option<Bytes>, String>;

    /// The server's next step (AUTH 0x18): our answer's data.
    fn step(&mut self, data: Option<&[u8]>) -> Result<Option<Bytes>, String>;

    /// The server accepted (CONNACK 0x00 or AUTH 0x00) with this final
    /// data: check it (a mutual method verifies the server here).
    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), String>;
}

/// SCRAM-SHA-256, or SCRAM-SHA-512 with [`sha512`](Self::sha512): proves
/// the password without sending it, and checks the server's signature in
/// the final step. Client nonces come from the operating system's random
/// source; user name and password are prepared with SASLprep (RFC 4013).
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

    fn start(&mut self) -> Result<Option<Bytes>, String> {
        let mut random = [0u8; 18];
        getrandom::fill(&mut random).map_err(|e| format!("no random nonce: {e}"))?;
        let nonce = nonce_from_bytes(&random);
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
