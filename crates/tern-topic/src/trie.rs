//! The topic trie both indexes are built on.
//!
//! - Nodes live in a [`Slab`] and are addressed by `u32` indices.
//! - Level texts are interned: each distinct level is stored once (with a
//!   count of the nodes using it), and a node holds its level's `u32` id.
//!   Topic trees repeat their level names a lot (`status`, `temp`, `site-12`),
//!   and a level that was never interned cannot match any exact child.
//! - A node's exact children are entries of one seedless `hashbrown`
//!   table keyed by (parent, level id), about five bytes per edge instead of
//!   a map per node. They are also threaded on a doubly linked sibling list so
//!   a `+` or `#` walk can enumerate them.
//! - A filter's `+` and `#` levels sit in the `plus` and `hash` slots of their
//!   parent, outside the table.
//!
//! A node is 28 bytes plus what its owner stores (`T`).

use crate::level::Level;
use alloc::{collections::BTreeSet, vec::Vec};
use core::hash::{BuildHasher, Hasher};
use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// "No node", "no level", "no slot".
pub(crate) const NONE: u32 = u32::MAX;
/// The root: the empty path above the first level. Never freed.
pub(crate) const ROOT: u32 = 0;

/// A fixed seed: the same operations give the same tables on every run.
const HASHER: FixedState = FixedState::with_seed(0x7465_726e_746f_7069);

#[inline]
fn hash_edge(parent: u32, level: u32) -> u64 {
    HASHER.hash_one((u64::from(parent) << 32) | u64::from(level))
}

#[inline]
fn hash_level(level: &[u8]) -> u64 {
    let mut hasher = HASHER.build_hasher();
    hasher.write(level);
    hasher.finish()
}

/// Gives a hash table's memory back once it is mostly empty.
fn shrink_table(table: &mut HashTable<u32>, rehash: impl Fn(&u32) -> u64) {
    let len = table.len();
    if table.capacity() > 3 * len + 64 {
        table.shrink_to(len + len / 4, rehash);
    }
}

/// A vector of values addressed by `u32` index, whose freed slots are reused
/// lowest first, so live values gather at the front; free slots at the end
/// are cut off and the vector shrinks, so memory returns after churn. It
/// grows by an eighth at a time rather than doubling, to bound the slack.
pub(crate) struct Slab<T> {
    items: Vec<T>,
    /// Free slots below `items.len()`.
    free: BTreeSet<u32>,
}

impl<T> Slab<T> {
    pub(crate) const fn new() -> Self {
        Self {
            items: Vec::new(),
            free: BTreeSet::new(),
        }
    }

    /// Live values.
    pub(crate) fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }

    /// Stores `item` in the lowest free slot.
    pub(crate) fn insert(&mut self, item: T) -> u32 {
        if let Some(id) = self.free.pop_first() {
            self.items[id as usize] = item;
            return id;
        }
        let id = u32::try_from(self.items.len()).expect("fewer than 2^32 - 1 slab entries");
        assert!(id != NONE, "fewer than 2^32 - 1 slab entries");
        if self.items.len() == self.items.capacity() {
            // Amortised O(1), at most 12.5% slack.
            self.items.reserve_exact(self.items.len() / 8 + 16);
        }
        self.items.push(item);
        id
    }

    /// Frees slot `id`, leaving `vacant` in it, and returns what it held.
    pub(crate) fn remove(&mut self, id: u32, vacant: T) -> T {
        let item = core::mem::replace(&mut self.items[id as usize], vacant);
        self.free.insert(id);
        while self
            .free
            .last()
            .is_some_and(|&last| last as usize + 1 == self.items.len())
        {
            self.free.pop_last();
            self.items.pop();
        }
        let len = self.items.len();
        if self.items.capacity() > len + len / 2 + 64 {
            self.items.shrink_to(len + len / 8);
        }
        item
    }

    #[inline]
    pub(crate) fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: u32) -> &mut T {
        &mut self.items[id as usize]
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.items.capacity()
    }
}

/// One distinct level text and how many nodes use it.
struct Interned {
    text: Level,
    nodes: u32,
}

/// The distinct level texts of a trie.
struct Interner {
    levels: Slab<Interned>,
    index: HashTable<u32>,
}

impl Interner {
    const fn new() -> Self {
        Self {
            levels: Slab::new(),
            index: HashTable::new(),
        }
    }

    /// The id of `text`, if some node uses it.
    #[inline]
    fn find(&self, text: &[u8]) -> Option<u32> {
        let levels = &self.levels;
        self.index
            .find(hash_level(text), |&id| levels.get(id).text.is(text))
            .copied()
    }

    /// The id of `text`, counting one more node that uses it.
    fn acquire(&mut self, text: &[u8]) -> u32 {
        if let Some(id) = self.find(text) {
            self.levels.get_mut(id).nodes += 1;
            return id;
        }
        let id = self.levels.insert(Interned {
            text: Level::new(text),
            nodes: 1,
        });
        let levels = &self.levels;
        self.index.insert_unique(hash_level(text), id, |&i| {
            hash_level(levels.get(i).text.as_bytes())
        });
        id
    }

    /// One node fewer uses `id`; the text goes when none does.
    fn release(&mut self, id: u32) {
        let entry = self.levels.get_mut(id);
        entry.nodes -= 1;
        if entry.nodes > 0 {
            return;
        }
        let hash = hash_level(entry.text.as_bytes());
        if let Ok(found) = self.index.find_entry(hash, |&i| i == id) {
            found.remove();
        }
        self.levels.remove(
            id,
            Interned {
                text: Level::EMPTY,
                nodes: 0,
            },
        );
        let levels = &self.levels;
        shrink_table(&mut self.index, |&i| {
            hash_level(levels.get(i).text.as_bytes())
        });
    }

    fn text(&self, id: u32) -> &[u8] {
        self.levels.get(id).text.as_bytes()
    }
}

/// One node: a topic level and what is stored at the path ending there.
pub(crate) struct Node<T> {
    /// The parent's index (`NONE` for the root and for freed nodes).
    pub(crate) parent: u32,
    /// Exact children, a doubly linked list through the siblings.
    first_child: u32,
    next_sibling: u32,
    prev_sibling: u32,
    /// The `+` child.
    pub(crate) plus: u32,
    /// The `#` child.
    pub(crate) hash: u32,
    /// The interned level (`NONE` for the root and `+`/`#` children).
    level: u32,
    /// What the owner stores here.
    pub(crate) data: T,
}

impl<T: Default> Node<T> {
    fn new(parent: u32, level: u32) -> Self {
        Self {
            parent,
            first_child: NONE,
            next_sibling: NONE,
            prev_sibling: NONE,
            plus: NONE,
            hash: NONE,
            level,
            data: T::default(),
        }
    }

    /// `true` if the node has no child of any kind.
    pub(crate) fn is_leaf(&self) -> bool {
        self.first_child == NONE && self.plus == NONE && self.hash == NONE
    }
}

/// Which child slot a level goes to.
enum Slot {
    Plus,
    Hash,
    Exact,
}

fn slot_of(level: &[u8]) -> Slot {
    match level {
        b"+" => Slot::Plus,
        b"#" => Slot::Hash,
        _ => Slot::Exact,
    }
}

/// The trie. `T` is what each node stores; `T::default()` is "nothing".
pub(crate) struct Trie<T> {
    nodes: Slab<Node<T>>,
    edges: HashTable<u32>,
    levels: Interner,
}

impl<T: Default> Trie<T> {
    /// A trie with only the root.
    pub(crate) fn new() -> Self {
        let mut nodes = Slab::new();
        nodes.insert(Node::new(NONE, NONE));
        Self {
            nodes,
            edges: HashTable::new(),
            levels: Interner::new(),
        }
    }

    /// Live nodes, the root excluded.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - 1
    }

    #[inline]
    pub(crate) fn node(&self, id: u32) -> &Node<T> {
        self.nodes.get(id)
    }

    /// The node `id`, if the slab has one there (freed slots are reset
    /// nodes).
    #[inline]
    pub(crate) fn try_node(&self, id: u32) -> Option<&Node<T>> {
        self.nodes.items.get(id as usize)
    }

    #[inline]
    pub(crate) fn node_mut(&mut self, id: u32) -> &mut Node<T> {
        self.nodes.get_mut(id)
    }

    /// This node's level.
    pub(crate) fn level(&self, id: u32) -> &[u8] {
        let node = self.node(id);
        if node.level != NONE {
            return self.levels.text(node.level);
        }
        if node.parent != NONE {
            let parent = self.node(node.parent);
            if parent.plus == id {
                return b"+";
            }
            if parent.hash == id {
                return b"#";
            }
        }
        b""
    }

    /// The id of a level text, if any node has it: a level without an id
    /// matches no exact child anywhere.
    #[inline]
    pub(crate) fn level_id(&self, text: &[u8]) -> Option<u32> {
        self.levels.find(text)
    }

    /// The exact child of `parent` whose level has id `level`.
    #[inline]
    pub(crate) fn child_by_id(&self, parent: u32, level: u32) -> Option<u32> {
        let nodes = &self.nodes;
        self.edges
            .find(hash_edge(parent, level), |&c| {
                let node = nodes.get(c);
                node.parent == parent && node.level == level
            })
            .copied()
    }

    /// The exact (non-wildcard) child of `parent` for `level`.
    #[inline]
    pub(crate) fn exact_child(&self, parent: u32, level: &[u8]) -> Option<u32> {
        self.child_by_id(parent, self.level_id(level)?)
    }

    /// The child of `parent` for a filter level (`+` and `#` included).
    pub(crate) fn child(&self, parent: u32, level: &[u8]) -> Option<u32> {
        let node = self.node(parent);
        let id = match slot_of(level) {
            Slot::Plus => node.plus,
            Slot::Hash => node.hash,
            Slot::Exact => return self.exact_child(parent, level),
        };
        (id != NONE).then_some(id)
    }

    /// The node at the end of `path` (levels split at `/`), if it exists.
    pub(crate) fn find(&self, path: &[u8]) -> Option<u32> {
        path.split(|&b| b == b'/')
            .try_fold(ROOT, |id, level| self.child(id, level))
    }

    /// The node at the end of `path`, created with its missing ancestors.
    pub(crate) fn find_or_insert(&mut self, path: &[u8]) -> u32 {
        path.split(|&b| b == b'/')
            .fold(ROOT, |id, level| self.child_or_insert(id, level))
    }

    fn child_or_insert(&mut self, parent: u32, level: &[u8]) -> u32 {
        if let Some(id) = self.child(parent, level) {
            return id;
        }
        match slot_of(level) {
            Slot::Plus => {
                let id = self.nodes.insert(Node::new(parent, NONE));
                self.node_mut(parent).plus = id;
                id
            }
            Slot::Hash => {
                let id = self.nodes.insert(Node::new(parent, NONE));
                self.node_mut(parent).hash = id;
                id
            }
            Slot::Exact => {
                let level = self.levels.acquire(level);
                let id = self.nodes.insert(Node::new(parent, level));
                let old_first = self.node(parent).first_child;
                self.node_mut(id).next_sibling = old_first;
                if old_first != NONE {
                    self.node_mut(old_first).prev_sibling = id;
                }
                self.node_mut(parent).first_child = id;
                let nodes = &self.nodes;
                self.edges
                    .insert_unique(hash_edge(parent, level), id, |&c| {
                        let node = nodes.get(c);
                        hash_edge(node.parent, node.level)
                    });
                id
            }
        }
    }

    /// Frees `id` and then each ancestor, for as long as the node has no
    /// children and `is_unused` says its data is empty. The root stays.
    pub(crate) fn prune(&mut self, mut id: u32, is_unused: impl Fn(&T) -> bool) {
        let start = id;
        while id != ROOT {
            let node = self.node(id);
            if !node.is_leaf() || !is_unused(&node.data) {
                break;
            }
            let parent = node.parent;
            self.unlink(id);
            id = parent;
        }
        if id != start && self.node_count() == 0 {
            // Everything is gone: give the buffers back too.
            *self = Self::new();
        }
    }

    /// Detaches a childless node from its parent and frees its slot.
    fn unlink(&mut self, id: u32) {
        let (parent, prev, next, level) = {
            let node = self.node(id);
            (
                node.parent,
                node.prev_sibling,
                node.next_sibling,
                node.level,
            )
        };
        let parent_node = self.node_mut(parent);
        if parent_node.plus == id {
            parent_node.plus = NONE;
        } else if parent_node.hash == id {
            parent_node.hash = NONE;
        } else {
            if prev == NONE {
                parent_node.first_child = next;
            } else {
                self.node_mut(prev).next_sibling = next;
            }
            if next != NONE {
                self.node_mut(next).prev_sibling = prev;
            }
            match self
                .edges
                .find_entry(hash_edge(parent, level), |&c| c == id)
            {
                Ok(entry) => {
                    entry.remove();
                }
                Err(_) => unreachable!("every exact child has an edge"),
            }
            self.levels.release(level);
        }
        self.nodes.remove(id, Node::new(NONE, NONE));
        let nodes = &self.nodes;
        shrink_table(&mut self.edges, |&c| {
            let node = nodes.get(c);
            hash_edge(node.parent, node.level)
        });
    }

    /// The exact children of `id`, most recently created first.
    pub(crate) fn children(&self, id: u32) -> Children<'_, T> {
        Children {
            trie: self,
            next: self.node(id).first_child,
        }
    }

    /// Appends the path from the root to `id` (levels joined by `/`) to `out`.
    pub(crate) fn write_path(&self, id: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let mut at = id;
        while at != ROOT {
            let level = self.level(at);
            // Written backwards, reversed below.
            out.extend(level.iter().rev());
            at = self.node(at).parent;
            if at != ROOT {
                out.push(b'/');
            }
        }
        out[start..].reverse();
    }
}

/// Iterator over a node's exact children.
pub(crate) struct Children<'a, T> {
    trie: &'a Trie<T>,
    next: u32,
}

impl<T: Default> Iterator for Children<'_, T> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.next == NONE {
            return None;
        }
        let id = self.next;
        self.next = self.trie.node(id).next_sibling;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(trie: &Trie<u8>, id: u32) -> alloc::string::String {
        let mut out = Vec::new();
        trie.write_path(id, &mut out);
        alloc::string::String::from_utf8(out).unwrap()
    }

    #[test]
    fn paths_share_prefixes_and_wildcards_use_slots() {
        let mut trie = Trie::<u8>::new();
        let a = trie.find_or_insert(b"a/b/c");
        let b = trie.find_or_insert(b"a/+/#");
        let c = trie.find_or_insert(b"a//");
        // a, b, c, +, # and two empty levels: "a/" and "a//".
        assert_eq!(trie.node_count(), 7);
        // Distinct texts: "a", "b", "c", "".
        assert_eq!(trie.levels.levels.len(), 4);
        assert_eq!(trie.find(b"a/b/c"), Some(a));
        assert_eq!(trie.find(b"a/+/#"), Some(b));
        assert_eq!(trie.find(b"a/b"), Some(trie.node(a).parent));
        assert_eq!(trie.find(b"a/x"), None);
        assert_eq!(path(&trie, a), "a/b/c");
        assert_eq!(path(&trie, b), "a/+/#");
        assert_eq!(path(&trie, c), "a//");
    }

    #[test]
    fn pruning_frees_unused_nodes_up_to_a_used_one() {
        let mut trie = Trie::<u8>::new();
        let abc = trie.find_or_insert(b"a/b/c");
        let ab = trie.node(abc).parent;
        trie.node_mut(ab).data = 1;
        trie.prune(abc, |d| *d == 0);
        assert_eq!(trie.node_count(), 2);
        assert_eq!(trie.find(b"a/b/c"), None);
        assert_eq!(trie.level_id(b"c"), None, "no node uses `c` any more");
        assert_eq!(trie.find(b"a/b"), Some(ab));
        trie.node_mut(ab).data = 0;
        trie.prune(ab, |d| *d == 0);
        assert_eq!(trie.node_count(), 0);
        assert_eq!(
            trie.nodes.capacity(),
            16,
            "an empty trie gives its buffers back"
        );
    }

    #[test]
    fn freed_slots_are_reused() {
        let mut trie = Trie::<u8>::new();
        let keep = trie.find_or_insert(b"keep");
        trie.node_mut(keep).data = 1;
        for round in 0..10u8 {
            let id = trie.find_or_insert(&[b'x', round]);
            trie.prune(id, |d| *d == 0);
        }
        assert_eq!(
            trie.nodes.items.len(),
            2,
            "root and keep; the tail slot is cut off"
        );
    }

    #[test]
    fn the_slab_shrinks_after_churn() {
        let mut trie = Trie::<u8>::new();
        // A sibling keeps the shared parent `n` alive throughout.
        let keep = trie.find_or_insert(b"n/keep");
        trie.node_mut(keep).data = 1;
        let many: Vec<u32> = (0..10_000u32)
            .map(|i| trie.find_or_insert(alloc::format!("n/{i}").as_bytes()))
            .collect();
        let grown = trie.nodes.capacity();
        for id in many {
            trie.prune(id, |d| *d == 0);
        }
        assert_eq!(trie.node_count(), 2);
        assert!(
            trie.nodes.capacity() < grown / 10,
            "{} of {grown}",
            trie.nodes.capacity()
        );
        assert!(trie.edges.capacity() < 100);
        assert!(trie.levels.index.capacity() < 100);
    }
}
