//! The work of each planned task: adapters and task functions composed, sharing one
//! [`RunState`] (built images, the cluster, the API client).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use super::{render, steps};
use crate::adapters::{docker::Engine, kube::Kube, kube::Object};
use crate::engine::{BoxFuture, Done, TaskCtx, TaskError, Work};
use crate::plan::{PlannedTask, TaskKind};
use crate::profile::{ManifestEntry, Profile, Supplied, template};
use crate::tasks::image_cache::SaveReport;
use crate::tasks::{
    apply::{self, Manifest},
    build::{self, BuildRequest, BuiltImage},
    cluster::{self, ClusterInfo, ClusterRequest},
    diagnostics,
    image_cache::{self, ImageCache, SaveRequest, Saved},
    load, pull,
    registry::{self, LocalRegistry},
    tls,
    wait::{self, WaitTarget},
};

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
const CRD_TIMEOUT: Duration = Duration::from_secs(120);

/// What `kprov up` was asked to do, resolved.
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub profile: Profile,
    pub source: PathBuf,
    pub coverage: bool,
    pub reuse: bool,
    pub no_cache: bool,
    /// Existing-cluster mode: a kubeconfig and/or context of a cluster kprov did not create.
    pub existing: Option<(Option<PathBuf>, Option<String>)>,
    /// Where this run's logs and diagnostics go.
    pub log_dir: PathBuf,
    /// The per-service coverdata directory (coverage mode).
    pub coverdata: PathBuf,
    /// The kubeconfig file to write the cluster's context into.
    pub kubeconfig: PathBuf,
    /// kprov's cache (manifests downloaded by URL, kept by digest).
    pub cache_dir: PathBuf,
    /// `--image-cache`: built images kept as archives, restored instead of rebuilt.
    pub image_cache: Option<ImageCache>,
}

/// State shared by the tasks of one run.
pub struct RunState {
    pub req: UpRequest,
    pub engine: Engine,
    images: Mutex<BTreeMap<String, BuiltImage>>,
    pub cluster: OnceLock<ClusterInfo>,
    kube: OnceLock<Kube>,
    /// The CRD names `apply:crds` applied, for `wait:crds`.
    crd_names: OnceLock<Vec<String>>,
    /// What each component, hook and step applied, for the final wait (rendered once).
    applied: Mutex<BTreeMap<String, Vec<Object>>>,
    /// Values produced at run time (`{{ runtime.NAME }}`), secrets included: never logged.
    runtime: Mutex<BTreeMap<String, String>>,
    /// The answer that ended each `http` step, for `httpResponse` values: never logged.
    answers: Mutex<BTreeMap<String, crate::adapters::http::Answer>>,
    /// Where `config.tls.caFile` wrote the CA, for the run record.
    pub ca_file: OnceLock<PathBuf>,
    /// The host files `config.secrets` named, by digest, for the run record.
    pub host_files: Mutex<Vec<crate::record::HostFileRecord>>,
    /// kubectl and helm, for manifests from kustomize directories and charts.
    tools: crate::tasks::remote::Tools,
    /// Image cache saves started after builds, awaited when the run's tasks are done.
    saves: Mutex<Vec<tokio::task::JoinHandle<SaveReport>>>,
    /// Stops saves still running (an interrupted run).
    pub(super) save_cancel: tokio_util::sync::CancellationToken,
    /// Archives a build could not use, by image key.
    cache_problems: Mutex<BTreeMap<String, String>>,
    /// `cluster.registry: local`: where images are pushed, once `registry:local` ran.
    registry: OnceLock<LocalRegistry>,
    /// The references pushed to it: the nodes pull them (`imagePullPolicy: IfNotPresent`).
    pushed: Mutex<Vec<String>>,
}

impl RunState {
    pub fn new(req: UpRequest, engine: Engine) -> RunState {
        // The images the nodes pull themselves: known by reference from the start.
        let pulled: BTreeMap<String, BuiltImage> = req
            .profile
            .spec
            .images
            .iter()
            .filter_map(|(k, i)| match &i.supplied {
                Some(Supplied::Registry {
                    reference,
                    nodes_pull: true,
                }) => Some((
                    k.clone(),
                    BuiltImage {
                        reference: reference.clone(),
                        id: String::new(),
                        builder: None,
                    },
                )),
                _ => None,
            })
            .collect();
        RunState {
            req,
            engine,
            images: Mutex::new(pulled),
            cluster: OnceLock::new(),
            kube: OnceLock::new(),
            crd_names: OnceLock::new(),
            applied: Mutex::default(),
            runtime: Mutex::default(),
            answers: Mutex::default(),
            ca_file: OnceLock::new(),
            host_files: Mutex::default(),
            tools: crate::tasks::remote::Tools::find(),
            saves: Mutex::default(),
            save_cancel: tokio_util::sync::CancellationToken::new(),
            cache_problems: Mutex::default(),
            registry: OnceLock::new(),
            pushed: Mutex::default(),
        }
    }

    /// Saves `image` into the image cache in the background (the run goes on; the saves are
    /// awaited by [`RunState::finish_saves`]).
    fn spawn_save(&self, key: &str, image: &BuiltImage, inputs: String) {
        let Some(cache) = self.req.image_cache.clone() else {
            return;
        };
        let engine = self.engine.clone();
        let cancel = self.save_cancel.clone();
        let req = SaveRequest {
            image: key.to_string(),
            reference: image.reference.clone(),
            id: image.id.clone(),
            inputs,
        };
        let handle =
            tokio::spawn(async move { image_cache::save(&engine, &cache, req, &cancel).await });
        self.saves.lock().expect("not poisoned").push(handle);
    }

    /// Waits for the image cache's saves; what they did, for the run record.
    pub(super) async fn finish_saves(&self) -> Option<crate::record::ImageCacheRecord> {
        let cache = self.req.image_cache.as_ref()?;
        let started = std::time::Instant::now();
        let handles = std::mem::take(&mut *self.saves.lock().expect("not poisoned"));
        let mut record = crate::record::ImageCacheRecord {
            dir: cache.dir.display().to_string(),
            unusable: self.cache_problems.lock().expect("not poisoned").clone(),
            ..Default::default()
        };
        for h in handles {
            let Ok(report) = h.await else { continue };
            let image = report.request.image.clone();
            match report.saved {
                Saved::Written { bytes, took } => record.saved.push(crate::record::SavedArchive {
                    image,
                    inputs: report.request.inputs,
                    bytes,
                    ms: took.as_millis() as u64,
                }),
                Saved::Skipped(why) => {
                    record.not_saved.insert(image, why.to_string());
                }
                Saved::Failed(why) => {
                    record.not_saved.insert(image, why);
                }
            }
            record.evicted.extend(report.evicted);
        }
        record.after_run_ms = started.elapsed().as_millis() as u64;
        Some(record)
    }

    /// Host files a Secret read (or skipped), for the run record, after those recorded.
    fn record_host_files(&self, records: Vec<crate::record::HostFileRecord>) {
        self.host_files
            .lock()
            .expect("not poisoned")
            .extend(records);
    }

    fn set_ca_file(&self, path: PathBuf) {
        let _ = self.ca_file.set(path);
    }

    pub(super) fn profile(&self) -> &Profile {
        &self.req.profile
    }

    /// The builder each built image came from (`buildkit`, `classic`), by image key.
    pub fn builders(&self) -> BTreeMap<String, String> {
        let images = self.images.lock().expect("not poisoned");
        images
            .iter()
            .filter_map(|(k, i)| i.builder.map(|b| (k.clone(), b.as_str().to_string())))
            .collect()
    }

    /// The run-time values the profile marks `export: true`, as produced so far.
    pub(super) fn exported_values(&self) -> BTreeMap<String, String> {
        let runtime = self.runtime.lock().expect("not poisoned");
        self.profile()
            .exported_values()
            .into_iter()
            .filter_map(|n| runtime.get(&n).map(|v| (n, v.clone())))
            .collect()
    }

    pub(super) fn set_runtime(&self, name: &str, value: String) {
        self.runtime
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), value);
    }

    pub(super) fn set_answer(&self, step: &str, answer: crate::adapters::http::Answer) {
        self.answers
            .lock()
            .expect("not poisoned")
            .insert(step.to_string(), answer);
    }

    pub(super) fn answer(&self, step: &str) -> Option<crate::adapters::http::Answer> {
        self.answers
            .lock()
            .expect("not poisoned")
            .get(step)
            .cloned()
    }

    pub(super) fn applied(&self, name: &str) -> Vec<Object> {
        let applied = self.applied.lock().expect("not poisoned");
        applied.get(name).cloned().unwrap_or_default()
    }

    pub(super) fn set_applied(&self, name: &str, objects: Vec<Object>) {
        self.applied
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), objects);
    }

    /// The template values of this run so far: the profile's, the built images, the host
    /// ports and the run-time values produced (over their placeholders), and `values`.
    pub(super) fn values(&self, values: &BTreeMap<String, String>) -> template::Values {
        let images: BTreeMap<String, String> = self
            .images
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.reference.clone()))
            .collect();
        let mut vals = self
            .profile()
            .template_values(values, &images, &self.host_ports());
        for (k, v) in self.runtime.lock().expect("not poisoned").iter() {
            vals.insert(format!("runtime.{k}"), v.clone());
        }
        if let Some(c) = self.cluster.get() {
            vals.insert("context".into(), c.context.clone());
        }
        if let Some(dir) = self.req.kubeconfig.parent() {
            vals.insert("kubeconfigDir".into(), dir.display().to_string());
        }
        vals
    }

    pub(super) fn kube(&self) -> Result<&Kube, TaskError> {
        self.kube
            .get()
            .ok_or_else(|| TaskError::fatal("no cluster connection (the cluster task did not run)"))
    }

    fn image(&self, name: &str) -> Result<BuiltImage, TaskError> {
        self.images
            .lock()
            .expect("not poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| TaskError::fatal(format!("image {name} was not built")))
    }

    /// The instrumented images' references (coverage mode).
    fn instrumented(&self) -> Vec<String> {
        if !self.req.coverage {
            return Vec::new();
        }
        let images = self.images.lock().expect("not poisoned");
        self.profile()
            .spec
            .images
            .iter()
            .filter(|(_, s)| {
                s.build
                    .as_ref()
                    .is_some_and(|b| !b.coverage_args.is_empty())
            })
            .filter_map(|(n, _)| images.get(n).map(|i| i.reference.clone()))
            .collect()
    }

    pub(super) fn host_ports(&self) -> BTreeMap<String, u16> {
        let Some(c) = self.cluster.get() else {
            return BTreeMap::new();
        };
        self.profile()
            .spec
            .ports
            .iter()
            .filter_map(|(name, p)| c.host_ports.get(&p.node_port).map(|h| (name.clone(), *h)))
            .collect()
    }

    /// A component's, hook's or step's manifests, templated and parsed; coverage applied.
    pub(super) async fn render(
        &self,
        entries: &[ManifestEntry],
        values: &BTreeMap<String, String>,
        ctx: &TaskCtx,
    ) -> Result<Vec<Object>, TaskError> {
        let progress = |line: String| ctx.progress(line);
        let fetch = render::Fetch {
            cache_dir: &self.req.cache_dir,
            tools: &self.tools,
            cancel: &ctx.cancel,
            progress: &progress,
        };
        let sources =
            render::read_entries(self.profile(), &self.req.source, entries, &fetch, &ctx.id)
                .await
                .map_err(TaskError::fatal)?;
        let vals = self.values(values);
        let mut pulled_by_nodes = crate::profile::sources::pulled_by_nodes(self.profile());
        pulled_by_nodes.extend(self.pushed.lock().expect("not poisoned").iter().cloned());
        let rules = render::ImageRules {
            instrumented: self.instrumented(),
            pulled_by_nodes,
        };
        render::render_manifests(self.profile(), &self.req.source, &sources, &vals, &rules)
            .map_err(TaskError::fatal)
    }

    pub(super) fn diagnostics(&self, name: &str) -> diagnostics::DiagnosticsSpec {
        diagnostics::DiagnosticsSpec {
            dir: self.req.log_dir.join(format!("diagnostics-{name}")),
            engine: self.req.existing.is_none().then(|| self.engine.clone()),
            nodes: self
                .cluster
                .get()
                .map(|c| c.nodes.clone())
                .unwrap_or_default(),
        }
    }

    pub(super) fn timeout(spec: Option<&String>) -> Duration {
        spec.and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_READY_TIMEOUT)
    }

    /// The readiness targets of a component or hook: its workloads and its HTTP endpoint.
    fn wait_target(
        &self,
        name: &str,
        objects: &[Object],
        ready: (Option<&String>, Duration, bool),
        values: &BTreeMap<String, String>,
    ) -> Result<WaitTarget, TaskError> {
        let (http, timeout, workloads) = ready;
        // Rendered with the same values the manifests get (and validation checked).
        let url =
            match http {
                Some(u) => Some(template::render(u, &self.values(values)).map_err(|e| {
                    TaskError::fatal(format!("{name}: ready.http: {}", e[0].message))
                })?),
                None => None,
            };
        Ok(WaitTarget {
            component: name.to_string(),
            objects: if workloads {
                objects
                    .iter()
                    .filter(|o| matches!(o.kind(), "Deployment" | "StatefulSet" | "Job"))
                    .map(Object::object_ref)
                    .collect()
            } else {
                Vec::new()
            },
            http: url,
            deadline: timeout,
        })
    }
}

/// The engine's view of one planned task.
pub struct TaskWork {
    pub state: Arc<RunState>,
    pub task: PlannedTask,
}

impl Work for TaskWork {
    fn run<'a>(&'a self, ctx: &'a TaskCtx) -> BoxFuture<'a, Result<Done, TaskError>> {
        Box::pin(async move {
            let s = &*self.state;
            let subject = self.task.subject.as_deref().unwrap_or_default();
            match self.task.kind {
                TaskKind::Build => build(s, subject, ctx).await,
                TaskKind::Pull => pull(s, subject, ctx).await,
                TaskKind::Binary => {
                    let req = crate::tasks::binary::BinaryRequest {
                        name: subject,
                        spec: &s.profile().spec.binaries[subject],
                        source: &s.req.source,
                        coverage: s.req.coverage,
                        no_cache: s.req.no_cache,
                        log_dir: &s.req.log_dir,
                        cache_dir: &s.req.cache_dir,
                    };
                    crate::tasks::binary::build_binary(&req, ctx).await
                }
                TaskKind::Cluster => cluster(s, ctx).await,
                TaskKind::Crds => crds(s, ctx).await,
                TaskKind::Established => established(s, ctx).await,
                TaskKind::Config => config(s, ctx).await,
                TaskKind::Load => {
                    let image = s.image(subject)?;
                    let name = &s
                        .cluster
                        .get()
                        .ok_or_else(|| TaskError::fatal("no cluster"))?
                        .name;
                    load::load_image(&s.engine, name, &image, ctx).await
                }
                TaskKind::Registry => local_registry(s, ctx).await,
                TaskKind::Push => push(s, subject, ctx).await,
                TaskKind::Deploy => deploy(s, subject, ctx).await,
                TaskKind::Hook => hook(s, subject, ctx).await,
                TaskKind::Value => steps::runtime_value(s, subject, ctx).await,
                TaskKind::Step => steps::step(s, subject, ctx).await,
                TaskKind::Secret => late_secret(s, ctx).await,
                TaskKind::Wait => wait_all(s, ctx).await,
            }
        })
    }
}

/// The build of the profile's image `name` (`None`: not a build), paths resolved against
/// `source`, the coverage args merged in for a coverage run.
pub fn build_request(
    profile: &Profile,
    source: &std::path::Path,
    name: &str,
    coverage: bool,
    log_dir: PathBuf,
) -> Option<BuildRequest> {
    let image = profile.spec.images.get(name)?;
    let spec = image.build.as_ref()?;
    let mut args = spec.args.clone();
    if coverage {
        args.extend(spec.coverage_args.clone());
    }
    let mut labels = spec.labels.clone();
    labels.insert("dev.kprov.service".into(), profile.service.clone());
    let context = profile.resolve(source, &spec.context);
    let dockerfile = match &spec.dockerfile {
        Some(d) => profile.resolve(source, d),
        None => context.join("Dockerfile"),
    };
    let repository = image
        .repository
        .clone()
        .unwrap_or_else(|| format!("localhost/kprov/{name}"));
    Some(BuildRequest {
        image: name.to_string(),
        repository,
        context,
        dockerfile,
        target: spec.target.clone(),
        args,
        labels,
        coverage: coverage && !spec.coverage_args.is_empty(),
        no_cache: false,
        log_dir,
    })
}

async fn build(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let mut req = build_request(
        s.profile(),
        &s.req.source,
        name,
        s.req.coverage,
        s.req.log_dir.clone(),
    )
    .expect("planned as a build");
    req.no_cache = s.req.no_cache;
    let built = build::build_image_cached(&s.engine, &req, s.req.image_cache.as_ref(), ctx).await?;
    if let Some(why) = built.cache_problem {
        s.cache_problems
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), why);
    }
    // A restored image is in the cache already; a built or cached one is saved unless it is.
    if built.done != Done::Restored {
        s.spawn_save(name, &built.image, built.inputs);
    }
    s.images
        .lock()
        .expect("not poisoned")
        .insert(name.to_string(), built.image);
    Ok(built.done)
}

async fn pull(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let spec = &s.profile().spec.images[name];
    let (image, done) = match (&spec.supplied, &spec.external) {
        (Some(Supplied::Local(r)), _) => pull::use_local(&s.engine, name, r, ctx).await?,
        (Some(Supplied::Registry { reference, .. }), _) => {
            pull::pull_registry(&s.engine, name, reference, ctx).await?
        }
        (None, Some(r)) => pull::ensure_external(&s.engine, r, ctx).await?,
        (None, None) => unreachable!("a pull task is planned for a supplied or external image"),
    };
    s.images
        .lock()
        .expect("not poisoned")
        .insert(name.to_string(), image);
    Ok(done)
}

/// `registry:local`: kprov's registry container, or the one a cluster kprov does not own
/// advertises.
async fn local_registry(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let (local, done) = match &s.req.existing {
        Some(_) => (registry::advertised(s.kube()?, ctx).await?, Done::Cached),
        None => registry::ensure_local(&s.engine, ctx).await?,
    };
    let _ = s.registry.set(local);
    Ok(done)
}

/// `push:<image>`: the image this run built or pulled, pushed once; the nodes pull it.
async fn push(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let local = s
        .registry
        .get()
        .ok_or_else(|| TaskError::fatal("no local registry (registry:local did not run)"))?;
    let image = s.image(name)?;
    let spec = &s.profile().spec.images[name];
    let as_name = crate::profile::sources::registry_name(name, spec);
    let (pulled_as, done) = registry::push(&s.engine, local, &as_name, &image, ctx).await?;
    s.pushed
        .lock()
        .expect("not poisoned")
        .push(pulled_as.reference.clone());
    s.images
        .lock()
        .expect("not poisoned")
        .insert(name.to_string(), pulled_as);
    Ok(done)
}

/// The profile's named ports as kind port mappings on loopback. `hostPort: 0` keeps the
/// mapping the user's kind config has for that NodePort (`tasks::cluster::kind_config`), else
/// becomes a free port when the cluster is created.
fn port_mappings(profile: &Profile) -> Vec<crate::profile::PortMapping> {
    profile
        .spec
        .ports
        .values()
        .map(|p| crate::profile::PortMapping {
            container_port: p.node_port,
            host_port: p.host_port,
            listen_address: Some("127.0.0.1".into()),
            protocol: None,
        })
        .collect()
}

async fn cluster(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let (info, done) = match &s.req.existing {
        Some((kubeconfig, context)) => {
            let info = cluster::existing_cluster(kubeconfig.clone(), context.clone())
                .await
                .map_err(TaskError::from)?;
            (info, Done::Cached)
        }
        None => {
            let mut spec = s.profile().spec.cluster.clone().unwrap_or_default();
            spec.name = Some(s.profile().cluster_name());
            spec.extra_port_mappings.extend(port_mappings(s.profile()));
            if s.profile().local_registry() {
                spec.containerd_config_patches
                    .push(registry::CONTAINERD_PATCH.to_string());
            }
            let req = ClusterRequest {
                name: s.profile().cluster_name(),
                spec,
                source: s.req.source.clone(),
                coverage_dir: s.req.coverage.then(|| s.req.coverdata.clone()),
                reuse: s.req.reuse,
                kubeconfig: s.req.kubeconfig.clone(),
                service: Some(s.profile().service.clone()),
            };
            cluster::ensure_cluster(&s.engine, &req, ctx).await?
        }
    };
    let kube = Kube::connect(Some(&info.kubeconfig), Some(&info.context))
        .await
        .map_err(TaskError::from)?;
    if s.profile().local_registry() && s.req.existing.is_none() {
        registry::wire_nodes(&s.engine, &info.nodes, &kube, ctx).await?;
    }
    let _ = s.kube.set(kube);
    let _ = s.cluster.set(info);
    Ok(done)
}

fn crd_objects(s: &RunState) -> Result<Vec<Object>, TaskError> {
    let mut objects = Vec::new();
    for pattern in &s.profile().spec.crds {
        for path in s
            .profile()
            .expand(&s.req.source, pattern)
            .map_err(TaskError::fatal)?
        {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| TaskError::fatal(format!("read CRD file {}: {e}", path.display())))?;
            objects.extend(
                apply::parse_manifests(&Manifest {
                    origin: path.display().to_string(),
                    text,
                })
                .map_err(TaskError::from)?,
            );
        }
    }
    Ok(objects)
}

async fn crds(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let objects = crd_objects(s)?;
    ctx.progress(format!("applying {} CRDs", objects.len()));
    apply::apply_objects(s.kube()?, &objects, ctx).await?;
    let _ = s
        .crd_names
        .set(objects.iter().map(|o| o.name().to_string()).collect());
    Ok(Done::Ran)
}

async fn established(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let names = s
        .crd_names
        .get()
        .ok_or_else(|| TaskError::fatal("no CRDs were applied (apply:crds did not run)"))?;
    apply::wait_established(s.kube()?, names, ctx, CRD_TIMEOUT).await?;
    Ok(Done::Ran)
}

async fn config(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let p = s.profile();
    let kube = s.kube()?;
    // Namespaces first: everything else in the batch lives in them.
    apply::apply_objects(kube, &render::namespace_objects(p), ctx).await?;
    let made = render::config_objects(p, &s.req.source, render::HostFiles::Read)
        .map_err(TaskError::fatal)?;
    for note in &made.notes {
        ctx.progress(note.clone());
    }
    s.record_host_files(made.host_files);
    let mut batch = made.objects;
    if let Some(t) = &p.spec.config.tls {
        batch.extend(tls_material(s, t, ctx).await?);
    }
    batch.extend(
        s.render(&p.spec.config.manifests, &BTreeMap::new(), ctx)
            .await?,
    );
    ctx.progress(format!("applying {} objects", batch.len()));
    apply::apply_objects(kube, &batch, ctx).await?;
    link_service_accounts(kube, &made.links, ctx).await?;
    Ok(Done::Ran)
}

/// Each link's Secret added to its ServiceAccount's `imagePullSecrets` once that exists.
async fn link_service_accounts(
    kube: &Kube,
    links: &[render::PullSecretLink],
    ctx: &TaskCtx,
) -> Result<(), TaskError> {
    for link in links {
        let timeout = crate::tasks::pull_secrets::SERVICE_ACCOUNT_TIMEOUT;
        let changed = crate::tasks::pull_secrets::link(kube, link, timeout, ctx).await?;
        ctx.progress(format!(
            "ServiceAccount {}/{}: image pull Secret {} {}",
            link.namespace,
            link.service_account,
            link.secret,
            if changed { "added" } else { "already there" }
        ));
    }
    Ok(())
}

/// `secret:NAMESPACE/NAME`: a `config.secrets` entry with `after:`, once the components it
/// follows are ready, made as the config batch makes the others (host files read, absent
/// optional ones said and skipped), then its ServiceAccount links.
async fn late_secret(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let p = s.profile();
    // Read first: a file that is not what its type needs fails before the wait.
    let made = render::late_secret_objects(p, &s.req.source, render::HostFiles::Read, &ctx.id)
        .map_err(TaskError::fatal)?;
    for note in &made.notes {
        ctx.progress(note.clone());
    }
    s.record_host_files(made.host_files);
    if made.objects.is_empty() {
        return Ok(Done::Ran);
    }
    let entry = p.spec.config.secrets.iter();
    let after: Vec<String> = entry
        .filter(|e| crate::plan::secret_id(p, e) == ctx.id.as_ref())
        .flat_map(|e| e.after.clone())
        .collect();
    let what = ctx.id.replace([':', '/'], "-");
    steps::wait_for_components(s, &what, &after, None, ctx).await?;
    let kube = s.kube()?;
    ctx.progress(format!("applying {} objects", made.objects.len()));
    apply::apply_objects(kube, &made.objects, ctx).await?;
    link_service_accounts(kube, &made.links, ctx).await?;
    Ok(Done::Ran)
}

/// The CA and certificates of `config.tls`; the CA's PEM becomes `runtime.caBundle` (and
/// `caBundleBase64`, as webhook configurations take it) and is written to `caFile` if set.
async fn tls_material(
    s: &RunState,
    t: &crate::profile::TlsSpec,
    ctx: &TaskCtx,
) -> Result<Vec<Object>, TaskError> {
    use base64::Engine as _;
    let ns = s.profile().namespace();
    let vals = s.values(&BTreeMap::new());
    let render = |what: &str, text: &str| {
        template::render(text, &vals)
            .map_err(|e| TaskError::fatal(format!("config.tls: {what}: {}", e[0].message)))
    };
    let mut sans = Vec::new();
    for c in &t.certificates {
        let rendered: Result<Vec<String>, TaskError> =
            c.sans.iter().map(|san| render(&c.secret, san)).collect();
        sans.push(rendered?);
    }
    let leaves = tls::leaves(t, ns, &sans);
    let objects = tls::tls_objects(s.kube()?, t, ns, &leaves)
        .await
        .map_err(TaskError::from)?;
    let pem = tls::ca_pem(&objects, t)
        .ok_or_else(|| TaskError::fatal("config.tls: no CA certificate was made"))?;
    if let Some(file) = &t.ca_file {
        let path = PathBuf::from(render("caFile", file)?);
        write_private(&path, pem.as_bytes())
            .map_err(|e| TaskError::fatal(format!("write the CA to {}: {e}", path.display())))?;
        ctx.progress(format!("CA written to {}", path.display()));
        s.set_ca_file(path);
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    s.set_runtime(crate::plan::uses::CA_BUNDLE_BASE64, b64);
    s.set_runtime(crate::plan::uses::CA_BUNDLE, pem);
    Ok(objects)
}

/// Writes a file for host-side clients (the CA's PEM, exported values): 0600 from the start,
/// through a temp file beside it and a rename, so a reader never sees half of it.
pub(super) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension(format!("kprov-{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

async fn deploy(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let comp = &s.profile().spec.components[name];
    let objects = s.render(&comp.manifests, &comp.values, ctx).await?;
    let kube = s.kube()?;
    apply::apply_objects(kube, &objects, ctx).await?;
    // CRDs a component brings (a release such as Tekton's) serve their kinds before anything
    // after it applies them: Established, and the discovery cache dropped.
    let crds: Vec<String> = objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .map(|o| o.name().to_string())
        .collect();
    if !crds.is_empty() {
        ctx.progress(format!("waiting for {} CRDs to be Established", crds.len()));
        apply::wait_established(kube, &crds, ctx, CRD_TIMEOUT).await?;
    }
    s.set_applied(name, objects);
    Ok(Done::Ran)
}

async fn hook(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let hook = &s.profile().spec.hooks[name];
    let objects = s.render(&hook.manifests, &hook.values, ctx).await?;
    let kube = s.kube()?;
    apply::apply_objects(kube, &objects, ctx).await?;
    let timeout = RunState::timeout(hook.timeout.as_ref());
    let target = s.wait_target(name, &objects, (None, timeout, true), &hook.values)?;
    s.set_applied(name, objects);
    wait::wait_ready(kube, &[target], ctx, &s.diagnostics(name)).await?;
    Ok(Done::Ran)
}

impl RunState {
    /// What makes component `name` ready: its applied workloads and its HTTP check, with
    /// `timeout` from now.
    pub(super) async fn component_target(
        &self,
        name: &str,
        comp: &crate::profile::ComponentSpec,
        timeout: Duration,
        ctx: &TaskCtx,
    ) -> Result<WaitTarget, TaskError> {
        let applied = self
            .applied
            .lock()
            .expect("not poisoned")
            .get(name)
            .cloned();
        let objects = match applied {
            Some(objects) => objects,
            None => self.render(&comp.manifests, &comp.values, ctx).await?,
        };
        let ready = (comp.ready.http.as_ref(), timeout, comp.ready.workloads);
        self.wait_target(name, &objects, ready, &comp.values)
    }
}

async fn wait_all(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let mut targets = Vec::new();
    for (name, comp) in &s.profile().spec.components {
        let timeout = RunState::timeout(comp.ready.timeout.as_ref());
        let target = s.component_target(name, comp, timeout, ctx).await?;
        if !target.objects.is_empty() || target.http.is_some() {
            targets.push(target);
        }
    }
    // What steps applied (custom resources, webhook configurations) must exist, and any
    // workload among it be ready.
    for (name, st) in &s.profile().spec.steps {
        let objects = s.applied(name);
        if objects.is_empty() {
            continue;
        }
        let mut target = s.wait_target(
            name,
            &objects,
            (None, RunState::timeout(st.timeout.as_ref()), true),
            &st.values,
        )?;
        target.objects = objects.iter().map(Object::object_ref).collect();
        targets.push(target);
    }
    wait::wait_ready(s.kube()?, &targets, ctx, &s.diagnostics("wait")).await?;
    Ok(Done::Ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_0600_replaces_the_old_one_whole_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/values.json");
        write_private(&path, b"{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, br#"{"a": "1"}"#).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), br#"{"a": "1"}"#);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new file, not the old one rewritten");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["values.json"]);
    }
}
