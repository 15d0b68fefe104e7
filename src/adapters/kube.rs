//! The Kubernetes API in kprov's vocabulary. The only file that imports `kube` or `k8s-openapi`.
//!
//! Objects cross this seam as [`Object`]s (plain JSON with a note of where they came from), so
//! the tasks above never see a kube-rs type. Kinds are resolved through discovery, one
//! group/version at a time, and cached until [`Kube::forget_kinds`] (called after CRDs become
//! Established). kube-rs's own retry layer is switched off: retries of 429, 5xx and conflicts
//! are kprov's ([`KubeError::is_transient`]), so they are visible and bounded in one place.

use std::{
    collections::HashMap,
    fmt,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::{
    Client, Config,
    api::{
        Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
    },
    config::{KubeConfigOptions, Kubeconfig},
    core::{ApiResource, GroupVersionKind},
    discovery::{Scope, pinned_kind},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::Value;

/// The field manager of every server-side apply kprov makes.
pub const FIELD_MANAGER: &str = "kprov";

/// A Kubernetes object as JSON, with where it came from (a manifest file, "generated TLS"...).
/// Its `Debug` output never shows a Secret's contents.
#[derive(Clone, PartialEq)]
pub struct Object {
    pub value: Value,
    /// For error messages: `manifests/postgres.yaml:12` (the document's first line).
    pub origin: String,
    /// The YAML text it was parsed from, so an error the server finds in a field can be
    /// located in the manifest (`None` for objects kprov made itself).
    pub source: Option<ObjectSource>,
}

/// The text of the YAML document an object was parsed from, and the line of its file that
/// the text starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSource {
    pub text: Arc<str>,
    pub first_line: usize,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Object");
        d.field("origin", &self.origin);
        if self.kind() == "Secret" {
            d.field("ref", &self.object_ref().to_string())
                .field("value", &"<secret: contents not shown>")
        } else {
            d.field("value", &self.value)
        }
        .finish()
    }
}

impl Object {
    pub fn new(value: Value, origin: impl Into<String>) -> Self {
        Object {
            value,
            origin: origin.into(),
            source: None,
        }
    }

    /// The object with the YAML text it was parsed from, which starts on the file's line
    /// `first_line` (see [`Object::source`]).
    pub fn with_source(mut self, text: Arc<str>, first_line: usize) -> Self {
        self.source = Some(ObjectSource { text, first_line });
        self
    }

    fn str_at(&self, pointer: &str) -> &str {
        self.value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion")
    }
    pub fn kind(&self) -> &str {
        self.str_at("/kind")
    }
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
    pub fn resource_version(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
    }
    pub fn uid(&self) -> Option<&str> {
        self.value.pointer("/metadata/uid").and_then(Value::as_str)
    }
    /// Any field by JSON pointer (`/status/readyReplicas`).
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.value.pointer(pointer)
    }
    /// Sets `metadata.namespace` when the object has none.
    pub fn default_namespace(&mut self, namespace: &str) {
        if self.namespace().is_none()
            && let Some(meta) = self
                .value
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), Value::String(namespace.into()));
        }
    }
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version().into(),
            kind: self.kind().into(),
            namespace: self.namespace().map(str::to_owned),
            name: self.name().into(),
        }
    }
}

/// Names one object: its type, namespace (none for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `Deployment kubernaut-system/datastorage`, `CustomResourceDefinition foo.example.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What went wrong talking to the API, classified by what the server means.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{context}: {message}")]
pub struct KubeError {
    /// What kprov was doing: `apply Deployment ns/x`.
    pub context: String,
    pub message: String,
    /// The HTTP status, when the API answered.
    pub code: Option<u16>,
    /// The API's machine-readable reason (`Conflict`, `TooManyRequests`, `NotFound`...).
    pub reason: String,
    /// The field the server blamed (`.spec.replicaz`, `spec.template`), when it named one.
    pub field: Option<String>,
    transient: bool,
    /// A 422 for changing a field that cannot change once set (a Job's pod template).
    immutable: bool,
}

/// The server's words for an applied field its schema does not have (a 500 on server-side
/// apply, whatever `fieldValidation` says; ../shared/reference/apiserver 09-11, 40).
const UNDECLARED_FIELD: &str = ": field not declared in schema";

impl KubeError {
    fn new(context: impl Into<String>, message: impl Into<String>, transient: bool) -> Self {
        KubeError {
            context: context.into(),
            message: message.into(),
            code: None,
            reason: String::new(),
            field: None,
            transient,
            immutable: false,
        }
    }

    fn from_kube(context: impl Into<String>, e: kube::Error) -> Self {
        let context = context.into();
        match e {
            kube::Error::Api(status) => KubeError::from_status(context, &status),
            // Connection refused/reset and timeouts: the API server may be starting or busy.
            e @ (kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::ReadEvents(_)) => KubeError::new(context, chain(&e), true),
            e => KubeError::new(context, chain(&e), false),
        }
    }

    /// Classifies an answer by what the server means, not by its status code alone.
    fn from_status(context: String, status: &kube::core::Status) -> Self {
        let code = status.code;
        let causes = status
            .details
            .as_ref()
            .map(|d| d.causes.as_slice())
            .unwrap_or_default();
        let cause = |reason: &str| causes.iter().find(|c| c.reason == reason);
        let said = if status.message.is_empty() {
            format!("the API answered {code} {}", status.reason)
        } else {
            format!("the API answered {code}: {}", status.message)
        };
        let mut field = causes
            .iter()
            .map(|c| c.field.clone())
            .find(|f| !f.is_empty());
        let undeclared = undeclared_fields(&status.message);
        let (transient, message) = if let Some(path) = undeclared.first() {
            field = Some(path.clone());
            let fields: Vec<String> = undeclared.iter().map(|f| format!("`{f}`")).collect();
            let message = format!(
                "the server's schema has no field {} (misspelt, or not in this API version): \
                 the API answered {code}: {}",
                fields.join(", "),
                status.message.replace('\n', " ")
            );
            (false, message)
        } else if let Some(c) = cause("FieldManagerConflict") {
            let manager = c.message.trim_start_matches("conflict with ");
            let message = format!(
                "field `{}` is managed by {manager}, another field manager: apply with force \
                 or drop the field from one of them ({said})",
                c.field
            );
            (false, message)
        } else if let Some(c) = cause("NamespaceTerminating") {
            let message = format!(
                "{}: wait until the namespace is gone (`kubectl get namespace`), or choose \
                 another namespace ({said})",
                c.message
            );
            (false, message)
        } else if code >= 500 && status.message.contains("failed calling webhook") {
            // A webhook whose Service is not serving yet may recover; one whose caBundle cannot
            // be read never will (the server accepted the configuration: 47, 48).
            let broken = ["certificate", "x509", "PEM"]
                .iter()
                .any(|w| status.message.contains(w));
            let message = if broken {
                format!("{said} (check the webhook configuration's caBundle)")
            } else {
                said
            };
            (!broken, message)
        } else {
            // 429 (throttled), other 5xx (server trouble) and other 409s (a conflicting writer).
            (code == 429 || code == 409 || code >= 500, said)
        };
        let immutable = code == 422
            && causes
                .iter()
                .any(|c| c.message.ends_with("field is immutable"));
        KubeError {
            context,
            message,
            code: Some(code),
            reason: status.reason.clone(),
            field,
            transient,
            immutable,
        }
    }

    /// An error kprov itself decides on (not an API answer); never retried.
    pub fn fatal(context: impl Into<String>, message: impl Into<String>) -> Self {
        KubeError::new(context, message, false)
    }

    /// Worth retrying: 429, 5xx (other than the permanent ones), conflicts between writers and
    /// connection failures.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    pub fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }

    /// The server refused to change a field that is immutable once set: only deleting and
    /// creating the object again can apply the new one.
    pub fn is_immutable(&self) -> bool {
        self.immutable
    }
}

/// The field paths of "failed to create typed patch object (ns/x; apps/v1, Kind=Deployment):
/// .spec.replicaz: field not declared in schema", or of its several-line form ("…: errors:\n
/// .a: field not declared in schema\n  .b: field not declared in schema").
fn undeclared_fields(message: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|line| {
            let head = &line[..line.find(UNDECLARED_FIELD)?];
            let start = head.rfind("): ").map_or(0, |i| i + 3);
            let path = head[start..].trim();
            (!path.is_empty()).then(|| path.to_owned())
        })
        .collect()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = inner.source();
    }
    s
}

#[derive(Clone)]
struct Kind {
    resource: ApiResource,
    namespaced: bool,
}

/// A connection to one cluster, with a cache of resolved kinds.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    default_namespace: String,
    server: String,
    kinds: Arc<Mutex<HashMap<(String, String), Kind>>>,
}

impl fmt::Debug for Kube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kube")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Kube {
    /// Connects through a kubeconfig file (default: $KUBECONFIG, else ~/.kube/config) and a
    /// context (default: its current context). No request is made yet.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Kube, KubeError> {
        let what = match kubeconfig {
            Some(p) => format!("load kubeconfig {}", p.display()),
            None => "load the default kubeconfig".to_string(),
        };
        let file = match kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| KubeError::new(&what, chain(&e), false))?;
        if let Some(ctx) = context
            && !file.contexts.iter().any(|c| c.name == ctx)
        {
            let known: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();
            return Err(KubeError::new(
                &what,
                format!("no context {ctx:?} in it (contexts: {})", known.join(", ")),
                false,
            ));
        }
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let mut config = Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| KubeError::new(&what, chain(&e), false))?;
        config.default_retry = false;
        // kube-rs's read timeout (295 s) already outlasts its watches' server-side timeout.
        config.connect_timeout = Some(Duration::from_secs(10));
        let server = config.cluster_url.to_string();
        let default_namespace = config.default_namespace.clone();
        let client = Client::try_from(config)
            .map_err(|e| KubeError::from_kube(format!("connect to {server}"), e))?;
        Ok(Kube {
            client,
            default_namespace,
            server,
            kinds: Arc::default(),
        })
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The namespace of the kubeconfig context (`default` when it names none).
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// The server's version (`v1.33.1`): a cheap liveness check.
    pub async fn version(&self) -> Result<String, KubeError> {
        let info =
            self.client.apiserver_version().await.map_err(|e| {
                KubeError::from_kube(format!("ask {} for its version", self.server), e)
            })?;
        Ok(info.git_version)
    }

    async fn kind(&self, api_version: &str, kind: &str) -> Result<Kind, KubeError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(k) = self.kinds.lock().expect("kind cache").get(&key) {
            return Ok(k.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = pinned_kind(&self.client, &gvk).await.map_err(|e| {
            let mut err = KubeError::from_kube(format!("resolve kind {kind} ({api_version})"), e);
            if err.code == Some(404)
                || matches!(err.reason.as_str(), "NotFound")
                || err.message.contains("not found")
            {
                err.message = format!(
                    "the cluster does not serve {kind} in {api_version} (is its CRD installed?)"
                );
                err.transient = false;
            }
            err
        })?;
        let k = Kind {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        };
        self.kinds
            .lock()
            .expect("kind cache")
            .insert(key, k.clone());
        Ok(k)
    }

    /// Drops every resolved kind, so the next use sees kinds added since (new CRDs).
    pub fn forget_kinds(&self) {
        self.kinds.lock().expect("kind cache").clear();
    }

    /// Whether a kind is namespaced (resolving it through discovery).
    pub async fn is_namespaced(&self, api_version: &str, kind: &str) -> Result<bool, KubeError> {
        Ok(self.kind(api_version, kind).await?.namespaced)
    }

    async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Api<DynamicObject>, Kind), KubeError> {
        let k = self.kind(api_version, kind).await?;
        let api = if k.namespaced {
            let ns = namespace.unwrap_or(&self.default_namespace);
            Api::namespaced_with(self.client.clone(), ns, &k.resource)
        } else {
            Api::all_with(self.client.clone(), &k.resource)
        };
        Ok((api, k))
    }

    /// Server-side apply, field manager `kprov`, forced. Returns the object as stored.
    pub async fn apply(&self, obj: &Object) -> Result<Object, KubeError> {
        let r = obj.object_ref();
        let what = format!("apply {r} (from {})", obj.origin);
        if r.name.is_empty() || r.kind.is_empty() || r.api_version.is_empty() {
            return Err(KubeError::new(
                what,
                "the object needs apiVersion, kind and metadata.name",
                false,
            ));
        }
        let (api, kind) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await
            .map_err(|mut e| {
                e.context = what.clone();
                e
            })?;
        // Strict: a duplicate or unknown field is an error, never silently dropped.
        let params = PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict();
        let stored = if !kind.namespaced && r.namespace.is_some() {
            // A namespace defaulted onto a cluster-scoped object means nothing: drop it.
            let mut body = obj.value.clone();
            if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("namespace");
            }
            api.patch(&r.name, &params, &Patch::Apply(&body)).await
        } else {
            api.patch(&r.name, &params, &Patch::Apply(&obj.value)).await
        }
        .map_err(|e| KubeError::from_kube(&what, e))?;
        to_object(stored, &obj.origin, &kind)
    }

    /// Sets a workload's replicas through its `scale` subresource, so the fields kprov applied
    /// stay as they are (a partial server-side apply by the same manager would remove them).
    pub async fn scale(&self, r: &ObjectRef, replicas: i32) -> Result<(), KubeError> {
        let (api, _) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await?;
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        api.patch_scale(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::from_kube(format!("scale {r} to {replicas}"), e))?;
        Ok(())
    }

    /// Deletes an object with foreground propagation: it stays, with a `deletionTimestamp`,
    /// until its dependents (a Job's pods) are gone. An absent object is not an error.
    pub async fn delete_foreground(&self, r: &ObjectRef) -> Result<(), KubeError> {
        let (api, _) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await?;
        match api.delete(&r.name, &DeleteParams::foreground()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(KubeError::from_kube(format!("delete {r}"), e)),
        }
    }

    /// Sets an object's status through its `/status` subresource (server-side apply as
    /// `kprov`, forced): a main-resource apply never changes status on a real server.
    pub async fn apply_status(&self, r: &ObjectRef, status: &Value) -> Result<Object, KubeError> {
        let (api, kind) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await?;
        let body = serde_json::json!({
            "apiVersion": r.api_version, "kind": r.kind,
            "metadata": {"name": r.name}, "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let stored = api
            .patch_subresource("status", &r.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| KubeError::from_kube(format!("set the status of {r}"), e))?;
        to_object(stored, "cluster", &kind)
    }

    /// Restarts a workload's rollout as `kubectl rollout restart` does: a merge patch of the
    /// pod template's `kubectl.kubernetes.io/restartedAt` annotation (no field kprov applied
    /// is touched).
    pub async fn restart_rollout(&self, r: &ObjectRef, at: &str) -> Result<(), KubeError> {
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}});
        self.merge_patch_as(r, &patch, || format!("restart the rollout of {r}"))
            .await
    }

    /// A JSON merge patch of an object someone else owns (as `kubectl patch --type merge`):
    /// only the fields in `patch` change, and none becomes kprov's to apply.
    pub async fn merge_patch(&self, r: &ObjectRef, patch: &Value) -> Result<(), KubeError> {
        self.merge_patch_as(r, patch, || format!("patch {r}")).await
    }

    /// [`Kube::merge_patch`], its errors naming the change as `what` does.
    async fn merge_patch_as(
        &self,
        r: &ObjectRef,
        patch: &Value,
        what: impl FnOnce() -> String,
    ) -> Result<(), KubeError> {
        let (api, _) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await?;
        api.patch(&r.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| KubeError::from_kube(what(), e))?;
        Ok(())
    }

    /// A token for a ServiceAccount (the TokenRequest API), for `audiences` and `seconds`.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
        seconds: i64,
    ) -> Result<String, KubeError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": seconds},
        });
        let what = format!("request a token for ServiceAccount {namespace}/{name}");
        let answer: Value = api
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .map_err(|e| KubeError::from_kube(&what, e))?;
        answer
            .pointer("/status/token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| KubeError::fatal(what, "the answer has no status.token"))
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(&self, r: &ObjectRef) -> Result<Option<Object>, KubeError> {
        let (api, kind) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await?;
        let found = api
            .get_opt(&r.name)
            .await
            .map_err(|e| KubeError::from_kube(format!("get {r}"), e))?;
        found.map(|o| to_object(o, "cluster", &kind)).transpose()
    }

    /// Objects of a kind, in one namespace (or all, for `None`), optionally by label selector.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Object>, KubeError> {
        let k = self.kind(api_version, kind).await?;
        let api: Api<DynamicObject> = match namespace {
            Some(ns) if k.namespaced => Api::namespaced_with(self.client.clone(), ns, &k.resource),
            _ => Api::all_with(self.client.clone(), &k.resource),
        };
        let mut params = ListParams::default();
        if let Some(sel) = label_selector {
            params = params.labels(sel);
        }
        let where_ = namespace.map(|n| format!(" in {n}")).unwrap_or_default();
        let list = api
            .list(&params)
            .await
            .map_err(|e| KubeError::from_kube(format!("list {kind}{where_}"), e))?;
        list.items
            .into_iter()
            .map(|o| to_object(o, "cluster", &k))
            .collect()
    }

    /// Every state of one object as the watch sees it: `Some(obj)` on each change, `None` when
    /// it is absent. Watch errors are yielded (then retried with backoff), never end the stream.
    pub async fn watch(
        &self,
        r: &ObjectRef,
    ) -> Result<impl Stream<Item = Result<Option<Object>, KubeError>> + Send + use<>, KubeError>
    {
        let (api, kind) = self
            .api(&r.api_version, &r.kind, r.namespace.as_deref())
            .await?;
        let what = format!("watch {r}");
        let stream = watcher::watch_object(api, &r.name)
            .backoff(watcher::DefaultBackoff::default())
            .map(move |item| match item {
                Ok(Some(o)) => to_object(o, "cluster", &kind).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(KubeError::new(&what, chain(&e), true)),
            });
        Ok(stream)
    }

    /// The set of objects of a kind in a namespace matching a label selector, as it changes:
    /// a full snapshot after the initial list and after each change. Errors are yielded (then
    /// retried with backoff), never end the stream.
    pub async fn watch_list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        label_selector: &str,
    ) -> Result<impl Stream<Item = Result<Vec<Object>, KubeError>> + Send + use<>, KubeError> {
        let (api, k) = self.api(api_version, kind, Some(namespace)).await?;
        let what = format!("watch {kind} in {namespace} labelled {label_selector}");
        let config = watcher::Config::default().labels(label_selector);
        // The objects by uid; `pending` is the next initial listing while it is being built.
        let mut current: std::collections::BTreeMap<String, Object> = Default::default();
        let mut pending: Option<std::collections::BTreeMap<String, Object>> = None;
        let stream = watcher::watcher(api, config)
            .backoff(watcher::DefaultBackoff::default())
            .filter_map(move |event| {
                let out = match event {
                    Ok(watcher::Event::Init) => {
                        pending = Some(Default::default());
                        None
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        if let (Some(p), Ok(o)) = (pending.as_mut(), to_object(o, "cluster", &k)) {
                            p.insert(o.uid().unwrap_or(o.name()).to_owned(), o);
                        }
                        None
                    }
                    Ok(watcher::Event::InitDone) => {
                        current = pending.take().unwrap_or_default();
                        Some(Ok(current.values().cloned().collect()))
                    }
                    Ok(watcher::Event::Apply(o)) => to_object(o, "cluster", &k).ok().map(|o| {
                        current.insert(o.uid().unwrap_or(o.name()).to_owned(), o);
                        Ok(current.values().cloned().collect())
                    }),
                    Ok(watcher::Event::Delete(o)) => to_object(o, "cluster", &k).ok().map(|o| {
                        current.remove(o.uid().unwrap_or(o.name()));
                        Ok(current.values().cloned().collect())
                    }),
                    Err(e) => Some(Err(KubeError::new(&what, chain(&e), true))),
                };
                futures::future::ready(out)
            });
        Ok(stream)
    }

    /// The last `tail_lines` lines of a container's log (`previous`: of its last terminated run).
    pub async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        tail_lines: i64,
        previous: bool,
    ) -> Result<String, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_owned()),
            tail_lines: Some(tail_lines),
            previous,
            ..Default::default()
        };
        api.logs(pod, &params).await.map_err(|e| {
            KubeError::from_kube(
                format!("read logs of {namespace}/{pod} container {container}"),
                e,
            )
        })
    }
}

/// An object the API returned, typed by what kprov asked for: items of a list of a built-in
/// kind carry no `kind` or `apiVersion` (../shared/reference/apiserver 14, 19, 25), so nothing
/// may be judged on what an item happens to carry.
fn to_object(o: DynamicObject, origin: &str, kind: &Kind) -> Result<Object, KubeError> {
    let mut value = serde_json::to_value(o)
        .map_err(|e| KubeError::new("read an object from the API", e.to_string(), false))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::String(kind.resource.api_version.clone()),
        );
        map.insert("kind".into(), Value::String(kind.resource.kind.clone()));
    }
    Ok(Object::new(value, origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_ref_names_namespaced_and_cluster_objects_like_kubectl() {
        let d = Object::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ds", "namespace": "ns"}}),
            "x",
        );
        assert_eq!(d.object_ref().to_string(), "Deployment ns/ds");
        let c = Object::new(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}}),
            "x",
        );
        assert_eq!(c.object_ref().to_string(), "CustomResourceDefinition a.b");
    }

    #[test]
    fn default_namespace_fills_only_a_missing_namespace() {
        let mut a = Object::new(json!({"metadata": {"name": "a"}}), "x");
        a.default_namespace("dflt");
        assert_eq!(a.namespace(), Some("dflt"));
        let mut b = Object::new(json!({"metadata": {"name": "b", "namespace": "mine"}}), "x");
        b.default_namespace("dflt");
        assert_eq!(b.namespace(), Some("mine"));
    }

    /// A failure a real kube-apiserver answered (../shared/reference/apiserver), classified.
    fn recorded(name: &str) -> KubeError {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/apiserver");
        let file = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the recorded answers at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().contains(name))
            .unwrap_or_else(|| panic!("no transcript {name}"));
        let record: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let status: kube::core::Status =
            serde_json::from_value(record["response"]["body"].clone()).unwrap();
        KubeError::from_status("apply".into(), &status)
    }

    #[test]
    fn an_undeclared_field_is_permanent_and_names_the_field_path() {
        for (name, field) in [
            ("09-ssa-unknown-field-strict", ".spec.replicaz"),
            ("10-ssa-unknown-field-warn", ""),
            ("11-ssa-unknown-field-default", ""),
            ("40-ssa-cr-unknown-field-strict", ".spec.colour"),
        ] {
            let e = recorded(name);
            assert_eq!(e.code, Some(500), "{name}");
            assert!(!e.is_transient(), "{name}: no retry can fix it");
            let path = e.field.clone().expect("a field path");
            if !field.is_empty() {
                assert_eq!(path, field, "{name}");
            }
            assert!(e.message.contains(&format!("has no field `{path}`")), "{e}");
        }
    }

    #[test]
    fn a_field_manager_conflict_names_the_other_manager_and_is_not_retried() {
        let e = recorded("22-ssa-other-manager");
        assert!(!e.is_transient());
        assert!(
            e.message
                .starts_with("field `.spec.replicas` is managed by \"kprov\""),
            "{e}"
        );
    }

    #[test]
    fn a_terminating_namespace_says_to_wait_or_choose_another() {
        let e = recorded("54-ssa-into-terminating-namespace");
        assert_eq!(e.code, Some(403));
        assert!(!e.is_transient());
        assert!(
            e.message
                .starts_with("namespace rec is being terminated: wait until the namespace is gone"),
            "{e}"
        );
        assert!(e.message.contains("or choose another namespace"), "{e}");
    }

    #[test]
    fn a_webhook_with_a_bad_ca_bundle_is_permanent_and_says_so() {
        let e = recorded("48-cr-create-with-unreachable-webhook");
        assert!(!e.is_transient());
        assert!(
            e.message
                .contains("check the webhook configuration's caBundle"),
            "{e}"
        );
    }

    #[test]
    fn invalid_objects_and_immutable_fields_are_permanent_and_name_the_field() {
        for (name, field) in [
            ("26-ssa-job-template-changed", "spec.template"),
            ("30-ssa-configmap-too-big", "[]"),
            ("32-ssa-invalid-name", "metadata.name"),
            ("51-ssa-service-nodeport-taken", "spec.ports[0].nodePort"),
        ] {
            let e = recorded(name);
            assert_eq!(
                (e.code, e.reason.as_str()),
                (Some(422), "Invalid"),
                "{name}"
            );
            assert!(!e.is_transient(), "{name}");
            assert_eq!(e.field.as_deref(), Some(field), "{name}");
            assert_eq!(e.is_immutable(), name.contains("job-template"), "{name}");
        }
        assert!(!recorded("33-ssa-into-missing-namespace").is_transient());
    }

    #[test]
    fn throttling_server_errors_and_conflicts_are_transient_but_invalid_is_not() {
        let status = |code: u16, reason: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                message: "m".into(),
                ..Default::default()
            }))
        };
        for code in [429, 409, 500, 503] {
            assert!(
                KubeError::from_kube("x", status(code, "r")).is_transient(),
                "{code}"
            );
        }
        for code in [400, 403, 404, 422] {
            assert!(
                !KubeError::from_kube("x", status(code, "r")).is_transient(),
                "{code}"
            );
        }
    }
}
