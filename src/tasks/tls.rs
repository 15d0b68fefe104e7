//! Generated TLS material, applied as configuration like any other object.
//!
//! For a [`TlsSpec`] in namespace `ns`:
//! - the CA: an ECDSA P-256 certificate in ConfigMap `<caConfigMap>` (key `ca.crt`); its key is
//!   kept in the kprov-owned Secret `<caConfigMap>-kprov-ca` (never outside the cluster);
//! - per service: Secret `<svc>-tls` (kubernetes.io/tls: `tls.crt`, `tls.key`, `ca.crt`), an
//!   ECDSA P-256 leaf signed by the CA with SANs `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`,
//!   `<svc>.<ns>.svc.cluster.local`, `localhost`, `127.0.0.1`;
//! - per signing key: Secret `<name>` (kubernetes.io/tls) with an RSA-2048 key and a
//!   self-signed certificate for it.
//!
//! Stable across re-runs on one cluster: what the cluster already holds is read back and
//! reused (a leaf only while it was issued by the same CA for the same SANs), so a second
//! apply changes nothing. Keys never appear in errors, logs or `Debug` output (see
//! [`Object`]'s `Debug`).

use std::collections::BTreeMap;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, date_time_ymd,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::adapters::kube::{Kube, Object, ObjectRef};
use crate::profile::model::TlsSpec;

const ORIGIN: &str = "generated TLS";
const MANAGED_BY: &str = "kprov";
const CA_HASH: &str = "kprov.dev/ca-sha256";
const SANS: &str = "kprov.dev/sans";

/// A failure to make or read TLS material. Never carries key material.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn err(what: impl std::fmt::Display) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |e| TlsError(format!("{what}: {e}"))
}

/// The SANs of a service's leaf certificate.
pub fn service_sans(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]
}

/// The name of the kprov-owned Secret holding the CA key.
pub fn ca_secret_name(spec: &TlsSpec) -> String {
    format!("{}-kprov-ca", spec.ca_config_map)
}

/// The CA's parameters, the same on every run, so a stored key issues certificates with the
/// same issuer name and key identifier as the stored certificate.
fn ca_params(spec: &TlsSpec) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("kprov {} CA", spec.ca_config_map),
    );
    dn.push(DnType::OrganizationName, "kprov");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2099, 12, 31);
    p
}

/// One leaf certificate to issue: its Secret and SANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub secret: String,
    pub namespace: String,
    pub sans: Vec<String>,
}

/// The leaves of `spec`: `<svc>-tls` with the reference SANs for each of `services`, then each
/// of `certificates` with its own Secret name and SANs (`sans`, already templated, in order).
pub fn leaves(spec: &TlsSpec, namespace: &str, certificate_sans: &[Vec<String>]) -> Vec<Leaf> {
    let mut out: Vec<Leaf> = spec
        .services
        .iter()
        .map(|svc| Leaf {
            secret: format!("{svc}-tls"),
            namespace: namespace.to_string(),
            sans: service_sans(svc, namespace),
        })
        .collect();
    for (c, sans) in spec.certificates.iter().zip(certificate_sans) {
        out.push(Leaf {
            secret: c.secret.clone(),
            namespace: c.namespace.clone().unwrap_or_else(|| namespace.to_string()),
            sans: sans.clone(),
        });
    }
    out
}

/// The objects to apply: the CA key Secret, the CA ConfigMap, leaf and signing Secrets.
pub async fn tls_objects(
    kube: &Kube,
    spec: &TlsSpec,
    namespace: &str,
    leaves: &[Leaf],
) -> Result<Vec<Object>, TlsError> {
    let get = |ns: &str, name: &str| {
        let r = ObjectRef::new("v1", "Secret", Some(ns), name);
        async move { kube.get(&r).await.map_err(|e| TlsError(e.to_string())) }
    };
    let stored_ca = get(namespace, &ca_secret_name(spec)).await?;
    let mut stored_leaves = BTreeMap::new();
    for leaf in leaves {
        if let Some(o) = get(&leaf.namespace, &leaf.secret).await? {
            stored_leaves.insert((leaf.namespace.clone(), leaf.secret.clone()), o);
        }
    }
    let mut signing = BTreeMap::new();
    for name in &spec.signing_keys {
        signing.insert(name.clone(), get(namespace, name).await?);
    }
    let stored = Stored {
        ca: stored_ca.as_ref().map(secret_data),
        leaves: stored_leaves,
        signing,
    };
    // Key generation (RSA especially) is CPU work: keep it off the async workers.
    let spec = spec.clone();
    let namespace = namespace.to_string();
    let leaves = leaves.to_vec();
    tokio::task::spawn_blocking(move || build_objects(&spec, &namespace, &leaves, &stored))
        .await
        .map_err(|e| TlsError(format!("generate TLS material: {e}")))?
}

/// The CA certificate (PEM) among objects [`tls_objects`] made.
pub fn ca_pem(objects: &[Object], spec: &TlsSpec) -> Option<String> {
    objects
        .iter()
        .find(|o| o.kind() == "ConfigMap" && o.name() == spec.ca_config_map)
        .and_then(|o| o.get("/data/ca.crt"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// What the cluster already holds.
#[derive(Default)]
struct Stored {
    ca: Option<BTreeMap<String, String>>,
    /// Leaf Secrets as stored, by (namespace, name).
    leaves: BTreeMap<(String, String), Object>,
    signing: BTreeMap<String, Option<Object>>,
}

/// A Secret's `data`, decoded (values that are not UTF-8 are dropped: PEM always is).
fn secret_data(o: &Object) -> BTreeMap<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    o.get("/data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let bytes = b64.decode(v.as_str()?).ok()?;
            Some((k.clone(), String::from_utf8(bytes).ok()?))
        })
        .collect()
}

fn annotation<'a>(o: &'a Object, key: &str) -> Option<&'a str> {
    o.get("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn build_objects(
    spec: &TlsSpec,
    ns: &str,
    leaves: &[Leaf],
    stored: &Stored,
) -> Result<Vec<Object>, TlsError> {
    let params = ca_params(spec);
    // Reuse the stored CA when it is whole; else make a new one (and so new leaves).
    let (ca_key, ca_cert) = match stored
        .ca
        .as_ref()
        .and_then(|d| Some((d.get("ca.key")?, d.get("ca.crt")?)))
    {
        Some((key, cert)) => {
            let key = KeyPair::from_pem(key).map_err(err(format!(
                "read the CA key in Secret {ns}/{}",
                ca_secret_name(spec)
            )))?;
            (key, cert.clone())
        }
        None => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                .map_err(err("generate the CA key"))?;
            let cert = params
                .self_signed(&key)
                .map_err(err("sign the CA certificate"))?
                .pem();
            (key, cert)
        }
    };
    let ca_hash = sha256(&ca_cert);
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let labels = json!({"app.kubernetes.io/managed-by": MANAGED_BY});

    let mut objects = vec![
        secret(
            ns,
            &ca_secret_name(spec),
            "Opaque",
            &labels,
            json!({}),
            &[("ca.crt", &ca_cert), ("ca.key", &ca_key_pem)],
        ),
        Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": spec.ca_config_map, "namespace": ns, "labels": labels},
                "data": {"ca.crt": ca_cert}}),
            ORIGIN,
        ),
    ];
    for leaf in leaves {
        let stored_leaf = stored
            .leaves
            .get(&(leaf.namespace.clone(), leaf.secret.clone()));
        let sans = leaf.sans.clone();
        let sans_note = sans.join(",");
        let name = leaf.secret.clone();
        let cn = sans.first().cloned().unwrap_or_else(|| name.clone());
        let reusable = stored_leaf.filter(|o| {
            annotation(o, CA_HASH) == Some(ca_hash.as_str())
                && annotation(o, SANS) == Some(sans_note.as_str())
        });
        let (cert, key) = match reusable.map(secret_data) {
            Some(d) if d.contains_key("tls.crt") && d.contains_key("tls.key") => {
                (d["tls.crt"].clone(), d["tls.key"].clone())
            }
            _ => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                    .map_err(err(format!("generate the key of {name}")))?;
                let mut p =
                    CertificateParams::new(sans).map_err(err(format!("the SANs of {name}")))?;
                p.distinguished_name.push(DnType::CommonName, cn.as_str());
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                p.extended_key_usages = vec![
                    rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                    rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                ];
                p.not_before = date_time_ymd(2020, 1, 1);
                p.not_after = date_time_ymd(2099, 12, 31);
                let cert = p
                    .signed_by(&key, &issuer)
                    .map_err(err(format!("sign the certificate of {name}")))?
                    .pem();
                (cert, key.serialize_pem())
            }
        };
        let annotations = json!({CA_HASH: ca_hash, SANS: sans_note});
        objects.push(secret(
            &leaf.namespace,
            &name,
            "kubernetes.io/tls",
            &labels,
            annotations,
            &[("tls.crt", &cert), ("tls.key", &key), ("ca.crt", &ca_cert)],
        ));
    }
    for name in &spec.signing_keys {
        let existing = stored
            .signing
            .get(name)
            .and_then(Option::as_ref)
            .map(secret_data);
        let (cert, key) = match existing {
            Some(d) if d.contains_key("tls.crt") && d.contains_key("tls.key") => {
                (d["tls.crt"].clone(), d["tls.key"].clone())
            }
            _ => rsa_signing_pair(name)?,
        };
        objects.push(secret(
            ns,
            name,
            "kubernetes.io/tls",
            &labels,
            json!({}),
            &[("tls.crt", &cert), ("tls.key", &key)],
        ));
    }
    Ok(objects)
}

/// An RSA-2048 key (PKCS#8 PEM) and a self-signed certificate for it.
fn rsa_signing_pair(name: &str) -> Result<(String, String), TlsError> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| TlsError(format!("generate the RSA key of {name}: {e}")))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| TlsError(format!("encode the RSA key of {name}: {e}")))?;
    let pair = KeyPair::from_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256)
        .map_err(err(format!("load the RSA key of {name}")))?;
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2099, 12, 31);
    let cert = p
        .self_signed(&pair)
        .map_err(err(format!("sign the certificate of {name}")))?
        .pem();
    Ok((cert, pem.to_string()))
}

fn secret(
    ns: &str,
    name: &str,
    type_: &str,
    labels: &Value,
    annotations: Value,
    data: &[(&str, &str)],
) -> Object {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(b64.encode(v.as_bytes()))))
        .collect();
    let mut meta = json!({"name": name, "namespace": ns, "labels": labels});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        meta["annotations"] = annotations;
    }
    Object::new(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": type_, "data": data}),
        ORIGIN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TlsSpec {
        TlsSpec {
            ca_config_map: "inter-service-ca".into(),
            services: vec!["datastorage".into()],
            signing_keys: vec!["datastorage-signing".into()],
            ..Default::default()
        }
    }

    /// Plays the cluster: what `build_objects` made last time is what the next run reads.
    fn stored_from(objects: &[Object]) -> Stored {
        let find = |name: &str| {
            objects
                .iter()
                .find(|o| o.kind() == "Secret" && o.name() == name)
                .cloned()
        };
        Stored {
            ca: find("inter-service-ca-kprov-ca").as_ref().map(secret_data),
            leaves: find("datastorage-tls")
                .map(|o| {
                    (
                        (o.namespace().unwrap().to_string(), o.name().to_string()),
                        o,
                    )
                })
                .into_iter()
                .collect(),
            signing: BTreeMap::from([("datastorage-signing".into(), find("datastorage-signing"))]),
        }
    }

    #[test]
    fn material_has_the_reference_shape() {
        let objs = build_objects(
            &spec(),
            "kubernaut-system",
            &leaves(&spec(), "kubernaut-system", &[]),
            &Stored::default(),
        )
        .unwrap();
        let names: Vec<String> = objs.iter().map(|o| o.object_ref().to_string()).collect();
        assert_eq!(
            names,
            [
                "Secret kubernaut-system/inter-service-ca-kprov-ca",
                "ConfigMap kubernaut-system/inter-service-ca",
                "Secret kubernaut-system/datastorage-tls",
                "Secret kubernaut-system/datastorage-signing"
            ]
        );
        let leaf = secret_data(&objs[2]);
        assert!(leaf["tls.crt"].starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf["tls.key"].starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(objs[2].get("/type").unwrap(), "kubernetes.io/tls");
        let ca = objs[1].get("/data/ca.crt").and_then(Value::as_str).unwrap();
        assert_eq!(leaf["ca.crt"], ca);
        let (_, cert) = x509_parser::pem::parse_x509_pem(leaf["tls.crt"].as_bytes()).unwrap();
        let cert = cert.parse_x509().unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        assert_eq!(
            sans,
            [
                "DNSName(datastorage)",
                "DNSName(datastorage.kubernaut-system)",
                "DNSName(datastorage.kubernaut-system.svc)",
                "DNSName(datastorage.kubernaut-system.svc.cluster.local)",
                "DNSName(localhost)",
                "IPAddress(7f:00:00:01)"
            ]
        );
        let signing = secret_data(&objs[3]);
        let key = KeyPair::from_pem(&signing["tls.key"]).unwrap();
        assert_eq!(key.algorithm(), &PKCS_RSA_SHA256);
    }

    #[test]
    fn a_second_run_on_the_same_cluster_reproduces_every_object() {
        let first = build_objects(
            &spec(),
            "ns",
            &leaves(&spec(), "ns", &[]),
            &Stored::default(),
        )
        .unwrap();
        let second = build_objects(
            &spec(),
            "ns",
            &leaves(&spec(), "ns", &[]),
            &stored_from(&first),
        )
        .unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn a_leaf_for_other_sans_is_reissued_by_the_same_ca() {
        let first = build_objects(
            &spec(),
            "ns",
            &leaves(&spec(), "ns", &[]),
            &Stored::default(),
        )
        .unwrap();
        let mut stored = stored_from(&first);
        // The same Secret found in a namespace whose SANs differ.
        let other =
            build_objects(&spec(), "other", &leaves(&spec(), "other", &[]), &stored).unwrap();
        assert_eq!(
            other[1].get("/data"),
            first[1].get("/data"),
            "the CA is kept"
        );
        assert_ne!(
            secret_data(&other[2])["tls.crt"],
            secret_data(&first[2])["tls.crt"]
        );
        stored.ca = None;
        let fresh = build_objects(&spec(), "ns", &leaves(&spec(), "ns", &[]), &stored).unwrap();
        assert_ne!(
            fresh[1].get("/data"),
            first[1].get("/data"),
            "no stored CA: a new one"
        );
        assert_ne!(
            secret_data(&fresh[2])["tls.crt"],
            secret_data(&first[2])["tls.crt"],
            "new CA: new leaf"
        );
    }

    #[test]
    fn debug_output_never_shows_secret_data() {
        let objs = build_objects(
            &spec(),
            "ns",
            &leaves(&spec(), "ns", &[]),
            &Stored::default(),
        )
        .unwrap();
        let printed = format!("{objs:?}");
        for o in &objs {
            for v in secret_data(o).values() {
                assert!(!printed.contains(&base64::engine::general_purpose::STANDARD.encode(v)));
            }
        }
        assert!(!printed.contains("PRIVATE KEY"));
    }
}
