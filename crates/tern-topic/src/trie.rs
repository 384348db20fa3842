//! The topic trie both indexes are built on: nodes in a slab, exact children
//! found through one seedless hash table, wildcard children in fixed slots.
//!
//! A node is addressed by a `u32` index into the slab. Its exact children are
//! entries of a single `hashbrown::HashTable<u32>` keyed by (parent index,
//! level bytes), which costs about five bytes per edge instead of a map per
//! node; they are also threaded on a doubly linked sibling list so a `+` or
//! `#` walk can enumerate them. A filter's `+` and `#` levels sit in the
//! `plus` and `hash` slots of their parent and never enter the table.
//!
//! Freed nodes go on a free list and their slots are reused; when the last
//! node goes, every buffer is released.

use crate::level::Level;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};
use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// "No node".
pub(crate) const NONE: u32 = u32::MAX;
/// The root: the empty path above the first level. Never freed.
pub(crate) const ROOT: u32 = 0;

/// A fixed seed: the same operations give the same table on every run.
const HASHER: FixedState = FixedState::with_seed(0x7465_726e_746f_7069);

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
    /// This node's level (empty for the root and for `+`/`#` children).
    level: Level,
    /// What the owner stores here.
    pub(crate) data: T,
}

impl<T: Default> Node<T> {
    fn new(parent: u32, level: Level) -> Self {
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

fn edge_hash(parent: u32, level: &[u8]) -> u64 {
    let mut hasher = HASHER.build_hasher();
    hasher.write_u32(parent);
    hasher.write(level);
    hasher.finish()
}

/// The trie. `T` is what each node stores; `T::default()` is "nothing".
pub(crate) struct Trie<T> {
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    edges: HashTable<u32>,
}

impl<T: Default> Trie<T> {
    /// A trie with only the root.
    pub(crate) fn new() -> Self {
        Self {
            nodes: alloc::vec![Node::new(NONE, Level::EMPTY)],
            free: Vec::new(),
            edges: HashTable::new(),
        }
    }

    /// Live nodes, the root excluded.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - 1 - self.free.len()
    }

    #[inline]
    pub(crate) fn node(&self, id: u32) -> &Node<T> {
        &self.nodes[id as usize]
    }

    #[inline]
    pub(crate) fn node_mut(&mut self, id: u32) -> &mut Node<T> {
        &mut self.nodes[id as usize]
    }

    /// This node's level.
    pub(crate) fn level(&self, id: u32) -> &[u8] {
        let node = self.node(id);
        if node.parent != NONE {
            let parent = self.node(node.parent);
            if parent.plus == id {
                return b"+";
            }
            if parent.hash == id {
                return b"#";
            }
        }
        node.level.as_bytes()
    }

    /// The exact (non-wildcard) child of `parent` for `level`.
    #[inline]
    pub(crate) fn exact_child(&self, parent: u32, level: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.edges
            .find(edge_hash(parent, level), |&c| {
                let node = &nodes[c as usize];
                node.parent == parent && node.level.as_bytes() == level
            })
            .copied()
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
        let slot = slot_of(level);
        let stored = match slot {
            Slot::Exact => Level::new(level),
            Slot::Plus | Slot::Hash => Level::EMPTY,
        };
        let id = self.alloc(Node::new(parent, stored));
        match slot {
            Slot::Plus => self.node_mut(parent).plus = id,
            Slot::Hash => self.node_mut(parent).hash = id,
            Slot::Exact => {
                let old_first = self.node(parent).first_child;
                self.node_mut(id).next_sibling = old_first;
                if old_first != NONE {
                    self.node_mut(old_first).prev_sibling = id;
                }
                self.node_mut(parent).first_child = id;
                let nodes = &self.nodes;
                self.edges
                    .insert_unique(edge_hash(parent, level), id, |&c| {
                        let node = &nodes[c as usize];
                        edge_hash(node.parent, node.level.as_bytes())
                    });
            }
        }
        id
    }

    fn alloc(&mut self, node: Node<T>) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                let id = u32::try_from(self.nodes.len()).expect("fewer than 2^32 - 1 trie nodes");
                assert!(id != NONE, "fewer than 2^32 - 1 trie nodes");
                self.nodes.push(node);
                id
            }
        }
    }

    /// Frees `id` and then each ancestor, for as long as the node has no
    /// children and `is_unused` says its data is empty. The root stays.
    pub(crate) fn prune(&mut self, mut id: u32, is_unused: impl Fn(&T) -> bool) {
        while id != ROOT {
            let node = self.node(id);
            if !node.is_leaf() || !is_unused(&node.data) {
                return;
            }
            let parent = node.parent;
            self.unlink(id);
            id = parent;
        }
        if self.node_count() == 0 {
            // Everything is gone: give the buffers back too.
            *self = Self::new();
        }
    }

    /// Detaches a childless node from its parent and frees its slot.
    fn unlink(&mut self, id: u32) {
        let (parent, prev, next) = {
            let node = self.node(id);
            (node.parent, node.prev_sibling, node.next_sibling)
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
            let hash = edge_hash(parent, self.node(id).level.as_bytes());
            match self.edges.find_entry(hash, |&c| c == id) {
                Ok(entry) => {
                    entry.remove();
                }
                Err(_) => unreachable!("every exact child has an edge"),
            }
        }
        self.nodes[id as usize] = Node::new(NONE, Level::EMPTY);
        self.free.push(id);
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
        assert_eq!(trie.find(b"a/b"), Some(ab));
        trie.node_mut(ab).data = 0;
        trie.prune(ab, |d| *d == 0);
        assert_eq!(trie.node_count(), 0);
        assert_eq!(
            trie.nodes.capacity(),
            1,
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
        assert_eq!(trie.nodes.len(), 3, "root, keep, and one reused slot");
    }
}
