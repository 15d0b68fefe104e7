//! Replays what a real kube-apiserver (v1.36.2) answered — the transcripts in
//! `<repo>/../shared/reference/apiserver/NN-name.json`, recorded in order from a fresh
//! start — against the double, in the same order, and compares the answers by meaning:
//! status code, the Status reason, message and details (volatile values masked), list items
//! with or without kind/apiVersion, watch events, and the fields each transcript is about.
//!
//! Where the double does not answer as the recording does, the difference must be listed in
//! `KNOWN_DIFFERENCES` with its reason; a listed difference that starts matching fails the
//! test too, so the list stays true.

#[path = "replay/client.rs"]
mod client;
#[path = "replay/double.rs"]
mod double;
#[path = "replay/mask.rs"]
mod mask;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use client::{Answer, Client};
use double::Double;
use mask::{mask, mask_text};

/// (transcript, check, why the double differs).
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "03-discovery-groups",
        "groups",
        "the double serves a subset of the API groups (no apiregistration, certificates, discovery, events.k8s.io, flowcontrol, node, resource…)",
    ),
    (
        "04-discovery-aggregated",
        "kind",
        "aggregated discovery is not served; the double answers the legacy APIGroupList, which kubectl and kube-rs fall back to",
    ),
    (
        "10-ssa-unknown-field-warn",
        "message",
        "the apiserver visits a map's fields in Go's random order and stops at the first undeclared one, so it names one or both fields; the double visits them sorted (.spec.replicaz first)",
    ),
    (
        "17-watch-deployment-from-0",
        "events",
        "the recording server's etcd 3.4 lacks RequestWatchProgress and sent an ERROR; kind's etcd has it, and the double sends the synthetic ADDED events such a server sends",
    ),
    (
        "21-list-events-v1",
        "status",
        "events.k8s.io/v1 is not served (core v1 Events are)",
    ),
];

fn transcripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/apiserver")
}

struct Transcript {
    name: String,
    doc: Value,
}

impl Transcript {
    fn request(&self) -> &Value {
        &self.doc["request"]
    }
    fn response(&self) -> &Value {
        &self.doc["response"]
    }
    fn headers(&self) -> Vec<(String, String)> {
        self.request()["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    }
}

fn load() -> Option<Vec<Transcript>> {
    let dir = transcripts_dir();
    let entries = std::fs::read_dir(&dir).ok()?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .is_some_and(|n| n.as_encoded_bytes()[0].is_ascii_digit())
        })
        .collect();
    files.sort();
    Some(
        files
            .iter()
            .map(|p| Transcript {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                doc: serde_json::from_slice(&std::fs::read(p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            })
            .collect(),
    )
}

/// The mismatches of one transcript: (check, what differs).
type Mismatches = Vec<(String, String)>;

fn differ(
    out: &mut Mismatches,
    check: &str,
    recorded: impl std::fmt::Debug,
    got: impl std::fmt::Debug,
) {
    out.push((
        check.to_string(),
        format!("recorded {recorded:?}, double {got:?}"),
    ));
}

/// The fields each transcript is about, compared after masking.
fn called_out(name: &str) -> &'static [&'static str] {
    match &name[..2] {
        "07" | "08" => &["/metadata/labels", "/spec", "/status"],
        "12" | "13" | "23" => &["/spec", "/metadata/generation"],
        "18" => &[
            "/status/conditions",
            "/status/replicas",
            "/status/updatedReplicas",
            "/status/unavailableReplicas",
            "/status/observedGeneration",
        ],
        "24" => &["/spec", "/metadata/labels", "/metadata/generation"],
        "27" | "28" => &[
            "/metadata/deletionTimestamp",
            "/metadata/finalizers",
            "/metadata/generation",
            "/spec",
        ],
        "29" => &["/data"],
        "31" => &["/data", "/stringData", "/type"],
        "35" | "36" | "37" | "39" | "41" | "42" => &["/spec", "/status"],
        "45" => &["/spec", "/metadata/name", "/metadata/namespace"],
        "46" => &["/rules"],
        "47" => &["/webhooks"],
        "49" => &[
            "/status",
            "/details/kind",
            "/details/name",
            "/details/group",
        ],
        "50" => &["/spec", "/status"],
        "52" | "53" => &[
            "/metadata/deletionTimestamp",
            "/metadata/labels",
            "/spec",
            "/status",
        ],
        _ => &[],
    }
}

/// Transcripts that show what a controller did after a while: poll (bounded) until the
/// called-out fields match, then compare.
fn polls(name: &str) -> bool {
    matches!(&name[..2], "18" | "36" | "37")
}

/// Discovery documents compared as sets: resource names with their verbs, or group names.
fn discovery_view(body: &Value) -> Option<Value> {
    if let Some(resources) = body["resources"].as_array() {
        let view: BTreeMap<String, BTreeSet<String>> = resources
            .iter()
            .map(|r| {
                let verbs = r["verbs"].as_array().into_iter().flatten();
                (
                    r["name"].as_str().unwrap_or_default().to_string(),
                    verbs.filter_map(|v| v.as_str().map(String::from)).collect(),
                )
            })
            .collect();
        return Some(json!(view));
    }
    body["groups"].as_array().map(|gs| {
        let names: BTreeSet<&str> = gs.iter().filter_map(|g| g["name"].as_str()).collect();
        json!(names)
    })
}

fn compare_status(rec: &Value, got: &Value, out: &mut Mismatches) {
    for (check, ptr) in [
        ("reason", "/reason"),
        ("code", "/code"),
        ("status", "/status"),
    ] {
        if rec.pointer(ptr) != got.pointer(ptr) {
            differ(out, check, rec.pointer(ptr), got.pointer(ptr));
        }
    }
    let (rm, gm) = (
        rec["message"].as_str().map(mask_text),
        got["message"].as_str().map(mask_text),
    );
    if rm != gm {
        differ(out, "message", rm, gm);
    }
    if mask(&rec["details"]) != mask(&got["details"]) {
        differ(out, "details", &rec["details"], &got["details"]);
    }
}

fn compare_list(rec: &Value, got: &Value, out: &mut Mismatches) {
    for ptr in ["/kind", "/apiVersion"] {
        if rec.pointer(ptr) != got.pointer(ptr) {
            differ(out, "list kind", rec.pointer(ptr), got.pointer(ptr));
        }
    }
    let shape = |v: &Value| -> Vec<(bool, bool)> {
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| (i.get("kind").is_some(), i.get("apiVersion").is_some()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    if shape(rec) != shape(got) {
        differ(out, "item kind/apiVersion", shape(rec), shape(got));
    }
    // Names are compared where they are not generated (pods, events).
    let kind = rec["kind"].as_str().unwrap_or_default();
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    // The double's kubelet and controllers emit other Events than a node-less cluster's.
    if kind == "EventList" {
        return;
    }
    if kind != "PodList" && names(rec) != names(got) {
        differ(out, "items", names(rec), names(got));
    } else if rec["items"].as_array().map(Vec::len) != got["items"].as_array().map(Vec::len) {
        differ(out, "item count", names(rec), names(got));
    }
}

fn compare_object(name: &str, rec: &Value, got: &Value, out: &mut Mismatches) {
    for ptr in [
        "/kind",
        "/apiVersion",
        "/metadata/name",
        "/metadata/namespace",
    ] {
        if rec.pointer(ptr) != got.pointer(ptr) {
            differ(out, "identity", rec.pointer(ptr), got.pointer(ptr));
        }
    }
    for ptr in called_out(name) {
        // Masked with their key, so a volatile field itself (deletionTimestamp) is masked.
        let key = ptr.rsplit('/').next().unwrap_or_default();
        let masked = |v: &Value| mask(&json!({key: v}))[key].clone();
        let (r, g) = (rec.pointer(ptr).map(masked), got.pointer(ptr).map(masked));
        if r != g {
            differ(out, ptr, r, g);
        }
    }
    if name.starts_with("45") {
        let token = got
            .pointer("/status/token")
            .and_then(Value::as_str)
            .unwrap_or("");
        if token.split('.').count() != 3 || got.pointer("/status/expirationTimestamp").is_none() {
            differ(
                out,
                "token",
                "a JWT and an expirationTimestamp",
                &got["status"],
            );
        }
    }
}

/// Compares one plain (non-watch) answer with the recording.
fn compare(t: &Transcript, got: &Answer) -> Mismatches {
    let mut out = vec![];
    let rec = t.response();
    if rec["status"].as_u64() != Some(got.status as u64) {
        differ(&mut out, "status", &rec["status"], got.status);
        return out; // the rest would only repeat it
    }
    if let Some(text) = rec["body_text"].as_str() {
        if text.as_bytes() != got.body.as_slice() || !got.content_type.starts_with("text/plain") {
            differ(
                &mut out,
                "body",
                text,
                (&got.content_type, String::from_utf8_lossy(&got.body)),
            );
        }
        return out;
    }
    let body = &rec["body"];
    let Some(got_body) = got.json() else {
        differ(&mut out, "body", "JSON", String::from_utf8_lossy(&got.body));
        return out;
    };
    if body["kind"] == "APIGroupDiscoveryList" {
        if body["kind"] != got_body["kind"] {
            differ(&mut out, "kind", &body["kind"], &got_body["kind"]);
        }
    } else if body["kind"] == "Status" {
        compare_status(body, &got_body, &mut out);
    } else if body.get("items").is_some() && body.get("groupVersion").is_none() {
        if body["kind"] != got_body["kind"]
            && !body["kind"].as_str().unwrap_or("").ends_with("List")
        {
            differ(&mut out, "kind", &body["kind"], &got_body["kind"]);
        }
        compare_list(body, &got_body, &mut out);
    } else if let Some(view) = discovery_view(body) {
        if body["kind"] != got_body["kind"] {
            differ(&mut out, "kind", &body["kind"], &got_body["kind"]);
        }
        let check = if body.get("groups").is_some() {
            "groups"
        } else {
            "resources"
        };
        if Some(&view) != discovery_view(&got_body).as_ref() {
            differ(&mut out, check, view, discovery_view(&got_body));
        }
    } else if t.name.starts_with("01") {
        for key in ["major", "minor", "gitVersion", "platform"] {
            if got_body.get(key).is_none() {
                differ(&mut out, "version", key, &got_body);
            }
        }
    } else if t.name.starts_with("02") {
        if body["versions"] != got_body["versions"] || body["kind"] != got_body["kind"] {
            differ(&mut out, "versions", body, &got_body);
        }
    } else {
        compare_object(&t.name, body, &got_body, &mut out);
    }
    out
}

/// Recorded resourceVersions of objects → the double's, so a watch "from" a recorded
/// version starts from the double's version of the same moment.
#[derive(Default)]
struct Versions(BTreeMap<u64, u64>);

impl Versions {
    fn learn(&mut self, recorded: &Value, got: &Value) {
        let rv = |v: &Value| {
            v.pointer("/metadata/resourceVersion")?
                .as_str()?
                .parse()
                .ok()
        };
        if recorded.get("items").is_some() {
            return; // a list's version is the store's, not an object's
        }
        if let (Some(r), Some(g)) = (rv(recorded), rv(got)) {
            self.0.insert(r, g);
        }
    }

    fn translate(&self, path: &str) -> String {
        let Some(start) = path.find("resourceVersion=") else {
            return path.to_string();
        };
        let from = start + "resourceVersion=".len();
        let end = path[from..].find('&').map_or(path.len(), |e| from + e);
        let recorded: u64 = path[from..end].parse().unwrap_or(0);
        let ours = self.0.range(..=recorded).next_back().map_or(0, |(_, g)| *g);
        format!("{}{ours}{}", &path[..from], &path[end..])
    }
}

async fn replay_watch(client: &Client, t: &Transcript, versions: &Versions) -> Mismatches {
    let mut out = vec![];
    let rec = t.response();
    let recorded: Vec<Value> = rec["events"].as_array().cloned().unwrap_or_default();
    let types = |evs: &[Value]| -> BTreeSet<String> {
        evs.iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let want_changes = recorded.iter().filter(|e| e["type"] != "BOOKMARK").count();
    let want_bookmark = recorded.iter().any(|e| e["type"] == "BOOKMARK");
    let path = versions.translate(t.request()["path"].as_str().unwrap_or_default());
    let timeout: u64 = path
        .split("timeoutSeconds=")
        .nth(1)
        .and_then(|s| s.split('&').next()?.parse().ok())
        .unwrap_or(5);
    let (status, got) = client
        .watch(
            &path,
            &t.headers(),
            Duration::from_secs(timeout + 2),
            |evs| {
                evs.iter().filter(|e| e["type"] != "BOOKMARK").count() >= want_changes
                    && (!want_bookmark || evs.iter().any(|e| e["type"] == "BOOKMARK"))
            },
        )
        .await;
    if rec["status"].as_u64() != Some(status as u64) {
        differ(&mut out, "status", &rec["status"], status);
    }
    if recorded.first().map(|e| &e["type"]) != got.first().map(|e| &e["type"])
        || types(&recorded) != types(&got)
    {
        differ(&mut out, "events", types(&recorded), types(&got));
    }
    let kinds = |evs: &[Value]| -> BTreeSet<bool> {
        evs.iter()
            .map(|e| e["object"].get("kind").is_some())
            .collect()
    };
    if kinds(&recorded) != kinds(&got) {
        differ(&mut out, "event object kind", kinds(&recorded), kinds(&got));
    }
    out
}

async fn replay_one(client: &Client, t: &Transcript, versions: &mut Versions) -> Mismatches {
    let req = t.request();
    let path = req["path"].as_str().unwrap_or_default();
    if path.contains("watch=true") {
        return replay_watch(client, t, versions).await;
    }
    let method = req["method"].as_str().unwrap_or("GET");
    // Bodies are recorded as text, or as JSON when they were JSON.
    let body_text = match &req["body"] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let body = body_text.as_deref();
    let mut answer = client.send(method, path, &t.headers(), body).await;
    let mut mismatches = compare(t, &answer);
    if polls(&t.name) {
        // Bounded: a controller that never gets there leaves the last mismatches standing.
        for _ in 0..150 {
            if mismatches.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = client.send(method, path, &t.headers(), body).await;
            mismatches = compare(t, &answer);
        }
    }
    if let Some(got) = answer.json() {
        versions.learn(&t.response()["body"], &got);
    }
    mismatches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_answers_as_the_recorded_apiserver_does() {
    let Some(transcripts) = load().filter(|t| !t.is_empty()) else {
        let msg = format!(
            "no apiserver transcripts at {} (a read-only copy of shared/ sits beside the clone in CI)",
            transcripts_dir().display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("skipped: {msg}");
        return;
    };
    let double = Double::start(&[
        // No kubelet in the recording: pods stay unready, Jobs never finish.
        ("KUBE_DOUBLE_READY_MS", "10m"),
        ("KUBE_DOUBLE_JOB_COMPLETE_MS", "10m"),
        // Long enough to see a CRD Installing (36) and a namespace Terminating (53).
        ("KUBE_DOUBLE_CRD_DELAY_MS", "2s"),
        ("KUBE_DOUBLE_NS_TERMINATE_MS", "30s"),
        ("KUBE_DOUBLE_BOOKMARK_MS", "1s"),
        // A foreground deletion takes the collector two ticks (dependents, then the owner);
        // slower ticks keep 28's GET, sent right after 27's DELETE, well inside them.
        ("KUBE_DOUBLE_TICK_MS", "250ms"),
    ]);
    let client = Client::new(&double.ca_pem(), double.addr);
    let mut versions = Versions::default();
    let mut found: BTreeMap<(String, String), String> = BTreeMap::new();
    for t in &transcripts {
        for (check, what) in replay_one(&client, t, &mut versions).await {
            found.insert((t.name.clone(), check), what);
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN_DIFFERENCES
        .iter()
        .map(|(t, c, _)| (t.to_string(), c.to_string()))
        .collect();
    let mut failures = vec![];
    for ((t, c), what) in &found {
        if !known.contains(&(t.clone(), c.clone())) {
            failures.push(format!("{t} [{c}]: {what}"));
        }
    }
    for (t, c, why) in KNOWN_DIFFERENCES {
        if !found.contains_key(&(t.to_string(), c.to_string())) {
            failures.push(format!(
                "{t} [{c}] now matches the recording; remove it from KNOWN_DIFFERENCES ({why})"
            ));
        }
    }
    let matched = transcripts
        .iter()
        .filter(|t| !found.keys().any(|(n, _)| *n == t.name))
        .count();
    eprintln!(
        "replayed {} transcripts: {matched} match, {} differ as listed",
        transcripts.len(),
        transcripts.len() - matched
    );
    assert!(
        failures.is_empty(),
        "{} unexpected difference(s) from the recorded apiserver:\n{}\n(double log: {})",
        failures.len(),
        failures.join("\n"),
        double
            .log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
