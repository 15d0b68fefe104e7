//! Shared helpers for integration tests that use the real Docker engine.
//!
//! Every test that needs the engine finds it here: `let host = common::require_docker!();`.
//! When no engine answers, the test is skipped with a message on stderr, except when the
//! `CI` variable is set: then it panics, so a CI run never passes by skipping silently.
//!
//! Node containers are started from `kprov/node:latest` (kprov's test node image: Debian's
//! containerd with the CRI plugin, not a Kind node) with Kind's labels, names and mounts.
//! The docker CLI is driven through `std::process::Command`; kprov itself uses bollard.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The socket `scripts/docker-up` starts its own dockerd on.
pub const KPROV_DOCKER_SOCKET: &str = "/run/kprov-docker/docker.sock";
/// Debian's and Docker's default engine socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// kprov's test node image, built by `scripts/images`.
pub const NODE_IMAGE: &str = "kprov/node:latest";
/// Scratch + busybox base for images built in tests, built by `scripts/images`.
pub const BASE_IMAGE: &str = "kprov/base:latest";
/// Kind's cluster label; a cluster exists iff some container carries it.
pub const KIND_CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
/// Kind's role label: `control-plane` or `worker`.
pub const KIND_ROLE_LABEL: &str = "io.x-k8s.kind.role";
/// Marks containers and images made by tests, so `scripts/test` can sweep what a killed test
/// process left behind.
pub const TEST_LABEL: &str = "io.kprov.test";
/// Set by `scripts/test` to an id of its run; test containers and images carry it in the
/// [`TEST_RUN_LABEL`] label, so the script removes only what its own run leaked.
pub const TEST_RUN_ENV: &str = "KPROV_TEST_RUN";
/// Label carrying [`TEST_RUN_ENV`]'s value.
pub const TEST_RUN_LABEL: &str = "io.kprov.test.run";
/// The snapshotter the test node's containerd config names for the CRI plugin.
pub const NODE_SNAPSHOTTER: &str = "native";

const PING_TIMEOUT: Duration = Duration::from_secs(5);
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The Docker host to use, or `None` when no engine answers.
///
/// Tries, in order, `$DOCKER_HOST`, the default socket and the socket of `scripts/docker-up`
/// (the same order as `scripts/docker-up`), and returns the first that answers `GET /_ping`.
/// Probed once per test process.
pub fn docker_host() -> Option<String> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| candidate_hosts().into_iter().find(|host| ping(host)))
        .clone()
}

fn candidate_hosts() -> Vec<String> {
    let mut hosts = Vec::new();
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && !host.is_empty()
    {
        hosts.push(host);
    }
    for socket in [DEFAULT_DOCKER_SOCKET, KPROV_DOCKER_SOCKET] {
        let host = format!("unix://{socket}");
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// True when an engine answers `GET /_ping` with 200 at `host` (`unix://` or `tcp://`).
pub fn ping(host: &str) -> bool {
    const REQUEST: &[u8] = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    fn exchange(mut stream: impl Read + Write) -> std::io::Result<String> {
        stream.write_all(REQUEST)?;
        let mut reply = String::new();
        stream.take(4096).read_to_string(&mut reply)?;
        Ok(reply)
    }
    let reply = if let Some(path) = host.strip_prefix("unix://") {
        if !Path::new(path).exists() {
            return false;
        }
        std::os::unix::net::UnixStream::connect(path).and_then(|s| {
            s.set_read_timeout(Some(PING_TIMEOUT))?;
            s.set_write_timeout(Some(PING_TIMEOUT))?;
            exchange(s)
        })
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        let addr = addr.trim_end_matches('/');
        let Some(addr) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
            return false;
        };
        std::net::TcpStream::connect_timeout(&addr, PING_TIMEOUT).and_then(|s| {
            s.set_read_timeout(Some(PING_TIMEOUT))?;
            s.set_write_timeout(Some(PING_TIMEOUT))?;
            exchange(s)
        })
    } else {
        return false;
    };
    reply.is_ok_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
}

/// True when the `CI` variable is set and non-empty.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// The Docker host, or `None` after printing a skip notice. Panics when CI is set and no
/// engine answers. Prefer the [`require_docker!`] macro, which also returns from the test.
pub fn require_docker() -> Option<String> {
    if let Some(host) = docker_host() {
        return Some(host);
    }
    let tried = candidate_hosts().join(", ");
    if in_ci() {
        panic!(
            "no Docker engine reachable (tried {tried}) and CI is set: run \
             `eval \"$(scripts/docker-up)\"` before the tests (scripts/test does)"
        );
    }
    eprintln!("skipping: no Docker engine (run scripts/docker-up); tried {tried}");
    None
}

/// `let host = require_docker!();` — the Docker host, or returns from the test when there is
/// none (panics under CI). In a test returning a value: `require_docker!(Ok(()))`.
macro_rules! require_docker_or_return {
    () => {
        match $crate::common::require_docker() {
            Some(host) => host,
            None => return,
        }
    };
    ($ret:expr) => {
        match $crate::common::require_docker() {
            Some(host) => host,
            None => return $ret,
        }
    };
}
// Renamed on export so the macro and the fn can share the name `require_docker`.
pub(crate) use require_docker_or_return as require_docker;

/// The socket `scripts/podman-up` serves Podman's Docker-compatible API on.
pub const KPROV_PODMAN_SOCKET: &str = "/run/kprov-podman/podman.sock";

/// The Podman host to use (`$KPROV_PODMAN_HOST`, else `scripts/podman-up`'s socket), or `None`
/// when it does not answer. Probed once per test process.
pub fn podman_host() -> Option<String> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| {
        let host = podman_candidate();
        ping(&host).then_some(host)
    })
    .clone()
}

fn podman_candidate() -> String {
    std::env::var("KPROV_PODMAN_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("unix://{KPROV_PODMAN_SOCKET}"))
}

/// The Podman host, or `None` after printing a skip notice. Panics when CI is set and Podman
/// does not answer, as [`require_docker`] does for Docker. Prefer [`require_podman!`].
pub fn require_podman() -> Option<String> {
    if let Some(host) = podman_host() {
        let engine = run_ok(docker(&host).args([
            "version",
            "--format",
            "{{range .Server.Components}}{{.Name}};{{end}}",
        ]));
        assert!(
            engine.contains("Podman Engine"),
            "the engine at {host} is not Podman (its components: {engine})"
        );
        return Some(host);
    }
    let host = podman_candidate();
    if in_ci() {
        panic!(
            "Podman does not answer at {host} and CI is set: run `scripts/podman-up` before \
             the tests (scripts/test does)"
        );
    }
    eprintln!("skipping: no Podman at {host} (run scripts/podman-up)");
    None
}

/// `let host = require_podman!();` — the Podman host, or returns from the test when Podman
/// is not running (panics under CI). Only some test binaries use it.
#[allow(unused_macros)]
macro_rules! require_podman_or_return {
    () => {
        match $crate::common::require_podman() {
            Some(host) => host,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_podman_or_return as require_podman;

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `docker` CLI command aimed at `host`.
pub fn docker(host: &str) -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", host).stdin(Stdio::null());
    cmd
}

/// Runs a command and returns its stdout; panics with the command, status and stderr otherwise.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
    check_output(cmd, &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_output(cmd: &Command, out: &Output) {
    if !out.status.success() {
        panic!(
            "failed to run {cmd:?}: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// `--label` arguments marking a container or image as made by a test (and by which run).
pub fn test_labels() -> Vec<String> {
    let mut args = vec!["--label".to_string(), format!("{TEST_LABEL}=true")];
    if let Ok(run) = std::env::var(TEST_RUN_ENV)
        && !run.is_empty()
    {
        args.push("--label".to_string());
        args.push(format!("{TEST_RUN_LABEL}={run}"));
    }
    args
}

/// True when `image` exists in the engine at `host`.
pub fn image_exists(host: &str, image: &str) -> bool {
    docker(host)
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure `kprov/base` and `kprov/node` exist, running `scripts/images` (idempotent, and
/// serialised across processes by its own lock) when one is missing.
pub fn ensure_test_images(host: &str) {
    // Per engine: a test may use Docker and Podman both.
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|h| h == host) {
        return;
    }
    if !(image_exists(host, BASE_IMAGE) && image_exists(host, NODE_IMAGE)) {
        let script = repo_root().join("scripts/images");
        eprintln!("building the test images with {}", script.display());
        run_ok(
            Command::new(&script)
                .env("DOCKER_HOST", host)
                .stdin(Stdio::null()),
        );
    }
    done.push(host.to_string());
}

/// A name unique to this test and process, usable as a cluster name, container name or image
/// repository: lowercase `[a-z0-9-]`, prefix `kp-`.
pub fn unique_name(test_name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut slug: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    slug.truncate(24);
    let slug = slug.trim_end_matches('-');
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("kp-{slug}-{}-{n}", std::process::id())
}

/// What a [`TestCluster`] starts.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Worker nodes besides the control plane.
    pub workers: usize,
    /// Node image; defaults to kprov's test node image.
    pub image: String,
    /// Extra `docker run` arguments for every node (e.g. `--network`, `-p`).
    pub extra_run_args: Vec<String>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            workers: 0,
            image: NODE_IMAGE.to_string(),
            extra_run_args: Vec::new(),
        }
    }
}

/// Node containers that look to kprov like a Kind cluster: Kind's labels and names, tmpfs
/// `/tmp` and `/run`, an anonymous `/var` volume, SYS_ADMIN with unconfined seccomp/apparmor
/// (this sandbox refuses `--privileged`). Removes its containers and volumes on drop, also
/// when the test panics.
#[derive(Debug)]
pub struct TestCluster {
    host: String,
    name: String,
    nodes: Vec<String>,
}

impl TestCluster {
    /// A one-node cluster (control plane only) named after the test.
    pub fn start(host: &str, test_name: &str) -> TestCluster {
        TestCluster::start_with(host, test_name, ClusterSpec::default())
    }

    /// A cluster with `workers` worker nodes besides the control plane.
    pub fn with_workers(host: &str, test_name: &str, workers: usize) -> TestCluster {
        let spec = ClusterSpec {
            workers,
            ..ClusterSpec::default()
        };
        TestCluster::start_with(host, test_name, spec)
    }

    /// Starts every node and waits until each node's containerd answers.
    pub fn start_with(host: &str, test_name: &str, spec: ClusterSpec) -> TestCluster {
        if spec.image == NODE_IMAGE {
            ensure_test_images(host);
        }
        // The guard exists before the first container, so a failure part-way still cleans up.
        let mut cluster = TestCluster {
            host: host.to_string(),
            name: unique_name(test_name),
            nodes: Vec::new(),
        };
        let mut roles = vec![("control-plane".to_string(), "control-plane")];
        for i in 1..=spec.workers {
            let suffix = if i == 1 { String::new() } else { i.to_string() };
            roles.push((format!("worker{suffix}"), "worker"));
        }
        for (suffix, role) in roles {
            let node = format!("{}-{suffix}", cluster.name);
            let mut cmd = docker(host);
            cmd.args(["run", "--detach", "--name", &node, "--hostname", &node])
                .args(["--label", &format!("{KIND_CLUSTER_LABEL}={}", cluster.name)])
                .args(["--label", &format!("{KIND_ROLE_LABEL}={role}")])
                .args(test_labels())
                .args(["--cap-add", "SYS_ADMIN"])
                .args(["--security-opt", "seccomp=unconfined"])
                .args(["--security-opt", "apparmor=unconfined"])
                .args(["--tmpfs", "/tmp", "--tmpfs", "/run", "--volume", "/var"])
                .args(["--restart", "on-failure:1", "--init=false"])
                .args(&spec.extra_run_args)
                .arg(&spec.image);
            // Recorded before the run returns: a container created but failing to start is
            // still removed on drop (which removes by label anyway).
            cluster.nodes.push(node);
            run_ok(&mut cmd);
        }
        for node in &cluster.nodes {
            cluster.wait_for_containerd(node);
        }
        cluster
    }

    fn wait_for_containerd(&self, node: &str) {
        let start = Instant::now();
        loop {
            let out = self.exec_output(node, &["ctr", "version"]);
            if out.status.success() {
                return;
            }
            if start.elapsed() > NODE_READY_TIMEOUT {
                panic!(
                    "failed to start node {node}: containerd did not answer within {:?}\n\
                     ctr: {}\nnode log:\n{}",
                    NODE_READY_TIMEOUT,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.logs(node)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The cluster name (value of the `io.x-k8s.kind.cluster` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Docker host the nodes run on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Node container names: `<name>-control-plane`, then `<name>-worker`, `<name>-worker2`….
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The control-plane node's container name.
    pub fn control_plane(&self) -> &str {
        &self.nodes[0]
    }

    /// A `docker` command aimed at this cluster's engine.
    pub fn docker(&self) -> Command {
        docker(&self.host)
    }

    /// Runs `args` in `node` (`docker exec`) and returns the raw output.
    pub fn exec_output(&self, node: &str, args: &[&str]) -> Output {
        let mut cmd = self.docker();
        cmd.arg("exec").arg(node).args(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"))
    }

    /// Runs `args` in `node` and returns stdout; panics with stderr when it fails.
    pub fn exec(&self, node: &str, args: &[&str]) -> String {
        let mut cmd = self.docker();
        cmd.arg("exec").arg(node).args(args);
        run_ok(&mut cmd)
    }

    /// Image references in the node's `k8s.io` containerd namespace (`ctr images ls -q`).
    pub fn node_images(&self, node: &str) -> Vec<String> {
        self.exec(node, &["ctr", "-n", "k8s.io", "images", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Streams `docker save IMAGE` into `node`'s containerd as Kind does:
    /// `ctr -n k8s.io images import --all-platforms --digests --snapshotter=native -`.
    pub fn import_image(&self, node: &str, image: &str) {
        let mut save = self.docker();
        save.args(["save", image])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut save_child = save
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn {save:?}: {e}"));
        let tar = save_child.stdout.take().expect("piped stdout");
        let mut import = self.docker();
        import
            .args([
                "exec", "-i", node, "ctr", "-n", "k8s.io", "images", "import",
            ])
            .args(["--all-platforms", "--digests"])
            .arg(format!("--snapshotter={NODE_SNAPSHOTTER}"))
            .arg("-")
            .stdin(Stdio::from(tar));
        let import_out = import
            .output()
            .unwrap_or_else(|e| panic!("failed to spawn {import:?}: {e}"));
        let save_out = save_child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("failed to wait for {save:?}: {e}"));
        check_output(&save, &save_out);
        check_output(&import, &import_out);
    }

    /// The node's container log (containerd's output), for failure messages.
    pub fn logs(&self, node: &str) -> String {
        let out = self.docker().args(["logs", "--tail", "50", node]).output();
        match out {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("(failed to read logs of {node}: {e})"),
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // By label, so containers this guard did not get to record are removed too.
        let ids = self
            .docker()
            .args(["ps", "--all", "--quiet", "--filter"])
            .arg(format!("label={KIND_CLUSTER_LABEL}={}", self.name))
            .output();
        let ids = match ids {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            Ok(out) => {
                eprintln!(
                    "failed to list nodes of test cluster {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                self.nodes.clone()
            }
            Err(e) => {
                eprintln!("failed to list nodes of test cluster {}: {e}", self.name);
                self.nodes.clone()
            }
        };
        if ids.is_empty() {
            return;
        }
        let out = self
            .docker()
            .args(["rm", "--force", "--volumes"])
            .args(&ids)
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "failed to remove nodes of test cluster {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("failed to remove nodes of test cluster {}: {e}", self.name),
        }
    }
}

/// An image built for a test from a Dockerfile text (legacy builder, no registry needed);
/// removed on drop.
#[derive(Debug)]
pub struct TestImage {
    host: String,
    reference: String,
}

impl TestImage {
    /// Builds `dockerfile` (which may use `FROM kprov/base:latest`) with the extra `files`
    /// (path relative to the context, contents) as `kprov-test/<unique>:<tag>`.
    pub fn build(
        host: &str,
        test_name: &str,
        dockerfile: &str,
        files: &[(&str, &[u8])],
    ) -> TestImage {
        ensure_test_images(host);
        let reference = format!("kprov-test/{}:v1", unique_name(test_name));
        let ctx = tempfile::tempdir().expect("failed to create a build context directory");
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile)
            .expect("failed to write the test Dockerfile");
        for (path, contents) in files {
            let path = ctx.path().join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("failed to create a build context dir");
            }
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("failed to write {}: {e}", path.display()));
        }
        let image = TestImage {
            host: host.to_string(),
            reference,
        };
        // --no-cache: the classic builder's cache would pick intermediate images that another
        // test's cleanup (`image rm --force` of its images and their untagged parents) may
        // delete mid-build ("unable to find image sha256:…", seen once in CI).
        run_ok(
            docker(host)
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "--quiet", "--no-cache"])
                .args(test_labels())
                .args(["--tag", &image.reference])
                .arg(ctx.path()),
        );
        image
    }

    /// The image reference as given to Docker (`kprov-test/<name>:v1`).
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The reference as containerd names it after an import (`docker.io/` prefixed).
    pub fn containerd_reference(&self) -> String {
        format!("docker.io/{}", self.reference)
    }

    /// The image ID (`sha256:…`).
    pub fn id(&self) -> String {
        run_ok(docker(&self.host).args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &self.reference,
        ]))
        .trim()
        .to_string()
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let out = docker(&self.host)
            .args(["image", "rm", "--force", &self.reference])
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "failed to remove test image {}: {}",
                self.reference,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("failed to remove test image {}: {e}", self.reference),
        }
    }
}

/// The sandbox cluster's node image (scripts/prepare-sandbox builds it).
pub const SANDBOX_IMAGE: &str = "kprov/sandbox-node:latest";

/// Builds the sandbox node image once per test binary when it is missing (scripts/test has
/// normally done it).
pub fn ensure_sandbox_image(host: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|h| h == host) {
        return;
    }
    ensure_test_images(host);
    if !image_exists(host, SANDBOX_IMAGE) {
        let script = repo_root().join("scripts/prepare-sandbox");
        eprintln!("building {SANDBOX_IMAGE} with {}", script.display());
        run_ok(
            Command::new(&script)
                .env("DOCKER_HOST", host)
                .stdin(Stdio::null()),
        );
    }
    done.push(host.to_string());
}

/// A task context whose progress lands in a receiver.
pub fn task_ctx(
    id: &str,
) -> (
    kprov::engine::TaskCtx,
    tokio::sync::mpsc::UnboundedReceiver<kprov::engine::Event>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = kprov::engine::TaskCtx::new(
        std::sync::Arc::from(id),
        1,
        tokio_util::sync::CancellationToken::new(),
        tx,
        tokio::time::Instant::now(),
    );
    (ctx, rx)
}

/// The progress messages a task reported so far.
pub fn progress(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<kprov::engine::Event>,
) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let kprov::engine::EventKind::TaskProgress { message, .. } = event.kind {
            lines.push(message);
        }
    }
    lines
}

/// The three kubernaut CRDs the sandbox tests apply, by file name.
pub const KUBERNAUT_CRDS: [&str; 3] = [
    "kubernaut.ai_actiontypes.yaml",
    "kubernaut.ai_notificationrequests.yaml",
    "kubernaut.ai_signalprocessings.yaml",
];

/// A kubernaut CRD file, read in place from ../shared/reference/kubernaut (kubernaut's own data
/// files are never copied into this project).
pub fn kubernaut_crd(file: &str) -> PathBuf {
    let path = repo_root()
        .join("../shared/reference/kubernaut/config/crd/bases")
        .join(file);
    assert!(
        path.is_file(),
        "kubernaut's CRDs are read from {} (a copy of shared/ beside the checkout)",
        path.display()
    );
    path
}

/// kubernaut's own data files (all CRDs, the suites' kind configs, DataStorage's manifests),
/// kept beside the checkout and read in place.
pub fn kubernaut_reference() -> PathBuf {
    let path = repo_root().join("../shared/reference/kubernaut");
    assert!(
        path.join("config/crd/bases").is_dir(),
        "kubernaut's data files are read from {} (a copy of shared/ beside the checkout)",
        path.display()
    );
    path
}

/// A kubernaut source tree for `--source`: kubernaut's data files
/// ([`kubernaut_reference`]) and the stand-ins of tests/fixtures/kubernaut laid over each other,
/// as symlinks in a temporary directory (nothing is copied).
pub fn kubernaut_source() -> tempfile::TempDir {
    symlink_tree(&[
        kubernaut_reference(),
        repo_root().join("tests/fixtures/kubernaut"),
    ])
}

/// The source tree of `profiles/aianalysis-hapi.yaml` (kubernaut 2e38670be): the stand-ins of
/// tests/fixtures/kubernaut-2e38670be alone (nothing of that commit is in the reference tree,
/// which is HEAD's), as symlinks in a temporary directory, so that a run writing into its
/// source never writes into the repository.
pub fn kubernaut_source_2e38670be() -> tempfile::TempDir {
    symlink_tree(&[repo_root().join("tests/fixtures/kubernaut-2e38670be")])
}

/// A temporary directory of symlinks to the files of `layers`, an earlier layer's file winning
/// over a later one's at the same path.
fn symlink_tree(layers: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for layer in layers {
        for entry in walkdir::WalkDir::new(layer).min_depth(1) {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(layer).unwrap();
            let at = dir.path().join(rel);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&at).unwrap();
            } else if !at.exists() {
                std::os::unix::fs::symlink(entry.path(), &at).unwrap();
            }
        }
    }
    dir
}

/// `kprov` aimed at the sandbox (`host`'s engine, the kind CLI double) in a world of its own
/// under `dir` (kubeconfig, locks, state), reading profiles from `profiles` and paths from
/// `source`; CI-style plain output, stdin closed.
pub fn sandbox_kprov(host: &str, dir: &Path, profiles: &Path, source: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kprov"));
    c.current_dir(repo_root())
        .env("DOCKER_HOST", host)
        .env("KPROV_KIND", repo_root().join("tests/bin/kind"))
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("KPROV_LOCK_DIR", dir.join("locks"))
        .env("KPROV_PROFILES", profiles)
        .env("KPROV_STATE", dir.join(".kprov"))
        .env("KPROV_SOURCE", source)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// What stands in for Tekton's v1.7.0 release.yaml (workflowexecution's profile downloads it;
/// no network here): its two namespaces, the bundle resolver's ServiceAccount (the release's
/// `tekton-pipelines-resolvers`, which the profile's second quay-pull-secret is given to) and
/// the two kinds the profile's test pipelines are (any fields kept).
pub const TEKTON_STAND_IN: &str = r#"# Stand-in for Tekton's v1.7.0 release.yaml (tests/common)
apiVersion: v1
kind: Namespace
metadata: {name: tekton-pipelines}
---
apiVersion: v1
kind: Namespace
metadata: {name: tekton-pipelines-resolvers}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: tekton-pipelines-resolvers, namespace: tekton-pipelines-resolvers}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pipelines.tekton.dev}
spec:
  group: tekton.dev
  names: {kind: Pipeline, plural: pipelines, singular: pipeline, listKind: PipelineList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: tasks.tekton.dev}
spec:
  group: tekton.dev
  names: {kind: Task, plural: tasks, singular: task, listKind: TaskList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

/// The URL of Tekton's release in profiles/workflowexecution.yaml.
pub const TEKTON_RELEASE: &str =
    "https://github.com/tektoncd/pipeline/releases/download/v1.7.0/release.yaml";

/// Seeds kprov's manifest cache `cache` (`<state>/cache`) with [`TEKTON_STAND_IN`] as the first
/// download of [`TEKTON_RELEASE`]: stored under its digest and pinned, as a run on this machine
/// leaves an unpinned URL, so kprov reads it from there and fetches nothing.
pub fn seed_tekton_release(cache: &Path) {
    use kprov::tasks::remote::{Sha256Digest, cache as manifests};
    let pin = Sha256Digest::parse(&manifests::sha256_hex(TEKTON_STAND_IN.as_bytes())).unwrap();
    manifests::store(cache, &pin, TEKTON_STAND_IN.as_bytes()).unwrap();
    manifests::write_pin(cache, TEKTON_RELEASE, &pin).unwrap();
}

/// The stand-in for the AWX Operator's kustomize base (`config/default` at 2.19.1): its CRD
/// and its controller-manager, with the image names the profile's kustomization rewrites
/// (files of a kustomize directory, `name: text`).
pub const AWX_OPERATOR_BASE: [(&str, &str); 3] = [
    (
        "kustomization.yaml",
        "resources: [crd.yaml, manager.yaml]\nnamespace: awx\n",
    ),
    (
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: awxs.awx.ansible.com}
spec:
  group: awx.ansible.com
  scope: Namespaced
  names: {kind: AWX, plural: awxs, singular: awx, listKind: AWXList}
  versions:
    - name: v1beta1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    ),
    (
        "manager.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: awx-operator-controller-manager}
spec:
  selector: {matchLabels: {control-plane: controller-manager}}
  template:
    metadata: {labels: {control-plane: controller-manager}}
    spec:
      containers:
        - {name: kube-rbac-proxy, image: "gcr.io/kubebuilder/kube-rbac-proxy:v0.13.0", imagePullPolicy: IfNotPresent}
        - name: awx-manager
          image: "quay.io/ansible/awx-operator:latest"
          imagePullPolicy: IfNotPresent
          readinessProbe: {httpGet: {path: /readyz, port: 6789}}
"#,
    ),
];

/// Copies the tree at `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(to.join(rel)).unwrap();
        } else {
            std::fs::copy(entry.path(), to.join(rel)).unwrap();
        }
    }
}

/// A copy of kprov's profiles and manifests in `dir` (`kprov:` paths resolve beside the
/// profiles directory) whose AWX Operator kustomization has [`AWX_OPERATOR_BASE`] for its
/// GitHub base (no network here); returns the profiles directory.
pub fn kprov_tree(dir: &Path) -> PathBuf {
    let profiles = dir.join("profiles");
    copy_tree(&repo_root().join("profiles"), &profiles);
    copy_tree(&repo_root().join("manifests"), &dir.join("manifests"));
    let base = dir.join("awx-operator-stand-in");
    std::fs::create_dir_all(&base).unwrap();
    for (name, text) in AWX_OPERATOR_BASE {
        std::fs::write(base.join(name), text).unwrap();
    }
    let kustomization =
        dir.join("manifests/kubernaut/workflowexecution/awx-operator/kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    let remote = "github.com/ansible/awx-operator/config/default?ref=2.19.1";
    assert!(
        text.contains(remote),
        "{}: no {remote}",
        kustomization.display()
    );
    // kustomize takes a base as a path relative to the kustomization.
    std::fs::write(
        &kustomization,
        text.replace(remote, "../../../../awx-operator-stand-in"),
    )
    .unwrap();
    profiles
}

/// The six workflows of tests/fixtures/kubernaut that profiles/aianalysis.yaml registers, with
/// the `contentHash` and `workflowId` its `register-workflows` step must set on each: Go's
/// encoding/json over the same documents, SHA-256, UUIDv5 in kubernaut's namespace
/// (tests/fixtures/contenthash/README.md).
pub const STAND_IN_WORKFLOWS: [(&str, &str, &str); 6] = [
    (
        "oomkill-increase-memory",
        "236433b60d72c1ce6a451e5ef560e31e075567774332a4b1a9d225da7339bcf4",
        "61828494-1263-57da-97ca-5099c5581053",
    ),
    (
        "crashloop-config-fix",
        "7b35a69dbc439be6a8321e5c278da92ce9be4169ee31ff51df166a2fe181d5cc",
        "ea250a6a-7910-5063-91a1-165c4cbd247e",
    ),
    (
        "node-drain-reboot",
        "ba838a19d98832fb3cf83fb79d5d84af39f61eb81ee684e8e5445bd038c26f42",
        "5c059eb3-f952-51aa-8048-0de6f51596d3",
    ),
    (
        "memory-optimize",
        "7748036efdfc118083f017cde6296e0d0e4a56876ffcc145449b12a72ed71d25",
        "9ffc55a5-c028-5b06-a7ac-6d1029346fec",
    ),
    (
        "generic-restart",
        "92cd68a3e14d204ab61ce093fc3ad2ffa7040eccd1165ae0fc14099cea8bdce3",
        "9fb4cc1b-a75b-5fdf-804e-8ad70aad62dc",
    ),
    (
        "test-signal-handler",
        "fd814f3737eff9d3f574a1b7630b1361cfb6ce39c809552791e234e60de42b03",
        "451166e8-cb60-5063-b09d-e20ca8c92e16",
    ),
];
