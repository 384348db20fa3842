//! The NATS link: one task that carries a broker's [`ClusterPeer`] over a
//! NATS connection (see the crate docs for the subjects).
//!
//! ```text
//!   broker core ──interest──▶ link ──SUB/UNSUB tern.m.<filter>, PUB tern.i.<node>──▶ NATS
//!   broker core ──messages──▶ link ──PUB tern.m.<topic> / tern.r.<topic>──────────▶ NATS
//!   broker core ◀──inputs──── link ◀──messages, peers' interest───────────────────── NATS
//! ```
//!
//! One task owns all link state (this node's NATS subscriptions, the peers'
//! interest, the copy filter), so nothing is shared but counters. Each
//! NATS subscription has a small forwarding task that feeds one channel
//! back into it.

use crate::dedupe::Dedupe;
use crate::envelope::{Envelope, Interest};
use crate::sessions::{Claims, SessionStats};
use crate::subject::{filter_subjects, topic_subject, valid_node_id};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tern_broker::ClusterOutput;
use tern_broker::server::{ClusterInput, ClusterPeer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How a node joins the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// NATS servers (`nats://host:port`); the client also learns the
    /// cluster's other servers from them.
    pub servers: Vec<String>,
    /// This node's name: unique in the cluster; letters, digits, `-`, `_`.
    pub node_id: String,
    /// The subject prefix (several clusters can share one NATS).
    pub prefix: String,
    /// How often this node announces its interest (its heartbeat); a peer
    /// silent for three of these is taken as gone.
    pub heartbeat: Duration,
    /// Keep retained messages in a JetStream stream, so a node that starts
    /// later still sees them; its replicas (1..=5).
    pub retained_replicas: Option<usize>,
}

impl ClusterSettings {
    /// Settings with the defaults: prefix `tern`, a 1 s heartbeat,
    /// retained messages in JetStream with 1 replica.
    pub fn new(servers: Vec<String>, node_id: impl Into<String>) -> Self {
        Self {
            servers,
            node_id: node_id.into(),
            prefix: "tern".into(),
            heartbeat: Duration::from_secs(1),
            retained_replicas: Some(1),
        }
    }

    /// Checks the settings; the error names the problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("cluster: no NATS server given (--cluster nats://HOST:PORT)".into());
        }
        if !valid_node_id(&self.node_id) {
            return Err(format!(
                "cluster: node id {:?} must be 1 to 64 letters, digits, '-' or '_' (--node-id)",
                self.node_id
            ));
        }
        if !valid_node_id(&self.prefix) {
            return Err(format!(
                "cluster: prefix {:?} must be letters, digits, '-' or '_'",
                self.prefix
            ));
        }
        if self.heartbeat.is_zero() {
            return Err("cluster: heartbeat must be more than 0".into());
        }
        if let Some(r) = self.retained_replicas {
            if !(1..=5).contains(&r) {
                return Err(format!("cluster: retained_replicas {r} must be 1 to 5"));
            }
        }
        Ok(())
    }
}

/// What the link did (for tests, `cargo xtask cluster` and logs).
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Messages published to NATS.
    pub published: AtomicU64,
    /// Messages taken from NATS and handed to the broker.
    pub received: AtomicU64,
    /// Copies dropped (overlapping subscriptions).
    pub duplicates: AtomicU64,
    /// Payloads that did not decode, or could not be encoded.
    pub malformed: AtomicU64,
    /// Retained messages loaded from JetStream at start.
    pub retained_loaded: AtomicU64,
    /// Interest announcements published.
    pub announcements: AtomicU64,
}

/// Why the link could not start.
#[derive(Debug)]
pub enum ClusterError {
    /// Bad settings.
    Settings(String),
    /// NATS could not be reached.
    Connect(String),
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterError::Settings(why) => f.write_str(why),
            ClusterError::Connect(why) => write!(f, "cluster: cannot reach NATS: {why}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// A running link.
#[derive(Debug)]
pub struct Cluster {
    stats: Arc<LinkStats>,
    sessions: Arc<SessionStats>,
    task: JoinHandle<()>,
}

impl Cluster {
    /// Its counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    /// Its session moves, counted.
    pub fn session_stats(&self) -> Arc<SessionStats> {
        self.sessions.clone()
    }

    /// Stops the link.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// A message from one of this node's NATS subscriptions.
type Incoming = async_nats::Message;

/// Connects to NATS, loads the retained messages (with JetStream), and
/// runs the link in a task until the broker's end goes away.
pub async fn connect(
    settings: ClusterSettings,
    peer: ClusterPeer,
) -> Result<Cluster, ClusterError> {
    settings.validate().map_err(ClusterError::Settings)?;
    let counters = peer.counters.clone();
    let watched = counters.clone();
    let told = peer.input.clone();
    let client = async_nats::ConnectOptions::new()
        // `/metrics` (tern_cluster_connected), `$SYS/broker/cluster/connected`
        // and the log say whether NATS is reachable, on each change.
        .event_callback(move |event| {
            let watched = watched.clone();
            let told = told.clone();
            async move {
                let up = match event {
                    async_nats::Event::Connected => true,
                    async_nats::Event::Disconnected => false,
                    _ => return,
                };
                if watched.connected.swap(up, Ordering::Relaxed) != up {
                    if up {
                        tracing::info!("cluster: connected to NATS");
                    } else {
                        tracing::warn!("cluster: disconnected from NATS");
                    }
                }
                let _ = told.send(ClusterInput::Connected(up)).await;
            }
        })
        // A node never hears its own messages (the origin check below is
        // the second guard).
        .no_echo()
        .name(format!("tern-{}", settings.node_id))
        .connect(settings.servers.as_slice())
        .await
        .map_err(|e| ClusterError::Connect(format!("{}: {e}", settings.servers.join(","))))?;
    counters.connected.store(true, Ordering::Relaxed);
    let _ = peer.input.send(ClusterInput::Connected(true)).await;
    let stats = Arc::new(LinkStats::default());
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let (incoming_tx, incoming_rx) = mpsc::channel(4096);
    let p = &settings.prefix;
    // Every node keeps every retained message; peers' interest; sync asks.
    let retained = forward(&client, format!("{p}.r.>"), incoming_tx.clone())
        .await
        .map_err(|e| ClusterError::Connect(e.to_string()))?;
    let announcements = client
        .subscribe(format!("{p}.i.*"))
        .await
        .map_err(|e| ClusterError::Connect(e.to_string()))?;
    let sync = client
        .subscribe(format!("{p}.sync"))
        .await
        .map_err(|e| ClusterError::Connect(e.to_string()))?;
    let releases = client
        .subscribe(format!("{p}.s.{}", settings.node_id))
        .await
        .map_err(|e| ClusterError::Connect(e.to_string()))?;
    let session_stats = Arc::new(SessionStats::default());
    let claims = Claims {
        client: client.clone(),
        kv: crate::sessions::bucket(&client, p, settings.retained_replicas.unwrap_or(1)).await,
        prefix: p.clone(),
        node_id: settings.node_id.clone(),
        input: peer.input.clone(),
        stats: session_stats.clone(),
    };
    if let Some(replicas) = settings.retained_replicas {
        load_retained(&client, &settings, replicas, &peer.input, &stats).await;
    }
    let mut link = Link {
        client,
        settings,
        stats: stats.clone(),
        counters,
        incarnation,
        seq: 0,
        generation: incarnation,
        local: BTreeMap::new(),
        peers: BTreeMap::new(),
        dedupe: Dedupe::default(),
        incoming_tx,
        claims,
        _retained: retained,
    };
    // Ask the peers for their interest, and tell ours (empty yet).
    let _ = link
        .client
        .publish(
            format!("{}.sync", link.settings.prefix),
            bytes::Bytes::new(),
        )
        .await;
    link.announce().await;
    let task = tokio::spawn(link.run(peer, incoming_rx, announcements, sync, releases));
    Ok(Cluster {
        stats,
        sessions: session_stats,
        task,
    })
}

/// Subscribes to `subject` and forwards its messages into `to` from a task
/// of its own (dropped with the task: the subscription ends).
async fn forward(
    client: &async_nats::Client,
    subject: String,
    to: mpsc::Sender<Incoming>,
) -> Result<JoinHandle<()>, async_nats::SubscribeError> {
    let mut sub = client.subscribe(subject).await?;
    Ok(tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if to.send(m).await.is_err() {
                break;
            }
        }
    }))
}

/// Retained messages are also kept in a JetStream stream (one message per
/// subject: the last); a starting node reads the last of each, so it sees
/// what was retained before it joined.
async fn load_retained(
    client: &async_nats::Client,
    settings: &ClusterSettings,
    replicas: usize,
    input: &mpsc::Sender<ClusterInput>,
    stats: &LinkStats,
) {
    use async_nats::jetstream::{self, consumer, stream};
    let js = jetstream::new(client.clone());
    let name = format!("{}_RETAINED", settings.prefix.to_uppercase());
    let stream = match js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.r.>", settings.prefix)],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "cluster: no JetStream stream {name} for retained messages ({e}): a node sees only those retained after it joined"
            );
            return;
        }
    };
    let mut stream = stream;
    let count = match stream.info().await {
        Ok(info) => info.state.messages,
        Err(e) => {
            tracing::warn!("cluster: stream {name}: {e}");
            return;
        }
    };
    if count == 0 {
        return;
    }
    let consumer = match stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            filter_subject: format!("{}.r.>", settings.prefix),
            ..Default::default()
        })
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cluster: stream {name}: {e}");
            return;
        }
    };
    let Ok(mut messages) = consumer.messages().await else {
        return;
    };
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        let m = tokio::select! {
            m = messages.next() => m,
            () = &mut deadline => {
                tracing::warn!("cluster: loading retained messages took over 10 s; going on");
                None
            }
        };
        let Some(Ok(m)) = m else { break };
        let pending = m.info().map_or(0, |i| i.pending);
        match Envelope::decode(m.payload.clone()) {
            Ok(e) => {
                stats.retained_loaded.fetch_add(1, Ordering::Relaxed);
                let _ = input.send(ClusterInput::Publish(e.publish)).await;
            }
            Err(_) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if pending == 0 {
            break;
        }
    }
    tracing::info!(
        "cluster: {} retained messages loaded from {name}",
        stats.retained_loaded.load(Ordering::Relaxed)
    );
}

/// A peer as this node knows it.
#[derive(Debug)]
struct Peer {
    generation: u64,
    filters: Vec<String>,
    seen: Instant,
}

struct Link {
    client: async_nats::Client,
    settings: ClusterSettings,
    stats: Arc<LinkStats>,
    /// The broker's counters, for `/metrics`.
    counters: Arc<tern_broker::server::ClusterCounters>,
    incarnation: u64,
    seq: u64,
    /// This node's announcement number (starts at its incarnation, so a
    /// restarted node's are newer).
    generation: u64,
    /// This node's filters and the tasks that hold their subscriptions.
    local: BTreeMap<String, Vec<JoinHandle<()>>>,
    peers: BTreeMap<String, Peer>,
    dedupe: Dedupe,
    incoming_tx: mpsc::Sender<Incoming>,
    /// Session claims and releases (`sessions.rs`), each run in a task.
    claims: Claims,
    _retained: JoinHandle<()>,
}

impl Link {
    async fn run(
        mut self,
        mut peer: ClusterPeer,
        mut incoming: mpsc::Receiver<Incoming>,
        mut announcements: async_nats::Subscriber,
        mut sync: async_nats::Subscriber,
        mut releases: async_nats::Subscriber,
    ) {
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                change = peer.interest.recv() => {
                    let Some(change) = change else { break };
                    self.interest(change).await;
                    // Changes come in bursts (a client's SUBSCRIBE of many
                    // filters, a session ending): announce once after them.
                    while let Ok(change) = peer.interest.try_recv() {
                        self.interest(change).await;
                    }
                    self.announce().await;
                }
                Some(m) = incoming.recv() => self.incoming(m, &peer.input).await,
                message = peer.messages.recv() => {
                    let Some(p) = message else { break };
                    self.publish(p).await;
                }
                Some(m) = announcements.next() => self.announcement(m, &peer.input).await,
                Some(_) = sync.next() => self.announce().await,
                Some(m) = releases.next() => {
                    tokio::spawn(self.claims.clone().release(m));
                }
                _ = heartbeat.tick() => {
                    self.announce().await;
                    self.expire(&peer.input).await;
                }
            }
        }
        // The broker stopped: say so, so peers drop this node's interest now.
        self.local.clear();
        self.announce().await;
        let _ = self.client.flush().await;
    }

    /// This node's interest in a filter begins or ends, or a client
    /// identifier is claimed.
    async fn interest(&mut self, change: ClusterOutput) {
        let (filter, on) = match change {
            ClusterOutput::Interest { filter, on } => (filter, on),
            ClusterOutput::Claim {
                client_id,
                clean_start,
            } => {
                let alive = self.peers.keys().cloned().collect();
                let claim =
                    self.claims
                        .clone()
                        .claim(client_id.as_str().to_string(), clean_start, alive);
                tokio::spawn(claim);
                return;
            }
            _ => return,
        };
        let filter = filter.as_str().to_string();
        if on {
            let mut tasks = Vec::new();
            for subject in filter_subjects(&format!("{}.m", self.settings.prefix), &filter) {
                match forward(&self.client, subject.clone(), self.incoming_tx.clone()).await {
                    Ok(t) => tasks.push(t),
                    Err(e) => tracing::warn!("cluster: cannot subscribe to {subject}: {e}"),
                }
            }
            if let Some(old) = self.local.insert(filter, tasks) {
                old.iter().for_each(JoinHandle::abort);
            }
        } else if let Some(tasks) = self.local.remove(&filter) {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }

    /// Publishes this node's whole interest.
    async fn announce(&mut self) {
        self.generation += 1;
        let interest = Interest {
            generation: self.generation,
            filters: self.local.keys().cloned().collect(),
        };
        let subject = format!("{}.i.{}", self.settings.prefix, self.settings.node_id);
        if self
            .client
            .publish(subject, interest.encode())
            .await
            .is_ok()
        {
            self.stats.announcements.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A message published on this node goes to the cluster, once.
    async fn publish(&mut self, publish: tern_codec::Publish) {
        self.seq += 1;
        let kind = if publish.retain { "r" } else { "m" };
        let subject = topic_subject(
            &format!("{}.{kind}", self.settings.prefix),
            publish.topic.as_str(),
        );
        let envelope = Envelope {
            origin: self.settings.node_id.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            publish,
        };
        let Ok(payload) = envelope.encode() else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.client.publish(subject, payload).await {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("cluster: publish: {e}"),
        }
    }

    /// A message from one of this node's subscriptions.
    async fn incoming(&mut self, m: Incoming, input: &mpsc::Sender<ClusterInput>) {
        let Ok(e) = Envelope::decode(m.payload) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if e.origin == self.settings.node_id {
            return;
        }
        if !self.dedupe.first(&e.origin, e.incarnation, e.seq) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let _ = input.send(ClusterInput::Publish(e.publish)).await;
    }

    /// A peer's interest: the difference from what it said before goes to
    /// the broker.
    async fn announcement(&mut self, m: async_nats::Message, input: &mpsc::Sender<ClusterInput>) {
        let Some(node) = m.subject.as_str().rsplit('.').next().map(str::to_string) else {
            return;
        };
        if node == self.settings.node_id {
            return;
        }
        let Ok(interest) = Interest::decode(m.payload) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = Instant::now();
        let (old, fresh) = match self.peers.get_mut(&node) {
            Some(p) if p.generation >= interest.generation => {
                p.seen = now;
                return;
            }
            Some(p) => {
                p.seen = now;
                p.generation = interest.generation;
                (std::mem::take(&mut p.filters), false)
            }
            None => {
                self.peers.insert(
                    node.clone(),
                    Peer {
                        generation: interest.generation,
                        filters: Vec::new(),
                        seen: now,
                    },
                );
                (Vec::new(), true)
            }
        };
        if fresh {
            tracing::info!("cluster: node {node} joined");
        }
        let mut new = interest.filters;
        new.sort();
        new.dedup();
        for f in old.iter().filter(|f| new.binary_search(f).is_err()) {
            let _ = input
                .send(ClusterInput::Interest {
                    node: node.clone(),
                    filter: f.clone(),
                    on: false,
                })
                .await;
        }
        for f in new.iter().filter(|f| old.binary_search(f).is_err()) {
            let _ = input
                .send(ClusterInput::Interest {
                    node: node.clone(),
                    filter: f.clone(),
                    on: true,
                })
                .await;
        }
        if let Some(p) = self.peers.get_mut(&node) {
            p.filters = new;
        }
    }

    /// Peers silent for three heartbeats are gone.
    async fn expire(&mut self, input: &mpsc::Sender<ClusterInput>) {
        let limit = self.settings.heartbeat * 3;
        let now = Instant::now();
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > limit)
            .map(|(n, _)| n.clone())
            .collect();
        for node in gone {
            tracing::warn!("cluster: node {node} silent for {limit:?}: taken as gone");
            self.peers.remove(&node);
            self.dedupe.forget(&node);
            let _ = input.send(ClusterInput::NodeGone(node)).await;
        }
    }
}
