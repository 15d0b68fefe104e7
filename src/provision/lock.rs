//! One `kprov up` (or `down`) per cluster at a time, host-wide: an advisory file lock named
//! after the cluster. Runs for different clusters never touch each other's lock.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    path::PathBuf,
};

/// Held for the life of the value; the OS releases it if the process dies.
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    pub path: PathBuf,
}

/// Where the locks live: shared by every checkout and user of this host.
pub fn lock_dir() -> PathBuf {
    std::env::var_os("KPROV_LOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kprov-locks"))
}

impl ClusterLock {
    /// Take the lock of `cluster`, or say who holds it.
    pub fn acquire(cluster: &str) -> Result<ClusterLock, String> {
        let dir = lock_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("create the lock directory {}: {e}", dir.display()))?;
        let path = dir.join(format!("{cluster}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("open the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                Ok(ClusterLock { _file: file, path })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                Err(format!(
                    "another kprov run is using cluster {cluster}{who}; wait for it to finish, or use another cluster name (lock: {})",
                    path.display()
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(format!("lock {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_cluster_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: this test alone sets the variable, before taking any lock.
        unsafe { std::env::set_var("KPROV_LOCK_DIR", dir.path()) };
        let first = ClusterLock::acquire("c1").unwrap();
        let err = ClusterLock::acquire("c1").unwrap_err();
        assert!(
            err.contains("another kprov run is using cluster c1"),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let other = ClusterLock::acquire("c2");
        assert!(other.is_ok(), "different clusters do not interfere");
        drop(first);
        assert!(ClusterLock::acquire("c1").is_ok(), "released on drop");
    }
}
