//! The RPC methods: Core's names, parameters (positional or named), answers and error codes.

use std::str::FromStr;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::{Address, Amount, Block, BlockHash, Network, OutPoint, Transaction, Txid, Work};
use serde_json::{Value, json};

use crate::answers::{self, Placement};
use crate::error::{NodeError, code};
use crate::node::{KnownBlock, Node, Submission, View};

/// An error answer: Core's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Core's error code.
    pub code: i32,
    /// The message.
    pub message: String,
}

impl RpcError {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<NodeError> for RpcError {
    fn from(e: NodeError) -> Self {
        Self::new(code::MISC_ERROR, e.to_string())
    }
}

/// Settings the methods read.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// What `estimatesmartfee` answers, in satoshis per kvB.
    pub fee_rate_sat_per_kvb: u64,
}

/// Parameter names of each method, in order, to accept named parameters as Core does.
fn param_names(method: &str) -> Option<&'static [&'static str]> {
    Some(match method {
        "getblockchaininfo" | "getblockcount" => &[],
        "getblockhash" => &["height"],
        "getblockheader" => &["blockhash", "verbose"],
        "getblock" => &["blockhash", "verbosity"],
        "getrawtransaction" => &["txid", "verbose", "blockhash"],
        "sendrawtransaction" => &["hexstring", "maxfeerate", "maxburnamount"],
        "testmempoolaccept" => &["rawtxs", "maxfeerate"],
        "getrawmempool" => &["verbose", "mempool_sequence"],
        "gettxout" => &["txid", "n", "include_mempool"],
        "estimatesmartfee" => &["conf_target", "estimate_mode"],
        "generatetoaddress" => &["nblocks", "address", "maxtries"],
        "submitblock" => &["hexdata", "dummy"],
        _ => return None,
    })
}

/// Run one call. Blocking: the kernel runs synchronously.
pub fn call(node: &Node, policy: Policy, method: &str, params: &Value) -> Result<Value, RpcError> {
    let Some(names) = param_names(method) else {
        return Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found"));
    };
    let args = Args(positional(names, params)?);
    match method {
        "getblockchaininfo" => blockchain_info(&node.view()?),
        "getblockcount" => Ok(json!(node.height()?)),
        "getblockhash" => {
            let height: i64 = args.required(0, "height")?;
            let hash = u32::try_from(height).ok().map(|h| node.block_hash(h)).transpose()?.flatten();
            hash.map(|h| json!(h.to_string()))
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "Block height out of range"))
        }
        "getblockheader" => {
            let hash = args.hash(0, "blockhash")?;
            let verbose = args.optional::<bool>(1)?.unwrap_or(true);
            let view = node.view()?;
            let known = found(view.block(&hash)?)?;
            if verbose { Ok(header_answer(&view, &known)?) } else { Ok(json!(serialize_hex(&known.block.header))) }
        }
        "getblock" => {
            let hash = args.hash(0, "blockhash")?;
            let verbosity = match args.0.get(1) {
                None | Some(Value::Null) => 1,
                Some(Value::Bool(b)) => i64::from(*b),
                Some(v) => v.as_i64().ok_or_else(|| type_error(v, "number"))?,
            };
            let view = node.view()?;
            let known = found(view.block(&hash)?)?;
            block_answer(&view, &known, verbosity)
        }
        "getrawtransaction" => raw_transaction(&node.view()?, &args),
        "sendrawtransaction" => {
            let tx = args.transaction(0)?;
            let max = max_fee_rate(args.optional::<f64>(1)?)?;
            match node.send_transaction(&tx, max)? {
                Ok(txid) => Ok(json!(txid.to_string())),
                Err(reject) => Err(RpcError::new(reject.code, reject.reason)),
            }
        }
        "testmempoolaccept" => test_mempool_accept(node, &args),
        "getrawmempool" => {
            let verbose = args.optional::<bool>(0)?.unwrap_or(false);
            let view = node.view()?;
            Ok(raw_mempool(&view, verbose))
        }
        "gettxout" => {
            let txid = args.txid(0, "txid")?;
            let vout: u32 = args.required(1, "n")?;
            let include_mempool = args.optional::<bool>(2)?.unwrap_or(true);
            Ok(tx_out(&node.view()?, OutPoint { txid, vout }, include_mempool))
        }
        "estimatesmartfee" => {
            let target: i64 = args.required(0, "conf_target")?;
            if !(1..=1008).contains(&target) {
                return Err(RpcError::new(code::INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008"));
            }
            if let Some(mode) = args.optional::<String>(1)?
                && !["unset", "economical", "conservative"].contains(&mode.to_lowercase().as_str())
            {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    r#"Invalid estimate_mode parameter, must be one of: "unset", "economical", "conservative""#,
                ));
            }
            Ok(json!({ "feerate": answers::btc(Amount::from_sat(policy.fee_rate_sat_per_kvb)), "blocks": target }))
        }
        "generatetoaddress" => {
            let count: i64 = args.required(0, "nblocks")?;
            let address: String = args.required(1, "address")?;
            let script = Address::from_str(&address)
                .ok()
                .and_then(|a| a.require_network(Network::Regtest).ok())
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))?
                .script_pubkey();
            let count =
                u32::try_from(count).map_err(|_| RpcError::new(code::INVALID_PARAMETER, "nblocks must be >= 0"))?;
            let hashes = node.mine(count, &script)?;
            Ok(json!(hashes.iter().map(ToString::to_string).collect::<Vec<_>>()))
        }
        "submitblock" => {
            let hex: String = args.required(0, "hexdata")?;
            let block: Block = hex::decode(&hex)
                .ok()
                .and_then(|b| deserialize(&b).ok())
                .ok_or_else(|| RpcError::new(code::DESERIALIZATION_ERROR, "Block decode failed"))?;
            if !block.txdata.first().is_some_and(Transaction::is_coinbase) {
                return Err(RpcError::new(code::DESERIALIZATION_ERROR, "Block does not start with a coinbase"));
            }
            Ok(match node.submit_block(&block)? {
                Submission::Accepted => Value::Null,
                Submission::Duplicate => json!("duplicate"),
                Submission::Inconclusive => json!("inconclusive"),
                Submission::Rejected(reason) => json!(reason),
            })
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}

/// Named parameters become positional ones; unknown names are refused as Core does.
fn positional(names: &[&str], params: &Value) -> Result<Vec<Value>, RpcError> {
    match params {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => Ok(a.clone()),
        Value::Object(map) => {
            let mut out = vec![Value::Null; names.len()];
            for (key, value) in map {
                let i = names
                    .iter()
                    .position(|n| n == key)
                    .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, format!("Unknown named parameter {key}")))?;
                out[i] = value.clone();
            }
            while out.last() == Some(&Value::Null) {
                out.pop();
            }
            Ok(out)
        }
        _ => Err(RpcError::new(code::INVALID_REQUEST, "Params must be an array or object")),
    }
}

fn type_error(v: &Value, expected: &str) -> RpcError {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    RpcError::new(code::TYPE_ERROR, format!("JSON value of type {kind} is not of expected type {expected}"))
}

struct Args(Vec<Value>);

impl Args {
    fn optional<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<Option<T>, RpcError> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
                let expected = std::any::type_name::<T>();
                let expected = if expected.contains("bool") {
                    "bool"
                } else if expected.contains("String") {
                    "string"
                } else if expected.contains("Vec") {
                    "array"
                } else {
                    "number"
                };
                type_error(v, expected)
            }),
        }
    }

    fn required<T: serde::de::DeserializeOwned>(&self, i: usize, name: &str) -> Result<T, RpcError> {
        self.optional(i)?.ok_or_else(|| RpcError::new(code::MISC_ERROR, format!("Missing required parameter {name}")))
    }

    fn hex32(&self, i: usize, name: &str) -> Result<[u8; 32], RpcError> {
        let s: String = self.required(i, name)?;
        if s.len() != 64 {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
            ));
        }
        let mut bytes: [u8; 32] = hex::decode(&s).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
            RpcError::new(code::INVALID_PARAMETER, format!("{name} must be hexadecimal string (not '{s}')"))
        })?;
        // Displayed hashes are byte-reversed.
        bytes.reverse();
        Ok(bytes)
    }

    fn hash(&self, i: usize, name: &str) -> Result<BlockHash, RpcError> {
        Ok(BlockHash::from_byte_array(self.hex32(i, name)?))
    }

    fn txid(&self, i: usize, name: &str) -> Result<Txid, RpcError> {
        Ok(Txid::from_byte_array(self.hex32(i, name)?))
    }

    fn transaction(&self, i: usize) -> Result<Transaction, RpcError> {
        let hex: String = self.required(i, "hexstring")?;
        decode_transaction(&hex)
    }
}

fn decode_transaction(hex: &str) -> Result<Transaction, RpcError> {
    hex::decode(hex).ok().and_then(|b| deserialize::<Transaction>(&b).ok()).ok_or_else(|| {
        RpcError::new(code::DESERIALIZATION_ERROR, "TX decode failed. Make sure the tx has at least one input.")
    })
}

/// Core's `maxfeerate` (BTC/kvB, default 0.10, 0 for no cap) in satoshis per kvB.
fn max_fee_rate(given: Option<f64>) -> Result<Option<u64>, RpcError> {
    let btc = given.unwrap_or(0.10);
    let rate = Amount::from_btc(btc).map_err(|_| RpcError::new(code::TYPE_ERROR, "Amount out of range"))?;
    Ok(if rate == Amount::ZERO { None } else { Some(rate.to_sat()) })
}

fn found(block: Option<KnownBlock>) -> Result<KnownBlock, RpcError> {
    block.ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))
}

/// Regtest's every block has the same target, so work adds up per block.
fn chainwork(block: &Block, height: u32) -> Work {
    let one = block.header.work();
    (0..height).fold(one, |acc, _| acc + one)
}

fn header_answer(view: &View<'_>, known: &KnownBlock) -> Result<Value, RpcError> {
    let index = view.index();
    let (confirmations, next) = if known.active {
        (i64::from(index.height()) - i64::from(known.height) + 1, index.at(known.height + 1).map(|b| b.hash))
    } else {
        (-1, None)
    };
    let previous = (known.height > 0).then_some(known.block.header.prev_blockhash);
    let place = Placement {
        height: known.height,
        confirmations,
        median_time: view.median_time(&known.block.block_hash())?,
        chainwork: chainwork(&known.block, known.height),
    };
    Ok(answers::header(&known.block, place, previous, next))
}

fn block_answer(view: &View<'_>, known: &KnownBlock, verbosity: i64) -> Result<Value, RpcError> {
    let block = &known.block;
    match verbosity {
        0 => return Ok(json!(serialize_hex(block))),
        1 | 2 => {}
        _ => return Err(RpcError::new(code::INVALID_PARAMETER, "Verbosity must be 0, 1 or 2 on this node")),
    }
    let mut v = header_answer(view, known)?;
    v["size"] = json!(block.total_size());
    v["strippedsize"] = json!(
        bitcoin::consensus::encode::serialize(&Block {
            header: block.header,
            txdata: block
                .txdata
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t.input.iter_mut().for_each(|i| i.witness.clear());
                    t
                })
                .collect()
        })
        .len()
    );
    v["weight"] = json!(block.weight().to_wu());
    v["tx"] = if verbosity == 1 {
        json!(block.txdata.iter().map(|t| t.compute_txid().to_string()).collect::<Vec<_>>())
    } else {
        let fees = known.active.then(|| view.index().at(known.height).map(|b| b.fees.clone())).flatten();
        json!(
            block
                .txdata
                .iter()
                .enumerate()
                .map(|(i, tx)| {
                    let mut t = answers::transaction(tx);
                    if let Some(fee) = fees.as_ref().and_then(|f| f.get(i)).filter(|_| i > 0) {
                        t["fee"] = answers::btc(*fee);
                    }
                    t
                })
                .collect::<Vec<_>>()
        )
    };
    Ok(v)
}

fn raw_transaction(view: &View<'_>, args: &Args) -> Result<Value, RpcError> {
    let txid = args.txid(0, "txid")?;
    let verbose = match args.0.get(1) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => v.as_i64().ok_or_else(|| type_error(v, "number"))? > 0,
    };
    let in_block = |known: &KnownBlock| known.block.txdata.iter().find(|t| t.compute_txid() == txid).cloned();
    let (tx, block) = if args.0.get(2).is_some_and(|v| !v.is_null()) {
        let hash = args.hash(2, "blockhash")?;
        let known =
            view.block(&hash)?.ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
        let tx = in_block(&known).ok_or_else(|| {
            RpcError::new(
                code::INVALID_ADDRESS_OR_KEY,
                "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
            )
        })?;
        (tx, Some((known, true)))
    } else if let Some(entry) = view.mempool().get(&txid) {
        (entry.tx.clone(), None)
    } else {
        let known = view.index().tx_height(&txid).and_then(|h| view.index().at(h)).map(|b| KnownBlock {
            block: b.block.clone(),
            height: 0,
            active: true,
        });
        let tx = known.as_ref().and_then(in_block).ok_or_else(|| {
            RpcError::new(
                code::INVALID_ADDRESS_OR_KEY,
                "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
            )
        })?;
        (tx, known.map(|k| (k, false)))
    };
    if !verbose {
        return Ok(json!(serialize_hex(&tx)));
    }
    let mut v = answers::transaction(&tx);
    if let Some((known, asked)) = block {
        let hash = known.block.block_hash();
        if asked {
            v["in_active_chain"] = json!(known.active);
        }
        v["blockhash"] = json!(hash.to_string());
        let index = view.index();
        let confirmations = index.height_of(&hash).map_or(0, |h| i64::from(index.height()) - i64::from(h) + 1);
        v["confirmations"] = json!(confirmations);
        v["time"] = json!(known.block.header.time);
        v["blocktime"] = json!(known.block.header.time);
    }
    Ok(v)
}

fn test_mempool_accept(node: &Node, args: &Args) -> Result<Value, RpcError> {
    let raw: Vec<String> = args.required(0, "rawtxs")?;
    if raw.is_empty() || raw.len() > 25 {
        return Err(RpcError::new(code::INVALID_PARAMETER, "Array must contain between 1 and 25 transactions."));
    }
    let max = max_fee_rate(args.optional::<f64>(1)?)?;
    let txs = raw
        .iter()
        .map(|h| {
            decode_transaction(h)
                .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, format!("TX decode failed: {h}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let results = node.test_package(&txs)?;
    Ok(json!(
        txs.iter()
            .zip(results)
            .map(|(tx, result)| {
                let mut v = json!({ "txid": tx.compute_txid().to_string(), "wtxid": tx.compute_wtxid().to_string() });
                match result {
                    Ok(a) => {
                        let over = max.is_some_and(|m| {
                            u128::from(a.entry.fee.to_sat()) * 1000 > u128::from(m) * u128::from(a.entry.vsize)
                        });
                        if over {
                            v["allowed"] = json!(false);
                            v["reject-reason"] = json!("max-fee-exceeded");
                        } else {
                            v["allowed"] = json!(true);
                            v["vsize"] = json!(a.entry.vsize);
                            let rate = Amount::from_sat(a.entry.fee.to_sat() * 1000 / a.entry.vsize.max(1));
                            v["fees"] = json!({
                                "base": answers::btc(a.entry.fee),
                                "effective-feerate": answers::btc(rate),
                                "effective-includes": [a.entry.wtxid.to_string()],
                            });
                        }
                    }
                    Err(reject) => {
                        v["allowed"] = json!(false);
                        v["reject-reason"] = json!(reject.test_reason());
                    }
                }
                v
            })
            .collect::<Vec<_>>()
    ))
}

fn raw_mempool(view: &View<'_>, verbose: bool) -> Value {
    let entries = view.mempool().entries();
    if !verbose {
        return json!(entries.iter().map(|e| e.txid.to_string()).collect::<Vec<_>>());
    }
    let mut map = serde_json::Map::new();
    for e in entries {
        let depends: Vec<String> =
            e.tx.input
                .iter()
                .filter(|i| view.mempool().get(&i.previous_output.txid).is_some())
                .map(|i| i.previous_output.txid.to_string())
                .collect();
        let spent_by: Vec<String> = entries
            .iter()
            .filter(|c| c.tx.input.iter().any(|i| i.previous_output.txid == e.txid))
            .map(|c| c.txid.to_string())
            .collect();
        map.insert(
            e.txid.to_string(),
            json!({
                "vsize": e.vsize,
                "weight": e.weight.to_wu(),
                "time": e.time,
                "height": e.height,
                "wtxid": e.wtxid.to_string(),
                "fees": { "base": answers::btc(e.fee), "modified": answers::btc(e.fee) },
                "depends": depends,
                "spentby": spent_by,
                "bip125-replaceable": true,
                "unbroadcast": false,
            }),
        );
    }
    Value::Object(map)
}

fn tx_out(view: &View<'_>, outpoint: OutPoint, include_mempool: bool) -> Value {
    let index = view.index();
    let best = index.tip().map(|t| t.hash.to_string()).unwrap_or_default();
    let answer = |output: &bitcoin::TxOut, confirmations: i64, coinbase: bool| {
        json!({
            "bestblock": best,
            "confirmations": confirmations,
            "value": answers::btc(output.value),
            "scriptPubKey": answers::script_pubkey(&output.script_pubkey),
            "coinbase": coinbase,
        })
    };
    if include_mempool && view.mempool().spender(&outpoint).is_some() {
        return Value::Null;
    }
    if let Some(coin) = index.coin(&outpoint) {
        return answer(&coin.output, i64::from(index.height()) - i64::from(coin.height) + 1, coin.coinbase);
    }
    if include_mempool && let Some(output) = view.mempool().output(&outpoint) {
        return answer(output, 0, false);
    }
    Value::Null
}

fn blockchain_info(view: &View<'_>) -> Result<Value, RpcError> {
    let index = view.index();
    let tip = index.tip().ok_or_else(|| RpcError::new(code::MISC_ERROR, "no blocks yet"))?;
    let header = &tip.block.header;
    Ok(json!({
        "chain": "regtest",
        "blocks": index.height(),
        "headers": index.height(),
        "bestblockhash": tip.hash.to_string(),
        "bits": format!("{:08x}", header.bits.to_consensus()),
        "target": hex::encode(header.target().to_be_bytes()),
        "difficulty": answers::difficulty(header.target()),
        "time": header.time,
        "mediantime": index.median_time_past(),
        "verificationprogress": 1.0,
        "initialblockdownload": false,
        "chainwork": hex::encode(chainwork(&tip.block, index.height()).to_be_bytes()),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": [],
    }))
}
