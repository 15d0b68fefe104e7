//! The work of each planned task: adapters and task functions composed, sharing one
//! [`RunState`] (built images, the cluster, the API client).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use crate::adapters::{docker::Engine, kube::Kube, kube::Object};
use crate::engine::{BoxFuture, Done, TaskCtx, TaskError, Work};
use crate::plan::{PlannedTask, TaskKind};
use crate::profile::Profile;
use crate::tasks::{
    apply::{self, Manifest},
    build::{self, BuildRequest, BuiltImage},
    cluster::{self, ClusterInfo, ClusterRequest},
    coverage, diagnostics, load, tls,
    wait::{self, WaitTarget},
};

/// Kinds that live outside namespaces: they never get the profile's namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "Node",
];

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
    /// What each component's deploy applied, for the final wait (rendered once).
    applied: Mutex<BTreeMap<String, Vec<Object>>>,
}

impl RunState {
    pub fn new(req: UpRequest, engine: Engine) -> RunState {
        RunState {
            req,
            engine,
            images: Mutex::default(),
            cluster: OnceLock::new(),
            kube: OnceLock::new(),
            crd_names: OnceLock::new(),
            applied: Mutex::default(),
        }
    }

    fn profile(&self) -> &Profile {
        &self.req.profile
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.profile().resolve(&self.req.source, rel)
    }

    fn kube(&self) -> Result<&Kube, TaskError> {
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

    fn host_ports(&self) -> BTreeMap<String, u16> {
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

    /// A component's or hook's manifests, templated and parsed; coverage applied.
    fn render(
        &self,
        manifests: &[String],
        values: &BTreeMap<String, String>,
    ) -> Result<Vec<Object>, TaskError> {
        let images: BTreeMap<String, String> = self
            .images
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.reference.clone()))
            .collect();
        let vals = self
            .profile()
            .template_values(values, &images, &self.host_ports());
        let instrumented = self.instrumented();
        let mut objects = Vec::new();
        for m in manifests {
            let path = self.path(m);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| TaskError::fatal(format!("read manifest {}: {e}", path.display())))?;
            let text = crate::profile::template::render(&text, &vals).map_err(|es| {
                let lines: Vec<String> = es
                    .iter()
                    .map(|e| format!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message))
                    .collect();
                TaskError::fatal(lines.join("\n"))
            })?;
            let mut objs = apply::parse_manifests(&Manifest {
                origin: path.display().to_string(),
                text,
            })
            .map_err(TaskError::from)?;
            for o in &mut objs {
                if !CLUSTER_SCOPED.contains(&o.kind()) {
                    o.default_namespace(self.profile().namespace());
                }
                if !instrumented.is_empty() {
                    coverage::instrument(&mut o.value, &instrumented);
                }
            }
            objects.extend(objs);
        }
        Ok(objects)
    }

    fn diagnostics(&self, name: &str) -> diagnostics::DiagnosticsSpec {
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

    fn timeout(spec: Option<&String>) -> Duration {
        spec.and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_READY_TIMEOUT)
    }

    /// The readiness targets of a component or hook: its workloads and its HTTP endpoint.
    fn wait_target(
        &self,
        name: &str,
        objects: &[Object],
        http: Option<&String>,
        timeout: Duration,
        workloads: bool,
    ) -> Result<WaitTarget, TaskError> {
        let url = match http {
            Some(u) => {
                let vals = self.profile().template_values(
                    &BTreeMap::new(),
                    &BTreeMap::new(),
                    &self.host_ports(),
                );
                Some(crate::profile::template::render(u, &vals).map_err(|e| {
                    TaskError::fatal(format!("{name}: ready.http: {}", e[0].message))
                })?)
            }
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
                TaskKind::Deploy => deploy(s, subject, ctx).await,
                TaskKind::Hook => hook(s, subject, ctx).await,
                TaskKind::Wait => wait_all(s, ctx).await,
            }
        })
    }
}

async fn build(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let spec = s.profile().spec.images[name]
        .build
        .clone()
        .expect("planned as a build");
    let mut args = spec.args.clone();
    if s.req.coverage {
        args.extend(spec.coverage_args.clone());
    }
    let mut labels = spec.labels.clone();
    labels.insert("dev.kprov.service".into(), s.profile().service.clone());
    let context = s.path(&spec.context);
    let dockerfile = match &spec.dockerfile {
        Some(d) => s.path(d),
        None => context.join("Dockerfile"),
    };
    let repository = s.profile().spec.images[name]
        .repository
        .clone()
        .unwrap_or_else(|| format!("localhost/kprov/{name}"));
    let req = BuildRequest {
        image: name.to_string(),
        repository,
        context,
        dockerfile,
        target: spec.target.clone(),
        args,
        labels,
        coverage: s.req.coverage && !spec.coverage_args.is_empty(),
        no_cache: s.req.no_cache,
        log_dir: s.req.log_dir.clone(),
    };
    let (image, done) = build::build_image(&s.engine, &req, ctx).await?;
    s.images
        .lock()
        .expect("not poisoned")
        .insert(name.to_string(), image);
    Ok(done)
}

async fn pull(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let reference = s.profile().spec.images[name]
        .external
        .clone()
        .expect("planned as external");
    let (image, done) = build::ensure_external(&s.engine, &reference, ctx).await?;
    s.images
        .lock()
        .expect("not poisoned")
        .insert(name.to_string(), image);
    Ok(done)
}

/// The profile's named ports as kind port mappings on loopback (`hostPort: 0` becomes a free
/// port when the cluster is created).
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
    let ns = p.namespace().to_string();
    let c = &p.spec.config;
    let mut namespaces: Vec<String> = c.namespaces.clone();
    if ns != "default" && !namespaces.contains(&ns) {
        namespaces.insert(0, ns.clone());
    }
    let kube = s.kube()?;
    // Namespaces first: everything else in the batch lives in them.
    let ns_objects: Vec<Object> = namespaces
        .iter()
        .map(|n| Object::new(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}), "config.namespaces"))
        .collect();
    apply::apply_objects(kube, &ns_objects, ctx).await?;
    let mut batch = Vec::new();
    for cm in &c.config_maps {
        let mut data = cm.data.clone();
        for (key, file) in &cm.files {
            let path = s.path(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                TaskError::fatal(format!(
                    "ConfigMap {}: read {}: {e}",
                    cm.name,
                    path.display()
                ))
            })?;
            data.insert(key.clone(), text);
        }
        let namespace = cm.namespace.clone().unwrap_or_else(|| ns.clone());
        batch.push(Object::new(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm.name, "namespace": namespace}, "data": data}),
            format!("config.configMaps.{}", cm.name),
        ));
    }
    for sec in &c.secrets {
        let mut data = sec.string_data.clone();
        for (key, file) in &sec.files {
            let path = s.path(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                TaskError::fatal(format!("Secret {}: read {}: {e}", sec.name, path.display()))
            })?;
            data.insert(key.clone(), text);
        }
        let namespace = sec.namespace.clone().unwrap_or_else(|| ns.clone());
        batch.push(Object::new(
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": sec.name, "namespace": namespace},
                "type": sec.type_.clone().unwrap_or_else(|| "Opaque".into()), "stringData": data}),
            format!("config.secrets.{}", sec.name),
        ));
    }
    if let Some(t) = &c.tls {
        batch.extend(
            tls::tls_objects(kube, t, &ns)
                .await
                .map_err(TaskError::from)?,
        );
    }
    batch.extend(s.render(&c.manifests, &BTreeMap::new())?);
    ctx.progress(format!("applying {} objects", batch.len()));
    apply::apply_objects(kube, &batch, ctx).await?;
    Ok(Done::Ran)
}

async fn deploy(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let comp = &s.profile().spec.components[name];
    let objects = s.render(&comp.manifests, &comp.values)?;
    apply::apply_objects(s.kube()?, &objects, ctx).await?;
    s.applied
        .lock()
        .expect("not poisoned")
        .insert(name.to_string(), objects);
    Ok(Done::Ran)
}

async fn hook(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let hook = &s.profile().spec.hooks[name];
    let objects = s.render(&hook.manifests, &hook.values)?;
    let kube = s.kube()?;
    apply::apply_objects(kube, &objects, ctx).await?;
    let target = s.wait_target(
        name,
        &objects,
        None,
        RunState::timeout(hook.timeout.as_ref()),
        true,
    )?;
    wait::wait_ready(kube, &[target], ctx, &s.diagnostics(name)).await?;
    Ok(Done::Ran)
}

async fn wait_all(s: &RunState, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let mut targets = Vec::new();
    for (name, comp) in &s.profile().spec.components {
        let applied = s.applied.lock().expect("not poisoned").get(name).cloned();
        let objects = match applied {
            Some(objects) => objects,
            None => s.render(&comp.manifests, &comp.values)?,
        };
        let target = s.wait_target(
            name,
            &objects,
            comp.ready.http.as_ref(),
            RunState::timeout(comp.ready.timeout.as_ref()),
            comp.ready.workloads,
        )?;
        if !target.objects.is_empty() || target.http.is_some() {
            targets.push(target);
        }
    }
    wait::wait_ready(s.kube()?, &targets, ctx, &s.diagnostics("wait")).await?;
    Ok(Done::Ran)
}
