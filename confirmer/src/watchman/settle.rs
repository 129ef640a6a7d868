//! The settlement loop's Ethereum step, by ranges of batches: the watchmen sign one
//! withdrawals root for every hard-final batch since the vault's last range (a ROAST session
//! among them, each asking its own [`ReplayPolicy`](super::ReplayPolicy)), submit it, and pay
//! every leaf. Which range, when, and whose turn: [`range_plan`](super::range_plan), a pure
//! decision this shell acts on. Idempotent: the vault's ranges and bitmap are read before
//! anything is signed or sent, so a restart, or another watchman having done it, costs nothing
//! twice.
//!
//! A leaf the vault cannot pay (it reports `WithdrawalFailed` and pays the rest) never holds
//! back its range or later ones: it is recorded in [`StuckWithdrawals`] and retried with
//! backoff after the ranges of each turn.
//!
//! Fees: above the configured ceiling (`[ethereum.fees] max_fee_per_gas_gwei`) nothing is
//! signed or sent; the range waits, `watchman_eth_fee_deferred_total` counts each deferred
//! turn, and the next turn asks again, so it is paid when fees fall.

use bridge::eth_settlement::{EvmSchnorrSignature, VaultDomain, withdrawals_message};
use bridge::withdrawals::EthWithdrawalTree;
use std::time::Instant;

use chains::ethereum::{FeeDecision, LeafKey, OnchainRange, Retry, SubmitError, Submitter, gwei};
use tss::{KeyPath, SessionError, SigningContext, SigningRequest, TssNode};

use super::book::SettlementBook;
use super::policy::{RangeDetail, SETTLE_ETH_WITHDRAWALS};
use super::range_plan::{RangeDecision, RangeLimits, Takeovers, Turns, next_range};
use super::stuck::{RetryPolicy, StuckWithdrawals};

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("signing is stopped: {0}")]
    Halted(String),
    #[error("batches {first}..={last}: no signature: {source}")]
    Signing { first: u64, last: u64, source: SessionError },
    #[error("batches {first}..={last}: the group's signature is not a BIP-340 signature the vault takes")]
    BadSignature { first: u64, last: u64 },
    #[error("range {range}: the vault: {source}")]
    Vault { range: u64, source: SubmitError },
    #[error(
        "range {range} holds root {} for batches {first}..={last}, and this watchman's replay makes {}: refusing to pay from it (docs/OPERATIONS.md)",
        hex::encode(onchain),
        hex::encode(replayed)
    )]
    ForeignRoot { range: u64, first: u64, last: u64, onchain: [u8; 32], replayed: [u8; 32] },
    #[error(
        "range {range}: {call} deferred: fees are {} gwei per gas, above the ceiling of {} gwei; retried when they fall",
        gwei(*fee_per_gas),
        gwei(*ceiling)
    )]
    FeeDeferred { range: u64, call: &'static str, fee_per_gas: u128, ceiling: u128 },
}

impl SettleError {
    /// A vault call's error, a fee above the ceiling named as a deferral of `call`.
    fn vault(range: u64, call: &'static str, source: SubmitError) -> Self {
        match source {
            SubmitError::FeeAboveCeiling { fee_per_gas, ceiling } => {
                SettleError::FeeDeferred { range, call, fee_per_gas, ceiling }
            }
            source => SettleError::Vault { range, source },
        }
    }
}

/// What settling one range did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledRange {
    /// The vault's number of the range, and its batches.
    pub range: u64,
    pub first: u64,
    pub last: u64,
    /// Whether this watchman signed and submitted the root (false: the vault had it).
    pub submitted_root: bool,
    /// `withdrawMany` transactions sent.
    pub payout_transactions: usize,
    /// Leaves the vault could not pay (recorded as stuck); they stay payable by anyone.
    pub failed: Vec<LeafKey>,
}

#[derive(Debug)]
pub struct EthSettlement {
    book: SettlementBook,
    domain: VaultDomain,
    submitter: Submitter,
    limits: RangeLimits,
    turns: Turns,
    /// Ranges below this are paid (or their unpaid leaves recorded as stuck).
    next_to_pay: u64,
    /// The first owing batch after the vault's ranges, and when this watchman first saw it
    /// owing: the window runs from there unless the batch's own time is known.
    pending_since: Option<(u64, Instant)>,
    /// A batch's timestamp (Unix ms, the coordinator's clock, from its signed header): the
    /// window of its withdrawals runs from there, so a lone withdrawal is paid about one window
    /// after it was batched, not one window after this watchman replayed it.
    batch_time: Option<(u64, u64)>,
    /// The work this watchman is waiting on its turn for (a range to propose or to pay, by
    /// number, and which of the two), and the Ethereum block it came due at.
    due_since: Option<((u64, bool), u64)>,
    /// The takeovers counted, so a retried one is not counted again.
    takeovers: Takeovers,
    stuck: StuckWithdrawals,
    retry: RetryPolicy,
}

impl EthSettlement {
    pub fn new(book: SettlementBook, domain: VaultDomain, submitter: Submitter) -> Self {
        EthSettlement {
            book,
            domain,
            submitter,
            limits: RangeLimits::default(),
            turns: Turns::default(),
            next_to_pay: 0,
            pending_since: None,
            batch_time: None,
            due_since: None,
            takeovers: Takeovers::default(),
            stuck: StuckWithdrawals::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Retries stuck leaves on this schedule instead of the default.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Bounds ranges by these limits instead of the default (1,024 leaves, 30 s).
    pub fn with_limits(mut self, limits: RangeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Takes turns with the other submitting watchmen.
    pub fn with_turns(mut self, turns: Turns) -> Self {
        self.turns = turns;
        self
    }

    /// The batch whose withdrawals wait for the next range (the first owing batch after the
    /// vault's ranges as last read): its time is worth looking up for the window.
    pub fn waiting_batch(&self) -> Option<u64> {
        let vault = self.book.vault()?;
        self.book.eth_owing_after(vault.settled_through).first().map(|(batch, _)| *batch)
    }

    /// Notes batch `batch`'s timestamp (Unix ms, from its header).
    pub fn note_batch_time(&mut self, batch: u64, unix_ms: u64) {
        self.batch_time = Some((batch, unix_ms));
    }

    /// The record of stuck leaves (share it with `GET /withdrawals/stuck`).
    pub fn stuck(&self) -> StuckWithdrawals {
        self.stuck.clone()
    }

    /// The request the watchmen sign for the root of batches `first..=last`.
    pub fn request(domain: &VaultDomain, first: u64, last: u64, root: [u8; 32]) -> SigningRequest {
        SigningRequest {
            message: withdrawals_message(domain, first, last, root).to_vec(),
            key_path: KeyPath::Vault,
            context: SigningContext {
                chain: "ethereum".into(),
                batch: Some(last),
                purpose: SETTLE_ETH_WITHDRAWALS.into(),
                detail: RangeDetail { first, last }.to_detail(),
            },
        }
    }

    /// Pays the ranges the vault holds that this watchman has not paid yet, then proposes the
    /// next range if it is due and this watchman's turn, then retries the stuck leaves that are
    /// due. Stops at the first failure (the node, the signing session, a cap with no room): it is
    /// retried at the next call. A leaf the vault could not pay is not a failure of its range.
    pub async fn settle(&mut self, tss: &TssNode) -> Result<Vec<SettledRange>, SettleError> {
        let settled = self.settle_ranges(tss).await;
        if let Err(SettleError::FeeDeferred { range, call, fee_per_gas, ceiling }) = &settled {
            metrics::counter!("watchman_eth_fee_deferred_total", "call" => *call).increment(1);
            tracing::warn!(
                range,
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

    /// Whether work `key` is this watchman's turn now, counting blocks from when it first saw it due.
    async fn my_turn(&mut self, key: (u64, bool)) -> Result<bool, SubmitError> {
        if self.turns.submitters <= 1 {
            return Ok(true);
        }
        let head = self.submitter.block_number().await?;
        let since = match self.due_since {
            Some((known, since)) if known == key => since,
            _ => {
                self.due_since = Some((key, head));
                head
            }
        };
        let waited = head.saturating_sub(since);
        let mine = self.turns.mine(key.0, waited);
        if self.takeovers.is_new(&self.turns, key, waited) {
            metrics::counter!("watchman_eth_turn_takeovers_total").increment(1);
            tracing::warn!(range = key.0, waited_blocks = waited, "the turn-holder did not act in time: taking over");
        }
        Ok(mine)
    }

    async fn settle_ranges(&mut self, tss: &TssNode) -> Result<Vec<SettledRange>, SettleError> {
        let mut done = Vec::new();
        if let Some(why) = self.book.halted() {
            return Err(SettleError::Halted(why));
        }
        let progress = self.submitter.progress().await.map_err(|e| SettleError::vault(self.next_to_pay, "read", e))?;
        self.book.note_vault(progress);
        metrics::gauge!("watchman_eth_vault_settled_through").set(progress.settled_through as f64);

        // The ranges the vault holds, in order: pay what is unpaid.
        while self.next_to_pay < progress.range_count {
            let number = self.next_to_pay;
            let vault = |source| SettleError::vault(number, "withdrawMany", source);
            let Some(range) = self.submitter.range(number).await.map_err(vault)? else { break };
            let Some(tree) = self.book.range_tree(range.first, range.last) else {
                // Not hard-final here yet: paid once this watchman has replayed it.
                break;
            };
            if tree.root() != range.root {
                tracing::error!(range = number, "the vault holds a range root this watchman's replay does not make");
                return Err(SettleError::ForeignRoot {
                    range: number,
                    first: range.first,
                    last: range.last,
                    onchain: range.root,
                    replayed: tree.root(),
                });
            }
            if !self.my_turn((number, false)).await.map_err(vault)? {
                // Another submitter's range: nothing to do here once it has paid every leaf
                // (then this watchman moves on to the next range without sending anything).
                if self.submitter.all_paid(&tree).await.map_err(vault)? {
                    self.next_to_pay = number + 1;
                    continue;
                }
                break;
            }
            let paid = self.pay(range, &tree, false).await?;
            let full = paid.is_some();
            if let Some(settled) = paid {
                done.push(settled);
            }
            if !full {
                break;
            }
        }
        if self.next_to_pay < progress.range_count {
            return Ok(done);
        }

        // The next range, when due and this watchman's turn.
        let owing = self.book.eth_owing_after(progress.settled_through);
        let now = Instant::now();
        let waited = match (owing.first(), self.pending_since) {
            (Some((batch, _)), Some((known, since))) if known == *batch => now.saturating_duration_since(since),
            (Some((batch, _)), _) => {
                self.pending_since = Some((*batch, now));
                std::time::Duration::ZERO
            }
            (None, _) => {
                self.pending_since = None;
                std::time::Duration::ZERO
            }
        };
        // The batch's own time when known (a clock of the coordinator's: a skew only moves when
        // the root is proposed, never what is signed), else when this watchman first saw it.
        let waited = match (owing.first(), self.batch_time) {
            (Some((batch, _)), Some((known, unix_ms))) if known == *batch => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                waited.max(std::time::Duration::from_millis(now_ms.saturating_sub(unix_ms)))
            }
            _ => waited,
        };
        let decision = next_range(progress.settled_through, self.book.hard_final(), &owing, waited, &self.limits);
        let RangeDecision::Propose { first, last, leaves } = decision else {
            return Ok(done);
        };
        let number = progress.range_count;
        let vault = |source| SettleError::vault(number, "submitWithdrawals", source);
        if !self.my_turn((number, true)).await.map_err(vault)? {
            return Ok(done);
        }
        let Some(tree) = self.book.range_tree(first, last) else { return Ok(done) };
        let root = tree.root();
        // Above the ceiling, not even the signing session runs: its signature could not be
        // sent, and every turn would start another among the watchmen.
        if let FeeDecision::Defer { fee_per_gas, ceiling } = self.submitter.fee_decision().await.map_err(vault)? {
            return Err(SettleError::FeeDeferred { range: number, call: "submitWithdrawals", fee_per_gas, ceiling });
        }
        let started = Instant::now();
        let outcome = tss
            .sign(vec![Self::request(&self.domain, first, last, root)])
            .await
            .map_err(|source| SettleError::Signing { first, last, source })?;
        metrics::histogram!("watchman_eth_signing_seconds").record(started.elapsed().as_secs_f64());
        let signature = outcome
            .signatures
            .first()
            .and_then(|s| EvmSchnorrSignature::from_bip340(&s.signature))
            .ok_or(SettleError::BadSignature { first, last })?;
        let started = Instant::now();
        let submitted = self.submitter.submit_range(first, last, root, &signature).await.map_err(vault)?;
        metrics::histogram!("watchman_eth_submission_seconds", "call" => "submitWithdrawals")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("watchman_eth_ranges_submitted_total").increment(u64::from(submitted.is_some()));
        metrics::histogram!("watchman_eth_range_leaves").record(leaves as f64);
        tracing::info!(
            range = number,
            first,
            last,
            leaves,
            submitted = submitted.is_some(),
            "withdrawals range root on the vault"
        );
        let range = OnchainRange { number, first, last, root };
        self.book.note_vault(chains::ethereum::VaultProgress { range_count: number + 1, settled_through: last });
        if let Some(settled) = self.pay(range, &tree, submitted.is_some()).await? {
            done.push(settled);
        }
        Ok(done)
    }

    /// Pays every unpaid leaf of `range`. `None` if leaves over a cap wait for it to refill
    /// (what fit is paid; the range and later ones are retried next turn).
    async fn pay(
        &mut self,
        range: OnchainRange,
        tree: &EthWithdrawalTree,
        submitted_root: bool,
    ) -> Result<Option<SettledRange>, SettleError> {
        let started = Instant::now();
        let payment = self
            .submitter
            .pay(range.number, tree)
            .await
            .map_err(|source| SettleError::vault(range.number, "withdrawMany", source))?;
        metrics::histogram!("watchman_eth_submission_seconds", "call" => "withdrawMany")
            .record(started.elapsed().as_secs_f64());
        self.record_failed(range, tree, &payment.failed);
        if !payment.deferred.is_empty() {
            // Over a cap: what fit is paid; the rest (and later ranges, in order) wait for the
            // cap to refill and are retried at the next turn.
            metrics::counter!("watchman_eth_payouts_deferred_total").increment(payment.deferred.len() as u64);
            return Ok(None);
        }
        metrics::counter!("watchman_eth_ranges_settled_total").increment(1);
        tracing::info!(
            range = range.number,
            first = range.first,
            last = range.last,
            submitted_root,
            payouts = payment.receipts.len(),
            failed = ?payment.failed,
            "Ethereum withdrawals settled"
        );
        self.next_to_pay = self.next_to_pay.max(range.number + 1);
        Ok(Some(SettledRange {
            range: range.number,
            first: range.first,
            last: range.last,
            submitted_root,
            payout_transactions: payment.receipts.len(),
            failed: payment.failed,
        }))
    }

    fn record_failed(&self, range: OnchainRange, tree: &EthWithdrawalTree, failed: &[LeafKey]) {
        if failed.is_empty() {
            return;
        }
        metrics::counter!("watchman_eth_withdrawals_failed_total").increment(failed.len() as u64);
        let now = Instant::now();
        for (batch, index) in failed {
            let Some(position) = tree.position(*batch, *index) else { continue };
            if !self.stuck.record((range.number, range.first, range.last), tree, position, &self.retry, now) {
                tracing::error!(
                    batch,
                    index,
                    "the stuck-withdrawals record is full: this leaf is not tracked (it stays claimable on chain)"
                );
            }
        }
        tracing::warn!(
            range = range.number,
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
                let Some((range, first, last)) = self.stuck.range_of(key) else { continue };
                let Some(tree) = self.book.range_tree(first, last) else { continue };
                self.submitter.retry(range, &tree, key).await
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
