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
