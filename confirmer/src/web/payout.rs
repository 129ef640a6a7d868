//! An Ethereum withdrawal's payout as the vault shows it, read from this confirmer's own node:
//! the range covering the batch through the vault's bindings (`VaultReader::range_of`: the root
//! the watchmen's group signature put there) and the vault's `Withdrawn(batch, index, token)`
//! log (the leaf was paid), one `eth_getLogs` filtered by its three indexed topics, and the
//! node's head for the paying transaction's confirmations.

use bridge::Address;
use bridge::hashing::keccak256;
use chains::ethereum::VaultReader;
use serde_json::{Value, json};

use super::stages::L1Tx;

/// `Withdrawn(uint64 indexed batch, uint32 indexed index, address indexed token, address
/// recipient, uint256 amount)`, as contracts/sol/Vault.sol declares it.
const WITHDRAWN: &str = "Withdrawn(uint64,uint32,address,address,uint256)";

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
    let root = range.map(|r| format!("0x{}", hex::encode(r.root)));
    let topic0 = format!("0x{}", hex::encode(keccak256(WITHDRAWN.as_bytes())));
    // The log filter names batch, index and token: at most the one log of this leaf (or, after a
    // reorg, its removed copy), so the answer is bounded whatever the chain's length.
    let filter = json!([{
        "address": vault.to_string(),
        "fromBlock": "earliest",
        "toBlock": "latest",
        "topics": [topic0, word(batch), word(u64::from(index)), address_word(&token)],
    }]);
    let logs = call(http, eth_rpc, "eth_getLogs", filter).await?;
    let paying = logs
        .as_array()
        .ok_or("eth_getLogs answered no list")?
        .iter()
        .filter(|log| log["removed"] != Value::Bool(true))
        .find_map(|log| Some((log["transactionHash"].as_str()?.to_owned(), quantity(&log["blockNumber"])?)));
    let paid = match paying {
        None => None,
        Some((hash, block)) => {
            let head = quantity(&call(http, eth_rpc, "eth_blockNumber", json!([])).await?)
                .ok_or("eth_blockNumber answered no hex quantity")?;
            let confirmations = head.saturating_add(1).saturating_sub(block);
            Some(L1Tx { chain: bridge::Chain::Ethereum, hash, confirmations })
        }
    };
    Ok(LeafOnChain { root, paid })
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
