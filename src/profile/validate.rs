//! Semantic checks of a loaded profile against a source tree: references between entries,
//! files that must exist, templates, ports. Every problem is collected.

use std::{
    cell::OnceCell,
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

mod binaries;
mod config_maps;
mod cycles;
mod secrets;
mod steps;

use super::{Profile, ProfileError, template};

/// Every problem in `profile`, checking files under `source`.
pub fn validate(profile: &Profile, source: &Path) -> Vec<ProfileError> {
    let mut v = Validator {
        profile,
        source,
        errors: Vec::new(),
        base: OnceCell::new(),
        texts: Default::default(),
    };
    v.run();
    v.errors
}

struct Validator<'a> {
    profile: &'a Profile,
    source: &'a Path,
    errors: Vec<ProfileError>,
    /// The names every template may use whatever its own `values` (images, ports, run-time
    /// values, …), built once: per template, only its `values.*` are added.
    base: OnceCell<template::Values>,
    /// Each manifest template read so far: entries that share a file, and the run-time-value
    /// scan of the cycle check, read it once.
    texts: super::Texts,
}

/// The longest host name kind gives a node container (kind's create checks the cluster name
/// against 64 minus the 14 characters of `-control-plane`).
const KIND_HOST_NAME_MAX: usize = 64;

/// The longest node container name kind derives from the cluster name: `<name>-control-plane`,
/// `<name>-control-plane2`, …, `<name>-worker`, `<name>-worker2`, …
fn longest_node_name(name: &str, cluster: Option<&crate::profile::ClusterSpec>) -> String {
    let nodes = cluster.map(|c| c.nodes.as_slice()).unwrap_or_default();
    let count = |role: &str| nodes.iter().filter(|n| n.role == role).count();
    let numbered = |role: &str, n: usize| match n {
        0 => None,
        1 => Some(format!("{name}-{role}")),
        n => Some(format!("{name}-{role}{n}")),
    };
    [
        numbered("control-plane", count("control-plane").max(1)),
        numbered("worker", count("worker")),
    ]
    .into_iter()
    .flatten()
    .max_by_key(String::len)
    .unwrap_or_default()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Validator<'_> {
    fn err(&mut self, section: &str, name: Option<&str>, path: &[&str], message: String) {
        let (file, source) = match name {
            Some(n) => self.profile.origin(section, n),
            None => (self.profile.path.as_path(), self.profile.files.first()),
        };
        let pos = source.and_then(|s| s.locate(path));
        self.errors
            .push(ProfileError::placed(file, pos, path, message));
    }

    fn file(&mut self, section: &str, name: Option<&str>, path: &[&str], rel: &str) -> bool {
        let file = self.profile.resolve(self.source, rel);
        if file.is_file() {
            return true;
        }
        self.err(
            section,
            name,
            path,
            format!("{} does not exist", file.display()),
        );
        false
    }

    fn run(&mut self) {
        let p = self.profile;
        let spec = &p.spec;
        if !is_dns_label(&p.service) {
            self.err(
                "",
                None,
                &["service"],
                format!(
                    "service name {:?} must be a DNS label (a-z, 0-9, -)",
                    p.service
                ),
            );
        }
        if let Some(ns) = &spec.namespace
            && !is_dns_label(ns)
        {
            self.err(
                "",
                None,
                &["namespace"],
                format!("namespace {ns:?} must be a DNS label"),
            );
        }
        self.cluster_name();
        self.cluster();
        self.images();
        for pattern in &spec.crds {
            if let Err(e) = self.profile.expand(self.source, pattern) {
                self.err("", None, &["crds"], e);
            }
        }
        self.config();
        self.ports();
        self.workloads();
        self.runtime();
        self.steps();
        self.binaries();
        self.cycles();
    }

    /// kind's rules for a cluster name: it names the node containers `<name>-control-plane`,
    /// `<name>-worker2`, …, and those are host names (64 characters at most).
    fn cluster_name(&mut self) {
        if self.profile.broken.contains("cluster") {
            return;
        }
        let name = self.profile.cluster_name();
        let given = self
            .profile
            .spec
            .cluster
            .as_ref()
            .is_some_and(|c| c.name.is_some());
        let (path, how): (&[&str], String) = if given {
            (&["cluster", "name"], format!("cluster name {name:?}"))
        } else {
            (
                &["service"],
                format!("cluster name {name:?} (kprov-<service>, the default)"),
            )
        };
        if !is_dns_label(&name) {
            self.err(
                "",
                None,
                path,
                format!("{how} must be lowercase letters, digits and `-`, starting and ending with a letter or digit"),
            );
            return;
        }
        let longest = longest_node_name(&name, self.profile.spec.cluster.as_ref());
        if longest.len() > KIND_HOST_NAME_MAX {
            self.err(
                "",
                None,
                path,
                format!(
                    "{how} is too long for kind: its node container {longest} has {} characters, more than {KIND_HOST_NAME_MAX} (a cluster name of at most {} fits)",
                    longest.len(),
                    KIND_HOST_NAME_MAX - (longest.len() - name.len())
                ),
            );
        }
    }

    fn cluster(&mut self) {
        let Some(c) = &self.profile.spec.cluster else {
            return;
        };
        if let Some(k) = &c.kind_config {
            if self.file("", None, &["cluster", "kindConfig"], k)
                && let Err(e) = crate::tasks::cluster::read_kind_config(self.source, c)
            {
                self.err("", None, &["cluster", "kindConfig"], e.0);
            }
            if !c.nodes.is_empty() {
                self.err(
                    "",
                    None,
                    &["cluster", "nodes"],
                    "nodes and kindConfig exclude each other: the kind config file lists the nodes"
                        .into(),
                );
            }
        }
        if let Some(dir) = &c.working_dir {
            self.working_dir(dir, c.kind_config.is_some());
        }
        for n in &c.nodes {
            if n.role != "control-plane" && n.role != "worker" {
                self.err(
                    "",
                    None,
                    &["cluster", "nodes"],
                    format!("node role {:?} must be control-plane or worker", n.role),
                );
            }
        }
        if let Some(r) = c.registry.as_deref().filter(|r| *r != "local") {
            self.err(
                "",
                None,
                &["cluster", "registry"],
                format!("registry {r:?} must be local (kind's local registry, which kprov creates or reuses)"),
            );
        }
        if !c.nodes.is_empty() && !c.nodes.iter().any(|n| n.role == "control-plane") {
            self.err(
                "",
                None,
                &["cluster", "nodes"],
                "at least one node must be a control-plane".into(),
            );
        }
    }

    /// `cluster.workingDir`: where kind runs, inside the source tree, for a kind config file.
    fn working_dir(&mut self, dir: &str, kind_config: bool) {
        let at = ["cluster", "workingDir"];
        let path = Path::new(dir);
        let problem = if !kind_config {
            Some(format!(
                "workingDir {dir:?} is where kind runs, for a kindConfig's relative host paths; this profile has no kindConfig (its own paths resolve against --source)"
            ))
        } else if path.is_absolute() || dir.starts_with("kprov:") {
            Some(format!(
                "workingDir {dir:?} must be a directory relative to --source (kind's working directory in the source tree)"
            ))
        } else if path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            Some(format!(
                "workingDir {dir:?} must stay inside --source (no `..`)"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            self.err("", None, &at, message);
        }
    }

    fn images(&mut self) {
        for (name, img) in &self.profile.spec.images {
            let at = ["images", name.as_str()];
            match (&img.build, &img.external) {
                (Some(_), Some(_)) => self.err(
                    "images",
                    Some(name),
                    &at,
                    "an image is either built (build:) or external (external:), not both".into(),
                ),
                (None, None) => self.err(
                    "images",
                    Some(name),
                    &at,
                    "an image needs build: or external:".into(),
                ),
                (Some(b), None) => {
                    let ctx = self.profile.resolve(self.source, &b.context);
                    if !ctx.is_dir() {
                        self.err(
                            "images",
                            Some(name),
                            &["images", name, "build", "context"],
                            format!("build context {} is not a directory", ctx.display()),
                        );
                    } else {
                        let dockerfile = b
                            .dockerfile
                            .clone()
                            .unwrap_or_else(|| format!("{}/Dockerfile", b.context));
                        self.file(
                            "images",
                            Some(name),
                            &["images", name, "build", "dockerfile"],
                            &dockerfile,
                        );
                    }
                }
                (None, Some(r)) => {
                    if r.is_empty() || r.contains(char::is_whitespace) {
                        self.err(
                            "images",
                            Some(name),
                            &["images", name, "external"],
                            format!("{r:?} is not an image reference"),
                        );
                    }
                }
            }
        }
    }

    fn config(&mut self) {
        let c = &self.profile.spec.config;
        for ns in c.namespaces.iter().map(|n| n.name()) {
            if !is_dns_label(ns) {
                self.err(
                    "",
                    None,
                    &["config", "namespaces"],
                    format!("namespace {ns:?} must be a DNS label"),
                );
            }
        }
        self.config_maps();
        self.secrets();
        for m in c.manifests.iter().filter_map(|m| m.path()) {
            if self.file("", None, &["config", "manifests"], m) {
                self.template(m, &BTreeMap::new());
            }
        }
    }

    fn ports(&mut self) {
        let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
        for (name, p) in &self.profile.spec.ports {
            if !(30000..=32767).contains(&p.node_port) {
                self.err(
                    "ports",
                    Some(name),
                    &["ports", name, "nodePort"],
                    format!("nodePort {} is outside 30000-32767", p.node_port),
                );
            }
            if let Some(other) = seen.insert(p.node_port, name) {
                self.err(
                    "ports",
                    Some(name),
                    &["ports", name, "nodePort"],
                    format!("nodePort {} is also used by port {other}", p.node_port),
                );
            }
        }
        self.host_ports();
    }

    /// A host port is published once: a fixed `hostPort` must not be another entry's, nor the
    /// one the kind config maps another NodePort to (that mapping stays).
    fn host_ports(&mut self) {
        let ports = &self.profile.spec.ports;
        // Unreadable kind configs are reported at cluster.kindConfig.
        let from_file = self
            .profile
            .spec
            .cluster
            .as_ref()
            .and_then(|c| crate::tasks::cluster::kind_config_host_ports(self.source, c).ok())
            .unwrap_or_default();
        let mut taken: BTreeMap<u16, &str> = BTreeMap::new();
        for (name, p) in ports.iter().filter(|(_, p)| p.host_port != 0) {
            let problem = if let Some(other) = taken.insert(p.host_port, name) {
                Some(format!("hostPort {} is also port {other}'s", p.host_port))
            } else {
                from_file
                    .iter()
                    .find(|(np, h)| **h == p.host_port && **np != p.node_port)
                    .filter(|(np, _)| !ports.values().any(|q| q.node_port == **np && q.host_port != 0))
                    .map(|(np, _)| {
                        format!(
                            "hostPort {} is the one the kind config maps NodePort {np} to (a host port is published once)",
                            p.host_port
                        )
                    })
            };
            if let Some(message) = problem {
                self.err("ports", Some(name), &["ports", name, "hostPort"], message);
            }
        }
    }

    /// The images and the components, hooks or steps an entry names exist.
    fn references(
        &mut self,
        section: &str,
        name: &str,
        images: &[String],
        deps: &[String],
        deps_key: &str,
        names: &BTreeSet<String>,
    ) {
        let spec = &self.profile.spec;
        let n = Some(name);
        for i in images {
            let broken = self.profile.broken.contains(&format!("images.{i}"));
            if !spec.images.contains_key(i) && !broken {
                let known: Vec<&str> = spec.images.keys().map(String::as_str).collect();
                self.err(
                    section,
                    n,
                    &[section, name, "images"],
                    format!("unknown image {i:?} (images: {})", known.join(", ")),
                );
            }
        }
        for d in deps {
            if d == name {
                self.err(
                    section,
                    n,
                    &[section, name, deps_key],
                    format!("{name} cannot depend on itself"),
                );
            } else if !names.contains(d) {
                self.err(
                    section,
                    n,
                    &[section, name, deps_key],
                    format!("unknown component, hook or step {d:?}"),
                );
            }
        }
    }

    /// What a template given `values` may use (images and host ports by name only).
    fn known(&self, values: &BTreeMap<String, String>) -> template::Values {
        let spec = &self.profile.spec;
        let images = spec
            .images
            .keys()
            .map(|k| (k.clone(), String::new()))
            .collect();
        let host_ports = spec.ports.keys().map(|k| (k.clone(), 0)).collect();
        self.profile.template_values(values, &images, &host_ports)
    }

    /// The problems of a template's placeholders: names it will not be given, files that
    /// do not exist, syntax.
    fn template_problems(
        &self,
        text: &str,
        values: &BTreeMap<String, String>,
    ) -> Vec<template::TemplateError> {
        let base = self.base.get_or_init(|| self.known(&BTreeMap::new()));
        let given = |n: &str| {
            base.contains_key(n)
                || n.strip_prefix("values.")
                    .is_some_and(|k| values.contains_key(k))
        };
        let mut files = template::Values::new();
        let mut problems = self
            .profile
            .read_template_files(self.source, text, &mut files);
        if problems.is_empty() {
            // What filters make of the files read (a goJson document of the wrong shape).
            problems.extend(template::check_file_filters(text, &files));
        }
        match template::names(text) {
            Err(e) => problems.push(e),
            Ok(names) => problems.extend(
                names
                    .into_iter()
                    .filter(|(n, ..)| !n.starts_with(template::FILE_PREFIX) && !given(n))
                    .map(|(n, line, column)| template::TemplateError {
                        line,
                        column,
                        message: format!("unknown template value `{n}`"),
                    }),
            ),
        }
        problems.sort_by_key(|e| (e.line, e.column));
        problems
    }

    /// Check a template string of the profile (a step's URL, header or body), at its field.
    fn template_string(
        &mut self,
        at: (&str, &str),
        path: &[&str],
        text: &str,
        values: &BTreeMap<String, String>,
    ) {
        for e in self.template_problems(text, values) {
            self.err(at.0, Some(at.1), path, e.message);
        }
    }

    /// Check a manifest template's placeholders against what it will be given.
    fn template(&mut self, rel: &str, values: &BTreeMap<String, String>) {
        let path = self.profile.resolve(self.source, rel);
        let Some(text) = self.texts.read(&path) else {
            return;
        };
        for e in self.template_problems(&text, values) {
            let mut err = ProfileError::at(&path, None, &[], e.message);
            err.line = Some(e.line);
            err.column = Some(e.column);
            err.field = None;
            self.errors.push(err);
        }
    }

    fn workloads(&mut self) {
        let spec = &self.profile.spec;
        // An entry left out for a schema error still exists: naming it is no error.
        let broken = |section: &str| {
            let prefix = format!("{section}.");
            self.profile
                .broken
                .iter()
                .filter_map(move |b| b.strip_prefix(&prefix).map(str::to_string))
        };
        let names: BTreeSet<String> = spec
            .components
            .keys()
            .chain(spec.hooks.keys())
            .chain(spec.steps.keys())
            .cloned()
            .chain(broken("components"))
            .chain(broken("hooks"))
            .chain(broken("steps"))
            .collect();
        for dup in spec
            .components
            .keys()
            .filter(|k| spec.hooks.contains_key(*k))
        {
            self.err(
                "hooks",
                Some(dup),
                &["hooks", dup],
                format!("{dup} is both a component and a hook"),
            );
        }
        let items = spec
            .components
            .iter()
            .map(|(n, c)| {
                (
                    "components",
                    n,
                    &c.manifests,
                    &c.images,
                    &c.depends_on,
                    "dependsOn",
                    &c.values,
                    c.ready.timeout.as_ref(),
                    c.ready.http.as_ref(),
                )
            })
            .chain(spec.hooks.iter().map(|(n, h)| {
                (
                    "hooks",
                    n,
                    &h.manifests,
                    &h.images,
                    &h.after,
                    "after",
                    &h.values,
                    h.timeout.as_ref(),
                    None,
                )
            }));
        for (section, name, manifests, images, deps, deps_key, values, timeout, http) in items {
            let n = Some(name.as_str());
            if !is_dns_label(name) {
                self.err(
                    section,
                    n,
                    &[section, name],
                    format!("name {name:?} must be a DNS label"),
                );
            }
            if manifests.is_empty() {
                self.err(
                    section,
                    n,
                    &[section, name, "manifests"],
                    "at least one manifest is needed".into(),
                );
            }
            for m in manifests.iter().filter_map(|m| m.path()) {
                if self.file(section, n, &[section, name, "manifests"], m) {
                    self.template(m, values);
                }
            }
            self.references(section, name, images, deps, deps_key, &names);
            if let Some(t) = timeout
                && let Err(e) = humantime::parse_duration(t)
            {
                let key: &[&str] = if section == "hooks" {
                    &[section, name, "timeout"]
                } else {
                    &[section, name, "ready", "timeout"]
                };
                self.err(section, n, key, format!("timeout {t:?}: {e}"));
            }
            if let Some(url) = http {
                let known = self.known(values);
                if let Err(es) = template::render(url, &known) {
                    for e in es {
                        self.err(section, n, &[section, name, "ready", "http"], e.message);
                    }
                }
            }
        }
    }
}
