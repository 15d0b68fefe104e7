//! The task graph: built from [`TaskDef`]s, validated once, then sealed as a [`Graph`].
//!
//! Inside a sealed graph tasks are addressed by index (insertion order); ids are only for
//! people. Dependencies and dependents are stored as flat adjacency arrays so the scheduler's
//! hot path never touches a string or a hash map.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use super::{Class, RetryPolicy, Work};

/// One task as handed to the engine.
pub struct TaskDef {
    pub id: String,
    pub deps: Vec<String>,
    pub class: Class,
    /// Higher runs first among ready tasks (the planner uses the remaining critical path).
    pub priority: u64,
    /// Per attempt: the attempt's token is cancelled and the task fails with "timed out after X".
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub work: Arc<dyn Work>,
}

impl TaskDef {
    /// A task with no dependencies, class [`Class::Api`], priority 0, no timeout, no retries.
    pub fn new(id: impl Into<String>, work: impl Work + 'static) -> Self {
        TaskDef {
            id: id.into(),
            deps: Vec::new(),
            class: Class::Api,
            priority: 0,
            timeout: None,
            retry: RetryPolicy::NONE,
            work: Arc::new(work),
        }
    }
    pub fn with_deps<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Self {
        self.deps = deps.into_iter().map(Into::into).collect();
        self
    }
    pub fn with_class(mut self, class: Class) -> Self {
        self.class = class;
        self
    }
    pub fn with_priority(mut self, priority: u64) -> Self {
        self.priority = priority;
        self
    }
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

impl fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDef")
            .field("id", &self.id)
            .field("deps", &self.deps)
            .field("class", &self.class)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
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
    /// The members of one cycle, each depending on the next; the first is repeated at the end.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A validation error over index-addressed dependency lists (see [`topological_order`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DagError {
    #[error("task #{task} depends on task #{dependency}, which does not exist")]
    UnknownDependency { task: usize, dependency: usize },
    /// The members of one cycle, each depending on the next; the first is repeated at the end.
    #[error("dependency cycle: {}", join_indices(.0))]
    Cycle(Vec<usize>),
}

fn join_indices(cycle: &[usize]) -> String {
    cycle
        .iter()
        .map(|i| format!("#{i}"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// A validated (sealed) DAG: only this can be run.
pub struct Graph {
    pub(crate) tasks: Vec<TaskDef>,
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
    deps: Adjacency,
    dependents: Adjacency,
}

/// Compressed adjacency lists: the neighbours of `i` are `targets[offsets[i]..offsets[i + 1]]`.
struct Adjacency {
    offsets: Vec<usize>,
    targets: Vec<usize>,
}

impl Adjacency {
    fn of(&self, i: usize) -> &[usize] {
        &self.targets[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The reverse of `self`, keeping each list in ascending source order.
    fn reversed(&self, n: usize) -> Adjacency {
        let mut offsets = vec![0usize; n + 1];
        for &t in &self.targets {
            offsets[t + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0usize; self.targets.len()];
        for src in 0..n {
            for &t in self.of(src) {
                targets[fill[t]] = src;
                fill[t] += 1;
            }
        }
        Adjacency { offsets, targets }
    }
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, task: TaskDef) -> &mut Self {
        self.tasks.push(task);
        self
    }

    /// Validates ids, dependencies and acyclicity, and seals the graph.
    ///
    /// Errors come in that order: the first duplicate id, the first unknown dependency (in
    /// insertion order), then one cycle. A dependency listed twice counts once.
    pub fn build(self) -> Result<Graph, GraphError> {
        let tasks = self.tasks;
        let n = tasks.len();
        let ids: Vec<Arc<str>> = tasks.iter().map(|t| Arc::from(t.id.as_str())).collect();
        let mut index = HashMap::with_capacity(n);
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.clone(), i).is_some() {
                return Err(GraphError::Duplicate(id.to_string()));
            }
        }

        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut targets = Vec::with_capacity(tasks.iter().map(|t| t.deps.len()).sum());
        // seen[d] == i + 1 when task i already lists d: drops duplicates in O(1).
        let mut seen = vec![0usize; n];
        for (i, task) in tasks.iter().enumerate() {
            for dep in &task.deps {
                let Some(&d) = index.get(dep.as_str()) else {
                    return Err(GraphError::UnknownDependency {
                        task: task.id.clone(),
                        dependency: dep.clone(),
                    });
                };
                if seen[d] != i + 1 {
                    seen[d] = i + 1;
                    targets.push(d);
                }
            }
            offsets.push(targets.len());
        }
        let deps = Adjacency { offsets, targets };
        let dependents = deps.reversed(n);

        let dep_lists: Vec<&[usize]> = (0..n).map(|i| deps.of(i)).collect();
        if let Err(DagError::Cycle(cycle)) = topological_order(&dep_lists) {
            return Err(GraphError::Cycle(
                cycle.iter().map(|&i| tasks[i].id.clone()).collect(),
            ));
        }
        Ok(Graph {
            tasks,
            ids,
            index,
            deps,
            dependents,
        })
    }
}

impl Graph {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
    /// Task ids in insertion order.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }
    pub fn id(&self, i: usize) -> &Arc<str> {
        &self.ids[i]
    }
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
    /// The tasks `i` depends on, without duplicates, in the order they were listed.
    pub fn deps(&self, i: usize) -> &[usize] {
        self.deps.of(i)
    }
    /// The tasks that depend on `i`, in insertion order.
    pub fn dependents(&self, i: usize) -> &[usize] {
        self.dependents.of(i)
    }
    pub fn class(&self, i: usize) -> Class {
        self.tasks[i].class
    }
    pub fn priority(&self, i: usize) -> u64 {
        self.tasks[i].priority
    }
    pub fn task(&self, i: usize) -> &TaskDef {
        &self.tasks[i]
    }
    pub fn tasks(&self) -> &[TaskDef] {
        &self.tasks
    }
    /// Dependency lists by index, the input shape of [`crate::engine::simulate`].
    pub fn dep_lists(&self) -> Vec<Vec<usize>> {
        (0..self.len()).map(|i| self.deps(i).to_vec()).collect()
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

/// A topological order of tasks given by dependency lists (`deps[i]` = what `i` depends on).
///
/// Among tasks whose dependencies are all placed, the lowest index comes first, so the order
/// is deterministic. On a cycle, returns the members of one cycle (each depending on the
/// next, starting at its lowest index, the first repeated at the end).
pub fn topological_order<D: AsRef<[usize]>>(deps: &[D]) -> Result<Vec<usize>, DagError> {
    let n = deps.len();
    let mut pending = vec![0usize; n];
    let mut dependents_count = vec![0usize; n + 1];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds.as_ref() {
            if d >= n {
                return Err(DagError::UnknownDependency {
                    task: i,
                    dependency: d,
                });
            }
            pending[i] += 1;
            dependents_count[d + 1] += 1;
        }
    }
    // Flat reverse adjacency, built in two passes to avoid one Vec per task.
    for i in 0..n {
        dependents_count[i + 1] += dependents_count[i];
    }
    let offsets = dependents_count;
    let mut fill = offsets.clone();
    let mut dependents = vec![0usize; offsets[n]];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds.as_ref() {
            dependents[fill[d]] = i;
            fill[d] += 1;
        }
    }

    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|&i| pending[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &t in &dependents[offsets[i]..offsets[i + 1]] {
            pending[t] -= 1;
            if pending[t] == 0 {
                ready.push(std::cmp::Reverse(t));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(DagError::Cycle(one_cycle(deps, &pending)))
}

/// Walks unplaced tasks along unplaced dependencies until one repeats: that loop is a cycle.
/// Every unplaced task has an unplaced dependency, so the walk cannot get stuck.
fn one_cycle<D: AsRef<[usize]>>(deps: &[D], pending: &[usize]) -> Vec<usize> {
    let stuck = |i: usize| pending[i] > 0;
    let start = (0..deps.len())
        .find(|&i| stuck(i))
        .expect("a cycle leaves a task unplaced");
    let mut position = vec![usize::MAX; deps.len()];
    let mut walk = Vec::new();
    let mut at = start;
    while position[at] == usize::MAX {
        position[at] = walk.len();
        walk.push(at);
        at = *deps[at]
            .as_ref()
            .iter()
            .find(|&&d| stuck(d))
            .expect("an unplaced task has an unplaced dependency");
    }
    let mut cycle = walk.split_off(position[at]);
    let lowest = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
    cycle.rotate_left(lowest);
    cycle.push(cycle[0]);
    cycle
}
