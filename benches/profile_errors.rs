//! Reading a large profile that holds one error: the error must be found and located
//! (file:line:column and field) in time linear in the profile's size.
//!
//! `cargo bench --bench profile_errors` prints, for profiles of about 0.5, 1 and 5 MB, the
//! time to load and check the profile with one error in its middle entry, the time to read
//! the same profile without the error, and their ratio; then the time the YAML parser alone
//! takes to read the same text (serde-saphyr into an untyped value: no positions, no model),
//! and the one-error time as a multiple of it. Figures, not assertions: the machine is shared.

use std::{path::Path, time::Instant};

/// A profile with `components` components (about 140 bytes each), ten external images, and,
/// when `bad`, one unknown field in the middle component.
fn profile(components: usize, bad: bool) -> String {
    let mut out = String::from("service: big\nimages:\n");
    for i in 0..10 {
        out += &format!("  img{i}:\n    external: registry.local/img{i}:v1\n");
    }
    out += "components:\n";
    for i in 0..components {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("comp{}", i - 1)
        };
        out += &format!(
            "  comp{i}:\n    manifests: [m.yaml]\n    images: [img{}]\n    dependsOn: [{deps}]\n    values:\n      replicas: \"{}\"\n    ready:\n      timeout: 5m\n",
            i % 10,
            i % 3
        );
        if bad && i == components / 2 {
            out += "    colour: red\n";
        }
    }
    out
}

/// serde-saphyr's node budget raised to the text's size, as kprov allows a profile.
fn budget(text: &str) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = text.len();
    budget.max_events = 2 * text.len();
    options.budget = Some(budget);
    options
}

fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let source = dir.path();
    let profiles = source.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        source.join("m.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n",
    )
    .unwrap();
    println!(
        "profile size | one error: load+check | error-free: read | ratio | YAML parser alone | one error / parser | the error"
    );
    for components in [3_300, 6_600, 33_000] {
        let (ok, bad) = (profile(components, false), profile(components, true));
        std::fs::write(profiles.join("ok.yaml"), &ok).unwrap();
        std::fs::write(profiles.join("bad.yaml"), &bad).unwrap();
        let t = Instant::now();
        kprov::profile::load(&profiles, "ok").expect("the error-free profile reads");
        let clean = t.elapsed();
        let t = Instant::now();
        let errors = kprov::profile::load_checked(&profiles, "bad", Path::new(source))
            .expect_err("the profile with an error fails");
        let failed = t.elapsed();
        assert_eq!(errors.0.len(), 1, "{errors}");
        let t = Instant::now();
        let untyped: serde_json::Value =
            serde_saphyr::from_str_with_options(&bad, budget(&bad)).expect("the text is YAML");
        let parser = t.elapsed();
        drop(untyped);
        let e = &errors.0[0];
        assert!(
            e.line.is_some() && e.column.is_some() && e.field.is_some(),
            "{e}"
        );
        println!(
            "{:>8.2} MB | {:>10.3} s | {:>10.3} s | {:>5.2} | {:>10.3} s | {:>5.2} | {}",
            bad.len() as f64 / 1e6,
            seconds(failed),
            seconds(clean),
            seconds(failed) / seconds(clean),
            seconds(parser),
            seconds(failed) / seconds(parser),
            e.to_string()
                .replace(&profiles.display().to_string(), "profiles"),
        );
    }
}
