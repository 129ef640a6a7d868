//! The confirmer following Arweave (arlocal): batches from another wallet are ignored, not
//! alarmed; two batches signed with one number are an equivocation alarm whose evidence checks;
//! another wallet's flood of postings under the bridge's tags stops neither the publisher nor the
//! follower; a batch the coordinator withholds while publishing later ones is a `missing_batch`
//! alarm after the configured wait, and one that merely arrives late is not; a second batch
//! posted under a number the follower already passed is an equivocation alarm all the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::SignedBatch;
use bridge::codec::{CODEC_NAME, encode_batch};
use chains::arweave::arlocal::Arlocal;
use chains::arweave::{ArweaveWallet, RetryPolicy, Tag, Transaction};
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability};
use common::*;
use confirmer::alarm::AlarmKind;
use confirmer::deposits::DepositVerifiers;
use confirmer::evidence::Evidence;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");

async fn funded_wallet(arlocal: &Arlocal, dir: &Path, name: &str) -> ArweaveWallet {
    let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &generated.stdout).unwrap();
    let wallet = ArweaveWallet::load(&path).unwrap();
    arlocal.mint(wallet.address(), 1_000_000_000_000_000).await.unwrap();
    wallet
}

/// The protocol's tags for `batch` filed under `number` (docs/PROTOCOL.md).
fn bridge_tags(batch: &SignedBatch, number: u64, prev_tx: &str) -> Vec<Tag> {
    vec![
        Tag::new("App-Name", "settlement-bridge"),
        Tag::new("App-Version", "1"),
        Tag::new("Network", &params().name),
        Tag::new("Batch-Number", number.to_string()),
        Tag::new("Prev-Hash", hex::encode(batch.header.prev_hash)),
        Tag::new("State-Root", hex::encode(batch.header.post_state_root)),
        Tag::new("Codec", CODEC_NAME),
        Tag::new("Content-Type", "application/octet-stream"),
        Tag::new("Prev-Tx", prev_tx),
    ]
}

/// Signs `batch` under `number` from `wallet` with the protocol's tags, bypassing every check a
/// publisher makes (not posted yet): what a stranger, or a cheating coordinator, can do.
async fn sign_raw(
    arlocal: &Arlocal,
    wallet: &ArweaveWallet,
    batch: &SignedBatch,
    number: u64,
    prev_tx: &str,
) -> Transaction {
    let gateway = arlocal.gateway().unwrap();
    let data = encode_batch(batch);
    let anchor = gateway.tx_anchor().await.unwrap();
    let reward = gateway.price_winston(data.len() as u64).await.unwrap();
    let mut tx =
        Transaction::with_data(data, bridge_tags(batch, number, prev_tx), anchor, reward, wallet.owner().to_vec());
    tx.sign(wallet).unwrap();
    tx
}

/// Signs and posts, as [`sign_raw`].
async fn post_raw(arlocal: &Arlocal, wallet: &ArweaveWallet, batch: &SignedBatch, number: u64, prev_tx: &str) {
    let tx = sign_raw(arlocal, wallet, batch, number, prev_tx).await;
    arlocal.gateway().unwrap().upload(&tx).await.unwrap();
}

/// An arlocal with a funded coordinator wallet, its publisher, and a funded stranger.
struct Net {
    arlocal: Arlocal,
    dir: tempfile::TempDir,
    coordinator: ArweaveWallet,
    stranger: ArweaveWallet,
    config: ArweaveDaConfig,
    publisher: ArweaveDa,
}

impl Net {
    async fn start() -> Net {
        let arlocal = Arlocal::start_in_ram().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let coordinator = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
        let stranger = funded_wallet(&arlocal, dir.path(), "stranger.json").await;
        let config = ArweaveDaConfig::new(&params().name, params().coordinator_key, coordinator.address());
        let publisher = ArweaveDa::publisher(
            arlocal.gateway().unwrap(),
            config.clone(),
            ArweaveWallet::load(&dir.path().join("coordinator.json")).unwrap(),
            &dir.path().join("journal"),
        )
        .unwrap();
        Net { arlocal, dir, coordinator, stranger, config, publisher }
    }

    /// A confirmer following this arlocal, and the DA it reads (to look at its counts).
    async fn confirmer(&self, missing_batch_wait: Duration) -> (Follower, ArweaveDa) {
        let da = ArweaveDa::follower(self.arlocal.gateway().unwrap(), self.config.clone());
        let url = format!("sqlite://{}", self.dir.path().join("c.db").display());
        let store = ConfirmerStore::open(&url).await.unwrap();
        let follower = Follower::open(Arc::new(da.clone()), store, params(), DepositVerifiers::none())
            .await
            .unwrap()
            .with_missing_batch_wait(missing_batch_wait);
        (follower, da)
    }
}

/// Steps `follower` until `done` holds of its status, for at most two minutes.
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
async fn another_wallet_is_ignored_and_an_equivocation_is_an_alarm() {
    let arlocal = Arlocal::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let coordinator = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let stranger = funded_wallet(&arlocal, dir.path(), "stranger.json").await;
    let config = ArweaveDaConfig::new(&params().name, params().coordinator_key, coordinator.address());
    let publisher = ArweaveDa::publisher(
        arlocal.gateway().unwrap(),
        config.clone(),
        ArweaveWallet::load(&dir.path().join("coordinator.json")).unwrap(),
        &dir.path().join("journal"),
    )
    .unwrap();
    let honest = history(4, 10);
    publisher.publish(&honest[0]).await.unwrap();
    let two = publisher.publish(&honest[1]).await.unwrap();
    // A stranger posts a perfectly signed copy of batch 3 from its own wallet, first.
    post_raw(&arlocal, &stranger, &honest[2], 3, &two.locator).await;
    arlocal.mine(2).await.unwrap();

    let gateway = chains::arweave::Gateway::new(arlocal.url(), RetryPolicy::default()).unwrap();
    let follower_da = ArweaveDa::follower(gateway, config);
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut confirmer = Follower::open(Arc::new(follower_da), store, params(), DepositVerifiers::none()).await.unwrap();
    for _ in 0..3 {
        confirmer.step(16).await.unwrap();
    }
    assert_eq!(confirmer.status().replayed, 2, "the stranger's batch 3 is not the coordinator's");
    assert!(confirmer.status().alarms.is_empty(), "another wallet's posting is no alarm");

    // The coordinator publishes batch 3, then signs two different batches numbered 4.
    let three = publisher.publish(&honest[2]).await.unwrap();
    let mut rival = honest[3].clone();
    rival.header.timestamp += 1;
    let rival = resign(rival);
    post_raw(&arlocal, &coordinator, &rival, 4, &three.locator).await;
    post_raw(&arlocal, &coordinator, &honest[3], 4, &three.locator).await;
    arlocal.mine(2).await.unwrap();

    let mut alarm = None;
    for _ in 0..5 {
        if let Some(raised) = confirmer.step(16).await.unwrap().alarm {
            alarm = Some(raised);
            break;
        }
    }
    let alarm = alarm.expect("an equivocation raises an alarm");
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::Equivocation, 4));
    assert_eq!(confirmer.status().replayed, 3);
    let (_, evidence) = confirmer.store().alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains("equivocated"), "{explanation}");
    let _ = publisher.latest().await;
}

/// Case 1 of issue 18: tags are public, so anyone can post under this bridge's tags. 2,000 such
/// postings from another wallet for the next batch numbers (more than `max_candidates` under one
/// number) must stop neither the coordinator's publisher nor a confirmer, and none of them may
/// cost a download.
#[tokio::test]
async fn junk_from_another_wallet_stops_neither_publishing_nor_following() {
    let net = Net::start().await;
    let honest = history(6, 10);
    net.publisher.publish(&honest[0]).await.unwrap();
    let two = net.publisher.publish(&honest[1]).await.unwrap();
    net.arlocal.mine(2).await.unwrap();
    let (mut confirmer, da) = net.confirmer(Duration::ZERO).await;
    step_until(&mut confirmer, "batches 1 and 2", |s| s.replayed == 2).await;

    // 1,100 postings filed as batch 3 and 900 as batch 4, with every tag a batch carries.
    let mut junk: Vec<Vec<Tag>> = (0..1_100).map(|_| bridge_tags(&honest[2], 3, &two.locator)).collect();
    junk.extend((0..900).map(|_| bridge_tags(&honest[3], 4, &two.locator)));
    let stranger = Arc::new(ArweaveWallet::load(&net.dir.path().join("stranger.json")).unwrap());
    assert_eq!(stranger.address(), net.stranger.address());
    let posted = net.arlocal.post_junk(stranger, junk).await.unwrap();
    assert_eq!(posted.len(), 2_000);
    net.arlocal.mine(2).await.unwrap();

    // The coordinator keeps publishing (it looks each number up by its tags before posting) ...
    for batch in &honest[2..] {
        net.publisher.publish(batch).await.unwrap();
    }
    net.arlocal.mine(2).await.unwrap();
    // ... and the confirmer keeps following.
    step_until(&mut confirmer, "batches 3 to 6 past the junk", |s| s.replayed == 6).await;
    assert!(confirmer.status().alarms.is_empty(), "{:?}", confirmer.status().alarms);
    // Not one of the stranger's postings was fetched (a fetched one is counted as refused).
    assert!(da.rejections().is_empty(), "{:?}", da.rejections());
    // Exactly the coordinator's transaction is found under the crowded number.
    let found = net
        .arlocal
        .gateway()
        .unwrap()
        .find_owned(
            net.coordinator.address(),
            &[("App-Name", "settlement-bridge".into()), ("Batch-Number", "3".into())],
            1,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].owner_address, net.coordinator.address());
}

/// Case 7 of issue 18: the coordinator's key publishes batches 4 and 5 but withholds 3. On
/// Arweave a follower is handed only batches linked to their predecessor, so today it stalls at
/// batch 2 without a word; it must raise `missing_batch` once the configured wait is over, with
/// evidence (batch 4's signed header) that `confirmer check-evidence` accepts.
#[tokio::test]
async fn a_withheld_batch_raises_missing_batch_after_the_wait() {
    let net = Net::start().await;
    let honest = history(5, 10);
    net.publisher.publish(&honest[0]).await.unwrap();
    let two = net.publisher.publish(&honest[1]).await.unwrap();
    let three = sign_raw(&net.arlocal, &net.coordinator, &honest[2], 3, &two.locator).await;
    let four = sign_raw(&net.arlocal, &net.coordinator, &honest[3], 4, &three.id_b64()).await;
    let five = sign_raw(&net.arlocal, &net.coordinator, &honest[4], 5, &four.id_b64()).await;
    let gateway = net.arlocal.gateway().unwrap();
    gateway.upload(&four).await.unwrap();
    gateway.upload(&five).await.unwrap();
    net.arlocal.mine(2).await.unwrap();

    let wait = Duration::from_secs(3);
    let (mut confirmer, _) = net.confirmer(wait).await;
    let started = Instant::now();
    step_until(&mut confirmer, "a missing_batch alarm", |s| !s.alarms.is_empty()).await;
    assert!(started.elapsed() >= wait, "raised before the wait was over");
    let status = confirmer.status();
    assert_eq!(status.replayed, 2);
    assert_eq!((status.alarms[0].kind, status.alarms[0].number), (AlarmKind::MissingBatch, 3));

    // The evidence holds up offline, with the coordinator's key alone.
    let (_, evidence) = confirmer.store().alarms().await.unwrap().remove(0);
    let file = net.dir.path().join("evidence.json");
    std::fs::write(&file, &evidence).unwrap();
    let checked =
        std::process::Command::new(env!("CARGO_BIN_EXE_confirmer")).arg("check-evidence").arg(&file).output().unwrap();
    let explanation = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{explanation} {}", String::from_utf8_lossy(&checked.stderr));
    assert!(explanation.contains("batch 3 was not on the DA"), "{explanation}");
}

/// Case 7's other side: batch 3 posted a little after batches 4 and 5 (a dropped transaction
/// posted again), within the wait, is no alarm, and the follower goes on.
#[tokio::test]
async fn a_batch_that_arrives_late_within_the_wait_raises_nothing() {
    let net = Net::start().await;
    let honest = history(5, 10);
    net.publisher.publish(&honest[0]).await.unwrap();
    let two = net.publisher.publish(&honest[1]).await.unwrap();
    let three = sign_raw(&net.arlocal, &net.coordinator, &honest[2], 3, &two.locator).await;
    let four = sign_raw(&net.arlocal, &net.coordinator, &honest[3], 4, &three.id_b64()).await;
    let five = sign_raw(&net.arlocal, &net.coordinator, &honest[4], 5, &four.id_b64()).await;
    let gateway = net.arlocal.gateway().unwrap();
    gateway.upload(&four).await.unwrap();
    gateway.upload(&five).await.unwrap();
    net.arlocal.mine(2).await.unwrap();

    let (mut confirmer, da) = net.confirmer(Duration::from_secs(600)).await;
    step_until(&mut confirmer, "batches 1 and 2", |s| s.replayed == 2).await;
    // The gap is visible (batch 4 is there, signed), for more steps than the old patience.
    let later = da.signed_after(3).await.unwrap().expect("batch 4 is seen past the gap");
    assert_eq!(later.batch.header.number, 4);
    for _ in 0..5 {
        assert_eq!(confirmer.step(64).await.unwrap().alarm, None);
    }
    assert_eq!(confirmer.status().replayed, 2);

    gateway.upload(&three).await.unwrap();
    net.arlocal.mine(2).await.unwrap();
    step_until(&mut confirmer, "batches 3 to 5", |s| s.replayed == 5).await;
    assert!(confirmer.status().alarms.is_empty(), "{:?}", confirmer.status().alarms);
}

/// Case 7 with more than one batch withheld: only batch 5 is published after batch 2. The alarm
/// names batch 4, the one the published header follows, and its evidence checks.
#[tokio::test]
async fn batches_withheld_before_a_later_one_raise_missing_batch() {
    let net = Net::start().await;
    let honest = history(5, 10);
    net.publisher.publish(&honest[0]).await.unwrap();
    net.publisher.publish(&honest[1]).await.unwrap();
    // Its `Prev-Tx` names a batch 4 nobody has seen.
    let five = sign_raw(&net.arlocal, &net.coordinator, &honest[4], 5, &"4".repeat(43)).await;
    net.arlocal.gateway().unwrap().upload(&five).await.unwrap();
    net.arlocal.mine(2).await.unwrap();

    let (mut confirmer, _) = net.confirmer(Duration::ZERO).await;
    step_until(&mut confirmer, "a missing_batch alarm", |s| !s.alarms.is_empty()).await;
    let status = confirmer.status();
    assert_eq!(status.replayed, 2);
    assert_eq!((status.alarms[0].kind, status.alarms[0].number), (AlarmKind::MissingBatch, 4));
    assert!(status.alarms[0].detail.contains("batches 3 to 4"), "{}", status.alarms[0].detail);
    let (_, evidence) = confirmer.store().alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains("batch 4 was not on the DA"), "{explanation}");
}

/// docs/PROTOCOL.md, "Equivocation found late": the coordinator signs a second batch 2 and posts
/// it after the follower replayed its batch 2 (and 3). The running follower finds it without a
/// restart and alarms at 2, not at 4. (These batches' deposits stay unverified here, with no L1
/// node, so hard finality is 0 throughout; the simulator's late-equivocation seed checks that it
/// falls back.)
#[tokio::test]
async fn a_second_batch_posted_after_the_follower_passed_it_is_an_equivocation() {
    let net = Net::start().await;
    let honest = history(3, 10);
    let mut locators = Vec::new();
    for batch in &honest {
        locators.push(net.publisher.publish(batch).await.unwrap().locator);
    }
    net.arlocal.mine(2).await.unwrap();
    let (mut confirmer, _) = net.confirmer(Duration::ZERO).await;
    step_until(&mut confirmer, "batches 1 to 3 replayed", |s| s.replayed == 3).await;
    assert!(confirmer.status().alarms.is_empty());

    let mut rival = honest[1].clone();
    rival.header.timestamp += 1;
    let rival = resign(rival);
    post_raw(&net.arlocal, &net.coordinator, &rival, 2, &locators[0]).await;
    net.arlocal.mine(2).await.unwrap();

    step_until(&mut confirmer, "the late second batch 2 alarmed", |s| !s.alarms.is_empty()).await;
    let status = confirmer.status();
    assert_eq!((status.alarms[0].kind, status.alarms[0].number), (AlarmKind::Equivocation, 2));
    assert!(status.hard_final < 2, "hard finality is below the equivocated batch: {status:?}");
    let (_, evidence) = confirmer.store().alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains("equivocated"), "{explanation}");

    // A restart keeps the alarm at 2.
    drop(confirmer);
    let (confirmer, _) = net.confirmer(Duration::ZERO).await;
    assert_eq!(confirmer.status().alarms.len(), 1);
    assert_eq!(confirmer.status().alarms[0].number, 2);
    assert!(confirmer.status().hard_final < 2);
}
