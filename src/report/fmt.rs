//! Human formatting shared by the text, Markdown and SVG reports.

/// A duration for people: `350ms`, `1.2s`, `25.3s`, `3m04s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1_000;
    if secs < 3_600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let mins = (secs + 30) / 60;
    format!("{}h{:02}m", mins / 60, mins % 60)
}

/// Like [`duration`], for an optional value (`-` when absent).
pub fn opt_duration(ms: Option<u64>) -> String {
    ms.map(duration).unwrap_or_else(|| "-".to_string())
}

/// A signed difference: `+1.2s`, `-3m04s`, `±0ms`.
pub fn delta(ms: i64) -> String {
    match ms.signum() {
        0 => "±0ms".to_string(),
        1 => format!("+{}", duration(ms.unsigned_abs())),
        _ => format!("-{}", duration(ms.unsigned_abs())),
    }
}

/// A relative change in percent (`+12%`, `-4.5%`), or `new`/`-` when the base is zero.
pub fn delta_pct(base: u64, other: u64) -> String {
    if base == 0 {
        return if other == 0 {
            "±0%".to_string()
        } else {
            "new".to_string()
        };
    }
    let pct = (other as f64 - base as f64) * 100.0 / base as f64;
    signed_pct(pct)
}

/// `+12%`, `-4.5%`: one decimal below 10%.
pub fn signed_pct(pct: f64) -> String {
    let abs = pct.abs();
    let body = if abs < 9.95 {
        format!("{abs:.1}%")
    } else {
        format!("{abs:.0}%")
    };
    if body == "0.0%" {
        "±0%".to_string()
    } else if pct < 0.0 {
        format!("-{body}")
    } else {
        format!("+{body}")
    }
}

/// A share in percent: `48%`, `3.5%`, `<0.1%`.
pub fn pct(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p == 0.0 {
        "0%".to_string()
    } else if p < 0.05 {
        "<0.1%".to_string()
    } else if p < 9.95 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// An axis label for a tick at `ms` when ticks are `step_ms` apart: `0s`, `30s`, `1m`, `1m30s`.
pub fn tick(ms: u64, step_ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    if step_ms < 1_000 {
        return format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100);
    }
    let secs = ms / 1_000;
    if secs < 60 {
        return format!("{secs}s");
    }
    let (m, s) = (secs / 60, secs % 60);
    if m < 60 {
        return if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s:02}s")
        };
    }
    let (h, m) = (m / 60, m % 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h{m:02}m")
    }
}

/// Pads `s` to `width` characters (by chars, not bytes), left-aligned.
pub fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// Pads `s` to `width` characters, right-aligned.
pub fn rpad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_string()
    } else {
        format!("{}{s}", " ".repeat(width - n))
    }
}

/// Renders rows as aligned columns; `right[i]` right-aligns column `i`. Two spaces between
/// columns, `indent` before each line, no trailing spaces.
pub fn table(indent: &str, header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from(indent);
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(&if right.get(i).copied().unwrap_or(false) {
                rpad(cell, widths[i])
            } else {
                pad(cell, widths[i])
            });
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_write_them() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(350), "350ms");
        assert_eq!(duration(1_200), "1.2s");
        assert_eq!(duration(1_249), "1.2s");
        assert_eq!(duration(25_340), "25.3s");
        assert_eq!(duration(59_960), "1m00s");
        assert_eq!(duration(184_000), "3m04s");
        assert_eq!(duration(3_600_000), "1h00m");
        assert_eq!(duration(3_725_000), "1h02m");
    }

    #[test]
    fn deltas_carry_their_sign() {
        assert_eq!(delta(0), "±0ms");
        assert_eq!(delta(1_500), "+1.5s");
        assert_eq!(delta(-184_000), "-3m04s");
        assert_eq!(delta_pct(100, 150), "+50%");
        assert_eq!(delta_pct(1000, 955), "-4.5%");
        assert_eq!(delta_pct(0, 5), "new");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick(0, 30_000), "0s");
        assert_eq!(tick(30_000, 30_000), "30s");
        assert_eq!(tick(60_000, 30_000), "1m");
        assert_eq!(tick(90_000, 30_000), "1m30s");
        assert_eq!(tick(500, 500), "0.5s");
        assert_eq!(tick(7_200_000, 1_800_000), "2h");
    }
}
