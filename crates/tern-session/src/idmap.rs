//! A small map from packet identifier to a value, kept as a sorted deque.
//!
//! Packet identifiers are issued in increasing order (wrapping after
//! 65,535) and mostly complete oldest first, so nearly every insert and
//! removal touches an end of the deque: cheaper than a B-tree for the few
//! dozen identifiers a session usually has in flight. The worst case (an
//! identifier in the middle) is O(n).

use alloc::collections::VecDeque;
use tern_codec::PacketId;

/// Packet identifier → `V`, sorted by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdMap<V> {
    entries: VecDeque<(PacketId, V)>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> IdMap<V> {
    /// An empty map.
    pub(crate) const fn new() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }

    /// Where `id` is, or would go. The ends are checked first.
    #[inline]
    fn position(&self, id: PacketId) -> Result<usize, usize> {
        let (Some(front), Some(back)) = (self.entries.front(), self.entries.back()) else {
            return Err(0);
        };
        if id > back.0 {
            Err(self.entries.len())
        } else if id == front.0 {
            Ok(0)
        } else if id < front.0 {
            Err(0)
        } else {
            self.entries.binary_search_by_key(&id, |e| e.0)
        }
    }

    /// The value for `id`.
    #[inline]
    pub(crate) fn get(&self, id: PacketId) -> Option<&V> {
        let at = self.position(id).ok()?;
        self.entries.get(at).map(|e| &e.1)
    }

    /// Whether `id` has a value.
    #[inline]
    pub(crate) fn contains(&self, id: PacketId) -> bool {
        self.position(id).is_ok()
    }

    /// Sets the value for `id`, returning the old one.
    #[inline]
    pub(crate) fn insert(&mut self, id: PacketId, value: V) -> Option<V> {
        match self.position(id) {
            Ok(at) => self
                .entries
                .get_mut(at)
                .map(|e| core::mem::replace(&mut e.1, value)),
            // Identifiers are issued in increasing order: nearly always the end.
            Err(at) if at == self.entries.len() => {
                self.entries.push_back((id, value));
                None
            }
            Err(at) => {
                self.entries.insert(at, (id, value));
                None
            }
        }
    }

    /// Removes `id`, returning its value.
    #[inline]
    pub(crate) fn remove(&mut self, id: PacketId) -> Option<V> {
        let at = self.position(id).ok()?;
        // Flows mostly complete oldest first: nearly always the front.
        if at == 0 {
            return self.entries.pop_front().map(|e| e.1);
        }
        self.entries.remove(at).map(|e| e.1)
    }

    /// Removes everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many identifiers have a value.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, by identifier.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PacketId, &V)> {
        self.entries.iter().map(|(id, v)| (*id, v))
    }
}

#[cfg(feature = "serde")]
impl<V: serde::Serialize> serde::Serialize for IdMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

#[cfg(feature = "serde")]
impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for IdMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The same map form a `BTreeMap` has, so stored sessions read back.
        let map = alloc::collections::BTreeMap::<PacketId, V>::deserialize(d)?;
        Ok(Self {
            entries: map.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{collections::BTreeMap, vec::Vec};
    use proptest::prelude::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    proptest! {
        /// Any sequence of inserts and removals gives the answers a BTreeMap gives.
        #[test]
        fn behaves_like_a_btree_map(ops in proptest::collection::vec((any::<bool>(), 1u16..40, any::<u8>()), 0..200)) {
            let mut map = IdMap::default();
            let mut reference = BTreeMap::new();
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(map.insert(id(k), v), reference.insert(id(k), v));
                } else {
                    prop_assert_eq!(map.remove(id(k)), reference.remove(&id(k)));
                }
                prop_assert_eq!(map.len(), reference.len());
                for k in 1u16..40 {
                    prop_assert_eq!(map.get(id(k)), reference.get(&id(k)));
                    prop_assert_eq!(map.contains(id(k)), reference.contains_key(&id(k)));
                }
                let ours: Vec<_> = map.iter().map(|(k, v)| (k, *v)).collect();
                let theirs: Vec<_> = reference.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
