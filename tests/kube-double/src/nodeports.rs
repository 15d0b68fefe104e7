//! NodePorts, doubled: for every Service of type NodePort the double listens on its
//! nodePort inside the node container and answers HTTP, standing in for kube-proxy and the
//! application behind it. Any request gets 200 while the Service selects at least one Ready
//! pod, 503 before. So a readiness URL checked from the host, through kind's
//! extraPortMappings, behaves as it would on a real cluster whose pods are Ready.
//!
//! A test that needs the application's own answers (an API a profile's steps call) annotates
//! the Service with [`ANSWERS`] naming a ConfigMap in its namespace whose `answers.json` maps
//! `"METHOD /path"` (the query left out) to `{"status": 201, "body": {…}}`; a request with no
//! entry there gets 404. Readiness is as above either way.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Shared;
use crate::selector::LabelSelector;

/// The Service annotation naming a ConfigMap of canned answers (module doc).
pub const ANSWERS: &str = "kube-double.kprov.dev/answers";

/// What is behind a NodePort: whether a Ready pod backs it, the Services that own it, and the
/// canned answers (`answers.json`) of the first Ready one that names some.
struct Behind {
    ready: bool,
    services: String,
    answers: Option<serde_json::Value>,
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
                .and_then(|cm| store.get("configmaps", ns, cm))
                .and_then(|cm| cm["data"]["answers.json"].as_str().map(str::to_owned))
                .map(|text| serde_json::from_str(&text).unwrap_or(json!({})));
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

/// The canned answer to `request` (its request line `METHOD /path?query HTTP/1.1`).
fn canned(answers: &serde_json::Value, request: &str) -> (String, String) {
    let line = request.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default();
    let path = words.next().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    match answers.get(format!("{method} {path}")) {
        Some(a) => {
            let status = a["status"].as_u64().unwrap_or(200);
            let body = a.get("body").map(|b| b.to_string()).unwrap_or_default();
            (format!("{status} Canned"), body)
        }
        None => (
            "404 Not Found".into(),
            json!({"detail": format!("kube-double: no canned answer for {method} {path}")})
                .to_string(),
        ),
    }
}

async fn serve(shared: Arc<Shared>, listener: TcpListener, port: u64) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let read = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
            let n = read.ok().and_then(Result::ok).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let b = behind(&shared, port);
            let services = &b.services;
            let (status, kind, body) = match (&b.answers, b.ready) {
                (Some(answers), true) => {
                    let (status, body) = canned(answers, &request);
                    (status, "application/json", body)
                }
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
