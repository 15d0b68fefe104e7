//! A CI-cold `kprov up` of the demo, with a restored image cache and without one:
//! `cargo bench --bench image_cache` (needs an engine and the sandbox image:
//! `eval "$(scripts/docker-up)" && scripts/images && scripts/prepare-sandbox`).
//!
//! "CI-cold" is what a fresh runner sees: a new cluster, and none of the demo's built images
//! in the engine (they are removed before every run). The runs, alternated so background load
//! hits both alike, `KPROV_BENCH_REPS` (default 3) times each:
//! - **without a cache**: `kprov up --no-cache` (a fresh runner has no BuildKit cache either);
//! - **restored**: `kprov up --image-cache DIR`, DIR filled once before by
//!   `kprov up --no-cache --image-cache DIR` (also measured: the first run of a cache, which
//!   builds and saves).
//!
//! Two scenarios, side by side: the demo as it is (busybox COPYs: its builds are cheap and
//! overlap the cluster's creation), and the demo whose worker build has a step keeping one core
//! busy for `KPROV_BENCH_BUILD_SECONDS` (default 20; a stand-in for kubernaut's Go builds).
//! Each run's makespan (from its run record), the process's wall time (saving the cache
//! included) and when its last build task ended are printed, then medians and the ratios
//! restored / without.
//! Everything made here (images labelled `io.kprov.bench=<pid>`, clusters, temp dirs) is
//! removed at the end, also when a step panics.

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)] // the test helpers' macro is for tests
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH_LABEL: &str = "io.kprov.bench";

fn main() {
    let Some(host) = common::docker_host() else {
        eprintln!(
            "skipping the image cache benchmark: no Docker engine (run eval \"$(scripts/docker-up)\")"
        );
        return;
    };
    common::ensure_sandbox_image(&host);
    let env_num = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(default)
    };
    let reps = env_num("KPROV_BENCH_REPS", 3).max(1) as usize;
    let slow = env_num("KPROV_BENCH_BUILD_SECONDS", 20);
    println!(
        "image cache benchmark: the demo, CI-cold (new cluster, its images removed first), {reps} repetition(s)"
    );
    for (title, spin) in [
        (
            "the demo as it is (busybox COPYs: cheap builds)".to_string(),
            None,
        ),
        (
            format!(
                "the demo with a {slow}s CPU-bound step in the worker's build (a stand-in for a Go build)"
            ),
            Some(slow),
        ),
    ] {
        println!("\n{title}");
        let bench = Bench::new(&host, spin);
        print_rows(&scenario(&bench, reps));
    }
}

/// One scenario: a first run that fills the cache, then runs without and with it, alternated.
fn scenario(bench: &Bench, reps: usize) -> Vec<(String, String)> {
    let first = bench.cold(&["--no-cache", "--image-cache", bench.cache_arg()]);
    let cache_bytes: u64 = std::fs::read_dir(&bench.cache)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let (mut without, mut restored) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        without.push(bench.cold(&["--no-cache"]));
        restored.push(bench.cold(&["--image-cache", bench.cache_arg()]));
    }
    let list = |runs: &[Run], f: fn(&Run) -> Duration| {
        runs.iter()
            .map(|r| format!("{:.2}", f(r).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (mw, mr) = (
        median(&without, |r| r.makespan),
        median(&restored, |r| r.makespan),
    );
    let (ww, wr) = (median(&without, |r| r.wall), median(&restored, |r| r.wall));
    let (bw, br) = (
        median(&without, |r| r.builds),
        median(&restored, |r| r.builds),
    );
    vec![
        (
            "first run, empty cache (builds, saves): makespan / wall s".to_string(),
            format!(
                "{:.2} / {:.2}  ({} archives, {})",
                first.makespan.as_secs_f64(),
                first.wall.as_secs_f64(),
                first.outcomes.saved,
                kprov::tasks::image_cache::size(cache_bytes)
            ),
        ),
        (
            "without a cache (--no-cache): makespan s".into(),
            list(&without, |r| r.makespan),
        ),
        ("  wall s".into(), list(&without, |r| r.wall)),
        (
            "  last build task ended at s".into(),
            list(&without, |r| r.builds),
        ),
        (
            "restored (--image-cache DIR): makespan s".into(),
            list(&restored, |r| r.makespan),
        ),
        ("  wall s".into(), list(&restored, |r| r.wall)),
        (
            "  last build task ended at s".into(),
            list(&restored, |r| r.builds),
        ),
        (
            "medians, without / restored: makespan s".into(),
            format!("{mw:.2} / {mr:.2}"),
        ),
        ("  wall s".into(), format!("{ww:.2} / {wr:.2}")),
        (
            "  last build task ended at s".into(),
            format!("{bw:.2} / {br:.2}"),
        ),
        (
            "ratio restored / without: makespan, wall, builds".into(),
            format!("{:.2}, {:.2}, {:.2}", mr / mw, wr / ww, br / bw),
        ),
        (
            "build tasks per restored run: restored / built".into(),
            format!(
                "{} / {}",
                restored[0].outcomes.restored, restored[0].outcomes.built
            ),
        ),
    ]
}

fn print_rows(rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

/// The outcomes of a run's build tasks.
#[derive(Debug, Clone, Copy, Default)]
struct Outcomes {
    built: usize,
    restored: usize,
    saved: usize,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    makespan: Duration,
    wall: Duration,
    /// When the last build task ended (the builds' share of the run).
    builds: Duration,
    outcomes: Outcomes,
}

fn median(runs: &[Run], f: fn(&Run) -> Duration) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(|r| f(r).as_secs_f64()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The demo with its own cluster, images, state and cache directory.
struct Bench {
    host: String,
    cluster: String,
    label: String,
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Bench {
    /// `spin`: seconds of one busy core added to the worker's build (its context copied here).
    fn new(host: &str, spin: Option<u64>) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let cluster = common::unique_name("bench-image-cache");
        let label = format!("{BENCH_LABEL}={}", std::process::id());
        let root = common::repo_root();
        let mut text = std::fs::read_to_string(root.join("profiles/demo.yaml")).unwrap();
        text = text.replace(
            "cluster:\n  name: kprov-demo\n",
            &format!("cluster:\n  name: {cluster}\n"),
        );
        if let Some(secs) = spin {
            let worker = slow_worker(dir.path(), secs);
            text = text.replace(
                "      context: images/demo/worker\n",
                &format!("      context: {}\n", worker.display()),
            );
        }
        for image in ["api", "worker", "migrate"] {
            let at = text
                .lines()
                .find(|l| {
                    l.starts_with("      context: ")
                        && (l.ends_with(&format!("/{image}"))
                            || l.ends_with(&format!("/{image}-slow")))
                })
                .unwrap_or_else(|| panic!("the demo builds {image}"))
                .to_string();
            let labels = format!(
                "{at}\n      labels: {{{BENCH_LABEL}: \"{}\"}}",
                std::process::id()
            );
            text = text.replacen(&at, &labels, 1);
        }
        std::fs::create_dir(dir.path().join("profiles")).unwrap();
        std::fs::write(dir.path().join("profiles/demo.yaml"), text).unwrap();
        let cache = dir.path().join("image-cache");
        Bench {
            host: host.to_string(),
            cluster,
            label,
            dir,
            cache,
        }
    }

    fn cache_arg(&self) -> &str {
        self.cache.to_str().unwrap()
    }

    fn kprov(&self) -> Command {
        let root = common::repo_root();
        let mut c = Command::new(env!("CARGO_BIN_EXE_kprov"));
        c.current_dir(&root)
            .env("DOCKER_HOST", &self.host)
            .env("KPROV_KIND", root.join("tests/bin/kind"))
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KPROV_LOCK_DIR", self.dir.path().join("locks"))
            .env("KPROV_PROFILES", self.dir.path().join("profiles"))
            .env("KPROV_STATE", self.dir.path().join(".kprov"))
            .env("KPROV_SOURCE", &root)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env_remove("KPROV_IMAGE_CACHE")
            .env_remove("GITHUB_STEP_SUMMARY")
            .stdin(Stdio::null());
        c
    }

    /// Deletes the cluster and the demo's built images: what a fresh runner starts from.
    fn make_cold(&self) {
        let _ = self
            .kprov()
            .args(["down", "--cluster", &self.cluster])
            .output();
        remove_images(&self.host, &self.label);
    }

    /// One `kprov up` from cold, timed.
    fn cold(&self, extra: &[&str]) -> Run {
        self.make_cold();
        let start = Instant::now();
        let out = self
            .kprov()
            .args(["up", "--service", "demo"])
            .args(extra)
            .output()
            .unwrap();
        let wall = start.elapsed();
        assert!(
            out.status.success(),
            "kprov up {extra:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = latest_record(&self.dir.path().join(".kprov/runs"));
        let builds = || {
            record["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["id"].as_str().is_some_and(|i| i.starts_with("build:")))
        };
        let count = |o: &str| builds().filter(|t| t["outcome"] == o).count();
        let last_build = builds()
            .filter_map(|t| t["end_ms"].as_u64())
            .max()
            .unwrap_or(0);
        Run {
            makespan: Duration::from_millis(record["makespan_ms"].as_u64().unwrap()),
            wall,
            builds: Duration::from_millis(last_build),
            outcomes: Outcomes {
                built: count("succeeded"),
                restored: count("restored"),
                saved: record["image_cache"]["saved"]
                    .as_array()
                    .map_or(0, |s| s.len()),
            },
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.make_cold();
    }
}

/// The demo's worker context, copied under `dir` with a build step that keeps a core busy for
/// `secs` seconds (wall time, so the same on any machine).
fn slow_worker(dir: &Path, secs: u64) -> PathBuf {
    let from = common::repo_root().join("images/demo/worker");
    let to = dir.join("worker-slow");
    std::fs::create_dir_all(&to).unwrap();
    for f in ["Dockerfile", "worker.sh"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let dockerfile = std::fs::read_to_string(to.join("Dockerfile")).unwrap();
    let spin = format!(
        "RUN end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do :; done\nCOPY worker.sh"
    );
    assert!(dockerfile.contains("COPY worker.sh"));
    std::fs::write(
        to.join("Dockerfile"),
        dockerfile.replacen("COPY worker.sh", &spin, 1),
    )
    .unwrap();
    to
}

fn remove_images(host: &str, label: &str) {
    let out = common::docker(host)
        .args(["image", "ls", "--quiet", "--no-trunc", "--filter"])
        .arg(format!("label={label}"))
        .output()
        .unwrap();
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        let _ = common::docker(host)
            .args(["image", "rm", "--force"])
            .args(&ids)
            .output();
    }
}

fn latest_record(runs: &Path) -> serde_json::Value {
    let mut files: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    serde_json::from_str(&std::fs::read_to_string(files.last().unwrap()).unwrap()).unwrap()
}
