//! An MQTT 3.1.1 and 5.0 broker (MQTT 3.1 accepted).
//!
//! - [`Broker`] is the sans-IO core: connections, sessions, the subscription
//!   tree, retained messages, wills and expiry, driven by bytes and time the
//!   caller hands in. It reads no clock and does no I/O, so a deterministic
//!   simulator drives it as well as the tokio server does.
//! - [`server`] (the `server` feature, on by default) is the tokio shell
//!   around it: TCP and WebSocket listeners, the timer, graceful shutdown,
//!   and the TOML settings file `tern broker` reads.

#![forbid(unsafe_code)]

mod core;
#[cfg(feature = "server")]
pub mod server;
// `--data-dir`: the core's storage operations as tern-store's, and start-up
// from what the store holds. Its file sits with the server it serves; the
// `store` feature (on with `server`) builds it alone for the simulator.
#[cfg(feature = "store")]
#[path = "server/storage.rs"]
pub mod storage;

pub use crate::core::BRIDGED_PROPERTY;
pub use crate::core::security;
pub use crate::core::{
    AllowAll, AuthCheck, AuthDecision, AuthExchange, AuthStart, AuthStep, Authenticator, Broker,
    BrokerConfig, BrokerEvent, ByQos, Client, ClusterOutput, ClusterStats, ConnId,
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOPIC_LENGTH, DEFAULT_MAX_TOPIC_LEVELS, Drops,
    HandedMessage, Limit, MemoryStore, MemoryUse, OutputCredit, PendingCheck, QueueDepths, Refusal,
    RetainedLimits, RetainedMessage, SHARED_PAYLOAD, SessionHandover, Stats, Store, StoreBatch,
    StoreOp, StoredSession, StoredState, StoredSubscription, StoredSubscriptions, TopTopic,
    Transmit, WrittenTransmit,
};
