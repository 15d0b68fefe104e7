//! Properties of the engine and the simulator over random DAGs, each case run by the real
//! engine on a paused tokio clock with fake tasks that sleep their duration.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use kprov::engine::{
    Class, Done, FnWork, GraphBuilder, Limits, RunOptions, RunSummary, TaskDef, TaskOutcome, run,
    simulate,
};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
struct Dag {
    deps: Vec<Vec<usize>>,
    durations_ms: Vec<u64>,
    classes: Vec<Class>,
    priorities: Vec<u64>,
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(Class::Cpu), Just(Class::Io), Just(Class::Api)]
}

/// Up to 60 tasks, each depending on up to 4 earlier ones. Short durations and few
/// priorities on purpose: ties are where schedulers disagree.
fn dag() -> impl Strategy<Value = Dag> {
    (1usize..=60)
        .prop_flat_map(|n| {
            (0..n)
                .map(|i| {
                    let deps = if i == 0 {
                        Just(Vec::new()).boxed()
                    } else {
                        proptest::collection::btree_set(0..i, 0..=4.min(i))
                            .prop_map(|s| s.into_iter().collect())
                            .boxed()
                    };
                    (deps, 1u64..=30, class(), 0u64..4)
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|tasks| Dag {
            deps: tasks.iter().map(|t| t.0.clone()).collect(),
            durations_ms: tasks.iter().map(|t| t.1).collect(),
            classes: tasks.iter().map(|t| t.2).collect(),
            priorities: tasks.iter().map(|t| t.3).collect(),
        })
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        0usize..=4,
        proptest::collection::btree_map(class(), 0usize..=3, 0..=3),
    )
        .prop_map(|(jobs, per_class)| Limits { jobs, per_class })
}

/// Runs the DAG with the real engine; returns the summary and how often each task ran.
fn run_dag(dag: &Dag, limits: &Limits) -> (RunSummary, Vec<u32>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let calls: Arc<Vec<AtomicU32>> = Arc::new(dag.deps.iter().map(|_| AtomicU32::new(0)).collect());
    let mut builder = GraphBuilder::new();
    for i in 0..dag.deps.len() {
        let calls = calls.clone();
        let d = Duration::from_millis(dag.durations_ms[i]);
        let work = FnWork::new(move |_| {
            calls[i].fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(Done::Ran)
            })
        });
        builder.add(
            TaskDef::new(format!("t{i}"), work)
                .with_deps(dag.deps[i].iter().map(|d| format!("t{d}")))
                .with_class(dag.classes[i])
                .with_priority(dag.priorities[i]),
        );
    }
    let graph = builder.build().expect("a valid graph");
    let opts = RunOptions {
        limits: limits.clone(),
        keep_going: false,
        timeout: None,
        interrupt: CancellationToken::new(),
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let summary = runtime.block_on(run(graph, opts, tx));
    let calls = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    (summary, calls)
}

fn sim_tasks(dag: &Dag) -> Vec<simulate::SimTask> {
    (0..dag.deps.len())
        .map(|i| simulate::SimTask {
            deps: dag.deps[i].clone(),
            duration_ms: dag.durations_ms[i],
            class: dag.classes[i],
            priority: dag.priorities[i],
        })
        .collect()
}

fn ms(d: Option<Duration>) -> u64 {
    d.expect("a time").as_millis() as u64
}

/// The most tasks of each class (and in all) running at any instant of a schedule.
fn peak_concurrency(spans: &[(u64, u64)], classes: &[Class]) -> (usize, BTreeMap<Class, usize>) {
    let mut peak_all = 0;
    let mut peak = BTreeMap::new();
    for &(t, _) in spans {
        let running: Vec<usize> = (0..spans.len())
            .filter(|&k| spans[k].0 <= t && t < spans[k].1)
            .collect();
        peak_all = peak_all.max(running.len());
        for c in Class::ALL {
            let n = running.iter().filter(|&&k| classes[k] == c).count();
            let p = peak.entry(c).or_insert(0);
            *p = (*p).max(n);
        }
    }
    (peak_all, peak)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_task_runs_once_after_its_deps_and_within_the_caps(dag in dag(), limits in limits()) {
        let (summary, calls) = run_dag(&dag, &limits);
        prop_assert!(summary.succeeded());
        prop_assert!(calls.iter().all(|&c| c == 1), "calls: {calls:?}");
        for (i, t) in summary.tasks.iter().enumerate() {
            prop_assert_eq!(t.outcome, TaskOutcome::Succeeded);
            prop_assert_eq!(ms(t.end) - ms(t.start), dag.durations_ms[i]);
            for &d in &dag.deps[i] {
                prop_assert!(ms(summary.tasks[d].end) <= ms(t.start), "t{} started before its dep t{} ended", i, d);
            }
        }
        let spans: Vec<(u64, u64)> = summary.tasks.iter().map(|t| (ms(t.start), ms(t.end))).collect();
        let (all, per_class) = peak_concurrency(&spans, &dag.classes);
        if limits.jobs > 0 {
            prop_assert!(all <= limits.jobs, "{} running, jobs = {}", all, limits.jobs);
        }
        for (class, &cap) in &limits.per_class {
            if cap > 0 {
                prop_assert!(per_class[class] <= cap, "{} {} tasks running, cap {}", per_class[class], class, cap);
            }
        }
    }

    #[test]
    fn with_unlimited_slots_the_makespan_is_the_critical_path(dag in dag()) {
        let (path, length) = simulate::critical_path(&dag.deps, &dag.durations_ms).unwrap();
        let (summary, _) = run_dag(&dag, &Limits::unlimited());
        prop_assert_eq!(summary.makespan, Duration::from_millis(length));
        let simulated = simulate::simulate(&sim_tasks(&dag), &Limits::unlimited()).unwrap();
        prop_assert_eq!(simulated.makespan_ms, length);
        // The path is a chain of dependencies whose durations add up to its length.
        prop_assert_eq!(path.iter().map(|&i| dag.durations_ms[i]).sum::<u64>(), length);
        for w in path.windows(2) {
            prop_assert!(dag.deps[w[1]].contains(&w[0]));
        }
    }

    #[test]
    fn the_simulator_predicts_the_engine_exactly(dag in dag(), limits in limits()) {
        let schedule = simulate::simulate(&sim_tasks(&dag), &limits).unwrap();
        let (summary, _) = run_dag(&dag, &limits);
        for (i, (t, s)) in summary.tasks.iter().zip(&schedule.spans).enumerate() {
            prop_assert_eq!(
                (ms(t.ready), ms(t.start), ms(t.end)),
                (s.ready_ms, s.start_ms, s.end_ms),
                "t{} (ready, start, end): engine vs simulator", i
            );
        }
        prop_assert_eq!(summary.makespan, Duration::from_millis(schedule.makespan_ms));
    }

    #[test]
    fn remaining_critical_path_bounds_every_path_through_a_task(dag in dag()) {
        let remaining = simulate::remaining_critical_path(&dag.deps, &dag.durations_ms).unwrap();
        let (_, length) = simulate::critical_path(&dag.deps, &dag.durations_ms).unwrap();
        prop_assert_eq!(remaining.iter().copied().max().unwrap_or(0), length);
        for (i, deps) in dag.deps.iter().enumerate() {
            for &d in deps {
                prop_assert!(remaining[d] >= dag.durations_ms[d] + remaining[i]);
            }
        }
    }
}
