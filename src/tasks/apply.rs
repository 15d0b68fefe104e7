//! Manifests in, objects applied: the cluster and deploy phases' writes.
//!
//! - [`parse_manifests`]: multi-document YAML (already templated) → [`Object`]s. Every bad
//!   document is reported (`file:line:column: message`, naming the field), not only the first;
//!   empty documents are skipped.
//! - [`apply_objects`]: server-side apply (field manager `kprov`, forced) of a batch, all at once
//!   (Namespaces first, since the rest may live in them). 429, 5xx, conflicts and dropped
//!   connections are retried per object with backoff; every object's failure is reported, a
//!   field the server's schema lacks with its manifest's `file:line:column`. An object whose
//!   immutable fields changed (a Job's template after a new image, on `--reuse`) is deleted
//!   with foreground propagation and created again, and the task's log says so; every other
//!   422 stays an error with the server's message.
//!   Re-applying the same objects changes nothing (the server keeps their resourceVersion).
//! - [`apply_crds`] then [`wait_established`]: CRDs applied concurrently, each watched until
//!   `Established=True`, then the discovery cache dropped so their kinds resolve.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use serde_json::Value;

use crate::adapters::kube::{Kube, KubeError, Object, ObjectRef};
use crate::engine::{TaskCtx, TaskError};
use crate::profile::yamlpos;
use crate::tasks::wait::{self, Outcome, State};

/// Objects applied at once; the API server handles far more, but a burst of hundreds of
/// requests only queues in the client.
const APPLY_CONCURRENCY: usize = 16;
/// Attempts per object for transient API errors (the first included).
const APPLY_ATTEMPTS: u32 = 6;
const APPLY_BACKOFF: Duration = Duration::from_millis(250);
const APPLY_MAX_BACKOFF: Duration = Duration::from_secs(4);

/// One manifest file's text, already templated.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file path, for errors.
    pub origin: String,
    pub text: String,
}

/// Every problem found in one manifest file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("parse manifest {origin}: {}", .problems.join("; "))]
pub struct ManifestError {
    pub origin: String,
    /// `file:line:column: message`, one per problem.
    pub problems: Vec<String>,
}

/// Splits `m` into its documents and parses each into an [`Object`].
pub fn parse_manifests(m: &Manifest) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (index, doc) in split_documents(&m.text).into_iter().enumerate() {
        match parse_document(&m.origin, index + 1, &doc) {
            Ok(Some(obj)) => objects.push(obj),
            Ok(None) => {}
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(ManifestError {
            origin: m.origin.clone(),
            problems,
        })
    }
}

/// A document of a multi-document stream: its own lines only (padding each document to its
/// line in the file made a file of many documents quadratic in memory).
struct Document {
    /// The file's line (1-based) that the document's first line is.
    first_line: usize,
    text: String,
}

impl Document {
    /// A position in the document's text as a position in the file.
    fn in_file(&self, (line, column): (usize, usize)) -> (usize, usize) {
        (line + self.first_line - 1, column)
    }
}

/// Splits at `---` lines. A document marker at column 0 ends any block or flow scalar in YAML,
/// so a line-based split is exact. The marker is blanked out (a `--- key: v` line keeps its
/// content and columns); `...` end markers are dropped.
fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = |m: &str| {
            line == m || line.starts_with(&format!("{m} ")) || line.starts_with(&format!("{m}\t"))
        };
        if is_marker("---") {
            docs.push(Document {
                first_line,
                text: std::mem::take(&mut current),
            });
            first_line = i + 1;
            current.push_str(&format!("   {}", &line[3..]));
            current.push('\n');
        } else if is_marker("...") || line.starts_with('%') {
            current.push('\n');
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push(Document {
        first_line,
        text: current,
    });
    docs
}

fn parse_document(
    origin: &str,
    index: usize,
    doc: &Document,
) -> Result<Option<Object>, Vec<String>> {
    let options = serde_saphyr::options! { with_snippet: false };
    let at = |line: usize, column: usize, message: String| {
        format!("{origin}:{line}:{column}: {message}")
    };
    let value: Value = serde_saphyr::from_str_with_options(&doc.text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((1, 1));
        // Lines the message names (an alias's anchor) counted from the file's start.
        let options = serde_saphyr::render_options! { line_offset: doc.first_line as u64 - 1 };
        let mut message = e.render_with_options(options);
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        let field = yamlpos::path_at(&doc.text, line);
        let field = if field.is_empty() {
            String::new()
        } else {
            format!(" (in field `{field}`)")
        };
        let (line, column) = doc.in_file((line, column));
        vec![at(line, column, format!("{message}{field}"))]
    })?;
    let first_content_line = doc
        .text
        .lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(doc.first_line, |i| doc.first_line + i);
    let map = match &value {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        _ => {
            return Err(vec![at(
                first_content_line,
                1,
                format!("document {index} is not a mapping"),
            )]);
        }
    };
    let mut problems = Vec::new();
    let mut need_string = |path: &[&str], v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => {}
        other => {
            let (line, column) = yamlpos::locate(&doc.text, path)
                .map_or((first_content_line, 1), |at| doc.in_file(at));
            let what = if other.is_none() {
                "is missing"
            } else {
                "must be a non-empty string"
            };
            problems.push(at(
                line,
                column,
                format!("field `{}` {what} (document {index})", path.join(".")),
            ));
        }
    };
    need_string(&["apiVersion"], map.get("apiVersion"));
    need_string(&["kind"], map.get("kind"));
    match map.get("metadata") {
        Some(Value::Object(meta)) => {
            need_string(&["metadata", "name"], meta.get("name"));
            if let Some(ns) = meta.get("namespace") {
                need_string(&["metadata", "namespace"], Some(ns));
            }
        }
        Some(_) => {
            let (line, column) = yamlpos::locate(&doc.text, &["metadata"])
                .map_or((first_content_line, 1), |at| doc.in_file(at));
            problems.push(at(
                line,
                column,
                format!("field `metadata` must be a mapping (document {index})"),
            ));
        }
        None => need_string(&["metadata", "name"], None),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(
        Object::new(value, format!("{origin}:{first_content_line}"))
            .with_source(Arc::from(doc.text.as_str()), doc.first_line),
    ))
}

/// Applies `objs` concurrently (Namespaces first). Returns once every object is applied, or
/// fails naming every object that could not be.
pub async fn apply_objects(kube: &Kube, objs: &[Object], ctx: &TaskCtx) -> Result<(), TaskError> {
    let (namespaces, rest): (Vec<&Object>, Vec<&Object>) =
        objs.iter().partition(|o| o.kind() == "Namespace");
    let mut failures = apply_batch(kube, &namespaces, ctx).await;
    if failures.is_empty() {
        failures = apply_batch(kube, &rest, ctx).await;
    }
    if ctx.cancel.is_cancelled() {
        return Err(TaskError::fatal("apply: cancelled"));
    }
    if failures.is_empty() {
        ctx.progress(format!("applied {} objects", objs.len()));
        return Ok(());
    }
    let transient = failures.iter().all(|e| e.is_transient());
    let message = format!(
        "apply {} of {} objects: {}",
        failures.len(),
        objs.len(),
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    Err(TaskError { message, transient })
}

async fn apply_batch(kube: &Kube, objs: &[&Object], ctx: &TaskCtx) -> Vec<KubeError> {
    // Futures made up front: a closure inside the stream would make the task's future lose
    // `Send` to a higher-ranked lifetime limitation of rustc.
    let futures: Vec<_> = objs.iter().map(|o| apply_one(kube, o, ctx)).collect();
    let results: Vec<Result<Object, KubeError>> = stream::iter(futures)
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().filter_map(Result::err).collect()
}

/// How long an object deleted to be recreated may take to go (a Job's pods terminating).
const RECREATE_DEADLINE: Duration = Duration::from_secs(120);

/// One object; an object whose immutable fields changed is deleted and created again.
async fn apply_one(kube: &Kube, obj: &Object, ctx: &TaskCtx) -> Result<Object, KubeError> {
    match apply_retrying(kube, obj, ctx).await {
        Err(e) if e.is_immutable() && recreatable(obj) => recreate(kube, obj, e, ctx).await,
        other => other,
    }
}

/// Kinds never deleted to apply a change: deleting them would take everything in them along.
fn recreatable(obj: &Object) -> bool {
    !matches!(
        obj.kind(),
        "Namespace" | "CustomResourceDefinition" | "PersistentVolumeClaim" | "PersistentVolume"
    )
}

/// Deletes `obj` (foreground, so its pods go first), waits until it is gone, applies it again.
async fn recreate(
    kube: &Kube,
    obj: &Object,
    refused: KubeError,
    ctx: &TaskCtx,
) -> Result<Object, KubeError> {
    let r = obj.object_ref();
    let field = refused.field.as_deref().unwrap_or("an immutable field");
    ctx.progress(format!(
        "{r}: {field} cannot change in place: deleting it (foreground) to create it again"
    ));
    kube.delete_foreground(&r).await?;
    let until = tokio::time::Instant::now() + RECREATE_DEADLINE;
    let gone = |o: Option<&Object>, _: &[Object]| match o {
        None => State::Ready,
        Some(_) => State::Pending("still being deleted".into()),
    };
    match wait::watch_until(kube, &r, until, &ctx.cancel, &gone).await {
        Outcome::Ready => {}
        Outcome::Stopped(_) => return Err(cancelled(obj)),
        other => {
            return Err(KubeError::fatal(
                format!("recreate {r}"),
                format!("it was deleted to change {field} but {}", other.describe()),
            ));
        }
    }
    let created = apply_retrying(kube, obj, ctx).await?;
    ctx.progress(format!("{r}: created again"));
    Ok(created)
}

/// One object, retried while the API's answer is transient.
async fn apply_retrying(kube: &Kube, obj: &Object, ctx: &TaskCtx) -> Result<Object, KubeError> {
    let mut attempt = 1;
    loop {
        let result = tokio::select! {
            r = kube.apply(obj) => r,
            () = ctx.cancel.cancelled() => return Err(cancelled(obj)),
        };
        match result {
            Err(e) if e.is_transient() && attempt < APPLY_ATTEMPTS => {
                let delay = APPLY_BACKOFF
                    .saturating_mul(1 << (attempt - 1))
                    .min(APPLY_MAX_BACKOFF);
                ctx.progress(format!(
                    "retrying {} in {delay:?} ({})",
                    obj.object_ref(),
                    e.message
                ));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = ctx.cancel.cancelled() => return Err(cancelled(obj)),
                }
                attempt += 1;
            }
            Err(mut e) => {
                if attempt > 1 {
                    e.message = format!("{} (after {attempt} attempts)", e.message);
                }
                return Err(locate_field(obj, e));
            }
            ok => return ok,
        }
    }
}

/// Names where in its manifest the field the server blamed is written: `apply Deployment
/// rec/web (manifests/web.yaml:14:9, field .spec.replicaz)`.
fn locate_field(obj: &Object, mut e: KubeError) -> KubeError {
    let (Some(field), Some(source)) = (&e.field, &obj.source) else {
        return e;
    };
    // `.spec.template.spec.containers[name="app"].image`: the keys, without list selectors
    // (which may hold dots of their own).
    let mut bare = String::new();
    let mut depth = 0;
    for c in field.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let keys: Vec<&str> = bare.split('.').filter(|k| !k.is_empty()).collect();
    let file = obj
        .origin
        .rsplit_once(':')
        .map_or(obj.origin.as_str(), |(f, _)| f);
    let at = match yamlpos::locate(&source.text, &keys) {
        Some((line, column)) => format!("{file}:{}:{column}", line + source.first_line - 1),
        None => obj.origin.clone(),
    };
    e.context = format!("apply {} ({at}, field {field})", obj.object_ref());
    e
}

fn cancelled(obj: &Object) -> KubeError {
    KubeError::fatal(format!("apply {}", obj.object_ref()), "cancelled")
}

/// The CustomResourceDefinitions among `objs`, and the rest, each in their original order.
pub fn split_crds(objs: Vec<Object>) -> (Vec<Object>, Vec<Object>) {
    objs.into_iter().partition(is_crd)
}

pub fn is_crd(o: &Object) -> bool {
    o.kind() == "CustomResourceDefinition" && o.api_version().starts_with("apiextensions.k8s.io/")
}

/// Applies CRDs concurrently, then waits (watching) until every one is Established and
/// refreshes discovery: the composition the `apply:crds` task runs.
pub async fn apply_crds(
    kube: &Kube,
    crds: &[Object],
    ctx: &TaskCtx,
    deadline: Duration,
) -> Result<(), TaskError> {
    if let Some(bad) = crds.iter().find(|o| !is_crd(o)) {
        return Err(TaskError::fatal(format!(
            "apply CRDs: {} ({}) is not a CustomResourceDefinition",
            bad.object_ref(),
            bad.origin
        )));
    }
    apply_objects(kube, crds, ctx).await?;
    let names: Vec<String> = crds.iter().map(|c| c.name().to_string()).collect();
    wait_established(kube, &names, ctx, deadline).await
}

/// Watches each named CRD until its `Established` condition is True (all concurrently, one
/// deadline), then drops the discovery cache so the new kinds resolve.
pub async fn wait_established(
    kube: &Kube,
    names: &[String],
    ctx: &TaskCtx,
    deadline: Duration,
) -> Result<(), TaskError> {
    let until = tokio::time::Instant::now() + deadline;
    let stop = ctx.cancel.child_token();
    let outcomes = futures::future::join_all(names.iter().map(|name| {
        let r = ObjectRef::new(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            name,
        );
        let stop = stop.clone();
        async move {
            let outcome = wait::watch_until(kube, &r, until, &stop, &|o, _| crd_state(o)).await;
            if matches!(outcome, Outcome::Failed(_)) {
                stop.cancel();
            }
            (r, outcome)
        }
    }))
    .await;
    kube.forget_kinds();
    if ctx.cancel.is_cancelled() {
        return Err(TaskError::fatal(
            "wait for CRDs to be Established: cancelled",
        ));
    }
    let blocked: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Ready))
        .map(|(r, o)| format!("{r}: {}", o.describe()))
        .collect();
    if blocked.is_empty() {
        ctx.progress(format!("{} CRDs Established", names.len()));
        Ok(())
    } else {
        Err(TaskError::fatal(format!(
            "wait for {} of {} CRDs to be Established within {}: {}",
            blocked.len(),
            names.len(),
            humantime::format_duration(deadline),
            blocked.join("; ")
        )))
    }
}

/// Established=True is ready; NamesAccepted=False (a clashing plural or kind) never will be.
pub fn crd_state(o: Option<&Object>) -> State {
    let Some(o) = o else {
        return State::Pending("does not exist".into());
    };
    let conditions = o
        .get("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| {
        conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
    };
    let is = |c: &Value, s: &str| c.get("status").and_then(Value::as_str) == Some(s);
    if let Some(c) = find("NamesAccepted")
        && is(c, "False")
    {
        let msg = c.get("message").and_then(Value::as_str).unwrap_or("");
        return State::Failed(format!("NamesAccepted=False: {msg}"));
    }
    match find("Established") {
        Some(c) if is(c, "True") => State::Ready,
        Some(c) => State::Pending(format!(
            "Established={} {}",
            c.get("status").and_then(Value::as_str).unwrap_or("?"),
            c.get("reason").and_then(Value::as_str).unwrap_or("")
        )),
        None => State::Pending("not Established yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Object>, ManifestError> {
        parse_manifests(&Manifest {
            origin: "m/x.yaml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn documents_are_split_and_empty_ones_skipped() {
        let objs = parse(
            "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# nothing\n---\n\n--- \napiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: ns1}\n...\n",
        )
        .unwrap();
        let names: Vec<_> = objs.iter().map(|o| o.object_ref().to_string()).collect();
        assert_eq!(names, ["ConfigMap a", "Secret ns1/b"]);
        assert_eq!(objs[0].origin, "m/x.yaml:3");
        assert_eq!(objs[1].origin, "m/x.yaml:12");
    }

    #[test]
    fn every_bad_document_is_reported_with_file_line_column_and_field() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nmetadata:\n  name: nokind\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [1]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: 1\n    b: 2\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert_eq!(
            err.problems[0],
            "m/x.yaml:6:1: field `kind` is missing (document 2)"
        );
        assert_eq!(
            err.problems[1],
            "m/x.yaml:13:3: field `metadata.name` must be a non-empty string (document 3)"
        );
        assert!(
            err.problems[2].starts_with("m/x.yaml:21:"),
            "{}",
            err.problems[2]
        );
        assert!(
            err.problems[2].contains("(in field `data.a`)") || err.problems[2].contains("data"),
            "{}",
            err.problems[2]
        );
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_an_error() {
        let err = parse("- a\n- b\n").unwrap_err();
        assert_eq!(err.problems, ["m/x.yaml:1:1: document 1 is not a mapping"]);
    }

    #[test]
    fn a_marker_line_with_content_keeps_its_columns() {
        let objs = parse("--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n").unwrap();
        assert_eq!(objs.len(), 1);
        let err = parse("apiVersion: v1\n--- {kind: [\n").unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.starts_with("m/x.yaml:2:")),
            "{err}"
        );
    }

    #[test]
    fn each_document_holds_only_its_own_lines() {
        // Padded to its line in the file, the 5,000th empty document held 5,000 lines: a file
        // of many small documents took memory quadratic in its length.
        let text = format!(
            "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n",
            "---\n".repeat(5_000)
        );
        let docs = split_documents(&text);
        assert_eq!(docs.len(), 5_001);
        let held: usize = docs.iter().map(|d| d.text.len()).sum();
        assert!(held <= text.len(), "{held} bytes held for {}", text.len());
        let objs = parse(&text).unwrap();
        assert_eq!(objs[0].origin, "m/x.yaml:5001");
    }

    #[test]
    fn a_field_the_server_blames_in_a_later_document_is_located_on_its_file_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicaz: 2\n";
        let objs = parse(text).unwrap();
        let mut e = KubeError::fatal("apply Deployment web", "field not declared in schema");
        e.field = Some(".spec.replicaz".into());
        let e = locate_field(&objs[1], e);
        assert_eq!(
            e.context,
            "apply Deployment web (m/x.yaml:10:3, field .spec.replicaz)"
        );
    }

    #[test]
    fn crd_state_follows_the_established_condition() {
        let crd =
            |conds: Value| Object::new(serde_json::json!({"status": {"conditions": conds}}), "t");
        assert!(matches!(crd_state(None), State::Pending(_)));
        assert!(matches!(
            crd_state(Some(&crd(serde_json::json!([])))),
            State::Pending(_)
        ));
        assert!(matches!(
            crd_state(Some(&crd(
                serde_json::json!([{"type": "Established", "status": "True"}])
            ))),
            State::Ready
        ));
        assert!(matches!(
            crd_state(Some(&crd(serde_json::json!([{"type": "NamesAccepted", "status": "False", "message": "clash"}])))),
            State::Failed(m) if m.contains("clash")
        ));
    }
}
