//! Bugs planted on purpose, for the simulator's own test only (crate `sim`, `tests/planted.rs`):
//! a simulator that never fails proves nothing, so its test switches one of these on and asserts
//! that the invariants catch it within a stated number of seeds.
//!
//! Compiled only with the `planted-bugs` feature, and even then every bug is off until a thread
//! switches it on for itself ([`plant`]): a build with the feature behaves exactly like one without
//! unless a test asks. Production builds never enable the feature.

use std::cell::Cell;

/// One planted bug. Each names the role whose code it breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The STF checks a user transaction's nonce but does not consume it: the same signed
    /// transaction applies again and again.
    NonceNotConsumed,
    /// The follower takes "my L1 node has not reached that block yet" as "the fact is absent"
    /// and alarms.
    NotSeenYetIsAbsent,
    /// The follower takes a batch holding an invalid transaction for someone else's bytes and
    /// skips it instead of alarming.
    InvalidTxIgnored,
    /// The follower never raises `missing_batch`: a withheld batch stalls it silently.
    GapNeverAlarmed,
    /// The watchman's policy checks a withdrawals range's batches and the vault's ranges, but
    /// not the root it is asked to sign.
    PolicySkipsRootCheck,
    /// The watchman's signer keeps a nonce after signing with it, so a second `Sign` naming the
    /// same nonce (a duplicate on the mesh, or an asker replaying it) gets a second share: two
    /// shares with one nonce over two messages give the signer's key share away.
    NonceKeptAfterSigning,
    /// The DKG takes the echo round's digests unread: a participant that sends different
    /// round-1 packages to different peers leaves them with different group keys.
    EchoNotChecked,
    /// The watchman's view of the vault's ranges never goes back, so a range an Ethereum reorg
    /// dropped is refused as an overlap forever (a real bug the simulator found, kept planted).
    VaultViewNeverGoesBack,
    /// The follower forgets a batch whose record the database refused, though its state took
    /// it: the retry replays the batch again and alarms an honest coordinator (a real bug the
    /// simulator's disk faults found, kept planted).
    RecordRefusedForgotten,
    /// The ledger leaves a Bitcoin withdrawal in the queue after a payout plan took it: the next
    /// plan pays it again.
    PaidWithdrawalStaysQueued,
    /// The watchman's policy checks that a Bitcoin payout input names an input of a plan its
    /// replay made, but not that the message is that input's sighash: a requester gets any
    /// transaction spending those inputs signed.
    PolicySkipsSighashCheck,
    /// The solvency watch counts a vault output its Bitcoin node lacks as missing even when the
    /// node has not reached the block the ledger took it from: a lagging node halts an honest
    /// watchman (a real bug the simulator found, kept planted).
    UnseenOutputIsMissing,
    /// The solvency watch judges an Ethereum asset against a view of the vault from a block
    /// below deposits the ledger credited: a node that fell behind halts an honest watchman (a
    /// real bug the simulator found, kept planted).
    UnseenDepositJudged,
    /// The watchman's policy checks that a checkpoint's message is the checkpoint of the batch
    /// and header hash it names, but not that its own replay has that header for that batch:
    /// a requester gets any history vouched for.
    PolicySkipsCheckpointHeader,
    /// The watchman's duties take a guardian pause, once mined, as kept: an Ethereum reorg that
    /// drops it leaves the vault open under a history the watchmen alarmed (a real bug the
    /// simulator found, kept planted).
    MinedPauseIsKept,
    /// The watchman's book keeps a range's "seen paid" mark after its node shows the vault
    /// without that range (an Ethereum reorg took it back): the mark ripens into a pruned
    /// horizon over a range the vault does not hold, and every policy refuses to sign it again
    /// (a real bug the simulator found, kept planted).
    DoneMarkOutlivesReorg,
    /// A snapshot's restore checks its header (signature, hash, the root it claims) but not the
    /// root its entries rebuild: a snapshot rewritten on disk starts the role on a state no
    /// header commits to.
    SnapshotRootUnchecked,
    /// The forced check takes a batch's forced records as they are, without comparing them to
    /// the entries the stream holds in its range: a coordinator that leaves a forced
    /// transaction out is never alarmed.
    ForcedRecordsUnchecked,
    /// The publisher takes a DA it cannot reach for a DA that contradicts the ledger: a gateway
    /// outage kills the publishing task, and the coordinator's process stops with it.
    UnreachableDaIsFatal,
    /// The Bitcoin deposit watcher, started afresh (a coordinator's start), begins at the
    /// node's newest block at depth instead of after its saved mark (or at its configured start
    /// height, before any): deposits that reached depth while the coordinator was down are
    /// never credited.
    WatcherStartsAtTip,
    /// A share refresh ends with each participant's old share instead of the one its rounds
    /// made: the operators destroy their old shares' backups believing a stolen one is now
    /// useless, and it is not.
    RefreshKeepsOldShare,
}

impl PlantedBug {
    /// Every planted bug, for `sim --plant NAME` (its name as written here).
    pub const ALL: &[PlantedBug] = &[
        PlantedBug::NonceNotConsumed,
        PlantedBug::NotSeenYetIsAbsent,
        PlantedBug::InvalidTxIgnored,
        PlantedBug::GapNeverAlarmed,
        PlantedBug::PolicySkipsRootCheck,
        PlantedBug::NonceKeptAfterSigning,
        PlantedBug::EchoNotChecked,
        PlantedBug::VaultViewNeverGoesBack,
        PlantedBug::RecordRefusedForgotten,
        PlantedBug::PaidWithdrawalStaysQueued,
        PlantedBug::PolicySkipsSighashCheck,
        PlantedBug::UnseenOutputIsMissing,
        PlantedBug::UnseenDepositJudged,
        PlantedBug::PolicySkipsCheckpointHeader,
        PlantedBug::MinedPauseIsKept,
        PlantedBug::DoneMarkOutlivesReorg,
        PlantedBug::SnapshotRootUnchecked,
        PlantedBug::ForcedRecordsUnchecked,
        PlantedBug::UnreachableDaIsFatal,
        PlantedBug::WatcherStartsAtTip,
        PlantedBug::RefreshKeepsOldShare,
    ];
}

thread_local! {
    static PLANTED: Cell<Option<PlantedBug>> = const { Cell::new(None) };
}

/// Switches `bug` on (or every bug off, with `None`) for the calling thread.
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.with(|planted| planted.set(bug));
}

/// The bug switched on for the calling thread: to carry it onto a worker thread.
pub fn current() -> Option<PlantedBug> {
    PLANTED.with(Cell::get)
}

/// Whether `bug` is switched on for the calling thread.
pub fn active(bug: PlantedBug) -> bool {
    PLANTED.with(|planted| planted.get() == Some(bug))
}
