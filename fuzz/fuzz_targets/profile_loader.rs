//! A profile file's text, read as `kprov validate` reads it: parsed into its located tree and
//! model (every syntax and schema error), then checked (references, cycles, names, ports) against
//! an empty source tree. Errors are answers; a panic, a hang or a blow-up is a bug.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kprov::profile::{self, Profile, SourceFile, load};
use libfuzzer_sys::fuzz_target;

/// `<tmp>/kprov-fuzz/profiles/fuzz.yaml`, never written: `kprov:` paths resolve to the empty
/// `<tmp>/kprov-fuzz`, and so does the source tree.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join("kprov-fuzz");
        std::fs::create_dir_all(root.join("profiles")).expect("temp dir");
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = root().join("profiles/fuzz.yaml");
    // `include:` is left unresolved: reading other files is load_merged's, not the parser's.
    let parsed = load::parse_text(&path, &text);
    let mut errors = parsed.errors;
    let checked = parsed.tree.is_some();
    let profile = Profile {
        service: parsed
            .profile
            .service
            .clone()
            .unwrap_or_else(|| "fuzz".into()),
        path: path.clone(),
        spec: parsed.profile,
        origins: Default::default(),
        files: vec![SourceFile::new(path, parsed.text, parsed.tree)],
        broken: parsed.broken,
    };
    if checked {
        errors.extend(profile::validate(&profile, root()));
    }
    for e in &errors {
        let _ = e.to_string();
    }
});
