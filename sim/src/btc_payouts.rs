//! Bitcoin's side of the bridge in the simulator, on the kernel's chain (btc_chain.rs): users
//! deposit and withdraw, the coordinator credits deposits at depth and plans and records
//! payouts, and every running watchman takes its turn of the real
//! [`BtcPayouts`](confirmer::watchman::BtcPayouts): it asks its own node where each plan of its
//! book stands, signs the first attempt or the next one once the last has waited
//! [`BUMP_AFTER_BLOCKS`](crate::btc_chain::BUMP_AFTER_BLOCKS), and broadcasts.
//!
//! Its signing sessions run on the simulated mesh, which moves only between the simulator's
//! ticks, so [`DeferredSigner`] answers a turn's request with [`SessionError::Unfinished`] and
//! starts the session; the signature is handed over when the same requests come at a later
//! turn, and the real code broadcasts it then.
//!
//! The checks: every transaction that spends the vault is an attempt of a plan the honest
//! sequencer sealed (`btc-paid-justified`), no withdrawal is paid by two transactions of the
//! active chain (`btc-paid-once`), and after healing every plan is paid, nothing waits in the
//! queue and the chain holds every output the ledger says the vault has (`btc-payout-liveness`,
//! `btc-solvency`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bitcoin::{ScriptBuf, Txid};
use bridge::tx::{UserTx, Withdraw};
use bridge::{Amount, AssetId, BtcNetwork, Tx, VaultKeys, VaultOwner};
use chains::bitcoin::{DepositWatcher, WatcherConfig};
use chains::task::{Next, Task as _, TaskError};
use confirmer::watchman::BtcPayouts;
use coordinator::deposit_book::StoreBook;
use coordinator::deposits::{BtcDepositScan, DepositLedger, DepositScanError, LedgerKeys, btc_scan_scope};
use coordinator::node::BTC_DEPOSITS;
use coordinator::payouts::{FeeEstimates, LedgerReading, PayoutKeeper, PayoutKeeperError, PayoutLedger};
use coordinator::sequencer::{Outcome, Sequencer, SequencerError};
use tss::roast::SessionOutcome;
use tss::{SessionError, SigningRequest, ThresholdSigner};

use crate::SimError;
use crate::btc_chain::BTC_DEPTH;
use crate::watchmen::{Ask, AskKind};
use crate::world::World;

/// Finished sessions a watchman keeps for turns that no longer ask for them (the plan was
/// paid by another meanwhile): the oldest go first.
const MAX_UNCLAIMED: usize = 16;

/// The keeper stops this long before the end (users stop 15 minutes before it), so that its last
/// plan or record is replayed everywhere when convergence is checked; a plan made by then is
/// paid by then.
const KEEPER_QUIET_BEFORE_END_MS: u64 = 8 * 60_000;

/// The keeper's settlement window: withdrawals share a payout when they come within three
/// blocks, and the last ones (users stop 15 minutes before the end) are planned before the
/// keeper goes quiet.
const KEEPER_WINDOW: std::time::Duration = std::time::Duration::from_secs(3 * 60);

/// The messages of one session's requests, in order: what a turn's requests are matched by.
pub(crate) type Messages = Vec<Vec<u8>>;

#[derive(Default)]
struct Deferred {
    /// Requests asked for since the simulator last took them.
    wanted: Vec<Vec<SigningRequest>>,
    in_flight: BTreeSet<Messages>,
    finished: BTreeMap<Messages, SessionOutcome>,
}

/// A watchman's signer as its payout loop sees it: the session runs on the simulated mesh, and
/// its signature is given at the first turn after it ended.
#[derive(Clone, Default)]
pub(crate) struct DeferredSigner {
    inner: Arc<Mutex<Deferred>>,
}

fn messages(requests: &[SigningRequest]) -> Messages {
    requests.iter().map(|r| r.message.clone()).collect()
}

impl DeferredSigner {
    /// The sessions asked for since the last call.
    fn take_wanted(&self) -> Vec<Vec<SigningRequest>> {
        self.inner.lock().map(|mut d| std::mem::take(&mut d.wanted)).unwrap_or_default()
    }

    /// A session ended: its signature, if any, waits for the next turn.
    pub(crate) fn finish(&self, key: Messages, outcome: Option<SessionOutcome>) {
        let Ok(mut deferred) = self.inner.lock() else { return };
        deferred.in_flight.remove(&key);
        if let Some(outcome) = outcome {
            deferred.finished.insert(key, outcome);
            while deferred.finished.len() > MAX_UNCLAIMED {
                deferred.finished.pop_first();
            }
        }
    }
}

#[async_trait]
impl ThresholdSigner for DeferredSigner {
    async fn sign(&self, requests: Vec<SigningRequest>) -> Result<SessionOutcome, SessionError> {
        let key = messages(&requests);
        let Ok(mut deferred) = self.inner.lock() else { return Err(SessionError::Unfinished) };
        if let Some(outcome) = deferred.finished.remove(&key) {
            return Ok(outcome);
        }
        if deferred.in_flight.insert(key) {
            deferred.wanted.push(requests);
        }
        Err(SessionError::Unfinished)
    }
}

impl World {
    /// A user pays Bitcoin to its deposit address.
    pub(crate) fn deposit_on_bitcoin(&mut self) -> Result<(), SimError> {
        let user = self.users[self.btc_rng.below(self.users.len() as u64) as usize].address();
        let sat = self.btc_rng.between(100_000, 5_000_000);
        let Some(btc) = self.btc.as_mut() else { return Ok(()) };
        if let Some(outpoint) = btc.deposit(user, sat)? {
            self.log(format!("Bitcoin deposit of {sat} sat in {}", short(&outpoint.txid)));
        }
        Ok(())
    }

    /// Every user asks the coordinator for its deposit address once (the API's own store call,
    /// before the watcher starts); false while the coordinator's disk refuses the write, asked
    /// again at the next step as a user would.
    async fn register_btc_depositors(&mut self) -> Result<bool, SimError> {
        let (Some(_), Some(store)) = (&self.btc, &self.coordinator.store) else { return Ok(true) };
        let store = store.clone();
        let accounts: Vec<bridge::Address> = self.users.iter().map(|u| u.address()).collect();
        for account in accounts {
            if store.is_btc_deposit_account(&account).await.map_err(SimError::role("coordinator ledger"))? {
                continue;
            }
            if let Err(error) = store.add_btc_deposit_account(&account).await {
                self.log(format!("coordinator's deposit address for {account}: {error}"));
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The coordinator's Bitcoin deposit task, once a step: the binary's own turn
    /// ([`BtcDepositScan::turn`]: its watcher reading every block [`BTC_DEPTH`] deep in height
    /// order through the coordinator's node, steered by the ledger's keys, each deposit credited
    /// as a keyed deposit to the key it paid or held, the place saved in the coordinator's ledger
    /// once nothing read is held) with the sequencer in process as its ledger. A crash drops the
    /// scan, and the restart resumes after the saved mark (the blocks since are read again; the
    /// ledger refuses repeats).
    pub(crate) async fn watch_btc_deposits(&mut self) -> Result<(), SimError> {
        if self.coordinator.btc_deposits.is_none() && !self.register_btc_depositors().await? {
            return Ok(());
        }
        let (Some(btc), Some(store), Some(sequencer)) =
            (&self.btc, &self.coordinator.store, self.coordinator.sequencer.as_mut())
        else {
            return Ok(());
        };
        let mut scan = match self.coordinator.btc_deposits.take() {
            Some(scan) => scan,
            None => {
                let config = WatcherConfig { depth: BTC_DEPTH as u32, start_height: 0 };
                let node = btc.view(self.coordinator.btc_lag.clone()).shared();
                let book = StoreBook::new(store.clone(), BtcNetwork::Regtest);
                let mut watcher = DepositWatcher::with_book(node, book, config)
                    .map_err(|e| SimError::Setup(format!("the coordinator's Bitcoin watcher: {e}")))?;
                let scope = btc_scan_scope(&btc.vault);
                let saved = store.scan_mark(&scope).await.map_err(SimError::role("coordinator ledger"))?;
                if let Some(mark) = saved {
                    watcher.resume(mark);
                }
                BtcDepositScan::new(watcher, store.clone(), scope, saved)
            }
        };
        let mut ledger = DepositsLedger { sequencer, outcomes: Vec::new() };
        let turned = scan.turn(&mut ledger).await;
        let outcomes = ledger.outcomes;
        // The scan lives as long as the coordinator's process: a stop below takes it.
        self.coordinator.btc_deposits = Some(scan);
        for outcome in &outcomes {
            self.note_outcome("Bitcoin deposit", None, outcome);
        }
        // Read as the binary's task reads it: a transient error is asked again at the next
        // step; a fatal one (a reorg below the depth) kills the task, and with it the process;
        // a sequencer that stopped (a disk fault) stops the coordinator.
        match turned {
            Ok(()) => {}
            Err(DepositScanError::Sequencer(error)) => self.sequencer_failed("a submission", error)?,
            Err(error) => match error.task_error() {
                error @ TaskError::Transient(_) => self.log(format!("coordinator's Bitcoin watcher: {error}")),
                error => self.coordinator_task_turned(BTC_DEPOSITS, Err(error), Next::Dead),
            },
        }
        Ok(())
    }

    /// A user withdraws part of its Bitcoin to an address of its own, paying a fee that leaves
    /// room for a few bumps.
    pub(crate) async fn withdraw_bitcoin(&mut self) -> Result<(), SimError> {
        let Some(sequencer) = &self.coordinator.sequencer else { return Ok(()) };
        let wallet = &self.users[self.btc_rng.below(self.users.len() as u64) as usize];
        let balance = sequencer.state().balance(&wallet.address(), &AssetId::Btc).0;
        let fee = 5_000u128;
        if balance < 20_000 + fee {
            return Ok(());
        }
        let amount = 10_000 + u128::from(self.btc_rng.below(u64::try_from(balance - fee - 10_000).unwrap_or(u64::MAX)));
        let script = ScriptBuf::from_bytes(self.btc_rng.bytes32().to_vec());
        let recipient = bitcoin::Address::p2wsh(&script, bitcoin::Network::Regtest);
        let withdraw = Withdraw {
            from: wallet.address(),
            asset: AssetId::Btc,
            amount: Amount(amount),
            fee: Amount(fee),
            recipient: recipient.to_string(),
            nonce: sequencer.state().nonce(&wallet.address()),
        };
        let signed = wallet.sign(UserTx::Withdraw(withdraw), &bridge::eip712::Domain::new(&self.params));
        self.submit_user(signed, "Bitcoin withdrawal").await
    }

    /// The coordinator's payout keeper, once a block: the binary's own round
    /// ([`coordinator::payouts::PayoutKeeper::round`], which its `bitcoin-payouts` task turns)
    /// on the coordinator's sequencer and its node's view of the chain, on simulated time. It
    /// records each plan the chain confirmed [`BTC_DEPTH`] deep, plans the queue once its
    /// oldest withdrawal has waited [`KEEPER_WINDOW`] (less the measured lead), and consolidates
    /// the vault's small outputs. The node has no fee market, so it plans at the network's
    /// lowest rate, as a quiet regtest node's missing estimate does.
    pub(crate) async fn keep_payouts(&mut self) -> Result<(), SimError> {
        // Its last batches must be replayed by every confirmer before the run ends.
        if self.now() + KEEPER_QUIET_BEFORE_END_MS >= self.config.fault_ms + self.config.healing_ms {
            return Ok(());
        }
        let now = std::time::Duration::from_millis(self.now());
        let Some(btc) = &self.btc else { return Ok(()) };
        let Some(sequencer) = self.coordinator.sequencer.as_mut() else { return Ok(()) };
        let mut keeper = self.coordinator.keeper.take().unwrap_or_else(|| {
            let node = btc.view(self.coordinator.btc_lag.clone());
            PayoutKeeper::new(node, NoFeeMarket, btc.vault, BtcNetwork::Regtest, BTC_DEPTH, 0)
                .with_window(KEEPER_WINDOW)
        });
        let mut ledger = KeeperLedger { sequencer, outcomes: Vec::new() };
        let round = keeper.round(&mut ledger, now).await;
        let outcomes = ledger.outcomes;
        // The keeper's memory lives as long as the coordinator: a crash below takes it.
        self.coordinator.keeper = Some(keeper);
        for (what, outcome) in &outcomes {
            self.note_outcome(what, None, outcome);
        }
        match round {
            Ok(_) => Ok(()),
            Err(PayoutKeeperError::Sequencer(error)) => self.sequencer_failed("a submission", error),
            Err(PayoutKeeperError::Node(error)) => Err(SimError::role("the coordinator's Bitcoin node")(error)),
        }
    }

    /// A hostile requester's Bitcoin question: the inputs of the newest payout plan of a batch up
    /// to `last`, as its attempt 0 but with one output paying a satoshi more (the change one
    /// less). Every honest policy must refuse it: its replay builds that input's sighash itself.
    pub(crate) fn forged_bitcoin_question(&self, last: u64) -> Option<(Vec<SigningRequest>, Ask)> {
        let btc = self.btc.as_ref()?;
        let (batch, plan) =
            btc.truth.plans.values().rev().find(|(batch, plan)| *batch <= last && !plan.is_consolidation())?;
        let mut forged = plan.clone();
        let output = forged.payouts.first_mut()?;
        output.amount_sat = output.amount_sat.checked_add(1)?;
        let unsigned = forged.build(&VaultKeys::genesis(btc.vault), BtcNetwork::Regtest, 0).ok()?;
        let ask = Ask {
            what: "a Bitcoin payout paying one output more",
            first: *batch,
            last: *batch,
            root: [0; 32],
            kind: AskKind::BitcoinPayout,
        };
        Some((BtcPayouts::requests(*batch, &forged, &unsigned), ask))
    }

    /// Every running watchman's payout turn, then the sessions they asked for.
    pub(crate) async fn pay_bitcoin(&mut self) -> Result<(), SimError> {
        for index in 0..self.confirmers.len() {
            let Some(watchman) = self.confirmers[index].watchman.as_mut() else { continue };
            if let Some(task) = watchman.bump_clock.as_mut()
                && let Err(error) = task.turn().await
            {
                self.log(format!("watchman {index}'s bump clock: {error}"));
                continue;
            }
            let Some(watchman) = self.confirmers[index].watchman.as_mut() else { continue };
            let signer = watchman.btc_signer.clone();
            let Some(payouts) = watchman.btc.as_mut() else { continue };
            match payouts.settle(&signer).await {
                Ok(actions) => {
                    for action in actions {
                        self.log(format!("watchman {index} Bitcoin: {action:?}"));
                    }
                }
                Err(error) => self.log(format!("watchman {index}'s Bitcoin turn failed: {error}")),
            }
            for requests in signer.take_wanted() {
                let batch = requests.first().and_then(|r| r.context.batch).unwrap_or(0);
                let ask = Ask::bitcoin(batch);
                for request in &requests {
                    self.asked.insert(request.message.clone(), ask.clone());
                }
                self.start_session(index, requests, ask);
            }
        }
        Ok(())
    }

    /// `btc-paid-justified` and `btc-paid-once`, over the active chain: after each block, on the
    /// blocks it added or replaced (btc_vault_scan.rs).
    pub(crate) fn check_btc_spends(&mut self) -> Result<(), SimError> {
        let Some(btc) = self.btc.as_mut() else { return Ok(()) };
        for (invariant, detail) in btc.scan_vault_spends()? {
            self.violate(invariant, detail);
        }
        Ok(())
    }

    /// The plans the sequencer sealed that an attempt on the active chain pays.
    pub(crate) fn btc_plans_paid(&self) -> Result<usize, SimError> {
        let Some(btc) = &self.btc else { return Ok(0) };
        Ok(btc.plans_paid()?.len())
    }

    /// After healing, with an honest coordinator: every plan paid, nothing queued, and the
    /// chain holds every output the ledger says the vault has, at least what the ledger owes.
    pub(crate) async fn check_btc_end(&mut self) -> Result<(), SimError> {
        if self.bad_from.is_some() {
            return Ok(());
        }
        let (Some(btc), Some(sequencer)) = (&self.btc, &self.coordinator.sequencer) else { return Ok(()) };
        let mut found = Vec::new();
        let paid = btc.plans_paid()?;
        if let Some((id, (batch, _))) = btc.truth.plans.iter().find(|(id, _)| !paid.contains(id)) {
            found.push(("btc-payout-liveness", format!("plan {id} of batch {batch} is unpaid after healing")));
        }
        let state = sequencer.state();
        // Deposits are credited: the honest coordinator's watcher (the binary's) missed none
        // that reached its depth, across its crashes and the chain's reorgs.
        if self.attack.is_none()
            && let Some(missed) = btc.uncredited_deep_deposit(|l1_ref| state.is_credited(l1_ref))?
        {
            found.push((
                "deposit-liveness",
                format!(
                    "the Bitcoin deposit {}:{} is {BTC_DEPTH} deep and not credited after healing",
                    short(&missed.txid),
                    missed.vout
                ),
            ));
        }
        let queued = state.btc_queue().count();
        if queued > 0 {
            found.push(("btc-payout-liveness", format!("{queued} Bitcoin withdrawals still queued after healing")));
        }
        // The ledger's record of the vault is true (each output it lists is unspent on the
        // chain at its amount), and the vault holds at least what the ledger owes its users.
        let outputs: Vec<bridge::VaultUtxo> = state.vault_utxos().copied().collect();
        let node = btc.view(Arc::new(AtomicU64::new(0)));
        // Depth 1: healed, the view is the chain's tip, which has every block the ledger names.
        let holdings =
            chains::bitcoin::holdings(&node, &outputs, 1).await.map_err(SimError::role("the Bitcoin node"))?;
        if let Some(unseen) = holdings.unseen.first() {
            found.push((
                "btc-solvency",
                format!(
                    "the ledger lists {} vault outputs from blocks past the chain's tip {}, {}:{} first",
                    holdings.unseen.len(),
                    holdings.tip,
                    hex::encode(&unseen.txid[..4]),
                    unseen.vout
                ),
            ));
        }
        if let Some(missing) = holdings.missing.first() {
            found.push((
                "btc-solvency",
                format!(
                    "the ledger lists {} vault outputs the chain does not hold, {}:{} first",
                    holdings.missing.len(),
                    hex::encode(&missing.txid[..4]),
                    missing.vout
                ),
            ));
        }
        let held = btc.vault_holdings_sat()?;
        let owed = state.supply(&AssetId::Btc).liabilities.0;
        if u128::from(held) < owed {
            found.push(("btc-solvency", format!("the vault holds {held} sat on the chain, the ledger owes {owed}")));
        }
        for (invariant, detail) in found {
            self.violate(invariant, detail);
        }
        Ok(())
    }

    /// `deposits-backed` on Bitcoin, after every tick: no ledger credits more than was paid in.
    pub(crate) fn check_btc_deposits(&mut self) {
        let Some(btc) = &self.btc else { return };
        let on_chain = u128::from(btc.deposited_sat);
        let coordinator = self.coordinator.sequencer.as_ref().map(|s| s.state().supply(&AssetId::Btc).deposited.0);
        if self.bad_from.is_none() && coordinator.is_some_and(|credited| credited > on_chain) {
            self.violate("deposits-backed", "the coordinator credited more Bitcoin than was paid in".into());
        }
        let replayed = self.confirmers.iter().enumerate().find_map(|(index, role)| {
            let credited = role.follower.as_ref()?.state().supply(&AssetId::Btc).deposited.0;
            (credited > on_chain).then_some(index)
        });
        if let Some(index) = replayed {
            self.violate("deposits-backed", format!("confirmer {index} replayed Bitcoin credits never paid in"));
        }
    }
}

/// The vault's own script and every user's deposit script: what a spend of the vault spends.
pub(crate) fn vault_scripts(
    vault: bridge::BtcVaultParams,
    accounts: impl Iterator<Item = bridge::Address>,
) -> BTreeSet<ScriptBuf> {
    let mut scripts: BTreeSet<ScriptBuf> =
        accounts.map(|account| vault.script_of(BtcNetwork::Regtest, &VaultOwner::Account { account })).collect();
    scripts.insert(vault.script_of(BtcNetwork::Regtest, &VaultOwner::Vault));
    scripts
}

pub(crate) fn short(txid: &Txid) -> String {
    txid.to_string()[..8].to_string()
}

/// The Bitcoin deposit turn's ledger edge in the simulator: the coordinator's own sequencer,
/// each outcome kept for the trace.
pub(crate) struct DepositsLedger<'a> {
    pub(crate) sequencer: &'a mut Sequencer,
    pub(crate) outcomes: Vec<Outcome>,
}

impl DepositLedger for DepositsLedger<'_> {
    async fn keys(&mut self) -> Result<LedgerKeys, SequencerError> {
        Ok(LedgerKeys::of(self.sequencer.state()))
    }

    async fn submit(&mut self, tx: Tx) -> Result<Outcome, SequencerError> {
        let outcome = self.sequencer.submit(vec![tx]).await?.pop().ok_or(SequencerError::Stopped)?;
        self.outcomes.push(outcome.clone());
        Ok(outcome)
    }
}

/// The payout keeper's ledger edge in the simulator: the coordinator's own sequencer, each
/// submission's outcome kept for the trace.
struct KeeperLedger<'a> {
    sequencer: &'a mut Sequencer,
    outcomes: Vec<(&'static str, Outcome)>,
}

impl PayoutLedger for KeeperLedger<'_> {
    async fn reading(&mut self) -> Result<LedgerReading, SequencerError> {
        Ok(LedgerReading::of(self.sequencer.state()))
    }

    async fn submit(&mut self, tx: Tx) -> Result<Outcome, SequencerError> {
        let what = match &tx {
            Tx::System(bridge::tx::SystemTx::BtcPayoutConfirmed { .. }) => "payout confirmation",
            Tx::System(bridge::tx::SystemTx::BtcSweepPlan { .. }) => "sweep plan",
            Tx::System(bridge::tx::SystemTx::BtcPayoutPlan { .. }) => "payout plan",
            Tx::System(bridge::tx::SystemTx::BtcConsolidationPlan { .. }) => "consolidation plan",
            _ => "keeper's transaction",
        };
        let outcome = self.sequencer.submit(vec![tx]).await?.pop().ok_or(SequencerError::Stopped)?;
        self.outcomes.push((what, outcome.clone()));
        Ok(outcome)
    }
}

/// The simulated node has no fee market: no estimate, as a quiet regtest node answers.
pub(crate) struct NoFeeMarket;

impl FeeEstimates for NoFeeMarket {
    async fn estimate(&self, _target_blocks: u16) -> Result<Option<u64>, chains::bitcoin::RpcError> {
        Ok(None)
    }
}
