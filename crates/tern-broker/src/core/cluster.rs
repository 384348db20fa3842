//! The cluster seam (issue 18): what the core tells a cluster link and what
//! it takes from one. The core knows nothing of NATS or any transport.
//!
//! With [`BrokerConfig::cluster`](super::BrokerConfig::cluster) on, the core:
//! - counts its local interest: how many subscriptions (a session's filter,
//!   a shared one by the filter it shares) stand on each distinct filter,
//!   and tells the shell when a filter gains its first or loses its last
//!   ([`ClusterOutput::Interest`]);
//! - keeps the other nodes' interest, as the shell reports it
//!   ([`Broker::handle_cluster_interest`](super::Broker::handle_cluster_interest)),
//!   in a subscription tree, and hands out ([`ClusterOutput::Publish`]) each
//!   message published on this node that matches some other node's interest,
//!   or is retained (every node keeps every retained message), once;
//! - routes a message from the cluster
//!   ([`Broker::handle_cluster_publish`](super::Broker::handle_cluster_publish))
//!   to its local subscribers and retained index and never hands it out
//!   again, so nothing echoes.
//!
//! Invariants:
//! - With the cluster off none of this exists: no counting, no matching, no
//!   output (the field is `None`).
//! - `$SYS` is per node: its filters are not announced and its topics never
//!   leave the node.
//! - Iteration is ordered (BTreeMap), so a simulation replays identically.

use super::sessions::SessionKey;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tern_codec::{MqttString, Publish};
use tern_topic::{MatchBuffer, SubscriptionFilter, SubscriptionTree, TopicName};

/// What the core asks of its cluster link ([`Broker::poll_cluster`](super::Broker::poll_cluster)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterOutput {
    /// This node's interest in `filter` begins (`on`: its first local
    /// subscription) or ends (its last one went).
    Interest {
        /// The filter (never a `$share/...` form: the filter it shares).
        filter: MqttString,
        /// Whether the interest begins.
        on: bool,
    },
    /// Publish this message to the cluster, once. Its packet id is `None`;
    /// `qos` and `retain` are as published on this node.
    Publish(Publish),
    /// A client connects with an identifier this node holds no session
    /// for: make this node its owner, have the old owner close its
    /// connection and hand its session over (unless `clean_start`), then
    /// answer with [`Broker::handle_cluster_claimed`](super::Broker::handle_cluster_claimed).
    /// Its CONNECT waits for the answer (see `handover.rs`).
    Claim {
        /// The client identifier.
        client_id: MqttString,
        /// The CONNECT asked for a clean start: the old session is
        /// discarded, not handed over.
        clean_start: bool,
    },
}

/// Whether a filter or topic stays on its node.
fn node_local(bytes: &[u8]) -> bool {
    bytes.starts_with(b"$SYS")
}

/// Local interest: distinct filters, counted by the subscriptions on them.
#[derive(Debug, Default)]
pub(super) struct LocalInterest {
    /// Per filter (the shared filter for a shared subscription), how many
    /// subscriptions stand on it.
    counts: BTreeMap<MqttString, u32>,
    /// Per session, its subscriptions' full filters (with any `$share/g/`)
    /// and the filter each counts under: what to uncount when it ends.
    by_session: BTreeMap<SessionKey, BTreeMap<MqttString, MqttString>>,
    /// Changes not yet polled.
    changes: VecDeque<ClusterOutput>,
}

impl LocalInterest {
    /// `key` holds a subscription to `full` (parsed as `parsed`); a
    /// replaced subscription counts once.
    pub(super) fn add(&mut self, key: SessionKey, full: &MqttString, parsed: &SubscriptionFilter) {
        let filter = parsed.filter().as_bytes();
        if node_local(filter) {
            return;
        }
        let filters = self.by_session.entry(key).or_default();
        if filters.contains_key(full) {
            return;
        }
        let Ok(filter) = MqttString::from_utf8(bytes::Bytes::copy_from_slice(filter)) else {
            return;
        };
        filters.insert(super::compact(full), filter.clone());
        let count = self.counts.entry(filter.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.changes
                .push_back(ClusterOutput::Interest { filter, on: true });
        }
    }

    /// `key` no longer holds its subscription to `full`.
    pub(super) fn remove(&mut self, key: SessionKey, full: &MqttString) {
        let Some(filters) = self.by_session.get_mut(&key) else {
            return;
        };
        let Some(filter) = filters.remove(full) else {
            return;
        };
        if filters.is_empty() {
            self.by_session.remove(&key);
        }
        self.uncount(filter);
    }

    /// Session `key` ended: all its subscriptions go.
    pub(super) fn remove_session(&mut self, key: SessionKey) {
        for (_, filter) in self.by_session.remove(&key).unwrap_or_default() {
            self.uncount(filter);
        }
    }

    fn uncount(&mut self, filter: MqttString) {
        if let Some(count) = self.counts.get_mut(&filter) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&filter);
                self.changes
                    .push_back(ClusterOutput::Interest { filter, on: false });
            }
        }
    }

    /// The distinct filters this node has interest in, in order.
    pub(super) fn filters(&self) -> impl Iterator<Item = &MqttString> {
        self.counts.keys()
    }

    pub(super) fn poll(&mut self) -> Option<ClusterOutput> {
        self.changes.pop_front()
    }
}

/// Other nodes' interest and the messages to hand out.
#[derive(Debug, Default)]
pub(super) struct Remote {
    tree: SubscriptionTree<Arc<str>, ()>,
    match_buf: MatchBuffer,
    nodes: BTreeMap<Arc<str>, usize>,
    out: VecDeque<ClusterOutput>,
    /// Messages handed out.
    pub(super) sent: u64,
    /// Messages taken in.
    pub(super) received: u64,
    /// CONNECTs waiting for their claim, by client identifier.
    pub(super) claims: BTreeMap<String, Vec<super::handover::Parked>>,
    /// Claims asked for.
    pub(super) claims_made: u64,
    /// Sessions that arrived from another node.
    pub(super) sessions_in: u64,
    /// Sessions that left for another node.
    pub(super) sessions_out: u64,
    /// Whether the link reaches the cluster (`None` until it says).
    pub(super) connected: Option<bool>,
}

impl Remote {
    /// Node `node`'s interest in `filter` begins or ends.
    pub(super) fn set_interest(&mut self, node: &str, filter: &SubscriptionFilter, on: bool) {
        if filter.group().is_some() || node_local(filter.filter().as_bytes()) {
            return;
        }
        let key = match self.nodes.get_key_value(node) {
            Some((k, _)) => k.clone(),
            None => Arc::from(node),
        };
        let changed = if on {
            self.tree.insert(key.clone(), filter, ()).is_none()
        } else {
            self.tree.remove(&key, filter).is_some()
        };
        if !changed {
            return;
        }
        let n = self.nodes.entry(key.clone()).or_insert(0);
        if on {
            *n += 1;
        } else {
            *n -= 1;
            if *n == 0 {
                self.nodes.remove(&key);
            }
        }
    }

    /// Node `node` is gone: all its interest goes.
    pub(super) fn remove_node(&mut self, node: &str) {
        if let Some((key, _)) = self.nodes.remove_entry(node) {
            self.tree.remove_client(&key);
        }
    }

    /// How many filters other nodes have interest in (each node's counted).
    pub(super) fn len(&self) -> usize {
        self.tree.len()
    }

    /// Hands out a message published on this node, if another node wants
    /// it (or it is retained); returns whether it did.
    pub(super) fn offer(&mut self, topic: &TopicName, publish: &Publish) -> bool {
        if node_local(topic.as_bytes()) {
            return false;
        }
        if !publish.retain && self.tree.matches(topic, &mut self.match_buf).is_empty() {
            return false;
        }
        let properties = if publish.properties.is_allocated() {
            super::retained::forwarded_properties(&publish.properties).into()
        } else {
            tern_codec::PublishPropertiesBox::new()
        };
        self.out.push_back(ClusterOutput::Publish(Publish {
            dup: false,
            qos: publish.qos,
            retain: publish.retain,
            topic: publish.topic.clone(),
            packet_id: None,
            properties,
            payload: publish.payload.clone(),
        }));
        self.sent += 1;
        true
    }

    pub(super) fn poll(&mut self) -> Option<ClusterOutput> {
        self.out.pop_front()
    }

    /// Queues an output.
    pub(super) fn push(&mut self, out: ClusterOutput) {
        self.out.push_back(out);
    }
}

/// What the cluster did, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Messages handed out to the cluster ([`ClusterOutput::Publish`]).
    pub sent: u64,
    /// Messages taken in from the cluster.
    pub received: u64,
    /// Filters other nodes have interest in (each node's counted).
    pub remote_filters: u64,
    /// Distinct filters this node has interest in.
    pub local_filters: u64,
    /// Claims asked for ([`ClusterOutput::Claim`]).
    pub claims: u64,
    /// Sessions that arrived from another node.
    pub sessions_in: u64,
    /// Sessions that left for another node.
    pub sessions_out: u64,
}

impl super::Broker {
    // ---- cluster: input ----

    /// A message another node published (its subscribers there had it):
    /// stored if retained, routed to this node's matching subscribers at
    /// its QoS (each subscription's maximum applies), never handed out
    /// again. Ignored with the cluster off, or if its topic is not a valid
    /// topic name.
    pub fn handle_cluster_publish(&mut self, now: super::Instant, mut publish: Publish) {
        let Some(remote) = self.cluster.as_mut() else {
            return;
        };
        remote.received += 1;
        let Ok(topic) = TopicName::from_bytes(publish.topic.as_shared_bytes().clone()) else {
            return;
        };
        if node_local(topic.as_bytes()) || self.topic_over(topic.as_bytes()).is_some() {
            return;
        }
        publish.packet_id = None;
        publish.dup = false;
        self.backpressure.begin_publish();
        let _ = self.publish_local(now, None, topic, publish);
    }

    /// Node `node`'s interest in `filter` begins (`on`) or ends, as its
    /// [`ClusterOutput::Interest`] said there. Ignored with the cluster off
    /// or for a filter that does not parse.
    pub fn handle_cluster_interest(&mut self, node: &str, filter: &str, on: bool) {
        let Some(remote) = self.cluster.as_mut() else {
            return;
        };
        if let Ok(parsed) = SubscriptionFilter::parse_str(filter) {
            remote.set_interest(node, &parsed, on);
        }
    }

    /// The link's connection to the cluster came up (`up`) or went down:
    /// `$SYS/broker/cluster/connected` (retained) says 1 or 0 now, if
    /// `$SYS` is on, and at every `$SYS` tick. Ignored with the cluster off.
    pub fn handle_cluster_connected(&mut self, now: super::Instant, up: bool) {
        let Some(remote) = self.cluster.as_mut() else {
            return;
        };
        remote.connected = Some(up);
        if self.config.sys_interval.is_some() {
            self.publish_sys_value(now, "cluster/connected".into(), u8::from(up).to_string());
        }
    }

    /// Whether the cluster link reaches the cluster, as it last said
    /// (`None` with the cluster off or before it said).
    pub(super) fn cluster_connected(&self) -> Option<bool> {
        self.cluster.as_ref()?.connected
    }

    /// Node `node` left the cluster (or is presumed dead): its interest goes.
    pub fn handle_cluster_node_gone(&mut self, node: &str) {
        if let Some(remote) = self.cluster.as_mut() {
            remote.remove_node(node);
        }
    }

    // ---- cluster: output ----

    /// The next thing to tell the cluster, with [`BrokerConfig::cluster`](super::BrokerConfig::cluster)
    /// on (otherwise always `None`): interest changes first, then messages,
    /// each in the order they happened. Drain it after each input, with the
    /// other output.
    #[must_use]
    pub fn poll_cluster(&mut self) -> Option<ClusterOutput> {
        if let Some(change) = self.subscriptions.interest.as_mut()?.poll() {
            return Some(change);
        }
        self.cluster.as_mut()?.poll()
    }

    /// The distinct filters this node has interest in, in order (empty with
    /// the cluster off): what a cluster link announces in full.
    pub fn cluster_interest(&self) -> Vec<MqttString> {
        self.subscriptions
            .interest
            .as_ref()
            .map(|i| i.filters().cloned().collect())
            .unwrap_or_default()
    }

    /// Cluster counters (zero with the cluster off).
    pub fn cluster_stats(&self) -> ClusterStats {
        let Some(remote) = self.cluster.as_ref() else {
            return ClusterStats::default();
        };
        ClusterStats {
            sent: remote.sent,
            received: remote.received,
            remote_filters: remote.len() as u64,
            local_filters: self
                .subscriptions
                .interest
                .as_ref()
                .map_or(0, |i| i.filters().count() as u64),
            claims: remote.claims_made,
            sessions_in: remote.sessions_in,
            sessions_out: remote.sessions_out,
        }
    }

    /// Offers a message published on this node to the cluster; whether it
    /// went out.
    pub(super) fn offer_to_cluster(&mut self, topic: &TopicName, publish: &Publish) -> bool {
        self.cluster
            .as_mut()
            .is_some_and(|remote| remote.offer(topic, publish))
    }
}
