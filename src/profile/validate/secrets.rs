//! Checks of `config.secrets`: every file resolves and exists unless it (or its entry) is
//! optional, a key comes from one place, `serviceAccounts` only on image pull Secrets, and
//! those hold the key their type requires. Each error is placed at its entry's own line, in
//! the file (profile or include) that holds it: `config.secrets[1].files..dockerconfigjson`.

use super::Validator;
use crate::profile::{ProfileError, SecretSpec, secrets, tree::Node, tree::Value};

/// The item of list `config.<list>` in a file's tree whose `name` and `namespace` are written
/// as given (two entries may share a name in different namespaces): its index, and the node.
pub(super) fn find_item<'t>(
    tree: &'t Node,
    list: &str,
    name: &str,
    namespace: Option<&str>,
) -> Option<(usize, &'t Node)> {
    let (_, config) = tree.get("config")?;
    let (_, list) = config.get(list)?;
    let Value::Seq(items) = &list.value else {
        return None;
    };
    let text = |item: &'t Node, key: &str| item.get(key).and_then(|(_, v)| v.text());
    items
        .iter()
        .enumerate()
        .find(|(_, item)| text(item, "name") == Some(name) && text(item, "namespace") == namespace)
}

/// A Kubernetes object name (a DNS subdomain): what a ServiceAccount's name must be.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl Validator<'_> {
    /// An error about `config.secrets` entry `s`, at `sub` inside it (its deepest key found).
    fn secret_err(&mut self, s: &SecretSpec, sub: &[&str], message: String) {
        let found = self.profile.files.iter().find_map(|f| {
            let (i, item) =
                find_item(f.tree.as_ref()?, "secrets", &s.name, s.namespace.as_deref())?;
            let mut at = item;
            let mut pos = (item.line, item.column);
            for key in sub {
                let Some((k, v)) = at.get(key) else { break };
                pos = (k.line, k.column);
                at = v;
            }
            Some((f.path.clone(), i, pos))
        });
        let Some((file, i, pos)) = found else {
            return self.err("", None, &["config", "secrets"], message);
        };
        let head = format!("config.secrets[{i}]");
        let mut path = vec![head.as_str()];
        path.extend_from_slice(sub);
        self.errors
            .push(ProfileError::placed(&file, Some(pos), &path, message));
    }

    pub(super) fn secrets(&mut self) {
        let entries = self.profile.spec.config.secrets.clone();
        let ns = self.profile.namespace();
        let mut seen = std::collections::BTreeSet::new();
        for s in &entries {
            self.secret_files(s);
            self.pull_secret(s);
            self.secret_after(s);
            let at = format!("{}/{}", s.namespace_or(ns), s.name);
            if !seen.insert(at.clone()) {
                let m = format!("Secret {at} is given twice: one entry per name and namespace");
                self.secret_err(s, &["name"], m);
            }
        }
    }

    /// What a late Secret follows exists (components, hooks and steps, as a step's `after`).
    fn secret_after(&mut self, s: &SecretSpec) {
        for a in &s.after {
            if !self.names_unit(a) {
                let m = format!("{a:?} is no component, hook or step");
                self.secret_err(s, &["after"], m);
            }
        }
    }

    fn secret_files(&mut self, s: &SecretSpec) {
        for (key, f) in &s.files {
            let at = ["files", key.as_str()];
            if s.string_data.contains_key(key) {
                let m = format!("key {key} is in both stringData and files: give it once");
                self.secret_err(s, &at, m);
            }
            let path = match secrets::resolve(self.profile, self.source, &f.path) {
                Ok(p) => p,
                Err(e) => {
                    self.secret_err(s, &at, e);
                    continue;
                }
            };
            if path.is_file() || f.optional || s.optional {
                continue;
            }
            let hint = if secrets::is_host_path(&f.path) {
                " (a host file: `optional: true` on the entry skips the Secret when it is absent)"
            } else {
                ""
            };
            let m = format!("{} does not exist{hint}", path.display());
            self.secret_err(s, &at, m);
        }
    }

    /// `serviceAccounts` and the key an image pull Secret's type requires.
    fn pull_secret(&mut self, s: &SecretSpec) {
        let type_ = s.type_.as_deref().unwrap_or("Opaque");
        let required = secrets::dockercfg_key(type_);
        if !s.service_accounts.is_empty() && required.is_none() {
            let m = format!(
                "serviceAccounts get this Secret as an image pull Secret: its type must be \
                 kubernetes.io/dockerconfigjson (or kubernetes.io/dockercfg), not {type_}"
            );
            self.secret_err(s, &["serviceAccounts"], m);
        }
        for sa in s.service_accounts.iter().filter(|sa| !is_object_name(sa)) {
            let m = format!("ServiceAccount name {sa:?} is not a Kubernetes object name");
            self.secret_err(s, &["serviceAccounts"], m);
        }
        let Some(key) = required else { return };
        match s.files.get(key) {
            None if !s.string_data.contains_key(key) => {
                let m = format!(
                    "a Secret of type {type_} needs the key {key} (in files or stringData)"
                );
                self.secret_err(s, &["type"], m);
            }
            Some(f) if f.optional && !s.optional => {
                let m = format!(
                    "{key} is what a {type_} Secret holds: it cannot be left out (`optional: true` \
                     on the entry skips the whole Secret instead)"
                );
                self.secret_err(s, &["files", key], m);
            }
            _ => {}
        }
    }
}
