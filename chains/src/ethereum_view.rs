//! The Ethereum vault as the solvency watch sees it: what it holds and what it has paid out for
//! each batch, both read at one block, so a payout is never seen half done (paid but still held,
//! or gone but not yet logged).
//!
//! A watchman behind the others compares its replay (as of batch `n`) with a vault that has
//! already paid withdrawals of batches after `n`; those payouts are the difference, not a
//! shortfall. [`VaultView::snapshot`] gives them, from the vault's `Withdrawn` events.
//!
//! The scan of those events is a place on the chain ([`PayoutScan`]) the role saves beside its
//! replay, so a restart reads only the blocks since, not every block since the vault's
//! deployment (issue 23), and one read makes at most [`MAX_REQUESTS_PER_READ`] log requests, so
//! a view far behind catches up over several turns instead of holding one for minutes.
//!
//! Hosted providers cap `eth_getLogs` ranges, many below [`LOG_RANGE`] (500 to 2,000 blocks is
//! common), and say so in words no two of them share. A refused request halves the range and
//! asks again; a run of answered ones doubles it back toward the configured width. A request
//! that got no answer at all (the node down) narrows nothing: the read fails and is retried. Without this
//! a watchman on such a provider failed every solvency check: its guard was off, silently.

use std::collections::BTreeMap;

use alloy::eips::BlockId;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use bridge::AssetId;
use contracts::{TestToken, Vault, from_alloy};

use crate::eth_finality::Confirmation;

/// Blocks per `eth_getLogs` request unless configured narrower: public nodes refuse wider
/// ranges (10,000 is the common cap).
pub const LOG_RANGE: u64 = 10_000;

/// `eth_getLogs` requests one read makes at most, refused ones included (a million blocks at
/// [`LOG_RANGE`], a few seconds through a local node): a view far behind (a first start on a
/// chain years long) answers [`VaultRead::NotYet`] and goes on at the next read, so the turn
/// that asked is not held for minutes and the place saved in between keeps what was read.
pub const MAX_REQUESTS_PER_READ: u64 = 100;

/// Answered requests in a row after which a halved range doubles again (toward the configured
/// width): a range halved by a passing outage comes back, and against a provider whose cap
/// lies between two widths one request in this many is refused, not one in two.
const GROW_AFTER: u32 = 16;

/// Where a view's payout scan starts when it has no saved place, and how wide its requests are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutScanConfig {
    /// The vault's deployment block (0: the chain's first block).
    pub from_block: u64,
    /// Blocks per `eth_getLogs` request at most: [`LOG_RANGE`], or the provider's cap.
    pub log_range: u64,
}

impl Default for PayoutScanConfig {
    fn default() -> Self {
        PayoutScanConfig { from_block: 0, log_range: LOG_RANGE }
    }
}

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

/// What one read of the vault gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultRead {
    /// The vault at one block.
    At(VaultSnapshot),
    /// No consistent read now, and why: the payout scan is still catching up (it goes on at the
    /// next read), or the node's final block is below blocks already scanned (a restart on a
    /// node still syncing, a backend that fell back). Not seen yet, not absent.
    NotYet(String),
}

/// Where a payout scan stands: what a restart resumes from instead of the vault's deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayoutScan {
    /// The first block not scanned yet.
    pub next_block: u64,
    /// Payouts for batches up to this one are not kept (the replay had reached it).
    pub pruned_through: u64,
    /// Every payout logged before `next_block` for a batch after `pruned_through`.
    pub paid: PaidByBatch,
}

/// The vault read at one block, as the solvency guard asks for it: the binary's [`VaultView`]
/// over JSON-RPC, the simulator's view of its in-process chain.
#[async_trait::async_trait]
pub trait VaultSnapshots: Send + Sync + std::fmt::Debug {
    /// The vault's holdings of ether and `tokens`, and its payouts for batches after `after`,
    /// all at one block; or why not now.
    async fn snapshot(&mut self, tokens: &[bridge::Address], after: u64) -> Result<VaultRead, String>;

    /// Where this view's payout scan stands, to be saved; `None`: it keeps no place (the
    /// simulator's view reads its whole chain each time).
    fn place(&self) -> Option<PayoutScan> {
        None
    }

    /// Goes on from a saved `place` instead of the start.
    fn resume(&mut self, _place: PayoutScan) {}
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
    /// Where a scan starts when it has no place to go on from, and the widest request.
    config: PayoutScanConfig,
    /// Blocks the next `eth_getLogs` request asks for: `config.log_range`, or less after the
    /// node refused a wider one.
    range: u64,
    /// Requests answered since the range last changed.
    answered: u32,
    /// How far the scan has read. Batches at or below the replay are dropped from its payouts
    /// as the replay advances, so it holds at most the batches a watchman lags the payers by.
    scan: PayoutScan,
}

impl VaultView {
    /// A view of `vault` through the node at `url` (http or https, trusting `tls`), reading the
    /// last block `confirmation` counts as final, scanning payouts as `config` says.
    pub fn connect(
        url: &str,
        tls: &crate::http::Tls,
        vault: bridge::Address,
        confirmation: Confirmation,
        config: PayoutScanConfig,
    ) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        let config = PayoutScanConfig { log_range: config.log_range.max(1), ..config };
        Ok(VaultView {
            provider,
            vault: contracts::to_alloy(vault),
            confirmation,
            config,
            range: config.log_range,
            answered: 0,
            scan: PayoutScan { next_block: config.from_block, ..PayoutScan::default() },
        })
    }

    /// Blocks the next `eth_getLogs` request asks for (less than configured after refusals).
    pub fn log_range(&self) -> u64 {
        self.range
    }

    /// The vault's payouts logged in blocks `from..=to`, in log order.
    async fn payouts_in(&self, from: u64, to: u64) -> Result<Vec<(u64, AssetId, u128)>, LogsError> {
        let filter = Filter::new()
            .address(self.vault)
            .event_signature(Vault::Withdrawn::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(LogsError::from_node)?;
        let mut read = Vec::new();
        for log in logs {
            if log.removed {
                continue;
            }
            let event = log
                .log_decode::<Vault::Withdrawn>()
                .map_err(|e| LogsError::Log(format!("a Withdrawn log: {e}")))?
                .inner
                .data;
            let asset =
                if event.token == Address::ZERO { AssetId::Eth } else { AssetId::Erc20(from_alloy(event.token)) };
            let amount = u128::try_from(event.amount)
                .map_err(|_| LogsError::Log(format!("payout {} above 2^128", event.amount)))?;
            read.push((event.batch, asset, amount));
        }
        Ok(read)
    }

    /// Reads the vault's `Withdrawn` logs from the scan's place up to `block`, at most
    /// [`MAX_REQUESTS_PER_READ`] requests; whether it got there.
    async fn scan_to(&mut self, block: u64, after: u64) -> Result<bool, String> {
        if after < self.scan.pruned_through {
            // Payouts for batches after `after` may have been dropped: only a scan from the
            // start has them all again. A replay does not go back, so this is a restore from an
            // older snapshot under a place saved later.
            tracing::warn!(
                after,
                pruned_through = self.scan.pruned_through,
                "the vault's payout scan had dropped batches this replay has not reached; scanning again from the start"
            );
            self.scan = PayoutScan { next_block: self.config.from_block, ..PayoutScan::default() };
        }
        for _ in 0..MAX_REQUESTS_PER_READ {
            if self.scan.next_block > block {
                break;
            }
            let to = block.min(self.scan.next_block.saturating_add(self.range - 1));
            // The whole range is read before anything of it is kept: an error leaves the place
            // where it was, and the next request asks for it (or its first half) again.
            let read = match self.payouts_in(self.scan.next_block, to).await {
                Ok(read) => read,
                Err(LogsError::Refused(why)) if self.range > 1 => {
                    // Most likely a range wider than the provider allows (or results it will
                    // not send in one answer); a narrower one costs requests, never payouts.
                    let wider = self.range;
                    self.range = wider / 2;
                    self.answered = 0;
                    tracing::warn!(
                        from = self.scan.next_block,
                        to,
                        was = wider,
                        now = self.range,
                        "the Ethereum node refused the vault's payout logs; asking for fewer blocks: {why}"
                    );
                    continue;
                }
                Err(LogsError::Refused(why) | LogsError::Unreachable(why)) => {
                    return Err(format!("the Ethereum node: {why}"));
                }
                Err(LogsError::Log(why)) => return Err(why),
            };
            self.answered = self.answered.saturating_add(1);
            if self.answered >= GROW_AFTER && self.range < self.config.log_range {
                self.range = self.range.saturating_mul(2).min(self.config.log_range);
                self.answered = 0;
            }
            for (batch, asset, amount) in read {
                let sum = self.scan.paid.entry(batch).or_default().entry(asset).or_insert(0);
                *sum = sum.saturating_add(amount);
            }
            self.scan.next_block = to + 1;
        }
        // Set at every read, so it is exported from the first check on (a recorder installed
        // after the view was made still sees it).
        metrics::gauge!("bridge_solvency_log_range_blocks").set(self.range as f64);
        // What the replay has reached is in its ledger already.
        self.scan.paid = self.scan.paid.split_off(&(after + 1));
        self.scan.pruned_through = after;
        Ok(self.scan.next_block > block)
    }
}

/// Why a request for the vault's logs gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    /// The node answered with an error (a JSON-RPC error, a 4xx status, a body it could not
    /// finish): a narrower range may pass.
    #[error("the Ethereum node refused the log range: {0}")]
    Refused(String),
    /// The node did not answer (no connection, a timeout, a 5xx from its gateway, a rate
    /// limit): the read fails and the next asks for the same range. Narrowing here would leave
    /// a watchman back from an outage crawling through its backlog a few blocks at a time.
    #[error("the Ethereum node did not answer: {0}")]
    Unreachable(String),
    /// A log that is not the vault's `Withdrawn` event as built: no range helps.
    #[error("the vault's log: {0}")]
    Log(String),
}

impl LogsError {
    pub fn from_node(error: alloy::transports::TransportError) -> LogsError {
        if refuses_range(&error) {
            LogsError::Refused(error.to_string())
        } else {
            LogsError::Unreachable(error.to_string())
        }
    }
}

/// Whether the node answered an `eth_getLogs` with a refusal (a JSON-RPC error, a 4xx status
/// other than 408 and 429, a body it could not finish), which a narrower range may pass, rather
/// than not answering (no connection, a timeout, a 5xx from its gateway, a rate limit), which
/// the same range is asked again after.
pub fn refuses_range(error: &alloy::transports::TransportError) -> bool {
    use alloy::transports::{RpcError, TransportErrorKind};
    match error {
        RpcError::ErrorResp(_) | RpcError::DeserError { .. } => true,
        RpcError::Transport(TransportErrorKind::HttpError(http)) => {
            (400..500).contains(&http.status) && !matches!(http.status, 408 | 429)
        }
        _ => false,
    }
}

#[async_trait::async_trait]
impl VaultSnapshots for VaultView {
    async fn snapshot(&mut self, tokens: &[bridge::Address], after: u64) -> Result<VaultRead, String> {
        let node = |e: alloy::transports::TransportError| format!("the Ethereum node: {e}");
        let block = self.confirmation.safe_height(&self.provider).await.map_err(node)?.safe.unwrap_or(0);
        if self.scan.next_block > block.saturating_add(1) {
            // Payouts read above `block` would be counted while its balance still holds them.
            return Ok(VaultRead::NotYet(format!(
                "the Ethereum node's final block {block} is below block {} the vault's payouts were read through; \
                 waiting for it",
                self.scan.next_block - 1
            )));
        }
        if !self.scan_to(block, after).await? {
            return Ok(VaultRead::NotYet(format!(
                "reading the vault's payouts: through block {} of {block}",
                self.scan.next_block.saturating_sub(1)
            )));
        }
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
        Ok(VaultRead::At(VaultSnapshot { block, held, paid_after: self.scan.paid.clone() }))
    }

    fn place(&self) -> Option<PayoutScan> {
        Some(self.scan.clone())
    }

    fn resume(&mut self, place: PayoutScan) {
        self.scan = place;
    }
}
