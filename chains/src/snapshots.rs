//! State snapshots in a role's own database, shared by the coordinator, the confirmer and the
//! watchman: each role's migrations create the two tables (`state_snapshots`,
//! `state_snapshot_chunks`), this module writes, reads, prunes and restores them.
//!
//! A snapshot is written in one database transaction (its chunks, then the row that names it),
//! so a crash or a failed write leaves the previous snapshots as they were; a reader sees a
//! snapshot whole or not at all. Restoring checks each against the signed header of its batch
//! (`bridge::State::restore`) and falls back to the next older one, then to genesis.

use std::future::Future;
use std::time::Instant;

use bridge::{NetworkParams, SignedHeader, Snapshot, State};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use tokio::task::JoinHandle;

use crate::db::Backend;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotStoreError {
    #[error("a database operation on the state snapshots failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("snapshot {number} in the database is damaged: {reason}; it is skipped (delete its rows to stop this)")]
    Damaged { number: u64, reason: String },
    #[error("the snapshot write was interrupted on purpose after {0} chunks (a test's injected failure)")]
    Interrupted(usize),
    #[error("encoding the snapshot failed: {0}")]
    Encode(String),
}

/// Bytes per chunk row: small enough for any driver's packet limits, large enough that a
/// snapshot of 10^6 accounts (about 60 MB compressed) is a few dozen rows.
pub const CHUNK_BYTES: usize = 1 << 20;

/// When to take a snapshot, in batches and in batch time (the batches' own timestamps, so the
/// decision is the same on every run of the same history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotPolicy {
    /// A snapshot at every batch whose number is a multiple of this (0: never by count), so
    /// that roles configured alike snapshot the same batches: a late confirmer handed the
    /// watchmen's checkpoint of a batch finds the coordinator's snapshot of that batch.
    pub every_batches: u64,
    /// A snapshot once a batch is this much later (ms of batch time) than the last snapshot's
    /// (0: never by time).
    pub every_ms: u64,
    /// Snapshots kept; older ones are deleted after each write. At least 1; 2 keeps one to fall
    /// back on if the newest is refused.
    pub keep: usize,
}

impl Default for SnapshotPolicy {
    /// Every 1,000 batches or 10 minutes of batch time, whichever comes first; two kept.
    fn default() -> Self {
        SnapshotPolicy { every_batches: 1_000, every_ms: 600_000, keep: 2 }
    }
}

impl SnapshotPolicy {
    /// No snapshots taken (existing ones are still used at start).
    pub fn off() -> Self {
        SnapshotPolicy { every_batches: 0, every_ms: 0, keep: 2 }
    }

    pub fn is_off(&self) -> bool {
        self.every_batches == 0 && self.every_ms == 0
    }

    /// Whether batch `number` at `timestamp` is due for a snapshot, the last one (or the start)
    /// being batch `last_number` at `last_ms` (0: no time known yet).
    pub fn due(&self, last_number: u64, last_ms: u64, number: u64, timestamp: u64) -> bool {
        // A multiple of `every_batches` lies in (last_number, number]: at most that many
        // batches apart, and on the multiples whatever the start.
        let by_count = self.every_batches > 0 && number / self.every_batches > last_number / self.every_batches;
        let by_time = self.every_ms > 0 && last_ms > 0 && timestamp >= last_ms.saturating_add(self.every_ms);
        by_count || by_time
    }
}

/// The snapshot tables of one role's database.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    pool: AnyPool,
    backend: Backend,
}

impl SnapshotStore {
    /// The role's pool; its migrations must have created the snapshot tables.
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        SnapshotStore { pool, backend }
    }

    /// Saves an encoded snapshot of batch `number` and prunes all but the newest `keep`, in one
    /// database transaction. Saving a number already saved replaces it.
    pub async fn save(&self, snapshot: &SnapshotMeta, bytes: &[u8], keep: usize) -> Result<(), SnapshotStoreError> {
        self.write(snapshot, bytes, keep, None).await
    }

    /// [`SnapshotStore::save`] that fails on purpose after writing `chunks` chunks, before the
    /// commit: what a crash in the middle of a write leaves behind. For tests.
    #[doc(hidden)]
    pub async fn save_interrupted(
        &self,
        snapshot: &SnapshotMeta,
        bytes: &[u8],
        chunks: usize,
    ) -> Result<(), SnapshotStoreError> {
        self.write(snapshot, bytes, usize::MAX, Some(chunks)).await
    }

    async fn write(
        &self,
        snapshot: &SnapshotMeta,
        bytes: &[u8],
        keep: usize,
        interrupt_after: Option<usize>,
    ) -> Result<(), SnapshotStoreError> {
        let number = to_i64(snapshot.number);
        let checksum = Sha256::digest(bytes).to_vec();
        let mut db = match self.backend {
            // Take the write lock at once: a deferred transaction fails with SQLITE_BUSY_SNAPSHOT
            // if the role's writer commits between our first read and first write.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        sqlx::query("DELETE FROM state_snapshot_chunks WHERE number = $1").bind(number).execute(&mut *db).await?;
        sqlx::query("DELETE FROM state_snapshots WHERE number = $1").bind(number).execute(&mut *db).await?;
        let mut written = 0;
        for (index, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            if interrupt_after == Some(written) {
                // Dropping the transaction rolls it back, as a crash would.
                return Err(SnapshotStoreError::Interrupted(written));
            }
            sqlx::query("INSERT INTO state_snapshot_chunks (number, idx, bytes) VALUES ($1, $2, $3)")
                .bind(number)
                .bind(to_i64(index as u64))
                .bind(chunk.to_vec())
                .execute(&mut *db)
                .await?;
            written += 1;
        }
        if interrupt_after.is_some() {
            return Err(SnapshotStoreError::Interrupted(written));
        }
        sqlx::query(
            "INSERT INTO state_snapshots (number, header_hash, state_root, byte_len, chunk_count, checksum) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(number)
        .bind(snapshot.header_hash.to_vec())
        .bind(snapshot.state_root.to_vec())
        .bind(to_i64(bytes.len() as u64))
        .bind(to_i64(written as u64))
        .bind(checksum)
        .execute(&mut *db)
        .await?;
        // Prune: keep the newest `keep` (at least this one).
        let keep = to_i64(keep.max(1) as u64);
        let cutoff = sqlx::query("SELECT number FROM state_snapshots ORDER BY number DESC LIMIT 1 OFFSET $1")
            .bind(keep - 1)
            .fetch_optional(&mut *db)
            .await?;
        if let Some(row) = cutoff {
            let oldest_kept: i64 = row.try_get("number")?;
            sqlx::query("DELETE FROM state_snapshot_chunks WHERE number < $1")
                .bind(oldest_kept)
                .execute(&mut *db)
                .await?;
            sqlx::query("DELETE FROM state_snapshots WHERE number < $1").bind(oldest_kept).execute(&mut *db).await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// The batch numbers of the saved snapshots, newest first.
    pub async fn numbers(&self) -> Result<Vec<u64>, SnapshotStoreError> {
        let rows = sqlx::query("SELECT number FROM state_snapshots ORDER BY number DESC").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok(from_i64(row.try_get("number")?))).collect()
    }

    /// The encoded snapshot of batch `number`, whole and matching its checksum.
    pub async fn load(&self, number: u64) -> Result<Option<Vec<u8>>, SnapshotStoreError> {
        let damaged = |reason: String| SnapshotStoreError::Damaged { number, reason };
        let Some(row) = sqlx::query("SELECT byte_len, chunk_count, checksum FROM state_snapshots WHERE number = $1")
            .bind(to_i64(number))
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let byte_len = from_i64(row.try_get("byte_len")?);
        let chunk_count = from_i64(row.try_get("chunk_count")?);
        let checksum: Vec<u8> = row.try_get("checksum")?;
        let chunks = sqlx::query("SELECT idx, bytes FROM state_snapshot_chunks WHERE number = $1 ORDER BY idx")
            .bind(to_i64(number))
            .fetch_all(&self.pool)
            .await?;
        if chunks.len() as u64 != chunk_count {
            return Err(damaged(format!("{} of its {chunk_count} chunks are present", chunks.len())));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(byte_len).unwrap_or(0));
        for (expected, row) in chunks.iter().enumerate() {
            let index: i64 = row.try_get("idx")?;
            if index != to_i64(expected as u64) {
                return Err(damaged(format!("chunk {expected} is missing")));
            }
            let chunk: Vec<u8> = row.try_get("bytes")?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != byte_len || Sha256::digest(&bytes)[..] != checksum[..] {
            return Err(damaged("its bytes do not match the length and checksum recorded with it".into()));
        }
        Ok(Some(bytes))
    }

    /// Overwrites the stored bytes of snapshot `number` (fixing up the checksum), so a test can
    /// plant a snapshot that decodes but does not match its header. For tests.
    #[doc(hidden)]
    pub async fn replace_bytes(
        &self,
        number: u64,
        snapshot: &SnapshotMeta,
        bytes: &[u8],
    ) -> Result<(), SnapshotStoreError> {
        let meta = SnapshotMeta { number, ..*snapshot };
        self.write(&meta, bytes, usize::MAX, None).await
    }
}

/// What names a snapshot row besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub number: u64,
    pub header_hash: [u8; 32],
    pub state_root: [u8; 32],
}

impl SnapshotMeta {
    pub fn of(snapshot: &Snapshot) -> Self {
        SnapshotMeta { number: snapshot.number, header_hash: snapshot.header_hash, state_root: snapshot.state_root }
    }
}

/// The state a role starts from: the newest snapshot that checks, or genesis.
#[derive(Debug)]
pub struct Restored {
    pub state: State,
    /// The snapshot's batch (0: genesis).
    pub from: u64,
    /// Snapshots refused on the way, newest first, with the reason.
    pub refused: Vec<(u64, String)>,
}

/// Runs `work` (a snapshot's decoding or restore: seconds at 10^6 accounts) on a blocking
/// worker, so that a role's runtime keeps serving meanwhile. Every restore of a snapshot goes
/// through here, so that the simulator's test, which switches a planted bug on per thread,
/// reaches the worker's too.
pub async fn on_worker<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    #[cfg(feature = "planted-bugs")]
    let planted = bridge::planted::current();
    tokio::task::spawn_blocking(move || {
        #[cfg(feature = "planted-bugs")]
        bridge::planted::plant(planted);
        let done = work();
        #[cfg(feature = "planted-bugs")]
        bridge::planted::plant(None);
        done
    })
    .await
}

/// Restores the newest snapshot in `store` that checks against the signed header its role
/// holds for that batch (`header_of`), falling back to older ones and then to genesis. Every
/// refusal is logged as an error and counted (`bridge_snapshot_refused_total`).
pub async fn restore_newest<F, Fut, E>(
    store: &SnapshotStore,
    params: &NetworkParams,
    mut header_of: F,
) -> Result<Restored, SnapshotStoreError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Option<SignedHeader>, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut refused = Vec::new();
    for number in store.numbers().await? {
        let attempt = async {
            let bytes = match store.load(number).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Err("it was pruned while being read".to_owned()),
                Err(SnapshotStoreError::Damaged { reason, .. }) => return Err(reason),
                Err(other) => return Err(other.to_string()),
            };
            let snapshot = Snapshot::decode(&bytes).map_err(|e| e.to_string())?;
            if snapshot.number != number {
                return Err(format!(
                    "it is filed under batch {number} but is the state after batch {}",
                    snapshot.number
                ));
            }
            let header = header_of(number)
                .await
                .map_err(|e| format!("its batch header could not be read: {e}"))?
                .ok_or_else(|| format!("batch {number} is not in this node's record, so nothing vouches for it"))?;
            let params = params.clone();
            on_worker(move || State::restore(params, snapshot, &header).map_err(|e| e.to_string()))
                .await
                .map_err(|e| format!("the restoring worker failed: {e}"))?
        };
        match attempt.await {
            Ok(state) => {
                tracing::info!(
                    batch = number,
                    seconds = started.elapsed().as_secs_f64(),
                    refused = refused.len(),
                    "state restored from a snapshot checked against its signed header"
                );
                metrics::gauge!("bridge_snapshot_restored_batch").set(number as f64);
                return Ok(Restored { state, from: number, refused });
            }
            Err(reason) => {
                tracing::error!(
                    batch = number,
                    %reason,
                    "snapshot refused; falling back to an older snapshot or to genesis"
                );
                metrics::counter!("bridge_snapshot_refused_total").increment(1);
                refused.push((number, reason));
            }
        }
    }
    metrics::gauge!("bridge_snapshot_restored_batch").set(0.0);
    Ok(Restored { state: State::genesis(params.clone()), from: 0, refused })
}

/// Takes snapshots by a [`SnapshotPolicy`] after sealed or replayed batches. The state is
/// copied on the caller's task (it must not move meanwhile); encoding and the database write
/// run in the background, one at a time: a batch that comes due while a write runs is skipped,
/// so a slow disk delays snapshots instead of queueing them without bound.
#[derive(Debug)]
pub struct SnapshotKeeper {
    store: SnapshotStore,
    policy: SnapshotPolicy,
    last_number: u64,
    last_ms: u64,
    writing: Option<JoinHandle<Result<u64, SnapshotStoreError>>>,
}

impl SnapshotKeeper {
    /// Starting from the state after batch `from` (0: genesis) stamped `from_ms`.
    pub fn new(store: SnapshotStore, policy: SnapshotPolicy, from: u64, from_ms: u64) -> Self {
        SnapshotKeeper { store, policy, last_number: from, last_ms: from_ms, writing: None }
    }

    pub fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    /// Call after each batch `state` took in: starts a snapshot if one is due.
    pub fn after_batch(&mut self, state: &State) {
        let head = state.head();
        let number = head.next_number.saturating_sub(1);
        if self.last_ms == 0 {
            self.last_ms = head.last_timestamp;
        }
        if self.policy.is_off() || !self.policy.due(self.last_number, self.last_ms, number, head.last_timestamp) {
            return;
        }
        if let Some(writing) = &self.writing
            && !writing.is_finished()
        {
            tracing::debug!(number, "a snapshot is due but the previous one is still being written; skipped");
            return;
        }
        self.reap_finished();
        let snapshot = match state.snapshot() {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(number, %error, "no snapshot taken");
                return;
            }
        };
        self.last_number = number;
        self.last_ms = head.last_timestamp;
        let (store, keep) = (self.store.clone(), self.policy.keep);
        self.writing = Some(tokio::spawn(async move {
            let result = write_snapshot(store, snapshot, keep).await;
            if let Err(error) = &result {
                // Not fatal: the history still replays; counted for an alert.
                tracing::error!(batch = number, %error, "a state snapshot could not be saved; the next one due is tried");
                metrics::counter!("bridge_snapshot_failures_total").increment(1);
            }
            result
        }));
    }

    /// Waits for the snapshot being written, if any: its batch number, or why it failed.
    pub async fn flush(&mut self) -> Result<Option<u64>, SnapshotStoreError> {
        let Some(writing) = self.writing.take() else { return Ok(None) };
        match writing.await {
            Ok(result) => result.map(Some),
            Err(error) => Err(SnapshotStoreError::Encode(error.to_string())),
        }
    }

    /// A clean stop: waits for the write in flight, then snapshots `state` now if it is newer
    /// than the last snapshot (whether due or not), so the next start replays nothing. Returns
    /// the batch of the last snapshot written.
    pub async fn finish(&mut self, state: &State) -> Result<Option<u64>, SnapshotStoreError> {
        let flushed = self.flush().await?;
        let number = state.head().next_number.saturating_sub(1);
        if self.policy.is_off() || number <= self.last_number {
            return Ok(flushed);
        }
        let Ok(snapshot) = state.snapshot() else { return Ok(flushed) };
        self.last_number = number;
        self.last_ms = state.head().last_timestamp;
        write_snapshot(self.store.clone(), snapshot, self.policy.keep).await.map(Some)
    }

    /// Drops a finished write's handle (it logged its own outcome).
    fn reap_finished(&mut self) {
        if self.writing.as_ref().is_some_and(JoinHandle::is_finished) {
            self.writing = None;
        }
    }
}

async fn write_snapshot(store: SnapshotStore, snapshot: Snapshot, keep: usize) -> Result<u64, SnapshotStoreError> {
    let started = Instant::now();
    let meta = SnapshotMeta::of(&snapshot);
    let bytes = tokio::task::spawn_blocking(move || snapshot.encode())
        .await
        .map_err(|e| SnapshotStoreError::Encode(e.to_string()))?;
    store.save(&meta, &bytes, keep).await?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(batch = meta.number, bytes = bytes.len(), seconds, "state snapshot saved");
    metrics::gauge!("bridge_snapshot_batch").set(meta.number as f64);
    metrics::gauge!("bridge_snapshot_bytes").set(bytes.len() as f64);
    metrics::gauge!("bridge_snapshot_write_seconds").set(seconds);
    Ok(meta.number)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_i64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches `from + 1..=through` taken one by one, and those a snapshot is taken at.
    fn taken(policy: SnapshotPolicy, from: u64, through: u64) -> Vec<u64> {
        let mut last = from;
        let mut taken = Vec::new();
        for number in from + 1..=through {
            if policy.due(last, 0, number, 0) {
                taken.push(number);
                last = number;
            }
        }
        taken
    }

    #[test]
    fn snapshots_by_count_fall_on_the_multiples_whatever_the_start() {
        let every_4 = SnapshotPolicy { every_batches: 4, every_ms: 0, keep: 2 };
        assert_eq!(taken(every_4, 0, 13), vec![4, 8, 12]);
        // A start after batch 6 (a restart, a fast sync) snapshots batch 8 next, not 10: the
        // coordinator's snapshots stay on the batches the watchmen's checkpoints name.
        assert_eq!(taken(every_4, 6, 13), vec![8, 12]);
        assert!(taken(SnapshotPolicy::off(), 0, 100).is_empty());
        // By time: once a batch's timestamp is `every_ms` past the last snapshot's.
        let by_time = SnapshotPolicy { every_batches: 0, every_ms: 1_000, keep: 2 };
        assert!(!by_time.due(5, 10_000, 6, 10_999));
        assert!(by_time.due(5, 10_000, 6, 11_000));
    }
}
