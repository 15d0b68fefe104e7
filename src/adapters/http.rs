//! Host-side HTTP, the only file that imports reqwest: readiness checks
//! (`http://localhost:30281/readyz` through a NodePort mapping; plain HTTP, over loopback), the
//! requests of `http` steps, and bounded downloads of manifests by URL (https through rustls
//! with ring, the one crypto provider kprov installs).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What one probe of a readiness URL found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A 2xx answer.
    Ready,
    /// Anything else, in words: `503 Service Unavailable: not ready`, `connection refused`.
    NotReady(String),
}

/// Probes readiness URLs; one connection pool for all of them.
#[derive(Debug, Clone)]
pub struct HttpProber {
    client: reqwest::Client,
}

impl HttpProber {
    /// `timeout` bounds each probe (connect and answer).
    pub fn new(timeout: Duration) -> Result<HttpProber, String> {
        install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A readiness endpoint answers itself; a redirect elsewhere is not "ready".
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("build an HTTP client: {e}"))?;
        Ok(HttpProber { client })
    }

    /// One GET of `url`. Errors are answers ("not ready, because..."), except a URL kprov can
    /// never check, which is `Err`.
    pub async fn probe(&self, url: &str) -> Result<Probe, String> {
        if !url.starts_with("http://") {
            return Err(format!(
                "readiness URL {url:?} must start with http:// (checked from the host over loopback)"
            ));
        }
        match self.client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => Ok(Probe::Ready),
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let body: String = body.trim().chars().take(200).collect();
                Ok(Probe::NotReady(if body.is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {body}")
                }))
            }
            Err(e) => Ok(Probe::NotReady(describe(&e))),
        }
    }
}

/// An answer to a request a profile's step makes: the status and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body's first 500 characters, trimmed, for messages.
    pub fn body_start(&self) -> String {
        self.body.trim().chars().take(500).collect()
    }
}

impl HttpProber {
    /// One request (a profile's `http` step). `Err` is a request that got no answer, in words.
    pub async fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<Answer, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{method:?} is not an HTTP method"))?;
        let mut req = self.client.request(method, url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok(Answer { status, body })
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let cause = innermost(e);
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}

/// reqwest's own words ("error sending request for url") say nothing; the innermost cause does
/// ("Connection refused (os error 111)", "invalid peer certificate: UnknownIssuer").
fn innermost(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| e.to_string())
}

// One bounded GET of a manifest URL: time bounded by a connect and a total timeout, size by a
// byte limit checked against `Content-Length` before reading and again while reading.

/// How long and how much one download may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// From the request to the last byte of the body.
    pub total_timeout: Duration,
    /// Bodies larger than this are refused (Tekton's release.yaml is about 1 MiB).
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(15),
            total_timeout: Duration::from_secs(300),
            max_bytes: 64 << 20,
        }
    }
}

/// Why a download failed, in words, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub detail: String,
    pub transient: bool,
    pub cancelled: bool,
}

impl Failure {
    fn permanent(detail: impl Into<String>) -> Self {
        Failure {
            detail: detail.into(),
            transient: false,
            cancelled: false,
        }
    }
}

/// Makes ring the process's rustls provider unless one is set already. reqwest (built without a
/// provider of its own) and kube-rs both build their TLS configurations from it.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The body of `url`, whole.
pub async fn get(
    url: &str,
    limits: &Limits,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, Failure> {
    tokio::select! {
        got = get_uncancelled(url, limits) => got,
        () = cancel.cancelled() => Err(Failure { cancelled: true, ..Failure::permanent("cancelled") }),
    }
}

async fn get_uncancelled(url: &str, limits: &Limits) -> Result<Vec<u8>, Failure> {
    install_tls_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.total_timeout)
        .user_agent(concat!("kprov/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::permanent(format!("build an HTTP client: {}", innermost(&e))))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| failure(&e, limits))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Failure {
            detail: format!("HTTP {status}"),
            transient: status.is_server_error() || status.as_u16() == 429,
            cancelled: false,
        });
    }
    let too_big = || {
        Failure::permanent(format!(
            "the answer is larger than the limit of {} bytes",
            limits.max_bytes
        ))
    };
    if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failure(&e, limits))? {
        if (body.len() + chunk.len()) as u64 > limits.max_bytes {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn failure(e: &reqwest::Error, limits: &Limits) -> Failure {
    let detail = if e.is_timeout() {
        format!(
            "no complete answer in time (connect timeout {}, total {})",
            humantime::format_duration(limits.connect_timeout),
            humantime::format_duration(limits.total_timeout)
        )
    } else if e.is_connect() {
        format!("cannot connect: {}", innermost(e))
    } else {
        innermost(e)
    };
    Failure {
        detail,
        transient: !e.is_builder() && !e.is_redirect(),
        cancelled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn serve_once(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            sock.write_all(answer.as_bytes()).await.unwrap();
        });
        format!("http://{addr}/readyz")
    }

    #[tokio::test]
    async fn a_2xx_answer_is_ready_and_a_503_says_why_not() {
        let p = HttpProber::new(Duration::from_secs(2)).unwrap();
        let ok =
            serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        assert_eq!(p.probe(&ok).await.unwrap(), Probe::Ready);
        let no = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 10\r\nconnection: close\r\n\r\nwarming up").await;
        assert_eq!(
            p.probe(&no).await.unwrap(),
            Probe::NotReady("503 Service Unavailable: warming up".into())
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_not_ready_and_https_is_refused() {
        let p = HttpProber::new(Duration::from_secs(2)).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        match p
            .probe(&format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap()
        {
            Probe::NotReady(why) => assert!(why.contains("cannot connect"), "{why}"),
            Probe::Ready => panic!("a closed port is not ready"),
        }
        assert!(p.probe("https://localhost/readyz").await.is_err());
    }

    #[tokio::test]
    async fn a_port_that_accepts_then_hangs_up_says_so() {
        // What a published NodePort with nothing behind it does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let p = HttpProber::new(Duration::from_secs(2)).unwrap();
        match p.probe(&url).await.unwrap() {
            Probe::NotReady(why) => {
                assert!(!why.contains("error sending request"), "{why}");
                assert!(why.contains("closed") || why.contains("reset"), "{why}");
            }
            Probe::Ready => panic!("nothing answered"),
        }
    }
}
