//! HTTP steps and what follows them, end to end on the sandbox (the API double behind the kind
//! CLI double) against a local HTTP server that records every request: a body embedding a
//! file's text as a JSON string (`{{ file "…" | json }}`) and a body from a template file
//! (`bodyFile`), fields of the answers as run-time values (`httpResponse`) that flow into a
//! later request and a manifest without ever being printed, and a component and a hook that
//! start only once a step is done.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::require_docker;
use serde_json::Value;

/// One request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// A loopback HTTP/1.1 server answering each request with `route`, one request per
/// connection; stops on drop.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

type Route = fn(&Seen) -> (u16, String);

impl Server {
    fn start(route: Route) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => answer(sock, route, &s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server { url, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(sock: std::net::TcpStream, route: Route, seen: &Mutex<Vec<Seen>>) {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let request = Seen {
        method,
        path,
        body: String::from_utf8_lossy(&body).to_string(),
    };
    let (status, text) = route(&request);
    seen.lock().unwrap().push(request);
    let mut sock = sock;
    let _ = write!(
        sock,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// A workflow registry: the first registration of a body creates (201, with the id), one
/// marked `"again"` conflicts (409, a problem without the id); `/find` lists it.
fn registry(req: &Seen) -> (u16, String) {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/register") if req.body.contains("\"again\":true") => (
            409,
            r#"{"title":"Conflict","detail":"already registered"}"#.into(),
        ),
        ("POST", "/register") => (201, format!(r#"{{"workflowId":"{ID}","name":"w"}}"#)),
        ("GET", "/find?name=w&limit=1") => (200, format!(r#"{{"items":[{{"id":"{ID}"}}]}}"#)),
        _ => (404, "{}".into()),
    }
}

/// What the registry answers as the id: it must reach the cluster, never a log or a record.
const ID: &str = "wf-5e1d-not-for-printing";

/// A fixture with what JSON must escape: quotes, a backslash, a tab, non-ASCII, newlines.
const FIXTURE: &str = "apiVersion: kubernaut.ai/v1alpha1\nkind: RemediationWorkflow\nmetadata:\n  name: \"w\"\nspec:\n  path: C:\\tmp\n\tnote: café ✓\n";

fn write_tree(root: &Path, cluster: &str, url: &str) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "profiles/st.yaml",
        &format!(
            r#"service: st
namespace: st
cluster:
  name: {cluster}
runtime:
  workflow-id:
    httpResponse: {{step: register, path: .workflowId}}
  found-id:
    httpResponse: {{step: find, path: ".items[0].id"}}
steps:
  register:
    http:
      method: POST
      url: "{url}/register"
      headers: {{Content-Type: application/json}}
      body: '{{"content":{{{{ file "fixtures/w.yaml" | json }}}},"ns":{{{{ namespace | json }}}}}}'
      expectStatus: [201]
  register-again:
    after: [register]
    http:
      method: POST
      url: "{url}/register"
      bodyFile: requests/again.json
      expectStatus: [201, 409]
  find:
    after: [register-again]
    http: {{url: "{url}/find?name=w&limit=1", expectStatus: [200]}}
components:
  seeded:
    manifests: [k8s/seeded.yaml]
    dependsOn: [find]
hooks:
  after-find:
    manifests: [k8s/job.yaml]
    after: [find]
    timeout: 1m
"#
        ),
    );
    w("fixtures/w.yaml", FIXTURE);
    w(
        "requests/again.json",
        "{\"content\": {{ file \"fixtures/w.yaml\" | json }},\n \"again\":true, \"prior\": {{ runtime.workflow-id | json }}}\n",
    );
    w(
        "k8s/seeded.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seeded}\ndata:\n  id: \"{{ runtime.workflow-id }}\"\n  found: \"{{ runtime.found-id }}\"\n  fixture: {{ file \"fixtures/w.yaml\" | json }}\n",
    );
    w(
        "k8s/job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: after-find}\nspec:\n  template:\n    metadata:\n      annotations: {double.kprov.dev/skip-image-check: \"true\"}\n    spec:\n      restartPolicy: Never\n      containers: [{name: j, image: busybox}]\n",
    );
}

fn task<'a>(record: &'a Value, id: &str) -> &'a Value {
    record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id}"))
}

/// Every file under `dir` whose text holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// What the server was sent: the fixture's exact text inside JSON, twice (the second time
/// with the first answer's field), then the lookup.
fn assert_sent(seen: &[Seen]) {
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 2, "{seen:?}");
    let first: Value = serde_json::from_str(&posts[0].body).expect("the body is JSON");
    assert_eq!(first["content"], FIXTURE);
    assert_eq!(first["ns"], "st");
    let again: Value = serde_json::from_str(&posts[1].body).expect("the bodyFile is JSON");
    assert_eq!(again["content"], FIXTURE);
    assert_eq!(
        again["prior"], ID,
        "the first answer's field, in a later request"
    );
    assert_eq!(seen.last().unwrap().path, "/find?name=w&limit=1");
}

/// The order in the run record: values after their steps, the component and the hook after
/// the last step.
fn assert_ordered(record: &Value) {
    let deps = |id: &str| task(record, id)["deps"].clone();
    assert!(
        deps("value:workflow-id")
            .as_array()
            .unwrap()
            .contains(&"step:register".into())
    );
    assert!(
        deps("step:register-again")
            .as_array()
            .unwrap()
            .contains(&"value:workflow-id".into())
    );
    let find_end = task(record, "step:find")["end_ms"].as_u64().unwrap();
    for id in ["deploy:seeded", "hook:after-find"] {
        assert!(
            deps(id).as_array().unwrap().contains(&"step:find".into()),
            "{id}"
        );
        let start = task(record, id)["start_ms"].as_u64().unwrap();
        assert!(
            start >= find_end,
            "{id} started at {start} ms, step:find ended at {find_end}"
        );
    }
}

#[test]
fn http_steps_send_files_keep_answers_as_values_and_gate_a_component_and_a_hook() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let server = Server::start(registry);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = common::unique_name("http-steps");
    write_tree(d, &cluster, &server.url);
    let kprov = || common::sandbox_kprov(&host, d, &d.join("profiles"), d);
    struct Down<'a>(&'a dyn Fn() -> Command, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)()
                .args(["down", "--cluster", &self.1])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _down = Down(&kprov, cluster.clone());

    let render = kprov()
        .args(["render", "--service", "st"])
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&render.stdout);
    assert!(
        render.status.success(),
        "{}",
        String::from_utf8_lossy(&render.stderr)
    );
    assert!(
        rendered.contains("<runtime.workflow-id from value:workflow-id>"),
        "render shows a placeholder:\n{rendered}"
    );

    // Every event, progress lines included, as JSON lines on stdout.
    let out = kprov()
        .args(["up", "--service", "st", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kprov up failed:\n{stderr}\n{events}");
    assert!(events.contains("step:register"), "{events}");

    assert_sent(&server.seen());

    // The values reached the cluster.
    let kubeconfig = d.join("kubeconfig");
    let get = |path: &str| {
        common::run_ok(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--context", &format!("kind-{cluster}"), "-n", "st"])
                .arg("--cache-dir")
                .arg(d.join("kube-cache"))
                .args(["get", "configmap", "seeded", "-o"])
                .arg(format!("jsonpath={path}")),
        )
    };
    assert_eq!(get("{.data.id}"), ID);
    assert_eq!(get("{.data.found}"), ID);
    assert_eq!(get("{.data.fixture}"), FIXTURE);

    let record = common::run_ok(kprov().args(["profile", "--format", "json"]));
    assert_ordered(&serde_json::from_str(&record).unwrap());

    // Never printed, never written down.
    assert!(!stderr.contains(ID), "{stderr}");
    assert!(!events.contains(ID), "{events}");
    assert_eq!(files_holding(&d.join(".kprov"), ID), [] as [String; 0]);
}

#[test]
fn an_answer_without_the_field_fails_its_value_naming_step_path_and_body() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let server = Server::start(registry);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = common::unique_name("http-steps-absent");
    write_tree(d, &cluster, &server.url);
    let profile = d.join("profiles/st.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        text.replace("path: .workflowId}", "path: .workflow_id}"),
    )
    .unwrap();
    let kprov = || common::sandbox_kprov(&host, d, &d.join("profiles"), d);
    let out = kprov().args(["up", "--service", "st"]).output().unwrap();
    let _ = kprov()
        .args(["down", "--cluster", &cluster])
        .stderr(Stdio::null())
        .status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "value workflow-id: step register's answer (201, body: {{\"workflowId\":\"{ID}\",\"name\":\"w\"}}) has no .workflow_id"
    );
    assert!(stderr.contains(&expected), "{expected}\nnot in:\n{stderr}");
    // Nothing after it ran: the second registration uses the value.
    assert_eq!(
        server.seen().iter().filter(|s| s.method == "POST").count(),
        1
    );
}
