//! kube-double: an in-memory Kubernetes API **double** for kprov's tests. It is not a
//! kube-apiserver and never ships inside kprov; it runs inside a sandbox node container
//! (`scripts/sandbox`) so kprov and kubectl see something shaped exactly like a Kind cluster.
//!
//! What it serves, over TLS on `:6443` with a CA it generates at start:
//! - `/version`, `/healthz`, `/readyz`, `/livez`;
//! - legacy discovery: `/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`
//!   (core, apps, batch, rbac, apiextensions and a few more, plus every group an Established
//!   CRD adds);
//! - resources, namespaced and cluster-scoped: GET, LIST (label and field selectors), WATCH
//!   (`?watch=1`, resourceVersion, bookmarks, `sendInitialEvents`, 410 Gone when too old),
//!   POST, PUT, DELETE (finalizers, namespaces Terminating then emptied), PATCH (server-side
//!   apply with field managers and conflicts, JSON merge, strategic merge approximated, JSON
//!   patch); subresources `status`, `scale`, `pods/log`; server-side `Table` printing;
//! - a simulated control plane: CRDs become Established, Deployments/ReplicaSets/StatefulSets/
//!   Jobs create pods whose status and events explain their progress; NodePort Services answer
//!   HTTP inside the node (200 once a Ready pod backs them);
//! - failure injection: missing images (`ErrImageNeverPull`, checked with the node's real
//!   `ctr`), `double.kprov.dev/crash`, `double.kprov.dev/progress-deadline-exceeded`, and API
//!   faults through `POST /double/faults`.
//!
//! At start it writes `/etc/kubernetes/admin.conf` (as kubeadm does on a kind node) and the
//! CA/serving certificates under `/etc/kubernetes/pki/`.
//!
//! Environment (durations take `ms`, `s`, `m` suffixes; a bare number is milliseconds):
//! - `KUBE_DOUBLE_LISTEN` (default `0.0.0.0:6443`), `KUBE_DOUBLE_CLUSTER` (default: the
//!   hostname without `-control-plane`), `KUBE_DOUBLE_NODES` (comma-separated node names; the
//!   first is the node the double runs in; default: the hostname), `KUBE_DOUBLE_SANS` (extra
//!   certificate names), `KUBE_DOUBLE_ADMIN_CONF`, `KUBE_DOUBLE_PKI_DIR`;
//! - `KUBE_DOUBLE_CRD_DELAY_MS` (300), `KUBE_DOUBLE_NS_TERMINATE_MS` (1000), `KUBE_DOUBLE_POD_START_MS` (200),
//!   `KUBE_DOUBLE_READY_MS` (500), `KUBE_DOUBLE_JOB_COMPLETE_MS` (800),
//!   `KUBE_DOUBLE_CRASH_INTERVAL_MS` (1000), `KUBE_DOUBLE_TICK_MS` (100);
//! - `KUBE_DOUBLE_CTR` (default `ctr`), `KUBE_DOUBLE_IMAGE_CHECK` (`on`, or `off` to treat
//!   every image as present), `KUBE_DOUBLE_VERBOSE=1` (log every request).
//!
//! Per-object annotations (on the workload or its pod template) override the delays and
//! script failures: `double.kprov.dev/ready-after`, `double.kprov.dev/start-after`,
//! `double.kprov.dev/complete-after`, `double.kprov.dev/crash: "<log text>"`,
//! `double.kprov.dev/logs: "<log text>"`, `double.kprov.dev/progress-deadline-exceeded: "true"`,
//! `double.kprov.dev/skip-image-check: "true"`.

mod admission;
mod agent;
mod certs;
mod controller;
mod errors;
mod faults;
mod http;
mod images;
mod nodeports;
mod ops;
mod patch;
mod registry;
mod schema;
mod selector;
mod store;
mod table;
mod token;
mod util;
mod validation;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::util::env_ms;

pub struct Config {
    pub cluster: String,
    pub hostname: String,
    /// Node names; the first is the control-plane node the double runs in (pods go there).
    pub nodes: Vec<String>,
    pub listen: SocketAddr,
    pub advertise_ip: String,
    pub admin_conf: PathBuf,
    pub pki_dir: PathBuf,
    pub sans: Vec<String>,
    pub crd_delay: Duration,
    /// How long a deleted namespace stays Terminating at least (once it is empty).
    pub ns_terminate: Duration,
    pub pod_start: Duration,
    pub ready_after: Duration,
    pub job_complete: Duration,
    pub crash_interval: Duration,
    pub tick: Duration,
    pub bookmark_interval: Duration,
    pub ctr: String,
    pub containerd: String,
    pub image_check: bool,
    pub history: usize,
    pub verbose: bool,
}

impl Config {
    /// The commands the kubelet's image work runs in this node.
    pub fn image_tools(&self) -> images::Tools {
        images::Tools {
            ctr: self.ctr.clone(),
            containerd: self.containerd.clone(),
        }
    }
}

pub struct Shared {
    pub store: Mutex<store::Store>,
    pub config: Config,
    pub faults: Mutex<Vec<faults::Fault>>,
    pub sim: Mutex<controller::Sim>,
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "kube-double".into())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

async fn own_ips(hostname: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = tokio::net::lookup_host((hostname, 0))
        .await
        .map(|addrs| {
            addrs
                .map(|a| a.ip())
                .filter(|ip| !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

async fn load_config() -> Result<Config, String> {
    let hostname = hostname();
    let cluster = std::env::var("KUBE_DOUBLE_CLUSTER")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            hostname
                .strip_suffix("-control-plane")
                .unwrap_or("kind")
                .to_string()
        });
    let nodes: Vec<String> = env_or("KUBE_DOUBLE_NODES", &hostname)
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let listen: SocketAddr = env_or("KUBE_DOUBLE_LISTEN", "0.0.0.0:6443")
        .parse()
        .map_err(|e| format!("parse KUBE_DOUBLE_LISTEN: {e}"))?;
    let ips = own_ips(&hostname).await;
    let advertise_ip = ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let mut sans: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sans.push(hostname.clone());
    sans.push(format!("{cluster}-control-plane"));
    sans.extend(ips.iter().map(IpAddr::to_string));
    sans.extend(
        env_or("KUBE_DOUBLE_SANS", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    sans.sort();
    sans.dedup();
    Ok(Config {
        cluster,
        hostname,
        nodes,
        listen,
        advertise_ip,
        admin_conf: env_or("KUBE_DOUBLE_ADMIN_CONF", "/etc/kubernetes/admin.conf").into(),
        pki_dir: env_or("KUBE_DOUBLE_PKI_DIR", "/etc/kubernetes/pki").into(),
        sans,
        crd_delay: env_ms("KUBE_DOUBLE_CRD_DELAY_MS", 300),
        ns_terminate: env_ms("KUBE_DOUBLE_NS_TERMINATE_MS", 1000),
        pod_start: env_ms("KUBE_DOUBLE_POD_START_MS", 200),
        ready_after: env_ms("KUBE_DOUBLE_READY_MS", 500),
        job_complete: env_ms("KUBE_DOUBLE_JOB_COMPLETE_MS", 800),
        crash_interval: env_ms("KUBE_DOUBLE_CRASH_INTERVAL_MS", 1000),
        tick: env_ms("KUBE_DOUBLE_TICK_MS", 100).max(Duration::from_millis(10)),
        bookmark_interval: env_ms("KUBE_DOUBLE_BOOKMARK_MS", 10_000),
        ctr: env_or("KUBE_DOUBLE_CTR", "ctr"),
        containerd: env_or("KUBE_DOUBLE_CONTAINERD", "containerd"),
        image_check: env_or("KUBE_DOUBLE_IMAGE_CHECK", "on") != "off",
        history: env_or("KUBE_DOUBLE_HISTORY", "20000")
            .parse()
            .unwrap_or(20_000),
        verbose: env_or("KUBE_DOUBLE_VERBOSE", "0") == "1",
    })
}

const USAGE: &str =
    "kube-double: an in-memory Kubernetes API double for kprov's tests (not a real apiserver).
Usage: kube-double            (configured by KUBE_DOUBLE_* environment variables)
       kube-double --node-agent   (on a worker node: its images, for the double; port 10250)
See tests/kube-double/README.md for the API surface, the annotations and the fault endpoint.";

#[tokio::main]
async fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let result = if std::env::args().skip(1).any(|a| a == "--node-agent") {
        node_agent().await
    } else {
        run().await
    };
    if let Err(e) = result {
        eprintln!("kube-double: error: failed to {e}");
        std::process::exit(1);
    }
}

/// `--node-agent`: this node's image list and pulls, for the double on the control plane.
async fn node_agent() -> Result<(), String> {
    let listen: SocketAddr = env_or(
        "KUBE_DOUBLE_AGENT_LISTEN",
        &format!("0.0.0.0:{}", agent::PORT),
    )
    .parse()
    .map_err(|e| format!("parse KUBE_DOUBLE_AGENT_LISTEN: {e}"))?;
    let tools = images::Tools {
        ctr: env_or("KUBE_DOUBLE_CTR", "ctr"),
        containerd: env_or("KUBE_DOUBLE_CONTAINERD", "containerd"),
    };
    agent::serve(listen, tools).await
}

async fn run() -> Result<(), String> {
    let config = load_config().await?;
    let pki =
        certs::Pki::generate(&config.sans).map_err(|e| format!("generate certificates: {e}"))?;
    let server = format!("https://{}-control-plane:6443", config.cluster);
    if let Some(dir) = config.admin_conf.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(&config.admin_conf, pki.admin_conf(&config.cluster, &server))
        .map_err(|e| format!("write {}: {e}", config.admin_conf.display()))?;
    pki.write_pki(&config.pki_dir)
        .map_err(|e| format!("write {}: {e}", config.pki_dir.display()))?;
    let tls = TlsAcceptor::from(Arc::new(pki.server_config()?));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", config.listen))?;
    eprintln!(
        "kube-double: serving the Kubernetes API double for cluster {:?} on https://{} (nodes: {}; certificate names: {})",
        config.cluster,
        config.listen,
        config.nodes.join(", "),
        config.sans.join(", ")
    );
    let shared = Arc::new(Shared {
        store: Mutex::new(store::Store::new(config.history)),
        config,
        faults: Mutex::new(vec![]),
        sim: Mutex::new(controller::Sim::default()),
    });
    controller::seed(&shared).await;
    tokio::spawn(controller::run(shared.clone()));
    tokio::spawn(nodeports::run(shared.clone()));

    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kube-double: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    if shared.config.verbose {
                        eprintln!("kube-double: TLS handshake with {peer} failed: {e}");
                    }
                    return;
                }
            };
            let service = service_fn(move |req| http::handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
