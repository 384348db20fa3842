//! Clusters Tern brokers on NATS (issue 18): the transport behind the
//! broker's cluster seam ([`tern_broker::server::cluster_link`]). The
//! broker core counts its local interest and decides which messages leave
//! the node; this crate carries them over NATS and brings back what the
//! other nodes say. ARCHITECTURE.md ("Cluster") has the design and the
//! failure cases it does not cover yet.
//!
//! Subjects, under a prefix (`tern` by default):
//! - `tern.m.<topic>`: a message some other node has interest in; each
//!   node subscribes once per distinct local filter ([`subject`] maps
//!   filters and topics, escaping what NATS reserves);
//! - `tern.r.<topic>`: a retained message; every node subscribes to
//!   `tern.r.>`, and a JetStream stream keeps the last one per topic for
//!   nodes that start later;
//! - `tern.i.<node>`: a node's whole interest, on every change and every
//!   heartbeat; `tern.sync`: a starting node asks the others to announce;
//! - `tern.s.<node>`: requests to release a session another node claimed,
//!   answered with the session ([`handover`]); the KV bucket
//!   `TERN_SESSIONS` maps each client identifier to the node that owns it.
//!
//! With the default `nats` feature off, only the wire formats remain
//! ([`envelope`], [`handover`], [`subject`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tern_broker::server::{self, BrokerSettings};
//! let (link, peer) = server::cluster_link();
//! let running = server::start_clustered(BrokerSettings::default(), Some(link)).await?;
//! let settings = tern_cluster::ClusterSettings::new(vec!["nats://127.0.0.1:4222".into()], "a");
//! let cluster = tern_cluster::connect(settings, peer).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "nats")]
mod dedupe;
pub mod envelope;
pub mod handover;
#[cfg(feature = "nats")]
mod link;
#[cfg(feature = "nats")]
mod sessions;
pub mod subject;

#[cfg(feature = "nats")]
pub use link::{Cluster, ClusterError, ClusterSettings, LinkStats, connect};
#[cfg(feature = "nats")]
pub use sessions::{ASK_TIMEOUT, MAX_TRACKED_ID, SessionStats};
