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

/// The profiles of kubernaut HEAD with a sandbox run. workflowexecution is left out: its
/// Tekton release is a remote manifest (no network here, and its digest is still to be
/// pinned), and its run-time values wait for ActionType/RemediationWorkflow status that only
/// kubernaut's AuthWebhook and DataStorage set.
const SERVICES: [&str; 6] = [
    "datastorage",
    "signalprocessing",
    "gateway",
    "aianalysis",
    "remediationorchestrator",
    "notification",
];

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
    let profile = kprov::profile::load(Path::new(&profiles), service).unwrap();
    let keys: Vec<String> = profile.spec.images.keys().cloned().collect();
    let images = stand_ins(host, &keys);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
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
    let mut up = kprov();
    up.args(["up", "--service", service, "--timeout", "8m"]);
    for (key, reference) in &images {
        up.arg("--image").arg(format!("{key}={reference}"));
    }
    let out = up.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("kprov up failed:\n{stderr}"));
    }
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
    if let Some(ca) = profile
        .spec
        .config
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.as_ref())
    {
        let kubeconfig = profile
            .spec
            .cluster
            .as_ref()
            .and_then(|c| c.kubeconfig.as_deref())
            .and_then(|k| k.strip_prefix("~/"))
            .map(|rel| home.join(rel))
            .ok_or("the profile names no ~/ kubeconfig")?;
        let dir = kubeconfig.parent().unwrap().display().to_string();
        let file = ca.replace("{{ kubeconfigDir }}", &dir);
        let pem = std::fs::read_to_string(&file).map_err(|e| format!("CA file {file}: {e}"))?;
        if !pem.contains("BEGIN CERTIFICATE") {
            return Err(format!("{file} holds no certificate"));
        }
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
