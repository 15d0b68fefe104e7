//! The load task: put a built image into every node of a Kind cluster, the way
//! `kind load docker-image` does, but streamed end to end.
//!
//! 1. Nodes are the running containers labelled `io.x-k8s.kind.cluster=<cluster>` (the
//!    external load balancer excluded, as kind does).
//! 2. Per node, concurrently: `ctr -n k8s.io images ls` tells what the node's containerd has,
//!    and `containerd config dump`, read as TOML, which snapshotter the CRI plugin uses (config
//!    `version = 2`, containerd 1.x: `plugins."io.containerd.grpc.v1.cri".containerd.snapshotter`;
//!    `version = 3`, containerd 2.x: `plugins.'io.containerd.cri.v1.images'.snapshotter`;
//!    default `overlayfs`).
//!    - the image ID (the `sha256:<id>` reference the CRI plugin keeps) under the wanted name:
//!      nothing to do;
//!    - the ID under other names only: `ctr -n k8s.io images tag --force <id> <name>`;
//!    - otherwise the node needs the image. (Without the CRI plugin's ID reference, the wanted
//!      name's manifest is read to compare its config digest with the ID.)
//!    - the name's target is the engine's ID itself, or the name carries [`ENGINE_ID_LABEL`]
//!      with it (see below): nothing to do either. The config digest is what both of Docker's
//!      image stores agree on: the classic store's ID is the config digest (the CRI plugin's
//!      `sha256:<config>` reference); the containerd store's ID is the index digest, which
//!      kprov records on the node's image when it imports one.
//!
//!    Names are normalised as kind does: `docker.io/` prefix, `library/` for one-segment
//!    names, `:latest` when no tag; names with a registry host (`localhost/…`, `host:5000/…`)
//!    are kept verbatim.
//! 3. ONE export stream (`docker save`) feeds every node that needs the image at once, cut down
//!    on the way to the one platform the nodes run ([`SinglePlatform`]): an `index.json` that
//!    names a multi-platform index, as Docker's containerd image store saves one with the
//!    other platforms' blobs absent, is rewritten to name that platform's manifest (as
//!    `docker save --platform` does). Each node gets a bounded channel of chunks and an exec of
//!    `ctr --namespace=k8s.io images import --platform=<node platform> --digests
//!    --snapshotter=S -` with the channel on its stdin (not kind's `--all-platforms`, which
//!    fails on the absent blobs: kind #3795, #4224). Memory is bounded by the channels (no
//!    temp file); the slowest node sets the pace, and a node that stops reading for
//!    [`LoadOptions::stall_timeout`] is cut off (reported failed) so it cannot stall the
//!    others. Stdin is shut down on every path. [`load_archive`] streams any archive the same
//!    way (`kind load image-archive`).
//!
//!    Imports into a node run one at a time in this process (`lock_imports`): containerd
//!    locks an import's ingests by the archive's entry names (`tar-<layer dir>/layer.tar`),
//!    and an import waiting for another's entry stops reading, which, the export feeding a
//!    load's nodes in step, would hold up that load's other nodes as well. A load takes its
//!    nodes' locks in name order, then looks at those nodes again: a load of the same image ID
//!    under another key may have imported it meanwhile, and a tag is then all that is left.
//! 4. Every node's failure is reported, not only the first; exit codes come from the execs.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio_util::sync::CancellationToken;

use crate::adapters::docker::{Engine, ExecOutput};
use crate::adapters::oci::{ArchiveError, Platform, Selected, SinglePlatform};
use crate::engine::{Done, TaskCtx, TaskError};
use crate::tasks::build::{BuiltImage, engine_task_error, short_id};

/// The containerd namespace the kubelet's images live in.
pub const K8S_NAMESPACE: &str = "k8s.io";
const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// Label kprov puts on a node's image imported from an index it cut to one platform: the
/// engine's ID of the image (the index digest), which the node's image no longer shows.
pub const ENGINE_ID_LABEL: &str = "dev.kprov.engine-id";

/// Tuning for [`load_image_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// A node that accepts no image data for this long is cut off and reported failed.
    pub stall_timeout: Duration,
    /// Chunks buffered per node: memory is about this × chunk size (chunks are shared).
    pub channel_depth: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            stall_timeout: Duration::from_secs(60),
            channel_depth: 16,
        }
    }
}

/// What was done on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// The node already had the image under the wanted name.
    Present,
    /// The node had the image's ID under another name; it was tagged.
    Retagged,
    /// The image was streamed into the node.
    Imported,
}

/// The outcome of a load, per node (sorted by node name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The name the nodes know the image by.
    pub name: String,
    pub nodes: BTreeMap<String, NodeAction>,
    /// Bytes exported (once, whatever the number of nodes); 0 when nothing was imported.
    pub exported_bytes: u64,
}

impl LoadReport {
    /// [`Done::Cached`] when every node already had the image.
    pub fn done(&self) -> Done {
        if self.nodes.values().all(|a| *a == NodeAction::Present) {
            Done::Cached
        } else {
            Done::Ran
        }
    }
}

/// Loads `image` into every node of `cluster`; [`Done::Cached`] when every node had it.
pub async fn load_image(
    engine: &Engine,
    cluster: &str,
    image: &BuiltImage,
    ctx: &TaskCtx,
) -> Result<Done, TaskError> {
    load_image_with(engine, cluster, image, &LoadOptions::default(), ctx)
        .await
        .map(|r| r.done())
}

/// [`load_image`], with tuning and a per-node report.
pub async fn load_image_with(
    engine: &Engine,
    cluster: &str,
    image: &BuiltImage,
    opts: &LoadOptions,
    ctx: &TaskCtx,
) -> Result<LoadReport, TaskError> {
    let what = format!("load image {} into cluster {cluster}", image.reference);
    let cancelled = || TaskError::fatal(format!("{what}: cancelled"));
    let nodes = find_nodes(engine, cluster)
        .await
        .map_err(|e| e.task_error(&what))?;
    let load = ImageLoad {
        engine,
        image,
        name: normalize_image_name(&image.reference),
        ctx,
    };
    let mut report = LoadReport {
        name: load.name.clone(),
        nodes: BTreeMap::new(),
        exported_bytes: 0,
    };
    let mut failures = Failures::default();

    // First without the nodes' import locks: a warm run finds the image everywhere at once.
    let plan = load.plan(&nodes, &mut report, &mut failures).await;
    if ctx.cancel.is_cancelled() {
        return Err(cancelled());
    }
    let pending = plan.nodes();
    if !pending.is_empty() {
        let Some(_locks) = lock_imports(engine.host(), &pending, ctx).await else {
            return Err(cancelled());
        };
        // Again under the locks: a load of the same image ID (another key, another name) may
        // have imported it meanwhile, and then a tag is all this load has left to do.
        let plan = load.plan(&pending, &mut report, &mut failures).await;
        if ctx.cancel.is_cancelled() {
            return Err(cancelled());
        }
        load.retag(&plan.retag, &mut report, &mut failures).await;
        if !plan.import.is_empty() {
            load.import(&plan.import, opts, &mut report, &mut failures)
                .await
                .ok_or_else(cancelled)?;
        }
    }
    if failures.is_empty() {
        return Ok(report);
    }
    let count = failures.messages.len();
    Err(failures.error(format!(
        "{what}: {count} of {} node(s) failed:",
        nodes.len()
    )))
}

/// One image's load: what every step of [`load_image_with`] needs.
struct ImageLoad<'a> {
    engine: &'a Engine,
    image: &'a BuiltImage,
    /// The name the nodes know the image by.
    name: String,
    ctx: &'a TaskCtx,
}

/// What the nodes still need, from [`ImageLoad::plan`].
#[derive(Default)]
struct NodePlan {
    retag: Vec<String>,
    /// Nodes, each with its snapshotter.
    import: Vec<(String, String)>,
}

impl NodePlan {
    fn nodes(&self) -> Vec<String> {
        let imports = self.import.iter().map(|(node, _)| node);
        self.retag.iter().chain(imports).cloned().collect()
    }
}

impl ImageLoad<'_> {
    /// Looks at `nodes` at once: the ones that have the image go into the report, the ones
    /// that failed into `failures`, the rest into the plan.
    async fn plan(
        &self,
        nodes: &[String],
        report: &mut LoadReport,
        failures: &mut Failures,
    ) -> NodePlan {
        let (engine, image, name, cancel) = (self.engine, self.image, &self.name, &self.ctx.cancel);
        let states = futures::future::join_all(
            nodes
                .iter()
                .map(|node| inspect_node(engine, node, image, name, cancel)),
        )
        .await;
        let mut plan = NodePlan::default();
        for (node, state) in nodes.iter().zip(states) {
            match state {
                Ok(NodeState::Present) => {
                    let id = short_id(&image.id);
                    self.ctx.progress(format!("{node}: has {name} ({id})"));
                    report.nodes.insert(node.clone(), NodeAction::Present);
                }
                Ok(NodeState::UnderOtherNames) => plan.retag.push(node.clone()),
                Ok(NodeState::Missing { snapshotter }) => {
                    plan.import.push((node.clone(), snapshotter))
                }
                Err(e) => failures.node(node, e),
            }
        }
        plan
    }

    /// Tags the image's ID with the wanted name in every node of `nodes`.
    async fn retag(&self, nodes: &[String], report: &mut LoadReport, failures: &mut Failures) {
        let (id, name) = (self.image.id.as_str(), self.name.as_str());
        let cmd = [
            "ctr",
            "-n",
            K8S_NAMESPACE,
            "images",
            "tag",
            "--force",
            id,
            name,
        ];
        let cancel = &self.ctx.cancel;
        let results = futures::future::join_all(
            nodes
                .iter()
                .map(|node| run_checked(self.engine, node, &cmd, cancel)),
        )
        .await;
        for (node, result) in nodes.iter().zip(results) {
            match result {
                Ok(_) => {
                    let id = short_id(id);
                    self.ctx.progress(format!("{node}: tagged {id} as {name}"));
                    report.nodes.insert(node.clone(), NodeAction::Retagged);
                }
                Err(e) => failures.node(node, e),
            }
        }
    }

    /// Streams the image into every target at once (one export); `None` when cancelled.
    async fn import(
        &self,
        targets: &[(String, String)],
        opts: &LoadOptions,
        report: &mut LoadReport,
        failures: &mut Failures,
    ) -> Option<()> {
        let (engine, image, ctx) = (self.engine, self.image, self.ctx);
        let started = Instant::now();
        let outcome = fan_out(engine, export_source(engine, image), targets, opts, ctx).await;
        if ctx.cancel.is_cancelled() {
            return None;
        }
        report.exported_bytes = outcome.exported_bytes;
        if let Some(e) = outcome.export_error {
            failures.first(e);
        }
        // The engine's ID of an image saved from an index (Docker's containerd store) is the
        // index digest, which the node never sees after the archive was cut to one platform:
        // it is kept as a label of the node's image, for the next presence check.
        let from_index = outcome
            .selected
            .iter()
            .any(|s| s.from_index.as_deref() == Some(image.id.as_str()));
        let label = format!("{ENGINE_ID_LABEL}={}", image.id);
        let cmd = [
            "ctr",
            "-n",
            K8S_NAMESPACE,
            "images",
            "label",
            &self.name,
            &label,
        ];
        let mut imported = 0;
        for ((node, _), result) in targets.iter().zip(outcome.nodes) {
            let result = match result {
                Ok(()) if from_index => run_checked(engine, node, &cmd, &ctx.cancel)
                    .await
                    .map(|_| ()),
                r => r,
            };
            match result {
                Ok(()) => {
                    imported += 1;
                    report.nodes.insert(node.clone(), NodeAction::Imported);
                }
                Err(e) => failures.node(node, e),
            }
        }
        if imported > 0 {
            ctx.progress(format!(
                "imported {} into {imported} node(s): {} MB streamed once in {:.1}s",
                self.name,
                outcome.exported_bytes / 1_000_000,
                started.elapsed().as_secs_f64()
            ));
        }
        Some(())
    }
}

/// Every failure of a load (one line each), and whether all of them may pass on a retry.
struct Failures {
    messages: Vec<String>,
    transient: bool,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            messages: Vec::new(),
            transient: true,
        }
    }
}

impl Failures {
    fn node(&mut self, node: &str, e: NodeError) {
        self.transient &= e.transient;
        self.messages.push(format!("{node}: {}", e.message));
    }

    /// A failure that explains the nodes' (the export's): listed first.
    fn first(&mut self, e: NodeError) {
        self.transient &= e.transient;
        self.messages.insert(0, e.message);
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// `headline`, then one indented line per failure.
    fn error(self, headline: String) -> TaskError {
        let message = format!("{headline}\n  {}", self.messages.join("\n  "));
        if self.transient {
            TaskError::transient(message)
        } else {
            TaskError::fatal(message)
        }
    }
}

/// What [`load_archive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The nodes imported into, sorted.
    pub nodes: Vec<String>,
    /// Archive bytes read (once, whatever the number of nodes).
    pub bytes: u64,
    /// The images the archive was cut down to, one per `index.json` entry (empty for a
    /// classic `manifest.json` archive).
    pub selected: Vec<Selected>,
}

/// Streams an image archive into every node of `cluster`, as `kind load image-archive` does
/// (no presence check), cut down to the nodes' platform on the way ([`SinglePlatform`]).
pub async fn load_archive(
    engine: &Engine,
    cluster: &str,
    archive: ArchiveSource,
    opts: &LoadOptions,
    ctx: &TaskCtx,
) -> Result<ArchiveReport, TaskError> {
    let what = format!("load an image archive into cluster {cluster}");
    let cancelled = || TaskError::fatal(format!("{what}: cancelled"));
    let nodes = find_nodes(engine, cluster)
        .await
        .map_err(|e| e.task_error(&what))?;
    let dump = ["containerd", "config", "dump"];
    let snapshotters = futures::future::join_all(nodes.iter().map(|node| async move {
        let out = run_checked(engine, node, &dump, &ctx.cancel).await?;
        snapshotter_from_config(&out.stdout).map_err(|message| NodeError {
            message,
            transient: false,
        })
    }))
    .await;
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for (node, s) in nodes.iter().zip(snapshotters) {
        match s {
            Ok(s) => targets.push((node.clone(), s)),
            Err(e) => failures.push(format!("{node}: {}", e.message)),
        }
    }
    if !failures.is_empty() {
        return Err(TaskError::fatal(format!("{what}: {}", failures.join("; "))));
    }
    let nodes: Vec<String> = targets.iter().map(|(node, _)| node.clone()).collect();
    let Some(_locks) = lock_imports(engine.host(), &nodes, ctx).await else {
        return Err(cancelled());
    };
    let outcome = fan_out(engine, archive, &targets, opts, ctx).await;
    if ctx.cancel.is_cancelled() {
        return Err(cancelled());
    }
    let mut failures = Failures::default();
    if let Some(e) = outcome.export_error {
        failures.first(e);
    }
    for (node, r) in nodes.iter().zip(outcome.nodes) {
        if let Err(e) = r {
            failures.node(node, e);
        }
    }
    if failures.is_empty() {
        return Ok(ArchiveReport {
            nodes,
            bytes: outcome.exported_bytes,
            selected: outcome.selected,
        });
    }
    Err(failures.error(format!("{what}:")))
}

enum NodesError {
    Engine(crate::adapters::docker::EngineError),
    None(String),
}

impl NodesError {
    fn task_error(self, what: &str) -> TaskError {
        match self {
            NodesError::Engine(e) => engine_task_error(what, e),
            NodesError::None(why) => TaskError::fatal(format!("{what}: {why}")),
        }
    }
}

/// The running nodes of `cluster` that hold images (the external load balancer does not).
async fn find_nodes(engine: &Engine, cluster: &str) -> Result<Vec<String>, NodesError> {
    let label = crate::adapters::kind::cluster_label(cluster);
    let containers = crate::tasks::cluster::list_nodes(engine, cluster)
        .await
        .map_err(NodesError::Engine)?;
    let holds_images = |c: &&crate::adapters::docker::ContainerInfo| {
        c.labels
            .get(crate::adapters::kind::ROLE_LABEL)
            .map(String::as_str)
            != Some("external-load-balancer")
    };
    let mut nodes: Vec<String> = containers
        .iter()
        .filter(holds_images)
        .filter(|c| c.running)
        .map(|c| c.name.clone())
        .collect();
    nodes.sort();
    if nodes.is_empty() {
        let stopped: Vec<&str> = containers
            .iter()
            .filter(holds_images)
            .map(|c| c.name.as_str())
            .collect();
        return Err(NodesError::None(if stopped.is_empty() {
            format!("no nodes found (no container labelled {label})")
        } else {
            format!("no running nodes (stopped: {})", stopped.join(", "))
        }));
    }
    Ok(nodes)
}

/// Import locks, one per node (engine host, node container): imports into a node run one at a
/// time in this process. containerd names an import's ingests after the archive's entries
/// (`tar-<layer dir>/layer.tar`, `tar-repositories`) and locks each name until that entry is
/// written, so a second import of an archive with the same entry (a base layer images share)
/// stops reading its stdin until the first has written it. One export feeds all of a load's
/// nodes in step, so that stop holds up the load's other nodes too: two loads into the same
/// nodes could each wait, on a different node, for the other (until the stall cut-off).
static IMPORT_LOCKS: std::sync::Mutex<LockTable> = std::sync::Mutex::new(BTreeMap::new());
/// Keyed by (engine host, node container); an entry lives while a load holds or awaits it.
type LockTable = BTreeMap<(String, String), Weak<NodeLock>>;
type NodeLock = tokio::sync::Mutex<()>;

/// Takes the import locks of `nodes`, in name order, so that two loads never each hold a lock
/// the other waits for. `None` when the task is cancelled while waiting.
async fn lock_imports(
    host: &str,
    nodes: &[String],
    ctx: &TaskCtx,
) -> Option<Vec<OwnedMutexGuard<()>>> {
    let mut nodes = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    let locks: Vec<Arc<NodeLock>> = {
        let mut all = IMPORT_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, lock| lock.strong_count() > 0);
        nodes
            .iter()
            .map(|node| {
                let key = (host.to_string(), node.clone());
                let slot = all.entry(key).or_default();
                slot.upgrade().unwrap_or_else(|| {
                    let lock = Arc::default();
                    *slot = Arc::downgrade(&lock);
                    lock
                })
            })
            .collect()
    };
    let mut guards = Vec::with_capacity(locks.len());
    for (node, lock) in nodes.iter().zip(locks) {
        let guard = match lock.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                ctx.progress(format!("{node}: waiting for another load's import"));
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return None,
                    guard = lock.lock_owned() => guard,
                }
            }
        };
        guards.push(guard);
    }
    Some(guards)
}

/// Where a node stands with the image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeState {
    Present,
    UnderOtherNames,
    Missing { snapshotter: String },
}

/// A node's (or the archive's) failure, and whether a retry may help.
#[derive(Debug, Clone)]
pub struct NodeError {
    pub message: String,
    pub transient: bool,
}

async fn inspect_node(
    engine: &Engine,
    node: &str,
    image: &BuiltImage,
    name: &str,
    cancel: &CancellationToken,
) -> Result<NodeState, NodeError> {
    let list = ["ctr", "-n", K8S_NAMESPACE, "images", "ls"];
    let dump = ["containerd", "config", "dump"];
    let (listing, config) = tokio::join!(
        run_checked(engine, node, &list, cancel),
        run_checked(engine, node, &dump, cancel)
    );
    let listing_text = listing?.stdout;
    if labelled_with_engine_id(&listing_text, name, &image.id) {
        return Ok(NodeState::Present);
    }
    let listing = parse_images_ls(&listing_text);
    match presence(&listing, &image.id, name) {
        Presence::Present => return Ok(NodeState::Present),
        Presence::UnderOtherNames => return Ok(NodeState::UnderOtherNames),
        Presence::Check(digest) => {
            // No ID reference (no CRI plugin): compare the name's config digest with the ID.
            let get = [
                "ctr",
                "-n",
                K8S_NAMESPACE,
                "content",
                "get",
                digest.as_str(),
            ];
            let manifest = run_checked(engine, node, &get, cancel).await?;
            if manifest_config_digest(&manifest.stdout).as_deref() == Some(image.id.as_str()) {
                return Ok(NodeState::Present);
            }
        }
        Presence::Missing => {}
    }
    let snapshotter = snapshotter_from_config(&config?.stdout).map_err(|message| NodeError {
        message,
        transient: false,
    })?;
    Ok(NodeState::Missing { snapshotter })
}

/// Runs `cmd` in `node`; a non-zero exit is an error quoting the output's tail.
async fn run_checked(
    engine: &Engine,
    node: &str,
    cmd: &[&str],
    cancel: &CancellationToken,
) -> Result<ExecOutput, NodeError> {
    checked(cmd, engine.exec(node, cmd, cancel).await)
}

/// An exec's result as a node's: a non-zero exit fails with the output's tail; an engine
/// error keeps whether it is worth a retry.
fn checked(
    cmd: &[&str],
    result: Result<ExecOutput, crate::adapters::docker::EngineError>,
) -> Result<ExecOutput, NodeError> {
    match result {
        Ok(out) if out.success() => Ok(out),
        Ok(out) => Err(NodeError {
            message: format!(
                "`{}` exited {}: {}",
                cmd.join(" "),
                out.exit_code,
                out.tail(5)
            ),
            // A command that ran and failed fails the load: only engine hiccups are retried.
            transient: false,
        }),
        Err(e) => Err(NodeError {
            message: e.to_string(),
            transient: e.is_transient(),
        }),
    }
}

struct FanOutOutcome {
    exported_bytes: u64,
    export_error: Option<NodeError>,
    /// What the archive was cut down to (see [`SinglePlatform`]).
    selected: Vec<Selected>,
    /// One result per target, in order.
    nodes: Vec<Result<(), NodeError>>,
}

/// A source of archive bytes; an error says what broke and whether a retry may help.
pub type ArchiveSource = BoxStream<'static, Result<Bytes, NodeError>>;

/// `docker save` of `image` as an [`ArchiveSource`].
fn export_source(engine: &Engine, image: &BuiltImage) -> ArchiveSource {
    engine
        .export_image(&image.reference)
        .map(|r| {
            r.map_err(|e| NodeError {
                message: e.to_string(),
                transient: e.is_transient(),
            })
        })
        .boxed()
}

/// One archive stream, cut down to the nodes' platform ([`SinglePlatform`]) as it passes, and
/// teed into every target's import exec through bounded channels.
async fn fan_out(
    engine: &Engine,
    source: ArchiveSource,
    targets: &[(String, String)],
    opts: &LoadOptions,
    ctx: &TaskCtx,
) -> FanOutOutcome {
    // Cancelled on an export error (or by the task's own cancellation): every import stops.
    let abort = ctx.cancel.child_token();
    let mut senders = Vec::new();
    let mut imports = Vec::new();
    for (node, snapshotter) in targets {
        let (tx, rx) = mpsc::channel::<Bytes>(opts.channel_depth.max(1));
        let node_cancel = abort.child_token();
        senders.push(Some((tx, node_cancel.clone())));
        imports.push(import_into(engine, node, snapshotter, rx, node_cancel, ctx));
    }
    let mut stalled: Vec<Option<String>> = vec![None; targets.len()];
    let producer = produce(source, senders, &mut stalled, &abort, opts);
    let ((exported_bytes, export_error, selected), results) =
        tokio::join!(producer, futures::future::join_all(imports));
    let nodes = results
        .into_iter()
        .zip(stalled)
        .map(|(result, stall)| match (result, stall) {
            (_, Some(message)) => Err(NodeError {
                message,
                transient: false,
            }),
            (result, None) => result,
        })
        .map(|r| match (&export_error, r) {
            // An aborted import is explained by the export error, reported once.
            (Some(_), Err(e)) if e.message.ends_with(": cancelled") => Err(NodeError {
                message: "import aborted: the export failed".to_string(),
                ..e
            }),
            (_, r) => r,
        })
        .collect();
    FanOutOutcome {
        exported_bytes,
        export_error,
        selected,
        nodes,
    }
}

/// A node's end of the fan-out: its channel and its import's own cancellation; `None` once the
/// import has ended or was cut off.
type NodeFeed = Option<(mpsc::Sender<Bytes>, CancellationToken)>;

/// Reads `source` through the platform cut and sends every chunk to every node still fed;
/// returns the bytes read, the export's error and what the archive was cut down to. Dropping
/// the senders at the end ends every import's stdin.
async fn produce(
    mut source: ArchiveSource,
    mut senders: Vec<NodeFeed>,
    stalled: &mut [Option<String>],
    abort: &CancellationToken,
    opts: &LoadOptions,
) -> (u64, Option<NodeError>, Vec<Selected>) {
    let mut rewriter = SinglePlatform::new(Platform::host());
    let mut bytes = 0u64;
    let mut export_error = None;
    loop {
        let chunk = tokio::select! {
            _ = abort.cancelled() => break,
            chunk = source.next() => chunk,
        };
        let (out, last) = match chunk {
            None => (rewriter.finish().map_err(archive_error), true),
            Some(Ok(chunk)) => {
                bytes += chunk.len() as u64;
                (rewriter.push(chunk).map_err(archive_error), false)
            }
            Some(Err(e)) => (Err(e), true),
        };
        match out {
            Ok(out) => {
                for chunk in out {
                    send_to_all(&chunk, &mut senders, stalled, opts.stall_timeout).await;
                }
            }
            Err(e) => {
                export_error = Some(e);
                abort.cancel();
                break;
            }
        }
        if last || senders.iter().all(Option::is_none) {
            break;
        }
    }
    (bytes, export_error, rewriter.selected().to_vec())
}

/// Sends `chunk` to every node still fed, one after another; a node that takes none for
/// `stall_timeout` is cut off (its import cancelled, the reason kept in `stalled`).
async fn send_to_all(
    chunk: &Bytes,
    senders: &mut [NodeFeed],
    stalled: &mut [Option<String>],
    stall_timeout: Duration,
) {
    for (slot, stall) in senders.iter_mut().zip(stalled.iter_mut()) {
        let Some((tx, node_cancel)) = slot else {
            continue;
        };
        match tokio::time::timeout(stall_timeout, tx.send(chunk.clone())).await {
            Ok(Ok(())) => {}
            // The import ended early; its own result says why.
            Ok(Err(_)) => *slot = None,
            Err(_) => {
                *stall = Some(format!(
                    "the import accepted no data for {}s and was cut off",
                    stall_timeout.as_secs_f64()
                ));
                node_cancel.cancel();
                *slot = None;
            }
        }
    }
}

fn archive_error(e: ArchiveError) -> NodeError {
    NodeError {
        message: format!("image archive: {e}"),
        transient: false,
    }
}

async fn import_into(
    engine: &Engine,
    node: &str,
    snapshotter: &str,
    rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
    ctx: &TaskCtx,
) -> Result<(), NodeError> {
    let snapshotter_flag = format!("--snapshotter={snapshotter}");
    // The one platform the nodes run, not --all-platforms: an image saved from Docker's
    // containerd store lists platforms whose blobs it does not hold (kind #3795, #4224).
    let platform_flag = format!("--platform={}", Platform::host());
    let namespace_flag = format!("--namespace={K8S_NAMESPACE}");
    let cmd = [
        "ctr",
        namespace_flag.as_str(),
        "images",
        "import",
        platform_flag.as_str(),
        "--digests",
        snapshotter_flag.as_str(),
        "-",
    ];
    let stdin = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    ctx.progress(format!("{node}: importing (snapshotter {snapshotter})"));
    let out = engine
        .exec_with_stdin(node, &cmd, stdin, &cancel, |_, line| {
            if !line.trim().is_empty() {
                ctx.progress(format!("{node}: {}", line.trim()));
            }
        })
        .await;
    checked(&cmd, out).map(|_| ())
}

/// Normalises an image name as kind (and containerd's import) does: `docker.io/` for names
/// without a registry host, `library/` for one-segment names, `:latest` when there is neither
/// tag nor digest. Names with a host (`localhost/…`, `a.b/…`, `h:5000/…`) keep it verbatim.
pub fn normalize_image_name(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_host = name.contains('/')
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase()));
    let mut out = if has_host {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = out.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        out.push_str(":latest");
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    out
}

/// `ctr images ls` rows as (reference, target digest). The first three columns never hold
/// spaces (SIZE, later, does).
fn parse_images_ls(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let reference = cols.next()?;
            let _media_type = cols.next()?;
            let digest = cols.next()?;
            (reference != "REF" && digest.starts_with("sha256:"))
                .then(|| (reference.to_string(), digest.to_string()))
        })
        .collect()
}

/// True when the `ctr images ls` row of `name` carries [`ENGINE_ID_LABEL`]`=id` (LABELS, the
/// last column, is `k=v,k=v` or `-`).
fn labelled_with_engine_id(text: &str, name: &str, id: &str) -> bool {
    let wanted = format!("{ENGINE_ID_LABEL}={id}");
    text.lines().any(|line| {
        let mut cols = line.split_whitespace();
        cols.next() == Some(name)
            && line
                .split_whitespace()
                .last()
                .is_some_and(|labels| labels.split(',').any(|l| l == wanted))
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Presence {
    Present,
    UnderOtherNames,
    /// No ID reference; the wanted name exists with this target digest: check its config.
    Check(String),
    Missing,
}

fn presence(listing: &[(String, String)], id: &str, name: &str) -> Presence {
    let target_of = |reference: &str| {
        listing
            .iter()
            .find(|(r, _)| r == reference)
            .map(|(_, d)| d.clone())
    };
    match (target_of(id), target_of(name)) {
        (Some(by_id), Some(by_name)) if by_id == by_name => Presence::Present,
        // The node's image is exactly what the engine calls the image (an index or manifest).
        (_, Some(by_name)) if by_name == id => Presence::Present,
        (Some(_), _) => Presence::UnderOtherNames,
        (None, Some(by_name)) => Presence::Check(by_name),
        (None, None) => Presence::Missing,
    }
}

/// The config digest (= Docker's image ID) of an image manifest; `None` for an index or junk.
fn manifest_config_digest(manifest: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    value
        .get("config")?
        .get("digest")?
        .as_str()
        .map(str::to_string)
}

/// The CRI plugin's snapshotter from `containerd config dump` output, read as TOML (the `toml`
/// crate: containerd 2.x writes single-quoted keys, 1.x double-quoted ones), by the config's
/// `version`:
/// - 3 and later (containerd 2.x): `plugins.'io.containerd.cri.v1.images'.snapshotter`;
/// - 2 (containerd 1.5–1.7): `plugins."io.containerd.grpc.v1.cri".containerd.snapshotter`;
/// - 1 (no `version`, containerd ≤ 1.4): `plugins.cri.containerd.snapshotter`.
///
/// A missing or empty key means containerd's default, `overlayfs`; text that is not TOML is an
/// error (guessing a snapshotter would import into the wrong one).
fn snapshotter_from_config(config: &str) -> Result<String, String> {
    let (table, version) = containerd_dump(config)?;
    let path: &[&str] = match version {
        v if v >= 3 => &["plugins", "io.containerd.cri.v1.images", "snapshotter"],
        2 => &[
            "plugins",
            "io.containerd.grpc.v1.cri",
            "containerd",
            "snapshotter",
        ],
        _ => &["plugins", "cri", "containerd", "snapshotter"],
    };
    Ok(lookup_str(&table, path)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SNAPSHOTTER)
        .to_string())
}

/// The CRI plugin's registry hosts directories (`registry.config_path`, `:`-separated) from
/// `containerd config dump` output: config version 3 and later under
/// `plugins.'io.containerd.cri.v1.images'.registry`, 2 under
/// `plugins."io.containerd.grpc.v1.cri".registry`. Empty when unset (the node then knows no
/// mirror from a hosts directory).
pub fn registry_config_path_from_config(config: &str) -> Result<Vec<String>, String> {
    let (table, version) = containerd_dump(config)?;
    let plugin = match version {
        v if v >= 3 => "io.containerd.cri.v1.images",
        2 => "io.containerd.grpc.v1.cri",
        _ => "cri",
    };
    let path =
        lookup_str(&table, &["plugins", plugin, "registry", "config_path"]).unwrap_or_default();
    Ok(path
        .split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

/// `containerd config dump` as TOML, with its config `version` (1 when absent, containerd ≤ 1.4).
fn containerd_dump(config: &str) -> Result<(toml::Table, i64), String> {
    let table: toml::Table = config.parse().map_err(|e: toml::de::Error| {
        format!("`containerd config dump` is not TOML: {}", e.message())
    })?;
    let version = table
        .get("version")
        .and_then(toml::Value::as_integer)
        .unwrap_or(1);
    Ok((table, version))
}

/// The string at `path` in `table`, if every key on the way is there.
fn lookup_str<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a str> {
    let (last, tables) = path.split_last()?;
    let mut here = table;
    for key in tables {
        here = here.get(*key)?.as_table()?;
    }
    here.get(*last)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_hosts_directory_is_read_per_config_version() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n";
        assert_eq!(
            registry_config_path_from_config(v2).unwrap(),
            ["/etc/containerd/certs.d", "/etc/docker/certs.d"]
        );
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/containerd/certs.d'\n";
        assert_eq!(
            registry_config_path_from_config(v3).unwrap(),
            ["/etc/containerd/certs.d"]
        );
        let unset =
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n";
        assert!(registry_config_path_from_config(unset).unwrap().is_empty());
    }

    #[test]
    fn a_command_that_ran_and_failed_is_not_retried_whatever_it_says() {
        let out = |stderr: &str| {
            Ok(crate::adapters::docker::ExecOutput {
                exit_code: 1,
                stdout: String::new(),
                stderr: stderr.into(),
            })
        };
        // The first is what two imports of the same image into one node at once could get;
        // this process no longer runs two imports into one node at once (`lock_imports`).
        for stderr in [
            "ctr: image \"import-2026-12-02@sha256:03\": already exists",
            "ctr: unrecognized image format",
        ] {
            let e = checked(&["ctr"], out(stderr)).unwrap_err();
            assert!(!e.transient, "{}", e.message);
            assert!(e.message.contains(stderr), "{}", e.message);
        }
    }

    fn lock_ctx(cancel: &CancellationToken) -> TaskCtx {
        let (tx, _rx) = mpsc::unbounded_channel();
        TaskCtx::new(
            Arc::from("load"),
            1,
            cancel.clone(),
            tx,
            tokio::time::Instant::now(),
        )
    }

    fn names(nodes: &[&str]) -> Vec<String> {
        nodes.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn a_load_waiting_for_a_nodes_import_lock_holds_none_of_the_nodes_after_it() {
        let cancel = CancellationToken::new();
        let ctx = lock_ctx(&cancel);
        let host = "unix:///lock-order-test";
        let held = lock_imports(host, &names(&["n1", "n2"]), &ctx)
            .await
            .unwrap();
        // Asked for n3 then n2: it waits for n2 first and so does not hold n3 meanwhile.
        let waiting = tokio::spawn({
            let ctx = lock_ctx(&cancel);
            async move {
                lock_imports(host, &names(&["n3", "n2"]), &ctx)
                    .await
                    .map(|g| g.len())
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = tokio::time::timeout(
            Duration::from_secs(5),
            lock_imports(host, &names(&["n3"]), &ctx),
        )
        .await
        .expect("n3 is free while the other load waits for n2")
        .unwrap();
        drop(third);
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(waiting.await.unwrap(), Some(2));
        // Another engine's nodes of the same names are other nodes.
        let _a = lock_imports(host, &names(&["n1"]), &ctx).await.unwrap();
        let n1 = names(&["n1"]);
        let other = lock_imports("unix:///other-engine", &n1, &ctx);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), other)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn waiting_for_an_import_lock_ends_on_cancellation() {
        let host = "unix:///lock-cancel-test";
        let ctx = lock_ctx(&CancellationToken::new());
        let _held = lock_imports(host, &names(&["n1"]), &ctx).await.unwrap();
        let cancel = CancellationToken::new();
        let waiting = tokio::spawn({
            let ctx = lock_ctx(&cancel);
            async move { lock_imports(host, &names(&["n1"]), &ctx).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        assert!(!waiting.await.unwrap(), "a cancelled wait takes no lock");
    }

    #[test]
    fn names_are_normalised_as_kind_does() {
        assert_eq!(
            normalize_image_name("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_image_name("busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            normalize_image_name("kprov/base:latest"),
            "docker.io/kprov/base:latest"
        );
        assert_eq!(
            normalize_image_name("kprov/base"),
            "docker.io/kprov/base:latest"
        );
        assert_eq!(
            normalize_image_name("docker.io/library/redis:7"),
            "docker.io/library/redis:7"
        );
        assert_eq!(
            normalize_image_name("localhost/kprov/ds:kprov-0123"),
            "localhost/kprov/ds:kprov-0123"
        );
        assert_eq!(
            normalize_image_name("localhost/kprov/ds"),
            "localhost/kprov/ds:latest"
        );
        assert_eq!(
            normalize_image_name("quay.io/org/img:v1"),
            "quay.io/org/img:v1"
        );
        assert_eq!(
            normalize_image_name("registry:5000/img"),
            "registry:5000/img:latest"
        );
        assert_eq!(
            normalize_image_name("postgres@sha256:abc"),
            "docker.io/library/postgres@sha256:abc"
        );
    }

    const LS: &str = "\
REF                                    TYPE                                                 DIGEST                                                                  SIZE      PLATFORMS   LABELS
docker.io/library/app:v1               application/vnd.docker.distribution.manifest.v2+json sha256:1111111111111111111111111111111111111111111111111111111111111111 2.1 MiB   linux/amd64 io.cri-containerd.image=managed
sha256:aaaa                            application/vnd.docker.distribution.manifest.v2+json sha256:1111111111111111111111111111111111111111111111111111111111111111 2.1 MiB   linux/amd64 io.cri-containerd.image=managed
docker.io/library/other:v1             application/vnd.docker.distribution.manifest.v2+json sha256:2222222222222222222222222222222222222222222222222222222222222222 1.0 MiB   linux/amd64 -
";

    #[test]
    fn presence_is_read_from_ctr_images_ls() {
        let listing = parse_images_ls(LS);
        assert_eq!(listing.len(), 3);
        assert_eq!(
            presence(&listing, "sha256:aaaa", "docker.io/library/app:v1"),
            Presence::Present
        );
        assert_eq!(
            presence(&listing, "sha256:aaaa", "docker.io/library/app:v2"),
            Presence::UnderOtherNames
        );
        assert_eq!(
            presence(&listing, "sha256:aaaa", "docker.io/library/other:v1"),
            Presence::UnderOtherNames
        );
        assert_eq!(
            presence(&listing, "sha256:bbbb", "docker.io/library/other:v1"),
            Presence::Check(format!("sha256:{}", "2".repeat(64)))
        );
        assert_eq!(
            presence(&listing, "sha256:bbbb", "docker.io/library/new:v1"),
            Presence::Missing
        );
        assert!(parse_images_ls("REF TYPE DIGEST SIZE PLATFORMS LABELS\n").is_empty());
        // The name's target is the engine's ID itself (an index, as the containerd store
        // names images).
        let index = format!("sha256:{}", "2".repeat(64));
        assert_eq!(
            presence(&listing, &index, "docker.io/library/other:v1"),
            Presence::Present
        );
    }

    #[test]
    fn the_engine_id_label_is_read_from_the_name_row() {
        let text = format!(
            "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
             docker.io/library/app:v1 application/vnd.oci.image.manifest.v1+json sha256:11 2.1 MiB linux/amd64 \
             io.cri-containerd.image=managed,{ENGINE_ID_LABEL}=sha256:idx\n\
             docker.io/library/b:v1 application/vnd.oci.image.manifest.v1+json sha256:22 2.1 MiB linux/amd64 -\n"
        );
        assert!(labelled_with_engine_id(
            &text,
            "docker.io/library/app:v1",
            "sha256:idx"
        ));
        assert!(!labelled_with_engine_id(
            &text,
            "docker.io/library/app:v1",
            "sha256:other"
        ));
        assert!(!labelled_with_engine_id(
            &text,
            "docker.io/library/b:v1",
            "sha256:idx"
        ));
    }

    /// `containerd config dump` of containerd 1.6 (Debian 12's 1.6.20, the test node's), cut down
    /// to the sections around the CRI plugin: config version 2, double-quoted keys.
    const DUMP_1_6: &str = r#"disabled_plugins = []
imports = ["/etc/containerd/config.toml"]
oom_score = 0
plugin_dir = ""
required_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
temp = ""
version = 2

[cgroup]
  path = ""

[plugins]

  [plugins."io.containerd.gc.v1.scheduler"]
    deletion_threshold = 0
    mutation_threshold = 100

  [plugins."io.containerd.grpc.v1.cri"]
    device_ownership_from_security_context = false
    disable_apparmor = false
    sandbox_image = "registry.k8s.io/pause:3.6"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      disable_snapshot_annotations = true
      discard_unpacked_layers = false
      no_pivot = false
      snapshotter = "native"

      [plugins."io.containerd.grpc.v1.cri".containerd.default_runtime]
        runtime_type = ""

        [plugins."io.containerd.grpc.v1.cri".containerd.default_runtime.options]

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = false

  [plugins."io.containerd.snapshotter.v1.native"]
    root_path = ""

  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    root_path = ""
    upperdir_label = false

[timeouts]
  "io.containerd.timeout.shim.cleanup" = "5s"
"#;

    /// containerd 1.7 (kindest/node up to v1.31): still config version 2 and double quotes, with
    /// 1.7's per-runtime `snapshotter` (empty: the plugin-wide one applies) and sandbox mode.
    const DUMP_1_7: &str = r#"disabled_plugins = []
imports = ["/etc/containerd/config.toml"]
oom_score = 0
plugin_dir = ""
required_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
temp = ""
version = 2

[plugins]

  [plugins."io.containerd.grpc.v1.cri"]
    enable_cdi = false
    restrict_oom_score_adj = false
    sandbox_image = "registry.k8s.io/pause:3.10"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      discard_unpacked_layers = true
      snapshotter = "fuse-overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          base_runtime_spec = "/etc/containerd/cri-base.json"
          runtime_type = "io.containerd.runc.v2"
          sandbox_mode = "podsandbox"
          snapshotter = ""

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"

  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    mount_options = []
    root_path = ""
    sync_remove = false
"#;

    /// containerd 2.x (current kindest/node images): config version 3, single-quoted keys and
    /// strings, the image service split out of the CRI plugin.
    const DUMP_2_X: &str = r#"version = 3
root = '/var/lib/containerd'
state = '/run/containerd'
temp = ''
disabled_plugins = []
required_plugins = []
oom_score = 0
imports = ['/etc/containerd/config.toml']

[grpc]
  address = '/run/containerd/containerd.sock'
  uid = 0
  gid = 0

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    disable_snapshot_annotations = true
    discard_unpacked_layers = true
    max_concurrent_downloads = 3
    image_pull_progress_timeout = '5m0s'
    image_pull_with_sync_fs = false
    stats_collect_period = 10
    use_local_image_pull = false

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'

    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '/etc/containerd/certs.d'

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    max_container_log_line_size = 16384

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          base_runtime_spec = '/etc/containerd/cri-base.json'
          snapshotter = ''
          sandboxer = 'podsandbox'

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = true

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  [plugins.'io.containerd.snapshotter.v1.overlayfs']
    root_path = ''
    upperdir_label = false
    sync_remove = false
    slow_chown = false
    mount_options = []

[timeouts]
  'io.containerd.timeout.shim.cleanup' = '5s'
"#;

    #[test]
    fn the_snapshotter_is_read_from_containerd_1_6_1_7_and_2_x_dumps() {
        assert_eq!(snapshotter_from_config(DUMP_1_6).unwrap(), "native");
        assert_eq!(snapshotter_from_config(DUMP_1_7).unwrap(), "fuse-overlayfs");
        assert_eq!(
            snapshotter_from_config(&DUMP_2_X.replace("'overlayfs'", "'stargz'")).unwrap(),
            "stargz"
        );
        assert_eq!(snapshotter_from_config(DUMP_2_X).unwrap(), "overlayfs");
    }

    #[test]
    fn the_config_version_decides_which_section_counts() {
        // A version 3 config keeps no snapshotter under the old CRI section, and a version 2
        // config none under the new one: each is read only where its version puts it.
        let v3_with_old_section = format!(
            "{}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"old\"\n",
            DUMP_2_X.replace("'overlayfs'", "'new'")
        );
        assert_eq!(
            snapshotter_from_config(&v3_with_old_section).unwrap(),
            "new"
        );
        let v2_with_new_section =
            format!("{DUMP_1_6}\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'new'\n");
        assert_eq!(
            snapshotter_from_config(&v2_with_new_section).unwrap(),
            "native"
        );
        // Version 1 (no version key): `plugins.cri`.
        let v1 =
            "root = \"/var/lib/containerd\"\n[plugins.cri.containerd]\n  snapshotter = \"zfs\"\n";
        assert_eq!(snapshotter_from_config(v1).unwrap(), "zfs");
    }

    #[test]
    fn a_missing_or_empty_snapshotter_is_containerds_default() {
        assert_eq!(
            snapshotter_from_config("version = 2\n").unwrap(),
            "overlayfs"
        );
        assert_eq!(snapshotter_from_config("").unwrap(), "overlayfs");
        assert_eq!(
            snapshotter_from_config(
                &DUMP_2_X.replace("snapshotter = 'overlayfs'", "snapshotter = ''")
            )
            .unwrap(),
            "overlayfs"
        );
        assert_eq!(
            snapshotter_from_config("version = 3\n[plugins]\n  plugins = 1\n").unwrap(),
            "overlayfs"
        );
    }

    #[test]
    fn a_dump_that_is_not_toml_is_an_error() {
        let err =
            snapshotter_from_config("version = 2\n[plugins\nsnapshotter = \"x\"\n").unwrap_err();
        assert!(err.contains("not TOML"), "{err}");
    }

    #[test]
    fn the_config_digest_is_read_from_a_manifest() {
        let manifest = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:cfg","size":1},"layers":[]}"#;
        assert_eq!(
            manifest_config_digest(manifest).as_deref(),
            Some("sha256:cfg")
        );
        assert_eq!(manifest_config_digest(r#"{"manifests":[]}"#), None);
    }

    #[test]
    fn a_report_is_cached_only_when_every_node_had_the_image() {
        let mut report = LoadReport {
            name: "n".into(),
            nodes: BTreeMap::new(),
            exported_bytes: 0,
        };
        report.nodes.insert("a".into(), NodeAction::Present);
        assert_eq!(report.done(), Done::Cached);
        report.nodes.insert("b".into(), NodeAction::Retagged);
        assert_eq!(report.done(), Done::Ran);
    }
}
