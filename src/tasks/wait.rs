//! The single wait point: every workload of every component watched until ready, all at once.
//!
//! ```text
//! wait_ready(kube, &[WaitTarget { component, objects, http, deadline }], ctx, &diagnostics)
//! ```
//!
//! Watch-based: each object (and its pods) is watched and judged on every change; nothing
//! sleeps for a fixed time. The one poll is an HTTP readiness URL checked from the host, with
//! a short backoff. Readiness, as `kubectl rollout status` judges it:
//! - Deployment: `observedGeneration >= generation`, `updatedReplicas == replicas`, no old
//!   replicas left (`status.replicas == updatedReplicas`), `availableReplicas >= updatedReplicas`;
//!   failed when Progressing has reason `ProgressDeadlineExceeded`.
//! - StatefulSet: observed, `readyReplicas == replicas`, on the update revision.
//! - Job: condition `Complete`; `Failed` is a failure.
//! - Anything else: it exists.
//!
//! A pod that can never start (`ErrImageNeverPull`, `InvalidImageName`) fails its workload at
//! once, and the first failure stops the wait (fail-fast). Other pod troubles
//! (`CrashLoopBackOff`, `ImagePullBackOff`...) may clear, so they are reported when the object's
//! deadline passes. Either way the error names each blocking object with its reason, latest
//! events and log tail, and points at a diagnostics bundle (see [`crate::tasks::diagnostics`]).

use std::{collections::BTreeMap, pin::Pin, time::Duration};

use futures::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapters::http::{HttpProber, Probe};
use crate::adapters::kube::{Kube, Object, ObjectRef};
use crate::engine::{TaskCtx, TaskError};
use crate::tasks::diagnostics::{self, Blocker, DiagnosticsSpec, Subject};

/// What one component needs before it counts as ready.
#[derive(Debug, Clone)]
pub struct WaitTarget {
    pub component: String,
    /// Its Deployments, StatefulSets and Jobs (other kinds only need to exist).
    pub objects: Vec<ObjectRef>,
    /// A URL checked from the host until it answers 2xx.
    pub http: Option<String>,
    /// From the start of the wait.
    pub deadline: Duration,
}

/// A judgement of one object at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ready,
    /// Not yet, and why.
    Pending(String),
    /// Never will be, and why.
    Failed(String),
}

/// How waiting on one thing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    Failed(String),
    /// The deadline passed; the last reason it was pending.
    TimedOut(String),
    /// Stopped early (another object failed, or cancellation); the last reason.
    Stopped(String),
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::Ready => "ready".into(),
            Outcome::Failed(why) => why.clone(),
            Outcome::TimedOut(why) => format!("not ready by its deadline: {why}"),
            Outcome::Stopped(why) => format!("still waiting when the wait stopped: {why}"),
        }
    }
}

type Judge<'a> = &'a (dyn Fn(Option<&Object>, &[Object]) -> State + Sync);

/// Watches `r` (and, for workloads, its pods) until `judge` says ready or failed, `until`
/// passes, or `stop` fires.
pub async fn watch_until(
    kube: &Kube,
    r: &ObjectRef,
    until: Instant,
    stop: &CancellationToken,
    judge: Judge<'_>,
) -> Outcome {
    watch_object(kube, r, until, stop, judge, false, &|_| {}).await
}

type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<Vec<Object>, crate::adapters::kube::KubeError>> + Send>>;

async fn watch_object(
    kube: &Kube,
    r: &ObjectRef,
    until: Instant,
    stop: &CancellationToken,
    judge: Judge<'_>,
    follow_pods: bool,
    on_change: &(dyn Fn(&str) + Sync),
) -> Outcome {
    let mut objects = match kube.watch(r).await {
        Ok(s) => s.boxed(),
        // An unknown kind or a refused watch: nothing to wait for will ever come.
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let mut pods: SnapshotStream = futures::stream::pending().boxed();
    let mut pods_selector: Option<String> = None;
    let mut current: Option<Object> = None;
    let mut seen = false;
    let mut pod_list: Vec<Object> = Vec::new();
    let mut watch_error: Option<String> = None;
    let mut last_reason = String::new();
    loop {
        let state = if seen {
            judge(current.as_ref(), &pod_list)
        } else {
            State::Pending(
                watch_error
                    .clone()
                    .unwrap_or_else(|| "not observed yet".into()),
            )
        };
        let reason = match state {
            State::Ready => return Outcome::Ready,
            State::Failed(why) => return Outcome::Failed(why),
            State::Pending(why) => why,
        };
        if reason != last_reason {
            on_change(&reason);
            last_reason = reason;
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => return Outcome::TimedOut(last_reason),
            () = stop.cancelled() => return Outcome::Stopped(last_reason),
            item = objects.next() => match item {
                Some(Ok(o)) => {
                    seen = true;
                    watch_error = None;
                    current = o;
                    if follow_pods
                        && let Some(obj) = &current
                        && let (Some(sel), Some(ns)) = (pod_selector(&r.kind, obj), obj.namespace())
                        && pods_selector.as_deref() != Some(&sel)
                    {
                        // On failure the selector stays unset: the next change tries again.
                        match kube.watch_list("v1", "Pod", ns, &sel).await {
                            Ok(s) => {
                                pods = s.boxed();
                                pods_selector = Some(sel);
                            }
                            Err(e) => watch_error = Some(e.to_string()),
                        }
                    }
                }
                Some(Err(e)) => watch_error = Some(e.to_string()),
                None => return Outcome::Failed(format!("the watch of {r} ended")),
            },
            Some(item) = pods.next() => match item {
                Ok(list) => pod_list = list,
                Err(e) => watch_error = Some(e.to_string()),
            },
        }
    }
}

/// The label selector of a workload's pods (`app=x,tier=y`), from `spec.selector.matchLabels`
/// (a Job without one: `job-name=<name>`). `kind` is the kind kprov asked the API for.
pub fn pod_selector(kind: &str, o: &Object) -> Option<String> {
    let labels = o
        .get("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    match labels {
        Some(map) if !map.is_empty() => Some(
            map.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ if kind == "Job" => Some(format!("job-name={}", o.name())),
        _ => None,
    }
}

fn int(o: &Object, pointer: &str) -> i64 {
    o.get(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn condition<'a>(o: &'a Object, kind: &str) -> Option<&'a Value> {
    o.get("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn field<'a>(c: &'a Value, name: &str) -> &'a str {
    c.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The controller has seen the latest spec (else its status describes an older one).
fn observed(o: &Object) -> Option<State> {
    let generation = int(o, "/metadata/generation");
    let observed = int(o, "/status/observedGeneration");
    (observed < generation).then(|| {
        State::Pending(format!(
            "waiting for the controller to observe generation {generation}"
        ))
    })
}

/// A Deployment's readiness. The Progressing condition is read only once the controller has
/// observed the latest generation and the rollout is not complete: a condition left from an
/// earlier rollout (a `--reuse` of a Deployment that once timed out) says nothing of this one.
pub fn deployment_state(o: &Object) -> State {
    if let Some(pending) = observed(o) {
        return pending;
    }
    let replicas = o.get("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let updated = int(o, "/status/updatedReplicas");
    let total = int(o, "/status/replicas");
    let available = int(o, "/status/availableReplicas");
    let pending = if updated < replicas {
        format!("{updated} of {replicas} replicas updated")
    } else if total > updated {
        format!("{} old replicas pending termination", total - updated)
    } else if available < updated {
        format!("{available} of {updated} updated replicas available")
    } else {
        return State::Ready;
    };
    match condition(o, "Progressing") {
        Some(c) if field(c, "reason") == "ProgressDeadlineExceeded" => {
            State::Failed(format!("ProgressDeadlineExceeded: {}", field(c, "message")))
        }
        _ => State::Pending(pending),
    }
}

pub fn statefulset_state(o: &Object) -> State {
    if let Some(pending) = observed(o) {
        return pending;
    }
    let replicas = o.get("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = int(o, "/status/readyReplicas");
    let current = o.get("/status/currentRevision").and_then(Value::as_str);
    let update = o.get("/status/updateRevision").and_then(Value::as_str);
    if ready < replicas {
        return State::Pending(format!("{ready} of {replicas} replicas ready"));
    }
    if let (Some(c), Some(u)) = (current, update)
        && c != u
        && int(o, "/status/updatedReplicas") < replicas
    {
        return State::Pending(format!("rolling out revision {u}"));
    }
    State::Ready
}

pub fn job_state(o: &Object) -> State {
    let is_true = |c: &Value| field(c, "status") == "True";
    if let Some(c) = condition(o, "Failed").filter(|c| is_true(c)) {
        return State::Failed(
            format!("Job failed: {} {}", field(c, "reason"), field(c, "message"))
                .trim_end()
                .to_string(),
        );
    }
    if condition(o, "Complete").is_some_and(is_true) {
        return State::Ready;
    }
    State::Pending(format!(
        "{} active, {} succeeded, {} failed",
        int(o, "/status/active"),
        int(o, "/status/succeeded"),
        int(o, "/status/failed")
    ))
}

/// Pod waiting reasons that never clear without a change from outside.
const HOPELESS: &[&str] = &["ErrImageNeverPull", "InvalidImageName"];

/// The image of each container of a workload's current pod template, by container name.
fn template_images(o: &Object) -> BTreeMap<&str, &str> {
    [
        "/spec/template/spec/initContainers",
        "/spec/template/spec/containers",
    ]
    .iter()
    .filter_map(|p| o.get(p).and_then(Value::as_array))
    .flatten()
    .map(|c| (field(c, "name"), field(c, "image")))
    .collect()
}

/// The image a pod's container runs, from the pod's own spec.
fn pod_image<'a>(pod: &'a Object, container: &str) -> &'a str {
    ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.get(p).and_then(Value::as_array))
        .flatten()
        .find(|c| field(c, "name") == container)
        .map_or("", |c| field(c, "image"))
}

/// What the pods of a workload say about why it is not ready: (hopeless reason, hints).
/// A container's hopeless image trouble fails the workload only when it runs the image the
/// current template names (`current`): a pod of an old ReplicaSet whose image was replaced
/// explains, but never fails, the new rollout.
pub fn pod_troubles(
    pods: &[Object],
    current: &BTreeMap<&str, &str>,
) -> (Option<String>, Vec<String>) {
    let mut hopeless = None;
    let mut hints = Vec::new();
    for pod in pods {
        let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
            .iter()
            .filter_map(|p| pod.get(p).and_then(Value::as_array))
            .flatten();
        for cs in statuses {
            let container = field(cs, "name");
            let restarts = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            let restarts = if restarts > 0 {
                format!(", {restarts} restarts")
            } else {
                String::new()
            };
            if let Some(w) = cs.pointer("/state/waiting") {
                let reason = field(w, "reason");
                if reason.is_empty() || reason == "ContainerCreating" || reason == "PodInitializing"
                {
                    continue;
                }
                let message = field(w, "message");
                let message = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                let hint = format!(
                    "pod {} container {container}: {reason}{message}{restarts}",
                    pod.name()
                );
                let replaced = current
                    .get(container)
                    .is_some_and(|image| *image != pod_image(pod, container));
                if HOPELESS.contains(&reason) && hopeless.is_none() && !replaced {
                    hopeless = Some(format!(
                        "{reason} (pod {} container {container}{message})",
                        pod.name()
                    ));
                }
                hints.push(hint);
            } else if let Some(t) = cs.pointer("/state/terminated") {
                let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
                if code != 0 {
                    hints.push(format!(
                        "pod {} container {container}: exited {code} ({}){restarts}",
                        pod.name(),
                        field(t, "reason")
                    ));
                }
            }
        }
        if let Some(c) = condition(pod, "PodScheduled")
            && field(c, "status") == "False"
        {
            hints.push(
                format!(
                    "pod {}: {} {}",
                    pod.name(),
                    field(c, "reason"),
                    field(c, "message")
                )
                .trim_end()
                .to_string(),
            );
        }
    }
    (hopeless, hints)
}

/// The judgement of a workload of kind `kind` (what kprov asked the API for, never what the
/// object happens to carry) from itself and its pods.
pub fn workload_state(kind: &str, o: Option<&Object>, pods: &[Object]) -> State {
    let Some(o) = o else {
        return State::Pending("does not exist".into());
    };
    let own = match kind {
        "Deployment" => deployment_state(o),
        "StatefulSet" => statefulset_state(o),
        "Job" => job_state(o),
        _ => State::Ready,
    };
    let (hopeless, hints) = pod_troubles(pods, &template_images(o));
    match own {
        State::Ready => State::Ready,
        State::Failed(why) if hints.is_empty() => State::Failed(why),
        State::Failed(why) => State::Failed(format!("{why}; {}", hints.join("; "))),
        State::Pending(_) if hopeless.is_some() => State::Failed(hopeless.expect("checked")),
        State::Pending(why) if hints.is_empty() => State::Pending(why),
        State::Pending(why) => State::Pending(format!("{why}; {}", hints.join("; "))),
    }
}

/// Polls `url` from the host until it answers 2xx (backoff 100 ms doubling to 2 s).
async fn wait_http(
    prober: &HttpProber,
    url: &str,
    until: Instant,
    stop: &CancellationToken,
) -> Outcome {
    let mut delay = Duration::from_millis(100);
    let mut last = "not checked yet".to_string();
    loop {
        let probe = tokio::select! {
            p = prober.probe(url) => p,
            () = tokio::time::sleep_until(until) => return Outcome::TimedOut(last),
            () = stop.cancelled() => return Outcome::Stopped(last),
        };
        match probe {
            Ok(Probe::Ready) => return Outcome::Ready,
            Ok(Probe::NotReady(why)) => last = why,
            Err(e) => return Outcome::Failed(e),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tokio::time::sleep_until(until) => return Outcome::TimedOut(last),
            () = stop.cancelled() => return Outcome::Stopped(last),
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Waits for every target at once. On failure or timeout the error names each blocking object
/// with its reason, latest events and log tail, and the diagnostics bundle written.
pub async fn wait_ready(
    kube: &Kube,
    targets: &[WaitTarget],
    ctx: &TaskCtx,
    diagnostics: &DiagnosticsSpec,
) -> Result<(), TaskError> {
    let start = Instant::now();
    let stop = ctx.cancel.child_token();
    let prober = HttpProber::new(Duration::from_secs(2)).map_err(TaskError::fatal)?;
    let mut waits = Vec::new();
    for t in targets {
        let until = start + t.deadline;
        for r in &t.objects {
            let (stop, component) = (stop.clone(), t.component.clone());
            waits.push(
                async move {
                    let report = |why: &str| ctx.progress(format!("{component}: {r}: {why}"));
                    let judge =
                        |o: Option<&Object>, pods: &[Object]| workload_state(&r.kind, o, pods);
                    let outcome = watch_object(kube, r, until, &stop, &judge, true, &report).await;
                    match &outcome {
                        Outcome::Ready => ctx.progress(format!("{component}: {r} ready")),
                        Outcome::Failed(_) => stop.cancel(),
                        _ => {}
                    }
                    (component, Subject::Object(r.clone()), outcome)
                }
                .boxed(),
            );
        }
        if let Some(url) = &t.http {
            let (stop, component, prober) = (stop.clone(), t.component.clone(), &prober);
            waits.push(
                async move {
                    let outcome = wait_http(prober, url, until, &stop).await;
                    match &outcome {
                        Outcome::Ready => ctx.progress(format!("{component}: {url} ready")),
                        Outcome::Failed(_) => stop.cancel(),
                        _ => {}
                    }
                    (component, Subject::Http(url.clone()), outcome)
                }
                .boxed(),
            );
        }
    }
    let total = waits.len();
    let outcomes = futures::future::join_all(waits).await;
    if ctx.cancel.is_cancelled() {
        return Err(TaskError::fatal("wait for readiness: cancelled"));
    }
    let blockers: Vec<Blocker> = outcomes
        .into_iter()
        .filter(|(_, _, o)| *o != Outcome::Ready)
        .map(|(component, subject, outcome)| Blocker {
            component,
            subject,
            outcome,
        })
        .collect();
    if blockers.is_empty() {
        ctx.progress(format!("{total} readiness checks passed"));
        return Ok(());
    }
    let headline = format!(
        "wait for readiness: {} of {total} checks blocked",
        blockers.len()
    );
    let message = diagnostics::report(kube, &headline, &blockers, diagnostics, &ctx.cancel).await;
    Err(TaskError::fatal(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        Object::new(v, "test")
    }

    fn deployment(generation: i64, status: Value) -> Object {
        obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n", "generation": generation},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}}, "status": status}))
    }

    #[test]
    fn a_deployment_is_complete_only_when_its_latest_generation_rolled_out() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(deployment_state(&deployment(2, done.clone())), State::Ready);
        // A re-applied Deployment whose status still describes the previous generation.
        assert!(
            matches!(deployment_state(&deployment(3, done)), State::Pending(w) if w.contains("generation 3"))
        );
        let rolling = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2});
        assert!(
            matches!(deployment_state(&deployment(2, rolling)), State::Pending(w) if w.contains("1 old replicas"))
        );
        let unavailable = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1});
        assert!(
            matches!(deployment_state(&deployment(2, unavailable)), State::Pending(w) if w.contains("1 of 2 updated"))
        );
    }

    #[test]
    fn a_workload_is_judged_by_the_kind_asked_for_not_by_what_the_item_carries() {
        // A list item of a built-in kind, as a real API server sends it: no kind, no apiVersion,
        // and a status the controller has not written yet.
        let item = obj(
            json!({"metadata": {"name": "d", "namespace": "n", "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}}}, "status": {}}),
        );
        for kind in ["Deployment", "StatefulSet", "Job"] {
            assert!(
                matches!(workload_state(kind, Some(&item), &[]), State::Pending(_)),
                "{kind}"
            );
        }
        assert_eq!(workload_state("ConfigMap", Some(&item), &[]), State::Ready);
    }

    #[test]
    fn a_stale_progress_deadline_from_an_earlier_rollout_does_not_fail_a_new_generation() {
        let stale = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "old"}]});
        assert!(matches!(
            deployment_state(&deployment(2, stale.clone())),
            State::Pending(w) if w.contains("generation 2")
        ));
        // Complete now, whatever an older condition says.
        assert_eq!(deployment_state(&deployment(1, stale)), State::Ready);
    }

    #[test]
    fn a_pod_of_an_old_replica_set_with_a_replaced_image_does_not_fail_the_rollout() {
        let mut d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1}),
        );
        d.value["spec"]["template"] =
            json!({"spec": {"containers": [{"name": "app", "image": "localhost/app:new"}]}});
        let mut old = pod("ErrImageNeverPull", 0);
        old.value["spec"] = json!({"containers": [{"name": "app", "image": "localhost/app:old"}]});
        assert!(matches!(
            workload_state("Deployment", Some(&d), &[old]),
            State::Pending(w) if w.contains("ErrImageNeverPull")
        ));
        let mut new = pod("ErrImageNeverPull", 0);
        new.value["spec"] = json!({"containers": [{"name": "app", "image": "localhost/app:new"}]});
        assert!(matches!(
            workload_state("Deployment", Some(&d), &[new]),
            State::Failed(w) if w.starts_with("ErrImageNeverPull")
        ));
    }

    #[test]
    fn a_progress_deadline_exceeded_deployment_has_failed() {
        let status = json!({"observedGeneration": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"d-1\" has timed out progressing."}]});
        assert!(
            matches!(deployment_state(&deployment(1, status)), State::Failed(w) if w.starts_with("ProgressDeadlineExceeded: ReplicaSet"))
        );
    }

    #[test]
    fn statefulsets_need_every_replica_ready_on_the_update_revision() {
        let sts = |status: Value| {
            obj(
                json!({"kind": "StatefulSet", "metadata": {"name": "s", "generation": 1}, "spec": {"replicas": 2}, "status": status}),
            )
        };
        assert!(matches!(
            statefulset_state(&sts(json!({"observedGeneration": 1, "readyReplicas": 1}))),
            State::Pending(_)
        ));
        assert_eq!(
            statefulset_state(&sts(
                json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "a"})
            )),
            State::Ready
        );
        assert!(matches!(
            statefulset_state(&sts(json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1, "currentRevision": "a", "updateRevision": "b"}))),
            State::Pending(w) if w.contains("revision b")
        ));
    }

    #[test]
    fn jobs_complete_or_fail_by_condition() {
        let job = |conds: Value| {
            obj(
                json!({"kind": "Job", "metadata": {"name": "j"}, "status": {"conditions": conds, "active": 1}}),
            )
        };
        assert!(
            matches!(job_state(&job(json!([]))), State::Pending(w) if w.starts_with("1 active"))
        );
        assert_eq!(
            job_state(&job(json!([{"type": "Complete", "status": "True"}]))),
            State::Ready
        );
        assert!(matches!(
            job_state(&job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]))),
            State::Failed(w) if w.contains("BackoffLimitExceeded")
        ));
    }

    fn pod(waiting: &str, restarts: i64) -> Object {
        obj(
            json!({"kind": "Pod", "metadata": {"name": "d-1"}, "status": {"containerStatuses": [
            {"name": "app", "restartCount": restarts, "state": {"waiting": {"reason": waiting, "message": "m"}}}]}}),
        )
    }

    #[test]
    fn err_image_never_pull_fails_a_workload_but_crash_loops_only_explain_it() {
        let d = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
        );
        assert!(
            matches!(workload_state("Deployment", Some(&d), &[pod("ErrImageNeverPull", 0)]), State::Failed(w) if w.starts_with("ErrImageNeverPull"))
        );
        assert!(matches!(
            workload_state("Deployment", Some(&d), &[pod("CrashLoopBackOff", 3)]),
            State::Pending(w) if w.contains("CrashLoopBackOff: m, 3 restarts")
        ));
        assert!(
            matches!(workload_state("Deployment", None, &[]), State::Pending(w) if w == "does not exist")
        );
    }

    #[test]
    fn pod_selectors_come_from_match_labels_or_the_job_name() {
        let d = deployment(1, json!({}));
        assert_eq!(pod_selector("Deployment", &d).as_deref(), Some("app=d"));
        let j = obj(json!({"kind": "Job", "metadata": {"name": "migrate"}, "spec": {}}));
        assert_eq!(pod_selector("Job", &j).as_deref(), Some("job-name=migrate"));
        let cm = obj(json!({"kind": "ConfigMap", "metadata": {"name": "c"}}));
        assert_eq!(pod_selector("ConfigMap", &cm), None);
    }

    #[tokio::test]
    async fn http_waits_poll_until_the_deadline_and_keep_the_last_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prober = HttpProber::new(Duration::from_millis(500)).unwrap();
        let until = Instant::now() + Duration::from_millis(300);
        let outcome = wait_http(
            &prober,
            &format!("http://127.0.0.1:{port}/readyz"),
            until,
            &CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(&outcome, Outcome::TimedOut(w) if w.contains("cannot connect")),
            "{outcome:?}"
        );
    }
}
