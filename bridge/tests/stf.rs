//! The state-transition function: what it accepts, and that every refusal changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::signature::Authorization;
use bridge::stf::{Effect, TxError};
use bridge::tx::{Transfer, UserTx};
use bridge::{Amount, AssetId, Tx, apply};
use common::*;

fn funded() -> bridge::State {
    let mut state = genesis();
    apply(&mut state, &deposit(wallet(1).address(), AssetId::Eth, 1_000, 1)).unwrap();
    apply(&mut state, &deposit(wallet(1).address(), AssetId::Btc, 100_000, 2)).unwrap();
    state
}

/// Applies `tx`, expects `expected`, and checks that the state did not change at all.
fn refused(state: &mut bridge::State, tx: Tx, expected: TxError) {
    let before = state.fingerprint();
    assert_eq!(apply(state, &tx), Err(expected));
    assert_eq!(state.fingerprint(), before, "a refused transaction changed the state");
}

#[test]
fn transfer_moves_funds_and_pays_the_fee() {
    let mut state = funded();
    let (alice, bob) = (wallet(1), wallet(2));
    apply(&mut state, &transfer(&alice, bob.address(), AssetId::Eth, 300, 7, 0)).unwrap();
    assert_eq!(state.balance(&alice.address(), &AssetId::Eth), Amount(693));
    assert_eq!(state.balance(&bob.address(), &AssetId::Eth), Amount(300));
    assert_eq!(state.balance(&fee_account(), &AssetId::Eth), Amount(7));
    assert_eq!(state.nonce(&alice.address()), 1);
    assert_eq!(state.supply(&AssetId::Eth).liabilities, Amount(1_000));
}

#[test]
fn withdraw_debits_and_reports_the_payout() {
    let mut state = funded();
    let alice = wallet(1);
    let receipt = apply(&mut state, &withdraw(&alice, AssetId::Btc, 50_000, 10, REGTEST_P2TR, 0)).unwrap();
    assert!(matches!(receipt.effect, Effect::Withdrawn(ref w) if w.amount == Amount(50_000)));
    assert_eq!(state.balance(&alice.address(), &AssetId::Btc), Amount(49_990));
    let supply = state.supply(&AssetId::Btc);
    assert_eq!(
        (supply.deposited, supply.withdrawn, supply.liabilities),
        // On Bitcoin the fee leaves with the amount: it pays the payout's miners.
        (Amount(100_000), Amount(50_010), Amount(49_990))
    );
}

#[test]
fn every_bad_transaction_is_refused_precisely_and_changes_nothing() {
    let mut state = funded();
    let (alice, bob) = (wallet(1), wallet(2));
    let eth = AssetId::Eth;
    let bob_addr = bob.address();
    let unknown = AssetId::Erc20(bridge::Address([0x99; 20]));

    refused(&mut state, transfer(&alice, bob_addr, eth, 0, 0, 0), TxError::ZeroAmount);
    refused(&mut state, transfer(&alice, alice.address(), eth, 1, 0, 0), TxError::SelfTransfer);
    refused(&mut state, transfer(&alice, bob_addr, unknown, 1, 0, 0), TxError::UnknownAsset(unknown));
    refused(&mut state, transfer(&alice, bob_addr, eth, 1, 0, 1), TxError::NonceGap { expected: 0, got: 1 });
    refused(
        &mut state,
        transfer(&alice, bob_addr, eth, 1_001, 0, 0),
        TxError::Overdraft { asset: eth, available: Amount(1_000), needed: Amount(1_001) },
    );
    refused(
        &mut state,
        transfer(&alice, bob_addr, eth, 1_000, 1, 0),
        TxError::Overdraft { asset: eth, available: Amount(1_000), needed: Amount(1_001) },
    );
    refused(&mut state, transfer(&alice, bob_addr, eth, u128::MAX, 1, 0), TxError::Overflow);
    // An unfunded account.
    refused(
        &mut state,
        transfer(&bob, alice.address(), eth, 1, 0, 0),
        TxError::Overdraft { asset: eth, available: Amount(0), needed: Amount(1) },
    );
    // Withdrawals: recipient on the wrong chain, dust, another network.
    assert!(matches!(
        apply(&mut state, &withdraw(&alice, eth, 1, 0, REGTEST_P2TR, 0)),
        Err(TxError::InvalidRecipient(_))
    ));
    assert!(matches!(
        apply(&mut state, &withdraw(&alice, AssetId::Btc, 10, 0, REGTEST_P2TR, 0)),
        Err(TxError::InvalidRecipient(bridge::recipient::RecipientError::Dust { .. }))
    ));
    assert!(matches!(
        apply(&mut state, &withdraw(&alice, AssetId::Btc, 10_000, 0, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 0)),
        Err(TxError::InvalidRecipient(bridge::recipient::RecipientError::BitcoinNetwork(_)))
    ));
    // Ethereum recipients that can never be paid: refused before anything is debited, with
    // their own code, so no leaf the vault cannot pay ever reaches a withdrawals root.
    let vault = state.params().eth_vault.to_string();
    for unpayable in
        ["0x0000000000000000000000000000000000000000", "0x0000000000000000000000000000000000000004", vault.as_str()]
    {
        let before = state.state_root();
        let error = apply(&mut state, &withdraw(&alice, eth, 1, 0, unpayable, 0)).unwrap_err();
        assert!(matches!(error, TxError::InvalidRecipient(bridge::recipient::RecipientError::Unpayable { .. })));
        assert_eq!(error.code(), "unpayable_recipient", "{unpayable}");
        assert_eq!(state.state_root(), before);
    }

    // A replayed nonce, after one success.
    apply(&mut state, &transfer(&alice, bob_addr, eth, 1, 0, 0)).unwrap();
    refused(&mut state, transfer(&alice, bob_addr, eth, 1, 0, 0), TxError::NonceReplayed { expected: 1, got: 0 });

    // A deposit credited twice, a deposit that mixes chains.
    refused(
        &mut state,
        deposit(alice.address(), eth, 5, 1),
        TxError::DepositAlreadyCredited(bridge::L1Ref::Ethereum { tx_hash: [1; 32], log_in_tx: 1 }),
    );
    let Tx::System(bridge::SystemTx::Deposit(mut mixed)) = deposit(alice.address(), eth, 5, 9) else { unreachable!() };
    mixed.asset = AssetId::Btc;
    refused(
        &mut state,
        Tx::System(bridge::SystemTx::Deposit(mixed)),
        TxError::DepositChainMismatch { chain: bridge::Chain::Ethereum, asset: AssetId::Btc },
    );
}

#[test]
fn the_minimum_fee_is_enforced() {
    let mut params = params();
    params.assets[0].min_fee = Amount(5);
    let asset = params.assets[0].asset;
    let mut state = bridge::State::genesis(params);
    let alice = wallet(1);
    apply(&mut state, &deposit(alice.address(), asset, 1_000, 1)).unwrap();
    refused(
        &mut state,
        transfer(&alice, wallet(2).address(), asset, 1, 4, 0),
        TxError::FeeTooLow { asset, fee: Amount(4), min_fee: Amount(5) },
    );
    apply(&mut state, &transfer(&alice, wallet(2).address(), asset, 1, 5, 0)).unwrap();
}

#[test]
fn the_fee_account_can_spend_its_own_fees() {
    let mut params = params();
    let fee_payer = wallet(9);
    params.fee_account = fee_payer.address();
    let mut state = bridge::State::genesis(params);
    apply(&mut state, &deposit(fee_payer.address(), AssetId::Eth, 100, 1)).unwrap();
    apply(&mut state, &transfer(&fee_payer, wallet(2).address(), AssetId::Eth, 60, 10, 0)).unwrap();
    // It paid 70 and received its own fee of 10.
    assert_eq!(state.balance(&fee_payer.address(), &AssetId::Eth), Amount(40));
    assert_eq!(state.supply(&AssetId::Eth).liabilities, Amount(100));
}

#[test]
fn signatures_are_bound_to_signer_and_domain() {
    let state = funded();
    let (alice, mallory) = (wallet(1), wallet(3));
    let tx = UserTx::Transfer(Transfer {
        from: alice.address(),
        to: mallory.address(),
        asset: AssetId::Eth,
        amount: Amount(10),
        fee: Amount(0),
        nonce: 0,
    });
    // Mallory signs a transfer out of Alice's account.
    let forged = mallory.sign(tx.clone(), state.domain());
    assert_eq!(
        forged.verify(state.domain()),
        Err(TxError::SignerMismatch { signer: mallory.address(), from: alice.address() })
    );
    // Alice signs for another network (another chainId): it does not verify here.
    let mut other = params();
    other.chain_id += 1;
    let elsewhere = alice.sign(tx.clone(), bridge::State::genesis(other).domain());
    assert!(matches!(elsewhere.verify(state.domain()), Err(TxError::SignerMismatch { .. })));
    // A high-s twin of a valid signature is refused.
    let signed = alice.sign(tx, state.domain());
    let Authorization::Eip712Secp256k1 { signature } = signed.auth.clone() else { panic!("an EIP-712 signature") };
    let mut high = signature;
    high.s = secp_negate(signature.s);
    high.y_parity = !high.y_parity;
    let twin = bridge::SignedUserTx { tx: signed.tx.clone(), auth: Authorization::Eip712Secp256k1 { signature: high } };
    assert_eq!(twin.verify(state.domain()), Err(TxError::Signature(bridge::signature::SignatureError::HighS)));
    assert!(signed.verify(state.domain()).is_ok());
}

/// `n - s` for the secp256k1 order `n`.
fn secp_negate(s: [u8; 32]) -> [u8; 32] {
    let n =
        alloy_primitives::U256::from_str_radix("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
            .unwrap();
    (n - alloy_primitives::U256::from_be_bytes(s)).to_be_bytes()
}
