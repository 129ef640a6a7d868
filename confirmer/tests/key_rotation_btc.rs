//! The Bitcoin half of a signer-set rotation (docs/PROTOCOL.md, "Bitcoin in a key rotation"),
//! on the regtest node (Bitcoin Core's kernel) with two real DKGs over libp2p on 127.0.0.1: the
//! old set (2-of-3) and the new one (3-of-4), a coordinator crediting deposits and planning
//! payouts and sweeps, and every watchman replaying the DA with its own follower and node.
//!
//! The old group signs the ledger's `KeyRotation` only with t approvals. A withdrawal requested
//! during the rotation waits for the sweep; the old group signs the sweep its replay made (a
//! sweep to anywhere else is refused by its policy); a deposit to an old per-account address
//! during the grace is credited and swept too; then the new group pays the withdrawal. Nothing
//! is lost or paid twice, and the vault holds exactly what the ledger says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::{AssetId, Chain, NetworkParams, Transfer, UserTx, VaultOwner, Withdraw};
use chains::bitcoin::{CoreRpc, DepositChecker, deposit_address};
use chains::da::DirDa;
use chains::task::{Schedule, Supervisor};
use common::bitcoin_bridge::{BitcoinBridge, balance, recipient, submit, until};
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::solvency::SolvencyWatch;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::admin::propose::{ProposeError, sign_key_rotation};
use confirmer::watchman::admin::{AdminAction, AdminMessage, AdminPolicy, ApprovalBook};
use confirmer::watchman::{BUMP_CLOCK_TASK, BtcPayouts, BumpClock, ReplayPolicy, SettlementBook, Watchman};
use tss::{GroupKey, SessionError, TssNode};

/// Long enough for the whole test; expiry is the admin tests' subject.
const APPROVAL_LIFETIME_S: u64 = 3_600;

struct Member {
    watchman: Watchman,
    approvals: ApprovalBook,
}

struct Group {
    key: GroupKey,
    members: Vec<Member>,
}

impl Group {
    /// `n` watchmen of a fresh `t`-of-`n` DKG, each replaying the DA in `dir` with its own
    /// follower (checking Bitcoin facts against the node); the first pays the plans under the
    /// group's key.
    async fn start(name: &str, n: usize, t: u16, dir: &std::path::Path, p: &NetworkParams, rpc: &CoreRpc) -> Self {
        let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
        let shares = dkg_with_threshold(&identities, t).await;
        Group::with_shares(name, identities, shares, dir, p, rpc).await
    }

    async fn with_shares(
        name: &str,
        identities: Vec<libp2p::identity::Keypair>,
        shares: Vec<tss::KeyShare>,
        dir: &std::path::Path,
        p: &NetworkParams,
        rpc: &CoreRpc,
    ) -> Self {
        let key = GroupKey::of(&shares[0].public).unwrap();
        let vault = p.btc_vault.unwrap();
        let running = entries(&identities);
        let domain = bridge::eth_settlement::VaultDomain { chain_id: p.chain_id, vault: p.eth_vault, epoch: 0 };
        let mut members = Vec::new();
        for (i, (identity, share)) in identities.iter().zip(shares).enumerate() {
            let da = DirDa::open(dir.join("da"), p.coordinator_key).unwrap();
            let db = dir.join(format!("{name}-{i}.db"));
            let store = ConfirmerStore::open(&format!("sqlite://{}", db.display())).await.unwrap();
            let genesis_key = bitcoin::key::XOnlyPublicKey::from_slice(&vault.group_key).unwrap();
            let checker = DepositChecker::new(rpc.clone(), p.btc_network, genesis_key, 1);
            let verifiers = DepositVerifiers::none().with(Chain::Bitcoin, Arc::new(checker));
            let follower = Follower::open(Arc::new(da), store, p.clone(), verifiers).await.unwrap();
            let book = SettlementBook::default();
            let clock = BumpClock::new(3);
            let refresh = clock.task(rpc.clone(), book.clone(), vault, p.btc_network);
            Supervisor::new().spawn(BUMP_CLOCK_TASK, refresh, Schedule::every(std::time::Duration::from_millis(100)));
            let approvals = ApprovalBook::in_memory();
            let policy = ReplayPolicy::new(book.clone(), None)
                .with_bitcoin(vault, p.btc_network)
                .with_bump_clock(clock)
                .with_admin(AdminPolicy::new(approvals.clone(), domain));
            let node = TssNode::start(tss_config(identity, &running, Some(share), Arc::new(policy))).await.unwrap();
            let watchman = Watchman::new(follower, book.clone(), node, None);
            // One member of each group broadcasts (all of them sign): the others would only send
            // the same transaction again.
            let watchman = if i == 0 {
                let payouts = BtcPayouts::new(book, vault, p.btc_network, rpc.clone(), 3).for_group(key.internal_key);
                watchman.with_bitcoin(payouts)
            } else {
                watchman
            };
            members.push(Member { watchman, approvals });
        }
        Group { key, members }
    }

    /// One turn of every member.
    async fn step(&mut self) {
        for member in &mut self.members {
            member.watchman.step(64).await.unwrap();
            assert!(member.watchman.follower().status().alarms.is_empty(), "{:?}", member.watchman.follower().status());
        }
    }

    /// Operators `who` approve `action` (the ledger's key rotation: no vault nonce).
    fn approve(&self, who: &[usize], action: &AdminAction, p: &NetworkParams) -> AdminMessage {
        let domain = bridge::eth_settlement::VaultDomain { chain_id: p.chain_id, vault: p.eth_vault, epoch: 1 };
        let message = AdminMessage::new(action.clone(), domain, 0);
        for i in who {
            self.members[*i]
                .approvals
                .approve(message.clone(), confirmer::watchman::admin::now_s(), APPROVAL_LIFETIME_S)
                .unwrap();
        }
        message
    }
}

fn sign(p: &NetworkParams, tx: UserTx) -> bridge::SignedUserTx {
    wallet(1).sign(tx, &bridge::eip712::Domain::new(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_moves_to_the_new_key_and_every_satoshi_is_accounted_for() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,libp2p=warn").with_test_writer().try_init();
    // The old set's key ceremony first: the network is born with its key.
    let old_ids: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let old_shares = dkg_with_threshold(&old_ids, 2).await;
    let old_key = GroupKey::of(&old_shares[0].public).unwrap();
    let BitcoinBridge { node: bitcoin_node, rpc, miner, dir, params: p, vault: _, coordinator } =
        BitcoinBridge::start(old_key.internal_key).await;
    let _keep = &bitcoin_node;
    let (alice, bob) = (wallet(1), wallet(2));

    // Alice deposits 0.05 BTC to her address under the old key; she pays bob 0.001 BTC with a
    // 5,000 sat fee (the fee account's bitcoin, which pays for the sweep when there is no surplus).
    let address_of = async |account: bridge::Address| -> bitcoin::Address {
        let answer: serde_json::Value =
            reqwest::get(format!("{}/accounts/{account}/btc-deposit-address", coordinator.url()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        answer["address"].as_str().unwrap().parse::<bitcoin::Address<_>>().unwrap().assume_checked()
    };
    let alice_old = address_of(alice.address()).await;
    let first_deposit = miner.pay(&rpc, 1, &alice_old, bitcoin::Amount::from_sat(5_000_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    until("alice's deposit", async || {
        (balance(&coordinator, alice.address(), AssetId::Btc).await == 5_000_000).then_some(())
    })
    .await;
    let pay_bob = UserTx::Transfer(Transfer {
        from: alice.address(),
        to: bob.address(),
        asset: AssetId::Btc,
        amount: bridge::Amount(100_000),
        fee: bridge::Amount(5_000),
        nonce: 0,
    });
    submit(&coordinator, &sign(&p, pay_bob)).await;

    let mut old = Group::with_shares("old", old_ids, old_shares, dir.path(), &p, &rpc).await;
    // The new set's ceremony (3-of-4), run by its own operators.
    let mut new = Group::start("new", 4, 3, dir.path(), &p, &rpc).await;
    assert_ne!(new.key.internal_key, old.key.internal_key);

    // The ledger's KeyRotation: the old group signs only with t = 2 approvals of exactly it.
    let rotate = AdminAction::KeyRotation {
        network: p.genesis_hash(),
        old_key: old.key.output_key,
        new_key: new.key.internal_key,
        roster_hash: [0x77; 32],
    };
    let message = old.approve(&[2], &rotate, &p);
    let tss = old.members[2].watchman.tss_shared();
    assert!(matches!(sign_key_rotation(&tss, &message).await, Err(ProposeError::NotSigned { .. })), "t − 1");
    old.approve(&[0], &rotate, &p);
    let (rotation, _) = sign_key_rotation(&tss, &message).await.unwrap();
    let http = reqwest::Client::new();
    let accepted: serde_json::Value = http
        .post(format!("{}/key-rotation", coordinator.url()))
        .json(&rotation)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from_batch = accepted["from_batch"].as_u64().unwrap_or_else(|| panic!("{accepted}"));
    // A transaction sent now may still land in batch from_batch − 1, where the old key is in
    // force and would pay it at once. This test's subject is a withdrawal under the new key, so
    // it waits until that batch is sealed and replayed.
    until("the last batch under the old key", async || {
        old.step().await;
        (old.members[0].watchman.follower().state().head().next_number >= from_batch).then_some(())
    })
    .await;

    // Deposit addresses are the new key's from now on; alice's old address is still credited
    // during the grace. A withdrawal requested now waits for the sweep.
    let alice_new = address_of(alice.address()).await;
    assert_ne!(alice_new, alice_old);
    assert_eq!(alice_new, deposit_address(xonly(new.key.internal_key), p.btc_network, &alice.address()));
    let to = recipient();
    let withdraw = UserTx::Withdraw(Withdraw {
        from: alice.address(),
        asset: AssetId::Btc,
        amount: bridge::Amount(2_000_000),
        fee: bridge::Amount(10_000),
        recipient: to.to_string(),
        nonce: 1,
    });
    submit(&coordinator, &sign(&p, withdraw)).await;
    let late = miner.pay(&rpc, 2, &alice_old, bitcoin::Amount::from_sat(700_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    until("the late deposit to the old address", async || {
        (balance(&coordinator, alice.address(), AssetId::Btc).await == 5_000_000 - 105_000 - 2_010_000 + 700_000)
            .then_some(())
    })
    .await;

    // The sweeps: the old group replays the rotation and the sweep plans, refuses a sweep to
    // anywhere else, and signs and broadcasts the plans its replay made.
    let sweeps = until("both old-key outputs planned for a sweep", async || {
        old.step().await;
        let state = old.members[0].watchman.follower().state();
        let planned: Vec<bridge::PayoutPlan> = state.btc_plans().filter(|p| p.is_consolidation()).cloned().collect();
        let inputs: usize = planned.iter().map(|p| p.inputs.len()).sum();
        (state.head().next_number > from_batch && inputs == 2 && state.vault_utxos().count() == 0).then_some(planned)
    })
    .await;
    assert!(sweeps.iter().flat_map(|p| &p.inputs).all(|u| u.owner.rotated_key().is_none()), "old-key outputs");
    let (batch, first) = until("a hard-final sweep", async || {
        old.step().await;
        old.members[1]
            .watchman
            .book()
            .owing_from(1)
            .into_iter()
            .find_map(|(batch, s)| s.btc_plans.iter().find(|p| p.id == sweeps[0].id).map(|p| (batch, p.clone())))
    })
    .await;
    // A sweep to another key (an attacker's) is not the plan the replay made: refused.
    let attacker = bridge::VaultKeys { params: p.btc_vault.unwrap(), rotated: vec![(from_batch, xonly_bytes(0x42))] };
    let forged = first.build(&attacker, p.btc_network, 0).unwrap();
    let refused = old.members[1].watchman.tss().sign(BtcPayouts::requests(batch, &first, &forged)).await.unwrap_err();
    assert!(matches!(refused, SessionError::NotEnoughSigners { .. }), "{refused}");

    // Mine until every sweep and the payout are confirmed and recorded; the old group pays the
    // sweeps, the new group the withdrawal (its inputs are under the new key only).
    until("the withdrawal paid by the new group", async || {
        old.step().await;
        new.step().await;
        rpc.generate_to_address(1, &miner.address).await.unwrap();
        let state = new.members[0].watchman.follower().state();
        (state.btc_plans().count() == 0 && state.btc_queue().count() == 0 && state.head().next_number > from_batch)
            .then_some(())
    })
    .await;
    let state = new.members[0].watchman.follower().state();
    assert!(
        state.vault_utxos().all(|u| u.owner == VaultOwner::RotatedVault { internal_key: new.key.internal_key }),
        "everything the vault holds is under the new key"
    );
    // The recipient was paid exactly once, exactly the amount.
    let paid = paid_to(&rpc, &to).await;
    assert_eq!(paid, vec![2_000_000], "paid once, exactly");
    // Both old-key deposits were spent by sweeps: neither is unspent on the chain any more.
    let alice_first = bitcoin::OutPoint { txid: first_deposit.compute_txid(), vout: 0 };
    let late = bitcoin::OutPoint { txid: late.compute_txid(), vout: 0 };
    for outpoint in [alice_first, late] {
        assert!(rpc.tx_out(&outpoint, false).await.unwrap().is_none(), "{outpoint} was not swept");
    }

    // Solvency is exact: the ledger owes alice 5M − 105k − 2.01M + 700k, bob 100k and the fee
    // account what the sweeps left of its 5k; the vault's outputs on the chain are exactly the
    // ledger's, and hold that plus what the miners did not take of the fee budgets.
    let owed = 3_585_000 + 100_000 + 5_000 - sweep_fees(state);
    assert_eq!(state.supply(&AssetId::Btc).liabilities.units(), owed);
    let watch = SolvencyWatch {
        eth_rpc: None,
        btc: Some(std::sync::Arc::new(rpc.clone())),
        btc_depth: 1,
        tls: Default::default(),
    };
    let report = watch.check(state).await.unwrap();
    assert_eq!(report[0].shortfall(), 0, "{report:?}");
    assert_eq!(report[0].owed, owed);
    assert_eq!(report[0].held, u128::from(state.btc_vault_holdings_sat()));
    assert!(report[0].detail.is_none(), "{report:?}");
    coordinator.shutdown().await;
}

fn xonly(key: [u8; 32]) -> bitcoin::key::XOnlyPublicKey {
    bitcoin::key::XOnlyPublicKey::from_slice(&key).unwrap()
}

fn xonly_bytes(byte: u8) -> [u8; 32] {
    let key = bitcoin::key::Keypair::from_seckey_slice(bitcoin::secp256k1::SECP256K1, &[byte; 32]).unwrap();
    key.x_only_public_key().0.serialize()
}

/// What the ledger took from the fee account for sweeps: the fee account's BTC as credited
/// (5,000) less what it holds now.
fn sweep_fees(state: &bridge::State) -> u128 {
    5_000 - state.balance(&state.params().fee_account, &AssetId::Btc).units()
}

/// Every amount the chain paid to `to`'s script, in block order.
async fn paid_to(rpc: &CoreRpc, to: &bitcoin::Address) -> Vec<u64> {
    let mut paid = Vec::new();
    let tip = rpc.block_count().await.unwrap();
    for height in 0..=tip {
        let block = rpc.block(&rpc.block_hash(height).await.unwrap()).await.unwrap();
        for tx in &block.txdata {
            for output in &tx.output {
                if output.script_pubkey == to.script_pubkey() {
                    paid.push(output.value.to_sat());
                }
            }
        }
    }
    paid
}
