//! When this watchman signs a fee bump: only when its own Bitcoin node shows the previous
//! attempt of the plan unconfirmed for `bump_after_blocks` blocks. The requester's word counts
//! for nothing: the heights are this watchman's node's, read by [`BumpClock::task`] in the
//! background, because the signing policy answers synchronously and cannot ask the node itself.
//!
//! An attempt's clock starts at the first height at which this watchman knew the attempt
//! existed: it approved signing it, its node showed it in the mempool, or it was asked to sign
//! the next one (then the clock starts and that request is refused). The last rule keeps a plan
//! the mempool refused or dropped payable, and bounds what a hostile requester can do: it can
//! move a plan at most one attempt per `bump_after_blocks` blocks, the pace of an honest stuck
//! payout, and never past the plan's fee budget.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bridge::btc_payout::PayoutPlan;
use bridge::{BtcNetwork, BtcVaultParams};
use chains::bitcoin::{BitcoinNode, PayoutBroadcaster, PayoutRpcError, PayoutStatus};
use chains::task::{Task, TaskError};

use super::book::{BTC_PRUNE_CONFIRMATIONS, SettlementBook, confirmed_height, is_btc_deep};

#[derive(Debug, Default)]
struct View {
    /// The node's height at the last refresh; `None` until the node first answered.
    tip: Option<u64>,
    /// Plans with an attempt in the node's active chain, each with the height of the block that
    /// confirmed it: never bumped again. Only plans the book still lists: once
    /// `BTC_PRUNE_CONFIRMATIONS` deep the book drops the plan (the policy then refuses it before
    /// asking this clock), and the next refresh drops it here.
    confirmed: BTreeMap<u64, u64>,
    /// (plan, attempt) → the height this watchman first knew of the attempt. At most
    /// `MAX_BUMPS + 1` entries per pending plan of the book; dropped once the plan confirms or
    /// leaves the book.
    first_known: BTreeMap<(u64, u32), u64>,
}

/// Cheap to clone; all clones share one view.
#[derive(Debug, Clone)]
pub struct BumpClock {
    view: Arc<Mutex<View>>,
    bump_after_blocks: u64,
}

impl BumpClock {
    pub fn new(bump_after_blocks: u64) -> Self {
        BumpClock { view: Arc::default(), bump_after_blocks: bump_after_blocks.max(1) }
    }

    pub fn bump_after_blocks(&self) -> u64 {
        self.bump_after_blocks
    }

    /// The node's height at the last refresh (for `/status` and tests).
    pub fn tip(&self) -> Option<u64> {
        self.view.lock().ok().and_then(|v| v.tip)
    }

    /// Whether the node showed an attempt of `plan` in its active chain at the last refresh.
    pub fn is_confirmed(&self, plan: u64) -> bool {
        self.view.lock().map(|v| v.confirmed.contains_key(&plan)).unwrap_or(false)
    }

    /// May attempt `attempt` of plan `plan` be signed now? Records what the request teaches.
    pub fn check(&self, plan: u64, attempt: u32) -> Result<(), String> {
        let Ok(mut view) = self.view.lock() else {
            return Err("the bump clock's lock is poisoned: this watchman signs no Bitcoin payout".into());
        };
        let Some(tip) = view.tip else {
            return Err("this watchman's Bitcoin node has not answered yet: no payout is signed before it does".into());
        };
        if attempt == 0 {
            view.first_known.entry((plan, 0)).or_insert(tip);
            return Ok(());
        }
        if view.confirmed.contains_key(&plan) {
            return Err(format!("payout plan {plan} is already confirmed in this watchman's node: no bump"));
        }
        let previous = attempt - 1;
        let Some(&since) = view.first_known.get(&(plan, previous)) else {
            view.first_known.insert((plan, previous), tip);
            metrics::counter!("watchman_btc_bumps_refused_total").increment(1);
            return Err(format!(
                "attempt {previous} of payout plan {plan} was never seen here: its clock starts now at height {tip}; attempt {attempt} is signed {} blocks later",
                self.bump_after_blocks
            ));
        };
        let waited = tip.saturating_sub(since);
        if waited < self.bump_after_blocks {
            metrics::counter!("watchman_btc_bumps_refused_total").increment(1);
            return Err(format!(
                "attempt {previous} of payout plan {plan} has been unconfirmed for {waited} of {} blocks in this watchman's node (height {tip})",
                self.bump_after_blocks
            ));
        }
        view.first_known.entry((plan, attempt)).or_insert(tip);
        Ok(())
    }

    /// Reads the node's height and where each of `plans` (the book's) stands; forgets plans
    /// not among them (the book dropped them). Returns the plans the node shows confirmed at
    /// least [`BTC_PRUNE_CONFIRMATIONS`] deep: the caller prunes them from the book.
    pub async fn refresh(
        &self,
        broadcaster: &PayoutBroadcaster,
        plans: &[PayoutPlan],
    ) -> Result<Vec<u64>, PayoutRpcError> {
        let tip = broadcaster.node().block_count().await?;
        let confirmed = self.view.lock().map(|v| v.confirmed.clone()).unwrap_or_default();
        let mut statuses = Vec::with_capacity(plans.len());
        for plan in plans {
            // A confirmed plan is asked about again only once it may be deep.
            let due = confirmed.get(&plan.id).is_none_or(|at| is_btc_deep(*at, tip));
            if due {
                statuses.push((plan.id, broadcaster.status(plan).await?));
            }
        }
        Ok(self.learn(tip, plans, statuses))
    }

    /// What a refresh read: the tip, the book's plans and the statuses asked. Returns the plans
    /// confirmed deep.
    fn learn(&self, tip: u64, plans: &[PayoutPlan], statuses: Vec<(u64, PayoutStatus)>) -> Vec<u64> {
        let Ok(mut view) = self.view.lock() else { return Vec::new() };
        view.tip = Some(tip);
        let listed: BTreeSet<u64> = plans.iter().map(|p| p.id).collect();
        view.confirmed.retain(|plan, _| listed.contains(plan));
        view.first_known.retain(|(plan, _), _| listed.contains(plan));
        let mut deep = Vec::new();
        for (id, status) in statuses {
            match status {
                PayoutStatus::Confirmed { confirmations, .. } => {
                    view.confirmed.insert(id, confirmed_height(tip, confirmations));
                    view.first_known.retain(|(plan, _), _| *plan != id);
                    if confirmations >= BTC_PRUNE_CONFIRMATIONS {
                        deep.push(id);
                    }
                }
                // A plan confirmed before stays confirmed (never bumped again), asked again once
                // as deep from now; only a plan never confirmed starts a bump clock.
                PayoutStatus::Pending { .. } | PayoutStatus::Unseen if view.confirmed.contains_key(&id) => {
                    tracing::warn!(
                        plan = id,
                        "a confirmed Bitcoin payout is no longer in the node's chain (a reorg?): not pruned"
                    );
                    view.confirmed.insert(id, tip);
                }
                PayoutStatus::Pending { attempt } => {
                    view.first_known.entry((id, attempt)).or_insert(tip);
                }
                PayoutStatus::Unseen => {}
            }
        }
        debug_assert!(view.confirmed.len() <= listed.len());
        deep
    }

    /// The background refresh as a supervised task (`chains::task::Supervisor::spawn`): each
    /// turn reads `node` for the plans of `book`. A node error leaves the last view (a stale tip
    /// only delays bumps) and the turn is retried.
    pub fn task(
        &self,
        node: impl BitcoinNode + 'static,
        book: SettlementBook,
        vault: BtcVaultParams,
        network: BtcNetwork,
    ) -> BumpClockTask {
        let broadcaster = PayoutBroadcaster::new(node, vault, network);
        BumpClockTask { clock: self.clone(), broadcaster, book }
    }
}

/// The name of the bump clock's task in `/health` and the `task` label of `bridge_task_*`.
pub const BUMP_CLOCK_TASK: &str = "bump-clock";

/// See [`BumpClock::task`].
#[derive(Debug)]
pub struct BumpClockTask {
    clock: BumpClock,
    /// Asks this watchman's own node (its tip and the plans' attempts).
    broadcaster: PayoutBroadcaster,
    book: SettlementBook,
}

impl Task for BumpClockTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        // The group's keys change with a rotation: the plans' scripts follow the ledger's.
        if let Some(keys) = self.book.btc_keys() {
            self.broadcaster.set_keys(keys);
        }
        let owing = self.book.owing_from(1);
        let plans: Vec<PayoutPlan> = owing.iter().flat_map(|(_, s)| s.btc_plans.iter().cloned()).collect();
        let deep = self.clock.refresh(&self.broadcaster, &plans).await.map_err(|error| {
            TaskError::transient(format!("the bump clock could not read this watchman's Bitcoin node: {error}"))
        })?;
        for (batch, settlement) in &owing {
            for plan in settlement.btc_plans.iter().filter(|p| deep.contains(&p.id)) {
                self.book.prune_btc_plan(*batch, plan.id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use super::*;

    fn plan(id: u64) -> PayoutPlan {
        PayoutPlan { id, batch: 1, fee_rate: 1, budget_sat: 1_000, inputs: Vec::new(), payouts: Vec::new() }
    }

    fn confirmed(confirmations: u64) -> PayoutStatus {
        PayoutStatus::Confirmed { attempt: 0, confirmations }
    }

    #[test]
    fn the_clock_keeps_only_the_books_plans_and_names_those_confirmed_deep() {
        let clock = BumpClock::new(3);
        let plans: Vec<PayoutPlan> = (1..=3).map(plan).collect();
        let deep = clock.learn(
            100,
            &plans,
            vec![(1, confirmed(1)), (2, PayoutStatus::Pending { attempt: 0 }), (3, PayoutStatus::Unseen)],
        );
        assert!(deep.is_empty());
        assert!(clock.is_confirmed(1));
        assert!(clock.check(1, 1).is_err(), "a confirmed plan is never bumped");
        clock.check(3, 0).unwrap();
        // Plan 1 confirmed in block 100 is asked about again at tip 105, six deep.
        let at = clock.view.lock().unwrap().confirmed[&1];
        assert_eq!(at, 100);
        assert!(!is_btc_deep(at, 104) && is_btc_deep(at, 105));
        assert_eq!(clock.learn(105, &plans, vec![(1, confirmed(6))]), vec![1]);

        // A confirmed plan the node no longer shows confirmed stays confirmed: no bump, no
        // pruning; asked again six blocks on.
        assert!(clock.learn(106, &plans, vec![(1, PayoutStatus::Pending { attempt: 0 })]).is_empty());
        assert!(clock.is_confirmed(1));
        assert!(clock.check(1, 1).is_err());

        // The book dropped plans 1 and 3 (pruned): nothing of them stays here.
        clock.learn(107, &plans[1..2], Vec::new());
        let view = clock.view.lock().unwrap();
        assert!(view.confirmed.is_empty());
        assert!(view.first_known.keys().all(|(plan, _)| *plan == 2), "{:?}", view.first_known);
    }

    #[test]
    fn the_clock_is_bounded_by_the_books_plans_however_many_were_ever_paid() {
        let clock = BumpClock::new(3);
        // A long run: plans come, confirm, go deep and leave the book, 10 at a time.
        for round in 0..1_000u64 {
            let plans: Vec<PayoutPlan> = (round * 10..round * 10 + 10).map(plan).collect();
            let statuses = plans.iter().map(|p| (p.id, confirmed(6))).collect();
            clock.learn(round, &plans, statuses);
            clock.check(round * 10, 0).ok();
        }
        let view = clock.view.lock().unwrap();
        assert!(
            view.confirmed.len() <= 10 && view.first_known.len() <= 10,
            "{} {}",
            view.confirmed.len(),
            view.first_known.len()
        );
    }
}
