#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn the_ethereum_chain_must_be_the_networks_and_the_configured_one() {
    assert!(eth_chain(Some(11_155_111), 11_155_111, 11_155_111).ok);
    let wrong = eth_chain(Some(11_155_111), 1, 1);
    assert!(!wrong.ok && wrong.detail.contains("on chain 1, the configuration says 11155111"), "{wrong:?}");
    let not_the_vaults = eth_chain(None, 424_242, 31_337);
    assert!(
        !not_the_vaults.ok && not_the_vaults.detail.contains("the network's chain_id (the vault's chain) is 424242"),
        "{not_the_vaults:?}"
    );
    assert!(eth_chain(None, 31_337, 31_337).ok);
}

#[test]
fn every_known_group_key_must_be_the_vaults() {
    let on_chain = [7; 32];
    assert!(vault_group_key(on_chain, &[("network.btc_vault.group_key", [7; 32]), ("the share", [7; 32])]).ok);
    let wrong = vault_group_key(on_chain, &[("network.btc_vault.group_key", [7; 32]), ("the share", [8; 32])]);
    assert!(!wrong.ok && wrong.detail.contains("the share makes 0x0808"), "{wrong:?}");
    assert!(!wrong.detail.contains("network.btc_vault.group_key makes"), "only the wrong one is named: {wrong:?}");
    assert!(vault_group_key(on_chain, &[]).detail.contains("nothing to compare with"));
}

#[test]
fn the_key_epoch_must_be_the_one_signed_for() {
    assert!(vault_key_epoch(2, 2).ok);
    assert!(vault_key_epoch(0, 1).detail.contains("epoch 1, ethereum.epoch is 0"));
}

#[test]
fn the_bitcoin_node_must_be_on_the_networks_chain() {
    assert!(btc_network(BtcNetwork::Testnet, "testnet4").ok);
    assert!(btc_network(BtcNetwork::Testnet, "test").ok);
    assert!(btc_network(BtcNetwork::Signet, "signet").ok);
    assert!(btc_network(BtcNetwork::Mainnet, "main").ok);
    let wrong = btc_network(BtcNetwork::Testnet, "regtest");
    assert!(!wrong.ok && wrong.detail.contains("on \"regtest\"") && wrong.detail.contains("test or testnet4"));
    assert!(!btc_network(BtcNetwork::Mainnet, "signet").ok);
}

#[test]
fn missing_rpcs_and_txindex_are_named() {
    assert!(btc_rpcs(&["getblock"], &[]).ok);
    let missing = btc_rpcs(&["getblock", "gettxout"], &["gettxout".into()]);
    assert!(!missing.ok && missing.detail.contains("gettxout"));
    assert!(btc_txindex(&TxIndex::Serves("synced".into())).ok);
    assert!(btc_txindex(&TxIndex::Missing("no index".into())).detail.contains("-txindex=1"));
    assert!(!btc_txindex(&TxIndex::Syncing { height: 9 }).ok);
}

#[test]
fn the_coordinator_key_file_must_be_the_networks_key() {
    assert!(coordinator_key(Some([1; 32]), [1; 32], "k", "mainnet").ok);
    let wrong = coordinator_key(Some([1; 32]), [2; 32], "key file k", "devnet");
    assert!(!wrong.ok && wrong.detail.contains("key file k holds 0x0202"), "{wrong:?}");
    let unset = coordinator_key(None, [2; 32], "k", "sepolia-testnet4");
    assert!(!unset.ok && unset.detail.contains("set it to 0x0202"), "{unset:?}");
    assert!(coordinator_key(None, [2; 32], "k", "devnet").ok, "a devnet may take its key from the file");
}

#[test]
fn the_arweave_wallet_must_cover_a_day_of_batches() {
    assert_eq!(batches_per_day(1_000), 86_400);
    assert_eq!(batches_per_day(0), DAY_MS, "a zero age cannot divide by zero");
    let funded = arweave_funds("addr", 1_000_000, 10, 86_400);
    assert!(funded.ok && funded.detail.contains("(1 days)"), "{funded:?}");
    let short = arweave_funds("addr", 863_999, 10, 86_400);
    assert!(!short.ok && short.detail.contains("fund the wallet"), "{short:?}");
    assert!(!arweave_funds("addr", 0, 0, 86_400).ok, "an empty wallet fails even at price 0");
    assert!(!arweave_funds("addr", u128::MAX - 1, u128::MAX, 2).ok, "overflow saturates, never wraps to cheap");
}

#[test]
fn the_report_names_every_failure_and_prints_a_table() {
    let mut report = Report::default();
    report.push(Row::pass(ETH_CHAIN, "1"));
    report.push(Row::fail(BTC_NETWORK, "wrong node"));
    assert!(!report.passed());
    assert_eq!(report.summary(), "1 of 2 checks failed; fix: bitcoin network: wrong node");
    let table = report.table();
    assert!(
        table.contains("ethereum chain id  ok    1") && table.contains("bitcoin network    FAIL  wrong node"),
        "{table}"
    );
}

#[test]
fn the_share_must_be_of_the_networks_key() {
    assert!(watchman_share([3; 32], Some([3; 32])).ok);
    assert!(watchman_share([3; 32], None).ok);
    assert!(watchman_share([3; 32], Some([4; 32])).detail.contains("wrong share or parameters"));
}

#[test]
fn the_vault_key_is_the_taproot_output_key_of_the_internal_key() {
    // BIP-86's first test vector: internal key cc8a4bc6…, output key a60869f0….
    let internal: [u8; 32] =
        hex::decode("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115").unwrap().try_into().unwrap();
    let output = vault_key_of(internal).unwrap();
    assert_eq!(hex::encode(output), "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c");
    assert_eq!(vault_key_of([0xff; 32]), None);
}
