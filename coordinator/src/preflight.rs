//! `coordinator check`: the preflight of the coordinator's configuration (the file and
//! environment `run` reads). Its key against `network.coordinator_key`; the Ethereum node's
//! chain and the vault (code, group key); the Bitcoin node's network, methods and `-txindex`;
//! and the Arweave wallet's funds for a day of batches. The decisions are `chains::preflight`'s.

use chains::bitcoin::CoreRpc;
use chains::preflight::chains::Endpoints;
use chains::preflight::{self, Report, Row, probe};

use crate::config::{Config, DaKind};

/// A typical published batch, in bytes, for pricing a day of them: a few hundred compressed
/// transfers. `coordinator check --batch-bytes` takes the size this network actually sees.
pub const DEFAULT_BATCH_BYTES: u64 = 16 * 1024;

/// The methods the coordinator's deposit watcher and payout planner call.
const BTC_RPCS: &[&str] = &[
    "getblockchaininfo",
    "getblockcount",
    "getblockhash",
    "getblockheader",
    "getblock",
    "getrawtransaction",
    "gettxout",
    "getrawmempool",
    "estimatesmartfee",
];

/// Runs every check `config` calls for.
pub async fn run(config: &Config, batch_bytes: u64) -> Report {
    let mut report = Report::default();
    let Some(params) = key_and_params(config, &mut report) else {
        return report;
    };
    // The preflight trusts what the role's clients trust, so it reaches exactly what they reach.
    let tls = match config.tls() {
        Ok(tls) => tls,
        Err(error) => {
            report.push(Row::fail(preflight::TLS_CA_FILE, error.to_string()));
            return report;
        }
    };
    let btc = match &config.bitcoin.rpc {
        None => None,
        Some(url) => {
            match CoreRpc::with_tls(
                url.clone(),
                config.bitcoin.rpc_user.clone(),
                config.bitcoin.rpc_password.clone(),
                &tls,
            ) {
                Ok(rpc) => Some(rpc),
                Err(error) => {
                    report.push(Row::fail(preflight::BTC_NETWORK, error.to_string()));
                    None
                }
            }
        }
    };
    let endpoints = Endpoints {
        eth_rpc: config.ethereum.rpc.clone(),
        eth_chain_id: config.ethereum.chain_id,
        btc,
        btc_rpcs: BTC_RPCS.to_vec(),
        btc_txindex: true,
        tls: tls.clone(),
        ..Endpoints::default()
    };
    preflight::chains::check(&params, &endpoints, &mut report).await;
    arweave(config, &tls, batch_bytes, &mut report).await;
    report
}

/// The key file against the configured key, then the parameters they make.
fn key_and_params(config: &Config, report: &mut Report) -> Option<bridge::NetworkParams> {
    let path = config.key_file();
    let key = match crate::node::load_key(&path, false) {
        Ok(key) => key.public_key(),
        Err(error) => {
            report.push(Row::fail(preflight::COORDINATOR_KEY, error.to_string()));
            return None;
        }
    };
    let configured = match config.network.coordinator_key.as_deref().map(bridge::serde_hex::parse_fixed::<32>) {
        None => None,
        Some(Ok(configured)) => Some(configured),
        Some(Err(error)) => {
            report.push(Row::fail(preflight::COORDINATOR_KEY, format!("network.coordinator_key: {error}")));
            return None;
        }
    };
    let source = format!("the key file {}", path.display());
    let row = preflight::coordinator_key(configured, key, &source, &config.network.name);
    // A wrong key is that row's failure alone: the other checks go on with the file's key.
    let mut config = config.clone();
    if !row.ok {
        config.network.coordinator_key = None;
    }
    report.push(row);
    match config.network_params(key) {
        Ok(params) => Some(params),
        Err(error) => {
            report.push(Row::fail("network parameters", error.to_string()));
            None
        }
    }
}

async fn arweave(config: &Config, tls: &chains::http::Tls, batch_bytes: u64, report: &mut Report) {
    if config.da.kind != DaKind::Arweave {
        report.push(Row::pass(preflight::ARWEAVE_FUNDS, "da.kind is dir: nothing to pay"));
        return;
    }
    // `Config::load` refuses arweave without both.
    let (Some(gateway), Some(wallet_path)) = (&config.da.gateway, &config.da.wallet) else {
        report.push(Row::fail(preflight::ARWEAVE_GATEWAY, "da.gateway and da.wallet are required for arweave"));
        return;
    };
    let wallet = match chains::arweave::ArweaveWallet::load(wallet_path) {
        Ok(wallet) => wallet,
        Err(error) => {
            report.push(Row::fail(preflight::ARWEAVE_FUNDS, format!("the wallet {}: {error}", wallet_path.display())));
            return;
        }
    };
    match probe::arweave(gateway, tls, wallet.address(), batch_bytes).await {
        Err(error) => report.push(preflight::unreachable(preflight::ARWEAVE_GATEWAY, gateway, &error)),
        Ok(facts) => report.push(preflight::arweave_funds(
            wallet.address(),
            facts.balance_winston,
            facts.price_per_batch_winston,
            preflight::batches_per_day(config.batch.max_age_ms),
        )),
    }
}
