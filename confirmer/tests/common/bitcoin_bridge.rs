//! A bridge with a Bitcoin vault on the regtest node (Bitcoin Core's kernel): the node with
//! mature coinbase money, and a coordinator whose vault is the watchmen's group key, watching
//! deposits and planning payouts at depth 1.

use std::sync::Arc;

use bridge::{AssetConfig, AssetId, BtcVaultParams, Chain, NetworkParams, UserTx, Withdraw};
use chains::bitcoin::{CoreRpc, DepositChecker};
use chains::da::DirDa;
use chains::task::{Schedule, Supervisor};
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::{BUMP_CLOCK_TASK, BtcPayouts, BumpClock, ReplayPolicy, SettlementBook, Watchman};
use coordinator::node::Node;
use regtest::{RegtestConfig, RegtestNode};
use tss::TssNode;

#[allow(unused_imports)] // not every test pays out
pub use super::btc::{Miner, recipient};
pub use super::coordinator_api::{balance, submit, until};
use super::{coordinator_config, params, tss_config, wallet};

pub struct BitcoinBridge {
    pub node: RegtestNode,
    pub rpc: CoreRpc,
    pub miner: Miner,
    pub dir: tempfile::TempDir,
    pub params: NetworkParams,
    pub vault: BtcVaultParams,
    pub coordinator: Node,
}

impl BitcoinBridge {
    pub async fn start(group_key: [u8; 32]) -> Self {
        let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
        let rpc = CoreRpc::new(node.url(), node.user(), node.password());
        let miner = Miner::new();
        rpc.generate_to_address(110, &miner.address).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let vault = BtcVaultParams { group_key, min_fee_rate: 1, max_fee_rate: 50 };
        let mut p = params();
        p.btc_vault = Some(vault);
        p.assets = vec![
            AssetConfig { asset: AssetId::Eth, min_fee: bridge::Amount(0) },
            AssetConfig { asset: AssetId::Btc, min_fee: bridge::Amount(0) },
        ];
        let mut config = coordinator_config(dir.path(), &p);
        config.bitcoin.rpc = Some(node.url());
        config.bitcoin.rpc_user = node.user().into();
        config.bitcoin.rpc_password = node.password().into();
        config.bitcoin.depth = 1;
        config.bitcoin.poll_ms = 100;
        let coordinator = Node::start(&config).await.unwrap();
        BitcoinBridge { node, rpc, miner, dir, params: p, vault, coordinator }
    }
}

/// Wallet 1 asks for its deposit address, deposits 0.05 BTC (credited by the coordinator's
/// watcher at depth 1), and withdraws 0.02 BTC to `to` with a 10,000 sat fee.
pub async fn deposit_and_withdraw(
    coordinator: &Node,
    rpc: &CoreRpc,
    miner: &Miner,
    p: &NetworkParams,
    to: &bitcoin::Address,
) {
    let user = wallet(1);
    let answer: serde_json::Value =
        reqwest::get(format!("{}/accounts/{}/btc-deposit-address", coordinator.url(), user.address()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let address: bitcoin::Address = answer["address"]
        .as_str()
        .unwrap()
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap();
    miner.pay(rpc, 1, &address, bitcoin::Amount::from_sat(5_000_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    until("the deposit to be credited", async || {
        (balance(coordinator, user.address(), AssetId::Btc).await == 5_000_000).then_some(())
    })
    .await;
    let withdraw = UserTx::Withdraw(Withdraw {
        from: user.address(),
        asset: AssetId::Btc,
        amount: bridge::Amount(2_000_000),
        fee: bridge::Amount(10_000),
        recipient: to.to_string(),
        nonce: 0,
    });
    submit(coordinator, &user.sign(withdraw, &bridge::eip712::Domain::new(p))).await;
}

/// A follower of the bridge's DA in `dir` (its record in `db`) that checks Bitcoin facts
/// against `rpc` at depth 1.
pub async fn bitcoin_follower(dir: &std::path::Path, p: &NetworkParams, rpc: &CoreRpc, db: &str) -> Follower {
    let vault = p.btc_vault.unwrap();
    let da = DirDa::open(dir.join("da"), p.coordinator_key).unwrap();
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.join(db).display())).await.unwrap();
    let key = bitcoin::key::XOnlyPublicKey::from_slice(&vault.group_key).unwrap();
    let checker = DepositChecker::new(rpc.clone(), p.btc_network, key, 1);
    let verifiers = DepositVerifiers::none().with(Chain::Bitcoin, Arc::new(checker));
    Follower::open(Arc::new(da), store, p.clone(), verifiers).await.unwrap()
}

/// Watchman `i`: its own follower checking Bitcoin facts against the node, book, policy and
/// node; `pays` if it broadcasts payouts (bumping after 3 blocks).
pub async fn start_watchman(
    i: usize,
    identity: &libp2p::identity::Keypair,
    running: &[tss::mesh::PeerEntry],
    share: &tss::KeyShare,
    (dir, p, rpc): (&std::path::Path, &NetworkParams, &CoreRpc),
    pays: bool,
) -> Watchman {
    let vault = p.btc_vault.unwrap();
    let follower = bitcoin_follower(dir, p, rpc, &format!("w{i}.db")).await;
    let book = SettlementBook::default();
    // Its bump clock reads its node every 100 ms: bumps are signed only after 3 blocks there.
    let clock = BumpClock::new(3);
    let refresh = clock.task(rpc.clone(), book.clone(), vault, p.btc_network);
    Supervisor::new().spawn(BUMP_CLOCK_TASK, refresh, Schedule::every(std::time::Duration::from_millis(100)));
    let policy =
        Arc::new(ReplayPolicy::new(book.clone(), None).with_bitcoin(vault, p.btc_network).with_bump_clock(clock));
    let node = TssNode::start(tss_config(identity, running, Some(share.clone()), policy)).await.unwrap();
    let watchman = Watchman::new(follower, book.clone(), node, None);
    if pays { watchman.with_bitcoin(BtcPayouts::new(book, vault, p.btc_network, rpc.clone(), 3)) } else { watchman }
}
