//! An Ethereum withdrawal's payout as the vault shows it, read from this confirmer's own node
//! with plain JSON-RPC calls: `rangeOf(batch)` and `ranges(range)` (the root of the range of
//! batches the watchmen's group signature put there) and the vault's `Withdrawn(batch, index,
//! token)` log (the leaf was paid). Plain JSON-RPC over the
//! confirmer's HTTP client: the two calls need no contract bindings.

use bridge::Address;
use bridge::hashing::keccak256;
use serde_json::{Value, json};

/// `Withdrawn(uint64 indexed batch, uint32 indexed index, address indexed token, address
/// recipient, uint256 amount)`, as contracts/sol/Vault.sol declares it.
const WITHDRAWN: &str = "Withdrawn(uint64,uint32,address,address,uint256)";
const RANGE_OF: &str = "rangeOf(uint64)";
const RANGES: &str = "ranges(uint64)";

/// What the vault holds for leaf `index` of `batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafOnChain {
    /// The withdrawals root of the range covering the batch, once the vault holds one.
    pub root: Option<String>,
    /// The transaction whose `Withdrawn` log paid the leaf.
    pub paid_in: Option<String>,
}

fn word(value: u64) -> String {
    format!("0x{value:064x}")
}

fn address_word(address: &Address) -> String {
    format!("0x{:0>64}", hex::encode(address.as_bytes()))
}

/// Asks `eth_rpc` about leaf `index` of `batch` (paying `token`, zero for ether) in `vault`.
pub async fn leaf(
    http: &reqwest::Client,
    eth_rpc: &str,
    vault: Address,
    batch: u64,
    index: u32,
    token: Address,
) -> Result<LeafOnChain, String> {
    let root = range_root(http, eth_rpc, vault, batch).await?;
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
    let paid_in = logs
        .as_array()
        .ok_or("eth_getLogs answered no list")?
        .iter()
        .filter(|log| log["removed"] != Value::Bool(true))
        .find_map(|log| log["transactionHash"].as_str().map(str::to_owned));
    Ok(LeafOnChain { root, paid_in })
}

/// The root of the vault's range over `batch`, if it holds one: `rangeOf(batch)` answers
/// `(bool found, uint64 range)`, and `ranges(range)` the range's `(bytes32 root, uint64 first,
/// uint64 last)`.
async fn range_root(
    http: &reqwest::Client,
    eth_rpc: &str,
    vault: Address,
    batch: u64,
) -> Result<Option<String>, String> {
    let words = view(http, eth_rpc, vault, RANGE_OF, batch).await?;
    let (Some(found), Some(range)) = (words.first(), words.get(1)) else {
        return Err("rangeOf answered fewer than two words".into());
    };
    if found.bytes().all(|b| b == b'0') {
        return Ok(None);
    }
    // A uint64 fills the word's last 16 hex digits; `view` checked every word is 64 of them.
    let range = u64::from_str_radix(&range[48..], 16).map_err(|e| format!("rangeOf: range number: {e}"))?;
    let words = view(http, eth_rpc, vault, RANGES, range).await?;
    let root = words.first().ok_or("ranges answered no words")?;
    Ok((!root.bytes().all(|b| b == b'0')).then(|| format!("0x{root}")))
}

/// `eth_call` of a view taking one `uint64`: the answer's 32-byte words, in hex without `0x`.
async fn view(
    http: &reqwest::Client,
    eth_rpc: &str,
    vault: Address,
    signature: &str,
    arg: u64,
) -> Result<Vec<String>, String> {
    let selector = &keccak256(signature.as_bytes())[..4];
    let data = format!("0x{}{:064x}", hex::encode(selector), arg);
    let answer = call(http, eth_rpc, "eth_call", json!([{ "to": vault.to_string(), "data": data }, "latest"])).await?;
    let answer = answer.as_str().ok_or("eth_call answered no hex string")?.trim_start_matches("0x");
    if !answer.len().is_multiple_of(64) || !answer.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{signature}: the answer is not whole 32-byte words"));
    }
    Ok(answer.as_bytes().chunks(64).map(|w| String::from_utf8_lossy(w).into_owned()).collect())
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
        use alloy::sol_types::{SolCall, SolEvent};
        assert_eq!(word(7).len(), 66);
        let token = Address([0xab; 20]);
        assert_eq!(address_word(&token), format!("0x{}{}", "0".repeat(24), "ab".repeat(20)));
        // What the vault's compiled ABI says, through the bindings in `contracts`.
        assert_eq!(keccak256(WITHDRAWN.as_bytes()), contracts::Vault::Withdrawn::SIGNATURE_HASH.0);
        assert_eq!(keccak256(RANGE_OF.as_bytes())[..4], contracts::Vault::rangeOfCall::SELECTOR);
        assert_eq!(keccak256(RANGES.as_bytes())[..4], contracts::Vault::rangesCall::SELECTOR);
    }
}
