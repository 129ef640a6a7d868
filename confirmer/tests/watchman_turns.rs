//! One submission per root: two submitting watchmen take turns by range number. Range 0 is
//! watchman 0's: watchman 1 sends nothing for it, then finds it paid and moves on. Range 1 is
//! watchman 1's, and watchman 1 is dead (never stepped again): watchman 0 waits for the turn
//! timeout, counted in Ethereum blocks, then takes over, submits and pays. Every vault
//! transaction in the run succeeded: none reverted. On anvil, with a coordinator, three
//! watchmen (2-of-3 over libp2p) and the real vault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::eth_settlement::VaultDomain;
use bridge::{Amount, AssetId, UserTx, Wallet, Withdraw};
use chains::da::DirDa;
use chains::ethereum::{EthDepositVerifier, Submitter, VaultReader};
use common::coordinator_api::{balance, submit, until};
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::{EthSettlement, RangeLimits, ReplayPolicy, SettlementBook, Turns, Watchman};
use contracts::{Vault, from_alloy, to_alloy};
use coordinator::node::Node;
use tss::{GroupKey, TssNode};

/// Signs and posts a withdrawal of ether; returns its hash.
async fn withdraw(
    coordinator: &Node,
    p: &bridge::NetworkParams,
    from: &Wallet,
    amount: u128,
    to: EthAddress,
    nonce: u64,
) -> [u8; 32] {
    let tx = UserTx::Withdraw(Withdraw {
        from: from.address(),
        asset: AssetId::Eth,
        amount: Amount(amount),
        fee: Amount(0),
        recipient: from_alloy(to).to_string(),
        nonce,
    });
    let domain = bridge::eip712::Domain::new(p);
    let signed = from.sign(tx, &domain);
    submit(coordinator, &signed).await;
    signed.tx.signing_hash(&domain)
}

/// The batch the coordinator sealed `hash` into, once it has.
async fn batch_of(coordinator: &Node, hash: [u8; 32]) -> u64 {
    until("the withdrawal to be sealed", async || {
        let body: serde_json::Value =
            reqwest::get(format!("{}/tx/0x{}", coordinator.url(), hex::encode(hash))).await.ok()?.json().await.ok()?;
        body["batch"].as_u64()
    })
    .await
}

/// Every transaction sent to the vault so far, and whether each succeeded.
async fn vault_transactions(setup: &contracts::harness::Setup, vault: EthAddress) -> Vec<bool> {
    let head = setup.provider.get_block_number().await.unwrap();
    let mut outcomes = Vec::new();
    for number in 0..=head {
        let Some(receipts) = setup.provider.get_block_receipts(number.into()).await.unwrap() else { continue };
        for receipt in receipts {
            if receipt.to == Some(vault) {
                outcomes.push(receipt.status());
            }
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitters_take_turns_by_range_and_the_next_takes_over_from_a_dead_one() {
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();

    let setup = contracts::harness::Setup::new().await.unwrap();
    let vault =
        Vault::deploy(setup.provider.clone(), U256::from_be_bytes(group.output_key), setup.deployer).await.unwrap();
    let vault_address = *vault.address();
    let domain = VaultDomain { chain_id: setup.chain_id, vault: from_alloy(vault_address), epoch: 0 };

    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(vault_address);
    p.chain_id = setup.chain_id;
    let config = coordinator_watching(dir.path(), &p, setup.anvil.url());
    let coordinator = Node::start(&config).await.unwrap();
    let user = wallet(1);
    vault
        .depositETH(to_alloy(user.address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
    until("the deposit credited", async || {
        (balance(&coordinator, user.address(), AssetId::Eth).await == 1_000_000).then_some(())
    })
    .await;
    // Two withdrawals in two batches: range 0 will end at the first one's batch, range 1 will
    // hold the second.
    let recipients = [EthAddress::repeat_byte(0x91), EthAddress::repeat_byte(0x92)];
    let first_batch = batch_of(&coordinator, withdraw(&coordinator, &p, &user, 100, recipients[0], 0).await).await;
    let second_batch = batch_of(&coordinator, withdraw(&coordinator, &p, &user, 200, recipients[1], 1).await).await;
    assert!(second_batch > first_batch);
    coordinator.shutdown().await;

    // Watchmen 0 and 1 submit, taking turns (a timeout of 3 blocks); watchman 2 only signs.
    const TIMEOUT_BLOCKS: u64 = 3;
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
        let store =
            ConfirmerStore::open(&format!("sqlite://{}", dir.path().join(format!("w{i}.db")).display())).await.unwrap();
        let verifier = EthDepositVerifier::connect(
            &setup.anvil.url(),
            &Default::default(),
            p.eth_vault,
            chains::ethereum::Confirmation::Depth(1),
        )
        .unwrap();
        let verifiers = DepositVerifiers::none().with(bridge::Chain::Ethereum, Arc::new(verifier));
        let follower = Follower::open(Arc::new(da), store, p.clone(), verifiers).await.unwrap();
        let book = SettlementBook::default();
        let policy = Arc::new(ReplayPolicy::new(book.clone(), Some(domain)));
        let node = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let eth = (i < 2).then(|| {
            let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer);
            EthSettlement::new(book.clone(), domain, submitter)
                .with_limits(RangeLimits { window: Duration::ZERO, ..RangeLimits::default() })
                .with_turns(Turns { me: i as u64, submitters: 2, timeout_blocks: TIMEOUT_BLOCKS })
        });
        let reader = VaultReader::new(setup.provider.clone(), vault_address);
        watchmen.push(Watchman::new(follower, book, node, eth).with_vault_reader(reader));
    }
    let reader = VaultReader::new(setup.provider.clone(), vault_address);

    // Everyone replays up to the first withdrawal's batch only.
    for w in watchmen.iter_mut() {
        let report = w.step(first_batch as usize).await.unwrap();
        assert_eq!(report.hard_final, first_batch, "{:?}", w.follower().status());
    }
    // Range 0 is watchman 0's turn: watchman 1 sends nothing for it ...
    for _ in 0..2 {
        let report = watchmen[1].step(0).await.unwrap();
        assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    }
    assert_eq!(reader.progress().await.unwrap().range_count, 0, "not watchman 1's turn");
    // ... watchman 0 signs (with 2), submits and pays it ...
    let report = watchmen[0].step(0).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert_eq!((report.settled[0].range, report.settled[0].first, report.settled[0].last), (0, 1, first_batch));
    assert!(report.settled[0].submitted_root);
    assert_eq!(setup.balance(recipients[0]).await.unwrap(), U256::from(100));
    // ... and watchman 1 finds it paid and sends nothing.
    let before = setup.provider.get_transaction_count(setup.deployer).await.unwrap();
    let report = watchmen[1].step(0).await.unwrap();
    assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    assert_eq!(setup.provider.get_transaction_count(setup.deployer).await.unwrap(), before);

    // The second withdrawal becomes hard-final. Range 1 is watchman 1's turn, and watchman 1
    // is dead from now on: it is never stepped again.
    for i in [0, 2] {
        watchmen[i].step(64).await.unwrap();
        assert!(watchmen[i].book().hard_final() >= second_batch);
    }
    // Watchman 0 waits for the turn-holder while fewer than the timeout's blocks pass.
    for _ in 0..2 {
        let report = watchmen[0].step(0).await.unwrap();
        assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
        assert_eq!(reader.progress().await.unwrap().range_count, 1, "waiting for watchman 1's turn");
    }
    // The timeout passes (anvil mines on demand): watchman 0 takes over.
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (TIMEOUT_BLOCKS,)).await.unwrap();
    watchmen[2].step(0).await.unwrap();
    let report = watchmen[0].step(0).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert_eq!(report.settled[0].range, 1);
    assert_eq!(report.settled[0].first, first_batch + 1);
    assert!(report.settled[0].last >= second_batch);
    assert!(report.settled[0].submitted_root, "watchman 0 took over");
    assert_eq!(setup.balance(recipients[1]).await.unwrap(), U256::from(200));

    // Not one vault transaction reverted: two roots and two payouts, each sent once.
    let outcomes = vault_transactions(&setup, vault_address).await;
    assert!(outcomes.iter().all(|ok| *ok), "{outcomes:?}");
    let settlement_calls = outcomes.len() - 1; // the deposit
    assert_eq!(settlement_calls, 4, "{outcomes:?}");
}
