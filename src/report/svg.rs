//! `--format svg`: a waterfall of the run, as a standalone SVG.
//!
//! One row per task (sorted by start), bars coloured by phase, the queue wait as a faint bar
//! before each task, cached tasks pale and dashed, restored ones (from an image cache) half
//! pale and dotted, failed ones hatched red, cancelled ones hatched grey, tasks that never ran
//! as a grey note; the critical path outlined in black and linked by arrows; per-phase busy bands above the tasks; a time axis with round tick steps;
//! a marker where the run failed; a legend.

use std::fmt::Write;

use crate::engine::TaskOutcome;
use crate::plan::Phase;
use crate::record::TaskRecord;

use super::analysis::{Analysis, interval, union};
use super::fmt::{duration, pct, tick};
use super::jobs_label;
use super::text::{outcome_label, outcome_str, was_cancelled};

/// Overrides for the picture's headings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caption {
    pub title: Option<String>,
}

const CHART_W: f64 = 960.0;
const RIGHT_MIN: f64 = 48.0; // room right of the chart for the end marker's label
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
const BAND_H: f64 = 16.0;
const MONO_W: f64 = 7.3; // DejaVu Sans Mono at 12px, the widest of the usual monospace fonts
const SMALL_W: f64 = 6.4; // average advance of an 11px sans-serif label
const MONO: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace";
const SANS: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif";
const MAX_ID_CHARS: usize = 48;

pub(crate) fn phase_colour(p: Phase) -> &'static str {
    match p {
        Phase::Build => "#4e79a7",
        Phase::Cluster => "#f28e2b",
        Phase::Load => "#59a14f",
        Phase::Deploy => "#b07aa1",
    }
}

const FAILED: &str = "#c0392b";
const INK: &str = "#1f2328";
const MUTED: &str = "#656d76";
const GREY: &str = "#8c959f";
const GRID: &str = "#d0d7de";
const STRIPE: &str = "#f6f8fa";

/// Escapes text for SVG content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// The smallest round step that keeps ticks at least `min_px` apart.
pub(crate) fn tick_step(domain_ms: u64, width_px: f64, min_px: f64) -> u64 {
    const STEPS: [u64; 22] = [
        10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000,
        300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 18_000_000, 36_000_000,
    ];
    let max_ticks = (width_px / min_px).floor().max(1.0);
    STEPS
        .into_iter()
        .find(|&s| (domain_ms as f64 / s as f64) <= max_ticks)
        .unwrap_or(86_400_000)
}

/// A coordinate: one decimal is plenty and keeps the file small and stable.
fn f(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// How a task's bar is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Ran,
    Cached,
    Restored,
    Failed,
    Cancelled,
}

fn look(t: &TaskRecord) -> Look {
    match t.outcome {
        TaskOutcome::Cached => Look::Cached,
        TaskOutcome::Restored => Look::Restored,
        TaskOutcome::Failed if was_cancelled(t) => Look::Cancelled,
        TaskOutcome::Failed => Look::Failed,
        _ => Look::Ran,
    }
}

/// Where everything goes.
struct Layout {
    domain: u64,
    x0: f64,
    width: f64,
    height: f64,
    axis_y: f64,
    bands_top: f64,
    rows_top: f64,
    bottom: f64,
    legend_y: f64,
}

impl Layout {
    fn x(&self, ms: u64) -> f64 {
        self.x0 + (ms.min(self.domain) as f64) * CHART_W / self.domain as f64
    }
    fn row_y(&self, k: usize) -> f64 {
        self.rows_top + k as f64 * ROW_H
    }
}

pub(crate) fn render(a: &Analysis, caption: &Caption) -> String {
    let r = a.record;

    // Rows: tasks that ran by start, then those that never did.
    let mut rows: Vec<usize> = (0..r.tasks.len()).collect();
    rows.sort_by_key(|&i| {
        let t = &r.tasks[i];
        (t.start_ms.is_none(), t.start_ms, t.ready_ms, i)
    });
    let mut row_of = vec![0; r.tasks.len()];
    for (k, &i) in rows.iter().enumerate() {
        row_of[i] = k;
    }
    let mut critical = vec![false; r.tasks.len()];
    for step in &a.critical_path {
        critical[step.index] = true;
    }

    let id_chars = r
        .tasks
        .iter()
        .map(|t| t.id.chars().count().min(MAX_ID_CHARS))
        .max();
    let band_label_chars = 27; // "cluster 1m12s busy (39%)"
    let label_w = ((id_chars.unwrap_or(8).max(band_label_chars) as f64) * MONO_W + 28.0).round();
    let axis_y = 80.0;
    let bands_top = axis_y + 8.0;
    let rows_top = bands_top + a.phases.len() as f64 * BAND_H + 14.0;
    let bottom = rows_top + rows.len() as f64 * ROW_H;
    let legend_y = bottom + 46.0;
    let mut l = Layout {
        domain: a.makespan_ms.max(1),
        x0: label_w,
        width: 0.0,
        height: (legend_y + 24.0).round(),
        axis_y,
        bands_top,
        rows_top,
        bottom,
        legend_y,
    };

    // Wide enough for every label after its bar.
    let notes_end = r
        .tasks
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let (start, end) = interval(t)?;
            let (note, bold) = bar_note(t, critical[i]);
            let bar_end = l.x(end).max(l.x(start) + 2.0);
            Some(bar_end + 4.0 + note_width(&note, bold))
        })
        .fold(l.x0 + CHART_W + RIGHT_MIN, f64::max);
    l.width = (notes_end + 12.0).round();

    let title = caption.title.clone().unwrap_or_else(|| {
        format!(
            "{}: {} in {} ({}, jobs {})",
            r.service,
            r.outcome,
            duration(a.makespan_ms),
            r.strategy,
            jobs_label(r.jobs)
        )
    });
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{SANS}" font-size="12" fill="{INK}">"#,
        w = f(l.width),
        h = f(l.height)
    );
    let _ = writeln!(s, "<title>{}</title>", esc(&title));
    s.push_str(&defs());
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    headings(&mut s, a, &title);
    stripes(&mut s, &l, rows.len());
    axis(&mut s, a, &l);
    bands(&mut s, a, &l);
    s.push_str("<g class=\"tasks\">\n");
    for (k, &i) in rows.iter().enumerate() {
        task_row(&mut s, a, &l, k, i, critical[i]);
    }
    s.push_str("</g>\n");
    critical_arrows(&mut s, a, &l, &row_of);
    failure_marker(&mut s, a, &l);
    legend(&mut s, a, l.legend_y);
    s.push_str("</svg>\n");
    s
}

fn headings(s: &mut String, a: &Analysis, title: &str) {
    let r = a.record;
    let _ = writeln!(
        s,
        r#"<text x="16" y="26" font-size="16" font-weight="600">{}</text>"#,
        esc(title)
    );
    let waited: u64 = a.critical_path.iter().map(|c| c.wait_ms).sum();
    let subtitle = format!(
        "run {} · started {} · {} tasks · utilisation {} of {} slots · critical path {} running + {} waiting",
        r.run_id,
        r.started_at,
        r.tasks.len(),
        pct(a.utilisation),
        a.slots,
        duration(a.critical_work_ms()),
        duration(waited),
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="46" fill="{MUTED}">{}</text>"#,
        esc(&subtitle)
    );
}

/// Alternate row backgrounds, under the grid so the grid stays visible on every row.
fn stripes(s: &mut String, l: &Layout, rows: usize) {
    s.push_str("<g class=\"stripes\">\n");
    for k in (1..rows).step_by(2) {
        let _ = writeln!(
            s,
            r#"<rect x="8" y="{}" width="{}" height="{}" fill="{STRIPE}"/>"#,
            f(l.row_y(k)),
            f(l.width - 16.0),
            f(ROW_H)
        );
    }
    s.push_str("</g>\n");
}

/// Grid lines and tick labels at round steps (above and below the chart), and the run's end.
fn axis(s: &mut String, a: &Analysis, l: &Layout) {
    let step = tick_step(l.domain, CHART_W, 80.0);
    let _ = writeln!(s, r#"<g class="axis" font-size="11" fill="{MUTED}">"#);
    let (top, bottom) = (l.axis_y + 4.0, l.bottom + 4.0);
    let end_x = l.x(l.domain);
    let mut t = 0;
    while t <= l.domain {
        let xt = l.x(t);
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{GRID}"/>"#,
            f(top),
            f(bottom),
            x = f(xt)
        );
        // Leave room for the end marker's label.
        if end_x - xt > 46.0 {
            let label = esc(&tick(t, step));
            for y in [l.axis_y, l.bottom + 18.0] {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
                    f(xt),
                    f(y)
                );
            }
        }
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{INK}" stroke-dasharray="3 3"/>"#,
        f(top),
        f(bottom),
        x = f(end_x)
    );
    let end = esc(&duration(a.makespan_ms));
    for y in [l.axis_y, l.bottom + 18.0] {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="600" fill="{INK}">{end}</text>"#,
            f(end_x),
            f(y)
        );
    }
    s.push_str("</g>\n");
}

/// Per phase: where at least one of its tasks ran.
fn bands(s: &mut String, a: &Analysis, l: &Layout) {
    s.push_str("<g class=\"phases\">\n");
    for (k, p) in a.phases.iter().enumerate() {
        let y = l.bands_top + k as f64 * BAND_H;
        let colour = phase_colour(p.phase);
        let label = format!(
            "{:<8}{} busy ({})",
            p.phase.as_str(),
            duration(p.busy_ms),
            pct(p.share)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{}" font-family="{MONO}" font-size="11" fill="{MUTED}" xml:space="preserve">{}</text>"#,
            f(y + BAND_H / 2.0 + 4.0),
            esc(&label)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{colour}" fill-opacity="0.08"/>"#,
            f(l.x0),
            f(y + 2.0),
            f(CHART_W),
            f(BAND_H - 4.0)
        );
        let spans = a
            .record
            .tasks
            .iter()
            .filter(|t| t.phase == p.phase)
            .filter_map(interval);
        for (b, e) in union(spans.collect()) {
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{colour}"><title>{} busy {}–{}</title></rect>"#,
                f(l.x(b)),
                f(y + 2.0),
                f((l.x(e) - l.x(b)).max(1.0)),
                f(BAND_H - 4.0),
                p.phase,
                esc(&duration(b)),
                esc(&duration(e))
            );
        }
    }
    s.push_str("</g>\n");
}

fn task_row(s: &mut String, a: &Analysis, l: &Layout, k: usize, i: usize, critical: bool) {
    let r = a.record;
    let t = &r.tasks[i];
    let mid = l.row_y(k) + ROW_H / 2.0;
    let bar_y = mid - BAR_H / 2.0;
    let colour = phase_colour(t.phase);
    let kind = look(t);

    let label_style = match (t.outcome, kind) {
        (_, Look::Failed) => format!(r#" fill="{FAILED}" font-weight="600""#),
        (TaskOutcome::Skipped, _) => format!(r#" fill="{MUTED}" font-style="italic""#),
        _ => String::new(),
    };
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" font-family="{MONO}"{label_style}>{}</text>"#,
        f(mid + 4.0),
        esc(&shorten(&t.id, MAX_ID_CHARS))
    );

    let Some((start, end)) = interval(t) else {
        // Never ran: a note at the chart's left edge, since it has no time of its own.
        let reason = t.skip_reason.as_deref().unwrap_or("never ran");
        let note = format!("{}: {reason}", outcome_str(t.outcome));
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="{}" fill="none" stroke="{MUTED}" stroke-dasharray="2 2"/>"#,
            f(l.x0 + 4.0),
            f(bar_y),
            f(BAR_H)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="11" fill="{MUTED}" font-style="italic">{}</text>"#,
            f(l.x0 + 20.0),
            f(mid + 4.0),
            esc(&shorten(&note, 120))
        );
        return;
    };

    // Queue wait: ready → start, labelled when there is room.
    if let Some(ready) = t.ready_ms.filter(|&rd| rd < start) {
        let (qx, qw) = (l.x(ready), (l.x(start) - l.x(ready)).max(0.5));
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{colour}" fill-opacity="0.28"><title>{} queued {}</title></rect>"#,
            f(qx),
            f(bar_y + 3.0),
            f(qw),
            f(BAR_H - 6.0),
            esc(&t.id),
            esc(&duration(start - ready))
        );
        let label = format!("queued {}", duration(start - ready));
        if qw > label.chars().count() as f64 * 5.8 + 12.0 {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-size="10" fill="{MUTED}">{}</text>"#,
                f(qx + 6.0),
                f(mid + 3.5),
                esc(&label)
            );
        }
    }

    let bx = l.x(start);
    let bw = (l.x(end) - bx).max(2.0);
    let attempts = match t.attempts {
        0 | 1 => String::new(),
        n => format!(" after {n} attempts"),
    };
    let queued = t
        .queue_ms()
        .map(|q| format!(", queued {}", duration(q)))
        .unwrap_or_default();
    let tooltip = format!(
        "{} ({} {}): {}, {} → {}{queued}, {}{attempts}{}",
        t.id,
        t.phase,
        t.kind,
        duration(end - start),
        duration(start),
        duration(end),
        outcome_label(t),
        t.error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    let (opacity, stroke, stroke_w, dash) = match kind {
        Look::Ran => ("1", "none", 0.0, ""),
        Look::Cached => ("0.3", colour, 1.0, r#" stroke-dasharray="3 2""#),
        Look::Restored => ("0.6", colour, 1.0, r#" stroke-dasharray="1 2""#),
        Look::Failed => ("1", FAILED, 1.5, ""),
        Look::Cancelled => ("0.35", GREY, 1.0, ""),
    };
    let (stroke, stroke_w) = if critical {
        (INK, 2.0)
    } else {
        (stroke, stroke_w)
    };
    let _ = writeln!(
        s,
        r#"<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{colour}" fill-opacity="{opacity}" stroke="{stroke}" stroke-width="{}"{dash}><title>{}</title></rect>"#,
        f(bx),
        f(bar_y),
        f(bw),
        f(BAR_H),
        f(stroke_w),
        esc(&tooltip)
    );
    let hatch = match kind {
        Look::Failed => Some("failed"),
        Look::Cancelled => Some("cancelled"),
        _ => None,
    };
    if let Some(pattern) = hatch {
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="url(#{pattern})" pointer-events="none"/>"#,
            f(bx),
            f(bar_y),
            f(bw),
            f(BAR_H)
        );
    }

    // The duration, with the outcome when it was not a plain success, after the bar (the
    // canvas is sized so that it always fits: see `bar_note`).
    let (note, bold) = bar_note(t, critical);
    let fill = if kind == Look::Failed { FAILED } else { MUTED };
    let weight = if bold { r#" font-weight="600""# } else { "" };
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="11" fill="{fill}"{weight}>{}</text>"#,
        f(bx + bw + 4.0),
        f(mid + 4.0),
        esc(&note)
    );
}

/// The label after a task's bar, and whether it is bold.
fn bar_note(t: &TaskRecord, critical: bool) -> (String, bool) {
    let kind = look(t);
    let mut note = t.duration_ms().map(duration).unwrap_or_default();
    match kind {
        Look::Cached => note.push_str(" cached"),
        Look::Restored => note.push_str(" restored"),
        Look::Failed => note.push_str(" failed"),
        Look::Cancelled => note.push_str(" cancelled"),
        Look::Ran => {}
    }
    if t.attempts > 1 {
        note.push_str(&format!(" ({} attempts)", t.attempts));
    }
    (note, critical || kind == Look::Failed)
}

/// Roughly how wide an 11px label is.
fn note_width(note: &str, bold: bool) -> f64 {
    note.chars().count() as f64 * if bold { SMALL_W * 1.12 } else { SMALL_W }
}

/// The critical path: an elbow arrow from each step's end to the next step's start.
fn critical_arrows(s: &mut String, a: &Analysis, l: &Layout, row_of: &[usize]) {
    if a.critical_path.len() < 2 {
        return;
    }
    let _ = writeln!(
        s,
        r#"<g class="critical-path" fill="none" stroke="{INK}" stroke-width="1.3">"#
    );
    for pair in a.critical_path.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        let ya = l.row_y(row_of[from.index]) + ROW_H / 2.0;
        let yb = l.row_y(row_of[to.index]) + ROW_H / 2.0;
        let (xa, xb) = (l.x(from.end_ms), l.x(to.start_ms));
        let leave = if yb > ya { BAR_H / 2.0 } else { -BAR_H / 2.0 };
        let _ = writeln!(
            s,
            r#"<path d="M{} {} V{} H{}" marker-end="url(#arrow)"/>"#,
            f(xa),
            f(ya + leave),
            f(yb),
            f(xb.max(xa) + 0.1)
        );
    }
    s.push_str("</g>\n");
}

/// Where the run failed: a red line at the first failure (cancellations are its consequence).
fn failure_marker(s: &mut String, a: &Analysis, l: &Layout) {
    let first = a
        .record
        .tasks
        .iter()
        .filter(|t| look(t) == Look::Failed)
        .filter_map(|t| Some((t.end_ms?, t)))
        .min_by_key(|(e, _)| *e);
    let Some((at, t)) = first else { return };
    let x = l.x(at);
    let _ = writeln!(
        s,
        r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{FAILED}" stroke-width="1.5" stroke-dasharray="5 3"/>"#,
        f(l.axis_y + 4.0),
        f(l.bottom + 4.0),
        x = f(x)
    );
    let label = format!("✗ {} failed at {}", t.id, duration(at));
    let anchor = if x - l.x0 > CHART_W / 2.0 {
        "end"
    } else {
        "start"
    };
    let dx = if anchor == "end" { -6.0 } else { 6.0 };
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="{anchor}" font-size="12" font-weight="600" fill="{FAILED}">{}</text>"#,
        f(x + dx),
        f(l.axis_y - 16.0),
        esc(&label)
    );
}

fn defs() -> String {
    format!(
        r#"<defs>
<pattern id="failed" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="2.5" height="6" fill="{FAILED}" fill-opacity="0.8"/></pattern>
<pattern id="cancelled" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="1.5" height="6" fill="{GREY}" fill-opacity="0.7"/></pattern>
<marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0 L8 4 L0 8 z" fill="{INK}"/></marker>
</defs>
"#
    )
}

/// Draws a legend swatch at an x.
type Swatch<'a> = Box<dyn Fn(f64) -> String + 'a>;

fn legend(s: &mut String, a: &Analysis, y: f64) {
    let bar = |x: f64, attrs: &str| {
        format!(
            r#"<rect x="{}" y="{}" width="20" height="{}" rx="2" {attrs}/>"#,
            f(x),
            f(y - BAR_H / 2.0),
            f(BAR_H)
        )
    };
    let has = |l: Look| {
        a.record
            .tasks
            .iter()
            .any(|t| t.start_ms.is_some() && look(t) == l)
    };
    let mut items: Vec<(String, Swatch<'_>)> = Vec::new();
    for p in Phase::ALL {
        if a.phases.iter().any(|ps| ps.phase == p) {
            let attrs = format!(r#"fill="{}""#, phase_colour(p));
            items.push((p.to_string(), Box::new(move |x| bar(x, &attrs))));
        }
    }
    items.push((
        "queue wait".into(),
        Box::new(move |x| {
            format!(
                r#"<rect x="{}" y="{}" width="20" height="{}" fill="{GREY}" fill-opacity="0.35"/>"#,
                f(x),
                f(y - BAR_H / 2.0 + 3.0),
                f(BAR_H - 6.0)
            )
        }),
    ));
    if has(Look::Cached) {
        let attrs =
            format!(r#"fill="{GREY}" fill-opacity="0.3" stroke="{GREY}" stroke-dasharray="3 2""#);
        items.push(("cached".into(), Box::new(move |x| bar(x, &attrs))));
    }
    if has(Look::Restored) {
        let attrs =
            format!(r#"fill="{GREY}" fill-opacity="0.6" stroke="{GREY}" stroke-dasharray="1 2""#);
        items.push(("restored".into(), Box::new(move |x| bar(x, &attrs))));
    }
    if has(Look::Failed) {
        let under = format!(r#"fill="{GREY}" stroke="{FAILED}" stroke-width="1.5""#);
        items.push((
            "failed".into(),
            Box::new(move |x| format!("{}\n{}", bar(x, &under), bar(x, r#"fill="url(#failed)""#))),
        ));
    }
    if has(Look::Cancelled) {
        let under = format!(r#"fill="{GREY}" fill-opacity="0.35" stroke="{GREY}""#);
        items.push((
            "cancelled".into(),
            Box::new(move |x| {
                format!(
                    "{}\n{}",
                    bar(x, &under),
                    bar(x, r#"fill="url(#cancelled)""#)
                )
            }),
        ));
    }
    if a.record.tasks.iter().any(|t| t.start_ms.is_none()) {
        items.push((
            "never ran".into(),
            Box::new(move |x| {
                format!(
                    r#"<rect x="{}" y="{}" width="10" height="{}" fill="none" stroke="{MUTED}" stroke-dasharray="2 2"/>"#,
                    f(x + 5.0),
                    f(y - BAR_H / 2.0),
                    f(BAR_H)
                )
            }),
        ));
    }
    let outlined = format!(r#"fill="{GREY}" stroke="{INK}" stroke-width="2""#);
    items.push((
        "critical path".into(),
        Box::new(move |x| {
            format!(
                "{}\n<path d=\"M{} {} H{}\" stroke=\"{INK}\" stroke-width=\"1.3\" marker-end=\"url(#arrow)\" fill=\"none\"/>",
                bar(x, &outlined),
                f(x + 20.0),
                f(y),
                f(x + 27.0)
            )
        }),
    ));

    s.push_str("<g class=\"legend\">\n");
    let mut x = 16.0;
    for (label, swatch) in items {
        let _ = writeln!(s, "{}", swatch(x));
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            f(x + 32.0),
            f(y + 4.0),
            esc(&label)
        );
        x += 32.0 + label.chars().count() as f64 * 7.0 + 24.0;
    }
    s.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_use_round_steps() {
        assert_eq!(tick_step(184_000, 960.0, 80.0), 30_000);
        assert_eq!(tick_step(12_300, 960.0, 80.0), 2_000);
        assert_eq!(tick_step(45_000, 960.0, 80.0), 5_000);
        assert_eq!(tick_step(3_000_000, 960.0, 80.0), 300_000);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
