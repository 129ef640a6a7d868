//! Ethereum as the watchmen's nodes see it: what the vault holds (its ranges, and which leaves
//! it paid, with when, so that a node that lags sees the vault as it was), the transactions
//! waiting to be mined, and [`EthNode`], one watchman's node behind the real [`VaultWriter`]
//! trait its [`EthSettlement`](confirmer::watchman::EthSettlement) settles through. Reads answer
//! as of the node's lagging head; a send waits in the mempool until the next block mines it on
//! the vault's code ([`crate::evm`], in the world: eth_settlement.rs), then returns its receipt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use alloy::consensus::{Eip658Value, Receipt, ReceiptEnvelope};
use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::TransactionReceipt;
use async_trait::async_trait;
use bridge::eth_settlement::EvmSchnorrSignature;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use chains::ethereum::{
    FeeDecision, FeePolicy, Fees, OnchainRange, Payment, RangeOnVault, Retry, SubmitError, VaultProgress, VaultWriter,
    range_on_vault,
};
use contracts::Vault::Payout;

use crate::evm::{EthVault, Settled};
use crate::l1::{L1, L1_BLOCK_MS};

/// Leaves one payout transaction carries: the binary's default, well inside a transaction's gas
/// cap (evm.rs) at about 100,000 gas a leaf.
const LEAVES_PER_TX: usize = 64;

/// The Ethereum vault's ranges (first batch, last batch, withdrawals root), in order, as the
/// EVM's vault took them, with when: a node that lags sees the vault as it was. Grows by at most
/// one range a block, and a run is bounded (2.5 simulated hours, 750 blocks), so it is kept
/// whole.
#[derive(Debug, Default, Clone)]
pub(crate) struct SimVault {
    ranges: Vec<(u64, u64, [u8; 32])>,
    /// When each range was taken (simulated ms), in order.
    taken_at: Vec<u64>,
}

impl SimVault {
    pub(crate) fn settled_through(&self) -> u64 {
        self.ranges.last().map_or(0, |(_, last, _)| *last)
    }

    pub(crate) fn take(&mut self, first: u64, last: u64, root: [u8; 32], at_ms: u64) {
        self.ranges.push((first, last, root));
        self.taken_at.push(at_ms);
    }

    /// The vault's progress as a node that sees the chain as of `seen_at` (simulated ms).
    pub(crate) fn progress_seen(&self, seen_at: u64) -> VaultProgress {
        let count = self.taken_at.partition_point(|at| *at <= seen_at);
        let settled_through = count.checked_sub(1).and_then(|i| self.ranges.get(i)).map_or(0, |(_, last, _)| *last);
        VaultProgress { range_count: count as u64, settled_through }
    }

    /// Range `number` as a node that sees the chain as of `seen_at` reads it.
    fn range_seen(&self, number: u64, seen_at: u64) -> Option<OnchainRange> {
        let index = usize::try_from(number).ok()?;
        let (first, last, root) = *self.ranges.get(index)?;
        (*self.taken_at.get(index)? <= seen_at).then_some(OnchainRange { number, first, last, root })
    }
}

/// When a node that lags `lag_blocks` behind the tip at `now_ms` last saw the chain.
pub(crate) fn seen_at(now_ms: u64, lag_blocks: u64) -> u64 {
    now_ms.saturating_sub(lag_blocks.saturating_mul(L1_BLOCK_MS))
}

/// A leaf the vault paid: when (simulated ms) and how much ether (the simulated vault pays
/// ether only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PaidLeaf {
    pub(crate) at_ms: u64,
    pub(crate) wei: u128,
}

/// What a mined send did, kept for the simulator's checks.
#[derive(Debug, Clone)]
pub(crate) enum VaultEvent {
    /// Watchman `by`'s send put range `first..=last` on the vault.
    Took { by: usize, first: u64, last: u64 },
    /// A leaf paid, to `recipient`.
    Paid { batch: u64, index: u32, recipient: Address, wei: u128 },
    /// Watchman `by`'s range `first..=last` was refused; `next` if it was the vault's next
    /// range when mined (then only a bad signature or root, or a pause, explains the refusal).
    Refused { by: usize, first: u64, last: u64, next: bool, why: String },
    /// Watchman `by`'s guardian pause was mined.
    Paused { by: usize },
    /// Watchman `by`'s send paid leaves, or put a range on the vault, though the vault was
    /// paused when it was mined.
    PaidWhilePaused { by: usize },
}

/// A vault call a watchman sent.
pub(crate) enum Call {
    /// `submitAndWithdraw`: range `range`'s root and some of its leaves.
    Submit { range: u64, first: u64, last: u64, root: [u8; 32], sig: EvmSchnorrSignature, payouts: Vec<Payout> },
    /// `withdrawMany`: leaves of range `range`.
    WithdrawMany { range: u64, payouts: Vec<Payout> },
    /// The guardian's `pause()`.
    Pause,
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Submit { .. } => "submitAndWithdraw",
            Call::WithdrawMany { .. } => "withdrawMany",
            Call::Pause => "pause",
        }
    }
}

/// A transaction waiting for the next block: what it calls, who sent it, and where its
/// outcome goes (the revert's reason, if it reverts).
pub(crate) struct PendingSend {
    pub(crate) by: usize,
    pub(crate) call: Call,
    pub(crate) mined: tokio::sync::oneshot::Sender<Result<Settled, String>>,
}

/// Ethereum's state as the nodes read it, shared by the simulator and every watchman's node.
#[derive(Default)]
pub(crate) struct EthChain {
    pub(crate) vault: SimVault,
    /// Every leaf the vault paid, with when and how much. Bounded by the withdrawals a run's
    /// users make (a few hundred), as the vault's own bitmap is.
    pub(crate) paid_at: BTreeMap<(u64, u32), PaidLeaf>,
    /// Sends waiting for the next block, in the order they came. Bounded: a turn awaits each
    /// send's receipt before the next, so this holds one send per turn in flight (and one per
    /// turn a crash dropped since the last block); every block takes them all.
    pub(crate) mempool: Vec<PendingSend>,
    /// What mined sends did since the simulator last took them.
    pub(crate) events: Vec<VaultEvent>,
    /// When the guardian's pause was mined (simulated ms), if the vault is paused.
    pub(crate) paused_at: Option<u64>,
    /// Transactions mined, for their hashes.
    transactions: u64,
}

impl EthChain {
    /// A mined send's receipt as the node would give it.
    fn receipt(&mut self, settled: &Settled) -> TransactionReceipt {
        self.transactions += 1;
        let logs: Vec<alloy::rpc::types::Log> = settled
            .logs
            .iter()
            .map(|inner| alloy::rpc::types::Log { inner: inner.clone(), ..Default::default() })
            .collect();
        let receipt = Receipt { status: Eip658Value::Eip658(true), cumulative_gas_used: settled.gas_used, logs };
        TransactionReceipt {
            inner: ReceiptEnvelope::Eip1559(receipt.with_bloom()),
            transaction_hash: B256::from(U256::from(self.transactions)),
            transaction_index: Some(0),
            block_hash: None,
            block_number: None,
            gas_used: settled.gas_used,
            effective_gas_price: 0,
            blob_gas_used: None,
            blob_gas_price: None,
            from: Address::ZERO,
            to: Some(EthVault::address()),
            contract_address: None,
        }
    }

    /// Mines `send` on `evm` at `at_ms`: the vault's record and the events follow what it did,
    /// and its sender hears the outcome.
    pub(crate) fn mine(&mut self, evm: &mut EthVault, send: PendingSend, at_ms: u64) {
        let PendingSend { by, call, mined } = send;
        let paused_before = self.paused_at.is_some();
        let pays = !matches!(call, Call::Pause);
        let outcome = match call {
            Call::Submit { range, first, last, root, sig, payouts } => {
                let next = first == self.vault.settled_through() + 1 && range == self.vault.ranges.len() as u64;
                let outcome = evm.submit_and_pay((first, last, root), &sig, payouts);
                match &outcome {
                    Ok(_) => {
                        self.vault.take(first, last, root, at_ms);
                        self.events.push(VaultEvent::Took { by, first, last });
                    }
                    Err(why) => self.events.push(VaultEvent::Refused { by, first, last, next, why: why.clone() }),
                }
                outcome
            }
            Call::WithdrawMany { range, payouts } => evm.withdraw_many(range, payouts),
            Call::Pause => evm.pause().map(|()| {
                self.paused_at.get_or_insert(at_ms);
                self.events.push(VaultEvent::Paused { by });
                Settled::default()
            }),
        };
        if pays && paused_before && outcome.is_ok() {
            self.events.push(VaultEvent::PaidWhilePaused { by });
        }
        if let Ok(settled) = &outcome {
            for (batch, index, recipient, wei) in &settled.paid {
                self.paid_at.insert((*batch, *index), PaidLeaf { at_ms, wei: *wei });
                self.events.push(VaultEvent::Paid { batch: *batch, index: *index, recipient: *recipient, wei: *wei });
            }
        }
        // A sender gone (its watchman restarted) needs no answer.
        let _ = mined.send(outcome);
    }
}

/// One watchman's Ethereum node: the shared chain, as of `lag_blocks` behind the tip.
#[derive(Clone)]
pub(crate) struct EthNode {
    pub(crate) chain: Arc<Mutex<EthChain>>,
    pub(crate) now_ms: Arc<AtomicU64>,
    pub(crate) lag_blocks: Arc<AtomicU64>,
    /// Whose node: named in the events of its sends.
    pub(crate) watchman: usize,
    pub(crate) fees: FeePolicy,
}

impl std::fmt::Debug for EthNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthNode").field("watchman", &self.watchman).finish_non_exhaustive()
    }
}

impl EthNode {
    fn chain(&self) -> MutexGuard<'_, EthChain> {
        // One thread: a poisoned lock means a panic already ended the run.
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn seen_at(&self) -> u64 {
        seen_at(self.now(), self.lag_blocks.load(Ordering::SeqCst))
    }

    /// The positions of `tree`'s leaves this node does not see paid.
    fn unpaid(&self, tree: &EthWithdrawalTree) -> Vec<u32> {
        let seen_at = self.seen_at();
        let chain = self.chain();
        (0u32..)
            .zip(tree.withdrawals())
            .filter(|(_, w)| chain.paid_at.get(&(w.batch, w.index)).is_none_or(|paid| paid.at_ms > seen_at))
            .map(|(position, _)| position)
            .collect()
    }

    /// Sends `call` and waits for the block that mines it; its receipt and unpaid leaves go to
    /// `payment`. Returns what it paid.
    async fn send(&self, call: Call, payment: &mut Payment) -> Result<Settled, SubmitError> {
        let name = call.name();
        let (mined, outcome) = tokio::sync::oneshot::channel();
        self.chain().mempool.push(PendingSend { by: self.watchman, call, mined });
        let settled = match outcome.await {
            Ok(Ok(settled)) => settled,
            Ok(Err(why)) => return Err(SubmitError::RevertedOnChain(format!("{name}: {why}"))),
            Err(_) => return Err(SubmitError::Rpc(format!("the node dropped the {name} transaction"))),
        };
        payment.failed.extend(settled.failed.iter().copied());
        let receipt = self.chain().receipt(&settled);
        payment.receipts.push(receipt);
        Ok(settled)
    }

    /// `withdrawMany` of `positions` of range `range`'s tree, [`LEAVES_PER_TX`] a transaction.
    async fn pay_positions(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        positions: &[u32],
        payment: &mut Payment,
    ) -> Result<(), SubmitError> {
        for chunk in positions.chunks(LEAVES_PER_TX) {
            let payouts = contracts::payouts(tree, chunk.iter().copied());
            self.send(Call::WithdrawMany { range, payouts }, payment).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl VaultWriter for EthNode {
    fn fee_policy(&self) -> &FeePolicy {
        &self.fees
    }

    /// The simulated chain's base fee is zero (evm.rs).
    fn last_fee_per_gas(&self) -> u64 {
        0
    }

    async fn fee_decision(&self) -> Result<FeeDecision, SubmitError> {
        Ok(FeeDecision::Send(Fees { max_fee_per_gas: 0, max_priority_fee_per_gas: 0, fee_per_gas: 0 }))
    }

    async fn block_number(&self) -> Result<u64, SubmitError> {
        Ok(L1::tip(self.now()).saturating_sub(self.lag_blocks.load(Ordering::SeqCst)))
    }

    async fn progress(&self) -> Result<VaultProgress, SubmitError> {
        Ok(self.chain().vault.progress_seen(self.seen_at()))
    }

    async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError> {
        Ok(self.chain().vault.range_seen(number, self.seen_at()))
    }

    async fn all_paid(&self, tree: &EthWithdrawalTree) -> Result<bool, SubmitError> {
        Ok(self.unpaid(tree).is_empty())
    }

    async fn is_paid(&self, batch: u64, index: u32) -> Result<bool, SubmitError> {
        let seen_at = self.seen_at();
        Ok(self.chain().paid_at.get(&(batch, index)).is_some_and(|paid| paid.at_ms <= seen_at))
    }

    /// As the binary's: the vault read through this node first (a lagging one may send what
    /// the chain refuses), then the root with the first transaction's worth of leaves, then the
    /// rest in `withdrawMany`.
    async fn submit_and_pay(
        &self,
        range: u64,
        (first, last): (u64, u64),
        tree: &EthWithdrawalTree,
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<Payment>, SubmitError> {
        let root = tree.root();
        let progress = self.progress().await?;
        let last_held = match progress.range_count.checked_sub(1) {
            Some(number) if progress.settled_through >= last => self.range(number).await?,
            _ => None,
        };
        if range_on_vault(progress, last_held, Some(range), (first, last), root)? == RangeOnVault::Held {
            return Ok(None);
        }
        let unpaid = self.unpaid(tree);
        let (now, later) = unpaid.split_at(LEAVES_PER_TX.min(unpaid.len()));
        let payouts = contracts::payouts(tree, now.iter().copied());
        let mut payment = Payment::default();
        self.send(Call::Submit { range, first, last, root, sig: *sig, payouts }, &mut payment).await?;
        self.pay_positions(range, tree, later, &mut payment).await?;
        Ok(Some(payment))
    }

    async fn pay(&self, range: u64, tree: &EthWithdrawalTree) -> Result<Payment, SubmitError> {
        let unpaid = self.unpaid(tree);
        let mut payment = Payment::default();
        self.pay_positions(range, tree, &unpaid, &mut payment).await?;
        Ok(payment)
    }

    async fn retry_proven(&self, range: u64, leaf: &EthWithdrawal, proof: &[[u8; 32]]) -> Result<Retry, SubmitError> {
        if self.is_paid(leaf.batch, leaf.index).await? {
            return Ok(Retry::AlreadyPaid);
        }
        let payout = Payout {
            batch: leaf.batch,
            index: leaf.index,
            token: contracts::to_alloy(leaf.token),
            recipient: contracts::to_alloy(leaf.recipient),
            amount: U256::from(leaf.amount.0),
            proof: proof.iter().map(|node| contracts::b256(*node)).collect(),
        };
        let mut payment = Payment::default();
        let settled = self.send(Call::WithdrawMany { range, payouts: vec![payout] }, &mut payment).await?;
        match payment.receipts.pop() {
            Some(receipt) if !settled.paid.is_empty() => Ok(Retry::Paid(Box::new(receipt))),
            _ if !settled.failed.is_empty() => Ok(Retry::StillRefused),
            // Paid meanwhile: the vault skipped it.
            _ => Ok(Retry::AlreadyPaid),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure should panic
mod tests {
    use super::*;

    fn node(chain: &Arc<Mutex<EthChain>>, now_ms: u64, lag_blocks: u64) -> EthNode {
        EthNode {
            chain: chain.clone(),
            now_ms: Arc::new(AtomicU64::new(now_ms)),
            lag_blocks: Arc::new(AtomicU64::new(lag_blocks)),
            watchman: 0,
            fees: FeePolicy::default(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lagging_node_sees_the_vault_as_it_was_at_its_head() {
        let chain = Arc::new(Mutex::new(EthChain::default()));
        {
            let mut state = chain.lock().unwrap();
            state.vault.take(1, 4, [1; 32], 10 * L1_BLOCK_MS);
            state.vault.take(5, 9, [2; 32], 20 * L1_BLOCK_MS);
            state.paid_at.insert((3, 0), PaidLeaf { at_ms: 10 * L1_BLOCK_MS, wei: 1 });
            state.paid_at.insert((7, 0), PaidLeaf { at_ms: 20 * L1_BLOCK_MS, wei: 1 });
        }
        let synced = node(&chain, 25 * L1_BLOCK_MS, 0);
        let behind = node(&chain, 25 * L1_BLOCK_MS, 10);
        assert_eq!(synced.progress().await.unwrap(), VaultProgress { range_count: 2, settled_through: 9 });
        assert_eq!(behind.progress().await.unwrap(), VaultProgress { range_count: 1, settled_through: 4 });
        assert_eq!(behind.range(1).await.unwrap(), None, "range 1 is above its head");
        assert_eq!(synced.range(1).await.unwrap().map(|r| (r.first, r.last)), Some((5, 9)));
        assert!(behind.is_paid(3, 0).await.unwrap());
        assert!(!behind.is_paid(7, 0).await.unwrap(), "paid above its head: not seen yet");
        assert!(synced.is_paid(7, 0).await.unwrap());
        assert_eq!((synced.block_number().await.unwrap(), behind.block_number().await.unwrap()), (25, 15));
    }
}
