//! The undo journal (a rollback restores the dirty set with everything else), and the account
//! leaf's encoding.
#![allow(clippy::unwrap_used)]

use super::{AccountEntry, Changes, State, StateKey};
use crate::codec::to_bytes;
use crate::{Address, Amount, AssetConfig, AssetId, BtcNetwork, NetworkParams};

fn params() -> NetworkParams {
    NetworkParams {
        name: "state-tests".into(),
        chain_id: 1,
        eth_vault: Address([9; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: secp256k1::Keypair::from_seckey_slice(secp256k1::SECP256K1, &[1; 32])
            .unwrap()
            .x_only_public_key()
            .0
            .serialize(),
        fee_account: Address([1; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(1) }],
        forced: None,
        webauthn: None,
        rotation: None,
    }
}

/// A credit of `amount` to `account`, as a deposit writes it.
fn credit(state: &State, account: Address, amount: u128) -> Changes {
    credit_at(state, account, amount, 0)
}

/// A credit of `amount` to `account` by a deposit that names L1 block `height`.
fn credit_at(state: &State, account: Address, amount: u128, height: u64) -> Changes {
    let balance = state.balance(&account, &AssetId::Eth).checked_add(Amount(amount)).unwrap();
    Changes {
        balances: vec![(account, AssetId::Eth, balance)],
        deposited: Some((AssetId::Eth, Amount(amount), height)),
        ..Changes::default()
    }
}

#[test]
fn a_rollback_takes_back_the_keys_it_made_dirty_and_only_those() {
    let (alice, bob) = (Address([0xa1; 20]), Address([0xb0; 20]));
    let mut state = State::genesis(params());
    let untouched = state.fingerprint();
    state.begin();
    state.write(credit(&state, alice, 5));
    assert!(state.dirty.contains(&StateKey::Account(alice)));
    state.rollback();
    assert!(state.dirty.is_empty(), "a refused batch leaves no dirty key: {:?}", state.dirty);
    assert_eq!(state.fingerprint(), untouched);

    // A key dirty before the journal began stays dirty: its write is still pending.
    state.write(credit(&state, alice, 5));
    state.begin();
    state.write(credit(&state, alice, 7));
    state.write(credit(&state, bob, 3));
    state.rollback();
    assert_eq!(
        state.dirty.iter().copied().collect::<Vec<_>>(),
        vec![StateKey::DepositHeight(AssetId::Eth), StateKey::Account(alice)]
    );
    assert_eq!(state.balance(&alice, &AssetId::Eth), Amount(5));
}

/// The solvency watch reads the deposit height to know which view of the vault may judge the
/// asset: it is the highest block any credited deposit names (a later deposit from an earlier
/// block, as a reorg may move one, does not lower it), and a rollback restores it.
#[test]
fn the_deposit_height_is_the_highest_block_a_credited_deposit_names() {
    let alice = Address([0xa1; 20]);
    let mut state = State::genesis(params());
    assert_eq!(state.deposit_height(&AssetId::Eth), 0);
    state.write(credit_at(&state, alice, 5, 120));
    state.write(credit_at(&state, alice, 5, 90));
    assert_eq!(state.deposit_height(&AssetId::Eth), 120);
    state.begin();
    state.write(credit_at(&state, alice, 5, 200));
    assert_eq!(state.deposit_height(&AssetId::Eth), 200);
    assert!(state.dirty.contains(&StateKey::DepositHeight(AssetId::Eth)));
    state.rollback();
    assert_eq!(state.deposit_height(&AssetId::Eth), 120);
}

/// An account's leaf value, built on the stack or spilled to the heap, is the borsh of its
/// entry; every account with a nonce or a balance has one entry, in address order.
#[test]
fn an_account_leaf_is_the_borsh_of_its_entry() {
    let (alice, bob, carol) = (Address([0xa1; 20]), Address([0x0b; 20]), Address([0xca; 20]));
    let token = AssetId::Erc20(Address([7; 20]));
    let mut state = State::genesis(params());
    assert!(state.account_value(&alice).is_none() && state.account_entry(&alice).is_none());
    let credit = |account: Address, asset: AssetId, amount: u128| Changes {
        balances: vec![(account, asset, Amount(amount))],
        deposited: Some((asset, Amount(amount), 0)),
        ..Changes::default()
    };
    let leaf_is_entry = |state: &State, account: &Address| {
        let entry = state.account_entry(account).unwrap();
        assert_eq!(state.account_value(account).unwrap().as_bytes(), to_bytes(&entry).as_slice(), "{entry:?}");
        entry
    };
    // Ether (29 bytes), then a token (66: spilled), then bitcoin (83: appended to the spill).
    for (asset, amount) in [(AssetId::Eth, 5), (token, 6), (AssetId::Btc, 7)] {
        state.write(credit(alice, asset, amount));
        assert_eq!(leaf_is_entry(&state, &alice).balance(&asset), Amount(amount));
    }
    // Ether and bitcoin fill the stack buffer exactly (46 bytes).
    state.write(credit(carol, AssetId::Eth, 1));
    state.write(credit(carol, AssetId::Btc, u128::MAX - 7));
    assert_eq!(state.account_value(&carol).unwrap().as_bytes().len(), 46);
    leaf_is_entry(&state, &carol);
    // A nonce and no balance.
    state.write(Changes { nonce: Some((bob, 1)), ..Changes::default() });
    assert_eq!(leaf_is_entry(&state, &bob), AccountEntry { nonce: 1, balances: vec![] });
    state.write(Changes { nonce: Some((alice, 1)), ..Changes::default() });
    assert_eq!(leaf_is_entry(&state, &alice).nonce, 1);
    assert_eq!(state.accounts.keys().copied().collect::<Vec<_>>(), vec![bob, alice, carol]);
}

/// A key's path is the hash of its borsh bytes, whichever way it is laid out.
#[test]
fn a_key_path_is_the_hash_of_its_borsh() {
    for key in [StateKey::Account(Address([0xa1; 20])), StateKey::BtcCounters, StateKey::DepositHeight(AssetId::Btc)] {
        assert_eq!(key.path(), crate::commitment::key_hash(&to_bytes(&key)), "{key:?}");
    }
}
