//! A watchman on duty: the turn its process runs forever under `chains::task`'s supervisor.
//! Each turn replays and settles ([`Watchman::step`]), judges the vault's solvency every
//! [`SOLVENCY_EVERY`] turns and halts signing on a shortfall, pauses the Ethereum vault once
//! signing is halted (with a guardian key), and signs the checkpoints that are due.
//!
//! What a turn must do is decided by [`Duties`], which does no I/O (DESIGN §7, "decides without
//! doing"); [`OnDuty`] is the shell that does it. Every failure of a turn is transient: the
//! node, the DA or the store may come back, and a halted book stays halted meanwhile.

use std::sync::Arc;

use chains::ethereum::{Guardian, SubmitError};
use chains::task::{Task, TaskError};
use tokio::sync::{Mutex, watch};
use tss::TssNode;

use super::book::SettlementBook;
use super::checkpoint::CheckpointDuty;
use super::run::{StepReport, Watchman};
use crate::follower::{FollowError, Waiting};
use crate::solvency::{SolvencyError, SolvencyGuard, Verdict};

/// The name of the watchman's turn in `/health` and the `task` label of `bridge_task_*`.
pub const WATCHMAN_TASK: &str = "watchman";

/// Solvency is judged on turns 1, 1 + this, 1 + 2 × this, …: it reads both chains' nodes, and a
/// vault drained between two judgements is still caught within this many turns.
pub const SOLVENCY_EVERY: u64 = 10;

/// The most batches one turn replays, so that settling and the other duties are not starved
/// while a watchman catches up.
pub const STEP_BATCHES: usize = 64;

/// What one turn must do besides stepping the replay, decided before any of it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnPlan {
    /// The turn number, from 1.
    pub turn: u64,
    pub judge_solvency: bool,
}

/// What a solvency judgement asks of the watchman.
#[derive(Debug)]
pub enum Judged {
    /// A shortfall: stop all signing, for this reason.
    Halt(String),
    /// Solvent, or not judged now (behind the DA, waiting for a node): nothing to do.
    Fine(Verdict),
    /// The chains could not be read: the turn failed (transient), nothing is halted.
    Failed(SolvencyError),
}

/// A pause this many blocks deep is final: an Ethereum reorg no longer drops it, and the
/// watchman stops looking (an unpause after that is the group's decision, not a lost pause).
/// Ethereum finalizes in two epochs, 64 blocks.
pub const PAUSE_FINAL_BLOCKS: u64 = 64;

/// The watchman's decisions across turns: when solvency is due, what a verdict means, and
/// whether the vault still needs pausing. Pure: the shell tells it what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duties {
    turn: u64,
    /// This watchman holds a guardian key (may pause the vault).
    guardian: bool,
    /// The block from which the vault is known paused (this watchman's pause was mined there,
    /// or the vault was found paused at that tip), until the pause is final.
    paused_since: Option<u64>,
    /// The pause is [`PAUSE_FINAL_BLOCKS`] deep: never looked at again.
    pause_final: bool,
}

impl Duties {
    pub fn new(guardian: bool) -> Self {
        Duties { turn: 0, guardian, paused_since: None, pause_final: false }
    }

    /// Starts the next turn.
    pub fn begin(&mut self) -> TurnPlan {
        self.turn += 1;
        TurnPlan { turn: self.turn, judge_solvency: self.turn % SOLVENCY_EVERY == 1 }
    }

    /// What a judgement (or the failure to make one) asks.
    pub fn judged(result: Result<Verdict, SolvencyError>) -> Judged {
        match result {
            Ok(Verdict::Shortfall { why, .. }) => Judged::Halt(why),
            Ok(verdict) => Judged::Fine(verdict),
            Err(error) => Judged::Failed(error),
        }
    }

    /// Whether to look at the vault's pause this turn (and pause it if it is not), given
    /// whether signing is halted: with a guardian, every turn until the pause is final. A pause
    /// that failed is sent again, and so is one an Ethereum reorg dropped: a pause mined is not
    /// yet a pause kept (a real bug the simulator found: every watchman took its mined pause
    /// for good, a reorg dropped it, and deposits flowed into the vault of a history they had
    /// alarmed).
    pub fn pause_due(&self, halted: bool) -> bool {
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::MinedPauseIsKept) {
            return halted && self.guardian && self.paused_since.is_none();
        }
        halted && self.guardian && !self.pause_final
    }

    /// This watchman's pause was mined in block `block`: it is final [`PAUSE_FINAL_BLOCKS`]
    /// later.
    pub fn pause_mined(&mut self, block: u64) {
        self.paused_since = Some(block);
        self.pause_final = false;
    }

    /// The vault reads paused at tip `tip` (this watchman's pause, or anyone's): final once
    /// [`PAUSE_FINAL_BLOCKS`] have passed since it was first known paused.
    pub fn vault_paused(&mut self, tip: u64) {
        let since = *self.paused_since.get_or_insert(tip);
        self.pause_final = tip >= since.saturating_add(PAUSE_FINAL_BLOCKS);
    }

    /// Whether the pause is final (no more looking).
    pub fn pause_final(&self) -> bool {
        self.pause_final
    }
}

/// Why a turn failed; every kind is retried at the next turn.
#[derive(Debug, thiserror::Error)]
pub enum DutyError {
    #[error("the replay: {0}")]
    Step(#[from] FollowError),
    #[error(transparent)]
    Solvency(#[from] SolvencyError),
    #[error("pausing the Ethereum vault failed: {0}; retrying")]
    Pause(#[from] SubmitError),
}

/// One turn's failures as the supervisor sees them: transient, all named.
fn turn_error(failures: &[DutyError]) -> Result<(), TaskError> {
    if failures.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Err(TaskError::Transient(text.join("; ")))
}

/// The shell around [`Duties`]: a [`Task`] for `chains::task::Supervisor::spawn`.
#[derive(Debug)]
pub struct OnDuty {
    /// Shared with the process, which takes it after the last turn to save the final snapshot;
    /// a turn holds it throughout, so that is always between turns.
    watchman: Arc<Mutex<Watchman>>,
    book: SettlementBook,
    tss: Arc<TssNode>,
    duties: Duties,
    solvency: SolvencyGuard,
    guardian: Option<Guardian>,
    checkpoints: Option<CheckpointDuty>,
    /// What the replay waits for on this watchman's own nodes, after each turn (for `/health`).
    waiting: watch::Sender<Option<Waiting>>,
}

impl OnDuty {
    pub fn new(watchman: Watchman, solvency: SolvencyGuard) -> Self {
        let book = watchman.book().clone();
        let tss = watchman.tss_shared();
        OnDuty {
            watchman: Arc::new(Mutex::new(watchman)),
            book,
            tss,
            duties: Duties::new(false),
            solvency,
            guardian: None,
            checkpoints: None,
            waiting: watch::channel(None).0,
        }
    }

    /// Pause the Ethereum vault with `guardian` once signing halts.
    pub fn with_guardian(mut self, guardian: Option<Guardian>) -> Self {
        self.duties = Duties::new(guardian.is_some());
        self.guardian = guardian;
        self
    }

    pub fn with_checkpoints(mut self, checkpoints: Option<CheckpointDuty>) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// What the replay waits for, as of the last turn.
    pub fn waiting(&self) -> watch::Receiver<Option<Waiting>> {
        self.waiting.subscribe()
    }

    /// The watchman, for the process's clean stop: locking it waits for the turn in flight.
    pub fn watchman(&self) -> Arc<Mutex<Watchman>> {
        self.watchman.clone()
    }

    async fn pause(&mut self, why: &str) -> Result<(), DutyError> {
        let Some(guardian) = &self.guardian else { return Ok(()) };
        match guardian.pause().await {
            Ok(receipt) => {
                let tip = guardian.block_number().await?;
                if let Some(receipt) = &receipt {
                    self.duties.pause_mined(receipt.block_number.unwrap_or(tip));
                    tracing::error!(%why, "the Ethereum vault is paused");
                }
                self.duties.vault_paused(tip);
                if self.duties.pause_final() {
                    tracing::info!("the vault's pause is final");
                }
                Ok(())
            }
            Err(error) => {
                // An alarm left unanswered: louder than the supervisor's warning.
                tracing::error!(%error, "pausing the Ethereum vault failed; retrying");
                Err(DutyError::Pause(error))
            }
        }
    }
}

impl Task for OnDuty {
    async fn turn(&mut self) -> Result<(), TaskError> {
        let plan = self.duties.begin();
        let mut failures = Vec::new();
        let watchman = self.watchman.clone();
        let mut watchman = watchman.lock().await;
        // A failed step does not skip the rest: a halted book must still pause the vault while
        // the DA is unreachable.
        match watchman.step(STEP_BATCHES).await {
            Ok(report) => log_step(report),
            Err(error) => failures.push(DutyError::Step(error)),
        }
        self.waiting.send_replace(watchman.follower().status().waiting);
        if plan.judge_solvency {
            // Judged only when caught up with the DA; see `SolvencyGuard::judge`.
            match Duties::judged(self.solvency.judge(watchman.follower()).await) {
                Judged::Halt(why) => {
                    tracing::error!(%why, "shortfall: this watchman stops signing");
                    self.book.halt(why);
                }
                Judged::Fine(verdict) => tracing::debug!(?verdict, "solvency"),
                Judged::Failed(error) => failures.push(error.into()),
            }
        }
        let halted = self.book.halted();
        if self.duties.pause_due(halted.is_some())
            && let Some(why) = halted
            && let Err(error) = self.pause(&why).await
        {
            failures.push(error);
        }
        if let Some(duty) = &mut self.checkpoints {
            duty.turn(&self.tss, &self.book).await;
        }
        drop(watchman);
        turn_error(&failures)
    }
}

fn log_step(report: StepReport) {
    if report.replayed > 0 || !report.settled.is_empty() || !report.payouts.is_empty() {
        tracing::info!(
            replayed = report.replayed,
            hard_final = report.hard_final,
            settled = report.settled.len(),
            payouts = ?report.payouts,
            "watchman turn"
        );
    }
    if let Some(error) = report.settle_error {
        tracing::warn!(%error, "settling stopped this turn");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use bridge::Chain;

    use super::*;

    fn shortfall() -> Result<Verdict, SolvencyError> {
        Ok(Verdict::Shortfall { why: "the ETH vault holds 1 but the ledger owes 2".into(), report: Vec::new() })
    }

    fn unreadable() -> Result<Verdict, SolvencyError> {
        Err(SolvencyError { chain: Chain::Ethereum, reason: "connection refused".into() })
    }

    #[test]
    fn solvency_is_judged_on_the_first_turn_and_every_tenth_after() {
        let mut duties = Duties::new(false);
        let judged: Vec<u64> = (0..35).map(|_| duties.begin()).filter(|p| p.judge_solvency).map(|p| p.turn).collect();
        assert_eq!(judged, [1, 11, 21, 31]);
    }

    #[test]
    fn a_shortfall_halts_and_nothing_else_does() {
        match Duties::judged(shortfall()) {
            Judged::Halt(why) => assert!(why.contains("owes 2"), "{why}"),
            other => panic!("a shortfall must halt: {other:?}"),
        }
        assert!(matches!(Duties::judged(Ok(Verdict::Solvent(Vec::new()))), Judged::Fine(_)));
        assert!(matches!(Duties::judged(Ok(Verdict::NotJudged("behind the DA".into()))), Judged::Fine(_)));
    }

    #[test]
    fn a_failed_solvency_read_is_transient_and_does_not_halt() {
        let Judged::Failed(error) = Duties::judged(unreadable()) else { panic!("an unreadable node is no verdict") };
        let turn = turn_error(&[error.into()]);
        match turn {
            Err(TaskError::Transient(why)) => assert!(why.contains("connection refused"), "{why}"),
            other => panic!("a failed read is retried, never fatal: {other:?}"),
        }
    }

    #[test]
    fn a_halted_book_with_a_guardian_looks_at_the_pause_until_it_is_final() {
        let mut duties = Duties::new(true);
        assert!(!duties.pause_due(false), "nothing halted, nothing paused");
        assert!(duties.pause_due(true));
        // The pause failed: nothing is recorded, the next turn tries again.
        assert!(duties.pause_due(true));
        duties.pause_mined(100);
        duties.vault_paused(101);
        assert!(duties.pause_due(true), "a pause one block deep may still be dropped by a reorg");
        // A reorg dropped it: the shell finds the vault unpaused and sends it again.
        duties.pause_mined(105);
        duties.vault_paused(105 + PAUSE_FINAL_BLOCKS - 1);
        assert!(duties.pause_due(true), "counted from the pause mined again, not the dropped one");
        duties.vault_paused(105 + PAUSE_FINAL_BLOCKS);
        assert!(duties.pause_final());
        for _ in 0..3 {
            assert!(!duties.pause_due(true), "a final pause is never looked at again");
        }
    }

    #[test]
    fn a_vault_found_paused_counts_from_when_it_was_first_seen() {
        let mut duties = Duties::new(true);
        duties.vault_paused(7);
        duties.vault_paused(7 + PAUSE_FINAL_BLOCKS - 1);
        assert!(duties.pause_due(true));
        duties.vault_paused(7 + PAUSE_FINAL_BLOCKS);
        assert!(!duties.pause_due(true));
    }

    #[test]
    fn without_a_guardian_the_vault_is_never_paused() {
        let duties = Duties::new(false);
        assert!(!duties.pause_due(true));
        assert!(!duties.pause_due(false));
    }

    #[test]
    fn every_failure_of_a_turn_is_named_and_transient() {
        assert_eq!(turn_error(&[]), Ok(()));
        let failures = [
            DutyError::Pause(SubmitError::Rpc("timeout".into())),
            DutyError::Solvency(SolvencyError { chain: Chain::Bitcoin, reason: "401".into() }),
        ];
        let Err(TaskError::Transient(why)) = turn_error(&failures) else { panic!("transient") };
        assert!(why.contains("pausing the Ethereum vault failed: the Ethereum node: timeout"), "{why}");
        assert!(why.contains("could not judge btc now: 401"), "{why}");
    }
}
