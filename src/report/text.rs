//! The terminal report (`kprov profile`, the default format).

use std::fmt::Write;

use crate::engine::TaskOutcome;
use crate::record::RunRecord;

use super::analysis::{Analysis, CriticalStep};
use super::fmt::{duration, opt_duration, pct, table};
use super::whatif::WhatIf;
use super::{Options, jobs_label};

pub(crate) fn outcome_str(o: TaskOutcome) -> &'static str {
    match o {
        TaskOutcome::Succeeded => "succeeded",
        TaskOutcome::Cached => "cached",
        TaskOutcome::Restored => "restored",
        TaskOutcome::Failed => "failed",
        TaskOutcome::Skipped => "skipped",
    }
}

/// `aianalysis, dag, jobs 8: succeeded in 3m04s`
pub(crate) fn headline(r: &RunRecord, makespan_ms: u64) -> String {
    format!(
        "{}, {}, jobs {}: {} in {}",
        r.service,
        r.strategy,
        jobs_label(r.jobs),
        r.outcome,
        duration(makespan_ms)
    )
}

pub(crate) fn host_line(r: &RunRecord) -> String {
    let mut host = format!("{} cpus, {}", r.host.cpus, r.host.os);
    match (&r.host.engine, &r.host.engine_version) {
        (Some(kind), Some(v)) => host.push_str(&format!(", engine {kind} {v}")),
        (None, Some(v)) => host.push_str(&format!(", engine {v}")),
        (Some(kind), None) => host.push_str(&format!(", engine {kind}")),
        (None, None) => {}
    }
    format!(
        "started {} · kprov {} · host: {host}",
        r.started_at, r.kprov_version
    )
}

/// `builders: buildkit (build:api, build:web) · podman (build:worker)`: which builder made each
/// image (a cached image's, as recorded on it); `None` when the run built nothing.
pub(crate) fn builders_line(r: &RunRecord) -> Option<String> {
    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for t in &r.tasks {
        if let Some(b) = &t.builder {
            by.entry(b.as_str()).or_default().push(t.id.as_str());
        }
    }
    if by.is_empty() {
        return None;
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(b, ids)| format!("{b} ({})", ids.join(", ")))
        .collect();
    Some(format!("builders: {}", parts.join(" · ")))
}

pub(crate) fn render(a: &Analysis, opts: &Options) -> String {
    let r = a.record;
    let mut out = String::new();
    let _ = writeln!(out, "Run {}: {}", r.run_id, headline(r, a.makespan_ms));
    let _ = writeln!(out, "  {}", host_line(r));
    if let Some(line) = builders_line(r) {
        let _ = writeln!(out, "  {line}");
    }

    out.push_str("\nPhases\n");
    out.push_str(&phase_table(a));

    let ran: Vec<_> = a.tasks.iter().filter(|t| t.duration_ms.is_some()).collect();
    let shown = ran.len().min(opts.top);
    let _ = writeln!(out, "\nSlowest tasks ({shown} of {})", a.tasks.len());
    let rows: Vec<Vec<String>> = ran
        .iter()
        .take(shown)
        .map(|t| {
            vec![
                t.id.clone(),
                t.phase.to_string(),
                opt_duration(t.duration_ms),
                opt_duration(t.queue_ms),
                outcome_and_builder(&r.tasks[t.index]),
                t.attempts.to_string(),
                if t.critical {
                    "*".to_string()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        "  ",
        &[
            "task", "phase", "duration", "queue", "outcome", "attempts", "critical",
        ],
        &[false, false, true, true, false, true, false],
        &rows,
    ));

    let (cancelled, failed): (Vec<_>, Vec<_>) = r
        .tasks
        .iter()
        .filter(|t| t.outcome == TaskOutcome::Failed)
        .partition(|t| was_cancelled(t));
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailed ({})", failed.len());
        for t in failed {
            let error = t.error.as_deref().unwrap_or("(no error recorded)");
            let at = t
                .end_ms
                .map(|e| format!(" at {}", duration(e)))
                .unwrap_or_default();
            let attempts = match t.attempts {
                0 | 1 => String::new(),
                n => format!(" after {n} attempts"),
            };
            let error = indent_lines(error, "    ");
            let _ = writeln!(out, "  {}{at}{attempts}: {error}", t.id);
        }
    }
    if !cancelled.is_empty() {
        let _ = writeln!(out, "\nCancelled while running ({})", cancelled.len());
        for t in cancelled {
            let _ = writeln!(
                out,
                "  {}: {}",
                t.id,
                t.error.as_deref().unwrap_or_default()
            );
        }
    }
    let never: Vec<_> = a.never_ran().collect();
    if !never.is_empty() {
        let _ = writeln!(out, "\nNever ran ({})", never.len());
        for t in never {
            let reason = r.tasks[t.index]
                .skip_reason
                .as_deref()
                .unwrap_or("no reason recorded");
            let _ = writeln!(out, "  {}: {} ({reason})", t.id, outcome_str(t.outcome));
        }
    }

    out.push('\n');
    out.push_str(&critical_path(&a.critical_path, a.makespan_ms));
    if let Some(note) = largest_wait(a) {
        let _ = writeln!(out, "  {note}");
    }

    let _ = writeln!(
        out,
        "\nUtilisation: {} of {} slots over {} (work {}, peak {} tasks at once, idle {})",
        pct(a.utilisation),
        a.slots,
        duration(a.makespan_ms),
        duration(a.work_ms),
        a.peak_concurrency,
        duration(a.idle_ms),
    );
    if let Some(line) = dag_critical_path_line(a) {
        out.push_str(&line);
    }
    out
}

/// `Makespan / DAG critical path: 16.8s / 10.3s = 1.62` and the chain: what the schedule cost
/// over the longest chain of the tasks' own dependencies at the measured durations. Only for a
/// run where every task ran.
pub(crate) fn dag_critical_path_line(a: &Analysis) -> Option<String> {
    let ratio = a.makespan_over_dag_critical_path()?;
    let path = a.dag_critical_path.as_ref()?;
    let chain: Vec<&str> = path
        .tasks
        .iter()
        .map(|&i| a.record.tasks[i].id.as_str())
        .collect();
    Some(format!(
        "Makespan / DAG critical path: {} / {} = {ratio:.2}\n  \
         the longest chain of the tasks' own dependencies at these durations \
         (no schedule of them ends sooner):\n  {}\n",
        duration(a.makespan_ms),
        duration(path.length_ms),
        chain.join(" → "),
    ))
}

/// The outcome as people read it: a task the run's cancellation stopped is "cancelled".
pub(crate) fn outcome_label(t: &crate::record::TaskRecord) -> &'static str {
    if was_cancelled(t) {
        "cancelled"
    } else {
        outcome_str(t.outcome)
    }
}

/// The outcome, and for a build the builder that ran it: `succeeded (buildkit)`.
pub(crate) fn outcome_and_builder(t: &crate::record::TaskRecord) -> String {
    match &t.builder {
        Some(b) => format!("{} ({b})", outcome_label(t)),
        None => outcome_label(t).to_string(),
    }
}

/// A task the run's cancellation stopped, rather than one that failed on its own.
pub(crate) fn was_cancelled(t: &crate::record::TaskRecord) -> bool {
    t.outcome == TaskOutcome::Failed
        && t.error
            .as_deref()
            .is_some_and(|e| e.starts_with("cancelled"))
}

fn indent_lines(text: &str, indent: &str) -> String {
    text.trim_end().replace('\n', &format!("\n{indent}"))
}

/// The biggest wait on the critical path, explained, when it matters (≥ 1s and ≥ 5% of the run).
pub(crate) fn largest_wait(a: &Analysis) -> Option<String> {
    let (k, step) = a
        .critical_path
        .iter()
        .enumerate()
        .max_by_key(|(k, s)| (s.wait_ms, std::cmp::Reverse(*k)))?;
    if step.wait_ms < 1_000 || step.wait_ms * 20 < a.makespan_ms {
        return None;
    }
    let t = &a.record.tasks[step.index];
    let queued = t.queue_ms().unwrap_or(0);
    Some(if queued * 2 >= step.wait_ms {
        let caps = match a.record.class_limits.get(&t.class).filter(|&&c| c > 0) {
            Some(cap) => format!(
                "{} tasks capped at {cap}, jobs {}",
                t.class,
                jobs_label(a.record.jobs)
            ),
            None => format!("jobs {}", jobs_label(a.record.jobs)),
        };
        format!(
            "{} waited {} for a free slot after it was ready ({caps}): more slots would start it sooner",
            t.id,
            duration(queued),
        )
    } else {
        let after = if k == 0 {
            "the run started".to_string()
        } else {
            format!("{} ended", a.critical_path[k - 1].id)
        };
        format!("{} started {} after {after}", t.id, duration(step.wait_ms))
    })
}

pub(crate) fn phase_table(a: &Analysis) -> String {
    let rows: Vec<Vec<String>> = a
        .phases
        .iter()
        .map(|p| {
            vec![
                p.phase.to_string(),
                p.tasks.to_string(),
                opt_duration(p.start_ms),
                opt_duration(p.end_ms),
                duration(p.span_ms),
                duration(p.busy_ms),
                pct(p.share),
                duration(p.overlap_ms),
            ]
        })
        .collect();
    table(
        "  ",
        &[
            "phase", "tasks", "start", "end", "span", "busy", "share", "overlap",
        ],
        &[false, true, true, true, true, true, true, true],
        &rows,
    )
}

pub(crate) fn critical_path(path: &[CriticalStep], makespan_ms: u64) -> String {
    let mut out = String::new();
    if path.is_empty() {
        out.push_str("Critical path: no task ran\n");
        return out;
    }
    let work: u64 = path.iter().map(|s| s.duration_ms).sum();
    let waited: u64 = path.iter().map(|s| s.wait_ms).sum();
    let end = path.last().map_or(0, |s| s.end_ms);
    let _ = writeln!(
        out,
        "Critical path: {} running + {} waiting = {}{}",
        duration(work),
        duration(waited),
        duration(end),
        if end < makespan_ms {
            format!(" (run ended at {})", duration(makespan_ms))
        } else {
            String::new()
        },
    );
    let rows: Vec<Vec<String>> = path
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.phase.to_string(),
                duration(s.start_ms),
                duration(s.end_ms),
                duration(s.duration_ms),
                duration(s.wait_ms),
            ]
        })
        .collect();
    out.push_str(&table(
        "  ",
        &["task", "phase", "start", "end", "duration", "waited before"],
        &[false, false, true, true, true, true],
        &rows,
    ));
    out
}

pub(crate) fn what_if(w: &WhatIf) -> String {
    let r = w.measured;
    let p = &w.predicted;
    let measured = w.measured_ms();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "What if run {} ({}) had run {}, jobs {}?",
        r.run_id,
        r.service,
        p.strategy,
        jobs_label(p.jobs)
    );
    if let Some(caps) = super::whatif::class_caps(r) {
        let _ = writeln!(out, "  per-class caps kept from the run: {caps}");
    }
    if !w.complete() {
        out.push_str(
            "  note: the run did not finish; tasks that never ran are replayed as taking no time\n",
        );
    }
    let mut rows = vec![vec![
        "measured".to_string(),
        format!("{}, jobs {}", r.strategy, jobs_label(r.jobs)),
        duration(measured),
        String::new(),
    ]];
    if let Some(b) = &w.baseline {
        rows.push(vec![
            "replayed".to_string(),
            format!("{}, jobs {}", b.strategy, jobs_label(b.jobs)),
            duration(b.makespan_ms),
            format!(
                "model error {} ({})",
                super::fmt::delta(b.makespan_ms as i64 - measured as i64),
                super::fmt::delta_pct(measured, b.makespan_ms)
            ),
        ]);
    }
    rows.push(vec![
        "predicted".to_string(),
        format!("{}, jobs {}", p.strategy, jobs_label(p.jobs)),
        duration(p.makespan_ms),
        format!(
            "{} ({}) vs measured",
            super::fmt::delta(w.delta_ms()),
            super::fmt::delta_pct(measured, p.makespan_ms)
        ),
    ]);
    out.push_str(&table(
        "  ",
        &["", "schedule", "makespan", ""],
        &[false, false, true, false],
        &rows,
    ));

    let pa = Analysis::new(p);
    out.push_str("\nPredicted phases\n");
    out.push_str(&phase_table(&pa));
    out.push_str("\nPredicted ");
    let mut cp = critical_path(&pa.critical_path, pa.makespan_ms);
    cp.replace_range(..1, "c");
    out.push_str(&cp);
    out
}
