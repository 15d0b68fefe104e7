//! Which run-time values each component, hook, step and value uses (`{{ runtime.NAME }}` in
//! its manifests, values and fields), so the planner can add the edge from the task that
//! produces a value to every task that needs it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::profile::{ManifestEntry, Profile, Texts, template};

/// The template prefix of run-time values.
pub const PREFIX: &str = "runtime.";

/// Built-in run-time values, produced by the configuration batch (the generated CA).
pub const CA_BUNDLE: &str = "caBundle";
pub const CA_BUNDLE_BASE64: &str = "caBundleBase64";

/// Run-time value names used by `text`'s placeholders. Text that does not parse as a template
/// uses nothing here (validation reports it).
pub fn in_text(text: &str) -> BTreeSet<String> {
    template::names(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, ..)| n.strip_prefix(PREFIX).map(str::to_owned))
        .collect()
}

/// The run-time values named in manifest files, each file read and scanned once (entries
/// often share a file).
struct InFiles<'p> {
    profile: &'p Profile,
    source: &'p Path,
    texts: &'p Texts,
    seen: HashMap<PathBuf, BTreeSet<String>>,
}

impl InFiles<'_> {
    fn uses(&mut self, files: &[ManifestEntry]) -> BTreeSet<String> {
        // Only files of the source tree are templates; manifests from elsewhere apply as they
        // come.
        let mut out = BTreeSet::new();
        for f in files.iter().filter_map(ManifestEntry::path) {
            let path = self.profile.resolve(self.source, f);
            let texts = self.texts;
            let names = self.seen.entry(path).or_insert_with_key(|path| {
                texts.read(path).map(|t| in_text(&t)).unwrap_or_default()
            });
            out.extend(names.iter().cloned());
        }
        out
    }
}

/// In each string of a JSON value on its own (its JSON text escapes a placeholder's quotes).
fn in_strings_of(v: &serde_json::Value) -> BTreeSet<String> {
    template::json_strings(v)
        .into_iter()
        .flat_map(in_text)
        .collect()
}

fn in_strings<'a>(strings: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    strings.into_iter().flat_map(|s| in_text(s)).collect()
}

/// The run-time values each unit uses, keyed by the unit's task id (`deploy:api`, `step:seed`).
/// Built-in values (the CA bundle) are left out: the configuration batch, which every unit
/// follows, produces them.
pub fn runtime_uses(profile: &Profile, source: &Path) -> BTreeMap<String, BTreeSet<String>> {
    runtime_uses_read(profile, source, &Texts::default())
}

/// [`runtime_uses`], reading template files through `texts` (validation's, which has read
/// them already).
pub fn runtime_uses_read(
    profile: &Profile,
    source: &Path,
    texts: &Texts,
) -> BTreeMap<String, BTreeSet<String>> {
    let spec = &profile.spec;
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = InFiles {
        profile,
        source,
        texts,
        seen: HashMap::new(),
    };
    for (name, c) in &spec.components {
        let mut u = files.uses(&c.manifests);
        u.extend(in_strings(c.values.values()));
        u.extend(in_strings(c.ready.http.iter()));
        uses.insert(super::unit_id(profile, name), u);
    }
    for (name, h) in &spec.hooks {
        let mut u = files.uses(&h.manifests);
        u.extend(in_strings(h.values.values()));
        uses.insert(super::unit_id(profile, name), u);
    }
    for (name, st) in &spec.steps {
        let mut u = files.uses(&st.apply);
        u.extend(in_strings(st.values.values()));
        u.extend(in_strings(st.command.iter()));
        if let Some(h) = &st.http {
            u.extend(h.templated().into_iter().flat_map(|(_, t)| in_text(t)));
            let file = h.body_file.iter().map(|f| ManifestEntry::Path(f.clone()));
            u.extend(files.uses(&file.collect::<Vec<_>>()));
        }
        for p in &st.patch_status {
            u.extend(in_strings_of(&p.status));
        }
        uses.insert(super::unit_id(profile, name), u);
    }
    for set in uses.values_mut() {
        set.remove(CA_BUNDLE);
        set.remove(CA_BUNDLE_BASE64);
    }
    uses
}
