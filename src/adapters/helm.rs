//! The helm CLI, run only to render a chart (`helm template`); kprov applies what it prints
//! itself, so helm never talks to the cluster. The only file that runs `helm`.
//!
//! The CLI is found as `$KPROV_HELM`, else `helm` on PATH, and always run with an argv (never a
//! shell string), stdin closed, output captured; a cancelled call kills the child.

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
};

use tokio_util::sync::CancellationToken;

/// A failed helm call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action}: {detail}")]
pub struct HelmError {
    pub action: String,
    pub detail: String,
    pub cancelled: bool,
}

/// What the tool printed when it succeeded (warnings go to stderr even then).
pub use super::process::ToolOutput as Output;

/// One `helm template` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub release: String,
    /// A chart directory or archive.
    pub chart: PathBuf,
    pub namespace: Option<String>,
    /// Values files, in order (later ones win, as with helm's own `-f`).
    pub values: Vec<PathBuf>,
    /// `--set KEY=VALUE`, passed as written: helm's `--set` syntax applies (`a.b=c` nests).
    pub set: BTreeMap<String, String>,
}

impl Template {
    /// `template RELEASE CHART [--namespace NS] [-f VALUES]... [--set K=V]...`
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            "template".into(),
            self.release.as_str().into(),
            self.chart.as_os_str().into(),
        ];
        if let Some(ns) = &self.namespace {
            argv.push("--namespace".into());
            argv.push(ns.into());
        }
        for v in &self.values {
            argv.push("-f".into());
            argv.push(v.into());
        }
        for (k, v) in &self.set {
            argv.push("--set".into());
            argv.push(format!("{k}={v}").into());
        }
        argv
    }
}

/// The helm command-line tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmCli {
    program: PathBuf,
}

impl HelmCli {
    /// `$KPROV_HELM`, else `helm` on PATH; `None` when neither exists.
    pub fn find() -> Option<HelmCli> {
        if let Some(p) = std::env::var_os("KPROV_HELM").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return super::process::is_executable(&p).then_some(HelmCli { program: p });
        }
        HelmCli::find_in(std::env::var_os("PATH").as_deref())
    }

    /// `helm` in one of the directories of a PATH-style list.
    pub fn find_in(path: Option<&OsStr>) -> Option<HelmCli> {
        std::env::split_paths(path?)
            .map(|d| d.join("helm"))
            .find(|p| super::process::is_executable(p))
            .map(|program| HelmCli { program })
    }

    pub fn at(program: impl Into<PathBuf>) -> HelmCli {
        HelmCli {
            program: program.into(),
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// `helm template ...`: the chart's manifests as one YAML stream.
    pub async fn template(
        &self,
        t: &Template,
        cancel: &CancellationToken,
    ) -> Result<Output, HelmError> {
        let action = format!("helm template {} {}", t.release, t.chart.display());
        super::process::run_tool("helm", &self.program, &t.argv(), cancel)
            .await
            .map_err(|f| HelmError {
                action,
                detail: f.detail,
                cancelled: f.cancelled,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_argv_keeps_values_in_order_and_sets_sorted() {
        let t = Template {
            release: "kubernaut".into(),
            chart: "charts/kubernaut".into(),
            namespace: Some("kubernaut-system".into()),
            values: vec!["b.yaml".into(), "a.yaml".into()],
            set: [
                ("z".to_string(), "1".to_string()),
                ("a.b".into(), "x,y".into()),
            ]
            .into(),
        };
        let argv: Vec<String> = t
            .argv()
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert_eq!(
            argv,
            [
                "template",
                "kubernaut",
                "charts/kubernaut",
                "--namespace",
                "kubernaut-system",
                "-f",
                "b.yaml",
                "-f",
                "a.yaml",
                "--set",
                "a.b=x,y",
                "--set",
                "z=1"
            ]
        );
        let bare = Template {
            release: "r".into(),
            chart: "c".into(),
            ..Template::default()
        };
        assert_eq!(bare.argv(), ["template", "r", "c"]);
    }

    #[test]
    fn an_empty_path_finds_no_helm() {
        let dir = std::env::temp_dir().join(format!("kprov-no-helm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(HelmCli::find_in(Some(dir.as_os_str())), None);
        std::fs::remove_dir(&dir).unwrap();
    }
}
