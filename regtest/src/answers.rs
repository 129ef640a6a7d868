//! Core's JSON answer shapes for transactions, scripts and block headers.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Address, Amount, Block, Network, Script, Target, Transaction, Work};
use serde_json::{Value, json};

/// An amount as Core prints it: a JSON number in BTC.
pub fn btc(amount: Amount) -> Value {
    json!(amount.to_btc())
}

/// Core's name for the kind of a script (`scriptPubKey.type`).
pub fn script_type(script: &Script) -> &'static str {
    if script.is_p2tr() {
        "witness_v1_taproot"
    } else if script.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if script.is_p2wsh() {
        "witness_v0_scripthash"
    } else if script.is_p2pkh() {
        "pubkeyhash"
    } else if script.is_p2sh() {
        "scripthash"
    } else if script.is_op_return() {
        "nulldata"
    } else if script.is_p2pk() {
        "pubkey"
    } else if script.witness_version().is_some() {
        "witness_unknown"
    } else {
        "nonstandard"
    }
}

/// `scriptPubKey` as Core shows it (without the descriptor).
pub fn script_pubkey(script: &Script) -> Value {
    let mut v = json!({
        "asm": script.to_asm_string(),
        "hex": hex::encode(script.as_bytes()),
        "type": script_type(script),
    });
    if let Ok(address) = Address::from_script(script, Network::Regtest) {
        v["address"] = json!(address.to_string());
    }
    v
}

/// A decoded transaction as in `getrawtransaction` verbose and `getblock` verbosity 2.
pub fn transaction(tx: &Transaction) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let mut v = if tx.is_coinbase() {
                json!({ "coinbase": hex::encode(input.script_sig.as_bytes()) })
            } else {
                json!({
                    "txid": input.previous_output.txid.to_string(),
                    "vout": input.previous_output.vout,
                    "scriptSig": { "asm": input.script_sig.to_asm_string(), "hex": hex::encode(input.script_sig.as_bytes()) },
                })
            };
            if !input.witness.is_empty() {
                v["txinwitness"] = json!(input.witness.iter().map(hex::encode).collect::<Vec<_>>());
            }
            v["sequence"] = json!(input.sequence.0);
            v
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, o)| json!({ "value": btc(o.value), "n": n, "scriptPubKey": script_pubkey(&o.script_pubkey) }))
        .collect();
    json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": tx.total_size(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
        "hex": serialize_hex(tx),
    })
}

/// Difficulty as Core computes it: the genesis target over this target.
pub fn difficulty(target: Target) -> f64 {
    target.difficulty_float()
}

/// Where a block sits relative to the active chain, for header answers.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Its height.
    pub height: u32,
    /// Confirmations, or -1 when it is not on the active chain.
    pub confirmations: i64,
    /// Median time past ending at it.
    pub median_time: u32,
    /// Total work up to and including it.
    pub chainwork: Work,
}

/// `getblockheader` verbose answer fields (also the head of `getblock` verbosity ≥ 1).
pub fn header(
    block: &Block,
    place: Placement,
    previous: Option<bitcoin::BlockHash>,
    next: Option<bitcoin::BlockHash>,
) -> Value {
    let h = &block.header;
    let mut v = json!({
        "hash": h.block_hash().to_string(),
        "confirmations": place.confirmations,
        "height": place.height,
        "version": h.version.to_consensus(),
        "versionHex": format!("{:08x}", h.version.to_consensus()),
        "merkleroot": h.merkle_root.to_string(),
        "time": h.time,
        "mediantime": place.median_time,
        "nonce": h.nonce,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        "target": hex::encode(h.target().to_be_bytes()),
        "difficulty": difficulty(h.target()),
        "chainwork": hex::encode(place.chainwork.to_be_bytes()),
        "nTx": block.txdata.len(),
    });
    if let Some(p) = previous {
        v["previousblockhash"] = json!(p.to_string());
    }
    if let Some(n) = next {
        v["nextblockhash"] = json!(n.to_string());
    }
    v
}
