//! The sequencer: the one writer. It owns the state and the open batch, applies transactions in
//! arrival order with the protocol core, and commits every accepted transaction to the ledger
//! before anyone hears back (group commit: whatever queued while the last commit ran goes in the
//! next one). Signatures are checked before a transaction reaches it, in parallel.
//!
//! If a commit fails, the state in memory is ahead of the ledger: the sequencer stops (fail-stop)
//! and refuses everything until it is restarted, which rebuilds the state from the ledger.

use bridge::batch::{ApplyError, ReplayError, SealedBatch};
use bridge::{BatchBuilder, BatchTx, CoordinatorKey, NetworkParams, Receipt, State, Tx};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use chains::snapshots::{SnapshotKeeper, SnapshotPolicy, SnapshotStoreError, restore_newest};

use crate::seal_rule::{OpenBatch, SealRule};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ledger does not replay: batch {number}: {source}; the database and the network parameters disagree")]
    Replay { number: u64, source: ReplayError },
    #[error("the ledger holds transaction {seq} that no longer applies: {reason}; the database is damaged")]
    Ledger { seq: u64, reason: String },
    #[error("sealing batch {number} failed: {reason}")]
    Seal { number: u64, reason: String },
    #[error("the sequencer stopped after a failed commit; restart the coordinator")]
    Stopped,
    #[error("batch {number} carries no forced cursor on a network with forced inclusion; the ledger is damaged")]
    MissingForcedCursor { number: u64 },
    #[error("this network takes no forced transactions")]
    NoForced,
    #[error("the forced plan starts at {planned} but the cursor is at {cursor}; plan again")]
    StaleForced { planned: bridge::forced::ForcedCursor, cursor: bridge::forced::ForcedCursor },
    #[error("the state snapshots: {0}")]
    Snapshot(#[from] SnapshotStoreError),
}

/// One transaction's fate: applied (and durable) or refused, with the reason.
pub type Outcome = Result<Receipt, ApplyError>;

/// The single writer, used directly (one task) or through [`SequencerHandle`].
#[derive(Debug)]
pub struct Sequencer {
    state: State,
    builder: BatchBuilder,
    store: Store,
    key: CoordinatorKey,
    next_seq: u64,
    /// Sequence number of the open batch's first transaction.
    batch_first_seq: u64,
    /// The open batch's transactions' encoded bytes, for the seal rule's byte bound.
    open_bytes: u64,
    stopped: bool,
    /// On a network with forced inclusion: where the last sealed batch left the cursor, and
    /// how far the next one may move it without entries (crate::forced).
    forced: Option<crate::forced::CursorState>,
    /// Snapshots of the state at sealed batches, so a restart replays only the batches after
    /// the newest one.
    snapshots: SnapshotKeeper,
    /// The batch of the snapshot recovery started from (0: genesis).
    restored_from: u64,
}

/// Sealed batches read per query during recovery: the ledger is never held whole in memory
/// (it was: about 300 bytes per transaction ever served stayed resident after a restart). Four,
/// not more: a batch holds up to `MAX_BATCH_TXS` (10^5) transactions, and 64 of 10^4 each
/// held 2.8× the memory of a start from a snapshot at 10^6 transactions of history.
const RECOVERY_PAGE: u32 = 4;

impl Sequencer {
    /// Rebuilds the state from the ledger: the newest state snapshot that checks against its
    /// batch's signed header (else genesis), then every sealed batch after it, then the
    /// acknowledged transactions not yet sealed, in their order. Snapshots are then taken by
    /// [`SnapshotPolicy::default`] unless [`Sequencer::with_snapshots`] says otherwise.
    pub async fn recover(store: Store, params: NetworkParams, key: CoordinatorKey) -> Result<Self, SequencerError> {
        let ledger = store.clone();
        let restored = restore_newest(&store.snapshots(), &params, move |number| {
            let ledger = ledger.clone();
            async move { ledger.header(number).await }
        })
        .await?;
        let from = restored.from;
        let mut state = restored.state;
        // The forced cursor where the restored batch's header left it, then each batch's after it.
        let restored_header = match (params.forced, from) {
            (Some(_), 1..) => store.header(from).await?.map(|signed| signed.header),
            _ => None,
        };
        let mut forced = bridge::forced::cursor_after(params.forced.as_ref(), from, restored_header.as_ref())
            .map_err(|e| SequencerError::MissingForcedCursor { number: e.number })?
            .map(crate::forced::CursorState::new);
        loop {
            let page = store.batches_after(state.head().next_number - 1, RECOVERY_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for batch in page {
                let number = batch.header.number;
                bridge::batch::replay(&mut state, &batch)
                    .map_err(|source| SequencerError::Replay { number, source })?;
                if let (Some(cursor), Some(commit)) = (&mut forced, &batch.header.forced) {
                    *cursor = crate::forced::CursorState::new(commit.to);
                }
            }
        }
        let replayed = state.head().next_number - 1 - from;
        tracing::info!(snapshot = from, replayed, batches = state.head().next_number - 1, "sequencer state rebuilt");
        // What this start cost: a clean stop (final snapshot) leaves nothing to replay.
        metrics::gauge!("bridge_start_replayed_batches").set(replayed as f64);
        let snapshots =
            SnapshotKeeper::new(store.snapshots(), SnapshotPolicy::default(), from, state.head().last_timestamp);
        let mut builder = BatchBuilder::new(&state);
        let pending = store.unbatched_txs().await?;
        let batch_first_seq = match pending.first() {
            Some((seq, _)) => *seq,
            None => store.next_seq().await?,
        };
        let domain = state.domain().clone();
        let mut open_bytes = 0u64;
        for (seq, batch_tx) in pending {
            open_bytes += encoded_len(&batch_tx);
            let tx = batch_tx.verify(&domain).map_err(|e| SequencerError::Ledger { seq, reason: e.to_string() })?;
            builder.apply(&mut state, tx).map_err(|e| SequencerError::Ledger { seq, reason: e.to_string() })?;
        }
        let next_seq = store.next_seq().await?;
        if next_seq != batch_first_seq + builder.len() as u64 {
            return Err(SequencerError::Ledger {
                seq: batch_first_seq,
                reason: "unsealed transactions are not the ledger's tail".into(),
            });
        }
        Ok(Sequencer {
            state,
            builder,
            store,
            key,
            next_seq,
            batch_first_seq,
            open_bytes,
            stopped: false,
            snapshots,
            restored_from: from,
            forced,
        })
    }

    /// When to snapshot the state ([`SnapshotPolicy::off`]: never; existing snapshots are
    /// still used at start).
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        let head = self.state.head();
        self.snapshots = SnapshotKeeper::new(self.store.snapshots(), policy, head.next_number - 1, head.last_timestamp);
        self
    }

    /// Waits for a snapshot being written (tests, shutdown): its batch, if one was.
    pub async fn flush_snapshots(&mut self) -> Result<Option<u64>, SequencerError> {
        Ok(self.snapshots.flush().await?)
    }

    /// A clean stop: the last sealed batch's state saved unless it already is (snapshots on).
    pub async fn finish_snapshots(&mut self) -> Result<Option<u64>, SequencerError> {
        Ok(self.snapshots.finish(&self.state).await?)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The batch whose snapshot recovery started from (0: genesis, every batch replayed).
    pub fn restored_from(&self) -> u64 {
        self.restored_from
    }

    /// Transactions in the open batch.
    pub fn open_len(&self) -> usize {
        self.builder.len()
    }

    /// The open batch's encoded transaction bytes ([`crate::seal_rule::OpenBatch::encoded_bytes`]).
    pub fn open_bytes(&self) -> u64 {
        self.open_bytes
    }

    /// Applies `txs` in order and commits the accepted ones in one database transaction;
    /// returns each one's outcome only after that commit.
    pub async fn submit(&mut self, txs: Vec<Tx>) -> Result<Vec<Outcome>, SequencerError> {
        if self.stopped {
            return Err(SequencerError::Stopped);
        }
        let mut outcomes = Vec::with_capacity(txs.len());
        let mut accepted = Vec::new();
        for tx in txs {
            let batch_tx = tx.to_batch_tx();
            let outcome = match self.builder.apply(&mut self.state, tx) {
                // A full batch is sealed on the spot, and the transaction goes into the next.
                Err(ApplyError::BatchFull) => {
                    self.commit(std::mem::take(&mut accepted)).await?;
                    self.seal_open(self.state.head().last_timestamp).await?;
                    let tx = batch_tx
                        .verify(self.state.domain())
                        .map_err(|e| SequencerError::Ledger { seq: self.next_seq, reason: e.to_string() })?;
                    self.builder.apply(&mut self.state, tx)
                }
                other => other,
            };
            // The id comes from the receipt: a system transaction's names the batch and position
            // it landed in, which a full batch just changed.
            if let Ok(receipt) = &outcome {
                accepted.push((receipt.tx_hash, batch_tx));
            }
            outcomes.push(outcome);
        }
        self.commit(accepted).await?;
        Ok(outcomes)
    }

    /// Appends applied transactions to the ledger in one database transaction.
    async fn commit(&mut self, accepted: Vec<([u8; 32], BatchTx)>) -> Result<(), SequencerError> {
        self.store.append_txs(self.next_seq, &accepted).await.map_err(|e| self.stop(e))?;
        self.next_seq += accepted.len() as u64;
        self.open_bytes += accepted.iter().map(|(_, tx)| encoded_len(tx)).sum::<u64>();
        Ok(())
    }

    /// Seals the open batch (if it holds anything) with `timestamp` and records it.
    pub async fn seal(&mut self, timestamp: u64) -> Result<Option<SealedBatch>, SequencerError> {
        if self.stopped {
            return Err(SequencerError::Stopped);
        }
        if self.builder.is_empty() {
            return Ok(None);
        }
        // Timestamps never go backwards, whatever the clock does.
        let timestamp = timestamp.max(self.state.head().last_timestamp);
        self.seal_open(timestamp).await.map(Some)
    }

    async fn seal_open(&mut self, timestamp: u64) -> Result<SealedBatch, SequencerError> {
        let mut builder = std::mem::replace(&mut self.builder, BatchBuilder::new(&self.state));
        let number = builder.number();
        if let Some(cursor) = self.forced {
            cursor.close(&mut builder, &mut self.state).map_err(|e| {
                self.stop_with(SequencerError::Seal { number, reason: format!("the forced section: {e}") })
            })?;
        }
        let sealed = builder
            .seal(&mut self.state, timestamp, &self.key)
            .map_err(|e| self.stop_with(SequencerError::Seal { number, reason: e.to_string() }))?;
        self.store
            .record_batch(&sealed.batch, self.batch_first_seq, self.state.domain())
            .await
            .map_err(|e| self.stop(e))?;
        self.batch_first_seq += u64::from(sealed.batch.header.tx_count);
        if let (Some(cursor), Some(commit)) = (&mut self.forced, &sealed.batch.header.forced) {
            *cursor = crate::forced::CursorState::new(commit.to);
        }
        self.builder = BatchBuilder::new(&self.state);
        self.open_bytes = 0;
        assert_eq!(self.batch_first_seq, self.next_seq, "a sealed batch holds every acknowledged transaction");
        // The batch is in the ledger: a snapshot of the state after it can be checked against it.
        self.snapshots.after_batch(&self.state);
        Ok(sealed)
    }

    /// Where the forced cursor stands: the last sealed batch's `to` (`None` without forced
    /// inclusion).
    pub fn forced_cursor(&self) -> Option<bridge::forced::ForcedCursor> {
        self.forced.as_ref().map(|c| c.sealed)
    }

    /// Takes a planned forced section (crate::forced). Without entries it only lets the next
    /// seal move the cursor to `work.to`. With entries, they go first in a batch of their own:
    /// the open batch is sealed first if it holds anything, then the entries are processed and
    /// that batch sealed at once, so the ledger never holds acknowledged transactions that
    /// ran after forced ones it could lose in a crash. Returns what it sealed, in order: none
    /// without entries, else the open batch if it held anything, then the forced one.
    pub async fn include_forced(
        &mut self,
        work: crate::forced::ForcedWork,
        timestamp: u64,
    ) -> Result<Vec<SealedBatch>, SequencerError> {
        if self.stopped {
            return Err(SequencerError::Stopped);
        }
        let Some(cursor) = &mut self.forced else { return Err(SequencerError::NoForced) };
        if work.from != cursor.sealed {
            return Err(SequencerError::StaleForced { planned: work.from, cursor: cursor.sealed });
        }
        if work.entries.is_empty() {
            cursor.allow(work.to);
            return Ok(Vec::new());
        }
        let timestamp = timestamp.max(self.state.head().last_timestamp);
        let mut sealed = Vec::with_capacity(2);
        if !self.builder.is_empty() {
            // The open batch closes without moving the cursor: the entries start at it.
            cursor.hold();
            sealed.push(self.seal_open(timestamp).await?);
        }
        let number = self.builder.number();
        let applied = &work.applied;
        self.builder
            .process_forced(&mut self.state, work.from, work.to, &work.entries, &|hash| applied.contains(hash))
            .map_err(|e| self.stop_with(SequencerError::Seal { number, reason: format!("forced entries: {e}") }))?;
        sealed.push(self.seal_open(timestamp).await?);
        Ok(sealed)
    }

    fn stop(&mut self, error: StoreError) -> SequencerError {
        self.stop_with(error.into())
    }

    fn stop_with(&mut self, error: SequencerError) -> SequencerError {
        tracing::error!(%error, "the sequencer stops: memory is ahead of the ledger");
        self.stopped = true;
        error
    }
}

/// A read of the live state, run on the sequencer's task between commits.
type Read = Box<dyn FnOnce(&State) + Send>;

enum Command {
    Submit(Box<Tx>, oneshot::Sender<Result<Outcome, String>>),
    Seal(u64, oneshot::Sender<Result<Option<SealedBatch>, String>>),
    Read(Read),
    Forced(Box<crate::forced::ForcedWork>, u64, oneshot::Sender<Result<Vec<SealedBatch>, String>>),
    ForcedCursor(oneshot::Sender<Option<bridge::forced::ForcedCursor>>),
    FinishSnapshots(oneshot::Sender<Result<Option<u64>, String>>),
}

/// A cloneable way in to a sequencer running on its own task: each `submit` waits for its
/// transaction's commit, and concurrent submits share commits.
#[derive(Debug, Clone)]
pub struct SequencerHandle {
    commands: mpsc::Sender<Command>,
}

/// The most transactions one group commit carries.
const GROUP_COMMIT_MAX: usize = 4096;

impl SequencerHandle {
    /// Runs `sequencer` on a task of its own until every handle is dropped. Batches are sealed
    /// when `rule` says so (the open batch's age measured on the monotonic clock), stamped with
    /// `clock()` (milliseconds since the Unix epoch), and `sealed` is notified after each seal.
    pub fn spawn(
        mut sequencer: Sequencer,
        rule: SealRule,
        clock: fn() -> u64,
        sealed: Arc<Notify>,
    ) -> (Self, tokio::task::JoinHandle<Sequencer>) {
        let (commands, mut inbox) = mpsc::channel::<Command>(GROUP_COMMIT_MAX * 2);
        let task = tokio::spawn(async move {
            // Unsealed transactions recovered from the ledger start the clock too.
            let mut opened = (sequencer.open_len() > 0).then(Instant::now);
            loop {
                // Forced entries seal their own batch (`include_forced`), so none are due here.
                let deadline = rule.wait(&open_batch(&sequencer, opened)).map(|wait| Instant::now() + wait);
                let next = tokio::select! {
                    command = inbox.recv() => command,
                    () = sleep_until(deadline) => {
                        if rule.due(&open_batch(&sequencer, opened)).is_some() {
                            seal_now(&mut sequencer, clock, &sealed, &mut opened).await;
                        }
                        continue;
                    }
                };
                let Some(first) = next else { break };
                let mut group = vec![first];
                while group.len() < GROUP_COMMIT_MAX {
                    match inbox.try_recv() {
                        Ok(command) => group.push(command),
                        Err(_) => break,
                    }
                }
                if run_group(&mut sequencer, group).await {
                    sealed.notify_one();
                }
                if sequencer.open_len() == 0 {
                    opened = None;
                } else if opened.is_none() {
                    opened = Some(Instant::now());
                }
                if rule.due(&open_batch(&sequencer, opened)).is_some() {
                    seal_now(&mut sequencer, clock, &sealed, &mut opened).await;
                }
            }
            sequencer
        });
        (SequencerHandle { commands }, task)
    }

    /// Submits one verified transaction; resolves once it is durable (or refused).
    pub async fn submit(&self, tx: Tx) -> Result<Outcome, SequencerError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Submit(Box::new(tx), reply)).await.map_err(|_| SequencerError::Stopped)?;
        answer.await.map_err(|_| SequencerError::Stopped)?.map_err(|_| SequencerError::Stopped)
    }

    /// Submits verified transactions in this order (they may share one commit); resolves once
    /// every one of them is durable or refused, with each one's outcome.
    pub async fn submit_many(&self, txs: Vec<Tx>) -> Result<Vec<Outcome>, SequencerError> {
        let mut answers = Vec::with_capacity(txs.len());
        for tx in txs {
            let (reply, answer) = oneshot::channel();
            self.commands.send(Command::Submit(Box::new(tx), reply)).await.map_err(|_| SequencerError::Stopped)?;
            answers.push(answer);
        }
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(answer.await.map_err(|_| SequencerError::Stopped)?.map_err(|_| SequencerError::Stopped)?);
        }
        Ok(outcomes)
    }

    /// Runs `read` against the live state (everything acknowledged so far) and returns its answer.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, SequencerError> {
        let (reply, answer) = oneshot::channel();
        let read: Read = Box::new(move |state| {
            let _ = reply.send(read(state));
        });
        self.commands.send(Command::Read(read)).await.map_err(|_| SequencerError::Stopped)?;
        answer.await.map_err(|_| SequencerError::Stopped)
    }

    /// Hands a planned forced section to the sequencer ([`Sequencer::include_forced`]).
    pub async fn include_forced(
        &self,
        work: crate::forced::ForcedWork,
        timestamp: u64,
    ) -> Result<Vec<SealedBatch>, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Forced(Box::new(work), timestamp, reply))
            .await
            .map_err(|_| SequencerError::Stopped.to_string())?;
        answer.await.map_err(|_| SequencerError::Stopped.to_string())?
    }

    /// Where the forced cursor stands after the last sealed batch.
    pub async fn forced_cursor(&self) -> Result<Option<bridge::forced::ForcedCursor>, SequencerError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::ForcedCursor(reply)).await.map_err(|_| SequencerError::Stopped)?;
        answer.await.map_err(|_| SequencerError::Stopped)
    }

    /// A clean stop ([`Sequencer::finish_snapshots`]): the last sealed batch's state saved unless
    /// it already is, so the next start replays nothing; the batch of the last snapshot.
    pub async fn finish_snapshots(&self) -> Result<Option<u64>, String> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::FinishSnapshots(reply)).await.map_err(|_| SequencerError::Stopped.to_string())?;
        answer.await.map_err(|_| SequencerError::Stopped.to_string())?
    }

    /// Seals the open batch now.
    pub async fn seal(&self, timestamp: u64) -> Result<Option<SealedBatch>, SequencerError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Seal(timestamp, reply)).await.map_err(|_| SequencerError::Stopped)?;
        answer.await.map_err(|_| SequencerError::Stopped)?.map_err(|_| SequencerError::Stopped)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The open batch as the seal rule sees it, aged since `opened` on the monotonic clock.
fn open_batch(sequencer: &Sequencer, opened: Option<Instant>) -> OpenBatch {
    let age_ms = opened.map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
    OpenBatch { txs: sequencer.open_len(), encoded_bytes: sequencer.open_bytes(), age_ms, forced_due: false }
}

/// One transaction's share of the encoded batch.
fn encoded_len(tx: &BatchTx) -> u64 {
    bridge::codec::to_bytes(tx).len() as u64
}

async fn seal_now(sequencer: &mut Sequencer, clock: fn() -> u64, sealed: &Notify, opened: &mut Option<Instant>) {
    match sequencer.seal(clock()).await {
        Ok(Some(batch)) => {
            tracing::info!(number = batch.batch.header.number, txs = batch.batch.header.tx_count, "batch sealed");
            sealed.notify_one();
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, "sealing failed"),
    }
    *opened = None;
}

/// Runs consecutive submits as one group commit, keeping seals in their place in the order;
/// true if a batch was sealed.
async fn run_group(sequencer: &mut Sequencer, group: Vec<Command>) -> bool {
    let mut sealed_any = false;
    let mut txs = Vec::new();
    let mut replies = Vec::new();
    for command in group {
        match command {
            Command::Submit(tx, reply) => {
                txs.push(*tx);
                replies.push(reply);
            }
            Command::Seal(timestamp, reply) => {
                flush(sequencer, std::mem::take(&mut txs), std::mem::take(&mut replies)).await;
                let result = sequencer.seal(timestamp).await.map_err(|e| e.to_string());
                sealed_any |= matches!(result, Ok(Some(_)));
                let _ = reply.send(result);
            }
            Command::Forced(work, timestamp, reply) => {
                flush(sequencer, std::mem::take(&mut txs), std::mem::take(&mut replies)).await;
                let result = sequencer.include_forced(*work, timestamp).await.map_err(|e| e.to_string());
                sealed_any |= result.as_ref().is_ok_and(|sealed| !sealed.is_empty());
                let _ = reply.send(result);
            }
            Command::ForcedCursor(reply) => {
                let _ = reply.send(sequencer.forced_cursor());
            }
            Command::FinishSnapshots(reply) => {
                flush(sequencer, std::mem::take(&mut txs), std::mem::take(&mut replies)).await;
                let _ = reply.send(sequencer.finish_snapshots().await.map_err(|e| e.to_string()));
            }
            // Reads see every submit queued before them, so they wait for that commit.
            Command::Read(read) => {
                flush(sequencer, std::mem::take(&mut txs), std::mem::take(&mut replies)).await;
                read(sequencer.state());
            }
        }
    }
    flush(sequencer, txs, replies).await;
    sealed_any
}

async fn flush(sequencer: &mut Sequencer, txs: Vec<Tx>, replies: Vec<oneshot::Sender<Result<Outcome, String>>>) {
    if txs.is_empty() {
        return;
    }
    match sequencer.submit(txs).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let error = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
