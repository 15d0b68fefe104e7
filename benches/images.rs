//! Image benchmarks against the real Docker engine and containerd node containers:
//! `cargo bench --bench images` (needs an engine: `eval "$(scripts/docker-up)"`).
//!
//! Prints, side by side in one run:
//! - four independent I/O-bound builds (each `RUN sleep 2`, daemon cache off) one after
//!   another vs all at once, and the ratio (target ≤ 0.5);
//! - a ~200 MB image (kprov/base + 200 MB of random bytes made at bench time): kprov's build
//!   cold and cached; kprov's load into one node and into three nodes (target: three ≤ 1.3×
//!   one) vs kind's shell pipeline `docker save IMG | docker exec -i NODE ctr -n k8s.io images
//!   import --snapshotter native -` once per node (one after another, as a loop would, and
//!   all at once); containerd's own share (`ctr import` of the archive already inside the
//!   node, one node and three at once): the floor every loader shares on this machine; a warm
//!   re-run (build + load with nothing changed);
//! - peak RSS of the process doing kprov's load (target < 64 MB): each kprov load runs in a
//!   child process (this binary re-run with `KPROV_BENCH_CHILD=load`), which reports its own
//!   `VmHWM` from /proc/self/status: the whole process's peak, runtime and connection pool
//!   included, not a delta.
//!
//! `KPROV_BENCH_REPS` (default 3) repeats each measurement; every repetition is printed and
//! ratios compare medians. kprov and the shell pipeline alternate within a repetition, so
//! background load on the machine hits both alike.
//! Everything made here (images labelled `io.kprov.bench=<run>`, node containers, temp dirs)
//! is removed at the end, also when a step panics.

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)] // the test helpers' macro is for tests
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kprov::adapters::docker::Engine;
use kprov::engine::{Done, TaskCtx};
use kprov::tasks::build::{BuildRequest, BuiltImage, build_image};
use kprov::tasks::load::{LoadOptions, load_image_with, normalize_image_name};
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "KPROV_BENCH_CHILD";
const BENCH_LABEL: &str = "io.kprov.bench";
const BLOB_BYTES: usize = 200_000_000;
const RESULT_PREFIX: &str = "KPROV_BENCH_RESULT ";

fn main() {
    if std::env::var(CHILD_ENV).is_ok_and(|m| m == "load") {
        child_load();
        return;
    }
    let Some(host) = common::docker_host() else {
        eprintln!(
            "skipping the images benchmark: no Docker engine (run eval \"$(scripts/docker-up)\")"
        );
        return;
    };
    common::ensure_test_images(&host);
    let reps: usize = std::env::var("KPROV_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let run_id = format!("{}", std::process::id());
    let _cleanup = Cleanup {
        host: host.clone(),
        run_id: run_id.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = rt
        .block_on(Engine::connect_to(&host))
        .expect("failed to connect to the engine");
    let version = rt.block_on(engine.version()).unwrap_or_default();
    println!(
        "images benchmark: engine {version} (API {}) at {host}, {reps} repetition(s)\n",
        engine.api_version()
    );

    let work = tempfile::tempdir().expect("failed to create a temp dir");
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Four I/O-bound builds: sequential vs concurrent.
    let requests: Vec<BuildRequest> = (0..4)
        .map(|i| sleep_build(work.path(), &run_id, i))
        .collect();
    let mut seq = Vec::new();
    let mut par = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        for req in &requests {
            rt.block_on(build(&engine, req));
        }
        seq.push(start.elapsed());
        let start = Instant::now();
        rt.block_on(futures::future::join_all(
            requests.iter().map(|req| build(&engine, req)),
        ));
        par.push(start.elapsed());
    }
    let (s, p) = (median(&seq), median(&par));
    rows.push((
        "4 builds (RUN sleep 2), one after another".into(),
        secs_list(&seq),
    ));
    rows.push((
        "4 builds (RUN sleep 2), all at once".into(),
        secs_list(&par),
    ));
    rows.push((
        "  ratio at once / sequential (target ≤ 0.50)".into(),
        format!("{:.2} {}", p / s, verdict(p / s <= 0.5)),
    ));

    // 2. The 200 MB image.
    let big_ctx = work.path().join("big");
    std::fs::create_dir_all(&big_ctx).unwrap();
    write_random(
        &big_ctx.join("blob.bin"),
        BLOB_BYTES,
        std::process::id() as u64,
    );
    std::fs::write(
        big_ctx.join("Dockerfile"),
        "FROM kprov/base:latest\nCOPY blob.bin /blob.bin\n",
    )
    .unwrap();
    let mut big_req = request(work.path(), &run_id, "big", &big_ctx);
    big_req.no_cache = true;
    let start = Instant::now();
    let image = rt.block_on(build(&engine, &big_req));
    let cold = start.elapsed();
    big_req.no_cache = false;
    let start = Instant::now();
    let (again, done) = rt
        .block_on(build_image(&engine, &big_req, &ctx()))
        .expect("the cached build failed");
    let cached = start.elapsed();
    assert_eq!(
        (done, &again),
        (Done::Cached, &image),
        "an unchanged 200 MB build must be cached"
    );
    let archive = docker_save_size(&host, &image.reference);
    println!(
        "200 MB image {} ({}), docker save archive {:.0} MB\n",
        image.reference,
        &image.id[..19],
        archive as f64 / 1e6
    );
    rows.push((
        "build 200 MB image, cold (hash + tar + daemon)".into(),
        secs(cold),
    ));
    rows.push((
        "build 200 MB image again, nothing changed".into(),
        secs(cached),
    ));

    let mut one = Vec::new();
    let mut three = Vec::new();
    let mut shell_one = Vec::new();
    let mut shell_three_seq = Vec::new();
    let mut shell_three_par = Vec::new();
    let mut floor_one = Vec::new();
    let mut floor_three = Vec::new();
    let mut warm = Vec::new();
    let mut peak_kb = 0u64;
    let mut baseline_kb = 0u64;
    // For the containerd floor: the archive is placed in the nodes beforehand (not timed).
    let archive_path = work.path().join("image.tar");
    common::run_ok(
        common::docker(&host)
            .args(["save", "-o"])
            .arg(&archive_path)
            .arg(&image.reference),
    );
    for rep in 0..reps {
        eprintln!("load repetition {}/{reps}", rep + 1);
        // kprov and the shell pipeline alternate, so background noise hits both alike.
        {
            let cluster = common::TestCluster::start(&host, "bench_load_one");
            let r = child(&host, cluster.name(), &image);
            verify(&cluster, &image);
            one.push(r.elapsed);
            peak_kb = peak_kb.max(r.peak_kb);
            baseline_kb = baseline_kb.max(r.baseline_kb);
        }
        {
            let cluster = common::TestCluster::start(&host, "bench_shell_one");
            let start = Instant::now();
            shell_pipeline(&host, &cluster.nodes()[0], &image.reference).wait_ok();
            shell_one.push(start.elapsed());
            verify(&cluster, &image);
        }
        {
            let cluster = common::TestCluster::with_workers(&host, "bench_load_three", 2);
            let r = child(&host, cluster.name(), &image);
            verify(&cluster, &image);
            three.push(r.elapsed);
            peak_kb = peak_kb.max(r.peak_kb);
            baseline_kb = baseline_kb.max(r.baseline_kb);
            // Warm re-run: nothing changed, so nothing is built and nothing is loaded.
            let start = Instant::now();
            let (_, built) = rt.block_on(build_image(&engine, &big_req, &ctx())).unwrap();
            let r = child(&host, cluster.name(), &image);
            warm.push(start.elapsed());
            assert_eq!(built, Done::Cached);
            assert!(r.cached, "a second load must find the image on every node");
        }
        {
            let cluster = common::TestCluster::with_workers(&host, "bench_shell_three", 2);
            let start = Instant::now();
            for node in cluster.nodes() {
                shell_pipeline(&host, node, &image.reference).wait_ok();
            }
            shell_three_seq.push(start.elapsed());
            verify(&cluster, &image);
        }
        {
            let cluster = common::TestCluster::with_workers(&host, "bench_shell_three_par", 2);
            let start = Instant::now();
            let children: Vec<Pipeline> = cluster
                .nodes()
                .iter()
                .map(|n| shell_pipeline(&host, n, &image.reference))
                .collect();
            children.into_iter().for_each(Pipeline::wait_ok);
            shell_three_par.push(start.elapsed());
            verify(&cluster, &image);
        }
        {
            let cluster = common::TestCluster::with_workers(&host, "bench_floor", 2);
            for node in cluster.nodes() {
                common::run_ok(
                    cluster
                        .docker()
                        .arg("cp")
                        .arg(&archive_path)
                        .arg(format!("{node}:/var/image.tar")),
                );
            }
            let start = Instant::now();
            file_import(&host, &cluster.nodes()[0]).wait_ok();
            floor_one.push(start.elapsed());
            let start = Instant::now();
            let children: Vec<Pipeline> = cluster.nodes()[1..]
                .iter()
                .chain(std::iter::once(&cluster.nodes()[0]))
                .map(|n| file_import(&host, n))
                .collect();
            children.into_iter().for_each(Pipeline::wait_ok);
            floor_three.push(start.elapsed());
        }
    }
    let (o, t) = (median(&one), median(&three));
    rows.push(("load 200 MB: kprov, 1 node".into(), secs_list(&one)));
    rows.push((
        "load 200 MB: kprov, 3 nodes (one export)".into(),
        secs_list(&three),
    ));
    rows.push((
        "  ratio 3 nodes / 1 node (target ≤ 1.30)".into(),
        format!("{:.2} {}", t / o, verdict(t / o <= 1.3)),
    ));
    rows.push((
        "load 200 MB: shell pipeline, 1 node".into(),
        secs_list(&shell_one),
    ));
    rows.push((
        "load 200 MB: shell pipeline, 3 nodes one after another".into(),
        secs_list(&shell_three_seq),
    ));
    rows.push((
        "load 200 MB: shell pipeline, 3 nodes at once".into(),
        secs_list(&shell_three_par),
    ));
    let (s1, s3, s3p) = (
        median(&shell_one),
        median(&shell_three_seq),
        median(&shell_three_par),
    );
    rows.push((
        "  kprov / shell, 1 node (target ≤ 1.00)".into(),
        format!("{:.2} {}", o / s1, verdict(o <= s1)),
    ));
    rows.push((
        "  kprov / shell, 3 nodes (vs one after another | at once)".into(),
        format!("{:.2} | {:.2} {}", t / s3, t / s3p, verdict(t <= s3)),
    ));
    rows.push((
        "containerd alone (tar already in the node), 1 node".into(),
        secs_list(&floor_one),
    ));
    rows.push((
        "containerd alone (tar already in the nodes), 3 at once".into(),
        secs_list(&floor_three),
    ));
    rows.push((
        "  ratio 3 / 1: the floor any loader shares".into(),
        format!("{:.2}", median(&floor_three) / median(&floor_one)),
    ));
    rows.push((
        "warm re-run: build + load, nothing changed (3 nodes)".into(),
        secs_list(&warm),
    ));
    rows.push((
        "peak RSS of the loading process (VmHWM, whole process)".into(),
        format!(
            "{:.1} MB {}",
            peak_kb as f64 / 1024.0,
            verdict(peak_kb < 64 * 1024)
        ),
    ));
    rows.push((
        "  of which before the load (runtime + connection)".into(),
        format!("{:.1} MB", baseline_kb as f64 / 1024.0),
    ));

    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!(
        "{:width$}  seconds per repetition; ratios compare medians",
        "measurement"
    );
    println!("{}", "-".repeat(width + 40));
    for (k, v) in &rows {
        println!("{k:width$}  {v}");
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// The median in seconds (the mean of the middle two for an even count).
fn median(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn secs_list(v: &[Duration]) -> String {
    v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join("  ")
}

fn ctx() -> TaskCtx {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    TaskCtx::new(
        Arc::from("bench"),
        1,
        CancellationToken::new(),
        tx,
        tokio::time::Instant::now(),
    )
}

fn request(work: &Path, run_id: &str, name: &str, context: &Path) -> BuildRequest {
    BuildRequest {
        image: name.to_string(),
        repository: format!("localhost/kprov-bench/{name}"),
        context: context.to_path_buf(),
        dockerfile: context.join("Dockerfile"),
        target: None,
        args: BTreeMap::new(),
        labels: BTreeMap::from([(BENCH_LABEL.to_string(), run_id.to_string())]),
        coverage: false,
        no_cache: false,
        log_dir: work.join("logs"),
    }
}

/// An I/O-bound build: 2 s of sleeping in a RUN step; the daemon's cache is off so every run
/// really runs it.
fn sleep_build(work: &Path, run_id: &str, i: usize) -> BuildRequest {
    let dir = work.join(format!("sleep{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("id.txt"), format!("{run_id}-{i}\n")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM kprov/base:latest\nCOPY id.txt /id.txt\nRUN sleep 2 && cat /id.txt\n",
    )
    .unwrap();
    let mut req = request(work, run_id, &format!("sleep{i}"), &dir);
    req.no_cache = true;
    req
}

async fn build(engine: &Engine, req: &BuildRequest) -> BuiltImage {
    match build_image(engine, req, &ctx()).await {
        Ok((image, _)) => image,
        Err(e) => panic!("failed to build {}: {}", req.image, e.message),
    }
}

/// Incompressible bytes from a xorshift generator, written in 1 MB chunks.
fn write_random(path: &Path, len: usize, seed: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len());
        file.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
}

fn docker_save_size(host: &str, reference: &str) -> u64 {
    let mut child = common::docker(host)
        .args(["save", reference])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let n = std::io::copy(&mut child.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
    assert!(child.wait().unwrap().success());
    n
}

fn verify(cluster: &common::TestCluster, image: &BuiltImage) {
    let name = normalize_image_name(&image.reference);
    for node in cluster.nodes() {
        let refs = cluster.node_images(node);
        assert!(
            refs.contains(&name),
            "{node} lacks {name} after the load: {refs:?}"
        );
    }
}

/// `ctr import` of the archive already inside the node: containerd's own share of a load.
fn file_import(host: &str, node: &str) -> Pipeline {
    let child = common::docker(host)
        .args(["exec", node, "ctr", "-n", "k8s.io", "images", "import"])
        .args(["--snapshotter", "native", "/var/image.tar"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to spawn docker exec");
    Pipeline {
        child,
        node: node.to_string(),
    }
}

/// kind's shell pipeline for one node.
struct Pipeline {
    child: std::process::Child,
    node: String,
}

fn shell_pipeline(host: &str, node: &str, reference: &str) -> Pipeline {
    let script = r#"set -o pipefail; docker save "$1" | docker exec -i "$2" ctr -n k8s.io images import --snapshotter native -"#;
    let child = Command::new("bash")
        .args(["-c", script, "pipeline", reference, node])
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to spawn the shell pipeline");
    Pipeline {
        child,
        node: node.to_string(),
    }
}

impl Pipeline {
    fn wait_ok(self) {
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "shell pipeline into {} failed: {}",
            self.node,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What a child load reports.
struct ChildResult {
    elapsed: Duration,
    peak_kb: u64,
    baseline_kb: u64,
    cached: bool,
}

/// Runs one kprov load in a child process (this binary, child mode) and reads its report.
fn child(host: &str, cluster: &str, image: &BuiltImage) -> ChildResult {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, "load")
        .env("DOCKER_HOST", host)
        .env("KPROV_BENCH_CLUSTER", cluster)
        .env("KPROV_BENCH_IMAGE", &image.reference)
        .env("KPROV_BENCH_IMAGE_ID", &image.id)
        .stdin(Stdio::null())
        .output()
        .expect("failed to run the child load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child load failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .expect("the child printed no result");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    ChildResult {
        elapsed: Duration::from_secs_f64(v["secs"].as_f64().unwrap()),
        peak_kb: v["vmhwm_kb"].as_u64().unwrap(),
        baseline_kb: v["baseline_kb"].as_u64().unwrap(),
        cached: v["cached"].as_bool().unwrap(),
    }
}

fn vmhwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child mode: connect, load, print elapsed time and this process's peak RSS.
fn child_load() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let (host, cluster) = (var("DOCKER_HOST"), var("KPROV_BENCH_CLUSTER"));
    let image = BuiltImage {
        reference: var("KPROV_BENCH_IMAGE"),
        id: var("KPROV_BENCH_IMAGE_ID"),
        builder: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = Engine::connect_to(&host).await.expect("failed to connect");
        let baseline = vmhwm_kb();
        let start = Instant::now();
        let report = load_image_with(&engine, &cluster, &image, &LoadOptions::default(), &ctx())
            .await
            .unwrap_or_else(|e| panic!("failed to load: {}", e.message));
        let elapsed = start.elapsed();
        println!(
            "{RESULT_PREFIX}{}",
            serde_json::json!({
                "secs": elapsed.as_secs_f64(),
                "vmhwm_kb": vmhwm_kb(),
                "baseline_kb": baseline,
                "cached": report.done() == Done::Cached,
                "exported": report.exported_bytes,
            })
        );
    });
}

/// Removes everything the run made, on every path.
struct Cleanup {
    host: String,
    run_id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={BENCH_LABEL}={}", self.run_id);
        let ids = common::docker(&self.host)
            .args(["image", "ls", "--quiet", "--no-trunc", "--filter", &filter])
            .output();
        if let Ok(out) = ids {
            let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            ids.sort();
            ids.dedup();
            if !ids.is_empty() {
                let _ = common::docker(&self.host)
                    .args(["image", "rm", "--force"])
                    .args(&ids)
                    .output();
            }
        }
    }
}
