//! The deployment files are read by the coordinator's own loader: the compose/systemd
//! configuration and the public-testnet example (Sepolia, testnet4, Arweave mainnet) load, and
//! the example's placeholders are refused until the operator replaces them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::PathBuf;

use bridge::BtcNetwork;
use coordinator::config::{Config, DaKind};

fn deploy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/deploy").join(name)
}

#[test]
fn the_public_testnet_coordinator_file_loads_with_the_real_loader() {
    let config = Config::load(Some(&deploy_file("testnet/coordinator.toml")), []).unwrap();
    assert_eq!(config.network.btc_network, BtcNetwork::Testnet);
    assert_eq!(config.ethereum.chain_id, Some(11_155_111));
    assert_eq!(config.network.chain_id, 11_155_111, "the EIP-712 chainId is the vault's chain, Sepolia");
    assert_eq!(config.da.kind, DaKind::Arweave);
    assert_eq!(config.da.gateway.as_deref(), Some("https://arweave.net"));
    assert!(config.bitcoin.rpc.as_deref().is_some_and(|u| u.ends_with(":48332")), "testnet4's RPC port");
    assert!(!config.coordinator.create_key, "a real network never makes a key silently");
    // The zero placeholders make no network: the group key is no key.
    let error = config.network_params([0x11; 32]).unwrap_err().to_string();
    assert!(error.contains("network.coordinator_key") || error.contains("group key"), "{error}");
}

#[test]
fn the_deployed_coordinator_file_loads_with_the_real_loader() {
    let config = Config::load(Some(&deploy_file("coordinator.toml")), []).unwrap();
    assert!(!config.coordinator.create_key);
}
