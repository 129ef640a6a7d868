//! The authenticated state map: a binary sparse Merkle tree over `key → value` pairs, kept in
//! memory at its latest version only (docs/PROTOCOL.md, "The state tree").
//!
//! Path-compressed: a leaf sits at the shallowest depth where no other key shares its path, so
//! a tree of `n` entries is about `log2 n` deep. Every internal node caches its children's
//! hashes, and a batch's writes are applied sorted by key in one recursive pass
//! ([`tree::Update`]), so each node a batch touches is hashed once per batch, and nothing else
//! is. The roots and proofs
//! are byte for byte those crate `jmt` 0.12 computed before this tree replaced it.

mod proof;
mod tree;

use std::collections::BTreeMap;

pub use proof::{ProofError, ProofLeaf, ProofNode, SparseMerkleProof, StateProof};
use rayon::slice::ParallelSliceMut;
use sha2::{Digest, Sha256};
pub use tree::Value;
use tree::{Child, Nodes, Overlay, Ref, Update, Write};

/// The root of the empty tree, and the hash of every empty subtree.
pub const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// An update the tree cannot hold. It means a bug or a state far past any real ledger's size,
/// never bad input.
#[derive(Debug, thiserror::Error)]
#[error("state tree: {0}")]
pub struct CommitmentError(String);

/// A state entry's place in the tree: SHA-256 of its canonical key bytes, read as 256 bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyHash(pub [u8; 32]);

/// The tree key of a state entry's canonical key bytes.
pub fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash(Sha256::digest(key).into())
}

/// The root of a tree with no entries.
pub fn empty_root() -> [u8; 32] {
    PLACEHOLDER
}

/// The tree at its latest version. Nodes replaced by an update are freed at once: proofs are
/// served against the latest root only.
pub struct Commitment {
    nodes: Nodes,
    /// The root and its hash (every other node's hash is kept in its parent).
    root: Child,
    entries: usize,
    /// Counts applied updates, so a pending root applied to a tree it was not prepared against
    /// is caught.
    updates: u64,
    /// False until the first update: [`Commitment::root`] is `None` until then, as under `jmt`.
    committed: bool,
}

impl Default for Commitment {
    fn default() -> Commitment {
        Commitment { nodes: Nodes::default(), root: Child::EMPTY, entries: 0, updates: 0, committed: false }
    }
}

impl std::fmt::Debug for Commitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (internals, leaves) = self.nodes.live();
        f.debug_struct("Commitment")
            .field("entries", &self.entries)
            .field("internal_nodes", &internals)
            .field("leaves", &leaves)
            .field("root", &self.root().map(hex::encode))
            .finish()
    }
}

/// An update computed but not yet applied: replay compares its root with the batch header's
/// before anything changes. Dropping it leaves the tree as it was.
pub struct PendingRoot {
    root: Child,
    entries: usize,
    /// The tree's update count it was prepared against; `None` for an empty batch.
    prepared_at: Option<u64>,
    overlay: Overlay,
}

impl std::fmt::Debug for PendingRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRoot").field("root", &hex::encode(self.root.hash)).finish()
    }
}

impl PendingRoot {
    pub fn root(&self) -> [u8; 32] {
        self.root.hash
    }
}

impl Commitment {
    /// Builds the tree over `entries` in one pass: a snapshot's restore. The entries need not be
    /// sorted; a key given twice is refused.
    pub fn from_entries(entries: Vec<(KeyHash, Vec<u8>)>) -> Result<Commitment, CommitmentError> {
        let writes = entries.into_iter().map(|(k, v)| (k, Some(Value::from(v)))).collect();
        let mut tree = Commitment::default();
        let pending = tree.prepare_unsorted(writes)?;
        tree.apply(pending);
        Ok(tree)
    }

    pub fn root(&self) -> Option<[u8; 32]> {
        self.committed.then_some(self.root.hash)
    }

    /// The current root; the empty tree's root before the first write.
    pub fn root_or_empty(&self) -> [u8; 32] {
        self.root.hash
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn contains(&self, key: KeyHash) -> bool {
        self.get(key).is_some()
    }

    /// The value the tree holds for `key`.
    pub fn get(&self, key: KeyHash) -> Option<&[u8]> {
        let (found, _) = self.walk(key);
        found.filter(|leaf| self.nodes.leaf(*leaf).key == key).map(|leaf| self.nodes.leaf(leaf).value.as_bytes())
    }

    /// Computes the root after `writes` (a value, or `None` to delete) without changing anything.
    pub fn prepare(&self, writes: BTreeMap<KeyHash, Option<Vec<u8>>>) -> Result<PendingRoot, CommitmentError> {
        // A BTreeMap iterates in key order: the order the one-pass update needs.
        self.prepare_sorted(writes.into_iter().map(|(k, v)| (k, v.map(Value::from))).collect())
    }

    /// Computes the root after `writes`, in any order; a key given twice is refused.
    pub fn prepare_unsorted(&self, mut writes: Vec<(KeyHash, Option<Value>)>) -> Result<PendingRoot, CommitmentError> {
        // Sorted on every core: a batch's keys are hashes, in no order, and sorting 10^5 of
        // them is a few milliseconds of one core.
        writes.par_sort_unstable_by_key(|w| w.0);
        if let Some(pair) = writes.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(CommitmentError(format!("key hash {} given twice", hex::encode(pair[0].0.0))));
        }
        self.prepare_sorted(writes)
    }

    /// `writes` sorted by key, each key once.
    fn prepare_sorted(&self, mut writes: Vec<Write>) -> Result<PendingRoot, CommitmentError> {
        debug_assert!(writes.windows(2).all(|pair| pair[0].0 < pair[1].0));
        if writes.is_empty() {
            return Ok(PendingRoot {
                root: self.root,
                entries: self.entries,
                prepared_at: None,
                overlay: Overlay::default(),
            });
        }
        if !self.nodes.fits(writes.len()) {
            return Err(CommitmentError(format!("{} writes would overflow the node arenas", writes.len())));
        }
        let mut update = Update::new(&self.nodes, writes.len());
        let root = update.update(self.root, 0, &mut writes);
        let overlay = update.finish();
        // Every written value is a new leaf, and every leaf written over or deleted is replaced.
        let (created, replaced) = overlay.leaves();
        let entries = self.entries + created - replaced;
        Ok(PendingRoot { root, entries, prepared_at: Some(self.updates), overlay })
    }

    /// Applies a prepared update. It must have been prepared against the current tree.
    pub fn apply(&mut self, pending: PendingRoot) {
        let Some(prepared_at) = pending.prepared_at else {
            return;
        };
        assert_eq!(prepared_at, self.updates, "a pending root applied to a tree it was not prepared against");
        self.root = Child { node: self.nodes.apply(pending.overlay, pending.root.node), hash: pending.root.hash };
        self.entries = pending.entries;
        self.updates += 1;
        self.committed = true;
        debug_assert_eq!(self.nodes.live().1, self.entries);
    }

    /// The leaf or empty slot where `key`'s path ends, and the nodes passed on the way, root
    /// first.
    fn walk(&self, key: KeyHash) -> (Option<Ref>, Vec<Ref>) {
        let mut path = Vec::new();
        let mut node = self.root.node;
        let mut depth = 0;
        while !node.is_empty() && !node.is_leaf() {
            path.push(node);
            let internal = self.nodes.internal(node);
            node = if tree::bit(&key, depth) { internal.right } else { internal.left };
            depth += 1;
        }
        ((!node.is_empty()).then_some(node), path)
    }

    /// A proof that `key` holds its value (or is absent) under the current root.
    pub fn prove(&self, key: &[u8]) -> Result<StateProof, CommitmentError> {
        let hash = key_hash(key);
        if self.root.node.is_empty() {
            return Ok(StateProof { key: key.to_vec(), value: None, proof: None });
        }
        let (end, path) = self.walk(hash);
        let node_of = |node: Ref| -> ProofNode {
            if node.is_empty() {
                ProofNode::Null
            } else if node.is_leaf() {
                let leaf = self.nodes.leaf(node);
                ProofNode::Leaf(ProofLeaf { key_hash: leaf.key.0, value_hash: tree::value_hash(leaf.value.as_bytes()) })
            } else {
                let internal = self.nodes.internal(node);
                ProofNode::Internal(proof::ProofInternal {
                    left_child: internal.left_hash,
                    right_child: internal.right_hash,
                })
            }
        };
        // Siblings bottom first, as the proof format lists them.
        let siblings = path
            .iter()
            .enumerate()
            .rev()
            .map(|(depth, node)| {
                let internal = self.nodes.internal(*node);
                node_of(if tree::bit(&hash, depth) { internal.left } else { internal.right })
            })
            .collect();
        let leaf = end.map(|leaf| self.nodes.leaf(leaf));
        let value = leaf.filter(|leaf| leaf.key == hash).map(|leaf| leaf.value.as_bytes().to_vec());
        let leaf =
            leaf.map(|leaf| ProofLeaf { key_hash: leaf.key.0, value_hash: tree::value_hash(leaf.value.as_bytes()) });
        Ok(StateProof {
            key: key.to_vec(),
            value,
            proof: Some(SparseMerkleProof { leaf, siblings, phantom_hasher: () }),
        })
    }
}

#[cfg(test)]
mod tests;
