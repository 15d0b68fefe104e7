//! Run records gathered from files and directories, for `kprov profile --merge`: the job at
//! the end of a CI matrix reads the records its other jobs uploaded.
//!
//! - A file named on the command line is read as a run record: anything wrong with it is an
//!   error naming it.
//! - A directory is searched for `*.json`, subdirectories too (`actions/download-artifact`
//!   puts each artifact in its own). A file there that is not a run record (not JSON, or
//!   without `schema_version` and `run_id`) is skipped with a warning; one that is a record
//!   but does not read (a wrong field, a newer schema) is an error naming it.
//! - A run found twice (one run id) is read once, with a warning, when both copies are the
//!   same record; when they differ it is an error naming both files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::RunRecord;
use super::store::{StoreError, parse_record, read_record};

/// The records found, and what was passed over.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Each run once, in the order found (files as named, directories by path).
    pub records: Vec<RunRecord>,
    /// Where each record was read, beside `records`.
    pub paths: Vec<PathBuf>,
    /// Files skipped and duplicates dropped, one sentence each.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Record(#[from] StoreError),
    #[error("merge run records: list {}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("merge run records: no run records in {}", list(paths))]
    Empty { paths: Vec<PathBuf> },
    #[error(
        "merge run records: run {run_id} is in both {} and {}, and the two records differ",
        first.display(),
        second.display()
    )]
    Conflict {
        run_id: String,
        first: PathBuf,
        second: PathBuf,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// Every run record `paths` name (record files, or directories of them).
pub fn collect(paths: &[PathBuf]) -> Result<Collected, CollectError> {
    let mut found = Collected::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for path in paths {
        if path.is_dir() {
            for (file, record) in records_in_dir(path, &mut found.warnings)? {
                add(&mut found, &mut seen, file, record)?;
            }
        } else {
            let record = read_record(path)?;
            add(&mut found, &mut seen, path.clone(), record)?;
        }
    }
    if found.records.is_empty() {
        return Err(CollectError::Empty {
            paths: paths.to_vec(),
        });
    }
    Ok(found)
}

/// Keeps `record` unless its run is already in: then drops an identical copy with a warning,
/// and refuses a different one.
fn add(
    found: &mut Collected,
    seen: &mut HashMap<String, usize>,
    path: PathBuf,
    record: RunRecord,
) -> Result<(), CollectError> {
    match seen.get(&record.run_id) {
        Some(&k) if found.records[k] == record => {
            found.warnings.push(format!(
                "{}: run {} again (the same record as {}): read once",
                path.display(),
                record.run_id,
                found.paths[k].display()
            ));
            Ok(())
        }
        Some(&k) => Err(CollectError::Conflict {
            run_id: record.run_id,
            first: found.paths[k].clone(),
            second: path,
        }),
        None => {
            seen.insert(record.run_id.clone(), found.records.len());
            found.records.push(record);
            found.paths.push(path);
            Ok(())
        }
    }
}

/// The run records under `dir`, by path; other JSON files are skipped with a warning.
fn records_in_dir(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(PathBuf, RunRecord)>, CollectError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|source| CollectError::List {
            dir: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy();
        // Hidden files include the store's temp files of a write in progress.
        if !entry.file_type().is_file() || name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let path = entry.into_path();
        let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Read {
            path: path.clone(),
            source,
        })?;
        match not_a_record(&text) {
            Some(why) => warnings.push(format!("skipped {}: {why}", path.display())),
            None => {
                let record = parse_record(&path, &text)?;
                out.push((path, record));
            }
        }
    }
    Ok(out)
}

/// Why a JSON file is not a run record at all, or `None` when it claims to be one.
fn not_a_record(text: &str) -> Option<&'static str> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(_) => Some("not JSON"),
        Ok(v) if v.get("schema_version").is_some() && v.get("run_id").is_some() => None,
        Ok(_) => Some("not a run record (it has no schema_version and run_id)"),
    }
}
