//! The coordinator's part in Bitcoin payouts: it proposes a plan when withdrawals wait in the
//! queue, a consolidation of the vault's small outputs when fees are low, and records which
//! attempt of a plan the chain confirmed. It holds no key and signs
//! nothing: the watchmen sign and broadcast each plan from their own replay, and the ledger
//! itself checks everything the coordinator submits here.
//!
//! One payout per settlement window: a plan pays every withdrawal queued by every batch so far
//! (up to `MAX_PAYOUT_OUTPUTS`), so the keeper plans only once the oldest queued withdrawal has
//! waited the window (`[bitcoin] payout_window_ms`), or at once when the queue fills a
//! transaction. The watchmen sign the plan the replayed ledger made, whenever it was made: the
//! window is the coordinator's choice of *when*, never a rule a replayer must agree on.
//!
//! The window is what a user is promised: paid (first confirmation) within it. A plan still has
//! to go through its batch, publication, the watchmen's replay and signing, and a Bitcoin block,
//! so the keeper plans that long before the window ends: by the *lead*, how long its last plan
//! took from being seen in the ledger to its first confirmation, at most half the window (so a
//! slow chain still leaves most of the window for withdrawals to share one payout).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bridge::batch::ApplyError;
use bridge::btc_payout::{CONSOLIDATION_FEE_RATE_FACTOR, MAX_PAYOUT_OUTPUTS, MIN_CONSOLIDATION_INPUTS, PayoutPlan};
use bridge::tx::SystemTx;
use bridge::{BtcVaultParams, Tx, TxError};
use chains::bitcoin::{CoreRpc, PayoutBroadcaster, PayoutRpcError, PayoutStatus};

use crate::sequencer::{SequencerError, SequencerHandle};

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PayoutRound {
    /// Plans recorded as confirmed.
    pub confirmed: usize,
    /// Whether a new plan was made.
    pub planned: bool,
    /// Whether a consolidation was made.
    pub consolidated: bool,
    /// Whether a sweep of outputs under an old group key was planned.
    pub swept: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutKeeperError {
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error("asking the Bitcoin node about payouts failed: {0}")]
    Node(#[from] PayoutRpcError),
}

impl std::fmt::Debug for PayoutKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayoutKeeper")
            .field("node", &self.rpc.url())
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

pub struct PayoutKeeper {
    sequencer: SequencerHandle,
    rpc: CoreRpc,
    broadcaster: PayoutBroadcaster,
    vault: BtcVaultParams,
    /// Confirmations before a payout's change counts as the vault's.
    depth: u64,
    /// `estimatesmartfee`'s confirmation target.
    fee_target: u16,
    /// How long the oldest queued withdrawal waits before a plan pays the queue.
    window: Duration,
    /// Since when withdrawals have waited in the queue unplanned (this process's clock).
    waiting_since: Mutex<Option<Instant>>,
    /// Why the last plan was refused (liquidity, fee budget), so a wait is logged at INFO
    /// when it starts or its reason changes, not every round (twice a second) while it lasts.
    waiting_for: Mutex<Option<std::mem::Discriminant<TxError>>>,
    /// How long plans take to be paid, as measured (see the module's doc).
    lead: Mutex<PayoutLead>,
}

/// Whether to plan now: `queued` withdrawals wait, the oldest for `waited`, and a plan takes
/// `lead` to be paid. A full queue (a transaction's worth of outputs) does not wait for the
/// window; otherwise the plan is made `lead` (at most half the window) before it ends.
pub fn payout_due(queued: usize, waited: Duration, window: Duration, lead: Duration) -> bool {
    let plan_at = window.saturating_sub(lead.min(window / 2));
    queued > 0 && (queued >= MAX_PAYOUT_OUTPUTS || waited >= plan_at)
}

/// The time from a plan first seen in the ledger to its payout's first confirmation, measured
/// on the keeper's own plans. Holds only the plans the ledger still lists (a handful), so it
/// never grows with the history.
#[derive(Debug, Default)]
pub struct PayoutLead {
    /// Plan id → when this keeper first saw it unconfirmed; `None` once measured, or if first
    /// seen confirmed already (after a restart: nothing to measure).
    seen: std::collections::BTreeMap<u64, Option<Instant>>,
    /// The last measured lead; zero until a plan of this process is confirmed.
    last: Duration,
}

impl PayoutLead {
    /// Notes the plans the ledger lists now (`plans`: id, and whether its payout has a
    /// confirmation) at `now`, forgetting those it no longer lists, and returns the lead.
    pub fn observe(&mut self, plans: impl IntoIterator<Item = (u64, bool)>, now: Instant) -> Duration {
        let mut listed = std::collections::BTreeSet::new();
        for (id, confirmed) in plans {
            listed.insert(id);
            let since = self.seen.entry(id).or_insert((!confirmed).then_some(now));
            if confirmed && let Some(since) = since.take() {
                self.last = now.saturating_duration_since(since);
            }
        }
        self.seen.retain(|id, _| listed.contains(id));
        self.last
    }
}

impl PayoutKeeper {
    pub fn new(
        sequencer: SequencerHandle,
        rpc: CoreRpc,
        vault: BtcVaultParams,
        network: bridge::BtcNetwork,
        depth: u64,
        fee_target: u16,
    ) -> Self {
        let broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, network);
        PayoutKeeper {
            sequencer,
            rpc,
            broadcaster,
            vault,
            depth: depth.max(1),
            fee_target,
            window: Duration::ZERO,
            waiting_since: Mutex::new(None),
            waiting_for: Mutex::new(None),
            lead: Mutex::new(PayoutLead::default()),
        }
    }

    /// Plans at most once per `window` (see the module's doc); without it, every round plans
    /// what waits.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long queued withdrawals have waited unplanned; starts the clock when some wait.
    fn waited(&self, queued: usize) -> Duration {
        let Ok(mut since) = self.waiting_since.lock() else { return Duration::MAX };
        if queued == 0 {
            *since = None;
            return Duration::ZERO;
        }
        since.get_or_insert_with(Instant::now).elapsed()
    }

    /// Records confirmed plans, then plans the queue if anything waits.
    pub async fn round(&self) -> Result<PayoutRound, PayoutKeeperError> {
        let (queued, plans, unplanned, consolidating, keys, unswept) = self
            .sequencer
            .read(|state| {
                let plans: Vec<PayoutPlan> = state.btc_plans().cloned().collect();
                let consolidating = plans.iter().any(PayoutPlan::is_consolidation);
                let keys = bridge::rotation::vault_keys(state);
                let batch = state.head().next_number;
                let unswept = bridge::sweep::select_sweep(state, batch).len();
                // Everything still under an old key, planned or not: the old shares are needed
                // until this is zero (docs/OPERATIONS.md, "Rotating the signer set").
                let old = state
                    .vault_utxos()
                    .chain(state.btc_plans().flat_map(|p| p.inputs.iter()))
                    .filter(|u| !bridge::rotation::is_current_at(state, batch, &u.owner))
                    .count();
                metrics::gauge!("bridge_btc_old_key_outputs").set(old as f64);
                // The batch that count is for, set after it: a reader that sees this batch sees
                // that batch's count (`bridgectl devnet rotate` waits on the pair).
                metrics::gauge!("bridge_btc_old_key_outputs_batch").set(batch as f64);
                (state.btc_queue().count(), plans, state.vault_utxos().count(), consolidating, keys, unswept)
            })
            .await?;
        let mut round = PayoutRound::default();
        // The ledger's keys as of now: after a rotation a plan's change goes to the key in force
        // at its batch, so the txids to look for depend on them.
        let mut broadcaster = self.broadcaster.clone();
        if let Some(keys) = keys {
            broadcaster.set_keys(keys);
        }
        // Each payout plan, and whether its payout has a confirmation: what the lead is made of.
        let mut paying = Vec::new();
        for plan in &plans {
            let status = broadcaster.status(plan).await?;
            if !plan.is_consolidation() {
                paying.push((plan.id, matches!(status, PayoutStatus::Confirmed { .. })));
            }
            if let PayoutStatus::Confirmed { attempt, confirmations } = status {
                if confirmations < self.depth {
                    continue;
                }
                // The tip read after the status: `tip - confirmations + 1` is at or above the
                // payout's block, so a replayer's node is never told it is past a block it is not.
                let tip = self.rpc.block_count().await.map_err(PayoutRpcError::from)?;
                let height = (tip + 1).saturating_sub(confirmations);
                let tx = Tx::System(SystemTx::BtcPayoutConfirmed { plan: plan.id, attempt, height });
                match self.sequencer.submit(tx).await? {
                    Ok(_) => {
                        round.confirmed += 1;
                        tracing::info!(plan = plan.id, attempt, confirmations, "bitcoin payout confirmed");
                    }
                    Err(error) => tracing::error!(plan = plan.id, attempt, %error, "the ledger refused a confirmation"),
                }
            }
        }
        let fee_rate = self.fee_rate().await;
        // After a key rotation: move what the old key holds to the new key's vault. The ledger
        // fixes the plan (the oldest key's outputs); the old watchmen sign it.
        if unswept > 0 {
            match self.sequencer.submit(Tx::System(SystemTx::BtcSweepPlan { fee_rate })).await? {
                Ok(_) => {
                    round.swept = true;
                    metrics::counter!("bridge_btc_sweeps_total").increment(1);
                    tracing::info!(unswept, fee_rate, "bitcoin sweep to the new group key planned");
                }
                Err(ApplyError::Tx(error @ (TxError::SweepTooSmall { .. } | TxError::SweepFunding { .. }))) => {
                    tracing::warn!(unswept, fee_rate, %error, "outputs under an old group key wait for their sweep");
                }
                Err(error) => tracing::error!(unswept, fee_rate, %error, "the ledger refused a sweep plan"),
            }
        }
        let lead = match self.lead.lock() {
            Ok(mut lead) => lead.observe(paying, Instant::now()),
            Err(_) => Duration::ZERO,
        };
        metrics::gauge!("bridge_btc_payout_lead_seconds").set(lead.as_secs_f64());
        let waited = self.waited(queued);
        if payout_due(queued, waited, self.window, lead) {
            match self.sequencer.submit(Tx::System(SystemTx::BtcPayoutPlan { fee_rate })).await? {
                Ok(_) => {
                    round.planned = true;
                    if let Ok(mut since) = self.waiting_since.lock() {
                        *since = None;
                    }
                    if let Ok(mut reason) = self.waiting_for.lock() {
                        *reason = None;
                    }
                    metrics::histogram!("bridge_btc_payout_wait_seconds").record(waited.as_secs_f64());
                    tracing::info!(queued, fee_rate, waited_ms = waited.as_millis() as u64, "bitcoin payout planned");
                }
                // Not enough confirmed money or fee yet: the withdrawals wait for the next round.
                Err(ApplyError::Tx(error @ (TxError::VaultLiquidity { .. } | TxError::PayoutFeeBudget { .. }))) => {
                    let kind = Some(std::mem::discriminant(&error));
                    let new = self.waiting_for.lock().map(|mut reason| std::mem::replace(&mut *reason, kind) != kind);
                    if new.unwrap_or(true) {
                        tracing::info!(queued, fee_rate, %error, "bitcoin withdrawals wait");
                    } else {
                        tracing::debug!(queued, fee_rate, %error, "bitcoin withdrawals still wait");
                    }
                }
                Err(error) => tracing::error!(queued, fee_rate, %error, "the ledger refused a payout plan"),
            }
        }
        // Fees are low and many outputs wait: merge the small ones while it is cheap, so that
        // later payouts (and large withdrawals) need few inputs. The ledger checks the rate is
        // low and pays the fee from the vault's surplus only.
        let ceiling = self.vault.min_fee_rate.saturating_mul(CONSOLIDATION_FEE_RATE_FACTOR);
        if !consolidating && unplanned >= MIN_CONSOLIDATION_INPUTS && fee_rate <= ceiling {
            match self.sequencer.submit(Tx::System(SystemTx::BtcConsolidationPlan { fee_rate })).await? {
                Ok(_) => {
                    round.consolidated = true;
                    metrics::counter!("bridge_btc_consolidations_total").increment(1);
                    tracing::info!(unplanned, fee_rate, "bitcoin vault consolidation planned");
                }
                Err(ApplyError::Tx(
                    error @ (TxError::NothingToConsolidate { .. }
                    | TxError::ConsolidationSurplus { .. }
                    | TxError::ConsolidationPending(_)),
                )) => tracing::debug!(unplanned, fee_rate, %error, "no consolidation this round"),
                Err(error) => tracing::warn!(unplanned, fee_rate, %error, "the ledger refused a consolidation"),
            }
        }
        Ok(round)
    }

    /// The node's estimate in sat/vB, rounded up, within the network's bounds; the lower bound
    /// when the node has no estimate (a quiet regtest, a node just started).
    async fn fee_rate(&self) -> u64 {
        let estimate = match self.rpc.estimate_smart_fee(self.fee_target).await {
            Ok(Some(sat_per_kvb)) => sat_per_kvb.div_ceil(1_000),
            Ok(None) => self.vault.min_fee_rate,
            Err(error) => {
                tracing::warn!(%error, "no fee estimate; planning at the network's lowest rate");
                self.vault.min_fee_rate
            }
        };
        estimate.clamp(self.vault.min_fee_rate, self.vault.max_fee_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_waits_for_the_window_unless_the_queue_fills_a_transaction() {
        let window = Duration::from_secs(30);
        let none = Duration::ZERO;
        assert!(!payout_due(0, Duration::from_secs(60), window, none), "nothing to pay");
        assert!(!payout_due(1, Duration::from_secs(29), window, none));
        assert!(payout_due(1, Duration::from_secs(30), window, none));
        assert!(payout_due(MAX_PAYOUT_OUTPUTS, Duration::ZERO, window, none), "a full queue goes at once");
        assert!(payout_due(1, Duration::ZERO, Duration::ZERO, none), "no window: every round");
        // Planned the lead before the window ends, the lead at most half the window.
        let lead = Duration::from_secs(5);
        assert!(!payout_due(1, Duration::from_secs(24), window, lead));
        assert!(payout_due(1, Duration::from_secs(25), window, lead));
        assert!(!payout_due(1, Duration::from_secs(14), window, Duration::from_secs(600)));
        assert!(payout_due(1, Duration::from_secs(15), window, Duration::from_secs(600)));
    }

    #[test]
    fn the_lead_is_the_last_plan_s_time_to_its_first_confirmation() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut lead = PayoutLead::default();
        assert_eq!(lead.observe([(1, false)], at(0)), Duration::ZERO, "nothing measured yet");
        assert_eq!(lead.observe([(1, false)], at(2)), Duration::ZERO);
        assert_eq!(lead.observe([(1, true)], at(5)), Duration::from_secs(5), "seen at 0, confirmed at 5");
        assert_eq!(lead.observe([(1, true)], at(9)), Duration::from_secs(5), "measured once");
        // A plan first seen confirmed (after a restart) measures nothing.
        assert_eq!(lead.observe([(2, true)], at(10)), Duration::from_secs(5));
        // Plans the ledger no longer lists are forgotten: the record stays a handful.
        lead.observe([(3, false)], at(11));
        assert_eq!(lead.seen.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(lead.observe([(3, true)], at(14)), Duration::from_secs(3));
    }
}
