use std::{sync::Arc, time::Duration};

/// One thing that happened during a run. `at` is monotonic time since the run started.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Duration,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    RunStarted {
        tasks: usize,
    },
    /// All dependencies are done; the task waits for a slot.
    TaskReady {
        id: Arc<str>,
    },
    TaskStarted {
        id: Arc<str>,
        attempt: u32,
    },
    TaskProgress {
        id: Arc<str>,
        message: String,
    },
    /// A transient failure; the task runs again after `delay`.
    TaskRetrying {
        id: Arc<str>,
        attempt: u32,
        error: String,
        delay: Duration,
    },
    TaskFinished {
        id: Arc<str>,
        outcome: TaskOutcome,
        attempts: u32,
        error: Option<String>,
    },
    TaskSkipped {
        id: Arc<str>,
        reason: SkipReason,
    },
    RunFinished {
        cancelled: Option<CancelReason>,
    },
}

/// How a task ended. Failure is data, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    Succeeded,
    /// Nothing to do: the work was already done.
    Cached,
    /// Its result was restored from a cache instead of being made (an image loaded from an
    /// `--image-cache` archive instead of built).
    Restored,
    Failed,
    /// Never started (see [`SkipReason`]).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A dependency failed or was skipped.
    DependencyFailed { dependency: Arc<str> },
    /// The run was cancelled before this task started.
    Cancelled(CancelReason),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::DependencyFailed { dependency } => {
                write!(f, "dependency {dependency} did not succeed")
            }
            SkipReason::Cancelled(r) => write!(f, "cancelled: {r}"),
        }
    }
}

/// Why a run stopped early. Ordered: escalating is taking the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CancelReason {
    /// A task failed and the run is fail-fast.
    TaskFailed,
    /// The global `--timeout` passed.
    Timeout,
    /// Ctrl-C / SIGTERM.
    Interrupted,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelReason::TaskFailed => "a task failed",
            CancelReason::Timeout => "the run timed out",
            CancelReason::Interrupted => "interrupted",
        })
    }
}
