//! What-if: replay a run's recorded durations under another strategy and concurrency through
//! the engine's simulator (the same choices the engine makes), and compare the prediction
//! with what was measured.

use crate::engine::simulate::{self, SimTask};
use crate::engine::{Limits, TaskOutcome};
use crate::plan::Phase;
pub use crate::plan::strategy::{Strategy, barrier_edges};
use crate::record::{RunRecord, TaskRecord};

use super::ReportError;

/// The concurrency a strategy runs with: sequential always runs one task at a time.
pub fn effective_jobs(strategy: Strategy, jobs: usize) -> usize {
    if strategy == Strategy::Sequential {
        1
    } else {
        jobs
    }
}

/// The duration a replay gives a task: what it took, or 0 if it never ran.
fn recorded_duration(t: &TaskRecord) -> u64 {
    t.duration_ms().unwrap_or(0)
}

/// Replays `record`'s durations under `strategy` with `jobs` (`None`: the run's own; ignored
/// for sequential) and the run's per-class caps. The result is a synthetic run record: every
/// report (phases, critical path, SVG) applies to it. Its tasks carry the strategy's
/// dependencies (barriers included) and all succeed; its run id ends in `-whatif-<strategy>`.
pub fn replay(
    record: &RunRecord,
    strategy: Strategy,
    jobs: Option<usize>,
) -> Result<RunRecord, ReportError> {
    let index: std::collections::HashMap<&str, usize> = record
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut own_deps = Vec::with_capacity(record.tasks.len());
    for t in &record.tasks {
        let mut d = Vec::with_capacity(t.deps.len());
        for dep in &t.deps {
            let Some(&j) = index.get(dep.as_str()) else {
                return Err(ReportError::Replay {
                    run_id: record.run_id.clone(),
                    reason: format!("task {} depends on {dep}, which is not in the record", t.id),
                });
            };
            d.push(j);
        }
        own_deps.push(d);
    }
    let phases: Vec<Phase> = record.tasks.iter().map(|t| t.phase).collect();
    let deps = barrier_edges(&phases, &own_deps, strategy);
    let durations: Vec<u64> = record.tasks.iter().map(recorded_duration).collect();
    let sim_err = |e: crate::engine::DagError| ReportError::Replay {
        run_id: record.run_id.clone(),
        reason: describe_dag_error(record, e),
    };
    let priorities = priorities(record, strategy, &deps, &durations).map_err(sim_err)?;
    let tasks: Vec<SimTask> = record
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| SimTask {
            deps: deps[i].clone(),
            duration_ms: durations[i],
            class: t.class,
            priority: priorities[i],
        })
        .collect();
    let jobs = effective_jobs(strategy, jobs.unwrap_or(record.jobs));
    let limits = Limits {
        jobs,
        per_class: record.class_limits.clone(),
    };
    let schedule = simulate::simulate(&tasks, &limits).map_err(sim_err)?;

    let replayed = record
        .tasks
        .iter()
        .zip(&schedule.spans)
        .enumerate()
        .map(|(i, (t, span))| TaskRecord {
            id: t.id.clone(),
            kind: t.kind.clone(),
            phase: t.phase,
            class: t.class,
            deps: deps[i]
                .iter()
                .map(|&j| record.tasks[j].id.clone())
                .collect(),
            ready_ms: Some(span.ready_ms),
            start_ms: Some(span.start_ms),
            end_ms: Some(span.end_ms),
            // The replay keeps what the task was (cached stays cached) but nothing fails.
            outcome: match t.outcome {
                TaskOutcome::Cached => TaskOutcome::Cached,
                TaskOutcome::Restored => TaskOutcome::Restored,
                _ => TaskOutcome::Succeeded,
            },
            attempts: 1,
            error: None,
            skip_reason: None,
            estimate_ms: t.estimate_ms,
            builder: t.builder.clone(),
        })
        .collect();
    Ok(RunRecord {
        run_id: format!("{}-whatif-{strategy}", record.run_id),
        strategy: strategy.to_string(),
        jobs,
        makespan_ms: schedule.makespan_ms,
        outcome: "succeeded".to_string(),
        tasks: replayed,
        ..record.clone()
    })
}

/// The priorities the planner would give the tasks under `strategy` (and so the order in which
/// the engine starts ready tasks): the longest remaining path over the planner's estimates, as
/// recorded; over the recorded durations for records without them; none for sequential (the
/// planner's order).
fn priorities(
    record: &RunRecord,
    strategy: Strategy,
    deps: &[Vec<usize>],
    durations: &[u64],
) -> Result<Vec<u64>, crate::engine::DagError> {
    if strategy == Strategy::Sequential {
        return Ok(vec![0; deps.len()]);
    }
    let estimates: Option<Vec<u64>> = record.tasks.iter().map(|t| t.estimate_ms).collect();
    simulate::remaining_critical_path(deps, estimates.as_deref().unwrap_or(durations))
}

/// Each task's own dependencies, as indices into `record.tasks` (unknown ids dropped).
pub(crate) fn own_deps(record: &RunRecord) -> Vec<Vec<usize>> {
    let index: std::collections::HashMap<&str, usize> = record
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    record
        .tasks
        .iter()
        .map(|t| {
            t.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect()
}

/// The dependencies the engine honoured in a run of `record`: its tasks' own, plus the
/// barriers of its strategy (already there or not: adding them again changes nothing).
/// Unknown dependency ids are dropped; a strategy kprov does not know adds nothing.
pub(crate) fn effective_deps(record: &RunRecord) -> Vec<Vec<usize>> {
    let own = own_deps(record);
    let phases: Vec<Phase> = record.tasks.iter().map(|t| t.phase).collect();
    let strategy = record.strategy.parse().unwrap_or(Strategy::Dag);
    barrier_edges(&phases, &own, strategy)
}

fn describe_dag_error(record: &RunRecord, e: crate::engine::DagError) -> String {
    use crate::engine::DagError;
    let name = |i: usize| {
        record
            .tasks
            .get(i)
            .map_or_else(|| format!("#{i}"), |t| t.id.clone())
    };
    match e {
        DagError::Cycle(members) => {
            format!(
                "the schedule has a dependency cycle: {}",
                members
                    .into_iter()
                    .map(name)
                    .collect::<Vec<_>>()
                    .join(" -> ")
            )
        }
        other => other.to_string(),
    }
}

/// The run's per-class caps as people read them (`cpu 3, io 4`), when it had any.
pub(crate) fn class_caps(record: &RunRecord) -> Option<String> {
    let caps: Vec<String> = record
        .class_limits
        .iter()
        .map(|(class, cap)| format!("{class} {}", super::jobs_label(*cap)))
        .collect();
    (!caps.is_empty()).then(|| caps.join(", "))
}

/// A what-if: the measured run, its replay as recorded (how far the model is off), and the
/// replay under the asked strategy and jobs.
#[derive(Debug, Clone)]
pub struct WhatIf<'a> {
    pub measured: &'a RunRecord,
    /// The run replayed under its own strategy and jobs: the model's calibration.
    pub baseline: Option<RunRecord>,
    pub predicted: RunRecord,
}

impl<'a> WhatIf<'a> {
    pub fn new(
        record: &'a RunRecord,
        strategy: Strategy,
        jobs: Option<usize>,
    ) -> Result<Self, ReportError> {
        let predicted = replay(record, strategy, jobs)?;
        // A run with an unknown strategy name still gets a prediction, without the calibration.
        let baseline = match record.strategy.parse::<Strategy>() {
            Ok(own) => Some(replay(record, own, None)?),
            Err(_) => None,
        };
        Ok(WhatIf {
            measured: record,
            baseline,
            predicted,
        })
    }

    /// Measured makespan (the run's own, or its last task's end if later).
    pub fn measured_ms(&self) -> u64 {
        super::analysis::Analysis::new(self.measured).makespan_ms
    }

    /// Predicted − measured.
    pub fn delta_ms(&self) -> i64 {
        self.predicted.makespan_ms as i64 - self.measured_ms() as i64
    }

    /// Whether the run ran to completion: a replay of a failed or interrupted run predicts
    /// only the part that ran.
    pub fn complete(&self) -> bool {
        self.measured.tasks.iter().all(|t| t.start_ms.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_puts_each_phase_after_the_previous_one() {
        use Phase::*;
        let phases = [Build, Build, Cluster, Load, Deploy, Deploy];
        let deps = vec![vec![], vec![], vec![], vec![0, 2], vec![3], vec![4]];
        let hybrid = barrier_edges(&phases, &deps, Strategy::Hybrid);
        assert_eq!(
            hybrid,
            vec![vec![], vec![], vec![0, 1], vec![0, 2], vec![3], vec![3, 4]]
        );
        assert_eq!(barrier_edges(&phases, &deps, Strategy::Dag), deps);
    }

    #[test]
    fn hybrid_skips_over_an_empty_phase() {
        use Phase::*;
        let phases = [Build, Cluster, Deploy];
        let hybrid = barrier_edges(&phases, &[vec![], vec![], vec![0]], Strategy::Hybrid);
        assert_eq!(hybrid, vec![vec![], vec![0], vec![0, 1]]);
    }
}
