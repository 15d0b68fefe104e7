//! `kprov up` end to end against a sandbox cluster: real Docker builds, real image loads into
//! real containerd node containers, and the Kubernetes API double (tests/kube-double) behind
//! the kind CLI double (tests/bin/kind). The demo profile is used with a unique cluster name.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{repo_root, require_docker};

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
        let text = text.replace("name: kprov-demo", &format!("name: {cluster}"));
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
        let mut c = Command::new(env!("CARGO_BIN_EXE_kprov"));
        c.current_dir(repo_root())
            .env("DOCKER_HOST", &self.host)
            .env("KPROV_KIND", repo_root().join("tests/bin/kind"))
            .env("KUBECONFIG", self.kubeconfig())
            .env("KPROV_LOCK_DIR", self.dir.path().join("locks"))
            .env("KPROV_PROFILES", self.dir.path().join("profiles"))
            .env("KPROV_STATE", self.dir.path().join(".kprov"))
            .env("KPROV_SOURCE", repo_root())
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
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
