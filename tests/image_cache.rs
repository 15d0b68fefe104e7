//! The image cache (`--image-cache DIR`) against the real Docker engine: archives written by
//! `docker save` through the engine API, loaded back by `docker load`, several writers and
//! readers at once on one directory, broken archives, and `kprov cache ls|prune`. The whole
//! `kprov up` restore of the demo is in tests/e2e.rs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::require_docker;
use kprov::adapters::docker::Engine;
use kprov::engine::Done;
use kprov::tasks::build::{BuildRequest, build_image_cached};
use kprov::tasks::image_cache::dir::{ArchiveMeta, CacheDir, Found};
use kprov::tasks::image_cache::{
    self, ImageCache, Restore, SKIP_BEING_WRITTEN, SKIP_PRESENT, SaveRequest, Saved,
};
use tokio_util::sync::CancellationToken;

/// Marks the images a test built, so the guard removes them however they are tagged.
const REPO_LABEL: &str = "io.kprov.test.repository";

/// A test's own image repository; every image carrying its label is removed on drop.
struct Repository {
    host: String,
    name: String,
}

impl Repository {
    fn new(host: &str, test: &str) -> Repository {
        common::ensure_test_images(host);
        Repository {
            host: host.to_string(),
            name: format!("localhost/kprov-test/{}", common::unique_name(test)),
        }
    }

    /// A build of the `app` fixture (FROM kprov/base, a COPY and a RUN) as `image`.
    fn request(&self, image: &str, log_dir: &Path) -> BuildRequest {
        let context = common::repo_root().join("tests/fixtures/images/app");
        let mut labels = BTreeMap::from([
            (common::TEST_LABEL.to_string(), "true".to_string()),
            (REPO_LABEL.to_string(), self.name.clone()),
        ]);
        // scripts/test sweeps what its run leaked by this label.
        if let Ok(run) = std::env::var(common::TEST_RUN_ENV) {
            labels.insert(common::TEST_RUN_LABEL.to_string(), run);
        }
        BuildRequest {
            image: image.to_string(),
            repository: self.name.clone(),
            dockerfile: context.join("Dockerfile"),
            context,
            target: None,
            args: BTreeMap::from([("GREETING".to_string(), image.to_string())]),
            labels,
            coverage: false,
            no_cache: false,
            log_dir: log_dir.to_path_buf(),
        }
    }

    /// Removes the image from the engine entirely (every tag), as a fresh machine lacks it.
    fn forget(&self, id: &str) {
        common::run_ok(common::docker(&self.host).args(["image", "rm", "--force", id]));
        assert!(!common::image_exists(&self.host, id), "{id} is still there");
    }
}

impl Drop for Repository {
    fn drop(&mut self) {
        let filter = format!("label={REPO_LABEL}={}", self.name);
        let Ok(out) = common::docker(&self.host)
            .args(["image", "ls", "--quiet", "--no-trunc", "--filter", &filter])
            .output()
        else {
            return;
        };
        let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let _ = common::docker(&self.host)
                .args(["image", "rm", "--force"])
                .args(&ids)
                .output();
        }
    }
}

async fn engine(host: &str) -> Engine {
    Engine::connect_to(host)
        .await
        .expect("failed to connect to the test engine")
}

fn cache_at(dir: &Path) -> ImageCache {
    ImageCache {
        dir: dir.to_path_buf(),
        max_bytes: image_cache::DEFAULT_MAX_BYTES,
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Two images, each saved by two writers at once and then restored by two readers at once
/// (all in one directory, as two runs sharing DIR would): one whole archive per hash, one
/// writer per hash wrote it, every reader loads the image. Each writer and reader opens the
/// files itself, and `flock` locks belong to open file descriptions, so they contend here
/// exactly as two processes would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_and_restores_share_one_dir_with_one_whole_archive_per_hash() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "cache_concurrent");
    let work = tempfile::tempdir().unwrap();
    let cache = cache_at(&work.path().join("images"));
    let mut built = Vec::new();
    for image in ["one", "two"] {
        let req = repo.request(image, work.path());
        let b = build_image_cached(&engine, &req, Some(&cache), &common::task_ctx(image).0)
            .await
            .unwrap();
        assert_eq!(b.done, Done::Ran, "{image}: nothing was in the cache yet");
        built.push((image, b));
    }

    let cancel = CancellationToken::new();
    let saves = built.iter().flat_map(|(image, b)| {
        let req = SaveRequest {
            image: image.to_string(),
            reference: b.image.reference.clone(),
            id: b.image.id.clone(),
            inputs: b.inputs.clone(),
        };
        [req.clone(), req]
    });
    let reports = futures::future::join_all(
        saves.map(|req| image_cache::save(&engine, &cache, req, &cancel)),
    )
    .await;
    for (image, b) in &built {
        let mine: Vec<&Saved> = reports
            .iter()
            .filter(|r| r.request.image == *image)
            .map(|r| &r.saved)
            .collect();
        let written = mine
            .iter()
            .filter(|s| matches!(s, Saved::Written { .. }))
            .count();
        assert_eq!(written, 1, "{image}: {mine:?}");
        assert!(
            mine.iter().any(
                |s| matches!(s, Saved::Skipped(w) if *w == SKIP_PRESENT || *w == SKIP_BEING_WRITTEN)
            ),
            "{image}: {mine:?}"
        );
        let meta: ArchiveMeta = serde_json::from_str(
            &std::fs::read_to_string(cache.dir.join(format!("{}.json", b.inputs))).unwrap(),
        )
        .unwrap();
        let archive = cache.dir.join(format!("{}.tar", b.inputs));
        assert_eq!(std::fs::metadata(&archive).unwrap().len(), meta.bytes);
        assert_eq!(meta.id, b.image.id);
    }
    let mut expected: Vec<String> = built
        .iter()
        .flat_map(|(_, b)| [format!("{}.json", b.inputs), format!("{}.tar", b.inputs)])
        .collect();
    expected.push(".lock".into());
    expected.sort();
    assert_eq!(names_in(&cache.dir), expected, "no partial file is left");

    // A machine without the images: two readers per archive at once.
    for (_, b) in &built {
        repo.forget(&b.image.id);
    }
    let restores = built.iter().flat_map(|(image, b)| {
        let tag = b.image.reference.rsplit_once(':').unwrap().1.to_string();
        [(image, b, tag.clone()), (image, b, tag)]
    });
    let results = futures::future::join_all(restores.map(|(image, b, tag)| {
        let engine = &engine;
        let cache = &cache;
        let repo = &repo.name;
        async move {
            let ctx = common::task_ctx(image).0;
            let r = image_cache::restore(engine, cache, &b.inputs, (repo, &tag), &ctx).await;
            (image, b, r)
        }
    }))
    .await;
    for (image, b, r) in results {
        match r.unwrap() {
            Restore::Restored(info, bytes) => {
                assert_eq!(info.id, b.image.id, "{image}");
                assert!(bytes > 0);
            }
            other => panic!("{image}: {other:?}"),
        }
        assert!(
            common::image_exists(&host, &b.image.reference),
            "{image} is tagged {}",
            b.image.reference
        );
    }
    assert_eq!(names_in(&cache.dir), expected, "restoring changed the dir");
}

/// A truncated archive (shorter than its metadata says) and a corrupt one (same size, other
/// bytes: the engine refuses it) are reported, removed, and the image is built instead; the
/// build then saves a good archive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_corrupt_archive_is_reported_removed_and_the_image_built_instead() {
    let host = require_docker!();
    let engine = engine(&host).await;
    let repo = Repository::new(&host, "cache_corrupt");
    let work = tempfile::tempdir().unwrap();
    let cache = cache_at(&work.path().join("images"));
    let req = repo.request("broken", work.path());
    let cancel = CancellationToken::new();

    let save_and_forget = async |what: &str| {
        let b = build_image_cached(&engine, &req, Some(&cache), &common::task_ctx(what).0)
            .await
            .unwrap();
        let saved = image_cache::save(
            &engine,
            &cache,
            SaveRequest {
                image: "broken".into(),
                reference: b.image.reference.clone(),
                id: b.image.id.clone(),
                inputs: b.inputs.clone(),
            },
            &cancel,
        )
        .await;
        assert!(
            matches!(saved.saved, Saved::Written { .. }),
            "{what}: {saved:?}"
        );
        repo.forget(&b.image.id);
        b
    };

    // Truncated: cut to half its size.
    let first = save_and_forget("b1").await;
    let archive = cache.dir.join(format!("{}.tar", first.inputs));
    let full = std::fs::metadata(&archive).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_len(full / 2)
        .unwrap();
    let (ctx, mut rx) = common::task_ctx("b2");
    let again = build_image_cached(&engine, &req, Some(&cache), &ctx)
        .await
        .unwrap();
    assert_eq!(again.done, Done::Ran, "built instead");
    let problem = again
        .cache_problem
        .expect("the truncated archive is reported");
    assert!(
        problem.contains(&format!("has {} bytes, not the {full}", full / 2))
            && problem.ends_with("removed it"),
        "{problem}"
    );
    assert!(
        common::progress(&mut rx)
            .iter()
            .any(|l| l.contains("building instead")),
        "the task's log says so"
    );
    assert!(!archive.exists(), "the truncated archive was removed");

    // Corrupt: same size as recorded, but not a tar the engine can load.
    repo.forget(&again.image.id);
    let second = save_and_forget("b3").await;
    assert_eq!(second.inputs, first.inputs);
    let len = std::fs::metadata(&archive).unwrap().len() as usize;
    std::fs::write(&archive, vec![0x5a; len]).unwrap();
    let rebuilt = build_image_cached(&engine, &req, Some(&cache), &common::task_ctx("b4").0)
        .await
        .unwrap();
    assert_eq!(rebuilt.done, Done::Ran);
    let problem = rebuilt
        .cache_problem
        .expect("the corrupt archive is reported");
    assert!(
        problem.contains("the engine could not load it") && problem.ends_with("removed it"),
        "{problem}"
    );
    assert!(!archive.exists());
    assert_eq!(names_in(&cache.dir), [".lock"]);
}

/// `kprov` with the state and profiles of nowhere in particular (the cache commands need none).
fn kprov() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kprov"));
    c.env_remove("KPROV_IMAGE_CACHE")
        .env_remove("KPROV_IMAGE_CACHE_MAX_SIZE")
        .env("NO_COLOR", "1");
    c
}

/// Three archives of 1, 2 and 3 MiB written through the cache's own writer, used 30, 20 and
/// 10 minutes ago.
fn three_archives(dir: &Path) -> Vec<String> {
    let cache = CacheDir::open(dir).unwrap();
    let mut hashes = Vec::new();
    for (n, (mib, minutes)) in [(1u64, 30u64), (2, 20), (3, 10)].into_iter().enumerate() {
        let inputs = format!("{:064x}", n + 1);
        let w = cache.begin_write(&inputs).unwrap().unwrap();
        w.file().set_len(mib << 20).unwrap();
        w.commit(ArchiveMeta {
            inputs: inputs.clone(),
            image: format!("img{}", n + 1),
            reference: format!("localhost/kprov/img{}:kprov-{}", n + 1, &inputs[..12]),
            id: format!("sha256:{inputs}"),
            bytes: 0,
            saved_at: "2026-12-01T00:00:00Z".into(),
            kprov_version: "test".into(),
        })
        .unwrap();
        let f = std::fs::File::open(cache.archive_path(&inputs)).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(minutes * 60))
            .unwrap();
        hashes.push(inputs);
    }
    hashes
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn cache_ls_lists_archives_and_prune_evicts_the_least_recently_used_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("images");
    let hashes = three_archives(&dir);

    let ls = stdout_of(kprov().args(["cache", "ls", "--image-cache"]).arg(&dir));
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("inputs"), "{ls}");
    // Most recently used first.
    assert!(
        lines[1].starts_with(&hashes[2][..12]) && lines[1].contains("img3"),
        "{ls}"
    );
    assert!(
        lines[1].contains("3.0 MiB") && lines[1].contains("10m"),
        "{ls}"
    );
    assert!(lines[3].starts_with(&hashes[0][..12]), "{ls}");
    assert!(ls.contains("3 archive(s), 6.0 MiB in"), "{ls}");

    // 4 MiB keeps the newest archive only if the older two go: img1 (30m), then img2 (20m).
    let pruned = stdout_of(
        kprov()
            .args(["cache", "prune", "--max-size", "4MiB", "--image-cache"])
            .arg(&dir),
    );
    assert!(
        pruned.contains("evicted 2 archive(s) (3.0 MiB); 1 left (3.0 MiB)"),
        "{pruned}"
    );
    let ls = stdout_of(kprov().args(["cache", "ls"]).env("KPROV_IMAGE_CACHE", &dir));
    assert!(
        ls.contains("img3") && !ls.contains("img1") && !ls.contains("img2"),
        "{ls}"
    );

    // By age: the one left was used 10 minutes ago.
    let kept = stdout_of(
        kprov()
            .args(["cache", "prune", "--older-than", "1h", "--image-cache"])
            .arg(&dir),
    );
    assert!(kept.contains("evicted 0 archive(s)"), "{kept}");
    let gone = stdout_of(
        kprov()
            .args(["cache", "prune", "--older-than", "5m", "--image-cache"])
            .arg(&dir),
    );
    assert!(gone.contains("evicted 1 archive(s)"), "{gone}");
    assert_eq!(names_in(&dir), [".lock"]);
}

#[test]
fn an_archive_being_restored_is_not_evicted_by_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("images");
    let hashes = three_archives(&dir);
    let cache = CacheDir::open(&dir).unwrap();
    // The oldest is being read (as `restore` holds it while the engine loads it).
    let Found::Archive(reading) = cache.read(&hashes[0]).unwrap() else {
        panic!("no archive")
    };
    let out = stdout_of(
        kprov()
            .args(["cache", "prune", "--max-size", "0", "--image-cache"])
            .arg(&dir),
    );
    assert!(out.contains("kept, another run is reading them"), "{out}");
    assert!(out.contains("evicted 2 archive(s)"), "{out}");
    assert!(cache.archive_path(&hashes[0]).exists());
    drop(reading);
}

#[test]
fn cache_commands_name_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kprov()
        .args(["cache", "ls", "--image-cache"])
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope does not exist"), "{err}");
}
