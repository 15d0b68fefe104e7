//! Manifests into objects, the one way `kprov up` and `kprov render` both use: templated with
//! the run's values, parsed (every error located), the profile's namespace defaulted onto
//! namespaced objects, coverage applied to instrumented images' workloads.
//!
//! [`render_profile`] is `kprov render`: every object a run would apply, in apply order, with
//! what is known before the run filled in and each run-time value (an image built, a host
//! port chosen, a token, the CA) shown as a placeholder naming the task that produces it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use tokio_util::sync::CancellationToken;

use crate::adapters::kube::Object;
use crate::plan::{self, PlanOptions, TaskKind};
use crate::profile::{ManifestEntry, Profile, Supplied, template};
use crate::tasks::{
    apply::{self, Manifest},
    coverage, remote,
};

/// Kinds that live outside namespaces: they never get the profile's namespace.
pub const CLUSTER_SCOPED: &[&str] = &[
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

/// What reading manifests from elsewhere needs (URL downloads, `kubectl kustomize`,
/// `helm template`): kprov's cache, the tools, cancellation and a progress line.
pub struct Fetch<'a> {
    pub cache_dir: &'a Path,
    pub tools: &'a remote::Tools,
    pub cancel: &'a CancellationToken,
    pub progress: &'a (dyn Fn(String) + Send + Sync),
}

/// One manifest's text, and whether it is a template (files of the source tree are; manifests
/// from elsewhere apply as they come: upstream YAML may hold `{{` of its own).
pub struct Source {
    pub manifest: Manifest,
    pub template: bool,
}

/// The text of each entry, in order: files read, remote sources fetched (cached).
pub async fn read_entries(
    profile: &Profile,
    source: &Path,
    entries: &[ManifestEntry],
    fetch: &Fetch<'_>,
    entry: &str,
) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for e in entries {
        out.push(match e {
            ManifestEntry::Path(m) => {
                let path = profile.resolve(source, m);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("read manifest {}: {e}", path.display()))?;
                Source {
                    manifest: Manifest {
                        origin: path.display().to_string(),
                        text,
                    },
                    template: true,
                }
            }
            ManifestEntry::Remote(r) => {
                let ctx = remote::RemoteCtx {
                    source_root: source,
                    cache_dir: fetch.cache_dir,
                    tools: fetch.tools,
                    limits: remote::Limits::default(),
                    namespace: Some(profile.namespace()),
                    entry: Some(entry),
                    cancel: fetch.cancel,
                    progress: fetch.progress,
                };
                let manifest = remote::read(r, &ctx).await.map_err(|e| e.to_string())?;
                Source {
                    manifest,
                    template: false,
                }
            }
        });
    }
    Ok(out)
}

/// What rendering changes in the workloads that run some images.
#[derive(Debug, Clone, Default)]
pub struct ImageRules {
    /// Instrumented images' references (coverage mode): their containers write coverage.
    pub instrumented: Vec<String>,
    /// References the nodes pull themselves: their containers get `imagePullPolicy:
    /// IfNotPresent` (the shipped manifests say `Never`, for images kprov loads).
    pub pulled_by_nodes: Vec<String>,
}

/// `sources` templated with `vals` (those that are templates) and parsed; see the module doc.
/// The files their placeholders read (`{{ file "PATH" }}`) come from `source`.
pub fn render_manifests(
    profile: &Profile,
    source: &Path,
    sources: &[Source],
    vals: &template::Values,
    rules: &ImageRules,
) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for src in sources {
        let origin = &src.manifest.origin;
        let text = if src.template {
            profile
                .render_template(source, &src.manifest.text, vals)
                .map_err(|es| {
                    let lines: Vec<String> = es
                        .iter()
                        .map(|e| format!("{origin}:{}:{}: {}", e.line, e.column, e.message))
                        .collect();
                    lines.join("\n")
                })?
        } else {
            src.manifest.text.clone()
        };
        let mut objs = apply::parse_manifests(&Manifest {
            origin: origin.clone(),
            text,
        })
        .map_err(|e| e.to_string())?;
        for o in &mut objs {
            if !CLUSTER_SCOPED.contains(&o.kind()) {
                o.default_namespace(profile.namespace());
            }
            if !rules.instrumented.is_empty() {
                coverage::instrument(&mut o.value, &rules.instrumented);
            }
            if !rules.pulled_by_nodes.is_empty() {
                pulled_if_not_present(&mut o.value, &rules.pulled_by_nodes);
            }
        }
        objects.extend(objs);
    }
    Ok(objects)
}

/// Every container and init container of a pod template (or a Pod) that runs one of
/// `images` is told to pull it when the node lacks it.
fn pulled_if_not_present(object: &mut Value, images: &[String]) {
    let pod = match object.get("kind").and_then(Value::as_str) {
        Some("Pod") => object.pointer_mut("/spec"),
        Some("CronJob") => object.pointer_mut("/spec/jobTemplate/spec/template/spec"),
        _ => object.pointer_mut("/spec/template/spec"),
    };
    let Some(pod) = pod else { return };
    for list in ["initContainers", "containers"] {
        let Some(cs) = pod.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let runs = c
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| images.iter().any(|x| x == i));
            if let (true, Some(c)) = (runs, c.as_object_mut()) {
                c.insert("imagePullPolicy".into(), Value::from("IfNotPresent"));
            }
        }
    }
}

/// The ConfigMaps and Secrets of `config` (their files read), in the profile's order.
pub fn config_objects(profile: &Profile, source: &Path) -> Result<Vec<Object>, String> {
    let c = &profile.spec.config;
    let ns = profile.namespace();
    let read = |what: &str, file: &str| {
        let path = profile.resolve(source, file);
        std::fs::read_to_string(&path).map_err(|e| format!("{what}: read {}: {e}", path.display()))
    };
    let mut out = Vec::new();
    for cm in &c.config_maps {
        let mut data = cm.data.clone();
        for (key, file) in &cm.files {
            data.insert(key.clone(), read(&format!("ConfigMap {}", cm.name), file)?);
        }
        let namespace = cm.namespace.as_deref().unwrap_or(ns);
        out.push(Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": cm.name, "namespace": namespace}, "data": data}),
            format!("config.configMaps.{}", cm.name),
        ));
    }
    for sec in &c.secrets {
        let mut data = sec.string_data.clone();
        for (key, file) in &sec.files {
            data.insert(key.clone(), read(&format!("Secret {}", sec.name), file)?);
        }
        let namespace = sec.namespace.as_deref().unwrap_or(ns);
        out.push(Object::new(
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": sec.name, "namespace": namespace},
                "type": sec.type_.clone().unwrap_or_else(|| "Opaque".into()),
                "stringData": data}),
            format!("config.secrets.{}", sec.name),
        ));
    }
    Ok(out)
}

/// The profile's namespace and `config.namespaces`, with their labels and annotations.
pub fn namespace_objects(p: &Profile) -> Vec<Object> {
    let mut specs = p.spec.config.namespaces.clone();
    let ns = p.namespace();
    if ns != "default" && !specs.iter().any(|n| n.name() == ns) {
        specs.insert(0, crate::profile::NamespaceSpec::Name(ns.to_string()));
    }
    specs
        .iter()
        .map(|n| {
            let mut meta = json!({"name": n.name()});
            if let crate::profile::NamespaceSpec::Full(d) = n {
                if !d.labels.is_empty() {
                    meta["labels"] = json!(d.labels);
                }
                if !d.annotations.is_empty() {
                    meta["annotations"] = json!(d.annotations);
                }
            }
            Object::new(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}),
                "config.namespaces",
            )
        })
        .collect()
}

/// One object of a render, with the task that applies it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub task: String,
    pub object: Object,
}

/// Whether `image` goes through the local registry (`cluster.registry: local`): pushed by
/// kprov, pulled by the nodes.
fn pushed(profile: &Profile, image: &str) -> bool {
    profile.local_registry() && !plan::nodes_pull(profile, image)
}

/// The references the nodes pull themselves before a run: those `--image-registry` names, and
/// the placeholders of pushed images.
fn pulled_before_run(profile: &Profile) -> Vec<String> {
    let mut refs = crate::profile::sources::pulled_by_nodes(profile);
    refs.extend(
        profile
            .spec
            .images
            .keys()
            .filter(|k| pushed(profile, k))
            .map(|k| format!("<image.{k} from push:{k}>")),
    );
    refs
}

/// The values known before a run, with a placeholder for each value only the run produces.
fn values_before_run(profile: &Profile, values: &BTreeMap<String, String>) -> template::Values {
    let images: BTreeMap<String, String> = profile
        .spec
        .images
        .iter()
        .map(|(k, i)| match (&i.supplied, &i.external) {
            _ if pushed(profile, k) => (k.clone(), format!("<image.{k} from push:{k}>")),
            (Some(Supplied::Local(r)), _) => (k.clone(), r.clone()),
            (Some(Supplied::Registry { reference, .. }), _) => (k.clone(), reference.clone()),
            (None, Some(r)) => (k.clone(), r.clone()),
            (None, None) => (k.clone(), format!("<image.{k} from build:{k}>")),
        })
        .collect();
    let mut vals = profile.template_values(values, &images, &BTreeMap::new());
    for (name, p) in &profile.spec.ports {
        let v = if p.host_port != 0 {
            p.host_port.to_string()
        } else {
            format!("<hostPorts.{name} from cluster:create>")
        };
        vals.insert(format!("hostPorts.{name}"), v);
    }
    vals
}

/// The generated TLS objects as placeholders: names and types are known, contents are not.
fn tls_placeholders(profile: &Profile) -> Vec<Object> {
    let Some(t) = &profile.spec.config.tls else {
        return Vec::new();
    };
    let ns = profile.namespace();
    let generated = "<generated by apply:config>";
    // In apply order, as tasks/tls.rs makes them: the CA key Secret, the CA ConfigMap, the
    // leaves, the signing keys.
    let mut out = vec![
        Object::new(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": crate::tasks::tls::ca_secret_name(t), "namespace": ns},
                "data": {"ca.crt": generated, "ca.key": generated}}),
            "config.tls",
        ),
        Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": t.ca_config_map, "namespace": ns},
                "data": {"ca.crt": generated}}),
            "config.tls",
        ),
    ];
    let mut secrets: Vec<(String, String)> = t
        .services
        .iter()
        .map(|s| (format!("{s}-tls"), ns.to_string()))
        .collect();
    secrets.extend(t.certificates.iter().map(|c| {
        let namespace = c.namespace.clone().unwrap_or_else(|| ns.to_string());
        (c.secret.clone(), namespace)
    }));
    for (name, namespace) in secrets {
        out.push(Object::new(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": namespace},
                "data": {"tls.crt": generated, "tls.key": generated, "ca.crt": generated}}),
            "config.tls",
        ));
    }
    for name in &t.signing_keys {
        out.push(Object::new(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": ns},
                "data": {"tls.crt": generated, "tls.key": generated}}),
            "config.tls",
        ));
    }
    out
}

/// Every object `kprov up` would apply for `profile`, in apply order; see the module doc.
pub async fn render_profile(
    profile: &Profile,
    source: &Path,
    fetch: &Fetch<'_>,
) -> Result<Vec<Rendered>, String> {
    let opts = PlanOptions {
        source: source.to_path_buf(),
        ..Default::default()
    };
    let tasks = plan::tasks_for(profile, &opts).map_err(|e| e.to_string())?;
    let spec = &profile.spec;
    let mut out = Vec::new();
    for t in &tasks {
        let subject = t.subject.as_deref().unwrap_or_default();
        let (entries, values, extra) = match t.kind {
            TaskKind::Crds => {
                let mut files = Vec::new();
                for pattern in &spec.crds {
                    for path in profile.expand(source, pattern)? {
                        files.push(ManifestEntry::Path(path.display().to_string()));
                    }
                }
                (files, BTreeMap::new(), Vec::new())
            }
            TaskKind::Config => {
                let mut extra = namespace_objects(profile);
                extra.extend(config_objects(profile, source)?);
                extra.extend(tls_placeholders(profile));
                (spec.config.manifests.clone(), BTreeMap::new(), extra)
            }
            TaskKind::Deploy => {
                let c = &spec.components[subject];
                (c.manifests.clone(), c.values.clone(), Vec::new())
            }
            TaskKind::Hook => {
                let h = &spec.hooks[subject];
                (h.manifests.clone(), h.values.clone(), Vec::new())
            }
            TaskKind::Step => {
                let st = &spec.steps[subject];
                (st.apply.clone(), st.values.clone(), Vec::new())
            }
            _ => continue,
        };
        let root = if t.kind == TaskKind::Crds {
            Path::new("")
        } else {
            source
        };
        let mut sources = read_entries(profile, root, &entries, fetch, &t.id).await?;
        if t.kind == TaskKind::Crds {
            // CRDs are applied as written, as `apply:crds` does.
            sources.iter_mut().for_each(|s| s.template = false);
        }
        let mut objects = extra;
        let vals = values_before_run(profile, &values);
        let rules = ImageRules {
            instrumented: Vec::new(),
            pulled_by_nodes: pulled_before_run(profile),
        };
        objects.extend(render_manifests(profile, source, &sources, &vals, &rules)?);
        out.extend(objects.into_iter().map(|object| Rendered {
            task: t.id.clone(),
            object,
        }));
    }
    Ok(out)
}

/// A render as YAML documents, each headed by a comment naming its task and origin.
pub fn to_yaml(rendered: &[Rendered]) -> Result<String, String> {
    let mut out = String::new();
    for r in rendered {
        let doc = serde_saphyr::to_string(&r.object.value).map_err(|e| e.to_string())?;
        out.push_str(&format!("---\n# {} ({})\n{doc}", r.task, r.object.origin));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// A render as one JSON array of `{task, origin, object}`.
pub fn to_json(rendered: &[Rendered]) -> Value {
    Value::Array(
        rendered
            .iter()
            .map(|r| json!({"task": r.task, "origin": r.object.origin, "object": r.object.value}))
            .collect(),
    )
}
