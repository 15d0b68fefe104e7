//! The console reporter: a live view on a terminal (running tasks with elapsed time, counts
//! per phase, an overall bar), or one plain line per event.

use std::{collections::HashMap, io::Write, sync::Arc, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::TaskInfo;
use crate::engine::{Event, EventKind, TaskOutcome};
use crate::plan::Phase;
use crate::report::fmt::duration as human;

pub struct Console {
    out: Box<dyn Write + Send>,
    live: Option<Live>,
    info: TaskInfo,
    verbose: bool,
    started: HashMap<Arc<str>, Duration>,
    done: HashMap<Phase, usize>,
    total: HashMap<Phase, usize>,
}

struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<Arc<str>, ProgressBar>,
}

fn mark(outcome: TaskOutcome) -> &'static str {
    match outcome {
        TaskOutcome::Succeeded => "done",
        TaskOutcome::Cached => "cached",
        TaskOutcome::Restored => "restored",
        TaskOutcome::Failed => "FAILED",
        TaskOutcome::Skipped => "skipped",
    }
}

impl Console {
    /// A console writing plain lines to `out` (stderr in real use), or the live view.
    pub fn new(live: bool, info: TaskInfo, verbose: bool, out: Box<dyn Write + Send>) -> Console {
        let mut total = HashMap::new();
        for p in info.phases.values() {
            *total.entry(*p).or_insert(0) += 1;
        }
        let live = live.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            let overall = multi.add(ProgressBar::new(info.phases.len() as u64));
            overall.set_style(
                ProgressStyle::with_template("{elapsed:>5} [{bar:30}] {pos}/{len} tasks  {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(250));
            Live {
                multi,
                overall,
                running: HashMap::new(),
            }
        });
        let mut c = Console {
            out,
            live,
            info,
            verbose,
            started: HashMap::new(),
            done: HashMap::new(),
            total,
        };
        c.update_counts();
        c
    }

    fn line(&mut self, at: Duration, text: String) {
        let text = format!("{:>7}  {text}", human(at.as_millis() as u64));
        match &self.live {
            Some(l) => l.multi.suspend(|| eprintln!("{text}")),
            None => {
                let _ = writeln!(self.out, "{text}");
            }
        }
    }

    fn update_counts(&mut self) {
        let Some(l) = &self.live else { return };
        let parts: Vec<String> = Phase::ALL
            .iter()
            .filter(|p| self.total.contains_key(p))
            .map(|p| format!("{p} {}/{}", self.done.get(p).unwrap_or(&0), self.total[p]))
            .collect();
        l.overall.set_message(parts.join(" · "));
    }

    fn count(&mut self, id: &Arc<str>) {
        if let Some(p) = self.info.phases.get(id) {
            *self.done.entry(*p).or_insert(0) += 1;
        }
        if let Some(l) = &self.live {
            l.overall.inc(1);
        }
        self.update_counts();
    }

    pub fn event(&mut self, e: &Event) {
        match &e.kind {
            EventKind::RunStarted { tasks } => {
                if self.live.is_none() {
                    self.line(e.at, format!("run started: {tasks} tasks"));
                }
            }
            EventKind::TaskReady { .. } => {}
            EventKind::TaskStarted { id, attempt } => {
                self.started.insert(id.clone(), e.at);
                match &mut self.live {
                    Some(l) => {
                        let bar = l
                            .multi
                            .insert_before(&l.overall, ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template(
                                "  {spinner} {prefix:<28} {elapsed:>4}  {wide_msg}",
                            )
                            .expect("static template"),
                        );
                        bar.set_prefix(id.to_string());
                        bar.enable_steady_tick(Duration::from_millis(120));
                        l.running.insert(id.clone(), bar);
                    }
                    None => {
                        let retry = if *attempt > 1 {
                            format!(" (attempt {attempt})")
                        } else {
                            String::new()
                        };
                        self.line(e.at, format!("start    {id}{retry}"));
                    }
                }
            }
            EventKind::TaskProgress { id, message } => match &self.live {
                Some(l) => {
                    if let Some(bar) = l.running.get(id) {
                        bar.set_message(message.lines().last().unwrap_or_default().to_string());
                    }
                }
                None if self.verbose => self.line(e.at, format!("         {id}: {message}")),
                None => {}
            },
            EventKind::TaskRetrying {
                id,
                attempt,
                error,
                delay,
            } => {
                self.line(
                    e.at,
                    format!(
                        "retry    {id} after attempt {attempt} in {}: {error}",
                        human(delay.as_millis() as u64)
                    ),
                );
            }
            EventKind::TaskFinished {
                id, outcome, error, ..
            } => {
                if let Some(l) = &mut self.live
                    && let Some(bar) = l.running.remove(id)
                {
                    bar.finish_and_clear();
                    l.multi.remove(&bar);
                }
                let took = self
                    .started
                    .get(id)
                    .map(|s| format!(" in {}", human(e.at.saturating_sub(*s).as_millis() as u64)))
                    .unwrap_or_default();
                let mut text = format!("{:<8} {id}{took}", mark(*outcome));
                if let Some(err) = error {
                    text.push_str(&format!("\n{}", indent(err)));
                }
                self.line(e.at, text);
                self.count(id);
            }
            EventKind::TaskSkipped { id, reason } => {
                self.line(e.at, format!("skipped  {id}: {reason}"));
                self.count(id);
            }
            EventKind::RunFinished { .. } => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(l) = self.live.take() {
            for (_, bar) in l.running {
                bar.finish_and_clear();
            }
            l.overall.finish_and_clear();
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("           {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::engine::{CancelReason, SkipReason};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn ev(ms: u64, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(ms),
            kind,
        }
    }

    #[test]
    fn plain_output_is_one_line_per_event() {
        let buf = Shared::default();
        let phases = [
            ("build:api", Phase::Build),
            ("cluster:create", Phase::Cluster),
            ("load:api", Phase::Load),
            ("deploy:api", Phase::Deploy),
        ];
        let info = TaskInfo {
            phases: phases
                .iter()
                .map(|(id, p)| (Arc::<str>::from(*id), *p))
                .collect(),
        };
        let mut c = Console::new(false, info, false, Box::new(buf.clone()));
        let id = |s: &str| Arc::<str>::from(s);
        for e in [
            ev(0, EventKind::RunStarted { tasks: 4 }),
            ev(
                0,
                EventKind::TaskStarted {
                    id: id("build:api"),
                    attempt: 1,
                },
            ),
            ev(
                1,
                EventKind::TaskStarted {
                    id: id("cluster:create"),
                    attempt: 1,
                },
            ),
            ev(
                5,
                EventKind::TaskProgress {
                    id: id("build:api"),
                    message: "Step 1/3".into(),
                },
            ),
            ev(
                1200,
                EventKind::TaskFinished {
                    id: id("build:api"),
                    outcome: TaskOutcome::Cached,
                    attempts: 1,
                    error: None,
                },
            ),
            ev(
                3000,
                EventKind::TaskRetrying {
                    id: id("cluster:create"),
                    attempt: 1,
                    error: "crun: unknown version specified".into(),
                    delay: Duration::from_secs(5),
                },
            ),
            ev(
                8000,
                EventKind::TaskStarted {
                    id: id("cluster:create"),
                    attempt: 2,
                },
            ),
            ev(
                9500,
                EventKind::TaskFinished {
                    id: id("cluster:create"),
                    outcome: TaskOutcome::Failed,
                    attempts: 2,
                    error: Some("create cluster x: boom\nlast line".into()),
                },
            ),
            ev(
                9500,
                EventKind::TaskSkipped {
                    id: id("load:api"),
                    reason: SkipReason::DependencyFailed {
                        dependency: id("cluster:create"),
                    },
                },
            ),
            ev(
                9500,
                EventKind::TaskSkipped {
                    id: id("deploy:api"),
                    reason: SkipReason::Cancelled(CancelReason::TaskFailed),
                },
            ),
            ev(
                9501,
                EventKind::RunFinished {
                    cancelled: Some(CancelReason::TaskFailed),
                },
            ),
        ] {
            c.event(&e);
        }
        c.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        insta::with_settings!({filters => vec![(r"\d+(\.\d+)?(ms|s)\b", "[time]"), (r"\d+m\d+s", "[time]")]}, {
            insta::assert_snapshot!(text);
        });
    }
}
