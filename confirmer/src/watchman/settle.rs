//! The settlement loop's Ethereum step: for every hard-final batch that owes Ethereum
//! withdrawals, get the group's signature over its root (a ROAST session among the watchmen,
//! each of whom asks its own [`ReplayPolicy`](super::ReplayPolicy)), submit it to the vault,
//! and pay every leaf. Idempotent: the vault's roots and bitmap are read before anything is
//! signed or sent, so a restart, or another watchman having done it, costs nothing twice.
//!
//! A leaf the vault cannot pay (it reports `WithdrawalFailed` and pays the rest) never holds
//! back its batch or later ones: it is recorded in [`StuckWithdrawals`] and retried with
//! backoff after the batches of each turn.
//!
//! Fees: above the configured ceiling (`[ethereum.fees] max_fee_per_gas_gwei`) nothing is
//! signed or sent; the batch and those after it wait, `watchman_eth_fee_deferred_total` counts
//! each deferred turn, and the next turn asks again, so they are paid when fees fall.

use bridge::eth_settlement::{EvmSchnorrSignature, VaultDomain, withdrawals_message};
use std::time::Instant;

use chains::ethereum::{FeeDecision, Retry, SubmitError, Submitter, gwei};
use tss::{KeyPath, SessionError, SigningContext, SigningRequest, TssNode};

use super::book::SettlementBook;
use super::policy::SETTLE_ETH_WITHDRAWALS;
use super::stuck::{RetryPolicy, StuckWithdrawals};

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("signing is stopped: {0}")]
    Halted(String),
    #[error("batch {batch}: no signature: {source}")]
    Signing { batch: u64, source: SessionError },
    #[error("batch {batch}: the group's signature is not a BIP-340 signature the vault takes")]
    BadSignature { batch: u64 },
    #[error("batch {batch}: the vault: {source}")]
    Vault { batch: u64, source: SubmitError },
    #[error(
        "batch {batch}: {call} deferred: fees are {} gwei per gas, above the ceiling of {} gwei; retried when they fall",
        gwei(*fee_per_gas),
        gwei(*ceiling)
    )]
    FeeDeferred { batch: u64, call: &'static str, fee_per_gas: u128, ceiling: u128 },
}

impl SettleError {
    /// A vault call's error, a fee above the ceiling named as a deferral of `call`.
    fn vault(batch: u64, call: &'static str, source: SubmitError) -> Self {
        match source {
            SubmitError::FeeAboveCeiling { fee_per_gas, ceiling } => {
                SettleError::FeeDeferred { batch, call, fee_per_gas, ceiling }
            }
            source => SettleError::Vault { batch, source },
        }
    }
}

/// What one batch's settlement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledBatch {
    pub batch: u64,
    /// Whether this watchman signed and submitted the root (false: the vault had it).
    pub submitted_root: bool,
    /// `withdrawMany` transactions sent.
    pub payout_transactions: usize,
    /// Leaves the vault could not pay (recorded as stuck); they stay payable by anyone.
    pub failed: Vec<u32>,
}

#[derive(Debug)]
pub struct EthSettlement {
    book: SettlementBook,
    domain: VaultDomain,
    submitter: Submitter,
    /// Batches below this are settled.
    next: u64,
    stuck: StuckWithdrawals,
    retry: RetryPolicy,
}

impl EthSettlement {
    pub fn new(book: SettlementBook, domain: VaultDomain, submitter: Submitter) -> Self {
        EthSettlement {
            book,
            domain,
            submitter,
            next: 1,
            stuck: StuckWithdrawals::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Retries stuck leaves on this schedule instead of the default.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The record of stuck leaves (share it with `GET /withdrawals/stuck`).
    pub fn stuck(&self) -> StuckWithdrawals {
        self.stuck.clone()
    }

    /// The request the watchmen sign for batch `batch`'s root.
    pub fn request(domain: &VaultDomain, batch: u64, root: [u8; 32]) -> SigningRequest {
        SigningRequest {
            message: withdrawals_message(domain, batch, root).to_vec(),
            key_path: KeyPath::Vault,
            context: SigningContext {
                chain: "ethereum".into(),
                batch: Some(batch),
                purpose: SETTLE_ETH_WITHDRAWALS.into(),
                detail: root.to_vec(),
            },
        }
    }

    /// Settles every hard-final batch not settled yet, in order, then retries the stuck leaves
    /// that are due. Stops at the first failure of a batch (the node, the signing session, a
    /// cap with no room): it is retried at the next call. A leaf the vault could not pay is not
    /// a failure of its batch.
    pub async fn settle(&mut self, tss: &TssNode) -> Result<Vec<SettledBatch>, SettleError> {
        let settled = self.settle_batches(tss).await;
        if let Err(SettleError::FeeDeferred { batch, call, fee_per_gas, ceiling }) = &settled {
            metrics::counter!("watchman_eth_fee_deferred_total", "call" => *call).increment(1);
            tracing::warn!(
                batch,
                call,
                fee_gwei = gwei(*fee_per_gas),
                ceiling_gwei = gwei(*ceiling),
                "Ethereum fees are above the ceiling: deferred, retried next turn"
            );
        }
        self.retry_stuck().await;
        let fee = self.submitter.last_fee_per_gas();
        if fee > 0 {
            metrics::gauge!("watchman_eth_fee_per_gas_gwei").set(gwei(u128::from(fee)));
        }
        metrics::gauge!("watchman_eth_fee_ceiling_gwei").set(gwei(self.submitter.fee_policy().max_fee_per_gas));
        settled
    }

    async fn settle_batches(&mut self, tss: &TssNode) -> Result<Vec<SettledBatch>, SettleError> {
        let mut done = Vec::new();
        for (batch, settlement) in self.book.owing_from(self.next) {
            if let Some(why) = self.book.halted() {
                return Err(SettleError::Halted(why));
            }
            let tree = &settlement.eth;
            if tree.withdrawals().is_empty() {
                self.next = batch + 1;
                continue;
            }
            let root = tree.root();
            let vault = |source| SettleError::vault(batch, "withdrawMany", source);
            let submitted_root = if self.submitter.root_of(batch).await.map_err(vault)? == root {
                false
            } else {
                let vault = |source| SettleError::vault(batch, "submitWithdrawals", source);
                // Above the ceiling, not even the signing session runs: its signature could
                // not be sent, and every turn would start another among the watchmen.
                if let FeeDecision::Defer { fee_per_gas, ceiling } =
                    self.submitter.fee_decision().await.map_err(vault)?
                {
                    return Err(SettleError::FeeDeferred { batch, call: "submitWithdrawals", fee_per_gas, ceiling });
                }
                let started = std::time::Instant::now();
                let outcome = tss
                    .sign(vec![Self::request(&self.domain, batch, root)])
                    .await
                    .map_err(|source| SettleError::Signing { batch, source })?;
                metrics::histogram!("watchman_eth_signing_seconds").record(started.elapsed().as_secs_f64());
                let signature = outcome
                    .signatures
                    .first()
                    .and_then(|s| EvmSchnorrSignature::from_bip340(&s.signature))
                    .ok_or(SettleError::BadSignature { batch })?;
                let started = std::time::Instant::now();
                self.submitter.submit_root(batch, root, &signature).await.map_err(vault)?;
                metrics::histogram!("watchman_eth_submission_seconds", "call" => "submitWithdrawals")
                    .record(started.elapsed().as_secs_f64());
                true
            };
            let started = std::time::Instant::now();
            let payment = self.submitter.pay(tree).await.map_err(vault)?;
            metrics::histogram!("watchman_eth_submission_seconds", "call" => "withdrawMany")
                .record(started.elapsed().as_secs_f64());
            if !payment.deferred.is_empty() {
                self.record_failed(tree, &payment.failed);
                // Over a cap: what fit is paid; the rest (and later batches, in order) wait
                // for the cap to refill and are retried at the next turn.
                metrics::counter!("watchman_eth_payouts_deferred_total").increment(payment.deferred.len() as u64);
                break;
            }
            self.record_failed(tree, &payment.failed);
            metrics::counter!("watchman_eth_batches_settled_total").increment(1);
            tracing::info!(batch, submitted_root, payouts = payment.receipts.len(), failed = ?payment.failed, "Ethereum withdrawals settled");
            done.push(SettledBatch {
                batch,
                submitted_root,
                payout_transactions: payment.receipts.len(),
                failed: payment.failed,
            });
            self.next = batch + 1;
        }
        Ok(done)
    }

    fn record_failed(&self, tree: &bridge::withdrawals::EthWithdrawalTree, failed: &[u32]) {
        if failed.is_empty() {
            return;
        }
        metrics::counter!("watchman_eth_withdrawals_failed_total").increment(failed.len() as u64);
        let now = Instant::now();
        for index in failed {
            if !self.stuck.record(tree, *index, &self.retry, now) {
                tracing::error!(
                    index,
                    "the stuck-withdrawals record is full: this leaf is not tracked (it stays claimable on chain)"
                );
            }
        }
        tracing::warn!(
            batch = tree.withdrawals().first().map(|w| w.batch),
            ?failed,
            "the vault could not pay these leaves: recorded as stuck, retried with backoff (docs/OPERATIONS.md)"
        );
    }

    /// Tries each stuck leaf whose time has come once. A node error ends this round (the leaf
    /// is tried again at the next turn); nothing here holds back a batch.
    async fn retry_stuck(&self) {
        // A halted watchman pays nothing, not even what it approved before.
        if self.book.halted().is_some() {
            return;
        }
        let now = Instant::now();
        for (key, may_send) in self.stuck.due(now) {
            let (batch, index) = key;
            let outcome = if may_send {
                let Some(settlement) = self.book.settlement(batch) else { continue };
                self.submitter.retry(&settlement.eth, index).await
            } else {
                match self.submitter.is_paid(batch, index).await {
                    Ok(true) => Ok(Retry::AlreadyPaid),
                    Ok(false) => Ok(Retry::StillRefused),
                    Err(error) => Err(error),
                }
            };
            let label = match outcome {
                Ok(Retry::Paid(_)) => {
                    self.stuck.resolved(key);
                    tracing::info!(batch, index, "a stuck withdrawal is paid");
                    "paid"
                }
                Ok(Retry::AlreadyPaid) => {
                    self.stuck.resolved(key);
                    tracing::info!(batch, index, "a stuck withdrawal was claimed");
                    "claimed"
                }
                Ok(Retry::StillRefused) => {
                    self.stuck.still_stuck(key, &self.retry, now);
                    "refused"
                }
                Err(error) => {
                    tracing::warn!(batch, index, %error, "retrying a stuck withdrawal failed; next turn");
                    metrics::counter!("watchman_eth_stuck_retries_total", "outcome" => "error").increment(1);
                    return;
                }
            };
            metrics::counter!("watchman_eth_stuck_retries_total", "outcome" => label).increment(1);
        }
    }
}
