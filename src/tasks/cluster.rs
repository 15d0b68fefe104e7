//! The Kind cluster: created, reused, or an existing cluster kprov did not create; deleted.
//!
//! ```text
//! let req = ClusterRequest { name, spec, source, coverage_dir, reuse, kubeconfig, service };
//! let (info, done) = ensure_cluster(&engine, &req, &ctx).await?;   // Done::Cached on reuse
//! let info = existing_cluster(kubeconfig, context).await?;         // --kubeconfig/--context
//! delete_cluster(&engine, name).await?;                             // kprov down
//! ```
//!
//! - The kind config ([`kind_config`]) is generated from the profile's `cluster:`, or is the
//!   user's own kind config file patched as data (parsed, mounts and ports added, serialised):
//!   never edited as text. It goes to kind as JSON on stdin.
//! - Creation runs `kind create cluster --name N --config - [--image I] --wait 0s --kubeconfig P`
//!   (argv), retried up to 3 times (after 5 s, then 10 s) when kind's output holds the
//!   transient errors the seeds saw (`crun: unknown version specified`, `OCI runtime error`).
//! - A cluster exists when a container carries kind's label `io.x-k8s.kind.cluster=N`. It is
//!   reused only with `reuse`; otherwise the error names the fix. A reused cluster must have the
//!   mounts and port mappings this run asks for.
//! - The kubeconfig is kind's: `kind get kubeconfig --name N` (the server is kind's: the
//!   address and port Docker published 6443 on, of the load balancer in an HA cluster), its
//!   `kind-N` entries merged into `kubeconfig` under `<path>.lock`, mode 0600, through a
//!   symlinked path to its target. Without the CLI (reusing a cluster) it is made as kind makes
//!   it: the first control plane's `/etc/kubernetes/admin.conf`, the server from the published
//!   binding of the load balancer, else of the one control plane.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::adapters::docker::Engine;
use crate::adapters::kind::{self, CreateArgs, KindCli};
use crate::adapters::kube::Kube;
use crate::engine::{Done, TaskCtx, TaskError};
use crate::profile::model::{ClusterSpec, Mount, NodeSpec, PortMapping};

/// Where coverage data lands in every node (DD-TEST-007).
pub const COVERAGE_MOUNT: &str = "/coverdata";
/// Attempts of `kind create cluster` for the seeds' transient errors, and the waits between.
const CREATE_ATTEMPTS: usize = 3;
const CREATE_BACKOFF: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(10)];

/// The clusters this process ran `kind create` for (name → the kubeconfig kind was given),
/// until deleted. A run that fails after kind made its cluster — inspecting it, reading its
/// kubeconfig, connecting to it — or whose cluster task was dropped mid-way has no
/// [`ClusterInfo`], and still knows from here that the cluster is its own to clean up.
static CREATED: std::sync::Mutex<BTreeMap<String, PathBuf>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The kubeconfig kind was given for cluster `name` when this process created that cluster
/// (and has not deleted it since).
pub fn created_by_this_process(name: &str) -> Option<PathBuf> {
    CREATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

/// What `kprov up` asks of the cluster phase.
#[derive(Debug, Clone)]
pub struct ClusterRequest {
    /// The Kind cluster name (`kind-<name>` is the context).
    pub name: String,
    /// The profile's `cluster:` section.
    pub spec: ClusterSpec,
    /// `--source`: relative paths (the kind config file, the profile's mount host paths, the
    /// kind config's own host paths through `spec.workingDir`) resolve against it.
    pub source: PathBuf,
    /// With `--coverage`: this directory (created, mode 0777) is mounted at `/coverdata`.
    pub coverage_dir: Option<PathBuf>,
    /// Use a cluster of this name that already exists.
    pub reuse: bool,
    /// The kubeconfig file to write (see [`default_kubeconfig`] for kind's choice).
    pub kubeconfig: PathBuf,
    /// For the refusal's hint (`kprov down --service S`).
    pub service: Option<String>,
}

/// The cluster as the later phases need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    /// The kubeconfig context.
    pub context: String,
    pub kubeconfig: PathBuf,
    /// This run created it.
    pub created: bool,
    /// Node container names, control-plane first (API Node names in existing-cluster mode).
    pub nodes: Vec<String>,
    /// Container port → published host port, over all nodes (the API server's 6443 excluded).
    pub host_ports: BTreeMap<u16, u16>,
}

/// A cluster operation that failed outside a task (existing-cluster mode, `kprov down`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

/// The file kind writes when not told: the first existing of $KUBECONFIG's, or ~/.kube/config.
pub fn default_kubeconfig() -> PathBuf {
    kind::kubeconfig_path_for_merge(None)
}

/// `p` against `base`, cleaned as kind's `filepath.Abs` cleans it: `./coverdata` is
/// `<base>/coverdata`, `../x` leaves `base`.
fn resolve(base: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let mut out = base.to_path_buf();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn mount_value(source: &Path, m: &Mount) -> Value {
    let mut v = json!({
        "hostPath": resolve(source, &m.host_path).to_string_lossy(),
        "containerPath": m.container_path,
    });
    if m.read_only {
        v["readOnly"] = json!(true);
    }
    v
}

fn port_value(p: &PortMapping) -> Value {
    let mut v = json!({"containerPort": p.container_port, "hostPort": p.host_port});
    if let Some(a) = &p.listen_address {
        v["listenAddress"] = json!(a);
    }
    if let Some(proto) = &p.protocol {
        v["protocol"] = json!(proto);
    }
    v
}

/// Adds `items` to the array at `node[key]`: an entry with the same `id` field is replaced (this
/// run's value wins), others appended.
fn merge_into(node: &mut Map<String, Value>, key: &str, id: &str, items: &[Value]) {
    if items.is_empty() {
        return;
    }
    let list = node.entry(key).or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("array");
    for item in items {
        match list.iter_mut().find(|e| e.get(id) == item.get(id)) {
            Some(slot) => *slot = item.clone(),
            None => list.push(item.clone()),
        }
    }
}

/// The kind config for a request: generated from the profile, or the user's kind config file
/// (`spec.kindConfig`) parsed and patched with the profile's mounts and the coverage mount
/// (added to every node) and its ports (to the first control plane). The profile's relative
/// host paths resolve against `source`, the kind config's own against `spec.workingDir`.
pub fn kind_config(req: &ClusterRequest) -> Result<Value, ClusterError> {
    let spec = &req.spec;
    let mut mounts: Vec<Value> = spec
        .extra_mounts
        .iter()
        .map(|m| mount_value(&req.source, m))
        .collect();
    if let Some(dir) = &req.coverage_dir {
        mounts.push(json!({"hostPath": resolve(&req.source, &dir.to_string_lossy()).to_string_lossy(), "containerPath": COVERAGE_MOUNT}));
    }
    let ports: Vec<Value> = spec.extra_port_mappings.iter().map(port_value).collect();
    match &spec.kind_config {
        None => Ok(generated_config(req, &mounts, &ports)),
        Some(_) => patched_config(req, &mounts, ports),
    }
}

/// The kind config made from the profile's `cluster:` (no kind config file).
fn generated_config(req: &ClusterRequest, mounts: &[Value], ports: &[Value]) -> Value {
    let spec = &req.spec;
    let nodes = if spec.nodes.is_empty() {
        vec![NodeSpec {
            role: kind::CONTROL_PLANE.into(),
            ..Default::default()
        }]
    } else {
        spec.nodes.clone()
    };
    let first_cp = nodes.iter().position(|n| n.role == kind::CONTROL_PLANE);
    let nodes: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut node = Map::new();
            node.insert("role".into(), json!(n.role));
            if let Some(image) = n.image.as_ref().or(spec.node_image.as_ref()) {
                node.insert("image".into(), json!(image));
            }
            if !n.labels.is_empty() {
                node.insert("labels".into(), json!(n.labels));
            }
            let own: Vec<Value> = n
                .extra_mounts
                .iter()
                .map(|m| mount_value(&req.source, m))
                .collect();
            merge_into(&mut node, "extraMounts", "containerPath", &own);
            merge_into(&mut node, "extraMounts", "containerPath", mounts);
            let own: Vec<Value> = n.extra_port_mappings.iter().map(port_value).collect();
            merge_into(&mut node, "extraPortMappings", "containerPort", &own);
            // A host port can be published once: cluster-wide mappings go to one node.
            if Some(i) == first_cp {
                merge_into(&mut node, "extraPortMappings", "containerPort", ports);
            }
            Value::Object(node)
        })
        .collect();
    let mut config =
        json!({"kind": "Cluster", "apiVersion": kind::CONFIG_API_VERSION, "nodes": nodes});
    if !spec.kubeadm_config_patches.is_empty() {
        config["kubeadmConfigPatches"] = json!(spec.kubeadm_config_patches);
    }
    if !spec.containerd_config_patches.is_empty() {
        config["containerdConfigPatches"] = json!(spec.containerd_config_patches);
    }
    config
}

/// The user's kind config file (`spec.kindConfig`, under `source`), parsed and checked to be
/// a kind `Cluster`, with kind's default node when it lists none.
pub fn read_kind_config(source: &Path, spec: &ClusterSpec) -> Result<Option<Value>, ClusterError> {
    let Some(file) = &spec.kind_config else {
        return Ok(None);
    };
    let path = resolve(source, file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ClusterError(format!("read kind config {}: {e}", path.display())))?;
    let mut config: Value = serde_saphyr::from_str(&text)
        .map_err(|e| ClusterError(format!("parse kind config {}: {e}", path.display())))?;
    let what = |m: &str| ClusterError(format!("use kind config {}: {m}", path.display()));
    let root = config
        .as_object_mut()
        .ok_or_else(|| what("it is not a mapping"))?;
    match root.get("kind").and_then(Value::as_str) {
        Some("Cluster") => {}
        other => return Err(what(&format!("kind must be Cluster, found {other:?}"))),
    }
    if !root
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("kind.x-k8s.io/"))
    {
        return Err(what("apiVersion must be kind.x-k8s.io/v1alpha4"));
    }
    let nodes = root
        .entry("nodes")
        .or_insert_with(|| json!([{"role": kind::CONTROL_PLANE}]));
    let nodes = nodes
        .as_array_mut()
        .ok_or_else(|| what("nodes must be a list"))?;
    if nodes.is_empty() {
        nodes.push(json!({"role": kind::CONTROL_PLANE}));
    }
    if nodes.iter().any(|n| !n.is_object()) {
        return Err(what("every node must be a mapping"));
    }
    Ok(Some(config))
}

/// The host ports the user's kind config itself publishes, by container port (the NodePort):
/// its `extraPortMappings` with a `hostPort` other than 0. Empty without a kind config.
pub fn kind_config_host_ports(
    source: &Path,
    spec: &ClusterSpec,
) -> Result<BTreeMap<u16, u16>, ClusterError> {
    let Some(config) = read_kind_config(source, spec)? else {
        return Ok(BTreeMap::new());
    };
    Ok(mappings(&config)
        .filter_map(|m| {
            let port = |k: &str| {
                m.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
            };
            Some((
                port("containerPort")?,
                port("hostPort").filter(|h| *h != 0)?,
            ))
        })
        .collect())
}

/// Every `extraPortMappings` entry of every node of a kind config.
fn mappings(config: &Value) -> impl Iterator<Item = &Value> {
    config
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("extraPortMappings").and_then(Value::as_array))
        .flatten()
}

/// The user's kind config patched: its relative host paths made absolute against where kind
/// would have run (`spec.workingDir` under `source`), `mounts` added to every node, and of
/// `ports` those that do not give way to the file's own mapping added to the first control
/// plane; the node image and the config patches added.
fn patched_config(
    req: &ClusterRequest,
    mounts: &[Value],
    ports: Vec<Value>,
) -> Result<Value, ClusterError> {
    let spec = &req.spec;
    let mut config = read_kind_config(&req.source, spec)?.expect("a kind config file");
    // A NodePort the file already publishes keeps the file's mapping (the suite dials its
    // host port) unless the profile names a host port itself.
    let published: Vec<Value> = mappings(&config)
        .filter_map(|m| m.get("containerPort").cloned())
        .collect();
    let ports: Vec<Value> = ports
        .into_iter()
        .filter(|p| {
            let free = p.get("hostPort").and_then(Value::as_u64).unwrap_or(0) == 0;
            !(free
                && p.get("containerPort")
                    .is_some_and(|c| published.contains(c)))
        })
        .collect();
    let kind_dir = match &spec.working_dir {
        Some(dir) => resolve(&req.source, dir),
        None => req.source.clone(),
    };
    let root = config.as_object_mut().expect("checked");
    let nodes = root
        .get_mut("nodes")
        .and_then(Value::as_array_mut)
        .expect("checked");
    let mut first = true;
    for node in nodes.iter_mut() {
        let node = node.as_object_mut().expect("checked");
        // kind's default role is control-plane.
        let is_cp = node
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or(kind::CONTROL_PLANE)
            == kind::CONTROL_PLANE;
        if let Some(list) = node.get_mut("extraMounts").and_then(Value::as_array_mut) {
            for m in list {
                if let Some(h) = m.get("hostPath").and_then(Value::as_str) {
                    let abs = resolve(&kind_dir, h).to_string_lossy().into_owned();
                    m["hostPath"] = json!(abs);
                }
            }
        }
        // Mounts go to every node (a pod with a hostPath volume may run on any of them);
        // cluster-wide ports to the first control plane (a host port is published once).
        merge_into(node, "extraMounts", "containerPath", mounts);
        if is_cp && first {
            merge_into(node, "extraPortMappings", "containerPort", &ports);
            first = false;
        }
        if let Some(image) = &spec.node_image {
            node.entry("image").or_insert_with(|| json!(image));
        }
    }
    for (key, patches) in [
        ("kubeadmConfigPatches", &spec.kubeadm_config_patches),
        ("containerdConfigPatches", &spec.containerd_config_patches),
    ] {
        if !patches.is_empty() {
            let list = root.entry(key).or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.extend(patches.iter().map(|p| json!(p)));
            }
        }
    }
    Ok(config)
}

/// Creates the cluster (or reuses it, with `req.reuse`) and writes its kubeconfig.
/// kind is `$KPROV_KIND` (which must name the kind binary) or `kind` on PATH.
pub async fn ensure_cluster(
    engine: &Engine,
    req: &ClusterRequest,
    ctx: &TaskCtx,
) -> Result<(ClusterInfo, Done), TaskError> {
    let cli = KindCli::locate().map_err(|e| TaskError::fatal(e.to_string()))?;
    ensure_cluster_with(engine, req, ctx, cli).await
}

/// The provider kind must use for `engine` (`KIND_EXPERIMENTAL_PROVIDER=podman` on Podman), or
/// why the `KIND_EXPERIMENTAL_PROVIDER` kprov was given would put kind on another engine.
pub fn kind_provider(engine: &Engine) -> Result<Option<&'static str>, String> {
    let set = std::env::var(kind::PROVIDER_ENV).ok();
    kind::provider_for(engine.kind().as_str(), engine.host(), set.as_deref())
}

/// [`ensure_cluster`] with a given kind CLI (`None`: not installed).
pub async fn ensure_cluster_with(
    engine: &Engine,
    req: &ClusterRequest,
    ctx: &TaskCtx,
    kind_cli: Option<KindCli>,
) -> Result<(ClusterInfo, Done), TaskError> {
    let provider = kind_provider(engine).map_err(TaskError::fatal)?;
    let kind_cli = kind_cli.map(|c| c.with_provider(provider));
    kind::validate_cluster_name(&req.name).map_err(TaskError::fatal)?;
    let config = kind_config(req).map_err(|e| TaskError::fatal(e.0))?;
    let label = kind::cluster_label(&req.name);
    let existing = engine.list_containers(&[&label], true).await?;
    let done = if existing.is_empty() {
        if let Some(dir) = &req.coverage_dir {
            make_coverage_dir(&resolve(&req.source, &dir.to_string_lossy()))?;
        }
        make_mount_dirs(&config)?;
        let mut config = config.clone();
        choose_free_host_ports(&mut config)?;
        // Before kind runs: whatever fails from here on, the cluster is this run's to delete.
        CREATED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.name.clone(), req.kubeconfig.clone());
        create(engine, req, &config, ctx, kind_cli.as_ref()).await?;
        Done::Ran
    } else if !req.reuse {
        let names: Vec<&str> = existing.iter().map(|c| c.name.as_str()).collect();
        let down = match &req.service {
            Some(s) => format!("`kprov down --service {s}`"),
            None => format!("`kind delete cluster --name {}`", req.name),
        };
        return Err(TaskError::fatal(format!(
            "create cluster {}: it already exists (nodes: {}); pass --reuse to use it, or delete it first with {down}",
            req.name,
            names.join(", ")
        )));
    } else {
        if let Some(stopped) = existing.iter().find(|c| !c.running) {
            return Err(TaskError::fatal(format!(
                "reuse cluster {}: node {} is not running (start it with `docker start {}`, or delete the cluster)",
                req.name, stopped.name, stopped.name
            )));
        }
        ctx.progress(format!("reusing cluster {}", req.name));
        Done::Cached
    };
    let mut info = inspect_cluster(
        engine,
        &req.name,
        &req.kubeconfig,
        kind_cli.as_ref(),
        &ctx.cancel,
    )
    .await?;
    info.created = done == Done::Ran;
    if done == Done::Cached {
        check_reusable(engine, &config, &info).await?;
    }
    ctx.progress(format!(
        "kubeconfig {} (context {})",
        info.kubeconfig.display(),
        info.context
    ));
    Ok((info, done))
}

/// A new cluster's `hostPort: 0` mappings get a free loopback port each, so clusters made side
/// by side never collide; on reuse, 0 matches whatever the cluster was given.
fn choose_free_host_ports(config: &mut Value) -> Result<(), TaskError> {
    let mappings = config
        .get_mut("nodes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|n| n.get_mut("extraPortMappings").and_then(Value::as_array_mut))
        .flatten();
    for m in mappings {
        if m.get("hostPort").and_then(Value::as_u64).unwrap_or(0) == 0 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| TaskError::fatal(format!("find a free host port: {e}")))?
                .port();
            m["hostPort"] = json!(port);
        }
    }
    Ok(())
}

/// Creates each node mount's missing host directory, as kubernaut's setup does for its kind
/// configs' `./coverdata` (Docker would create it owned by root; Podman refuses to start).
/// A `/coverdata` mount is made writable by any user, like the coverage directory.
fn make_mount_dirs(config: &Value) -> Result<(), TaskError> {
    let mounts = config
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("extraMounts").and_then(Value::as_array))
        .flatten();
    for m in mounts {
        let Some(host) = m.get("hostPath").and_then(Value::as_str) else {
            continue;
        };
        let host = Path::new(host);
        if host.exists() {
            continue;
        }
        if m.get("containerPath").and_then(Value::as_str) == Some(COVERAGE_MOUNT) {
            make_coverage_dir(host)?;
        } else {
            std::fs::create_dir_all(host).map_err(|e| {
                TaskError::fatal(format!("create mount directory {}: {e}", host.display()))
            })?;
        }
    }
    Ok(())
}

fn make_coverage_dir(dir: &Path) -> Result<(), TaskError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)))
        .map_err(|e| TaskError::fatal(format!("create coverage directory {}: {e}", dir.display())))
}

async fn create(
    engine: &Engine,
    req: &ClusterRequest,
    config: &Value,
    ctx: &TaskCtx,
    cli: Option<&KindCli>,
) -> Result<(), TaskError> {
    let cli = cli.ok_or_else(|| {
        TaskError::fatal(format!(
            "create cluster {}: the kind CLI is not installed (put `kind` on PATH or set KPROV_KIND)",
            req.name
        ))
    })?;
    let image = req.spec.node_image.clone();
    let args = CreateArgs {
        name: req.name.clone(),
        config: serde_json::to_string(config).expect("json"),
        image,
        kubeconfig: Some(req.kubeconfig.clone()),
    };
    for attempt in 1..=CREATE_ATTEMPTS {
        let result = cli
            .create_cluster(&args, &ctx.cancel, &mut |line| {
                ctx.progress(line.trim().to_string())
            })
            .await;
        let e = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if e.cancelled {
            // A half-made cluster is of no use to anyone: remove what kind left.
            let _ = engine
                .remove_containers(&[&kind::cluster_label(&req.name)])
                .await;
            return Err(TaskError::fatal(format!(
                "create cluster {}: cancelled",
                req.name
            )));
        }
        if attempt == CREATE_ATTEMPTS || !kind::is_transient_create_failure(&e.output) {
            let attempts = if attempt > 1 {
                format!(" (attempt {attempt} of {CREATE_ATTEMPTS})")
            } else {
                String::new()
            };
            return Err(TaskError::fatal(format!("{e}{attempts}")));
        }
        let delay = CREATE_BACKOFF[attempt - 1];
        ctx.progress(format!(
            "kind create failed with a transient error (attempt {attempt} of {CREATE_ATTEMPTS}); retrying in {}s",
            delay.as_secs()
        ));
        // kind removes a failed cluster itself; make sure nothing is left to collide with.
        engine
            .remove_containers(&[&kind::cluster_label(&req.name)])
            .await?;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.cancel.cancelled() => return Err(TaskError::fatal(format!("create cluster {}: cancelled", req.name))),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// The node containers of kind cluster `name` (stopped ones too): control-plane nodes first,
/// then by name. The one place that finds a cluster's nodes by kind's labels.
pub async fn list_nodes(
    engine: &Engine,
    name: &str,
) -> Result<Vec<crate::adapters::docker::ContainerInfo>, crate::adapters::docker::EngineError> {
    let mut nodes = engine
        .list_containers(&[&kind::cluster_label(name)], true)
        .await?;
    let is_cp = |c: &crate::adapters::docker::ContainerInfo| {
        c.labels.get(kind::ROLE_LABEL).map(String::as_str) == Some(kind::CONTROL_PLANE)
    };
    nodes.sort_by(|a, b| (!is_cp(a), &a.name).cmp(&(!is_cp(b), &b.name)));
    Ok(nodes)
}

/// Finds a kind cluster's nodes by label and their published ports, and writes its kubeconfig
/// (kind's, from `kind_cli`; without it, made as kind makes it).
pub async fn inspect_cluster(
    engine: &Engine,
    name: &str,
    kubeconfig: &Path,
    kind_cli: Option<&KindCli>,
    cancel: &CancellationToken,
) -> Result<ClusterInfo, TaskError> {
    let nodes = list_nodes(engine, name).await?;
    if nodes.is_empty() {
        return Err(TaskError::fatal(format!(
            "find cluster {name}: no container carries {}",
            kind::cluster_label(name)
        )));
    }
    let role = |c: &crate::adapters::docker::ContainerInfo| {
        c.labels.get(kind::ROLE_LABEL).cloned().unwrap_or_default()
    };
    let mut host_ports = BTreeMap::new();
    let mut inspects = BTreeMap::new();
    for node in &nodes {
        let inspect = engine
            .inspect_container_json(&node.name)
            .await?
            .ok_or_else(|| {
                TaskError::fatal(format!("inspect node {}: it disappeared", node.name))
            })?;
        for (container, host) in kind::published_ports(&inspect) {
            if container != kind::API_SERVER_PORT {
                host_ports.insert(container, host);
            }
        }
        inspects.insert(node.name.clone(), inspect);
    }
    let entry = match kind_cli {
        // kind's own kubeconfig, as `kind create` wrote it: its server is kind's choice.
        Some(cli) => {
            let text = cli.get_kubeconfig(name, cancel).await?;
            kind::kind_entries(&text, name)?
        }
        // Without the CLI, made as kind makes it: the first control plane's admin.conf, the
        // server where the load balancer (else the one control plane) publishes 6443.
        None => {
            let planes: Vec<_> = nodes
                .iter()
                .filter(|c| role(c) == kind::CONTROL_PLANE)
                .collect();
            let cp = planes.first().ok_or_else(|| {
                TaskError::fatal(format!(
                    "find cluster {name}: no node labelled {}={}",
                    kind::ROLE_LABEL,
                    kind::CONTROL_PLANE
                ))
            })?;
            let endpoint_node = match nodes.iter().find(|c| role(c) == kind::LOAD_BALANCER) {
                Some(lb) => lb,
                None if planes.len() == 1 => cp,
                None => {
                    return Err(TaskError::fatal(format!(
                        "read the kubeconfig of cluster {name}: {} control-plane nodes and no {} node",
                        planes.len(),
                        kind::LOAD_BALANCER
                    )));
                }
            };
            let endpoint =
                kind::api_server_endpoint(&inspects[&endpoint_node.name]).ok_or_else(|| {
                    TaskError::fatal(format!(
                        "read the kubeconfig of cluster {name}: {} publishes no port for {}",
                        endpoint_node.name,
                        kind::API_SERVER_PORT
                    ))
                })?;
            let out = engine
                .exec(&cp.name, &["cat", kind::ADMIN_CONF], cancel)
                .await?;
            if !out.success() {
                return Err(TaskError::fatal(format!(
                    "read {} from {}: exit {}: {}",
                    kind::ADMIN_CONF,
                    cp.name,
                    out.exit_code,
                    out.tail(5)
                )));
            }
            kind::kind_kubeconfig(&out.stdout, name, &format!("https://{endpoint}"))?
        }
    };
    kind::write_kubeconfig(kubeconfig, &entry).await?;
    Ok(ClusterInfo {
        name: name.to_string(),
        context: kind::context_name(name),
        kubeconfig: kubeconfig.to_path_buf(),
        created: false,
        nodes: nodes.iter().map(|c| c.name.clone()).collect(),
        host_ports,
    })
}

/// A reused cluster must offer what this run's config asks for: its mounts and port mappings.
async fn check_reusable(
    engine: &Engine,
    config: &Value,
    info: &ClusterInfo,
) -> Result<(), TaskError> {
    let mut missing = Vec::new();
    let mut mounted: Vec<String> = Vec::new();
    for node in &info.nodes {
        if let Some(inspect) = engine.inspect_container_json(node).await? {
            for m in inspect
                .get("Mounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(d) = m.get("Destination").and_then(Value::as_str) {
                    mounted.push(d.to_string());
                }
            }
        }
    }
    for node in config
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for m in node
            .get("extraMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = m
                .get("containerPath")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !mounted.iter().any(|d| d == path) && !missing.contains(&format!("mount {path}")) {
                missing.push(format!("mount {path}"));
            }
        }
        for p in node
            .get("extraPortMappings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(port) = p.get("containerPort").and_then(Value::as_u64) else {
                continue;
            };
            let host = p.get("hostPort").and_then(Value::as_u64).unwrap_or(0);
            match info.host_ports.get(&(port as u16)) {
                Some(h) if host == 0 || u64::from(*h) == host => {}
                Some(h) => missing.push(format!("port {port} on host port {host} (it is on {h})")),
                None => missing.push(format!("port mapping for {port}")),
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(TaskError::fatal(format!(
            "reuse cluster {}: it was created without {} (delete it and run again without --reuse)",
            info.name,
            missing.join(", ")
        )))
    }
}

/// `--kubeconfig` / `--context` mode: a cluster kprov did not create, checked to answer.
pub async fn existing_cluster(
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
) -> Result<ClusterInfo, ClusterError> {
    let path = kubeconfig.clone().unwrap_or_else(default_kubeconfig);
    let context = match context {
        Some(c) => c,
        None => current_context(&path)?,
    };
    let kube = Kube::connect(Some(&path), Some(&context))
        .await
        .map_err(|e| ClusterError(e.to_string()))?;
    kube.version()
        .await
        .map_err(|e| ClusterError(format!("reach cluster of context {context}: {e}")))?;
    let nodes = match kube.list("v1", "Node", None, None).await {
        Ok(nodes) => nodes.iter().map(|n| n.name().to_string()).collect(),
        Err(_) => Vec::new(),
    };
    Ok(ClusterInfo {
        name: context
            .strip_prefix("kind-")
            .unwrap_or(&context)
            .to_string(),
        context,
        kubeconfig: path,
        created: false,
        nodes,
        host_ports: BTreeMap::new(),
    })
}

fn current_context(path: &Path) -> Result<String, ClusterError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClusterError(format!("read kubeconfig {}: {e}", path.display())))?;
    let v: Value = serde_saphyr::from_str(&text)
        .map_err(|e| ClusterError(format!("parse kubeconfig {}: {e}", path.display())))?;
    v.get("current-context")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            ClusterError(format!(
                "kubeconfig {} names no current context: pass --context",
                path.display()
            ))
        })
}

/// Deletes a kind cluster: with the kind CLI when installed, else by removing its labelled
/// containers; its `kind-<name>` entries leave kind's default kubeconfig file.
pub async fn delete_cluster(engine: &Engine, name: &str) -> Result<(), ClusterError> {
    delete_cluster_with(
        engine,
        name,
        None,
        KindCli::find().as_ref(),
        &CancellationToken::new(),
    )
    .await
    .map(|_| ())
}

/// [`delete_cluster`] with a given kind CLI (`None`: remove the labelled containers), cleaning
/// the entries out of `kubeconfig` (the file the cluster's kubeconfig was written to) rather
/// than kind's default. Returns whether there was a cluster.
pub async fn delete_cluster_with(
    engine: &Engine,
    name: &str,
    kubeconfig: Option<&Path>,
    kind_cli: Option<&KindCli>,
    cancel: &CancellationToken,
) -> Result<bool, ClusterError> {
    let label = kind::cluster_label(name);
    let err = |e: &dyn std::fmt::Display| ClusterError(format!("delete cluster {name}: {e}"));
    let existed = !engine
        .list_containers(&[&label], true)
        .await
        .map_err(|e| err(&e))?
        .is_empty();
    if existed && let Some(cli) = kind_cli {
        let provider = kind_provider(engine).map_err(|e| err(&e))?;
        cli.clone()
            .with_provider(provider)
            .delete_cluster(name, kubeconfig, cancel)
            .await
            .map_err(|e| err(&e))?;
    }
    // Whatever kind left (or all of it, without kind).
    engine
        .remove_containers(&[&label])
        .await
        .map_err(|e| err(&e))?;
    let path = kubeconfig
        .map(Path::to_path_buf)
        .unwrap_or_else(default_kubeconfig);
    kind::forget_kubeconfig(&path, name)
        .await
        .map_err(|e| err(&e))?;
    CREATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(spec: ClusterSpec) -> ClusterRequest {
        ClusterRequest {
            name: "svc-e2e".into(),
            spec,
            source: PathBuf::from("/src"),
            coverage_dir: None,
            reuse: false,
            kubeconfig: PathBuf::from("/k"),
            service: None,
        }
    }

    #[test]
    fn generated_config_has_one_control_plane_with_ports_and_mounts() {
        let spec = ClusterSpec {
            node_image: Some("kindest/node:v1.36.1".into()),
            extra_mounts: vec![Mount {
                host_path: "data".into(),
                container_path: "/data".into(),
                read_only: true,
            }],
            extra_port_mappings: vec![PortMapping {
                container_port: 30081,
                host_port: 8081,
                ..Default::default()
            }],
            kubeadm_config_patches: vec!["kind: ClusterConfiguration\n".into()],
            ..Default::default()
        };
        let mut req = request(spec);
        req.coverage_dir = Some(PathBuf::from("coverdata"));
        let config = kind_config(&req).unwrap();
        assert_eq!(
            config,
            json!({
                "kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
                "nodes": [{
                    "role": "control-plane", "image": "kindest/node:v1.36.1",
                    "extraMounts": [
                        {"hostPath": "/src/data", "containerPath": "/data", "readOnly": true},
                        {"hostPath": "/src/coverdata", "containerPath": "/coverdata"}],
                    "extraPortMappings": [{"containerPort": 30081, "hostPort": 8081}]}],
                "kubeadmConfigPatches": ["kind: ClusterConfiguration\n"],
            })
        );
    }

    #[test]
    fn cluster_wide_ports_go_to_the_first_control_plane_and_mounts_to_every_node() {
        let spec = ClusterSpec {
            nodes: vec![
                NodeSpec {
                    role: "control-plane".into(),
                    ..Default::default()
                },
                NodeSpec {
                    role: "worker".into(),
                    ..Default::default()
                },
            ],
            extra_port_mappings: vec![PortMapping {
                container_port: 30080,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut req = request(spec);
        req.coverage_dir = Some(PathBuf::from("/abs/cov"));
        let config = kind_config(&req).unwrap();
        let nodes = config["nodes"].as_array().unwrap();
        assert_eq!(
            nodes[0]["extraPortMappings"],
            json!([{"containerPort": 30080, "hostPort": 0}])
        );
        assert!(nodes[1].get("extraPortMappings").is_none());
        for n in nodes {
            assert_eq!(
                n["extraMounts"],
                json!([{"hostPath": "/abs/cov", "containerPath": "/coverdata"}])
            );
        }
    }

    #[test]
    fn missing_mount_directories_are_created_before_kind_runs() {
        let dir = tempfile::tempdir().unwrap();
        let cov = dir.path().join("repo/coverdata");
        let pol = dir.path().join("repo/policies");
        let config = json!({"nodes": [
            {"role": "control-plane", "extraMounts": [
                {"hostPath": cov.to_string_lossy(), "containerPath": "/coverdata"}]},
            {"role": "worker", "extraMounts": [
                {"hostPath": pol.to_string_lossy(), "containerPath": "/policies"}]}
        ]});
        make_mount_dirs(&config).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cov).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        assert!(pol.is_dir());
    }

    #[test]
    fn a_users_kind_config_is_patched_as_data_and_the_rest_preserved() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kind-svc.yaml"),
            r#"# the user's comments do not matter to kind
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: "10.244.0.0/16"
nodes:
- role: control-plane
  image: kindest/node:v1.36.1@sha256:abc
  extraPortMappings:
  - containerPort: 30081
    hostPort: 8081
  extraMounts:
  - hostPath: ./coverdata
    containerPath: /coverdata
  kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration
    apiServer:
      extraArgs:
        max-requests-inflight: "800"
- role: worker
"#,
        )
        .unwrap();
        let spec = ClusterSpec {
            kind_config: Some("kind-svc.yaml".into()),
            extra_mounts: vec![Mount {
                host_path: "policies".into(),
                container_path: "/policies".into(),
                read_only: false,
            }],
            extra_port_mappings: vec![
                PortMapping {
                    container_port: 30181,
                    host_port: 9181,
                    ..Default::default()
                },
                // A profile port without a host port: the file's mapping (8081) stands.
                PortMapping {
                    container_port: 30081,
                    host_port: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut req = request(spec);
        req.source = dir.path().to_path_buf();
        req.coverage_dir = Some(dir.path().join("out/coverdata"));
        let config = kind_config(&req).unwrap();
        let src = dir.path().to_string_lossy();
        assert_eq!(config["networking"], json!({"podSubnet": "10.244.0.0/16"}));
        let cp = &config["nodes"][0];
        assert_eq!(cp["image"], "kindest/node:v1.36.1@sha256:abc");
        assert!(
            cp["kubeadmConfigPatches"][0]
                .as_str()
                .unwrap()
                .contains("max-requests-inflight: \"800\"")
        );
        assert_eq!(
            cp["extraPortMappings"],
            json!([{"containerPort": 30081, "hostPort": 8081}, {"containerPort": 30181, "hostPort": 9181}])
        );
        // The coverage mount replaces the user's /coverdata entry rather than doubling it.
        assert_eq!(
            cp["extraMounts"],
            json!([
                {"hostPath": format!("{src}/out/coverdata"), "containerPath": "/coverdata"},
                {"hostPath": format!("{src}/policies"), "containerPath": "/policies"}])
        );
        // The worker gets the same mounts (a pod writing coverage may run there), not the ports.
        assert_eq!(
            config["nodes"][1],
            json!({"role": "worker", "extraMounts": [
                {"hostPath": format!("{src}/policies"), "containerPath": "/policies"},
                {"hostPath": format!("{src}/out/coverdata"), "containerPath": "/coverdata"}]})
        );
    }

    /// A kind config with a relative, a `./` and an absolute host path, in `dir`.
    fn kind_config_with_relative_mounts(dir: &Path) -> ClusterRequest {
        std::fs::write(
            dir.join("kind.yaml"),
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  \
             extraMounts:\n  - {hostPath: ./coverdata, containerPath: /coverdata}\n  \
             - {hostPath: ../fixtures, containerPath: /fixtures}\n  \
             - {hostPath: /var/abs, containerPath: /abs}\n",
        )
        .unwrap();
        let mut req = request(ClusterSpec {
            kind_config: Some("kind.yaml".into()),
            extra_mounts: vec![Mount {
                host_path: "policies".into(),
                container_path: "/policies".into(),
                read_only: false,
            }],
            ..Default::default()
        });
        req.source = dir.to_path_buf();
        req
    }

    #[test]
    fn a_kind_configs_relative_host_paths_resolve_against_the_working_dir_kind_runs_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = kind_config_with_relative_mounts(dir.path());
        req.spec.working_dir = Some("test/e2e/svc".into());
        let config = kind_config(&req).unwrap();
        let src = dir.path().to_string_lossy();
        assert_eq!(
            config["nodes"][0]["extraMounts"],
            json!([
                {"hostPath": format!("{src}/test/e2e/svc/coverdata"), "containerPath": "/coverdata"},
                {"hostPath": format!("{src}/test/e2e/fixtures"), "containerPath": "/fixtures"},
                {"hostPath": "/var/abs", "containerPath": "/abs"},
                // The profile's own paths stay relative to --source.
                {"hostPath": format!("{src}/policies"), "containerPath": "/policies"}])
        );
    }

    #[test]
    fn without_a_working_dir_a_kind_configs_host_paths_resolve_against_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let req = kind_config_with_relative_mounts(dir.path());
        let config = kind_config(&req).unwrap();
        let src = dir.path().to_string_lossy();
        let parent = dir.path().parent().unwrap().to_string_lossy();
        let hosts: Vec<&str> = config["nodes"][0]["extraMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["hostPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            [
                format!("{src}/coverdata"),
                format!("{parent}/fixtures"),
                "/var/abs".into(),
                format!("{src}/policies")
            ]
        );
    }

    #[test]
    fn the_host_ports_a_kind_config_publishes_are_read_by_node_port() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kind.yaml"),
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  \
             extraPortMappings:\n  - {containerPort: 30081, hostPort: 28090}\n  \
             - {containerPort: 30181, hostPort: 0}\n- role: worker\n  \
             extraPortMappings:\n  - {containerPort: 30281, hostPort: 28092, protocol: TCP}\n",
        )
        .unwrap();
        let spec = ClusterSpec {
            kind_config: Some("kind.yaml".into()),
            ..Default::default()
        };
        let ports = kind_config_host_ports(dir.path(), &spec).unwrap();
        assert_eq!(ports, BTreeMap::from([(30081, 28090), (30281, 28092)]));
        assert!(
            kind_config_host_ports(dir.path(), &ClusterSpec::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_kind_config_without_nodes_gets_kinds_default_control_plane() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k.yaml"),
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n",
        )
        .unwrap();
        let mut req = request(ClusterSpec {
            kind_config: Some("k.yaml".into()),
            ..Default::default()
        });
        req.source = dir.path().to_path_buf();
        req.coverage_dir = Some(PathBuf::from("/cov"));
        let config = kind_config(&req).unwrap();
        assert_eq!(
            config["nodes"],
            json!([{"role": "control-plane", "extraMounts": [{"hostPath": "/cov", "containerPath": "/coverdata"}]}])
        );
    }

    #[test]
    fn a_file_that_is_not_a_kind_config_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k.yaml"),
            "kind: Deployment\napiVersion: apps/v1\n",
        )
        .unwrap();
        let mut req = request(ClusterSpec {
            kind_config: Some("k.yaml".into()),
            ..Default::default()
        });
        req.source = dir.path().to_path_buf();
        let e = kind_config(&req).unwrap_err();
        assert!(e.0.contains("k.yaml: kind must be Cluster"), "{e}");
        req.spec.kind_config = Some("missing.yaml".into());
        assert!(kind_config(&req).unwrap_err().0.contains("missing.yaml"));
    }
}
