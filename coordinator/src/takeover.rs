//! Takeover: rebuild the coordinator's ledger from the data-availability layer alone. Every
//! published batch is fetched in order, checked (signature, codec, number), replayed with the
//! protocol core, and written to an empty database as sealed and published; at the end the
//! state root must equal the last batch's. The result is a ledger `coordinator run` serves from,
//! so a confirmer's operator can stand in for a dead coordinator.

use bridge::batch::ReplayError;
use bridge::{NetworkParams, State};
use chains::da::{DaError, DataAvailability};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the DA failed: {0}; check the DA settings and retry")]
    Da(#[from] DaError),
    #[error("the database already holds a ledger ({0}); recover into an empty one")]
    NotEmpty(String),
    #[error("published batch {number} does not replay: {source}; the DA holds batches this network's rules refuse")]
    Replay { number: u64, source: ReplayError },
    #[error("the DA's batches skip from {after} to {got}")]
    Gap { after: u64, got: u64 },
}

/// What a takeover rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub batches: u64,
    pub txs: u64,
    /// Equal to the last batch's `post_state_root` (checked).
    pub state_root: [u8; 32],
}

const PAGE: usize = 32;

/// Rebuilds the ledger in `store` (which must be empty) from `da`; `progress(batches, txs)` is
/// called after each batch.
pub async fn recover_from_da(
    da: &dyn DataAvailability,
    store: &Store,
    params: NetworkParams,
    mut progress: impl FnMut(u64, u64),
) -> Result<Recovered, TakeoverError> {
    let seq = store.next_seq().await?;
    let sealed = store.publication().await?.sealed;
    if seq > 0 || sealed > 0 {
        return Err(TakeoverError::NotEmpty(format!("{seq} transactions, {sealed} batches")));
    }
    let mut state = State::genesis(params);
    let mut recovered = Recovered { batches: 0, txs: 0, state_root: state.state_root() };
    let mut last_root = None;
    loop {
        let page = da.batches_after(recovered.batches, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for fetched in page {
            let number = fetched.batch.header.number;
            if number != recovered.batches + 1 {
                return Err(TakeoverError::Gap { after: recovered.batches, got: number });
            }
            let replayed = bridge::batch::replay(&mut state, &fetched.batch)
                .map_err(|source| TakeoverError::Replay { number, source })?;
            let txs: Vec<([u8; 32], bridge::BatchTx)> =
                replayed.receipts.iter().map(|r| r.tx_hash).zip(fetched.batch.body.iter().cloned()).collect();
            assert_eq!(txs.len(), fetched.batch.body.len(), "one receipt per transaction of a replayed batch");
            store.append_txs(recovered.txs, &txs).await?;
            store.record_batch(&fetched.batch, recovered.txs).await?;
            store.set_published(number, &fetched.locator).await?;
            recovered.batches = number;
            recovered.txs += txs.len() as u64;
            last_root = Some(fetched.batch.header.post_state_root);
            progress(recovered.batches, recovered.txs);
        }
    }
    recovered.state_root = state.state_root();
    if let Some(root) = last_root {
        // `replay` checked every batch's root; this is the promise the takeover makes, kept in code.
        assert_eq!(recovered.state_root, root, "the rebuilt state is the last published batch's");
    }
    Ok(recovered)
}
