//! `--compare OTHER`: how a run differs from a baseline, per phase and per task.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::engine::TaskOutcome;
use crate::plan::Phase;
use crate::record::RunRecord;

use super::analysis::Analysis;
use super::fmt::{delta, delta_pct, duration, opt_duration, table};
use super::jobs_label;
use super::markdown::{cell, header, row};

/// `run` against `base`; every delta is `run − base`.
#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    pub base: Analysis<'a>,
    pub run: Analysis<'a>,
    pub phases: Vec<PhaseDelta>,
    /// Tasks in both runs, largest absolute duration change first.
    pub tasks: Vec<TaskDelta>,
    pub only_in_base: Vec<String>,
    pub only_in_run: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseDelta {
    pub name: Phase,
    pub base_busy_ms: u64,
    pub run_busy_ms: u64,
    pub busy_delta_ms: i64,
    pub base_span_ms: u64,
    pub run_span_ms: u64,
    pub span_delta_ms: i64,
    /// When the phase finished (its last task's end).
    pub base_end_ms: Option<u64>,
    pub run_end_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDelta {
    pub id: String,
    pub phase: Phase,
    /// Durations; absent for a task that never ran.
    pub base_ms: Option<u64>,
    pub run_ms: Option<u64>,
    pub delta_ms: Option<i64>,
    pub base_outcome: TaskOutcome,
    pub run_outcome: TaskOutcome,
    pub base_queue_ms: Option<u64>,
    pub run_queue_ms: Option<u64>,
}

fn diff(base: u64, run: u64) -> i64 {
    run as i64 - base as i64
}

impl<'a> Comparison<'a> {
    pub fn new(base: &'a RunRecord, run: &'a RunRecord) -> Self {
        let (ba, ra) = (Analysis::new(base), Analysis::new(run));
        let phases = Phase::ALL
            .iter()
            .filter_map(|&phase| {
                let b = ba.phases.iter().find(|p| p.phase == phase);
                let r = ra.phases.iter().find(|p| p.phase == phase);
                if b.is_none() && r.is_none() {
                    return None;
                }
                let busy = |p: Option<&super::analysis::PhaseStats>| p.map_or(0, |p| p.busy_ms);
                let span = |p: Option<&super::analysis::PhaseStats>| p.map_or(0, |p| p.span_ms);
                Some(PhaseDelta {
                    name: phase,
                    base_busy_ms: busy(b),
                    run_busy_ms: busy(r),
                    busy_delta_ms: diff(busy(b), busy(r)),
                    base_span_ms: span(b),
                    run_span_ms: span(r),
                    span_delta_ms: diff(span(b), span(r)),
                    base_end_ms: b.and_then(|p| p.end_ms),
                    run_end_ms: r.and_then(|p| p.end_ms),
                })
            })
            .collect();

        let in_run: HashMap<&str, usize> = run
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let in_base: HashMap<&str, usize> = base
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut tasks: Vec<TaskDelta> = base
            .tasks
            .iter()
            .filter_map(|b| {
                let r = &run.tasks[*in_run.get(b.id.as_str())?];
                let (bd, rd) = (b.duration_ms(), r.duration_ms());
                Some(TaskDelta {
                    id: b.id.clone(),
                    phase: r.phase,
                    base_ms: bd,
                    run_ms: rd,
                    delta_ms: bd.zip(rd).map(|(b, r)| diff(b, r)),
                    base_outcome: b.outcome,
                    run_outcome: r.outcome,
                    base_queue_ms: b.queue_ms(),
                    run_queue_ms: r.queue_ms(),
                })
            })
            .collect();
        // Biggest change first; a task that ran in only one of the runs after all measured ones.
        tasks.sort_by(|x, y| {
            let key = |t: &TaskDelta| t.delta_ms.map(i64::unsigned_abs);
            y.delta_ms
                .is_some()
                .cmp(&x.delta_ms.is_some())
                .then(key(y).cmp(&key(x)))
                .then(x.id.cmp(&y.id))
        });
        let only_in_base = base
            .tasks
            .iter()
            .filter(|t| !in_run.contains_key(t.id.as_str()))
            .map(|t| t.id.clone())
            .collect();
        let only_in_run = run
            .tasks
            .iter()
            .filter(|t| !in_base.contains_key(t.id.as_str()))
            .map(|t| t.id.clone())
            .collect();
        Comparison {
            base: ba,
            run: ra,
            phases,
            tasks,
            only_in_base,
            only_in_run,
        }
    }

    pub fn makespan_delta_ms(&self) -> i64 {
        diff(self.base.makespan_ms, self.run.makespan_ms)
    }
}

fn summary(a: &Analysis) -> String {
    let r = a.record;
    format!(
        "{}, {}, jobs {}, {}: {}",
        r.service,
        r.strategy,
        jobs_label(r.jobs),
        r.outcome,
        duration(a.makespan_ms)
    )
}

fn outcome_change(t: &TaskDelta) -> String {
    use super::text::outcome_str;
    if t.base_outcome == t.run_outcome {
        outcome_str(t.run_outcome).to_string()
    } else {
        format!(
            "{} → {}",
            outcome_str(t.base_outcome),
            outcome_str(t.run_outcome)
        )
    }
}

fn task_cells(t: &TaskDelta) -> [String; 5] {
    [
        opt_duration(t.base_ms),
        opt_duration(t.run_ms),
        t.delta_ms.map_or_else(|| "-".to_string(), delta),
        match (t.base_ms, t.run_ms) {
            (Some(b), Some(r)) => delta_pct(b, r),
            _ => "-".to_string(),
        },
        outcome_change(t),
    ]
}

pub(crate) fn text(c: &Comparison) -> String {
    let (b, r) = (c.base.record, c.run.record);
    let mut out = String::new();
    let _ = writeln!(out, "Compare run {} with base {}", r.run_id, b.run_id);
    let _ = writeln!(out, "  base  {}", summary(&c.base));
    let _ = writeln!(out, "  run   {}", summary(&c.run));
    let _ = writeln!(
        out,
        "  makespan: {} ({})",
        delta(c.makespan_delta_ms()),
        delta_pct(c.base.makespan_ms, c.run.makespan_ms)
    );

    out.push_str("\nPhases (busy time, and when each phase finished)\n");
    let rows: Vec<Vec<String>> = c
        .phases
        .iter()
        .map(|p| {
            vec![
                p.name.to_string(),
                duration(p.base_busy_ms),
                duration(p.run_busy_ms),
                delta(p.busy_delta_ms),
                delta_pct(p.base_busy_ms, p.run_busy_ms),
                opt_duration(p.base_end_ms),
                opt_duration(p.run_end_ms),
                match (p.base_end_ms, p.run_end_ms) {
                    (Some(b), Some(r)) => delta(diff(b, r)),
                    _ => "-".to_string(),
                },
            ]
        })
        .collect();
    out.push_str(&table(
        "  ",
        &[
            "phase",
            "base",
            "run",
            "delta",
            "%",
            "ended base",
            "ended run",
            "delta",
        ],
        &[false, true, true, true, true, true, true, true],
        &rows,
    ));

    out.push_str("\nTasks (largest change first)\n");
    let rows: Vec<Vec<String>> = c
        .tasks
        .iter()
        .map(|t| {
            let mut v = vec![t.id.clone(), t.phase.to_string()];
            v.extend(task_cells(t));
            v
        })
        .collect();
    out.push_str(&table(
        "  ",
        &["task", "phase", "base", "run", "delta", "%", "outcome"],
        &[false, false, true, true, true, true, false],
        &rows,
    ));
    if !c.only_in_base.is_empty() {
        let _ = writeln!(
            out,
            "\nOnly in base ({}): {}",
            c.only_in_base.len(),
            c.only_in_base.join(", ")
        );
    }
    if !c.only_in_run.is_empty() {
        let _ = writeln!(
            out,
            "\nOnly in run ({}): {}",
            c.only_in_run.len(),
            c.only_in_run.join(", ")
        );
    }
    out
}

pub(crate) fn markdown(c: &Comparison) -> String {
    let r = c.run.record;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### kprov: {} {} → {} ({}, {})\n",
        cell(&r.service),
        duration(c.base.makespan_ms),
        duration(c.run.makespan_ms),
        delta(c.makespan_delta_ms()),
        delta_pct(c.base.makespan_ms, c.run.makespan_ms)
    );
    out.push_str(&header(
        &["", "run", "schedule", "outcome", "makespan"],
        &[false, false, false, false, true],
    ));
    for (label, a) in [("base", &c.base), ("run", &c.run)] {
        let rec = a.record;
        out.push_str(&row(&[
            label.to_string(),
            format!("`{}`", rec.run_id.replace('`', "'")),
            format!("{}, jobs {}", cell(&rec.strategy), jobs_label(rec.jobs)),
            cell(&rec.outcome),
            duration(a.makespan_ms),
        ]));
    }
    out.push_str("\n#### Phases (busy time, and when each phase finished)\n\n");
    out.push_str(&header(
        &[
            "phase",
            "base",
            "run",
            "delta",
            "%",
            "ended base",
            "ended run",
        ],
        &[false, true, true, true, true, true, true],
    ));
    for p in &c.phases {
        out.push_str(&row(&[
            p.name.to_string(),
            duration(p.base_busy_ms),
            duration(p.run_busy_ms),
            delta(p.busy_delta_ms),
            delta_pct(p.base_busy_ms, p.run_busy_ms),
            opt_duration(p.base_end_ms),
            opt_duration(p.run_end_ms),
        ]));
    }
    out.push_str("\n#### Tasks (largest change first)\n\n");
    out.push_str(&header(
        &["task", "phase", "base", "run", "delta", "%", "outcome"],
        &[false, false, true, true, true, true, false],
    ));
    for t in &c.tasks {
        let mut v = vec![cell(&t.id), t.phase.to_string()];
        v.extend(task_cells(t));
        out.push_str(&row(&v));
    }
    let list = |ids: &[String]| {
        ids.iter()
            .map(|i| format!("`{}`", i.replace('`', "'")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !c.only_in_base.is_empty() {
        let _ = writeln!(out, "\nOnly in base: {}", list(&c.only_in_base));
    }
    if !c.only_in_run.is_empty() {
        let _ = writeln!(out, "\nOnly in run: {}", list(&c.only_in_run));
    }
    out
}

#[derive(Serialize)]
struct RunSide<'a> {
    run_id: &'a str,
    strategy: &'a str,
    jobs: usize,
    outcome: &'a str,
    makespan_ms: u64,
}

#[derive(Serialize)]
struct ComparisonJson<'a> {
    base: RunSide<'a>,
    run: RunSide<'a>,
    makespan_delta_ms: i64,
    /// (run − base) / base.
    makespan_delta: f64,
    phases: &'a [PhaseDelta],
    tasks: &'a [TaskDelta],
    only_in_base: &'a [String],
    only_in_run: &'a [String],
}

pub(crate) fn json(c: &Comparison) -> String {
    fn side<'b>(a: &'b Analysis) -> RunSide<'b> {
        RunSide {
            run_id: &a.record.run_id,
            strategy: &a.record.strategy,
            jobs: a.record.jobs,
            outcome: &a.record.outcome,
            makespan_ms: a.makespan_ms,
        }
    }
    let rel = if c.base.makespan_ms == 0 {
        0.0
    } else {
        super::json::round4(c.makespan_delta_ms() as f64 / c.base.makespan_ms as f64)
    };
    super::json::to_string(&ComparisonJson {
        base: side(&c.base),
        run: side(&c.run),
        makespan_delta_ms: c.makespan_delta_ms(),
        makespan_delta: rel,
        phases: &c.phases,
        tasks: &c.tasks,
        only_in_base: &c.only_in_base,
        only_in_run: &c.only_in_run,
    })
}
