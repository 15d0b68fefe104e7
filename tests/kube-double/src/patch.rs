//! Patches (JSON merge, strategic merge, JSON patch) and server-side apply's field ownership.
//!
//! Field ownership is tracked per manager as a set of leaf paths; lists are atomic (a real
//! apiserver merges lists such as `containers` by key, the double replaces them whole).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::errors::ApiError;

pub type Path = Vec<String>;

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn named_list(v: &Value) -> bool {
    v.as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter()
                .all(|e| e.get("name").is_some_and(Value::is_string))
    })
}

/// Strategic merge patch, approximated: JSON merge, except that lists of objects keyed by
/// `name` (containers, env, ports, volumes) are merged element by element; `$` directives
/// other than `$patch: delete` on list elements are ignored.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                } else if named_list(v) && t.get(k).is_some_and(named_list) {
                    let existing = t
                        .get_mut(k)
                        .and_then(Value::as_array_mut)
                        .expect("checked list");
                    for item in v.as_array().expect("checked list") {
                        let name = item["name"].clone();
                        let pos = existing.iter().position(|e| e["name"] == name);
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                existing.remove(i);
                            }
                            (Some(i), false) => strategic_merge_patch(&mut existing[i], item),
                            (None, true) => {}
                            (None, false) => {
                                let mut fresh = Value::Object(Map::new());
                                strategic_merge_patch(&mut fresh, item);
                                existing.push(fresh);
                            }
                        }
                    }
                } else {
                    strategic_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn pointer_parts(ptr: &str) -> Result<Vec<String>, ApiError> {
    if ptr.is_empty() {
        return Ok(vec![]);
    }
    let rest = ptr
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {ptr:?}")))?;
    Ok(rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn json_patch_add(doc: &mut Value, parts: &[String], value: Value) -> Result<(), ApiError> {
    let Some((last, parents)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = parents
        .iter()
        .try_fold(doc, |cur, p| match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("json patch: path not found: /{}", parts.join("/")),
            )
        })?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse().unwrap_or(usize::MAX)
            };
            if i > a.len() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "json patch: index out of range",
                ));
            }
            a.insert(i, value);
        }
        _ => {
            return Err(ApiError::new(
                422,
                "Invalid",
                "json patch: parent is not a container",
            ));
        }
    }
    Ok(())
}

fn json_patch_remove(doc: &mut Value, parts: &[String]) -> Result<Value, ApiError> {
    let (last, parents) = parts
        .split_last()
        .ok_or_else(|| ApiError::new(422, "Invalid", "json patch: cannot remove the root"))?;
    let missing = || {
        ApiError::new(
            422,
            "Invalid",
            format!("json patch: path not found: /{}", parts.join("/")),
        )
    };
    let parent = parents
        .iter()
        .try_fold(doc, |cur, p| match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        })
        .ok_or_else(missing)?;
    match parent {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let path = pointer_parts(op["path"].as_str().unwrap_or_default())?;
        match op["op"].as_str().unwrap_or_default() {
            "add" => json_patch_add(doc, &path, op["value"].clone())?,
            "remove" => {
                json_patch_remove(doc, &path)?;
            }
            "replace" => {
                json_patch_remove(doc, &path)?;
                json_patch_add(doc, &path, op["value"].clone())?;
            }
            "move" => {
                let from = pointer_parts(op["from"].as_str().unwrap_or_default())?;
                let v = json_patch_remove(doc, &from)?;
                json_patch_add(doc, &path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().unwrap_or_default();
                let v = doc.pointer(from).cloned().ok_or_else(|| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("json patch: path not found: {from}"),
                    )
                })?;
                json_patch_add(doc, &path, v)?;
            }
            "test" => {
                let at = doc.pointer(op["path"].as_str().unwrap_or_default());
                if at != Some(&op["value"]) {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "json patch: test operation failed",
                    ));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "json patch: unknown operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Metadata fields the server owns; never part of a manager's field set.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The leaf paths a (partial) object sets; `scope` picks "status" only, or all but status.
pub fn leaf_paths(obj: &Value, status_only: Option<bool>) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(top) = obj.as_object() else {
        return out;
    };
    for (k, v) in top {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        match status_only {
            Some(true) if k != "status" => continue,
            Some(false) if k == "status" => continue,
            _ => {}
        }
        if k == "metadata" {
            for (mk, mv) in v.as_object().into_iter().flatten() {
                if !SERVER_META.contains(&mk.as_str()) {
                    collect(mv, vec![k.clone(), mk.clone()], &mut out);
                }
            }
        } else {
            collect(v, vec![k.clone()], &mut out);
        }
    }
    out
}

fn collect(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect(child, p, out);
            }
        }
        Value::Null => {}
        _ => {
            out.insert(path);
        }
    }
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, k| cur.get(k))
}

/// Removes a leaf, then any objects it leaves empty.
pub fn remove_path(obj: &mut Value, path: &[String]) {
    fn go(cur: &mut Value, path: &[String]) -> bool {
        let Some(map) = cur.as_object_mut() else {
            return false;
        };
        match path {
            [] => false,
            [last] => {
                map.remove(last);
                map.is_empty()
            }
            [first, rest @ ..] => {
                let now_empty = map.get_mut(first).is_some_and(|child| go(child, rest));
                if now_empty {
                    map.remove(first);
                }
                map.is_empty()
            }
        }
    }
    go(obj, path);
}

/// Deep merge for apply: objects merge, everything else (lists included) replaces.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        apply_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

/// `{"f:spec":{"f:replicas":{}}}` from a set of paths.
pub fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in paths {
        let mut cur = &mut root;
        for key in path {
            cur = cur
                .as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

pub fn paths_from_fields_v1(fields: &Value) -> BTreeSet<Path> {
    fn go(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path);
            }
            return;
        }
        for (k, child) in children {
            match k.strip_prefix("f:") {
                Some(name) => {
                    let mut p = path.clone();
                    p.push(name.to_string());
                    go(child, p, out);
                }
                // Keyed list elements (from a real apiserver's field sets): own the whole list.
                None => {
                    if !path.is_empty() {
                        out.insert(path.clone());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    go(fields, vec![], &mut out);
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct ManagerEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub paths: BTreeSet<Path>,
}

impl ManagerEntry {
    fn same_key(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

pub fn read_managed_fields(obj: &Value) -> Vec<ManagerEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| ManagerEntry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().map(String::from),
            paths: paths_from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_managed_fields(obj: &mut Value, entries: &[ManagerEntry]) {
    let meta = crate::util::obj_at(obj, "metadata");
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.paths.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(&e.paths),
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

pub fn path_text(p: &Path) -> String {
    format!(".{}", p.join("."))
}

/// Server-side apply of `applied` by `manager` onto `old` (None: create).
/// Returns the new object (managedFields updated, server fields untouched).
pub fn server_side_apply(
    old: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    status_sub: bool,
    conflict: impl Fn(&[(String, String, String, String)]) -> ApiError,
) -> Result<Value, ApiError> {
    let scope = match (subresource, status_sub) {
        (Some("status"), _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let new_paths = leaf_paths(applied, scope);
    let api_version = applied["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut entries = old.map(read_managed_fields).unwrap_or_default();
    let mut obj = old.cloned().unwrap_or_else(|| json!({}));

    // Conflicts: another manager owns a field this apply sets to a different value.
    let mut conflicts = vec![];
    for e in entries
        .iter()
        .filter(|e| !e.same_key(manager, "Apply", subresource))
    {
        for p in e.paths.intersection(&new_paths) {
            if value_at(&obj, p) != value_at(applied, p) {
                conflicts.push((
                    e.manager.clone(),
                    e.operation.clone(),
                    e.api_version.clone(),
                    path_text(p),
                ));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict(&conflicts));
        }
        for e in entries
            .iter_mut()
            .filter(|e| !e.same_key(manager, "Apply", subresource))
        {
            e.paths
                .retain(|p| !new_paths.contains(p) || value_at(&obj, p) == value_at(applied, p));
        }
    }

    // Fields this manager applied before and dropped now are removed unless someone else owns them.
    let previous = entries
        .iter()
        .find(|e| e.same_key(manager, "Apply", subresource))
        .map(|e| e.paths.clone())
        .unwrap_or_default();
    for p in previous.difference(&new_paths) {
        let shared = entries
            .iter()
            .any(|e| !e.same_key(manager, "Apply", subresource) && e.paths.contains(p));
        if !shared {
            remove_path(&mut obj, p);
        }
    }
    let mut body = applied.clone();
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in SERVER_META {
            if *k != "name" && *k != "namespace" {
                m.remove(*k);
            }
        }
    }
    if let Some(b) = body.as_object_mut() {
        match scope {
            Some(true) => b.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind"),
            Some(false) => {
                b.remove("status");
            }
            None => {}
        }
    }
    apply_merge(&mut obj, &body);

    let now = crate::util::now_rfc3339();
    match entries
        .iter_mut()
        .find(|e| e.same_key(manager, "Apply", subresource))
    {
        Some(e) => {
            if e.paths != new_paths || old.map(strip_managed) != Some(strip_managed(&obj)) {
                e.time = now;
            }
            e.paths = new_paths;
            e.api_version = api_version;
        }
        None => entries.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version,
            time: now,
            subresource: subresource.map(String::from),
            paths: new_paths,
        }),
    }
    write_managed_fields(&mut obj, &entries);
    Ok(obj)
}

/// Records an Update by `manager`: it takes ownership of every field it changed.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    status_sub: bool,
) {
    let scope = match (subresource, status_sub) {
        (Some("status"), _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let mut entries = old.map(read_managed_fields).unwrap_or_default();
    let new_paths = leaf_paths(new, scope);
    let changed: BTreeSet<Path> = match old {
        Some(o) => new_paths
            .iter()
            .filter(|p| value_at(o, p) != value_at(new, p))
            .cloned()
            .collect(),
        None => new_paths.clone(),
    };
    // Drop ownership of fields that no longer exist.
    let all_new = leaf_paths(new, None);
    for e in entries.iter_mut() {
        e.paths.retain(|p| all_new.contains(p));
    }
    if !changed.is_empty() {
        for e in entries
            .iter_mut()
            .filter(|e| !e.same_key(manager, "Update", subresource))
        {
            e.paths.retain(|p| !changed.contains(p));
        }
        let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
        let now = crate::util::now_rfc3339();
        match entries
            .iter_mut()
            .find(|e| e.same_key(manager, "Update", subresource))
        {
            Some(e) => {
                e.paths.extend(changed);
                e.time = now;
            }
            None => entries.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version,
                time: now,
                subresource: subresource.map(String::from),
                paths: changed,
            }),
        }
    }
    write_managed_fields(new, &entries);
}

pub fn strip_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(c: &[(String, String, String, String)]) -> ApiError {
        ApiError::bad_request(format!("{c:?}"))
    }

    #[test]
    fn merge_patch_removes_nulls_and_replaces_lists() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "l": [9]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "l": [9]}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut t = json!({"containers": [{"name": "a", "image": "x", "args": ["1"]}, {"name": "b", "image": "y"}]});
        strategic_merge_patch(
            &mut t,
            &json!({"containers": [{"name": "a", "image": "z"}]}),
        );
        assert_eq!(
            t["containers"][0],
            json!({"name": "a", "image": "z", "args": ["1"]})
        );
        assert_eq!(t["containers"][1]["name"], "b");
    }

    #[test]
    fn json_patch_adds_replaces_and_removes() {
        let mut t = json!({"spec": {"replicas": 1, "l": [1]}});
        json_patch(
            &mut t,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/l/-", "value": 2},
                {"op": "add", "path": "/metadata", "value": {"labels": {"a/b": "c"}}},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"replicas": 3, "l": [1, 2]}, "metadata": {"labels": {}}})
        );
    }

    #[test]
    fn apply_removes_fields_the_manager_stopped_applying() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let obj = server_side_apply(None, &first, "m", false, None, false, conflict).unwrap();
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let obj =
            server_side_apply(Some(&obj), &second, "m", false, None, false, conflict).unwrap();
        assert_eq!(obj["data"], json!({"a": "1"}));
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {"f:a": {}}})
        );
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let obj = server_side_apply(None, &a, "one", false, None, false, conflict).unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}});
        assert!(server_side_apply(Some(&obj), &b, "two", false, None, false, conflict).is_err());
        let forced = server_side_apply(Some(&obj), &b, "two", true, None, false, conflict).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["two"]);
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"replicas": 1, "template": {"spec": {"containers": [{}]}}}});
        let paths = leaf_paths(&obj, None);
        assert_eq!(paths_from_fields_v1(&fields_v1(&paths)), paths);
    }
}
