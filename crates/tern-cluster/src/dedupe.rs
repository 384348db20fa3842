//! Taking each message once: a node whose subscriptions overlap (`a/+` and
//! `a/#`) holds several NATS subscriptions that each deliver a copy.
//! Copies carry their origin's sequence number; per origin, the sequence
//! numbers seen recently are kept (a bounded window), and a number seen
//! before, or older than the window, is a copy. A node that restarts
//! numbers from 1 again under a new incarnation: its window starts anew.

use std::collections::{BTreeMap, BTreeSet};

/// Sequence numbers kept per origin.
pub(crate) const WINDOW: usize = 4096;

/// Seen sequence numbers, per origin.
#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    origins: BTreeMap<String, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    incarnation: u64,
    recent: BTreeSet<u64>,
    /// Numbers below this fell out of the window.
    floor: u64,
}

impl Dedupe {
    /// Whether `seq` from `origin`'s `incarnation` is new (and remembers it).
    pub(crate) fn first(&mut self, origin: &str, incarnation: u64, seq: u64) -> bool {
        let seen = match self.origins.get_mut(origin) {
            Some(s) => s,
            None => self.origins.entry(origin.to_string()).or_default(),
        };
        if seen.incarnation != incarnation {
            *seen = Seen {
                incarnation,
                ..Seen::default()
            };
        }
        if seq < seen.floor || !seen.recent.insert(seq) {
            return false;
        }
        if seen.recent.len() > WINDOW {
            if let Some(oldest) = seen.recent.pop_first() {
                seen.floor = oldest + 1;
            }
        }
        true
    }

    /// Forgets `origin` (it restarted: its numbers start again).
    pub(crate) fn forget(&mut self, origin: &str) {
        self.origins.remove(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_taken_once_in_any_order_within_the_window() {
        let mut d = Dedupe::default();
        assert!(d.first("a", 7, 2));
        assert!(d.first("a", 7, 1));
        assert!(d.first("b", 7, 1));
        assert!(!d.first("a", 7, 2));
        assert!(!d.first("a", 7, 1));
        for s in 3..(WINDOW as u64 + 10) {
            assert!(d.first("a", 7, s));
        }
        // Fallen out of the window: treated as a copy.
        assert!(!d.first("a", 7, 5));
        // Restarted: numbers start again.
        assert!(d.first("a", 8, 1));
        assert!(!d.first("a", 8, 1));
        d.forget("a");
        assert!(d.first("a", 8, 1));
    }
}
