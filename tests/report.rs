//! Reports are pure functions of run records: snapshots, invariants, the model's accuracy, and
//! the run store.
//!
//! - `tests/fixtures/runs/real/`: records of real `kprov up` runs of the demo on this project's
//!   machines (see the README there). Everything about the what-if model is checked on these:
//!   a replay of a run under its own strategy against its measured makespan, a what-if to
//!   another strategy against a real run of that strategy, the critical path of a real run.
//! - `tests/fixtures/runs/*.json`: four synthetic aianalysis records (no kubernaut cluster can
//!   be had here), kept as fixed inputs for the renderers' snapshots, comparisons and the
//!   store. They were made by a copy of the engine's scheduler, so no test uses them to judge
//!   the scheduler's model: a replay of them would only agree with itself.
//! - Property tests run on random execution traces that no scheduler made (each task starts
//!   some random time after its dependencies ended), and pin what holds for any valid record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kprov::engine::simulate;
use kprov::engine::{Class, TaskOutcome};
use kprov::plan::Phase;
use kprov::record::collect::{CollectError, collect};
use kprov::record::store::{RunRef, Store, StoreError, read_record};
use kprov::record::{HostFacts, RunRecord, SCHEMA_VERSION, TaskRecord};
use kprov::report::{self, Analysis, Format, Options, Strategy, barrier_edges};
use proptest::prelude::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

fn fixture(name: &str) -> RunRecord {
    let path = fixture_dir().join(format!("{name}.json"));
    read_record(&path).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The real run of the demo under `strategy` (exactly one per strategy is kept).
fn real(strategy: Strategy) -> RunRecord {
    let found: Vec<RunRecord> = real_runs()
        .into_iter()
        .filter(|r| r.strategy == strategy.to_string())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one real {strategy} run in tests/fixtures/runs/real"
    );
    found.into_iter().next().unwrap()
}

/// Every real record, oldest first.
fn real_runs() -> Vec<RunRecord> {
    let dir = fixture_dir().join("real");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 3,
        "dag, hybrid and sequential runs in {}",
        dir.display()
    );
    paths
        .iter()
        .map(|p| read_record(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

const DAG: &str = "20261123T004012Z-aianalysis";
const HYBRID: &str = "20261123T003105Z-aianalysis";
const WARM: &str = "20261123T005530Z-aianalysis";
const FAILED: &str = "20261122T221847Z-signalprocessing";
const ALL: [&str; 4] = [DAG, HYBRID, WARM, FAILED];

fn render(name: &str, format: Format) -> String {
    report::render(&fixture(name), format, &Options::default()).unwrap()
}

// ---------------------------------------------------------------- snapshots

#[test]
fn text_report_of_a_dag_run() {
    insta::assert_snapshot!("text_dag", render(DAG, Format::Text));
}

#[test]
fn text_report_of_a_hybrid_run() {
    insta::assert_snapshot!("text_hybrid", render(HYBRID, Format::Text));
}

#[test]
fn text_report_of_a_warm_run_shows_cached_tasks() {
    insta::assert_snapshot!("text_warm", render(WARM, Format::Text));
}

#[test]
fn text_report_of_a_failed_run_names_the_failure_and_the_skipped_tasks() {
    insta::assert_snapshot!("text_failed", render(FAILED, Format::Text));
}

#[test]
fn json_report_of_a_dag_run() {
    insta::assert_snapshot!("json_dag", render(DAG, Format::Json));
}

#[test]
fn markdown_summary_of_a_dag_run() {
    insta::assert_snapshot!("markdown_dag", render(DAG, Format::Markdown));
}

#[test]
fn markdown_summary_of_a_failed_run() {
    insta::assert_snapshot!("markdown_failed", render(FAILED, Format::Markdown));
}

#[test]
fn chrome_trace_of_a_dag_run() {
    insta::assert_snapshot!("trace_dag", render(DAG, Format::Trace));
}

#[test]
fn chrome_trace_of_a_failed_run() {
    insta::assert_snapshot!("trace_failed", render(FAILED, Format::Trace));
}

#[test]
fn svg_waterfall_of_a_dag_run() {
    insta::assert_snapshot!("svg_dag", render(DAG, Format::Svg));
}

#[test]
fn svg_waterfall_of_a_failed_run() {
    insta::assert_snapshot!("svg_failed", render(FAILED, Format::Svg));
}

#[test]
fn svg_waterfall_of_a_warm_run() {
    insta::assert_snapshot!("svg_warm", render(WARM, Format::Svg));
}

#[test]
fn compare_a_dag_run_with_a_hybrid_run() {
    let (base, run) = (fixture(HYBRID), fixture(DAG));
    insta::assert_snapshot!(
        "compare_text",
        report::compare(&base, &run, Format::Text).unwrap()
    );
    insta::assert_snapshot!(
        "compare_json",
        report::compare(&base, &run, Format::Json).unwrap()
    );
    insta::assert_snapshot!(
        "compare_markdown",
        report::compare(&base, &run, Format::Markdown).unwrap()
    );
}

#[test]
fn compare_a_warm_run_with_a_cold_one() {
    let (base, run) = (fixture(DAG), fixture(WARM));
    insta::assert_snapshot!(
        "compare_warm_text",
        report::compare(&base, &run, Format::Text).unwrap()
    );
}

#[test]
fn compare_lists_tasks_found_in_only_one_run() {
    let (base, run) = (fixture(DAG), fixture(FAILED));
    insta::assert_snapshot!(
        "compare_services_text",
        report::compare(&base, &run, Format::Text).unwrap()
    );
}

#[test]
fn what_if_a_dag_run_had_used_the_hybrid_schedule() {
    let run = fixture(DAG);
    insta::assert_snapshot!(
        "whatif_hybrid_text",
        report::what_if(&run, Strategy::Hybrid, None, Format::Text).unwrap()
    );
    insta::assert_snapshot!(
        "whatif_hybrid_json",
        report::what_if(&run, Strategy::Hybrid, None, Format::Json).unwrap()
    );
    insta::assert_snapshot!(
        "whatif_hybrid_markdown",
        report::what_if(&run, Strategy::Hybrid, None, Format::Markdown).unwrap()
    );
}

#[test]
fn what_if_a_hybrid_run_had_used_the_dag_schedule_with_more_jobs() {
    let run = fixture(HYBRID);
    insta::assert_snapshot!(
        "whatif_dag_jobs8_text",
        report::what_if(&run, Strategy::Dag, Some(8), Format::Text).unwrap()
    );
}

#[test]
fn what_if_sequential_runs_one_task_at_a_time() {
    let run = fixture(DAG);
    let out = report::what_if(&run, Strategy::Sequential, Some(8), Format::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["predicted"]["jobs"], 1, "sequential ignores --jobs");
    let work: u64 = run.tasks.iter().filter_map(TaskRecord::duration_ms).sum();
    assert_eq!(
        v["predicted"]["makespan_ms"], work,
        "one at a time, back to back"
    );
    insta::assert_snapshot!(
        "whatif_sequential_text",
        report::what_if(&run, Strategy::Sequential, None, Format::Text).unwrap()
    );
}

#[test]
fn what_if_svg_draws_the_predicted_schedule() {
    let run = fixture(DAG);
    let svg = report::what_if(&run, Strategy::Hybrid, None, Format::Svg).unwrap();
    assert!(svg.contains("what if 20261123T004012Z-aianalysis ran hybrid"));
    assert_valid_svg(&svg);
    insta::assert_snapshot!("svg_whatif_hybrid", svg);
}

#[test]
fn comparisons_and_what_ifs_refuse_formats_they_cannot_draw() {
    let run = fixture(DAG);
    let err = report::compare(&run, &run, Format::Trace).unwrap_err();
    assert_eq!(
        err.to_string(),
        "render a comparison as trace: supported formats are text, json, markdown"
    );
    let err = report::what_if(&run, Strategy::Dag, None, Format::Trace).unwrap_err();
    assert!(
        err.to_string().starts_with("render a what-if as trace"),
        "{err}"
    );
}

// ---------------------------------------------------------------- invariants on records

fn check_invariants(r: &RunRecord) {
    let a = Analysis::new(r);
    for p in &a.phases {
        assert!(
            p.busy_ms <= p.span_ms,
            "{}: {:?} busy > span",
            r.run_id,
            p.phase
        );
        assert!(
            p.busy_ms <= p.work_ms,
            "{}: {:?} busy > work",
            r.run_id,
            p.phase
        );
        assert!(
            p.overlap_ms <= p.busy_ms,
            "{}: {:?} overlap > busy",
            r.run_id,
            p.phase
        );
        assert!(p.share <= 1.0 + 1e-9);
    }
    assert!(
        a.utilisation <= 1.0 + 1e-9,
        "{}: utilisation {}",
        r.run_id,
        a.utilisation
    );
    assert!(a.peak_concurrency <= a.slots);
    check_critical_path(r, &a);
}

/// The dependencies the engine honoured: each task's own, plus its strategy's barriers.
fn honoured_deps(r: &RunRecord) -> Vec<Vec<String>> {
    let index = |id: &String| r.tasks.iter().position(|t| &t.id == id).unwrap();
    let own: Vec<Vec<usize>> = r
        .tasks
        .iter()
        .map(|t| t.deps.iter().map(index).collect())
        .collect();
    let phases: Vec<Phase> = r.tasks.iter().map(|t| t.phase).collect();
    let strategy: Strategy = r.strategy.parse().unwrap();
    report::barrier_edges(&phases, &own, strategy)
        .into_iter()
        .map(|d| d.into_iter().map(|j| r.tasks[j].id.clone()).collect())
        .collect()
}

/// The critical path is a chain of dependencies ending at the task that finished last.
fn check_critical_path(r: &RunRecord, a: &Analysis) {
    let ran: Vec<&TaskRecord> = r.tasks.iter().filter(|t| t.end_ms.is_some()).collect();
    if ran.is_empty() {
        assert!(a.critical_path.is_empty());
        return;
    }
    let deps = honoured_deps(r);
    let end_of = |id: &String| r.tasks.iter().find(|t| &t.id == id).unwrap().end_ms;
    let last_end = ran.iter().filter_map(|t| t.end_ms).max().unwrap();
    let last = a.critical_path.last().expect("a path when tasks ran");
    assert_eq!(
        last.end_ms, last_end,
        "{}: the path ends at the last task",
        r.run_id
    );
    for pair in a.critical_path.windows(2) {
        let next = &deps[pair[1].index];
        assert!(
            next.contains(&pair[0].id),
            "{}: {} is not a dependency of {}",
            r.run_id,
            pair[0].id,
            pair[1].id
        );
        assert!(
            pair[0].end_ms <= pair[1].start_ms,
            "{}: a step starts before its predecessor ends",
            r.run_id
        );
        // It is the dependency that finished last: the one that gated the start.
        assert_eq!(Some(pair[0].end_ms), next.iter().filter_map(end_of).max());
    }
    assert!(
        deps[a.critical_path[0].index]
            .iter()
            .all(|d| end_of(d).is_none())
    );
    let total: u64 = a
        .critical_path
        .iter()
        .map(|s| s.duration_ms + s.wait_ms)
        .sum();
    assert_eq!(
        total, last_end,
        "running + waiting adds up to the end of the path"
    );
}

#[test]
fn every_synthetic_fixture_keeps_the_report_invariants() {
    for name in ALL {
        check_invariants(&fixture(name));
    }
}

/// What the engine guarantees of a record: a task starts after its dependencies ended and
/// once ready; concurrency stays under the caps.
fn check_consistent(r: &RunRecord) {
    for t in &r.tasks {
        if let (Some(ready), Some(start)) = (t.ready_ms, t.start_ms) {
            assert!(
                ready <= start,
                "{}: {} starts before it is ready",
                r.run_id,
                t.id
            );
            for d in &t.deps {
                let dep = r.tasks.iter().find(|x| &x.id == d).unwrap();
                assert!(
                    dep.end_ms.unwrap() <= ready,
                    "{}: {} ready before {} ended",
                    r.run_id,
                    t.id,
                    d
                );
            }
        }
    }
    let a = Analysis::new(r);
    assert!(r.jobs == 0 || a.peak_concurrency <= r.jobs);
}

#[test]
fn trace_is_json_with_one_complete_event_per_task_that_ran() {
    for name in ALL {
        let r = fixture(name);
        let trace: serde_json::Value = serde_json::from_str(&render(name, Format::Trace)).unwrap();
        assert_eq!(trace["displayTimeUnit"], "ms");
        let events = trace["traceEvents"].as_array().unwrap();
        let complete: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        let ran: Vec<&TaskRecord> = r.tasks.iter().filter(|t| t.start_ms.is_some()).collect();
        assert_eq!(complete.len(), ran.len(), "{name}");
        for t in ran {
            let ev = complete
                .iter()
                .find(|e| e["name"] == t.id.as_str())
                .expect("an event per task");
            assert_eq!(ev["ts"], t.start_ms.unwrap() * 1000, "ts in µs");
            assert_eq!(ev["dur"], t.duration_ms().unwrap() * 1000);
        }
        // No two events on one thread overlap: a viewer would nest or hide them.
        let mut by_tid: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for e in &complete {
            let (ts, dur) = (e["ts"].as_u64().unwrap(), e["dur"].as_u64().unwrap());
            by_tid
                .entry(e["tid"].as_u64().unwrap())
                .or_default()
                .push((ts, ts + dur));
        }
        for spans in by_tid.values_mut() {
            spans.sort_unstable();
            for w in spans.windows(2) {
                assert!(
                    w[0].1 <= w[1].0,
                    "{name}: overlapping events on one thread: {w:?}"
                );
            }
        }
        // Every thread that carries events is named.
        for tid in by_tid.keys() {
            assert!(
                events
                    .iter()
                    .any(|e| e["name"] == "thread_name" && e["tid"] == *tid)
            );
        }
    }
}

// ---------------------------------------------------------------- the model, on real runs

/// How far, per task of the run, a replay of a real run under its own strategy and jobs may
/// be from the run's measured makespan. The replay gives every task its recorded duration and
/// makes the engine's choices (the same ready queue, the run's caps and priorities), so what
/// it leaves out is the engine's own time between a task ending and the next one starting
/// (completion, event, spawn): 1 ms or so per task here (the three real runs are off by 1, 4
/// and 19 ms over 18 tasks; printed by the test). 5 ms a task (90 ms, about 0.5% of the dag
/// run) leaves room for a busier machine, and is far below what a replay that schedules
/// differently from the engine gets wrong: without the run's cpu cap of 2 the dag run would
/// replay as 10.3 s, not 16.8 s; without its own barriers the hybrid run as 22.2 s, not 26.9 s.
const OWN_REPLAY_TOLERANCE_MS_PER_TASK: u64 = 5;

/// How far a what-if from the real dag run to another strategy may be from a real run of that
/// strategy (cold runs of the demo on one machine, minutes apart). Much looser than a replay of
/// the run itself: a what-if keeps the durations of the run it replays, and durations depend on
/// what runs beside them. In the dag run the builds shared 2 cores with kind's cluster creation
/// (build:migrate 6.4 s there, 5.0 s in the other two runs; cluster:create 5.2 s vs 3.5-3.8 s), so
/// its what-ifs are off by 10-11% (hybrid predicted 23.9 s, a real hybrid run took 26.9 s;
/// sequential 35.9 s vs 32.5 s). 15% is that plus the noise of two single runs. What-ifs from
/// the hybrid run are far worse (printed, not asserted): there four loads ran at once and each
/// took ~5 times as long as alone, so its dag what-if predicts 22.2 s for a real 16.8 s.
const WHAT_IF_TOLERANCE: f64 = 0.15;

fn relative_error(predicted: u64, measured: u64) -> f64 {
    (predicted as f64 - measured as f64).abs() / measured.max(1) as f64
}

#[test]
fn real_records_are_whole_successful_runs_of_the_demo_with_one_per_strategy() {
    for r in real_runs() {
        assert_eq!(
            (r.service.as_str(), r.outcome.as_str()),
            ("demo", "succeeded")
        );
        assert!(
            r.tasks
                .iter()
                .all(|t| t.end_ms.is_some() && t.estimate_ms.is_some()),
            "{}",
            r.run_id
        );
        // A cold run (--no-cache, a new cluster): only the external image is found, not pulled.
        for t in &r.tasks {
            let expected = if t.kind == "pull" {
                TaskOutcome::Cached
            } else {
                TaskOutcome::Succeeded
            };
            assert_eq!(t.outcome, expected, "{}: {}", r.run_id, t.id);
        }
        check_consistent(&r);
        check_invariants(&r);
    }
    for s in [Strategy::Dag, Strategy::Hybrid, Strategy::Sequential] {
        real(s);
    }
    assert_eq!(
        Analysis::new(&real(Strategy::Sequential)).peak_concurrency,
        1
    );
}

#[test]
fn replaying_a_real_run_under_its_own_strategy_predicts_its_measured_makespan() {
    for r in real_runs() {
        let own: Strategy = r.strategy.parse().unwrap();
        let replay = report::replay(&r, own, None).unwrap();
        let off = replay.makespan_ms.abs_diff(r.makespan_ms);
        let allowed = OWN_REPLAY_TOLERANCE_MS_PER_TASK * r.tasks.len() as u64;
        println!(
            "{} ({}): measured {} ms, replayed {} ms: off by {off} ms ({:.2}%), allowed {allowed} ms",
            r.run_id,
            r.strategy,
            r.makespan_ms,
            replay.makespan_ms,
            relative_error(replay.makespan_ms, r.makespan_ms) * 100.0
        );
        assert!(
            off <= allowed,
            "{}: replayed {} ms vs measured {} ms",
            r.run_id,
            replay.makespan_ms,
            r.makespan_ms
        );
    }
}

#[test]
fn a_what_if_from_the_real_dag_run_is_near_a_real_run_of_the_other_strategy() {
    let all = [Strategy::Dag, Strategy::Hybrid, Strategy::Sequential];
    for from in all {
        for to in all.into_iter().filter(|&s| s != from) {
            let (run, other) = (real(from), real(to));
            // The jobs the real run of `to` had (the machine's default; 1 for sequential).
            let predicted = report::replay(&run, to, Some(other.jobs))
                .unwrap()
                .makespan_ms;
            let err = relative_error(predicted, other.makespan_ms);
            println!(
                "{from} run replayed as {to}: predicted {predicted} ms, a real {to} run took {} ms \
                 ({:+.1}%)",
                other.makespan_ms,
                (predicted as f64 / other.makespan_ms as f64 - 1.0) * 100.0
            );
            if from == Strategy::Dag {
                assert!(
                    err <= WHAT_IF_TOLERANCE,
                    "what-if {to} of the dag run: {predicted} ms vs a real {to} run's {} ms",
                    other.makespan_ms
                );
            }
        }
    }
}

#[test]
fn the_critical_path_of_a_real_run_is_a_chain_of_its_tasks_within_its_makespan() {
    for r in real_runs() {
        let a = Analysis::new(&r);
        // A chain of dependencies the engine honoured, each step after the previous one, ending
        // at the last task; running and waiting add up to that end.
        check_critical_path(&r, &a);
        let running: u64 = a.critical_path.iter().map(|s| s.duration_ms).sum();
        let recorded: u64 = a
            .critical_path
            .iter()
            .map(|s| r.tasks[s.index].duration_ms().unwrap())
            .sum();
        assert_eq!(
            running, recorded,
            "{}: the steps are the recorded tasks",
            r.run_id
        );
        assert!(running <= r.makespan_ms, "{}", r.run_id);

        // The DAG's critical path: a chain of the tasks' own dependencies, as long as their
        // recorded durations, no longer than the run, no shorter than any chain of own edges.
        let dag = a.dag_critical_path.clone().expect("a DAG");
        for pair in dag.tasks.windows(2) {
            let (before, after) = (&r.tasks[pair[0]], &r.tasks[pair[1]]);
            assert!(
                after.deps.contains(&before.id),
                "{}: {} → {}",
                r.run_id,
                before.id,
                after.id
            );
        }
        let sum: u64 = dag
            .tasks
            .iter()
            .map(|&i| r.tasks[i].duration_ms().unwrap())
            .sum();
        assert_eq!(sum, dag.length_ms, "{}", r.run_id);
        assert!(dag.length_ms <= r.makespan_ms, "{}", r.run_id);
        if r.strategy == "dag" {
            assert!(running <= dag.length_ms, "{}: no chain is longer", r.run_id);
        }
        let ratio = a.makespan_over_dag_critical_path().unwrap();
        println!(
            "{} ({}): makespan {} ms / DAG critical path {} ms = {ratio:.3}",
            r.run_id, r.strategy, r.makespan_ms, dag.length_ms
        );
    }
}

#[test]
fn a_real_hybrid_runs_critical_path_goes_through_its_barriers() {
    let r = real(Strategy::Hybrid);
    let ids: Vec<String> = Analysis::new(&r)
        .critical_path
        .iter()
        .map(|s| s.id.clone())
        .collect();
    // Cluster creation does not depend on any build: only the hybrid barrier made it wait.
    let create = ids
        .iter()
        .position(|i| i == "cluster:create")
        .unwrap_or_else(|| panic!("on the path: {ids:?}"));
    assert!(
        create > 0 && ids[create - 1].starts_with("build:"),
        "{ids:?}"
    );
    let dag = real(Strategy::Dag);
    let build_end = |r: &RunRecord| {
        r.tasks
            .iter()
            .filter(|t| t.phase == Phase::Build)
            .filter_map(|t| t.end_ms)
            .max()
            .unwrap()
    };
    let create_start = |r: &RunRecord| {
        r.tasks
            .iter()
            .find(|t| t.id == "cluster:create")
            .and_then(|t| t.start_ms)
            .unwrap()
    };
    assert!(
        create_start(&r) >= build_end(&r),
        "hybrid: the cluster after every build"
    );
    assert!(
        create_start(&dag) < build_end(&dag),
        "dag: the cluster beside the builds"
    );
}

#[test]
fn a_sequential_what_if_of_a_real_run_is_its_work_back_to_back() {
    let run = real(Strategy::Dag);
    let out = report::what_if(&run, Strategy::Sequential, Some(8), Format::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["predicted"]["jobs"], 1, "sequential ignores --jobs");
    let work: u64 = run.tasks.iter().filter_map(TaskRecord::duration_ms).sum();
    assert_eq!(v["predicted"]["makespan_ms"], work);
}

#[test]
fn on_real_runs_a_dag_what_if_never_predicts_more_than_the_hybrid_what_if() {
    // Not a theorem with limited slots (list scheduling has anomalies): a check that it holds
    // for the demo's real durations at the jobs people use.
    for r in real_runs() {
        for jobs in [None, Some(1), Some(2), Some(4), Some(8), Some(0)] {
            let dag = report::replay(&r, Strategy::Dag, jobs).unwrap().makespan_ms;
            let hybrid = report::replay(&r, Strategy::Hybrid, jobs)
                .unwrap()
                .makespan_ms;
            assert!(
                dag <= hybrid,
                "{} jobs {jobs:?}: dag {dag} > hybrid {hybrid}",
                r.run_id
            );
        }
    }
}

#[test]
fn text_report_of_a_real_dag_run() {
    let r = real(Strategy::Dag);
    insta::assert_snapshot!(
        "real_text_dag",
        report::render(&r, Format::Text, &Options::default()).unwrap()
    );
}

#[test]
fn what_if_a_real_dag_run_had_used_the_hybrid_schedule() {
    let r = real(Strategy::Dag);
    insta::assert_snapshot!(
        "real_whatif_hybrid_text",
        report::what_if(&r, Strategy::Hybrid, None, Format::Text).unwrap()
    );
}

#[test]
fn a_replay_keeps_every_task_after_its_dependencies_and_barriers() {
    let r = real(Strategy::Dag);
    let hybrid = report::replay(&r, Strategy::Hybrid, None).unwrap();
    check_consistent(&hybrid);
    let end_of = |phase: Phase| {
        hybrid
            .tasks
            .iter()
            .filter(|t| t.phase == phase)
            .filter_map(|t| t.end_ms)
            .max()
            .unwrap()
    };
    let start_of = |phase: Phase| {
        hybrid
            .tasks
            .iter()
            .filter(|t| t.phase == phase)
            .filter_map(|t| t.start_ms)
            .min()
            .unwrap()
    };
    assert!(end_of(Phase::Build) <= start_of(Phase::Cluster));
    assert!(end_of(Phase::Cluster) <= start_of(Phase::Load));
    assert!(end_of(Phase::Load) <= start_of(Phase::Deploy));
}

#[test]
fn the_measured_critical_path_of_the_dag_run_goes_through_the_build_that_queued() {
    // The fixture's mock-llm build waited for a CPU slot; that wait decided the run's end.
    let r = fixture(DAG);
    let a = Analysis::new(&r);
    let ids: Vec<&str> = a.critical_path.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.first(), Some(&"build:mock-llm"));
    assert_eq!(ids.last(), Some(&"wait:ready"));
    assert!(
        a.critical_path[0].wait_ms > 60_000,
        "it waited for a slot: {:?}",
        a.critical_path[0]
    );
}

#[test]
fn phase_figures_are_exact_on_a_small_run() {
    // build 0–10 and 5–20; cluster 0–8; load 20–25; deploy 25–30 and 40–50 (a gap 30–40).
    let r = small_run();
    let a = Analysis::new(&r);
    let p = |ph: Phase| a.phases.iter().find(|p| p.phase == ph).unwrap().clone();
    let build = p(Phase::Build);
    assert_eq!(
        (
            build.start_ms,
            build.end_ms,
            build.span_ms,
            build.busy_ms,
            build.work_ms
        ),
        (Some(0), Some(20), 20, 20, 25)
    );
    assert_eq!(build.overlap_ms, 8, "cluster ran 0–8 beside it");
    let deploy = p(Phase::Deploy);
    assert_eq!(
        (deploy.span_ms, deploy.busy_ms, deploy.overlap_ms),
        (25, 15, 0)
    );
    assert!((deploy.share - 0.3).abs() < 1e-9);
    assert_eq!(a.makespan_ms, 50);
    assert_eq!(a.idle_ms, 10);
    assert_eq!(a.peak_concurrency, 3, "b1, b2 and c at 5–8");
    assert_eq!(a.work_ms, 10 + 15 + 8 + 5 + 5 + 10);
    assert!(
        (a.utilisation - 53.0 / 150.0).abs() < 1e-9,
        "53 ms of work in 3 slots × 50 ms"
    );
    let path: Vec<(&str, u64)> = a
        .critical_path
        .iter()
        .map(|s| (s.id.as_str(), s.wait_ms))
        .collect();
    assert_eq!(path, [("b2", 5), ("l", 0), ("d1", 0), ("d2", 10)]);
    let q: Vec<Option<u64>> = r.tasks.iter().map(TaskRecord::queue_ms).collect();
    assert_eq!(
        a.tasks.iter().find(|t| t.id == "b2").unwrap().queue_ms,
        q[1]
    );
}

fn task(id: &str, phase: Phase, deps: &[&str], ready: u64, start: u64, end: u64) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        kind: phase.as_str().into(),
        phase,
        class: Class::Api,
        deps: deps.iter().map(|d| d.to_string()).collect(),
        ready_ms: Some(ready),
        start_ms: Some(start),
        end_ms: Some(end),
        outcome: TaskOutcome::Succeeded,
        attempts: 1,
        error: None,
        skip_reason: None,
        estimate_ms: None,
        builder: None,
    }
}

fn record(run_id: &str, strategy: &str, jobs: usize, tasks: Vec<TaskRecord>) -> RunRecord {
    let makespan_ms = tasks.iter().filter_map(|t| t.end_ms).max().unwrap_or(0);
    RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.into(),
        kprov_version: "0.1.0".into(),
        service: run_id.split_once('-').map_or("svc", |(_, s)| s).into(),
        strategy: strategy.into(),
        jobs,
        class_limits: BTreeMap::new(),
        host: HostFacts {
            cpus: 8,
            os: "linux".into(),
            engine_version: Some("20.10.24".into()),
            engine: None,
        },
        started_at: "2026-11-23T00:00:00Z".into(),
        makespan_ms,
        outcome: "succeeded".into(),
        tasks,
        files: BTreeMap::new(),
        image_cache: None,
        host_files: Vec::new(),
    }
}

fn small_run() -> RunRecord {
    use Phase::*;
    record(
        "20261123T000000Z-small",
        "dag",
        3,
        vec![
            task("b1", Build, &[], 0, 0, 10),
            task("b2", Build, &[], 0, 5, 20),
            task("c", Cluster, &[], 0, 0, 8),
            task("l", Load, &["b2", "c"], 20, 20, 25),
            task("d1", Deploy, &["l"], 25, 25, 30),
            task("d2", Deploy, &["d1", "b1"], 30, 40, 50),
        ],
    )
}

#[test]
fn reports_of_a_run_where_nothing_ran_do_not_panic() {
    let mut r = record(
        "20261123T000000Z-empty",
        "dag",
        4,
        vec![task("a", Phase::Build, &[], 0, 0, 0)],
    );
    r.tasks[0].start_ms = None;
    r.tasks[0].end_ms = None;
    r.tasks[0].outcome = TaskOutcome::Skipped;
    r.tasks[0].skip_reason = Some("cancelled: interrupted".into());
    r.outcome = "interrupted".into();
    for format in Format::ALL {
        let out = report::render(&r, format, &Options::default()).unwrap();
        assert!(out.ends_with('\n'));
    }
    assert_valid_svg(&report::render(&r, Format::Svg, &Options::default()).unwrap());
}

#[test]
fn svg_is_standalone_and_escapes_text() {
    let mut r = small_run();
    r.service = "a<b>&\"c\"".into();
    r.tasks[0].id = "build:<evil>&co".into();
    r.tasks[5].deps[1] = "build:<evil>&co".into();
    let svg = report::render(&r, Format::Svg, &Options::default()).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("build:&lt;evil&gt;&amp;co"));
    assert!(!svg.contains("<evil>"));
    assert_valid_svg(&svg);
    for name in ALL {
        assert_valid_svg(&render(name, Format::Svg));
    }
}

/// Well-formed XML: every tag closed in order, no bare `&` or `<` in text.
fn assert_valid_svg(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        assert_entities(text);
        let gt = rest[lt..].find('>').expect("an unclosed tag") + lt;
        let tag = &rest[lt + 1..gt];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        let attrs_quoted = tag.matches('"').count().is_multiple_of(2);
        assert!(attrs_quoted, "unbalanced quotes in <{tag}>");
        assert!(!tag.contains('<'), "a '<' inside a tag: {tag}");
        rest = &rest[gt + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn assert_entities(text: &str) {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&entity),
            "bare & in text: {entity:?}"
        );
    }
}

// ---------------------------------------------------------------- random traces

/// A random execution trace of a random DAG, made by no scheduler: phase-labelled tasks
/// (dependencies only on earlier tasks of the same or an earlier phase, as the planner builds
/// them) with random durations (0 included: a cached task), each ready when the last of the
/// dependencies its strategy honours ended and started a random time later (a queue, a slow
/// dispatch: anything). Any engine that honours dependencies writes records of this shape.
fn random_trace() -> impl Strategy2<Value = RunRecord> {
    let spec = (0usize..4, any::<u16>(), 0u64..5_000, 0u64..3_000);
    (prop::collection::vec(spec, 1..16), any::<bool>()).prop_map(|(mut specs, hybrid)| {
        specs.sort_by_key(|s| s.0);
        let phases: Vec<Phase> = specs
            .iter()
            .map(|s| [Phase::Build, Phase::Cluster, Phase::Load, Phase::Deploy][s.0])
            .collect();
        let own: Vec<Vec<usize>> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (0..i.min(16)).filter(|j| s.1 & (1 << j) != 0).collect())
            .collect();
        let strategy = if hybrid {
            Strategy::Hybrid
        } else {
            Strategy::Dag
        };
        let honoured = barrier_edges(&phases, &own, strategy);
        let mut tasks: Vec<TaskRecord> = Vec::with_capacity(specs.len());
        for (i, &(_, _, duration, gap)) in specs.iter().enumerate() {
            let ready = honoured[i]
                .iter()
                .map(|&d| tasks[d].end_ms.unwrap())
                .max()
                .unwrap_or(0);
            let mut t = task(
                &format!("t{i}"),
                phases[i],
                &[],
                ready,
                ready + gap,
                ready + gap + duration,
            );
            t.deps = own[i].iter().map(|j| format!("t{j}")).collect();
            t.class = match phases[i] {
                Phase::Build => Class::Cpu,
                Phase::Load => Class::Io,
                _ => Class::Api,
            };
            tasks.push(t);
        }
        record("20261123T000000Z-random", &strategy.to_string(), 0, tasks)
    })
}

use proptest::strategy::Strategy as Strategy2;

/// The critical path of `r`'s durations over the dependencies `strategy` honours.
fn critical_path_ms(r: &RunRecord, strategy: Strategy) -> u64 {
    let own: Vec<Vec<usize>> = r
        .tasks
        .iter()
        .map(|t| {
            t.deps
                .iter()
                .map(|d| r.tasks.iter().position(|x| &x.id == d).unwrap())
                .collect()
        })
        .collect();
    let phases: Vec<Phase> = r.tasks.iter().map(|t| t.phase).collect();
    let deps = barrier_edges(&phases, &own, strategy);
    let durations: Vec<u64> = r
        .tasks
        .iter()
        .map(|t| t.duration_ms().unwrap_or(0))
        .collect();
    simulate::critical_path(&deps, &durations).unwrap().1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_traces_keep_the_report_invariants(r in random_trace()) {
        check_consistent(&r);
        check_invariants(&r);
        let a = Analysis::new(&r);
        let running: u64 = a.critical_path.iter().map(|s| s.duration_ms).sum();
        let dag = a.dag_critical_path.as_ref().unwrap().length_ms;
        prop_assert!(running <= a.makespan_ms);
        prop_assert!(dag <= a.makespan_ms, "no run beats the DAG's critical path");
        prop_assert_eq!(dag, critical_path_ms(&r, Strategy::Dag));
        let trace: serde_json::Value = serde_json::from_str(&report::render(&r, Format::Trace, &Options::default()).unwrap()).unwrap();
        let xs = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
        prop_assert_eq!(xs, r.tasks.len());
        assert_valid_svg(&report::render(&r, Format::Svg, &Options::default()).unwrap());
    }

    #[test]
    fn with_unlimited_jobs_a_replay_takes_exactly_the_critical_path(r in random_trace()) {
        // Never less (a chain runs end to end), and with a slot for every ready task never more.
        for strategy in [Strategy::Dag, Strategy::Hybrid] {
            let replay = report::replay(&r, strategy, Some(0)).unwrap();
            prop_assert_eq!(replay.makespan_ms, critical_path_ms(&r, strategy), "{}", strategy);
        }
    }

    #[test]
    fn with_unlimited_jobs_dag_never_predicts_more_than_hybrid(r in random_trace()) {
        // With limited slots, list scheduling has anomalies (an extra edge can shorten a
        // schedule), so the guarantee holds for unlimited jobs; real runs check finite jobs.
        let dag = report::replay(&r, Strategy::Dag, Some(0)).unwrap();
        let hybrid = report::replay(&r, Strategy::Hybrid, Some(0)).unwrap();
        prop_assert!(dag.makespan_ms <= hybrid.makespan_ms);
    }

    #[test]
    fn with_m_jobs_a_replay_is_within_grahams_bounds(r in random_trace(), m in 1usize..6) {
        // No schedule on m slots beats max(critical path, work / m); a list schedule, which
        // never leaves a slot idle while a task is ready, takes at most L + (W - L) / m.
        for strategy in [Strategy::Dag, Strategy::Hybrid] {
            let t = report::replay(&r, strategy, Some(m)).unwrap().makespan_ms;
            let l = critical_path_ms(&r, strategy);
            let w: u64 = r.tasks.iter().filter_map(TaskRecord::duration_ms).sum();
            let m = m as u64;
            prop_assert!(t >= l, "{}: {} < critical path {}", strategy, t, l);
            prop_assert!(t * m >= w, "{}: {} < work {} / {}", strategy, t, w, m);
            prop_assert!(t * m <= l * m + (w - l), "{}: {} over Graham's bound (L {}, W {}, m {})", strategy, t, l, w, m);
        }
    }
}

// ---------------------------------------------------------------- the run store

#[test]
fn store_saves_lists_and_loads_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    assert!(store.list().unwrap().is_empty(), "no directory is no runs");
    for name in [DAG, FAILED, HYBRID] {
        let path = store.save(&fixture(name)).unwrap();
        assert_eq!(
            path,
            dir.path().join(".kprov/runs").join(format!("{name}.json"))
        );
    }
    let ids: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.run_id)
        .collect();
    assert_eq!(ids, [FAILED, HYBRID, DAG], "sorted by run id, oldest first");
    let leftovers: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 3, "no temp files left: {leftovers:?}");

    let (_, latest) = store.load(&RunRef::parse("latest")).unwrap();
    assert_eq!(latest.run_id, DAG);
    let (_, sp) = store.latest(Some("signalprocessing")).unwrap();
    assert_eq!(sp.run_id, FAILED);
    let (_, by_id) = store.load(&RunRef::parse(HYBRID)).unwrap();
    assert_eq!(by_id, fixture(HYBRID), "a record reads back as written");
    let (_, by_prefix) = store.load(&RunRef::parse("20261122")).unwrap();
    assert_eq!(by_prefix.run_id, FAILED);
    let fixture_path = fixture_dir().join(format!("{WARM}.json"));
    let (path, by_path) = store
        .load(&RunRef::parse(fixture_path.to_str().unwrap()))
        .unwrap();
    assert_eq!((path, by_path.run_id.as_str()), (fixture_path, WARM));
}

#[test]
fn store_never_replaces_an_existing_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let first = fixture(DAG);
    store.save(&first).unwrap();
    let mut second = first.clone();
    second.makespan_ms = 1;
    let err = store.save(&second).unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
    assert_eq!(store.load_id(DAG).unwrap().1, first);
}

#[test]
fn store_refuses_a_run_id_that_would_name_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = fixture(DAG);
    r.run_id = "../escape".into();
    let err = Store::new(dir.path()).save(&r).unwrap_err();
    assert!(err.to_string().contains("is not a valid run id"), "{err}");
}

#[test]
fn an_unknown_run_id_lists_the_available_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store.save(&fixture(DAG)).unwrap();
    store.save(&fixture(WARM)).unwrap();
    let err = store
        .load(&RunRef::parse("20250101T000000Z-nope"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("available runs: {DAG}, {WARM}, or `latest`")),
        "{msg}"
    );
    let err = store.load(&RunRef::parse("20261123")).unwrap_err();
    assert!(err.to_string().contains("matches 2 runs"), "{err}");
    let empty = Store::new(dir.path().join("elsewhere"));
    let err = empty.load(&RunRef::parse("latest")).unwrap_err();
    assert!(err.to_string().contains("no runs recorded"), "{err}");
    let err = store.latest(Some("gateway")).unwrap_err();
    assert!(
        err.to_string().starts_with("find a run of service gateway"),
        "{err}"
    );
}

#[test]
fn a_broken_record_is_named_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\n  \"schema_version\": 1,\n  \"run_id\": 12\n}\n").unwrap();
    let err = read_record(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "parse run record {}:3:14: invalid type: integer `12`, expected a string",
            path.display()
        )
    );
    std::fs::write(&path, "{\"schema_version\": 1, \"run_id\": \"x\"}").unwrap();
    let err = read_record(&path).unwrap_err().to_string();
    assert!(err.contains("missing field"), "{err}");
}

#[test]
fn a_record_from_a_newer_kprov_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.json");
    std::fs::write(
        &path,
        format!(
            "{{\"schema_version\": {}, \"anything\": []}}",
            SCHEMA_VERSION + 1
        ),
    )
    .unwrap();
    let err = read_record(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade kprov"));
}

#[test]
fn the_job_summary_is_appended_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.md");
    std::fs::write(&path, "# earlier step\n").unwrap();
    let md = render(DAG, Format::Markdown);
    report::append_step_summary(&path, &md).unwrap();
    let all = std::fs::read_to_string(&path).unwrap();
    assert!(all.starts_with("# earlier step\n"));
    assert!(all.contains("### ✅ kprov: aianalysis ready in"));
}

// ---------------------------------------------------------------- many runs (--merge)

fn real_paths() -> Vec<PathBuf> {
    let dir = fixture_dir().join("real");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}

fn merged(records: &[RunRecord], format: Format) -> String {
    report::merge(records, format).unwrap()
}

#[test]
fn merged_report_of_two_real_runs() {
    let runs = [real(Strategy::Dag), real(Strategy::Hybrid)];
    insta::assert_snapshot!("merge_real_text", merged(&runs, Format::Text));
    insta::assert_snapshot!("merge_real_markdown", merged(&runs, Format::Markdown));
}

#[test]
fn merged_report_of_two_services_names_the_failed_run() {
    let runs = [fixture(DAG), fixture(FAILED)];
    insta::assert_snapshot!("merge_services_text", merged(&runs, Format::Text));
    let md = merged(&runs, Format::Markdown);
    assert!(
        md.starts_with("### ❌ kprov: 2 runs of 2 services: 1 succeeded, 1 failed\n"),
        "{md}"
    );
    assert!(
        md.contains("**Failed: signalprocessing `build:signalprocessing`**"),
        "{md}"
    );
}

#[test]
fn a_merge_does_not_depend_on_the_order_of_its_records() {
    let (a, b, c) = (fixture(DAG), fixture(FAILED), real(Strategy::Sequential));
    for format in [Format::Text, Format::Json, Format::Markdown, Format::Trace] {
        assert_eq!(
            merged(&[a.clone(), b.clone(), c.clone()], format),
            merged(&[c.clone(), a.clone(), b.clone()], format),
            "{format}"
        );
    }
}

#[test]
fn merged_json_adds_up_the_runs() {
    let runs = real_runs();
    let j: serde_json::Value = serde_json::from_str(&merged(&runs, Format::Json)).unwrap();
    let analyses: Vec<Analysis> = runs.iter().map(Analysis::new).collect();
    let makespans: Vec<u64> = analyses.iter().map(|a| a.makespan_ms).collect();
    assert_eq!(j["runs"].as_array().unwrap().len(), runs.len());
    assert_eq!(j["runner_ms"], makespans.iter().sum::<u64>());
    assert_eq!(j["parallel_ms"], *makespans.iter().max().unwrap());
    assert_eq!(j["services"], serde_json::json!(["demo"]));
    assert_eq!(j["outcomes"]["succeeded"], runs.len());
    // The real runs ran one after another: the wall clock is from the first start to the
    // last end, more than the runner time (the gaps between runs).
    assert_eq!(j["started_at"], runs[0].started_at.as_str());
    let wall = j["wall_ms"].as_u64().unwrap();
    assert!(wall > j["runner_ms"].as_u64().unwrap(), "{wall}");
    for (k, run) in j["runs"].as_array().unwrap().iter().enumerate() {
        let a = &analyses[k];
        assert_eq!(run["run_id"], runs[k].run_id.as_str());
        assert_eq!(run["work_ms"], a.work_ms);
        assert_eq!(
            run["dag_critical_path_ms"],
            a.dag_critical_path.as_ref().unwrap().length_ms
        );
        assert_eq!(run["slowest_task"]["id"], a.tasks[0].id.as_str());
    }
    assert_eq!(j["runs"][0]["offset_ms"], 0);
    for phase in j["phases"].as_array().unwrap() {
        let busy: u64 = analyses
            .iter()
            .flat_map(|a| &a.phases)
            .filter(|p| p.phase.as_str() == phase["name"])
            .map(|p| p.busy_ms)
            .sum();
        assert_eq!(phase["busy_ms"], busy, "{phase}");
    }
}

#[test]
fn merged_trace_has_a_process_per_run_placed_by_its_start_time() {
    let runs = real_runs();
    let trace: serde_json::Value = serde_json::from_str(&merged(&runs, Format::Trace)).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(trace["otherData"]["time_base"], "started_at");
    let first_start = humantime::parse_rfc3339(&runs[0].started_at).unwrap();
    let mut flow_ids = std::collections::BTreeSet::new();
    for (k, r) in runs.iter().enumerate() {
        let pid = k as u64 + 1;
        let mine: Vec<&serde_json::Value> = events.iter().filter(|e| e["pid"] == pid).collect();
        let name = mine
            .iter()
            .find(|e| e["name"] == "process_name")
            .expect("every process is named");
        assert_eq!(
            name["args"]["name"],
            format!("{} · {}", r.service, r.run_id)
        );
        let complete: Vec<_> = mine.iter().filter(|e| e["ph"] == "X").collect();
        let ran = r.tasks.iter().filter(|t| t.start_ms.is_some()).count();
        assert_eq!(complete.len(), ran, "{}", r.run_id);
        // Each run from its own start after the first run's, in µs.
        let offset_ms = humantime::parse_rfc3339(&r.started_at)
            .unwrap()
            .duration_since(first_start)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(trace["otherData"]["runs"][k]["offset_ms"], offset_ms);
        for t in r.tasks.iter().filter(|t| t.start_ms.is_some()) {
            let ev = complete
                .iter()
                .find(|e| e["name"] == t.id.as_str())
                .unwrap();
            assert_eq!(ev["ts"], (offset_ms + t.start_ms.unwrap()) * 1000);
            assert_eq!(ev["dur"], t.duration_ms().unwrap() * 1000);
        }
        // Flow ids stay unique across processes: a viewer binds a flow's ends by id.
        let starts: Vec<u64> = mine
            .iter()
            .filter(|e| e["ph"] == "s")
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(starts.len(), Analysis::new(r).critical_path.len() - 1);
        for id in starts {
            assert!(flow_ids.insert(id), "flow id {id} used twice");
        }
    }
    let pids: std::collections::BTreeSet<u64> =
        events.iter().map(|e| e["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, (1..=runs.len() as u64).collect());
}

#[test]
fn a_merged_trace_without_readable_start_times_starts_every_run_at_zero() {
    let mut runs = [fixture(DAG), fixture(WARM)];
    runs[1].started_at = "sometime".into();
    let trace: serde_json::Value = serde_json::from_str(&merged(&runs, Format::Trace)).unwrap();
    assert_eq!(trace["otherData"]["time_base"], "each run's start");
    assert_eq!(trace["otherData"]["started_at"], serde_json::Value::Null);
    for pid in [1, 2] {
        let first = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["pid"] == pid && e["ph"] == "X")
            .map(|e| e["ts"].as_u64().unwrap())
            .min();
        assert!(first.unwrap() < 1_000_000, "pid {pid} starts near 0");
    }
    assert!(!merged(&runs, Format::Text).contains("wall clock"));
}

#[test]
fn merged_runs_cannot_be_drawn_as_one_svg() {
    let err = report::merge(&[fixture(DAG)], Format::Svg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "render merged runs as svg: supported formats are text, json, markdown, trace"
    );
}

#[test]
fn merge_reads_every_record_in_a_directory_and_skips_other_json() {
    let found = collect(&[fixture_dir().join("real")]).unwrap();
    assert_eq!(
        found.paths,
        real_paths(),
        "the README is not JSON: not read"
    );
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);

    // As actions/download-artifact lays records out: a directory per artifact.
    let dir = tempfile::tempdir().unwrap();
    for (k, name) in [DAG, FAILED].iter().enumerate() {
        let sub = dir.path().join(format!("kprov-record-{k}"));
        std::fs::create_dir(&sub).unwrap();
        std::fs::copy(
            fixture_dir().join(format!("{name}.json")),
            sub.join(format!("{name}.json")),
        )
        .unwrap();
    }
    let trace = dir.path().join("trace.json");
    std::fs::write(&trace, render(DAG, Format::Trace)).unwrap();
    let notes = dir.path().join("notes.json");
    std::fs::write(&notes, "not json at all").unwrap();
    std::fs::write(dir.path().join("summary.md"), "# not even .json").unwrap();
    let found = collect(&[dir.path().to_path_buf()]).unwrap();
    let ids: Vec<&str> = found.records.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, [DAG, FAILED], "by path");
    assert_eq!(
        found.warnings,
        [
            format!("skipped {}: not JSON", notes.display()),
            format!(
                "skipped {}: not a run record (it has no schema_version and run_id)",
                trace.display()
            ),
        ]
    );
}

#[test]
fn a_bad_record_in_a_merge_is_an_error_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture_dir().join(format!("{DAG}.json"));
    // Named explicitly, a file that is not a record is an error, not a warning.
    let trace = dir.path().join("trace.json");
    std::fs::write(&trace, render(DAG, Format::Trace)).unwrap();
    let err = collect(&[good.clone(), trace.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("parse run record {}:", trace.display())),
        "{err}"
    );
    let missing = dir.path().join("missing.json");
    let err = collect(std::slice::from_ref(&missing))
        .unwrap_err()
        .to_string();
    assert_eq!(err, format!("read run record {}", missing.display()));
    // In a directory, a record that does not read is an error too.
    let records = dir.path().join("records");
    std::fs::create_dir(&records).unwrap();
    let broken = records.join("broken.json");
    std::fs::write(&broken, "{\"schema_version\": 1, \"run_id\": 12}").unwrap();
    let err = collect(std::slice::from_ref(&records))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "parse run record {}:1:34: invalid type: integer `12`, expected a string",
            broken.display()
        )
    );
    std::fs::remove_file(&broken).unwrap();
    let err = collect(std::slice::from_ref(&records))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("merge run records: no run records in {}", records.display())
    );
}

#[test]
fn a_run_found_twice_is_read_once_and_two_different_records_of_one_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture_dir().join(format!("{DAG}.json"));
    let copy = dir.path().join("again.json");
    std::fs::copy(&original, &copy).unwrap();
    let found = collect(&[original.clone(), dir.path().to_path_buf()]).unwrap();
    assert_eq!(found.records, [fixture(DAG)]);
    assert_eq!(
        found.warnings,
        [format!(
            "{}: run {DAG} again (the same record as {}): read once",
            copy.display(),
            original.display()
        )]
    );

    let mut changed = fixture(DAG);
    changed.makespan_ms += 1;
    std::fs::write(&copy, serde_json::to_string(&changed).unwrap()).unwrap();
    let err = collect(&[original.clone(), copy.clone()]).unwrap_err();
    assert!(matches!(err, CollectError::Conflict { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "merge run records: run {DAG} is in both {} and {}, and the two records differ",
            original.display(),
            copy.display()
        )
    );
}

#[test]
fn a_merge_of_no_runs_or_of_runs_where_nothing_ran_does_not_panic() {
    let mut nothing = record(
        "20261123T000000Z-empty",
        "dag",
        4,
        vec![task("a", Phase::Build, &[], 0, 0, 0)],
    );
    nothing.tasks[0].start_ms = None;
    nothing.tasks[0].end_ms = None;
    nothing.tasks[0].outcome = TaskOutcome::Skipped;
    nothing.outcome = "interrupted".into();
    for records in [vec![], vec![nothing, small_run()]] {
        for format in [Format::Text, Format::Json, Format::Markdown, Format::Trace] {
            let out = merged(&records, format);
            assert!(out.ends_with('\n'), "{format}: {out}");
            if matches!(format, Format::Json | Format::Trace) {
                serde_json::from_str::<serde_json::Value>(&out).unwrap();
            }
        }
    }
}

/// Which builder made each image is in the record, and the reports say it.
#[test]
fn the_builder_of_each_build_is_shown_in_text_markdown_and_trace() {
    let mut r = real(Strategy::Dag);
    let i = r
        .tasks
        .iter()
        .position(|t| t.id.starts_with("build:"))
        .expect("a build");
    r.tasks[i].builder = Some("buildkit".into());
    let id = r.tasks[i].id.clone();
    let text = report::render(&r, Format::Text, &Options::default()).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not in:\n{text}"));
    assert!(line.contains("(buildkit)"), "{line}");
    let md = report::render(&r, Format::Markdown, &Options::default()).unwrap();
    assert!(md.contains("(buildkit)"), "{md}");
    let trace: serde_json::Value =
        serde_json::from_str(&report::render(&r, Format::Trace, &Options::default()).unwrap())
            .unwrap();
    let ev = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == id.as_str() && e["ph"] == "X")
        .unwrap_or_else(|| panic!("no event for {id}"));
    assert_eq!(ev["args"]["builder"], "buildkit");
}
