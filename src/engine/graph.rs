// STUB: replaced by the engine implementation.
use std::{sync::Arc, time::Duration};

use super::{Class, RetryPolicy, Work};

/// One task as handed to the engine.
pub struct TaskDef {
    pub id: String,
    pub deps: Vec<String>,
    pub class: Class,
    /// Higher runs first among ready tasks (the planner uses the remaining critical path).
    pub priority: u64,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub work: Arc<dyn Work>,
}

#[derive(Default)]
pub struct GraphBuilder {
    tasks: Vec<TaskDef>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("task {0} is defined twice")]
    Duplicate(String),
    #[error("task {task} depends on {dependency}, which is not a task")]
    UnknownDependency { task: String, dependency: String },
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A validated (sealed) DAG: only this can be run.
pub struct Graph {
    pub(crate) tasks: Vec<TaskDef>,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, task: TaskDef) -> &mut Self {
        self.tasks.push(task);
        self
    }
    pub fn build(self) -> Result<Graph, GraphError> {
        Ok(Graph { tasks: self.tasks })
    }
}
