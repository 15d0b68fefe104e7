//! `kprov up` as a library call: plan the profile, give every task its work, run the engine
//! with reporters attached, write the run record, and clean up after a failure.

mod lock;
pub mod render;
mod steps;
pub mod works;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

pub use lock::ClusterLock;
pub use works::{RunState, UpRequest, build_request};

use crate::adapters::docker::Engine;
use crate::engine::{self, CancelReason, GraphBuilder, RetryPolicy, TaskDef, TaskOutcome};
use crate::output::{self, Mode, TaskInfo};
use crate::plan::{Plan, TaskKind};
use crate::record::{HostFacts, RunMeta, RunRecord, store::Store};

/// How to run, beyond what to provision.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub keep_going: bool,
    pub keep_on_failure: bool,
    pub timeout: Option<Duration>,
    pub mode: Mode,
    pub verbose: bool,
    /// The state directory (`--state`): the record goes to its `runs/`.
    pub store_root: PathBuf,
    pub run_id: String,
    pub started_at: String,
    /// `--export-values`: where the profile's `export: true` run-time values go as JSON, once
    /// the run succeeded (0600, through a temp file and a rename).
    pub export_values: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug)]
pub struct UpOutcome {
    pub record: RunRecord,
    pub record_path: Option<PathBuf>,
    pub cancelled: Option<CancelReason>,
    /// What happened to a cluster this run created, after a failure.
    pub cluster_note: Option<String>,
    /// `--export-values` on a successful run: the values written (their names), or why not.
    pub exported: Option<Result<Vec<String>, String>>,
}

/// A compact, sortable, unique-enough run id: `20261123T004012.345Z-aianalysis`.
pub fn run_id(service: &str, now: std::time::SystemTime) -> (String, String) {
    let rfc = humantime::format_rfc3339_millis(now).to_string();
    let compact: String = rfc.chars().filter(|c| *c != '-' && *c != ':').collect();
    (format!("{compact}-{service}"), rfc)
}

fn retry_for(kind: TaskKind) -> RetryPolicy {
    match kind {
        // Docker daemon hiccups: one more try.
        TaskKind::Build | TaskKind::Pull | TaskKind::Load | TaskKind::Push => RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        },
        // The cluster task retries kind's known transient errors itself; API tasks retry per request.
        _ => RetryPolicy::NONE,
    }
}

fn timeout_for(kind: TaskKind) -> Option<Duration> {
    match kind {
        TaskKind::Build | TaskKind::Binary => Some(Duration::from_secs(30 * 60)),
        TaskKind::Cluster => Some(Duration::from_secs(10 * 60)),
        TaskKind::Load | TaskKind::Pull | TaskKind::Push => Some(Duration::from_secs(10 * 60)),
        TaskKind::Registry => Some(Duration::from_secs(2 * 60)),
        // Waits carry their own per-object deadlines and name what blocks them.
        _ => None,
    }
}

/// Run the plan. The caller holds the cluster lock and has connected the engine.
pub async fn run(
    plan: &Plan,
    state: RunState,
    opts: RunOptions,
    interrupt: CancellationToken,
) -> UpOutcome {
    let state = Arc::new(state);
    let graph = graph(plan, &state);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let info = TaskInfo {
        phases: plan
            .tasks
            .iter()
            .map(|t| (Arc::<str>::from(t.id.as_str()), t.phase))
            .collect(),
    };
    let reporter = tokio::spawn(output::report(rx, opts.mode, info, opts.verbose));
    let run_opts = engine::RunOptions {
        limits: plan.limits.clone(),
        keep_going: opts.keep_going,
        timeout: opts.timeout,
        interrupt,
    };
    let interrupted = run_opts.interrupt.clone();
    let summary = engine::run(graph, run_opts, tx).await;
    let _ = reporter.await;
    let image_cache = saves_finished(&state, &summary, &interrupted).await;
    let mut record = record_of(plan, &state, &opts, &summary).await;
    record.image_cache = image_cache;
    let failed = summary.cancelled.is_some()
        || summary
            .tasks
            .iter()
            .any(|t| t.outcome == TaskOutcome::Failed);
    let exported = opts
        .export_values
        .as_deref()
        .filter(|_| !failed)
        .map(|path| export_values(&state, path, &mut record));
    let record_path = match Store::in_state(&opts.store_root).save(&record) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: failed to write the run record: {e}");
            None
        }
    };
    let cluster_note = match failed {
        true => after_failure(&state, opts.keep_on_failure).await,
        false => None,
    };
    UpOutcome {
        record,
        record_path,
        cancelled: summary.cancelled,
        cluster_note,
        exported,
    }
}

/// The plan as the engine's graph: each task with its dependencies, class, priority, retries
/// and timeout.
fn graph(plan: &Plan, state: &Arc<RunState>) -> engine::Graph {
    let mut builder = GraphBuilder::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        let mut def = TaskDef::new(
            t.id.clone(),
            works::TaskWork {
                state: state.clone(),
                task: t.clone(),
            },
        )
        .with_deps(plan.deps[i].clone())
        .with_class(t.kind.class())
        .with_priority(plan.priorities[i])
        .with_retry(retry_for(t.kind));
        if let Some(d) = timeout_for(t.kind) {
            def = def.with_timeout(d);
        }
        builder.add(def);
    }
    builder.build().expect("the planner builds valid graphs")
}

/// Wait for the image cache saves the run started; an interrupted run does not wait for
/// them (their partial files go).
async fn saves_finished(
    state: &RunState,
    summary: &engine::RunSummary,
    interrupted: &CancellationToken,
) -> Option<crate::record::ImageCacheRecord> {
    if summary.cancelled == Some(CancelReason::Interrupted) || interrupted.is_cancelled() {
        state.save_cancel.cancel();
    }
    let saves = state.finish_saves();
    tokio::pin!(saves);
    tokio::select! {
        r = &mut saves => r,
        _ = interrupted.cancelled() => {
            state.save_cancel.cancel();
            saves.await
        }
    }
}

/// The run's record: the engine's summary with the host, the builders used, the host files
/// read and the CA file written.
async fn record_of(
    plan: &Plan,
    state: &RunState,
    opts: &RunOptions,
    summary: &engine::RunSummary,
) -> RunRecord {
    let host = HostFacts {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        engine_version: state.engine.version().await.ok(),
        engine: Some(state.engine.kind().as_str().to_string()),
    };
    let meta = RunMeta {
        run_id: opts.run_id.clone(),
        service: plan.service.clone(),
        strategy: plan.strategy.as_str().to_string(),
        jobs: plan.limits.jobs,
        host,
        started_at: opts.started_at.clone(),
    };
    let mut record = RunRecord::from_run(meta, plan, summary);
    let builders = state.builders();
    for t in &mut record.tasks {
        if let Some(image) = t.id.strip_prefix("build:") {
            t.builder = builders.get(image).cloned();
        }
    }
    record.host_files = std::mem::take(&mut *state.host_files.lock().expect("not poisoned"));
    if let Some(path) = state.ca_file.get() {
        record
            .files
            .insert("caFile".into(), path.display().to_string());
    }
    record
}

/// After a failed run: a cluster this run created is deleted (or kept under
/// `--keep-on-failure`), one that existed before is kept; what became of it.
async fn after_failure(state: &RunState, keep_on_failure: bool) -> Option<String> {
    // A cluster this run created: the cluster task's, or one kind made before a later step of
    // that task failed (or the task was dropped), which left no ClusterInfo behind.
    let created = state
        .cluster
        .get()
        .filter(|c| c.created)
        .map(|c| (c.name.clone(), c.kubeconfig.clone()))
        .or_else(|| {
            let name = state.req.profile.cluster_name();
            crate::tasks::cluster::created_by_this_process(&name).map(|k| (name, k))
        })
        .filter(|_| state.req.existing.is_none());
    let Some((name, kubeconfig)) = created else {
        return state
            .cluster
            .get()
            .map(|c| format!("kept cluster {} (it existed before this run)", c.name));
    };
    if keep_on_failure {
        // kind removes what a failed `kind create` made: only a cluster still there is kept.
        let there = crate::tasks::cluster::list_nodes(&state.engine, &name)
            .await
            .map_or(true, |nodes| !nodes.is_empty());
        return there.then(|| format!(
            "kept cluster {name} (created by this run; --keep-on-failure). Delete it with: kprov down --cluster {name}"
        ));
    }
    let kind = crate::adapters::kind::KindCli::find();
    let cancel = CancellationToken::new();
    let deleted = crate::tasks::cluster::delete_cluster_with(
        &state.engine,
        &name,
        Some(&kubeconfig),
        kind.as_ref(),
        &cancel,
    )
    .await;
    match deleted {
        Ok(true) => Some(format!(
            "deleted cluster {name} (created by this run; pass --keep-on-failure to keep it)"
        )),
        // kind had removed it already (a failed `kind create`); its context is gone too.
        Ok(false) => None,
        Err(e) => Some(format!(
            "failed to delete cluster {name} (created by this run): {e}"
        )),
    }
}

/// The run record's `files` key for the `--export-values` file.
pub const EXPORTED_VALUES: &str = "exportedValues";

/// Writes the profile's `export: true` run-time values as one JSON object (name → value, all
/// strings), 0600, atomically, and names the file in the record; the names written.
fn export_values(
    state: &RunState,
    path: &std::path::Path,
    record: &mut RunRecord,
) -> Result<Vec<String>, String> {
    let values = state.exported_values();
    let names = values.keys().cloned().collect();
    let mut text = serde_json::to_string_pretty(&values).expect("strings serialise");
    text.push('\n');
    works::write_private(path, text.as_bytes())
        .map_err(|e| format!("write the run-time values to {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    record.files.insert(EXPORTED_VALUES.into(), shown);
    Ok(names)
}

/// Connect to the container engine, with a hint when there is none.
pub async fn connect_engine() -> anyhow::Result<Engine> {
    Engine::connect().await.map_err(|e| {
        anyhow::anyhow!(e).context(
            "failed to reach a Docker engine (set DOCKER_HOST, or start one: scripts/docker-up)",
        )
    })
}
