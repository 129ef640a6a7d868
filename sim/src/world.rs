//! One simulated network and its run: the coordinator (the real sequencer, ledger and publisher
//! on SQLite), confirmers (the real follower and its store on SQLite), users, the simulated
//! Arweave and Ethereum, and the faults the seed chooses. Time moves in ticks of simulated time;
//! every role acts in a fixed order within a tick, so a seed replays exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge::tx::{SystemTx, Transfer, UserTx, Withdraw};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, Chain, CoordinatorKey, Deposit, L1Ref, NetworkParams,
    SignedUserTx, Tx, Wallet,
};
use chains::da::DataAvailability;
use chains::snapshots::SnapshotPolicy;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use coordinator::publisher::Publisher;
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;

use crate::arweave::{Arweave, BLOCK_MS, SimDa};
use crate::byzantine::Attack;
use crate::l1::{L1, LaggingNode};
use crate::rng::SimRng;
use crate::{SimConfig, SimError, Violation};

/// The confirmers' wait before a gap is `missing_batch`: the binary's default (600 s).
pub const MISSING_BATCH_WAIT: Duration = Duration::from_secs(600);
/// The open batch is sealed at this many transactions or this age (the coordinator's policy).
const SEAL_AT_TXS: usize = 32;
const SEAL_AFTER_MS: u64 = 10_000;
/// Batches a follower takes per step (its binary's default page).
const STEP_LIMIT: usize = 16;
/// Users stop this long before the end, so that what they did can become hard-final.
pub const QUIET_BEFORE_END_MS: u64 = 15 * 60_000;
/// One ether in wei: deposits are whole ethers, transfers fractions of one.
const ETHER: u128 = 1_000_000_000_000_000_000;

pub(crate) struct CoordinatorRole {
    url: String,
    pub(crate) sequencer: Option<Sequencer>,
    pub(crate) publisher: Option<Publisher>,
    pub(crate) store: Option<Store>,
    pub(crate) down_until: Option<u64>,
    opened_ms: Option<u64>,
}

pub(crate) struct ConfirmerRole {
    url: String,
    pub(crate) follower: Option<Follower>,
    pub(crate) down_until: Option<u64>,
    stalled_until: Option<u64>,
    lag_blocks: Arc<AtomicU64>,
    lag_until: Option<u64>,
}

/// A transaction the coordinator acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    pub(crate) account: Address,
}

pub(crate) struct World {
    pub(crate) config: SimConfig,
    pub(crate) rng: SimRng,
    pub(crate) now_ms: Arc<AtomicU64>,
    pub(crate) trace: Vec<String>,
    pub(crate) arweave: Arc<Mutex<Arweave>>,
    pub(crate) da: SimDa,
    pub(crate) l1: Arc<Mutex<L1>>,
    pub(crate) params: NetworkParams,
    key_secret: [u8; 32],
    pub(crate) coordinator: CoordinatorRole,
    pub(crate) confirmers: Vec<ConfirmerRole>,
    pub(crate) users: Vec<Wallet>,
    /// Signed transactions users sent, for hostile replays.
    pub(crate) sent: Vec<SignedUserTx>,
    pub(crate) acked: BTreeMap<[u8; 32], Acked>,
    pub(crate) acked_per_account: BTreeMap<Address, u64>,
    /// Total deposited on L1, in wei.
    pub(crate) l1_deposited: u128,
    pub(crate) attack: Option<Attack>,
    /// The first batch of bad history the coordinator published, and what it did.
    pub(crate) bad_from: Option<(u64, &'static str)>,
    pub(crate) faults: u32,
    pub(crate) healed: bool,
    pub(crate) violation: Option<Violation>,
    _dir: tempfile::TempDir,
}

impl World {
    pub(crate) async fn new(config: SimConfig) -> Result<Self, SimError> {
        let mut rng = SimRng::new(config.seed);
        let now_ms = Arc::new(AtomicU64::new(0));
        let key_secret = rng.bytes32();
        let key = CoordinatorKey::from_secret(&key_secret).map_err(|_| SimError::Setup("a coordinator key".into()))?;
        let params = network(key.public_key());
        let arweave = Arc::new(Mutex::new(Arweave::new(SimRng::new(rng.below(u64::MAX)), now_ms.clone())));
        let da = SimDa::new(arweave.clone(), params.coordinator_key);
        let l1 = Arc::new(Mutex::new(L1::default()));
        let mut users = Vec::new();
        while users.len() < config.users {
            if let Ok(wallet) = Wallet::from_secret(&rng.bytes32()) {
                users.push(wallet);
            }
        }
        // tmpfs when there is one: the ledgers are real SQLite files, and fsync is not what is tested.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .map_err(|e| SimError::Setup(format!("a directory for the ledgers: {e}")))?;
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let coordinator = CoordinatorRole {
            url: url("coordinator.db"),
            sequencer: None,
            publisher: None,
            store: None,
            down_until: None,
            opened_ms: None,
        };
        let confirmers = (0..config.confirmers)
            .map(|i| ConfirmerRole {
                url: url(&format!("confirmer{i}.db")),
                follower: None,
                down_until: None,
                stalled_until: None,
                lag_blocks: Arc::new(AtomicU64::new(0)),
                lag_until: None,
            })
            .collect();
        let attack = Attack::choose(&mut rng, &config);
        let mut world = World {
            config,
            rng,
            now_ms,
            trace: Vec::new(),
            arweave,
            da,
            l1,
            params,
            key_secret,
            coordinator,
            confirmers,
            users,
            sent: Vec::new(),
            acked: BTreeMap::new(),
            acked_per_account: BTreeMap::new(),
            l1_deposited: 0,
            attack,
            bad_from: None,
            faults: 0,
            healed: false,
            violation: None,
            _dir: dir,
        };
        if let Some(attack) = &world.attack {
            let line = format!("the coordinator will turn byzantine: {}", attack.describe());
            world.log(line);
        }
        world.start_coordinator().await?;
        for index in 0..world.confirmers.len() {
            world.start_confirmer(index).await?;
        }
        Ok(world)
    }

    pub(crate) fn now(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn log(&mut self, event: impl Into<String>) {
        let ms = self.now();
        let line = format!("{:02}:{:02}:{:02} {}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, event.into());
        self.trace.push(line);
    }

    pub(crate) fn key(&self) -> Result<CoordinatorKey, SimError> {
        CoordinatorKey::from_secret(&self.key_secret).map_err(|_| SimError::Setup("the coordinator key".into()))
    }

    pub(crate) fn in_fault_phase(&self) -> bool {
        self.now() < self.config.fault_ms
    }

    /// The run: ticks until the end, the invariants after each; the first violation ends it.
    pub(crate) async fn run(&mut self) -> Result<(), SimError> {
        let end = self.config.fault_ms + self.config.healing_ms;
        while self.now() < end && self.violation.is_none() {
            self.now_ms.fetch_add(self.config.tick_ms, Ordering::SeqCst);
            self.tick().await?;
            self.check_step().await?;
        }
        if self.violation.is_none() {
            self.check_end().await?;
        }
        Ok(())
    }

    async fn tick(&mut self) -> Result<(), SimError> {
        let now = self.now();
        if self.in_fault_phase() {
            self.inject_faults().await?;
        } else if !self.healed {
            self.heal();
        }
        self.restart_due().await?;
        if now.is_multiple_of(BLOCK_MS) {
            self.mine_block();
        }
        let users_active = now + QUIET_BEFORE_END_MS < self.config.fault_ms + self.config.healing_ms;
        if users_active && self.rng.chance(40_000) {
            self.deposit_on_l1();
        }
        if self.coordinator.sequencer.is_some() {
            self.watch_deposits().await?;
            if users_active {
                for _ in 0..self.rng.below(3) {
                    self.user_acts().await?;
                }
            }
            self.attack_turn().await?;
            self.seal_by_policy().await?;
            self.publish().await?;
        }
        for index in 0..self.confirmers.len() {
            self.step_confirmer(index).await?;
        }
        Ok(())
    }

    // --- the coordinator ---

    pub(crate) async fn start_coordinator(&mut self) -> Result<(), SimError> {
        let store = Store::open(&self.coordinator.url).await.map_err(SimError::role("coordinator ledger"))?;
        let sequencer = Sequencer::recover(store.clone(), self.params.clone(), self.key()?)
            .await
            .map_err(SimError::role("coordinator recovery"))?
            .with_snapshots(SnapshotPolicy::off());
        let open = sequencer.open_len();
        let da: Arc<dyn DataAvailability> = Arc::new(self.da.clone());
        self.coordinator.publisher = Some(Publisher::new(store.clone(), da));
        self.coordinator.store = Some(store);
        self.coordinator.opened_ms = (open > 0).then(|| self.now());
        let head = sequencer.state().head().next_number - 1;
        self.coordinator.sequencer = Some(sequencer);
        self.coordinator.down_until = None;
        self.log(format!("coordinator up: {head} batches sealed, {open} transactions open"));
        Ok(())
    }

    pub(crate) fn crash_coordinator(&mut self, down_ms: u64) {
        self.coordinator.sequencer = None;
        self.coordinator.publisher = None;
        self.coordinator.store = None;
        self.coordinator.down_until = Some(self.now() + down_ms);
        self.faults += 1;
        self.log(format!("FAULT coordinator crashes for {} s", down_ms / 1000));
    }

    /// The API's path for one user transaction: its signature checked, then the sequencer.
    async fn submit_user(&mut self, signed: SignedUserTx, expect_refusal: &str) -> Result<(), SimError> {
        let domain = bridge::eip712::Domain::new(&self.params);
        let verified = match signed.verify(&domain) {
            Ok(verified) => verified,
            Err(error) => {
                self.log(format!("api refuses ({expect_refusal}): {}", error.code()));
                return Ok(());
            }
        };
        if expect_refusal == "forged signature" || expect_refusal == "wrong domain" {
            self.violate("signatures", format!("a transaction with a {expect_refusal} passed verification"));
            return Ok(());
        }
        self.sent.push(signed);
        self.submit(Tx::User(verified), expect_refusal).await
    }

    pub(crate) async fn submit(&mut self, tx: Tx, what: &str) -> Result<(), SimError> {
        let Some(sequencer) = self.coordinator.sequencer.as_mut() else { return Ok(()) };
        let account = match &tx {
            Tx::User(user) => Some(user.tx().from()),
            Tx::System(_) => None,
        };
        let mut outcomes = sequencer.submit(vec![tx]).await.map_err(SimError::role("sequencer"))?;
        let Some(outcome) = outcomes.pop() else { return Ok(()) };
        match outcome {
            Ok(receipt) => {
                if self.coordinator.opened_ms.is_none() {
                    self.coordinator.opened_ms = Some(self.now());
                }
                let hash = hex::encode(&receipt.tx_hash[..4]);
                self.log(format!("acked {what} {hash}"));
                if let Some(account) = account {
                    if self.acked.insert(receipt.tx_hash, Acked { account }).is_some() {
                        self.violate("at-most-once", format!("transaction {hash} ({what}) was acknowledged twice"));
                    }
                    *self.acked_per_account.entry(account).or_default() += 1;
                }
            }
            Err(error) => self.log(format!("refused {what}: {error}")),
        }
        Ok(())
    }

    async fn seal_by_policy(&mut self) -> Result<(), SimError> {
        let now = self.now();
        let Some(sequencer) = self.coordinator.sequencer.as_mut() else { return Ok(()) };
        let due = sequencer.open_len() >= SEAL_AT_TXS
            || self.coordinator.opened_ms.is_some_and(|opened| now >= opened + SEAL_AFTER_MS);
        if !due {
            return Ok(());
        }
        self.coordinator.opened_ms = None;
        if let Some(sealed) = sequencer.seal(now).await.map_err(SimError::role("sealing"))? {
            let header = &sealed.batch.header;
            let line = format!(
                "sealed batch {} ({} txs) {}",
                header.number,
                header.tx_count,
                hex::encode(&header.hash()[..4])
            );
            self.log(line);
        }
        Ok(())
    }

    async fn publish(&mut self) -> Result<(), SimError> {
        if self.attack.as_ref().is_some_and(|a| a.controls_publishing()) {
            return self.publish_byzantine().await;
        }
        let Some(publisher) = &self.coordinator.publisher else { return Ok(()) };
        match publisher.publish_pending().await {
            Ok(published) => {
                for p in published {
                    self.log(format!("published batch {} as {}", p.number, p.locator));
                }
            }
            Err(error) => self.log(format!("publishing failed: {error}")),
        }
        Ok(())
    }

    // --- the chain watcher and users ---

    fn deposit_on_l1(&mut self) {
        let user = self.users[self.rng.below(self.users.len() as u64) as usize].address();
        let tip = L1::tip(self.now());
        let ethers = self.rng.between(1, 5) as u128;
        let deposit = Deposit {
            chain: Chain::Ethereum,
            l1_ref: L1Ref::Ethereum { tx_hash: self.rng.bytes32(), log_in_tx: 0 },
            account: user,
            asset: AssetId::Eth,
            amount: Amount(ethers * ETHER),
            l1_height: tip,
        };
        self.l1_deposited += ethers * ETHER;
        if let Ok(mut l1) = self.l1.lock() {
            l1.add(deposit);
        }
        self.log(format!("L1 deposit of {ethers} ETH at block {tip}"));
    }

    /// The coordinator's chain watcher: every deposit at depth not yet credited.
    async fn watch_deposits(&mut self) -> Result<(), SimError> {
        let tip = L1::tip(self.now());
        let deep: Vec<Deposit> = match (self.l1.lock(), &self.coordinator.sequencer) {
            (Ok(l1), Some(sequencer)) => {
                l1.deep(tip).filter(|d| !sequencer.state().is_credited(&d.l1_ref)).cloned().collect()
            }
            _ => Vec::new(),
        };
        for deposit in deep {
            self.submit(Tx::System(SystemTx::Deposit(deposit)), "deposit").await?;
        }
        Ok(())
    }

    async fn user_acts(&mut self) -> Result<(), SimError> {
        let Some(sequencer) = &self.coordinator.sequencer else { return Ok(()) };
        let domain = bridge::eip712::Domain::new(&self.params);
        let n = self.users.len() as u64;
        let from = self.rng.below(n) as usize;
        let to = (from + 1 + self.rng.below(n - 1) as usize) % self.users.len();
        let (wallet, recipient) = (&self.users[from], self.users[to].address());
        let nonce = sequencer.state().nonce(&wallet.address());
        let balance = sequencer.state().balance(&wallet.address(), &AssetId::Eth).0;
        // Now and then more than the balance: an overdraft the STF must refuse.
        let amount = Amount(1 + (self.rng.below(u64::MAX) as u128) % (balance + balance / 4 + 1));
        let fee = Amount(self.rng.below(3) as u128);
        let kind = self.rng.below(100);
        let transfer = |nonce| {
            UserTx::Transfer(Transfer {
                from: wallet.address(),
                to: recipient,
                asset: AssetId::Eth,
                amount,
                fee,
                nonce,
            })
        };
        let (signed, what) = match kind {
            0..50 => (wallet.sign(transfer(nonce), &domain), "transfer"),
            50..68 => {
                let mut address = [0u8; 20];
                address.copy_from_slice(&self.rng.bytes32()[..20]);
                address[0] |= 1;
                let withdraw = Withdraw {
                    from: wallet.address(),
                    asset: AssetId::Eth,
                    amount,
                    fee,
                    recipient: format!("0x{}", hex::encode(address)),
                    nonce,
                };
                (wallet.sign(UserTx::Withdraw(withdraw), &domain), "withdrawal")
            }
            68..80 if !self.sent.is_empty() => {
                let old = self.sent[self.rng.below(self.sent.len() as u64) as usize].clone();
                (old, "replayed transaction")
            }
            80..88 => (wallet.sign(transfer(nonce + 1 + self.rng.below(3)), &domain), "nonce gap"),
            88..95 => {
                // Signed by someone else in the sender's name.
                let forger = &self.users[to];
                (forger.sign(transfer(nonce), &domain), "forged signature")
            }
            _ => {
                let mut other = self.params.clone();
                other.chain_id += 1;
                (wallet.sign(transfer(nonce), &bridge::eip712::Domain::new(&other)), "wrong domain")
            }
        };
        self.submit_user(signed, what).await
    }

    // --- confirmers ---

    pub(crate) async fn start_confirmer(&mut self, index: usize) -> Result<(), SimError> {
        let role = &self.confirmers[index];
        let store = ConfirmerStore::open(&role.url).await.map_err(SimError::role("confirmer store"))?;
        let node =
            LaggingNode { l1: self.l1.clone(), now_ms: self.now_ms.clone(), lag_blocks: role.lag_blocks.clone() };
        let verifiers = DepositVerifiers::none().with(Chain::Ethereum, Arc::new(node));
        let da: Arc<dyn DataAvailability> = Arc::new(self.da.clone());
        let clock_ms = self.now_ms.clone();
        let follower = Follower::open(da, store, self.params.clone(), verifiers)
            .await
            .map_err(SimError::role("confirmer start"))?
            .with_snapshots(SnapshotPolicy::off())
            .with_missing_batch_wait(MISSING_BATCH_WAIT)
            .with_clock(Arc::new(move || clock_ms.load(Ordering::SeqCst)));
        let status = follower.status();
        self.confirmers[index].follower = Some(follower);
        self.confirmers[index].down_until = None;
        self.log(format!("confirmer {index} up: replayed {}, hard-final {}", status.replayed, status.hard_final));
        Ok(())
    }

    async fn step_confirmer(&mut self, index: usize) -> Result<(), SimError> {
        let now = self.now();
        let role = &mut self.confirmers[index];
        if role.stalled_until.is_some_and(|until| now < until) {
            return Ok(());
        }
        let Some(follower) = role.follower.as_mut() else { return Ok(()) };
        let before = follower.status();
        let result = follower.step(STEP_LIMIT).await;
        let after = follower.status();
        match result {
            Ok(step) => {
                if let Some(alarm) = step.alarm {
                    self.log(format!(
                        "confirmer {index} ALARM {} at batch {}: {}",
                        alarm.kind.as_str(),
                        alarm.number,
                        alarm.detail
                    ));
                }
            }
            Err(error) => self.log(format!("confirmer {index} step failed: {error}")),
        }
        if after.hard_final != before.hard_final || after.replayed != before.replayed {
            self.log(format!("confirmer {index} replayed {}, hard-final {}", after.replayed, after.hard_final));
        }
        if after.waiting != before.waiting
            && let Some(waiting) = &after.waiting
        {
            self.log(format!("confirmer {index} waits at batch {} for {}", waiting.batch, waiting.what));
        }
        Ok(())
    }

    // --- faults ---

    async fn inject_faults(&mut self) -> Result<(), SimError> {
        let now = self.now();
        if self.coordinator.sequencer.is_some() && self.rng.chance(3_000) {
            let down = self.rng.between(5, 120) * 1000;
            self.crash_coordinator(down);
        }
        for index in 0..self.confirmers.len() {
            if self.confirmers[index].follower.is_some() && self.rng.chance(3_000) {
                let down = self.rng.between(5, 300) * 1000;
                self.confirmers[index].follower = None;
                self.confirmers[index].down_until = Some(now + down);
                self.faults += 1;
                self.log(format!("FAULT confirmer {index} crashes for {} s", down / 1000));
            }
            if self.rng.chance(3_000) {
                let stall = self.rng.between(60, 1_200) * 1000;
                self.confirmers[index].stalled_until = Some(now + stall);
                self.faults += 1;
                self.log(format!("FAULT confirmer {index} stops stepping for {} s", stall / 1000));
            }
            if self.rng.chance(3_000) {
                let lag = self.rng.between(5, 200);
                let lasting = self.rng.between(60, 1_800) * 1000;
                self.confirmers[index].lag_blocks.store(lag, Ordering::SeqCst);
                self.confirmers[index].lag_until = Some(now + lasting);
                self.faults += 1;
                self.log(format!("FAULT confirmer {index}'s L1 node lags {lag} blocks for {} s", lasting / 1000));
            }
            if self.confirmers[index].lag_until.is_some_and(|until| now >= until) {
                self.confirmers[index].lag_blocks.store(0, Ordering::SeqCst);
                self.confirmers[index].lag_until = None;
                self.log(format!("confirmer {index}'s L1 node caught up"));
            }
        }
        if self.rng.chance(10_000) {
            self.post_junk();
        }
        Ok(())
    }

    /// Another wallet posts under the bridge's tags: random bytes, or a batch signed by a key
    /// that is not the coordinator's.
    fn post_junk(&mut self) {
        let number = self.coordinator.sequencer.as_ref().map_or(1, |s| s.state().head().next_number);
        let bytes = self.rng.bytes32().to_vec();
        let wallet = self.rng.below(1_000);
        if let Ok(mut arweave) = self.arweave.lock() {
            arweave.post(crate::arweave::Owner::Other(wallet), vec![(number, bytes)]);
        }
        self.faults += 1;
        self.log(format!("FAULT wallet {wallet} posts junk tagged batch {number}"));
    }

    fn mine_block(&mut self) {
        let reorg = self.in_fault_phase() && self.rng.chance(50_000);
        let depth = self.rng.between(1, crate::arweave::MAX_REORG_BLOCKS);
        let Ok(mut arweave) = self.arweave.lock() else { return };
        if reorg {
            let dropped = arweave.reorg(depth);
            let height = arweave.height();
            drop(arweave);
            self.faults += 1;
            self.log(format!("FAULT Arweave reorg drops {dropped} blocks, height now {height}"));
        } else {
            arweave.mine();
        }
    }

    async fn restart_due(&mut self) -> Result<(), SimError> {
        let now = self.now();
        if self.coordinator.down_until.is_some_and(|until| now >= until) {
            self.start_coordinator().await?;
        }
        for index in 0..self.confirmers.len() {
            if self.confirmers[index].down_until.is_some_and(|until| now >= until) {
                self.start_confirmer(index).await?;
            }
        }
        Ok(())
    }

    /// Faults stop: whatever is down comes back now, lags end.
    fn heal(&mut self) {
        self.healed = true;
        let now = self.now();
        if self.coordinator.down_until.is_some() {
            self.coordinator.down_until = Some(now);
        }
        for role in &mut self.confirmers {
            if role.down_until.is_some() {
                role.down_until = Some(now);
            }
            role.stalled_until = None;
            role.lag_blocks.store(0, Ordering::SeqCst);
            role.lag_until = None;
        }
        self.log("healing: faults stop, every role is up and in sync from now on");
    }

    pub(crate) fn violate(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.log(format!("VIOLATION {invariant}: {detail}"));
            self.violation = Some(Violation { invariant, detail, at_ms: self.now() });
        }
    }
}

/// The simulated network: Ethereum only (Bitcoin comes with its payouts in a later step).
fn network(coordinator_key: [u8; 32]) -> NetworkParams {
    NetworkParams {
        name: "sim".into(),
        chain_id: 31_337,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key,
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    }
}
