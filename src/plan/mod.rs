//! The planner: a resolved profile becomes a DAG of tasks, shaped by a strategy.

use serde::{Deserialize, Serialize};

use crate::engine::Class;

/// The four phases of the seeds' setup, kept as a label on every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Build,
    Cluster,
    Load,
    Deploy,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Build, Phase::Cluster, Phase::Load, Phase::Deploy];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Cluster => "cluster",
            Phase::Load => "load",
            Phase::Deploy => "deploy",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a task does; also the key for default duration estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Build an image (Docker API).
    Build,
    /// Run a host command that writes files (a host-built binary).
    Binary,
    /// Ensure a third-party image is present locally.
    Pull,
    /// Create or reuse the cluster.
    Cluster,
    /// Apply the CRDs.
    Crds,
    /// Wait for CRDs to be Established.
    Established,
    /// Apply namespaces, ConfigMaps, Secrets, TLS material and RBAC in one batch.
    Config,
    /// Stream an image into every node that lacks it.
    Load,
    /// Create or reuse the local registry (`cluster.registry: local`).
    Registry,
    /// Push an image to the local registry once; the nodes pull it.
    Push,
    /// Apply a component's manifests.
    Deploy,
    /// Apply a hook (a Job) and wait for it to complete.
    Hook,
    /// Read a value produced at run time (a token, a field, a Job's output).
    Value,
    /// A step after what it follows is ready (apply CRs, patch status, call, restart, command).
    Step,
    /// A `config.secrets` entry with `after:`: applied (with its ServiceAccount links) once
    /// what it follows is ready, not in the config batch.
    Secret,
    /// The single wait point: every workload ready.
    Wait,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Build => "build",
            TaskKind::Binary => "binary",
            TaskKind::Pull => "pull",
            TaskKind::Cluster => "cluster",
            TaskKind::Crds => "crds",
            TaskKind::Established => "established",
            TaskKind::Config => "config",
            TaskKind::Load => "load",
            TaskKind::Registry => "registry",
            TaskKind::Push => "push",
            TaskKind::Deploy => "deploy",
            TaskKind::Hook => "hook",
            TaskKind::Value => "value",
            TaskKind::Step => "step",
            TaskKind::Secret => "secret",
            TaskKind::Wait => "wait",
        }
    }
    pub fn phase(self) -> Phase {
        match self {
            TaskKind::Build | TaskKind::Binary | TaskKind::Pull => Phase::Build,
            TaskKind::Cluster
            | TaskKind::Crds
            | TaskKind::Established
            | TaskKind::Config
            | TaskKind::Registry => Phase::Cluster,
            TaskKind::Load | TaskKind::Push => Phase::Load,
            TaskKind::Deploy
            | TaskKind::Hook
            | TaskKind::Value
            | TaskKind::Step
            | TaskKind::Secret
            | TaskKind::Wait => Phase::Deploy,
        }
    }
    pub fn class(self) -> Class {
        match self {
            TaskKind::Build | TaskKind::Binary => Class::Cpu,
            TaskKind::Load
            | TaskKind::Pull
            | TaskKind::Cluster
            | TaskKind::Registry
            | TaskKind::Push => Class::Io,
            _ => Class::Api,
        }
    }
}

mod build;
pub mod estimate;
pub mod render;
pub mod strategy;
pub mod uses;

pub use build::{
    CONFIG, PlanError, PlanOptions, late_secret_read, nodes_pull, secret_id, tasks_for, unit_id,
};
pub use estimate::Estimates;
pub use strategy::Strategy;

use crate::engine::{Limits, simulate};

/// One task of the plan, before it is given work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedTask {
    /// Stable and readable: `build:datastorage`, `deploy:postgresql`, `wait:ready`.
    pub id: String,
    pub kind: TaskKind,
    pub phase: Phase,
    pub deps: Vec<String>,
    /// The image, component or hook the task is about.
    #[serde(skip)]
    pub subject: Option<String>,
}

/// A named port (`ports:`) as `kprov plan` shows it: its NodePort and the host port the
/// cluster will publish it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedPort {
    #[serde(skip)]
    pub name: String,
    pub node_port: u16,
    /// `None`: a free host port, chosen when the cluster is created.
    pub host_port: Option<u16>,
    /// `profile` (the entry's hostPort), `kind config` (the user's kind config maps the
    /// NodePort to it) or `free`.
    pub from: &'static str,
}

/// A plan: the strategy's task graph, with estimates, critical path and priorities.
#[derive(Debug, Clone)]
pub struct Plan {
    pub service: String,
    pub strategy: Strategy,
    pub limits: Limits,
    /// The tasks, in a topological order, with their own dependencies (what the run record
    /// keeps, so a replay can apply another strategy).
    pub tasks: Vec<PlannedTask>,
    /// What each task runs after under this strategy: its own deps plus the barriers.
    pub deps: Vec<Vec<String>>,
    pub estimates_ms: Vec<u64>,
    /// Each task's own estimate plus the longest estimated path after it.
    pub priorities: Vec<u64>,
    pub critical_path: Vec<String>,
    pub estimated_makespan_ms: u64,
    /// What this host leaves out of the profile (a Secret skipped for an absent optional
    /// host file), one sentence each; set by the caller, shown by `kprov plan` and `up`.
    pub notes: Vec<String>,
    /// The named ports and their host ports; set by the caller, shown by `kprov plan`.
    pub ports: Vec<PlannedPort>,
}

impl Plan {
    /// Shape `tasks` (the DAG as the profile defines it) by `strategy`, and estimate it.
    pub fn new(
        service: &str,
        tasks: Vec<PlannedTask>,
        strategy: Strategy,
        limits: Limits,
        estimates: &Estimates,
    ) -> Plan {
        let limits = strategy.limits(limits);
        let index: std::collections::HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| t.deps.iter().map(|d| index[d.as_str()]).collect())
            .collect();
        let phases: Vec<Phase> = tasks.iter().map(|t| t.phase).collect();
        let deps = strategy::barrier_edges(&phases, &deps, strategy);
        let estimates_ms: Vec<u64> = tasks
            .iter()
            .map(|t| estimates.for_task(&t.id, t.kind))
            .collect();
        let priorities = match strategy {
            Strategy::Sequential => vec![0; tasks.len()],
            _ => simulate::remaining_critical_path(&deps, &estimates_ms)
                .expect("the planner builds acyclic graphs"),
        };
        let sim: Vec<simulate::SimTask> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| simulate::SimTask {
                deps: deps[i].clone(),
                duration_ms: estimates_ms[i],
                class: t.kind.class(),
                priority: priorities[i],
            })
            .collect();
        let schedule =
            simulate::simulate(&sim, &limits).expect("the planner builds acyclic graphs");
        let (path, _) = simulate::critical_path(&deps, &estimates_ms).expect("acyclic");
        let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        let shaped = deps
            .iter()
            .map(|d| d.iter().map(|&j| ids[j].clone()).collect())
            .collect();
        Plan {
            service: service.to_string(),
            strategy,
            limits,
            tasks,
            deps: shaped,
            estimates_ms,
            priorities,
            critical_path: path.into_iter().map(|i| ids[i].clone()).collect(),
            estimated_makespan_ms: schedule.makespan_ms,
            notes: Vec::new(),
            ports: Vec::new(),
        }
    }
}
