//! Bitcoin in process: Bitcoin Core's consensus engine (the regtest crate's kernel node) holds
//! the chain, its clock the simulation's, so a seed mines the same blocks. Each role sees it
//! through [`NodeView`], the real [`BitcoinNode`] edge, as far as its own node has synced: the
//! confirmers' real [`DepositChecker`](chains::bitcoin::DepositChecker) checks deposits and
//! payouts through it, and the watchmen's real [`BtcPayouts`](confirmer::watchman::BtcPayouts)
//! signs, broadcasts and bumps through it (btc_payouts.rs).
//!
//! A block every [`BTC_BLOCK_MS`] (a tenth of Bitcoin's interval, so a run sees many), paying a
//! funder whose matured coinbases fund the users' deposits. Faults: reorgs of up to
//! [`MAX_BTC_REORG`] blocks (the disconnected transactions go back to the mempool, as in Core),
//! congestion (blocks that leave the mempool's transactions out, so payouts must be bumped), and
//! per-node lag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bitcoin::hashes::Hash as _;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Message, SECP256K1};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{
    Amount as Sats, BlockHash, OutPoint, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut, Txid, Witness,
};
use bridge::btc_payout::{MAX_BUMPS, PayoutPlan};
use bridge::{Address, BtcNetwork, BtcVaultParams, L1Ref, VaultKeys};
use chains::bitcoin::BitcoinNode;
use chains::bitcoin::deposit::deposit_script;
use chains::bitcoin::rpc::{BlockchainInfo, NOT_FOUND, RpcError, TransactionInfo, UnspentOutput};

use crate::SimError;
use crate::btc_vault_scan::{Finding, VaultScan};

/// A block every simulated minute.
pub(crate) const BTC_BLOCK_MS: u64 = 60_000;
/// Confirmations before a deposit is credited, a payout recorded, and either checked.
pub(crate) const BTC_DEPTH: u64 = 3;
/// The coordinator's Bitcoin node's lags: the seed, xor this, is their stream.
pub(crate) const COORDINATOR_NODE_STREAM: u64 = 0xc_00b7_c1a9;
/// How far behind the coordinator's Bitcoin node falls at most, in blocks: past the payout
/// depth, so that a plan the chain confirmed can be unconfirmed, or unknown, to the keeper.
const MAX_COORDINATOR_LAG: u64 = 2 * BTC_DEPTH + 2;
/// The deepest Bitcoin reorg: below [`BTC_DEPTH`], as a real deployment's depth is chosen.
pub(crate) const MAX_BTC_REORG: u64 = 2;
/// Blocks a payout attempt may wait unconfirmed before the watchmen sign the next one.
pub(crate) const BUMP_AFTER_BLOCKS: u64 = 3;
/// The chain's time at the simulation's start. Far enough in the past that the kernel, which
/// refuses blocks more than two hours ahead of its host's clock, takes every block of a run.
const EPOCH_S: u64 = 1_700_000_000;
/// Blocks mined at the start, so the funder has matured coinbases (100 deep) to spend.
const SETUP_BLOCKS: u32 = 110;
/// What each funding transaction leaves to the miner.
const FUNDING_FEE_SAT: u64 = 2_000;

pub(crate) struct BtcChain {
    pub(crate) node: Arc<regtest::Node>,
    pub(crate) vault: BtcVaultParams,
    funder: Keypair,
    funder_script: ScriptBuf,
    /// The next coinbase height the funder spends.
    next_coinbase: u32,
    /// Every deposit's output, in the order made: what the coordinator must have credited by
    /// the end (`deposit-liveness`).
    pub(crate) deposits: Vec<OutPoint>,
    /// Sats paid to deposit addresses in all.
    pub(crate) deposited_sat: u64,
    /// Miners leave the mempool out until then (simulated ms).
    pub(crate) congested_until: Option<u64>,
    /// What the honest sequencer planned, for the checks and the payout liveness.
    pub(crate) truth: BtcTruth,
    /// What a spend of the vault spends (btc_payouts.rs).
    pub(crate) vault_scripts: std::collections::BTreeSet<ScriptBuf>,
    /// The vault's side of the active chain, block by block, for the checks.
    vault_scan: VaultScan,
}

/// Every plan the honest sequencer sealed, and what signing or paying it looks like. Kept for
/// the whole run, as the watchmen may be asked to sign an old plan's attempt again and
/// `signature-justified` must still find it; it grows with the plans (one per planning
/// transaction, which the keeper sends at most once a block), not with the chain, and the
/// checks read it by key.
#[derive(Debug, Default)]
pub(crate) struct BtcTruth {
    /// Plan id → (its batch, the plan).
    pub(crate) plans: BTreeMap<u64, (u64, PayoutPlan)>,
    /// The sighash of every input of every attempt → its plan.
    pub(crate) sighashes: BTreeMap<[u8; 32], u64>,
    /// The txid of every attempt → its plan.
    pub(crate) txids: BTreeMap<Txid, u64>,
}

impl BtcTruth {
    pub(crate) fn record(&mut self, batch: u64, plans: &[PayoutPlan], vault: BtcVaultParams) {
        let keys = VaultKeys::genesis(vault);
        for plan in plans {
            for attempt in 0..=MAX_BUMPS {
                let Ok(unsigned) = plan.build(&keys, BtcNetwork::Regtest, attempt) else { continue };
                for sighash in &unsigned.sighashes {
                    self.sighashes.insert(*sighash, plan.id);
                }
                self.txids.insert(unsigned.tx.compute_txid(), plan.id);
            }
            self.plans.insert(plan.id, (batch, plan.clone()));
        }
    }
}

impl BtcChain {
    pub(crate) fn new(
        vault: BtcVaultParams,
        accounts: impl Iterator<Item = Address>,
        now_ms: Arc<AtomicU64>,
        funder_secret: [u8; 32],
    ) -> Result<Self, SimError> {
        let clock = Arc::new(move || EPOCH_S + now_ms.load(Ordering::SeqCst) / 1000);
        let node =
            regtest::Node::with_clock(None, clock).map_err(|e| SimError::Setup(format!("a Bitcoin node: {e}")))?;
        let funder = Keypair::from_seckey_slice(SECP256K1, &funder_secret)
            .map_err(|e| SimError::Setup(format!("the Bitcoin funder's key: {e}")))?;
        let funder_script = ScriptBuf::new_p2tr(SECP256K1, funder.x_only_public_key().0, None);
        node.mine(SETUP_BLOCKS, &funder_script)
            .map_err(|e| SimError::Setup(format!("the first Bitcoin blocks: {e}")))?;
        Ok(BtcChain {
            node: Arc::new(node),
            vault,
            funder,
            funder_script,
            next_coinbase: 1,
            deposits: Vec::new(),
            deposited_sat: 0,
            congested_until: None,
            truth: BtcTruth::default(),
            vault_scripts: crate::btc_payouts::vault_scripts(vault, accounts),
            vault_scan: VaultScan::new(SETUP_BLOCKS + 1),
        })
    }

    pub(crate) fn view(&self, lag: Arc<AtomicU64>) -> NodeView {
        NodeView { node: self.node.clone(), lag }
    }

    pub(crate) fn height(&self) -> u64 {
        self.node.height().map_or(0, u64::from)
    }

    /// The block of this minute: with the mempool's transactions, or without them while
    /// congested.
    pub(crate) fn mine(&mut self, now: u64) -> Result<String, SimError> {
        let congested = self.congested_until.is_some_and(|until| now < until);
        let mined = if congested {
            let tip = self.tip_hash()?;
            self.node.mine_branch(tip, 1, &self.funder_script)
        } else {
            self.node.mine(1, &self.funder_script)
        };
        mined.map_err(SimError::role("the Bitcoin node mining"))?;
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        let height = view.index().height();
        let txs = view.index().tip().map_or(0, |b| b.block.txdata.len() - 1);
        let pending = view.mempool().entries().len();
        Ok(if congested {
            format!("Bitcoin block {height} (congested: {pending} transactions left waiting)")
        } else {
            format!("Bitcoin block {height} with {txs} transactions")
        })
    }

    pub(crate) fn tip_hash(&self) -> Result<BlockHash, SimError> {
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        view.index().tip().map(|b| b.hash).ok_or_else(|| SimError::Setup("the Bitcoin chain has no tip".into()))
    }

    /// A competing branch from `depth` blocks below the tip, one block longer: the kernel
    /// switches to it, and what the old blocks held goes back to the mempool.
    pub(crate) fn reorg(&mut self, depth: u64) -> Result<(), SimError> {
        let height = self.node.height().map_err(SimError::role("the Bitcoin node"))?;
        let fork = height.saturating_sub(depth as u32);
        let Some(ancestor) = self.node.block_hash(fork).map_err(SimError::role("the Bitcoin node"))? else {
            return Ok(());
        };
        self.node
            .mine_branch(ancestor, depth as u32 + 1, &self.funder_script)
            .map_err(SimError::role("a Bitcoin reorg"))?;
        Ok(())
    }

    /// A user's deposit of `sat` to its deposit address, funded by the next matured coinbase:
    /// the output it pays; `None` when no coinbase has matured yet. The coordinator's watcher
    /// finds it in its block (btc_payouts.rs).
    pub(crate) fn deposit(&mut self, account: Address, sat: u64) -> Result<Option<OutPoint>, SimError> {
        let (coinbase, value) = {
            let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
            let index = view.index();
            // Spendable in the next block once 100 deep.
            if index.height() + 1 < self.next_coinbase + 100 {
                return Ok(None);
            }
            let Some(block) = index.at(self.next_coinbase) else { return Ok(None) };
            let Some(tx) = block.block.txdata.first() else { return Ok(None) };
            let Some(vout) = tx.output.iter().position(|o| o.script_pubkey == self.funder_script) else {
                return Ok(None);
            };
            (OutPoint { txid: tx.compute_txid(), vout: vout as u32 }, tx.output[vout].value)
        };
        self.next_coinbase += 1;
        let Some(change) = value.to_sat().checked_sub(sat + FUNDING_FEE_SAT) else { return Ok(None) };
        let group_key = bitcoin::key::XOnlyPublicKey::from_slice(&self.vault.group_key)
            .map_err(|e| SimError::Setup(format!("the group key: {e}")))?;
        let mut tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: coinbase,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![
                TxOut {
                    value: Sats::from_sat(sat),
                    script_pubkey: deposit_script(group_key, BtcNetwork::Regtest, &account),
                },
                TxOut { value: Sats::from_sat(change), script_pubkey: self.funder_script.clone() },
            ],
        };
        let prevout = TxOut { value, script_pubkey: self.funder_script.clone() };
        let sighash = SighashCache::new(&tx)
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
            .map_err(|e| SimError::Setup(format!("a funding sighash: {e}")))?;
        let tweaked = self.funder.tap_tweak(SECP256K1, None).to_keypair();
        let signature = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), &tweaked);
        tx.input[0].witness = Witness::from_slice(&[signature.as_ref()]);
        match self.node.send_transaction(&tx, None).map_err(SimError::role("the Bitcoin node"))? {
            Ok(txid) => {
                let outpoint = OutPoint { txid, vout: 0 };
                self.deposited_sat += sat;
                self.deposits.push(outpoint);
                Ok(Some(outpoint))
            }
            Err(reject) => Err(SimError::Role { what: "a deposit's funding", reason: reject.reason }),
        }
    }

    /// The height of the active-chain block holding `txid`, and its confirmations: what a
    /// wallet watching the chain's tip knows of its own payment.
    pub(crate) fn depth_of(&self, txid: &Txid) -> Result<Option<(u64, u64)>, SimError> {
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        let index = view.index();
        let tip = u64::from(index.height());
        Ok(index.tx_height(txid).map(|height| (u64::from(height), tip + 1 - u64::from(height))))
    }

    /// The first deposit [`BTC_DEPTH`] deep on the active chain that `credited` says the ledger
    /// has not credited.
    pub(crate) fn uncredited_deep_deposit(
        &self,
        credited: impl Fn(&L1Ref) -> bool,
    ) -> Result<Option<OutPoint>, SimError> {
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        let index = view.index();
        let tip = u64::from(index.height());
        Ok(self.deposits.iter().copied().find(|outpoint| {
            let deep = index.tx_height(&outpoint.txid).is_some_and(|h| tip + 1 >= u64::from(h) + BTC_DEPTH);
            let l1_ref = L1Ref::Bitcoin { txid: outpoint.txid.to_byte_array(), vout: outpoint.vout };
            deep && !credited(&l1_ref)
        }))
    }

    /// Summarizes the blocks mined or replaced since the last call: what their spends of the
    /// vault broke of `btc-paid-justified` and `btc-paid-once`.
    pub(crate) fn scan_vault_spends(&mut self) -> Result<Vec<Finding>, SimError> {
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        Ok(self.vault_scan.sync(view.index(), &self.vault_scripts, &self.truth))
    }

    /// Everything the vault holds on the active chain: every unspent output to a vault script,
    /// whether or not the ledger has recorded it yet (a deposit not yet credited, a payout's
    /// change not yet recorded).
    pub(crate) fn vault_holdings_sat(&self) -> Result<u64, SimError> {
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        self.vault_scan.holdings_sat(view.index())
    }

    /// The plans the sequencer sealed that an attempt on the active chain pays.
    pub(crate) fn plans_paid(&self) -> Result<std::collections::BTreeSet<u64>, SimError> {
        let view = self.node.view().map_err(SimError::role("the Bitcoin node"))?;
        self.vault_scan.plans_paid(view.index(), &self.truth)
    }
}

/// One role's Bitcoin node: the chain as far as it has synced, `lag` blocks behind the tip.
/// What it answers follows Core's: a transaction it does not have is `NOT_FOUND`.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    node: Arc<regtest::Node>,
    lag: Arc<AtomicU64>,
}

fn node_error(method: &str) -> impl Fn(regtest::NodeError) -> RpcError + '_ {
    move |error| RpcError::Rpc { method: method.into(), code: -1, message: error.to_string() }
}

impl NodeView {
    /// This view as the handle a caller shares with others (the solvency watch holds one).
    pub(crate) fn shared(self) -> Arc<dyn BitcoinNode> {
        Arc::new(self)
    }

    fn visible(&self, tip: u32) -> u32 {
        tip.saturating_sub(u32::try_from(self.lag.load(Ordering::SeqCst)).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl BitcoinNode for NodeView {
    async fn blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        let view = self.node.view().map_err(node_error("getblockchaininfo"))?;
        let height = self.visible(view.index().height());
        let best = view.index().at(height).map(|b| b.hash).unwrap_or_else(BlockHash::all_zeros);
        Ok(BlockchainInfo {
            chain: "regtest".into(),
            blocks: u64::from(height),
            headers: u64::from(height),
            best_block_hash: best,
            initial_block_download: false,
        })
    }

    async fn block_count(&self) -> Result<u64, RpcError> {
        let height = self.node.height().map_err(node_error("getblockcount"))?;
        Ok(u64::from(self.visible(height)))
    }

    async fn transaction_info(&self, txid: &Txid) -> Result<TransactionInfo, RpcError> {
        let view = self.node.view().map_err(node_error("getrawtransaction"))?;
        let index = view.index();
        let visible = self.visible(index.height());
        if let Some(height) = index.tx_height(txid)
            && let Some(block) = index.at(height)
            && let Some(tx) = block.block.txdata.iter().find(|t| t.compute_txid() == *txid)
        {
            return Ok(if height <= visible {
                TransactionInfo {
                    tx: tx.clone(),
                    block_hash: Some(block.hash),
                    confirmations: u64::from(visible - height + 1),
                }
            } else {
                // Mined past this node's height: it has it from the network, unconfirmed.
                TransactionInfo { tx: tx.clone(), block_hash: None, confirmations: 0 }
            });
        }
        match view.mempool().get(txid) {
            Some(entry) => Ok(TransactionInfo { tx: entry.tx.clone(), block_hash: None, confirmations: 0 }),
            None => Err(RpcError::Rpc {
                method: "getrawtransaction".into(),
                code: NOT_FOUND,
                message: "No such mempool or blockchain transaction".into(),
            }),
        }
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        match self.node.send_transaction(tx, None).map_err(node_error("sendrawtransaction"))? {
            Ok(txid) => Ok(txid),
            Err(reject) => Err(RpcError::Rpc {
                method: "sendrawtransaction".into(),
                code: i64::from(reject.code),
                message: reject.reason,
            }),
        }
    }

    async fn tx_out(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UnspentOutput>, RpcError> {
        let view = self.node.view().map_err(node_error("gettxout"))?;
        let visible = self.visible(view.index().height());
        if include_mempool && view.mempool().spender(outpoint).is_some() {
            return Ok(None);
        }
        // As of the visible block: unspent at the tip, or spent only in a block this node has
        // not reached (the blocks it lacks undo those spends).
        let index = view.index();
        let unreached = (visible + 1..=index.height()).filter_map(|height| index.at(height));
        let spent_later = || {
            unreached.flat_map(|block| block.spent.iter()).find(|(spent, _)| spent == outpoint).map(|(_, coin)| coin)
        };
        if let Some(coin) = index.coin(outpoint).or_else(spent_later).filter(|c| c.height <= visible) {
            return Ok(Some(UnspentOutput {
                confirmations: u64::from(visible - coin.height + 1),
                value: coin.output.value,
                script_pubkey: coin.output.script_pubkey.clone(),
                coinbase: coin.coinbase,
            }));
        }
        Ok(include_mempool.then(|| view.mempool().output(outpoint).cloned()).flatten().map(|output| UnspentOutput {
            confirmations: 0,
            value: output.value,
            script_pubkey: output.script_pubkey,
            coinbase: false,
        }))
    }

    async fn block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        let view = self.node.view().map_err(node_error("getblockhash"))?;
        let visible = u64::from(self.visible(view.index().height()));
        let block = u32::try_from(height).ok().filter(|h| u64::from(*h) <= visible).and_then(|h| view.index().at(h));
        block.map(|b| b.hash).ok_or_else(|| RpcError::Rpc {
            method: "getblockhash".into(),
            code: OUT_OF_RANGE,
            message: "Block height out of range".into(),
        })
    }

    async fn block(&self, hash: &BlockHash) -> Result<bitcoin::Block, RpcError> {
        let view = self.node.view().map_err(node_error("getblock"))?;
        let index = view.index();
        let visible = self.visible(index.height());
        let block = index.height_of(hash).filter(|h| *h <= visible).and_then(|h| index.at(h));
        block.map(|b| b.block.clone()).ok_or_else(|| RpcError::Rpc {
            method: "getblock".into(),
            code: NOT_FOUND,
            message: "Block not found".into(),
        })
    }
}

/// Core's `RPC_INVALID_PARAMETER`, its answer to a height past its tip.
const OUT_OF_RANGE: i64 = -8;

impl crate::world::World {
    /// This minute's Bitcoin block; in the fault phase, now and then a reorg or a spell of
    /// congestion first. The spends of the vault are checked on the chain that results.
    pub(crate) fn bitcoin_block(&mut self) -> Result<(), SimError> {
        let now = self.now();
        let faults = self.in_fault_phase();
        let Some(btc) = self.btc.as_mut() else { return Ok(()) };
        let mut events = Vec::new();
        if faults && self.btc_rng.chance(30_000) {
            let depth = self.btc_rng.between(1, MAX_BTC_REORG);
            btc.reorg(depth)?;
            events.push(format!("FAULT Bitcoin reorg replaces {depth} blocks, height now {}", btc.height()));
        }
        if faults && btc.congested_until.is_none_or(|until| now >= until) && self.btc_rng.chance(60_000) {
            let blocks = self.btc_rng.between(BUMP_AFTER_BLOCKS, 3 * BUMP_AFTER_BLOCKS);
            btc.congested_until = Some(now + blocks * BTC_BLOCK_MS);
            events.push(format!("FAULT Bitcoin miners leave the mempool out for {blocks} blocks"));
        }
        if !faults {
            btc.congested_until = None;
        }
        events.push(btc.mine(now)?);
        // The coordinator's node: now and then it falls behind (its deposit watcher and payout
        // keeper then read an older chain, and "not seen yet" must not pass for "absent").
        let coordinator = &mut self.coordinator;
        if coordinator.btc_lag_until.is_some_and(|until| now >= until) {
            coordinator.btc_lag.store(0, Ordering::SeqCst);
            coordinator.btc_lag_until = None;
            events.push("the coordinator's Bitcoin node caught up".into());
        }
        if faults && coordinator.btc_lag_until.is_none() && self.coordinator_btc_rng.chance(40_000) {
            let lag = self.coordinator_btc_rng.between(1, MAX_COORDINATOR_LAG);
            let blocks = self.coordinator_btc_rng.between(2, 30);
            coordinator.btc_lag.store(lag, Ordering::SeqCst);
            coordinator.btc_lag_until = Some(now + blocks * BTC_BLOCK_MS);
            events.push(format!("FAULT the coordinator's Bitcoin node lags {lag} blocks for {blocks} blocks"));
        }
        for event in events {
            if event.starts_with("FAULT") {
                self.faults += 1;
            }
            self.log(event);
        }
        self.check_btc_spends()
    }
}
