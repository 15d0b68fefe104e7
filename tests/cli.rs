//! The binary as users meet it: help text, exit codes, plan output, profile errors.

use std::path::Path;

use assert_cmd::Command;

fn kprov() -> Command {
    let mut c = Command::cargo_bin("kprov").unwrap();
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KPROV_PROFILES")
        .env_remove("KPROV_SOURCE")
        .env("NO_COLOR", "1");
    c
}

fn stdout(c: &mut Command) -> String {
    let out = c.output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_of_every_command_has_examples() {
    for cmd in [
        "up",
        "down",
        "plan",
        "validate",
        "services",
        "profile",
        "render",
        "status",
        "coverage",
        "cache",
        "completions",
    ] {
        let text = stdout(kprov().args([cmd, "--help"]));
        assert!(
            text.contains("Example"),
            "{cmd} --help has no examples:\n{text}"
        );
        insta::assert_snapshot!(format!("help_{cmd}"), text);
    }
    insta::assert_snapshot!("help", stdout(kprov().arg("--help")));
}

#[test]
fn a_usage_error_exits_2() {
    kprov().args(["up"]).assert().code(2);
    kprov()
        .args(["plan", "--service", "demo", "--strategy", "fastest"])
        .assert()
        .code(2);
}

#[test]
fn an_unknown_service_exits_2_and_names_the_profiles() {
    let out = kprov()
        .args(["plan", "--service", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no profile for service \"nope\"") && err.contains("demo"),
        "{err}"
    );
}

#[test]
fn the_demo_profile_validates() {
    kprov()
        .args(["validate", "--service", "demo"])
        .assert()
        .code(0);
}

#[test]
fn plan_json_is_one_object_with_stable_ids() {
    let state = tempfile::tempdir().unwrap();
    let text = stdout(
        kprov()
            .args([
                "plan",
                "--service",
                "demo",
                "--format",
                "json",
                "--jobs",
                "8",
                "--build-jobs",
                "2",
                "--state",
            ])
            .arg(state.path()),
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["service"], "demo");
    assert_eq!(v["strategy"], "dag");
    let ids: Vec<&str> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for id in [
        "build:api",
        "pull:store",
        "cluster:create",
        "apply:crds",
        "wait:crds",
        "apply:config",
        "load:api",
        "deploy:api",
        "hook:migrations",
        "wait:ready",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(
        v["critical_path"].as_array().unwrap().last().unwrap(),
        "wait:ready"
    );
    insta::assert_snapshot!("plan_demo_json", text);
}

#[test]
fn plan_renders_text_dot_and_mermaid() {
    let state = tempfile::tempdir().unwrap();
    for format in ["text", "dot", "mermaid"] {
        let text = stdout(
            kprov()
                .args([
                    "plan",
                    "--service",
                    "demo",
                    "--jobs",
                    "8",
                    "--build-jobs",
                    "2",
                    "--format",
                    format,
                    "--state",
                ])
                .arg(state.path()),
        );
        insta::assert_snapshot!(format!("plan_demo_{format}"), text);
    }
}

#[test]
fn the_dag_estimate_is_below_the_hybrid_estimate_for_the_demo() {
    let state = tempfile::tempdir().unwrap();
    let est = |s: &str| {
        let text = stdout(
            kprov()
                .args([
                    "plan",
                    "--service",
                    "demo",
                    "--format",
                    "json",
                    "--build-jobs",
                    "2",
                    "--strategy",
                    s,
                    "--state",
                ])
                .arg(state.path()),
        );
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["estimated_makespan_ms"]
            .as_u64()
            .unwrap()
    };
    let (dag, hybrid, seq) = (est("dag"), est("hybrid"), est("sequential"));
    assert!(
        dag < hybrid && hybrid <= seq,
        "dag {dag}, hybrid {hybrid}, sequential {seq}"
    );
}

/// Write `profiles/<name>.yaml` under `dir`, run kprov with `args` against that profiles
/// folder and `dir` as the source, and return the exit code and stderr.
fn run_on_profile(dir: &Path, name: &str, profile: &str, args: &[&str]) -> (Option<i32>, String) {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join(format!("{name}.yaml")), profile).unwrap();
    let out = kprov()
        .args(args)
        .arg("--profiles")
        .arg(&profiles)
        .arg("--source")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_broken_profile_lists_every_error_with_its_position_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_on_profile(
        dir.path(),
        "bad",
        "service: bad\nimages:\n  a:\n    build:\n      context: nowhere\n  b:\n    external: x\n    colour: red\ncomponents:\n  c:\n    manifests: [missing.yaml]\n    images: [zzz]\n    dependsOn: [ghost]\n",
        &["validate"],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bad.yaml:8:5: images.b.colour: unknown field `colour`"),
        "{err}"
    );
    // Schema errors stop before reference checks: fix the schema error and see the rest.
    let (code, err) = run_on_profile(
        dir.path(),
        "bad",
        "service: bad\nimages:\n  a:\n    build:\n      context: nowhere\ncomponents:\n  c:\n    manifests: [missing.yaml]\n    images: [zzz]\n    dependsOn: [ghost]\n",
        &["validate"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("4 errors"), "{err}");
    assert!(
        err.contains("bad.yaml:5:7: images.a.build.context: build context"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:8:5: components.c.manifests:")
            && err.contains("missing.yaml does not exist"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:9:5: components.c.images: unknown image \"zzz\""),
        "{err}"
    );
    assert!(
        err.contains(
            "bad.yaml:10:5: components.c.dependsOn: unknown component, hook or step \"ghost\""
        ),
        "{err}"
    );
}

#[test]
fn a_dependency_cycle_is_reported_with_its_members() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let (code, err) = run_on_profile(
        dir.path(),
        "loop",
        "components:\n  a: {manifests: [m.yaml], dependsOn: [b]}\n  b: {manifests: [m.yaml], dependsOn: [c]}\n  c: {manifests: [m.yaml], dependsOn: [a]}\n",
        &["plan", "--service", "loop"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("dependency cycle: a -> b -> c -> a"), "{err}");
}

#[test]
fn profile_of_a_missing_run_exits_2_with_a_clear_message() {
    let state = tempfile::tempdir().unwrap();
    let out = kprov()
        .args(["profile", "--state"])
        .arg(state.path().join(".kprov"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());
}

#[test]
fn completions_are_printed_for_bash() {
    let text = stdout(kprov().args(["completions", "bash"]));
    assert!(
        text.contains("kprov") && text.contains("complete"),
        "{text}"
    );
}

/// Run kprov with stdout (or stderr) writing into a pipe whose reader is already gone.
#[cfg(unix)]
fn into_closed_pipe(args: &[&str], stderr: bool) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("kprov"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KPROV_PROFILES")
        .env_remove("KPROV_SOURCE")
        .args(args);
    if stderr {
        c.stderr(writer).stdout(std::process::Stdio::piped());
    } else {
        c.stdout(writer).stderr(std::process::Stdio::piped());
    }
    c.output().unwrap()
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_quietly_with_the_commands_own_status() {
    let state = tempfile::tempdir().unwrap();
    let state = state.path().to_str().unwrap();
    // `kprov plan --service demo | head -1`: the report was being written, so 0.
    for args in [
        &["plan", "--service", "demo", "--state", state][..],
        &[
            "plan",
            "--service",
            "demo",
            "--format",
            "json",
            "--state",
            state,
        ],
        &["services"],
        &["completions", "bash"],
        &["--help"],
    ] {
        let out = into_closed_pipe(args, false);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `kprov validate 2>&1 | head` of an invalid profile: still 2, the outcome it reached.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "colour: red\n").unwrap();
    let profiles = dir.path().to_str().unwrap();
    let out = into_closed_pipe(&["validate", "--profiles", profiles], true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn state_and_the_default_agree_on_where_records_live() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runs/20261123T004012Z-aianalysis.json");
    // The default state dir, `.kprov` under the current directory.
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join(".kprov/runs")).unwrap();
    std::fs::copy(
        &fixture,
        project
            .path()
            .join(".kprov/runs/20261123T004012Z-aianalysis.json"),
    )
    .unwrap();
    // The same layout under any `--state DIR`.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(elsewhere.path().join("runs")).unwrap();
    std::fs::copy(
        &fixture,
        elsewhere
            .path()
            .join("runs/20261123T004012Z-aianalysis.json"),
    )
    .unwrap();
    let default = kprov()
        .current_dir(project.path())
        .args(["profile", "latest", "--format", "json"])
        .output()
        .unwrap();
    let explicit = kprov()
        .current_dir(project.path())
        .args(["profile", "latest", "--format", "json", "--state"])
        .arg(elsewhere.path())
        .output()
        .unwrap();
    let named = kprov()
        .current_dir(project.path())
        .args(["profile", "latest", "--format", "json", "--state", ".kprov"])
        .output()
        .unwrap();
    for out in [&default, &explicit, &named] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(default.stdout, explicit.stdout);
    assert_eq!(default.stdout, named.stdout);
}

#[test]
fn a_first_estimate_comes_from_sizes_not_one_constant_per_kind() {
    // The demo's cold run takes ~15 s here; the defaults per kind estimated 2m39s.
    let state = tempfile::tempdir().unwrap();
    let text = stdout(
        kprov()
            .args(["plan", "--service", "demo", "--format", "json", "--state"])
            .arg(state.path()),
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ms = v["estimated_makespan_ms"].as_u64().unwrap();
    assert!((10_000..=40_000).contains(&ms), "estimated {ms} ms");
}

/// `kprov render`: every object of the demo in apply order, run-time values as placeholders
/// naming their producers (the CA, a token, a Job's output, built images, host ports).
#[test]
fn render_shows_every_object_in_apply_order_with_run_time_placeholders() {
    let out = kprov()
        .args(["render", "--service", "demo"])
        .env("HOME", "/home/kprov")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for placeholder in [
        "<image.api from build:api>",
        "<runtime.caBundleBase64 from apply:config>",
        "<runtime.api-uid from value:api-uid>",
        "<runtime.schema-version from value:schema-version>",
    ] {
        assert!(text.contains(placeholder), "{placeholder} in:\n{text}");
    }
    let tasks: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let first = |t: &str| tasks.iter().position(|x| *x == t).unwrap();
    assert!(first("apply:crds") < first("apply:config"));
    assert!(first("hook:migrations") < first("deploy:api"));
    assert!(first("deploy:api") < first("step:seed-widgets"));
    insta::assert_snapshot!("render_demo_yaml", text);
    let json = stdout(kprov().args(["render", "--service", "demo", "--format", "json"]));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), tasks.len());
}

/// Registry mode with the nodes pulling: nothing is built or loaded, each built image is
/// `R/<name>:T`, and its containers are rendered `IfNotPresent` (the manifests say `Never`).
#[test]
fn registry_images_pulled_by_the_nodes_are_planned_without_builds_and_rendered_if_not_present() {
    let registry = [
        "--image-registry",
        "registry.example:5000/kubernaut",
        "--image-tag",
        "pr-7",
        "--registry-pull",
        "nodes",
    ];
    let out = kprov()
        .args(["render", "--service", "demo", "--format", "json"])
        .args(registry)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = objects
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["object"])
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "api")
        .expect("the api Deployment");
    let c = &api["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example:5000/kubernaut/api:pr-7");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");

    let plan = stdout(
        kprov()
            .args(["plan", "--service", "demo", "--format", "json"])
            .args(registry),
    );
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let ids: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for gone in ["build:api", "load:api", "build:worker", "load:worker"] {
        assert!(!ids.contains(&gone), "{gone} in {ids:?}");
    }
    // The third-party image is still pulled and loaded as before.
    assert!(
        ids.contains(&"pull:store") && ids.contains(&"load:store"),
        "{ids:?}"
    );
}

/// A cluster kprov does not own gets no loads: a profile whose built images would have no way
/// into its nodes is refused before anything starts, naming them and the way out.
#[test]
fn an_existing_cluster_without_a_registry_for_the_built_images_is_refused_before_starting() {
    let out = kprov()
        .args(["up", "--service", "demo", "--context", "kind-elsewhere"])
        .env("KPROV_STATE", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("image(s) api, migrate, worker would be built here")
            && stderr.contains("--image-registry R --image-tag T --registry-pull nodes"),
        "{stderr}"
    );
}

#[test]
fn profile_merge_reads_files_and_directories_warns_of_what_it_skips_and_writes_the_summary() {
    let runs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junit.json"), "{\"tests\": 3}").unwrap();
    let summary = dir.path().join("summary.md");
    let out = kprov()
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["profile", "--format", "markdown", "--merge"])
        .arg(runs.join("real"))
        .arg(runs.join("20261122T221847Z-signalprocessing.json"))
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "warning: skipped {}: not a run record (it has no schema_version and run_id)\n",
            dir.path().join("junit.json").display()
        )
    );
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.starts_with("### ❌ kprov: 4 runs of 2 services: 3 succeeded, 1 failed"),
        "{md}"
    );
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        format!("{md}\n")
    );

    // A bad file named explicitly: exit 2, the file named.
    let bad = dir.path().join("junit.json");
    let out = kprov()
        .env_remove("GITHUB_STEP_SUMMARY")
        .args(["profile", "--merge"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("error: parse run record {}:", bad.display())),
        "{stderr}"
    );
    // --merge is its own report: not with a run, --compare or --what-if.
    for other in [
        &["latest"][..],
        &["--compare", "latest"],
        &["--what-if", "dag"],
    ] {
        let out = kprov()
            .arg("profile")
            .args(other)
            .args(["--merge", "x.json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot be used with"),
            "{other:?}: {stderr}"
        );
    }
}
