//! Payout transactions on the Bitcoin node: which attempt of a plan the chain holds, and
//! broadcasting a signed attempt. Building and sighashes are the ledger's
//! ([`bridge::btc_payout`]): every watchman derives the same bytes from its own replay; this
//! module only talks to the node.

use std::sync::Arc;

use bitcoin::{Transaction, Txid};
use bridge::btc_payout::{MAX_BUMPS, PayoutPlan};
use bridge::{BtcNetwork, BtcVaultParams, VaultKeys};

use super::node::BitcoinNode;
use super::rpc::{NOT_FOUND, RpcError};

/// Core's `RPC_VERIFY_ALREADY_IN_CHAIN`: "transaction already in block chain".
const ALREADY_IN_CHAIN: i64 = -27;
/// Core's `RPC_VERIFY_REJECTED`, which also answers "txn-already-in-mempool".
const REJECTED: i64 = -26;

/// Where a plan stands on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStatus {
    /// No attempt is in the mempool or the chain.
    Unseen,
    /// Attempt `attempt` waits in the mempool.
    Pending { attempt: u32 },
    /// Attempt `attempt` is in the active chain with `confirmations` confirmations.
    Confirmed { attempt: u32, confirmations: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutRpcError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the node refused payout {txid}: {reason}")]
    Refused { txid: Txid, reason: String },
}

/// The Bitcoin side of paying plans.
#[derive(Debug, Clone)]
pub struct PayoutBroadcaster {
    /// Shared, so clones of the broadcaster ask the same node.
    node: Arc<dyn BitcoinNode>,
    /// The ledger's vault keys: what a plan's change is paid to. Only grows (a key rotation adds
    /// one), and a plan's transaction depends only on the keys up to its batch, so keys read
    /// from any later state build every earlier plan the same.
    keys: VaultKeys,
    network: BtcNetwork,
}

impl PayoutBroadcaster {
    /// A broadcaster for a vault that has not rotated its key; after a rotation, give it the
    /// ledger's keys with [`PayoutBroadcaster::set_keys`]. `node` is a [`super::CoreRpc`] in
    /// production.
    pub fn new(node: impl BitcoinNode + 'static, vault: BtcVaultParams, network: BtcNetwork) -> Self {
        PayoutBroadcaster { node: Arc::new(node), keys: VaultKeys::genesis(vault), network }
    }

    /// [`PayoutBroadcaster::new`] over a node handle shared with other callers.
    pub fn shared(node: Arc<dyn BitcoinNode>, vault: BtcVaultParams, network: BtcNetwork) -> Self {
        PayoutBroadcaster { node, keys: VaultKeys::genesis(vault), network }
    }

    /// The node this broadcaster asks, shared: for a caller that asks it more than payout
    /// status (the watchman's payout loop reads the tip height), without a second handle.
    pub fn node(&self) -> &Arc<dyn BitcoinNode> {
        &self.node
    }

    /// The ledger's keys as its replay now shows them (`bridge::rotation::vault_keys`).
    pub fn set_keys(&mut self, keys: VaultKeys) {
        self.keys = keys;
    }

    /// The txid of every attempt the plan allows, in attempt order.
    pub fn attempt_txids(&self, plan: &PayoutPlan) -> Vec<(u32, Txid)> {
        (0..=MAX_BUMPS)
            .map_while(|attempt| plan.build(&self.keys, self.network, attempt).ok())
            .map(|unsigned| (unsigned.attempt, unsigned.tx.compute_txid()))
            .collect()
    }

    /// Looks every attempt up (`getrawtransaction`; a `bitcoind` needs `-txindex=1`). A
    /// confirmed attempt wins over pending ones; all attempts spend the same inputs, so at most
    /// one can be in the chain.
    pub async fn status(&self, plan: &PayoutPlan) -> Result<PayoutStatus, PayoutRpcError> {
        let mut status = PayoutStatus::Unseen;
        for (attempt, txid) in self.attempt_txids(plan) {
            match self.node.transaction_info(&txid).await {
                Ok(info) if info.block_hash.is_some() && info.confirmations > 0 => {
                    return Ok(PayoutStatus::Confirmed { attempt, confirmations: info.confirmations });
                }
                Ok(_) => status = PayoutStatus::Pending { attempt },
                Err(e) if e.code() == Some(NOT_FOUND) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(status)
    }

    /// Sends a signed attempt. Sending one the node already has is not an error: a watchman
    /// that crashed after sending sends again.
    pub async fn broadcast(&self, tx: &Transaction) -> Result<Txid, PayoutRpcError> {
        let txid = tx.compute_txid();
        match self.node.send_raw_transaction(tx).await {
            Ok(sent) => Ok(sent),
            Err(e) if e.code() == Some(ALREADY_IN_CHAIN) => Ok(txid),
            Err(RpcError::Rpc { code: REJECTED, message, .. }) if message.contains("already-in-mempool") => Ok(txid),
            Err(RpcError::Rpc { message, .. }) => Err(PayoutRpcError::Refused { txid, reason: message }),
            Err(e) => Err(e.into()),
        }
    }
}

/// What the chain holds of the outputs the ledger says the vault has (for the solvency watch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// The node's tip, read before any output was looked up.
    pub tip: u64,
    /// The sum of the listed outputs the chain has unspent, at the ledger's amounts.
    pub held_sat: u64,
    /// Outputs the chain does not have unspent, or has with another amount, although the node is
    /// past the block each came from (plus the depth): each one is a hole in the vault that the
    /// ledger does not know about.
    pub missing: Vec<bridge::OutPoint>,
    /// Outputs the node does not have unspent whose block (plus the depth) it has not reached:
    /// it may only lag, so they are neither held nor missing yet.
    pub unseen: Vec<bridge::OutPoint>,
    /// The tip the node must reach for every unseen output to be judged (0 if none is unseen).
    pub needed: u64,
}

/// Looks each of `outputs` up on the chain (`gettxout`, confirmed only): the vault's Bitcoin
/// holdings as far as the ledger's own record of them is true. Deposits the ledger has not
/// credited yet are extra and not counted. An output the node lacks counts as missing only if
/// the node's tip is at or past its `height` plus `depth` − 1, the rule the replay's deposit
/// check uses: a node behind the ledger (a lagging backend, a restart still syncing) has not
/// seen it yet, which is not "absent".
pub async fn holdings(node: &dyn BitcoinNode, outputs: &[bridge::VaultUtxo], depth: u32) -> Result<Holdings, RpcError> {
    // The tip first: an output unknown after it was read is unknown at that tip or later.
    let tip = node.block_count().await?;
    let mut holdings = Holdings { tip, ..Holdings::default() };
    for utxo in outputs {
        let outpoint = bitcoin::OutPoint::from(utxo.outpoint);
        match node.tx_out(&outpoint, false).await? {
            Some(found) if found.value.to_sat() == utxo.amount_sat => {
                holdings.held_sat = holdings.held_sat.saturating_add(utxo.amount_sat);
            }
            // Another amount at the ledger's outpoint is wrong however far the node is.
            Some(_) => holdings.missing.push(utxo.outpoint),
            None => {
                let needed = super::verify::tip_at_depth(utxo.height, depth.max(1));
                if tip < needed {
                    holdings.unseen.push(utxo.outpoint);
                    holdings.needed = holdings.needed.max(needed);
                } else {
                    holdings.missing.push(utxo.outpoint);
                }
            }
        }
    }
    Ok(holdings)
}
