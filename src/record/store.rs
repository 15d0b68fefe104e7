//! The run store: run records as `<state>/runs/<run-id>.json`, in the state directory
//! ([`StateDir`]: `--state`, default `.kprov`) that also holds logs and coverage data.
//!
//! Writes are atomic (a temp file in the same directory, synced, then linked into place) and
//! never replace an existing record. Reads name the file, and the line and column, of anything
//! that does not parse, and refuse records written by a newer kprov.
//!
//! ```no_run
//! # use kprov::record::store::{RunRef, StateDir};
//! let store = StateDir::new(".kprov").store();
//! let (path, record) = store.load(&RunRef::parse("latest"))?;
//! # Ok::<(), kprov::record::store::StoreError>(())
//! ```

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{RunRecord, SCHEMA_VERSION};

/// Where run records live, relative to the project root (the default state directory's).
pub const RUNS_DIR: &str = ".kprov/runs";

/// What kprov keeps for a project, in one directory (`--state DIR`, default `.kprov`):
///
/// ```text
/// <state>/runs/<run-id>.json               run records
/// <state>/logs/<run-id>/                   task logs, and diagnostics-<component>/ bundles
/// <state>/coverdata/<service>/             coverage data mounted into the nodes
/// ```
///
/// Cluster locks are not here: they are host-wide (see `provision::lock`), so that two
/// checkouts cannot drive one cluster at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn logs(&self, run_id: &str) -> PathBuf {
        self.root.join("logs").join(run_id)
    }

    pub fn coverdata(&self, service: &str) -> PathBuf {
        self.root.join("coverdata").join(service)
    }

    pub fn store(&self) -> Store {
        Store::in_state(&self.root)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("write run record {}: {id:?} is not a valid run id (it names a file)", dir.display())]
    BadId { dir: PathBuf, id: String },
    #[error("write run record {}: a record with this run id already exists", path.display())]
    Exists { path: PathBuf },
    #[error("write run record {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read run record {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse run record {}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "read run record {}: it has schema version {found}, newer than this kprov reads (up to {known}); upgrade kprov",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("list runs in {}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("find a run{}: no runs recorded in {} yet (`kprov up` writes one)", for_service(service), dir.display())]
    NoRuns {
        dir: PathBuf,
        service: Option<String>,
    },
    #[error("find run {query:?} in {}: {}", dir.display(), available_runs(available))]
    NotFound {
        dir: PathBuf,
        query: String,
        available: Vec<String>,
    },
    #[error("find run {query:?} in {}: it matches {} runs: {}", dir.display(), matches.len(), matches.join(", "))]
    Ambiguous {
        dir: PathBuf,
        query: String,
        matches: Vec<String>,
    },
}

fn for_service(service: &Option<String>) -> String {
    service
        .as_ref()
        .map(|s| format!(" of service {s}"))
        .unwrap_or_default()
}

fn available_runs(ids: &[String]) -> String {
    const SHOWN: usize = 10;
    if ids.is_empty() {
        return "no runs recorded yet".to_string();
    }
    // The newest are the likeliest to be meant: show the last ones.
    let skip = ids.len().saturating_sub(SHOWN);
    let mut s = String::from("available runs: ");
    if skip > 0 {
        s.push_str(&format!("({skip} older) "));
    }
    s.push_str(&ids[skip..].join(", "));
    s.push_str(", or `latest`");
    s
}

/// Which run to load, as a user names it on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    /// The newest run (by run id), optionally the newest of one service.
    Latest { service: Option<String> },
    /// A run id, or a prefix of exactly one run id (`.json` may be appended).
    Id(String),
    /// A record file anywhere.
    Path(PathBuf),
}

impl RunRef {
    /// `latest` → the newest run; something that looks like a path (has a `/` or ends in
    /// `.json` and exists) → that file; anything else → a run id.
    pub fn parse(s: &str) -> RunRef {
        if s == "latest" {
            return RunRef::Latest { service: None };
        }
        if s.contains('/')
            || s.contains(std::path::MAIN_SEPARATOR)
            || (s.ends_with(".json") && Path::new(s).is_file())
        {
            return RunRef::Path(PathBuf::from(s));
        }
        RunRef::Id(s.trim_end_matches(".json").to_string())
    }
}

/// One stored run, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEntry {
    pub run_id: String,
    pub path: PathBuf,
}

impl RunEntry {
    /// The service part of a `<timestamp>-<service>` run id.
    pub fn service(&self) -> Option<&str> {
        self.run_id.split_once('-').map(|(_, s)| s)
    }
}

/// The runs directory of one project.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store of the project rooted at `root` (records in `root/.kprov/runs`).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Store {
            dir: root.as_ref().join(RUNS_DIR),
        }
    }

    /// The store of a state directory (records in `state/runs`, see [`StateDir`]).
    pub fn in_state(state: impl AsRef<Path>) -> Self {
        Store {
            dir: StateDir::new(state.as_ref()).runs(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path a record with this id is (or would be) stored at.
    pub fn path_of(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.json"))
    }

    /// Writes `record` atomically; never replaces an existing record. Returns its path.
    pub fn save(&self, record: &RunRecord) -> Result<PathBuf, StoreError> {
        let id = &record.run_id;
        let bad = id.is_empty()
            || id.starts_with('.')
            || id
                .chars()
                .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control());
        if bad {
            return Err(StoreError::BadId {
                dir: self.dir.clone(),
                id: id.clone(),
            });
        }
        let path = self.path_of(id);
        let write_err = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(write_err)?;
        if path.exists() {
            return Err(StoreError::Exists { path });
        }
        let mut json =
            serde_json::to_string_pretty(record).expect("a run record always serialises");
        json.push('\n');

        let tmp = self
            .dir
            .join(format!(".{id}.json.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()?;
            drop(f);
            // A hard link fails if the target exists, so a concurrent writer cannot be clobbered.
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
                Err(_) if !path.exists() => fs::rename(&tmp, &path),
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                sync_dir(&self.dir);
                Ok(path)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Exists { path }),
            Err(e) => Err(write_err(e)),
        }
    }

    /// Every stored run, sorted by run id (oldest first). A missing directory is no runs.
    pub fn list(&self) -> Result<Vec<RunEntry>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::List {
                    dir: self.dir.clone(),
                    source,
                });
            }
        };
        let mut runs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::List {
                dir: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue; // temp files of a write in progress
            }
            if let Some(run_id) = name.strip_suffix(".json") {
                runs.push(RunEntry {
                    run_id: run_id.to_string(),
                    path: entry.path(),
                });
            }
        }
        runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(runs)
    }

    /// Loads the run `what` names; returns its path beside it.
    pub fn load(&self, what: &RunRef) -> Result<(PathBuf, RunRecord), StoreError> {
        match what {
            RunRef::Path(path) => Ok((path.clone(), read_record(path)?)),
            RunRef::Latest { service } => self.latest(service.as_deref()),
            RunRef::Id(id) => self.load_id(id),
        }
    }

    /// The newest run, or the newest of `service`.
    pub fn latest(&self, service: Option<&str>) -> Result<(PathBuf, RunRecord), StoreError> {
        let runs = self.list()?;
        let newest = runs
            .iter()
            .rev()
            .find(|r| service.is_none_or(|s| r.service() == Some(s)));
        let Some(entry) = newest else {
            return Err(StoreError::NoRuns {
                dir: self.dir.clone(),
                service: service.map(str::to_string),
            });
        };
        Ok((entry.path.clone(), read_record(&entry.path)?))
    }

    /// The run with this id, or the one run whose id starts with it.
    pub fn load_id(&self, id: &str) -> Result<(PathBuf, RunRecord), StoreError> {
        let runs = self.list()?;
        let entry = match runs.iter().find(|r| r.run_id == id) {
            Some(exact) => exact,
            None => {
                let matches: Vec<&RunEntry> =
                    runs.iter().filter(|r| r.run_id.starts_with(id)).collect();
                match matches.as_slice() {
                    [one] => *one,
                    [] => {
                        return Err(StoreError::NotFound {
                            dir: self.dir.clone(),
                            query: id.to_string(),
                            available: runs.iter().map(|r| r.run_id.clone()).collect(),
                        });
                    }
                    many => {
                        return Err(StoreError::Ambiguous {
                            dir: self.dir.clone(),
                            query: id.to_string(),
                            matches: many.iter().map(|r| r.run_id.clone()).collect(),
                        });
                    }
                }
            }
        };
        Ok((entry.path.clone(), read_record(&entry.path)?))
    }
}

/// Reads and checks one record file.
pub fn read_record(path: &Path) -> Result<RunRecord, StoreError> {
    let text = fs::read_to_string(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_record(path, &text)
}

/// Parses a record's text; `path` only names it in errors.
pub fn parse_record(path: &Path, text: &str) -> Result<RunRecord, StoreError> {
    let parse_err = |e: serde_json::Error| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the position goes in front instead.
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message,
        };
        StoreError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message,
        }
    };
    // The version first: a newer record may not fit this kprov's schema at all.
    #[derive(Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let version: Version = serde_json::from_str(text).map_err(parse_err)?;
    if version.schema_version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version.schema_version,
            known: SCHEMA_VERSION,
        });
    }
    serde_json::from_str(text).map_err(parse_err)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) {
    // Makes the new name durable; best effort, the data itself is already synced.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_layout_under_the_state_dir() {
        let s = StateDir::new("/x");
        assert_eq!(s.store().dir(), Path::new("/x/runs"));
        assert_eq!(s.logs("r1"), Path::new("/x/logs/r1"));
        assert_eq!(s.coverdata("demo"), Path::new("/x/coverdata/demo"));
        // The default state dir keeps records where they always were.
        assert_eq!(StateDir::new(".kprov").store().dir(), Path::new(RUNS_DIR));
    }
}
