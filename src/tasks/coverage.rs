//! Coverage mode (DD-TEST-007), as data: instrumented containers get `GOCOVERDIR`, a
//! hostPath volume of the node's `/coverdata` (the kind extraMount of the per-service
//! coverdata directory) and run as root so they can write there.

use serde_json::{Value, json};

/// Where coverage data goes, in the pod and on the node.
pub const COVERDATA: &str = "/coverdata";
const VOLUME: &str = "coverdata";

/// Patch a Deployment (or StatefulSet) so every container running one of `images` writes
/// coverage to /coverdata. Returns whether anything changed. Other kinds are left alone.
pub fn instrument(object: &mut Value, images: &[String]) -> bool {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "Deployment" && kind != "StatefulSet" {
        return false;
    }
    let Some(pod) = object.pointer_mut("/spec/template/spec") else {
        return false;
    };
    let mut changed = false;
    if let Some(containers) = pod.get_mut("containers").and_then(Value::as_array_mut) {
        for c in containers {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            if !images.iter().any(|i| i == image) {
                continue;
            }
            changed = true;
            upsert_by_name(c, "env", json!({"name": "GOCOVERDIR", "value": COVERDATA}));
            upsert_by_name(
                c,
                "volumeMounts",
                json!({"name": VOLUME, "mountPath": COVERDATA}),
            );
            let sc = c
                .as_object_mut()
                .expect("a container is an object")
                .entry("securityContext")
                .or_insert_with(|| json!({}));
            if let Some(sc) = sc.as_object_mut() {
                sc.insert("runAsUser".into(), json!(0));
            }
        }
    }
    if changed {
        upsert_by_name(
            pod,
            "volumes",
            json!({"name": VOLUME, "hostPath": {"path": COVERDATA, "type": "DirectoryOrCreate"}}),
        );
    }
    changed
}

/// Replace the list item with the same `name`, or append it.
fn upsert_by_name(parent: &mut Value, list: &str, item: Value) {
    let Some(obj) = parent.as_object_mut() else {
        return;
    };
    let arr = obj.entry(list).or_insert_with(|| json!([]));
    if !arr.is_array() {
        *arr = json!([]);
    }
    let arr = arr.as_array_mut().expect("made an array above");
    match arr.iter_mut().find(|x| x.get("name") == item.get("name")) {
        Some(existing) => *existing = item,
        None => arr.push(item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sp"},
            "spec": {"template": {"spec": {
                "containers": [
                    {"name": "ctl", "image": "localhost/kprov/sp:kprov-1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox:1"}
                ],
                "volumes": [{"name": "config", "configMap": {"name": "c"}}]
            }}}
        })
    }

    #[test]
    fn coverage_changes_exactly_the_instrumented_containers() {
        let mut d = deployment();
        assert!(instrument(&mut d, &["localhost/kprov/sp:kprov-1".into()]));
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "GOCOVERDIR", "value": "/coverdata"}])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!([{"name": "coverdata", "mountPath": "/coverdata"}])
        );
        assert_eq!(
            pod["containers"][0]["securityContext"],
            json!({"runAsUser": 0})
        );
        assert_eq!(
            pod["containers"][1],
            json!({"name": "sidecar", "image": "busybox:1"})
        );
        assert_eq!(
            pod["volumes"][1],
            json!({"name": "coverdata", "hostPath": {"path": "/coverdata", "type": "DirectoryOrCreate"}})
        );
        // Idempotent: a second pass adds nothing.
        let once = d.clone();
        instrument(&mut d, &["localhost/kprov/sp:kprov-1".into()]);
        assert_eq!(d, once);
    }

    #[test]
    fn other_images_and_kinds_are_left_alone() {
        let mut d = deployment();
        assert!(!instrument(
            &mut d,
            &["localhost/kprov/other:kprov-2".into()]
        ));
        assert_eq!(d, deployment());
        let mut svc = json!({"kind": "Service", "spec": {}});
        assert!(!instrument(&mut svc, &["x".into()]));
    }
}
