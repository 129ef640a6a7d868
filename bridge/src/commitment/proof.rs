//! Inclusion and exclusion proofs, in the JSON shape docs/PROTOCOL.md ("Proofs") fixes: the
//! shape crate `jmt` 0.12 serialized, so light clients written against it keep working.

use serde::{Deserialize, Serialize};

use super::tree::{bit, internal_hash, leaf_hash, value_hash};
use super::{KeyHash, PLACEHOLDER, key_hash};

/// Proofs longer than the key's 256 bits cannot be from this tree.
const MAX_SIBLINGS: usize = 256;

/// An inclusion or exclusion proof for one state entry, checkable by a light client that
/// knows only a batch's `post_state_root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    /// The entry's canonical key bytes (see docs/PROTOCOL.md).
    #[serde(with = "hex_vec")]
    pub key: Vec<u8>,
    /// The value bytes, or `None` for an exclusion proof.
    #[serde(with = "hex_opt_vec")]
    pub value: Option<Vec<u8>>,
    /// `None` only for the empty tree.
    pub proof: Option<SparseMerkleProof>,
}

/// The path from the key's leaf (or the slot where it would be) to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseMerkleProof {
    /// The leaf where the key's path ends: the key's own (inclusion), another key's (exclusion),
    /// or `None` for an empty slot (exclusion).
    pub leaf: Option<ProofLeaf>,
    /// Bottom first: `siblings[0]` is the deepest.
    pub siblings: Vec<ProofNode>,
    /// Always `null`: a field of `jmt`'s serialization, kept so the JSON is unchanged.
    #[serde(default)]
    pub phantom_hasher: (),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofLeaf {
    pub key_hash: [u8; 32],
    pub value_hash: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofInternal {
    pub left_child: [u8; 32],
    pub right_child: [u8; 32],
}

/// A sibling subtree, given by what hashes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofNode {
    Null,
    Internal(ProofInternal),
    Leaf(ProofLeaf),
}

impl ProofNode {
    fn hash(&self) -> [u8; 32] {
        match self {
            ProofNode::Null => PLACEHOLDER,
            ProofNode::Internal(node) => internal_hash(&node.left_child, &node.right_child),
            ProofNode::Leaf(leaf) => leaf.hash(),
        }
    }
}

impl ProofLeaf {
    fn hash(&self) -> [u8; 32] {
        leaf_hash(&KeyHash(self.key_hash), &self.value_hash)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state proof does not check against root {root}: {reason}")]
pub struct ProofError {
    pub root: String,
    pub reason: String,
}

impl StateProof {
    /// Checks the proof against `root` by docs/PROTOCOL.md's four steps.
    pub fn verify(&self, root: [u8; 32]) -> Result<(), ProofError> {
        let fail = |reason: &str| ProofError { root: hex::encode(root), reason: reason.into() };
        let Some(proof) = &self.proof else {
            return match (&self.value, root == PLACEHOLDER) {
                (None, true) => Ok(()),
                (Some(_), _) => Err(fail("an inclusion proof without a tree")),
                (None, false) => Err(fail("an empty-tree proof for a non-empty root")),
            };
        };
        let n = proof.siblings.len();
        if n > MAX_SIBLINGS {
            return Err(fail("more than 256 siblings"));
        }
        let path = key_hash(&self.key);
        let mut hash = match (&proof.leaf, &self.value) {
            (None, Some(_)) => return Err(fail("an inclusion proof without its leaf")),
            (None, None) => PLACEHOLDER,
            (Some(leaf), Some(value)) => {
                if leaf.key_hash != path.0 {
                    return Err(fail("the leaf is another key's"));
                }
                if leaf.value_hash != value_hash(value) {
                    return Err(fail("the leaf holds another value"));
                }
                leaf.hash()
            }
            (Some(leaf), None) => {
                let other = KeyHash(leaf.key_hash);
                if other == path {
                    return Err(fail("an exclusion proof naming the key's own leaf"));
                }
                if (0..n).any(|d| bit(&other, d) != bit(&path, d)) {
                    return Err(fail("the leaf is not where the key would be"));
                }
                leaf.hash()
            }
        };
        for (i, sibling) in proof.siblings.iter().enumerate() {
            let depth = n - 1 - i;
            let sibling = sibling.hash();
            hash = if bit(&path, depth) { internal_hash(&sibling, &hash) } else { internal_hash(&hash, &sibling) };
        }
        if hash == root { Ok(()) } else { Err(fail("the path does not hash to the root")) }
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
