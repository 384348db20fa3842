//! The retained-message index: which stored topics a filter matches.

use crate::{
    TopicFilter, TopicName,
    level::{END, next_level},
    trie::{ROOT, Trie},
};
use alloc::vec::Vec;
use core::{fmt, mem};

/// One value per topic name (the retained message of each topic), with a
/// [`matching`](Self::matching) query that walks a filter down the stored
/// topics.
///
/// A trie of topic levels: an exact filter level is one hash-table probe, `+`
/// visits the children of the current level, `#` the whole subtree below it.
/// A query touches the topics the filter can reach, not every stored topic.
/// Topics beginning with `$` are not matched by a filter that begins with a
/// wildcard [MQTT-4.7.2-1].
///
/// Deterministic like [`SubscriptionTree`](crate::SubscriptionTree): the
/// order [`matching`](Self::matching) yields depends only on the operations
/// that built the index. Removing a topic frees the nodes no other topic
/// needs; an empty index holds no memory.
///
/// What a retained message is (payload, QoS, expiry) is the broker's `V`; a
/// PUBLISH with retain and an empty payload is a [`remove`](Self::remove).
///
/// ```
/// use tern_topic::{RetainedIndex, TopicFilter, TopicName};
///
/// let mut retained = RetainedIndex::new();
/// retained.insert(TopicName::try_from("sport/tennis")?, "6-4");
/// retained.insert(TopicName::try_from("sport/golf")?, "-3");
/// retained.insert(TopicName::try_from("$SYS/uptime")?, "42");
///
/// let mut found: Vec<_> = retained
///     .matching(&TopicFilter::try_from("sport/+")?)
///     .map(|(topic, value)| (topic.as_str(), *value))
///     .collect();
/// found.sort();
/// assert_eq!(found, [("sport/golf", "-3"), ("sport/tennis", "6-4")]);
/// assert_eq!(retained.matching(&TopicFilter::try_from("#")?).count(), 2, "not $SYS/uptime");
/// # Ok::<(), tern_topic::TopicError>(())
/// ```
pub struct RetainedIndex<V> {
    trie: Trie<Option<Entry<V>>>,
    len: usize,
}

/// Where a stored topic sits in a [`RetainedIndex`], from
/// [`RetainedMatches::next_slot`]: [`RetainedIndex::at`] reads it again
/// in constant time. Once the topic is removed, the slot may come to hold
/// another topic: check that what it holds is what you expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedSlot(u32);

/// A stored topic and its value.
struct Entry<V> {
    topic: TopicName,
    value: V,
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            trie: Trie::new(),
            len: 0,
        }
    }

    /// Number of stored topics.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if no topic is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes (topic levels) in use; zero when empty.
    pub fn node_count(&self) -> usize {
        self.trie.node_count()
    }

    /// Stores `value` for `topic`: returns the value it replaced.
    ///
    /// The index keeps `topic` as given; if it is a slice of a large buffer
    /// that should not stay alive, copy it first.
    pub fn insert(&mut self, topic: TopicName, value: V) -> Option<V> {
        let node = self.trie.find_or_insert(topic.as_bytes());
        match &mut self.trie.node_mut(node).data {
            Some(entry) => Some(mem::replace(&mut entry.value, value)),
            slot @ None => {
                *slot = Some(Entry { topic, value });
                self.len += 1;
                None
            }
        }
    }

    /// The value stored for `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        let node = self.trie.find(topic.as_bytes())?;
        self.trie.node(node).data.as_ref().map(|e| &e.value)
    }

    /// The topic and value in `slot`, if it holds one now (not necessarily
    /// the topic it held when it was found).
    pub fn at(&self, slot: RetainedSlot) -> Option<(&TopicName, &V)> {
        let node = self.trie.try_node(slot.0)?;
        node.data.as_ref().map(|e| (&e.topic, &e.value))
    }

    /// Removes `topic`'s value and returns it.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let node = self.trie.find(topic.as_bytes())?;
        let entry = self.trie.node_mut(node).data.take()?;
        self.trie.prune(node, Option::is_none);
        self.len -= 1;
        Some(entry.value)
    }

    /// Removes every topic and releases the memory.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Every stored topic whose name `filter` matches, with its value.
    ///
    /// The iterator keeps a small stack of trie positions (one allocation,
    /// grown as the walk needs); it visits only the subtrees the filter
    /// reaches.
    pub fn matching(&self, filter: &TopicFilter) -> RetainedMatches<'_, V> {
        RetainedMatches {
            index: self,
            filter: filter.clone(),
            stack: alloc::vec![Frame { node: ROOT, pos: 0 }],
        }
    }

    /// Every stored topic and its value, in no particular (but
    /// deterministic) order.
    pub fn iter(&self) -> RetainedMatches<'_, V> {
        self.matching(&TopicFilter::from_static("#"))
            .with_dollar_topics()
    }
}

impl<V> fmt::Debug for RetainedIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedIndex")
            .field("len", &self.len)
            .field("node_count", &self.trie.node_count())
            .finish()
    }
}

/// A pending step of the walk: the filter from byte `pos` on remains to be
/// matched below `node` (or `pos` is one of the markers).
#[derive(Clone, Copy)]
struct Frame {
    node: u32,
    pos: u32,
}

/// `pos` marker: every topic in the subtree matches (below a `#`).
const SUBTREE: u32 = END - 1;

/// Iterator over the stored topics a filter matches, from
/// [`RetainedIndex::matching`].
pub struct RetainedMatches<'a, V> {
    index: &'a RetainedIndex<V>,
    filter: TopicFilter,
    stack: Vec<Frame>,
}

impl<V> RetainedMatches<'_, V> {
    /// Lifts the `$` rule (for [`RetainedIndex::iter`]).
    fn with_dollar_topics(mut self) -> Self {
        self.stack.clear();
        self.stack.push(Frame {
            node: ROOT,
            pos: SUBTREE,
        });
        self
    }

    /// Pushes `node`'s children as `pos` frames; at the root a wildcard does
    /// not reach topics beginning with `$` [MQTT-4.7.2-1].
    fn push_children(&mut self, node: u32, pos: u32, skip_dollar: bool) {
        let trie = &self.index.trie;
        for child in trie.children(node) {
            if skip_dollar && node == ROOT && trie.level(child).first() == Some(&b'$') {
                continue;
            }
            self.stack.push(Frame { node: child, pos });
        }
    }
}

impl<'a, V> RetainedMatches<'a, V> {
    /// The next match with its [`RetainedSlot`].
    pub fn next_slot(&mut self) -> Option<(RetainedSlot, &'a TopicName, &'a V)> {
        let trie = &self.index.trie;
        while let Some(Frame { node, pos }) = self.stack.pop() {
            let here = trie.node(node).data.as_ref();
            match pos {
                SUBTREE => {
                    // Only `iter` starts a subtree at the root; `#` starts at
                    // the children it accepts.
                    self.push_children(node, SUBTREE, false);
                }
                END => {}
                _ => {
                    let filter = self.filter.as_bytes();
                    let (level, next) = next_level(filter, pos);
                    match level {
                        b"#" => {
                            // `sport/#` matches `sport` itself, and all below.
                            self.push_children(node, SUBTREE, true);
                        }
                        b"+" => {
                            self.push_children(node, next, true);
                            continue;
                        }
                        _ => {
                            if let Some(child) = trie.exact_child(node, level) {
                                self.stack.push(Frame {
                                    node: child,
                                    pos: next,
                                });
                            }
                            continue;
                        }
                    }
                }
            }
            if let Some(entry) = here {
                return Some((RetainedSlot(node), &entry.topic, &entry.value));
            }
        }
        None
    }
}

impl<'a, V> Iterator for RetainedMatches<'a, V> {
    type Item = (&'a TopicName, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_slot().map(|(_, topic, value)| (topic, value))
    }
}

impl<V> fmt::Debug for RetainedMatches<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedMatches")
            .field("filter", &self.filter)
            .field("pending", &self.stack.len())
            .finish()
    }
}
