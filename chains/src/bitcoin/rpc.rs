//! A client for Bitcoin Core's JSON-RPC (the subset the bridge uses), with Core's method names and
//! answer shapes, so the same code talks to `bitcoind` and to the workspace's regtest node.

use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{Address, Amount, Block, BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// What went wrong talking to a Core node.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No connection (refused, timed out, reset): the node is down or the URL is wrong.
    #[error(
        "bitcoin node at {url} is unreachable ({reason}); check that it runs, that the RPC URL is right and, for https, \
         that its certificate is trusted (`tls_ca_file`)"
    )]
    Unreachable {
        /// The node's URL (credentials redacted).
        url: String,
        /// The transport error with its causes (a refused connection, an untrusted certificate).
        reason: String,
    },
    /// HTTP 401/403: the credentials are wrong.
    #[error("bitcoin node at {url} refused the RPC credentials (HTTP {status}); check rpc user and password")]
    Unauthorized {
        /// The node's URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not a Core JSON-RPC answer of the expected shape.
    #[error(
        "bitcoin node at {url} answered {method} with a malformed answer: {detail}; is this a Bitcoin Core RPC endpoint?"
    )]
    Malformed {
        /// The node's URL.
        url: String,
        /// The method called.
        method: String,
        /// What did not fit.
        detail: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("bitcoin node refused {method}: {message} (code {code})")]
    Rpc {
        /// The method called.
        method: String,
        /// Core's error code, e.g. -32601 for an unknown method, -26 for a rejected transaction.
        code: i64,
        /// Core's message.
        message: String,
    },
}

impl RpcError {
    /// Core's error code, for a JSON-RPC error.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The longest one Core RPC call may take: `getblock` of a full block or a `scantxoutset` on a
/// busy node takes seconds; a minute means the node is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Core's `RPC_METHOD_NOT_FOUND`.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Core's `RPC_INVALID_ADDRESS_OR_KEY`, also its answer for an unknown transaction or block.
pub const NOT_FOUND: i64 = -5;

/// A Core RPC client. `Debug` hides the password and any credentials in the URL.
#[derive(Clone)]
pub struct CoreRpc {
    url: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for CoreRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreRpc")
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `url` with any `user:password@` replaced, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/').map_or(rest, |(authority, _)| authority).rsplit_once('@') {
            Some((_, host)) => {
                let path = rest.split_once('/').map(|(_, p)| format!("/{p}")).unwrap_or_default();
                format!("{scheme}://<redacted>@{host}{path}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[derive(Deserialize)]
struct Envelope {
    // `None` only when the key is missing (a present `null` is `Some(Null)`): an answer without
    // `result` is no Core answer, and must not read as "no such output".
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    message: String,
}

/// `getblockchaininfo` (the fields the bridge reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BlockchainInfo {
    /// `main`, `test`, `signet` or `regtest`.
    pub chain: String,
    /// Height of the active chain's tip.
    pub blocks: u64,
    /// Height of the best known header.
    pub headers: u64,
    /// The tip's hash.
    #[serde(rename = "bestblockhash")]
    pub best_block_hash: BlockHash,
    /// Still downloading the chain (Core's own judgement); absent from older nodes.
    #[serde(rename = "initialblockdownload", default)]
    pub initial_block_download: bool,
}

/// `getblockheader` verbose (the fields the bridge reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeaderInfo {
    /// The block's hash.
    pub hash: BlockHash,
    /// Confirmations; -1 when the block is not on the active chain.
    pub confirmations: i64,
    /// Height.
    pub height: u64,
    /// Parent (absent for genesis).
    #[serde(rename = "previousblockhash")]
    pub previous: Option<BlockHash>,
    /// Child on the active chain (absent at the tip).
    #[serde(rename = "nextblockhash")]
    pub next: Option<BlockHash>,
    /// Block time.
    pub time: u64,
}

/// One answer of `testmempoolaccept`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MempoolAcceptance {
    /// The transaction.
    pub txid: Txid,
    /// Whether it would be admitted.
    pub allowed: bool,
    /// Virtual size, when allowed.
    pub vsize: Option<u64>,
    /// Why not, when refused.
    #[serde(rename = "reject-reason")]
    pub reject_reason: Option<String>,
}

/// `gettxout`: an unspent output.
#[derive(Debug, Clone, PartialEq)]
pub struct UnspentOutput {
    /// Confirmations (0 in the mempool).
    pub confirmations: u64,
    /// Its value.
    pub value: Amount,
    /// Its script.
    pub script_pubkey: ScriptBuf,
    /// Whether a coinbase created it.
    pub coinbase: bool,
}

/// `getrawtransaction` verbose: the transaction and where the node has it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionInfo {
    /// The transaction, decoded from the answer's `hex` and checked against the txid asked for.
    pub tx: Transaction,
    /// The block holding it; `None` while it is in the mempool.
    pub block_hash: Option<BlockHash>,
    /// Confirmations on the active chain (0 or absent when unconfirmed).
    pub confirmations: u64,
}

#[derive(Deserialize)]
struct RawTransactionInfo {
    hex: String,
    #[serde(rename = "blockhash")]
    block_hash: Option<BlockHash>,
    #[serde(default)]
    confirmations: u64,
}

#[derive(Deserialize)]
struct RawTxOut {
    confirmations: u64,
    value: f64,
    #[serde(rename = "scriptPubKey")]
    script_pubkey: RawScript,
    coinbase: bool,
}

#[derive(Deserialize)]
struct RawScript {
    hex: String,
}

#[derive(Deserialize)]
struct RawFeeEstimate {
    feerate: Option<f64>,
}

impl CoreRpc {
    /// A client for the node at `url` (e.g. `http://127.0.0.1:18443`) with basic auth, trusting
    /// the bundled roots for an `https` URL.
    pub fn new(url: impl Into<String>, user: impl Into<String>, password: impl Into<String>) -> Self {
        let http = crate::http::Tls::default().client(REQUEST_TIMEOUT).unwrap_or_else(|_| reqwest::Client::new());
        Self { url: url.into(), user: user.into(), password: password.into(), http }
    }

    /// A client for the node at `url` (`http`, the convention for a node on the same host, or
    /// `https`, trusting `tls`) with basic auth.
    pub fn with_tls(
        url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
        tls: &crate::http::Tls,
    ) -> Result<Self, crate::http::HttpError> {
        let http = tls.client(REQUEST_TIMEOUT)?;
        Ok(Self { url: url.into(), user: user.into(), password: password.into(), http })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Call `method` with positional `params` and decode the result.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcError> {
        let value = self.call_value(method, params).await?;
        serde_json::from_value(value).map_err(|e| self.malformed(method, format!("unexpected result shape: {e}")))
    }

    async fn call_value(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let body = json!({ "jsonrpc": "1.0", "id": "bridge", "method": method, "params": params });
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RpcError::Unauthorized { url: self.url.clone(), status });
        }
        // Core answers errors with HTTP 404/500 and a JSON body, so the body decides, not the status.
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| {
            let start = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
            self.malformed(method, format!("HTTP {status}, not a JSON-RPC envelope ({e}): {start:?}"))
        })?;
        if let Some(error) = envelope.error {
            return Err(RpcError::Rpc { method: method.into(), code: error.code, message: error.message });
        }
        if status != 200 {
            return Err(self.malformed(method, format!("HTTP {status} without an error object")));
        }
        envelope.result.ok_or_else(|| self.malformed(method, "the answer has no `result`".into()))
    }

    fn unreachable(&self, error: reqwest::Error) -> RpcError {
        // Without the URL in the text: it may carry credentials, which the redacted `url` hides.
        let reason = crate::http::describe(&error.without_url());
        RpcError::Unreachable { url: redact_url(&self.url), reason }
    }

    fn malformed(&self, method: &str, detail: String) -> RpcError {
        RpcError::Malformed { url: self.url.clone(), method: method.into(), detail }
    }

    fn decode_hex<T: bitcoin::consensus::Decodable>(&self, method: &str, hex_text: &str) -> Result<T, RpcError> {
        let bytes = hex::decode(hex_text).map_err(|e| self.malformed(method, format!("not hex: {e}")))?;
        deserialize(&bytes).map_err(|e| self.malformed(method, format!("does not decode: {e}")))
    }

    /// `getblockchaininfo`.
    pub async fn blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        self.call("getblockchaininfo", json!([])).await
    }

    /// `getblockcount`: the tip's height.
    pub async fn block_count(&self) -> Result<u64, RpcError> {
        self.call("getblockcount", json!([])).await
    }

    /// `getblockhash`: the active chain's block at `height`.
    pub async fn block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        self.call("getblockhash", json!([height])).await
    }

    /// `getblockheader` verbose.
    pub async fn header_info(&self, hash: &BlockHash) -> Result<HeaderInfo, RpcError> {
        self.call("getblockheader", json!([hash.to_string(), true])).await
    }

    /// `getblock` verbosity 0, decoded; the block's hash is checked against the one asked for.
    pub async fn block(&self, hash: &BlockHash) -> Result<Block, RpcError> {
        let hex_text: String = self.call("getblock", json!([hash.to_string(), 0])).await?;
        let block: Block = self.decode_hex("getblock", &hex_text)?;
        if block.block_hash() != *hash {
            return Err(self.malformed("getblock", format!("asked for block {hash}, got {}", block.block_hash())));
        }
        Ok(block)
    }

    /// `getrawtransaction` (non-verbose), optionally in a given block.
    pub async fn raw_transaction(&self, txid: &Txid, block: Option<&BlockHash>) -> Result<Transaction, RpcError> {
        let params = match block {
            Some(b) => json!([txid.to_string(), false, b.to_string()]),
            None => json!([txid.to_string(), false]),
        };
        let hex_text: String = self.call("getrawtransaction", params).await?;
        let tx: Transaction = self.decode_hex("getrawtransaction", &hex_text)?;
        if tx.compute_txid() != *txid {
            return Err(self.malformed("getrawtransaction", format!("asked for {txid}, got {}", tx.compute_txid())));
        }
        Ok(tx)
    }

    /// `getrawtransaction` verbose, searching the mempool and the chain (a `bitcoind` needs
    /// `-txindex=1` to find confirmed transactions without a block hash).
    pub async fn transaction_info(&self, txid: &Txid) -> Result<TransactionInfo, RpcError> {
        let raw: RawTransactionInfo = self.call("getrawtransaction", json!([txid.to_string(), true])).await?;
        let tx: Transaction = self.decode_hex("getrawtransaction", &raw.hex)?;
        if tx.compute_txid() != *txid {
            return Err(self.malformed("getrawtransaction", format!("asked for {txid}, got {}", tx.compute_txid())));
        }
        Ok(TransactionInfo { tx, block_hash: raw.block_hash, confirmations: raw.confirmations })
    }

    /// `sendrawtransaction`.
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        self.call("sendrawtransaction", json!([serialize_hex(tx)])).await
    }

    /// `testmempoolaccept` for a package.
    pub async fn test_mempool_accept(&self, txs: &[Transaction]) -> Result<Vec<MempoolAcceptance>, RpcError> {
        let hex: Vec<String> = txs.iter().map(serialize_hex).collect();
        self.call("testmempoolaccept", json!([hex])).await
    }

    /// `getrawmempool`: txids in the mempool.
    pub async fn raw_mempool(&self) -> Result<Vec<Txid>, RpcError> {
        self.call("getrawmempool", json!([false])).await
    }

    /// `gettxout`: the output if unspent (mempool spends count when `include_mempool`).
    pub async fn tx_out(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UnspentOutput>, RpcError> {
        let raw: Option<RawTxOut> =
            self.call("gettxout", json!([outpoint.txid.to_string(), outpoint.vout, include_mempool])).await?;
        let Some(raw) = raw else { return Ok(None) };
        let value = Amount::from_btc(raw.value).map_err(|e| self.malformed("gettxout", format!("value: {e}")))?;
        let script = ScriptBuf::from_hex(&raw.script_pubkey.hex)
            .map_err(|e| self.malformed("gettxout", format!("scriptPubKey: {e}")))?;
        Ok(Some(UnspentOutput {
            confirmations: raw.confirmations,
            value,
            script_pubkey: script,
            coinbase: raw.coinbase,
        }))
    }

    /// `estimatesmartfee`: satoshis per kvB, `None` when the node has no estimate.
    pub async fn estimate_smart_fee(&self, conf_target: u16) -> Result<Option<u64>, RpcError> {
        let raw: RawFeeEstimate = self.call("estimatesmartfee", json!([conf_target])).await?;
        raw.feerate
            .map(|btc| Amount::from_btc(btc).map(|a| a.to_sat()))
            .transpose()
            .map_err(|e| self.malformed("estimatesmartfee", format!("feerate: {e}")))
    }

    /// `generatetoaddress` (regtest only).
    pub async fn generate_to_address(&self, blocks: u32, address: &Address) -> Result<Vec<BlockHash>, RpcError> {
        self.call("generatetoaddress", json!([blocks, address.to_string()])).await
    }

    /// `submitblock`: `None` when accepted, else Core's BIP-22 answer (`duplicate`, `inconclusive`, a reason).
    pub async fn submit_block(&self, block: &Block) -> Result<Option<String>, RpcError> {
        self.call("submitblock", json!([serialize_hex(block)])).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_password_nor_credentials_in_the_url() {
        let rpc = CoreRpc::new("http://alice:url-secret@127.0.0.1:18443/wallet/w", "bridge", "hunter2-secret");
        let shown = format!("{rpc:?}");
        assert!(!shown.contains("hunter2-secret") && !shown.contains("url-secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:18443/wallet/w") && shown.contains("bridge"), "{shown}");
        assert_eq!(redact_url("http://127.0.0.1:8332"), "http://127.0.0.1:8332");
    }
}
