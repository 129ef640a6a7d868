//! Confirmers: the real follower on its own SQLite store, started (and restarted after a crash)
//! from what the store holds, stepped once a tick, each with its watchman half (watchmen.rs).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bridge::{BtcNetwork, Chain};
use chains::bitcoin::DepositChecker;
use chains::da::DataAvailability;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;

use crate::SimError;
use crate::btc_chain::BTC_DEPTH;
use crate::disk::Disk;
use crate::l1::LaggingNode;
use crate::world::{MISSING_BATCH_WAIT, STEP_LIMIT, World};

/// A follower as every simulated confirmer runs it: the simulator's snapshot cadence, its
/// missing-batch wait, its machine's clock, and the forced check over the simulated stream.
pub(crate) fn as_simulated(
    follower: Follower,
    clock: confirmer::patience::Clock,
    forced: Option<confirmer::forced::ForcedChecker>,
) -> Follower {
    let follower = follower
        .with_snapshots(crate::snapshots::confirmer_policy())
        .with_missing_batch_wait(MISSING_BATCH_WAIT)
        .with_clock(clock);
    match forced {
        Some(checker) => follower.with_forced(checker),
        None => follower,
    }
}

impl World {
    /// A confirmer's checks of L1 facts, through its own Ethereum and Bitcoin nodes lagging by
    /// `lag_blocks` and `btc_lag` blocks.
    pub(crate) fn deposit_verifiers(&self, lag_blocks: Arc<AtomicU64>, btc_lag: Arc<AtomicU64>) -> DepositVerifiers {
        let node = LaggingNode { l1: self.l1.clone(), now_ms: self.now_ms.clone(), lag_blocks };
        let mut verifiers = DepositVerifiers::none().with(Chain::Ethereum, Arc::new(node));
        // Its Bitcoin node, through the real checker of deposits and payouts.
        if let (Some(btc), Some(key)) = (&self.btc, self.params.btc_vault.map(|v| v.internal_key())) {
            let node = btc.view(btc_lag);
            let checker = DepositChecker::new(node, BtcNetwork::Regtest, key, BTC_DEPTH as u32);
            verifiers = verifiers.with(Chain::Bitcoin, Arc::new(checker));
        }
        verifiers
    }

    pub(crate) async fn start_confirmer(&mut self, index: usize) -> Result<(), SimError> {
        let role = &self.confirmers[index];
        let store = ConfirmerStore::open(&role.url).await.map_err(SimError::role("confirmer store"))?;
        let verifiers = self.deposit_verifiers(role.lag_blocks.clone(), role.btc_lag.clone());
        let da: Arc<dyn DataAvailability> = Arc::new(self.da.clone());
        let clock = self.confirmers[index].clock.reader(self.now_ms.clone());
        let expected = self.rot_before_start(Disk::Confirmer(index), &store.snapshots()).await;
        let refuses = self.refuses(Disk::Confirmer(index));
        if refuses {
            store.refuse_writes(true).await.map_err(SimError::role("disk fault"))?;
        }
        let follower = match Follower::open(da, store.clone(), self.params.clone(), verifiers).await {
            Ok(follower) => follower,
            // It wrote at its start and the disk refused: the process exits again, to be
            // started once the disk takes writes.
            Err(error) if refuses => {
                self.confirmers[index].down_until = self.refused_until(Disk::Confirmer(index));
                self.log(format!("confirmer {index} cannot start on its disk: {error}"));
                return Ok(());
            }
            Err(error) => {
                self.violate("role-restarts", format!("confirmer {index} cannot start from its store: {error}"));
                return Ok(());
            }
        };
        self.check_restored(Disk::Confirmer(index), follower.restored_from(), expected);
        let follower = as_simulated(follower, Arc::new(clock), self.forced_checker());
        let status = follower.status();
        self.confirmers[index].follower = Some(follower);
        self.confirmers[index].store = Some(store);
        self.confirmers[index].watchman = Some(self.new_watchman(index)?);
        self.confirmers[index].down_until = None;
        self.log(format!("confirmer {index} up: replayed {}, hard-final {}", status.replayed, status.hard_final));
        Ok(())
    }

    pub(crate) async fn step_confirmer(&mut self, index: usize) -> Result<(), SimError> {
        let now = self.now();
        let role = &mut self.confirmers[index];
        if role.stalled_until.is_some_and(|until| now < until) {
            return Ok(());
        }
        let Some(follower) = role.follower.as_mut() else { return Ok(()) };
        let before = follower.status();
        let result = follower.step(STEP_LIMIT).await;
        let after = follower.status();
        match result {
            Ok(step) => {
                if let Some(alarm) = step.alarm {
                    self.log(format!(
                        "confirmer {index} ALARM {} at batch {}: {}",
                        alarm.kind.as_str(),
                        alarm.number,
                        alarm.detail
                    ));
                }
            }
            Err(error) => {
                self.log(format!("confirmer {index} step failed: {error}"));
                // Its binary's follow task dies on this, and the process stops (tasks.rs).
                if error.is_fatal() {
                    self.violate("tasks-live", format!("confirmer {index}'s follow task died: {error}"));
                }
            }
        }
        self.confirmer_snapshot_saved(index).await;
        if after.hard_final != before.hard_final || after.replayed != before.replayed {
            self.log(format!("confirmer {index} replayed {}, hard-final {}", after.replayed, after.hard_final));
        }
        if after.waiting != before.waiting
            && let Some(waiting) = &after.waiting
        {
            self.log(format!("confirmer {index} waits at batch {} for {}", waiting.batch, waiting.what));
        }
        Ok(())
    }
}
