//! The test infrastructure itself, against the real engine: kprov's test node image must
//! accept an image the way a Kind node does, or every load test above it means nothing.

mod common;

use common::{TestCluster, TestImage};

#[test]
fn node_imports_an_image_built_from_kprov_base() {
    let host = common::require_docker!();
    let image = TestImage::build(
        &host,
        "node_imports_an_image",
        "FROM kprov/base:latest\nCOPY greeting /greeting\nCMD [\"cat\", \"/greeting\"]\n",
        &[("greeting", b"hello from a kprov test image\n")],
    );
    let cluster = TestCluster::start(&host, "node_imports_an_image");
    let node = cluster.control_plane();
    assert!(
        !cluster
            .node_images(node)
            .contains(&image.containerd_reference()),
        "a fresh node must not hold {} yet",
        image.reference()
    );

    cluster.import_image(node, image.reference());

    let images = cluster.node_images(node);
    assert!(
        images.contains(&image.containerd_reference()),
        "{} missing from `ctr -n k8s.io images ls` on {node}: {images:?}",
        image.containerd_reference()
    );
    // Kind matches by image ID too: the CRI plugin also names the image by its config digest.
    assert!(
        images.contains(&image.id()),
        "image ID {} missing on {node}: {images:?}",
        image.id()
    );
    let check = cluster.exec(
        node,
        &[
            "ctr",
            "-n",
            "k8s.io",
            "images",
            "check",
            "--snapshotter",
            "native",
        ],
    );
    let line = check
        .lines()
        .find(|l| l.starts_with(&image.containerd_reference()))
        .unwrap_or_else(|| panic!("`ctr images check` does not list the image: {check}"));
    assert!(
        line.contains("complete") && line.trim_end().ends_with("true"),
        "image not complete and unpacked on {node}: {line}"
    );
}

#[test]
fn node_reports_the_native_snapshotter_in_its_containerd_config() {
    let host = common::require_docker!();
    let cluster = TestCluster::start(&host, "node_reports_snapshotter");
    let dump = cluster.exec(cluster.control_plane(), &["containerd", "config", "dump"]);
    assert!(dump.lines().any(|l| l.trim() == "version = 2"), "{dump}");
    assert!(
        dump.lines().any(|l| l.trim() == "snapshotter = \"native\""),
        "containerd config dump lacks the CRI snapshotter: {dump}"
    );
}

#[test]
fn cluster_nodes_carry_kind_labels_and_names_and_are_removed_on_drop() {
    let host = common::require_docker!();
    let cluster = TestCluster::with_workers(&host, "cluster_nodes_labels", 2);
    let name = cluster.name().to_string();
    let expected: Vec<String> = ["control-plane", "worker", "worker2"]
        .iter()
        .map(|s| format!("{name}-{s}"))
        .collect();
    assert_eq!(cluster.nodes(), expected.as_slice());
    for (node, role) in expected.iter().zip(["control-plane", "worker", "worker"]) {
        let labels = common::run_ok(cluster.docker().args([
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.x-k8s.kind.cluster\"}} {{index .Config.Labels \"io.x-k8s.kind.role\"}}",
            node,
        ]));
        assert_eq!(labels.trim(), format!("{name} {role}"));
    }

    drop(cluster);

    let left = common::run_ok(common::docker(&host).args([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={name}"),
    ]));
    assert!(left.trim().is_empty(), "containers left after drop: {left}");
}

#[test]
fn cluster_is_removed_when_the_test_panics() {
    let host = common::require_docker!();
    let name = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let cluster = TestCluster::start(&host, "cluster_removed_on_panic");
        *name.lock().unwrap() = cluster.name().to_string();
        panic!("deliberate panic with a live cluster");
    });
    assert!(result.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    let left = common::run_ok(common::docker(&host).args([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={name}"),
    ]));
    assert!(
        left.trim().is_empty(),
        "containers left after a panic: {left}"
    );
}
