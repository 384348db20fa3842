//! Sessions, online and offline: the slab, the client-identifier index and
//! the session-expiry rule.
//!
//! Invariants:
//! - `by_client_id` maps exactly the client identifiers of the sessions in
//!   the slab, each to its own key: one session per client identifier
//!   [MQTT-3.1.2-4]. Only [`Sessions::insert`] and [`Sessions::remove`]
//!   change either, together.
//! - A session is online (`conn` set, its state held by the connection) or
//!   offline (`offline` holds its state, `expires_at` when it ends unless it
//!   never does); never both.
//! - When an offline session ends, and whether a session outlives its
//!   connection at all, is decided by [`expires_at`] alone
//!   ([`outlives_connection`] reads it); nothing else compares intervals.

use super::ConnId;
use super::slab::{Key, Slab};
use core::time::Duration;
use std::collections::BTreeMap;
use tern_codec::{MqttString, Will};
use tern_session::{Instant, ServerSession};

/// A session's key in the broker: the subscription tree's subscriber key.
pub(crate) type SessionKey = Key;

/// The session-expiry rule, written once: a session whose connection closed
/// at `now` with a Session Expiry Interval of `interval` seconds ends at the
/// returned time; `None`: never (`u32::MAX` [MQTT-3.1.2-23], and an MQTT 3.x
/// session without Clean Session). An interval of 0 ends it with its
/// connection (the returned time is `now`).
pub(super) fn expires_at(now: Instant, interval: u32) -> Option<Instant> {
    (interval != u32::MAX).then(|| now + Duration::from_secs(u64::from(interval)))
}

/// Whether a session with a Session Expiry Interval of `interval` outlives
/// its connection: [`expires_at`] gives a later time than the close, or
/// none. What a durable store keeps and whether a closing session ends now
/// are both decided by this.
pub(super) fn outlives_connection(interval: u32) -> bool {
    expires_at(Instant::ZERO, interval) != Some(Instant::ZERO)
}

/// A session, online or not.
#[derive(Debug)]
pub(super) struct SessionEntry {
    pub(super) client_id: MqttString,
    /// The user name its latest connection authenticated as (for the
    /// authorization checks, online and offline).
    pub(super) username: Option<MqttString>,
    /// The connection using it, while the client is online.
    pub(super) conn: Option<ConnId>,
    /// The state itself while the client is offline (online, the connection
    /// holds it). Boxed, as is the will: an online session's entry stays a
    /// few words (it was 656 bytes with both inline).
    pub(super) offline: Option<Box<ServerSession>>,
    /// Seconds it outlives its connection (`u32::MAX`: never).
    pub(super) expiry_interval: u32,
    /// The protocol level of its client's last CONNECT (3, 4 or 5), for
    /// the durable store's record.
    pub(super) protocol: u8,
    /// When it ends, while offline.
    pub(super) expires_at: Option<Instant>,
    /// A will waiting for its delay.
    pub(super) pending_will: Option<Box<(Will, Instant)>>,
    /// It is in the durable store (it outlives its connection and
    /// [`BrokerConfig::durable`](super::BrokerConfig::durable) is on): its
    /// changes and its end are recorded.
    pub(super) persisted: bool,
    /// What its state counts against the memory budget (`memory.rs`).
    pub(super) counted: usize,
    /// What its subscriptions count against the memory budget.
    pub(super) subscription_bytes: usize,
}

impl SessionEntry {
    /// A session with no connection yet, state, will or expiry.
    pub(super) fn new(client_id: MqttString) -> Self {
        Self {
            client_id,
            username: None,
            conn: None,
            offline: None,
            expiry_interval: 0,
            protocol: 5,
            expires_at: None,
            pending_will: None,
            persisted: false,
            counted: 0,
            subscription_bytes: 0,
        }
    }

    /// Whether it is offline and its time is up at `now`.
    pub(super) fn has_expired(&self, now: Instant) -> bool {
        self.conn.is_none() && self.expires_at.is_some_and(|at| at <= now)
    }

    /// Starts its countdown from `now` (it went offline, or was restored
    /// without a deadline): returns when it ends, to arm.
    pub(super) fn start_expiry(&mut self, now: Instant) -> Option<Instant> {
        self.expires_at = expires_at(now, self.expiry_interval);
        self.expires_at
    }
}

/// Every session, and the index by client identifier.
#[derive(Debug)]
pub(super) struct Sessions {
    slab: Slab<SessionEntry>,
    by_client_id: BTreeMap<MqttString, SessionKey>,
    /// The next number for an assigned client identifier.
    next_assigned_id: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            slab: Slab::default(),
            by_client_id: BTreeMap::new(),
            next_assigned_id: 1,
        }
    }
}

impl Sessions {
    /// How many sessions there are.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// A session by key.
    pub(super) fn get(&self, key: SessionKey) -> Option<&SessionEntry> {
        self.slab.get(key)
    }

    /// A session by key, to change (its client identifier stays).
    pub(super) fn get_mut(&mut self, key: SessionKey) -> Option<&mut SessionEntry> {
        self.slab.get_mut(key)
    }

    /// The session of a client identifier.
    pub(super) fn key_of(&self, client_id: &[u8]) -> Option<SessionKey> {
        self.by_client_id.get(client_id).copied()
    }

    /// The connection a session is online on.
    pub(super) fn conn_of(&self, key: SessionKey) -> Option<ConnId> {
        self.slab.get(key).and_then(|s| s.conn)
    }

    /// Every session, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (SessionKey, &SessionEntry)> {
        self.slab.iter()
    }

    /// Adds a session; its client identifier must have none yet.
    pub(super) fn insert(&mut self, entry: SessionEntry) -> SessionKey {
        debug_assert!(!self.by_client_id.contains_key(&entry.client_id));
        let client_id = entry.client_id.clone();
        let key = self.slab.insert(entry);
        self.by_client_id.insert(client_id, key);
        key
    }

    /// Removes a session and its index entry.
    pub(super) fn remove(&mut self, key: SessionKey) -> Option<SessionEntry> {
        let entry = self.slab.remove(key)?;
        self.by_client_id.remove(&entry.client_id);
        Some(entry)
    }

    /// A client identifier no session uses [MQTT-3.2.2-16].
    pub(super) fn assign_client_id(&mut self, prefix: &str) -> MqttString {
        loop {
            let candidate = format!("{prefix}{:x}", self.next_assigned_id);
            self.next_assigned_id += 1;
            let candidate = MqttString::try_from(candidate).expect("an ASCII identifier");
            if !self.by_client_id.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_rule() {
        let now = Instant::from_secs(100);
        // 0: the session ends with its connection [MQTT-3.1.2-23].
        assert_eq!(expires_at(now, 0), Some(now));
        assert_eq!(expires_at(now, 60), Some(Instant::from_secs(160)));
        // u32::MAX: it never ends.
        assert_eq!(expires_at(now, u32::MAX), None);
        assert!(!outlives_connection(0));
        assert!(outlives_connection(1));
        assert!(outlives_connection(u32::MAX));
        assert_eq!(
            expires_at(now, u32::MAX - 1),
            Some(now + Duration::from_secs(u64::from(u32::MAX - 1)))
        );
    }

    #[test]
    fn the_index_follows_the_slab() {
        let mut sessions = Sessions::default();
        let a = sessions.insert(SessionEntry::new(MqttString::try_from("a").unwrap()));
        let b = sessions.insert(SessionEntry::new(MqttString::try_from("b").unwrap()));
        assert_eq!(sessions.key_of(b"a"), Some(a));
        assert_eq!(sessions.key_of(b"b"), Some(b));
        assert_eq!(
            sessions.remove(a).map(|e| e.client_id.as_str().to_owned()),
            Some("a".to_owned())
        );
        assert_eq!(sessions.key_of(b"a"), None);
        assert_eq!(sessions.get(a).map(|_| ()), None);
        assert_eq!(sessions.len(), 1);
        // An assigned identifier is never one in use [MQTT-3.2.2-16].
        let mut taken = Sessions::default();
        taken.insert(SessionEntry::new(MqttString::try_from("p1").unwrap()));
        assert_eq!(taken.assign_client_id("p").as_str(), "p2");
    }
}
