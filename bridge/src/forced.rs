//! Forced inclusion: the way around a coordinator that ignores a user (docs/PROTOCOL.md,
//! "Forced transactions").
//!
//! A user posts the same signed bytes the API takes (`borsh(SignedUserTx)`) as an Arweave
//! transaction tagged `App-Name`, `Network`, `Type = forced-tx`. Every batch header of a network
//! with [`ForcedParams`] commits to a cursor range `(from, to]` over the forced transactions in
//! Arweave order (block height, then Arweave id), and the batch records, first and in that order,
//! what became of each one: applied, refused by the STF with its reason, a duplicate, or
//! malformed. The cursor must keep up with Arweave within a deadline unless the batch is full.
//!
//! This module is pure: the coordinator and the confirmers bring what the gateway listed, and
//! the same functions decide what a batch had to take ([`plan`], [`expected`]), what each entry
//! became ([`judge`]) and whether a confirmed batch kept the deadline ([`check_deadline`]).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{from_bytes, to_bytes};
use crate::hashing::{tagged_hash, tags};
use crate::state::State;
use crate::stf::{Receipt, TxError, apply_at};
use crate::tx::{SignedUserTx, Tx, TxPlace};
use crate::withdrawals::MerkleTree;

/// The `Type` tag of a forced transaction on Arweave.
pub const FORCED_TX_TYPE: &str = "forced-tx";
/// The largest forced transaction's data. A signed transfer or withdrawal is under 300 bytes;
/// anything above this is recorded as malformed from the gateway's listing alone, without
/// fetching it, so one huge upload costs a replayer nothing but a line of GraphQL.
pub const MAX_FORCED_TX_BYTES: u64 = 4096;
/// The largest per-batch cap a network may set: it bounds the gateway fetches (one per entry)
/// a replayer makes for one batch.
pub const MAX_FORCED_CAP: u32 = 1024;

/// A network's forced-inclusion rules, part of its parameters (and so of its genesis hash).
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedParams {
    /// M: the most forced entries one batch consumes (malformed ones included: each costs a
    /// fetch). What exceeds it carries over to the next batch, oldest first.
    pub cap: u32,
    /// D: how many Arweave blocks the cursor may lag the height at which its batch was
    /// confirmed, unless the batch consumed `cap` entries.
    pub deadline_blocks: u64,
    /// An entry counts once its block has this many confirmations (its own block is the first),
    /// so that an Arweave reorg cannot take back what a batch consumed.
    pub confirmations: u64,
    /// The first Arweave height that counts: the first forced batch's `from` cursor.
    pub start_height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForcedParamsError {
    #[error("the forced-inclusion cap must be 1 to {MAX_FORCED_CAP} entries per batch, got {0}")]
    Cap(u32),
    #[error("forced transactions need at least one confirmation")]
    Confirmations,
    #[error(
        "the forced-inclusion deadline ({deadline} blocks) must exceed the confirmations ({confirmations}): an honest coordinator could not keep it"
    )]
    Deadline { deadline: u64, confirmations: u64 },
}

impl ForcedParams {
    pub fn validate(&self) -> Result<(), ForcedParamsError> {
        if self.cap == 0 || self.cap > MAX_FORCED_CAP {
            return Err(ForcedParamsError::Cap(self.cap));
        }
        if self.confirmations == 0 {
            return Err(ForcedParamsError::Confirmations);
        }
        if self.deadline_blocks <= self.confirmations {
            return Err(ForcedParamsError::Deadline {
                deadline: self.deadline_blocks,
                confirmations: self.confirmations,
            });
        }
        Ok(())
    }

    /// The cursor before the first forced batch.
    pub fn start(&self) -> ForcedCursor {
        ForcedCursor { height: self.start_height, taken: 0 }
    }

    /// The highest Arweave height whose entries count when the gateway's tip is `tip`.
    pub fn safe_height(&self, tip: u64) -> Option<u64> {
        (tip + 1).checked_sub(self.confirmations)
    }
}

/// A position in the forced stream: every entry at a height below `height`, and the first
/// `taken` entries (in id order) at `height`, have been consumed. Ordered as the stream is.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct ForcedCursor {
    pub height: u64,
    pub taken: u32,
}

impl std::fmt::Display for ForcedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.height, self.taken)
    }
}

/// What a version-2 header commits to about forced transactions.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ForcedCommit {
    /// The previous batch's `to` (the network's start cursor for the first batch).
    pub from: ForcedCursor,
    /// Where this batch leaves the cursor.
    pub to: ForcedCursor,
    pub count: u32,
    /// [`records_root`] of the batch's forced records.
    #[serde(with = "crate::serde_hex::fixed")]
    pub records_root: [u8; 32],
}

/// Why a forced entry could not even be read as a transaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Malformed {
    /// The data is larger than [`MAX_FORCED_TX_BYTES`]; it was not fetched.
    TooLarge { size: u64 } = 0,
    /// The data is not the canonical borsh of a signed user transaction.
    Undecodable = 1,
}

/// What became of one forced entry.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ForcedOutcome {
    Malformed {
        malformed: Malformed,
    } = 0,
    Applied {
        tx: SignedUserTx,
    } = 1,
    /// The STF refused it; `code` is [`TxError::code`].
    Refused {
        tx: SignedUserTx,
        code: String,
    } = 2,
    /// The same transaction was already applied (through the API, or an earlier forced copy):
    /// the STF refuses it as `nonce_replayed` and it is not applied twice.
    Duplicate {
        tx: SignedUserTx,
    } = 3,
}

impl ForcedOutcome {
    pub fn tx(&self) -> Option<&SignedUserTx> {
        match self {
            ForcedOutcome::Malformed { .. } => None,
            ForcedOutcome::Applied { tx } | ForcedOutcome::Refused { tx, .. } | ForcedOutcome::Duplicate { tx } => {
                Some(tx)
            }
        }
    }

    /// A short name for logs, APIs and metrics.
    pub fn label(&self) -> &str {
        match self {
            ForcedOutcome::Malformed { malformed: Malformed::TooLarge { .. } } => "too_large",
            ForcedOutcome::Malformed { malformed: Malformed::Undecodable } => "undecodable",
            ForcedOutcome::Applied { .. } => "applied",
            ForcedOutcome::Refused { code, .. } => code,
            ForcedOutcome::Duplicate { .. } => "duplicate",
        }
    }
}

/// One forced entry as a batch records it.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ForcedRecord {
    /// The Arweave transaction id (the 32 bytes its base64url names).
    #[serde(with = "crate::serde_hex::fixed")]
    pub arweave_id: [u8; 32],
    pub height: u64,
    pub outcome: ForcedOutcome,
}

impl ForcedRecord {
    pub fn position(&self) -> (u64, [u8; 32]) {
        (self.height, self.arweave_id)
    }
}

/// `tagged_hash("bridge/forced-record", borsh(record))`.
pub fn record_leaf(record: &ForcedRecord) -> [u8; 32] {
    tagged_hash(tags::FORCED_RECORD, &[&to_bytes(record)])
}

/// The Merkle root (the withdrawals tree's shape) over the records' leaves, nodes tagged
/// `bridge/forced-node`; 32 zero bytes for none.
pub fn records_root(records: &[ForcedRecord]) -> [u8; 32] {
    MerkleTree::new(records.iter().map(record_leaf).collect(), |a, b| tagged_hash(tags::FORCED_NODE, &[a, b])).root()
}

/// A forced entry as a gateway lists it (GraphQL: id, block height, data size).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ForcedListing {
    #[serde(with = "crate::serde_hex::fixed")]
    pub arweave_id: [u8; 32],
    pub height: u64,
    pub size: u64,
}

impl ForcedListing {
    pub fn position(&self) -> (u64, [u8; 32]) {
        (self.height, self.arweave_id)
    }

    /// Whether its data is worth fetching: larger entries are malformed unread.
    pub fn fetchable(&self) -> bool {
        self.size <= MAX_FORCED_TX_BYTES
    }
}

/// A listed entry with its data (`None` when it was too large to fetch).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ForcedEntry {
    pub listing: ForcedListing,
    pub data: Option<Vec<u8>>,
}

/// The bytes a user posts: the canonical borsh of the signed transaction.
pub fn encode_payload(tx: &SignedUserTx) -> Vec<u8> {
    to_bytes(tx)
}

/// Reads an entry's data strictly (all bytes, canonical form), or says why it is malformed.
pub fn decode_payload(listing: &ForcedListing, data: Option<&[u8]>) -> Result<SignedUserTx, Malformed> {
    if !listing.fetchable() {
        return Err(Malformed::TooLarge { size: listing.size });
    }
    let data = data.ok_or(Malformed::Undecodable)?;
    if data.len() as u64 > MAX_FORCED_TX_BYTES {
        return Err(Malformed::TooLarge { size: data.len() as u64 });
    }
    from_bytes(data).map_err(|_| Malformed::Undecodable)
}

/// Sorts listings into stream order and drops repeats of one id (a gateway may list a
/// transaction twice across pages).
pub fn sort_listings(listings: &mut Vec<ForcedListing>) {
    listings.sort_by_key(|l| l.position());
    listings.dedup_by_key(|l| l.arweave_id);
}

/// What the next batch takes: at most `cap` entries after `from`, none above `safe_height`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Plan {
    pub take: Vec<ForcedListing>,
    pub to: ForcedCursor,
}

/// Plans the next batch's forced section. `listings` must hold every entry the gateway knows at
/// heights `from.height ..= safe_height`, in stream order ([`sort_listings`]). The cursor moves
/// past every height up to `safe_height` unless the cap stops it inside the stream.
pub fn plan(from: ForcedCursor, listings: &[ForcedListing], safe_height: Option<u64>, cap: u32) -> Plan {
    let Some(safe_height) = safe_height else { return Plan { take: Vec::new(), to: from } };
    let mut take = Vec::new();
    let mut to = from;
    for (listing, position) in with_positions(listings) {
        if listing.height > safe_height {
            break;
        }
        if (listing.height, position) < (from.height, from.taken) {
            continue; // consumed by an earlier batch
        }
        if take.len() >= cap as usize {
            return Plan { take, to };
        }
        take.push(*listing);
        to = ForcedCursor { height: listing.height, taken: position + 1 };
    }
    let end = ForcedCursor { height: safe_height + 1, taken: 0 };
    Plan { take, to: to.max(end).max(from) }
}

/// The entries a batch with range `(from, to]` had to consume, given every entry the gateway
/// knows at heights `from.height ..= to.height`, in stream order.
pub fn expected(from: ForcedCursor, to: ForcedCursor, listings: &[ForcedListing]) -> Vec<ForcedListing> {
    with_positions(listings)
        .filter(|(l, p)| (l.height, *p) >= (from.height, from.taken) && (l.height, *p) < (to.height, to.taken))
        .map(|(l, _)| *l)
        .collect()
}

/// Each listing with its position among the listings of its own height.
fn with_positions(listings: &[ForcedListing]) -> impl Iterator<Item = (&ForcedListing, u32)> {
    let mut last: Option<u64> = None;
    let mut position = 0u32;
    listings.iter().map(move |l| {
        if last == Some(l.height) {
            position = position.saturating_add(1);
        } else {
            (last, position) = (Some(l.height), 0);
        }
        (l, position)
    })
}

/// The outcome the STF's verdict on an entry's transaction gives. A `nonce_replayed` refusal
/// is a duplicate when the coordinator knows the same transaction (same signing hash) was
/// applied before; a replayer accepts either label for it (both mean "not applied").
pub fn outcome_of(tx: SignedUserTx, verdict: Result<(), TxError>, already_applied: bool) -> ForcedOutcome {
    match verdict {
        Ok(()) => ForcedOutcome::Applied { tx },
        Err(TxError::NonceReplayed { .. }) if already_applied => ForcedOutcome::Duplicate { tx },
        Err(error) => ForcedOutcome::Refused { tx, code: error.code().to_owned() },
    }
}

/// Whether a recorded outcome is what the STF's verdict says.
pub fn outcome_agrees(recorded: &ForcedOutcome, verdict: &Result<(), TxError>) -> bool {
    match (recorded, verdict) {
        (ForcedOutcome::Applied { .. }, Ok(())) => true,
        (ForcedOutcome::Duplicate { .. }, Err(TxError::NonceReplayed { .. })) => true,
        (ForcedOutcome::Refused { code, .. }, Err(error)) => code == error.code(),
        _ => false,
    }
}

/// Where the forced cursor stands after batch `number` on a network with `rules` (`None`: no
/// forced inclusion, no cursor): the start before any batch, else the `to` of that batch's
/// header. The one rule for every role that resumes from a batch (a snapshot's, a record's):
/// the coordinator's sequencer and a confirmer's follower both call it, so they cannot
/// disagree about where the next batch's `from` must be.
pub fn cursor_after(
    rules: Option<&ForcedParams>,
    number: u64,
    header: Option<&crate::batch::BatchHeader>,
) -> Result<Option<ForcedCursor>, MissingCursor> {
    let Some(rules) = rules else { return Ok(None) };
    if number == 0 {
        return Ok(Some(rules.start()));
    }
    match header.and_then(|h| (h.number == number).then_some(h.forced.as_ref()).flatten()) {
        Some(commit) => Ok(Some(commit.to)),
        None => Err(MissingCursor { number }),
    }
}

/// [`cursor_after`] found no forced commit for the batch a role resumes from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "batch {number} carries no forced cursor (or is missing) on a network with forced inclusion: the record it is read from is damaged or from another network"
)]
pub struct MissingCursor {
    pub number: u64,
}

/// A batch's forced section disagrees with its own header or with itself. Replay finds these
/// without Arweave; what needs the gateway is in [`Finding`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForcedError {
    #[error("the network takes forced transactions, so the header must be version 2 with a forced commit")]
    MissingCommit,
    #[error("the network takes no forced transactions, yet the batch carries a forced section")]
    Unexpected,
    #[error("the forced cursor moves backwards ({from} to {to})")]
    CursorBackwards { from: ForcedCursor, to: ForcedCursor },
    #[error("the header counts {header} forced records and the batch carries {body}")]
    CountMismatch { header: u32, body: usize },
    #[error("{count} forced records exceed the network's cap of {cap}")]
    OverCap { count: usize, cap: u32 },
    #[error("forced record {index} is out of stream order or outside the cursor range")]
    OutOfOrder { index: usize },
    #[error("the forced records' root is {header} but the records hash to {computed}")]
    RootMismatch { header: String, computed: String },
    #[error("forced record {index} ({arweave_id}) is recorded as {recorded} but the STF says {actual}")]
    WrongOutcome { index: usize, arweave_id: String, recorded: String, actual: String },
}

/// Checks a forced section's shape against its commit: count, cap, order, range and root.
pub fn check_shape(commit: &ForcedCommit, records: &[ForcedRecord], cap: u32) -> Result<(), ForcedError> {
    if commit.to < commit.from {
        return Err(ForcedError::CursorBackwards { from: commit.from, to: commit.to });
    }
    if commit.count as usize != records.len() {
        return Err(ForcedError::CountMismatch { header: commit.count, body: records.len() });
    }
    if records.len() > cap as usize {
        return Err(ForcedError::OverCap { count: records.len(), cap });
    }
    let mut previous: Option<(u64, [u8; 32])> = None;
    for (index, record) in records.iter().enumerate() {
        let in_range = record.height >= commit.from.height && record.height <= commit.to.height;
        if !in_range || previous.is_some_and(|p| p >= record.position()) {
            return Err(ForcedError::OutOfOrder { index });
        }
        previous = Some(record.position());
    }
    let computed = records_root(records);
    if computed != commit.records_root {
        return Err(ForcedError::RootMismatch {
            header: hex::encode(commit.records_root),
            computed: hex::encode(computed),
        });
    }
    Ok(())
}

/// What a replayer with a gateway finds wrong with a batch's forced section: censorship.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// An entry inside `(from, to]` that the batch does not record.
    Skipped {
        #[serde(with = "crate::serde_hex::fixed")]
        arweave_id: [u8; 32],
        height: u64,
    },
    /// The batch records an entry the range does not hold (or in another place).
    Phantom {
        #[serde(with = "crate::serde_hex::fixed")]
        arweave_id: [u8; 32],
        height: u64,
    },
    /// The record's transaction or malformed verdict is not what the entry's data says.
    Misread {
        #[serde(with = "crate::serde_hex::fixed")]
        arweave_id: [u8; 32],
        height: u64,
    },
    /// The batch's `from` is not where the previous batch left the cursor.
    CursorGap { expected: ForcedCursor, got: ForcedCursor },
    /// The batch was confirmed at `confirmed_at` with its cursor more than the deadline behind,
    /// and was not full.
    Late { cursor: ForcedCursor, confirmed_at: u64, deadline_blocks: u64 },
}

impl Finding {
    /// The forced entry the finding is about, if it names one.
    pub fn entry(&self) -> Option<([u8; 32], u64)> {
        match self {
            Finding::Skipped { arweave_id, height }
            | Finding::Phantom { arweave_id, height }
            | Finding::Misread { arweave_id, height } => Some((*arweave_id, *height)),
            Finding::CursorGap { .. } | Finding::Late { .. } => None,
        }
    }
}

/// Compares a batch's records with the entries its range had to hold (`expected`, from
/// [`expected`], with each entry's data as fetched). The first disagreement is returned.
pub fn check_records(records: &[ForcedRecord], entries: &[ForcedEntry]) -> Result<(), Finding> {
    for (index, entry) in entries.iter().enumerate() {
        let l = entry.listing;
        let Some(record) = records.get(index) else {
            return Err(Finding::Skipped { arweave_id: l.arweave_id, height: l.height });
        };
        if record.position() != l.position() {
            // The first place they differ: either the batch skipped this entry or recorded
            // one that is not there; a record of a later entry means this one was skipped.
            return Err(if record.position() > l.position() {
                Finding::Skipped { arweave_id: l.arweave_id, height: l.height }
            } else {
                Finding::Phantom { arweave_id: record.arweave_id, height: record.height }
            });
        }
        let read = decode_payload(&l, entry.data.as_deref());
        let agrees = match (&record.outcome, &read) {
            (ForcedOutcome::Malformed { malformed }, Err(actual)) => malformed == actual,
            (outcome, Ok(tx)) => outcome.tx() == Some(tx),
            _ => false,
        };
        if !agrees {
            return Err(Finding::Misread { arweave_id: l.arweave_id, height: l.height });
        }
    }
    if let Some(extra) = records.get(entries.len()) {
        return Err(Finding::Phantom { arweave_id: extra.arweave_id, height: extra.height });
    }
    Ok(())
}

/// The deadline: a batch confirmed on Arweave at `confirmed_at` may leave the cursor at most
/// `deadline_blocks` behind, unless it consumed a full `cap` of entries (it did all it could).
pub fn check_deadline(params: &ForcedParams, commit: &ForcedCommit, confirmed_at: u64) -> Result<(), Finding> {
    let lag = confirmed_at.saturating_sub(commit.to.height);
    if lag > params.deadline_blocks && commit.count < params.cap {
        return Err(Finding::Late { cursor: commit.to, confirmed_at, deadline_blocks: params.deadline_blocks });
    }
    Ok(())
}

/// Judges one entry in an open batch: reads it, verifies it and applies it to `state` if the
/// STF accepts it. `already_applied` tells whether a transaction with this signing hash was
/// applied before (the coordinator's index), which only changes a refusal's label.
pub(crate) fn judge(
    state: &mut State,
    entry: &ForcedEntry,
    place: TxPlace,
    already_applied: &dyn Fn(&[u8; 32]) -> bool,
) -> (ForcedRecord, Option<Receipt>) {
    let l = entry.listing;
    let record = |outcome| ForcedRecord { arweave_id: l.arweave_id, height: l.height, outcome };
    let tx = match decode_payload(&l, entry.data.as_deref()) {
        Ok(tx) => tx,
        Err(malformed) => return (record(ForcedOutcome::Malformed { malformed }), None),
    };
    let hash = tx.tx.signing_hash(state.domain());
    let (verdict, receipt) = match run(state, &tx, place) {
        Ok(receipt) => (Ok(()), Some(receipt)),
        Err(error) => (Err(error), None),
    };
    (record(outcome_of(tx, verdict, already_applied(&hash))), receipt)
}

/// Replays one record: the STF's verdict on its transaction must be the recorded one.
pub(crate) fn replay_record(
    state: &mut State,
    index: usize,
    record: &ForcedRecord,
    place: TxPlace,
) -> Result<Option<Receipt>, ForcedError> {
    let Some(tx) = record.outcome.tx() else { return Ok(None) };
    let result = run(state, tx, place);
    let verdict = result.as_ref().map(|_| ()).map_err(|e| e.clone());
    if !outcome_agrees(&record.outcome, &verdict) {
        // The STF accepted what the record refused: `run` applied it, and the caller rolls the
        // whole batch back on this error.
        let actual = match &verdict {
            Ok(()) => "applied".to_owned(),
            Err(error) => error.code().to_owned(),
        };
        return Err(ForcedError::WrongOutcome {
            index,
            arweave_id: hex::encode(record.arweave_id),
            recorded: record.outcome.label().to_owned(),
            actual,
        });
    }
    Ok(result.ok())
}

fn run(state: &mut State, tx: &SignedUserTx, place: TxPlace) -> Result<Receipt, TxError> {
    let verified = tx.verify(state.domain())?;
    apply_at(state, &Tx::User(verified), place)
}
