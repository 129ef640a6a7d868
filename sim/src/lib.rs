//! A deterministic simulator of the bridge (issue 20, step 1): one seed runs a whole network in
//! one process, on simulated time, with faults the seed chooses, and checks the invariants after
//! every step. The roles' own code runs: the coordinator's [`coordinator::sequencer::Sequencer`],
//! ledger and [`coordinator::publisher::Publisher`] on SQLite, and each confirmer's
//! [`confirmer::follower::Follower`] and store on SQLite, with its waits measured on the
//! simulated clock (confirmer::patience), the watchmen's policy, signers and payout loop, the
//! Ethereum vault's bytecode on revm and Bitcoin Core's kernel. Simulated: Arweave
//! ([`arweave`]), Ethereum's deposits and each confirmer's lagging node ([`l1`]), users, and a
//! byzantine coordinator ([`byzantine`]). See README.md, "Simulation".
//!
//! Determinism: every choice comes from ChaCha8 streams ([`rng`]) in a fixed order (Bitcoin's
//! its own, so that it leaves the rest of a seed's choices as they were), time is a counter,
//! and maps are ordered; a seed gives the same trace and the same final hash.

pub mod arweave;
mod btc_chain;
mod btc_claims;
mod btc_payouts;
mod btc_vault_scan;
pub mod byzantine;
mod ceremony;
mod checkpoints;
mod checks;
mod clock;
mod confirmers;
mod disk;
mod duties;
mod eth_chain;
mod eth_reorg;
mod eth_settlement;
mod eth_vault_view;
mod evm;
mod faults;
mod forced;
pub mod l1;
mod late_joiner;
mod mesh;
mod refresh;
pub mod rng;
pub mod signing;
mod snapshots;
mod tasks;
mod users;
pub mod watchmen;
mod world;

use bitcoin::hashes::Hash as _;
use sha2::{Digest, Sha256};

pub use world::MISSING_BATCH_WAIT;

/// What one run simulates.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub confirmers: usize,
    pub users: usize,
    /// Faults happen during this first phase…
    pub fault_ms: u64,
    /// …and none in this one, after which liveness is checked.
    pub healing_ms: u64,
    /// Simulated time between two steps of every role.
    pub tick_ms: u64,
    /// `None`: about one run in three has a byzantine coordinator, of a kind the seed picks;
    /// `Some(kind)`: every run has that one (the planted-bug test, `--attack`).
    pub attack: Option<byzantine::AttackKind>,
    /// `None`: about one run in three has a byzantine watchman, of a kind the seed picks;
    /// `Some(kind)`: every run has one of that kind (`--watchman-attack`).
    pub watchman_attack: Option<signing::WatchmanAttack>,
    /// Users post forced transactions (forced.rs); without them the network still takes
    /// forced transactions, and every batch's (empty) forced section is checked.
    pub forced_traffic: bool,
    /// The coordinator and the confirmers crash now and then (faults.rs). Without crashes the
    /// seed's other faults strike much as they would have: a run that
    /// needs a role's memory to outlive a fault (a mined pause taken as kept, then dropped by a
    /// reorg) is not cut short by a restart that rebuilds it.
    pub crashes: bool,
    /// About one run in two the operators refresh the watchmen's shares (refresh.rs). Without
    /// it the refresh's chances are still drawn, on their own stream, so that a run is the run
    /// it was before refreshes existed: the planted bugs found in such a run keep it.
    pub refresh: bool,
}

impl SimConfig {
    /// The standard run: three confirmers, five users, 90 minutes of faults, 60 of healing
    /// (longer than the confirmers' 10-minute gap wait plus Arweave's delays), a tick of 5 s.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            confirmers: 3,
            users: 5,
            fault_ms: 90 * 60_000,
            healing_ms: 60 * 60_000,
            tick_ms: 5_000,
            attack: None,
            watchman_attack: None,
            forced_traffic: true,
            crashes: true,
            refresh: true,
        }
    }
}

impl SimConfig {
    /// A shorter run for the debug-profile tests: 30 minutes of faults (the attack between
    /// minute 10 and 10), 30 of healing (three times the confirmers' gap wait).
    pub fn quick(seed: u64) -> Self {
        SimConfig { fault_ms: 30 * 60_000, healing_ms: 30 * 60_000, ..SimConfig::new(seed) }
    }
}

/// The first invariant a run broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
    /// Simulated time.
    pub at_ms: u64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violation: Option<Violation>,
    pub trace: Vec<String>,
    /// SHA-256 over the trace and every role's final state: equal for equal seeds.
    pub final_hash: [u8; 32],
    pub simulated_ms: u64,
    pub faults: u32,
    pub attack: Option<String>,
    pub acked: usize,
    pub batches: u64,
    /// The byzantine watchman, if any: its index and what it does.
    pub watchman_attack: Option<String>,
    /// Signing sessions that ended, and those that ended with a signature.
    pub sessions: u64,
    pub signed: u64,
    /// Messages the mesh lost and duplicated.
    pub mesh_dropped: u64,
    pub mesh_duplicated: u64,
    /// Requests the signers refused over a peer's limits (`Overloaded`).
    pub overloaded: u64,
    /// Withdrawal leaves the vault (its bytecode on the in-process EVM) paid.
    pub paid_leaves: usize,
    /// Bitcoin payout plans the sequencer sealed, and those paid on the kernel's chain.
    pub btc_plans: usize,
    pub btc_plans_paid: usize,
    /// Forced entries posted under the network's tags, and those a sealed batch recorded.
    pub forced_posted: usize,
    pub forced_recorded: usize,
    /// Bitcoin deposits the scan passed by that their payer's claim credited (btc_claims.rs).
    pub btc_claims_credited: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("setting up the simulation failed: {0}")]
    Setup(String),
    #[error("the {what} failed outside any injected fault: {reason}; this is a bug in the simulator or the role")]
    Role { what: &'static str, reason: String },
}

impl SimError {
    pub(crate) fn role<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> SimError {
        move |error| SimError::Role { what, reason: error.to_string() }
    }
}

/// Runs one seed to its end or its first violation.
pub fn run(config: SimConfig) -> Result<Outcome, SimError> {
    // One thread runs every role's decisions; sqlx's SQLite workers and the follower's
    // signature checks finish before each call returns, so their threads change no order.
    // Timers only for sqlx's own pool timeouts: no decision of a role reads them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| SimError::Setup(format!("a runtime: {e}")))?;
    runtime.block_on(async move {
        let seed = config.seed;
        let mut world = world::World::new(config).await?;
        world.run().await?;
        let mut hash = Sha256::new();
        for line in &world.trace {
            hash.update(line.as_bytes());
            hash.update(b"\n");
        }
        let mut batches = 0;
        if let Some(sequencer) = &world.coordinator.sequencer {
            batches = sequencer.state().head().next_number - 1;
            hash.update(sequencer.state().state_root());
        }
        if let Some(btc) = &world.btc {
            hash.update(btc.tip_hash()?.to_byte_array());
        }
        for role in &world.confirmers {
            if let Some(follower) = &role.follower {
                let status = follower.status();
                hash.update(status.replayed.to_le_bytes());
                hash.update(status.hard_final.to_le_bytes());
                hash.update(follower.state().state_root());
            }
        }
        Ok(Outcome {
            seed,
            violation: world.violation.clone(),
            trace: std::mem::take(&mut world.trace),
            final_hash: hash.finalize().into(),
            simulated_ms: world.now(),
            faults: world.faults,
            attack: world.attack.as_ref().map(|a| a.describe()),
            acked: world.acked.len(),
            batches,
            watchman_attack: world.byzantine_watchman.map(|(index, kind)| format!("watchman {index}: {kind:?}")),
            sessions: world.sessions_ended,
            signed: world.sessions_signed,
            mesh_dropped: world.mesh.dropped,
            mesh_duplicated: world.mesh.duplicated,
            overloaded: world.overloaded,
            paid_leaves: world.paid.len(),
            btc_plans: world.btc.as_ref().map_or(0, |b| b.truth.plans.len()),
            btc_plans_paid: world.btc_plans_paid()?,
            forced_posted: world.forced.posted.len(),
            forced_recorded: world.forced.recorded.len(),
            btc_claims_credited: world.claimant.credited,
        })
    })
}
