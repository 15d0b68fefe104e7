//! The build task: build an image from a context with a content cache.
//!
//! [`build_image`]:
//! 1. scans the context ([`BuildContext`]: `.dockerignore` applied, an outside Dockerfile
//!    added) and hashes the build inputs — every sent file's path, mode and contents, the
//!    Dockerfile, target, build args, labels and the coverage flag — reading files in chunks —
//!    and the local ID of every image the Dockerfile builds on (every stage's `FROM`, and
//!    `COPY --from=<image>`, with `ARG`s substituted: [`crate::tasks::dockerfile`]), so a
//!    rebuilt base image is a miss;
//! 2. derives the tag from that hash (`<repository>:kprov-<first 12 hex>`): the same inputs
//!    always name the same image, and there are no time-based tags;
//! 3. when that image exists and carries the hash in its [`INPUTS_LABEL`] label, stops there
//!    ([`Done::Cached`], logged as `cached: inputs sha256:… unchanged`) unless `no_cache`;
//! 4. with an image cache ([`build_image_cached`], `--image-cache DIR`), loads the archive for
//!    the inputs when there is one ([`Done::Restored`]; [`crate::tasks::image_cache`]);
//! 5. otherwise streams the context tar to the engine (bounded memory, no temp file) and
//!    drives the build output to its end: every line goes to the task's progress and to
//!    `<log_dir>/build-<image>.log`; a failed build fails the task with the log's last lines
//!    and its path.
//!
//! Images kprov does not build are [`crate::tasks::pull`]'s.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::adapters::docker::{BuildEvent, BuildOptions, Builder, Engine, EngineError, EngineKind};
use crate::adapters::oci::Platform;
use crate::engine::{Done, TaskCtx, TaskError};
use crate::tasks::context::{BuildContext, ContextError};
use crate::tasks::dockerfile::base_images;
use crate::tasks::image_cache::{self, ImageCache, Restore};

/// The label holding the hash of an image's build inputs.
pub const INPUTS_LABEL: &str = "dev.kprov.inputs";
/// The label recording which builder built the image (`buildkit` / `classic` / `podman`).
pub const BUILDER_LABEL: &str = "dev.kprov.builder";
/// The label holding the profile's name for the image.
pub const IMAGE_LABEL: &str = "dev.kprov.image";
/// Built images are tagged `kprov-<first TAG_HEX_LEN hex digits of the inputs hash>`.
pub const TAG_PREFIX: &str = "kprov-";
const TAG_HEX_LEN: usize = 12;
/// Lines of build log quoted in a failed build's error.
const LOG_TAIL_LINES: usize = 20;
/// Versions the hash layout: bump it when what goes into the hash changes.
const INPUTS_SCHEME: &[u8] = b"kprov build inputs v2";

/// One image to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The profile's key for the image (names the log file and the task).
    pub image: String,
    /// Repository to tag the result with, e.g. `localhost/kprov/datastorage`.
    pub repository: String,
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub target: Option<String>,
    /// Build args, coverage args already merged in by the caller.
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// A coverage build: part of the inputs, so it never shares a tag with a plain build.
    pub coverage: bool,
    /// Rebuild even when an image with the same inputs exists, without the daemon's cache.
    pub no_cache: bool,
    /// Where `build-<image>.log` goes.
    pub log_dir: PathBuf,
}

impl BuildRequest {
    /// The build log's path.
    pub fn log_path(&self) -> PathBuf {
        self.log_dir.join(format!("build-{}.log", self.image))
    }
}

/// An image ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// `repository:tag`.
    pub reference: String,
    /// `sha256:…`.
    pub id: String,
    /// The builder that built it (for a cached image, the one recorded on it); `None` for a
    /// third-party image.
    pub builder: Option<Builder>,
}

/// The inputs of a build, hashed, and the reference they name.
#[derive(Debug, Clone)]
pub struct PlannedBuild {
    pub context: Arc<BuildContext>,
    /// Hex SHA-256 of the inputs.
    pub inputs: String,
    /// `<repository>:kprov-<first 12 hex>`.
    pub reference: String,
    /// The images the Dockerfile builds on, resolved to local IDs (part of the inputs); `Err`
    /// when the Dockerfile could not be read for them: then the cache is not trusted.
    pub bases: Result<Vec<ResolvedBase>, String>,
}

/// A base image (a `FROM` or `COPY --from` image) and the local image ID it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBase {
    pub reference: String,
    /// `None` when no such image is present locally (the build will pull it).
    pub id: Option<String>,
}

/// Scans and hashes the build inputs (files on a blocking thread; honours `cancel`), and
/// resolves every base image the Dockerfile names to its local ID, so a changed base image
/// changes the inputs.
pub async fn plan_build(
    engine: &Engine,
    req: &BuildRequest,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<PlannedBuild, TaskError> {
    let req_clone = req.clone();
    let cancel = cancel.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        let cancelled = move || cancel.is_cancelled();
        let context = BuildContext::scan(&req_clone.context, &req_clone.dockerfile, &cancelled)?;
        let hasher = inputs_hasher(&context, &req_clone, &cancelled)?;
        let bases = std::fs::read_to_string(&req_clone.dockerfile)
            .map_err(|e| format!("read {}: {e}", req_clone.dockerfile.display()))
            .and_then(|text| {
                let platform = Platform::host();
                base_images(&text, &req_clone.args, &platform, &platform)
                    .map_err(|e| format!("{}: {e}", req_clone.dockerfile.display()))
            });
        Ok::<_, ContextError>((context, hasher, bases))
    })
    .await
    .map_err(|e| {
        TaskError::fatal(format!(
            "build image {}: hashing the inputs panicked: {e}",
            req.image
        ))
    })?;
    let (context, mut hasher, bases) = scanned.map_err(|e| match e {
        ContextError::Cancelled => {
            TaskError::fatal(format!("build image {}: cancelled", req.image))
        }
        e => TaskError::fatal(format!("build image {}: {e}", req.image)),
    })?;
    let bases = match bases {
        Ok(bases) => {
            let mut resolved = Vec::with_capacity(bases.len());
            for base in bases {
                let id = engine
                    .inspect_image(&base.reference)
                    .await
                    .map_err(|e| {
                        engine_task_error(
                            &format!("build image {}: resolve base image", req.image),
                            e,
                        )
                    })?
                    .map(|image| image.id);
                resolved.push(ResolvedBase {
                    reference: base.reference,
                    id,
                });
            }
            resolved.sort_by(|a, b| a.reference.cmp(&b.reference));
            for base in &resolved {
                field(&mut hasher, "base", &base.reference);
                field(&mut hasher, "=", base.id.as_deref().unwrap_or("absent"));
            }
            Ok(resolved)
        }
        Err(why) => {
            field(&mut hasher, "bases", "unknown");
            Err(why)
        }
    };
    let inputs = hex::encode(hasher.finalize());
    let reference = reference_for(&req.repository, &inputs);
    Ok(PlannedBuild {
        context: Arc::new(context),
        inputs,
        reference,
        bases,
    })
}

/// `<repository>:kprov-<first 12 hex of inputs>`.
pub fn reference_for(repository: &str, inputs: &str) -> String {
    format!("{repository}:{}", tag_for(inputs))
}

/// `kprov-<first 12 hex of inputs>`.
pub fn tag_for(inputs: &str) -> String {
    format!("{TAG_PREFIX}{}", &inputs[..TAG_HEX_LEN.min(inputs.len())])
}

/// A length-prefixed field, so no two different inputs feed the same bytes.
fn field(h: &mut Sha256, tag: &str, value: &str) {
    h.update(tag.as_bytes());
    h.update((value.len() as u64).to_le_bytes());
    h.update(value.as_bytes());
}

/// The hash of everything but the base images, not yet finalised.
fn inputs_hasher(
    context: &BuildContext,
    req: &BuildRequest,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Sha256, ContextError> {
    let mut h = Sha256::new();
    h.update(INPUTS_SCHEME);
    context.hash_into(&mut h, cancelled)?;
    field(&mut h, "target", req.target.as_deref().unwrap_or(""));
    for (k, v) in &req.args {
        field(&mut h, "arg", k);
        field(&mut h, "=", v);
    }
    for (k, v) in &req.labels {
        field(&mut h, "label", k);
        field(&mut h, "=", v);
    }
    field(&mut h, "coverage", if req.coverage { "1" } else { "0" });
    Ok(h)
}

/// Which builder a build asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuilderChoice {
    /// On Podman, Podman's own builder; on Docker, BuildKit where the engine offers it (API
    /// 1.39 and later, and it does not refuse the build as unsupported), else the classic
    /// builder.
    #[default]
    Auto,
    /// BuildKit (on Podman, its own builder: Podman has no BuildKit), or fail.
    BuildKit,
    /// The classic builder (fails on `FROM --platform=$BUILDPLATFORM` and TARGETARCH).
    Classic,
}

fn builder_name(b: Builder) -> &'static str {
    match b {
        Builder::BuildKit => "BuildKit",
        Builder::Classic => "the classic builder",
        Builder::Podman => "Podman's builder (buildah)",
    }
}

/// The builder a build starts with: Podman's on Podman (its `/build` is buildah, with the
/// platform args BuildKit has, but no BuildKit session), else BuildKit unless the classic one
/// is asked for or the engine's API is older than BuildKit sessions.
fn first_builder(choice: BuilderChoice, engine: EngineKind, api_speaks_buildkit: bool) -> Builder {
    match (choice, engine) {
        (BuilderChoice::Classic, _) => Builder::Classic,
        (_, EngineKind::Podman) => Builder::Podman,
        (BuilderChoice::Auto, EngineKind::Docker) if !api_speaks_buildkit => Builder::Classic,
        (BuilderChoice::Auto | BuilderChoice::BuildKit, EngineKind::Docker) => Builder::BuildKit,
    }
}

/// BuildKit through the API needs API 1.39 (Docker 18.09) for sessions.
fn engine_speaks_buildkit(engine: &Engine) -> bool {
    let api = engine.api_version();
    let mut parts = api.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 39)
}

/// An engine's refusal of a BuildKit build as such (not a failed step).
fn buildkit_unavailable(e: &EngineError) -> bool {
    let d = e.detail.to_ascii_lowercase();
    !e.is_transient()
        && (d.contains("buildkit") || d.contains("session"))
        && (d.contains("not supported") || d.contains("unsupported") || d.contains("not enabled"))
}

/// Builds `req` unless an image with the same inputs exists (then [`Done::Cached`]), with
/// BuildKit where the engine offers it.
pub async fn build_image(
    engine: &Engine,
    req: &BuildRequest,
    ctx: &TaskCtx,
) -> Result<(BuiltImage, Done), TaskError> {
    build_image_with(engine, req, BuilderChoice::Auto, ctx).await
}

/// [`build_image`] with the builder chosen.
pub async fn build_image_with(
    engine: &Engine,
    req: &BuildRequest,
    choice: BuilderChoice,
    ctx: &TaskCtx,
) -> Result<(BuiltImage, Done), TaskError> {
    let b = build_with(engine, req, choice, None, ctx).await?;
    Ok((b.image, b.done))
}

/// What [`build_image_cached`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBuild {
    pub image: BuiltImage,
    /// [`Done::Cached`] (in the engine), [`Done::Restored`] (from the image cache) or
    /// [`Done::Ran`] (built).
    pub done: Done,
    /// The hash of the build inputs: the image cache's key.
    pub inputs: String,
    /// An archive for these inputs that could not be used, and what became of it.
    pub cache_problem: Option<String>,
}

/// [`build_image`], restoring from `cache` an image the engine lacks before building it.
pub async fn build_image_cached(
    engine: &Engine,
    req: &BuildRequest,
    cache: Option<&ImageCache>,
    ctx: &TaskCtx,
) -> Result<CachedBuild, TaskError> {
    build_with(engine, req, BuilderChoice::Auto, cache, ctx).await
}

/// Loads the image for `inputs` from `cache`: `Ok(None)` when there is no usable archive
/// (`problem` then says why, if one was there).
async fn restore_from(
    engine: &Engine,
    req: &BuildRequest,
    cache: &ImageCache,
    (inputs, reference): (&str, &str),
    problem: &mut Option<String>,
    ctx: &TaskCtx,
) -> Result<Option<BuiltImage>, TaskError> {
    let tag = tag_for(inputs);
    match image_cache::restore(engine, cache, inputs, (&req.repository, &tag), ctx).await? {
        Restore::Restored(image, _) => {
            let builder = image
                .labels
                .get(BUILDER_LABEL)
                .and_then(|b| Builder::parse(b));
            Ok(Some(BuiltImage {
                reference: reference.to_string(),
                id: image.id,
                builder,
            }))
        }
        Restore::Missing => {
            ctx.progress(format!(
                "not in the image cache {}: building",
                cache.dir.display()
            ));
            Ok(None)
        }
        Restore::Unusable(why) => {
            ctx.progress(format!("image cache: {why}; building instead"));
            *problem = Some(why);
            Ok(None)
        }
    }
}

async fn build_with(
    engine: &Engine,
    req: &BuildRequest,
    choice: BuilderChoice,
    cache: Option<&ImageCache>,
    ctx: &TaskCtx,
) -> Result<CachedBuild, TaskError> {
    let planned = plan_build(engine, req, &ctx.cancel).await?;
    let what = format!("build image {} ({})", req.image, planned.reference);
    let trust_cache = match &planned.bases {
        Ok(_) => true,
        Err(why) => {
            ctx.progress(format!(
                "cannot tell the base images ({why}): building without the cache"
            ));
            false
        }
    };
    let mut cache_problem = None;
    if !req.no_cache
        && trust_cache
        && let Some(done) = reuse(engine, req, cache, &planned, &mut cache_problem, ctx).await?
    {
        return Ok(done);
    }
    let PlannedBuild {
        context,
        inputs,
        reference,
        bases,
    } = planned;
    let log_path = req.log_path();
    let mut log = BuildLog::create(&log_path)
        .map_err(|e| TaskError::fatal(format!("{what}: create log {}: {e}", log_path.display())))?;
    log.note(&format!(
        "# kprov build {} -> {reference}\n# inputs {inputs}\n# context {} ({} entries), dockerfile {}",
        req.image,
        context.root().display(),
        context.entries().len(),
        context.dockerfile_name()
    ));
    for base in bases.iter().flatten() {
        log.note(&format!(
            "# base {} {}",
            base.reference,
            base.id.as_deref().unwrap_or("(not present locally)")
        ));
    }
    let mut labels = req.labels.clone();
    labels.insert(INPUTS_LABEL.to_string(), inputs.clone());
    labels.insert(IMAGE_LABEL.to_string(), req.image.clone());
    let opts = BuildOptions {
        builder: Builder::BuildKit,
        tag: reference.clone(),
        dockerfile: context.dockerfile_name().to_string(),
        target: req.target.clone(),
        args: req.args.clone(),
        labels,
        no_cache: req.no_cache,
    };
    let run = Run {
        engine,
        context: &context,
        what: &what,
        ctx,
    };
    let (builder, attempt) = run.with_fallback(opts, choice, &mut log).await?;
    log.finish(ctx);
    attempt.check(&what, &log_path, &log)?;
    let image = built_image(
        engine,
        &reference,
        attempt.image_id,
        &what,
        &log_path,
        &mut log,
    )
    .await?;
    log.note(&format!("# built {reference} {} with {builder}", image.id));
    ctx.progress(format!(
        "built {reference} ({}) with {}",
        short_id(&image.id),
        builder_name(builder)
    ));
    Ok(CachedBuild {
        image: BuiltImage {
            reference,
            id: image.id,
            builder: Some(builder),
        },
        done: Done::Ran,
        inputs,
        cache_problem,
    })
}

/// The image of these inputs when it needs no build: already in the engine (tagged with
/// them), or restored from the image cache. A cache archive that could not be used is noted
/// in `problem`.
async fn reuse(
    engine: &Engine,
    req: &BuildRequest,
    cache: Option<&ImageCache>,
    planned: &PlannedBuild,
    problem: &mut Option<String>,
    ctx: &TaskCtx,
) -> Result<Option<CachedBuild>, TaskError> {
    let (inputs, reference) = (&planned.inputs, &planned.reference);
    let what = format!("build image {} ({reference})", req.image);
    let existing = engine
        .inspect_image(reference)
        .await
        .map_err(|e| engine_task_error(&what, e))?;
    if let Some(image) = existing
        && image.labels.get(INPUTS_LABEL) == Some(inputs)
    {
        ctx.progress(format!(
            "cached: inputs sha256:{inputs} unchanged ({reference}, image {})",
            short_id(&image.id)
        ));
        let builder = image
            .labels
            .get(BUILDER_LABEL)
            .and_then(|b| Builder::parse(b));
        let image = BuiltImage {
            reference: reference.clone(),
            id: image.id,
            builder,
        };
        return Ok(Some(CachedBuild {
            image,
            done: Done::Cached,
            inputs: inputs.clone(),
            cache_problem: None,
        }));
    }
    let Some(cache) = cache else {
        return Ok(None);
    };
    let restored = restore_from(engine, req, cache, (inputs, reference), problem, ctx).await?;
    Ok(restored.map(|image| CachedBuild {
        image,
        done: Done::Restored,
        inputs: inputs.clone(),
        cache_problem: None,
    }))
}

/// What one build needs besides its options.
struct Run<'a> {
    engine: &'a Engine,
    context: &'a Arc<BuildContext>,
    what: &'a str,
    ctx: &'a TaskCtx,
}

/// How one build attempt ended.
struct Attempt {
    image_id: Option<String>,
    failure: Option<EngineError>,
    output_seen: bool,
    tar_result: Result<Result<u64, ContextError>, tokio::task::JoinError>,
}

impl Run<'_> {
    /// Build with the first builder `choice` allows, and once more with the classic builder
    /// when BuildKit turns out not to be there (auto only). Returns the builder used.
    async fn with_fallback(
        &self,
        opts: BuildOptions,
        choice: BuilderChoice,
        log: &mut BuildLog,
    ) -> Result<(Builder, Attempt), TaskError> {
        let engine = self.engine;
        let mut builder = first_builder(choice, engine.kind(), engine_speaks_buildkit(engine));
        if choice == BuilderChoice::Auto
            && builder == Builder::BuildKit
            && self.context.dockerfile_outside()
        {
            // BuildKit does not apply the tar's .dockerignore server-side: `COPY .` would copy
            // the Dockerfile sent under its generated name.
            self.ctx.progress(
                "the Dockerfile is outside the context: building with the classic builder, \
                 which leaves it out of COPY"
                    .to_string(),
            );
            builder = Builder::Classic;
        }
        loop {
            let attempt = self.once(&opts, builder, log).await?;
            if builder == Builder::BuildKit
                && choice == BuilderChoice::Auto
                && !attempt.output_seen
                && attempt.image_id.is_none()
                && attempt.failure.as_ref().is_some_and(buildkit_unavailable)
            {
                let why = attempt.failure.map(|e| e.detail).unwrap_or_default();
                self.ctx.progress(format!(
                    "BuildKit is not available ({why}): building with the classic builder"
                ));
                builder = Builder::Classic;
                continue;
            }
            return Ok((builder, attempt));
        }
    }

    /// One build with `builder`: the context streamed as a tar, the engine's output logged.
    async fn once(
        &self,
        opts: &BuildOptions,
        builder: Builder,
        log: &mut BuildLog,
    ) -> Result<Attempt, TaskError> {
        let ctx = self.ctx;
        let reference = &opts.tag;
        ctx.progress(format!(
            "building {reference} with {}",
            builder_name(builder)
        ));
        log.note(&format!("# builder {builder}"));
        let mut opts = opts.clone();
        opts.builder = builder;
        opts.labels
            .insert(BUILDER_LABEL.to_string(), builder.as_str().to_string());
        let cancel = ctx.cancel.clone();
        let (body, tar_task) = self
            .context
            .clone()
            .into_tar_stream(Arc::new(move || cancel.is_cancelled()));
        let (mut image_id, mut failure, mut output_seen) = (None, None::<EngineError>, false);
        let mut stream = self.engine.build(&opts, body);
        loop {
            let item = tokio::select! {
                _ = ctx.cancel.cancelled() => {
                    // Dropping the stream disconnects, which makes the daemon stop the build.
                    log.note("# cancelled");
                    drop(stream);
                    let _ = tar_task.await;
                    return Err(TaskError::fatal(format!("{}: cancelled", self.what)));
                }
                item = stream.next() => item,
            };
            // Errors arrive inside the stream; later items may still explain them.
            match item {
                None => break,
                Some(Ok(BuildEvent::Output(text))) => {
                    output_seen = true;
                    log.output(&text, ctx)
                }
                Some(Ok(BuildEvent::Status(text))) => {
                    output_seen = true;
                    log.output(&format!("{text}\n"), ctx)
                }
                Some(Ok(BuildEvent::ImageId(id))) => image_id = Some(id),
                Some(Err(e)) => {
                    log.output(&format!("ERROR: {}\n", e.detail), ctx);
                    failure.get_or_insert(e);
                }
            }
        }
        drop(stream);
        Ok(Attempt {
            image_id,
            failure,
            output_seen,
            tar_result: tar_task.await,
        })
    }
}

impl Attempt {
    /// The build's failure as a task error, with the log's last lines.
    fn check(&self, what: &str, log_path: &Path, log: &BuildLog) -> Result<(), TaskError> {
        // A context that could not be read explains a broken build better than the daemon does.
        if let Ok(Err(e)) = &self.tar_result
            && !matches!(e, ContextError::Cancelled)
            && self.failure.is_some()
        {
            return Err(TaskError::fatal(format!("{what}: {e}")));
        }
        let Some(e) = &self.failure else {
            return Ok(());
        };
        let message = format!(
            "{what}: {}\nlast lines of {}:\n{}",
            e.detail,
            log_path.display(),
            log.tail()
        );
        Err(if e.is_transient() {
            TaskError::transient(message)
        } else {
            TaskError::fatal(message)
        })
    }
}

/// The image a successful build tagged `reference`.
async fn built_image(
    engine: &Engine,
    reference: &str,
    image_id: Option<String>,
    what: &str,
    log_path: &Path,
    log: &mut BuildLog,
) -> Result<crate::adapters::docker::ImageInfo, TaskError> {
    let image = engine
        .inspect_image(reference)
        .await
        .map_err(|e| engine_task_error(what, e))?;
    let Some(image) = image else {
        return Err(TaskError::fatal(format!(
            "{what}: the build ended without an image tagged {reference} (log: {})",
            log_path.display()
        )));
    };
    if let Some(id) = image_id
        && id != image.id
    {
        // Another build of the same inputs finished in between: both are the same inputs.
        log.note(&format!(
            "# {reference} now names {} (this build produced {id})",
            image.id
        ));
    }
    Ok(image)
}

/// An engine failure as a task failure, retried when it was a daemon hiccup.
pub(crate) fn engine_task_error(what: &str, e: EngineError) -> TaskError {
    let message = format!("{what}: {e}");
    if e.is_transient() {
        TaskError::transient(message)
    } else {
        TaskError::fatal(message)
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// The per-task build log: output split into lines, written as it comes, the last lines kept
/// for the error message.
pub(crate) struct BuildLog {
    file: LineWriter<File>,
    partial: String,
    tail: VecDeque<String>,
    write_error: Option<std::io::Error>,
}

impl BuildLog {
    pub(crate) fn create(path: &Path) -> std::io::Result<BuildLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(BuildLog {
            file: LineWriter::new(File::create(path)?),
            partial: String::new(),
            tail: VecDeque::with_capacity(LOG_TAIL_LINES),
            write_error: None,
        })
    }

    fn write_line(&mut self, line: &str) {
        if self.write_error.is_none()
            && let Err(e) = writeln!(self.file, "{line}")
        {
            self.write_error = Some(e);
        }
    }

    /// A kprov line (not build output): into the file only.
    pub(crate) fn note(&mut self, text: &str) {
        for line in text.lines() {
            self.write_line(line);
        }
    }

    fn output(&mut self, text: &str, ctx: &TaskCtx) {
        self.partial.push_str(text);
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            self.line(line.trim_end(), ctx);
        }
    }

    pub(crate) fn line(&mut self, line: &str, ctx: &TaskCtx) {
        self.write_line(line);
        if line.trim().is_empty() {
            return;
        }
        if self.tail.len() == LOG_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        ctx.progress(line.trim().to_string());
    }

    pub(crate) fn finish(&mut self, ctx: &TaskCtx) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(rest.trim_end(), ctx);
        }
        let _ = self.file.flush();
    }

    pub(crate) fn tail(&self) -> String {
        self.tail
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for BuildLog {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_derived_from_the_inputs() {
        let inputs = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            reference_for("localhost/kprov/x", inputs),
            "localhost/kprov/x:kprov-0123456789ab"
        );
    }

    #[test]
    fn podman_builds_with_its_own_builder_and_docker_with_buildkit() {
        use BuilderChoice::*;
        use EngineKind::*;
        assert_eq!(first_builder(Auto, Podman, true), Builder::Podman);
        assert_eq!(first_builder(BuildKit, Podman, true), Builder::Podman);
        assert_eq!(first_builder(Classic, Podman, true), Builder::Classic);
        assert_eq!(first_builder(Auto, Docker, true), Builder::BuildKit);
        assert_eq!(first_builder(Auto, Docker, false), Builder::Classic);
        assert_eq!(first_builder(BuildKit, Docker, false), Builder::BuildKit);
        assert_eq!(first_builder(Classic, Docker, true), Builder::Classic);
    }

    #[test]
    fn short_ids_drop_the_algorithm() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
