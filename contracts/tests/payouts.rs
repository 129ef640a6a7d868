//! One recipient cannot stop the others: `withdrawMany` pays every leaf it can, reports and
//! leaves unpaid a leaf whose transfer fails, and bounds the gas any recipient can burn; the
//! leaf can be claimed later with `withdraw`. Against anvil, with misbehaving recipients and a
//! token with a blacklist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use bridge::Amount;
use bridge::eth_settlement::set_cap_message;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use contracts::harness::{Setup, payouts, vault_error};
use contracts::recipients::{GasBurner, ReturnBomb, RevertingRecipient};
use contracts::{BlacklistToken, Vault, from_alloy, sign, to_alloy};

use Vault::VaultErrors as E;

fn leaf(batch: u64, index: u32, token: Address, recipient: Address, amount: u128) -> EthWithdrawal {
    EthWithdrawal { batch, index, token: from_alloy(token), recipient: from_alloy(recipient), amount: Amount(amount) }
}

fn failed(receipt: &TransactionReceipt) -> Vec<u32> {
    receipt
        .inner
        .logs()
        .iter()
        .filter_map(|log| log.log_decode::<Vault::WithdrawalFailed>().ok())
        .map(|l| l.inner.data.index)
        .collect()
}

fn withdrawn(receipt: &TransactionReceipt) -> Vec<u32> {
    receipt
        .inner
        .logs()
        .iter()
        .filter_map(|log| log.log_decode::<Vault::Withdrawn>().ok())
        .map(|l| l.inner.data.index)
        .collect()
}

async fn fund_eth(setup: &Setup, wei: u128) {
    setup.deposit_eth(Address::ZERO, wei).await.unwrap();
}

#[tokio::test]
async fn a_reverting_a_gas_burning_and_a_return_bombing_recipient_do_not_stop_the_rest_of_the_batch() {
    let setup = Setup::new().await.unwrap();
    fund_eth(&setup, 1_000_000).await;
    let reverting = RevertingRecipient::deploy(setup.provider.clone()).await.unwrap();
    let burner = GasBurner::deploy(setup.provider.clone()).await.unwrap();
    let bomb = ReturnBomb::deploy(setup.provider.clone()).await.unwrap();
    let honest = [Address::repeat_byte(0x51), Address::repeat_byte(0x52)];
    let tree = EthWithdrawalTree::new(vec![
        leaf(1, 0, Address::ZERO, honest[0], 100),
        leaf(1, 1, Address::ZERO, *reverting.address(), 200),
        leaf(1, 2, Address::ZERO, *burner.address(), 300),
        leaf(1, 3, Address::ZERO, *bomb.address(), 400),
        leaf(1, 4, Address::ZERO, honest[1], 500),
    ]);
    setup.submit(1, &tree, 0).await.unwrap();

    let receipt = setup.vault.withdrawMany(0, payouts(&tree, 0..5)).send().await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    // The return bomb accepts the ether (its fallback returns normally): it is paid, and its
    // answer cost the vault nothing, since the vault never copies return data.
    assert_eq!(withdrawn(&receipt), vec![0, 3, 4]);
    assert_eq!(failed(&receipt), vec![1, 2]);
    assert_eq!(setup.balance(honest[0]).await.unwrap(), U256::from(100));
    assert_eq!(setup.balance(honest[1]).await.unwrap(), U256::from(500));
    assert_eq!(setup.balance(*bomb.address()).await.unwrap(), U256::from(400));
    for (index, paid) in [(0, true), (1, false), (2, false), (3, true), (4, true)] {
        assert_eq!(setup.vault.isPaid(1, index).call().await.unwrap(), paid, "leaf {index}");
    }
    // What stayed in the vault is exactly the two unpaid leaves.
    assert_eq!(setup.balance(setup.vault_address()).await.unwrap(), U256::from(1_000_000 - (100 + 400 + 500)));
    // The gas burner burnt at most its stipend: the whole call stays near five leaves' cost
    // plus one PAYOUT_GAS.
    let stipend = setup.vault.PAYOUT_GAS().call().await.unwrap().to::<u64>();
    assert!(receipt.gas_used < stipend + 5 * 60_000, "withdrawMany used {} gas", receipt.gas_used);

    // The refused leaf is claimed once its recipient accepts; claiming reverts until then.
    let p = payouts(&tree, [1]).remove(0);
    let claim = || setup.vault.withdraw(0, 1, 1, p.token, p.recipient, p.amount, p.proof.clone());
    let refusal = vault_error(&claim().call().await.unwrap_err()).unwrap();
    assert!(matches!(refusal, E::WithdrawalRefused(ref r) if r.batch == 1 && r.index == 1), "{refusal:?}");
    reverting.setAccepting(true).send().await.unwrap().get_receipt().await.unwrap();
    claim().send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!(setup.balance(*reverting.address()).await.unwrap(), U256::from(200));
    assert!(matches!(vault_error(&claim().call().await.unwrap_err()), Some(E::AlreadyPaid(_))));
}

#[tokio::test]
async fn a_blacklisted_token_recipient_is_skipped_and_claims_once_delisted() {
    let setup = Setup::new().await.unwrap();
    let token = BlacklistToken::deploy(setup.provider.clone()).await.unwrap();
    token.mint(setup.deployer, U256::from(10_000)).send().await.unwrap().get_receipt().await.unwrap();
    token.approve(setup.vault_address(), U256::MAX).send().await.unwrap().get_receipt().await.unwrap();
    setup
        .vault
        .depositERC20(*token.address(), U256::from(10_000), Address::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (listed, honest) = (Address::repeat_byte(0x61), Address::repeat_byte(0x62));
    token.setBlacklisted(listed, true).send().await.unwrap().get_receipt().await.unwrap();
    // A cap on the token: the failed leaf must give its share of the bucket back.
    let domain = setup.domain(0);
    let sig = sign(&setup.key, set_cap_message(&domain, 0, from_alloy(*token.address()), 5000, 3600));
    setup.vault.setCap(*token.address(), 5000, 3600, 0, sig).send().await.unwrap().get_receipt().await.unwrap();
    let tree = EthWithdrawalTree::new(vec![
        leaf(2, 0, *token.address(), listed, 3000),
        leaf(2, 1, *token.address(), honest, 1500),
    ]);
    setup.submit(2, &tree, 0).await.unwrap();

    let receipt = setup.vault.withdrawMany(0, payouts(&tree, 0..2)).send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!((withdrawn(&receipt), failed(&receipt)), (vec![1], vec![0]));
    assert_eq!(token.balanceOf(honest).call().await.unwrap(), U256::from(1500));
    assert_eq!(token.balanceOf(listed).call().await.unwrap(), U256::ZERO);
    assert!(!setup.vault.isPaid(2, 0).call().await.unwrap());
    // Only the paid leaf used the cap (the bucket refills over time, so allow a second or two).
    let room = setup.vault.availableUnderCap(*token.address()).call().await.unwrap();
    assert!(room >= U256::from(3500) && room < U256::from(3510), "room {room}");

    token.setBlacklisted(listed, false).send().await.unwrap().get_receipt().await.unwrap();
    let p = payouts(&tree, [0]).remove(0);
    setup
        .vault
        .withdraw(0, 2, 0, p.token, p.recipient, p.amount, p.proof)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(token.balanceOf(listed).call().await.unwrap(), U256::from(3000));
    assert_eq!(token.balanceOf(setup.vault_address()).call().await.unwrap(), U256::from(5500));
}

#[tokio::test]
async fn a_submitter_cannot_make_a_leaf_fail_by_sending_too_little_gas() {
    let setup = Setup::new().await.unwrap();
    fund_eth(&setup, 1000).await;
    let tree = EthWithdrawalTree::new(vec![leaf(3, 0, Address::ZERO, Address::repeat_byte(0x71), 100)]);
    setup.submit(3, &tree, 0).await.unwrap();
    let input = Vault::withdrawManyCall { range: 0, payouts: payouts(&tree, [0]) }.abi_encode();
    let request = TransactionRequest::default()
        .with_from(setup.deployer)
        .with_to(setup.vault_address())
        .with_input(input)
        .with_gas_limit(90_000);
    let error = setup.provider.call(request).await.unwrap_err();
    let data = error.as_error_resp().and_then(|r| r.as_revert_data()).expect("a revert with data");
    let decoded = <Vault::VaultErrors as alloy::sol_types::SolInterface>::abi_decode(&data).unwrap();
    assert!(matches!(decoded, E::InsufficientGasForPayout(_)), "{decoded:?}");
    assert!(!setup.vault.isPaid(3, 0).call().await.unwrap());
    let _ = to_alloy;
}
