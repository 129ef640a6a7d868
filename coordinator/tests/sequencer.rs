//! The sequencer and its ledger on real databases: SQLite always, PostgreSQL when
//! `DATABASE_URL` is set (each test in a schema of its own, so tests run in parallel).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use bridge::batch::ApplyError;
use bridge::tx::SystemTx;
use bridge::{Address, Amount, AssetId, Tx, TxError};
use coordinator::seal_rule::SealRule;
use coordinator::sequencer::{Sequencer, SequencerHandle};
use coordinator::store::Store;

mod common;
use common::*;

#[tokio::test]
async fn acknowledged_txs_survive_a_restart_sealed_or_not() {
    for ledger in ledgers().await {
        let (alice, bob) = (wallet(1), wallet(2));
        let store = Store::open(&ledger.url).await.unwrap();
        let mut sequencer = Sequencer::recover(store, params(), key()).await.unwrap();
        let outcomes = sequencer
            .submit(vec![
                deposit(alice.address(), 1_000, 1),
                transfer(&alice, bob.address(), 300, 0),
                // Overdraft: refused, and never stored.
                transfer(&alice, bob.address(), 10_000, 1),
            ])
            .await
            .unwrap();
        assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
        assert!(matches!(outcomes[2], Err(ApplyError::Tx(TxError::Overdraft { .. }))), "{outcomes:?}");
        let sealed = sequencer.seal(1_000).await.unwrap().unwrap();
        assert_eq!(sealed.batch.header.tx_count, 2);
        // Acknowledged after the seal, not yet sealed.
        sequencer.submit(vec![transfer(&alice, bob.address(), 100, 1)]).await.unwrap()[0].clone().unwrap();
        let before = sequencer.state().fingerprint();
        drop(sequencer);

        let store = Store::open(&ledger.url).await.unwrap();
        let mut recovered = Sequencer::recover(store, params(), key()).await.unwrap();
        assert_eq!(recovered.state().fingerprint(), before, "{}", ledger.url);
        assert_eq!(recovered.state().balance(&bob.address(), &AssetId::Eth), Amount(400));
        assert_eq!(recovered.open_len(), 1);
        let second = recovered.seal(2_000).await.unwrap().unwrap();
        assert_eq!(second.batch.header.number, 2);
        assert_eq!(second.batch.header.prev_hash, sealed.batch.hash());
    }
}

#[tokio::test]
async fn concurrent_submits_share_commits_and_keep_one_order() {
    for ledger in ledgers().await {
        let store = Store::open(&ledger.url).await.unwrap();
        let sequencer = Sequencer::recover(store, params(), key()).await.unwrap();
        let policy = SealRule::new(100_000, std::time::Duration::from_secs(3600));
        let (handle, task) = SequencerHandle::spawn(sequencer, policy, || 1, Default::default());
        let mut joins = Vec::new();
        for client in 0..8u64 {
            let handle = handle.clone();
            joins.push(tokio::spawn(async move {
                let me = wallet(100 + client);
                handle.submit(deposit(me.address(), 1_000, client)).await.unwrap().unwrap();
                for nonce in 0..25 {
                    handle.submit(transfer(&me, Address([9; 20]), 1, nonce)).await.unwrap().unwrap();
                }
            }));
        }
        for join in joins {
            join.await.unwrap();
        }
        handle.seal(5).await.unwrap().unwrap();
        drop(handle);
        let sequencer = task.await.unwrap();
        assert_eq!(sequencer.state().balance(&Address([9; 20]), &AssetId::Eth), Amount(200));
        let before = sequencer.state().fingerprint();
        drop(sequencer);
        let recovered = Sequencer::recover(Store::open(&ledger.url).await.unwrap(), params(), key()).await.unwrap();
        assert_eq!(recovered.state().fingerprint(), before);
        assert_eq!(recovered.open_len(), 0);
    }
}

#[tokio::test]
async fn a_bad_database_url_is_a_clear_error() {
    let err = Store::open("mysql://x").await.unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "{err}");
    let err = Store::open("postgres://nobody:secret@127.0.0.1:1/none").await.unwrap_err();
    assert!(!err.to_string().contains("secret"), "the password is not printed: {err}");
}

#[tokio::test]
async fn sealed_batches_are_published_once_even_across_a_restart() {
    use chains::da::{DataAvailability, DirDa};
    use coordinator::publisher::Publisher;
    use std::sync::Arc;

    for ledger in ledgers().await {
        let da_dir = tempfile::tempdir().unwrap();
        let da: Arc<dyn DataAvailability> = Arc::new(DirDa::open(da_dir.path(), key().public_key()).unwrap());
        let alice = wallet(1);
        let store = Store::open(&ledger.url).await.unwrap();
        let mut sequencer = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
        sequencer.submit(vec![deposit(alice.address(), 50, 1)]).await.unwrap();
        sequencer.seal(1).await.unwrap().unwrap();
        let publisher = Publisher::new(store.clone(), da.clone());
        assert_eq!(publisher.publish_pending().await.unwrap().len(), 1);

        // Sealed, then the process dies before publishing.
        sequencer.submit(vec![transfer(&alice, Address([3; 20]), 5, 0)]).await.unwrap();
        sequencer.seal(2).await.unwrap().unwrap();
        drop((sequencer, publisher, store));

        let store = Store::open(&ledger.url).await.unwrap();
        let publisher = Publisher::new(store.clone(), da.clone());
        let published = publisher.publish_pending().await.unwrap();
        assert_eq!(published.iter().map(|p| p.number).collect::<Vec<_>>(), vec![2]);
        assert!(publisher.publish_pending().await.unwrap().is_empty(), "nothing is published twice");
        assert_eq!(da.latest().await.unwrap(), 2);
        assert!(store.batches().await.unwrap().iter().all(|b| b.locator.is_some()));
    }
}

#[tokio::test]
async fn batches_seal_on_size_and_on_age_and_deposits_credit_once() {
    use chains::da::{DataAvailability, DirDa};
    use chains::task::{Schedule, Supervisor};
    use coordinator::deposits::{deposit_channel, forward_deposits};
    use coordinator::publisher::Publisher;
    use std::sync::Arc;
    use std::time::Duration;

    for ledger in ledgers().await {
        let da_dir = tempfile::tempdir().unwrap();
        let da: Arc<dyn DataAvailability> = Arc::new(DirDa::open(da_dir.path(), key().public_key()).unwrap());
        let store = Store::open(&ledger.url).await.unwrap();
        let sequencer = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
        let sealed = Arc::new(tokio::sync::Notify::new());
        let policy = SealRule::new(10, Duration::from_millis(200));
        let (handle, task) = SequencerHandle::spawn(sequencer, policy, || 7, sealed.clone());
        // Published as the node publishes: a supervised task woken by each seal.
        let publishing = Publisher::new(store.clone(), da.clone()).task(sealed);
        let publisher = Supervisor::new().spawn("publisher", publishing, Schedule::every(Duration::from_millis(100)));

        // 25 deposits, each handed in twice: 25 credited, in batches of 10, 10 and (by age) 5.
        let (sink, source) = deposit_channel(64);
        let forwarder = tokio::spawn(forward_deposits(source, handle.clone()));
        for n in 0..25u64 {
            let Tx::System(SystemTx::Deposit(d)) = deposit(Address([n as u8; 20]), 1, n) else { unreachable!() };
            sink.send(d.clone()).await.unwrap();
            sink.send(d).await.unwrap();
        }
        drop(sink);
        assert_eq!(forwarder.await.unwrap(), 25);

        let mut waited = 0;
        while da.latest().await.unwrap() < 3 && waited < 300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        let fetched = da.batches_after(0, 10).await.unwrap();
        let sizes: Vec<u32> = fetched.iter().map(|f| f.batch.header.tx_count).collect();
        assert_eq!(sizes, vec![10, 10, 5], "{}", ledger.url);
        publisher.abort();
        drop(handle);
        let sequencer = task.await.unwrap();
        assert_eq!(sequencer.open_len(), 0);
    }
}
