//! Forced inclusion (docs/PROTOCOL.md, "Forced transactions"): a user whom the coordinator never
//! hears from posts its signed transactions to Arweave, and others post copies of transactions
//! already applied, junk, entries too large to fetch and entries of another network. The
//! coordinator's forced task takes the binary's own turn ([`ForcedPlanner::turn`]): it plans
//! each section from the simulated stream and its sequencer seals it; every confirmer checks
//! each batch's section against the stream with the real `ForcedChecker`. A censoring coordinator ([`AttackKind::CensorsForced`]) leaves one
//! entry out of a section it seals: every confirmer must alarm, and nothing after it may be
//! final.
//!
//! Everything here draws from its own stream ([`FORCED_STREAM`]), so that the rest of a seed's
//! choices stay as they were.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge::forced::{ForcedCursor, ForcedListing, ForcedOutcome, ForcedParams};
use bridge::tx::{Transfer, UserTx, Withdraw};
use bridge::{Amount, AssetId, Wallet};
use coordinator::forced::{ForcedPlanner, ForcedSequencer, ForcedWork};

use crate::SimError;
use crate::arweave::{BLOCK_MS, MAX_REORG_BLOCKS, MAX_SERVE_DELAY_MS, SimForcedStream};
use crate::byzantine::AttackKind;
use crate::rng::SimRng;
use crate::world::{QUIET_BEFORE_END_MS, World};

/// Forced traffic's stream of choices: the seed, xor this.
pub(crate) const FORCED_STREAM: u64 = 0xf0_2ced;

/// The simulated network's forced rules. An entry counts once no simulated reorg can take its
/// block back (the deepest is [`MAX_REORG_BLOCKS`]); the deadline leaves an honest coordinator
/// room for a crash, a batch waiting in the mempool and a reorg that mines it again.
pub(crate) const RULES: ForcedParams =
    ForcedParams { cap: 4, deadline_blocks: 40, confirmations: MAX_REORG_BLOCKS + 1, start_height: 0 };

/// Blocks an honest coordinator may take past an entry's safe height to record it: its data
/// served, a tick, a restart.
const RECORD_WITHIN_BLOCKS: u64 = MAX_SERVE_DELAY_MS / BLOCK_MS + 3;

/// What users post to the forced stream, and what the coordinator's batches recorded of it.
pub(crate) struct ForcedTraffic {
    rng: SimRng,
    /// The user who only ever transacts through forced entries.
    pub(crate) user: Wallet,
    funded: bool,
    /// The user's own entry not yet recorded: it posts its next one after (one nonce at a time).
    own_pending: Option<[u8; 32]>,
    /// Every entry posted under the network's tags, with what it is.
    pub(crate) posted: BTreeMap<[u8; 32], &'static str>,
    /// Every entry a batch the coordinator sealed recorded, by batch.
    pub(crate) recorded: BTreeMap<[u8; 32], u64>,
    /// The entry a censoring coordinator dropped from a section, until a batch passes it
    /// (that batch is then the run's `bad_from`).
    dropped: Option<ForcedListing>,
}

impl ForcedTraffic {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SimRng::new(seed ^ FORCED_STREAM);
        let user = rng.wallet();
        ForcedTraffic {
            rng,
            user,
            funded: false,
            own_pending: None,
            posted: BTreeMap::new(),
            recorded: BTreeMap::new(),
            dropped: None,
        }
    }
}

impl World {
    /// The coordinator's planner over the simulated stream, on its ledger.
    pub(crate) fn forced_planner(&self, store: &coordinator::store::Store) -> Option<ForcedPlanner> {
        let stream: Arc<dyn chains::arweave::ForcedStream> = Arc::new(SimForcedStream::new(self.arweave.clone()));
        ForcedPlanner::new(stream, self.params.clone(), store.clone(), Arc::default())
    }

    /// A confirmer's check of forced sections over the simulated stream.
    pub(crate) fn forced_checker(&self) -> Option<chains::forced_check::ForcedChecker> {
        let rules = self.params.forced?;
        let stream: Arc<dyn chains::arweave::ForcedStream> = Arc::new(SimForcedStream::new(self.arweave.clone()));
        Some(chains::forced_check::ForcedChecker::over(stream, &self.params.name, rules))
    }

    /// The coordinator's forced task, one turn: the binary's own [`ForcedPlanner::turn`] plans a
    /// section from its sequencer's cursor and hands it over (a censoring coordinator drops an
    /// entry from it first, in its sequencer edge).
    pub(crate) async fn forced_turn(&mut self) -> Result<(), SimError> {
        // A censoring coordinator drops one entry from every section that would take it, until
        // a batch's range passes it; only while a batch will pass it soon (others in the
        // section, or transactions open) and before the run's quiet end, so that what follows
        // from the censorship (alarms, pauses) has the healing to happen in.
        let censoring =
            self.attack.as_ref().is_some_and(|a| a.kind == AttackKind::CensorsForced && self.now() >= a.at_ms)
                && self.now() + QUIET_BEFORE_END_MS < self.config.fault_ms + self.config.healing_ms
                && self.bad_from.is_none();
        let wall_clock = self.coordinator_wall_clock();
        let (Some(planner), Some(sequencer)) = (&self.coordinator.forced, self.coordinator.sequencer.as_mut()) else {
            return Ok(());
        };
        let mut edge = ForcedEdge { sequencer, censoring, dropped: self.forced.dropped, dropping: None, failed: None };
        // An error is not served yet, or a gateway that cannot say: the next turn asks again.
        let sealed = planner.turn(&mut edge, || wall_clock).await.unwrap_or_default();
        let ForcedEdge { dropped, dropping, failed, .. } = edge;
        self.forced.dropped = dropped;
        if let Some(id) = dropping {
            self.log(format!("BYZANTINE the coordinator drops forced entry {id} from its section"));
        }
        if let Some(error) = failed {
            return self.sequencer_failed("a forced section", error);
        }
        for batch in &sealed {
            self.note_sealed(batch).await;
        }
        Ok(())
    }

    /// What a sealed batch's forced section recorded; the batch whose range passes an entry
    /// the coordinator dropped (the one of its own, or, when nothing was left to take, the next
    /// one, whose cursor moves past it) is where the censorship is.
    pub(crate) fn note_forced_records(&mut self, batch: &bridge::SignedBatch) {
        if let (Some(listing), Some(commit)) = (self.forced.dropped, &batch.header.forced) {
            let id = listing.arweave_id;
            let number = batch.header.number;
            if batch.forced.iter().any(|r| r.arweave_id == id) {
                // A restart planned the section again, honestly: nothing was left out.
                self.forced.dropped = None;
            } else if self.in_range(commit.from, commit.to, &listing) {
                self.forced.dropped = None;
                self.bad_from = Some((number, AttackKind::CensorsForced.name()));
                self.log(format!("BYZANTINE batch {number} leaves forced entry {} out", short(&id)));
            }
        }
        for record in &batch.forced {
            let outcome = match &record.outcome {
                ForcedOutcome::Malformed { .. } => "malformed",
                ForcedOutcome::Applied { .. } => "applied",
                ForcedOutcome::Refused { .. } => "refused",
                ForcedOutcome::Duplicate { .. } => "duplicate",
            };
            let number = batch.header.number;
            self.log(format!("batch {number} records forced entry {} as {outcome}", short(&record.arweave_id)));
            if self.forced.recorded.insert(record.arweave_id, number).is_some() {
                self.violate("forced-once", format!("forced entry {} recorded twice", short(&record.arweave_id)));
            }
            if self.forced.own_pending == Some(record.arweave_id) {
                self.forced.own_pending = None;
            }
        }
    }

    /// Whether the stream's entry `listing` lies in the range `(from, to]` (its position among
    /// the entries at its height counts).
    fn in_range(&self, from: ForcedCursor, to: ForcedCursor, listing: &ForcedListing) -> bool {
        let Ok(arweave) = self.arweave.lock() else { return false };
        let mut at_height: Vec<ForcedListing> = arweave
            .forced_mined(&self.params.name)
            .into_iter()
            .filter(|(_, height)| *height == listing.height)
            .map(|(arweave_id, height)| ForcedListing { arweave_id, height, size: 0 })
            .collect();
        bridge::forced::sort_listings(&mut at_height);
        bridge::forced::expected(from, to, &at_height).iter().any(|l| l.arweave_id == listing.arweave_id)
    }

    /// Users' forced traffic, one tick: the forced user's deposit, then now and then an entry.
    pub(crate) fn forced_users_turn(&mut self) {
        if !self.forced.funded {
            self.forced.funded = true;
            let user = self.forced.user.address();
            let tx_hash = self.forced.rng.bytes32();
            self.deposit_for(user, 5, tx_hash);
            return;
        }
        if !self.forced.rng.chance(1_000_000 / 60) {
            return;
        }
        let id = self.forced.rng.bytes32();
        let kind = self.forced.rng.below(100);
        let network = self.params.name.clone();
        let (what, data, size, network) = match kind {
            0..50 => match self.forced_user_tx() {
                Some((what, bytes)) => (what, bytes.clone(), bytes.len() as u64, network),
                None => return,
            },
            50..70 => match self.applied_copy() {
                Some(bytes) => ("copy of an applied transaction", bytes.clone(), bytes.len() as u64, network),
                None => return,
            },
            70..85 => ("junk", self.forced.rng.bytes32().to_vec(), 32, network),
            85..95 => {
                ("too large", self.forced.rng.bytes32().to_vec(), bridge::forced::MAX_FORCED_TX_BYTES + 1, network)
            }
            _ => ("another network's", self.forced.rng.bytes32().to_vec(), 32, "other".into()),
        };
        if let Ok(mut arweave) = self.arweave.lock() {
            arweave.post_forced(id, chains::da::APP_NAME, &network, data, size);
        }
        if network == self.params.name {
            self.forced.posted.insert(id, what);
        }
        if kind < 50 {
            self.forced.own_pending = Some(id);
        }
        self.log(format!("forced entry {} posted: {what}", short(&id)));
    }

    /// The forced user's next transaction (its nonce, once the last one is recorded): a
    /// transfer to a user or a withdrawal, of part of its balance on the coordinator's ledger.
    fn forced_user_tx(&mut self) -> Option<(&'static str, Vec<u8>)> {
        if self.forced.own_pending.is_some() {
            return None;
        }
        let sequencer = self.coordinator.sequencer.as_ref()?;
        let wallet = &self.forced.user;
        let nonce = sequencer.state().nonce(&wallet.address());
        let balance = sequencer.state().balance(&wallet.address(), &AssetId::Eth).0;
        if balance == 0 {
            return None;
        }
        let amount = Amount(1 + (self.forced.rng.below(u64::MAX) as u128) % (balance / 4).max(1));
        let to = self.users[self.forced.rng.below(self.users.len() as u64) as usize].address();
        let domain = bridge::eip712::Domain::new(&self.params);
        let (what, tx) = if self.forced.rng.chance(300_000) {
            let mut recipient = [0u8; 20];
            recipient.copy_from_slice(&self.forced.rng.bytes32()[..20]);
            recipient[0] |= 1;
            let withdraw = Withdraw {
                from: wallet.address(),
                asset: AssetId::Eth,
                amount,
                fee: Amount(0),
                recipient: format!("0x{}", hex::encode(recipient)),
                nonce,
            };
            ("the forced user's withdrawal", UserTx::Withdraw(withdraw))
        } else {
            let transfer = Transfer { from: wallet.address(), to, asset: AssetId::Eth, amount, fee: Amount(0), nonce };
            ("the forced user's transfer", UserTx::Transfer(transfer))
        };
        let signed = wallet.sign(tx, &domain);
        let bytes = bridge::forced::encode_payload(&signed);
        Some((what, bytes))
    }

    /// A transaction the coordinator acknowledged, posted again: it must never apply twice.
    fn applied_copy(&mut self) -> Option<Vec<u8>> {
        let domain = bridge::eip712::Domain::new(&self.params);
        let acked: Vec<&bridge::SignedUserTx> =
            self.sent.iter().filter(|tx| self.acked.contains_key(&tx.tx.signing_hash(&domain))).collect();
        if acked.is_empty() {
            return None;
        }
        let pick = acked[self.forced.rng.below(acked.len() as u64) as usize];
        Some(bridge::forced::encode_payload(pick))
    }

    /// After healing: every entry of the network that has been safe for a while is in a batch
    /// the coordinator sealed, unless the coordinator censors.
    pub(crate) fn check_forced_end(&mut self) {
        if self.attack.as_ref().is_some_and(|a| a.kind == AttackKind::CensorsForced) {
            return;
        }
        let (entries, tip) = match self.arweave.lock() {
            Ok(arweave) => (arweave.forced_mined(&self.params.name), arweave.height()),
            Err(_) => return,
        };
        let stale = entries.into_iter().find(|(id, height)| {
            height + RULES.confirmations - 1 + RECORD_WITHIN_BLOCKS <= tip && !self.forced.recorded.contains_key(id)
        });
        if let Some((id, height)) = stale {
            let what = self.forced.posted.get(&id).copied().unwrap_or("an entry");
            self.violate(
                "forced-included",
                format!("forced entry {} ({what}, height {height}) is in no batch at Arweave height {tip}", short(&id)),
            );
        }
    }
}

fn short(id: &[u8; 32]) -> String {
    hex::encode(&id[..4])
}

/// The forced task's sequencer edge in the simulator: the coordinator's own sequencer, behind
/// what a censoring coordinator does to a section before it takes it.
struct ForcedEdge<'a> {
    sequencer: &'a mut coordinator::sequencer::Sequencer,
    censoring: bool,
    /// The entry the coordinator keeps out, until a batch's range passes it.
    dropped: Option<ForcedListing>,
    /// The entry dropped this turn, for the trace.
    dropping: Option<String>,
    /// The sequencer's own failure (its disk), which stops the coordinator.
    failed: Option<coordinator::sequencer::SequencerError>,
}

impl ForcedSequencer for ForcedEdge<'_> {
    async fn forced_cursor(&mut self) -> Result<Option<ForcedCursor>, coordinator::sequencer::SequencerError> {
        Ok(self.sequencer.forced_cursor())
    }

    async fn include_forced(
        &mut self,
        mut work: ForcedWork,
        timestamp: u64,
    ) -> Result<Vec<bridge::batch::SealedBatch>, String> {
        match self.dropped {
            Some(dropped) if self.censoring => work.entries.retain(|e| e.listing.arweave_id != dropped.arweave_id),
            Some(_) => self.dropped = None,
            None if self.censoring
                && !work.entries.is_empty()
                && (work.entries.len() >= 2 || self.sequencer.open_len() > 0) =>
            {
                let entry = work.entries.remove(0);
                self.dropping = Some(short(&entry.listing.arweave_id));
                self.dropped = Some(entry.listing);
            }
            None => {}
        }
        self.sequencer.include_forced(work, timestamp).await.map_err(|error| {
            let shown = error.to_string();
            self.failed = Some(error);
            shown
        })
    }
}
