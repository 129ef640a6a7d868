//! The coordinator's supervised tasks, turned as its binary's supervisor turns them: each holds
//! the real [`Task`] (the publisher's `PublishTask`, the DA snapshots' `DaSnapshots`) and the
//! supervisor's own [`Pacer`], which says after every turn when the next is due (the interval,
//! or a backoff after a failure) or that the task is dead. The binary waits on the runtime's
//! timers; here the wait is simulated time, so a DA outage costs the publisher the same retries
//! it costs the binary.
//!
//! The coordinator's posting gateway goes down now and then in the fault phase (a fault on a
//! stream of its own, [`GATEWAY_STREAM`], so that the rest of a seed's run is as before until
//! one happens): the publisher's turns fail, sealed batches wait in the ledger, and users wait
//! for hard finality until it comes back.
//!
//! `tasks-live`: no honest coordinator's task and no honest confirmer's follower dies (a fatal
//! error, by the task's own classification). A dead task stops its binary
//! (`Supervisor::failed`), so one that an outage, a reorg or a disk fault can kill would halt
//! the bridge until an operator steps in.

use chains::task::{Next, Pacer, Schedule, Task, TaskError, TaskState};

use crate::world::World;

/// The gateway outages' stream: the seed, xor this.
pub(crate) const GATEWAY_STREAM: u64 = 0x6a7e_0da0;

/// An outage of the coordinator's gateway starts in about one tick in 500 of the fault phase
/// (per million ticks).
const OUTAGE_PER_MILLION: u64 = 2_000;

/// One supervised task on simulated time.
pub(crate) struct Paced<T> {
    name: &'static str,
    task: T,
    pacer: Pacer,
    /// When its next turn runs (simulated ms; `u64::MAX` once dead).
    due_ms: u64,
    /// The event its idle waits on came while it was not idle: the next good turn is followed
    /// at once by another (a `Notify`'s stored permit).
    woken: bool,
}

impl<T: Task> Paced<T> {
    /// A task whose first turn is due at once, as the supervisor runs a task it spawns.
    pub(crate) fn new(name: &'static str, task: T, schedule: Schedule, now_ms: u64) -> Self {
        Paced { name, task, pacer: Pacer::new(name, schedule), due_ms: now_ms, woken: false }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn task(&self) -> &T {
        &self.task
    }

    /// The event the task's idle waits on (a sealed batch, for the publisher): an idle task
    /// turns at once; one backing off after a failure does not (the supervisor sleeps), but
    /// turns again at once after its next good turn.
    pub(crate) fn wake(&mut self, now_ms: u64) {
        match self.pacer.health().state {
            TaskState::Running => self.due_ms = self.due_ms.min(now_ms),
            TaskState::Restarting => self.woken = true,
            TaskState::Dead => {}
        }
    }

    /// Whether a turn is due at `now_ms`.
    pub(crate) fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.due_ms
    }

    /// Runs a turn if one is due: its outcome, and what the pacer made of it.
    pub(crate) async fn turn_if_due(&mut self, now_ms: u64) -> Option<(Result<(), TaskError>, Next)> {
        if !self.is_due(now_ms) {
            return None;
        }
        let outcome = self.task.turn().await;
        let next = self.pacer.after(outcome.as_ref().map(|_| ()));
        self.due_ms = match next {
            Next::Idle(_) if std::mem::take(&mut self.woken) => now_ms,
            Next::Idle(wait) | Next::Retry { after: wait, .. } => now_ms.saturating_add(millis(wait)),
            Next::Dead => u64::MAX,
        };
        Some((outcome, next))
    }
}

fn millis(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

impl World {
    /// What a supervised task's turn came to: a failure logged with the pacer's decision, and
    /// a dead task stops the coordinator's process, as `Supervisor::failed` stops the binary.
    pub(crate) fn coordinator_task_turned(&mut self, name: &str, outcome: Result<(), TaskError>, next: Next) {
        let error = match outcome {
            Ok(()) => return,
            Err(error) => error,
        };
        match next {
            Next::Retry { attempt, after } => {
                self.log(format!("coordinator's {name} task failed (try {attempt} in {} ms): {error}", millis(after)));
            }
            Next::Dead => {
                self.log(format!("coordinator's {name} task is dead: {error}; the process stops"));
                if self.attack.is_none() {
                    self.violate("tasks-live", format!("an honest coordinator's {name} task died: {error}"));
                }
                // An operator starts it again, as after a crash.
                self.stop_coordinator(RESTART_AFTER_DEATH_MS);
            }
            Next::Idle(_) => {}
        }
    }

    /// The coordinator's gateway goes down, and comes back when its outage ends or faults stop.
    pub(crate) fn gateway_faults(&mut self) {
        let now = self.now();
        let Ok(mut arweave) = self.arweave.lock() else { return };
        if let Some(until) = arweave.gateway_down_until()
            && (now >= until || !self.in_fault_phase())
        {
            arweave.set_gateway_down_until(None);
            drop(arweave);
            self.log("the coordinator's Arweave gateway is back");
            return;
        }
        if arweave.gateway_down_until().is_some()
            || !self.in_fault_phase()
            || !self.gateway_rng.chance(OUTAGE_PER_MILLION)
        {
            return;
        }
        let lasting = self.gateway_rng.between(30, 900) * 1000;
        arweave.set_gateway_down_until(Some(now + lasting));
        drop(arweave);
        self.faults += 1;
        self.log(format!("FAULT the coordinator's Arweave gateway is down for {} s", lasting / 1000));
    }
}

/// How long after a task's death its operator starts the coordinator again.
const RESTART_AFTER_DEATH_MS: u64 = 10 * 60_000;
