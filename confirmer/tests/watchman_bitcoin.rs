//! Watchmen pay Bitcoin withdrawals only when their own replay justifies them: a deposit to the
//! account's own Taproot address on the regtest node (Bitcoin Core's kernel), credited by the
//! coordinator's deposit watcher; a withdrawal through the API; the coordinator plans the payout; three watchmen
//! (2-of-3, a real DKG over libp2p on 127.0.0.1) replay the DA, each checking the deposit against
//! its node, sign every input of the payout (the deposit's tweaked key) and broadcast it; the
//! coordinator records the confirmation, which the watchmen check against their node as they
//! replay it. A forged payout is refused by every watchman.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

#[path = "../../chains/tests/common/btc.rs"]
mod btc;
mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bridge::{AssetConfig, AssetId, BtcVaultParams, Chain, UserTx, Withdraw};
use btc::{Miner, recipient};
use chains::bitcoin::{CoreRpc, DepositChecker};
use chains::da::DirDa;
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::{BtcPayouts, PayoutAction, ReplayPolicy, SettlementBook, Watchman};
use coordinator::api::request::TxRequest;
use coordinator::node::Node;
use regtest::{RegtestConfig, RegtestNode};
use tss::{GroupKey, SessionError, TssNode};

async fn btc_balance(node: &Node, account: bridge::Address) -> u128 {
    let body: serde_json::Value =
        reqwest::get(format!("{}/accounts/{account}", node.url())).await.unwrap().json().await.unwrap();
    body["balances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["asset"] == "btc:BTC")
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

/// Runs `step` until `done` says so, at most 300 times 100 ms apart.
async fn until<T>(what: &str, mut step: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(found) = step().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchmen_pay_a_bitcoin_withdrawal_their_replay_justifies_and_refuse_a_forged_payout() {
    // The key ceremony: three watchmen, 2-of-3.
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();

    // The Bitcoin node, with mature coinbase money.
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let miner = Miner::new();
    rpc.generate_to_address(110, &miner.address).await.unwrap();

    // The coordinator: the network's Bitcoin vault is the group key; it asks the node about payouts.
    let dir = tempfile::tempdir().unwrap();
    let vault = BtcVaultParams { group_key: group.internal_key, min_fee_rate: 1, max_fee_rate: 50 };
    let mut p = params();
    p.btc_vault = Some(vault);
    p.assets = vec![
        AssetConfig { asset: AssetId::Eth, min_fee: bridge::Amount(0) },
        AssetConfig { asset: AssetId::Btc, min_fee: bridge::Amount(0) },
    ];
    let mut config = coordinator_config(dir.path(), &p);
    config.bitcoin.rpc = Some(node.url());
    config.bitcoin.rpc_user = node.user().into();
    config.bitcoin.rpc_password = node.password().into();
    config.bitcoin.depth = 1;
    config.bitcoin.poll_ms = 100;
    let coordinator = Node::start(&config).await.unwrap();

    // A user asks for their deposit address and deposits 0.05 BTC to it.
    let user = wallet(1);
    let answer: serde_json::Value =
        reqwest::get(format!("{}/accounts/{}/btc-deposit-address", coordinator.url(), user.address()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let address: bitcoin::Address = answer["address"]
        .as_str()
        .unwrap()
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap();
    miner.pay(&rpc, 1, &address, bitcoin::Amount::from_sat(5_000_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    // The coordinator's deposit watcher (depth 1) credits it: the account asked for its address.
    until("the deposit to be credited", async || {
        (btc_balance(&coordinator, user.address()).await == 5_000_000).then_some(())
    })
    .await;

    // The user withdraws 0.02 BTC; the fee pays the miners.
    let to = recipient();
    let withdraw = UserTx::Withdraw(Withdraw {
        from: user.address(),
        asset: AssetId::Btc,
        amount: bridge::Amount(2_000_000),
        fee: bridge::Amount(10_000),
        recipient: to.to_string(),
        nonce: 0,
    });
    let signed = user.sign(withdraw, &bridge::eip712::Domain::new(&p));
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/tx", coordinator.url()))
        .json(&TxRequest::from_signed(&signed))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");

    // Each watchman: its own follower (checking Bitcoin facts against the node), book and policy.
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
        let store =
            ConfirmerStore::open(&format!("sqlite://{}", dir.path().join(format!("w{i}.db")).display())).await.unwrap();
        let key = bitcoin::key::XOnlyPublicKey::from_slice(&group.internal_key).unwrap();
        let checker = DepositChecker::new(rpc.clone(), p.btc_network, key, 1);
        let verifiers = DepositVerifiers::none().with(Chain::Bitcoin, Arc::new(checker));
        let follower = Follower::open(Arc::new(da), store, p.clone(), verifiers).await.unwrap();
        let book = SettlementBook::default();
        let policy = Arc::new(ReplayPolicy::new(book.clone(), None).with_bitcoin(vault, p.btc_network));
        let node = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let mut watchman = Watchman::new(follower, book.clone(), node, None);
        if i == 0 {
            watchman = watchman.with_bitcoin(BtcPayouts::new(book, vault, p.btc_network, rpc.clone(), 3));
        }
        watchmen.push(watchman);
    }

    // Watchmen 1 and 2 replay until a hard-final batch has the payout plan.
    let mut plan = None;
    for w in [2, 1] {
        let found = until("a hard-final payout plan", async || {
            watchmen[w].step(64).await.unwrap();
            watchmen[w]
                .book()
                .owing_from(1)
                .into_iter()
                .find_map(|(batch, s)| s.btc_plans.first().map(|plan| (batch, plan.clone())))
        })
        .await;
        plan = Some(found);
    }
    let (batch, plan) = plan.unwrap();
    assert_eq!(plan.payouts.len(), 1);
    assert_eq!(plan.inputs.len(), 1, "the deposit alone funds it");

    // Watchman 0 replays, signs (with 1 or 2) and broadcasts attempt 0.
    let broadcast = until("the payout to be broadcast", async || {
        let report = watchmen[0].step(64).await.unwrap();
        assert_eq!(report.settle_error, None);
        report.payouts.into_iter().find(|a| matches!(a, PayoutAction::Broadcast { .. }))
    })
    .await;
    let PayoutAction::Broadcast { attempt: 0, txid, .. } = broadcast else { panic!("{broadcast:?}") };
    let txid: bitcoin::Txid = txid.parse().unwrap();
    // A second turn before it is mined signs nothing again: the node has it.
    let report = watchmen[0].step(64).await.unwrap();
    assert!(report.payouts.is_empty(), "{:?}", report.payouts);

    rpc.generate_to_address(1, &miner.address).await.unwrap();
    let tx = rpc.raw_transaction(&txid, None).await.unwrap();
    assert_eq!(tx.output[0].script_pubkey, to.script_pubkey());
    assert_eq!(tx.output[0].value.to_sat(), 2_000_000, "the recipient is paid the withdrawal exactly");
    let change = tx.output.last().unwrap().value.to_sat();
    assert!(change >= 5_000_000 - 2_000_000 - 10_000, "the fee is within the user's fee");

    // The coordinator records the confirmation; each watchman checks it against its node as it
    // replays, and its ledger's vault is then the chain's.
    for w in [0, 1, 2] {
        until("the confirmation to be replayed", async || {
            watchmen[w].step(64).await.unwrap();
            let state = watchmen[w].follower().state();
            (state.btc_plan(plan.id).is_none() && state.vault_utxos().count() == 1).then_some(())
        })
        .await;
        assert!(watchmen[w].follower().status().alarms.is_empty());
        let state = watchmen[w].follower().state();
        let held = state.vault_utxos().next().unwrap();
        assert_eq!(held.outpoint.txid, txid.to_byte_array());
        assert_eq!(held.amount_sat, change);
    }

    // A forged payout (the same inputs paying someone else) is refused by every watchman.
    let mut forged = plan.clone();
    forged.payouts[0].script_pubkey = recipient().script_pubkey().to_bytes();
    let unsigned = forged.build(&vault, p.btc_network, 0).unwrap();
    let refused = watchmen[2].tss().sign(BtcPayouts::requests(batch, &forged, &unsigned)).await.unwrap_err();
    assert!(matches!(refused, SessionError::NotEnoughSigners { .. }), "{refused}");
    coordinator.shutdown().await;
}
