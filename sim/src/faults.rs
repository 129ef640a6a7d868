//! Faults, chosen by the seed during the fault phase: crashes of the coordinator and the
//! confirmers (each restarts from what it had committed), confirmers that stop stepping, L1
//! nodes that lag, junk from other wallets, Arweave reorgs; and the healing that ends them.

use std::sync::atomic::Ordering;

use crate::SimError;
use crate::world::World;

impl World {
    pub(crate) fn crash_coordinator(&mut self, down_ms: u64) {
        self.stop_coordinator(down_ms);
        self.faults += 1;
        self.log(format!("FAULT coordinator crashes for {} s", down_ms / 1000));
    }

    /// Confirmer `index`'s process (its follower and its watchman) is gone for `down_ms`: what
    /// it had in memory with it, its nonces and kept commitments included.
    pub(crate) fn stop_confirmer(&mut self, index: usize, down_ms: u64) {
        let now = self.now();
        let Some(role) = self.confirmers.get_mut(index) else { return };
        role.follower = None;
        role.store = None;
        role.watchman = None;
        role.down_until = Some(now + down_ms);
    }

    /// The coordinator's process is gone for `down_ms`: what it had in memory with it.
    pub(crate) fn stop_coordinator(&mut self, down_ms: u64) {
        self.coordinator.sequencer = None;
        self.coordinator.publishing = None;
        self.coordinator.store = None;
        self.coordinator.keeper = None;
        self.coordinator.da_snapshots = None;
        self.coordinator.forced = None;
        self.coordinator.btc_deposits = None;
        self.coordinator.down_until = Some(self.now() + down_ms);
    }

    pub(crate) async fn inject_faults(&mut self) -> Result<(), SimError> {
        let now = self.now();
        // Without crashes (`SimConfig::crashes`) a crash's own draws are still made, so the
        // faults after it are drawn as in the run with crashes, until a role that would have
        // been down draws where it would not have.
        if self.coordinator.sequencer.is_some() && self.rng.chance(3_000) {
            let down = self.rng.between(5, 120) * 1000;
            if self.config.crashes {
                self.crash_coordinator(down);
            }
        }
        for index in 0..self.confirmers.len() {
            if self.confirmers[index].follower.is_some() && self.rng.chance(3_000) {
                let down = self.rng.between(5, 300) * 1000;
                if self.config.crashes {
                    self.stop_confirmer(index, down);
                    self.faults += 1;
                    self.log(format!("FAULT confirmer {index} crashes for {} s", down / 1000));
                }
            }
            if self.rng.chance(3_000) {
                let stall = self.rng.between(60, 1_200) * 1000;
                self.confirmers[index].stalled_until = Some(now + stall);
                self.faults += 1;
                self.log(format!("FAULT confirmer {index} stops stepping for {} s", stall / 1000));
            }
            if self.rng.chance(3_000) {
                let lag = self.rng.between(5, 200);
                let lasting = self.rng.between(60, 1_800) * 1000;
                self.confirmers[index].lag_blocks.store(lag, Ordering::SeqCst);
                // Its Bitcoin node lags as long (a Bitcoin block is five Ethereum slots here).
                self.confirmers[index].btc_lag.store(lag / 5, Ordering::SeqCst);
                self.confirmers[index].lag_until = Some(now + lasting);
                self.faults += 1;
                self.log(format!("FAULT confirmer {index}'s L1 node lags {lag} blocks for {} s", lasting / 1000));
            }
            if self.confirmers[index].lag_until.is_some_and(|until| now >= until) {
                self.confirmers[index].lag_blocks.store(0, Ordering::SeqCst);
                self.confirmers[index].btc_lag.store(0, Ordering::SeqCst);
                self.confirmers[index].lag_until = None;
                self.log(format!("confirmer {index}'s L1 node caught up"));
            }
        }
        if self.rng.chance(10_000) {
            self.post_junk();
        }
        self.inject_mesh_faults();
        self.fail_disks().await?;
        self.skew_clocks()?;
        Ok(())
    }

    /// Another wallet posts under the bridge's tags: random bytes, or a batch signed by a key
    /// that is not the coordinator's.
    pub(crate) fn post_junk(&mut self) {
        let number = self.coordinator.sequencer.as_ref().map_or(1, |s| s.state().head().next_number);
        let bytes = self.rng.bytes32().to_vec();
        let wallet = self.rng.below(1_000);
        if let Ok(mut arweave) = self.arweave.lock() {
            arweave.post(crate::arweave::Owner::Other(wallet), vec![(number, bytes)]);
        }
        self.faults += 1;
        self.log(format!("FAULT wallet {wallet} posts junk tagged batch {number}"));
    }

    pub(crate) fn mine_block(&mut self) {
        let reorg = self.in_fault_phase() && self.rng.chance(50_000);
        let depth = self.rng.between(1, crate::arweave::MAX_REORG_BLOCKS);
        let Ok(mut arweave) = self.arweave.lock() else { return };
        if reorg {
            let dropped = arweave.reorg(depth);
            let height = arweave.height();
            drop(arweave);
            self.faults += 1;
            self.log(format!("FAULT Arweave reorg drops {dropped} blocks, height now {height}"));
        } else {
            arweave.mine();
        }
    }

    pub(crate) async fn restart_due(&mut self) -> Result<(), SimError> {
        self.disks_back().await?;
        let now = self.now();
        if self.coordinator.down_until.is_some_and(|until| now >= until) {
            self.start_coordinator().await?;
        }
        for index in 0..self.confirmers.len() {
            if self.confirmers[index].down_until.is_some_and(|until| now >= until) {
                self.start_confirmer(index).await?;
            }
        }
        Ok(())
    }

    /// Faults stop: whatever is down comes back now, lags end.
    pub(crate) fn heal(&mut self) {
        self.healed = true;
        let now = self.now();
        if self.coordinator.down_until.is_some() {
            self.coordinator.down_until = Some(now);
        }
        for role in &mut self.confirmers {
            if role.down_until.is_some() {
                role.down_until = Some(now);
            }
            role.stalled_until = None;
            role.lag_blocks.store(0, Ordering::SeqCst);
            role.btc_lag.store(0, Ordering::SeqCst);
            role.lag_until = None;
        }
        self.coordinator.btc_lag.store(0, Ordering::SeqCst);
        self.coordinator.btc_lag_until = None;
        self.mesh.heal();
        self.true_clocks();
        self.log("healing: faults stop, every role is up and in sync from now on");
    }
}
