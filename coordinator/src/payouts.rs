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
}

/// Whether to plan now: `queued` withdrawals wait, the oldest for `waited`. A full queue (a
/// transaction's worth of outputs) does not wait for the window.
pub fn payout_due(queued: usize, waited: Duration, window: Duration) -> bool {
    queued > 0 && (queued >= MAX_PAYOUT_OUTPUTS || waited >= window)
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
        for plan in &plans {
            if let PayoutStatus::Confirmed { attempt, confirmations } = broadcaster.status(plan).await? {
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
        let waited = self.waited(queued);
        if payout_due(queued, waited, self.window) {
            match self.sequencer.submit(Tx::System(SystemTx::BtcPayoutPlan { fee_rate })).await? {
                Ok(_) => {
                    round.planned = true;
                    if let Ok(mut since) = self.waiting_since.lock() {
                        *since = None;
                    }
                    metrics::histogram!("bridge_btc_payout_wait_seconds").record(waited.as_secs_f64());
                    tracing::info!(queued, fee_rate, waited_ms = waited.as_millis() as u64, "bitcoin payout planned");
                }
                // Not enough confirmed money or fee yet: the withdrawals wait for the next round.
                Err(ApplyError::Tx(error @ (TxError::VaultLiquidity { .. } | TxError::PayoutFeeBudget { .. }))) => {
                    tracing::info!(queued, fee_rate, %error, "bitcoin withdrawals wait");
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

    /// Runs rounds every `poll` until the sequencer stops; a node error is logged and retried.
    pub async fn run(self, poll: Duration) -> SequencerError {
        loop {
            match self.round().await {
                Ok(_) => {}
                Err(PayoutKeeperError::Sequencer(error)) => return error,
                Err(error) => tracing::warn!(%error, "bitcoin payout round failed; retrying"),
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_waits_for_the_window_unless_the_queue_fills_a_transaction() {
        let window = Duration::from_secs(30);
        assert!(!payout_due(0, Duration::from_secs(60), window), "nothing to pay");
        assert!(!payout_due(1, Duration::from_secs(29), window));
        assert!(payout_due(1, Duration::from_secs(30), window));
        assert!(payout_due(MAX_PAYOUT_OUTPUTS, Duration::ZERO, window), "a full queue goes at once");
        assert!(payout_due(1, Duration::ZERO, Duration::ZERO), "no window: every round");
    }
}
