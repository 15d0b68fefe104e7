//! Image pull Secrets given to ServiceAccounts (`config.secrets[].serviceAccounts`): the
//! Secret is added to each ServiceAccount's `imagePullSecrets`, as
//! `kubectl patch serviceaccount NAME -p '{"imagePullSecrets": [{"name": SECRET}]}'` does,
//! keeping the others the list has. A ServiceAccount is waited for until it exists (the
//! namespace's `default` is made by the controller manager shortly after the namespace).
//!
//! The change is a merge patch, not a server-side apply: the ServiceAccount belongs to whoever
//! made it (a release, the controller manager), and an apply by kprov's field manager would
//! take over the fields that release set.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::adapters::kube::{Kube, Object, ObjectRef};
use crate::engine::{TaskCtx, TaskError};
use crate::provision::render::PullSecretLink;
use crate::tasks::wait::{self, Outcome, State};

/// How long a named ServiceAccount may take to appear.
pub const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// The `imagePullSecrets` list with `secret` added, or `None` when it is there already.
pub fn with_pull_secret(current: Option<&Value>, secret: &str) -> Option<Vec<Value>> {
    let mut list: Vec<Value> = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list
        .iter()
        .any(|e| e.get("name").and_then(Value::as_str) == Some(secret))
    {
        return None;
    }
    list.push(json!({"name": secret}));
    Some(list)
}

/// Adds the link's Secret to its ServiceAccount once that exists; `true` when it changed.
pub async fn link(
    kube: &Kube,
    l: &PullSecretLink,
    timeout: Duration,
    ctx: &TaskCtx,
) -> Result<bool, TaskError> {
    let r = ObjectRef::new(
        "v1",
        "ServiceAccount",
        Some(&l.namespace),
        &l.service_account,
    );
    let judge = |o: Option<&Object>, _: &[Object]| match o {
        None => State::Pending(format!("{r} does not exist")),
        Some(_) => State::Ready,
    };
    let what = format!("give {r} the image pull Secret {}", l.secret);
    match wait::watch_until(kube, &r, Instant::now() + timeout, &ctx.cancel, &judge).await {
        Outcome::Ready => {}
        other => return Err(TaskError::fatal(format!("{what}: {}", other.describe()))),
    }
    // Each try reads it afresh: a conflicting writer (the resourceVersion moved) or a busy
    // server makes the next one see the list as it is now.
    for attempt in 1.. {
        let sa = kube
            .get(&r)
            .await
            .map_err(|e| TaskError::fatal(format!("{what}: {e}")))?
            .ok_or_else(|| TaskError::fatal(format!("{what}: it was deleted")))?;
        let Some(list) = with_pull_secret(sa.get("/imagePullSecrets"), &l.secret) else {
            return Ok(false);
        };
        let mut patch = json!({"imagePullSecrets": list});
        if let Some(rv) = sa.resource_version() {
            patch["metadata"] = json!({"resourceVersion": rv});
        }
        match kube.merge_patch(&r, &patch).await {
            Ok(()) => return Ok(true),
            Err(e) if e.is_transient() && attempt < PATCH_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => return Err(TaskError::fatal(format!("{what}: {e}"))),
        }
    }
    unreachable!("the loop returns")
}

/// Tries of the patch when the ServiceAccount changed under it (the first included).
const PATCH_ATTEMPTS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_secret_is_added_once_and_the_others_are_kept() {
        assert_eq!(
            with_pull_secret(None, "quay"),
            Some(vec![json!({"name": "quay"})])
        );
        let current = json!([{"name": "other"}]);
        assert_eq!(
            with_pull_secret(Some(&current), "quay"),
            Some(vec![json!({"name": "other"}), json!({"name": "quay"})])
        );
        let linked = json!([{"name": "quay"}]);
        assert_eq!(with_pull_secret(Some(&linked), "quay"), None);
    }
}
