//! The settlement loop's Bitcoin step: for every payout plan a hard-final batch made, sign an
//! attempt (one ROAST session for all its inputs, each watchman asking its own
//! [`ReplayPolicy`](super::ReplayPolicy)) and broadcast it; when the attempt is not confirmed
//! `bump_after_blocks` blocks after it was signed or first seen (waiting in the mempool, refused
//! by it, or never seen by it), sign and broadcast the next attempt (RBF). The node is asked
//! first, so a restart, or another watchman having broadcast, signs nothing twice.
//!
//! Plans are independent: each spends its own inputs. A plan that fails (no signature, refused
//! by the node) is logged, counted (`watchman_btc_payout_failures_total`), reported as
//! [`PayoutAction::Failed`] and retried at the next turn; the plans after it go on.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::Transaction;
use bridge::btc_payout::{PayoutPlan, UnsignedPayout};
use bridge::{BtcNetwork, BtcVaultParams, VaultKeys};
use chains::bitcoin::{BitcoinNode, PayoutBroadcaster, PayoutRpcError, PayoutStatus, RpcError};
use tss::{KeyPath, SessionError, SigningContext, SigningRequest, ThresholdSigner};

use super::book::{BTC_PRUNE_CONFIRMATIONS, SettlementBook, confirmed_height, is_btc_deep};
use super::policy::{PayoutInput, SIGN_BTC_PAYOUT_INPUT};

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("signing is stopped: {0}")]
    Halted(String),
    #[error("payout plan {plan}: no signature: {source}")]
    Signing { plan: u64, source: SessionError },
    #[error("payout plan {plan}: the session did not sign input {input}")]
    MissingSignature { plan: u64, input: usize },
    #[error("payout plan {plan}: {reason}")]
    Plan { plan: u64, reason: String },
    #[error("the Bitcoin node: {0}")]
    Node(#[from] PayoutRpcError),
    #[error("the Bitcoin node: {0}")]
    Rpc(#[from] RpcError),
}

/// What this step did with one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutAction {
    /// Attempt `attempt` was signed and broadcast.
    Broadcast { plan: u64, attempt: u32, txid: String },
    /// The chain has attempt `attempt`; nothing more to do.
    Confirmed { plan: u64, attempt: u32 },
    /// This plan could not be advanced this turn (retried at the next); the others went on.
    Failed { plan: u64, reason: String },
}

/// The latest attempt of a plan this watchman knows of, and since when.
#[derive(Debug)]
struct Attempted {
    attempt: u32,
    /// The node's height when this watchman signed it or first saw it.
    since: u64,
    /// The signed transaction, if this watchman signed it: re-sent while it waits, without a
    /// new signing session.
    signed: Option<Transaction>,
}

#[derive(Debug)]
pub struct BtcPayouts {
    book: SettlementBook,
    vault: BtcVaultParams,
    network: BtcNetwork,
    /// Asks the node (Core in production, the simulator's chain in its runs): the tip height
    /// and every attempt.
    broadcaster: PayoutBroadcaster,
    bump_after_blocks: u64,
    /// Plans the chain has confirmed, each with the height of the block that confirmed it: one
    /// entry per plan the book still lists. Once [`BTC_PRUNE_CONFIRMATIONS`] deep (asked of the
    /// node again), the plan is pruned from the book and leaves this map too.
    done: BTreeMap<u64, u64>,
    /// For each plan not yet confirmed: its latest attempt. One entry per pending plan of the
    /// book, removed when the plan confirms.
    attempted: BTreeMap<u64, Attempted>,
    /// This watchman's group key `x(P)`, if known: plans whose inputs are under another key
    /// (a sweep of an old key, for a new watchman; a new key's payouts, for an old one) are
    /// another group's to sign, and are left to it.
    group_key: Option<[u8; 32]>,
}

impl BtcPayouts {
    /// Payouts of `book`'s plans for `vault` on `network` through `node` (a
    /// [`chains::bitcoin::CoreRpc`] in production), bumping an attempt `bump_after_blocks`
    /// blocks (at least one) after it was signed or first seen.
    pub fn new(
        book: SettlementBook,
        vault: BtcVaultParams,
        network: BtcNetwork,
        node: impl BitcoinNode + 'static,
        bump_after_blocks: u64,
    ) -> Self {
        let broadcaster = PayoutBroadcaster::new(node, vault, network);
        BtcPayouts {
            book,
            vault,
            network,
            broadcaster,
            bump_after_blocks: bump_after_blocks.max(1),
            done: BTreeMap::new(),
            attempted: BTreeMap::new(),
            group_key: None,
        }
    }

    /// Pay only plans whose inputs are all under this group key (`x(P)`, the share's).
    pub fn for_group(mut self, internal_key: [u8; 32]) -> Self {
        self.group_key = Some(internal_key);
        self
    }

    /// Whether `plan` is this watchman's group's to sign.
    fn is_ours(&self, keys: &VaultKeys, plan: &PayoutPlan) -> bool {
        self.group_key.is_none_or(|own| plan.inputs.iter().all(|u| keys.internal_key_of(&u.owner) == own))
    }

    /// The vault's keys as this watchman's replay shows them (the genesis key before any).
    fn keys(&self) -> VaultKeys {
        self.book.btc_keys().unwrap_or_else(|| VaultKeys::genesis(self.vault))
    }

    /// One signing request per input of `unsigned`, as the policy checks them.
    pub fn requests(batch: u64, plan: &PayoutPlan, unsigned: &UnsignedPayout) -> Vec<SigningRequest> {
        unsigned
            .sighashes
            .iter()
            .zip(&unsigned.merkle_roots)
            .enumerate()
            .map(|(input, (sighash, root))| SigningRequest {
                message: sighash.to_vec(),
                key_path: KeyPath::of_merkle_root(*root),
                context: SigningContext {
                    chain: "bitcoin".into(),
                    batch: Some(batch),
                    purpose: SIGN_BTC_PAYOUT_INPUT.into(),
                    detail: PayoutInput { plan: plan.id, attempt: unsigned.attempt, input: input as u32 }.to_detail(),
                },
            })
            .collect()
    }

    /// Pays or bumps every plan of hard-final batches that the chain has not confirmed. A plan
    /// that fails is reported as [`PayoutAction::Failed`] and the next plan goes on; only a halt
    /// or a node that does not answer stops the turn. `tss` is the watchman's
    /// [`tss::TssNode`]; a session a signer reports [`SessionError::Unfinished`] (the
    /// simulator's mesh) leaves the plan as it was, neither an action nor a failure, and the
    /// next turn asks again.
    pub async fn settle(&mut self, tss: &dyn ThresholdSigner) -> Result<Vec<PayoutAction>, PayoutError> {
        if let Some(why) = self.book.halted() {
            return Err(PayoutError::Halted(why));
        }
        let height = self.broadcaster.node().block_count().await?;
        self.broadcaster.set_keys(self.keys());
        let mut actions = Vec::new();
        let keys = self.keys();
        // The plans the book lists: what this loop remembers anything about.
        let mut listed = BTreeSet::new();
        for (batch, settlement) in self.book.owing_from(1) {
            for plan in &settlement.btc_plans {
                listed.insert(plan.id);
                if !self.is_ours(&keys, plan) {
                    continue;
                }
                if let Some(&confirmed_at) = self.done.get(&plan.id) {
                    self.prune_if_deep(batch, plan, confirmed_at, height).await?;
                    continue;
                }
                if let Some(why) = self.book.halted() {
                    return Err(PayoutError::Halted(why));
                }
                match self.advance(tss, batch, plan, height).await {
                    Ok(Some(action)) => actions.push(action),
                    Ok(None) => {}
                    Err(PayoutError::Halted(why)) => return Err(PayoutError::Halted(why)),
                    Err(error) => {
                        metrics::counter!("watchman_btc_payout_failures_total").increment(1);
                        tracing::warn!(plan = plan.id, %error, "Bitcoin payout not advanced this turn; the other plans go on");
                        actions.push(PayoutAction::Failed { plan: plan.id, reason: error.to_string() });
                    }
                }
            }
        }
        self.forget_unlisted(&listed);
        Ok(actions)
    }

    /// Plans the book no longer lists (pruned, here or by the bump clock) are never asked about
    /// again: nothing of them is kept, so memory follows the book, not the history.
    fn forget_unlisted(&mut self, listed: &BTreeSet<u64>) {
        self.done.retain(|plan, _| listed.contains(plan));
        self.attempted.retain(|plan, _| listed.contains(plan));
        debug_assert!(
            self.done.len() + self.attempted.len() <= listed.len(),
            "done and attempted are disjoint plans of the book"
        );
    }

    /// A plan confirmed at height `confirmed_at`: once the node's tip `height` puts it
    /// [`BTC_PRUNE_CONFIRMATIONS`] deep, asks the node again and prunes it from the book if the
    /// node agrees. A plan the node no longer shows confirmed stays done (as before pruning
    /// existed: a confirmed plan is never signed or sent again) and is not pruned.
    async fn prune_if_deep(
        &mut self,
        batch: u64,
        plan: &PayoutPlan,
        confirmed_at: u64,
        height: u64,
    ) -> Result<(), PayoutError> {
        if !is_btc_deep(confirmed_at, height) {
            return Ok(());
        }
        match self.broadcaster.status(plan).await? {
            PayoutStatus::Confirmed { confirmations, .. } if confirmations >= BTC_PRUNE_CONFIRMATIONS => {
                self.book.prune_btc_plan(batch, plan.id);
                self.done.remove(&plan.id);
                tracing::debug!(plan = plan.id, batch, confirmations, "Bitcoin payout deep: pruned from the book");
            }
            PayoutStatus::Confirmed { confirmations, .. } => {
                self.done.insert(plan.id, confirmed_height(height, confirmations));
            }
            PayoutStatus::Pending { .. } | PayoutStatus::Unseen => {
                // Still done here (it was confirmed; nothing is signed or sent for it again), but
                // not pruned: asked again once as deep from now.
                tracing::warn!(
                    plan = plan.id,
                    batch,
                    "a confirmed Bitcoin payout is no longer in the node's chain (a reorg?): not pruned"
                );
                self.done.insert(plan.id, height);
            }
        }
        Ok(())
    }

    /// One plan: done if confirmed; otherwise the next attempt once the latest has gone
    /// `bump_after_blocks` blocks without confirming, whether the mempool holds it, refused it
    /// or never saw it.
    async fn advance(
        &mut self,
        tss: &dyn ThresholdSigner,
        batch: u64,
        plan: &PayoutPlan,
        height: u64,
    ) -> Result<Option<PayoutAction>, PayoutError> {
        let latest = match self.broadcaster.status(plan).await? {
            PayoutStatus::Confirmed { attempt, confirmations } => {
                self.done.insert(plan.id, confirmed_height(height, confirmations));
                self.attempted.remove(&plan.id);
                return Ok(Some(PayoutAction::Confirmed { plan: plan.id, attempt }));
            }
            PayoutStatus::Pending { attempt } => {
                let known = self.attempted.entry(plan.id).or_insert(Attempted { attempt, since: height, signed: None });
                if attempt > known.attempt {
                    // Another watchman bumped it: its clock starts when this one first sees it.
                    *known = Attempted { attempt, since: height, signed: None };
                }
                Some(known.attempt)
            }
            PayoutStatus::Unseen => {
                if let Some(Attempted { signed: Some(tx), .. }) = self.attempted.get(&plan.id) {
                    // Dropped or refused: send it again (no signing), bumped below once stuck.
                    if let Err(error) = self.broadcaster.broadcast(tx).await {
                        tracing::debug!(plan = plan.id, %error, "re-sent payout attempt refused");
                    }
                }
                self.attempted.get(&plan.id).map(|a| a.attempt)
            }
        };
        let next = match (latest, self.attempted.get(&plan.id)) {
            (None, _) | (Some(_), None) => 0,
            (Some(attempt), Some(known)) => {
                if height.saturating_sub(known.since) < self.bump_after_blocks {
                    return Ok(None); // not stuck yet
                }
                attempt + 1
            }
        };
        if next > 0 && plan.build(&self.keys(), self.network, next).is_err() {
            metrics::counter!("watchman_btc_payouts_at_budget_total").increment(1);
            tracing::warn!(
                plan = plan.id,
                attempt = next - 1,
                "Bitcoin payout stuck at its fee budget: no higher attempt exists"
            );
            return Ok(None);
        }
        let signed = match self.sign(tss, batch, plan, next).await {
            Err(PayoutError::Signing { source: SessionError::Unfinished, .. }) => {
                // Nothing signed, so no attempt exists yet and its clock has not started.
                tracing::debug!(plan = plan.id, attempt = next, "payout signing session still running");
                return Ok(None);
            }
            signed => signed?,
        };
        // The attempt exists from now: its clock runs whether or not the node takes it.
        self.attempted.insert(plan.id, Attempted { attempt: next, since: height, signed: Some(signed.clone()) });
        let txid = self.broadcaster.broadcast(&signed).await?;
        metrics::counter!("watchman_btc_payouts_broadcast_total").increment(1);
        tracing::info!(plan = plan.id, attempt = next, %txid, "Bitcoin payout broadcast");
        Ok(Some(PayoutAction::Broadcast { plan: plan.id, attempt: next, txid: txid.to_string() }))
    }

    async fn sign(
        &self,
        tss: &dyn ThresholdSigner,
        batch: u64,
        plan: &PayoutPlan,
        attempt: u32,
    ) -> Result<Transaction, PayoutError> {
        let unsigned = plan
            .build(&self.keys(), self.network, attempt)
            .map_err(|e| PayoutError::Plan { plan: plan.id, reason: e.to_string() })?;
        let started = std::time::Instant::now();
        let outcome = tss
            .sign(Self::requests(batch, plan, &unsigned))
            .await
            .map_err(|source| PayoutError::Signing { plan: plan.id, source })?;
        metrics::histogram!("watchman_btc_signing_seconds").record(started.elapsed().as_secs_f64());
        let mut signatures = Vec::with_capacity(unsigned.sighashes.len());
        for (input, sighash) in unsigned.sighashes.iter().enumerate() {
            let signed = outcome.signatures.iter().find(|s| s.request.message.as_slice() == sighash.as_slice());
            signatures.push(signed.ok_or(PayoutError::MissingSignature { plan: plan.id, input })?.signature);
        }
        tracing::debug!(plan = plan.id, attempt, fee_sat = unsigned.fee_sat, "Bitcoin payout signed");
        Ok(unsigned.with_signatures(&signatures))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use super::*;

    fn payouts() -> BtcPayouts {
        let vault = BtcVaultParams { group_key: [2; 32], min_fee_rate: 1, max_fee_rate: 50 };
        // Never asked: these tests drive the bookkeeping only.
        let rpc = chains::bitcoin::CoreRpc::new("http://127.0.0.1:9", "user", "password");
        BtcPayouts::new(SettlementBook::default(), vault, BtcNetwork::Regtest, rpc, 3)
    }

    #[test]
    fn a_plan_is_deep_six_blocks_after_the_block_that_confirmed_it() {
        // One confirmation at tip 100: confirmed in block 100; six at 105.
        assert_eq!(confirmed_height(100, 1), 100);
        assert_eq!(confirmed_height(105, 6), 100);
        assert!(!is_btc_deep(100, 104));
        assert!(is_btc_deep(100, 105));
        // A node that counts no confirmation yet is not taken as deep.
        assert_eq!(confirmed_height(100, 0), 100);
        assert!(!is_btc_deep(u64::MAX, 0));
    }

    #[test]
    fn the_payout_loop_remembers_only_plans_the_book_lists() {
        let mut payouts = payouts();
        for plan in 0..10_000u64 {
            if plan % 2 == 0 {
                payouts.done.insert(plan, plan);
            } else {
                payouts.attempted.insert(plan, Attempted { attempt: 0, since: plan, signed: None });
            }
        }
        // The book still lists plans 9,990.. (the rest confirmed deep and pruned).
        let listed: BTreeSet<u64> = (9_990..10_000).collect();
        payouts.forget_unlisted(&listed);
        assert_eq!(payouts.done.keys().copied().collect::<Vec<_>>(), [9_990, 9_992, 9_994, 9_996, 9_998]);
        assert_eq!(payouts.attempted.len(), 5);
        // A confirmed plan the book still lists stays done: it is never signed again.
        assert_eq!(payouts.done.get(&9_990), Some(&9_990));
        payouts.forget_unlisted(&BTreeSet::new());
        assert!(payouts.done.is_empty() && payouts.attempted.is_empty());
    }
}
