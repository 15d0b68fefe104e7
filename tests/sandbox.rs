//! Sandbox clusters against real clients. A sandbox is a Kind-shaped cluster whose API is
//! served by kube-double, a Kubernetes API **double** (tests/kube-double): these tests run the
//! real kubectl, and kube-rs as kprov uses it, against that double to keep it honest, and
//! check that `scripts/sandbox` leaves the traces kind leaves and removes them again.
//!
//! Each test makes its own uniquely named sandbox with a private KUBECONFIG (the user's is never
//! touched) and a guard that runs `scripts/sandbox down` however the test ends. They need the
//! Docker engine (skipped without one, failing under CI) and `kprov/sandbox-node:latest`
//! (`scripts/prepare-sandbox`, which `scripts/test` runs first).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::require_docker;

/// One sandbox cluster, removed on drop, with its own kubeconfig and kubectl cache.
struct Sandbox {
    name: String,
    host: String,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn up(host: &str, test_name: &str, args: &[&str]) -> Sandbox {
        common::ensure_sandbox_image(host);
        let dir = tempfile::tempdir().expect("failed to create a temp dir for the kubeconfig");
        let sandbox = Sandbox {
            name: common::unique_name(test_name),
            host: host.to_string(),
            dir,
        };
        let out = sandbox.script(&[&["up", "--name", &sandbox.name], args].concat());
        assert!(
            out.status.success(),
            "failed to bring sandbox {} up: {}\n{}",
            sandbox.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sandbox
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn context(&self) -> String {
        format!("kind-{}", self.name)
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(common::repo_root().join("scripts/sandbox"))
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .expect("failed to run scripts/sandbox")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--context")
            .arg(self.context())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .stdin(Stdio::null())
            .output()
            .expect("failed to run kubectl (is it installed?)")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed against sandbox {}: {}\n{}\nnode log:\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.node_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, manifest: &str) -> String {
        let path = self
            .dir
            .path()
            .join(format!("manifest-{}.yaml", manifest.len()));
        std::fs::write(&path, manifest).expect("failed to write a manifest");
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "-f",
            path.to_str().expect("utf-8 temp path"),
        ])
    }

    fn control_plane(&self) -> String {
        format!("{}-control-plane", self.name)
    }

    fn node_log(&self) -> String {
        let out = common::docker(&self.host)
            .args(["logs", "--tail", "40", &self.control_plane()])
            .output();
        out.map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
    }

    /// Loads a host image into the control-plane node the way kind does (`ctr images import`).
    fn load_image(&self, image: &str) {
        let mut save = common::docker(&self.host)
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .expect("failed to run docker save");
        let status = common::docker(&self.host)
            .args([
                "exec",
                "-i",
                &self.control_plane(),
                "ctr",
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
                "-",
            ])
            .stdin(save.stdout.take().expect("piped stdout"))
            .stdout(Stdio::null())
            .status()
            .expect("failed to run docker exec ctr import");
        let saved = save.wait().expect("failed to wait for docker save");
        assert!(saved.success(), "docker save {image} failed");
        assert!(
            status.success(),
            "failed to import {image} into {}",
            self.control_plane()
        );
    }

    fn containers(&self) -> Vec<String> {
        let out = common::run_ok(common::docker(&self.host).args([
            "ps",
            "--all",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=io.x-k8s.kind.cluster={}", self.name),
        ]));
        let mut names: Vec<String> = out.lines().map(String::from).collect();
        names.sort();
        names
    }

    fn down(&self) -> Output {
        self.script(&["down", "--name", &self.name])
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let out = self.down();
        if !out.status.success() {
            eprintln!(
                "failed to remove sandbox {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("failed to write a temp file");
    path
}

#[test]
fn kubectl_sees_a_sandbox_as_a_kind_cluster() {
    let host = require_docker!();
    let sb = Sandbox::up(&host, "kubectl_sees_a_sandbox_as_a_kind_cluster", &[]);

    let namespaces = sb.kubectl_ok(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "missing namespace {ns} in {namespaces}"
        );
    }
    let version = sb.kubectl_ok(&["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");

    // Named and labelled as kind does, with the API published on 127.0.0.1.
    assert_eq!(sb.containers(), vec![sb.control_plane()]);
    let labels = common::run_ok(common::docker(&host).args([
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.x-k8s.kind.role\"}} {{.Config.Hostname}} {{.HostConfig.RestartPolicy.Name}}",
        &sb.control_plane(),
    ]));
    assert_eq!(
        labels.trim(),
        format!("control-plane {} on-failure", sb.control_plane())
    );
    let port =
        common::run_ok(common::docker(&host).args(["port", &sb.control_plane(), "6443/tcp"]));
    assert!(port.trim().starts_with("127.0.0.1:"), "{port}");

    // The node holds admin.conf as kubeadm writes it; the host kubeconfig has kind-<name>, current.
    let admin = common::run_ok(common::docker(&host).args([
        "exec",
        &sb.control_plane(),
        "cat",
        "/etc/kubernetes/admin.conf",
    ]));
    assert!(
        admin.contains(&format!("server: https://{}:6443", sb.control_plane())),
        "{admin}"
    );
    assert!(
        admin.contains(&format!("current-context: kubernetes-admin@{}", sb.name)),
        "{admin}"
    );
    let current = sb.kubectl_ok(&["config", "current-context"]);
    assert_eq!(current.trim(), sb.context());
    let server = sb.kubectl_ok(&[
        "config",
        "view",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(server.trim(), format!("https://{}", port.trim()));

    // A second `up` of the same name fails clearly, as kind does.
    let again = sb.script(&["up", "--name", &sb.name]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exist"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn real_crds_apply_server_side_and_become_established() {
    let host = require_docker!();
    let sb = Sandbox::up(
        &host,
        "real_crds_apply_server_side_and_become_established",
        &[],
    );
    let files: Vec<String> = common::KUBERNAUT_CRDS
        .iter()
        .map(|f| common::kubernaut_crd(f).display().to_string())
        .collect();
    let mut apply = vec!["apply", "--server-side"];
    for f in &files {
        apply.extend(["-f", f.as_str()]);
    }
    let applied = sb.kubectl_ok(&apply);
    assert_eq!(
        applied.matches("serverside-applied").count(),
        3,
        "{applied}"
    );
    sb.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ]);
    let resources = sb.kubectl_ok(&["api-resources", "--api-group=kubernaut.ai", "-o", "name"]);
    for r in [
        "actiontypes.kubernaut.ai",
        "notificationrequests.kubernaut.ai",
        "signalprocessings.kubernaut.ai",
    ] {
        assert!(resources.contains(r), "discovery lacks {r}: {resources}");
    }

    sb.apply(
        "apiVersion: kubernaut.ai/v1alpha1\nkind: ActionType\nmetadata:\n  name: restart-pod\n  namespace: default\n\
         spec:\n  name: RestartPod\n",
    );
    let name = sb.kubectl_ok(&[
        "get",
        "actiontypes",
        "restart-pod",
        "-o",
        "jsonpath={.spec.name}",
    ]);
    assert_eq!(name, "RestartPod");

    // Re-applying the same CRDs changes nothing: same resourceVersion.
    let rv = |sb: &Sandbox| {
        sb.kubectl_ok(&[
            "get",
            "crd",
            "actiontypes.kubernaut.ai",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = rv(&sb);
    sb.kubectl_ok(&apply);
    assert_eq!(rv(&sb), before);
}

const WEB: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop}
data: {greeting: hello}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web, namespace: shop}
rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects: [{kind: ServiceAccount, name: web, namespace: shop}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
      - {name: web, image: \"kprov/base:latest\", imagePullPolicy: Never, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: shop}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: \"kprov/base:latest\", imagePullPolicy: Never}]
";

#[test]
fn a_deployment_with_a_loaded_image_becomes_available_under_kubectl_wait() {
    let host = require_docker!();
    let sb = Sandbox::up(
        &host,
        "a_deployment_with_a_loaded_image_becomes_available",
        &[],
    );
    sb.load_image(common::BASE_IMAGE);

    let applied = sb.apply(WEB);
    assert_eq!(
        applied.matches("serverside-applied").count(),
        8,
        "{applied}"
    );
    sb.kubectl_ok(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ]);
    sb.kubectl_ok(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=Complete",
        "job/migrate",
        "--timeout=60s",
    ]);
    sb.kubectl_ok(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deployment/web",
        "--timeout=60s",
    ]);

    let ready = sb.kubectl_ok(&[
        "-n",
        "shop",
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}",
    ]);
    assert_eq!(ready, "2/2");
    let pods = sb.kubectl_ok(&[
        "-n",
        "shop",
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    assert_eq!(pods, "Running Running");
    let events = sb.kubectl_ok(&[
        "-n",
        "shop",
        "get",
        "events",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for reason in [
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Completed",
    ] {
        assert!(events.contains(reason), "no {reason} event in {events}");
    }
    let logs = sb.kubectl_ok(&["-n", "shop", "logs", "deployment/web"]);
    assert!(logs.contains("kube-double"), "{logs}");

    // Scaling to zero removes the pods.
    sb.kubectl_ok(&["-n", "shop", "scale", "deployment/web", "--replicas=0"]);
    sb.kubectl_ok(&[
        "-n",
        "shop",
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app=web",
        "--timeout=60s",
    ]);
}

#[test]
fn a_missing_image_with_pull_policy_never_gives_err_image_never_pull() {
    let host = require_docker!();
    let sb = Sandbox::up(&host, "a_missing_image_gives_err_image_never_pull", &[]);
    let image = format!("localhost/{}:absent", sb.name);
    sb.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: ghost, namespace: default}}\nspec:\n  \
         selector: {{matchLabels: {{app: ghost}}}}\n  template:\n    metadata: {{labels: {{app: ghost}}}}\n    \
         spec:\n      containers: [{{name: ghost, image: \"{image}\", imagePullPolicy: Never}}]\n"
    ));
    sb.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ErrImageNeverPull",
        "pod",
        "-l",
        "app=ghost",
        "--timeout=60s",
    ]);
    let events = sb.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ErrImageNeverPull",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(&format!(
            "Container image \"{image}\" is not present with pull policy of Never"
        )),
        "{events}"
    );
    let available = sb.kubectl_ok(&[
        "get",
        "deployment",
        "ghost",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
    ]);
    assert_eq!(available, "False");
}

#[test]
fn scripted_crashes_show_crash_loop_back_off_and_their_logs() {
    let host = require_docker!();
    let sb = Sandbox::up(
        &host,
        "scripted_crashes_show_crash_loop_back_off",
        &["--env", "KUBE_DOUBLE_CRASH_INTERVAL_MS=300"],
    );
    sb.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: crashy, namespace: default}\nspec:\n  \
         selector: {matchLabels: {app: crashy}}\n  template:\n    metadata:\n      labels: {app: crashy}\n      \
         annotations: {double.kprov.dev/crash: \"panic: cannot reach postgres\", double.kprov.dev/skip-image-check: \"true\"}\n    \
         spec:\n      containers: [{name: app, image: \"kprov/base:latest\"}]\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\n  namespace: default\n  \
         annotations: {double.kprov.dev/progress-deadline-exceeded: \"true\"}\nspec:\n  \
         selector: {matchLabels: {app: stuck}}\n  template:\n    metadata:\n      labels: {app: stuck}\n      \
         annotations: {double.kprov.dev/skip-image-check: \"true\"}\n    \
         spec:\n      containers: [{name: app, image: \"kprov/base:latest\"}]\n",
    );
    sb.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff",
        "pod",
        "-l",
        "app=crashy",
        "--timeout=60s",
    ]);
    let logs = sb.kubectl_ok(&["logs", "deployment/crashy"]);
    assert_eq!(logs.trim(), "panic: cannot reach postgres");
    let backoff = sb.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=BackOff",
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert!(backoff.contains("Warning"), "{backoff}");

    // kubectl rollout status reports the scripted progress deadline as a failure.
    sb.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}=ProgressDeadlineExceeded",
        "deployment/stuck",
        "--timeout=60s",
    ]);
    let rollout = sb.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=30s"]);
    assert!(!rollout.status.success());
    assert!(String::from_utf8_lossy(&rollout.stderr).contains("exceeded its progress deadline"));
}

#[test]
fn two_sandboxes_run_side_by_side() {
    let host = require_docker!();
    let a = Sandbox::up(&host, "two_sandboxes_side_by_side_a", &[]);
    let b = Sandbox::up(&host, "two_sandboxes_side_by_side_b", &[]);

    a.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only-in-a, namespace: default}\ndata: {k: v}\n");
    assert!(
        a.kubectl_ok(&["get", "configmaps", "-o", "name"])
            .contains("configmap/only-in-a")
    );
    assert!(
        !b.kubectl_ok(&["get", "configmaps", "-o", "name"])
            .contains("only-in-a")
    );
    let port = |s: &Sandbox| {
        common::run_ok(common::docker(&host).args(["port", &s.control_plane(), "6443/tcp"]))
    };
    assert_ne!(port(&a), port(&b));

    // Removing one leaves the other serving.
    let out = a.down();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.kubectl_ok(&["get", "ns", "default"]);
}

#[test]
fn down_removes_every_container_volume_and_kubeconfig_entry() {
    let host = require_docker!();
    let sb = Sandbox::up(&host, "down_removes_every_trace", &["--nodes", "3"]);
    let nodes = sb.containers();
    assert_eq!(
        nodes,
        vec![
            sb.control_plane(),
            format!("{}-worker", sb.name),
            format!("{}-worker2", sb.name)
        ]
    );
    let node_objects = sb.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(node_objects.lines().count(), 3, "{node_objects}");
    let volumes: Vec<String> = nodes
        .iter()
        .map(|n| {
            common::run_ok(common::docker(&host).args([
                "inspect",
                "--format",
                "{{range .Mounts}}{{if eq .Destination \"/var\"}}{{.Name}}{{end}}{{end}}",
                n,
            ]))
            .trim()
            .to_string()
        })
        .collect();
    assert!(
        volumes.iter().all(|v| !v.is_empty()),
        "every node has an anonymous /var volume: {volumes:?}"
    );
    // Another entry in the same kubeconfig must survive.
    common::run_ok(
        Command::new("kubectl")
            .env("KUBECONFIG", sb.kubeconfig())
            .args([
                "config",
                "set-context",
                "someone-else",
                "--cluster=elsewhere",
            ]),
    );

    let out = sb.down();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sb.containers().is_empty());
    for v in &volumes {
        let gone = common::docker(&host)
            .args(["volume", "inspect", v])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            !gone.expect("failed to run docker volume inspect").success(),
            "volume {v} is left behind"
        );
    }
    let config = std::fs::read_to_string(sb.kubeconfig()).expect("the kubeconfig still exists");
    assert!(!config.contains(&sb.context()), "{config}");
    assert!(config.contains("someone-else"), "{config}");
    assert!(!sb.kubeconfig().with_extension("lock").exists());
    let network = common::docker(&host)
        .args(["network", "inspect", "kind"])
        .stdout(Stdio::null())
        .status();
    assert!(
        network
            .expect("failed to run docker network inspect")
            .success(),
        "kind leaves its network; so does the sandbox"
    );
}

#[test]
fn injected_api_faults_reach_clients_with_retry_after() {
    let host = require_docker!();
    let sb = Sandbox::up(&host, "injected_api_faults_reach_clients", &[]);
    let fault = write_temp(
        sb.dir.path(),
        "fault.json",
        r#"{"status": 429, "count": 2, "path_prefix": "/api/v1/namespaces/default/configmaps"}"#,
    );
    sb.kubectl_ok(&[
        "create",
        "--raw",
        "/double/faults",
        "-f",
        fault.to_str().expect("utf-8 path"),
    ]);
    // client-go retries 429s that carry Retry-After: the request succeeds and the log shows both.
    let out = sb.kubectl(&["get", "configmaps", "-v=6"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("429 Too Many Requests").count(), 2, "{log}");
    let listed = sb.kubectl_ok(&["get", "--raw", "/double/faults"]);
    assert_eq!(listed.trim(), r#"{"faults":[]}"#);

    let fault = write_temp(
        sb.dir.path(),
        "fault500.json",
        r#"{"status": 500, "path_prefix": "/api/v1/namespaces/default/secrets"}"#,
    );
    sb.kubectl_ok(&[
        "create",
        "--raw",
        "/double/faults",
        "-f",
        fault.to_str().expect("utf-8 path"),
    ]);
    let out = sb.kubectl(&["get", "secrets"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault injected by kube-double"));
    sb.kubectl_ok(&["delete", "--raw", "/double/faults"]);
    sb.kubectl_ok(&["get", "secrets"]);
}

/// kube-rs as kprov uses it: kubeconfig context, server-side apply, discovery of a freshly
/// Established CRD, watches and `await_condition`.
#[test]
fn kube_rs_applies_discovers_and_watches_through_the_double() {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::core::GroupVersionKind;
    use kube::runtime::{conditions, wait::await_condition, watcher};

    let host = require_docker!();
    let sb = Sandbox::up(&host, "kube_rs_applies_discovers_and_watches", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("failed to build a runtime");
    rt.block_on(async {
        let kubeconfig = Kubeconfig::read_from(sb.kubeconfig()).expect("failed to read the sandbox kubeconfig");
        let options = KubeConfigOptions { context: Some(sb.context()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("failed to load context");
        let client = kube::Client::try_from(config).expect("failed to build a client");
        let ssa = PatchParams::apply("kprov").force();

        let info = client.apiserver_version().await.expect("failed to read /version");
        assert_eq!(info.minor, "33");

        // A CRD, applied server-side, Established, then its kind resolved through discovery.
        let text = std::fs::read_to_string(common::kubernaut_crd("kubernaut.ai_actiontypes.yaml")).expect("failed to read a CRD");
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("failed to parse the CRD");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.patch("actiontypes.kubernaut.ai", &ssa, &Patch::Apply(&crd)).await.expect("failed to apply the CRD");
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), "actiontypes.kubernaut.ai", conditions::is_crd_established()),
        )
        .await
        .expect("timed out waiting for the CRD to be Established")
        .expect("watch failed");
        let gvk = GroupVersionKind::gvk("kubernaut.ai", "v1alpha1", "ActionType");
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await.expect("discovery lacks ActionType");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        let actions: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubernaut.ai/v1alpha1", "kind": "ActionType",
            "metadata": {"name": "scale-up"}, "spec": {"name": "ScaleUp"},
        }))
        .expect("a valid object");
        let created = actions.patch("scale-up", &ssa, &Patch::Apply(&obj)).await.expect("failed to apply a custom resource");
        let again = actions.patch("scale-up", &ssa, &Patch::Apply(&obj)).await.expect("failed to re-apply");
        assert_eq!(created.metadata.resource_version, again.metadata.resource_version, "a no-op apply keeps the version");
        assert_eq!(again.metadata.managed_fields.as_ref().map(|m| m[0].manager.clone()), Some(Some("kprov".to_string())));

        // A watch sees an object applied after it started.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut events = watcher(configmaps.clone(), watcher::Config::default().labels("kprov-test=watch")).boxed();
        let first = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("timed out waiting for the watch to start");
        assert!(matches!(first, Some(Ok(watcher::Event::Init))), "{first:?}");
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "watched", "labels": {"kprov-test": "watch"}}, "data": {"k": "v"},
        }))
        .expect("a valid ConfigMap");
        configmaps.patch("watched", &ssa, &Patch::Apply(&cm)).await.expect("failed to apply a ConfigMap");
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = event
                    && cm.metadata.name.as_deref() == Some("watched")
                {
                    return cm;
                }
            }
            panic!("the watch ended");
        })
        .await
        .expect("timed out waiting for the ConfigMap in the watch");
        assert_eq!(seen.data.and_then(|d| d.get("k").cloned()), Some("v".to_string()));

        // A Deployment completes (its pods skip the image check: images are another test's job).
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}, "annotations": {"double.kprov.dev/skip-image-check": "true"}},
                                  "spec": {"containers": [{"name": "api", "image": "kprov/base:latest"}]}}},
        }))
        .expect("a valid Deployment");
        deployments.patch("api", &ssa, &Patch::Apply(&deployment)).await.expect("failed to apply a Deployment");
        let done = tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(deployments.clone(), "api", conditions::is_deployment_completed()),
        )
        .await
        .expect("timed out waiting for the Deployment to complete")
        .expect("watch failed")
        .expect("the Deployment exists");
        let status = done.status.expect("a status");
        assert_eq!(status.observed_generation, done.metadata.generation);
        assert_eq!(status.available_replicas, Some(2));

        // Errors arrive as kube-rs API errors with the apiserver's wording.
        let err = actions.get("absent").await.expect_err("absent objects are not found");
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 404);
                assert_eq!(s.message, "actiontypes.kubernaut.ai \"absent\" not found");
            }
            other => panic!("unexpected error {other:?}"),
        }
    });
}

/// A second name for an image (the same image ID), untagged on drop.
struct Alias {
    host: String,
    reference: String,
}

impl Alias {
    fn of(host: &str, image: &common::TestImage, test_name: &str) -> Alias {
        let reference = format!("kprov-test/{}:alias", common::unique_name(test_name));
        common::run_ok(common::docker(host).args(["tag", image.reference(), &reference]));
        Alias {
            host: host.to_string(),
            reference,
        }
    }
}

impl Drop for Alias {
    fn drop(&mut self) {
        let _ = common::docker(&self.host)
            .args(["image", "rm", &self.reference])
            .output();
    }
}

/// Waits until every node's containerd answers (the sandbox waits for the API only).
fn wait_for_containerd(host: &str, nodes: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for node in nodes {
        loop {
            let out = common::docker(host)
                .args(["exec", node, "ctr", "version"])
                .output()
                .expect("failed to run docker exec");
            if out.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "containerd in {node} did not answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What the task engine does with a profile of several images: one load task per image, all
/// at once, each streaming its image into every node. Four distinct images on one base (their
/// archives share entries, as a service's images do) and one of them under a second name (two
/// image keys with the same ID), into three sandbox nodes' containerd: every load finishes,
/// well inside the 60 s a node may go without reading, and every node holds every name.
#[test]
fn concurrent_loads_of_distinct_and_same_id_images_land_on_every_sandbox_node() {
    use kprov::tasks::build::BuiltImage;
    use kprov::tasks::load::{LoadOptions, NodeAction, load_image_with, normalize_image_name};

    let host = require_docker!();
    let test = "concurrent_loads_on_sandbox_nodes";
    let sb = Sandbox::up(&host, test, &["--nodes", "3"]);
    let nodes = vec![
        sb.control_plane(),
        format!("{}-worker", sb.name),
        format!("{}-worker2", sb.name),
    ];
    wait_for_containerd(&host, &nodes);
    // A few MB each, so the imports overlap.
    let images: Vec<common::TestImage> = (0..4)
        .map(|i| {
            let payload: Vec<u8> = (0..4u32 << 20)
                .map(|b| (b.wrapping_mul(2_654_435_761).rotate_left(i + 5) >> 24) as u8)
                .collect();
            common::TestImage::build(
                &host,
                test,
                "FROM kprov/base:latest\nCOPY payload /payload\n",
                &[("payload", &payload)],
            )
        })
        .collect();
    let alias = Alias::of(&host, &images[0], test);
    let mut built: Vec<BuiltImage> = images
        .iter()
        .map(|image| BuiltImage {
            reference: image.reference().to_string(),
            id: image.id(),
            builder: None,
        })
        .collect();
    built.push(BuiltImage {
        reference: alias.reference.clone(),
        id: built[0].id.clone(),
        builder: None,
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("failed to build a runtime");
    let started = std::time::Instant::now();
    let results = rt.block_on(async {
        let engine = kprov::adapters::docker::Engine::connect_to(&host)
            .await
            .expect("failed to connect to the engine");
        let (engine, cluster) = (&engine, sb.name.as_str());
        let loads = built.iter().map(|image| async move {
            // load_image's own options: the 60 s stall cut-off.
            let ctx = common::task_ctx(&format!("load:{}", image.reference)).0;
            load_image_with(engine, cluster, image, &LoadOptions::default(), &ctx).await
        });
        // Under the 60 s stall cut-off: a load stuck behind another node's import fails here.
        tokio::time::timeout(Duration::from_secs(45), futures::future::join_all(loads)).await
    });
    let results = results.unwrap_or_else(|_| {
        // containerd's open ingests name what each stuck import is writing (or waiting for).
        let active = ["ctr", "-n", "k8s.io", "content", "active"];
        let state = nodes.iter().map(|n| {
            let ingests = common::run_ok(common::docker(&host).arg("exec").arg(n).args(active));
            format!("{n}: {:?}\n{ingests}", node_image_names(&host, n))
        });
        panic!(
            "the loads did not finish within 45 s (stalled imports); node images and ingests:\n{}",
            state.collect::<Vec<_>>().join("\n")
        )
    });
    let reports: Vec<_> = built
        .iter()
        .zip(results)
        .map(|(image, result)| {
            result.unwrap_or_else(|e| panic!("load {} failed: {}", image.reference, e.message))
        })
        .collect();
    eprintln!(
        "5 loads into 3 nodes took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for node in &nodes {
        let refs = node_image_names(&host, node);
        for image in &built {
            let name = normalize_image_name(&image.reference);
            assert!(refs.contains(&name), "{node} lacks {name}: {refs:?}");
            assert!(
                refs.contains(&image.id),
                "{node} lacks {}: {refs:?}",
                image.id
            );
        }
        // The two keys of one image ID: imported once, the other name a tag.
        let mut same_id = [&reports[0], &reports[4]].map(|r| r.nodes.get(node).cloned());
        same_id.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            same_id,
            [Some(NodeAction::Imported), Some(NodeAction::Retagged)],
            "{node}"
        );
    }
}

fn node_image_names(host: &str, node: &str) -> Vec<String> {
    common::run_ok(
        common::docker(host).args(["exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q"]),
    )
    .lines()
    .map(str::to_string)
    .collect()
}
