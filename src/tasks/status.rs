//! `kprov status` and `kprov coverage`: reading (and, for coverage, winding down) a running
//! environment.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use futures::StreamExt;

use crate::adapters::{
    docker::{ContainerInfo, Engine},
    kind,
    kube::{Kube, Object},
};
use crate::profile::Profile;
use crate::tasks::{
    coverage::COVERDATA,
    wait::{State, workload_state},
};

const WORKLOAD_KINDS: [(&str, &str); 3] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
];

/// The kubeconfig a profile's cluster context lives in: the profile's, else kind's default.
pub fn kubeconfig_of(profile: &Profile) -> PathBuf {
    profile
        .kubeconfig()
        .unwrap_or_else(crate::tasks::cluster::default_kubeconfig)
}

async fn nodes(engine: &Engine, cluster: &str) -> anyhow::Result<Vec<ContainerInfo>> {
    crate::tasks::cluster::list_nodes(engine, cluster)
        .await
        .context("failed to list the cluster's node containers")
}

async fn connect(profile: &Profile) -> anyhow::Result<Kube> {
    let cluster = profile.cluster_name();
    let path = kubeconfig_of(profile);
    Kube::connect(Some(&path), Some(&kind::context_name(&cluster)))
        .await
        .with_context(|| format!("failed to connect to cluster {cluster}"))
}

/// The cluster, its nodes, and each workload of the profile's namespace with its state.
pub async fn status(engine: &Engine, profile: &Profile) -> anyhow::Result<String> {
    let cluster = profile.cluster_name();
    let nodes = nodes(engine, &cluster).await?;
    let mut out = String::new();
    if nodes.is_empty() {
        writeln!(
            out,
            "cluster {cluster}: not found (create it with: kprov up --service {})",
            profile.service
        )?;
        return Ok(out);
    }
    writeln!(
        out,
        "cluster {cluster} (context {})",
        kind::context_name(&cluster)
    )?;
    for n in &nodes {
        let role = n
            .labels
            .get("io.x-k8s.kind.role")
            .map(String::as_str)
            .unwrap_or("?");
        writeln!(
            out,
            "  node {:<32} {:<14} {}",
            n.name,
            role,
            if n.running { "running" } else { "stopped" }
        )?;
    }
    let kube = match connect(profile).await {
        Ok(k) => k,
        Err(e) => {
            writeln!(out, "  API: unreachable: {e:#}")?;
            return Ok(out);
        }
    };
    let ns = profile.namespace();
    writeln!(out, "namespace {ns}")?;
    let mut rows = 0;
    for (api_version, kind) in WORKLOAD_KINDS {
        for o in kube
            .list(api_version, kind, Some(ns), None)
            .await
            .with_context(|| format!("failed to list {kind}s in {ns}"))?
        {
            let state = match workload_state(kind, Some(&o), &[]) {
                State::Ready => "ready".to_string(),
                State::Pending(why) => format!("not ready: {why}"),
                State::Failed(why) => format!("FAILED: {why}"),
            };
            writeln!(out, "  {:<12} {:<32} {state}", kind, o.name())?;
            rows += 1;
        }
    }
    if rows == 0 {
        writeln!(out, "  nothing deployed")?;
    }
    Ok(out)
}

fn has_coverdir(o: &Object) -> bool {
    o.get("/spec/template/spec/containers")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["env"]
                    .as_array()
                    .is_some_and(|env| env.iter().any(|e| e["name"] == "GOCOVERDIR"))
            })
        })
}

/// Scale the instrumented Deployments to zero (so the binaries flush coverage on exit), wait
/// for their pods to go, copy /coverdata out of every node into `out`, and convert it when Go
/// is here.
pub async fn collect_coverage(
    engine: &Engine,
    profile: &Profile,
    out: &Path,
) -> anyhow::Result<String> {
    let cluster = profile.cluster_name();
    let nodes = nodes(engine, &cluster).await?;
    if nodes.is_empty() {
        bail!(
            "cluster {cluster} has no nodes (is it up? kprov status --service {})",
            profile.service
        );
    }
    let kube = connect(profile).await?;
    let ns = profile.namespace();
    let mut report = String::new();
    let instrumented: Vec<Object> = kube
        .list("apps/v1", "Deployment", Some(ns), None)
        .await?
        .into_iter()
        .filter(has_coverdir)
        .collect();
    if instrumented.is_empty() {
        writeln!(
            report,
            "no instrumented Deployments in {ns} (was the environment brought up with --coverage?)"
        )?;
    }
    for d in &instrumented {
        kube.scale(&d.object_ref(), 0)
            .await
            .with_context(|| format!("failed to scale Deployment {} to zero", d.name()))?;
        writeln!(report, "scaled Deployment {} to 0", d.name())?;
    }
    for d in &instrumented {
        let selector = crate::tasks::wait::pod_selector("Deployment", d);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut delay = Duration::from_millis(200);
        loop {
            let pods = kube
                .list("v1", "Pod", Some(ns), selector.as_deref())
                .await?;
            if pods.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "pods of Deployment {} still exist after 2m: {}",
                    d.name(),
                    pods.iter().map(Object::name).collect::<Vec<_>>().join(", ")
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    report.push_str(&copy_coverdata(engine, &nodes, out).await?);
    let result = out.join(format!("coverage_e2e_{}_binary.out", profile.service));
    let go = tokio::process::Command::new("go")
        .args(["tool", "covdata", "textfmt", "-i"])
        .arg(out)
        .arg("-o")
        .arg(&result)
        .kill_on_drop(true)
        .output()
        .await;
    match go {
        Ok(o) if o.status.success() => writeln!(report, "wrote {}", result.display())?,
        Ok(o) => writeln!(
            report,
            "go tool covdata failed ({}); the raw files are kept in {}",
            String::from_utf8_lossy(&o.stderr).trim(),
            out.display()
        )?,
        Err(_) => writeln!(
            report,
            "Go is not installed here: the raw coverage files are kept in {} (convert with: go tool covdata textfmt -i {} -o {})",
            out.display(),
            out.display(),
            result.display()
        )?,
    }
    Ok(report)
}

/// Copies /coverdata out of every node (an instrumented pod may have run on any) into the one
/// directory `out`: Go names its coverage files uniquely (counters by binary hash, process and
/// time; meta-data by its hash), so nodes' files do not collide, and a file two nodes both
/// show (the one host directory mounted in each) is the same file. A node without /coverdata
/// is named; none having it is an error.
async fn copy_coverdata(
    engine: &Engine,
    nodes: &[ContainerInfo],
    out: &Path,
) -> anyhow::Result<String> {
    let mut report = String::new();
    let mut all = std::collections::BTreeSet::new();
    let mut copied_from = Vec::new();
    for node in nodes {
        let mut tar_bytes = Vec::new();
        let mut stream = engine.copy_from_container(&node.name, COVERDATA);
        let mut missing = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => tar_bytes.extend_from_slice(&bytes),
                Err(e) if e.is_not_found() => {
                    missing = true;
                    break;
                }
                Err(e) => {
                    return Err(anyhow::anyhow!(e).context(format!(
                        "failed to copy {COVERDATA} out of node {}",
                        node.name
                    )));
                }
            }
        }
        if missing {
            writeln!(report, "node {} has no {COVERDATA}", node.name)?;
            continue;
        }
        let files = unpack_stripped(&tar_bytes, out).with_context(|| {
            format!(
                "failed to unpack the coverage data of node {} into {}",
                node.name,
                out.display()
            )
        })?;
        writeln!(
            report,
            "copied {} file(s) from {}:{COVERDATA} to {}",
            files.len(),
            node.name,
            out.display()
        )?;
        all.extend(files);
        copied_from.push(node.name.as_str());
    }
    if copied_from.is_empty() {
        bail!(
            "no node has {COVERDATA} (was the cluster created with --coverage?); nodes: {}",
            nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    writeln!(
        report,
        "{} coverage file(s) from {} node(s) in {}",
        all.len(),
        copied_from.len(),
        out.display()
    )?;
    Ok(report)
}

/// Unpack a `docker cp` tar (rooted at the copied directory's name) into `out`; returns the
/// files' paths relative to `out`.
fn unpack_stripped(tar_bytes: &[u8], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut files = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let rel: PathBuf = path.components().skip(1).collect();
        if rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            continue;
        }
        let is_file = entry.header().entry_type().is_file();
        entry.unpack(out.join(&rel))?;
        if is_file {
            files.push(rel);
        }
    }
    Ok(files)
}
