//! Duration estimates: the median of earlier runs of the same task; before any run, a first
//! guess from what the plan knows of the task's size (an image's build context, the objects
//! a manifest holds, the nodes of a cluster).
//!
//! The first guesses are deliberately simple, a fixed cost plus a cost per unit, calibrated
//! on the demo (busybox images, a one-node sandbox cluster, where a cold run takes ~15 s) and
//! on the seeds' Go services (a 200 MB context builds in about a minute):
//!
//! | task | first guess |
//! |---|---|
//! | build | 4 s + 250 ms per MB of context + 2 ms per file |
//! | pull (present locally) | 1 s |
//! | load | 1.5 s + 50 ms per MB of context |
//! | cluster | 12 s + 8 s per node after the first |
//! | apply:crds / wait:crds | 300 ms + 40 ms / 500 ms + 50 ms per CRD file |
//! | apply:config, deploy | 300 ms + 60 ms per object |
//! | hook (a Job runs to completion) | 3 s + 100 ms per object |
//! | wait:ready | 2 s + 500 ms per component |

use std::{collections::HashMap, path::Path};

use super::{PlannedTask, TaskKind};
use crate::engine::TaskOutcome;
use crate::profile::Profile;
use crate::record::RunRecord;

/// Estimated task durations in ms.
#[derive(Debug, Clone, Default)]
pub struct Estimates {
    /// Medians of earlier runs.
    by_id: HashMap<String, u64>,
    /// First guesses from sizes, for tasks without runs.
    sized: HashMap<String, u64>,
}

/// What the plan knows of a task's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    /// Bytes and files of an image's build context.
    pub bytes: u64,
    pub files: u64,
    /// Objects applied (deploy, config, hook), CRD files, nodes (cluster), components (wait).
    pub count: u64,
}

const MB: u64 = 1 << 20;

/// The first guess for a task of `kind` and `size` (see the module's table).
pub fn sized_ms(kind: TaskKind, size: Size) -> u64 {
    let Size {
        bytes,
        files,
        count,
    } = size;
    match kind {
        TaskKind::Build => 4_000 + bytes * 250 / MB + files * 2,
        TaskKind::Pull => 1_000,
        TaskKind::Load => 1_500 + bytes * 50 / MB,
        TaskKind::Push => 1_000 + bytes * 30 / MB,
        TaskKind::Registry => 1_000,
        TaskKind::Cluster => 12_000 + 8_000 * count.saturating_sub(1),
        TaskKind::Crds => 300 + 40 * count,
        TaskKind::Established => 500 + 50 * count,
        TaskKind::Config | TaskKind::Deploy => 300 + 60 * count,
        TaskKind::Hook => 3_000 + 100 * count,
        TaskKind::Wait => 2_000 + 500 * count,
        #[allow(unreachable_patterns)]
        other => default_ms(other),
    }
}

/// The guess for a task of `kind` whose size is unknown.
pub fn default_ms(kind: TaskKind) -> u64 {
    match kind {
        TaskKind::Build => 20_000,
        TaskKind::Binary => 10_000,
        TaskKind::Load => 3_000,
        TaskKind::Cluster => 12_000,
        TaskKind::Deploy | TaskKind::Config => 1_000,
        TaskKind::Hook => 5_000,
        TaskKind::Value => 500,
        TaskKind::Step => 2_000,
        TaskKind::Secret => 500,
        TaskKind::Wait => 5_000,
        other => sized_ms(other, Size::default()),
    }
}

/// The size of each task of `tasks`, as far as the profile and the files under `source` tell
/// (a file that cannot be read counts as nothing).
pub fn sizes(profile: &Profile, source: &Path, tasks: &[PlannedTask]) -> Vec<(String, Size)> {
    let spec = &profile.spec;
    let contexts: HashMap<&str, Size> = spec
        .images
        .iter()
        .filter_map(|(name, img)| {
            let b = img.build.as_ref()?;
            Some((
                name.as_str(),
                context_size(&profile.resolve(source, &b.context)),
            ))
        })
        .collect();
    let objects = |manifests: &[crate::profile::ManifestEntry]| -> u64 {
        manifests
            .iter()
            .filter_map(|m| m.path())
            .map(|m| count_objects(&profile.resolve(source, m)))
            .sum()
    };
    let c = &spec.config;
    let tls = c
        .tls
        .as_ref()
        .map_or(0, |t| 1 + t.services.len() + t.signing_keys.len());
    let batched = c.secrets.iter().filter(|s| !s.is_late()).count();
    let config =
        (c.namespaces.len() + c.config_maps.len() + batched + tls) as u64 + objects(&c.manifests);
    let crds: u64 = spec
        .crds
        .iter()
        .map(|p| profile.expand(source, p).map_or(0, |f| f.len() as u64))
        .sum();
    let nodes = spec.cluster.as_ref().map_or(1, |c| c.nodes.len().max(1)) as u64;
    let count = |count: u64| Size {
        count,
        ..Size::default()
    };
    tasks
        .iter()
        .map(|t| {
            let subject = t.subject.as_deref().unwrap_or_default();
            let size = match t.kind {
                TaskKind::Build | TaskKind::Load | TaskKind::Push => {
                    contexts.get(subject).copied().unwrap_or_default()
                }
                TaskKind::Cluster => count(nodes),
                TaskKind::Crds | TaskKind::Established => count(crds),
                TaskKind::Config => count(config),
                TaskKind::Deploy => count(
                    spec.components
                        .get(subject)
                        .map_or(0, |c| objects(&c.manifests)),
                ),
                TaskKind::Hook => {
                    count(spec.hooks.get(subject).map_or(0, |h| objects(&h.manifests)))
                }
                TaskKind::Wait => count(spec.components.len() as u64),
                _ => Size::default(),
            };
            (t.id.clone(), size)
        })
        .collect()
}

/// Bytes and files under a build context (at most 100,000 files are looked at).
fn context_size(dir: &Path) -> Size {
    let mut size = Size::default();
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .take(100_000)
    {
        size.files += 1;
        size.bytes += entry.metadata().map_or(0, |m| m.len());
    }
    size
}

/// The objects a manifest template holds: its non-empty YAML documents (placeholders are
/// blanked first, so that the template reads as YAML).
fn count_objects(path: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let mut plain = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        plain.push_str(&rest[..open]);
        plain.push('x');
        rest = &rest[open + close + 2..];
    }
    plain.push_str(rest);
    serde_saphyr::from_multiple::<Option<serde::de::IgnoredAny>>(&plain)
        .map_or(1, |docs| docs.iter().filter(|d| d.is_some()).count() as u64)
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
        Estimates {
            by_id,
            sized: HashMap::new(),
        }
    }

    /// First guesses for the tasks without runs, from their sizes (see [`sizes`]).
    pub fn with_sizes(mut self, sizes: &[(String, Size)], tasks: &[PlannedTask]) -> Estimates {
        let kinds: HashMap<&str, TaskKind> =
            tasks.iter().map(|t| (t.id.as_str(), t.kind)).collect();
        for (id, size) in sizes {
            if let Some(&kind) = kinds.get(id.as_str()) {
                self.sized.insert(id.clone(), sized_ms(kind, *size));
            }
        }
        self
    }

    pub fn for_task(&self, id: &str, kind: TaskKind) -> u64 {
        self.by_id
            .get(id)
            .or_else(|| self.sized.get(id))
            .copied()
            .unwrap_or_else(|| default_ms(kind))
    }

    /// Whether this task's estimate comes from earlier runs.
    pub fn is_measured(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// How many tasks have a measured estimate.
    pub fn measured(&self) -> usize {
        self.by_id.len()
    }
}
