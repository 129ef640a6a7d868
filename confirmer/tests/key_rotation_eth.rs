//! The Ethereum half of a signer-set rotation (docs/OPERATIONS.md, "Rotating the signer set"),
//! with two real DKGs over libp2p on 127.0.0.1: the old set (2-of-3) and the new one (3-of-4),
//! the vault on anvil, a coordinator crediting a deposit and taking withdrawals, and every
//! watchman replaying the DA with its own follower. The old group signs `proposeKey` only once
//! `t` old operators approved it (t − 1 is not enough), the new group signs `acceptKey` with `t`
//! new approvals. Afterwards a root signed under the old epoch is refused, a root the vault
//! accepted before stays payable, a withdrawal requested during the rotation is paid by the key
//! the vault holds when it is due (the new one), the departed group cannot propose another key,
//! and the vault holds exactly what the ledger owes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::eth_settlement::{EvmSchnorrSignature, VaultDomain};
use bridge::{AssetId, NetworkParams, UserTx, Withdraw};
use chains::da::DirDa;
use chains::ethereum::{EthDepositVerifier, OnchainRange, SubmitError, Submitter};
use common::coordinator_api::{balance, submit, until};
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::admin::propose::{ProposeError, propose, sign_key_rotation};
use confirmer::watchman::admin::{AdminAction, AdminMessage, AdminPolicy, ApprovalBook};
use confirmer::watchman::{EthSettlement, ReplayPolicy, SettlementBook, Watchman};
use contracts::harness::Setup;
use contracts::{Vault, from_alloy, to_alloy};
use coordinator::node::Node;
use tss::{GroupKey, TssNode};

/// Long enough for the whole test; expiry is the admin tests' subject, not this one's.
const APPROVAL_LIFETIME_S: u64 = 3_600;

/// One watchman in process: its replay, its operator's approvals, and (for the new set) its
/// settlement loop.
struct Member {
    watchman: Watchman,
    approvals: ApprovalBook,
}

struct Group {
    key: GroupKey,
    domain: VaultDomain,
    members: Vec<Member>,
    submitter: Submitter,
}

struct World {
    setup: Setup,
    params: NetworkParams,
    dir: tempfile::TempDir,
    vault: EthAddress,
}

impl World {
    fn submitter(&self) -> Submitter {
        Submitter::new(self.setup.provider.clone(), self.vault, self.setup.deployer)
    }
}

/// A key ceremony: a DKG among `n` fresh identities.
struct Keygen {
    identities: Vec<libp2p::identity::Keypair>,
    shares: Vec<tss::KeyShare>,
    key: GroupKey,
}

async fn keygen(n: usize, t: u16) -> Keygen {
    let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg_with_threshold(&identities, t).await;
    let key = GroupKey::of(&shares[0].public).unwrap();
    Keygen { identities, shares, key }
}

/// A watchman for each member of `keys` with a policy that signs what its replay justifies for
/// `epoch` and what its operator approved. `settles`: whether each runs the settlement loop.
async fn group(world: &World, name: &str, keys: Keygen, epoch: u64, settles: bool) -> Group {
    let Keygen { identities, shares, key } = keys;
    let domain = VaultDomain { chain_id: world.setup.chain_id, vault: from_alloy(world.vault), epoch };
    let running = entries(&identities);
    let mut members = Vec::new();
    for (i, (identity, share)) in identities.iter().zip(shares).enumerate() {
        let da = DirDa::open(world.dir.path().join("da"), world.params.coordinator_key).unwrap();
        let db = world.dir.path().join(format!("{name}-{i}.db"));
        let store = ConfirmerStore::open(&format!("sqlite://{}", db.display())).await.unwrap();
        let verifier = EthDepositVerifier::connect(
            &world.setup.anvil.url(),
            &Default::default(),
            world.params.eth_vault,
            chains::ethereum::Confirmation::Depth(1),
        )
        .unwrap();
        let verifiers = DepositVerifiers::none().with(bridge::Chain::Ethereum, Arc::new(verifier));
        let follower = Follower::open(Arc::new(da), store, world.params.clone(), verifiers).await.unwrap();
        let book = SettlementBook::default();
        let approvals = ApprovalBook::in_memory();
        let policy =
            ReplayPolicy::new(book.clone(), Some(domain)).with_admin(AdminPolicy::new(approvals.clone(), domain));
        let node = TssNode::start(tss_config(identity, &running, Some(share), Arc::new(policy))).await.unwrap();
        let eth = settles.then(|| EthSettlement::new(book.clone(), domain, world.submitter()));
        members.push(Member { watchman: Watchman::new(follower, book, node, eth), approvals });
    }
    Group { key, domain, members, submitter: world.submitter() }
}

impl Group {
    /// One turn of every member; the settlement errors of the turn.
    async fn step(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for member in &mut self.members {
            let report = member.watchman.step(64).await.unwrap();
            errors.extend(report.settle_error);
        }
        errors
    }

    /// Steps until every member has replayed batch `batch` as hard-final.
    async fn replay_to(&mut self, batch: u64) {
        for _ in 0..600 {
            self.step().await;
            if self.members.iter().all(|m| m.watchman.book().hard_final() >= batch) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the group never replayed batch {batch}");
    }

    /// Operators `who` approve `action` at the vault's current nonce, for `epoch`.
    async fn approve(&self, who: &[usize], action: &AdminAction, epoch: u64) -> AdminMessage {
        let nonce = self.submitter.admin_state().await.unwrap().admin_nonce;
        let domain = VaultDomain { epoch, ..self.domain };
        let message = AdminMessage::new(action.clone(), domain, nonce);
        for i in who {
            self.members[*i]
                .approvals
                .approve(message.clone(), confirmer::watchman::admin::now_s(), APPROVAL_LIFETIME_S)
                .unwrap();
        }
        message
    }

    async fn propose(&self, message: &AdminMessage) -> Result<(String, Vec<String>), ProposeError> {
        propose(&self.members[0].watchman.tss_shared(), &self.submitter, message).await
    }

    /// The group's root signature for the range from the vault's next batch up to `batch`,
    /// under its own epoch, submitted by hand (no payout).
    async fn submit_root(&self, batch: u64) -> Result<(), SubmitError> {
        let progress = self.submitter.progress().await?;
        // What each watchman's runner does every turn: read the vault's ranges from its node.
        for member in &self.members {
            member.watchman.book().note_vault(progress);
        }
        let first = progress.settled_through + 1;
        let root = self.members[0].watchman.book().range_tree(first, batch).unwrap().root();
        let request = EthSettlement::request(&self.domain, first, batch, root);
        let signed = self.members[0].watchman.tss().sign(vec![request]).await;
        let signature = signed.unwrap().signatures[0].signature;
        let sig = EvmSchnorrSignature::from_bip340(&signature).unwrap();
        self.submitter.submit_range(first, batch, root, &sig).await.map(|_| ())
    }
}

/// The range the vault holds that covers `batch`, if any.
async fn range_covering(submitter: &Submitter, batch: u64) -> Option<OnchainRange> {
    let progress = submitter.progress().await.unwrap();
    for number in 0..progress.range_count {
        let range = submitter.range(number).await.unwrap()?;
        if (range.first..=range.last).contains(&batch) {
            return Some(range);
        }
    }
    None
}

/// The root of the range the vault holds over `batch`; zero if none covers it yet.
async fn root_covering(submitter: &Submitter, batch: u64) -> [u8; 32] {
    range_covering(submitter, batch).await.map_or([0; 32], |range| range.root)
}

/// Requests a withdrawal of `amount` to `recipient` and waits for its batch to be published.
async fn withdraw(coordinator: &Node, p: &NetworkParams, nonce: u64, amount: u128, recipient: bridge::Address) {
    let user = wallet(1);
    let tx = UserTx::Withdraw(Withdraw {
        from: user.address(),
        asset: AssetId::Eth,
        amount: bridge::Amount(amount),
        fee: bridge::Amount(0),
        recipient: recipient.to_string(),
        nonce,
    });
    submit(coordinator, &user.sign(tx, &bridge::eip712::Domain::new(p))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_moves_to_the_new_group_and_pays_every_withdrawal_once() {
    // Two key ceremonies: the old set (2-of-3) and the new one (3-of-4).
    let old_keys = keygen(3, 2).await;
    let new_keys = keygen(4, 3).await;
    let new_key = new_keys.key.output_key;
    let new_internal_key = new_keys.key.internal_key;

    // The vault, deployed with the old group's key; the coordinator watching it.
    let setup = Setup::new().await.unwrap();
    let vault = Vault::deploy(setup.provider.clone(), U256::from_be_bytes(old_keys.key.output_key), setup.deployer)
        .await
        .unwrap();
    let mut p = params();
    p.btc_vault =
        Some(bridge::BtcVaultParams { group_key: old_keys.key.internal_key, min_fee_rate: 1, max_fee_rate: 100 });
    p.eth_vault = from_alloy(*vault.address());
    p.chain_id = setup.chain_id;
    let world = World { vault: *vault.address(), setup, params: p.clone(), dir: tempfile::tempdir().unwrap() };
    let coordinator = Node::start(&coordinator_watching(world.dir.path(), &p, world.setup.anvil.url())).await.unwrap();
    let user = wallet(1);
    vault
        .depositETH(to_alloy(user.address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let _: serde_json::Value = world.setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
    until("the deposit credited", async || {
        (balance(&coordinator, user.address(), AssetId::Eth).await == 1_000_000).then_some(())
    })
    .await;

    // The old set replays and signs, but pays by hand here, so that one root can be accepted
    // and left unpaid across the rotation.
    let mut old = group(&world, "old", old_keys, 0, false).await;
    let (r1, r2, r3) = (bridge::Address([0x51; 20]), bridge::Address([0x52; 20]), bridge::Address([0x53; 20]));
    withdraw(&coordinator, &p, 0, 100_000, r1).await;
    let w1 = until("the first withdrawal's batch", async || {
        old.step().await;
        old.members
            .iter()
            .all(|m| !m.watchman.book().owing_from(1).is_empty())
            .then(|| old.members[0].watchman.book().owing_from(1)[0].0)
    })
    .await;
    old.replay_to(w1).await;
    old.submit_root(w1).await.unwrap();
    let submitter = world.submitter();
    assert_ne!(root_covering(&submitter, w1).await, [0; 32], "the vault accepted the root under epoch 0");
    assert!(!submitter.is_paid(w1, 0).await.unwrap(), "and nothing is paid yet");

    // proposeKey: one old operator's approval (t − 1) is not enough; two are.
    let propose_key = AdminAction::ProposeKey { new_key };
    let message = old.approve(&[0], &propose_key, 0).await;
    match old.propose(&message).await {
        Err(ProposeError::NotSigned { refusals, .. }) => {
            assert!(refusals.iter().all(|r| r.code == "not-approved"), "{refusals:?}")
        }
        other => panic!("t − 1 approvals must not sign proposeKey: {other:?}"),
    }
    old.approve(&[1], &propose_key, 0).await;
    old.propose(&message).await.unwrap();
    let state = submitter.admin_state().await.unwrap();
    assert_eq!((state.key_epoch, state.pending_key), (0, new_key), "proposed, not yet accepted");

    // The ledger's KeyRotation: signed by the old group only with t approvals of exactly it, then
    // carried by the coordinator; a rotation signed by anyone else is refused there.
    let rotate_ledger = AdminAction::KeyRotation {
        network: p.genesis_hash(),
        old_key: old.key.output_key,
        new_key: new_internal_key,
        roster_hash: [0x77; 32],
    };
    let message = old.approve(&[2], &rotate_ledger, 1).await;
    let tss = old.members[2].watchman.tss_shared();
    assert!(matches!(sign_key_rotation(&tss, &message).await, Err(ProposeError::NotSigned { .. })), "t − 1");
    old.approve(&[0], &rotate_ledger, 1).await;
    let (rotation, _) = sign_key_rotation(&tss, &message).await.unwrap();
    assert_eq!((rotation.epoch, rotation.output_key), (1, new_key));
    let http = reqwest::Client::new();
    let mut forged = rotation.clone();
    forged.signature[5] ^= 1;
    let refused = http.post(format!("{}/key-rotation", coordinator.url())).json(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rotation_not_signed_by_group", "{body}");
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
    until("the old watchmen replay the rotation", async || {
        old.step().await;
        let state = old.members[0].watchman.follower().state();
        // The rotation's batch replayed: the next one is `from_batch`.
        (state.head().next_number >= from_batch).then(|| bridge::rotation::key_at(state, from_batch).unwrap())
    })
    .await;
    let active = bridge::rotation::key_at(old.members[1].watchman.follower().state(), from_batch).unwrap();
    assert_eq!((active.epoch, active.key.internal_key, active.key.output_key), (1, new_internal_key, new_key));

    // A withdrawal requested during the rotation, between proposeKey and acceptKey.
    withdraw(&coordinator, &p, 1, 200_000, r2).await;
    let w2 = until("the second withdrawal's batch", async || {
        old.step().await;
        old.members[0].watchman.book().owing_from(w1 + 1).first().map(|(n, _)| *n)
    })
    .await;
    assert_eq!(root_covering(&submitter, w2).await, [0; 32], "not settled during the rotation");

    // The new set's watchmen, each with its own replay and its operator's approvals.
    let mut new = group(&world, "new", new_keys, 1, true).await;
    // acceptKey: signed by the new group with three of its four operators' approvals.
    let accept_key = AdminAction::AcceptKey { new_key };
    let message = new.approve(&[0, 1], &accept_key, 1).await;
    assert!(matches!(new.propose(&message).await, Err(ProposeError::NotSigned { .. })), "t − 1 new approvals");
    new.approve(&[2], &accept_key, 1).await;
    new.propose(&message).await.unwrap();
    let state = submitter.admin_state().await.unwrap();
    assert_eq!((state.key_epoch, state.pending_key), (1, [0; 32]), "the vault holds the new key");

    // The new set follows and settles: the root accepted under epoch 0 stays payable, and the
    // withdrawal requested during the rotation is paid under the key the vault holds when it is
    // paid, the new one.
    assert!(!submitter.is_paid(w1, 0).await.unwrap());
    until("both withdrawals paid", async || {
        new.step().await;
        let paid_1 = world.setup.balance(EthAddress::from(r1.0)).await.unwrap();
        let paid_2 = world.setup.balance(EthAddress::from(r2.0)).await.unwrap();
        (paid_1 > U256::ZERO && paid_2 > U256::ZERO).then_some(())
    })
    .await;
    assert_eq!(world.setup.balance(EthAddress::from(r1.0)).await.unwrap(), U256::from(100_000u64));
    assert_eq!(world.setup.balance(EthAddress::from(r2.0)).await.unwrap(), U256::from(200_000u64));
    let range = range_covering(&submitter, w2).await.unwrap();
    assert_eq!(range.root, new.members[0].watchman.book().range_tree(range.first, range.last).unwrap().root());

    // After the rotation the departed group gets nothing accepted: a root it signs under epoch
    // 0 for a new withdrawal is refused, and so is another proposeKey with its approvals.
    withdraw(&coordinator, &p, 2, 300_000, r3).await;
    let w3 = until("the third withdrawal's batch", async || {
        old.step().await;
        old.members[0].watchman.book().owing_from(w2 + 1).first().map(|(n, _)| *n)
    })
    .await;
    old.replay_to(w3).await;
    match old.submit_root(w3).await {
        Err(SubmitError::Refused(why)) => assert!(format!("{why:?}").contains("InvalidSignature"), "{why:?}"),
        other => panic!("a root signed under the old epoch must be refused: {other:?}"),
    }
    let again = AdminAction::ProposeKey { new_key: old.key.output_key };
    let message = old.approve(&[0, 1], &again, 0).await;
    assert!(matches!(old.propose(&message).await, Err(ProposeError::VaultRefused { .. })), "the old epoch is over");
    let message = old.approve(&[0, 1], &again, 1).await;
    assert!(matches!(old.propose(&message).await, Err(ProposeError::VaultRefused { .. })), "not the vault's key");

    // The new group pays it; every withdrawal once, and the vault holds what the ledger owes.
    until("the third withdrawal paid", async || {
        new.step().await;
        (world.setup.balance(EthAddress::from(r3.0)).await.unwrap() > U256::ZERO).then_some(())
    })
    .await;
    assert_eq!(world.setup.balance(EthAddress::from(r3.0)).await.unwrap(), U256::from(300_000u64));
    for _ in 0..3 {
        new.step().await;
    }
    let owed = balance(&coordinator, user.address(), AssetId::Eth).await;
    assert_eq!(owed, 400_000);
    assert_eq!(world.setup.balance(world.vault).await.unwrap(), U256::from(owed), "solvency is exact");
    let report = confirmer::solvency::SolvencyWatch {
        eth_rpc: Some(world.setup.anvil.url()),
        btc: None,
        btc_depth: 1,
        tls: Default::default(),
    }
    .check(new.members[0].watchman.follower().state())
    .await
    .unwrap();
    assert_eq!((report[0].owed, report[0].held, report[0].shortfall()), (400_000, 400_000, 0));
    coordinator.shutdown().await;
}
