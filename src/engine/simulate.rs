//! A pure list-scheduling simulator, the critical path, and priorities derived from it.
//!
//! The simulator makes exactly the engine's choices: both take ready tasks from the same
//! ready queue (higher priority first, then insertion order; a task whose class is at its
//! cap is passed over for the next one that fits; a limit of 0 means unlimited). So replaying
//! recorded durations predicts a real run, and `kprov profile --what-if` is honest.
//!
//! Times are whole milliseconds.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::{Class, DagError, Graph, Limits, topological_order};

/// One task as the simulator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTask {
    /// Indices of the tasks this one depends on.
    pub deps: Vec<usize>,
    pub duration_ms: u64,
    pub class: Class,
    pub priority: u64,
}

/// When one task became ready, started and ended in a simulated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub ready_ms: u64,
    pub start_ms: u64,
    pub end_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// One span per task, in input order.
    pub spans: Vec<Span>,
    pub makespan_ms: u64,
}

/// The simulator's input for a sealed graph, with one duration per task.
pub fn tasks_of(graph: &Graph, durations_ms: &[u64]) -> Vec<SimTask> {
    assert_eq!(graph.len(), durations_ms.len(), "one duration per task");
    (0..graph.len())
        .map(|i| SimTask {
            deps: graph.deps(i).to_vec(),
            duration_ms: durations_ms[i],
            class: graph.class(i),
            priority: graph.priority(i),
        })
        .collect()
}

/// Simulates a run of `tasks` under `limits`: every task takes exactly its duration.
pub fn simulate(tasks: &[SimTask], limits: &Limits) -> Result<Schedule, DagError> {
    let n = tasks.len();
    let deps: Vec<&[usize]> = tasks.iter().map(|t| t.deps.as_slice()).collect();
    topological_order(&deps)?;

    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    for (i, t) in tasks.iter().enumerate() {
        pending[i] = t.deps.len();
        for &d in &t.deps {
            dependents[d].push(i);
        }
    }

    let mut spans = vec![
        Span {
            ready_ms: 0,
            start_ms: 0,
            end_ms: 0
        };
        n
    ];
    let mut queue = ReadyQueue::new(limits);
    for (i, t) in tasks.iter().enumerate() {
        if pending[i] == 0 {
            queue.push(i, t.class, t.priority);
        }
    }
    let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut now = 0u64;
    let mut makespan = 0u64;
    loop {
        while let Some(i) = queue.pop_startable() {
            let end = now.saturating_add(tasks[i].duration_ms);
            spans[i].start_ms = now;
            spans[i].end_ms = end;
            running.push(Reverse((end, i)));
        }
        let Some(&Reverse((t, _))) = running.peek() else {
            break;
        };
        now = t;
        makespan = makespan.max(t);
        // Every task ending at `now` finishes before the next choice, as in the engine,
        // which drains all completions at hand before it starts anything.
        while let Some(&Reverse((end, i))) = running.peek() {
            if end != now {
                break;
            }
            running.pop();
            queue.release(tasks[i].class);
            for &d in &dependents[i] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    spans[d].ready_ms = now;
                    queue.push(d, tasks[d].class, tasks[d].priority);
                }
            }
        }
    }
    Ok(Schedule {
        spans,
        makespan_ms: makespan,
    })
}

/// The longest path through the DAG, from its first task to its last, and its length.
///
/// Ties go to the lowest index (both for the last task and for each predecessor), so the
/// answer is deterministic.
pub fn critical_path<D: AsRef<[usize]>>(
    deps: &[D],
    durations_ms: &[u64],
) -> Result<(Vec<usize>, u64), DagError> {
    assert_eq!(deps.len(), durations_ms.len(), "one duration per task");
    let order = topological_order(deps)?;
    let n = deps.len();
    let mut finish = vec![0u64; n];
    let mut via = vec![usize::MAX; n];
    for &i in &order {
        let mut best: Option<(u64, usize)> = None;
        for &d in deps[i].as_ref() {
            if best.is_none_or(|(f, b)| finish[d] > f || (finish[d] == f && d < b)) {
                best = Some((finish[d], d));
            }
        }
        let before = best.map_or(0, |(f, _)| f);
        via[i] = best.map_or(usize::MAX, |(_, d)| d);
        finish[i] = before.saturating_add(durations_ms[i]);
    }
    let Some(last) = (0..n).max_by_key(|&i| (finish[i], Reverse(i))) else {
        return Ok((Vec::new(), 0));
    };
    let mut path = vec![last];
    let mut at = last;
    while via[at] != usize::MAX {
        at = via[at];
        path.push(at);
    }
    path.reverse();
    Ok((path, finish[last]))
}

/// For each task, its own duration plus the longest path after it: the planner's priority.
///
/// Starting the task with the longest remaining path first is the classic critical-path
/// list-scheduling heuristic.
pub fn remaining_critical_path<D: AsRef<[usize]>>(
    deps: &[D],
    durations_ms: &[u64],
) -> Result<Vec<u64>, DagError> {
    assert_eq!(deps.len(), durations_ms.len(), "one duration per task");
    let order = topological_order(deps)?;
    let mut tail = vec![0u64; deps.len()];
    let mut remaining = vec![0u64; deps.len()];
    // In reverse topological order every dependent of `i` is done before `i`.
    for &i in order.iter().rev() {
        remaining[i] = durations_ms[i].saturating_add(tail[i]);
        for &d in deps[i].as_ref() {
            tail[d] = tail[d].max(remaining[i]);
        }
    }
    Ok(remaining)
}

/// Ready tasks and free slots, shared by the engine and the simulator so both choose alike.
///
/// One max-heap per class keyed by (priority, earliest insertion); the next task to start is
/// the best head among the classes that are under their cap, while the global cap allows.
pub(crate) struct ReadyQueue {
    heaps: [BinaryHeap<(u64, Reverse<usize>)>; Class::COUNT],
    running: [usize; Class::COUNT],
    running_total: usize,
    caps: [usize; Class::COUNT],
    jobs: usize,
}

impl ReadyQueue {
    pub(crate) fn new(limits: &Limits) -> Self {
        let unlimited = |n: usize| if n == 0 { usize::MAX } else { n };
        let mut caps = [usize::MAX; Class::COUNT];
        for (class, &cap) in &limits.per_class {
            caps[class.index()] = unlimited(cap);
        }
        ReadyQueue {
            heaps: Default::default(),
            running: [0; Class::COUNT],
            running_total: 0,
            caps,
            jobs: unlimited(limits.jobs),
        }
    }

    pub(crate) fn push(&mut self, task: usize, class: Class, priority: u64) {
        self.heaps[class.index()].push((priority, Reverse(task)));
    }

    /// The next task to start, if a slot is free for it; counts it as running.
    pub(crate) fn pop_startable(&mut self) -> Option<usize> {
        if self.running_total >= self.jobs {
            return None;
        }
        let mut best: Option<(usize, (u64, Reverse<usize>))> = None;
        for c in 0..Class::COUNT {
            if self.running[c] >= self.caps[c] {
                continue;
            }
            if let Some(&head) = self.heaps[c].peek()
                && best.is_none_or(|(_, b)| head > b)
            {
                best = Some((c, head));
            }
        }
        let (c, _) = best?;
        let (_, Reverse(task)) = self.heaps[c].pop()?;
        self.running[c] += 1;
        self.running_total += 1;
        Some(task)
    }

    /// A task of `class` that was started has ended: its slot is free.
    pub(crate) fn release(&mut self, class: Class) {
        self.running[class.index()] -= 1;
        self.running_total -= 1;
    }

    /// Forgets every ready task (the run stopped): they will never start.
    pub(crate) fn clear(&mut self) {
        for heap in &mut self.heaps {
            heap.clear();
        }
    }
}
