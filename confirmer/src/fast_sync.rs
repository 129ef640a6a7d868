//! Joining late: a confirmer whose database is empty starts from a state snapshot on the DA
//! instead of replaying from genesis, if its operator gives it a trusted checkpoint (a batch
//! number and that batch's header hash, from a source the operator trusts: another confirmer it
//! runs, the watchmen, a published list).
//!
//! What it then trusts: that the checkpoint names the coordinator's real batch (nothing before
//! it is replayed here, so a coordinator that cheated before the checkpoint is not caught by
//! this node). What it still checks: the batch at the checkpoint is the one the coordinator
//! signed and its hash is the checkpoint's; the snapshot rebuilds exactly that header's state
//! root (any other bytes are refused); every batch after it is replayed as from genesis. The
//! default remains a full replay from genesis, which trusts nothing but the coordinator's key.

use std::str::FromStr;

use bridge::{NetworkParams, Snapshot, State};
use chains::da::{DaError, DataAvailability};
use chains::snapshots::{SnapshotMeta, SnapshotStoreError};

use crate::store::{ConfirmerStore, ReplayedBatch, StoreError};

/// A batch this node's operator vouches for: `number:0x<header hash>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub number: u64,
    pub header_hash: [u8; 32],
}

impl FromStr for Checkpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("a checkpoint is NUMBER:0xHEADERHASH (64 hex digits), got {text:?}");
        let (number, hash) = text.split_once(':').ok_or_else(usage)?;
        let number: u64 = number.trim().parse().map_err(|_| usage())?;
        if number == 0 {
            return Err(format!("{}; batch numbers start at 1", usage()));
        }
        let header_hash = bridge::serde_hex::parse_fixed::<32>(hash.trim()).map_err(|_| usage())?;
        Ok(Checkpoint { number, header_hash })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FastSyncError {
    #[error("the DA could not be read: {0}; retry")]
    Da(#[from] DaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshots(#[from] SnapshotStoreError),
    #[error("the DA has no batch {0} yet: wait until it does, or choose an older checkpoint")]
    NoBatch(u64),
    #[error(
        "the DA's batch {number} has header hash {found}, not the checkpoint's {trusted}: the checkpoint or the DA is wrong; nothing was taken"
    )]
    WrongBatch { number: u64, found: String, trusted: String },
    #[error(
        "no snapshot on the DA for batch {number} rebuilds the checkpoint's state root ({}); follow from genesis, or ask for a checkpoint at a batch with a snapshot",
        refusals(.refused)
    )]
    NoSnapshot { number: u64, refused: Vec<String> },
    #[error("a worker failed: {0}")]
    Worker(String),
}

/// Why a signed checkpoint file is not taken.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFileError {
    #[error("cannot read the checkpoint file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not a signed checkpoint (docs/PROTOCOL.md, \"Signed checkpoints\"): {reason}")]
    Format { path: String, reason: String },
    #[error("--checkpoint-key must be 32 bytes of hex (the watchmen's group output key x(Q)): {0}")]
    Key(String),
    #[error(
        "no key to check the checkpoint against: pass --checkpoint-key (the watchmen's group output key x(Q)); the network's parameters carry no Bitcoin vault key to derive it from"
    )]
    NoKey,
    #[error("the checkpoint file {path} is refused: {reason}")]
    Refused { path: String, reason: bridge::checkpoint::CheckpointError },
}

/// The checkpoint a signed checkpoint file vouches for, once its signature by the watchmen's
/// group key verifies for this network. The key is `key_hex` (x(Q)) if given, else the
/// genesis vault key of the parameters (`btc_vault.group_key`, tweaked as BIP-341 does).
pub fn signed_checkpoint(
    path: &std::path::Path,
    params: &NetworkParams,
    key_hex: Option<&str>,
) -> Result<Checkpoint, CheckpointFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CheckpointFileError::Read { path: shown.clone(), reason: e.to_string() })?;
    let file: bridge::checkpoint::SignedCheckpoint = serde_json::from_str(&text)
        .map_err(|e| CheckpointFileError::Format { path: shown.clone(), reason: e.to_string() })?;
    let trusted = match key_hex {
        Some(hex) => {
            let hex = hex.trim();
            let hex = if hex.starts_with("0x") { hex.to_owned() } else { format!("0x{hex}") };
            bridge::serde_hex::parse_fixed::<32>(&hex).map_err(CheckpointFileError::Key)?
        }
        None => params
            .btc_vault
            .as_ref()
            .and_then(|vault| bridge::rotation::output_key_of(&vault.group_key))
            .ok_or(CheckpointFileError::NoKey)?,
    };
    let (number, header_hash) =
        file.verify(params, &trusted).map_err(|reason| CheckpointFileError::Refused { path: shown, reason })?;
    Ok(Checkpoint { number, header_hash })
}

fn refusals(refused: &[String]) -> String {
    if refused.is_empty() { "there is none".to_owned() } else { refused.join("; ") }
}

/// What [`fast_sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastSynced {
    /// The database already holds a record: it resumes from that, the checkpoint is not used.
    Resumed,
    /// The state after batch `number` was taken from the DA's snapshot at `locator`.
    FromSnapshot { number: u64, locator: String },
}

/// Seeds an empty confirmer database from the DA's snapshot at `checkpoint`: the snapshot is
/// checked against the checkpoint's header and saved as this node's own, and that batch is
/// recorded as the last replayed, so [`crate::follower::Follower::open`] starts after it.
pub async fn fast_sync(
    da: &dyn DataAvailability,
    store: &ConfirmerStore,
    params: &NetworkParams,
    checkpoint: Checkpoint,
) -> Result<FastSynced, FastSyncError> {
    fast_sync_with_state(da, store, params, checkpoint).await.map(|(synced, _)| synced)
}

/// [`fast_sync`], and the state it checked the snapshot with, for
/// [`crate::follower::Follower::open_from`]: a node that joins starts from it instead of
/// restoring the snapshot it has just saved a second time (at 10^6 accounts, seconds and the
/// memory of a second state).
pub async fn fast_sync_with_state(
    da: &dyn DataAvailability,
    store: &ConfirmerStore,
    params: &NetworkParams,
    checkpoint: Checkpoint,
) -> Result<(FastSynced, Option<State>), FastSyncError> {
    if !store.replayed_after(0, 1).await?.is_empty() {
        tracing::info!("the database holds replayed batches: resuming from them, not from the checkpoint");
        return Ok((FastSynced::Resumed, None));
    }
    let number = checkpoint.number;
    let fetched = da.fetch(number).await?.ok_or(FastSyncError::NoBatch(number))?;
    let found = fetched.batch.hash();
    if found != checkpoint.header_hash {
        return Err(FastSyncError::WrongBatch {
            number,
            found: hex::encode(found),
            trusted: hex::encode(checkpoint.header_hash),
        });
    }
    let header = fetched.batch.signed_header();
    let mut refused = Vec::new();
    for (locator, bytes) in da.snapshots_of(number).await? {
        let (params, header) = (params.clone(), header.clone());
        let checked = chains::snapshots::on_worker(move || {
            let snapshot = Snapshot::decode(&bytes).map_err(|e| e.to_string())?;
            let meta = SnapshotMeta::of(&snapshot);
            let state = State::restore(params, snapshot, &header).map_err(|e| e.to_string())?;
            Ok::<_, String>((meta, bytes, state))
        })
        .await
        .map_err(|e| FastSyncError::Worker(e.to_string()))?;
        match checked {
            Ok((meta, bytes, state)) => {
                store.snapshots().save(&meta, &bytes, 2).await?;
                let replayed = ReplayedBatch { batch: fetched.batch, locator: fetched.locator, unverified: None };
                store.record_replayed(&replayed, &[], None).await?;
                tracing::info!(number, %locator, "fast sync: the state after the checkpoint's batch taken from the DA's snapshot");
                metrics::gauge!("bridge_confirmer_fast_sync_batch").set(number as f64);
                return Ok((FastSynced::FromSnapshot { number, locator }, Some(state)));
            }
            Err(reason) => {
                tracing::warn!(number, %locator, %reason, "fast sync: a snapshot on the DA is refused");
                refused.push(format!("{locator}: {reason}"));
            }
        }
    }
    Err(FastSyncError::NoSnapshot { number, refused })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_parse_and_bad_ones_say_how_they_are_written() {
        let hash = format!("0x{}", "ab".repeat(32));
        let checkpoint: Checkpoint = format!("42:{hash}").parse().unwrap();
        assert_eq!(checkpoint, Checkpoint { number: 42, header_hash: [0xab; 32] });
        for bad in ["42", "x:0x00", &format!("0:{hash}"), "42:0x1234"] {
            let error = bad.parse::<Checkpoint>().unwrap_err();
            assert!(error.contains("NUMBER:0xHEADERHASH"), "{error}");
        }
    }
}
