//! Running a sealed graph: one scheduler loop, one tokio task per started task.
//!
//! The scheduler owns all bookkeeping (dependency counters, the ready queue, results) and is
//! the only writer of it; started tasks report back through a `JoinSet`. So the hot path is a
//! few index operations per task, and there is no lock.
//!
//! Semantics, in the words of the tests:
//! - a task becomes ready when every dependency succeeded (or was cached); ready tasks start
//!   higher priority first, then in insertion order, under the global and per-class caps;
//! - after each wake-up the scheduler takes every completion at hand before it starts
//!   anything, the same rule as [`super::simulate::simulate`], so a replay predicts a run;
//! - a failed task's dependents are skipped (`DependencyFailed`, naming the dependency that
//!   did not succeed); fail-fast (default) then stops the run: nothing new starts, running
//!   tasks are cancelled, every task not started is skipped as `Cancelled(TaskFailed)`;
//! - `--keep-going` runs everything not downstream of a failure;
//! - an interrupt or the global timeout stops the run the same way; reasons escalate by
//!   taking the maximum ([`CancelReason`] is ordered);
//! - cancellation is cooperative: the task's token fires and the engine awaits its future so
//!   it can clean up; only a task still running [`CANCEL_GRACE`] later is dropped (its
//!   `Drop` impls still run, e.g. `kill_on_drop` children);
//! - a retried task keeps its slot during the backoff (the backoff is part of its cost, as in
//!   the simulator, and a retry never queues behind newer work); the backoff is cancellable;
//! - the per-task timeout applies to each attempt and is not retried;
//! - a panicking task fails with the panic message; the engine itself never panics on it.

use std::{
    any::Any,
    collections::{BTreeMap, HashMap},
    panic::AssertUnwindSafe,
    sync::Arc,
    time::Duration,
};

use futures::FutureExt;
use tokio::{
    sync::mpsc::UnboundedSender,
    task::{Id, JoinError, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    CancelReason, Class, Done, Event, EventKind, Graph, RetryPolicy, SkipReason, TaskCtx,
    TaskError, TaskOutcome, Work, simulate::ReadyQueue,
};

/// How long a cancelled task may take to return before the engine drops its future.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Concurrency limits: a global cap and optional per-class caps.
///
/// 0 means unlimited; a class without an entry is bounded by `jobs` only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    pub jobs: usize,
    pub per_class: BTreeMap<Class, usize>,
}

impl Limits {
    /// No cap at all.
    pub fn unlimited() -> Self {
        Limits::default()
    }
    /// At most `jobs` tasks at once (0 = unlimited).
    pub fn jobs(jobs: usize) -> Self {
        Limits {
            jobs,
            per_class: BTreeMap::new(),
        }
    }
    /// Adds a cap for one class (0 = unlimited).
    pub fn with_class(mut self, class: Class, cap: usize) -> Self {
        self.per_class.insert(class, cap);
        self
    }
}

pub struct RunOptions {
    pub limits: Limits,
    /// Go on with independent tasks after a failure.
    pub keep_going: bool,
    /// Global deadline for the whole run.
    pub timeout: Option<Duration>,
    /// Cancelled from outside (Ctrl-C): the run stops with [`CancelReason::Interrupted`].
    pub interrupt: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct TaskResult {
    pub id: Arc<str>,
    pub ready: Option<Duration>,
    pub start: Option<Duration>,
    pub end: Option<Duration>,
    pub outcome: TaskOutcome,
    pub attempts: u32,
    pub error: Option<String>,
    pub skip: Option<SkipReason>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    /// In the graph's insertion order.
    pub tasks: Vec<TaskResult>,
    pub makespan: Duration,
    pub cancelled: Option<CancelReason>,
}

impl RunSummary {
    /// True when every task succeeded, was cached or was restored.
    pub fn succeeded(&self) -> bool {
        self.cancelled.is_none()
            && self.tasks.iter().all(|t| {
                matches!(
                    t.outcome,
                    TaskOutcome::Succeeded | TaskOutcome::Cached | TaskOutcome::Restored
                )
            })
    }
}

/// Runs `graph` to the end and reports every task. Events go to `events` as they happen
/// (a closed receiver is fine: events are then dropped).
pub async fn run(graph: Graph, opts: RunOptions, events: UnboundedSender<Event>) -> RunSummary {
    let clock = Instant::now();
    let deadline = opts.timeout.map(|t| clock + t);
    let mut s = Scheduler::new(graph, &opts, events, clock);
    s.emit(EventKind::RunStarted {
        tasks: s.graph.len(),
    });
    for i in 0..s.graph.len() {
        if s.pending[i] == 0 {
            s.make_ready(i);
        }
    }

    let interrupted = opts.interrupt.cancelled();
    tokio::pin!(interrupted);
    // Never polled without a deadline (the branch is disabled), so any instant will do.
    let timed_out = tokio::time::sleep_until(deadline.unwrap_or(clock));
    tokio::pin!(timed_out);
    loop {
        if s.cancelled.is_none() {
            if opts.interrupt.is_cancelled() {
                s.stop(CancelReason::Interrupted);
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                s.stop(CancelReason::Timeout);
            } else {
                s.start_ready();
            }
        }
        if s.join.is_empty() {
            break;
        }
        let wake = tokio::select! {
            biased;
            joined = s.join.join_next_with_id() => Wake::Joined(joined),
            () = &mut interrupted, if s.cancelled < Some(CancelReason::Interrupted) => Wake::Stop(CancelReason::Interrupted),
            () = &mut timed_out, if deadline.is_some() && s.cancelled < Some(CancelReason::Timeout) => Wake::Stop(CancelReason::Timeout),
        };
        match wake {
            Wake::Joined(Some(joined)) => {
                s.joined(joined);
                while let Some(joined) = s.join.try_join_next_with_id() {
                    s.joined(joined);
                }
            }
            Wake::Joined(None) => {}
            Wake::Stop(reason) => s.stop(reason),
        }
    }

    // Completions win the biased select: a stop that came during the clean-up still counts.
    if s.cancelled.is_some() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            s.stop(CancelReason::Timeout);
        }
        if opts.interrupt.is_cancelled() {
            s.stop(CancelReason::Interrupted);
        }
    }
    let makespan = clock.elapsed();
    s.emit(EventKind::RunFinished {
        cancelled: s.cancelled,
    });
    RunSummary {
        tasks: s.results,
        makespan,
        cancelled: s.cancelled,
    }
}

enum Wake {
    Joined(Option<Result<(Id, Completion), JoinError>>),
    Stop(CancelReason),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Done,
}

/// What a started task reports back when it is over.
struct Completion {
    index: usize,
    end: Duration,
    attempts: u32,
    result: Result<Done, String>,
}

struct Scheduler {
    graph: Graph,
    clock: Instant,
    events: UnboundedSender<Event>,
    keep_going: bool,
    pending: Vec<u32>,
    state: Vec<State>,
    results: Vec<TaskResult>,
    queue: ReadyQueue,
    join: JoinSet<Completion>,
    /// Which task a tokio task runs, to place a `JoinError` (should a task escape `catch_unwind`).
    running: HashMap<Id, usize>,
    run_token: CancellationToken,
    cancelled: Option<CancelReason>,
}

impl Scheduler {
    fn new(
        graph: Graph,
        opts: &RunOptions,
        events: UnboundedSender<Event>,
        clock: Instant,
    ) -> Self {
        let n = graph.len();
        let pending = (0..n).map(|i| graph.deps(i).len() as u32).collect();
        let results = graph
            .ids()
            .iter()
            .map(|id| TaskResult {
                id: id.clone(),
                ready: None,
                start: None,
                end: None,
                outcome: TaskOutcome::Skipped,
                attempts: 0,
                error: None,
                skip: None,
            })
            .collect();
        Scheduler {
            graph,
            clock,
            events,
            keep_going: opts.keep_going,
            pending,
            state: vec![State::Waiting; n],
            results,
            queue: ReadyQueue::new(&opts.limits),
            join: JoinSet::new(),
            running: HashMap::with_capacity(n.min(1024)),
            run_token: CancellationToken::new(),
            cancelled: None,
        }
    }

    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    fn emit(&self, kind: EventKind) {
        self.emit_at(self.now(), kind);
    }

    fn emit_at(&self, at: Duration, kind: EventKind) {
        let _ = self.events.send(Event { at, kind });
    }

    fn make_ready(&mut self, i: usize) {
        self.state[i] = State::Ready;
        let now = self.now();
        self.results[i].ready = Some(now);
        self.emit_at(
            now,
            EventKind::TaskReady {
                id: self.graph.id(i).clone(),
            },
        );
        let task = &self.graph.tasks[i];
        self.queue.push(i, task.class, task.priority);
    }

    fn start_ready(&mut self) {
        while let Some(i) = self.queue.pop_startable() {
            self.state[i] = State::Running;
            let now = self.now();
            self.results[i].start = Some(now);
            let task = &self.graph.tasks[i];
            let id = self.graph.id(i).clone();
            self.emit_at(
                now,
                EventKind::TaskStarted {
                    id: id.clone(),
                    attempt: 1,
                },
            );
            let attempts = Attempts {
                index: i,
                id,
                work: task.work.clone(),
                timeout: task.timeout,
                retry: task.retry,
                run_token: self.run_token.clone(),
                events: self.events.clone(),
                clock: self.clock,
            };
            let handle = self.join.spawn(attempts.run());
            self.running.insert(handle.id(), i);
        }
    }

    fn joined(&mut self, joined: Result<(Id, Completion), JoinError>) {
        let completion = match joined {
            Ok((id, completion)) => {
                self.running.remove(&id);
                completion
            }
            Err(e) => {
                let Some(index) = self.running.remove(&e.id()) else {
                    return;
                };
                let message = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    "cancelled".to_string()
                };
                Completion {
                    index,
                    end: self.now(),
                    attempts: 1,
                    result: Err(message),
                }
            }
        };
        self.finished(completion);
    }

    fn finished(&mut self, c: Completion) {
        let i = c.index;
        self.state[i] = State::Done;
        self.queue.release(self.graph.class(i));
        let outcome = match c.result {
            Ok(Done::Ran) => TaskOutcome::Succeeded,
            Ok(Done::Cached) => TaskOutcome::Cached,
            Ok(Done::Restored) => TaskOutcome::Restored,
            Err(_) => TaskOutcome::Failed,
        };
        let error = c.result.err();
        let r = &mut self.results[i];
        r.end = Some(c.end);
        r.outcome = outcome;
        r.attempts = c.attempts;
        r.error = error.clone();
        self.emit_at(
            c.end,
            EventKind::TaskFinished {
                id: self.graph.id(i).clone(),
                outcome,
                attempts: c.attempts,
                error,
            },
        );

        if outcome == TaskOutcome::Failed {
            self.skip_dependents(i);
            if !self.keep_going {
                self.stop(CancelReason::TaskFailed);
            }
            return;
        }
        for k in 0..self.graph.dependents(i).len() {
            let d = self.graph.dependents(i)[k];
            self.pending[d] -= 1;
            if self.pending[d] == 0 && self.state[d] == State::Waiting {
                self.make_ready(d);
            }
        }
    }

    /// Skips everything downstream of `failed`, each naming its dependency that did not succeed.
    fn skip_dependents(&mut self, failed: usize) {
        let mut stack = vec![failed];
        while let Some(cause) = stack.pop() {
            for k in 0..self.graph.dependents(cause).len() {
                let d = self.graph.dependents(cause)[k];
                if self.state[d] == State::Waiting {
                    self.skip(
                        d,
                        SkipReason::DependencyFailed {
                            dependency: self.graph.id(cause).clone(),
                        },
                    );
                    stack.push(d);
                }
            }
        }
    }

    fn skip(&mut self, i: usize, reason: SkipReason) {
        self.state[i] = State::Done;
        self.results[i].outcome = TaskOutcome::Skipped;
        self.results[i].skip = Some(reason.clone());
        self.emit(EventKind::TaskSkipped {
            id: self.graph.id(i).clone(),
            reason,
        });
    }

    /// Stops the run (or escalates its reason): nothing new starts, running tasks are
    /// cancelled, every task not started is skipped.
    fn stop(&mut self, reason: CancelReason) {
        let first = self.cancelled.is_none();
        self.cancelled = self.cancelled.max(Some(reason));
        if !first {
            return;
        }
        self.run_token.cancel();
        self.queue.clear();
        for i in 0..self.graph.len() {
            if matches!(self.state[i], State::Waiting | State::Ready) {
                self.skip(i, SkipReason::Cancelled(reason));
            }
        }
    }
}

/// Everything one started task needs, moved into its tokio task.
struct Attempts {
    index: usize,
    id: Arc<str>,
    work: Arc<dyn Work>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    run_token: CancellationToken,
    events: UnboundedSender<Event>,
    clock: Instant,
}

impl Attempts {
    async fn run(self) -> Completion {
        let mut attempt = 1;
        loop {
            if attempt > 1 {
                self.emit(EventKind::TaskStarted {
                    id: self.id.clone(),
                    attempt,
                });
            }
            let ctx = TaskCtx::new(
                self.id.clone(),
                attempt,
                self.run_token.child_token(),
                self.events.clone(),
                self.clock,
            );
            let error = match self.attempt(&ctx).await {
                Ok(done) => return self.completion(attempt, Ok(done)),
                Err(e) => e,
            };
            let retry =
                error.transient && attempt < self.retry.attempts && !self.run_token.is_cancelled();
            if !retry {
                return self.completion(attempt, Err(error.message));
            }
            let delay = self.retry.backoff(attempt);
            self.emit(EventKind::TaskRetrying {
                id: self.id.clone(),
                attempt,
                error: error.message.clone(),
                delay,
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.run_token.cancelled() => {
                    return self.completion(attempt, Err(format!("{} (retry cancelled)", error.message)));
                }
            }
            attempt += 1;
        }
    }

    /// One attempt: the work, raced against this attempt's timeout and the run's cancellation.
    async fn attempt(&self, ctx: &TaskCtx) -> Result<Done, TaskError> {
        let work = match std::panic::catch_unwind(AssertUnwindSafe(|| self.work.run(ctx))) {
            Ok(work) => work,
            Err(panic) => return Err(TaskError::fatal(panic_message(panic))),
        };
        let work = AssertUnwindSafe(work)
            .catch_unwind()
            .map(|r| r.unwrap_or_else(|p| Err(TaskError::fatal(panic_message(p)))));
        tokio::pin!(work);
        let timeout = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let timed_out = tokio::select! {
            biased;
            result = &mut work => return result,
            () = ctx.cancel.cancelled() => false,
            () = timeout => true,
        };
        ctx.cancel.cancel();
        let grace = tokio::time::sleep(CANCEL_GRACE);
        let result = tokio::select! {
            result = &mut work => Some(result),
            () = grace => None,
        };
        match (timed_out, result) {
            (true, _) => Err(TaskError::fatal(format!(
                "timed out after {}",
                humantime::format_duration(self.timeout.unwrap_or_default())
            ))),
            (false, Some(result)) => result,
            (false, None) => Err(TaskError::fatal(format!(
                "cancelled (did not stop within {} and was dropped)",
                humantime::format_duration(CANCEL_GRACE)
            ))),
        }
    }

    fn completion(&self, attempts: u32, result: Result<Done, String>) -> Completion {
        Completion {
            index: self.index,
            end: self.clock.elapsed(),
            attempts,
            result,
        }
    }

    fn emit(&self, kind: EventKind) {
        let _ = self.events.send(Event {
            at: self.clock.elapsed(),
            kind,
        });
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let detail = match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "a non-string payload".to_string(),
        },
    };
    format!("panicked: {detail}")
}
