//! `kprov cache ls|prune|key`: the image cache directory (`--image-cache DIR`), read and
//! pruned; and the hash of a service's build inputs, for a CI cache key.

use std::path::PathBuf;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::args::{CacheArgs, CacheCommand, CacheDirArg, Global, PruneArgs};
use super::commands::{load_valid, print};
use super::exit;
use super::out::say;
use crate::report::fmt::{duration, table};
use crate::tasks::image_cache::dir::{CacheDir, Entry, Prune};
use crate::tasks::image_cache::{DEFAULT_MAX_BYTES, size};

pub async fn cache_cmd(g: &Global, a: &CacheArgs) -> i32 {
    let result = match &a.command {
        CacheCommand::Ls(d) => ls(d),
        CacheCommand::Prune(p) => prune(p),
        CacheCommand::Key(k) => match load_valid(g, &k.service.service) {
            Ok(profile) => key(g, &profile, k.coverage).await,
            Err(code) => return code,
        },
    };
    match result {
        Ok(text) => print(&text, exit::SUCCESS),
        Err(e) => {
            say!("error: {e}");
            exit::FAILURE
        }
    }
}

fn open(d: &CacheDirArg) -> Result<CacheDir, String> {
    if !d.image_cache.is_dir() {
        return Err(format!(
            "the image cache {} does not exist (kprov up --image-cache DIR creates it)",
            d.image_cache.display()
        ));
    }
    CacheDir::open(&d.image_cache)
        .map_err(|e| format!("open the image cache {}: {e}", d.image_cache.display()))
}

fn ago(t: SystemTime, now: SystemTime) -> String {
    let ms = now.duration_since(t).unwrap_or_default().as_millis() as u64;
    format!("{} ago", duration(ms))
}

/// The archives as a table, most recently used first.
fn entries_table(entries: &[Entry], now: SystemTime) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .rev()
        .map(|e| {
            let (image, reference) = match &e.meta {
                Some(m) => (m.image.clone(), m.reference.clone()),
                None => ("?".into(), "(no metadata: never restored)".into()),
            };
            vec![
                e.inputs[..12].to_string(),
                image,
                reference,
                size(e.bytes),
                ago(e.last_used, now),
            ]
        })
        .collect();
    table(
        "",
        &["inputs", "image", "reference", "size", "last used"],
        &[false, false, false, true, false],
        &rows,
    )
}

fn ls(d: &CacheDirArg) -> Result<String, String> {
    let dir = open(d)?;
    let entries = dir
        .entries()
        .map_err(|e| format!("read the image cache {}: {e}", dir.root().display()))?;
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut out = String::new();
    if !entries.is_empty() {
        out.push_str(&entries_table(&entries, SystemTime::now()));
    }
    out.push_str(&format!(
        "{} archive(s), {} in {}\n",
        entries.len(),
        size(total),
        dir.root().display()
    ));
    Ok(out)
}

fn prune(p: &PruneArgs) -> Result<String, String> {
    let dir = open(&p.dir)?;
    let policy = Prune {
        max_bytes: match (p.max_size, p.older_than) {
            (None, None) => Some(DEFAULT_MAX_BYTES),
            (m, _) => m,
        },
        older_than: p.older_than,
    };
    let now = SystemTime::now();
    let pruned = dir
        .prune(policy, now)
        .map_err(|e| format!("prune the image cache {}: {e}", dir.root().display()))?;
    let mut out = String::new();
    if !pruned.removed.is_empty() {
        out.push_str("evicted:\n");
        out.push_str(&entries_table(&pruned.removed, now));
    }
    if !pruned.in_use.is_empty() {
        out.push_str("kept, another run is reading them:\n");
        out.push_str(&entries_table(&pruned.in_use, now));
    }
    let freed: u64 = pruned.removed.iter().map(|e| e.bytes).sum();
    out.push_str(&format!(
        "evicted {} archive(s) ({}); {} left ({}) in {}\n",
        pruned.removed.len(),
        size(freed),
        pruned.remaining,
        size(pruned.remaining_bytes),
        dir.root().display()
    ));
    Ok(out)
}

/// One hash over every build's inputs hash (`<image> <inputs>` lines, by image key); each
/// image's line goes to stderr.
async fn key(
    g: &Global,
    profile: &crate::profile::Profile,
    coverage: bool,
) -> Result<String, String> {
    let engine = crate::provision::connect_engine()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let source = std::path::absolute(&g.source).unwrap_or_else(|_| g.source.clone());
    let cancel = CancellationToken::new();
    let mut lines = Vec::new();
    for name in profile.spec.images.keys() {
        let Some(req) =
            crate::provision::build_request(profile, &source, name, coverage, PathBuf::new())
        else {
            continue;
        };
        let planned = crate::tasks::build::plan_build(&engine, &req, &cancel)
            .await
            .map_err(|e| e.message)?;
        say!("{name} sha256:{}", planned.inputs);
        lines.push(format!("{name} {}\n", planned.inputs));
    }
    if lines.is_empty() {
        return Err(format!("{} builds no image", profile.service));
    }
    Ok(format!("{}\n", hex::encode(Sha256::digest(lines.concat()))))
}
