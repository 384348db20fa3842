//! The subscription tree: which subscriptions match a topic.

use crate::{
    ShareName, SubscriptionFilter, TopicName,
    level::{END, next_level},
    matches::{MatchBuffer, Matches, SharedGroupRef},
    trie::{ROOT, Trie},
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
/// A trie of filter levels. Matching a topic of `d` levels visits, per level,
/// the exact child (one hash-table probe), the `+` child and the `#` child, so
/// its cost depends on the depth of the topic and the number of matching
/// filters, never on the number of subscriptions. Subscribers at a node are
/// kept sorted by key: inserting into a filter that already has `n`
/// subscribers moves up to `n` entries. A per-subscriber index makes
/// [`remove_client`](Self::remove_client) proportional to that subscriber's
/// own subscriptions.
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
    pub(crate) trie: Trie<Subscribers<K, V>>,
    clients: BTreeMap<K, ClientIndex>,
    len: usize,
    /// Bumped by every change that can move subscriptions between slots, so
    /// a stale [`SharedGroupRef`] is recognised.
    pub(crate) generation: u64,
}

/// The subscriptions stored at one trie node.
pub(crate) struct Subscribers<K, V> {
    /// Non-shared subscribers, sorted by key.
    pub(crate) plain: Vec<(K, V)>,
    /// Shared groups, sorted by name. Boxed: most nodes have none, and a
    /// thin pointer keeps every node 16 bytes smaller.
    #[allow(clippy::box_collection, reason = "see above")]
    pub(crate) shared: Option<Box<Vec<Group<K, V>>>>,
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Self {
            plain: Vec::new(),
            shared: None,
        }
    }
}

impl<K, V> Subscribers<K, V> {
    fn is_unused(&self) -> bool {
        self.plain.is_empty() && self.shared.is_none()
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

/// One subscriber's subscriptions, as trie node indices.
#[derive(Default)]
struct ClientIndex {
    /// Nodes of its non-shared subscriptions, sorted.
    plain: Vec<u32>,
    /// Nodes and group names of its shared subscriptions.
    shared: Vec<(u32, ShareName)>,
}

impl ClientIndex {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }
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
        self.clients
            .get(key)
            .map_or(0, |c| c.plain.len() + c.shared.len())
    }

    /// The value of `key`'s subscription to `filter`, if it has one.
    pub fn get(&self, key: &K, filter: &SubscriptionFilter) -> Option<&V> {
        let node = self.trie.find(filter.filter().as_bytes())?;
        let subs = &self.trie.node(node).data;
        let entries = match filter.group() {
            None => &subs.plain,
            Some(name) => {
                let groups = subs.shared.as_deref()?;
                let g = groups.binary_search_by(|g| g.name.cmp(name)).ok()?;
                &groups[g].members
            }
        };
        let i = entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(&entries[i].1)
    }

    /// Adds `key`'s subscription to `filter`, or replaces it: returns the
    /// value it replaced.
    pub fn insert(&mut self, key: K, filter: &SubscriptionFilter, value: V) -> Option<V> {
        let node = self.trie.find_or_insert(filter.filter().as_bytes());
        let subs = &mut self.trie.node_mut(node).data;
        match filter.group() {
            None => {
                if let Some(old) = insert_sorted(&mut subs.plain, key.clone(), value) {
                    return Some(old);
                }
                let client = self.clients.entry(key).or_default();
                if let Err(i) = client.plain.binary_search(&node) {
                    client.plain.insert(i, node);
                }
            }
            Some(name) => {
                let groups = subs.shared.get_or_insert_with(Box::default);
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
                let group = &mut groups[g];
                if let Some(old) = insert_sorted(&mut group.members, key.clone(), value) {
                    return Some(old);
                }
                let name = group.name.clone();
                self.clients
                    .entry(key)
                    .or_default()
                    .shared
                    .push((node, name));
            }
        }
        self.len += 1;
        self.generation += 1;
        None
    }

    /// Removes `key`'s subscription to `filter`: returns its value, or `None`
    /// if there was none (an UNSUBSCRIBE of an unknown filter is no error,
    /// [MQTT-3.10.4-1]).
    pub fn remove(&mut self, key: &K, filter: &SubscriptionFilter) -> Option<V> {
        let node = self.trie.find(filter.filter().as_bytes())?;
        let value = Self::remove_at(&mut self.trie.node_mut(node).data, key, filter.group())?;
        let client = self
            .clients
            .get_mut(key)
            .expect("the subscriber index has every subscription");
        match filter.group() {
            None => {
                if let Ok(i) = client.plain.binary_search(&node) {
                    client.plain.remove(i);
                }
            }
            Some(name) => {
                if let Some(i) = client
                    .shared
                    .iter()
                    .position(|(n, g)| *n == node && g == name)
                {
                    client.shared.swap_remove(i);
                }
            }
        }
        if client.is_empty() {
            self.clients.remove(key);
        }
        self.trie.prune(node, Subscribers::is_unused);
        self.len -= 1;
        self.generation += 1;
        Some(value)
    }

    /// Removes one subscription from a node's data.
    fn remove_at(subs: &mut Subscribers<K, V>, key: &K, group: Option<&ShareName>) -> Option<V> {
        let Some(name) = group else {
            return remove_sorted(&mut subs.plain, key);
        };
        let groups = subs.shared.as_mut()?;
        let g = groups.binary_search_by(|g| g.name.cmp(name)).ok()?;
        let value = remove_sorted(&mut groups[g].members, key)?;
        if groups[g].members.is_empty() {
            groups.remove(g);
            if groups.is_empty() {
                subs.shared = None;
            }
        }
        Some(value)
    }

    /// Removes every subscription of `key` (a session ending): returns how
    /// many there were. Costs time proportional to `key`'s subscriptions, not
    /// to the tree's size.
    pub fn remove_client(&mut self, key: &K) -> usize {
        let Some(client) = self.clients.remove(key) else {
            return 0;
        };
        let count = client.plain.len() + client.shared.len();
        for node in client.plain {
            let removed = Self::remove_at(&mut self.trie.node_mut(node).data, key, None);
            debug_assert!(removed.is_some());
            self.trie.prune(node, Subscribers::is_unused);
        }
        for (node, name) in client.shared {
            let removed = Self::remove_at(&mut self.trie.node_mut(node).data, key, Some(&name));
            debug_assert!(removed.is_some());
            self.trie.prune(node, Subscribers::is_unused);
        }
        self.len -= count;
        self.generation += 1;
        count
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
        buf.generation = self.generation;
        let topic = topic.as_bytes();
        // A topic beginning with `$` is not matched by a first-level
        // wildcard [MQTT-4.7.2-1].
        let dollar = topic.first() == Some(&b'$');
        buf.stack.push((ROOT, 0));
        while let Some((id, pos)) = buf.stack.pop() {
            let node = self.trie.node(id);
            let wildcards = !(dollar && id == ROOT);
            // `#` matches the remaining levels, none included: `sport/#`
            // matches `sport`.
            if wildcards && node.hash != crate::trie::NONE {
                self.collect(node.hash, buf);
            }
            if pos == END {
                self.collect(id, buf);
                continue;
            }
            let (level, next) = next_level(topic, pos);
            // `+` matches exactly one level, an empty one included.
            if wildcards && node.plus != crate::trie::NONE {
                buf.stack.push((node.plus, next));
            }
            if let Some(child) = self.trie.exact_child(id, level) {
                buf.stack.push((child, next));
            }
        }
        Matches::new(self, buf)
    }

    /// Records the subscriptions at a matching node.
    #[inline]
    fn collect(&self, id: u32, buf: &mut MatchBuffer) {
        let subs = &self.trie.node(id).data;
        if !subs.plain.is_empty() {
            buf.plain.push(id);
        }
        if let Some(groups) = &subs.shared {
            for index in 0..groups.len() {
                buf.shared.push(SharedGroupRef {
                    node: id,
                    index: index as u32,
                    generation: self.generation,
                });
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
        let groups = self.trie.node_mut(group.node).data.shared.as_mut()?;
        let group = groups.get_mut(group.index as usize)?;
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
