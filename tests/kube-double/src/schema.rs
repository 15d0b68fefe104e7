//! Which fields a type declares. Server-side apply refuses a body with a field its schema does
//! not declare — 500 "failed to create typed patch object … field not declared in schema",
//! whatever `fieldValidation` says — because the apiserver's structured-merge-diff cannot
//! build a typed object from it. This module finds those fields as it does:
//! - built-in kinds: k8s-openapi's types are the schema. The object is deserialised into its
//!   typed struct and serialised back; a path the input has and the round trip lost is
//!   undeclared (serde ignores unknown fields, and keeps free-form maps, IntOrString,
//!   Quantity and raw JSON as they were, so nothing declared is lost);
//! - custom resources: the CRD version's `openAPIV3Schema` (properties, items,
//!   additionalProperties, x-kubernetes-preserve-unknown-fields, embedded resources).
//!
//! Like structured-merge-diff, the walk stops at the first undeclared field of each map
//! (after reporting it) but carries on in sibling maps already entered. The apiserver visits
//! a map's fields in Go's random map order, so which of several undeclared fields it names
//! varies between requests; the double visits them in sorted order, deterministically.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::registry::ResourceType;

const UNDECLARED: &str = "field not declared in schema";

/// The undeclared field paths of `applied`, as `<path>: field not declared in schema`.
/// `old` is the stored object (partial applies are checked merged onto it, since the typed
/// structs need their required fields); `crd_schema` is the openAPIV3Schema of a custom
/// resource's version. An empty result also means "could not tell" (logged).
pub fn undeclared(
    rt: &ResourceType,
    old: Option<&Value>,
    applied: &Value,
    crd_schema: Option<&Value>,
) -> Vec<String> {
    let mut errs = vec![];
    if let Some(schema) = crd_schema {
        check_custom_resource(applied, schema, &mut errs);
        return errs;
    }
    let mut probe = old.cloned().unwrap_or_else(|| serde_json::json!({}));
    crate::patch::apply_merge(&mut probe, applied);
    match typed_round_trip(&rt.group, &rt.kind, &probe) {
        Some(Ok(round)) => walk_typed(applied, &round, "", None, &mut errs),
        Some(Err(e)) => eprintln!(
            "kube-double: cannot check the fields of {} {}: {e}",
            rt.kind,
            crate::util::meta_str(applied, "name")
        ),
        None => {}
    }
    errs
}

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The round trip through the k8s-openapi type of a built-in kind; None for kinds without one.
fn typed_round_trip(group: &str, kind: &str, v: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, autoscaling::v2 as hpa,
        batch::v1 as batch, coordination::v1 as coord, core::v1 as core, networking::v1 as net,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    macro_rules! kinds {
        ($($g:literal, $k:literal => $t:ty;)*) => {
            match (group, kind) {
                $(($g, $k) => Some(round_trip::<$t>(v)),)*
                _ => None,
            }
        };
    }
    kinds! {
        "", "ConfigMap" => core::ConfigMap;
        "", "Endpoints" => core::Endpoints;
        "", "Event" => core::Event;
        "", "LimitRange" => core::LimitRange;
        "", "Namespace" => core::Namespace;
        "", "Node" => core::Node;
        "", "PersistentVolumeClaim" => core::PersistentVolumeClaim;
        "", "PersistentVolume" => core::PersistentVolume;
        "", "Pod" => core::Pod;
        "", "PodTemplate" => core::PodTemplate;
        "", "ResourceQuota" => core::ResourceQuota;
        "", "Secret" => core::Secret;
        "", "ServiceAccount" => core::ServiceAccount;
        "", "Service" => core::Service;
        "apps", "ControllerRevision" => apps::ControllerRevision;
        "apps", "DaemonSet" => apps::DaemonSet;
        "apps", "Deployment" => apps::Deployment;
        "apps", "ReplicaSet" => apps::ReplicaSet;
        "apps", "StatefulSet" => apps::StatefulSet;
        "batch", "CronJob" => batch::CronJob;
        "batch", "Job" => batch::Job;
        "rbac.authorization.k8s.io", "ClusterRoleBinding" => rbac::ClusterRoleBinding;
        "rbac.authorization.k8s.io", "ClusterRole" => rbac::ClusterRole;
        "rbac.authorization.k8s.io", "RoleBinding" => rbac::RoleBinding;
        "rbac.authorization.k8s.io", "Role" => rbac::Role;
        "apiextensions.k8s.io", "CustomResourceDefinition" => apiext::CustomResourceDefinition;
        "storage.k8s.io", "StorageClass" => storage::StorageClass;
        "networking.k8s.io", "Ingress" => net::Ingress;
        "networking.k8s.io", "IngressClass" => net::IngressClass;
        "networking.k8s.io", "NetworkPolicy" => net::NetworkPolicy;
        "policy", "PodDisruptionBudget" => policy::PodDisruptionBudget;
        "autoscaling", "HorizontalPodAutoscaler" => hpa::HorizontalPodAutoscaler;
        "coordination.k8s.io", "Lease" => coord::Lease;
        "scheduling.k8s.io", "PriorityClass" => sched::PriorityClass;
        "admissionregistration.k8s.io", "MutatingWebhookConfiguration" => adm::MutatingWebhookConfiguration;
        "admissionregistration.k8s.io", "ValidatingWebhookConfiguration" => adm::ValidatingWebhookConfiguration;
    }
}

/// Compares the input with its typed round trip. `field` is the name of the list an element
/// belongs to, which picks the element's key for the path.
fn walk_typed(
    input: &Value,
    round: &Value,
    path: &str,
    field: Option<&str>,
    errs: &mut Vec<String>,
) {
    match input {
        Value::Object(map) => {
            for (k, v) in map {
                if v.is_null() {
                    continue; // a null is "unset"; serde drops it legitimately
                }
                let here = format!("{path}.{k}");
                match round.get(k) {
                    Some(r) => walk_typed(v, r, &here, Some(k), errs),
                    None => {
                        errs.push(format!("{here}: {UNDECLARED}"));
                        break;
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}{}", element(field.unwrap_or(""), item, i, &[]));
                walk_typed(
                    item,
                    round.get(i).unwrap_or(&Value::Null),
                    &here,
                    None,
                    errs,
                );
            }
        }
        _ => {}
    }
}

/// The keys of the associative lists of built-in types, by field name (their
/// `x-kubernetes-list-map-keys`); other lists are addressed by index.
fn builtin_list_keys(field: &str, item: &Value) -> &'static [&'static str] {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "webhooks" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "ports" if item.get("containerPort").is_some() => &["containerPort", "protocol"],
        "ports" if item.get("port").is_some() => &["port", "protocol"],
        "conditions" => &["type"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        "ownerReferences" => &["uid"],
        _ => &[],
    }
}

/// A list element's path segment as structured-merge-diff prints it: `[name="web"]`,
/// `[containerPort=80,protocol="TCP"]`, or `[0]`. `crd_keys` overrides the built-in table.
fn element(field: &str, item: &Value, index: usize, crd_keys: &[String]) -> String {
    let keys: Vec<&str> = if crd_keys.is_empty() {
        builtin_list_keys(field, item).to_vec()
    } else {
        crd_keys.iter().map(String::as_str).collect()
    };
    if keys.is_empty() || !item.is_object() {
        return format!("[{index}]");
    }
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            // protocol is a defaulted key (TCP) that apply bodies usually leave out.
            let v = match (item.get(*k), *k) {
                (Some(v), _) => v.to_string(),
                (None, "protocol") => "\"TCP\"".into(),
                (None, _) => "null".into(),
            };
            format!("{k}={v}")
        })
        .collect();
    format!("[{}]", parts.join(","))
}

fn check_custom_resource(applied: &Value, schema: &Value, errs: &mut Vec<String>) {
    let Some(map) = applied.as_object() else {
        return;
    };
    for (k, v) in map {
        if v.is_null() || k == "apiVersion" || k == "kind" {
            continue;
        }
        if k == "metadata" {
            check_metadata(v, ".metadata", errs);
            continue;
        }
        if !walk_field(k, v, schema, "", errs) {
            break;
        }
    }
}

/// ObjectMeta of a custom resource or an embedded resource, checked against k8s-openapi's.
fn check_metadata(meta: &Value, path: &str, errs: &mut Vec<String>) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    match round_trip::<ObjectMeta>(meta) {
        Ok(round) => walk_typed(meta, &round, path, None, errs),
        Err(e) => eprintln!("kube-double: cannot check metadata fields: {e}"),
    }
}

/// Checks one field of an object against the object's schema; false when it is undeclared
/// (the caller stops walking that object, as structured-merge-diff does).
fn walk_field(
    key: &str,
    value: &Value,
    parent: &Value,
    path: &str,
    errs: &mut Vec<String>,
) -> bool {
    let here = format!("{path}.{key}");
    if let Some(child) = parent.pointer(&format!(
        "/properties/{}",
        key.replace('~', "~0").replace('/', "~1")
    )) {
        walk_schema(value, child, &here, errs);
        return true;
    }
    match parent.get("additionalProperties") {
        Some(Value::Bool(true)) => return true,
        Some(s @ Value::Object(_)) => {
            walk_schema(value, s, &here, errs);
            return true;
        }
        _ => {}
    }
    if parent["x-kubernetes-preserve-unknown-fields"] == true {
        return true;
    }
    if parent["x-kubernetes-embedded-resource"] == true && (key == "apiVersion" || key == "kind") {
        return true;
    }
    if parent["x-kubernetes-embedded-resource"] == true && key == "metadata" {
        check_metadata(value, &here, errs);
        return true;
    }
    errs.push(format!("{here}: {UNDECLARED}"));
    false
}

fn walk_schema(value: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let untyped = schema.get("properties").is_none()
                && schema.get("additionalProperties").is_none()
                && schema["x-kubernetes-embedded-resource"] != true;
            // An object schema with neither properties nor additionalProperties holds
            // nothing, unless it preserves unknown fields (checked per field).
            if untyped && schema["x-kubernetes-preserve-unknown-fields"] == true {
                return;
            }
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                if !walk_field(k, v, schema, path, errs) {
                    break;
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else {
                return;
            };
            let keys: Vec<String> = match schema["x-kubernetes-list-type"].as_str() {
                Some("map") => schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
                _ => vec![],
            };
            for (i, item) in items.iter().enumerate() {
                let seg = if keys.is_empty() {
                    format!("[{i}]")
                } else {
                    element("", item, i, &keys)
                };
                walk_schema(item, item_schema, &format!("{path}{seg}"), errs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtins;
    use serde_json::json;

    fn rt(kind: &str) -> ResourceType {
        builtins().into_iter().find(|t| t.kind == kind).unwrap()
    }

    fn deployment(extra_container: Value, extra_spec: Value) -> Value {
        let mut c = json!({"name": "web", "image": "localhost/web:1", "imagePullPolicy": "Never"});
        crate::patch::apply_merge(&mut c, &extra_container);
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"any/key": "x"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c],
                        "securityContext": {}}}}});
        crate::patch::apply_merge(&mut d["spec"], &extra_spec);
        d
    }

    #[test]
    fn a_well_formed_deployment_declares_every_field() {
        let d = deployment(
            json!({"resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}),
            json!({}),
        );
        assert!(undeclared(&rt("Deployment"), None, &d, None).is_empty());
    }

    #[test]
    fn the_first_undeclared_field_of_each_map_is_reported_in_sorted_order() {
        let d = deployment(json!({"imagePulPolicy": "Never"}), json!({"replicaz": 2}));
        // spec: "replicaz" sorts before "template", so the walk stops there.
        assert_eq!(
            undeclared(&rt("Deployment"), None, &d, None),
            vec![".spec.replicaz: field not declared in schema"]
        );
        let d = deployment(json!({"imagePulPolicy": "Never"}), json!({}));
        assert_eq!(
            undeclared(&rt("Deployment"), None, &d, None),
            vec![
                ".spec.template.spec.containers[name=\"web\"].imagePulPolicy: field not declared in schema"
            ]
        );
    }

    #[test]
    fn a_partial_apply_is_checked_merged_onto_the_stored_object() {
        let old = deployment(json!({}), json!({}));
        let partial = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        assert!(undeclared(&rt("Deployment"), Some(&old), &partial, None).is_empty());
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicaz": 3}});
        assert_eq!(
            undeclared(&rt("Deployment"), Some(&old), &bad, None).len(),
            1
        );
    }

    #[test]
    fn free_form_maps_and_raw_json_are_declared() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"a": "b"}}, "data": {"anything": "x"}});
        assert!(undeclared(&rt("ConfigMap"), None, &cm, None).is_empty());
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "ws.x.io"},
            "spec": {"group": "x.io", "scope": "Namespaced", "names": {"kind": "W", "plural": "ws"},
                     "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true, "properties": {"spec": {"type": "object", "default": {"any": [1, {"b": 2}]}}}}}}]}});
        assert!(undeclared(&rt("CustomResourceDefinition"), None, &crd, None).is_empty());
    }

    #[test]
    fn a_custom_resource_is_checked_against_its_crd_schema() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"},
                     "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                               "items": {"type": "object", "properties": {"id": {"type": "string"}}}},
                     "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                     "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}});
        let cr = |spec: Value| json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w"}, "spec": spec, "status": {"phase": "A"}});
        let ok = cr(
            json!({"size": 1, "items": [{"id": "a"}], "free": {"x": {"y": 1}}, "labels": {"k": "v"}}),
        );
        assert!(undeclared(&rt("ConfigMap"), None, &ok, Some(&schema)).is_empty());
        let bad = cr(json!({"size": 1, "colour": "red", "items": [{"id": "a", "extra": 1}]}));
        assert_eq!(
            undeclared(&rt("ConfigMap"), None, &bad, Some(&schema)),
            vec![".spec.colour: field not declared in schema"],
            "colour sorts first and ends the walk of spec"
        );
        let bad = cr(json!({"size": 1, "items": [{"id": "a", "extra": 1}]}));
        assert_eq!(
            undeclared(&rt("ConfigMap"), None, &bad, Some(&schema)),
            vec![".spec.items[id=\"a\"].extra: field not declared in schema"]
        );
    }
}
