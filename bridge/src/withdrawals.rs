//! What a batch owes on L1, in the forms the chains check.
//!
//! Ethereum: a keccak Merkle tree whose proofs verify with OpenZeppelin's `MerkleProof`
//! (sorted pairs; leaves hashed twice, as OpenZeppelin's `StandardMerkleTree` does), so the
//! vault contract uses it unchanged. Bitcoin: an ordered list of payouts and its digest; the
//! payout transaction itself is built from it by the Bitcoin vault.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::amount::Amount;
use crate::codec::to_bytes;
use crate::hashing::{keccak256, tagged_hash, tags};

/// One Ethereum payout: withdrawal `index` of batch `batch`. Its leaf is the same in the
/// batch's own tree and in the tree of any range of batches holding it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EthWithdrawal {
    pub batch: u64,
    pub index: u32,
    /// The ERC-20 token, or the zero address for ether.
    pub token: Address,
    pub recipient: Address,
    pub amount: Amount,
}

impl EthWithdrawal {
    /// `keccak256(keccak256(abi.encode(uint64 batch, uint32 index, address token,
    /// address recipient, uint256 amount)))`: what the vault recomputes from its call data.
    pub fn leaf(&self) -> [u8; 32] {
        let mut encoded = [0u8; 160];
        encoded[24..32].copy_from_slice(&self.batch.to_be_bytes());
        encoded[60..64].copy_from_slice(&self.index.to_be_bytes());
        encoded[76..96].copy_from_slice(self.token.as_bytes());
        encoded[108..128].copy_from_slice(self.recipient.as_bytes());
        encoded[144..160].copy_from_slice(&self.amount.units().to_be_bytes());
        keccak256(keccak256(encoded))
    }
}

/// OpenZeppelin's `commutativeKeccak256`: the pair is sorted before hashing.
fn hash_pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut preimage = [0u8; 64];
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    preimage[..32].copy_from_slice(lo);
    preimage[32..].copy_from_slice(hi);
    keccak256(preimage)
}

/// A binary Merkle tree over leaves in order: pairs are hashed with `combine`, and an odd node
/// at the end of a level moves up unchanged. The empty tree's root is 32 zero bytes.
pub(crate) struct MerkleTree {
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    pub(crate) fn new(leaves: Vec<[u8; 32]>, combine: impl Fn(&[u8; 32], &[u8; 32]) -> [u8; 32]) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = &levels[levels.len() - 1];
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => combine(a, b),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    pub(crate) fn root(&self) -> [u8; 32] {
        self.levels.last().and_then(|level| level.first()).copied().unwrap_or([0; 32])
    }

    /// The siblings from leaf `index` up to the root; `None` if there is no such leaf.
    pub(crate) fn proof(&self, mut index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.levels.first()?.len() {
            return None;
        }
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if let Some(hash) = level.get(sibling) {
                proof.push(*hash);
            }
            index /= 2;
        }
        Some(proof)
    }
}

/// Ethereum withdrawals and their tree: one batch's (the batch header's `withdrawals_root`), or
/// a range of batches' (what the vault holds and the watchmen sign: every leaf of batches
/// `first..=last`, by batch, then by index). Leaves are in strictly increasing (batch, index)
/// order, so a leaf's position is found by binary search.
pub struct EthWithdrawalTree {
    withdrawals: Vec<EthWithdrawal>,
    tree: MerkleTree,
}

impl std::fmt::Debug for EthWithdrawalTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthWithdrawalTree")
            .field("len", &self.withdrawals.len())
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

impl EthWithdrawalTree {
    /// The tree of `withdrawals`, which must be in strictly increasing (batch, index) order
    /// (each batch's are numbered from 0 in the STF; a range concatenates whole batches).
    pub fn new(withdrawals: Vec<EthWithdrawal>) -> Self {
        for pair in withdrawals.windows(2) {
            assert!(
                (pair[0].batch, pair[0].index) < (pair[1].batch, pair[1].index),
                "withdrawal leaves are in (batch, index) order"
            );
        }
        let tree = MerkleTree::new(withdrawals.iter().map(EthWithdrawal::leaf).collect(), hash_pair);
        EthWithdrawalTree { withdrawals, tree }
    }

    /// The tree of a range of batches: the leaves of `batches` (each one batch's tree, in
    /// increasing batch order) one after the other.
    pub fn concat<'a>(batches: impl IntoIterator<Item = &'a EthWithdrawalTree>) -> Self {
        Self::new(batches.into_iter().flat_map(|tree| tree.withdrawals.iter().cloned()).collect())
    }

    /// The root the watchmen sign; zero when the batch (or range) pays nothing on Ethereum.
    pub fn root(&self) -> [u8; 32] {
        self.tree.root()
    }

    pub fn withdrawals(&self) -> &[EthWithdrawal] {
        &self.withdrawals
    }

    /// The proof `withdraw(…)` takes for the leaf at `position` (in one batch's tree, its index).
    pub fn proof(&self, position: u32) -> Option<Vec<[u8; 32]>> {
        self.tree.proof(position as usize)
    }

    /// Where withdrawal `index` of batch `batch` sits in this tree, if it is here.
    pub fn position(&self, batch: u64, index: u32) -> Option<u32> {
        let position = self.withdrawals.binary_search_by_key(&(batch, index), |w| (w.batch, w.index)).ok()?;
        u32::try_from(position).ok()
    }
}

/// OpenZeppelin's `MerkleProof.verify`, for tests and for clients checking before they pay gas.
pub fn verify_eth_proof(proof: &[[u8; 32]], root: [u8; 32], leaf: [u8; 32]) -> bool {
    proof.iter().fold(leaf, |acc, sibling| hash_pair(&acc, sibling)) == root
}

/// One Bitcoin payout.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BtcPayout {
    pub tx_hash: [u8; 32],
    /// The recipient's output script.
    pub script_pubkey: Vec<u8>,
    pub amount_sat: u64,
}

/// The batch header's commitment to its Bitcoin payouts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BtcWithdrawals {
    pub count: u32,
    pub total_sat: u64,
    /// `tagged_hash("bridge/btc-withdrawals", borsh(payouts))`, all zero when there are none.
    #[serde(with = "crate::serde_hex::fixed")]
    pub digest: [u8; 32],
}

impl BtcWithdrawals {
    pub fn commit(payouts: &[BtcPayout]) -> Self {
        if payouts.is_empty() {
            return BtcWithdrawals::default();
        }
        let total_sat = payouts.iter().map(|p| p.amount_sat).fold(0u64, |sum, a| sum.saturating_add(a));
        BtcWithdrawals {
            count: u32::try_from(payouts.len()).unwrap_or(u32::MAX),
            total_sat,
            digest: tagged_hash(tags::BTC_WITHDRAWALS, &[&to_bytes(&payouts.to_vec())]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn withdrawal(index: u32) -> EthWithdrawal {
        EthWithdrawal {
            batch: 7,
            index,
            token: Address::ZERO,
            recipient: Address([index as u8; 20]),
            amount: Amount(1000 + index as u128),
        }
    }

    #[test]
    fn every_proof_verifies_and_no_other_leaf_does() {
        for n in 1..=9u32 {
            let tree = EthWithdrawalTree::new((0..n).map(withdrawal).collect());
            for i in 0..n {
                let proof = tree.proof(i).unwrap();
                assert!(verify_eth_proof(&proof, tree.root(), withdrawal(i).leaf()), "n={n} i={i}");
                let mut other = withdrawal(i);
                other.batch = 8;
                assert!(!verify_eth_proof(&proof, tree.root(), other.leaf()));
            }
            assert!(tree.proof(n).is_none());
        }
    }

    #[test]
    fn a_range_tree_proves_every_leaf_of_every_batch_and_finds_it_by_batch_and_index() {
        let batch = |number: u64, n: u32| {
            EthWithdrawalTree::new((0..n).map(|i| EthWithdrawal { batch: number, ..withdrawal(i) }).collect())
        };
        let trees = [batch(3, 2), batch(4, 0), batch(5, 3)];
        let range = EthWithdrawalTree::concat(&trees);
        assert_eq!(range.withdrawals().len(), 5);
        for (position, w) in range.withdrawals().iter().enumerate() {
            assert_eq!(range.position(w.batch, w.index), Some(position as u32));
            let proof = range.proof(position as u32).unwrap();
            assert!(verify_eth_proof(&proof, range.root(), w.leaf()));
        }
        assert_eq!(range.position(4, 0), None);
        assert_eq!(range.position(5, 3), None);
        // The range's root is not any one batch's.
        assert_ne!(range.root(), trees[0].root());
        // One batch alone: its range tree is its own tree.
        assert_eq!(EthWithdrawalTree::concat([&trees[2]]).root(), trees[2].root());
    }

    #[test]
    #[should_panic(expected = "(batch, index) order")]
    fn leaves_out_of_order_are_a_bug() {
        EthWithdrawalTree::new(vec![EthWithdrawal { batch: 8, ..withdrawal(0) }, withdrawal(1)]);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(EthWithdrawalTree::new(vec![]).root(), [0; 32]);
        let one = EthWithdrawalTree::new(vec![withdrawal(0)]);
        assert_eq!(one.root(), withdrawal(0).leaf());
        assert!(one.proof(0).unwrap().is_empty());
    }
}
