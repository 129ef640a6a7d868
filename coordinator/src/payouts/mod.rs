//! The coordinator's part in Bitcoin payouts: it proposes a plan when withdrawals wait in the
//! queue, a consolidation of the vault's small outputs when fees are low, and records which
//! attempt of a plan the chain confirmed. It holds no key and signs
//! nothing: the watchmen sign and broadcast each plan from their own replay, and the ledger
//! itself checks everything the coordinator submits here.
//!
//! One payout per settlement window: a plan pays every withdrawal queued by every batch so far
//! (up to `MAX_PAYOUT_OUTPUTS`), so the keeper plans only once the oldest queued withdrawal has
//! waited the window (`[bitcoin] payout_window_ms`), or at once when the queue fills a
//! transaction. The watchmen sign the plan the replayed ledger made, whenever it was made: the
//! window is the coordinator's choice of *when*, never a rule a replayer must agree on.
//!
//! The window is what a user is promised: paid (first confirmation) within it. A plan still has
//! to go through its batch, publication, the watchmen's replay and signing, and a Bitcoin block,
//! so the keeper plans that long before the window ends: by the *lead*, how long its last plan
//! took from being seen in the ledger to its first confirmation, at most half the window (so a
//! slow chain still leaves most of the window for withdrawals to share one payout).
//!
//! The decisions live in [`keeping`], apart from the I/O here; [`PayoutKeeper::round`] is the
//! whole turn around them, over narrow edges, which the binary's task and the simulator both run.

mod keeping;

use std::future::Future;
use std::time::Duration;

use bridge::Tx;
use chains::bitcoin::{BitcoinNode, CoreRpc, PayoutBroadcaster, PayoutRpcError, RpcError};

pub use self::keeping::{
    ChainReading, Keeping, LedgerReading, PayoutLead, PayoutRound, Proposal, fee_rate, payout_due,
};
use crate::sequencer::{Outcome, SequencerError, SequencerHandle};

#[derive(Debug, thiserror::Error)]
pub enum PayoutKeeperError {
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error("asking the Bitcoin node about payouts failed: {0}")]
    Node(#[from] PayoutRpcError),
}

/// Where the keeper reads the ledger and submits what it proposes: the sequencer's handle in
/// the binary, the simulator's own sequencer there. An error is the sequencer gone or failing,
/// never a refusal (a refused proposal is an `Ok(Err(_))` outcome).
pub trait PayoutLedger {
    /// What the keeper reads of the ledger now.
    fn reading(&mut self) -> impl Future<Output = Result<LedgerReading, SequencerError>> + Send;
    /// Submits one proposal; resolves once it is durable or refused.
    fn submit(&mut self, tx: Tx) -> impl Future<Output = Result<Outcome, SequencerError>> + Send;
}

impl PayoutLedger for SequencerHandle {
    async fn reading(&mut self) -> Result<LedgerReading, SequencerError> {
        self.read(LedgerReading::of).await
    }

    async fn submit(&mut self, tx: Tx) -> Result<Outcome, SequencerError> {
        SequencerHandle::submit(self, tx).await
    }
}

/// The node's fee estimate, `estimatesmartfee`'s `feerate` in sat/kvB; `None` when the node has
/// none (a quiet regtest node, or one just started).
pub trait FeeEstimates: Send + Sync {
    fn estimate(&self, target_blocks: u16) -> impl Future<Output = Result<Option<u64>, RpcError>> + Send;
}

impl FeeEstimates for CoreRpc {
    async fn estimate(&self, target_blocks: u16) -> Result<Option<u64>, RpcError> {
        self.estimate_smart_fee(target_blocks).await
    }
}

impl<F> std::fmt::Debug for PayoutKeeper<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayoutKeeper")
            .field("node", self.broadcaster.node())
            .field("depth", &self.keeping.depth())
            .finish_non_exhaustive()
    }
}

/// The keeper's turn: reads the ledger ([`PayoutLedger`]) and the chain (a [`BitcoinNode`]),
/// lets [`Keeping`] decide, and submits what it proposes. The binary's task and the simulator
/// both run this whole round, each with its own ledger edge, node and clock.
pub struct PayoutKeeper<F = CoreRpc> {
    broadcaster: PayoutBroadcaster,
    fees: F,
    vault: bridge::BtcVaultParams,
    /// `estimatesmartfee`'s confirmation target.
    fee_target: u16,
    keeping: Keeping,
}

impl<F: FeeEstimates> PayoutKeeper<F> {
    /// A keeper asking `node` where plans stand and `fees` what to pay (one `CoreRpc` is both in
    /// production).
    pub fn new(
        node: impl BitcoinNode + 'static,
        fees: F,
        vault: bridge::BtcVaultParams,
        network: bridge::BtcNetwork,
        depth: u64,
        fee_target: u16,
    ) -> Self {
        let broadcaster = PayoutBroadcaster::new(node, vault, network);
        PayoutKeeper { broadcaster, fees, vault, fee_target, keeping: Keeping::new(vault, depth, Duration::ZERO) }
    }

    /// Plans at most once per `window` (see the module's doc); without it, every round plans
    /// what waits.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.keeping = Keeping::new(self.vault, self.keeping.depth(), window);
        self
    }

    /// Records confirmed plans, then plans the queue if anything waits. `now` is the keeper's
    /// own clock (time since it started in the binary, simulated time in the simulator).
    pub async fn round(
        &mut self,
        ledger: &mut impl PayoutLedger,
        now: Duration,
    ) -> Result<PayoutRound, PayoutKeeperError> {
        let reading = ledger.reading().await?;
        metrics::gauge!("bridge_btc_old_key_outputs").set(reading.old_key_outputs as f64);
        // The batch that count is for, set after it: a reader that sees this batch sees that
        // batch's count (`bridgectl devnet rotate` waits on the pair).
        metrics::gauge!("bridge_btc_old_key_outputs_batch").set(reading.batch as f64);
        let chain = ChainReading::read(&self.broadcaster, &reading, self.keeping.depth()).await?;
        let estimate = match self.fees.estimate(self.fee_target).await {
            Ok(estimate) => estimate,
            Err(error) => {
                tracing::warn!(%error, "no fee estimate; planning at the network's lowest rate");
                None
            }
        };
        let fee_rate = fee_rate(&self.vault, estimate);
        let mut round = PayoutRound::default();
        for proposal in self.keeping.decide(&reading, &chain, fee_rate, now) {
            let result = ledger.submit(Tx::System(proposal.tx())).await?;
            self.keeping.outcome(&proposal, result.as_ref().map(|_| ()), &mut round);
        }
        Ok(round)
    }
}
