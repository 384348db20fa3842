//! Resource limits a client runs into (issue 13): what each one is, the
//! check, and the one way a refusal is recorded — counted in
//! [`Stats::limit_refusals`](super::Stats::limit_refusals) and reported to
//! the shell as [`BrokerEvent::LimitExceeded`](super::BrokerEvent::LimitExceeded)
//! (which logs it with the client identifier).

use super::{Broker, BrokerEvent, ConnId};
use tern_codec::ReasonCode;

/// Topic levels allowed by default in a PUBLISH topic or SUBSCRIBE filter:
/// mosquitto's `TOPIC_HIERARCHY_LIMIT` (it refuses more than 200 `/`).
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 200;

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
    /// A SUBSCRIBE beyond `max_subscriptions` for the session.
    Subscriptions,
    /// A QoS 1/2 PUBLISH every recipient's queue was too full for
    /// (`max_queued_messages`, `max_queued_bytes`).
    Queue,
    /// A connection beyond `connections_per_second_per_address` from its
    /// source address.
    ConnectionRate,
}

impl Limit {
    /// The setting's name, for logs.
    pub fn setting(self) -> &'static str {
        match self {
            Self::TopicLevels | Self::FilterLevels => "max_topic_levels",
            Self::Subscriptions => "max_subscriptions",
            Self::Queue => "max_queued_messages/max_queued_bytes",
            Self::ConnectionRate => "connections_per_second_per_address",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::TopicLevels => "topic levels",
            Self::FilterLevels => "filter levels",
            Self::Subscriptions => "subscriptions",
            Self::Queue => "queued messages",
            Self::ConnectionRate => "connection rate",
        };
        write!(f, "{what} ({})", self.setting())
    }
}

impl Broker {
    /// Whether `topic` has more levels than the broker allows.
    pub(super) fn too_deep(&self, topic: &[u8]) -> bool {
        // Counting stops early: a 64 KiB topic is not walked twice.
        let max = self.config.max_topic_levels;
        topic.iter().filter(|&&b| b == b'/').take(max).count() >= max
    }

    /// Records that `conn` ran into `limit` and was answered `reason`.
    pub(super) fn limit_refused(&mut self, conn: ConnId, limit: Limit, reason: ReasonCode) {
        self.stats.limit_refusals += 1;
        let client_id = self
            .conns
            .get(conn.key())
            .and_then(|c| c.session)
            .and_then(|k| self.sessions.get(k))
            .map(|s| s.client_id.clone());
        self.events.push_back(BrokerEvent::LimitExceeded {
            conn,
            client_id,
            limit,
            reason,
        });
    }
}
