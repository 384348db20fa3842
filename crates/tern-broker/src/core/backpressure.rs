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

use super::{Broker, BrokerEvent, ConnId, SessionKey, Timer};
use tern_session::Instant;

/// One connection's output credit and reading state.
#[derive(Debug)]
pub(super) struct Flow {
    /// Bytes handed to the shell and not reported written.
    unwritten: usize,
    /// Whether it may get more transmits.
    pub(super) writable: bool,
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

/// Why a publisher is blocked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blocked {
    /// The session whose queue it congested.
    on: SessionKey,
    /// When it is read again regardless.
    until: Instant,
}

impl Broker {
    /// Whether [`handle_bytes`](Self::handle_bytes) stops consuming this
    /// connection's bytes (publisher backpressure) for now.
    pub fn is_blocked(&self, conn: ConnId) -> bool {
        self.blocked.contains_key(&conn)
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
        c.flow.unwritten += len;
        if let Some(credit) = self.config.output_credit {
            if c.flow.writable && c.flow.unwritten > credit.high_water {
                c.flow.writable = false;
                self.update_reading(conn);
            }
        }
    }

    /// The shell wrote `n` bytes.
    pub(super) fn credit(&mut self, conn: ConnId, n: usize) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        c.flow.unwritten = c.flow.unwritten.saturating_sub(n);
        let low_water = self
            .config
            .output_credit
            .map_or(usize::MAX, |c| c.low_water);
        if !c.flow.writable && c.flow.unwritten <= low_water {
            c.flow.writable = true;
            self.mark_ready(conn);
            self.update_reading(conn);
        }
    }

    /// Tells the shell when whether to read a connection changes.
    fn update_reading(&mut self, conn: ConnId) {
        let blocked = self.blocked.contains_key(&conn);
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        if c.closing {
            return;
        }
        let paused = !c.flow.writable || blocked;
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
        if self.config.publisher_backpressure.is_none() {
            return;
        }
        let limits = &self.config.server.queue;
        if (queue_len >= limits.max_messages.div_ceil(2) || bytes >= limits.max_bytes.div_ceil(2))
            && !self.stalled.contains(&to)
        {
            self.congested = Some(to);
        }
    }

    /// After a connection's PUBLISH is routed: blocks it if it congested a queue.
    pub(super) fn block_if_congested(&mut self, now: Instant, conn: ConnId) {
        let (Some(on), Some(limit)) = (self.congested.take(), self.config.publisher_backpressure)
        else {
            return;
        };
        if self.blocked.contains_key(&conn) {
            return;
        }
        let until = now + limit;
        self.blocked.insert(conn, Blocked { on, until });
        self.waiting.entry(on).or_default().insert(conn);
        self.timers.arm(until, Timer::Unblock(conn.key()));
        self.update_reading(conn);
    }

    /// Releases the publishers waiting on a subscriber whose queue has
    /// drained to a quarter, gone offline or away; forgets stalled marks of
    /// queues that drained. Costs one check per congested subscriber, not
    /// per blocked publisher.
    pub(super) fn release_blocked(&mut self) {
        if self.waiting.is_empty() && self.stalled.is_empty() {
            return;
        }
        let limits = self.config.server.queue;
        // Whether a session's queue has drained to a quarter (or it is gone).
        let drained = |on: SessionKey, this: &Self| {
            let Some(conn) = this.sessions.get(on).and_then(|s| s.conn) else {
                return true;
            };
            let Some(session) = this.conns.get(conn.key()).and_then(|c| c.server.session()) else {
                return true;
            };
            session.queue_len() <= limits.max_messages / 4
                && session.queued_bytes() <= limits.max_bytes / 4
        };
        let recovered: Vec<SessionKey> = self
            .stalled
            .iter()
            .copied()
            .filter(|&on| drained(on, self))
            .collect();
        for on in recovered {
            self.stalled.remove(&on);
        }
        let drained: Vec<SessionKey> = self
            .waiting
            .keys()
            .copied()
            .filter(|&on| drained(on, self))
            .collect();
        for on in drained {
            self.release_waiting_on(on);
        }
    }

    /// A blocked publisher's time limit passed: its subscriber is stalled
    /// and holds no one up any more.
    pub(super) fn unblock_due(&mut self, conn: ConnId) {
        if let Some(b) = self.blocked.get(&conn) {
            let on = b.on;
            self.stalled.insert(on);
            self.release_waiting_on(on);
        }
    }

    /// Releases every publisher waiting on `on`.
    fn release_waiting_on(&mut self, on: SessionKey) {
        for conn in self.waiting.remove(&on).unwrap_or_default() {
            if let Some(b) = self.blocked.remove(&conn) {
                self.timers.cancel(b.until, Timer::Unblock(conn.key()));
                self.update_reading(conn);
            }
        }
    }

    /// A connection is gone: it waits for nothing any more.
    pub(super) fn forget_blocked(&mut self, conn: ConnId) {
        if let Some(b) = self.blocked.remove(&conn) {
            self.timers.cancel(b.until, Timer::Unblock(conn.key()));
            if let Some(set) = self.waiting.get_mut(&b.on) {
                set.remove(&conn);
                if set.is_empty() {
                    self.waiting.remove(&b.on);
                }
            }
        }
    }
}
