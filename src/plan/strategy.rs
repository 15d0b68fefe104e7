//! Strategies: the same tasks, shaped by barriers and limits, so runs compare honestly.

use super::Phase;
use crate::engine::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
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

    pub fn parse(s: &str) -> Option<Strategy> {
        [Strategy::Dag, Strategy::Hybrid, Strategy::Sequential].into_iter().find(|x| x.as_str() == s)
    }

    /// The limits a run under this strategy uses (sequential: one task at a time).
    pub fn limits(self, limits: Limits) -> Limits {
        match self {
            Strategy::Sequential => Limits { jobs: 1, ..limits },
            _ => limits,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dependency lists under `strategy`: `deps` plus the barrier edges it implies.
/// Hybrid: every cluster-phase task after every build-phase task, every load after every
/// cluster-phase task, every deploy-phase task after every load. Sequential adds no edges
/// (it runs with one slot, in the plan's topological order).
pub fn barrier_edges(phases: &[Phase], deps: &[Vec<usize>], strategy: Strategy) -> Vec<Vec<usize>> {
    let mut out = deps.to_vec();
    if strategy != Strategy::Hybrid {
        return out;
    }
    let of = |p: Phase| -> Vec<usize> { (0..phases.len()).filter(|&i| phases[i] == p).collect() };
    let (build, cluster, load) = (of(Phase::Build), of(Phase::Cluster), of(Phase::Load));
    for (i, p) in phases.iter().enumerate() {
        let before: &[usize] = match p {
            Phase::Build => &[],
            Phase::Cluster => &build,
            Phase::Load => &cluster,
            // A deploy with no loads at all still waits for the cluster phase.
            Phase::Deploy if load.is_empty() => &cluster,
            Phase::Deploy => &load,
        };
        for &b in before {
            if !out[i].contains(&b) {
                out[i].push(b);
            }
        }
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
        assert_eq!(barrier_edges(&phases, &deps, Strategy::Dag), deps);
    }
}
