//! One simulated network and its run: the coordinator (the real sequencer, ledger and publisher
//! on SQLite, here), confirmers and their watchmen (confirmers.rs, watchmen.rs), users
//! (users.rs), the simulated Arweave and Ethereum, and the faults the seed chooses (faults.rs).
//! Time moves in ticks of simulated time; every role acts in a fixed order within a tick, so a
//! seed replays exactly.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge::batch::SealedBatch;
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, BtcVaultParams, CoordinatorKey, NetworkParams, SignedUserTx,
    Wallet,
};
use chains::da::DataAvailability;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use coordinator::publisher::{PublishTask, Publisher};
use coordinator::seal_rule::{OpenBatch, SealRule};
use coordinator::sequencer::Sequencer;
use coordinator::snapshot::DaSnapshots;
use coordinator::store::Store;

use crate::arweave::{Arweave, BLOCK_MS, SimDa};
use crate::btc_chain::{BTC_BLOCK_MS, BtcChain};
use crate::btc_claims::Claimant;
use crate::byzantine::Attack;
use crate::ceremony::Keys;
use crate::checkpoints::CHECKPOINT_EVERY;
use crate::clock::NodeClock;
use crate::disk::Disk;
use crate::eth_chain::EthChain;
use crate::eth_reorg::EthHistory;
use crate::evm::EthVault;
use crate::forced::ForcedTraffic;
use crate::l1::{L1, L1_BLOCK_MS};
use crate::late_joiner::LateJoiner;
use crate::mesh::SimMesh;
use crate::refresh::Refresh;
use crate::rng::SimRng;
use crate::signing::{Approvals, SimSession, WatchmanAttack};
use crate::tasks::Paced;
use crate::watchmen::{ASK_EVERY_MS, Ask, SIGNING_THRESHOLD, Truth, Watchman};
use crate::{SimConfig, SimError, Violation};

/// The confirmers' wait before a gap is `missing_batch`: the binary's default (600 s).
pub const MISSING_BATCH_WAIT: Duration = Duration::from_secs(600);
/// The coordinator's seal rule (the sequencer's own), at a small count and a short age so
/// that a run makes many batches.
const SEAL_RULE: SealRule =
    SealRule { max_txs: 32, max_bytes: coordinator::seal_rule::DEFAULT_MAX_BATCH_BYTES, max_age_ms: 10_000 };
/// Batches a follower takes per step (its binary's default page).
pub(crate) const STEP_LIMIT: usize = 16;
/// Users stop this long before the end, so that what they did can become hard-final.
pub const QUIET_BEFORE_END_MS: u64 = 15 * 60_000;
/// Users stop asking for Bitcoin this long before the end: a payout that must wait for an
/// earlier one's change to confirm (a block a minute, three deep) is then planned well before
/// the keeper's own quiet (btc_payouts.rs), and paid before the end.
const BTC_WITHDRAWALS_QUIET_BEFORE_END_MS: u64 = 25 * 60_000;
/// One ether in wei: deposits are whole ethers, transfers fractions of one.
pub(crate) const ETHER: u128 = 1_000_000_000_000_000_000;

pub(crate) struct CoordinatorRole {
    pub(crate) url: String,
    pub(crate) sequencer: Option<Sequencer>,
    /// Its publisher, a supervised task (tasks.rs).
    pub(crate) publishing: Option<Paced<PublishTask>>,
    pub(crate) store: Option<Store>,
    pub(crate) down_until: Option<u64>,
    pub(crate) opened_ms: Option<u64>,
    /// How far its wall clock, which stamps its batches, is off (clock.rs).
    pub(crate) wall_offset_ms: i64,
    /// Its payout keeper's memory (btc_payouts.rs): gone with a crash like the rest.
    pub(crate) keeper: Option<coordinator::payouts::PayoutKeeper<crate::btc_payouts::NoFeeMarket>>,
    /// Its task publishing state snapshots to the DA for late joiners (late_joiner.rs).
    pub(crate) da_snapshots: Option<Paced<DaSnapshots>>,
    /// Its forced task's planning (forced.rs).
    pub(crate) forced: Option<coordinator::forced::ForcedPlanner>,
    /// Its Bitcoin deposit watcher (btc_payouts.rs): gone with a crash.
    pub(crate) btc_deposits: Option<coordinator::deposits::BtcDepositScan>,
    /// How far its Bitcoin node (its deposit watcher's and payout keeper's) is behind the tip,
    /// in blocks, and until when (btc_chain.rs): the machine's, so a crash keeps it.
    pub(crate) btc_lag: Arc<AtomicU64>,
    pub(crate) btc_lag_until: Option<u64>,
}

pub(crate) struct ConfirmerRole {
    pub(crate) url: String,
    pub(crate) follower: Option<Follower>,
    /// The follower's store, shared with it: where a disk fault is set (disk.rs).
    pub(crate) store: Option<ConfirmerStore>,
    /// Its machine's clock, which its follower and its signer read (clock.rs).
    pub(crate) clock: NodeClock,
    /// Its watchman half, in memory: gone with a crash, built again at the restart.
    pub(crate) watchman: Option<Watchman>,
    pub(crate) down_until: Option<u64>,
    pub(crate) stalled_until: Option<u64>,
    pub(crate) lag_blocks: Arc<AtomicU64>,
    pub(crate) lag_until: Option<u64>,
    /// How far its Bitcoin node is behind the tip, in blocks (lags with its Ethereum node).
    pub(crate) btc_lag: Arc<AtomicU64>,
    /// The signed checkpoints its watchman wrote: files on its disk (checkpoints.rs).
    pub(crate) checkpoints_kept: BTreeSet<u64>,
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
    /// Disks that refuse writes, each until when (disk.rs).
    pub(crate) disk_refusals: BTreeMap<Disk, u64>,
    /// What the honest sequencer sealed owes: the watchmen's ground truth.
    pub(crate) truth: Truth,
    /// Ethereum: the vault's code on an in-process EVM (deployed once the key ceremony gave it
    /// its key) and what it holds, shared with every watchman's node (eth_chain.rs).
    pub(crate) eth: Arc<Mutex<EthChain>>,
    pub(crate) evm: Option<EthVault>,
    /// Its recent blocks' end states, for reorgs.
    pub(crate) eth_history: EthHistory,
    /// Every leaf the vault paid, and the wei it paid in all.
    pub(crate) paid: BTreeSet<(u64, u32)>,
    pub(crate) paid_wei: u128,
    /// The watchmen's group key and names on the mesh.
    pub(crate) keys: Keys,
    /// The byzantine watchman of this run, if any.
    pub(crate) byzantine_watchman: Option<(usize, WatchmanAttack)>,
    pub(crate) mesh: SimMesh,
    /// The mesh's time while it runs an event (between two ticks), which the signers read.
    pub(crate) mesh_ms: Arc<AtomicU64>,
    pub(crate) clock_origin: Instant,
    /// Signing sessions by slot; a slot is emptied when its session ends.
    pub(crate) sessions: Vec<Option<SimSession>>,
    pub(crate) sessions_ended: u64,
    pub(crate) sessions_signed: u64,
    /// Every batch whose checkpoint the group signed (checked true: checkpoints.rs).
    pub(crate) checkpoints_signed: BTreeSet<u64>,
    /// Requests signers refused over a peer's limits.
    pub(crate) overloaded: u64,
    /// Starts of watchmen so far: each start's sessions die with it.
    pub(crate) generation: u64,
    /// Every question asked, by the message signed.
    pub(crate) asked: BTreeMap<Vec<u8>, Ask>,
    /// Approvals the watchmen's policies gave, checked after every tick.
    pub(crate) approval_log: Approvals,
    /// (signer, asker, epoch, nonce set) of every `Sign` a signer answered with shares.
    pub(crate) shares_given: BTreeSet<(usize, usize, u64, u64)>,
    pub(crate) violation: Option<Violation>,
    /// Bitcoin on the kernel (btc_chain.rs), once the key ceremony gave the vault its key.
    pub(crate) btc: Option<BtcChain>,
    /// Bitcoin's own stream of choices, so that they leave the rest of a seed's run as it was.
    pub(crate) btc_rng: SimRng,
    /// The coordinator's Bitcoin node's lags: a stream of their own, for the same reason.
    pub(crate) coordinator_btc_rng: SimRng,
    /// Snapshots' rot: its own stream, and the snapshots that rotted, by role (snapshots.rs).
    pub(crate) snapshot_rng: SimRng,
    /// The coordinator's gateway outages: their own stream (tasks.rs).
    pub(crate) gateway_rng: SimRng,
    pub(crate) rotten: BTreeSet<(Disk, u64)>,
    /// The newest checkpoint files watchmen wrote, by batch: what an operator hands a late joiner.
    pub(crate) checkpoint_files: BTreeMap<u64, bridge::checkpoint::SignedCheckpoint>,
    /// The confirmer that joins late from a checkpoint (late_joiner.rs).
    pub(crate) late: LateJoiner,
    /// The Bitcoin depositor who pays before it asks and claims (btc_claims.rs).
    pub(crate) claimant: Claimant,
    /// Forced transactions users posted and batches recorded (forced.rs).
    pub(crate) forced: ForcedTraffic,
    /// The operators' refresh of the watchmen's shares, if this run has one (refresh.rs).
    pub(crate) refresh: Refresh,
    /// The last batch sealed before the quiet end of the run: what liveness holds to the end.
    /// A forced entry is safe about 40 minutes after it is posted, so the coordinator seals
    /// batches to the end of a run, and those it seals in the quiet may still be on their way.
    pub(crate) sealed_before_quiet: u64,
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
            users.push(rng.wallet());
        }
        // tmpfs when there is one: the ledgers are real SQLite files, and fsync is not what is tested.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .map_err(|e| SimError::Setup(format!("a directory for the ledgers: {e}")))?;
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let coordinator = CoordinatorRole {
            url: url("coordinator.db"),
            sequencer: None,
            publishing: None,
            store: None,
            down_until: None,
            opened_ms: None,
            wall_offset_ms: 0,
            keeper: None,
            btc_deposits: None,
            da_snapshots: None,
            forced: None,
            btc_lag: Arc::new(AtomicU64::new(0)),
            btc_lag_until: None,
        };
        let confirmers = (0..config.confirmers)
            .map(|i| ConfirmerRole {
                url: url(&format!("confirmer{i}.db")),
                follower: None,
                store: None,
                clock: NodeClock::default(),
                watchman: None,
                down_until: None,
                stalled_until: None,
                lag_blocks: Arc::new(AtomicU64::new(0)),
                lag_until: None,
                btc_lag: Arc::new(AtomicU64::new(0)),
                checkpoints_kept: BTreeSet::new(),
            })
            .collect();
        let late = LateJoiner::new(url("late.db"), config.fault_ms * 2 / 3, config.seed);
        let attack = Attack::choose(&mut rng, &config);
        let byzantine_watchman = WatchmanAttack::choose(&mut rng, &config);
        let n = config.confirmers;
        let threshold = u16::try_from(SIGNING_THRESHOLD.min(n)).map_err(|_| SimError::Setup("a threshold".into()))?;
        let keys = Keys::name(&mut rng, &config, threshold)?;
        let btc_rng = SimRng::new(config.seed ^ BTC_STREAM);
        let seed = config.seed;
        let refresh = Refresh::new(&config);
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
            disk_refusals: BTreeMap::new(),
            truth: Truth::default(),
            eth: Arc::default(),
            evm: None,
            eth_history: EthHistory::default(),
            paid: BTreeSet::new(),
            paid_wei: 0,
            keys,
            byzantine_watchman,
            mesh: SimMesh::default(),
            mesh_ms: Arc::new(AtomicU64::new(0)),
            clock_origin: Instant::now(),
            sessions: Vec::new(),
            sessions_ended: 0,
            sessions_signed: 0,
            checkpoints_signed: BTreeSet::new(),
            overloaded: 0,
            generation: 0,
            asked: BTreeMap::new(),
            approval_log: Approvals::default(),
            shares_given: BTreeSet::new(),
            violation: None,
            btc: None,
            btc_rng,
            coordinator_btc_rng: SimRng::new(seed ^ crate::btc_chain::COORDINATOR_NODE_STREAM),
            snapshot_rng: SimRng::new(seed ^ crate::snapshots::SNAPSHOT_STREAM),
            gateway_rng: SimRng::new(seed ^ crate::tasks::GATEWAY_STREAM),
            rotten: BTreeSet::new(),
            checkpoint_files: BTreeMap::new(),
            late,
            claimant: Claimant::new(seed),
            forced: ForcedTraffic::new(seed),
            refresh,
            sealed_before_quiet: 0,
            _dir: dir,
        };
        if let Some(attack) = &world.attack {
            let line = format!("the coordinator will turn byzantine: {}", attack.describe());
            world.log(line);
        }
        if let Some((index, kind)) = world.byzantine_watchman {
            world.log(format!("watchman {index} is byzantine: {kind:?}"));
        }
        world.key_ceremony()?;
        world.open_bitcoin()?;
        world.start_coordinator().await?;
        for index in 0..world.confirmers.len() {
            world.start_confirmer(index).await?;
        }
        Ok(world)
    }

    pub(crate) fn now(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// Ethereum's state. One thread: a poisoned lock means a panic already ended the run.
    pub(crate) fn eth_chain(&self) -> std::sync::MutexGuard<'_, EthChain> {
        self.eth.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.refresh_turn()?;
        self.gateway_faults();
        if now.is_multiple_of(BLOCK_MS) {
            self.mine_block();
        }
        self.ethereum_block();
        if now.is_multiple_of(BTC_BLOCK_MS) {
            self.bitcoin_block()?;
        }
        let users_active = now + QUIET_BEFORE_END_MS < self.config.fault_ms + self.config.healing_ms;
        if users_active && self.rng.chance(40_000) {
            self.deposit_on_l1();
        }
        if users_active && self.btc_rng.chance(40_000) {
            self.deposit_on_bitcoin()?;
        }
        if users_active {
            self.claimant_pays()?;
        }
        if users_active && self.config.forced_traffic {
            self.forced_users_turn();
        }
        if self.coordinator.sequencer.is_some() {
            self.watch_deposits().await?;
            self.watch_btc_deposits().await?;
            if now.is_multiple_of(BTC_BLOCK_MS) {
                self.claimant_claims().await?;
                self.keep_payouts().await?;
            }
            if users_active {
                for _ in 0..self.rng.below(3) {
                    self.user_acts().await?;
                }
                let end = self.config.fault_ms + self.config.healing_ms;
                if now + BTC_WITHDRAWALS_QUIET_BEFORE_END_MS < end && self.btc_rng.chance(30_000) {
                    self.withdraw_bitcoin().await?;
                }
            }
            self.attack_turn().await?;
            self.forced_turn().await?;
            self.seal_by_policy().await?;
            self.publish().await?;
        }
        for index in 0..self.confirmers.len() {
            self.step_confirmer(index).await?;
        }
        self.late_joiner_turn().await?;
        self.run_mesh();
        self.settle_ethereum(now.is_multiple_of(L1_BLOCK_MS)).await?;
        self.duty_turns().await?;
        self.checkpoint_turns();
        if now.is_multiple_of(ASK_EVERY_MS) {
            self.ask_watchmen().await?;
            self.pay_bitcoin().await?;
        }
        self.check_approvals();
        Ok(())
    }

    // --- the coordinator ---

    pub(crate) async fn start_coordinator(&mut self) -> Result<(), SimError> {
        let store = Store::open(&self.coordinator.url).await.map_err(SimError::role("coordinator ledger"))?;
        let expected = self.rot_before_start(Disk::Coordinator, &store.snapshots()).await;
        if self.refuses(Disk::Coordinator) {
            store.refuse_writes(true).await.map_err(SimError::role("disk fault"))?;
        }
        let sequencer = match Sequencer::recover(store.clone(), self.params.clone(), self.key()?).await {
            Ok(sequencer) => {
                self.check_restored(Disk::Coordinator, sequencer.restored_from(), expected);
                sequencer.with_snapshots(crate::snapshots::coordinator_policy())
            }
            // Recovery wrote and the disk refused: the process exits again, to be started once
            // the disk takes writes.
            Err(error) if self.refuses(Disk::Coordinator) => {
                self.coordinator.down_until = self.refused_until(Disk::Coordinator);
                self.log(format!("coordinator cannot start on its disk: {error}"));
                return Ok(());
            }
            // An honest coordinator that cannot start from what it committed halts the bridge:
            // a violation (a snapshot it should have refused, say), not a broken run.
            Err(error) => {
                self.violate("role-restarts", format!("the coordinator cannot start from its ledger: {error}"));
                return Ok(());
            }
        };
        let open = sequencer.open_len();
        let da: Arc<dyn DataAvailability> = Arc::new(self.da.clone());
        // Paced as the binary's supervisor paces them, on the binary's default retry.
        let retry = std::time::Duration::from_millis(coordinator::config::Config::default().da.publish_retry_ms);
        let now = self.now();
        let publisher = Publisher::new(store.clone(), da.clone()).task(Arc::new(tokio::sync::Notify::new()));
        self.coordinator.publishing = Some(Paced::new("publisher", publisher, Publisher::schedule(retry), now));
        let snapshots = DaSnapshots::new(store.clone(), da, CHECKPOINT_EVERY);
        self.coordinator.da_snapshots = Some(Paced::new("da-snapshots", snapshots, DaSnapshots::schedule(retry), now));
        self.coordinator.forced = self.forced_planner(&store);
        self.coordinator.store = Some(store);
        self.coordinator.opened_ms = (open > 0).then(|| self.now());
        let head = sequencer.state().head().next_number - 1;
        self.coordinator.sequencer = Some(sequencer);
        self.coordinator.down_until = None;
        self.log(format!("coordinator up: {head} batches sealed, {open} transactions open"));
        Ok(())
    }

    async fn seal_by_policy(&mut self) -> Result<(), SimError> {
        let now = self.now();
        let wall_clock = self.coordinator_wall_clock();
        let Some(sequencer) = self.coordinator.sequencer.as_mut() else { return Ok(()) };
        let open = OpenBatch {
            txs: sequencer.open_len(),
            encoded_bytes: sequencer.open_bytes(),
            age_ms: self.coordinator.opened_ms.map(|opened| now.saturating_sub(opened)),
            forced_due: false,
        };
        if SEAL_RULE.due(&open).is_none() {
            return Ok(());
        }
        self.coordinator.opened_ms = None;
        let sealed = match sequencer.seal(wall_clock).await {
            Ok(sealed) => sealed,
            Err(error) => return self.sequencer_failed("sealing", error),
        };
        if let Some(sealed) = sealed {
            self.note_sealed(&sealed).await;
        }
        Ok(())
    }

    /// What the simulator keeps of a batch the coordinator sealed: the watchmen's truth, its
    /// forced records, the snapshot it may have saved.
    pub(crate) async fn note_sealed(&mut self, sealed: &SealedBatch) {
        self.truth.record(sealed);
        if self.now() + QUIET_BEFORE_END_MS < self.config.fault_ms + self.config.healing_ms {
            self.sealed_before_quiet = sealed.batch.header.number;
        }
        if let Some(btc) = self.btc.as_mut() {
            btc.truth.record(sealed.batch.header.number, &sealed.settlement.btc_plans, btc.vault);
        }
        let header = &sealed.batch.header;
        let line = format!(
            "sealed batch {} ({} txs, {} forced) {}",
            header.number,
            header.tx_count,
            sealed.batch.forced.len(),
            hex::encode(&header.hash()[..4])
        );
        self.log(line);
        self.note_forced_records(&sealed.batch);
        self.coordinator_snapshot_saved().await;
        // The sequencer notifies the publisher's idle wait.
        let now = self.now();
        if let Some(publishing) = self.coordinator.publishing.as_mut() {
            publishing.wake(now);
        }
    }

    async fn publish(&mut self) -> Result<(), SimError> {
        if self.attack.as_ref().is_some_and(|a| a.controls_publishing()) {
            return self.publish_byzantine().await;
        }
        let now = self.now();
        let (Some(publishing), Some(store)) = (self.coordinator.publishing.as_mut(), &self.coordinator.store) else {
            return Ok(());
        };
        // Most ticks have no turn due: the ledger is read only around one.
        if !publishing.is_due(now) {
            return Ok(());
        }
        let before = store.publication().await.map(|p| p.published);
        let Some((outcome, next)) = publishing.turn_if_due(now).await else { return Ok(()) };
        let after = store.publication().await.map(|p| p.published);
        let name = publishing.name();
        if let (Ok(before), Ok(after)) = (before, after)
            && after > before
        {
            self.log(format!("published batches {}..={after}", before + 1));
        }
        self.coordinator_task_turned(name, outcome, next);
        self.publish_snapshot().await;
        Ok(())
    }

    pub(crate) fn violate(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.log(format!("VIOLATION {invariant}: {detail}"));
            self.violation = Some(Violation { invariant, detail, at_ms: self.now() });
        }
    }
}

/// Bitcoin's stream of choices: the seed, xor this.
const BTC_STREAM: u64 = 0xb17c_0117;

impl World {
    /// The Bitcoin vault under the group's key (its internal key `x(P)`), and the chain.
    fn open_bitcoin(&mut self) -> Result<(), SimError> {
        let Some(share) = self.keys.shares.first() else { return Ok(()) };
        let group = tss::GroupKey::of(&share.public).map_err(|e| SimError::Setup(format!("the group key: {e}")))?;
        let vault = BtcVaultParams { group_key: group.internal_key, min_fee_rate: 1, max_fee_rate: 50 };
        self.params.btc_vault = Some(vault);
        self.params.assets.push(AssetConfig { asset: AssetId::Btc, min_fee: Amount(0) });
        let accounts = self.users.iter().map(Wallet::address).chain([self.claimant.account()]);
        let funder = self.btc_rng.bytes32();
        let chain = BtcChain::new(vault, accounts, self.now_ms.clone(), funder)?;
        self.log(format!("the Bitcoin vault is under the group's key, the chain at height {}", chain.height()));
        self.btc = Some(chain);
        Ok(())
    }
}

/// The simulated network: Ethereum, and Bitcoin once the key ceremony made the group key.
fn network(coordinator_key: [u8; 32]) -> NetworkParams {
    NetworkParams {
        name: "sim".into(),
        chain_id: 31_337,
        eth_vault: Address(EthVault::address().into_array()),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key,
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: Some(crate::forced::RULES),
        webauthn: None,
        rotation: None,
    }
}
