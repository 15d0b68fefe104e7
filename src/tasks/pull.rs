//! Images kprov does not build: a third-party image ([`ensure_external`]: present locally →
//! cached, otherwise pulled), an image already in the engine ([`use_local`], `--image
//! KEY=REF`: never pulled, missing is an error) and a registry image ([`pull_registry`],
//! `--image-registry`: always pulled, since a registry tag such as `pr-123` moves).

use crate::adapters::docker::Engine;
use crate::engine::{Done, TaskCtx, TaskError};
use crate::tasks::build::{BuiltImage, engine_task_error, short_id};

/// Makes sure the third-party image `reference` is present locally: present → cached;
/// otherwise pulled; otherwise an error naming the image and how to provide it.
pub async fn ensure_external(
    engine: &Engine,
    reference: &str,
    ctx: &TaskCtx,
) -> Result<(BuiltImage, Done), TaskError> {
    let what = format!("ensure image {reference} is present");
    if let Some(image) = present(engine, reference, &what).await? {
        ctx.progress(format!("{reference} is present ({})", short_id(&image.id)));
        return Ok((image, Done::Cached));
    }
    ctx.progress(format!("{reference} is not present locally: pulling it"));
    pull(engine, reference, ctx, &what).await.map_err(|detail| {
        if detail == CANCELLED {
            return TaskError::fatal(format!("{what}: cancelled"));
        }
        TaskError::fatal(format!(
            "{what}: it is not present locally and pulling it failed ({detail})\n\
             provide it with `docker pull {reference}` where a registry is reachable, \
             `docker load -i <archive>` from a saved copy, or build it and tag it {reference}"
        ))
    })
}

/// `--image KEY=REF`: the image `reference` as the engine holds it; never pulled.
pub async fn use_local(
    engine: &Engine,
    key: &str,
    reference: &str,
    ctx: &TaskCtx,
) -> Result<(BuiltImage, Done), TaskError> {
    let what = format!("use image {reference} for {key} (--image)");
    match present(engine, reference, &what).await? {
        Some(image) => {
            ctx.progress(format!(
                "using {reference} ({}) instead of building {key}",
                short_id(&image.id)
            ));
            Ok((image, Done::Cached))
        }
        None => Err(TaskError::fatal(format!(
            "{what}: the engine has no image {reference} (`docker images` lists what it has)"
        ))),
    }
}

/// `--image-registry`: pulls `reference` from its registry (every run: the tag may have
/// moved). A failure names the image and what the registry answered.
pub async fn pull_registry(
    engine: &Engine,
    key: &str,
    reference: &str,
    ctx: &TaskCtx,
) -> Result<(BuiltImage, Done), TaskError> {
    let what = format!("pull {reference} for {key} (--image-registry)");
    ctx.progress(format!("pulling {reference}"));
    pull(engine, reference, ctx, &what)
        .await
        .map_err(|detail| match detail.as_str() {
            CANCELLED => TaskError::fatal(format!("{what}: cancelled")),
            _ => TaskError::fatal(format!("{what}: the registry said: {detail}")),
        })
}

const CANCELLED: &str = "cancelled";

async fn present(
    engine: &Engine,
    reference: &str,
    what: &str,
) -> Result<Option<BuiltImage>, TaskError> {
    Ok(engine
        .inspect_image(reference)
        .await
        .map_err(|e| engine_task_error(what, e))?
        .map(|image| BuiltImage {
            reference: reference.to_string(),
            id: image.id,
            builder: None,
        }))
}

/// Pulls `reference` into the engine, reporting changes of state (not progress bars). `Err`
/// carries the engine's (the registry's) words; a cancel is a task error of its own.
async fn pull(
    engine: &Engine,
    reference: &str,
    ctx: &TaskCtx,
    what: &str,
) -> Result<(BuiltImage, Done), String> {
    let mut last_status = String::new();
    let pulled = engine
        .pull_image(reference, &ctx.cancel, |status| {
            if status != last_status
                && !status.contains("Downloading")
                && !status.contains("Extracting")
            {
                ctx.progress(status.to_string());
                last_status = status.to_string();
            }
        })
        .await;
    if let Err(e) = pulled {
        if e.is_cancelled() {
            return Err(CANCELLED.into());
        }
        return Err(e.detail);
    }
    match present(engine, reference, what).await {
        Ok(Some(image)) => {
            ctx.progress(format!("pulled {reference} ({})", short_id(&image.id)));
            Ok((image, Done::Ran))
        }
        Ok(None) => Err(format!(
            "the pull finished but no image is tagged {reference}"
        )),
        Err(e) => Err(e.to_string()),
    }
}
