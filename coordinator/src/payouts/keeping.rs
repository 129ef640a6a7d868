//! The payout keeper's decisions, apart from its I/O: given what the ledger holds
//! ([`LedgerReading`]), where each plan stands on the chain ([`ChainReading`]) and the keeper's
//! own time, [`Keeping::decide`] says which system transactions to propose, and
//! [`Keeping::outcome`] takes what the ledger said of each. The keeper's round
//! ([`super::PayoutKeeper::round`]), which the binary and the simulator both run, drives this on
//! the caller's clock: `now` is the time since the keeper started (simulated time in the
//! simulator), never the wall clock.

use std::time::Duration;

use bridge::batch::ApplyError;
use bridge::btc_payout::{CONSOLIDATION_FEE_RATE_FACTOR, MAX_PAYOUT_OUTPUTS, MIN_CONSOLIDATION_INPUTS, PayoutPlan};
use bridge::tx::SystemTx;
use bridge::{BtcVaultParams, State, TxError, VaultKeys};
use chains::bitcoin::{PayoutBroadcaster, PayoutRpcError, PayoutStatus};

/// What the keeper reads of the ledger at the start of a round.
#[derive(Debug, Clone)]
pub struct LedgerReading {
    /// The batch the next transaction goes into.
    pub batch: u64,
    /// Withdrawals queued for a plan.
    pub queued: usize,
    /// The plans the ledger lists (payouts, consolidations, sweeps), in its order.
    pub plans: Vec<PayoutPlan>,
    /// The vault's outputs no plan spends.
    pub unplanned: usize,
    /// The ledger's vault keys, once a rotation has added one.
    pub keys: Option<VaultKeys>,
    /// Outputs the sweep after a key rotation would move now.
    pub unswept: usize,
    /// Everything still under an old key, planned or not: the old shares are needed until this
    /// is zero (docs/OPERATIONS.md, "Rotating the signer set").
    pub old_key_outputs: usize,
}

impl LedgerReading {
    pub fn of(state: &State) -> Self {
        let plans: Vec<PayoutPlan> = state.btc_plans().cloned().collect();
        let batch = state.head().next_number;
        let old_key_outputs = state
            .vault_utxos()
            .chain(plans.iter().flat_map(|p| p.inputs.iter()))
            .filter(|u| !bridge::rotation::is_current_at(state, batch, &u.owner))
            .count();
        LedgerReading {
            batch,
            queued: state.btc_queue().count(),
            unplanned: state.vault_utxos().count(),
            keys: bridge::rotation::vault_keys(state),
            unswept: bridge::sweep::select_sweep(state, batch).len(),
            old_key_outputs,
            plans,
        }
    }

    fn consolidating(&self) -> bool {
        self.plans.iter().any(PayoutPlan::is_consolidation)
    }
}

/// Where the ledger's plans stand on the chain, as the keeper's node answers.
#[derive(Debug, Clone)]
pub struct ChainReading {
    /// Each plan's payout, in the ledger's order.
    pub statuses: Vec<(u64, PayoutStatus)>,
    /// The tip, read after the statuses (only when some payout is deep enough to record): so
    /// `tip - confirmations + 1` is at or above the payout's block, and a replayer's node is
    /// never told it is past a block it is not.
    pub tip: Option<u64>,
}

impl ChainReading {
    /// Asks `broadcaster`'s node about every plan of `ledger`; the tip only if some payout has
    /// `depth` confirmations.
    pub async fn read(
        broadcaster: &PayoutBroadcaster,
        ledger: &LedgerReading,
        depth: u64,
    ) -> Result<ChainReading, PayoutRpcError> {
        // After a rotation a plan's change goes to the key in force at its batch, so the txids
        // to look for depend on the ledger's keys as of now.
        let mut broadcaster = broadcaster.clone();
        if let Some(keys) = &ledger.keys {
            broadcaster.set_keys(keys.clone());
        }
        let mut statuses = Vec::with_capacity(ledger.plans.len());
        for plan in &ledger.plans {
            statuses.push((plan.id, broadcaster.status(plan).await?));
        }
        let deep = |status: &PayoutStatus| matches!(status, PayoutStatus::Confirmed { confirmations, .. } if *confirmations >= depth);
        let tip = if statuses.iter().any(|(_, status)| deep(status)) {
            Some(broadcaster.node().block_count().await.map_err(PayoutRpcError::from)?)
        } else {
            None
        };
        Ok(ChainReading { statuses, tip })
    }
}

/// The fee rate to plan at, in sat/vB: the node's estimate (`sat_per_kvb`, `None` when it has
/// none: a quiet regtest, a node just started) rounded up, within the network's bounds.
pub fn fee_rate(vault: &BtcVaultParams, sat_per_kvb: Option<u64>) -> u64 {
    sat_per_kvb.map_or(vault.min_fee_rate, |rate| rate.div_ceil(1_000)).clamp(vault.min_fee_rate, vault.max_fee_rate)
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
    seen: std::collections::BTreeMap<u64, Option<Duration>>,
    /// The last measured lead; zero until a plan of this process is confirmed.
    last: Duration,
}

impl PayoutLead {
    /// Notes the plans the ledger lists now (`plans`: id, and whether its payout has a
    /// confirmation) at `now`, forgetting those it no longer lists, and returns the lead.
    pub fn observe(&mut self, plans: impl IntoIterator<Item = (u64, bool)>, now: Duration) -> Duration {
        let mut listed = std::collections::BTreeSet::new();
        for (id, confirmed) in plans {
            listed.insert(id);
            let since = self.seen.entry(id).or_insert((!confirmed).then_some(now));
            if confirmed && let Some(since) = since.take() {
                self.last = now.saturating_sub(since);
            }
        }
        self.seen.retain(|id, _| listed.contains(id));
        self.last
    }
}

/// One system transaction the keeper proposes, and what it was proposed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposal {
    /// A plan's payout is `confirmations` deep: record it.
    Confirmation { plan: u64, attempt: u32, height: u64, confirmations: u64 },
    /// Outputs under an old group key wait: move them to the new key's vault.
    Sweep { unswept: usize, fee_rate: u64 },
    /// Pay the queue; its oldest withdrawal has waited `waited`.
    Payout { queued: usize, fee_rate: u64, waited: Duration },
    /// Merge the vault's small outputs while fees are low.
    Consolidation { unplanned: usize, fee_rate: u64 },
}

impl Proposal {
    pub fn tx(&self) -> SystemTx {
        match *self {
            Proposal::Confirmation { plan, attempt, height, .. } => {
                SystemTx::BtcPayoutConfirmed { plan, attempt, height }
            }
            Proposal::Sweep { fee_rate, .. } => SystemTx::BtcSweepPlan { fee_rate },
            Proposal::Payout { fee_rate, .. } => SystemTx::BtcPayoutPlan { fee_rate },
            Proposal::Consolidation { fee_rate, .. } => SystemTx::BtcConsolidationPlan { fee_rate },
        }
    }
}

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

/// The keeper's memory between rounds: a handful of fields, lost on restart at no cost (a
/// restarted keeper waits one window at most, and measures its lead again).
#[derive(Debug)]
pub struct Keeping {
    vault: BtcVaultParams,
    /// Confirmations before a payout's change counts as the vault's.
    depth: u64,
    /// How long the oldest queued withdrawal waits before a plan pays the queue.
    window: Duration,
    /// Since when withdrawals have waited in the queue unplanned.
    waiting_since: Option<Duration>,
    /// Why the last plan was refused (liquidity, fee budget), so a wait is logged at INFO
    /// when it starts or its reason changes, not every round while it lasts.
    waiting_for: Option<std::mem::Discriminant<TxError>>,
    /// How long plans take to be paid, as measured (see the module's doc of `payouts`).
    lead: PayoutLead,
}

impl Keeping {
    /// A keeper that records payouts `depth` deep (at least one) and plans at most once per
    /// `window` (zero: every round plans what waits).
    pub fn new(vault: BtcVaultParams, depth: u64, window: Duration) -> Self {
        Keeping {
            vault,
            depth: depth.max(1),
            window,
            waiting_since: None,
            waiting_for: None,
            lead: PayoutLead::default(),
        }
    }

    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// The proposals of one round, in the order to submit them: confirmations first (they free
    /// the change a new plan may spend), then a sweep, a payout and a consolidation. All are
    /// decided on the same reading; the ledger checks each as it comes.
    pub fn decide(
        &mut self,
        ledger: &LedgerReading,
        chain: &ChainReading,
        fee_rate: u64,
        now: Duration,
    ) -> Vec<Proposal> {
        let mut proposals = Vec::new();
        let mut paying = Vec::new();
        for (plan, (id, status)) in ledger.plans.iter().zip(&chain.statuses) {
            debug_assert_eq!(plan.id, *id, "a chain reading is of the same ledger reading");
            if !plan.is_consolidation() {
                paying.push((plan.id, matches!(status, PayoutStatus::Confirmed { .. })));
            }
            if let (PayoutStatus::Confirmed { attempt, confirmations }, Some(tip)) = (*status, chain.tip)
                && confirmations >= self.depth
            {
                let height = (tip + 1).saturating_sub(confirmations);
                proposals.push(Proposal::Confirmation { plan: plan.id, attempt, height, confirmations });
            }
        }
        if ledger.unswept > 0 {
            proposals.push(Proposal::Sweep { unswept: ledger.unswept, fee_rate });
        }
        let lead = self.lead.observe(paying, now);
        metrics::gauge!("bridge_btc_payout_lead_seconds").set(lead.as_secs_f64());
        let waited = if ledger.queued == 0 {
            self.waiting_since = None;
            Duration::ZERO
        } else {
            now.saturating_sub(*self.waiting_since.get_or_insert(now))
        };
        if payout_due(ledger.queued, waited, self.window, lead) {
            proposals.push(Proposal::Payout { queued: ledger.queued, fee_rate, waited });
        }
        // Payouts first: a consolidation holds every output it merges (up to the whole vault)
        // until it confirms, so it is made only when no withdrawal waits for those outputs.
        let ceiling = self.vault.min_fee_rate.saturating_mul(CONSOLIDATION_FEE_RATE_FACTOR);
        if ledger.queued == 0
            && !ledger.consolidating()
            && ledger.unplanned >= MIN_CONSOLIDATION_INPUTS
            && fee_rate <= ceiling
        {
            proposals.push(Proposal::Consolidation { unplanned: ledger.unplanned, fee_rate });
        }
        proposals
    }

    /// What the ledger said of `proposal` (`Err`: refused), into `round`.
    pub fn outcome(&mut self, proposal: &Proposal, result: Result<(), &ApplyError>, round: &mut PayoutRound) {
        match (*proposal, result) {
            (Proposal::Confirmation { plan, attempt, confirmations, .. }, Ok(())) => {
                round.confirmed += 1;
                tracing::info!(plan, attempt, confirmations, "bitcoin payout confirmed");
            }
            (Proposal::Confirmation { plan, attempt, .. }, Err(error)) => {
                tracing::error!(plan, attempt, %error, "the ledger refused a confirmation");
            }
            (Proposal::Sweep { unswept, fee_rate }, Ok(())) => {
                round.swept = true;
                metrics::counter!("bridge_btc_sweeps_total").increment(1);
                tracing::info!(unswept, fee_rate, "bitcoin sweep to the new group key planned");
            }
            (
                Proposal::Sweep { unswept, fee_rate },
                Err(ApplyError::Tx(error @ (TxError::SweepTooSmall { .. } | TxError::SweepFunding { .. }))),
            ) => tracing::warn!(unswept, fee_rate, %error, "outputs under an old group key wait for their sweep"),
            (Proposal::Sweep { unswept, fee_rate }, Err(error)) => {
                tracing::error!(unswept, fee_rate, %error, "the ledger refused a sweep plan");
            }
            (Proposal::Payout { queued, fee_rate, waited }, Ok(())) => {
                round.planned = true;
                self.waiting_since = None;
                self.waiting_for = None;
                metrics::histogram!("bridge_btc_payout_wait_seconds").record(waited.as_secs_f64());
                tracing::info!(queued, fee_rate, waited_ms = waited.as_millis() as u64, "bitcoin payout planned");
            }
            // Not enough confirmed money or fee yet: the withdrawals wait for the next round.
            (
                Proposal::Payout { queued, fee_rate, .. },
                Err(ApplyError::Tx(error @ (TxError::VaultLiquidity { .. } | TxError::PayoutFeeBudget { .. }))),
            ) => {
                let kind = Some(std::mem::discriminant(error));
                if std::mem::replace(&mut self.waiting_for, kind) != kind {
                    tracing::info!(queued, fee_rate, %error, "bitcoin withdrawals wait");
                } else {
                    tracing::debug!(queued, fee_rate, %error, "bitcoin withdrawals still wait");
                }
            }
            (Proposal::Payout { queued, fee_rate, .. }, Err(error)) => {
                tracing::error!(queued, fee_rate, %error, "the ledger refused a payout plan");
            }
            (Proposal::Consolidation { unplanned, fee_rate }, Ok(())) => {
                round.consolidated = true;
                metrics::counter!("bridge_btc_consolidations_total").increment(1);
                tracing::info!(unplanned, fee_rate, "bitcoin vault consolidation planned");
            }
            (
                Proposal::Consolidation { unplanned, fee_rate },
                Err(ApplyError::Tx(
                    error @ (TxError::NothingToConsolidate { .. }
                    | TxError::ConsolidationSurplus { .. }
                    | TxError::ConsolidationPending(_)),
                )),
            ) => tracing::debug!(unplanned, fee_rate, %error, "no consolidation this round"),
            (Proposal::Consolidation { unplanned, fee_rate }, Err(error)) => {
                tracing::warn!(unplanned, fee_rate, %error, "the ledger refused a consolidation");
            }
        }
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
        let at = Duration::from_secs;
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

    #[test]
    fn the_fee_rate_is_the_estimate_rounded_up_within_the_network_s_bounds() {
        let vault = BtcVaultParams { group_key: [2; 32], min_fee_rate: 2, max_fee_rate: 50 };
        assert_eq!(fee_rate(&vault, None), 2, "no estimate: the lowest rate");
        assert_eq!(fee_rate(&vault, Some(1_000)), 2, "below the floor");
        assert_eq!(fee_rate(&vault, Some(3_001)), 4, "rounded up");
        assert_eq!(fee_rate(&vault, Some(900_000)), 50, "capped");
    }

    fn ledger(queued: usize, plans: Vec<PayoutPlan>, unplanned: usize) -> LedgerReading {
        LedgerReading { batch: 9, queued, plans, unplanned, keys: None, unswept: 0, old_key_outputs: 0 }
    }

    fn plan(id: u64, paying: bool) -> PayoutPlan {
        let payouts = if paying {
            vec![bridge::withdrawals::BtcPayout { tx_hash: [id as u8; 32], script_pubkey: Vec::new(), amount_sat: 1 }]
        } else {
            Vec::new()
        };
        PayoutPlan { id, batch: id, fee_rate: 1, budget_sat: 1_000, inputs: Vec::new(), payouts }
    }

    #[test]
    fn a_round_records_deep_payouts_then_plans_the_queue_once_its_window_has_passed() {
        let vault = BtcVaultParams { group_key: [2; 32], min_fee_rate: 1, max_fee_rate: 50 };
        let mut keeping = Keeping::new(vault, 3, Duration::from_secs(60));
        let at = Duration::from_secs;
        let plans = vec![plan(1, true), plan(2, true)];
        let chain = ChainReading {
            statuses: vec![
                (1, PayoutStatus::Confirmed { attempt: 1, confirmations: 3 }),
                (2, PayoutStatus::Confirmed { attempt: 0, confirmations: 2 }),
            ],
            tip: Some(120),
        };
        let first = keeping.decide(&ledger(4, plans.clone(), 0), &chain, 1, at(0));
        assert_eq!(
            first,
            vec![Proposal::Confirmation { plan: 1, attempt: 1, height: 118, confirmations: 3 }],
            "only the payout 3 deep is recorded, at the block 3 below the tip's successor; the queue waits"
        );
        assert!(
            keeping
                .decide(&ledger(4, plans.clone(), 0), &chain, 1, at(59))
                .iter()
                .all(|p| !matches!(p, Proposal::Payout { .. }))
        );
        let due = keeping.decide(&ledger(4, plans.clone(), 0), &chain, 1, at(60));
        assert_eq!(due.last(), Some(&Proposal::Payout { queued: 4, fee_rate: 1, waited: at(60) }));
        // Refused for liquidity: the queue keeps its age and is proposed again next round.
        let liquidity = ApplyError::Tx(TxError::VaultLiquidity { needed: 10, available: 1, max_inputs: 1 });
        let mut round = PayoutRound::default();
        keeping.outcome(&Proposal::Payout { queued: 4, fee_rate: 1, waited: at(60) }, Err(&liquidity), &mut round);
        assert!(!round.planned);
        let again = keeping.decide(&ledger(4, plans.clone(), 0), &chain, 1, at(61));
        assert_eq!(again.last(), Some(&Proposal::Payout { queued: 4, fee_rate: 1, waited: at(61) }));
        // Planned: the next withdrawal starts a new window.
        keeping.outcome(&Proposal::Payout { queued: 4, fee_rate: 1, waited: at(61) }, Ok(()), &mut round);
        assert!(round.planned);
        let next = keeping.decide(&ledger(1, plans, 0), &chain, 1, at(70));
        assert!(next.iter().all(|p| !matches!(p, Proposal::Payout { .. })), "{next:?}");
    }

    #[test]
    fn a_consolidation_is_proposed_when_many_outputs_wait_fees_are_low_and_nothing_else_waits() {
        let vault = BtcVaultParams { group_key: [2; 32], min_fee_rate: 1, max_fee_rate: 50 };
        let mut keeping = Keeping::new(vault, 1, Duration::ZERO);
        let quiet = ChainReading { statuses: Vec::new(), tip: None };
        let many = MIN_CONSOLIDATION_INPUTS;
        let consolidate = Proposal::Consolidation { unplanned: many, fee_rate: 1 };
        assert_eq!(keeping.decide(&ledger(0, Vec::new(), many), &quiet, 1, Duration::ZERO), vec![consolidate]);
        assert!(keeping.decide(&ledger(0, Vec::new(), many - 1), &quiet, 1, Duration::ZERO).is_empty(), "too few");
        let high = vault.min_fee_rate * CONSOLIDATION_FEE_RATE_FACTOR + 1;
        assert!(keeping.decide(&ledger(0, Vec::new(), many), &quiet, high, Duration::ZERO).is_empty(), "fees high");
        assert!(
            keeping
                .decide(&ledger(1, Vec::new(), many), &quiet, 1, Duration::ZERO)
                .iter()
                .all(|p| !matches!(p, Proposal::Consolidation { .. })),
            "a withdrawal waits: it is paid first"
        );
        let pending = ChainReading { statuses: vec![(5, PayoutStatus::Unseen)], tip: None };
        assert!(
            keeping.decide(&ledger(0, vec![plan(5, false)], many), &pending, 1, Duration::ZERO).is_empty(),
            "one pending"
        );
    }
}
