//! State snapshots under faults: the coordinator and every confirmer save their state every
//! few batches in their own SQLite database, as their binaries do, so a crash's restart loads
//! the newest snapshot and replays only the batches after it. A snapshot may rot on its disk
//! while its role is down: rewritten whole and well-formed (its checksum right), with one
//! account's nonce changed, so only the root its entries rebuild, checked against the batch's
//! signed header, can tell. The invariant `start-from-newest-good-snapshot` holds that every
//! restart starts from the newest snapshot that did not rot, or from genesis when none is left;
//! `role-restarts`, that an honest role's start from what it committed succeeds at all.
//!
//! A snapshot on the DA may be forged in the same way: a gateway serves, first, a copy of the
//! coordinator's snapshot with one nonce changed, so a late joiner's fast sync must refuse it
//! by the root it rebuilds and take the true one after it (`fast-sync-agrees`).
//!
//! The rot is chosen on a stream of its own (the seed xor [`SNAPSHOT_STREAM`]), so it leaves
//! every other choice of a seed's run as it was.

use bridge::state::snapshot::Snapshot;
use bridge::state::{AccountEntry, StateKey};
use chains::snapshots::{SnapshotMeta, SnapshotPolicy, SnapshotStore};

use crate::checkpoints::CHECKPOINT_EVERY;
use crate::disk::Disk;
use crate::world::{STEP_LIMIT, World};

/// The coordinator's: a snapshot on every batch the watchmen's checkpoints may name (every
/// [`CHECKPOINT_EVERY`]), the two newest kept, so that a late joiner handed a checkpoint finds
/// its snapshot on the DA. A run seals about a hundred batches, so restarts meet both a
/// snapshot and batches to replay after it. It seals one batch per tick and the tick waits for
/// the write.
pub(crate) fn coordinator_policy() -> SnapshotPolicy {
    SnapshotPolicy { every_batches: CHECKPOINT_EVERY, every_ms: 0, keep: 2 }
}

/// A confirmer's: one every [`STEP_LIMIT`] batches, so that at most one comes due within a
/// step. A second one due while the first is still being written is skipped by the keeper, and
/// whether it still is depends on when a worker thread finished: the run would not replay.
pub(crate) fn confirmer_policy() -> SnapshotPolicy {
    SnapshotPolicy { every_batches: STEP_LIMIT as u64, every_ms: 0, keep: 2 }
}

/// The rot's stream of choices: the seed, xor this.
pub(crate) const SNAPSHOT_STREAM: u64 = 0x5a4b_0fd5;

/// One restart in two (during the fault phase) finds its newest snapshot rotten.
const ROT_PER_MILLION: u64 = 500_000;

impl World {
    /// Waits for the snapshot a batch made due, so that nothing in the run depends on when a
    /// worker thread finishes.
    pub(crate) async fn coordinator_snapshot_saved(&mut self) {
        let Some(sequencer) = self.coordinator.sequencer.as_mut() else { return };
        let flushed = sequencer.flush_snapshots().await;
        self.note_snapshot("coordinator", flushed);
    }

    pub(crate) async fn confirmer_snapshot_saved(&mut self, index: usize) {
        let Some(follower) = self.confirmers[index].follower.as_mut() else { return };
        let flushed = follower.flush_snapshots().await;
        self.note_snapshot(&format!("confirmer {index}"), flushed);
    }

    /// What a flushed snapshot write came to; a write the disk refused is logged, as the role
    /// logs it.
    pub(crate) fn note_snapshot(&mut self, role: &str, flushed: Result<Option<u64>, impl std::fmt::Display>) {
        match flushed {
            Ok(Some(number)) => self.log(format!("{role} saved its state at batch {number}")),
            Ok(None) => {}
            Err(error) => self.log(format!("{role} could not save its state: {error}")),
        }
    }

    /// The coordinator's `DaSnapshots` turn, after each publishing round: its newest snapshot
    /// to the DA once it passes a multiple of [`CHECKPOINT_EVERY`] and its batch is published.
    pub(crate) async fn publish_snapshot(&mut self) {
        let now = self.now();
        let Some(task) = self.coordinator.da_snapshots.as_mut() else { return };
        let before = task.task().published();
        let Some((outcome, next)) = task.turn_if_due(now).await else { return };
        let number = task.task().published();
        let name = task.name();
        if number != before {
            self.log(format!("coordinator published its snapshot of batch {number} to the DA"));
            self.forge_da_snapshot(number).await;
        }
        self.coordinator_task_turned(name, outcome, next);
    }

    /// During the fault phase, one DA snapshot in two gets a forged twin that readers meet first.
    async fn forge_da_snapshot(&mut self, number: u64) {
        // Only a joiner reads them: once it has joined, a forgery would test nothing.
        if !self.in_fault_phase() || self.late.joined_from.is_some() || !self.snapshot_rng.chance(ROT_PER_MILLION) {
            return;
        }
        let Some(store) = &self.coordinator.store else { return };
        let Ok(Some(bytes)) = store.snapshots().load(number).await else { return };
        let Ok(mut snapshot) = Snapshot::decode(&bytes) else { return };
        if !change_a_nonce(&mut snapshot) {
            return;
        }
        if let Ok(mut arweave) = self.arweave.lock() {
            arweave.post_snapshot_first(number, snapshot.encode());
        }
        self.faults += 1;
        self.log(format!(
            "FAULT the DA serves a forged copy of the snapshot of batch {number} first (a nonce changed)"
        ));
    }

    /// Before a restart in the fault phase: the newest snapshot may rot. Returns the batch a
    /// correct start restores: the newest snapshot that did not rot, or 0 (genesis).
    pub(crate) async fn rot_before_start(&mut self, disk: Disk, store: &SnapshotStore) -> u64 {
        let Ok(numbers) = store.numbers().await else { return 0 };
        if self.in_fault_phase()
            && !self.refuses(disk)
            && self.snapshot_rng.chance(ROT_PER_MILLION)
            && let Some(&newest) = numbers.first()
            && !self.rotten.contains(&(disk, newest))
            && rot(store, newest).await
        {
            self.rotten.insert((disk, newest));
            self.faults += 1;
            self.log(format!("FAULT {disk}'s snapshot of batch {newest} rots on its disk (a nonce changed)"));
        }
        numbers.into_iter().find(|number| !self.rotten.contains(&(disk, *number))).unwrap_or(0)
    }

    /// After a start: it must have restored what `expected` names.
    pub(crate) fn check_restored(&mut self, disk: Disk, restored: u64, expected: u64) {
        if restored != expected {
            let detail = format!(
                "{disk} started from the snapshot of batch {restored}, but its newest good snapshot is of batch {expected}{}",
                if self.rotten.contains(&(disk, restored)) { " (it started from a rotten one)" } else { "" }
            );
            self.violate("start-from-newest-good-snapshot", detail);
        }
    }
}

/// Rewrites snapshot `number` with the first account's nonce one higher, well-formed and with
/// its checksum right. False when there is nothing to change or the write failed.
async fn rot(store: &SnapshotStore, number: u64) -> bool {
    let Ok(Some(bytes)) = store.load(number).await else { return false };
    let Ok(mut snapshot) = Snapshot::decode(&bytes) else { return false };
    if !change_a_nonce(&mut snapshot) {
        return false;
    }
    // `keep` as large as it gets: the rot prunes nothing.
    store.save(&SnapshotMeta::of(&snapshot), &snapshot.encode(), usize::MAX).await.is_ok()
}

/// The first account with a nonce gets it one higher; false when no account has one.
fn change_a_nonce(snapshot: &mut Snapshot) -> bool {
    for (key, value) in &mut snapshot.entries {
        let StateKey::Account(_) = key else { continue };
        let Ok(mut entry) = AccountEntry::decode(value) else { continue };
        if entry.nonce == 0 {
            continue;
        }
        entry.nonce = entry.nonce.wrapping_add(1);
        *value = bridge::codec::to_bytes(&entry);
        return true;
    }
    false
}
