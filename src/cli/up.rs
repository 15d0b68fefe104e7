//! `kprov up`, `down`, `status`, `coverage`: the commands that touch Docker and Kubernetes.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::args::{CoverageArgs, DownArgs, Global, ServiceArg, UpArgs};
use super::commands::{estimate_note, estimates, limits, load_for_run, report_error};
use super::exit;
use super::out::say;
use crate::output::Mode;
use crate::plan::{self, Plan, PlanOptions};
use crate::provision::{self, ClusterLock, RunState, UpRequest};
use crate::record::store::StateDir;
use crate::report::fmt::duration as human;

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Ctrl-C and SIGTERM cancel the run; a second Ctrl-C exits at once.
fn watch_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        #[cfg(unix)]
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        say!("interrupted: cancelling running tasks (Ctrl-C again to exit at once)");
        token.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(exit::INTERRUPTED);
        }
    });
}

/// An exit code standing for a failure already reported to the user.
type Exit = i32;

async fn engine() -> Result<crate::adapters::docker::Engine, Exit> {
    provision::connect_engine().await.map_err(|e| {
        report_error(&e);
        exit::FAILURE
    })
}

fn lock(cluster: &str) -> Result<ClusterLock, Exit> {
    ClusterLock::acquire(cluster).map_err(|e| {
        say!("error: {e}");
        exit::FAILURE
    })
}

fn profile(g: &Global, service: &str) -> Result<crate::profile::Profile, Exit> {
    crate::profile::load(&g.profiles, service).map_err(|e| {
        say!("error: {e}");
        exit::USAGE
    })
}

/// A command's report, or its failure with its chain.
fn print_or_fail(result: anyhow::Result<String>) -> Exit {
    match result {
        Ok(text) => super::commands::print(&text, exit::SUCCESS),
        Err(e) => {
            report_error(&e);
            exit::FAILURE
        }
    }
}

pub async fn up(g: &Global, a: UpArgs) -> i32 {
    up_inner(g, a).await.unwrap_or_else(|code| code)
}

async fn up_inner(g: &Global, a: UpArgs) -> Result<Exit, Exit> {
    let existing = (a.kubeconfig.is_some() || a.context.is_some())
        .then(|| (a.kubeconfig.clone(), a.context.clone()));
    let (profile, plan, est) = planned(g, &a, existing.is_some())?;
    let cluster_name = profile.cluster_name();
    let _lock = lock(&cluster_name)?;
    let export_values = a.export_values.as_deref().map(absolute);
    if let Some(path) = &export_values {
        no_stale_values(path)?;
    }
    let engine = engine().await?;
    if existing.is_none()
        && let Err(e) = crate::tasks::cluster::kind_provider(&engine)
    {
        say!("error: {e}");
        return Err(exit::USAGE);
    }
    check_local_images(&engine, &profile).await?;
    let (run_id, started_at) = provision::run_id(&profile.service, std::time::SystemTime::now());
    let state = StateDir::new(absolute(&g.state));
    let log_dir = state.logs(&run_id);
    let coverdata = state.coverdata(&profile.service);
    for dir in [&log_dir, &coverdata] {
        std::fs::create_dir_all(dir).map_err(|e| {
            say!("error: failed to create {}: {e}", dir.display());
            exit::FAILURE
        })?;
    }
    let kubeconfig = crate::tasks::status::kubeconfig_of(&profile);
    let service = profile.service.clone();
    let req = UpRequest {
        profile,
        source: absolute(&g.source),
        coverage: a.coverage,
        reuse: a.reuse,
        no_cache: a.no_cache,
        existing,
        log_dir: log_dir.clone(),
        coverdata,
        kubeconfig,
        cache_dir: state.root().join("cache"),
        image_cache: a.image_cache.image_cache.as_ref().map(|dir| {
            crate::tasks::image_cache::ImageCache {
                dir: absolute(dir),
                max_bytes: a.image_cache.image_cache_max_size,
            }
        }),
    };
    let mode = Mode::detect(a.json);
    if mode != Mode::Json {
        say!(
            "kprov up {service}: {} tasks, strategy {}, jobs {}, estimated {} (run {run_id})",
            plan.tasks.len(),
            plan.strategy,
            plan.limits.jobs,
            estimate_note(&plan, &est)
        );
        for note in &plan.notes {
            say!("note: {note}");
        }
    }
    let interrupt = CancellationToken::new();
    watch_signals(interrupt.clone());
    let opts = provision::RunOptions {
        keep_going: a.keep_going,
        keep_on_failure: a.keep_on_failure,
        timeout: a.timeout,
        mode,
        verbose: g.verbose > 0,
        store_root: state.root().to_path_buf(),
        run_id,
        started_at,
        export_values,
    };
    let outcome = provision::run(&plan, RunState::new(req, engine), opts, interrupt).await;
    write_reports(&outcome.record, a.trace.as_deref());
    if mode != Mode::Json {
        print_summary(&outcome, a.export_values.as_deref(), &log_dir);
    }
    if let Some(Err(e)) = &outcome.exported {
        say!("error: {e}");
        return Ok(exit::FAILURE);
    }
    let failed = outcome
        .record
        .tasks
        .iter()
        .filter(|t| t.outcome == crate::engine::TaskOutcome::Failed)
        .count();
    Ok(match (outcome.cancelled, failed) {
        (Some(crate::engine::CancelReason::Interrupted), _) => exit::INTERRUPTED,
        (None, 0) => exit::SUCCESS,
        _ => exit::FAILURE,
    })
}

/// The service's profile, loaded for a run, its plan and the plan's estimates.
fn planned(
    g: &Global,
    a: &UpArgs,
    existing_cluster: bool,
) -> Result<(crate::profile::Profile, Plan, plan::Estimates), Exit> {
    let profile = load_for_run(g, &a.service.service, &a.images, existing_cluster)?;
    let tasks = plan::tasks_for(
        &profile,
        &PlanOptions {
            existing_cluster,
            source: g.source.clone(),
        },
    )
    .map_err(|e| {
        say!("error: {}: {e}", profile.path.display());
        exit::USAGE
    })?;
    let est = estimates(g, &profile, &tasks);
    let mut plan = Plan::new(
        &profile.service,
        tasks,
        a.schedule.strategy,
        limits(a.schedule.jobs, a.schedule.build_jobs),
        &est,
    );
    plan.notes = crate::profile::secrets::notes(&profile, &g.source);
    Ok((profile, plan, est))
}

/// The run's Perfetto trace (`--trace FILE`) and, in CI, its report on the job page; a
/// failure to write either is a warning.
fn write_reports(record: &crate::record::RunRecord, trace: Option<&Path>) {
    let render = |format| {
        crate::report::render(record, format, &crate::report::Options::default())
            .map_err(anyhow::Error::from)
    };
    if let Some(path) = trace {
        match render(crate::report::Format::Trace) {
            Ok(t) => {
                if let Err(e) = std::fs::write(path, t) {
                    say!("warning: failed to write the trace {}: {e}", path.display());
                }
            }
            Err(e) => say!("warning: failed to render the trace: {e}"),
        }
    }
    if let Some(path) = crate::report::step_summary_path() {
        let md = render(crate::report::Format::Markdown);
        if let Err(e) = md.and_then(|md| {
            crate::report::append_step_summary(&path, &md).map_err(anyhow::Error::from)
        }) {
            say!(
                "warning: failed to append to the job summary {}: {e}",
                path.display()
            );
        }
    }
}

/// What the run did, its failures, and where its record, values and logs are.
fn print_summary(outcome: &provision::UpOutcome, export_values: Option<&Path>, log_dir: &Path) {
    use crate::engine::TaskOutcome::*;
    let r = &outcome.record;
    let count = |o| r.tasks.iter().filter(|t| t.outcome == o).count();
    say!(
        "\n{} in {}: {} done, {} cached, {} restored, {} failed, {} skipped",
        r.outcome,
        human(r.makespan_ms),
        count(Succeeded),
        count(Cached),
        count(Restored),
        count(Failed),
        count(Skipped)
    );
    if let Some(c) = &r.image_cache {
        for line in image_cache_lines(c) {
            say!("{line}");
        }
    }
    for t in r.tasks.iter().filter(|t| t.outcome == Failed) {
        say!(
            "\nfailed: {}\n{}",
            t.id,
            t.error.as_deref().unwrap_or("(no message)")
        );
    }
    if let Some(note) = &outcome.cluster_note {
        say!("{note}");
    }
    if let (Some(Ok(names)), Some(path)) = (&outcome.exported, export_values) {
        say!("{}", exported_line(names, path));
    }
    if let Some(p) = &outcome.record_path {
        say!(
            "run record: {}  (see where the time went: kprov profile)",
            p.display()
        );
    }
    say!("logs: {}", log_dir.display());
}

/// `--export-values FILE` is this run's: a file left there by an earlier run goes before
/// anything starts, so that a failed run leaves none behind.
fn no_stale_values(path: &Path) -> Result<(), Exit> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            say!(
                "error: remove the earlier values file {}: {e}",
                path.display()
            );
            Err(exit::FAILURE)
        }
    }
}

/// What `--export-values` wrote: the names, never the values.
fn exported_line(names: &[String], path: &Path) -> String {
    if names.is_empty() {
        return format!(
            "values: {} holds none (the profile marks no run-time value `export: true`)",
            path.display()
        );
    }
    format!(
        "values: {} exported to {} ({})",
        names.len(),
        path.display(),
        names.join(", ")
    )
}

/// What the image cache did: archives written, unusable ones (a warning each), evictions.
fn image_cache_lines(c: &crate::record::ImageCacheRecord) -> Vec<String> {
    use crate::tasks::image_cache::size;
    let mut lines = Vec::new();
    for (image, why) in &c.unusable {
        lines.push(format!(
            "warning: image cache: {image}: {why}; it was built instead"
        ));
    }
    if !c.saved.is_empty() {
        let bytes: u64 = c.saved.iter().map(|s| s.bytes).sum();
        let images: Vec<&str> = c.saved.iter().map(|s| s.image.as_str()).collect();
        lines.push(format!(
            "image cache {}: saved {} ({}; {} after the last task)",
            c.dir,
            images.join(", "),
            size(bytes),
            human(c.after_run_ms)
        ));
    }
    for (image, why) in c.not_saved.iter().filter(|(_, w)| !is_expected_skip(w)) {
        lines.push(format!("warning: image cache: {image} not saved: {why}"));
    }
    if !c.evicted.is_empty() {
        lines.push(format!(
            "image cache {}: evicted {} archive(s) to stay under its size cap",
            c.dir,
            c.evicted.len()
        ));
    }
    lines
}

/// A save skipped because it was not needed (not a failure worth a warning).
fn is_expected_skip(why: &str) -> bool {
    use crate::tasks::image_cache::{SKIP_BEING_WRITTEN, SKIP_PRESENT};
    why == SKIP_PRESENT || why == SKIP_BEING_WRITTEN
}

/// Every `--image KEY=REF` must name an image the engine holds, before anything starts.
async fn check_local_images(
    engine: &crate::adapters::docker::Engine,
    profile: &crate::profile::Profile,
) -> Result<(), Exit> {
    let mut missing = 0;
    for (key, img) in &profile.spec.images {
        let Some(crate::profile::Supplied::Local(reference)) = &img.supplied else {
            continue;
        };
        match engine.inspect_image(reference).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                say!(
                    "error: --image {key}={reference}: the engine has no image {reference}                      (`docker images` lists what it has); nothing was started"
                );
                missing += 1;
            }
            Err(e) => {
                say!("error: --image {key}={reference}: {e}");
                missing += 1;
            }
        }
    }
    if missing == 0 {
        Ok(())
    } else {
        Err(exit::USAGE)
    }
}

/// The cluster to act on, and the kubeconfig its context was written to.
fn cluster_of(
    g: &Global,
    service: Option<&str>,
    cluster: Option<&str>,
) -> Result<(String, PathBuf), i32> {
    match (cluster, service) {
        (Some(c), _) => Ok((c.to_string(), crate::tasks::cluster::default_kubeconfig())),
        (None, Some(s)) => {
            profile(g, s).map(|p| (p.cluster_name(), crate::tasks::status::kubeconfig_of(&p)))
        }
        (None, None) => Err(exit::USAGE),
    }
}

pub async fn down(g: &Global, a: &DownArgs) -> i32 {
    down_inner(g, a).await.unwrap_or_else(|code| code)
}

async fn down_inner(g: &Global, a: &DownArgs) -> Result<Exit, Exit> {
    let (name, kubeconfig) = cluster_of(g, a.service.as_deref(), a.cluster.as_deref())?;
    let _lock = lock(&name)?;
    let engine = engine().await?;
    let kind = crate::adapters::kind::KindCli::find();
    let cancel = CancellationToken::new();
    match crate::tasks::cluster::delete_cluster_with(
        &engine,
        &name,
        Some(&kubeconfig),
        kind.as_ref(),
        &cancel,
    )
    .await
    {
        Ok(existed) => {
            say!(
                "{} cluster {name}",
                if existed { "deleted" } else { "there was no" }
            );
            Ok(exit::SUCCESS)
        }
        Err(e) => {
            report_error(&anyhow::anyhow!(e).context(format!("failed to delete cluster {name}")));
            Ok(exit::FAILURE)
        }
    }
}

pub async fn status(g: &Global, a: &ServiceArg) -> i32 {
    let run = async {
        let profile = profile(g, &a.service)?;
        let engine = engine().await?;
        Ok(print_or_fail(
            crate::tasks::status::status(&engine, &profile).await,
        ))
    };
    run.await.unwrap_or_else(|code: Exit| code)
}

pub async fn coverage(g: &Global, a: &CoverageArgs) -> i32 {
    let run = async {
        let profile = profile(g, &a.service.service)?;
        let engine = engine().await?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("coverdata").join(&profile.service));
        Ok(print_or_fail(
            crate::tasks::status::collect_coverage(&engine, &profile, &out).await,
        ))
    };
    run.await.unwrap_or_else(|code: Exit| code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ImageCacheRecord, SavedArchive};

    #[test]
    fn the_image_cache_summary_warns_of_unusable_archives_and_failed_saves_only() {
        let c = ImageCacheRecord {
            dir: "/ci/images".into(),
            saved: vec![SavedArchive {
                image: "api".into(),
                inputs: "ab".repeat(32),
                bytes: 3 << 20,
                ms: 900,
            }],
            not_saved: [
                (
                    "worker".to_string(),
                    crate::tasks::image_cache::SKIP_PRESENT.to_string(),
                ),
                (
                    "migrate".to_string(),
                    "export image x: the engine answered 500".to_string(),
                ),
            ]
            .into(),
            unusable: [(
                "api".to_string(),
                "/ci/images/x.tar: it has 10 bytes, not the 99 it was saved with: removed it"
                    .to_string(),
            )]
            .into(),
            evicted: vec!["cd".repeat(32)],
            after_run_ms: 1200,
        };
        assert_eq!(
            image_cache_lines(&c),
            [
                "warning: image cache: api: /ci/images/x.tar: it has 10 bytes, not the 99 it was \
                 saved with: removed it; it was built instead",
                "image cache /ci/images: saved api (3.0 MiB; 1.2s after the last task)",
                "warning: image cache: migrate not saved: export image x: the engine answered 500",
                "image cache /ci/images: evicted 1 archive(s) to stay under its size cap",
            ]
        );
    }
}
