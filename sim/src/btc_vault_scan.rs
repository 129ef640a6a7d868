//! The vault's side of the active Bitcoin chain, for the checks, summarized block by block: each
//! block above the setup blocks once (its transactions, the vault outputs it created and spent,
//! the withdrawals its attempts paid first), keyed by its height and hash, so that a check after
//! a block costs what the new blocks cost, not the whole history. A reorg (the block at a
//! summarized height changed, or the tip fell below it) undoes the summaries from the fork point
//! up, tip first, and the blocks that replaced them are summarized as new ones.
//!
//! A block's spends of the vault are judged when it is summarized, and the judgment stands while
//! the block stays on the active chain: the truth only grows, and a transaction it names as an
//! attempt of a plan stays that plan's. So the first violation is found at the same check as by
//! a rescan of the whole chain, which could only find it again later (and a run ends at its
//! first).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use bitcoin::{BlockHash, OutPoint, ScriptBuf, Txid};
use regtest::index::{ChainIndex, IndexedBlock};

use crate::SimError;
use crate::btc_chain::BtcTruth;

/// An invariant a block broke, and how.
pub(crate) type Finding = (&'static str, String);

#[derive(Debug)]
pub(crate) struct VaultScan {
    /// The lowest height summarized: the blocks below hold nothing of the vault's.
    first: u32,
    /// The active chain's blocks from `first` up, by height.
    blocks: BTreeMap<u32, BlockSummary>,
    /// The vault's unspent outputs on the active chain, with their sats.
    unspent: BTreeMap<OutPoint, u64>,
    /// Each withdrawal an attempt on the active chain pays → the first attempt that pays it.
    paid: BTreeMap<[u8; 32], Txid>,
}

#[derive(Debug)]
struct BlockSummary {
    hash: BlockHash,
    /// Its transactions but the coinbase, in block order.
    txids: Vec<Txid>,
    /// The vault outputs it created, and those it spent: what undoing it takes back and restores.
    created: Vec<OutPoint>,
    spent: Vec<(OutPoint, u64)>,
    /// The withdrawals its attempts were the first on the active chain to pay.
    first_paid: Vec<[u8; 32]>,
}

impl VaultScan {
    pub(crate) fn new(first: u32) -> Self {
        VaultScan { first, blocks: BTreeMap::new(), unspent: BTreeMap::new(), paid: BTreeMap::new() }
    }

    /// Brings the summaries to the chain's tip: undoes those of blocks a reorg replaced, then
    /// summarizes the blocks past the last one kept, judging their spends of the vault (whose
    /// scripts are `scripts`) by `truth`. What they broke, in chain order.
    pub(crate) fn sync(&mut self, index: &ChainIndex, scripts: &BTreeSet<ScriptBuf>, truth: &BtcTruth) -> Vec<Finding> {
        // Down from the top: once a summarized block is still at its height, so is every block
        // below it (a block's hash commits to its ancestors).
        while let Some(top) = self.blocks.last_entry() {
            if index.at(*top.key()).is_some_and(|block| block.hash == top.get().hash) {
                break;
            }
            let replaced = top.remove();
            self.undo(replaced);
        }
        let from = self.blocks.last_key_value().map_or(self.first, |(height, _)| height + 1);
        let mut found = Vec::new();
        for height in from..=index.height() {
            let Some(block) = index.at(height) else { break };
            let summary = self.summarize(block, scripts, truth, &mut found);
            self.blocks.insert(height, summary);
        }
        found
    }

    /// Everything the vault holds on the active chain: every unspent output to a vault script,
    /// whether or not the ledger has recorded it yet.
    pub(crate) fn holdings_sat(&self, index: &ChainIndex) -> Result<u64, SimError> {
        Ok(self.at_tip(index)?.unspent.values().fold(0u64, |held, sat| held.saturating_add(*sat)))
    }

    /// The plans the sequencer sealed that an attempt on the active chain pays. It reads every
    /// summary: only the end of a run asks.
    pub(crate) fn plans_paid(&self, index: &ChainIndex, truth: &BtcTruth) -> Result<BTreeSet<u64>, SimError> {
        let mined = self.at_tip(index)?.blocks.values().flat_map(|block| &block.txids);
        Ok(mined.filter_map(|txid| truth.txids.get(txid).copied()).collect())
    }

    /// The summaries, if they reach the chain's tip: read before [`Self::sync`] brought them
    /// there, they would describe a chain that is no longer the active one.
    fn at_tip(&self, index: &ChainIndex) -> Result<&Self, SimError> {
        let at_tip = match self.blocks.last_key_value() {
            Some((&height, top)) => {
                height == index.height() && index.at(height).is_some_and(|block| block.hash == top.hash)
            }
            None => index.height() < self.first,
        };
        if at_tip {
            Ok(self)
        } else {
            Err(SimError::Role { what: "vault scan", reason: "its summaries are behind the chain's tip".into() })
        }
    }

    fn summarize(
        &mut self,
        block: &IndexedBlock,
        scripts: &BTreeSet<ScriptBuf>,
        truth: &BtcTruth,
        found: &mut Vec<Finding>,
    ) -> BlockSummary {
        let mut summary = BlockSummary {
            hash: block.hash,
            txids: Vec::new(),
            created: Vec::new(),
            spent: Vec::new(),
            first_paid: Vec::new(),
        };
        // The coins the block spent, in spending order; the coinbase spends none.
        let mut coins = block.spent.iter();
        for (position, tx) in block.block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            let mut spends_vault = false;
            if position > 0 {
                summary.txids.push(txid);
                for (outpoint, coin) in coins.by_ref().take(tx.input.len()) {
                    if scripts.contains(&coin.output.script_pubkey) {
                        spends_vault = true;
                        if let Some(sat) = self.unspent.remove(outpoint) {
                            summary.spent.push((*outpoint, sat));
                        }
                    }
                }
            }
            for (vout, output) in tx.output.iter().enumerate() {
                if scripts.contains(&output.script_pubkey) {
                    let outpoint = OutPoint { txid, vout: vout as u32 };
                    self.unspent.insert(outpoint, output.value.to_sat());
                    summary.created.push(outpoint);
                }
            }
            if spends_vault {
                self.judge(txid, truth, &mut summary.first_paid, found);
            }
        }
        summary
    }

    /// `btc-paid-justified` and `btc-paid-once` for `txid`, a spend of the vault.
    fn judge(&mut self, txid: Txid, truth: &BtcTruth, first_paid: &mut Vec<[u8; 32]>, found: &mut Vec<Finding>) {
        let Some((_, plan)) = truth.txids.get(&txid).and_then(|id| truth.plans.get(id)) else {
            found.push((
                "btc-paid-justified",
                format!("{txid} spends the vault but is no attempt of a plan the honest sequencer sealed"),
            ));
            return;
        };
        for payout in &plan.payouts {
            match self.paid.entry(payout.tx_hash) {
                Entry::Vacant(entry) => {
                    entry.insert(txid);
                    first_paid.push(payout.tx_hash);
                }
                Entry::Occupied(entry) if *entry.get() != txid => found.push((
                    "btc-paid-once",
                    format!(
                        "withdrawal {} is paid by {} and by {txid}",
                        hex::encode(&payout.tx_hash[..4]),
                        entry.get()
                    ),
                )),
                Entry::Occupied(_) => {}
            }
        }
    }

    /// Takes a block off the summaries, as the chain disconnected it.
    fn undo(&mut self, block: BlockSummary) {
        for withdrawal in &block.first_paid {
            self.paid.remove(withdrawal);
        }
        // What it spent back first, then what it created gone: an output it both created and
        // spent is gone, as before the block.
        for (outpoint, sat) in block.spent {
            self.unspent.insert(outpoint, sat);
        }
        for outpoint in &block.created {
            self.unspent.remove(outpoint);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure should panic
mod tests {
    use bitcoin::block::{Header, Version};
    use bitcoin::hashes::Hash as _;
    use bitcoin::{Amount, Block, CompactTarget, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Witness};
    use bridge::PayoutPlan;
    use bridge::withdrawals::BtcPayout;

    use super::*;

    fn vault() -> ScriptBuf {
        ScriptBuf::from_bytes(vec![0x51])
    }

    fn tx(inputs: Vec<OutPoint>, tag: u8, outputs: &[(ScriptBuf, u64)]) -> Transaction {
        Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: inputs
                .into_iter()
                .map(|previous_output| TxIn {
                    previous_output,
                    // Tells apart coinbases that pay the same.
                    script_sig: ScriptBuf::from_bytes(vec![tag]),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs
                .iter()
                .map(|(script, sat)| TxOut { value: Amount::from_sat(*sat), script_pubkey: script.clone() })
                .collect(),
        }
    }

    /// A block whose coinbase (told apart by `tag`) pays `coinbase`, then `txs`.
    fn connect(index: &mut ChainIndex, tag: u8, coinbase: &[(ScriptBuf, u64)], txs: &[&Transaction]) {
        let mut txdata = vec![tx(vec![OutPoint::null()], tag, coinbase)];
        txdata.extend(txs.iter().map(|&t| t.clone()));
        let header = Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0),
            nonce: 0,
        };
        index.connect(BlockHash::from_byte_array([tag; 32]), Block { header, txdata }).unwrap();
    }

    /// Plan `id`, paying `withdrawal`, whose one attempt is `attempt`.
    fn seal(truth: &mut BtcTruth, id: u64, withdrawal: u8, attempt: &Transaction) {
        let payout = BtcPayout { tx_hash: [withdrawal; 32], script_pubkey: Vec::new(), amount_sat: 1 };
        let plan = PayoutPlan { id, batch: 1, fee_rate: 1, budget_sat: 0, inputs: Vec::new(), payouts: vec![payout] };
        truth.plans.insert(id, (1, plan));
        truth.txids.insert(attempt.compute_txid(), id);
    }

    #[test]
    fn a_reorg_takes_back_what_its_blocks_paid_and_held() {
        let scripts = BTreeSet::from([vault()]);
        let elsewhere = ScriptBuf::from_bytes(vec![0x52]);
        let mut index = ChainIndex::default();
        connect(&mut index, 0, &[(elsewhere.clone(), 1)], &[]);
        connect(&mut index, 1, &[(vault(), 50_000), (vault(), 40_000)], &[]);
        let funding = index.at(1).unwrap().block.txdata[0].compute_txid();
        let (a, b) = (OutPoint { txid: funding, vout: 0 }, OutPoint { txid: funding, vout: 1 });
        // Two plans that pay one withdrawal (the ledger's bug), from different vault outputs.
        let first = tx(vec![a], 0, &[(elsewhere.clone(), 49_000)]);
        let second = tx(vec![b], 0, &[(elsewhere.clone(), 39_000)]);
        let mut truth = BtcTruth::default();
        seal(&mut truth, 1, 7, &first);
        seal(&mut truth, 2, 7, &second);
        let mut scan = VaultScan::new(1);
        assert!(scan.sync(&index, &scripts, &truth).is_empty());
        assert_eq!(scan.holdings_sat(&index).unwrap(), 90_000);

        connect(&mut index, 2, &[], &[&first]);
        assert!(scan.holdings_sat(&index).is_err(), "read before the new block was summarized");
        assert!(scan.sync(&index, &scripts, &truth).is_empty());
        assert_eq!(scan.plans_paid(&index, &truth).unwrap(), BTreeSet::from([1]));
        assert_eq!(scan.holdings_sat(&index).unwrap(), 40_000);

        // A reorg replaces block 2 by two empty blocks: the payment is gone, and so is the
        // withdrawal's being paid, so another plan paying it is not a second payment.
        index.disconnect().unwrap();
        connect(&mut index, 12, &[], &[]);
        connect(&mut index, 13, &[], &[]);
        assert!(scan.sync(&index, &scripts, &truth).is_empty());
        assert!(scan.plans_paid(&index, &truth).unwrap().is_empty());
        assert_eq!(scan.holdings_sat(&index).unwrap(), 90_000);
        connect(&mut index, 14, &[], &[&second]);
        assert!(scan.sync(&index, &scripts, &truth).is_empty());
        assert_eq!(scan.holdings_sat(&index).unwrap(), 50_000);

        // The first attempt mined again on top: the withdrawal is paid twice.
        connect(&mut index, 15, &[], &[&first]);
        let found = scan.sync(&index, &scripts, &truth);
        let detail =
            format!("withdrawal 07070707 is paid by {} and by {}", second.compute_txid(), first.compute_txid());
        assert_eq!(found, vec![("btc-paid-once", detail)]);
        assert_eq!(scan.plans_paid(&index, &truth).unwrap(), BTreeSet::from([1, 2]));

        // The tip falls back below it: only the second payment is left.
        index.disconnect().unwrap();
        assert!(scan.sync(&index, &scripts, &truth).is_empty());
        assert_eq!(scan.plans_paid(&index, &truth).unwrap(), BTreeSet::from([2]));
        assert_eq!(scan.holdings_sat(&index).unwrap(), 50_000);
    }

    #[test]
    fn a_spend_of_the_vault_no_plan_made_is_unjustified_and_one_within_a_block_is_seen() {
        let scripts = BTreeSet::from([vault()]);
        let elsewhere = ScriptBuf::from_bytes(vec![0x52]);
        let mut index = ChainIndex::default();
        connect(&mut index, 0, &[(elsewhere.clone(), 1)], &[]);
        connect(&mut index, 1, &[(elsewhere.clone(), 10_000)], &[]);
        let coinbase = index.at(1).unwrap().block.txdata[0].compute_txid();
        // A deposit and, in the same block, a theft of it.
        let deposit = tx(vec![OutPoint { txid: coinbase, vout: 0 }], 0, &[(vault(), 9_000)]);
        let theft = tx(vec![OutPoint { txid: deposit.compute_txid(), vout: 0 }], 0, &[(elsewhere, 8_000)]);
        connect(&mut index, 2, &[], &[&deposit, &theft]);
        let mut scan = VaultScan::new(1);
        let found = scan.sync(&index, &scripts, &BtcTruth::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "btc-paid-justified");
        assert_eq!(scan.holdings_sat(&index).unwrap(), 0);

        // Undone, the block leaves the vault as before it, holding neither the deposit nor
        // anything the theft spent; the deposit mined again alone is held.
        index.disconnect().unwrap();
        connect(&mut index, 22, &[], &[]);
        assert!(scan.sync(&index, &scripts, &BtcTruth::default()).is_empty());
        assert_eq!(scan.holdings_sat(&index).unwrap(), 0);
        connect(&mut index, 23, &[], &[&deposit]);
        assert!(scan.sync(&index, &scripts, &BtcTruth::default()).is_empty());
        assert_eq!(scan.holdings_sat(&index).unwrap(), 9_000);
    }
}
