//! Service profiles: the YAML model, loading with includes, templates and validation.
//!
//! A profile lives at `<profiles dir>/<service>.yaml`; files in subfolders (such as
//! `profiles/stacks/`) are includes, not services. Paths inside a profile resolve against
//! `--source`, except those written `kprov:<path>`, which resolve against kprov's own tree
//! (the folder holding the profiles folder: kprov's manifest templates live there);
//! `include:` paths resolve against the including file.

pub mod config_maps;
pub mod gojson;
pub mod load;
pub mod model;
pub mod parse;
pub mod secrets;
pub mod sources;
pub mod template;
pub mod tree;
mod validate;
pub mod yamlpos;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

pub use load::{ProfileError, ProfileErrors, SourceFile};
pub use model::*;
pub use validate::validate;

/// Template files read once for a check or a plan, by path (`None`: unreadable): entries that
/// share a file, and validation and the run-time-value scan it runs, read it once.
#[derive(Debug, Default)]
pub struct Texts(std::cell::RefCell<HashMap<PathBuf, Option<std::rc::Rc<str>>>>);

impl Texts {
    pub fn read(&self, path: &Path) -> Option<std::rc::Rc<str>> {
        self.0
            .borrow_mut()
            .entry(path.to_path_buf())
            .or_insert_with(|| std::fs::read_to_string(path).ok().map(Into::into))
            .clone()
    }
}

/// A loaded profile: its includes merged, defaults applied.
#[derive(Debug, Clone)]
pub struct Profile {
    pub service: String,
    pub path: PathBuf,
    pub spec: ProfileFile,
    /// The file each named entry came from (`components.redis` → file).
    pub origins: HashMap<String, PathBuf>,
    /// Every file read, with its text and tree, for locating errors.
    pub files: Vec<SourceFile>,
    /// Entries left out for their errors (`components.redis`, `cluster`): only a profile read
    /// by [`load_checked`] has any, and references to them are not reported as unknown.
    pub broken: BTreeSet<String>,
}

impl Profile {
    pub fn namespace(&self) -> &str {
        self.spec.namespace.as_deref().unwrap_or("default")
    }

    /// `cluster.registry: local`: images reach the nodes through the local registry.
    pub fn local_registry(&self) -> bool {
        self.spec
            .cluster
            .as_ref()
            .is_some_and(model::ClusterSpec::local_registry)
    }

    pub fn cluster_name(&self) -> String {
        self.spec
            .cluster
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| format!("kprov-{}", self.service))
    }

    /// The kubeconfig file the profile asks for (`~/` expanded); `None`: kind's default.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        let p = self.spec.cluster.as_ref()?.kubeconfig.as_ref()?;
        Some(match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => Path::new(&home).join(rest),
            _ => PathBuf::from(p),
        })
    }

    /// Where a path written in the profile is: `kprov:<path>` in kprov's own tree, anything
    /// else under `source`.
    pub fn resolve(&self, source: &Path, path: &str) -> PathBuf {
        match path.strip_prefix("kprov:") {
            Some(rest) => self.kprov_root().join(rest),
            None => source.join(path),
        }
    }

    /// kprov's own tree: the folder that holds the profiles folder.
    pub fn kprov_root(&self) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The files a CRD entry (a path or glob) names.
    pub fn expand(&self, source: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
        match pattern.strip_prefix("kprov:") {
            Some(rest) => expand(&self.kprov_root(), rest),
            None => expand(source, pattern),
        }
    }

    /// The file an entry came from, as read.
    pub fn origin(&self, section: &str, name: &str) -> (&Path, Option<&SourceFile>) {
        let file = self
            .origins
            .get(&format!("{section}.{name}"))
            .map(PathBuf::as_path)
            .unwrap_or(&self.path);
        (file, self.files.iter().find(|f| f.path == file))
    }

    /// Adds to `values` the content of every file `text`'s placeholders read
    /// (`{{ file "PATH" }}`, PATH as the profile's paths: under `source`, or `kprov:`), under
    /// the key the template looks up (`file:PATH`). Each file that cannot be read is an error
    /// at its placeholder; a template that does not parse reads nothing (rendering says why).
    pub fn read_template_files(
        &self,
        source: &Path,
        text: &str,
        values: &mut template::Values,
    ) -> Vec<template::TemplateError> {
        let files = template::files(text).unwrap_or_default();
        self.read_files(source, files, values)
    }

    /// [`Profile::read_template_files`] for a template's file list, already read from it.
    fn read_files(
        &self,
        source: &Path,
        files: Vec<(String, usize, usize)>,
        values: &mut template::Values,
    ) -> Vec<template::TemplateError> {
        let mut errors = Vec::new();
        for (rel, line, column) in files {
            let key = format!("{}{rel}", template::FILE_PREFIX);
            if values.contains_key(&key) {
                continue;
            }
            let path = self.resolve(source, &rel);
            match std::fs::read_to_string(&path) {
                Ok(content) => {
                    values.insert(key, content);
                }
                Err(e) => errors.push(template::TemplateError {
                    line,
                    column,
                    message: match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            format!("{} does not exist", path.display())
                        }
                        _ => format!("{}: {e}", path.display()),
                    },
                }),
            }
        }
        errors
    }

    /// `text` rendered with `values` and the files its placeholders read (see
    /// [`Profile::read_template_files`]).
    pub fn render_template(
        &self,
        source: &Path,
        text: &str,
        values: &template::Values,
    ) -> Result<String, Vec<template::TemplateError>> {
        let files = template::files(text).unwrap_or_default();
        if files.is_empty() {
            return template::render(text, values);
        }
        let mut values = values.clone();
        let errors = self.read_files(source, files, &mut values);
        if !errors.is_empty() {
            return Err(errors);
        }
        template::render(text, &values)
    }

    /// The run-time values `kprov up --export-values` writes: those marked `export: true`.
    pub fn exported_values(&self) -> Vec<String> {
        self.spec
            .runtime
            .iter()
            .filter(|(_, v)| v.export)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The values a manifest template may use, for one component's `values`.
    pub fn template_values(
        &self,
        values: &BTreeMap<String, String>,
        images: &BTreeMap<String, String>,
        host_ports: &BTreeMap<String, u16>,
    ) -> template::Values {
        let mut v = template::Values::new();
        v.insert("namespace".into(), self.namespace().to_string());
        v.insert("service".into(), self.service.clone());
        v.insert("cluster".into(), self.cluster_name());
        // Kind's names, until the run knows the cluster's own (an existing cluster's context).
        v.insert("context".into(), format!("kind-{}", self.cluster_name()));
        let kubeconfig = self.kubeconfig().or_else(|| {
            std::env::var_os("KUBECONFIG")
                .and_then(|k| std::env::split_paths(&k).next())
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")))
        });
        if let Some(dir) = kubeconfig.as_deref().and_then(Path::parent) {
            v.insert("kubeconfigDir".into(), dir.display().to_string());
        }
        for (k, r) in images {
            v.insert(format!("image.{k}"), r.clone());
        }
        for (k, p) in &self.spec.ports {
            v.insert(format!("ports.{k}"), p.node_port.to_string());
        }
        for (k, p) in host_ports {
            v.insert(format!("hostPorts.{k}"), p.to_string());
        }
        for (k, x) in values {
            v.insert(format!("values.{k}"), x.clone());
        }
        // Run-time values are known only when their task has run: until then (validation,
        // `kprov render`) a placeholder names the producer.
        for name in self.spec.runtime.keys() {
            v.insert(
                format!("runtime.{name}"),
                format!("<runtime.{name} from value:{name}>"),
            );
        }
        if self.spec.config.tls.is_some() {
            for name in ["caBundle", "caBundleBase64"] {
                v.insert(
                    format!("runtime.{name}"),
                    format!("<runtime.{name} from apply:config>"),
                );
            }
        }
        v
    }
}

/// The profiles found in a directory: (service, file), sorted by service.
pub fn find(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if is_yaml && path.is_file() {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            out.push((stem, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Load `<dir>/<service>.yaml` with its includes. Syntax and schema errors only; see
/// [`load_checked`] for references and files.
pub fn load(dir: &Path, service: &str) -> Result<Profile, ProfileErrors> {
    let (profile, errors) = load_partial(dir, service)?;
    if errors.is_empty() {
        Ok(profile)
    } else {
        Err(ProfileErrors(errors))
    }
}

/// Load a profile and check it against the source tree: every syntax, schema and semantic
/// error, the semantic checks run on every entry that has no schema error of its own.
pub fn load_checked(dir: &Path, service: &str, source: &Path) -> Result<Profile, ProfileErrors> {
    let (profile, mut errors) = load_partial(dir, service)?;
    // A file that is not YAML at all leaves the rest without the entries it holds: checking
    // references then would report every one of them as unknown.
    if !profile.files.iter().any(|f| f.tree.is_none()) {
        errors.extend(validate(&profile, source));
    }
    if errors.is_empty() {
        Ok(profile)
    } else {
        Err(ProfileErrors(errors))
    }
}

/// The profile as far as it could be read, with the errors found reading it; an error only
/// when there is no profile of that name.
fn load_partial(dir: &Path, service: &str) -> Result<(Profile, Vec<ProfileError>), ProfileErrors> {
    let path = ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{service}.{ext}")))
        .find(|p| p.is_file());
    let Some(path) = path else {
        let known = find(dir)
            .map(|v| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        return Err(ProfileErrors(vec![ProfileError {
            file: dir.join(format!("{service}.yaml")),
            line: None,
            column: None,
            field: None,
            message: if known.is_empty() {
                format!(
                    "no profile for service {service:?} (no profiles in {})",
                    dir.display()
                )
            } else {
                format!("no profile for service {service:?} (profiles: {known})")
            },
        }]));
    };
    let merged = load::load_merged(&path);
    let profile = Profile {
        service: merged
            .profile
            .service
            .clone()
            .unwrap_or_else(|| service.to_string()),
        path,
        spec: merged.profile,
        origins: merged.origins,
        files: merged.files,
        broken: merged.broken,
    };
    Ok((profile, merged.errors))
}

/// Expand a path or glob (relative to `source`) into the files it names, sorted.
pub fn expand(source: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !pattern.contains(['*', '?', '[', '{']) {
        let p = source.join(pattern);
        return if p.is_file() {
            Ok(vec![p])
        } else {
            Err(format!("{} does not exist", p.display()))
        };
    }
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob {pattern:?}: {e}"))?
        .compile_matcher();
    // Walk only below the pattern's literal prefix.
    let literal: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| {
            !c.as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', '{'])
        })
        .collect();
    // Symlinked files and directories count as what they point to (walkdir detects loops).
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(source.join(&literal))
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .strip_prefix(source)
                .is_ok_and(|rel| glob.is_match(rel))
        })
        .map(|e| e.into_path())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!(
            "no file matches {pattern:?} under {}",
            source.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_glob_matches_symlinked_files_and_directories() {
        let real = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(real.path().join("bases")).unwrap();
        std::fs::write(real.path().join("bases/a.yaml"), "a").unwrap();
        std::fs::write(real.path().join("b.yaml"), "b").unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("crd/more")).unwrap();
        std::os::unix::fs::symlink(real.path().join("bases"), tree.path().join("crd/bases"))
            .unwrap();
        std::os::unix::fs::symlink(
            real.path().join("b.yaml"),
            tree.path().join("crd/more/b.yaml"),
        )
        .unwrap();
        let found = super::expand(tree.path(), "crd/**/*.yaml").unwrap();
        let rel: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(tree.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["crd/bases/a.yaml", "crd/more/b.yaml"]);
    }
}
