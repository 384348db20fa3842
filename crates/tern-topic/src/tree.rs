//! The subscription tree: which subscriptions match a topic.

use crate::{
    ShareName, SubscriptionFilter, TopicName,
    matches::{MatchBuffer, Matches, SharedGroupRef},
    trie::{NONE, ROOT, Slab, Trie},
};
use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};
use bytes::Bytes;
use core::{fmt, mem};

/// Every subscription in a broker, indexed by filter for matching and by
/// subscriber for removal.
///
/// `K` identifies a subscriber (a client id, a session index); `V` is what
/// the broker stores per subscription (granted QoS, No Local, Retain As
/// Published, Subscription Identifier, ...). A subscriber has at most one
/// subscription per [`SubscriptionFilter`]: inserting the same (key, filter)
/// again replaces it, as a SUBSCRIBE with an identical filter must
/// (3.1.1 [MQTT-3.8.4-3], 5.0 [MQTT-3.8.4-3]). A plain `a/b` and a shared
/// `$share/g/a/b` are different filters.
///
/// Methods, grouped:
/// - getters: [`len`](Self::len), [`node_count`](Self::node_count),
///   [`get`](Self::get), [`client_len`](Self::client_len);
/// - changes: [`insert`](Self::insert), [`remove`](Self::remove),
///   [`remove_client`](Self::remove_client), [`clear`](Self::clear);
/// - matching: [`matches`](Self::matches) fills a reusable [`MatchBuffer`]
///   and returns a [`Matches`] view; shared groups are then served with
///   [`select_round_robin`](Self::select_round_robin) or a policy of the
///   caller's.
///
/// # Structure and cost
///
/// A trie of filter levels: matching a topic looks each of its levels up
/// once in the level interner, then at every node reached follows the exact
/// child (one hash-table probe), the `+` child and the `#` child. Its cost depends on the topic's depth and on the
/// filters that match a prefix of it, not on the number of subscriptions.
/// Subscribers at a node are kept sorted by key: inserting into a filter
/// that already has `n` subscribers moves up to `n` entries. A
/// per-subscriber index makes [`remove_client`](Self::remove_client)
/// proportional to that subscriber's own subscriptions.
///
/// Removing the last subscription under a node frees the node (and any
/// ancestors left empty); freed slots are reused, and an empty tree releases
/// all its memory. [`node_count`](Self::node_count) is zero again once every
/// subscription is gone.
///
/// # Determinism
///
/// No randomness and no ambient state: the same sequence of operations gives
/// the same tree and the same match order on every run and platform. The
/// internal hash table has a fixed seed and is never iterated.
///
/// # Example
///
/// ```
/// use tern_topic::{MatchBuffer, SubscriptionFilter, SubscriptionTree, TopicName};
///
/// let mut tree = SubscriptionTree::new();
/// tree.insert("alice", &SubscriptionFilter::parse_str("sport/+/score")?, 1u8);
/// tree.insert("bob", &SubscriptionFilter::parse_str("sport/#")?, 0u8);
/// tree.insert("carol", &SubscriptionFilter::parse_str("$share/tv/sport/#")?, 2u8);
/// tree.insert("dave", &SubscriptionFilter::parse_str("$share/tv/sport/#")?, 2u8);
///
/// let mut buf = MatchBuffer::new();
/// let topic = TopicName::try_from("sport/tennis/score")?;
/// let matches = tree.matches(&topic, &mut buf);
/// let mut plain: Vec<_> = matches.plain().map(|m| (*m.key(), m.filter().to_string())).collect();
/// plain.sort();
/// assert_eq!(plain, [("alice", "sport/+/score".to_string()), ("bob", "sport/#".to_string())]);
/// assert_eq!(matches.shared().count(), 1, "one delivery for the group");
///
/// // Round robin through the group's members.
/// let group = buf.shared_groups().next().unwrap();
/// assert_eq!(tree.select_round_robin(group, |_, _| true).map(|(k, _)| *k), Some("carol"));
/// assert_eq!(tree.select_round_robin(group, |_, _| true).map(|(k, _)| *k), Some("dave"));
/// # Ok::<(), tern_topic::TopicError>(())
/// ```
pub struct SubscriptionTree<K, V> {
    pub(crate) trie: Trie<SubsSlot>,
    /// The subscriptions of the nodes that have some.
    subs: Slab<Subscribers<K, V>>,
    /// Each subscriber's subscriptions: sorted node indices, with
    /// [`SHARED`] set for a shared group membership (one entry per group).
    clients: BTreeMap<K, Vec<u32>>,
    len: usize,
    /// Bumped by every change that can move subscriptions between slots, so
    /// a stale [`SharedGroupRef`] is recognised.
    pub(crate) generation: u64,
}

/// A node's slot in the subscription slab, `NONE` if it has none: interior
/// nodes carry four bytes for subscriptions, not a whole [`Subscribers`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubsSlot(u32);

impl Default for SubsSlot {
    fn default() -> Self {
        Self(NONE)
    }
}

/// Marks a shared membership in a subscriber's index.
const SHARED: u32 = 1 << 31;

/// The subscriptions stored at one trie node.
///
/// Most filters have one subscriber, so that case is stored inline: 16 bytes
/// for a small key and value, instead of two vectors.
#[derive(Default)]
pub(crate) enum Subscribers<K, V> {
    /// No subscription ends here.
    #[default]
    Empty,
    /// One non-shared subscriber and no shared group.
    One((K, V)),
    /// Anything else.
    Many(Box<Many<K, V>>),
}

/// The subscriptions at a node with more than one.
pub(crate) struct Many<K, V> {
    /// Non-shared subscribers, sorted by key.
    plain: Vec<(K, V)>,
    /// Shared groups, sorted by name.
    shared: Vec<Group<K, V>>,
}

impl<K: Ord, V> Subscribers<K, V> {
    /// The non-shared subscribers, sorted by key.
    pub(crate) fn plain(&self) -> &[(K, V)] {
        match self {
            Self::Empty => &[],
            Self::One(entry) => core::slice::from_ref(entry),
            Self::Many(many) => &many.plain,
        }
    }

    /// The shared groups, sorted by name.
    pub(crate) fn shared(&self) -> &[Group<K, V>] {
        match self {
            Self::Many(many) => &many.shared,
            _ => &[],
        }
    }

    /// The general form, converting to it if needed.
    fn many(&mut self) -> &mut Many<K, V> {
        if !matches!(self, Self::Many(_)) {
            let plain = match mem::take(self) {
                Self::One(entry) => alloc::vec![entry],
                _ => Vec::new(),
            };
            *self = Self::Many(Box::new(Many {
                plain,
                shared: Vec::new(),
            }));
        }
        match self {
            Self::Many(many) => many,
            _ => unreachable!("converted above"),
        }
    }

    /// Back to the compact forms once they fit.
    fn compact(&mut self) {
        if let Self::Many(many) = self {
            if many.shared.is_empty() && many.plain.len() <= 1 {
                *self = match many.plain.pop() {
                    Some(entry) => Self::One(entry),
                    None => Self::Empty,
                };
            }
        }
    }

    fn insert_plain(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::Empty => {
                *self = Self::One((key, value));
                None
            }
            Self::One((k, v)) if *k == key => Some(mem::replace(v, value)),
            _ => insert_sorted(&mut self.many().plain, key, value),
        }
    }

    fn remove_plain(&mut self, key: &K) -> Option<V> {
        let value = match self {
            Self::Empty => None,
            Self::One((k, _)) if k == key => match mem::take(self) {
                Self::One((_, v)) => Some(v),
                _ => unreachable!("matched One above"),
            },
            Self::One(_) => None,
            Self::Many(many) => remove_sorted(&mut many.plain, key),
        };
        self.compact();
        value
    }

    /// Removes `key` from `group`, or from the first group that has it.
    fn remove_shared(&mut self, key: &K, group: Option<&ShareName>) -> Option<V> {
        let Self::Many(many) = self else {
            return None;
        };
        let groups = &mut many.shared;
        let g = match group {
            Some(name) => groups.binary_search_by(|g| g.name.cmp(name)).ok()?,
            None => groups
                .iter()
                .position(|g| g.members.binary_search_by(|(k, _)| k.cmp(key)).is_ok())?,
        };
        let value = remove_sorted(&mut groups[g].members, key)?;
        if groups[g].members.is_empty() {
            groups.remove(g);
        }
        self.compact();
        Some(value)
    }

    fn shared_mut(&mut self, index: usize) -> Option<&mut Group<K, V>> {
        match self {
            Self::Many(many) => many.shared.get_mut(index),
            _ => None,
        }
    }
}

/// A shared subscription group at one filter.
pub(crate) struct Group<K, V> {
    pub(crate) name: ShareName,
    /// Members, sorted by key.
    pub(crate) members: Vec<(K, V)>,
    /// The member chosen last by round robin.
    last: Option<K>,
}

/// Inserts into a vector sorted by key, allocating exactly one slot for the
/// first entry (most filters have a single subscriber).
fn insert_sorted<K: Ord, V>(entries: &mut Vec<(K, V)>, key: K, value: V) -> Option<V> {
    match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => Some(mem::replace(&mut entries[i].1, value)),
        Err(i) => {
            if entries.capacity() == 0 {
                entries.reserve_exact(1);
            }
            entries.insert(i, (key, value));
            None
        }
    }
}

/// Removes from a vector sorted by key, giving memory back as it empties.
fn remove_sorted<K: Ord, V>(entries: &mut Vec<(K, V)>, key: &K) -> Option<V> {
    let i = entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
    let (_, value) = entries.remove(i);
    if entries.len() * 4 <= entries.capacity() {
        entries.shrink_to(entries.len() * 2);
    }
    Some(value)
}

impl<K: Ord + Clone, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone, V> SubscriptionTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            trie: Trie::new(),
            subs: Slab::new(),
            clients: BTreeMap::new(),
            len: 0,
            generation: 0,
        }
    }

    /// Number of subscriptions (each shared subscription member counts once).
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes (filter levels) in use; zero when the tree is
    /// empty.
    pub fn node_count(&self) -> usize {
        self.trie.node_count()
    }

    /// Number of subscriptions `key` has.
    pub fn client_len(&self, key: &K) -> usize {
        self.clients.get(key).map_or(0, Vec::len)
    }

    /// Every subscription of `key`, as `(filter, value)`: the filter's text
    /// as a SUBSCRIBE carries it (`$share/{group}/{filter}` for a shared
    /// one), rebuilt from the tree. Ordered by node, deterministic; costs
    /// one allocation per subscription. This makes the tree's own
    /// per-subscriber index enough to store or list a subscriber's
    /// subscriptions, with no second copy kept beside the tree.
    pub fn client_subscriptions<'a>(&'a self, key: &'a K) -> impl Iterator<Item = (Bytes, &'a V)> {
        let index = self.clients.get(key).map_or(&[][..], Vec::as_slice);
        // A subscriber in several groups at one node has that node once per
        // group in its index, side by side: the n-th is its n-th group there.
        let mut previous = None;
        let mut nth = 0;
        index.iter().filter_map(move |&entry| {
            nth = if previous == Some(entry) { nth + 1 } else { 0 };
            previous = Some(entry);
            let node = entry & !SHARED;
            let subs = self.subs_of(node)?;
            let mut out = Vec::new();
            let value = if entry & SHARED == 0 {
                let plain = subs.plain();
                let i = plain.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                &plain[i].1
            } else {
                let (group, value) = subs
                    .shared()
                    .iter()
                    .filter_map(|g| {
                        let i = g.members.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                        Some((g, &g.members[i].1))
                    })
                    .nth(nth)?;
                out.extend_from_slice(b"$share/");
                out.extend_from_slice(group.name.as_bytes());
                out.push(b'/');
                value
            };
            self.trie.write_path(node, &mut out);
            Some((Bytes::from(out), value))
        })
    }

    /// The value of `key`'s subscription to `filter`, if it has one.
    pub fn get(&self, key: &K, filter: &SubscriptionFilter) -> Option<&V> {
        let node = self.trie.find(filter.filter().as_bytes())?;
        let subs = self.subs_of(node)?;
        let entries = match filter.group() {
            None => subs.plain(),
            Some(name) => {
                let groups = subs.shared();
                let g = groups.binary_search_by(|g| g.name.cmp(name)).ok()?;
                &groups[g].members
            }
        };
        let i = entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(&entries[i].1)
    }

    /// Adds `key`'s subscription to `filter`, or replaces it: returns the
    /// value it replaced.
    ///
    /// # Panics
    /// If the tree would need more than 2^31 nodes.
    pub fn insert(&mut self, key: K, filter: &SubscriptionFilter, value: V) -> Option<V> {
        let node = self.trie.find_or_insert(filter.filter().as_bytes());
        assert!(node < SHARED, "fewer than 2^31 trie nodes");
        let slot = match self.trie.node(node).data {
            SubsSlot(NONE) => {
                let slot = self.subs.insert(Subscribers::Empty);
                self.trie.node_mut(node).data = SubsSlot(slot);
                slot
            }
            SubsSlot(slot) => slot,
        };
        let subs = self.subs.get_mut(slot);
        let entry = match filter.group() {
            None => {
                if let Some(old) = subs.insert_plain(key.clone(), value) {
                    return Some(old);
                }
                node
            }
            Some(name) => {
                let groups = &mut subs.many().shared;
                let g = match groups.binary_search_by(|g| g.name.cmp(name)) {
                    Ok(g) => g,
                    Err(g) => {
                        // A copy: the name may be a slice of a whole packet
                        // buffer, which a long-lived subscription must not pin.
                        let name =
                            ShareName::from_validated(Bytes::copy_from_slice(name.as_bytes()));
                        groups.insert(
                            g,
                            Group {
                                name,
                                members: Vec::new(),
                                last: None,
                            },
                        );
                        g
                    }
                };
                if let Some(old) = insert_sorted(&mut groups[g].members, key.clone(), value) {
                    return Some(old);
                }
                node | SHARED
            }
        };
        let index = self.clients.entry(key).or_default();
        let at = index.partition_point(|&e| e < entry);
        if index.len() == index.capacity() {
            // Grow by half: most subscribers have a handful of subscriptions.
            index.reserve_exact(index.len() / 2 + 2);
        }
        index.insert(at, entry);
        self.len += 1;
        self.generation += 1;
        None
    }

    /// The subscriptions at `node`, if it has any.
    fn subs_of(&self, node: u32) -> Option<&Subscribers<K, V>> {
        match self.trie.node(node).data {
            SubsSlot(NONE) => None,
            SubsSlot(slot) => Some(self.subs.get(slot)),
        }
    }

    /// The subscriptions in slab slot `slot`.
    #[inline]
    pub(crate) fn slot(&self, slot: u32) -> &Subscribers<K, V> {
        self.subs.get(slot)
    }

    /// Removes one of `key`'s subscriptions at `node` (from `group`, or from
    /// the first group that has it if `group` is `None` and `shared`), then
    /// frees what became empty.
    fn remove_at(
        &mut self,
        node: u32,
        key: &K,
        shared: bool,
        group: Option<&ShareName>,
    ) -> Option<V> {
        let SubsSlot(slot) = self.trie.node(node).data;
        if slot == NONE {
            return None;
        }
        let subs = self.subs.get_mut(slot);
        let value = if shared {
            subs.remove_shared(key, group)
        } else {
            subs.remove_plain(key)
        }?;
        if matches!(subs, Subscribers::Empty) {
            self.subs.remove(slot, Subscribers::Empty);
            self.trie.node_mut(node).data = SubsSlot(NONE);
            self.trie.prune(node, |slot| *slot == SubsSlot(NONE));
        }
        Some(value)
    }

    /// Removes `key`'s subscription to `filter`: returns its value, or `None`
    /// if there was none (an UNSUBSCRIBE of an unknown filter is no error,
    /// [MQTT-3.10.4-1]).
    pub fn remove(&mut self, key: &K, filter: &SubscriptionFilter) -> Option<V> {
        let node = self.trie.find(filter.filter().as_bytes())?;
        let group = filter.group();
        let value = self.remove_at(node, key, group.is_some(), group)?;
        let entry = if group.is_some() { node | SHARED } else { node };
        let index = self
            .clients
            .get_mut(key)
            .expect("the subscriber index has every subscription");
        let at = index.partition_point(|&e| e < entry);
        debug_assert_eq!(index.get(at), Some(&entry));
        index.remove(at);
        if index.is_empty() {
            self.clients.remove(key);
        } else if index.len() * 4 <= index.capacity() {
            index.shrink_to(index.len() * 2);
        }
        self.len -= 1;
        self.generation += 1;
        Some(value)
    }

    /// Removes every subscription of `key` (a session ending): returns how
    /// many there were. Costs time proportional to `key`'s subscriptions, not
    /// to the tree's size.
    pub fn remove_client(&mut self, key: &K) -> usize {
        let Some(index) = self.clients.remove(key) else {
            return 0;
        };
        for &entry in &index {
            let removed = self.remove_at(entry & !SHARED, key, entry & SHARED != 0, None);
            debug_assert!(removed.is_some());
        }
        self.len -= index.len();
        self.generation += 1;
        index.len()
    }

    /// Removes at most `max` subscriptions of `key`: returns how many it
    /// removed and whether `key` has none left. A session with many
    /// subscriptions is removed in slices of bounded work this way, so the
    /// caller can serve others between them.
    pub fn remove_client_some(&mut self, key: &K, max: usize) -> (usize, bool) {
        let Some(index) = self.clients.get_mut(key) else {
            return (0, true);
        };
        let cut = index.len().saturating_sub(max);
        let slice = index.split_off(cut);
        let done = index.is_empty();
        if done {
            self.clients.remove(key);
        }
        for &entry in &slice {
            let removed = self.remove_at(entry & !SHARED, key, entry & SHARED != 0, None);
            debug_assert!(removed.is_some());
        }
        self.len -= slice.len();
        self.generation += 1;
        (slice.len(), done)
    }

    /// Removes every subscription and releases the memory.
    pub fn clear(&mut self) {
        let generation = self.generation + 1;
        *self = Self::new();
        self.generation = generation;
    }

    /// Finds every subscription whose filter matches `topic`, into `buf`.
    ///
    /// The returned [`Matches`] lists the non-shared matches one subscription
    /// at a time and the shared ones one group at a time. The order is
    /// deterministic: it depends only on the operations that built the tree.
    /// `buf` is cleared first and keeps its capacity, so a broker that reuses
    /// one buffer matches without allocating once the buffer has grown.
    pub fn matches<'a>(&'a self, topic: &TopicName, buf: &'a mut MatchBuffer) -> Matches<'a, K, V> {
        buf.clear();
        let topic = topic.as_bytes();
        // Each topic level's interned id, once: a level no filter uses has
        // none and can only be matched by a wildcard.
        buf.levels.extend(
            topic
                .split(|&b| b == b'/')
                .map(|level| self.trie.level_id(level).unwrap_or(NONE)),
        );
        let depth = buf.levels.len() as u32;
        // A topic beginning with `$` is not matched by a first-level
        // wildcard [MQTT-4.7.2-1].
        let dollar = topic.first() == Some(&b'$');
        buf.stack.push((ROOT, 0));
        while let Some((id, at)) = buf.stack.pop() {
            let node = self.trie.node(id);
            let wildcards = !(dollar && id == ROOT);
            // `#` matches the remaining levels, none included: `sport/#`
            // matches `sport`.
            if wildcards && node.hash != NONE {
                self.collect(node.hash, buf);
            }
            if at == depth {
                self.collect(id, buf);
                continue;
            }
            // `+` matches exactly one level, an empty one included.
            if wildcards && node.plus != NONE {
                buf.stack.push((node.plus, at + 1));
            }
            let level = buf.levels[at as usize];
            if level != NONE {
                if let Some(child) = self.trie.child_by_id(id, level) {
                    buf.stack.push((child, at + 1));
                }
            }
        }
        Matches::new(self, buf)
    }

    /// Records the subscriptions at a matching node.
    #[inline(always)]
    fn collect(&self, id: u32, buf: &mut MatchBuffer) {
        let SubsSlot(slot) = self.trie.node(id).data;
        if slot == NONE {
            return;
        }
        match self.subs.get(slot) {
            Subscribers::Empty => {}
            Subscribers::One(_) => buf.plain.push((id, slot)),
            Subscribers::Many(many) => {
                if !many.plain.is_empty() {
                    buf.plain.push((id, slot));
                }
                for index in 0..many.shared.len() {
                    buf.shared.push(SharedGroupRef {
                        node: id,
                        slot,
                        index: index as u32,
                        generation: self.generation,
                    });
                }
            }
        }
    }

    /// Chooses the next member of a shared group, round robin, skipping
    /// members `accept` refuses (say, offline ones); remembers the choice.
    ///
    /// Round robin starts after the member chosen last, by key order, so a
    /// member joining or leaving does not restart the rotation. Returns `None`
    /// if no member is accepted, or if `group` is stale: the tree changed
    /// (an insert or removal) since the [`matches`](Self::matches) call that
    /// produced it.
    ///
    /// This is the default policy; another policy reads the members from
    /// [`SharedMatch::members`](crate::SharedMatch::members) and keeps its
    /// own state.
    pub fn select_round_robin(
        &mut self,
        group: SharedGroupRef,
        mut accept: impl FnMut(&K, &V) -> bool,
    ) -> Option<(&K, &V)> {
        if group.generation != self.generation {
            return None;
        }
        let group = self
            .subs
            .get_mut(group.slot)
            .shared_mut(group.index as usize)?;
        let n = group.members.len();
        let start = match &group.last {
            Some(last) => group.members.partition_point(|(k, _)| k <= last),
            None => 0,
        };
        let chosen = (0..n)
            .map(|step| (start + step) % n)
            .find(|&i| accept(&group.members[i].0, &group.members[i].1))?;
        group.last = Some(group.members[chosen].0.clone());
        let (k, v) = &group.members[chosen];
        Some((k, v))
    }
}

impl<K, V> fmt::Debug for SubscriptionTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTree")
            .field("len", &self.len)
            .field("clients", &self.clients.len())
            .field("node_count", &self.trie.node_count())
            .finish()
    }
}
