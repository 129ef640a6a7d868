//! A batch replayed but not yet recorded. The state takes a batch in memory before the database
//! records it; when the record fails (a full or failing disk, a database that went away), the
//! state is one batch ahead of the record. Nothing else is taken until the record is made: every
//! step tries it again first. Without this, the retry would fetch the same batch again and replay
//! it onto a state that already holds it, and alarm an honest coordinator ("expected batch n+1,
//! got batch n"): the simulator found that (issue 20, `sim`, disk faults).

use bridge::batch::Settlement;

use super::{FollowError, Follower};
use crate::store::ReplayedBatch;

/// What the record of one replayed batch needs, kept until the database takes it.
pub(super) struct Unrecorded {
    pub(super) batch: ReplayedBatch,
    pub(super) tx_hashes: Vec<[u8; 32]>,
    pub(super) settlement: Settlement,
}

impl Follower {
    /// Records the batch replayed last, if its record is still owed, and only then counts it as
    /// replayed; `true` when it did. An error leaves it owed.
    pub(super) async fn record_owed(&mut self) -> Result<bool, FollowError> {
        let Some(owed) = self.unrecorded.take() else { return Ok(false) };
        if let Err(error) = self.store.record_replayed(&owed.batch, &owed.tx_hashes, Some(&owed.settlement)).await {
            #[cfg(feature = "planted-bugs")]
            if bridge::planted::active(bridge::planted::PlantedBug::RecordRefusedForgotten) {
                return Err(error.into());
            }
            self.unrecorded = Some(owed);
            return Err(error.into());
        }
        let Unrecorded { batch, settlement, .. } = owed;
        let number = batch.batch.header.number;
        if let Some(commit) = &batch.batch.header.forced {
            self.forced_cursor = Some(commit.to);
        }
        self.keep(number, settlement);
        self.advance(number, batch.unverified);
        self.snapshots.after_batch(&self.state);
        Ok(true)
    }
}
