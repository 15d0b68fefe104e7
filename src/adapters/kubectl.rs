//! The kubectl CLI, run only to render kustomize directories (`kubectl kustomize DIR`); the API
//! itself is reached through kube-rs (`adapters::kube`). The only file that runs `kubectl`.
//!
//! The CLI is found as `$KPROV_KUBECTL`, else `kubectl` on PATH, and always run with an argv
//! (never a shell string), stdin closed, output captured; a cancelled call kills the child.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
};

use tokio_util::sync::CancellationToken;

/// What to tell someone who has no kubectl.
pub const INSTALL_HINT: &str = "install kubectl (on Debian: apt-get install kubernetes-client)";

/// A failed kubectl call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action}: {detail}")]
pub struct KubectlError {
    pub action: String,
    pub detail: String,
    pub cancelled: bool,
}

/// What the tool printed when it succeeded (warnings go to stderr even then).
pub use super::process::ToolOutput as Output;

/// The kubectl command-line tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubectlCli {
    program: PathBuf,
}

impl KubectlCli {
    /// `$KPROV_KUBECTL`, else `kubectl` on PATH; `None` when neither exists.
    pub fn find() -> Option<KubectlCli> {
        if let Some(p) = std::env::var_os("KPROV_KUBECTL").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return super::process::is_executable(&p).then_some(KubectlCli { program: p });
        }
        KubectlCli::find_in(std::env::var_os("PATH").as_deref())
    }

    /// `kubectl` in one of the directories of a PATH-style list.
    pub fn find_in(path: Option<&OsStr>) -> Option<KubectlCli> {
        std::env::split_paths(path?)
            .map(|d| d.join("kubectl"))
            .find(|p| super::process::is_executable(p))
            .map(|program| KubectlCli { program })
    }

    pub fn at(program: impl Into<PathBuf>) -> KubectlCli {
        KubectlCli {
            program: program.into(),
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// `kubectl kustomize DIR`: the directory's kustomization built into one YAML stream.
    pub async fn kustomize(
        &self,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Output, KubectlError> {
        let argv: Vec<OsString> = vec!["kustomize".into(), dir.into()];
        let action = format!("kubectl kustomize {}", dir.display());
        self.run(&action, &argv, cancel).await
    }

    async fn run(
        &self,
        action: &str,
        argv: &[OsString],
        cancel: &CancellationToken,
    ) -> Result<Output, KubectlError> {
        super::process::run_tool("kubectl", &self.program, argv, cancel)
            .await
            .map_err(|f| KubectlError {
                action: action.to_string(),
                detail: f.detail,
                cancelled: f.cancelled,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_path_finds_no_kubectl() {
        let dir = std::env::temp_dir().join(format!("kprov-no-kubectl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(KubectlCli::find_in(Some(dir.as_os_str())), None);
        assert_eq!(KubectlCli::find_in(None), None);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_program_that_cannot_run_says_which() {
        let k = KubectlCli::at("/nonexistent/kubectl");
        let e = k
            .kustomize(Path::new("deploy"), &CancellationToken::new())
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("kubectl kustomize deploy: cannot run /nonexistent/kubectl"),
            "{msg}"
        );
    }
}
