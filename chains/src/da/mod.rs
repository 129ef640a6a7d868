//! Data availability: where the coordinator publishes signed batches and where everyone else
//! finds them. The truth is what the DA holds, so every reader checks what it reads: the codec,
//! the coordinator's signature, and the number the batch was filed under.

mod arweave;
mod dir;
mod snapshot_files;

use async_trait::async_trait;
use bridge::SignedBatch;
use bridge::batch::Equivocation;

use crate::arweave::{GatewayError, WalletError};

pub use arweave::{APP_NAME, ArweaveDa, ArweaveDaConfig, DEFAULT_MAX_PRICE_WINSTON_PER_MIB, Rejection};
pub use dir::DirDa;
pub use snapshot_files::SNAPSHOT_CODEC;

/// Where a batch was published: an Arweave transaction id, or a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub number: u64,
    pub locator: String,
}

/// A batch read back from the DA, already decoded and checked against the coordinator key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatch {
    pub locator: String,
    pub batch: SignedBatch,
    /// The encoded size, as published.
    pub size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DaError {
    #[error("the DA store at {path} cannot be used: {source}; check that the directory exists and is writable")]
    Io { path: String, source: std::io::Error },
    #[error("batch {number} is already published with different contents ({locator}): refusing to overwrite it")]
    Conflict { number: u64, locator: String },
    #[error("{locator} is not a valid batch: {reason}")]
    Invalid { locator: String, reason: String },
    #[error("{locator} holds batch {found}, not batch {expected}")]
    Misfiled { locator: String, expected: u64, found: u64 },
    #[error("the DA worker stopped unexpectedly: {0}")]
    Worker(String),
    #[error("batch {number} cannot be published before batch {previous} is")]
    OutOfOrder { number: u64, previous: u64 },
    #[error("the coordinator signed two different batches numbered {}: equivocation evidence is attached", .0.first.header.number)]
    Equivocation(Box<Equivocation>),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error("the publisher's journal at {path} cannot be used: {reason}")]
    Journal { path: String, reason: String },
}

/// A store of signed batches, one per number.
#[async_trait]
pub trait DataAvailability: Send + Sync {
    /// Publishes `batch`. Publishing the same batch again returns where it already is; a
    /// different batch under a number already taken is a [`DaError::Conflict`].
    async fn publish(&self, batch: &SignedBatch) -> Result<Published, DaError>;

    /// The batch with `number`, or `None` if none is published (yet).
    async fn fetch(&self, number: u64) -> Result<Option<FetchedBatch>, DaError>;

    /// How many confirmations the published batch `number` has: `None` if it is not published,
    /// `u64::MAX` for a store where publication is final at once.
    async fn confirmations(&self, number: u64) -> Result<Option<u64>, DaError>;

    /// The highest number `n` such that batches `1..=n` are all published.
    async fn latest(&self) -> Result<u64, DaError>;

    /// Batch `number` with `hash` failed the forced check (a `censorship` finding): the DA
    /// forgets it (and what it accepted after it) and from now on hands out another batch with
    /// that number if one is published, the replacement a takeover seals (docs/PROTOCOL.md,
    /// "Takeover after censorship"). A DA that can hold one batch per number has nothing to do.
    fn supersede(&self, _number: u64, _hash: [u8; 32]) {}

    /// A batch numbered above `number` that the coordinator signed and the DA holds, whether or
    /// not the batches between are there (the lowest such number the DA can find cheaply; `None`
    /// if it finds none). A follower stuck at a missing batch `number` asks for it: a later signed
    /// batch is evidence that `number` was withheld, which [`DataAvailability::fetch`] cannot give
    /// on a DA that only hands out batches linked to their predecessor.
    async fn signed_after(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        self.fetch(number + 1).await
    }

    /// Two different batches the coordinator signed under one number at or below `through`,
    /// found since the reader passed that number (docs/PROTOCOL.md, "Equivocation found late").
    /// A follower asks every step with `through` = the last batch it replayed, so an answer must
    /// cost a bounded amount of work (a page of the newest postings, a few downloads), and may
    /// say `None` now and find the pair at a later call. A second batch posted so long after the
    /// first that it is past the page is found by the reader that next reads that number (a
    /// restart, a new confirmer). A DA that holds one batch per number has nothing to find.
    async fn equivocation_through(&self, _through: u64) -> Result<Option<Equivocation>, DaError> {
        Ok(None)
    }

    /// Publishes `bytes`, the encoded state snapshot after batch `number` whose state root is
    /// `state_root`, for confirmers that join late; where it went, or `None` if this DA keeps no
    /// snapshots. Publishing the same snapshot again is a no-op.
    async fn publish_snapshot(
        &self,
        _number: u64,
        _state_root: [u8; 32],
        _bytes: &[u8],
    ) -> Result<Option<String>, DaError> {
        Ok(None)
    }

    /// The snapshots filed for batch `number` (locator, bytes), at most a few: bytes nobody
    /// vouches for, to be checked against a header the reader trusts.
    async fn snapshots_of(&self, _number: u64) -> Result<Vec<(String, Vec<u8>)>, DaError> {
        Ok(Vec::new())
    }

    /// Up to `limit` consecutive batches after `number`, in order, stopping at the first gap.
    async fn batches_after(&self, number: u64, limit: usize) -> Result<Vec<FetchedBatch>, DaError> {
        let mut out = Vec::new();
        let mut next = number + 1;
        while out.len() < limit {
            match self.fetch(next).await? {
                Some(fetched) => out.push(fetched),
                None => break,
            }
            next += 1;
        }
        Ok(out)
    }
}

/// Decodes a published batch and checks it is a batch of `expected` signed by `coordinator_key`.
pub fn check_published(
    bytes: &[u8],
    locator: &str,
    expected: u64,
    coordinator_key: &[u8; 32],
) -> Result<SignedBatch, DaError> {
    let invalid = |reason: String| DaError::Invalid { locator: locator.to_owned(), reason };
    let batch = bridge::codec::decode_batch(bytes).map_err(|e| invalid(e.to_string()))?;
    if batch.header.number != expected {
        return Err(DaError::Misfiled { locator: locator.to_owned(), expected, found: batch.header.number });
    }
    batch.signed_header().verify(coordinator_key).map_err(|e| invalid(e.to_string()))?;
    Ok(batch)
}
