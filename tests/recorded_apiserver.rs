//! kprov against what a real kube-apiserver answered: a loopback server replays the recorded
//! transcripts of ../shared/reference/apiserver (Kubernetes v1.36.2, no nodes, so no pod ever
//! runs) to kprov's own Kubernetes adapter, wait and apply code. No double is involved: every
//! answer kprov reads here is one a real server gave. A request the transcripts do not hold is
//! answered 404 (a Status, as the server shapes one), and the tests only rely on recorded ones.
//!
//! This is the check that kprov's wait does not return at once on a real server: list items of
//! built-in kinds carry no `kind`, and a watcher's first answers come from a list.

// This file needs no Docker engine: the macro that requires one stays unused.
#[allow(unused_macros, unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, service::service_fn};
use hyper_util::rt::TokioIo;
use kprov::adapters::kube::{Kube, ObjectRef};
use kprov::tasks::apply::{self, Manifest};
use kprov::tasks::diagnostics::DiagnosticsSpec;
use kprov::tasks::wait::{self, WaitTarget};
use serde_json::{Value, json};

/// The recorded transcripts by file stem (`15-list-deployments-by-name`), or `None` (and a
/// note) when ../shared is not beside the checkout; under CI that is a failure.
fn transcripts() -> Option<BTreeMap<String, Value>> {
    let dir = common::repo_root().join("../shared/reference/apiserver");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            !common::in_ci(),
            "the recorded API answers are missing: {}",
            dir.display()
        );
        eprintln!("skipped: no recorded API answers at {}", dir.display());
        return None;
    };
    let mut all = BTreeMap::new();
    for entry in entries {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            all.insert(stem, serde_json::from_str(&text).unwrap());
        }
    }
    Some(all)
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// A watch answer: the recorded events, one JSON object a line, then an open stream with
/// nothing more (as a server sends while nothing changes).
fn watch_response(events: &[Value]) -> Response<Body> {
    let lines: Vec<Result<Frame<Bytes>, Infallible>> = events
        .iter()
        .map(|e| Ok(Frame::data(Bytes::from(format!("{e}\n")))))
        .collect();
    let stream =
        futures::StreamExt::chain(futures::stream::iter(lines), futures::stream::pending());
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// Which recorded answer a request gets: (method, path without query, is a watch) → stem.
type Routes = Vec<((&'static str, &'static str, bool), &'static str)>;

/// Serves `routes` from the transcripts on a loopback port; returns a kubeconfig naming it.
async fn replay(all: BTreeMap<String, Value>, routes: Routes) -> (tempfile::TempDir, PathBuf) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let routes = std::sync::Arc::new(routes);
    let all = std::sync::Arc::new(all);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (routes, all) = (routes.clone(), all.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let answer = answer(&routes, &all, &req);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: recorded\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: recorded\n  context: {{cluster: recorded, user: recorded, namespace: rec}}\ncurrent-context: recorded\nusers:\n- name: recorded\n  user: {{}}\n"
    );
    std::fs::write(&kubeconfig, text).unwrap();
    (dir, kubeconfig)
}

fn answer(
    routes: &Routes,
    all: &BTreeMap<String, Value>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Body> {
    let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
    let key = (req.method().as_str(), req.uri().path(), watch);
    let Some((_, stem)) = routes
        .iter()
        .find(|((m, p, w), _)| (*m, *p, *w) == (key.0, key.1, key.2))
    else {
        let message = format!("the page you requested is not recorded: {}", req.uri());
        return json_response(
            404,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": message}),
        );
    };
    let response = &all[*stem]["response"];
    match response.get("events").and_then(Value::as_array) {
        Some(events) => watch_response(events),
        None => json_response(
            response["status"].as_u64().unwrap() as u16,
            &response["body"],
        ),
    }
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/rec/deployments";
const JOBS: &str = "/apis/batch/v1/namespaces/rec/jobs";

fn diagnostics(dir: &tempfile::TempDir) -> DiagnosticsSpec {
    DiagnosticsSpec {
        dir: dir.path().join("diagnostics"),
        engine: None,
        nodes: Vec::new(),
    }
}

/// The recorded Deployment `rec/web`: created, its pod Pending for want of a node. Listed, its
/// item has no `kind`; the watch then brings the controller's updates (MinimumReplicasUnavailable).
#[tokio::test(flavor = "multi_thread")]
async fn the_wait_on_a_real_servers_answers_times_out_on_a_deployment_that_is_not_available() {
    let Some(all) = transcripts() else { return };
    let routes: Routes = vec![
        (("GET", "/apis/apps/v1", false), "05-discovery-apps-v1"),
        (("GET", DEPLOYMENTS, false), "15-list-deployments-by-name"),
        (("GET", DEPLOYMENTS, true), "16-watch-deployment"),
        (
            ("GET", "/apis/apps/v1/namespaces/rec/deployments/web", false),
            "18-get-deployment-after-controller",
        ),
    ];
    let (dir, kubeconfig) = replay(all, routes).await;
    let kube = Kube::connect(Some(&kubeconfig), Some("recorded"))
        .await
        .unwrap();
    let (ctx, _rx) = common::task_ctx("wait:ready");
    let target = WaitTarget {
        component: "web".into(),
        objects: vec![ObjectRef::new("apps/v1", "Deployment", Some("rec"), "web")],
        http: None,
        deadline: Duration::from_secs(3),
    };
    let started = std::time::Instant::now();
    let err = wait::wait_ready(&kube, &[target], &ctx, &diagnostics(&dir))
        .await
        .expect_err("a Deployment with no available replica is not ready");
    eprintln!("{}", err.message);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the wait lasted its deadline"
    );
    assert!(
        err.message.contains(
            "Deployment rec/web: not ready by its deadline: 0 of 1 updated replicas available"
        ),
        "{}",
        err.message
    );
}

/// The recorded Job `rec/migrations`, just created: its list item has no `kind` and an empty
/// status. (The migrations hook once reported such a Job ready 7 ms after creating it.)
#[tokio::test(flavor = "multi_thread")]
async fn the_wait_on_a_real_servers_answers_does_not_take_a_new_job_for_complete() {
    let Some(all) = transcripts() else { return };
    let routes: Routes = vec![
        (("GET", "/apis/batch/v1", false), "06-discovery-batch-v1"),
        (("GET", JOBS, false), "25-list-jobs"),
    ];
    let (dir, kubeconfig) = replay(all, routes).await;
    let kube = Kube::connect(Some(&kubeconfig), Some("recorded"))
        .await
        .unwrap();
    let (ctx, _rx) = common::task_ctx("hook:migrations");
    let target = WaitTarget {
        component: "migrations".into(),
        objects: vec![ObjectRef::new("batch/v1", "Job", Some("rec"), "migrations")],
        http: None,
        deadline: Duration::from_secs(2),
    };
    let err = wait::wait_ready(&kube, &[target], &ctx, &diagnostics(&dir))
        .await
        .expect_err("a Job that has not completed is not ready");
    assert!(
        err.message.contains(
            "Job rec/migrations: not ready by its deadline: 0 active, 0 succeeded, 0 failed"
        ),
        "{}",
        err.message
    );
}

/// The recorded answer to a server-side apply with a misspelt field: a 500 no retry can fix.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_the_real_server_refuses_for_an_undeclared_field_is_located_and_not_retried() {
    let Some(all) = transcripts() else { return };
    let routes: Routes = vec![
        (("GET", "/apis/apps/v1", false), "05-discovery-apps-v1"),
        (
            (
                "PATCH",
                "/apis/apps/v1/namespaces/rec/deployments/web",
                false,
            ),
            "09-ssa-unknown-field-strict",
        ),
    ];
    let (_dir, kubeconfig) = replay(all, routes).await;
    let kube = Kube::connect(Some(&kubeconfig), Some("recorded"))
        .await
        .unwrap();
    let (ctx, mut rx) = common::task_ctx("deploy:web");
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: rec\nspec:\n  replicaz: 2\n  selector:\n    matchLabels: {app: web}\n";
    let objs = apply::parse_manifests(&Manifest {
        origin: "manifests/web.yaml".into(),
        text: text.into(),
    })
    .unwrap();
    let err = apply::apply_objects(&kube, &objs, &ctx)
        .await
        .expect_err("refused");
    assert!(!err.transient, "{}", err.message);
    assert!(
        err.message
            .contains("apply Deployment rec/web (manifests/web.yaml:7:3, field .spec.replicaz)"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("the server's schema has no field `.spec.replicaz`"),
        "{}",
        err.message
    );
    let retried = common::progress(&mut rx)
        .iter()
        .any(|l| l.starts_with("retrying"));
    assert!(!retried, "no retry can fix it");
}
