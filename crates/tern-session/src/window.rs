//! [`SeqWindow`]: entries numbered in the order they were added, removed in
//! roughly that order.
//!
//! The in-flight window is a queue that acknowledgements mostly drain from
//! the front, but any entry may leave first. Entries live in one contiguous
//! deque sorted by sequence number: adding is O(1), finding by sequence
//! number is a binary search, a removed entry leaves a hole that is popped
//! once it reaches the front, and holes are swept out when they outnumber
//! the entries, so memory stays proportional to the entries.

use alloc::collections::VecDeque;

/// Entries keyed by increasing sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct SeqWindow<T> {
    entries: VecDeque<(u64, Option<T>)>,
    live: usize,
    next_seq: u64,
}

impl<T> Default for SeqWindow<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            live: 0,
            next_seq: 0,
        }
    }
}

impl<T> SeqWindow<T> {
    /// Adds an entry at the end; returns its sequence number.
    pub(crate) fn push(&mut self, value: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back((seq, Some(value)));
        self.live += 1;
        seq
    }

    /// Where `seq` sits. Entries are numbered consecutively unless a sweep
    /// took holes out, so its distance from the front usually finds it
    /// without a search.
    #[inline]
    fn index(&self, seq: u64) -> Option<usize> {
        let front = self.entries.front()?.0;
        let guess = seq.checked_sub(front)?;
        if let Ok(guess) = usize::try_from(guess) {
            if self.entries.get(guess).is_some_and(|e| e.0 == seq) {
                return Some(guess);
            }
        }
        self.entries.binary_search_by_key(&seq, |e| e.0).ok()
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&T> {
        self.entries.get(self.index(seq)?)?.1.as_ref()
    }

    pub(crate) fn remove(&mut self, seq: u64) -> Option<T> {
        let i = self.index(seq)?;
        let value = self.entries[i].1.take()?;
        self.removed();
        Some(value)
    }

    /// Bookkeeping after an entry became a hole.
    fn removed(&mut self) {
        self.live -= 1;
        while self.entries.front().is_some_and(|e| e.1.is_none()) {
            self.entries.pop_front();
        }
        // Sweep holes once they outnumber the entries.
        if self.entries.len() > 2 * self.live + 32 {
            self.entries.retain(|e| e.1.is_some());
        }
    }

    /// Entries in sequence order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.entries
            .iter()
            .filter_map(|(s, v)| v.as_ref().map(|v| (*s, v)))
    }

    /// Entries in sequence order, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut T)> {
        self.entries
            .iter_mut()
            .filter_map(|(s, v)| v.as_mut().map(|v| (*s, v)))
    }

    /// Entries from sequence number `from` on, mutably.
    pub(crate) fn iter_mut_from(&mut self, from: u64) -> impl Iterator<Item = (u64, &mut T)> {
        let start = self.entries.partition_point(|e| e.0 < from);
        self.entries
            .range_mut(start..)
            .filter_map(|(s, v)| v.as_mut().map(|v| (*s, v)))
    }

    /// The first entry's sequence number.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.iter().next().map(|(s, _)| s)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Removes and returns every entry, in order.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = T> {
        self.live = 0;
        core::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|e| e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};

    #[test]
    fn finds_removes_and_keeps_order() {
        let mut w = SeqWindow::default();
        let seqs: Vec<u64> = (0..10).map(|i| w.push(i)).collect();
        assert_eq!(w.remove(seqs[3]), Some(3));
        assert_eq!(w.remove(seqs[3]), None);
        assert_eq!(w.remove(seqs[0]), Some(0));
        assert_eq!(w.remove(seqs[6]), Some(6));
        assert_eq!(w.remove(seqs[6]), None);
        assert_eq!(w.get(seqs[5]), Some(&5));
        assert_eq!(w.first_seq(), Some(seqs[1]));
        let rest: Vec<_> = w.iter().map(|(_, v)| *v).collect();
        assert_eq!(rest, vec![1, 2, 4, 5, 7, 8, 9]);
        let tail: Vec<_> = w.iter_mut_from(seqs[4]).map(|(_, v)| *v).collect();
        assert_eq!(tail, vec![4, 5, 7, 8, 9]);
        assert_eq!(w.len(), 7);
    }

    proptest::proptest! {
        /// Finding entries by their distance from the front stays right
        /// after sweeps leave the numbers with gaps.
        #[test]
        fn finds_like_a_btree_map(ops in proptest::collection::vec((0u8..5, 0u64..64), 0..400)) {
            let mut w = SeqWindow::default();
            let mut reference = alloc::collections::BTreeMap::new();
            for (op, at) in ops {
                if op < 3 {
                    let seq = w.push(at);
                    reference.insert(seq, at);
                } else {
                    // Any entry may leave: holes pile up behind old ones
                    // until a sweep takes them out.
                    let n = reference.len().max(1);
                    let Some(&seq) = reference.keys().nth(at as usize % n) else { continue };
                    proptest::prop_assert_eq!(w.remove(seq), reference.remove(&seq));
                }
                for (&seq, v) in &reference {
                    proptest::prop_assert_eq!(w.get(seq), Some(v));
                }
                proptest::prop_assert_eq!(w.len(), reference.len());
            }
        }
    }

    #[test]
    fn a_stuck_entry_does_not_let_holes_grow_without_bound() {
        let mut w = SeqWindow::default();
        let stuck = w.push(u32::MAX);
        for i in 0..10_000u32 {
            let s = w.push(i);
            w.remove(s);
        }
        assert_eq!(w.len(), 1);
        assert!(w.entries.len() <= 2 * w.len() + 33, "{}", w.entries.len());
        assert_eq!(w.get(stuck), Some(&u32::MAX));
    }
}
