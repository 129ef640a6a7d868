//! The undo journal: a rollback restores the dirty set with everything else.
#![allow(clippy::unwrap_used)]

use super::{Changes, State, StateKey};
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
    assert!(state.dirty.contains(&StateKey::Balance(alice, AssetId::Eth)));
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
        vec![StateKey::Balance(alice, AssetId::Eth), StateKey::DepositHeight(AssetId::Eth)]
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
