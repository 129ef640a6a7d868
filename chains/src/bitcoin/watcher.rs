//! The deposit watcher: follows the active chain through a [`BitcoinNode`] (Core's RPC in
//! production, the simulator's in-process chain) and credits every output
//! paying a watched account's deposit address (its [`DepositBook`] says whose) once its block
//! has `depth` confirmations, as a `bridge::Deposit` into the coordinator's deposit channel.
//!
//! It only reads blocks already at depth, in height order, each checked to build on the last one
//! it read, so a reorg shallower than `depth` never reaches it (what it would have credited is not
//! read yet) and a deeper one is reported as an error instead of being followed: a credited deposit
//! cannot be taken back. Each block is read once, so each output is handed on once per watcher
//! (nothing is kept per deposit: the watcher's memory does not grow with the deposits it has
//! seen), and the state refuses a repeated L1 reference anyway.

use ::bitcoin::hashes::Hash as _;
use ::bitcoin::key::XOnlyPublicKey;
use ::bitcoin::{Address, BlockHash, OutPoint, ScriptBuf};
use bridge::tx::{Deposit, L1Ref};
use bridge::{AssetId, BtcNetwork, Chain};
use tokio::sync::mpsc;

use super::book::{BookError, DepositBook, MemoryBook, Owner};
use super::node::BitcoinNode;
use super::rpc::RpcError;
use crate::deposit::ScanMark;

/// How the watcher follows the chain.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// Confirmations a block needs before its deposits are credited (1 = in the tip).
    pub depth: u32,
    /// First height to read: the vault's birth height (a restarted watcher resumes after its
    /// saved mark instead, [`DepositWatcher::resume`]).
    pub start_height: u64,
}

/// Why the watcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Talking to the node failed; nothing of the failed poll was credited past the last whole block.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The deposit book could not be read; nothing of the block was credited.
    #[error(transparent)]
    Book(#[from] BookError),
    /// A block whose deposits were already credited left the active chain.
    #[error(
        "block {height} was {credited} when its deposits were credited and is now {now}: a reorg deeper than the \
         configured depth ({depth}); stop and investigate, and configure a larger depth"
    )]
    ReorgBelowDepth {
        /// The height.
        height: u64,
        /// The block read then.
        credited: BlockHash,
        /// What the node has there now.
        now: BlockHash,
        /// The depth configured.
        depth: u32,
    },
    /// The deposit channel is closed: the coordinator stopped.
    #[error("the deposit channel is closed (the coordinator stopped); restart the watcher with the coordinator")]
    SinkClosed,
    /// `depth` must be at least 1.
    #[error("the deposit depth must be at least 1 confirmation")]
    ZeroDepth,
}

/// A deposit seen at depth, with the group key (`x(P)`) whose address it paid: after a key
/// rotation the ledger credits a deposit to an old key's address differently (a late deposit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedDeposit {
    pub deposit: Deposit,
    pub internal_key: [u8; 32],
    /// The lowest tip at which a transaction spending it is accepted: its own block for a plain
    /// output, 99 blocks above for a coinbase output (Bitcoin's coinbase maturity). A deposit
    /// credited before then could go into a payout the node refuses until it matures, holding
    /// up every withdrawal of that payout: a miner paying deposit addresses from its coinbase
    /// (a pool that pays its miners there) would otherwise delay payouts by up to 100 blocks.
    pub spendable_at: u64,
}

impl KeyedDeposit {
    /// Whether the vault can spend it once the tip is `tip`: credit it then, hold it before.
    pub fn spendable(&self, tip: u64) -> bool {
        tip >= self.spendable_at
    }
}

/// The Bitcoin deposit watcher, asking `B` whose address each output pays.
#[derive(Debug)]
pub struct DepositWatcher<B = MemoryBook> {
    rpc: std::sync::Arc<dyn BitcoinNode>,
    book: B,
    config: WatcherConfig,
    last: Option<(u64, BlockHash)>,
}

impl DepositWatcher<MemoryBook> {
    /// A watcher for the vault with `group_key` on `network`, its book in memory.
    pub fn new(
        rpc: std::sync::Arc<dyn BitcoinNode>,
        network: BtcNetwork,
        group_key: XOnlyPublicKey,
        config: WatcherConfig,
    ) -> Result<Self, WatchError> {
        Self::with_book(rpc, MemoryBook::new(network, group_key), config)
    }

    /// Watch `account`'s deposit address under every watched key ([`MemoryBook::watch`]).
    pub fn watch(&mut self, account: bridge::Address) -> Address {
        self.book.watch(account)
    }

    /// The group keys watched, oldest first.
    pub fn keys(&self) -> &[XOnlyPublicKey] {
        self.book.keys()
    }

    /// Also watch every account's address under `key` ([`MemoryBook::add_key`]).
    pub fn add_key(&mut self, key: XOnlyPublicKey) {
        self.book.add_key(key);
    }

    /// Stop watching the addresses of `key` ([`MemoryBook::drop_key`]).
    pub fn drop_key(&mut self, key: XOnlyPublicKey) {
        self.book.drop_key(key);
    }
}

impl<B> DepositWatcher<B> {
    /// A watcher whose book is `book`.
    pub fn with_book(rpc: std::sync::Arc<dyn BitcoinNode>, book: B, config: WatcherConfig) -> Result<Self, WatchError> {
        if config.depth == 0 {
            return Err(WatchError::ZeroDepth);
        }
        Ok(Self { rpc, book, config, last: None })
    }

    /// The book it reads.
    pub fn book(&self) -> &B {
        &self.book
    }

    /// Resumes after `mark`, the last block a predecessor read and whose deposits were all
    /// credited: the next poll first checks that the block is still on the node's chain.
    pub fn resume(&mut self, mark: ScanMark) {
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::WatcherStartsAtTip) {
            // Forgets its place, and so starts at the newest block at depth (`next_block`).
            return;
        }
        self.last = Some((mark.number, BlockHash::from_byte_array(mark.hash)));
    }

    /// The last block read: where a successor resumes once every deposit read is credited.
    pub fn mark(&self) -> Option<ScanMark> {
        self.last.map(|(number, hash)| ScanMark { number, hash: hash.to_byte_array() })
    }

    /// The next height to be read.
    pub fn next_height(&self) -> u64 {
        self.last.map_or(self.config.start_height, |(h, _)| h + 1)
    }

    /// The node's tip, after checking the last block read is still on its active chain.
    pub async fn checked_tip(&mut self) -> Result<u64, WatchError> {
        let tip = self.rpc.block_count().await?;
        if let Some((height, credited)) = self.last {
            // A node below the block (another node, still syncing, after a restart that resumed
            // from the saved mark) has not seen it yet, which is not a reorg: wait for it.
            if height > tip {
                return Ok(tip);
            }
            let now = self.rpc.block_hash(height).await?;
            if now != credited {
                return Err(WatchError::ReorgBelowDepth { height, credited, now, depth: self.config.depth });
            }
        }
        Ok(tip)
    }
}

impl<B: DepositBook> DepositWatcher<B> {
    /// Read every block that reached depth since the last poll and credit its deposits into
    /// `sink`, coinbase outputs not yet mature included (a caller that credits a ledger holds
    /// those, [`KeyedDeposit::spendable`]). Returns how many deposits were credited. For a
    /// watcher of more than one key use [`DepositWatcher::poll_keyed`], which says which key
    /// each deposit paid.
    pub async fn poll(&mut self, sink: &mpsc::Sender<Deposit>) -> Result<usize, WatchError> {
        let tip = self.checked_tip().await?;
        let mut count = 0;
        while let Some(deposits) = self.next_block(tip).await? {
            for KeyedDeposit { deposit, .. } in deposits {
                sink.send(deposit).await.map_err(|_| WatchError::SinkClosed)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// [`DepositWatcher::poll`], each deposit with the key whose address it paid.
    pub async fn poll_keyed(&mut self, sink: &mpsc::Sender<KeyedDeposit>) -> Result<usize, WatchError> {
        let tip = self.checked_tip().await?;
        let mut count = 0;
        while let Some(deposits) = self.next_block(tip).await? {
            for deposit in deposits {
                sink.send(deposit).await.map_err(|_| WatchError::SinkClosed)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Reads the next block if it has reached depth below `tip`, returning its deposits; `None`
    /// when no block is at depth yet. With [`DepositWatcher::checked_tip`], for a caller that
    /// routes each block's deposits itself.
    pub async fn next_block(&mut self, tip: u64) -> Result<Option<Vec<KeyedDeposit>>, WatchError> {
        #[cfg(feature = "planted-bugs")]
        if self.last.is_none() && bridge::planted::active(bridge::planted::PlantedBug::WatcherStartsAtTip) {
            let newest_at_depth = (tip + 1).saturating_sub(u64::from(self.config.depth));
            self.config.start_height = self.config.start_height.max(newest_at_depth);
        }
        if self.next_height() + u64::from(self.config.depth) > tip + 1 {
            return Ok(None);
        }
        let height = self.next_height();
        let hash = self.rpc.block_hash(height).await?;
        let block = self.rpc.block(&hash).await?;
        if let Some((_, parent)) = self.last
            && block.header.prev_blockhash != parent
        {
            return Err(WatchError::ReorgBelowDepth {
                height: height - 1,
                credited: parent,
                now: block.header.prev_blockhash,
                depth: self.config.depth,
            });
        }
        // Deposit addresses are Taproot outputs: only those are asked about.
        let taproot: Vec<ScriptBuf> = block
            .txdata
            .iter()
            .flat_map(|tx| tx.output.iter().map(|output| &output.script_pubkey))
            .filter(|script| script.is_p2tr())
            .cloned()
            .collect();
        let owners = if taproot.is_empty() { Default::default() } else { self.book.owners(&taproot).await? };
        let found = block.txdata.iter().flat_map(|tx| keyed_deposits(tx, height, &owners)).collect();
        self.last = Some((height, hash));
        Ok(Some(found))
    }
}

/// The deposits `tx`, mined at `height`, makes: each output whose script `owners` names, with
/// the key it paid and when the vault may spend it. The watcher's reading of every block, and
/// a claim's of one transaction its payer names.
pub fn keyed_deposits(
    tx: &::bitcoin::Transaction,
    height: u64,
    owners: &std::collections::BTreeMap<ScriptBuf, Owner>,
) -> Vec<KeyedDeposit> {
    let txid = tx.compute_txid();
    let spendable_at =
        if tx.is_coinbase() { height + u64::from(::bitcoin::constants::COINBASE_MATURITY) - 1 } else { height };
    let mut found = Vec::new();
    for (vout, output) in tx.output.iter().enumerate() {
        let Some(Owner { account, key }) = owners.get(&output.script_pubkey) else { continue };
        let outpoint = OutPoint { txid, vout: vout as u32 };
        let deposit = Deposit {
            chain: Chain::Bitcoin,
            l1_ref: L1Ref::Bitcoin { txid: txid.to_raw_hash().to_byte_array(), vout: outpoint.vout },
            account: *account,
            asset: AssetId::Btc,
            amount: bridge::Amount(u128::from(output.value.to_sat())),
            l1_height: height,
        };
        tracing::info!(%outpoint, %account, sat = output.value.to_sat(), height, "bitcoin deposit at depth");
        found.push(KeyedDeposit { deposit, internal_key: key.serialize(), spendable_at });
    }
    found
}
