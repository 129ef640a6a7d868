//! Takeover: rebuild the coordinator's ledger from the data-availability layer alone. Every
//! published batch is fetched in order, checked (signature, codec, number), replayed with the
//! protocol core, and written to an empty database as sealed and published; at the end the
//! state root must equal the last batch's. The result is a ledger `coordinator run` serves from,
//! so a confirmer's operator can stand in for a dead coordinator.
//!
//! On a network with forced inclusion each batch's forced section is checked against the
//! gateway first, as a confirmer does, and the takeover stops before the first batch that fails
//! (a `censorship` finding): that batch and everything after it are not recovered, so the
//! coordinator run on the result seals a replacement that takes the skipped forced transactions
//! first (docs/PROTOCOL.md, "Takeover after censorship").

use std::time::Duration;

use bridge::batch::ReplayError;
use bridge::{NetworkParams, State};
use chains::arweave::GatewayError;
use chains::da::{DaError, DataAvailability};
use chains::forced_check::{ForcedChecker, ForcedVerdict};

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
    #[error("the Arweave gateway could not check batch {number}'s forced transactions: {source}; retry")]
    Forced { number: u64, source: GatewayError },
    #[error(
        "the gateway cannot say yet whether batch {number} kept the forced rules ({why}) after {attempts} tries; retry when it has caught up"
    )]
    ForcedUndecided { number: u64, why: String, attempts: u32 },
    #[error(
        "the network takes forced transactions but no Arweave gateway is configured to check them (da.gateway): a takeover must not replay a censoring batch"
    )]
    NoForcedCheck,
}

/// What a takeover rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub batches: u64,
    pub txs: u64,
    /// Equal to the last batch's `post_state_root` (checked).
    pub state_root: [u8; 32],
    /// The batch the takeover stopped before, and why: it failed the forced check.
    pub stopped_before: Option<(u64, String)>,
}

/// How often a forced check the gateway cannot decide yet is asked again, and the pause between
/// (10 × 3 s): a gateway a few blocks behind catches up; one further behind is the operator's
/// to wait for (the error says to retry).
const FORCED_UNDECIDED_ATTEMPTS: u32 = 10;
const FORCED_UNDECIDED_PAUSE: Duration = Duration::from_secs(3);

const PAGE: usize = 32;

/// Rebuilds the ledger in `store` (which must be empty) from `da`; `progress(batches, txs)` is
/// called after each batch. On a network with forced inclusion `forced` must be given: each
/// batch is checked against the gateway and the takeover stops before the first that fails.
pub async fn recover_from_da(
    da: &dyn DataAvailability,
    store: &Store,
    params: NetworkParams,
    forced: Option<&ForcedChecker>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Recovered, TakeoverError> {
    if params.forced.is_some() && forced.is_none() {
        return Err(TakeoverError::NoForcedCheck);
    }
    let seq = store.next_seq().await?;
    let sealed = store.publication().await?.sealed;
    if seq > 0 || sealed > 0 {
        return Err(TakeoverError::NotEmpty(format!("{seq} transactions, {sealed} batches")));
    }
    let mut cursor = params.forced.map(|rules| rules.start());
    let mut state = State::genesis(params);
    let mut recovered = Recovered { batches: 0, txs: 0, state_root: state.state_root(), stopped_before: None };
    let mut last_root = None;
    'pages: loop {
        let page = da.batches_after(recovered.batches, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for fetched in page {
            let number = fetched.batch.header.number;
            if number != recovered.batches + 1 {
                return Err(TakeoverError::Gap { after: recovered.batches, got: number });
            }
            if let (Some(checker), Some(previous)) = (forced, cursor) {
                if let Some(finding) = censorship(checker, previous, &fetched).await? {
                    tracing::warn!(number, %finding, "the takeover stops before a batch that fails the forced check");
                    recovered.stopped_before = Some((number, finding));
                    break 'pages;
                }
                cursor = fetched.batch.header.forced.as_ref().map(|commit| commit.to);
            }
            let replayed = bridge::batch::replay(&mut state, &fetched.batch)
                .map_err(|source| TakeoverError::Replay { number, source })?;
            let txs: Vec<([u8; 32], bridge::BatchTx)> =
                replayed.receipts.iter().map(|r| r.tx_hash).zip(fetched.batch.body.iter().cloned()).collect();
            assert_eq!(txs.len(), fetched.batch.body.len(), "one receipt per transaction of a replayed batch");
            store.append_txs(recovered.txs, &txs).await?;
            store.record_batch(&fetched.batch, recovered.txs, state.domain()).await?;
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

/// The batch's `censorship` finding, if it fails the forced check from `previous`; a gateway
/// that cannot tell yet is asked again, a bounded number of times.
async fn censorship(
    checker: &ForcedChecker,
    previous: bridge::forced::ForcedCursor,
    fetched: &chains::da::FetchedBatch,
) -> Result<Option<String>, TakeoverError> {
    let number = fetched.batch.header.number;
    let mut attempt = 1;
    loop {
        let verdict = checker
            .check(previous, &fetched.batch, &fetched.locator)
            .await
            .map_err(|source| TakeoverError::Forced { number, source })?;
        match verdict {
            ForcedVerdict::Kept => return Ok(None),
            ForcedVerdict::Censored(found) => return Ok(Some(found.describe(number))),
            ForcedVerdict::Wait(why) if attempt >= FORCED_UNDECIDED_ATTEMPTS => {
                return Err(TakeoverError::ForcedUndecided { number, why, attempts: attempt });
            }
            ForcedVerdict::Wait(why) => {
                tracing::info!(number, %why, attempt, "waiting for the gateway to judge the batch's forced section");
                tokio::time::sleep(FORCED_UNDECIDED_PAUSE).await;
                attempt += 1;
            }
        }
    }
}
