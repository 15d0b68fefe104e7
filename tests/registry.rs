//! Images through a real registry (Debian's `docker-registry`, in kprov/registry built by
//! scripts/prepare-registry), pulled for real by the sandbox nodes' containerd: the Kubernetes
//! side is the API double (tests/kube-double), whose kubelet part pulls through each node's
//! containerd with its CRI registry hosts directory, behind the kind CLI double.
//!
//! - `cluster.registry: local` on a three-node sandbox (kprov's own `kprov-registry`).
//! - `--image-registry R --image-tag T --registry-pull nodes|kprov` against a registry the test
//!   runs, set up for the nodes as kind's local-registry guide does.

mod common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use common::{repo_root, require_docker};

const REGISTRY_IMAGE: &str = "kprov/registry:latest";

/// Builds kprov/registry once per test binary when it is missing (scripts/test has normally
/// done it).
fn ensure_registry_image(host: &str) {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !*done && !common::image_exists(host, REGISTRY_IMAGE) {
        common::run_ok(
            Command::new(repo_root().join("scripts/prepare-registry"))
                .env("DOCKER_HOST", host)
                .stdin(Stdio::null()),
        );
    }
    *done = true;
}

/// A private world: the demo profile (edited per test) with a unique cluster name, its own
/// kubeconfig, state and lock directories. Tears the cluster down on drop.
struct World {
    host: String,
    cluster: String,
    dir: tempfile::TempDir,
}

impl World {
    fn new(host: &str, test: &str, edit: impl FnOnce(String) -> String) -> World {
        common::ensure_test_images(host);
        common::ensure_sandbox_image(host);
        ensure_registry_image(host);
        let dir = tempfile::tempdir().unwrap();
        let cluster = common::unique_name(test);
        let profiles = dir.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        let text = std::fs::read_to_string(repo_root().join("profiles/demo.yaml")).unwrap();
        let text = text.replace(
            "cluster:\n  name: kprov-demo\n",
            &format!("cluster:\n  name: {cluster}\n"),
        );
        assert!(text.contains(&cluster), "the demo profile names kprov-demo");
        std::fs::write(profiles.join("demo.yaml"), edit(text)).unwrap();
        World {
            host: host.to_string(),
            cluster,
            dir,
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn context(&self) -> String {
        format!("kind-{}", self.cluster)
    }

    fn kprov(&self) -> Command {
        let d = self.dir.path();
        let mut c = common::sandbox_kprov(&self.host, d, &d.join("profiles"), &repo_root());
        c.env("KPROV_REGISTRY_IMAGE", REGISTRY_IMAGE);
        c
    }

    fn up(&self, extra: &[&str]) -> (i32, String) {
        let out = self
            .kprov()
            .args(["up", "--service", "demo"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--context", &self.context()])
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn latest_record(&self) -> serde_json::Value {
        let out = self
            .kprov()
            .args(["profile", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn nodes(&self) -> Vec<String> {
        let out = common::docker(&self.host)
            .args(["ps", "--format", "{{.Names}}", "--filter"])
            .arg(format!("label=io.x-k8s.kind.cluster={}", self.cluster))
            .output()
            .unwrap();
        let mut nodes: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        nodes.sort();
        nodes
    }

    fn node_exec(&self, node: &str, args: &[&str]) -> std::process::Output {
        common::docker(&self.host)
            .args(["exec", node])
            .args(args)
            .output()
            .unwrap()
    }

    /// A sandbox made with the kind double, as a user would make one for `--kubeconfig`.
    fn create_cluster(&self, config: &serde_json::Value) {
        let mut kind = Command::new(repo_root().join("tests/bin/kind"));
        kind.args([
            "create",
            "cluster",
            "--name",
            &self.cluster,
            "--config",
            "-",
        ])
        .arg("--kubeconfig")
        .arg(self.kubeconfig())
        .env("DOCKER_HOST", &self.host)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = kind.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kind create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Task id → (kind, outcome) of the latest run.
    fn tasks(&self) -> Vec<(String, String, String)> {
        self.latest_record()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("kind"), s("outcome"))
            })
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self
            .kprov()
            .args(["down", "--cluster", &self.cluster])
            .stderr(Stdio::null())
            .status();
    }
}

/// The demo with `cluster.registry: local` and a control plane plus two workers.
fn three_nodes_through_the_registry(text: String) -> String {
    text.replace(
        "  nodes:\n    - role: control-plane\n",
        "  registry: local\n  nodes:\n    - role: control-plane\n    - role: worker\n    - role: worker\n",
    )
}

#[test]
fn registry_mode_on_a_three_node_sandbox_pushes_once_and_every_node_pulls_against_the_double() {
    let host = require_docker!();
    let w = World::new(&host, "registry-3", three_nodes_through_the_registry);
    let (code, stderr) = w.up(&[]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");

    // One push per image, whatever the number of nodes; nothing streamed.
    let tasks = w.tasks();
    let mut pushes: Vec<&String> = tasks
        .iter()
        .filter(|(_, k, _)| k == "push")
        .map(|(id, _, _)| id)
        .collect();
    pushes.sort();
    assert_eq!(
        pushes,
        ["push:api", "push:migrate", "push:store", "push:worker"],
        "{tasks:?}"
    );
    assert!(tasks.iter().all(|(_, k, _)| k != "load"), "{tasks:?}");
    assert!(
        tasks.iter().any(|(id, _, _)| id == "registry:local"),
        "{tasks:?}"
    );

    // The manifests name the pushed images; the nodes pulled them (the double's kubelet part
    // pulls through each node's own containerd), and the pods came up on both workers.
    let image = w.kubectl(&[
        "get",
        "deployment",
        "api",
        "-n",
        "kprov-demo",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert!(
        image.starts_with("localhost:5001/api:id-") && image.ends_with(" IfNotPresent"),
        "{image}"
    );
    let placed = w.kubectl(&[
        "get",
        "pods",
        "-n",
        "kprov-demo",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
    ]);
    let nodes = w.nodes();
    for worker in &nodes[1..] {
        assert!(placed.contains(worker.as_str()), "{placed}");
        let listed = w.node_exec(worker, &["ctr", "-n", "k8s.io", "images", "ls", "-q"]);
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.contains("localhost:5001/"), "{worker}: {listed}");
    }
    let events = w.kubectl(&["get", "events", "-n", "kprov-demo"]);
    assert!(
        events.contains("Successfully pulled image \"localhost:5001/"),
        "{events}"
    );

    // The control plane's containerd pulls the same way (no pod needed it there).
    let cp = &nodes[0];
    let pull = w.node_exec(
        cp,
        &[
            "ctr",
            "-n",
            "k8s.io",
            "images",
            "pull",
            "--hosts-dir",
            "/etc/containerd/certs.d",
            image.split(' ').next().unwrap(),
        ],
    );
    assert!(
        pull.status.success(),
        "{cp}: {}",
        String::from_utf8_lossy(&pull.stderr)
    );

    // KEP-1755's ConfigMap, as kind's guide applies it.
    let hosting = w.kubectl(&[
        "get",
        "configmap",
        "local-registry-hosting",
        "-n",
        "kube-public",
        "-o",
        "jsonpath={.data.localRegistryHosting\\.v1}",
    ]);
    assert!(hosting.contains("host: \"localhost:5001\""), "{hosting}");

    // Nothing changed: nothing is pushed again.
    let (code, stderr) = w.up(&["--reuse"]);
    assert_eq!(code, 0, "warm kprov up failed:\n{stderr}");
    for (id, kind, outcome) in w.tasks() {
        if kind == "push" || kind == "registry" {
            assert_eq!(outcome, "cached", "{id}");
        }
    }
}

/// A registry container of this test's own on the `kind` network (Debian's docker-registry),
/// published on a free loopback port. Removed on drop.
struct TestRegistry {
    host: String,
    name: String,
    port: u16,
}

impl TestRegistry {
    fn start(host: &str, test: &str) -> TestRegistry {
        let name = common::unique_name(test);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut run = common::docker(host);
        run.args(["run", "-d", "--name", &name]);
        for l in common::test_labels() {
            run.args(["--label", &l]);
        }
        run.args(["-p", &format!("127.0.0.1:{port}:5000"), REGISTRY_IMAGE]);
        common::run_ok(&mut run);
        let r = TestRegistry {
            host: host.to_string(),
            name,
            port,
        };
        // The published port accepts before the registry listens: wait for its API to answer.
        for _ in 0..100 {
            if r.answers() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        r
    }

    /// `GET /v2/` answers 200 (the registry API's version check).
    fn answers(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut head = [0u8; 12];
        tcp.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_ok()
            && tcp.read_exact(&mut head).is_ok()
            && head.ends_with(b" 200")
    }

    fn address(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// Pushes `image` as `<address>/<name>:<tag>` (through the docker CLI, as a CI job would).
    fn push(&self, image: &str, name: &str, tag: &str) {
        let target = format!("{}/{name}:{tag}", self.address());
        common::run_ok(common::docker(&self.host).args(["tag", image, &target]));
        common::run_ok(common::docker(&self.host).args(["push", &target]));
    }

    /// What kind's local-registry guide does for the nodes of `w`'s cluster: the registry on
    /// the `kind` network, and a hosts.toml per node for its address.
    fn wire(&self, w: &World) {
        common::run_ok(common::docker(&self.host).args(["network", "connect", "kind", &self.name]));
        let dir = format!("/etc/containerd/certs.d/{}", self.address());
        let toml = format!(
            "server = \"http://{0}:5000\"\n\n[host.\"http://{0}:5000\"]\n",
            self.name
        );
        for node in w.nodes() {
            let script = format!("mkdir -p '{dir}' && printf '%s' '{toml}' > '{dir}/hosts.toml'");
            let out = w.node_exec(&node, &["sh", "-c", &script]);
            assert!(out.status.success(), "{node}");
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = common::docker(&self.host)
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

/// The kind config a user would give for a registry of their own: kind's containerd patch.
fn kind_config_with_registry_patch(workers: usize) -> serde_json::Value {
    let mut nodes = vec![serde_json::json!({"role": "control-plane"})];
    nodes.extend((0..workers).map(|_| serde_json::json!({"role": "worker"})));
    serde_json::json!({
        "kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": nodes,
        "containerdConfigPatches": ["[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"],
    })
}

const DEMO_BUILT: [&str; 3] = ["api", "migrate", "worker"];

/// The demo for a cluster kprov does not own, which has no host ports kprov knows of: the
/// checks through its NodePort go, and the api is waited for `api_timeout`.
fn without_host_ports(t: String, api_timeout: &str) -> String {
    let t = t.replace(
        "    ready:\n      http: \"http://127.0.0.1:{{ hostPorts.api }}/{{ values.readyPath }}\"\n      timeout: 2m\n",
        &format!("    ready:\n      timeout: {api_timeout}\n"),
    );
    let call = t.find("  call-api:\n").expect("the demo calls its api");
    let next = call
        + t[call..]
            .find("  restart-worker:\n")
            .expect("a step after call-api");
    let t = format!("{}{}", &t[..call], &t[next..]);
    assert!(!t.contains("hostPorts"), "{t}");
    t
}

/// A user's cluster set up for `reg` as kind's guide does, with the demo's third-party image
/// (kprov/base) already on its nodes.
fn users_cluster(w: &World, reg: &TestRegistry, host: &str) {
    w.create_cluster(&kind_config_with_registry_patch(1));
    reg.wire(w);
    for node in w.nodes() {
        let script = format!(
            "docker save {} | docker exec -i {node} ctr -n k8s.io images import --snapshotter native -",
            common::BASE_IMAGE
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("DOCKER_HOST", host)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn image_registry_with_nodes_pulling_builds_nothing_and_the_nodes_pull_against_the_double() {
    let host = require_docker!();
    let w = World::new(&host, "imgreg-nodes", |t| without_host_ports(t, "2m"));
    let reg = TestRegistry::start(&host, "imgreg-nodes-reg");
    for name in DEMO_BUILT {
        reg.push(common::BASE_IMAGE, name, "pr-17");
    }
    users_cluster(&w, &reg, &host);
    let (code, stderr) = w.up(&[
        "--kubeconfig",
        w.kubeconfig().to_str().unwrap(),
        "--context",
        &w.context(),
        "--image-registry",
        &reg.address(),
        "--image-tag",
        "pr-17",
        "--registry-pull",
        "nodes",
    ]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    let tasks = w.tasks();
    assert!(
        tasks
            .iter()
            .all(|(_, k, _)| !matches!(k.as_str(), "build" | "load" | "push" | "pull")),
        "{tasks:?}"
    );
    let image = w.kubectl(&[
        "get", "deployment", "api", "-n", "kprov-demo", "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(image, format!("{}/api:pr-17 IfNotPresent", reg.address()));
    let worker = &w.nodes()[1];
    let listed = w.node_exec(worker, &["ctr", "-n", "k8s.io", "images", "ls", "-q"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in DEMO_BUILT {
        assert!(
            listed.contains(&format!("{}/{name}:pr-17", reg.address())),
            "{worker} did not pull {name}: {listed}"
        );
    }
}

#[test]
fn image_registry_pulled_by_kprov_is_pulled_once_and_streamed_into_the_nodes() {
    let host = require_docker!();
    let w = World::new(&host, "imgreg-kprov", |t| t);
    let reg = TestRegistry::start(&host, "imgreg-kprov-reg");
    for name in DEMO_BUILT {
        reg.push(common::BASE_IMAGE, name, "pr-13");
    }
    let (code, stderr) = w.up(&[
        "--image-registry",
        &reg.address(),
        "--image-tag",
        "pr-13",
        "--registry-pull",
        "kprov",
    ]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    let tasks = w.tasks();
    let cp = &w.nodes()[0];
    let listed = w.node_exec(cp, &["ctr", "-n", "k8s.io", "images", "ls", "-q"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in DEMO_BUILT {
        let outcome = |id: String| {
            let found = tasks.iter().find(|(t, _, _)| *t == id);
            found.map(|(_, _, o)| o.clone()).unwrap_or_default()
        };
        assert_eq!(outcome(format!("pull:{name}")), "succeeded", "{tasks:?}");
        // The stand-ins are one image: a load may find it in the node under another name.
        let load = outcome(format!("load:{name}"));
        assert!(load == "succeeded" || load == "cached", "{tasks:?}");
        let reference = format!("{}/{name}:pr-13", reg.address());
        assert!(
            listed.contains(&reference),
            "{cp} lacks {reference}: {listed}"
        );
    }
    assert!(tasks.iter().all(|(_, k, _)| k != "build"), "{tasks:?}");
    let image = w.kubectl(&[
        "get", "deployment", "api", "-n", "kprov-demo", "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(image, format!("{}/api:pr-13 Never", reg.address()));
}

#[test]
fn a_registry_pull_error_names_the_image_and_the_registrys_answer() {
    let host = require_docker!();
    let w = World::new(&host, "imgreg-missing", |t| t);
    let reg = TestRegistry::start(&host, "imgreg-missing-reg");
    for name in ["migrate", "worker"] {
        reg.push(common::BASE_IMAGE, name, "pr-9");
    }
    // api:pr-9 was never pushed.
    let (code, stderr) = w.up(&[
        "--image-registry",
        &reg.address(),
        "--image-tag",
        "pr-9",
        "--registry-pull",
        "kprov",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let reference = format!("{}/api:pr-9", reg.address());
    assert!(
        stderr.contains(&format!(
            "pull {reference} for api (--image-registry): the registry said:"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("manifest unknown"), "{stderr}");
}

#[test]
fn a_tag_the_nodes_cannot_pull_is_reported_with_the_registrys_answer_against_the_double() {
    let host = require_docker!();
    // What follows the api gives up on it soon.
    let w = World::new(&host, "imgreg-nopull", |t| {
        let mut t = without_host_ports(t, "8s");
        for step in ["seed-widgets", "register-webhook"] {
            let at = format!("  {step}:\n    after: [api]\n");
            assert!(t.contains(&at), "{step}");
            t = t.replace(&at, &format!("{at}    timeout: 8s\n"));
        }
        t
    });
    let reg = TestRegistry::start(&host, "imgreg-nopull-reg");
    for name in ["migrate", "worker"] {
        reg.push(common::BASE_IMAGE, name, "pr-404");
    }
    users_cluster(&w, &reg, &host);
    let (code, stderr) = w.up(&[
        "--kubeconfig",
        w.kubeconfig().to_str().unwrap(),
        "--context",
        &w.context(),
        "--image-registry",
        &reg.address(),
        "--image-tag",
        "pr-404",
        "--registry-pull",
        "nodes",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let reference = format!("{}/api:pr-404", reg.address());
    // The wait names the pod's pull failure with containerd's (the registry's) answer.
    assert!(
        stderr.contains("ErrImagePull") || stderr.contains("ImagePullBackOff"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{reference}: not found")),
        "{stderr}"
    );
}
