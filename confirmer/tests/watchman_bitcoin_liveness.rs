//! Bitcoin payouts stay live whatever one plan does: three watchmen (2-of-3, a real DKG over
//! libp2p on 127.0.0.1), each replaying the DA with its own replay policy and bump clock on the
//! regtest node (Bitcoin Core's kernel). The ledger here is sealed by the test with the
//! coordinator's key and published to a directory DA, so each case controls exactly which plans
//! exist. The paying watchman talks to the node through [`CongestedNode`], a test double for a
//! node whose mempool refuses or silently drops chosen transactions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::Hash;
use bridge::batch::BatchBuilder;
use bridge::btc_payout::PayoutPlan;
use bridge::tx::{Deposit, L1Ref, SystemTx, UserTx, Withdraw};
use bridge::{Amount, AssetConfig, AssetId, BtcVaultParams, Chain, NetworkParams, State, Tx};
use chains::bitcoin::{CoreRpc, DepositChecker, PayoutBroadcaster, PayoutStatus, deposit_address};
use chains::da::{DataAvailability, DirDa};
use chains::task::{Schedule, Supervisor};
use common::btc::{Miner, recipient};
use common::coordinator_api::until;
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::{
    BUMP_CLOCK_TASK, BtcPayouts, BumpClock, PayoutAction, ReplayPolicy, SettlementBook, Watchman,
};
use regtest::{RegtestConfig, RegtestNode};
use tss::{GroupKey, TssNode};

const BUMP_AFTER_BLOCKS: u64 = 3;
const BUMP_BLOCKS: u32 = BUMP_AFTER_BLOCKS as u32;

/// What the congested node does with `sendrawtransaction` of chosen txids.
#[derive(Debug, Default)]
struct Congestion {
    /// Answered "mempool min fee not met" (Core's code -26), never forwarded.
    refuse: BTreeSet<bitcoin::Txid>,
    /// Answered as accepted, never forwarded: the node "saw" it and forgot (evicted).
    drop: BTreeSet<bitcoin::Txid>,
}

/// A JSON-RPC proxy in front of the regtest node that plays a congested mempool for chosen
/// transactions and forwards everything else unchanged.
struct CongestedNode {
    url: String,
    congestion: Arc<Mutex<Congestion>>,
}

impl CongestedNode {
    async fn start(node: &RegtestNode) -> Self {
        use axum::extract::State as AxState;
        use axum::http::HeaderMap;
        let congestion = Arc::new(Mutex::new(Congestion::default()));
        let upstream = node.url();
        let state = (congestion.clone(), upstream, reqwest::Client::new());
        type Shared = (Arc<Mutex<Congestion>>, String, reqwest::Client);
        async fn forward(
            AxState((congestion, upstream, client)): AxState<Shared>,
            headers: HeaderMap,
            body: String,
        ) -> String {
            let request: serde_json::Value = serde_json::from_str(&body).unwrap();
            if request["method"] == "sendrawtransaction" {
                let raw = hex::decode(request["params"][0].as_str().unwrap()).unwrap();
                let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
                let txid = tx.compute_txid();
                let (refuse, drop) = {
                    let c = congestion.lock().unwrap();
                    (c.refuse.contains(&txid), c.drop.contains(&txid))
                };
                let id = request["id"].clone();
                if refuse {
                    let error = serde_json::json!({"code": -26, "message": "mempool min fee not met"});
                    return serde_json::json!({"result": null, "error": error, "id": id}).to_string();
                }
                if drop {
                    return serde_json::json!({"result": txid.to_string(), "error": null, "id": id}).to_string();
                }
            }
            let mut forwarded = client.post(&upstream).body(body);
            if let Some(auth) = headers.get("authorization") {
                forwarded = forwarded.header("authorization", auth.to_str().unwrap());
            }
            forwarded.send().await.unwrap().text().await.unwrap()
        }
        let app = axum::Router::new().route("/", axum::routing::post(forward)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CongestedNode { url, congestion }
    }

    fn rpc(&self, node: &RegtestNode) -> CoreRpc {
        CoreRpc::new(self.url.clone(), node.user(), node.password())
    }

    fn refuse(&self, txids: impl IntoIterator<Item = bitcoin::Txid>) {
        self.congestion.lock().unwrap().refuse.extend(txids);
    }

    fn drop_silently(&self, txids: impl IntoIterator<Item = bitcoin::Txid>) {
        self.congestion.lock().unwrap().drop.extend(txids);
    }
}

/// The ledger as the coordinator would keep it: sealed with its key, published to the DA.
struct Ledger {
    state: State,
    da: DirDa,
    nonces: std::collections::BTreeMap<u64, u64>,
    timestamp: u64,
}

impl Ledger {
    async fn seal(&mut self, txs: Vec<Tx>) -> Vec<PayoutPlan> {
        let mut builder = BatchBuilder::new(&self.state);
        for tx in txs {
            builder.apply(&mut self.state, tx).unwrap();
        }
        self.timestamp += 1;
        let sealed = builder.seal(&mut self.state, self.timestamp, &key()).unwrap();
        self.da.publish(&sealed.batch).await.unwrap();
        sealed.settlement.btc_plans.clone()
    }

    fn withdraw(&mut self, from: u64, amount_sat: u64, fee_sat: u64) -> Tx {
        let domain = self.state.domain().clone();
        let nonce = self.nonces.entry(from).or_default();
        let tx = UserTx::Withdraw(Withdraw {
            from: wallet(from).address(),
            asset: AssetId::Btc,
            amount: Amount(amount_sat.into()),
            fee: Amount(fee_sat.into()),
            recipient: recipient().to_string(),
            nonce: *nonce,
        });
        *nonce += 1;
        Tx::User(wallet(from).sign(tx, &domain).verify(&domain).unwrap())
    }
}

struct Harness {
    node: RegtestNode,
    rpc: CoreRpc,
    miner: Miner,
    /// The next mature coinbase the miner pays from.
    coinbase: u64,
    params: NetworkParams,
    vault: BtcVaultParams,
    ledger: Ledger,
    watchmen: Vec<Watchman>,
    clocks: Vec<BumpClock>,
    congested: CongestedNode,
    /// What the payer did while replaying, not yet looked at by [`Harness::pay_until`].
    seen: Vec<PayoutAction>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Three watchmen; if `pays`, watchman 0 pays through the congested node.
    async fn start(pays: bool) -> Self {
        let _ = tracing_subscriber::fmt().with_env_filter("info,libp2p=warn").with_test_writer().try_init();
        let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
        let shares = dkg(&identities).await;
        let group = GroupKey::of(&shares[0].public).unwrap();
        let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
        let rpc = CoreRpc::new(node.url(), node.user(), node.password());
        let miner = Miner::new();
        rpc.generate_to_address(130, &miner.address).await.unwrap();
        let vault = BtcVaultParams { group_key: group.internal_key, min_fee_rate: 1, max_fee_rate: 50 };
        let mut p = params();
        p.btc_vault = Some(vault);
        p.assets = vec![
            AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) },
            AssetConfig { asset: AssetId::Btc, min_fee: Amount(0) },
        ];
        let dir = tempfile::tempdir().unwrap();
        let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
        let ledger =
            Ledger { state: State::genesis(p.clone()), da: da.clone(), nonces: Default::default(), timestamp: 1 };
        let congested = CongestedNode::start(&node).await;
        let running = entries(&identities);
        let (mut watchmen, mut clocks) = (Vec::new(), Vec::new());
        for (i, identity) in identities.iter().enumerate() {
            let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join(format!("w{i}.db")).display()))
                .await
                .unwrap();
            let key = bitcoin::key::XOnlyPublicKey::from_slice(&vault.group_key).unwrap();
            let checker = DepositChecker::new(rpc.clone(), p.btc_network, key, 1);
            let verifiers = DepositVerifiers::none().with(Chain::Bitcoin, Arc::new(checker));
            let follower = Follower::open(Arc::new(da.clone()), store, p.clone(), verifiers).await.unwrap();
            let book = SettlementBook::default();
            // Each watchman's clock reads its own node directly, never through the payer's.
            let clock = BumpClock::new(BUMP_AFTER_BLOCKS);
            let refresh = clock.task(rpc.clone(), book.clone(), vault, p.btc_network);
            Supervisor::new().spawn(BUMP_CLOCK_TASK, refresh, Schedule::every(Duration::from_millis(100)));
            let policy =
                ReplayPolicy::new(book.clone(), None).with_bitcoin(vault, p.btc_network).with_bump_clock(clock.clone());
            let tss = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), Arc::new(policy)))
                .await
                .unwrap();
            let mut watchman = Watchman::new(follower, book.clone(), tss, None);
            if i == 0 && pays {
                let paying = congested.rpc(&node);
                watchman =
                    watchman.with_bitcoin(BtcPayouts::new(book, vault, p.btc_network, paying, BUMP_AFTER_BLOCKS));
            }
            watchmen.push(watchman);
            clocks.push(clock);
        }
        Harness {
            node,
            rpc,
            miner,
            coinbase: 1,
            params: p,
            vault,
            ledger,
            watchmen,
            clocks,
            congested,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// A real deposit of `sat` to wallet `n`'s address, mined; the ledger's Deposit for it.
    async fn deposit(&mut self, n: u64, sat: u64) -> Tx {
        let group = bitcoin::key::XOnlyPublicKey::from_slice(&self.vault.group_key).unwrap();
        let account = wallet(n).address();
        let to = deposit_address(group, self.params.btc_network, &account);
        let paid = self.miner.pay(&self.rpc, self.coinbase, &to, bitcoin::Amount::from_sat(sat)).await;
        self.coinbase += 1;
        let vout = paid.output.iter().position(|o| o.script_pubkey == to.script_pubkey()).unwrap() as u32;
        let l1_ref = L1Ref::Bitcoin { txid: paid.compute_txid().to_byte_array(), vout };
        Tx::System(SystemTx::Deposit(Deposit {
            chain: Chain::Bitcoin,
            l1_ref,
            account,
            asset: AssetId::Btc,
            amount: Amount(sat.into()),
            l1_height: 0,
        }))
    }

    async fn mine(&self, blocks: u32) {
        self.rpc.generate_to_address(blocks, &self.miner.address).await.unwrap();
    }

    /// Blocks without the mempool's transactions: the payouts in it stay unconfirmed.
    async fn mine_empty(&self, blocks: u32) {
        let tip = self.rpc.block_hash(self.rpc.block_count().await.unwrap()).await.unwrap();
        common::btc::mine_branch(&self.node, tip, blocks, &self.miner.address).await;
    }

    /// Every watchman replays until `plans` are hard-final in its book (the payer may pay them
    /// meanwhile).
    async fn replay_until_planned(&mut self, plans: &[u64]) {
        for w in 0..self.watchmen.len() {
            let watchman = &mut self.watchmen[w];
            let seen = &mut self.seen;
            until("the plans to be hard-final", async || {
                seen.extend(watchman.step(64).await.unwrap().payouts);
                let known: BTreeSet<u64> =
                    watchman.book().owing_from(1).iter().flat_map(|(_, s)| s.btc_plans.iter().map(|p| p.id)).collect();
                plans.iter().all(|p| known.contains(p)).then_some(())
            })
            .await;
        }
    }

    /// Every bump clock has read the node at its current height.
    async fn clocks_at_tip(&self) {
        let height = self.rpc.block_count().await.unwrap();
        until("the bump clocks to read the tip", async || {
            self.clocks.iter().all(|c| c.tip() == Some(height)).then_some(())
        })
        .await;
    }

    /// The payer's turns until `found` picks something from the actions.
    async fn pay_until<T>(&mut self, what: &str, mut found: impl FnMut(&[PayoutAction]) -> Option<T>) -> T {
        if let Some(done) = found(&std::mem::take(&mut self.seen)) {
            return done;
        }
        let payer = &mut self.watchmen[0];
        until(what, async || {
            let report = payer.step(64).await.unwrap();
            found(&report.payouts)
        })
        .await
    }

    fn txids(&self, plan: &PayoutPlan) -> Vec<bitcoin::Txid> {
        PayoutBroadcaster::new(self.rpc.clone(), self.vault, self.params.btc_network)
            .attempt_txids(plan)
            .into_iter()
            .map(|(_, txid)| txid)
            .collect()
    }

    async fn status(&self, plan: &PayoutPlan) -> PayoutStatus {
        PayoutBroadcaster::new(self.rpc.clone(), self.vault, self.params.btc_network).status(plan).await.unwrap()
    }
}

fn broadcast_of(actions: &[PayoutAction], plan: u64) -> Option<u32> {
    actions.iter().find_map(|a| match a {
        PayoutAction::Broadcast { plan: p, attempt, .. } if *p == plan => Some(*attempt),
        _ => None,
    })
}

/// Two plans, each funded by its own deposit: wallet 1 and 2 withdraw 1M sat (10k fee) each.
/// Sealed and published, not yet replayed.
async fn two_independent_plans(h: &mut Harness) -> (PayoutPlan, PayoutPlan) {
    let d1 = h.deposit(1, 5_000_000).await;
    let d2 = h.deposit(2, 4_000_000).await;
    h.mine(1).await;
    let w1 = h.ledger.withdraw(1, 1_000_000, 10_000);
    let first = h.ledger.seal(vec![d1, d2, w1, Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 })]).await;
    let w2 = h.ledger.withdraw(2, 1_000_000, 10_000);
    let second = h.ledger.seal(vec![w2, Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 })]).await;
    let (first, second) = (first[0].clone(), second[0].clone());
    assert_ne!(first.inputs, second.inputs, "independent plans spend different outputs");
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_the_mempool_refused_or_never_saw_is_bumped_after_bump_after_blocks() {
    let mut h = Harness::start(true).await;
    let (dropped, refused) = two_independent_plans(&mut h).await;
    // The congested node swallows plan 1's first attempt and refuses plan 2's.
    h.congested.drop_silently(h.txids(&dropped).into_iter().take(1));
    h.congested.refuse(h.txids(&refused).into_iter().take(1));
    h.replay_until_planned(&[dropped.id, refused.id]).await;

    // Both first attempts are signed; neither reaches the mempool.
    h.clocks_at_tip().await;
    let mut sent = BTreeSet::new();
    h.pay_until("both first attempts to be signed", |actions| {
        sent.extend(actions.iter().filter_map(|a| match a {
            PayoutAction::Broadcast { plan, attempt: 0, .. } => Some(*plan),
            PayoutAction::Failed { plan, reason } if reason.contains("min fee") => Some(*plan),
            _ => None,
        }));
        (sent.len() == 2).then_some(())
    })
    .await;
    assert_eq!(h.status(&dropped).await, PayoutStatus::Unseen);
    assert_eq!(h.status(&refused).await, PayoutStatus::Unseen);

    // After bump_after_blocks blocks without them, each is bumped (the old loop re-sent
    // attempt 0 forever), and the watchmen sign the bumps from their own nodes' heights.
    h.mine(BUMP_BLOCKS).await;
    h.clocks_at_tip().await;
    let mut bumped = BTreeSet::new();
    h.pay_until("both plans to be bumped", |actions| {
        bumped.extend([dropped.id, refused.id].into_iter().filter(|p| broadcast_of(actions, *p) == Some(1)));
        (bumped.len() == 2).then_some(())
    })
    .await;
    h.mine(1).await;
    assert_eq!(h.status(&dropped).await, PayoutStatus::Confirmed { attempt: 1, confirmations: 1 });
    assert_eq!(h.status(&refused).await, PayoutStatus::Confirmed { attempt: 1, confirmations: 1 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_that_can_never_be_broadcast_does_not_hold_up_the_plans_behind_it() {
    let mut h = Harness::start(true).await;
    let (stuck, behind) = two_independent_plans(&mut h).await;
    // Every attempt of plan 1 is refused, for good.
    h.congested.refuse(h.txids(&stuck));
    h.replay_until_planned(&[stuck.id, behind.id]).await;
    h.clocks_at_tip().await;

    let mut failed = false;
    h.pay_until("the plan behind the stuck one to be broadcast", |actions| {
        failed |= actions.iter().any(|a| matches!(a, PayoutAction::Failed { plan, .. } if *plan == stuck.id));
        broadcast_of(actions, behind.id)
    })
    .await;
    assert!(failed, "the stuck plan was reported");
    h.mine(1).await;
    assert_eq!(h.status(&behind).await, PayoutStatus::Confirmed { attempt: 0, confirmations: 1 });
    assert_eq!(h.status(&stuck).await, PayoutStatus::Unseen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_bump_is_signed_only_when_the_signers_own_node_shows_the_last_attempt_unconfirmed_for_bump_after_blocks()
{
    // Nobody pays on their own here: the test is the requester.
    let mut h = Harness::start(false).await;
    let d1 = h.deposit(1, 5_000_000).await;
    h.mine(1).await;
    let w1 = h.ledger.withdraw(1, 1_000_000, 10_000);
    let plans = h.ledger.seal(vec![d1, w1, Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 })]).await;
    let plan = plans[0].clone();
    let batch = plan.batch;
    h.replay_until_planned(&[plan.id]).await;
    h.clocks_at_tip().await;
    let sign = |attempt: u32| {
        let unsigned = plan.build(&bridge::VaultKeys::genesis(h.vault), h.params.btc_network, attempt).unwrap();
        let requests = BtcPayouts::requests(batch, &plan, &unsigned);
        let tss = h.watchmen[2].tss();
        async move { tss.sign(requests).await.map(|outcome| (unsigned, outcome)) }
    };

    // Attempt 0 is signed and sent.
    let (unsigned, outcome) = sign(0).await.unwrap();
    let signatures: Vec<[u8; 64]> = unsigned
        .sighashes
        .iter()
        .map(|m| outcome.signatures.iter().find(|s| s.request.message == m.to_vec()).unwrap().signature)
        .collect();
    h.rpc.send_raw_transaction(&unsigned.with_signatures(&signatures)).await.unwrap();
    // A requester asking for the bump at once is refused by every watchman (the old policy
    // signed any attempt up to 15 on request).
    assert!(sign(1).await.is_err(), "a bump was signed with attempt 0 just sent");
    // One block later, still too early by the signers' own nodes.
    h.mine_empty(1).await;
    h.clocks_at_tip().await;
    assert!(sign(1).await.is_err(), "a bump was signed one block after attempt 0");
    // bump_after_blocks blocks with attempt 0 unconfirmed: the bump is signed.
    h.mine_empty(BUMP_BLOCKS - 1).await;
    h.clocks_at_tip().await;
    let (bump, outcome) = sign(1).await.unwrap();
    let signatures: Vec<[u8; 64]> = bump
        .sighashes
        .iter()
        .map(|m| outcome.signatures.iter().find(|s| s.request.message == m.to_vec()).unwrap().signature)
        .collect();
    h.rpc.send_raw_transaction(&bump.with_signatures(&signatures)).await.unwrap();
    // Once the node shows it confirmed, no further bump is signed, however long one waits.
    h.mine(1).await;
    until("the clocks to see the confirmation", async || {
        h.clocks.iter().all(|c| c.is_confirmed(plan.id)).then_some(())
    })
    .await;
    h.mine_empty(BUMP_BLOCKS).await;
    h.clocks_at_tip().await;
    assert!(sign(2).await.is_err(), "a bump was signed for a confirmed plan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_consolidates_small_outputs_at_a_low_fee_from_its_surplus_signed_by_each_watchmans_replay() {
    let mut h = Harness::start(true).await;
    // A payout leaves surplus: the user paid 20k sat of fee, the miners take a few hundred.
    let big = h.deposit(1, 5_000_000).await;
    h.mine(1).await;
    let w = h.ledger.withdraw(1, 1_000_000, 20_000);
    let plans = h.ledger.seal(vec![big, w, Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 1 })]).await;
    let payout = plans[0].clone();
    h.replay_until_planned(&[payout.id]).await;
    h.clocks_at_tip().await;
    h.pay_until("the payout", |actions| broadcast_of(actions, payout.id)).await;
    h.mine(1).await;
    h.ledger.seal(vec![Tx::System(SystemTx::BtcPayoutConfirmed { plan: payout.id, attempt: 0, height: 0 })]).await;

    // Twelve small deposits.
    let mut deposits = Vec::new();
    for n in 0..12 {
        deposits.push(h.deposit(10 + n, 20_000 + n * 1_000).await);
    }
    h.mine(1).await;
    h.ledger.seal(deposits).await;
    let before = h.ledger.state.vault_utxos().count();
    assert_eq!(before, 13, "the payout's change and twelve deposits");
    let holdings = h.ledger.state.btc_vault_holdings_sat();
    // Not when fees are high: the ceiling is 4 × the network's minimum rate.
    // (A refused transaction leaves the state as it was.)
    let high = bridge::apply(&mut h.ledger.state, &Tx::System(SystemTx::BtcConsolidationPlan { fee_rate: 5 }));
    assert!(matches!(high, Err(bridge::TxError::ConsolidationFeeRate { got: 5, max: 4 })), "{high:?}");
    let plans = h.ledger.seal(vec![Tx::System(SystemTx::BtcConsolidationPlan { fee_rate: 1 })]).await;
    let merge = plans[0].clone();
    // The twelve deposits; the payout's change (the larger half of the vault) stays out, free
    // to pay withdrawals while the consolidation waits to confirm.
    assert!(merge.is_consolidation() && merge.inputs.len() == 12, "{merge:?}");
    assert!(merge.budget_sat <= 20_000, "paid from the surplus");

    // Each watchman rebuilds it from its own replay and signs it under the same policy.
    h.replay_until_planned(&[merge.id]).await;
    h.clocks_at_tip().await;
    h.pay_until("the consolidation", |actions| broadcast_of(actions, merge.id)).await;
    h.mine(1).await;
    assert_eq!(h.status(&merge).await, PayoutStatus::Confirmed { attempt: 0, confirmations: 1 });
    h.ledger.seal(vec![Tx::System(SystemTx::BtcPayoutConfirmed { plan: merge.id, attempt: 0, height: 0 })]).await;
    for w in 0..3 {
        let watchman = &mut h.watchmen[w];
        until("the consolidation's confirmation to be replayed", async || {
            watchman.step(64).await.unwrap();
            (watchman.follower().state().vault_utxos().count() == 2).then_some(())
        })
        .await;
        assert!(watchman.follower().status().alarms.is_empty(), "{:?}", watchman.follower().status().alarms);
    }
    let state = &h.ledger.state;
    let fee = merge.build(&bridge::VaultKeys::genesis(h.vault), h.params.btc_network, 0).unwrap().fee_sat;
    assert_eq!(state.btc_vault_holdings_sat(), holdings - fee, "only the miners' fee left the vault");
    let owed = state.supply(&AssetId::Btc).liabilities.units();
    assert!(u128::from(state.btc_vault_holdings_sat()) >= owed, "solvency holds after the consolidation");
}
