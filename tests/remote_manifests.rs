//! Manifests read from elsewhere: a pinned URL served on loopback (downloaded once, then read
//! from the cache with the server gone), a kustomize overlay rendered by the real kubectl, and
//! a Helm chart (the real helm when it is installed; its absence said in kprov's words).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use kprov::adapters::{helm::HelmCli, kubectl::KubectlCli};
use kprov::tasks::apply::parse_manifests;
use kprov::tasks::remote::{
    self, Limits, RemoteCtx, RemoteError, RemoteSource, Sha256Digest, Tools, cache,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const RELEASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tekton-pipelines\n---\n\
apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: tekton-pipelines-controller\n  namespace: tekton-pipelines\n";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/remote")
}

/// A loopback HTTP server answering GETs from a fixed table, counting requests.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Server {
    async fn start(routes: &[(&str, u16, &'static [u8])]) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<BTreeMap<String, (u16, &'static [u8])>> = Arc::new(
            routes
                .iter()
                .map(|(p, s, b)| (p.to_string(), (*s, *b)))
                .collect(),
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let accept = tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let (routes, counter) = (routes.clone(), counter.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = routes
                        .get(req.uri().path())
                        .copied()
                        .unwrap_or((404, b"404 page not found\n"));
                    let resp = Response::builder()
                        .status(StatusCode::from_u16(status).unwrap())
                        .body(Full::new(Bytes::from_static(body)))
                        .unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc);
                    let _ = conn.await;
                });
            }
        });
        Server { base, hits, accept }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops listening; returns once the port refuses connections.
    async fn stop(self) -> String {
        self.accept.abort();
        let _ = self.accept.await;
        let addr = self.base.trim_start_matches("http://").to_string();
        assert!(
            tokio::net::TcpStream::connect(&addr).await.is_err(),
            "the server still answers"
        );
        self.base
    }
}

/// What the tests give [`RemoteCtx`], owned; `progress` collects the lines.
struct Env {
    source_root: PathBuf,
    cache: tempfile::TempDir,
    tools: Tools,
    limits: Limits,
    cancel: CancellationToken,
    lines: Mutex<Vec<String>>,
}

impl Env {
    fn new(tools: Tools) -> Env {
        Env {
            source_root: fixtures(),
            cache: tempfile::tempdir().unwrap(),
            tools,
            limits: Limits::default(),
            cancel: CancellationToken::new(),
            lines: Mutex::new(Vec::new()),
        }
    }

    async fn read(
        &self,
        source: &RemoteSource,
    ) -> Result<kprov::tasks::apply::Manifest, RemoteError> {
        let progress = |line: String| self.lines.lock().unwrap().push(line);
        let ctx = RemoteCtx {
            source_root: &self.source_root,
            cache_dir: self.cache.path(),
            tools: &self.tools,
            limits: self.limits,
            namespace: Some("kubernaut-system"),
            entry: Some("component echo"),
            cancel: &self.cancel,
            progress: &progress,
        };
        remote::read(source, &ctx).await
    }

    fn lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }

    fn cached_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache.path().join("manifests")) {
            Err(_) => Vec::new(),
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
        }
    }
}

fn pin(text: &[u8]) -> Sha256Digest {
    Sha256Digest::parse(&cache::sha256_hex(text)).unwrap()
}

fn url_source(url: String, sha256: Sha256Digest) -> RemoteSource {
    RemoteSource::Url {
        url,
        sha256: Some(sha256),
    }
}

#[tokio::test]
async fn an_unpinned_url_is_pinned_by_its_first_download_and_read_offline_after() {
    let server = Server::start(&[("/release.yaml", 200, RELEASE.as_bytes())]).await;
    let env = Env::new(Tools::default());
    let url = server.url("/release.yaml");
    let source = RemoteSource::Url {
        url: url.clone(),
        sha256: None,
    };

    let first = env.read(&source).await.unwrap();
    assert_eq!(first.text, RELEASE);
    let digest = pin(RELEASE.as_bytes());
    assert_eq!(
        cache::read_pin(env.cache.path(), &url).unwrap(),
        Some(digest.clone())
    );
    let lines = env.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("does not pin it")
                && l.contains(&format!("sha256: {}", digest.hex()))),
        "the log says how to pin it: {lines:?}"
    );
    let mut files = env.cached_files();
    files.sort();
    assert_eq!(
        files.len(),
        2,
        "the manifest and its pin, no temporary: {files:?}"
    );

    server.stop().await;
    let second = env.read(&source).await.unwrap();
    assert_eq!(second.text, RELEASE);
    let lines = env.lines();
    assert!(lines.iter().any(|l| l.starts_with("cached: ")), "{lines:?}");
}

#[tokio::test]
async fn an_unpinned_url_whose_file_changed_since_its_pin_names_the_pin_file() {
    let server = Server::start(&[("/release.yaml", 200, RELEASE.as_bytes())]).await;
    let env = Env::new(Tools::default());
    let url = server.url("/release.yaml");
    // What an earlier run on this machine pinned: another file at the same URL.
    let earlier = pin(b"an older release\n");
    cache::write_pin(env.cache.path(), &url, &earlier).unwrap();
    let source = RemoteSource::Url {
        url: url.clone(),
        sha256: None,
    };

    let e = env.read(&source).await.unwrap_err().to_string();
    let pin_file = cache::pin_path_for(env.cache.path(), &url);
    assert!(
        e.contains("the file changed since this machine first downloaded it"),
        "{e}"
    );
    assert!(e.contains(&pin_file.display().to_string()), "{e}");
    assert!(e.contains(&cache::sha256_hex(RELEASE.as_bytes())), "{e}");
    assert_eq!(
        cache::read_pin(env.cache.path(), &url).unwrap(),
        Some(earlier),
        "the pin stays until the user deletes it"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_pinned_url_is_downloaded_once_then_read_from_the_cache_offline() {
    let server = Server::start(&[("/release.yaml", 200, RELEASE.as_bytes())]).await;
    let env = Env::new(Tools::default());
    let source = url_source(server.url("/release.yaml"), pin(RELEASE.as_bytes()));

    let first = env.read(&source).await.unwrap();
    assert_eq!(first.text, RELEASE);
    assert_eq!(first.origin, server.url("/release.yaml"));
    assert_eq!(server.hits(), 1);
    let cached = env.cache.path().join("manifests").join(format!(
        "sha256-{}.yaml",
        cache::sha256_hex(RELEASE.as_bytes())
    ));
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), RELEASE);
    assert_eq!(env.cached_files().len(), 1, "no temporary file is left");
    let lines = env.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("downloading ")),
        "{lines:?}"
    );
    let objects = parse_manifests(&first).unwrap();
    assert_eq!(objects.len(), 2);

    server.stop().await;
    let second = env.read(&source).await.unwrap();
    assert_eq!(second.text, RELEASE);
    let lines = env.lines();
    assert!(lines.iter().any(|l| l.starts_with("cached: ")), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("downloading")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_download_with_another_digest_names_both_and_caches_nothing() {
    let server = Server::start(&[("/release.yaml", 200, RELEASE.as_bytes())]).await;
    let env = Env::new(Tools::default());
    let wrong = pin(b"some other release\n");
    let e = env
        .read(&url_source(server.url("/release.yaml"), wrong.clone()))
        .await
        .unwrap_err();
    let msg = e.to_string();
    let got = cache::sha256_hex(RELEASE.as_bytes());
    assert_eq!(
        msg,
        format!(
            "download {}: expected sha256:{}, got sha256:{got}",
            server.url("/release.yaml"),
            wrong.hex()
        )
    );
    assert!(!e.is_transient());
    assert_eq!(env.cached_files(), Vec::<String>::new());
    // Nor is the file cached under the digest it really has.
    let e = env
        .read(&url_source(server.url("/release.yaml"), wrong))
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Mismatch { .. }), "{e}");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn http_errors_name_the_url_and_the_status() {
    let server = Server::start(&[("/flaky.yaml", 503, b"try later")]).await;
    let env = Env::new(Tools::default());
    let missing = server.url("/missing.yaml");
    let e = env
        .read(&url_source(missing.clone(), pin(b"x")))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("download {missing}: HTTP 404 Not Found")
    );
    assert!(!e.is_transient());
    let e = env
        .read(&url_source(server.url("/flaky.yaml"), pin(b"x")))
        .await
        .unwrap_err();
    assert!(
        e.to_string().ends_with("HTTP 503 Service Unavailable"),
        "{e}"
    );
    assert!(e.is_transient(), "a 503 may pass");

    let gone = server.stop().await;
    let e = env
        .read(&url_source(format!("{gone}/release.yaml"), pin(b"x")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert!(e.is_transient());
    assert_eq!(env.cached_files(), Vec::<String>::new());
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_refused() {
    let server = Server::start(&[("/big.yaml", 200, RELEASE.as_bytes())]).await;
    let mut env = Env::new(Tools::default());
    env.limits.max_bytes = 16;
    let e = env
        .read(&url_source(
            server.url("/big.yaml"),
            pin(RELEASE.as_bytes()),
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("larger than the limit of 16 bytes"),
        "{e}"
    );
    assert_eq!(env.cached_files(), Vec::<String>::new());
}

fn kubectl() -> KubectlCli {
    KubectlCli::find().expect("kubectl on PATH (scripts/test installs it)")
}

#[tokio::test]
async fn a_kustomize_overlay_is_rendered_by_kubectl_with_its_patch() {
    let env = Env::new(Tools {
        kubectl: Some(kubectl()),
        helm: None,
    });
    let source = RemoteSource::Kustomize {
        dir: "kustomize/overlays/e2e".into(),
    };
    let m = env.read(&source).await.unwrap();
    assert_eq!(m.origin, "kustomize kustomize/overlays/e2e");
    let objects = parse_manifests(&m).unwrap();
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind()).collect();
    assert_eq!(kinds, ["Service", "Deployment"]);
    let deploy = &objects[1].value;
    // The overlay's namespace, patch and image tag, over the base.
    assert_eq!(deploy["metadata"]["namespace"], "echo-e2e");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"][0]["value"], "e2e");
    assert_eq!(container["image"], "registry.example/echo:e2e");
}

#[tokio::test]
async fn kustomize_failures_say_what_kubectl_said() {
    let env = Env::new(Tools {
        kubectl: Some(kubectl()),
        helm: None,
    });
    let e = env
        .read(&RemoteSource::Kustomize {
            dir: "kustomize/broken".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("kubectl kustomize "), "{e}");
    assert!(e.contains("missing.yaml"), "{e}");

    let e = env
        .read(&RemoteSource::Kustomize {
            dir: "kustomize/nowhere".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("kustomize/nowhere: not a directory"), "{e}");

    let without = Env::new(Tools::default());
    let e = without
        .read(&RemoteSource::Kustomize {
            dir: "kustomize/overlays/e2e".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "kubectl is not on PATH: install kubectl (on Debian: apt-get install kubernetes-client) \
         to render kustomize kustomize/overlays/e2e for component echo"
    );
}

fn tiny_chart() -> RemoteSource {
    RemoteSource::Helm {
        chart: "chart/tiny".into(),
        release: "demo".into(),
        namespace: None,
        values: vec!["chart/e2e-values.yaml".into()],
        set: [("replicas".to_string(), "2".to_string())].into(),
    }
}

#[tokio::test]
async fn a_chart_is_rendered_by_helm_or_its_absence_is_said_in_kprovs_words() {
    let env = Env::new(Tools::find());
    match HelmCli::find() {
        None => {
            let e = env.read(&tiny_chart()).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                "helm is not on PATH: install helm to render chart chart/tiny for component echo"
            );
        }
        Some(_) => {
            let m = env.read(&tiny_chart()).await.unwrap();
            assert_eq!(m.origin, "helm template chart/tiny");
            let objects = parse_manifests(&m).unwrap();
            let cm = &objects[0].value;
            assert_eq!(cm["metadata"]["name"], "demo-settings");
            assert_eq!(cm["metadata"]["namespace"], "kubernaut-system");
            assert_eq!(cm["data"]["greeting"], "from-values-file");
            assert_eq!(cm["data"]["replicas"], "2");
        }
    }
}

/// A stand-in helm that prints its argv (one per line) and a warning on stderr, or fails.
fn fake_helm(dir: &Path, fail: bool) -> HelmCli {
    let script = if fail {
        "#!/bin/sh\necho 'Error: chart requires kubeVersion >=1.40' >&2\nexit 1\n"
    } else {
        "#!/bin/sh\nprintf '%s\\n' \"$@\"\necho 'WARNING: this chart is deprecated' >&2\n"
    };
    let path = dir.join(if fail { "helm-fails" } else { "helm" });
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    HelmCli::at(path)
}

#[tokio::test]
async fn helm_template_gets_resolved_paths_the_default_namespace_and_sets() {
    let bin = tempfile::tempdir().unwrap();
    let env = Env::new(Tools {
        kubectl: None,
        helm: Some(fake_helm(bin.path(), false)),
    });
    let m = env.read(&tiny_chart()).await.unwrap();
    let root = fixtures();
    let want = [
        "template".to_string(),
        "demo".into(),
        root.join("chart/tiny").display().to_string(),
        "--namespace".into(),
        "kubernaut-system".into(),
        "-f".into(),
        root.join("chart/e2e-values.yaml").display().to_string(),
        "--set".into(),
        "replicas=2".into(),
    ];
    assert_eq!(m.text.lines().collect::<Vec<_>>(), want);
    let lines = env.lines();
    assert!(
        lines.contains(&"WARNING: this chart is deprecated".to_string()),
        "{lines:?}"
    );

    let failing = Env::new(Tools {
        kubectl: None,
        helm: Some(fake_helm(bin.path(), true)),
    });
    let e = failing.read(&tiny_chart()).await.unwrap_err().to_string();
    assert!(e.starts_with("helm template demo "), "{e}");
    assert!(
        e.ends_with("helm exited with exit status: 1: Error: chart requires kubeVersion >=1.40"),
        "{e}"
    );
}

#[tokio::test]
async fn a_cancelled_download_says_so() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow.yaml", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
    });
    let env = Env::new(Tools::default());
    let cancel = env.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let e = env
        .read(&url_source(url.clone(), pin(b"x")))
        .await
        .unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    assert_eq!(e.to_string(), format!("download {url}: cancelled"));
    hold.abort();
}

/// A TLS server on loopback with a self-signed certificate: kprov must refuse it (the system's
/// roots do not know its issuer), which shows https is spoken and certificates are checked.
fn self_signed_tls_server() -> String {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], der.into())
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/release.yaml", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(Arc::new(config.clone())).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 512];
            // Drives the handshake, which the client ends.
            let _ = std::io::Read::read(&mut tls, &mut buf);
        }
    });
    url
}

#[tokio::test]
async fn https_is_spoken_and_an_unknown_issuer_is_refused() {
    let url = self_signed_tls_server();
    let env = Env::new(Tools::default());
    let e = env
        .read(&url_source(url.clone(), pin(b"x")))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("download {url}: ")), "{e}");
    assert!(
        e.contains("certificate") && e.contains("UnknownIssuer"),
        "{e}"
    );
    assert_eq!(env.cached_files(), Vec::<String>::new());
}
