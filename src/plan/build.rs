//! Profile → the task DAG, with the edges DESIGN.md gives.

use std::collections::BTreeMap;

use super::{PlannedTask, TaskKind};
use crate::profile::Profile;

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Use a cluster kprov did not create (`--kubeconfig`/`--context`): no create, no loads.
    pub existing_cluster: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("dependency cycle between components and hooks: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

pub const CLUSTER: &str = "cluster:create";
pub const CRDS: &str = "apply:crds";
pub const ESTABLISHED: &str = "wait:crds";
pub const CONFIG: &str = "apply:config";
pub const WAIT: &str = "wait:ready";

pub fn build_id(profile: &Profile, image: &str) -> String {
    let external = profile
        .spec
        .images
        .get(image)
        .is_some_and(|i| i.external.is_some());
    format!("{}:{image}", if external { "pull" } else { "build" })
}

pub fn load_id(image: &str) -> String {
    format!("load:{image}")
}

pub fn workload_id(profile: &Profile, name: &str) -> String {
    if profile.spec.hooks.contains_key(name) {
        format!("hook:{name}")
    } else {
        format!("deploy:{name}")
    }
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
    for (name, img) in &spec.images {
        let kind = if img.external.is_some() {
            TaskKind::Pull
        } else {
            TaskKind::Build
        };
        tasks.push(task(build_id(profile, name), kind, vec![], Some(name)));
    }
    tasks.push(task(CLUSTER.into(), TaskKind::Cluster, vec![], None));
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
        && c.secrets.is_empty()
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
        if opts.existing_cluster {
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
    // Components and hooks, each after its images, the setup and its own dependencies.
    let mut pending: BTreeMap<&str, (TaskKind, &Vec<String>, &Vec<String>)> = BTreeMap::new();
    for (n, comp) in &spec.components {
        pending.insert(n, (TaskKind::Deploy, &comp.images, &comp.depends_on));
    }
    for (n, hook) in &spec.hooks {
        pending.insert(n, (TaskKind::Hook, &hook.images, &hook.after));
    }
    let mut workloads = Vec::new();
    while !pending.is_empty() {
        let next = pending
            .iter()
            .find(|(_, (_, _, after))| after.iter().all(|a| !pending.contains_key(a.as_str())))
            .map(|(n, _)| *n);
        let Some(name) = next else {
            return Err(PlanError::Cycle(cycle(&pending)));
        };
        let (kind, images, after) = pending.remove(name).expect("found above");
        let mut deps: Vec<String> = setup.clone();
        deps.extend(images.iter().filter_map(|i| loaded.get(i).cloned()));
        deps.extend(after.iter().map(|a| workload_id(profile, a)));
        let id = workload_id(profile, name);
        tasks.push(task(id.clone(), kind, deps, Some(name)));
        workloads.push(id);
    }
    if workloads.is_empty() {
        workloads = setup;
    }
    tasks.push(task(WAIT.into(), TaskKind::Wait, workloads, None));
    Ok(tasks)
}

/// One cycle among the workloads that could not be ordered, as `a -> b -> a`.
fn cycle(pending: &BTreeMap<&str, (TaskKind, &Vec<String>, &Vec<String>)>) -> Vec<String> {
    let start = *pending.keys().next().expect("non-empty");
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = pending[at]
            .2
            .iter()
            .map(String::as_str)
            .find(|a| pending.contains_key(a))
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
