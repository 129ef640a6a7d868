//! The Ethereum vault as one watchman's lagging node shows it to the real solvency guard
//! (`confirmer::solvency::SolvencyGuard`), through the trait the binary's JSON-RPC view
//! implements ([`VaultSnapshots`]): the ether it holds and what it paid for each batch, both
//! as of the node's head, so a node behind reads the vault as it was.
//!
//! What the vault holds at a past block is rebuilt from the chain's own record (the deposits
//! of blocks up to the head, less the leaves paid by then); at the tip that is the EVM's
//! balance, which `checks.rs` holds it to after every step (`solvency`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bridge::AssetId;
use chains::ethereum_view::{VaultRead, VaultSnapshot, VaultSnapshots};

use crate::eth_chain::{EthChain, seen_at};
use crate::l1::L1;

/// One watchman's view of the vault, through its node `lag_blocks` behind the tip.
#[derive(Clone)]
pub(crate) struct SimVaultView {
    pub(crate) chain: Arc<Mutex<EthChain>>,
    pub(crate) l1: Arc<Mutex<L1>>,
    pub(crate) now_ms: Arc<AtomicU64>,
    pub(crate) lag_blocks: Arc<AtomicU64>,
}

impl std::fmt::Debug for SimVaultView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimVaultView").finish_non_exhaustive()
    }
}

#[async_trait]
impl VaultSnapshots for SimVaultView {
    /// Ether only: the simulated users deposit no token, so `tokens` is always empty.
    async fn snapshot(&mut self, tokens: &[bridge::Address], after: u64) -> Result<VaultRead, String> {
        if let Some(token) = tokens.first() {
            return Err(format!("the simulated vault holds no token, asked for {token}"));
        }
        let now = self.now_ms.load(Ordering::SeqCst);
        let lag = self.lag_blocks.load(Ordering::SeqCst);
        let block = L1::tip(now).saturating_sub(lag);
        let seen_at = seen_at(now, lag);
        // One thread: a poisoned lock means a panic already ended the run.
        let came_in = self.l1.lock().unwrap_or_else(PoisonError::into_inner).ether_through(block);
        let chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        let mut paid_out: u128 = 0;
        let mut paid_after: BTreeMap<u64, BTreeMap<AssetId, u128>> = BTreeMap::new();
        for ((batch, _), leaf) in chain.paid_at.iter().filter(|(_, leaf)| leaf.at_ms <= seen_at) {
            paid_out += leaf.wei;
            if *batch > after {
                *paid_after.entry(*batch).or_default().entry(AssetId::Eth).or_default() += leaf.wei;
            }
        }
        let held = came_in.checked_sub(paid_out).ok_or_else(|| {
            format!("the simulated chain's record pays {paid_out} wei by block {block}, more than the {came_in} that came in")
        })?;
        Ok(VaultRead::At(VaultSnapshot { block, held: BTreeMap::from([(AssetId::Eth, held)]), paid_after }))
    }
}
