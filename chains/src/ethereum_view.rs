//! The Ethereum vault as the solvency watch sees it: what it holds and what it has paid out for
//! each batch, both read at one block, so a payout is never seen half done (paid but still held,
//! or gone but not yet logged).
//!
//! A watchman behind the others compares its replay (as of batch `n`) with a vault that has
//! already paid withdrawals of batches after `n`; those payouts are the difference, not a
//! shortfall. [`VaultView::snapshot`] gives them, from the vault's `Withdrawn` events.

use std::collections::BTreeMap;

use alloy::eips::BlockId;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use bridge::AssetId;
use contracts::{TestToken, Vault, from_alloy};

use crate::eth_finality::Confirmation;

/// Blocks per `eth_getLogs` request: public nodes refuse wider ranges (10,000 is the common cap).
const LOG_RANGE: u64 = 10_000;

/// What one asset's payouts sum to, by batch.
pub type PaidByBatch = BTreeMap<u64, BTreeMap<AssetId, u128>>;

/// The vault at one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSnapshot {
    /// The block read.
    pub block: u64,
    /// The vault's balance of ether and of each token asked for, at `block`.
    pub held: BTreeMap<AssetId, u128>,
    /// What the vault paid (its `Withdrawn` events up to `block`) for each batch after the one
    /// asked for.
    pub paid_after: PaidByBatch,
}

/// The vault read at one block, as the solvency guard asks for it: the binary's [`VaultView`]
/// over JSON-RPC, the simulator's view of its in-process chain.
#[async_trait::async_trait]
pub trait VaultSnapshots: Send + Sync + std::fmt::Debug {
    /// The vault's holdings of ether and `tokens`, and its payouts for batches after `after`,
    /// all at one block.
    async fn snapshot(&mut self, tokens: &[bridge::Address], after: u64) -> Result<VaultSnapshot, String>;
}

/// Reads the vault at the last final block (by the node's `finalized` tag or a depth below the
/// head, see [`Confirmation`]), remembering the payouts it has scanned so each check reads
/// only the blocks since the last one.
#[derive(Debug)]
pub struct VaultView {
    provider: DynProvider,
    vault: Address,
    /// Which block is read: a final one, so a reorg does not undo what was scanned.
    confirmation: Confirmation,
    /// The first block not yet scanned for `Withdrawn` events.
    next_block: u64,
    /// Payouts scanned, by batch; batches at or below the replay are dropped as it advances, so
    /// this holds at most the batches a watchman lags behind the payers.
    paid: PaidByBatch,
}

impl VaultView {
    /// A view of `vault` through the node at `url` (http or https, trusting `tls`), reading the
    /// last block `confirmation` counts as final, scanning payouts from `from_block` (the
    /// vault's deployment block, or 0).
    pub fn connect(
        url: &str,
        tls: &crate::http::Tls,
        vault: bridge::Address,
        confirmation: Confirmation,
        from_block: u64,
    ) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        Ok(VaultView {
            provider,
            vault: contracts::to_alloy(vault),
            confirmation,
            next_block: from_block,
            paid: BTreeMap::new(),
        })
    }
}

#[async_trait::async_trait]
impl VaultSnapshots for VaultView {
    async fn snapshot(&mut self, tokens: &[bridge::Address], after: u64) -> Result<VaultSnapshot, String> {
        let node = |e: alloy::transports::TransportError| format!("the Ethereum node: {e}");
        let block = self.confirmation.safe_height(&self.provider).await.map_err(node)?.safe.unwrap_or(0);
        while self.next_block <= block {
            let to = block.min(self.next_block.saturating_add(LOG_RANGE - 1));
            let filter = Filter::new()
                .address(self.vault)
                .event_signature(Vault::Withdrawn::SIGNATURE_HASH)
                .from_block(self.next_block)
                .to_block(to);
            for log in self.provider.get_logs(&filter).await.map_err(node)? {
                if log.removed {
                    continue;
                }
                let event =
                    log.log_decode::<Vault::Withdrawn>().map_err(|e| format!("a Withdrawn log: {e}"))?.inner.data;
                let asset =
                    if event.token == Address::ZERO { AssetId::Eth } else { AssetId::Erc20(from_alloy(event.token)) };
                let amount =
                    u128::try_from(event.amount).map_err(|_| format!("payout {} above 2^128", event.amount))?;
                let sum = self.paid.entry(event.batch).or_default().entry(asset).or_insert(0);
                *sum = sum.saturating_add(amount);
            }
            self.next_block = to + 1;
        }
        // What the replay has reached is in its ledger already.
        self.paid = self.paid.split_off(&(after + 1));
        let at = BlockId::number(block);
        let mut held = BTreeMap::new();
        let ether = self.provider.get_balance(self.vault).block_id(at).await.map_err(node)?;
        held.insert(
            AssetId::Eth,
            u128::try_from(ether).map_err(|_| "the vault's ether overflows 128 bits".to_string())?,
        );
        for token in tokens {
            let balance = TestToken::new(contracts::to_alloy(*token), self.provider.clone())
                .balanceOf(self.vault)
                .call()
                .block(at)
                .await
                .map_err(|e| format!("the Ethereum node: {e}"))?;
            let balance =
                u128::try_from(balance).map_err(|_| format!("the vault's {token} balance overflows 128 bits"))?;
            held.insert(AssetId::Erc20(*token), balance);
        }
        Ok(VaultSnapshot { block, held, paid_after: self.paid.clone() })
    }
}
