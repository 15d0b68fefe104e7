//! The manifest cache: one file per digest, `<cache_dir>/manifests/sha256-<hex>.yaml`. A file
//! is written whole under a temporary name and renamed into place, so a reader sees either no
//! file or all of it; a file is only trusted after its digest is recomputed.

use std::{
    fs, io,
    io::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use sha2::{Digest as _, Sha256};

use super::Sha256Digest;

/// The sub-directory of kprov's cache directory that holds manifests.
pub const MANIFESTS: &str = "manifests";

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `bytes` hash to `pin`; else the digest they do hash to.
pub fn check(pin: &Sha256Digest, bytes: &[u8]) -> Result<(), String> {
    let got = sha256_hex(bytes);
    if got == pin.hex() { Ok(()) } else { Err(got) }
}

/// Where the manifest with digest `pin` is kept.
pub fn path_for(cache_dir: &Path, pin: &Sha256Digest) -> PathBuf {
    cache_dir
        .join(MANIFESTS)
        .join(format!("sha256-{}.yaml", pin.hex()))
}

/// What the cache holds for a digest.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// A file is there but does not hash to its name (a disk fault, a hand edit); it has been
    /// removed. Carries the digest it had.
    Corrupt(String),
}

/// The cached bytes for `pin`, checked.
pub fn lookup(cache_dir: &Path, pin: &Sha256Digest) -> io::Result<Lookup> {
    let path = path_for(cache_dir, pin);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
        Err(e) => return Err(e),
    };
    match check(pin, &bytes) {
        Ok(()) => Ok(Lookup::Hit(bytes)),
        Err(got) => {
            remove_if_there(&path)?;
            Ok(Lookup::Corrupt(got))
        }
    }
}

/// Keeps `bytes` as the manifest for `pin`, atomically. The caller has checked the digest.
pub fn store(cache_dir: &Path, pin: &Sha256Digest, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = path_for(cache_dir, pin);
    write_atomic(&path, bytes)?;
    Ok(path)
}

/// Where the pin of an unpinned URL is kept: named by the sha256 of the URL.
pub fn pin_path_for(cache_dir: &Path, url: &str) -> PathBuf {
    cache_dir
        .join(MANIFESTS)
        .join(format!("url-{}.pin", sha256_hex(url.as_bytes())))
}

/// The pin recorded for `url` (a first line `sha256:<hex>`, then the URL, for people), if any.
pub fn read_pin(cache_dir: &Path, url: &str) -> io::Result<Option<Sha256Digest>> {
    let path = pin_path_for(cache_dir, url);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let first = text.lines().next().unwrap_or_default();
    Sha256Digest::parse(first.trim())
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Records `pin` as the digest of `url`, atomically (two runs racing write the same pin, or
/// the loser's replaces the winner's: both were checked downloads of the same URL).
pub fn write_pin(cache_dir: &Path, url: &str, pin: &Sha256Digest) -> io::Result<()> {
    write_atomic(
        &pin_path_for(cache_dir, url),
        format!("{pin}\n{url}\n").as_bytes(),
    )
}

/// Writes `bytes` at `path` whole under a temporary name, then renames it into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a cache path has a directory");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(temp_name(path));
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable once the directory entry is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A name no other writer (another kprov, another task of this one) uses at the same time, and
/// that [`lookup`] never reads.
fn temp_name(path: &Path) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.{}-{n}.tmp", std::process::id())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create_new(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin_of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest::parse(&sha256_hex(bytes)).unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kprov-remote-cache-{name}-{}-{}",
            std::process::id(),
            sha256_hex(name.as_bytes()).get(..8).unwrap()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_digest_check_names_the_digest_it_found() {
        // sha256("") is well known.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
        let pin = Sha256Digest::parse(empty).unwrap();
        assert_eq!(check(&pin, b""), Ok(()));
        assert_eq!(check(&pin, b"kind: x\n"), Err(sha256_hex(b"kind: x\n")));
    }

    #[test]
    fn a_stored_manifest_is_found_under_its_digest_and_no_temporary_file_is_left() {
        let cache = scratch("store");
        let text = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
        let pin = pin_of(text);
        assert_eq!(lookup(&cache, &pin).unwrap(), Lookup::Miss);
        let path = store(&cache, &pin, text).unwrap();
        assert_eq!(
            path,
            cache
                .join("manifests")
                .join(format!("sha256-{}.yaml", pin.hex()))
        );
        assert_eq!(lookup(&cache, &pin).unwrap(), Lookup::Hit(text.to_vec()));
        assert_eq!(
            entries(&cache.join("manifests")),
            [format!("sha256-{}.yaml", pin.hex())]
        );
        // Storing again (a second kprov that downloaded at the same time) replaces it whole.
        store(&cache, &pin, text).unwrap();
        assert_eq!(entries(&cache.join("manifests")).len(), 1);
        fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_its_temporary() {
        let cache = scratch("failed");
        let pin = pin_of(b"x");
        // The final name is taken by a directory, so the rename fails after the write.
        fs::create_dir_all(path_for(&cache, &pin).join("in-the-way")).unwrap();
        assert!(store(&cache, &pin, b"x").is_err());
        assert_eq!(
            entries(&cache.join("manifests")),
            [format!("sha256-{}.yaml", pin.hex())]
        );
        assert!(path_for(&cache, &pin).is_dir());
        fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_cached_file_that_no_longer_matches_its_digest_is_removed_not_used() {
        let cache = scratch("corrupt");
        let pin = pin_of(b"good");
        store(&cache, &pin, b"good").unwrap();
        fs::write(path_for(&cache, &pin), b"edited").unwrap();
        assert_eq!(
            lookup(&cache, &pin).unwrap(),
            Lookup::Corrupt(sha256_hex(b"edited"))
        );
        assert!(!path_for(&cache, &pin).exists());
        assert_eq!(lookup(&cache, &pin).unwrap(), Lookup::Miss);
        fs::remove_dir_all(&cache).unwrap();
    }
}
