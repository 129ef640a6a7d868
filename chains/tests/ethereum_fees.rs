//! The fee ceiling on anvil: with the base fee raised above it, a root submission and a payout
//! are deferred (nothing sent, no nonce used); with it lowered, they go, and pay no more than
//! the ceiling. A pause goes through above the ceiling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use bridge::Amount;
use bridge::eth_settlement::{EvmSchnorrSignature, withdrawals_message};
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use chains::ethereum::fees::GWEI;
use chains::ethereum::{FeeConfig, FeeDecision, SubmitError, Submitter, pause_vault};
use contracts::from_alloy;
use contracts::harness::Setup;
use secp256k1::{Message, SECP256K1};

/// Sets the base fee of the next block and mines it: the pending block's base fee follows
/// from it (7/8 of it after an empty block).
async fn base_fee(setup: &Setup, wei: u128) {
    let _: serde_json::Value =
        setup.provider.raw_request("anvil_setNextBlockBaseFeePerGas".into(), (U256::from(wei),)).await.unwrap();
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (1u64,)).await.unwrap();
}

#[tokio::test]
async fn above_the_fee_ceiling_a_payout_waits_and_is_paid_when_fees_fall() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    let tree = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch: 1,
        index: 0,
        token: bridge::Address::ZERO,
        recipient: bridge::Address([0x81; 20]),
        amount: Amount(42),
    }]);
    let message = withdrawals_message(&setup.domain(0), 1, 1, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
    let policy = FeeConfig { max_fee_per_gas_gwei: 50.0, ..FeeConfig::default() }.policy().unwrap();
    let submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer).with_fees(policy);
    let nonce = || async { setup.provider.get_transaction_count(setup.deployer).await.unwrap() };

    // Fees far above the ceiling: the root is not sent.
    base_fee(&setup, 400 * GWEI).await;
    let before = nonce().await;
    match submitter.submit_range(1, 1, tree.root(), &sig).await {
        Err(SubmitError::FeeAboveCeiling { fee_per_gas, ceiling }) => {
            assert_eq!(ceiling, 50 * GWEI);
            assert!(fee_per_gas > 300 * GWEI, "{fee_per_gas}");
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
    assert_eq!(nonce().await, before, "nothing was sent");
    assert!(matches!(submitter.fee_decision().await.unwrap(), FeeDecision::Defer { .. }));
    assert!(submitter.last_fee_per_gas() > 300 * GWEI as u64);

    // Fees fall: the root goes, at no more than the ceiling.
    base_fee(&setup, GWEI).await;
    let receipt = submitter.submit_range(1, 1, tree.root(), &sig).await.unwrap().unwrap();
    assert!(receipt.effective_gas_price <= 50 * GWEI);

    // They rise again before the payout: it waits, unpaid, and nothing is sent.
    base_fee(&setup, 400 * GWEI).await;
    let before = nonce().await;
    assert!(matches!(submitter.pay(0, &tree).await, Err(SubmitError::FeeAboveCeiling { .. })));
    assert_eq!(nonce().await, before, "nothing was sent");
    assert!(!setup.vault.isPaid(1, 0).call().await.unwrap());
    assert_eq!(setup.balance(Address::repeat_byte(0x81)).await.unwrap(), U256::ZERO);

    // They fall: it is paid.
    base_fee(&setup, 2 * GWEI).await;
    let payment = submitter.pay(0, &tree).await.unwrap();
    assert_eq!(payment.receipts.len(), 1);
    assert!(payment.receipts[0].effective_gas_price <= 50 * GWEI);
    assert_eq!(setup.balance(Address::repeat_byte(0x81)).await.unwrap(), U256::from(42));

    // A pause never waits for the ceiling: whoever can raise fees cannot hold it back.
    base_fee(&setup, 400 * GWEI).await;
    let paused = pause_vault(&setup.guardian, from_alloy(setup.vault_address()), &policy).await.unwrap();
    assert!(paused.unwrap().effective_gas_price > 50 * GWEI);
    assert!(setup.vault.paused().call().await.unwrap());
}
