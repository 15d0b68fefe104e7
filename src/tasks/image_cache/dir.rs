//! The image cache directory: one archive per content hash, safe for several runs at once.
//!
//! Layout of `DIR` (nothing else is read, and only these names are ever removed):
//!
//! | file | what |
//! |---|---|
//! | `<inputs>.tar` | `docker save` of the image whose build inputs hash to `<inputs>` (64 hex) |
//! | `<inputs>.json` | [`ArchiveMeta`]: the image it holds, its ID, its size, when it was saved |
//! | `.<inputs>.tar.partial` | an archive being written (locked by its writer) |
//! | `.lock` | serialises publishing and removing; never removed |
//!
//! "Last used" is the archive's modification time: set when it is written, and again each time
//! a run restores it or finds its image already in the engine, so eviction is least recently
//! used first (and `actions/cache` keeps modification times).
//!
//! Locks (`flock(2)` through std's `File::lock`): a reader holds a shared lock on the archive
//! it streams, and eviction only removes an archive it can lock exclusively, so an archive in
//! use is never deleted; a reader that locked an archive just removed sees it unlinked and
//! treats it as missing. A writer holds an exclusive lock on its `.partial` file, so a second
//! run saving the same hash skips instead of colliding, and publishes with a rename (metadata
//! first, then the archive) under `.lock`, which removal also takes: a reader sees a whole
//! archive with its metadata, or none.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

const ARCHIVE_EXT: &str = "tar";
const META_EXT: &str = "json";
const PARTIAL_SUFFIX: &str = ".tar.partial";
const DIR_LOCK: &str = ".lock";
/// A `.partial` nobody holds and older than this was left by a run that died.
const STALE_PARTIAL: Duration = Duration::from_secs(10 * 60);

/// What `<inputs>.json` says about its archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMeta {
    /// The hex SHA-256 of the build inputs (the archive's name).
    pub inputs: String,
    /// The profile's key for the image (`api`).
    pub image: String,
    /// The reference it was built as (`localhost/kprov/api:kprov-0123456789ab`).
    pub reference: String,
    /// The image ID (`sha256:…`) loading the archive must give.
    pub id: String,
    /// The archive's size: a file of another size is truncated or was replaced.
    pub bytes: u64,
    /// RFC 3339, when it was saved.
    pub saved_at: String,
    pub kprov_version: String,
}

/// One archive in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub inputs: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub last_used: SystemTime,
    /// `None` when the metadata is missing or unreadable (the archive is then not used).
    pub meta: Option<ArchiveMeta>,
}

/// An archive opened for reading, holding its shared lock until dropped.
#[derive(Debug)]
pub struct Archive {
    pub file: File,
    pub path: PathBuf,
    pub meta: ArchiveMeta,
}

/// Why an archive that is there cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub path: PathBuf,
    pub why: String,
}

/// What [`CacheDir::read`] found.
#[derive(Debug)]
pub enum Found {
    Archive(Archive),
    Missing,
    /// There, but truncated or without its metadata; still locked (shared) for
    /// [`CacheDir::discard`].
    Unusable(File, Unusable),
}

/// An archive being written: the `.partial` file, locked. Dropped without
/// [`Writer::commit`], the partial file is removed.
#[derive(Debug)]
pub struct Writer {
    file: Option<File>,
    partial: PathBuf,
    root: PathBuf,
    inputs: String,
}

/// Why [`CacheDir::begin_write`] did not start a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotWritten {
    /// The archive is there already (its last use was updated).
    Present,
    /// Another run is writing it right now.
    BeingWritten,
}

/// What to evict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prune {
    /// Evict least recently used archives until the rest fit.
    pub max_bytes: Option<u64>,
    /// Evict archives not used for this long.
    pub older_than: Option<Duration>,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: Vec<Entry>,
    /// Archives that should have gone but another run is reading them.
    pub in_use: Vec<Entry>,
    pub remaining: usize,
    pub remaining_bytes: u64,
}

/// An image cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir {
    root: PathBuf,
}

/// `true` for 64 lowercase hex digits: the only names this module makes or removes.
fn is_inputs(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if !not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// `true` when `file` is still the file at `path` (not unlinked or replaced since it was opened).
fn still_at(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(open.nlink() > 0 && now.ino() == open.ino() && now.dev() == open.dev()),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Marks `file` used now. A file whose times cannot be set keeps its old last use.
fn touch(file: &File) {
    let _ = file.set_modified(SystemTime::now());
}

impl CacheDir {
    /// The directory at `root`, created when missing.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<CacheDir> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(CacheDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn archive_path(&self, inputs: &str) -> PathBuf {
        self.root.join(format!("{inputs}.{ARCHIVE_EXT}"))
    }

    fn meta_path(&self, inputs: &str) -> PathBuf {
        self.root.join(format!("{inputs}.{META_EXT}"))
    }

    fn partial_path(&self, inputs: &str) -> PathBuf {
        self.root.join(format!(".{inputs}{PARTIAL_SUFFIX}"))
    }

    /// `.lock`, held exclusively (blocking) until the returned file is dropped.
    fn lock_dir(&self) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(DIR_LOCK))?;
        f.lock()?;
        Ok(f)
    }

    fn read_meta(&self, inputs: &str) -> Result<ArchiveMeta, String> {
        let path = self.meta_path(inputs);
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("its metadata {} is missing", path.display()),
            _ => format!("read {}: {e}", path.display()),
        })?;
        let meta: ArchiveMeta =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.inputs != inputs {
            return Err(format!(
                "{} describes inputs {}, not {inputs}",
                path.display(),
                meta.inputs
            ));
        }
        Ok(meta)
    }

    /// Every archive, least recently used first.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for item in fs::read_dir(&self.root)? {
            let item = item?;
            let name = item.file_name();
            let Some(inputs) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{ARCHIVE_EXT}")))
                .filter(|i| is_inputs(i))
            else {
                continue;
            };
            let md = match item.metadata() {
                Ok(md) => md,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            entries.push(Entry {
                inputs: inputs.to_string(),
                path: item.path(),
                bytes: md.len(),
                last_used: md.modified()?,
                meta: self.read_meta(inputs).ok(),
            });
        }
        entries.sort_by(|a, b| (a.last_used, &a.inputs).cmp(&(b.last_used, &b.inputs)));
        Ok(entries)
    }

    /// Opens the archive for `inputs` under a shared lock (blocking while it is being
    /// published) and marks it used; checks its metadata and size.
    pub fn read(&self, inputs: &str) -> io::Result<Found> {
        let path = self.archive_path(inputs);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Ok(Found::Missing),
            Err(e) => return Err(e),
        };
        file.lock_shared()?;
        if !still_at(&file, &path)? {
            return Ok(Found::Missing);
        }
        let unusable = |file, why| {
            Ok(Found::Unusable(
                file,
                Unusable {
                    path: path.clone(),
                    why,
                },
            ))
        };
        let meta = match self.read_meta(inputs) {
            Ok(m) => m,
            Err(why) => return unusable(file, why),
        };
        let bytes = file.metadata()?.len();
        if bytes != meta.bytes {
            let why = format!(
                "it has {bytes} bytes, not the {} it was saved with",
                meta.bytes
            );
            return unusable(file, why);
        }
        touch(&file);
        Ok(Found::Archive(Archive { file, path, meta }))
    }

    /// Removes the archive `file` (opened by [`CacheDir::read`]) and its metadata, unless
    /// another run is reading it too. `Ok(false)`: left in place.
    pub fn discard(&self, file: File, inputs: &str) -> io::Result<bool> {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let _dir = self.lock_dir()?;
        let path = self.archive_path(inputs);
        if !still_at(&file, &path)? {
            return Ok(false);
        }
        remove_if_there(&path)?;
        remove_if_there(&self.meta_path(inputs))?;
        Ok(true)
    }

    /// Starts writing the archive for `inputs`, unless it is there (then marks it used) or
    /// another run is writing it.
    pub fn begin_write(&self, inputs: &str) -> io::Result<Result<Writer, NotWritten>> {
        if let Ok(f) = File::open(self.archive_path(inputs)) {
            touch(&f);
            return Ok(Err(NotWritten::Present));
        }
        let partial = self.partial_path(inputs);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&partial)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Err(NotWritten::BeingWritten)),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        // Another writer may have published and removed this path between open and lock.
        if !still_at(&file, &partial)? {
            return Ok(Err(NotWritten::BeingWritten));
        }
        if self.archive_path(inputs).exists() {
            remove_if_there(&partial)?;
            return Ok(Err(NotWritten::Present));
        }
        file.set_len(0)?;
        Ok(Ok(Writer {
            file: Some(file),
            partial,
            root: self.root.clone(),
            inputs: inputs.to_string(),
        }))
    }

    /// Evicts what `policy` says, least recently used first, skipping archives in use; also
    /// removes what dead runs left (stale `.partial` files, metadata without an archive).
    pub fn prune(&self, policy: Prune, now: SystemTime) -> io::Result<Pruned> {
        let _dir = self.lock_dir()?;
        self.sweep_leftovers(now)?;
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut out = Pruned::default();
        for e in entries {
            let age = now.duration_since(e.last_used).unwrap_or_default();
            let expired = policy.older_than.is_some_and(|d| age > d);
            let over = policy.max_bytes.is_some_and(|m| total > m);
            if !(expired || over) {
                out.remaining += 1;
                out.remaining_bytes += e.bytes;
                continue;
            }
            if self.remove_unless_in_use(&e)? {
                total -= e.bytes;
                out.removed.push(e);
            } else {
                out.remaining += 1;
                out.remaining_bytes += e.bytes;
                out.in_use.push(e);
            }
        }
        Ok(out)
    }

    /// Removes an archive nobody reads (the caller holds `.lock`).
    fn remove_unless_in_use(&self, e: &Entry) -> io::Result<bool> {
        let file = match File::open(&e.path) {
            Ok(f) => f,
            Err(err) if not_found(&err) => return Ok(true),
            Err(err) => return Err(err),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(err)) => return Err(err),
        }
        remove_if_there(&e.path)?;
        remove_if_there(&self.meta_path(&e.inputs))?;
        Ok(true)
    }

    /// Stale `.partial` files nobody holds, and metadata whose archive is gone.
    fn sweep_leftovers(&self, now: SystemTime) -> io::Result<()> {
        for item in fs::read_dir(&self.root)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().to_string();
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > STALE_PARTIAL)
                .unwrap_or(false);
            if let Some(inputs) = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(PARTIAL_SUFFIX))
                .filter(|i| is_inputs(i))
            {
                let partial = self.partial_path(inputs);
                if old
                    && let Ok(f) = File::open(&partial)
                    && f.try_lock().is_ok()
                {
                    remove_if_there(&partial)?;
                }
            } else if let Some(inputs) = name
                .strip_suffix(&format!(".{META_EXT}"))
                .filter(|i| is_inputs(i))
                && !self.archive_path(inputs).exists()
            {
                remove_if_there(&item.path())?;
            }
        }
        Ok(())
    }
}

impl Writer {
    /// The partial file, to write the archive into.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("not committed")
    }

    /// Flushes the archive to disk and publishes it with its metadata (`bytes` and `inputs`
    /// are set here). Returns the archive's size. On an error nothing is published.
    pub fn commit(mut self, mut meta: ArchiveMeta) -> io::Result<u64> {
        let file = self.file.take().expect("committed once");
        let meta_tmp = self.root.join(format!(
            ".{}.json.{}.partial",
            self.inputs,
            std::process::id()
        ));
        let published = (|| {
            file.sync_all()?;
            meta.bytes = file.metadata()?.len();
            meta.inputs = self.inputs.clone();
            let text = serde_json::to_string_pretty(&meta).map_err(io::Error::other)?;
            let mut f = File::create(&meta_tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            let dir = CacheDir {
                root: self.root.clone(),
            };
            let _lock = dir.lock_dir()?;
            fs::rename(&meta_tmp, dir.meta_path(&self.inputs))?;
            fs::rename(&self.partial, dir.archive_path(&self.inputs))?;
            // The directory entries themselves, so a crash right after keeps the renames.
            if let Ok(d) = File::open(&self.root) {
                let _ = d.sync_all();
            }
            Ok(meta.bytes)
        })();
        if published.is_err() {
            let _ = fs::remove_file(&meta_tmp);
            let _ = fs::remove_file(&self.partial);
        }
        // The lock on the archive goes last: a reader waiting on it then sees it whole.
        drop(file);
        published
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(n: u8) -> String {
        format!("{:064x}", n)
    }

    fn meta(n: u8) -> ArchiveMeta {
        ArchiveMeta {
            inputs: String::new(),
            image: format!("img{n}"),
            reference: format!("localhost/kprov/img{n}:kprov-{}", &inputs(n)[..12]),
            id: format!("sha256:{}", inputs(n)),
            bytes: 0,
            saved_at: "2026-12-01T00:00:00Z".into(),
            kprov_version: "test".into(),
        }
    }

    fn save(dir: &CacheDir, n: u8, bytes: usize) {
        let w = dir.begin_write(&inputs(n)).unwrap().unwrap();
        w.file().write_all(&vec![n; bytes]).unwrap();
        w.commit(meta(n)).unwrap();
    }

    fn used_at(dir: &CacheDir, n: u8, secs_ago: u64) {
        let f = File::open(dir.archive_path(&inputs(n))).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
            .unwrap();
    }

    #[test]
    fn a_saved_archive_is_read_back_with_its_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path().join("c")).unwrap();
        save(&dir, 1, 100);
        let Found::Archive(a) = dir.read(&inputs(1)).unwrap() else {
            panic!("not found")
        };
        assert_eq!(a.meta.bytes, 100);
        assert_eq!(a.meta.inputs, inputs(1));
        assert_eq!(a.meta.image, "img1");
        assert!(matches!(dir.read(&inputs(2)).unwrap(), Found::Missing));
        let names: Vec<String> = fs::read_dir(dir.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    }

    #[test]
    fn a_second_writer_of_one_hash_skips_while_the_first_writes_and_after() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        let first = dir.begin_write(&inputs(1)).unwrap().unwrap();
        assert_eq!(
            dir.begin_write(&inputs(1)).unwrap().unwrap_err(),
            NotWritten::BeingWritten
        );
        first.file().write_all(b"archive").unwrap();
        first.commit(meta(1)).unwrap();
        assert_eq!(
            dir.begin_write(&inputs(1)).unwrap().unwrap_err(),
            NotWritten::Present
        );
        assert_eq!(dir.entries().unwrap().len(), 1);
    }

    #[test]
    fn an_abandoned_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        let w = dir.begin_write(&inputs(1)).unwrap().unwrap();
        w.file().write_all(b"half an archive").unwrap();
        drop(w);
        assert!(dir.entries().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.root()).unwrap().count(), 0);
    }

    #[test]
    fn a_truncated_archive_is_unusable_and_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        save(&dir, 1, 1000);
        let path = dir.archive_path(&inputs(1));
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        let Found::Unusable(file, why) = dir.read(&inputs(1)).unwrap() else {
            panic!("a truncated archive was accepted")
        };
        assert!(why.why.contains("has 10 bytes, not the 1000"), "{why:?}");
        assert!(dir.discard(file, &inputs(1)).unwrap());
        assert!(!path.exists());
        assert!(dir.entries().unwrap().is_empty());
    }

    #[test]
    fn prune_evicts_the_least_recently_used_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        for n in 1..=3 {
            save(&dir, n, 100);
        }
        // 2 is the oldest, then 1; 3 was used last.
        used_at(&dir, 2, 300);
        used_at(&dir, 1, 200);
        used_at(&dir, 3, 100);
        let policy = Prune {
            max_bytes: Some(150),
            older_than: None,
        };
        let pruned = dir.prune(policy, SystemTime::now()).unwrap();
        let removed: Vec<&str> = pruned.removed.iter().map(|e| e.inputs.as_str()).collect();
        assert_eq!(removed, [inputs(2).as_str(), inputs(1).as_str()]);
        assert_eq!((pruned.remaining, pruned.remaining_bytes), (1, 100));
        let left: Vec<String> = dir
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.inputs)
            .collect();
        assert_eq!(left, [inputs(3)]);
        assert!(!dir.meta_path(&inputs(2)).exists());
    }

    #[test]
    fn prune_by_age_keeps_what_was_used_recently() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        save(&dir, 1, 10);
        save(&dir, 2, 10);
        used_at(&dir, 1, 8 * 24 * 3600);
        let policy = Prune {
            max_bytes: None,
            older_than: Some(Duration::from_secs(7 * 24 * 3600)),
        };
        let pruned = dir.prune(policy, SystemTime::now()).unwrap();
        assert_eq!(pruned.removed.len(), 1);
        assert_eq!(pruned.removed[0].inputs, inputs(1));
    }

    #[test]
    fn an_archive_being_read_is_never_evicted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        save(&dir, 1, 100);
        let Found::Archive(reading) = dir.read(&inputs(1)).unwrap() else {
            panic!("not found")
        };
        let all = Prune {
            max_bytes: Some(0),
            older_than: None,
        };
        let pruned = dir.prune(all, SystemTime::now()).unwrap();
        assert!(pruned.removed.is_empty());
        assert_eq!(pruned.in_use.len(), 1);
        assert!(dir.archive_path(&inputs(1)).exists());
        drop(reading);
        let pruned = dir.prune(all, SystemTime::now()).unwrap();
        assert_eq!(pruned.removed.len(), 1);
    }

    #[test]
    fn reading_marks_an_archive_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        save(&dir, 1, 10);
        save(&dir, 2, 10);
        used_at(&dir, 1, 500);
        used_at(&dir, 2, 400);
        drop(dir.read(&inputs(1)).unwrap());
        let order: Vec<String> = dir
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.inputs)
            .collect();
        assert_eq!(order, [inputs(2), inputs(1)]);
    }

    #[test]
    fn other_files_in_the_directory_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        fs::write(tmp.path().join("notes.tar"), b"mine").unwrap();
        fs::write(tmp.path().join("README"), b"mine").unwrap();
        save(&dir, 1, 10);
        let all = Prune {
            max_bytes: Some(0),
            older_than: None,
        };
        dir.prune(all, SystemTime::now()).unwrap();
        assert!(tmp.path().join("notes.tar").exists());
        assert!(tmp.path().join("README").exists());
        assert!(dir.entries().unwrap().is_empty());
    }
}
