//! The node's view of the kernel's active chain: blocks by height, txid → height, and the UTXO
//! set with undo data. Derived only from block data the kernel returns, and moved block by block
//! to the kernel's tip after every change (disconnecting above the fork point first), so it stays
//! right across reorgs.

use std::collections::HashMap;

use bitcoin::{Amount, Block, BlockHash, OutPoint, Transaction, TxOut, Txid};

use crate::error::NodeError;

/// An unspent output with what maturity and `gettxout` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether it is a coinbase output (spendable after 100 blocks).
    pub coinbase: bool,
}

/// One block of the active chain with what is needed to disconnect it.
#[derive(Debug, Clone)]
pub struct IndexedBlock {
    /// The block's hash.
    pub hash: BlockHash,
    /// The block.
    pub block: Block,
    /// The coins its transactions spent, in spending order.
    pub spent: Vec<(OutPoint, Coin)>,
    /// Fee of each transaction (zero for the coinbase), in block order.
    pub fees: Vec<Amount>,
}

/// The active chain as the node last synced it from the kernel.
#[derive(Debug, Default)]
pub struct ChainIndex {
    blocks: Vec<IndexedBlock>,
    utxos: HashMap<OutPoint, Coin>,
    tx_heights: HashMap<Txid, u32>,
}

impl ChainIndex {
    /// Height of the tip (0 is genesis). Only meaningful after the genesis block was connected.
    pub fn height(&self) -> u32 {
        self.blocks.len().saturating_sub(1) as u32
    }

    /// The tip's hash, if any block is indexed.
    pub fn tip(&self) -> Option<&IndexedBlock> {
        self.blocks.last()
    }

    /// The block at `height` on the active chain.
    pub fn at(&self, height: u32) -> Option<&IndexedBlock> {
        self.blocks.get(height as usize)
    }

    /// The number of indexed blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is indexed yet.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Height of the active-chain block holding `txid`.
    pub fn tx_height(&self, txid: &Txid) -> Option<u32> {
        self.tx_heights.get(txid).copied()
    }

    /// Height of an active-chain block by hash.
    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        // Blocks are found through the kernel first; this scan is only over the active chain.
        self.blocks.iter().position(|b| &b.hash == hash).map(|h| h as u32)
    }

    /// An unspent output of the active chain.
    pub fn coin(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.utxos.get(outpoint)
    }

    /// Whether any output of `txid` is unspent in the active chain.
    pub fn has_unspent_outputs(&self, tx: &Transaction) -> bool {
        let txid = tx.compute_txid();
        (0..tx.output.len() as u32).any(|vout| self.utxos.contains_key(&OutPoint { txid, vout }))
    }

    /// Median time past of the last 11 blocks ending at the tip.
    pub fn median_time_past(&self) -> u32 {
        self.median_time_past_at(self.height())
    }

    /// Median time past of the last 11 blocks ending at `height` (clamped to the tip).
    pub fn median_time_past_at(&self, height: u32) -> u32 {
        let end = (height as usize + 1).min(self.blocks.len());
        let mut times: Vec<u32> = self.blocks[..end].iter().rev().take(11).map(|b| b.block.header.time).collect();
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// Connect `block` on top of the tip.
    pub fn connect(&mut self, hash: BlockHash, block: Block) -> Result<(), NodeError> {
        let height = self.blocks.len() as u32;
        let mut spent = Vec::new();
        let mut fees = Vec::with_capacity(block.txdata.len());
        for tx in &block.txdata {
            let coinbase = tx.is_coinbase();
            let mut input_value = Amount::ZERO;
            if !coinbase {
                for input in &tx.input {
                    let coin = self.utxos.remove(&input.previous_output).ok_or_else(|| {
                        NodeError::Index(format!("block {hash} spends unknown {}", input.previous_output))
                    })?;
                    input_value += coin.output.value;
                    spent.push((input.previous_output, coin));
                }
            }
            let output_value: Amount = tx.output.iter().map(|o| o.value).sum();
            fees.push(if coinbase {
                Amount::ZERO
            } else {
                input_value.checked_sub(output_value).unwrap_or(Amount::ZERO)
            });
            let txid = tx.compute_txid();
            // Core keeps the genesis coinbase out of the UTXO set, and provably unspendable outputs too.
            if height > 0 {
                for (vout, output) in tx.output.iter().enumerate() {
                    if !output.script_pubkey.is_op_return() {
                        let coin = Coin { output: output.clone(), height, coinbase };
                        self.utxos.insert(OutPoint { txid, vout: vout as u32 }, coin);
                    }
                }
            }
            self.tx_heights.insert(txid, height);
        }
        self.blocks.push(IndexedBlock { hash, block, spent, fees });
        Ok(())
    }

    /// Disconnect the tip, returning its block.
    pub fn disconnect(&mut self) -> Option<IndexedBlock> {
        let tip = self.blocks.pop()?;
        for tx in tip.block.txdata.iter().rev() {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() as u32 {
                self.utxos.remove(&OutPoint { txid, vout });
            }
            self.tx_heights.remove(&txid);
        }
        for (outpoint, coin) in tip.spent.iter().rev() {
            self.utxos.insert(*outpoint, coin.clone());
        }
        Some(tip)
    }
}
