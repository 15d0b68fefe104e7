//! The task engine: a sealed DAG of tasks, run under concurrency limits, emitting events.
//!
//! The engine knows nothing of Docker or Kubernetes: a task is an id, its dependencies, a
//! resource class and a [`Work`] to run. Failure is data (a [`TaskOutcome`]); only the
//! engine's own breakage is an error.

mod event;
mod graph;
mod run;
pub mod simulate;

pub use event::{CancelReason, Event, EventKind, SkipReason, TaskOutcome};
pub use graph::{DagError, Graph, GraphBuilder, GraphError, TaskDef, topological_order};
pub use run::{CANCEL_GRACE, Limits, RunOptions, RunSummary, TaskResult, run};

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// What a task needs of the machine; each class has its own concurrency limit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// CPU-heavy work such as image builds: limited by `--jobs`.
    Cpu,
    /// Streaming and disk work such as image loads.
    Io,
    /// API calls and waits: cheap, mostly idle.
    Api,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Cpu, Class::Io, Class::Api];
    pub(crate) const COUNT: usize = Class::ALL.len();

    /// A dense index (0..COUNT) for per-class arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Cpu => "cpu",
            Class::Io => "io",
            Class::Api => "api",
        })
    }
}

/// How a successful task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The task did its work.
    Ran,
    /// The work was already done (image cached, already loaded): nothing was changed.
    Cached,
    /// The result was brought back from a cache kept outside this machine's state (an image
    /// loaded from an archive instead of built): cheaper than running, not free.
    Restored,
}

/// Why a task failed. `transient` errors are retried under the task's retry policy.
#[derive(Debug, Clone)]
pub struct TaskError {
    pub message: String,
    pub transient: bool,
}

impl TaskError {
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            transient: false,
        }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            transient: true,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(e: E) -> Self {
        // Keep the whole chain: the user reads it as the task's failure.
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        TaskError::fatal(message)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The work of one task. Implementations must return promptly once `ctx.cancel` fires.
pub trait Work: Send + Sync {
    fn run<'a>(&'a self, ctx: &'a TaskCtx) -> BoxFuture<'a, Result<Done, TaskError>>;
}

/// Any async closure `Fn(&TaskCtx) -> Future<Result<Done, TaskError>>` is a `Work`.
pub struct FnWork<F>(pub F);

impl<F> FnWork<F>
where
    F: for<'a> Fn(&'a TaskCtx) -> BoxFuture<'a, Result<Done, TaskError>> + Send + Sync,
{
    /// Wraps a closure; going through this bound lets the compiler infer the closure's
    /// higher-ranked signature (`FnWork(|ctx| ...)` alone often does not).
    pub fn new(f: F) -> Self {
        FnWork(f)
    }
}

impl<F> Work for FnWork<F>
where
    F: for<'a> Fn(&'a TaskCtx) -> BoxFuture<'a, Result<Done, TaskError>> + Send + Sync,
{
    fn run<'a>(&'a self, ctx: &'a TaskCtx) -> BoxFuture<'a, Result<Done, TaskError>> {
        (self.0)(ctx)
    }
}

/// Bounded retries with exponential backoff, for errors a task marks transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// The delay before attempt `n + 1` after attempt `n` (1-based) failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::NONE
    }
}

/// What a running task gets from the engine.
pub struct TaskCtx {
    pub id: Arc<str>,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Fires on fail-fast, Ctrl-C, the global timeout or this task's own timeout.
    pub cancel: CancellationToken,
    progress: tokio::sync::mpsc::UnboundedSender<Event>,
    clock: tokio::time::Instant,
}

impl TaskCtx {
    #[doc(hidden)]
    pub fn new(
        id: Arc<str>,
        attempt: u32,
        cancel: CancellationToken,
        progress: tokio::sync::mpsc::UnboundedSender<Event>,
        clock: tokio::time::Instant,
    ) -> Self {
        TaskCtx {
            id,
            attempt,
            cancel,
            progress,
            clock,
        }
    }

    /// Report progress (one line of build output, "node x: imported"...).
    pub fn progress(&self, message: impl Into<String>) {
        let _ = self.progress.send(Event {
            at: self.clock.elapsed(),
            kind: EventKind::TaskProgress {
                id: self.id.clone(),
                message: message.into(),
            },
        });
    }
}
