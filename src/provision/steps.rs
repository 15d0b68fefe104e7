//! Run-time values and post-ready steps: the work of `value:*` and `step:*` tasks.
//!
//! A value is read once what it follows is done (a ServiceAccount token, a field of an object
//! once set, a key of a Secret or ConfigMap, a hook's Job output) and kept for later templates
//! as `{{ runtime.NAME }}`; values are secrets until proven otherwise, so they are never
//! logged. A step first waits until the components it follows are ready, then does its one
//! action: apply manifests, set status through `/status`, call a URL from the host, restart a
//! rollout, or run a host command.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use tokio::time::Instant;

use super::works::RunState;
use crate::adapters::{
    http::{Answer, HttpProber},
    kube::{Kube, Object, ObjectRef},
    process,
};
use crate::engine::{Done, TaskCtx, TaskError};
use crate::profile::{
    FieldSpec, HttpResponseSpec, HttpStepSpec, JobOutputSpec, KeySpec, ObjectSpec, RuntimeSpec,
    StepSpec, template,
};
use crate::tasks::wait::{self, Outcome, State};

const VALUE_TIMEOUT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

fn deadline(spec: Option<&String>, default: Duration) -> Instant {
    let d = spec
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(default);
    Instant::now() + d
}

/// A dotted field path (`.status.workflowId`, `.spec.ports[0].nodePort`) as a JSON pointer.
pub fn pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.trim_start_matches('.').split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push('/');
            out.push_str(&rest[..open]);
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let close = stripped.find(']').unwrap_or(stripped.len());
                out.push('/');
                out.push_str(&stripped[..close]);
                rest = stripped.get(close + 1..).unwrap_or("");
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

/// A JSON value as a template value: strings as they are, anything else as JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn object_ref(s: &RunState, o: &ObjectSpec) -> ObjectRef {
    let ns = o.namespace.as_deref().unwrap_or(s.profile().namespace());
    ObjectRef::new(&o.api_version, &o.kind, Some(ns), &o.name)
}

/// The `value:NAME` task: reads the value and keeps it for later templates.
pub async fn runtime_value(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let spec = &s.profile().spec.runtime[name];
    let kube = s.kube()?;
    let until = deadline(spec.timeout.as_ref(), VALUE_TIMEOUT);
    let value = read_value(s, kube, spec, until, ctx)
        .await
        .map_err(|e| TaskError::fatal(format!("value {name}: {e}")))?;
    ctx.progress(format!("value {name}: read ({} bytes)", value.len()));
    s.set_runtime(name, value);
    Ok(Done::Ran)
}

async fn read_value(
    s: &RunState,
    kube: &Kube,
    spec: &RuntimeSpec,
    until: Instant,
    ctx: &TaskCtx,
) -> Result<String, String> {
    if let Some(t) = &spec.service_account_token {
        let ns = t.namespace.as_deref().unwrap_or(s.profile().namespace());
        let seconds = t.expiration_seconds.unwrap_or(3600);
        return kube
            .service_account_token(ns, &t.name, &t.audiences, seconds)
            .await
            .map_err(|e| e.to_string());
    }
    if let Some(f) = &spec.field {
        return field_value(s, kube, f, until, ctx).await;
    }
    if let Some(k) = &spec.key {
        return key_value(s, kube, k, until, ctx).await;
    }
    if let Some(j) = &spec.job_output {
        return job_output(s, kube, j, until, ctx).await;
    }
    if let Some(h) = &spec.http_response {
        return http_response(s, h);
    }
    Err("it names no source (serviceAccountToken, field, key, jobOutput or httpResponse)".into())
}

/// Watches an object until `pick` finds what it wants in it.
async fn watch_for(
    kube: &Kube,
    r: &ObjectRef,
    until: Instant,
    ctx: &TaskCtx,
    pick: &(dyn Fn(&Object) -> Result<String, String> + Sync),
) -> Result<String, String> {
    let found = std::sync::Mutex::new(None);
    let judge = |o: Option<&Object>, _: &[Object]| match o {
        None => State::Pending(format!("{r} does not exist")),
        Some(o) => match pick(o) {
            Ok(v) => {
                *found.lock().expect("not poisoned") = Some(v);
                State::Ready
            }
            Err(why) => State::Pending(why),
        },
    };
    match wait::watch_until(kube, r, until, &ctx.cancel, &judge).await {
        Outcome::Ready => Ok(found
            .into_inner()
            .expect("not poisoned")
            .unwrap_or_default()),
        other => Err(other.describe()),
    }
}

async fn field_value(
    s: &RunState,
    kube: &Kube,
    f: &FieldSpec,
    until: Instant,
    ctx: &TaskCtx,
) -> Result<String, String> {
    let r = object_ref(s, &f.object);
    let at = pointer(&f.path);
    let pick = |o: &Object| match o.get(&at) {
        Some(v) if !v.is_null() => Ok(as_text(v)),
        _ => Err(format!("{r} has no {} yet", f.path)),
    };
    watch_for(kube, &r, until, ctx, &pick).await
}

async fn key_value(
    s: &RunState,
    kube: &Kube,
    k: &KeySpec,
    until: Instant,
    ctx: &TaskCtx,
) -> Result<String, String> {
    let kind = k.kind.as_deref().unwrap_or("Secret");
    let ns = k.namespace.as_deref().unwrap_or(s.profile().namespace());
    let r = ObjectRef::new("v1", kind, Some(ns), &k.name);
    let secret = kind == "Secret";
    let pick = |o: &Object| {
        let found = o.get(&format!("/data/{}", k.key)).and_then(Value::as_str);
        match found {
            None => Err(format!("{r} has no key {} yet", k.key)),
            Some(v) if secret => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| format!("{r} key {}: not base64: {e}", k.key))?;
                String::from_utf8(bytes).map_err(|_| format!("{r} key {}: not text", k.key))
            }
            Some(v) => Ok(v.to_string()),
        }
    };
    watch_for(kube, &r, until, ctx, &pick).await
}

async fn job_output(
    s: &RunState,
    kube: &Kube,
    j: &JobOutputSpec,
    until: Instant,
    ctx: &TaskCtx,
) -> Result<String, String> {
    let ns = s.profile().namespace().to_string();
    if let (Some(cm), Some(key)) = (&j.config_map, &j.key) {
        let k = KeySpec {
            kind: Some("ConfigMap".into()),
            name: cm.clone(),
            namespace: None,
            key: key.clone(),
        };
        return key_value(s, kube, &k, until, ctx).await;
    }
    let Some(pattern) = &j.log_pattern else {
        return Err("jobOutput needs configMap and key, or logPattern".into());
    };
    let re = regex::Regex::new(pattern).map_err(|e| format!("logPattern: {e}"))?;
    let jobs: Vec<Object> = s
        .applied(&j.hook)
        .into_iter()
        .filter(|o| o.kind() == "Job")
        .collect();
    for job in &jobs {
        let job_ns = job.namespace().unwrap_or(&ns);
        let selector = format!("job-name={}", job.name());
        let pods = kube
            .list("v1", "Pod", Some(job_ns), Some(&selector))
            .await
            .map_err(|e| e.to_string())?;
        for pod in &pods {
            let containers = pod
                .get("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in containers {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                let log = kube
                    .logs(job_ns, pod.name(), name, 10_000, false)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(m) = re.captures(&log) {
                    let v = m.get(1).or_else(|| m.get(0)).expect("a match");
                    return Ok(v.as_str().to_string());
                }
            }
        }
    }
    Err(format!(
        "no line of the logs of hook {}'s Job matches {pattern:?}",
        j.hook
    ))
}

/// A field of the JSON body that answered step `h.step` (which ran before this value).
fn http_response(s: &RunState, h: &HttpResponseSpec) -> Result<String, String> {
    let answer = s.answer(&h.step).ok_or_else(|| {
        format!(
            "step {} kept no answer (it makes no HTTP request, or did not run)",
            h.step
        )
    })?;
    field_of_answer(&h.step, &h.path, &answer)
}

/// `path` of an answer's JSON body; absent, null or not JSON: an error naming the step, the
/// path, the status and the body's start.
fn field_of_answer(step: &str, path: &str, a: &Answer) -> Result<String, String> {
    let whose = || {
        format!(
            "step {step}'s answer ({}, body: {})",
            a.status,
            a.body_start().chars().take(200).collect::<String>()
        )
    };
    let body: Value =
        serde_json::from_str(&a.body).map_err(|e| format!("{} is not JSON ({e})", whose()))?;
    match body.pointer(&pointer(path)) {
        Some(v) if !v.is_null() => Ok(as_text(v)),
        _ => Err(format!("{} has no {path}", whose())),
    }
}

/// The `step:NAME` task: waits for the components it follows, then does its action.
pub async fn step(s: &RunState, name: &str, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let st = &s.profile().spec.steps[name];
    let until = deadline(st.timeout.as_ref(), STEP_TIMEOUT);
    wait_for_components(s, &format!("step-{name}"), &st.after, Some(until), ctx).await?;
    let kube = s.kube()?;
    if !st.apply.is_empty() {
        let objects = s.render(&st.apply, &st.values, ctx).await?;
        crate::tasks::apply::apply_objects(kube, &objects, ctx).await?;
        s.set_applied(name, objects);
    }
    for p in &st.patch_status {
        let r = object_ref(s, &p.object);
        let status = render_json(s, &p.status, &st.values)
            .map_err(|e| TaskError::fatal(format!("step {name}: status of {r}: {e}")))?;
        kube.apply_status(&r, &status).await?;
        ctx.progress(format!("{r}: status set"));
    }
    if let Some(h) = &st.http {
        call(s, name, h, &st.values, until, ctx).await?;
    }
    for o in &st.rollout_restart {
        let r = object_ref(s, o);
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        kube.restart_rollout(&r, &at).await?;
        ctx.progress(format!("{r}: rollout restarted"));
    }
    if !st.command.is_empty() {
        command(s, name, st, ctx).await?;
    }
    Ok(Done::Ran)
}

/// Waits until every component of `after` is ready (hooks and steps are done already), by
/// `until` or else each component's own `ready.timeout`; `what` names the diagnostics.
pub(super) async fn wait_for_components(
    s: &RunState,
    what: &str,
    after: &[String],
    until: Option<Instant>,
    ctx: &TaskCtx,
) -> Result<(), TaskError> {
    let mut targets = Vec::new();
    for c in after {
        if let Some(comp) = s.profile().spec.components.get(c) {
            let left = match until {
                Some(u) => u.saturating_duration_since(Instant::now()),
                None => RunState::timeout(comp.ready.timeout.as_ref()),
            };
            let target = s.component_target(c, comp, left, ctx).await?;
            if !target.objects.is_empty() || target.http.is_some() {
                targets.push(target);
            }
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let kube = s.kube()?;
    wait::wait_ready(kube, &targets, ctx, &s.diagnostics(what)).await
}

/// Renders the templated strings inside a JSON value, each on its own: a placeholder's quoted
/// argument (`{{ file "PATH" }}`) is never seen JSON-escaped.
fn render_json(
    s: &RunState,
    v: &Value,
    values: &BTreeMap<String, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(t) => Value::String(render_str(s, t, values)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_json(s, i, values))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(s, x, values)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A step's template string with this run's values and the files it reads.
fn render_str(
    s: &RunState,
    text: &str,
    values: &BTreeMap<String, String>,
) -> Result<String, String> {
    let vals = s.values(values);
    s.profile()
        .render_template(&s.req.source, text, &vals)
        .map_err(|es| template::joined(&es, None, "; "))
}

/// The request body of an `http` step: `body`, or `bodyFile`'s content, rendered.
fn request_body(
    s: &RunState,
    h: &HttpStepSpec,
    values: &BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    if let Some(b) = &h.body {
        return render_str(s, b, values).map(Some);
    }
    let Some(rel) = &h.body_file else {
        return Ok(None);
    };
    let path = s.profile().resolve(&s.req.source, rel);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("bodyFile {}: {e}", path.display()))?;
    let vals = s.values(values);
    s.profile()
        .render_template(&s.req.source, &text, &vals)
        .map(Some)
        .map_err(|es| template::joined(&es, Some(&path.display().to_string()), "; "))
}

/// The HTTP request of a step, retried (backoff to 2 s) until its answer is expected and, with
/// `until`, its JSON body contains one of those patterns; a body that contains one of
/// `failIf` fails the step at once.
async fn call(
    s: &RunState,
    name: &str,
    h: &HttpStepSpec,
    values: &BTreeMap<String, String>,
    until: Instant,
    ctx: &TaskCtx,
) -> Result<(), TaskError> {
    let bad = |e: String| TaskError::fatal(format!("step {name}: {e}"));
    let url = render_str(s, &h.url, values).map_err(bad)?;
    let mut headers = Vec::new();
    for (k, v) in &h.headers {
        headers.push((k.clone(), render_str(s, v, values).map_err(bad)?));
    }
    if let Some(a) = &h.basic_auth {
        let user = render_str(s, &a.username, values).map_err(bad)?;
        let password = render_str(s, &a.password, values).map_err(bad)?;
        headers.push(("Authorization".into(), basic_auth(&user, &password)));
    }
    let body = request_body(s, h, values).map_err(bad)?;
    let method = h.method.as_deref().unwrap_or("GET");
    let client = HttpProber::new(Duration::from_secs(10)).map_err(bad)?;
    let mut delay = Duration::from_millis(200);
    loop {
        let last = match client.call(method, &url, &headers, body.as_deref()).await {
            Ok(a) => match judge(h, &a) {
                Verdict::Done => {
                    ctx.progress(format!("{method} {url}: {}", a.status));
                    s.set_answer(name, a);
                    return Ok(());
                }
                Verdict::Failed(why) => return Err(bad(format!("{method} {url}: {why}"))),
                Verdict::Again(why) => why,
            },
            Err(why) => why,
        };
        if Instant::now() + delay > until {
            return Err(bad(format!("{method} {url}: {last}")));
        }
        ctx.progress(format!("{method} {url}: {last}; again in {delay:?}"));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.cancel.cancelled() => return Err(bad("cancelled".into())),
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The `Authorization` header of HTTP basic authentication (RFC 7617).
fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// What an answer means for an `http` step.
#[derive(Debug, PartialEq)]
enum Verdict {
    Done,
    /// Ask again (the words say why this answer was not the one).
    Again(String),
    Failed(String),
}

fn judge(h: &HttpStepSpec, a: &Answer) -> Verdict {
    let expected = if h.expect_status.is_empty() {
        (200..300).contains(&a.status)
    } else {
        h.expect_status.contains(&a.status)
    };
    if !expected {
        return Verdict::Again(format!("answered {}: {}", a.status, a.body_start()));
    }
    if h.until.is_empty() && h.fail_if.is_empty() {
        return Verdict::Done;
    }
    let shown = || a.body_start().chars().take(200).collect::<String>();
    let Ok(body) = serde_json::from_str::<Value>(&a.body) else {
        return Verdict::Again(format!(
            "answered {} with a body that is not JSON: {}",
            a.status,
            shown()
        ));
    };
    if let Some(p) = h.fail_if.iter().find(|p| json_contains(&body, p)) {
        return Verdict::Failed(format!("the answer matches failIf {p}: {}", shown()));
    }
    if h.until.is_empty() || h.until.iter().any(|p| json_contains(&body, p)) {
        return Verdict::Done;
    }
    Verdict::Again(format!(
        "answered {}, not yet as `until` asks: {}",
        a.status,
        shown()
    ))
}

/// Whether `value` contains `pattern`, as PostgreSQL's `jsonb @>` means it: an object
/// contains each of the pattern's keys with a value that contains the pattern's; an array
/// holds, for each element of the pattern's array, an element that contains it; anything
/// else is equal (numbers by value, so `1` matches `1.0`).
pub fn json_contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| json_contains(vv, pv))),
        (Value::Array(v), Value::Array(p)) => {
            p.iter().all(|pe| v.iter().any(|ve| json_contains(ve, pe)))
        }
        (Value::Number(v), Value::Number(p)) => v.as_f64() == p.as_f64(),
        (v, p) => v == p,
    }
}

/// The host command of a step, with the cluster's coordinates in its environment.
async fn command(s: &RunState, name: &str, st: &StepSpec, ctx: &TaskCtx) -> Result<(), TaskError> {
    let bad = |e: String| TaskError::fatal(format!("step {name}: {e}"));
    let argv: Vec<String> = st
        .command
        .iter()
        .map(|a| render_str(s, a, &st.values))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let program = process::which_in(&argv[0], &s.req.source)
        .ok_or_else(|| bad(format!("{} is not on PATH", argv[0])))?;
    let cluster = s
        .cluster
        .get()
        .ok_or_else(|| bad("no cluster (the cluster task did not run)".into()))?;
    let mut env = vec![
        (
            "KUBECONFIG".to_string(),
            cluster.kubeconfig.display().to_string(),
        ),
        ("KPROV_CONTEXT".to_string(), cluster.context.clone()),
        (
            "KPROV_NAMESPACE".to_string(),
            s.profile().namespace().to_string(),
        ),
    ];
    for (port, host) in s.host_ports() {
        let var = port.to_uppercase().replace(['-', '.'], "_");
        env.push((format!("KPROV_HOST_PORT_{var}"), host.to_string()));
    }
    let cmd = process::Command {
        program,
        args: argv[1..].iter().map(Into::into).collect(),
        env,
        cwd: Some(s.req.source.clone()),
    };
    let done = process::run(&cmd, &ctx.cancel, &mut |line| {
        ctx.progress(line.to_string())
    })
    .await
    .map_err(|e| bad(e.to_string()))?;
    if done.status.success() {
        return Ok(());
    }
    let tail: Vec<&str> = done.output.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(bad(format!(
        "{} exited with {}:\n{}",
        argv.join(" "),
        done.status,
        tail.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_is_jsonb_containment() {
        let instances = json!({"count": 2, "results": [
            {"hostname": "a", "enabled": false, "node_state": "ready", "node_type": "control"},
            {"hostname": "b", "enabled": true, "node_state": "installed", "node_type": "hybrid"},
        ]});
        // No one element has all three: not contained.
        let want = json!({"results": [{"enabled": true, "node_state": "ready"}]});
        assert!(!json_contains(&instances, &want));
        assert!(json_contains(
            &instances,
            &json!({"results": [{"hostname": "b", "enabled": true}, {"hostname": "a"}]})
        ));
        assert!(json_contains(&instances, &json!({"count": 2.0})));
        assert!(json_contains(&instances, &json!({})));
        assert!(!json_contains(&instances, &json!({"count": "2"})));
        assert!(!json_contains(&instances, &json!({"missing": null})));
        assert!(!json_contains(&json!([1, 2]), &json!({"0": 1})));
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn an_answer_ends_a_polling_step_only_when_it_matches_until_and_fails_it_on_fail_if() {
        let h = HttpStepSpec {
            url: "http://x/".into(),
            expect_status: vec![200],
            until: vec![json!({"status": "successful"})],
            fail_if: vec![json!({"status": "failed"}), json!({"status": "error"})],
            ..Default::default()
        };
        assert_eq!(
            judge(&h, &answer(200, r#"{"status": "successful"}"#)),
            Verdict::Done
        );
        let again = |v: Verdict| matches!(v, Verdict::Again(_));
        assert!(again(judge(&h, &answer(200, r#"{"status": "running"}"#))));
        assert!(again(judge(&h, &answer(200, "not json"))));
        assert!(again(judge(
            &h,
            &answer(503, r#"{"status": "successful"}"#)
        )));
        let Verdict::Failed(why) = judge(&h, &answer(200, r#"{"id": 3, "status": "error"}"#))
        else {
            panic!("an error status must fail the step");
        };
        assert!(why.contains(r#"failIf {"status":"error"}"#), "{why}");
        // Without until or failIf the status alone decides, whatever the body.
        let plain = HttpStepSpec {
            url: "http://x/".into(),
            ..Default::default()
        };
        assert_eq!(judge(&plain, &answer(204, "")), Verdict::Done);
    }

    #[test]
    fn basic_auth_is_rfc_7617s() {
        // RFC 7617, section 2.
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn field_paths_become_json_pointers() {
        assert_eq!(pointer(".metadata.uid"), "/metadata/uid");
        assert_eq!(pointer("status.workflowId"), "/status/workflowId");
        assert_eq!(pointer(".spec.ports[0].nodePort"), "/spec/ports/0/nodePort");
        assert_eq!(pointer(".a[1][2].b"), "/a/1/2/b");
    }

    #[test]
    fn a_field_of_an_answer_is_read_and_its_absence_names_step_path_and_body() {
        let a = Answer {
            status: 201,
            body: r#"{"workflowId":"u-1","n":3,"workflows":[{"workflowId":"u-2"}]}"#.into(),
        };
        assert_eq!(field_of_answer("reg", ".workflowId", &a).unwrap(), "u-1");
        assert_eq!(field_of_answer("reg", ".n", &a).unwrap(), "3");
        assert_eq!(
            field_of_answer("reg", ".workflows[0].workflowId", &a).unwrap(),
            "u-2"
        );
        let e = field_of_answer("reg", ".workflow_id", &a).unwrap_err();
        assert_eq!(
            e,
            format!(
                "step reg's answer (201, body: {}) has no .workflow_id",
                a.body
            )
        );
        let problem = Answer {
            status: 409,
            body: format!("{{\"detail\":\"exists\",\"pad\":\"{}\"}}", "x".repeat(400)),
        };
        let e = field_of_answer("reg", ".workflowId", &problem).unwrap_err();
        assert!(
            e.starts_with("step reg's answer (409, body: {\"detail\":\"exists\""),
            "{e}"
        );
        assert!(e.len() < 300, "only the body's start: {e}");
        let html = Answer {
            status: 200,
            body: "<html>".into(),
        };
        let e = field_of_answer("reg", ".workflowId", &html).unwrap_err();
        assert!(e.contains("(200, body: <html>) is not JSON"), "{e}");
    }
}
