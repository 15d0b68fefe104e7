//! The host-built binary task (kubernaut's fast path: `go build` on the host, then a thin
//! runtime Dockerfile copies the binary). A command with declared inputs and outputs:
//!
//! 1. the inputs are hashed — the command, its environment (the coverage environment under
//!    `--coverage`), the source directory, and every input file's path and contents;
//! 2. when `<cache>/binaries/<name>.json` holds that hash and every output still has the
//!    digest recorded there, the command does not run ([`Done::Cached`], logged as
//!    `cached: inputs sha256:… unchanged`), unless `no_cache`;
//! 3. otherwise the command runs in the source directory (argv, never a shell string; stdin
//!    closed; its own process group, ended on cancel), every output line going to the task's
//!    progress and to `<log_dir>/binary-<name>.log`; a failure names the command, its status,
//!    the log's last lines and its path; an output it did not write is an error;
//! 4. the record is written atomically (a temporary file renamed into place).
//!
//! The outputs are files of an image's build context, so the image's own content hash covers
//! them: an unchanged binary leaves the image cached, a changed one rebuilds only the images
//! that copy it. The tool's own caches (Go's build cache) are shared by every service.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::adapters::process;
use crate::engine::{Done, TaskCtx, TaskError};
use crate::profile::BinarySpec;
use crate::tasks::build::BuildLog;

/// What one host build needs.
pub struct BinaryRequest<'a> {
    pub name: &'a str,
    pub spec: &'a BinarySpec,
    pub source: &'a Path,
    pub coverage: bool,
    pub no_cache: bool,
    pub log_dir: &'a Path,
    /// kprov's cache directory; records go to `<cache>/binaries/`.
    pub cache_dir: &'a Path,
}

/// What the last run of a binary left: the inputs it ran on, the outputs' digests.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    inputs: String,
    outputs: BTreeMap<String, String>,
}

pub async fn build_binary(req: &BinaryRequest<'_>, ctx: &TaskCtx) -> Result<Done, TaskError> {
    let what = format!("build binary {}", req.name);
    let fail = |m: String| TaskError::fatal(format!("{what}: {m}"));
    let argv = &req.spec.command;
    let program = process::which_in(&argv[0], req.source)
        .ok_or_else(|| fail(format!("{} is not on PATH", argv[0])))?;
    let env = environment(req);
    let inputs = {
        let (spec, source, env) = (req.spec.clone(), req.source.to_path_buf(), env.clone());
        tokio::task::spawn_blocking(move || inputs_hash(&spec, &source, &env))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(fail)?
    };
    let record_path = req
        .cache_dir
        .join("binaries")
        .join(format!("{}.json", req.name));
    if !req.no_cache && up_to_date(&record_path, &inputs, req) {
        ctx.progress(format!("cached: inputs sha256:{} unchanged", &inputs[..12]));
        return Ok(Done::Cached);
    }
    let log_path = req.log_dir.join(format!("binary-{}.log", req.name));
    let mut log = BuildLog::create(&log_path)
        .map_err(|e| fail(format!("create log {}: {e}", log_path.display())))?;
    log.note(&format!(
        "$ {} (in {})",
        argv.join(" "),
        req.source.display()
    ));
    let cmd = process::Command {
        program,
        args: argv[1..].iter().map(Into::into).collect(),
        env: env.into_iter().collect(),
        cwd: Some(req.source.to_path_buf()),
    };
    let done = process::run(&cmd, &ctx.cancel, &mut |line| log.line(line, ctx))
        .await
        .map_err(|e| fail(e.to_string()))?;
    log.finish(ctx);
    if !done.status.success() {
        return Err(fail(format!(
            "`{}` exited with {}:\n{}\nlog: {}",
            argv.join(" "),
            done.status,
            log.tail(),
            log_path.display()
        )));
    }
    let outputs = {
        let (outs, source) = (req.spec.outputs.clone(), req.source.to_path_buf());
        tokio::task::spawn_blocking(move || output_digests(&outs, &source))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|m| fail(format!("{m} (log: {})", log_path.display())))?
    };
    write_record(&record_path, &Record { inputs, outputs })
        .map_err(|e| fail(format!("write {}: {e}", record_path.display())))?;
    Ok(Done::Ran)
}

fn environment(req: &BinaryRequest<'_>) -> BTreeMap<String, String> {
    let mut env = req.spec.env.clone();
    if req.coverage {
        env.extend(req.spec.coverage_env.clone());
    }
    env
}

/// The digest of everything that decides what the command writes.
fn inputs_hash(
    spec: &BinarySpec,
    source: &Path,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut h = Sha256::new();
    h.update(b"kprov-binary-v1\0");
    h.update(source.display().to_string().as_bytes());
    for a in &spec.command {
        h.update(b"\0arg\0");
        h.update(a.as_bytes());
    }
    for (k, v) in env {
        h.update(format!("\0env\0{k}={v}").as_bytes());
    }
    let mut files = Vec::new();
    for pattern in &spec.inputs {
        files.extend(crate::profile::expand(source, pattern)?);
    }
    files.sort();
    files.dedup();
    for f in &files {
        let rel = f.strip_prefix(source).unwrap_or(f);
        h.update(format!("\0file\0{}\0", rel.display()).as_bytes());
        hash_file(&mut h, f).map_err(|e| format!("read input {}: {e}", f.display()))?;
    }
    Ok(hex(&h.finalize()))
}

fn hash_file(h: &mut Sha256, path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn output_digests(outputs: &[String], source: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for rel in outputs {
        let path = source.join(rel);
        let mut h = Sha256::new();
        match hash_file(&mut h, &path) {
            Ok(()) => {
                out.insert(rel.clone(), hex(&h.finalize()));
            }
            Err(_) => missing.push(rel.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the command succeeded but did not write {}",
            missing.join(", ")
        ))
    }
}

/// The record says these inputs, and every output is still what was written.
fn up_to_date(record: &Path, inputs: &str, req: &BinaryRequest<'_>) -> bool {
    let Ok(text) = std::fs::read_to_string(record) else {
        return false;
    };
    let Ok(rec) = serde_json::from_str::<Record>(&text) else {
        return false;
    };
    rec.inputs == inputs
        && output_digests(&req.spec.outputs, req.source).is_ok_and(|now| now == rec.outputs)
}

fn write_record(path: &Path, rec: &Record) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, serde_json::to_vec_pretty(rec).expect("json"))?;
    std::fs::rename(&tmp, path)
}
