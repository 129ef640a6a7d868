//! Deposits: the vault's `Deposited` logs watched to depth and handed to the coordinator, and
//! the confirmer's check of a batch's deposit against its own node.

use super::*;

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
}

/// How many scanned block hashes the watcher keeps to notice a deep reorg.
const REMEMBERED_BLOCKS: usize = 128;

/// Blocks one poll scans at most (two or three requests each): a watcher far behind (after a
/// long downtime, or on its first start at the vault's deployment) catches up over several
/// turns, each handing its deposits on and saving its place, rather than in one turn that
/// grows with the chain's history.
pub const MAX_BLOCKS_PER_POLL: u64 = 1_000;

/// What one poll found: the deposits of the blocks it scanned, in block and log order, and the
/// mark of the last of them (`None` when no block became final since the last poll).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub deposits: Vec<Deposit>,
    pub through: Option<ScanMark>,
}

/// Reads the vault's deposits at depth, in block order, and returns each once. Handing them to
/// the ledger, and saving the mark after them, is the caller's (the coordinator's
/// `EthDepositTask`): a poll changes nothing outside the watcher.
#[derive(Debug)]
pub struct DepositWatcher {
    provider: DynProvider,
    vault: Address,
    confirmation: Confirmation,
    finality: FinalityWatch,
    next_block: u64,
    scanned: VecDeque<(u64, B256)>,
}

impl DepositWatcher {
    /// Watches `vault` from `from_block` (the vault's deployment block, or earlier: the
    /// coordinator's state refuses a deposit credited twice, so starting early is safe).
    pub fn new(provider: DynProvider, vault: Address, confirmation: Confirmation, from_block: u64) -> Self {
        DepositWatcher {
            provider,
            vault,
            confirmation,
            finality: FinalityWatch::new(confirmation),
            next_block: from_block,
            scanned: VecDeque::new(),
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
    ) -> Result<Self, String> {
        let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
        Ok(DepositWatcher::new(provider, contracts::to_alloy(vault), confirmation, from_block))
    }

    /// Resumes after `mark`, a block this watcher's predecessor scanned and whose deposits were
    /// all credited: the next poll first checks that the block is still canonical.
    pub fn resume(mut self, mark: ScanMark) -> Self {
        self.next_block = mark.number + 1;
        self.scanned = VecDeque::from([(mark.number, B256::from(mark.hash))]);
        self
    }

    /// The watcher's last answer to "what is final", for `/status`.
    pub fn finality(&self) -> FinalityWatch {
        self.finality.clone()
    }

    /// The first block not yet scanned: where a restarted watcher resumes.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Scans the blocks that have newly become final (by the node's `finalized` tag or the
    /// depth, see [`Confirmation`]), at most [`MAX_BLOCKS_PER_POLL`] of them. On an error the
    /// watcher stays where it was: the next poll scans the same blocks again.
    pub async fn poll(&mut self) -> Result<Scanned, WatchError> {
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
            return Ok(Scanned::default());
        };
        // The last block scanned must still be canonical. A node whose final block is below it
        // (another node, still syncing, after a restart that resumed from the saved mark) has
        // not seen it yet, which is not a reorg: wait for it.
        if let Some(&(number, hash)) = self.scanned.back() {
            if number > safe {
                return Ok(Scanned::default());
            }
            let block = self.provider.get_block_by_number(number.into()).await.map_err(rpc)?;
            if block.map(|b| b.header.hash) != Some(hash) {
                return Err(WatchError::DeepReorg { number });
            }
        }
        let mut deposits = Vec::new();
        let mut newly: Vec<(u64, B256)> = Vec::new();
        let end = safe.min(self.next_block.saturating_add(MAX_BLOCKS_PER_POLL - 1));
        for number in self.next_block..=end {
            let block = self
                .provider
                .get_block_by_number(number.into())
                .await
                .map_err(rpc)?
                .ok_or_else(|| WatchError::Rpc(format!("block {number} is missing")))?;
            if let Some(&(previous, hash)) = newly.last().or(self.scanned.back())
                && previous + 1 == number
                && block.header.parent_hash != hash
            {
                return Err(WatchError::DeepReorg { number: previous });
            }
            for deposit in self.block_deposits(number, block.header.hash).await? {
                tracing::info!(block = number, rule = %seen.rule, ?deposit, "Ethereum deposit final");
                deposits.push(deposit);
            }
            newly.push((number, block.header.hash));
        }
        // The whole range was read: only now does the watcher move past it.
        let through = newly.last().map(|&(number, hash)| ScanMark { number, hash: hash.0 });
        if let Some(mark) = through {
            self.next_block = mark.number + 1;
        }
        for block in newly {
            self.scanned.push_back(block);
            if self.scanned.len() > REMEMBERED_BLOCKS {
                self.scanned.pop_front();
            }
        }
        Ok(Scanned { deposits, through })
    }

    /// The vault's deposits in block `number` (hash `hash`), in log order.
    async fn block_deposits(&self, number: u64, hash: B256) -> Result<Vec<Deposit>, WatchError> {
        let rpc = |e: alloy::transports::TransportError| WatchError::Rpc(e.to_string());
        // Logs by block hash (EIP-234): exactly this block's, even if a reorg happens meanwhile.
        let filter =
            Filter::new().address(self.vault).event_signature(Vault::Deposited::SIGNATURE_HASH).at_block_hash(hash);
        let mut logs = self.provider.get_logs(&filter).await.map_err(rpc)?;
        logs.sort_by_key(|log| log.log_index);
        // The receipt of each deposit transaction, for the log's place within it (fetched once
        // per transaction: a block's deposits are bounded by its gas).
        let mut receipts: BTreeMap<B256, TransactionReceipt> = BTreeMap::new();
        let mut deposits = Vec::new();
        for log in logs.iter().filter(|log| !log.removed) {
            let tx_hash =
                log.transaction_hash.ok_or_else(|| WatchError::BadLog("log without a transaction hash".into()))?;
            let receipt = match receipts.entry(tx_hash) {
                std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let receipt = self
                        .provider
                        .get_transaction_receipt(tx_hash)
                        .await
                        .map_err(rpc)?
                        .ok_or_else(|| WatchError::Rpc(format!("no receipt for {tx_hash} in block {number}")))?;
                    if receipt.block_hash != Some(hash) {
                        // A reorg between the two questions: scan this block again next poll.
                        return Err(WatchError::Rpc(format!("{tx_hash} moved out of block {number} during the scan")));
                    }
                    slot.insert(receipt)
                }
            };
            let position = position_in_receipt(receipt, log).map_err(WatchError::BadLog)?;
            deposits.push(deposit_from_log(log, position, number).map_err(WatchError::BadLog)?);
        }
        Ok(deposits)
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
