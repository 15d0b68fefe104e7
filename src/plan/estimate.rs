//! Duration estimates: defaults per task kind, replaced by the median of earlier runs.

use std::collections::HashMap;

use super::TaskKind;
use crate::engine::TaskOutcome;
use crate::record::RunRecord;

/// Estimated task durations in ms.
#[derive(Debug, Clone, Default)]
pub struct Estimates {
    by_id: HashMap<String, u64>,
}

/// A first guess per kind, from the seeds' timings (a Go build ~1 min, Kind create ~25 s).
pub fn default_ms(kind: TaskKind) -> u64 {
    match kind {
        TaskKind::Build => 60_000,
        TaskKind::Pull => 2_000,
        TaskKind::Cluster => 25_000,
        TaskKind::Crds => 1_500,
        TaskKind::Established => 1_500,
        TaskKind::Config => 1_000,
        TaskKind::Load => 8_000,
        TaskKind::Deploy => 1_000,
        TaskKind::Hook => 10_000,
        TaskKind::Wait => 30_000,
    }
}

impl Estimates {
    /// The median duration of each task id over earlier runs in which it ran to success
    /// without a cache hit (a cached build says nothing of how long a build takes).
    pub fn from_runs<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> Estimates {
        let mut samples: HashMap<String, Vec<u64>> = HashMap::new();
        for r in runs {
            for t in &r.tasks {
                if t.outcome == TaskOutcome::Succeeded
                    && let Some(d) = t.duration_ms()
                {
                    samples.entry(t.id.clone()).or_default().push(d);
                }
            }
        }
        let by_id = samples
            .into_iter()
            .map(|(id, mut v)| {
                v.sort_unstable();
                let m = if v.len() % 2 == 1 {
                    v[v.len() / 2]
                } else {
                    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
                };
                (id, m)
            })
            .collect();
        Estimates { by_id }
    }

    pub fn for_task(&self, id: &str, kind: TaskKind) -> u64 {
        self.by_id
            .get(id)
            .copied()
            .unwrap_or_else(|| default_ms(kind))
    }

    /// How many tasks have a measured estimate.
    pub fn measured(&self) -> usize {
        self.by_id.len()
    }
}
