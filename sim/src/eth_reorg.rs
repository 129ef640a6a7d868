//! Ethereum reorgs of the in-process vault ([`crate::evm`]). The chain's state is kept at the
//! end of each of the last [`KEPT_BLOCKS`] blocks; a reorg returns to one of them. The users'
//! deposits of the dropped blocks come back (their senders' transactions are included again),
//! the vault submissions do not (their submitter must notice and send again), so a reorg undoes
//! ranges the vault took and leaves it paid.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use revm::database::InMemoryDB;

use crate::eth_chain::{PaidLeaf, SimVault};
use crate::l1::L1;
use crate::world::World;

/// Blocks whose end state is kept: deeper than any reorg simulated.
pub(crate) const KEPT_BLOCKS: usize = 32;
/// The deepest reorg simulated, in blocks.
pub(crate) const MAX_REORG_BLOCKS: u64 = 12;

/// The state at a block's end: the EVM's, and the simulator's record of what the vault did.
pub(crate) struct EthCheckpoint {
    block: u64,
    /// Deposits made before it was taken (its state holds them).
    deposits_before: u64,
    db: InMemoryDB,
    vault: SimVault,
    paid_at: BTreeMap<(u64, u32), PaidLeaf>,
    paid: BTreeSet<(u64, u32)>,
    paid_wei: u128,
    /// When the vault was paused, if it was by then.
    paused_at: Option<u64>,
}

/// The chain's recent past.
#[derive(Default)]
pub(crate) struct EthHistory {
    checkpoints: VecDeque<EthCheckpoint>,
    /// Deposits of the kept blocks (their number in the run's order, to whom, wei), to
    /// include again after a reorg.
    deposits: VecDeque<(u64, bridge::Address, u128)>,
    /// Deposits made so far.
    deposit_count: u64,
}

impl EthHistory {
    pub(crate) fn record_deposit(&mut self, account: bridge::Address, wei: u128) {
        self.deposits.push_back((self.deposit_count, account, wei));
        self.deposit_count += 1;
    }
}

impl World {
    /// At each new block: its end state is kept; during the fault phase, sometimes a reorg.
    pub(crate) fn ethereum_block(&mut self) {
        let block = L1::tip(self.now());
        if self.eth_history.checkpoints.back().is_some_and(|c| c.block >= block) {
            return;
        }
        // The block mines what waited for it, then its end state is kept.
        self.mine_ethereum();
        let Some(db) = self.evm.as_ref().map(|vault| vault.snapshot()) else { return };
        let chain = self.eth_chain();
        let (vault, paid_at, paused_at) = (chain.vault.clone(), chain.paid_at.clone(), chain.paused_at);
        drop(chain);
        let checkpoint = EthCheckpoint {
            block,
            deposits_before: self.eth_history.deposit_count,
            db,
            vault,
            paid_at,
            paid: self.paid.clone(),
            paid_wei: self.paid_wei,
            paused_at,
        };
        self.eth_history.checkpoints.push_back(checkpoint);
        while self.eth_history.checkpoints.len() > KEPT_BLOCKS {
            self.eth_history.checkpoints.pop_front();
        }
        let oldest = self.eth_history.checkpoints.front().map_or(0, |c| c.deposits_before);
        while self.eth_history.deposits.front().is_some_and(|(number, _, _)| *number < oldest) {
            self.eth_history.deposits.pop_front();
        }
        if self.in_fault_phase() && self.rng.chance(15_000) {
            let depth = self.rng.between(1, MAX_REORG_BLOCKS);
            self.reorg_ethereum(depth);
        }
    }

    /// Returns the chain to the end of the block `depth` blocks back.
    fn reorg_ethereum(&mut self, depth: u64) {
        let kept = self.eth_history.checkpoints.len();
        let Ok(back) = usize::try_from(depth) else { return };
        if back >= kept {
            return;
        }
        self.eth_history.checkpoints.truncate(kept - back);
        let Some(checkpoint) = self.eth_history.checkpoints.back() else { return };
        let (db, vault, paid_at, paid, paid_wei, deposits_before, paused_at) = (
            checkpoint.db.clone(),
            checkpoint.vault.clone(),
            checkpoint.paid_at.clone(),
            checkpoint.paid.clone(),
            checkpoint.paid_wei,
            checkpoint.deposits_before,
            checkpoint.paused_at,
        );
        let before = self.eth_chain().vault.settled_through();
        let undone = self.paid.len().saturating_sub(paid.len());
        let redeposit: Vec<(bridge::Address, u128)> = self
            .eth_history
            .deposits
            .iter()
            .filter(|(number, _, _)| *number >= deposits_before)
            .map(|(_, a, w)| (*a, *w))
            .collect();
        let Some(eth) = self.evm.as_mut() else { return };
        eth.restore(db);
        let mut refused = None;
        for (account, wei) in &redeposit {
            if let Err(error) = eth.deposit(*account, *wei) {
                refused = Some(error);
            }
        }
        let mut chain = self.eth_chain();
        chain.vault = vault;
        chain.paid_at = paid_at;
        let unpaused = chain.paused_at.is_some() && paused_at.is_none();
        chain.paused_at = paused_at;
        let after = chain.vault.settled_through();
        drop(chain);
        self.paid = paid;
        self.paid_wei = paid_wei;
        self.faults += 1;
        self.log(format!(
            "FAULT Ethereum reorg drops {depth} blocks: the vault's ranges end at {after} again (were at {before}), {undone} payouts undone, {} deposits included again",
            redeposit.len()
        ));
        if unpaused {
            self.log("the reorg drops the guardian's pause: the vault is not paused");
        }
        if let Some(error) = refused {
            self.violate("vault-deposit", format!("the vault refused a deposit included again: {error}"));
        }
    }
}
