//! A small HTTPS client for the replay: one HTTP/1.1 connection per request (hyper's client
//! connection over tokio-rustls), trusting only the double's CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio_rustls::TlsConnector;

pub struct Client {
    tls: TlsConnector,
    addr: SocketAddr,
}

pub struct Answer {
    pub status: u16,
    /// Compared for plain-text answers (the apiserver's `404 page not found`).
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl Client {
    pub fn new(ca_pem: &[u8], addr: SocketAddr) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.expect("the double's CA is PEM"))
                .expect("a CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            tls: TlsConnector::from(Arc::new(config)),
            addr,
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()));
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default().to_string()));
        let req = req.body(body).map_err(|e| format!("request: {e}"))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Answer {
        let resp = self
            .request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let content_type = content_type(&resp);
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// Reads a watch's events until `enough` says so, the stream ends, or `bound` passes.
    pub async fn watch(
        &self,
        path: &str,
        headers: &[(String, String)],
        bound: Duration,
        enough: impl Fn(&[Value]) -> bool,
    ) -> (u16, Vec<Value>) {
        let resp = self
            .request("GET", path, headers, None)
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let deadline = tokio::time::Instant::now() + bound;
        let (mut buf, mut events) = (Vec::<u8>::new(), Vec::<Value>::new());
        while !enough(&events) {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => f,
                _ => break,
            };
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                    events.push(v);
                }
            }
        }
        (status, events)
    }
}

fn content_type<B>(resp: &hyper::Response<B>) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
