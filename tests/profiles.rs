//! The shipped kubernaut profiles, checked against a kubernaut-like source tree built here:
//! they validate, plan to the snapshotted graphs, render to objects Kubernetes would take,
//! carry the reference's facts, and instrument exactly the images with coverage args.
//!
//! The tree holds a file at every path the profiles name: the three real CRDs kept in
//! ../shared/reference/kubernaut (kubernaut's files, read in place), small synthetic CRDs for the
//! other kinds, one-line Dockerfiles, empty config and Rego files, 17 goose migrations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kprov::adapters::kube::Object;
use kprov::profile::{self, Profile, template};
use kprov::tasks::{
    apply::{Manifest, parse_manifests},
    coverage,
};
use serde_json::Value;

const SERVICES: [&str; 7] = [
    "aianalysis",
    "datastorage",
    "gateway",
    "notification",
    "remediationorchestrator",
    "signalprocessing",
    "workflowexecution",
];

/// The eleven kubernaut.ai kinds (plural, Kind); the first three are the real CRD files.
const CRDS: [(&str, &str); 11] = [
    ("actiontypes", "ActionType"),
    ("notificationrequests", "NotificationRequest"),
    ("signalprocessings", "SignalProcessing"),
    ("agentsessions", "AgentSession"),
    ("aianalyses", "AIAnalysis"),
    ("effectivenessassessments", "EffectivenessAssessment"),
    ("investigationsessions", "InvestigationSession"),
    ("remediationapprovalrequests", "RemediationApprovalRequest"),
    ("remediationrequests", "RemediationRequest"),
    ("remediationworkflows", "RemediationWorkflow"),
    ("workflowexecutions", "WorkflowExecution"),
];

const REAL_CRDS: usize = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn profiles_dir() -> PathBuf {
    repo().join("profiles")
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn synthetic_crd(plural: &str, kind: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.kubernaut.ai\nspec:\n  group: kubernaut.ai\n  names:\n    kind: {kind}\n    listKind: {kind}List\n    plural: {plural}\n    singular: {}\n  scope: Namespaced\n  versions:\n    - name: v1alpha1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n",
        kind.to_lowercase()
    )
}

/// A kubernaut-like source tree with a file at every path the shipped profiles name.
fn kubernaut_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // kubernaut's own CRDs, read in place (never copied into this project).
    let fixtures = repo().join("../shared/reference/kubernaut");
    for (plural, kind) in CRDS.iter().take(REAL_CRDS) {
        let rel = format!("config/crd/bases/kubernaut.ai_{plural}.yaml");
        let text = std::fs::read_to_string(fixtures.join(&rel)).unwrap();
        assert!(
            text.contains(&format!("kind: {kind}")),
            "{rel} is not the {kind} CRD"
        );
        write(root, &rel, &text);
    }
    for (plural, kind) in CRDS.iter().skip(REAL_CRDS) {
        write(
            root,
            &format!("config/crd/bases/kubernaut.ai_{plural}.yaml"),
            &synthetic_crd(plural, kind),
        );
    }
    write(
        root,
        "config/crd/tekton/pipelineruns_tekton_dev.yaml",
        &synthetic_crd("pipelineruns", "PipelineRun").replace("kubernaut.ai", "tekton.dev"),
    );
    for name in [
        "data-storage",
        "signalprocessing-controller",
        "aianalysis",
        "gateway",
        "workflowexecution-controller",
        "remediationorchestrator-controller",
        "notification-controller",
        "authwebhook",
        "kubernautagent",
    ] {
        write(root, &format!("docker/{name}.Dockerfile"), "FROM scratch\n");
    }
    write(root, "holmesgpt-api/Dockerfile", "FROM scratch\n");
    write(root, "test/services/mock-llm/Dockerfile", "FROM scratch\n");
    for i in 1..=17 {
        write(
            root,
            &format!("migrations/{i:03}_step.sql"),
            &format!(
                "-- +goose Up\nCREATE TABLE t{i} (id int);\n-- +goose Down\nDROP TABLE t{i};\n"
            ),
        );
    }
    for rel in [
        "config/signalprocessing.yaml",
        "config/signalprocessing/proactive-signal-mappings.yaml",
        "config/aianalysis.yaml",
        "config/gateway.yaml",
        "config/workflowexecution.yaml",
        "config/remediationorchestrator.yaml",
        "config/samples/notification_routing_config.yaml",
    ] {
        write(root, rel, "# fixture\n");
    }
    write(
        root,
        "config/rego/signalprocessing/policy.rego",
        "package signalprocessing\n",
    );
    write(
        root,
        "config/rego/aianalysis/approval.rego",
        "package aianalysis.approval\n",
    );
    dir
}

fn kprov(profiles: &Path, source: &Path) -> Command {
    let mut c = Command::cargo_bin("kprov").unwrap();
    c.env_remove("KPROV_PROFILES")
        .env_remove("KPROV_SOURCE")
        .env_remove("KPROV_STATE")
        .env("NO_COLOR", "1");
    c.arg("--profiles")
        .arg(profiles)
        .arg("--source")
        .arg(source);
    c
}

/// `kprov plan --format json` with fixed limits and no run records (default estimates).
fn plan_json(source: &Path, service: &str, strategy: &str) -> Value {
    plan_json_with(source, service, strategy, &[])
}

fn plan_json_with(source: &Path, service: &str, strategy: &str, extra: &[&str]) -> Value {
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
        .args(extra)
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

fn load(service: &str) -> Profile {
    profile::load(&profiles_dir(), service).unwrap_or_else(|e| panic!("{e}"))
}

/// The reference each image gets in rendering: recognisable, and unique per image.
fn fake_refs(p: &Profile) -> BTreeMap<String, String> {
    p.spec
        .images
        .iter()
        .map(|(k, i)| {
            (
                k.clone(),
                i.external
                    .clone()
                    .unwrap_or_else(|| format!("localhost/test/{k}:kprov-0123456789ab")),
            )
        })
        .collect()
}

/// Every component's and hook's manifests, rendered the way a run renders them (host ports
/// stand in as 40000 + n) and parsed, namespaces as written; by workload name.
fn render_all(p: &Profile) -> BTreeMap<String, Vec<Object>> {
    let images = fake_refs(p);
    let host_ports: BTreeMap<String, u16> = p
        .spec
        .ports
        .keys()
        .enumerate()
        .map(|(i, k)| (k.clone(), 40000 + i as u16))
        .collect();
    let workloads = p
        .spec
        .components
        .iter()
        .map(|(n, c)| (n, &c.manifests, &c.values))
        .chain(
            p.spec
                .hooks
                .iter()
                .map(|(n, h)| (n, &h.manifests, &h.values)),
        );
    let mut out = BTreeMap::new();
    for (name, manifests, values) in workloads {
        let vals = p.template_values(values, &images, &host_ports);
        let mut objects = Vec::new();
        for m in manifests.iter().filter_map(|m| m.path()) {
            let path = p.resolve(Path::new("/nonexistent-source"), m);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {name}: {}: {e}", p.service, path.display()));
            let text = template::render(&text, &vals)
                .unwrap_or_else(|e| panic!("{}: {name}: {}: {e:?}", p.service, path.display()));
            let objs = parse_manifests(&Manifest {
                origin: path.display().to_string(),
                text,
            })
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", p.service));
            objects.extend(objs);
        }
        out.insert(name.clone(), objects);
    }
    out
}

fn containers(o: &Object) -> Vec<&Value> {
    o.get("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn is_workload(o: &Object) -> bool {
    matches!(o.kind(), "Deployment" | "StatefulSet" | "Job")
}

#[test]
fn every_kubernaut_profile_validates_against_a_kubernaut_like_tree() {
    let tree = kubernaut_tree();
    for s in SERVICES {
        let out = kprov(&profiles_dir(), tree.path())
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
    let tree = kubernaut_tree();
    for s in SERVICES {
        let plan = plan_json(tree.path(), s, "dag");
        assert_eq!(plan["service"], s);
        insta::assert_json_snapshot!(format!("plan_{s}"), plan);
    }
}

#[test]
fn the_hybrid_estimate_is_never_below_the_dag_estimate() {
    let tree = kubernaut_tree();
    for s in SERVICES {
        let dag = plan_json(tree.path(), s, "dag")["estimated_makespan_ms"]
            .as_u64()
            .unwrap();
        let hybrid = plan_json(tree.path(), s, "hybrid")["estimated_makespan_ms"]
            .as_u64()
            .unwrap();
        assert!(hybrid >= dag, "{s}: hybrid {hybrid} ms < dag {dag} ms");
        println!("{s:<24} dag {dag:>7} ms  hybrid {hybrid:>7} ms");
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
    let tree = kubernaut_tree();
    let copy = kprov_tree_copy();
    let sp = copy.path().join("profiles/signalprocessing.yaml");
    edit(
        &sp,
        "    images: [controller]\n",
        "    images: [controller]\n    replicas: 2\n",
    );
    edit(&sp, "      coverageArgs:\n", "      coverageArg:\n");
    let out = kprov(&copy.path().join("profiles"), tree.path())
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
        ("coverageArg:", "images.controller.build.coverageArg"),
    ] {
        let (line, col) = line_col_of(&sp, needle);
        let want = format!("{}:{line}:{col}: {field}: unknown field", sp.display());
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn a_profile_with_semantic_errors_exits_2_listing_each_in_the_file_that_holds_it() {
    let tree = kubernaut_tree();
    let copy = kprov_tree_copy();
    let sp = copy.path().join("profiles/signalprocessing.yaml");
    let stack = copy.path().join("profiles/stacks/datastorage.yaml");
    edit(
        &sp,
        "    images: [controller]\n",
        "    images: [controler]\n",
    );
    edit(&sp, "    nodePort: 30182\n", "    nodePort: 3182\n");
    edit(
        &stack,
        "dockerfile: docker/data-storage.Dockerfile",
        "dockerfile: docker/datastorage.Dockerfile",
    );
    std::fs::remove_file(tree.path().join("config/rego/signalprocessing/policy.rego")).unwrap();
    let out = kprov(&copy.path().join("profiles"), tree.path())
        .args(["validate", "--service", "signalprocessing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 errors in profile"), "{err}");
    let expect = [
        (&sp, "images: [controler]", "unknown image \"controler\""),
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
        (&sp, "configMaps:", "policy.rego does not exist"),
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

#[test]
fn the_profiles_carry_the_reference_facts() {
    // (service, cluster, namespace, exact CRD entries, main NodePorts)
    type Facts = (
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [u16],
    );
    let table: [Facts; 7] = [
        (
            "signalprocessing",
            "signalprocessing-e2e",
            "kubernaut-system",
            &[
                "kubernaut.ai_signalprocessings.yaml",
                "kubernaut.ai_remediationrequests.yaml",
            ],
            &[30082, 30182],
        ),
        (
            "aianalysis",
            "aianalysis-e2e",
            "kubernaut-system",
            &[
                "kubernaut.ai_aianalyses.yaml",
                "kubernaut.ai_investigationsessions.yaml",
            ],
            &[30084, 30184, 30284, 30088],
        ),
        (
            "gateway",
            "gateway-e2e",
            "kubernaut-system",
            &["kubernaut.ai_remediationrequests.yaml"],
            &[30080, 30180],
        ),
        (
            "workflowexecution",
            "workflowexecution-e2e",
            "kubernaut-system",
            &["kubernaut.ai_*.yaml"],
            &[30085, 30185],
        ),
        (
            "remediationorchestrator",
            "ro-e2e",
            "kubernaut-system",
            &[],
            &[30083, 30183],
        ),
        (
            "notification",
            "notification-e2e",
            "notification-e2e",
            &["kubernaut.ai_notificationrequests.yaml"],
            &[30090, 30186],
        ),
        (
            "datastorage",
            "datastorage-e2e",
            "datastorage-e2e",
            &["kubernaut.ai_*.yaml"],
            &[30081, 30181, 30281, 30432],
        ),
    ];
    for (service, cluster, ns, crds, node_ports) in table {
        let p = load(service);
        assert_eq!(p.cluster_name(), cluster, "{service}");
        assert_eq!(p.namespace(), ns, "{service}");
        let c = p.spec.cluster.as_ref().unwrap();
        assert_eq!(
            c.kubeconfig.as_deref(),
            Some(format!("~/.kube/{service}-e2e-config").as_str()),
            "{service}"
        );
        let image = c.node_image.as_deref().unwrap();
        assert!(
            image.starts_with("kindest/node:v1.36.1@sha256:")
                && image.len() == "kindest/node:v1.36.1@sha256:".len() + 64,
            "{service}: {image}"
        );
        assert_eq!(
            c.nodes.len(),
            1,
            "{service}: one control-plane node, no workers"
        );
        assert_eq!(c.nodes[0].role, "control-plane");
        let patches = c.kubeadm_config_patches.join("\n");
        for arg in [
            "max-requests-inflight: \"800\"",
            "max-mutating-requests-inflight: \"400\"",
            "kube-api-qps: \"100\"",
            "kube-api-burst: \"200\"",
        ] {
            assert!(patches.contains(arg), "{service}: no {arg}");
        }
        for crd in crds {
            assert!(
                p.spec.crds.iter().any(|e| e.ends_with(crd)),
                "{service}: no CRD entry {crd}: {:?}",
                p.spec.crds
            );
        }
        let declared: BTreeSet<u16> = p.spec.ports.values().map(|p| p.node_port).collect();
        for np in node_ports {
            assert!(
                declared.contains(np),
                "{service}: NodePort {np} not declared: {declared:?}"
            );
        }
        // Host ports are picked per run, so services side by side never collide.
        assert!(
            p.spec.ports.values().all(|p| p.host_port == 0),
            "{service}: a fixed hostPort"
        );
        // The shared stack, complete in every profile.
        for comp in ["postgresql", "redis", "datastorage"] {
            assert!(p.spec.components.contains_key(comp), "{service}: no {comp}");
        }
        assert_eq!(p.spec.hooks["migrations"].after, ["postgresql"]);
        assert!(
            p.spec.components["datastorage"]
                .depends_on
                .contains(&"migrations".to_string())
        );
        assert_eq!(
            p.spec.images["postgres"].external.as_deref(),
            Some("postgres:16-alpine")
        );
        assert_eq!(
            p.spec.images["redis"].external.as_deref(),
            Some("redis:7-alpine")
        );
        let ds = p.spec.images["datastorage"].build.as_ref().unwrap();
        assert_eq!(
            (ds.context.as_str(), ds.args.contains_key("GOARCH")),
            (".", true)
        );
        let tls = p.spec.config.tls.as_ref().unwrap();
        assert_eq!(tls.ca_config_map, "inter-service-ca");
        assert!(
            tls.services.contains(&"datastorage".to_string())
                && tls.signing_keys == ["datastorage-signing"]
        );
        assert!(
            p.spec
                .config
                .secrets
                .iter()
                .any(|s| s.name == "postgresql-secret")
        );
        assert!(
            p.spec
                .config
                .config_maps
                .iter()
                .any(|c| c.name == "datastorage-config")
        );
    }
    let ro = load("remediationorchestrator");
    assert_eq!(
        ro.spec.crds.len(),
        9,
        "RemediationOrchestrator installs nine CRDs"
    );
}

#[test]
fn the_datastorage_stack_expands_to_all_crds_and_seventeen_migrations() {
    let tree = kubernaut_tree();
    let p = load("datastorage");
    let crds: Vec<PathBuf> = p
        .spec
        .crds
        .iter()
        .flat_map(|c| p.expand(tree.path(), c).unwrap())
        .collect();
    assert_eq!(crds.len(), 11);
    let migrations = p.resolve(
        tree.path(),
        &p.spec.images["migrations"].build.as_ref().unwrap().context,
    );
    let sql = std::fs::read_dir(migrations)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(sql, 17);
}

#[test]
fn every_component_renders_to_objects_with_exact_images_probes_and_declared_node_ports() {
    for s in SERVICES {
        let p = load(s);
        let refs: BTreeSet<String> = fake_refs(&p).into_values().collect();
        let declared: BTreeSet<u64> = p
            .spec
            .ports
            .values()
            .map(|p| u64::from(p.node_port))
            .collect();
        let rendered = render_all(&p);
        for (name, objects) in &rendered {
            assert!(
                objects.iter().any(is_workload),
                "{s}: {name} has no workload"
            );
            let wanted = p
                .spec
                .components
                .get(name)
                .map(|c| &c.images)
                .or_else(|| p.spec.hooks.get(name).map(|h| &h.images))
                .unwrap();
            let mut used = BTreeSet::new();
            for o in objects {
                let label = o
                    .get("/metadata/labels/app.kubernetes.io~1managed-by")
                    .and_then(Value::as_str);
                assert_eq!(
                    label,
                    Some("kprov"),
                    "{s}: {name}: {} {} has no managed-by label",
                    o.kind(),
                    o.name()
                );
                // Namespaced kinds name the profile's namespace; cluster-scoped ones name none.
                let want_ns = (!o.kind().starts_with("Cluster")).then(|| p.namespace());
                assert_eq!(
                    o.namespace(),
                    want_ns,
                    "{s}: {name}: {} {}",
                    o.kind(),
                    o.name()
                );
                for c in containers(o) {
                    let image = c["image"].as_str().unwrap();
                    assert!(
                        refs.contains(image),
                        "{s}: {name}: image {image} is not a profile image reference"
                    );
                    used.insert(image.to_string());
                    assert_eq!(c["imagePullPolicy"], "Never", "{s}: {name}: {}", o.name());
                    if o.kind() != "Job" {
                        assert!(
                            c.get("readinessProbe").is_some(),
                            "{s}: {name}: {} has no readiness probe",
                            o.name()
                        );
                    }
                }
                if o.kind() == "Service"
                    && let Some(ports) = o.get("/spec/ports").and_then(Value::as_array)
                {
                    for np in ports
                        .iter()
                        .filter_map(|p| p.get("nodePort"))
                        .filter_map(Value::as_u64)
                    {
                        assert!(
                            declared.contains(&np),
                            "{s}: {name}: Service {} uses undeclared NodePort {np}",
                            o.name()
                        );
                    }
                }
            }
            let fake = fake_refs(&p);
            let wanted: BTreeSet<String> = wanted.iter().map(|i| fake[i].clone()).collect();
            assert_eq!(used, wanted, "{s}: {name}: images used vs images: listed");
        }
        // Every declared NodePort is served by some Service.
        let served: BTreeSet<u64> = rendered
            .values()
            .flatten()
            .filter(|o| o.kind() == "Service")
            .flat_map(|o| {
                o.get("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
            .collect();
        assert_eq!(served, declared, "{s}: declared NodePorts vs Services");
    }
}

#[test]
fn coverage_instruments_exactly_the_images_with_coverage_args() {
    let expected: [(&str, &[&str]); 7] = [
        ("aianalysis", &["controller", "datastorage"]),
        ("datastorage", &["datastorage"]),
        ("gateway", &["controller", "datastorage"]),
        (
            "notification",
            &["authwebhook", "controller", "datastorage"],
        ),
        (
            "remediationorchestrator",
            &["authwebhook", "controller", "datastorage"],
        ),
        ("signalprocessing", &["controller", "datastorage"]),
        (
            "workflowexecution",
            &["authwebhook", "controller", "datastorage"],
        ),
    ];
    for (s, want) in expected {
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
        for k in &with_args {
            assert_eq!(
                p.spec.images[*k]
                    .build
                    .as_ref()
                    .unwrap()
                    .coverage_args
                    .get("GOFLAGS")
                    .map(String::as_str),
                Some("-cover"),
                "{s}: {k}"
            );
        }
        let refs = fake_refs(&p);
        let instrumented: Vec<String> = with_args.iter().map(|k| refs[*k].clone()).collect();
        let mut covered = BTreeSet::new();
        for (name, objects) in render_all(&p) {
            for mut o in objects {
                let before = o.value.clone();
                let changed = coverage::instrument(&mut o.value, &instrumented);
                let runs_instrumented = matches!(o.kind(), "Deployment" | "StatefulSet")
                    && containers(&o)
                        .iter()
                        .any(|c| instrumented.iter().any(|r| c["image"] == r.as_str()));
                assert_eq!(
                    changed,
                    runs_instrumented,
                    "{s}: {name}: {} {}",
                    o.kind(),
                    o.name()
                );
                if !changed {
                    assert_eq!(o.value, before, "{s}: {name}: {} changed", o.name());
                    continue;
                }
                for c in containers(&o) {
                    let image = c["image"].as_str().unwrap();
                    let has_env = c["env"].as_array().is_some_and(|e| {
                        e.iter()
                            .any(|v| v["name"] == "GOCOVERDIR" && v["value"] == "/coverdata")
                    });
                    assert_eq!(
                        has_env,
                        instrumented.iter().any(|r| r == image),
                        "{s}: {name}: container {image}"
                    );
                    if has_env {
                        covered.insert(image.to_string());
                    }
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

#[test]
fn hapi_swaps_for_the_kubernaut_agent_by_editing_the_include_line() {
    let tree = kubernaut_tree();
    let copy = kprov_tree_copy();
    edit(
        &copy.path().join("profiles/aianalysis.yaml"),
        "  - stacks/hapi.yaml\n",
        "  - stacks/kubernaut-agent.yaml\n",
    );
    let p = profile::load(&copy.path().join("profiles"), "aianalysis").unwrap();
    assert_eq!(profile::validate(&p, tree.path()), vec![]);
    let components: Vec<&str> = p.spec.components.keys().map(String::as_str).collect();
    assert!(
        components.contains(&"kubernaut-agent") && components.contains(&"mock-llm"),
        "{components:?}"
    );
    assert!(
        !components.contains(&"holmesgpt-api") && !p.spec.images.contains_key("holmesgpt-api"),
        "{components:?}"
    );
    assert_eq!(
        p.spec.ports["kubernaut-agent"].node_port, 30088,
        "the agent keeps HAPI's API NodePort"
    );
    assert!(
        p.spec.images["kubernaut-agent"]
            .build
            .as_ref()
            .unwrap()
            .coverage_args
            .contains_key("GOFLAGS"),
        "the Go agent is instrumented"
    );
    let rendered = render_all(&p);
    assert!(
        rendered["kubernaut-agent"]
            .iter()
            .any(|o| o.kind() == "Deployment" && o.name() == "kubernaut-agent")
    );
    kprov(&copy.path().join("profiles"), tree.path())
        .args(["validate", "--service", "aianalysis"])
        .assert()
        .code(0);
}

/// A `psql` double for the migrations Job's script: it keeps goose's version table as a file
/// of applied versions, and logs each migration it is fed (comments dropped) with its
/// transaction mode.
const PSQL_DOUBLE: &str = r#"#!/bin/sh
sql=""; tx=no
while [ $# -gt 0 ]; do
  case "$1" in
    -c) sql="$2"; shift 2 ;;
    --single-transaction) tx=yes; shift ;;
    *) shift ;;
  esac
done
if [ -z "$sql" ]; then
  body=$(grep -v '^--' | tr '\n' ' ')
  echo "run tx=$tx $body" >> "$STUB_STATE/log"
  exit 0
fi
case "$sql" in
  "SELECT count(*) FROM goose_db_version") wc -l < "$STUB_STATE/versions" | tr -d ' ' ;;
  *"WHERE version_id = "*) v=${sql#*version_id = }; v=${v%% *}; grep -cx "$v" "$STUB_STATE/versions" ;;
  *"INSERT INTO goose_db_version"*) v=${sql#*VALUES (}; echo "${v%%,*}" >> "$STUB_STATE/versions" ;;
esac
exit 0
"#;

/// The migrations Job's shell script (manifests/migrations-job.yaml), run by /bin/sh against
/// a `psql` double: Up sections only, goose's numeric order, recorded, skipped when re-run.
#[test]
fn the_migrations_job_applies_up_sections_in_goose_order_once_with_a_psql_double() {
    let p = load("datastorage");
    let images = fake_refs(&p);
    let vals = p.template_values(&BTreeMap::new(), &images, &BTreeMap::new());
    let first = p.spec.hooks["migrations"].manifests[0]
        .path()
        .expect("a file");
    let path = p.resolve(Path::new("."), first);
    let text = template::render(&std::fs::read_to_string(&path).unwrap(), &vals).unwrap();
    let job = parse_manifests(&Manifest {
        origin: path.display().to_string(),
        text,
    })
    .unwrap()
    .remove(0);
    assert_eq!(job.kind(), "Job");
    let script = containers(&job)[0]["args"][0].as_str().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let (bin, sql, state) = (
        dir.path().join("bin"),
        dir.path().join("migrations"),
        dir.path().join("state"),
    );
    for d in [&bin, &sql, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    write(&state, "versions", "");
    write(&bin, "psql", PSQL_DOUBLE);
    write(&bin, "pg_isready", "#!/bin/sh\nexit 0\n");
    for f in ["psql", "pg_isready"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    write(
        &sql,
        "001_a.sql",
        "-- +goose Up\nCREATE TABLE a;\n-- +goose Down\nDROP TABLE a;\n",
    );
    write(
        &sql,
        "002_b.sql",
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY b;\n-- +goose Down\nDROP INDEX b;\n",
    );
    write(
        &sql,
        "010_c.sql",
        "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION c;\n-- +goose StatementEnd\n",
    );
    write(&sql, "1000_d.sql", "-- +goose Up\nCREATE TABLE d;\n");
    write(
        &sql,
        "030_e.sql",
        "-- +goose Up\nCREATE TABLE e;\n-- +goose Down\nDROP TABLE e;\n",
    );
    let script = script.replace("cd /migrations", &format!("cd '{}'", sql.display()));
    let run = || {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("STUB_STATE", &state)
            .envs([
                ("POSTGRES_USER", "slm_user"),
                ("POSTGRES_PASSWORD", "test_password"),
                ("POSTGRES_DB", "action_history"),
                ("PGHOST", "postgresql"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("migrations done (5 applied)"), "{first}");
    let log = std::fs::read_to_string(state.join("log")).unwrap();
    let runs: Vec<&str> = log.lines().map(str::trim_end).collect();
    assert_eq!(
        runs,
        [
            "run tx=yes CREATE TABLE a;",
            "run tx=no CREATE INDEX CONCURRENTLY b;",
            "run tx=yes CREATE FUNCTION c;",
            "run tx=yes CREATE TABLE e;",
            "run tx=yes CREATE TABLE d;",
        ]
    );
    let versions = std::fs::read_to_string(state.join("versions")).unwrap();
    assert_eq!(
        versions.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "10", "30", "1000"]
    );
    let second = run();
    assert!(second.contains("migrations done (0 applied)"), "{second}");
    assert_eq!(
        std::fs::read_to_string(state.join("log")).unwrap(),
        log,
        "a re-run applies nothing"
    );
}
