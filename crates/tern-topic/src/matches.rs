//! The result of matching a topic against a [`SubscriptionTree`], and the
//! helpers a broker delivers with.

use crate::{ShareName, SubscriptionTree, TopicFilter, tree::Group};
use alloc::vec::Vec;
use bytes::Bytes;
use core::{fmt, mem};

/// Reusable scratch space for [`SubscriptionTree::matches`].
///
/// Matching writes node indices here rather than allocating; keep one buffer
/// per broker (or per thread) and pass it to every call, and matching stops
/// allocating once the buffer has grown to the largest fan-out seen.
#[derive(Debug, Default, Clone)]
pub struct MatchBuffer {
    /// The topic's levels as interned level ids.
    pub(crate) levels: Vec<u32>,
    /// Trie walk stack: (node, index of the next topic level).
    pub(crate) stack: Vec<(u32, u32)>,
    /// Matching nodes with non-shared subscribers, in visit order, with
    /// their subscription slots.
    pub(crate) plain: Vec<(u32, u32)>,
    /// Matching shared groups, in visit order.
    pub(crate) shared: Vec<SharedGroupRef>,
    /// (index into `plain`, index of the subscriber there), sorted by
    /// subscriber.
    per_client: Vec<(u32, u32)>,
    /// Merge space for `per_client`.
    scratch: Vec<(u32, u32)>,
    /// Where each sorted run of `per_client` starts.
    runs: Vec<u32>,
}

impl MatchBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn clear(&mut self) {
        self.levels.clear();
        self.stack.clear();
        self.plain.clear();
        self.shared.clear();
        self.per_client.clear();
        self.scratch.clear();
        self.runs.clear();
    }

    /// The shared groups the last [`SubscriptionTree::matches`] call found,
    /// as handles for [`SubscriptionTree::select_round_robin`] (which needs
    /// the tree mutably, so after the [`Matches`] view is dropped).
    pub fn shared_groups(&self) -> impl ExactSizeIterator<Item = SharedGroupRef> + '_ {
        self.shared.iter().copied()
    }
}

/// A handle on one shared group that matched a topic, for
/// [`SubscriptionTree::select_round_robin`].
///
/// Valid until the tree next changes; a stale handle selects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedGroupRef {
    pub(crate) node: u32,
    pub(crate) slot: u32,
    pub(crate) index: u32,
    pub(crate) generation: u64,
}

/// The subscriptions that match one topic: a view of a [`SubscriptionTree`]
/// through a filled [`MatchBuffer`].
///
/// - [`plain`](Self::plain): each matching non-shared subscription, one item
///   per (subscriber, filter); a subscriber with overlapping filters appears
///   once per filter.
/// - [`per_client`](Self::per_client): the same, grouped by subscriber, for
///   the one delivery per client that MQTT makes of overlapping
///   subscriptions.
/// - [`shared`](Self::shared): one item per matching (group, filter), carrying
///   the group's members, of which the broker picks one.
pub struct Matches<'a, K, V> {
    tree: &'a SubscriptionTree<K, V>,
    buf: &'a mut MatchBuffer,
}

impl<'a, K: Ord + Clone, V> Matches<'a, K, V> {
    pub(crate) fn new(tree: &'a SubscriptionTree<K, V>, buf: &'a mut MatchBuffer) -> Self {
        Self { tree, buf }
    }

    /// `true` if nothing matched.
    pub fn is_empty(&self) -> bool {
        self.buf.plain.is_empty() && self.buf.shared.is_empty()
    }

    /// Number of items [`plain`](Self::plain) yields.
    pub fn plain_len(&self) -> usize {
        self.buf
            .plain
            .iter()
            .map(|&(_, slot)| self.tree.slot(slot).plain().len())
            .sum()
    }

    /// Number of items [`shared`](Self::shared) yields.
    pub fn shared_len(&self) -> usize {
        self.buf.shared.len()
    }

    /// Each matching non-shared subscription: trie visit order, then
    /// subscriber order within a filter.
    pub fn plain(&self) -> impl Iterator<Item = PlainMatch<'_, K, V>> + '_ {
        let tree = self.tree;
        self.buf.plain.iter().flat_map(move |&(node, slot)| {
            tree.slot(slot)
                .plain()
                .iter()
                .map(move |(key, value)| PlainMatch {
                    tree,
                    node,
                    key,
                    value,
                })
        })
    }

    /// Each matching shared subscription group, in trie visit order.
    pub fn shared(&self) -> impl ExactSizeIterator<Item = SharedMatch<'_, K, V>> + '_ {
        let tree = self.tree;
        self.buf.shared.iter().map(move |&handle| {
            let group = &tree.slot(handle.slot).shared()[handle.index as usize];
            SharedMatch {
                tree,
                handle,
                group,
            }
        })
    }

    /// The non-shared matches grouped by subscriber, in key order: the input
    /// to the one delivery per client that overlapping subscriptions get.
    ///
    /// MQTT 3.1.1 delivers such a message once, at the highest QoS granted
    /// among the matching subscriptions; MQTT 5 also attaches every matching
    /// subscription's Subscription Identifier. [`ClientMatches::max_qos`] and
    /// [`ClientMatches::subscription_identifiers`] compute both for a `V`
    /// implementing [`DeliveryOptions`]; [`ClientMatches::values`] gives the
    /// raw values for any other fold (say, skipping No Local subscriptions
    /// for the publisher itself first).
    ///
    /// Merges within the [`MatchBuffer`]: no allocation once it has grown.
    pub fn per_client(&mut self) -> PerClient<'_, K, V> {
        let tree = self.tree;
        let MatchBuffer {
            plain,
            per_client,
            scratch,
            runs,
            ..
        } = &mut *self.buf;
        per_client.clear();
        runs.clear();
        for (i, &(_, slot)) in plain.iter().enumerate() {
            let n = tree.slot(slot).plain().len();
            runs.push(per_client.len() as u32);
            per_client.extend((0..n as u32).map(|entry| (i as u32, entry)));
        }
        let key =
            |&(i, entry): &(u32, u32)| &tree.slot(plain[i as usize].1).plain()[entry as usize].0;
        // Each node's subscribers are sorted by key already: merge those runs
        // pairwise, O(n log runs). The merge is stable (the left run wins
        // ties), so a client's entries stay in visit order.
        while runs.len() > 1 {
            scratch.clear();
            let total = per_client.len();
            let bound = |runs: &[u32], r: usize| runs.get(r).map_or(total, |&b| b as usize);
            let mut merged = 0;
            for r in (0..runs.len()).step_by(2) {
                let (start, mid, end) = (bound(runs, r), bound(runs, r + 1), bound(runs, r + 2));
                runs[merged] = scratch.len() as u32;
                merged += 1;
                merge_runs(&per_client[start..mid], &per_client[mid..end], scratch, key);
            }
            runs.truncate(merged);
            mem::swap(per_client, scratch);
        }
        PerClient {
            tree,
            nodes: plain,
            entries: per_client,
        }
    }
}

/// Appends the merge of two sorted runs to `out`, `left` first on ties.
fn merge_runs<'k, K: Ord + 'k, T: Copy>(
    left: &[T],
    right: &[T],
    out: &mut Vec<T>,
    key: impl Fn(&T) -> &'k K,
) {
    let (mut l, mut r) = (0, 0);
    while l < left.len() && r < right.len() {
        if key(&right[r]) < key(&left[l]) {
            out.push(right[r]);
            r += 1;
        } else {
            out.push(left[l]);
            l += 1;
        }
    }
    out.extend_from_slice(&left[l..]);
    out.extend_from_slice(&right[r..]);
}

impl<K, V> fmt::Debug for Matches<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matches")
            .field("plain_filters", &self.buf.plain.len())
            .field("shared_groups", &self.buf.shared.len())
            .finish()
    }
}

/// Rebuilds the filter of a trie node.
fn filter_of<K: Ord + Clone, V>(tree: &SubscriptionTree<K, V>, node: u32) -> TopicFilter {
    let mut out = Vec::new();
    tree.trie.write_path(node, &mut out);
    TopicFilter::from_validated(Bytes::from(out))
}

/// One matching non-shared subscription.
pub struct PlainMatch<'a, K, V> {
    tree: &'a SubscriptionTree<K, V>,
    node: u32,
    key: &'a K,
    value: &'a V,
}

impl<'a, K: Ord + Clone, V> PlainMatch<'a, K, V> {
    /// The subscriber.
    pub fn key(&self) -> &'a K {
        self.key
    }

    /// The subscription's value.
    pub fn value(&self) -> &'a V {
        self.value
    }

    /// The subscription's filter, rebuilt from the tree (the tree stores
    /// levels, not whole filters; this allocates).
    pub fn filter(&self) -> TopicFilter {
        filter_of(self.tree, self.node)
    }

    /// Appends the filter's bytes to `out`, without allocating beyond `out`.
    pub fn write_filter(&self, out: &mut Vec<u8>) {
        self.tree.trie.write_path(self.node, out);
    }
}

impl<K: fmt::Debug + Ord + Clone, V: fmt::Debug> fmt::Debug for PlainMatch<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMatch")
            .field("key", self.key)
            .field("filter", &self.filter())
            .field("value", self.value)
            .finish()
    }
}

/// One shared subscription group whose filter matches: the broker delivers
/// to one of its members.
pub struct SharedMatch<'a, K, V> {
    tree: &'a SubscriptionTree<K, V>,
    handle: SharedGroupRef,
    group: &'a Group<K, V>,
}

impl<'a, K: Ord + Clone, V> SharedMatch<'a, K, V> {
    /// The ShareName.
    pub fn group(&self) -> &'a ShareName {
        &self.group.name
    }

    /// The group's members and their values, in key order (never empty).
    pub fn members(&self) -> &'a [(K, V)] {
        &self.group.members
    }

    /// The filter the group subscribed to, without the `$share/` prefix
    /// (rebuilt from the tree; allocates).
    pub fn filter(&self) -> TopicFilter {
        filter_of(self.tree, self.handle.node)
    }

    /// A handle for [`SubscriptionTree::select_round_robin`].
    pub fn handle(&self) -> SharedGroupRef {
        self.handle
    }
}

impl<K: fmt::Debug + Ord + Clone, V: fmt::Debug> fmt::Debug for SharedMatch<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMatch")
            .field("group", &self.group.name)
            .field("filter", &self.filter())
            .field("members", &self.group.members)
            .finish()
    }
}

/// What [`ClientMatches`] needs to know of a subscription's value to merge
/// overlapping subscriptions the way MQTT delivers them.
///
/// tern-topic knows nothing of QoS flows: `Qos` is whatever ordered type the
/// broker uses for a granted QoS.
pub trait DeliveryOptions {
    /// The granted QoS type; higher is stronger.
    type Qos: Ord + Copy;
    /// The maximum QoS granted for this subscription.
    fn granted_qos(&self) -> Self::Qos;
    /// The MQTT 5 Subscription Identifier, if the SUBSCRIBE had one.
    fn subscription_identifier(&self) -> Option<u32> {
        None
    }
}

/// Iterator over the non-shared matches grouped by subscriber, from
/// [`Matches::per_client`].
pub struct PerClient<'a, K, V> {
    tree: &'a SubscriptionTree<K, V>,
    nodes: &'a [(u32, u32)],
    entries: &'a [(u32, u32)],
}

impl<'a, K: Ord + Clone, V> Iterator for PerClient<'a, K, V> {
    type Item = ClientMatches<'a, K, V>;

    fn next(&mut self) -> Option<Self::Item> {
        let tree = self.tree;
        let nodes = self.nodes;
        let entry =
            |&(i, entry): &(u32, u32)| &tree.slot(nodes[i as usize].1).plain()[entry as usize];
        let first = self.entries.first()?;
        let key = &entry(first).0;
        let n = self
            .entries
            .iter()
            .take_while(|e| &entry(e).0 == key)
            .count();
        let (group, rest) = self.entries.split_at(n);
        self.entries = rest;
        Some(ClientMatches {
            tree,
            nodes,
            key,
            entries: group,
        })
    }
}

/// One subscriber's matching non-shared subscriptions (at least one).
pub struct ClientMatches<'a, K, V> {
    tree: &'a SubscriptionTree<K, V>,
    nodes: &'a [(u32, u32)],
    key: &'a K,
    entries: &'a [(u32, u32)],
}

impl<'a, K: Ord + Clone, V> ClientMatches<'a, K, V> {
    /// The subscriber.
    pub fn key(&self) -> &'a K {
        self.key
    }

    /// How many of its subscriptions match.
    #[allow(clippy::len_without_is_empty, reason = "never empty")]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The values of its matching subscriptions, in the order
    /// [`Matches::plain`] visits them.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &'a V> + 'a {
        let tree = self.tree;
        let nodes = self.nodes;
        self.entries
            .iter()
            .map(move |&(i, entry)| &tree.slot(nodes[i as usize].1).plain()[entry as usize].1)
    }
}

impl<'a, K: Ord + Clone, V: DeliveryOptions> ClientMatches<'a, K, V> {
    /// The highest QoS granted among the matching subscriptions: the QoS of
    /// the single delivery (before capping by the published QoS).
    pub fn max_qos(&self) -> V::Qos {
        let mut values = self.values();
        let first = values
            .next()
            .expect("a client with matches has one")
            .granted_qos();
        values.fold(first, |max, v| max.max(v.granted_qos()))
    }

    /// Every matching subscription's Subscription Identifier, in
    /// [`values`](Self::values) order: MQTT 5 sends them all in the one
    /// PUBLISH.
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + 'a {
        self.values()
            .filter_map(DeliveryOptions::subscription_identifier)
    }
}

impl<K: fmt::Debug + Ord + Clone, V: fmt::Debug> fmt::Debug for ClientMatches<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMatches")
            .field("key", self.key)
            .field("values", &self.values().collect::<Vec<_>>())
            .finish()
    }
}
