//! The authenticated state map: a Jellyfish Merkle tree (crate `jmt`) over `key → value` pairs,
//! kept in memory at its latest version only. Each write is an O(log n) path update; the writes
//! of one batch are folded into the tree together, so the upper levels are hashed once per batch.

use std::collections::{BTreeMap, HashMap};

use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, RootHash, Sha256Jmt, Version};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A failure inside the tree library. It means a bug or corrupted memory, never bad input.
#[derive(Debug, thiserror::Error)]
#[error("state tree: {0}")]
pub struct CommitmentError(String);

/// The tree's nodes and values at the latest version. Nodes made stale by an update are dropped
/// at once: proofs are served against the latest root only.
///
/// The `HashMap`s are only looked up, never iterated, so their order cannot reach a hash.
#[derive(Default)]
pub struct Commitment {
    nodes: HashMap<NodeKey, Node>,
    values: HashMap<KeyHash, OwnedValue>,
    version: Option<Version>,
    root: Option<RootHash>,
}

impl std::fmt::Debug for Commitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commitment")
            .field("nodes", &self.nodes.len())
            .field("values", &self.values.len())
            .field("version", &self.version)
            .field("root", &self.root().map(hex::encode))
            .finish()
    }
}

/// An update computed but not yet applied: replay compares its root with the batch header's
/// before anything changes.
pub struct PendingRoot {
    root: [u8; 32],
    update: Option<(Version, TreeUpdateBatch)>,
}

impl std::fmt::Debug for PendingRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRoot").field("root", &hex::encode(self.root)).finish()
    }
}

impl PendingRoot {
    pub fn root(&self) -> [u8; 32] {
        self.root
    }
}

/// The root of a tree with no entries (`jmt`'s placeholder hash, which it does not export).
pub fn empty_root() -> [u8; 32] {
    *b"SPARSE_MERKLE_PLACEHOLDER_HASH__"
}

/// The tree key of a state entry's canonical key bytes.
pub fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash::with::<Sha256>(key)
}

impl Commitment {
    pub fn root(&self) -> Option<[u8; 32]> {
        self.root.map(|r| r.0)
    }

    /// The current root; the empty tree's root before the first write.
    pub fn root_or_empty(&self) -> [u8; 32] {
        self.root().unwrap_or_else(empty_root)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn contains(&self, key: KeyHash) -> bool {
        self.values.contains_key(&key)
    }

    /// Computes the root after `writes` (a value, or `None` to delete) without changing anything.
    pub fn prepare(&self, writes: BTreeMap<KeyHash, Option<OwnedValue>>) -> Result<PendingRoot, CommitmentError> {
        if writes.is_empty() {
            return Ok(PendingRoot { root: self.root_or_empty(), update: None });
        }
        let version = self.version.map_or(0, |v| v + 1);
        let tree = Sha256Jmt::new(self);
        let (root, update) = if writes.values().all(Option::is_some) {
            // The common case (the ledger never deletes): jmt's batch insertion builds each
            // touched internal node once for the whole set, instead of once per key.
            let values = writes.into_iter().filter_map(|(key, value)| value.map(|v| (key, v))).collect();
            let (mut roots, update) = tree
                .batch_put_value_sets(vec![values], None, version)
                .map_err(|e| CommitmentError(format!("{e:#}")))?;
            (roots.pop().ok_or_else(|| CommitmentError("no root for a non-empty update".into()))?, update)
        } else {
            tree.put_value_set(writes, version).map_err(|e| CommitmentError(format!("{e:#}")))?
        };
        Ok(PendingRoot { root: root.0, update: Some((version, update)) })
    }

    /// Applies a prepared update. It must have been prepared against the current version.
    pub fn apply(&mut self, pending: PendingRoot) {
        let Some((version, update)) = pending.update else {
            return;
        };
        assert_eq!(version, self.version.map_or(0, |v| v + 1), "a pending root applied out of order");
        for stale in &update.stale_node_index_batch {
            self.nodes.remove(&stale.node_key);
        }
        for (key, node) in update.node_batch.nodes() {
            self.nodes.insert(key.clone(), node.clone());
        }
        for ((_, key), value) in update.node_batch.values() {
            match value {
                Some(value) => self.values.insert(*key, value.clone()),
                None => self.values.remove(key),
            };
        }
        self.version = Some(version);
        self.root = Some(RootHash(pending.root));
    }

    /// A proof that `key` holds its value (or is absent) under the current root.
    pub fn prove(&self, key: &[u8]) -> Result<StateProof, CommitmentError> {
        let hash = key_hash(key);
        let Some(version) = self.version else {
            return Ok(StateProof { key: key.to_vec(), value: None, proof: None });
        };
        let tree = Sha256Jmt::new(self);
        let (value, proof) = tree.get_with_proof(hash, version).map_err(|e| CommitmentError(format!("{e:#}")))?;
        Ok(StateProof { key: key.to_vec(), value, proof: Some(proof) })
    }
}

impl TreeReader for Commitment {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        // Only the latest version is kept; an older one is a caller's bug, not a missing value.
        anyhow::ensure!(self.version.is_none_or(|v| max_version >= v), "version {max_version} was pruned");
        Ok(self.values.get(&key_hash).cloned())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Used only when restoring a tree from chunks, which this store never does.
        anyhow::bail!("restoring is not supported by the in-memory state tree")
    }
}

/// An inclusion or exclusion proof for one state entry, checkable by a light client that
/// knows only a batch's `post_state_root`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateProof {
    /// The entry's canonical key bytes (see docs/PROTOCOL.md).
    #[serde(with = "hex_vec")]
    pub key: Vec<u8>,
    /// The value bytes, or `None` for an exclusion proof.
    #[serde(with = "hex_opt_vec")]
    pub value: Option<Vec<u8>>,
    /// `None` only for the empty tree.
    pub proof: Option<SparseMerkleProof<Sha256>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state proof does not check against root {root}: {reason}")]
pub struct ProofError {
    pub root: String,
    pub reason: String,
}

impl StateProof {
    pub fn verify(&self, root: [u8; 32]) -> Result<(), ProofError> {
        let fail = |reason: String| ProofError { root: hex::encode(root), reason };
        match &self.proof {
            None if self.value.is_none() && root == empty_root() => Ok(()),
            None => Err(fail("a proof is missing".into())),
            Some(proof) => proof
                .verify(RootHash(root), key_hash(&self.key), self.value.as_deref())
                .map_err(|e| fail(format!("{e:#}"))),
        }
    }
}

mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::serde_hex::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom("expected 0x-prefixed hex"))?;
        hex::decode(digits).map_err(serde::de::Error::custom)
    }
}

mod hex_opt_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::hex_vec::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => {
                let digits =
                    text.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom("expected 0x-prefixed hex"))?;
                hex::decode(digits).map(Some).map_err(serde::de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(keys: std::ops::Range<u32>, value: u8) -> BTreeMap<KeyHash, Option<OwnedValue>> {
        keys.map(|k| (key_hash(&k.to_le_bytes()), Some(vec![value]))).collect()
    }

    #[test]
    fn batch_and_single_insertion_agree_and_deleting_everything_empties_the_tree() {
        let mut batched = Commitment::default();
        let pending = batched.prepare(writes(0..200, 1)).unwrap();
        batched.apply(pending);
        let pending = batched.prepare(writes(100..300, 2)).unwrap();
        batched.apply(pending);

        // The same entries through the per-key path (a delete in the set forces it).
        let mut single = Commitment::default();
        let mut first = writes(0..200, 1);
        first.insert(key_hash(b"gone"), Some(vec![9]));
        let pending = single.prepare(first).unwrap();
        single.apply(pending);
        let mut second = writes(100..300, 2);
        second.insert(key_hash(b"gone"), None);
        let pending = single.prepare(second).unwrap();
        single.apply(pending);
        assert_eq!(batched.root(), single.root());
        assert_eq!(batched.len(), 300);

        let all: BTreeMap<_, _> = (0..300u32).map(|k| (key_hash(&k.to_le_bytes()), None)).collect();
        let pending = single.prepare(all).unwrap();
        single.apply(pending);
        assert_eq!(single.root(), Some(empty_root()));
        assert!(single.is_empty());
    }

    #[test]
    fn stale_nodes_are_pruned() {
        let mut tree = Commitment::default();
        for round in 0..5u8 {
            let pending = tree.prepare(writes(0..64, round)).unwrap();
            tree.apply(pending);
        }
        // 64 leaves and their internal nodes, not five versions' worth.
        assert!(tree.nodes.len() < 2 * 64, "{} nodes kept", tree.nodes.len());
        tree.prove(&7u32.to_le_bytes()).unwrap().verify(tree.root_or_empty()).unwrap();
    }
}
