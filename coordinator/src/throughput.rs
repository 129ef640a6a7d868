//! The sequencer driven as fast as it goes: signatures recovered on every core two chunks
//! ahead, applied in order and committed in groups, a batch sealed every `seal_every`. This is
//! the path the coordinator's benchmark measures (`loadgen bench`), and the rate a confirmer's
//! replay is held against.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::eip712::Domain;
use bridge::{SignedUserTx, Tx};
use rayon::prelude::*;

use crate::sequencer::{Sequencer, SequencerError};

/// Where the time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Driven {
    pub total: Duration,
    /// Sealing batches (state root, signature, record).
    pub sealing: Duration,
    /// The sequencer idle, waiting for signatures.
    pub waiting: Duration,
    /// Applying and committing.
    pub submitting: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error("a transaction was refused: {0}")]
    Refused(String),
    #[error("a verification worker failed: {0}")]
    Worker(String),
}

/// The chunk verified at once: a group commit's worth.
const CHUNK: usize = 8_192;

/// Submits every transaction of `signed`, in order, sealing every `seal_every` (batches are
/// stamped `timestamp`); every one must be accepted.
pub async fn drive(
    sequencer: &mut Sequencer,
    signed: &[SignedUserTx],
    seal_every: usize,
    timestamp: u64,
) -> Result<Driven, DriveError> {
    let domain = Arc::new(Domain::new(sequencer.state().params()));
    let verify = |chunk: Vec<SignedUserTx>, domain: Arc<Domain>| {
        tokio::task::spawn_blocking(move || {
            chunk.par_iter().map(|tx| tx.verify(&domain).map(Tx::User)).collect::<Vec<_>>()
        })
    };
    let mut chunks = signed.chunks(CHUNK).map(<[SignedUserTx]>::to_vec);
    let mut driven = Driven::default();
    let mut since_seal = 0;
    let started = Instant::now();
    // Two chunks verified ahead: the cores stay busy while the ledger waits on its fsync.
    let mut ahead: VecDeque<_> = chunks.by_ref().take(2).map(|c| verify(c, domain.clone())).collect();
    while let Some(pending) = ahead.pop_front() {
        let waited = Instant::now();
        let verified = pending.await.map_err(|e| DriveError::Worker(e.to_string()))?;
        driven.waiting += waited.elapsed();
        if let Some(chunk) = chunks.next() {
            ahead.push_back(verify(chunk, domain.clone()));
        }
        let txs: Vec<Tx> =
            verified.into_iter().collect::<Result<_, _>>().map_err(|e| DriveError::Refused(e.to_string()))?;
        let count = txs.len();
        let submitted = Instant::now();
        let outcomes = sequencer.submit(txs).await?;
        driven.submitting += submitted.elapsed();
        if let Some(refused) = outcomes.iter().find_map(|o| o.as_ref().err()) {
            return Err(DriveError::Refused(refused.to_string()));
        }
        since_seal += count;
        if since_seal >= seal_every {
            let seal_started = Instant::now();
            sequencer.seal(timestamp).await?;
            driven.sealing += seal_started.elapsed();
            since_seal = 0;
        }
    }
    driven.total = started.elapsed();
    Ok(driven)
}
