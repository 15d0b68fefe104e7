//! The resource types the double serves: built-in ones and those Established CRDs add.

use std::cmp::Ordering;

use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// "status", "scale", "log", "finalize".
    pub subresources: Vec<String>,
    /// Only `create` (access reviews); everything else has the full verb set.
    pub create_only: bool,
    /// Whether `metadata.generation` is tracked (workloads, CRDs, custom resources).
    pub generation: bool,
    /// Served for a CRD: list items keep their kind and apiVersion, as the apiserver's
    /// unstructured lists do (built-in lists drop them).
    pub custom: bool,
    /// `.spec.replicas` path etc. for a CRD's scale subresource.
    pub scale_paths: Option<(String, String, Option<String>)>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-resource as error messages and storage name it: `deployments.apps`, `pods`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_sub(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// The legacy discovery entries (APIResource) for this type and its subresources.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
        })];
        let first = out[0].as_object_mut().expect("object literal");
        if !self.short_names.is_empty() {
            first.insert("shortNames".into(), json!(self.short_names));
        }
        if !self.categories.is_empty() {
            first.insert("categories".into(), json!(self.categories));
        }
        for sub in &self.subresources {
            let (kind, group, version, verbs) = match sub.as_str() {
                "scale" => ("Scale", "autoscaling", "v1", vec!["get", "patch", "update"]),
                "log" => ("Pod", "", "v1", vec!["get"]),
                "token" => (
                    "TokenRequest",
                    "authentication.k8s.io",
                    "v1",
                    vec!["create"],
                ),
                "finalize" => (self.kind.as_str(), "", "", vec!["update"]),
                _ => (self.kind.as_str(), "", "", vec!["get", "patch", "update"]),
            };
            let mut entry = json!({
                "name": format!("{}/{}", self.plural, sub),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !group.is_empty() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            out.push(entry);
        }
        out
    }
}

struct Builtin {
    gv: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    subs: &'static [&'static str],
    all: bool,
}

const fn b(
    gv: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    subs: &'static [&'static str],
    all: bool,
) -> Builtin {
    Builtin {
        gv,
        kind,
        plural,
        namespaced,
        short,
        subs,
        all,
    }
}

const NS: bool = true;
const CLUSTER: bool = false;

#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    b("v1", "ConfigMap", "configmaps", NS, &["cm"], &[], false),
    b("v1", "Endpoints", "endpoints", NS, &["ep"], &[], false),
    b("v1", "Event", "events", NS, &["ev"], &[], false),
    b("v1", "LimitRange", "limitranges", NS, &["limits"], &[], false),
    b("v1", "Namespace", "namespaces", CLUSTER, &["ns"], &["status", "finalize"], false),
    b("v1", "Node", "nodes", CLUSTER, &["no"], &["status"], false),
    b("v1", "PersistentVolumeClaim", "persistentvolumeclaims", NS, &["pvc"], &["status"], false),
    b("v1", "PersistentVolume", "persistentvolumes", CLUSTER, &["pv"], &["status"], false),
    b("v1", "Pod", "pods", NS, &["po"], &["status", "log"], true),
    b("v1", "PodTemplate", "podtemplates", NS, &[], &[], false),
    b("v1", "ResourceQuota", "resourcequotas", NS, &["quota"], &["status"], false),
    b("v1", "Secret", "secrets", NS, &[], &[], false),
    b("v1", "ServiceAccount", "serviceaccounts", NS, &["sa"], &["token"], false),
    b("v1", "Service", "services", NS, &["svc"], &["status"], true),
    b("apps/v1", "ControllerRevision", "controllerrevisions", NS, &[], &[], false),
    b("apps/v1", "DaemonSet", "daemonsets", NS, &["ds"], &["status"], true),
    b("apps/v1", "Deployment", "deployments", NS, &["deploy"], &["status", "scale"], true),
    b("apps/v1", "ReplicaSet", "replicasets", NS, &["rs"], &["status", "scale"], true),
    b("apps/v1", "StatefulSet", "statefulsets", NS, &["sts"], &["status", "scale"], true),
    b("batch/v1", "CronJob", "cronjobs", NS, &["cj"], &["status"], true),
    b("batch/v1", "Job", "jobs", NS, &[], &["status"], true),
    b("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", CLUSTER, &[], &[], false),
    b("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", CLUSTER, &[], &[], false),
    b("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", NS, &[], &[], false),
    b("rbac.authorization.k8s.io/v1", "Role", "roles", NS, &[], &[], false),
    b("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", CLUSTER, &["crd", "crds"], &["status"], false),
    b("storage.k8s.io/v1", "StorageClass", "storageclasses", CLUSTER, &["sc"], &[], false),
    b("networking.k8s.io/v1", "Ingress", "ingresses", NS, &["ing"], &["status"], false),
    b("networking.k8s.io/v1", "IngressClass", "ingressclasses", CLUSTER, &[], &[], false),
    b("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", NS, &["netpol"], &[], false),
    b("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", NS, &["pdb"], &["status"], false),
    b("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", NS, &["hpa"], &["status"], true),
    b("coordination.k8s.io/v1", "Lease", "leases", NS, &[], &[], false),
    b("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", CLUSTER, &["pc"], &[], false),
    b("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", CLUSTER, &[], &[], false),
    b("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", CLUSTER, &[], &[], false),
    b("authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", CLUSTER, &[], &[], false),
    b("authorization.k8s.io/v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", NS, &[], &[], false),
    b("authorization.k8s.io/v1", "SubjectAccessReview", "subjectaccessreviews", CLUSTER, &[], &[], false),
    b("authentication.k8s.io/v1", "SelfSubjectReview", "selfsubjectreviews", CLUSTER, &[], &[], false),
    b("authentication.k8s.io/v1", "TokenReview", "tokenreviews", CLUSTER, &[], &[], false),
];

/// Types whose strategy tracks `metadata.generation` in a real apiserver.
const GENERATION_TRACKED: &[&str] = &[
    "apps",
    "batch",
    "apiextensions.k8s.io",
    "networking.k8s.io",
    "policy",
    "autoscaling",
];

pub fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| {
            let (group, version) = match b.gv.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), b.gv.to_string()),
            };
            let review = b.kind.ends_with("Review");
            ResourceType {
                generation: GENERATION_TRACKED.contains(&group.as_str()),
                group,
                version,
                kind: b.kind.to_string(),
                plural: b.plural.to_string(),
                singular: b.kind.to_lowercase(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: if b.all {
                    vec!["all".to_string()]
                } else {
                    vec![]
                },
                subresources: b.subs.iter().map(|s| s.to_string()).collect(),
                create_only: review,
                custom: false,
                scale_paths: None,
            }
        })
        .collect()
}

/// The resource types an Established CRD serves, one per served version.
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        names["kind"].as_str(),
        names["plural"].as_str(),
    ) else {
        return vec![];
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = vec![];
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"] == Value::Bool(false) {
            continue;
        }
        let Some(name) = version["name"].as_str() else {
            continue;
        };
        let subs = &version["subresources"];
        let mut subresources = vec![];
        if subs.get("status").is_some() {
            subresources.push("status".to_string());
        }
        let mut scale_paths = None;
        if let Some(scale) = subs.get("scale") {
            subresources.push("scale".to_string());
            scale_paths = Some((
                scale["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                scale["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .to_string(),
                scale["labelSelectorPath"].as_str().map(String::from),
            ));
        }
        out.push(ResourceType {
            group: group.to_string(),
            version: name.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            subresources,
            create_only: false,
            generation: true,
            custom: true,
            scale_paths,
        });
    }
    out
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first, others last by name.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn key(v: &str) -> (u8, u64, u64, String) {
        let parse = || -> Option<(u8, u64, u64)> {
            let rest = v.strip_prefix('v')?;
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let major: u64 = digits.parse().ok()?;
            let tail = &rest[digits.len()..];
            if tail.is_empty() {
                return Some((0, major, 0));
            }
            let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
                (1, n)
            } else if let Some(n) = tail.strip_prefix("alpha") {
                (2, n)
            } else {
                return None;
            };
            Some((level, major, num.parse().ok()?))
        };
        match parse() {
            // Higher numbers sort first, so negate them through u64::MAX.
            Some((level, major, minor)) => {
                (level, u64::MAX - major, u64::MAX - minor, String::new())
            }
            None => (3, 0, 0, v.to_string()),
        }
    }
    key(a).cmp(&key(b))
}

#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub types: Vec<ResourceType>,
}

impl Registry {
    pub fn new(crds: &[Value]) -> Self {
        let mut types = builtins();
        for crd in crds {
            types.extend(from_crd(crd));
        }
        Registry { types }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Any served version of a group-resource (the controller's view of storage).
    pub fn by_group_resource(&self, gr: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group_resource() == gr)
    }

    /// Groups with their versions in priority order, core first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = vec![];
        for t in &self.types {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by(|a, b| compare_versions(a, b));
        }
        groups
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut v = vec!["v1alpha1", "v1beta1", "v2", "v1", "v1beta2", "foo"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn a_crd_serves_its_versions_with_status_subresource() {
        let crd = json!({"spec": {"group": "kubernaut.ai", "scope": "Namespaced",
            "names": {"kind": "ActionType", "plural": "actiontypes", "shortNames": ["at"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                          "subresources": {"status": {}}}]}});
        let types = from_crd(&crd);
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].api_version(), "kubernaut.ai/v1alpha1");
        assert_eq!(types[0].singular, "actiontype");
        assert!(types[0].has_sub("status"));
        assert_eq!(types[0].group_resource(), "actiontypes.kubernaut.ai");
    }
}
