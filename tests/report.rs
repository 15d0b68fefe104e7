//! Reports are pure functions of run records: snapshots on fixed records in
//! `tests/fixtures/runs/`, invariants on those and on random runs, and the run store.
//!
//! The fixtures are generated, not hand-timed: `cargo test --test report -- --ignored
//! regenerate_fixtures` rewrites them with `fixtures::generate`, a test double of the engine's
//! timing (list scheduling with the planner's priorities, jittered durations, a few ms of
//! dispatch latency, fail-fast). Regenerate only when the fixtures' shape must change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kprov::engine::{Class, TaskOutcome};
use kprov::plan::Phase;
use kprov::record::store::{RunRef, Store, StoreError, read_record};
use kprov::record::{HostFacts, RunRecord, SCHEMA_VERSION, TaskRecord};
use kprov::report::{self, Analysis, Format, Options, Strategy};
use proptest::prelude::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

fn fixture(name: &str) -> RunRecord {
    let path = fixture_dir().join(format!("{name}.json"));
    read_record(&path).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
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

// ---------------------------------------------------------------- invariants on fixtures

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
fn a_hybrid_runs_critical_path_goes_through_its_barriers() {
    let r = fixture(HYBRID);
    let ids: Vec<String> = Analysis::new(&r)
        .critical_path
        .iter()
        .map(|s| s.id.clone())
        .collect();
    // Cluster creation does not depend on any build: only the hybrid barrier made it wait.
    let create = ids
        .iter()
        .position(|i| i == "cluster:create")
        .expect("on the path");
    assert!(ids[create - 1].starts_with("build:"), "{ids:?}");
}

#[test]
fn every_fixture_keeps_the_report_invariants() {
    for name in ALL {
        check_invariants(&fixture(name));
    }
}

#[test]
fn fixtures_are_consistent_runs() {
    for name in ALL {
        let r = fixture(name);
        check_consistent(&r);
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

#[test]
fn replaying_a_run_under_its_own_strategy_predicts_its_makespan_within_5_percent() {
    for name in ALL.into_iter().filter(|n| *n != FAILED) {
        let r = fixture(name);
        let own: Strategy = r.strategy.parse().unwrap();
        let replay = report::replay(&r, own, None).unwrap();
        let err = (replay.makespan_ms as f64 - r.makespan_ms as f64).abs() / r.makespan_ms as f64;
        println!(
            "{name}: measured {} ms, replayed {} ms ({:+.2}%)",
            r.makespan_ms,
            replay.makespan_ms,
            err * 100.0
        );
        assert!(
            err <= 0.05,
            "{name}: replay {} vs measured {}",
            replay.makespan_ms,
            r.makespan_ms
        );
    }
}

#[test]
fn a_dag_what_if_never_predicts_more_than_the_hybrid_what_if() {
    for name in ALL {
        let r = fixture(name);
        for jobs in [None, Some(1), Some(2), Some(4), Some(8), Some(0)] {
            let dag = report::replay(&r, Strategy::Dag, jobs).unwrap().makespan_ms;
            let hybrid = report::replay(&r, Strategy::Hybrid, jobs)
                .unwrap()
                .makespan_ms;
            assert!(
                dag <= hybrid,
                "{name} jobs {jobs:?}: dag {dag} > hybrid {hybrid}"
            );
        }
    }
}

#[test]
fn a_replay_keeps_every_task_after_its_dependencies_and_barriers() {
    let r = fixture(DAG);
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
        },
        started_at: "2026-11-23T00:00:00Z".into(),
        makespan_ms,
        outcome: "succeeded".into(),
        tasks,
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

// ---------------------------------------------------------------- random runs

/// A random DAG of phase-labelled tasks (dependencies only on earlier tasks of the same or an
/// earlier phase, as the planner builds them) and random durations, run by the fixtures'
/// engine double.
fn random_run() -> impl Strategy2<Value = (RunRecord, usize)> {
    (2usize..14, 0usize..5, any::<u64>()).prop_map(|(n, jobs, seed)| {
        let mut rng = fixtures::Rng(seed | 1);
        let kinds = [
            fixtures::Kind::Build,
            fixtures::Kind::Cluster,
            fixtures::Kind::Load,
            fixtures::Kind::Deploy,
        ];
        let mut specs: Vec<fixtures::Spec> = Vec::new();
        let mut kind_idx: Vec<usize> = (0..n).map(|_| rng.below(4) as usize).collect();
        kind_idx.sort_unstable();
        for (i, &k) in kind_idx.iter().enumerate() {
            let deps: Vec<String> = (0..i)
                .filter(|_| rng.below(3) == 0)
                .map(|j| format!("t{j}"))
                .collect();
            specs.push(fixtures::Spec::new(
                &format!("t{i}"),
                kinds[k],
                &deps,
                100 + rng.below(5_000),
            ));
        }
        let strategy = ["dag", "hybrid"][rng.below(2) as usize];
        let r = fixtures::generate(
            &fixtures::RunSpec::new("20261123T000000Z-random", strategy, jobs, seed),
            &specs,
        );
        (r, jobs)
    })
}

use proptest::strategy::Strategy as Strategy2;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_runs_keep_the_report_invariants((r, _) in random_run()) {
        check_consistent(&r);
        check_invariants(&r);
        let trace: serde_json::Value = serde_json::from_str(&report::render(&r, Format::Trace, &Options::default()).unwrap()).unwrap();
        let xs = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
        prop_assert_eq!(xs, r.tasks.len());
        assert_valid_svg(&report::render(&r, Format::Svg, &Options::default()).unwrap());
    }

    #[test]
    fn with_unlimited_jobs_dag_never_predicts_more_than_hybrid((r, _) in random_run()) {
        // With limited slots, list scheduling has anomalies (an extra edge can shorten a
        // schedule), so the guarantee holds for unlimited jobs; fixtures check finite jobs.
        let dag = report::replay(&r, Strategy::Dag, Some(0)).unwrap();
        let hybrid = report::replay(&r, Strategy::Hybrid, Some(0)).unwrap();
        prop_assert!(dag.makespan_ms <= hybrid.makespan_ms);
    }

    #[test]
    fn replays_under_their_own_schedule_stay_within_5_percent((r, _) in random_run()) {
        let own: Strategy = r.strategy.parse().unwrap();
        let replay = report::replay(&r, own, None).unwrap();
        let err = (replay.makespan_ms as f64 - r.makespan_ms as f64).abs() / r.makespan_ms.max(1) as f64;
        prop_assert!(err <= 0.05, "replay {} vs measured {}", replay.makespan_ms, r.makespan_ms);
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

// ---------------------------------------------------------------- fixtures

#[test]
#[ignore = "rewrites tests/fixtures/runs; run by hand when the fixtures must change"]
fn regenerate_fixtures() {
    std::fs::create_dir_all(fixture_dir()).unwrap();
    for r in fixtures::all() {
        let mut json = serde_json::to_string_pretty(&r).unwrap();
        json.push('\n');
        std::fs::write(fixture_dir().join(format!("{}.json", r.run_id)), json).unwrap();
    }
}

/// A test double of the engine's timing, to make realistic, self-consistent run records.
mod fixtures {
    use std::collections::BTreeMap;

    use kprov::engine::simulate::remaining_critical_path;
    use kprov::engine::{Class, TaskOutcome};
    use kprov::plan::TaskKind;
    use kprov::record::{HostFacts, RunRecord, SCHEMA_VERSION, TaskRecord};
    use kprov::report::{Strategy, barrier_edges};

    pub use kprov::plan::TaskKind as Kind;

    /// xorshift64: deterministic jitter.
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// A factor in [1 - spread, 1 + spread].
        pub fn jitter(&mut self, spread: f64) -> f64 {
            1.0 + spread * ((self.below(2001) as f64 / 1000.0) - 1.0)
        }
    }

    pub struct Spec {
        pub id: String,
        pub kind: TaskKind,
        pub deps: Vec<String>,
        /// The planner's estimate; the run takes this ± jitter.
        pub estimate_ms: u64,
        pub outcome: TaskOutcome,
        pub attempts: u32,
        /// Fails after this long (fail-fast stops the run).
        pub fails_after: Option<(u64, String)>,
    }

    impl Spec {
        pub fn new(id: &str, kind: TaskKind, deps: &[impl AsRef<str>], estimate_ms: u64) -> Spec {
            Spec {
                id: id.into(),
                kind,
                deps: deps.iter().map(|d| d.as_ref().to_string()).collect(),
                estimate_ms,
                outcome: TaskOutcome::Succeeded,
                attempts: 1,
                fails_after: None,
            }
        }
        fn cached(mut self) -> Spec {
            self.outcome = TaskOutcome::Cached;
            self
        }
        fn attempts(mut self, n: u32) -> Spec {
            self.attempts = n;
            self
        }
        fn fails(mut self, after_ms: u64, error: &str) -> Spec {
            self.fails_after = Some((after_ms, error.into()));
            self
        }
    }

    pub struct RunSpec {
        pub run_id: String,
        pub strategy: String,
        pub jobs: usize,
        pub class_limits: BTreeMap<Class, usize>,
        pub seed: u64,
        pub started_at: String,
    }

    impl RunSpec {
        pub fn new(run_id: &str, strategy: &str, jobs: usize, seed: u64) -> RunSpec {
            RunSpec {
                run_id: run_id.into(),
                strategy: strategy.into(),
                jobs,
                class_limits: BTreeMap::new(),
                seed,
                started_at: "2026-11-23T00:00:00Z".into(),
            }
        }
    }

    /// Runs `specs` the way the engine would: ready tasks start by priority (the remaining
    /// critical path over the estimates) then by order, under the caps; each takes its
    /// estimate ± 8% plus 1–3 ms to dispatch; the first failure stops the run (running
    /// tasks are cancelled within ~30 ms, the rest skipped).
    pub fn generate(run: &RunSpec, specs: &[Spec]) -> RunRecord {
        let n = specs.len();
        let mut rng = Rng(run.seed.max(1));
        let index = |id: &str| {
            specs
                .iter()
                .position(|s| s.id == id)
                .unwrap_or_else(|| panic!("unknown {id}"))
        };
        let own: Vec<Vec<usize>> = specs
            .iter()
            .map(|s| s.deps.iter().map(|d| index(d)).collect())
            .collect();
        let strategy: Strategy = run.strategy.parse().unwrap();
        let phases: Vec<_> = specs.iter().map(|s| s.kind.phase()).collect();
        let deps = barrier_edges(&phases, &own, strategy);
        let estimates: Vec<u64> = specs.iter().map(|s| s.estimate_ms).collect();
        let priority = remaining_critical_path(&deps, &estimates).unwrap();
        let actual: Vec<u64> = specs
            .iter()
            .map(|s| match &s.fails_after {
                Some((after, _)) => *after,
                None => ((s.estimate_ms as f64) * rng.jitter(0.08)).round() as u64,
            })
            .collect();
        let jobs = if strategy == Strategy::Sequential {
            1
        } else {
            run.jobs
        };
        let cap = |c: Class| {
            run.class_limits
                .get(&c)
                .copied()
                .filter(|&v| v > 0)
                .unwrap_or(usize::MAX)
        };
        let total_cap = if jobs == 0 { usize::MAX } else { jobs };

        let mut ready_at: Vec<Option<u64>> = vec![None; n];
        let mut start: Vec<Option<u64>> = vec![None; n];
        let mut end: Vec<Option<u64>> = vec![None; n];
        let mut outcome: Vec<TaskOutcome> = specs.iter().map(|s| s.outcome).collect();
        let mut error: Vec<Option<String>> = vec![None; n];
        let mut skip: Vec<Option<String>> = vec![None; n];
        let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut queue: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
        for &i in &queue {
            ready_at[i] = Some(0);
        }
        let mut running: Vec<(u64, usize)> = Vec::new(); // (end, task)
        let mut now = 0u64;
        let mut stopped = false;
        loop {
            if !stopped {
                // Highest priority first, then insertion order; skip a task whose class is full.
                queue.sort_by_key(|&i| (std::cmp::Reverse(priority[i]), i));
                let mut k = 0;
                while k < queue.len() && running.len() < total_cap {
                    let i = queue[k];
                    let class = specs[i].kind.class();
                    let in_class = running
                        .iter()
                        .filter(|(_, j)| specs[*j].kind.class() == class)
                        .count();
                    if in_class >= cap(class) {
                        k += 1;
                        continue;
                    }
                    queue.remove(k);
                    let s = now + 1 + rng.below(3);
                    start[i] = Some(s);
                    let e = s + actual[i];
                    end[i] = Some(e);
                    running.push((e, i));
                }
            }
            let Some(&(t, _)) = running.iter().min() else {
                break;
            };
            now = t;
            let done: Vec<usize> = running
                .iter()
                .filter(|(e, _)| *e == t)
                .map(|&(_, i)| i)
                .collect();
            running.retain(|(e, _)| *e != t);
            for i in done {
                if let Some((_, msg)) = &specs[i].fails_after
                    && !stopped
                {
                    outcome[i] = TaskOutcome::Failed;
                    error[i] = Some(msg.clone());
                    stopped = true;
                    // Fail-fast: cancel what runs, skip what has not started.
                    for (e, j) in running.iter_mut() {
                        *e = now + 5 + rng.below(30);
                        end[*j] = Some(*e);
                        outcome[*j] = TaskOutcome::Failed;
                        error[*j] = Some("cancelled".into());
                    }
                    continue;
                }
                if stopped {
                    continue;
                }
                for d in 0..n {
                    if deps[d].contains(&i) {
                        pending[d] -= 1;
                        if pending[d] == 0 {
                            ready_at[d] = Some(now);
                            queue.push(d);
                        }
                    }
                }
            }
        }
        if stopped {
            for i in 0..n {
                if start[i].is_none() {
                    outcome[i] = TaskOutcome::Skipped;
                    // Dependents of the failure (transitively) name it; the rest were cancelled.
                    let culprit = own[i].iter().find(|&&d| {
                        (specs[d].fails_after.is_some() && outcome[d] == TaskOutcome::Failed)
                            || skip[d]
                                .as_deref()
                                .is_some_and(|s| s.starts_with("dependency"))
                    });
                    skip[i] = Some(match culprit {
                        Some(&d) => format!("dependency {} did not succeed", specs[d].id),
                        _ => "cancelled: a task failed".into(),
                    });
                }
            }
        }
        let tasks = specs
            .iter()
            .enumerate()
            .map(|(i, s)| TaskRecord {
                id: s.id.clone(),
                kind: s.kind.as_str().into(),
                phase: s.kind.phase(),
                class: s.kind.class(),
                deps: s.deps.clone(),
                ready_ms: ready_at[i],
                start_ms: start[i],
                end_ms: end[i],
                outcome: outcome[i],
                attempts: if start[i].is_some() { s.attempts } else { 0 },
                error: error[i].clone(),
                skip_reason: skip[i].clone(),
                estimate_ms: Some(s.estimate_ms),
            })
            .collect::<Vec<_>>();
        let makespan_ms = tasks.iter().filter_map(|t| t.end_ms).max().unwrap_or(0);
        RunRecord {
            schema_version: SCHEMA_VERSION,
            run_id: run.run_id.clone(),
            kprov_version: "0.1.0".into(),
            service: run.run_id.split_once('-').unwrap().1.into(),
            strategy: run.strategy.clone(),
            jobs: run.jobs,
            class_limits: run.class_limits.clone(),
            host: HostFacts {
                cpus: 8,
                os: "linux".into(),
                engine_version: Some("20.10.24".into()),
            },
            started_at: run.started_at.clone(),
            makespan_ms,
            outcome: if stopped { "failed" } else { "succeeded" }.into(),
            tasks,
        }
    }

    /// The aianalysis stack (see ../shared/reference/kubernaut-environments.md): four builds,
    /// Postgres and Redis pulled, a Kind cluster, CRDs and config, a load per image, the
    /// DataStorage stack with its migrations hook, HAPI with its mock LLM, the controller.
    fn aianalysis(warm: bool) -> Vec<Spec> {
        use TaskKind::*;
        let s = |id: &str, kind: TaskKind, deps: &[&str], cold: u64, warm_ms: u64| {
            let spec = Spec::new(id, kind, deps, if warm { warm_ms } else { cold });
            if warm && matches!(kind, Build | Pull | Load | Cluster) {
                spec.cached()
            } else {
                spec
            }
        };
        vec![
            s("build:aianalysis", Build, &[], 118_000, 310),
            s("build:datastorage", Build, &[], 96_000, 290),
            s("build:holmesgpt-api", Build, &[], 84_000, 340),
            s("build:mock-llm", Build, &[], 42_000, 220),
            s("pull:postgres", Pull, &[], 600, 40),
            s("pull:redis", Pull, &[], 400, 30),
            s("cluster:create", Cluster, &[], 25_000, 900),
            s("apply:crds", Crds, &["cluster:create"], 1_800, 640),
            s(
                "wait:crds-established",
                Established,
                &["apply:crds"],
                1_200,
                110,
            ),
            s("apply:config", Config, &["cluster:create"], 1_100, 520),
            s(
                "load:postgres",
                Load,
                &["pull:postgres", "cluster:create"],
                6_500,
                180,
            ),
            s(
                "load:redis",
                Load,
                &["pull:redis", "cluster:create"],
                3_200,
                150,
            ),
            s(
                "load:aianalysis",
                Load,
                &["build:aianalysis", "cluster:create"],
                9_800,
                210,
            ),
            s(
                "load:datastorage",
                Load,
                &["build:datastorage", "cluster:create"],
                8_700,
                190,
            ),
            s(
                "load:holmesgpt-api",
                Load,
                &["build:holmesgpt-api", "cluster:create"],
                11_200,
                230,
            ),
            s(
                "load:mock-llm",
                Load,
                &["build:mock-llm", "cluster:create"],
                4_100,
                160,
            ),
            s(
                "deploy:postgresql",
                Deploy,
                &["load:postgres", "apply:config"],
                1_400,
                310,
            ),
            s(
                "deploy:redis",
                Deploy,
                &["load:redis", "apply:config"],
                900,
                280,
            ),
            s(
                "hook:datastorage-migrations",
                Hook,
                &["deploy:postgresql", "load:datastorage"],
                7_500,
                1_150,
            ),
            s(
                "deploy:datastorage",
                Deploy,
                &[
                    "load:datastorage",
                    "hook:datastorage-migrations",
                    "deploy:redis",
                ],
                1_200,
                300,
            ),
            s(
                "deploy:mock-llm",
                Deploy,
                &["load:mock-llm", "apply:config"],
                800,
                260,
            ),
            s(
                "deploy:holmesgpt-api",
                Deploy,
                &["load:holmesgpt-api", "deploy:mock-llm", "apply:config"],
                1_100,
                290,
            ),
            s(
                "deploy:aianalysis",
                Deploy,
                &[
                    "load:aianalysis",
                    "wait:crds-established",
                    "apply:config",
                    "deploy:datastorage",
                    "deploy:holmesgpt-api",
                ],
                1_300,
                330,
            ),
            s(
                "wait:ready",
                Wait,
                &[
                    "deploy:postgresql",
                    "deploy:redis",
                    "hook:datastorage-migrations",
                    "deploy:datastorage",
                    "deploy:mock-llm",
                    "deploy:holmesgpt-api",
                    "deploy:aianalysis",
                ],
                34_000,
                2_100,
            ),
        ]
    }

    fn signalprocessing() -> Vec<Spec> {
        use TaskKind::*;
        vec![
            Spec::new("build:signalprocessing", Build, &[] as &[&str], 70_000).fails(
                38_240,
                "build signalprocessing: step 9/14 `RUN go build -o /bin/controller ./cmd/signalprocessing` exited with 1:\n\
                 pkg/signalprocessing/enricher.go:88:2: undefined: labels.Selector\n\
                 pkg/signalprocessing/enricher.go:91:9: cannot use ctx (variable of type *Context) as context.Context value",
            ),
            Spec::new("build:datastorage", Build, &[] as &[&str], 96_000),
            Spec::new("pull:postgres", Pull, &[] as &[&str], 600),
            Spec::new("pull:redis", Pull, &[] as &[&str], 400),
            // Kind's create hit a transient runtime error once, then succeeded.
            Spec::new("cluster:create", Cluster, &[] as &[&str], 29_500).attempts(2),
            Spec::new("apply:crds", Crds, &["cluster:create"], 1_700),
            Spec::new("wait:crds-established", Established, &["apply:crds"], 1_100),
            Spec::new("apply:config", Config, &["cluster:create"], 900),
            Spec::new("load:postgres", Load, &["pull:postgres", "cluster:create"], 6_400),
            Spec::new("load:redis", Load, &["pull:redis", "cluster:create"], 3_100),
            Spec::new("load:signalprocessing", Load, &["build:signalprocessing", "cluster:create"], 7_900),
            Spec::new("load:datastorage", Load, &["build:datastorage", "cluster:create"], 8_600),
            Spec::new("deploy:postgresql", Deploy, &["load:postgres", "apply:config"], 1_300),
            Spec::new("deploy:redis", Deploy, &["load:redis", "apply:config"], 900),
            Spec::new("hook:datastorage-migrations", Hook, &["deploy:postgresql", "load:datastorage"], 7_400),
            Spec::new("deploy:datastorage", Deploy, &["load:datastorage", "hook:datastorage-migrations", "deploy:redis"], 1_200),
            Spec::new(
                "deploy:signalprocessing",
                Deploy,
                &["load:signalprocessing", "wait:crds-established", "apply:config", "deploy:datastorage"],
                1_200,
            ),
            Spec::new(
                "wait:ready",
                Wait,
                &["deploy:postgresql", "deploy:redis", "hook:datastorage-migrations", "deploy:datastorage", "deploy:signalprocessing"],
                30_000,
            ),
        ]
    }

    pub fn all() -> Vec<RunRecord> {
        let limits: BTreeMap<Class, usize> = [(Class::Cpu, 3)].into();
        let mut dag = RunSpec::new(super::DAG, "dag", 6, 7);
        dag.class_limits = limits.clone();
        dag.started_at = "2026-11-23T00:40:12Z".into();
        let mut hybrid = RunSpec::new(super::HYBRID, "hybrid", 6, 11);
        hybrid.class_limits = limits.clone();
        hybrid.started_at = "2026-11-23T00:31:05Z".into();
        let mut warm = RunSpec::new(super::WARM, "dag", 6, 13);
        warm.class_limits = limits.clone();
        warm.started_at = "2026-11-23T00:55:30Z".into();
        let mut failed = RunSpec::new(super::FAILED, "dag", 6, 17);
        failed.class_limits = limits;
        failed.started_at = "2026-11-22T22:18:47Z".into();
        vec![
            generate(&dag, &aianalysis(false)),
            generate(&hybrid, &aianalysis(false)),
            generate(&warm, &aianalysis(true)),
            generate(&failed, &signalprocessing()),
        ]
    }
}
