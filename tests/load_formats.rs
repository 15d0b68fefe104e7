//! Image archives in the shapes other engines save, streamed into real containerd nodes
//! (`kprov/node`, see tests/common). This engine (Docker 20.10, classic image store) cannot
//! produce the containerd image store's shape, so the archives are built here: an OCI layout
//! whose `index.json` names an image index listing linux/amd64 (present), linux/arm64 and an
//! attestation manifest (both absent), as `docker save` of a multi-platform image on Docker's
//! containerd image store writes it.

mod common;

use bytes::Bytes;
use common::{TestCluster, require_docker};
use futures::StreamExt;
use kprov::adapters::docker::Engine;
use kprov::tasks::load::{ArchiveSource, LoadOptions, load_archive};
use sha2::{Digest, Sha256};

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn blob_entry(data: &[u8]) -> (String, Vec<u8>) {
    (
        format!("blobs/sha256/{}", &digest(data)["sha256:".len()..]),
        data.to_vec(),
    )
}

/// A multi-platform archive as Docker's containerd image store saves it.
struct MultiPlatformArchive {
    tar: Vec<u8>,
    index: String,
    manifest: String,
    config: String,
}

fn multi_platform_archive(name: &str, payload: &str) -> MultiPlatformArchive {
    let layer = tar_of(&[("hello.txt".to_string(), payload.as_bytes().to_vec())]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let absent = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&manifest),
             "size": manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent('a'),
             "size": 480, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent('b'),
             "size": 566, "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.digest": digest(&manifest),
                             "vnd.docker.reference.type": "attestation-manifest"}},
        ],
    }))
    .unwrap();
    let top = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": digest(&index), "size": index.len(),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": "v1"}}],
    }))
    .unwrap();
    let docker_manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{}", &digest(&config)[7..]),
        "RepoTags": [name],
        "Layers": [format!("blobs/sha256/{}", &digest(&layer)[7..])],
    }]))
    .unwrap();
    // Docker writes the blobs first and index.json, manifest.json and oci-layout after them.
    let tar = tar_of(&[
        blob_entry(&index),
        blob_entry(&manifest),
        blob_entry(&config),
        blob_entry(&layer),
        ("index.json".to_string(), top),
        ("manifest.json".to_string(), docker_manifest),
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
    ]);
    MultiPlatformArchive {
        tar,
        index: digest(&index),
        manifest: digest(&manifest),
        config: digest(&config),
    }
}

/// The archive as a stream of odd-sized chunks.
fn source(tar: &[u8]) -> ArchiveSource {
    let chunks: Vec<Bytes> = tar.chunks(1000).map(Bytes::copy_from_slice).collect();
    futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

/// Pipes `tar` into `ctr import` in `node` with the docker CLI; returns (success, output).
fn ctr_import(cluster: &TestCluster, node: &str, tar: &[u8], flags: &[&str]) -> (bool, String) {
    use std::io::Write;
    let mut child = cluster
        .docker()
        .args([
            "exec", "-i", node, "ctr", "-n", "k8s.io", "images", "import",
        ])
        .args(flags)
        .args(["--snapshotter", common::NODE_SNAPSHOTTER, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_archive_with_absent_platforms_loads_its_amd64_image() {
    let host = require_docker!();
    let cluster = TestCluster::with_workers(&host, "load_oci_index", 1);
    let name = format!(
        "docker.io/kprov-test/{}:v1",
        common::unique_name("oci-index")
    );
    let archive = multi_platform_archive(&name, "hello from amd64\n");

    // The premise: as kind imports (--all-platforms), the archive fails for the absent blobs.
    let (ok, output) = ctr_import(
        &cluster,
        cluster.control_plane(),
        &archive.tar,
        &["--all-platforms", "--digests"],
    );
    assert!(!ok, "kind's import unexpectedly worked: {output}");
    assert!(output.contains("not found"), "{output}");

    let engine = Engine::connect_to(&host).await.unwrap();
    let report = load_archive(
        &engine,
        cluster.name(),
        source(&archive.tar),
        &LoadOptions::default(),
        &common::task_ctx("load").0,
    )
    .await
    .expect("the cut-down archive imports");

    assert_eq!(report.nodes, cluster.nodes().to_vec());
    assert_eq!(report.bytes, archive.tar.len() as u64);
    assert_eq!(report.selected.len(), 1);
    let selected = &report.selected[0];
    assert_eq!(selected.name.as_deref(), Some(name.as_str()));
    assert_eq!(selected.manifest, archive.manifest);
    assert_eq!(selected.config.as_deref(), Some(archive.config.as_str()));
    assert_eq!(selected.from_index.as_deref(), Some(archive.index.as_str()));
    for node in cluster.nodes() {
        let ls = cluster.exec(node, &["ctr", "-n", "k8s.io", "images", "ls"]);
        let row = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{node} lacks {name}:\n{ls}"));
        // The node's image is the amd64 manifest, complete: no reference to absent blobs.
        assert!(row.contains(&archive.manifest), "{row}");
        assert!(row.contains("linux/amd64"), "{row}");
        let check = cluster.exec(node, &["ctr", "-n", "k8s.io", "images", "check"]);
        let line = check
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("{check}"));
        assert!(line.contains("complete"), "{line}");
        assert!(!line.contains("incomplete"), "{line}");
        // The CRI plugin knows it by its config digest, the ID both image stores agree on.
        assert!(
            cluster.node_images(node).contains(&archive.config),
            "{node}: {:?}",
            cluster.node_images(node)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_without_the_nodes_platform_fails_naming_the_platforms_it_has() {
    let host = require_docker!();
    let cluster = TestCluster::start(&host, "load_oci_no_amd64");
    let name = format!("docker.io/kprov-test/{}:v1", common::unique_name("oci-arm"));
    let archive = multi_platform_archive(&name, "x");
    // Drop the amd64 manifest's blob: only absent platforms remain.
    let manifest_path = format!("blobs/sha256/{}", &archive.manifest[7..]);
    let mut b = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(archive.tar.as_slice());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == manifest_path {
            continue;
        }
        let mut h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let path = e.path().unwrap().into_owned();
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let engine = Engine::connect_to(&host).await.unwrap();

    let err = load_archive(
        &engine,
        cluster.name(),
        source(&tar),
        &LoadOptions::default(),
        &common::task_ctx("load").0,
    )
    .await
    .unwrap_err();

    assert!(
        err.message.contains("no linux/amd64 image"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("linux/arm64/v8 (absent)"),
        "{}",
        err.message
    );
    assert!(
        !cluster.node_images(cluster.control_plane()).contains(&name),
        "nothing was imported"
    );
}
