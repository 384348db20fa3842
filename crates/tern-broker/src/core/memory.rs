//! The broker-wide memory budget (issue 13): one account of the bytes
//! clients make the broker hold, and what the broker does at
//! [`BrokerConfig::max_memory`](super::BrokerConfig::max_memory).
//!
//! What is counted, each part kept current where it changes (nothing is
//! walked to read the total):
//! - retained messages: what `max_retained_bytes` counts
//!   ([`RetainedMessage::held_bytes`](super::RetainedMessage::held_bytes));
//! - subscriptions: each filter's text once (the tree is the only place a
//!   subscription lives), an estimate per level and per subscription;
//! - sessions: queued and in-flight messages with their properties
//!   (`ServerSession::held`), an estimate per message and per incoming
//!   QoS 2 packet identifier, and a fixed part; refreshed whenever the core
//!   touches the session;
//! - connections: a fixed part, output handed to the shell and not yet
//!   written, retained messages waiting in their backlog, and what the
//!   shell reports holding for them ([`Broker::set_shell_bytes`]: partial
//!   packets, read buffers).
//!
//! The estimates err high. At the budget: a PUBLISH is refused (QoS 0
//! dropped and counted; QoS 1/2 MQTT 5 PUBACK/PUBREC 0x97 Quota exceeded,
//! MQTT 3.1.1 the connection closed, never acknowledged and dropped, its
//! QoS 2 packet identifier not kept, so the resend is a new message), a
//! new subscription gets SUBACK 0x97 (3.1.1: 0x80), a CONNECT gets CONNACK
//! 0x89 Server busy (3.1.1: return code 3), and QoS 0 messages routed from
//! elsewhere (wills, other nodes) are dropped before they are queued. Each
//! is counted as [`Drops::memory_limit`](super::Drops::memory_limit), and
//! what a client sent is reported as a `BrokerEvent::Refused`.
//!
//! One client's share
//! ([`BrokerConfig::max_memory_per_client`](super::BrokerConfig::max_memory_per_client))
//! is what the same account holds for its client identifier: its session,
//! its subscriptions, its connection and the retained messages it owns.
//! At it, that client's PUBLISH is refused as at the budget and its new
//! subscriptions get 0x97, counted as
//! [`Drops::client_memory_limit`](super::Drops::client_memory_limit), and
//! messages for it are not queued (its retained messages are not looked
//! up for that: a delivery costs no owner lookup). So one anonymous client
//! cannot spend the whole budget and stop the others.

use super::{Broker, ConnId, SessionKey};
use tern_session::ServerSession;

/// Bytes counted per subscription besides its filter: the tree's entry and
/// the session's record entry.
pub(super) const SUBSCRIPTION_OVERHEAD: usize = 192;
/// Bytes counted per level of a subscription filter (a tree node).
pub(super) const LEVEL_OVERHEAD: usize = 64;
/// Bytes counted per session besides its messages.
pub(super) const SESSION_OVERHEAD: usize = 1024;
/// Bytes counted per queued or in-flight message besides its body.
pub(super) const MESSAGE_OVERHEAD: usize = 128;
/// Bytes counted per incoming QoS 2 packet identifier held.
pub(super) const QOS2_OVERHEAD: usize = 32;
/// Bytes counted per connection besides its buffers.
pub(super) const CONNECTION_OVERHEAD: usize = 4096;
/// Bytes counted per retained message waiting in a connection's backlog
/// (a slot in the retained index and a number, 16 bytes; the message
/// stays in the retained store until it is queued).
pub(super) const BACKLOG_OVERHEAD: usize = 32;

/// The bytes the broker holds for its clients, by part, as the memory
/// budget counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Retained messages.
    pub retained: usize,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Sessions: queued and in-flight messages, incoming QoS 2 state.
    pub sessions: usize,
    /// Connections: buffers, unwritten output, retained backlog.
    pub connections: usize,
}

impl MemoryUse {
    /// Every part.
    pub fn total(&self) -> usize {
        self.retained + self.subscriptions + self.sessions + self.connections
    }
}

/// The running sums (retained bytes live in the retained store).
#[derive(Debug, Default)]
pub(super) struct Accountant {
    subscriptions: usize,
    sessions: usize,
    connections: usize,
}

/// What one subscription to `filter` is counted as.
pub(super) fn subscription_bytes(filter: &[u8]) -> usize {
    let levels = filter.iter().filter(|&&b| b == b'/').count() + 1;
    SUBSCRIPTION_OVERHEAD + filter.len() + LEVEL_OVERHEAD * levels
}

/// What a session's state is counted as.
pub(super) fn session_bytes(session: &ServerSession) -> usize {
    let (messages, bytes) = session.held();
    SESSION_OVERHEAD
        + bytes
        + MESSAGE_OVERHEAD * messages
        + QOS2_OVERHEAD * session.incoming_qos2_len()
}

/// Replaces `old` with `new` in `sum`.
fn replace(sum: &mut usize, old: usize, new: usize) {
    *sum = sum.saturating_sub(old) + new;
}

impl Broker {
    /// The bytes clients make the broker hold now, by part.
    pub fn memory_use(&self) -> MemoryUse {
        MemoryUse {
            retained: self.retained.bytes(),
            subscriptions: self.memory.subscriptions,
            sessions: self.memory.sessions,
            connections: self.memory.connections,
        }
    }

    /// The same account as [`memory_use`](Self::memory_use), recounted
    /// from scratch by walking every retained message, subscription,
    /// session and connection. The running sums must equal it whenever the
    /// broker is between inputs: the simulator checks this after every
    /// step, since a sum that drifts makes the budget refuse everyone, or
    /// nobody. It walks everything: not for a hot path.
    pub fn memory_recount(&self) -> MemoryUse {
        let mut counted = MemoryUse {
            retained: self.retained.bytes_recounted(),
            ..MemoryUse::default()
        };
        for (key, entry) in self.sessions.iter() {
            counted.subscriptions += self.subscriptions.bytes_of(key);
            let state = match entry.conn {
                Some(conn) => self.conns.get(conn.key()).and_then(|c| c.server.session()),
                None => entry.offline.as_deref(),
            };
            counted.sessions += state.map_or(entry.counted, session_bytes);
        }
        for (_, c) in self.conns.iter() {
            counted.connections += CONNECTION_OVERHEAD
                + c.shell_bytes
                + c.flow.unwritten()
                + BACKLOG_OVERHEAD * c.retained_backlog.len();
        }
        counted
    }

    /// Whether the memory budget is spent.
    pub(super) fn over_budget(&self) -> bool {
        self.config
            .max_memory
            .is_some_and(|max| self.memory_use().total() >= max)
    }

    /// What client `key`'s share counts now: its session, subscriptions
    /// and connection, and with `retained` the retained messages it owns.
    pub(super) fn client_bytes(&self, key: SessionKey, retained: bool) -> usize {
        let Some(entry) = self.sessions.get(key) else {
            return 0;
        };
        let conn = entry
            .conn
            .and_then(|c| self.conns.get(c.key()))
            .map_or(0, |c| c.counted);
        let owned = if retained {
            self.retained.owned_by(entry.client_id.as_bytes()).1
        } else {
            0
        };
        entry.counted + entry.subscription_bytes + conn + owned
    }

    /// Whether client `key` holds its share of the memory: its PUBLISHes
    /// and new subscriptions are refused.
    pub(super) fn client_over_share(&self, key: SessionKey) -> bool {
        self.config
            .max_memory_per_client
            .is_some_and(|max| self.client_bytes(key, true) >= max)
    }

    /// Whether a message for client `key` is not queued: its session,
    /// subscriptions and connection hold its share.
    pub(super) fn recipient_over_share(&self, key: SessionKey) -> bool {
        self.config
            .max_memory_per_client
            .is_some_and(|max| self.client_bytes(key, false) >= max)
    }

    /// The shell holds `bytes` for this connection now (its read buffer,
    /// with any partial packet; buffers of its transport): counted against
    /// the memory budget until it reports another figure or the connection
    /// is closed.
    pub fn set_shell_bytes(&mut self, conn: ConnId, bytes: usize) {
        if let Some(c) = self.conns.get_mut(conn.key()) {
            c.shell_bytes = bytes;
        }
        self.note_conn(conn);
    }

    /// Counts a subscription of session `key` added (`true`) or removed.
    pub(super) fn note_subscription(&mut self, key: SessionKey, filter: &[u8], added: bool) {
        let n = subscription_bytes(filter);
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        if added {
            entry.subscription_bytes += n;
            self.memory.subscriptions += n;
        } else {
            entry.subscription_bytes = entry.subscription_bytes.saturating_sub(n);
            self.memory.subscriptions = self.memory.subscriptions.saturating_sub(n);
        }
    }

    /// Recounts a connection (and its session, if it has one).
    pub(super) fn note_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let now = CONNECTION_OVERHEAD
            + c.shell_bytes
            + c.flow.unwritten()
            + BACKLOG_OVERHEAD * c.retained_backlog.len();
        replace(&mut self.memory.connections, c.counted, now);
        c.counted = now;
        if let Some(key) = c.session {
            self.note_session(key);
        }
    }

    /// A connection is gone: it no longer counts.
    pub(super) fn forget_conn_memory(&mut self, counted: usize) {
        self.memory.connections = self.memory.connections.saturating_sub(counted);
    }

    /// Recounts a session, online or offline.
    pub(super) fn note_session(&mut self, key: SessionKey) {
        let Some(entry) = self.sessions.get(key) else {
            return;
        };
        let state = match entry.conn {
            Some(conn) => self.conns.get(conn.key()).and_then(|c| c.server.session()),
            None => entry.offline.as_deref(),
        };
        let Some(now) = state.map(session_bytes) else {
            return;
        };
        let counted = entry.counted;
        replace(&mut self.memory.sessions, counted, now);
        if let Some(entry) = self.sessions.get_mut(key) {
            entry.counted = now;
        }
    }

    /// A session is gone, with its subscriptions: it no longer counts.
    pub(super) fn forget_session_memory(&mut self, entry: &super::sessions::SessionEntry) {
        self.memory.sessions = self.memory.sessions.saturating_sub(entry.counted);
        self.memory.subscriptions = self
            .memory
            .subscriptions
            .saturating_sub(entry.subscription_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_counts_its_bytes_and_its_levels() {
        assert_eq!(
            subscription_bytes(b"a/b"),
            SUBSCRIPTION_OVERHEAD + 3 + 2 * LEVEL_OVERHEAD
        );
        assert!(subscription_bytes(&[b'/'; 200]) > 200 * LEVEL_OVERHEAD);
    }

    #[test]
    fn the_total_is_the_sum_of_the_parts() {
        let m = MemoryUse {
            retained: 1,
            subscriptions: 2,
            sessions: 3,
            connections: 4,
        };
        assert_eq!(m.total(), 10);
    }
}
