//! `--format markdown`: a CI job summary (GitHub renders it on the job's page).

use std::fmt::Write;

use crate::engine::TaskOutcome;

use super::analysis::{Analysis, CriticalStep};
use super::fmt::{delta, delta_pct, duration, opt_duration, pct};
use super::text::{largest_wait, outcome_and_builder, was_cancelled};
use super::whatif::WhatIf;
use super::{Options, jobs_label};

/// Escapes what would break a table cell or start markup.
pub(crate) fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            '*' | '_' | '`' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

pub(crate) fn header(names: &[&str], right: &[bool]) -> String {
    let mut s = row(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    let aligns: Vec<String> = right
        .iter()
        .map(|r| {
            if *r {
                "---:".to_string()
            } else {
                "---".to_string()
            }
        })
        .collect();
    s.push_str(&row(&aligns));
    s
}

/// A fenced block that no backtick run inside `text` can close.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{}\n{fence}\n", text.trim_end())
}

pub(crate) fn phase_table(a: &Analysis) -> String {
    let mut out = header(
        &[
            "phase", "tasks", "start", "end", "span", "busy", "share", "overlap",
        ],
        &[false, true, true, true, true, true, true, true],
    );
    for p in &a.phases {
        out.push_str(&row(&[
            p.phase.to_string(),
            p.tasks.to_string(),
            opt_duration(p.start_ms),
            opt_duration(p.end_ms),
            duration(p.span_ms),
            duration(p.busy_ms),
            pct(p.share),
            duration(p.overlap_ms),
        ]));
    }
    out
}

pub(crate) fn critical_chain(path: &[CriticalStep]) -> String {
    if path.is_empty() {
        return "no task ran\n".to_string();
    }
    let steps: Vec<String> = path
        .iter()
        .map(|s| {
            let wait = if s.wait_ms >= 1_000 {
                format!(", waited {}", duration(s.wait_ms))
            } else {
                String::new()
            };
            format!(
                "`{}` ({}{wait})",
                s.id.replace('`', "'"),
                duration(s.duration_ms)
            )
        })
        .collect();
    format!("{}\n", steps.join(" → "))
}

/// Why a task did not simply succeed: its skip reason, or its error's first line.
fn note(t: &crate::record::TaskRecord) -> String {
    const MAX: usize = 120;
    let text = t
        .skip_reason
        .as_deref()
        .or(t.error.as_deref())
        .unwrap_or("");
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > MAX {
        format!("{}…", line.chars().take(MAX - 1).collect::<String>())
    } else {
        line.to_string()
    }
}

pub(crate) fn render(a: &Analysis, opts: &Options) -> String {
    let r = a.record;
    let mut out = String::new();
    let icon = if r.outcome == "succeeded" {
        "✅"
    } else {
        "❌"
    };
    let verb = if r.outcome == "succeeded" {
        "ready in".to_string()
    } else {
        format!("{} after", r.outcome)
    };
    let _ = writeln!(
        out,
        "### {icon} kprov: {} {verb} {}\n",
        cell(&r.service),
        duration(a.makespan_ms)
    );
    let _ = writeln!(
        out,
        "Strategy **{}**, jobs {} · {} tasks · utilisation {} of {} slots · run `{}`\n",
        cell(&r.strategy),
        jobs_label(r.jobs),
        r.tasks.len(),
        pct(a.utilisation),
        a.slots,
        r.run_id.replace('`', "'"),
    );

    let (cancelled, failed): (Vec<_>, Vec<_>) = r
        .tasks
        .iter()
        .filter(|t| t.outcome == TaskOutcome::Failed)
        .partition(|t| was_cancelled(t));
    for t in &failed {
        let attempts = match t.attempts {
            0 | 1 => String::new(),
            n => format!(" after {n} attempts"),
        };
        let at = t
            .end_ms
            .map(|e| format!(" at {}", duration(e)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "**Failed: `{}`**{at}{attempts}\n",
            t.id.replace('`', "'")
        );
        out.push_str(&fenced(t.error.as_deref().unwrap_or("(no error recorded)")));
        out.push('\n');
    }
    if !cancelled.is_empty() {
        let ids: Vec<String> = cancelled
            .iter()
            .map(|t| format!("`{}`", t.id.replace('`', "'")))
            .collect();
        let _ = writeln!(out, "Cancelled while running: {}\n", ids.join(", "));
    }
    let skipped = r.tasks.iter().filter(|t| t.start_ms.is_none()).count();
    if skipped > 0 {
        let _ = writeln!(
            out,
            "{skipped} task(s) never ran (see the full table below).\n"
        );
    }

    out.push_str("#### Phases\n\n");
    out.push_str(&phase_table(a));

    let ran: Vec<_> = a.tasks.iter().filter(|t| t.duration_ms.is_some()).collect();
    let shown = ran.len().min(opts.top);
    let _ = writeln!(out, "\n#### Slowest tasks\n");
    out.push_str(&header(
        &[
            "task",
            "phase",
            "duration",
            "queue",
            "outcome",
            "critical path",
        ],
        &[false, false, true, true, false, false],
    ));
    for t in ran.iter().take(shown) {
        out.push_str(&row(&[
            cell(&t.id),
            t.phase.to_string(),
            opt_duration(t.duration_ms),
            opt_duration(t.queue_ms),
            outcome_and_builder(&r.tasks[t.index]),
            if t.critical {
                "●".to_string()
            } else {
                String::new()
            },
        ]));
    }

    let _ = writeln!(out, "\n#### Critical path\n");
    out.push_str(&critical_chain(&a.critical_path));
    if let Some(note) = largest_wait(a) {
        let _ = writeln!(out, "\n> {}", cell(&note));
    }

    let _ = writeln!(
        out,
        "\n<details><summary>All {} tasks</summary>\n",
        r.tasks.len()
    );
    out.push_str(&header(
        &[
            "task", "kind", "phase", "ready", "start", "end", "duration", "queue", "outcome",
            "attempts", "note",
        ],
        &[
            false, false, false, true, true, true, true, true, false, true, false,
        ],
    ));
    let mut by_start: Vec<_> = a.tasks.iter().collect();
    by_start.sort_by_key(|t| (t.start_ms.is_none(), t.start_ms, t.index));
    for t in by_start {
        out.push_str(&row(&[
            cell(&t.id),
            cell(&t.kind),
            t.phase.to_string(),
            opt_duration(t.ready_ms),
            opt_duration(t.start_ms),
            opt_duration(t.end_ms),
            opt_duration(t.duration_ms),
            opt_duration(t.queue_ms),
            outcome_and_builder(&r.tasks[t.index]),
            t.attempts.to_string(),
            cell(&note(&r.tasks[t.index])),
        ]));
    }
    out.push_str("\n</details>\n");
    out
}

pub(crate) fn what_if(w: &WhatIf) -> String {
    let r = w.measured;
    let p = &w.predicted;
    let measured = w.measured_ms();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### What if `{}` had run {}, jobs {}?\n",
        r.run_id.replace('`', "'"),
        cell(&p.strategy),
        jobs_label(p.jobs)
    );
    if let Some(caps) = super::whatif::class_caps(r) {
        let _ = writeln!(out, "Per-class caps kept from the run: {caps}.\n");
    }
    if !w.complete() {
        out.push_str(
            "> The run did not finish: tasks that never ran are replayed as taking no time.\n\n",
        );
    }
    out.push_str(&header(
        &["", "schedule", "makespan", "vs measured"],
        &[false, false, true, true],
    ));
    out.push_str(&row(&[
        "measured".into(),
        format!("{}, jobs {}", cell(&r.strategy), jobs_label(r.jobs)),
        duration(measured),
        String::new(),
    ]));
    if let Some(b) = &w.baseline {
        out.push_str(&row(&[
            "replayed (model check)".into(),
            format!("{}, jobs {}", cell(&b.strategy), jobs_label(b.jobs)),
            duration(b.makespan_ms),
            format!(
                "{} ({})",
                delta(b.makespan_ms as i64 - measured as i64),
                delta_pct(measured, b.makespan_ms)
            ),
        ]));
    }
    out.push_str(&row(&[
        "**predicted**".into(),
        format!("{}, jobs {}", cell(&p.strategy), jobs_label(p.jobs)),
        format!("**{}**", duration(p.makespan_ms)),
        format!(
            "{} ({})",
            delta(w.delta_ms()),
            delta_pct(measured, p.makespan_ms)
        ),
    ]));
    let pa = Analysis::new(p);
    out.push_str("\n#### Predicted phases\n\n");
    out.push_str(&phase_table(&pa));
    out.push_str("\n#### Predicted critical path\n\n");
    out.push_str(&critical_chain(&pa.critical_path));
    out
}
