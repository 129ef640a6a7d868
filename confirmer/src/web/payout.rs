//! An Ethereum withdrawal's payout as the vault shows it, read from this confirmer's own node:
//! the range covering the batch through the vault's bindings (`VaultReader::range_of`: the root
//! the watchmen's group signature put there), whether the vault paid the leaf (its bitmap,
//! `isPaid`), and, if it did, the vault's `Withdrawn(batch, index, token)` log, looked for
//! backwards from the head in windows of [`LOOKUP_WINDOW`] blocks filtered by its three indexed
//! topics, for the paying transaction and its confirmations.
//!
//! One request from the first block to the head was refused by every hosted provider once the
//! chain outgrew its range cap (10,000 blocks is common): the page showed an error for every
//! withdrawal. Windows from the head find a recent payment in one request, and a bounded number
//! of them keeps a page view from costing the node more than a few requests.

use bridge::Address;
use bridge::hashing::keccak256;
use chains::ethereum::VaultReader;
use serde_json::{Value, json};

use super::stages::L1Tx;

/// `Withdrawn(uint64 indexed batch, uint32 indexed index, address indexed token, address
/// recipient, uint256 amount)`, as contracts/sol/Vault.sol declares it.
const WITHDRAWN: &str = "Withdrawn(uint64,uint32,address,address,uint256)";

/// Blocks per `eth_getLogs` request of the lookup (narrower after a refusal).
const LOOKUP_WINDOW: u64 = chains::ethereum_view::LOG_RANGE;

/// The most `eth_getLogs` requests one lookup makes, refused ones included: at full width a
/// payment within the last 200,000 blocks (four weeks of Ethereum) is found. An older one is
/// reported paid, without its transaction.
const MAX_LOOKUP_REQUESTS: u32 = 20;

/// What the vault holds for leaf `index` of `batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafOnChain {
    /// The withdrawals root of the range covering the batch, once the vault holds one.
    pub root: Option<String>,
    /// The transaction whose `Withdrawn` log paid the leaf, with its confirmations.
    pub paid: Option<L1Tx>,
}

fn word(value: u64) -> String {
    format!("0x{value:064x}")
}

fn address_word(address: &Address) -> String {
    format!("0x{:0>64}", hex::encode(address.as_bytes()))
}

/// Asks the vault (through `reader` and `eth_rpc`, the same node) about leaf `index` of `batch`
/// (paying `token`, zero for ether).
pub async fn leaf(
    reader: &VaultReader,
    http: &reqwest::Client,
    eth_rpc: &str,
    vault: Address,
    batch: u64,
    index: u32,
    token: Address,
) -> Result<LeafOnChain, String> {
    let range = reader.range_of(batch).await.map_err(|e| format!("the vault's rangeOf({batch}): {e}"))?;
    let Some(range) = range else { return Ok(LeafOnChain { root: None, paid: None }) };
    let root = Some(format!("0x{}", hex::encode(range.root)));
    let paid = reader.is_paid(batch, index).await.map_err(|e| format!("the vault's isPaid({batch}, {index}): {e}"))?;
    if !paid {
        return Ok(LeafOnChain { root, paid: None });
    }
    let head = quantity(&call(http, eth_rpc, "eth_blockNumber", json!([])).await?)
        .ok_or("eth_blockNumber answered no hex quantity")?;
    let topics = json!([
        format!("0x{}", hex::encode(keccak256(WITHDRAWN.as_bytes()))),
        word(batch),
        word(u64::from(index)),
        address_word(&token),
    ]);
    let (mut to, mut window, mut lowest) = (head, LOOKUP_WINDOW, head.saturating_add(1));
    for _ in 0..MAX_LOOKUP_REQUESTS {
        let from = to.saturating_sub(window - 1);
        // The filter names batch, index and token: at most the one log of this leaf (or, after
        // a reorg, its removed copy) in any window.
        let filter = json!([{
            "address": vault.to_string(),
            "fromBlock": format!("0x{from:x}"),
            "toBlock": format!("0x{to:x}"),
            "topics": topics,
        }]);
        let logs = match call(http, eth_rpc, "eth_getLogs", filter).await {
            Ok(logs) => logs,
            // Most likely wider than the node allows: ask for fewer blocks.
            Err(_) if window > 1 => {
                window /= 2;
                continue;
            }
            Err(why) => return Err(why),
        };
        let paying = logs
            .as_array()
            .ok_or("eth_getLogs answered no list")?
            .iter()
            .filter(|log| log["removed"] != Value::Bool(true))
            .find_map(|log| Some((log["transactionHash"].as_str()?.to_owned(), quantity(&log["blockNumber"])?)));
        if let Some((hash, block)) = paying {
            let confirmations = head.saturating_add(1).saturating_sub(block);
            return Ok(LeafOnChain { root, paid: Some(L1Tx { chain: bridge::Chain::Ethereum, hash, confirmations }) });
        }
        lowest = from;
        if from == 0 {
            break;
        }
        to = from - 1;
    }
    Err(format!(
        "the vault has paid leaf {index} of batch {batch} (its bitmap says so), but its Withdrawn log is not in the \
         blocks looked through (blocks {lowest} to {head}); look it up on an explorer"
    ))
}

/// A JSON-RPC quantity (`"0x1a"`); `None` for anything else (a pending log has no block).
fn quantity(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.strip_prefix("0x")?, 16).ok()
}

async fn call(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let response = http.post(url).json(&body).send().await.map_err(|e| format!("{method}: {e}"))?;
    let answer: Value = response.json().await.map_err(|e| format!("{method}: not JSON: {e}"))?;
    if let Some(error) = answer.get("error") {
        return Err(format!("{method}: {error}"));
    }
    answer.get("result").cloned().ok_or_else(|| format!("{method}: no result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_selector_are_the_vaults() {
        use alloy::sol_types::SolEvent;
        assert_eq!(word(7).len(), 66);
        assert_eq!(quantity(&json!("0x1a")), Some(26));
        assert_eq!(quantity(&json!(null)), None);
        assert_eq!(quantity(&json!("26")), None);
        let token = Address([0xab; 20]);
        assert_eq!(address_word(&token), format!("0x{}{}", "0".repeat(24), "ab".repeat(20)));
        // What the vault's compiled ABI says, through the bindings in `contracts`.
        assert_eq!(keccak256(WITHDRAWN.as_bytes()), contracts::Vault::Withdrawn::SIGNATURE_HASH.0);
    }
}
