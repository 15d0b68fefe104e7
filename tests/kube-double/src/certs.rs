//! The sandbox's PKI: a CA, the API serving certificate, the admin client certificate, and
//! the node's `/etc/kubernetes/admin.conf` as kubeadm writes it on a kind node.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

pub struct Pki {
    pub ca_pem: String,
    pub ca_key_pem: String,
    ca_der: CertificateDer<'static>,
    pub server_pem: String,
    pub server_key_pem: String,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    pub client_pem: String,
    pub client_key_pem: String,
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d.push(DnType::CommonName, cn);
    d
}

/// Valid from the start of last year for `years`: clock skew between containers never matters.
fn validity(params: &mut CertificateParams, years: i32) {
    let this_year: i32 = crate::util::now_rfc3339()[..4].parse().unwrap_or(2025);
    params.not_before = rcgen::date_time_ymd(this_year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(this_year + years, 1, 1);
}

impl Pki {
    /// `sans`: DNS names and IP addresses the serving certificate must be valid for.
    pub fn generate(sans: &[String]) -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("kubernetes", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca_params, 10);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::default();
        server_params.distinguished_name = dn("kube-apiserver", None);
        server_params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut server_params, 2);
        let server = server_params.signed_by(&server_key, &ca)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::default();
        client_params.distinguished_name = dn("kubernetes-admin", Some("kubeadm:cluster-admins"));
        client_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut client_params, 2);
        let client = client_params.signed_by(&client_key, &ca)?;

        Ok(Pki {
            ca_pem: ca.pem(),
            ca_key_pem,
            ca_der: ca.der().clone(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_der: server.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// TLS for the API: HTTP/1.1 only; a client certificate, when presented, must chain to the CA.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|e| format!("adding the CA to the trust store: {e}"))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("building the client verifier: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("choosing TLS versions: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_der.clone(), self.ca_der.clone()], key)
            .map_err(|e| format!("loading the serving certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The admin kubeconfig exactly as kubeadm lays it out on a kind control-plane node.
    pub fn admin_conf(&self, cluster: &str, server: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\n\
             clusters:\n\
             - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\n\
             contexts:\n\
             - context:\n    cluster: {cluster}\n    user: kubernetes-admin\n  name: kubernetes-admin@{cluster}\n\
             current-context: kubernetes-admin@{cluster}\n\
             kind: Config\n\
             preferences: {{}}\n\
             users:\n\
             - name: kubernetes-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = b64(&self.ca_pem),
            cert = b64(&self.client_pem),
            key = b64(&self.client_key_pem),
        )
    }

    /// Writes `ca.crt`/`ca.key`/`apiserver.crt`/`apiserver.key` as kubeadm names them.
    pub fn write_pki(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, body) in [
            ("ca.crt", &self.ca_pem),
            ("ca.key", &self.ca_key_pem),
            ("apiserver.crt", &self.server_pem),
            ("apiserver.key", &self.server_key_pem),
        ] {
            std::fs::write(dir.join(name), body)?;
        }
        Ok(())
    }
}
