//! The shipped kubernaut profiles, checked against kubernaut-shaped source trees: they validate,
//! plan to the snapshotted graphs, render (`kprov render`) to the snapshotted objects, put exact
//! images, probes and declared NodePorts into their workloads, instrument exactly the images with
//! coverage args, and carry the facts the conformance tables (profiles/conformance/*.md) call
//! most fatal — read from what `kprov render --format json` says kprov would apply.
//!
//! Source trees (`--source`):
//! - the profiles of kubernaut HEAD (d5a4a8709) read [`common::kubernaut_source`]: kubernaut's
//!   own data files from ../shared/reference/kubernaut (all 11 CRDs, the suites' kind configs)
//!   with the stand-ins of tests/fixtures/kubernaut laid over them (symlinks, nothing copied);
//! - `aianalysis-hapi` (kubernaut 2e38670be, the last tree whose AIAnalysis suite deployed
//!   HolmesGPT-API) reads tests/fixtures/kubernaut-2e38670be, hand-written stand-ins only (its
//!   README says what each is).
//!
//! workflowexecution downloads Tekton's v1.7.0 release by URL, not pinned in the profile (its
//! digest could not be looked up offline), so kprov pins it by its first download. Every test
//! that renders it seeds that first download in its state directory's manifest cache: a local
//! stand-in (its namespaces and the Pipeline and Task kinds, [`common::TEKTON_STAND_IN`]) stored
//! under its digest, and the URL's pin naming that digest, as an earlier run on this machine
//! leaves them. The profile rendered is the shipped one; no network is used.
//!
//! Snapshots never hold kubernaut's files: the body of every CustomResourceDefinition in a render
//! snapshot is replaced by its name and the sha256 of its rendered document ([`elide_crds`]).

// Only the kubernaut tree of common is used here, not its Docker helpers.
#[allow(unused_macros, unused_imports)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kprov::profile::{self, ManifestEntry, Profile, template};
use kprov::provision::render::CLUSTER_SCOPED;
use kprov::tasks::remote::RemoteSource;
use kprov::tasks::{cluster, coverage, tls};
use serde_json::Value;
use sha2::Digest as _;

/// The AIAnalysis profile of kubernaut trees with HolmesGPT-API (2e38670be).
const HAPI: &str = "aianalysis-hapi";

/// Every kubernaut profile kprov ships: kubernaut HEAD's (d5a4a8709) and [`HAPI`].
const ALL: [&str; 8] = [
    "aianalysis",
    "aianalysis-hapi",
    "datastorage",
    "gateway",
    "notification",
    "remediationorchestrator",
    "signalprocessing",
    "workflowexecution",
];

/// A state directory whose manifest cache holds [`common::TEKTON_STAND_IN`] as the first
/// download of Tekton's release (module doc).
fn state_with_tekton_stand_in() -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    common::seed_tekton_release(&state.path().join("cache"));
    state
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn profiles_dir() -> PathBuf {
    repo().join("profiles")
}

/// A `--source` tree for a service, kept alive as long as it is used.
struct Source {
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Source {
    fn path(&self) -> &Path {
        &self.path
    }
}

/// The kubernaut tree `service`'s profile is written for (see the module doc).
fn source_for(service: &str) -> Source {
    if service == HAPI {
        return Source {
            _dir: None,
            path: repo().join("tests/fixtures/kubernaut-2e38670be"),
        };
    }
    let dir = common::kubernaut_source();
    Source {
        path: dir.path().to_path_buf(),
        _dir: Some(dir),
    }
}

/// A home without files: host files the profiles name (workflowexecution's
/// `~/.config/containers/auth.json`) are absent, whatever the machine's own home holds.
fn empty_home() -> &'static Path {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn kprov(profiles: &Path, source: &Path) -> Command {
    let mut c = Command::cargo_bin("kprov").unwrap();
    c.env_remove("KPROV_PROFILES")
        .env_remove("KPROV_SOURCE")
        .env_remove("KPROV_STATE")
        .env("HOME", empty_home())
        .env("NO_COLOR", "1");
    c.arg("--profiles")
        .arg(profiles)
        .arg("--source")
        .arg(source);
    c
}

/// `kprov plan --format json` with fixed limits and no run records (default estimates).
fn plan_json(source: &Path, service: &str, strategy: &str) -> Value {
    let state = tempfile::tempdir().unwrap();
    let out = kprov(&profiles_dir(), source)
        .args([
            "plan",
            "--service",
            service,
            "--strategy",
            strategy,
            "--format",
            "json",
            "--jobs",
            "8",
            "--build-jobs",
            "2",
            "--state",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan {service}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kprov render --format FORMAT` of `service`, with a state directory whose manifest cache
/// holds only the stand-in for Tekton's release ([`state_with_tekton_stand_in`]), from a copy
/// of kprov's tree with the AWX Operator's stand-in base ([`common::kprov_tree`]).
fn render_text(source: &Path, service: &str, format: &str) -> String {
    let state = state_with_tekton_stand_in();
    let tree = tempfile::tempdir().unwrap();
    let out = kprov(&common::kprov_tree(tree.path()), source)
        .args(["render", "--service", service, "--format", format])
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "render {service}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One object of a render, with the task that applies it.
struct Item {
    task: String,
    object: Value,
}

/// What `kprov render --format json` says a run of `service` applies.
struct Render {
    service: String,
    items: Vec<Item>,
}

fn render(service: &str) -> Render {
    let source = source_for(service);
    let text = render_text(source.path(), service, "json");
    let items = serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| Item {
            task: i["task"].as_str().unwrap().to_string(),
            object: i["object"].clone(),
        })
        .collect();
    Render {
        service: service.to_string(),
        items,
    }
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(o: &Value) -> Option<&str> {
    o["metadata"]["namespace"].as_str()
}

/// The pod template's spec (a Pod's own spec).
fn pod_spec(o: &Value) -> Option<&Value> {
    match kind(o) {
        "Pod" => o.get("spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => o.pointer("/spec/template/spec"),
        _ => None,
    }
}

/// Containers and init containers.
fn all_containers(o: &Value) -> Vec<&Value> {
    let Some(pod) = pod_spec(o) else {
        return Vec::new();
    };
    ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod.get(*l).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn containers(o: &Value) -> Vec<&Value> {
    o.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn env<'a>(c: &'a Value, var: &str) -> Option<&'a str> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str())
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A file a container sees, traced to the ConfigMap or Secret key it comes from.
#[derive(Debug)]
struct Mounted {
    kind: String,
    name: String,
    key: String,
    /// The key's value in the render (`None`: that object is not in the render).
    content: Option<String>,
    sub_path: bool,
}

impl Render {
    fn objects(&self) -> impl Iterator<Item = &Value> {
        self.items.iter().map(|i| &i.object)
    }

    fn find(&self, kind_: &str, name_: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| kind(&i.object) == kind_ && name(&i.object) == name_)
    }

    fn get(&self, kind_: &str, name_: &str) -> &Value {
        match self.find(kind_, name_) {
            Some(i) => &i.object,
            None => panic!(
                "{}: no {kind_} {name_} in the render; it has: {:?}",
                self.service,
                self.objects()
                    .map(|o| format!("{} {}", kind(o), name(o)))
                    .collect::<Vec<_>>()
            ),
        }
    }

    fn container(&self, deployment: &str, container: &str) -> &Value {
        let d = self.get("Deployment", deployment);
        containers(d)
            .into_iter()
            .find(|c| c["name"] == container)
            .unwrap_or_else(|| {
                panic!(
                    "{}: Deployment {deployment} has no container {container}",
                    self.service
                )
            })
    }

    /// The data (or stringData) value `key` of a ConfigMap or Secret in the render.
    fn data(&self, kind_: &str, name_: &str, key: &str) -> Option<String> {
        let o = &self.find(kind_, name_)?.object;
        ["data", "stringData"]
            .iter()
            .find_map(|d| o[*d][key].as_str())
            .map(str::to_string)
    }

    /// A ConfigMap key parsed as YAML.
    fn yaml(&self, config_map: &str, key: &str) -> Value {
        let text = self
            .data("ConfigMap", config_map, key)
            .unwrap_or_else(|| panic!("{}: ConfigMap {config_map} has no {key}", self.service));
        serde_saphyr::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{}: ConfigMap {config_map} key {key} is not YAML: {e}",
                self.service
            )
        })
    }

    /// The file at `path` in `container` of Deployment `deployment`: the longest mountPath that
    /// holds it, that mount's volume, and the ConfigMap/Secret key (items and projections
    /// followed). Panics when no mount or no key provides it.
    fn file(&self, deployment: &str, container: &str, path: &str) -> Mounted {
        let d = self.get("Deployment", deployment);
        let c = self.container(deployment, container);
        let what = format!("{}: {deployment}/{container}: {path}", self.service);
        let mut mounts: Vec<&Value> = c["volumeMounts"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        mounts.sort_by_key(|m| std::cmp::Reverse(m["mountPath"].as_str().unwrap_or("").len()));
        let (mount, rel) = mounts
            .iter()
            .find_map(|m| {
                let at = m["mountPath"].as_str()?;
                if path == at {
                    Some((*m, None))
                } else {
                    path.strip_prefix(&format!("{}/", at.trim_end_matches('/')))
                        .map(|rel| (*m, Some(rel.to_string())))
                }
            })
            .unwrap_or_else(|| panic!("{what}: no volume mount holds it"));
        let sub_path = mount["subPath"].as_str();
        let in_volume = match (sub_path, rel) {
            (Some(s), None) => s.to_string(),
            (Some(s), Some(rel)) => format!("{s}/{rel}"),
            (None, Some(rel)) => rel,
            (None, None) => panic!("{what}: is a whole volume's directory, not a file"),
        };
        let volume = d["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
            .unwrap_or_else(|| panic!("{what}: volume {} is not declared", mount["name"]));
        // (kind, name, items) of each source the volume projects.
        let mut sources: Vec<(&str, &str, Option<&Value>)> = Vec::new();
        if let Some(cm) = volume.get("configMap") {
            sources.push(("ConfigMap", cm["name"].as_str().unwrap(), cm.get("items")));
        }
        if let Some(s) = volume.get("secret") {
            sources.push(("Secret", s["secretName"].as_str().unwrap(), s.get("items")));
        }
        for p in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(cm) = p.get("configMap") {
                sources.push(("ConfigMap", cm["name"].as_str().unwrap(), cm.get("items")));
            }
            if let Some(s) = p.get("secret") {
                sources.push(("Secret", s["name"].as_str().unwrap(), s.get("items")));
            }
        }
        assert!(
            !sources.is_empty(),
            "{what}: volume {volume} is no ConfigMap or Secret"
        );
        for (kind_, name_, items) in sources {
            let key = match items.and_then(Value::as_array) {
                Some(items) => match items.iter().find(|i| i["path"] == in_volume.as_str()) {
                    Some(i) => i["key"].as_str().unwrap().to_string(),
                    None => continue,
                },
                None => in_volume.clone(),
            };
            return Mounted {
                kind: kind_.to_string(),
                name: name_.to_string(),
                content: self.data(kind_, name_, &key),
                key,
                sub_path: sub_path.is_some(),
            };
        }
        panic!("{what}: no item of volume {volume} is at {in_volume}")
    }

    /// The file's content; panics when the object that provides it is not in the render or lacks
    /// the key.
    fn file_text(&self, deployment: &str, container: &str, path: &str) -> String {
        let m = self.file(deployment, container, path);
        m.content.unwrap_or_else(|| {
            panic!(
                "{}: {deployment}/{container}: {path} is key {} of {} {}, which the render lacks",
                self.service, m.key, m.kind, m.name
            )
        })
    }

    /// Whether RBAC in the render lets ServiceAccount `sa_ns/sa` `verb` the `resource` named
    /// `object` of API group `group` in namespace `ns` (`None`: a cluster-scoped resource).
    #[allow(clippy::too_many_arguments)]
    fn allowed(
        &self,
        sa_ns: &str,
        sa: &str,
        verb: &str,
        group: &str,
        resource: &str,
        object: &str,
        ns: Option<&str>,
    ) -> bool {
        let any = |v: &Value, want: &str| strings(v).iter().any(|x| *x == want || *x == "*");
        self.objects()
            .filter(|b| match kind(b) {
                "ClusterRoleBinding" => true,
                "RoleBinding" => ns.is_some() && namespace(b) == ns,
                _ => false,
            })
            .filter(|b| {
                b["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == sa
                        && s["namespace"].as_str().or(namespace(b)) == Some(sa_ns)
                })
            })
            .filter_map(|b| {
                let role_kind = b["roleRef"]["kind"].as_str()?;
                let role_name = b["roleRef"]["name"].as_str()?;
                self.objects().find(|r| {
                    kind(r) == role_kind
                        && name(r) == role_name
                        && (role_kind == "ClusterRole" || namespace(r) == namespace(b))
                })
            })
            .flat_map(|r| r["rules"].as_array().into_iter().flatten())
            .any(|rule| {
                any(&rule["apiGroups"], group)
                    && any(&rule["resources"], resource)
                    && any(&rule["verbs"], verb)
                    && (strings(&rule["resourceNames"]).is_empty()
                        || strings(&rule["resourceNames"]).contains(&object))
            })
    }

    /// DataStorage's auth middleware lets the pod of `deployment` write audit events: SAR
    /// `create` and `get` on services/data-storage-service in DataStorage's namespace
    /// (datastorage-stack.md, "What the DataStorage binary requires": auth middleware).
    fn may_write_to_datastorage(&self, deployment: &str) {
        let d = self.get("Deployment", deployment);
        let ns = namespace(d).unwrap();
        let sa = d["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {deployment} names no ServiceAccount", self.service));
        let ds_ns = namespace(self.get("Deployment", "datastorage")).unwrap();
        for verb in ["create", "get"] {
            assert!(
                self.allowed(
                    ns,
                    sa,
                    verb,
                    "",
                    "services",
                    "data-storage-service",
                    Some(ds_ns)
                ),
                "{}: ServiceAccount {ns}/{sa} ({deployment}) may not {verb} \
                 services/data-storage-service in {ds_ns}",
                self.service
            );
        }
    }

    /// A controller that audits to DataStorage over TLS: every https `datastorage.*` URL of its
    /// config names a host DataStorage's certificate covers, and `TLS_CA_FILE` is the
    /// inter-service CA (the binaries' `/readyz` fails closed until `healthUrl` answers).
    fn trusts_datastorage(
        &self,
        p: &Profile,
        deployment: &str,
        container: &str,
        datastorage: &Value,
    ) {
        let sans = datastorage_sans(p);
        let mut urls = 0;
        for key in ["url", "healthUrl"] {
            let Some(url) = datastorage[key].as_str() else {
                continue;
            };
            let rest = url.strip_prefix("https://").unwrap_or_else(|| {
                panic!(
                    "{}: {deployment}: datastorage.{key} {url} is not https",
                    self.service
                )
            });
            let host = rest.split([':', '/']).next().unwrap();
            assert!(
                sans.iter().any(|s| s == host),
                "{}: {deployment}: datastorage.{key} host {host} is not a SAN of datastorage-tls \
                 {sans:?}",
                self.service
            );
            urls += 1;
        }
        assert!(
            urls > 0,
            "{}: {deployment}: no datastorage URL",
            self.service
        );
        let c = self.container(deployment, container);
        let ca = env(c, "TLS_CA_FILE")
            .unwrap_or_else(|| panic!("{}: {deployment}: no TLS_CA_FILE", self.service));
        let m = self.file(deployment, container, ca);
        assert_eq!(
            (m.kind.as_str(), m.name.as_str(), m.key.as_str()),
            ("ConfigMap", "inter-service-ca", "ca.crt"),
            "{}: {deployment}: TLS_CA_FILE {ca}",
            self.service
        );
    }

    /// The container's args are exactly `args`, and the config file they name is mounted.
    fn runs_with(&self, deployment: &str, container: &str, args: &[&str], config: &str) {
        let c = self.container(deployment, container);
        assert_eq!(
            strings(&c["args"]),
            args,
            "{}: {deployment}/{container} args",
            self.service
        );
        let text = self.file_text(deployment, container, config);
        assert!(
            !text.trim().is_empty(),
            "{}: {deployment}: {config} is empty",
            self.service
        );
    }

    fn node_ports(&self, service: &str) -> BTreeMap<String, u64> {
        self.get("Service", service)["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                Some((
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["nodePort"].as_u64()?,
                ))
            })
            .collect()
    }
}

/// The SANs kprov issues datastorage-tls with: the profile's templated SANs, as apply:config
/// computes them (`tls::leaves`).
fn datastorage_sans(p: &Profile) -> Vec<String> {
    let t = p.spec.config.tls.as_ref().expect("config.tls");
    let vals = p.template_values(&BTreeMap::new(), &BTreeMap::new(), &BTreeMap::new());
    let sans: Vec<Vec<String>> = t
        .certificates
        .iter()
        .map(|c| {
            c.sans
                .iter()
                .map(|s| template::render(s, &vals).unwrap())
                .collect()
        })
        .collect();
    tls::leaves(t, p.namespace(), &sans)
        .into_iter()
        .find(|l| l.secret == "datastorage-tls")
        .expect("a datastorage-tls certificate")
        .sans
}

/// The kind config kprov hands `kind create cluster` for the profile (no --coverage): the
/// profile's `cluster:` with every `ports:` entry added on loopback, as the cluster task does
/// (src/provision/works.rs `port_mappings`).
fn kind_config(p: &Profile, source: &Path) -> Value {
    let mut spec = p.spec.cluster.clone().unwrap_or_default();
    spec.name = Some(p.cluster_name());
    spec.extra_port_mappings
        .extend(p.spec.ports.values().map(|port| profile::PortMapping {
            container_port: port.node_port,
            host_port: port.host_port,
            listen_address: Some("127.0.0.1".into()),
            protocol: None,
        }));
    let req = cluster::ClusterRequest {
        name: p.cluster_name(),
        spec,
        source: source.to_path_buf(),
        coverage_dir: None,
        reuse: false,
        kubeconfig: p.kubeconfig().unwrap(),
        service: Some(p.service.clone()),
    };
    cluster::kind_config(&req).unwrap_or_else(|e| panic!("{}: {e}", p.service))
}

fn load(service: &str) -> Profile {
    profile::load(&profiles_dir(), service).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether component `component` of `p` is applied only after `unit` (its `dependsOn`).
fn depends_on(p: &Profile, component: &str, unit: &str) -> bool {
    p.spec.components[component]
        .depends_on
        .iter()
        .any(|d| d == unit)
}

/// H11 (aianalysis.md): SeedWorkflowsInDataStorage as HTTP steps, one after the other: each
/// of the six fixtures registered for staging, production and test (POST its text inline,
/// `source: e2e-test`, `registeredBy: e2e-test-seeder`; 201, 200 or 409), then listed by name,
/// the listed id a run-time value the mock LLM's scenarios use; HAPI, the controller and the
/// mock LLM applied after the seeding (Phase 7c).
fn hapi_seeding_facts(p: &Profile, r: &Render, source: &Path) {
    let spec = &p.spec;
    let images = spec
        .images
        .keys()
        .map(|k| (k.clone(), String::new()))
        .collect();
    let vals = p.template_values(&BTreeMap::new(), &images, &BTreeMap::new());
    let mut previous = "seed-action-type-scale-replicas".to_string();
    let fixtures = [
        "oomkill-increase-memory",
        "crashloop-config-fix",
        "node-drain-reboot",
        "memory-optimize",
        "generic-restart",
        "test-signal-handler",
    ];
    for dir in fixtures {
        let name = format!("{dir}-v1");
        let text = std::fs::read_to_string(source.join(format!(
            "test/fixtures/workflows/{dir}/workflow-schema.yaml"
        )))
        .unwrap();
        for env in ["staging", "production", "test"] {
            let step = format!("register-workflow-{name}-{env}");
            let st = &spec.steps[&step];
            assert_eq!(st.after, [previous.clone()], "{step}: one after the other");
            let h = st.http.as_ref().unwrap();
            assert_eq!(h.method.as_deref(), Some("POST"));
            assert!(h.url.ends_with("/api/v1/workflows"), "{}", h.url);
            assert_eq!(h.expect_status, [201, 200, 409]);
            let body = p
                .render_template(source, h.body.as_ref().unwrap(), &vals)
                .unwrap();
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"content": text, "source": "e2e-test", "registeredBy": "e2e-test-seeder"})
            );
            previous = step;
        }
        let find = format!("find-workflow-{name}");
        assert_eq!(spec.steps[&find].after, [previous.clone()]);
        let url = &spec.steps[&find].http.as_ref().unwrap().url;
        assert!(
            url.ends_with(&format!("/api/v1/workflows?workflow_name={name}&limit=1")),
            "{url}"
        );
        let value = spec.runtime[&format!("workflow-id-{name}")]
            .http_response
            .as_ref()
            .unwrap();
        assert_eq!(
            (value.step.as_str(), value.path.as_str()),
            (find.as_str(), ".workflows[0].workflowId")
        );
        previous = find;
    }
    // H12: every "<name>:<env>" key of the scenarios carries that workflow's value.
    let scenarios = r.yaml("mock-llm-scenarios", "scenarios.yaml");
    let scenarios = scenarios["scenarios"].as_object().unwrap();
    assert_eq!(scenarios.len(), 18);
    for (key, s) in scenarios {
        let name = key.split(':').next().unwrap();
        assert_eq!(
            s["workflow_id"],
            format!("<runtime.workflow-id-{name} from value:workflow-id-{name}>"),
            "{key}"
        );
    }
    // H19: Phase 7c after the seeding.
    for c in ["holmesgpt-api", "aianalysis-controller"] {
        assert!(depends_on(p, c, &previous), "{c} after {previous}");
    }
}

/// The reference `kprov render` gives an image: its external reference, else a placeholder
/// naming the build.
fn rendered_ref(p: &Profile, image: &str) -> String {
    match &p.spec.images[image].external {
        Some(r) => r.clone(),
        None => format!("<image.{image} from build:{image}>"),
    }
}

/// insta settings masking the run's paths: the source tree as `[source]`, kprov's tree (or its
/// copy) as `[kprov]`.
fn masked(source: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex::escape(&source.display().to_string()), "[source]");
    s.add_filter(&regex::escape(&repo().display().to_string()), "[kprov]");
    // The copy of kprov's tree a render runs from (common::kprov_tree).
    let tmp = regex::escape(&std::env::temp_dir().display().to_string());
    s.add_filter(
        &format!(r"{tmp}/\.tmp[0-9A-Za-z]+/(manifests|profiles)"),
        "[kprov]/$1",
    );
    s
}

/// A render's YAML with each CustomResourceDefinition's body replaced by its name and the
/// sha256 of its rendered document: the CRDs are kubernaut's files, which this repository never
/// holds a copy of.
fn elide_crds(yaml: &str) -> String {
    let mut docs: Vec<Vec<&str>> = Vec::new();
    for line in yaml.lines() {
        if line == "---" {
            docs.push(Vec::new());
        }
        docs.last_mut()
            .expect("a render starts with ---")
            .push(line);
    }
    let mut out = String::new();
    for doc in docs {
        if !doc.contains(&"kind: CustomResourceDefinition") {
            for l in doc {
                out.push_str(l);
                out.push('\n');
            }
            continue;
        }
        let text = doc[2..].join("\n");
        let sha = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        let api_version = doc.iter().find(|l| l.starts_with("apiVersion: ")).unwrap();
        let meta = doc.iter().position(|l| *l == "metadata:").unwrap();
        let crd_name = doc[meta..]
            .iter()
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap();
        out.push_str(&format!(
            "{}\n{}\n{api_version}\nkind: CustomResourceDefinition\nmetadata:\n  name: {crd_name}\n\
             # body not kept here ({} lines, sha256 {sha})\n",
            doc[0],
            doc[1],
            doc.len() - 2,
        ));
    }
    out
}

#[test]
fn every_kubernaut_profile_validates_against_its_kubernaut_tree() {
    // Every profile kprov ships but its demo is one of these tests' profiles.
    let shipped: Vec<String> = profile::find(&profiles_dir())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| s != "demo")
        .collect();
    assert_eq!(shipped, ALL);
    for s in ALL {
        let source = source_for(s);
        let out = kprov(&profiles_dir(), source.path())
            .args(["validate", "--service", s])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_kubernaut_profile_plans_to_its_snapshotted_graph() {
    for s in ALL {
        let source = source_for(s);
        let plan = plan_json(source.path(), s, "dag");
        assert_eq!(plan["service"], s);
        insta::assert_json_snapshot!(format!("plan_{s}"), plan);
    }
}

#[test]
fn the_hybrid_estimate_is_never_below_the_dag_estimate() {
    for s in ALL {
        let source = source_for(s);
        let dag = plan_json(source.path(), s, "dag")["estimated_makespan_ms"]
            .as_u64()
            .unwrap();
        let hybrid = plan_json(source.path(), s, "hybrid")["estimated_makespan_ms"]
            .as_u64()
            .unwrap();
        assert!(hybrid >= dag, "{s}: hybrid {hybrid} ms < dag {dag} ms");
        println!("{s:<24} dag {dag:>7} ms  hybrid {hybrid:>7} ms");
    }
}

/// `kprov render --format yaml` of every profile, snapshotted: the source tree's and kprov's
/// paths masked, CRD bodies elided ([`elide_crds`]); workflowexecution with Tekton's release
/// read from the cache as [`common::TEKTON_STAND_IN`] (module doc).
#[test]
fn every_kubernaut_profile_renders_to_its_snapshotted_objects() {
    for s in ALL {
        let source = source_for(s);
        let yaml = render_text(source.path(), s, "yaml");
        let text = elide_crds(&yaml);
        masked(source.path()).bind(|| {
            insta::assert_snapshot!(format!("render_{s}"), text);
        });
    }
}

/// A copy of kprov's profiles and manifests, to break or edit without touching the repo.
fn kprov_tree_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["profiles", "manifests"] {
        for entry in walkdir::WalkDir::new(repo().join(sub)) {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(repo()).unwrap();
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(dir.path().join(rel)).unwrap();
            } else {
                std::fs::copy(entry.path(), dir.path().join(rel)).unwrap();
            }
        }
    }
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn line_col_of(path: &Path, needle: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()))
}

#[test]
fn a_profile_with_syntax_errors_exits_2_listing_each_with_file_line_and_column() {
    let source = source_for("signalprocessing");
    let copy = kprov_tree_copy();
    let sp = copy.path().join("profiles/signalprocessing.yaml");
    edit(
        &sp,
        "    images: [signalprocessing]\n",
        "    images: [signalprocessing]\n    replicas: 2\n",
    );
    edit(&sp, "      coverageArgs:\n", "      coverageArg:\n");
    let out = kprov(&copy.path().join("profiles"), source.path())
        .args(["validate", "--service", "signalprocessing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 errors in profile"), "{err}");
    for (needle, field) in [
        (
            "replicas: 2",
            "components.signalprocessing-controller.replicas",
        ),
        ("coverageArg:", "images.signalprocessing.build.coverageArg"),
    ] {
        let (line, col) = line_col_of(&sp, needle);
        let want = format!("{}:{line}:{col}: {field}: unknown field", sp.display());
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn a_profile_with_semantic_errors_exits_2_listing_each_in_the_file_that_holds_it() {
    let source = source_for("signalprocessing");
    let copy = kprov_tree_copy();
    let sp = copy.path().join("profiles/signalprocessing.yaml");
    let stack = copy.path().join("profiles/stacks/datastorage.yaml");
    edit(
        &sp,
        "    images: [signalprocessing]\n",
        "    images: [signalprocesing]\n",
    );
    edit(&sp, "    nodePort: 30182\n", "    nodePort: 3182\n");
    edit(
        &stack,
        "dockerfile: docker/data-storage.Dockerfile",
        "dockerfile: docker/datastorage.Dockerfile",
    );
    // A file of the source tree a ConfigMap reads (a symlink in the overlay).
    std::fs::remove_file(
        source
            .path()
            .join("config/signalprocessing/proactive-signal-mappings.yaml"),
    )
    .unwrap();
    let out = kprov(&copy.path().join("profiles"), source.path())
        .args(["validate", "--service", "signalprocessing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 errors in profile"), "{err}");
    let expect = [
        (
            &sp,
            "images: [signalprocesing]",
            "unknown image \"signalprocesing\"",
        ),
        (
            &sp,
            "nodePort: 3182",
            "nodePort 3182 is outside 30000-32767",
        ),
        (
            &stack,
            "dockerfile: docker/datastorage.Dockerfile",
            "datastorage.Dockerfile does not exist",
        ),
        (
            &sp,
            "configMaps:",
            "proactive-signal-mappings.yaml does not exist",
        ),
    ];
    for (file, needle, message) in expect {
        let (line, _) = line_col_of(file, needle);
        let found = err
            .lines()
            .any(|l| l.contains(&format!("{}:{line}:", file.display())) && l.contains(message));
        assert!(
            found,
            "no {message:?} at {}:{line}: in:\n{err}",
            file.display()
        );
    }
}

/// Containers that have no readiness probe, as in kubernaut: (service, container, why).
const WITHOUT_PROBES: [(&str, &str, &str); 3] = [
    (
        "workflowexecution",
        "kube-rbac-proxy",
        "the AWX Operator's proxy sidecar has none (its own base; here the stand-in's)",
    ),
    (
        "notification",
        "nginx",
        "mock-webhook has no probes (conformance/notification.md row 14)",
    ),
    (
        HAPI,
        "holmesgpt-api",
        "HAPI has no probes (conformance/aianalysis.md row H16)",
    ),
];

/// Images a component lists for the node to hold although its own objects do not run them:
/// an operator's custom resource, whose pods the operator makes. (service, task, images, why)
const RUN_BY_OPERATORS: [(&str, &str, &[&str], &str); 1] = [(
    "workflowexecution",
    "deploy:awx",
    &["awx", "awx-ee", "awx-init", "awx-redis"],
    "the AWX Operator runs them for the AWX resource (conformance/workflowexecution.md row 8)",
)];

/// The pull policy of third-party images, as kubernaut's manifests write it.
const EXTERNAL_PULL_POLICY: [(&str, Option<&str>); 6] = [
    // The AWX Operator's own base decides (here: common::AWX_OPERATOR_BASE's).
    ("awx-operator", Some("IfNotPresent")),
    ("kube-rbac-proxy", Some("IfNotPresent")),
    // datastorage-stack.md rows 13 and 15: none (IfNotPresent by default).
    ("postgres", None),
    ("redis", None),
    // notification.md row 14.
    ("nginx", Some("IfNotPresent")),
    // aianalysis.md row 34: the enrichment fixtures' pods name none.
    ("pause", None),
];

/// Declared NodePorts no Service serves: (service, port entry, why).
const UNSERVED_PORTS: [(&str, &str, &str); 2] = [
    (
        HAPI,
        "datastorage-health",
        "that era's DataStorage has no health port; the stack's entry stays (aianalysis.md H3)",
    ),
    (
        "workflowexecution",
        "awx",
        "the AWX Operator makes awx-e2e-service for the AWX resource's nodeport_port",
    ),
];

#[test]
fn every_component_renders_to_objects_with_exact_images_probes_and_declared_node_ports() {
    for s in ALL {
        let p = load(s);
        let r = render(s);
        let refs: BTreeMap<String, String> = p
            .spec
            .images
            .keys()
            .map(|k| (rendered_ref(&p, k), k.clone()))
            .collect();
        let declared: BTreeMap<u64, &str> = p
            .spec
            .ports
            .iter()
            .map(|(n, port)| (u64::from(port.node_port), n.as_str()))
            .collect();
        let workloads = p
            .spec
            .components
            .iter()
            .map(|(n, c)| (format!("deploy:{n}"), &c.images))
            .chain(
                p.spec
                    .hooks
                    .iter()
                    .map(|(n, h)| (format!("hook:{n}"), &h.images)),
            )
            // A step's objects (seeds, fixtures) may run containers too: of its images only.
            .chain(
                p.spec
                    .steps
                    .iter()
                    .map(|(n, st)| (format!("step:{n}"), &st.images)),
            );
        for (task, images) in workloads {
            let step = task.starts_with("step:");
            // A release by URL applies as it comes, each object in its own namespace (Tekton's
            // ServiceAccounts in tekton-pipelines and tekton-pipelines-resolvers).
            let release = task
                .strip_prefix("deploy:")
                .and_then(|c| p.spec.components.get(c))
                .is_some_and(|c| {
                    c.manifests
                        .iter()
                        .all(|m| matches!(m, ManifestEntry::Remote(RemoteSource::Url { .. })))
                });
            let objects: Vec<&Value> = r
                .items
                .iter()
                .filter(|i| i.task == task)
                .map(|i| &i.object)
                .collect();
            // Steps that only patch status or call HTTP render nothing.
            assert!(step || !objects.is_empty(), "{s}: {task} renders nothing");
            let mut used = BTreeSet::new();
            for o in &objects {
                // A component's or hook's namespaced kinds are in the profile's namespace,
                // cluster-scoped ones in none (steps seed fixtures wherever kubernaut does).
                let want_ns = (!CLUSTER_SCOPED.contains(&kind(o))).then(|| p.namespace());
                assert!(
                    step || release || namespace(o) == want_ns,
                    "{s}: {task}: {} {} in namespace {:?}",
                    kind(o),
                    name(o),
                    namespace(o)
                );
                for c in all_containers(o) {
                    let image = c["image"].as_str().unwrap();
                    let key = refs.get(image).unwrap_or_else(|| {
                        panic!("{s}: {task}: image {image} is not a profile image")
                    });
                    used.insert(key.clone());
                    let policy = c["imagePullPolicy"].as_str();
                    if p.spec.images[key].external.is_none() {
                        assert_eq!(policy, Some("Never"), "{s}: {task}: {image}");
                    } else {
                        let want = EXTERNAL_PULL_POLICY
                            .iter()
                            .find(|(k, _)| k == key)
                            .unwrap_or_else(|| panic!("{s}: no expected pull policy for {key}"))
                            .1;
                        assert_eq!(policy, want, "{s}: {task}: {image}");
                    }
                }
                if !step && matches!(kind(o), "Deployment" | "StatefulSet") {
                    for c in containers(o) {
                        let container = c["name"].as_str().unwrap();
                        let exempt = WITHOUT_PROBES
                            .iter()
                            .any(|(svc, n, _)| *svc == s && *n == container);
                        assert_eq!(
                            c.get("readinessProbe").is_some(),
                            !exempt,
                            "{s}: {task}: container {container} readiness probe"
                        );
                    }
                }
                if kind(o) == "Service" {
                    for port in o["spec"]["ports"].as_array().into_iter().flatten() {
                        if let Some(np) = port["nodePort"].as_u64() {
                            assert!(
                                declared.contains_key(&np),
                                "{s}: {task}: Service {} uses undeclared NodePort {np}",
                                name(o)
                            );
                        }
                    }
                }
            }
            let wanted: BTreeSet<String> = images.iter().cloned().collect();
            for (_, _, keys, _) in RUN_BY_OPERATORS
                .iter()
                .filter(|(svc, t, ..)| *svc == s && *t == task)
            {
                used.extend(keys.iter().map(|k| k.to_string()));
            }
            assert_eq!(used, wanted, "{s}: {task}: images used vs images: listed");
        }
        // Every declared NodePort is served by some Service (but the listed exceptions).
        let served: BTreeSet<u64> = r
            .objects()
            .filter(|o| kind(o) == "Service")
            .flat_map(|o| o["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|port| port["nodePort"].as_u64())
            .collect();
        let unserved: BTreeSet<&str> = declared
            .iter()
            .filter(|(np, _)| !served.contains(np))
            .map(|(_, n)| *n)
            .collect();
        let expected: BTreeSet<&str> = UNSERVED_PORTS
            .iter()
            .filter(|(svc, _, _)| *svc == s)
            .map(|(_, n, _)| *n)
            .collect();
        assert_eq!(
            unserved, expected,
            "{s}: declared NodePorts no Service serves"
        );
    }
}

#[test]
fn coverage_instruments_exactly_the_images_with_coverage_args() {
    // (service, images with coverageArgs, Deployments that write coverage on every run)
    type Expected = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let expected: [Expected; 8] = [
        ("aianalysis", &["aianalysis", "datastorage"], &[]),
        (HAPI, &["aianalysis", "datastorage"], &[]),
        ("datastorage", &["datastorage"], &[]),
        ("gateway", &["datastorage", "gateway"], &[]),
        // authwebhook.md row 10: GOCOVERDIR and the coverdata hostPath on every run.
        (
            "notification",
            &["authwebhook", "datastorage", "notification"],
            &["authwebhook"],
        ),
        // remediationorchestrator.md row 14, authwebhook.md row 10.
        (
            "remediationorchestrator",
            &["authwebhook", "datastorage", "remediationorchestrator"],
            &["authwebhook", "remediationorchestrator-controller"],
        ),
        // signalprocessing.md rows 2, 22-24: built with GOFLAGS=-cover and run as root with
        // GOCOVERDIR on every run.
        (
            "signalprocessing",
            &["datastorage", "signalprocessing"],
            &["signalprocessing-controller"],
        ),
        (
            "workflowexecution",
            &["authwebhook", "datastorage", "workflowexecution"],
            &["authwebhook"],
        ),
    ];
    for (s, want, always) in expected {
        let p = load(s);
        let with_args: Vec<&str> = p
            .spec
            .images
            .iter()
            .filter(|(_, i)| {
                i.build
                    .as_ref()
                    .is_some_and(|b| !b.coverage_args.is_empty())
            })
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(with_args, want, "{s}: images with coverageArgs");
        for (k, i) in &p.spec.images {
            let Some(b) = &i.build else { continue };
            if with_args.contains(&k.as_str()) {
                assert_eq!(
                    b.coverage_args.get("GOFLAGS").map(String::as_str),
                    Some("-cover"),
                    "{s}: {k}"
                );
            }
            // Only SignalProcessing is built instrumented without --coverage.
            let always_cover = s == "signalprocessing" && k == "signalprocessing";
            assert_eq!(
                b.args.get("GOFLAGS").map(String::as_str),
                always_cover.then_some("-cover"),
                "{s}: {k}: plain GOFLAGS build arg"
            );
        }

        let r = render(s);
        // Without --coverage: exactly `always` carry GOCOVERDIR and the coverdata volume.
        let writing: BTreeSet<&str> = r
            .objects()
            .filter(|o| kind(o) == "Deployment")
            .filter(|o| {
                containers(o)
                    .iter()
                    .any(|c| env(c, "GOCOVERDIR") == Some(coverage::COVERDATA))
            })
            .map(name)
            .collect();
        assert_eq!(
            writing,
            always.iter().copied().collect(),
            "{s}: Deployments writing coverage without --coverage"
        );
        for d in always {
            let pod = &r.get("Deployment", d)["spec"]["template"]["spec"];
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["hostPath"]["path"] == coverage::COVERDATA)
                .unwrap_or_else(|| panic!("{s}: {d}: no /coverdata hostPath"));
            assert_eq!(volume["hostPath"]["type"], "DirectoryOrCreate", "{s}: {d}");
        }
        if s == "signalprocessing" {
            let pod =
                &r.get("Deployment", "signalprocessing-controller")["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"],
                serde_json::json!({"runAsUser": 0, "runAsGroup": 0}),
                "signalprocessing.md row 22: the pod runs as root on every run"
            );
        }

        // With --coverage: the instrumented images' Deployments, and nothing else, change.
        let instrumented: Vec<String> = with_args.iter().map(|k| rendered_ref(&p, k)).collect();
        let mut covered = BTreeSet::new();
        for item in &r.items {
            let mut o = item.object.clone();
            let changed = coverage::instrument(&mut o, &instrumented);
            let runs_instrumented = matches!(kind(&o), "Deployment" | "StatefulSet")
                && containers(&o)
                    .iter()
                    .any(|c| instrumented.iter().any(|r| c["image"] == r.as_str()));
            assert_eq!(
                changed,
                runs_instrumented,
                "{s}: {}: {} {}",
                item.task,
                kind(&o),
                name(&o)
            );
            if !changed {
                assert_eq!(o, item.object, "{s}: {} changed", name(&o));
                continue;
            }
            for c in containers(&o) {
                let image = c["image"].as_str().unwrap();
                let has_env = env(c, "GOCOVERDIR") == Some(coverage::COVERDATA);
                assert_eq!(
                    has_env,
                    instrumented.iter().any(|r| r == image),
                    "{s}: {}: container {image}",
                    item.task
                );
                if has_env {
                    covered.insert(image.to_string());
                }
            }
        }
        // Each instrumented image runs in some Deployment, so coverage has something to collect.
        assert_eq!(
            covered,
            instrumented.iter().cloned().collect::<BTreeSet<_>>(),
            "{s}: instrumented images without a Deployment"
        );
    }
}

/// The cluster each profile asks for: the suite's own kind config, cluster name and kubeconfig
/// (each table's header rows "cluster name", "kubeconfig", "kind config"), the node image of that
/// kind config, and the host ports the suite dials (its "host URLs the tests dial" row), as kprov
/// hands them to kind; and the CA file beside the kubeconfig (datastorage-stack.md row 6).
#[test]
fn every_profile_uses_its_suites_cluster_kind_config_host_ports_and_ca_file() {
    const NODE_HEAD: &str = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5";
    const NODE_2E38670BE: &str = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a";
    // (service, cluster, kind config, node image, (NodePort, host port) the suite dials)
    type Cluster = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [(u16, u16)],
    );
    let table: [Cluster; 8] = [
        (
            "datastorage",
            "datastorage-e2e",
            "kind-datastorage-config.yaml",
            NODE_HEAD,
            &[
                (30081, 28090),
                (30181, 28091),
                (30281, 28092),
                (30432, 25433),
            ],
        ),
        (
            "signalprocessing",
            "signalprocessing-e2e",
            "kind-signalprocessing-config.yaml",
            NODE_HEAD,
            &[(30182, 9182), (30081, 30081), (30281, 30281)],
        ),
        (
            "gateway",
            "gateway-e2e",
            "kind-gateway-config.yaml",
            NODE_HEAD,
            &[
                (30080, 8080),
                (30180, 28080),
                (30090, 9090),
                (30081, 18091),
                (30281, 28091),
            ],
        ),
        (
            "aianalysis",
            "aianalysis-e2e",
            "kind-aianalysis-config.yaml",
            NODE_HEAD,
            &[
                (30284, 8184),
                (30184, 9184),
                (30081, 8091),
                (30188, 28088),
                (30281, 30281),
            ],
        ),
        (
            HAPI,
            "aianalysis-e2e",
            "kind-aianalysis-config.yaml",
            NODE_2E38670BE,
            &[
                (30084, 8084),
                (30184, 9184),
                (30284, 8184),
                (30088, 8088),
                (30081, 8091),
            ],
        ),
        (
            "workflowexecution",
            "workflowexecution-e2e",
            "kind-workflowexecution-config.yaml",
            NODE_HEAD,
            &[(30185, 9185), (30081, 8092)],
        ),
        (
            "remediationorchestrator",
            "ro-e2e",
            "kind-remediationorchestrator-config.yaml",
            NODE_HEAD,
            &[(30081, 8090), (30183, 9183)],
        ),
        (
            "notification",
            "notification-e2e",
            "kind-notification-config.yaml",
            NODE_HEAD,
            &[(30090, 30090), (30186, 9186), (30281, 30281)],
        ),
    ];
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    for (s, name_, file, node, ports) in table {
        let p = load(s);
        let source = source_for(s);
        let c = p.spec.cluster.as_ref().unwrap();
        assert_eq!(p.cluster_name(), name_, "{s}: cluster name");
        assert_eq!(
            c.kubeconfig.as_deref(),
            Some(format!("~/.kube/{name_}-config").as_str()),
            "{s}: kubeconfig"
        );
        assert_eq!(
            c.kind_config.as_deref(),
            Some(format!("test/infrastructure/{file}").as_str()),
            "{s}: kind config"
        );
        let config = kind_config(&p, source.path());
        let nodes = config["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1, "{s}: one node");
        assert_eq!(nodes[0]["role"], "control-plane", "{s}");
        assert_eq!(nodes[0]["image"], node, "{s}: node image");
        let mappings = nodes[0]["extraPortMappings"].as_array().unwrap();
        let mapped: BTreeMap<u64, u64> = mappings
            .iter()
            .map(|m| {
                (
                    m["containerPort"].as_u64().unwrap(),
                    m["hostPort"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        // A NodePort is mapped once, a fixed host port published once (kind refuses both).
        assert_eq!(mapped.len(), mappings.len(), "{s}: a NodePort mapped twice");
        let fixed: Vec<u64> = mapped.values().copied().filter(|h| *h != 0).collect();
        assert_eq!(
            fixed.iter().collect::<BTreeSet<_>>().len(),
            fixed.len(),
            "{s}: a host port published twice: {mapped:?}"
        );
        // What `kprov plan` shows and `{{ hostPorts.NAME }}` gives before the run: the same.
        let planned = kprov::provision::render::planned_ports(&p, source.path()).unwrap();
        for (np, host) in ports {
            assert_eq!(
                mapped.get(&u64::from(*np)),
                Some(&u64::from(*host)),
                "{s}: NodePort {np} must be published on host port {host}: {mapped:?}"
            );
            if let Some(port) = planned.iter().find(|p| p.node_port == *np) {
                assert_eq!(port.host_port, Some(*host), "{s}: {port:?}");
            }
        }
        // datastorage-stack.md row 6: InterServiceCAPath = dirname(kubeconfig)/inter-service-ca.pem.
        let ca = p.spec.config.tls.as_ref().unwrap().ca_file.as_deref();
        assert_eq!(ca, Some("{{ kubeconfigDir }}/inter-service-ca.pem"), "{s}");
        let vals = p.template_values(&BTreeMap::new(), &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(
            PathBuf::from(template::render(ca.unwrap(), &vals).unwrap()),
            home.join(".kube/inter-service-ca.pem"),
            "{s}: CA file"
        );
    }
}

/// Where each kind config's `./coverdata` lands without --coverage: where kubernaut runs kind
/// from. Suites that pass `ProjectRootAsWorkingDir` (aianalysis, gateway) run it from the
/// repository root; datastorage and workflowexecution from the Go test's package directory.
#[test]
fn every_kind_config_mount_resolves_against_the_directory_kubernaut_runs_kind_from() {
    let table: [(&str, Option<&str>); 8] = [
        ("aianalysis", Some("coverdata")),
        (HAPI, None),
        ("datastorage", Some("test/e2e/datastorage/coverdata")),
        ("gateway", Some("coverdata")),
        ("notification", None),
        ("remediationorchestrator", None),
        ("signalprocessing", None),
        (
            "workflowexecution",
            Some("test/e2e/workflowexecution/coverdata"),
        ),
    ];
    for (s, coverdata) in table {
        let p = load(s);
        let source = source_for(s);
        let config = kind_config(&p, source.path());
        let mounts: Vec<(String, String)> = config["nodes"][0]["extraMounts"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|m| {
                        let host = m["hostPath"].as_str().unwrap();
                        let rel =
                            Path::new(host)
                                .strip_prefix(source.path())
                                .unwrap_or_else(|_| {
                                    panic!("{s}: host path {host} outside the source tree")
                                });
                        (
                            rel.display().to_string(),
                            m["containerPath"].as_str().unwrap().into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expect: Vec<(String, String)> = coverdata
            .map(|c| (c.to_string(), "/coverdata".to_string()))
            .into_iter()
            .collect();
        assert_eq!(mounts, expect, "{s}");
    }
}

/// The DataStorage stack as every HEAD profile deploys it (datastorage-stack.md).
fn datastorage_stack_facts(p: &Profile, r: &Render, source: &Path) {
    let s = &r.service;
    let ns = p.namespace();
    // "What the DataStorage binary requires": CONFIG_PATH is required, the config it names
    // must be there.
    let ds = r.container("datastorage", "datastorage");
    let config_path = env(ds, "CONFIG_PATH").expect("CONFIG_PATH");
    assert_eq!(config_path, "/etc/datastorage/config.yaml", "{s}");
    let config: Value =
        serde_saphyr::from_str(&r.file_text("datastorage", "datastorage", config_path)).unwrap();
    // Same table, LoadSecrets: database.secretsFile and (fatal when missing) redis.secretsFile,
    // each a YAML file holding the keys the config names (ADR-030); row 18: Secret redis-secret.
    for (section, secret, keys) in [
        (
            "database",
            "postgresql-secret",
            &["usernameKey", "passwordKey"][..],
        ),
        ("redis", "redis-secret", &["passwordKey"][..]),
    ] {
        let file = config[section]["secretsFile"]
            .as_str()
            .unwrap_or_else(|| panic!("{s}: no {section}.secretsFile"));
        let m = r.file("datastorage", "datastorage", file);
        assert_eq!(
            (m.kind.as_str(), m.name.as_str()),
            ("Secret", secret),
            "{s}: {file}"
        );
        let text = m
            .content
            .unwrap_or_else(|| panic!("{s}: Secret {secret} has no {}", m.key));
        let values: Value = serde_saphyr::from_str(&text).unwrap();
        for k in keys {
            let key = config[section][k].as_str().unwrap();
            assert!(
                values.get(key).is_some(),
                "{s}: {file} has no {key:?} ({section}.{k})"
            );
        }
    }
    // Rows 7 and 22: TLS from server.tls.certDir, the leaf datastorage-tls with the SANs every
    // client dials.
    let cert_dir = config["server"]["tls"]["certDir"].as_str().unwrap();
    for f in ["tls.crt", "tls.key"] {
        let m = r.file("datastorage", "datastorage", &format!("{cert_dir}/{f}"));
        assert_eq!(
            (m.kind.as_str(), m.name.as_str()),
            ("Secret", "datastorage-tls"),
            "{s}"
        );
        assert!(m.content.is_some(), "{s}: datastorage-tls is not rendered");
    }
    let svc = "data-storage-service";
    assert_eq!(
        datastorage_sans(p),
        [
            "localhost".to_string(),
            svc.to_string(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
            "127.0.0.1".to_string(),
        ],
        "{s}: datastorage-tls SANs"
    );
    // Rows 9 and 22: the signing pair at server.signerCertDir, from Secret datastorage-signing,
    // which apply:config generates (config.tls.signingKeys; `kprov render` does not list it).
    let signer = config["server"]["signerCertDir"].as_str().unwrap();
    let m = r.file("datastorage", "datastorage", &format!("{signer}/tls.crt"));
    assert_eq!(
        (m.kind.as_str(), m.name.as_str()),
        ("Secret", "datastorage-signing"),
        "{s}"
    );
    assert!(
        p.spec
            .config
            .tls
            .as_ref()
            .unwrap()
            .signing_keys
            .contains(&m.name),
        "{s}: nothing creates Secret {}",
        m.name
    );
    // Row 3: ClusterRole data-storage-client, which every suite's clients are bound to.
    assert_eq!(
        r.get("ClusterRole", "data-storage-client")["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["services"],
            "resourceNames": ["data-storage-service"],
            "verbs": ["create", "get", "list", "update", "delete"]}]),
        "{s}"
    );
    // Row 4: the auth middleware's own SA may review tokens and access.
    for (group, resource) in [
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ] {
        assert!(
            r.allowed(ns, "data-storage-sa", "create", group, resource, "", None),
            "{s}: data-storage-sa may not create {resource}"
        );
    }
    // Row 19: Service data-storage-service, https 8080 on the profile's NodePort.
    let ports = r.node_ports(svc);
    assert_eq!(
        ports.get("https").copied(),
        Some(u64::from(p.spec.ports["datastorage"].node_port)),
        "{s}: {ports:?}"
    );
    assert_eq!(ports.get("health").copied(), Some(30281), "{s}: {ports:?}");
    // Row 16: goose reads the top-level migrations/*.sql, mounted at /migrations.
    migrations_facts(r, source);
}

/// Row 16 of datastorage-stack.md: ConfigMap datastorage-migrations holds every top-level
/// migrations/*.sql of the tree, and the Job runs goose on its mount.
fn migrations_facts(r: &Render, source: &Path) {
    let s = &r.service;
    let on_disk: BTreeSet<String> = std::fs::read_dir(source.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    let keys: BTreeSet<String> = r.get("ConfigMap", "datastorage-migrations")["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys, on_disk,
        "{s}: migrations ConfigMap vs migrations/*.sql"
    );
    let job = r.get("Job", "datastorage-migrations");
    let migrate = containers(job)
        .into_iter()
        .find(|c| c["name"] == "migrate")
        .unwrap();
    let mount = migrate["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/migrations")
        .unwrap_or_else(|| panic!("{s}: nothing at /migrations"));
    let volume = job["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "datastorage-migrations", "{s}");
    assert!(
        strings(&migrate["args"])
            .concat()
            .contains("goose -dir /migrations postgres"),
        "{s}: the Job does not run goose on /migrations"
    );
}

/// The CRDs a render applies, by name.
fn crd_names(r: &Render) -> BTreeSet<&str> {
    r.items
        .iter()
        .filter(|i| i.task == "apply:crds")
        .map(|i| name(&i.object))
        .collect()
}

const ALL_CRDS: [&str; 11] = [
    "actiontypes.kubernaut.ai",
    "agentsessions.kubernaut.ai",
    "aianalyses.kubernaut.ai",
    "effectivenessassessments.kubernaut.ai",
    "investigationsessions.kubernaut.ai",
    "notificationrequests.kubernaut.ai",
    "remediationapprovalrequests.kubernaut.ai",
    "remediationrequests.kubernaut.ai",
    "remediationworkflows.kubernaut.ai",
    "signalprocessings.kubernaut.ai",
    "workflowexecutions.kubernaut.ai",
];

/// AuthWebhook as WE, RO and NT deploy it (authwebhook.md).
fn authwebhook_facts(r: &Render, p: &Profile) {
    // Row 9: the binary defines only -config (main.go:409): any other flag stops it.
    r.runs_with(
        "authwebhook",
        "authwebhook",
        &["-config=/etc/authwebhook/authwebhook.yaml"],
        "/etc/authwebhook/authwebhook.yaml",
    );
    let config = r.yaml("authwebhook-config", "authwebhook.yaml");
    // Row 10: the serving certificate where webhook.certDir says.
    let cert_dir = config["webhook"]["certDir"].as_str().unwrap();
    let m = r.file("authwebhook", "authwebhook", &format!("{cert_dir}/tls.crt"));
    assert_eq!(m.name, "authwebhook-tls", "{}", r.service);
    r.trusts_datastorage(p, "authwebhook", "authwebhook", &config["datastorage"]);
}

/// The facts the conformance tables call most fatal, one group per service (each assertion
/// names its row), read from the render.
#[test]
fn the_profiles_carry_the_most_fatal_conformance_facts() {
    // ---- datastorage (datastorage.md; the stack in datastorage-stack.md) ----
    {
        let s = "datastorage";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        // Row 11: namespace datastorage-e2e, labelled.
        assert_eq!(
            r.get("Namespace", "datastorage-e2e")["metadata"]["labels"],
            serde_json::json!({"test": "datastorage-e2e"})
        );
        // Row 12: every CRD (DataStorage indexes RemediationWorkflows and ActionTypes).
        assert_eq!(crd_names(&r), ALL_CRDS.into_iter().collect());
        // "what the tests expect to exist": PostgreSQL's NodePort (the suite dials 25433).
        assert_eq!(r.node_ports("postgresql").get("postgresql"), Some(&30432));
    }

    // ---- signalprocessing (signalprocessing.md) ----
    {
        let s = "signalprocessing";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        let d = "signalprocessing-controller";
        // Row 22 (binary: one flag, -config).
        r.runs_with(
            d,
            "controller",
            &["--config=/etc/signalprocessing/config.yaml"],
            "/etc/signalprocessing/config.yaml",
        );
        let config = r.yaml("signalprocessing-config", "config.yaml");
        // Binary table: the policy is read from /etc/signalprocessing/policies/<regoConfigMapKey>
        // (exit 1 when missing), hot-reloaded (no subPath); row 24: mounted whole.
        let key = config["classifier"]["regoConfigMapKey"].as_str().unwrap();
        assert_eq!(key, "policy.rego");
        let policy = r.file(
            d,
            "controller",
            &format!("/etc/signalprocessing/policies/{key}"),
        );
        assert_eq!(
            (policy.kind.as_str(), policy.name.as_str(), policy.sub_path),
            ("ConfigMap", "signalprocessing-policy", false)
        );
        assert_eq!(
            config["classifier"]["regoConfigMapName"], policy.name,
            "the classifier names the mounted policy ConfigMap"
        );
        assert!(
            policy
                .content
                .unwrap()
                .lines()
                .any(|l| l == "package signalprocessing"),
            "row 12: the policy's package"
        );
        // Binary table: /readyz fails closed until datastorage.healthUrl answers over TLS.
        r.trusts_datastorage(&p, d, "controller", &config["datastorage"]);
        // Binary table: audit writes with the pod's token ("what the tests expect": ActorID
        // signalprocessing-controller).
        assert_eq!(
            r.get("Deployment", d)["spec"]["template"]["spec"]["serviceAccountName"],
            "signalprocessing-controller"
        );
        r.may_write_to_datastorage(d);
        // Row 26: the metrics NodePort the suite dials through 9182.
        assert_eq!(
            r.node_ports("signalprocessing-controller-metrics")
                .get("metrics"),
            Some(&30182)
        );
        // Row 10: the namespace's labels.
        assert_eq!(
            r.get("Namespace", "kubernaut-system")["metadata"]["labels"],
            serde_json::json!({"app.kubernetes.io/name": "kubernaut",
                "app.kubernetes.io/component": "signalprocessing"})
        );
    }

    // ---- gateway (gateway.md) ----
    {
        let s = "gateway";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        // Row 19: the Gateway once the ActionTypes are seeded and their status set.
        assert!(depends_on(&p, "gateway", "activate-action-types"));
        // Row 22 (binary: one flag, -config).
        r.runs_with(
            "gateway",
            "gateway",
            &["--config=/etc/gateway/config.yaml"],
            "/etc/gateway/config.yaml",
        );
        // Binary table: datastorage.url/healthUrl required, /readyz gated on healthUrl.
        let config = r.yaml("gateway-config", "config.yaml");
        r.trusts_datastorage(&p, "gateway", "gateway", &config["datastorage"]);
        r.may_write_to_datastorage("gateway");
        // Namespace row: labelled test=datastorage-e2e, deliberately not kubernaut.ai/managed.
        assert_eq!(
            r.get("Namespace", "kubernaut-system")["metadata"]["labels"],
            serde_json::json!({"test": "datastorage-e2e"})
        );
        // Host URLs row: the Gateway's three NodePorts.
        assert_eq!(
            r.node_ports("gateway-service"),
            BTreeMap::from([
                ("http".to_string(), 30080),
                ("health".to_string(), 30180),
                ("metrics".to_string(), 30090),
            ])
        );
    }

    // ---- aianalysis (aianalysis.md, kubernaut-agent.md) ----
    {
        let s = "aianalysis";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        // Row 20: the shadow, KA and the controller after the workflow seeding (Phase 7c).
        for c in [
            "mock-llm-shadow",
            "kubernaut-agent",
            "aianalysis-controller",
        ] {
            assert!(depends_on(&p, c, "register-workflows"), "{c}");
        }
        let d = "aianalysis-controller";
        // Row 31: args -config $(CONFIG_PATH), the config under /etc/aianalysis.
        let c = r.container(d, "aianalysis");
        let config_path = env(c, "CONFIG_PATH").unwrap();
        assert_eq!(config_path, "/etc/aianalysis/config.yaml");
        r.runs_with(d, "aianalysis", &["-config", "$(CONFIG_PATH)"], config_path);
        let config = r.yaml("aianalysis-config", "config.yaml");
        // Rows 25, 26, 31: rego.policyPath under the whole-ConfigMap mount /etc/aianalysis/policies.
        let policy_path = config["rego"]["policyPath"].as_str().unwrap();
        assert_eq!(policy_path, "/etc/aianalysis/policies/approval.rego");
        let policy = r.file(d, "aianalysis", policy_path);
        assert_eq!(
            (policy.name.as_str(), policy.sub_path),
            ("aianalysis-policies", false)
        );
        assert!(
            policy
                .content
                .unwrap()
                .lines()
                .any(|l| l == "package aianalysis.approval")
        );
        r.trusts_datastorage(&p, d, "aianalysis", &config["datastorage"]);
        // Row 30.
        r.may_write_to_datastorage(d);
        // kubernaut-agent.md row 9: both flags, both files.
        r.runs_with(
            "kubernaut-agent",
            "kubernaut-agent",
            &[
                "-config",
                "/etc/kubernautagent/config.yaml",
                "-llm-runtime",
                "/etc/kubernautagent/llm-runtime/llm-runtime.yaml",
            ],
            "/etc/kubernautagent/llm-runtime/llm-runtime.yaml",
        );
        r.file_text(
            "kubernaut-agent",
            "kubernaut-agent",
            "/etc/kubernautagent/config.yaml",
        );
        r.may_write_to_datastorage("kubernaut-agent");
        // CRDs row: every CRD, AgentSession included.
        assert_eq!(crd_names(&r), ALL_CRDS.into_iter().collect());
        // Row 21: the mock LLM's scenarios carry the UUIDs read back from the seeded workflows.
        let scenarios = r
            .data("ConfigMap", "mock-llm-scenarios", "scenarios.yaml")
            .unwrap();
        assert!(
            scenarios.contains(
                "<runtime.workflow-id-oomkill-increase-memory-v1 from \
                 value:workflow-id-oomkill-increase-memory-v1>"
            ),
            "row 21: scenarios without the seeded UUIDs"
        );
    }

    // ---- workflowexecution (workflowexecution.md, authwebhook.md) ----
    {
        let s = "workflowexecution";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        let d = "workflowexecution-controller";
        // Row 21: the binary defines only -config.
        r.runs_with(
            d,
            "controller",
            &["--config=/etc/config/workflowexecution.yaml"],
            "/etc/config/workflowexecution.yaml",
        );
        let config = r.yaml("workflowexecution-config", "workflowexecution.yaml");
        r.trusts_datastorage(&p, d, "controller", &config["datastorage"]);
        r.may_write_to_datastorage(d);
        // Namespaces row, row 20: PipelineRuns and Jobs run in kubernaut-workflows, labelled
        // managed.
        assert_eq!(config["execution"]["namespace"], "kubernaut-workflows");
        assert_eq!(
            r.get("Namespace", "kubernaut-workflows")["metadata"]["labels"],
            serde_json::json!({"kubernaut.ai/managed": "true"})
        );
        // Row 32: the DD-WE-006 dependencies exist in kubernaut-workflows before registration.
        for (kind_, name_, key, value) in [
            ("Secret", "e2e-dep-secret", "token", "e2e-test-value"),
            (
                "Secret",
                "e2e-dep-secret-tekton",
                "token",
                "e2e-test-value-tekton",
            ),
            (
                "ConfigMap",
                "e2e-dep-configmap",
                "setting",
                "e2e-configmap-value",
            ),
            (
                "ConfigMap",
                "e2e-dep-configmap-tekton",
                "setting",
                "e2e-configmap-value-tekton",
            ),
        ] {
            let item = r.find(kind_, name_).unwrap();
            assert_eq!(item.task, "apply:config", "{kind_} {name_}");
            assert_eq!(namespace(&item.object), Some("kubernaut-workflows"));
            assert_eq!(r.data(kind_, name_, key).as_deref(), Some(value));
        }
        // Row 23: quay-pull-secret in kubernaut-workflows from the config batch, and in the
        // namespace Tekton's release makes by its own task, after the release is ready (in
        // the batch, before the release, that namespace does not exist yet).
        let pulls: Vec<(&str, Option<&str>)> = r
            .items
            .iter()
            .filter(|i| kind(&i.object) == "Secret" && name(&i.object) == "quay-pull-secret")
            .map(|i| (i.task.as_str(), namespace(&i.object)))
            .collect();
        let late = "secret:tekton-pipelines-resolvers/quay-pull-secret";
        assert_eq!(
            pulls,
            [
                ("apply:config", Some("kubernaut-workflows")),
                (late, Some("tekton-pipelines-resolvers"))
            ]
        );
        let plan = plan_json(source.path(), s, "dag");
        let task = |id: &str| {
            let tasks = plan["tasks"].as_array().unwrap();
            let t = tasks.iter().find(|t| t["id"] == id);
            t.unwrap_or_else(|| panic!("no task {id}")).clone()
        };
        let deps = task(late)["deps"].clone();
        assert!(
            deps.as_array()
                .unwrap()
                .contains(&"deploy:tekton-pipelines".into())
                && task(late)["kind"] == "secret",
            "{deps}"
        );
        assert!(
            task("wait:ready")["deps"]
                .as_array()
                .unwrap()
                .contains(&late.into()),
            "the run is ready once the Secret is there"
        );
        let links = &p.spec.config.secrets;
        let resolvers = links
            .iter()
            .find(|e| e.after == ["tekton-pipelines"])
            .unwrap();
        assert_eq!(resolvers.service_accounts, ["tekton-pipelines-resolvers"]);
        // Row 16: Tekton v1.7.0's release by URL in the shipped profile (rendered here with
        // the stand-in).
        let tekton = &p.spec.components["tekton-pipelines"].manifests;
        assert!(
            matches!(tekton.as_slice(), [ManifestEntry::Remote(RemoteSource::Url { url, .. })]
                if url == "https://github.com/tektoncd/pipeline/releases/download/v1.7.0/release.yaml"),
            "{tekton:?}"
        );
        authwebhook_facts(&r, &p);
    }

    // ---- remediationorchestrator (remediationorchestrator.md) ----
    {
        let s = "remediationorchestrator";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        // Row 19: AuthWebhook once the ActionTypes are seeded and their status set.
        assert!(depends_on(&p, "authwebhook", "activate-action-types"));
        let d = "remediationorchestrator-controller";
        // Row 14.
        r.runs_with(
            d,
            "controller",
            &["--config=/etc/config/remediationorchestrator.yaml"],
            "/etc/config/remediationorchestrator.yaml",
        );
        // Row 13: the suite's short timeouts.
        let config = r.yaml(
            "remediationorchestrator-config",
            "remediationorchestrator.yaml",
        );
        assert_eq!(config["timeouts"]["awaitingApproval"], "3s");
        assert_eq!(config["timeouts"]["verifying"], "5s");
        assert_eq!(
            config["effectivenessAssessment"]["stabilizationWindow"],
            "10s"
        );
        r.trusts_datastorage(&p, d, "controller", &config["datastorage"]);
        r.may_write_to_datastorage(d);
        // authwebhook.md header: only RO binds AuthWebhook to data-storage-client.
        r.may_write_to_datastorage("authwebhook");
        authwebhook_facts(&r, &p);
    }

    // ---- notification (notification.md) ----
    {
        let s = "notification";
        let (p, r, source) = (load(s), render(s), source_for(s));
        datastorage_stack_facts(&p, &r, source.path());
        let d = "notification-controller";
        // Row 21: args -config $(CONFIG_PATH) (the binary defines only -config).
        let c = r.container(d, "manager");
        let config_path = env(c, "CONFIG_PATH").unwrap();
        assert_eq!(config_path, "/etc/notification/config.yaml");
        r.runs_with(d, "manager", &["-config", "$(CONFIG_PATH)"], config_path);
        // Rows 18, 21: the routing file ROUTING_CONFIG_PATH names.
        let routing = env(c, "ROUTING_CONFIG_PATH").unwrap();
        assert!(
            r.file_text(d, "manager", routing)
                .contains("default-console")
        );
        let config = r.yaml("notification-controller-config", "config.yaml");
        r.trusts_datastorage(&p, d, "manager", &config["datastorage"]);
        // Row 11.
        r.may_write_to_datastorage(d);
        // DS NodePort row, row 10: DataStorage's API on NodePort 30090 here.
        assert_eq!(
            r.node_ports("data-storage-service").get("https"),
            Some(&30090)
        );
        // Row 19: the delivery credentials the routing's credentialRefs name.
        assert_eq!(
            r.file_text(d, "manager", "/etc/notification/credentials/slack-success"),
            "http://mock-webhook:8080/webhook"
        );
        authwebhook_facts(&r, &p);
    }

    // ---- aianalysis-hapi (aianalysis.md, "The HAPI stack (older trees)") ----
    {
        let s = HAPI;
        let (p, r, source) = (load(s), render(s), source_for(s));
        hapi_seeding_facts(&p, &r, source.path());
        // H4: the AIAnalysis CRD only.
        assert_eq!(crd_names(&r), BTreeSet::from(["aianalyses.kubernaut.ai"]));
        // H7: that era's DataStorage: plain HTTP (no server.tls), its secrets files, /health on
        // 8080, Service port http 8080/30081, that tree's five migrations.
        let config_path = env(r.container("datastorage", "datastorage"), "CONFIG_PATH").unwrap();
        let config: Value =
            serde_saphyr::from_str(&r.file_text("datastorage", "datastorage", config_path))
                .unwrap();
        assert!(config["server"].get("tls").is_none(), "H7: no TLS");
        for section in ["database", "redis"] {
            let file = config[section]["secretsFile"].as_str().unwrap();
            r.file_text("datastorage", "datastorage", file);
        }
        let probe = &r.container("datastorage", "datastorage")["readinessProbe"]["httpGet"];
        assert_eq!(
            (&probe["path"], &probe["port"]),
            (&Value::from("/health"), &Value::from(8080))
        );
        assert_eq!(
            r.node_ports("data-storage-service").get("http"),
            Some(&30081)
        );
        migrations_facts(&r, source.path());
        assert_eq!(
            r.get("ConfigMap", "datastorage-migrations")["data"]
                .as_object()
                .unwrap()
                .len(),
            5
        );
        // H16: HAPI's one flag and its config; NodePort 30088.
        r.runs_with(
            "holmesgpt-api",
            "holmesgpt-api",
            &["-config", "/etc/holmesgpt/config.yaml"],
            "/etc/holmesgpt/config.yaml",
        );
        assert_eq!(
            r.node_ports("holmesgpt-api").values().collect::<Vec<_>>(),
            [&30088]
        );
        // H15: HAPI and the controller may write to DataStorage.
        r.may_write_to_datastorage("holmesgpt-api");
        r.may_write_to_datastorage("aianalysis-controller");
        // H17: the controller talks to HAPI and DataStorage over plain HTTP, no CA.
        let c = r.container("aianalysis-controller", "aianalysis");
        r.runs_with(
            "aianalysis-controller",
            "aianalysis",
            &["-config", "$(CONFIG_PATH)"],
            env(c, "CONFIG_PATH").unwrap(),
        );
        let aa = r.yaml("aianalysis-config", "config.yaml");
        assert_eq!(aa["holmesgpt"]["url"], "http://holmesgpt-api:8080");
        assert_eq!(aa["datastorage"]["url"], "http://data-storage-service:8080");
        assert_eq!(env(c, "TLS_CA_FILE"), None);
        // H18: the approval policy where rego.policyPath says.
        let policy = r.file(
            "aianalysis-controller",
            "aianalysis",
            aa["rego"]["policyPath"].as_str().unwrap(),
        );
        assert_eq!(policy.name, "aianalysis-policies");
    }
}

// ---- Content hashes: register-workflows' status, computed from the fixtures ----

/// kprov's layout of kubernaut's clean RemediationWorkflow JSON.
const RW_LAYOUT: &str = "kprov:manifests/kubernaut/stacks/remediationworkflow/json-layout.yaml";

/// What `register-workflows` sets as `{contentHash, workflowId}` on `<workflow>-v1`, its
/// placeholders rendered with `source` as `--source`.
fn registered(source: &Path, workflow: &str) -> (String, String) {
    let p = load("aianalysis");
    let st = &p.spec.steps["register-workflows"];
    let name = format!("{workflow}-v1");
    let patch = st
        .patch_status
        .iter()
        .find(|x| x.object.name == name)
        .unwrap_or_else(|| panic!("register-workflows sets no status on {name}"));
    let vals = p.template_values(&st.values, &BTreeMap::new(), &BTreeMap::new());
    let field = |key: &str| {
        let text = patch.status[key].as_str().unwrap();
        p.render_template(source, text, &vals)
            .unwrap_or_else(|e| panic!("{name} {key}: {}", template::joined(&e, None, "; ")))
    };
    (field("contentHash"), field("workflowId"))
}

/// The six workflows the AIAnalysis suite seeds, with the hash and id kubernaut d5a4a8709's
/// own code computes from its fixtures (the literals the profile carried before kprov computed
/// them; Go's encoding/json agrees).
const KUBERNAUT_D5A4A8709: [(&str, &str, &str); 6] = [
    (
        "oomkill-increase-memory",
        "a2d171bca8c154535bc79e3581b020cce18a14a149f0c5d4d00e09cbb3c098cb",
        "35665f23-e550-5684-a6c9-c0f7b727b068",
    ),
    (
        "crashloop-config-fix",
        "b012c198cf17b0e013bacbac439c9b68f7242eb664b63ca686c0df3b1188b2b3",
        "2074d955-5883-5818-be0d-fa7d45b36866",
    ),
    (
        "node-drain-reboot",
        "5dd374685da981c0ac37166ca27945528c3d6c7a1db1c241a0408bf3159dedbc",
        "179d5e50-b477-5a4b-a3e1-cdd0e08be83a",
    ),
    (
        "memory-optimize",
        "0c4deedaed0126fa2f831514b6539b3940e9a06f1a9984ef8b7dabc01e321e2d",
        "4808c3f7-732b-5bd8-bad4-998891d047f8",
    ),
    (
        "generic-restart",
        "295074d6a9c07f00fc954b4c5b28df7fcd8ff959511ba51e2e6b9eb489925390",
        "6c11a65d-8d98-5f2f-b90e-b2c0e73016a9",
    ),
    (
        "test-signal-handler",
        "130c2e57df05990f212257f1c981e258d0450ee838cdeadd3b99667d03c9205b",
        "b08b6906-74e4-508d-ab5d-9ad6d780af3d",
    ),
];

/// A kubernaut tree at d5a4a8709 holding its workflow fixtures: ../shared/reference/kubernaut
/// once it carries them, else `KPROV_KUBERNAUT_TREE` (a checkout or `git archive` of it).
fn kubernaut_fixtures_tree() -> Option<PathBuf> {
    let has = |p: &Path| {
        p.join("test/fixtures/workflows/crashloop-config-fix")
            .is_dir()
    };
    let reference = common::repo_root().join("../shared/reference/kubernaut");
    if has(&reference) {
        return Some(reference);
    }
    std::env::var_os("KPROV_KUBERNAUT_TREE")
        .map(PathBuf::from)
        .filter(|p| has(p))
}

#[test]
fn register_workflows_reproduces_kubernauts_own_values_from_its_fixtures() {
    let Some(tree) = kubernaut_fixtures_tree() else {
        // kubernaut's fixtures are its files: they are not in this project, and the reference
        // tree does not carry them yet.
        eprintln!(
            "skipping: no kubernaut fixtures (../shared/reference/kubernaut/test/fixtures or \
             KPROV_KUBERNAUT_TREE=<kubernaut at d5a4a8709>)"
        );
        return;
    };
    for (workflow, hash, id) in KUBERNAUT_D5A4A8709 {
        let got = registered(&tree, workflow);
        assert_eq!(got, (hash.to_string(), id.to_string()), "{workflow}");
    }
}

#[test]
fn register_workflows_computes_each_fixtures_hash_and_id_as_go_does() {
    let src = common::kubernaut_source();
    for (workflow, hash, id) in common::STAND_IN_WORKFLOWS {
        let got = registered(src.path(), workflow);
        assert_eq!(got, (hash.to_string(), id.to_string()), "{workflow}");
    }
}

/// `{{ file "FILE" | FILTERS }}` rendered with tests/fixtures/contenthash as `--source`.
fn content_hash_filters(file: &str, filters: &str) -> String {
    let p = load("aianalysis");
    let source = common::repo_root().join("tests/fixtures/contenthash");
    let text = format!("{{{{ file \"{file}\" | {filters} }}}}");
    p.render_template(&source, &text, &template::Values::new())
        .unwrap_or_else(|e| panic!("{}", template::joined(&e, None, "; ")))
}

#[test]
fn go_json_of_a_workflow_with_every_field_is_byte_for_byte_gos() {
    let go_json = format!("goJson \"{RW_LAYOUT}\"");
    // What Go's encoding/json wrote for tests/fixtures/contenthash/crashloop-shaped.yaml: struct
    // order (minimum, maximum before default), zero fields kept, omitempty ones dropped, unknown
    // keys dropped, a key matched case-insensitively, map and raw keys sorted, HTML escaped.
    let want = r#"{"apiVersion":"kubernaut.ai/v1alpha1","kind":"RemediationWorkflow","metadata":{"name":"stand-in-restart-v2"},"spec":{"version":"2.0.1","description":{"what":"Restarts a stand-in","whenToUse":"When kprov's tests say so"},"actionType":"RestartStandIn","labels":{"severity":["low"],"environment":["test","staging"],"component":["apps/v1/Deployment"],"priority":"P2","cluster":["*"]},"customLabels":{"area":"a\u0026b","team":"kprov"},"detectedLabels":{"gitOpsManaged":true,"hpaEnabled":false,"pdbProtected":1},"execution":{"engine":"job","bundle":"localhost/stand-in:v2","engineConfig":{"args":["sh","-c","echo \u003cok\u003e"],"image":"busybox"},"serviceAccountName":"stand-in-sa"},"dependencies":{"configMaps":[{"name":"cm-a"}]},"maintainers":[{"name":"A","email":"a@example.com"}],"parameters":[{"name":"WAIT_SECONDS","type":"integer","required":false,"description":"Seconds to wait \u003cbefore\u003e restarting \u0026 checking","minimum":0,"maximum":300.5,"default":30,"dependsOn":["TARGET"]},{"name":"TARGET","type":"string","required":true,"description":"Which one","enum":["a","b"],"pattern":"^[a-z]+$"},{"name":"RATIO","type":"float","required":false,"description":"","minimum":0.000001,"default":{"a":[0.5,"x\u003ey",null],"z":1}}],"rollbackParameters":[{"name":"PREVIOUS","type":"string","required":true,"description":"before"}]}}"#;
    assert_eq!(
        content_hash_filters("crashloop-shaped.yaml", &go_json),
        want
    );
    assert_eq!(
        content_hash_filters("crashloop-shaped.yaml", &format!("{go_json} | sha256")),
        "26515d9bc1f77b711cefa7190785475943ee4447cc0615251a34a5e80f4ef471"
    );
    assert_eq!(
        content_hash_filters(
            "crashloop-shaped.yaml",
            &format!("{go_json} | sha256 | uuid5 \"6ba7b810-9dad-51d0-80b7-00c04fd430c8\"")
        ),
        "083d16ad-c928-5d28-bea0-161f05967b20"
    );
}

#[test]
fn kubernauts_golden_content_hash_and_workflow_id_are_reproduced() {
    // pkg/authwebhook/rw_content_hash_test.go (UT-AW-320-001) pins these for that content.
    assert_eq!(
        content_hash_filters("golden-content.json", "sha256"),
        "b401d467c33f43a86aa5743bcddcb853b392b7b6cbf74ff1eba6fb55c58f7bd7"
    );
    assert_eq!(
        content_hash_filters(
            "golden-content.json",
            "sha256 | uuid5 \"6ba7b810-9dad-51d0-80b7-00c04fd430c8\""
        ),
        "dfa1b0a3-7939-50b3-aa47-8bbc12c3f4fa"
    );
}

/// What each conformance table (profiles/conformance/<table>.md) calls kprov's files in its
/// `name:line` references (its header says which). Paths written out (`profiles/…`,
/// `manifests/…`, `src/…`, `tests/…`, `stacks/…` for `profiles/stacks/…`) need no entry.
/// Every other name (`hybrid.go`, `suite_test.go`, …) is kubernaut's and not checked.
const CONFORMANCE_NAMES: [(&str, &[(&str, &str)]); 11] = [
    (
        "aianalysis",
        &[
            ("profile", "profiles/aianalysis.yaml"),
            ("hapi profile", "profiles/aianalysis-hapi.yaml"),
            ("hapi stack", "profiles/stacks/hapi.yaml"),
            (
                "controller.yaml",
                "manifests/kubernaut/aianalysis/controller.yaml",
            ),
            (
                "approval.rego",
                "manifests/kubernaut/aianalysis/approval.rego",
            ),
            (
                "e2e-serviceaccount.yaml",
                "manifests/kubernaut/aianalysis/e2e-serviceaccount.yaml",
            ),
            (
                "mock-llm-scenarios.yaml",
                "manifests/kubernaut/aianalysis/mock-llm-scenarios.yaml",
            ),
            (
                "enrichment-fixtures.yaml",
                "manifests/kubernaut/aianalysis/enrichment-fixtures.yaml",
            ),
            (
                "json-layout.yaml",
                "manifests/kubernaut/stacks/remediationworkflow/json-layout.yaml",
            ),
            (
                "holmesgpt-api.yaml",
                "manifests/kubernaut/stacks/hapi/holmesgpt-api.yaml",
            ),
        ],
    ),
    (
        "authwebhook",
        &[
            ("stack", "profiles/stacks/authwebhook.yaml"),
            (
                "authwebhook.yaml",
                "manifests/kubernaut/stacks/authwebhook/authwebhook.yaml",
            ),
            (
                "webhooks.yaml",
                "manifests/kubernaut/stacks/authwebhook/webhooks.yaml",
            ),
        ],
    ),
    (
        "datastorage-stack",
        &[
            ("stack", "profiles/stacks/datastorage.yaml"),
            (
                "rbac.yaml",
                "manifests/kubernaut/stacks/datastorage/rbac.yaml",
            ),
            (
                "postgresql.yaml",
                "manifests/kubernaut/stacks/datastorage/postgresql.yaml",
            ),
            (
                "redis.yaml",
                "manifests/kubernaut/stacks/datastorage/redis.yaml",
            ),
            (
                "migrations-job.yaml",
                "manifests/kubernaut/stacks/datastorage/migrations-job.yaml",
            ),
            (
                "datastorage.yaml",
                "manifests/kubernaut/stacks/datastorage/datastorage.yaml",
            ),
            ("tls.rs", "src/tasks/tls.rs"),
        ],
    ),
    (
        "datastorage",
        &[
            ("profile", "profiles/datastorage.yaml"),
            ("stack", "profiles/stacks/datastorage.yaml"),
            (
                "rbac.yaml",
                "manifests/kubernaut/stacks/datastorage/rbac.yaml",
            ),
            (
                "postgresql.yaml",
                "manifests/kubernaut/stacks/datastorage/postgresql.yaml",
            ),
            (
                "redis.yaml",
                "manifests/kubernaut/stacks/datastorage/redis.yaml",
            ),
            (
                "migrations-job.yaml",
                "manifests/kubernaut/stacks/datastorage/migrations-job.yaml",
            ),
            (
                "datastorage.yaml",
                "manifests/kubernaut/stacks/datastorage/datastorage.yaml",
            ),
        ],
    ),
    (
        "gateway",
        &[
            ("profile", "profiles/gateway.yaml"),
            ("stack", "profiles/stacks/datastorage.yaml"),
            ("actiontypes", "profiles/stacks/actiontypes.yaml"),
            ("rbac.yaml", "manifests/kubernaut/gateway/rbac.yaml"),
            ("config.yaml", "manifests/kubernaut/gateway/config.yaml"),
            ("gateway.yaml", "manifests/kubernaut/gateway/gateway.yaml"),
        ],
    ),
    (
        "kubernaut-agent",
        &[
            ("stack", "profiles/stacks/kubernaut-agent.yaml"),
            (
                "rbac.yaml",
                "manifests/kubernaut/stacks/kubernaut-agent/rbac.yaml",
            ),
            (
                "ka.yaml",
                "manifests/kubernaut/stacks/kubernaut-agent/kubernaut-agent.yaml",
            ),
        ],
    ),
    (
        "mock-llm",
        &[
            ("stack", "profiles/stacks/mock-llm.yaml"),
            (
                "mock-llm.yaml",
                "manifests/kubernaut/stacks/mock-llm/mock-llm.yaml",
            ),
            (
                "shadow.yaml",
                "manifests/kubernaut/stacks/mock-llm/mock-llm-shadow.yaml",
            ),
        ],
    ),
    (
        "notification",
        &[
            ("nt.yaml", "profiles/notification.yaml"),
            (
                "controller.yaml",
                "manifests/kubernaut/notification/controller.yaml",
            ),
            (
                "mock-webhook.yaml",
                "manifests/kubernaut/notification/mock-webhook.yaml",
            ),
            ("rbac.yaml", "manifests/kubernaut/notification/rbac.yaml"),
            ("ds-stack", "profiles/stacks/datastorage.yaml"),
            ("aw-stack", "profiles/stacks/authwebhook.yaml"),
        ],
    ),
    (
        "remediationorchestrator",
        &[
            ("ro.yaml", "profiles/remediationorchestrator.yaml"),
            (
                "controller.yaml",
                "manifests/kubernaut/remediationorchestrator/controller.yaml",
            ),
            (
                "rbac.yaml",
                "manifests/kubernaut/remediationorchestrator/rbac.yaml",
            ),
            ("ds-stack", "profiles/stacks/datastorage.yaml"),
            ("aw-stack", "profiles/stacks/authwebhook.yaml"),
            ("at-stack", "profiles/stacks/actiontypes.yaml"),
            (
                "actiontypes.yaml",
                "manifests/kubernaut/stacks/actiontypes/actiontypes.yaml",
            ),
        ],
    ),
    (
        "signalprocessing",
        &[
            ("profile", "profiles/signalprocessing.yaml"),
            ("stack", "profiles/stacks/datastorage.yaml"),
            ("actiontypes", "profiles/stacks/actiontypes.yaml"),
            (
                "policy.rego",
                "manifests/kubernaut/signalprocessing/policy.rego",
            ),
            (
                "config.yaml",
                "manifests/kubernaut/signalprocessing/config.yaml",
            ),
            (
                "controller.yaml",
                "manifests/kubernaut/signalprocessing/controller.yaml",
            ),
            (
                "datastorage-access.yaml",
                "manifests/kubernaut/signalprocessing/datastorage-access.yaml",
            ),
        ],
    ),
    (
        "workflowexecution",
        &[
            ("we.yaml", "profiles/workflowexecution.yaml"),
            (
                "rbac.yaml",
                "manifests/kubernaut/workflowexecution/rbac.yaml",
            ),
            (
                "controller.yaml",
                "manifests/kubernaut/workflowexecution/controller.yaml",
            ),
            (
                "test-pipelines.yaml",
                "manifests/kubernaut/workflowexecution/test-pipelines.yaml",
            ),
            (
                "awx-db-init.yaml",
                "manifests/kubernaut/workflowexecution/awx-db-init.yaml",
            ),
            ("awx.yaml", "manifests/kubernaut/workflowexecution/awx.yaml"),
            (
                "awx-api-token.yaml",
                "manifests/kubernaut/workflowexecution/awx-api-token.yaml",
            ),
            (
                "kustomization.yaml",
                "manifests/kubernaut/workflowexecution/awx-operator/kustomization.yaml",
            ),
            ("ds-stack", "profiles/stacks/datastorage.yaml"),
            ("aw-stack", "profiles/stacks/authwebhook.yaml"),
            (
                "actiontypes.yaml",
                "manifests/kubernaut/stacks/actiontypes/actiontypes.yaml",
            ),
        ],
    ),
];

/// The kprov file a conformance table's reference name stands for: the table's own names,
/// then paths written out. `None`: not kprov's (kubernaut's files, URLs, host:port).
fn conformance_file(names: &[(&str, &str)], name: &str) -> Option<String> {
    if let Some((_, path)) = names.iter().find(|(n, _)| *n == name) {
        return Some((*path).to_string());
    }
    if let Some(rest) = name.strip_prefix("stacks/") {
        return Some(format!("profiles/stacks/{rest}"));
    }
    ["profiles/", "manifests/", "src/", "tests/"]
        .iter()
        .any(|p| name.starts_with(p))
        .then(|| name.to_string())
}

/// Every `name:line`, `name:first-last` (and `name:a-b,c-d`) reference a conformance table
/// makes to a kprov file names lines that file has at HEAD; so does a bare `:line` continuing
/// one in the same table cell (`nt.yaml:15, :44-45`). Only that the lines exist is checked,
/// not what they hold: a file that shrank, or a range typed past its end, fails here instead
/// of pointing at nothing.
#[test]
fn the_conformance_tables_kprov_line_references_exist() {
    let dir = profiles_dir().join("conformance");
    let reference = regex::Regex::new(
        r"(hapi profile|hapi stack|[A-Za-z0-9_./-]+)?:(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)",
    )
    .unwrap();
    let mut tables: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix(".md").map(str::to_string))
        .filter(|t| t != "README")
        .collect();
    tables.sort();
    let known: BTreeSet<&str> = CONFORMANCE_NAMES.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tables.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        known,
        "every conformance table has its names in CONFORMANCE_NAMES (and only those)"
    );
    let mut lengths: BTreeMap<String, Option<usize>> = BTreeMap::new();
    let mut lines_of = |path: &str| {
        *lengths.entry(path.to_string()).or_insert_with(|| {
            std::fs::read_to_string(repo().join(path))
                .ok()
                .map(|t| t.lines().count())
        })
    };
    let (mut checked, mut wrong) = (BTreeMap::new(), Vec::new());
    for (table, names) in CONFORMANCE_NAMES {
        let text = std::fs::read_to_string(dir.join(format!("{table}.md"))).unwrap();
        for (n, line) in text.lines().enumerate() {
            // A bare `:line` continues the last reference of its cell (a row's cell, or the line).
            for cell in line.split('|') {
                let mut last: Option<String> = None;
                for m in reference.captures_iter(cell) {
                    let whole = m.get(0).unwrap();
                    let before = cell[..whole.start()].chars().next_back();
                    let file = match m.get(1) {
                        Some(name) => {
                            last = conformance_file(names, name.as_str());
                            last.clone()
                        }
                        // `= `:28080`` is a port, `, :44-45` a continuation.
                        None if matches!(before, Some(' ' | '(' | ',' | ';')) => last.clone(),
                        None => None,
                    };
                    let Some(file) = file else { continue };
                    let at = format!("{table}.md:{}: `{}`", n + 1, whole.as_str());
                    let Some(len) = lines_of(&file) else {
                        wrong.push(format!("{at}: {file} does not exist"));
                        continue;
                    };
                    *checked.entry(table).or_insert(0) += 1;
                    for range in m[2].split(',') {
                        let (a, b) = range.split_once('-').unwrap_or((range, range));
                        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                        if a == 0 || a > b || b > len {
                            wrong.push(format!("{at}: lines {range} of {file}, which has {len}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "references to lines kprov's files do not have:\n{}",
        wrong.join("\n")
    );
    // Each table's references are found at all (a name or pattern gone wrong checks nothing).
    for (table, _) in CONFORMANCE_NAMES {
        assert!(
            checked.get(table).copied().unwrap_or(0) > 0,
            "{table}.md: no kprov reference found"
        );
    }
    let total: usize = checked.values().sum();
    assert!(
        total >= 300,
        "only {total} kprov references found: {checked:?}"
    );
}

/// Row 16: the stack's migrations ConfigMap takes the tree's top-level goose migrations by
/// glob (`"*.sql": migrations/[0-9]*_*.sql`): one added upstream comes in under its file name;
/// files goose skips (no version prefix, not `.sql`, below the top level) stay out; a tree
/// without any is a `kprov validate` error at the entry's line in the stack.
#[test]
fn the_migrations_configmap_takes_every_top_level_migration_of_the_tree() {
    let source = source_for("datastorage");
    let migrations = source.path().join("migrations");
    let before: BTreeSet<String> = std::fs::read_dir(&migrations)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    assert_eq!(before.len(), 17, "{before:?}");
    std::fs::create_dir_all(migrations.join("testdata")).unwrap();
    for (f, text) in [
        ("018_add_new_index.sql", "-- +goose Up\nSELECT 18;\n"),
        ("seed_test_data.sql", "SELECT 0;\n"),
        ("NOTES.md", "notes\n"),
        ("testdata/019_fixture.sql", "SELECT 19;\n"),
    ] {
        std::fs::write(migrations.join(f), text).unwrap();
    }
    let text = render_text(source.path(), "datastorage", "json");
    let items: Value = serde_json::from_str(&text).unwrap();
    let cm = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["object"])
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "datastorage-migrations")
        .unwrap();
    let data = cm["data"].as_object().unwrap();
    let mut want = before.clone();
    want.insert("018_add_new_index.sql".into());
    assert_eq!(data.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(data["018_add_new_index.sql"], "-- +goose Up\nSELECT 18;\n");
    for name in &before {
        let on_disk = std::fs::read_to_string(migrations.join(name)).unwrap();
        assert_eq!(data[name.as_str()], on_disk.as_str(), "{name}");
    }

    // No migration at all: the entry's line in the stack.
    std::fs::remove_dir_all(&migrations).unwrap();
    std::fs::create_dir_all(&migrations).unwrap();
    let out = kprov(&profiles_dir(), source.path())
        .args(["validate", "--service", "datastorage"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let stack = profiles_dir().join("stacks/datastorage.yaml");
    let (line, column) = line_col_of(&stack, "\"*.sql\": migrations/");
    let want = format!(
        "{}:{line}:{column}: config.configMaps[0].files.*.sql: no file matches \"migrations/[0-9]*_*.sql\" under",
        stack.display()
    );
    assert!(err.contains(&want), "no {want:?} in:\n{err}");
}
