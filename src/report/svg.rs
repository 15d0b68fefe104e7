//! `--format svg`: a waterfall of the run, as a standalone SVG.
//!
//! One row per task (sorted by start), bars coloured by phase, the queue wait as a faint bar
//! before each task, cached tasks pale and dashed, failed ones hatched red, tasks that never
//! ran as a grey note; the critical path outlined in black and linked by arrows; per-phase busy
//! bands above the tasks; a time axis with round tick steps; a legend.

use std::fmt::Write;

use crate::engine::TaskOutcome;
use crate::plan::Phase;

use super::analysis::{Analysis, interval};
use super::fmt::{duration, pct, tick};
use super::jobs_label;
use super::text::outcome_str;

/// Overrides for the picture's headings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caption {
    pub title: Option<String>,
}

const CHART_W: f64 = 960.0;
const RIGHT_W: f64 = 72.0; // room for a duration label after a bar that ends the run
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
const BAND_H: f64 = 16.0;
const CHAR_W: f64 = 7.3; // DejaVu Sans Mono at 12px, the widest of the usual monospace fonts
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
const GRID: &str = "#d8dee4";

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
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
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

fn f(x: f64) -> String {
    // One decimal is plenty for pixels and keeps the file small and stable.
    let s = format!("{:.1}", x);
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

pub(crate) fn render(a: &Analysis, caption: &Caption) -> String {
    let r = a.record;
    let domain = a.makespan_ms.max(1);

    // Rows: tasks that ran by start, then those that never did.
    let mut rows: Vec<usize> = (0..r.tasks.len()).collect();
    rows.sort_by_key(|&i| {
        let t = &r.tasks[i];
        (t.start_ms.is_none(), t.start_ms, t.ready_ms, i)
    });
    let critical: Vec<Option<usize>> = {
        let mut v = vec![None; r.tasks.len()];
        for (k, s) in a.critical_path.iter().enumerate() {
            v[s.index] = Some(k);
        }
        v
    };

    let id_chars = r
        .tasks
        .iter()
        .map(|t| t.id.chars().count().min(MAX_ID_CHARS))
        .max()
        .unwrap_or(8);
    let band_label_chars = 26; // "deploy  1m12s busy (39%)"
    let label_w = ((id_chars.max(band_label_chars) as f64) * CHAR_W + 28.0)
        .max(140.0)
        .round();
    let x0 = label_w;
    let width = (label_w + CHART_W + RIGHT_W).round();
    let x = |ms: u64| x0 + (ms.min(domain) as f64) * CHART_W / domain as f64;

    let title_y = 26.0;
    let subtitle_y = 46.0;
    let axis_top = 78.0; // tick labels above the chart
    let bands_top = axis_top + 8.0;
    let bands_h = a.phases.len() as f64 * BAND_H;
    let rows_top = bands_top + bands_h + 14.0;
    let rows_h = rows.len() as f64 * ROW_H;
    let chart_bottom = rows_top + rows_h;
    let legend_y = chart_bottom + 44.0;
    let height = (legend_y + 26.0).round();
    let row_y = |k: usize| rows_top + k as f64 * ROW_H;
    let row_of: Vec<usize> = {
        let mut v = vec![0; r.tasks.len()];
        for (k, &i) in rows.iter().enumerate() {
            v[i] = k;
        }
        v
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{SANS}" font-size="12" fill="{INK}">"#,
        w = f(width),
        h = f(height)
    );
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
    let _ = writeln!(s, "<title>{}</title>", esc(&title));
    s.push_str(&defs());
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);

    // Headings.
    let cp_work = a.critical_work_ms();
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" font-size="16" font-weight="600">{}</text>"#,
        f(title_y),
        esc(&title)
    );
    let subtitle = format!(
        "run {} · started {} · {} tasks · utilisation {} of {} slots · critical path {} running + {} waiting",
        r.run_id,
        r.started_at,
        r.tasks.len(),
        pct(a.utilisation),
        a.slots,
        duration(cp_work),
        duration(a.critical_path.iter().map(|c| c.wait_ms).sum()),
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" fill="{MUTED}">{}</text>"#,
        f(subtitle_y),
        esc(&subtitle)
    );

    // Grid and axis: ticks at round steps, labels above and below the chart.
    let step = tick_step(domain, CHART_W, 80.0);
    let _ = writeln!(s, r#"<g class="axis" font-size="11" fill="{MUTED}">"#);
    let mut t = 0;
    while t <= domain {
        let xt = x(t);
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2}" stroke="{GRID}" stroke-width="1"/>"#,
            x = f(xt),
            y1 = f(axis_top + 4.0),
            y2 = f(chart_bottom + 4.0)
        );
        // Leave room for the end marker's label.
        if x(domain) - xt > 46.0 || t == domain {
            let label = esc(&tick(t, step));
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
                f(xt),
                f(axis_top)
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
                f(xt),
                f(chart_bottom + 18.0)
            );
        }
        t += step;
    }
    // The end of the run.
    let xe = x(domain);
    let _ = writeln!(
        s,
        r#"<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2}" stroke="{INK}" stroke-width="1" stroke-dasharray="3 3"/>"#,
        x = f(xe),
        y1 = f(axis_top + 4.0),
        y2 = f(chart_bottom + 4.0)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="start" font-weight="600" fill="{INK}">{}</text>"#,
        f(xe + 4.0),
        f(axis_top),
        esc(&duration(a.makespan_ms))
    );
    s.push_str("</g>\n");

    // Per-phase busy bands: where each phase had at least one task running.
    s.push_str("<g class=\"phases\">\n");
    for (k, p) in a.phases.iter().enumerate() {
        let y = bands_top + k as f64 * BAND_H;
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
        let spans: Vec<(u64, u64)> = r
            .tasks
            .iter()
            .filter(|t| t.phase == p.phase)
            .filter_map(interval)
            .collect();
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}" fill-opacity="0.08"/>"#,
            f(x0),
            f(y + 2.0),
            f(CHART_W),
            f(BAND_H - 4.0),
            phase_colour(p.phase)
        );
        for (b, e) in super::analysis::union(spans) {
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} busy {}–{}</title></rect>"#,
                f(x(b)),
                f(y + 2.0),
                f((x(e) - x(b)).max(1.0)),
                f(BAND_H - 4.0),
                phase_colour(p.phase),
                p.phase,
                esc(&duration(b)),
                esc(&duration(e))
            );
        }
    }
    s.push_str("</g>\n");

    // Task rows.
    s.push_str("<g class=\"tasks\">\n");
    for (k, &i) in rows.iter().enumerate() {
        let t = &r.tasks[i];
        let y = row_y(k);
        let mid = y + ROW_H / 2.0;
        let bar_y = y + (ROW_H - BAR_H) / 2.0;
        let colour = phase_colour(t.phase);
        if k % 2 == 1 {
            let _ = writeln!(
                s,
                r##"<rect x="8" y="{}" width="{}" height="{}" fill="#f6f8fa"/>"##,
                f(y),
                f(width - 16.0),
                f(ROW_H)
            );
        }
        let (label_fill, style) = match t.outcome {
            TaskOutcome::Failed => (FAILED, " font-weight=\"600\""),
            TaskOutcome::Skipped => (MUTED, " font-style=\"italic\""),
            _ => (INK, ""),
        };
        let _ = writeln!(
            s,
            r#"<text x="16" y="{}" font-family="{MONO}" fill="{label_fill}"{style}>{}</text>"#,
            f(mid + 4.0),
            esc(&shorten(&t.id, MAX_ID_CHARS))
        );

        let Some((start, end)) = interval(t) else {
            // Never ran: a note where it would have become ready (after its last dependency).
            let after = t
                .deps
                .iter()
                .filter_map(|d| r.tasks.iter().find(|o| &o.id == d))
                .filter_map(|o| o.end_ms)
                .max()
                .unwrap_or(0);
            let reason = t.skip_reason.as_deref().unwrap_or("never ran");
            let note = format!("{}: {}", outcome_str(t.outcome), reason);
            let xn = x(after).min(x0 + CHART_W * 0.55);
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="10" height="{}" fill="none" stroke="{MUTED}" stroke-dasharray="2 2"/>"#,
                f(xn),
                f(bar_y),
                f(BAR_H)
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-size="11" fill="{MUTED}" font-style="italic">{}</text>"#,
                f(xn + 16.0),
                f(mid + 4.0),
                esc(&shorten(&note, 90))
            );
            continue;
        };

        // Queue wait: ready → start.
        if let Some(ready) = t.ready_ms.filter(|&rd| rd < start) {
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{colour}" fill-opacity="0.18"><title>{} queued {}</title></rect>"#,
                f(x(ready)),
                f(bar_y + 3.0),
                f((x(start) - x(ready)).max(0.5)),
                f(BAR_H - 6.0),
                esc(&t.id),
                esc(&duration(start - ready))
            );
        }

        let bx = x(start);
        let bw = (x(end) - bx).max(2.0);
        let tooltip = format!(
            "{} ({} {}): {}, {} → {}{}{}",
            t.id,
            t.phase,
            t.kind,
            duration(end - start),
            duration(start),
            duration(end),
            t.queue_ms()
                .map(|q| format!(", queued {}", duration(q)))
                .unwrap_or_default(),
            match (t.outcome, t.attempts) {
                (o, 0 | 1) => format!(", {}", outcome_str(o)),
                (o, n) => format!(", {} after {n} attempts", outcome_str(o)),
            }
        );
        let crit = critical[i].is_some();
        let (fill_opacity, stroke, stroke_w, dash) = match t.outcome {
            TaskOutcome::Cached => ("0.3", colour, 1.0, " stroke-dasharray=\"3 2\""),
            TaskOutcome::Failed => ("1", FAILED, 1.5, ""),
            _ => ("1", "none", 0.0, ""),
        };
        let (stroke, stroke_w) = if crit { (INK, 2.0) } else { (stroke, stroke_w) };
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{colour}" fill-opacity="{fill_opacity}" stroke="{stroke}" stroke-width="{}"{dash}><title>{}</title></rect>"#,
            f(bx),
            f(bar_y),
            f(bw),
            f(BAR_H),
            f(stroke_w),
            esc(&tooltip)
        );
        if t.outcome == TaskOutcome::Failed {
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="url(#failed)" pointer-events="none"/>"#,
                f(bx),
                f(bar_y),
                f(bw),
                f(BAR_H)
            );
        }
        // Duration (and a note for retries and outcomes other than success) after the bar.
        let mut note = duration(end - start);
        match t.outcome {
            TaskOutcome::Cached => note.push_str(" cached"),
            TaskOutcome::Failed => note.push_str(" FAILED"),
            _ => {}
        }
        if t.attempts > 1 {
            note.push_str(&format!(" ({} attempts)", t.attempts));
        }
        let weight = if crit { " font-weight=\"600\"" } else { "" };
        let fill = if t.outcome == TaskOutcome::Failed {
            FAILED
        } else {
            MUTED
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="11" fill="{fill}"{weight}>{}</text>"#,
            f(bx + bw + 4.0),
            f(mid + 4.0),
            esc(&note)
        );
    }
    s.push_str("</g>\n");

    // The critical path: an elbow arrow from each step's end down to the next step's start.
    if a.critical_path.len() > 1 {
        s.push_str(
            "<g class=\"critical-path\" fill=\"none\" stroke=\"#1f2328\" stroke-width=\"1.3\">\n",
        );
        for pair in a.critical_path.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            let (ya, yb) = (
                row_y(row_of[from.index]) + ROW_H / 2.0,
                row_y(row_of[to.index]) + ROW_H / 2.0,
            );
            let (xa, xb) = (x(from.end_ms), x(to.start_ms));
            let down = if yb > ya { BAR_H / 2.0 } else { -BAR_H / 2.0 };
            let _ = writeln!(
                s,
                r#"<path d="M{} {} V{} H{}" marker-end="url(#arrow)"/>"#,
                f(xa),
                f(ya + down),
                f(yb),
                f(xb.max(xa) + 0.01)
            );
        }
        s.push_str("</g>\n");
    }

    s.push_str(&legend(a, legend_y));
    s.push_str("</svg>\n");
    s
}

fn defs() -> String {
    format!(
        r#"<defs>
<pattern id="failed" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="2.5" height="6" fill="{FAILED}" fill-opacity="0.75"/></pattern>
<marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0 L8 4 L0 8 z" fill="{INK}"/></marker>
</defs>
"#
    )
}

fn legend(a: &Analysis, y: f64) -> String {
    let grey = "#8c959f";
    let bar = |attrs: String| {
        move |x: f64| {
            format!(
                r#"<rect x="{}" y="{}" width="20" height="{}" rx="2" {attrs}/>"#,
                f(x),
                f(y - BAR_H / 2.0),
                f(BAR_H)
            )
        }
    };
    type Swatch<'a> = Box<dyn Fn(f64) -> String + 'a>;
    let mut items: Vec<(Swatch, &str)> = Vec::new();
    for p in Phase::ALL {
        if a.phases.iter().any(|ps| ps.phase == p) {
            items.push((
                Box::new(bar(format!(r#"fill="{}""#, phase_colour(p)))),
                p.as_str(),
            ));
        }
    }
    items.push((
        Box::new(move |x| {
            format!(
                r#"<rect x="{}" y="{}" width="20" height="{}" fill="{grey}" fill-opacity="0.3"/>"#,
                f(x),
                f(y - BAR_H / 2.0 + 3.0),
                f(BAR_H - 6.0)
            )
        }),
        "queue wait",
    ));
    let has = |o: TaskOutcome| a.record.tasks.iter().any(|t| t.outcome == o);
    if has(TaskOutcome::Cached) {
        items.push((
            Box::new(bar(format!(
                r#"fill="{grey}" fill-opacity="0.3" stroke="{grey}" stroke-dasharray="3 2""#
            ))),
            "cached",
        ));
    }
    if has(TaskOutcome::Failed) {
        let (under, over) = (
            bar(format!(
                r#"fill="{grey}" stroke="{FAILED}" stroke-width="1.5""#
            )),
            bar(r#"fill="url(#failed)""#.to_string()),
        );
        items.push((
            Box::new(move |x| format!("{}\n{}", under(x), over(x))),
            "failed",
        ));
    }
    if has(TaskOutcome::Skipped) {
        items.push((
            Box::new(move |x| {
                format!(
                    r#"<rect x="{}" y="{}" width="10" height="{}" fill="none" stroke="{MUTED}" stroke-dasharray="2 2"/>"#,
                    f(x + 5.0),
                    f(y - BAR_H / 2.0),
                    f(BAR_H)
                )
            }),
            "never ran",
        ));
    }
    let outlined = bar(format!(r#"fill="{grey}" stroke="{INK}" stroke-width="2""#));
    items.push((
        Box::new(move |x| {
            format!(
                r#"{}
<path d="M{} {} H{}" stroke="{INK}" stroke-width="1.3" marker-end="url(#arrow)" fill="none"/>"#,
                outlined(x),
                f(x + 20.0),
                f(y),
                f(x + 26.0)
            )
        }),
        "critical path",
    ));

    let mut s = String::from("<g class=\"legend\" font-size=\"12\">\n");
    let mut x = 16.0;
    for (swatch, label) in items {
        let _ = writeln!(s, "{}", swatch(x));
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            f(x + 30.0),
            f(y + 4.0),
            esc(label)
        );
        x += 30.0 + label.chars().count() as f64 * 7.0 + 22.0;
    }
    s.push_str("</g>\n");
    s
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
