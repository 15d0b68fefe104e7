//! `Status` failures worded as the real apiserver words them.

use serde_json::{Value, json};

use crate::registry::ResourceType;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn status_body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        // Some failures (a typed patch that cannot be built) carry no reason at all.
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.group_resource()),
        )
        .with_details(details(rt, name))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    /// Unknown path or resource: the apiserver's generic 404.
    pub fn no_such_resource() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.group_resource()),
        )
        .with_details(details(rt, name))
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.group_resource()
            ),
        )
        .with_details(details(rt, name))
    }

    /// Server-side apply conflicts with other field managers, worded as the apiserver's
    /// field manager words them: `(manager, operation, apiVersion, field path)`; an Update
    /// manager is named with the apiVersion it used, an Apply manager by name only.
    pub fn apply_conflicts(conflicts: &[(String, String, String, String)]) -> Self {
        let who = |manager: &str, operation: &str, api_version: &str| {
            if operation == "Update" {
                format!("\"{manager}\" using {api_version}")
            } else {
                format!("\"{manager}\"")
            }
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, op, v, field)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", who(m, op, v)), "field": field})
            })
            .collect();
        let message = match conflicts {
            [(m, op, v, field)] => {
                format!(
                    "Apply failed with 1 conflict: conflict with {}: {field}",
                    who(m, op, v)
                )
            }
            _ => {
                // Grouped by manager, managers sorted, as the apiserver prints them.
                let mut by_manager: std::collections::BTreeMap<String, Vec<&str>> =
                    Default::default();
                for (m, op, v, field) in conflicts {
                    by_manager.entry(who(m, op, v)).or_default().push(field);
                }
                let mut lines = vec![];
                for (manager, fields) in by_manager {
                    lines.push(format!("conflicts with {manager}:"));
                    lines.extend(fields.iter().map(|f| format!("- {f}")));
                }
                format!(
                    "Apply failed with {} conflicts: {}",
                    conflicts.len(),
                    lines.join("\n")
                )
            }
        };
        ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn invalid(rt: &ResourceType, name: &str, field: &str, detail: &str) -> Self {
        Self::invalid_because(rt, name, field, "FieldValueInvalid", detail)
    }

    /// A 422 with one cause; `reason` is the cause type (`FieldValueInvalid`,
    /// `FieldValueTooLong`, `FieldValueRequired`…).
    pub fn invalid_because(
        rt: &ResourceType,
        name: &str,
        field: &str,
        reason: &str,
        detail: &str,
    ) -> Self {
        let kind = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let cause = format!("{field}: {detail}");
        let mut d = json!({
            "name": name,
            "kind": rt.kind,
            "causes": [{"reason": reason, "message": detail, "field": field}],
        });
        // StatusDetails.group is omitted when empty (the core group).
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {cause}"),
        )
        .with_details(d)
    }

    /// Server-side apply of a body that does not fit the type's schema. The apiserver
    /// answers 500 with no reason; retrying cannot help. `errors` are `<path>: <why>`.
    pub fn typed_patch(
        ns: &str,
        name: &str,
        api_version: &str,
        kind: &str,
        errors: &[String],
    ) -> Self {
        let what = match errors {
            [one] => one.clone(),
            many => format!("errors:\n  {}", many.join("\n  ")),
        };
        ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({ns}/{name}; {api_version}, Kind={kind}): {what}"
            ),
        )
    }

    /// An admission webhook that could not be called (failurePolicy Fail).
    pub fn webhook_failed(webhook: &str, why: &str) -> Self {
        let msg = format!("failed calling webhook \"{webhook}\": {why}");
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
        )
        .with_details(json!({"causes": [{"message": msg}]}))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"
            ),
        )
    }

    pub fn namespace_terminating(rt: &ResourceType, name: &str, ns: &str) -> Self {
        let mut d = details(rt, name);
        d["causes"] = json!([{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {ns} is being terminated"),
            "field": "metadata.namespace",
        }]);
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.group_resource()
            ),
        )
        .with_details(d)
    }

    pub fn gone(requested: u64, oldest: u64) -> Self {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = ApiError::new(429, "TooManyRequests", "Too many requests, please try again later. (injected by kube-double)")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "injected by kube-double"}], "retryAfterSeconds": retry_after}));
        e.retry_after = Some(retry_after);
        e
    }

    pub fn injected(code: u16) -> Self {
        let reason = match code {
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            409 => "Conflict",
            403 => "Forbidden",
            401 => "Unauthorized",
            404 => "NotFound",
            400 => "BadRequest",
            _ => "Unknown",
        };
        let message = match code {
            500 => "Internal error occurred: fault injected by kube-double".to_string(),
            _ => format!("fault injected by kube-double (HTTP {code})"),
        };
        ApiError::new(code, reason, message)
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}
