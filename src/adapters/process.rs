//! Host processes: a program and its argv (never a shell string), its environment and working
//! directory, every output line streamed to the caller as it comes, and cancellation that ends
//! the process and everything it started (its own process group: SIGTERM, then SIGKILL).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

/// How a command that started ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved in the order their lines arrived.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `cmd` to its end (or until `cancel`), stdin closed, calling `on_line` with each line of
/// its stdout and stderr.
pub async fn run(
    cmd: &Command,
    cancel: &CancellationToken,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Result<Finished, ProcessError> {
    let program = cmd.program.display().to_string();
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let readers: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped stdout")),
        Box::new(child.stderr.take().expect("piped stderr")),
    ];
    for reader in readers {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut output = String::new();
    let status = loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    on_line(&line);
                    output.push_str(&line);
                    output.push('\n');
                }
                None => break child.wait().await,
            },
            () = cancel.cancelled() => {
                end_process_group(&mut child).await;
                return Err(ProcessError::Cancelled);
            }
        }
    };
    let status = status.map_err(|source| ProcessError::Wait { program, source })?;
    Ok(Finished { status, output })
}

/// Why a tool that had to succeed did not, in words: `kubectl exited with exit status: 1:
/// <its stderr>`, `cannot run …`, `cancelled`.
#[derive(Debug)]
pub struct ToolFailure {
    pub detail: String,
    pub cancelled: bool,
}

/// What a tool that succeeded printed: stdout (UTF-8) and stderr, kept apart.
#[derive(Debug)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tool` (`program args`, stdin closed) to its end and returns its output when it
/// succeeds; a failure carries its stderr. A cancel ends its whole process group.
pub async fn run_tool(
    tool: &str,
    program: &Path,
    args: &[OsString],
    cancel: &CancellationToken,
) -> Result<ToolOutput, ToolFailure> {
    let fail = |detail: String, cancelled| ToolFailure { detail, cancelled };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", program.display()), false))?;
    let (mut out, mut err) = (
        child.stdout.take().expect("piped stdout"),
        child.stderr.take().expect("piped stderr"),
    );
    let read = async {
        use tokio::io::AsyncReadExt;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
        a.and(b).map(|_| (stdout, stderr))
    };
    let (stdout, stderr) = tokio::select! {
        r = read => r.map_err(|e| fail(format!("reading {tool}'s output: {e}"), false))?,
        () = cancel.cancelled() => {
            end_process_group(&mut child).await;
            return Err(fail("cancelled".into(), true));
        }
    };
    let status = child
        .wait()
        .await
        .map_err(|e| fail(format!("waiting for {tool}: {e}"), false))?;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    if !status.success() {
        let said = match stderr.trim() {
            "" => "(it printed nothing on stderr)",
            said => said,
        };
        return Err(fail(format!("{tool} exited with {status}: {said}"), false));
    }
    let stdout = String::from_utf8(stdout)
        .map_err(|_| fail(format!("{tool} printed output that is not UTF-8"), false))?;
    Ok(ToolOutput { stdout, stderr })
}

/// An executable file at `p`.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// SIGTERM to the child's whole process group, then SIGKILL after a short grace, so nothing it
/// started outlives a cancelled run.
pub async fn end_process_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let group = -(pid as i32);
        // SAFETY: kill(2) on the process group created for this child (`process_group(0)`).
        unsafe { libc::kill(group, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_millis(1500), child.wait())
            .await
            .is_err()
        {
            // SAFETY: as above.
            unsafe { libc::kill(group, libc::SIGKILL) };
        }
        // Children of the group that outlived the leader get the same end.
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
    }
    let _ = child.kill().await;
}

/// [`which`] for a command run in `dir`: a program named by a path (`./build.sh`) is found
/// relative to `dir`, where it will run, not to kprov's own working directory.
pub fn which_in(program: &str, dir: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let p = dir.join(program);
        return p.is_file().then_some(p);
    }
    which(program)
}

/// `program` as found on PATH (or as given, when it names a path).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_named_by_a_path_is_found_where_the_command_runs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            which_in("./build.sh", dir.path()),
            Some(dir.path().join("./build.sh"))
        );
        assert_eq!(which_in("./nope.sh", dir.path()), None);
        assert!(
            which_in("sh", dir.path()).is_some(),
            "bare names come from PATH"
        );
    }

    #[tokio::test]
    async fn output_lines_are_streamed_and_the_environment_is_passed() {
        let cmd = Command {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "echo one; echo \"two $KPROV_X\" >&2; exit 3".into(),
            ],
            env: vec![("KPROV_X".into(), "x".into())],
            cwd: None,
        };
        let mut seen = Vec::new();
        let done = run(&cmd, &CancellationToken::new(), &mut |l| {
            seen.push(l.to_string())
        })
        .await
        .unwrap();
        assert_eq!(done.status.code(), Some(3));
        seen.sort();
        assert_eq!(seen, ["one", "two x"]);
    }

    #[tokio::test]
    async fn cancelling_ends_the_process_and_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let cmd = Command {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            ..Default::default()
        };
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let watcher = {
            let pidfile = pidfile.clone();
            tokio::spawn(async move {
                while !pidfile.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                stop.cancel();
            })
        };
        let result = run(&cmd, &cancel, &mut |_| {}).await;
        watcher.await.unwrap();
        assert!(matches!(result, Err(ProcessError::Cancelled)));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild is gone, or a zombie waiting to be reaped by whoever adopted it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next();
        assert!(
            matches!(state, None | Some('Z' | 'X')),
            "sleep {pid} outlived the cancelled command: {stat}"
        );
    }
}
