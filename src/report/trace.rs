//! `--format trace`: Chrome trace event JSON (the `traceEvents` object form), which Perfetto
//! (ui.perfetto.dev) and chrome://tracing open.
//!
//! One process for the run; per phase, as many threads ("lanes") as it needed so that
//! overlapping tasks never share one (assigned greedily by start time); a complete event per
//! task that ran; flow arrows along the measured critical path; a counter of running tasks.

use serde_json::{Value, json};

use crate::engine::TaskOutcome;
use crate::plan::Phase;

use super::analysis::{Analysis, interval};
use super::text::{outcome_label, outcome_str};

const PID: u64 = 1;

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

pub(crate) fn render(a: &Analysis) -> String {
    let r = a.record;
    let lanes = lanes(a);
    let tid = |lane: usize| lane as u64 + 1;
    let mut events: Vec<Value> = Vec::new();

    events.push(json!({"name": "process_name", "ph": "M", "pid": PID, "tid": 0,
        "args": {"name": format!("kprov up {} ({}, jobs {})", r.service, r.strategy, super::jobs_label(r.jobs))}}));
    events.push(
        json!({"name": "process_labels", "ph": "M", "pid": PID, "tid": 0,
        "args": {"labels": format!("{} · {}", r.run_id, r.outcome)}}),
    );
    for (lane, &(phase, k, n)) in lanes.threads.iter().enumerate() {
        let name = if n == 1 {
            phase.to_string()
        } else {
            format!("{phase} {k}")
        };
        events.push(json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid(lane), "args": {"name": name}}));
        events.push(
            json!({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid(lane),
            "args": {"sort_index": lane}}),
        );
    }

    // Tasks in start order, so the file reads like the run.
    let mut order: Vec<usize> = (0..r.tasks.len())
        .filter(|&i| lanes.lane_of[i].is_some())
        .collect();
    order.sort_by_key(|&i| (r.tasks[i].start_ms, i));
    let critical: Vec<bool> = {
        let mut v = vec![false; r.tasks.len()];
        a.critical_path.iter().for_each(|s| v[s.index] = true);
        v
    };
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
        if let Some(err) = &t.error {
            args["error"] = json!(err);
        }
        let mut ev = json!({"name": t.id, "cat": t.phase, "ph": "X", "ts": us(s), "dur": us(e - s),
            "pid": PID, "tid": tid(lanes.lane_of[i].unwrap()), "args": args});
        if t.outcome == TaskOutcome::Failed {
            ev["cname"] = json!("terrible"); // the legacy viewer's reserved colour for failures
        }
        events.push(ev);
    }

    // The critical path as flow arrows: from the end of each step into the next one.
    for (k, pair) in a.critical_path.windows(2).enumerate() {
        let (from, to) = (&pair[0], &pair[1]);
        let from_ts = if from.end_ms > from.start_ms {
            us(from.end_ms) - 1
        } else {
            us(from.start_ms)
        };
        let id = k as u64 + 1;
        events.push(
            json!({"name": "critical path", "cat": "critical_path", "ph": "s", "id": id,
            "pid": PID, "tid": tid(lanes.lane_of[from.index].unwrap()), "ts": from_ts}),
        );
        events.push(
            json!({"name": "critical path", "cat": "critical_path", "ph": "f", "bp": "e", "id": id,
            "pid": PID, "tid": tid(lanes.lane_of[to.index].unwrap()), "ts": us(to.start_ms)}),
        );
    }

    // Running tasks over time, as a counter track.
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for t in &r.tasks {
        if let Some((s, e)) = interval(t) {
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    edges.sort_unstable();
    let mut running = 0i64;
    let mut k = 0;
    while k < edges.len() {
        let at = edges[k].0;
        while k < edges.len() && edges[k].0 == at {
            running += edges[k].1;
            k += 1;
        }
        events.push(
            json!({"name": "running tasks", "ph": "C", "pid": PID, "tid": 0, "ts": us(at),
            "args": {"running": running}}),
        );
    }
    events.push(
        json!({"name": format!("run {}", r.outcome), "ph": "i", "s": "p", "pid": PID, "tid": 0,
        "ts": us(a.makespan_ms)}),
    );

    let never_ran: Vec<Value> = r
        .tasks
        .iter()
        .filter(|t| t.start_ms.is_none())
        .map(|t| json!({"id": t.id, "outcome": outcome_str(t.outcome), "reason": t.skip_reason}))
        .collect();
    let other = json!({
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
    });

    // One event per line: small diffs, and still one JSON document.
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
