//! Checks of `binaries:` (host-built binaries) and of the images that copy them: a command,
//! inputs that exist, outputs inside `--source`, and every named binary defined.

use super::Validator;

impl Validator<'_> {
    pub(super) fn binaries(&mut self) {
        let spec = &self.profile.spec;
        for (name, b) in &spec.binaries {
            let n = Some(name.as_str());
            if b.command.is_empty() || b.command[0].is_empty() {
                self.err(
                    "binaries",
                    n,
                    &["binaries", name, "command"],
                    "a command (program and arguments) is needed".into(),
                );
            }
            if b.outputs.is_empty() {
                self.err(
                    "binaries",
                    n,
                    &["binaries", name, "outputs"],
                    "at least one output file is needed (what the image copies)".into(),
                );
            }
            for o in &b.outputs {
                let p = std::path::Path::new(o);
                if p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                    self.err(
                        "binaries",
                        n,
                        &["binaries", name, "outputs"],
                        format!("output {o:?} must be a path inside --source"),
                    );
                }
            }
            for pattern in &b.inputs {
                if let Err(e) = self.profile.expand(self.source, pattern) {
                    self.err("binaries", n, &["binaries", name, "inputs"], e);
                }
            }
        }
        for (image, i) in &spec.images {
            for b in i.build.iter().flat_map(|b| &b.binaries) {
                if !spec.binaries.contains_key(b)
                    && !self.profile.broken.contains(&format!("binaries.{b}"))
                {
                    let known: Vec<&str> = spec.binaries.keys().map(String::as_str).collect();
                    self.err(
                        "images",
                        Some(image),
                        &["images", image, "build", "binaries"],
                        format!("unknown binary {b:?} (binaries: {})", known.join(", ")),
                    );
                }
            }
        }
    }
}
