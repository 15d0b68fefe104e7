//! Host-side HTTP readiness checks (`http://localhost:30281/readyz` through a NodePort mapping).
//! The only file that imports reqwest. Plain HTTP only: readiness endpoints on a Kind node's
//! published ports are reached over loopback.

use std::time::Duration;

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
        // reqwest is built without a provider of its own: kprov's one provider is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
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

/// An answer to a request a profile's step makes: the status and the body's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
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
        Ok(Answer {
            status,
            body: body.chars().take(500).collect(),
        })
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    // reqwest's own words ("error sending request for url") say nothing; the innermost
    // cause does ("Connection refused (os error 111)", "connection closed before message
    // completed").
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    let cause = last.unwrap_or_else(|| e.to_string());
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
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
