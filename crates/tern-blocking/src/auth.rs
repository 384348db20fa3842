//! MQTT 5 enhanced authentication (section 4.12) on the blocking client.
//! The [`AuthMethod`] callback and SCRAM ([`ScramSha256`], RFC 5802 and
//! RFC 7677) are tern-session's, shared with tern-client; this module feeds
//! a method the operating system's random bytes.
//!
//! [`Client::connect_with_auth`](crate::Client::connect_with_auth) calls
//! [`start`](AuthMethod::start) for the CONNECT's Authentication Data,
//! [`step`](AuthMethod::step) for each AUTH 0x18 the server sends, and
//! [`finish`](AuthMethod::finish) with the successful CONNACK's data;
//! [`Client::reauthenticate`](crate::Client::reauthenticate) does the same
//! with AUTH 0x19 and the AUTH 0x00 that ends it. An error from the method
//! sends DISCONNECT 0x80 and is returned as [`Error::Auth`](crate::Error::Auth).

use bytes::Bytes;
use tern_session::auth::AUTH_RANDOM_LEN;
pub use tern_session::auth::{AuthMethod, ScramSha256};

/// Starts a new exchange of `method` with fresh random bytes from the OS.
pub(crate) fn start(method: &mut dyn AuthMethod) -> Result<Option<Bytes>, String> {
    let mut random = [0u8; AUTH_RANDOM_LEN];
    getrandom::fill(&mut random).map_err(|e| format!("no random bytes: {e}"))?;
    method.start(&random)
}
