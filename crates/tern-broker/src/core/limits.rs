//! Resource limits a client runs into (issue 13): what each one is, the
//! check, and the one way a refusal is recorded — counted with the other
//! reasons in [`Stats::drops`](super::Stats::drops) and reported to the
//! shell as [`BrokerEvent::Refused`](super::BrokerEvent::Refused) with its
//! `limit` (which logs it with the client identifier).

use super::{Broker, BrokerEvent, ConnId, Refusal};
use tern_codec::{MqttString, ReasonCode};

/// Topic levels allowed by default in a PUBLISH topic or SUBSCRIBE filter:
/// mosquitto's `TOPIC_HIERARCHY_LIMIT` (it refuses more than 200 `/`).
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 200;

/// Bytes allowed by default in a PUBLISH topic, a will topic or a SUBSCRIBE
/// filter: far below the 65,535 an MQTT string allows, since a client's
/// subscriptions and retained topics are held for as long as they last
/// (10,000 filters of 64 KiB would be 640 MiB for one client).
pub const DEFAULT_MAX_TOPIC_LENGTH: usize = 4096;

/// Subscriptions one session may hold by default.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;

/// Which limit a client ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// A PUBLISH topic with more than `max_topic_levels` levels.
    TopicLevels,
    /// A SUBSCRIBE filter with more than `max_topic_levels` levels.
    FilterLevels,
    /// A PUBLISH or will topic longer than `max_topic_length` bytes.
    TopicLength,
    /// A SUBSCRIBE filter longer than `max_topic_length` bytes.
    FilterLength,
    /// A SUBSCRIBE beyond `max_subscriptions` for the session.
    Subscriptions,
    /// A retained PUBLISH past `max_retained_messages` or
    /// `max_retained_bytes`, or past its client's
    /// `max_retained_messages_per_client` or `max_retained_bytes_per_client`
    /// (delivered, not retained).
    Retained,
    /// A QoS 1/2 PUBLISH every recipient's queue was too full for
    /// (`max_queued_messages`, `max_queued_bytes`).
    Queue,
    /// A connection beyond `connections_per_second_per_address` from its
    /// source address.
    ConnectionRate,
    /// A connection beyond `connections_per_second_per_listener` into its
    /// listener.
    ListenerConnectionRate,
    /// A PUBLISH, SUBSCRIBE or CONNECT while the broker holds
    /// `max_memory` bytes for its clients.
    Memory,
    /// A PUBLISH or SUBSCRIBE from a client the broker holds
    /// `max_memory_per_client` bytes for.
    ClientMemory,
}

impl Limit {
    /// The setting's name, for logs.
    pub fn setting(self) -> &'static str {
        match self {
            Self::TopicLevels | Self::FilterLevels => "max_topic_levels",
            Self::TopicLength | Self::FilterLength => "max_topic_length",
            Self::Subscriptions => "max_subscriptions",
            Self::Retained => "max_retained_messages/max_retained_bytes (total or per client)",
            Self::Queue => "max_queued_messages/max_queued_bytes",
            Self::ConnectionRate => "connections_per_second_per_address",
            Self::ListenerConnectionRate => "connections_per_second_per_listener",
            Self::Memory => "max_memory",
            Self::ClientMemory => "max_memory_per_client",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::TopicLevels => "topic levels",
            Self::FilterLevels => "filter levels",
            Self::TopicLength => "topic length",
            Self::FilterLength => "filter length",
            Self::Subscriptions => "subscriptions",
            Self::Retained => "retained messages",
            Self::Queue => "queued messages",
            Self::ConnectionRate => "connection rate",
            Self::ListenerConnectionRate => "listener connection rate",
            Self::Memory => "memory budget",
            Self::ClientMemory => "memory budget per client",
        };
        write!(f, "{what} ({})", self.setting())
    }
}

impl Broker {
    /// Which limit a PUBLISH (or will) topic breaks, if any: longer than
    /// `max_topic_length` bytes or more than `max_topic_levels` levels.
    pub(super) fn topic_over(&self, topic: &[u8]) -> Option<Limit> {
        if topic.len() > self.config.max_topic_length {
            Some(Limit::TopicLength)
        } else if self.too_deep(topic) {
            Some(Limit::TopicLevels)
        } else {
            None
        }
    }

    /// [`topic_over`](Self::topic_over) for a SUBSCRIBE filter.
    pub(super) fn filter_over(&self, filter: &[u8]) -> Option<Limit> {
        self.topic_over(filter).map(|limit| match limit {
            Limit::TopicLength => Limit::FilterLength,
            _ => Limit::FilterLevels,
        })
    }

    /// Whether `topic` has more levels than the broker allows.
    fn too_deep(&self, topic: &[u8]) -> bool {
        // Counting stops early: a 64 KiB topic is not walked twice.
        let max = self.config.max_topic_levels;
        topic.iter().filter(|&&b| b == b'/').take(max).count() >= max
    }

    /// Records that `conn` (a connected client) ran into `limit` asking
    /// `what`, and was answered `reason`.
    pub(super) fn limit_refused(
        &mut self,
        conn: ConnId,
        limit: Limit,
        what: Refusal,
        reason: ReasonCode,
    ) {
        let client_id = self
            .conns
            .get(conn.key())
            .and_then(|c| c.session)
            .and_then(|k| self.sessions.get(k))
            .map(|s| s.client_id.clone())
            .unwrap_or_default();
        self.limit_refused_as(conn, client_id, limit, what, reason);
    }

    /// [`limit_refused`](Self::limit_refused) for a client known by the
    /// `client_id` it gave (not connected yet: its CONNECT is refused).
    pub(super) fn limit_refused_as(
        &mut self,
        conn: ConnId,
        client_id: MqttString,
        limit: Limit,
        what: Refusal,
        reason: ReasonCode,
    ) {
        self.stats.drops.count_limit(limit);
        self.events.push_back(BrokerEvent::Refused {
            conn,
            client_id,
            what,
            reason,
            limit: Some(limit),
        });
    }
}
