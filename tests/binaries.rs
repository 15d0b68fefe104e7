//! Host-built binaries (kubernaut's fast path) end to end on the sandbox: a host command writes
//! a binary, a thin runtime Dockerfile copies it, and kprov skips the command when its inputs
//! are unchanged; after one image's source changes only that image is rebuilt and reloaded.
//! Real Docker builds, real containerd nodes, the API double behind the kind CLI double.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::require_docker;

/// A source tree with two images: `app`, whose runtime Dockerfile copies the binary the host
/// command `./build.sh` writes, and `side`, built from its own context.
fn write_tree(root: &Path, cluster: &str) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "profiles/hb.yaml",
        &format!(
            "service: hb\nnamespace: hb\ncluster:\n  name: {cluster}\n\
             binaries:\n  app:\n    command: [./build.sh, app/bin/app]\n    env: {{GREETING: hi}}\n\
             \x20   inputs: [\"src/*.txt\", build.sh]\n    outputs: [app/bin/app]\n\
             images:\n  app:\n    build:\n      context: app\n      binaries: [app]\n\
             \x20 side:\n    build:\n      context: side\n\
             components:\n  app:\n    manifests: [k8s/app.yaml]\n    images: [app, side]\n"
        ),
    );
    w(
        "build.sh",
        "#!/bin/sh\n# A stand-in compiler: the \"binary\" is a shell script holding the sources.\nset -eu\nmkdir -p \"$(dirname \"$1\")\"\n{ echo '#!/bin/sh'; echo \"echo $GREETING\"; cat src/*.txt | sed 's/^/# /'; } > \"$1\"\nchmod 755 \"$1\"\necho \"built $1\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("build.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Unique per run, so no image of an earlier run is a cache hit.
    w("src/main.txt", &format!("version 1 {cluster}\n"));
    w(
        "app/Dockerfile",
        &format!(
            "FROM {}\nCOPY bin/app /usr/local/bin/app\n",
            common::BASE_IMAGE
        ),
    );
    w(
        "side/Dockerfile",
        &format!("FROM {}\nCOPY note /note\n", common::BASE_IMAGE),
    );
    w("side/note", &format!("side 1 {cluster}\n"));
    w(
        "k8s/app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      containers:\n        - {name: app, image: \"{{ image.app }}\", imagePullPolicy: Never}\n        - {name: side, image: \"{{ image.side }}\", imagePullPolicy: Never}\n",
    );
}

fn outcomes(kprov: &dyn Fn() -> Command) -> Vec<(String, String)> {
    let out = kprov()
        .args(["profile", "--format", "json"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn outcome(all: &[(String, String)], id: &str) -> String {
    all.iter()
        .find(|(i, _)| i == id)
        .map(|(_, o)| o.clone())
        .unwrap_or_else(|| panic!("no task {id} in {all:?}"))
}

#[test]
fn a_host_built_binary_feeds_its_image_and_only_what_changed_is_rebuilt_and_reloaded() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::unique_name("hostbuild");
    write_tree(dir.path(), &cluster);
    let d = dir.path();
    let kprov = || common::sandbox_kprov(&host, d, &d.join("profiles"), d);
    struct Down<'a>(&'a dyn Fn() -> Command, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)()
                .args(["down", "--cluster", &self.1])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _down = Down(&kprov, cluster.clone());
    let up = |extra: &[&str]| {
        let out = kprov()
            .args(["up", "--service", "hb"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "kprov up failed:\n{stderr}");
        stderr
    };

    let stderr = up(&[]);
    let first = outcomes(&kprov);
    assert_eq!(outcome(&first, "binary:app"), "succeeded", "{first:?}");
    assert_eq!(outcome(&first, "build:app"), "succeeded");
    // The command's output is the task's log.
    let logs: Vec<String> = walkdir::WalkDir::new(dir.path().join(".kprov/logs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "binary-app.log")
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        logs.len() == 1 && logs[0].contains("built app/bin/app"),
        "{logs:?}\n{stderr}"
    );
    let binary = std::fs::read_to_string(dir.path().join("app/bin/app")).unwrap();
    assert!(
        binary.contains("echo hi") && binary.contains("# version 1"),
        "{binary}"
    );

    // Nothing changed: the command does not run, nothing is rebuilt or reloaded.
    up(&["--reuse"]);
    let warm = outcomes(&kprov);
    for id in [
        "binary:app",
        "build:app",
        "build:side",
        "load:app",
        "load:side",
    ] {
        assert_eq!(outcome(&warm, id), "cached", "{id}: {warm:?}");
    }

    // The binary's input changed: it runs again, and only its image is rebuilt and reloaded.
    std::fs::write(
        dir.path().join("src/main.txt"),
        format!("version 2 {cluster}\n"),
    )
    .unwrap();
    up(&["--reuse"]);
    let changed = outcomes(&kprov);
    for id in ["binary:app", "build:app", "load:app"] {
        assert_eq!(outcome(&changed, id), "succeeded", "{id}: {changed:?}");
    }
    for id in ["build:side", "load:side"] {
        assert_eq!(outcome(&changed, id), "cached", "{id}: {changed:?}");
    }

    // Only the other image's source changed: the command is skipped, only that image moves.
    std::fs::write(dir.path().join("side/note"), format!("side 2 {cluster}\n")).unwrap();
    up(&["--reuse"]);
    let side = outcomes(&kprov);
    for id in ["binary:app", "build:app", "load:app"] {
        assert_eq!(outcome(&side, id), "cached", "{id}: {side:?}");
    }
    for id in ["build:side", "load:side"] {
        assert_eq!(outcome(&side, id), "succeeded", "{id}: {side:?}");
    }
}

/// A failing host command fails its task with the command, its status and the log's tail,
/// and the image that copies its output is never built.
#[test]
fn a_failing_host_command_names_its_status_and_log_and_nothing_is_built_from_it() {
    let host = require_docker!();
    common::ensure_test_images(&host);
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::unique_name("hostbuild-fail");
    write_tree(dir.path(), &cluster);
    std::fs::write(
        dir.path().join("build.sh"),
        "#!/bin/sh\necho 'main.go:3: undefined: frobnicate' >&2\nexit 3\n",
    )
    .unwrap();
    let d = dir.path();
    let out = common::sandbox_kprov(&host, d, &d.join("profiles"), d)
        .args(["up", "--service", "hb"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed: binary:app")
            && stderr.contains("exited with exit status: 3")
            && stderr.contains("undefined: frobnicate")
            && stderr.contains("binary-app.log"),
        "{stderr}"
    );
    assert!(!stderr.contains("built localhost/kprov/app"), "{stderr}");
}
