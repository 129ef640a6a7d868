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

use bridge::forced::{ForcedCursor, ForcedEntry, ForcedListing, ForcedParams, plan};
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
// Arlocal mines a block every 200 ms here: a deadline of 30 blocks (6 s) leaves an honest
// coordinator room to seal, publish and get mined on a loaded machine.
const RULES: ForcedParams = ForcedParams { cap: 8, deadline_blocks: 30, confirmations: 1, start_height: 0 };

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

/// Mines one block holding what was posted and waits until the gateway serves `id` confirmed:
/// the next posting then lands in a later block, so the stream's order is the posting order
/// (within one block it is by Arweave id, and arlocal's ids are random).
async fn mine_alone(arlocal: &Arlocal, id: &str) {
    let gateway = arlocal.gateway().unwrap();
    arlocal.mine(1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let confirmed = matches!(gateway.status(id).await.unwrap(), chains::arweave::TxStatus::Confirmed { .. });
        if confirmed && gateway.tx(id).await.unwrap().is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "arlocal never served {id} in a block");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
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

    // The user never calls the coordinator: everything goes to Arweave, one entry per block,
    // so the stream's order (height, then id) is the order below, whatever ids arlocal draws.
    let gateway = arlocal.gateway().unwrap();
    let mut posted = Vec::new();
    let signed = [
        ("applied", withdraw(&wallet(1), &wallet(1), 100, 0)),
        ("overdraft", withdraw(&wallet(1), &wallet(1), 1_000_000, 1)),
        ("signer_mismatch", withdraw(&wallet(1), &wallet(2), 1, 1)),
        ("nonce_replayed", withdraw(&wallet(1), &wallet(1), 7, 0)),
    ];
    let mut entries: Vec<(&str, Vec<u8>)> =
        signed.iter().map(|(label, tx)| (*label, bridge::forced::encode_payload(tx))).collect();
    entries.push(("undecodable", b"\x00garbage".to_vec()));
    for (expected, data) in entries {
        let id = if expected == "undecodable" {
            post_raw(&arlocal, &user_wallet, &p.name, data).await
        } else {
            gateway.post_forced(&user_wallet, "settlement-bridge", &p.name, data).await.unwrap()
        };
        mine_alone(&arlocal, &id).await;
        posted.push((expected, id));
    }
    // Another network's forced transaction is not this network's business at all.
    let foreign = post_raw(
        &arlocal,
        &user_wallet,
        "another-network",
        bridge::forced::encode_payload(&withdraw(&wallet(1), &wallet(1), 5, 1)),
    )
    .await;
    mine_alone(&arlocal, &foreign).await;
    let mining = keep_mining(&arlocal);

    // The coordinator includes them on its own, each in whichever published batch its block
    // reached; /status shows the cursor moving.
    let store = node.store.clone();
    let id_bytes = |id: &str| -> [u8; 32] { chains::arweave::b64(id).unwrap().try_into().unwrap() };
    let last_id = id_bytes(&posted.last().unwrap().1);
    let foreign_id = id_bytes(&foreign);
    let (records, last_number) = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let published: Vec<_> =
                store.batches().await.unwrap().into_iter().filter(|b| b.locator.is_some()).collect();
            // The last entry in stream order is in: every one before it is too (or missing).
            if published.iter().any(|b| b.batch.forced.iter().any(|r| r.arweave_id == last_id)) {
                let records: Vec<_> = published.iter().flat_map(|b| b.batch.forced.clone()).collect();
                break (records, published.last().unwrap().batch.header.number);
            }
            if Instant::now() > deadline {
                let status: serde_json::Value =
                    http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
                let health: serde_json::Value =
                    http.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
                let sections: Vec<_> = store
                    .batches()
                    .await
                    .unwrap()
                    .iter()
                    .map(|b| {
                        (
                            b.batch.header.number,
                            b.locator.is_some(),
                            b.batch.header.forced.clone(),
                            b.batch.forced.len(),
                        )
                    })
                    .collect();
                panic!("the forced entries were not all included in published batches: {status} {health} {sections:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for (expected, id) in &posted {
        let record = records.iter().find(|r| r.arweave_id == id_bytes(id));
        assert_eq!(record.map(|r| r.outcome.label()), Some(*expected), "entry {id}");
    }
    assert_eq!(records.len(), 5, "one record per entry of this network, none twice: {records:?}");
    assert!(records.iter().all(|r| r.arweave_id != foreign_id), "the other network's posting is not an entry");
    let status: serde_json::Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert!(status["forced"]["cursor"]["height"].as_u64().is_some(), "{status}");
    // The coordinator's GET /tx/{hash} shows each forced transaction with what its batch
    // recorded: applied, or refused with the STF's code.
    let domain = bridge::eip712::Domain::new(&p);
    for (label, tx) in &signed {
        let hash = format!("0x{}", hex::encode(tx.tx.signing_hash(&domain)));
        let view: serde_json::Value = http.get(format!("{base}/tx/{hash}")).send().await.unwrap().json().await.unwrap();
        let (outcome, code) = if *label == "applied" { ("applied", None) } else { ("refused", Some(*label)) };
        assert_eq!(view["forced"]["outcome"], outcome, "{view}");
        assert_eq!(view["forced"]["code"].as_str(), code, "{view}");
        assert_eq!(view["status"], "published", "{view}");
        let id = &posted.iter().find(|(l, _)| l == label).unwrap().1;
        assert_eq!(view["forced"]["arweave_id"].as_str(), Some(id.as_str()), "{view}");
    }

    // A confirmer checking every batch's forced range against the gateway agrees, and the
    // forced withdrawal is owed on Ethereum in its hard-final batch.
    let da_config = ArweaveDaConfig::new(&p.name, p.coordinator_key, coordinator_wallet.address());
    let da = ArweaveDa::follower(arlocal.gateway().unwrap(), da_config);
    let confirmer_store =
        ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut follower = Follower::open(Arc::new(da), confirmer_store, p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(ForcedChecker::new(arlocal.gateway().unwrap(), &p.name, RULES));
    step_until(&mut follower, "the forced batches replayed", |s| s.replayed >= last_number).await;
    let status = follower.status();
    assert!(status.alarms.is_empty(), "{:?}", status.alarms);
    // Only the dev deposit (no L1 node here) keeps it from hard finality; the forced range
    // checked out against the gateway.
    assert!(status.unverified.as_deref().is_none_or(|why| why.contains("deposit")), "{status:?}");
    assert_eq!(follower.state().balance(&account, &AssetId::Eth), Amount(900), "only the valid one applied");
    // The forced withdrawal is owed on Ethereum by its batch, first in the withdrawals tree.
    let applied = id_bytes(&posted[0].1);
    let mut state = State::genesis(p.clone());
    let mut owed_once = 0;
    for stored in store.batches().await.unwrap() {
        let replayed = bridge::replay(&mut state, &stored.batch).unwrap();
        if stored.batch.forced.iter().any(|r| r.arweave_id == applied) {
            let owed = replayed.settlement.eth.withdrawals();
            assert_eq!(owed.len(), 1, "the forced withdrawal is owed on L1");
            assert_eq!((owed[0].index, owed[0].amount), (0, Amount(100)));
            assert_eq!(replayed.forced_receipts.len(), 1);
            owed_once += 1;
        }
    }
    assert_eq!(owed_once, 1);
    mining.abort();
    node.shutdown().await;
}

/// A coordinator configured for `arlocal` with the wallet `jwk`, its data in `dir`.
fn arweave_coordinator(dir: &Path, arlocal: &Arlocal, jwk: &Path) -> coordinator::config::Config {
    let mut config = coordinator_config(dir, &forced_params());
    config.da.kind = DaKind::Arweave;
    config.da.gateway = Some(arlocal.url().to_owned());
    config.da.wallet = Some(jwk.to_path_buf());
    config.da.publish_retry_ms = 200;
    config.da.forced_poll_ms = 200;
    config
}

/// A censoring coordinator (a test double signing with the real key, publishing from the real
/// wallet) seals batch 2 past a forced withdrawal without recording it: the confirmer raises
/// `censorship`, a watchman's book halts, the evidence checks offline and on Arweave. Then a
/// new coordinator takes over (`recover --from-da`'s code, then `Node::start`): the recovery
/// stops before batch 2, the new coordinator seals a batch 2 that applies the withdrawal and
/// publishes it beside the censoring one; the halted confirmer follows it, the alarm is
/// superseded, the book signs again, and a fresh confirmer picks the same batch 2.
#[tokio::test]
async fn a_censoring_coordinator_raises_censorship_and_a_takeover_includes_the_skipped_entry() {
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (coordinator_wallet, coordinator_jwk) = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let (user_wallet, _) = funded_wallet(&arlocal, dir.path(), "user.json").await;
    let p = forced_params();
    let gateway = arlocal.gateway().unwrap();
    let da_config = ArweaveDaConfig::new(&p.name, p.coordinator_key, coordinator_wallet.address());
    let publisher = ArweaveDa::publisher(
        arlocal.gateway().unwrap(),
        da_config.clone(),
        ArweaveWallet::load(&coordinator_jwk).unwrap(),
        &dir.path().join("journal"),
    )
    .unwrap();

    // Batch 1 is honest: it funds the user, and no forced entry exists yet.
    let mut state = State::genesis(p.clone());
    let mut builder = BatchBuilder::new(&state);
    let first_to = ForcedCursor { height: gateway.height().await.unwrap() + 1, taken: 0 };
    builder.process_forced(&mut state, RULES.start(), first_to, &[], &|_| false).unwrap();
    builder.apply(&mut state, deposit(wallet(1).address(), 1_000, 1)).unwrap();
    let first = builder.seal(&mut state, 1, &key()).unwrap().batch;
    publisher.publish(&first).await.unwrap();
    arlocal.mine(1).await.unwrap();

    // The user, ignored, posts a withdrawal to Arweave.
    let honest = withdraw(&wallet(1), &wallet(1), 10, 0);
    let skipped_id = gateway
        .post_forced(&user_wallet, "settlement-bridge", &p.name, bridge::forced::encode_payload(&honest))
        .await
        .unwrap();
    mine_alone(&arlocal, &skipped_id).await;
    arlocal.mine(1).await.unwrap();

    // The censor: batch 2 moves the cursor past the entry without recording it.
    let tip = gateway.height().await.unwrap();
    let mut builder = BatchBuilder::new(&state);
    builder.process_forced(&mut state, first_to, ForcedCursor { height: tip, taken: 0 }, &[], &|_| false).unwrap();
    builder.apply(&mut state, deposit(wallet(2).address(), 5, 2)).unwrap();
    let censoring = builder.seal(&mut state, 2, &key()).unwrap().batch;
    publisher.publish(&censoring).await.unwrap();
    let mining = keep_mining(&arlocal);

    let checker = || ForcedChecker::new(arlocal.gateway().unwrap(), &p.name, RULES);
    let follower_da =
        || Arc::new(ArweaveDa::follower(arlocal.gateway().unwrap(), da_config.clone()).with_forced(checker()));
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut follower = Follower::open(follower_da(), store.clone(), p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(checker());
    step_until(&mut follower, "the censorship alarm", |s| !s.alarms.is_empty()).await;
    let alarm = &follower.status().alarms[0];
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::Censorship, 2));
    assert!(alarm.detail.contains(&skipped_id), "{}", alarm.detail);
    assert_eq!(follower.status().replayed, 1, "the censoring batch is not replayed");
    assert!(follower.status().hard_final < 2, "nothing from the censoring batch on is final");
    let book = confirmer::watchman::SettlementBook::default();
    book.update_from(&follower).await.unwrap();
    assert!(book.halted().is_some_and(|why| why.contains("censorship")), "a watchman halts on it");

    // The evidence checks with the file alone, and against Arweave.
    let (_, evidence) = store.alarms().await.unwrap().pop().unwrap();
    let evidence = Evidence::from_json(&evidence).unwrap();
    let explained = evidence.check().unwrap();
    assert!(explained.contains("skipped forced transaction"), "{explained}");
    let found = evidence.censorship.clone().unwrap();
    let batch = evidence.decoded_batches().unwrap().pop().unwrap();
    found.check_on_arweave(&checker(), &batch).await.unwrap();
    // A file whose listing leaves the entry out proves nothing.
    let mut doctored = evidence.clone();
    doctored.censorship.as_mut().unwrap().listed.clear();
    assert!(doctored.check().is_err());

    // The takeover: rebuilt from the DA with the forced check, it stops before batch 2.
    let takeover_dir = tempfile::tempdir().unwrap();
    let config = arweave_coordinator(takeover_dir.path(), &arlocal, &coordinator_jwk);
    let ledger = coordinator::store::Store::open(&config.database_url()).await.unwrap();
    let (da, _) = coordinator::node::open_da(&config, &p, false).unwrap();
    let forced = coordinator::node::forced_checker(&config, &p).unwrap();
    let recovered = coordinator::takeover::recover_from_da(da.as_ref(), &ledger, p.clone(), forced.as_ref(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(recovered.batches, 1);
    let (stopped, why) = recovered.stopped_before.clone().unwrap();
    assert_eq!(stopped, 2);
    assert!(why.contains(&skipped_id), "{why}");
    // Without the check a takeover would replay the censoring batch: it refuses to run.
    let unchecked =
        coordinator::store::Store::open(&format!("sqlite://{}", takeover_dir.path().join("x.db").display()))
            .await
            .unwrap();
    let refused = coordinator::takeover::recover_from_da(da.as_ref(), &unchecked, p.clone(), None, |_, _| {}).await;
    assert!(matches!(refused, Err(coordinator::takeover::TakeoverError::NoForcedCheck)), "{refused:?}");
    drop(ledger);

    // The new coordinator seals its own batch 2: the skipped withdrawal, applied, first.
    let node = Node::start(&config).await.unwrap();
    let skipped = chains::arweave::b64(&skipped_id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let replacement = loop {
        if let Some(stored) = node.store.batch(2).await.unwrap()
            && stored.locator.is_some()
        {
            break stored;
        }
        assert!(Instant::now() < deadline, "the new coordinator never published a batch 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(replacement.batch.forced.len(), 1);
    assert_eq!(replacement.batch.forced[0].arweave_id.to_vec(), skipped);
    assert_eq!(replacement.batch.forced[0].outcome.label(), "applied");
    assert_ne!(replacement.batch.hash(), censoring.hash());

    // The halted confirmer follows the new batch 2: the alarm is superseded and the book signs.
    step_until(&mut follower, "the takeover's batch 2", |s| s.replayed >= 2 && s.alarms.is_empty()).await;
    assert_eq!(follower.state().balance(&wallet(1).address(), &AssetId::Eth), Amount(990));
    assert_eq!(follower.state().balance(&wallet(2).address(), &AssetId::Eth), Amount(0), "not the censor's batch");
    book.update_from(&follower).await.unwrap();
    assert_eq!(book.halted(), None, "the watchman signs again");
    // The forced withdrawal is owed on Ethereum by the new batch 2, first in its tree.
    let mut replay_state = State::genesis(p.clone());
    bridge::replay(&mut replay_state, &first).unwrap();
    let replayed = bridge::replay(&mut replay_state, &replacement.batch).unwrap();
    let owed = replayed.settlement.eth.withdrawals();
    assert_eq!((owed.len(), owed[0].index, owed[0].amount), (1, 0, Amount(10)));
    // It stays so after a restart (the alarm is in the record, superseded by the replayed batch).
    drop(follower);
    let mut reopened = Follower::open(follower_da(), store.clone(), p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(checker());
    assert!(reopened.status().alarms.is_empty(), "{:?}", reopened.status().alarms);
    reopened.step(64).await.unwrap();
    assert!(reopened.status().alarms.is_empty());

    // A confirmer starting now, with both batches 2 on Arweave, picks the takeover's.
    let fresh_store =
        ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("fresh.db").display())).await.unwrap();
    let mut fresh = Follower::open(follower_da(), fresh_store, p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(checker());
    step_until(&mut fresh, "batch 2 on a fresh confirmer", |s| s.replayed >= 2).await;
    assert!(fresh.status().alarms.is_empty(), "{:?}", fresh.status().alarms);
    assert_eq!(fresh.state().balance(&wallet(1).address(), &AssetId::Eth), Amount(990));
    mining.abort();
    node.shutdown().await;
}

/// The entries of `listings`, asked for again while the gateway lists one it does not serve yet
/// (as the coordinator's task does turn after turn): never skipped, never malformed for it.
async fn fetch_when_served(gateway: &chains::arweave::Gateway, listings: &[ForcedListing]) -> Vec<ForcedEntry> {
    // arlocal on a loaded machine can list an entry seconds before it serves it: up to a
    // minute, 300 ms apart.
    for _ in 0..200 {
        match gateway.fetch_forced_all(listings).await {
            Ok(entries) => return entries,
            Err(error @ chains::arweave::GatewayError::NotServedYet { .. }) => eprintln!("{error}"),
            Err(error) => panic!("{error}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the gateway never served what it listed");
}

#[tokio::test]
async fn a_thousand_junk_entries_are_skipped_at_bounded_cost() {
    let p = forced_params();
    let forced_tags =
        || vec![Tag::new("App-Name", "settlement-bridge"), Tag::new("Network", &p.name), Tag::new("Type", "forced-tx")];
    let other_network = || {
        vec![Tag::new("App-Name", "settlement-bridge"), Tag::new("Network", "elsewhere"), Tag::new("Type", "forced-tx")]
    };
    // arlocal under a thousand concurrent posts now and then acknowledges an entry, indexes it,
    // and never serves it again (its `GET /tx/{id}` answers 404 for good). The protocol rightly
    // waits for such an entry forever; this test's subject is the bounded cost of junk, so a
    // set-up whose arlocal lost an entry is started again, at most three times.
    let mut setups = 0;
    let (arlocal, _dir, user) = loop {
        setups += 1;
        let arlocal = Arlocal::start_in_ram().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (spammer, _) = funded_wallet(&arlocal, dir.path(), "spammer.json").await;
        let (user, _) = funded_wallet(&arlocal, dir.path(), "user.json").await;
        let sets: Vec<Vec<Tag>> =
            (0..1_000).map(|i| if i % 2 == 0 { forced_tags() } else { other_network() }).collect();
        let posted = arlocal.post_junk(Arc::new(spammer), sets).await.unwrap();
        arlocal.mine(1).await.unwrap();
        if all_served(&arlocal, &posted).await {
            break (arlocal, dir, user);
        }
        assert!(setups < 3, "arlocal lost an acknowledged entry in {setups} set-ups in a row");
        eprintln!("arlocal lost an acknowledged junk entry; starting the set-up again");
    };
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
        let entries = fetch_when_served(&gateway, &planned.take).await;
        assert!(entries.iter().all(|e| e.data.is_some()), "every junk entry here is small and served");
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

/// Whether arlocal serves every one of `ids` (a few tries each, for a busy moment).
async fn all_served(arlocal: &Arlocal, ids: &[String]) -> bool {
    let http = reqwest::Client::new();
    for id in ids {
        let mut served = false;
        for _ in 0..3 {
            let answer = http.get(format!("{}/tx/{id}", arlocal.url())).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !served {
            return false;
        }
    }
    true
}

/// A forced entry the gateway lists but does not serve yet (a gateway indexes before it
/// serves): the coordinator's follower waits for it, showing why on `/status`, and never seals
/// past it nor records it as malformed; a confirmer whose gateway holds it back waits too, with
/// no alarm; once served, it is applied and replay agrees.
#[tokio::test]
async fn a_listed_entry_not_served_yet_is_waited_for_never_skipped() {
    use common::withholding_gateway::WithholdingGateway;
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (coordinator_wallet, coordinator_jwk) = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let (user_wallet, _) = funded_wallet(&arlocal, dir.path(), "user.json").await;
    let p = forced_params();
    // The coordinator and the confirmer each read Arweave through a gateway of their own.
    let coordinator_view = WithholdingGateway::start(arlocal.url()).await;
    let confirmer_view = WithholdingGateway::start(arlocal.url()).await;
    let deposits = serde_json::json!([{ "account": wallet(1).address(), "asset": "eth:ETH", "amount": "1000" }]);
    std::fs::write(dir.path().join("deposits.json"), serde_json::to_vec(&deposits).unwrap()).unwrap();
    let mut config = coordinator_config(dir.path(), &p);
    config.dev.deposits = Some(dir.path().join("deposits.json"));
    config.da.kind = DaKind::Arweave;
    config.da.gateway = Some(coordinator_view.url.clone());
    config.da.wallet = Some(coordinator_jwk);
    config.da.publish_retry_ms = 200;
    config.da.forced_poll_ms = 200;
    let node = Node::start(&config).await.unwrap();
    let http = reqwest::Client::new();
    let base = node.url();

    // Posted, held back by both gateways, then mined: listed in a block, not served.
    let gateway = arlocal.gateway().unwrap();
    let payload = bridge::forced::encode_payload(&withdraw(&wallet(1), &wallet(1), 100, 0));
    let id = gateway.post_forced(&user_wallet, "settlement-bridge", &p.name, payload).await.unwrap();
    coordinator_view.hold(&id);
    confirmer_view.hold(&id);
    mine_alone(&arlocal, &id).await;
    let height = match gateway.status(&id).await.unwrap() {
        chains::arweave::TxStatus::Confirmed { height, .. } => height,
        other => panic!("{other:?}"),
    };
    let mining = keep_mining(&arlocal);

    // The coordinator says why it waits, and no batch moves the cursor past the entry.
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        let status: serde_json::Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
        if let Some(why) = status["forced"]["not_served"].as_str() {
            break why.to_owned();
        }
        assert!(Instant::now() < deadline, "the coordinator never said it waits: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(waiting.contains(&id), "{waiting}");
    let entry_at = ForcedCursor { height, taken: 0 };
    for stored in node.store.batches().await.unwrap() {
        let commit = stored.batch.header.forced.unwrap();
        assert!(commit.to <= entry_at, "batch {} moved the cursor past an entry it never saw", commit.to);
        assert!(stored.batch.forced.is_empty());
    }

    // Served to the coordinator: it is applied in the next forced batch.
    coordinator_view.release(&id);
    let id_bytes: [u8; 32] = chains::arweave::b64(&id).unwrap().try_into().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let number = loop {
        let found =
            node.store.batches().await.unwrap().into_iter().find(|b| b.locator.is_some() && !b.batch.forced.is_empty());
        if let Some(found) = found {
            assert_eq!(found.batch.forced.len(), 1);
            assert_eq!(
                (found.batch.forced[0].arweave_id, found.batch.forced[0].outcome.label()),
                (id_bytes, "applied")
            );
            break found.batch.header.number;
        }
        assert!(Instant::now() < deadline, "the entry was never included once served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // A confirmer whose gateway still holds it back waits at that batch: no alarm.
    let da_config = ArweaveDaConfig::new(&p.name, p.coordinator_key, coordinator_wallet.address());
    let da = ArweaveDa::follower(confirmer_view.gateway(), da_config);
    let confirmer_store =
        ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut follower = Follower::open(Arc::new(da), confirmer_store, p.clone(), DepositVerifiers::none())
        .await
        .unwrap()
        .with_forced(ForcedChecker::new(confirmer_view.gateway(), &p.name, RULES));
    step_until(&mut follower, "the batch before the forced one", |s| s.replayed + 1 >= number).await;
    for _ in 0..3 {
        follower.step(64).await.unwrap();
        let status = follower.status();
        assert!(status.alarms.is_empty(), "not served yet is no censorship: {:?}", status.alarms);
        assert!(status.replayed < number, "the batch replayed without its forced entry checked");
    }
    confirmer_view.release(&id);
    step_until(&mut follower, "the forced batch replayed", |s| s.replayed >= number).await;
    assert!(follower.status().alarms.is_empty(), "{:?}", follower.status().alarms);
    assert_eq!(follower.state().balance(&wallet(1).address(), &AssetId::Eth), Amount(900));
    mining.abort();
    node.shutdown().await;
}
