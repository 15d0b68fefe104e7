//! Profile → the task DAG, with the edges DESIGN.md gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{PlannedTask, TaskKind, uses};
use crate::profile::{KeySpec, Profile, SecretSpec, Supplied};

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Use a cluster kprov did not create (`--kubeconfig`/`--context`): no create, no loads.
    pub existing_cluster: bool,
    /// Where the profile's paths resolve (`--source`), to find the run-time values its
    /// templates use. Empty: the current directory.
    pub source: PathBuf,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("{what} names {name:?}, which is no component, hook or step")]
    UnknownUnit { what: String, name: String },
    #[error("{what} uses run-time value {name:?}, which `runtime:` does not declare")]
    UnknownValue { what: String, name: String },
    #[error("two entries make task {0}: give each Secret (name and namespace) once")]
    Duplicate(String),
}

pub const CLUSTER: &str = "cluster:create";
pub const CRDS: &str = "apply:crds";
pub const ESTABLISHED: &str = "wait:crds";
pub const CONFIG: &str = "apply:config";
pub const WAIT: &str = "wait:ready";
/// `cluster.registry: local`: the registry container (or, for a cluster kprov does not own,
/// the registry its `local-registry-hosting` ConfigMap names).
pub const REGISTRY: &str = "registry:local";

/// The task that makes `image` available on this host: `build:` (from the profile's
/// Dockerfile), `pull:` (a third-party or registry image kprov pulls), `image:` (one already
/// in the engine, `--image KEY=REF`). An image the nodes pull themselves has none.
pub fn build_id(profile: &Profile, image: &str) -> String {
    let spec = profile.spec.images.get(image);
    let verb = match spec.and_then(|i| i.supplied.as_ref()) {
        Some(Supplied::Local(_)) => "image",
        Some(Supplied::Registry { .. }) => "pull",
        None if spec.is_some_and(|i| i.external.is_some()) => "pull",
        None => "build",
    };
    format!("{verb}:{image}")
}

pub fn binary_id(name: &str) -> String {
    format!("binary:{name}")
}

/// The host-built binaries this run needs: all but those only images supplied from elsewhere
/// (`--image`, `--image-registry`) would have copied.
fn needed_binaries(profile: &Profile) -> Vec<&String> {
    let spec = &profile.spec;
    spec.binaries
        .keys()
        .filter(|b| {
            let users: Vec<_> = spec
                .images
                .values()
                .filter(|i| i.build.as_ref().is_some_and(|x| x.binaries.contains(b)))
                .collect();
            users.is_empty() || users.iter().any(|i| i.supplied.is_none())
        })
        .collect()
}

/// Whether the nodes pull `image` themselves (no task here makes or loads it).
pub fn nodes_pull(profile: &Profile, image: &str) -> bool {
    profile.spec.images.get(image).is_some_and(|i| {
        matches!(
            i.supplied,
            Some(Supplied::Registry {
                nodes_pull: true,
                ..
            })
        )
    })
}

pub fn load_id(image: &str) -> String {
    format!("load:{image}")
}

pub fn push_id(image: &str) -> String {
    format!("push:{image}")
}

/// The task id of a component (`deploy:x`), hook (`hook:x`) or step (`step:x`).
pub fn unit_id(profile: &Profile, name: &str) -> String {
    if profile.spec.hooks.contains_key(name) {
        format!("hook:{name}")
    } else if profile.spec.steps.contains_key(name) {
        format!("step:{name}")
    } else {
        format!("deploy:{name}")
    }
}

pub fn value_id(name: &str) -> String {
    format!("value:{name}")
}

/// The task id of a `config.secrets` entry with `after:` (`secret:NAMESPACE/NAME`): applied
/// by its own task once what it follows is ready, not by the config batch.
pub fn secret_id(profile: &Profile, secret: &SecretSpec) -> String {
    let ns = secret.namespace_or(profile.namespace());
    format!("secret:{ns}/{}", secret.name)
}

/// The late Secret (one with `after:`) a `key:` run-time value reads, if any: the value
/// follows its task.
pub fn late_secret_read<'a>(profile: &'a Profile, key: &KeySpec) -> Option<&'a SecretSpec> {
    if key.kind.as_deref().is_some_and(|k| k != "Secret") {
        return None;
    }
    let ns = profile.namespace();
    let key_ns = key.namespace.as_deref().unwrap_or(ns);
    profile
        .spec
        .config
        .secrets
        .iter()
        .find(|s| s.is_late() && s.name == key.name && s.namespace_or(ns) == key_ns)
}

/// What one component, hook, step, run-time value or late Secret waits for before it can run.
struct Unit<'a> {
    kind: TaskKind,
    /// The entry's name (a late Secret's: `NAMESPACE/NAME`).
    subject: String,
    images: &'a [String],
    /// Task ids: the units it follows and the values it uses.
    after: Vec<String>,
}

/// The task id of the component, hook or step `name` that `what` follows.
fn known_unit(profile: &Profile, what: &str, name: &String) -> Result<String, PlanError> {
    let spec = &profile.spec;
    let exists = spec.components.contains_key(name)
        || spec.hooks.contains_key(name)
        || spec.steps.contains_key(name);
    exists
        .then(|| unit_id(profile, name))
        .ok_or_else(|| PlanError::UnknownUnit {
            what: what.to_string(),
            name: name.clone(),
        })
}

/// Every unit, keyed by task id, with the ids it follows resolved.
fn units<'a>(
    profile: &'a Profile,
    opts: &PlanOptions,
) -> Result<BTreeMap<String, Unit<'a>>, PlanError> {
    let spec = &profile.spec;
    let used = uses::runtime_uses(profile, &opts.source);
    let known = |what: &str, name: &String| known_unit(profile, what, name);
    let mut out = BTreeMap::new();
    let mut add = |id: String,
                   kind: TaskKind,
                   subject: &str,
                   images: &'a [String],
                   after: &[String],
                   ids: Vec<String>|
     -> Result<(), PlanError> {
        let mut deps = after
            .iter()
            .map(|a| known(&id, a))
            .collect::<Result<Vec<_>, _>>()?;
        deps.extend(ids);
        for v in used.get(&id).into_iter().flatten() {
            if !spec.runtime.contains_key(v) {
                return Err(PlanError::UnknownValue {
                    what: id.clone(),
                    name: v.clone(),
                });
            }
            deps.push(value_id(v));
        }
        let unit = Unit {
            kind,
            subject: subject.to_string(),
            images,
            after: deps,
        };
        match out.insert(id.clone(), unit) {
            Some(_) => Err(PlanError::Duplicate(id)),
            None => Ok(()),
        }
    };
    for (n, c) in &spec.components {
        add(
            unit_id(profile, n),
            TaskKind::Deploy,
            n,
            &c.images,
            &c.depends_on,
            Vec::new(),
        )?;
    }
    for (n, h) in &spec.hooks {
        let id = unit_id(profile, n);
        add(id, TaskKind::Hook, n, &h.images, &h.after, Vec::new())?;
    }
    for (n, st) in &spec.steps {
        let id = unit_id(profile, n);
        add(id, TaskKind::Step, n, &st.images, &st.after, Vec::new())?;
    }
    for (n, v) in &spec.runtime {
        let mut after = v.after.clone();
        if let Some(j) = &v.job_output {
            after.push(j.hook.clone());
        }
        if let Some(h) = &v.http_response {
            after.push(h.step.clone());
        }
        let read = v.key.as_ref().and_then(|k| late_secret_read(profile, k));
        let ids = read.map(|s| secret_id(profile, s)).into_iter().collect();
        add(value_id(n), TaskKind::Value, n, &[], &after, ids)?;
    }
    for sec in spec.config.secrets.iter().filter(|s| s.is_late()) {
        let id = secret_id(profile, sec);
        let subject = id.trim_start_matches("secret:").to_string();
        add(id, TaskKind::Secret, &subject, &[], &sec.after, Vec::new())?;
    }
    Ok(out)
}

fn task(id: String, kind: TaskKind, deps: Vec<String>, subject: Option<&str>) -> PlannedTask {
    PlannedTask {
        id,
        kind,
        phase: kind.phase(),
        deps,
        subject: subject.map(str::to_string),
    }
}

/// The tasks of `profile` in a topological order: builds, the cluster and its setup, loads,
/// components and hooks (in dependency order), and the one final wait.
pub fn tasks_for(profile: &Profile, opts: &PlanOptions) -> Result<Vec<PlannedTask>, PlanError> {
    let spec = &profile.spec;
    let mut tasks = Vec::new();
    for name in needed_binaries(profile) {
        tasks.push(task(binary_id(name), TaskKind::Binary, vec![], Some(name)));
    }
    for (name, img) in &spec.images {
        if nodes_pull(profile, name) {
            continue;
        }
        let (kind, deps) = match &img.build {
            Some(b) if img.external.is_none() && img.supplied.is_none() => (
                TaskKind::Build,
                b.binaries.iter().map(|n| binary_id(n)).collect(),
            ),
            _ => (TaskKind::Pull, vec![]),
        };
        tasks.push(task(build_id(profile, name), kind, deps, Some(name)));
    }
    // With a local registry: kprov's own registry comes first and the new cluster is wired to
    // it; a cluster kprov does not own names its registry (its ConfigMap), read once connected.
    let registry = profile.local_registry();
    match (registry, opts.existing_cluster) {
        (true, false) => {
            tasks.push(task(REGISTRY.into(), TaskKind::Registry, vec![], None));
            tasks.push(task(
                CLUSTER.into(),
                TaskKind::Cluster,
                vec![REGISTRY.into()],
                None,
            ));
        }
        (true, true) => {
            tasks.push(task(CLUSTER.into(), TaskKind::Cluster, vec![], None));
            tasks.push(task(
                REGISTRY.into(),
                TaskKind::Registry,
                vec![CLUSTER.into()],
                None,
            ));
        }
        (false, _) => tasks.push(task(CLUSTER.into(), TaskKind::Cluster, vec![], None)),
    }
    let mut setup = Vec::new();
    if !spec.crds.is_empty() {
        tasks.push(task(
            CRDS.into(),
            TaskKind::Crds,
            vec![CLUSTER.into()],
            None,
        ));
        tasks.push(task(
            ESTABLISHED.into(),
            TaskKind::Established,
            vec![CRDS.into()],
            None,
        ));
        setup.push(ESTABLISHED.to_string());
    }
    let c = &spec.config;
    let has_config = !(c.namespaces.is_empty()
        && c.config_maps.is_empty()
        && c.secrets.iter().all(|s| s.is_late())
        && c.tls.is_none()
        && c.manifests.is_empty())
        || profile.namespace() != "default";
    if has_config {
        tasks.push(task(
            CONFIG.into(),
            TaskKind::Config,
            vec![CLUSTER.into()],
            None,
        ));
        setup.push(CONFIG.to_string());
    }
    if setup.is_empty() {
        setup.push(CLUSTER.to_string());
    }
    let mut loaded = BTreeMap::new();
    for name in spec.images.keys() {
        if nodes_pull(profile, name) {
            continue;
        }
        if registry {
            // One push whatever the number of nodes; the nodes pull it.
            tasks.push(task(
                push_id(name),
                TaskKind::Push,
                vec![build_id(profile, name), REGISTRY.into()],
                Some(name),
            ));
            loaded.insert(name.clone(), push_id(name));
        } else if opts.existing_cluster {
            loaded.insert(name.clone(), build_id(profile, name));
        } else {
            tasks.push(task(
                load_id(name),
                TaskKind::Load,
                vec![build_id(profile, name), CLUSTER.into()],
                Some(name),
            ));
            loaded.insert(name.clone(), load_id(name));
        }
    }
    // Components, hooks, steps and run-time values, each after its images, the setup and
    // what it follows or uses, in dependency order.
    // Kahn's algorithm, always taking the smallest ready id: linear in units and edges (a
    // scan for the first ready unit was quadratic on long dependency chains).
    let mut pending = units(profile, opts)?;
    let mut waiting_on: BTreeMap<String, usize> = BTreeMap::new();
    let mut followers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, u) in &pending {
        let inside: BTreeSet<&String> = u
            .after
            .iter()
            .filter(|a| pending.contains_key(*a))
            .collect();
        waiting_on.insert(id.clone(), inside.len());
        for a in inside {
            followers.entry(a.clone()).or_default().push(id.clone());
        }
    }
    let mut ready: BTreeSet<String> = waiting_on
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| id.clone())
        .collect();
    let mut workloads = Vec::new();
    while !pending.is_empty() {
        let Some(id) = ready.pop_first() else {
            return Err(PlanError::Cycle(cycle(&pending)));
        };
        for f in followers.get(&id).into_iter().flatten() {
            let n = waiting_on.get_mut(f).expect("every unit counted");
            *n -= 1;
            if *n == 0 {
                ready.insert(f.clone());
            }
        }
        let unit = pending.remove(&id).expect("ready units are pending");
        let mut deps: Vec<String> = setup.clone();
        deps.extend(unit.images.iter().filter_map(|i| loaded.get(i).cloned()));
        deps.extend(unit.after.iter().cloned());
        let deps: Vec<String> = deps
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        tasks.push(task(id.clone(), unit.kind, deps, Some(&unit.subject)));
        if unit.kind != TaskKind::Value {
            workloads.push(id);
        }
    }
    if workloads.is_empty() {
        workloads = setup;
    }
    tasks.push(task(WAIT.into(), TaskKind::Wait, workloads, None));
    Ok(tasks)
}

/// One cycle among the units that could not be ordered, as `deploy:a -> value:t -> deploy:a`.
fn cycle(pending: &BTreeMap<String, Unit<'_>>) -> Vec<String> {
    let start = pending.keys().next().expect("non-empty").as_str();
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = pending[at]
            .after
            .iter()
            .map(String::as_str)
            .find(|a| pending.contains_key(*a))
            .expect("stuck means a pending dep");
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut c: Vec<String> = path[pos..].iter().map(|s| s.to_string()).collect();
            c.push(next.to_string());
            return c;
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(cluster: &str) -> Profile {
        let text = format!(
            "service: s\n{cluster}images:\n  api:\n    build: {{context: .}}\n  db:\n    external: postgres:16\ncomponents:\n  api:\n    manifests: []\n    images: [api, db]\n"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), text).unwrap();
        crate::profile::load(dir.path(), "s").unwrap()
    }

    fn deps<'a>(tasks: &'a [PlannedTask], id: &str) -> &'a [String] {
        &tasks.iter().find(|t| t.id == id).expect(id).deps
    }

    #[test]
    fn a_local_registry_pushes_each_image_once_instead_of_loading_it() {
        let p = profile("cluster:\n  registry: local\n");
        let tasks = tasks_for(&p, &PlanOptions::default()).unwrap();
        assert!(tasks.iter().all(|t| t.kind != TaskKind::Load), "{tasks:?}");
        assert_eq!(deps(&tasks, REGISTRY), [] as [String; 0]);
        assert_eq!(deps(&tasks, CLUSTER), [REGISTRY]);
        assert_eq!(deps(&tasks, "push:api"), ["build:api", REGISTRY]);
        assert_eq!(deps(&tasks, "push:db"), ["pull:db", REGISTRY]);
        assert_eq!(deps(&tasks, "deploy:api"), [CLUSTER, "push:api", "push:db"]);
    }

    #[test]
    fn a_cluster_kprov_does_not_own_is_asked_for_its_registry_once_connected() {
        let p = profile("cluster:\n  registry: local\n");
        let opts = PlanOptions {
            existing_cluster: true,
            ..Default::default()
        };
        let tasks = tasks_for(&p, &opts).unwrap();
        assert_eq!(deps(&tasks, CLUSTER), [] as [String; 0]);
        assert_eq!(deps(&tasks, REGISTRY), [CLUSTER]);
        assert_eq!(deps(&tasks, "push:api"), ["build:api", REGISTRY]);
        // Without a registry nothing reaches such a cluster's nodes: no loads, no pushes.
        let tasks = tasks_for(&profile(""), &opts).unwrap();
        assert!(
            tasks
                .iter()
                .all(|t| !matches!(t.kind, TaskKind::Load | TaskKind::Push | TaskKind::Registry))
        );
    }

    #[test]
    fn an_answer_value_follows_its_step_and_a_component_may_follow_a_step() {
        let text = "service: s\ncomponents:\n  gw:\n    manifests: []\n    dependsOn: [seed]\nhooks:\n  h:\n    manifests: []\n    after: [seed]\nruntime:\n  id:\n    httpResponse: {step: register, path: .id}\nsteps:\n  register:\n    http: {url: \"http://x/\"}\n  seed:\n    after: [register]\n    http: {url: \"http://x/{{ runtime.id }}\"}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), text).unwrap();
        let p = crate::profile::load(dir.path(), "s").unwrap();
        let tasks = tasks_for(&p, &PlanOptions::default()).unwrap();
        assert_eq!(deps(&tasks, "value:id"), [CLUSTER, "step:register"]);
        assert_eq!(
            deps(&tasks, "step:seed"),
            [CLUSTER, "step:register", "value:id"]
        );
        assert_eq!(deps(&tasks, "deploy:gw"), [CLUSTER, "step:seed"]);
        assert_eq!(deps(&tasks, "hook:h"), [CLUSTER, "step:seed"]);
        let order: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        let at = |id: &str| order.iter().position(|t| *t == id).unwrap();
        assert!(at("step:register") < at("value:id") && at("value:id") < at("step:seed"));
        assert!(at("step:seed") < at("deploy:gw"));
    }

    #[test]
    fn a_secret_with_after_is_its_own_task_after_what_it_follows_and_out_of_the_batch() {
        // Two Secrets named pull: one for the batch, one in the namespace the release makes.
        let text = "service: s\nnamespace: app\nconfig:\n  secrets:\n    - {name: pull, stringData: {k: v}}\n    - {name: pull, namespace: tekton, stringData: {k: v}, after: [release]}\ncomponents:\n  release:\n    manifests: []\nruntime:\n  k:\n    key: {name: pull, namespace: tekton, key: k}\n  batched:\n    key: {name: pull, key: k}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), text).unwrap();
        let p = crate::profile::load(dir.path(), "s").unwrap();
        let tasks = tasks_for(&p, &PlanOptions::default()).unwrap();
        let late = "secret:tekton/pull";
        let t = tasks.iter().find(|t| t.id == late).expect(late);
        assert_eq!(
            (t.kind, t.phase),
            (TaskKind::Secret, super::super::Phase::Deploy)
        );
        assert_eq!(t.subject.as_deref(), Some("tekton/pull"));
        assert_eq!(deps(&tasks, late), [CONFIG, "deploy:release"]);
        // A value read from it follows it; one read from the batch's Secret does not.
        assert_eq!(deps(&tasks, "value:k"), [CONFIG, late]);
        assert_eq!(deps(&tasks, "value:batched"), [CONFIG]);
        assert!(deps(&tasks, WAIT).contains(&late.to_string()));
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids.iter().filter(|i| i.starts_with("secret:")).count(), 1);
    }

    #[test]
    fn a_late_secret_naming_no_unit_or_given_twice_is_a_plan_error() {
        let plan = |secrets: &str| {
            let text = format!(
                "service: s\nconfig:\n  secrets:\n{secrets}components:\n  a:\n    manifests: []\n"
            );
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("s.yaml"), text).unwrap();
            let p = crate::profile::load(dir.path(), "s").unwrap();
            tasks_for(&p, &PlanOptions::default())
        };
        let ghost = plan("    - {name: x, stringData: {k: v}, after: [ghost]}\n").unwrap_err();
        assert_eq!(
            ghost.to_string(),
            "secret:default/x names \"ghost\", which is no component, hook or step"
        );
        let twice = "    - {name: x, stringData: {k: v}, after: [a]}\n    - {name: x, namespace: default, stringData: {k: v}, after: [a]}\n";
        assert_eq!(
            plan(twice).unwrap_err(),
            PlanError::Duplicate("secret:default/x".into())
        );
    }
}
