//! Every kubernaut profile comes up end to end on the sandbox (node containers with real
//! containerd, the Kubernetes API double behind the kind CLI double), from a kubernaut-shaped
//! source tree (kubernaut's own CRDs and kind configs from ../shared/reference/kubernaut, with
//! the stand-ins of tests/fixtures/kubernaut), with a stand-in image for every image key
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

/// The profiles of kubernaut HEAD with a sandbox run. workflowexecution's Tekton release (a
/// remote manifest, not pinned by the profile; no network here) is read from kprov's manifest
/// cache as [`common::TEKTON_STAND_IN`], seeded as its first download; the status that
/// kubernaut's AuthWebhook sets on its ActionTypes and RemediationWorkflows is set by
/// [`AuthWebhookStandIn`].
const SERVICES: [&str; 7] = [
    "datastorage",
    "signalprocessing",
    "gateway",
    "aianalysis",
    "remediationorchestrator",
    "notification",
    "workflowexecution",
];

/// The registry login the workflowexecution suite's host may have (`podman login`), in the
/// test's home, so that row 23's Secret is made.
const REGISTRY_LOGIN: &str = r#"{"auths": {"quay.io": {"auth": "a3Byb3Y6c2FuZGJveA=="}}}"#;

/// What kubernaut's AuthWebhook (with DataStorage) sets once the workflowexecution suite's
/// objects are admitted: `status.registered` and `catalogStatus: Active` on each ActionType, and
/// a `status.workflowId` on each RemediationWorkflow (a UUID made from its name here). Polls
/// with kubectl until stopped; [`AuthWebhookStandIn::stop`] returns the ids it set, by name.
struct AuthWebhookStandIn {
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

impl AuthWebhookStandIn {
    fn start(kubectl: impl Fn() -> Command + Send + 'static) -> AuthWebhookStandIn {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut ids = BTreeMap::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
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
        AuthWebhookStandIn {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> BTreeMap<String, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for AuthWebhookStandIn {
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

/// A profiles directory whose `service` profile names a unique cluster.
fn profiles_with_cluster(dir: &Path, service: &str, cluster: &str) -> String {
    let profiles = dir.join("profiles");
    for entry in walkdir::WalkDir::new(repo_root().join("profiles")) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(repo_root().join("profiles"))
            .unwrap();
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(profiles.join(rel)).unwrap();
        } else {
            std::fs::copy(entry.path(), profiles.join(rel)).unwrap();
        }
    }
    // `kprov:` paths resolve beside the profiles directory.
    std::os::unix::fs::symlink(repo_root().join("manifests"), dir.join("manifests")).unwrap();
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
    let images = stand_ins(host, &keys);
    let kprov = || {
        let mut c = common::sandbox_kprov(host, dir.path(), Path::new(&profiles), source);
        // The suites' kubeconfig paths (~/.kube/<suite>-config) and the CA file beside them
        // land in this test's own home.
        c.env("HOME", &home).env_remove("KUBECONFIG");
        c
    };
    let _down = Down {
        kprov: &kprov,
        cluster: cluster.clone(),
    };
    let kubectl = kubectl_for(&profile, &home, dir.path());
    let aw = workflowexecution.then(|| AuthWebhookStandIn::start(kubectl.clone()));
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
    let exported: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&values).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", values.display()))?;
    match aw {
        Some(aw) => check_workflowexecution(&aw.stop(), &exported, &kubectl),
        // The other profiles mark no value for export: none leaves kprov.
        None if exported.is_empty() => Ok(()),
        None => Err(format!("values exported unasked: {:?}", exported.keys())),
    }
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
/// 23: the registry login is kubernaut-workflows' image pull Secret.
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
    let secret = get(&[
        "get",
        "secret",
        "quay-pull-secret",
        "-n",
        "kubernaut-workflows",
        "-o",
        "jsonpath={.type} {.data.\\.dockerconfigjson}",
    ]);
    use base64::Engine as _;
    let decoded = secret
        .split_once(' ')
        .and_then(|(t, b)| (t == "kubernetes.io/dockerconfigjson").then_some(b))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    if decoded.as_deref() != Some(REGISTRY_LOGIN.as_bytes()) {
        return Err(format!("quay-pull-secret is not the login: {secret:?}"));
    }
    let linked = get(&[
        "get",
        "serviceaccount",
        "default",
        "-n",
        "kubernaut-workflows",
        "-o",
        "jsonpath={.imagePullSecrets[*].name}",
    ]);
    if linked != "quay-pull-secret" {
        return Err(format!(
            "kubernaut-workflows/default has imagePullSecrets {linked:?}"
        ));
    }
    Ok(())
}

#[test]
fn every_kubernaut_profile_comes_up_on_the_sandbox_with_stand_in_images() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let source = common::kubernaut_source();
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
        match up_one(&host, source.path(), service) {
            Ok(()) => eprintln!("{service}: up in {:?}", started.elapsed()),
            Err(e) => failures.push(format!("== {service}\n{e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
