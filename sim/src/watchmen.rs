//! Watchmen in the simulator: each confirmer is also a watchman, with the real
//! [`ReplayPolicy`] and [`SettlementBook`] fed by its real follower, and a real FROST signer
//! (signing.rs). Each settles Ethereum with its real `EthSettlement` on its own node
//! (eth_settlement.rs) and pays Bitcoin with its real `BtcPayouts` (btc_payouts.rs). Every
//! simulated minute a hostile requester, through one running watchman (the seed's pick), also
//! asks the group to sign what no honest replay justifies: the next range's root with one leaf
//! paying more, a random root, under a byzantine coordinator a range reaching into its bad
//! history, and the inputs of the newest Bitcoin payout plan with one output paying a satoshi
//! more. A signature it gets goes to the vault (evm.rs).
//!
//! The ground truth ([`Truth`]) is what the honest sequencer sealed: every approval of an honest
//! watchman's policy and every signature the group makes must be of a message it justifies
//! (`signature-justified`), and after healing an honest run's vault covers every batch that owes
//! withdrawals (`settlement-liveness`) and has paid every leaf of its ranges (`payout-liveness`).

use std::collections::BTreeMap;

use bridge::BtcNetwork;
use bridge::batch::SealedBatch;
use bridge::eth_settlement::{VaultDomain, withdrawals_message};
use bridge::withdrawals::EthWithdrawal;
use bridge::withdrawals::EthWithdrawalTree;
use confirmer::watchman::{
    BtcPayouts, BumpClock, BumpClockTask, CheckpointSchedule, RangeDetail, ReplayPolicy, SETTLE_ETH_WITHDRAWALS,
    SettlementBook,
};
use tss::{KeyPath, SigningContext, SigningRequest};

use crate::SimError;
use crate::btc_chain::BUMP_AFTER_BLOCKS;
use crate::btc_payouts::DeferredSigner;
use crate::byzantine::AttackKind;
use crate::duties::DutyTurns;
use crate::eth_chain::seen_at;
use crate::eth_settlement::EthTurns;
use crate::signing::WatchmanSigner;
use crate::world::World;

/// Signers the group key needs: t of the three watchmen.
pub const SIGNING_THRESHOLD: usize = 2;
/// How often the watchmen are asked to sign.
pub const ASK_EVERY_MS: u64 = 60_000;

/// One confirmer's watchman half: its book (fed by its follower), its signing policy and its
/// signer. All live in memory, so a crash loses them (its nonces too) and a restart builds them
/// again from the follower; its key share is on disk, so it survives.
pub(crate) struct Watchman {
    pub(crate) book: SettlementBook,
    pub(crate) signer: WatchmanSigner,
    /// Its Bitcoin payouts (the real loop, on its own node: btc_payouts.rs), once the vault has
    /// a Bitcoin key.
    pub(crate) btc: Option<BtcPayouts>,
    pub(crate) btc_signer: DeferredSigner,
    /// The real task that feeds its policy's bump clock from its own Bitcoin node, its turn
    /// taken before each payout turn.
    pub(crate) bump_clock: Option<BumpClockTask>,
    /// Its Ethereum settlement (the real one, on its own node: eth_settlement.rs).
    pub(crate) eth: EthTurns,
    /// Its duties and solvency guard (the real ones, on its own Bitcoin node: duties.rs).
    pub(crate) duties: DutyTurns,
    /// Its checkpoint duty's decisions (the real schedule: checkpoints.rs).
    pub(crate) checkpoints: CheckpointSchedule,
}

impl World {
    pub(crate) fn new_watchman(&mut self, index: usize) -> Result<Watchman, SimError> {
        let book = SettlementBook::default();
        let mut policy =
            ReplayPolicy::new(book.clone(), Some(self.vault_domain())).with_checkpoints(self.params.genesis_hash());
        let (mut btc, mut bump_clock) = (None, None);
        if let Some(chain) = &self.btc {
            // As the binary wires it: the policy signs this vault's payouts, bumps timed by a
            // clock its own node feeds, and the payout loop asks that node too.
            let node = chain.view(self.confirmers[index].btc_lag.clone());
            let clock = BumpClock::new(BUMP_AFTER_BLOCKS);
            bump_clock = Some(clock.task(node.clone(), book.clone(), chain.vault, BtcNetwork::Regtest));
            policy = policy.with_bitcoin(chain.vault, BtcNetwork::Regtest).with_bump_clock(clock);
            btc = Some(
                BtcPayouts::new(book.clone(), chain.vault, BtcNetwork::Regtest, node, BUMP_AFTER_BLOCKS)
                    .for_group(chain.vault.group_key),
            );
        }
        let policy = std::sync::Arc::new(policy);
        Ok(Watchman {
            duties: self.new_duties(index)?,
            signer: self.new_signer(index, policy),
            eth: self.new_eth_settlement(index, book.clone()),
            book,
            btc,
            btc_signer: DeferredSigner::default(),
            bump_clock,
            checkpoints: self.new_checkpoint_schedule(index),
        })
    }
}

/// What each batch the honest sequencer sealed owes on Ethereum.
#[derive(Debug, Default)]
pub(crate) struct Truth {
    /// The last batch sealed.
    sealed: u64,
    /// Only batches that owe withdrawals.
    owing: BTreeMap<u64, Vec<EthWithdrawal>>,
    /// Every batch's header hash, for checkpoints.
    headers: BTreeMap<u64, [u8; 32]>,
}

impl Truth {
    pub(crate) fn record(&mut self, sealed: &SealedBatch) {
        let number = sealed.batch.header.number;
        self.sealed = self.sealed.max(number);
        self.headers.insert(number, sealed.batch.header.hash());
        let withdrawals = sealed.settlement.eth.withdrawals();
        if !withdrawals.is_empty() {
            self.owing.insert(number, withdrawals.to_vec());
        }
    }

    /// Every withdrawal of the batches up to `last` that owe any.
    pub(crate) fn owed_through(&self, last: u64) -> impl Iterator<Item = &EthWithdrawal> {
        self.owing.range(..=last).flat_map(|(_, w)| w.iter())
    }

    /// Batch `number`'s header hash, as sealed.
    pub(crate) fn header(&self, number: u64) -> Option<[u8; 32]> {
        self.headers.get(&number).copied()
    }

    /// The message of batch `number`'s true checkpoint on `params`' network.
    pub(crate) fn checkpoint(&self, params: &bridge::NetworkParams, number: u64) -> Option<[u8; 32]> {
        let header = self.header(number)?;
        Some(bridge::checkpoint::checkpoint_message(&params.genesis_hash(), number, &header))
    }

    /// Leaf `index` of batch `batch`, as sealed.
    pub(crate) fn leaf(&self, batch: u64, index: u32) -> Option<&EthWithdrawal> {
        self.owing.get(&batch)?.iter().find(|w| w.index == index)
    }

    /// The withdrawals of batches `first..=last`, if all were sealed.
    pub(crate) fn range(&self, first: u64, last: u64) -> Option<Vec<EthWithdrawal>> {
        (first >= 1 && first <= last && last <= self.sealed)
            .then(|| self.owing.range(first..=last).flat_map(|(_, w)| w.iter().cloned()).collect())
    }
}

/// What a question asks the group to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskKind {
    /// The withdrawals of an Ethereum range `first..=last` (`root` when a requester names it).
    EthereumRange,
    /// A Bitcoin payout's inputs, of a plan of batch `last`.
    BitcoinPayout,
    /// The checkpoint of batch `last` with header hash `root` (checkpoints.rs); `own`: the
    /// asker's checkpoint duty asked it, not a hostile requester.
    Checkpoint { own: bool },
}

/// One question put to the watchmen.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) what: &'static str,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) root: [u8; 32],
    pub(crate) kind: AskKind,
}

impl Ask {
    /// The inputs of a payout a watchman's payout loop asked to sign, of a plan of `batch`.
    pub(crate) fn bitcoin(batch: u64) -> Ask {
        Ask { what: "a Bitcoin payout", first: batch, last: batch, root: [0; 32], kind: AskKind::BitcoinPayout }
    }
}

impl World {
    pub(crate) fn vault_domain(&self) -> VaultDomain {
        VaultDomain { chain_id: self.params.chain_id, vault: self.params.eth_vault, epoch: 0 }
    }

    /// Every [`ASK_EVERY_MS`]: the books read their followers and the vault, then one running
    /// watchman starts a signing session for each question.
    pub(crate) async fn ask_watchmen(&mut self) -> Result<(), SimError> {
        let now = self.now();
        let mut finals = Vec::new();
        let mut running = Vec::new();
        for (index, role) in self.confirmers.iter().enumerate() {
            if let (Some(follower), Some(watchman)) = (&role.follower, &role.watchman) {
                watchman.book.update_from(follower).await.map_err(SimError::role("watchman book"))?;
                // Its own Ethereum node's view of the vault, which lags when the node does.
                let lag = role.lag_blocks.load(std::sync::atomic::Ordering::SeqCst);
                let seen = self.eth_chain().vault.progress_seen(seen_at(now, lag));
                watchman.book.note_vault(seen);
                finals.push(watchman.book.hard_final());
                running.push((index, seen));
            }
        }
        // The longest range t of them can approve, from where the asker's node sees the vault.
        finals.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&last) = finals.get(SIGNING_THRESHOLD - 1) else { return Ok(()) };
        let (asker, seen) = running[self.rng.below(running.len() as u64) as usize];
        let first = seen.settled_through + 1;
        for ask in self.questions(first, last) {
            let request = request(&self.vault_domain(), &ask);
            self.asked.insert(request.message.clone(), ask.clone());
            self.start_session(asker, vec![request], ask);
        }
        if let Some((request, ask)) = self.forged_checkpoint_question(last) {
            self.asked.insert(request.message.clone(), ask.clone());
            self.start_session(asker, vec![request], ask);
        }
        if let Some((requests, ask)) = self.forged_bitcoin_question(last) {
            for request in &requests {
                self.asked.insert(request.message.clone(), ask.clone());
            }
            self.start_session(asker, requests, ask);
        }
        Ok(())
    }

    /// This minute's questions for the range `first..=last`.
    fn questions(&mut self, first: u64, last: u64) -> Vec<Ask> {
        let mut asks = Vec::new();
        if last >= first
            && let Some(withdrawals) = self.truth.range(first, last).filter(|w| !w.is_empty())
        {
            let mut more = withdrawals;
            let leaf = self.rng.below(more.len() as u64) as usize;
            more[leaf].amount = bridge::Amount(more[leaf].amount.0.saturating_add(1));
            asks.push(Ask {
                what: "a root with one leaf paying more",
                first,
                last,
                root: EthWithdrawalTree::new(more).root(),
                kind: AskKind::EthereumRange,
            });
        }
        if last >= first {
            asks.push(Ask {
                what: "a random root",
                first,
                last,
                root: self.rng.bytes32(),
                kind: AskKind::EthereumRange,
            });
        }
        // The byzantine coordinator asks for a range through its bad batch.
        if let Some((bad, _)) = self.bad_from
            && bad >= first
            && let Some(withdrawals) = self.truth.range(first, bad)
        {
            let root = EthWithdrawalTree::new(withdrawals).root();
            asks.push(Ask {
                what: "the coordinator's own range",
                first,
                last: bad,
                root,
                kind: AskKind::EthereumRange,
            });
        }
        asks
    }

    /// Whether the truth justifies signing `ask`. Bad history justifies nothing from its first
    /// batch on; a late equivocation's batch is the honest one, already justified before its
    /// rival was posted.
    fn justified(&self, ask: &Ask, message: &[u8]) -> bool {
        let late = self.attack.as_ref().is_some_and(|a| a.kind == AttackKind::LateEquivocation);
        let cut = self.bad_from.filter(|_| !late).map_or(u64::MAX, |(bad, _)| bad);
        if let AskKind::Checkpoint { .. } = ask.kind {
            return ask.last < cut && self.truth.checkpoint(&self.params, ask.last).is_some_and(|m| m == message);
        }
        if ask.kind == AskKind::BitcoinPayout {
            // An input of an attempt of a plan the honest sequencer sealed before any bad batch.
            let truth = self.btc.as_ref().map(|b| &b.truth);
            let plan = <[u8; 32]>::try_from(message).ok().and_then(|m| truth?.sighashes.get(&m));
            return plan.and_then(|id| truth?.plans.get(id)).is_some_and(|(batch, _)| *batch < cut);
        }
        // The message itself is compared: a watchman's own range is asked with no root.
        let domain = self.vault_domain();
        ask.last < cut
            && self.truth.range(ask.first, ask.last).is_some_and(|w| {
                !w.is_empty()
                    && withdrawals_message(&domain, ask.first, ask.last, EthWithdrawalTree::new(w).root()).as_slice()
                        == message
            })
    }

    /// `signature-justified`, for every approval an honest watchman's policy gave since the last
    /// check (a byzantine watchman's approvals prove nothing).
    pub(crate) fn check_approvals(&mut self) {
        let approvals = match self.approval_log.lock() {
            Ok(mut log) => std::mem::take(&mut *log),
            Err(_) => return,
        };
        for (index, message) in approvals {
            if self.watchman_attack(index).is_some() {
                continue;
            }
            let Some(ask) = self.asked.get(&message).cloned() else {
                self.violate("signature-justified", format!("watchman {index} approved a message nobody asked"));
                continue;
            };
            if !self.justified(&ask, &message) {
                self.violate(
                    "signature-justified",
                    format!(
                        "watchman {index} approved {} for batches {}..={}, which the truth does not justify",
                        ask.what, ask.first, ask.last
                    ),
                );
            }
        }
    }

    /// `signature-justified`, for a signature the group made: t watchmen approved it, so at
    /// least one honest one did.
    pub(crate) fn check_signed(&mut self, ask: &Ask, message: &[u8]) {
        if !self.justified(ask, message) {
            self.violate(
                "signature-justified",
                format!(
                    "the group signed {} for batches {}..={}, which the truth does not justify",
                    ask.what, ask.first, ask.last
                ),
            );
        }
    }

    /// `payout-liveness`, after healing with an honest coordinator: every leaf of every range
    /// the vault took is paid (the simulated recipients are plain accounts, which always take).
    pub(crate) fn check_paid(&mut self) {
        if self.bad_from.is_some() {
            return;
        }
        let settled = self.eth_chain().vault.settled_through();
        let unpaid = self.truth.owed_through(settled).find(|w| !self.paid.contains(&(w.batch, w.index))).cloned();
        if let Some(leaf) = unpaid {
            self.violate(
                "payout-liveness",
                format!(
                    "leaf {} of batch {} is in a range the vault took, but unpaid after healing",
                    leaf.index, leaf.batch
                ),
            );
        }
    }

    /// `settlement-liveness`, after healing with an honest coordinator: the vault's ranges
    /// cover every batch that owes withdrawals.
    pub(crate) fn check_settled(&mut self) {
        if self.bad_from.is_some() {
            return;
        }
        let settled = self.eth_chain().vault.settled_through();
        let cutoff = self.sealed_before_quiet;
        if let Some((&owing, _)) = self.truth.owing.range(settled + 1..).find(|(number, _)| **number <= cutoff) {
            self.violate(
                "settlement-liveness",
                format!("batch {owing} owes withdrawals, but the vault's ranges end at batch {settled} after healing"),
            );
        }
    }
}

fn request(domain: &VaultDomain, ask: &Ask) -> SigningRequest {
    SigningRequest {
        message: withdrawals_message(domain, ask.first, ask.last, ask.root).to_vec(),
        key_path: KeyPath::Vault,
        context: SigningContext {
            chain: "ethereum".into(),
            batch: Some(ask.last),
            purpose: SETTLE_ETH_WITHDRAWALS.into(),
            detail: RangeDetail { first: ask.first, last: ask.last }.to_detail(),
        },
    }
}
