//! `--merge`: the runs of many jobs (a CI matrix, one job per service, each uploading its run
//! record) as one report: a row per run, each phase's busy time per run, and the matrix's
//! totals (its makespan when the jobs run at once, the runner time they took together).
//!
//! The runs are ordered by service, then run id, whatever order they were given in.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::engine::TaskOutcome;
use crate::plan::Phase;
use crate::record::RunRecord;

use super::analysis::{Analysis, PhaseStats, TaskStats};
use super::fmt::{duration, opt_duration, table};
use super::json::{round4, to_string};
use super::markdown::{cell, header, row};
use super::text::was_cancelled;

/// Many runs, analysed one by one, and what they add up to.
#[derive(Debug, Clone)]
pub struct Merged<'a> {
    /// One per record, by service, then run id.
    pub runs: Vec<MergedRun<'a>>,
    /// The phases any run has, in pipeline order.
    pub phases: Vec<Phase>,
    /// The earliest run's `started_at`, when every record's start time reads as RFC 3339
    /// (then every [`MergedRun::offset_ms`] is set).
    pub started_at: Option<&'a str>,
}

/// One run of the merge.
#[derive(Debug, Clone)]
pub struct MergedRun<'a> {
    pub analysis: Analysis<'a>,
    /// When it started after the earliest run, by the records' start times; `None` when some
    /// record's start time does not read.
    pub offset_ms: Option<u64>,
    /// Tasks whose output was already there (outcome `cached`).
    pub cached: usize,
}

impl<'a> MergedRun<'a> {
    pub fn record(&self) -> &'a RunRecord {
        self.analysis.record
    }

    /// The task that ran longest, when any ran.
    pub fn slowest_task(&self) -> Option<&TaskStats> {
        self.analysis
            .tasks
            .first()
            .filter(|t| t.duration_ms.is_some())
    }

    pub fn phase(&self, phase: Phase) -> Option<&PhaseStats> {
        self.analysis.phases.iter().find(|p| p.phase == phase)
    }

    /// The DAG's critical path at the measured durations (see [`Analysis::dag_critical_path`]).
    pub fn dag_critical_path_ms(&self) -> Option<u64> {
        self.analysis
            .dag_critical_path
            .as_ref()
            .map(|p| p.length_ms)
    }
}

fn started(r: &RunRecord) -> Option<SystemTime> {
    humantime::parse_rfc3339(&r.started_at).ok()
}

impl<'a> Merged<'a> {
    pub fn new(records: &'a [RunRecord]) -> Self {
        let mut order: Vec<&RunRecord> = records.iter().collect();
        order.sort_by(|a, b| (&a.service, &a.run_id).cmp(&(&b.service, &b.run_id)));
        let starts: Option<Vec<SystemTime>> = order.iter().map(|r| started(r)).collect();
        let earliest = starts.as_ref().and_then(|s| s.iter().min().copied());
        let runs: Vec<MergedRun> = order
            .iter()
            .enumerate()
            .map(|(k, r)| MergedRun {
                analysis: Analysis::new(r),
                offset_ms: starts.as_ref().zip(earliest).map(|(s, first)| {
                    let after = s[k].duration_since(first).unwrap_or(Duration::ZERO);
                    after.as_millis() as u64
                }),
                cached: r
                    .tasks
                    .iter()
                    .filter(|t| t.outcome == TaskOutcome::Cached)
                    .count(),
            })
            .collect();
        let started_at = earliest.and_then(|first| {
            let k = starts.as_ref()?.iter().position(|s| *s == first)?;
            Some(order[k].started_at.as_str())
        });
        let phases = Phase::ALL
            .into_iter()
            .filter(|&p| runs.iter().any(|j| j.phase(p).is_some()))
            .collect();
        Merged {
            runs,
            phases,
            started_at,
        }
    }

    /// The run that took longest (the first of them on a tie).
    pub fn slowest(&self) -> Option<&MergedRun<'a>> {
        self.runs
            .iter()
            .rev()
            .max_by_key(|j| j.analysis.makespan_ms)
    }

    /// The slowest run's makespan: the matrix's makespan when its jobs run at once.
    pub fn parallel_ms(&self) -> u64 {
        self.slowest().map_or(0, |j| j.analysis.makespan_ms)
    }

    /// The runs' makespans summed: the runner time the matrix took.
    pub fn runner_ms(&self) -> u64 {
        self.runs.iter().map(|j| j.analysis.makespan_ms).sum()
    }

    /// From the first run's start to the last run's end, by the records' start times.
    pub fn wall_ms(&self) -> Option<u64> {
        self.runs
            .iter()
            .map(|j| Some(j.offset_ms? + j.analysis.makespan_ms))
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .max()
    }

    /// The services merged, sorted, each once.
    pub fn services(&self) -> Vec<&'a str> {
        let mut s: Vec<&str> = self
            .runs
            .iter()
            .map(|j| j.record().service.as_str())
            .collect();
        s.dedup();
        s
    }

    /// How many runs ended each way: `succeeded` first, then the others by name.
    pub fn outcomes(&self) -> Vec<(&'a str, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for j in &self.runs {
            *counts.entry(j.record().outcome.as_str()).or_default() += 1;
        }
        let mut out: Vec<(&str, usize)> = counts.into_iter().collect();
        out.sort_by_key(|(o, _)| *o != "succeeded");
        out
    }

    /// A phase's busy time summed over the runs.
    pub fn phase_busy_ms(&self, phase: Phase) -> u64 {
        self.runs
            .iter()
            .filter_map(|j| j.phase(phase))
            .map(|p| p.busy_ms)
            .sum()
    }
}

fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// `3 runs of 2 services: 2 succeeded, 1 failed`
fn headline(m: &Merged) -> String {
    let outcomes: Vec<String> = m
        .outcomes()
        .iter()
        .map(|(o, n)| format!("{n} {o}"))
        .collect();
    format!(
        "{} of {}: {}",
        plural(m.runs.len(), "run"),
        plural(m.services().len(), "service"),
        if outcomes.is_empty() {
            "nothing to merge".to_string()
        } else {
            outcomes.join(", ")
        }
    )
}

/// The matrix's totals as (label, figure, what it is).
fn totals(m: &Merged) -> Vec<[String; 3]> {
    let mut rows = Vec::new();
    if let Some(j) = m.slowest() {
        let r = j.record();
        rows.push([
            "in parallel".to_string(),
            duration(m.parallel_ms()),
            format!(
                "the matrix's makespan when its jobs run at once: the slowest run, {} {}",
                r.service, r.run_id
            ),
        ]);
    }
    rows.push([
        "runner time".to_string(),
        duration(m.runner_ms()),
        "the runs' makespans summed".to_string(),
    ]);
    if let Some(wall) = m.wall_ms() {
        rows.push([
            "wall clock".to_string(),
            duration(wall),
            "from the first start to the last end, by the records' start times".to_string(),
        ]);
    }
    rows
}

/// A run's cells in the runs table: service, run, outcome, makespan, task time, DAG critical
/// path, slowest task, tasks, cached.
fn job_cells(j: &MergedRun) -> [String; 9] {
    let (a, r) = (&j.analysis, j.record());
    [
        r.service.clone(),
        r.run_id.clone(),
        r.outcome.clone(),
        duration(a.makespan_ms),
        duration(a.work_ms),
        opt_duration(j.dag_critical_path_ms()),
        j.slowest_task().map_or("-".to_string(), |t| {
            format!("{} {}", t.id, opt_duration(t.duration_ms))
        }),
        r.tasks.len().to_string(),
        j.cached.to_string(),
    ]
}

const JOB_HEADER: [&str; 9] = [
    "service",
    "run",
    "outcome",
    "makespan",
    "task time",
    "DAG critical path",
    "slowest task",
    "tasks",
    "cached",
];
const JOB_RIGHT: [bool; 9] = [false, false, false, true, true, true, false, true, true];

/// Per run, its failed tasks (not those the run's cancellation stopped) with their error's
/// first line.
fn failures<'m>(m: &'m Merged) -> Vec<(&'m RunRecord, &'m str, &'m str)> {
    m.runs
        .iter()
        .flat_map(|j| {
            let r = j.record();
            r.tasks
                .iter()
                .filter(|t| t.outcome == TaskOutcome::Failed && !was_cancelled(t))
                .map(move |t| {
                    let error = t.error.as_deref().unwrap_or("(no error recorded)");
                    (r, t.id.as_str(), error.lines().next().unwrap_or(""))
                })
        })
        .collect()
}

/// Each phase's busy time per run, and summed over the runs.
fn phase_rows(m: &Merged) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = m
        .runs
        .iter()
        .map(|j| {
            let r = j.record();
            let mut cells = vec![r.service.clone(), r.run_id.clone()];
            cells.extend(
                m.phases
                    .iter()
                    .map(|&p| opt_duration(j.phase(p).map(|s| s.busy_ms))),
            );
            cells
        })
        .collect();
    let mut all = vec!["all runs".to_string(), String::new()];
    all.extend(m.phases.iter().map(|&p| duration(m.phase_busy_ms(p))));
    rows.push(all);
    rows
}

fn phase_header(m: &Merged) -> (Vec<&'static str>, Vec<bool>) {
    let mut names = vec!["service", "run"];
    names.extend(m.phases.iter().map(|p| p.as_str()));
    let right = (0..names.len()).map(|i| i >= 2).collect();
    (names, right)
}

pub(crate) fn text(m: &Merged) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Merged {}", headline(m));
    let rows: Vec<Vec<String>> = totals(m).into_iter().map(Vec::from).collect();
    let totals = table("  ", &["", "", ""], &[false, true, false], &rows);
    // The table without its (empty) header line.
    out.push_str(totals.split_once('\n').map_or("", |(_, body)| body));
    if m.runs.is_empty() {
        return out;
    }

    out.push_str("\nRuns\n");
    let rows: Vec<Vec<String>> = m.runs.iter().map(|j| Vec::from(job_cells(j))).collect();
    out.push_str(&table("  ", &JOB_HEADER, &JOB_RIGHT, &rows));

    let failed = failures(m);
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailed ({})", failed.len());
        for (r, task, error) in failed {
            let _ = writeln!(out, "  {} {}: {task}: {error}", r.service, r.run_id);
        }
    }

    out.push_str("\nPhase busy time per run (time when any task of the phase ran)\n");
    let (names, right) = phase_header(m);
    out.push_str(&table("  ", &names, &right, &phase_rows(m)));
    out
}

/// A run id or task id as inline code (a backtick in it would end the span).
fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'"))
}

pub(crate) fn markdown(m: &Merged) -> String {
    let mut out = String::new();
    let all_ok = m.runs.iter().all(|j| j.record().outcome == "succeeded");
    let _ = writeln!(
        out,
        "### {} kprov: {}\n",
        if all_ok { "✅" } else { "❌" },
        cell(&headline(m))
    );
    out.push_str(&header(&["matrix", "time", ""], &[false, true, false]));
    for [label, figure, what] in totals(m) {
        out.push_str(&row(&[label, format!("**{figure}**"), cell(&what)]));
    }
    out.push('\n');
    if m.runs.is_empty() {
        return out;
    }

    for (r, task, error) in failures(m) {
        let _ = writeln!(
            out,
            "**Failed: {} {}**: {}\n",
            cell(&r.service),
            code(task),
            cell(error)
        );
    }

    out.push_str("#### Runs\n\n");
    out.push_str(&header(&JOB_HEADER, &JOB_RIGHT));
    for j in &m.runs {
        let mut cells = job_cells(j).map(|c| cell(&c));
        cells[1] = code(&j.record().run_id);
        if j.record().outcome != "succeeded" {
            cells[2] = format!("**{}**", cells[2]);
        }
        out.push_str(&row(&cells));
    }

    out.push_str("\n#### Phase busy time per run\n\n");
    let (names, right) = phase_header(m);
    out.push_str(&header(&names, &right));
    let rows = phase_rows(m);
    for (k, cells) in rows.iter().enumerate() {
        let mut cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        if k + 1 == rows.len() {
            // The total over the runs.
            cells
                .iter_mut()
                .filter(|c| !c.is_empty())
                .for_each(|c| *c = format!("**{c}**"));
        } else {
            cells[1] = code(&m.runs[k].record().run_id);
        }
        out.push_str(&row(&cells));
    }
    out
}

#[derive(Serialize)]
struct MergedJson<'a> {
    /// The earliest run's start, when every run's start time reads (the offsets' base).
    started_at: Option<&'a str>,
    services: Vec<&'a str>,
    outcomes: BTreeMap<&'a str, usize>,
    /// The slowest run's makespan, and which run that is.
    parallel_ms: u64,
    slowest_run_id: Option<&'a str>,
    runner_ms: u64,
    wall_ms: Option<u64>,
    /// Each phase's busy and task time summed over the runs.
    phases: Vec<PhaseTotal>,
    runs: Vec<RunJson<'a>>,
}

#[derive(Serialize)]
struct PhaseTotal {
    name: Phase,
    runs: usize,
    busy_ms: u64,
    work_ms: u64,
}

#[derive(Serialize)]
struct SlowestTask<'a> {
    id: &'a str,
    phase: Phase,
    duration_ms: Option<u64>,
}

#[derive(Serialize)]
struct RunJson<'a> {
    run_id: &'a str,
    service: &'a str,
    strategy: &'a str,
    jobs: usize,
    outcome: &'a str,
    started_at: &'a str,
    offset_ms: Option<u64>,
    makespan_ms: u64,
    work_ms: u64,
    utilisation: f64,
    /// The measured critical path's running time.
    critical_path_work_ms: u64,
    dag_critical_path_ms: Option<u64>,
    makespan_over_dag_critical_path: Option<f64>,
    slowest_task: Option<SlowestTask<'a>>,
    tasks: usize,
    cached: usize,
    failed: Vec<&'a str>,
    never_ran: usize,
    phases: &'a [PhaseStats],
}

fn run_json<'a>(j: &'a MergedRun) -> RunJson<'a> {
    let (a, r) = (&j.analysis, j.record());
    RunJson {
        run_id: &r.run_id,
        service: &r.service,
        strategy: &r.strategy,
        jobs: r.jobs,
        outcome: &r.outcome,
        started_at: &r.started_at,
        offset_ms: j.offset_ms,
        makespan_ms: a.makespan_ms,
        work_ms: a.work_ms,
        utilisation: round4(a.utilisation),
        critical_path_work_ms: a.critical_work_ms(),
        dag_critical_path_ms: j.dag_critical_path_ms(),
        makespan_over_dag_critical_path: a.makespan_over_dag_critical_path().map(round4),
        slowest_task: j.slowest_task().map(|t| SlowestTask {
            id: &t.id,
            phase: t.phase,
            duration_ms: t.duration_ms,
        }),
        tasks: r.tasks.len(),
        cached: j.cached,
        failed: r
            .tasks
            .iter()
            .filter(|t| t.outcome == TaskOutcome::Failed && !was_cancelled(t))
            .map(|t| t.id.as_str())
            .collect(),
        never_ran: a.never_ran().count(),
        phases: &a.phases,
    }
}

pub(crate) fn json(m: &Merged) -> String {
    let phases = m
        .phases
        .iter()
        .map(|&p| {
            let of: Vec<&PhaseStats> = m.runs.iter().filter_map(|j| j.phase(p)).collect();
            PhaseTotal {
                name: p,
                runs: of.len(),
                busy_ms: of.iter().map(|s| s.busy_ms).sum(),
                work_ms: of.iter().map(|s| s.work_ms).sum(),
            }
        })
        .collect();
    to_string(&MergedJson {
        started_at: m.started_at,
        services: m.services(),
        outcomes: m.outcomes().into_iter().collect(),
        parallel_ms: m.parallel_ms(),
        slowest_run_id: m.slowest().map(|j| j.record().run_id.as_str()),
        runner_ms: m.runner_ms(),
        wall_ms: m.wall_ms(),
        phases,
        runs: m.runs.iter().map(run_json).collect(),
    })
}
