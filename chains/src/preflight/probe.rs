//! Gathering the facts the preflight decides on: one call per question, each bounded by
//! [`PROBE_TIMEOUT`], nothing written anywhere (a preflight must be safe to run against a live
//! network at any time).

use std::time::Duration;

use alloy::providers::Provider;

use crate::http::Tls;
use contracts::Vault;
use serde_json::{Value, json};

use super::TxIndex;
use crate::bitcoin::CoreRpc;
use crate::bitcoin::rpc::{METHOD_NOT_FOUND, RpcError};

/// How long one endpoint may take to answer all of a check's questions: a node that needs
/// longer is not one to run against, and a preflight that hangs tells the operator nothing.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the Ethereum node says about its chain and the vault address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthFacts {
    pub chain_id: u64,
    /// The code at the vault address (empty: no contract there).
    pub code: Vec<u8>,
    /// The vault's state, when the code there answers the vault's getters.
    pub vault: Option<VaultFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultFacts {
    pub group_key: [u8; 32],
    pub key_epoch: u64,
    pub guardian: alloy::primitives::Address,
}

/// Asks the node at `url` for its chain id, the code at `vault`, and the vault's key, epoch
/// and guardian.
pub async fn ethereum(url: &str, tls: &Tls, vault: bridge::Address) -> Result<EthFacts, String> {
    let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
    let ask = async {
        let chain_id = provider.get_chain_id().await.map_err(|e| format!("eth_chainId: {e}"))?;
        let address = contracts::to_alloy(vault);
        let code = provider.get_code_at(address).await.map_err(|e| format!("eth_getCode: {e}"))?.to_vec();
        let vault = if code.is_empty() {
            None
        } else {
            let contract = Vault::new(address, provider.clone());
            // Another contract at the address need not answer these: that is a fact too.
            match (contract.groupKey().call().await, contract.keyEpoch().call().await, contract.guardian().call().await)
            {
                (Ok(key), Ok(key_epoch), Ok(guardian)) => {
                    Some(VaultFacts { group_key: key.to_be_bytes::<32>(), key_epoch, guardian })
                }
                _ => None,
            }
        };
        Ok(EthFacts { chain_id, code, vault })
    };
    tokio::time::timeout(PROBE_TIMEOUT, ask).await.map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
}

/// The methods a role that follows the chain calls (deposits, payout confirmations).
pub const FOLLOW_RPCS: &[&str] = &[
    "getblockchaininfo",
    "getblockcount",
    "getblockhash",
    "getblockheader",
    "getblock",
    "getrawtransaction",
    "gettxout",
];

/// The methods a role that plans or broadcasts payouts calls besides.
pub const PAY_RPCS: &[&str] = &["estimatesmartfee", "getrawmempool", "testmempoolaccept", "sendrawtransaction"];

/// What the Bitcoin node says about its chain, its methods and its transaction index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcFacts {
    /// `getblockchaininfo`'s `chain`.
    pub chain: String,
    pub height: u64,
    /// Of the methods asked about, those the node does not know.
    pub missing: Vec<String>,
    pub txindex: TxIndex,
}

/// Asks the node for its chain, whether it knows each of `needed` (called without arguments:
/// Core looks the method up before it reads them, so a known method answers with an argument
/// error, never acts) and whether it finds a confirmed transaction by txid alone.
pub async fn bitcoin(rpc: &CoreRpc, needed: &[&str]) -> Result<BtcFacts, String> {
    let ask = async {
        let info = rpc.blockchain_info().await.map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for method in needed {
            if let Err(error) = rpc.call::<Value>(method, json!([])).await
                && error.code() == Some(METHOD_NOT_FOUND)
            {
                missing.push((*method).to_owned());
            }
        }
        let txindex = txindex(rpc, info.blocks).await?;
        Ok(BtcFacts { chain: info.chain, height: info.blocks, missing, txindex })
    };
    tokio::time::timeout(PROBE_TIMEOUT, ask).await.map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
}

/// `getindexinfo` where the node has it (Core 0.21+); otherwise (the workspace's test node) the
/// lookup itself: block 1's coinbase by txid, which only a transaction index finds.
async fn txindex(rpc: &CoreRpc, height: u64) -> Result<TxIndex, String> {
    match rpc.call::<Value>("getindexinfo", json!(["txindex"])).await {
        Ok(info) => {
            let Some(index) = info.get("txindex") else {
                return Ok(TxIndex::Missing("getindexinfo lists no txindex".into()));
            };
            let synced = index.get("synced").and_then(Value::as_bool).unwrap_or(false);
            let at = index.get("best_block_height").and_then(Value::as_u64).unwrap_or(0);
            return Ok(if synced {
                TxIndex::Serves(format!("synced to {at}"))
            } else {
                TxIndex::Syncing { height: at }
            });
        }
        Err(error) if error.code() == Some(METHOD_NOT_FOUND) => {}
        Err(error) => return Err(error.to_string()),
    }
    if height == 0 {
        return Ok(TxIndex::Serves("no block to look up yet (height 0)".into()));
    }
    let hash = rpc.block_hash(1).await.map_err(|e| e.to_string())?;
    let block = rpc.block(&hash).await.map_err(|e| e.to_string())?;
    let Some(coinbase) = block.txdata.first() else {
        return Err("block 1 has no transactions".into());
    };
    match rpc.raw_transaction(&coinbase.compute_txid(), None).await {
        Ok(_) => Ok(TxIndex::Serves("found block 1's coinbase by txid".into())),
        Err(RpcError::Rpc { message, .. }) => Ok(TxIndex::Missing(message)),
        Err(error) => Err(error.to_string()),
    }
}

/// What the Arweave gateway says about the wallet and the price of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArweaveFacts {
    pub balance_winston: u128,
    pub price_per_batch_winston: u128,
}

/// The wallet's balance (`/wallet/{address}/balance`) and the fee for `batch_bytes`
/// (`/price/{bytes}`).
pub async fn arweave(gateway: &str, tls: &Tls, address: &str, batch_bytes: u64) -> Result<ArweaveFacts, String> {
    let retry = crate::arweave::RetryPolicy { attempts: 2, ..crate::arweave::RetryPolicy::default() };
    let client = crate::arweave::Gateway::with_tls(gateway, retry, tls).map_err(|e| e.to_string())?;
    let ask = async {
        let price_per_batch_winston = client.price_winston(batch_bytes).await.map_err(|e| e.to_string())?;
        let balance_winston = client.wallet_balance_winston(address).await.map_err(|e| e.to_string())?;
        Ok(ArweaveFacts { balance_winston, price_per_batch_winston })
    };
    tokio::time::timeout(PROBE_TIMEOUT, ask).await.map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
}

/// The gateway's block height: it answers, and it is an Arweave gateway.
pub async fn gateway_height(gateway: &str, tls: &Tls) -> Result<u64, String> {
    let retry = crate::arweave::RetryPolicy { attempts: 2, ..crate::arweave::RetryPolicy::default() };
    let client = crate::arweave::Gateway::with_tls(gateway, retry, tls).map_err(|e| e.to_string())?;
    tokio::time::timeout(PROBE_TIMEOUT, client.height())
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())
}

/// The coordinator's `/info`: its network's genesis hash and coordinator key, hex.
pub async fn coordinator_info(url: &str, tls: &Tls) -> Result<(String, String), String> {
    let url = format!("{}/info", url.trim_end_matches('/'));
    let client = tls.client(PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    let info: Value = client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let field = |name: &str| info.get(name).and_then(Value::as_str).map(str::to_owned);
    match (field("genesis_hash"), field("coordinator_key")) {
        (Some(genesis), Some(key)) => Ok((genesis, key)),
        _ => Err(format!("{url} has no genesis_hash and coordinator_key: is it a coordinator?")),
    }
}
