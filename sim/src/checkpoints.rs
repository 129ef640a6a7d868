//! Every watchman's checkpoint duty, as the binary's `CheckpointDuty` runs it: the real
//! [`CheckpointSchedule`] decides which batch to sign and when (one session at a time, a pause
//! after a failure), the real [`checkpoint_request`] builds the question from the watchman's own
//! book, every signer's real policy judges it against its own replay, and the real
//! [`checkpoint_from_session`] makes the file a late confirmer is handed. The file is checked as
//! that confirmer checks it ([`SignedCheckpoint::verify`] under the group's key). Each tick, so
//! that a session that failed is retried after [`confirmer::watchman::CHECKPOINT_RETRY`] of
//! simulated time. The checkpoints a watchman wrote are its files: on its disk, they survive a
//! crash, and the restarted duty does not sign them again.
//!
//! A hostile requester also asks, every minute, for the checkpoint of the newest batch t
//! watchmen made hard-final with a header one bit off (watchmen.rs).
//!
//! `checkpoint-true`: every checkpoint the group signs verifies under its key, as a reader checks
//! it, and names the header the honest sequencer sealed for its batch (a checkpoint of anything
//! else lets a late confirmer start from a forged state). `checkpoint-liveness`: after healing
//! with an honest coordinator, the group signed the checkpoint of the newest multiple of
//! [`CHECKPOINT_EVERY`] every confirmer made hard-final.

use std::time::Duration;

use bridge::checkpoint::SignedCheckpoint;
use confirmer::watchman::{
    CheckpointSchedule, checkpoint_from_session, checkpoint_request, checkpoint_signing_request, due_checkpoint,
};
use tss::{SignedMessage, SigningRequest};

use crate::watchmen::{Ask, AskKind};
use crate::world::World;

/// Batches between two checkpoints: small, so that a run signs several.
pub(crate) const CHECKPOINT_EVERY: u64 = 4;

impl World {
    /// Watchman `index`'s schedule at a start: its memory is gone, its files are not.
    pub(crate) fn new_checkpoint_schedule(&self, index: usize) -> CheckpointSchedule {
        let last = self.confirmers[index].checkpoints_kept.last().copied().unwrap_or(0);
        CheckpointSchedule::new(CHECKPOINT_EVERY, last)
    }

    /// A checkpoint turn for every running watchman.
    pub(crate) fn checkpoint_turns(&mut self) {
        let now = self.now();
        let genesis = self.params.genesis_hash();
        for index in 0..self.confirmers.len() {
            let role = &mut self.confirmers[index];
            // A confirmer that stopped stepping stopped its watchman's loop too (one process).
            if role.stalled_until.is_some_and(|until| now < until) {
                continue;
            }
            let kept = &role.checkpoints_kept;
            let Some(watchman) = role.watchman.as_mut() else { continue };
            let hard_final = watchman.book.hard_final();
            let elapsed = Duration::from_millis(now);
            let Some(number) = watchman.checkpoints.start(hard_final, elapsed, |n| kept.contains(&n)) else {
                continue;
            };
            let asked = checkpoint_request(&watchman.book, genesis, number);
            let started = match asked {
                Ok((request, header)) => {
                    let ask = Ask {
                        what: "a watchman's checkpoint",
                        first: number,
                        last: number,
                        root: header,
                        kind: AskKind::Checkpoint { own: true },
                    };
                    self.asked.insert(request.message.clone(), ask.clone());
                    self.start_session(index, vec![request], ask)
                }
                Err(error) => {
                    self.log(format!("watchman {index}'s checkpoint of batch {number}: {error}"));
                    false
                }
            };
            if !started && let Some(watchman) = self.confirmers[index].watchman.as_mut() {
                watchman.checkpoints.failed(elapsed);
            }
        }
    }

    /// A checkpoint session signed: the file it makes is checked as a reader checks it and
    /// against the truth; if the asker's duty asked (and it is the same start), the file is
    /// written.
    pub(crate) fn checkpoint_signed(
        &mut self,
        asker: usize,
        generation: u64,
        own: bool,
        ask: &Ask,
        signatures: Vec<SignedMessage>,
    ) {
        let number = ask.last;
        for signed in &signatures {
            self.check_signed(ask, &signed.request.message);
        }
        let genesis = self.params.genesis_hash();
        let made = checkpoint_from_session(&self.params.name, genesis, number, ask.root, signatures);
        let checkpoint = match made {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                self.violate("checkpoint-true", format!("a checkpoint session of batch {number} signed, but {error}"));
                return;
            }
        };
        if !self.checkpoint_true(&checkpoint) {
            return;
        }
        self.checkpoints_signed.insert(number);
        let role = &mut self.confirmers[asker];
        let Some(watchman) = role.watchman.as_mut().filter(|w| own && w.signer.generation == generation) else {
            return;
        };
        watchman.checkpoints.signed(number);
        role.checkpoints_kept.insert(number);
        self.checkpoint_files.insert(number, checkpoint);
        // An operator hands a late joiner one of the newest files: older ones are never read.
        while self.checkpoint_files.len() > crate::late_joiner::FILES_PER_ATTEMPT {
            self.checkpoint_files.pop_first();
        }
        self.log(format!("watchman {asker} writes the signed checkpoint of batch {number}"));
    }

    /// The asker's own checkpoint session failed: its duty waits out the retry.
    pub(crate) fn checkpoint_failed(&mut self, asker: usize, generation: u64) {
        let now = std::time::Duration::from_millis(self.now());
        let watchman = self.confirmers.get_mut(asker).and_then(|r| r.watchman.as_mut());
        if let Some(watchman) = watchman.filter(|w| w.signer.generation == generation) {
            watchman.checkpoints.failed(now);
        }
    }

    /// `checkpoint-true` for one signed checkpoint.
    fn checkpoint_true(&mut self, checkpoint: &SignedCheckpoint) -> bool {
        let number = checkpoint.number;
        let Some(key) = self.keys.vault_key.map(|k| k.serialize()) else { return false };
        if let Err(error) = checkpoint.verify(&self.params, &key) {
            self.violate("checkpoint-true", format!("the group's checkpoint of batch {number} is refused: {error}"));
            return false;
        }
        if self.truth.header(number) != Some(checkpoint.header_hash) {
            self.violate(
                "checkpoint-true",
                format!(
                    "the group signed batch {number} with header {}, which the honest sequencer did not seal",
                    hex::encode(&checkpoint.header_hash[..4])
                ),
            );
            return false;
        }
        true
    }

    /// A hostile requester's checkpoint: batch `last`'s with its header one bit off.
    pub(crate) fn forged_checkpoint_question(&self, last: u64) -> Option<(SigningRequest, Ask)> {
        let mut header = self.truth.header(last)?;
        header[31] ^= 1;
        let request = checkpoint_signing_request(self.params.genesis_hash(), last, header);
        let ask = Ask {
            what: "a checkpoint of another header",
            first: last,
            last,
            root: header,
            kind: AskKind::Checkpoint { own: false },
        };
        Some((request, ask))
    }

    /// `checkpoint-liveness`, after healing with an honest coordinator: of the batches sealed
    /// before the quiet end (a forced entry's batch may come in the last minutes).
    pub(crate) fn check_checkpoints(&mut self) {
        if self.bad_from.is_some() {
            return;
        }
        let cutoff = self.sealed_before_quiet;
        let hard_final =
            self.confirmers.iter().filter_map(|r| r.follower.as_ref()).map(|f| f.status().hard_final.min(cutoff)).min();
        let Some(due) = hard_final.and_then(|h| due_checkpoint(CHECKPOINT_EVERY, 0, h)) else { return };
        // That one or a later one: a group that signed past it vouched for it too.
        if self.checkpoints_signed.range(due..).next().is_none() {
            let newest = self.checkpoints_signed.last().copied().unwrap_or(0);
            self.violate(
                "checkpoint-liveness",
                format!(
                    "every confirmer made batch {due} hard-final, but the group never signed its checkpoint (the newest signed is of batch {newest})"
                ),
            );
        }
    }
}
