//! `tern broker`: runs the MQTT broker (tern-broker's tokio server).
//!
//! This module only turns the command line into [`BrokerSettings`], sets up
//! logging and the runtime, and reports the bound listeners; everything else
//! is tern-broker's.

use crate::codec::Failure;
use clap::Args;
use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};
use tern_broker::server::{self, BrokerSettings};

/// How long the listeners wait for the bridges' local subscriptions (an
/// in-process connection and one SUBSCRIBE each: milliseconds, unless the
/// machine is starved).
const BRIDGES_READY: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) const ABOUT: &str = "\
Run the MQTT broker.

An MQTT 3.1, 3.1.1 and 5.0 broker over TCP and WebSocket. With no arguments
it listens on 127.0.0.1:1883 (TCP) and 127.0.0.1:8083 (WebSocket, path
/mqtt) and lets anonymous clients connect, publish and subscribe.

At start-up it prints one line per listener on standard output, with the
port the system chose when the port was 0:

  listening tcp 127.0.0.1:1883
  listening ws 127.0.0.1:8083

With --ready-file PATH it also writes, once every listener is bound, a JSON
file for programs (written aside and renamed, so it is never seen half
written):

  {\"pid\": 4242, \"tcp\": [\"127.0.0.1:1883\"], \"ws\": [\"127.0.0.1:8083\"],
   \"tls\": [], \"wss\": [], \"metrics\": null}

(\"metrics\" is the monitoring listener's address with --metrics.)

Logs (one line per client connect and disconnect, with client id, protocol
version and reason) go to standard error. Ctrl-C or SIGTERM shuts down
gracefully: MQTT 5 clients get DISCONNECT with reason 0x8B (server shutting
down), every socket is flushed (for at most 2 seconds), and the process
exits with status 0. A settings file that cannot be read or parsed, a
password or ACL file that cannot be used, or an address already in use,
exits with status 1 and says which file, key, line or address.

SIGHUP reads the password, ACL and TLS files again: the new rules apply to
new connections and every later check, the new certificates to new
handshakes; open connections stay. The log names the users added, removed
or given a new password and the ACL rules that changed (never a hash). It also reads the settings file's
[limits] again and logs each change (`limits.max_inflight: 1024 -> 64`):
new connections and sessions get them, open ones keep theirs; and applies
its [[bridge]] tables again: removed bridges stop, new ones start, changed
ones restart with their new settings (unchanged ones are left alone). A
file that cannot be used is logged, naming it, and what it configures stays
as it was. --check-config FILE checks a settings file before use. A
listener on a non-loopback address while anonymous clients may connect
logs a warning at start-up.

Settings file (--config FILE, TOML; every key optional, unknown keys are
errors; the values shown are the defaults):

  [listeners]
  tcp = [\"127.0.0.1:1883\"]   # MQTT over TCP; [] turns it off
  ws = [\"127.0.0.1:8083\"]    # MQTT over WebSocket; [] turns it off
  ws_path = \"/mqtt\"          # the WebSocket endpoint's HTTP path
  tls = []                    # MQTT over TLS (needs [tls] cert and key)
  wss = []                    # MQTT over WebSocket over TLS

  [limits]
  max_connections = 10000     # more are closed as soon as accepted
  max_packet_size = 1048576   # bytes; larger packets close the connection
                              # (MQTT 5: DISCONNECT 0x95); announced to clients
  max_inflight = 1024         # unacknowledged QoS 1/2 messages a client may
                              # send us (Receive Maximum; more: 0x93)
  max_inflight_messages = 20  # QoS 1/2 in flight to a client that sets no
                              # Receive Maximum (3.1.1); the rest wait queued
  max_queued_messages = 1000  # messages held per session (offline, slow, or
  max_queued_bytes = 16777216 # in flight; bytes include properties); beyond
                              # this new ones are dropped
  queue_qos0 = false          # queue QoS 0 messages for offline sessions too
  max_topic_levels = 200      # levels per topic/filter; deeper: PUBACK 0x90,
                              # SUBACK 0x8F (3.1.1: SUBACK 0x80; PUBLISH closes)
  max_topic_length = 4096     # bytes per topic/filter; longer: as above; a
                              # will topic: CONNACK 0x90 (3.1.1: closed)
  max_retained_messages = 1000000 # kept from all clients; past either, a
  max_retained_bytes = 268435456 # retained PUBLISH is delivered, not kept
                              # (MQTT 5: PUBACK 0x97; 3.1.1: acknowledged)
  max_retained_messages_per_client = 100000 # the same, for what one
  max_retained_bytes_per_client = 67108864 # client id retained
  max_subscriptions = 10000   # per client; more: SUBACK 0x97 (3.1.1: 0x80)
  publisher_backpressure = 0.5 # seconds at most a publisher outrunning an
                              # online subscriber is not read; 0: drop instead
  connect_timeout = 10        # seconds to send CONNECT (fractions allowed)
  # max_keep_alive = 300      # seconds; MQTT 5 clients asking more are told
                              # this (Server Keep Alive). Absent: no limit
  retain_available = true     # retained messages supported
  maximum_qos = 2             # highest QoS accepted and granted: 0, 1 or 2
  wildcard_subscriptions = true # false: filters with + or # get SUBACK
                              # 0xA2 (3.1.1: 0x80)
  topic_alias_maximum = 64    # topic aliases each way (client to broker and
                              # back, at most what the client allows); 0: none
  sys_interval = 10           # seconds between $SYS/broker/... updates; 0: off
  connections_per_second_per_address = 0 # more from one IP in a second:
                              # CONNACK 0x9F (3.1.1: 3); 0: no limit
  connections_per_second_per_listener = 0 # the same, into one listener
                              # from all addresses together
  max_memory = \"50%\"        # broker-wide budget, bytes or \"N%\" of the
                              # machine's memory; 0: none. At it: PUBLISH
                              # refused (QoS 0 dropped, 0x97; 3.1.1: closed),
                              # SUBACK 0x97, CONNACK 0x89 (3.1.1: 3)
  max_memory_per_client = \"10%\" # one client id's share: bytes or \"N%\"
                              # of max_memory; 0: none. Past it only that
                              # client's PUBLISH (0x97; 3.1.1: closed) and
                              # SUBSCRIBE (0x97) are refused, and messages
                              # for it are not queued

  [tls]                       # mosquitto's names and meanings; TLS 1.2/1.3
  # cert = \"server.pem\"       # certificate chain, PEM (certfile)
  # key = \"server.key\"        # private key, PEM (keyfile)
  # cafile = \"ca.pem\"         # CA for client certificates; none: not asked
  require_certificate = false # refuse clients without one
  use_identity_as_username = false # a client certificate's Common Name is
                              # the user name; no certificate: refused

  [security]                  # mosquitto's files and meanings
  # password_file = \"passwd\"  # users and password hashes (tern passwd);
                              # wrong password: 0x86 (3.1.1: return code 4)
  # acl_file = \"acl\"          # topic/user/pattern rules: who may publish
                              # (write) and receive (read) what
  # allow_anonymous = true    # clients without a user name may connect
                              # (default: true without a password file,
                              # false with one); refused: 0x87 (3.1.1: 5)
  # check_threads = 1         # password hashes at once, off the routing
                              # thread (default: all cores but one)
  # check_threads_nice = 10   # their nice value (Linux, -20..19), below
                              # routing's so routing wins a busy core
  # clientid_prefixes = \"dev-\" # only client ids starting with this may
                              # connect; others: 0x85 (3.1.1: 2), closed

  [storage]                   # keep state on disk (--data-dir); off when absent
  # dir = \"/var/lib/tern\"     # sessions, subscriptions, QoS 1/2 messages
                              # queued for them, retained messages
  sync = \"always\"             # \"always\": an acknowledgement (CONNACK, SUBACK,
                              # PUBACK, PUBREC) that promises stored state is
                              # sent only after an fsync (group commit); it
                              # survives kill -9 and power loss. \"interval\":
                              # sent once written to the OS (survives kill -9);
                              # fsync every sync_interval_ms, so a machine
                              # crash loses at most that window
  sync_interval_ms = 1000

  [metrics]                   # monitoring over HTTP (GET only); off when absent
  # listen = \"127.0.0.1:9883\" # /metrics (OpenMetrics), /health, /api/stats,
                              # and a live dashboard at /

  [[bridge]]                  # a connection to another broker, with
  name = \"cloud\"              # mosquitto's bridge options (README,
  address = \"cloud.example:1883\" # Bridging, lists them all)
  protocol = \"5\"              # or \"3.1.1\"
  topic = [{ pattern = \"sensors/#\", direction = \"out\", qos = 1,
             remote_prefix = \"edge-7/\" }]   # in, out or both

crates/tern-broker/broker.example.toml in the source tree is a commented
copy of this file.";

pub(crate) const EXAMPLE: &str = "\
Examples:
  $ tern broker
  $ tern broker --tcp 0.0.0.0:1883 --tcp [::]:1883 --log debug
  $ tern broker --config broker.toml --ws 127.0.0.1:9001
  $ tern passwd -c passwd alice && tern broker --password-file passwd --acl-file acl
  $ tern broker --tls 0.0.0.0:8883 --cert server.pem --key server.key \\
        --cafile ca.pem --require-certificate --use-identity-as-username

Then, with mosquitto's clients:
  $ mosquitto_sub -h 127.0.0.1 -p 1883 -t 'sensors/#' -V mqttv5 &
  $ mosquitto_pub -h 127.0.0.1 -p 1883 -t sensors/kitchen -m 21.5";

/// `tern broker`'s options.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// Listen for MQTT over TCP on IP:PORT (repeatable). Listeners given on
    /// the command line replace those of the settings file and the defaults:
    /// `--tcp` alone opens no WebSocket listener.
    #[arg(long = "tcp", value_name = "IP:PORT")]
    tcp: Vec<SocketAddr>,
    /// Listen for MQTT over WebSocket on IP:PORT (repeatable; path from the
    /// settings file, default /mqtt). Replaces the configured listeners like
    /// `--tcp`.
    #[arg(long = "ws", value_name = "IP:PORT")]
    ws: Vec<SocketAddr>,
    /// Listen for MQTT over TLS on IP:PORT (repeatable; needs --cert and
    /// --key or `[tls]`). Replaces the configured listeners like `--tcp`.
    #[arg(long = "tls", value_name = "IP:PORT")]
    tls: Vec<SocketAddr>,
    /// Listen for MQTT over WebSocket over TLS on IP:PORT (repeatable).
    /// Replaces the configured listeners like `--tcp`.
    #[arg(long = "wss", value_name = "IP:PORT")]
    wss: Vec<SocketAddr>,
    /// The server's certificate chain, PEM (mosquitto's certfile).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The server's private key, PEM (mosquitto's keyfile).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// CA certificates, PEM, that sign client certificates; without it no
    /// client certificate is asked for.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by --cafile.
    #[arg(long)]
    require_certificate: bool,
    /// A TLS client certificate's Common Name is the client's user name (no
    /// password asked; a client without a certificate is refused).
    #[arg(long)]
    use_identity_as_username: bool,
    /// mosquitto's password file (written by `tern passwd` or
    /// mosquitto_passwd): a client giving a user name must give its
    /// password (refused: 0x86, MQTT 3.1.1 return code 4). Without
    /// --allow-anonymous, clients without a user name are then refused
    /// (0x87, return code 5). Users with a SCRAM line (`tern passwd
    /// --scram`) may also use MQTT 5 enhanced authentication, method
    /// SCRAM-SHA-256. Replaces `[security] password_file`.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// mosquitto's ACL file: what each user, and anonymous clients, may
    /// publish (`write`; refused: MQTT 5 PUBACK/PUBREC 0x87, MQTT 3.x
    /// acknowledged and dropped) and receive (`read`; each delivery,
    /// retained messages and wills included, is checked). Replaces
    /// `[security] acl_file`.
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect: `true` or `false`
    /// (default: true without a password file, false with one). Replaces
    /// `[security] allow_anonymous`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_anonymous: Option<bool>,
    /// Serve monitoring over HTTP on IP:PORT: `/metrics` (Prometheus /
    /// OpenMetrics text), `/health` (with the storage state), and a live
    /// dashboard at `/`. Off by
    /// default; no authentication, so bind it to loopback or a private
    /// network. Replaces `[metrics] listen`.
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<SocketAddr>,
    /// Keep sessions that outlive their connection (Clean Session 0, or a
    /// Session Expiry Interval), their subscriptions, the QoS 1/2 messages
    /// queued or in flight to them until acknowledged, and retained
    /// messages in this directory (created if missing), so they survive a
    /// restart, SIGTERM or kill -9. With `[storage] sync = "always"` (the
    /// default) a CONNACK, SUBACK, UNSUBACK, PUBACK or PUBREC that promises
    /// stored state is sent only after it is fsynced (survives a power
    /// cut); with "interval", once written (survives kill -9; a machine
    /// crash loses at most sync_interval_ms). Incoming QoS 2 state, wills,
    /// user names, QoS 0 messages (with `queue_qos0`) and expiry deadlines
    /// (which count the time the broker was down) are kept too. Without it,
    /// everything is in memory only.
    /// Replaces `[storage] dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Read settings (listeners and limits) from this TOML file. SIGHUP
    /// reads its `[limits]` again.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check this settings file and the files it names (password, ACL,
    /// TLS), print the effective settings (flags applied, every default
    /// written out) and exit: 0 if the broker would start with them, 1
    /// with the problem (file, key and line) otherwise. Starts nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Log level or filter: error, warn, info (default), debug, trace, or a
    /// tracing filter like `tern_broker=debug`. Overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    /// Log lines as `text` (the default, for people) or `json` (one object
    /// per line, for log collectors). Every refusal (authentication, ACL,
    /// limit, malformed packet) is one line at level WARN with the client
    /// id, the peer address and the reason code.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Worker threads for the sockets (0: one per CPU). The broker's core is
    /// one task whatever this says; one thread (the default) saves the
    /// cross-thread wake-ups that cost latency: on a 2-core machine
    /// 1→1 QoS 1 latency p50 23 µs with 1 thread against 77 µs with 2,
    /// at the same throughput. More pay on larger machines with many busy
    /// connections.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Once every listener is bound, write the process id and the bound
    /// addresses to this file as JSON (`{"pid": N, "tcp": [..], "ws": [..],
    /// "tls": [..], "wss": [..]}`), for programs that start the broker on port 0. Written to a temporary
    /// file beside it and renamed, so a reader never sees half of it.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Join a cluster of Tern brokers through these NATS servers
    /// (comma-separated `nats://HOST:PORT`): messages published here reach
    /// matching subscribers on every node, and retained messages are seen
    /// from every node. Needs `--node-id`. Replaces `[cluster] servers`.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    cluster: Vec<String>,
    /// This node's name in the cluster: unique, letters, digits, `-`, `_`.
    /// Replaces `[cluster] node_id`.
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
}

impl BrokerArgs {
    /// The settings the file and the flags give.
    fn settings(&self) -> Result<BrokerSettings, Failure> {
        let mut settings = match self.config.as_ref().or(self.check_config.as_ref()) {
            Some(path) => BrokerSettings::load(path).map_err(|e| failure(e.to_string()))?,
            None => BrokerSettings::default(),
        };
        if !self.tcp.is_empty()
            || !self.ws.is_empty()
            || !self.tls.is_empty()
            || !self.wss.is_empty()
        {
            settings.listeners.tcp = self.tcp.clone();
            settings.listeners.ws = self.ws.clone();
            settings.listeners.tls = self.tls.clone();
            settings.listeners.wss = self.wss.clone();
        }
        let tls = &mut settings.tls;
        for (flag, setting) in [
            (&self.cert, &mut tls.cert),
            (&self.key, &mut tls.key),
            (&self.cafile, &mut tls.cafile),
        ] {
            if let Some(path) = flag {
                *setting = Some(path.clone());
            }
        }
        tls.require_certificate |= self.require_certificate;
        tls.use_identity_as_username |= self.use_identity_as_username;
        let security = &mut settings.security;
        if let Some(path) = &self.password_file {
            security.password_file = Some(path.clone());
        }
        if let Some(path) = &self.acl_file {
            security.acl_file = Some(path.clone());
        }
        if let Some(allow) = self.allow_anonymous {
            security.allow_anonymous = Some(allow);
        }
        if let Some(addr) = self.metrics {
            settings.metrics.listen = Some(addr);
        }
        if let Some(dir) = &self.data_dir {
            settings.storage.dir = Some(dir.clone());
        }
        if !self.cluster.is_empty() {
            settings.cluster.servers = self.cluster.clone();
        }
        if let Some(node) = &self.node_id {
            settings.cluster.node_id = Some(node.clone());
        }
        cluster_settings(&settings)?;
        Ok(settings)
    }
}

/// The cluster link's settings, if `[cluster]` (or `--cluster`) names
/// servers; an error names what is wrong.
fn cluster_settings(
    settings: &BrokerSettings,
) -> Result<Option<tern_cluster::ClusterSettings>, Failure> {
    let c = &settings.cluster;
    if c.servers.is_empty() {
        if c.node_id.is_some() {
            return Err(failure(
                "--node-id (or [cluster] node_id) without --cluster (or [cluster] servers)".into(),
            ));
        }
        return Ok(None);
    }
    let Some(node) = &c.node_id else {
        return Err(failure(
            "--cluster (or [cluster] servers) needs --node-id NAME (or [cluster] node_id)".into(),
        ));
    };
    let mut cs = tern_cluster::ClusterSettings::new(c.servers.clone(), node.clone());
    if let Some(prefix) = &c.prefix {
        cs.prefix = prefix.clone();
    }
    if let Some(r) = c.retained_replicas {
        cs.retained_replicas = Some(r);
    }
    cs.validate().map_err(failure)?;
    Ok(Some(cs))
}

fn failure(message: String) -> Failure {
    Failure { message, status: 1 }
}

/// Runs the broker until Ctrl-C or SIGTERM (or checks its settings).
pub(crate) fn run(args: &BrokerArgs) -> Result<(), Failure> {
    let settings = args.settings()?;
    if args.check_config.is_some() {
        settings.check_files().map_err(failure)?;
        print!("{}", settings.to_toml());
        return Ok(());
    }
    init_logging(args.log.as_deref(), args.log_format)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        // Before the `listening` lines: a SIGTERM right after them is graceful.
        let signal = server::shutdown_signal();
        let bridge_settings = settings.bridge.clone();
        let cluster = cluster_settings(&settings)?;
        let (link, peer) = match cluster {
            Some(_) => {
                let (link, peer) = server::cluster_link();
                (Some(link), Some(peer))
            }
            None => (None, None),
        };
        let running = server::start_held(settings, link)
            .await
            .map_err(|e| failure(e.to_string()))?;
        // The cluster link joins NATS once the core runs (it loads the
        // retained messages into it); a node that cannot reach NATS does
        // not start.
        let _cluster = match (cluster, peer) {
            (Some(cs), Some(peer)) => {
                let node = cs.node_id.clone();
                let c = tern_cluster::connect(cs, peer)
                    .await
                    .map_err(|e| failure(e.to_string()))?;
                tracing::info!("cluster: node {node} joined");
                Some(c)
            }
            _ => None,
        };
        // The bridges' local clients connect in-process, so they start
        // once the core runs; they stop before it does, so each can say
        // goodbye to its remote.
        let bridges = tern_bridge::Bridges::start(running.local_connector(), &bridge_settings);
        // Clients get in once the bridges' local subscriptions exist, so
        // nothing published on an `out` topic slips past them (mosquitto
        // subscribes its bridges before serving anyone).
        if tokio::time::timeout(BRIDGES_READY, bridges.local_ready())
            .await
            .is_err()
        {
            tracing::warn!(
                "bridges not subscribed locally after {BRIDGES_READY:?}: listening anyway"
            );
        }
        running.open_listeners();
        // Tests and users with port 0 read these lines to find the ports.
        let mut out = std::io::stdout().lock();
        for addr in running.tcp_addrs() {
            let _ = writeln!(out, "listening tcp {addr}");
        }
        for addr in running.ws_addrs() {
            let _ = writeln!(out, "listening ws {addr}");
        }
        for addr in running.tls_addrs() {
            let _ = writeln!(out, "listening tls {addr}");
        }
        for addr in running.wss_addrs() {
            let _ = writeln!(out, "listening wss {addr}");
        }
        if let Some(addr) = running.metrics_addr() {
            let _ = writeln!(out, "listening metrics {addr}");
        }
        let _ = out.flush();
        drop(out);
        if let Some(path) = &args.ready_file {
            write_ready_file(path, &running)?;
        }
        // SIGHUP applies the settings file's `[[bridge]]` tables again.
        let (stop_bridges, bridges_stopped) = tokio::sync::oneshot::channel::<()>();
        let bridges = tokio::spawn(bridges.run_until(args.config.clone(), async move {
            let _ = bridges_stopped.await;
        }));
        running
            .run_until(async move {
                signal.await;
                let _ = stop_bridges.send(());
                let _ = bridges.await;
            })
            .await;
        Ok(())
    })
}

/// Writes the readiness file: to `PATH.tmp` first, then renamed over
/// `PATH`, which is atomic on one file system.
fn write_ready_file(path: &Path, running: &server::Running) -> Result<(), Failure> {
    let list = |addrs: &[SocketAddr]| addrs.iter().map(ToString::to_string).collect::<Vec<_>>();
    let text = serde_json::json!({
        "pid": std::process::id(),
        "tcp": list(running.tcp_addrs()),
        "ws": list(running.ws_addrs()),
        "tls": list(running.tls_addrs()),
        "wss": list(running.wss_addrs()),
        "metrics": running.metrics_addr().map(|a| a.to_string()),
    })
    .to_string();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| failure(format!("--ready-file {}: {e}", path.display())))
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_logging(level: Option<&str>, format: LogFormat) -> Result<(), Failure> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| failure(format!("--log {level}: {e}")))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}
