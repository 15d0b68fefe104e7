//! kprov's narrow container-engine seam over bollard: the only file that imports bollard.
//!
//! [`Engine`] speaks to Docker, or to Podman through its Docker-compatible socket, at
//! `DOCKER_HOST` (or the default socket), with the API version negotiated once at connect
//! (Docker 20.10 speaks 1.41). It offers what kprov's tasks need, in kprov's vocabulary:
//!
//! | need | method |
//! |---|---|
//! | run records | [`Engine::version`], [`Engine::api_version`], [`Engine::host`], [`Engine::kind`] |
//! | build | [`Engine::build`]: a tar body in, a stream of [`BuildEvent`]s out |
//! | images | [`Engine::inspect_image`], [`Engine::tag_image`], [`Engine::pull_image`], [`Engine::push_image`], [`Engine::remove_image`] |
//! | the local registry | [`Engine::create_service_container`], [`Engine::start_container`], [`Engine::connect_network`] |
//! | load | [`Engine::export_image`]: `docker save` as a byte stream, never collected |
//! | image cache | [`Engine::import_image`]: `docker load` of an archive, streamed |
//! | nodes | [`Engine::list_containers`] by label, [`Engine::remove_containers`] by label |
//! | commands in nodes | [`Engine::exec`], [`Engine::exec_with_stdin`] (stdin streamed, exit code inspected) |
//! | coverage | [`Engine::copy_from_container`]: a path out of a container as a tar stream |
//!
//! Errors are [`EngineError`]s: a lowercase action ("inspect image x") and the engine's own
//! words, classified so callers can retry daemon hiccups ([`EngineError::is_transient`]) and
//! tell a missing object from a broken engine ([`EngineError::is_not_found`]).
//!
//! Timeouts: bollard's request timeout covers the response *headers* only; a body (build
//! output, export, exec output) can take as long as it takes, so every long call here also
//! takes a [`CancellationToken`] or is a stream the caller can drop.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::pin::pin;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{BuildInfoAux, ExecConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateImageOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ImportImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Headers of ordinary requests must arrive within this; bodies are not limited by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// See [`Engine::build_docker`].
const BUILD_HEADER_TIMEOUT: Duration = Duration::from_secs(3600);
/// Output an exec keeps per stream; more is dropped from the front (the tail explains failures).
const EXEC_OUTPUT_CAP: usize = 16 << 20;
/// Docker may report an exec as running for a moment after its output ends.
const EXEC_EXIT_POLL: Duration = Duration::from_millis(50);
const EXEC_EXIT_WAIT: Duration = Duration::from_secs(10);
/// Shutting down stdin is a half-close; it must not wait on a consumer that stopped reading.
const STDIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How an [`EngineError`] should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object (image, container, exec) does not exist.
    NotFound,
    /// The engine could not be reached or hiccuped (timeouts, 5xx, broken connections): worth
    /// a retry.
    Transient,
    /// The operation was cancelled through its token.
    Cancelled,
    /// Anything else: the engine refused, or reported a failure (a build step failed).
    Failed,
}

/// A failed engine call: what kprov tried (`action`) and what the engine said (`detail`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action}: {detail}")]
pub struct EngineError {
    pub action: String,
    pub detail: String,
    pub kind: ErrorKind,
}

impl EngineError {
    fn new(action: impl Into<String>, kind: ErrorKind, detail: impl Into<String>) -> Self {
        EngineError {
            action: action.into(),
            detail: detail.into(),
            kind,
        }
    }

    fn from_bollard(action: impl Into<String>, e: BollardError) -> Self {
        let (kind, detail) = classify(e);
        EngineError {
            action: action.into(),
            detail,
            kind,
        }
    }

    fn cancelled(action: impl Into<String>) -> Self {
        EngineError::new(action, ErrorKind::Cancelled, "cancelled")
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == ErrorKind::Cancelled
    }
}

/// Sorts a bollard error into a kind and a message in the engine's own words.
fn classify(e: BollardError) -> (ErrorKind, String) {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 => ErrorKind::NotFound,
                409 | 429 | 500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Failed,
            };
            (
                kind,
                format!("the engine answered {status_code}: {}", message.trim()),
            )
        }
        BollardError::DockerStreamError { error } => (ErrorKind::Failed, error.trim().to_string()),
        BollardError::RequestTimeoutError => (
            ErrorKind::Transient,
            format!(
                "the engine sent no response within {}s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
        e @ (BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::SocketNotFoundError(_)) => (ErrorKind::Transient, e.to_string()),
        e => (ErrorKind::Failed, e.to_string()),
    }
}

/// Which engine answers: Docker, or Podman through its Docker-compatible API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EngineKind {
    #[default]
    Docker,
    Podman,
}

impl EngineKind {
    /// `docker` / `podman`: kind's provider names (`KIND_EXPERIMENTAL_PROVIDER`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }

    /// The engine `/version`'s component names say: Podman lists "Podman Engine".
    pub fn from_components<'a>(names: impl IntoIterator<Item = &'a str>) -> EngineKind {
        if names
            .into_iter()
            .any(|n| n.eq_ignore_ascii_case("Podman Engine"))
        {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the engine's builders runs a build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Builder {
    /// BuildKit (API `version=2`, with a gRPC session over `/session`): `FROM --platform`,
    /// the automatic platform args (`BUILDPLATFORM`, `TARGETARCH`…), skipped unused stages.
    #[default]
    BuildKit,
    /// The classic (v1) builder.
    Classic,
    /// Podman's own builder (buildah) behind its compatible `/build`: no BuildKit session, but
    /// `FROM --platform`, `BUILDPLATFORM` and `TARGETARCH` as BuildKit has them.
    Podman,
}

impl Builder {
    /// `buildkit` / `classic` / `podman`, as run records and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Builder::BuildKit => "buildkit",
            Builder::Classic => "classic",
            Builder::Podman => "podman",
        }
    }

    /// Parses [`Builder::as_str`]'s names.
    pub fn parse(text: &str) -> Option<Builder> {
        match text {
            "buildkit" => Some(Builder::BuildKit),
            "classic" => Some(Builder::Classic),
            "podman" => Some(Builder::Podman),
            _ => None,
        }
    }
}

impl std::fmt::Display for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Engine::build`] sends the daemon besides the context.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Which builder runs it.
    pub builder: Builder,
    /// `repository:tag` to tag the result with.
    pub tag: String,
    /// The Dockerfile's path inside the context tar.
    pub dockerfile: String,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Ignore the daemon's layer cache.
    pub no_cache: bool,
}

/// One item of a build's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// Build output text (may hold several lines, or part of one).
    Output(String),
    /// A status line (pull progress during `FROM`).
    Status(String),
    /// The ID (`sha256:…`) of the image the build produced.
    ImageId(String),
}

/// What kprov needs to know about a local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:…`, the ID containerd calls the config digest.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Bytes, as the engine reports it.
    pub size: u64,
}

/// A container, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
}

/// What an exec printed, and how it ended. An exec that ran but exited non-zero is not an
/// [`EngineError`]: callers decide what a non-zero exit means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The last `lines` lines of stderr, or of stdout when stderr is empty: what explains a
    /// failure.
    pub fn tail(&self, lines: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Which stream a line of exec output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStream {
    Stdout,
    Stderr,
}

/// A connection to a container engine, with its API version negotiated.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    /// The same connection pool with a longer header timeout: a build answers only after the
    /// daemon has read the whole context.
    build_docker: Docker,
    host: String,
    kind: EngineKind,
}

impl Engine {
    /// Connects to `DOCKER_HOST`, or else to the default socket: Docker's
    /// `/var/run/docker.sock`, then Podman's rootless and rootful sockets.
    pub async fn connect() -> Result<Engine, EngineError> {
        let host = match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => host,
            _ => default_host(),
        };
        Engine::connect_to(&host).await
    }

    /// Connects to `host` (`unix:///path`, `tcp://host:port` or `http://…`).
    pub async fn connect_to(host: &str) -> Result<Engine, EngineError> {
        let action = || format!("connect to the container engine at {host}");
        let docker =
            Docker::connect_with_host(host).map_err(|e| EngineError::from_bollard(action(), e))?;
        let docker = docker
            .with_timeout(REQUEST_TIMEOUT)
            .negotiate_version()
            .await
            .map_err(|e| EngineError::from_bollard(action(), e))?;
        let build_docker = docker.clone().with_timeout(BUILD_HEADER_TIMEOUT);
        let version = docker
            .version()
            .await
            .map_err(|e| EngineError::from_bollard(action(), e))?;
        let components = version.components.unwrap_or_default();
        let kind = EngineKind::from_components(components.iter().map(|c| c.name.as_str()));
        Ok(Engine {
            docker,
            build_docker,
            host: host.to_string(),
            kind,
        })
    }

    /// Docker or Podman, as the engine's `/version` said at connect.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The address this engine was reached at.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// The server's version (e.g. `20.10.24+dfsg1`), for run records.
    pub async fn version(&self) -> Result<String, EngineError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError::from_bollard("read the engine version", e))?;
        Ok(v.version.unwrap_or_else(|| "unknown".to_string()))
    }

    /// Builds an image with `opts.builder` from a tar `context`; the output arrives as a
    /// stream, and a failed step arrives inside it as an error item. Drive the stream to its
    /// end. With BuildKit, bollard serves the build's gRPC session alongside, and BuildKit's
    /// progress (vertices, their logs) arrives as [`BuildEvent::Output`] lines.
    pub fn build<'a>(
        &'a self,
        opts: &BuildOptions,
        context: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> BoxStream<'a, Result<BuildEvent, EngineError>> {
        let args: HashMap<String, String> = opts.args.clone().into_iter().collect();
        let labels: HashMap<String, String> = opts.labels.clone().into_iter().collect();
        let mut builder = BuildImageOptionsBuilder::new()
            .dockerfile(&opts.dockerfile)
            .t(&opts.tag)
            .rm(true)
            // Intermediate containers of a failed step must not be left behind either.
            .forcerm(true)
            .nocache(opts.no_cache)
            .buildargs(&args)
            .labels(&labels);
        if let Some(target) = &opts.target {
            builder = builder.target(target);
        }
        if opts.builder == Builder::BuildKit {
            builder = builder
                .version(BuilderVersion::BuilderBuildKit)
                .session(&session_id());
        }
        let action = format!("build image {}", opts.tag);
        let mut progress = BuildKitProgress::default();
        self.build_docker
            .build_image(
                builder.build(),
                None,
                Some(bollard::body_try_stream(context)),
            )
            .flat_map(move |item| {
                let out: Vec<Result<BuildEvent, EngineError>> = match item {
                    Ok(info) => match info.aux {
                        Some(BuildInfoAux::Default(image)) => image
                            .id
                            .map(|id| Ok(BuildEvent::ImageId(id)))
                            .into_iter()
                            .collect(),
                        Some(BuildInfoAux::BuildKit(status)) => progress
                            .lines(status)
                            .into_iter()
                            .map(|l| Ok(BuildEvent::Output(l)))
                            .collect(),
                        None => {
                            if let Some(text) = info.stream {
                                vec![Ok(BuildEvent::Output(text))]
                            } else {
                                info.status
                                    .map(|status| Ok(BuildEvent::Status(status)))
                                    .into_iter()
                                    .collect()
                            }
                        }
                    },
                    Err(e) => vec![Err(EngineError::from_bollard(action.clone(), e))],
                };
                futures::stream::iter(out)
            })
            .boxed()
    }

    /// The local image `reference` (name, `name:tag` or ID), or `None` when there is none.
    pub async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(Some(ImageInfo {
                id: image.id.unwrap_or_default(),
                repo_tags: image.repo_tags.unwrap_or_default(),
                labels: image
                    .config
                    .and_then(|c| c.labels)
                    .map(|l| l.into_iter().collect())
                    .unwrap_or_default(),
                size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            })),
            Err(e) => {
                let e = EngineError::from_bollard(format!("inspect image {reference}"), e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// Tags the local image `source` as `repository:tag`.
    pub async fn tag_image(
        &self,
        source: &str,
        repository: &str,
        tag: &str,
    ) -> Result<(), EngineError> {
        let opts = TagImageOptionsBuilder::new()
            .repo(repository)
            .tag(tag)
            .build();
        self.docker
            .tag_image(source, Some(opts))
            .await
            .map_err(|e| {
                EngineError::from_bollard(format!("tag image {source} as {repository}:{tag}"), e)
            })
    }

    /// Removes the local image `reference`; `Ok(false)` when there was none.
    pub async fn remove_image(&self, reference: &str, force: bool) -> Result<bool, EngineError> {
        let opts = RemoveImageOptionsBuilder::new().force(force).build();
        match self.docker.remove_image(reference, Some(opts), None).await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = EngineError::from_bollard(format!("remove image {reference}"), e);
                if e.is_not_found() { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Pulls `reference`, reporting status lines to `on_status`. Pull errors arrive inside the
    /// stream, so it is driven to its end.
    pub async fn pull_image(
        &self,
        reference: &str,
        cancel: &CancellationToken,
        mut on_status: impl FnMut(&str) + Send,
    ) -> Result<(), EngineError> {
        let action = format!("pull image {reference}");
        let opts = CreateImageOptionsBuilder::new()
            .from_image(reference)
            .build();
        let mut stream = pin!(self.docker.create_image(Some(opts), None, None));
        let mut failure = None;
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return Err(EngineError::cancelled(action)),
                item = stream.next() => item,
            };
            match item {
                None => break,
                Some(Ok(info)) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        failure.get_or_insert(detail);
                    } else if let Some(status) = info.status {
                        match info.id {
                            Some(id) => on_status(&format!("{id}: {status}")),
                            None => on_status(&status),
                        }
                    }
                }
                Some(Err(e)) => {
                    failure.get_or_insert_with(|| EngineError::from_bollard(&action, e).detail);
                }
            }
        }
        match failure {
            Some(detail) => Err(EngineError::new(action, ErrorKind::Failed, detail)),
            None => Ok(()),
        }
    }

    /// `docker save reference` as a byte stream: pipe it, never collect it.
    pub fn export_image(&self, reference: &str) -> BoxStream<'static, Result<Bytes, EngineError>> {
        let action = format!("export image {reference}");
        self.docker
            .export_image(reference)
            .map(move |item| item.map_err(|e| EngineError::from_bollard(action.clone(), e)))
            .boxed()
    }

    /// `docker load` from `archive`, a tar byte stream as [`Engine::export_image`] writes it.
    /// Returns the engine's own lines (`Loaded image ID: sha256:…`); a truncated or corrupt
    /// archive is an error in the engine's words. The long header timeout applies: an engine
    /// may answer only once it has read the whole archive.
    pub async fn import_image<S>(
        &self,
        archive: S,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, EngineError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let action = "load an image archive";
        let opts = ImportImageOptionsBuilder::new().quiet(false).build();
        let mut stream = pin!(self.build_docker.import_image_stream(opts, archive, None));
        let mut lines = Vec::new();
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return Err(EngineError::cancelled(action)),
                item = stream.next() => item,
            };
            match item {
                None => return Ok(lines),
                Some(Ok(info)) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(EngineError::new(action, ErrorKind::Failed, detail));
                    }
                    if let Some(text) = info.stream {
                        lines.extend(text.lines().map(str::to_string));
                    }
                }
                Some(Err(e)) => return Err(EngineError::from_bollard(action, e)),
            }
        }
    }

    /// Containers carrying every label in `labels` (`key=value`, or `key` alone for any value);
    /// running ones only unless `all`.
    pub async fn list_containers(
        &self,
        labels: &[&str],
        all: bool,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        let filters: HashMap<String, Vec<String>> = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        )]);
        let opts = ListContainersOptionsBuilder::new()
            .all(all)
            .filters(&filters)
            .build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(|e| {
            EngineError::from_bollard(format!("list containers labelled {}", labels.join(",")), e)
        })?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                labels: c
                    .labels
                    .map(|l| l.into_iter().collect())
                    .unwrap_or_default(),
                running: c.state.is_some_and(|s| s.to_string() == "running"),
            })
            .collect())
    }

    /// Removes (forcibly, with their anonymous volumes) every container carrying all of
    /// `labels`; returns the names removed. Every failure is reported, not only the first.
    pub async fn remove_containers(&self, labels: &[&str]) -> Result<Vec<String>, EngineError> {
        let containers = self.list_containers(labels, true).await?;
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let results = futures::future::join_all(containers.iter().map(|c| {
            let opts = opts.clone();
            async move { (c, self.docker.remove_container(&c.id, Some(opts)).await) }
        }))
        .await;
        let mut removed = Vec::new();
        let mut failures = Vec::new();
        for (c, result) in results {
            match result.map_err(classify) {
                Ok(()) | Err((ErrorKind::NotFound, _)) => removed.push(c.name.clone()),
                Err((_, detail)) => failures.push(format!("{}: {detail}", c.name)),
            }
        }
        if failures.is_empty() {
            Ok(removed)
        } else {
            Err(EngineError::new(
                format!("remove containers labelled {}", labels.join(",")),
                ErrorKind::Failed,
                failures.join("; "),
            ))
        }
    }

    /// `path` inside `container` as a tar stream (`docker cp container:path -`).
    pub fn copy_from_container(
        &self,
        container: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes, EngineError>> {
        let action = format!("copy {path} out of container {container}");
        let opts = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        self.docker
            .download_from_container(container, Some(opts))
            .map(move |item| item.map_err(|e| EngineError::from_bollard(action.clone(), e)))
            .boxed()
    }

    /// Runs `cmd` in `container` with no stdin and collects its output.
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, EngineError> {
        self.run_exec(
            container,
            cmd,
            None::<futures::stream::Empty<Bytes>>,
            cancel,
            |_, _| {},
        )
        .await
    }

    /// Runs `cmd` in `container` with `stdin` streamed to it, calling `on_line` for each line of
    /// output as it arrives. Stdin is written in step with reading the output, and shut down on
    /// every path: when `stdin` ends, when a write fails, when the process exits first, and on
    /// cancellation. The exit code comes from inspecting the exec afterwards.
    pub async fn exec_with_stdin<S>(
        &self,
        container: &str,
        cmd: &[&str],
        stdin: S,
        cancel: &CancellationToken,
        on_line: impl FnMut(ExecStream, &str) + Send,
    ) -> Result<ExecOutput, EngineError>
    where
        S: Stream<Item = Bytes> + Send,
    {
        self.run_exec(container, cmd, Some(stdin), cancel, on_line)
            .await
    }

    async fn run_exec<S>(
        &self,
        container: &str,
        cmd: &[&str],
        stdin: Option<S>,
        cancel: &CancellationToken,
        mut on_line: impl FnMut(ExecStream, &str) + Send,
    ) -> Result<ExecOutput, EngineError>
    where
        S: Stream<Item = Bytes> + Send,
    {
        let action = format!("run `{}` in {container}", cmd.join(" "));
        let err = |e| EngineError::from_bollard(action.clone(), e);
        let config = ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let id = self
            .docker
            .create_exec(container, config)
            .await
            .map_err(err)?
            .id;
        if cancel.is_cancelled() {
            return Err(EngineError::cancelled(action));
        }
        let started = self
            .docker
            .start_exec(&id, Some(StartExecOptions::default()))
            .await
            .map_err(err)?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(EngineError::new(
                action,
                ErrorKind::Failed,
                "the engine started the exec detached",
            ));
        };

        // Stops the writer when the process exits first or on cancellation; the writer shuts
        // stdin down on every path.
        let stop_writing = cancel.child_token();
        let writer = async {
            let Some(stdin) = stdin else {
                return Ok(());
            };
            let mut stdin = pin!(stdin);
            let written: io::Result<()> = loop {
                let chunk = tokio::select! {
                    _ = stop_writing.cancelled() => break Ok(()),
                    chunk = stdin.next() => chunk,
                };
                let Some(chunk) = chunk else { break Ok(()) };
                tokio::select! {
                    _ = stop_writing.cancelled() => break Ok(()),
                    r = input.write_all(&chunk) => if let Err(e) = r { break Err(e) },
                }
            };
            let shut = match tokio::time::timeout(STDIN_SHUTDOWN_TIMEOUT, input.shutdown()).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "stdin shutdown timed out",
                )),
            };
            written.and(shut)
        };

        let mut stdout = Collected::default();
        let mut stderr = Collected::default();
        let reader = async {
            let mut read_error = None;
            loop {
                let item = tokio::select! {
                    // The writer sees the same cancellation and shuts stdin down.
                    _ = cancel.cancelled() => break,
                    item = output.next() => item,
                };
                match item {
                    None => break,
                    Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                        stderr.push(&message, |l| on_line(ExecStream::Stderr, l))
                    }
                    Some(Ok(other)) => {
                        let message = other.into_bytes();
                        stdout.push(&message, |l| on_line(ExecStream::Stdout, l))
                    }
                    Some(Err(e)) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            stdout.finish(|l| on_line(ExecStream::Stdout, l));
            stderr.finish(|l| on_line(ExecStream::Stderr, l));
            // The process has exited (or the stream broke): nothing more will be read.
            stop_writing.cancel();
            read_error
        };
        // Both end promptly on cancellation: the writer after shutting stdin down, the reader
        // at once; the connection then closes as `output` and `input` are dropped.
        let (write_result, read_error) = tokio::join!(writer, reader);
        drop(output);
        drop(input);
        if cancel.is_cancelled() {
            return Err(EngineError::cancelled(action));
        }
        if let Some(e) = read_error {
            return Err(err(e));
        }
        let exit_code = self.exec_exit_code(&id, &action).await?;
        // A failed write is explained by the exit code and output when the process failed; a
        // process that exited 0 without reading all of stdin is a failure of its own.
        if let Err(e) = write_result
            && exit_code == 0
        {
            return Err(EngineError::new(
                action,
                ErrorKind::Failed,
                format!("writing stdin: {e}"),
            ));
        }
        Ok(ExecOutput {
            exit_code,
            stdout: stdout.text(),
            stderr: stderr.text(),
        })
    }

    async fn exec_exit_code(&self, id: &str, action: &str) -> Result<i64, EngineError> {
        let deadline = tokio::time::Instant::now() + EXEC_EXIT_WAIT;
        loop {
            let inspect = self
                .docker
                .inspect_exec(id)
                .await
                .map_err(|e| EngineError::from_bollard(action.to_string(), e))?;
            if inspect.running != Some(true)
                && let Some(code) = inspect.exit_code
            {
                return Ok(code);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::new(
                    action,
                    ErrorKind::Transient,
                    "its output ended but the engine reports no exit code",
                ));
            }
            tokio::time::sleep(EXEC_EXIT_POLL).await;
        }
    }
}

/// A BuildKit session ID: unique per build (the daemon keys the session's connection on it).
fn session_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "kprov-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// BuildKit's status stream as plain-progress lines (`#<n> <step>`, its log lines,
/// `#<n> CACHED` / `DONE` / `ERROR: …`), each vertex numbered in order of first sight.
#[derive(Default)]
struct BuildKitProgress {
    numbers: HashMap<String, usize>,
    announced: std::collections::HashSet<String>,
    finished: std::collections::HashSet<String>,
}

impl BuildKitProgress {
    fn number(&mut self, digest: &str) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(digest.to_string()).or_insert(next)
    }

    fn lines(&mut self, status: bollard::moby::buildkit::v1::StatusResponse) -> Vec<String> {
        let mut out = Vec::new();
        for v in status.vertexes {
            let n = self.number(&v.digest);
            if self.announced.insert(v.digest.clone()) {
                out.push(format!("#{n} {}\n", v.name));
            }
            if self.finished.contains(&v.digest) {
                continue;
            }
            if !v.error.is_empty() {
                out.push(format!("#{n} ERROR: {}\n", v.error));
                self.finished.insert(v.digest);
            } else if v.cached {
                out.push(format!("#{n} CACHED\n"));
                self.finished.insert(v.digest);
            } else if v.completed.is_some() {
                out.push(format!("#{n} DONE\n"));
                self.finished.insert(v.digest);
            }
        }
        for log in status.logs {
            let n = self.number(&log.vertex);
            let text = String::from_utf8_lossy(&log.msg);
            for line in text.lines() {
                out.push(format!("#{n} {line}\n"));
            }
        }
        for w in status.warnings {
            let n = self.number(&w.vertex);
            out.push(format!(
                "#{n} WARNING: {}\n",
                String::from_utf8_lossy(&w.short)
            ));
        }
        out
    }
}

fn default_host() -> String {
    let mut candidates = vec!["/var/run/docker.sock".to_string()];
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        candidates.push(format!("{dir}/podman/podman.sock"));
    }
    candidates.push("/run/podman/podman.sock".to_string());
    let found = candidates.iter().find(|p| Path::new(p.as_str()).exists());
    format!("unix://{}", found.unwrap_or(&candidates[0]))
}

/// Output of one exec stream: split into lines for the callback, kept (up to a cap) for the
/// result.
#[derive(Default)]
struct Collected {
    kept: Vec<u8>,
    partial: Vec<u8>,
}

impl Collected {
    fn push(&mut self, bytes: &[u8], mut on_line: impl FnMut(&str)) {
        self.kept.extend_from_slice(bytes);
        if self.kept.len() > EXEC_OUTPUT_CAP {
            let excess = self.kept.len() - EXEC_OUTPUT_CAP;
            self.kept.drain(..excess);
        }
        self.partial.extend_from_slice(bytes);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            on_line(String::from_utf8_lossy(&line).trim_end());
        }
    }

    fn finish(&mut self, mut on_line: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            on_line(String::from_utf8_lossy(&self.partial).trim_end());
            self.partial.clear();
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

// ---- Added by the cluster-and-deploy helper (issue 6): container inspection, for finding a
// kind node's published API server port and for diagnostics bundles. ----
impl Engine {
    /// `docker inspect CONTAINER` as the engine's JSON; `None` when there is no such container.
    pub async fn inspect_container_json(
        &self,
        container: &str,
    ) -> Result<Option<serde_json::Value>, EngineError> {
        let action = format!("inspect container {container}");
        match self.docker.inspect_container(container, None).await {
            Ok(c) => serde_json::to_value(c)
                .map(Some)
                .map_err(|e| EngineError::new(action, ErrorKind::Failed, e.to_string())),
            Err(e) => {
                let err = EngineError::from_bollard(action, e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// A long-running service container kprov starts for the host (the local registry): its name,
/// image, published ports and network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceContainer {
    pub name: String,
    pub image: String,
    /// (host address, host port, container port/tcp)
    pub ports: Vec<(String, u16, u16)>,
    pub labels: BTreeMap<String, String>,
    /// Restart with the engine (`--restart=always`).
    pub restart_always: bool,
}

impl Engine {
    /// Creates `spec` unless a container of that name exists; `Ok(false)` when it did (a
    /// concurrent creator's 409 name conflict included: that container is the one to use).
    pub async fn create_service_container(
        &self,
        spec: &ServiceContainer,
    ) -> Result<bool, EngineError> {
        use bollard::models::{
            ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
        };
        use bollard::query_parameters::CreateContainerOptionsBuilder;
        let action = format!("create container {} from {}", spec.name, spec.image);
        let mut bindings = HashMap::new();
        for (addr, host, container) in &spec.ports {
            bindings.insert(
                format!("{container}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(addr.clone()),
                    host_port: Some(host.to_string()),
                }]),
            );
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: Some(bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                restart_policy: spec.restart_always.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ALWAYS),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(EngineError::from_bollard(action, e)),
        }
    }

    /// Starts container `name`; starting a running one is no error.
    pub async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(
                format!("start container {name}"),
                e,
            )),
        }
    }

    /// Connects `container` to `network` unless it is connected already (also when a concurrent
    /// caller connected it first).
    pub async fn connect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let connected = |v: &serde_json::Value| {
            v.pointer(&format!("/NetworkSettings/Networks/{network}"))
                .is_some_and(|n| !n.is_null())
        };
        let action = format!("connect container {container} to network {network}");
        let inspect = self.inspect_container_json(container).await?;
        if inspect.as_ref().is_some_and(connected) {
            return Ok(());
        }
        let req = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: None,
        };
        match self.docker.connect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let again = self.inspect_container_json(container).await?;
                if again.as_ref().is_some_and(connected) {
                    Ok(())
                } else {
                    Err(EngineError::from_bollard(action, e))
                }
            }
        }
    }

    /// Pushes `repository:tag` to its registry, reporting status lines to `on_status`. Push
    /// errors arrive inside the stream (the registry's answer), so it is driven to its end.
    pub async fn push_image(
        &self,
        repository: &str,
        tag: &str,
        cancel: &CancellationToken,
        mut on_status: impl FnMut(&str) + Send,
    ) -> Result<(), EngineError> {
        use bollard::query_parameters::PushImageOptionsBuilder;
        let action = format!("push image {repository}:{tag}");
        let opts = PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = pin!(self.docker.push_image(repository, Some(opts), None));
        let mut failure = None;
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return Err(EngineError::cancelled(action)),
                item = stream.next() => item,
            };
            match item {
                None => break,
                Some(Ok(info)) => {
                    if let Some(status) = info.status {
                        on_status(&status);
                    }
                }
                Some(Err(e)) => {
                    failure.get_or_insert_with(|| EngineError::from_bollard(&action, e).detail);
                }
            }
        }
        match failure {
            Some(detail) => Err(EngineError::new(action, ErrorKind::Failed, detail)),
            None => Ok(()),
        }
    }
}
