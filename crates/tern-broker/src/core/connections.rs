//! Connections: every network connection the core knows, from `accept`
//! to `handle_closed`, and the queue of those with output to offer.
//!
//! Invariants:
//! - A connection is in the slab from [`Broker::accept`](super::Broker::accept)
//!   until [`Broker::handle_closed`](super::Broker::handle_closed), and only
//!   [`Connections::insert`] and [`Connections::remove`] change that. A
//!   [`ConnId`] is its slab key with a generation, so a stale id (the
//!   shell's, after a close) never reaches a newer connection in the same
//!   slot: every lookup by a stale id finds nothing.
//! - The ready queue holds each connection at most once (`in_ready` says
//!   whether it is there), in the order it became ready, and only through
//!   [`Connections::mark_ready`] and [`Connections::pop_ready`]. A closed
//!   connection may still be listed; the walk skips ids that find nothing.
//! - A connection's `timer` is the deadline registered for it in the
//!   broker's `Timers`, if any: set by `schedule_conn`, cleared when it
//!   fires, cancelled when the connection is removed.
//! - What it counts against the memory budget (`counted`) is kept by
//!   `memory.rs` and given back when it is removed.
//! - Its session, once its CONNECT is accepted, is `session`; the session
//!   names it back (`SessionEntry::conn`). The connection owns the online
//!   session's state (its `ServerConnection`); `sessions.rs` holds it
//!   while offline.

use super::slab::{Key, Slab};
use super::{ConnId, SessionKey, auth_check, backpressure, enhanced_auth};
use std::collections::VecDeque;
use tern_codec::MqttString;
use tern_session::{Instant, ServerConnection};

/// A client connection as the broker tracks it.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) server: ServerConnection,
    /// The session, once the CONNECT is accepted.
    pub(super) session: Option<SessionKey>,
    /// Output credit and reading (see `backpressure.rs`).
    pub(super) flow: backpressure::Flow,
    /// Whether it is in the ready queue.
    in_ready: bool,
    /// The deadline registered in the timer set, if any.
    pub(super) timer: Option<Instant>,
    /// Closed by the protocol; waiting for the shell's `handle_closed`.
    pub(super) closing: bool,
    /// The identity the shell vouched for (see [`Broker::set_identity`](super::Broker::set_identity)).
    pub(super) identity: Option<MqttString>,
    /// Retained messages matched by its subscriptions, not yet in its
    /// session's queue: they enter it as it drains (see `retained.rs`),
    /// so flow control paces them and the queue cap never drops them.
    pub(super) retained_backlog: super::retained::Backlog,
    /// A bridge inside the broker's process (see [`Broker::set_bridge`](super::Broker::set_bridge)).
    pub(super) bridge: bool,
    /// An MQTT 3.1/3.1.1 bridge by mosquitto's `try_private` convention
    /// (protocol level | 0x80 in its CONNECT): its subscriptions get No
    /// Local and Retain As Published, as MQTT 5 would ask for them.
    pub(super) private_bridge: bool,
    /// Its CONNECT waits for a cluster claim (`handover.rs`): unread.
    pub(super) claiming: bool,
    /// An enhanced authentication exchange in progress (`enhanced_auth.rs`).
    pub(super) auth: Option<Box<enhanced_auth::Pending>>,
    /// A CONNECT waiting for its password check (`auth_check.rs`).
    pub(super) checking: Option<Box<auth_check::Waiting>>,
    /// Opened over its address's or its listener's connection rate (which
    /// one): its CONNECT is refused (`connect_rate.rs`).
    pub(super) over_rate: Option<super::Limit>,
    /// Its output waits for this storage batch to sync (a CONNACK or
    /// SUBACK in it promises stored state; see `durable.rs`).
    pub(super) gate: Option<u64>,
    /// What the shell holds for it (`memory.rs`).
    pub(super) shell_bytes: usize,
    /// What it counts against the memory budget now (`memory.rs`).
    pub(super) counted: usize,
}

impl Conn {
    /// A connection just accepted, before its CONNECT.
    fn new(server: ServerConnection) -> Self {
        Self {
            server,
            session: None,
            flow: backpressure::Flow::default(),
            in_ready: false,
            timer: None,
            closing: false,
            identity: None,
            retained_backlog: super::retained::Backlog::default(),
            bridge: false,
            private_bridge: false,
            claiming: false,
            auth: None,
            checking: None,
            over_rate: None,
            gate: None,
            shell_bytes: 0,
            counted: 0,
        }
    }
}

/// Every connection, and the queue of those with output to offer.
#[derive(Debug, Default)]
pub(super) struct Connections {
    slab: Slab<Conn>,
    /// Connections that may have output, in the order they became ready.
    ready: VecDeque<ConnId>,
}

impl Connections {
    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// A new connection, with `server` as its protocol state.
    pub(super) fn insert(&mut self, server: ServerConnection) -> ConnId {
        ConnId::from_key(self.slab.insert(Conn::new(server)))
    }

    /// The connection, if it is still open.
    pub(super) fn get(&self, key: Key) -> Option<&Conn> {
        self.slab.get(key)
    }

    /// The connection, mutably, if it is still open.
    pub(super) fn get_mut(&mut self, key: Key) -> Option<&mut Conn> {
        self.slab.get_mut(key)
    }

    /// Forgets a closed connection (its ready-queue entry, if any, is
    /// skipped by the walk).
    pub(super) fn remove(&mut self, key: Key) -> Option<Conn> {
        self.slab.remove(key)
    }

    /// Every connection, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Key, &Conn)> {
        self.slab.iter()
    }

    /// Queues `conn` as having output to offer, unless it is queued.
    pub(super) fn mark_ready(&mut self, conn: ConnId) {
        if let Some(c) = self.slab.get_mut(conn.key()) {
            if !c.in_ready {
                c.in_ready = true;
                self.ready.push_back(conn);
            }
        }
    }

    /// The connection at the head of the ready queue.
    pub(super) fn next_ready(&self) -> Option<ConnId> {
        self.ready.front().copied()
    }

    /// Takes the head of the ready queue off it (it has nothing more to
    /// offer now, or it is gone).
    pub(super) fn pop_ready(&mut self) {
        if let Some(id) = self.ready.pop_front() {
            if let Some(c) = self.slab.get_mut(id.key()) {
                c.in_ready = false;
            }
        }
    }
}
