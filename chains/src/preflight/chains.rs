//! The checks every role shares: its Ethereum node and vault, and its Bitcoin node, against
//! the network's parameters and the keys the role knows.

use bridge::NetworkParams;

use super::{BTC_NETWORK, ETH_CHAIN, Report, Row, VAULT_GROUP_KEY, probe};
use crate::bitcoin::CoreRpc;

/// A role's chain endpoints and what it knows to compare them with.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// The Ethereum JSON-RPC URL, with the chain id it must have (when configured).
    pub eth_rpc: Option<String>,
    pub eth_chain_id: Option<u64>,
    /// Group keys (internal, `x(P)`) whose vault key `x(Q)` the vault must hold, each named by
    /// where it came from (the network's Bitcoin vault key is added from the parameters).
    pub group_keys: Vec<(String, [u8; 32])>,
    /// The key epoch the role signs for (the watchman).
    pub key_epoch: Option<u64>,
    /// The Bitcoin node, the methods the role calls, and whether it needs `-txindex`.
    pub btc: Option<CoreRpc>,
    pub btc_rpcs: Vec<&'static str>,
    pub btc_txindex: bool,
    /// The trust the role's HTTP clients use (its `tls_ca_file`), so the preflight reaches
    /// exactly what the role reaches.
    pub tls: crate::http::Tls,
}

/// Runs the Ethereum and Bitcoin checks `endpoints` call for, into `report`.
pub async fn check(params: &NetworkParams, endpoints: &Endpoints, report: &mut Report) {
    if let Some(url) = &endpoints.eth_rpc {
        match probe::ethereum(url, &endpoints.tls, params.eth_vault).await {
            Err(error) => report.push(super::unreachable(ETH_CHAIN, url, &error)),
            Ok(facts) => ethereum(params, endpoints, &facts, report),
        }
    }
    if let Some(rpc) = &endpoints.btc {
        let endpoint = crate::bitcoin::rpc::redact_url(rpc.url());
        match probe::bitcoin(rpc, &endpoints.btc_rpcs).await {
            Err(error) => report.push(super::unreachable(BTC_NETWORK, &endpoint, &error)),
            Ok(facts) => {
                report.push(super::btc_network(params.btc_network, &facts.chain));
                report.push(super::btc_rpcs(&endpoints.btc_rpcs, &facts.missing));
                if endpoints.btc_txindex {
                    report.push(super::btc_txindex(&facts.txindex));
                }
            }
        }
    }
}

/// The decisions on what the Ethereum node said.
fn ethereum(params: &NetworkParams, endpoints: &Endpoints, facts: &probe::EthFacts, report: &mut Report) {
    report.push(super::eth_chain(endpoints.eth_chain_id, params.chain_id, facts.chain_id));
    let vault = params.eth_vault.to_string();
    let guardian = facts.vault.as_ref().map(|v| v.guardian).unwrap_or_default();
    report.push(super::vault_code(&vault, contracts::code::verify_vault(&facts.code, guardian)));
    let Some(state) = &facts.vault else {
        report.push(Row::fail(VAULT_GROUP_KEY, format!("{vault} does not answer groupKey(): it is not the vault")));
        return;
    };
    let mut internal: Vec<(&str, [u8; 32])> = Vec::new();
    if let Some(btc_vault) = &params.btc_vault {
        internal.push(("network.btc_vault.group_key", btc_vault.group_key));
    }
    internal.extend(endpoints.group_keys.iter().map(|(source, key)| (source.as_str(), *key)));
    let mut known = Vec::new();
    for (source, key) in internal {
        match super::vault_key_of(key) {
            Some(vault_key) => known.push((source, vault_key)),
            None => {
                report.push(Row::fail(VAULT_GROUP_KEY, format!("{source} 0x{} is not a public key", hex::encode(key))));
                return;
            }
        }
    }
    report.push(super::vault_group_key(state.group_key, &known));
    if let Some(epoch) = endpoints.key_epoch {
        report.push(super::vault_key_epoch(epoch, state.key_epoch));
    }
}

/// The Arweave gateway a follower reads batches from: it answers as a gateway.
pub async fn gateway(url: &str, tls: &crate::http::Tls) -> Row {
    match probe::gateway_height(url, tls).await {
        Ok(height) => Row::pass(super::ARWEAVE_GATEWAY, format!("{url} at height {height}")),
        Err(error) => super::unreachable(super::ARWEAVE_GATEWAY, url, &error),
    }
}
