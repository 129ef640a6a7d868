//! Every HTTP client of `chains` over https: an HTTPS proxy with a test CA in front of anvil,
//! arlocal and the Bitcoin test node. With the CA trusted (`Tls::load(Some(ca))`) each client
//! works through it; without, each refuses the server and says why (the certificate's issuer is
//! unknown, or it names another host). A CA file that is missing or not PEM is refused at load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use chains::arweave::arlocal::Arlocal;
use chains::arweave::{Gateway, RetryPolicy};
use chains::bitcoin::CoreRpc;
use chains::deposit::{DepositCheck, DepositVerifier};
use chains::ethereum::{Confirmation, EthDepositVerifier, deposit_from_log};
use chains::http::{HttpError, Tls};
use contracts::ANVIL_KEY_0;
use contracts::harness::Setup;
use regtest::{RegtestConfig, RegtestNode};

#[path = "common/tls_proxy.rs"]
mod tls_proxy;
use tls_proxy::{TestCa, TlsProxy};

/// What an operator sees when the node's certificate is not signed by anyone it trusts.
fn names_an_unknown_issuer(text: &str) -> bool {
    text.contains("invalid peer certificate") && text.contains("UnknownIssuer")
}

#[tokio::test]
async fn ethereum_json_rpc_works_over_https_with_the_ca_and_refuses_the_server_without_it() {
    let setup = Setup::new().await.unwrap();
    let ca = TestCa::new();
    let proxy = TlsProxy::start(&setup.anvil.url(), &ca).await;
    let trusted = Tls::load(Some(&ca.file)).unwrap();

    // A deposit sent through https by a signing provider (the wallet's and the watchmen's).
    let (signer, _) = chains::ethereum::signing_provider(&proxy.url, &trusted, ANVIL_KEY_0).unwrap();
    let receipt = contracts::Vault::new(setup.vault_address(), signer)
        .depositETH(Address::repeat_byte(0xab))
        .value(U256::from(777u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let deposit = deposit_from_log(&receipt.inner.logs()[0], 0, receipt.block_number.unwrap()).unwrap();
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (3u64,)).await.unwrap();

    // The confirmer's verifier through https confirms it; the chain id and holdings come too.
    let vault = contracts::from_alloy(setup.vault_address());
    let verifier = EthDepositVerifier::connect(&proxy.url, &trusted, vault, Confirmation::Depth(2)).unwrap();
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::Confirmed);
    assert_eq!(chains::ethereum::chain_id(&proxy.url, &trusted).await.unwrap(), setup.chain_id);
    let held = chains::ethereum::holdings_of(&proxy.url, &trusted, vault, &[]).await.unwrap();
    assert_eq!(held.get(&bridge::AssetId::Eth), Some(&777));

    // Without the CA: the bundled roots do not know the test CA, and the error says so.
    let untrusted = Tls::default();
    let error = chains::ethereum::chain_id(&proxy.url, &untrusted).await.unwrap_err();
    assert!(names_an_unknown_issuer(&error), "{error}");
    let verifier = EthDepositVerifier::connect(&proxy.url, &untrusted, vault, Confirmation::Depth(2)).unwrap();
    let error = verifier.check(&deposit).await.unwrap_err();
    assert!(names_an_unknown_issuer(&error.reason), "{error}");
    let probe = verifier.finality().refresh().await;
    assert!(probe.error.as_deref().is_some_and(names_an_unknown_issuer), "{probe:?}");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_even_from_a_trusted_ca() {
    let setup = Setup::new().await.unwrap();
    let ca = TestCa::new();
    let proxy = TlsProxy::start_for(&setup.anvil.url(), &ca, &["node.example"]).await;
    let trusted = Tls::load(Some(&ca.file)).unwrap();
    let error = chains::ethereum::chain_id(&proxy.url, &trusted).await.unwrap_err();
    assert!(error.contains("invalid peer certificate: certificate not valid for name \"127.0.0.1\""), "{error}");
}

#[tokio::test]
async fn the_arweave_gateway_works_over_https_with_the_ca_and_refuses_the_server_without_it() {
    let arlocal = Arlocal::start().await.unwrap();
    arlocal.mine(2).await.unwrap();
    let ca = TestCa::new();
    let proxy = TlsProxy::start(arlocal.url(), &ca).await;
    let once = RetryPolicy { attempts: 1, ..RetryPolicy::default() };

    let gateway = Gateway::with_tls(&proxy.url, once.clone(), &Tls::load(Some(&ca.file)).unwrap()).unwrap();
    let plain = arlocal.gateway().unwrap();
    assert_eq!(gateway.height().await.unwrap(), plain.height().await.unwrap());

    let refused = Gateway::with_tls(&proxy.url, once, &Tls::default()).unwrap();
    let error = refused.height().await.unwrap_err().to_string();
    assert!(names_an_unknown_issuer(&error), "{error}");
}

#[tokio::test]
async fn bitcoin_core_rpc_works_over_https_with_the_ca_and_refuses_the_server_without_it() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let ca = TestCa::new();
    let proxy = TlsProxy::start(&node.url(), &ca).await;
    let plain = CoreRpc::new(node.url(), node.user(), node.password());

    let rpc = CoreRpc::with_tls(&proxy.url, node.user(), node.password(), &Tls::load(Some(&ca.file)).unwrap()).unwrap();
    assert_eq!(rpc.block_count().await.unwrap(), plain.block_count().await.unwrap());

    let refused = CoreRpc::with_tls(&proxy.url, node.user(), node.password(), &Tls::default()).unwrap();
    let error = refused.block_count().await.unwrap_err().to_string();
    assert!(names_an_unknown_issuer(&error), "{error}");
    assert!(!error.contains(node.password()), "the password stays out of the message: {error}");
}

#[test]
fn a_missing_empty_or_non_pem_ca_file_is_refused_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.pem");
    let error = Tls::load(Some(&missing)).unwrap_err();
    assert!(matches!(error, HttpError::CaUnreadable { .. }), "{error}");
    assert!(error.to_string().contains("absent.pem"), "{error}");

    for (name, content) in [
        ("empty.pem", "".to_owned()),
        ("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned()),
        ("binary.der", String::from_utf8_lossy(&[0x30, 0x82, 0x01, 0x0a, 0x02]).into_owned()),
        ("broken.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n".to_owned()),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let error = Tls::load(Some(&file)).unwrap_err();
        assert!(matches!(error, HttpError::CaNotPem { .. }), "{name}: {error}");
        assert!(error.to_string().contains(name), "{error}");
    }

    let ca = TestCa::new();
    assert_eq!(Tls::load(Some(&ca.file)).unwrap().ca_file(), Some(ca.file.as_path()));
    assert!(Tls::load(None).unwrap().ca_file().is_none());
}
