//! When this watchman signs a fee bump: only when its own Bitcoin node shows the previous
//! attempt of the plan unconfirmed for `bump_after_blocks` blocks. The requester's word counts
//! for nothing: the heights are this watchman's node's, read by [`BumpClock::run`] in the
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
use std::time::Duration;

use bridge::btc_payout::PayoutPlan;
use bridge::{BtcNetwork, BtcVaultParams};
use chains::bitcoin::{CoreRpc, PayoutBroadcaster, PayoutRpcError, PayoutStatus};

use super::book::SettlementBook;

#[derive(Debug, Default)]
struct View {
    /// The node's height at the last refresh; `None` until the node first answered.
    tip: Option<u64>,
    /// Plans with an attempt in the node's active chain: never bumped again. One entry per plan
    /// ever confirmed (8 bytes each), so confirmed plans are not asked about again.
    confirmed: BTreeSet<u64>,
    /// (plan, attempt) → the height this watchman first knew of the attempt. At most
    /// `MAX_BUMPS + 1` entries per pending plan of the book; dropped once the plan confirms.
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
        self.view.lock().map(|v| v.confirmed.contains(&plan)).unwrap_or(false)
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
        if view.confirmed.contains(&plan) {
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

    /// Reads the node's height and where each of `plans` stands.
    pub async fn refresh(
        &self,
        rpc: &CoreRpc,
        broadcaster: &PayoutBroadcaster,
        plans: &[PayoutPlan],
    ) -> Result<(), PayoutRpcError> {
        let tip = rpc.block_count().await?;
        let confirmed = self.view.lock().map(|v| v.confirmed.clone()).unwrap_or_default();
        let mut statuses = Vec::with_capacity(plans.len());
        for plan in plans.iter().filter(|p| !confirmed.contains(&p.id)) {
            statuses.push((plan.id, broadcaster.status(plan).await?));
        }
        let Ok(mut view) = self.view.lock() else { return Ok(()) };
        view.tip = Some(tip);
        for (id, status) in statuses {
            match status {
                PayoutStatus::Confirmed { .. } => {
                    view.confirmed.insert(id);
                    view.first_known.retain(|(plan, _), _| *plan != id);
                }
                PayoutStatus::Pending { attempt } => {
                    view.first_known.entry((id, attempt)).or_insert(tip);
                }
                PayoutStatus::Unseen => {}
            }
        }
        Ok(())
    }

    /// Refreshes from `rpc` every `poll`, for the plans of `book`, until the task is dropped. A
    /// node error leaves the last view (a stale tip only delays bumps) and is retried.
    pub fn spawn(
        &self,
        rpc: CoreRpc,
        book: SettlementBook,
        vault: BtcVaultParams,
        network: BtcNetwork,
        poll: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        let mut broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, network);
        tokio::spawn(async move {
            loop {
                if let Some(keys) = book.btc_keys() {
                    broadcaster.set_keys(keys);
                }
                let plans: Vec<PayoutPlan> =
                    book.owing_from(1).iter().flat_map(|(_, s)| s.btc_plans.iter().cloned()).collect();
                if let Err(error) = clock.refresh(&rpc, &broadcaster, &plans).await {
                    tracing::warn!(%error, "the bump clock could not read this watchman's Bitcoin node");
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}
