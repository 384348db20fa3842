//! MQTT bridges for the Tern broker, with mosquitto's bridge semantics.
//!
//! A bridge is two tern-client connections living inside the broker's
//! process: a **local** one to this broker, over an in-process pipe
//! ([`LocalConnector`]), and a **remote** one to the other broker, over TCP
//! or TLS. Messages matching an `out` topic are received by the local
//! client and published by the remote one; `in` topics the other way. No
//! part of MQTT is implemented here: the clients (tern-session) do the
//! protocol; this crate subscribes, renames topics (mosquitto's prefixes)
//! and moves messages.
//!
//! **Nothing is acknowledged before it is delivered.** Both clients use
//! manual acknowledgements: a QoS 1 or 2 message is acknowledged to the
//! broker it came from only once the other broker acknowledged it. The
//! local client's session is persistent, so while the remote is away the
//! messages wait in this broker's session for the bridge (in flight to it,
//! then queued, bounded by `[limits]`), which the broker's store keeps.
//!
//! **Loops.** The local subscriptions use No Local (the local side is
//! always MQTT 5), and so do the remote ones with MQTT 5; every bridged
//! message carries the user property [`BRIDGED`], and a message that
//! carries it is not sent out over a bridge again (unless the bridge's
//! `forward_bridged` says so), so two brokers bridged both ways pass each
//! message once.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tern_broker::server::{self, BrokerSettings};
//!
//! let settings = BrokerSettings::load("broker.toml")?;
//! let running = server::start(settings.clone()).await?;
//! let bridges = tern_bridge::Bridges::start(running.local_connector(), &settings.bridge);
//! running.run_until(server::shutdown_signal()).await;
//! bridges.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod bridge;
mod pump;
mod topics;

pub use pump::BRIDGED;

use std::sync::{Arc, atomic::AtomicU64};
use tern_broker::server::{BridgeSettings, LocalConnector};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

/// Where a bridge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Connecting (or reconnecting) to the remote.
    Connecting,
    /// Connected to both sides.
    Up,
    /// Waiting to start again after a failure.
    Down,
    /// Stopped.
    Stopped,
}

/// What a bridge has moved.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages delivered to the other side (QoS 0: handed to its client).
    pub forwarded: AtomicU64,
    /// Messages the other side refused, or that it could not carry.
    pub dropped: AtomicU64,
}

/// One running bridge.
#[derive(Debug)]
struct Running {
    name: String,
    status: watch::Receiver<Status>,
    counters: Arc<Counters>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The running bridges of one broker.
#[derive(Debug, Default)]
pub struct Bridges {
    running: Vec<Running>,
}

impl Bridges {
    /// Starts every bridge in `settings` (checked when they were loaded).
    /// Must be called inside a tokio runtime.
    pub fn start(local: LocalConnector, settings: &[BridgeSettings]) -> Self {
        let running = settings
            .iter()
            .map(|s| {
                if s.try_private && s.protocol == tern_broker::server::bridge_settings::BridgeProtocol::V3_1_1 {
                    tracing::debug!(bridge = %s.name, "try_private is not implemented: connecting as an ordinary MQTT 3.1.1 client");
                }
                let (status_tx, status) = watch::channel(Status::Connecting);
                let counters = Arc::new(Counters::default());
                let (stop, stop_rx) = oneshot::channel();
                let task = tokio::spawn(bridge::run(
                    s.clone(),
                    local.clone(),
                    status_tx,
                    counters.clone(),
                    stop_rx,
                ));
                tracing::info!(bridge = %s.name, remote = ?s.address, "bridge started");
                Running {
                    name: s.name.clone(),
                    status,
                    counters,
                    stop,
                    task,
                }
            })
            .collect();
        Self { running }
    }

    /// Each bridge's name and status.
    pub fn statuses(&self) -> Vec<(String, Status)> {
        self.running
            .iter()
            .map(|r| (r.name.clone(), *r.status.borrow()))
            .collect()
    }

    /// A bridge's status, as it changes.
    pub fn status(&self, name: &str) -> Option<watch::Receiver<Status>> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.status.clone())
    }

    /// A bridge's counters.
    pub fn counters(&self, name: &str) -> Option<Arc<Counters>> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.counters.clone())
    }

    /// Stops every bridge: each publishes its 0 notification on the remote
    /// and disconnects both sides.
    pub async fn shutdown(self) {
        for r in self.running {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
    }
}
