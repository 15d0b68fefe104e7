//! HTTP routing: health, version, discovery, resource CRUD/patch/watch, subresources and the
//! double's own `/double/` control endpoints.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Shared;
use crate::errors::ApiError;
use crate::faults::{self, Fault};
use crate::ops::{self, PatchType, WriteOpts};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, EventType, Store};
use crate::util::{meta_str, parse_query};

pub type Body = BoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 16 << 20;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(v).expect("JSON values serialize")));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text_response(code: u16, text: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(full(text.into()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(e.code, &e.status_body());
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert("Retry-After", HeaderValue::from(secs));
    }
    resp
}

struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    content_type: String,
    accept: String,
    user_agent: String,
    body: Bytes,
}

impl Req {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("1" | "true" | "True"))
    }

    /// The field manager: the `fieldManager` parameter, else the user agent's program name.
    fn manager(&self) -> String {
        match self.param("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                let prog = self.user_agent.split('/').next().unwrap_or_default();
                if prog.is_empty() {
                    "unknown".into()
                } else {
                    prog.to_string()
                }
            }
        }
    }

    fn is_protobuf(&self) -> bool {
        self.content_type.contains("protobuf") || self.body.starts_with(b"k8s\0")
    }

    fn parse_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        if self.is_protobuf() {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "kube-double (a Kubernetes API double) does not decode protobuf request bodies, which \
                 kubectl's typed commands send (kubectl create <type>, kubectl run, kubectl expose); \
                 use kubectl apply or kubectl create -f with a manifest",
            ));
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            return Ok(v);
        }
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the request body: {e}"
            ))));
        }
    };
    if body.len() > MAX_BODY {
        return Ok(error_response(&ApiError::new(
            413,
            "RequestEntityTooLarge",
            "request entity too large",
        )));
    }
    let req = Req {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query()),
        content_type: header("content-type"),
        accept: header("accept"),
        user_agent: header("user-agent"),
        body,
    };
    let verbose = shared.config.verbose;
    let is_write = req.method != Method::GET;

    if !req.path.starts_with("/double") {
        let (latency, fault) = {
            let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
            faults::take(&mut f, req.method.as_str(), &req.path)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(e) = fault {
            eprintln!(
                "kube-double: {} {} -> {} (injected fault)",
                req.method, req.path, e.code
            );
            return Ok(error_response(&e));
        }
    }

    let resp = match route(&shared, &req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if verbose || is_write || resp.status().as_u16() >= 400 {
        let q = if req.query.is_empty() {
            String::new()
        } else {
            format!(
                "?{}",
                req.query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            )
        };
        eprintln!(
            "kube-double: {} {}{} -> {}",
            req.method,
            req.path,
            q,
            resp.status().as_u16()
        );
    }
    Ok(resp)
}

async fn route(shared: &Arc<Shared>, req: &Req) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz"] | ["livez"] | ["readyz"] => Ok(text_response(200, "ok")),
        ["healthz" | "livez" | "readyz", ..] => Ok(text_response(200, "ok")),
        ["version"] => Ok(json_response(200, &version())),
        ["double", rest @ ..] => control(shared, req, rest),
        ["api"] => Ok(json_response(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{}:6443", shared.config.advertise_ip)}],
            }),
        )),
        ["apis"] => Ok(json_response(200, &group_list(&lock(shared)))),
        ["apis", group] => {
            let store = lock(shared);
            let list = group_list(&store);
            list["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|g| g["name"] == *group))
                .map(|g| {
                    let mut g = g.clone();
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    json_response(200, &g)
                })
                .ok_or_else(ApiError::no_such_resource)
        }
        ["openapi", "v3"] => Ok(json_response(200, &openapi_root(&lock(shared)))),
        ["openapi", "v3", "api", "v1"] => openapi_gv(shared, "", "v1"),
        ["openapi", "v3", "apis", group, version] => openapi_gv(shared, group, version),
        ["api", "v1"] => resource_list(shared, "", "v1"),
        ["apis", group, version] => resource_list(shared, group, version),
        ["api", "v1", rest @ ..] => resource(shared, req, "", "v1", rest).await,
        ["apis", group, version, rest @ ..] => resource(shared, req, group, version, rest).await,
        _ => Ok(text_response(404, "404 page not found\n")),
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Store> {
    shared.store.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.1+kube-double",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T00:00:00Z",
        "goVersion": "kube-double (Rust)",
        "compiler": "kube-double",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = store
        .registry
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Result<Response<Body>, ApiError> {
    let store = lock(shared);
    let types = store.registry.in_group_version(group, version);
    if types.is_empty() {
        return Err(ApiError::no_such_resource());
    }
    let resources: Vec<Value> = types.iter().flat_map(|t| t.discovery_entries()).collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}

/// The OpenAPI v3 index. kubectl reads it to learn that the server validates fields itself
/// (`fieldValidation`), so it skips client-side schema validation; no schemas are served.
fn openapi_root(store: &Store) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in store.registry.groups() {
        for v in versions {
            let key = if group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{group}/{v}")
            };
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", store.rv())}),
            );
        }
    }
    json!({"paths": paths})
}

/// A group-version's OpenAPI v3 document: paths and operations (with the query parameters
/// the double honours), tagged with their group-version-kind; component schemas are empty.
fn openapi_gv(shared: &Shared, group: &str, version: &str) -> Result<Response<Body>, ApiError> {
    let store = lock(shared);
    let types = store.registry.in_group_version(group, version);
    if types.is_empty() {
        return Err(ApiError::no_such_resource());
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = serde_json::Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let op = |params: Vec<Value>, action: &str| {
            json!({
                "operationId": format!("{action}{}", t.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        if t.create_only {
            paths.insert(base, json!({"post": op(vec![param("dryRun"), param("fieldManager"), param("fieldValidation")], "post")}));
            continue;
        }
        paths.insert(base.clone(), json!({
            "get": op(vec![param("labelSelector"), param("fieldSelector"), param("watch"), param("resourceVersion")], "list"),
            "post": op(vec![param("dryRun"), param("fieldManager"), param("fieldValidation")], "post"),
            "delete": op(vec![param("labelSelector")], "deletecollection"),
        }));
        paths.insert(format!("{base}/{{name}}"), json!({
            "get": op(vec![], "get"),
            "put": op(vec![param("dryRun"), param("fieldManager"), param("fieldValidation")], "put"),
            "patch": op(vec![param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")], "patch"),
            "delete": op(vec![param("dryRun")], "delete"),
        }));
    }
    Ok(json_response(
        200,
        &json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (kube-double)", "version": "v1.33.1+kube-double"},
            "paths": paths,
            "components": {"schemas": {}},
        }),
    ))
}

/// The `/double/` endpoints: fault injection and a description of the double.
fn control(shared: &Shared, req: &Req, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let mut faults = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    let list = |f: &Vec<Fault>| json!({"faults": f.iter().map(Fault::to_json).collect::<Vec<_>>()});
    match (req.method.clone(), rest) {
        (Method::GET, ["faults"]) => Ok(json_response(200, &list(&faults))),
        (Method::POST, ["faults"]) => {
            let body = req.parse_body()?;
            let items = match body {
                Value::Array(a) => a,
                one => vec![one],
            };
            let parsed: Vec<Fault> = items
                .iter()
                .map(Fault::from_json)
                .collect::<Result<_, _>>()?;
            faults.extend(parsed);
            Ok(json_response(201, &list(&faults)))
        }
        (Method::DELETE, ["faults"]) => {
            faults.clear();
            Ok(json_response(200, &list(&faults)))
        }
        (Method::GET, []) => Ok(text_response(
            200,
            "kube-double: an in-memory Kubernetes API double for kprov's tests (not a real apiserver).\n\
             GET/POST/DELETE /double/faults manage injected faults; see tests/kube-double/README.md.\n",
        )),
        _ => Err(ApiError::no_such_resource()),
    }
}

/// Where a resource request points.
struct Target<'a> {
    rt: ResourceType,
    ns: Option<String>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn resolve<'a>(
    store: &Store,
    group: &str,
    version: &str,
    rest: &[&'a str],
) -> Result<Target<'a>, ApiError> {
    let find = |plural: &str| {
        store
            .registry
            .find(group, version, plural)
            .cloned()
            .ok_or_else(ApiError::no_such_resource)
    };
    // `/api/v1/namespaces/x/status` is the namespace's own subresource, not a collection.
    let ns_sub = group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    let (ns, rest): (Option<String>, &[&'a str]) =
        if rest.len() >= 3 && rest[0] == "namespaces" && !ns_sub {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_such_resource()),
    };
    let rt = find(plural)?;
    if ns.is_some() && !rt.namespaced {
        return Err(ApiError::no_such_resource());
    }
    if let Some(sub) = sub
        && !rt.has_sub(sub)
    {
        return Err(ApiError::no_such_resource());
    }
    if rt.namespaced && name.is_some() && ns.is_none() {
        return Err(ApiError::no_such_resource());
    }
    Ok(Target { rt, ns, name, sub })
}

/// Sets apiVersion/kind for the version the client asked for (CRDs can serve several).
fn present(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    v["apiVersion"] = json!(rt.api_version());
    v["kind"] = json!(rt.kind);
    v
}

/// A list item: built-in lists carry no kind and apiVersion in their items (the typed
/// list's items are bare structs); custom resource lists are unstructured and keep them.
fn list_item(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = present(rt, obj);
    if !rt.custom
        && let Some(m) = v.as_object_mut()
    {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

/// What a DELETE answers: the object while it is still there (finalizers, foreground
/// deletion, a Terminating namespace), and for pods and custom resources (whose storage
/// returns the deleted object); otherwise a `Success` Status naming what went.
fn deleted(rt: &ResourceType, obj: &Value, still_there: bool) -> Value {
    if still_there || rt.custom || (rt.group.is_empty() && rt.plural == "pods") {
        return present(rt, obj);
    }
    let mut details =
        json!({"name": meta_str(obj, "name"), "kind": rt.plural, "uid": meta_str(obj, "uid")});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// `propagationPolicy` from the query or from a DeleteOptions body.
fn propagation(req: &Req) -> Result<ops::Propagation, ApiError> {
    let from_body = if req.body.is_empty() {
        None
    } else {
        req.parse_body()?["propagationPolicy"]
            .as_str()
            .map(String::from)
    };
    ops::Propagation::parse(req.param("propagationPolicy").or(from_body.as_deref()))
}

async fn resource(
    shared: &Arc<Shared>,
    req: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let target = {
        let store = lock(shared);
        // A group-version nobody serves is not an API path at all: the apiserver's plain 404.
        if store.registry.in_group_version(group, version).is_empty() {
            return Ok(text_response(404, "404 page not found\n"));
        }
        resolve(&store, group, version, rest)?
    };
    let Target { rt, ns, name, sub } = target;
    let ns = ns.as_deref();
    let manager = req.manager();
    let dry_run = req.param("dryRun").is_some_and(|v| v == "All");

    match (&req.method, name, sub) {
        (&Method::GET, None, None) if req.flag("watch") => watch(shared, req, rt, ns).await,
        (&Method::GET, None, None) => list(shared, req, &rt, ns),
        (&Method::GET, Some(name), None) | (&Method::GET, Some(name), Some("status")) => {
            let store = lock(shared);
            let obj = present(&rt, &*ops::get(&store, &rt, ns, name)?);
            if wants_table(&req.accept) {
                let columns = printer_columns(&store, &rt);
                let table =
                    crate::table::table(&rt, &[obj], &store.rv().to_string(), columns.as_ref());
                return Ok(table_response(table));
            }
            Ok(json_response(200, &obj))
        }
        (&Method::GET, Some(name), Some("scale")) => {
            let obj = ops::get(&lock(shared), &rt, ns, name)?;
            Ok(json_response(200, &scale_of(&rt, &obj)))
        }
        (&Method::GET, Some(name), Some("log")) => {
            let obj = ops::get(&lock(shared), &rt, ns, name)?;
            let text = crate::controller::pod_logs(
                shared,
                &obj,
                req.param("container"),
                req.param("previous") == Some("true"),
            )?;
            let text = match req.param("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    let start = lines.len().saturating_sub(n);
                    lines[start..].iter().map(|l| format!("{l}\n")).collect()
                }
                None => text,
            };
            Ok(text_response(200, text))
        }
        (&Method::POST, Some(name), Some("token")) => {
            let body = req.parse_body()?;
            let store = lock(shared);
            let token = crate::token::request(&store, &rt, ns.unwrap_or(""), name, &body)?;
            Ok(json_response(201, &token))
        }
        (&Method::POST, None, None) => {
            if rt.create_only {
                // kubectl auth can-i posts protobuf; every review gets the same answer anyway.
                let body = if req.is_protobuf() {
                    json!({})
                } else {
                    req.parse_body()?
                };
                return Ok(json_response(201, &review(&rt, body)));
            }
            let body = req.parse_body()?;
            let mut store = lock(shared);
            let obj = ops::create(
                &mut store,
                &rt,
                ns,
                body,
                &WriteOpts {
                    manager: &manager,
                    dry_run,
                    subresource: None,
                },
            )?;
            Ok(json_response(201, &present(&rt, &obj)))
        }
        (&Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            let body = req.parse_body()?;
            let sub = sub.filter(|s| *s == "status");
            let mut store = lock(shared);
            let obj = ops::replace(
                &mut store,
                &rt,
                ns,
                name,
                body,
                &WriteOpts {
                    manager: &manager,
                    dry_run,
                    subresource: sub,
                },
            )?;
            Ok(json_response(200, &present(&rt, &obj)))
        }
        (&Method::PUT | &Method::PATCH, Some(name), Some("scale")) => {
            let body = req.parse_body()?;
            let mut store = lock(shared);
            let obj = ops::get(&store, &rt, ns, name)?;
            let mut scale = scale_of(&rt, &obj);
            if req.method == Method::PUT {
                scale = body;
            } else {
                match PatchType::from_content_type(&req.content_type) {
                    Some(PatchType::Json) => crate::patch::json_patch(&mut scale, &body)?,
                    Some(PatchType::Strategic | PatchType::Merge) => {
                        crate::patch::merge_patch(&mut scale, &body)
                    }
                    Some(PatchType::Apply) => crate::patch::apply_merge(&mut scale, &body),
                    None => return Err(ApiError::unsupported_media_type(&req.content_type)),
                }
            }
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let path = rt
                .scale_paths
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_else(|| ".spec.replicas".into());
            let mut patch = json!({});
            let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
            let mut cur = &mut patch;
            for k in &keys[..keys.len() - 1] {
                cur = &mut cur[*k];
            }
            cur[keys[keys.len() - 1]] = json!(replicas);
            let (obj, _) = ops::patch(
                &mut store,
                &rt,
                ns,
                name,
                PatchType::Merge,
                patch,
                false,
                &WriteOpts {
                    manager: &manager,
                    dry_run,
                    subresource: Some("scale"),
                },
            )?;
            Ok(json_response(200, &scale_of(&rt, &obj)))
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let patch_type = PatchType::from_content_type(&req.content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&req.content_type))?;
            let body = req.parse_body()?;
            if patch_type == PatchType::Apply && req.param("fieldManager").is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
                ));
            }
            let force = req.flag("force");
            let mut store = lock(shared);
            let (obj, created) = ops::patch(
                &mut store,
                &rt,
                ns,
                name,
                patch_type,
                body,
                force,
                &WriteOpts {
                    manager: &manager,
                    dry_run,
                    subresource: sub,
                },
            )?;
            Ok(json_response(
                if created { 201 } else { 200 },
                &present(&rt, &obj),
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let policy = propagation(req)?;
            let mut store = lock(shared);
            let obj = ops::delete(&mut store, &rt, ns, name, dry_run, policy)?;
            let still_there = store
                .get(&rt.group_resource(), ns.unwrap_or(""), name)
                .is_some();
            Ok(json_response(
                200,
                &deleted(&rt, &obj, still_there || dry_run),
            ))
        }
        (&Method::DELETE, None, None) => {
            let label = LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?;
            let field = FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))?;
            let policy = propagation(req)?;
            let mut store = lock(shared);
            let victims: Vec<String> = store
                .list(&rt.group_resource(), ns)
                .iter()
                .filter(|o| label.matches(o) && field.matches(o))
                .map(|o| meta_str(o, "name").to_string())
                .collect();
            let mut items = vec![];
            for name in victims {
                items.push(list_item(
                    &rt,
                    &*ops::delete(&mut store, &rt, ns, &name, dry_run, policy)?,
                ));
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": store.rv().to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            req.method, req.path
        ))),
    }
}

fn review(rt: &ResourceType, mut body: Value) -> Value {
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    body["status"] = match rt.kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" => {
            json!({"allowed": true, "reason": "kube-double allows every request"})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "SelfSubjectReview" => {
            json!({"userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]}})
        }
        _ => json!({"authenticated": false, "error": "kube-double does not review tokens"}),
    };
    body
}

fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let (spec_path, status_path, selector_path) = rt
        .scale_paths
        .clone()
        .unwrap_or_else(|| (".spec.replicas".into(), ".status.replicas".into(), None));
    let at = |p: &str| crate::util::get_path(obj, p.trim_start_matches('.')).cloned();
    let selector = match selector_path {
        Some(p) => at(&p)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        None => obj
            .pointer("/spec/selector")
            .map(|s| {
                if s.is_string() {
                    s.as_str().unwrap_or_default().to_string()
                } else {
                    LabelSelector::from_object(s).to_text()
                }
            })
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta_str(obj, "name"),
            "namespace": meta_str(obj, "namespace"),
            "uid": meta_str(obj, "uid"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
            "creationTimestamp": meta_str(obj, "creationTimestamp"),
        },
        "spec": {"replicas": at(&spec_path).and_then(|v| v.as_i64()).unwrap_or(0)},
        "status": {"replicas": at(&status_path).and_then(|v| v.as_i64()).unwrap_or(0), "selector": selector},
    })
}

fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn list(
    shared: &Shared,
    req: &Req,
    rt: &ResourceType,
    ns: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let label = LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?;
    let field = FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))?;
    let store = lock(shared);
    let items: Vec<Value> = store
        .list(&rt.group_resource(), ns)
        .iter()
        .filter(|o| label.matches(o) && field.matches(o))
        .map(|o| list_item(rt, o))
        .collect();
    let rv = store.rv().to_string();
    let columns = printer_columns(&store, rt);
    drop(store);
    if wants_table(&req.accept) {
        return Ok(table_response(crate::table::table(
            rt,
            &items,
            &rv,
            columns.as_ref(),
        )));
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
    ))
}

/// A CRD version's additionalPrinterColumns, for custom resources.
fn printer_columns(store: &Store, rt: &ResourceType) -> Option<Value> {
    let crd = store.get(crate::store::CRD_GR, "", &rt.group_resource())?;
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == rt.version.as_str())
        .and_then(|v| v.get("additionalPrinterColumns").cloned())
}

fn table_response(v: Value) -> Response<Body> {
    let mut resp = json_response(200, &v);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    resp
}

struct WatchFilter {
    gr: String,
    ns: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == ns)
            && self.label.matches(obj)
            && self.field.matches(obj)
    }

    /// The event a watcher sees, with selector transitions turned into ADDED/DELETED.
    fn event(&self, c: &Change) -> Option<(&'static str, Arc<Value>)> {
        if c.gr != self.gr {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.prev.as_ref().is_some_and(|p| self.matches(p));
        match c.typ {
            EventType::Added if now => Some(("ADDED", c.object.clone())),
            EventType::Deleted if before || now => Some(("DELETED", c.object.clone())),
            EventType::Modified => match (before, now) {
                (true, true) => Some(("MODIFIED", c.object.clone())),
                (false, true) => Some(("ADDED", c.object.clone())),
                (true, false) => Some(("DELETED", c.object.clone())),
                (false, false) => None,
            },
            _ => None,
        }
    }
}

fn watch_line(typ: &str, obj: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": typ, "object": obj})).expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}

async fn watch(
    shared: &Arc<Shared>,
    req: &Req,
    rt: ResourceType,
    ns: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let filter = WatchFilter {
        gr: rt.group_resource(),
        ns: ns.map(String::from),
        label: LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?,
        field: FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))?,
    };
    // `kubectl get -w` asks for Tables: each event then carries a one-row Table.
    let table_columns = wants_table(&req.accept).then(|| printer_columns(&lock(shared), &rt));
    let bookmarks = req.flag("allowWatchBookmarks");
    let send_initial = req.flag("sendInitialEvents");
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let requested = req.param("resourceVersion").unwrap_or("");
    let requested_rv: Option<u64> = match requested {
        "" | "0" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?,
        ),
    };

    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let (mut cursor, initial, mut notify) = {
        let store = lock(shared);
        let notify = store.subscribe();
        match requested_rv {
            Some(rv) if !send_initial => {
                if rv < store.compacted() {
                    let e = ApiError::gone(rv, store.compacted() + 1);
                    let line = watch_line("ERROR", &e.status_body());
                    let _ = tx.try_send(Ok(Frame::data(line)));
                    drop(tx);
                    return Ok(stream_response(rx));
                }
                (rv, vec![], notify)
            }
            _ => {
                let items: Vec<Value> = store
                    .list(&filter.gr, filter.ns.as_deref())
                    .iter()
                    .filter(|o| filter.matches(o))
                    .map(|o| present(&rt, o))
                    .collect();
                (store.rv(), items, notify)
            }
        }
    };
    let shared = shared.clone();
    let table_rt = rt.clone();
    let as_table = move |obj: &Value| -> Value {
        match &table_columns {
            Some(columns) => {
                let rv = meta_str(obj, "resourceVersion").to_string();
                crate::table::table(&table_rt, std::slice::from_ref(obj), &rv, columns.as_ref())
            }
            None => obj.clone(),
        }
    };
    let bookmark_every = shared.config.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        for obj in &initial {
            if tx
                .send(Ok(Frame::data(watch_line("ADDED", &as_table(obj)))))
                .await
                .is_err()
            {
                return;
            }
        }
        let bookmark = |rv: u64, end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            watch_line(
                "BOOKMARK",
                &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}),
            )
        };
        if send_initial
            && bookmarks
            && tx
                .send(Ok(Frame::data(bookmark(cursor, true))))
                .await
                .is_err()
        {
            return;
        }
        let mut next_bookmark = tokio::time::Instant::now() + bookmark_every;
        loop {
            let changes = {
                let store = lock(&shared);
                match store.changes_after(cursor) {
                    Ok(c) => Ok((c, store.rv())),
                    Err(compacted) => Err(compacted),
                }
            };
            match changes {
                Ok((changes, rv)) => {
                    for c in &changes {
                        if let Some((typ, obj)) = filter.event(c)
                            && tx
                                .send(Ok(Frame::data(watch_line(
                                    typ,
                                    &as_table(&present(&rt, &obj)),
                                ))))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                    cursor = rv;
                }
                Err(compacted) => {
                    let e = ApiError::gone(cursor, compacted + 1);
                    let _ = tx
                        .send(Ok(Frame::data(watch_line("ERROR", &e.status_body()))))
                        .await;
                    return;
                }
            }
            tokio::select! {
                changed = notify.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(next_bookmark) => {
                    next_bookmark = tokio::time::Instant::now() + bookmark_every;
                    if bookmarks && tx.send(Ok(Frame::data(bookmark(cursor, false)))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(stream_response(rx))
}

fn stream_response(rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>) -> Response<Body> {
    let stream = futures_lite_stream(rx);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An mpsc receiver as a `Stream`, without pulling in tokio-stream.
fn futures_lite_stream(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    struct RxStream(mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);
    impl futures_core::Stream for RxStream {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    let _ = &mut rx;
    RxStream(rx)
}
