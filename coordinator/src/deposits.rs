//! Deposits in: the chain watchers hand each L1 deposit they have seen at depth to a
//! [`DepositSource`]; the coordinator turns it into a `Deposit` system transaction. Exactly once
//! holds because the state remembers every credited L1 reference: a deposit handed in twice (a
//! watcher restarting, two watchers) is refused by the state-transition function the second time.

use bridge::batch::ApplyError;
use bridge::tx::SystemTx;
use bridge::{Deposit, Tx, TxError};
use chains::task::{Task, TaskError};
use tokio::sync::mpsc;

use crate::deposit_book::StoreBook;
use crate::sequencer::{Outcome, SequencerError, SequencerHandle};
use crate::store::Store;

/// The sending half, for the chain watchers.
pub type DepositSink = mpsc::Sender<Deposit>;

/// The receiving half, drained by [`forward_deposits`].
#[derive(Debug)]
pub struct DepositSource(mpsc::Receiver<Deposit>);

/// A deposit channel holding up to `capacity` deposits in flight.
pub fn deposit_channel(capacity: usize) -> (DepositSink, DepositSource) {
    let (sink, source) = mpsc::channel(capacity);
    (sink, DepositSource(source))
}

/// Credits every deposit from `source` through the sequencer until the source closes; returns
/// how many were credited (repeats are skipped, not counted).
pub async fn forward_deposits(mut source: DepositSource, sequencer: SequencerHandle) -> u64 {
    let mut credited = 0;
    while let Some(deposit) = source.0.recv().await {
        match credit(&sequencer, deposit).await {
            Ok(true) => credited += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "the sequencer stopped; deposits wait for a restart");
                break;
            }
        }
    }
    credited
}

/// Hands `deposit` to the ledger: `true` once credited (durably), `false` when it was credited
/// before or the state-transition function refuses it (logged); an error only when the
/// sequencer has stopped.
async fn credit(sequencer: &SequencerHandle, deposit: Deposit) -> Result<bool, SequencerError> {
    let l1_ref = deposit.l1_ref;
    match sequencer.submit(Tx::System(SystemTx::Deposit(deposit))).await? {
        Ok(_) => Ok(true),
        Err(ApplyError::Tx(TxError::DepositAlreadyCredited(_))) => {
            tracing::debug!(?l1_ref, "deposit already credited");
            Ok(false)
        }
        Err(error) => {
            tracing::error!(?l1_ref, %error, "deposit refused by the state-transition function");
            Ok(false)
        }
    }
}

/// The Ethereum deposit watcher as a supervised task, one poll per turn: each deposit the poll
/// found is credited, then the watcher's place is saved in the ledger's database, so a restart
/// resumes there (`scan_mark`) instead of rescanning from `ethereum.from_block`. The mark is
/// written only after every deposit at or below it is durable in the ledger, so a crash between
/// the two rescans a little, never skips. The node may come back (transient); a deep reorg or
/// an unreadable vault log does not go away with another poll, nor does a stopped sequencer
/// (fatal: a human decides, docs/OPERATIONS.md).
#[derive(Debug)]
pub struct EthDepositTask {
    pub watcher: chains::ethereum::DepositWatcher,
    pub sequencer: SequencerHandle,
    pub store: Store,
    /// Whose mark this is ([`eth_scan_scope`]): the vault the watcher reads.
    pub scope: String,
}

impl Task for EthDepositTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        let scanned = match self.watcher.poll().await {
            Ok(scanned) => scanned,
            Err(error @ chains::ethereum::WatchError::Rpc(_)) => return Err(TaskError::transient(error)),
            Err(error) => return Err(TaskError::fatal(error)),
        };
        for deposit in scanned.deposits {
            credit(&self.sequencer, deposit).await.map_err(TaskError::fatal)?;
        }
        if let Some(mark) = scanned.through {
            // A mark not saved (a full disk, say) costs a longer rescan after a restart, never a
            // deposit: the next turn saves a later one.
            self.store.set_scan_mark(&self.scope, mark).await.map_err(TaskError::transient)?;
        }
        Ok(())
    }
}

/// Where a chain watcher of `scope` resumes: the mark its last run saved, unless the operator
/// set the configured start (`from`) past it.
pub async fn saved_mark(
    store: &Store,
    scope: &str,
    from: u64,
) -> Result<Option<chains::deposit::ScanMark>, crate::store::StoreError> {
    let saved = store.scan_mark(scope).await?.filter(|mark| mark.number >= from);
    match saved {
        Some(mark) => tracing::info!(scope, block = mark.number + 1, "the deposit scan resumes where it stopped"),
        None => tracing::info!(scope, block = from, "the deposit scan starts at its configured start"),
    }
    Ok(saved)
}

/// The name a chain watcher's mark is saved under: its chain and what it watches, so that a
/// database pointed at another vault does not resume from this one's place.
pub fn eth_scan_scope(vault: &bridge::Address) -> String {
    format!("ethereum:{vault}")
}

/// The Bitcoin deposit watcher as a supervised task: takes the accounts that asked for their
/// deposit address since the last turn and the group keys the ledger has (a key rotation adds
/// one; an old key is dropped when its grace ends), then polls once.
///
/// Each deposit names the key whose address it paid (`BtcKeyedDeposit`), so the ledger credits
/// it to the right key whichever batch it lands in (a plain `Deposit` would take the key in
/// force at its batch, which a rotation sealed meanwhile could change), late deposits to an old
/// key included.
///
/// Like [`EthDepositTask`] it saves the watcher's place once every deposit it read is credited
/// (none held), and a restart resumes there: without it a start read every block since the
/// vault's birth in full again.
#[derive(Debug)]
pub struct BtcDepositTask {
    pub scan: BtcDepositScan,
    pub sequencer: SequencerHandle,
}

/// The Bitcoin deposit watcher and what its turns remember, wherever the ledger is: the
/// binary's [`BtcDepositTask`] credits through its [`SequencerHandle`], the simulator through
/// its sequencer, both by [`BtcDepositScan::turn`].
#[derive(Debug)]
pub struct BtcDepositScan {
    /// Its book is the ledger's ([`StoreBook`]): the accounts that asked for an address.
    pub watcher: chains::bitcoin::DepositWatcher<StoreBook>,
    /// Deposits to a key not yet in force (its rotation's first batch has not opened), and
    /// coinbase outputs not yet mature (`KeyedDeposit::spendable`): credited on a later turn.
    pub held: HeldDeposits,
    pub store: Store,
    /// Whose mark this is ([`btc_scan_scope`]).
    pub scope: String,
    /// The mark last saved, so an idle turn writes nothing.
    pub saved: Option<chains::deposit::ScanMark>,
    /// The last turn stopped at [`MAX_BLOCKS_PER_TURN`] with blocks at depth left: the next
    /// one runs at once.
    pub behind: bool,
}

/// What the Bitcoin deposit turn needs of the ledger: the keys a deposit may pay, and a
/// crediting transaction's outcome. An error means the sequencer stopped.
pub trait DepositLedger {
    fn keys(&mut self) -> impl Future<Output = Result<LedgerKeys, SequencerError>> + Send;
    /// Submits one transaction; resolves once it is durable or refused.
    fn submit(&mut self, tx: Tx) -> impl Future<Output = Result<Outcome, SequencerError>> + Send;
}

impl DepositLedger for SequencerHandle {
    async fn keys(&mut self) -> Result<LedgerKeys, SequencerError> {
        self.read(LedgerKeys::of).await
    }

    async fn submit(&mut self, tx: Tx) -> Result<Outcome, SequencerError> {
        SequencerHandle::submit(self, tx).await
    }
}

/// Blocks one turn reads at most (a day of blocks). A watcher far behind (a first start at an
/// old `from_height`, a node back after a long outage) catches up over several turns, saving
/// its place after each, and indexes the accounts that asked for a deposit address in between.
pub const MAX_BLOCKS_PER_TURN: u64 = 144;

/// How many deposits are held for a later turn: a key is in force one batch after its rotation,
/// so only deposits of that moment wait, and a coinbase paying deposit addresses waits 100
/// blocks; more is a misuse, and the rest are credited by the restart's rescan.
pub const MAX_HELD_DEPOSITS: usize = 10_000;

/// The deposits held for a key not yet in force or until they mature, at most
/// [`MAX_HELD_DEPOSITS`].
#[derive(Debug, Default)]
pub struct HeldDeposits {
    held: Vec<chains::bitcoin::KeyedDeposit>,
    /// One was left out past the bound: only a read of its block again (a restart from a mark
    /// before it) credits it, so no later mark may be saved in this run.
    dropped: bool,
}

impl HeldDeposits {
    /// Whether every deposit read is settled (credited, or refused for good): nothing held and
    /// nothing left out. Only then may the watcher's mark be saved, since a restart forgets what
    /// is held and finds it again only by reading its block again.
    pub fn settled(&self) -> bool {
        self.held.is_empty() && !self.dropped
    }

    /// Every deposit held, to try again; what still waits is held again.
    pub fn take(&mut self) -> Vec<chains::bitcoin::KeyedDeposit> {
        std::mem::take(&mut self.held)
    }

    /// Holds `seen` for a later turn; past the bound it is left to the restart's rescan.
    pub fn hold(&mut self, seen: chains::bitcoin::KeyedDeposit) {
        if self.held.len() >= MAX_HELD_DEPOSITS {
            tracing::error!(l1_ref = ?seen.deposit.l1_ref, "too many deposits held (to a key not yet in force, or coinbase outputs not yet mature); this one is credited after a restart");
            self.dropped = true;
            return;
        }
        self.held.push(seen);
    }
}

/// Why a Bitcoin deposit turn stopped short, for its runner to read: the binary's task as a
/// [`TaskError`] ([`DepositScanError::task_error`]), the simulator also telling a stopped
/// sequencer (its disk fault) from the rest.
#[derive(Debug, thiserror::Error)]
pub enum DepositScanError {
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error(transparent)]
    Watch(#[from] chains::bitcoin::WatchError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl DepositScanError {
    /// The task's reading: a node that does not answer is asked again after a backoff, and so
    /// is a mark not saved (a restart reads a few more blocks, no deposit is lost); a reorg
    /// below the depth, a closed intake or a stopped sequencer does not go away with another
    /// turn.
    pub fn task_error(self) -> TaskError {
        match self {
            DepositScanError::Watch(
                error @ (chains::bitcoin::WatchError::Rpc(_) | chains::bitcoin::WatchError::Book(_)),
            ) => TaskError::transient(error),
            DepositScanError::Store(error) => TaskError::transient(error),
            error => TaskError::fatal(error),
        }
    }
}

/// What the ledger says of the group keys a Bitcoin deposit may pay: the decisions of
/// [`BtcDepositTask`] apart from its I/O, which the simulator drives too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerKeys {
    /// `(epoch, x(P), grace over)` of every key, oldest first.
    keys: Vec<(u64, [u8; 32], bool)>,
}

/// What became of one deposit handed to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    /// Credited now or before: done with it.
    Done,
    /// Its key is not in force yet (the rotation's first batch has not opened): hold it.
    Wait,
    /// The state-transition function refused it for good (counted and logged): done with it.
    Refused,
}

impl LedgerKeys {
    /// Keys as given, `(epoch, x(P), grace over)`, oldest first (tests and tools; a running
    /// coordinator reads them with [`LedgerKeys::of`]).
    pub fn from_keys(keys: Vec<(u64, [u8; 32], bool)>) -> Self {
        LedgerKeys { keys }
    }

    /// The keys as of `state`'s open batch: the genesis key, then each rotation's, each with
    /// whether its successor's grace is over.
    pub fn of(state: &bridge::State) -> Self {
        let batch = state.head().next_number;
        let grace = state.params().rotation_rules().old_key_grace_batches;
        let genesis = state.params().btc_vault.map(|v| v.group_key);
        let mut keys: Vec<(u64, [u8; 32])> = genesis.map(|k| (0, k)).into_iter().collect();
        keys.extend(state.key_epochs().map(|(epoch, key)| (epoch, key.internal_key)));
        let froms: Vec<u64> = state.key_epochs().map(|(_, key)| key.from_batch).collect();
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, (epoch, key))| {
                let over = froms.get(i).is_some_and(|next| batch >= next.saturating_add(grace));
                (*epoch, *key, over)
            })
            .collect();
        LedgerKeys { keys }
    }

    /// Each key with whether its grace is over: a deposit book watches the others.
    pub fn watched(&self) -> impl Iterator<Item = ([u8; 32], bool)> + '_ {
        self.keys.iter().map(|(_, key, over)| (*key, *over))
    }

    /// The transaction crediting `seen` to the key it paid once the node's tip is `tip`; `None`
    /// while it must wait (hold the deposit): the ledger does not know that key yet, or the vault
    /// cannot spend the output yet (a coinbase not mature, `KeyedDeposit::spendable`).
    pub fn credit_tx(&self, seen: &chains::bitcoin::KeyedDeposit, tip: u64) -> Option<Tx> {
        if !seen.spendable(tip) {
            return None;
        }
        let (epoch, ..) = self.keys.iter().find(|(_, key, _)| *key == seen.internal_key)?;
        Some(Tx::System(SystemTx::BtcKeyedDeposit { deposit: seen.deposit.clone(), key_epoch: *epoch }))
    }
}

/// Reads the ledger's answer to a keyed deposit: a key not yet in force waits, a repeat is done,
/// any other refusal is counted, logged, and not retried (it would be refused again).
pub fn credit_outcome<T>(seen: &chains::bitcoin::KeyedDeposit, outcome: &Result<T, ApplyError>) -> Credit {
    match outcome {
        Ok(_) => Credit::Done,
        Err(ApplyError::Tx(TxError::DepositKey(bridge::rotation::KeyedDepositError::NotYetInForce { .. }))) => {
            Credit::Wait
        }
        Err(ApplyError::Tx(TxError::DepositAlreadyCredited(_))) => Credit::Done,
        Err(error) => {
            metrics::counter!("bridge_btc_deposits_refused_total").increment(1);
            tracing::error!(l1_ref = ?seen.deposit.l1_ref, %error, "bitcoin deposit refused by the state-transition function");
            Credit::Refused
        }
    }
}

impl BtcDepositScan {
    /// A scan by `watcher` (resumed after `saved`, if any) whose mark is saved in `store` under
    /// `scope`.
    pub fn new(
        watcher: chains::bitcoin::DepositWatcher<StoreBook>,
        store: Store,
        scope: String,
        saved: Option<chains::deposit::ScanMark>,
    ) -> Self {
        BtcDepositScan { watcher, held: HeldDeposits::default(), store, scope, saved, behind: false }
    }

    /// One turn: steers the book by the ledger's keys, credits what was held, brings the book
    /// up to date, then credits what the blocks at depth pay (at most [`MAX_BLOCKS_PER_TURN`]
    /// of them), and saves the watcher's place once nothing read is held.
    pub async fn turn(&mut self, ledger: &mut impl DepositLedger) -> Result<(), DepositScanError> {
        let keys = ledger.keys().await?;
        let book_keys = self.watcher.book().steer(&keys).await?;
        // The tip before the index: every account whose address a block up to it pays asked
        // for that address before the block was mined, so the index below holds it.
        let tip = self.watcher.checked_tip().await?;
        for seen in self.held.take() {
            if !Self::credit(ledger, &seen, &keys, tip).await? {
                self.held.hold(seen);
            }
        }
        self.behind = false;
        if !self.watcher.book().catch_up(&book_keys).await? {
            // Not seen yet is not absent: no block is read past an account not yet indexed.
            self.behind = true;
            return Ok(());
        }
        let mut read = 0;
        while let Some(block) = self.watcher.next_block(tip).await? {
            for seen in block {
                if !Self::credit(ledger, &seen, &keys, tip).await? {
                    self.held.hold(seen);
                }
            }
            read += 1;
            if read == MAX_BLOCKS_PER_TURN {
                self.behind = true;
                break;
            }
        }
        let mark = self.watcher.mark();
        if self.held.settled() && mark != self.saved {
            if let Some(mark) = mark {
                // Not saved (a full disk, say): a restart reads a few more blocks, no deposit is lost.
                self.store.set_scan_mark(&self.scope, mark).await?;
            }
            self.saved = mark;
        }
        Ok(())
    }

    /// Credits one deposit the way the ledger's keys call for at tip `tip`; `false` if it must
    /// wait.
    async fn credit(
        ledger: &mut impl DepositLedger,
        seen: &chains::bitcoin::KeyedDeposit,
        keys: &LedgerKeys,
        tip: u64,
    ) -> Result<bool, DepositScanError> {
        let Some(tx) = keys.credit_tx(seen, tip) else { return Ok(false) };
        let outcome = ledger.submit(tx).await?;
        Ok(credit_outcome(seen, &outcome) != Credit::Wait)
    }
}

impl Task for BtcDepositTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        self.scan.turn(&mut self.sequencer).await.map_err(DepositScanError::task_error)
    }

    async fn idle(&mut self, interval: std::time::Duration) {
        if !self.scan.behind {
            tokio::time::sleep(interval).await;
        }
    }
}

/// The name the Bitcoin deposit watcher's mark is saved under: the vault's genesis key.
pub fn btc_scan_scope(vault: &bridge::BtcVaultParams) -> String {
    format!("bitcoin:{}", hex::encode(vault.internal_key().serialize()))
}

#[cfg(test)]
mod tests {
    use bridge::rotation::KeyedDepositError;
    use bridge::{Amount, AssetId, Chain, L1Ref};

    use super::*;

    fn seen(key: u8) -> chains::bitcoin::KeyedDeposit {
        let deposit = Deposit {
            chain: Chain::Bitcoin,
            l1_ref: L1Ref::Bitcoin { txid: [7; 32], vout: 0 },
            account: bridge::Address([1; 20]),
            asset: AssetId::Btc,
            amount: Amount(50_000),
            l1_height: 120,
        };
        chains::bitcoin::KeyedDeposit { deposit, internal_key: [key; 32], spendable_at: 120 }
    }

    /// Who could stop a deposit: a key the ledger has not taken yet holds it (never drops it),
    /// and only a refusal that would come again ends it.
    #[test]
    fn a_deposit_waits_for_its_key_and_ends_only_when_settled() {
        let ledger = LedgerKeys { keys: vec![(0, [2; 32], true), (1, [3; 32], false)] };
        assert!(ledger.credit_tx(&seen(9), 120).is_none(), "a key the ledger does not know yet holds the deposit");
        let Some(Tx::System(SystemTx::BtcKeyedDeposit { key_epoch, deposit })) = ledger.credit_tx(&seen(3), 120) else {
            panic!("a deposit to a known key is credited as a keyed deposit");
        };
        assert_eq!((key_epoch, deposit), (1, seen(3).deposit));

        let not_in_force = KeyedDepositError::NotYetInForce { epoch: 1, from_batch: 9 };
        let outcome: Result<(), ApplyError> = Err(ApplyError::Tx(TxError::DepositKey(not_in_force)));
        assert_eq!(credit_outcome(&seen(3), &outcome), Credit::Wait);
        let repeat: Result<(), ApplyError> =
            Err(ApplyError::Tx(TxError::DepositAlreadyCredited(seen(3).deposit.l1_ref)));
        assert_eq!(credit_outcome(&seen(3), &repeat), Credit::Done);
        assert_eq!(credit_outcome(&seen(3), &Ok::<(), ApplyError>(())), Credit::Done);
        let grace_over = KeyedDepositError::GraceOver { epoch: 0, ended: 5 };
        let refused: Result<(), ApplyError> = Err(ApplyError::Tx(TxError::DepositKey(grace_over)));
        assert_eq!(credit_outcome(&seen(2), &refused), Credit::Refused);
    }
}
