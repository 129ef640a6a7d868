//! The vault as a watchman's settlement sees it: the reads and sends its Ethereum turn makes,
//! behind one narrow trait, so that the same decisions run over a node ([`Submitter`], in the
//! binary) and over the simulator's in-process EVM.

use super::*;

/// Every call a watchman's Ethereum settlement makes to the vault. Reads answer as the
/// writer's node sees the chain (which may lag the tip); sends are mined before they return.
/// Each send is idempotent the way [`Submitter`]'s is: what the vault holds or has paid is read
/// first and not sent again.
#[async_trait]
pub trait VaultWriter: Send + Sync + std::fmt::Debug {
    /// The fee rule sends are priced under (its ceiling is reported as a gauge).
    fn fee_policy(&self) -> &FeePolicy;
    /// The pending block's fee per gas (wei) when last read; 0 before any read.
    fn last_fee_per_gas(&self) -> u64;
    /// Whether a send now would be under the fee ceiling.
    async fn fee_decision(&self) -> Result<FeeDecision, SubmitError>;
    /// The node's latest block: turns between submitters are counted in blocks.
    async fn block_number(&self) -> Result<u64, SubmitError>;
    /// How many ranges the vault holds and the last batch they cover.
    async fn progress(&self) -> Result<VaultProgress, SubmitError>;
    /// Range `number` as the vault holds it; `None` if it holds no such range yet.
    async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError>;
    /// Whether every leaf of `tree` is paid.
    async fn all_paid(&self, tree: &EthWithdrawalTree) -> Result<bool, SubmitError>;
    /// Whether leaf `index` of batch `batch` is paid.
    async fn is_paid(&self, batch: u64, index: u32) -> Result<bool, SubmitError>;
    /// Range `range`'s root (batches `first..=last`) and its leaves' payouts
    /// ([`Submitter::submit_and_pay`]); `None` if the vault holds that very range already.
    async fn submit_and_pay(
        &self,
        range: u64,
        batches: (u64, u64),
        tree: &EthWithdrawalTree,
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<Payment>, SubmitError>;
    /// Every unpaid leaf of range `range`, whose tree is `tree` ([`Submitter::pay`]).
    async fn pay(&self, range: u64, tree: &EthWithdrawalTree) -> Result<Payment, SubmitError>;
    /// One more attempt at a leaf the vault could not pay ([`Submitter::retry_proven`]).
    async fn retry_proven(
        &self,
        range: u64,
        leaf: &bridge::withdrawals::EthWithdrawal,
        proof: &[[u8; 32]],
    ) -> Result<Retry, SubmitError>;
}

#[async_trait]
impl VaultWriter for Submitter {
    fn fee_policy(&self) -> &FeePolicy {
        Submitter::fee_policy(self)
    }

    fn last_fee_per_gas(&self) -> u64 {
        Submitter::last_fee_per_gas(self)
    }

    async fn fee_decision(&self) -> Result<FeeDecision, SubmitError> {
        Submitter::fee_decision(self).await
    }

    async fn block_number(&self) -> Result<u64, SubmitError> {
        Submitter::block_number(self).await
    }

    async fn progress(&self) -> Result<VaultProgress, SubmitError> {
        Submitter::progress(self).await
    }

    async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError> {
        Submitter::range(self, number).await
    }

    async fn all_paid(&self, tree: &EthWithdrawalTree) -> Result<bool, SubmitError> {
        Submitter::all_paid(self, tree).await
    }

    async fn is_paid(&self, batch: u64, index: u32) -> Result<bool, SubmitError> {
        Submitter::is_paid(self, batch, index).await
    }

    async fn submit_and_pay(
        &self,
        range: u64,
        batches: (u64, u64),
        tree: &EthWithdrawalTree,
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<Payment>, SubmitError> {
        Submitter::submit_and_pay(self, range, batches, tree, sig).await
    }

    async fn pay(&self, range: u64, tree: &EthWithdrawalTree) -> Result<Payment, SubmitError> {
        Submitter::pay(self, range, tree).await
    }

    async fn retry_proven(
        &self,
        range: u64,
        leaf: &bridge::withdrawals::EthWithdrawal,
        proof: &[[u8; 32]],
    ) -> Result<Retry, SubmitError> {
        Submitter::retry_proven(self, range, leaf, proof).await
    }
}
