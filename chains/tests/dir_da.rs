//! `DirDa`: publish and follow real signed batches through a directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::{CoordinatorKey, State};
use chains::da::{DaError, DataAvailability, DirDa};
use common::{batches, key, params};

#[tokio::test]
async fn publish_and_follow_twenty_batches() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let da = DirDa::open(dir.path().join("da"), key.public_key()).unwrap();
    let all = batches(20, &key);
    assert_eq!(da.latest().await.unwrap(), 0);
    for batch in &all {
        let published = da.publish(batch).await.unwrap();
        assert_eq!(published.number, batch.header.number);
    }
    assert_eq!(da.latest().await.unwrap(), 20);

    // A follower from an empty start and one from the middle replay to the same state.
    let mut follower = State::genesis(params(&key));
    let mut from = 0;
    loop {
        let page = da.batches_after(from, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        for fetched in page {
            bridge::replay(&mut follower, &fetched.batch).unwrap();
            from = fetched.batch.header.number;
        }
    }
    assert_eq!(from, 20);
    let middle = da.batches_after(12, 100).await.unwrap();
    assert_eq!(middle.iter().map(|f| f.batch.header.number).collect::<Vec<_>>(), (13..=20).collect::<Vec<_>>());
    assert_eq!(middle[0].batch, all[12]);

    // A reopened store (a restart) sees the same.
    let reopened = DirDa::open(dir.path().join("da"), key.public_key()).unwrap();
    assert_eq!(reopened.latest().await.unwrap(), 20);
}

#[tokio::test]
async fn republishing_is_idempotent_and_a_different_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let da = DirDa::open(dir.path(), key.public_key()).unwrap();
    let all = batches(2, &key);
    let first = da.publish(&all[0]).await.unwrap();
    assert_eq!(da.publish(&all[0]).await.unwrap(), first);

    // The same number with other contents: what an equivocating coordinator would write.
    let mut other = all[0].clone();
    other.header.timestamp += 1;
    other.signature = key.sign(&other.header.hash());
    assert!(matches!(da.publish(&other).await, Err(DaError::Conflict { number: 1, .. })));
    assert_eq!(da.fetch(1).await.unwrap().unwrap().batch, all[0]);
}

#[tokio::test]
async fn forged_garbled_and_misfiled_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let da = DirDa::open(dir.path(), key.public_key()).unwrap();
    let all = batches(3, &key);
    da.publish(&all[0]).await.unwrap();

    // Signed by another key.
    let impostor = CoordinatorKey::from_secret(&[0xbb; 32]).unwrap();
    let mut forged = all[1].clone();
    forged.signature = impostor.sign(&forged.header.hash());
    std::fs::write(dir.path().join("batch-00000000000000000002.brbt"), bridge::codec::encode_batch(&forged)).unwrap();
    assert!(matches!(da.fetch(2).await, Err(DaError::Invalid { .. })));

    // Garbage, and a truncated batch.
    std::fs::write(dir.path().join("batch-00000000000000000002.brbt"), b"not a batch").unwrap();
    assert!(matches!(da.fetch(2).await, Err(DaError::Invalid { .. })));
    let bytes = bridge::codec::encode_batch(&all[1]);
    std::fs::write(dir.path().join("batch-00000000000000000002.brbt"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(da.fetch(2).await, Err(DaError::Invalid { .. })));

    // Batch 3 filed under number 2.
    std::fs::write(dir.path().join("batch-00000000000000000002.brbt"), bridge::codec::encode_batch(&all[2])).unwrap();
    assert!(matches!(da.fetch(2).await, Err(DaError::Misfiled { expected: 2, found: 3, .. })));
}

#[tokio::test]
async fn latest_stops_at_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let da = DirDa::open(dir.path(), key.public_key()).unwrap();
    let all = batches(4, &key);
    for batch in [&all[0], &all[1], &all[3]] {
        da.publish(batch).await.unwrap();
    }
    assert_eq!(da.latest().await.unwrap(), 2);
    assert_eq!(da.batches_after(0, 10).await.unwrap().len(), 2);
    assert!(da.fetch(3).await.unwrap().is_none());
    da.publish(&all[2]).await.unwrap();
    assert_eq!(da.latest().await.unwrap(), 4);
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = DirDa::open(file.path().join("sub"), [0; 32]).unwrap_err();
    assert!(err.to_string().contains("check that the directory exists and is writable"), "{err}");
}
