//! TokenRequest (`POST …/serviceaccounts/<name>/token`): a JWT-shaped token for a
//! ServiceAccount that exists, with the claims the apiserver puts in one. Nothing verifies
//! it — the double authorises every request — so the signature is random bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::registry::ResourceType;
use crate::store::Store;
use crate::util::{meta_str, new_uid, now_rfc3339, random_u64, rfc3339};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub fn request(
    store: &Store,
    sa_rt: &ResourceType,
    ns: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let sa = store
        .get("serviceaccounts", ns, name)
        .ok_or_else(|| ApiError::not_found(sa_rt, name))?;
    let audiences = body
        .pointer("/spec/audiences")
        .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .unwrap_or_else(|| json!([ISSUER]));
    let seconds = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(3600);
    if seconds < 600 {
        let rt = ResourceType {
            group: "authentication.k8s.io".into(),
            kind: "TokenRequest".into(),
            ..sa_rt.clone()
        };
        return Err(ApiError::invalid(
            &rt,
            name,
            "spec.expirationSeconds",
            &format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    let now = SystemTime::now();
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let uid = meta_str(&sa, "uid");
    let claims = json!({
        "aud": audiences, "exp": iat + seconds, "iat": iat, "nbf": iat, "iss": ISSUER,
        "jti": new_uid(),
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signature: Vec<u8> = (0..32).flat_map(|_| random_u64().to_le_bytes()).collect();
    let token = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","kid":"kube-double"}"#),
        b64(claims.to_string().as_bytes()),
        b64(&signature)
    );
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": now_rfc3339()},
        "spec": {"audiences": audiences, "expirationSeconds": seconds,
                 "boundObjectRef": body.pointer("/spec/boundObjectRef").cloned().unwrap_or(Value::Null)},
        "status": {"token": token, "expirationTimestamp": rfc3339(now + Duration::from_secs(seconds))},
    }))
}
