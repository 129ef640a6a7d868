//! `watchman check`: the preflight of a watchman's configuration. Its share opens and is of the
//! network's key; its Ethereum node is on the configured chain, with the committed vault holding
//! this share's group key at the configured epoch; its Bitcoin node is on the network's chain,
//! serves the methods this watchman calls and has `-txindex`; its Arweave gateway answers. The
//! decisions are `chains::preflight`'s.

use bridge::NetworkParams;
use chains::bitcoin::CoreRpc;
use chains::preflight::chains::Endpoints;
use chains::preflight::{self, Report, Row, probe};
use tss::keystore::Passphrase;

use crate::config::Config;

/// Runs the checks, prints the table, and fails naming what to fix.
pub async fn print(config: &Config) -> anyhow::Result<()> {
    let report = run(config).await;
    print!("{}", report.table());
    if !report.passed() {
        anyhow::bail!("{}", report.summary());
    }
    println!("{}", report.summary());
    Ok(())
}

pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    let params = match read_params(config) {
        Ok(params) => params,
        Err(error) => {
            report.push(Row::fail("network parameters", format!("{error:#}")));
            return report;
        }
    };
    // The preflight trusts what the watchman's clients trust (`tls_ca_file`).
    let tls = match chains::http::Tls::load(config.tls_ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(error) => {
            report.push(Row::fail(preflight::TLS_CA_FILE, error.to_string()));
            return report;
        }
    };
    let mut endpoints = Endpoints { tls: tls.clone(), ..Endpoints::default() };
    match share_key(config) {
        Ok(key) => {
            report.push(preflight::watchman_share(key, params.btc_vault.map(|v| v.group_key)));
            endpoints.group_keys.push(("this watchman's share".into(), key));
        }
        Err(error) => report.push(Row::fail(preflight::WATCHMAN_SHARE, format!("{error:#}"))),
    }
    if let Some(eth) = &config.ethereum {
        endpoints.eth_rpc = Some(eth.rpc.clone());
        endpoints.eth_chain_id = eth.chain_id;
        endpoints.key_epoch = Some(eth.epoch);
    }
    if let Some(b) = &config.bitcoin {
        let password = std::env::var("WATCHMAN_BTC_RPC_PASSWORD").unwrap_or_default();
        match CoreRpc::with_tls(b.rpc.clone(), b.rpc_user.clone(), password, &tls) {
            Ok(rpc) => endpoints.btc = Some(rpc),
            Err(error) => report.push(Row::fail(preflight::BTC_NETWORK, error.to_string())),
        }
        endpoints.btc_rpcs = probe::FOLLOW_RPCS.to_vec();
        if b.pay {
            endpoints.btc_rpcs.extend_from_slice(probe::PAY_RPCS);
        }
        endpoints.btc_txindex = true;
    }
    preflight::chains::check(&params, &endpoints, &mut report).await;
    if let Some(url) = &config.da.arweave {
        report.push(preflight::chains::gateway(url, &tls).await);
    }
    report
}

fn read_params(config: &Config) -> anyhow::Result<NetworkParams> {
    use anyhow::Context;
    let text = std::fs::read_to_string(&config.params)
        .with_context(|| format!("cannot read the network parameters {}", config.params.display()))?;
    let params: NetworkParams = serde_json::from_str(&text).context("the network parameters")?;
    params.validate().context("the network parameters")?;
    Ok(params)
}

/// The group key of this watchman's share (opening it proves the passphrase too).
fn share_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    use anyhow::Context;
    let passphrase = match &config.mesh.passphrase_file {
        Some(file) => Passphrase::from_file(file)?,
        None => Passphrase::from_env("WATCHMAN_PASSPHRASE")
            .context("set WATCHMAN_PASSPHRASE or mesh.passphrase_file to open the key share")?,
    };
    let share = tss::KeyShare::load(&config.mesh.share, &passphrase)
        .with_context(|| format!("opening the key share {}", config.mesh.share.display()))?;
    Ok(tss::GroupKey::of(&share.public)?.internal_key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    #[test]
    fn the_public_testnet_watchman_file_loads_with_the_real_loader() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/deploy/testnet/watchman.toml");
        let config = Config::load(&path).unwrap();
        let eth = config.ethereum.unwrap();
        assert_eq!(eth.chain_id, Some(11_155_111));
        assert!(eth.guardian_key_file.is_some() && eth.sender_key_file.is_some());
        assert_eq!(config.da.arweave.as_deref(), Some("https://arweave.net"));
        assert!(config.bitcoin.unwrap().rpc.ends_with(":48332"), "testnet4's RPC port");
        // Relative paths are the configuration file's neighbours.
        assert!(config.mesh.share.starts_with(path.parent().unwrap()));
    }
}
