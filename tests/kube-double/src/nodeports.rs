//! NodePorts, doubled: for every Service of type NodePort the double listens on its
//! nodePort inside the node container and answers HTTP, standing in for kube-proxy and the
//! application behind it. Any request gets 200 while the Service selects at least one Ready
//! pod, 503 before. So a readiness URL checked from the host, through kind's
//! extraPortMappings, behaves as it would on a real cluster whose pods are Ready.
//!
//! A test that needs the application's own answers (an API a profile's steps call) annotates
//! the Service with [`ANSWERS`] naming a ConfigMap in its namespace whose `answers.json` maps
//! `"METHOD /path"` to `{"status": 201, "body": {…}}`. An entry may name a query too
//! (`"GET /api/v1/workflows?workflow_name=a&limit=1"`): it answers only a request with
//! exactly those parameters, in any order, and before the entry without a query. A request
//! with no entry gets 404; an annotation whose ConfigMap (or its `answers.json`) is missing,
//! or not a JSON object, gets 503 naming it. Readiness is as above either way.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Shared;
use crate::selector::LabelSelector;

/// The Service annotation naming a ConfigMap of canned answers (module doc).
pub const ANSWERS: &str = "kube-double.kprov.dev/answers";

/// What is behind a NodePort: whether a Ready pod backs it, the Services that own it, and the
/// canned answers (`answers.json`) of the first Ready one that names some, or why they cannot
/// be read.
struct Behind {
    ready: bool,
    services: String,
    answers: Option<Result<serde_json::Value, String>>,
}

/// The answers ConfigMap `name` of namespace `ns` names, as a JSON object, or why not.
fn answers_of(
    store: &crate::store::Store,
    ns: &str,
    name: &str,
) -> Result<serde_json::Value, String> {
    let cm = store
        .get("configmaps", ns, name)
        .ok_or_else(|| format!("no ConfigMap {ns}/{name} (annotation {ANSWERS})"))?;
    let text = cm["data"]["answers.json"]
        .as_str()
        .ok_or_else(|| format!("ConfigMap {ns}/{name} has no answers.json"))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(format!("{ns}/{name} answers.json is not a JSON object")),
        Err(e) => Err(format!("{ns}/{name} answers.json: {e}")),
    }
}

/// The Services that own `port`, and whether any of them has a Ready endpoint.
fn behind(shared: &Shared, port: u64) -> Behind {
    let store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
    let mut names = Vec::new();
    for svc in store.list("services", None) {
        let owns = svc["spec"]["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["nodePort"].as_u64() == Some(port)));
        if !owns {
            continue;
        }
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or_default();
        names.push(format!(
            "{ns}/{}",
            svc["metadata"]["name"].as_str().unwrap_or_default()
        ));
        let selector =
            LabelSelector::from_object(&json!({"matchLabels": svc["spec"]["selector"].clone()}));
        let ready = store.list("pods", Some(ns)).iter().any(|p| {
            selector.matches(p)
                && p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        });
        if ready {
            let answers = svc["metadata"]["annotations"][ANSWERS]
                .as_str()
                .map(|cm| answers_of(&store, ns, cm));
            return Behind {
                ready: true,
                services: names.join(", "),
                answers,
            };
        }
    }
    Behind {
        ready: false,
        services: names.join(", "),
        answers: None,
    }
}

/// A query's parameters, sorted (their order does not matter to a server).
fn parameters(query: &str) -> Vec<&str> {
    let mut ps: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    ps.sort_unstable();
    ps
}

/// The entry of `answers` for `method` and `target` (`/path?query`): the one naming exactly
/// the request's query parameters, else the one for its path alone.
fn entry<'a>(
    answers: &'a serde_json::Value,
    method: &str,
    target: &str,
) -> Option<&'a serde_json::Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let wanted = parameters(query);
    let with_query = answers.as_object()?.iter().find(|(key, _)| {
        let Some((m, t)) = key.split_once(' ') else {
            return false;
        };
        let Some((p, q)) = t.split_once('?') else {
            return false;
        };
        m == method && p == path && !wanted.is_empty() && parameters(q) == wanted
    });
    with_query
        .map(|(_, a)| a)
        .or_else(|| answers.get(format!("{method} {path}")))
}

/// The canned answer to `request` (its request line `METHOD /path?query HTTP/1.1`).
fn canned(answers: &serde_json::Value, request: &str) -> (String, String) {
    let line = request.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    match entry(answers, method, target) {
        Some(a) => {
            let status = a["status"].as_u64().unwrap_or(200);
            let body = a.get("body").map(|b| b.to_string()).unwrap_or_default();
            (format!("{status} Canned"), body)
        }
        None => (
            "404 Not Found".into(),
            json!({"detail": format!("kube-double: no canned answer for {method} {target}")})
                .to_string(),
        ),
    }
}

/// The most of a request read (headers and body); a larger one is answered from what came.
const MAX_REQUEST: usize = 1 << 20;

/// The `Content-Length` of a request head, 0 without one.
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads one request whole (its head, then `Content-Length` bytes of body), so that the
/// answer never comes while the client is still sending: closing a socket with unread data
/// resets the connection, and the client may then lose the answer. Gives up after 2 s quiet.
async fn read_request(tcp: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut chunk)).await;
        let n = read.ok().and_then(Result::ok).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let whole = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|end| buf.len() >= end + 4 + content_length(&buf[..end]));
        if whole || buf.len() >= MAX_REQUEST {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn serve(shared: Arc<Shared>, listener: TcpListener, port: u64) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let request = read_request(&mut tcp).await;
            let b = behind(&shared, port);
            let services = &b.services;
            let (status, kind, body) = match (&b.answers, b.ready) {
                (Some(Ok(answers)), true) => {
                    let (status, body) = canned(answers, &request);
                    (status, "application/json", body)
                }
                (Some(Err(why)), true) => (
                    "503 Service Unavailable".to_string(),
                    "text/plain",
                    format!("kube-double NodePort {port} ({services}): {why}\n"),
                ),
                (None, true) => (
                    "200 OK".to_string(),
                    "text/plain",
                    format!("ok: kube-double NodePort {port} ({services}) has a Ready endpoint\n"),
                ),
                (_, false) => (
                    "503 Service Unavailable".to_string(),
                    "text/plain",
                    format!("kube-double NodePort {port} ({services}): no Ready endpoint yet\n"),
                ),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(reply.as_bytes()).await;
            let _ = tcp.shutdown().await;
        });
    }
}

/// Watch the Services and open a listener for each new NodePort.
pub async fn run(shared: Arc<Shared>) {
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let mut changes = shared
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .subscribe();
    loop {
        let ports: BTreeSet<u64> = {
            let store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
            store
                .list("services", None)
                .iter()
                .filter(|s| s["spec"]["type"] == "NodePort")
                .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p["nodePort"].as_u64())
                .collect()
        };
        for port in ports.difference(&open.clone()) {
            match TcpListener::bind(("0.0.0.0", *port as u16)).await {
                Ok(l) => {
                    open.insert(*port);
                    tokio::spawn(serve(shared.clone(), l, *port));
                }
                Err(e) => eprintln!("kube-double: cannot serve NodePort {port}: {e}"),
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> serde_json::Value {
        json!({
            "GET /api/v1/workflows": {"status": 200, "body": {"workflows": []}},
            "GET /api/v1/workflows?workflow_name=a&limit=1": {"status": 200, "body": {"id": "a"}},
            "GET /api/v1/workflows?workflow_name=b&limit=1": {"status": 200, "body": {"id": "b"}},
            "POST /api/v1/workflows": {"status": 201, "body": {"id": "new"}},
        })
    }

    fn answer(request: &str) -> (String, String) {
        canned(&answers(), request)
    }

    #[test]
    fn an_entry_with_a_query_answers_exactly_its_parameters_in_any_order() {
        let a = answer("GET /api/v1/workflows?workflow_name=a&limit=1 HTTP/1.1\r\n\r\n");
        assert_eq!(a, ("200 Canned".into(), r#"{"id":"a"}"#.into()));
        let b = answer("GET /api/v1/workflows?limit=1&workflow_name=b HTTP/1.1\r\n\r\n");
        assert_eq!(b, ("200 Canned".into(), r#"{"id":"b"}"#.into()));
    }

    #[test]
    fn other_parameters_get_the_paths_own_entry_and_other_paths_or_methods_none() {
        let path = r#"{"workflows":[]}"#.to_string();
        for request in [
            "GET /api/v1/workflows?workflow_name=c&limit=1 HTTP/1.1",
            "GET /api/v1/workflows?workflow_name=a HTTP/1.1",
            "GET /api/v1/workflows?workflow_name=a&limit=1&x=y HTTP/1.1",
            "GET /api/v1/workflows HTTP/1.1",
        ] {
            assert_eq!(
                answer(request),
                ("200 Canned".into(), path.clone()),
                "{request}"
            );
        }
        let post = answer("POST /api/v1/workflows?workflow_name=a&limit=1 HTTP/1.1");
        assert_eq!(post.0, "201 Canned");
        for request in [
            "DELETE /api/v1/workflows HTTP/1.1",
            "GET /api/v1/workflows/a HTTP/1.1",
        ] {
            let (status, body) = answer(request);
            assert_eq!(status, "404 Not Found", "{request}");
            assert!(body.contains("no canned answer for"), "{body}");
        }
        // A query alone does not make an entry for a path that has none.
        let only = json!({"GET /x?a=1": {"status": 200}});
        assert_eq!(canned(&only, "GET /x?a=1 HTTP/1.1").0, "200 Canned");
        assert_eq!(canned(&only, "GET /x HTTP/1.1").0, "404 Not Found");
        assert_eq!(canned(&only, "GET /x?a=2 HTTP/1.1").0, "404 Not Found");
    }

    #[tokio::test]
    async fn a_request_is_read_whole_however_it_arrives() {
        let body = "x".repeat(20_000);
        let request = format!(
            "POST /p HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (mut client, mut server) = tokio::io::duplex(1024);
        let sent = request.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.as_bytes().chunks(700) {
                client.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client
        });
        // Under the 2 s a quiet connection gets, with the client still connected: the read
        // ends on Content-Length, not on EOF or silence.
        let read = tokio::time::timeout(Duration::from_secs(1), read_request(&mut server));
        assert_eq!(read.await.expect("read until Content-Length"), request);
        drop(writer.await.unwrap());
        assert_eq!(content_length(b"GET / HTTP/1.1\r\nHost: h"), 0);
    }
}
