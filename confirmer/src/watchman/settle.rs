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
use std::sync::Arc;
use std::time::{Duration, Instant};

use chains::ethereum::{FeeDecision, LeafKey, OnchainRange, Retry, SubmitError, VaultWriter, gwei};
use tss::signer::{Clock, SystemClock};
use tss::{KeyPath, SessionError, SigningContext, SigningRequest, ThresholdSigner};

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
    #[error(
        "the vault's ranges end at batch {settled_through}, below this watchman's pruned horizon {pruned_through}: a reorg deeper than the pruning depth? Restart the watchman"
    )]
    Pruned { settled_through: u64, pruned_through: u64 },
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

/// A root signed for range `number` (batches `first..=last`), not sent yet.
#[derive(Debug, Clone, Copy)]
struct SignedRange {
    number: u64,
    first: u64,
    last: u64,
    root: [u8; 32],
    signature: EvmSchnorrSignature,
}

pub struct EthSettlement {
    book: SettlementBook,
    domain: VaultDomain,
    /// The vault, through this watchman's node (or the simulator's EVM).
    submitter: Box<dyn VaultWriter>,
    /// Windows and retries are measured on it: the system's, or the simulator's.
    clock: Arc<dyn Clock>,
    limits: RangeLimits,
    turns: Turns,
    /// Ranges below this are paid (or their unpaid leaves recorded as stuck).
    next_to_pay: u64,
    /// The last batch of those ranges: what the book may prune once it is deep.
    paid_through: u64,
    /// The first owing batch after the vault's ranges, and when this watchman first saw it
    /// owing: the window runs from there unless the batch's own time is known.
    pending_since: Option<(u64, Instant)>,
    /// A batch's timestamp (Unix ms, the coordinator's clock, from its signed header): the
    /// window of its withdrawals runs from there, so a lone withdrawal is paid about one window
    /// after it was batched, not one window after this watchman replayed it.
    batch_time: Option<(u64, u64)>,
    /// The work this watchman last found due (a range to propose or to pay, by number, and
    /// which of the two), and the Ethereum block it first saw it due at: only for counting
    /// takeovers (whose turn it is, is the chain's clock alone).
    due_since: Option<((u64, bool), u64)>,
    /// A root signed for the next range whose turn passed before it could be sent: kept for
    /// this watchman's next turn, so a slow session is not lost (nor run again) with its turn.
    signed: Option<SignedRange>,
    /// The takeovers counted, so a retried one is not counted again.
    takeovers: Takeovers,
    stuck: StuckWithdrawals,
    retry: RetryPolicy,
    /// Whether the ranges an earlier run paid are skipped already ([`EthSettlement::skip_paid_ranges`]).
    resumed: bool,
}

impl std::fmt::Debug for EthSettlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthSettlement")
            .field("submitter", &self.submitter)
            .field("next_to_pay", &self.next_to_pay)
            .field("paid_through", &self.paid_through)
            .finish_non_exhaustive()
    }
}

impl EthSettlement {
    pub fn new(book: SettlementBook, domain: VaultDomain, submitter: impl VaultWriter + 'static) -> Self {
        EthSettlement {
            book,
            domain,
            submitter: Box::new(submitter),
            clock: Arc::new(SystemClock),
            limits: RangeLimits::default(),
            turns: Turns::default(),
            next_to_pay: 0,
            paid_through: 0,
            pending_since: None,
            batch_time: None,
            due_since: None,
            signed: None,
            takeovers: Takeovers::default(),
            stuck: StuckWithdrawals::default(),
            retry: RetryPolicy::default(),
            resumed: false,
        }
    }

    /// Takes back the stuck leaves an earlier run saved (at start).
    pub fn restore_stuck(&self, saved: Vec<crate::store::SavedStuckLeaf>) {
        self.stuck.restore(saved, &self.retry, self.clock.now());
    }

    /// The first vault range this watchman has not seen paid: what the next turn reads first.
    pub fn next_to_pay(&self) -> u64 {
        self.next_to_pay
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

    /// Measures windows and retries on `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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
        self.book.eth_owing_after(vault.settled_through)?.first().map(|(batch, _)| *batch)
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
    pub async fn settle(&mut self, tss: &dyn ThresholdSigner) -> Result<Vec<SettledRange>, SettleError> {
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
        self.note_paid(&settled).await;
        let fee = self.submitter.last_fee_per_gas();
        if fee > 0 {
            metrics::gauge!("watchman_eth_fee_per_gas_gwei").set(gwei(u128::from(fee)));
        }
        metrics::gauge!("watchman_eth_fee_ceiling_gwei").set(gwei(self.submitter.fee_policy().max_fee_per_gas));
        settled
    }

    /// Tells the book which ranges are paid (every leaf paid, or recorded as stuck with its own
    /// proof) as of the node's head now, so it drops their leaves once they are deep.
    async fn note_paid(&mut self, settled: &Result<Vec<SettledRange>, SettleError>) {
        if let Ok(done) = settled {
            self.paid_through = done.iter().map(|range| range.last).fold(self.paid_through, u64::max);
        }
        if self.paid_through <= self.book.eth_pruned_through() {
            return;
        }
        // Read after the payments were mined: their depth is counted from a later block.
        match self.submitter.block_number().await {
            Ok(head) => self.book.note_eth_done(self.paid_through, head),
            Err(error) => tracing::debug!(%error, "reading the head for pruning failed; next turn"),
        }
    }

    /// Whether this watchman may act on work `key` now: its turn at the node's head block, and
    /// not in the turn's last blocks ([`Turns::may_act`]).
    async fn my_turn(&mut self, key: (u64, bool)) -> Result<bool, SubmitError> {
        if self.turns.submitters <= 1 {
            return Ok(true);
        }
        let head = self.submitter.block_number().await?;
        let due = match self.due_since {
            Some((known, since)) if known == key => since,
            _ => {
                self.due_since = Some((key, head));
                head
            }
        };
        if self.takeovers.is_new(&self.turns, key, due, head) {
            metrics::counter!("watchman_eth_turn_takeovers_total").increment(1);
            tracing::warn!(
                range = key.0,
                waited_blocks = head.saturating_sub(due),
                "the turn-holder did not act in its turn: taking over"
            );
        }
        Ok(self.turns.may_act(key.0, head))
    }

    /// At the first turn after a start: the vault's ranges up to the book's Ethereum horizon
    /// were paid and seen deep by an earlier run (their stuck leaves saved with their proofs),
    /// so payment starts at the first range after it, found by bisection: a few reads, not one
    /// per range since genesis.
    async fn skip_paid_ranges(&mut self, range_count: u64) -> Result<(), SubmitError> {
        let horizon = self.book.eth_pruned_through();
        if horizon > 0 && self.next_to_pay < range_count {
            let submitter = &self.submitter;
            // A closure returning a future, not an async closure: the turn's future must be
            // `Send` (it runs under `chains::task`), which an async closure's cannot yet show.
            let first = first_range_after(range_count, horizon, move |number| async move {
                Ok::<_, SubmitError>(submitter.range(number).await?.map(|range| range.last))
            })
            .await?;
            if first > self.next_to_pay {
                tracing::info!(first, horizon, "ranges paid before the restart are not walked again");
                self.next_to_pay = first;
                self.paid_through = self.paid_through.max(horizon);
            }
        }
        self.resumed = true;
        Ok(())
    }

    async fn settle_ranges(&mut self, tss: &dyn ThresholdSigner) -> Result<Vec<SettledRange>, SettleError> {
        let mut done = Vec::new();
        if let Some(why) = self.book.halted() {
            return Err(SettleError::Halted(why));
        }
        let progress = self.submitter.progress().await.map_err(|e| SettleError::vault(self.next_to_pay, "read", e))?;
        self.book.note_vault(progress);
        // An Ethereum reorg can take ranges back (or this node fall behind them): what was paid
        // of them is not paid any more as far as this watchman can vouch, and a range that comes
        // back under the same number is to pay again.
        self.paid_through = self.paid_through.min(progress.settled_through);
        self.next_to_pay = self.next_to_pay.min(progress.range_count);
        metrics::gauge!("watchman_eth_vault_settled_through").set(progress.settled_through as f64);
        if !self.resumed {
            let next = self.next_to_pay;
            self.skip_paid_ranges(progress.range_count).await.map_err(|e| SettleError::vault(next, "read", e))?;
        }

        // The ranges the vault holds, in order: pay what is unpaid.
        while self.next_to_pay < progress.range_count {
            let number = self.next_to_pay;
            let vault = |source| SettleError::vault(number, "withdrawMany", source);
            let Some(range) = self.submitter.range(number).await.map_err(vault)? else { break };
            if range.last <= self.book.eth_pruned_through() {
                // Paid and seen deep (its stuck leaves kept with their proofs): nothing to do.
                self.next_to_pay = number + 1;
                self.paid_through = self.paid_through.max(range.last);
                continue;
            }
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
                    self.paid_through = self.paid_through.max(range.last);
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
        let Some(owing) = self.book.eth_owing_after(progress.settled_through) else {
            let pruned_through = self.book.eth_pruned_through();
            return Err(SettleError::Pruned { settled_through: progress.settled_through, pruned_through });
        };
        let now = self.clock.now();
        let waited = match (owing.first(), self.pending_since) {
            (Some((batch, _)), Some((known, since))) if known == *batch => now.saturating_duration_since(since),
            (Some((batch, _)), _) => {
                self.pending_since = Some((*batch, now));
                Duration::ZERO
            }
            (None, _) => {
                self.pending_since = None;
                Duration::ZERO
            }
        };
        // The batch's own time when known (a clock of the coordinator's: a skew only moves when
        // the root is proposed, never what is signed), else when this watchman first saw it.
        let waited = match (owing.first(), self.batch_time) {
            (Some((batch, _)), Some((known, unix_ms))) if known == *batch => {
                waited.max(Duration::from_millis(self.clock.unix_ms().saturating_sub(unix_ms)))
            }
            _ => waited,
        };
        let decision = next_range(progress.settled_through, self.book.hard_final(), &owing, waited, &self.limits);
        let RangeDecision::Propose { first, last, .. } = decision else {
            return Ok(done);
        };
        let number = progress.range_count;
        let vault = |source| SettleError::vault(number, "submitWithdrawals", source);
        if !self.my_turn((number, true)).await.map_err(vault)? {
            return Ok(done);
        }
        // A root this watchman signed in an earlier turn for this very range, if its replay
        // still makes it: sent as it is (the range's later batches go to the next one).
        let kept = self.signed.take().filter(|kept| kept.number == number && kept.first == first).and_then(|kept| {
            let tree = self.book.range_tree(kept.first, kept.last)?;
            (tree.root() == kept.root).then_some((kept, tree))
        });
        let (signed, tree, fresh) = match kept {
            Some((kept, tree)) => (kept, tree, false),
            None => {
                let Some(tree) = self.book.range_tree(first, last) else { return Ok(done) };
                let root = tree.root();
                let signature = self.sign_root(tss, number, first, last, root).await?;
                (SignedRange { number, first, last, root, signature }, tree, true)
            }
        };
        // Kept until it is on the vault, from before anything else can fail: a send that fails
        // (a node error, fees above the ceiling) or a turn that passed is retried with it at
        // this watchman's next turn, without a new session.
        self.signed = Some(signed);
        // A new session may outlast the turn: then the next holder may be sending this range
        // now, and two roots for one range are one reverted transaction.
        if fresh && !self.my_turn((number, true)).await.map_err(vault)? {
            tracing::info!(
                range = number,
                first = signed.first,
                last = signed.last,
                "signed after this watchman's turn passed: kept for its next turn"
            );
            metrics::counter!("watchman_eth_signatures_kept_total").increment(1);
            return Ok(done);
        }
        let SignedRange { first, last, root, signature, .. } = signed;
        debug_assert_eq!(tree.root(), root);
        let leaves = tree.withdrawals().len();
        // The root and its leaves' payouts in one transaction: paid in the root's own block.
        let started = self.clock.now();
        let submitted = self
            .submitter
            .submit_and_pay(number, (first, last), &tree, &signature)
            .await
            .map_err(|source| SettleError::vault(number, "submitAndWithdraw", source))?;
        self.signed = None;
        metrics::histogram!("watchman_eth_submission_seconds", "call" => "submitAndWithdraw")
            .record(self.seconds_since(started));
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
        let settled = match submitted {
            Some(payment) => self.settled(range, &tree, true, payment),
            // Another submitter's root: pay what it left unpaid.
            None => self.pay(range, &tree, false).await?,
        };
        done.extend(settled);
        Ok(done)
    }

    /// Seconds on this settlement's clock since `started`, for the histograms.
    fn seconds_since(&self, started: Instant) -> f64 {
        self.clock.now().saturating_duration_since(started).as_secs_f64()
    }

    /// A new signing session for range `number`'s root (batches `first..=last`). Above the fee
    /// ceiling not even the session runs: its signature could not be sent, and every turn would
    /// start another among the watchmen.
    async fn sign_root(
        &self,
        tss: &dyn ThresholdSigner,
        number: u64,
        first: u64,
        last: u64,
        root: [u8; 32],
    ) -> Result<EvmSchnorrSignature, SettleError> {
        let fees = self.submitter.fee_decision().await;
        if let FeeDecision::Defer { fee_per_gas, ceiling } =
            fees.map_err(|source| SettleError::vault(number, "submitWithdrawals", source))?
        {
            return Err(SettleError::FeeDeferred { range: number, call: "submitWithdrawals", fee_per_gas, ceiling });
        }
        let started = self.clock.now();
        let outcome = tss
            .sign(vec![Self::request(&self.domain, first, last, root)])
            .await
            .map_err(|source| SettleError::Signing { first, last, source })?;
        metrics::histogram!("watchman_eth_signing_seconds").record(self.seconds_since(started));
        outcome
            .signatures
            .first()
            .and_then(|s| EvmSchnorrSignature::from_bip340(&s.signature))
            .ok_or(SettleError::BadSignature { first, last })
    }

    /// Pays every unpaid leaf of `range`. `None` if leaves over a cap wait for it to refill
    /// (what fit is paid; the range and later ones are retried next turn).
    async fn pay(
        &mut self,
        range: OnchainRange,
        tree: &EthWithdrawalTree,
        submitted_root: bool,
    ) -> Result<Option<SettledRange>, SettleError> {
        let started = self.clock.now();
        let payment = self
            .submitter
            .pay(range.number, tree)
            .await
            .map_err(|source| SettleError::vault(range.number, "withdrawMany", source))?;
        metrics::histogram!("watchman_eth_submission_seconds", "call" => "withdrawMany")
            .record(self.seconds_since(started));
        Ok(self.settled(range, tree, submitted_root, payment))
    }

    /// What a payment of `range`'s leaves settled: `None` if leaves over a cap wait for it to
    /// refill (what fit is paid; the range and later ones are retried next turn).
    fn settled(
        &mut self,
        range: OnchainRange,
        tree: &EthWithdrawalTree,
        submitted_root: bool,
        payment: chains::ethereum::Payment,
    ) -> Option<SettledRange> {
        self.record_failed(range, tree, &payment.failed);
        if !payment.deferred.is_empty() {
            // Over a cap: what fit is paid; the rest (and later ranges, in order) wait for the
            // cap to refill and are retried at the next turn.
            metrics::counter!("watchman_eth_payouts_deferred_total").increment(payment.deferred.len() as u64);
            return None;
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
        Some(SettledRange {
            range: range.number,
            first: range.first,
            last: range.last,
            submitted_root,
            payout_transactions: payment.receipts.len(),
            failed: payment.failed,
        })
    }

    fn record_failed(&self, range: OnchainRange, tree: &EthWithdrawalTree, failed: &[LeafKey]) {
        if failed.is_empty() {
            return;
        }
        metrics::counter!("watchman_eth_withdrawals_failed_total").increment(failed.len() as u64);
        let now = (self.clock.now(), self.clock.unix_ms() / 1000);
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
        let now = self.clock.now();
        for (key, may_send) in self.stuck.due(now) {
            let (batch, index) = key;
            let outcome = if may_send {
                // The stuck record's own copy: the book drops the range's leaves once it is paid.
                let Some((range, leaf, proof)) = self.stuck.proven(key) else { continue };
                self.submitter.retry_proven(range, &leaf, &proof).await
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

/// The first of the vault's ranges `0..count` whose last batch is after `horizon`, by bisection
/// (the ranges' batches ascend); `last_of` reads a range's last batch. A range that cannot be
/// read (`None`) ends the search at the lowest candidate: walking from too early a range costs
/// reads, never a payment.
async fn first_range_after<E, F, R>(count: u64, horizon: u64, mut last_of: F) -> Result<u64, E>
where
    F: FnMut(u64) -> R,
    R: std::future::Future<Output = Result<Option<u64>, E>>,
{
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        match last_of(middle).await? {
            Some(last) if last <= horizon => low = middle + 1,
            Some(_) => high = middle,
            None => return Ok(low),
        }
    }
    Ok(low)
}

#[cfg(test)]
mod bisection_tests {
    use super::first_range_after;

    /// Ranges ending at these batches.
    async fn first_after(lasts: &[u64], horizon: u64, reads: &mut usize) -> u64 {
        let result: Result<u64, ()> = first_range_after(lasts.len() as u64, horizon, |n| {
            *reads += 1;
            std::future::ready(Ok(lasts.get(n as usize).copied()))
        })
        .await;
        result.unwrap_or(u64::MAX)
    }

    #[tokio::test]
    async fn the_first_range_after_the_horizon_is_found_in_logarithmic_reads() {
        let lasts: Vec<u64> = (1..=100_000).map(|n| n * 3).collect();
        for (horizon, first) in
            [(0, 0), (2, 0), (3, 1), (4, 1), (299_997, 99_999), (300_000, 100_000), (u64::MAX, 100_000)]
        {
            let mut reads = 0;
            assert_eq!(first_after(&lasts, horizon, &mut reads).await, first, "horizon {horizon}");
            assert!(reads <= 17, "{reads} reads for 100,000 ranges");
        }
        let mut reads = 0;
        assert_eq!(first_after(&[], 10, &mut reads).await, 0);
        assert_eq!(reads, 0);
    }
}
