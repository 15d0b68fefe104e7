//! What every report shows, computed once from a run record: per-phase spans and busy time,
//! per-task durations and queue waits, the measured critical path, utilisation.

use crate::engine::{Class, TaskOutcome};
use crate::plan::Phase;
use crate::record::{RunRecord, TaskRecord};

/// The analysis of one run. Pure: computed from the record alone.
#[derive(Debug, Clone)]
pub struct Analysis<'a> {
    pub record: &'a RunRecord,
    /// The run's makespan: the recorded one, or the last task's end if that is later.
    pub makespan_ms: u64,
    /// The phases that have tasks, in pipeline order.
    pub phases: Vec<PhaseStats>,
    /// Every task: those that ran by duration (longest first), then those that never ran.
    pub tasks: Vec<TaskStats>,
    /// The measured critical path, first step first; empty when nothing ran.
    pub critical_path: Vec<CriticalStep>,
    /// Sum of all task durations.
    pub work_ms: u64,
    /// Time when no task was running.
    pub idle_ms: u64,
    /// The concurrency the utilisation is measured against: the run's `jobs`, or the peak
    /// concurrency when the run had no global limit (`jobs` = 0).
    pub slots: usize,
    /// `work_ms / (makespan_ms × slots)`.
    pub utilisation: f64,
    /// The most tasks that ran at the same time.
    pub peak_concurrency: usize,
    /// The DAG's critical path at the measured durations: the longest chain of the tasks' own
    /// dependencies (the profile's DAG, without a strategy's barriers), each task weighted by
    /// what it took (0 if it never ran). No schedule of these durations ends sooner, so
    /// `makespan_ms` over its length is what the run's schedule (slots, barriers, dispatch)
    /// cost. `None` for a record whose dependencies form a cycle.
    pub dag_critical_path: Option<DagCriticalPath>,
}

/// The longest chain of a run's own dependencies at its measured durations.
#[derive(Debug, Clone, PartialEq)]
pub struct DagCriticalPath {
    /// Positions in the record's task list, first task first.
    pub tasks: Vec<usize>,
    pub length_ms: u64,
}

/// Serialised as-is by `--format json` (the phase under the key `name`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseStats {
    #[serde(rename = "name")]
    pub phase: Phase,
    pub tasks: usize,
    /// Tasks of the phase that started (cached ones included).
    pub ran: usize,
    /// First start of its tasks; `None` when none ran.
    pub start_ms: Option<u64>,
    /// Last end of its tasks.
    pub end_ms: Option<u64>,
    pub span_ms: u64,
    /// The union of its tasks' intervals: time when at least one of its tasks ran.
    pub busy_ms: u64,
    /// Sum of its tasks' durations (more than `busy_ms` when they ran in parallel).
    pub work_ms: u64,
    /// `busy_ms / makespan`.
    #[serde(serialize_with = "super::json::serialize_round4")]
    pub share: f64,
    /// Time when this phase and any other phase were both busy.
    pub overlap_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskStats {
    /// Position in the record's task list.
    pub index: usize,
    pub id: String,
    pub kind: String,
    pub phase: Phase,
    pub class: Class,
    pub ready_ms: Option<u64>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// Start − ready: how long it waited for a slot once its dependencies were done.
    pub queue_ms: Option<u64>,
    pub outcome: TaskOutcome,
    pub attempts: u32,
    pub critical: bool,
}

/// Serialised as-is by `--format json` (without the index).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CriticalStep {
    /// Position in the record's task list.
    #[serde(skip)]
    pub index: usize,
    pub id: String,
    pub phase: Phase,
    pub start_ms: u64,
    pub end_ms: u64,
    pub duration_ms: u64,
    /// The gap before it started: after the previous step ended (or after the run started,
    /// for the first step). Queue wait and scheduling overhead.
    pub wait_ms: u64,
}

/// `(start, end)` of a task that ran.
pub(crate) fn interval(t: &TaskRecord) -> Option<(u64, u64)> {
    let (s, e) = (t.start_ms?, t.end_ms?);
    Some((s, e.max(s)))
}

/// Merges intervals into a sorted list of disjoint ones.
pub(crate) fn union(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.retain(|(s, e)| e > s);
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

pub(crate) fn measure(spans: &[(u64, u64)]) -> u64 {
    spans.iter().map(|(s, e)| e - s).sum()
}

/// Length of the intersection of two unions (each sorted and disjoint).
fn intersection(a: &[(u64, u64)], b: &[(u64, u64)]) -> u64 {
    let (mut i, mut j, mut total) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if hi > lo {
            total += hi - lo;
        }
        if a[i].1 < b[j].1 { i += 1 } else { j += 1 }
    }
    total
}

/// The most intervals open at once (an interval ending at `t` does not overlap one starting at `t`).
pub(crate) fn peak_concurrency(spans: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::with_capacity(spans.len() * 2);
    for &(s, e) in spans {
        if e > s {
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    edges.sort_unstable(); // -1 sorts before +1 at the same instant
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

impl<'a> Analysis<'a> {
    pub fn new(record: &'a RunRecord) -> Self {
        let spans: Vec<Option<(u64, u64)>> = record.tasks.iter().map(interval).collect();
        let ran: Vec<(u64, u64)> = spans.iter().flatten().copied().collect();
        let last_end = ran.iter().map(|s| s.1).max().unwrap_or(0);
        let makespan_ms = record.makespan_ms.max(last_end);

        let phases = Phase::ALL
            .iter()
            .filter(|p| record.tasks.iter().any(|t| t.phase == **p))
            .map(|&phase| {
                let mine: Vec<(u64, u64)> = record
                    .tasks
                    .iter()
                    .zip(&spans)
                    .filter(|(t, _)| t.phase == phase)
                    .filter_map(|(_, s)| *s)
                    .collect();
                let others: Vec<(u64, u64)> = record
                    .tasks
                    .iter()
                    .zip(&spans)
                    .filter(|(t, _)| t.phase != phase)
                    .filter_map(|(_, s)| *s)
                    .collect();
                let busy = union(mine.clone());
                let busy_ms = measure(&busy);
                let start_ms = mine.iter().map(|s| s.0).min();
                let end_ms = mine.iter().map(|s| s.1).max();
                PhaseStats {
                    phase,
                    tasks: record.tasks.iter().filter(|t| t.phase == phase).count(),
                    ran: mine.len(),
                    start_ms,
                    end_ms,
                    span_ms: end_ms.zip(start_ms).map(|(e, s)| e - s).unwrap_or(0),
                    busy_ms,
                    work_ms: mine.iter().map(|(s, e)| e - s).sum(),
                    share: ratio(busy_ms, makespan_ms),
                    overlap_ms: intersection(&busy, &union(others)),
                }
            })
            .collect();

        let critical_path = critical_path(record);
        let on_path: Vec<bool> = {
            let mut v = vec![false; record.tasks.len()];
            for step in &critical_path {
                v[step.index] = true;
            }
            v
        };

        let mut tasks: Vec<TaskStats> = record
            .tasks
            .iter()
            .enumerate()
            .map(|(index, t)| TaskStats {
                index,
                id: t.id.clone(),
                kind: t.kind.clone(),
                phase: t.phase,
                class: t.class,
                ready_ms: t.ready_ms,
                start_ms: t.start_ms,
                end_ms: t.end_ms,
                duration_ms: t.duration_ms(),
                queue_ms: t.queue_ms(),
                outcome: t.outcome,
                attempts: t.attempts,
                critical: on_path[index],
            })
            .collect();
        // Longest first; never-ran last; ties by start, then record order, so output is stable.
        tasks.sort_by(|a, b| {
            b.duration_ms
                .is_some()
                .cmp(&a.duration_ms.is_some())
                .then(b.duration_ms.cmp(&a.duration_ms))
                .then(a.start_ms.cmp(&b.start_ms))
                .then(a.index.cmp(&b.index))
        });

        let work_ms: u64 = ran.iter().map(|(s, e)| e - s).sum();
        let idle_ms = makespan_ms - measure(&union(ran.clone())).min(makespan_ms);
        let peak = peak_concurrency(&ran);
        let slots = if record.jobs == 0 {
            peak.max(1)
        } else {
            record.jobs.max(peak)
        };
        let utilisation = ratio(work_ms, makespan_ms.saturating_mul(slots as u64));

        Analysis {
            record,
            makespan_ms,
            phases,
            tasks,
            critical_path,
            work_ms,
            idle_ms,
            slots,
            utilisation,
            peak_concurrency: peak,
            dag_critical_path: dag_critical_path(record),
        }
    }

    /// Makespan over the DAG's critical path at the measured durations (≥ 1: 1 is a schedule
    /// that lost nothing to slots, barriers or dispatch); `None` when the path has no length,
    /// or when a task never ran (a stopped run's chain is not the run's work).
    pub fn makespan_over_dag_critical_path(&self) -> Option<f64> {
        if self.record.tasks.iter().any(|t| t.start_ms.is_none()) {
            return None;
        }
        let path = self
            .dag_critical_path
            .as_ref()
            .filter(|p| p.length_ms > 0)?;
        Some(self.makespan_ms as f64 / path.length_ms as f64)
    }

    /// The tasks that never started (skipped).
    pub fn never_ran(&self) -> impl Iterator<Item = &TaskStats> {
        self.tasks.iter().filter(|t| t.start_ms.is_none())
    }

    /// Time on the critical path spent running tasks (the rest is waiting).
    pub fn critical_work_ms(&self) -> u64 {
        self.critical_path.iter().map(|s| s.duration_ms).sum()
    }
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The longest chain of `record`'s own dependencies (unknown ids dropped) at its measured
/// durations.
pub fn dag_critical_path(record: &RunRecord) -> Option<DagCriticalPath> {
    let deps = super::whatif::own_deps(record);
    let durations: Vec<u64> = record
        .tasks
        .iter()
        .map(|t| interval(t).map_or(0, |(s, e)| e - s))
        .collect();
    let (tasks, length_ms) = crate::engine::simulate::critical_path(&deps, &durations).ok()?;
    Some(DagCriticalPath { tasks, length_ms })
}

/// The measured critical path: from the last task to finish, walk back through the dependency
/// that finished last (the one that actually gated it) until a task with no finished dependency.
/// Dependencies include the barriers of the run's strategy.
pub fn critical_path(record: &RunRecord) -> Vec<CriticalStep> {
    // A hybrid run's barriers gate tasks as much as their own dependencies do.
    let deps = super::whatif::effective_deps(record);
    // Ties: the later start (the shorter last step), then the earlier record position.
    let pick = |candidates: &mut dyn Iterator<Item = usize>| {
        candidates
            .filter_map(|i| interval(&record.tasks[i]).map(|(s, e)| (i, s, e)))
            .max_by(|a, b| a.2.cmp(&b.2).then(a.1.cmp(&b.1)).then(b.0.cmp(&a.0)))
    };
    let mut path = Vec::new();
    let mut current = pick(&mut (0..record.tasks.len()));
    let mut seen = vec![false; record.tasks.len()];
    while let Some((i, s, e)) = current {
        if std::mem::replace(&mut seen[i], true) {
            break; // a malformed record with a dependency cycle: stop rather than loop
        }
        path.push((i, s, e));
        current = pick(&mut deps[i].iter().copied());
    }
    path.reverse();
    let mut prev_end = 0;
    path.into_iter()
        .map(|(i, s, e)| {
            let t = &record.tasks[i];
            let step = CriticalStep {
                index: i,
                id: t.id.clone(),
                phase: t.phase,
                start_ms: s,
                end_ms: e,
                duration_ms: e - s,
                wait_ms: s.saturating_sub(prev_end),
            };
            prev_end = e;
            step
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_merges_touching_and_overlapping_intervals() {
        assert_eq!(
            union(vec![(5, 7), (0, 2), (1, 3), (3, 4), (9, 9)]),
            vec![(0, 4), (5, 7)]
        );
    }

    #[test]
    fn intersection_counts_only_common_time() {
        assert_eq!(intersection(&[(0, 10), (20, 30)], &[(5, 25)]), 10);
        assert_eq!(intersection(&[(0, 10)], &[(10, 20)]), 0);
    }

    #[test]
    fn back_to_back_tasks_do_not_count_as_concurrent() {
        assert_eq!(peak_concurrency(&[(0, 10), (10, 20), (5, 15)]), 2);
    }
}
