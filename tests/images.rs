//! Image builds and loads against the real Docker engine and real containerd node containers
//! (`kprov/node`, see tests/common). Where a test uses a double node (a busybox container
//! whose `ctr` is a script), its name and doc comment say so.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestCluster, TestImage, require_docker, require_podman};
use kprov::adapters::docker::Builder;
use kprov::adapters::docker::Engine;
use kprov::engine::{Done, TaskError};
use kprov::tasks::build::{
    BUILDER_LABEL, BuildRequest, BuilderChoice, BuiltImage, INPUTS_LABEL, build_image,
    build_image_with,
};
use kprov::tasks::load::{
    LoadOptions, NodeAction, load_image, load_image_with, normalize_image_name,
};
use kprov::tasks::pull::ensure_external;
use tokio_util::sync::CancellationToken;

fn fixture(name: &str) -> PathBuf {
    common::repo_root().join("tests/fixtures/images").join(name)
}

async fn engine(host: &str) -> Engine {
    Engine::connect_to(host)
        .await
        .expect("failed to connect to the test engine")
}

/// Copies a fixture directory (a build context) into a fresh temp dir the test may change.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("failed to create a temp dir");
    copy_dir(&fixture(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Marks the images a [`Repository`] built, so the guard finds untagged ones too.
const REPO_LABEL: &str = "io.kprov.test.repository";

/// Removes every image built into a test repository on drop, tagged or not (a `no_cache`
/// rebuild leaves the previous image untagged).
struct Repository {
    host: String,
    name: String,
}

impl Repository {
    fn new(host: &str, test: &str) -> Repository {
        common::ensure_test_images(host);
        Repository {
            host: host.to_string(),
            name: format!("localhost/kprov-test/{}", common::unique_name(test)),
        }
    }

    fn request(&self, image: &str, context: &Path, log_dir: &Path) -> BuildRequest {
        BuildRequest {
            image: image.to_string(),
            repository: self.name.clone(),
            context: context.to_path_buf(),
            dockerfile: context.join("Dockerfile"),
            target: None,
            args: BTreeMap::new(),
            labels: BTreeMap::from([
                (common::TEST_LABEL.to_string(), "true".to_string()),
                (REPO_LABEL.to_string(), self.name.clone()),
            ]),
            coverage: false,
            no_cache: false,
            log_dir: log_dir.to_path_buf(),
        }
    }
}

impl Drop for Repository {
    fn drop(&mut self) {
        let filter = format!("label={REPO_LABEL}={}", self.name);
        let Ok(out) = common::docker(&self.host)
            .args(["image", "ls", "--quiet", "--no-trunc", "--filter", &filter])
            .output()
        else {
            return;
        };
        let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let _ = common::docker(&self.host)
                .args(["image", "rm", "--force"])
                .args(&ids)
                .output();
        }
    }
}

/// Runs `cmd` in a throwaway container of `image` and returns its stdout.
fn run_in_image(host: &str, image: &str, cmd: &[&str]) -> String {
    common::run_ok(
        common::docker(host)
            .args(["run", "--rm", "--label", "io.kprov.test=true", image])
            .args(cmd),
    )
}

fn label_of(host: &str, image: &str, label: &str) -> String {
    let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
    common::run_ok(common::docker(host).args(["image", "inspect", "--format", &format, image]))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_tags_the_image_by_its_inputs_and_sends_only_what_dockerignore_allows() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "build_tags");
    let ctx_dir = copy_fixture("app");
    std::fs::write(ctx_dir.path().join("debug.log"), "ignored").unwrap();
    std::fs::create_dir_all(ctx_dir.path().join("tmp/deep")).unwrap();
    std::fs::write(ctx_dir.path().join("tmp/deep/x.txt"), "ignored").unwrap();
    std::fs::write(ctx_dir.path().join("src/old.bak"), "ignored").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut req = repo.request("app", ctx_dir.path(), logs.path());
    req.args.insert("GREETING".into(), "bonjour".into());
    let (ctx, mut rx) = common::task_ctx("build:app");

    let (built, done) = build_image(&engine, &req, &ctx)
        .await
        .expect("the fixture builds");

    assert_eq!(done, Done::Ran);
    let (repository, tag) = built.reference.rsplit_once(':').unwrap();
    assert_eq!(repository, repo.name);
    assert!(
        tag.starts_with("kprov-") && tag.len() == "kprov-".len() + 12,
        "{tag}"
    );
    assert!(built.id.starts_with("sha256:"), "{}", built.id);
    let inputs = label_of(&host, &built.reference, INPUTS_LABEL);
    assert!(
        inputs.starts_with(&tag["kprov-".len()..]),
        "tag {tag} is not derived from inputs {inputs}"
    );
    assert_eq!(label_of(&host, &built.reference, "io.kprov.test"), "true");

    let files = run_in_image(&host, &built.reference, &["find", "/app", "-type", "f"]);
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    // The daemon drops .dockerignore itself from COPY only when it is listed; here it is not.
    assert_eq!(
        files,
        vec![
            "/app/.dockerignore",
            "/app/Dockerfile",
            "/app/hello.txt",
            "/app/secret/public.txt",
            "/app/src/lib.txt"
        ]
    );
    assert_eq!(
        run_in_image(&host, &built.reference, &["cat", "/greeting"]).trim(),
        "bonjour"
    );

    let lines = common::progress(&mut rx);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("built with GREETING=bonjour")),
        "{lines:#?}"
    );
    let log = std::fs::read_to_string(logs.path().join("build-app.log")).unwrap();
    assert!(log.contains("built with GREETING=bonjour"), "{log}");
    // BuildKit ran it (its progress lines are numbered steps).
    assert!(log.contains("# builder buildkit"), "{log}");
    assert!(log.contains("#1 "), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_rebuild_is_cached_and_a_changed_input_rebuilds() {
    let host = require_docker!();
    rebuild_cache(&host, "rebuild_cache").await;
}

/// The content cache on Podman: the same inputs label, the same hits and misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_an_unchanged_rebuild_is_cached_and_a_changed_input_rebuilds() {
    let host = require_podman!();
    rebuild_cache(&host, "podman_rebuild_cache").await;
}

async fn rebuild_cache(host: &str, test: &str) {
    let host = host.to_string();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, test);
    let ctx_dir = copy_fixture("app");
    let logs = tempfile::tempdir().unwrap();
    let req = repo.request("app", ctx_dir.path(), logs.path());

    let (first, done) = build_image(&engine, &req, &common::task_ctx("b1").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Ran);

    let (again, done) = build_image(&engine, &req, &common::task_ctx("b2").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Cached, "nothing changed");
    assert_eq!(again, first);

    // Files .dockerignore excludes are not inputs.
    std::fs::write(ctx_dir.path().join("debug.log"), "new noise").unwrap();
    std::fs::write(ctx_dir.path().join("secret/private.txt"), "rotated").unwrap();
    let (ignored, done) = build_image(&engine, &req, &common::task_ctx("b3").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Cached, "only excluded files changed");
    assert_eq!(ignored, first);

    std::fs::write(ctx_dir.path().join("src/lib.txt"), "changed library code").unwrap();
    let (changed, done) = build_image(&engine, &req, &common::task_ctx("b4").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Ran, "a sent file changed");
    assert_ne!(changed.reference, first.reference);
    assert_ne!(changed.id, first.id);

    // A build arg is an input too, and so is the coverage flag.
    let mut with_arg = req.clone();
    with_arg.args.insert("GREETING".into(), "hi".into());
    let (by_arg, done) = build_image(&engine, &with_arg, &common::task_ctx("b5").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Ran);
    assert_ne!(by_arg.reference, changed.reference);
    let mut coverage = req.clone();
    coverage.coverage = true;
    let (covered, _) = build_image(&engine, &coverage, &common::task_ctx("b6").0)
        .await
        .unwrap();
    assert_ne!(covered.reference, changed.reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_rebuilds_an_unchanged_image() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "no_cache");
    let ctx_dir = copy_fixture("app");
    let logs = tempfile::tempdir().unwrap();
    let mut req = repo.request("app", ctx_dir.path(), logs.path());
    let (first, _) = build_image(&engine, &req, &common::task_ctx("b1").0)
        .await
        .unwrap();
    req.no_cache = true;
    let (again, done) = build_image(&engine, &req, &common::task_ctx("b2").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Ran);
    assert_eq!(again.reference, first.reference, "same inputs, same tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerfile_outside_the_context_is_sent_and_not_copied() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "outside_dockerfile");
    let ctx_dir = copy_fixture("app");
    std::fs::remove_file(ctx_dir.path().join("Dockerfile")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dockerfile = elsewhere.path().join("app.Dockerfile");
    std::fs::write(&dockerfile, "FROM kprov/base:latest\nCOPY . /app/\n").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut req = repo.request("app", ctx_dir.path(), logs.path());
    req.dockerfile = dockerfile;

    let (built, _) = build_image(&engine, &req, &common::task_ctx("b").0)
        .await
        .unwrap();

    let files = run_in_image(&host, &built.reference, &["find", "/app", "-type", "f"]);
    assert!(
        !files.contains(".dockerfile."),
        "the generated Dockerfile was copied: {files}"
    );
    // As with the docker CLI, an existing .dockerignore only gains the generated name, so it is
    // still copied unless it lists itself.
    assert!(files.contains("/app/.dockerignore"), "{files}");
    assert!(files.contains("/app/hello.txt"), "{files}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_dockerfile_fails_with_the_tail_of_its_log() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "broken");
    let logs = tempfile::tempdir().unwrap();
    let req = repo.request("broken", &fixture("broken"), logs.path());

    let err: TaskError = build_image(&engine, &req, &common::task_ctx("b").0)
        .await
        .unwrap_err();
    eprintln!("{}", err.message);

    let log_path = logs.path().join("build-broken.log");
    assert!(
        err.message.contains("build image broken"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("kprov-broken-step-marker: about to fail"),
        "{}",
        err.message
    );
    // BuildKit's words for a failed RUN.
    assert!(err.message.contains("exit code: 3"), "{}", err.message);
    assert!(
        err.message.contains(&log_path.display().to_string()),
        "{}",
        err.message
    );
    assert!(!err.transient);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("kprov-broken-step-marker"), "{log}");
    // The failed step's container is removed too (forcerm).
    let commands = common::run_ok(common::docker(&host).args([
        "ps",
        "--all",
        "--no-trunc",
        "--format",
        "{{.Command}}",
    ]));
    assert!(
        !commands.contains("kprov-broken-step-marker"),
        "a build container was left: {commands}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_external_image_names_the_image_and_how_to_provide_it() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let reference = format!("kprov-test/{}:never-built", common::unique_name("missing"));

    let err = ensure_external(&engine, &reference, &common::task_ctx("ext").0)
        .await
        .unwrap_err();
    eprintln!("{}", err.message);

    assert!(err.message.contains(&reference), "{}", err.message);
    assert!(
        err.message.contains(&format!("docker pull {reference}")),
        "{}",
        err.message
    );
    assert!(err.message.contains("docker load -i"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_present_external_image_is_cached() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let engine = engine(&host).await;
    let (image, done) = ensure_external(&engine, common::BASE_IMAGE, &common::task_ctx("ext").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Cached);
    assert_eq!(image.reference, common::BASE_IMAGE);
    assert!(image.id.starts_with("sha256:"));
}

/// A small image for load tests, built with the docker CLI (not with kprov).
fn load_test_image(host: &str, test: &str) -> (TestImage, BuiltImage) {
    let image = TestImage::build(
        host,
        test,
        "FROM kprov/base:latest\nCOPY payload /payload\n",
        &[("payload", test.as_bytes())],
    );
    let built = BuiltImage {
        reference: image.reference().to_string(),
        id: image.id(),
        builder: None,
    };
    (image, built)
}

/// True when `node`'s containerd has `image` under its normalised name with the same ID.
fn node_has(cluster: &TestCluster, node: &str, image: &BuiltImage) -> bool {
    let refs = cluster.node_images(node);
    refs.contains(&normalize_image_name(&image.reference)) && refs.contains(&image.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_imports_into_a_one_node_cluster() {
    let host = require_docker!();
    load_one(&host, "load_one").await;
}

/// Podman's export (`docker-archive`: manifest.json, the config digest as the image ID, names
/// qualified as `localhost/…` or `docker.io/…`) streamed into a node container running on
/// Podman itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_load_imports_into_a_one_node_cluster_on_podman() {
    let host = require_podman!();
    load_one(&host, "podman_load_one").await;
}

async fn load_one(host: &str, test: &str) {
    let host = host.to_string();
    let cluster = TestCluster::start(&host, test);
    let (_image, built) = load_test_image(&host, test);
    let engine = engine(&host).await;
    let (ctx, mut rx) = common::task_ctx("load");

    let report = load_image_with(
        &engine,
        cluster.name(),
        &built,
        &LoadOptions::default(),
        &ctx,
    )
    .await
    .unwrap();

    assert_eq!(report.done(), Done::Ran);
    assert_eq!(
        report.nodes.get(cluster.control_plane()),
        Some(&NodeAction::Imported)
    );
    assert!(report.exported_bytes > 0);
    assert!(
        node_has(&cluster, cluster.control_plane(), &built),
        "{:?}",
        cluster.node_images(cluster.control_plane())
    );
    let lines = common::progress(&mut rx);
    assert!(
        lines.iter().any(|l| l.contains("snapshotter native")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_imports_into_every_node_of_a_three_node_cluster_from_one_export() {
    let host = require_docker!();
    let cluster = TestCluster::with_workers(&host, "load_three", 2);
    let (_image, built) = load_test_image(&host, "load_three");
    let engine = engine(&host).await;

    let report = load_image_with(
        &engine,
        cluster.name(),
        &built,
        &LoadOptions::default(),
        &common::task_ctx("load").0,
    )
    .await
    .unwrap();

    assert_eq!(report.nodes.len(), 3);
    assert!(
        report.nodes.values().all(|a| *a == NodeAction::Imported),
        "{report:?}"
    );
    for node in cluster.nodes() {
        assert!(
            node_has(&cluster, node, &built),
            "{node}: {:?}",
            cluster.node_images(node)
        );
    }
    // One `docker save` fed all three: the bytes counted are one archive's worth.
    let saved = common::docker(&host)
        .args(["save", &built.reference])
        .output()
        .unwrap();
    assert!(saved.status.success());
    let archive = saved.stdout.len() as u64;
    assert!(
        report.exported_bytes <= archive + archive / 10,
        "exported {} bytes for a {archive}-byte archive",
        report.exported_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_skips_nodes_that_already_have_the_image() {
    let host = require_docker!();
    let cluster = TestCluster::with_workers(&host, "load_skip", 1);
    let (_image, built) = load_test_image(&host, "load_skip");
    let engine = engine(&host).await;
    assert_eq!(
        load_image(&engine, cluster.name(), &built, &common::task_ctx("l1").0)
            .await
            .unwrap(),
        Done::Ran
    );

    let report = load_image_with(
        &engine,
        cluster.name(),
        &built,
        &LoadOptions::default(),
        &common::task_ctx("l2").0,
    )
    .await
    .unwrap();

    assert_eq!(report.done(), Done::Cached);
    assert!(
        report.nodes.values().all(|a| *a == NodeAction::Present),
        "{report:?}"
    );
    assert_eq!(report.exported_bytes, 0, "nothing was exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_imports_only_into_nodes_that_lack_the_image() {
    let host = require_docker!();
    let cluster = TestCluster::with_workers(&host, "load_partial", 1);
    let (image, built) = load_test_image(&host, "load_partial");
    // The control plane gets it the way kind does; the worker does not.
    cluster.import_image(cluster.control_plane(), image.reference());
    let engine = engine(&host).await;

    let report = load_image_with(
        &engine,
        cluster.name(),
        &built,
        &LoadOptions::default(),
        &common::task_ctx("l").0,
    )
    .await
    .unwrap();

    assert_eq!(
        report.nodes.get(cluster.control_plane()),
        Some(&NodeAction::Present)
    );
    assert_eq!(
        report.nodes.get(&cluster.nodes()[1]),
        Some(&NodeAction::Imported)
    );
    assert!(node_has(&cluster, &cluster.nodes()[1], &built));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_retags_when_a_node_has_the_image_under_another_name() {
    let host = require_docker!();
    let cluster = TestCluster::start(&host, "load_retag");
    let (image, built) = load_test_image(&host, "load_retag");
    let engine = engine(&host).await;
    load_image(&engine, cluster.name(), &built, &common::task_ctx("l1").0)
        .await
        .unwrap();
    let other = format!("{}-again:v2", image.reference().split(':').next().unwrap());
    common::run_ok(common::docker(&host).args(["tag", image.reference(), &other]));
    let _other_guard = RemoveOnDrop {
        host: host.clone(),
        reference: other.clone(),
    };
    let renamed = BuiltImage {
        reference: other.clone(),
        id: built.id.clone(),
        builder: None,
    };

    let report = load_image_with(
        &engine,
        cluster.name(),
        &renamed,
        &LoadOptions::default(),
        &common::task_ctx("l2").0,
    )
    .await
    .unwrap();

    assert_eq!(
        report.nodes.get(cluster.control_plane()),
        Some(&NodeAction::Retagged)
    );
    assert_eq!(report.exported_bytes, 0, "a re-tag imports nothing");
    assert_eq!(report.done(), Done::Ran);
    assert!(
        node_has(&cluster, cluster.control_plane(), &renamed),
        "{:?}",
        cluster.node_images(cluster.control_plane())
    );
}

struct RemoveOnDrop {
    host: String,
    reference: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = common::docker(&self.host)
            .args(["image", "rm", "--force", &self.reference])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_fails_clearly_when_the_cluster_has_no_nodes() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let image = BuiltImage {
        reference: common::BASE_IMAGE.to_string(),
        id: "sha256:0".to_string(),
        builder: None,
    };
    let cluster = common::unique_name("no_nodes");

    let err = load_image(&engine, &cluster, &image, &common::task_ctx("l").0)
        .await
        .unwrap_err();

    assert!(err.message.contains(&cluster), "{}", err.message);
    assert!(err.message.contains("no nodes found"), "{}", err.message);
}

/// Adds a TEST DOUBLE node (tests/fixtures/images/double-node: `ctr` is a script) to
/// `cluster`, importing per `mode` ("hang": never reads stdin; "fail": exits 1).
fn add_double_node(cluster: &TestCluster, double: &TestImage, suffix: &str, mode: &str) -> String {
    let node = format!("{}-{suffix}", cluster.name());
    common::run_ok(
        cluster
            .docker()
            .args(["run", "--detach", "--name", &node])
            .args([
                "--label",
                &format!("{}={}", common::KIND_CLUSTER_LABEL, cluster.name()),
            ])
            .args(["--label", &format!("{}=worker", common::KIND_ROLE_LABEL)])
            .args(["--label", &format!("{}=true", common::TEST_LABEL)])
            .args(["--env", &format!("KPROV_DOUBLE_IMPORT={mode}")])
            .arg(double.reference()),
    );
    node
}

fn double_node_image(host: &str) -> TestImage {
    let dir = fixture("double-node");
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let ctr = std::fs::read(dir.join("ctr")).unwrap();
    let containerd = std::fs::read(dir.join("containerd")).unwrap();
    TestImage::build(
        host,
        "double_node",
        &dockerfile,
        &[("ctr", &ctr), ("containerd", &containerd)],
    )
}

/// Uses double nodes (see [`add_double_node`]): one that never reads its stdin, one whose
/// import fails. The real node still gets the image, and both failures are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reports_every_failing_double_node_and_a_stalled_one_does_not_block_the_real_node() {
    let host = require_docker!();
    // Declared before the cluster so it is dropped after the containers using it.
    let double = double_node_image(&host);
    let cluster = TestCluster::start(&host, "load_dead_node");
    let hung = add_double_node(&cluster, &double, "worker", "hang");
    let failing = add_double_node(&cluster, &double, "worker2", "fail");
    // Bigger than every buffer between kprov and the hung process, so its channel fills up.
    let payload = vec![7u8; 8 << 20];
    let image = TestImage::build(
        &host,
        "load_dead_node",
        "FROM kprov/base:latest\nCOPY payload /payload\n",
        &[("payload", &payload)],
    );
    let built = BuiltImage {
        reference: image.reference().to_string(),
        id: image.id(),
        builder: None,
    };
    let engine = engine(&host).await;
    let opts = LoadOptions {
        stall_timeout: Duration::from_secs(3),
        channel_depth: 4,
    };

    let err = load_image_with(
        &engine,
        cluster.name(),
        &built,
        &opts,
        &common::task_ctx("l").0,
    )
    .await
    .unwrap_err();

    assert!(
        err.message.contains("2 of 3 node(s) failed"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains(&format!("{hung}: the import accepted no data")),
        "{}",
        err.message
    );
    assert!(
        err.message.contains(&format!("{failing}: `ctr")),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("double node refuses the import"),
        "{}",
        err.message
    );
    assert!(
        node_has(&cluster, cluster.control_plane(), &built),
        "the real node still got the image"
    );
}

/// Uses a double node that never reads its stdin: cancelling the task ends the load (stdin is
/// shut down and the exec abandoned) instead of waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_load_stops_feeding_a_hung_double_node() {
    let host = require_docker!();
    let double = double_node_image(&host);
    let cluster = TestCluster::start(&host, "load_cancel");
    add_double_node(&cluster, &double, "worker", "hang");
    let payload = vec![9u8; 8 << 20];
    let image = TestImage::build(
        &host,
        "load_cancel",
        "FROM kprov/base:latest\nCOPY payload /payload\n",
        &[("payload", &payload)],
    );
    let built = BuiltImage {
        reference: image.reference().to_string(),
        id: image.id(),
        builder: None,
    };
    let engine = engine(&host).await;
    let (ctx, _rx) = common::task_ctx("l");
    let opts = LoadOptions {
        stall_timeout: Duration::from_secs(3600),
        channel_depth: 4,
    };
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cancel.cancel();
    });

    let err = load_image_with(&engine, cluster.name(), &built, &opts, &ctx)
        .await
        .unwrap_err();

    assert!(err.message.ends_with("cancelled"), "{}", err.message);
}

/// A `kprov/base` container that sleeps, labelled for this test; removed on drop (by the
/// docker CLI, independently of the engine seam under test).
struct Sleeper {
    host: String,
    name: String,
    label: String,
}

impl Sleeper {
    fn start(host: &str, test: &str) -> Sleeper {
        common::ensure_test_images(host);
        let name = common::unique_name(test);
        let label = format!("io.kprov.test.sleeper={name}");
        let sleeper = Sleeper {
            host: host.to_string(),
            name: name.clone(),
            label: label.clone(),
        };
        common::run_ok(
            common::docker(host)
                .args(["run", "--detach", "--name", &name, "--label", &label])
                .args(["--label", &format!("{}=true", common::TEST_LABEL)])
                .args([common::BASE_IMAGE, "sleep", "1000000"]),
        );
        sleeper
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = common::docker(&self.host)
            .args(["rm", "--force", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_output_and_the_exit_code() {
    let host = require_docker!();
    let sleeper = Sleeper::start(&host, "exec_exit");
    let engine = engine(&host).await;
    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 7"];

    let out = engine
        .exec(&sleeper.name, &cmd, &CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(out.exit_code, 7);
    assert_eq!(out.stdout.trim(), "out");
    assert_eq!(out.stderr.trim(), "err");
    assert!(!out.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_stdin_to_the_end_and_shuts_it_down() {
    let host = require_docker!();
    let sleeper = Sleeper::start(&host, "exec_stdin");
    let engine = engine(&host).await;
    // `wc -c` only answers once stdin is closed: the count proves every byte and the EOF.
    let chunks: Vec<bytes::Bytes> = (0..48)
        .map(|i| bytes::Bytes::from(vec![i as u8; 64 << 10]))
        .collect();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut lines = Vec::new();

    let out = engine
        .exec_with_stdin(
            &sleeper.name,
            &["wc", "-c"],
            futures::stream::iter(chunks),
            &CancellationToken::new(),
            |_, l| lines.push(l.to_string()),
        )
        .await
        .unwrap();

    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), total.to_string());
    assert_eq!(lines, vec![total.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_container_streams_a_tar_of_the_path() {
    let host = require_docker!();
    let sleeper = Sleeper::start(&host, "copy_out");
    let engine = engine(&host).await;
    let cancel = CancellationToken::new();
    let write = [
        "sh",
        "-c",
        "mkdir -p /cov && echo covered > /cov/a.out && echo too > /cov/b.out",
    ];
    assert!(
        engine
            .exec(&sleeper.name, &write, &cancel)
            .await
            .unwrap()
            .success()
    );

    let mut stream = engine.copy_from_container(&sleeper.name, "/cov");
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        tar_bytes.extend_from_slice(&chunk.unwrap());
    }

    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            files.insert(entry.path().unwrap().to_string_lossy().into_owned(), text);
        }
    }
    assert_eq!(
        files.get("cov/a.out").map(String::as_str),
        Some("covered\n"),
        "{files:?}"
    );
    assert_eq!(
        files.get("cov/b.out").map(String::as_str),
        Some("too\n"),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_containers_removes_every_container_with_the_label() {
    let host = require_docker!();
    let first = Sleeper::start(&host, "remove_by_label");
    let engine = engine(&host).await;
    let listed = engine
        .list_containers(&[&first.label], false)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec![first.name.as_str()]
    );
    assert!(listed[0].running);

    let removed = engine.remove_containers(&[&first.label]).await.unwrap();

    assert_eq!(removed, vec![first.name.clone()]);
    assert!(
        engine
            .list_containers(&[&first.label], true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reports_its_version_and_negotiated_api() {
    let host = require_docker!();
    let engine = engine(&host).await;
    assert!(!engine.version().await.unwrap().is_empty());
    let api = engine.api_version();
    assert!(api.starts_with("1."), "{api}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_build_stops_it_and_leaves_no_build_container() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "cancel_build");
    let ctx_dir = tempfile::tempdir().unwrap();
    let marker = common::unique_name("kprov-cancel-marker");
    std::fs::write(
        ctx_dir.path().join("Dockerfile"),
        format!("FROM kprov/base:latest\nRUN echo {marker} && sleep 600 && echo done-{marker}\n"),
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let req = repo.request("slow", ctx_dir.path(), logs.path());
    let (ctx, _rx) = common::task_ctx("b");
    let cancel = ctx.cancel.clone();
    let log_path = logs.path().join("build-slow.log");
    let marker_in_log = marker.clone();
    let seen_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = seen_running.clone();
    let watcher = tokio::spawn(async move {
        // Cancel once the RUN step is running: its echo is in the log (BuildKit numbers the
        // line; the step's own line has the marker followed by ` &&`).
        let echoed = format!(" {marker_in_log}\n");
        while !std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains(&echoed)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The step runs now: the check after the cancel can see it if it is left.
        seen.store(
            !processes_with(&marker_in_log).is_empty(),
            std::sync::atomic::Ordering::SeqCst,
        );
        cancel.cancel();
    });

    let err = build_image(&engine, &req, &ctx).await.unwrap_err();
    watcher.await.unwrap();

    assert!(err.message.ends_with("cancelled"), "{}", err.message);
    // The daemon stops the step when the client goes away; give it a bounded while to do so.
    // BuildKit runs the step as a process of the engine (no container): look for both.
    let mut left = String::new();
    let mut running = Vec::new();
    for _ in 0..150 {
        left = common::run_ok(common::docker(&host).args([
            "ps",
            "--all",
            "--no-trunc",
            "--format",
            "{{.Names}} {{.Command}}",
        ]));
        running = processes_with(&marker);
        if !left.contains(&marker) && running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !left.contains(&marker),
        "the build's container was left: {left}"
    );
    assert!(
        running.is_empty(),
        "the build's step still runs: {running:?}"
    );
    assert!(seen_running.load(std::sync::atomic::Ordering::SeqCst));
}

/// Command lines of this machine's processes that contain `marker` (the engine runs here).
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) && !text.contains("cargo") && !text.contains("nextest") {
                found.push(text);
            }
        }
    }
    found
}

/// Builds (with the docker CLI, classic builder) `reference` from kprov/base with a `/marker`
/// file holding `marker`, labelled for `repo`'s cleanup.
fn build_base_with_cli(host: &str, repo: &Repository, reference: &str, marker: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM kprov/base:latest\nCOPY marker /marker\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("marker"), marker).unwrap();
    common::run_ok(
        common::docker(host)
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--quiet", "--tag", reference])
            .args(common::test_labels())
            .args(["--label", &format!("{REPO_LABEL}={}", repo.name)])
            .arg(dir.path()),
    )
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_base_image_is_a_cache_miss_and_a_hit_says_why() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "base_changed");
    let base = format!("{}-base:v1", repo.name);
    let first_base = build_base_with_cli(&host, &repo, &base, "one");
    let ctx_dir = tempfile::tempdir().unwrap();
    // The base comes through a global ARG set by a build arg, in a named stage.
    std::fs::write(
        ctx_dir.path().join("Dockerfile"),
        "ARG BASE=nothing:here\nFROM ${BASE} AS base\nFROM base\nRUN cat /marker > /seen\n",
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut req = repo.request("dependent", ctx_dir.path(), logs.path());
    req.args.insert("BASE".into(), base.clone());

    let (first, done) = build_image(&engine, &req, &common::task_ctx("b1").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Ran);
    assert_eq!(
        run_in_image(&host, &first.reference, &["cat", "/seen"]),
        "one"
    );
    let log = std::fs::read_to_string(logs.path().join("build-dependent.log")).unwrap();
    assert!(
        log.contains(&format!("# base {base} {first_base}")),
        "{log}"
    );

    let (ctx, mut rx) = common::task_ctx("b2");
    let (again, done) = build_image(&engine, &req, &ctx).await.unwrap();
    assert_eq!(done, Done::Cached, "nothing changed");
    assert_eq!(again, first);
    let inputs = label_of(&host, &first.reference, INPUTS_LABEL);
    let lines = common::progress(&mut rx);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("cached: inputs sha256:{inputs} unchanged"))),
        "{lines:#?}"
    );

    // Same context, same Dockerfile, same args: only the base image changed.
    let second_base = build_base_with_cli(&host, &repo, &base, "two");
    assert_ne!(second_base, first_base);
    let (rebuilt, done) = build_image(&engine, &req, &common::task_ctx("b3").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Ran, "the base image changed");
    assert_ne!(rebuilt.reference, first.reference);
    assert_eq!(
        run_in_image(&host, &rebuilt.reference, &["cat", "/seen"]),
        "two"
    );
}

/// What kubernaut's Dockerfiles use: `FROM --platform=$BUILDPLATFORM`, the automatic
/// TARGETARCH/BUILDPLATFORM args, `--platform=linux/amd64`, and a target whose build skips a
/// stage it does not need (here one that would fail).
const BUILDKIT_DOCKERFILE: &str = "\
FROM --platform=$BUILDPLATFORM kprov/base:latest AS build
ARG TARGETARCH
ARG BUILDPLATFORM
RUN echo \"$TARGETARCH\" > /arch && echo \"$BUILDPLATFORM\" > /buildplatform
FROM kprov/base:latest AS unused
RUN echo kprov-unused-stage-ran && exit 1
FROM --platform=linux/amd64 kprov/base:latest AS runtime
COPY --from=build /arch /buildplatform /
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildkit_builds_platform_args_and_targets_and_says_so() {
    let host = require_docker!();
    platform_args_build(&host, "buildkit", Builder::BuildKit, "with BuildKit").await;
}

/// The same Dockerfile on Podman (`scripts/podman-up`): its `/build` is buildah, which has
/// `FROM --platform=$BUILDPLATFORM`, `TARGETARCH` and skips the unused stage as BuildKit does;
/// kprov records the builder as `podman`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_builds_platform_args_and_targets_with_its_own_builder_and_says_so() {
    let host = require_podman!();
    platform_args_build(
        &host,
        "podman_platform",
        Builder::Podman,
        "with Podman's builder (buildah)",
    )
    .await;
}

async fn platform_args_build(host: &str, test: &str, expected: Builder, says: &str) {
    let host = host.to_string();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, test);
    let ctx_dir = tempfile::tempdir().unwrap();
    std::fs::write(ctx_dir.path().join("Dockerfile"), BUILDKIT_DOCKERFILE).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut req = repo.request("bk", ctx_dir.path(), logs.path());
    req.target = Some("runtime".into());
    let (ctx, mut rx) = common::task_ctx("build:bk");

    let (built, done) = build_image(&engine, &req, &ctx)
        .await
        .expect("BuildKit builds it");

    assert_eq!(done, Done::Ran);
    assert_eq!(built.builder, Some(expected));
    assert_eq!(
        run_in_image(&host, &built.reference, &["cat", "/arch"]),
        "amd64\n"
    );
    assert_eq!(
        run_in_image(&host, &built.reference, &["cat", "/buildplatform"]),
        "linux/amd64\n"
    );
    assert_eq!(
        label_of(&host, &built.reference, BUILDER_LABEL),
        expected.as_str()
    );
    let lines = common::progress(&mut rx);
    assert!(lines.iter().any(|l| l.contains(says)), "{lines:#?}");
    let log = std::fs::read_to_string(logs.path().join("build-bk.log")).unwrap();
    assert!(
        log.contains(&format!("# builder {}", expected.as_str())),
        "{log}"
    );
    assert!(!log.contains("kprov-unused-stage-ran"), "{log}");

    // A cache hit still says which builder made the image.
    let (again, done) = build_image(&engine, &req, &common::task_ctx("b2").0)
        .await
        .unwrap();
    assert_eq!(done, Done::Cached);
    assert_eq!(again.builder, Some(expected));
}

/// Why BuildKit is needed: the classic builder fails on the same Dockerfile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_builder_fails_where_buildkit_is_needed() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "classic_fails");
    let ctx_dir = tempfile::tempdir().unwrap();
    std::fs::write(ctx_dir.path().join("Dockerfile"), BUILDKIT_DOCKERFILE).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut req = repo.request("classic", ctx_dir.path(), logs.path());
    req.target = Some("runtime".into());

    let err = build_image_with(
        &engine,
        &req,
        BuilderChoice::Classic,
        &common::task_ctx("b").0,
    )
    .await
    .unwrap_err();

    eprintln!("{}", err.message);
    assert!(
        err.message.contains("failed to parse platform"),
        "{}",
        err.message
    );
    let log = std::fs::read_to_string(logs.path().join("build-classic.log")).unwrap();
    assert!(log.contains("# builder classic"), "{log}");
}
