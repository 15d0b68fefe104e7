//! Masks what differs between any two servers — uids, resourceVersions, timestamps, tokens,
//! allocated IPs — so answers compare by shape and meaning.

use serde_json::{Map, Value};

const VOLATILE_KEYS: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "lastTransitionTime",
    "lastUpdateTime",
    "lastProbeTime",
    "startTime",
    "time",
    "token",
    "expirationTimestamp",
    "clusterIP",
    "clusterIPs",
    "storageVersionHash",
];

pub fn mask(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let masked = if VOLATILE_KEYS.contains(&k.as_str()) && !v.is_null() {
                        Value::String("<masked>".into())
                    } else {
                        mask(v)
                    };
                    (mask_text(k), masked)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        Value::String(s) => Value::String(mask_text(s)),
        other => other.clone(),
    }
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() >= 36
        && s[..36].iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Uids anywhere in a text, and the value a "field is immutable" message prints (the
/// apiserver prints its internal Go struct there).
pub fn mask_text(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if is_uuid(&bytes[i..]) {
            out.push_str("<uid>");
            i += 36;
        } else {
            let ch = s[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out = mask_template_hashes(&out);
    if let (Some(a), Some(b)) = (
        out.find("Invalid value: "),
        out.rfind(": field is immutable"),
    ) && a + 15 <= b
    {
        out.replace_range(a + 15..b, "<value>");
    }
    out
}

/// A generated name's hash suffix at the end of a quoted name (`"web-5789bdd7b8"`): 9–10
/// lowercase alphanumerics with at least one digit, so words like "controller" stay.
fn mask_template_hashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        let masked = part.rsplit_once('-').filter(|(_, h)| {
            (9..=10).contains(&h.len())
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && h.bytes().any(|b| b.is_ascii_digit())
        });
        match masked {
            Some((head, _)) if i % 2 == 1 => {
                out.push_str(head);
                out.push_str("-<hash>");
            }
            _ => out.push_str(part),
        }
    }
    out
}

#[test]
fn masks_uids_values_and_volatile_fields() {
    let v = serde_json::json!({"uid": "x", "m": "a 0364ac60-7b3e-4dcd-97ac-e0cbcbe53f26 b",
        "e": "spec.template: Invalid value: {\"a\":1}: field is immutable",
        "rs": "ReplicaSet \"web-5789bdd7b8\" is progressing.", "w": "kube-controller-manager"});
    assert_eq!(
        mask(&v),
        serde_json::json!({"uid": "<masked>", "m": "a <uid> b", "e": "spec.template: Invalid value: <value>: field is immutable",
            "rs": "ReplicaSet \"web-<hash>\" is progressing.", "w": "kube-controller-manager"})
    );
}
