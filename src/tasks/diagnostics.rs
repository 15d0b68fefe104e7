//! What went wrong, for a person: the blocking objects explained, and a bundle on disk.
//!
//! For each object that blocked the wait: its reason, its latest events (and those of its pods
//! and ReplicaSets) and the tail of its containers' logs go into the error message. The bundle
//! (in the spirit of `kind export logs`) holds, under the directory it prints:
//!
//! ```text
//! summary.txt                       the error, as printed
//! objects/<Kind>_<ns>_<name>.yaml   each blocking object as the API has it
//! pods/<ns>_<pod>.yaml              their pods, with statuses
//! pods/<ns>_<pod>_<container>.log   log tails (.previous.log: the last crashed run)
//! events/<ns>.txt                   every event of the namespaces involved, oldest first
//! cluster/nodes.yaml                the API's Node objects
//! nodes/<node>/inspect.json         `docker inspect` of each node container
//! nodes/<node>/images.txt           `ctr -n k8s.io images ls` in it
//! ```
//!
//! Secrets are never written. Collecting is best effort: a failure to collect one item is
//! written in its place and never hides the original error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::adapters::docker::Engine;
use crate::adapters::kind;
use crate::adapters::kube::{Kube, Object, ObjectRef};
use crate::tasks::wait::{Outcome, pod_selector};

/// Lines of each container log in the error message (the bundle keeps more).
const MESSAGE_LOG_LINES: usize = 10;
const BUNDLE_LOG_LINES: i64 = 200;
const MESSAGE_EVENTS: usize = 5;
/// Collecting diagnostics must not hang a failed run.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the bundle goes and which nodes to look into.
#[derive(Debug, Clone, Default)]
pub struct DiagnosticsSpec {
    /// Created if missing; files in it are overwritten.
    pub dir: PathBuf,
    /// For per-node facts; `None` in existing-cluster mode.
    pub engine: Option<Engine>,
    /// Node container names.
    pub nodes: Vec<String>,
}

/// What a blocked readiness check was waiting on.
#[derive(Debug, Clone)]
pub enum Subject {
    Object(ObjectRef),
    Http(String),
}

/// One check that did not end ready.
#[derive(Debug, Clone)]
pub struct Blocker {
    pub component: String,
    pub subject: Subject,
    pub outcome: Outcome,
}

/// What was found about one blocking object.
#[derive(Debug, Default)]
struct Findings {
    object: Option<Object>,
    pods: Vec<Object>,
    events: Vec<String>,
    /// (pod, container, previous run?, text)
    logs: Vec<(String, String, bool, String)>,
    problems: Vec<String>,
}

/// Explains every blocker and writes the bundle; returns the error message: `headline`,
/// `(diagnostics: DIR)`, then one block per blocker.
pub async fn report(
    kube: &Kube,
    headline: &str,
    blockers: &[Blocker],
    spec: &DiagnosticsSpec,
    cancel: &CancellationToken,
) -> String {
    let collected = tokio::select! {
        r = tokio::time::timeout(COLLECT_TIMEOUT, collect(kube, blockers)) => r.ok(),
        () = cancel.cancelled() => None,
    };
    let findings =
        collected.unwrap_or_else(|| blockers.iter().map(|_| Findings::default()).collect());
    let mut text = String::new();
    for (b, f) in blockers.iter().zip(&findings) {
        let what = match &b.subject {
            Subject::Object(r) => r.to_string(),
            Subject::Http(url) => format!("GET {url}"),
        };
        let _ = write!(
            text,
            "\n  {}: {what}: {}",
            b.component,
            b.outcome.describe()
        );
        if !f.events.is_empty() {
            text.push_str("\n    latest events:");
            for e in f.events.iter().rev().take(MESSAGE_EVENTS).rev() {
                let _ = write!(text, "\n      {e}");
            }
        }
        for (pod, container, previous, log) in &f.logs {
            let run = if *previous { ", previous run" } else { "" };
            let _ = write!(text, "\n    log of {pod}/{container}{run} (last lines):");
            for line in kind::tail(log, MESSAGE_LOG_LINES).lines() {
                let _ = write!(text, "\n      | {line}");
            }
        }
    }
    let summary = format!("{headline}{text}\n");
    match write_bundle(kube, blockers, &findings, spec, &summary).await {
        Ok(dir) => format!("{headline} (diagnostics: {}){text}", dir.display()),
        Err(e) => format!("{headline} (no diagnostics bundle: {e}){text}"),
    }
}

async fn collect(kube: &Kube, blockers: &[Blocker]) -> Vec<Findings> {
    let mut events_by_ns: BTreeMap<String, Result<Vec<Object>, String>> = BTreeMap::new();
    for b in blockers {
        if let Subject::Object(r) = &b.subject
            && let Some(ns) = &r.namespace
            && !events_by_ns.contains_key(ns)
        {
            let events = kube
                .list("v1", "Event", Some(ns), None)
                .await
                .map_err(|e| e.to_string());
            events_by_ns.insert(ns.clone(), events.map(sort_events));
        }
    }
    let mut all = Vec::new();
    for b in blockers {
        let Subject::Object(r) = &b.subject else {
            all.push(Findings::default());
            continue;
        };
        all.push(collect_one(kube, r, &events_by_ns).await);
    }
    all
}

async fn collect_one(
    kube: &Kube,
    r: &ObjectRef,
    events_by_ns: &BTreeMap<String, Result<Vec<Object>, String>>,
) -> Findings {
    let mut f = Findings::default();
    match kube.get(r).await {
        Ok(o) => f.object = o,
        Err(e) => f.problems.push(e.to_string()),
    }
    if let Some(o) = &f.object
        && let (Some(sel), Some(ns)) = (pod_selector(&r.kind, o), r.namespace.as_deref())
    {
        match kube.list("v1", "Pod", Some(ns), Some(&sel)).await {
            Ok(p) => f.pods = p,
            Err(e) => f.problems.push(e.to_string()),
        }
    }
    if let Some(ns) = &r.namespace {
        match events_by_ns.get(ns) {
            Some(Ok(events)) => {
                let pods: Vec<&str> = f.pods.iter().map(Object::name).collect();
                f.events = events
                    .iter()
                    .filter(|e| concerns(e, r, &pods))
                    .map(describe_event)
                    .collect();
            }
            Some(Err(e)) => f.problems.push(e.clone()),
            None => {}
        }
    }
    for pod in f.pods.iter().take(3) {
        let ns = pod.namespace().unwrap_or_default();
        for (container, restarts, started) in containers(pod) {
            // A container that never started has no log; one that restarted explains itself
            // in its previous run.
            if !started && restarts == 0 {
                continue;
            }
            let previous = restarts > 0;
            let log = match kube
                .logs(ns, pod.name(), &container, BUNDLE_LOG_LINES, previous)
                .await
            {
                Err(_) if previous => kube
                    .logs(ns, pod.name(), &container, BUNDLE_LOG_LINES, false)
                    .await
                    .map(|l| (l, false)),
                other => other.map(|l| (l, previous)),
            };
            match log {
                Ok((text, prev)) if !text.trim().is_empty() => {
                    f.logs.push((pod.name().into(), container, prev, text))
                }
                Ok(_) => {}
                Err(e) => f.problems.push(e.to_string()),
            }
        }
    }
    f
}

/// (name, restart count, ever started) of each container of a pod, init containers first.
fn containers(pod: &Object) -> Vec<(String, i64, bool)> {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| pod.get(p).and_then(Value::as_array))
        .flatten()
        .map(|cs| {
            let name = cs
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let restarts = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            let started = cs.pointer("/state/running").is_some()
                || cs.pointer("/state/terminated").is_some()
                || cs.pointer("/lastState/terminated").is_some();
            (name, restarts, started)
        })
        .collect()
}

/// An event about the object, one of its pods, or one of its ReplicaSets (`<name>-<hash>`).
fn concerns(event: &Object, r: &ObjectRef, pods: &[&str]) -> bool {
    let name = event
        .get("/involvedObject/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = event
        .get("/involvedObject/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (kind == r.kind && name == r.name)
        || (kind == "Pod" && pods.contains(&name))
        || (kind == "ReplicaSet"
            && name
                .strip_prefix(&r.name)
                .is_some_and(|s| s.starts_with('-')))
        || (kind == "Pod"
            && r.kind == "Job"
            && name
                .strip_prefix(&r.name)
                .is_some_and(|s| s.starts_with('-')))
}

fn event_time(e: &Object) -> String {
    [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| e.get(p).and_then(Value::as_str).filter(|s| !s.is_empty()))
    .unwrap_or_default()
    .to_string()
}

/// Oldest first; within one second (the timestamps' resolution), in the order the API
/// stored them.
fn sort_events(mut events: Vec<Object>) -> Vec<Object> {
    let stored = |e: &Object| {
        e.resource_version()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    events.sort_by_key(|e| (event_time(e), stored(e)));
    events
}

/// `2026-01-01T10:00:00Z Warning BackOff Pod/x: Back-off restarting failed container (x4)`
fn describe_event(e: &Object) -> String {
    let s = |p: &str| e.get(p).and_then(Value::as_str).unwrap_or_default();
    let count = e.get("/count").and_then(Value::as_i64).unwrap_or(1);
    let count = if count > 1 {
        format!(" (x{count})")
    } else {
        String::new()
    };
    format!(
        "{} {} {} {}/{}: {}{count}",
        event_time(e),
        s("/type"),
        s("/reason"),
        s("/involvedObject/kind"),
        s("/involvedObject/name"),
        s("/message").trim()
    )
}

fn file_name(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.replace(
                |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'),
                "-",
            )
        })
        .collect::<Vec<_>>()
        .join("_")
}

fn to_yaml(o: &Object) -> String {
    let mut v = o.value.clone();
    // Managed fields are noise for a person reading why a pod is stuck.
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    serde_saphyr::to_string(&v).unwrap_or_else(|e| format!("# cannot render: {e}\n{v}"))
}

async fn write_bundle(
    kube: &Kube,
    blockers: &[Blocker],
    findings: &[Findings],
    spec: &DiagnosticsSpec,
    summary: &str,
) -> Result<PathBuf, String> {
    let dir = &spec.dir;
    let mkdir = |d: &Path| {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))
    };
    mkdir(dir)?;
    let write = |path: PathBuf, body: &str| {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&path, body).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(dir.join("summary.txt"), summary)?;
    let mut namespaces = Vec::new();
    for (b, f) in blockers.iter().zip(findings) {
        if let Subject::Object(r) = &b.subject {
            let ns = r.namespace.as_deref().unwrap_or("");
            if !ns.is_empty() && !namespaces.contains(&ns) {
                namespaces.push(ns);
            }
            let body = match &f.object {
                Some(o) => to_yaml(o),
                None => format!("# {r}: not found\n"),
            };
            write(
                dir.join("objects")
                    .join(format!("{}.yaml", file_name(&[&r.kind, ns, &r.name]))),
                &body,
            )?;
        }
        for pod in &f.pods {
            let ns = pod.namespace().unwrap_or_default();
            write(
                dir.join("pods")
                    .join(format!("{}.yaml", file_name(&[ns, pod.name()]))),
                &to_yaml(pod),
            )?;
        }
        for (pod, container, previous, log) in &f.logs {
            let ns = match &b.subject {
                Subject::Object(r) => r.namespace.as_deref().unwrap_or_default(),
                Subject::Http(_) => "",
            };
            let suffix = if *previous { "previous.log" } else { "log" };
            write(
                dir.join("pods")
                    .join(format!("{}.{suffix}", file_name(&[ns, pod, container]))),
                log,
            )?;
        }
        if !f.problems.is_empty() {
            let name = match &b.subject {
                Subject::Object(r) => {
                    file_name(&[&r.kind, r.namespace.as_deref().unwrap_or(""), &r.name])
                }
                Subject::Http(_) => "http".into(),
            };
            write(
                dir.join("problems").join(format!("{name}.txt")),
                &f.problems.join("\n"),
            )?;
        }
    }
    for ns in namespaces {
        let body = match kube.list("v1", "Event", Some(ns), None).await {
            Ok(events) => sort_events(events)
                .iter()
                .map(describe_event)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("cannot list events: {e}"),
        };
        write(
            dir.join("events").join(format!("{}.txt", file_name(&[ns]))),
            &body,
        )?;
    }
    let nodes = match kube.list("v1", "Node", None, None).await {
        Ok(nodes) => nodes.iter().map(to_yaml).collect::<Vec<_>>().join("---\n"),
        Err(e) => format!("# cannot list nodes: {e}\n"),
    };
    write(dir.join("cluster").join("nodes.yaml"), &nodes)?;
    if let Some(engine) = &spec.engine {
        let cancel = CancellationToken::new();
        for node in &spec.nodes {
            let node_dir = dir.join("nodes").join(file_name(&[node]));
            let inspect = match engine.inspect_container_json(node).await {
                Ok(Some(v)) => serde_json::to_string_pretty(&v).unwrap_or_default(),
                Ok(None) => "no such container".into(),
                Err(e) => e.to_string(),
            };
            write(node_dir.join("inspect.json"), &inspect)?;
            let images = match engine
                .exec(node, &["ctr", "-n", "k8s.io", "images", "ls"], &cancel)
                .await
            {
                Ok(out) if out.success() => out.stdout,
                Ok(out) => format!("ctr exited {}:\n{}", out.exit_code, out.tail(20)),
                Err(e) => e.to_string(),
            };
            write(node_dir.join("images.txt"), &images)?;
        }
    }
    Ok(dir.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, name: &str, reason: &str, at: &str) -> Object {
        Object::new(
            json!({"kind": "Event", "type": "Warning", "reason": reason, "message": "m ", "count": 2,
                "lastTimestamp": at, "involvedObject": {"kind": kind, "name": name}}),
            "t",
        )
    }

    #[test]
    fn events_of_the_object_its_replicasets_and_pods_concern_it() {
        let r = ObjectRef::new("apps/v1", "Deployment", Some("n"), "ds");
        assert!(concerns(&event("Deployment", "ds", "x", ""), &r, &[]));
        assert!(concerns(&event("ReplicaSet", "ds-5d8f", "x", ""), &r, &[]));
        assert!(concerns(
            &event("Pod", "ds-5d8f-abc", "x", ""),
            &r,
            &["ds-5d8f-abc"]
        ));
        assert!(!concerns(&event("Deployment", "dsx", "x", ""), &r, &[]));
        assert!(!concerns(&event("ReplicaSet", "dsx-1", "x", ""), &r, &[]));
        assert!(!concerns(&event("Pod", "other", "x", ""), &r, &["ds-1"]));
    }

    #[test]
    fn events_read_oldest_first_in_one_line_each() {
        let sorted = sort_events(vec![
            event("Pod", "p", "B", "2026-01-01T00:00:02Z"),
            event("Pod", "p", "A", "2026-01-01T00:00:01Z"),
        ]);
        assert_eq!(
            describe_event(&sorted[0]),
            "2026-01-01T00:00:01Z Warning A Pod/p: m (x2)"
        );
    }

    #[test]
    fn only_containers_that_ran_have_logs_to_read() {
        let pod = Object::new(
            json!({"status": {"containerStatuses": [
                {"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull"}}},
                {"name": "b", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}},
                {"name": "c", "restartCount": 0, "state": {"running": {}}}]}}),
            "t",
        );
        assert_eq!(
            containers(&pod),
            [
                ("a".into(), 0, false),
                ("b".into(), 2, true),
                ("c".into(), 0, true)
            ]
        );
    }

    #[test]
    fn bundle_file_names_are_safe() {
        assert_eq!(
            file_name(&["Deployment", "ns", "a/b c"]),
            "Deployment_ns_a-b-c"
        );
        assert_eq!(file_name(&["Node", "", "x"]), "Node_x");
    }
}
