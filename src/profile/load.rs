//! Reading profile files: YAML parsing with every error located, and `include:` merging.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use super::model::ProfileFile;
use super::yamlpos;

/// One problem in a profile, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The dotted key path, e.g. `components.datastorage.images`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(field) = &self.field
            && !field.is_empty()
        {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a profile and its includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileErrors(pub Vec<ProfileError>);

impl fmt::Display for ProfileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} error{} in profile", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileErrors {}

impl ProfileError {
    pub fn at(file: &Path, text: Option<&str>, path: &[&str], message: impl Into<String>) -> Self {
        let pos = text.and_then(|t| yamlpos::locate(t, path));
        ProfileError {
            file: file.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            field: Some(path.join(".")),
            message: message.into(),
        }
    }
}

/// A parsed file, with its text kept for locating later (semantic) errors.
pub struct ParsedFile {
    pub path: PathBuf,
    pub text: String,
    pub profile: ProfileFile,
}

fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ProfileError {
    let mut opts = serde_saphyr::RenderOptions::default();
    opts.snippets = serde_saphyr::SnippetMode::Off;
    let mut message = e.render_with_options(opts);
    // The location is printed in front, in file:line:column form.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    let loc = e.location();
    let line = loc.map(|l| l.line() as usize).filter(|&l| l > 0);
    ProfileError {
        file: path.to_path_buf(),
        line,
        column: loc.map(|l| l.column() as usize).filter(|_| line.is_some()),
        field: line.map(|l| yamlpos::path_at(text, l)),
        message,
    }
}

/// Parse one profile file, reporting every error it holds: when the whole file fails, each
/// top-level section and each entry of a mapping section is parsed on its own (other lines
/// blanked, so positions stay true) to find the rest.
pub fn parse_text(path: &Path, text: &str) -> Result<ProfileFile, Vec<ProfileError>> {
    let first = match serde_saphyr::from_str::<Option<ProfileFile>>(text) {
        Ok(p) => return Ok(p.unwrap_or_default()),
        Err(e) => yaml_error(path, text, &e),
    };
    let mut errors = Vec::new();
    for (key, start, end) in yamlpos::top_level_blocks(text) {
        let whole = yamlpos::keep_lines(text, &[(start, end)]);
        let Err(e) = serde_saphyr::from_str::<ProfileFile>(&whole) else {
            continue;
        };
        let entries = yamlpos::child_blocks(text, start + 1, end, 1);
        let mapping_section = matches!(
            key.as_str(),
            "images" | "components" | "hooks" | "ports" | "cluster" | "config"
        );
        if !mapping_section || entries.is_empty() {
            errors.push(yaml_error(path, text, &e));
            continue;
        }
        let before = errors.len();
        for (_, a, b) in entries {
            let one = yamlpos::keep_lines(text, &[(start, start), (a, b)]);
            if let Err(e) = serde_saphyr::from_str::<ProfileFile>(&one) {
                errors.push(yaml_error(path, text, &e));
            }
        }
        if errors.len() == before {
            errors.push(yaml_error(path, text, &e));
        }
    }
    if errors.is_empty() {
        errors.push(first);
    }
    errors.dedup();
    Err(errors)
}

pub fn parse_file(path: &Path) -> Result<ParsedFile, Vec<ProfileError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ProfileError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read the profile: {e}"),
        }]
    })?;
    let profile = parse_text(path, &text)?;
    Ok(ParsedFile {
        path: path.to_path_buf(),
        text,
        profile,
    })
}

/// A profile with its includes merged: the including file wins over what it includes
/// (an entry of the same name replaces the included one, so a stack's component can be
/// swapped by editing data); lists are concatenated.
pub struct Merged {
    pub profile: ProfileFile,
    /// The file each named entry came from, keyed `section.name` (e.g. `components.redis`).
    pub origins: HashMap<String, PathBuf>,
    /// Every file read (the profile first), with its text.
    pub files: Vec<(PathBuf, String)>,
}

pub fn load_merged(path: &Path) -> Result<Merged, Vec<ProfileError>> {
    let mut files = Vec::new();
    let mut origins = HashMap::new();
    let mut stack = Vec::new();
    let profile = load_rec(path, &mut stack, &mut files, &mut origins)?;
    Ok(Merged {
        profile,
        origins,
        files,
    })
}

fn load_rec(
    path: &Path,
    stack: &mut Vec<PathBuf>,
    files: &mut Vec<(PathBuf, String)>,
    origins: &mut HashMap<String, PathBuf>,
) -> Result<ProfileFile, Vec<ProfileError>> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canonical) {
        let chain: Vec<String> = stack
            .iter()
            .chain([&canonical])
            .map(|p| p.display().to_string())
            .collect();
        return Err(vec![ProfileError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: Some("include".into()),
            message: format!("include cycle: {}", chain.join(" -> ")),
        }]);
    }
    let parsed = parse_file(path)?;
    files.push((parsed.path.clone(), parsed.text.clone()));
    stack.push(canonical);
    let mut errors = Vec::new();
    let mut base = ProfileFile::default();
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, inc) in parsed.profile.include.iter().enumerate() {
        let inc_path = dir.join(inc);
        if !inc_path.is_file() {
            let mut e = ProfileError::at(
                path,
                Some(&parsed.text),
                &["include"],
                format!("included file {} does not exist", inc_path.display()),
            );
            e.field = Some(format!("include[{i}]"));
            errors.push(e);
            continue;
        }
        match load_rec(&inc_path, stack, files, origins) {
            Ok(p) => merge_into(&mut base, p),
            Err(mut e) => errors.append(&mut e),
        }
    }
    stack.pop();
    if !errors.is_empty() {
        return Err(errors);
    }
    let own = parsed.profile;
    for (section, keys) in [
        ("images", own.images.keys().cloned().collect::<Vec<_>>()),
        ("components", own.components.keys().cloned().collect()),
        ("hooks", own.hooks.keys().cloned().collect()),
        ("ports", own.ports.keys().cloned().collect()),
    ] {
        for k in keys {
            origins.insert(format!("{section}.{k}"), path.to_path_buf());
        }
    }
    merge_into(&mut base, own);
    Ok(base)
}

fn extend_unique<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
    for x in from {
        if !into.contains(&x) {
            into.push(x);
        }
    }
}

fn merge_map<V>(into: &mut BTreeMap<String, V>, from: BTreeMap<String, V>) {
    into.extend(from);
}

/// Merge `top` (the including file) over `base` (what it included).
fn merge_into(base: &mut ProfileFile, top: ProfileFile) {
    if top.service.is_some() {
        base.service = top.service;
    }
    if top.description.is_some() {
        base.description = top.description;
    }
    if top.namespace.is_some() {
        base.namespace = top.namespace;
    }
    match (&mut base.cluster, top.cluster) {
        // Field by field: a stack can give the kubeadm patches, a service its name.
        (Some(b), Some(t)) => {
            b.name = t.name.or(b.name.take());
            b.kind_config = t.kind_config.or(b.kind_config.take());
            b.node_image = t.node_image.or(b.node_image.take());
            b.kubeconfig = t.kubeconfig.or(b.kubeconfig.take());
            if !t.nodes.is_empty() {
                b.nodes = t.nodes;
            }
            extend_unique(&mut b.extra_mounts, t.extra_mounts);
            extend_unique(&mut b.extra_port_mappings, t.extra_port_mappings);
            extend_unique(&mut b.kubeadm_config_patches, t.kubeadm_config_patches);
            extend_unique(
                &mut b.containerd_config_patches,
                t.containerd_config_patches,
            );
        }
        (b, t @ Some(_)) => *b = t,
        _ => {}
    }
    base.include.clear();
    merge_map(&mut base.images, top.images);
    extend_unique(&mut base.crds, top.crds);
    extend_unique(&mut base.config.namespaces, top.config.namespaces);
    base.config.config_maps.retain(|c| {
        !top.config
            .config_maps
            .iter()
            .any(|t| t.name == c.name && t.namespace == c.namespace)
    });
    base.config.config_maps.extend(top.config.config_maps);
    base.config.secrets.retain(|c| {
        !top.config
            .secrets
            .iter()
            .any(|t| t.name == c.name && t.namespace == c.namespace)
    });
    base.config.secrets.extend(top.config.secrets);
    match (&mut base.config.tls, top.config.tls) {
        (Some(b), Some(t)) => {
            b.ca_config_map = t.ca_config_map;
            extend_unique(&mut b.services, t.services);
            extend_unique(&mut b.signing_keys, t.signing_keys);
        }
        (b, t @ Some(_)) => *b = t,
        _ => {}
    }
    extend_unique(&mut base.config.manifests, top.config.manifests);
    merge_map(&mut base.ports, top.ports);
    merge_map(&mut base.components, top.components);
    merge_map(&mut base.hooks, top.hooks);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        parse_text(Path::new("p.yaml"), text)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_position() {
        let e = errs("service: x\ncomponents:\n  a:\n    manifests: [m.yaml]\n    imagez: [x]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.yaml:5:5: components.a.imagez: unknown field `imagez`"),
            "{e:?}"
        );
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let text = "service: x\nimages:\n  a:\n    build:\n      context: .\n      bogus: 1\n  b:\n    external: 3x\n    pulll: y\ncomponents:\n  c:\n    manifests: oops\n  d:\n    manifests: [m]\n    depends_on: [c]\n    size: 2\n";
        let e = errs(text);
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e[0].contains(":6:7: images.a.build.bogus: unknown field `bogus`"),
            "{e:?}"
        );
        assert!(e[1].contains(":9:5: images.b.pulll"), "{e:?}");
        assert!(
            e[2].contains(":12:") && e[2].contains("components.c.manifests"),
            "{e:?}"
        );
        assert!(
            e[3].contains(":16:5: components.d.size: unknown field `size`"),
            "{e:?}"
        );
    }

    #[test]
    fn an_included_cluster_is_merged_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("stack.yaml"),
            "cluster:\n  nodeImage: kindest/node:v1\n  kubeadmConfigPatches: [a]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("svc.yaml"),
            "include: [stack.yaml]\ncluster:\n  name: svc-e2e\n  kubeadmConfigPatches: [b]\n",
        )
        .unwrap();
        let merged = load_merged(&dir.path().join("svc.yaml"))
            .unwrap()
            .profile
            .cluster
            .unwrap();
        assert_eq!(merged.name.as_deref(), Some("svc-e2e"));
        assert_eq!(merged.node_image.as_deref(), Some("kindest/node:v1"));
        assert_eq!(merged.kubeadm_config_patches, ["a", "b"]);
    }

    #[test]
    fn an_empty_file_is_an_empty_profile() {
        assert_eq!(
            parse_text(Path::new("p.yaml"), "").unwrap(),
            ProfileFile::default()
        );
    }
}
