//! The confirmer following real batches on a directory DA: an honest history from the
//! coordinator over HTTP, and every kind of cheating a signed batch can carry, each raising its
//! alarm with evidence that checks offline. The confirmer's store runs on SQLite and, when
//! `DATABASE_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::tx::UserTx;
use bridge::{Amount, SignedBatch, StateKey};
use chains::da::{DataAvailability, DirDa};
use common::*;
use confirmer::alarm::AlarmKind;
use confirmer::evidence::Evidence;
use confirmer::store::ConfirmerStore;

/// A directory DA holding `batches`, and the URL of a SQLite store beside it, in one directory.
async fn published<'a>(batches: impl IntoIterator<Item = &'a SignedBatch>) -> (tempfile::TempDir, DirDa, String) {
    let dir = tempfile::tempdir().unwrap();
    let da = DirDa::open(dir.path().join("da"), params().coordinator_key).unwrap();
    for batch in batches {
        da.publish(batch).await.unwrap();
    }
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    (dir, da, url)
}

#[tokio::test]
async fn an_honest_history_replays_proves_and_resumes() {
    let batches = history(30, 100);
    for ledger in stores().await {
        let dir = tempfile::tempdir().unwrap();
        let da = DirDa::open(dir.path(), params().coordinator_key).unwrap();
        for batch in &batches[..20] {
            da.publish(batch).await.unwrap();
        }
        let mut confirmer = follower(&da, &ledger.url).await;
        catch_up(&mut confirmer).await;
        let status = confirmer.status();
        assert_eq!(status.replayed, 20);
        assert!(status.alarms.is_empty(), "{:?}", status.alarms);
        // Batch 1 credits deposits and no Ethereum verifier is configured: nothing is hard-final,
        // and the confirmer says why instead of assuming.
        assert_eq!(status.hard_final, 0);
        assert_eq!(status.unverified.as_deref(), Some("batch 1: unverified: deposit on eth"));
        assert_eq!(confirmer.state().state_root(), batches[19].header.post_state_root);

        // Proofs of balances check against the root the coordinator signed.
        for n in 0..10 {
            let proof = confirmer.state().prove(&StateKey::Account(wallet(n).address())).unwrap();
            proof.verify(batches[19].header.post_state_root).unwrap();
            assert!(proof.value.is_some());
        }

        // Killed (dropped) and restarted: it resumes from its store, then follows new batches.
        let fingerprint = confirmer.state().fingerprint();
        drop(confirmer);
        let mut confirmer = follower(&da, &ledger.url).await;
        assert_eq!(confirmer.status().replayed, 20);
        assert_eq!(confirmer.state().fingerprint(), fingerprint);
        for batch in &batches[20..] {
            da.publish(batch).await.unwrap();
        }
        catch_up(&mut confirmer).await;
        assert_eq!(confirmer.status().replayed, 30);
        assert_eq!(confirmer.state().state_root(), batches[29].header.post_state_root);
    }
}

/// Publishes `honest[..n]` and then `bad` as batch n + 1; the follower must raise `kind` at it,
/// replay nothing past it, and leave evidence that checks.
async fn expect_alarm(bad: SignedBatch, kind: AlarmKind) -> String {
    let honest = history(4, 10);
    let n = bad.header.number as usize - 1;
    let (_dir, da, url) = published(honest[..n].iter().chain([&bad])).await;
    let mut confirmer = follower(&da, &url).await;
    catch_up(&mut confirmer).await;
    let status = confirmer.status();
    assert_eq!(status.replayed, n as u64, "nothing from the bad batch on is replayed");
    assert_eq!(status.alarms.len(), 1, "{:?}", status.alarms);
    assert_eq!(status.alarms[0].kind, kind);
    assert_eq!(status.alarms[0].number, n as u64 + 1);
    // Halted: more steps change nothing, and a restart remembers the alarm.
    assert_eq!(confirmer.step(16).await.unwrap().replayed, 0);
    drop(confirmer);
    let confirmer = follower(&da, &url).await;
    assert_eq!(confirmer.status().alarms.len(), 1);

    let store = ConfirmerStore::open(&url).await.unwrap();
    let (_, evidence) = store.alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains(&format!("{}", n + 1)), "{explanation}");
    evidence
}

#[tokio::test]
async fn a_wrong_state_root_raises_an_alarm_with_evidence() {
    let mut bad = history(4, 10)[2].clone();
    bad.header.post_state_root[3] ^= 1;
    let evidence = expect_alarm(resign(bad), AlarmKind::RootMismatch).await;

    // A corrupt evidence file is refused with a clear message.
    let mut tampered = Evidence::from_json(&evidence).unwrap();
    tampered.batches.pop();
    let error = tampered.check().unwrap_err().to_string();
    assert!(error.contains("must hold exactly the bad batch"), "{error}");
    let garbage = Evidence::from_json("{\"version\": 1}").unwrap_err().to_string();
    assert!(garbage.contains("not an evidence file"), "{garbage}");
}

#[tokio::test]
async fn a_forged_user_signature_raises_an_invalid_tx_alarm() {
    let mut bad = history(4, 10)[1].clone();
    let bridge::BatchTx::User(user) = &mut bad.body[0] else { panic!("expected a user tx") };
    let UserTx::Transfer(t) = &mut user.tx else { panic!("expected a transfer") };
    t.amount = Amount(999); // the signature no longer matches the message
    let evidence = expect_alarm(resign(bad), AlarmKind::InvalidTx).await;
    assert!(evidence.contains("invalid_tx"));
}

#[tokio::test]
async fn a_broken_chain_link_raises_an_alarm() {
    let mut bad = history(4, 10)[3].clone();
    bad.header.prev_hash = [7; 32];
    expect_alarm(resign(bad), AlarmKind::BrokenLink).await;
}

#[tokio::test]
async fn a_missing_batch_raises_an_alarm_after_patience() {
    let honest = history(4, 10);
    let (_dir, da, url) = published([&honest[0], &honest[1], &honest[3]]).await;
    let mut confirmer = follower(&da, &url).await;
    let mut alarm = None;
    for _ in 0..10 {
        if let Some(raised) = confirmer.step(16).await.unwrap().alarm {
            alarm = Some(raised);
            break;
        }
    }
    let alarm = alarm.expect("a persistent gap raises an alarm");
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::MissingBatch, 3));
    assert_eq!(confirmer.status().replayed, 2);
    let store = ConfirmerStore::open(&url).await.unwrap();
    let (_, evidence) = store.alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains("batch 3 was not on the DA"), "{explanation}");
}

#[tokio::test]
async fn a_batch_whose_record_the_disk_refuses_is_recorded_later_not_replayed_twice() {
    // The state takes a batch before the database records it. A disk that refuses the record
    // (full, failing) must not leave the state a batch ahead of what is taken next: the
    // simulator found that a retry then replayed the batch again and alarmed an honest
    // coordinator ("expected batch 4, got batch 3"). SQLite's own refusal, on every connection.
    let honest = history(6, 10);
    let (_dir, da, url) = published(&honest).await;
    let mut confirmer = follower(&da, &url).await;
    assert_eq!(confirmer.step(2).await.unwrap().replayed, 2);

    confirmer.store().refuse_writes(true).await.unwrap();
    for _ in 0..3 {
        let refused = confirmer.step(16).await.expect_err("the record of batch 3 is refused");
        assert!(refused.to_string().contains("readonly"), "{refused}");
        let status = confirmer.status();
        assert_eq!(status.replayed, 2, "a batch not recorded is not counted as replayed");
        assert!(status.alarms.is_empty(), "{:?}", status.alarms);
    }

    confirmer.store().refuse_writes(false).await.unwrap();
    let step = confirmer.step(16).await.unwrap();
    assert_eq!(step.alarm, None, "the honest coordinator is not accused");
    assert_eq!(step.replayed, 4, "batch 3's record first, then batches 4 to 6");
    assert_eq!(confirmer.status().replayed, 6);
    assert_eq!(confirmer.state().state_root(), honest[5].header.post_state_root);

    // Every record landed: a restart starts from batch 6.
    drop(confirmer);
    let restarted = follower(&da, &url).await;
    assert_eq!(restarted.status().replayed, 6);
    assert!(restarted.status().alarms.is_empty());
}

#[tokio::test]
async fn a_step_asking_for_no_batch_sees_no_gap_however_often_it_runs() {
    // Every batch is there; a step of 0 (a watchman settling without replaying) fetches none,
    // which is no sign that batch 3 is missing while 4 is published.
    let honest = history(4, 10);
    let (_dir, da, url) = published(&honest).await;
    let mut confirmer = follower(&da, &url).await;
    assert_eq!(confirmer.step(2).await.unwrap().replayed, 2);
    for _ in 0..10 {
        let step = confirmer.step(0).await.unwrap();
        assert_eq!((step.replayed, step.alarm), (0, None));
    }
    assert_eq!(confirmer.step(16).await.unwrap().replayed, 2);
    assert_eq!(confirmer.status().replayed, 4);
}

#[tokio::test]
async fn bytes_the_coordinator_did_not_sign_are_ignored_not_alarmed() {
    let honest = history(4, 10);
    // Batch 2 with a body someone edited after the coordinator signed it.
    let mut edited = honest[1].clone();
    edited.body.swap(0, 1);
    let (_dir, da, url) = published([&honest[0], &edited]).await;
    let mut confirmer = follower(&da, &url).await;
    catch_up(&mut confirmer).await;
    for _ in 0..5 {
        confirmer.step(16).await.unwrap();
    }
    let status = confirmer.status();
    assert_eq!(status.replayed, 1);
    assert!(status.alarms.is_empty(), "an edit by someone else is not the coordinator's fraud: {:?}", status.alarms);
}

#[test]
fn the_cli_checks_evidence_and_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{ not json").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_confirmer"))
        .arg("check-evidence")
        .arg(&corrupt)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not an evidence file"), "{stderr}");
}

#[test]
fn a_bad_bitcoin_group_key_or_a_missing_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let params_file = dir.path().join("params.json");
    std::fs::write(&params_file, serde_json::to_vec(&params()).unwrap()).unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_confirmer"))
            .args(["follow", "--once", "--params"])
            .arg(&params_file)
            .arg("--da-dir")
            .arg(dir.path().join("da"))
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.path().join("c.db").display()))
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&["--btc-rpc", "http://127.0.0.1:1", "--btc-group-key", "not-a-key"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not an x-only public key"), "{output:?}");
    let output = run(&["--btc-rpc", "http://127.0.0.1:1"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--btc-group-key"), "{output:?}");
}

/// What stops `confirmer follow` (its task dies) and what it tries again: only its own record
/// failing to replay is fatal; a DA, a gateway or a worker failing now is not. The simulator's
/// `tasks-live` holds every confirmer to the same line.
#[test]
fn only_an_own_record_that_does_not_replay_stops_the_follower() {
    use confirmer::follower::FollowError;
    assert!(FollowError::OwnRecord { number: 3, reason: "nonce 9 was already used".into() }.is_fatal());
    for transient in [
        FollowError::Da(chains::da::DaError::Worker("restarted".into())),
        FollowError::Worker("a signature worker panicked".into()),
        FollowError::Forced("the gateway did not answer".into()),
    ] {
        assert!(!transient.is_fatal(), "{transient} must be retried");
    }
}
