//! Backpressure, all of it: the core decides, the shell obeys.
//!
//! **Output credit.** The core counts the bytes of each connection's
//! transmits that the shell has not reported written
//! ([`Broker::handle_written`]). Above
//! [`OutputCredit::high_water`](super::OutputCredit) the connection gets no
//! more transmits (its messages wait in its session's bounded queue) and
//! the shell is told to stop reading it, so a client that does not read
//! cannot make us queue answers (PUBACK, PINGRESP) without bound; at
//! `low_water` it is writable and read again. A slow reader slows only
//! itself.
//!
//! **Reading.** A connection is read unless its output is backed up or it
//! is a blocked publisher (below). The core tells the shell each change,
//! once: [`BrokerEvent::PauseReading`] and [`BrokerEvent::ResumeReading`].
//!
//! **Publisher backpressure**: a publisher whose message lands in an online
//! subscriber's queue that is half full stops being read until that queue
//! has drained to a quarter (or the subscriber goes away), for at most
//! [`BrokerConfig::publisher_backpressure`](super::BrokerConfig).
//!
//! Without it, a fast publisher fills a slower subscriber's bounded queue
//! and everything beyond is dropped, QoS 1 and 2 included. With it,
//! [`Broker::handle_bytes`] stops at the packet that congested the queue and
//! leaves the rest in the caller's buffer; the shell stops reading that
//! socket, so TCP flow control slows the publisher down. When the queue has
//! drained, [`BrokerEvent::ResumeReading`] tells the shell to hand the
//! bytes in again (unless its own output is backed up). The time limit keeps a subscriber that never reads (or two clients
//! waiting on each other's queues) from stalling publishers for good: when
//! it passes, the publisher is read again, and the subscriber is marked
//! stalled: it blocks no one (its queue's overflow policy applies) until its
//! queue has drained to a quarter. A slow reader then slows only itself.
//!
//! **Once per time limit.** When the limit passes, every subscriber that is
//! half full then, or has a queue and a socket that takes nothing more (its
//! output credit spent while the publisher was held), is stalled with the
//! one waited on; a stalled mark goes once the queue is down to a quarter
//! and the socket takes bytes again.
//! Subscribers that do not read fill their sockets at different times (the
//! kernel took more from one than from another); without the second rule
//! each held the publisher in turn, back to back. A subscriber that reads
//! keeps taking bytes while the publisher is held, so it is left to pace it.

use super::{Broker, BrokerEvent, ConnId, OutputCredit, SessionKey, Timer};
use std::collections::{BTreeMap, BTreeSet};
use tern_session::{Instant, QueueLimits};

/// One connection's output credit and reading state.
///
/// Invariant: `writable` is false exactly from the transmit that took
/// `unwritten` above the high-water mark until writes bring it down to the
/// low-water mark; `paused` is what the shell was last told.
#[derive(Debug)]
pub(super) struct Flow {
    /// Bytes handed to the shell and not reported written.
    unwritten: usize,
    /// Whether it may get more transmits.
    writable: bool,
    /// What the shell was last told: not reading it.
    paused: bool,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            unwritten: 0,
            writable: true,
            paused: false,
        }
    }
}

impl Flow {
    /// Whether it may get more transmits.
    pub(super) fn is_writable(&self) -> bool {
        self.writable
    }

    /// A transmit of `len` bytes went to the shell: `true` if that made it
    /// unwritable.
    /// Bytes handed to the shell and not reported written.
    pub(super) fn unwritten(&self) -> usize {
        self.unwritten
    }

    fn charge(&mut self, len: usize, credit: Option<OutputCredit>) -> bool {
        self.unwritten += len;
        let over = credit.is_some_and(|c| self.unwritten > c.high_water);
        if self.writable && over {
            self.writable = false;
            return true;
        }
        false
    }

    /// The shell wrote `n` bytes: `true` if that made it writable again.
    fn written(&mut self, n: usize, credit: Option<OutputCredit>) -> bool {
        self.unwritten = self.unwritten.saturating_sub(n);
        let low_water = credit.map_or(usize::MAX, |c| c.low_water);
        if !self.writable && self.unwritten <= low_water {
            self.writable = true;
            return true;
        }
        false
    }
}

/// Why a publisher is blocked.
#[derive(Debug, Clone, Copy)]
struct Blocked {
    /// The session whose queue it congested.
    on: SessionKey,
    /// When it is read again regardless.
    until: Instant,
}

/// Publisher backpressure: who is blocked on whom, and who blocks no one.
///
/// Invariants:
/// - a connection is in `blocked` exactly when it is in `waiting` under the
///   session it blocked on, and no set in `waiting` is empty; so releasing a
///   subscriber's waiters costs one lookup, and a blocked publisher is found
///   in one;
/// - every blocked publisher has one `Timer::Unblock` armed at its `until`
///   (the caller arms and cancels it with the times this type returns);
/// - a `stalled` subscriber is never recorded as congested, so it blocks no
///   one until its queue has drained to a quarter;
/// - `congested` lives for the routing of one PUBLISH only.
#[derive(Debug, Default)]
pub(super) struct Backpressure {
    /// Publishers not read until a subscriber's queue drains.
    blocked: BTreeMap<ConnId, Blocked>,
    /// The same, by the subscriber's session they wait on.
    waiting: BTreeMap<SessionKey, BTreeSet<ConnId>>,
    /// Set by a delivery into a half-full queue, for the publisher's sake.
    congested: Option<SessionKey>,
    /// Subscribers that held a publisher up to the time limit.
    stalled: BTreeSet<SessionKey>,
}

/// Publishers released, with the time limit each had armed.
pub(super) type Released = Vec<(ConnId, Instant)>;

impl Backpressure {
    /// Whether a publisher is blocked.
    pub(super) fn is_blocked(&self, conn: ConnId) -> bool {
        self.blocked.contains_key(&conn)
    }

    /// A PUBLISH is about to be routed.
    pub(super) fn begin_publish(&mut self) {
        self.congested = None;
    }

    /// A delivery left `to`'s queue half full.
    pub(super) fn note_half_full(&mut self, to: SessionKey) {
        if !self.stalled.contains(&to) {
            self.congested = Some(to);
        }
    }

    /// After a PUBLISH from `conn` is routed: blocks it until `until` if it
    /// congested a queue; returns `until` if so (to arm).
    pub(super) fn block_if_congested(&mut self, conn: ConnId, until: Instant) -> Option<Instant> {
        let on = self.congested.take()?;
        if self.blocked.contains_key(&conn) {
            return None;
        }
        self.blocked.insert(conn, Blocked { on, until });
        self.waiting.entry(on).or_default().insert(conn);
        Some(until)
    }

    /// Whether any subscriber is watched (blocks someone or is stalled).
    pub(super) fn is_watching(&self) -> bool {
        !self.waiting.is_empty() || !self.stalled.is_empty()
    }

    /// Forgets the stalled marks of subscribers whose queue `drained` and
    /// whose socket `takes` bytes again, and releases the publishers
    /// waiting on those whose queue `drained`. One check per watched
    /// subscriber, not per blocked publisher.
    pub(super) fn release_drained(
        &mut self,
        drained: impl Fn(SessionKey) -> bool,
        takes: impl Fn(SessionKey) -> bool,
    ) -> Released {
        self.stalled.retain(|&on| !(drained(on) && takes(on)));
        let mut released = Released::new();
        let blocked = &mut self.blocked;
        self.waiting.retain(|&on, conns| {
            if !drained(on) {
                return true;
            }
            release(blocked, conns, &mut released);
            false
        });
        released
    }

    /// `conn`'s time limit passed: the subscriber it waits on is stalled,
    /// and so is every one of `half_full` (the queues half full now); every
    /// publisher waiting on any of them is released.
    pub(super) fn time_limit_passed(
        &mut self,
        conn: ConnId,
        half_full: impl IntoIterator<Item = SessionKey>,
    ) -> Released {
        let mut released = Released::new();
        if let Some(b) = self.blocked.get(&conn) {
            let on = b.on;
            for session in core::iter::once(on).chain(half_full) {
                self.stalled.insert(session);
                if let Some(conns) = self.waiting.remove(&session) {
                    release(&mut self.blocked, &conns, &mut released);
                }
            }
        }
        released
    }

    /// A connection is gone: it waits for nothing any more. Returns its
    /// time limit, if it had one armed.
    pub(super) fn forget(&mut self, conn: ConnId) -> Option<Instant> {
        let b = self.blocked.remove(&conn)?;
        if let Some(set) = self.waiting.get_mut(&b.on) {
            set.remove(&conn);
            if set.is_empty() {
                self.waiting.remove(&b.on);
            }
        }
        Some(b.until)
    }
}

/// Unblocks each of `conns`, in order.
fn release(
    blocked: &mut BTreeMap<ConnId, Blocked>,
    conns: &BTreeSet<ConnId>,
    released: &mut Released,
) {
    for &conn in conns {
        if let Some(b) = blocked.remove(&conn) {
            released.push((conn, b.until));
        }
    }
}

/// Whether a queue this long is half full: a delivery into it blocks the
/// publisher.
fn half_full(limits: &QueueLimits, len: usize, bytes: usize) -> bool {
    len >= limits.max_messages.div_ceil(2) || bytes >= limits.max_bytes.div_ceil(2)
}

/// Whether a queue this long has drained to a quarter: its waiters go.
fn drained_to_quarter(limits: &QueueLimits, len: usize, bytes: usize) -> bool {
    len <= limits.max_messages / 4 && bytes <= limits.max_bytes / 4
}

impl Broker {
    /// Whether [`handle_bytes`](Self::handle_bytes) stops consuming this
    /// connection's bytes (publisher backpressure) for now.
    pub fn is_blocked(&self, conn: ConnId) -> bool {
        self.backpressure.is_blocked(conn)
    }

    /// Bytes of a connection's transmits not yet reported written.
    pub fn unwritten(&self, conn: ConnId) -> usize {
        self.conns.get(conn.key()).map_or(0, |c| c.flow.unwritten)
    }

    /// Whether the shell is to leave a connection unread (the last of
    /// [`BrokerEvent::PauseReading`] and [`BrokerEvent::ResumeReading`]).
    pub fn is_reading_paused(&self, conn: ConnId) -> bool {
        self.conns.get(conn.key()).is_some_and(|c| c.flow.paused)
    }

    /// A transmit of `len` bytes went to the shell.
    pub(super) fn charge(&mut self, conn: ConnId, len: usize) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        if c.flow.charge(len, self.config.output_credit) {
            self.update_reading(conn);
        }
    }

    /// The shell wrote `n` bytes.
    pub(super) fn credit(&mut self, conn: ConnId, n: usize) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        if c.flow.written(n, self.config.output_credit) {
            self.mark_ready(conn);
            self.update_reading(conn);
        }
    }

    /// Tells the shell when whether to read a connection changes (a
    /// CONNECT waiting for its password check also keeps it unread).
    pub(super) fn update_reading(&mut self, conn: ConnId) {
        let blocked = self.backpressure.is_blocked(conn);
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        if c.closing {
            return;
        }
        let paused = !c.flow.writable || blocked || c.checking.is_some() || c.claiming;
        if paused != c.flow.paused {
            c.flow.paused = paused;
            self.events.push_back(if paused {
                BrokerEvent::PauseReading(conn)
            } else {
                BrokerEvent::ResumeReading(conn)
            });
        }
    }

    /// After a delivery to an online session: notes it if its queue is half full.
    pub(super) fn note_congestion(&mut self, to: SessionKey, queue_len: usize, bytes: usize) {
        if self.config.publisher_backpressure.is_some()
            && half_full(&self.config.server.queue, queue_len, bytes)
        {
            self.backpressure.note_half_full(to);
        }
    }

    /// After a connection's PUBLISH is routed: blocks it if it congested a queue.
    pub(super) fn block_if_congested(&mut self, now: Instant, conn: ConnId) {
        let Some(limit) = self.config.publisher_backpressure else {
            return;
        };
        if let Some(until) = self.backpressure.block_if_congested(conn, now + limit) {
            self.timers.arm(until, Timer::Unblock(conn.key()));
            self.update_reading(conn);
        }
    }

    /// Releases the publishers waiting on a subscriber whose queue has
    /// drained to a quarter, gone offline or away; forgets stalled marks of
    /// queues that drained.
    pub(super) fn release_blocked(&mut self) {
        if !self.backpressure.is_watching() {
            return;
        }
        let limits = self.config.server.queue;
        let (sessions, conns) = (&self.sessions, &self.conns);
        // Whether a session's queue has drained to a quarter (or it is gone).
        let drained = |on: SessionKey| {
            let Some(conn) = sessions.get(on).and_then(|s| s.conn) else {
                return true;
            };
            let Some(session) = conns.get(conn.key()).and_then(|c| c.server.session()) else {
                return true;
            };
            // Waiting and in flight, as the queue limits count them.
            let (len, bytes) = session.held();
            drained_to_quarter(&limits, len, bytes)
        };
        // Whether its socket takes bytes (its output credit is not spent).
        let takes = |on: SessionKey| {
            sessions
                .get(on)
                .and_then(|s| s.conn)
                .and_then(|c| conns.get(c.key()))
                .is_none_or(|c| c.flow.is_writable())
        };
        let released = self.backpressure.release_drained(drained, takes);
        self.unblocked(released);
    }

    /// A blocked publisher's time limit passed: its subscriber is stalled
    /// and holds no one up any more, nor does any other that is half full
    /// or takes no more bytes.
    pub(super) fn unblock_due(&mut self, conn: ConnId) {
        if !self.backpressure.is_blocked(conn) {
            return;
        }
        // One pass over the sessions, at most once per time limit.
        let limits = self.config.server.queue;
        let conns = &self.conns;
        let half_full: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.conn.and_then(|c| conns.get(c.key())).is_some_and(|c| {
                    c.server.session().is_some_and(|session| {
                        let (len, bytes) = session.held();
                        len > 0 && (half_full(&limits, len, bytes) || !c.flow.is_writable())
                    })
                })
            })
            .map(|(k, _)| k)
            .collect();
        let released = self.backpressure.time_limit_passed(conn, half_full);
        self.unblocked(released);
    }

    /// Publishers released: their time limits are cancelled and they are
    /// read again (unless their output is backed up).
    fn unblocked(&mut self, released: Released) {
        for (conn, until) in released {
            self.timers.cancel(until, Timer::Unblock(conn.key()));
            self.update_reading(conn);
        }
    }

    /// A connection is gone: it waits for nothing any more.
    pub(super) fn forget_blocked(&mut self, conn: ConnId) {
        if let Some(until) = self.backpressure.forget(conn) {
            self.timers.cancel(until, Timer::Unblock(conn.key()));
        }
    }
}
