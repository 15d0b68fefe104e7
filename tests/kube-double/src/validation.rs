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
        ("", "secrets") => {
            data_size(rt, name, new, &["data"], "data")?;
            registry_config(rt, name, new)
        }
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

/// An image pull Secret (`kubernetes.io/dockerconfigjson`, `kubernetes.io/dockercfg`) holds its
/// type's key, and that key's value (base64 in `data`) is JSON, as the apiserver's
/// ValidateSecret requires; the value itself is never quoted back.
fn registry_config(rt: &ResourceType, name: &str, obj: &Value) -> Result<(), ApiError> {
    use base64::Engine as _;
    let key = match obj.get("type").and_then(Value::as_str) {
        Some("kubernetes.io/dockerconfigjson") => ".dockerconfigjson",
        Some("kubernetes.io/dockercfg") => ".dockercfg",
        _ => return Ok(()),
    };
    let field = format!("data[{key}]");
    let Some(value) = obj.pointer(&format!("/data/{key}")).and_then(Value::as_str) else {
        return Err(ApiError::invalid_because(
            rt,
            name,
            &field,
            "FieldValueRequired",
            "Required value",
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap_or_default();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::invalid_because(
            rt,
            name,
            &field,
            "FieldValueInvalid",
            &format!("Invalid value: \"<secret contents redacted>\": {e}"),
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn secret(type_: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"},
            "type": type_, "data": data})
    }

    #[test]
    fn an_image_pull_secret_needs_its_key_and_json_in_it() {
        let store = Store::new(10);
        let rt = crate::registry::builtins()
            .into_iter()
            .find(|t| t.plural == "secrets")
            .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let t = "kubernetes.io/dockerconfigjson";
        let ok = secret(t, json!({".dockerconfigjson": b64(r#"{"auths": {}}"#)}));
        assert!(check(&store, &rt, None, &ok).is_ok());
        let missing = check(&store, &rt, None, &secret(t, json!({"other": b64("x")})));
        assert!(
            format!("{:?}", missing.unwrap_err())
                .contains("data[.dockerconfigjson]: Required value")
        );
        let bad = check(
            &store,
            &rt,
            None,
            &secret(t, json!({".dockerconfigjson": b64("token=s3cret")})),
        );
        let bad = format!("{:?}", bad.unwrap_err());
        assert!(
            bad.contains("<secret contents redacted>") && !bad.contains("s3cret"),
            "{bad}"
        );
        let opaque = secret("Opaque", json!({"k": b64("not json")}));
        assert!(check(&store, &rt, None, &opaque).is_ok());
    }
}
