//! The node: Bitcoin Core's kernel (`ChainstateManager`, regtest) validating and connecting every
//! block, the index derived from the kernel's active chain, the mempool, and mining.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, Block, BlockHash, ScriptBuf, Transaction, Txid};
use bitcoinkernel::prelude::*;
use bitcoinkernel::{BlockValidationStateRef, ChainType, ChainstateManager, Context, ContextBuilder, ValidationMode};

use crate::error::{NodeError, Reject};
use crate::index::{ChainIndex, IndexedBlock};
use crate::mempool::{Admission, Mempool};
use crate::mining;

/// The kernel's verdict on a block it checked (its `BlockChecked` notification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and connected.
    Valid,
    /// Invalid; the kernel reports only the category (e.g. `Consensus`, `Mutated`).
    Invalid(String),
}

/// What `submitblock` answers, as Core's BIP-22 results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// Accepted and connected (Core answers `null`).
    Accepted,
    /// Already known.
    Duplicate,
    /// Stored but not connected, e.g. on a branch with less work (Core's `inconclusive`).
    Inconclusive,
    /// Refused, with the reason.
    Rejected(String),
}

type Verdicts = Arc<Mutex<HashMap<[u8; 32], Verdict>>>;

/// Where the node reads the time, in seconds since the Unix epoch: block timestamps and mempool
/// admission. [`unix_now`] for a node next to real services; a fixed or stepped clock where the
/// same script must mine the same blocks (the simulator, determinism tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The chain state: field order matters, the chainstate manager is dropped before its context.
struct State {
    chainman: ChainstateManager,
    _context: Context,
    verdicts: Verdicts,
    index: ChainIndex,
    mempool: Mempool,
    extra_nonce: u64,
    clock: Clock,
    _dir: Option<tempfile::TempDir>,
}

/// A regtest node. Every method takes the node's lock and runs the kernel synchronously, so call
/// it from blocking code (the RPC server uses `spawn_blocking`).
pub struct Node {
    state: Mutex<State>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

/// A read-only look at the node's chain and mempool, under its lock.
pub struct View<'a> {
    guard: MutexGuard<'a, State>,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("height", &self.guard.index.height()).finish_non_exhaustive()
    }
}

/// A block known to the kernel, on the active chain or not.
#[derive(Debug, Clone)]
pub struct KnownBlock {
    /// The block.
    pub block: Block,
    /// Its height.
    pub height: u32,
    /// Whether it is on the active chain.
    pub active: bool,
}

impl View<'_> {
    /// The active chain as indexed.
    pub fn index(&self) -> &ChainIndex {
        &self.guard.index
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.guard.mempool
    }

    /// Median time past ending at a block the kernel knows (its timestamp's lower bound for children).
    pub fn median_time(&self, hash: &BlockHash) -> Result<u32, NodeError> {
        let kernel_hash = bitcoinkernel::BlockHash::from(hash.to_byte_array());
        let entry =
            self.guard.chainman.get_block_tree_entry(&kernel_hash).ok_or(NodeError::UnknownBlock(hash.to_string()))?;
        Ok(median_time_past(entry))
    }

    /// A block by hash from the kernel's block tree (any branch), read from its block files.
    pub fn block(&self, hash: &BlockHash) -> Result<Option<KnownBlock>, NodeError> {
        let state = &self.guard;
        let height = state.index.height_of(hash);
        if let Some(h) = height
            && let Some(indexed) = state.index.at(h)
        {
            return Ok(Some(KnownBlock { block: indexed.block.clone(), height: h, active: true }));
        }
        let kernel_hash = bitcoinkernel::BlockHash::from(hash.to_byte_array());
        let Some(entry) = state.chainman.get_block_tree_entry(&kernel_hash) else {
            return Ok(None);
        };
        let Ok(raw) = state.chainman.read_block_data(&entry) else {
            // Known header without block data.
            return Ok(None);
        };
        let block = decode_block(&raw)?;
        Ok(Some(KnownBlock { block, height: entry.height().max(0) as u32, active: false }))
    }
}

impl Node {
    /// Start a regtest chainstate in `data_dir` (a fresh temporary directory when `None`). The
    /// kernel's databases are in memory; its block files live in the directory. Time is the
    /// system's ([`unix_now`]).
    pub fn new(data_dir: Option<PathBuf>) -> Result<Self, NodeError> {
        Self::with_clock(data_dir, Arc::new(unix_now))
    }

    /// As [`Node::new`], reading the time from `clock` (seconds since the Unix epoch) for block
    /// timestamps and mempool admission, so a caller that fixes the clock gets the same blocks
    /// (and hashes) for the same script on every run.
    pub fn with_clock(data_dir: Option<PathBuf>, clock: Clock) -> Result<Self, NodeError> {
        let (dir, path) = match data_dir {
            Some(path) => (None, path),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("bitcoin-regtest-")
                    .tempdir()
                    .map_err(|source| NodeError::Io { context: "creating a data directory".into(), source })?;
                let path = dir.path().to_path_buf();
                (Some(dir), path)
            }
        };
        let blocks = path.join("blocks");
        let verdicts: Verdicts = Arc::default();
        let sink = verdicts.clone();
        let context = ContextBuilder::new()
            .chain_type(ChainType::Regtest)
            .with_block_checked_validation(move |block: bitcoinkernel::Block, state: BlockValidationStateRef<'_>| {
                let verdict = if state.mode() == ValidationMode::Valid {
                    Verdict::Valid
                } else {
                    Verdict::Invalid(format!("{:?}", state.result()).to_lowercase())
                };
                if let Ok(mut v) = sink.lock() {
                    v.insert(block.hash().to_bytes(), verdict);
                }
            })
            .build()?;
        let path_str = |p: &std::path::Path| {
            p.to_str().map(str::to_owned).ok_or_else(|| NodeError::Kernel(format!("path {} is not UTF-8", p.display())))
        };
        let chainman = ChainstateManager::builder(&context, &path_str(&path)?, &path_str(&blocks)?)?
            .block_tree_db_in_memory(true)
            .chainstate_db_in_memory(true)
            .build()?;
        // Building the chainstate manager loads regtest's genesis block.
        if chainman.active_chain().height() < 0 {
            return Err(NodeError::Kernel("the kernel started without the regtest genesis block".into()));
        }
        let mut state = State {
            chainman,
            _context: context,
            verdicts,
            index: ChainIndex::default(),
            mempool: Mempool::default(),
            extra_nonce: 0,
            clock,
            _dir: dir,
        };
        state.sync()?;
        Ok(Self { state: Mutex::new(state) })
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, NodeError> {
        self.state.lock().map_err(|_| NodeError::Poisoned)
    }

    /// A consistent view of the chain and mempool.
    pub fn view(&self) -> Result<View<'_>, NodeError> {
        Ok(View { guard: self.lock()? })
    }

    /// Height of the active chain's tip.
    pub fn height(&self) -> Result<u32, NodeError> {
        Ok(self.lock()?.index.height())
    }

    /// Hash of the active-chain block at `height`.
    pub fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, NodeError> {
        Ok(self.lock()?.index.at(height).map(|b| b.hash))
    }

    /// Mine `count` blocks on the tip paying `script`, each holding the mempool's transactions.
    pub fn mine(&self, count: u32, script: &ScriptBuf) -> Result<Vec<BlockHash>, NodeError> {
        let mut state = self.lock()?;
        let mut hashes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let tip = state.index.tip().map(|t| t.hash).ok_or_else(|| NodeError::Index("no genesis".into()))?;
            let txs: Vec<(Transaction, Amount)> =
                state.mempool.entries().iter().map(|e| (e.tx.clone(), e.fee)).collect();
            let block = state.assemble(tip, script, &txs)?;
            let hash = block.block_hash();
            match state.submit(&block)? {
                Submission::Accepted => {}
                other => {
                    return Err(NodeError::BlockRejected { hash: hash.to_string(), reason: format!("{other:?}") });
                }
            }
            if state.index.tip().map(|t| t.hash) != Some(hash) {
                return Err(NodeError::BlockRejected { hash: hash.to_string(), reason: "not connected".into() });
            }
            hashes.push(hash);
        }
        Ok(hashes)
    }

    /// Mine `count` blocks on top of `ancestor` (any block the kernel has), with only a coinbase
    /// paying `script`, and submit them in order as a peer would. With more work than the active
    /// chain, the kernel switches to this branch: a reorg.
    pub fn mine_branch(
        &self,
        ancestor: BlockHash,
        count: u32,
        script: &ScriptBuf,
    ) -> Result<Vec<BlockHash>, NodeError> {
        let mut state = self.lock()?;
        let mut parent = ancestor;
        let mut hashes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let block = state.assemble(parent, script, &[])?;
            parent = block.block_hash();
            if let Submission::Rejected(reason) = state.submit(&block)? {
                return Err(NodeError::BlockRejected { hash: parent.to_string(), reason });
            }
            hashes.push(parent);
        }
        Ok(hashes)
    }

    /// Hand a block to the kernel as a peer would (`submitblock`).
    pub fn submit_block(&self, block: &Block) -> Result<Submission, NodeError> {
        self.lock()?.submit(block)
    }

    /// Check `tx` for the mempool without admitting it.
    pub fn test_transaction(&self, tx: &Transaction) -> Result<Result<Admission, Reject>, NodeError> {
        let state = self.lock()?;
        Ok(state.mempool.check(&state.index, tx, (state.clock)()))
    }

    /// Check a package in order, each against the mempool with the ones before it admitted.
    pub fn test_package(&self, txs: &[Transaction]) -> Result<Vec<Result<Admission, Reject>>, NodeError> {
        let state = self.lock()?;
        let mut scratch = state.mempool.clone();
        let mut out = Vec::with_capacity(txs.len());
        for tx in txs {
            let result = scratch.check(&state.index, tx, (state.clock)());
            if let Ok(admission) = &result {
                scratch.insert(admission.clone());
            }
            out.push(result);
        }
        Ok(out)
    }

    /// Admit `tx` to the mempool (`sendrawtransaction`). A transaction already in the mempool is
    /// accepted again, as Core does. `max_fee_rate` is in satoshis per kvB; `None` means no cap.
    pub fn send_transaction(
        &self,
        tx: &Transaction,
        max_fee_rate: Option<u64>,
    ) -> Result<Result<Txid, Reject>, NodeError> {
        let mut state = self.lock()?;
        let txid = tx.compute_txid();
        if state.mempool.get(&txid).is_some() {
            return Ok(Ok(txid));
        }
        let admission = match state.mempool.check(&state.index, tx, (state.clock)()) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(max) = max_fee_rate
            && u128::from(admission.entry.fee.to_sat()) * 1000 > u128::from(max) * u128::from(admission.entry.vsize)
        {
            return Ok(Err(Reject {
                code: crate::error::code::VERIFY_ERROR,
                reason: "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)".into(),
            }));
        }
        tracing::debug!(%txid, fee = admission.entry.fee.to_sat(), "transaction admitted");
        state.mempool.insert(admission);
        Ok(Ok(txid))
    }
}

impl State {
    /// Assemble a block on `parent` holding `txs` (fees given) paying the coinbase to `script`.
    fn assemble(
        &mut self,
        parent: BlockHash,
        script: &ScriptBuf,
        txs: &[(Transaction, Amount)],
    ) -> Result<Block, NodeError> {
        let kernel_parent = bitcoinkernel::BlockHash::from(parent.to_byte_array());
        let entry =
            self.chainman.get_block_tree_entry(&kernel_parent).ok_or(NodeError::UnknownBlock(parent.to_string()))?;
        let height = entry.height().max(0) as u32 + 1;
        // The new block's time must exceed the median time past of its parent's last 11 blocks.
        let median = median_time_past(entry);
        self.extra_nonce += 1;
        Ok(mining::assemble(mining::Template {
            parent,
            height,
            time: ((self.clock)() as u32).max(median + 1),
            script: script.clone(),
            transactions: txs.to_vec(),
            extra_nonce: self.extra_nonce,
        }))
    }

    /// Give a block to the kernel, then bring the index and mempool up to the kernel's tip.
    fn submit(&mut self, block: &Block) -> Result<Submission, NodeError> {
        let hash = block.block_hash();
        let kernel_block = match bitcoinkernel::Block::new(&serialize(block)) {
            Ok(b) => b,
            Err(e) => return Ok(Submission::Rejected(format!("block decode failed: {e}"))),
        };
        let result = self.chainman.process_block(&kernel_block);
        let verdict = self.verdicts.lock().map_err(|_| NodeError::Poisoned)?.remove(&hash.to_byte_array());
        self.sync()?;
        Ok(match (result, verdict) {
            (bitcoinkernel::ProcessBlockResult::Duplicate, _) => Submission::Duplicate,
            (_, Some(Verdict::Invalid(reason))) => Submission::Rejected(reason),
            (bitcoinkernel::ProcessBlockResult::Rejected, _) => Submission::Rejected("rejected".into()),
            (_, Some(Verdict::Valid)) if self.index.height_of(&hash).is_some() => Submission::Accepted,
            _ => Submission::Inconclusive,
        })
    }

    /// Move the index to the kernel's active chain: disconnect down to the fork point, connect
    /// the kernel's blocks above it, then rebuild the mempool from the disconnected blocks'
    /// transactions and the old mempool (what no longer fits is dropped, as in Core).
    fn sync(&mut self) -> Result<(), NodeError> {
        let chain = self.chainman.active_chain();
        let tip_height = chain.height();
        if tip_height < 0 {
            return Ok(());
        }
        let mut fork = (self.index.len() as i64 - 1).min(i64::from(tip_height));
        while fork >= 0 {
            let same = match (chain.at_height(fork as usize), self.index.at(fork as u32)) {
                (Some(entry), Some(ours)) => entry.block_hash().to_bytes() == ours.hash.to_byte_array(),
                _ => false,
            };
            if same {
                break;
            }
            fork -= 1;
        }
        if fork == i64::from(tip_height) && self.index.len() as i64 == fork + 1 {
            return Ok(());
        }
        let mut disconnected: Vec<IndexedBlock> = Vec::new();
        while self.index.len() as i64 > fork + 1 {
            if let Some(b) = self.index.disconnect() {
                disconnected.push(b);
            }
        }
        for height in (fork + 1)..=i64::from(tip_height) {
            let entry = chain
                .at_height(height as usize)
                .ok_or_else(|| NodeError::Index(format!("kernel has no block at height {height}")))?;
            let raw = self.chainman.read_block_data(&entry)?;
            let block = decode_block(&raw)?;
            self.index.connect(block.block_hash(), block)?;
        }
        if !disconnected.is_empty() {
            tracing::info!(
                fork_height = fork,
                disconnected = disconnected.len(),
                tip_height,
                "reorg: switched to the kernel's most-work chain"
            );
        }
        let mut candidates: Vec<Transaction> = disconnected
            .iter()
            .rev()
            .flat_map(|b| b.block.txdata.iter().filter(|t| !t.is_coinbase()).cloned())
            .collect();
        candidates.extend(self.mempool.drain().into_iter().map(|e| e.tx));
        let now = (self.clock)();
        for tx in candidates {
            if let Ok(admission) = self.mempool.check(&self.index, &tx, now) {
                self.mempool.insert(admission);
            }
        }
        Ok(())
    }
}

/// Median of the timestamps of `entry` and its ten predecessors.
fn median_time_past(entry: bitcoinkernel::BlockTreeEntry<'_>) -> u32 {
    let mut times = Vec::with_capacity(11);
    let mut cursor = Some(entry);
    while let Some(e) = cursor
        && times.len() < 11
    {
        times.push(e.header().timestamp());
        cursor = e.prev();
    }
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or(0)
}

fn decode_block(raw: &bitcoinkernel::Block) -> Result<Block, NodeError> {
    let bytes = raw.consensus_encode()?;
    deserialize(&bytes).map_err(|e| NodeError::Decode(e.to_string()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
