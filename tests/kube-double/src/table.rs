//! Server-side printing (`meta.k8s.io/v1` Table), which `kubectl get` asks for.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::util::meta_str;

/// Human age as kubectl shows it: `42s`, `5m3s`, `4h`, `3d`.
pub fn human_age(created: &str) -> String {
    let Some(then) = parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let s = (now - then).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// A tiny JSONPath subset for printer columns: `.a.b`, `.a[0]`, `.a[?(@.type=="Ready")].status`.
pub fn jsonpath(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = vec![obj.clone()];
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = filter.split_once("==")?;
                let want = v.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|e| e.get(k.trim()).and_then(Value::as_str) == Some(want))
                    .collect();
            } else if inner == "*" {
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect();
            } else {
                let i: usize = inner.parse().ok()?;
                cur = cur.iter().filter_map(|v| v.get(i).cloned()).collect();
            }
        } else {
            return None;
        }
    }
    match cur.len() {
        0 => None,
        1 => cur.pop(),
        _ => Some(Value::Array(cur)),
    }
}

/// Renders one object's cells.
type CellFn = Box<dyn Fn(&Value) -> Vec<Value>>;

fn col(name: &str, typ: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": typ, "format": format, "description": "", "priority": priority})
}

fn n(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn pod_cells(p: &Value) -> Vec<Value> {
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().map(|c| n(c.get("restartCount"))).sum();
    let mut reason = p
        .pointer("/status/reason")
        .or_else(|| p.pointer("/status/phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    for c in statuses.iter().rev() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            if let Some(r) = t["reason"].as_str() {
                reason = r.to_string();
            } else {
                reason = format!("ExitCode:{}", n(t.get("exitCode")));
            }
        }
    }
    if reason == "Pending" && statuses.is_empty() && p.pointer("/spec/nodeName").is_some() {
        reason = "ContainerCreating".into();
    }
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    vec![
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(human_age(meta_str(p, "creationTimestamp"))),
        json!(
            p.pointer("/status/podIP")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
        ),
        json!(
            p.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
        ),
    ]
}

fn info<'a>(node: &'a Value, field: &str) -> &'a str {
    node.pointer(&format!("/status/nodeInfo/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn condition(obj: &Value, typ: &str) -> Option<String> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == typ)
        .and_then(|c| c["status"].as_str().map(String::from))
}

/// Columns and cells for a type; `crd_columns` are a CRD version's additionalPrinterColumns.
pub fn table(rt: &ResourceType, items: &[Value], rv: &str, crd_columns: Option<&Value>) -> Value {
    let age = |o: &Value| json!(human_age(meta_str(o, "creationTimestamp")));
    let (columns, cells): (Vec<Value>, CellFn) = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(
                        o.pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    age(o),
                ]
            }),
        ),
        ("", "pods") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
            ],
            Box::new(|o| {
                let mut c = vec![json!(meta_str(o, "name"))];
                c.extend(pod_cells(o));
                c
            }),
        ),
        ("apps", "deployments") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(format!(
                        "{}/{}",
                        n(o.pointer("/status/readyReplicas")),
                        n(o.pointer("/spec/replicas"))
                    )),
                    json!(n(o.pointer("/status/updatedReplicas"))),
                    json!(n(o.pointer("/status/availableReplicas"))),
                    age(o),
                ]
            }),
        ),
        ("apps", "replicasets") => (
            vec![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(n(o.pointer("/spec/replicas"))),
                    json!(n(o.pointer("/status/replicas"))),
                    json!(n(o.pointer("/status/readyReplicas"))),
                    age(o),
                ]
            }),
        ),
        ("apps", "statefulsets") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(format!(
                        "{}/{}",
                        n(o.pointer("/status/readyReplicas")),
                        n(o.pointer("/spec/replicas"))
                    )),
                    age(o),
                ]
            }),
        ),
        ("batch", "jobs") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let status = if condition(o, "Complete").as_deref() == Some("True") {
                    "Complete"
                } else if condition(o, "Failed").as_deref() == Some("True") {
                    "Failed"
                } else {
                    "Running"
                };
                vec![
                    json!(meta_str(o, "name")),
                    json!(status),
                    json!(format!(
                        "{}/{}",
                        n(o.pointer("/status/succeeded")),
                        n(o.pointer("/spec/completions"))
                    )),
                    age(o),
                ]
            }),
        ),
        ("", "services") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(move |o| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| match p["nodePort"].as_i64() {
                        Some(np) => format!(
                            "{}:{np}/{}",
                            n(p.get("port")),
                            p["protocol"].as_str().unwrap_or("TCP")
                        ),
                        None => format!(
                            "{}/{}",
                            n(p.get("port")),
                            p["protocol"].as_str().unwrap_or("TCP")
                        ),
                    })
                    .collect();
                vec![
                    json!(meta_str(o, "name")),
                    json!(
                        o.pointer("/spec/type")
                            .and_then(Value::as_str)
                            .unwrap_or("ClusterIP")
                    ),
                    json!(
                        o.pointer("/spec/clusterIP")
                            .and_then(Value::as_str)
                            .unwrap_or("<none>")
                    ),
                    json!("<none>"),
                    json!(if ports.is_empty() {
                        "<none>".to_string()
                    } else {
                        ports.join(",")
                    }),
                    age(o),
                ]
            }),
        ),
        ("", "nodes") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Roles", "string", 0),
                col("Age", "string", 0),
                col("Version", "string", 0),
                col("Internal-IP", "string", 1),
                col("External-IP", "string", 1),
                col("OS-Image", "string", 1),
                col("Kernel-Version", "string", 1),
                col("Container-Runtime", "string", 1),
            ],
            Box::new(move |o| {
                let ready = if condition(o, "Ready").as_deref() == Some("True") {
                    "Ready"
                } else {
                    "NotReady"
                };
                let roles: Vec<String> = o
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, _)| {
                        k.strip_prefix("node-role.kubernetes.io/").map(String::from)
                    })
                    .collect();
                vec![
                    json!(meta_str(o, "name")),
                    json!(ready),
                    json!(if roles.is_empty() {
                        "<none>".to_string()
                    } else {
                        roles.join(",")
                    }),
                    age(o),
                    json!(
                        o.pointer("/status/nodeInfo/kubeletVersion")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    json!(
                        o.pointer("/status/addresses")
                            .and_then(Value::as_array)
                            .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                            .and_then(|x| x["address"].as_str())
                            .unwrap_or("<none>")
                    ),
                    json!("<none>"),
                    json!(info(o, "osImage")),
                    json!(info(o, "kernelVersion")),
                    json!(info(o, "containerRuntimeVersion")),
                ]
            }),
        ),
        ("", "events") => (
            vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Message", "string", 0),
            ],
            Box::new(|o| {
                let last = o["lastTimestamp"]
                    .as_str()
                    .or(o["eventTime"].as_str())
                    .unwrap_or_default();
                vec![
                    json!(human_age(last)),
                    json!(o["type"].as_str().unwrap_or("")),
                    json!(o["reason"].as_str().unwrap_or("")),
                    json!(format!(
                        "{}/{}",
                        o.pointer("/involvedObject/kind")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_lowercase(),
                        o.pointer("/involvedObject/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )),
                    json!(o["message"].as_str().unwrap_or("")),
                ]
            }),
        ),
        ("", "configmaps") | ("", "secrets") => {
            let secret = rt.plural == "secrets";
            let mut cols = vec![col("Name", "string", 0)];
            if secret {
                cols.push(col("Type", "string", 0));
            }
            cols.extend([col("Data", "integer", 0), col("Age", "string", 0)]);
            (
                cols,
                Box::new(move |o| {
                    let data = o
                        .get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                        + o.get("binaryData")
                            .and_then(Value::as_object)
                            .map_or(0, |m| m.len());
                    let mut c = vec![json!(meta_str(o, "name"))];
                    if secret {
                        c.push(json!(o["type"].as_str().unwrap_or("Opaque")));
                    }
                    c.extend([json!(data), age(o)]);
                    c
                }),
            )
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            Box::new(|o| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(meta_str(o, "creationTimestamp")),
                ]
            }),
        ),
        _ => match crd_columns.and_then(Value::as_array) {
            Some(extra) if !extra.is_empty() => {
                let mut cols = vec![col("Name", "string", 0)];
                let extra = extra.clone();
                for c in &extra {
                    cols.push(col(
                        c["name"].as_str().unwrap_or(""),
                        c["type"].as_str().unwrap_or("string"),
                        c["priority"].as_u64().unwrap_or(0) as u8,
                    ));
                }
                (
                    cols,
                    Box::new(move |o| {
                        let mut cells = vec![json!(meta_str(o, "name"))];
                        for c in &extra {
                            let v = jsonpath(o, c["jsonPath"].as_str().unwrap_or(""))
                                .unwrap_or(Value::Null);
                            cells.push(if c["type"] == "date" {
                                v.as_str()
                                    .map(|t| json!(human_age(t)))
                                    .unwrap_or(Value::Null)
                            } else {
                                v
                            });
                        }
                        cells
                    }),
                )
            }
            _ => (
                vec![col("Name", "string", 0), col("Age", "string", 0)],
                Box::new(move |o| vec![json!(meta_str(o, "name")), age(o)]),
            ),
        },
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cells(o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_follows_fields_indexes_and_filters() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}, "spec": {"l": [1, 2]}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(jsonpath(&o, ".spec.l[1]"), Some(json!(2)));
        assert_eq!(jsonpath(&o, ".spec.missing"), None);
    }

    #[test]
    fn parses_timestamps_back() {
        assert_eq!(parse_rfc3339("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(
            parse_rfc3339("2000-02-29T01:01:01Z"),
            Some(951_782_400 + 3661)
        );
    }

    #[test]
    fn a_crashing_pod_shows_its_waiting_reason() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let cells = pod_cells(&p);
        assert_eq!(cells[0], "0/1");
        assert_eq!(cells[1], "CrashLoopBackOff");
        assert_eq!(cells[2], "3");
    }
}
