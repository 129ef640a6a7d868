//! Checking a Bitcoin `Deposit` against the chain, for the confirmer: the referenced output
//! exists on the active chain at the required depth, pays the account's deposit address, and
//! carries the credited amount. Needs a node that finds confirmed transactions by txid
//! (`bitcoind -txindex=1`, or the regtest test node).

use std::sync::Arc;

use ::bitcoin::hashes::Hash as _;
use ::bitcoin::key::XOnlyPublicKey;
use ::bitcoin::{TxOut, Txid};
use bridge::tx::{Deposit, L1Ref};
use bridge::{AssetId, BtcNetwork, Chain};

use super::deposit::deposit_script;
use super::node::BitcoinNode;
use super::rpc::{NOT_FOUND, RpcError};

/// What the chain says about a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositStatus {
    /// On the active chain at depth, paying the account's address the credited amount.
    Confirmed,
    /// On the chain (or in the mempool) but not yet `depth` deep: ask again later.
    NotYetDeep {
        /// Confirmations now.
        confirmations: u64,
    },
    /// The node does not know the transaction, but its tip is below the height the batch names
    /// plus the depth: it may lag. Ask again later; not an alarm.
    NodeBehind {
        /// The node's tip height.
        tip: u64,
        /// The tip height at which the fact must be on this node's chain at depth.
        needed: u64,
    },
    /// The chain does not show this deposit: absent, reorged out, or different.
    NotOnChain {
        /// What differs.
        reason: String,
    },
}

/// The tip at which a fact in block `height` has `depth` confirmations: a node below it may only
/// lag; one at or past it that lacks the fact shows it absent. The deposit check and the
/// solvency watch ([`super::holdings`]) both judge by it.
pub fn tip_at_depth(height: u64, depth: u32) -> u64 {
    height.saturating_add(u64::from(depth)).saturating_sub(1)
}

/// Checks Bitcoin deposits against a node: Core in production.
#[derive(Debug, Clone)]
pub struct DepositChecker {
    /// Shared, so clones of the checker ask the same node.
    node: Arc<dyn BitcoinNode>,
    network: BtcNetwork,
    group_key: XOnlyPublicKey,
    depth: u32,
}

impl DepositChecker {
    /// A checker for the vault with `group_key` on `network`, requiring `depth` confirmations.
    /// `node` is a [`super::CoreRpc`] in production.
    pub fn new(node: impl BitcoinNode + 'static, network: BtcNetwork, group_key: XOnlyPublicKey, depth: u32) -> Self {
        Self { node: Arc::new(node), network, group_key, depth }
    }

    fn needed(&self, height: u64) -> u64 {
        tip_at_depth(height, self.depth)
    }

    /// What an unknown txid means: this node may lag (its tip is below `needed`), or it is past
    /// the block the batch names and the transaction is absent.
    fn unknown(&self, tip: u64, height: u64, what: String) -> DepositStatus {
        let needed = self.needed(height);
        if tip < needed {
            DepositStatus::NodeBehind { tip, needed }
        } else {
            DepositStatus::NotOnChain {
                reason: format!(
                    "{what} is unknown to the node, whose tip {tip} is past block {height} plus the depth {}",
                    self.depth
                ),
            }
        }
    }

    /// Check `deposit` against the address under the key this checker was made with (the
    /// genesis key). Errors are the node's (retry later); a wrong deposit is a status.
    pub async fn check(&self, deposit: &Deposit) -> Result<DepositStatus, RpcError> {
        self.check_under(deposit, self.group_key).await
    }

    /// Check `deposit` against `account`'s address under the group key `group_key`: the key the
    /// ledger says the deposit was paid to (after a key rotation, the new key's or, for a late
    /// deposit, an old key's).
    pub async fn check_under(&self, deposit: &Deposit, group_key: XOnlyPublicKey) -> Result<DepositStatus, RpcError> {
        let not_on_chain = |reason: String| Ok(DepositStatus::NotOnChain { reason });
        let L1Ref::Bitcoin { txid, vout } = deposit.l1_ref else {
            return not_on_chain("not a Bitcoin L1 reference".into());
        };
        if deposit.chain != Chain::Bitcoin || deposit.asset != AssetId::Btc {
            return not_on_chain(format!("chain {:?} asset {:?} is not bitcoin", deposit.chain, deposit.asset));
        }
        let txid = Txid::from_byte_array(txid);
        // The tip first: a transaction unknown after it was read is unknown at that tip or later.
        let tip = self.node.block_count().await?;
        let info = match self.node.transaction_info(&txid).await {
            Ok(info) => info,
            Err(e) if e.code() == Some(NOT_FOUND) => {
                return Ok(self.unknown(tip, deposit.l1_height, format!("transaction {txid}")));
            }
            Err(e) => return Err(e),
        };
        let Some(TxOut { value, script_pubkey }) = info.tx.output.get(vout as usize) else {
            return not_on_chain(format!("transaction {txid} has no output {vout}"));
        };
        let expected = deposit_script(group_key, self.network, &deposit.account);
        if *script_pubkey != expected {
            return not_on_chain(format!("output {txid}:{vout} does not pay {}'s deposit address", deposit.account));
        }
        if u128::from(value.to_sat()) != deposit.amount.0 {
            return not_on_chain(format!(
                "output {txid}:{vout} is {} sat, the deposit says {}",
                value.to_sat(),
                deposit.amount.0
            ));
        }
        if info.block_hash.is_none() || info.confirmations < u64::from(self.depth) {
            return Ok(DepositStatus::NotYetDeep { confirmations: info.confirmations });
        }
        Ok(DepositStatus::Confirmed)
    }
}

impl DepositChecker {
    /// Whether attempt `attempt` of `plan` is on the active chain at depth: its txid is the
    /// one every replayer derives from the plan, so a node at or past `height` (the block the
    /// batch names) plus the depth either has it or it did not happen.
    pub async fn check_payout(
        &self,
        keys: &bridge::VaultKeys,
        plan: &bridge::btc_payout::PayoutPlan,
        attempt: u32,
        height: u64,
    ) -> Result<DepositStatus, RpcError> {
        let unsigned = match plan.build(keys, self.network, attempt) {
            Ok(unsigned) => unsigned,
            Err(e) => return Ok(DepositStatus::NotOnChain { reason: e.to_string() }),
        };
        let txid = unsigned.tx.compute_txid();
        let tip = self.node.block_count().await?;
        let info = match self.node.transaction_info(&txid).await {
            Ok(info) => info,
            Err(e) if e.code() == Some(NOT_FOUND) => {
                return Ok(self.unknown(tip, height, format!("attempt {attempt} of payout plan {} ({txid})", plan.id)));
            }
            Err(e) => return Err(e),
        };
        if info.block_hash.is_none() || info.confirmations < u64::from(self.depth) {
            return Ok(DepositStatus::NotYetDeep { confirmations: info.confirmations });
        }
        Ok(DepositStatus::Confirmed)
    }
}

fn as_check(
    status: Result<DepositStatus, RpcError>,
) -> Result<crate::deposit::DepositCheck, crate::deposit::VerifierError> {
    use crate::deposit::DepositCheck;
    match status {
        Ok(DepositStatus::Confirmed) => Ok(DepositCheck::Confirmed),
        Ok(DepositStatus::NotYetDeep { .. }) => Ok(DepositCheck::NotYetDeep),
        Ok(DepositStatus::NodeBehind { tip, needed }) => Ok(DepositCheck::NodeBehind { node_height: tip, needed }),
        Ok(DepositStatus::NotOnChain { reason }) => Ok(DepositCheck::NotOnL1 { reason }),
        Err(error) => Err(crate::deposit::VerifierError { chain: Chain::Bitcoin, reason: error.to_string() }),
    }
}

/// The confirmer's view: a Bitcoin deposit in a batch is final only when the chain shows it.
#[async_trait::async_trait]
impl crate::deposit::DepositVerifier for DepositChecker {
    async fn check(&self, deposit: &Deposit) -> Result<crate::deposit::DepositCheck, crate::deposit::VerifierError> {
        as_check(DepositChecker::check(self, deposit).await)
    }

    async fn check_under_key(
        &self,
        deposit: &Deposit,
        internal_key: [u8; 32],
    ) -> Result<crate::deposit::DepositCheck, crate::deposit::VerifierError> {
        let Ok(key) = XOnlyPublicKey::from_slice(&internal_key) else {
            return Ok(crate::deposit::DepositCheck::NotOnL1 {
                reason: format!("the ledger's group key {} is no x-only key", hex::encode(internal_key)),
            });
        };
        as_check(DepositChecker::check_under(self, deposit, key).await)
    }

    async fn check_payout(
        &self,
        keys: &bridge::VaultKeys,
        plan: &bridge::btc_payout::PayoutPlan,
        attempt: u32,
        height: u64,
    ) -> Result<crate::deposit::DepositCheck, crate::deposit::VerifierError> {
        as_check(DepositChecker::check_payout(self, keys, plan, attempt, height).await)
    }

    async fn beyond_synced_tip(&self, needed: u64) -> Result<Option<u64>, crate::deposit::VerifierError> {
        let info = self
            .node
            .blockchain_info()
            .await
            .map_err(|e| crate::deposit::VerifierError { chain: Chain::Bitcoin, reason: e.to_string() })?;
        // In sync: not downloading, and every header it knows has its block.
        if info.initial_block_download || info.headers > info.blocks {
            return Ok(None);
        }
        let bound =
            info.blocks.saturating_add(u64::from(self.depth)).saturating_add(crate::deposit::BTC_FUTURE_SLACK_BLOCKS);
        Ok((needed > bound).then_some(info.blocks))
    }
}
