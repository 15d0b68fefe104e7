//! Checks of `config.configMaps[].files`: each file exists; a glob entry (`"*.sql":
//! migrations/*.sql`) takes at least one file, and no key comes from two places. Errors of a
//! glob entry are placed at its own line, in the file (profile or include) that holds it.

use std::collections::BTreeMap;

use super::{Validator, secrets::find_item};
use crate::profile::{
    ConfigMapSpec, ProfileError,
    config_maps::{is_glob, key_clash},
};

impl Validator<'_> {
    /// An error about `files` entry `key` of ConfigMap `cm`, at its line.
    fn config_map_err(&mut self, cm: &ConfigMapSpec, key: &str, message: String) {
        let found = self.profile.files.iter().find_map(|f| {
            let tree = f.tree.as_ref()?;
            let (i, item) = find_item(tree, "configMaps", &cm.name, cm.namespace.as_deref())?;
            let (k, _) = item.get("files")?.1.get(key)?;
            Some((f.path.clone(), i, (k.line, k.column)))
        });
        let Some((file, i, pos)) = found else {
            return self.err("", None, &["config", "configMaps"], message);
        };
        let head = format!("config.configMaps[{i}]");
        self.errors.push(ProfileError::placed(
            &file,
            Some(pos),
            &[head.as_str(), "files", key],
            message,
        ));
    }

    pub(super) fn config_maps(&mut self) {
        let entries = self.profile.spec.config.config_maps.clone();
        for cm in &entries {
            let mut from: BTreeMap<String, &str> = BTreeMap::new();
            for (key, file) in &cm.files {
                if !is_glob(key) {
                    if is_glob(file) {
                        let m = format!(
                            "{file:?} is a glob: its key must be one too (\"*\" takes each file under its own name)"
                        );
                        self.config_map_err(cm, key, m);
                    } else {
                        self.file("", None, &["config", "configMaps"], file);
                    }
                }
                let taken = match self.profile.config_map_entry(self.source, key, file) {
                    Ok(taken) => taken,
                    Err(e) => {
                        self.config_map_err(cm, key, e);
                        continue;
                    }
                };
                for (k, _) in taken {
                    if let Some(m) = key_clash(cm, &from, key, &k) {
                        self.config_map_err(cm, key, m);
                    }
                    from.insert(k, key);
                }
            }
        }
    }
}
