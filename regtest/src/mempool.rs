//! The mempool: transactions admitted against the active chain's UTXO set plus their mempool
//! parents, with scripts verified by the kernel (`verify` with every consensus flag, Taproot
//! included, and all spent outputs), and full replace-by-fee as in Core 28 (no BIP-125 signal
//! needed, the replacement pays more in total and per vbyte).
//!
//! Entries are kept in admission order, which is a topological order (a child is only admitted
//! after its parent), so a block takes them front to back.

use bitcoin::consensus::encode::serialize;
use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid, Weight, Wtxid};
use bitcoinkernel::{PrecomputedTransactionData, ScriptPubkey, VERIFY_ALL, verify};

use crate::error::Reject;
use crate::index::ChainIndex;

/// Coinbase outputs may be spent once the spending block is this many blocks above them.
pub const COINBASE_MATURITY: u32 = 100;
/// Core's minimum relay fee rate, in satoshis per virtual byte.
pub const MIN_RELAY_SAT_PER_VB: u64 = 1;
/// Core's dust relay fee rate, in satoshis per virtual byte.
const DUST_RELAY_SAT_PER_VB: u64 = 3;
/// Core refuses to replace more than this many transactions at once.
const MAX_REPLACEMENTS: usize = 100;

/// A transaction in the mempool.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The transaction.
    pub tx: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// Virtual size in vbytes.
    pub vsize: u64,
    /// Weight in weight units.
    pub weight: Weight,
    /// Unix time of admission.
    pub time: u64,
    /// Chain height at admission.
    pub height: u32,
}

impl Entry {
    /// Whether this entry pays more per vbyte than `other` (cross-multiplied, no rounding).
    fn fee_rate_cmp_gt(&self, other: &Entry) -> bool {
        // self.fee / self.vsize > other.fee / other.vsize
        u128::from(self.fee.to_sat()) * u128::from(other.vsize)
            > u128::from(other.fee.to_sat()) * u128::from(self.vsize)
    }
}

/// A transaction that passed every check, with what admitting it removes.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The new entry.
    pub entry: Entry,
    /// Mempool transactions it replaces (conflicts and their descendants).
    pub replaces: Vec<Txid>,
}

/// The node's mempool.
#[derive(Debug, Default, Clone)]
pub struct Mempool {
    entries: Vec<Entry>,
}

impl Mempool {
    /// Entries in admission (topological) order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// An entry by txid.
    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.txid == txid)
    }

    /// Take every entry out, leaving the mempool empty.
    pub fn drain(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// The mempool transaction spending `outpoint`.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tx.input.iter().any(|i| &i.previous_output == outpoint))
    }

    /// An output created by a mempool transaction.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.get(&outpoint.txid).and_then(|e| e.tx.output.get(outpoint.vout as usize))
    }

    /// Check `tx` against the chain and this mempool; nothing changes.
    pub fn check(&self, index: &ChainIndex, tx: &Transaction, now: u64) -> Result<Admission, Reject> {
        let txid = tx.compute_txid();
        if tx.is_coinbase() {
            return Err(Reject::rejected("coinbase"));
        }
        if tx.input.is_empty() {
            return Err(Reject::rejected("bad-txns-vin-empty"));
        }
        if tx.output.is_empty() {
            return Err(Reject::rejected("bad-txns-vout-empty"));
        }
        let weight = tx.weight();
        if weight.to_wu() > 400_000 {
            return Err(Reject::rejected("tx-size"));
        }
        let mut output_value = Amount::ZERO;
        for output in &tx.output {
            output_value = output_value
                .checked_add(output.value)
                .filter(|v| *v <= Amount::MAX_MONEY)
                .ok_or_else(|| Reject::rejected("bad-txns-txouttotal-toolarge"))?;
            if is_dust(output) {
                return Err(Reject::rejected("dust"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
            return Err(Reject::rejected("bad-txns-inputs-duplicate"));
        }
        if self.get(&txid).is_some() {
            return Err(Reject::rejected("txn-already-in-mempool"));
        }
        if index.has_unspent_outputs(tx) {
            return Err(Reject::already_in_chain());
        }
        let next_height = index.height() + 1;
        if tx.is_lock_time_enabled() && !is_final(tx, next_height, index.median_time_past()) {
            return Err(Reject::rejected("non-final"));
        }

        // Conflicts first, as Core: an input another mempool transaction spends.
        let mut conflicts: Vec<Txid> = Vec::new();
        for input in &tx.input {
            if let Some(spender) = self.spender(&input.previous_output)
                && !conflicts.contains(&spender.txid)
            {
                conflicts.push(spender.txid);
            }
        }
        let replaces = self.with_descendants(&conflicts);

        let mut prevouts = Vec::with_capacity(tx.input.len());
        for input in &tx.input {
            let outpoint = &input.previous_output;
            let coin_height = if let Some(coin) = index.coin(outpoint) {
                if coin.coinbase && next_height - coin.height < COINBASE_MATURITY {
                    return Err(Reject::rejected("bad-txns-premature-spend-of-coinbase"));
                }
                prevouts.push(coin.output.clone());
                coin.height
            } else if let Some(output) = self.output(outpoint) {
                if replaces.contains(&outpoint.txid) {
                    return Err(Reject::rejected("bad-txns-spends-conflicting-tx"));
                }
                prevouts.push(output.clone());
                next_height
            } else {
                return Err(Reject::missing_inputs());
            };
            if !sequence_lock_met(tx, input.sequence, coin_height, next_height, index) {
                // The kernel would refuse a block holding it; keep it out of the mempool as Core does.
                return Err(Reject::rejected("non-BIP68-final"));
            }
        }
        let input_value: Amount = prevouts.iter().map(|o| o.value).sum();
        let fee = input_value.checked_sub(output_value).ok_or_else(|| Reject::rejected("bad-txns-in-belowout"))?;
        let vsize = weight.to_vbytes_ceil();
        verify_scripts(tx, &prevouts)?;
        let min_fee = vsize * MIN_RELAY_SAT_PER_VB;
        if fee.to_sat() < min_fee {
            return Err(Reject::rejected(format!("min relay fee not met, {} < {min_fee}", fee.to_sat())));
        }
        let entry = Entry {
            tx: tx.clone(),
            txid,
            wtxid: tx.compute_wtxid(),
            fee,
            vsize,
            weight,
            time: now,
            height: index.height(),
        };

        if !conflicts.is_empty() {
            if replaces.len() > MAX_REPLACEMENTS {
                return Err(Reject::rejected(format!("too many potential replacements, rejecting replacement {txid}")));
            }
            for conflict in conflicts.iter().filter_map(|c| self.get(c)) {
                if !entry.fee_rate_cmp_gt(conflict) {
                    return Err(Reject::rejected(format!(
                        "insufficient fee, rejecting replacement {txid}; new feerate is not above the feerate of {}",
                        conflict.txid
                    )));
                }
            }
            let replaced_fees: u64 = replaces.iter().filter_map(|t| self.get(t)).map(|e| e.fee.to_sat()).sum();
            if fee.to_sat() < replaced_fees + vsize * MIN_RELAY_SAT_PER_VB {
                return Err(Reject::rejected(format!(
                    "insufficient fee, rejecting replacement {txid}, not enough additional fees to relay; {} < {}",
                    fee.to_sat().saturating_sub(replaced_fees),
                    vsize * MIN_RELAY_SAT_PER_VB
                )));
            }
        }
        Ok(Admission { entry, replaces })
    }

    /// Admit a checked transaction, evicting what it replaces.
    pub fn insert(&mut self, admission: Admission) {
        self.entries.retain(|e| !admission.replaces.contains(&e.txid));
        self.entries.push(admission.entry);
    }

    /// `roots` and every mempool transaction descending from them.
    fn with_descendants(&self, roots: &[Txid]) -> Vec<Txid> {
        let mut set: Vec<Txid> = roots.to_vec();
        loop {
            let before = set.len();
            for e in &self.entries {
                if !set.contains(&e.txid) && e.tx.input.iter().any(|i| set.contains(&i.previous_output.txid)) {
                    set.push(e.txid);
                }
            }
            if set.len() == before {
                return set;
            }
        }
    }
}

/// BIP-113 finality: the lock time is met at the next height and the tip's median time past.
fn is_final(tx: &Transaction, next_height: u32, median_time_past: u32) -> bool {
    let height = bitcoin::absolute::Height::from_consensus(next_height);
    let time = bitcoin::absolute::Time::from_consensus(median_time_past.max(500_000_000));
    match (height, time) {
        (Ok(height), Ok(time)) => tx.lock_time.is_satisfied_by(height, time),
        _ => false,
    }
}

/// BIP-68 relative lock of one input, as Core checks it for the next block: by height, the coin
/// must be `value` blocks deep; by time, `value × 512` seconds must have passed between the
/// median time past before the coin's block and the tip's.
fn sequence_lock_met(
    tx: &Transaction,
    sequence: bitcoin::Sequence,
    coin_height: u32,
    next_height: u32,
    index: &ChainIndex,
) -> bool {
    if tx.version.0 < 2 || !sequence.is_relative_lock_time() {
        return true;
    }
    let value = sequence.0 & 0xffff;
    if sequence.is_time_locked() {
        let since = index.median_time_past_at(coin_height.saturating_sub(1));
        // Core: since + value·512 − 1 < tip's median time past.
        u64::from(since) + (u64::from(value) << 9) <= u64::from(index.median_time_past())
    } else {
        coin_height + value <= next_height
    }
}

/// Core's dust rule: an output worth less than spending it would cost at 3 sat/vB.
fn is_dust(output: &TxOut) -> bool {
    if output.script_pubkey.is_op_return() {
        return false;
    }
    let size = serialize(output).len() as u64;
    let spend =
        if output.script_pubkey.witness_version().is_some() { 32 + 4 + 1 + 107 / 4 + 4 } else { 32 + 4 + 1 + 107 + 4 };
    output.value.to_sat() < (size + spend) * DUST_RELAY_SAT_PER_VB
}

/// Every input's script, verified by Bitcoin Core's interpreter in the kernel with all consensus flags.
pub fn verify_scripts(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), Reject> {
    let kernel_error = |e: bitcoinkernel::KernelError| Reject::rejected(format!("kernel refused the transaction: {e}"));
    let kernel_tx = bitcoinkernel::Transaction::new(&serialize(tx)).map_err(kernel_error)?;
    let scripts = prevouts
        .iter()
        .map(|o| ScriptPubkey::new(o.script_pubkey.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(kernel_error)?;
    let spent: Vec<bitcoinkernel::TxOut> = scripts
        .iter()
        .zip(prevouts)
        .map(|(script, o)| bitcoinkernel::TxOut::new(script, o.value.to_sat() as i64))
        .collect();
    let precomputed = PrecomputedTransactionData::new(&kernel_tx, &spent).map_err(kernel_error)?;
    for (input, (script, prevout)) in scripts.iter().zip(prevouts).enumerate() {
        verify(script, Some(prevout.value.to_sat() as i64), &kernel_tx, input, Some(VERIFY_ALL), &precomputed)
            .map_err(|e| Reject::rejected(format!("mandatory-script-verify-flag-failed (input {input}: {e})")))?;
    }
    Ok(())
}
