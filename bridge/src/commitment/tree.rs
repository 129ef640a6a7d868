//! The tree's nodes: two arenas (internal nodes and leaves) indexed by `u32`, with free lists,
//! and the one recursive pass that applies a sorted batch of writes.
//!
//! A batch is prepared copy-on-write: every node it changes is built anew in an [`Overlay`] and
//! the nodes it replaces are only listed, so the tree is untouched until [`Nodes::apply`] moves
//! the overlay in. A dropped overlay therefore leaves nothing behind.
//!
//! A node's hash is kept in its parent, not in the node: at 10^6 entries a write's walk is a
//! cache miss per level, and reading an untouched sibling's hash from the sibling itself was a
//! second miss per level (15% of a write's time, measured 2026-12-01). The root's hash is kept
//! by the [`super::Commitment`].

use sha2::{Digest, Sha256};

use super::{KeyHash, PLACEHOLDER};

/// docs/PROTOCOL.md, "Hashing": the prefixes are crate `jmt` 0.12's, kept so that roots and
/// proofs are byte for byte those of the networks that ran on it.
const LEAF_TAG: &[u8] = b"JMT::LeafNode";
const INTERNAL_TAG: &[u8] = b"JMT::IntrnalNode";

pub(super) fn leaf_hash(key: &KeyHash, value_hash: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(LEAF_TAG);
    hasher.update(key.0);
    hasher.update(value_hash);
    hasher.finalize().into()
}

pub(super) fn internal_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(INTERNAL_TAG);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

pub(super) fn value_hash(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// Bit `depth` of a key path, most significant bit of byte 0 first; 1 goes right.
pub(super) fn bit(key: &KeyHash, depth: usize) -> bool {
    (key.0[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// A child pointer: empty, or an internal node or a leaf, in the tree or in a pending overlay.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Ref(u32);

impl Default for Ref {
    fn default() -> Self {
        Ref::EMPTY
    }
}

impl Ref {
    pub(super) const EMPTY: Ref = Ref(u32::MAX);
    const LEAF: u32 = 1 << 31;
    const PENDING: u32 = 1 << 30;
    const INDEX: u32 = Self::PENDING - 1;
    /// Indices stop one short of the mask so that no node's `Ref` is [`Ref::EMPTY`].
    pub(super) const MAX_INDEX: u32 = Self::INDEX - 1;

    fn new(index: usize, leaf: bool, pending: bool) -> Ref {
        assert!(index <= Self::MAX_INDEX as usize, "the state tree is limited to 2^30 nodes of each kind");
        let mut bits = index as u32;
        if leaf {
            bits |= Self::LEAF;
        }
        if pending {
            bits |= Self::PENDING;
        }
        Ref(bits)
    }

    pub(super) fn is_empty(self) -> bool {
        self == Self::EMPTY
    }

    pub(super) fn is_leaf(self) -> bool {
        !self.is_empty() && self.0 & Self::LEAF != 0
    }

    fn is_pending(self) -> bool {
        !self.is_empty() && self.0 & Self::PENDING != 0
    }

    fn index(self) -> usize {
        (self.0 & Self::INDEX) as usize
    }

    /// This node once its overlay is an empty tree's arenas: the same index, no longer pending.
    fn settled(self) -> Ref {
        if self.is_pending() { Ref(self.0 & !Self::PENDING) } else { self }
    }
}

/// An internal node: both children and their hashes, cached so that an untouched subtree is
/// never hashed again, nor even visited to read its hash.
#[derive(Debug)]
pub(super) struct Internal {
    pub(super) left_hash: [u8; 32],
    pub(super) right_hash: [u8; 32],
    pub(super) left: Ref,
    pub(super) right: Ref,
}

/// A leaf holds the entry itself: proofs are served from the tree.
#[derive(Debug)]
pub(super) struct Leaf {
    pub(super) key: KeyHash,
    pub(super) value: Value,
}

// One cache line per leaf (see `INLINE`).
const _: () = assert!(std::mem::size_of::<Leaf>() == 64);

/// A subtree as its parent sees it: where it is, and its hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Child {
    pub(super) node: Ref,
    pub(super) hash: [u8; 32],
}

impl Child {
    pub(super) const EMPTY: Child = Child { node: Ref::EMPTY, hash: PLACEHOLDER };
}

/// Values this short are held in the leaf itself: an account holding one asset of one byte
/// (nonce 8, length 4, asset 1, balance 16: 29 bytes), so that nearly every write allocates and
/// frees nothing. 30 bytes make a leaf (key hash and value) one 64-byte cache line.
const INLINE: usize = 30;

/// A leaf's value bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

impl Value {
    pub fn from_slice(bytes: &[u8]) -> Value {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Value::Inline { len: bytes.len() as u8, bytes: inline }
        } else {
            Value::Boxed(bytes.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Value::Boxed(bytes) => bytes,
        }
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Value {
        if bytes.len() <= INLINE { Value::from_slice(&bytes) } else { Value::Boxed(bytes.into_boxed_slice()) }
    }
}

impl Default for Value {
    fn default() -> Value {
        Value::Inline { len: 0, bytes: [0; INLINE] }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(self.as_bytes()))
    }
}

/// The two arenas. Freed slots are reused before either vector grows.
#[derive(Debug, Default)]
pub(super) struct Nodes {
    internals: Vec<Internal>,
    leaves: Vec<Leaf>,
    free_internals: Vec<u32>,
    free_leaves: Vec<u32>,
}

/// The nodes one prepared batch creates, and the tree's nodes it replaces.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    internals: Vec<Internal>,
    leaves: Vec<Leaf>,
    replaced: Vec<Ref>,
}

impl Overlay {
    /// Leaves created, and leaves of the tree replaced.
    pub(super) fn leaves(&self) -> (usize, usize) {
        (self.leaves.len(), self.replaced.iter().filter(|r| r.is_leaf()).count())
    }
}

/// One write of a batch: a value, or `None` to delete. The value is moved into its new leaf.
pub(super) type Write = (KeyHash, Option<Value>);

impl Nodes {
    pub(super) fn internal(&self, node: Ref) -> &Internal {
        debug_assert!(!node.is_leaf() && !node.is_pending() && !node.is_empty());
        &self.internals[node.index()]
    }

    pub(super) fn leaf(&self, node: Ref) -> &Leaf {
        debug_assert!(node.is_leaf() && !node.is_pending());
        &self.leaves[node.index()]
    }

    /// Live nodes of each kind (internal, leaf): for tests and for sizing.
    pub(super) fn live(&self) -> (usize, usize) {
        (self.internals.len() - self.free_internals.len(), self.leaves.len() - self.free_leaves.len())
    }

    /// Slots of each kind (internal, leaf), live or free.
    #[cfg(test)]
    pub(super) fn slots(&self) -> (usize, usize) {
        (self.internals.len(), self.leaves.len())
    }

    /// Moves a prepared overlay in, frees what it replaced, and returns the new root's `Ref`.
    pub(super) fn apply(&mut self, overlay: Overlay, root: Ref) -> Ref {
        if self.internals.is_empty() && self.leaves.is_empty() {
            return self.adopt(overlay, root);
        }
        for old in overlay.replaced {
            debug_assert!(!old.is_pending() && !old.is_empty());
            if old.is_leaf() {
                // The value's memory goes now, not when the slot is reused.
                self.leaves[old.index()].value = Value::default();
                self.free_leaves.push(old.index() as u32);
            } else {
                self.free_internals.push(old.index() as u32);
            }
        }
        self.leaves.reserve(overlay.leaves.len().saturating_sub(self.free_leaves.len()));
        self.internals.reserve(overlay.internals.len().saturating_sub(self.free_internals.len()));
        let leaves: Vec<Ref> = overlay.leaves.into_iter().map(|leaf| self.put_leaf(leaf)).collect();
        // Children were built before their parents, so each pending child is already placed.
        let mut internals: Vec<Ref> = Vec::with_capacity(overlay.internals.len());
        for mut node in overlay.internals {
            node.left = placed(node.left, &leaves, &internals);
            node.right = placed(node.right, &leaves, &internals);
            internals.push(self.put_internal(node));
        }
        placed(root, &leaves, &internals)
    }

    /// An empty tree takes a prepared overlay's arenas as its own: a pending node's index in the
    /// overlay is its index here, so only the pending marks are cleared. A bulk build (a snapshot's
    /// restore, the first batch) thus never holds the tree twice, once in the overlay and once
    /// copied into the arenas: at 10^6 entries that copy was the peak of a start's memory.
    fn adopt(&mut self, overlay: Overlay, root: Ref) -> Ref {
        debug_assert!(overlay.replaced.is_empty(), "an empty tree has nothing to replace");
        self.internals = overlay.internals;
        self.leaves = overlay.leaves;
        self.internals.shrink_to_fit();
        self.leaves.shrink_to_fit();
        for node in &mut self.internals {
            node.left = node.left.settled();
            node.right = node.right.settled();
        }
        root.settled()
    }

    fn put_leaf(&mut self, leaf: Leaf) -> Ref {
        match self.free_leaves.pop() {
            Some(index) => {
                self.leaves[index as usize] = leaf;
                Ref::new(index as usize, true, false)
            }
            None => {
                self.leaves.push(leaf);
                Ref::new(self.leaves.len() - 1, true, false)
            }
        }
    }

    fn put_internal(&mut self, node: Internal) -> Ref {
        match self.free_internals.pop() {
            Some(index) => {
                self.internals[index as usize] = node;
                Ref::new(index as usize, false, false)
            }
            None => {
                self.internals.push(node);
                Ref::new(self.internals.len() - 1, false, false)
            }
        }
    }

    /// Room for what a prepared batch may add: one leaf per write, and internal nodes about one
    /// per write (a long shared prefix adds more; [`Ref::new`] stops the process at the bound,
    /// 2^30 nodes, far past any ledger this memory holds).
    pub(super) fn fits(&self, writes: usize) -> bool {
        let bound = Ref::MAX_INDEX as usize;
        self.leaves.len().saturating_add(writes) <= bound && self.internals.len().saturating_add(writes) <= bound
    }
}

/// A pending child's place in the tree once its overlay is applied.
fn placed(node: Ref, leaves: &[Ref], internals: &[Ref]) -> Ref {
    if !node.is_pending() {
        node
    } else if node.is_leaf() {
        leaves[node.index()]
    } else {
        internals[node.index()]
    }
}

/// A half with fewer writes than this is updated on the thread that reached it: handing work
/// to another thread costs a few microseconds, a write about two.
const PARALLEL_MIN_WRITES: usize = 512;

/// How many levels from the root split a batch's update between threads: enough that every
/// core has a part (the pool's threads, rounded up to a power of two). The tree is only read
/// while an update is prepared, so the parts are independent; a bulk build on an empty tree
/// (a snapshot's restore) stays on one thread, so that it never holds its nodes twice.
fn parallel_depth() -> usize {
    rayon::current_num_threads().next_power_of_two().trailing_zeros() as usize
}

/// Builds one batch's changes over a tree that stays as it is.
pub(super) struct Update<'a> {
    tree: &'a Nodes,
    overlay: Overlay,
    /// [`parallel_depth`], read once per update rather than at every node it passes.
    parallel_depth: usize,
}

impl<'a> Update<'a> {
    /// An update of `writes` writes. The overlay is sized for them up front: a batch at 10^6
    /// entries creates about two nodes per write, and growing the vectors as it goes copied
    /// every node several times.
    pub(super) fn new(tree: &'a Nodes, writes: usize) -> Update<'a> {
        let overlay = Overlay {
            internals: Vec::with_capacity(2 * writes),
            leaves: Vec::with_capacity(writes),
            replaced: Vec::with_capacity(2 * writes),
        };
        Update { tree, overlay, parallel_depth: parallel_depth() }
    }

    fn new_leaf(&mut self, key: KeyHash, value: Value) -> Child {
        let hash = leaf_hash(&key, &value_hash(value.as_bytes()));
        self.overlay.leaves.push(Leaf { key, value });
        Child { node: Ref::new(self.overlay.leaves.len() - 1, true, true), hash }
    }

    /// The subtree over `left` and `right`, and a lone leaf rises: a subtree holding one leaf
    /// is that leaf, at any depth.
    fn join(&mut self, left: Child, right: Child) -> Child {
        match (left.node.is_empty(), right.node.is_empty()) {
            (true, true) => Child::EMPTY,
            (true, false) if right.node.is_leaf() => right,
            (false, true) if left.node.is_leaf() => left,
            _ => {
                let hash = internal_hash(&left.hash, &right.hash);
                self.overlay.internals.push(Internal {
                    left_hash: left.hash,
                    right_hash: right.hash,
                    left: left.node,
                    right: right.node,
                });
                Child { node: Ref::new(self.overlay.internals.len() - 1, false, true), hash }
            }
        }
    }

    /// The subtree at `depth` after `writes` (sorted by key, distinct, all under this subtree's
    /// path) are applied to `child`. Returns `child` itself when nothing under it changed.
    pub(super) fn update(&mut self, child: Child, depth: usize, writes: &mut [Write]) -> Child {
        if writes.is_empty() {
            return child;
        }
        let node = child.node;
        if node.is_empty() {
            return self.build(depth, None, writes);
        }
        if node.is_leaf() {
            let key = self.tree.leaf(node).key;
            return match writes.binary_search_by(|w| w.0.cmp(&key)) {
                Ok(_) => {
                    self.overlay.replaced.push(node);
                    self.build(depth, None, writes)
                }
                // Only deletes of absent keys: nothing changes.
                Err(_) if writes.iter().all(|w| w.1.is_none()) => child,
                Err(_) => self.build(depth, Some((key, child)), writes),
            };
        }
        assert!(depth < 256, "two distinct keys part before depth 256");
        let (left, right) = {
            let internal = self.tree.internal(node);
            (
                Child { node: internal.left, hash: internal.left_hash },
                Child { node: internal.right, hash: internal.right_hash },
            )
        };
        let split = writes.partition_point(|w| !bit(&w.0, depth));
        let (to_left, to_right) = writes.split_at_mut(split);
        let (new_left, new_right) = if depth < self.parallel_depth && to_right.len() >= PARALLEL_MIN_WRITES {
            self.update_halves(depth, (left, to_left), (right, to_right))
        } else {
            (self.update(left, depth + 1, to_left), self.update(right, depth + 1, to_right))
        };
        if new_left.node == left.node && new_right.node == right.node {
            return child;
        }
        self.overlay.replaced.push(node);
        self.join(new_left, new_right)
    }

    /// Both halves of a node's update at once: the left on this thread into this overlay, the
    /// right on another into an overlay of its own, appended after the left's. A one-thread pass
    /// builds the left half's nodes, then the right's, in the same order, so the overlay (and the
    /// tree once it is applied) is the same node for node whichever way it was prepared.
    fn update_halves(
        &mut self,
        depth: usize,
        (left, to_left): (Child, &mut [Write]),
        (right, to_right): (Child, &mut [Write]),
    ) -> (Child, Child) {
        let tree = self.tree;
        let (new_left, (new_right, right_overlay)) = rayon::join(
            || self.update(left, depth + 1, to_left),
            || {
                let mut update = Update::new(tree, to_right.len());
                let new_right = update.update(right, depth + 1, to_right);
                (new_right, update.finish())
            },
        );
        let new_right = self.append(right_overlay, new_right);
        (new_left, new_right)
    }

    /// Moves `part`'s nodes to the end of this overlay; returns `root` (a node of `part`) as
    /// this overlay places it.
    fn append(&mut self, part: Overlay, root: Child) -> Child {
        let (leaves, internals) = (self.overlay.leaves.len(), self.overlay.internals.len());
        let shift = |node: Ref| {
            if !node.is_pending() {
                node
            } else if node.is_leaf() {
                Ref::new(node.index() + leaves, true, true)
            } else {
                Ref::new(node.index() + internals, false, true)
            }
        };
        self.overlay.leaves.extend(part.leaves);
        self.overlay.internals.extend(part.internals.into_iter().map(|mut node| {
            node.left = shift(node.left);
            node.right = shift(node.right);
            node
        }));
        self.overlay.replaced.extend(part.replaced);
        Child { node: shift(root.node), hash: root.hash }
    }

    /// A fresh subtree at `depth` from the values among `writes` and, if given, one leaf of the
    /// tree kept as it is (its key differs from every write's).
    pub(super) fn build(&mut self, depth: usize, kept: Option<(KeyHash, Child)>, writes: &mut [Write]) -> Child {
        let values = writes.iter().filter(|w| w.1.is_some()).count();
        match (kept, values) {
            (None, 0) => return Child::EMPTY,
            (Some((_, leaf)), 0) => return leaf,
            (None, 1) => {
                if let Some((key, value)) = writes.iter_mut().find_map(|w| w.1.take().map(|v| (w.0, v))) {
                    return self.new_leaf(key, value);
                }
            }
            _ => {}
        }
        assert!(depth < 256, "two distinct keys part before depth 256");
        let split = writes.partition_point(|w| !bit(&w.0, depth));
        let (to_left, to_right) = writes.split_at_mut(split);
        let (kept_left, kept_right) = match kept {
            Some((key, leaf)) if bit(&key, depth) => (None, Some((key, leaf))),
            kept => (kept, None),
        };
        let left = self.build(depth + 1, kept_left, to_left);
        let right = self.build(depth + 1, kept_right, to_right);
        self.join(left, right)
    }

    /// The overlay that holds the update.
    pub(super) fn finish(self) -> Overlay {
        self.overlay
    }
}
