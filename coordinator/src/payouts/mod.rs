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
//! The decisions live in [`keeping`], apart from the I/O here: the simulator drives them too.

mod keeping;

use std::time::{Duration, Instant};

use bridge::Tx;
use chains::bitcoin::{CoreRpc, PayoutBroadcaster, PayoutRpcError};

pub use self::keeping::{
    ChainReading, Keeping, LedgerReading, PayoutLead, PayoutRound, Proposal, fee_rate, payout_due,
};
use crate::sequencer::{SequencerError, SequencerHandle};

#[derive(Debug, thiserror::Error)]
pub enum PayoutKeeperError {
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error("asking the Bitcoin node about payouts failed: {0}")]
    Node(#[from] PayoutRpcError),
}

impl std::fmt::Debug for PayoutKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayoutKeeper")
            .field("node", &self.rpc.url())
            .field("depth", &self.keeping.depth())
            .finish_non_exhaustive()
    }
}

/// The keeper's shell: reads the ledger through the sequencer and the chain through the node,
/// lets [`Keeping`] decide, and submits what it proposes.
pub struct PayoutKeeper {
    sequencer: SequencerHandle,
    rpc: CoreRpc,
    broadcaster: PayoutBroadcaster,
    vault: bridge::BtcVaultParams,
    /// `estimatesmartfee`'s confirmation target.
    fee_target: u16,
    keeping: Keeping,
    /// The keeper's clock starts with it: `Keeping` sees only time since then.
    started: Instant,
}

impl PayoutKeeper {
    pub fn new(
        sequencer: SequencerHandle,
        rpc: CoreRpc,
        vault: bridge::BtcVaultParams,
        network: bridge::BtcNetwork,
        depth: u64,
        fee_target: u16,
    ) -> Self {
        let broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, network);
        PayoutKeeper {
            sequencer,
            rpc,
            broadcaster,
            vault,
            fee_target,
            keeping: Keeping::new(vault, depth, Duration::ZERO),
            started: Instant::now(),
        }
    }

    /// Plans at most once per `window` (see the module's doc); without it, every round plans
    /// what waits.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.keeping = Keeping::new(self.vault, self.keeping.depth(), window);
        self
    }

    /// Records confirmed plans, then plans the queue if anything waits.
    pub async fn round(&mut self) -> Result<PayoutRound, PayoutKeeperError> {
        let ledger = self.sequencer.read(LedgerReading::of).await?;
        metrics::gauge!("bridge_btc_old_key_outputs").set(ledger.old_key_outputs as f64);
        // The batch that count is for, set after it: a reader that sees this batch sees that
        // batch's count (`bridgectl devnet rotate` waits on the pair).
        metrics::gauge!("bridge_btc_old_key_outputs_batch").set(ledger.batch as f64);
        let chain = ChainReading::read(&self.broadcaster, &ledger, self.keeping.depth()).await?;
        let estimate = match self.rpc.estimate_smart_fee(self.fee_target).await {
            Ok(estimate) => estimate,
            Err(error) => {
                tracing::warn!(%error, "no fee estimate; planning at the network's lowest rate");
                None
            }
        };
        let fee_rate = fee_rate(&self.vault, estimate);
        let mut round = PayoutRound::default();
        for proposal in self.keeping.decide(&ledger, &chain, fee_rate, self.started.elapsed()) {
            let result = self.sequencer.submit(Tx::System(proposal.tx())).await?;
            self.keeping.outcome(&proposal, result.as_ref().map(|_| ()), &mut round);
        }
        Ok(round)
    }
}
