//! Retained messages: what the broker keeps per topic, and the index of
//! them.
//!
//! Invariants:
//! - At most one retained message per topic, the last retained PUBLISH
//!   with a payload; an empty payload removes it [MQTT-3.3.1-5]
//!   [MQTT-3.3.1-6] [MQTT-3.3.1-7].
//! - Every change goes to the [`Store`] in the same call, so the store
//!   holds what the index holds (for a restart).
//! - An expired message is never sent: it is removed when a subscription
//!   finds it.
//! - A kept message is a copy, never a slice of a read buffer.
//! - Their count and [`held_bytes`](RetainedMessage::held_bytes) stay within
//!   [`RetainedLimits`] for what clients retain (messages restored from the
//!   store at start-up are counted, not refused): a new retained message
//!   that does not fit is not kept, and what the topic held stays.
//! - A new subscription's matches wait in its connection's [`Backlog`] as
//!   references (a slot in the index and the message's number), not
//!   packets: each is read and built only when the session's queue has
//!   room for it, so a `#` subscription over many retained topics holds 16
//!   bytes per topic while it drains.
//! - Each message kept for a client's PUBLISH (or will) remembers that
//!   client's identifier (its owner, until another client's message
//!   replaces it), and `by_owner` holds each owner's count and bytes,
//!   within the per-client [`RetainedLimits`]. A durable store keeps the
//!   owner, so restored messages count again; messages published by the
//!   broker have none.

use super::Store;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use tern_codec::{MqttString, Publish, PublishProperties, QoS, SubscriptionId};
use tern_session::Instant;
use tern_topic::{RetainedIndex, RetainedSlot, TopicFilter, TopicName};

/// How many retained messages the broker keeps, and how many bytes of
/// them, across all clients (see [`RetainedMessage::held_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedLimits {
    /// Retained messages (topics) at most.
    pub max_messages: usize,
    /// Bytes at most.
    pub max_bytes: usize,
    /// Retained messages one client (by client identifier) may own: the
    /// ones whose latest retained PUBLISH on their topic was its.
    pub max_messages_per_client: usize,
    /// Bytes of retained messages one client may own.
    pub max_bytes_per_client: usize,
}

impl Default for RetainedLimits {
    /// 1,000,000 messages, 256 MiB; 100,000 messages and 64 MiB per
    /// client (mosquitto has no limit).
    fn default() -> Self {
        Self {
            max_messages: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_messages_per_client: 100_000,
            max_bytes_per_client: 64 * 1024 * 1024,
        }
    }
}

/// What [`Retained::apply`] did with a retained PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Kept (or, with an empty payload, the topic's message removed).
    Kept,
    /// Not kept: it would pass the [`RetainedLimits`].
    OverLimit,
}

/// A kept message (with the client that owns it).
#[derive(Debug)]
struct Kept {
    message: RetainedMessage,
    /// Which message this is: a number no other message kept on any topic
    /// had or will have, so a [`Backlog`] entry can tell whether its topic
    /// still holds the message it matched.
    seq: u64,
}

/// The retained messages, by topic.
#[derive(Debug)]
pub(super) struct Retained {
    index: RetainedIndex<Kept>,
    /// The sum of the messages' [`RetainedMessage::held_bytes`].
    bytes: usize,
    /// The sum of their payloads' lengths (`$SYS/broker/store/messages/bytes`).
    payload_bytes: usize,
    /// Each owner's messages and their bytes.
    by_owner: BTreeMap<MqttString, (usize, usize)>,
    /// The next [`Kept::seq`].
    next_seq: u64,
}

impl Default for Retained {
    fn default() -> Self {
        Self {
            index: RetainedIndex::new(),
            bytes: 0,
            payload_bytes: 0,
            by_owner: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl Retained {
    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// The bytes they hold, as the limits count them.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes they hold, summed message by message (the running sum
    /// [`bytes`](Self::bytes) must always equal it).
    pub(super) fn bytes_recounted(&self) -> usize {
        self.index
            .iter()
            .map(|(_, kept)| kept.message.held_bytes())
            .sum()
    }

    /// The bytes of their payloads.
    pub(super) fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// One loaded from the store at start-up: it counts against its
    /// owner's limit again.
    pub(super) fn restore(&mut self, topic: TopicName, message: RetainedMessage) {
        let held = message.held_bytes();
        self.bytes += held;
        self.payload_bytes += message.publish.payload.len();
        if let Some(owner) = &message.owner {
            let entry = self.by_owner.entry(owner.clone()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += held;
        }
        let kept = Kept {
            message,
            seq: self.seq(),
        };
        if let Some(old) = self.index.insert(topic, kept) {
            self.forget(&old);
        }
    }

    /// A fresh [`Kept::seq`].
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Removes `topic`'s message, if any; `true` if there was one.
    fn remove(&mut self, topic: &TopicName) -> bool {
        match self.index.remove(topic) {
            Some(old) => {
                self.forget(&old);
                true
            }
            None => false,
        }
    }

    /// A message left the index: it no longer counts.
    fn forget(&mut self, old: &Kept) {
        let held = old.message.held_bytes();
        self.bytes -= held;
        self.payload_bytes -= old.message.publish.payload.len();
        if let Some(owner) = &old.message.owner {
            if let Some((count, bytes)) = self.by_owner.get_mut(owner) {
                *count -= 1;
                *bytes -= held;
                if *count == 0 {
                    self.by_owner.remove(owner);
                }
            }
        }
    }

    /// How many messages, and bytes of them, `owner` owns.
    pub(super) fn owned_by(&self, owner: &[u8]) -> (usize, usize) {
        self.by_owner.get(owner).copied().unwrap_or((0, 0))
    }

    /// Applies a PUBLISH with RETAIN set to `topic` (its validated topic)
    /// at `now`, within `limits`, from `owner` (the publishing client's
    /// identifier; `None`: the broker's own).
    pub(super) fn apply(
        &mut self,
        now: Instant,
        topic: &TopicName,
        publish: &Publish,
        owner: Option<&MqttString>,
        limits: RetainedLimits,
        store: &mut dyn Store,
    ) -> Applied {
        if publish.payload.is_empty() {
            if self.remove(topic) {
                store.remove_retained(topic);
            }
            return Applied::Kept;
        }
        let mut message = RetainedMessage::new(publish, now);
        message.owner = owner.cloned();
        let held = message.held_bytes();
        let old = self.index.get(topic);
        let old_bytes = old.map(|k| k.message.held_bytes());
        let count = self.index.len() + usize::from(old.is_none());
        let bytes = self.bytes - old_bytes.unwrap_or(0) + held;
        if count > limits.max_messages || bytes > limits.max_bytes {
            return Applied::OverLimit;
        }
        if let Some(owner) = owner {
            // What it owns after this: the topic's old message counts
            // against it no more if it was its own.
            let (mut n, mut b) = self.owned_by(owner.as_bytes());
            if let Some(old) = old.filter(|k| k.message.owner.as_ref() == Some(owner)) {
                n -= 1;
                b -= old.message.held_bytes();
            }
            if n + 1 > limits.max_messages_per_client || b + held > limits.max_bytes_per_client {
                return Applied::OverLimit;
            }
        }
        store.put_retained(topic, &message);
        // The index's key shares the message's own copy of the topic: a
        // slice of the PUBLISH would keep its whole read buffer alive.
        let key = TopicName::from_bytes(message.publish.topic.as_shared_bytes().clone())
            .unwrap_or_else(|_| topic.clone());
        if let Some(owner) = &message.owner {
            let entry = self.by_owner.entry(owner.clone()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += held;
        }
        self.bytes += held;
        self.payload_bytes += message.publish.payload.len();
        let seq = self.seq();
        let kept = Kept { message, seq };
        if let Some(old) = self.index.insert(key, kept) {
            self.forget(&old);
        }
        Applied::Kept
    }

    /// The retained messages matching a new subscription's `filter`, as
    /// references for a [`Backlog`] (no packet is built here): where each
    /// sits in the index and which message it is. `allowed` says whether
    /// the subscriber may receive a topic. Expired ones are removed.
    pub(super) fn for_subscription(
        &mut self,
        now: Instant,
        filter: &TopicFilter,
        store: &mut dyn Store,
        mut allowed: impl FnMut(&TopicName) -> bool,
    ) -> Vec<(RetainedSlot, u64)> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        let mut matches = self.index.matching(filter);
        while let Some((slot, topic, kept)) = matches.next_slot() {
            if kept.message.is_expired(now) {
                expired.push(topic.clone());
                continue;
            }
            if allowed(topic) {
                out.push((slot, kept.seq));
            }
        }
        for topic in expired {
            self.remove(&topic);
            store.remove_retained(&topic);
        }
        // It waits as long as the subscriber takes to read it all: no
        // spare capacity.
        out.shrink_to_fit();
        out
    }

    /// The PUBLISH a [`Backlog`] entry stands for, as of the subscription's
    /// time `at`, with the time it is queued as of; `None` when its topic
    /// no longer holds the message it matched (removed, or replaced by a
    /// newer one, which reached the subscriber as it was published).
    fn delivery(
        &self,
        at: Instant,
        slot: RetainedSlot,
        seq: u64,
        granted: QoS,
        id: Option<SubscriptionId>,
    ) -> Option<(Publish, Instant)> {
        let message = self
            .index
            .at(slot)
            .filter(|(_, k)| k.seq == seq)
            .map(|(_, k)| &k.message)?;
        let mut p = message.for_subscriber(at, granted);
        if let Some(id) = id {
            p.properties.subscription_identifiers.push(id);
        }
        // `for_subscriber` deducted the whole seconds waited; queue it as of
        // that whole second, so the session's countdown ends when the
        // retained message's does, not up to a second later [MQTT-3.3.2-5]
        // [MQTT-3.3.2-6].
        let waited = Duration::from_secs((at - message.stored_at).as_secs());
        Some((p, message.stored_at + waited))
    }
}

/// Retained messages matched by a connection's new subscriptions and not
/// yet in its session's queue, as references into [`Retained`]: each is
/// built into a PUBLISH only when it enters the queue (see
/// [`Broker::refill_retained`](super::Broker)), so waiting costs 16 bytes
/// per message (its slot in the index and its sequence number), whatever
/// the message holds.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    batches: VecDeque<Batch>,
    len: usize,
}

/// One subscription's matches.
#[derive(Debug)]
struct Batch {
    /// When it subscribed: the messages' remaining expiry counts from here,
    /// as if they had been queued then.
    at: Instant,
    granted: QoS,
    id: Option<SubscriptionId>,
    topics: std::vec::IntoIter<(RetainedSlot, u64)>,
}

impl Backlog {
    /// Matches waiting.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a subscription's matches (from [`Retained::for_subscription`])
    /// made at `at`, to be delivered at `granted` QoS with subscription
    /// identifier `id`.
    pub(super) fn push(
        &mut self,
        at: Instant,
        granted: QoS,
        id: Option<SubscriptionId>,
        topics: Vec<(RetainedSlot, u64)>,
    ) {
        if topics.is_empty() {
            return;
        }
        self.len += topics.len();
        self.batches.push_back(Batch {
            at,
            granted,
            id,
            topics: topics.into_iter(),
        });
    }

    /// The next match still retained, built for the subscriber, with the
    /// time it is queued as of; matches whose topic changed since are
    /// skipped.
    fn next(&mut self, retained: &Retained) -> Option<(Publish, Instant)> {
        while let Some(batch) = self.batches.front_mut() {
            let Some((slot, seq)) = batch.topics.next() else {
                self.batches.pop_front();
                continue;
            };
            self.len -= 1;
            if let Some(found) = retained.delivery(batch.at, slot, seq, batch.granted, batch.id) {
                return Some(found);
            }
        }
        if self.batches.capacity() > 0 {
            // Drained: keep no buffer.
            self.batches = VecDeque::new();
        }
        None
    }
}

/// A retained message: the last retained PUBLISH on its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    /// The message as published (topic, payload, QoS, properties).
    pub publish: Publish,
    /// When the broker received it, for its Message Expiry Interval.
    pub stored_at: Instant,
    /// The client that published it (its per-client retained limit
    /// counts it); `None`: the broker's own.
    pub owner: Option<MqttString>,
}

impl RetainedMessage {
    /// Stores `publish` as received at `now`.
    pub fn new(publish: &Publish, now: Instant) -> Self {
        let mut stored = publish.clone();
        // Copies: slices of the PUBLISH would keep its whole read buffer
        // alive for as long as the message stays retained.
        stored.topic = super::compact(&publish.topic);
        stored.payload = bytes::Bytes::copy_from_slice(&publish.payload);
        stored.dup = false;
        stored.packet_id = None;
        if let Some(p) = stored.properties.get_mut_if_allocated() {
            p.topic_alias = None;
            p.subscription_identifiers.clear();
            p.user_properties = p.user_properties.detached();
            p.response_topic = p.response_topic.as_ref().map(super::compact);
            p.content_type = p.content_type.as_ref().map(super::compact);
            p.correlation_data = p
                .correlation_data
                .as_ref()
                .map(|d| bytes::Bytes::copy_from_slice(d));
        }
        Self {
            publish: stored,
            stored_at: now,
            owner: None,
        }
    }

    /// The bytes it holds in memory, as the retained limits count them:
    /// topic, payload, properties (user properties as their wire
    /// encoding), the fixed size of the message, and an estimate of its
    /// index entry (a node per topic level, allocated for its own topics).
    pub fn held_bytes(&self) -> usize {
        let p = &self.publish;
        let levels = p.topic.as_bytes().iter().filter(|&&b| b == b'/').count() + 1;
        let mut n = core::mem::size_of::<Self>() + p.topic.len() + p.payload.len() + 64 * levels;
        if p.properties.is_allocated() {
            let q = p.properties.get();
            n += core::mem::size_of::<PublishProperties>()
                + q.response_topic.as_ref().map_or(0, |s| s.len())
                + q.correlation_data.as_ref().map_or(0, |d| d.len())
                + q.content_type.as_ref().map_or(0, |s| s.len())
                + q.user_properties.wire_bytes().len();
        }
        n
    }

    /// Whether its Message Expiry Interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }

    /// When its Message Expiry Interval, counted from when it was stored,
    /// ends (`None`: it has none).
    pub fn expires_at(&self) -> Option<Instant> {
        self.publish
            .properties
            .message_expiry_interval
            .map(|secs| self.stored_at + Duration::from_secs(u64::from(secs)))
    }

    /// The PUBLISH for a new subscriber at `granted` QoS: RETAIN set, QoS
    /// capped, and the remaining expiry interval [MQTT-3.3.2-6].
    pub fn for_subscriber(&self, now: Instant, granted: QoS) -> Publish {
        let mut p = self.publish.clone();
        p.retain = true;
        p.qos = p.qos.min(granted);
        if let Some(secs) = p.properties.message_expiry_interval {
            let waited = (now - self.stored_at).as_secs();
            p.properties.message_expiry_interval = Some(
                secs.saturating_sub(u32::try_from(waited).unwrap_or(u32::MAX))
                    .max(1),
            );
        }
        p
    }
}

/// Properties forwarded unchanged to subscribers [MQTT-3.3.2-4] [MQTT-3.3.2-15]
/// [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20]; the topic alias is per
/// connection and the subscription identifiers per subscriber.
pub(crate) fn forwarded_properties(p: &PublishProperties) -> PublishProperties {
    PublishProperties {
        topic_alias: None,
        subscription_identifiers: Vec::new(),
        ..p.clone()
    }
}

impl super::Broker {
    /// Moves retained messages from a connection's backlog into its
    /// session's queue while the queue (waiting and in flight) is under a
    /// quarter of its limits (so they never make it look congested to
    /// publisher backpressure); `true` if any moved. Called when the connection has
    /// nothing else to send, so retained messages go out as fast as the
    /// client takes them (its Receive Maximum, the connection's output
    /// credit) and never overflow the queue cap (issue 13).
    pub(super) fn refill_retained(&mut self, conn: super::ConnId) -> bool {
        let limits = self.config.server.queue;
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return false;
        };
        let mut moved = false;
        while let Some((len, bytes)) = c.server.session().map(|s| s.held()) {
            if len >= limits.max_messages.div_ceil(4) || bytes >= limits.max_bytes.div_ceil(4) {
                break;
            }
            let Some((publish, queued_at)) = c.retained_backlog.next(&self.retained) else {
                break;
            };
            if !matches!(
                c.server
                    .send(queued_at, tern_session::Delivery::from(publish)),
                Ok(tern_session::Enqueued::Queued)
            ) {
                self.stats.messages_dropped += 1;
                self.stats.drops.queue_full += 1;
            }
            moved = true;
        }
        if moved {
            self.note_conn(conn);
        }
        moved
    }
}
