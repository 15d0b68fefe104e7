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
use crate::plan::{self, PlanOptions, PlannedPort, TaskKind};
use crate::profile::{ManifestEntry, Profile, Supplied, secrets, template};
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
                // `kprov:` directories resolve in kprov's tree; the rest stay relative to
                // the source root the context names.
                let r = r.resolved(|p| match p.strip_prefix("kprov:") {
                    Some(_) => profile.resolve(source, p),
                    None => p.into(),
                });
                let manifest = remote::read(&r, &ctx).await.map_err(|e| e.to_string())?;
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
                .map_err(|es| template::joined(&es, Some(origin), "\n"))?
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

/// How [`config_objects`] fills a key that comes from a host file (outside `--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFiles {
    /// Its contents (a run): the Secret's `data`, base64.
    Read,
    /// A placeholder naming the file as written (a render), present or not: host files are
    /// never shown, and a render does not depend on the host it runs on.
    Placeholder,
}

/// A ServiceAccount whose `imagePullSecrets` get a Secret, once both exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSecretLink {
    pub namespace: String,
    pub service_account: String,
    pub secret: String,
}

/// What the config batch makes of `config.configMaps` and `config.secrets` on this host (or
/// a late Secret's task of its one entry).
#[derive(Debug, Default)]
pub struct ConfigObjects {
    pub objects: Vec<Object>,
    /// The host files Secrets named, by digest (for the run record).
    pub host_files: Vec<crate::record::HostFileRecord>,
    /// The `serviceAccounts` of the Secrets made.
    pub links: Vec<PullSecretLink>,
    /// Secrets skipped and keys left out for absent optional files.
    pub notes: Vec<String>,
}

/// The ConfigMaps and Secrets of `config` (their files read), in the profile's order; a
/// Secret with `after:` is left to its own task ([`late_secret_objects`]).
pub fn config_objects(
    profile: &Profile,
    source: &Path,
    host: HostFiles,
) -> Result<ConfigObjects, String> {
    let c = &profile.spec.config;
    let ns = profile.namespace();
    let mut out = ConfigObjects::default();
    for cm in &c.config_maps {
        let mut data = cm.data.clone();
        for (key, path) in profile.config_map_files(source, cm)? {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("ConfigMap {}: read {}: {e}", cm.name, path.display()))?;
            data.insert(key, text);
        }
        let namespace = cm.namespace.as_deref().unwrap_or(ns);
        out.objects.push(Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": cm.name, "namespace": namespace}, "data": data}),
            format!("config.configMaps.{}", cm.name),
        ));
    }
    for plan in secrets::plan(profile, source, host == HostFiles::Placeholder) {
        if !plan.spec.is_late() {
            add_secret(&plan, host, crate::plan::CONFIG, &mut out)?;
        }
    }
    Ok(out)
}

/// What task `id` (`secret:NAMESPACE/NAME`, a `config.secrets` entry with `after:`) makes on
/// this host: the Secret, its links, its host files and notes, as the config batch would.
pub fn late_secret_objects(
    profile: &Profile,
    source: &Path,
    host: HostFiles,
    id: &str,
) -> Result<ConfigObjects, String> {
    let plans = secrets::plan(profile, source, host == HostFiles::Placeholder);
    let plan = plans
        .iter()
        .find(|p| p.spec.is_late() && plan::secret_id(profile, p.spec) == id)
        .ok_or_else(|| format!("{id}: no config.secrets entry with after: makes it"))?;
    let mut out = ConfigObjects::default();
    add_secret(plan, host, id, &mut out)?;
    Ok(out)
}

/// One entry's Secret (read by task `reader`) into `out`, or its notes alone when skipped.
fn add_secret(
    plan: &secrets::SecretPlan<'_>,
    host: HostFiles,
    reader: &str,
    out: &mut ConfigObjects,
) -> Result<(), String> {
    out.notes.extend(plan.notes());
    if plan.skipped.is_some() {
        out.host_files
            .extend(plan.files.iter().filter(|f| f.host).map(|f| {
                let outcome = if f.present {
                    "not read: Secret skipped"
                } else {
                    "absent: Secret skipped"
                };
                host_file_record(plan, f, None, outcome)
            }));
        return Ok(());
    }
    let (object, records) = secret_object(plan, host, reader)?;
    out.objects.push(object);
    out.host_files.extend(records);
    out.links
        .extend(plan.spec.service_accounts.iter().map(|sa| PullSecretLink {
            namespace: plan.namespace.clone(),
            service_account: sa.clone(),
            secret: plan.spec.name.clone(),
        }));
    Ok(())
}

/// The Secret of one `config.secrets` entry, and its host files by digest: `stringData` from
/// the profile and the source tree's files, `data` (base64) from host files, each read once.
/// An absent file that is not optional, and an image pull Secret whose config is not JSON, are
/// errors (naming the file, never its text).
fn secret_object(
    plan: &secrets::SecretPlan<'_>,
    host: HostFiles,
    reader: &str,
) -> Result<(Object, Vec<crate::record::HostFileRecord>), String> {
    use base64::Engine as _;
    let sec = plan.spec;
    let what = plan.entry();
    let type_ = sec.type_.clone().unwrap_or_else(|| "Opaque".into());
    let mut string_data = sec.string_data.clone();
    let mut data = serde_json::Map::new();
    let mut records = Vec::new();
    for f in &plan.files {
        if !f.present {
            if !f.optional {
                return Err(format!(
                    "{what}: {} ({}) does not exist",
                    f.written,
                    f.path.display()
                ));
            }
            if f.host {
                records.push(host_file_record(plan, f, None, "absent: key left out"));
            }
            continue;
        }
        if f.host && host == HostFiles::Placeholder {
            let shown = format!("<host file {}, read by {reader}>", f.written);
            data.insert(f.key.clone(), json!(shown));
            continue;
        }
        let bytes = std::fs::read(&f.path)
            .map_err(|e| format!("{what}: read {}: {e}", f.path.display()))?;
        if let Some(k) = secrets::dockercfg_key(&type_)
            && f.key == k
            && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
        {
            return Err(format!("{what}: {k} from {} is not JSON ({e})", f.written));
        }
        if f.host {
            records.push(host_file_record(plan, f, Some(&bytes), "read"));
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            data.insert(f.key.clone(), json!(b64));
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|e| format!("{what}: read {}: {e}", f.path.display()))?;
            string_data.insert(f.key.clone(), text);
        }
    }
    let mut object = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": sec.name, "namespace": plan.namespace},
        "type": type_, "stringData": string_data});
    if !data.is_empty() {
        object["data"] = Value::Object(data);
    }
    let origin = format!("config.secrets.{}", sec.name);
    Ok((Object::new(object, origin), records))
}

/// A host file by digest (`read`: its contents, never kept), as the run record keeps it.
fn host_file_record(
    plan: &secrets::SecretPlan<'_>,
    f: &secrets::KeyFile,
    read: Option<&[u8]>,
    outcome: &str,
) -> crate::record::HostFileRecord {
    crate::record::HostFileRecord {
        secret: format!("{}/{}", plan.namespace, plan.spec.name),
        key: f.key.clone(),
        path: f.path.display().to_string(),
        sha256: read.map(|b| format!("sha256:{}", remote::cache::sha256_hex(b))),
        bytes: read.map(|b| b.len() as u64),
        outcome: outcome.to_string(),
    }
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

/// The host port each named port will be published on, as far as it is known before a run:
/// the entry's own `hostPort`; else the one the user's kind config maps its NodePort to (that
/// mapping stands, `src/tasks/cluster.rs` `kind_config`); else a free one, chosen when the
/// cluster is created. In the order of `ports:`.
pub fn planned_ports(profile: &Profile, source: &Path) -> Result<Vec<PlannedPort>, String> {
    let from_kind_config = match &profile.spec.cluster {
        Some(c) => {
            crate::tasks::cluster::kind_config_host_ports(source, c).map_err(|e| e.to_string())?
        }
        None => BTreeMap::new(),
    };
    Ok(profile
        .spec
        .ports
        .iter()
        .map(|(name, p)| {
            let (host_port, from) = match (p.host_port, from_kind_config.get(&p.node_port)) {
                (0, Some(h)) => (Some(*h), "kind config"),
                (0, None) => (None, "free"),
                (h, _) => (Some(h), "profile"),
            };
            PlannedPort {
                name: name.clone(),
                node_port: p.node_port,
                host_port,
                from,
            }
        })
        .collect())
}

/// The values known before a run, with a placeholder for each value only the run produces.
fn values_before_run(
    profile: &Profile,
    values: &BTreeMap<String, String>,
    ports: &[PlannedPort],
) -> template::Values {
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
    for p in ports {
        let v = match p.host_port {
            Some(h) => h.to_string(),
            None => format!("<hostPorts.{} from cluster:create>", p.name),
        };
        vals.insert(format!("hostPorts.{}", p.name), v);
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
    let ports = planned_ports(profile, source)?;
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
                extra.extend(config_objects(profile, source, HostFiles::Placeholder)?.objects);
                extra.extend(tls_placeholders(profile));
                (spec.config.manifests.clone(), BTreeMap::new(), extra)
            }
            TaskKind::Secret => {
                let made = late_secret_objects(profile, source, HostFiles::Placeholder, &t.id)?;
                (Vec::new(), BTreeMap::new(), made.objects)
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
        let vals = values_before_run(profile, &values, &ports);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile with an image pull Secret from a host file and a Secret mixing the source
    /// tree, stringData and an optional host file; `host` is the host files' directory.
    fn setup(host: &Path) -> (tempfile::TempDir, Profile) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/src.key"), "from the tree").unwrap();
        let h = host.display();
        let text = format!(
            "namespace: app\nconfig:\n  secrets:\n    - name: pull\n      namespace: jobs\n      \
             type: kubernetes.io/dockerconfigjson\n      files: {{.dockerconfigjson: {h}/auth.json}}\n      \
             optional: true\n      serviceAccounts: [default, builder]\n    - name: keys\n      \
             stringData: {{user: u}}\n      files:\n        src.key: keys/src.key\n        \
             host.key: {{path: {h}/host.key, optional: true}}\n"
        );
        std::fs::write(dir.path().join("profiles/svc.yaml"), text).unwrap();
        let p = crate::profile::load(&dir.path().join("profiles"), "svc").unwrap();
        (dir, p)
    }

    #[test]
    fn a_port_without_host_port_takes_the_one_the_kind_config_maps_its_node_port_to() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
        std::fs::write(
            dir.path().join("kind.yaml"),
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  \
             extraPortMappings:\n  - {containerPort: 30081, hostPort: 28090}\n  \
             - {containerPort: 30082, hostPort: 8000}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("profiles/svc.yaml"),
            "cluster: {kindConfig: kind.yaml}\nports:\n  api: {nodePort: 30081}\n  \
             admin: {nodePort: 30082, hostPort: 9000}\n  extra: {nodePort: 30083}\n",
        )
        .unwrap();
        let p = crate::profile::load(&dir.path().join("profiles"), "svc").unwrap();
        let ports = planned_ports(&p, dir.path()).unwrap();
        let got: Vec<(&str, u16, Option<u16>, &str)> = ports
            .iter()
            .map(|p| (p.name.as_str(), p.node_port, p.host_port, p.from))
            .collect();
        assert_eq!(
            got,
            [
                ("admin", 30082, Some(9000), "profile"),
                ("api", 30081, Some(28090), "kind config"),
                ("extra", 30083, None, "free"),
            ]
        );
        let vals = values_before_run(&p, &BTreeMap::new(), &ports);
        assert_eq!(vals["hostPorts.api"], "28090");
        assert_eq!(vals["hostPorts.admin"], "9000");
        assert_eq!(
            vals["hostPorts.extra"],
            "<hostPorts.extra from cluster:create>"
        );
    }

    fn secret<'a>(made: &'a ConfigObjects, name: &str) -> Option<&'a Value> {
        made.objects
            .iter()
            .map(|o| &o.value)
            .find(|v| v["kind"] == "Secret" && v["metadata"]["name"] == name)
    }

    #[test]
    fn a_host_file_goes_into_data_and_the_record_by_digest_only() {
        use base64::Engine as _;
        let host = tempfile::tempdir().unwrap();
        let auth = br#"{"auths": {"quay.io": {"auth": "c2VjcmV0"}}}"#;
        std::fs::write(host.path().join("auth.json"), auth).unwrap();
        let (src, p) = setup(host.path());
        let made = config_objects(&p, src.path(), HostFiles::Read).unwrap();
        let pull = secret(&made, "pull").unwrap();
        assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(pull["metadata"]["namespace"], "jobs");
        let b64 = base64::engine::general_purpose::STANDARD.encode(auth);
        assert_eq!(pull["data"][".dockerconfigjson"], b64.as_str());
        let keys = secret(&made, "keys").unwrap();
        assert_eq!(
            keys["stringData"],
            json!({"user": "u", "src.key": "from the tree"})
        );
        assert!(
            keys.get("data").is_none(),
            "host.key is absent and optional: {keys}"
        );
        let links: Vec<&str> = made
            .links
            .iter()
            .map(|l| l.service_account.as_str())
            .collect();
        assert_eq!(links, ["default", "builder"]);
        assert!(
            made.links
                .iter()
                .all(|l| l.namespace == "jobs" && l.secret == "pull")
        );
        assert_eq!(made.notes.len(), 1, "{:?}", made.notes);
        assert!(
            made.notes[0].contains("key host.key left out"),
            "{:?}",
            made.notes
        );
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(auth)));
        let outcomes: Vec<(&str, Option<&str>, &str)> = made
            .host_files
            .iter()
            .map(|r| (r.secret.as_str(), r.sha256.as_deref(), r.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("jobs/pull", Some(digest.as_str()), "read"),
                ("app/keys", None, "absent: key left out")
            ]
        );
        let record = serde_json::to_string(&made.host_files).unwrap();
        assert!(
            !record.contains("c2VjcmV0") && !record.contains(&b64),
            "{record}"
        );
    }

    #[test]
    fn an_absent_host_file_skips_an_optional_secret_and_its_links() {
        let host = tempfile::tempdir().unwrap();
        let (src, p) = setup(host.path());
        let made = config_objects(&p, src.path(), HostFiles::Read).unwrap();
        assert!(secret(&made, "pull").is_none());
        assert!(secret(&made, "keys").is_some());
        assert!(made.links.is_empty());
        assert!(
            made.notes[0].contains("config.secrets.pull (jobs): skipped:"),
            "{:?}",
            made.notes
        );
        assert_eq!(made.host_files[0].outcome, "absent: Secret skipped");
        assert_eq!(made.host_files[0].sha256, None);
    }

    #[test]
    fn a_render_shows_host_files_as_placeholders_whether_they_exist_or_not() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("host.key"), "never shown").unwrap();
        let (src, p) = setup(host.path());
        let made = config_objects(&p, src.path(), HostFiles::Placeholder).unwrap();
        let shown = format!(
            "<host file {}/auth.json, read by apply:config>",
            host.path().display()
        );
        assert_eq!(
            secret(&made, "pull").unwrap()["data"][".dockerconfigjson"],
            shown.as_str()
        );
        let keys = secret(&made, "keys").unwrap();
        assert!(!keys.to_string().contains("never shown"), "{keys}");
        assert!(made.host_files.is_empty() && made.notes.is_empty());
    }

    #[test]
    fn a_secret_with_after_is_made_by_its_own_task_and_left_out_of_the_batch() {
        use base64::Engine as _;
        let host = tempfile::tempdir().unwrap();
        let auth = br#"{"auths": {}}"#;
        std::fs::write(host.path().join("auth.json"), auth).unwrap();
        let (src, _) = setup(host.path());
        // The same Secret again, in a namespace a component makes, after that component.
        let path = src.path().join("profiles/svc.yaml");
        let h = host.path().display();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text = text.replace(
            "    - name: keys\n",
            &format!(
                "    - name: pull\n      namespace: tekton\n      type: kubernetes.io/dockerconfigjson\n      \
                 files: {{.dockerconfigjson: {h}/auth.json}}\n      optional: true\n      \
                 serviceAccounts: [resolvers]\n      after: [release]\n    - name: keys\n"
            ),
        );
        text.push_str("components:\n  release: {manifests: []}\n");
        std::fs::write(&path, text).unwrap();
        let p = crate::profile::load(&src.path().join("profiles"), "svc").unwrap();
        let batch = config_objects(&p, src.path(), HostFiles::Read).unwrap();
        let pulls: Vec<&Value> = batch
            .objects
            .iter()
            .map(|o| &o.value)
            .filter(|v| v["metadata"]["name"] == "pull")
            .collect();
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0]["metadata"]["namespace"], "jobs");
        assert!(batch.links.iter().all(|l| l.namespace == "jobs"));
        assert!(batch.host_files.iter().all(|r| r.secret != "tekton/pull"));
        let id = "secret:tekton/pull";
        let late = late_secret_objects(&p, src.path(), HostFiles::Read, id).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(auth);
        let [secret] = late.objects.as_slice() else {
            panic!("{:?}", late.objects)
        };
        assert_eq!(secret.value["metadata"]["namespace"], "tekton");
        assert_eq!(secret.value["data"][".dockerconfigjson"], b64.as_str());
        let links: Vec<(&str, &str)> = late
            .links
            .iter()
            .map(|l| (l.namespace.as_str(), l.service_account.as_str()))
            .collect();
        assert_eq!(links, [("tekton", "resolvers")]);
        assert_eq!(late.host_files.len(), 1);
        assert_eq!(late.host_files[0].secret, "tekton/pull");
        assert_eq!(late.host_files[0].outcome, "read");
        // A render names the task that reads the host file.
        let shown = late_secret_objects(&p, src.path(), HostFiles::Placeholder, id).unwrap();
        let placeholder = format!("<host file {h}/auth.json, read by {id}>");
        assert_eq!(
            shown.objects[0].value["data"][".dockerconfigjson"],
            placeholder.as_str()
        );
        // Absent, it is skipped and said so, its links with it.
        std::fs::remove_file(host.path().join("auth.json")).unwrap();
        let gone = late_secret_objects(&p, src.path(), HostFiles::Read, id).unwrap();
        assert!(gone.objects.is_empty() && gone.links.is_empty());
        assert!(
            gone.notes[0].starts_with("config.secrets.pull (tekton): skipped: "),
            "{:?}",
            gone.notes
        );
        assert_eq!(gone.host_files[0].outcome, "absent: Secret skipped");
        let e = late_secret_objects(&p, src.path(), HostFiles::Read, "secret:jobs/pull");
        assert!(e.is_err(), "the batch's Secret has no task of its own");
    }

    #[test]
    fn a_pull_secret_that_is_not_json_is_refused_without_its_text() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("auth.json"), "token=hunter2").unwrap();
        let (src, p) = setup(host.path());
        let e = config_objects(&p, src.path(), HostFiles::Read).unwrap_err();
        assert!(
            e.contains(".dockerconfigjson from") && e.contains("is not JSON"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        // A file that must be there and is not fails the batch, naming it.
        std::fs::remove_file(src.path().join("keys/src.key")).unwrap();
        std::fs::write(host.path().join("auth.json"), "{}").unwrap();
        let e = config_objects(&p, src.path(), HostFiles::Read).unwrap_err();
        assert!(e.contains("config.secrets.keys (app): keys/src.key"), "{e}");
    }
}
