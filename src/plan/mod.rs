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
    /// Apply a component's manifests.
    Deploy,
    /// Apply a hook (a Job) and wait for it to complete.
    Hook,
    /// The single wait point: every workload ready.
    Wait,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Build => "build",
            TaskKind::Pull => "pull",
            TaskKind::Cluster => "cluster",
            TaskKind::Crds => "crds",
            TaskKind::Established => "established",
            TaskKind::Config => "config",
            TaskKind::Load => "load",
            TaskKind::Deploy => "deploy",
            TaskKind::Hook => "hook",
            TaskKind::Wait => "wait",
        }
    }
    pub fn phase(self) -> Phase {
        match self {
            TaskKind::Build | TaskKind::Pull => Phase::Build,
            TaskKind::Cluster | TaskKind::Crds | TaskKind::Established | TaskKind::Config => Phase::Cluster,
            TaskKind::Load => Phase::Load,
            TaskKind::Deploy | TaskKind::Hook | TaskKind::Wait => Phase::Deploy,
        }
    }
    pub fn class(self) -> Class {
        match self {
            TaskKind::Build => Class::Cpu,
            TaskKind::Load | TaskKind::Pull | TaskKind::Cluster => Class::Io,
            _ => Class::Api,
        }
    }
}
