//! The apiserver's validation of a write, for the rules kprov runs into: a ConfigMap's size,
//! a Job's immutable pod template, and NodePorts already allocated to another Service.
//! Runs on the defaulted object, as the apiserver validates after defaulting.

use serde_json::Value;

use crate::errors::ApiError;
use crate::registry::ResourceType;
use crate::store::Store;
use crate::util::meta_str;

/// ConfigMaps (and Secrets) hold at most 1 MiB of data.
const MAX_DATA_BYTES: usize = 1 << 20;

pub fn check(
    store: &Store,
    rt: &ResourceType,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let name = meta_str(new, "name");
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "configmaps") => data_size(rt, name, new, &["data", "binaryData"], "[]"),
        ("", "secrets") => data_size(rt, name, new, &["data"], "data"),
        ("batch", "jobs") => job_template(rt, name, old, new),
        ("", "services") => node_ports(store, rt, name, new),
        _ => Ok(()),
    }
}

fn data_size(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    fields: &[&str],
    field_path: &str,
) -> Result<(), ApiError> {
    let total: usize = fields
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_object))
        .flatten()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > MAX_DATA_BYTES {
        return Err(ApiError::invalid_because(
            rt,
            name,
            field_path,
            "FieldValueTooLong",
            &format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A Job's pod template cannot change once the Job exists.
fn job_template(
    rt: &ResourceType,
    name: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let Some(old) = old else { return Ok(()) };
    let (before, after) = (old.pointer("/spec/template"), new.pointer("/spec/template"));
    if before == after {
        return Ok(());
    }
    // The apiserver prints its internal Go struct here; the double prints the JSON.
    let shown = after.map(Value::to_string).unwrap_or_else(|| "null".into());
    Err(ApiError::invalid(
        rt,
        name,
        "spec.template",
        &format!("Invalid value: {shown}: field is immutable"),
    ))
}

/// A nodePort another Service holds is refused, naming the first offending port.
fn node_ports(store: &Store, rt: &ResourceType, name: &str, svc: &Value) -> Result<(), ApiError> {
    let ns = meta_str(svc, "namespace");
    let taken: Vec<u64> = store
        .list("services", None)
        .iter()
        .filter(|s| !(meta_str(s, "namespace") == ns && meta_str(s, "name") == name))
        .flat_map(|s| {
            s.pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
    for (i, p) in ports.into_iter().flatten().enumerate() {
        if let Some(port) = p["nodePort"].as_u64()
            && taken.contains(&port)
        {
            return Err(ApiError::invalid(
                rt,
                name,
                &format!("spec.ports[{i}].nodePort"),
                &format!("Invalid value: {port}: provided port is already allocated"),
            ));
        }
    }
    Ok(())
}
