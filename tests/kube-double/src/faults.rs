//! Injected API faults: error responses (429 with Retry-After, 500, …) and latency, set by
//! tests through `POST /double/faults`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::errors::ApiError;

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// HTTP status to answer with; None: latency only.
    pub status: Option<u16>,
    /// How many matching requests it affects; None: until cleared.
    pub remaining: Option<u64>,
    pub path_prefix: String,
    pub method: Option<String>,
    pub latency: Duration,
    pub retry_after_s: u64,
}

impl Fault {
    pub fn from_json(v: &Value) -> Result<Fault, ApiError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request("a fault is a JSON object"))?;
        for key in obj.keys() {
            if ![
                "status",
                "count",
                "path_prefix",
                "method",
                "latency_ms",
                "retry_after_s",
            ]
            .contains(&key.as_str())
            {
                return Err(ApiError::bad_request(format!(
                    "unknown fault field {key:?}"
                )));
            }
        }
        let status = match v.get("status") {
            None | Some(Value::Null) => None,
            Some(s) => Some(
                s.as_u64()
                    .filter(|c| (400..600).contains(c))
                    .ok_or_else(|| {
                        ApiError::bad_request("fault status must be an HTTP error code (400-599)")
                    })? as u16,
            ),
        };
        let latency =
            Duration::from_millis(v.get("latency_ms").and_then(Value::as_u64).unwrap_or(0));
        if status.is_none() && latency.is_zero() {
            return Err(ApiError::bad_request(
                "a fault needs a status, a latency_ms, or both",
            ));
        }
        Ok(Fault {
            status,
            remaining: v.get("count").and_then(Value::as_u64),
            path_prefix: v
                .get("path_prefix")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string(),
            method: v
                .get("method")
                .and_then(Value::as_str)
                .map(|m| m.to_uppercase()),
            latency,
            retry_after_s: v.get("retry_after_s").and_then(Value::as_u64).unwrap_or(1),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "status": self.status,
            "count": self.remaining,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "latency_ms": self.latency.as_millis() as u64,
            "retry_after_s": self.retry_after_s,
        })
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        path.starts_with(&self.path_prefix) && self.method.as_deref().is_none_or(|m| m == method)
    }
}

/// What the first matching faults do to this request: total latency, then maybe an error.
/// Consumes one use of each fault that applied.
pub fn take(faults: &mut Vec<Fault>, method: &str, path: &str) -> (Duration, Option<ApiError>) {
    let mut latency = Duration::ZERO;
    let mut error = None;
    for f in faults.iter_mut().filter(|f| f.matches(method, path)) {
        if f.remaining == Some(0) {
            continue;
        }
        if f.status.is_some() && error.is_some() {
            continue;
        }
        latency += f.latency;
        if let Some(code) = f.status {
            error = Some(if code == 429 {
                ApiError::too_many_requests(f.retry_after_s)
            } else {
                ApiError::injected(code)
            });
        }
        if let Some(n) = f.remaining.as_mut() {
            *n -= 1;
        }
    }
    faults.retain(|f| f.remaining != Some(0));
    (latency, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_answers_that_many_matching_requests_then_goes() {
        let mut faults = vec![
            Fault::from_json(&json!({"status": 429, "count": 2, "path_prefix": "/apis/apps"}))
                .unwrap(),
        ];
        assert!(take(&mut faults, "GET", "/api/v1/pods").1.is_none());
        let (_, e) = take(
            &mut faults,
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/x",
        );
        assert_eq!(e.unwrap().retry_after, Some(1));
        assert!(take(&mut faults, "GET", "/apis/apps/v1").1.is_some());
        assert!(take(&mut faults, "GET", "/apis/apps/v1").1.is_none());
        assert!(faults.is_empty());
    }

    #[test]
    fn latency_faults_add_up_and_stay_until_cleared() {
        let mut faults = vec![Fault::from_json(&json!({"latency_ms": 50})).unwrap()];
        for _ in 0..3 {
            let (latency, e) = take(&mut faults, "GET", "/version");
            assert_eq!(latency, Duration::from_millis(50));
            assert!(e.is_none());
        }
        assert!(Fault::from_json(&json!({"path_prefix": "/"})).is_err());
        assert!(Fault::from_json(&json!({"status": 200})).is_err());
    }
}
