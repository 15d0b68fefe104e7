//! NodePorts, doubled: for every Service of type NodePort the double listens on its
//! nodePort inside the node container and answers HTTP, standing in for kube-proxy and the
//! application behind it. Any request gets 200 while the Service selects at least one Ready
//! pod, 503 before. So a readiness URL checked from the host, through kind's
//! extraPortMappings, behaves as it would on a real cluster whose pods are Ready.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Shared;
use crate::selector::LabelSelector;

/// The Services that own `port`, and whether any of them has a Ready endpoint.
fn ready_behind(shared: &Shared, port: u64) -> (bool, String) {
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
            return (true, names.join(", "));
        }
    }
    (false, names.join(", "))
}

async fn serve(shared: Arc<Shared>, listener: TcpListener, port: u64) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
            let (ready, services) = ready_behind(&shared, port);
            let (status, body) = if ready {
                (
                    "200 OK",
                    format!("ok: kube-double NodePort {port} ({services}) has a Ready endpoint\n"),
                )
            } else {
                (
                    "503 Service Unavailable",
                    format!("kube-double NodePort {port} ({services}): no Ready endpoint yet\n"),
                )
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
