//! The coordinator's Bitcoin deposit book on SQLite and on PostgreSQL (when `DATABASE_URL` is
//! set): accounts that asked are indexed under every watched key, a rotation's key is indexed
//! for every account already in the book, a key whose grace is over takes its scripts with it,
//! and indexing stops at its bound a turn and carries on where it stopped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bitcoin::secp256k1::{Keypair, SECP256K1, SecretKey};
use bridge::BtcNetwork;
use chains::bitcoin::{DepositBook, Owner, ScriptBuf, XOnlyPublicKey, deposit_script};
use common::*;
use coordinator::deposit_book::StoreBook;
use coordinator::deposits::LedgerKeys;
use coordinator::store::Store;

fn key(byte: u8) -> XOnlyPublicKey {
    Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[byte; 32]).unwrap()).x_only_public_key().0
}

/// Whose `account`'s address under `key` is, as the book answers the watcher.
async fn owner(book: &StoreBook, key: XOnlyPublicKey, account: bridge::Address) -> Option<Owner> {
    let script: ScriptBuf = deposit_script(key, BtcNetwork::Regtest, &account);
    book.owners(std::slice::from_ref(&script)).await.unwrap().get(&script).copied()
}

#[tokio::test]
async fn the_book_indexes_every_account_under_every_watched_key_and_forgets_a_key_whose_grace_is_over() {
    for ledger in ledgers().await {
        let store = Store::open(&ledger.url).await.unwrap();
        let book = StoreBook::new(store.clone(), BtcNetwork::Regtest).indexing_at_most(2);
        let (genesis, rotated) = (key(1), key(2));
        let (a, b, c) = (wallet(1).address(), wallet(2).address(), wallet(3).address());
        for account in [a, b] {
            store.add_btc_deposit_account(&account).await.unwrap();
            store.add_btc_deposit_account(&account).await.unwrap(); // asking twice is asking once
        }
        assert_eq!(owner(&book, genesis, a).await, None, "an account is not watched before it is indexed");

        // The genesis key: both accounts in one turn.
        let keys = LedgerKeys::from_keys(vec![(0, genesis.serialize(), false)]);
        let held = book.steer(&keys).await.unwrap();
        assert!(book.catch_up(&held).await.unwrap());
        for account in [a, b] {
            assert_eq!(owner(&book, genesis, account).await, Some(Owner { account, key: genesis }));
            assert_eq!(owner(&book, rotated, account).await, None);
        }

        // A rotation: every account again under the new key, two a turn, the old key kept.
        store.add_btc_deposit_account(&c).await.unwrap();
        let keys = LedgerKeys::from_keys(vec![(0, genesis.serialize(), false), (1, rotated.serialize(), false)]);
        let held = book.steer(&keys).await.unwrap();
        assert_eq!(book.steer(&keys).await.unwrap(), held, "steering again adds nothing");
        assert!(!book.catch_up(&held).await.unwrap(), "three accounts to index at two a turn");
        assert!(book.catch_up(&held).await.unwrap());
        for account in [a, b, c] {
            assert_eq!(owner(&book, genesis, account).await, Some(Owner { account, key: genesis }), "{account}");
            assert_eq!(owner(&book, rotated, account).await, Some(Owner { account, key: rotated }), "{account}");
        }

        // The old key's grace is over: its addresses are no longer anyone's, the new key's are.
        let keys = LedgerKeys::from_keys(vec![(0, genesis.serialize(), true), (1, rotated.serialize(), false)]);
        let held = book.steer(&keys).await.unwrap();
        assert!(book.catch_up(&held).await.unwrap());
        let late = wallet(4).address();
        store.add_btc_deposit_account(&late).await.unwrap();
        assert!(book.catch_up(&held).await.unwrap());
        for account in [a, b, c, late] {
            assert_eq!(owner(&book, genesis, account).await, None, "{account} under a key whose grace is over");
            assert_eq!(owner(&book, rotated, account).await, Some(Owner { account, key: rotated }), "{account}");
        }
        let keys = store.deposit_book_keys().await.unwrap();
        assert_eq!(keys.iter().map(|k| (k.added, k.dropped)).collect::<Vec<_>>(), vec![(1, true), (2, false)]);

        // One lookup answers for a block's outputs, the book's and others' alike.
        let scripts: Vec<ScriptBuf> = [a, b, c, late, wallet(5).address()]
            .iter()
            .map(|account| deposit_script(rotated, BtcNetwork::Regtest, account))
            .collect();
        let owners = book.owners(&scripts).await.unwrap();
        assert_eq!(owners.len(), 4);
        assert!(!owners.contains_key(&scripts[4]), "an account that never asked is nobody's");
    }
}
