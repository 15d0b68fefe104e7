//! Apply, TLS and the wait point against sandbox clusters: node containers shaped like Kind's
//! whose API is served by kube-double, a Kubernetes API double (tests/kube-double/README.md).
//! Each test has its own sandbox and private kubeconfig, torn down even when it panics.
//!
//! Needs the Docker engine (`scripts/docker-up`) and `kprov/sandbox-node` (built here by
//! `scripts/prepare-sandbox` when missing); skipped without an engine unless CI is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kprov::adapters::docker::Engine;
use kprov::adapters::kube::{Kube, Object, ObjectRef};
use kprov::profile::model::{CertificateSpec, TlsSpec};
use kprov::tasks::apply::{self, Manifest};
use kprov::tasks::diagnostics::DiagnosticsSpec;
use kprov::tasks::tls;
use kprov::tasks::wait::{self, WaitTarget};

/// A sandbox cluster for one test, removed on drop (also on panic).
struct Sandbox {
    name: String,
    host: String,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// `scripts/sandbox up --name <unique> --kubeconfig <private> EXTRA...`
    fn up(host: &str, test: &str, extra: &[&str]) -> Sandbox {
        common::ensure_sandbox_image(host);
        let sandbox = Sandbox {
            name: common::unique_name(test),
            host: host.to_string(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        common::run_ok(
            Command::new(common::repo_root().join("scripts/sandbox"))
                .args(["up", "--name", &sandbox.name, "--kubeconfig"])
                .arg(sandbox.kubeconfig())
                .args(extra)
                .env("DOCKER_HOST", host)
                .stdin(Stdio::null()),
        );
        sandbox
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn context(&self) -> String {
        format!("kind-{}", self.name)
    }

    async fn kube(&self) -> Kube {
        Kube::connect(Some(&self.kubeconfig()), Some(&self.context()))
            .await
            .expect("connect to the sandbox")
    }

    /// kubectl (the real client) against this sandbox.
    fn kubectl(&self, args: &[&str]) -> String {
        common::run_ok(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .args(["--context", &self.context()])
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    /// Injects API faults through the double's `/double/faults` endpoint.
    fn inject_faults(&self, faults: &str) {
        let file = self.dir.path().join("faults.json");
        std::fs::write(&file, faults).unwrap();
        self.kubectl(&[
            "create",
            "--raw",
            "/double/faults",
            "-f",
            file.to_str().unwrap(),
        ]);
    }

    fn diagnostics(&self, engine: &Engine) -> DiagnosticsSpec {
        DiagnosticsSpec {
            dir: self.dir.path().join("diagnostics"),
            engine: Some(engine.clone()),
            nodes: vec![format!("{}-control-plane", self.name)],
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let status = Command::new(common::repo_root().join("scripts/sandbox"))
            .args(["down", "--name", &self.name, "--kubeconfig"])
            .arg(self.kubeconfig())
            .env("DOCKER_HOST", &self.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("failed to remove sandbox {}", self.name);
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    common::repo_root()
        .join("tests/fixtures/manifests")
        .join(name)
}

fn objects(path: &Path) -> Vec<Object> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    apply::parse_manifests(&Manifest {
        origin: path.display().to_string(),
        text,
    })
    .expect("fixture parses")
}

fn workloads(objs: &[Object]) -> Vec<ObjectRef> {
    objs.iter()
        .filter(|o| matches!(o.kind(), "Deployment" | "StatefulSet" | "Job"))
        .map(Object::object_ref)
        .collect()
}

async fn engine(host: &str) -> Engine {
    Engine::connect_to(host).await.expect("engine")
}

/// Applies config, then `file`, then waits for its workloads with `deadline`; returns the error.
async fn deploy_and_wait(sandbox: &Sandbox, file: &str, deadline: Duration) -> String {
    let kube = sandbox.kube().await;
    let (ctx, _rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let objs = objects(&fixture(file));
    apply::apply_objects(&kube, &objs, &ctx).await.unwrap();
    let target = WaitTarget {
        component: "app".into(),
        objects: workloads(&objs),
        http: None,
        deadline,
    };
    let engine = engine(&sandbox.host).await;
    let message = wait::wait_ready(&kube, &[target], &ctx, &sandbox.diagnostics(&engine))
        .await
        .expect_err("the wait must fail")
        .message;
    eprintln!("the wait failed with:\n{message}");
    message
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resource_is_applied_after_its_crd_is_established() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(
        &host,
        "crd-ordering",
        &["--env", "KUBE_DOUBLE_CRD_DELAY_MS=1500"],
    );
    let kube = sandbox.kube().await;
    let (ctx, mut rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let widget = objects(&fixture("widget.yaml"));

    // Before its CRD, the kind cannot be resolved, and the error says why.
    let early = apply::apply_objects(&kube, &widget, &ctx)
        .await
        .unwrap_err();
    assert!(
        early.message.contains("does not serve Widget"),
        "{}",
        early.message
    );

    apply::apply_crds(
        &kube,
        &objects(&fixture("widgets-crd.yaml")),
        &ctx,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(
        common::progress(&mut rx)
            .iter()
            .any(|m| m == "1 CRDs Established")
    );
    // The stale "not served" answer is gone with the discovery cache.
    apply::apply_objects(&kube, &widget, &ctx).await.unwrap();
    let got = sandbox.kubectl(&[
        "get",
        "widgets.example.kprov.dev",
        "first",
        "-n",
        "kprov-test",
        "-o",
        "jsonpath={.spec.size}",
    ]);
    assert_eq!(got, "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_kubernaut_crds_are_applied_and_established() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "real-crds", &[]);
    let kube = sandbox.kube().await;
    let (ctx, _rx) = common::task_ctx("deploy:test");
    let mut crds = Vec::new();
    for file in common::KUBERNAUT_CRDS {
        crds.extend(objects(&common::kubernaut_crd(file)));
    }
    assert_eq!(crds.len(), 3);
    apply::apply_crds(&kube, &crds, &ctx, Duration::from_secs(60))
        .await
        .unwrap();
    let established = sandbox.kubectl(&[
        "get",
        "crd",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status}{"\n"}{end}"#,
    ]);
    for name in [
        "actiontypes.kubernaut.ai",
        "notificationrequests.kubernaut.ai",
        "signalprocessings.kubernaut.ai",
    ] {
        assert!(
            established.lines().any(|l| l == format!("{name}=True")),
            "{name} in:\n{established}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn re_applying_the_same_objects_changes_nothing() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "idempotent", &[]);
    let kube = sandbox.kube().await;
    let (ctx, _rx) = common::task_ctx("deploy:test");
    let mut objs = objects(&fixture("config.yaml"));
    objs.extend(objects(&fixture("workloads.yaml")));
    // As `kprov up` does: the profile's namespace defaulted onto every object, the
    // cluster-scoped Namespace included (where it means nothing and is dropped).
    for o in &mut objs {
        o.default_namespace("kprov-test");
    }
    let started = std::time::Instant::now();
    apply::apply_objects(&kube, &objs, &ctx).await.unwrap();
    let first = started.elapsed();
    let versions = |kube: Kube, objs: Vec<Object>| async move {
        let mut v = Vec::new();
        for o in &objs {
            let got = kube.get(&o.object_ref()).await.unwrap().expect("applied");
            v.push((
                o.object_ref().to_string(),
                got.resource_version().unwrap().to_string(),
                got.get("/metadata/generation").cloned(),
            ));
        }
        v
    };
    let before = versions(kube.clone(), objs.clone()).await;
    let started = std::time::Instant::now();
    apply::apply_objects(&kube, &objs, &ctx).await.unwrap();
    // A figure for the reader, not an assertion.
    eprintln!(
        "apply of {} objects: first {:?}, again {:?}",
        objs.len(),
        first,
        started.elapsed()
    );
    let after = versions(kube.clone(), objs.clone()).await;
    // Workloads' status moves on its own; compare only what an apply would bump.
    let spec_of = |v: &[(String, String, Option<serde_json::Value>)]| {
        v.iter()
            .map(|(r, rv, generation)| {
                if r.starts_with("Deployment")
                    || r.starts_with("StatefulSet")
                    || r.starts_with("Job")
                {
                    (r.clone(), String::new(), generation.clone())
                } else {
                    (r.clone(), rv.clone(), generation.clone())
                }
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(spec_of(&before), spec_of(&after));
    // And every object's field manager is kprov, by server-side apply.
    let managers = sandbox.kubectl(&[
        "get",
        "configmap",
        "app-config",
        "-n",
        "kprov-test",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    ]);
    assert_eq!(managers, "kprov/Apply");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wait_passes_when_every_workload_and_http_check_is_ready() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "wait-ok", &[]);
    let kube = sandbox.kube().await;
    let (ctx, mut rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let objs = objects(&fixture("workloads.yaml"));
    apply::apply_objects(&kube, &objs, &ctx).await.unwrap();
    // A host-side readiness endpoint (as a NodePort mapping would publish one).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    let targets = [
        WaitTarget {
            component: "api".into(),
            objects: workloads(&objs[..2]),
            http: Some(url),
            deadline: Duration::from_secs(60),
        },
        WaitTarget {
            component: "store".into(),
            objects: workloads(&objs[2..]),
            http: None,
            deadline: Duration::from_secs(60),
        },
    ];
    assert_eq!(targets.iter().map(|t| t.objects.len()).sum::<usize>(), 3);
    let engine = engine(&host).await;
    wait::wait_ready(&kube, &targets, &ctx, &sandbox.diagnostics(&engine))
        .await
        .unwrap();
    let messages = common::progress(&mut rx);
    for r in [
        "Deployment kprov-test/api ready",
        "StatefulSet kprov-test/store ready",
        "Job kprov-test/migrate ready",
    ] {
        assert!(
            messages.iter().any(|m| m.ends_with(r)),
            "{r} in {messages:#?}"
        );
    }
    let ready = sandbox.kubectl(&[
        "get",
        "deployment",
        "api",
        "-n",
        "kprov-test",
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]);
    assert_eq!(ready, "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_missing_from_the_node_fails_with_err_image_never_pull_and_a_bundle() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "never-pull", &[]);
    let message = deploy_and_wait(
        &sandbox,
        "image-never-pulled.yaml",
        Duration::from_secs(120),
    )
    .await;
    assert!(
        message.contains("Deployment kprov-test/absent-image: ErrImageNeverPull"),
        "{message}"
    );
    assert!(
        message.contains("is not present with pull policy of Never"),
        "the event is shown: {message}"
    );
    let dir = sandbox.dir.path().join("diagnostics");
    assert!(
        message.contains(&format!("(diagnostics: {})", dir.display())),
        "{message}"
    );
    for file in [
        "summary.txt",
        "objects/Deployment_kprov-test_absent-image.yaml",
        "events/kprov-test.txt",
        "cluster/nodes.yaml",
    ] {
        assert!(dir.join(file).is_file(), "{file} in the bundle");
    }
    let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap();
    assert!(
        summary.starts_with(
            "wait for readiness: 1 of 1 checks blocked\n  app: Deployment kprov-test/absent-image"
        ),
        "{summary}"
    );
    let node = format!("{}-control-plane", sandbox.name);
    let images = std::fs::read_to_string(dir.join("nodes").join(&node).join("images.txt")).unwrap();
    assert!(
        images.starts_with("REF"),
        "ctr images ls ran in the node: {images}"
    );
    let pods: Vec<_> = std::fs::read_dir(dir.join("pods"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        pods.iter()
            .any(|p| p.starts_with("kprov-test_absent-image-") && p.ends_with(".yaml")),
        "{pods:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_deployment_is_reported_with_its_log_tail() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(
        &host,
        "crash-loop",
        &["--env", "KUBE_DOUBLE_CRASH_INTERVAL_MS=300"],
    );
    let message = deploy_and_wait(&sandbox, "crash-loop.yaml", Duration::from_secs(6)).await;
    assert!(
        message.contains("Deployment kprov-test/crasher: not ready by its deadline"),
        "{message}"
    );
    assert!(message.contains("CrashLoopBackOff"), "{message}");
    assert!(
        message.contains("| FATAL: cannot connect to postgresql:5432: connection refused"),
        "{message}"
    );
    assert!(
        message.contains("BackOff"),
        "the BackOff event is shown: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_past_its_progress_deadline_fails_with_progress_deadline_exceeded() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "progress-deadline", &[]);
    let message =
        deploy_and_wait(&sandbox, "progress-deadline.yaml", Duration::from_secs(120)).await;
    assert!(
        message.contains("Deployment kprov-test/stuck: ProgressDeadlineExceeded"),
        "{message}"
    );
}

/// The wait of `never-ready.yaml`'s workloads (Deployment, StatefulSet, Job), applied before the
/// wait begins or while it runs; returns its error.
async fn wait_for_never_ready(sandbox: &Sandbox, apply_during_the_wait: bool) -> String {
    let kube = sandbox.kube().await;
    let (ctx, _rx) = common::task_ctx("wait:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let objs = objects(&fixture("never-ready.yaml"));
    if !apply_during_the_wait {
        apply::apply_objects(&kube, &objs, &ctx).await.unwrap();
    }
    let target = WaitTarget {
        component: "app".into(),
        objects: workloads(&objs),
        http: None,
        deadline: Duration::from_secs(5),
    };
    let engine = engine(&sandbox.host).await;
    let diagnostics = sandbox.diagnostics(&engine);
    let wait = wait::wait_ready(&kube, std::slice::from_ref(&target), &ctx, &diagnostics);
    let apply_late = async {
        if apply_during_the_wait {
            tokio::time::sleep(Duration::from_secs(1)).await;
            apply::apply_objects(&kube, &objs, &ctx).await.unwrap();
        }
    };
    let (result, ()) = tokio::join!(wait, apply_late);
    let message = result.expect_err("nothing in it becomes ready").message;
    eprintln!("the wait failed with:\n{message}");
    message
}

fn assert_each_never_ready_workload_is_named(message: &str) {
    assert!(
        message.starts_with("wait for readiness: 3 of 3 checks blocked"),
        "{message}"
    );
    for (workload, why) in [
        (
            "Deployment kprov-test/slow-api",
            "0 of 1 updated replicas available",
        ),
        ("StatefulSet kprov-test/slow-store", "0 of 1 replicas ready"),
        (
            "Job kprov-test/slow-migrate",
            "1 active, 0 succeeded, 0 failed",
        ),
    ] {
        assert!(
            message.contains(&format!("{workload}: not ready by its deadline: {why}")),
            "{workload} is named with why it is not ready: {message}"
        );
    }
}

/// On the sandbox's API double, which answers lists as a real kube-apiserver does (items of
/// built-in kinds carry no `kind`): the wait must judge what it asked for, not what came back.
#[tokio::test(flavor = "multi_thread")]
async fn workloads_that_exist_before_the_wait_and_never_become_ready_time_out_by_name() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "never-ready-before", &[]);
    let message = wait_for_never_ready(&sandbox, false).await;
    assert_each_never_ready_workload_is_named(&message);
}

/// As above, with the workloads created only after the wait began watching them.
#[tokio::test(flavor = "multi_thread")]
async fn workloads_created_during_the_wait_that_never_become_ready_time_out_by_name() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "never-ready-during", &[]);
    let message = wait_for_never_ready(&sandbox, true).await;
    assert_each_never_ready_workload_is_named(&message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_reported_with_its_reason_and_log() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "job-failed", &[]);
    let message = deploy_and_wait(&sandbox, "job-failed.yaml", Duration::from_secs(120)).await;
    assert!(
        message.contains("Job kprov-test/migrations: Job failed: BackoffLimitExceeded"),
        "{message}"
    );
    assert!(
        message.contains("migration 007_add_index.sql failed"),
        "{message}"
    );
}

/// Against the sandbox's API double, which refuses an undeclared field in a server-side apply
/// with the 500 a real kube-apiserver answers (../shared/reference/apiserver/09).
#[tokio::test(flavor = "multi_thread")]
async fn a_misspelt_field_is_refused_at_apply_with_its_manifest_line_and_never_retried() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "misspelt", &[]);
    let kube = sandbox.kube().await;
    let (ctx, mut rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\n  namespace: kprov-test\nspec:\n  selector:\n    matchLabels: {app: typo}\n  template:\n    metadata:\n      labels: {app: typo}\n    spec:\n      containers:\n      - name: app\n        image: localhost/kprov/api:test\n        imagePulPolicy: Never\n";
    let objs = apply::parse_manifests(&Manifest {
        origin: "manifests/typo.yaml".into(),
        text: text.into(),
    })
    .unwrap();
    let err = apply::apply_objects(&kube, &objs, &ctx)
        .await
        .expect_err("the server has no such field");
    assert!(!err.transient, "{}", err.message);
    assert!(
        err.message.contains(
            "apply Deployment kprov-test/typo (manifests/typo.yaml:16:9, field .spec.template.spec.containers[name=\"app\"].imagePulPolicy)"
        ),
        "{}",
        err.message
    );
    assert!(err.message.contains("has no field"), "{}", err.message);
    let retries: Vec<String> = common::progress(&mut rx)
        .into_iter()
        .filter(|l| l.starts_with("retrying"))
        .collect();
    assert!(
        retries.is_empty(),
        "a permanent error is not retried: {retries:?}"
    );
}

/// Against the sandbox's API double, which refuses a changed Job template with the 422 a real
/// kube-apiserver answers (../shared/reference/apiserver/26).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_template_changed_is_deleted_and_created_again() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "job-recreate", &[]);
    let kube = sandbox.kube().await;
    let (ctx, mut rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let job = |image: &str| {
        let text = format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrations\n  namespace: kprov-test\nspec:\n  template:\n    metadata:\n      annotations: {{double.kprov.dev/skip-image-check: \"true\"}}\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: {image}\n        imagePullPolicy: Never\n"
        );
        apply::parse_manifests(&Manifest {
            origin: "manifests/migrations.yaml".into(),
            text,
        })
        .unwrap()
    };
    apply::apply_objects(&kube, &job("localhost/migrate:a"), &ctx)
        .await
        .unwrap();
    let r = ObjectRef::new("batch/v1", "Job", Some("kprov-test"), "migrations");
    let first = kube.get(&r).await.unwrap().expect("created");
    common::progress(&mut rx);
    apply::apply_objects(&kube, &job("localhost/migrate:b"), &ctx)
        .await
        .expect("recreated with the new template");
    let second = kube.get(&r).await.unwrap().expect("created again");
    assert_ne!(first.uid(), second.uid(), "a new object");
    assert_eq!(
        second
            .get("/spec/template/spec/containers/0/image")
            .and_then(|v| v.as_str()),
        Some("localhost/migrate:b")
    );
    let said = common::progress(&mut rx);
    assert!(
        said.iter().any(|l| l.starts_with(
            "Job kprov-test/migrations: spec.template cannot change in place: deleting it (foreground)"
        )),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_server_errors_from_the_api_are_retried() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "api-faults", &[]);
    let kube = sandbox.kube().await;
    let (ctx, mut rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    // Discovery first, so the faults hit the applies themselves.
    kube.is_namespaced("apps/v1", "Deployment").await.unwrap();
    kube.is_namespaced("batch/v1", "Job").await.unwrap();
    sandbox.inject_faults(
        r#"[{"status": 429, "count": 3, "path_prefix": "/apis/apps", "method": "PATCH"},
            {"status": 500, "count": 2, "path_prefix": "/apis/batch", "method": "PATCH"}]"#,
    );
    apply::apply_objects(&kube, &objects(&fixture("workloads.yaml")), &ctx)
        .await
        .unwrap();
    let retries: Vec<String> = common::progress(&mut rx)
        .into_iter()
        .filter(|m| m.starts_with("retrying"))
        .collect();
    assert!(retries.iter().any(|m| m.contains("429")), "{retries:#?}");
    assert!(retries.iter().any(|m| m.contains("500")), "{retries:#?}");
    assert_eq!(retries.len(), 5, "{retries:#?}");
    let names = sandbox.kubectl(&[
        "get",
        "deployments,statefulsets,jobs",
        "-n",
        "kprov-test",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 3, "{names}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_that_do_not_clear_are_not_retried_and_every_failure_is_named() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "api-errors", &[]);
    let kube = sandbox.kube().await;
    let (ctx, _rx) = common::task_ctx("deploy:test");
    // Two objects in a namespace that does not exist: both failures are reported, once each.
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: nowhere}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: nowhere}\n";
    let objs = apply::parse_manifests(&Manifest {
        origin: "inline.yaml".into(),
        text: text.into(),
    })
    .unwrap();
    let e = apply::apply_objects(&kube, &objs, &ctx).await.unwrap_err();
    assert!(!e.transient);
    assert!(
        e.message.starts_with("apply 2 of 2 objects"),
        "{}",
        e.message
    );
    for name in [
        "ConfigMap nowhere/a (from inline.yaml:1)",
        "ConfigMap nowhere/b (from inline.yaml:5)",
    ] {
        assert!(e.message.contains(name), "{name} in {}", e.message);
    }
    assert!(
        !e.message.contains("attempts"),
        "a 404 is not retried: {}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_tls_material_is_stable_across_two_runs() {
    let host = common::require_docker!();
    let sandbox = Sandbox::up(&host, "tls", &[]);
    let kube = sandbox.kube().await;
    let (ctx, _rx) = common::task_ctx("deploy:test");
    apply::apply_objects(&kube, &objects(&fixture("config.yaml")), &ctx)
        .await
        .unwrap();
    let spec = TlsSpec {
        ca_config_map: "inter-service-ca".into(),
        services: vec!["datastorage".into(), "holmesgpt-api".into()],
        signing_keys: vec!["datastorage-signing".into()],
        certificates: vec![CertificateSpec {
            secret: "datastorage-tls-by-name".into(),
            namespace: None,
            sans: vec![],
        }],
        ca_file: None,
    };
    // A certificate with its own Secret name and SANs (kubernaut's `datastorage-tls` serves
    // `data-storage-service`, not `datastorage`).
    let sans = vec![
        "data-storage-service".to_string(),
        "data-storage-service.kprov-test.svc".to_string(),
        "127.0.0.1".to_string(),
    ];
    let leaves = tls::leaves(&spec, "kprov-test", std::slice::from_ref(&sans));
    let first = tls::tls_objects(&kube, &spec, "kprov-test", &leaves)
        .await
        .unwrap();
    let named = first
        .iter()
        .find(|o| o.name() == "datastorage-tls-by-name")
        .expect("the named certificate's Secret");
    assert_eq!(
        named
            .get("/metadata/annotations/kprov.dev~1sans")
            .and_then(|v| v.as_str()),
        Some(sans.join(",").as_str())
    );
    apply::apply_objects(&kube, &first, &ctx).await.unwrap();
    let version = |o: Object| o.resource_version().unwrap().to_string();
    let mut before = Vec::new();
    for o in &first {
        before.push(version(kube.get(&o.object_ref()).await.unwrap().unwrap()));
    }
    // A second run reads the material back from the cluster and applies the very same objects.
    let second = tls::tls_objects(&kube, &spec, "kprov-test", &leaves)
        .await
        .unwrap();
    assert_eq!(first, second);
    apply::apply_objects(&kube, &second, &ctx).await.unwrap();
    for (o, rv) in second.iter().zip(&before) {
        assert_eq!(
            &version(kube.get(&o.object_ref()).await.unwrap().unwrap()),
            rv,
            "{}",
            o.object_ref()
        );
    }
    let tls_type = sandbox.kubectl(&[
        "get",
        "secret",
        "datastorage-tls",
        "-n",
        "kprov-test",
        "-o",
        "jsonpath={.type}",
    ]);
    assert_eq!(tls_type, "kubernetes.io/tls");
    let ca = sandbox.kubectl(&[
        "get",
        "configmap",
        "inter-service-ca",
        "-n",
        "kprov-test",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
}
