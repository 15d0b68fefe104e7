//! Two environments on one host: `cargo bench --bench environments` (needs an engine:
//! `eval "$(scripts/docker-up)"`, and the sandbox images: `scripts/images`,
//! `scripts/prepare-sandbox`).
//!
//! Prints, side by side in one run: two demo environments (different clusters, one shared
//! kubeconfig, state and lock directory) brought up one after the other vs both at once, and
//! the ratio (at once / one after the other). The images are built before the first
//! measurement, so both measure what a CI job running two suites repeats: cluster, loads,
//! applies and the wait. `KPROV_BENCH_REPS` (default 2) repeats it; every repetition is
//! printed and the ratio compares medians. Every cluster is taken down after its measurement,
//! also when one fails.

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct World {
    dir: tempfile::TempDir,
    host: String,
}

impl World {
    fn new(host: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(common::repo_root().join("profiles/demo.yaml")).unwrap();
        for twin in ["a", "b"] {
            let profiles = dir.path().join(format!("profiles-{twin}"));
            std::fs::create_dir_all(&profiles).unwrap();
            let name = format!("kp-bench-env-{}-{twin}", std::process::id());
            let t = text.replace("  name: kprov-demo\n", &format!("  name: {name}\n"));
            std::fs::write(profiles.join("demo.yaml"), t).unwrap();
        }
        World {
            dir,
            host: host.into(),
        }
    }

    fn kprov(&self, twin: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kprov"));
        let d = self.dir.path();
        c.current_dir(common::repo_root())
            .env("DOCKER_HOST", &self.host)
            .env("KPROV_KIND", common::repo_root().join("tests/bin/kind"))
            .env("KUBECONFIG", d.join("kubeconfig"))
            .env("KPROV_LOCK_DIR", d.join("locks"))
            .env("KPROV_PROFILES", d.join(format!("profiles-{twin}")))
            .env("KPROV_STATE", d.join(".kprov"))
            .env("KPROV_SOURCE", common::repo_root())
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn up(&self, twin: &str) -> Child {
        self.kprov(twin)
            .args(["up", "--service", "demo"])
            .spawn()
            .unwrap()
    }

    fn down(&self) {
        for twin in ["a", "b"] {
            let _ = self
                .kprov(twin)
                .args(["down", "--service", "demo"])
                .output();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.down();
    }
}

fn finish(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let Some(host) = common::docker_host() else {
        eprintln!("no Docker engine: eval \"$(scripts/docker-up)\" first");
        std::process::exit(1);
    };
    common::ensure_test_images(&host);
    let reps: usize = std::env::var("KPROV_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let world = World::new(&host);
    // Build the images once, so the measurements compare environments, not builds.
    finish(world.up("a"), "warm-up");
    world.down();
    let (mut apart, mut together) = (Vec::new(), Vec::new());
    for rep in 1..=reps {
        let t = Instant::now();
        finish(world.up("a"), "a alone");
        finish(world.up("b"), "b alone");
        let seq = t.elapsed();
        world.down();
        let t = Instant::now();
        let (a, b) = (world.up("a"), world.up("b"));
        finish(a, "a at once");
        finish(b, "b at once");
        let par = t.elapsed();
        world.down();
        println!(
            "rep {rep}: one after the other {:>6.1} s   both at once {:>6.1} s",
            seq.as_secs_f64(),
            par.as_secs_f64()
        );
        apart.push(seq);
        together.push(par);
    }
    let (seq, par) = (median(apart), median(together));
    println!(
        "two demo environments: one after the other {:.1} s, both at once {:.1} s, ratio {:.2}",
        seq.as_secs_f64(),
        par.as_secs_f64(),
        par.as_secs_f64() / seq.as_secs_f64()
    );
}
