//! What a request does to the store: create, replace, patch, apply, delete — with the
//! apiserver's rules for server-owned fields, status subresources, generation, defaults,
//! namespaces and finalizers.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::patch;
use crate::registry::ResourceType;
use crate::store::{CRD_GR, Store};
use crate::util::{meta_str, new_uid, now_rfc3339, obj_at, random_suffix};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PatchType {
    Apply,
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Some(PatchType::Apply),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            _ => None,
        }
    }
}

pub struct WriteOpts<'a> {
    pub manager: &'a str,
    pub dry_run: bool,
    pub subresource: Option<&'a str>,
}

fn check_namespace(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    creating: bool,
) -> Result<(), ApiError> {
    if !rt.namespaced {
        return Ok(());
    }
    let ns = ns.ok_or_else(|| ApiError::bad_request("the namespace of the object is required"))?;
    let ns_obj = store
        .get("namespaces", "", ns)
        .ok_or_else(|| ApiError::namespace_not_found(ns))?;
    if creating && ns_obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::namespace_terminating(rt, name, ns));
    }
    Ok(())
}

fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || b == b'.'
                || (rt.group == "rbac.authorization.k8s.io"
                    && (b == b':' || b.is_ascii_uppercase()))
        })
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            rt,
            name,
            "metadata.name",
            &format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        ))
    }
}

/// Checks apiVersion/kind/namespace of a body sent to `rt`'s endpoint and fills the identity.
fn check_body(rt: &ResourceType, ns: Option<&str>, body: &mut Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON or YAML object",
        ));
    }
    match body["kind"].as_str() {
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        None => body["kind"] = json!(rt.kind),
    }
    match body["apiVersion"].as_str() {
        Some(v) if v == rt.api_version() => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        None => body["apiVersion"] = json!(rt.api_version()),
    }
    let meta = obj_at(body, "metadata");
    if rt.namespaced {
        match (meta.get("namespace").and_then(Value::as_str), ns) {
            (Some(a), Some(b)) if !a.is_empty() && a != b => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (_, Some(b)) => {
                meta.insert("namespace".into(), json!(b));
            }
            _ => {}
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            Some((_, "latest")) | None => "Always",
            Some(_) => "IfNotPresent",
        }
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>, restart_default: &str) {
    for key in ["containers", "initContainers"] {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            c.entry("imagePullPolicy")
                .or_insert_with(|| json!(default_pull_policy(&image)));
            c.entry("terminationMessagePath")
                .or_insert_with(|| json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy")
                .or_insert_with(|| json!("File"));
            c.entry("resources").or_insert_with(|| json!({}));
            for p in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.as_object_mut() {
                    p.entry("protocol").or_insert_with(|| json!("TCP"));
                }
            }
        }
    }
    spec.entry("restartPolicy")
        .or_insert_with(|| json!(restart_default));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert_with(|| json!(30));
    spec.entry("dnsPolicy")
        .or_insert_with(|| json!("ClusterFirst"));
    spec.entry("schedulerName")
        .or_insert_with(|| json!("default-scheduler"));
    spec.entry("securityContext").or_insert_with(|| json!({}));
}

fn default_template(obj: &mut Value, restart_default: &str) {
    if let Some(spec) = obj
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(spec, restart_default);
    }
}

fn next_cluster_ip(store: &Store) -> String {
    let used: BTreeSet<String> = store
        .list("services", None)
        .iter()
        .filter_map(|s| {
            s.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    (2..65_000u32)
        .map(|i| format!("10.96.{}.{}", i / 254, i % 254 + 1))
        .find(|ip| !used.contains(ip) && ip != "10.96.0.10")
        .unwrap_or_else(|| "10.96.255.254".into())
}

fn next_node_port(store: &Store) -> u64 {
    let used: BTreeSet<u64> = store
        .list("services", None)
        .iter()
        .flat_map(|s| {
            s.pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    (30_000..32_768)
        .find(|p| !used.contains(p))
        .unwrap_or(32_767)
}

/// A webhook configuration's defaults, as the apiserver stores them.
fn default_webhooks(rt: &ResourceType, obj: &mut Value) {
    let mutating = rt.kind == "MutatingWebhookConfiguration";
    for hook in obj
        .get_mut("webhooks")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(h) = hook.as_object_mut() else {
            continue;
        };
        h.entry("failurePolicy").or_insert(json!("Fail"));
        h.entry("matchPolicy").or_insert(json!("Equivalent"));
        h.entry("namespaceSelector").or_insert(json!({}));
        h.entry("objectSelector").or_insert(json!({}));
        h.entry("timeoutSeconds").or_insert(json!(10));
        if mutating {
            h.entry("reinvocationPolicy").or_insert(json!("Never"));
        }
        for rule in h
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(r) = rule.as_object_mut() {
                r.entry("scope").or_insert(json!("*"));
            }
        }
    }
}

/// The defaulting the apiserver applies on every write, for the fields the double relies on.
fn apply_defaults(store: &Store, rt: &ResourceType, old: Option<&Value>, obj: &mut Value) {
    let uid = meta_str(obj, "uid").to_string();
    let name = meta_str(obj, "name").to_string();
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => {
            let spec = obj_at(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("strategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
            default_template(obj, "Always");
        }
        ("apps", "statefulsets") => {
            let spec = obj_at(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("podManagementPolicy")
                .or_insert(json!("OrderedReady"));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            default_template(obj, "Always");
        }
        ("apps", "replicasets") | ("apps", "daemonsets") => {
            if rt.plural == "replicasets" {
                obj_at(obj, "spec").entry("replicas").or_insert(json!(1));
            }
            default_template(obj, "Always");
        }
        ("batch", "jobs") => {
            let spec = obj_at(obj, "spec");
            spec.entry("parallelism").or_insert(json!(1));
            spec.entry("completions").or_insert(json!(1));
            spec.entry("backoffLimit").or_insert(json!(6));
            spec.entry("completionMode").or_insert(json!("NonIndexed"));
            spec.entry("suspend").or_insert(json!(false));
            spec.entry("manualSelector").or_insert(json!(false));
            spec.entry("podReplacementPolicy")
                .or_insert(json!("TerminatingOrFailed"));
            let manual = spec
                .get("manualSelector")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !manual && !uid.is_empty() {
                spec.entry("selector")
                    .or_insert(json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
                let labels = obj_at(obj, "spec.template.metadata.labels");
                for (k, v) in [
                    ("batch.kubernetes.io/controller-uid", uid.as_str()),
                    ("batch.kubernetes.io/job-name", name.as_str()),
                    ("controller-uid", uid.as_str()),
                    ("job-name", name.as_str()),
                ] {
                    labels.entry(k).or_insert(json!(v));
                }
                // A Job without labels of its own gets its pod template's.
                let template_labels = Value::Object(labels.clone());
                let meta = obj_at(obj, "metadata");
                if meta
                    .get("labels")
                    .and_then(Value::as_object)
                    .is_none_or(|l| l.is_empty())
                {
                    meta.insert("labels".into(), template_labels);
                }
            }
            default_template(obj, "Never");
        }
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                default_pod_spec(spec, "Always");
            }
        }
        ("", "services") => {
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let svc_type = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            // An update keeps what was allocated: the ClusterIP and each port's nodePort
            // (a re-apply that leaves them out must not move them).
            let old_ip = old
                .and_then(|o| o.pointer("/spec/clusterIP"))
                .and_then(Value::as_str);
            let old_ports: Vec<Value> = old
                .and_then(|o| o.pointer("/spec/ports"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ip = match obj.pointer("/spec/clusterIP").and_then(Value::as_str) {
                Some(ip) if !ip.is_empty() => ip.to_string(),
                _ if old_ip.is_some_and(|ip| !ip.is_empty()) => {
                    old_ip.unwrap_or_default().to_string()
                }
                _ if svc_type == "ExternalName" => String::new(),
                _ => next_cluster_ip(store),
            };
            let mut node_port = next_node_port(store);
            let spec = obj_at(obj, "spec");
            spec.entry("type").or_insert(json!("ClusterIP"));
            if svc_type != "ExternalName" {
                spec.insert("clusterIP".into(), json!(ip));
                spec.entry("clusterIPs").or_insert(json!([ip]));
                spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                spec.entry("internalTrafficPolicy")
                    .or_insert(json!("Cluster"));
            }
            spec.entry("sessionAffinity").or_insert(json!("None"));
            for p in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let Some(p) = p.as_object_mut() else { continue };
                p.entry("protocol").or_insert(json!("TCP"));
                let port = p.get("port").cloned().unwrap_or(Value::Null);
                if !headless || !port.is_null() {
                    p.entry("targetPort").or_insert(port);
                }
                if (svc_type == "NodePort" || svc_type == "LoadBalancer")
                    && !p.contains_key("nodePort")
                {
                    let same = old_ports
                        .iter()
                        .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"]);
                    match same.and_then(|o| o.get("nodePort")).filter(|n| n.is_u64()) {
                        Some(kept) => {
                            p.insert("nodePort".into(), kept.clone());
                        }
                        None => {
                            p.insert("nodePort".into(), json!(node_port));
                            node_port += 1;
                        }
                    }
                }
            }
            if svc_type == "NodePort" || svc_type == "LoadBalancer" {
                spec.entry("externalTrafficPolicy")
                    .or_insert(json!("Cluster"));
            }
            obj_at(obj, "status")
                .entry("loadBalancer")
                .or_insert(json!({}));
        }
        ("", "namespaces") => {
            obj_at(obj, "metadata.labels")
                .insert("kubernetes.io/metadata.name".into(), json!(name));
            obj_at(obj, "spec")
                .entry("finalizers")
                .or_insert(json!(["kubernetes"]));
            obj_at(obj, "status")
                .entry("phase")
                .or_insert(json!("Active"));
        }
        ("", "secrets") => {
            if let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                let data = obj_at(obj, "data");
                for (k, v) in string_data.as_object().into_iter().flatten() {
                    let text = v.as_str().unwrap_or_default();
                    data.insert(
                        k.clone(),
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        ("admissionregistration.k8s.io", _) => default_webhooks(rt, obj),
        ("", "persistentvolumeclaims") => {
            let spec = obj_at(obj, "spec");
            spec.entry("volumeMode").or_insert(json!("Filesystem"));
            spec.entry("storageClassName").or_insert(json!("standard"));
            obj_at(obj, "status")
                .entry("phase")
                .or_insert(json!("Pending"));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            obj_at(obj, "spec")
                .entry("conversion")
                .or_insert(json!({"strategy": "None"}));
            let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
            let names_obj = obj_at(obj, "spec.names");
            if let Some(kind) = names["kind"].as_str() {
                names_obj
                    .entry("singular")
                    .or_insert(json!(kind.to_lowercase()));
                names_obj
                    .entry("listKind")
                    .or_insert(json!(format!("{kind}List")));
            }
            // What the apiserver stores at creation, before its controllers accept the names.
            if obj.get("status").is_none_or(Value::is_null) {
                let stored: Vec<Value> = obj
                    .pointer("/spec/versions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].clone())
                    .collect();
                obj["status"] = json!({"acceptedNames": {"kind": "", "plural": ""}, "conditions": null, "storedVersions": stored});
            }
        }
        _ => {}
    }
}

/// The common tail of every write: server-owned fields, status rules, generation, defaults.
/// Returns the stored object, or the old one untouched when nothing changed.
fn finish_write(
    store: &mut Store,
    rt: &ResourceType,
    old: Option<&Arc<Value>>,
    mut new: Value,
    opts: &WriteOpts,
) -> Result<Arc<Value>, ApiError> {
    let status_sub = rt.has_sub("status");
    if status_sub {
        match (opts.subresource, old) {
            (Some("status"), Some(old)) => {
                let mut merged = (**old).clone();
                merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                if merged["status"].is_null() {
                    merged
                        .as_object_mut()
                        .expect("objects are maps")
                        .remove("status");
                }
                if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                    merged["metadata"]["managedFields"] = mf;
                }
                new = merged;
            }
            (_, Some(old)) => match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut()
                        .expect("objects are maps")
                        .remove("status");
                }
            },
            (_, None) => {
                new.as_object_mut()
                    .expect("objects are maps")
                    .remove("status");
            }
        }
    }
    {
        let meta = obj_at(&mut new, "metadata");
        match old {
            Some(old) => {
                for key in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "resourceVersion",
                ] {
                    match old["metadata"].get(key) {
                        Some(v) => meta.insert(key.into(), v.clone()),
                        None => meta.remove(key),
                    };
                }
            }
            None => {
                meta.insert("uid".into(), json!(new_uid()));
                meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                meta.remove("resourceVersion");
                meta.remove("deletionTimestamp");
                meta.remove("generation");
            }
        }
        meta.remove("selfLink");
    }
    apply_defaults(store, rt, old.map(|o| &**o), &mut new);
    if rt.generation {
        let generation = match old {
            None => 1,
            Some(old) => {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_of(old) != spec_of(&new) {
                    g + 1
                } else {
                    g
                }
            }
        };
        new["metadata"]["generation"] = json!(generation);
    }
    if opts.subresource != Some("status") {
        crate::validation::check(store, rt, old.map(|o| &**o), &new)?;
    }
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    crate::admission::admit(store, rt, operation, opts.subresource, &new)?;
    if let Some(old) = old
        && unchanged(old, &new)
    {
        return Ok(old.clone());
    }
    // Removing the last finalizer of an object being deleted deletes it.
    let finalizers_left = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if new.pointer("/metadata/deletionTimestamp").is_some()
        && !finalizers_left
        && rt.plural != "namespaces"
    {
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        let (ns, name) = crate::store::key_of(&new);
        return Ok(store
            .remove(&rt.group_resource(), &ns, &name)
            .unwrap_or_else(|| Arc::new(new)));
    }
    if opts.dry_run {
        return Ok(Arc::new(new));
    }
    Ok(store.commit(&rt.group_resource(), new))
}

/// A write that changes nothing but the time of a manager's entry is no write: the API server
/// drops a no-op update, managedFields and resourceVersion kept. (Server-side apply decides
/// the time before defaulting, so a re-applied Service, whose manifest lacks the defaults,
/// would otherwise be written again whenever the second had turned.)
fn unchanged(old: &Value, new: &Value) -> bool {
    let without_times = |v: &Value| {
        let mut v = v.clone();
        let entries = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut);
        for e in entries.into_iter().flatten() {
            if let Some(e) = e.as_object_mut() {
                e.remove("time");
            }
        }
        v
    };
    old == new || without_times(old) == without_times(new)
}

pub fn get(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<Arc<Value>, ApiError> {
    if rt.namespaced {
        check_namespace(store, rt, ns, name, false).ok();
    }
    store
        .get(&rt.group_resource(), ns.unwrap_or(""), name)
        .ok_or_else(|| ApiError::not_found(rt, name))
}

pub fn create(
    store: &mut Store,
    rt: &ResourceType,
    ns: Option<&str>,
    mut body: Value,
    opts: &WriteOpts,
) -> Result<Arc<Value>, ApiError> {
    check_body(rt, ns, &mut body)?;
    let mut name = meta_str(&body, "name").to_string();
    if name.is_empty() {
        let prefix = meta_str(&body, "generateName").to_string();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                rt,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        name = format!("{prefix}{}", random_suffix(5));
        body["metadata"]["name"] = json!(name);
    }
    validate_name(rt, &name)?;
    check_namespace(store, rt, ns, &name, true)?;
    if store
        .get(&rt.group_resource(), ns.unwrap_or(""), &name)
        .is_some()
    {
        return Err(ApiError::already_exists(rt, &name));
    }
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    patch::record_update(None, &mut body, opts.manager, None, rt.has_sub("status"));
    finish_write(store, rt, None, body, opts)
}

pub fn replace(
    store: &mut Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    mut body: Value,
    opts: &WriteOpts,
) -> Result<Arc<Value>, ApiError> {
    check_body(rt, ns, &mut body)?;
    if meta_str(&body, "name") != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&body, "name")
        )));
    }
    check_namespace(store, rt, ns, name, false)?;
    let old = store
        .get(&rt.group_resource(), ns.unwrap_or(""), name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let sent_rv = meta_str(&body, "resourceVersion");
    if !sent_rv.is_empty() && sent_rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::conflict(rt, name));
    }
    // Clients echo managedFields back on update; the server recomputes them.
    if let Some(mf) = old.pointer("/metadata/managedFields") {
        body["metadata"]["managedFields"] = mf.clone();
    } else if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    patch::record_update(
        Some(&old),
        &mut body,
        opts.manager,
        opts.subresource,
        rt.has_sub("status"),
    );
    finish_write(store, rt, Some(&old), body, opts)
}

/// The openAPIV3Schema of the CRD version `rt` serves, when `rt` is a custom resource.
fn custom_resource_schema(store: &Store, rt: &ResourceType) -> Option<Value> {
    let crd = store.get(CRD_GR, "", &rt.group_resource())?;
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == rt.version.as_str())?
        .pointer("/schema/openAPIV3Schema")
        .cloned()
}

/// PATCH of every kind; returns the object and whether an apply created it.
#[allow(clippy::too_many_arguments)] // the request's parts, as the handler has them
pub fn patch(
    store: &mut Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    patch_type: PatchType,
    body: Value,
    force: bool,
    opts: &WriteOpts,
) -> Result<(Arc<Value>, bool), ApiError> {
    let existing = store.get(&rt.group_resource(), ns.unwrap_or(""), name);
    let status_sub = rt.has_sub("status");
    if patch_type == PatchType::Apply {
        let mut applied = body;
        check_body(rt, ns, &mut applied)?;
        let body_name = meta_str(&applied, "name");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let crd_schema = custom_resource_schema(store, rt);
        let undeclared =
            crate::schema::undeclared(rt, existing.as_deref(), &applied, crd_schema.as_ref());
        if !undeclared.is_empty() {
            return Err(ApiError::typed_patch(
                ns.unwrap_or(""),
                name,
                &rt.api_version(),
                &rt.kind,
                &undeclared,
            ));
        }
        let creating = existing.is_none();
        if creating {
            if opts.subresource.is_some() {
                return Err(ApiError::not_found(rt, name));
            }
            validate_name(rt, name)?;
        }
        check_namespace(store, rt, ns, name, creating)?;
        let obj = patch::server_side_apply(
            existing.as_deref(),
            &applied,
            opts.manager,
            force,
            opts.subresource,
            status_sub,
            ApiError::apply_conflicts,
        )?;
        let out = finish_write(store, rt, existing.as_ref(), obj, opts)?;
        return Ok((out, creating));
    }
    check_namespace(store, rt, ns, name, false)?;
    let old = existing.ok_or_else(|| ApiError::not_found(rt, name))?;
    let mut new = (*old).clone();
    match patch_type {
        PatchType::Merge => patch::merge_patch(&mut new, &body),
        PatchType::Strategic => patch::strategic_merge_patch(&mut new, &body),
        PatchType::Json => patch::json_patch(&mut new, &body)?,
        PatchType::Apply => unreachable!("handled above"),
    }
    if meta_str(&new, "name") != name {
        return Err(ApiError::bad_request(
            "metadata.name cannot be changed by a patch",
        ));
    }
    let sent_rv = meta_str(&body, "resourceVersion");
    if patch_type != PatchType::Json
        && !sent_rv.is_empty()
        && sent_rv != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::conflict(rt, name));
    }
    if let Some(mf) = old.pointer("/metadata/managedFields") {
        new["metadata"]["managedFields"] = mf.clone();
    }
    patch::record_update(
        Some(&old),
        &mut new,
        opts.manager,
        opts.subresource,
        status_sub,
    );
    Ok((finish_write(store, rt, Some(&old), new, opts)?, false))
}

/// How a DELETE treats the object's dependents (`propagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Remove the object now; the garbage collector removes its dependents afterwards.
    Background,
    /// Keep the object, with a deletionTimestamp and the `foregroundDeletion` finalizer,
    /// until the garbage collector has removed its dependents.
    Foreground,
    /// Remove the object and leave its dependents, without the owner reference.
    Orphan,
}

impl Propagation {
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("") | Some("Background") => Ok(Propagation::Background),
            Some("Foreground") => Ok(Propagation::Foreground),
            Some("Orphan") => Ok(Propagation::Orphan),
            Some(other) => Err(ApiError::bad_request(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Marks an object as being deleted (the apiserver bumps a tracked generation then too).
fn mark_deleting(rt: &ResourceType, old: &Value, extra_finalizer: Option<&str>) -> Value {
    let mut new = old.clone();
    new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    if rt.plural != "namespaces" {
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    if rt.generation {
        new["metadata"]["generation"] =
            json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
    }
    if let Some(f) = extra_finalizer {
        let list = obj_at(&mut new, "metadata")
            .entry("finalizers")
            .or_insert(json!([]));
        if let Some(a) = list.as_array_mut()
            && !a.iter().any(|x| x == f)
        {
            a.push(json!(f));
        }
    }
    new
}

/// DELETE: finalizers delay removal; namespaces go Terminating and are emptied by the
/// controller; `propagation` decides what happens to dependents.
pub fn delete(
    store: &mut Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
    propagation: Propagation,
) -> Result<Arc<Value>, ApiError> {
    let gr = rt.group_resource();
    let ns_key = ns.unwrap_or("");
    let old = store
        .get(&gr, ns_key, name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    crate::admission::admit(store, rt, "DELETE", None, &old)?;
    if dry_run {
        return Ok(old);
    }
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
    if rt.plural == "namespaces" && rt.group.is_empty() {
        if deleting {
            return Ok(old);
        }
        let mut new = mark_deleting(rt, &old, None);
        new["status"]["phase"] = json!("Terminating");
        return Ok(store.commit(&gr, new));
    }
    if propagation == Propagation::Foreground {
        if deleting && has_finalizers {
            return Ok(old);
        }
        let new = mark_deleting(rt, &old, Some(FOREGROUND_FINALIZER));
        return Ok(store.commit(&gr, new));
    }
    if has_finalizers {
        if deleting {
            return Ok(old);
        }
        return Ok(store.commit(&gr, mark_deleting(rt, &old, None)));
    }
    if propagation == Propagation::Orphan {
        orphan_dependents(store, &old);
    }
    let gone = store.remove(&gr, ns_key, name).expect("checked above");
    if gr == CRD_GR {
        // The real apiserver empties a CRD's storage through a finalizer before removing it.
        if let Some(plural) = old.pointer("/spec/names/plural").and_then(Value::as_str) {
            let group = old
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cr_gr = format!("{plural}.{group}");
            for o in store.list(&cr_gr, None) {
                let (ons, oname) = crate::store::key_of(&o);
                store.remove(&cr_gr, &ons, &oname);
            }
        }
    }
    Ok(gone)
}

/// Drops the owner references to `owner` from every object, so the garbage collector leaves
/// them alone.
fn orphan_dependents(store: &mut Store, owner: &Value) {
    let uid = meta_str(owner, "uid").to_string();
    for gr in store.group_resources() {
        for o in store.list(&gr, None) {
            let Some(refs) = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
            else {
                continue;
            };
            if !refs.iter().any(|r| r["uid"] == uid.as_str()) {
                continue;
            }
            let mut new = (*o).clone();
            let kept: Vec<Value> = refs
                .iter()
                .filter(|r| r["uid"] != uid.as_str())
                .cloned()
                .collect();
            let meta = obj_at(&mut new, "metadata");
            if kept.is_empty() {
                meta.remove("ownerReferences");
            } else {
                meta.insert("ownerReferences".into(), json!(kept));
            }
            store.commit(&gr, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtins;

    fn rt(plural: &str) -> ResourceType {
        builtins().into_iter().find(|t| t.plural == plural).unwrap()
    }

    fn store_with_default_ns() -> Store {
        let mut s = Store::new(1000);
        let opts = WriteOpts {
            manager: "test",
            dry_run: false,
            subresource: None,
        };
        create(
            &mut s,
            &rt("namespaces"),
            None,
            json!({"metadata": {"name": "default"}}),
            &opts,
        )
        .unwrap();
        s
    }

    fn deploy(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn a_no_op_reapply_keeps_resource_version_and_generation() {
        let mut s = store_with_default_ns();
        let d = rt("deployments");
        let opts = WriteOpts {
            manager: "kprov",
            dry_run: false,
            subresource: None,
        };
        let (first, created) = patch(
            &mut s,
            &d,
            Some("default"),
            "web",
            PatchType::Apply,
            deploy("a:1"),
            false,
            &opts,
        )
        .unwrap();
        assert!(created);
        assert_eq!(first["metadata"]["generation"], 1);
        assert_eq!(first["spec"]["replicas"], 1);
        assert_eq!(first["metadata"]["managedFields"][0]["operation"], "Apply");
        let (again, created) = patch(
            &mut s,
            &d,
            Some("default"),
            "web",
            PatchType::Apply,
            deploy("a:1"),
            false,
            &opts,
        )
        .unwrap();
        assert!(!created);
        assert_eq!(
            again["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        let (changed, _) = patch(
            &mut s,
            &d,
            Some("default"),
            "web",
            PatchType::Apply,
            deploy("a:2"),
            false,
            &opts,
        )
        .unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_ne!(
            changed["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn objects_in_a_missing_namespace_are_not_found_as_the_namespace() {
        let mut s = store_with_default_ns();
        let opts = WriteOpts {
            manager: "kprov",
            dry_run: false,
            subresource: None,
        };
        let mut d = deploy("a:1");
        d["metadata"]["namespace"] = json!("nope");
        let err = patch(
            &mut s,
            &rt("deployments"),
            Some("nope"),
            "web",
            PatchType::Apply,
            d,
            false,
            &opts,
        )
        .unwrap_err();
        assert_eq!(err.code, 404);
        assert_eq!(err.message, "namespaces \"nope\" not found");
    }

    #[test]
    fn status_sent_to_the_main_resource_is_ignored() {
        let mut s = store_with_default_ns();
        let opts = WriteOpts {
            manager: "kprov",
            dry_run: false,
            subresource: None,
        };
        let mut d = deploy("a:1");
        d["status"] = json!({"replicas": 9});
        let (obj, _) = patch(
            &mut s,
            &rt("deployments"),
            Some("default"),
            "web",
            PatchType::Apply,
            d,
            false,
            &opts,
        )
        .unwrap();
        assert!(obj.get("status").is_none());
    }

    #[test]
    fn secrets_fold_string_data_into_data() {
        let mut s = store_with_default_ns();
        let opts = WriteOpts {
            manager: "kprov",
            dry_run: false,
            subresource: None,
        };
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
        let obj = create(&mut s, &rt("secrets"), Some("default"), body, &opts).unwrap();
        assert_eq!(obj["data"]["k"], "dg==");
        assert!(obj.get("stringData").is_none());
    }

    fn apply(s: &mut Store, plural: &str, body: Value) -> Result<Arc<Value>, ApiError> {
        let opts = WriteOpts {
            manager: "kprov",
            dry_run: false,
            subresource: None,
        };
        let name = meta_str(&body, "name").to_string();
        patch(
            s,
            &rt(plural),
            Some("default"),
            &name,
            PatchType::Apply,
            body,
            true,
            &opts,
        )
        .map(|(o, _)| o)
    }

    #[test]
    fn a_service_reapplied_without_its_node_port_keeps_it_and_its_resource_version() {
        let mut s = store_with_default_ns();
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                         "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let first = apply(&mut s, "services", svc.clone()).unwrap();
        // As if the first apply had been in an earlier second than this one (the flake of
        // tests/deploy.rs: the re-apply wrote the Service again for its managedFields time).
        let mut earlier = (*first).clone();
        earlier["metadata"]["managedFields"][0]["time"] = json!("2020-01-01T00:00:00Z");
        let first = s.commit("services", earlier);
        let again = apply(&mut s, "services", svc).unwrap();
        assert_eq!(
            again["spec"]["ports"][0]["nodePort"],
            first["spec"]["ports"][0]["nodePort"]
        );
        assert_eq!(
            again["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        let taken = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"},
                           "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": first["spec"]["ports"][0]["nodePort"]}]}});
        let err = apply(&mut s, "services", taken).unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert!(
            err.message.ends_with("provided port is already allocated"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_jobs_pod_template_is_immutable() {
        let mut s = store_with_default_ns();
        let job = |image: &str| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": image}]}}}})
        };
        apply(&mut s, "jobs", job("a:1")).unwrap();
        apply(&mut s, "jobs", job("a:1")).expect("the same template again is fine");
        let err = apply(&mut s, "jobs", job("a:2")).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .starts_with("Job.batch \"j\" is invalid: spec.template: Invalid value: ")
        );
        assert!(err.message.ends_with(": field is immutable"));
    }

    #[test]
    fn foreground_deletion_keeps_the_object_until_the_collector_is_done() {
        let mut s = store_with_default_ns();
        let d = apply(&mut s, "deployments", deploy("a:1")).unwrap();
        let gone = delete(
            &mut s,
            &rt("deployments"),
            Some("default"),
            "web",
            false,
            Propagation::Foreground,
        )
        .unwrap();
        assert_eq!(
            gone["metadata"]["finalizers"],
            json!([FOREGROUND_FINALIZER])
        );
        assert!(gone["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(
            gone["metadata"]["generation"],
            d["metadata"]["generation"].as_i64().unwrap() + 1
        );
        assert!(s.get("deployments.apps", "default", "web").is_some());
    }

    #[test]
    fn an_undeclared_field_fails_the_apply_with_the_typed_patch_error() {
        let mut s = store_with_default_ns();
        let mut d = deploy("a:1");
        d["spec"]["replicaz"] = json!(2);
        let err = apply(&mut s, "deployments", d).unwrap_err();
        assert_eq!((err.code, err.reason), (500, ""));
        assert_eq!(
            err.message,
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.replicaz: field not declared in schema"
        );
    }
}
