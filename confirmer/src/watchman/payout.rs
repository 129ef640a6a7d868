//! The settlement loop's Bitcoin step: for every payout plan a hard-final batch made, sign an
//! attempt (one ROAST session for all its inputs, each watchman asking its own
//! [`ReplayPolicy`](super::ReplayPolicy)) and broadcast it; when the attempt waits in the
//! mempool for `bump_after_blocks` blocks, sign and broadcast the next attempt (RBF). The node
//! is asked first, so a restart, or another watchman having broadcast, signs nothing twice.

use std::collections::{BTreeMap, BTreeSet};

use bridge::btc_payout::{PayoutPlan, UnsignedPayout};
use bridge::{BtcNetwork, BtcVaultParams};
use chains::bitcoin::{CoreRpc, PayoutBroadcaster, PayoutRpcError, PayoutStatus, RpcError};
use tss::{KeyPath, SessionError, SigningContext, SigningRequest, TssNode};

use super::book::SettlementBook;
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
}

#[derive(Debug)]
pub struct BtcPayouts {
    book: SettlementBook,
    vault: BtcVaultParams,
    network: BtcNetwork,
    rpc: CoreRpc,
    broadcaster: PayoutBroadcaster,
    bump_after_blocks: u64,
    /// Plans the chain has confirmed.
    done: BTreeSet<u64>,
    /// For each plan waiting in the mempool: the attempt and the height it was first seen at.
    waiting: BTreeMap<u64, (u32, u64)>,
}

impl BtcPayouts {
    pub fn new(
        book: SettlementBook,
        vault: BtcVaultParams,
        network: BtcNetwork,
        rpc: CoreRpc,
        bump_after_blocks: u64,
    ) -> Self {
        let broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, network);
        BtcPayouts {
            book,
            vault,
            network,
            rpc,
            broadcaster,
            bump_after_blocks: bump_after_blocks.max(1),
            done: BTreeSet::new(),
            waiting: BTreeMap::new(),
        }
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

    /// Pays or bumps every plan of a hard-final batch that the chain has not confirmed; stops
    /// at the first failure (retried at the next call).
    pub async fn settle(&mut self, tss: &TssNode) -> Result<Vec<PayoutAction>, PayoutError> {
        let mut actions = Vec::new();
        for (batch, settlement) in self.book.owing_from(1) {
            for plan in &settlement.btc_plans {
                if self.done.contains(&plan.id) {
                    continue;
                }
                if let Some(why) = self.book.halted() {
                    return Err(PayoutError::Halted(why));
                }
                let height = self.rpc.block_count().await?;
                let attempt = match self.broadcaster.status(plan).await? {
                    PayoutStatus::Confirmed { attempt, .. } => {
                        self.done.insert(plan.id);
                        self.waiting.remove(&plan.id);
                        actions.push(PayoutAction::Confirmed { plan: plan.id, attempt });
                        continue;
                    }
                    PayoutStatus::Pending { attempt } => {
                        let (_, seen) = *self.waiting.entry(plan.id).or_insert((attempt, height));
                        let next = attempt + 1;
                        let stuck = height.saturating_sub(seen) >= self.bump_after_blocks;
                        if !stuck || plan.build(&self.vault, self.network, next).is_err() {
                            continue; // not stuck yet, or already at the fee budget: wait
                        }
                        next
                    }
                    PayoutStatus::Unseen => 0,
                };
                let txid = self.sign_and_broadcast(tss, batch, plan, attempt).await?;
                self.waiting.insert(plan.id, (attempt, height));
                actions.push(PayoutAction::Broadcast { plan: plan.id, attempt, txid });
            }
        }
        Ok(actions)
    }

    async fn sign_and_broadcast(
        &self,
        tss: &TssNode,
        batch: u64,
        plan: &PayoutPlan,
        attempt: u32,
    ) -> Result<String, PayoutError> {
        let unsigned = plan
            .build(&self.vault, self.network, attempt)
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
        let tx = unsigned.with_signatures(&signatures);
        let txid = self.broadcaster.broadcast(&tx).await?;
        metrics::counter!("watchman_btc_payouts_broadcast_total").increment(1);
        tracing::info!(plan = plan.id, attempt, %txid, fee_sat = unsigned.fee_sat, "Bitcoin payout broadcast");
        Ok(txid.to_string())
    }
}
