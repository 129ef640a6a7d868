//! State snapshots on the DA, for confirmers that join late (fast sync): every
//! `da.snapshot_every_batches` batches, the newest snapshot the sequencer saved in the ledger
//! database (chains::snapshots) is published, once the batch it belongs to is itself on the
//! DA (a reader checks the snapshot against that batch's header). Nothing here is trusted by a
//! reader: the snapshot must rebuild the state root of a header the reader's operator vouches for.

use std::sync::Arc;

use bridge::Snapshot;
use chains::da::DataAvailability;
use chains::task::{Schedule, Task, TaskError};

use crate::store::Store;

/// Publishes the ledger's snapshots to the DA: the newest once it passes a multiple of
/// `every_batches` (the batch itself when the ledger snapshots on those multiples too, which is
/// what the watchmen's checkpoints name).
#[derive(Clone)]
pub struct DaSnapshots {
    store: Store,
    da: Arc<dyn DataAvailability>,
    every_batches: u64,
    /// The batch of the last snapshot published by this process (0: none yet; the DA makes a
    /// repeat after a restart a no-op).
    published: u64,
}

impl std::fmt::Debug for DaSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaSnapshots")
            .field("every_batches", &self.every_batches)
            .field("published", &self.published)
            .finish()
    }
}

impl DaSnapshots {
    pub fn new(store: Store, da: Arc<dyn DataAvailability>, every_batches: u64) -> Self {
        DaSnapshots { store, da, every_batches: every_batches.max(1), published: 0 }
    }

    /// When its turns run: every `retry` (the DA's publication retry); a failure is retried
    /// with the default backoff (a snapshot is a convenience, not worth a busy retry).
    pub fn schedule(retry: std::time::Duration) -> Schedule {
        Schedule::every(retry)
    }

    /// The batch of the last snapshot this task published (0: none yet).
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Publishes the newest saved snapshot if it is due and its batch is on the DA; the batch
    /// published, if one was.
    pub async fn round(&mut self) -> Result<Option<u64>, String> {
        let snapshots = self.store.snapshots();
        let Some(&newest) = snapshots.numbers().await.map_err(|e| e.to_string())?.first() else { return Ok(None) };
        if self.published > 0 && newest / self.every_batches <= self.published / self.every_batches {
            return Ok(None);
        }
        let on_da = self.store.publication().await.map_err(|e| e.to_string())?.published;
        if on_da < newest {
            return Ok(None);
        }
        let Some(bytes) = snapshots.load(newest).await.map_err(|e| e.to_string())? else { return Ok(None) };
        let decoded = tokio::task::spawn_blocking({
            let bytes = bytes.clone();
            move || Snapshot::decode(&bytes).map(|s| s.state_root)
        })
        .await
        .map_err(|e| e.to_string())?;
        let root = decoded.map_err(|e| format!("the ledger's snapshot {newest} does not decode: {e}"))?;
        let Some(locator) = self.da.publish_snapshot(newest, root, &bytes).await.map_err(|e| e.to_string())? else {
            tracing::warn!("this DA keeps no snapshots; da.snapshot_every_batches has no effect");
            self.published = u64::MAX - self.every_batches;
            return Ok(None);
        };
        tracing::info!(batch = newest, %locator, bytes = bytes.len(), "state snapshot published to the DA");
        metrics::gauge!("bridge_coordinator_da_snapshot_batch").set(newest as f64);
        self.published = newest;
        Ok(Some(newest))
    }
}

impl Task for DaSnapshots {
    async fn turn(&mut self) -> Result<(), TaskError> {
        // A DA or database that fails now is asked again after the backoff; a snapshot is a
        // convenience for late joiners, never worth stopping the coordinator for.
        self.round().await.map(|_| ()).map_err(TaskError::transient)
    }
}
