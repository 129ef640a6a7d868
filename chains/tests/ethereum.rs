//! chains::ethereum against anvil: the watcher at depth and across reorgs, the verifier
//! (including a spoofed event), the submitter's idempotence, and the holdings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use bridge::eth_settlement::{EvmSchnorrSignature, withdrawals_message};
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use bridge::{Amount, AssetId, Chain, Deposit, L1Ref};
use chains::deposit::{DepositCheck, DepositVerifier};
use chains::ethereum::{
    Confirmation, DepositWatcher, EthDepositVerifier, MAX_BLOCKS_PER_POLL, ScanMark, Submitter, WatchError,
    deposit_from_log, vault_holdings,
};
use contracts::ANVIL_KEY_0;
use contracts::harness::{Setup, signing_provider};
use contracts::{Spoofer, TestToken, from_alloy};
use secp256k1::{Message, SECP256K1};

#[path = "common/lagging_eth.rs"]
mod lagging_eth;

const DEPTH: u64 = 3;

async fn mine(setup: &Setup, blocks: u64) {
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

async fn reorg(setup: &Setup, depth: u64) {
    let _: serde_json::Value =
        setup.provider.raw_request("anvil_reorg".into(), (depth, Vec::<serde_json::Value>::new())).await.unwrap();
}

async fn deposit_eth(setup: &Setup, wei: u64) -> (TransactionReceipt, Deposit) {
    // A fresh provider each time: a reorg drops transactions, which a cached nonce would not know.
    let provider = signing_provider(&setup.anvil.url(), ANVIL_KEY_0).unwrap();
    let receipt = contracts::Vault::new(setup.vault_address(), provider)
        .depositETH(Address::repeat_byte(0xab))
        .value(U256::from(wei))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let deposit = deposit_from_log(&receipt.inner.logs()[0], 0, receipt.block_number.unwrap()).unwrap();
    (receipt, deposit)
}

fn watcher(setup: &Setup) -> DepositWatcher {
    DepositWatcher::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(DEPTH), 0)
}

/// The deposits one poll of `watcher` hands on.
async fn poll(watcher: &mut DepositWatcher) -> Vec<Deposit> {
    watcher.poll().await.unwrap().deposits
}

#[tokio::test]
async fn deposits_are_handed_on_once_and_only_at_depth() {
    let setup = Setup::new().await.unwrap();
    let mut watcher = watcher(&setup);

    let (receipt, expected) = deposit_eth(&setup, 1234).await;
    assert_eq!(
        expected,
        Deposit {
            chain: Chain::Ethereum,
            l1_ref: L1Ref::Ethereum { tx_hash: receipt.transaction_hash.0, log_in_tx: 0 },
            account: bridge::Address([0xab; 20]),
            asset: AssetId::Eth,
            amount: Amount(1234),
            l1_height: receipt.block_number.unwrap(),
        }
    );
    for _ in 0..DEPTH {
        assert!(poll(&mut watcher).await.is_empty(), "handed on before depth");
        mine(&setup, 1).await;
    }
    assert_eq!(poll(&mut watcher).await, vec![expected]);
    mine(&setup, 5).await;
    assert!(poll(&mut watcher).await.is_empty(), "handed on twice");

    // An ERC-20 deposit.
    let token = TestToken::deploy(setup.provider.clone()).await.unwrap();
    token.mint(setup.deployer, U256::from(500)).send().await.unwrap().get_receipt().await.unwrap();
    token.approve(setup.vault_address(), U256::MAX).send().await.unwrap().get_receipt().await.unwrap();
    setup
        .vault
        .depositERC20(*token.address(), U256::from(500), Address::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    mine(&setup, DEPTH).await;
    let handed = poll(&mut watcher).await;
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].asset, AssetId::Erc20(from_alloy(*token.address())));
    assert_eq!((handed[0].account, handed[0].amount), (from_alloy(setup.deployer), Amount(500)));

    // The holdings.
    let holdings = vault_holdings(&setup.provider, setup.vault_address(), &[*token.address()]).await.unwrap();
    assert_eq!(holdings[&AssetId::Eth], U256::from(1234));
    assert_eq!(holdings[&AssetId::Erc20(from_alloy(*token.address()))], U256::from(500));
}

#[tokio::test]
async fn a_reorg_before_depth_credits_nothing_and_one_past_depth_stops_the_watcher() {
    let setup = Setup::new().await.unwrap();
    let mut watcher = watcher(&setup);
    let verifier = EthDepositVerifier::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(DEPTH));

    let (_, removed) = deposit_eth(&setup, 777).await;
    mine(&setup, 1).await;
    assert!(poll(&mut watcher).await.is_empty());
    assert_eq!(verifier.check(&removed).await.unwrap(), DepositCheck::NotYetDeep);
    // The deposit's block and the one after are replaced by empty blocks.
    reorg(&setup, 2).await;
    mine(&setup, DEPTH + 2).await;
    assert!(poll(&mut watcher).await.is_empty(), "a reorged-out deposit was handed on");
    assert!(matches!(verifier.check(&removed).await.unwrap(), DepositCheck::NotOnL1 { .. }));

    // A deposit that reached depth is handed on; a reorg deeper than the depth is an error.
    let (_, kept) = deposit_eth(&setup, 888).await;
    mine(&setup, DEPTH).await;
    assert_eq!(poll(&mut watcher).await, vec![kept]);
    reorg(&setup, DEPTH + 2).await;
    mine(&setup, 3).await;
    let err = watcher.poll().await.unwrap_err();
    assert!(matches!(err, WatchError::DeepReorg { .. }), "{err}");
}

/// What a restarted coordinator relies on (coordinator::deposits::EthDepositTask saves the
/// mark): a watcher resumed after a block scans only what came after it, a watcher far behind
/// catches up a bounded stretch per poll, and a reorg under the mark is noticed on resuming.
#[tokio::test]
async fn a_resumed_watcher_scans_after_its_mark_catches_up_in_bounded_steps_and_sees_a_reorg_under_it() {
    let setup = Setup::new().await.unwrap();
    let mut first = watcher(&setup);
    let (_, early) = deposit_eth(&setup, 100).await;
    mine(&setup, DEPTH).await;
    let scanned = first.poll().await.unwrap();
    assert_eq!(scanned.deposits, vec![early.clone()]);
    let mark = scanned.through.expect("final blocks were scanned");
    assert_eq!(mark.number + 1, first.next_block());
    assert!(first.poll().await.unwrap().through.is_none(), "nothing new became final");

    // Resumed after the mark: the later deposit only.
    mine(&setup, 50).await;
    let (_, late) = deposit_eth(&setup, 200).await;
    mine(&setup, DEPTH).await;
    let mut resumed = watcher(&setup).resume(mark);
    assert_eq!(resumed.next_block(), mark.number + 1);
    let scanned = resumed.poll().await.unwrap();
    assert_eq!(scanned.deposits, vec![late.clone()]);
    assert_eq!(scanned.through.map(|m| m.number), Some(late.l1_height), "up to the final block");

    // From the start, far behind: one bounded stretch per poll, every deposit once, in order.
    mine(&setup, MAX_BLOCKS_PER_POLL + 10).await;
    let mut afresh = watcher(&setup);
    let step = afresh.poll().await.unwrap();
    assert_eq!(step.deposits, vec![early, late]);
    assert_eq!(step.through.map(|m| m.number), Some(MAX_BLOCKS_PER_POLL - 1), "one stretch");
    let rest = afresh.poll().await.unwrap();
    assert!(rest.deposits.is_empty());
    let head = setup.provider.get_block_number().await.unwrap();
    assert_eq!(rest.through.map(|m| m.number), Some(head - DEPTH), "caught up");

    // The mark's block replaced by a reorg deeper than the depth: a watcher resumed after it
    // stops rather than scan on from a chain its ledger did not see.
    let deep = resumed.poll().await.unwrap().through.expect("scanned on");
    reorg(&setup, head - deep.number + 1).await;
    mine(&setup, 2).await;
    let mut after_reorg = watcher(&setup).resume(deep);
    let err = after_reorg.poll().await.unwrap_err();
    assert!(matches!(err, WatchError::DeepReorg { number } if number == deep.number), "{err}");
    let unknown = ScanMark { number: deep.number, hash: [0xee; 32] };
    assert!(matches!(watcher(&setup).resume(unknown).poll().await, Err(WatchError::DeepReorg { .. })));

    // A mark above what the node counts as final (a node still syncing) is not seen yet, which
    // is not a reorg: the watcher waits, and judges the block once the node has it.
    let head = setup.provider.get_block_number().await.unwrap();
    let ahead = ScanMark { number: head + 5, hash: [0xee; 32] };
    let mut waiting = watcher(&setup).resume(ahead);
    assert_eq!(waiting.poll().await.unwrap(), chains::ethereum::Scanned::default(), "waits");
    mine(&setup, 5 + DEPTH).await;
    assert!(matches!(waiting.poll().await, Err(WatchError::DeepReorg { number }) if number == ahead.number));
}

#[tokio::test]
async fn the_verifier_checks_every_field_the_depth_and_the_emitter() {
    let setup = Setup::new().await.unwrap();
    let verifier = EthDepositVerifier::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(DEPTH));
    let (_, deposit) = deposit_eth(&setup, 1000).await;
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::NotYetDeep);
    mine(&setup, DEPTH).await;
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::Confirmed);

    // Every field must match.
    let more = Deposit { amount: Amount(1001), ..deposit.clone() };
    let other_account = Deposit { account: bridge::Address([1; 20]), ..deposit.clone() };
    let other_asset = Deposit { asset: AssetId::Erc20(bridge::Address([2; 20])), ..deposit.clone() };
    let L1Ref::Ethereum { tx_hash, .. } = deposit.l1_ref else { unreachable!() };
    let other_log = Deposit { l1_ref: L1Ref::Ethereum { tx_hash, log_in_tx: 1 }, ..deposit.clone() };
    let absent = Deposit { l1_ref: L1Ref::Ethereum { tx_hash: [9; 32], log_in_tx: 0 }, ..deposit.clone() };
    for wrong in [more, other_account, other_asset, other_log, absent] {
        assert!(matches!(verifier.check(&wrong).await.unwrap(), DepositCheck::NotOnL1 { .. }), "{wrong:?}");
    }

    // The same event emitted by another contract is refused.
    let spoofer = Spoofer::deploy(setup.provider.clone()).await.unwrap();
    let receipt = spoofer
        .fake(0, Address::ZERO, Address::repeat_byte(0xab), U256::from(1_000_000))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let spoofed = deposit_from_log(&receipt.inner.logs()[0], 0, receipt.block_number.unwrap()).unwrap();
    mine(&setup, DEPTH).await;
    match verifier.check(&spoofed).await.unwrap() {
        DepositCheck::NotOnL1 { reason } => assert!(reason.contains("not the vault"), "{reason}"),
        other => panic!("a spoofed deposit was {other:?}"),
    }
}

#[tokio::test]
async fn the_submitter_sends_only_what_is_missing() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    let tree = EthWithdrawalTree::new(
        (0..5u32)
            .map(|i| EthWithdrawal {
                batch: 4,
                index: i,
                token: bridge::Address::ZERO,
                recipient: bridge::Address([0x50 + i as u8; 20]),
                amount: Amount(100 + u128::from(i)),
            })
            .collect(),
    );
    let message = withdrawals_message(&setup.domain(0), 1, 4, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();

    let from = setup.deployer;
    let mut submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), from);
    submitter.max_per_tx = 2;
    submitter.confirm_timeout = Duration::from_secs(10);
    assert!(submitter.submit_range(1, 4, tree.root(), &sig).await.unwrap().is_some());
    assert!(submitter.submit_range(1, 4, tree.root(), &sig).await.unwrap().is_none(), "submitted twice");

    // Someone else pays leaf 3 first; the submitter pays the other four in two transactions.
    setup.vault.withdrawMany(0, contracts::payouts(&tree, [3])).send().await.unwrap().get_receipt().await.unwrap();
    let payment = submitter.pay(0, &tree).await.unwrap();
    assert_eq!((payment.receipts.len(), payment.failed.len()), (2, 0));
    assert!(submitter.pay(0, &tree).await.unwrap().receipts.is_empty(), "paid twice");
    for w in tree.withdrawals() {
        assert_eq!(setup.balance(contracts::to_alloy(w.recipient)).await.unwrap(), U256::from(w.amount.0));
    }
    // A different root for the same range is a conflict, not a resend; so is a range after a gap.
    assert!(matches!(
        submitter.submit_range(1, 4, [1; 32], &sig).await,
        Err(chains::ethereum::SubmitError::RangeConflict { first: 1, settled_through: 4 })
    ));
    assert!(matches!(
        submitter.submit_range(6, 6, [1; 32], &sig).await,
        Err(chains::ethereum::SubmitError::RangeConflict { first: 6, settled_through: 4 })
    ));
    let held = submitter.range(0).await.unwrap().unwrap();
    assert_eq!((held.first, held.last, held.root), (1, 4, tree.root()));
    assert_eq!(submitter.range(1).await.unwrap(), None);
}

#[tokio::test]
async fn a_root_goes_with_its_payouts_and_the_rest_follow_in_as_many_transactions_as_needed() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    let tree = EthWithdrawalTree::new(
        (0..5u32)
            .map(|i| EthWithdrawal {
                batch: if i < 3 { 1 } else { 2 },
                index: i % 3,
                token: bridge::Address::ZERO,
                recipient: bridge::Address([0x60 + i as u8; 20]),
                amount: Amount(100 + u128::from(i)),
            })
            .collect(),
    );
    let message = withdrawals_message(&setup.domain(0), 1, 2, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
    let mut submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    submitter.max_per_tx = 2;
    submitter.confirm_timeout = Duration::from_secs(10);

    // The wrong range number (the vault's next is 0) is a conflict, with nothing sent.
    assert!(matches!(
        submitter.submit_and_pay(1, (1, 2), &tree, &sig).await,
        Err(chains::ethereum::SubmitError::RangeConflict { .. })
    ));
    // Two leaves ride with the root, three follow in two `withdrawMany`.
    let payment = submitter.submit_and_pay(0, (1, 2), &tree, &sig).await.unwrap().unwrap();
    assert_eq!((payment.receipts.len(), payment.failed.len(), payment.deferred.len()), (3, 0, 0));
    let first = &payment.receipts[0];
    let input = setup.provider.get_transaction_by_hash(first.transaction_hash).await.unwrap().unwrap();
    assert_eq!(chains::ethereum::call_name(alloy::consensus::Transaction::input(&input)), "submitAndWithdraw");
    for w in tree.withdrawals() {
        assert_eq!(setup.balance(contracts::to_alloy(w.recipient)).await.unwrap(), U256::from(w.amount.0));
    }
    // Again: the vault holds the range, so nothing is sent, and nothing is left to pay.
    assert!(submitter.submit_and_pay(0, (1, 2), &tree, &sig).await.unwrap().is_none(), "submitted twice");
    assert!(submitter.pay(0, &tree).await.unwrap().receipts.is_empty(), "paid twice");
}

#[tokio::test]
async fn a_transaction_not_mined_is_sent_again_with_a_higher_fee() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    let tree = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch: 1,
        index: 0,
        token: bridge::Address::ZERO,
        recipient: bridge::Address([0x61; 20]),
        amount: Amount(42),
    }]);
    let message = withdrawals_message(&setup.domain(0), 1, 1, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
    let mut submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    submitter.confirm_timeout = Duration::from_millis(800);
    submitter.submit_range(1, 1, tree.root(), &sig).await.unwrap();

    // Blocks stop coming: the payout waits in the pool until the submitter has bumped its fee.
    let _: serde_json::Value = setup.provider.raw_request("evm_setAutomine".into(), (false,)).await.unwrap();
    let paying = tokio::spawn({
        let submitter = submitter.clone();
        async move { submitter.pay(0, &tree).await }
    });
    while submitter.fee_bumps() == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    mine(&setup, 1).await;
    let receipts = paying.await.unwrap().unwrap().receipts;
    assert_eq!(receipts.len(), 1);
    assert!(submitter.fee_bumps() >= 1);
    assert_eq!(setup.balance(Address::repeat_byte(0x61)).await.unwrap(), U256::from(42));
    // Exactly one version was mined.
    let block = setup.provider.get_block_by_number(receipts[0].block_number.unwrap().into()).await.unwrap().unwrap();
    assert_eq!(block.transactions.len(), 1);
}

#[tokio::test]
async fn an_ether_recipient_that_refuses_does_not_block_the_others() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    // Another vault refuses plain ether: a recipient contract that reverts.
    let refuser = contracts::Vault::deploy(setup.provider.clone(), contracts::group_key(&setup.key), setup.deployer)
        .await
        .unwrap();
    let recipients = [bridge::Address([0x71; 20]), from_alloy(*refuser.address()), bridge::Address([0x72; 20])];
    let tree = EthWithdrawalTree::new(
        recipients
            .iter()
            .enumerate()
            .map(|(i, r)| EthWithdrawal {
                batch: 9,
                index: i as u32,
                token: bridge::Address::ZERO,
                recipient: *r,
                amount: Amount(10),
            })
            .collect(),
    );
    let message = withdrawals_message(&setup.domain(0), 1, 9, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
    let submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    submitter.submit_range(1, 9, tree.root(), &sig).await.unwrap();
    let payment = submitter.pay(0, &tree).await.unwrap();
    assert_eq!((payment.receipts.len(), payment.failed.clone()), (1, vec![(9, 1)]));
    assert_eq!(setup.balance(Address::repeat_byte(0x71)).await.unwrap(), U256::from(10));
    assert_eq!(setup.balance(Address::repeat_byte(0x72)).await.unwrap(), U256::from(10));
    assert!(!setup.vault.isPaid(9, 1).call().await.unwrap());
}

#[tokio::test]
async fn the_submitter_respects_the_vaults_cap_and_pause() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    // A cap of 250 wei per day on ether.
    let message = bridge::eth_settlement::set_cap_message(&setup.domain(0), 0, bridge::Address::ZERO, 250, 86_400);
    let cap_sig = contracts::sign(&setup.key, message);
    setup.vault.setCap(Address::ZERO, 250, 86_400, 0, cap_sig).send().await.unwrap().get_receipt().await.unwrap();
    let tree = EthWithdrawalTree::new(
        (0..3u32)
            .map(|i| EthWithdrawal {
                batch: 2,
                index: i,
                token: bridge::Address::ZERO,
                recipient: bridge::Address([0x60 + i as u8; 20]),
                amount: Amount(100),
            })
            .collect(),
    );
    let message = withdrawals_message(&setup.domain(0), 1, 2, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
    let submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    submitter.submit_range(1, 2, tree.root(), &sig).await.unwrap();

    // Two leaves fit under the cap; the third waits for it to refill instead of reverting.
    let payment = submitter.pay(0, &tree).await.unwrap();
    assert_eq!((payment.receipts.len(), payment.deferred.clone()), (1, vec![(2, 2)]));
    assert!(setup.vault.isPaid(2, 1).call().await.unwrap());
    assert!(!setup.vault.isPaid(2, 2).call().await.unwrap());

    // Paused by the guardian: nothing is sent, and the reason is typed.
    let guardian = contracts::Vault::new(setup.vault_address(), setup.guardian.clone());
    guardian.pause().send().await.unwrap().get_receipt().await.unwrap();
    assert!(matches!(submitter.pay(0, &tree).await, Err(chains::ethereum::SubmitError::Paused)));
    assert!(!setup.vault.isPaid(2, 2).call().await.unwrap());
}

#[tokio::test]
async fn gas_burning_recipients_cannot_push_a_payout_past_the_block_gas_limit() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    let burner = contracts::recipients::GasBurner::deploy(setup.provider.clone()).await.unwrap();
    // A small block: seven leaves whose recipients each burn their whole stipend need more gas
    // than one block holds.
    let block_limit = 1_000_000u64;
    let _: serde_json::Value =
        setup.provider.raw_request("evm_setBlockGasLimit".into(), (U256::from(block_limit),)).await.unwrap();
    mine(&setup, 1).await;
    let recipients: Vec<bridge::Address> = (0..7u8)
        .map(|i| if i % 2 == 0 { from_alloy(*burner.address()) } else { bridge::Address([0x80 + i; 20]) })
        .collect();
    let tree = EthWithdrawalTree::new(
        recipients
            .iter()
            .enumerate()
            .map(|(i, r)| EthWithdrawal {
                batch: 5,
                index: i as u32,
                token: bridge::Address::ZERO,
                recipient: *r,
                amount: Amount(10),
            })
            .collect(),
    );
    let message = withdrawals_message(&setup.domain(0), 1, 5, tree.root());
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
    let sig = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
    let submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    submitter.submit_range(1, 5, tree.root(), &sig).await.unwrap();
    let payment = submitter.pay(0, &tree).await.unwrap();
    assert_eq!(payment.failed, vec![(5, 0), (5, 2), (5, 4), (5, 6)]);
    assert!(payment.receipts.len() >= 3, "{} transactions", payment.receipts.len());
    for receipt in &payment.receipts {
        let tx = setup.provider.get_transaction_by_hash(receipt.transaction_hash).await.unwrap().unwrap();
        let limit = alloy::consensus::Transaction::gas_limit(&tx);
        assert!(limit <= block_limit, "a payout asked for {limit} gas, above the block's {block_limit}");
    }
    for i in [1u8, 3, 5] {
        assert_eq!(setup.balance(Address::repeat_byte(0x80 + i)).await.unwrap(), U256::from(10));
    }
    // A retry of a leaf whose recipient still burns everything sends nothing.
    let nonce = setup.provider.get_transaction_count(setup.deployer).await.unwrap();
    assert!(matches!(submitter.retry(0, &tree, (5, 0)).await.unwrap(), chains::ethereum::Retry::StillRefused));
    assert_eq!(setup.provider.get_transaction_count(setup.deployer).await.unwrap(), nonce);
}

#[tokio::test]
async fn a_node_that_lags_waits_for_a_deposit_and_a_node_past_its_block_calls_a_missing_one_absent() {
    let setup = Setup::new().await.unwrap();
    mine(&setup, 40).await;
    let (receipt, deposit) = deposit_eth(&setup, 2500).await;
    let height = receipt.block_number.unwrap();
    mine(&setup, DEPTH).await;
    // A deposit the coordinator invents, claimed in the same block.
    let invented = Deposit { l1_ref: L1Ref::Ethereum { tx_hash: [9; 32], log_in_tx: 0 }, ..deposit.clone() };

    // This verifier's node is 30 blocks behind anvil: it has not reached the deposit's block.
    let lagging = lagging_eth::LaggingNode::start(&setup.anvil.url(), 30).await;
    let behind = EthDepositVerifier::connect(
        &lagging.url,
        &Default::default(),
        from_alloy(setup.vault_address()),
        Confirmation::Depth(DEPTH),
    )
    .unwrap();
    let head = setup.provider.get_block_number().await.unwrap();
    let waiting = DepositCheck::NodeBehind { node_height: head - 30, needed: height + DEPTH };
    assert_eq!(behind.check(&deposit).await.unwrap(), waiting, "a lagging node waits, it does not alarm");
    assert_eq!(behind.check(&invented).await.unwrap(), waiting, "nor can it tell an invented one yet");

    // Caught up: the real deposit is confirmed, the invented one is absent.
    lagging.set_lag(0);
    assert_eq!(behind.check(&deposit).await.unwrap(), DepositCheck::Confirmed);
    match behind.check(&invented).await.unwrap() {
        DepositCheck::NotOnL1 { reason } => {
            assert!(reason.contains("counts block") && reason.contains("as final"), "{reason}")
        }
        other => panic!("an invented deposit was {other:?}"),
    }
}

#[tokio::test]
async fn a_deposit_a_reorg_moves_to_another_log_position_in_its_block_is_credited_once() {
    let setup = Setup::new().await.unwrap();
    let mut watcher = DepositWatcher::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(1), 0);
    // The deposit, alone in its block: its log is the block's first.
    let (receipt, _) = deposit_eth(&setup, 5000).await;
    assert_eq!(receipt.inner.logs()[0].log_index, Some(0));
    let height = receipt.block_number.unwrap();
    let raw = setup.provider.get_raw_transaction_by_hash(receipt.transaction_hash).await.unwrap().unwrap();
    mine(&setup, 1).await;
    let first = poll(&mut watcher).await;
    assert_eq!(first.len(), 1);

    // A reorg replaces the deposit's block and the next with empty blocks; the transaction is
    // mined again later, after another deposit in the same block, so its block-level log index
    // is now 1. (anvil_reorg can re-include it directly, but anvil then numbers the receipts'
    // logs per transaction, which no real node does: the next block is mined normally instead.)
    reorg(&setup, 2).await;
    assert!(setup.provider.get_transaction_receipt(receipt.transaction_hash).await.unwrap().is_none());
    let _: serde_json::Value = setup.provider.raw_request("evm_setAutomine".into(), (false,)).await.unwrap();
    let other = serde_json::json!({
        "from": contracts::ANVIL_KEY_1.parse::<alloy::signers::local::PrivateKeySigner>().unwrap().address().to_string(),
        "to": setup.vault_address().to_string(),
        "value": "0x64",
        // Above the deposit's tip, so the block orders it first.
        "maxFeePerGas": "0x174876e800",
        "maxPriorityFeePerGas": "0x174876e800",
        "data": alloy::primitives::hex::encode_prefixed(alloy::sol_types::SolCall::abi_encode(
            &contracts::Vault::depositETHCall { account: Address::repeat_byte(0xcd) }
        )),
    });
    let _: serde_json::Value = setup.provider.raw_request("eth_sendTransaction".into(), (other,)).await.unwrap();
    let _: serde_json::Value = setup.provider.raw_request("eth_sendRawTransaction".into(), (raw,)).await.unwrap();
    mine(&setup, 1).await;
    let _: serde_json::Value = setup.provider.raw_request("evm_setAutomine".into(), (true,)).await.unwrap();
    let moved = setup.provider.get_transaction_receipt(receipt.transaction_hash).await.unwrap().unwrap();
    assert_eq!(moved.block_number, Some(height + 2), "re-included two blocks later");
    assert_eq!(moved.inner.logs()[0].log_index, Some(1), "at another position in its block");
    mine(&setup, 1).await;

    // The watcher stops at the reorg; restarted from an earlier block, it scans the block again.
    assert!(matches!(watcher.poll().await, Err(WatchError::DeepReorg { .. })));
    let mut rescan =
        DepositWatcher::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(1), height - 1);
    let second = poll(&mut rescan).await;
    assert_eq!(second.len(), 2);

    // The ledger credits every deposit handed on, refusing a reference already credited.
    let params = bridge::NetworkParams {
        name: "test-reorg".into(),
        chain_id: setup.chain_id,
        eth_vault: from_alloy(setup.vault_address()),
        btc_network: bridge::BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: bridge::CoordinatorKey::from_secret(&[0xc0; 32]).unwrap().public_key(),
        fee_account: bridge::Address([0xfe; 20]),
        assets: vec![bridge::AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    };
    let mut state = bridge::State::genesis(params);
    let mut credited = 0;
    for deposit in first.iter().chain(&second) {
        if bridge::apply(&mut state, &bridge::Tx::System(bridge::tx::SystemTx::Deposit(deposit.clone()))).is_ok() {
            credited += 1;
        }
    }
    assert_eq!(credited, 2, "the moved deposit and the new one; not the moved one twice");
    assert_eq!(state.balance(&bridge::Address([0xab; 20]), &AssetId::Eth), Amount(5000));
    assert_eq!(state.balance(&bridge::Address([0xcd; 20]), &AssetId::Eth), Amount(100));
    // And a replayer still finds the first credit on L1, at its position in the transaction.
    let verifier = EthDepositVerifier::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(1));
    assert_eq!(verifier.check(&first[0]).await.unwrap(), DepositCheck::Confirmed);
}

/// One account, one nonce sequence: clones of a submitter (a watchman's settlement and its
/// admin API share one) take turns, so a second send neither reuses the pending one's nonce nor
/// replaces it. Without the shared lock the second send read the same nonce and one of the two
/// failed with "nonce … was used by another transaction".
#[tokio::test]
async fn clones_of_one_submitter_take_turns_on_the_accounts_nonce() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 10_000).await.unwrap();
    let tree_of = |batch: u64, recipient: u8, amount: u128| {
        EthWithdrawalTree::new(vec![EthWithdrawal {
            batch,
            index: 0,
            token: bridge::Address::ZERO,
            recipient: bridge::Address([recipient; 20]),
            amount: Amount(amount),
        }])
    };
    let signed = |range: u64, batch: u64, root: [u8; 32]| {
        let message = withdrawals_message(&setup.domain(0), range, batch, root);
        let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), &setup.key);
        EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap()
    };
    let (first, second) = (tree_of(1, 0x62, 42), tree_of(2, 0x63, 7));
    let mut submitter = Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    submitter.confirm_timeout = Duration::from_secs(30);
    submitter.submit_range(1, 1, first.root(), &signed(1, 1, first.root())).await.unwrap();

    // Blocks come only when the test mines them: the first send stays pending while the
    // second one starts.
    let _: serde_json::Value = setup.provider.raw_request("evm_setAutomine".into(), (false,)).await.unwrap();
    let settling = tokio::spawn({
        let submitter = submitter.clone();
        let sig = signed(2, 2, second.root());
        async move { submitter.submit_range(2, 2, second.root(), &sig).await }
    });
    let from = setup.deployer;
    for _ in 0..300 {
        let pending = setup.provider.get_transaction_count(from).pending().await.unwrap();
        if pending > setup.provider.get_transaction_count(from).latest().await.unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paying = tokio::spawn({
        let submitter = submitter.clone();
        async move { submitter.pay(0, &first).await }
    });
    // Time for the second send to go out if it did not wait its turn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..300 {
        if settling.is_finished() && paying.is_finished() {
            break;
        }
        mine(&setup, 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let range = settling.await.unwrap().unwrap();
    assert!(range.is_some(), "range 2 submitted");
    let payment = paying.await.unwrap().unwrap();
    assert_eq!((payment.receipts.len(), payment.failed.len()), (1, 0));
    assert_eq!(setup.balance(Address::repeat_byte(0x62)).await.unwrap(), U256::from(42));
    let held = submitter.range(1).await.unwrap().unwrap();
    assert_eq!((held.first, held.last), (2, 2));
}
