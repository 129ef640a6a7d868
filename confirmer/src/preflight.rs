//! `confirmer check`: the preflight of a confirmer's options (those `follow` runs with). The
//! parameters against the coordinator's `/info` (same network, same batch-signing key); the
//! Ethereum node's chain and the vault (code, group key); the Bitcoin node's network, methods
//! and `-txindex`, and `--btc-group-key` against the vault; the Arweave gateway answers. The
//! decisions are `chains::preflight`'s.

use std::path::PathBuf;

use bridge::NetworkParams;
use chains::bitcoin::CoreRpc;
use chains::preflight::chains::Endpoints;
use chains::preflight::{self, Report, Row, probe};

/// What `confirmer follow` is configured with, as far as the preflight reads it.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub params: PathBuf,
    pub coordinator: Option<String>,
    pub arweave: Option<String>,
    pub eth_rpc: Option<String>,
    pub eth_chain_id: Option<u64>,
    pub btc: Option<CoreRpc>,
    /// `--btc-group-key`, as given (hex).
    pub btc_group_key: Option<String>,
    /// The trust `follow`'s clients use (`--tls-ca-file`).
    pub tls: chains::http::Tls,
}

pub async fn run(setup: &Setup) -> Report {
    let mut report = Report::default();
    let params = match read_params(&setup.params) {
        Ok(params) => params,
        Err(error) => {
            report.push(Row::fail("network parameters", error));
            return report;
        }
    };
    if let Some(url) = &setup.coordinator {
        match probe::coordinator_info(url, &setup.tls).await {
            Ok((genesis, key)) => report.push(preflight::coordinator_network(&params, &genesis, &key)),
            Err(error) => report.push(preflight::unreachable(preflight::COORDINATOR_NETWORK, url, &error)),
        }
    }
    let mut endpoints = Endpoints {
        eth_rpc: setup.eth_rpc.clone(),
        eth_chain_id: setup.eth_chain_id,
        btc: setup.btc.clone(),
        btc_rpcs: probe::FOLLOW_RPCS.to_vec(),
        btc_txindex: true,
        tls: setup.tls.clone(),
        ..Endpoints::default()
    };
    if let Some(text) = &setup.btc_group_key {
        // `follow` takes it with or without 0x.
        match bridge::serde_hex::parse_fixed::<32>(&format!("0x{}", text.trim_start_matches("0x"))) {
            Ok(key) => endpoints.group_keys.push(("--btc-group-key".into(), key)),
            Err(error) => report.push(Row::fail(preflight::VAULT_GROUP_KEY, format!("--btc-group-key: {error}"))),
        }
    }
    preflight::chains::check(&params, &endpoints, &mut report).await;
    if let Some(url) = &setup.arweave {
        report.push(preflight::chains::gateway(url, &setup.tls).await);
    }
    report
}

fn read_params(path: &std::path::Path) -> Result<NetworkParams, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let params: NetworkParams =
        serde_json::from_str(&text).map_err(|e| format!("{} is not network parameters: {e}", path.display()))?;
    params.validate().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(params)
}
