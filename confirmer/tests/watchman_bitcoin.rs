//! Watchmen pay Bitcoin withdrawals only when their own replay justifies them: a deposit to the
//! account's own Taproot address on the regtest node (Bitcoin Core's kernel), credited by the
//! coordinator's deposit watcher; a withdrawal through the API; the coordinator plans the
//! payout; three watchmen (2-of-3, a real DKG over libp2p on 127.0.0.1) replay the DA, each checking the deposit against
//! its node, sign every input of the payout (the deposit's tweaked key) and broadcast it; when
//! it is stuck for three blocks, the next attempt replaces it (RBF); the coordinator records the confirmation, which the watchmen check against their node as they
//! replay it. A forged payout is refused by every watchman.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bitcoin::hashes::Hash;
use bridge::Chain;
use bridge::tx::{Deposit, L1Ref};
use common::bitcoin_bridge::{BitcoinBridge, deposit_and_withdraw, recipient, start_watchman, until};
use common::*;
use confirmer::solvency::SolvencyWatch;
use confirmer::watchman::{BtcPayouts, PayoutAction, Watchman};
use tss::{GroupKey, SessionError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchmen_pay_a_bitcoin_withdrawal_their_replay_justifies_and_refuse_a_forged_payout() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,libp2p=warn").with_test_writer().try_init();
    // The key ceremony: three watchmen, 2-of-3.
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();

    let BitcoinBridge { node: bitcoin_node, rpc, miner, dir, params: p, vault, coordinator } =
        BitcoinBridge::start(group.internal_key).await;
    // A user deposits 0.05 BTC to their own address and withdraws 0.02 BTC.
    let to = recipient();
    deposit_and_withdraw(&coordinator, &rpc, &miner, &p, &to).await;

    // Each watchman: its own follower (checking Bitcoin facts against the node), book and policy.
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let bridge = (dir.path(), &p, &rpc);
        watchmen.push(start_watchman(i, identity, &running, &shares[i], bridge, i == 0).await);
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
    let PayoutAction::Broadcast { attempt: 0, txid: first, .. } = broadcast else { panic!("{broadcast:?}") };
    // A second turn before it is mined signs nothing again: the node has it.
    let report = watchmen[0].step(64).await.unwrap();
    assert!(report.payouts.is_empty(), "{:?}", report.payouts);

    // Stuck: three blocks pass without it (miners took better-paying transactions). Watchman 0
    // signs the next attempt, which replaces the first in the mempool (same inputs, higher fee).
    let tip = rpc.block_hash(rpc.block_count().await.unwrap()).await.unwrap();
    common::btc::mine_branch(&bitcoin_node, tip, 3, &miner.address).await;
    let bump = until("the fee bump", async || {
        let report = watchmen[0].step(64).await.unwrap();
        report.payouts.into_iter().find(|a| matches!(a, PayoutAction::Broadcast { .. }))
    })
    .await;
    let PayoutAction::Broadcast { attempt: 1, txid, .. } = bump else { panic!("{bump:?}") };
    let txid: bitcoin::Txid = txid.parse().unwrap();
    assert_ne!(txid.to_string(), first);
    assert_eq!(rpc.raw_mempool().await.unwrap(), vec![txid], "the bump replaced the first attempt");

    rpc.generate_to_address(1, &miner.address).await.unwrap();
    let tx = rpc.raw_transaction(&txid, None).await.unwrap();
    assert_eq!(tx.output[0].script_pubkey, to.script_pubkey());
    assert_eq!(tx.output[0].value.to_sat(), 2_000_000, "the recipient is paid the withdrawal exactly");
    let change = tx.output.last().unwrap().value.to_sat();
    assert!(change >= 5_000_000 - 2_000_000 - 10_000, "the fee is within the user's fee");
    assert!(change < 5_000_000 - 2_000_000 - 154, "the bump pays more than the first attempt");

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

    // Solvency, as a watchman's replay sees it: the vault holds every satoshi the ledger owes.
    let watch = SolvencyWatch {
        eth_rpc: None,
        btc: Some(std::sync::Arc::new(rpc.clone())),
        btc_depth: 1,
        tls: Default::default(),
    };
    let report = watch.check(watchmen[2].follower().state()).await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].shortfall(), 0, "{report:?}");
    assert_eq!(report[0].owed, 5_000_000 - 2_000_000 - 10_000);
    assert_eq!(report[0].held, u128::from(change));
    // A ledger that credited a deposit the chain never saw is short by exactly that deposit.
    let mut forged = bridge::State::genesis(p.clone());
    let fake = Deposit {
        chain: Chain::Bitcoin,
        l1_ref: L1Ref::Bitcoin { txid: [0xfa; 32], vout: 0 },
        account: wallet(9).address(),
        asset: bridge::AssetId::Btc,
        amount: bridge::Amount(700_000),
        l1_height: 0,
    };
    bridge::apply(&mut forged, &bridge::Tx::System(bridge::tx::SystemTx::Deposit(fake.clone()))).unwrap();
    let report = watch.check(&forged).await.unwrap();
    assert_eq!(report[0].shortfall(), 700_000, "{report:?}");
    assert!(report[0].detail.as_deref().unwrap_or_default().contains("not unspent"), "{report:?}");
    // The same output from a block this node has not reached is "not seen yet": Bitcoin is not
    // judged (no shortfall, no halt) until the node gets there. A lagging node cannot make an
    // honest vault look robbed, and a forger gains nothing by naming a later block: the replay
    // waits for its node to reach that block before it takes the deposit at all.
    let tip = rpc.block_count().await.unwrap();
    let mut ahead = bridge::State::genesis(p.clone());
    let late = Deposit { l1_height: tip + 1, ..fake };
    bridge::apply(&mut ahead, &bridge::Tx::System(bridge::tx::SystemTx::Deposit(late))).unwrap();
    let not_judged = watch.check(&ahead).await.unwrap_err();
    assert_eq!(not_judged.chain, Chain::Bitcoin);
    assert!(not_judged.reason.contains("behind the ledger"), "{not_judged}");

    // A forged payout (the same inputs paying someone else) is refused by every watchman.
    let mut forged = plan.clone();
    forged.payouts[0].script_pubkey = recipient().script_pubkey().to_bytes();
    let unsigned = forged.build(&bridge::VaultKeys::genesis(vault), p.btc_network, 0).unwrap();
    let refused = watchmen[2].tss().sign(BtcPayouts::requests(batch, &forged, &unsigned)).await.unwrap_err();
    assert!(matches!(refused, SessionError::NotEnoughSigners { .. }), "{refused}");

    // Six deep (issue 23): the plan leaves the payer's book, and nothing of it is signed or
    // sent again.
    let listed = |w: &Watchman| w.book().owing_from(1).iter().any(|(_, s)| s.btc_plans.iter().any(|q| q.id == plan.id));
    rpc.generate_to_address(4, &miner.address).await.unwrap();
    let report = watchmen[0].step(64).await.unwrap();
    assert!(report.payouts.is_empty(), "{:?}", report.payouts);
    assert!(listed(&watchmen[0]), "five confirmations: kept");
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    let report = watchmen[0].step(64).await.unwrap();
    assert!(report.payouts.is_empty(), "{:?}", report.payouts);
    assert!(!listed(&watchmen[0]), "six confirmations: pruned");
    assert!(watchmen[0].book().btc_pruned_through() >= batch);
    assert_eq!(rpc.raw_mempool().await.unwrap(), vec![], "nothing sent again");
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_five_watchmen_down_a_bitcoin_withdrawal_is_still_paid() {
    // A 3-of-5 key; watchmen 3 and 4 never come back after the ceremony.
    let identities: Vec<_> = (0..5).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg_with_threshold(&identities, 3).await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    assert_eq!((group.threshold, group.signers), (3, 5));
    let BitcoinBridge { node: _bitcoin_node, rpc, miner, dir, params: p, vault: _, coordinator } =
        BitcoinBridge::start(group.internal_key).await;
    let to = recipient();
    deposit_and_withdraw(&coordinator, &rpc, &miner, &p, &to).await;

    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate().take(3) {
        watchmen.push(start_watchman(i, identity, &running, &shares[i], (dir.path(), &p, &rpc), i == 0).await);
    }
    for w in [2, 1] {
        until("a hard-final payout plan", async || {
            watchmen[w].step(64).await.unwrap();
            watchmen[w].book().owing_from(1).into_iter().find(|(_, s)| !s.btc_plans.is_empty())
        })
        .await;
    }
    let broadcast = until("the payout to be broadcast", async || {
        let report = watchmen[0].step(64).await.unwrap();
        report.payouts.into_iter().find(|a| matches!(a, PayoutAction::Broadcast { .. }))
    })
    .await;
    let PayoutAction::Broadcast { txid, .. } = broadcast else { panic!("{broadcast:?}") };
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    let tx = rpc.raw_transaction(&txid.parse().unwrap(), None).await.unwrap();
    assert_eq!(tx.output[0].script_pubkey, to.script_pubkey());
    assert_eq!(tx.output[0].value.to_sat(), 2_000_000, "paid by the three watchmen still up");
    coordinator.shutdown().await;
}

/// Wallet `n` asks the coordinator for its deposit address (which registers it with the
/// deposit watcher) and the miner pays `sat` to it from the coinbase of block `height`.
async fn deposit_small(
    coordinator: &coordinator::node::Node,
    rpc: &chains::bitcoin::CoreRpc,
    miner: &common::btc::Miner,
    n: u64,
    height: u64,
    sat: u64,
) {
    let url = format!("{}/accounts/{}/btc-deposit-address", coordinator.url(), wallet(n).address());
    let answer: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let address: bitcoin::Address = answer["address"]
        .as_str()
        .unwrap()
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap();
    miner.pay(rpc, height, &address, bitcoin::Amount::from_sat(sat)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_proposes_a_consolidation_at_low_fees_and_the_watchmen_pay_it_from_their_replay() {
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let BitcoinBridge { node: _bitcoin_node, rpc, miner, dir, params: p, vault: _, coordinator } =
        BitcoinBridge::start(group.internal_key).await;
    // A payout whose users paid 10k sat of fee leaves surplus once it confirms.
    deposit_and_withdraw(&coordinator, &rpc, &miner, &p, &recipient()).await;
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        watchmen.push(start_watchman(i, identity, &running, &shares[i], (dir.path(), &p, &rpc), i == 0).await);
    }
    let step_all = async |watchmen: &mut Vec<Watchman>| {
        let mut actions = Vec::new();
        for w in watchmen.iter_mut() {
            actions.extend(w.step(64).await.unwrap().payouts);
        }
        actions
    };
    until("the payout to be broadcast", async || {
        step_all(&mut watchmen).await.into_iter().find(|a| matches!(a, PayoutAction::Broadcast { .. }))
    })
    .await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();

    // Twelve small deposits: the vault now holds many small outputs, and regtest's fee
    // estimate (1 sat/vB) is low.
    for n in 0..12u64 {
        deposit_small(&coordinator, &rpc, &miner, 20 + n, 2 + n, 20_000 + n * 100).await;
    }
    rpc.generate_to_address(1, &miner.address).await.unwrap();

    // The keeper proposes a consolidation; every watchman replays it and watchman 0 gets it
    // signed under the same policy as any payout, then broadcasts it.
    let merge = until("a consolidation to be broadcast", async || {
        let actions = step_all(&mut watchmen).await;
        let book = watchmen[0].book().owing_from(1);
        let merge = book.iter().flat_map(|(_, s)| s.btc_plans.iter()).find(|p| p.is_consolidation())?.clone();
        actions.iter().any(|a| matches!(a, PayoutAction::Broadcast { plan, .. } if *plan == merge.id)).then_some(merge)
    })
    .await;
    assert!(merge.inputs.len() >= 10, "{merge:?}");
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    // The keeper records it; each watchman checks the record against its node as it replays.
    for watchman in watchmen.iter_mut() {
        until("the consolidation's confirmation to be replayed", async || {
            watchman.step(64).await.unwrap();
            watchman.follower().state().btc_plan(merge.id).is_none().then_some(())
        })
        .await;
        assert!(watchman.follower().status().alarms.is_empty());
    }
    // The payout's change and twelve deposits, less what was merged, plus the merged output.
    let expected = 13 - merge.inputs.len() + 1;
    until("every deposit to be credited", async || {
        watchmen[2].step(64).await.unwrap();
        (watchmen[2].follower().state().vault_utxos().count() == expected).then_some(())
    })
    .await;
    let state = watchmen[2].follower().state();
    let watch = SolvencyWatch {
        eth_rpc: None,
        btc: Some(std::sync::Arc::new(rpc.clone())),
        btc_depth: 1,
        tls: Default::default(),
    };
    let report = watch.check(state).await.unwrap();
    assert_eq!(report[0].shortfall(), 0, "{report:?}");
    coordinator.shutdown().await;
}
