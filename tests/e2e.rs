//! `kprov up` end to end against a sandbox cluster: real Docker builds, real image loads into
//! real containerd node containers, and the Kubernetes API double (tests/kube-double) behind
//! the kind CLI double (tests/bin/kind). The demo profile is used with a unique cluster name.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{repo_root, require_docker, require_podman};

/// A private world for one test: profiles with a unique cluster name, its own kubeconfig,
/// state and lock directories. Tears the cluster down on drop, even after a panic.
struct Demo {
    host: String,
    cluster: String,
    dir: tempfile::TempDir,
}

impl Demo {
    fn new(host: &str, test: &str) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let cluster = common::unique_name(test);
        let profiles = dir.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        let text = std::fs::read_to_string(repo_root().join("profiles/demo.yaml")).unwrap();
        let text = text.replace(
            "cluster:\n  name: kprov-demo\n",
            &format!("cluster:\n  name: {cluster}\n"),
        );
        assert!(
            text.contains(&cluster),
            "the demo profile names its cluster kprov-demo"
        );
        std::fs::write(profiles.join("demo.yaml"), text).unwrap();
        Demo {
            host: host.to_string(),
            cluster,
            dir,
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kprov(&self) -> Command {
        let d = self.dir.path();
        common::sandbox_kprov(&self.host, d, &d.join("profiles"), &repo_root())
    }

    fn up(&self, extra: &[&str]) -> (i32, String) {
        let out = self
            .kprov()
            .args(["up", "--service", "demo"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code().unwrap_or(-1), stderr)
    }

    /// kubectl (the real client) against this demo's cluster.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--context", &format!("kind-{}", self.cluster)])
            // Its own discovery cache: the shared one is keyed by server address, and
            // sandboxes of other tests served other kinds on the same port before.
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

    /// Rewrites this demo's profile.
    fn edit_profile(&self, edit: impl FnOnce(String) -> String) {
        let path = self.dir.path().join("profiles/demo.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
    }

    fn latest_record(&self) -> serde_json::Value {
        let out = self
            .kprov()
            .args(["profile", "--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn node_containers(&self) -> Vec<String> {
        let out = common::docker(&self.host)
            .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
            .arg(format!("label=io.x-k8s.kind.cluster={}", self.cluster))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self
            .kprov()
            .args(["down", "--cluster", &self.cluster])
            .stderr(Stdio::null())
            .status();
    }
}

fn outcomes(record: &serde_json::Value) -> Vec<(String, String)> {
    record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_demo_comes_up_on_the_sandbox_and_a_second_run_is_warm() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "demo-up");

    let (code, stderr) = demo.up(&[]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    let first = demo.latest_record();
    assert!(
        outcomes(&first)
            .iter()
            .all(|(_, o)| o == "succeeded" || o == "cached"),
        "{first:#}"
    );
    assert_eq!(
        demo.node_containers(),
        vec![format!("{}-control-plane", demo.cluster)]
    );
    assert_run_time_values_and_steps_took_effect(&demo, &first);

    // Without --reuse an existing cluster is refused, naming the fix.
    let (code, stderr) = demo.up(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--reuse"), "{stderr}");

    // Nothing changed: nothing is rebuilt or loaded again.
    let (code, stderr) = demo.up(&["--reuse"]);
    assert_eq!(code, 0, "warm kprov up failed:\n{stderr}");
    let warm = demo.latest_record();
    for (id, outcome) in outcomes(&warm) {
        if id.starts_with("build:")
            || id.starts_with("pull:")
            || id.starts_with("load:")
            || id == "cluster:create"
        {
            assert_eq!(outcome, "cached", "{id} was not cached on the warm run");
        }
    }
    assert!(
        warm["makespan_ms"].as_u64() < first["makespan_ms"].as_u64(),
        "warm {} vs cold {}",
        warm["makespan_ms"],
        first["makespan_ms"]
    );

    let status = demo
        .kprov()
        .args(["status", "--service", "demo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for workload in [
        "Deployment   api",
        "Deployment   worker",
        "StatefulSet  store",
        "Job          migrations",
    ] {
        assert!(text.contains(workload), "status lacks {workload}:\n{text}");
    }
    assert!(!text.contains("not ready"), "{text}");

    let down = demo
        .kprov()
        .args(["down", "--service", "demo"])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        demo.node_containers().is_empty(),
        "down left {:?}",
        demo.node_containers()
    );
}

/// What the demo's `runtime:` values and `steps:` did, checked with kubectl (on the sandbox's
/// API double, which serves TokenRequest, /status and webhook configurations as a real server).
fn assert_run_time_values_and_steps_took_effect(demo: &Demo, record: &serde_json::Value) {
    let ids: Vec<String> = outcomes(record).into_iter().map(|(id, _)| id).collect();
    for id in [
        "value:schema-version",
        "value:api-uid",
        "value:api-token",
        "step:seed-widgets",
        "step:activate-widgets",
        "step:register-webhook",
        "step:call-api",
        "step:restart-worker",
        "step:smoke",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} ran: {ids:?}");
    }
    let ns = ["-n", "kprov-demo"];
    let get = |what: &[&str], path: &str| {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&ns);
        let jsonpath = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &jsonpath]);
        demo.kubectl(&args)
    };
    // A custom resource seeded after the api was ready, its status set through /status.
    assert_eq!(
        get(
            &["widgets.demo.kprov.dev", "seeded-widget"],
            "{.status.phase}"
        ),
        "Active"
    );
    // A field of an applied object flowed into a later template.
    let uid = get(&["deployment", "api"], "{.metadata.uid}");
    assert!(!uid.is_empty());
    assert_eq!(
        get(
            &["widgets.demo.kprov.dev", "seeded-widget"],
            "{.metadata.annotations.demo\\.kprov\\.dev/api-uid}"
        ),
        uid
    );
    // A value from the migrations Job's log into a ConfigMap.
    assert_eq!(get(&["configmap", "schema"], "{.data.version}"), "3");
    // The webhook configuration carries kprov's CA, which is also on the host.
    let ca = get(&["configmap", "inter-service-ca"], "{.data.ca\\.crt}");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let bundle = demo.kubectl(&[
        "get",
        "validatingwebhookconfiguration",
        "demo-widget-deletions",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .expect("caBundle is base64");
    assert_eq!(String::from_utf8_lossy(&decoded).trim(), ca.trim());
    let ca_file = demo.dir.path().join(format!("{}-ca.pem", demo.cluster));
    let on_host = std::fs::read_to_string(&ca_file).unwrap();
    // The run record itself (the newest file in the state's runs/).
    let runs = demo.dir.path().join(".kprov/runs");
    let mut files: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.last().unwrap()).unwrap()).unwrap();
    assert_eq!(raw["run_id"], record["run_id"], "{files:?}");
    let record = &raw;
    assert_eq!(
        record["files"]["caFile"].as_str(),
        Some(ca_file.to_str().unwrap()),
        "the run record names the CA file"
    );
    let built = record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "build:api")
        .unwrap();
    assert_eq!(built["builder"], "buildkit", "{built}");
    assert_eq!(
        on_host.trim(),
        ca.trim(),
        "the CA file beside the kubeconfig"
    );
    // A labelled namespace, a certificate with its own Secret name, a restarted rollout.
    let label = demo.kubectl(&[
        "get",
        "namespace",
        "kprov-demo",
        "-o",
        "jsonpath={.metadata.labels.demo\\.kprov\\.dev/environment}",
    ]);
    assert_eq!(label, "e2e");
    assert_eq!(
        get(&["secret", "api-external-tls"], "{.type}"),
        "kubernetes.io/tls"
    );
    let restarted = get(
        &["deployment", "worker"],
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    );
    assert!(!restarted.is_empty(), "the worker's rollout was restarted");
}

/// `--reuse` after the migrations image changed: the Job's template is immutable, so kprov
/// deletes it (foreground) and creates it again, and says so.
#[test]
fn reuse_after_the_migrations_image_changed_recreates_the_job() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "demo-job");
    let (code, stderr) = demo.up(&[]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    let uid = |d: &Demo| {
        d.kubectl(&[
            "get",
            "job",
            "migrations",
            "-n",
            "kprov-demo",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
    };
    let before = uid(&demo);
    demo.edit_profile(|t| {
        let edited = t.replace(
            "      context: images/demo/migrate\n",
            "      context: images/demo/migrate\n      args: {SCHEMA: \"4\"}\n",
        );
        assert_ne!(
            edited, t,
            "the demo builds migrate from images/demo/migrate"
        );
        edited
    });
    // -v: the task's progress lines, where kprov says what it did to the Job.
    let (code, stderr) = demo.up(&["--reuse", "-v"]);
    assert_eq!(code, 0, "kprov up --reuse failed:\n{stderr}");
    assert!(
        stderr.contains("Job kprov-demo/migrations: spec.template cannot change in place: deleting it (foreground)"),
        "{stderr}"
    );
    assert_ne!(uid(&demo), before, "a new Job");
}

/// A manifest by URL, served on loopback: pinned by sha256, cached under the state dir, and
/// read from the cache once the server is gone; a wrong pin names both digests.
#[test]
fn a_remote_manifest_is_pinned_cached_and_applied_again_offline() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "demo-remote");
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-a-url\ndata:\n  k: v\n";
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    };
    let (url, serving) = serve_once(body);
    demo.edit_profile(|t| {
        t.replace(
            "\ncomponents:\n",
            &format!("\ncomponents:\n  remote:\n    manifests:\n      - {{url: \"{url}\", sha256: {digest}}}\n"),
        )
    });
    let (code, stderr) = demo.up(&[]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    assert!(serving.join().unwrap(), "kprov downloaded the manifest");
    assert_eq!(
        demo.kubectl(&[
            "get",
            "configmap",
            "from-a-url",
            "-n",
            "kprov-demo",
            "-o",
            "jsonpath={.data.k}"
        ]),
        "v"
    );
    // The server is gone: the second run reads the manifest from the cache.
    let (code, stderr) = demo.up(&["--reuse"]);
    assert_eq!(code, 0, "an offline kprov up --reuse failed:\n{stderr}");
    // A wrong pin: no cached text has it, and what the server sends does not match.
    let (other, serving) = serve_once(body);
    let wrong = "f".repeat(64);
    demo.edit_profile(|t| t.replace(&url, &other).replace(&digest, &wrong));
    let (code, stderr) = demo.up(&["--reuse"]);
    assert!(
        serving.join().unwrap(),
        "kprov asked the server again: {stderr}"
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("sha256:{wrong}")) && stderr.contains(&format!("sha256:{digest}")),
        "both digests are named: {stderr}"
    );
}

/// Serves `body` to one HTTP request on loopback, for at most a minute; returns its URL and
/// the serving thread, which says whether a request came.
fn serve_once(body: &'static str) -> (String, std::thread::JoinHandle<bool>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let serving = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let start = Instant::now();
        let mut sock = loop {
            match server.accept() {
                Ok((sock, _)) => break sock,
                Err(_) if start.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return false,
            }
        };
        sock.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).unwrap();
        true
    });
    (format!("http://127.0.0.1:{port}/extra.yaml"), serving)
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigint_during_up_exits_130_and_leaves_no_process_or_container() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "demo-sigint");
    let log = demo.dir.path().join("up.log");
    let mut child = demo
        .kprov()
        .args(["up", "--service", "demo", "--no-cache"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Interrupt once the cluster is being made and builds are running.
    wait_for(
        "the cluster's node container",
        Duration::from_secs(120),
        || !demo.node_containers().is_empty(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc_kill(child.id() as i32, 2) }, 0);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(60),
            "kprov did not exit after SIGINT:\n{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = read(&log);
    assert_eq!(status.code(), Some(130), "{stderr}");
    // A cluster this run finished creating is deleted, and kprov says so; one cancelled
    // half-way is removed by the cluster task itself.
    if !stderr.contains(&format!("create cluster {}: cancelled", demo.cluster)) {
        assert!(
            stderr.contains(&format!("deleted cluster {}", demo.cluster)),
            "{stderr}"
        );
    }
    assert!(
        demo.node_containers().is_empty(),
        "containers left: {:?}\n{stderr}",
        demo.node_containers()
    );
    let procs = processes_mentioning(&demo.cluster);
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn coverage_mode_instruments_the_worker_and_collect_copies_coverdata_out_of_the_node() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "demo-cover");
    let (code, stderr) = demo.up(&["--coverage"]);
    assert_eq!(code, 0, "kprov up --coverage failed:\n{stderr}");

    // The coverdata directory is the node's /coverdata (kind extraMount), writable by all.
    let coverdata = demo.dir.path().join(".kprov/coverdata/demo");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&coverdata).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o777, "coverdata is {mode:o}");
    // What an instrumented binary writes when it exits: written inside the node.
    let node = format!("{}-control-plane", demo.cluster);
    common::run_ok(common::docker(&host).args([
        "exec",
        &node,
        "sh",
        "-c",
        "echo meta > /coverdata/covmeta.0123 && echo counters > /coverdata/covcounters.0123",
    ]));
    assert!(
        coverdata.join("covmeta.0123").is_file(),
        "the extraMount does not reach the host directory"
    );

    let out = demo.dir.path().join("collected");
    let run = demo
        .kprov()
        .args(["coverage", "--service", "demo", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(text.contains("scaled Deployment worker to 0"), "{text}");
    assert!(
        !text.contains("Deployment api"),
        "api is not instrumented:\n{text}"
    );
    assert!(text.contains("copied 2 file(s)"), "{text}");
    assert_eq!(
        std::fs::read_to_string(out.join("covmeta.0123")).unwrap(),
        "meta\n"
    );
}

/// `--image KEY=REF` (kubernaut's CI artefact mode): an image already in the engine replaces
/// KEY's build, is streamed into the node and is what the Deployment runs; a missing one, or a
/// key the profile lacks, stops `up` before anything is created.
#[test]
fn a_prebuilt_image_replaces_its_build_and_a_missing_one_stops_before_anything_starts() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "prebuilt");
    let stand_in = format!("localhost/kprov-test/stand-in-api:{}", demo.cluster);
    let tag = common::docker(&host)
        .args(["tag", common::BASE_IMAGE, &stand_in])
        .status()
        .unwrap();
    assert!(tag.success());
    struct Untag(String, String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = common::docker(&self.0).args(["rmi", &self.1]).output();
        }
    }
    let _untag = Untag(host.clone(), stand_in.clone());

    let missing = format!("api=localhost/kprov-test/absent:{}", demo.cluster);
    let (code, stderr) = demo.up(&["--image", &missing]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the engine has no image localhost/kprov-test/absent")
            && stderr.contains("nothing was started"),
        "{stderr}"
    );
    let (code, stderr) = demo.up(&["--image", "apii=x:1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the profile has no image apii"), "{stderr}");
    assert!(
        demo.node_containers().is_empty(),
        "{:?}",
        demo.node_containers()
    );

    let arg = format!("api={stand_in}");
    let (code, stderr) = demo.up(&["--image", &arg]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    let record = demo.latest_record();
    let ids: Vec<(String, String)> = outcomes(&record);
    assert!(
        ids.contains(&("image:api".into(), "cached".into())),
        "{ids:?}"
    );
    assert!(ids.iter().all(|(id, _)| id != "build:api"), "{ids:?}");
    assert!(ids.iter().any(|(id, _)| id == "build:worker"), "{ids:?}");
    let image = demo.kubectl(&[
        "get",
        "deployment",
        "api",
        "-n",
        "kprov-demo",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, stand_in);
}

/// Two environments on one host at once (a CI job running two suites): two `kprov up` of
/// different services and clusters, started together and sharing one kubeconfig file, one state directory
/// and one lock directory, both succeed; each has its own context, host ports, run record and
/// logs, and taking one down leaves the other up.
#[test]
fn two_environments_come_up_at_once_sharing_state_and_kubeconfig_without_colliding() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let a = Demo::new(&host, "twin-a");
    let b = Demo::new(&host, "twin-b");
    // b is another service: its profile is the demo's under another name.
    let profiles = b.dir.path().join("profiles");
    let text = read(&profiles.join("demo.yaml")).replacen("service: demo\n", "service: twin\n", 1);
    assert!(text.contains("service: twin\n"));
    std::fs::write(profiles.join("twin.yaml"), text).unwrap();
    std::fs::remove_file(profiles.join("demo.yaml")).unwrap();
    // b runs in a's world: a's kubeconfig, state and locks, its own profile (cluster name).
    let in_a = |demo: &Demo| {
        let mut c = demo.kprov();
        c.env("KUBECONFIG", a.kubeconfig())
            .env("KPROV_LOCK_DIR", a.dir.path().join("locks"))
            .env("KPROV_STATE", a.dir.path().join(".kprov"));
        c
    };
    let started = [(&a, "demo"), (&b, "twin")].map(|(d, service)| {
        in_a(d)
            .args(["up", "--service", service])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    });
    for (child, demo) in started.into_iter().zip([&a, &b]) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            demo.cluster,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let contexts = common::run_ok(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(a.kubeconfig())
            .args(["config", "get-contexts", "-o", "name"]),
    );
    for d in [&a, &b] {
        assert!(
            contexts.contains(&format!("kind-{}", d.cluster)),
            "{contexts}"
        );
    }
    let records: Vec<serde_json::Value> = std::fs::read_dir(a.dir.path().join(".kprov/runs"))
        .unwrap()
        .map(|e| serde_json::from_str(&read(&e.unwrap().path())).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "one record per run");
    let services: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["demo", "twin"].into_iter().collect());
    let ids: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    // Each cluster published its own host port for the api NodePort.
    let port = |d: &Demo| {
        common::run_ok(common::docker(&host).args([
            "port",
            &format!("{}-control-plane", d.cluster),
            "30980/tcp",
        ]))
    };
    assert_ne!(port(&a), port(&b));
    // Each kept its own CA file beside the shared kubeconfig.
    let ca = |d: &Demo| read(&a.dir.path().join(format!("{}-ca.pem", d.cluster)));
    assert_ne!(ca(&a), ca(&b));
    let down = in_a(&a)
        .args(["down", "--cluster", &a.cluster])
        .output()
        .unwrap();
    assert!(down.status.success());
    assert!(a.node_containers().is_empty());
    assert_eq!(
        b.node_containers(),
        vec![format!("{}-control-plane", b.cluster)]
    );
}

/// Removes the images a test's demo built (they carry its cluster name in a label) on drop.
struct DemoImages {
    host: String,
    label: String,
}

impl DemoImages {
    /// Gives every image the demo builds the labels that make it this test's own: its build
    /// inputs, and so its tag and ID, are then unique to the test.
    fn unique_to(demo: &Demo) -> DemoImages {
        let label = format!("io.kprov.test.repository={}", demo.cluster);
        // scripts/test sweeps what its run leaked by this label.
        let run = std::env::var(common::TEST_RUN_ENV)
            .map(|r| format!(", {}: \"{r}\"", common::TEST_RUN_LABEL))
            .unwrap_or_default();
        demo.edit_profile(|t| {
            let mut edited = t.clone();
            for image in ["api", "worker", "migrate"] {
                let context = format!("      context: images/demo/{image}\n");
                assert!(edited.contains(&context), "the demo builds {image}");
                edited = edited.replace(
                    &context,
                    &format!(
                        "{context}      labels: {{io.kprov.test: \"true\", io.kprov.test.repository: {}{run}}}\n",
                        demo.cluster
                    ),
                );
            }
            edited
        });
        DemoImages {
            host: demo.host.clone(),
            label,
        }
    }

    fn ids(&self) -> Vec<String> {
        let out = common::run_ok(common::docker(&self.host).args([
            "image",
            "ls",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label={}", self.label),
        ]));
        let mut ids: Vec<String> = out.lines().map(str::to_string).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Removes them from the engine, as a fresh CI runner lacks them.
    fn remove(&self) {
        let ids = self.ids();
        if !ids.is_empty() {
            common::run_ok(
                common::docker(&self.host)
                    .args(["image", "rm", "--force"])
                    .args(&ids),
            );
        }
    }
}

impl Drop for DemoImages {
    fn drop(&mut self) {
        if let Ok(ids) = std::panic::catch_unwind(|| self.ids())
            && !ids.is_empty()
        {
            let _ = common::docker(&self.host)
                .args(["image", "rm", "--force"])
                .args(&ids)
                .output();
        }
    }
}

/// The run record file itself (`kprov profile --format json` is a report of it).
fn raw_record(demo: &Demo, run_id: &str) -> serde_json::Value {
    let path = demo.dir.path().join(format!(".kprov/runs/{run_id}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// CI on fresh runners (kubernaut runs each service's suite as its own job): the first run
/// builds and saves every image into `--image-cache DIR`; then the cluster is deleted and the
/// images are removed from the engine, and the second run (a new cluster, `KPROV_IMAGE_CACHE`)
/// builds nothing: every build task is `restored`, and the demo comes up on the sandbox
/// (Kubernetes API double).
#[test]
fn a_cold_engine_restores_every_build_from_the_image_cache_and_the_demo_comes_up() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let demo = Demo::new(&host, "demo-image-cache");
    let images = DemoImages::unique_to(&demo);
    let cache = demo.dir.path().join("image-cache");

    let (code, stderr) = demo.up(&["--image-cache", cache.to_str().unwrap()]);
    assert_eq!(code, 0, "kprov up failed:\n{stderr}");
    let first = demo.latest_record();
    let builds: Vec<(String, String)> = outcomes(&first)
        .into_iter()
        .filter(|(id, _)| id.starts_with("build:"))
        .collect();
    assert_eq!(builds.len(), 3, "{builds:?}");
    assert!(builds.iter().all(|(_, o)| o == "succeeded"), "{builds:?}");
    let saved = raw_record(&demo, first["run_id"].as_str().unwrap())["image_cache"]["saved"]
        .as_array()
        .unwrap()
        .clone();
    let mut saved_images: Vec<&str> = saved.iter().map(|s| s["image"].as_str().unwrap()).collect();
    saved_images.sort();
    assert_eq!(saved_images, ["api", "migrate", "worker"], "{saved:?}");
    assert!(
        stderr.contains("image cache ") && stderr.contains(": saved "),
        "{stderr}"
    );
    let mut archives: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    archives.sort();
    let mut expected: Vec<String> = saved
        .iter()
        .map(|s| format!("{}.tar", s["inputs"].as_str().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(archives, expected, "one archive per content hash");

    // `kprov cache key` (a CI cache key) hashes exactly what the archives are named by.
    let key_of = |extra: &[&str]| {
        let out = demo
            .kprov()
            .args(["cache", "key", "--service", "demo"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr,
        )
    };
    let (key, per_image) = key_of(&[]);
    assert_eq!(key.len(), 64, "{key}");
    for s in &saved {
        let line = format!(
            "{} sha256:{}",
            s["image"].as_str().unwrap(),
            s["inputs"].as_str().unwrap()
        );
        assert!(per_image.contains(&line), "{line} not in:\n{per_image}");
    }
    assert_eq!(key_of(&[]).0, key, "the same inputs, the same key");
    assert_ne!(
        key_of(&["--coverage"]).0,
        key,
        "the worker's coverage build is another input"
    );

    // A fresh machine: no cluster, none of the demo's built images.
    let down = demo
        .kprov()
        .args(["down", "--service", "demo"])
        .output()
        .unwrap();
    assert!(down.status.success());
    images.remove();
    assert!(images.ids().is_empty());

    let out = demo
        .kprov()
        .args(["up", "--service", "demo"])
        .env("KPROV_IMAGE_CACHE", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "restored kprov up failed:\n{stderr}"
    );
    assert!(stderr.contains(" 3 restored, "), "{stderr}");
    let second = demo.latest_record();
    for (id, outcome) in outcomes(&second) {
        if id.starts_with("build:") {
            assert_eq!(outcome, "restored", "{id} was built, not restored");
        } else if id.starts_with("load:") || id == "cluster:create" {
            assert_eq!(outcome, "succeeded", "{id} on a new cluster");
        }
    }
    let run_id = second["run_id"].as_str().unwrap();
    let logs = demo.dir.path().join(".kprov/logs").join(run_id);
    let build_logs: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("build-"))
        .collect();
    assert!(build_logs.is_empty(), "something was built: {build_logs:?}");
    assert!(
        raw_record(&demo, run_id)["image_cache"]["saved"].is_null(),
        "nothing new to save"
    );
    assert_eq!(images.ids().len(), 3, "the three images are back");
    // `kprov profile`'s table of every task (the Markdown report's).
    let profile = demo
        .kprov()
        .args(["profile", "--format", "markdown"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&profile.stdout);
    assert!(
        text.lines()
            // The outcome, and the builder that made the archived image.
            .any(|l| l.contains("build:api") && l.contains("| restored (")),
        "{text}"
    );
    // The environment is up, running the restored images.
    let image = demo.kubectl(&[
        "get",
        "deployment",
        "api",
        "-n",
        "kprov-demo",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    let api = saved.iter().find(|s| s["image"] == "api").unwrap();
    let tag = format!("kprov-{}", &api["inputs"].as_str().unwrap()[..12]);
    assert!(image.ends_with(&tag), "{image} is not the restored {tag}");
}

/// kind and kprov on two engines is refused before anything starts, naming both and the fix:
/// here KIND_EXPERIMENTAL_PROVIDER=podman while kprov's engine is Docker.
#[test]
fn a_kind_provider_other_than_the_engine_is_refused_before_anything_starts() {
    let host = require_docker!();
    provider_mismatch_is_refused(&host, "provider_mismatch", "podman", "docker");
}

/// The other way round: KIND_EXPERIMENTAL_PROVIDER=docker while DOCKER_HOST is Podman.
#[test]
fn a_docker_kind_provider_is_refused_when_the_engine_is_podman() {
    let host = require_podman!();
    provider_mismatch_is_refused(&host, "podman_provider_mismatch", "docker", "podman");
}

fn provider_mismatch_is_refused(host: &str, test: &str, provider: &str, engine: &str) {
    let demo = Demo::new(host, test);
    let out = demo
        .kprov()
        .env("KIND_EXPERIMENTAL_PROVIDER", provider)
        .args(["up", "--service", "demo"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let said = format!(
        "KIND_EXPERIMENTAL_PROVIDER is {provider}, but kprov's engine at {host} is {engine}"
    );
    assert!(stderr.contains(&said), "{stderr}");
    assert!(
        stderr.contains("Unset KIND_EXPERIMENTAL_PROVIDER"),
        "{stderr}"
    );
    assert!(
        demo.node_containers().is_empty(),
        "{:?}",
        demo.node_containers()
    );
    assert!(
        !demo.dir.path().join(".kprov/runs").exists(),
        "a refused run leaves no record"
    );
}

/// The demo on Podman (`scripts/podman-up`): builds by Podman's builder, nodes and loads on
/// Podman, kind being the kind double (told `KIND_EXPERIMENTAL_PROVIDER=podman`, which it
/// checks against the engine); a warm re-run is cached. Against the API double, as every sandbox run.
#[test]
fn the_demo_comes_up_on_podman_and_a_warm_rerun_is_cached() {
    let host = require_podman!();
    common::ensure_sandbox_image(&host);
    let demo = Demo::new(&host, "podman-demo");

    let (code, stderr) = demo.up(&[]);
    assert_eq!(code, 0, "kprov up on Podman failed:\n{stderr}");
    let first = demo.latest_record();
    assert!(
        outcomes(&first)
            .iter()
            .all(|(_, o)| o == "succeeded" || o == "cached"),
        "{first:#}"
    );
    // The run record itself (the JSON report leaves the builder out).
    let run_id = first["run_id"].as_str().unwrap();
    let record: serde_json::Value = serde_json::from_str(&read(
        &demo.dir.path().join(format!(".kprov/runs/{run_id}.json")),
    ))
    .unwrap();
    assert_eq!(record["host"]["engine"], "podman", "{:#}", record["host"]);
    let builds: Vec<&serde_json::Value> = record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"].as_str().unwrap().starts_with("build:"))
        .collect();
    assert!(!builds.is_empty());
    for t in &builds {
        assert_eq!(t["builder"], "podman", "{t:#}");
    }
    let text = demo.kprov().args(["profile"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("engine podman 4."), "{text}");
    assert!(text.contains("builders: podman (build:"), "{text}");

    let (code, stderr) = demo.up(&["--reuse"]);
    assert_eq!(code, 0, "warm kprov up on Podman failed:\n{stderr}");
    for (id, outcome) in outcomes(&demo.latest_record()) {
        if id.starts_with("build:") || id.starts_with("load:") || id == "cluster:create" {
            assert_eq!(outcome, "cached", "{id} was not cached on the warm run");
        }
    }
}

/// A profile of config alone (no image): an image pull Secret from a host file given to the
/// `default` ServiceAccount of its namespace, and three run-time values, two of them exported.
fn host_file_profile(cluster: &str) -> String {
    const PROFILE: &str = r#"service: demo
namespace: kprov-hostfiles
cluster:
  name: CLUSTER
  nodes: [{role: control-plane}]
config:
  namespaces: [kprov-hostfiles, jobs]
  configMaps:
    - {name: greeting, data: {text: hello}}
  secrets:
    - name: registry-login
      namespace: jobs
      type: kubernetes.io/dockerconfigjson
      files: {.dockerconfigjson: ~/.config/containers/auth.json}
      optional: true
      serviceAccounts: [default]
runtime:
  greeting:
    key: {kind: ConfigMap, name: greeting, key: text}
    export: true
  greeting-uid:
    field: {apiVersion: v1, kind: ConfigMap, name: greeting, path: .metadata.uid}
    export: true
  root-ca-uid:
    field: {apiVersion: v1, kind: ConfigMap, name: kube-root-ca.crt, path: .metadata.uid}
"#;
    PROFILE.replace("CLUSTER", cluster)
}

/// `config.secrets` from a host file outside --source, present then absent, and
/// `--export-values`, end to end on the sandbox (the Kubernetes API double, which validates an
/// image pull Secret's JSON as the apiserver does).
#[test]
fn a_host_file_secret_is_applied_or_skipped_and_exported_values_reach_the_caller() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;
    let host = require_docker!();
    common::ensure_sandbox_image(&host);
    let demo = Demo::new(&host, "hostfile");
    demo.edit_profile(|_| host_file_profile(&demo.cluster));
    let home = demo.dir.path().join("home");
    let auth_dir = home.join(".config/containers");
    std::fs::create_dir_all(&auth_dir).unwrap();
    let login = br#"{"auths": {"quay.io": {"auth": "a3Byb3Y6aHVudGVyMg=="}}}"#;
    std::fs::write(auth_dir.join("auth.json"), login).unwrap();
    let values = demo.dir.path().join("out/values.json");
    std::fs::create_dir_all(values.parent().unwrap()).unwrap();
    let up = |extra: &[&str]| {
        let out = demo
            .kprov()
            .env("HOME", &home)
            .args(["up", "--service", "demo", "--export-values"])
            .arg(&values)
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("a3Byb3Y6aHVudGVyMg"),
            "the login was printed:\n{text}"
        );
        (out.status.code().unwrap_or(-1), text)
    };

    // Present: the Secret holds the file's bytes and the ServiceAccount names it.
    let (code, text) = up(&[]);
    assert_eq!(code, 0, "{text}");
    let data = demo.kubectl(&[
        "get",
        "secret",
        "registry-login",
        "-n",
        "jobs",
        "-o",
        "jsonpath={.type} {.data.\\.dockerconfigjson}",
    ]);
    let (type_, b64) = data.split_once(' ').unwrap();
    assert_eq!(type_, "kubernetes.io/dockerconfigjson");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        login
    );
    let pull = demo.kubectl(&[
        "get",
        "serviceaccount",
        "default",
        "-n",
        "jobs",
        "-o",
        "jsonpath={.imagePullSecrets[*].name}",
    ]);
    assert_eq!(pull, "registry-login");
    // The exported values and only those, 0600, named (not shown) by kprov up.
    let mode = std::fs::metadata(&values).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&values).unwrap()).unwrap();
    let uid = demo.kubectl(&[
        "get",
        "configmap",
        "greeting",
        "-n",
        "kprov-hostfiles",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(
        exported,
        serde_json::json!({"greeting": "hello", "greeting-uid": uid})
    );
    assert!(
        text.contains("values: 2 exported to") && !text.contains(&uid),
        "{text}"
    );
    // The run record has the host file by digest, and the values file by path.
    let record = demo.latest_record();
    let raw = raw_record(&demo, record["run_id"].as_str().unwrap());
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(login)));
    assert_eq!(raw["host_files"][0]["sha256"], digest.as_str(), "{raw:#}");
    assert_eq!(raw["host_files"][0]["outcome"], "read");
    assert_eq!(raw["files"]["exportedValues"], values.to_str().unwrap());
    assert!(!raw.to_string().contains("a3Byb3Y6aHVudGVyMg"));

    // Absent, on a new cluster: no Secret, no link, and every report says it was skipped.
    std::fs::remove_file(auth_dir.join("auth.json")).unwrap();
    common::run_ok(demo.kprov().args(["down", "--service", "demo"]));
    let skipped = "config.secrets.registry-login (jobs): skipped: ~/.config/containers/auth.json does not exist (optional: true)";
    let plan = demo
        .kprov()
        .env("HOME", &home)
        .args(["plan", "--service", "demo"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&plan.stdout).contains(&format!("note: {skipped}")));
    let (code, text) = up(&["-v"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("note: {skipped}")), "{text}");
    assert!(
        text.contains(&format!("apply:config: {skipped}")),
        "apply:config says so:\n{text}"
    );
    let secrets = demo.kubectl(&["get", "secrets", "-n", "jobs", "-o", "name"]);
    assert!(!secrets.contains("registry-login"), "{secrets}");
    let pull = demo.kubectl(&[
        "get",
        "serviceaccount",
        "default",
        "-n",
        "jobs",
        "-o",
        "jsonpath={.imagePullSecrets}",
    ]);
    assert_eq!(pull, "");
    let raw = raw_record(&demo, demo.latest_record()["run_id"].as_str().unwrap());
    assert_eq!(raw["host_files"][0]["outcome"], "absent: Secret skipped");
    assert!(raw["host_files"][0].get("sha256").is_none());

    // A failed run leaves no values file, not even the last run's.
    assert!(values.is_file());
    demo.edit_profile(|p| p + "  missing:\n    key: {kind: ConfigMap, name: nowhere, key: k}\n    timeout: 2s\n    export: true\n");
    let (code, text) = up(&["--reuse"]);
    assert_eq!(code, 1, "{text}");
    assert!(!values.exists(), "a failed run left {}", values.display());
}
