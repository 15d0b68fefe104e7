//! The run record: what `kprov up` writes to `<state>/runs/<run-id>.json`, and what every
//! report is computed from. The schema is versioned; fields are only ever added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Class, TaskOutcome};
use crate::plan::Phase;

pub mod collect;
pub mod store;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    /// `<UTC timestamp>-<service>`, e.g. `20261123T004012Z-aianalysis`; sorts by time.
    pub run_id: String,
    pub kprov_version: String,
    pub service: String,
    /// dag | hybrid | sequential
    pub strategy: String,
    /// The global concurrency limit the run used (0 = unlimited).
    pub jobs: usize,
    /// Per-class caps the run used, beside `jobs` (0 = unlimited; a class without an entry is
    /// bounded by `jobs` only). Added in schema 1 with a default, so older records still read;
    /// `profile --what-if` needs it to replay the run faithfully.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_limits: BTreeMap<Class, usize>,
    pub host: HostFacts,
    /// RFC 3339 wall-clock time the run started (read once; all offsets are monotonic).
    pub started_at: String,
    pub makespan_ms: u64,
    /// succeeded | failed | interrupted | timed_out
    pub outcome: String,
    pub tasks: Vec<TaskRecord>,
    /// Files the run wrote on the host for its clients, by what they are (`caFile`: the CA
    /// that `config.tls.caFile` asked for).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// What `--image-cache` did beside the build tasks' `restored` outcomes: archives written
    /// (after their builds, overlapping the rest of the run), archives that could not be used,
    /// and evictions. Absent without `--image-cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_cache: Option<ImageCacheRecord>,
    /// The host files outside `--source` that `config.secrets` named (a registry login's
    /// `~/.config/containers/auth.json`): by digest, never their contents; an absent optional
    /// one with what became of its Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_files: Vec<HostFileRecord>,
}

/// A host file a Secret's key came from, as the run found it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFileRecord {
    /// `namespace/name` of the Secret.
    pub secret: String,
    pub key: String,
    /// The file, `~/` expanded.
    pub path: String,
    /// `sha256:<hex>` of its contents; absent when the file was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `read`, `absent: Secret skipped` or `absent: key left out`.
    pub outcome: String,
}

/// The image cache's side of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageCacheRecord {
    pub dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saved: Vec<SavedArchive>,
    /// Images not saved, and why (`already in the cache`, `another run is writing it`, an
    /// error), by image key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_saved: BTreeMap<String, String>,
    /// Archives that were there but could not be used (truncated, no metadata, refused by the
    /// engine), by image key, with what became of them; those images were built.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unusable: BTreeMap<String, String>,
    /// Input hashes of archives evicted to keep the directory under its cap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evicted: Vec<String>,
    /// How long saving went on after the run's last task ended (`kprov up` waits for it).
    #[serde(default)]
    pub after_run_ms: u64,
}

/// An archive a run wrote into the image cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedArchive {
    pub image: String,
    pub inputs: String,
    pub bytes: u64,
    /// Export and write, from its start.
    pub ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub cpus: usize,
    pub os: String,
    /// The container engine's version, e.g. "20.10.24", when one was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// Which engine that was: `docker`, or `podman` (its Docker-compatible API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    /// build | binary | pull | cluster | crds | established | config | load | registry |
    /// push | deploy | hook | value | step | secret | wait
    pub kind: String,
    pub phase: Phase,
    pub class: Class,
    /// The task's own dependencies (the DAG the profile defines), without the strategy's
    /// barriers: reports derive those from `strategy`, and `--what-if dag` of a hybrid run
    /// needs the edges the barriers would otherwise hide.
    pub deps: Vec<String>,
    /// Offsets from the run's start, in ms. `ready_ms` is when its dependencies were done;
    /// `start_ms`/`end_ms` are absent for a task that never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
    pub outcome: TaskOutcome,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// The planner's duration estimate for the task: its scheduling priority came from these,
    /// so `profile --what-if` replays make the engine's choices. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// For a build: the builder that made the image (`buildkit`, `classic`, `podman`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
}

impl TaskRecord {
    /// How long the task ran, when it ran.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.end_ms?.saturating_sub(self.start_ms?))
    }
    /// How long it waited for a slot after its dependencies were done.
    pub fn queue_ms(&self) -> Option<u64> {
        Some(self.start_ms?.saturating_sub(self.ready_ms?))
    }
}

/// What a run was, beyond its tasks: the facts a record starts with.
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub run_id: String,
    pub service: String,
    pub strategy: String,
    pub jobs: usize,
    pub host: HostFacts,
    pub started_at: String,
}

impl RunRecord {
    /// The record of a finished run: the plan's tasks with the engine's timings.
    pub fn from_run(
        meta: RunMeta,
        plan: &crate::plan::Plan,
        summary: &crate::engine::RunSummary,
    ) -> RunRecord {
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
        let tasks = plan
            .tasks
            .iter()
            .zip(&summary.tasks)
            .enumerate()
            .map(|(i, (t, r))| TaskRecord {
                id: t.id.clone(),
                kind: t.kind.as_str().to_string(),
                phase: t.phase,
                class: t.kind.class(),
                deps: t.deps.clone(),
                ready_ms: ms(r.ready),
                start_ms: ms(r.start),
                end_ms: ms(r.end),
                outcome: r.outcome,
                attempts: r.attempts,
                error: r.error.clone(),
                skip_reason: r.skip.as_ref().map(|s| s.to_string()),
                estimate_ms: plan.estimates_ms.get(i).copied(),
                builder: None,
            })
            .collect();
        let failed = summary
            .tasks
            .iter()
            .any(|t| t.outcome == TaskOutcome::Failed);
        let outcome = match summary.cancelled {
            Some(crate::engine::CancelReason::Interrupted) => "interrupted",
            Some(crate::engine::CancelReason::Timeout) => "timed_out",
            _ if failed => "failed",
            _ => "succeeded",
        };
        RunRecord {
            schema_version: SCHEMA_VERSION,
            run_id: meta.run_id,
            kprov_version: env!("CARGO_PKG_VERSION").to_string(),
            service: meta.service,
            strategy: meta.strategy,
            jobs: meta.jobs,
            class_limits: plan.limits.per_class.clone(),
            host: meta.host,
            started_at: meta.started_at,
            makespan_ms: summary.makespan.as_millis() as u64,
            outcome: outcome.to_string(),
            tasks,
            files: BTreeMap::new(),
            image_cache: None,
            host_files: Vec::new(),
        }
    }
}
