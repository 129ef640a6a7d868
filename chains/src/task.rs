//! Background work that must not die in silence. A [`Task`] is a loop body (a watcher's poll, a
//! publication round) that says whether a failure is worth another try ([`TaskError::Transient`]:
//! a node or a store that may come back) or not ([`TaskError::Fatal`]: a deep reorg, a DA that
//! contradicts us; a human decides). The [`Supervisor`] runs its turns, retries a failed or
//! panicked turn after a bounded exponential backoff, marks a task dead on a fatal error, and
//! keeps a health view of every task for `/health`, with metrics per task:
//! `bridge_task_restarts_total{task}` and `bridge_task_state{task}` (0 running, 1 restarting,
//! 2 dead). A process waits on [`Supervisor::failed`] and stops when a task is dead.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a turn failed, and whether another try can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Worth another try after a backoff (a node down, a timeout, a store busy).
    #[error("{0}")]
    Transient(String),
    /// Another try gives the same answer: the task is dead and the process should stop for a
    /// human to decide (docs/OPERATIONS.md).
    #[error("{0}")]
    Fatal(String),
}

impl TaskError {
    pub fn transient(error: impl fmt::Display) -> Self {
        TaskError::Transient(error.to_string())
    }

    pub fn fatal(error: impl fmt::Display) -> Self {
        TaskError::Fatal(error.to_string())
    }
}

/// A loop body run by the [`Supervisor`]. A turn must leave the task's state consistent at every
/// await (progress recorded only once a unit of work is done), because a failed or panicked turn
/// is simply run again on the same value.
pub trait Task: Send + 'static {
    /// One unit of work: a poll, a round.
    fn turn(&mut self) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Waits until the next turn is due after a good one; by default `interval`. A task woken by
    /// an event (a sealed batch) waits for it here.
    fn idle(&mut self, interval: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(interval)
    }
}

/// The longest wait between two tries of a failing task: a node that comes back is noticed
/// within a minute, and a node that stays down costs one request a minute.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// When a task's turns run: every `interval` while they succeed; after a failure, `first_retry`
/// doubled at each consecutive failure up to `max_retry`. Retries are not counted down to a
/// stop: a node down for an hour is not fixed by stopping the process, and `/health` and the
/// metrics say it is down meanwhile; only a fatal error stops a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
}

impl Schedule {
    /// Turns every `interval`; the first retry after `interval` too, doubling up to [`MAX_BACKOFF`].
    pub fn every(interval: Duration) -> Self {
        Schedule { interval, first_retry: interval, max_retry: MAX_BACKOFF.max(interval) }
    }

    /// The wait before try `attempt` (1 for the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first_retry.saturating_mul(1u32 << doublings).min(self.max_retry)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Its last turn succeeded.
    Running,
    /// Its last turn failed; it is tried again after a backoff.
    Restarting,
    /// It failed fatally or ended: the process should stop.
    Dead,
}

impl TaskState {
    fn gauge(self) -> f64 {
        match self {
            TaskState::Running => 0.0,
            TaskState::Restarting => 1.0,
            TaskState::Dead => 2.0,
        }
    }
}

/// One task as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskHealth {
    pub task: String,
    pub state: TaskState,
    /// Consecutive failed turns (0 while running).
    pub attempt: u32,
    /// Failed turns since the process started.
    pub restarts: u64,
    /// The last failure, kept after the task recovers.
    pub last_error: Option<String>,
}

impl TaskHealth {
    /// A task not run yet: shown as running.
    fn new(task: &str) -> Self {
        TaskHealth { task: task.to_owned(), state: TaskState::Running, attempt: 0, restarts: 0, last_error: None }
    }
}

/// The first task that died, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub task: String,
    pub error: String,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} task is dead: {}", self.task, self.error)
    }
}

#[derive(Debug)]
struct Shared {
    /// Each entry is replaced whole under the lock and nothing under it can panic, so a
    /// poisoned map is still consistent and is read through.
    tasks: RwLock<BTreeMap<String, TaskHealth>>,
    failed: watch::Sender<Option<TaskFailure>>,
}

/// Runs tasks and keeps their health. Cheap to clone; clones share the view.
#[derive(Debug, Clone)]
pub struct Supervisor(Arc<Shared>);

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor(Arc::new(Shared { tasks: RwLock::default(), failed: watch::channel(None).0 }))
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor::default()
    }

    /// Runs `task`'s turns on `schedule` until a fatal error (then it is dead), on the runtime.
    /// When the next turn runs is the [`Pacer`]'s decision, the one the simulator drives on
    /// simulated time; this shell adds the runtime's clock, panics caught, logs and metrics.
    pub fn spawn<T: Task>(&self, name: &str, mut task: T, schedule: Schedule) -> JoinHandle<()> {
        let report = self.reporter(name);
        let mut pacer = Pacer::new(name, schedule);
        tokio::spawn(async move {
            loop {
                let outcome = match AssertUnwindSafe(task.turn()).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(panic) => Err(TaskError::Transient(format!("panicked: {}", panic_message(panic.as_ref())))),
                };
                let recovered = pacer.health().state == TaskState::Restarting;
                let attempts = pacer.health().attempt;
                let next = pacer.after(outcome.as_ref().map(|_| ()));
                report.show(pacer.health());
                match (next, outcome) {
                    (Next::Idle(interval), _) => {
                        if recovered {
                            tracing::info!(task = %report.task, attempts, "task recovered");
                        }
                        task.idle(interval).await;
                    }
                    (Next::Retry { attempt, after }, Err(error)) => {
                        metrics::counter!("bridge_task_restarts_total", "task" => report.task.clone()).increment(1);
                        tracing::warn!(task = %report.task, attempt, %error, "task failed; retrying");
                        tokio::time::sleep(after).await;
                    }
                    (Next::Dead, outcome) => {
                        let why = outcome.err().map(|e| e.to_string()).unwrap_or_default();
                        report.dead(&why);
                        return;
                    }
                    // A retry follows a failed turn only; never reached, but never a busy loop.
                    (Next::Retry { after, .. }, Ok(())) => tokio::time::sleep(after).await,
                }
            }
        })
    }

    /// Runs `work`, which is never meant to end (the sequencer, the deposit intake): when it
    /// ends, however, the task is dead.
    pub fn spawn_essential<F>(&self, name: &str, work: F) -> JoinHandle<()>
    where
        F: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let report = self.reporter(name);
        tokio::spawn(async move {
            let why = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(Ok(())) => "ended".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            report.dead(&why);
        })
    }

    /// Reports the turns of task `name`, which shows as running until told otherwise. Private:
    /// every long-running loop is a [`Task`], so nothing outside runs and reports its own turns.
    fn reporter(&self, name: &str) -> TaskReporter {
        let report = TaskReporter { shared: self.0.clone(), task: name.to_owned() };
        report.show(&TaskHealth::new(name));
        report
    }

    /// Every task, by name.
    pub fn health(&self) -> Vec<TaskHealth> {
        self.0.tasks.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// The first task that died, if one has.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.0.failed.borrow().clone()
    }

    /// Waits until a task is dead; returns the first.
    pub async fn failed(&self) -> TaskFailure {
        let mut seen = self.0.failed.subscribe();
        match seen.wait_for(Option::is_some).await {
            Ok(failure) => failure.clone().unwrap_or_else(|| TaskFailure { task: String::new(), error: String::new() }),
            // The sender lives as long as `self`: unreachable, but never a false failure.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Reports one task's turns to its [`Supervisor`].
#[derive(Debug, Clone)]
struct TaskReporter {
    shared: Arc<Shared>,
    task: String,
}

impl TaskReporter {
    /// Shows the task's health as its pacer now has it.
    fn show(&self, health: &TaskHealth) {
        self.set(|shown| *shown = health.clone());
    }

    /// The task is dead (a fatal error, or an essential task that ended): the process should
    /// stop, and the first death is the one [`Supervisor::failed`] reports.
    fn dead(&self, why: &str) {
        self.set(|health| {
            health.state = TaskState::Dead;
            health.last_error = Some(why.to_owned());
        });
        tracing::error!(task = %self.task, error = %why, "task dead: the process stops");
        let failure = TaskFailure { task: self.task.clone(), error: why.to_owned() };
        self.shared.failed.send_if_modified(|first| {
            let changed = first.is_none();
            first.get_or_insert(failure);
            changed
        });
    }

    fn set<R>(&self, change: impl FnOnce(&mut TaskHealth) -> R) -> R {
        let mut tasks = self.shared.tasks.write().unwrap_or_else(PoisonError::into_inner);
        let health = tasks.entry(self.task.clone()).or_insert_with(|| TaskHealth::new(&self.task));
        let out = change(health);
        metrics::gauge!("bridge_task_state", "task" => self.task.clone()).set(health.state.gauge());
        out
    }
}

/// What a task does after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The turn succeeded: the next one after `interval` (or sooner, on the task's event).
    Idle(Duration),
    /// The turn failed and is worth another try: try `attempt` (1 for the first) after `after`.
    Retry { attempt: u32, after: Duration },
    /// The turn failed fatally: no more turns; the process stops.
    Dead,
}

/// A task's turns as the supervisor decides them, apart from any clock or runtime: each outcome
/// in, what comes next out, and the health `/health` shows. [`Supervisor::spawn`] drives it
/// with the runtime's timers; the simulator drives the same pacer with simulated time, so the
/// backoff and the line between a retry and a dead process are one piece of code.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: Schedule,
    health: TaskHealth,
}

impl Pacer {
    pub fn new(task: &str, schedule: Schedule) -> Self {
        Pacer { schedule, health: TaskHealth::new(task) }
    }

    /// Records a turn's outcome and says what comes next. A dead task stays dead.
    pub fn after(&mut self, outcome: Result<(), &TaskError>) -> Next {
        let health = &mut self.health;
        if health.state == TaskState::Dead {
            return Next::Dead;
        }
        match outcome {
            Ok(()) => {
                health.state = TaskState::Running;
                health.attempt = 0;
                Next::Idle(self.schedule.interval)
            }
            Err(TaskError::Transient(why)) => {
                health.state = TaskState::Restarting;
                health.attempt = health.attempt.saturating_add(1);
                health.restarts = health.restarts.saturating_add(1);
                health.last_error = Some(why.clone());
                Next::Retry { attempt: health.attempt, after: self.schedule.backoff(health.attempt) }
            }
            Err(TaskError::Fatal(why)) => {
                health.state = TaskState::Dead;
                health.last_error = Some(why.clone());
                Next::Dead
            }
        }
    }

    pub fn health(&self) -> &TaskHealth {
        &self.health
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// SIGTERM (systemd, `docker stop`) or Ctrl-C: what every server waits on before it stops
/// taking work and saves its state.
///
/// Installed before a server says it listens, not when the wait is first polled: a SIGTERM
/// that came between the two took the signal's default action and killed the process without
/// its final snapshot (a test terminating a coordinator at once after its start saw it).
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    /// Catches SIGTERM from now on (Ctrl-C is caught once [`ShutdownSignal::received`] waits).
    pub fn install() -> ShutdownSignal {
        ShutdownSignal {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// Resolves on SIGTERM or Ctrl-C.
    pub async fn received(self) {
        #[cfg(unix)]
        if let Some(mut terminate) = self.terminate {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;

    /// Fails (or panics) on the turns it is told to, and reports each turn's start time.
    struct Scripted {
        script: Vec<Option<TaskError>>,
        panic_on: Option<usize>,
        turns: usize,
        started: mpsc::UnboundedSender<Instant>,
    }

    impl Task for Scripted {
        async fn turn(&mut self) -> Result<(), TaskError> {
            let turn = self.turns;
            self.turns += 1;
            let _ = self.started.send(Instant::now());
            if self.panic_on == Some(turn) {
                panic!("a broken invariant");
            }
            match self.script.get(turn).cloned().flatten() {
                Some(error) => Err(error),
                None => Ok(()),
            }
        }
    }

    fn schedule() -> Schedule {
        Schedule {
            interval: Duration::from_secs(1),
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_millis(300),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let s = schedule();
        let waits: Vec<u128> = (1..=6).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300, 300, 300, 300]);
        assert_eq!(s.backoff(u32::MAX), Duration::from_millis(300));
        assert_eq!(Schedule::every(Duration::from_millis(100)).backoff(40), MAX_BACKOFF);
    }

    /// The pacer alone, as the simulator drives it: no runtime, no clock.
    #[test]
    fn the_pacer_backs_off_recovers_and_stays_dead() {
        let mut pacer = Pacer::new("publisher", schedule());
        let down = TaskError::transient("gateway down");
        assert_eq!(pacer.after(Ok(())), Next::Idle(Duration::from_secs(1)));
        let retries: Vec<Next> = (0..4).map(|_| pacer.after(Err(&down))).collect();
        let waits = [100, 200, 300, 300].map(Duration::from_millis);
        assert_eq!(
            retries,
            (1..=4).zip(waits).map(|(attempt, after)| Next::Retry { attempt, after }).collect::<Vec<_>>()
        );
        assert_eq!(pacer.health().state, TaskState::Restarting);
        assert_eq!(pacer.after(Ok(())), Next::Idle(Duration::from_secs(1)));
        let health = pacer.health();
        assert_eq!((health.state, health.attempt, health.restarts), (TaskState::Running, 0, 4));
        assert_eq!(health.last_error.as_deref(), Some("gateway down"), "the last failure is kept");
        // After recovering, the backoff starts again from the first retry.
        assert_eq!(pacer.after(Err(&down)), Next::Retry { attempt: 1, after: Duration::from_millis(100) });
        assert_eq!(pacer.after(Err(&TaskError::fatal("the DA filed batch 3 as 4"))), Next::Dead);
        assert_eq!(pacer.after(Ok(())), Next::Dead, "a dead task is never run again");
        assert_eq!(pacer.health().state, TaskState::Dead);
        assert_eq!(pacer.health().last_error.as_deref(), Some("the DA filed batch 3 as 4"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_restarts_with_backoff_and_recovers() {
        let (started, mut turns) = mpsc::unbounded_channel();
        let down = || Some(TaskError::transient("connection refused"));
        let task = Scripted { script: vec![down(), down(), down(), down()], panic_on: None, turns: 0, started };
        let supervisor = Supervisor::new();
        let _run = supervisor.spawn("watcher", task, schedule());
        let mut at = vec![turns.recv().await.unwrap()];
        for _ in 0..4 {
            at.push(turns.recv().await.unwrap());
        }
        let gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // Four failures: waits of 100, 200, then the bound of 300 ms.
        assert_eq!(gaps, [100, 200, 300, 300]);
        // The fifth turn succeeded: running again, the failures remembered.
        let next = turns.recv().await.unwrap();
        assert_eq!((next - at[4]).as_millis(), 1_000, "a good turn waits the interval");
        let health = supervisor.health();
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].state, TaskState::Running);
        assert_eq!(health[0].attempt, 0);
        assert_eq!(health[0].restarts, 4);
        assert_eq!(health[0].last_error.as_deref(), Some("connection refused"));
        assert!(supervisor.failure().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn health_shows_a_restarting_task_with_its_error_and_attempt() {
        let (started, mut turns) = mpsc::unbounded_channel();
        let script = vec![None, Some(TaskError::transient("node down")), Some(TaskError::transient("node down"))];
        let supervisor = Supervisor::new();
        let _run = supervisor.spawn("watcher", Scripted { script, panic_on: None, turns: 0, started }, schedule());
        for _ in 0..3 {
            turns.recv().await.unwrap();
        }
        // The third turn has started and failed once it yields; the fourth is 200 ms away.
        tokio::task::yield_now().await;
        let health = supervisor.health().remove(0);
        assert_eq!(health.state, TaskState::Restarting);
        assert_eq!(health.attempt, 2);
        assert_eq!(health.last_error.as_deref(), Some("node down"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_error_stops_the_task_and_names_it() {
        let (started, mut turns) = mpsc::unbounded_channel();
        let script = vec![Some(TaskError::transient("timeout")), Some(TaskError::fatal("deep reorg at block 7"))];
        let supervisor = Supervisor::new();
        let run =
            supervisor.spawn("ethereum-deposits", Scripted { script, panic_on: None, turns: 0, started }, schedule());
        let failure = supervisor.failed().await;
        assert_eq!(failure, TaskFailure { task: "ethereum-deposits".into(), error: "deep reorg at block 7".into() });
        run.await.unwrap();
        // Two turns and no more.
        assert!(turns.recv().await.is_some());
        assert!(turns.recv().await.is_some());
        assert!(turns.recv().await.is_none(), "a dead task is not run again");
        let health = supervisor.health().remove(0);
        assert_eq!(health.state, TaskState::Dead);
        assert_eq!(health.last_error.as_deref(), Some("deep reorg at block 7"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_turn_is_retried_not_lost() {
        let (started, mut turns) = mpsc::unbounded_channel();
        let supervisor = Supervisor::new();
        let task = Scripted { script: vec![], panic_on: Some(0), turns: 0, started };
        let _run = supervisor.spawn("publisher", task, schedule());
        let first = turns.recv().await.unwrap();
        let second = turns.recv().await.unwrap();
        assert_eq!((second - first).as_millis(), 100);
        let health = supervisor.health().remove(0);
        assert_eq!(health.restarts, 1);
        assert_eq!(health.last_error.as_deref(), Some("panicked: a broken invariant"));
        assert!(supervisor.failure().is_none());
    }

    #[tokio::test]
    async fn an_essential_task_that_ends_is_dead() {
        let supervisor = Supervisor::new();
        let ends = Arc::new(AtomicU32::new(0));
        let counted = ends.clone();
        supervisor.spawn_essential("sequencer", async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let failure = supervisor.failed().await;
        assert_eq!(failure.task, "sequencer");
        assert_eq!(failure.error, "ended");
        assert_eq!(ends.load(Ordering::SeqCst), 1);
        supervisor.spawn_essential("intake", async { panic!("boom") });
        let deadline = Instant::now() + Duration::from_secs(10);
        while supervisor.health().iter().all(|h| h.task != "intake" || h.state != TaskState::Dead) {
            assert!(Instant::now() < deadline, "the panicked task never showed dead");
            tokio::task::yield_now().await;
        }
        // The first death is the one reported.
        assert_eq!(supervisor.failure().map(|f| f.task), Some("sequencer".into()));
    }
}
