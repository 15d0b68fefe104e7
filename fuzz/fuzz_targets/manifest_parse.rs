//! A manifest file's text (already templated), parsed as `kprov up` and `kprov render` parse it
//! before applying: split into documents, each into an object, every bad document reported.
//! Errors are answers; a panic, a hang or a blow-up is a bug.
#![no_main]

use kprov::tasks::apply::{self, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let manifest = Manifest {
        origin: "manifests/fuzz.yaml".into(),
        text: String::from_utf8_lossy(data).into_owned(),
    };
    match apply::parse_manifests(&manifest) {
        Ok(mut objects) => {
            for o in &mut objects {
                o.default_namespace("kprov");
                let _ = o.object_ref().to_string();
                let _ = apply::is_crd(o);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
