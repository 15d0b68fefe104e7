//! The image cache (`--image-cache DIR`): built images kept as `docker save` archives, one per
//! content hash of the build inputs, so a machine that holds none of them (a fresh CI runner
//! whose DIR was restored by `actions/cache`) loads them instead of building them.
//!
//! - [`restore`]: the build task's step between "not in the engine" and "build": the archive
//!   for the inputs is streamed into `docker load`, the image it gives is checked (its ID and
//!   its inputs label) and tagged; an archive that is truncated, lacks its metadata or does
//!   not load is reported, removed, and the image is built instead.
//! - [`save`]: after a build (or for an image already in the engine whose archive is missing),
//!   the image is exported into the directory under a locked partial name and published by a
//!   rename; then the directory is pruned to its size cap, least recently used first.
//!
//! The directory's layout and locking are [`dir`]'s.

pub mod dir;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::adapters::docker::{Engine, ImageInfo};
use crate::engine::{TaskCtx, TaskError};
use crate::tasks::build::{INPUTS_LABEL, short_id};
use dir::{ArchiveMeta, CacheDir, Found, NotWritten, Prune};

/// The default size cap of an image cache directory.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;
/// Why a save was skipped: the archive is there already.
pub const SKIP_PRESENT: &str = "already in the cache";
/// Why a save was skipped: another run holds the archive's partial file.
pub const SKIP_BEING_WRITTEN: &str = "another run is writing it";
/// Read and write buffer for archives.
const CHUNK: usize = 1 << 20;

/// Where built images are kept between runs, and how large that may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCache {
    pub dir: PathBuf,
    /// Applied after each save: least recently used archives go first.
    pub max_bytes: u64,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Loaded and tagged: the image, and the archive's size.
    Restored(ImageInfo, u64),
    /// No archive for these inputs.
    Missing,
    /// An archive was there but could not be used: why, in kprov's words (it was removed
    /// unless another run was reading it).
    Unusable(String),
}

/// One image to save: what [`save`] needs of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveRequest {
    pub image: String,
    pub reference: String,
    pub id: String,
    pub inputs: String,
}

/// What [`save`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written: the archive's size and how long export and write took.
    Written {
        bytes: u64,
        took: Duration,
    },
    /// There already, or another run was writing it.
    Skipped(&'static str),
    Failed(String),
}

/// What [`save`] reports: the save, and what the prune after it evicted (input hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveReport {
    pub request: SaveRequest,
    pub saved: Saved,
    pub evicted: Vec<String>,
}

fn blocking_error(e: tokio::task::JoinError) -> std::io::Error {
    std::io::Error::other(format!("image cache: a blocking task failed: {e}"))
}

/// Loads the archive for `inputs` into the engine and tags it `repository:tag`.
pub async fn restore(
    engine: &Engine,
    cache: &ImageCache,
    inputs: &str,
    (repository, tag): (&str, &str),
    ctx: &TaskCtx,
) -> Result<Restore, TaskError> {
    let root = cache.dir.clone();
    let key = inputs.to_string();
    let found = tokio::task::spawn_blocking(move || {
        let dir = CacheDir::open(root)?;
        dir.read(&key).map(|f| (dir, f))
    })
    .await
    .map_err(blocking_error)
    .and_then(|r| r)
    .map_err(|e| {
        TaskError::fatal(format!(
            "image cache {}: read the archive for inputs {inputs}: {e}",
            cache.dir.display()
        ))
    })?;
    let (dir, archive) = match found {
        (_, Found::Missing) => return Ok(Restore::Missing),
        (dir, Found::Unusable(file, u)) => {
            let why = format!("{}: {}", u.path.display(), u.why);
            return Ok(Restore::Unusable(discard(dir, file, inputs, why).await));
        }
        (dir, Found::Archive(a)) => (dir, a),
    };
    let started = Instant::now();
    ctx.progress(format!(
        "restoring {} from the image cache ({}, {})",
        archive.meta.reference,
        archive.path.display(),
        size(archive.meta.bytes)
    ));
    let reader = archive
        .file
        .try_clone()
        .map_err(|e| TaskError::fatal(format!("{}: {e}", archive.path.display())))?;
    let body =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(reader), CHUNK);
    let loaded = engine.import_image(body, &ctx.cancel).await;
    let checked = match loaded {
        Err(e) if e.is_cancelled() => {
            return Err(TaskError::fatal(format!(
                "restore {} from the image cache: cancelled",
                archive.meta.reference
            )));
        }
        Err(e) => Err(format!("the engine could not load it ({})", e.detail)),
        Ok(_) => check_loaded(engine, &archive.meta, inputs).await,
    };
    let image = match checked {
        Ok(image) => image,
        Err(why) => {
            let why = format!("{}: {why}", archive.path.display());
            return Ok(Restore::Unusable(
                discard(dir, archive.file, inputs, why).await,
            ));
        }
    };
    engine
        .tag_image(&image.id, repository, tag)
        .await
        .map_err(|e| crate::tasks::build::engine_task_error("restore from the image cache", e))?;
    ctx.progress(format!(
        "restored {repository}:{tag} ({}) from the image cache in {}",
        short_id(&image.id),
        crate::report::fmt::duration(started.elapsed().as_millis() as u64)
    ));
    Ok(Restore::Restored(image, archive.meta.bytes))
}

/// The image the archive's metadata names, as loaded: it must carry the inputs' label.
async fn check_loaded(
    engine: &Engine,
    meta: &ArchiveMeta,
    inputs: &str,
) -> Result<ImageInfo, String> {
    match engine.inspect_image(&meta.id).await {
        Ok(Some(image)) if image.labels.get(INPUTS_LABEL).map(String::as_str) == Some(inputs) => {
            Ok(image)
        }
        Ok(Some(_)) => Err(format!(
            "the image it loaded ({}) does not carry {INPUTS_LABEL}={inputs}",
            short_id(&meta.id)
        )),
        Ok(None) => Err(format!(
            "it loaded, but the engine has no image {} afterwards",
            meta.id
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes an unusable archive; returns `why` with what became of it.
async fn discard(dir: CacheDir, file: std::fs::File, inputs: &str, why: String) -> String {
    let key = inputs.to_string();
    let removed = tokio::task::spawn_blocking(move || dir.discard(file, &key)).await;
    match removed {
        Ok(Ok(true)) => format!("{why}: removed it"),
        Ok(Ok(false)) => format!("{why}: left it (another run is reading it)"),
        Ok(Err(e)) => format!("{why}: could not remove it ({e})"),
        Err(e) => format!("{why}: could not remove it ({e})"),
    }
}

/// Writes `req`'s image into the cache unless it is there (or being written), then prunes the
/// cache to its cap. Never fails the run: what went wrong is in the report.
pub async fn save(
    engine: &Engine,
    cache: &ImageCache,
    req: SaveRequest,
    cancel: &CancellationToken,
) -> SaveReport {
    let saved = match write(engine, cache, &req, cancel).await {
        Ok(saved) => saved,
        Err(e) => Saved::Failed(e),
    };
    let mut evicted = Vec::new();
    if matches!(saved, Saved::Written { .. }) {
        let root = cache.dir.clone();
        let policy = Prune {
            max_bytes: Some(cache.max_bytes),
            older_than: None,
        };
        let pruned = tokio::task::spawn_blocking(move || {
            CacheDir::open(root)?.prune(policy, SystemTime::now())
        })
        .await;
        if let Ok(Ok(p)) = pruned {
            evicted = p.removed.into_iter().map(|e| e.inputs).collect();
        }
    }
    SaveReport {
        request: req,
        saved,
        evicted,
    }
}

async fn write(
    engine: &Engine,
    cache: &ImageCache,
    req: &SaveRequest,
    cancel: &CancellationToken,
) -> Result<Saved, String> {
    let started = Instant::now();
    let root = cache.dir.clone();
    let key = req.inputs.clone();
    let begun = tokio::task::spawn_blocking(move || CacheDir::open(root)?.begin_write(&key))
        .await
        .map_err(blocking_error)
        .and_then(|r| r)
        .map_err(|e| format!("{}: {e}", cache.dir.display()))?;
    let writer = match begun {
        Ok(w) => w,
        Err(NotWritten::Present) => return Ok(Saved::Skipped(SKIP_PRESENT)),
        Err(NotWritten::BeingWritten) => return Ok(Saved::Skipped(SKIP_BEING_WRITTEN)),
    };
    let clone = writer.file().try_clone().map_err(|e| e.to_string())?;
    let mut out = tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(clone));
    let mut export = engine.export_image(&req.id);
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Err("cancelled".to_string()),
            c = export.next() => c,
        };
        match chunk {
            None => break,
            Some(Ok(bytes)) => out.write_all(&bytes).await.map_err(|e| e.to_string())?,
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
    out.flush().await.map_err(|e| e.to_string())?;
    drop(out);
    let meta = ArchiveMeta {
        inputs: req.inputs.clone(),
        image: req.image.clone(),
        reference: req.reference.clone(),
        id: req.id.clone(),
        bytes: 0,
        saved_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        kprov_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let bytes = tokio::task::spawn_blocking(move || writer.commit(meta))
        .await
        .map_err(blocking_error)
        .and_then(|r| r)
        .map_err(|e| format!("publish the archive in {}: {e}", cache.dir.display()))?;
    Ok(Saved::Written {
        bytes,
        took: started.elapsed(),
    })
}

/// `12.3 MiB`.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// `10GiB`, `500 MiB`, `2G` (decimal: 2·10⁹), `1048576`: a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{text:?} is not a size such as 10GiB or 500MiB ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_binary_and_decimal_units() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500 MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("ten gigs").is_err());
        assert_eq!(size(DEFAULT_MAX_BYTES), "10.0 GiB");
    }
}
