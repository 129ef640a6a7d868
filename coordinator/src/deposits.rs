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
/// deposit address since the last turn and the group keys the ledger has (a key rotation adds
/// one; an old key is dropped when its grace ends), then polls once.
///
/// Each deposit names the key whose address it paid (`BtcKeyedDeposit`), so the ledger credits
/// it to the right key whichever batch it lands in (a plain `Deposit` would take the key in
/// force at its batch, which a rotation sealed meanwhile could change), late deposits to an old
/// key included.
#[derive(Debug)]
pub struct BtcDepositTask {
    pub watcher: chains::bitcoin::DepositWatcher,
    pub accounts: mpsc::Receiver<bridge::Address>,
    pub sequencer: SequencerHandle,
    /// Deposits to a key not yet in force (its rotation's first batch has not opened): credited
    /// on a later turn. At most [`MAX_HELD_DEPOSITS`].
    pub held: Vec<chains::bitcoin::KeyedDeposit>,
}

/// How many deposits to a key not yet in force are held for a later turn: a key is in force one
/// batch after its rotation, so only deposits of that moment wait; more is a misuse of the new
/// addresses, and the rest are credited by the restart's rescan.
pub const MAX_HELD_DEPOSITS: usize = 10_000;

/// What the ledger says of the watched keys.
struct LedgerKeys {
    /// `(epoch, x(P), grace over)` of every key, oldest first.
    keys: Vec<(u64, [u8; 32], bool)>,
}

impl BtcDepositTask {
    async fn ledger_keys(&self) -> Result<LedgerKeys, TaskError> {
        self.sequencer
            .read(|state| {
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
            })
            .await
            .map_err(TaskError::fatal)
    }

    /// Credits one deposit the way the ledger's keys call for; `false` if it must wait.
    async fn credit(&self, seen: &chains::bitcoin::KeyedDeposit, ledger: &LedgerKeys) -> Result<bool, TaskError> {
        let Some((epoch, ..)) = ledger.keys.iter().find(|(_, key, _)| *key == seen.internal_key) else {
            return Ok(false);
        };
        let l1_ref = seen.deposit.l1_ref;
        let tx = Tx::System(SystemTx::BtcKeyedDeposit { deposit: seen.deposit.clone(), key_epoch: *epoch });
        match self.sequencer.submit(tx).await.map_err(TaskError::fatal)? {
            Ok(_) => Ok(true),
            Err(ApplyError::Tx(TxError::DepositKey(bridge::rotation::KeyedDepositError::NotYetInForce { .. }))) => {
                Ok(false)
            }
            Err(ApplyError::Tx(TxError::DepositAlreadyCredited(_))) => Ok(true),
            Err(error) => {
                metrics::counter!("bridge_btc_deposits_refused_total").increment(1);
                tracing::error!(?l1_ref, key_epoch = epoch, %error, "bitcoin deposit refused by the state-transition function");
                Ok(true)
            }
        }
    }
}

impl Task for BtcDepositTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        while let Ok(account) = self.accounts.try_recv() {
            self.watcher.watch(account);
        }
        let ledger = self.ledger_keys().await?;
        for (_, key, over) in &ledger.keys {
            let Ok(key) = chains::bitcoin::XOnlyPublicKey::from_slice(key) else { continue };
            if *over {
                self.watcher.drop_key(key);
            } else {
                self.watcher.add_key(key);
            }
        }
        let held = std::mem::take(&mut self.held);
        for seen in held {
            if !self.credit(&seen, &ledger).await? {
                self.held.push(seen);
            }
        }
        let watch = |error: chains::bitcoin::WatchError| match error {
            error @ chains::bitcoin::WatchError::Rpc(_) => TaskError::transient(error),
            error => TaskError::fatal(error),
        };
        let tip = self.watcher.checked_tip().await.map_err(watch)?;
        while let Some(block) = self.watcher.next_block(tip).await.map_err(watch)? {
            for seen in block {
                if !self.credit(&seen, &ledger).await? {
                    if self.held.len() >= MAX_HELD_DEPOSITS {
                        tracing::error!(l1_ref = ?seen.deposit.l1_ref, "too many deposits to a key not yet in force; this one is credited after a restart");
                        continue;
                    }
                    self.held.push(seen);
                }
            }
        }
        Ok(())
    }
}
