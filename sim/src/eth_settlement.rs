//! Every running watchman settles Ethereum with the binary's own
//! [`EthSettlement`](confirmer::watchman::EthSettlement): its book, its turns among the
//! submitters, its window, its kept signatures and its stuck leaves, over its own node
//! ([`EthNode`](crate::eth_chain::EthNode), which may lag) and its machine's clock.
//!
//! A turn is a future, as in the binary, polled at each tick: it runs until it awaits a signing
//! session, which [`SessionSigner`] starts on the simulated mesh; the session's end wakes it at
//! the tick after, and the turn sends what was signed. A watchman's crash drops its turn with
//! the rest of its memory. New turns start at each Ethereum block.
//!
//! Each Ethereum block mines the sends waiting for it; what they did comes back as
//! [`VaultEvent`]s, checked here: `paid-once` and `paid-justified` for every leaf, and
//! `vault-takes-signed-range` for a range that was the vault's next one when mined.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use chains::ethereum::FeePolicy;
use confirmer::watchman::{EthSettlement, RangeDetail, SettleError, SettledRange, SettlementBook, Turns};
use tss::roast::SessionOutcome;
use tss::{SessionError, SigningRequest, ThresholdSigner};

use crate::SimError;
use crate::eth_chain::{EthNode, VaultEvent};
use crate::evm::paused_refusal;
use crate::signing::SessionReply;
use crate::watchmen::{Ask, AskKind};
use crate::world::World;

/// Ethereum blocks in one submitter's turn: the binary's default.
const TURN_BLOCKS: u64 = 10;

/// A settlement turn in flight: it gives the settlement back when it ends.
type Turn = Pin<Box<dyn Future<Output = (EthSettlement, Result<Vec<SettledRange>, SettleError>)>>>;

/// The signing sessions a watchman's settlement asked for since the simulator last took them.
/// Bounded: its one turn awaits each session's end before asking again, and every tick takes
/// what was asked.
type Wanted = Arc<Mutex<Vec<(Vec<SigningRequest>, SessionReply)>>>;

/// A watchman's signer as its settlement sees it: a session on the simulated mesh, awaited to
/// its end.
#[derive(Clone, Default)]
pub(crate) struct SessionSigner {
    wanted: Wanted,
}

impl SessionSigner {
    fn take_wanted(&self) -> Vec<(Vec<SigningRequest>, SessionReply)> {
        std::mem::take(&mut *self.wanted.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl ThresholdSigner for SessionSigner {
    async fn sign(&self, requests: Vec<SigningRequest>) -> Result<SessionOutcome, SessionError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner).push((requests, reply));
        // A session dropped without an end (its asker restarted) ends the wait as unfinished.
        outcome.await.unwrap_or(Err(SessionError::Unfinished))
    }
}

/// One watchman's Ethereum settlement: idle between turns, or lent to the turn in flight.
pub(crate) struct EthTurns {
    idle: Option<EthSettlement>,
    turn: Option<Turn>,
    signer: SessionSigner,
    /// The last failure logged, so a failure that repeats every turn is logged once.
    last_error: Option<String>,
}

impl World {
    /// Watchman `index`'s settlement as its binary builds it, on its own node and clock.
    pub(crate) fn new_eth_settlement(&self, index: usize, book: SettlementBook) -> EthTurns {
        let node = EthNode {
            chain: self.eth.clone(),
            now_ms: self.now_ms.clone(),
            lag_blocks: self.confirmers[index].lag_blocks.clone(),
            watchman: index,
            fees: FeePolicy::default(),
        };
        let turns = Turns { me: index as u64, submitters: self.confirmers.len() as u64, timeout_blocks: TURN_BLOCKS };
        let settlement =
            EthSettlement::new(book, self.vault_domain(), node).with_turns(turns).with_clock(self.tick_clock(index));
        EthTurns { idle: Some(settlement), turn: None, signer: SessionSigner::default(), last_error: None }
    }

    /// Every running watchman's settlement: a turn in flight goes on; at a new Ethereum block an
    /// idle one starts a turn. Then the sessions they asked for start, and what the vault did
    /// is checked.
    pub(crate) async fn settle_ethereum(&mut self, new_block: bool) -> Result<(), SimError> {
        let now = self.now();
        for index in 0..self.confirmers.len() {
            // A confirmer that stopped stepping stopped its watchman's loop too (one process).
            if self.confirmers[index].stalled_until.is_some_and(|until| now < until) {
                continue;
            }
            if new_block {
                self.start_eth_turn(index).await?;
            }
            let Some(turns) = self.confirmers[index].watchman.as_mut().map(|w| &mut w.eth) else { continue };
            let Some(turn) = turns.turn.as_mut() else { continue };
            // Its awaits are the node's answers (at once) and a session's end (set between
            // ticks), so a turn needs no waking: each tick polls it.
            let Poll::Ready((settlement, result)) = turn.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
                self.start_eth_sessions(index);
                continue;
            };
            turns.turn = None;
            turns.idle = Some(settlement);
            let line = match result {
                Ok(settled) if settled.is_empty() => None,
                Ok(settled) => {
                    turns.last_error = None;
                    let ranges: Vec<String> = settled
                        .iter()
                        .map(|r| {
                            let root = if r.submitted_root { ", its root sent" } else { "" };
                            format!("{} ({}..={}{root}, {} txs)", r.range, r.first, r.last, r.payout_transactions)
                        })
                        .collect();
                    Some(format!("watchman {index} settled Ethereum ranges {}", ranges.join(", ")))
                }
                Err(error) => {
                    let error = error.to_string();
                    (turns.last_error.as_ref() != Some(&error)).then(|| {
                        turns.last_error = Some(error.clone());
                        format!("watchman {index}'s Ethereum turn: {error}")
                    })
                }
            };
            if let Some(line) = line {
                self.log(line);
            }
            self.start_eth_sessions(index);
        }
        Ok(())
    }

    /// Watchman `index` starts a turn if it is idle: as the binary's step does, it first looks
    /// up the time of the batch whose withdrawals wait, from its follower's store.
    async fn start_eth_turn(&mut self, index: usize) -> Result<(), SimError> {
        let role = &mut self.confirmers[index];
        let (Some(follower), Some(watchman)) = (&role.follower, role.watchman.as_mut()) else { return Ok(()) };
        let turns = &mut watchman.eth;
        let Some(mut settlement) = turns.idle.take() else { return Ok(()) };
        if let Some(batch) = settlement.waiting_batch()
            && let Ok(Some(replayed)) = follower.store().replayed_batch(batch).await
        {
            settlement.note_batch_time(batch, replayed.batch.header.timestamp);
        }
        let signer = turns.signer.clone();
        turns.turn = Some(Box::pin(async move {
            let result = settlement.settle(&signer).await;
            (settlement, result)
        }));
        Ok(())
    }

    /// The sessions watchman `index`'s settlement asked for, started on the mesh.
    fn start_eth_sessions(&mut self, index: usize) {
        let Some(watchman) = self.confirmers[index].watchman.as_ref() else { return };
        for (requests, reply) in watchman.eth.signer.take_wanted() {
            let range = requests.first().and_then(|r| RangeDetail::from_detail(&r.context.detail));
            let (first, last) = range.map_or((0, 0), |r| (r.first, r.last));
            let ask = Ask { what: "a watchman's range", first, last, root: [0; 32], kind: AskKind::EthereumRange };
            for request in &requests {
                self.asked.insert(request.message.clone(), ask.clone());
            }
            self.start_session_for(index, requests, ask, Some(reply));
        }
    }

    /// A new Ethereum block mines the sends waiting for it, in the order they came, and what
    /// they did is checked (before the block's end state is kept, so that a reorg to it finds
    /// the checks' record and the chain agreeing).
    pub(crate) fn mine_ethereum(&mut self) {
        let now = self.now();
        let Some(evm) = self.evm.as_mut() else { return };
        let mut chain = self.eth.lock().unwrap_or_else(PoisonError::into_inner);
        for send in std::mem::take(&mut chain.mempool) {
            chain.mine(evm, send, now);
        }
        drop(chain);
        self.check_vault_events();
    }

    /// What the watchmen's sends did: each leaf paid checked, each refusal of a range that was
    /// next explained or a violation.
    fn check_vault_events(&mut self) {
        let events = std::mem::take(&mut self.eth_chain().events);
        for event in events {
            match event {
                VaultEvent::Took { by, first, last } => {
                    self.log(format!("watchman {by} puts range {first}..={last} on the vault"));
                }
                VaultEvent::Paid { batch, index, recipient, wei } => self.check_payout(batch, index, recipient, wei),
                VaultEvent::Refused { by, first, last, next: false, why } => {
                    self.log(format!("the vault refuses watchman {by}'s range {first}..={last}: {why}"));
                }
                VaultEvent::Refused { by, first, last, next: true, why } if paused_refusal(&why) => {
                    self.log(format!("the paused vault refuses watchman {by}'s range {first}..={last}"));
                }
                VaultEvent::Paused { by } => {
                    self.log(format!("watchman {by}'s guardian pause is mined: the vault is paused"))
                }
                VaultEvent::PaidWhilePaused { by } => self.violate(
                    "paused-pays-nothing",
                    format!("watchman {by}'s send paid, or took a range, while the vault was paused"),
                ),
                VaultEvent::Refused { by, first, last, next: true, why } => self.violate(
                    "vault-takes-signed-range",
                    format!("the vault refused watchman {by}'s range {first}..={last}, signed and next: {why}"),
                ),
            }
        }
    }
}
