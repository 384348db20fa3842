//! The tokio server: listeners, sockets, the clock and shutdown around the
//! sans-IO [`Broker`](crate::Broker).
//!
//! The shell is thin. It knows how to accept sockets, move bytes and keep
//! time; every protocol decision (what a packet means, when a keep alive has
//! expired, who receives a message) is the core's. It is built from a few
//! tasks that each have one job, wired by channels that each have one
//! reason to exist:
//!
//! ```text
//!   listener (TCP / WebSocket) ──Accepted (bounded mpsc)──▶ core task: owns Broker,
//!                                                           reads every socket
//!   writer task (while output waits) ◀── OutputQueue ───────┘
//!                                    ──── Report (written / failed) ──▶ core task
//! ```
//!
//! - **The core task** (`driver.rs`) owns the [`Broker`](crate::Broker) and
//!   every socket's read half. It is the only place protocol state lives, so
//!   the broker stays single-threaded and deterministic, exactly as the
//!   simulator drives it. It reads the sockets itself, in the order the
//!   operating system reported them readable, so input from several
//!   connections reaches the core in the order it arrived. After each input
//!   it follows the drain rule.
//! - **A writer task** (`connection.rs`) runs for a socket while the core
//!   has output for it: it writes everything queued, then parks the write
//!   half in the socket's output queue and ends (an idle connection has no
//!   task); the last one closes the socket gracefully when the core is done
//!   with it. It never looks inside the bytes.
//! - **The listeners** (`listener.rs`) accept sockets (and, for WebSocket, run
//!   the HTTP upgrade) and hand them to the core, under a semaphore that caps
//!   the number of connections.
//!
//! Shutdown follows mini-redis: a `broadcast` channel tells the listeners and
//! the core task to stop; the core sends every connection its DISCONNECT
//! (0x8B for MQTT 5) and a close; each writer task holds a clone of an
//! `mpsc::Sender` that it drops once it has flushed and shut its socket's
//! write side, so [`Running::shutdown`] knows every socket has been flushed
//! when the matching receiver yields `None`.
//!
//! # Example
//!
//! ```no_run
//! use tern_broker::server::{self, BrokerSettings};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = BrokerSettings::load("broker.toml")?;
//! let signal = server::shutdown_signal(); // handlers installed from here on
//! let running = server::start(settings).await?;
//! for addr in running.tcp_addrs() {
//!     println!("listening tcp {addr}");
//! }
//! running.run_until(signal).await;
//! # Ok(())
//! # }
//! ```

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the shell owns the clock and sockets"
)]

pub mod bridge_settings;
mod bridge_stats;
mod check;
mod checks;
pub mod cluster;
mod connection;
mod driver;
mod http;
mod listener;
mod local;
pub mod memory_budget;
pub mod metrics;
mod refusal_log;
mod reload;
pub mod security;
mod security_changes;
mod settings;
// The storage mapping lives at `crate::storage` (feature `store`, which
// `server` turns on), so the simulator reaches it without tokio.
use crate::storage;
pub mod tls;
mod websocket;

/// The monitoring listener's request parser on its own, for the fuzz
/// target (cargo-fuzz builds with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Where the request head in `buf` ends (after its blank line), if it
    /// is complete.
    pub fn find_head_end(buf: &[u8]) -> Option<usize> {
        super::http::find_head_end(buf)
    }

    /// The method and path of a complete head's request line, or the
    /// status the listener answers it with.
    pub fn parse_request_line(head: &[u8]) -> Result<(&str, &str), u16> {
        super::http::parse_request_line(head)
    }

    /// The longest head the listener reads.
    pub const MAX_HEAD: usize = super::http::MAX_HEAD;
}

pub use bridge_settings::{BridgeSettings, BridgeTopic, Direction};
pub use bridge_stats::{BridgeCounts, BridgeDirection, BridgeStats};
pub use cluster::{
    ClusterCounters, ClusterCounts, ClusterInput, ClusterLink, ClusterPeer, cluster_link,
};
pub use local::LocalConnector;
pub use settings::{
    BrokerSettings, ClusterTable, Limits, Listeners, MetricsSettings, SettingsError, TlsSettings,
};
pub use storage::{StorageSettings, SyncMode};

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, broadcast, mpsc, watch},
    task::JoinHandle,
};

/// How long shutdown waits for connections to flush their last packets.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection the broker closed is still read (and what is read
/// dropped) after its last packet, so that the close meets no unread input.
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// How many bytes such a connection may still send before it is cut.
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The password file or ACL file cannot be used.
    Security(security::SecurityError),
    /// The TLS files cannot be used, or are missing for a TLS listener.
    Tls(String),
    /// The data directory cannot be used (another broker holds it, or it
    /// cannot be created or read).
    Storage(tern_store::StoreError),
    /// A listener's address could not be bound (in use, not local, no permission).
    Bind {
        /// `tcp`, `ws`, `tls` or `wss`.
        kind: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind { kind, addr, source } => {
                write!(f, "cannot listen ({kind}) on {addr}: {source}")
            }
            StartError::Security(e) => e.fmt(f),
            StartError::Tls(why) => f.write_str(why),
            StartError::Storage(e) => write!(f, "storage: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } => Some(source),
            StartError::Security(e) => Some(e),
            StartError::Storage(e) => Some(e),
            StartError::Tls(_) => None,
        }
    }
}

/// A running server: its bound addresses, and the way to stop it.
#[derive(Debug)]
pub struct Running {
    tcp_addrs: Vec<SocketAddr>,
    ws_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    wss_addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    /// Tells the listeners and the core task to stop.
    notify_shutdown: broadcast::Sender<()>,
    /// Every writer task holds a clone; `recv` yields `None` once all
    /// of them have ended. Ours is dropped when shutting down.
    shutdown_complete_tx: mpsc::Sender<()>,
    shutdown_complete_rx: mpsc::Receiver<()>,
    core: JoinHandle<()>,
    /// Reads the password and ACL files again (SIGHUP, [`Running::reload`]).
    reloader: security::Reloader,
    /// Opens in-process connections (bridges).
    local: LocalConnector,
    /// Lets the accept loops start ([`Running::open_listeners`]).
    open: watch::Sender<bool>,
}

impl Running {
    /// Reads the password, ACL and TLS files again, as SIGHUP does: the new
    /// rules apply to new connections and every later check, the new
    /// certificates to new handshakes; open connections stay. The settings
    /// file's `[limits]` too, if the settings were loaded from one
    /// ([`BrokerSettings::file`]): each change is logged and applies to new
    /// connections and sessions. A file that cannot be used is logged
    /// (naming it), what it configures stays as it was, and this returns the
    /// error.
    pub fn reload(&self) -> Result<(), security::ReloadError> {
        self.reloader.reload()
    }

    /// Lets the listeners accept connections: at once after [`start`] and
    /// [`start_clustered`], when the caller says after [`start_held`].
    /// Calling it again does nothing.
    pub fn open_listeners(&self) {
        self.open.send_replace(true);
    }

    /// Opens in-process connections to this server, trusted and
    /// authenticated as the user name given: how a bridge's local client
    /// reaches the broker without a listener (see [`LocalConnector`]).
    pub fn local_connector(&self) -> LocalConnector {
        self.local.clone()
    }

    /// The bound TCP listener addresses, in the order configured (port 0
    /// resolved to the port the system chose).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The bound WebSocket listener addresses.
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws_addrs
    }

    /// The bound TLS listener addresses.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The bound WebSocket-over-TLS listener addresses.
    pub fn wss_addrs(&self) -> &[SocketAddr] {
        &self.wss_addrs
    }

    /// The bound monitoring (HTTP) address, if `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The first TCP address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addrs.first().copied()
    }

    /// The first WebSocket address, if any.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addrs.first().copied()
    }

    /// Runs until `signal` completes (or the core task stops on its own,
    /// which only a bug does), then shuts down gracefully.
    pub async fn run_until<F: Future>(mut self, signal: F) {
        tokio::select! {
            _ = signal => {}
            result = &mut self.core => {
                tracing::error!(?result, "the broker core task stopped");
            }
        }
        self.shutdown().await;
    }

    /// Stops gracefully: no new connections, every client gets a DISCONNECT
    /// (0x8B Server shutting down, MQTT 5) and its socket closed, and this
    /// waits up to [`FLUSH_TIMEOUT`] for the sockets to flush.
    pub async fn shutdown(self) {
        let Running {
            notify_shutdown,
            shutdown_complete_tx,
            mut shutdown_complete_rx,
            core,
            ..
        } = self;
        // Nobody may be listening any more (the core stopped by itself); that is fine.
        let _ = notify_shutdown.send(());
        // The core task drains the DISCONNECTs into the connections' writers
        // and returns; its end closes the input channel, which stops the readers.
        let _ = core.await;
        drop(shutdown_complete_tx);
        // `None` once the last writer task has dropped its sender.
        let flushed = tokio::time::timeout(FLUSH_TIMEOUT, shutdown_complete_rx.recv()).await;
        match flushed {
            Ok(_) => tracing::info!("shut down"),
            Err(_) => {
                tracing::warn!("shut down with connections still flushing after {FLUSH_TIMEOUT:?}")
            }
        }
    }
}

/// Completes on Ctrl-C, or on SIGTERM on Unix.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before announcing that the server is up, so that a
/// signal sent right after the announcement is not met by the default
/// action (which ends the process without a graceful shutdown). Must be
/// called inside a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(i), Ok(t)) => (i, t),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("cannot listen for Ctrl-C or SIGTERM: {e}");
                    return std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("Ctrl-C: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C: shutting down");
    }
}

/// Binds every listener in `settings`, starts the core task and the accept
/// loops, and returns once the server is accepting connections.
///
/// Must be called inside a tokio runtime (multi-threaded or not).
pub async fn start(settings: BrokerSettings) -> Result<Running, StartError> {
    start_clustered(settings, None).await
}

/// [`start`], as one node of a cluster when `cluster` is given: the core
/// counts its interest and exchanges messages through the link (the other
/// end is the transport's, see [`cluster_link`]). Without it, exactly
/// [`start`].
pub async fn start_clustered(
    settings: BrokerSettings,
    cluster: Option<ClusterLink>,
) -> Result<Running, StartError> {
    let running = start_held(settings, cluster).await?;
    running.open_listeners();
    Ok(running)
}

/// [`start`], with SCRAM server nonces from `random` instead of the
/// operating system's random source (tests: a source that fails).
pub async fn start_with_random(
    settings: BrokerSettings,
    random: security::RandomSource,
) -> Result<Running, StartError> {
    let running = start_inner(settings, None, Some(random)).await?;
    running.open_listeners();
    Ok(running)
}

/// [`start_clustered`], with the listeners bound but not yet accepting: the
/// core runs and in-process connections ([`Running::local_connector`]) are
/// served, while clients wait in the kernel's backlog until
/// [`Running::open_listeners`]. `tern broker` opens them once its bridges'
/// local subscriptions exist, so a message published the moment a client
/// gets in is bridged, as in mosquitto (whose bridges subscribe before it
/// serves anyone).
pub async fn start_held(
    settings: BrokerSettings,
    cluster: Option<ClusterLink>,
) -> Result<Running, StartError> {
    start_inner(settings, cluster, None).await
}

async fn start_inner(
    settings: BrokerSettings,
    cluster: Option<ClusterLink>,
    random: Option<security::RandomSource>,
) -> Result<Running, StartError> {
    // The files first: a bad one stops the start, naming the file.
    let mut auth =
        security::FileAuthenticator::new(settings.security.load().map_err(StartError::Security)?);
    if let Some(random) = random {
        auth = auth.with_random(random);
    }
    if let Some(warning) = security::open_listener_warning(&settings) {
        tracing::warn!("{warning}");
    }
    // The TLS files, when a listener needs them; errors name the file.
    let tls = if settings.listeners.tls.is_empty() && settings.listeners.wss.is_empty() {
        None
    } else {
        let files = settings.tls.files().map_err(StartError::Tls)?;
        let config = files.load().map_err(|e| StartError::Tls(e.to_string()))?;
        let acceptor = tls::Acceptor::new(config, settings.tls.use_identity_as_username);
        Some((files, acceptor))
    };
    // The store: a directory another broker holds stops the start.
    let mut config = settings.broker_config();
    config.cluster = cluster.is_some();
    let store =
        storage::open(&settings.storage, config.server.queue).map_err(StartError::Storage)?;
    // Bind everything first, so a port in use is reported before anything runs.
    let l = &settings.listeners;
    let mut listeners = Vec::new();
    for (kind, addrs) in [
        (listener::Kind::Tcp, &l.tcp),
        (listener::Kind::WebSocket, &l.ws),
        (listener::Kind::Tls, &l.tls),
        (listener::Kind::Wss, &l.wss),
    ] {
        for &addr in addrs {
            let bound = bind(kind.name(), addr).await?;
            let local = bound.local_addr().unwrap_or(addr);
            listeners.push((kind, bound, local));
        }
    }
    let addrs = |want: &str| -> Vec<SocketAddr> {
        listeners
            .iter()
            .filter(|(k, _, _)| k.name() == want)
            .map(|&(_, _, a)| a)
            .collect()
    };
    let (tcp_addrs, ws_addrs) = (addrs("tcp"), addrs("ws"));
    let (tls_addrs, wss_addrs) = (addrs("tls"), addrs("wss"));
    let metrics = match settings.metrics.listen {
        Some(addr) => Some(bind("metrics", addr).await?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|l| {
        l.local_addr()
            .unwrap_or_else(|_| settings.metrics.listen.unwrap())
    });

    let (notify_shutdown, _) = broadcast::channel(1);
    // Snapshots for `/metrics`, new settings on SIGHUP (see `driver::Control`).
    let (control_tx, control_rx) = mpsc::channel(driver::CONTROL_CAPACITY);
    let limit = Arc::new(Semaphore::new(settings.limits.max_connections));
    let max_connections = Arc::new(std::sync::atomic::AtomicUsize::new(
        settings.limits.max_connections,
    ));
    let limits = reload::LimitsReloader::new(
        settings.clone(),
        control_tx.clone(),
        limit.clone(),
        max_connections.clone(),
    );
    let reloader =
        security::Reloader::new(settings.security.clone(), auth.clone(), tls.clone(), limits);
    reloader.on_hangup(notify_shutdown.subscribe());
    let (shutdown_complete_tx, shutdown_complete_rx) = mpsc::channel(1);
    // Listeners hand new sockets to the core task (see `listener::Shared`).
    let (accepted_tx, accepted_rx) = mpsc::channel(driver::ACCEPT_CAPACITY);
    // The bridges' counters: the connector hands them out, the monitoring
    // listener reads them.
    let bridges = bridge_stats::BridgeRegistry::default();
    // The monitoring listener asks the core task for snapshots.
    if let Some(listener) = metrics {
        if let Some(addr) = metrics_addr {
            tracing::info!("listening metrics http://{addr}/metrics");
        }
        tokio::spawn(http::serve(
            listener,
            control_tx.clone(),
            http::Beside {
                bridges: bridges.clone(),
                cluster: cluster.as_ref().map(ClusterLink::reader),
            },
            notify_shutdown.subscribe(),
        ));
    }
    let check_threads = settings
        .security
        .check_threads
        .unwrap_or_else(checks::default_workers);
    let core = tokio::spawn(driver::run(
        driver::Parts {
            config,
            store,
            auth: Box::new(auth),
            check_threads,
            check_nice: settings
                .security
                .check_threads_nice
                .unwrap_or(security::DEFAULT_CHECK_NICE),
            cluster,
            count_queues: metrics_addr.is_some(),
        },
        accepted_rx,
        control_rx,
        notify_shutdown.subscribe(),
    ));

    let local = LocalConnector {
        accepted: accepted_tx.clone(),
        shutdown_complete: shutdown_complete_tx.downgrade(),
        bridges,
    };
    let shared = Arc::new(listener::Shared {
        accepted: accepted_tx,
        limit,
        max_connections,
        shutdown_complete: shutdown_complete_tx.clone(),
        handshake_timeout: settings.limits.connect_timeout,
        websocket: websocket::Config::new(&settings),
        tls: tls.map(|(_, acceptor)| acceptor),
    });
    // Held until `Running::open_listeners`.
    let (open, opened) = watch::channel(false);
    for (kind, l, addr) in listeners {
        let path = match kind {
            listener::Kind::WebSocket | listener::Kind::Wss => settings.listeners.ws_path.as_str(),
            listener::Kind::Tcp | listener::Kind::Tls => "",
        };
        tracing::info!("listening {} {addr}{path}", kind.name());
        tokio::spawn(listener::accept_loop(
            l,
            kind,
            shared.clone(),
            opened.clone(),
            notify_shutdown.subscribe(),
        ));
    }
    Ok(Running {
        tcp_addrs,
        ws_addrs,
        tls_addrs,
        wss_addrs,
        metrics_addr,
        notify_shutdown,
        shutdown_complete_tx,
        shutdown_complete_rx,
        core,
        reloader,
        local,
        open,
    })
}

/// Connections the kernel may hold completed but not yet accepted (capped
/// by `net.core.somaxconn`). The standard library's 128 overflows when a
/// few hundred clients connect at once (a fleet reconnecting after an
/// outage), and each dropped SYN costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(kind: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: rebind quickly after a restart.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| StartError::Bind { kind, addr, source })
}
