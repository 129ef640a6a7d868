//! A simulated Ethereum, as far as step 1 needs it: deposits into the vault, a block every
//! [`L1_BLOCK_MS`], and each confirmer's own node, which may lag behind the tip. The confirmer's
//! real follower asks it through the real [`DepositVerifier`] trait; the answers follow the
//! trait's contract: a node below the block a deposit names plus the depth says
//! [`DepositCheck::NodeBehind`] ("not seen yet"), and only a node past it may say
//! [`DepositCheck::NotOnL1`] ("absent"). Reorgs of L1 and the vault's payouts come with the EVM
//! in a later step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bridge::{Chain, Deposit, L1Ref};
use chains::deposit::{DepositCheck, DepositVerifier, VerifierError};

/// Ethereum's slot time.
pub const L1_BLOCK_MS: u64 = 12_000;
/// Blocks a deposit needs (its own counts) before the chain watcher credits it and a confirmer
/// confirms it.
pub const DEPOSIT_DEPTH_BLOCKS: u64 = 3;

/// The canonical chain's deposits.
#[derive(Debug, Default)]
pub struct L1 {
    deposits: BTreeMap<L1Ref, Deposit>,
}

impl L1 {
    pub fn tip(now_ms: u64) -> u64 {
        now_ms / L1_BLOCK_MS
    }

    pub fn add(&mut self, deposit: Deposit) {
        self.deposits.insert(deposit.l1_ref, deposit);
    }

    /// The ether deposited in blocks up to `height`: what the vault took in as a node at that
    /// height sees it (a deposit an Ethereum reorg dropped is included again at once, so it
    /// keeps its block).
    pub fn ether_through(&self, height: u64) -> u128 {
        self.deposits
            .values()
            .filter(|d| d.asset == bridge::AssetId::Eth && d.l1_height <= height)
            .map(|d| d.amount.units())
            .sum()
    }

    /// Deposits at depth by `tip`, in L1 order.
    pub fn deep(&self, tip: u64) -> impl Iterator<Item = &Deposit> {
        self.deposits.values().filter(move |d| d.l1_height + DEPOSIT_DEPTH_BLOCKS - 1 <= tip)
    }
}

/// One confirmer's Ethereum node: the chain as of `lag_blocks` behind the tip.
#[derive(Debug, Clone)]
pub struct LaggingNode {
    pub l1: Arc<Mutex<L1>>,
    pub now_ms: Arc<AtomicU64>,
    pub lag_blocks: Arc<AtomicU64>,
}

#[async_trait]
impl DepositVerifier for LaggingNode {
    async fn check(&self, deposit: &Deposit) -> Result<DepositCheck, VerifierError> {
        let tip = L1::tip(self.now_ms.load(Ordering::SeqCst));
        let node_height = tip.saturating_sub(self.lag_blocks.load(Ordering::SeqCst));
        let needed = deposit.l1_height + DEPOSIT_DEPTH_BLOCKS - 1;
        let l1 = self.l1.lock().map_err(|_| VerifierError {
            chain: Chain::Ethereum,
            reason: "the simulated L1's lock is poisoned".into(),
        })?;
        let seen = l1.deposits.get(&deposit.l1_ref).filter(|d| d.l1_height <= node_height);
        Ok(match seen {
            Some(on_l1) if on_l1 == deposit && node_height >= needed => DepositCheck::Confirmed,
            Some(on_l1) if on_l1 == deposit => DepositCheck::NotYetDeep,
            _ if node_height < needed => DepositCheck::NodeBehind { node_height, needed },
            Some(_) => DepositCheck::NotOnL1 { reason: "L1 shows a different deposit there".into() },
            None => DepositCheck::NotOnL1 { reason: format!("no such deposit by block {node_height}") },
        })
    }
}
