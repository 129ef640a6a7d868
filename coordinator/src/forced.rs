//! The coordinator's side of forced inclusion (docs/PROTOCOL.md, Forced transactions): a task
//! that follows the forced stream on the gateway, plans each batch's section with the protocol's
//! own [`bridge::forced::plan`], fetches what the plan takes and hands it to the sequencer, and
//! the cursor bookkeeping the sequencer does at each seal. Nobody has to ask: an entry that is
//! safe on Arweave is in the next batch, up to the cap.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bridge::BatchBuilder;
use bridge::batch::{ApplyError, SealedBatch};
use bridge::forced::{ForcedCursor, ForcedEntry, ForcedListing, ForcedParams, plan};
use bridge::{NetworkParams, State};
use chains::arweave::{ForcedStream, MAX_TXS_PER_BLOCK};
use chains::task::{Task, TaskError};
use serde::{Deserialize, Serialize};

use crate::sequencer::{SequencerError, SequencerHandle};
use crate::store::Store;

/// Where the cursor stands in the sequencer: `sealed` is the last sealed batch's `to`;
/// `allowed` is how far the next seal may move it without entries (the latest empty plan).
#[derive(Debug, Clone, Copy)]
pub struct CursorState {
    pub sealed: ForcedCursor,
    allowed: ForcedCursor,
}

impl CursorState {
    pub fn new(sealed: ForcedCursor) -> Self {
        CursorState { sealed, allowed: sealed }
    }

    /// An empty plan up to `to`: the next seal may move the cursor there.
    pub fn allow(&mut self, to: ForcedCursor) {
        self.allowed = self.allowed.max(to);
    }

    /// The next seal leaves the cursor where it is.
    pub fn hold(&mut self) {
        self.allowed = self.sealed;
    }

    /// Gives a batch about to be sealed its (empty) forced section if it has none yet.
    pub fn close(&self, builder: &mut BatchBuilder, state: &mut State) -> Result<(), ApplyError> {
        if builder.has_forced() {
            return Ok(());
        }
        builder.process_forced(state, self.sealed, self.allowed, &[], &|_| false).map(|_| ())
    }
}

/// A planned forced section for the sequencer.
#[derive(Debug, Clone)]
pub struct ForcedWork {
    pub from: ForcedCursor,
    pub to: ForcedCursor,
    pub entries: Vec<ForcedEntry>,
    /// Signing hashes among the entries already applied (the ledger's, or an earlier copy's):
    /// a `nonce_replayed` refusal of one of them is recorded as a duplicate.
    pub applied: BTreeSet<[u8; 32]>,
}

/// What `/status` shows about forced inclusion.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForcedStatus {
    /// The last sealed batch's cursor.
    pub cursor: Option<ForcedCursor>,
    /// The gateway's height when last looked at.
    pub arweave_height: Option<u64>,
    /// The oldest entry not yet consumed, as listed (it may not be safe yet).
    pub oldest_pending: Option<PendingEntry>,
    /// Entries listed but not yet consumed (bounded by the listing).
    pub pending: usize,
    /// Why the next forced section waits: an entry the gateway lists but does not serve yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_served: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingEntry {
    pub arweave_id: String,
    pub height: u64,
}

/// Shared with the API.
pub type SharedForcedStatus = Arc<Mutex<ForcedStatus>>;

/// The planning of one forced section, apart from who takes it: the binary's follower hands it
/// to the sequencer's actor, the simulator to the sequencer it drives.
#[derive(Debug)]
pub struct ForcedPlanner {
    /// The forced stream: the configured gateway in the binary, the simulated Arweave in `sim`.
    pub gateway: Arc<dyn ForcedStream>,
    pub app_name: String,
    pub params: NetworkParams,
    pub rules: ForcedParams,
    pub store: Store,
    pub status: SharedForcedStatus,
}

/// The follower: one turn lists, plans, fetches and hands over one section.
#[derive(Debug)]
pub struct ForcedFollower {
    pub planner: ForcedPlanner,
    pub sequencer: SequencerHandle,
    pub clock: fn() -> u64,
}

/// Where the forced task hands its sections: the sequencer's handle in the binary, the
/// simulator's own sequencer there (where a censoring coordinator edits a section first).
pub trait ForcedSequencer {
    /// The last sealed batch's cursor; `None` on a network without forced inclusion.
    fn forced_cursor(&mut self) -> impl Future<Output = Result<Option<ForcedCursor>, SequencerError>> + Send;
    /// Takes a planned section ([`crate::sequencer::Sequencer::include_forced`]): what it sealed.
    fn include_forced(
        &mut self,
        work: ForcedWork,
        timestamp: u64,
    ) -> impl Future<Output = Result<Vec<SealedBatch>, String>> + Send;
}

impl ForcedSequencer for SequencerHandle {
    async fn forced_cursor(&mut self) -> Result<Option<ForcedCursor>, SequencerError> {
        SequencerHandle::forced_cursor(self).await
    }

    async fn include_forced(&mut self, work: ForcedWork, timestamp: u64) -> Result<Vec<SealedBatch>, String> {
        SequencerHandle::include_forced(self, work, timestamp).await
    }
}

impl ForcedFollower {
    pub fn new(
        gateway: impl ForcedStream + 'static,
        params: NetworkParams,
        sequencer: SequencerHandle,
        store: Store,
        status: SharedForcedStatus,
        clock: fn() -> u64,
    ) -> Option<Self> {
        let planner = ForcedPlanner::new(Arc::new(gateway), params, store, status)?;
        Some(ForcedFollower { planner, sequencer, clock })
    }
}

impl ForcedPlanner {
    /// `None` on a network without forced inclusion.
    pub fn new(
        gateway: Arc<dyn ForcedStream>,
        params: NetworkParams,
        store: Store,
        status: SharedForcedStatus,
    ) -> Option<Self> {
        let rules = params.forced?;
        Some(ForcedPlanner { gateway, app_name: chains::da::APP_NAME.into(), params, rules, store, status })
    }

    /// The forced task's turn, which the binary's follower and the simulator both run: plans the
    /// section from the sequencer's cursor and hands it over, stamped with `clock` as it is
    /// handed; what the sequencer sealed. An error leaves everything as it was; the next turn
    /// plans again.
    pub async fn turn(
        &self,
        sequencer: &mut impl ForcedSequencer,
        clock: impl Fn() -> u64,
    ) -> Result<Vec<SealedBatch>, String> {
        let from = sequencer.forced_cursor().await.map_err(|e| e.to_string())?.ok_or("no forced cursor")?;
        let work = self.section(from).await?;
        let (count, to) = (work.entries.len(), work.to);
        let sealed = sequencer.include_forced(work, clock()).await?;
        match sealed.last() {
            Some(sealed) => {
                tracing::info!(
                    number = sealed.batch.header.number,
                    entries = count,
                    %to,
                    "forced transactions sealed in a batch of their own"
                );
                metrics::counter!("bridge_forced_included_total").increment(count as u64);
            }
            None => tracing::debug!(%to, "no forced entries; the next batch moves the cursor"),
        }
        Ok(sealed)
    }

    /// The section the next batch takes from the cursor `from`: what is safe on the stream, up
    /// to the cap, fetched. An entry listed but not served yet is an error (the caller asks
    /// again at its next turn): it is never planned around.
    pub async fn section(&self, from: ForcedCursor) -> Result<ForcedWork, String> {
        let tip = self.gateway.height().await.map_err(|e| e.to_string())?;
        let safe = self.rules.safe_height(tip);
        // The listing covers the cursor's height on; a cap of entries plus one whole block more
        // always reaches past where the plan can stop (bounded per round, whatever the junk).
        let max_rows = self.rules.cap as usize + MAX_TXS_PER_BLOCK + chains::arweave::PAGE;
        let top = tip.max(from.height);
        let page = self
            .gateway
            .list_forced(&self.app_name, &self.params.name, from.height, top, max_rows)
            .await
            .map_err(|e| e.to_string())?;
        let complete = page.complete_to;
        let usable = match (safe, complete) {
            (Some(s), Some(c)) => Some(s.min(c)),
            _ => None,
        };
        let planned = plan(from, &page.listings, usable, self.rules.cap);
        self.show(from, tip, &page.listings, &planned.take);
        let entries = match self.gateway.fetch_forced_all(&planned.take).await {
            Ok(entries) => entries,
            Err(error) => {
                // Listed but not served yet: the section waits for the entry (the task's next
                // turn asks again); it is never sealed without it or with it as malformed.
                if matches!(error, chains::arweave::GatewayError::NotServedYet { .. }) {
                    let mut status = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    status.not_served = Some(error.to_string());
                }
                return Err(error.to_string());
            }
        };
        let applied = self.applied(&entries).await?;
        Ok(ForcedWork { from, to: planned.to, entries, applied })
    }

    /// The entries' signing hashes that the ledger holds or an earlier entry carries.
    async fn applied(&self, entries: &[ForcedEntry]) -> Result<BTreeSet<[u8; 32]>, String> {
        let domain = bridge::eip712::Domain::new(&self.params);
        let mut seen = BTreeSet::new();
        let mut applied = BTreeSet::new();
        for entry in entries {
            let Ok(tx) = bridge::forced::decode_payload(&entry.listing, entry.data.as_deref()) else { continue };
            let hash = tx.tx.signing_hash(&domain);
            if !seen.insert(hash) || self.store.tx_by_hash(&hash).await.map_err(|e| e.to_string())?.is_some() {
                applied.insert(hash);
            }
        }
        Ok(applied)
    }

    fn show(&self, from: ForcedCursor, tip: u64, listings: &[ForcedListing], taken: &[ForcedListing]) {
        let unconsumed = bridge::forced::expected(from, ForcedCursor { height: u64::MAX, taken: 0 }, listings);
        let pending: Vec<ForcedListing> = unconsumed.into_iter().filter(|l| !taken.contains(l)).collect();
        metrics::gauge!("bridge_forced_pending").set(pending.len() as f64);
        metrics::gauge!("bridge_forced_cursor_height").set(from.height as f64);
        let mut status = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *status = ForcedStatus {
            cursor: Some(from),
            arweave_height: Some(tip),
            oldest_pending: pending
                .first()
                .map(|l| PendingEntry { arweave_id: chains::arweave::to_b64(&l.arweave_id), height: l.height }),
            pending: pending.len(),
            not_served: None,
        };
    }
}

impl Task for ForcedFollower {
    async fn turn(&mut self) -> Result<(), TaskError> {
        self.planner.turn(&mut self.sequencer, self.clock).await.map(|_| ()).map_err(TaskError::transient)
    }
}
