//! Deposits in: the chain watchers hand each L1 deposit they have seen at depth to a
//! [`DepositSource`]; the coordinator turns it into a `Deposit` system transaction. Exactly once
//! holds because the state remembers every credited L1 reference: a deposit handed in twice (a
//! watcher restarting, two watchers) is refused by the state-transition function the second time.

use bridge::batch::ApplyError;
use bridge::tx::SystemTx;
use bridge::{Deposit, Tx, TxError};
use chains::task::{Task, TaskError};
use tokio::sync::mpsc;

use crate::sequencer::SequencerHandle;

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
        let l1_ref = deposit.l1_ref;
        match sequencer.submit(Tx::System(SystemTx::Deposit(deposit))).await {
            Ok(Ok(_)) => credited += 1,
            Ok(Err(ApplyError::Tx(TxError::DepositAlreadyCredited(_)))) => {
                tracing::debug!(?l1_ref, "deposit already credited");
            }
            Ok(Err(error)) => tracing::error!(?l1_ref, %error, "deposit refused by the state-transition function"),
            Err(error) => {
                tracing::error!(?l1_ref, %error, "the sequencer stopped; deposits wait for a restart");
                break;
            }
        }
    }
    credited
}

/// The Ethereum deposit watcher as a supervised task: one poll per turn. The node may come back
/// (transient); a deep reorg, an unreadable vault log or a closed intake does not go away with
/// another poll (fatal: a human decides, docs/OPERATIONS.md).
#[derive(Debug)]
pub struct EthDepositTask(pub chains::ethereum::DepositWatcher);

impl Task for EthDepositTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        match self.0.poll().await {
            Ok(_) => Ok(()),
            Err(error @ chains::ethereum::WatchError::Rpc(_)) => Err(TaskError::transient(error)),
            Err(error) => Err(TaskError::fatal(error)),
        }
    }
}

/// The Bitcoin deposit watcher as a supervised task: takes the accounts that asked for their
/// deposit address since the last turn, then polls once.
#[derive(Debug)]
pub struct BtcDepositTask {
    pub watcher: chains::bitcoin::DepositWatcher,
    pub sink: DepositSink,
    pub accounts: mpsc::Receiver<bridge::Address>,
}

impl Task for BtcDepositTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        while let Ok(account) = self.accounts.try_recv() {
            self.watcher.watch(account);
        }
        match self.watcher.poll(&self.sink).await {
            Ok(_) => Ok(()),
            Err(error @ chains::bitcoin::WatchError::Rpc(_)) => Err(TaskError::transient(error)),
            Err(error) => Err(TaskError::fatal(error)),
        }
    }
}
