//! One function per command. Each returns an exit code; errors print a headline and a
//! `Caused by:` line per source.

use std::collections::BTreeMap;

use clap::CommandFactory;

use super::args::{
    Cli, Command, Global, ImageArgs, PlanArgs, ProfileArgs, RegistryPull, ValidateArgs,
};
use super::exit;
use super::out::{self, say};
use crate::engine::{Class, Limits};
use crate::plan::{self, Estimates, Plan, PlanOptions, PlannedTask, Strategy};
use crate::profile::sources::{ImageSources, Registry};
use crate::profile::{self, Profile, ProfileErrors};
use crate::record::collect;
use crate::record::store::{RunRef, StateDir};
use crate::report;

pub async fn dispatch(cli: Cli) -> i32 {
    let g = &cli.global;
    match cli.command {
        Command::Services => services(g),
        Command::Validate(a) => validate(g, &a),
        Command::Plan(a) => plan_cmd(g, &a),
        Command::Render(a) => super::render::render_cmd(g, &a).await,
        Command::Profile(a) => profile_cmd(g, &a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kprov", &mut script);
            print(&String::from_utf8_lossy(&script), exit::SUCCESS)
        }
        Command::Up(a) => super::up::up(g, a).await,
        Command::Down(a) => super::up::down(g, &a).await,
        Command::Status(a) => super::up::status(g, &a).await,
        Command::Coverage(a) => super::up::coverage(g, &a).await,
        Command::Cache(a) => super::cache::cache_cmd(g, &a).await,
    }
}

/// Print an error with its chain, the way every command reports failure.
pub fn report_error(e: &anyhow::Error) {
    say!("error: {e}");
    for cause in e.chain().skip(1) {
        say!("  Caused by: {cause}");
    }
}

fn print_profile_errors(e: &ProfileErrors) {
    say!("error: {e}");
}

/// Write a command's output, then end with `code` (also when the reader closed the pipe).
pub fn print(text: &str, code: i32) -> i32 {
    match out::stdout(text) {
        Ok(_) => code,
        Err(failed) => failed,
    }
}

/// Load and validate a profile; on any problem print them all.
pub fn load_valid(g: &Global, service: &str) -> Result<Profile, i32> {
    profile::load_checked(&g.profiles, service, &g.source).map_err(|e| {
        print_profile_errors(&e);
        exit::USAGE
    })
}

/// A valid profile with the command line's image sources applied (`--image`,
/// `--image-registry`); every conflict is printed, and the exit code returned.
pub fn load_for_run(
    g: &Global,
    service: &str,
    images: &ImageArgs,
    existing_cluster: bool,
) -> Result<Profile, i32> {
    let mut profile = load_valid(g, service)?;
    let sources = ImageSources {
        local: images.local.clone(),
        registry: images.image_registry.as_ref().map(|registry| Registry {
            registry: registry.clone(),
            tag: images.image_tag.clone().unwrap_or_default(),
            nodes_pull: images.registry_pull == RegistryPull::Nodes,
        }),
        existing_cluster,
    };
    profile::sources::supply(&mut profile, &sources).map_err(|errors| {
        for e in errors {
            say!("error: {e}");
        }
        exit::USAGE
    })?;
    Ok(profile)
}

fn services(g: &Global) -> i32 {
    match profile::find(&g.profiles) {
        Ok(found) if found.is_empty() => {
            say!("no profiles in {}", g.profiles.display());
            exit::SUCCESS
        }
        Ok(found) => {
            for (service, path) in found {
                let about = profile::load(&g.profiles, &service)
                    .ok()
                    .and_then(|p| p.spec.description)
                    .map(|d| format!("  {d}"))
                    .unwrap_or_default();
                let line = format!("{service:<28}{}{about}\n", path.display());
                match out::stdout(&line) {
                    Ok(out::Written::Done) => {}
                    Ok(out::Written::Closed) => break,
                    Err(code) => return code,
                }
            }
            exit::SUCCESS
        }
        Err(e) => {
            say!(
                "error: failed to read the profiles directory {}: {e}",
                g.profiles.display()
            );
            exit::USAGE
        }
    }
}

fn validate(g: &Global, a: &ValidateArgs) -> i32 {
    let services: Vec<String> = match &a.service {
        Some(s) => vec![s.clone()],
        None => match profile::find(&g.profiles) {
            Ok(found) => found.into_iter().map(|(s, _)| s).collect(),
            Err(e) => {
                say!(
                    "error: failed to read the profiles directory {}: {e}",
                    g.profiles.display()
                );
                return exit::USAGE;
            }
        },
    };
    let mut errors = Vec::new();
    for s in &services {
        match profile::load_checked(&g.profiles, s, &g.source) {
            Err(e) => errors.extend(e.0),
            // Cycles are found by the checks; the planner's own refusal is a last guard.
            Ok(p) => {
                let opts = PlanOptions {
                    source: g.source.clone(),
                    ..Default::default()
                };
                if let Err(e) = plan::tasks_for(&p, &opts) {
                    errors.push(profile::ProfileError {
                        file: p.path.clone(),
                        line: None,
                        column: None,
                        field: None,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    errors.dedup();
    if errors.is_empty() {
        let n = services.len();
        print(
            &format!("{n} profile{} valid\n", if n == 1 { "" } else { "s" }),
            exit::SUCCESS,
        )
    } else {
        print_profile_errors(&ProfileErrors(errors));
        exit::USAGE
    }
}

/// Default concurrency: builds by CPU count, loads a few at a time, API work bounded only
/// by the global limit.
pub fn limits(jobs: Option<usize>, build_jobs: Option<usize>) -> Limits {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut per_class = BTreeMap::new();
    per_class.insert(Class::Cpu, build_jobs.unwrap_or(cpus));
    per_class.insert(Class::Io, 4);
    Limits {
        jobs: jobs.unwrap_or((2 * cpus).max(8)),
        per_class,
    }
}

/// Estimates from this service's earlier runs, when there are any (each record read once).
/// Only the newest runs count: they reflect the current code and machine, and reading stays
/// cheap however many records pile up.
const ESTIMATE_RUNS: usize = 20;

pub fn estimates(g: &Global, profile: &Profile, tasks: &[PlannedTask]) -> Estimates {
    let service = profile.service.as_str();
    let store = StateDir::new(&g.state).store();
    let runs: Vec<_> = store
        .list()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .filter(|e| e.service() == Some(service))
        .take(ESTIMATE_RUNS)
        .filter_map(|e| crate::record::store::read_record(&e.path).ok())
        .collect();
    let sizes = plan::estimate::sizes(profile, &g.source, tasks);
    Estimates::from_runs(&runs).with_sizes(&sizes, tasks)
}

/// How an estimate stands: `~16s (no earlier runs)`, `16s (9 of 12 tasks measured)`, `16s`.
pub fn estimate_note(plan: &Plan, est: &Estimates) -> String {
    let total = plan.tasks.len();
    let measured = plan.tasks.iter().filter(|t| est.is_measured(&t.id)).count();
    let ms = crate::report::fmt::duration(plan.estimated_makespan_ms);
    match measured {
        0 => format!("~{ms} (no earlier runs)"),
        m if m < total => format!("{ms} ({m} of {total} tasks measured before)"),
        _ => ms,
    }
}

fn plan_cmd(g: &Global, a: &PlanArgs) -> i32 {
    let profile = match load_for_run(g, &a.service.service, &a.images, false) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let tasks = match plan::tasks_for(
        &profile,
        &PlanOptions {
            source: g.source.clone(),
            ..Default::default()
        },
    ) {
        Ok(t) => t,
        Err(e) => {
            say!("error: {}: {e}", profile.path.display());
            return exit::USAGE;
        }
    };
    let est = estimates(g, &profile, &tasks);
    let lim = limits(a.schedule.jobs, a.schedule.build_jobs);
    let mut plan = Plan::new(
        &profile.service,
        tasks.clone(),
        a.schedule.strategy,
        lim.clone(),
        &est,
    );
    plan.notes = crate::profile::secrets::notes(&profile, &g.source);
    plan.ports = match crate::provision::render::planned_ports(&profile, &g.source) {
        Ok(p) => p,
        Err(e) => {
            say!("error: {}: {e}", profile.path.display());
            return exit::USAGE;
        }
    };
    let others: Vec<(&str, u64)> = [Strategy::Dag, Strategy::Hybrid, Strategy::Sequential]
        .into_iter()
        .filter(|s| *s != a.schedule.strategy)
        .map(|s| {
            (
                s.as_str(),
                Plan::new(&profile.service, tasks.clone(), s, lim.clone(), &est)
                    .estimated_makespan_ms,
            )
        })
        .collect();
    print(
        &plan::render::render(&plan, a.format, &others),
        exit::SUCCESS,
    )
}

fn profile_cmd(g: &Global, a: &ProfileArgs) -> i32 {
    let result = (|| -> anyhow::Result<String> {
        let store = StateDir::new(&g.state).store();
        let format: report::Format = a.format.parse().map_err(anyhow::Error::msg)?;
        if !a.merge.is_empty() {
            let out = merge(&a.merge, format)?;
            step_summary(format, &out)?;
            return Ok(out);
        }
        let what = match (&a.service, a.run.as_str()) {
            (Some(s), "latest") => RunRef::Latest {
                service: Some(s.clone()),
            },
            _ => RunRef::parse(&a.run),
        };
        let (_, run) = store.load(&what)?;
        let out = if let Some(other) = &a.compare {
            let (_, base) = store.load(&RunRef::parse(other))?;
            report::compare(&base, &run, format)?
        } else if let Some(strategy) = a.what_if {
            report::what_if(&run, strategy, a.jobs, format)?
        } else {
            report::render(&run, format, &report::Options::default())?
        };
        step_summary(format, &out)?;
        Ok(out)
    })();
    match result {
        Ok(out) => print(&out, exit::SUCCESS),
        Err(e) => {
            report_error(&e);
            exit::USAGE
        }
    }
}

/// A Markdown report, in CI: also appended to the job summary.
fn step_summary(format: report::Format, out: &str) -> anyhow::Result<()> {
    if format == report::Format::Markdown
        && let Some(path) = report::step_summary_path()
    {
        report::append_step_summary(&path, out)?;
    }
    Ok(())
}

/// `kprov profile --merge PATH...`: the records found, each run once, as one report; what was
/// skipped is said on stderr.
fn merge(paths: &[std::path::PathBuf], format: report::Format) -> anyhow::Result<String> {
    let found = collect::collect(paths)?;
    for warning in &found.warnings {
        say!("warning: {warning}");
    }
    Ok(report::merge(&found.records, format)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_says_when_no_run_is_behind_it() {
        let profile = profile::load(std::path::Path::new("profiles"), "demo").unwrap();
        let tasks = plan::tasks_for(&profile, &PlanOptions::default()).unwrap();
        let est = Estimates::default();
        let plan = Plan::new("demo", tasks, Strategy::Dag, limits(Some(8), Some(2)), &est);
        let note = estimate_note(&plan, &est);
        assert!(
            note.starts_with('~') && note.ends_with(" (no earlier runs)"),
            "{note}"
        );
    }
}
