//! Deposits are checked against L1, never taken on trust. Each chain adapter implements
//! [`DepositVerifier`] (Ethereum: [`crate::ethereum::EthDepositVerifier`]); the confirmer
//! re-exports these types from `confirmer::deposits`.

use async_trait::async_trait;
use bridge::btc_payout::PayoutPlan;
use bridge::{Chain, Deposit, VaultKeys};

/// What L1 says about a deposit a batch credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositCheck {
    /// L1 shows it, at the confirmation depth, with this account, asset and amount.
    Confirmed,
    /// L1 shows it, but not yet as deep as the chain requires: check again later.
    NotYetDeep,
    /// This node has not reached the block the batch names plus the depth (`node_height <
    /// needed`), so it cannot tell yet whether the fact is on L1: wait, not an alarm. Only a
    /// node at or past `needed` that lacks the fact calls it absent.
    NodeBehind { node_height: u64, needed: u64 },
    /// L1 does not show it as credited (absent, reorged out, or different): an alarm.
    NotOnL1 { reason: String },
}

/// Where a chain's deposit watcher stands: the last block it read at depth, by number (height)
/// and hash. Once every deposit at or below it is credited, the coordinator saves it; a
/// restarted watcher resumes after it (so a restart costs the blocks since, not the chain since
/// the vault's deployment) and first checks the block is still on the node's chain (a reorg
/// deeper than the depth is noticed across restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanMark {
    pub number: u64,
    pub hash: [u8; 32],
}

/// How many blocks a synced node may trail the coordinator's node (beyond the depth, which each
/// verifier adds) before a fact named beyond its tip counts as a block its chain does not have:
/// about 6 minutes of Ethereum blocks and half an hour of Bitcoin blocks, far more than two
/// synced nodes drift apart.
pub const ETH_FUTURE_SLACK_BLOCKS: u64 = 32;
/// See [`ETH_FUTURE_SLACK_BLOCKS`].
pub const BTC_FUTURE_SLACK_BLOCKS: u64 = 3;

#[derive(Debug, thiserror::Error)]
#[error("the {chain} node could not be asked about a deposit: {reason}; retrying")]
pub struct VerifierError {
    pub chain: Chain,
    pub reason: String,
}

/// Checks the L1 facts a batch records: deposits on every chain, and on Bitcoin which attempt
/// of a payout plan confirmed.
#[async_trait]
pub trait DepositVerifier: Send + Sync {
    async fn check(&self, deposit: &Deposit) -> Result<DepositCheck, VerifierError>;

    /// [`DepositVerifier::check`] for a Bitcoin deposit that must pay the account's address
    /// under the group key `internal_key` (`x(P)`): after a key rotation the ledger says which
    /// key each deposit was paid to (the key in force at its batch, or an old key for a late
    /// deposit). Chains without per-key addresses ignore the key.
    async fn check_under_key(&self, deposit: &Deposit, _internal_key: [u8; 32]) -> Result<DepositCheck, VerifierError> {
        self.check(deposit).await
    }

    /// After a [`DepositCheck::NodeBehind`] for `needed`: `Some(tip)` when this node says it is
    /// in sync with its network and `needed` is still more than the depth plus
    /// a chain's slack ([`ETH_FUTURE_SLACK_BLOCKS`]) beyond its tip, so the fact names a block this chain does not have
    /// (lag cannot explain it); `None` while the node syncs, cannot tell, or is near enough. The
    /// follower alarms only when this persists for its wait.
    async fn beyond_synced_tip(&self, _needed: u64) -> Result<Option<u64>, VerifierError> {
        Ok(None)
    }

    /// Whether attempt `attempt` of `plan` is on the chain at depth; `height` is the block the
    /// batch says holds it (a node below `height` + depth waits). Only the Bitcoin verifier
    /// knows payouts; any other chain denies them.
    async fn check_payout(
        &self,
        _keys: &VaultKeys,
        _plan: &PayoutPlan,
        _attempt: u32,
        _height: u64,
    ) -> Result<DepositCheck, VerifierError> {
        Ok(DepositCheck::NotOnL1 { reason: "this chain has no Bitcoin payouts".into() })
    }
}
