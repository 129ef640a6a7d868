//! One withdrawal cannot stop the Ethereum payouts: a batch holding a withdrawal to a recipient
//! contract that reverts, one to a contract that burns all its gas and a token withdrawal to a
//! blacklisted address is settled anyway (the others in it are paid), the batch after it is
//! paid, the three leaves are listed at `GET /withdrawals/stuck` with their proofs, retries pay
//! them once their recipients accept, and the vault stays solvent throughout. All on anvil,
//! with a coordinator, three watchmen (2-of-3 over libp2p) and the real vault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::eth_settlement::VaultDomain;
use bridge::{Amount, AssetConfig, AssetId};
use chains::ethereum::Submitter;
use common::coordinator_api::{balance, batch_of, until, withdraw};
use common::eth_group::watchman_follower;
use common::*;
use confirmer::watchman::{
    EthSettlement, RangeLimits, ReplayPolicy, RetryPolicy, SettlementBook, StuckWithdrawals, Watchman,
};
use contracts::recipients::{GasBurner, RevertingRecipient};
use contracts::{BlacklistToken, Vault, from_alloy, to_alloy};
use coordinator::node::Node;
use tss::{GroupKey, TssNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpayable_recipients_do_not_stop_later_batches_and_are_retried_until_paid() {
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();

    let setup = contracts::harness::Setup::new().await.unwrap();
    let vault =
        Vault::deploy(setup.provider.clone(), U256::from_be_bytes(group.output_key), setup.deployer).await.unwrap();
    let vault_address = *vault.address();
    let domain = VaultDomain { chain_id: setup.chain_id, vault: from_alloy(vault_address), epoch: 0 };
    let token = BlacklistToken::deploy(setup.provider.clone()).await.unwrap();
    let reverting = RevertingRecipient::deploy(setup.provider.clone()).await.unwrap();
    let burner = GasBurner::deploy(setup.provider.clone()).await.unwrap();
    let listed = EthAddress::repeat_byte(0x61);
    token.setBlacklisted(listed, true).send().await.unwrap().get_receipt().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(vault_address);
    p.chain_id = setup.chain_id;
    let token_asset = AssetId::Erc20(from_alloy(*token.address()));
    p.assets.push(AssetConfig { asset: token_asset, min_fee: Amount(0) });
    p.assets.sort_by_key(|a| a.asset);
    let config = coordinator_watching(dir.path(), &p, setup.anvil.url());
    let coordinator = Node::start(&config).await.unwrap();

    // Deposits: ether for one user, the token for another.
    let (eth_user, token_user) = (wallet(1), wallet(2));
    vault
        .depositETH(to_alloy(eth_user.address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    token.mint(setup.deployer, U256::from(1_000_000u64)).send().await.unwrap().get_receipt().await.unwrap();
    token.approve(vault_address, U256::MAX).send().await.unwrap().get_receipt().await.unwrap();
    vault
        .depositERC20(*token.address(), U256::from(1_000_000u64), to_alloy(token_user.address()))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
    until("both deposits credited", async || {
        let credited = balance(&coordinator, eth_user.address(), AssetId::Eth).await == 1_000_000
            && balance(&coordinator, token_user.address(), token_asset).await == 1_000_000;
        credited.then_some(())
    })
    .await;

    // Batch A: three withdrawals that can never be paid as things stand, among honest ones.
    let honest = [EthAddress::repeat_byte(0x71), EthAddress::repeat_byte(0x72)];
    let mut first = Vec::new();
    first.push(withdraw(&coordinator, &p, &eth_user, AssetId::Eth, 100, *reverting.address(), 0).await);
    first.push(withdraw(&coordinator, &p, &eth_user, AssetId::Eth, 200, *burner.address(), 1).await);
    first.push(withdraw(&coordinator, &p, &eth_user, AssetId::Eth, 300, honest[0], 2).await);
    first.push(withdraw(&coordinator, &p, &token_user, token_asset, 400, listed, 0).await);
    first.push(withdraw(&coordinator, &p, &token_user, token_asset, 500, honest[1], 1).await);
    let mut last_bad = 0;
    for hash in &first {
        last_bad = last_bad.max(batch_of(&coordinator, *hash).await);
    }
    // Batch B, sealed after every batch of A: honest withdrawals only.
    let later = [EthAddress::repeat_byte(0x81), EthAddress::repeat_byte(0x82)];
    let b1 = withdraw(&coordinator, &p, &eth_user, AssetId::Eth, 600, later[0], 3).await;
    let b2 = withdraw(&coordinator, &p, &token_user, token_asset, 700, later[1], 2).await;
    let later_batch = batch_of(&coordinator, b1).await.max(batch_of(&coordinator, b2).await);
    assert!(later_batch > last_bad);
    coordinator.shutdown().await;

    // Three watchmen; watchman 0 settles, retrying stuck leaves at every turn.
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    let mut stuck = StuckWithdrawals::default();
    for (i, identity) in identities.iter().enumerate() {
        let follower = watchman_follower(&dir.path().join("da"), dir.path(), i, &p, &setup.anvil.url()).await;
        let book = SettlementBook::default();
        let policy = Arc::new(ReplayPolicy::new(book.clone(), Some(domain)));
        let node = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let eth = (i == 0).then(|| {
            let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer);
            let retry = RetryPolicy { first: Duration::ZERO, max: Duration::ZERO, max_attempts: 1_000 };
            let limits = RangeLimits { window: Duration::ZERO, ..RangeLimits::default() };
            let settlement = EthSettlement::new(book.clone(), domain, submitter).with_retry(retry).with_limits(limits);
            stuck = settlement.stuck();
            settlement
        });
        let reader = chains::ethereum::VaultReader::new(setup.provider.clone(), vault_address);
        watchmen.push(Watchman::new(follower, book, node, eth).with_vault_reader(reader));
    }
    for w in watchmen.iter_mut().skip(1) {
        w.step(64).await.unwrap();
    }
    let paid = |who: EthAddress| {
        let (provider, token) = (setup.provider.clone(), token.clone());
        async move { provider.get_balance(who).await.unwrap() + token.balanceOf(who).call().await.unwrap() }
    };
    let vault_reader = Vault::new(vault_address, setup.provider.clone());
    until("the later batch paid", async || {
        // Every watchman keeps stepping, as a running one does: a signer reads the vault's
        // ranges at its own turn, so one that never steps would refuse the next range as a gap.
        for w in watchmen.iter_mut().skip(1) {
            w.step(64).await.unwrap();
        }
        let report = watchmen[0].step(64).await.unwrap();
        assert!(report.settle_error.is_none(), "{:?}", report.settle_error);
        (paid(later[0]).await == U256::from(600) && paid(later[1]).await == U256::from(700)).then_some(())
    })
    .await;
    assert_eq!(paid(honest[0]).await, U256::from(300));
    assert_eq!(paid(honest[1]).await, U256::from(500));
    for who in [*reverting.address(), *burner.address(), listed] {
        assert_eq!(paid(who).await, U256::ZERO, "{who} cannot be paid");
    }

    // The three are listed, with proofs that open the vault's roots.
    let app = confirmer::api::stuck_withdrawals_router(stuck.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/withdrawals/stuck", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let listed_leaves: Vec<serde_json::Value> = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let mut recipients: Vec<String> =
        listed_leaves.iter().map(|l| l["recipient"].as_str().unwrap().to_lowercase()).collect();
    recipients.sort();
    let mut expected: Vec<String> =
        [*reverting.address(), *burner.address(), listed].iter().map(|a| format!("{a:?}").to_lowercase()).collect();
    expected.sort();
    assert_eq!(recipients, expected);
    for leaf in &listed_leaves {
        let batch = leaf["batch"].as_u64().unwrap();
        assert!(batch <= last_bad);
        assert!(!vault_reader.isPaid(batch, leaf["index"].as_u64().unwrap() as u32).call().await.unwrap());
        let range = vault_reader.ranges(leaf["range"].as_u64().unwrap()).call().await.unwrap();
        assert!(range.first <= batch && batch <= range.last);
        assert_eq!(leaf["root"].as_str().unwrap(), format!("{}", range.root));
    }

    // Solvency holds: the vault still holds every balance (and the stuck leaves' amounts).
    let watch = confirmer::solvency::SolvencyWatch {
        eth_rpc: Some(setup.anvil.url()),
        btc: None,
        btc_depth: 1,
        tls: Default::default(),
    };
    let report = watch.check(watchmen[0].follower().state()).await.unwrap();
    assert_eq!(report.len(), 2, "{report:?}");
    assert!(report.iter().all(|a| a.shortfall() == 0), "{report:?}");

    // The recipient starts accepting and the token lifts its blacklist: the retries pay them.
    // The gas burner stays stuck (still claimable by anyone with more gas than a payout gets).
    reverting.setAccepting(true).send().await.unwrap().get_receipt().await.unwrap();
    token.setBlacklisted(listed, false).send().await.unwrap().get_receipt().await.unwrap();
    until("the retries to pay the two", async || {
        watchmen[0].step(64).await.unwrap();
        (stuck.len() == 1).then_some(())
    })
    .await;
    assert_eq!(paid(*reverting.address()).await, U256::from(100));
    assert_eq!(paid(listed).await, U256::from(400));
    assert_eq!(stuck.list()[0].recipient.to_lowercase(), format!("{:?}", burner.address()).to_lowercase());
    let report = watch.check(watchmen[0].follower().state()).await.unwrap();
    assert!(report.iter().all(|a| a.shortfall() == 0), "{report:?}");
}
