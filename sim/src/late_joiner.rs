//! A confirmer that joins late (fast sync): two thirds into the fault phase its operator hands
//! it the newest checkpoint file a watchman wrote (the group's signature over a batch's header
//! hash), and it starts from the coordinator's state snapshot on the DA instead of from
//! genesis, through the binary's own code: `signed_checkpoint`'s check of the file,
//! `fast_sync_with_state` (the DA's batch at the checkpoint must hash to it, the snapshot must
//! rebuild that header's state root), then `Follower::open_from` and its steps.
//!
//! The coordinator publishes its snapshots with the binary's own `DaSnapshots` task, on the
//! batches the watchmen's checkpoints name (both every `CHECKPOINT_EVERY`). A checkpoint
//! whose snapshot is not on the DA yet is passed over for an older one; with none usable the
//! joiner asks again a minute later.
//!
//! Invariants: with an honest coordinator, every batch the joiner replays has the header the
//! honest sequencer sealed (`fast-sync-agrees`), and after healing it has joined and holds the
//! coordinator's state (`fast-sync-liveness`); it never makes bad history hard-final, and it
//! alarms bad history published after its checkpoint.
//!
//! During the fault phase it crashes now and then and is started again as its binary is, with
//! the same checkpoint on a database that is no longer empty: `fast_sync_with_state` must say
//! `Resumed`, and `Follower::open` resumes from its own snapshot and record (`role-restarts`).
//! Its crashes are drawn on a stream of its own (the seed xor [`LATE_STREAM`]), and it is not a
//! watchman: a seed's run is otherwise the same with it as without.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chains::da::DataAvailability;
use chains::snapshots::Restored;
use confirmer::fast_sync::{Checkpoint, FastSynced, fast_sync_with_state};
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;

use crate::SimError;
use crate::clock::NodeClock;
use crate::confirmers::as_simulated;
use crate::rng::SimRng;
use crate::world::{STEP_LIMIT, World};

/// Checkpoint files tried per attempt, newest first: an operator tries a few, not every one.
pub(crate) const FILES_PER_ATTEMPT: usize = 3;
/// Between two attempts to join.
const RETRY_MS: u64 = 60_000;
/// The joiner's crashes: the seed, xor this.
const LATE_STREAM: u64 = 0x1a7e_5ca7;

pub(crate) struct LateJoiner {
    pub(crate) url: String,
    pub(crate) follower: Option<Follower>,
    /// The checkpoint it joined from.
    pub(crate) joined_from: Option<u64>,
    /// Its operator's checkpoint, given again at every start.
    checkpoint: Option<Checkpoint>,
    next_attempt_ms: u64,
    down_until: Option<u64>,
    rng: SimRng,
}

impl LateJoiner {
    pub(crate) fn new(url: String, join_at_ms: u64, seed: u64) -> Self {
        LateJoiner {
            url,
            follower: None,
            joined_from: None,
            checkpoint: None,
            next_attempt_ms: join_at_ms,
            down_until: None,
            rng: SimRng::new(seed ^ LATE_STREAM),
        }
    }
}

impl World {
    /// Once a tick: join when due, then step like any confirmer.
    pub(crate) async fn late_joiner_turn(&mut self) -> Result<(), SimError> {
        let now = self.now();
        if self.late.follower.is_none() {
            match (self.late.checkpoint, self.late.down_until) {
                (Some(checkpoint), Some(until)) if now >= until || self.healed => {
                    self.restart_late(checkpoint).await?;
                }
                (Some(_), _) => {}
                (None, _) if now >= self.late.next_attempt_ms => {
                    self.late.next_attempt_ms = now + RETRY_MS;
                    self.join_late().await?;
                }
                (None, _) => {}
            }
            return Ok(());
        }
        if self.in_fault_phase() && self.late.rng.chance(3_000) {
            let down = self.late.rng.between(5, 120) * 1000;
            self.late.follower = None;
            self.late.down_until = Some(now + down);
            self.faults += 1;
            self.log(format!("FAULT the late confirmer crashes for {} s", down / 1000));
            return Ok(());
        }
        let Some(follower) = self.late.follower.as_mut() else { return Ok(()) };
        let result = follower.step(STEP_LIMIT).await;
        let status = follower.status();
        let head = follower.state().head().last_hash;
        let flushed = follower.flush_snapshots().await;
        match &result {
            Ok(step) => {
                if let Some(alarm) = &step.alarm {
                    let (kind, number) = (alarm.kind.as_str(), alarm.number);
                    self.log(format!("the late confirmer ALARMS {kind} at batch {number}: {}", alarm.detail));
                }
            }
            Err(error) => {
                self.log(format!("the late confirmer's step failed: {error}"));
                if error.is_fatal() {
                    self.violate("tasks-live", format!("the late confirmer's follow task died: {error}"));
                }
            }
        }
        self.note_snapshot("the late confirmer", flushed);
        self.check_late_joiner(&status, head);
        Ok(())
    }

    /// Tries the newest checkpoint files; the first whose snapshot checks is joined from.
    async fn join_late(&mut self) -> Result<(), SimError> {
        let Some(key) = self.keys.vault_key.map(|k| k.serialize()) else { return Ok(()) };
        let files: Vec<_> = self.checkpoint_files.values().rev().take(FILES_PER_ATTEMPT).cloned().collect();
        if files.is_empty() {
            return Ok(());
        }
        let store = ConfirmerStore::open(&self.late.url).await.map_err(SimError::role("late joiner store"))?;
        let da: Arc<dyn DataAvailability> = Arc::new(self.da.clone());
        let mut passed = Vec::new();
        for file in files {
            // What `confirmer follow --checkpoint-file` does with the file.
            let (number, header_hash) = match file.verify(&self.params, &key) {
                Ok(vouched) => vouched,
                Err(error) => {
                    self.violate("checkpoint-true", format!("a watchman's checkpoint file is refused: {error}"));
                    return Ok(());
                }
            };
            let checkpoint = Checkpoint { number, header_hash };
            match fast_sync_with_state(da.as_ref(), &store, &self.params, checkpoint).await {
                Ok((FastSynced::FromSnapshot { number, locator }, Some(state))) => {
                    let restored = Restored { state, from: number, refused: Vec::new() };
                    let follower = Follower::open_from(da, store, self.params.clone(), self.late_verifiers(), restored)
                        .await
                        .map_err(SimError::role("late joiner start"))?;
                    let follower = as_simulated(follower, self.late_clock(), self.forced_checker());
                    self.late.follower = Some(follower);
                    self.late.joined_from = Some(number);
                    self.late.checkpoint = Some(checkpoint);
                    self.log(format!(
                        "a late confirmer joins from the checkpoint of batch {number} (snapshot {locator})"
                    ));
                    return Ok(());
                }
                Ok((synced, _)) => {
                    return Err(SimError::Role {
                        what: "late joiner",
                        reason: format!("an empty database fast-synced as {synced:?}"),
                    });
                }
                Err(error) => passed.push(format!("{number}: {error}")),
            }
        }
        self.log(format!("the late confirmer cannot join yet: {}", passed.join("; ")));
        Ok(())
    }

    /// Its L1 nodes never lag, and its machine's clock is true.
    fn late_verifiers(&self) -> confirmer::deposits::DepositVerifiers {
        self.deposit_verifiers(Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)))
    }

    fn late_clock(&self) -> confirmer::patience::Clock {
        Arc::new(NodeClock::default().reader(self.now_ms.clone()))
    }

    /// A start after a crash, with the checkpoint it was first given: its database holds its
    /// record, so fast sync resumes from that and the follower opens on it.
    async fn restart_late(&mut self, checkpoint: Checkpoint) -> Result<(), SimError> {
        let store = ConfirmerStore::open(&self.late.url).await.map_err(SimError::role("late joiner store"))?;
        let da: Arc<dyn DataAvailability> = Arc::new(self.da.clone());
        match fast_sync_with_state(da.as_ref(), &store, &self.params, checkpoint).await {
            Ok((FastSynced::Resumed, _)) => {}
            other => {
                let detail = format!("the late confirmer's start on its own database fast-synced again: {other:?}");
                self.violate("role-restarts", detail);
                return Ok(());
            }
        }
        let follower = match Follower::open(da, store, self.params.clone(), self.late_verifiers()).await {
            Ok(follower) => follower,
            Err(error) => {
                self.violate("role-restarts", format!("the late confirmer cannot start from its store: {error}"));
                return Ok(());
            }
        };
        let follower = as_simulated(follower, self.late_clock(), self.forced_checker());
        let (from, replayed) = (follower.restored_from(), follower.status().replayed);
        self.late.follower = Some(follower);
        self.late.down_until = None;
        self.log(format!("the late confirmer is up again: its snapshot of batch {from}, replayed {replayed}"));
        Ok(())
    }

    /// `fast-sync-agrees`, and bad history never hard-final, after each of its steps.
    fn check_late_joiner(&mut self, status: &confirmer::follower::Status, head: [u8; 32]) {
        let (replayed, hard_final) = (status.replayed, status.hard_final);
        if let Some((bad, kind)) = self.bad_from {
            // A late equivocation's batch was final before its rival existed: it must fall
            // back once the joiner alarms, as on every confirmer (checks.rs).
            let late = self.attack.as_ref().is_some_and(|a| a.kind == crate::byzantine::AttackKind::LateEquivocation);
            if hard_final >= bad && (!late || !status.alarms.is_empty()) {
                self.violate(
                    "bad-history-not-final",
                    format!("the late confirmer made batch {hard_final} hard-final, past the {kind} at batch {bad}"),
                );
            }
            return;
        }
        if self.attack.is_none() && self.truth.header(replayed).is_some_and(|sealed| sealed != head) {
            self.violate(
                "fast-sync-agrees",
                format!("the late confirmer's batch {replayed} is not the batch the honest sequencer sealed"),
            );
        }
        // A state it took from a snapshot that its header does not commit to fails the next
        // batch's root: an honest coordinator accused.
        if let Some(alarm) = status.alarms.first()
            && self.attack.is_none()
        {
            let detail = format!(
                "the late confirmer (joined at batch {:?}) alarmed ({}) at batch {} though the coordinator is honest: {}",
                self.late.joined_from,
                alarm.kind.as_str(),
                alarm.number,
                alarm.detail
            );
            self.violate("fast-sync-agrees", detail);
        }
    }

    /// After healing: with bad history after its checkpoint, the joiner alarmed it
    /// (`bad-history-alarmed`); with an honest coordinator, `fast-sync-liveness`.
    pub(crate) fn check_late_joiner_end(&mut self) {
        if let Some((bad, kind)) = self.bad_from {
            let silent = self.late.follower.as_ref().is_some_and(|f| f.status().alarms.is_empty());
            if silent && self.late.joined_from.is_some_and(|from| from < bad) {
                let detail = format!(
                    "the late confirmer, joined at batch {:?}, never alarmed the {kind} at batch {bad}",
                    self.late.joined_from
                );
                self.violate("bad-history-alarmed", detail);
            }
            return;
        }
        if self.attack.is_some() {
            return;
        }
        let cutoff = self.sealed_before_quiet;
        let Some(follower) = &self.late.follower else {
            let newest = self.checkpoint_files.keys().last().copied();
            self.violate(
                "fast-sync-liveness",
                format!("the late confirmer never joined (the newest checkpoint file is of batch {newest:?})"),
            );
            return;
        };
        let status = follower.status();
        let head = follower.state().head().last_hash;
        if status.replayed < cutoff
            || status.hard_final < cutoff
            || self.truth.header(status.replayed).is_some_and(|sealed| sealed != head)
        {
            let detail = format!(
                "the late confirmer (joined at batch {:?}) replayed {}, hard-final {}; the coordinator sealed {cutoff} before the quiet end, or its head is not the sealed batch",
                self.late.joined_from, status.replayed, status.hard_final
            );
            self.violate("fast-sync-liveness", detail);
        }
    }
}
