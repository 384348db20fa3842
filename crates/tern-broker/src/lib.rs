//! An MQTT 3.1.1 and 5.0 broker (MQTT 3.1 accepted).
//!
//! - [`Broker`] is the sans-IO core: connections, sessions, the subscription
//!   tree, retained messages, wills and expiry, driven by bytes and time the
//!   caller hands in. It reads no clock and does no I/O, so a deterministic
//!   simulator drives it as well as the tokio server does.
//! - The `server` feature adds the tokio shell that owns the sockets.

#![forbid(unsafe_code)]

mod core;

pub use crate::core::{
    AllowAll, AuthDecision, Authenticator, Broker, BrokerConfig, BrokerEvent, ConnId, MemoryStore,
    RetainedMessage, Stats, Store, StoredSession, StoredState, Transmit,
};
