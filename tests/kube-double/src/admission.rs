//! Admission webhooks, modelled without calling anything. The double stores Mutating- and
//! ValidatingWebhookConfigurations as the apiserver does (a caBundle that is not a
//! certificate is accepted), and a write a webhook intercepts then fares as it would on a
//! cluster where the webhook cannot be reached:
//! - caBundle present but not PEM: 500 `failed calling webhook "<name>": could not get REST
//!   client: unable to load root certificates: unable to parse bytes as PEM block`;
//! - service-backed and the Service does not exist: 500 `failed calling webhook "<name>":
//!   failed to call webhook: Post "https://<svc>.<ns>.svc:<port><path>?timeout=<t>s":
//!   service "<svc>" not found`;
//! - otherwise (PEM caBundle or none, and the Service exists, or a URL) it allows the request.
//!
//! `failurePolicy: Ignore` turns a failure into "allowed". Rules match on operations,
//! apiGroups, apiVersions, resources (with `*`, `*/*` and subresources) and scope;
//! namespaceSelector and objectSelector are honoured for their label selectors.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::registry::ResourceType;
use crate::selector::LabelSelector;
use crate::store::Store;
use crate::util::meta_str;

const CONFIGS: [&str; 2] = [
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
];

/// Runs the webhooks that intercept `operation` (CREATE, UPDATE, DELETE) on `obj`.
pub fn admit(
    store: &Store,
    rt: &ResourceType,
    operation: &str,
    subresource: Option<&str>,
    obj: &Value,
) -> Result<(), ApiError> {
    // Webhook configurations and reviews are never sent to webhooks (the apiserver exempts them).
    if rt.group == "admissionregistration.k8s.io" || rt.create_only {
        return Ok(());
    }
    for gr in CONFIGS {
        for config in store.list(gr, None) {
            for hook in config["webhooks"].as_array().into_iter().flatten() {
                if !intercepts(store, hook, rt, operation, subresource, obj) {
                    continue;
                }
                if let Err(why) = call(store, hook)
                    && hook["failurePolicy"].as_str() != Some("Ignore")
                {
                    return Err(ApiError::webhook_failed(
                        hook["name"].as_str().unwrap_or_default(),
                        &why,
                    ));
                }
            }
        }
    }
    Ok(())
}

fn listed(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v == "*" || v == want))
}

fn resource_matches(pattern: &str, plural: &str, sub: Option<&str>) -> bool {
    let (p_res, p_sub) = match pattern.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (pattern, None),
    };
    let res_ok = p_res == "*" || p_res == plural;
    match (p_sub, sub) {
        (None, None) => res_ok,
        (Some(ps), Some(s)) => res_ok && (ps == "*" || ps == s),
        _ => false,
    }
}

fn intercepts(
    store: &Store,
    hook: &Value,
    rt: &ResourceType,
    operation: &str,
    subresource: Option<&str>,
    obj: &Value,
) -> bool {
    let rule_matches = |rule: &Value| {
        let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
            "Cluster" => !rt.namespaced,
            "Namespaced" => rt.namespaced,
            _ => true,
        };
        scope_ok
            && listed(&rule["operations"], operation)
            && listed(&rule["apiGroups"], &rt.group)
            && listed(&rule["apiVersions"], &rt.version)
            && rule["resources"].as_array().is_some_and(|rs| {
                rs.iter()
                    .filter_map(Value::as_str)
                    .any(|r| resource_matches(r, &rt.plural, subresource))
            })
    };
    if !hook["rules"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(rule_matches))
    {
        return false;
    }
    let selects = |selector: &Value, target: &Value| {
        selector.as_object().is_none_or(|m| m.is_empty())
            || LabelSelector::from_object(selector).matches(target)
    };
    if !selects(&hook["objectSelector"], obj) {
        return false;
    }
    let ns = meta_str(obj, "namespace");
    if rt.namespaced && !ns.is_empty() {
        let ns_obj = store
            .get("namespaces", "", ns)
            .map(|n| (*n).clone())
            .unwrap_or_else(|| json!({}));
        return selects(&hook["namespaceSelector"], &ns_obj);
    }
    true
}

/// What calling the webhook would give: Ok (allowed) or the client's error.
fn call(store: &Store, hook: &Value) -> Result<(), String> {
    let client = &hook["clientConfig"];
    if let Some(bundle) = client["caBundle"].as_str().filter(|b| !b.is_empty()) {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .unwrap_or_default();
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err("could not get REST client: unable to load root certificates: unable to parse bytes as PEM block".into());
        }
    }
    let svc = &client["service"];
    let Some(name) = svc["name"].as_str() else {
        return Ok(()); // a URL: the double cannot tell whether it answers; it allows
    };
    let ns = svc["namespace"].as_str().unwrap_or("default");
    if store.get("services", ns, name).is_some() {
        return Ok(());
    }
    let port = svc["port"].as_u64().unwrap_or(443);
    let path = svc["path"].as_str().unwrap_or("");
    let timeout = hook["timeoutSeconds"].as_u64().unwrap_or(10);
    Err(format!(
        "failed to call webhook: Post \"https://{name}.{ns}.svc:{port}{path}?timeout={timeout}s\": service \"{name}\" not found"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_match_as_admission_rules_do() {
        assert!(resource_matches("widgets", "widgets", None));
        assert!(!resource_matches("widgets", "widgets", Some("status")));
        assert!(resource_matches("widgets/*", "widgets", Some("status")));
        assert!(resource_matches("*", "pods", None));
        assert!(!resource_matches("*", "pods", Some("status")));
        assert!(resource_matches("*/*", "pods", Some("status")));
        assert!(resource_matches("*/status", "pods", Some("status")));
    }

    #[test]
    fn a_bundle_that_is_not_pem_fails_the_call() {
        let store = Store::new(16);
        let hook = json!({"name": "v.x", "clientConfig": {"caBundle": "bm90IGEgY2VydA==", "service": {"name": "s", "namespace": "n"}}});
        assert!(
            call(&store, &hook)
                .unwrap_err()
                .contains("unable to parse bytes as PEM block")
        );
        let pem = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let hook = json!({"name": "v.x", "clientConfig": {"caBundle": pem, "service": {"name": "s", "namespace": "n", "path": "/v"}}});
        assert_eq!(
            call(&store, &hook).unwrap_err(),
            "failed to call webhook: Post \"https://s.n.svc:443/v?timeout=10s\": service \"s\" not found"
        );
    }
}
