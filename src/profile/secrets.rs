//! Where `config.secrets` files are, and which Secrets a run makes on this host.
//!
//! A Secret's file is a file of the source tree (relative to `--source`, or `kprov:`), or a
//! **host file** outside it: `~/…` (under `$HOME`) or an absolute path, such as a registry
//! login's `~/.config/containers/auth.json`. A host file's contents are never printed, logged
//! or recorded: `kprov render` shows a placeholder, the run record its sha256 only.
//!
//! An absent file fails the run unless it is optional: `optional: true` on the entry skips the
//! whole Secret (and its `serviceAccounts` links), `{path, optional: true}` leaves that key
//! out. Either way `kprov plan`, `kprov up` and the `apply:config` log say so ([`notes`]).

use std::path::{Path, PathBuf};

use super::{Profile, SecretSpec};

/// A path written as a host path: `~/…` or absolute (`~user/…` is not expanded: an error).
pub fn is_host_path(written: &str) -> bool {
    written.starts_with('~') || Path::new(written).is_absolute()
}

/// The file a Secret's path names: a host path expanded (`~/` against `$HOME`), any other
/// resolved as every profile path is.
pub fn resolve(profile: &Profile, source: &Path, written: &str) -> Result<PathBuf, String> {
    if let Some(rest) = written.strip_prefix("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{written}: $HOME is not set, so ~/ means nothing"))?;
        return Ok(Path::new(&home).join(rest));
    }
    if written.starts_with('~') {
        return Err(format!(
            "{written}: only ~/ (this user's $HOME) is expanded; write the absolute path"
        ));
    }
    Ok(profile.resolve(source, written))
}

/// The key an image pull Secret's type requires (its value is a JSON registry config).
pub fn dockercfg_key(type_: &str) -> Option<&'static str> {
    match type_ {
        "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
        "kubernetes.io/dockercfg" => Some(".dockercfg"),
        _ => None,
    }
}

/// One key's file, as this host has it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFile {
    pub key: String,
    /// As the profile writes it (`~/.config/containers/auth.json`): what messages show.
    pub written: String,
    pub path: PathBuf,
    /// Outside the source tree: contents never shown, recorded by digest only.
    pub host: bool,
    pub present: bool,
    pub optional: bool,
}

/// What a run makes of one `config.secrets` entry on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretPlan<'a> {
    pub spec: &'a SecretSpec,
    pub namespace: String,
    /// Every file, in key order (absent ones included).
    pub files: Vec<KeyFile>,
    /// Why the Secret is not made at all (an absent file of an optional entry).
    pub skipped: Option<String>,
}

impl SecretPlan<'_> {
    /// `config.secrets.NAME (NAMESPACE)`, as notes and errors name the entry.
    pub fn entry(&self) -> String {
        format!("config.secrets.{} ({})", self.spec.name, self.namespace)
    }

    /// The files whose contents go into the Secret.
    pub fn used(&self) -> impl Iterator<Item = &KeyFile> {
        self.files
            .iter()
            .filter(|f| f.present && self.skipped.is_none())
    }

    /// What a run does differently from the profile's full Secret, one sentence each.
    pub fn notes(&self) -> Vec<String> {
        if let Some(why) = &self.skipped {
            return vec![format!("{}: skipped: {why}", self.entry())];
        }
        self.files
            .iter()
            .filter(|f| !f.present && f.optional)
            .map(|f| {
                format!(
                    "{}: key {} left out: {} does not exist (optional)",
                    self.entry(),
                    f.key,
                    f.written
                )
            })
            .collect()
    }
}

/// Every `config.secrets` entry as this host has its files (a path that does not resolve
/// counts as absent; validation reports it). `assume_host_files`: host files count as present
/// whether they are or not (`kprov render`, which never reads them).
pub fn plan<'a>(
    profile: &'a Profile,
    source: &Path,
    assume_host_files: bool,
) -> Vec<SecretPlan<'a>> {
    let ns = profile.namespace();
    profile
        .spec
        .config
        .secrets
        .iter()
        .map(|spec| {
            let files: Vec<KeyFile> = spec
                .files
                .iter()
                .map(|(key, f)| {
                    let path = resolve(profile, source, &f.path).unwrap_or_default();
                    let host = is_host_path(&f.path);
                    KeyFile {
                        key: key.clone(),
                        written: f.path.clone(),
                        present: (host && assume_host_files)
                            || (!path.as_os_str().is_empty() && path.is_file()),
                        path,
                        host,
                        optional: f.optional,
                    }
                })
                .collect();
            let skipped = files
                .iter()
                .find(|f| !f.present && spec.optional)
                .map(|f| format!("{} does not exist (optional: true)", f.written));
            SecretPlan {
                spec,
                namespace: spec.namespace.clone().unwrap_or_else(|| ns.to_string()),
                files,
                skipped,
            }
        })
        .collect()
}

/// What this host leaves out of the profile's Secrets, for `kprov plan`, `kprov up` and
/// `kprov render`.
pub fn notes(profile: &Profile, source: &Path) -> Vec<String> {
    plan(profile, source, false)
        .iter()
        .flat_map(|p| p.notes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ConfigSpec, ProfileFile, SecretFile};

    fn profile(secrets: Vec<SecretSpec>) -> Profile {
        Profile {
            service: "svc".into(),
            path: PathBuf::from("/kprov/profiles/svc.yaml"),
            spec: ProfileFile {
                namespace: Some("app".into()),
                config: ConfigSpec {
                    secrets,
                    ..Default::default()
                },
                ..Default::default()
            },
            origins: Default::default(),
            files: Vec::new(),
            broken: Default::default(),
        }
    }

    fn file(path: &str, optional: bool) -> SecretFile {
        SecretFile {
            path: path.into(),
            optional,
        }
    }

    #[test]
    fn host_paths_are_home_relative_or_absolute_and_others_resolve_against_the_source() {
        let p = profile(Vec::new());
        let home = std::env::var("HOME").unwrap();
        let src = Path::new("/src");
        assert_eq!(
            resolve(&p, src, "~/.config/containers/auth.json").unwrap(),
            Path::new(&home).join(".config/containers/auth.json")
        );
        assert_eq!(
            resolve(&p, src, "/etc/auth.json").unwrap(),
            Path::new("/etc/auth.json")
        );
        assert_eq!(
            resolve(&p, src, "conf/a").unwrap(),
            Path::new("/src/conf/a")
        );
        assert_eq!(
            resolve(&p, src, "kprov:manifests/a").unwrap(),
            Path::new("/kprov/manifests/a")
        );
        let e = resolve(&p, src, "~root/auth.json").unwrap_err();
        assert!(e.contains("only ~/"), "{e}");
        assert!(is_host_path("~/x") && is_host_path("/x") && !is_host_path("x/y"));
        assert!(!is_host_path("kprov:x"));
    }

    #[test]
    fn an_absent_file_skips_an_optional_secret_or_leaves_an_optional_key_out() {
        let dir = tempfile::tempdir().unwrap();
        let there = dir.path().join("there.json");
        std::fs::write(&there, "{}").unwrap();
        let gone = dir.path().join("gone.json");
        let (there, gone) = (there.display().to_string(), gone.display().to_string());
        let pull = SecretSpec {
            name: "pull".into(),
            optional: true,
            files: [
                ("a".to_string(), file(&there, false)),
                ("b".into(), file(&gone, false)),
            ]
            .into(),
            ..Default::default()
        };
        let keys = SecretSpec {
            name: "keys".into(),
            namespace: Some("other".into()),
            files: [
                ("a".to_string(), file(&there, false)),
                ("b".into(), file(&gone, true)),
            ]
            .into(),
            ..Default::default()
        };
        let p = profile(vec![pull, keys]);
        let plans = plan(&p, dir.path(), false);
        assert_eq!(plans[0].used().count(), 0, "a skipped Secret uses no file");
        assert!(plans[0].files.iter().all(|f| f.host));
        let used: Vec<&str> = plans[1].used().map(|f| f.key.as_str()).collect();
        assert_eq!(used, ["a"]);
        assert_eq!(
            notes(&p, dir.path()),
            [
                format!(
                    "config.secrets.pull (app): skipped: {gone} does not exist (optional: true)"
                ),
                format!(
                    "config.secrets.keys (other): key b left out: {gone} does not exist (optional)"
                ),
            ]
        );
        let assumed = plan(&p, dir.path(), true);
        assert!(
            assumed.iter().all(|p| p.notes().is_empty()),
            "a render assumes host files"
        );
        std::fs::write(&gone, "{}").unwrap();
        assert!(notes(&p, dir.path()).is_empty(), "every file is there now");
    }
}
