//! `--format trace`: Chrome trace event JSON (the `traceEvents` object form), which Perfetto
//! (ui.perfetto.dev) and chrome://tracing open.
//!
//! One process per run; per phase, as many threads ("lanes") as it needed so that
//! overlapping tasks never share one (assigned greedily by start time); a complete event per
//! task that ran; flow arrows along the measured critical path; a counter of running tasks.
//! A single run is process 1 at offset 0; `--merge` places each run as its own process
//! ([`Placement`]) with the same events.

use serde_json::{Value, json};

use crate::engine::TaskOutcome;
use crate::plan::Phase;

use super::analysis::{Analysis, interval};
use super::merge::Merged;
use super::text::{outcome_label, outcome_str};

/// Where one run's events go in a trace.
pub(crate) struct Placement {
    pub pid: u64,
    /// Added to every timestamp: when the run started after the trace's start (0 for one run).
    pub offset_ms: u64,
    /// The run's critical-path flow ids come after this, so that ids stay unique in a trace
    /// of many runs (viewers bind a flow's ends by id).
    pub first_flow_id: u64,
    /// The process's name and labels as the viewer shows them.
    pub name: String,
    pub labels: String,
}

/// Lanes within each phase: `lane_of[task]` is a global thread index (phase order, then lane).
pub(crate) struct Lanes {
    pub lane_of: Vec<Option<usize>>,
    /// (phase, number within the phase, lanes the phase has) per thread.
    pub threads: Vec<(Phase, usize, usize)>,
}

pub(crate) fn lanes(a: &Analysis) -> Lanes {
    let tasks = &a.record.tasks;
    let mut lane_of = vec![None; tasks.len()];
    let mut threads = Vec::new();
    for phase in Phase::ALL {
        let mut ran: Vec<(usize, (u64, u64))> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.phase == phase)
            .filter_map(|(i, t)| interval(t).map(|s| (i, s)))
            .collect();
        ran.sort_by_key(|&(i, (s, _))| (s, i));
        let mut ends: Vec<u64> = Vec::new();
        let first = threads.len();
        for (i, (s, e)) in ran {
            // The first lane free by `s`; zero-length tasks need a strictly earlier end to
            // stay visible beside a task starting at the same instant.
            let lane = match ends.iter().position(|&end| end <= s) {
                Some(l) => l,
                None => {
                    ends.push(0);
                    ends.len() - 1
                }
            };
            ends[lane] = e.max(s + 1);
            lane_of[i] = Some(first + lane);
        }
        let n = ends.len();
        threads.extend((0..n).map(|k| (phase, k + 1, n)));
    }
    Lanes { lane_of, threads }
}

fn us(ms: u64) -> u64 {
    ms.saturating_mul(1_000)
}

fn tid(lane: usize) -> u64 {
    lane as u64 + 1
}

/// One run in its own trace: process 1, timestamps from the run's start.
pub(crate) fn render(a: &Analysis) -> String {
    let r = a.record;
    let at = Placement {
        pid: 1,
        offset_ms: 0,
        first_flow_id: 0,
        name: format!(
            "kprov up {} ({}, jobs {})",
            r.service,
            r.strategy,
            super::jobs_label(r.jobs)
        ),
        labels: format!("{} · {}", r.run_id, r.outcome),
    };
    document(&run_data(a), &run_events(a, &at))
}

/// Many runs in one trace, a process each (in the merge's order, named by service and run
/// id). Timestamps are from the earliest run's start, each run placed by its record's
/// `started_at`, when every record's start time reads; otherwise every run starts at 0.
pub(crate) fn render_merged(m: &Merged) -> String {
    let mut events = Vec::new();
    let mut runs = Vec::new();
    let mut first_flow_id = 0;
    for (k, job) in m.runs.iter().enumerate() {
        let (a, r) = (&job.analysis, job.analysis.record);
        let at = Placement {
            pid: k as u64 + 1,
            offset_ms: job.offset_ms.unwrap_or(0),
            first_flow_id,
            name: format!("{} · {}", r.service, r.run_id),
            labels: format!(
                "{}, jobs {} · {}",
                r.strategy,
                super::jobs_label(r.jobs),
                r.outcome
            ),
        };
        first_flow_id += flow_count(a);
        events.push(
            json!({"name": "process_sort_index", "ph": "M", "pid": at.pid, "tid": 0,
            "args": {"sort_index": k}}),
        );
        events.extend(run_events(a, &at));
        let mut data = run_data(a);
        data["pid"] = json!(at.pid);
        data["offset_ms"] = json!(at.offset_ms);
        runs.push(data);
    }
    let other = json!({
        "merged_runs": m.runs.len(),
        "time_base": if m.started_at.is_some() { "started_at" } else { "each run's start" },
        "started_at": m.started_at,
        "runs": runs,
    });
    document(&other, &events)
}

/// Every event of one run, placed as `at` says.
pub(crate) fn run_events(a: &Analysis, at: &Placement) -> Vec<Value> {
    let lanes = lanes(a);
    let mut events = metadata_events(&lanes, at);
    events.extend(task_events(a, &lanes, at));
    events.extend(flow_events(a, &lanes, at));
    events.extend(counter_events(a, at));
    events.push(
        json!({"name": format!("run {}", a.record.outcome), "ph": "i", "s": "p", "pid": at.pid,
        "tid": 0, "ts": us(at.offset_ms + a.makespan_ms)}),
    );
    events
}

fn metadata_events(lanes: &Lanes, at: &Placement) -> Vec<Value> {
    let pid = at.pid;
    let mut events = vec![
        json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": at.name}}),
        json!({"name": "process_labels", "ph": "M", "pid": pid, "tid": 0,
        "args": {"labels": at.labels}}),
    ];
    for (lane, &(phase, k, n)) in lanes.threads.iter().enumerate() {
        let name = if n == 1 {
            phase.to_string()
        } else {
            format!("{phase} {k}")
        };
        events.push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid(lane), "args": {"name": name}}));
        events.push(
            json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid(lane),
            "args": {"sort_index": lane}}),
        );
    }
    events
}

/// A complete event per task that ran, in start order, so the file reads like the run.
fn task_events(a: &Analysis, lanes: &Lanes, at: &Placement) -> Vec<Value> {
    let r = a.record;
    let mut order: Vec<usize> = (0..r.tasks.len())
        .filter(|&i| lanes.lane_of[i].is_some())
        .collect();
    order.sort_by_key(|&i| (r.tasks[i].start_ms, i));
    let critical: Vec<bool> = {
        let mut v = vec![false; r.tasks.len()];
        a.critical_path.iter().for_each(|s| v[s.index] = true);
        v
    };
    let mut events = Vec::with_capacity(order.len());
    for &i in &order {
        let t = &r.tasks[i];
        let (s, e) = interval(t).expect("only tasks that ran have a lane");
        let mut args = json!({
            "kind": t.kind,
            "class": t.class,
            "outcome": outcome_label(t),
            "attempts": t.attempts,
            "queue_ms": t.queue_ms(),
            "ready_ms": t.ready_ms,
            "deps": t.deps,
            "critical_path": critical[i],
        });
        if let Some(b) = &t.builder {
            args["builder"] = json!(b);
        }
        if let Some(err) = &t.error {
            args["error"] = json!(err);
        }
        let mut ev = json!({"name": t.id, "cat": t.phase, "ph": "X",
            "ts": us(at.offset_ms + s), "dur": us(e - s),
            "pid": at.pid, "tid": tid(lanes.lane_of[i].unwrap()), "args": args});
        if t.outcome == TaskOutcome::Failed {
            ev["cname"] = json!("terrible"); // the legacy viewer's reserved colour for failures
        }
        events.push(ev);
    }
    events
}

/// How many flow arrows [`flow_events`] draws for a run.
fn flow_count(a: &Analysis) -> u64 {
    a.critical_path.len().saturating_sub(1) as u64
}

/// The critical path as flow arrows: from the end of each step into the next one.
fn flow_events(a: &Analysis, lanes: &Lanes, at: &Placement) -> Vec<Value> {
    let mut events = Vec::new();
    for (k, pair) in a.critical_path.windows(2).enumerate() {
        let (from, to) = (&pair[0], &pair[1]);
        let from_ts = if from.end_ms > from.start_ms {
            us(at.offset_ms + from.end_ms) - 1
        } else {
            us(at.offset_ms + from.start_ms)
        };
        let id = at.first_flow_id + k as u64 + 1;
        events.push(
            json!({"name": "critical path", "cat": "critical_path", "ph": "s", "id": id,
            "pid": at.pid, "tid": tid(lanes.lane_of[from.index].unwrap()), "ts": from_ts}),
        );
        events.push(
            json!({"name": "critical path", "cat": "critical_path", "ph": "f", "bp": "e", "id": id,
            "pid": at.pid, "tid": tid(lanes.lane_of[to.index].unwrap()),
            "ts": us(at.offset_ms + to.start_ms)}),
        );
    }
    events
}

/// Running tasks over time, as a counter track.
fn counter_events(a: &Analysis, at: &Placement) -> Vec<Value> {
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for t in &a.record.tasks {
        if let Some((s, e)) = interval(t) {
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    edges.sort_unstable();
    let mut events = Vec::new();
    let mut running = 0i64;
    let mut k = 0;
    while k < edges.len() {
        let at_ms = edges[k].0;
        while k < edges.len() && edges[k].0 == at_ms {
            running += edges[k].1;
            k += 1;
        }
        events.push(
            json!({"name": "running tasks", "ph": "C", "pid": at.pid, "tid": 0,
            "ts": us(at.offset_ms + at_ms), "args": {"running": running}}),
        );
    }
    events
}

/// What the trace's `otherData` says of one run.
fn run_data(a: &Analysis) -> Value {
    let r = a.record;
    let never_ran: Vec<Value> = r
        .tasks
        .iter()
        .filter(|t| t.start_ms.is_none())
        .map(|t| json!({"id": t.id, "outcome": outcome_str(t.outcome), "reason": t.skip_reason}))
        .collect();
    json!({
        "run_id": r.run_id,
        "service": r.service,
        "strategy": r.strategy,
        "jobs": r.jobs,
        "outcome": r.outcome,
        "started_at": r.started_at,
        "kprov_version": r.kprov_version,
        "makespan_ms": a.makespan_ms,
        "critical_path": a.critical_path.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        "never_ran": never_ran,
    })
}

/// The trace file: one event per line (small diffs, and still one JSON document).
fn document(other: &Value, events: &[Value]) -> String {
    let mut out = String::from("{\n\"displayTimeUnit\": \"ms\",\n\"otherData\": ");
    out.push_str(&other.to_string());
    out.push_str(",\n\"traceEvents\": [\n");
    for (k, ev) in events.iter().enumerate() {
        out.push_str(&ev.to_string());
        out.push_str(if k + 1 < events.len() { ",\n" } else { "\n" });
    }
    out.push_str("]\n}\n");
    out
}
