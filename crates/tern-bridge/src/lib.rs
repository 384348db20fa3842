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
//! // Held: no client gets in before the bridges' local subscriptions exist.
//! let running = server::start_held(settings.clone(), None).await?;
//! let bridges = tern_bridge::Bridges::start(running.local_connector(), &settings.bridge);
//! bridges.local_ready().await;
//! running.open_listeners();
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

use bridge::Stop;
use std::sync::Arc;
use tern_broker::server::{BridgeSettings, BridgeStats, LocalConnector};
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

/// One running bridge.
#[derive(Debug)]
struct Running {
    name: String,
    settings: BridgeSettings,
    status: watch::Receiver<Status>,
    counters: Arc<BridgeStats>,
    stop: oneshot::Sender<Stop>,
    /// True once the local subscriptions exist (or the first attempt at
    /// them ended).
    local_ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(local: &LocalConnector, s: &BridgeSettings) -> Self {
        let (status_tx, status) = watch::channel(Status::Connecting);
        // The broker's, by name: `/metrics` shows them.
        let counters = local.bridge_stats(&s.name);
        let (stop, stop_rx) = oneshot::channel();
        let (ready_tx, local_ready) = watch::channel(false);
        let task = tokio::spawn(bridge::run(
            s.clone(),
            local.clone(),
            status_tx,
            ready_tx,
            counters.clone(),
            stop_rx,
        ));
        tracing::info!(bridge = %s.name, remote = ?s.address, "bridge started");
        Running {
            name: s.name.clone(),
            settings: s.clone(),
            status,
            counters,
            stop,
            local_ready,
            task,
        }
    }

    async fn stop(self, why: Stop) {
        let _ = self.stop.send(why);
        let _ = self.task.await;
    }
}

/// What [`Bridges::reload`] did, by bridge name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Started: new in the settings.
    pub added: Vec<String>,
    /// Started again with their new settings.
    pub changed: Vec<String>,
    /// Stopped, their local sessions ended.
    pub removed: Vec<String>,
}

/// The running bridges of one broker.
#[derive(Debug)]
pub struct Bridges {
    local: Option<LocalConnector>,
    running: Vec<Running>,
}

impl Default for Bridges {
    /// No bridges (and none can be added).
    fn default() -> Self {
        Self {
            local: None,
            running: Vec::new(),
        }
    }
}

impl Bridges {
    /// Starts every bridge in `settings` (checked when they were loaded).
    /// Must be called inside a tokio runtime.
    pub fn start(local: LocalConnector, settings: &[BridgeSettings]) -> Self {
        let running = settings.iter().map(|s| Running::start(&local, s)).collect();
        Self {
            local: Some(local),
            running,
        }
    }

    /// Applies new `[[bridge]]` tables (SIGHUP): bridges no longer there are
    /// stopped and their local sessions ended; new ones start; changed ones
    /// stop and start again with their new settings, keeping their local
    /// session (what is queued for them) minus the `out` subscriptions they
    /// no longer have; unchanged ones are left alone.
    pub async fn reload(&mut self, settings: &[BridgeSettings]) -> Reloaded {
        let mut done = Reloaded::default();
        let Some(local) = self.local.clone() else {
            return done;
        };
        let mut kept = Vec::new();
        for r in std::mem::take(&mut self.running) {
            match settings.iter().find(|s| s.name == r.name) {
                Some(s) if *s == r.settings => kept.push(r),
                Some(s) => {
                    let keep = s
                        .topic
                        .iter()
                        .filter(|t| t.direction.outbound())
                        .map(|t| t.local_filter())
                        .collect();
                    done.changed.push(r.name.clone());
                    r.stop(Stop::Replace { keep }).await;
                }
                None => {
                    done.removed.push(r.name.clone());
                    r.stop(Stop::Remove).await;
                    local.forget_bridge(&done.removed[done.removed.len() - 1]);
                }
            }
        }
        // In the order of the settings.
        for s in settings {
            match kept.iter().position(|r| r.name == s.name) {
                Some(i) => self.running.push(kept.swap_remove(i)),
                None => {
                    if !done.changed.contains(&s.name) {
                        done.added.push(s.name.clone());
                    }
                    self.running.push(Running::start(&local, s));
                }
            }
        }
        done
    }

    /// Completes once every bridge's local side is subscribed (or its first
    /// attempt failed, which is logged): from then on, what clients publish
    /// on an `out` topic waits in the bridge's session for the remote. A
    /// broker opens its listeners after this (see
    /// `tern_broker::server::start_held`), as mosquitto subscribes its
    /// bridges before it serves anyone.
    pub async fn local_ready(&self) {
        for r in &self.running {
            let mut ready = r.local_ready.clone();
            // An error: the bridge task ended, so there is nothing to wait for.
            let _ = ready.wait_for(|ready| *ready).await;
        }
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

    /// A bridge's counters (the ones `/metrics` shows).
    pub fn counters(&self, name: &str) -> Option<Arc<BridgeStats>> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.counters.clone())
    }

    /// Runs until `stop` completes, then shuts the bridges down. On SIGHUP
    /// (Unix) the `[[bridge]]` tables of `settings_file` are read again and
    /// applied ([`Bridges::reload`]); a file that cannot be read or parsed
    /// is logged, naming it, and the bridges stay as they are.
    pub async fn run_until(
        mut self,
        settings_file: Option<std::path::PathBuf>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (settings_file, signal(SignalKind::hangup())) {
                (Some(path), Ok(mut hangup)) => loop {
                    tokio::select! {
                        () = &mut stop => break,
                        _ = hangup.recv() => {
                            match tern_broker::server::BrokerSettings::load(&path) {
                                Ok(settings) => {
                                    let done = self.reload(&settings.bridge).await;
                                    tracing::info!(
                                        added = ?done.added, changed = ?done.changed,
                                        removed = ?done.removed, "SIGHUP: bridges reloaded"
                                    );
                                }
                                Err(e) => tracing::error!("SIGHUP: bridges unchanged: {e}"),
                            }
                        }
                    }
                },
                (None, _) => stop.await,
                (Some(_), Err(e)) => {
                    tracing::error!("cannot listen for SIGHUP (no bridge reloading): {e}");
                    stop.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = settings_file;
            stop.await;
        }
        self.shutdown().await;
    }

    /// Stops every bridge: each publishes its 0 notification on the remote
    /// and disconnects both sides.
    pub async fn shutdown(self) {
        for r in self.running {
            r.stop(Stop::Shutdown).await;
        }
    }
}
