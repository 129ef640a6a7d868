//! Forced inclusion on real parts (arlocal, the coordinator, the confirmer's follower): a user
//! who does not go through the coordinator posts signed transactions to Arweave; the coordinator
//! includes them without being asked, each applied or refused with its reason, and a confirmer
//! checking against the gateway agrees and calls them hard-final. A censoring coordinator (a
//! test double here, signing with the real coordinator key) makes the confirmer raise
//! `censorship`, whose evidence checks offline and against Arweave. Junk under the forced tags
//! is skipped at bounded cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::forced::{ForcedCursor, ForcedParams, plan, sort_listings};
use bridge::tx::{UserTx, Withdraw};
use bridge::{Amount, AssetId, BatchBuilder, NetworkParams, SignedUserTx, State};
use chains::arweave::arlocal::Arlocal;
use chains::arweave::{ArweaveWallet, Tag, Transaction};
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability};
use common::*;
use confirmer::alarm::AlarmKind;
use confirmer::deposits::DepositVerifiers;
use confirmer::evidence::Evidence;
use confirmer::follower::Follower;
use confirmer::forced::ForcedChecker;
use confirmer::store::ConfirmerStore;
use coordinator::config::DaKind;
use coordinator::node::Node;

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");
const RULES: ForcedParams = ForcedParams { cap: 8, deadline_blocks: 8, confirmations: 1, start_height: 0 };

fn forced_params() -> NetworkParams {
    NetworkParams { forced: Some(RULES), ..params() }
}

async fn funded_wallet(arlocal: &Arlocal, dir: &Path, name: &str) -> (ArweaveWallet, std::path::PathBuf) {
    let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &generated.stdout).unwrap();
    let wallet = ArweaveWallet::load(&path).unwrap();
    arlocal.mint(wallet.address(), 1_000_000_000_000_000).await.unwrap();
    (wallet, path)
}

fn withdraw(from: &bridge::Wallet, signer: &bridge::Wallet, amount: u128, nonce: u64) -> SignedUserTx {
    let tx = UserTx::Withdraw(Withdraw {
        from: from.address(),
        asset: AssetId::Eth,
        amount: Amount(amount),
        fee: Amount(0),
        recipient: wallet(50).address().to_string(),
        nonce,
    });
    signer.sign(tx, &bridge::eip712::Domain::new(&forced_params()))
}

/// Posts `data` under the forced tags of `network` (not mined).
async fn post_raw(arlocal: &Arlocal, wallet: &ArweaveWallet, network: &str, data: Vec<u8>) -> String {
    let gateway = arlocal.gateway().unwrap();
    let tags =
        vec![Tag::new("App-Name", "settlement-bridge"), Tag::new("Network", network), Tag::new("Type", "forced-tx")];
    let anchor = gateway.tx_anchor().await.unwrap();
    let reward = gateway.price_winston(data.len() as u64).await.unwrap();
    let mut tx = Transaction::with_data(data, tags, anchor, reward, wallet.owner().to_vec());
    tx.sign(wallet).unwrap();
    gateway.upload(&tx).await.unwrap();
    tx.id_b64()
}

/// Mines one arlocal block every 200 ms until dropped.
fn keep_mining(arlocal: &Arlocal) -> tokio::task::JoinHandle<()> {
    let url = arlocal.url().to_owned();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let _ = http.get(format!("{url}/mine/1")).send().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn step_until(follower: &mut Follower, what: &str, done: impl Fn(&confirmer::follower::Status) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        follower.step(64).await.unwrap();
        let status = follower.status();
        if done(&status) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "flaky on arlocal: the entries of one block run in random id order, so the expected outcomes are not fixed; run with --run-ignored until the test posts one entry per block (issue 21)"]
async fn forced_transactions_are_included_without_asking_and_replay_agrees() {
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (coordinator_wallet, coordinator_jwk) = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let (user_wallet, _) = funded_wallet(&arlocal, dir.path(), "user.json").await;
    let p = forced_params();
    let deposits = serde_json::json!([{ "account": wallet(1).address(), "asset": "eth:ETH", "amount": "1000" }]);
    std::fs::write(dir.path().join("deposits.json"), serde_json::to_vec(&deposits).unwrap()).unwrap();
    let mut config = coordinator_config(dir.path(), &p);
    config.dev.deposits = Some(dir.path().join("deposits.json"));
    config.da.kind = DaKind::Arweave;
    config.da.gateway = Some(arlocal.url().to_owned());
    config.da.wallet = Some(coordinator_jwk);
    config.da.publish_retry_ms = 200;
    config.da.forced_poll_ms = 200;
    let node = Node::start(&config).await.unwrap();
    let http = reqwest::Client::new();
    let base = node.url();
    let account = wallet(1).address();
    for _ in 0..600 {
        let view: serde_json::Value =
            http.get(format!("{base}/accounts/{account}")).send().await.unwrap().json().await.unwrap();
        if !view["balances"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The user never calls the coordinator: everything goes to Arweave.
    let gateway = arlocal.gateway().unwrap();
    let post = |tx: SignedUserTx| {
        let gateway = gateway.clone();
        let wallet = &user_wallet;
        async move {
            gateway
                .post_forced(wallet, "settlement-bridge", &forced_params().name, bridge::forced::encode_payload(&tx))
                .await
                .unwrap()
        }
    };
    let applied = post(withdraw(&wallet(1), &wallet(1), 100, 0)).await;
    let overdraft = post(withdraw(&wallet(1), &wallet(1), 1_000_000, 1)).await;
    let bad_signature = post(withdraw(&wallet(1), &wallet(2), 1, 1)).await;
    let replayed = post(withdraw(&wallet(1), &wallet(1), 7, 0)).await;
    // Entries of one block run in Arweave-id order, and arlocal's ids are random: of the two
    // nonce-0 withdrawals, the one with the smaller id is applied and the other replays its nonce.
    let id_bytes = |id: &str| -> [u8; 32] { chains::arweave::b64(id).unwrap().try_into().unwrap() };
    let (applied, replayed, applied_amount) =
        if id_bytes(&applied) < id_bytes(&replayed) { (applied, replayed, 100) } else { (replayed, applied, 7) };
    let garbage = post_raw(&arlocal, &user_wallet, &p.name, b"\x00garbage".to_vec()).await;
    // Another network's forced transaction is not this network's business at all.
    let _foreign = post_raw(
        &arlocal,
        &user_wallet,
        "another-network",
        bridge::forced::encode_payload(&withdraw(&wallet(1), &wallet(1), 5, 1)),
    )
    .await;
    let mining = keep_mining(&arlocal);

    // The coordinator includes them on its own; /status shows the cursor moving.
    let store = node.store.clone();
    let forced_batch = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let found =
                store.batches().await.unwrap().into_iter().find(|b| !b.batch.forced.is_empty() && b.locator.is_some());
            if let Some(found) = found {
                break found;
            }
            assert!(Instant::now() < deadline, "no batch with the forced transactions");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let outcome = |id: &str| {
        let bytes: [u8; 32] = chains::arweave::b64(id).unwrap().try_into().unwrap();
        let record = forced_batch.batch.forced.iter().find(|r| r.arweave_id == bytes);
        record.map(|r| r.outcome.label().to_owned()).unwrap_or_else(|| "missing".into())
    };
    assert_eq!(outcome(&applied), "applied");
    assert_eq!(outcome(&overdraft), "overdraft");
    assert_eq!(outcome(&bad_signature), "signer_mismatch");
    assert_eq!(outcome(&replayed), "nonce_replayed");
    assert_eq!(outcome(&garbage), "undecodable");
    assert_eq!(forced_batch.batch.forced.len(), 5, "the other network's posting is not an entry");
    let status: serde_json::Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert!(status["forced"]["cursor"]["height"].as_u64().is_some(), "{status}");

    // A confirmer checking every batch's forced range against the gateway agrees, and the
    // forced withdrawal is owed on Ethereum in its hard-final batch.
    let number = forced_batch.batch.header.number;
    let da_config = ArweaveDaConfig::new(&p.name, p.coordinator_key, coordinator_wallet.address());
    let da = ArweaveDa::follower(arlocal.gateway().unwrap(), da_config);
    let confirmer_store =
        ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut follower = Follower::open(Arc::new(da), confirmer_store, p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(ForcedChecker::new(arlocal.gateway().unwrap(), &p.name, RULES));
    step_until(&mut follower, "the forced batch replayed", |s| s.replayed >= number).await;
    let status = follower.status();
    assert!(status.alarms.is_empty(), "{:?}", status.alarms);
    // Only the dev deposit (no L1 node here) keeps it from hard finality; the forced range
    // checked out against the gateway.
    assert!(status.unverified.as_deref().is_none_or(|why| why.contains("deposit")), "{status:?}");
    assert_eq!(
        follower.state().balance(&account, &AssetId::Eth),
        Amount(1000 - applied_amount),
        "only the valid one applied"
    );
    // The forced withdrawal is owed on Ethereum by its batch, first in the withdrawals tree.
    let mut state = State::genesis(p.clone());
    for stored in store.batches().await.unwrap() {
        let replayed = bridge::replay(&mut state, &stored.batch).unwrap();
        if stored.batch.header.number == number {
            let owed = replayed.settlement.eth.withdrawals();
            assert_eq!(owed.len(), 1, "the forced withdrawal is owed on L1");
            assert_eq!((owed[0].index, owed[0].amount), (0, Amount(applied_amount)));
            assert_eq!(replayed.forced_receipts.len(), 1);
        }
    }
    mining.abort();
    node.shutdown().await;
}

#[tokio::test]
async fn a_censoring_coordinator_raises_censorship_with_evidence_that_checks_on_arweave() {
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (coordinator_wallet, coordinator_jwk) = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let (user_wallet, _) = funded_wallet(&arlocal, dir.path(), "user.json").await;
    let p = forced_params();
    let gateway = arlocal.gateway().unwrap();
    let honest = withdraw(&wallet(1), &wallet(1), 10, 0);
    let skipped_id = gateway
        .post_forced(&user_wallet, "settlement-bridge", &p.name, bridge::forced::encode_payload(&honest))
        .await
        .unwrap();
    arlocal.mine(2).await.unwrap();

    // The censor: batch 1 moves the cursor past the entry without recording it, signed with the
    // real coordinator key and published from the coordinator's wallet.
    let tip = gateway.height().await.unwrap();
    let mut state = State::genesis(p.clone());
    let mut builder = BatchBuilder::new(&state);
    let to = ForcedCursor { height: tip, taken: 0 };
    builder.process_forced(&mut state, RULES.start(), to, &[], &|_| false).unwrap();
    builder.apply(&mut state, deposit(wallet(1).address(), 1_000, 1)).unwrap();
    let censoring = builder.seal(&mut state, 1, &key()).unwrap().batch;
    let da_config = ArweaveDaConfig::new(&p.name, p.coordinator_key, coordinator_wallet.address());
    let publisher = ArweaveDa::publisher(
        arlocal.gateway().unwrap(),
        da_config.clone(),
        ArweaveWallet::load(&coordinator_jwk).unwrap(),
        &dir.path().join("journal"),
    )
    .unwrap();
    publisher.publish(&censoring).await.unwrap();
    let mining = keep_mining(&arlocal);

    let follower_da = ArweaveDa::follower(arlocal.gateway().unwrap(), da_config);
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut follower = Follower::open(Arc::new(follower_da), store.clone(), p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(ForcedChecker::new(arlocal.gateway().unwrap(), &p.name, RULES));
    step_until(&mut follower, "the censorship alarm", |s| !s.alarms.is_empty()).await;
    let alarm = &follower.status().alarms[0];
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::Censorship, 1));
    assert!(alarm.detail.contains(&skipped_id), "{}", alarm.detail);
    assert_eq!(follower.status().hard_final, 0, "nothing from the censoring batch on is final");

    // The evidence checks with the file alone, and against Arweave.
    let (_, evidence) = store.alarms().await.unwrap().pop().unwrap();
    let evidence = Evidence::from_json(&evidence).unwrap();
    let explained = evidence.check().unwrap();
    assert!(explained.contains("skipped forced transaction"), "{explained}");
    let found = evidence.censorship.clone().unwrap();
    let batch = evidence.decoded_batches().unwrap().pop().unwrap();
    let checker = ForcedChecker::new(arlocal.gateway().unwrap(), &p.name, RULES);
    found.check_on_arweave(&checker, &batch).await.unwrap();
    // A file whose listing leaves the entry out proves nothing.
    let mut doctored = evidence.clone();
    doctored.censorship.as_mut().unwrap().listed.clear();
    assert!(doctored.check().is_err());

    // A new coordinator's plan from the same cursor takes the skipped entry first.
    let page = gateway.list_forced("settlement-bridge", &p.name, 0, tip, 100).await.unwrap();
    let mut listings = page.listings;
    sort_listings(&mut listings);
    let next = plan(RULES.start(), &listings, RULES.safe_height(tip), RULES.cap);
    assert_eq!(chains::arweave::to_b64(&next.take[0].arweave_id), skipped_id);
    mining.abort();
}

#[tokio::test]
#[ignore = "flaky on arlocal: the gateway lists a transaction before serving it and the test unwraps that race; run with --run-ignored until the fetch is retried (issue 21)"]
async fn a_thousand_junk_entries_are_skipped_at_bounded_cost() {
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (spammer, _) = funded_wallet(&arlocal, dir.path(), "spammer.json").await;
    let (user, _) = funded_wallet(&arlocal, dir.path(), "user.json").await;
    let p = forced_params();
    let forced_tags =
        || vec![Tag::new("App-Name", "settlement-bridge"), Tag::new("Network", &p.name), Tag::new("Type", "forced-tx")];
    let other_network = || {
        vec![Tag::new("App-Name", "settlement-bridge"), Tag::new("Network", "elsewhere"), Tag::new("Type", "forced-tx")]
    };
    let sets: Vec<Vec<Tag>> = (0..1_000).map(|i| if i % 2 == 0 { forced_tags() } else { other_network() }).collect();
    arlocal.post_junk(Arc::new(spammer), sets).await.unwrap();
    arlocal.mine(1).await.unwrap();
    let gateway = arlocal.gateway().unwrap();
    let honest = gateway
        .post_forced(
            &user,
            "settlement-bridge",
            &p.name,
            bridge::forced::encode_payload(&withdraw(&wallet(1), &wallet(1), 1, 0)),
        )
        .await
        .unwrap();
    arlocal.mine(1).await.unwrap();
    let tip = gateway.height().await.unwrap();

    // Batch after batch, as the coordinator plans them: each lists a bounded page, fetches at
    // most `cap` entries, and the honest entry comes in the batch the cap says.
    let cap = RULES.cap;
    let max_rows = cap as usize + chains::arweave::MAX_TXS_PER_BLOCK + chains::arweave::PAGE;
    let mut cursor = RULES.start();
    let mut batches = 0;
    let mut fetched = 0;
    let checker = ForcedChecker::new(arlocal.gateway().unwrap(), &p.name, RULES);
    loop {
        let page = gateway.list_forced("settlement-bridge", &p.name, cursor.height, tip, max_rows).await.unwrap();
        assert!(page.listings.len() <= max_rows);
        let planned = plan(cursor, &page.listings, RULES.safe_height(tip).min(page.complete_to), cap);
        let mut entries = Vec::new();
        for listing in &planned.take {
            entries.push(gateway.fetch_forced(*listing).await.unwrap());
        }
        fetched += entries.len();
        // A confirmer's listing of the same range agrees.
        let listed = checker.listed(cursor, planned.to).await.unwrap().unwrap();
        assert_eq!(bridge::forced::expected(cursor, planned.to, &listed), planned.take);
        batches += 1;
        cursor = planned.to;
        if planned.take.iter().any(|l| chains::arweave::to_b64(&l.arweave_id) == honest) {
            break;
        }
        assert!(batches <= 100, "the honest entry never came");
    }
    // 500 junk entries of this network and the honest one; the other network's 500 never count.
    assert_eq!(batches, 501usize.div_ceil(cap as usize));
    assert_eq!(fetched, 501, "one fetch per entry of this network, none for the other's");
}
