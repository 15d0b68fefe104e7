//! The engine under a paused tokio clock, with fake tasks (closures that sleep, fail, panic
//! and record what they saw). Times in assertions are exact because the clock is virtual.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use kprov::engine::{
    BoxFuture, CANCEL_GRACE, CancelReason, Class, DagError, Done, Event, EventKind, FnWork,
    GraphBuilder, GraphError, Limits, RetryPolicy, RunOptions, RunSummary, SkipReason, TaskCtx,
    TaskDef, TaskError, TaskOutcome, TaskResult, Work, run, simulate,
};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

type Outcome = Result<Done, TaskError>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fake task from a closure.
fn fake(
    f: impl for<'a> Fn(&'a TaskCtx) -> BoxFuture<'a, Outcome> + Send + Sync + 'static,
) -> impl Work {
    FnWork::new(f)
}

/// Sleeps `d` unless cancelled first; a cancelled sleep fails with "cancelled".
async fn sleep_or_cancel(ctx: &TaskCtx, d: Duration) -> Outcome {
    tokio::select! {
        () = sleep(d) => Ok(Done::Ran),
        () = ctx.cancel.cancelled() => Err(TaskError::fatal("cancelled")),
    }
}

fn sleeper(d: Duration) -> impl Work {
    fake(move |ctx| Box::pin(sleep_or_cancel(ctx, d)))
}

fn failing_after(d: Duration, message: &'static str) -> impl Work {
    fake(move |_| {
        Box::pin(async move {
            sleep(d).await;
            Err(TaskError::fatal(message))
        })
    })
}

fn task(id: &str, deps: &[&str], work: impl Work + 'static) -> TaskDef {
    TaskDef::new(id, work).with_deps(deps.iter().copied())
}

fn opts() -> RunOptions {
    RunOptions {
        limits: Limits::unlimited(),
        keep_going: false,
        timeout: None,
        interrupt: CancellationToken::new(),
    }
}

/// Runs the tasks and returns the summary and every event, in the order they were sent.
async fn run_tasks(tasks: Vec<TaskDef>, opts: RunOptions) -> (RunSummary, Vec<Event>) {
    let mut builder = GraphBuilder::new();
    for t in tasks {
        builder.add(t);
    }
    let graph = builder.build().expect("a valid graph");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let summary = run(graph, opts, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (summary, events)
}

fn result<'a>(summary: &'a RunSummary, id: &str) -> &'a TaskResult {
    summary
        .tasks
        .iter()
        .find(|t| &*t.id == id)
        .unwrap_or_else(|| panic!("no task {id}"))
}

fn skip_reason(summary: &RunSummary, id: &str) -> Option<SkipReason> {
    result(summary, id).skip.clone()
}

fn dependency_failed(dep: &str) -> Option<SkipReason> {
    Some(SkipReason::DependencyFailed {
        dependency: dep.into(),
    })
}

/// Counts how many tasks of a group run at once, and the most ever seen.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    fn sleeper(self: &Arc<Self>, d: Duration) -> impl Work + use<> {
        let c = self.clone();
        fake(move |_| {
            let c = c.clone();
            Box::pin(async move {
                let now = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                c.max.fetch_max(now, Ordering::SeqCst);
                sleep(d).await;
                c.now.fetch_sub(1, Ordering::SeqCst);
                Ok(Done::Ran)
            })
        })
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_start_only_after_every_dependency_succeeded() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let logging = |name: &'static str, d: u64| {
        let log = log.clone();
        fake(move |_| {
            let log = log.clone();
            Box::pin(async move {
                log.lock().unwrap().push(format!("start {name}"));
                sleep(ms(d)).await;
                log.lock().unwrap().push(format!("end {name}"));
                Ok(Done::Ran)
            })
        })
    };
    let tasks = vec![
        task("join", &["left", "right"], logging("join", 5)),
        task("root", &[], logging("root", 10)),
        task("left", &["root"], logging("left", 30)),
        task("right", &["root"], logging("right", 20)),
    ];
    let (summary, _) = run_tasks(tasks, opts()).await;

    assert!(summary.succeeded());
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "start root",
            "end root",
            "start left",
            "start right",
            "end right",
            "end left",
            "start join",
            "end join"
        ]
    );
    assert_eq!(result(&summary, "left").start, Some(ms(10)));
    assert_eq!(result(&summary, "join").ready, Some(ms(40)));
    assert_eq!(result(&summary, "join").start, Some(ms(40)));
    assert_eq!(summary.makespan, ms(45));
    // Insertion order, not execution order.
    let ids: Vec<&str> = summary.tasks.iter().map(|t| &*t.id).collect();
    assert_eq!(ids, ["join", "root", "left", "right"]);
}

#[tokio::test(start_paused = true)]
async fn the_global_job_cap_is_never_exceeded() {
    let c = Arc::new(Concurrency::default());
    let tasks = (0..20)
        .map(|i| task(&format!("t{i}"), &[], c.sleeper(ms(10))))
        .collect();
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            limits: Limits::jobs(3),
            ..opts()
        },
    )
    .await;

    assert!(summary.succeeded());
    assert_eq!(c.max(), 3);
    // 20 tasks of 10 ms, three at a time: seven waves.
    assert_eq!(summary.makespan, ms(70));
}

#[tokio::test(start_paused = true)]
async fn a_class_cap_holds_its_class_back_but_not_the_others() {
    let cpu = Arc::new(Concurrency::default());
    let api = Arc::new(Concurrency::default());
    let all = Arc::new(Concurrency::default());
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(task(&format!("build{i}"), &[], cpu.sleeper(ms(10))).with_class(Class::Cpu));
        tasks.push(task(&format!("apply{i}"), &[], api.sleeper(ms(10))).with_class(Class::Api));
        tasks.push(task(&format!("load{i}"), &[], all.sleeper(ms(10))).with_class(Class::Io));
    }
    let limits = Limits::jobs(12)
        .with_class(Class::Cpu, 2)
        .with_class(Class::Io, 0);
    let (summary, _) = run_tasks(tasks, RunOptions { limits, ..opts() }).await;

    assert!(summary.succeeded());
    assert_eq!(cpu.max(), 2, "cpu cap");
    // Io's 0 means unlimited: io and api share what the global cap leaves after cpu.
    assert!(api.max() + all.max() + cpu.max() <= 12);
    assert_eq!(
        api.max() + all.max(),
        10,
        "the rest of the global cap is used"
    );
}

#[tokio::test(start_paused = true)]
async fn ready_tasks_start_by_priority_then_insertion_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (id, priority) in [("low", 1), ("high", 5), ("high-later", 5), ("mid", 3)] {
        let log = log.clone();
        let work = fake(move |ctx| {
            log.lock().unwrap().push(ctx.id.to_string());
            Box::pin(sleep_or_cancel(ctx, ms(1)))
        });
        tasks.push(task(id, &[], work).with_priority(priority));
    }
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            limits: Limits::jobs(1),
            ..opts()
        },
    )
    .await;

    assert!(summary.succeeded());
    assert_eq!(*log.lock().unwrap(), ["high", "high-later", "mid", "low"]);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_skips_dependents_and_cancels_running_tasks() {
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let saw = saw_cancel.clone();
    let long = fake(move |ctx| {
        let saw = saw.clone();
        Box::pin(async move {
            let r = sleep_or_cancel(ctx, ms(1000)).await;
            saw.store(ctx.cancel.is_cancelled(), Ordering::SeqCst);
            r
        })
    });
    let tasks = vec![
        task("broken", &[], failing_after(ms(10), "exit status 1")).with_priority(9),
        task("long", &[], long).with_priority(8),
        task("queued", &[], sleeper(ms(1))),
        task("after-broken", &["broken"], sleeper(ms(1))),
        task("after-that", &["after-broken"], sleeper(ms(1))),
        task("after-long", &["long"], sleeper(ms(1))),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            limits: Limits::jobs(2),
            ..opts()
        },
    )
    .await;

    assert_eq!(summary.cancelled, Some(CancelReason::TaskFailed));
    assert_eq!(
        summary.makespan,
        ms(10),
        "the long task stopped when cancelled"
    );
    let broken = result(&summary, "broken");
    assert_eq!(
        (broken.outcome, broken.error.as_deref()),
        (TaskOutcome::Failed, Some("exit status 1"))
    );
    let long = result(&summary, "long");
    assert_eq!(
        (long.outcome, long.error.as_deref()),
        (TaskOutcome::Failed, Some("cancelled"))
    );
    assert!(
        saw_cancel.load(Ordering::SeqCst),
        "the running task observed the cancellation"
    );
    assert_eq!(
        skip_reason(&summary, "after-broken"),
        dependency_failed("broken")
    );
    assert_eq!(
        skip_reason(&summary, "after-that"),
        dependency_failed("after-broken")
    );
    assert_eq!(
        skip_reason(&summary, "queued"),
        Some(SkipReason::Cancelled(CancelReason::TaskFailed))
    );
    assert_eq!(
        skip_reason(&summary, "after-long"),
        Some(SkipReason::Cancelled(CancelReason::TaskFailed))
    );
    for id in ["queued", "after-broken", "after-that", "after-long"] {
        let r = result(&summary, id);
        assert_eq!(
            (r.outcome, r.start, r.attempts),
            (TaskOutcome::Skipped, None, 0),
            "{id}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn keep_going_runs_everything_not_downstream_of_a_failure() {
    let tasks = vec![
        task("broken", &[], failing_after(ms(10), "boom")),
        task("after-broken", &["broken"], sleeper(ms(1))),
        task(
            "after-that",
            &["after-broken", "independent"],
            sleeper(ms(1)),
        ),
        task("independent", &[], sleeper(ms(50))),
        task("after-independent", &["independent"], sleeper(ms(5))),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            keep_going: true,
            ..opts()
        },
    )
    .await;

    assert_eq!(summary.cancelled, None);
    assert!(!summary.succeeded());
    assert_eq!(result(&summary, "broken").outcome, TaskOutcome::Failed);
    assert_eq!(
        skip_reason(&summary, "after-broken"),
        dependency_failed("broken")
    );
    assert_eq!(
        skip_reason(&summary, "after-that"),
        dependency_failed("after-broken")
    );
    assert_eq!(
        result(&summary, "independent").outcome,
        TaskOutcome::Succeeded
    );
    assert_eq!(
        result(&summary, "after-independent").outcome,
        TaskOutcome::Succeeded
    );
    assert_eq!(summary.makespan, ms(55));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_cancels_running_tasks_and_skips_the_rest() {
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let saw = saw_cancel.clone();
    let long = fake(move |ctx| {
        let saw = saw.clone();
        Box::pin(async move {
            ctx.cancel.cancelled().await;
            saw.store(true, Ordering::SeqCst);
            // Cleaning up takes a while; the engine waits for it.
            sleep(ms(5)).await;
            Err(TaskError::fatal("stopped: cleaned up"))
        })
    });
    let interrupt = CancellationToken::new();
    let ctrl_c = interrupt.clone();
    tokio::spawn(async move {
        sleep(ms(50)).await;
        ctrl_c.cancel();
    });
    let tasks = vec![
        task("long", &[], long),
        task("after-long", &["long"], sleeper(ms(1))),
        task("short", &[], sleeper(ms(10))),
    ];
    let (summary, events) = run_tasks(
        tasks,
        RunOptions {
            interrupt,
            ..opts()
        },
    )
    .await;

    assert_eq!(summary.cancelled, Some(CancelReason::Interrupted));
    assert!(saw_cancel.load(Ordering::SeqCst));
    let long = result(&summary, "long");
    assert_eq!(
        (long.outcome, long.error.as_deref()),
        (TaskOutcome::Failed, Some("stopped: cleaned up"))
    );
    assert_eq!(long.end, Some(ms(55)));
    assert_eq!(result(&summary, "short").outcome, TaskOutcome::Succeeded);
    assert_eq!(
        skip_reason(&summary, "after-long"),
        Some(SkipReason::Cancelled(CancelReason::Interrupted))
    );
    assert_eq!(summary.makespan, ms(55));
    let last = events.last().expect("events");
    assert!(matches!(
        last.kind,
        EventKind::RunFinished {
            cancelled: Some(CancelReason::Interrupted)
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_before_anything_started_skips_every_task() {
    let interrupt = CancellationToken::new();
    interrupt.cancel();
    let tasks = vec![
        task("a", &[], sleeper(ms(1))),
        task("b", &["a"], sleeper(ms(1))),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            interrupt,
            ..opts()
        },
    )
    .await;

    assert_eq!(summary.cancelled, Some(CancelReason::Interrupted));
    for t in &summary.tasks {
        assert_eq!(
            t.skip,
            Some(SkipReason::Cancelled(CancelReason::Interrupted)),
            "{}",
            t.id
        );
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_escalates_to_the_strongest_reason() {
    // `slow` needs 100 ms to clean up after the failure; Ctrl-C comes during that.
    let slow = fake(|ctx| {
        Box::pin(async move {
            ctx.cancel.cancelled().await;
            sleep(ms(100)).await;
            Err(TaskError::fatal("cancelled"))
        })
    });
    let interrupt = CancellationToken::new();
    let ctrl_c = interrupt.clone();
    tokio::spawn(async move {
        sleep(ms(50)).await;
        ctrl_c.cancel();
    });
    let tasks = vec![
        task("broken", &[], failing_after(ms(10), "boom")),
        task("slow", &[], slow),
        task("later", &["slow"], sleeper(ms(1))),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            interrupt,
            ..opts()
        },
    )
    .await;

    assert_eq!(summary.cancelled, Some(CancelReason::Interrupted));
    // Skipped when the run stopped, for the reason it stopped then.
    assert_eq!(
        skip_reason(&summary, "later"),
        Some(SkipReason::Cancelled(CancelReason::TaskFailed))
    );
    assert_eq!(summary.makespan, ms(110));
}

#[tokio::test(start_paused = true)]
async fn a_task_timeout_cancels_and_fails_only_that_task() {
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let saw = saw_cancel.clone();
    let hangs = fake(move |ctx| {
        let saw = saw.clone();
        Box::pin(async move {
            let r = sleep_or_cancel(ctx, ms(10_000)).await;
            saw.store(ctx.cancel.is_cancelled(), Ordering::SeqCst);
            r
        })
    });
    let tasks = vec![
        task("hangs", &[], hangs).with_timeout(ms(100)),
        task("fine", &[], sleeper(ms(200))).with_timeout(ms(300)),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            keep_going: true,
            ..opts()
        },
    )
    .await;

    let hangs = result(&summary, "hangs");
    assert_eq!(
        (hangs.outcome, hangs.error.as_deref()),
        (TaskOutcome::Failed, Some("timed out after 100ms"))
    );
    assert_eq!(hangs.end, Some(ms(100)));
    assert!(saw_cancel.load(Ordering::SeqCst));
    assert_eq!(result(&summary, "fine").outcome, TaskOutcome::Succeeded);
    assert_eq!(summary.cancelled, None);
}

#[tokio::test(start_paused = true)]
async fn the_global_timeout_cancels_the_run() {
    let tasks = vec![
        task("slow", &[], sleeper(ms(1000))),
        task("after-slow", &["slow"], sleeper(ms(1))),
        task("quick", &[], sleeper(ms(10))),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            timeout: Some(ms(100)),
            ..opts()
        },
    )
    .await;

    assert_eq!(summary.cancelled, Some(CancelReason::Timeout));
    assert_eq!(result(&summary, "quick").outcome, TaskOutcome::Succeeded);
    let slow = result(&summary, "slow");
    assert_eq!(
        (slow.outcome, slow.end),
        (TaskOutcome::Failed, Some(ms(100)))
    );
    assert_eq!(
        skip_reason(&summary, "after-slow"),
        Some(SkipReason::Cancelled(CancelReason::Timeout))
    );
    assert_eq!(summary.makespan, ms(100));
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ignores_cancellation_is_dropped_after_the_grace_period() {
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = dropped.clone();
    let stubborn = fake(move |_| {
        let guard = SetOnDrop(flag.clone());
        Box::pin(async move {
            let _guard = guard;
            sleep(Duration::from_secs(3600)).await;
            Ok(Done::Ran)
        })
    });
    let tasks = vec![task("stubborn", &[], stubborn)];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            timeout: Some(ms(10)),
            ..opts()
        },
    )
    .await;

    let stubborn = result(&summary, "stubborn");
    assert_eq!(stubborn.outcome, TaskOutcome::Failed);
    assert!(
        stubborn.error.as_deref().unwrap().contains("did not stop"),
        "{:?}",
        stubborn.error
    );
    assert_eq!(stubborn.end, Some(ms(10) + CANCEL_GRACE));
    assert!(
        dropped.load(Ordering::SeqCst),
        "its future was dropped, so its cleanup ran"
    );
}

/// Fails with a transient error on the first `failures` attempts, then succeeds.
fn flaky(failures: u32, transient: bool) -> (impl Work, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let work = fake(move |ctx| {
        let call = c.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        assert_eq!(call, ctx.attempt, "ctx.attempt counts attempts");
        Box::pin(async move {
            if call <= failures {
                Err(TaskError {
                    message: format!("HTTP 503 on attempt {call}"),
                    transient,
                })
            } else {
                Ok(Done::Ran)
            }
        })
    });
    (work, calls)
}

const RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    initial_backoff: ms_const(100),
    max_backoff: ms_const(150),
};

const fn ms_const(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_backoff_until_success() {
    let (work, calls) = flaky(2, true);
    let (summary, events) =
        run_tasks(vec![task("flaky", &[], work).with_retry(RETRY)], opts()).await;

    let r = result(&summary, "flaky");
    assert_eq!(
        (r.outcome, r.attempts, r.error.as_deref()),
        (TaskOutcome::Succeeded, 3, None)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Backoff 100 ms, then 200 ms capped at 150 ms.
    assert_eq!(r.end, Some(ms(250)));
    let retries: Vec<(u32, Duration, Duration)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskRetrying { attempt, delay, .. } => Some((*attempt, *delay, e.at)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(1, ms(100), ms(0)), (2, ms(150), ms(100))]);
    let starts: Vec<(u32, Duration)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStarted { attempt, .. } => Some((*attempt, e.at)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(1, ms(0)), (2, ms(100)), (3, ms(250))]);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_give_up_after_the_last_attempt() {
    let (work, calls) = flaky(10, true);
    let (summary, _) = run_tasks(vec![task("flaky", &[], work).with_retry(RETRY)], opts()).await;

    let r = result(&summary, "flaky");
    assert_eq!((r.outcome, r.attempts), (TaskOutcome::Failed, 4));
    assert_eq!(r.error.as_deref(), Some("HTTP 503 on attempt 4"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_are_not_retried() {
    let (work, calls) = flaky(1, false);
    let (summary, _) = run_tasks(vec![task("fatal", &[], work).with_retry(RETRY)], opts()).await;

    let r = result(&summary, "fatal");
    assert_eq!((r.outcome, r.attempts), (TaskOutcome::Failed, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_a_retry_backoff_ends_the_task() {
    let (work, calls) = flaky(10, true);
    let interrupt = CancellationToken::new();
    let ctrl_c = interrupt.clone();
    tokio::spawn(async move {
        sleep(ms(30)).await;
        ctrl_c.cancel();
    });
    let policy = RetryPolicy {
        attempts: 5,
        initial_backoff: ms(1000),
        max_backoff: ms(1000),
    };
    let (summary, _) = run_tasks(
        vec![task("flaky", &[], work).with_retry(policy)],
        RunOptions {
            interrupt,
            ..opts()
        },
    )
    .await;

    let r = result(&summary, "flaky");
    assert_eq!(
        (r.outcome, r.attempts, r.end),
        (TaskOutcome::Failed, 1, Some(ms(30)))
    );
    assert_eq!(
        r.error.as_deref(),
        Some("HTTP 503 on attempt 1 (retry cancelled)")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(summary.cancelled, Some(CancelReason::Interrupted));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_fails_with_its_message_and_the_engine_carries_on() {
    let panics_later = fake(|_| {
        Box::pin(async {
            sleep(ms(5)).await;
            panic!("index out of bounds in the fake");
        })
    });
    let panics_at_once = fake(|_| panic!("refused to start: {}", 42));
    let tasks = vec![
        task("panics-later", &[], panics_later),
        task("panics-at-once", &[], panics_at_once),
        task("after", &["panics-later"], sleeper(ms(1))),
        task("fine", &[], sleeper(ms(20))),
    ];
    let (summary, _) = run_tasks(
        tasks,
        RunOptions {
            keep_going: true,
            ..opts()
        },
    )
    .await;

    let later = result(&summary, "panics-later");
    assert_eq!(later.outcome, TaskOutcome::Failed);
    assert_eq!(
        later.error.as_deref(),
        Some("panicked: index out of bounds in the fake")
    );
    let at_once = result(&summary, "panics-at-once");
    assert_eq!(
        at_once.error.as_deref(),
        Some("panicked: refused to start: 42")
    );
    assert_eq!(
        skip_reason(&summary, "after"),
        dependency_failed("panics-later")
    );
    assert_eq!(result(&summary, "fine").outcome, TaskOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_cached_task_counts_as_success_for_its_dependents() {
    let cached = fake(|_| Box::pin(async { Ok(Done::Cached) }));
    let tasks = vec![
        task("build", &[], cached),
        task("load", &["build"], sleeper(ms(3))),
    ];
    let (summary, _) = run_tasks(tasks, opts()).await;

    assert!(summary.succeeded());
    assert_eq!(result(&summary, "build").outcome, TaskOutcome::Cached);
    assert_eq!(result(&summary, "load").outcome, TaskOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn events_for_each_task_arrive_in_a_sensible_order() {
    let chatty = fake(|ctx| {
        Box::pin(async move {
            ctx.progress("step 1/2");
            sleep(ms(5)).await;
            ctx.progress("step 2/2");
            Ok(Done::Ran)
        })
    });
    let (flaky_work, _) = flaky(1, true);
    let tasks = vec![
        task("chatty", &[], chatty),
        task("flaky", &["chatty"], flaky_work).with_retry(RETRY),
        task("broken", &["chatty"], failing_after(ms(50), "boom")),
        task("after-broken", &["broken"], sleeper(ms(1))),
        task("after-flaky", &["flaky"], sleeper(ms(500))),
    ];
    let (summary, events) = run_tasks(
        tasks,
        RunOptions {
            keep_going: true,
            ..opts()
        },
    )
    .await;

    assert!(matches!(
        events.first().map(|e| &e.kind),
        Some(EventKind::RunStarted { tasks: 5 })
    ));
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFinished { cancelled: None })
    ));
    let mut per_task: HashMap<String, Vec<(&'static str, Duration)>> = HashMap::new();
    for e in &events {
        let (id, label) = match &e.kind {
            EventKind::TaskReady { id } => (id, "ready"),
            EventKind::TaskStarted { id, .. } => (id, "started"),
            EventKind::TaskProgress { id, .. } => (id, "progress"),
            EventKind::TaskRetrying { id, .. } => (id, "retrying"),
            EventKind::TaskFinished { id, .. } => (id, "finished"),
            EventKind::TaskSkipped { id, .. } => (id, "skipped"),
            EventKind::RunStarted { .. } | EventKind::RunFinished { .. } => continue,
        };
        per_task
            .entry(id.to_string())
            .or_default()
            .push((label, e.at));
    }
    let labels = |id: &str| per_task[id].iter().map(|(l, _)| *l).collect::<Vec<_>>();
    assert_eq!(
        labels("chatty"),
        ["ready", "started", "progress", "progress", "finished"]
    );
    assert_eq!(
        labels("flaky"),
        ["ready", "started", "retrying", "started", "finished"]
    );
    assert_eq!(labels("broken"), ["ready", "started", "finished"]);
    assert_eq!(labels("after-broken"), ["skipped"]);
    assert_eq!(labels("after-flaky"), ["ready", "started", "finished"]);
    for (id, seq) in &per_task {
        assert!(
            seq.windows(2).all(|w| w[0].1 <= w[1].1),
            "{id}: times go forward: {seq:?}"
        );
    }
    // A dependency's finish comes before its dependent is ready.
    let position =
        |want: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| want(&e.kind)).unwrap();
    let chatty_done =
        position(&|k| matches!(k, EventKind::TaskFinished { id, .. } if &**id == "chatty"));
    let flaky_ready = position(&|k| matches!(k, EventKind::TaskReady { id } if &**id == "flaky"));
    assert!(chatty_done < flaky_ready);
    // The summary and the events tell the same story.
    let flaky = result(&summary, "flaky");
    assert_eq!(
        (flaky.ready, flaky.start, flaky.end),
        (Some(ms(5)), Some(ms(5)), Some(ms(105)))
    );
    assert_eq!(per_task["flaky"].last(), Some(&("finished", ms(105))));
}

#[test]
fn a_duplicate_id_is_rejected() {
    let mut b = GraphBuilder::new();
    b.add(task("a", &[], sleeper(ms(1))))
        .add(task("a", &[], sleeper(ms(1))));
    assert_eq!(b.build().unwrap_err(), GraphError::Duplicate("a".into()));
}

#[test]
fn an_unknown_dependency_is_rejected_with_both_names() {
    let mut b = GraphBuilder::new();
    b.add(task("deploy:api", &["load:api"], sleeper(ms(1))));
    let err = b.build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "task deploy:api depends on load:api, which is not a task"
    );
}

#[test]
fn a_cycle_is_reported_with_its_members_in_order() {
    let mut b = GraphBuilder::new();
    b.add(task("entry", &["b"], sleeper(ms(1))))
        .add(task("c", &["a"], sleeper(ms(1))))
        .add(task("a", &["ok", "b"], sleeper(ms(1))))
        .add(task("b", &["c"], sleeper(ms(1))))
        .add(task("ok", &[], sleeper(ms(1))));
    let err = b.build().unwrap_err();
    // Each member depends on the next; the cycle starts at its earliest-inserted member.
    assert_eq!(
        err,
        GraphError::Cycle(vec!["c".into(), "a".into(), "b".into(), "c".into()])
    );
    assert_eq!(err.to_string(), "dependency cycle: c -> a -> b -> c");
}

#[test]
fn a_task_depending_on_itself_is_a_cycle() {
    let mut b = GraphBuilder::new();
    b.add(task("a", &["a"], sleeper(ms(1))));
    assert_eq!(
        b.build().unwrap_err().to_string(),
        "dependency cycle: a -> a"
    );
}

#[test]
fn a_dependency_listed_twice_counts_once() {
    let mut b = GraphBuilder::new();
    b.add(task("a", &[], sleeper(ms(1))))
        .add(task("b", &["a", "a"], sleeper(ms(1))));
    let g = b.build().unwrap();
    assert_eq!(g.deps(1), [0]);
    assert_eq!(g.dependents(0), [1]);
    assert_eq!(g.index_of("b"), Some(1));
}

fn sim(deps: &[usize], duration_ms: u64, class: Class, priority: u64) -> simulate::SimTask {
    simulate::SimTask {
        deps: deps.to_vec(),
        duration_ms,
        class,
        priority,
    }
}

#[test]
fn the_simulator_follows_priorities_and_class_caps() {
    let tasks = vec![
        sim(&[], 100, Class::Cpu, 1),    // 0: build, low priority
        sim(&[], 300, Class::Cpu, 9),    // 1: build, on the critical path
        sim(&[], 50, Class::Io, 5),      // 2: cluster
        sim(&[0, 2], 10, Class::Io, 0),  // 3: load 0
        sim(&[1, 2], 10, Class::Io, 0),  // 4: load 1
        sim(&[3, 4], 40, Class::Api, 0), // 5: deploy
    ];
    let limits = Limits::jobs(2).with_class(Class::Cpu, 1);
    let s = simulate::simulate(&tasks, &limits).unwrap();
    let starts: Vec<u64> = s.spans.iter().map(|sp| sp.start_ms).collect();
    // One build at a time, the critical one first; the cluster beside it.
    assert_eq!(starts, [300, 0, 0, 400, 300, 410]);
    assert_eq!(s.makespan_ms, 450);
    assert_eq!(s.spans[3].ready_ms, 400);

    let unlimited = simulate::simulate(&tasks, &Limits::unlimited()).unwrap();
    let durations: Vec<u64> = tasks.iter().map(|t| t.duration_ms).collect();
    let deps: Vec<Vec<usize>> = tasks.iter().map(|t| t.deps.clone()).collect();
    let (path, length) = simulate::critical_path(&deps, &durations).unwrap();
    assert_eq!((path, length), (vec![1, 4, 5], 350));
    assert_eq!(unlimited.makespan_ms, 350);
}

#[test]
fn remaining_critical_path_is_own_duration_plus_the_longest_tail() {
    let deps: Vec<Vec<usize>> = vec![vec![], vec![0], vec![0], vec![1, 2]];
    let remaining = simulate::remaining_critical_path(&deps, &[5, 10, 20, 1]).unwrap();
    assert_eq!(remaining, [26, 11, 21, 1]);
}

#[test]
fn critical_path_ties_go_to_the_lowest_index() {
    let deps: Vec<Vec<usize>> = vec![vec![], vec![], vec![0, 1], vec![]];
    assert_eq!(
        simulate::critical_path(&deps, &[5, 5, 1, 6]).unwrap(),
        (vec![0, 2], 6)
    );
    let empty: Vec<Vec<usize>> = Vec::new();
    assert_eq!(simulate::critical_path(&empty, &[]).unwrap(), (vec![], 0));
}

#[test]
fn the_simulator_reports_a_cycle_instead_of_hanging() {
    let tasks = vec![
        sim(&[1], 1, Class::Api, 0),
        sim(&[0], 1, Class::Api, 0),
        sim(&[7], 1, Class::Api, 0),
    ];
    assert_eq!(
        simulate::simulate(&tasks, &Limits::unlimited()).unwrap_err(),
        DagError::UnknownDependency {
            task: 2,
            dependency: 7
        }
    );
    assert_eq!(
        simulate::simulate(&tasks[..2], &Limits::unlimited()).unwrap_err(),
        DagError::Cycle(vec![0, 1, 0])
    );
}
