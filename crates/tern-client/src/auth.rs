//! MQTT 5 enhanced authentication on the client side. The [`AuthMethod`]
//! callback and SCRAM ([`ScramSha256`], and SCRAM-SHA-512 through
//! [`ScramSha256::sha512`]) are tern-session's, shared with tern-blocking;
//! this module keeps the method the connection task and the options share,
//! and feeds it the operating system's random bytes.
//!
//! The connection task calls [`AuthMethod::start`] for every CONNECT (each
//! reconnection authenticates afresh) and for every
//! [`Client::reauthenticate`](crate::Client::reauthenticate), then
//! [`step`](AuthMethod::step) for each AUTH 0x18 the broker sends, and
//! [`finish`](AuthMethod::finish) with the data of the successful CONNACK
//! (or AUTH 0x00 ending a re-authentication). An error from any of them
//! ends the connection with [`Error::Auth`](crate::Error::Auth).

use bytes::Bytes;
use std::{
    fmt,
    sync::{Arc, Mutex},
};
use tern_session::auth::AUTH_RANDOM_LEN;
pub use tern_session::auth::{AuthMethod, ScramSha256};

/// An [`AuthMethod`] the connection task and the `Options` share.
#[derive(Clone)]
pub(crate) struct SharedAuth(Arc<Mutex<Box<dyn AuthMethod>>>);

impl SharedAuth {
    pub(crate) fn new(method: Box<dyn AuthMethod>) -> Self {
        Self(Arc::new(Mutex::new(method)))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut dyn AuthMethod) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut **guard)
    }

    /// Starts a new exchange with fresh random bytes from the OS.
    pub(crate) fn start(&self) -> Result<Option<Bytes>, String> {
        let mut random = [0u8; AUTH_RANDOM_LEN];
        getrandom::fill(&mut random).map_err(|e| format!("no random bytes: {e}"))?;
        self.with(|m| m.start(&random))
    }
}

impl fmt::Debug for SharedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with(|m| f.debug_tuple("AuthMethod").field(&m.method()).finish())
    }
}
