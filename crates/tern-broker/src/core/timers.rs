//! The broker's deadlines: one ordered set of `(when, what)`.
//!
//! Invariants:
//! - Deadlines fire in time order, and equal deadlines in [`Timer`]'s order,
//!   so a run is the same whatever the host.
//! - A timer whose owner keeps its deadline (a connection's, a blocked
//!   publisher's) is cancelled exactly when the owner changes or goes; the
//!   others (wills, session expiry) may be stale, and their handlers check
//!   the owner's current deadline, so a stale one costs one no-op.

use super::SessionKey;
use super::slab::Key;
use std::collections::BTreeSet;
use tern_session::Instant;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A connection's own deadline (connect timeout, keep alive).
    Conn(Key),
    /// A delayed will.
    Will(SessionKey),
    /// An offline session's expiry.
    SessionExpiry(SessionKey),
    /// Publishing the `$SYS` topics.
    Sys,
    /// A blocked publisher's time limit (see `backpressure.rs`).
    Unblock(Key),
    /// The next slice of ended sessions' subscriptions to remove (see
    /// `subscriptions.rs`).
    Sweep,
}

/// Every pending deadline.
#[derive(Debug, Default)]
pub(super) struct Timers {
    set: BTreeSet<(Instant, Timer)>,
}

impl Timers {
    /// Fires `timer` at `at`.
    pub(super) fn arm(&mut self, at: Instant, timer: Timer) {
        self.set.insert((at, timer));
    }

    /// Cancels `timer` armed for `at` (nothing if it is not armed).
    pub(super) fn cancel(&mut self, at: Instant, timer: Timer) {
        self.set.remove(&(at, timer));
    }

    /// Cancels `timer` wherever it is armed (a reconfigured `$SYS` interval).
    pub(super) fn cancel_all(&mut self, timer: Timer) {
        self.set.retain(|&(_, t)| t != timer);
    }

    /// Moves `timer` from `have` to `want` (either may be none).
    pub(super) fn rearm(&mut self, have: Option<Instant>, want: Option<Instant>, timer: Timer) {
        if let Some(t) = have {
            self.cancel(t, timer);
        }
        if let Some(t) = want {
            self.arm(t, timer);
        }
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(t, _)| t)
    }

    /// Takes the earliest timer due at `now`, if any.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.set.first()?;
        if at > now {
            return None;
        }
        self.set.pop_first();
        Some(timer)
    }
}
