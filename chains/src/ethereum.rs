//! Ethereum: the vault's deposit watcher, the deposit verifier the confirmer uses, the
//! withdrawal submitter, and the vault's holdings. All through alloy, against any JSON-RPC node.
//!
//! Depth: a deposit in block `b` is handed on (and verified as `Confirmed`) once the head is at
//! least `b + depth`, that is once `depth` blocks sit on top of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use async_trait::async_trait;
use bridge::eth_settlement::EvmSchnorrSignature;
use bridge::withdrawals::EthWithdrawalTree;
use bridge::{Amount, AssetId, Chain, Deposit, L1Ref};
use contracts::{TestToken, Vault, from_alloy, vault_signature};
use tokio::sync::mpsc;

use crate::deposit::{DepositCheck, DepositVerifier, VerifierError};

pub mod fees;
mod guardian;
pub use fees::{FeeConfig, FeeDecision, FeeError, FeePolicy, Fees};
pub use guardian::Guardian;

pub use crate::eth_finality::{Confirmation, FinalityRule, FinalityStatus, FinalityWatch, SafeHeight};
use crate::http::Tls;

/// A vault `Deposited` log as the bridge's deposit: `log_in_tx` is the log's position among its
/// transaction's logs (its place in the receipt), `l1_height` the block it was seen in.
pub fn deposit_from_log(log: &Log, log_in_tx: u32, l1_height: u64) -> Result<Deposit, String> {
    let decoded = log.log_decode::<Vault::Deposited>().map_err(|e| format!("not a Deposited event: {e}"))?;
    let event = decoded.inner.data;
    let tx_hash = log.transaction_hash.ok_or("log without a transaction hash")?;
    let amount = u128::try_from(event.amount).map_err(|_| format!("amount {} above 2^128", event.amount))?;
    let asset = if event.token == Address::ZERO { AssetId::Eth } else { AssetId::Erc20(from_alloy(event.token)) };
    Ok(Deposit {
        chain: Chain::Ethereum,
        l1_ref: L1Ref::Ethereum { tx_hash: tx_hash.0, log_in_tx },
        account: from_alloy(event.account),
        asset,
        amount: Amount(amount),
        l1_height,
    })
}

/// Where `log` sits among its transaction's logs, from the transaction's receipt: the part of a
/// deposit's identity a reorg cannot change (the block-level index moves with the transaction).
pub fn position_in_receipt(receipt: &TransactionReceipt, log: &Log) -> Result<u32, String> {
    let position = receipt
        .inner
        .logs()
        .iter()
        .position(|l| l.log_index == log.log_index && l.block_hash == log.block_hash)
        .ok_or_else(|| format!("the receipt of {:?} does not hold log {:?}", log.transaction_hash, log.log_index))?;
    u32::try_from(position).map_err(|_| format!("log position {position} above 2^32"))
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the Ethereum node: {0}")]
    Rpc(String),
    #[error(
        "block {number} the watcher had already scanned at depth is no longer canonical: a reorg deeper \
         than the confirmation depth; deposits credited from it may be gone. Stopping: raise the depth and \
         investigate"
    )]
    DeepReorg { number: u64 },
    #[error("a vault log the watcher cannot read: {0}")]
    BadLog(String),
    #[error("the deposit channel is closed")]
    SinkClosed,
}

/// How many scanned block hashes the watcher keeps to notice a deep reorg.
const REMEMBERED_BLOCKS: usize = 128;

/// Reads the vault's deposits at depth and hands each to the coordinator once, in block order.
#[derive(Debug)]
pub struct DepositWatcher {
    provider: DynProvider,
    vault: Address,
    confirmation: Confirmation,
    finality: FinalityWatch,
    next_block: u64,
    scanned: VecDeque<(u64, B256)>,
    sink: mpsc::Sender<Deposit>,
}

impl DepositWatcher {
    /// Watches `vault` from `from_block` (the vault's deployment block, or where a previous run
    /// stopped: the coordinator's state refuses a deposit credited twice, so starting early is safe).
    pub fn new(
        provider: DynProvider,
        vault: Address,
        confirmation: Confirmation,
        from_block: u64,
        sink: mpsc::Sender<Deposit>,
    ) -> Self {
        DepositWatcher {
            provider,
            vault,
            confirmation,
            finality: FinalityWatch::new(confirmation),
            next_block: from_block,
            scanned: VecDeque::new(),
            sink,
        }
    }

    /// A watcher asking the JSON-RPC node at `url` (http or https, trusting `tls`) about the
    /// vault `vault`.
    pub fn connect(
        url: &str,
        tls: &Tls,
        vault: bridge::Address,
        confirmation: Confirmation,
        from_block: u64,
        sink: mpsc::Sender<Deposit>,
    ) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        Ok(DepositWatcher::new(provider, contracts::to_alloy(vault), confirmation, from_block, sink))
    }

    /// The watcher's last answer to "what is final", for `/status`.
    pub fn finality(&self) -> FinalityWatch {
        self.finality.clone()
    }

    /// The first block not yet scanned: where a restarted watcher resumes.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Scans every block that has newly become final (by the node's `finalized` tag or the
    /// depth, see [`Confirmation`]); returns the number of deposits handed on.
    pub async fn poll(&mut self) -> Result<usize, WatchError> {
        let rpc = |e: alloy::transports::TransportError| WatchError::Rpc(e.to_string());
        let seen = match self.confirmation.safe_height(&self.provider).await {
            Ok(seen) => seen,
            Err(error) => {
                self.finality.record_error(&error.to_string());
                return Err(rpc(error));
            }
        };
        self.finality.record(&seen);
        let Some(safe) = seen.safe else {
            return Ok(0);
        };
        // The last block scanned must still be canonical.
        if let Some(&(number, hash)) = self.scanned.back() {
            let block = self.provider.get_block_by_number(number.into()).await.map_err(rpc)?;
            if block.map(|b| b.header.hash) != Some(hash) {
                return Err(WatchError::DeepReorg { number });
            }
        }
        let mut handed = 0;
        while self.next_block <= safe {
            let number = self.next_block;
            let block = self
                .provider
                .get_block_by_number(number.into())
                .await
                .map_err(rpc)?
                .ok_or_else(|| WatchError::Rpc(format!("block {number} is missing")))?;
            if let Some(&(previous, hash)) = self.scanned.back()
                && previous + 1 == number
                && block.header.parent_hash != hash
            {
                return Err(WatchError::DeepReorg { number: previous });
            }
            // Logs by block hash (EIP-234): exactly this block's, even if a reorg happens meanwhile.
            let filter = Filter::new()
                .address(self.vault)
                .event_signature(Vault::Deposited::SIGNATURE_HASH)
                .at_block_hash(block.header.hash);
            let mut logs = self.provider.get_logs(&filter).await.map_err(rpc)?;
            logs.sort_by_key(|log| log.log_index);
            // The receipt of each deposit transaction, for the log's place within it (fetched
            // once per transaction: a block's deposits are bounded by its gas).
            let mut receipts: BTreeMap<B256, TransactionReceipt> = BTreeMap::new();
            for log in logs.iter().filter(|log| !log.removed) {
                let tx_hash =
                    log.transaction_hash.ok_or_else(|| WatchError::BadLog("log without a transaction hash".into()))?;
                let receipt = match receipts.entry(tx_hash) {
                    std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let receipt =
                            self.provider.get_transaction_receipt(tx_hash).await.map_err(rpc)?.ok_or_else(|| {
                                WatchError::Rpc(format!("no receipt for {tx_hash} in block {number}"))
                            })?;
                        if receipt.block_hash != Some(block.header.hash) {
                            // A reorg between the two questions: scan this block again next poll.
                            return Err(WatchError::Rpc(format!(
                                "{tx_hash} moved out of block {number} during the scan"
                            )));
                        }
                        slot.insert(receipt)
                    }
                };
                let position = position_in_receipt(receipt, log).map_err(WatchError::BadLog)?;
                let deposit = deposit_from_log(log, position, number).map_err(WatchError::BadLog)?;
                tracing::info!(block = number, rule = %seen.rule, ?deposit, "Ethereum deposit final");
                self.sink.send(deposit).await.map_err(|_| WatchError::SinkClosed)?;
                handed += 1;
            }
            self.scanned.push_back((number, block.header.hash));
            if self.scanned.len() > REMEMBERED_BLOCKS {
                self.scanned.pop_front();
            }
            self.next_block = number + 1;
        }
        Ok(handed)
    }
}

/// The confirmer's check of an Ethereum deposit: the receipt at `l1_ref` succeeded, the log at
/// that position of the transaction came from the vault, its block is canonical and final (by
/// the node's `finalized` tag or the depth, see [`Confirmation`]), and every field matches. A
/// missing receipt is an alarm only once this node counts the deposit's `l1_height` as final;
/// below that the node may simply lag ([`DepositCheck::NodeBehind`]).
#[derive(Debug, Clone)]
pub struct EthDepositVerifier {
    provider: DynProvider,
    vault: Address,
    confirmation: Confirmation,
    finality: FinalityWatch,
}

impl EthDepositVerifier {
    pub fn new(provider: DynProvider, vault: Address, confirmation: Confirmation) -> Self {
        EthDepositVerifier { provider, vault, confirmation, finality: FinalityWatch::new(confirmation) }
    }

    /// A verifier asking the JSON-RPC node at `url` (http or https, trusting `tls`) about the
    /// vault `vault`.
    pub fn connect(url: &str, tls: &Tls, vault: bridge::Address, confirmation: Confirmation) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        Ok(EthDepositVerifier::new(provider, contracts::to_alloy(vault), confirmation))
    }

    /// The verifier's last answer to "what is final", and a way to ask again, for `/status`.
    pub fn finality(&self) -> crate::eth_finality::FinalityProbe {
        crate::eth_finality::FinalityProbe::new(self.provider.clone(), self.confirmation, self.finality.clone())
    }

    async fn safe_height(&self) -> Result<SafeHeight, VerifierError> {
        match self.confirmation.safe_height(&self.provider).await {
            Ok(seen) => {
                self.finality.record(&seen);
                Ok(seen)
            }
            Err(error) => {
                self.finality.record_error(&error.to_string());
                Err(VerifierError { chain: Chain::Ethereum, reason: error.to_string() })
            }
        }
    }
}

fn not_on_l1(reason: impl Into<String>) -> Result<DepositCheck, VerifierError> {
    Ok(DepositCheck::NotOnL1 { reason: reason.into() })
}

#[async_trait]
impl DepositVerifier for EthDepositVerifier {
    async fn beyond_synced_tip(&self, needed: u64) -> Result<Option<u64>, VerifierError> {
        let rpc =
            |e: alloy::transports::TransportError| VerifierError { chain: Chain::Ethereum, reason: e.to_string() };
        if self.provider.syncing().await.map_err(rpc)? != alloy::rpc::types::SyncStatus::None {
            return Ok(None);
        }
        // `needed` is a head at which the fact would be final: the tip plus what finality
        // trails the head by now (the depth, or the distance to the finalized block).
        let seen = self.safe_height().await?;
        let bound = seen.head.saturating_add(seen.lag).saturating_add(crate::deposit::ETH_FUTURE_SLACK_BLOCKS);
        Ok((needed > bound).then_some(seen.head))
    }

    async fn check(&self, deposit: &Deposit) -> Result<DepositCheck, VerifierError> {
        let rpc =
            |e: alloy::transports::TransportError| VerifierError { chain: Chain::Ethereum, reason: e.to_string() };
        let L1Ref::Ethereum { tx_hash, log_in_tx } = deposit.l1_ref else {
            return not_on_l1("not an Ethereum reference");
        };
        if deposit.chain != Chain::Ethereum {
            return not_on_l1("an Ethereum reference on a deposit of another chain");
        }
        // What is final first: a receipt missing after it was read is missing at that point or
        // later.
        let seen = self.safe_height().await?;
        let head = seen.head;
        let Some(receipt) = self.provider.get_transaction_receipt(B256::from(tx_hash)).await.map_err(rpc)? else {
            if !seen.counts(deposit.l1_height) {
                // This node does not count the block the batch names as final yet: it cannot
                // know. `needed` is the head at which it would, at today's distance.
                let needed = deposit.l1_height.saturating_add(seen.lag);
                return Ok(DepositCheck::NodeBehind { node_height: head, needed });
            }
            return not_on_l1(format!(
                "no transaction 0x{} on L1 (never sent, or reorged out), though this node counts block {} as final \
                 ({} rule; head {head}, final up to {})",
                hex::encode(tx_hash),
                deposit.l1_height,
                seen.rule,
                seen.safe.unwrap_or_default()
            ));
        };
        if !receipt.status() {
            return not_on_l1("the transaction reverted");
        }
        let Some(log) = receipt.inner.logs().get(log_in_tx as usize) else {
            return not_on_l1(format!("the transaction has no log at position {log_in_tx}"));
        };
        if log.address() != self.vault {
            return not_on_l1(format!("the log came from {}, not the vault {}", log.address(), self.vault));
        }
        // The height is where the coordinator saw it, a hint for waiting: not compared.
        match deposit_from_log(log, log_in_tx, deposit.l1_height) {
            Ok(seen) if seen == *deposit => {}
            Ok(seen) => return not_on_l1(format!("L1 shows a different deposit: {seen:?}")),
            Err(reason) => return not_on_l1(reason),
        }
        let (Some(number), Some(hash)) = (receipt.block_number, receipt.block_hash) else {
            return Ok(DepositCheck::NotYetDeep);
        };
        let canonical = self.provider.get_block_by_number(number.into()).await.map_err(rpc)?;
        if canonical.map(|b| b.header.hash) != Some(hash) {
            return not_on_l1(format!("block {number} holding the deposit is no longer canonical"));
        }
        if !seen.counts(number) {
            return Ok(DepositCheck::NotYetDeep);
        }
        Ok(DepositCheck::Confirmed)
    }
}

/// The vault's balance of each asset: ether and the given ERC-20 tokens.
pub async fn vault_holdings(
    provider: &DynProvider,
    vault: Address,
    tokens: &[Address],
) -> Result<BTreeMap<AssetId, U256>, alloy::contract::Error> {
    let mut holdings = BTreeMap::new();
    holdings.insert(AssetId::Eth, provider.get_balance(vault).await?);
    for token in tokens {
        let balance = TestToken::new(*token, provider.clone()).balanceOf(vault).call().await?;
        holdings.insert(AssetId::Erc20(from_alloy(*token)), balance);
    }
    Ok(holdings)
}

/// [`vault_holdings`] by URL in the ledger's types: what the vault at `vault` holds of ether and
/// of each token, in base units.
pub async fn holdings_of(
    url: &str,
    tls: &Tls,
    vault: bridge::Address,
    tokens: &[bridge::Address],
) -> Result<BTreeMap<AssetId, u128>, String> {
    let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
    let tokens: Vec<Address> = tokens.iter().map(|t| contracts::to_alloy(*t)).collect();
    let held = vault_holdings(&provider, contracts::to_alloy(vault), &tokens)
        .await
        .map_err(|e| format!("the Ethereum node at {url}: {e}"))?;
    held.into_iter()
        .map(|(asset, amount)| {
            let amount =
                u128::try_from(amount).map_err(|_| format!("the vault's {asset} balance overflows 128 bits"))?;
            Ok((asset, amount))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the Ethereum node: {0}")]
    Rpc(String),
    #[error(
        "the vault's ranges end at batch {settled_through}, so a range starting at batch {first} {}: re-read the vault and propose again",
        if *first <= *settled_through { "overlaps one it holds" } else { "leaves a gap" }
    )]
    RangeConflict { first: u64, settled_through: u64 },
    #[error("the vault refused the call: {0:?}")]
    Refused(Box<Vault::VaultErrors>),
    #[error("the call reverted: {0}")]
    Reverted(String),
    /// Mined, and reverted: its gas was spent.
    #[error("{0} reverted on chain")]
    RevertedOnChain(String),
    #[error("transaction with nonce {nonce} not mined after {attempts} fee bumps")]
    Stuck { nonce: u64, attempts: u32 },
    #[error("the vault is paused by its guardian: nothing is sent until the watchmen unpause it (docs/OPERATIONS.md)")]
    Paused,
    #[error(
        "the call needs {needed} gas and a block holds {block_limit}: send fewer leaves per transaction (`max_per_tx`)"
    )]
    AboveBlockGasLimit { needed: u64, block_limit: u64 },
    #[error(
        "fees are above the ceiling: {} gwei per gas now, at most {} gwei configured (max_fee_per_gas_gwei); nothing was sent, it is retried when fees fall",
        gwei(*fee_per_gas),
        gwei(*ceiling)
    )]
    FeeAboveCeiling { fee_per_gas: u128, ceiling: u128 },
    #[error(transparent)]
    Fees(#[from] FeeError),
}

/// Wei per gas as gwei, for people.
pub fn gwei(wei: u128) -> f64 {
    // Display only: a fee is far below f64's exact range.
    wei as f64 / fees::GWEI as f64
}

impl From<alloy::contract::Error> for SubmitError {
    fn from(e: alloy::contract::Error) -> Self {
        match e.as_decoded_interface_error::<Vault::VaultErrors>() {
            Some(error) => SubmitError::Refused(Box::new(error)),
            None => SubmitError::Rpc(e.to_string()),
        }
    }
}

impl From<alloy::transports::TransportError> for SubmitError {
    fn from(e: alloy::transports::TransportError) -> Self {
        match e.as_error_resp().and_then(|r| r.as_revert_data()) {
            Some(data) => match <Vault::VaultErrors as alloy::sol_types::SolInterface>::abi_decode(&data) {
                Ok(error) => SubmitError::Refused(Box::new(error)),
                Err(_) => SubmitError::Reverted(format!("0x{}", hex::encode(&data))),
            },
            None => SubmitError::Rpc(e.to_string()),
        }
    }
}

/// A leaf by its batch and its index in that batch, as the vault names it.
pub type LeafKey = (u64, u32);

/// What [`Submitter::pay`] did.
#[derive(Debug, Default)]
pub struct Payment {
    /// One per `withdrawMany` transaction mined.
    pub receipts: Vec<TransactionReceipt>,
    /// Leaves the vault could not pay (`WithdrawalFailed`: the recipient refused ether or burnt
    /// its gas, or the token refused the transfer). They stay unpaid and payable by anyone with
    /// `withdraw`; the rest of their transaction was paid.
    pub failed: Vec<LeafKey>,
    /// Leaves left for later because their token's cap has no room for them now (the cap
    /// refills with time; paying them now would only revert).
    pub deferred: Vec<LeafKey>,
}

/// Where the vault's ranges stand: how many it holds, and the last batch they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VaultProgress {
    /// The next range's number.
    pub range_count: u64,
    /// The last batch covered by a range (0 before the first range): the next starts after it.
    pub settled_through: u64,
}

/// Reads where the vault's ranges stand, with no key: what a watchman that signs but does not
/// submit needs for its policy's gap and overlap checks.
#[derive(Debug, Clone)]
pub struct VaultReader(Vault::VaultInstance<DynProvider>);

impl VaultReader {
    pub fn connect(url: &str, tls: &Tls, vault: bridge::Address) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        Ok(VaultReader::new(provider, contracts::to_alloy(vault)))
    }

    pub fn new(provider: DynProvider, vault: Address) -> Self {
        VaultReader(Vault::new(vault, provider))
    }

    pub async fn progress(&self) -> Result<VaultProgress, SubmitError> {
        Ok(VaultProgress {
            range_count: self.0.rangeCount().call().await?,
            settled_through: self.0.settledThrough().call().await?,
        })
    }

    /// The node's latest block number.
    pub async fn block_number(&self) -> Result<u64, SubmitError> {
        Ok(self.0.provider().get_block_number().await?)
    }

    /// Range `number` as the vault holds it; `None` if it holds no such range yet.
    pub async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError> {
        let range = self.0.ranges(number).call().await?;
        Ok((range.root != B256::ZERO).then_some(OnchainRange {
            number,
            first: range.first,
            last: range.last,
            root: range.root.0,
        }))
    }

    /// The range covering `batch` (the vault's `rangeOf`), `None` while no range covers it.
    pub async fn range_of(&self, batch: u64) -> Result<Option<OnchainRange>, SubmitError> {
        let found = self.0.rangeOf(batch).call().await?;
        if !found.found {
            return Ok(None);
        }
        self.range(found.range).await
    }
}

/// One range the vault holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnchainRange {
    pub number: u64,
    pub first: u64,
    pub last: u64,
    pub root: [u8; 32],
}

/// What one more attempt at a leaf the vault could not pay did.
#[derive(Debug)]
pub enum Retry {
    /// Paid now, by this transaction.
    Paid(Box<TransactionReceipt>),
    /// Paid meanwhile (someone claimed it).
    AlreadyPaid,
    /// The recipient or the token still refuses; nothing was spent if the simulation said so.
    StillRefused,
}

/// Gas a `withdrawMany` leaf costs besides its transfer's `PAYOUT_GAS`, rounded well up: its
/// calldata and proof (a few thousand), the paid bit and the cap (cold stores, about 30,000),
/// and the call itself to a new account with value (about 37,000).
const LEAF_OVERHEAD_GAS: u64 = 100_000;

/// The leaves a `withdrawMany` receipt reports unpaid: `WithdrawalFailed` logs of the vault
/// only, since a recipient contract called during the payout can emit a look-alike event.
pub fn failed_leaves(receipt: &TransactionReceipt, vault: Address) -> Vec<LeafKey> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == vault)
        .filter_map(|log| log.log_decode::<Vault::WithdrawalFailed>().ok())
        .map(|log| (log.inner.data.batch, log.inner.data.index))
        .collect()
}

/// The vault function a call's input names, for metrics, logs and the devnet's tallies.
pub fn call_name(input: &[u8]) -> &'static str {
    match input.get(..4) {
        Some(selector) if selector == Vault::submitWithdrawalsCall::SELECTOR => "submitWithdrawals",
        Some(selector) if selector == Vault::withdrawManyCall::SELECTOR => "withdrawMany",
        Some(selector) if selector == Vault::submitAndWithdrawCall::SELECTOR => "submitAndWithdraw",
        Some(selector) if selector == Vault::withdrawCall::SELECTOR => "withdraw",
        _ => "other",
    }
}

/// Sends `submitWithdrawals` and `withdrawMany`. Idempotent: it reads the vault's roots and
/// bitmap first and sends only what is missing, so it can be rerun after a crash. Nonces come
/// from the account's confirmed transaction count, so a restart replaces (at a higher fee) a
/// transaction left pending rather than queueing behind it; a transaction not mined within
/// `confirm_timeout` is re-sent with the same nonce and 25% higher fees, up to `max_bumps` times.
/// Fees come from `eth_feeHistory` under the [`FeePolicy`]'s ceiling ([`fees`]): above it a call
/// is not sent ([`SubmitError::FeeAboveCeiling`]), and bumps stop at it.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// A provider with a wallet for `from`.
    provider: DynProvider,
    vault: Vault::VaultInstance<DynProvider>,
    from: Address,
    pub confirm_timeout: Duration,
    pub max_bumps: u32,
    /// Leaves paid per `withdrawMany` transaction (fewer when the block's gas limit says so).
    pub max_per_tx: usize,
    fees: FeePolicy,
    fee_bumps: Arc<AtomicU64>,
    /// The fee per gas (wei) of the pending block when last read, shared by clones.
    fee_per_gas: Arc<AtomicU64>,
    /// Held for a whole send, from reading the nonce until the transaction is mined or given
    /// up, and shared by clones: one account has one nonce sequence, so two sends from it
    /// (a watchman's settlement and its operator's admin call) must not read the same nonce
    /// and replace each other. A waiting send waits at most one send's bound:
    /// `confirm_timeout × (max_bumps + 1)`.
    sending: Arc<tokio::sync::Mutex<()>>,
}

impl Submitter {
    /// A submitter paying gas from the account of `key` (hex) through the node at `url`.
    pub fn connect(url: &str, tls: &Tls, key: &str, vault: bridge::Address) -> Result<Self, String> {
        let (provider, from) = signing_provider(url, tls, key)?;
        Ok(Submitter::new(provider, contracts::to_alloy(vault), from))
    }

    pub fn new(provider: DynProvider, vault: Address, from: Address) -> Self {
        Submitter {
            vault: Vault::new(vault, provider.clone()),
            provider,
            from,
            confirm_timeout: Duration::from_secs(60),
            max_bumps: 5,
            max_per_tx: 100,
            fees: FeePolicy::default(),
            fee_bumps: Arc::new(AtomicU64::new(0)),
            fee_per_gas: Arc::new(AtomicU64::new(0)),
            sending: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Prices transactions with `fees` instead of [`FeePolicy::default`].
    pub fn with_fees(mut self, fees: FeePolicy) -> Self {
        self.fees = fees;
        self
    }

    pub fn fee_policy(&self) -> &FeePolicy {
        &self.fees
    }

    /// What the network asks now under this submitter's policy, read with `eth_feeHistory`.
    pub async fn fee_decision(&self) -> Result<FeeDecision, SubmitError> {
        let history = fee_history(&self.provider, &self.fees).await?;
        let decision = fees::decide(&history, &self.fees)?;
        let fee_per_gas = match decision {
            FeeDecision::Send(fees) => fees.fee_per_gas,
            FeeDecision::Defer { fee_per_gas, .. } => fee_per_gas,
        };
        self.fee_per_gas.store(u64::try_from(fee_per_gas).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(decision)
    }

    /// The pending block's fee per gas (wei) when this submitter last read it; 0 before.
    pub fn last_fee_per_gas(&self) -> u64 {
        self.fee_per_gas.load(Ordering::Relaxed)
    }

    /// Whether the vault has paid leaf `index` of batch `batch`.
    pub async fn is_paid(&self, batch: u64, index: u32) -> Result<bool, SubmitError> {
        Ok(self.vault.isPaid(batch, index).call().await?)
    }

    /// The node's latest block number: turns between submitters are counted in blocks.
    pub async fn block_number(&self) -> Result<u64, SubmitError> {
        Ok(self.provider.get_block_number().await?)
    }

    /// How many ranges the vault holds and the last batch they cover.
    pub async fn progress(&self) -> Result<VaultProgress, SubmitError> {
        VaultReader(self.vault.clone()).progress().await
    }

    /// Range `number` as the vault holds it; `None` if it holds no such range yet.
    pub async fn range(&self, number: u64) -> Result<Option<OnchainRange>, SubmitError> {
        VaultReader(self.vault.clone()).range(number).await
    }

    /// Whether every leaf of `tree` is paid (read-only).
    pub async fn all_paid(&self, tree: &EthWithdrawalTree) -> Result<bool, SubmitError> {
        for w in tree.withdrawals() {
            if !self.vault.isPaid(w.batch, w.index).call().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Submits the root of batches `first..=last` with the group signature. `None` if the vault
    /// holds that very range already (another watchman submitted it); an error, with nothing
    /// sent, if the vault's ranges moved so that this one would overlap or leave a gap.
    pub async fn submit_range(
        &self,
        first: u64,
        last: u64,
        root: [u8; 32],
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<TransactionReceipt>, SubmitError> {
        if self.vault_holds_range(None, (first, last), root).await? {
            return Ok(None);
        }
        let call = Vault::submitWithdrawalsCall { first, last, root: B256::from(root), sig: vault_signature(sig) };
        self.send(call.abi_encode()).await.map(Some)
    }

    /// Submits the root of batches `first..=last` (range `range`, whose tree is `tree`) and pays
    /// its leaves in the same transaction (`submitAndWithdraw`), so a withdrawal is paid in its
    /// root's block; leaves beyond one transaction's worth follow in `withdrawMany`, and leaves
    /// over a token's cap wait (`payment.deferred`). `None`, with nothing sent, if the vault
    /// holds that very range already; an error, with nothing sent, if its ranges moved so that
    /// this one would overlap or leave a gap.
    pub async fn submit_and_pay(
        &self,
        range: u64,
        (first, last): (u64, u64),
        tree: &EthWithdrawalTree,
        sig: &EvmSchnorrSignature,
    ) -> Result<Option<Payment>, SubmitError> {
        let root = tree.root();
        if self.vault_holds_range(Some(range), (first, last), root).await? {
            return Ok(None);
        }
        let mut payment = Payment::default();
        let unpaid = self.payable(range, tree, &mut payment).await?;
        let per_tx = self.leaves_per_tx().await?;
        let (now, later) = unpaid.split_at(per_tx.min(unpaid.len()));
        let call = Vault::submitAndWithdrawCall {
            first,
            last,
            root: B256::from(root),
            sig: vault_signature(sig),
            payouts: contracts::payouts(tree, now.iter().copied()),
        };
        let receipt = self.send(call.abi_encode()).await?;
        self.note_paid(range, receipt, &mut payment);
        self.pay_positions(range, tree, later, per_tx, &mut payment).await?;
        Ok(Some(payment))
    }

    /// Pays every leaf of `tree` (range `range`'s tree) not yet paid, `max_per_tx` per
    /// transaction and never more than a block's gas limit can hold. A leaf the vault cannot pay
    /// does not revert its transaction: the vault reports it (`WithdrawalFailed`), it is listed
    /// in `failed`, and the rest are paid.
    pub async fn pay(&self, range: u64, tree: &EthWithdrawalTree) -> Result<Payment, SubmitError> {
        let mut payment = Payment::default();
        if tree.withdrawals().is_empty() {
            return Ok(payment);
        }
        // A paused vault refuses every payout; sending would only burn gas.
        if self.vault.paused().call().await? {
            return Err(SubmitError::Paused);
        }
        let unpaid = self.payable(range, tree, &mut payment).await?;
        if unpaid.is_empty() {
            return Ok(payment);
        }
        let per_tx = self.leaves_per_tx().await?;
        self.pay_positions(range, tree, &unpaid, per_tx, &mut payment).await?;
        Ok(payment)
    }

    /// Whether the vault holds the root of batches `first..=last` already (then nothing is to
    /// be sent); an error if its ranges moved so that this one (as range `range`, when given)
    /// would overlap or leave a gap, or if it is paused; `false` if it is to be submitted.
    async fn vault_holds_range(
        &self,
        range: Option<u64>,
        (first, last): (u64, u64),
        root: [u8; 32],
    ) -> Result<bool, SubmitError> {
        let progress = self.progress().await?;
        if progress.settled_through >= last
            && let Some(number) = progress.range_count.checked_sub(1)
            && let Some(held) = self.range(number).await?
            && (held.first, held.last, held.root) == (first, last, root)
        {
            return Ok(true);
        }
        if first != progress.settled_through + 1 || range.is_some_and(|range| range != progress.range_count) {
            return Err(SubmitError::RangeConflict { first, settled_through: progress.settled_through });
        }
        if self.vault.paused().call().await? {
            return Err(SubmitError::Paused);
        }
        Ok(false)
    }

    /// Leaves per payout transaction: `max_per_tx`, and never more than a block can hold.
    async fn leaves_per_tx(&self) -> Result<usize, SubmitError> {
        Ok(self.max_per_tx.max(1).min(self.leaves_per_block().await?))
    }

    /// Pays the leaves at `positions` in `tree` with `withdrawMany`, `per_tx` per transaction.
    async fn pay_positions(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        positions: &[u32],
        per_tx: usize,
        payment: &mut Payment,
    ) -> Result<(), SubmitError> {
        for chunk in positions.chunks(per_tx.max(1)) {
            let call = Vault::withdrawManyCall { range, payouts: contracts::payouts(tree, chunk.iter().copied()) };
            let receipt = self.send(call.abi_encode()).await?;
            self.note_paid(range, receipt, payment);
        }
        Ok(())
    }

    /// Adds a mined payout transaction, and the leaves it could not pay, to `payment`.
    fn note_paid(&self, range: u64, receipt: TransactionReceipt, payment: &mut Payment) {
        let failed = failed_leaves(&receipt, *self.vault.address());
        if !failed.is_empty() {
            tracing::warn!(range, ?failed, "the vault could not pay these leaves; the others are paid");
        }
        payment.failed.extend(failed);
        payment.receipts.push(receipt);
    }

    /// The positions in `tree` of the leaves not paid yet whose tokens' caps have room for them
    /// now; the others go to `payment.deferred`.
    async fn payable(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        payment: &mut Payment,
    ) -> Result<Vec<u32>, SubmitError> {
        // Each token's room under its cap now; leaves that do not fit wait for it to refill.
        let mut room: BTreeMap<Address, U256> = BTreeMap::new();
        let mut unpaid = Vec::new();
        for (position, w) in (0u32..).zip(tree.withdrawals()) {
            if self.vault.isPaid(w.batch, w.index).call().await? {
                continue;
            }
            let token = contracts::to_alloy(w.token);
            let available = match room.get_mut(&token) {
                Some(available) => available,
                None => room.entry(token).or_insert(self.vault.availableUnderCap(token).call().await?),
            };
            let amount = U256::from(w.amount.0);
            if amount <= *available {
                *available -= amount;
                unpaid.push(position);
            } else {
                payment.deferred.push((w.batch, w.index));
            }
        }
        if !payment.deferred.is_empty() {
            tracing::warn!(range, deferred = ?payment.deferred, "leaves over their token's cap wait for it to refill");
        }
        Ok(unpaid)
    }

    /// How many leaves one `withdrawMany` may carry so that even if every recipient burns all
    /// its `PAYOUT_GAS`, the transaction fits in three quarters of a block (the rest is margin
    /// for the estimate's 20% and the block's other users).
    async fn leaves_per_block(&self) -> Result<usize, SubmitError> {
        let stipend = u64::try_from(self.vault.PAYOUT_GAS().call().await?).unwrap_or(u64::MAX);
        let worst_leaf = stipend.saturating_add(LEAF_OVERHEAD_GAS);
        let block_limit = self.block_gas_limit().await?;
        let fits = (block_limit / 4 * 3) / worst_leaf.max(1);
        Ok(usize::try_from(fits).unwrap_or(usize::MAX).max(1))
    }

    async fn block_gas_limit(&self) -> Result<u64, SubmitError> {
        let block = self.provider.get_block_by_number(BlockNumberOrTag::Latest).await?;
        block.map(|b| b.header.gas_limit).ok_or_else(|| SubmitError::Rpc("the node has no latest block".into()))
    }

    /// Tries once more to pay leaf `index` of batch `batch` (held by range `range`, whose tree
    /// is `tree`), a leaf the vault could not pay before. `withdraw` is simulated first (free):
    /// if the recipient or the token still refuses, nothing is sent. Otherwise the leaf goes
    /// through `withdrawMany`, whose transfer is bounded by `PAYOUT_GAS`, so a retry never
    /// costs more than the first attempt did.
    pub async fn retry(
        &self,
        range: u64,
        tree: &EthWithdrawalTree,
        (batch, index): LeafKey,
    ) -> Result<Retry, SubmitError> {
        let Some(position) = tree.position(batch, index) else {
            return Err(SubmitError::Reverted(format!("range {range}'s tree has no leaf {index} of batch {batch}")));
        };
        let (Some(leaf), Some(proof)) = (tree.withdrawals().get(position as usize), tree.proof(position)) else {
            return Err(SubmitError::Reverted(format!("no proof for leaf {index} of batch {batch}")));
        };
        self.retry_proven(range, leaf, &proof).await
    }

    /// [`Submitter::retry`] with the leaf and its proof in range `range`'s tree, kept by the
    /// caller (the tree itself may be long gone from memory).
    pub async fn retry_proven(
        &self,
        range: u64,
        leaf: &bridge::withdrawals::EthWithdrawal,
        proof: &[[u8; 32]],
    ) -> Result<Retry, SubmitError> {
        let (batch, index) = (leaf.batch, leaf.index);
        if self.vault.isPaid(batch, index).call().await? {
            return Ok(Retry::AlreadyPaid);
        }
        if self.vault.paused().call().await? {
            return Err(SubmitError::Paused);
        }
        let p = Vault::Payout {
            batch,
            index,
            token: contracts::to_alloy(leaf.token),
            recipient: contracts::to_alloy(leaf.recipient),
            amount: U256::from(leaf.amount.0),
            proof: proof.iter().map(|node| contracts::b256(*node)).collect(),
        };
        let simulated = self
            .vault
            .withdraw(range, batch, index, p.token, p.recipient, p.amount, p.proof.clone())
            .from(self.from)
            .call()
            .await;
        match simulated.map_err(SubmitError::from) {
            Ok(_) => {}
            Err(SubmitError::Refused(error)) if matches!(*error, Vault::VaultErrors::WithdrawalRefused(_)) => {
                return Ok(Retry::StillRefused);
            }
            Err(SubmitError::Refused(error)) if matches!(*error, Vault::VaultErrors::AlreadyPaid(_)) => {
                return Ok(Retry::AlreadyPaid);
            }
            Err(other) => return Err(other),
        }
        let call = Vault::withdrawManyCall { range, payouts: vec![p] };
        let receipt = self.send(call.abi_encode()).await?;
        if failed_leaves(&receipt, *self.vault.address()).contains(&(batch, index)) {
            // It takes more than `PAYOUT_GAS` (the simulation forwarded all gas): only a
            // `withdraw` with more gas, sent by whoever wants it paid, can pay it.
            return Ok(Retry::StillRefused);
        }
        Ok(Retry::Paid(Box::new(receipt)))
    }

    /// Sends a call to the vault, managing the nonce and bumping the fee while it is not mined.
    /// One send at a time per submitter and its clones (see `sending`).
    pub(crate) async fn send(&self, input: Vec<u8>) -> Result<TransactionReceipt, SubmitError> {
        let call = call_name(&input);
        let _one_at_a_time = self.sending.lock().await;
        let sent = self.send_once(input).await;
        if let Err(SubmitError::RevertedOnChain(why)) = &sent {
            // Mined and reverted: its gas is spent for nothing (another submitter's transaction
            // got there first, or the vault's state moved between the simulation and the block).
            metrics::counter!("watchman_eth_submission_reverted_total", "call" => call).increment(1);
            tracing::warn!(call, %why, "a vault transaction reverted on chain");
        }
        sent
    }

    async fn send_once(&self, input: Vec<u8>) -> Result<TransactionReceipt, SubmitError> {
        let nonce = self.provider.get_transaction_count(self.from).latest().await?;
        let base = TransactionRequest::default().with_from(self.from).with_to(*self.vault.address()).with_input(input);
        // Simulating first turns a revert into its custom error instead of a spent fee.
        let gas = self.provider.estimate_gas(base.clone()).await?;
        // The limit never exceeds what a block can hold: a transaction above it would never be
        // mined, and its nonce would hold back every later payout.
        let block_limit = self.block_gas_limit().await?;
        if gas > block_limit {
            return Err(SubmitError::AboveBlockGasLimit { needed: gas, block_limit });
        }
        let gas_limit = (gas + gas / 5).min(block_limit);
        let mut fees = match self.fee_decision().await? {
            FeeDecision::Send(fees) => fees,
            FeeDecision::Defer { fee_per_gas, ceiling } => {
                return Err(SubmitError::FeeAboveCeiling { fee_per_gas, ceiling });
            }
        };
        // Every version of this transaction sent: any of them may be the one mined.
        let mut sent: Vec<B256> = Vec::new();
        for attempt in 0..=self.max_bumps {
            let tx = base
                .clone()
                .with_nonce(nonce)
                .with_gas_limit(gas_limit)
                .with_max_fee_per_gas(fees.max_fee_per_gas)
                .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
            match self.provider.send_transaction(tx).await {
                Ok(pending) => {
                    sent.push(*pending.tx_hash());
                    match pending.with_timeout(Some(self.confirm_timeout)).get_receipt().await {
                        Ok(receipt) => return Self::succeeded(receipt),
                        Err(error) => tracing::warn!(nonce, attempt, %error, "not mined in time; bumping the fee"),
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    if !(text.contains("underpriced")
                        || text.contains("already known")
                        || text.contains("nonce too low"))
                    {
                        return Err(error.into());
                    }
                    tracing::warn!(nonce, attempt, %text, "the node refused this version");
                }
            }
            if let Some(receipt) = self.mined(&sent).await? {
                return Self::succeeded(receipt);
            }
            if self.provider.get_transaction_count(self.from).latest().await? > nonce {
                // The nonce went to a transaction not sent here: the caller re-reads the vault.
                return Err(SubmitError::Rpc(format!("nonce {nonce} was used by another transaction")));
            }
            match fees::bumped(fees, self.fees.max_fee_per_gas) {
                Some(more) => {
                    fees = more;
                    self.fee_bumps.fetch_add(1, Ordering::Relaxed);
                }
                // At the ceiling already: if fees rose past it, stop and say so (the pending
                // version may still be mined; the caller re-reads the vault next turn).
                None => {
                    if let FeeDecision::Defer { fee_per_gas, ceiling } = self.fee_decision().await? {
                        return Err(SubmitError::FeeAboveCeiling { fee_per_gas, ceiling });
                    }
                    tracing::warn!(nonce, attempt, "not mined at the fee ceiling; waiting for it as it is");
                }
            }
        }
        Err(SubmitError::Stuck { nonce, attempts: self.max_bumps })
    }

    async fn mined(&self, sent: &[B256]) -> Result<Option<TransactionReceipt>, SubmitError> {
        for hash in sent {
            if let Some(receipt) = self.provider.get_transaction_receipt(*hash).await? {
                return Ok(Some(receipt));
            }
        }
        Ok(None)
    }

    fn succeeded(receipt: TransactionReceipt) -> Result<TransactionReceipt, SubmitError> {
        if receipt.status() {
            Ok(receipt)
        } else {
            Err(SubmitError::RevertedOnChain(format!("transaction {}", receipt.transaction_hash)))
        }
    }

    /// How many times a fee was bumped since this submitter was made (shared by its clones).
    pub fn fee_bumps(&self) -> u64 {
        self.fee_bumps.load(Ordering::Relaxed)
    }

    pub fn vault(&self) -> Address {
        *self.vault.address()
    }

    /// The vault's contract instance, for the admin calls (`crate::vault_admin`).
    pub(crate) fn vault_contract(&self) -> &Vault::VaultInstance<DynProvider> {
        &self.vault
    }
}

/// `eth_feeHistory` as [`fees::decide`] reads it.
pub async fn fee_history(
    provider: &DynProvider,
    policy: &FeePolicy,
) -> Result<alloy::rpc::types::FeeHistory, SubmitError> {
    let blocks = policy.history_blocks.clamp(1, fees::MAX_HISTORY_BLOCKS);
    let percentile = f64::from(policy.priority_fee_percentile);
    Ok(provider.get_fee_history(blocks, BlockNumberOrTag::Latest, &[percentile]).await?)
}

/// A provider that signs with `key` (a secp256k1 private key, hex) through the node at `url`
/// (http or https, trusting `tls`): what a watchman submits roots and payouts with, and a
/// guardian pauses with. Returns the provider and the key's address.
pub fn signing_provider(url: &str, tls: &Tls, key: &str) -> Result<(DynProvider, Address), String> {
    use alloy::network::EthereumWallet;
    use alloy::providers::ProviderBuilder;
    use alloy::signers::local::PrivateKeySigner;
    let signer: PrivateKeySigner =
        key.trim().parse().map_err(|_| "the Ethereum key is not a secp256k1 private key in hex".to_string())?;
    let address = signer.address();
    let provider = ProviderBuilder::default()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(crate::http::eth_rpc_client(url, tls).map_err(|e| e.to_string())?)
        .erased();
    Ok((provider, address))
}

/// Pauses the vault with the guardian's provider (see [`signing_provider`]): a watchman's answer
/// to an alarm. `None` if the vault is paused already.
///
/// A pause is priced from `eth_feeHistory` like everything the watchmen send, but never waits
/// for the ceiling: whoever can raise fees must not be able to hold it back. Its offer is still
/// bounded (the base fee's margin plus the capped tip).
pub async fn pause_vault(
    provider: &DynProvider,
    vault: bridge::Address,
    fee_policy: &FeePolicy,
) -> Result<Option<TransactionReceipt>, SubmitError> {
    let vault = Vault::new(contracts::to_alloy(vault), provider.clone());
    if vault.paused().call().await? {
        return Ok(None);
    }
    let offer = fees::offer(&fee_history(provider, fee_policy).await?, fee_policy)?;
    if offer.fee_per_gas > fee_policy.max_fee_per_gas {
        tracing::warn!(fee_gwei = gwei(offer.fee_per_gas), "pausing above the fee ceiling: a pause never waits");
    }
    let receipt = vault
        .pause()
        .max_fee_per_gas(offer.max_fee_per_gas)
        .max_priority_fee_per_gas(offer.max_priority_fee_per_gas)
        .send()
        .await?
        .get_receipt()
        .await
        .map_err(|e| SubmitError::Rpc(e.to_string()))?;
    if !receipt.status() {
        return Err(SubmitError::Reverted("pause()".into()));
    }
    Ok(Some(receipt))
}

/// The chain id of the node at `url` (the vault's EIP-712 and signature domain need it).
pub async fn chain_id(url: &str, tls: &Tls) -> Result<u64, String> {
    let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
    provider.get_chain_id().await.map_err(|e| format!("the Ethereum node at {url}: {e}"))
}

#[cfg(test)]
mod rpc_url_tests {
    use super::*;

    #[test]
    fn a_malformed_or_non_http_rpc_url_is_refused_at_start_up_and_https_is_taken() {
        let tls = Tls::default();
        let rule = Confirmation::Finalized { fallback_depth: 12 };
        let garbage = EthDepositVerifier::connect("not a url", &tls, bridge::Address::ZERO, rule).unwrap_err();
        assert!(garbage.contains("not a URL for the Ethereum RPC"), "{garbage}");
        let ws = EthDepositVerifier::connect("ws://127.0.0.1:8546", &tls, bridge::Address::ZERO, rule).unwrap_err();
        assert!(ws.contains("must be http or https, not ws"), "{ws}");
        assert!(EthDepositVerifier::connect("http://127.0.0.1:8545", &tls, bridge::Address::ZERO, rule).is_ok());
        assert!(EthDepositVerifier::connect("https://rpc.example", &tls, bridge::Address::ZERO, rule).is_ok());
    }
}
