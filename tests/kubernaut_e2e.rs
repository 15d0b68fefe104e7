//! Every kubernaut profile comes up end to end on the sandbox (node containers with real
//! containerd, the Kubernetes API double behind the kind CLI double), from a kubernaut-shaped
//! source tree (kubernaut's own CRDs and kind configs from ../shared/reference/kubernaut, with
//! the stand-ins of tests/fixtures/kubernaut; for [`HAPI`], kubernaut 2e38670be's, the stand-ins
//! of tests/fixtures/kubernaut-2e38670be alone), with a stand-in image for every image key
//! (`--image KEY=REF`, built here from busybox): each run waits once and passes its host-side
//! readiness checks through the suite's own kind config's fixed host ports.
//!
//! The suites' kind configs publish fixed host ports (30081, 30281, 8080…), so the profiles
//! come up one after another in one test, each cluster deleted before the next.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{repo_root, require_docker};

/// The profiles with a sandbox run: kubernaut HEAD's seven and [`HAPI`]. workflowexecution's
/// Tekton release (a remote manifest, not pinned by the profile; no network here) is read from
/// kprov's manifest cache as [`common::TEKTON_STAND_IN`], seeded as its first download; the AWX
/// Operator's kustomize base (on GitHub) is [`common::AWX_OPERATOR_BASE`]; the status that
/// kubernaut's AuthWebhook sets on its ActionTypes and RemediationWorkflows, and what the AWX
/// Operator makes of the AWX custom resource, are [`StandIns`]; what HAPI's DataStorage answers
/// over its API is [`StandIns::datastorage`].
const SERVICES: [&str; 8] = [
    "datastorage",
    "signalprocessing",
    "gateway",
    "aianalysis",
    "remediationorchestrator",
    "notification",
    "workflowexecution",
    HAPI,
];

/// The AIAnalysis profile of kubernaut trees with HolmesGPT-API (2e38670be), brought up from
/// [`common::kubernaut_source_2e38670be`].
const HAPI: &str = "aianalysis-hapi";

/// The workflows the HAPI suite registers in DataStorage (each for staging, production and
/// test) and finds by name afterwards.
const HAPI_WORKFLOWS: [&str; 6] = [
    "oomkill-increase-memory-v1",
    "crashloop-config-fix-v1",
    "node-drain-reboot-v1",
    "memory-optimize-v1",
    "generic-restart-v1",
    "test-signal-handler-v1",
];

/// The ConfigMap of DataStorage's canned answers in the HAPI run (the double's answers
/// annotation on Service data-storage-service names it).
const DATASTORAGE_ANSWERS: &str = "data-storage-stand-in-answers";

/// What that era's DataStorage answers to the requests of the HAPI profile: `/health`, the
/// action type and workflow registrations (one answer each, whatever the body: the double does
/// not compare bodies, and the profile reads no id from them), and each by-name list of a
/// workflow with its own id ([`workflow_uuid`] of its name, as DataStorage derives a
/// workflow's id from its name). A list of another name, or any other request, is 404.
fn datastorage_answers() -> String {
    let mut answers = serde_json::json!({
        "GET /health": {"status": 200, "body": {"status": "healthy"}},
        "POST /api/v1/action-types": {"status": 201, "body": {"status": "Active"}},
        "POST /api/v1/workflows": {"status": 201, "body": {"status": "Active"}},
    });
    for name in HAPI_WORKFLOWS {
        let list = format!("GET /api/v1/workflows?workflow_name={name}&limit=1");
        answers[list] = serde_json::json!({"status": 200, "body": {
            "workflows": [{"workflowId": workflow_uuid(name), "workflowName": name}],
            "limit": 1, "offset": 0, "total": 1
        }});
    }
    answers.to_string()
}

/// The registry login the workflowexecution suite's host may have (`podman login`), in the
/// test's home, so that row 23's Secret is made.
const REGISTRY_LOGIN: &str = r#"{"auths": {"quay.io": {"auth": "a3Byb3Y6c2FuZGJveA=="}}}"#;

/// The profile's external AWX images: the test tags a stand-in under each one's own name
/// (kprov loads an external image that the engine holds), since the operator's objects name
/// them as they are.
const AWX_IMAGES: [&str; 6] = [
    "awx-operator",
    "kube-rbac-proxy",
    "awx",
    "awx-ee",
    "awx-redis",
    "awx-init",
];

/// What the AWX Operator makes of the AWX custom resource `awx-e2e`, as far as the profile's
/// steps see it: the web and task Deployments and Service awx-e2e-service on NodePort 30095,
/// whose answers (the double's canned answers, [`AWX_ANSWERS`]) are AWX's API.
const AWX_INSTANCE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: awx-e2e-web, namespace: kubernaut-system}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: awx-e2e-web}}
  template:
    metadata: {labels: {app.kubernetes.io/name: awx-e2e-web}}
    spec:
      containers: [{name: awx-e2e-web, image: "quay.io/ansible/awx:24.6.1", imagePullPolicy: IfNotPresent}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: awx-e2e-task, namespace: kubernaut-system}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: awx-e2e-task}}
  template:
    metadata: {labels: {app.kubernetes.io/name: awx-e2e-task}}
    spec:
      containers: [{name: awx-e2e-task, image: "quay.io/ansible/awx:24.6.1", imagePullPolicy: IfNotPresent}]
---
apiVersion: v1
kind: Service
metadata:
  name: awx-e2e-service
  namespace: kubernaut-system
  annotations: {kube-double.kprov.dev/answers: awx-e2e-stand-in-answers}
spec:
  type: NodePort
  selector: {app.kubernetes.io/name: awx-e2e-web}
  ports: [{name: http, port: 80, targetPort: 8052, nodePort: 30095}]
"#;

/// AWX's answers to the requests of ConfigureAWX, with the ids the test then looks for.
const AWX_ANSWERS: &str = r#"{
  "GET /api/v2/ping/": {"status": 200, "body": {"version": "24.6.1"}},
  "GET /api/v2/me/": {"status": 200, "body": {"results": [{"id": 1, "username": "admin"}]}},
  "GET /api/v2/instances/": {"status": 200, "body": {"results": [
    {"hostname": "awx-e2e-task", "enabled": true, "node_state": "ready", "node_type": "control"}]}},
  "POST /api/v2/organizations/": {"status": 201, "body": {"id": 7}},
  "POST /api/v2/projects/": {"status": 201, "body": {"id": 12}},
  "GET /api/v2/projects/12/": {"status": 200, "body": {"id": 12, "status": "successful"}},
  "POST /api/v2/inventories/": {"status": 201, "body": {"id": 3}},
  "POST /api/v2/inventories/3/hosts/": {"status": 201, "body": {"id": 1}},
  "POST /api/v2/job_templates/": {"status": 201, "body": {"id": 21}},
  "POST /api/v2/credentials/": {"status": 201, "body": {"id": 5}},
  "POST /api/v2/job_templates/21/credentials/": {"status": 204},
  "POST /api/v2/users/1/personal_tokens/": {"status": 201, "body": {"token": "stand-in-awx-token"}}
}"#;

/// What kubernaut's other parts do once the workflowexecution suite's objects exist:
/// AuthWebhook (with DataStorage) sets `status.registered` and `catalogStatus: Active` on each
/// ActionType and a `status.workflowId` on each RemediationWorkflow (a UUID made from its name
/// here); the AWX Operator makes [`AWX_INSTANCE`] of the AWX custom resource. Polls with
/// kubectl until stopped; [`StandIns::stop`] returns the workflow ids it set, by name.
struct StandIns {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<BTreeMap<String, String>>>,
}

/// A UUID-shaped id for a workflow, from its name.
fn workflow_uuid(name: &str) -> String {
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Plays the AWX Operator once the AWX custom resource exists; whether it has.
fn awx_operator(kubectl: &dyn Fn() -> Command) -> bool {
    let cr = kubectl()
        .args([
            "get",
            "awxs.awx.ansible.com",
            "awx-e2e",
            "-n",
            "kubernaut-system",
        ])
        .output();
    if !cr.is_ok_and(|o| o.status.success()) {
        return false;
    }
    let answers = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "awx-e2e-stand-in-answers", "namespace": "kubernaut-system"},
        "data": {"answers.json": AWX_ANSWERS},
    });
    let objects = format!("{answers}\n---\n{AWX_INSTANCE}");
    apply(kubectl, "awx-operator-stand-in", &objects)
}

/// `kubectl apply --server-side` of `objects` as field manager `manager`; whether it took.
fn apply(kubectl: &dyn Fn() -> Command, manager: &str, objects: &str) -> bool {
    let mut apply = kubectl();
    apply
        .args(["apply", "--server-side", "-f", "-"])
        .arg(format!("--field-manager={manager}"));
    let mut child = apply
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(objects.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

/// Plays DataStorage's application in the HAPI run: its answers ([`datastorage_answers`]) in
/// ConfigMap [`DATASTORAGE_ANSWERS`] once kubernaut-system exists, then the double's answers
/// annotation on Service data-storage-service once kprov has applied it. Whether both are in.
fn datastorage_app(kubectl: &dyn Fn() -> Command, answers_in: &mut bool) -> bool {
    if !*answers_in {
        let answers = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": DATASTORAGE_ANSWERS, "namespace": "kubernaut-system"},
            "data": {"answers.json": datastorage_answers()},
        });
        *answers_in = apply(kubectl, "datastorage-stand-in", &answers.to_string());
    }
    *answers_in
        && kubectl()
            .args([
                "annotate",
                "service",
                "data-storage-service",
                "-n",
                "kubernaut-system",
            ])
            .arg(format!(
                "kube-double.kprov.dev/answers={DATASTORAGE_ANSWERS}"
            ))
            .output()
            .is_ok_and(|o| o.status.success())
}

impl StandIns {
    fn start(kubectl: impl Fn() -> Command + Send + 'static) -> StandIns {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut ids = BTreeMap::new();
            let mut awx = false;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                awx = awx || awx_operator(&kubectl);
                for kind in [ACTION_TYPES, WORKFLOWS] {
                    for (ns, name) in unset(&kubectl, kind) {
                        let status = if kind == ACTION_TYPES {
                            serde_json::json!({"registered": true, "catalogStatus": "Active"})
                        } else {
                            let id = workflow_uuid(&name);
                            ids.insert(name.clone(), id.clone());
                            serde_json::json!({"workflowId": id, "catalogStatus": "Active"})
                        };
                        let patch = serde_json::json!({ "status": status }).to_string();
                        let _ = kubectl()
                            .args(["patch", kind, &name, "-n", &ns, "--subresource=status"])
                            .args(["--type=merge", "-p", &patch])
                            .output();
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            ids
        });
        StandIns {
            stop,
            thread: Some(thread),
        }
    }

    /// DataStorage's application in the HAPI run ([`datastorage_app`]), tried every 100 ms
    /// until it is in; [`StandIns::stop`] returns the workflow ids it answers, by name, once
    /// it is (none otherwise).
    fn datastorage(kubectl: impl Fn() -> Command + Send + 'static) -> StandIns {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut answers_in = false;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if datastorage_app(&kubectl, &mut answers_in) {
                    let ids = HAPI_WORKFLOWS.map(|n| (n.to_string(), workflow_uuid(n)));
                    return BTreeMap::from(ids);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            BTreeMap::new()
        });
        StandIns {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> BTreeMap<String, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

const ACTION_TYPES: &str = "actiontypes.kubernaut.ai";
const WORKFLOWS: &str = "remediationworkflows.kubernaut.ai";

/// The objects of `kind` whose status the AuthWebhook has not set yet: (namespace, name).
fn unset(kubectl: &dyn Fn() -> Command, kind: &str) -> Vec<(String, String)> {
    let Ok(out) = kubectl().args(["get", kind, "-A", "-o", "json"]).output() else {
        return Vec::new();
    };
    let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let field = if kind == ACTION_TYPES {
        "registered"
    } else {
        "workflowId"
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["status"][field].is_null())
        .map(|o| {
            let text = |k: &str| o["metadata"][k].as_str().unwrap_or_default().to_string();
            (text("namespace"), text("name"))
        })
        .collect()
}

/// One distinct stand-in image per image key (distinct IDs: two keys never share content).
fn stand_ins(host: &str, keys: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in keys {
        let reference = format!("localhost/kprov-test/kubernaut-stand-in-{key}:1");
        let exists = common::docker(host)
            .args(["image", "inspect", &reference])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !exists {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("Dockerfile"),
                format!(
                    "FROM {}\nLABEL dev.kprov.test.stand-in={key}\n",
                    common::BASE_IMAGE
                ),
            )
            .unwrap();
            common::run_ok(
                common::docker(host)
                    .args(["build", "-q", "-t", &reference])
                    .arg(dir.path()),
            );
        }
        out.insert(key.clone(), reference);
    }
    out
}

/// A profiles directory whose `service` profile names a unique cluster
/// ([`common::kprov_tree`]).
fn profiles_with_cluster(dir: &Path, service: &str, cluster: &str) -> String {
    let profiles = common::kprov_tree(dir);
    let path = profiles.join(format!("{service}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let p = kprov::profile::load(&repo_root().join("profiles"), service).unwrap();
    let name = p.cluster_name();
    let from = format!("  name: {name}\n");
    assert!(text.contains(&from), "{service}: no `{from}` line");
    std::fs::write(
        &path,
        text.replacen(&from, &format!("  name: {cluster}\n"), 1),
    )
    .unwrap();
    profiles.display().to_string()
}

struct Down<'a> {
    kprov: &'a dyn Fn() -> Command,
    cluster: String,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = (self.kprov)()
            .args(["down", "--cluster", &self.cluster])
            .stderr(Stdio::null())
            .status();
    }
}

fn up_one(host: &str, source: &Path, service: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::unique_name(&format!("k-{service}"));
    let profiles = profiles_with_cluster(dir.path(), service, &cluster);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let workflowexecution = service == "workflowexecution";
    if workflowexecution {
        prepare_workflowexecution(&dir.path().join(".kprov/cache"), &home);
    }
    let profile = kprov::profile::load(Path::new(&profiles), service).unwrap();
    let keys: Vec<String> = profile.spec.images.keys().cloned().collect();
    let mut images = stand_ins(host, &keys);
    for key in AWX_IMAGES {
        if let Some(stand_in) = images.remove(key) {
            let external = profile.spec.images[key].external.clone().unwrap();
            common::run_ok(common::docker(host).args(["tag", &stand_in, &external]));
        }
    }
    let kprov = || {
        let mut c = common::sandbox_kprov(host, dir.path(), Path::new(&profiles), source);
        // The suites' kubeconfig paths (~/.kube/<suite>-config) and the CA file beside them
        // land in this test's own home.
        c.env("HOME", &home).env_remove("KUBECONFIG");
        if service == HAPI {
            // Forwarded to the double by the sandbox (scripts/sandbox up).
            c.env("KUBE_DOUBLE_READY_MS", HAPI_READY_AFTER);
        }
        c
    };
    let _down = Down {
        kprov: &kprov,
        cluster: cluster.clone(),
    };
    let kubectl = kubectl_for(&profile, &home, dir.path());
    let aw = match service {
        "workflowexecution" => Some(StandIns::start(kubectl.clone())),
        HAPI => Some(StandIns::datastorage(kubectl.clone())),
        _ => None,
    };
    let values = dir.path().join("values.json");
    let mut up = kprov();
    up.args([
        "up",
        "--service",
        service,
        "--timeout",
        "8m",
        "--export-values",
    ]);
    up.arg(&values);
    for (key, reference) in &images {
        up.arg("--image").arg(format!("{key}={reference}"));
    }
    let out = up.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("kprov up failed:\n{stderr}"));
    }
    check_record(&kprov)?;
    check_ca_file(&profile, &home)?;
    check_node(host, &cluster, &profile, source)?;
    let exported: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&values).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", values.display()))?;
    let set = aw.map(StandIns::stop);
    if workflowexecution {
        check_late_secret_record(&dir.path().join(".kprov/runs"))?;
    }
    match (service, set) {
        ("workflowexecution", Some(set)) => check_workflowexecution(&set, &exported, &kubectl),
        // The other profiles mark no value for export: none leaves kprov.
        _ if !exported.is_empty() => Err(format!("values exported unasked: {:?}", exported.keys())),
        (HAPI, Some(set)) => check_hapi(&set, &kubectl),
        ("aianalysis", _) => check_registered_workflows(&kubectl),
        _ => Ok(()),
    }
}

/// Where kubernaut runs kind from, as the `/coverdata` mount of the suite's kind config shows
/// it (None: the kind config mounts none): `ProjectRootAsWorkingDir` suites from the root,
/// the others from the Go test's package directory.
fn coverdata_host_dir(service: &str) -> Option<&'static str> {
    match service {
        "datastorage" => Some("test/e2e/datastorage/coverdata"),
        "workflowexecution" => Some("test/e2e/workflowexecution/coverdata"),
        "aianalysis" | "gateway" => Some("coverdata"),
        _ => None,
    }
}

/// The node publishes every named port on the host port `kprov plan` shows (the kind config's
/// where the entry names none), and mounts the kind config's `./coverdata` from the directory
/// kubernaut runs kind from (created by kprov).
fn check_node(
    host: &str,
    cluster: &str,
    p: &kprov::profile::Profile,
    source: &Path,
) -> Result<(), String> {
    let node = format!("{cluster}-control-plane");
    let inspect = common::run_ok(common::docker(host).args(["inspect", &node]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).map_err(|e| e.to_string())?;
    let bindings = &inspect[0]["NetworkSettings"]["Ports"];
    for port in kprov::provision::render::planned_ports(p, source)? {
        let published = bindings[format!("{}/tcp", port.node_port)][0]["HostPort"].as_str();
        let Some(want) = port.host_port else { continue };
        if published != Some(want.to_string().as_str()) {
            return Err(format!(
                "{node}: NodePort {} on {published:?}, not {want} ({})",
                port.node_port, port.from
            ));
        }
    }
    let mount = inspect[0]["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["Destination"] == "/coverdata")
        .and_then(|m| m["Source"].as_str());
    let want = coverdata_host_dir(&p.service).map(|d| source.join(d));
    if mount.map(Path::new) != want.as_deref() {
        return Err(format!(
            "{node}: /coverdata mounted from {mount:?}, not {want:?}"
        ));
    }
    if let Some(dir) = want.filter(|d| !d.is_dir()) {
        return Err(format!("{}: not created before kind ran", dir.display()));
    }
    Ok(())
}

/// Row 19 (conformance/aianalysis.md): each seeded RemediationWorkflow's `/status` holds the
/// content hash and workflow id computed from its fixture, and the mock LLM's scenarios carry
/// those ids.
fn check_registered_workflows(kubectl: &dyn Fn() -> Command) -> Result<(), String> {
    let get = |args: &[&str]| {
        let out = kubectl().args(args).output().map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let scenarios = get(&[
        "get",
        "configmap",
        "mock-llm-scenarios",
        "-n",
        "kubernaut-system",
        "-o",
        "json",
    ])?;
    for (workflow, hash, id) in common::STAND_IN_WORKFLOWS {
        let name = format!("{workflow}-v1");
        let jsonpath = "-o=jsonpath={.status.contentHash} {.status.workflowId}";
        let status = get(&[
            "get",
            "remediationworkflow",
            &name,
            "-n",
            "kubernaut-system",
            jsonpath,
        ])?;
        if status.trim() != format!("{hash} {id}") {
            return Err(format!("{name}: status {status:?}, expected {hash} {id}"));
        }
        if !scenarios.contains(id) {
            return Err(format!("mock-llm-scenarios lacks {name}'s id {id}"));
        }
    }
    Ok(())
}

/// How long the double takes to make a pod Ready in the HAPI run (500 ms by default): the
/// time DataStorage's stand-in ([`StandIns::datastorage`], a kubectl call every 100 ms) has to
/// annotate data-storage-service between kprov applying it and its pod being Ready, after which
/// the steps call it (a real DataStorage's readiness probe waits 30 s). A stand-in too late
/// fails the run: the unannotated NodePort's plain answers carry no workflow id.
const HAPI_READY_AFTER: &str = "3s";

/// H10-H12 (conformance/aianalysis.md): the steps ran against DataStorage's answers. The mock
/// LLM's scenarios hold, for each of the 18 "<workflow>:<environment>" entries, the id that
/// DataStorage's stand-in listed for that workflow (`answered`, by name): six distinct ids,
/// each read from its own by-name list and templated where it belongs.
fn check_hapi(
    answered: &BTreeMap<String, String>,
    kubectl: &dyn Fn() -> Command,
) -> Result<(), String> {
    if answered.len() != HAPI_WORKFLOWS.len() {
        return Err("DataStorage's stand-in never annotated data-storage-service".into());
    }
    let out = kubectl()
        .args([
            "get",
            "configmap",
            "mock-llm-scenarios",
            "-n",
            "kubernaut-system",
        ])
        .args(["-o", "jsonpath={.data.scenarios\\.yaml}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("scenarios.yaml: {e}\n{text}"))?;
    let got: BTreeMap<String, String> = doc["scenarios"]
        .as_object()
        .ok_or_else(|| format!("scenarios.yaml has no scenarios:\n{text}"))?
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["workflow_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut expected = BTreeMap::new();
    for name in HAPI_WORKFLOWS {
        for env in ["staging", "production", "test"] {
            expected.insert(format!("{name}:{env}"), answered[name].clone());
        }
    }
    let distinct: std::collections::BTreeSet<&String> = got.values().collect();
    if got != expected || distinct.len() != HAPI_WORKFLOWS.len() {
        return Err(format!(
            "mock-llm-scenarios holds {got:#?}, DataStorage answered {answered:#?}"
        ));
    }
    Ok(())
}

/// The record of the run: nothing built, one wait point.
fn check_record(kprov: &dyn Fn() -> Command) -> Result<(), String> {
    let record = kprov()
        .args(["profile", "--format", "json"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record.stdout).unwrap();
    let tasks = record["tasks"].as_array().unwrap();
    let ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    if ids.iter().any(|id| id.starts_with("build:")) {
        return Err(format!("something was built: {ids:?}"));
    }
    if ids.iter().filter(|id| **id == "wait:ready").count() != 1 {
        return Err(format!("not one wait point: {ids:?}"));
    }
    Ok(())
}

/// The task of row 23's second Secret, as the run record has it: its own task after Tekton's
/// release, succeeded; the login read by both Secrets' tasks, recorded by digest only.
fn check_late_secret_record(runs: &Path) -> Result<(), String> {
    let mut records: Vec<_> = std::fs::read_dir(runs)
        .map_err(|e| format!("{}: {e}", runs.display()))?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    records.sort();
    let path = records.last().ok_or("no run record")?;
    let text = std::fs::read_to_string(path).unwrap();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = "secret:tekton-pipelines-resolvers/quay-pull-secret";
    let tasks = record["tasks"].as_array().unwrap();
    let task = tasks.iter().find(|t| t["id"] == id);
    let task = task.ok_or_else(|| format!("no task {id} in {}", path.display()))?;
    let deps = task["deps"].as_array().unwrap();
    let after_tekton = deps.iter().any(|d| d == "deploy:tekton-pipelines");
    if task["kind"] != "secret" || task["outcome"] != "succeeded" || !after_tekton {
        return Err(format!("{id} in the record: {task}"));
    }
    let read: Vec<&serde_json::Value> = record["host_files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["outcome"] == "read" && h["sha256"].is_string())
        .map(|h| &h["secret"])
        .collect();
    let both = [
        "kubernaut-workflows/quay-pull-secret",
        "tekton-pipelines-resolvers/quay-pull-secret",
    ];
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(REGISTRY_LOGIN);
    if read != both || text.contains(&b64) || text.contains("a3Byb3Y6c2FuZGJveA==") {
        return Err(format!(
            "host files in the record: {}",
            record["host_files"]
        ));
    }
    Ok(())
}

/// The CA file beside the suite's kubeconfig holds a certificate.
fn check_ca_file(profile: &kprov::profile::Profile, home: &Path) -> Result<(), String> {
    let Some(ca) = profile
        .spec
        .config
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.as_ref())
    else {
        return Ok(());
    };
    let kubeconfig = suite_kubeconfig(profile, home).ok_or("the profile names no ~/ kubeconfig")?;
    let dir = kubeconfig.parent().unwrap().display().to_string();
    let file = ca.replace("{{ kubeconfigDir }}", &dir);
    let pem = std::fs::read_to_string(&file).map_err(|e| format!("CA file {file}: {e}"))?;
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err(format!("{file} holds no certificate"));
    }
    Ok(())
}

/// The kubeconfig the profile names under `~/` (the suite's own path), in `home`.
fn suite_kubeconfig(profile: &kprov::profile::Profile, home: &Path) -> Option<std::path::PathBuf> {
    let kubeconfig = profile.spec.cluster.as_ref()?.kubeconfig.as_deref()?;
    Some(home.join(kubeconfig.strip_prefix("~/")?))
}

/// kubectl against the profile's cluster through the suite's kubeconfig in `home`, with its
/// own discovery cache under `dir`.
fn kubectl_for(
    profile: &kprov::profile::Profile,
    home: &Path,
    dir: &Path,
) -> impl Fn() -> Command + Clone + Send + 'static {
    let kubeconfig = suite_kubeconfig(profile, home).unwrap_or_else(|| dir.join("kubeconfig"));
    let context = format!("kind-{}", profile.cluster_name());
    let cache = dir.join("kube-cache");
    move || {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", &context, "--cache-dir"])
            .arg(&cache)
            .stdin(Stdio::null());
        c
    }
}

/// [`common::TEKTON_STAND_IN`] as the first download of Tekton's release in the run's
/// manifest cache, and a registry login in `home` (row 23's host file).
fn prepare_workflowexecution(cache: &Path, home: &Path) {
    common::seed_tekton_release(cache);
    let login = home.join(".config/containers/auth.json");
    std::fs::create_dir_all(login.parent().unwrap()).unwrap();
    std::fs::write(login, REGISTRY_LOGIN).unwrap();
}

/// Row 42: the thirteen workflow ids reach the caller, each the one the AuthWebhook set; row
/// 23: the registry login is the image pull Secret of kubernaut-workflows' `default` and, once
/// Tekton's release made its namespace, of the bundle resolver's ServiceAccount.
fn check_workflowexecution(
    set: &BTreeMap<String, String>,
    exported: &BTreeMap<String, String>,
    kubectl: &dyn Fn() -> Command,
) -> Result<(), String> {
    let expected: BTreeMap<String, String> = set
        .iter()
        .map(|(name, id)| (format!("workflow-id-{name}"), id.clone()))
        .collect();
    if expected.len() != 13 || *exported != expected {
        return Err(format!(
            "exported values {exported:#?}, the AuthWebhook stand-in set {expected:#?}"
        ));
    }
    let get = |args: &[&str]| {
        let out = kubectl().args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for (ns, sa) in [
        ("kubernaut-workflows", "default"),
        ("tekton-pipelines-resolvers", "tekton-pipelines-resolvers"),
    ] {
        check_pull_secret(&get, ns, sa)?;
    }
    check_awx(&get)
}

/// Secret quay-pull-secret in `ns` is the registry login, and ServiceAccount `sa` there has it
/// (alone) as its image pull Secret.
fn check_pull_secret(get: &dyn Fn(&[&str]) -> String, ns: &str, sa: &str) -> Result<(), String> {
    let secret = get(&[
        "get",
        "secret",
        "quay-pull-secret",
        "-n",
        ns,
        "-o",
        "jsonpath={.type} {.data.\\.dockerconfigjson}",
    ]);
    use base64::Engine as _;
    let decoded = secret
        .split_once(' ')
        .and_then(|(t, b)| (t == "kubernetes.io/dockerconfigjson").then_some(b))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    if decoded.as_deref() != Some(REGISTRY_LOGIN.as_bytes()) {
        return Err(format!(
            "{ns}/quay-pull-secret is not the login: {secret:?}"
        ));
    }
    let linked = get(&[
        "get",
        "serviceaccount",
        sa,
        "-n",
        ns,
        "-o",
        "jsonpath={.imagePullSecrets[*].name}",
    ]);
    if linked != "quay-pull-secret" {
        return Err(format!("{ns}/{sa} has imagePullSecrets {linked:?}"));
    }
    Ok(())
}

/// Rows 25-37: the operator rendered by kustomize with kubernaut's image overrides, AWX
/// configured through its API (the stand-in's ids), the token Secret, and the controller's
/// ansible section with the organization AWX answered.
fn check_awx(get: &dyn Fn(&[&str]) -> String) -> Result<(), String> {
    let images = get(&[
        "get",
        "deployment",
        "awx-operator-controller-manager",
        "-n",
        "kubernaut-system",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].image}",
    ]);
    if images
        != "registry.k8s.io/kubebuilder/kube-rbac-proxy:v0.15.0 quay.io/ansible/awx-operator:2.19.1"
    {
        return Err(format!("the AWX Operator runs {images:?}"));
    }
    let token = get(&[
        "get",
        "secret",
        "awx-api-token",
        "-n",
        "kubernaut-system",
        "-o",
        "jsonpath={.data.token}",
    ]);
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.decode(token.trim());
    if token.as_deref().ok() != Some(b"stand-in-awx-token".as_slice()) {
        return Err(format!("awx-api-token holds {token:?}"));
    }
    let config = get(&[
        "get",
        "configmap",
        "workflowexecution-config",
        "-n",
        "kubernaut-system",
        "-o",
        "jsonpath={.data.workflowexecution\\.yaml}",
    ]);
    let ansible =
        "ansible:\n  apiURL: \"http://awx-e2e-service.kubernaut-system:80\"\n  organizationID: 7\n";
    if !config.contains(ansible) {
        return Err(format!(
            "workflowexecution.yaml lacks {ansible:?}:\n{config}"
        ));
    }
    Ok(())
}

#[test]
fn every_kubernaut_profile_comes_up_on_the_sandbox_with_stand_in_images() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let source = common::kubernaut_source();
    let source_2e38670be = common::kubernaut_source_2e38670be();
    let only = std::env::var("KPROV_TEST_SERVICES").ok();
    let mut failures = Vec::new();
    for service in SERVICES {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|s| s == service))
        {
            continue;
        }
        let started = std::time::Instant::now();
        let tree = if service == HAPI {
            &source_2e38670be
        } else {
            &source
        };
        match up_one(&host, tree.path(), service) {
            Ok(()) => eprintln!("{service}: up in {:?}", started.elapsed()),
            Err(e) => failures.push(format!("== {service}\n{e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
