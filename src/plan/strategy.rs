//! Strategies: the same tasks, shaped by barriers and limits, so runs compare honestly.

use super::Phase;
use crate::engine::Limits;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// No barriers: a task starts the moment its own dependencies are done.
    #[default]
    Dag,
    /// The seeds' schedule: all builds, then the cluster, then all loads, then all deploys.
    Hybrid,
    /// One task at a time.
    Sequential,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Dag => "dag",
            Strategy::Hybrid => "hybrid",
            Strategy::Sequential => "sequential",
        }
    }

    pub const ALL: [Strategy; 3] = [Strategy::Dag, Strategy::Hybrid, Strategy::Sequential];

    /// The limits a run under this strategy uses (sequential: one task at a time).
    pub fn limits(self, limits: Limits) -> Limits {
        match self {
            Strategy::Sequential => Limits { jobs: 1, ..limits },
            _ => limits,
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown strategy {s:?} (expected dag, hybrid or sequential)"))
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dependencies of each task under `strategy`: its own plus the strategy's barriers.
///
/// `hybrid` puts every task after all tasks of the nearest earlier phase that has any
/// (cluster after builds, loads after cluster, deploys after loads; transitively, each phase
/// after every earlier one). `dag` and `sequential` add nothing (sequential is `jobs = 1`,
/// in the plan's topological order). The lists come back sorted and without duplicates.
pub fn barrier_edges(phases: &[Phase], deps: &[Vec<usize>], strategy: Strategy) -> Vec<Vec<usize>> {
    assert_eq!(phases.len(), deps.len(), "one phase per task");
    let mut out: Vec<Vec<usize>> = deps.to_vec();
    if strategy == Strategy::Hybrid {
        for (i, own) in out.iter_mut().enumerate() {
            let previous = Phase::ALL
                .iter()
                .copied()
                .filter(|p| *p < phases[i] && phases.contains(p))
                .max();
            if let Some(prev) = previous {
                own.extend((0..phases.len()).filter(|&j| phases[j] == prev));
            }
        }
    }
    for own in &mut out {
        own.sort_unstable();
        own.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_puts_barriers_between_phases() {
        use Phase::*;
        let phases = [Build, Build, Cluster, Load, Load, Deploy];
        let deps = vec![vec![], vec![], vec![], vec![0, 2], vec![1, 2], vec![3]];
        let h = barrier_edges(&phases, &deps, Strategy::Hybrid);
        assert_eq!(h[2], vec![0, 1]);
        assert_eq!(h[3], vec![0, 2]);
        assert_eq!(h[5], vec![3, 4]);
        // A phase with no tasks is skipped over: loads missing, deploys wait for the cluster.
        let h = barrier_edges(
            &[Build, Cluster, Deploy],
            &[vec![], vec![], vec![]],
            Strategy::Hybrid,
        );
        assert_eq!(h[2], vec![1]);
        assert_eq!(barrier_edges(&phases, &deps, Strategy::Dag), deps);
    }
}
