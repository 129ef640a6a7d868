//! The follower: fetches the coordinator's batches from the DA in order, replays each with the
//! protocol core, checks its deposits against L1, and records what it replayed. Hard finality
//! is the longest prefix of batches that replayed, have nothing left unchecked, and precede
//! every alarm.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bridge::batch::{Settlement, replay, replay_verified};
use bridge::tx::SystemTx;
use bridge::{BatchTx, Chain, NetworkParams, SignedBatch, State};
use chains::da::{DaError, DataAvailability, FetchedBatch};
use chains::snapshots::{Restored, SnapshotKeeper, SnapshotPolicy, SnapshotStoreError, restore_newest};

use crate::alarm::{Alarm, AlarmKind};
use crate::deposits::{DepositCheck, DepositVerifier, DepositVerifiers, VerifierError};
use crate::evidence::{EVIDENCE_VERSION, Evidence};
use crate::patience::{Clock, Doubt, GapVerdict, GapWatch};
use crate::store::{ConfirmerStore, ReplayedBatch, StoreError};

mod alarms;
mod late_equivocation;
mod take;
mod takeover;
mod unrecorded;

use self::take::replayed_tx_hashes;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the DA could not be read: {0}; retrying")]
    Da(DaError),
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    #[error("a signature-checking worker failed: {0}")]
    Worker(String),
    #[error("the Arweave gateway could not be asked about forced transactions: {0}; retrying")]
    Forced(String),
    #[error("the state snapshots: {0}")]
    Snapshot(#[from] SnapshotStoreError),
    #[error(
        "the confirmer's own record does not replay at batch {number}: {reason}; delete its database and replay from genesis"
    )]
    OwnRecord { number: u64, reason: String },
}

impl FollowError {
    /// Whether another turn cannot help: the confirmer's own record does not replay, and only
    /// deleting its database does (a human decides). Anything else (a DA, a store or a worker
    /// failing now) is worth another turn. The binary's follow task and the simulator's
    /// `tasks-live` check both ask this.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FollowError::OwnRecord { .. })
    }
}

/// Where the follower stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The last batch replayed (0: none).
    pub replayed: u64,
    /// The last hard-final batch (0: none).
    pub hard_final: u64,
    /// Why the batch after `hard_final` is not hard-final, if it replayed.
    pub unverified: Option<String>,
    /// Why the next batch does not replay yet: an L1 fact this node cannot confirm yet.
    pub waiting: Option<Waiting>,
    pub alarms: Vec<Alarm>,
}

/// A batch held back because this confirmer's own L1 node cannot confirm one of its facts yet:
/// the fact is not deep enough, or the node has not reached the block the batch names. Not an
/// alarm; the batch is checked again at every step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Waiting {
    /// The batch that waits.
    pub batch: u64,
    #[schema(value_type = String)]
    pub chain: Chain,
    /// The fact, in words (a deposit, a payout confirmation).
    pub what: String,
    /// This node's height when it is behind the block the batch names, and the height it must
    /// reach; both absent when the node has the fact but not yet at depth.
    pub node_height: Option<u64>,
    pub needed_height: Option<u64>,
}

/// What one [`Follower::step`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    pub replayed: u64,
    pub alarm: Option<Alarm>,
}

/// What became of one fetched batch.
enum Taken {
    Replayed,
    /// An L1 fact is not yet at depth, or this node has not reached it.
    Waiting,
    /// Not the coordinator's bytes.
    Foreign,
    Alarm(Alarm),
}

/// The wait before a gap is an alarm unless configured: none (a directory DA shows a batch whole
/// or not at all); binaries following Arweave configure minutes.
pub const DEFAULT_MISSING_BATCH_WAIT: Duration = Duration::ZERO;

/// How long an L1 fact may name a block beyond what this node, in sync by its own word, has
/// (more than its depth and slack: `chains::deposit::ETH_FUTURE_SLACK_BLOCKS`) before it is an
/// alarm: ten minutes, so a node that only believes it is in sync has time to hear of the blocks.
pub const DEFAULT_BEYOND_TIP_WAIT: Duration = Duration::from_secs(600);

pub struct Follower {
    da: Arc<dyn DataAvailability>,
    store: ConfirmerStore,
    verifiers: DepositVerifiers,
    params: NetworkParams,
    state: State,
    replayed: u64,
    hard_final: u64,
    unverified: Option<String>,
    /// Why the next batch waits for this node's view of L1, if it does.
    waiting: Option<Waiting>,
    /// The batch of the first alarm: nothing from it on is replayed or final.
    halted_at: Option<u64>,
    alarms: Vec<Alarm>,
    /// The missing batch of the current gap, since when and for how many steps
    /// (crate::patience).
    gap: GapWatch,
    /// How long a gap must last before it is a `missing_batch` alarm.
    missing_batch_wait: Duration,
    /// The L1 fact (batch, position) first seen named beyond a synced node's tip, and when.
    beyond: Doubt<(u64, usize)>,
    /// What the waits above are measured with ([`Follower::with_clock`]).
    clock: Clock,
    /// How long that must last before it is an alarm.
    beyond_tip_wait: Duration,
    /// Batch numbers whose bytes on the DA were not the coordinator's (logged once each).
    foreign: BTreeSet<u64>,
    /// What the latest replayed batches owe on L1, for those that owe anything: at most
    /// [`RECENT_SETTLEMENTS`] of them, all from batch `settlements_from` on. Every settlement is
    /// also in the database, where older ones are read ([`Follower::final_settlement`]).
    settlements: BTreeMap<u64, Arc<Settlement>>,
    /// Batches from here on are all in `settlements` when they owe anything (absent: owes
    /// nothing); earlier ones are read from the database.
    settlements_from: u64,
    /// Forced inclusion: the gateway check (crate::forced) and where the last replayed batch
    /// left the cursor.
    forced: Option<crate::forced::ForcedChecker>,
    forced_cursor: Option<bridge::forced::ForcedCursor>,
    /// Hashes of the batches a `censorship` alarm names, by number: only another batch with
    /// that number (a takeover's) can resume following (follower/takeover.rs).
    censored: BTreeMap<u64, BTreeSet<[u8; 32]>>,
    /// The batch the state took whose record the database refused: the state is one batch
    /// ahead of `replayed` until it is recorded (follower/unrecorded.rs).
    unrecorded: Option<unrecorded::Unrecorded>,
    /// Snapshots of the replayed state, so a restart replays only what came after the last.
    snapshots: SnapshotKeeper,
    /// The batch of the snapshot this follower started from (0: genesis).
    restored_from: u64,
    /// Batches replayed from its own record at start, after the snapshot.
    start_replayed: u64,
    /// The header hashes of the latest replayed batches, oldest first, at most
    /// [`RECENT_HEADERS`]: what a watchman vouches for in a signed checkpoint.
    recent_headers: VecDeque<(u64, [u8; 32])>,
}

/// Header hashes kept in memory for checkpoint signing: enough for the watchmen to agree on a
/// recent batch (they sign within a few turns of replaying it), bounded so memory does not grow
/// with the history (32 KB).
pub const RECENT_HEADERS: usize = 1_024;

/// Settlements of owing batches kept in memory: the newest, which the watchman's book reads
/// right after each step (it takes each batch as it becomes hard-final, so its reads stay in
/// this window unless hard finality lags replay by more than this many owing batches). Older
/// ones are read from the database, so memory does not grow with the history (a settlement is
/// at most one batch's withdrawals and plans).
pub const RECENT_SETTLEMENTS: usize = 1_024;

/// Batches of the confirmer's own record read per query at start: the record is never held
/// whole in memory, and a page of full batches (`MAX_BATCH_TXS` each) stays small.
const RECORD_PAGE: u32 = 4;

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("replayed", &self.replayed)
            .field("hard_final", &self.hard_final)
            .field("halted_at", &self.halted_at)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Resumes from what `store` holds: the newest state snapshot that checks against its
    /// signed header (else genesis), then the recorded batches after it, replayed again
    /// locally. Snapshots are then taken by [`SnapshotPolicy::default`] unless
    /// [`Follower::with_snapshots`] says otherwise.
    pub async fn open(
        da: Arc<dyn DataAvailability>,
        store: ConfirmerStore,
        params: NetworkParams,
        verifiers: DepositVerifiers,
    ) -> Result<Self, FollowError> {
        let record = store.clone();
        let restored = restore_newest(&store.snapshots(), &params, move |number| {
            let record = record.clone();
            async move { record.replayed_batch(number).await.map(|b| b.map(|b| b.batch.signed_header())) }
        })
        .await?;
        Self::open_from(da, store, params, verifiers, restored).await
    }

    /// [`Follower::open`] from a state already restored and checked: the newest snapshot in
    /// `store` (a fast sync's, just saved), so what `open` would restore itself.
    pub async fn open_from(
        da: Arc<dyn DataAvailability>,
        store: ConfirmerStore,
        params: NetworkParams,
        verifiers: DepositVerifiers,
        restored: Restored,
    ) -> Result<Self, FollowError> {
        let from = restored.from;
        assert_eq!(restored.state.head().next_number, from + 1, "a restored state is the state after batch `from`");
        // The forced cursor where the restored batch left it (its header says), else the start.
        let restored_header = match (params.forced, from) {
            (Some(_), 1..) => store.replayed_batch(from).await?.map(|stored| stored.batch.header),
            _ => None,
        };
        let forced_cursor = bridge::forced::cursor_after(params.forced.as_ref(), from, restored_header.as_ref())
            .map_err(|e| FollowError::OwnRecord { number: from, reason: e.to_string() })?;
        let (hard_final, unverified) = match store.first_unverified(from).await? {
            Some((number, why)) => (number - 1, Some(format!("batch {number}: {why}"))),
            None => (from, None),
        };
        let snapshots = SnapshotKeeper::new(
            store.snapshots(),
            SnapshotPolicy::default(),
            from,
            restored.state.head().last_timestamp,
        );
        let mut follower = Follower {
            da,
            store,
            verifiers,
            state: restored.state,
            params,
            replayed: from,
            hard_final,
            unverified,
            waiting: None,
            halted_at: None,
            alarms: Vec::new(),
            gap: GapWatch::default(),
            missing_batch_wait: DEFAULT_MISSING_BATCH_WAIT,
            beyond: Doubt::default(),
            clock: crate::patience::monotonic_clock(),
            beyond_tip_wait: DEFAULT_BEYOND_TIP_WAIT,
            foreign: BTreeSet::new(),
            settlements: BTreeMap::new(),
            settlements_from: 0,
            forced: None,
            forced_cursor,
            censored: BTreeMap::new(),
            unrecorded: None,
            snapshots,
            restored_from: from,
            start_replayed: 0,
            recent_headers: VecDeque::new(),
        };
        if from > 0 {
            follower.note_header(from);
        }
        let recent = follower.store.recent_settlements(RECENT_SETTLEMENTS as u32).await?;
        if recent.len() >= RECENT_SETTLEMENTS {
            // Older rows may exist: below the oldest loaded, read the database.
            follower.settlements_from = recent.first().map_or(0, |(number, _)| *number);
        }
        for (number, settlement) in recent {
            follower.settlements.insert(number, Arc::new(settlement));
        }
        // A record from before the index existed gets it now (every batch is replayed then:
        // such a record has no snapshot either).
        let reindex = follower.store.tx_index_is_empty().await?;
        loop {
            let page = follower.store.replayed_after(follower.replayed, RECORD_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for stored in page {
                let number = stored.batch.header.number;
                let replayed = replay(&mut follower.state, &stored.batch)
                    .map_err(|e| FollowError::OwnRecord { number, reason: e.to_string() })?;
                if let Some(commit) = &stored.batch.header.forced {
                    follower.forced_cursor = Some(commit.to);
                }
                if reindex {
                    let hashes = replayed_tx_hashes(&replayed);
                    follower.store.index_txs(number, &hashes).await?;
                    follower.store.record_settlement(number, &replayed.settlement).await?;
                }
                follower.keep(number, replayed.settlement);
                follower.advance(number, stored.unverified);
            }
        }
        for (alarm, evidence) in follower.store.alarms().await? {
            if follower.superseded_at_start(alarm.kind, alarm.number, &evidence) {
                continue;
            }
            follower.halted_at = Some(follower.halted_at.map_or(alarm.number, |n| n.min(alarm.number)));
            follower.alarms.push(alarm);
        }
        // Hard finality precedes every alarm (one found late may name a batch replayed before).
        if let Some(halted) = follower.halted_at {
            follower.hard_final = follower.hard_final.min(halted.saturating_sub(1));
        }
        follower.start_replayed = follower.replayed - from;
        tracing::info!(snapshot = from, replayed = follower.replayed, "confirmer state ready");
        follower.publish_metrics();
        Ok(follower)
    }

    /// When to snapshot the replayed state ([`SnapshotPolicy::off`]: never; existing snapshots
    /// are still used at start).
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots =
            SnapshotKeeper::new(self.store.snapshots(), policy, self.replayed, self.state.head().last_timestamp);
        self
    }

    /// The batch whose snapshot this follower started from (0: genesis, all replayed again).
    pub fn restored_from(&self) -> u64 {
        self.restored_from
    }

    /// Waits for a snapshot being written (tests, shutdown): its batch, if one was.
    pub async fn flush_snapshots(&mut self) -> Result<Option<u64>, FollowError> {
        Ok(self.snapshots.flush().await?)
    }

    /// A clean stop: the replayed state saved unless it already is (snapshots on).
    pub async fn finish_snapshots(&mut self) -> Result<Option<u64>, FollowError> {
        Ok(self.snapshots.finish(&self.state).await?)
    }

    /// How long a batch may stay missing while a later one is published before it is a
    /// `missing_batch` alarm. On Arweave a later transaction can be seen before an earlier one
    /// (a dropped transaction the publisher posts again), so give it several blocks' time.
    pub fn with_missing_batch_wait(mut self, wait: Duration) -> Self {
        self.missing_batch_wait = wait;
        self
    }

    /// Measures the waits (a gap, a fact beyond the tip) with `clock` instead of the process's
    /// monotonic clock: the simulator's simulated time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks each batch's forced transactions against the gateway (a network with forced
    /// inclusion; without a checker its batches replay but stay unverified).
    pub fn with_forced(mut self, checker: crate::forced::ForcedChecker) -> Self {
        self.forced = Some(checker);
        self
    }

    /// How long an L1 fact may name a block beyond a synced node's tip before it is an alarm
    /// (`deposit_not_on_l1` or `payout_not_on_l1`), instead of a wait that never ends.
    pub fn with_beyond_tip_wait(mut self, wait: Duration) -> Self {
        self.beyond_tip_wait = wait;
        self
    }

    pub fn status(&self) -> Status {
        Status {
            replayed: self.replayed,
            hard_final: self.hard_final,
            unverified: self.unverified.clone(),
            waiting: self.waiting.clone(),
            alarms: self.alarms.clone(),
        }
    }

    /// The replayed state: as of batch [`Status::replayed`], or of the batch after it while the
    /// database refuses that batch's record (follower/unrecorded.rs).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Notes the header hash of batch `number`, just replayed (the state's head names it).
    fn note_header(&mut self, number: u64) {
        debug_assert_eq!(self.state.head().next_number, number + 1, "the state is just after batch {number}");
        self.recent_headers.push_back((number, self.state.head().last_hash));
        while self.recent_headers.len() > RECENT_HEADERS {
            self.recent_headers.pop_front();
        }
    }

    /// The header hash of batch `number` as this follower replayed it, if it is among the latest
    /// [`RECENT_HEADERS`] replayed.
    pub fn recent_header(&self, number: u64) -> Option<[u8; 32]> {
        self.recent_headers.iter().rev().find(|(n, _)| *n == number).map(|(_, hash)| *hash)
    }

    pub fn is_hard_final(&self, number: u64) -> bool {
        number >= 1 && number <= self.hard_final
    }

    /// What batch `number` owes on L1, if it is hard-final: the watchman's question, answered
    /// from this confirmer's own replay. `Ok(None)` if it is not (yet) hard-final; a hard-final
    /// batch that owes nothing has an empty settlement. Recent batches are answered from
    /// memory, older ones from the database; a database that cannot be read is an error, never
    /// "owes nothing".
    pub async fn final_settlement(&self, number: u64) -> Result<Option<Arc<Settlement>>, StoreError> {
        if !self.is_hard_final(number) {
            return Ok(None);
        }
        if number >= self.settlements_from {
            return Ok(Some(self.settlements.get(&number).cloned().unwrap_or_else(|| Arc::new(Settlement::empty()))));
        }
        let stored = self.store.settlement(number).await?;
        Ok(Some(Arc::new(stored.unwrap_or_else(Settlement::empty))))
    }

    /// The hard-final batches in `first..=last` that owe anything on L1, with what they owe, in
    /// order: batches past hard finality are left out (not yet known), as are those that owe
    /// nothing. One database query for the part older than the in-memory window.
    pub async fn final_settlements(&self, first: u64, last: u64) -> Result<Vec<(u64, Arc<Settlement>)>, StoreError> {
        let (first, last) = (first.max(1), last.min(self.hard_final));
        if last < first {
            return Ok(Vec::new());
        }
        let mut owing = Vec::new();
        if first < self.settlements_from {
            let stored = self.store.settlements_between(first, last.min(self.settlements_from - 1)).await?;
            owing.extend(stored.into_iter().map(|(number, settlement)| (number, Arc::new(settlement))));
        }
        let from = first.max(self.settlements_from);
        if from <= last {
            owing.extend(self.settlements.range(from..=last).map(|(number, settlement)| (*number, settlement.clone())));
        }
        Ok(owing)
    }

    /// Settlements held in memory (at most [`RECENT_SETTLEMENTS`]).
    pub fn settlements_in_memory(&self) -> usize {
        self.settlements.len()
    }

    /// The batch holding transaction `hash`, if it was replayed (an index in the database).
    pub async fn batch_of_tx(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.store.batch_of_tx(hash).await
    }

    pub fn params(&self) -> &NetworkParams {
        &self.params
    }

    pub fn store(&self) -> &ConfirmerStore {
        &self.store
    }

    /// The DA followed.
    pub fn da(&self) -> &Arc<dyn DataAvailability> {
        &self.da
    }

    /// Keeps what batch `number` (just replayed, and recorded in the database) owes among the
    /// recent ones, dropping the oldest beyond [`RECENT_SETTLEMENTS`].
    fn keep(&mut self, number: u64, settlement: Settlement) {
        // Below the window (a restart replaying its own record): the database has it.
        if !settlement.is_empty() && number >= self.settlements_from {
            self.settlements.insert(number, Arc::new(settlement));
        }
        while self.settlements.len() > RECENT_SETTLEMENTS {
            let Some((oldest, _)) = self.settlements.pop_first() else { break };
            self.settlements_from = self.settlements_from.max(oldest + 1);
        }
        debug_assert!(self.settlements.len() <= RECENT_SETTLEMENTS);
        debug_assert!(self.settlements.first_key_value().is_none_or(|(n, _)| *n >= self.settlements_from));
    }

    fn advance(&mut self, number: u64, unverified: Option<String>) {
        assert_eq!(number, self.replayed + 1, "batches are replayed in order");
        self.replayed = number;
        self.note_header(number);
        if self.hard_final + 1 == number && self.unverified.is_none() && unverified.is_none() {
            self.hard_final = number;
        } else if self.unverified.is_none() {
            self.unverified = unverified.map(|why| format!("batch {number}: {why}"));
        }
    }

    /// Fetches and replays up to `limit` new batches.
    pub async fn step(&mut self, limit: usize) -> Result<Step, FollowError> {
        let mut step = Step::default();
        // Every turn, even one with nothing new: the recorder may be installed after `open`.
        self.publish_metrics();
        // A batch the state took whose record failed: recorded first, or nothing moves.
        if self.record_owed().await? {
            step.replayed += 1;
        }
        if self.halted_at.is_some() {
            self.resume_after_takeover(&mut step).await?;
            return Ok(step);
        }
        if let Some(alarm) = self.late_equivocation().await? {
            step.alarm = Some(alarm);
            return Ok(step);
        }
        if limit == 0 {
            // Asked for no batch: none fetched says nothing about a gap ("not seen yet" is not
            // "absent"), so no `missing_batch` either.
            return Ok(step);
        }
        let fetched = match self.da.batches_after(self.replayed, limit).await {
            Ok(fetched) => fetched,
            Err(DaError::Equivocation(pair)) => {
                let number = pair.first.header.number;
                // The batches before the equivocating one are still the coordinator's only
                // ones: take them first, one at a time.
                while self.replayed + 1 < number {
                    let Ok(Some(item)) = self.da.fetch(self.replayed + 1).await else { break };
                    match self.verify_and_take(item).await? {
                        Taken::Replayed => step.replayed += 1,
                        Taken::Alarm(alarm) => {
                            step.alarm = Some(alarm);
                            return Ok(step);
                        }
                        Taken::Waiting | Taken::Foreign => return Ok(step),
                    }
                }
                if self.replayed + 1 < number {
                    return Ok(step);
                }
                let detail = format!("two batches numbered {number} signed by the coordinator");
                let evidence = self.evidence(AlarmKind::Equivocation, number, &detail);
                let evidence = Evidence { equivocation: Some(*pair), ..evidence };
                step.alarm = Some(self.raise(AlarmKind::Equivocation, number, detail, evidence).await?);
                // The pair may be under the last batch replayed (read again to link the next
                // one): an equivocation found late, below which hard finality falls back.
                self.hard_final = self.hard_final.min(number - 1);
                return Ok(step);
            }
            Err(error @ (DaError::Invalid { .. } | DaError::Misfiled { .. })) => {
                // Bytes the coordinator did not sign are nobody's batch: not an alarm.
                if self.foreign.insert(self.replayed + 1) {
                    tracing::warn!(%error, "ignoring a DA entry the coordinator did not sign");
                    metrics::counter!("bridge_confirmer_foreign_entries_total").increment(1);
                }
                return Ok(step);
            }
            Err(error) => return Err(FollowError::Da(error)),
        };
        if fetched.is_empty() {
            step.alarm = self.check_gap().await?;
            return Ok(step);
        }
        self.gap.progressed();
        // The next batch's signatures are recovered on every core while this one is applied.
        let domain = Arc::new(self.state.domain().clone());
        let verify = |batch: &SignedBatch| {
            let (body, domain) = (batch.body.clone(), domain.clone());
            tokio::task::spawn_blocking(move || bridge::tx::verify_all(&body, &domain))
        };
        let mut fetched = fetched.into_iter().peekable();
        let mut checking = fetched.peek().map(|item| verify(&item.batch));
        while let Some(item) = fetched.next() {
            let number = item.batch.header.number;
            let Some(pending) = checking.take() else { break };
            checking = fetched.peek().map(|next| verify(&next.batch));
            if number != self.replayed + 1 {
                // The DA hands batches in order from the one asked for; anything else is a gap.
                break;
            }
            let verified = pending.await.map_err(|e| FollowError::Worker(e.to_string()))?;
            match self.take(item, verified).await? {
                Taken::Replayed => step.replayed += 1,
                // Checked again at the next step.
                Taken::Waiting | Taken::Foreign => break,
                Taken::Alarm(alarm) => {
                    step.alarm = Some(alarm);
                    break;
                }
            }
        }
        self.publish_metrics();
        Ok(step)
    }

    fn publish_metrics(&self) {
        metrics::gauge!("bridge_confirmer_replayed_batch").set(self.replayed as f64);
        metrics::gauge!("bridge_confirmer_hard_final_batch").set(self.hard_final as f64);
        // What this start cost: a clean stop (final snapshot) leaves nothing to replay.
        metrics::gauge!("bridge_snapshot_restored_batch").set(self.restored_from as f64);
        metrics::gauge!("bridge_start_replayed_batches").set(self.start_replayed as f64);
    }
}
