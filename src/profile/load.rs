//! Reading profile files: YAML parsing with every error located, and `include:` merging.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt,
    path::{Path, PathBuf},
};

use super::model::ProfileFile;
use super::parse::{self, ParseError, ParseErrorKind};
use super::tree::{self, Node, Value};

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
    /// An error about the key path `path`, placed where `tree` (the file's parsed tree) has it.
    pub fn at(file: &Path, tree: Option<&Node>, path: &[&str], message: impl Into<String>) -> Self {
        Self::placed(file, tree.and_then(|t| t.locate(path)), path, message)
    }

    /// An error about the key path `path`, at `pos` (line, column) when known.
    pub fn placed(
        file: &Path,
        pos: Option<(usize, usize)>,
        path: &[&str],
        message: impl Into<String>,
    ) -> Self {
        ProfileError {
            file: file.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            field: Some(path.join(".")),
            message: message.into(),
        }
    }

    fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ProfileError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }
    }

    fn from_tree(file: &Path, e: tree::Error) -> Self {
        ProfileError {
            file: file.to_path_buf(),
            line: e.line,
            column: e.column,
            field: e.field,
            message: e.message,
        }
    }
}

/// One profile file as read: its text and tree (for placing later errors), what of it could be
/// read, and every error in it.
pub struct ParsedFile {
    pub path: PathBuf,
    pub text: String,
    /// `None` when the file is not YAML at all (a syntax error) or is empty.
    pub tree: Option<Node>,
    /// Every section and entry that has no error (all of it, when `errors` is empty).
    pub profile: ProfileFile,
    pub errors: Vec<ProfileError>,
    /// Sections and entries left out of `profile` for their errors: `cluster`,
    /// `components.redis`, …; references to them are not reported as unknown.
    pub broken: BTreeSet<String>,
}

/// Parse one profile file, reporting every error it holds. The text is parsed once into a
/// located tree, and the model read from the tree section by section and, in the sections of
/// named entries, entry by entry, so that each bad entry is reported and every good one kept.
/// Linear in the size of the file.
pub fn parse_text(path: &Path, text: &str) -> ParsedFile {
    let mut parsed = ParsedFile {
        path: path.to_path_buf(),
        text: text.to_string(),
        tree: None,
        profile: ProfileFile::default(),
        errors: Vec::new(),
        broken: BTreeSet::new(),
    };
    let root = match parse::parse(text) {
        Ok(Some(root)) if !is_empty(&root) => root,
        Ok(_) => {
            parsed.errors.push(ProfileError::whole_file(
                path,
                "the profile is empty: it needs at least one section (components, hooks, images, …)",
            ));
            return parsed;
        }
        Err(e) => {
            parsed.errors.push(syntax_error(path, text, &e));
            return parsed;
        }
    };
    if !matches!(root.value, Value::Map(_)) {
        let mut e = ProfileError::whole_file(
            path,
            "a profile is a mapping of sections (service:, images:, components:, …)",
        );
        (e.line, e.column) = (Some(root.line), Some(root.column));
        parsed.errors.push(e);
        return parsed;
    }
    for (line, column, field, message) in tree::duplicates(&root) {
        parsed.errors.push(ProfileError {
            file: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field: Some(field),
            message,
        });
    }
    read_sections(&root, &mut parsed);
    parsed.tree = Some(root);
    parsed
}

fn is_empty(root: &Node) -> bool {
    match &root.value {
        Value::Map(pairs) => pairs.is_empty(),
        _ => root.is_null(),
    }
}

/// Read each top-level section on its own, and each entry of the sections of named entries
/// (images, components, …) on its own, straight into its map.
fn read_sections(root: &Node, parsed: &mut ParsedFile) {
    let Value::Map(sections) = &root.value else {
        return;
    };
    let mut seen = HashSet::new();
    for (key, value) in sections {
        let name = key.text().unwrap_or("?");
        if !seen.insert(name) {
            continue; // reported as a duplicate
        }
        let mut out = Entries {
            section: name,
            path: &parsed.path,
            errors: &mut parsed.errors,
            broken: &mut parsed.broken,
        };
        let p = &mut parsed.profile;
        match (&value.value, name) {
            (Value::Map(pairs), "images") => out.read(pairs, &mut p.images),
            (Value::Map(pairs), "binaries") => out.read(pairs, &mut p.binaries),
            (Value::Map(pairs), "components") => out.read(pairs, &mut p.components),
            (Value::Map(pairs), "hooks") => out.read(pairs, &mut p.hooks),
            (Value::Map(pairs), "ports") => out.read(pairs, &mut p.ports),
            (Value::Map(pairs), "runtime") => out.read(pairs, &mut p.runtime),
            (Value::Map(pairs), "steps") => out.read(pairs, &mut p.steps),
            // A section that is not one of named entries (or is no mapping): on its own.
            _ => {
                let piece = root.with_pairs(vec![(key.clone(), value.clone())]);
                absorb(&piece, name.to_string(), parsed);
            }
        }
    }
}

/// Where the entries of one section go, and their errors.
struct Entries<'p> {
    section: &'p str,
    path: &'p Path,
    errors: &'p mut Vec<ProfileError>,
    broken: &'p mut BTreeSet<String>,
}

impl Entries<'_> {
    /// Each entry of the section deserialized on its own: a bad one is reported and left out
    /// (named in `broken`), a second one of the same name skipped (reported as a duplicate).
    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        pairs: &[(Node, Node)],
        into: &mut BTreeMap<String, T>,
    ) {
        let mut seen = HashSet::new();
        for (key, body) in pairs {
            let name = key.text().unwrap_or("?");
            if !seen.insert(name) {
                continue;
            }
            match tree::from_entry::<T>(&[self.section, name], key, body) {
                Ok(entry) => {
                    into.insert(name.to_string(), entry);
                }
                Err(e) => {
                    self.errors.push(ProfileError::from_tree(self.path, e));
                    self.broken.insert(format!("{}.{name}", self.section));
                }
            }
        }
    }
}

fn absorb(piece: &Node, what: String, parsed: &mut ParsedFile) {
    match tree::from_node::<ProfileFile>(piece) {
        Ok(mut part) => {
            let mut include = std::mem::take(&mut parsed.profile.include);
            include.append(&mut part.include);
            merge_into(&mut parsed.profile, part);
            parsed.profile.include = include;
        }
        Err(e) => {
            parsed.errors.push(ProfileError::from_tree(&parsed.path, e));
            parsed.broken.insert(what);
        }
    }
}

/// A file that is not YAML: one error, where the parser stopped, named by the entry it is in.
fn syntax_error(path: &Path, text: &str, e: &ParseError) -> ProfileError {
    let (line, column) = (e.line.max(1), e.column.max(1));
    // The field: the entry the text before the bad line ends in, at a lower indentation.
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let field = parse::parse(&text[..start])
        .ok()
        .flatten()
        .map(|before| before.path_before(column))
        .filter(|f| !f.is_empty());
    ProfileError {
        file: path.to_path_buf(),
        line: Some(line),
        column: Some(column),
        field,
        message: yaml_message(&e.kind),
    }
}

/// The parser's errors in kprov's words.
pub(super) fn yaml_message(kind: &ParseErrorKind) -> String {
    match kind {
        ParseErrorKind::MultipleDocuments => {
            "a profile is one YAML document, but `---` starts another one here".into()
        }
        ParseErrorKind::TooLarge => "the file is nested too deeply or too large to read".into(),
        ParseErrorKind::UnknownAnchor => "`*alias` refers to no `&anchor` defined before it".into(),
        ParseErrorKind::Syntax(msg) => parser_words(msg),
    }
}

/// The YAML parser's syntax errors, reworded for the mistakes people make in a profile.
fn parser_words(msg: &str) -> String {
    let msg = msg.trim();
    if msg.contains("did not find expected key") {
        "this line is not indented like the keys of the mapping it is in (or is not `key: value`)"
            .into()
    } else if msg.contains("mapping values are not allowed") {
        "a `: ` where no key can start: fix the indentation, or quote a value that holds `: `"
            .into()
    } else if msg.contains("cannot start any token") {
        "a character that cannot start a value (a tab for indentation? quote the value)".into()
    } else if msg.contains("did not find expected ',' or ']'") {
        "a `[...]` list is not closed with `]`".into()
    } else if msg.contains("did not find expected ',' or '}'") {
        "a `{...}` mapping is not closed with `}`".into()
    } else {
        format!("invalid YAML: {}", msg.escape_debug())
    }
}

pub fn parse_file(path: &Path) -> ParsedFile {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_text(path, &text),
        Err(e) => {
            let mut parsed = parse_text(path, "{}");
            parsed.errors = vec![ProfileError::whole_file(
                path,
                format!("cannot read the profile: {e}"),
            )];
            parsed
        }
    }
}

/// A file as the profile keeps it: its text and tree, for placing errors found later.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    pub tree: Option<Node>,
    /// Every key path's position, built on the first lookup (so that placing many errors in
    /// a large file stays linear).
    index: std::sync::OnceLock<HashMap<String, (usize, usize)>>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String, tree: Option<Node>) -> Self {
        SourceFile {
            path,
            text,
            tree,
            index: Default::default(),
        }
    }

    /// Where the key path is written: its deepest key found, (line, column).
    pub fn locate(&self, path: &[&str]) -> Option<(usize, usize)> {
        let index = self
            .index
            .get_or_init(|| self.tree.as_ref().map(tree::key_index).unwrap_or_default());
        (1..=path.len())
            .rev()
            .find_map(|n| index.get(&path[..n].join(tree::KEY_SEPARATOR)).copied())
    }
}

/// A profile with its includes merged: the including file wins over what it includes
/// (an entry of the same name replaces the included one, so a stack's component can be
/// swapped by editing data); lists are concatenated.
#[derive(Default)]
pub struct Merged {
    /// What could be read of the profile and its includes.
    pub profile: ProfileFile,
    /// The file each named entry came from, keyed `section.name` (e.g. `components.redis`).
    pub origins: HashMap<String, PathBuf>,
    /// Every file read (the profile first), with its text and tree.
    pub files: Vec<SourceFile>,
    /// Every error found reading them.
    pub errors: Vec<ProfileError>,
    /// Entries left out for their errors (see [`ParsedFile::broken`]).
    pub broken: BTreeSet<String>,
}

pub fn load_merged(path: &Path) -> Merged {
    let mut merged = Merged::default();
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    merged.profile = load_rec(path, &mut vec![canonical], &mut merged);
    merged
}

/// The positions of the items of a file's `include:` list.
fn include_items(tree: Option<&Node>) -> Vec<(usize, usize)> {
    match tree.and_then(|t| t.get("include")).map(|(_, v)| &v.value) {
        Some(Value::Seq(items)) => items.iter().map(|n| (n.line, n.column)).collect(),
        _ => Vec::new(),
    }
}

/// Read `path` (the last file on `stack`) and what it includes, depth first.
fn load_rec(path: &Path, stack: &mut Vec<PathBuf>, merged: &mut Merged) -> ProfileFile {
    let parsed = parse_file(path);
    merged.errors.extend(parsed.errors);
    merged.broken.extend(parsed.broken);
    let items = include_items(parsed.tree.as_ref());
    merged.files.push(SourceFile::new(
        parsed.path.clone(),
        parsed.text,
        parsed.tree,
    ));
    let mut base = ProfileFile::default();
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, inc) in parsed.profile.include.iter().enumerate() {
        let inc_path = dir.join(inc);
        let mut error = |message: String| {
            let at = items.get(i).copied();
            merged.errors.push(ProfileError {
                file: path.to_path_buf(),
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
                field: Some(format!("include[{i}]")),
                message,
            });
        };
        if !inc_path.is_file() {
            error(format!(
                "included file {} does not exist",
                inc_path.display()
            ));
            continue;
        }
        let canonical = inc_path.canonicalize().unwrap_or_else(|_| inc_path.clone());
        if let Some(pos) = stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = stack[pos..]
                .iter()
                .chain([&canonical])
                .map(|p| p.display().to_string())
                .collect();
            error(format!("include cycle: {}", chain.join(" -> ")));
            continue;
        }
        stack.push(canonical);
        let included = load_rec(&inc_path, stack, merged);
        stack.pop();
        merge_into(&mut base, included);
    }
    let own = parsed.profile;
    for (section, keys) in [
        ("images", own.images.keys().cloned().collect::<Vec<_>>()),
        ("binaries", own.binaries.keys().cloned().collect()),
        ("components", own.components.keys().cloned().collect()),
        ("hooks", own.hooks.keys().cloned().collect()),
        ("ports", own.ports.keys().cloned().collect()),
        ("runtime", own.runtime.keys().cloned().collect()),
        ("steps", own.steps.keys().cloned().collect()),
    ] {
        for k in keys {
            merged
                .origins
                .insert(format!("{section}.{k}"), path.to_path_buf());
        }
    }
    merge_into(&mut base, own);
    base
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
            b.working_dir = t.working_dir.or(b.working_dir.take());
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
    merge_map(&mut base.binaries, top.binaries);
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
            extend_unique(&mut b.certificates, t.certificates);
            if t.ca_file.is_some() {
                b.ca_file = t.ca_file;
            }
            extend_unique(&mut b.signing_keys, t.signing_keys);
        }
        (b, t @ Some(_)) => *b = t,
        _ => {}
    }
    extend_unique(&mut base.config.manifests, top.config.manifests);
    merge_map(&mut base.ports, top.ports);
    merge_map(&mut base.components, top.components);
    merge_map(&mut base.hooks, top.hooks);
    merge_map(&mut base.runtime, top.runtime);
    merge_map(&mut base.steps, top.steps);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        let parsed = parse_text(Path::new("p.yaml"), text);
        assert!(!parsed.errors.is_empty(), "no errors in {text:?}");
        parsed.errors.iter().map(|e| e.to_string()).collect()
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
    fn every_error_in_a_file_is_reported_and_every_good_entry_kept() {
        let text = "service: x\nimages:\n  a:\n    build:\n      context: .\n      bogus: 1\n  b:\n    external: 3x\n    pulll: y\ncomponents:\n  c:\n    manifests: oops\n  d:\n    manifests: [m]\n    depends_on: [c]\n    size: 2\n  e:\n    manifests: [m]\n";
        let e = errs(text);
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e[0].contains(":6:7: images.a.build.bogus: unknown field `bogus`"),
            "{e:?}"
        );
        assert!(e[1].contains(":9:5: images.b.pulll"), "{e:?}");
        assert!(
            e[2].contains(
                ":12:16: components.c.manifests: expected a list, found the string \"oops\""
            ),
            "{e:?}"
        );
        assert!(
            e[3].contains(":16:5: components.d.size: unknown field `size`"),
            "{e:?}"
        );
        let parsed = parse_text(Path::new("p.yaml"), text);
        assert_eq!(parsed.profile.service.as_deref(), Some("x"));
        assert_eq!(parsed.profile.components.keys().collect::<Vec<_>>(), ["e"]);
        let broken: Vec<&str> = parsed.broken.iter().map(String::as_str).collect();
        assert_eq!(
            broken,
            ["components.c", "components.d", "images.a", "images.b"]
        );
    }

    #[test]
    fn a_block_of_the_wrong_type_is_reported_on_its_key_line() {
        // serde-saphyr places it where the block starts (7:7), which reads as the wrong field
        // `components.a.dependsOn.a`, one line late.
        let e = errs(
            "service: x\ncomponents:\n  a:\n    manifests:\n      - m\n    dependsOn:\n      a: b\n",
        );
        assert_eq!(
            e,
            ["p.yaml:6:5: components.a.dependsOn: expected a list, found a mapping"]
        );
        let e = errs("service: x\nhooks:\n  h:\n    after: [a]\n");
        assert_eq!(e, ["p.yaml:3:3: hooks.h: missing field `manifests`"]);
    }

    #[test]
    fn a_syntax_error_names_the_entry_it_is_in() {
        let e = errs("service: x\ncomponents:\n  a:\n    manifests: [m.yaml]\n   images: [x]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.yaml:5:4: components.a: this line is not indented"),
            "{e:?}"
        );
    }

    #[test]
    fn messages_are_kprovs_own_words() {
        let e = errs("service: x\nservice: y\n");
        assert_eq!(
            e,
            ["p.yaml:2:1: service: `service` is given twice (first on line 1)"]
        );
        let e = errs("service: x\n---\nservice: y\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("a profile is one YAML document"), "{e:?}");
        for text in [
            "a: [1, 2\n",
            "a: *nope\n",
            "a:\n\t- b\n",
            "a: b: c\n",
            "a: 'x\n",
            "- a\n- b\n",
        ] {
            for e in errs(text) {
                for leak in ["Options", "from_str", "Policy", "serde", "struct "] {
                    assert!(!e.contains(leak), "{text:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn an_empty_file_is_an_error() {
        for text in ["", "# nothing\n", "{}\n", "~\n"] {
            let e = errs(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(e[0].contains("the profile is empty"), "{e:?}");
        }
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
        let merged = load_merged(&dir.path().join("svc.yaml"));
        assert!(merged.errors.is_empty(), "{:?}", merged.errors);
        let cluster = merged.profile.cluster.unwrap();
        assert_eq!(cluster.name.as_deref(), Some("svc-e2e"));
        assert_eq!(cluster.node_image.as_deref(), Some("kindest/node:v1"));
        assert_eq!(cluster.kubeadm_config_patches, ["a", "b"]);
    }

    #[test]
    fn an_include_cycle_names_the_include_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("stacks")).unwrap();
        std::fs::write(
            dir.path().join("stacks/a.yaml"),
            "description: a\ninclude:\n  - b.yaml\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("stacks/b.yaml"), "include: [a.yaml]\n").unwrap();
        std::fs::write(dir.path().join("svc.yaml"), "include: [stacks/a.yaml]\n").unwrap();
        let merged = load_merged(&dir.path().join("svc.yaml"));
        let e: Vec<String> = merged.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("stacks/b.yaml:1:11: include[0]: include cycle: ")
                && e[0].ends_with("a.yaml"),
            "{e:?}"
        );
    }
}
