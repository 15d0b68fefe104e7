//! Manifests that are not plain files of the source tree: a URL pinned by its sha256 (kept in
//! kprov's cache, so a second run and an offline run need no network), a kustomize directory
//! (`kubectl kustomize`), a Helm chart (`helm template`). Each becomes one YAML stream with an
//! origin for errors, ready for `apply::parse_manifests`.
//!
//! In a profile a [`RemoteSource`] is a map with exactly one of `url`, `kustomize`, `helm`:
//!
//! ```yaml
//! - url: https://example.org/release.yaml
//!   sha256: 4f0c...   # 64 hex digits; without it, pinned on first download (below)
//! - kustomize: deploy/overlays/e2e
//! - helm: charts/kubernaut
//!   release: kubernaut            # default: the chart directory's name
//!   namespace: kubernaut-system   # default: the profile's namespace
//!   values: [test/e2e/values.yaml]
//!   set: {image.tag: e2e}
//! ```

pub mod cache;

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::adapters::{
    helm::{self, HelmCli, HelmError},
    kubectl::{self, KubectlCli, KubectlError},
};
use crate::tasks::apply::Manifest;

use crate::adapters::http as download;
pub use crate::adapters::http::{Limits, install_tls_provider};

/// Where a manifest comes from, when it is not a plain file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSource")]
pub enum RemoteSource {
    /// Downloaded once, then read from the cache; the digest is checked either way. Without
    /// a digest in the profile, the first download's is kept as the pin (trust on first use).
    Url {
        url: String,
        sha256: Option<Sha256Digest>,
    },
    /// `kubectl kustomize DIR`; `dir` is relative to the source root (or, written
    /// `kprov:<dir>`, to kprov's own tree: see [`RemoteSource::resolved`]).
    Kustomize { dir: PathBuf },
    /// `helm template RELEASE CHART ...`; paths are relative to the source root (or kprov's
    /// own tree, as for kustomize).
    Helm {
        chart: PathBuf,
        release: String,
        /// `None`: the namespace of [`RemoteCtx::namespace`].
        namespace: Option<String>,
        values: Vec<PathBuf>,
        set: BTreeMap<String, String>,
    },
}

impl RemoteSource {
    /// The source with its directory, chart and values files as `resolve` places them (a
    /// profile's `kprov:` paths become paths in kprov's tree; others are left as written).
    pub fn resolved(&self, resolve: impl Fn(&str) -> PathBuf) -> RemoteSource {
        let path = |p: &PathBuf| resolve(&p.to_string_lossy());
        let mut out = self.clone();
        match &mut out {
            RemoteSource::Url { .. } => {}
            RemoteSource::Kustomize { dir } => *dir = path(dir),
            RemoteSource::Helm { chart, values, .. } => {
                *chart = path(chart);
                values.iter_mut().for_each(|v| *v = path(v));
            }
        }
        out
    }

    /// How errors name it: the URL, `kustomize <dir>`, `helm template <chart>`.
    pub fn origin(&self) -> String {
        match self {
            RemoteSource::Url { url, .. } => url.clone(),
            RemoteSource::Kustomize { dir } => format!("kustomize {}", dir.display()),
            RemoteSource::Helm { chart, .. } => format!("helm template {}", chart.display()),
        }
    }
}

/// A sha256 digest: 64 hex digits, kept lowercase. Written in a profile without `sha256:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    pub fn parse(text: &str) -> Result<Sha256Digest, String> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256Digest(hex.to_ascii_lowercase()))
        } else {
            Err(format!("sha256 {text:?} is not 64 hex digits"))
        }
    }

    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Sha256Digest::parse(&s)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// The profile's form, before the one-of rule is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    url: Option<String>,
    sha256: Option<Sha256Digest>,
    kustomize: Option<PathBuf>,
    helm: Option<PathBuf>,
    release: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    values: Vec<PathBuf>,
    #[serde(default)]
    set: BTreeMap<String, String>,
}

impl TryFrom<RawSource> for RemoteSource {
    type Error = String;

    fn try_from(r: RawSource) -> Result<Self, String> {
        let helm_only = r.release.is_some()
            || r.namespace.is_some()
            || !r.values.is_empty()
            || !r.set.is_empty();
        match (r.url, r.kustomize, r.helm) {
            (Some(url), None, None) => {
                if helm_only {
                    return Err("release, namespace, values and set are for helm charts".into());
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("url {url:?} must start with http:// or https://"));
                }
                Ok(RemoteSource::Url {
                    url,
                    sha256: r.sha256,
                })
            }
            (None, Some(dir), None) if !helm_only && r.sha256.is_none() => {
                Ok(RemoteSource::Kustomize { dir })
            }
            (None, Some(_), None) => Err("kustomize takes no other keys".into()),
            (None, None, Some(chart)) if r.sha256.is_none() => {
                let release = match r.release {
                    Some(release) => release,
                    None => default_release(&chart)?,
                };
                Ok(RemoteSource::Helm {
                    chart,
                    release,
                    namespace: r.namespace,
                    values: r.values,
                    set: r.set,
                })
            }
            (None, None, Some(_)) => Err("sha256 is for url".into()),
            _ => Err("give exactly one of url, kustomize, helm".into()),
        }
    }
}

fn default_release(chart: &Path) -> Result<String, String> {
    chart
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("helm {}: give a release name", chart.display()))
}

/// The tools that render kustomize directories and charts; `None` when not installed.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub kubectl: Option<KubectlCli>,
    pub helm: Option<HelmCli>,
}

impl Tools {
    /// `$KPROV_KUBECTL` or `kubectl` on PATH; `$KPROV_HELM` or `helm` on PATH.
    pub fn find() -> Tools {
        Tools {
            kubectl: KubectlCli::find(),
            helm: HelmCli::find(),
        }
    }
}

/// What reading a source needs from its caller.
pub struct RemoteCtx<'a> {
    /// Relative kustomize directories, charts and values files resolve against it (`--source`).
    pub source_root: &'a Path,
    /// kprov's cache directory; URL manifests are kept under its `manifests/`.
    pub cache_dir: &'a Path,
    pub tools: &'a Tools,
    pub limits: Limits,
    /// The namespace a chart is rendered into when its entry names none.
    pub namespace: Option<&'a str>,
    /// The profile entry the source belongs to (`component kubernaut`), for errors.
    pub entry: Option<&'a str>,
    pub cancel: &'a CancellationToken,
    /// One line at a time: `downloading <url>`, `cached: <url> sha256:…`, tool warnings.
    pub progress: &'a (dyn Fn(String) + Send + Sync),
}

impl RemoteCtx<'_> {
    fn for_entry(&self) -> String {
        self.entry.map(|e| format!(" for {e}")).unwrap_or_default()
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("download {url}: {detail}")]
    Download {
        url: String,
        detail: String,
        transient: bool,
    },
    #[error("download {url}: expected {expected}, got sha256:{got}")]
    Mismatch {
        url: String,
        expected: Sha256Digest,
        got: String,
    },
    #[error(
        "download {url}: the file changed since this machine first downloaded it ({expected}, \
         pinned in {}), now sha256:{got}; delete that file to accept the new one, or pin the \
         entry with `sha256:`",
        .pin_file.display()
    )]
    Changed {
        url: String,
        expected: Sha256Digest,
        got: String,
        pin_file: PathBuf,
    },
    #[error("download {url}: the answer is not UTF-8 text")]
    NotText { url: String },
    #[error("manifest cache {}: {source}", .path.display())]
    Cache { path: PathBuf, source: io::Error },
    #[error("kubectl is not on PATH: {hint} to render kustomize {dir}{for_entry}", hint = kubectl::INSTALL_HINT)]
    NoKubectl { dir: String, for_entry: String },
    #[error("helm is not on PATH: install helm to render chart {chart}{for_entry}")]
    NoHelm { chart: String, for_entry: String },
    #[error("kustomize {0}: not a directory")]
    NotADirectory(String),
    #[error(transparent)]
    Kubectl(#[from] KubectlError),
    #[error(transparent)]
    Helm(#[from] HelmError),
    #[error("{0}: cancelled")]
    Cancelled(String),
}

impl RemoteError {
    pub fn is_cancelled(&self) -> bool {
        match self {
            RemoteError::Cancelled(_) => true,
            RemoteError::Kubectl(e) => e.cancelled,
            RemoteError::Helm(e) => e.cancelled,
            _ => false,
        }
    }

    /// A failure that another attempt may not meet (a refused connection, a 503, a timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Download {
                transient: true,
                ..
            }
        )
    }
}

/// The manifests of `source`, as one YAML stream named by [`RemoteSource::origin`].
pub async fn read(source: &RemoteSource, ctx: &RemoteCtx<'_>) -> Result<Manifest, RemoteError> {
    let text = match source {
        RemoteSource::Url {
            url,
            sha256: Some(pin),
        } => fetch_pinned(url, pin, ctx).await?,
        RemoteSource::Url { url, sha256: None } => fetch_unpinned(url, ctx).await?,
        RemoteSource::Kustomize { dir } => kustomize(dir, ctx).await?,
        RemoteSource::Helm {
            chart,
            release,
            namespace,
            values,
            set,
        } => {
            let t = helm::Template {
                release: release.clone(),
                chart: ctx.source_root.join(chart),
                namespace: namespace.clone().or(ctx.namespace.map(Into::into)),
                values: values.iter().map(|v| ctx.source_root.join(v)).collect(),
                set: set.clone(),
            };
            helm_template(chart, &t, ctx).await?
        }
    };
    Ok(Manifest {
        origin: source.origin(),
        text,
    })
}

/// The text at `url` whose sha256 is `pin`: from `<ctx.cache_dir>/manifests/` when it is there
/// (no request is made), else downloaded, checked and cached. A download with another digest
/// is an error and is not cached.
pub async fn fetch_pinned(
    url: &str,
    pin: &Sha256Digest,
    ctx: &RemoteCtx<'_>,
) -> Result<String, RemoteError> {
    let path = cache::path_for(ctx.cache_dir, pin);
    let cache_err = |source| RemoteError::Cache {
        path: path.clone(),
        source,
    };
    let (dir, p) = (ctx.cache_dir.to_path_buf(), pin.clone());
    match blocking(move || cache::lookup(&dir, &p))
        .await
        .map_err(cache_err)?
    {
        cache::Lookup::Hit(bytes) => {
            (ctx.progress)(format!("cached: {url} {pin}"));
            return text_of(url, bytes);
        }
        cache::Lookup::Corrupt(got) => (ctx.progress)(format!(
            "cached copy of {url} has sha256:{got}, not {pin}: removed, downloading again"
        )),
        cache::Lookup::Miss => {}
    }
    (ctx.progress)(format!("downloading {url}"));
    let bytes = get(url, ctx).await?;
    cache::check(pin, &bytes).map_err(|got| RemoteError::Mismatch {
        url: url.into(),
        expected: pin.clone(),
        got,
    })?;
    let text = text_of(url, bytes)?;
    let (dir, p, body) = (ctx.cache_dir.to_path_buf(), pin.clone(), text.clone());
    blocking(move || cache::store(&dir, &p, body.as_bytes()))
        .await
        .map_err(cache_err)?;
    (ctx.progress)(format!("downloaded {url} ({} bytes, {pin})", text.len()));
    Ok(text)
}

/// The text at `url`, which the profile does not pin: the digest of its first download is kept
/// in `<ctx.cache_dir>/manifests/url-<sha256 of the url>.pin` and pins every later read, so a
/// file that changes upstream is an error rather than a different environment. Deleting the
/// pin file accepts the new file.
pub async fn fetch_unpinned(url: &str, ctx: &RemoteCtx<'_>) -> Result<String, RemoteError> {
    let pin_path = cache::pin_path_for(ctx.cache_dir, url);
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Cache { path, source }
    };
    let (dir, u) = (ctx.cache_dir.to_path_buf(), url.to_string());
    let pinned = blocking(move || cache::read_pin(&dir, &u))
        .await
        .map_err(cache_err(&pin_path))?;
    if let Some(pin) = pinned {
        return fetch_pinned(url, &pin, ctx).await.map_err(|e| match e {
            RemoteError::Mismatch { url, expected, got } => RemoteError::Changed {
                url,
                expected,
                got,
                pin_file: pin_path.clone(),
            },
            e => e,
        });
    }
    (ctx.progress)(format!("downloading {url}"));
    let bytes = get(url, ctx).await?;
    let pin = Sha256Digest::parse(&cache::sha256_hex(&bytes)).expect("a sha256 is 64 hex digits");
    let text = text_of(url, bytes)?;
    let (dir, p, body, u) = (
        ctx.cache_dir.to_path_buf(),
        pin.clone(),
        text.clone(),
        url.to_string(),
    );
    blocking(move || {
        cache::store(&dir, &p, body.as_bytes())?;
        cache::write_pin(&dir, &u, &p)
    })
    .await
    .map_err(cache_err(&pin_path))?;
    (ctx.progress)(format!(
        "downloaded {url} ({} bytes, {pin}); the profile does not pin it: pinned on this \
         machine in {} (add `sha256: {}` to the entry to pin it everywhere)",
        text.len(),
        pin_path.display(),
        pin.hex()
    ));
    Ok(text)
}

/// One download of `url`, in kprov's error words.
async fn get(url: &str, ctx: &RemoteCtx<'_>) -> Result<Vec<u8>, RemoteError> {
    download::get(url, &ctx.limits, ctx.cancel)
        .await
        .map_err(|f| match f.cancelled {
            true => RemoteError::Cancelled(format!("download {url}")),
            false => RemoteError::Download {
                url: url.into(),
                detail: f.detail,
                transient: f.transient,
            },
        })
}

fn text_of(url: &str, bytes: Vec<u8>) -> Result<String, RemoteError> {
    String::from_utf8(bytes).map_err(|_| RemoteError::NotText { url: url.into() })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// `kubectl kustomize <source_root>/<dir>`.
pub async fn kustomize(dir: &Path, ctx: &RemoteCtx<'_>) -> Result<String, RemoteError> {
    let shown = dir.display().to_string();
    let kubectl = ctx
        .tools
        .kubectl
        .as_ref()
        .ok_or_else(|| RemoteError::NoKubectl {
            dir: shown.clone(),
            for_entry: ctx.for_entry(),
        })?;
    let full = ctx.source_root.join(dir);
    if !full.is_dir() {
        return Err(RemoteError::NotADirectory(full.display().to_string()));
    }
    (ctx.progress)(format!("kubectl kustomize {shown}"));
    let out = kubectl.kustomize(&full, ctx.cancel).await?;
    warnings(&out.stderr, ctx);
    Ok(out.stdout)
}

/// `helm template ...` for the chart named `chart` in the profile.
pub async fn helm_template(
    chart: &Path,
    t: &helm::Template,
    ctx: &RemoteCtx<'_>,
) -> Result<String, RemoteError> {
    let helm = ctx.tools.helm.as_ref().ok_or_else(|| RemoteError::NoHelm {
        chart: chart.display().to_string(),
        for_entry: ctx.for_entry(),
    })?;
    (ctx.progress)(format!("helm template {} {}", t.release, chart.display()));
    let out = helm.template(t, ctx.cancel).await?;
    warnings(&out.stderr, ctx);
    Ok(out.stdout)
}

fn warnings(stderr: &str, ctx: &RemoteCtx<'_>) {
    for line in stderr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        (ctx.progress)(line.to_string());
    }
}

#[cfg(test)]
mod tests;
