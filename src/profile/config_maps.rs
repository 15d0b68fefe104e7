//! The files of `config.configMaps[].files`: a plain key reads one file; a glob key (`"*"`,
//! `"*.sql"`) takes every file its value matches (a path or a glob, expanded as `crds:`)
//! whose file name the key matches, each under that file name, in sorted order.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{ConfigMapSpec, Profile};

/// Whether a `files` key (or value) is a glob: it holds `*`, `?`, `[` or `{`.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

impl Profile {
    /// The keys `files` entry `key: file` of a ConfigMap gives, each with the file it reads.
    /// A glob key that takes nothing (its value matches no file, or no matched file's name
    /// matches the key) is an error.
    pub fn config_map_entry(
        &self,
        source: &Path,
        key: &str,
        file: &str,
    ) -> Result<Vec<(String, PathBuf)>, String> {
        if !is_glob(key) {
            return Ok(vec![(key.to_string(), self.resolve(source, file))]);
        }
        if key.contains('/') {
            return Err(format!(
                "glob key {key:?} matches file names: it cannot hold a /"
            ));
        }
        let names = globset::GlobBuilder::new(key)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("bad glob key {key:?}: {e}"))?
            .compile_matcher();
        let found = self.expand(source, file)?;
        let taken: Vec<(String, PathBuf)> = found
            .iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                names.is_match(name).then(|| (name.to_string(), p.clone()))
            })
            .collect();
        if taken.is_empty() {
            return Err(format!(
                "no file {file:?} matches is named {key:?} ({} matched, none by that name)",
                found.len()
            ));
        }
        Ok(taken)
    }

    /// Every key ConfigMap `cm` reads from a file, with the file, sorted by key. The first
    /// entry that fails, or a key two entries give (or `data` gives too), is the error.
    pub fn config_map_files(
        &self,
        source: &Path,
        cm: &ConfigMapSpec,
    ) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut out = BTreeMap::new();
        let mut from: BTreeMap<String, &str> = BTreeMap::new();
        for (key, file) in &cm.files {
            let entry = self
                .config_map_entry(source, key, file)
                .map_err(|e| format!("ConfigMap {}: files.{key}: {e}", cm.name))?;
            for (k, path) in entry {
                if let Some(clash) = key_clash(cm, &from, key, &k) {
                    return Err(format!("ConfigMap {}: {clash}", cm.name));
                }
                from.insert(k.clone(), key);
                out.insert(k, path);
            }
        }
        Ok(out)
    }
}

/// Why key `k`, given by `files` entry `entry`, is given twice: by `data`, or by another
/// entry of `files` (in `from`, the entry each key seen so far came from).
pub(crate) fn key_clash(
    cm: &ConfigMapSpec,
    from: &BTreeMap<String, &str>,
    entry: &str,
    k: &str,
) -> Option<String> {
    let by = |e: &str| {
        if e == k {
            format!("files entry {e:?}")
        } else {
            format!("files entry {e:?} (glob)")
        }
    };
    if cm.data.contains_key(k) {
        return Some(format!(
            "key {k:?} is given by both data and {}: give it once",
            by(entry)
        ));
    }
    from.get(k).map(|other| {
        format!(
            "key {k:?} is given by both {} and {}: give it once",
            by(other),
            by(entry)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(dir: &Path) -> Profile {
        Profile {
            service: "svc".into(),
            path: dir.join("profiles/svc.yaml"),
            spec: Default::default(),
            origins: Default::default(),
            files: Vec::new(),
            broken: Default::default(),
        }
    }

    fn cm(files: &[(&str, &str)], data: &[&str]) -> ConfigMapSpec {
        ConfigMapSpec {
            name: "m".into(),
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            data: data.iter().map(|k| (k.to_string(), "v".into())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_glob_key_takes_each_matching_file_under_its_name_sorted_and_top_level_only() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        std::fs::create_dir_all(src.join("mig/testdata")).unwrap();
        for f in [
            "010_b.sql",
            "002_a.sql",
            "seed.sql",
            "README.md",
            "testdata/003_t.sql",
        ] {
            std::fs::write(src.join("mig").join(f), f).unwrap();
        }
        let p = profile(src);
        let keys = |m: &ConfigMapSpec| {
            p.config_map_files(src, m).map(|f| {
                f.into_iter()
                    .map(|(k, v)| (k, v.strip_prefix(src).unwrap().display().to_string()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            keys(&cm(
                &[("*.sql", "mig/[0-9]*_*.sql"), ("x", "mig/README.md")],
                &[]
            ))
            .unwrap(),
            [
                ("002_a.sql".into(), "mig/002_a.sql".into()),
                ("010_b.sql".into(), "mig/010_b.sql".into()),
                ("x".into(), "mig/README.md".into()),
            ]
        );
        // The key filters by file name; "*" takes all the value matches.
        assert_eq!(keys(&cm(&[("*.md", "mig/*")], &[])).unwrap().len(), 1);
        assert_eq!(keys(&cm(&[("*", "mig/*")], &[])).unwrap().len(), 4);
        let e = keys(&cm(&[("*.sql", "mig/*.txt")], &[])).unwrap_err();
        assert!(e.contains("no file matches \"mig/*.txt\""), "{e}");
        let e = keys(&cm(&[("*.yaml", "mig/*")], &[])).unwrap_err();
        assert!(e.contains("is named \"*.yaml\" (4 matched"), "{e}");
        let e = keys(&cm(
            &[("*.sql", "mig/*.sql"), ("seed.sql", "mig/README.md")],
            &[],
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "ConfigMap m: key \"seed.sql\" is given by both files entry \"*.sql\" (glob) and files entry \"seed.sql\": give it once"
        );
        let e = keys(&cm(&[("*.sql", "mig/*.sql")], &["002_a.sql"])).unwrap_err();
        assert!(
            e.contains("given by both data and files entry \"*.sql\" (glob)"),
            "{e}"
        );
    }
}
