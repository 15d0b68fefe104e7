//! One bounded GET of a manifest URL (reqwest, rustls with the ring provider kprov uses
//! everywhere). Time is bounded by a connect and a total timeout, size by a byte limit that is
//! checked against `Content-Length` before reading and again while reading.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

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
        .map_err(|e| Failure::permanent(format!("build an HTTP client: {}", describe(&e))))?;
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
        format!("cannot connect: {}", describe(e))
    } else {
        describe(e)
    };
    Failure {
        detail,
        transient: !e.is_builder() && !e.is_redirect(),
        cancelled: false,
    }
}

/// reqwest's own words ("error sending request for url") say nothing; the innermost cause does
/// ("Connection refused (os error 111)", "invalid peer certificate: UnknownIssuer").
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| e.to_string())
}
