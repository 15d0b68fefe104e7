//! The Kind cluster phase against sandbox clusters, created through `tests/bin/kind` — a
//! double of the kind CLI that maps `kind create/delete cluster` onto `scripts/sandbox`, whose
//! nodes are labelled and named as kind's and whose API is served by kube-double (a Kubernetes
//! API double). kprov runs it exactly as it runs kind: argv, config on stdin.
//!
//! Each test has its own cluster name and private kubeconfig in a temp dir; a guard deletes the
//! cluster even when the test panics. Needs the Docker engine and `kprov/sandbox-node`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kprov::adapters::docker::Engine;
use kprov::adapters::kind::KindCli;
use kprov::adapters::kube::Kube;
use kprov::engine::Done;
use kprov::profile::model::{ClusterSpec, NodeSpec, PortMapping};
use kprov::tasks::cluster::{self, ClusterRequest};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A cluster name, a temp dir (kubeconfig, kind wrapper, coverage dir) and the teardown.
struct Scratch {
    name: String,
    host: String,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(host: &str, test: &str) -> Scratch {
        common::ensure_sandbox_image(host);
        Scratch {
            name: common::unique_name(test),
            host: host.to_string(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kube").join("config")
    }

    /// The kind double behind a wrapper fixing its environment: this engine, and the first
    /// `fail_creates` creates failing as the seeds saw kind fail.
    fn kind(&self, fail_creates: Option<u32>) -> KindCli {
        let env: Vec<(&str, String)> = fail_creates
            .map(|n| vec![("KIND_DOUBLE_FAIL_CREATES", n.to_string())])
            .unwrap_or_default();
        self.kind_with(&env)
    }

    /// The kind double behind a wrapper exporting this engine, its state dir and `env`.
    fn kind_with(&self, env: &[(&str, String)]) -> KindCli {
        let wrapper = self.dir.path().join("kind");
        let mut script = format!(
            "#!/bin/sh\nexport DOCKER_HOST='{}' KIND_DOUBLE_STATE_DIR='{}'\n",
            self.host,
            self.dir.path().join("kind-state").display()
        );
        for (k, v) in env {
            script.push_str(&format!("export {k}='{v}'\n"));
        }
        script.push_str(&format!(
            "exec '{}' \"$@\"\n",
            common::repo_root().join("tests/bin/kind").display()
        ));
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        KindCli::at(wrapper)
    }

    fn creates_seen(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("kind-state/creates"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    }

    fn request(&self, spec: ClusterSpec) -> ClusterRequest {
        ClusterRequest {
            name: self.name.clone(),
            spec,
            source: self.dir.path().to_path_buf(),
            coverage_dir: None,
            reuse: false,
            kubeconfig: self.kubeconfig(),
            service: Some("svc".into()),
        }
    }

    fn node_containers(&self) -> Vec<String> {
        let out = common::run_ok(common::docker(&self.host).args([
            "ps",
            "--all",
            "--filter",
            &format!("label=io.x-k8s.kind.cluster={}", self.name),
            "--format",
            "{{.Names}}",
        ]));
        let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
        names.sort();
        names
    }
}

impl Scratch {
    /// `kprov` itself, with a profile `t` for this cluster, this kubeconfig, state and locks in
    /// the temp dir, and `kind` as KPROV_KIND.
    fn kprov(&self, kind: &KindCli) -> Command {
        let profiles = self.dir.path().join("profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        std::fs::write(
            profiles.join("t.yaml"),
            format!("service: t\ncluster:\n  name: {}\n", self.name),
        )
        .unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_kprov"));
        c.current_dir(self.dir.path())
            .env("DOCKER_HOST", &self.host)
            .env("KPROV_KIND", kind.program())
            .env("KUBECONFIG", self.kubeconfig())
            .env("KPROV_LOCK_DIR", self.dir.path().join("locks"))
            .env("KPROV_PROFILES", &profiles)
            .env("KPROV_STATE", self.dir.path().join(".kprov"))
            .env("KPROV_SOURCE", self.dir.path())
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// `kprov up --service t ARGS` with `kind`: exit code and stderr.
    fn up(&self, kind: &KindCli, args: &[&str]) -> (i32, String) {
        let out = self
            .kprov(kind)
            .args(["up", "--service", "t"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new(common::repo_root().join("scripts/sandbox"))
            .args(["down", "--name", &self.name, "--kubeconfig"])
            .arg(self.kubeconfig())
            .env("DOCKER_HOST", &self.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn read_yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The server of context `kind-<name>`'s cluster in a kubeconfig file.
fn server_of(path: &Path, name: &str) -> String {
    let kc = read_yaml(path);
    let key = format!("kind-{name}");
    kc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == key.as_str())
        .unwrap_or_else(|| panic!("no cluster {key} in {kc}"))["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string()
}

fn context_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = read_yaml(path)["contexts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The host port Docker published a container's 6443 on (its first binding).
fn published_api_port(host: &str, container: &str) -> String {
    common::run_ok(common::docker(host).args([
        "inspect",
        "--format",
        "{{(index (index .NetworkSettings.Ports \"6443/tcp\") 0).HostPort}}",
        container,
    ]))
    .trim()
    .to_string()
}

const OTHER_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://other:6443'}\nusers:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_created_cluster_gets_a_private_kind_context_and_is_reused_only_when_asked() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "create-reuse");
    let engine = Engine::connect_to(&host).await.unwrap();
    // Someone else's context in the same file must survive the merge.
    std::fs::create_dir_all(s.kubeconfig().parent().unwrap()).unwrap();
    std::fs::write(
        s.kubeconfig(),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://other:6443'}\nusers:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n",
    )
    .unwrap();
    let spec = ClusterSpec {
        extra_port_mappings: vec![PortMapping {
            container_port: 30088,
            host_port: 0,
            ..Default::default()
        }],
        ..Default::default()
    };
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (info, done) =
        cluster::ensure_cluster_with(&engine, &s.request(spec.clone()), &ctx, Some(s.kind(None)))
            .await
            .unwrap();
    assert_eq!(done, Done::Ran);
    assert!(info.created);
    assert_eq!(info.context, format!("kind-{}", s.name));
    assert_eq!(info.nodes, [format!("{}-control-plane", s.name)]);
    let host_port = info.host_ports[&30088];
    assert_ne!(host_port, 0);

    let mode = std::fs::metadata(s.kubeconfig())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let kc = read_yaml(&s.kubeconfig());
    let mut contexts: Vec<&str> = kc["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    contexts.sort();
    assert_eq!(contexts, [info.context.as_str(), "other"]);
    assert_eq!(kc["current-context"], info.context.as_str());
    let ours = kc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == info.context.as_str())
        .unwrap();
    let server = ours["cluster"]["server"].as_str().unwrap();
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    assert!(!s.kubeconfig().with_extension("lock").exists());
    // The kubeconfig reaches the API, TLS verified against the CA from admin.conf.
    let kube = Kube::connect(Some(&info.kubeconfig), Some(&info.context))
        .await
        .unwrap();
    assert!(kube.version().await.unwrap().starts_with("v1."));

    // Again without --reuse: refused, naming both ways out.
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let e =
        cluster::ensure_cluster_with(&engine, &s.request(spec.clone()), &ctx, Some(s.kind(None)))
            .await
            .unwrap_err();
    assert!(!e.transient);
    assert!(
        e.message
            .contains(&format!("create cluster {}: it already exists", s.name)),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("pass --reuse") && e.message.contains("`kprov down --service svc`"),
        "{}",
        e.message
    );

    // With --reuse: cached, same facts, kind not run (a create would have failed).
    let mut req = s.request(spec);
    req.reuse = true;
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (again, done) = cluster::ensure_cluster_with(&engine, &req, &ctx, None)
        .await
        .unwrap();
    assert_eq!(done, Done::Cached);
    assert!(!again.created);
    assert_eq!(again.host_ports[&30088], host_port);
    assert_eq!(again.nodes, info.nodes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_kind_create_failure_is_retried() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "create-retry");
    let engine = Engine::connect_to(&host).await.unwrap();
    let (ctx, mut rx) = common::task_ctx("cluster:create");
    let (info, done) = cluster::ensure_cluster_with(
        &engine,
        &s.request(ClusterSpec::default()),
        &ctx,
        Some(s.kind(Some(1))),
    )
    .await
    .unwrap();
    assert_eq!(done, Done::Ran);
    assert_eq!(s.creates_seen(), 2, "one failure, one success");
    let messages = common::progress(&mut rx);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("crun: unknown version specified")),
        "kind's output is progress: {messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("transient error (attempt 1 of 3); retrying in 5s")),
        "{messages:#?}"
    );
    assert_eq!(s.node_containers(), info.nodes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kind_failure_that_is_not_transient_is_not_retried() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "create-fails");
    let engine = Engine::connect_to(&host).await.unwrap();
    // Two control planes: the kind double refuses them (as an unsupported config).
    let spec = ClusterSpec {
        nodes: vec![
            NodeSpec {
                role: "control-plane".into(),
                ..Default::default()
            },
            NodeSpec {
                role: "control-plane".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let e = cluster::ensure_cluster_with(&engine, &s.request(spec), &ctx, Some(s.kind(Some(0))))
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains(&format!("create kind cluster {}: kind exited with", s.name)),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("exactly one control-plane node"),
        "{}",
        e.message
    );
    assert_eq!(s.creates_seen(), 1);
    assert!(s.node_containers().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_cluster_must_have_the_coverage_mount_this_run_needs() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "reuse-coverage");
    let engine = Engine::connect_to(&host).await.unwrap();
    let (ctx, _rx) = common::task_ctx("cluster:create");
    cluster::ensure_cluster_with(
        &engine,
        &s.request(ClusterSpec::default()),
        &ctx,
        Some(s.kind(None)),
    )
    .await
    .unwrap();
    let mut req = s.request(ClusterSpec::default());
    req.reuse = true;
    req.coverage_dir = Some(PathBuf::from("coverdata"));
    let e = cluster::ensure_cluster_with(&engine, &req, &ctx, None)
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("it was created without mount /coverdata"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn coverage_creates_a_world_writable_directory_mounted_in_the_node() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "coverage-mount");
    let engine = Engine::connect_to(&host).await.unwrap();
    let mut req = s.request(ClusterSpec::default());
    req.coverage_dir = Some(PathBuf::from("out/coverdata"));
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (info, _) = cluster::ensure_cluster_with(&engine, &req, &ctx, Some(s.kind(None)))
        .await
        .unwrap();
    let dir = s.dir.path().join("out/coverdata");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o777
    );
    let mounts = common::run_ok(common::docker(&host).args([
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}",
        &info.nodes[0],
    ]));
    assert!(
        mounts.contains(&format!("{}:/coverdata", dir.display())),
        "{mounts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_nodes_and_the_context_with_or_without_the_kind_cli() {
    let host = common::require_docker!();
    let engine = Engine::connect_to(&host).await.unwrap();
    for with_kind in [true, false] {
        let s = Scratch::new(
            &host,
            if with_kind {
                "delete-kind"
            } else {
                "delete-labels"
            },
        );
        let (ctx, _rx) = common::task_ctx("cluster:create");
        cluster::ensure_cluster_with(
            &engine,
            &s.request(ClusterSpec::default()),
            &ctx,
            Some(s.kind(None)),
        )
        .await
        .unwrap();
        assert_eq!(s.node_containers().len(), 1);
        let kind = with_kind.then(|| s.kind(None));
        let existed = cluster::delete_cluster_with(
            &engine,
            &s.name,
            Some(&s.kubeconfig()),
            kind.as_ref(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(existed);
        assert!(s.node_containers().is_empty(), "with kind: {with_kind}");
        let kc = read_yaml(&s.kubeconfig());
        let names = kc["contexts"].as_array().map(|a| a.len()).unwrap_or(0);
        assert_eq!(names, 0, "with kind: {with_kind}: {kc}");
        // Deleting again is not an error: there is nothing left.
        let existed = cluster::delete_cluster_with(
            &engine,
            &s.name,
            Some(&s.kubeconfig()),
            kind.as_ref(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(!existed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_cluster_is_used_through_its_kubeconfig_and_context() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "existing");
    common::run_ok(
        Command::new(common::repo_root().join("scripts/sandbox"))
            .args(["up", "--name", &s.name, "--kubeconfig"])
            .arg(s.kubeconfig())
            .env("DOCKER_HOST", &host)
            .stdin(Stdio::null()),
    );
    let context = format!("kind-{}", s.name);
    let info = cluster::existing_cluster(Some(s.kubeconfig()), Some(context.clone()))
        .await
        .unwrap();
    assert_eq!(info.context, context);
    assert!(!info.created);
    assert_eq!(info.nodes, [format!("{}-control-plane", s.name)]);
    // Without --context: the file's current context.
    let info = cluster::existing_cluster(Some(s.kubeconfig()), None)
        .await
        .unwrap();
    assert_eq!(info.context, context);
    let e = cluster::existing_cluster(Some(s.kubeconfig()), Some("nope".into()))
        .await
        .unwrap_err();
    assert!(e.0.contains("no context \"nope\""), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubeconfig_keeps_the_server_kind_wrote() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "kind-server");
    let engine = Engine::connect_to(&host).await.unwrap();
    // kind writes https://<apiServerAddress or [::1]>:PORT; this double writes localhost (the
    // sandbox publishes on 127.0.0.1 only), which kprov used to rewrite to 127.0.0.1.
    let kind = s.kind_with(&[("KIND_DOUBLE_SERVER_HOST", "localhost".into())]);
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (info, _) = cluster::ensure_cluster_with(
        &engine,
        &s.request(ClusterSpec::default()),
        &ctx,
        Some(kind.clone()),
    )
    .await
    .unwrap();
    let port = published_api_port(&host, &info.nodes[0]);
    assert_eq!(
        server_of(&s.kubeconfig(), &s.name),
        format!("https://localhost:{port}")
    );
    let kube = Kube::connect(Some(&info.kubeconfig), Some(&info.context))
        .await
        .unwrap();
    assert!(kube.version().await.unwrap().starts_with("v1."));

    // Reused through kind: kind's kubeconfig again, into a file that did not have it.
    let other = s.dir.path().join("other-kubeconfig");
    let mut req = s.request(ClusterSpec::default());
    req.reuse = true;
    req.kubeconfig = other.clone();
    let (ctx, _rx) = common::task_ctx("cluster:create");
    cluster::ensure_cluster_with(&engine, &req, &ctx, Some(kind))
        .await
        .unwrap();
    assert_eq!(
        server_of(&other, &s.name),
        format!("https://localhost:{port}")
    );
}

/// A container labelled as kind labels a node (busybox, not a node: nothing but the labels,
/// the published port and an admin.conf), for clusters the sandbox cannot make.
fn fake_node(s: &Scratch, node: &str, role: &str, publish: Option<&str>) {
    let admin = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://{}-control-plane:6443\n  name: {}\ncontexts:\n- context:\n    cluster: {}\n    user: kubernetes-admin\n  name: kubernetes-admin@{}\ncurrent-context: kubernetes-admin@{}\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n",
        s.name, s.name, s.name, s.name, s.name
    );
    let mut cmd = common::docker(&s.host);
    cmd.args(["run", "--detach", "--name", node])
        .args(common::test_labels())
        .args(["--label", &format!("io.x-k8s.kind.cluster={}", s.name)])
        .args(["--label", &format!("io.x-k8s.kind.role={role}")])
        .args(["--env", &format!("ADMIN={admin}")]);
    if let Some(p) = publish {
        cmd.args(["--publish", p]);
    }
    cmd.args([
        common::BASE_IMAGE,
        "sh",
        "-c",
        "mkdir -p /etc/kubernetes && printf '%s' \"$ADMIN\" > /etc/kubernetes/admin.conf && exec sleep 3600",
    ]);
    common::run_ok(&mut cmd);
    // Ready once admin.conf is there.
    for _ in 0..100 {
        let out = common::docker(&s.host)
            .args(["exec", node, "test", "-s", "/etc/kubernetes/admin.conf"])
            .status()
            .unwrap();
        if out.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{node} wrote no admin.conf");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_kind_cli_the_server_is_where_kind_would_publish_it() {
    let host = common::require_docker!();
    common::ensure_test_images(&host);
    let engine = Engine::connect_to(&host).await.unwrap();

    // HA: the load balancer serves the API, the control planes publish nothing.
    let ha = Scratch::new(&host, "reuse-ha");
    let lb = format!("{}-external-load-balancer", ha.name);
    fake_node(&ha, &lb, "external-load-balancer", Some("127.0.0.2::6443"));
    for i in 0..2 {
        let node = kprov::adapters::kind::node_name(&ha.name, "control-plane", i);
        fake_node(&ha, &node, "control-plane", None);
    }
    let mut req = ha.request(ClusterSpec::default());
    req.reuse = true;
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (info, _) = cluster::ensure_cluster_with(&engine, &req, &ctx, None)
        .await
        .unwrap();
    assert_eq!(
        server_of(&ha.kubeconfig(), &ha.name),
        format!("https://127.0.0.2:{}", published_api_port(&host, &lb))
    );
    assert_eq!(info.nodes.len(), 3);
    let kc = read_yaml(&ha.kubeconfig());
    assert_eq!(kc["users"][0]["user"]["client-key-data"], "S0VZ");

    // IPv6: kind binds ::1, and the server is https://[::1]:PORT.
    let v6 = Scratch::new(&host, "reuse-ipv6");
    let cp = format!("{}-control-plane", v6.name);
    fake_node(&v6, &cp, "control-plane", Some("[::1]::6443"));
    let mut req = v6.request(ClusterSpec::default());
    req.reuse = true;
    let (ctx, _rx) = common::task_ctx("cluster:create");
    cluster::ensure_cluster_with(&engine, &req, &ctx, None)
        .await
        .unwrap();
    assert_eq!(
        server_of(&v6.kubeconfig(), &v6.name),
        format!("https://[::1]:{}", published_api_port(&host, &cp))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_kubeconfig_is_written_through_and_stays_a_link() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "kubeconfig-link");
    let engine = Engine::connect_to(&host).await.unwrap();
    let target = s.dir.path().join("dotfiles/kubeconfig");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, OTHER_KUBECONFIG).unwrap();
    std::fs::create_dir_all(s.kubeconfig().parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("../dotfiles/kubeconfig", s.kubeconfig()).unwrap();
    let is_link = |p: &Path| {
        std::fs::symlink_metadata(p)
            .unwrap()
            .file_type()
            .is_symlink()
    };
    let kind = s.kind(None);
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (info, _) = cluster::ensure_cluster_with(
        &engine,
        &s.request(ClusterSpec::default()),
        &ctx,
        Some(kind.clone()),
    )
    .await
    .unwrap();
    assert!(is_link(&s.kubeconfig()), "the link was replaced");
    assert_eq!(
        context_names(&target),
        [info.context.clone(), "other".into()]
    );
    let kube = Kube::connect(Some(&s.kubeconfig()), Some(&info.context))
        .await
        .unwrap();
    assert!(kube.version().await.unwrap().starts_with("v1."));

    cluster::delete_cluster_with(
        &engine,
        &s.name,
        Some(&s.kubeconfig()),
        Some(&kind),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(is_link(&s.kubeconfig()), "the link was replaced on delete");
    assert_eq!(context_names(&target), ["other"]);
    let left: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["kubeconfig"], "no locks or temp files left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_made_before_a_later_cluster_step_failed_is_deleted_or_reported() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "after-create-fails");
    // kind creates the cluster (and writes its context), then `kind get kubeconfig` fails.
    let failing = s.kind_with(&[("KIND_DOUBLE_FAIL_GET_KUBECONFIG", "1".into())]);
    let (code, err) = s.up(&failing, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "get the kubeconfig of kind cluster {}: kind exited with",
            s.name
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "deleted cluster {} (created by this run; pass --keep-on-failure to keep it)",
            s.name
        )),
        "{err}"
    );
    assert!(s.node_containers().is_empty(), "{err}");
    assert!(
        !context_names(&s.kubeconfig()).contains(&format!("kind-{}", s.name)),
        "kind's context was left: {err}"
    );
    // Nothing is left in the way of the next run.
    let (code, err) = s.up(&s.kind(None), &[]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = {
        let out = s
            .kprov(&s.kind(None))
            .args(["down", "--cluster", &s.name])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");

    // --keep-on-failure keeps it and says so; the next run refuses it, saying why and how out.
    let failing = s.kind_with(&[("KIND_DOUBLE_FAIL_GET_KUBECONFIG", "1".into())]);
    let (code, err) = s.up(&failing, &["--keep-on-failure"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "kept cluster {} (created by this run; --keep-on-failure). Delete it with: kprov down --cluster {}",
            s.name, s.name
        )),
        "{err}"
    );
    assert_eq!(s.node_containers(), [format!("{}-control-plane", s.name)]);
    let (code, err) = s.up(&s.kind(None), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("it already exists") && err.contains("kprov down --service t"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn coverage_is_collected_from_every_node() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "coverage-nodes");
    let engine = Engine::connect_to(&host).await.unwrap();
    let spec = ClusterSpec {
        nodes: vec![
            NodeSpec {
                role: "control-plane".into(),
                ..Default::default()
            },
            NodeSpec {
                role: "worker".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (ctx, _rx) = common::task_ctx("cluster:create");
    let (info, _) =
        cluster::ensure_cluster_with(&engine, &s.request(spec), &ctx, Some(s.kind(None)))
            .await
            .unwrap();
    assert_eq!(info.nodes.len(), 2);
    // Each node's own /coverdata (not one shared mount): what a pod on that node wrote, and
    // the meta-data file both binaries wrote under the same name.
    for node in &info.nodes {
        common::run_ok(common::docker(&host).args([
            "exec",
            node,
            "sh",
            "-c",
            &format!(
                "mkdir -p /coverdata && echo meta > /coverdata/covmeta.abc && echo {node} > /coverdata/covcounters.abc.{node}"
            ),
        ]));
    }
    let out = s.dir.path().join("collected");
    let run = s
        .kprov(&s.kind(None))
        .args(["coverage", "--service", "t", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}{stderr}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("cov"))
        .collect();
    files.sort();
    let mut want = vec!["covmeta.abc".to_string()];
    want.extend(info.nodes.iter().map(|n| format!("covcounters.abc.{n}")));
    want.sort();
    assert_eq!(files, want, "{stdout}{stderr}");
    for node in &info.nodes {
        assert_eq!(
            std::fs::read_to_string(out.join(format!("covcounters.abc.{node}"))).unwrap(),
            format!("{node}\n")
        );
    }
    assert!(
        stdout.contains(&format!(
            "3 coverage file(s) from 2 node(s) in {}",
            out.display()
        )),
        "{stdout}{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kprov_kind_that_names_a_missing_file_says_so() {
    let host = common::require_docker!();
    let s = Scratch::new(&host, "kprov-kind-missing");
    let missing = s.dir.path().join("no-such-dir/kind");
    let (code, err) = s.up(&KindCli::at(&missing), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "KPROV_KIND is {}, which does not exist",
            missing.display()
        )),
        "{err}"
    );
    assert!(!err.contains("is not installed"), "{err}");
    assert!(s.node_containers().is_empty());
}
