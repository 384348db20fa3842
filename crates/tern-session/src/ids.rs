//! Packet identifier allocation shared by PUBLISH, SUBSCRIBE and UNSUBSCRIBE.

use crate::idmap::IdMap;
use tern_codec::PacketId;

/// Hands out packet identifiers that are unique among everything in flight.
///
/// Identifiers are issued in increasing order, wrapping after 65,535, and
/// skip any still in use, so an identifier is reused only after its flow
/// completed and every other identifier was tried: a late acknowledgement of
/// an old flow cannot be mistaken for a new one. Memory is proportional to
/// the number of identifiers in use; allocation and release are O(1) when
/// flows complete roughly in the order they started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PacketIds {
    in_use: IdMap<()>,
    /// The last identifier issued (0 before the first).
    last: u16,
}

impl PacketIds {
    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            in_use: IdMap::new(),
            last: 0,
        }
    }

    /// The next free identifier after the last one issued, or `None` when all
    /// 65,535 are in use.
    pub fn allocate(&mut self) -> Option<PacketId> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        // Terminates: at least one identifier is free. The walk is as long as
        // the run of used identifiers after the last one issued.
        let mut candidate = next(self.last);
        while self.in_use.contains(candidate) {
            candidate = next(candidate.get());
        }
        self.in_use.insert(candidate, ());
        self.last = candidate.get();
        Some(candidate)
    }

    /// Marks an identifier as in use (when restoring state); returns `false`
    /// if it already was.
    pub fn claim(&mut self, id: PacketId) -> bool {
        self.in_use.insert(id, ()).is_none()
    }

    /// Returns an identifier to the pool; `false` if it was not in use.
    pub fn release(&mut self, id: PacketId) -> bool {
        self.in_use.remove(id).is_some()
    }

    /// Whether an identifier is in use.
    pub fn is_in_use(&self, id: PacketId) -> bool {
        self.in_use.contains(id)
    }

    /// How many identifiers are in use.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

fn next(id: u16) -> PacketId {
    PacketId::new(id.wrapping_add(1)).unwrap_or(PacketId::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn issues_in_order_and_skips_used() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.allocate(), Some(id(1)));
        assert_eq!(ids.allocate(), Some(id(2)));
        ids.claim(id(3));
        ids.claim(id(4));
        assert_eq!(ids.allocate(), Some(id(5)));
        assert!(ids.release(id(1)));
        // 1 is free again but is not reused before the counter wraps.
        assert_eq!(ids.allocate(), Some(id(6)));
    }

    #[test]
    fn wraps_after_65535_and_never_reuses_in_flight() {
        let mut ids = PacketIds::new();
        ids.last = 65_534;
        ids.claim(id(1));
        assert_eq!(ids.allocate(), Some(id(65_535)));
        // Wraps past 0 (invalid) and the in-use 1.
        assert_eq!(ids.allocate(), Some(id(2)));
    }

    #[test]
    fn exhaustion_is_none_not_a_loop() {
        let mut ids = PacketIds::new();
        for _ in 0..65_535 {
            assert!(ids.allocate().is_some());
        }
        assert_eq!(ids.allocate(), None);
        ids.release(id(40_000));
        assert_eq!(ids.allocate(), Some(id(40_000)));
    }
}
