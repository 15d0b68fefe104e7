//! Reports: pure functions of run records (no clock, no I/O but [`append_step_summary`]).
//!
//! Wiring for the CLI:
//!
//! ```no_run
//! use kprov::record::store::{RunRef, Store};
//! use kprov::report::{self, Format, Options, Strategy};
//! # fn main() -> anyhow::Result<()> {
//! let store = Store::new(".");
//! let (_, run) = store.load(&RunRef::parse("latest"))?;
//! let format: Format = "svg".parse().map_err(anyhow::Error::msg)?;
//!
//! // kprov profile [RUN] --format F
//! let out = report::render(&run, format, &Options::default())?;
//! // kprov profile [RUN] --compare OTHER: deltas are RUN − OTHER (OTHER is the baseline)
//! let (_, other) = store.load(&RunRef::parse("20261123T004012Z-aianalysis"))?;
//! let out = report::compare(&other, &run, format)?;
//! // kprov profile [RUN] --what-if hybrid [--jobs 4] (jobs: None = the run's own)
//! let out = report::what_if(&run, Strategy::Hybrid, Some(4), format)?;
//! // kprov profile --merge A.json DIR/ …: records read by `record::collect::collect`
//! let found = kprov::record::collect::collect(&["records/".into()])?;
//! let out = report::merge(&found.records, format)?;
//! // --format markdown, and in CI: also append it to the job summary
//! if let Some(path) = report::step_summary_path() {
//!     let md = report::render(&run, Format::Markdown, &Options::default())?;
//!     report::append_step_summary(&path, &md)?;
//! }
//! // kprov up --trace FILE: std::fs::write(FILE, report::render(&record, Format::Trace, ..)?)
//! # Ok(()) }
//! ```
//!
//! Formats: every format renders a single run; `compare` and `what_if` support text, json and
//! markdown (svg too for what-if: the predicted waterfall), `merge` text, json, markdown and
//! trace (a process per run), and they refuse the others with [`ReportError::Unsupported`].
//! Every output ends with a newline.
//!
//! - text: the terminal report (header, phases, slowest tasks with queue waits, the critical
//!   path, utilisation, makespan over the DAG's critical path at the measured durations);
//! - json: `{run_id, service, strategy, jobs, makespan_ms, utilisation, phases: [{name,
//!   start_ms, end_ms, span_ms, busy_ms, share, overlap_ms, …}], tasks: [{id, phase, start_ms,
//!   end_ms, duration_ms, queue_ms, outcome, attempts, critical, …}], critical_path: [ids],
//!   dag_critical_path: [ids], dag_critical_path_ms, makespan_over_dag_critical_path, …}`;
//! - markdown: for a CI job summary (headline, phases, slowest tasks, critical path, all
//!   tasks in a `<details>`);
//! - trace: Chrome trace event JSON (opens in Perfetto / chrome://tracing);
//! - svg: a waterfall, one row per task, coloured by phase, the critical path outlined.

pub mod analysis;
mod compare;
pub mod fmt;
mod json;
mod markdown;
mod merge;
mod svg;
mod text;
mod trace;
pub mod whatif;

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    str::FromStr,
};

use crate::record::RunRecord;

pub use analysis::Analysis;
pub use compare::Comparison;
pub use merge::{Merged, MergedRun};
pub use whatif::{Strategy, WhatIf, barrier_edges, replay};

/// An output format of `kprov profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Trace,
    Svg,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Text,
        Format::Json,
        Format::Markdown,
        Format::Trace,
        Format::Svg,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Markdown => "markdown",
            Format::Trace => "trace",
            Format::Svg => "svg",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "md" => return Ok(Format::Markdown),
            "chrome" | "perfetto" => return Ok(Format::Trace),
            _ => {}
        }
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("unknown format {s:?} (expected text, json, markdown, trace or svg)")
            })
    }
}

/// Knobs of the human-readable reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many tasks the "slowest tasks" tables show (text and Markdown).
    pub top: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { top: 10 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("render {what} as {format}: supported formats are {supported}")]
    Unsupported {
        what: &'static str,
        format: Format,
        supported: &'static str,
    },
    #[error("replay run {run_id}: {reason}")]
    Replay { run_id: String, reason: String },
    #[error("append the job summary to {}", path.display())]
    Summary {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One run in `format`.
pub fn render(record: &RunRecord, format: Format, opts: &Options) -> Result<String, ReportError> {
    let a = Analysis::new(record);
    Ok(match format {
        Format::Text => text::render(&a, opts),
        Format::Json => json::render(&a),
        Format::Markdown => markdown::render(&a, opts),
        Format::Trace => trace::render(&a),
        Format::Svg => svg::render(&a, &svg::Caption::default()),
    })
}

/// `run` against `base`: per-phase and per-task deltas (`run − base`), tasks found in only
/// one of them, the makespan delta. Text, json or markdown.
pub fn compare(base: &RunRecord, run: &RunRecord, format: Format) -> Result<String, ReportError> {
    let c = Comparison::new(base, run);
    match format {
        Format::Text => Ok(compare::text(&c)),
        Format::Json => Ok(compare::json(&c)),
        Format::Markdown => Ok(compare::markdown(&c)),
        Format::Trace | Format::Svg => Err(ReportError::Unsupported {
            what: "a comparison",
            format,
            supported: "text, json, markdown",
        }),
    }
}

/// `record` replayed under `strategy` with `jobs` (`None`: the run's own): the predicted
/// makespan beside the measured one, and the predicted critical path. Text, json, markdown,
/// or svg (the predicted waterfall).
pub fn what_if(
    record: &RunRecord,
    strategy: Strategy,
    jobs: Option<usize>,
    format: Format,
) -> Result<String, ReportError> {
    let w = WhatIf::new(record, strategy, jobs)?;
    match format {
        Format::Text => Ok(text::what_if(&w)),
        Format::Json => Ok(json::what_if(&w)),
        Format::Markdown => Ok(markdown::what_if(&w)),
        Format::Svg => {
            let a = Analysis::new(&w.predicted);
            let caption = svg::Caption {
                title: Some(format!(
                    "what if {} ran {}, jobs {}: predicted {} (measured {})",
                    record.run_id,
                    w.predicted.strategy,
                    jobs_label(w.predicted.jobs),
                    fmt::duration(w.predicted.makespan_ms),
                    fmt::duration(w.measured_ms()),
                )),
            };
            Ok(svg::render(&a, &caption))
        }
        Format::Trace => Err(ReportError::Unsupported {
            what: "a what-if",
            format,
            supported: "text, json, markdown, svg",
        }),
    }
}

/// Many runs (the jobs of a CI matrix) as one report: a row per run, each phase's busy time
/// per run, the matrix's totals. Text, json, markdown, or trace (a process per run).
pub fn merge(records: &[RunRecord], format: Format) -> Result<String, ReportError> {
    let m = Merged::new(records);
    match format {
        Format::Text => Ok(merge::text(&m)),
        Format::Json => Ok(merge::json(&m)),
        Format::Markdown => Ok(merge::markdown(&m)),
        Format::Trace => Ok(trace::render_merged(&m)),
        Format::Svg => Err(ReportError::Unsupported {
            what: "merged runs",
            format,
            supported: "text, json, markdown, trace",
        }),
    }
}

/// `$GITHUB_STEP_SUMMARY`, when it is set (GitHub Actions).
pub fn step_summary_path() -> Option<PathBuf> {
    std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Appends a Markdown report to the job summary file (created if missing).
pub fn append_step_summary(path: &Path, markdown: &str) -> Result<(), ReportError> {
    let err = |source| ReportError::Summary {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    // A blank line keeps it apart from whatever an earlier step appended.
    f.write_all(format!("{}\n", markdown.trim_end()).as_bytes())
        .map_err(err)?;
    f.write_all(b"\n").map_err(err)
}

/// `8`, or `unlimited` for 0.
pub(crate) fn jobs_label(jobs: usize) -> String {
    if jobs == 0 {
        "unlimited".to_string()
    } else {
        jobs.to_string()
    }
}
