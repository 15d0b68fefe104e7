// STUB: replaced by the engine implementation.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{CancelReason, Class, Event, Graph, SkipReason, TaskOutcome};

/// Concurrency limits: a global cap and optional per-class caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub jobs: usize,
    pub per_class: BTreeMap<Class, usize>,
}

pub struct RunOptions {
    pub limits: Limits,
    /// Go on with independent tasks after a failure.
    pub keep_going: bool,
    /// Global deadline for the whole run.
    pub timeout: Option<Duration>,
    /// Cancelled from outside (Ctrl-C): the run stops with [`CancelReason::Interrupted`].
    pub interrupt: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct TaskResult {
    pub id: Arc<str>,
    pub ready: Option<Duration>,
    pub start: Option<Duration>,
    pub end: Option<Duration>,
    pub outcome: TaskOutcome,
    pub attempts: u32,
    pub error: Option<String>,
    pub skip: Option<SkipReason>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    /// In the graph's insertion order.
    pub tasks: Vec<TaskResult>,
    pub makespan: Duration,
    pub cancelled: Option<CancelReason>,
}

pub async fn run(_graph: Graph, _opts: RunOptions, _events: UnboundedSender<Event>) -> RunSummary {
    todo!("engine")
}
