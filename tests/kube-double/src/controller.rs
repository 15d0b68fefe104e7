//! The double's simulated control plane: one loop that plays kube-controller-manager, the
//! scheduler and the kubelet. CRDs become Established; Deployments own ReplicaSets own Pods;
//! StatefulSets and Jobs own Pods; pods start, become ready, crash, or wait for a missing
//! image, and say so in their status and in Events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::images::{self, NodeImages};
use crate::ops::{self, PatchType, WriteOpts};
use crate::registry::ResourceType;
use crate::store::{CRD_GR, Store, is_established, key_of};
use crate::util::{
    annotation, meta_str, now_rfc3339, parse_duration, random_suffix, random_u64, safe_hash,
};
use crate::{Config, Shared, agent};

const ANN: &str = "double.kprov.dev/";
const CONTROLLER: &str = "kube-controller-manager";
const KUBELET: &str = "kubelet";

/// A pull the kubelet's part started on a node: running, or ended with the image's digest
/// or the error the kubelet reports.
enum Pull {
    Running,
    Ended(Instant, Result<String, String>),
}

/// Per-object memory the simulation needs beyond what is in the objects.
#[derive(Default)]
pub struct Sim {
    first_seen: HashMap<String, Instant>,
    pods: HashMap<String, PodSim>,
    /// Deployment uid → (last progress counts, when they last changed).
    progress: HashMap<String, ((i64, i64, i64), Instant)>,
    /// (involved uid, reason, message) → event name, to aggregate repeats as the kubelet does.
    events: HashMap<(String, String, String), String>,
    next_pod_ip: u32,
    last_event_nanos: u64,
    /// Each node's images, and when they were read.
    images: BTreeMap<String, (Instant, NodeImages)>,
    /// (node, normalised image) → its latest pull, shared by every pod on that node.
    pulls: HashMap<(String, String), Pull>,
    /// Pulls to start (outside the store lock).
    pull_queue: Vec<(String, String)>,
}

struct PodSim {
    ip: String,
    /// When all its images were first seen present on the node (containers start then).
    images_ok_since: Option<Instant>,
    started_at: Option<String>,
    stage: String,
    restarts_seen: i64,
    container_ids: Vec<String>,
    /// The last scripted readiness-probe failure reported, as the kubelet probes periodically.
    last_probe_event: Option<Instant>,
    /// Images this pod waits on a pull for (as written), since when.
    waiting_pull: BTreeMap<String, Instant>,
    /// Images pulled for this pod (its `Pulled` Event said so).
    pulled: HashSet<String>,
}

fn rt(store: &Store, gr: &str) -> ResourceType {
    store
        .registry
        .by_group_resource(gr)
        .cloned()
        .expect("built-in types are always registered")
}

fn opts(manager: &str) -> WriteOpts<'_> {
    WriteOpts {
        manager,
        dry_run: false,
        subresource: None,
    }
}

fn status_opts(manager: &str) -> WriteOpts<'_> {
    WriteOpts {
        manager,
        dry_run: false,
        subresource: Some("status"),
    }
}

fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta_str(owner, "name"),
        "uid": meta_str(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn controller_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

fn i(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// Writes a status if it differs, as `manager`, through the status subresource.
fn put_status(
    store: &mut Store,
    gr: &str,
    current: &Value,
    status: Value,
    manager: &str,
) -> Option<Arc<Value>> {
    if current.get("status") == Some(&status) {
        return None;
    }
    let t = rt(store, gr);
    let (ns, name) = key_of(current);
    let mut body = current.clone();
    body["status"] = status;
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let ns = (!ns.is_empty()).then_some(ns.as_str());
    match ops::replace(store, &t, ns, &name, body, &status_opts(manager)) {
        Ok(o) => Some(o),
        Err(e) => {
            eprintln!(
                "kube-double: controller failed to update status of {gr} {name}: {}",
                e.message
            );
            None
        }
    }
}

/// Sets a condition, keeping its transition time when the status did not change.
fn set_condition(
    conds: &mut Vec<Value>,
    typ: &str,
    status: &str,
    reason: &str,
    message: &str,
    update_time: bool,
) {
    let now = now_rfc3339();
    let mut fresh = json!({"type": typ, "status": status, "reason": reason, "message": message,
                           "lastTransitionTime": now});
    if update_time {
        fresh["lastUpdateTime"] = json!(now);
    }
    match conds.iter_mut().find(|c| c["type"] == typ) {
        Some(c) => {
            if c["status"] == status && c["reason"] == reason && c["message"] == message {
                return;
            }
            if c["status"] == status {
                fresh["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = fresh;
        }
        None => conds.push(fresh),
    }
}

fn conditions_of(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Records an Event about `obj`, aggregating repeats into `count` as the real components do.
#[allow(clippy::too_many_arguments)] // mirrors the fields of an Event
fn emit(
    store: &mut Store,
    sim: &mut Sim,
    obj: &Value,
    warning: bool,
    reason: &str,
    message: &str,
    component: &str,
    host: Option<&str>,
) {
    let ns = match meta_str(obj, "namespace") {
        "" => "default".to_string(),
        ns => ns.to_string(),
    };
    if store
        .get("namespaces", "", &ns)
        .is_none_or(|n| is_deleting(&n))
    {
        return;
    }
    let uid = meta_str(obj, "uid").to_string();
    let key = (uid.clone(), reason.to_string(), message.to_string());
    let now = now_rfc3339();
    if let Some(name) = sim.events.get(&key).cloned()
        && let Some(existing) = store.get("events", &ns, &name)
    {
        let mut ev = (*existing).clone();
        ev["count"] = json!(i(ev.get("count")) + 1);
        ev["lastTimestamp"] = json!(now);
        store.commit("events", ev);
        return;
    }
    // Named `<object>.<hex nanoseconds>` as client-go's recorder names them, so names sort by time.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    sim.last_event_nanos = nanos.max(sim.last_event_nanos + 1);
    let name = format!("{}.{:x}", meta_str(obj, "name"), sim.last_event_nanos);
    let mut source = json!({"component": component});
    if let Some(h) = host {
        source["host"] = json!(h);
    }
    let mut ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": crate::util::new_uid(), "creationTimestamp": now},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta_str(obj, "name"),
            "uid": uid,
            "resourceVersion": meta_str(obj, "resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": if warning { "Warning" } else { "Normal" },
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": host.unwrap_or(""),
    });
    if !meta_str(obj, "namespace").is_empty() {
        ev["involvedObject"]["namespace"] = json!(meta_str(obj, "namespace"));
    }
    store.commit("events", ev);
    sim.events.insert(key, name);
}

/// Creates the objects a fresh kind cluster has: namespaces, nodes, the kubernetes Service,
/// the default StorageClass.
pub async fn seed(shared: &Arc<Shared>) {
    let cfg = &shared.config;
    let mut node_objs = vec![];
    for (idx, name) in cfg.nodes.iter().enumerate() {
        let ip = if idx == 0 {
            cfg.advertise_ip.clone()
        } else {
            resolve(name).await.unwrap_or_default()
        };
        node_objs.push(node_object(cfg, name, idx, &ip));
    }
    let mut store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
    let ns_rt = rt(&store, "namespaces");
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "local-path-storage",
    ] {
        let _ = ops::create(
            &mut store,
            &ns_rt,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &opts("kube-apiserver"),
        );
    }
    let node_rt = rt(&store, "nodes");
    for node in node_objs {
        let status = node["status"].clone();
        let name = meta_str(&node, "name").to_string();
        if let Ok(created) = ops::create(&mut store, &node_rt, None, node, &opts(KUBELET)) {
            put_status(&mut store, "nodes", &created, status, KUBELET);
        }
        // The kubelet's heartbeat lease, which `kubectl describe node` shows (never renewed here).
        let lease_rt = rt(&store, "leases.coordination.k8s.io");
        let renew = format!("{}.000000Z", now_rfc3339().trim_end_matches('Z'));
        let _ = ops::create(
            &mut store,
            &lease_rt,
            Some("kube-node-lease"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                   "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}}),
            &opts(KUBELET),
        );
    }
    let svc_rt = rt(&store, "services");
    let _ = ops::create(
        &mut store,
        &svc_rt,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
        &opts("kube-apiserver"),
    );
    let sc_rt = rt(&store, "storageclasses.storage.k8s.io");
    let _ = ops::create(
        &mut store,
        &sc_rt,
        None,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
        &opts("kubectl"),
    );
}

async fn resolve(name: &str) -> Option<String> {
    for _ in 0..20 {
        if let Ok(mut addrs) = tokio::net::lookup_host((name, 0)).await
            && let Some(a) = addrs.find(|a| a.is_ipv4())
        {
            return Some(a.ip().to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn node_object(cfg: &Config, name: &str, idx: usize, ip: &str) -> Value {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let mut labels = json!({
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    });
    if idx == 0 {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let now = now_rfc3339();
    let cond = |t: &str, s: &str, r: &str, m: &str| json!({"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let mut addresses = vec![json!({"type": "Hostname", "address": name})];
    if !ip.is_empty() {
        addresses.insert(0, json!({"type": "InternalIP", "address": ip}));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": format!("10.244.{idx}.0/24"), "podCIDRs": [format!("10.244.{idx}.0/24")],
                 "providerID": format!("kind://docker/{}/{name}", cfg.cluster)},
        "status": {
            "addresses": addresses,
            "capacity": {"cpu": cpus.to_string(), "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpus.to_string(), "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated by kube-double)"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": arch,
                "bootID": crate::util::new_uid(),
                "containerRuntimeVersion": "containerd://kube-double-sandbox",
                "kernelVersion": kernel,
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.1+kube-double",
                "machineID": format!("{:032x}", random_u64() as u128 * 7919),
                "operatingSystem": "linux",
                "osImage": "kube-double sandbox node",
                "systemUUID": crate::util::new_uid(),
            },
        },
    })
}

/// Normalises an image reference as containerd stores it: `docker.io/` prefix, `library/`
/// for single-segment names, `:latest` when there is neither tag nor digest.
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let slash = name.rfind('/');
    let (repo, tag) = match name.rfind(':') {
        Some(c) if slash.is_none_or(|s| c > s) => (&name[..c], Some(&name[c + 1..])),
        _ => (name, None),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_domain {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (digest, tag) {
        (Some(d), _) => format!("{repo}@{d}"),
        (None, Some(t)) => format!("{repo}:{t}"),
        (None, None) => format!("{repo}:latest"),
    }
}

/// The node a pod is bound to, or the one the scheduler would bind it to.
fn pod_node<'a>(cfg: &'a Config, pod: &'a Value) -> &'a str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&cfg.nodes[0])
}

/// The images of `node`: this node's containerd, or a worker's through its node agent.
async fn node_images(cfg: &Config, node: &str) -> NodeImages {
    if node == cfg.nodes[0] {
        images::list(&cfg.image_tools()).await
    } else {
        agent::list(node).await
    }
}

/// Pulls `image` into `node`'s containerd: here, or through the worker's node agent.
async fn pull_on(cfg: &Config, node: &str, image: &str) -> Result<String, String> {
    if node == cfg.nodes[0] {
        images::pull(&cfg.image_tools(), image).await
    } else {
        agent::pull(node, image).await
    }
}

/// The nodes whose image lists some pod waits on and that were not read in the last 300 ms.
fn stale_nodes(shared: &Shared) -> Vec<String> {
    let sim = shared.sim.lock().unwrap_or_else(|e| e.into_inner());
    let store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
    if !shared.config.image_check {
        return Vec::new();
    }
    let mut nodes: Vec<String> = store
        .list("pods", None)
        .iter()
        .filter(|p| {
            sim.pods
                .get(meta_str(p, "uid"))
                .is_none_or(|s| s.images_ok_since.is_none())
        })
        .map(|p| pod_node(&shared.config, p).to_string())
        .filter(|n| {
            sim.images
                .get(n)
                .is_none_or(|(at, _)| at.elapsed() > Duration::from_millis(300))
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Starts the pulls the kubelet's part asked for, each in its own task: its result lands in
/// `sim.pulls` (and the image in the node's list) when it ends.
fn start_pulls(shared: &Arc<Shared>) {
    let queued = std::mem::take(
        &mut shared
            .sim
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pull_queue,
    );
    for (node, image) in queued {
        let shared = shared.clone();
        tokio::spawn(async move {
            let result = pull_on(&shared.config, &node, &image).await;
            let mut sim = shared.sim.lock().unwrap_or_else(|e| e.into_inner());
            if let (Ok(digest), Some((_, Ok(list)))) = (&result, sim.images.get_mut(&node)) {
                list.insert(image.clone(), digest.clone());
            }
            sim.pulls
                .insert((node, image), Pull::Ended(Instant::now(), result));
        });
    }
}

pub async fn run(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(shared.config.tick).await;
        // Read node image lists and pull outside the store lock, only while some pod needs it.
        for node in stale_nodes(&shared) {
            let images = node_images(&shared.config, &node).await;
            shared
                .sim
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .images
                .insert(node, (Instant::now(), images));
        }
        start_pulls(&shared);
        let mut sim = shared.sim.lock().unwrap_or_else(|e| e.into_inner());
        let mut store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
        // A bug tripped by one odd object must not stop the simulation for every other one.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            step(&shared.config, &mut store, &mut sim)
        }));
        if stepped.is_err() {
            eprintln!("kube-double: the simulated controllers panicked in this tick; continuing");
        }
    }
}

fn step(cfg: &Config, store: &mut Store, sim: &mut Sim) {
    namespaces(cfg, store, sim);
    crds(cfg, store, sim);
    garbage_collect(store);
    foreground_deletion(store);
    deployments(store, sim);
    replicasets(store, sim);
    statefulsets(store, sim);
    jobs(cfg, store, sim);
    pods(cfg, store, sim);
    rollups(cfg, store, sim);
    pvcs(store);
    let live: HashSet<String> = store
        .list("pods", None)
        .iter()
        .map(|p| meta_str(p, "uid").to_string())
        .collect();
    sim.pods.retain(|uid, _| live.contains(uid));
}

fn namespaces(cfg: &Config, store: &mut Store, sim: &mut Sim) {
    for ns in store.list("namespaces", None) {
        let name = meta_str(&ns, "name").to_string();
        if is_deleting(&ns) {
            terminate_namespace(cfg, store, sim, &ns);
            continue;
        }
        if store.get("serviceaccounts", &name, "default").is_none() {
            let t = rt(store, "serviceaccounts");
            let _ = ops::create(
                store,
                &t,
                Some(&name),
                json!({"metadata": {"name": "default"}}),
                &opts(CONTROLLER),
            );
        }
        if store.get("configmaps", &name, "kube-root-ca.crt").is_none() {
            let t = rt(store, "configmaps");
            let ca = std::fs::read_to_string("/etc/kubernetes/pki/ca.crt").unwrap_or_default();
            let _ = ops::create(
                store,
                &t,
                Some(&name),
                json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": ca}}),
                &opts(CONTROLLER),
            );
        }
    }
}

/// A Terminating namespace: its content is deleted (objects with finalizers wait for them
/// to go); once it is empty, and has been Terminating for `KUBE_DOUBLE_NS_TERMINATE_MS` (so
/// clients can see the state, as they can on a real cluster), it is removed.
fn terminate_namespace(cfg: &Config, store: &mut Store, sim: &mut Sim, ns: &Value) {
    let name = meta_str(ns, "name").to_string();
    let since = *sim
        .first_seen
        .entry(format!("terminating/{}", meta_str(ns, "uid")))
        .or_insert_with(Instant::now);
    let mut left = 0;
    for gr in store.group_resources() {
        if gr == "namespaces" {
            continue;
        }
        for o in store.list(&gr, Some(&name)) {
            let has_finalizers = o
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if !has_finalizers {
                let (ons, oname) = key_of(&o);
                store.remove(&gr, &ons, &oname);
                continue;
            }
            left += 1;
            if !is_deleting(&o) {
                let mut new = (*o).clone();
                new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                store.commit(&gr, new);
            }
        }
    }
    if left == 0 && since.elapsed() >= cfg.ns_terminate {
        store.remove("namespaces", "", &name);
    }
}

/// The apiserver's CRD controllers: the names are accepted at once (Established False,
/// `Installing`), and the CRD is Established after `KUBE_DOUBLE_CRD_DELAY_MS`.
fn crds(cfg: &Config, store: &mut Store, sim: &mut Sim) {
    for crd in store.list(CRD_GR, None) {
        let uid = meta_str(&crd, "uid").to_string();
        let seen = *sim.first_seen.entry(uid).or_insert_with(Instant::now);
        let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
        let accepted = crd
            .pointer("/status/acceptedNames")
            .cloned()
            .unwrap_or(Value::Null);
        if is_established(&crd) && accepted == names {
            continue;
        }
        let establish = is_established(&crd) || seen.elapsed() >= cfg.crd_delay;
        let mut conds = conditions_of(&crd);
        set_condition(
            &mut conds,
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
            false,
        );
        let (status, reason) = if establish {
            ("True", "InitialNamesAccepted")
        } else {
            ("False", "Installing")
        };
        set_condition(
            &mut conds,
            "Established",
            status,
            reason,
            "the initial names have been accepted",
            false,
        );
        let storage: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == true)
            .map(|v| v["name"].clone())
            .collect();
        let status =
            json!({"acceptedNames": names, "conditions": conds, "storedVersions": storage});
        put_status(store, CRD_GR, &crd, status, "kube-apiserver");
    }
}

/// Foreground deletion, as the garbage collector does it: the dependents of an object with
/// the `foregroundDeletion` finalizer are deleted (in the foreground themselves when they
/// have dependents); once none is left the finalizer goes, and with it the object.
fn foreground_deletion(store: &mut Store) {
    for gr in store.group_resources() {
        for owner in store.list(&gr, None) {
            let finalizers: Vec<Value> = owner
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !is_deleting(&owner) || !finalizers.iter().any(|f| f == ops::FOREGROUND_FINALIZER) {
                continue;
            }
            let deps = dependents(store, meta_str(&owner, "uid"));
            if deps.is_empty() {
                let (ns, name) = key_of(&owner);
                let rest: Vec<Value> = finalizers
                    .into_iter()
                    .filter(|f| f != ops::FOREGROUND_FINALIZER)
                    .collect();
                if rest.is_empty() {
                    store.remove(&gr, &ns, &name);
                } else {
                    let mut new = (*owner).clone();
                    new["metadata"]["finalizers"] = json!(rest);
                    store.commit(&gr, new);
                }
                continue;
            }
            for (dep_gr, dep) in deps {
                if is_deleting(&dep) {
                    continue;
                }
                let nested = !dependents(store, meta_str(&dep, "uid")).is_empty();
                let has_finalizers = dep
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
                if nested || has_finalizers {
                    let mut new = (*dep).clone();
                    new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                    if nested {
                        let list = crate::util::obj_at(&mut new, "metadata")
                            .entry("finalizers")
                            .or_insert(json!([]));
                        if let Some(a) = list.as_array_mut() {
                            a.push(json!(ops::FOREGROUND_FINALIZER));
                        }
                    }
                    store.commit(&dep_gr, new);
                } else {
                    let (ns, name) = key_of(&dep);
                    store.remove(&dep_gr, &ns, &name);
                }
            }
        }
    }
}

/// Every object with an owner reference to `uid`, with its group-resource.
fn dependents(store: &Store, uid: &str) -> Vec<(String, Arc<Value>)> {
    let mut out = vec![];
    for gr in store.group_resources() {
        for o in store.list(&gr, None) {
            let owned = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
            if owned {
                out.push((gr.clone(), o));
            }
        }
    }
    out
}

/// Deletes objects whose controlling owner is gone (background cascading deletion).
fn garbage_collect(store: &mut Store) {
    let mut uids = HashSet::new();
    let grs = store.group_resources();
    for gr in &grs {
        for o in store.list(gr, None) {
            uids.insert(meta_str(&o, "uid").to_string());
        }
    }
    for gr in &grs {
        for o in store.list(gr, None) {
            let refs = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array);
            let Some(refs) = refs.filter(|r| !r.is_empty()) else {
                continue;
            };
            if refs
                .iter()
                .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
            {
                let (ns, name) = key_of(&o);
                store.remove(gr, &ns, &name);
            }
        }
    }
}

fn owned_by(store: &Store, gr: &str, owner: &Value) -> Vec<Arc<Value>> {
    let uid = meta_str(owner, "uid");
    store
        .list(gr, Some(meta_str(owner, "namespace")))
        .into_iter()
        .filter(|o| controller_uid(o) == Some(uid))
        .collect()
}

fn template_hash(d: &Value) -> String {
    safe_hash(d.pointer("/spec/template").unwrap_or(&Value::Null), 10)
}

fn set_replicas(store: &mut Store, gr: &str, obj: &Value, replicas: i64) -> Option<Arc<Value>> {
    let t = rt(store, gr);
    let (ns, name) = key_of(obj);
    ops::patch(
        store,
        &t,
        Some(&ns),
        &name,
        PatchType::Merge,
        json!({"spec": {"replicas": replicas}}),
        false,
        &opts(CONTROLLER),
    )
    .ok()
    .map(|(o, _)| o)
}

fn deployments(store: &mut Store, sim: &mut Sim) {
    for d in store.list("deployments.apps", None) {
        if is_deleting(&d) || d.pointer("/spec/paused") == Some(&json!(true)) {
            continue;
        }
        let name = meta_str(&d, "name").to_string();
        let ns = meta_str(&d, "namespace").to_string();
        let replicas = i(d.pointer("/spec/replicas"));
        let hash = template_hash(&d);
        let owned = owned_by(store, "replicasets.apps", &d);
        let new_rs = owned
            .iter()
            .find(|rs| {
                rs.pointer("/metadata/labels/pod-template-hash")
                    .and_then(Value::as_str)
                    == Some(hash.as_str())
            })
            .cloned();
        let new_rs = match new_rs {
            Some(rs) => {
                let current = i(rs.pointer("/spec/replicas"));
                if current != replicas {
                    let verb = if replicas > current { "up" } else { "down" };
                    emit(
                        store,
                        sim,
                        &d,
                        false,
                        "ScalingReplicaSet",
                        &format!(
                            "Scaled {verb} replica set {} from {current} to {replicas}",
                            meta_str(&rs, "name")
                        ),
                        "deployment-controller",
                        None,
                    );
                    set_replicas(store, "replicasets.apps", &rs, replicas).unwrap_or(rs)
                } else {
                    rs
                }
            }
            None => {
                let revision = owned
                    .iter()
                    .filter_map(|rs| {
                        annotation(rs, "deployment.kubernetes.io/revision")
                            .and_then(|r| r.parse::<i64>().ok())
                    })
                    .max()
                    .unwrap_or(0)
                    + 1;
                let rs_name = format!("{name}-{hash}");
                let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
                crate::util::obj_at(&mut template, "metadata.labels")
                    .insert("pod-template-hash".into(), json!(hash));
                let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                crate::util::obj_at(&mut selector, "matchLabels")
                    .insert("pod-template-hash".into(), json!(hash));
                let labels = template
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": ns,
                        "labels": labels,
                        "annotations": {
                            "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                            "deployment.kubernetes.io/max-replicas": (replicas + (replicas + 3) / 4).to_string(),
                            "deployment.kubernetes.io/revision": revision.to_string(),
                        },
                        "ownerReferences": [owner_ref(&d)],
                    },
                    "spec": {"replicas": replicas, "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)), "selector": selector, "template": template},
                });
                let t = rt(store, "replicasets.apps");
                match ops::create(store, &t, Some(&ns), rs, &opts(CONTROLLER)) {
                    Ok(rs) => {
                        emit(
                            store,
                            sim,
                            &d,
                            false,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                            "deployment-controller",
                            None,
                        );
                        rs
                    }
                    Err(e) => {
                        eprintln!(
                            "kube-double: controller failed to create replicaset {ns}/{rs_name}: {}",
                            e.message
                        );
                        continue;
                    }
                }
            }
        };
        // Old ReplicaSets go to zero once the new one is fully ready (or at once for Recreate).
        let recreate = d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
        let new_ready = i(new_rs.pointer("/status/readyReplicas")) >= replicas;
        for old in owned
            .iter()
            .filter(|rs| meta_str(rs, "uid") != meta_str(&new_rs, "uid"))
        {
            let current = i(old.pointer("/spec/replicas"));
            if current > 0 && (recreate || new_ready) {
                emit(
                    store,
                    sim,
                    &d,
                    false,
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled down replica set {} from {current} to 0",
                        meta_str(old, "name")
                    ),
                    "deployment-controller",
                    None,
                );
                set_replicas(store, "replicasets.apps", old, 0);
            }
        }
    }
}

fn new_pod(owner: &Value, name: &str, template: &Value, extra_labels: &[(&str, String)]) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut meta = json!({
        "name": name,
        "namespace": meta_str(owner, "namespace"),
        "labels": labels,
        "ownerReferences": [owner_ref(owner)],
    });
    if let Some(a) = template.pointer("/metadata/annotations") {
        meta["annotations"] = a.clone();
    }
    // Unbound: the scheduler's part binds it (see `schedule`), unless the template names a node.
    let spec = template.get("spec").cloned().unwrap_or(json!({}));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn create_pod(
    store: &mut Store,
    sim: &mut Sim,
    owner: &Value,
    pod: Value,
    component: &str,
    message: String,
) {
    let t = rt(store, "pods");
    let ns = meta_str(owner, "namespace").to_string();
    match ops::create(store, &t, Some(&ns), pod, &opts(CONTROLLER)) {
        Ok(_) => emit(
            store,
            sim,
            owner,
            false,
            "SuccessfulCreate",
            &message,
            component,
            None,
        ),
        Err(e) => emit(
            store,
            sim,
            owner,
            true,
            "FailedCreate",
            &format!("Error creating: {}", e.message),
            component,
            None,
        ),
    }
}

fn delete_pod(store: &mut Store, pod: &Value) {
    let (ns, name) = key_of(pod);
    store.remove("pods", &ns, &name);
}

fn replicasets(store: &mut Store, sim: &mut Sim) {
    for rs in store.list("replicasets.apps", None) {
        if is_deleting(&rs) {
            continue;
        }
        let want = i(rs.pointer("/spec/replicas"));
        let mut pods: Vec<Arc<Value>> = owned_by(store, "pods", &rs)
            .into_iter()
            .filter(|p| !is_deleting(p))
            .collect();
        let have = pods.len() as i64;
        let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        for _ in have..want {
            let name = format!("{}-{}", meta_str(&rs, "name"), random_suffix(5));
            let pod = new_pod(&rs, &name, &template, &[]);
            create_pod(
                store,
                sim,
                &rs,
                pod,
                "replicaset-controller",
                format!("Created pod: {name}"),
            );
        }
        if have > want {
            pods.sort_by(|a, b| {
                meta_str(b, "creationTimestamp").cmp(meta_str(a, "creationTimestamp"))
            });
            for p in pods.iter().take((have - want) as usize) {
                delete_pod(store, p);
                emit(
                    store,
                    sim,
                    &rs,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", meta_str(p, "name")),
                    "replicaset-controller",
                    None,
                );
            }
        }
    }
}

fn statefulsets(store: &mut Store, sim: &mut Sim) {
    for sts in store.list("statefulsets.apps", None) {
        if is_deleting(&sts) {
            continue;
        }
        let name = meta_str(&sts, "name").to_string();
        let ns = meta_str(&sts, "namespace").to_string();
        let want = i(sts.pointer("/spec/replicas"));
        let revision = format!("{name}-{}", template_hash(&sts));
        let parallel = sts
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            == Some("Parallel");
        let pods = owned_by(store, "pods", &sts);
        let by_name: HashMap<String, Arc<Value>> = pods
            .iter()
            .map(|p| (meta_str(p, "name").to_string(), p.clone()))
            .collect();
        // Scale down from the highest ordinal.
        for p in &pods {
            let ord = meta_str(p, "name")
                .rsplit('-')
                .next()
                .and_then(|o| o.parse::<i64>().ok())
                .unwrap_or(0);
            if ord >= want {
                delete_pod(store, p);
                emit(
                    store,
                    sim,
                    &sts,
                    false,
                    "SuccessfulDelete",
                    &format!(
                        "delete Pod {} in StatefulSet {name} successful",
                        meta_str(p, "name")
                    ),
                    "statefulset-controller",
                    None,
                );
            }
        }
        let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let all_ready = (0..want).all(|o| {
            by_name
                .get(&format!("{name}-{o}"))
                .is_some_and(|p| pod_ready(p))
        });
        for ord in 0..want {
            let pod_name = format!("{name}-{ord}");
            match by_name.get(&pod_name) {
                Some(p) => {
                    let stale = p
                        .pointer("/metadata/labels/controller-revision-hash")
                        .and_then(Value::as_str)
                        != Some(revision.as_str());
                    if stale && all_ready {
                        // Rolling update: replace one outdated pod at a time.
                        delete_pod(store, p);
                        emit(
                            store,
                            sim,
                            &sts,
                            false,
                            "SuccessfulDelete",
                            &format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                            "statefulset-controller",
                            None,
                        );
                        break;
                    }
                    if !parallel && !pod_ready(p) {
                        break;
                    }
                }
                None => {
                    for claim in sts
                        .pointer("/spec/volumeClaimTemplates")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let claim_name = format!("{}-{pod_name}", meta_str(claim, "name"));
                        if store
                            .get("persistentvolumeclaims", &ns, &claim_name)
                            .is_none()
                        {
                            let mut pvc = claim.clone();
                            pvc["apiVersion"] = json!("v1");
                            pvc["kind"] = json!("PersistentVolumeClaim");
                            pvc["metadata"]["name"] = json!(claim_name);
                            pvc["metadata"]["namespace"] = json!(ns);
                            if let Some(l) = template.pointer("/metadata/labels") {
                                pvc["metadata"]["labels"] = l.clone();
                            }
                            let t = rt(store, "persistentvolumeclaims");
                            let _ = ops::create(store, &t, Some(&ns), pvc, &opts(CONTROLLER));
                        }
                    }
                    let mut pod = new_pod(
                        &sts,
                        &pod_name,
                        &template,
                        &[
                            ("controller-revision-hash", revision.clone()),
                            ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                            ("apps.kubernetes.io/pod-index", ord.to_string()),
                        ],
                    );
                    pod["spec"]["hostname"] = json!(pod_name);
                    if let Some(svc) = sts.pointer("/spec/serviceName") {
                        pod["spec"]["subdomain"] = svc.clone();
                    }
                    create_pod(
                        store,
                        sim,
                        &sts,
                        pod,
                        "statefulset-controller",
                        format!("create Pod {pod_name} in StatefulSet {name} successful"),
                    );
                    if !parallel {
                        break;
                    }
                }
            }
        }
    }
}

fn pod_phase(p: &Value) -> &str {
    p.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

fn pod_ready(p: &Value) -> bool {
    conditions_of(p)
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn jobs(_cfg: &Config, store: &mut Store, sim: &mut Sim) {
    for job in store.list("jobs.batch", None) {
        if is_deleting(&job) || job.pointer("/spec/suspend") == Some(&json!(true)) {
            continue;
        }
        let conds = conditions_of(&job);
        if conds
            .iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        {
            continue;
        }
        let name = meta_str(&job, "name").to_string();
        let pods = owned_by(store, "pods", &job);
        let succeeded = pods.iter().filter(|p| pod_phase(p) == "Succeeded").count() as i64;
        let failed = pods.iter().filter(|p| pod_phase(p) == "Failed").count() as i64;
        let active = pods
            .iter()
            .filter(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
            .count() as i64;
        let completions = job
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let parallelism = i(job.pointer("/spec/parallelism")).max(1);
        let backoff = job
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        if succeeded >= completions || failed > backoff {
            continue; // status roll-up finishes it
        }
        let want_active = parallelism.min(completions - succeeded);
        let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
        for _ in active..want_active {
            let pod_name = format!("{name}-{}", random_suffix(5));
            let pod = new_pod(&job, &pod_name, &template, &[]);
            create_pod(
                store,
                sim,
                &job,
                pod,
                "job-controller",
                format!("Created pod: {pod_name}"),
            );
        }
    }
}

/// An annotation on the pod, or else on its owners up the chain (ReplicaSet → Deployment).
fn sim_annotation(store: &Store, pod: &Value, key: &str) -> Option<String> {
    let full = format!("{ANN}{key}");
    let mut cur = pod.clone();
    for _ in 0..3 {
        if let Some(v) = annotation(&cur, &full) {
            return Some(v.to_string());
        }
        let owner = cur.pointer("/metadata/ownerReferences/0").cloned()?;
        let kind = owner["kind"].as_str().unwrap_or_default();
        let gr = match kind {
            "ReplicaSet" => "replicasets.apps",
            "Deployment" => "deployments.apps",
            "StatefulSet" => "statefulsets.apps",
            "Job" => "jobs.batch",
            "DaemonSet" => "daemonsets.apps",
            _ => return None,
        };
        cur = (*store.get(
            gr,
            meta_str(&cur, "namespace"),
            owner["name"].as_str().unwrap_or_default(),
        )?)
        .clone();
    }
    None
}

fn sim_duration(store: &Store, pod: &Value, key: &str, default: Duration) -> Duration {
    sim_annotation(store, pod, key)
        .and_then(|v| parse_duration(&v))
        .unwrap_or(default)
}

#[derive(Clone, Debug, PartialEq)]
enum Missing {
    Never(String),
    /// Being pulled into the node.
    Pulling(String),
    /// Its last pull failed; in back-off once `crash_interval` has passed since.
    PullFailed {
        image: String,
        error: String,
        backoff: bool,
    },
}

/// What the kubelet's image check found for one pod on its node.
#[derive(Default)]
struct ImageCheck {
    missing: Option<Missing>,
    error: Option<String>,
    /// Image as written in the spec → digest on the node.
    digests: HashMap<String, String>,
}

/// A failed pull is tried again this long after it failed (the kubelet backs off 10 s, then
/// doubling; the double keeps it short and fixed).
fn pull_retry(cfg: &Config) -> Duration {
    cfg.crash_interval * 5
}

/// Looks up each of `images` (as written, with its pull policy) on `node`: present, never to
/// be pulled, being pulled, or failed. Queues a pull for a missing image whose policy allows
/// one, once per node (pods waiting for the same image share it), as the kubelet does.
fn check_images(
    cfg: &Config,
    sim: &mut Sim,
    node: &str,
    images: &[(String, String)],
) -> ImageCheck {
    let mut out = ImageCheck::default();
    let (read_at, list) = match sim.images.get(node) {
        Some((at, Ok(list))) => (*at, list.clone()),
        Some((_, Err(e))) => {
            out.error = Some(e.clone());
            return out;
        }
        None => {
            out.error = Some(format!(
                "the image list of node {node} has not been read yet"
            ));
            return out;
        }
    };
    for (image, policy) in images {
        let norm = normalize_image(image);
        if let Some(d) = list.get(&norm) {
            out.digests.insert(image.clone(), d.clone());
            continue;
        }
        if out.missing.is_some() {
            continue;
        }
        if policy == "Never" {
            out.missing = Some(Missing::Never(image.clone()));
            continue;
        }
        let key = (node.to_string(), norm);
        let state = match sim.pulls.get(&key) {
            Some(Pull::Running) => Some(Missing::Pulling(image.clone())),
            // Pulled, and no list read since said otherwise.
            Some(Pull::Ended(t, Ok(d))) if *t >= read_at => {
                out.digests.insert(image.clone(), d.clone());
                continue;
            }
            Some(Pull::Ended(t, Err(e))) if t.elapsed() < pull_retry(cfg) => {
                Some(Missing::PullFailed {
                    image: image.clone(),
                    error: e.clone(),
                    backoff: t.elapsed() >= cfg.crash_interval,
                })
            }
            _ => None,
        };
        out.missing = Some(state.unwrap_or_else(|| {
            sim.pulls.insert(key.clone(), Pull::Running);
            sim.pull_queue.push(key);
            Missing::Pulling(image.clone())
        }));
    }
    out
}

/// The kubelet's `Pulled` Events: an image this pod waited for that is now on the node, with
/// how long the pod waited (`Successfully pulled image "X" in 1.2s (1.2s including waiting)`).
fn pulled_events(
    store: &mut Store,
    sim: &mut Sim,
    pod: &Value,
    uid: &str,
    node: &str,
    missing: &Option<Missing>,
    digests: &HashMap<String, String>,
) {
    let Some(ps) = sim.pods.get_mut(uid) else {
        return;
    };
    if let Some(Missing::Pulling(img)) = missing {
        ps.waiting_pull
            .entry(img.clone())
            .or_insert_with(Instant::now);
    }
    let done: Vec<(String, Duration)> = ps
        .waiting_pull
        .iter()
        .filter(|(img, _)| digests.contains_key(*img))
        .map(|(img, since)| (img.clone(), since.elapsed()))
        .collect();
    for (img, _) in &done {
        ps.waiting_pull.remove(img);
        ps.pulled.insert(img.clone());
    }
    for (img, took) in done {
        let took = format!("{:.3}s", took.as_secs_f64());
        let msg =
            format!("Successfully pulled image \"{img}\" in {took} ({took} including waiting)");
        emit(store, sim, pod, false, "Pulled", &msg, KUBELET, Some(node));
    }
}

/// The node the scheduler binds a new pod to: the control plane of a one-node cluster, else
/// the worker running the fewest pods (kind taints a multi-node cluster's control plane
/// `NoSchedule`; the double ignores tolerations).
fn schedule(cfg: &Config, store: &Store) -> String {
    let workers = &cfg.nodes[1..];
    if workers.is_empty() {
        return cfg.nodes[0].clone();
    }
    let pods = store.list("pods", None);
    let load = |w: &String| {
        pods.iter()
            .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(w))
            .count()
    };
    workers
        .iter()
        .min_by_key(|w| load(w))
        .cloned()
        .unwrap_or_else(|| cfg.nodes[0].clone())
}

fn pods(cfg: &Config, store: &mut Store, sim: &mut Sim) {
    let host_ip = cfg.advertise_ip.clone();
    for pod in store.list("pods", None) {
        if is_deleting(&pod) {
            continue;
        }
        let uid = meta_str(&pod, "uid").to_string();
        let mut pod = pod;
        // The scheduler's part: bind unscheduled pods (see `schedule`).
        if pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let node_name = schedule(cfg, store);
            let t = rt(store, "pods");
            let (ns, name) = key_of(&pod);
            if let Ok((bound, _)) = ops::patch(
                store,
                &t,
                Some(&ns),
                &name,
                PatchType::Merge,
                json!({"spec": {"nodeName": node_name}}),
                false,
                &opts("kube-scheduler"),
            ) {
                pod = bound;
            }
        }
        let node = pod_node(cfg, &pod).to_string();
        let first = !sim.pods.contains_key(&uid);
        if first {
            sim.next_pod_ip += 1;
            let n = sim.next_pod_ip;
            let containers = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            sim.pods.insert(
                uid.clone(),
                PodSim {
                    ip: format!("10.244.0.{}", (n % 250) + 2),
                    images_ok_since: None,
                    started_at: None,
                    stage: String::new(),
                    restarts_seen: 0,
                    last_probe_event: None,
                    waiting_pull: BTreeMap::new(),
                    pulled: HashSet::new(),
                    container_ids: (0..containers)
                        .map(|_| {
                            format!(
                                "containerd://{:016x}{:016x}{:016x}{:016x}",
                                random_u64(),
                                random_u64(),
                                random_u64(),
                                random_u64()
                            )
                        })
                        .collect(),
                },
            );
            emit(
                store,
                sim,
                &pod,
                false,
                "Scheduled",
                &format!(
                    "Successfully assigned {}/{} to {node}",
                    meta_str(&pod, "namespace"),
                    meta_str(&pod, "name")
                ),
                "default-scheduler",
                None,
            );
        }
        let created = *sim
            .first_seen
            .entry(uid.clone())
            .or_insert_with(Instant::now);
        let age = created.elapsed();
        let start_after = sim_duration(store, &pod, "start-after", cfg.pod_start);
        let ready_after = sim_duration(store, &pod, "ready-after", cfg.ready_after);
        let complete_after = sim_annotation(store, &pod, "complete-after")
            .and_then(|v| parse_duration(&v))
            .unwrap_or(cfg.job_complete);
        let crash = sim_annotation(store, &pod, "crash");
        let never_ready =
            sim_annotation(store, &pod, "progress-deadline-exceeded").as_deref() == Some("true");
        let skip_check = !cfg.image_check
            || sim_annotation(store, &pod, "skip-image-check").as_deref() == Some("true");
        let restart_policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_string();
        let containers: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let init_containers: Vec<Value> = pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();

        // The kubelet's image check, against the node's real containerd; pulls for real.
        let mut check = ImageCheck::default();
        if age >= start_after && !skip_check {
            let wanted: Vec<(String, String)> = init_containers
                .iter()
                .chain(containers.iter())
                .map(|c| {
                    let image = c["image"].as_str().unwrap_or_default().to_string();
                    (
                        image,
                        c["imagePullPolicy"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            check = check_images(cfg, sim, &node, &wanted);
        }
        let ImageCheck {
            missing,
            error: check_error,
            digests,
        } = check;
        pulled_events(store, sim, &pod, &uid, &node, &missing, &digests);
        let pull_error = match &missing {
            Some(Missing::PullFailed { error, .. }) => Some(error.clone()),
            _ => None,
        };
        let ps = sim.pods.get_mut(&uid).expect("inserted above");
        let images_ready =
            age >= start_after && missing.is_none() && (check_error.is_none() || skip_check);
        if images_ready {
            ps.images_ok_since.get_or_insert_with(Instant::now);
        } else if ps.images_ok_since.is_none() || missing.is_some() {
            ps.images_ok_since = None;
        }
        let running_for = ps.images_ok_since.map(|t| t.elapsed());
        let ip = ps.ip.clone();
        let container_ids = ps.container_ids.clone();
        if running_for.is_some() && ps.started_at.is_none() {
            ps.started_at = Some(now_rfc3339());
        }
        let started_at = ps.started_at.clone();

        // Decide the stage.
        let job_pod = restart_policy != "Always";
        let (stage, restarts) = match (&missing, &check_error, running_for) {
            _ if age < start_after => ("creating".to_string(), 0),
            (Some(Missing::Never(img)), _, _) => (format!("never:{img}"), 0),
            (Some(Missing::Pulling(img)), _, _) => (format!("pulling:{img}"), 0),
            (Some(Missing::PullFailed { image, backoff, .. }), _, _) => (
                format!(
                    "{}:{image}",
                    if *backoff { "pullbackoff" } else { "pullerr" }
                ),
                0,
            ),
            (None, Some(_), None) => ("checkfailed".to_string(), 0),
            (_, _, Some(t)) => {
                if crash.is_some() {
                    let n = (t.as_millis() / cfg.crash_interval.as_millis().max(1)) as i64;
                    if job_pod && n >= 1 {
                        ("failed".to_string(), 0)
                    } else if n == 0 {
                        ("running".to_string(), 0)
                    } else {
                        ("crashloop".to_string(), n)
                    }
                } else if job_pod && t >= complete_after {
                    ("succeeded".to_string(), 0)
                } else if !job_pod && age >= ready_after && !never_ready {
                    ("ready".to_string(), 0)
                } else {
                    ("running".to_string(), 0)
                }
            }
            (None, None, None) => ("creating".to_string(), 0),
        };

        // Events on stage changes, as the kubelet reports them.
        let previous_stage = sim
            .pods
            .get(&uid)
            .map(|p| p.stage.clone())
            .unwrap_or_default();
        let restarts_seen = sim.pods.get(&uid).map_or(0, |p| p.restarts_seen);
        let pod_name = meta_str(&pod, "name").to_string();
        let ns = meta_str(&pod, "namespace").to_string();
        if stage != previous_stage || restarts > restarts_seen {
            let ev = |store: &mut Store, sim: &mut Sim, warn: bool, reason: &str, msg: String| {
                emit(store, sim, &pod, warn, reason, &msg, KUBELET, Some(&node));
            };
            match stage
                .split_once(':')
                .map_or((stage.as_str(), ""), |(a, b)| (a, b))
            {
                ("never", img) => {
                    ev(
                        store,
                        sim,
                        true,
                        "ErrImageNeverPull",
                        format!(
                            "Container image \"{img}\" is not present with pull policy of Never"
                        ),
                    );
                    ev(
                        store,
                        sim,
                        true,
                        "Failed",
                        "Error: ErrImageNeverPull".into(),
                    );
                }
                ("pulling", img) => {
                    ev(
                        store,
                        sim,
                        false,
                        "Pulling",
                        format!("Pulling image \"{img}\""),
                    );
                }
                ("pullerr", img) => {
                    let error = pull_error.clone().unwrap_or_default();
                    let msg = format!("Failed to pull image \"{img}\": {error}");
                    ev(store, sim, true, "Failed", msg);
                    ev(store, sim, true, "Failed", "Error: ErrImagePull".into());
                }
                ("pullbackoff", img) => {
                    ev(
                        store,
                        sim,
                        false,
                        "BackOff",
                        format!("Back-off pulling image \"{img}\""),
                    );
                    ev(store, sim, true, "Failed", "Error: ImagePullBackOff".into());
                }
                ("checkfailed", _) => {
                    ev(
                        store,
                        sim,
                        true,
                        "FailedImageCheck",
                        format!(
                            "kube-double could not check the node's images: {}",
                            check_error.clone().unwrap_or_default()
                        ),
                    );
                }
                ("running" | "ready" | "succeeded" | "failed" | "crashloop", _)
                    if previous_stage.is_empty()
                        || matches!(
                            previous_stage.split(':').next(),
                            Some(
                                "creating"
                                    | "never"
                                    | "pulling"
                                    | "pullerr"
                                    | "pullbackoff"
                                    | "checkfailed"
                            )
                        ) =>
                {
                    let pulled = sim
                        .pods
                        .get(&uid)
                        .map(|p| p.pulled.clone())
                        .unwrap_or_default();
                    for c in &containers {
                        let cname = c["name"].as_str().unwrap_or_default();
                        let image = c["image"].as_str().unwrap_or_default();
                        if !pulled.contains(image) {
                            ev(
                                store,
                                sim,
                                false,
                                "Pulled",
                                format!("Container image \"{image}\" already present on machine"),
                            );
                        }
                        ev(
                            store,
                            sim,
                            false,
                            "Created",
                            format!("Created container: {cname}"),
                        );
                        ev(
                            store,
                            sim,
                            false,
                            "Started",
                            format!("Started container {cname}"),
                        );
                    }
                }
                _ => {}
            }
            if stage == "crashloop" {
                for c in &containers {
                    let cname = c["name"].as_str().unwrap_or_default();
                    let uid_s = meta_str(&pod, "uid").to_string();
                    ev(
                        store,
                        sim,
                        true,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {cname} in pod {pod_name}_{ns}({uid_s})"
                        ),
                    );
                }
            }
            if let Some(p) = sim.pods.get_mut(&uid) {
                p.stage = stage.clone();
                p.restarts_seen = restarts;
            }
        }
        if stage == "running"
            && never_ready
            && !job_pod
            && age >= ready_after
            && sim.pods.get(&uid).is_some_and(|p| {
                p.last_probe_event
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            })
        {
            if let Some(p) = sim.pods.get_mut(&uid) {
                p.last_probe_event = Some(Instant::now());
            }
            // A failing readiness probe, reported every 10s (aggregated into one Event).
            emit(
                store,
                sim,
                &pod,
                true,
                "Unhealthy",
                "Readiness probe failed: kube-double: scripted by double.kprov.dev/progress-deadline-exceeded",
                KUBELET,
                Some(&node),
            );
        }

        let status = pod_status(
            &pod,
            &stage,
            restarts,
            &ip,
            &host_ip,
            started_at.as_deref(),
            &container_ids,
            &digests,
            crash.as_deref(),
            pull_error.as_deref(),
        );
        put_status(store, "pods", &pod, status, KUBELET);
    }
}

#[allow(clippy::too_many_arguments)]
fn pod_status(
    pod: &Value,
    stage: &str,
    restarts: i64,
    ip: &str,
    host_ip: &str,
    started_at: Option<&str>,
    container_ids: &[String],
    digests: &HashMap<String, String>,
    crash: Option<&str>,
    pull_error: Option<&str>,
) -> Value {
    let old = pod.get("status").cloned().unwrap_or(json!({}));
    let kind = stage.split(':').next().unwrap_or(stage);
    let running = matches!(kind, "running" | "ready" | "crashloop");
    let ready = kind == "ready";
    let now = now_rfc3339();
    let started = started_at.unwrap_or(&now).to_string();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let waiting = |reason: &str, message: Option<String>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    // Keep timestamps from the previous status so an unchanged state does not churn.
    let old_state = |idx: usize| {
        old.pointer(&format!("/containerStatuses/{idx}/state"))
            .cloned()
    };
    let statuses: Vec<Value> = containers
        .iter()
        .enumerate()
        .map(|(idx, c)| {
            let name = c["name"].as_str().unwrap_or_default();
            let image = c["image"].as_str().unwrap_or_default();
            let (state, last) = match kind {
                "creating" | "checkfailed" | "pulling" => (waiting("ContainerCreating", None), json!({})),
                "never" => {
                    let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
                    let missing_here = stage.ends_with(&format!(":{image}"));
                    (if missing_here { waiting("ErrImageNeverPull", Some(msg)) } else { waiting("ContainerCreating", None) }, json!({}))
                }
                "pullerr" | "pullbackoff" if !stage.ends_with(&format!(":{image}")) => (waiting("ContainerCreating", None), json!({})),
                "pullerr" => (waiting("ErrImagePull", Some(pull_error.unwrap_or_default().to_string())), json!({})),
                "pullbackoff" => (waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\": ErrImagePull: {}", pull_error.unwrap_or_default()))), json!({})),
                "crashloop" => (
                    waiting("CrashLoopBackOff", Some(format!("back-off 10s restarting failed container={name} pod={}_{}({})", meta_str(pod, "name"), meta_str(pod, "namespace"), meta_str(pod, "uid")))),
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": started, "containerID": container_ids.get(idx)}}),
                ),
                "succeeded" => (
                    match old_state(idx) {
                        Some(s) if s.get("terminated").is_some() => s,
                        _ => json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now, "containerID": container_ids.get(idx)}}),
                    },
                    json!({}),
                ),
                "failed" => (
                    match old_state(idx) {
                        Some(s) if s.get("terminated").is_some() => s,
                        _ => json!({"terminated": {"exitCode": 1, "reason": "Error", "message": crash.unwrap_or_default(), "startedAt": started, "finishedAt": now, "containerID": container_ids.get(idx)}}),
                    },
                    json!({}),
                ),
                _ => (json!({"running": {"startedAt": started}}), json!({})),
            };
            let norm = normalize_image(image);
            let mut s = json!({
                "name": name,
                "image": norm,
                "imageID": digests.get(image).map(|d| format!("{}@{d}", norm.split('@').next().unwrap_or_default().rsplit_once(':').map_or(norm.as_str(), |(r, _)| r))).unwrap_or_default(),
                "ready": ready,
                "restartCount": restarts,
                "started": running && kind != "crashloop",
                "state": state,
                "lastState": last,
            });
            if running || matches!(kind, "succeeded" | "failed") {
                s["containerID"] = json!(container_ids.get(idx));
            }
            s
        })
        .collect();
    let phase = match kind {
        "succeeded" => "Succeeded",
        "failed" => "Failed",
        _ if running => "Running",
        _ => "Pending",
    };
    let mut conds = conditions_of(&json!({"status": old.clone()}));
    let b = |v: bool| if v { "True" } else { "False" };
    let mut cond = |typ: &str, status: &str, reason: Option<&str>| {
        let existing = conds.iter().position(|c| c["type"] == typ);
        let mut c = json!({"type": typ, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        match existing {
            Some(i)
                if conds[i]["status"] == status && conds[i].get("reason") == c.get("reason") => {}
            Some(i) => conds[i] = c,
            None => conds.push(c),
        }
    };
    let finished = matches!(kind, "succeeded" | "failed");
    let not_ready_reason = if finished {
        Some("PodCompleted")
    } else if ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    cond("PodReadyToStartContainers", b(running || finished), None);
    cond("Initialized", "True", None);
    cond("Ready", b(ready), not_ready_reason);
    cond("ContainersReady", b(ready), not_ready_reason);
    cond("PodScheduled", "True", None);
    let mut status = json!({
        "phase": phase,
        "conditions": conds,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime").cloned().unwrap_or(json!(now)),
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    if running || finished {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    let inits: Vec<Value> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or_default();
            let done = running || finished;
            json!({
                "name": c["name"],
                "image": normalize_image(image),
                "imageID": "",
                "ready": done,
                "restartCount": 0,
                "started": false,
                "state": if done { json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}}) } else { json!({"waiting": {"reason": "PodInitializing"}}) },
                "lastState": {},
            })
        })
        .collect();
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    status
}

fn rollups(cfg: &Config, store: &mut Store, sim: &mut Sim) {
    // ReplicaSets.
    for rs in store.list("replicasets.apps", None) {
        let pods: Vec<Arc<Value>> = owned_by(store, "pods", &rs)
            .into_iter()
            .filter(|p| !is_deleting(p))
            .collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let n = pods.len() as i64;
        let mut status = json!({
            "replicas": n,
            "fullyLabeledReplicas": n,
            "observedGeneration": i(rs.pointer("/metadata/generation")),
        });
        if ready > 0 {
            status["readyReplicas"] = json!(ready);
            status["availableReplicas"] = json!(ready);
        }
        put_status(store, "replicasets.apps", &rs, status, CONTROLLER);
    }
    // Deployments.
    for d in store.list("deployments.apps", None) {
        if is_deleting(&d) {
            continue;
        }
        let uid = meta_str(&d, "uid").to_string();
        let desired = i(d.pointer("/spec/replicas"));
        let hash = template_hash(&d);
        let owned = owned_by(store, "replicasets.apps", &d);
        let Some(new_rs) = owned.iter().find(|rs| {
            rs.pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                == Some(hash.as_str())
        }) else {
            continue;
        };
        let new_name = meta_str(new_rs, "name").to_string();
        let sum = |f: &str| {
            owned
                .iter()
                .map(|rs| i(rs.pointer(&format!("/status/{f}"))))
                .sum::<i64>()
        };
        let replicas = sum("replicas");
        let ready = sum("readyReplicas");
        let available = sum("availableReplicas");
        let updated = i(new_rs.pointer("/status/replicas"));
        let complete = updated == desired && replicas == desired && available == desired;
        let counts = (updated, ready, available);
        let now = Instant::now();
        let entry = sim.progress.entry(uid.clone()).or_insert((counts, now));
        if entry.0 != counts {
            *entry = (counts, now);
        }
        let stalled_for = entry.1.elapsed();
        let deadline = Duration::from_secs(
            d.pointer("/spec/progressDeadlineSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(600),
        );
        let scripted = annotation(&d, "double.kprov.dev/progress-deadline-exceeded")
            == Some("true")
            || d.pointer(
                "/spec/template/metadata/annotations/double.kprov.dev~1progress-deadline-exceeded",
            )
            .and_then(Value::as_str)
                == Some("true");
        let age = sim
            .first_seen
            .get(&uid)
            .map(|t| t.elapsed())
            .unwrap_or_default();
        let ready_after = annotation(&d, "double.kprov.dev/ready-after")
            .and_then(parse_duration)
            .unwrap_or(cfg.ready_after);
        let exceeded = !complete && (stalled_for > deadline || (scripted && age >= ready_after));
        sim.first_seen.entry(uid).or_insert(now);

        let mut conds = conditions_of(&d);
        let max_unavailable = match d.pointer("/spec/strategy/rollingUpdate/maxUnavailable") {
            Some(Value::String(p)) if p.ends_with('%') => {
                desired * p.trim_end_matches('%').parse::<i64>().unwrap_or(25) / 100
            }
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            _ if d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") => 0,
            _ => desired / 4,
        };
        if available >= desired - max_unavailable {
            set_condition(
                &mut conds,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                true,
            );
        } else {
            set_condition(
                &mut conds,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                true,
            );
        }
        let had_progressing = conds.iter().any(|c| c["type"] == "Progressing");
        if exceeded {
            set_condition(
                &mut conds,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                true,
            );
        } else if complete {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                true,
            );
        } else if !had_progressing {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set \"{new_name}\""),
                true,
            );
        } else {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                true,
            );
        }
        // Available first, as the deployment controller orders them.
        conds.sort_by_key(|c| if c["type"] == "Available" { 0 } else { 1 });
        let mut status = json!({
            "observedGeneration": i(d.pointer("/metadata/generation")),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": conds,
        });
        if desired - available > 0 {
            status["unavailableReplicas"] = json!(desired - available);
        }
        for key in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            if status[key] == 0 {
                status.as_object_mut().expect("object literal").remove(key);
            }
        }
        put_status(store, "deployments.apps", &d, status, CONTROLLER);
    }
    // StatefulSets.
    for sts in store.list("statefulsets.apps", None) {
        let name = meta_str(&sts, "name").to_string();
        let revision = format!("{name}-{}", template_hash(&sts));
        let pods = owned_by(store, "pods", &sts);
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let updated = pods
            .iter()
            .filter(|p| {
                p.pointer("/metadata/labels/controller-revision-hash")
                    .and_then(Value::as_str)
                    == Some(revision.as_str())
            })
            .count() as i64;
        let desired = i(sts.pointer("/spec/replicas"));
        let current_revision = if updated == pods.len() as i64 {
            revision.clone()
        } else {
            sts.pointer("/status/currentRevision")
                .and_then(Value::as_str)
                .unwrap_or(&revision)
                .to_string()
        };
        let mut status = json!({
            "observedGeneration": i(sts.pointer("/metadata/generation")),
            "replicas": pods.len(),
            "readyReplicas": ready,
            "currentReplicas": if current_revision == revision { updated } else { pods.len() as i64 - updated },
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        });
        if ready == 0 {
            status
                .as_object_mut()
                .expect("object literal")
                .remove("readyReplicas");
        }
        let _ = desired;
        put_status(store, "statefulsets.apps", &sts, status, CONTROLLER);
    }
    // Jobs.
    for job in store.list("jobs.batch", None) {
        let pods = owned_by(store, "pods", &job);
        let succeeded = pods.iter().filter(|p| pod_phase(p) == "Succeeded").count() as i64;
        let failed = pods.iter().filter(|p| pod_phase(p) == "Failed").count() as i64;
        let active: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
            .collect();
        let ready = active.iter().filter(|p| pod_ready(p)).count() as i64;
        let completions = job
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let backoff = job
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        let old = job.get("status").cloned().unwrap_or(json!({}));
        let mut conds = conditions_of(&job);
        let already_done = conds
            .iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True");
        let mut status = json!({
            "startTime": old.get("startTime").cloned().unwrap_or(json!(now_rfc3339())),
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "ready": ready,
        });
        if !active.is_empty() && !already_done {
            status["active"] = json!(active.len());
        }
        if succeeded > 0 {
            status["succeeded"] = json!(succeeded);
        }
        if failed > 0 {
            status["failed"] = json!(failed);
        }
        if !already_done && succeeded >= completions {
            let msg = "Reached expected number of succeeded pods";
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                msg,
                false,
            );
            set_condition(
                &mut conds,
                "Complete",
                "True",
                "CompletionsReached",
                msg,
                false,
            );
            for c in conds.iter_mut() {
                c["lastProbeTime"] = c["lastTransitionTime"].clone();
            }
            status["completionTime"] = json!(now_rfc3339());
            emit(
                store,
                sim,
                &job,
                false,
                "Completed",
                "Job completed",
                "job-controller",
                None,
            );
        } else if !already_done && failed > backoff {
            let msg = "Job has reached the specified backoff limit";
            set_condition(
                &mut conds,
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                msg,
                false,
            );
            set_condition(
                &mut conds,
                "Failed",
                "True",
                "BackoffLimitExceeded",
                msg,
                false,
            );
            for p in &active {
                delete_pod(store, p);
            }
            emit(
                store,
                sim,
                &job,
                true,
                "BackoffLimitExceeded",
                msg,
                "job-controller",
                None,
            );
        } else if let Some(t) = old.get("completionTime") {
            status["completionTime"] = t.clone();
        }
        if !conds.is_empty() {
            status["conditions"] = json!(conds);
        }
        put_status(store, "jobs.batch", &job, status, CONTROLLER);
    }
}

/// Claims bind at once (kind's local-path provisioner would bind on first use).
fn pvcs(store: &mut Store) {
    for pvc in store.list("persistentvolumeclaims", None) {
        if pvc.pointer("/status/phase").and_then(Value::as_str) == Some("Bound") {
            continue;
        }
        let request = pvc
            .pointer("/spec/resources/requests/storage")
            .cloned()
            .unwrap_or(json!("1Gi"));
        let modes = pvc
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or(json!(["ReadWriteOnce"]));
        let status =
            json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": request}});
        if let Some(bound) = put_status(store, "persistentvolumeclaims", &pvc, status, CONTROLLER)
            && bound.pointer("/spec/volumeName").is_none()
        {
            let t = rt(store, "persistentvolumeclaims");
            let (ns, name) = key_of(&bound);
            let _ = ops::patch(
                store,
                &t,
                Some(&ns),
                &name,
                PatchType::Merge,
                json!({"spec": {"volumeName": format!("pvc-{}", meta_str(&bound, "uid"))}}),
                false,
                &opts(CONTROLLER),
            );
        }
    }
}

/// `pods/log`: the scripted crash text, the `double.kprov.dev/logs` text, or a line saying
/// that no process runs.
pub fn pod_logs(
    shared: &Shared,
    pod: &Value,
    container: Option<&str>,
    _previous: bool,
) -> Result<String, ApiError> {
    let name = meta_str(pod, "name");
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            pod.pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match container {
        Some(c) if names.contains(&c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if names.len() == 1 => names[0].to_string(),
        None => {
            let main: Vec<&str> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            if main.len() == 1 {
                main[0].to_string()
            } else {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                )));
            }
        }
    };
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|s| s.iter().find(|c| c["name"] == container.as_str()).cloned());
    let store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
    let crash = sim_annotation(&store, pod, "crash");
    let scripted = sim_annotation(&store, pod, "logs");
    drop(store);
    if let Some(reason) = status
        .as_ref()
        .and_then(|s| s.pointer("/state/waiting/reason"))
        .and_then(Value::as_str)
        && reason != "CrashLoopBackOff"
    {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    if status.is_none() {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let with_newline = |s: String| {
        if s.ends_with('\n') {
            s
        } else {
            format!("{s}\n")
        }
    };
    Ok(match (crash, scripted) {
        (Some(text), _) => with_newline(text),
        (None, Some(text)) => with_newline(text),
        (None, None) => format!(
            "kube-double: container {container:?} of pod {name:?} is simulated; no process runs and it writes no logs\n"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_normalise_as_containerd_stores_them() {
        assert_eq!(
            normalize_image("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_image("kprov/base:dev"),
            "docker.io/kprov/base:dev"
        );
        assert_eq!(normalize_image("quay.io/x/y"), "quay.io/x/y:latest");
        assert_eq!(normalize_image("localhost/app:1"), "localhost/app:1");
        assert_eq!(
            normalize_image("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalize_image("redis@sha256:abc"),
            "docker.io/library/redis@sha256:abc"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut conds = vec![
            json!({"type": "Available", "status": "True", "reason": "A", "message": "m", "lastTransitionTime": "then"}),
        ];
        set_condition(&mut conds, "Available", "True", "B", "m2", false);
        assert_eq!(conds[0]["lastTransitionTime"], "then");
        set_condition(&mut conds, "Available", "False", "C", "m3", false);
        assert_ne!(conds[0]["lastTransitionTime"], "then");
    }
}
