//! Loading the demo's four images into three nodes, through a registry and by streaming,
//! side by side in one run: `cargo bench --bench registry` (needs an engine:
//! `eval "$(scripts/docker-up)"`, and kprov/registry from scripts/prepare-registry).
//!
//! Each repetition gets fresh nodes (kprov/node: real containerd, a control plane and two
//! workers on the `kind` network) and, for the registry path, a fresh registry (Debian's
//! docker-registry, kprov/registry), so nothing is already there:
//! - streaming: kprov's `load:` of each image in turn (one export feeds the three nodes at
//!   once), until every node holds every image; and the four loads at once, as the task engine
//!   starts them (imports into a node then take turns: kprov holds one import per node);
//! - registry: kprov's `push:` of each image in turn, then every node pulls them through
//!   its containerd with a hosts.toml pointing `localhost:PORT` at the registry (what kind's
//!   local-registry guide sets up, and what the kubelets do: nodes at once, each node's pulls
//!   one after another, as `serializeImagePulls` has it), until every node holds every image.
//!
//! The demo's images are small (busybox-sized): these figures are the fixed costs of each
//! path. `KPROV_BENCH_REPS` (default 3) repeats; every repetition is printed, ratios compare
//! medians. Everything made here is removed at the end, also when a step panics.

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)] // the test helpers' macro is for tests
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kprov::adapters::docker::Engine;
use kprov::engine::TaskCtx;
use kprov::tasks::build::{BuildRequest, BuiltImage, build_image};
use kprov::tasks::load::{LoadOptions, load_image_with};
use kprov::tasks::registry::{LocalRegistry, push};
use tokio_util::sync::CancellationToken;

const REGISTRY_IMAGE: &str = "kprov/registry:latest";
const BENCH_LABEL: &str = "io.kprov.bench";

fn main() {
    let Some(host) = common::docker_host() else {
        eprintln!(
            "skipping the registry benchmark: no Docker engine (run eval \"$(scripts/docker-up)\")"
        );
        return;
    };
    common::ensure_test_images(&host);
    if !common::image_exists(&host, REGISTRY_IMAGE) {
        common::run_ok(
            Command::new(common::repo_root().join("scripts/prepare-registry"))
                .env("DOCKER_HOST", &host)
                .stdin(Stdio::null()),
        );
    }
    let _ = common::docker(&host)
        .args(["network", "create", "kind"])
        .output();
    let reps: usize = std::env::var("KPROV_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let run_id = std::process::id().to_string();
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
        .expect("connect to the engine");
    let work = tempfile::tempdir().unwrap();
    let images = rt.block_on(demo_images(&engine, work.path(), &run_id));
    println!(
        "registry benchmark: the demo's {} images into 3 nodes, {reps} repetition(s)\n",
        images.len()
    );

    let (mut streamed, mut at_once) = (Vec::new(), Vec::new());
    let (mut pushed, mut delivered) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let nodes = three_nodes(&host, "bench-stream");
        let start = Instant::now();
        for (_, image) in &images {
            let opts = LoadOptions::default();
            rt.block_on(load_image_with(&engine, nodes.name(), image, &opts, &ctx()))
                .unwrap_or_else(|e| panic!("load {}: {}", image.reference, e.message));
        }
        streamed.push(start.elapsed());
        drop(nodes);

        let nodes = three_nodes(&host, "bench-stream-at-once");
        let start = Instant::now();
        rt.block_on(futures::future::join_all(images.iter().map(
            |(_, image)| async {
                let opts = LoadOptions::default();
                load_image_with(&engine, nodes.name(), image, &opts, &ctx())
                    .await
                    .unwrap_or_else(|e| panic!("load {}: {}", image.reference, e.message))
            },
        )));
        at_once.push(start.elapsed());
        drop(nodes);

        let nodes = three_nodes(&host, "bench-pull");
        let registry = Registry::start(&host, &run_id, rep);
        registry.wire(&nodes);
        let local = LocalRegistry {
            push_host: registry.address(),
            pull_host: registry.address(),
        };
        let start = Instant::now();
        let refs: Vec<String> = images
            .iter()
            .map(|(name, image)| {
                let (pulled, _) = rt
                    .block_on(push(&engine, &local, name, image, &ctx()))
                    .unwrap_or_else(|e| panic!("push {}: {}", image.reference, e.message));
                pulled.reference
            })
            .collect();
        pushed.push(start.elapsed());
        rt.block_on(pull_everywhere(&engine, nodes.nodes(), &refs));
        delivered.push(start.elapsed());
        println!(
            "  repetition {}: streamed {} (at once {}), pushed {} + pulled by 3 nodes {}",
            rep + 1,
            secs(streamed[rep]),
            secs(at_once[rep]),
            secs(pushed[rep]),
            secs(delivered[rep] - pushed[rep])
        );
    }
    let (s, p, d) = (median(&streamed), median(&pushed), median(&delivered));
    println!();
    let rows = [
        (
            "streaming: each load in turn (kprov load:)",
            secs_list(&streamed),
        ),
        ("streaming: the four loads at once", secs_list(&at_once)),
        ("registry: push once (kprov push:)", secs_list(&pushed)),
        ("registry: push, then 3 nodes pull", secs_list(&delivered)),
        (
            "  ratio registry (push + pulls) / streaming",
            format!("{:.2}", d / s),
        ),
        ("  ratio push alone / streaming", format!("{:.2}", p / s)),
    ];
    for (what, figure) in rows {
        println!("{what:<48} {figure}");
    }
}

/// The demo's images: its three builds (kprov's build, cached after the first run) and its
/// third-party image.
async fn demo_images(engine: &Engine, work: &Path, run_id: &str) -> Vec<(String, BuiltImage)> {
    let root = common::repo_root();
    let mut out = Vec::new();
    for (name, args) in [
        ("api", BTreeMap::new()),
        ("migrate", BTreeMap::new()),
        (
            "worker",
            BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        ),
    ] {
        let context = root.join("images/demo").join(name);
        let req = BuildRequest {
            image: name.to_string(),
            repository: format!("localhost/kprov-bench/{name}"),
            dockerfile: context.join("Dockerfile"),
            context,
            target: None,
            args,
            labels: BTreeMap::from([(BENCH_LABEL.to_string(), run_id.to_string())]),
            coverage: false,
            no_cache: false,
            log_dir: work.join("logs"),
        };
        let (image, _) = build_image(engine, &req, &ctx())
            .await
            .unwrap_or_else(|e| panic!("build {name}: {}", e.message));
        out.push((name.to_string(), image));
    }
    let base = engine
        .inspect_image(common::BASE_IMAGE)
        .await
        .unwrap()
        .expect("kprov/base is built by scripts/images");
    out.push((
        "store".to_string(),
        BuiltImage {
            reference: common::BASE_IMAGE.to_string(),
            id: base.id,
            builder: None,
        },
    ));
    out
}

/// A control plane and two workers on the `kind` network.
fn three_nodes(host: &str, name: &str) -> common::TestCluster {
    common::TestCluster::start_with(
        host,
        name,
        common::ClusterSpec {
            workers: 2,
            extra_run_args: vec!["--network".into(), "kind".into()],
            ..Default::default()
        },
    )
}

/// Every node pulls every reference: nodes at once, each node's pulls one after another.
async fn pull_everywhere(engine: &Engine, nodes: &[String], refs: &[String]) {
    let cancel = CancellationToken::new();
    futures::future::join_all(nodes.iter().map(|node| {
        let cancel = cancel.clone();
        async move {
            for r in refs {
                let cmd = [
                    "ctr",
                    "-n",
                    "k8s.io",
                    "images",
                    "pull",
                    "--hosts-dir",
                    "/etc/containerd/certs.d",
                    "--snapshotter",
                    common::NODE_SNAPSHOTTER,
                    r,
                ];
                let out = engine.exec(node, &cmd, &cancel).await.unwrap();
                assert!(out.success(), "{node}: pull {r}: {}", out.tail(3));
            }
        }
    }))
    .await;
}

/// A registry container of one repetition, published on a free loopback port.
struct Registry {
    host: String,
    name: String,
    port: u16,
}

impl Registry {
    fn start(host: &str, run_id: &str, rep: usize) -> Registry {
        let name = format!("kp-bench-registry-{run_id}-{rep}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        common::run_ok(common::docker(host).args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "kind",
            "--label",
            &format!("{BENCH_LABEL}={run_id}"),
            "-p",
            &format!("127.0.0.1:{port}:5000"),
            REGISTRY_IMAGE,
        ]));
        let r = Registry {
            host: host.to_string(),
            name,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !r.answers() {
            assert!(
                Instant::now() < deadline,
                "the registry {} did not answer",
                r.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    fn address(&self) -> String {
        format!("localhost:{}", self.port)
    }

    fn answers(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
        let mut head = [0u8; 12];
        tcp.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_ok()
            && tcp.read_exact(&mut head).is_ok()
            && head.ends_with(b" 200")
    }

    /// kind's guide: each node's containerd sends `localhost:PORT` to the registry container.
    fn wire(&self, nodes: &common::TestCluster) {
        let dir = format!("/etc/containerd/certs.d/{}", self.address());
        let toml = format!(
            "server = \"http://{0}:5000\"\n\n[host.\"http://{0}:5000\"]\n",
            self.name
        );
        for node in nodes.nodes() {
            nodes.exec(
                node,
                &[
                    "sh",
                    "-c",
                    &format!("mkdir -p '{dir}' && printf '%s' '{toml}' > '{dir}/hosts.toml'"),
                ],
            );
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = common::docker(&self.host)
            .args(["rm", "-f", "-v", &self.name])
            .output();
        // The push tagged the images for this registry: untag them.
        let out = common::docker(&self.host)
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        let listed = out
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let prefix = format!("{}/", self.address());
        let tags: Vec<&str> = listed.lines().filter(|l| l.starts_with(&prefix)).collect();
        if !tags.is_empty() {
            let _ = common::docker(&self.host).arg("rmi").args(&tags).output();
        }
    }
}

/// Removes what this run labelled (images, registries) even after a panic.
struct Cleanup {
    host: String,
    run_id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={BENCH_LABEL}={}", self.run_id);
        for what in [["ps", "-aq"], ["images", "-q"]] {
            let out = common::docker(&self.host)
                .args(what)
                .args(["--filter", &filter])
                .output();
            let ids = out
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if ids.is_empty() {
                continue;
            }
            let rm = if what[0] == "ps" {
                ["rm", "-f"]
            } else {
                ["rmi", "-f"]
            };
            let _ = common::docker(&self.host).args(rm).args(&ids).output();
        }
    }
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

fn median(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn secs_list(v: &[Duration]) -> String {
    let all: Vec<String> = v.iter().map(|d| secs(*d)).collect();
    format!("median {:.2}s ({})", median(v), all.join(", "))
}
