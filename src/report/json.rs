//! `--format json`: the analysis as one JSON object (stable field names; fields only added).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{Class, TaskOutcome};
use crate::plan::Phase;
use crate::record::HostFacts;

use super::analysis::{Analysis, CriticalStep, PhaseStats, TaskStats};
use super::whatif::WhatIf;

#[derive(Serialize)]
pub(crate) struct Profile<'a> {
    pub run_id: &'a str,
    pub service: &'a str,
    pub strategy: &'a str,
    pub jobs: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub class_limits: &'a BTreeMap<Class, usize>,
    pub outcome: &'a str,
    pub started_at: &'a str,
    pub kprov_version: &'a str,
    pub host: &'a HostFacts,
    pub makespan_ms: u64,
    /// Sum of task durations.
    pub work_ms: u64,
    pub idle_ms: u64,
    pub slots: usize,
    pub utilisation: f64,
    pub peak_concurrency: usize,
    pub phases: &'a [PhaseStats],
    pub tasks: Vec<TaskJson<'a>>,
    pub critical_path: Vec<&'a str>,
    pub critical_path_steps: &'a [CriticalStep],
    /// The longest chain of the tasks' own dependencies at the measured durations.
    pub dag_critical_path: Vec<&'a str>,
    pub dag_critical_path_ms: Option<u64>,
    /// `makespan_ms / dag_critical_path_ms`: what the schedule cost over that chain.
    pub makespan_over_dag_critical_path: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct TaskJson<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub phase: Phase,
    pub class: Class,
    pub deps: &'a [String],
    pub ready_ms: Option<u64>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub queue_ms: Option<u64>,
    pub outcome: TaskOutcome,
    pub attempts: u32,
    pub critical: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<&'a str>,
}

/// Shares with 4 decimals: enough for a percentage with two, and stable in snapshots.
pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub(crate) fn serialize_round4<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round4(*x))
}

fn task_json<'a>(a: &'a Analysis, t: &'a TaskStats) -> TaskJson<'a> {
    let rec = &a.record.tasks[t.index];
    TaskJson {
        id: &t.id,
        kind: &t.kind,
        phase: t.phase,
        class: t.class,
        deps: &rec.deps,
        ready_ms: t.ready_ms,
        start_ms: t.start_ms,
        end_ms: t.end_ms,
        duration_ms: t.duration_ms,
        queue_ms: t.queue_ms,
        outcome: t.outcome,
        attempts: t.attempts,
        critical: t.critical,
        error: rec.error.as_deref(),
        skip_reason: rec.skip_reason.as_deref(),
    }
}

pub(crate) fn profile<'a>(a: &'a Analysis) -> Profile<'a> {
    let r = a.record;
    Profile {
        run_id: &r.run_id,
        service: &r.service,
        strategy: &r.strategy,
        jobs: r.jobs,
        class_limits: &r.class_limits,
        outcome: &r.outcome,
        started_at: &r.started_at,
        kprov_version: &r.kprov_version,
        host: &r.host,
        makespan_ms: a.makespan_ms,
        work_ms: a.work_ms,
        idle_ms: a.idle_ms,
        slots: a.slots,
        utilisation: round4(a.utilisation),
        peak_concurrency: a.peak_concurrency,
        phases: &a.phases,
        tasks: a.tasks.iter().map(|t| task_json(a, t)).collect(),
        critical_path: a.critical_path.iter().map(|s| s.id.as_str()).collect(),
        critical_path_steps: &a.critical_path,
        dag_critical_path: a
            .dag_critical_path
            .iter()
            .flat_map(|p| &p.tasks)
            .map(|&i| r.tasks[i].id.as_str())
            .collect(),
        dag_critical_path_ms: a.dag_critical_path.as_ref().map(|p| p.length_ms),
        makespan_over_dag_critical_path: a.makespan_over_dag_critical_path().map(round4),
    }
}

pub(crate) fn to_string(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("reports always serialise");
    s.push('\n');
    s
}

pub(crate) fn render(a: &Analysis) -> String {
    to_string(&profile(a))
}

#[derive(Serialize)]
struct Schedule<'a> {
    strategy: &'a str,
    jobs: usize,
    makespan_ms: u64,
}

#[derive(Serialize)]
struct Replayed<'a> {
    strategy: &'a str,
    jobs: usize,
    makespan_ms: u64,
    /// (replayed − measured) / measured.
    error: f64,
}

#[derive(Serialize)]
struct Predicted<'a> {
    strategy: &'a str,
    jobs: usize,
    makespan_ms: u64,
    delta_ms: i64,
    delta: f64,
    phases: &'a [PhaseStats],
    critical_path: Vec<&'a str>,
    tasks: Vec<PredictedTask<'a>>,
}

#[derive(Serialize)]
struct PredictedTask<'a> {
    id: &'a str,
    phase: Phase,
    ready_ms: Option<u64>,
    start_ms: Option<u64>,
    end_ms: Option<u64>,
}

#[derive(Serialize)]
struct WhatIfJson<'a> {
    run_id: &'a str,
    service: &'a str,
    /// False when the run stopped early: never-run tasks were replayed as taking no time.
    complete: bool,
    /// The run's per-class caps, which every replay keeps.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    class_limits: &'a BTreeMap<Class, usize>,
    measured: Schedule<'a>,
    replayed: Option<Replayed<'a>>,
    predicted: Predicted<'a>,
}

fn relative(base: u64, other: u64) -> f64 {
    if base == 0 {
        0.0
    } else {
        round4((other as f64 - base as f64) / base as f64)
    }
}

pub(crate) fn what_if(w: &WhatIf) -> String {
    let measured = w.measured_ms();
    let pa = Analysis::new(&w.predicted);
    let p = &w.predicted;
    let out = WhatIfJson {
        run_id: &w.measured.run_id,
        service: &w.measured.service,
        complete: w.complete(),
        class_limits: &w.measured.class_limits,
        measured: Schedule {
            strategy: &w.measured.strategy,
            jobs: w.measured.jobs,
            makespan_ms: measured,
        },
        replayed: w.baseline.as_ref().map(|b| Replayed {
            strategy: &b.strategy,
            jobs: b.jobs,
            makespan_ms: b.makespan_ms,
            error: relative(measured, b.makespan_ms),
        }),
        predicted: Predicted {
            strategy: &p.strategy,
            jobs: p.jobs,
            makespan_ms: p.makespan_ms,
            delta_ms: w.delta_ms(),
            delta: relative(measured, p.makespan_ms),
            phases: &pa.phases,
            critical_path: pa
                .critical_path
                .iter()
                .map(|s| p.tasks[s.index].id.as_str())
                .collect(),
            tasks: p
                .tasks
                .iter()
                .map(|t| PredictedTask {
                    id: &t.id,
                    phase: t.phase,
                    ready_ms: t.ready_ms,
                    start_ms: t.start_ms,
                    end_ms: t.end_ms,
                })
                .collect(),
        },
    };
    to_string(&out)
}
