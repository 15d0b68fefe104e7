//! `kprov validate` on broken profiles: every error, each at its file:line:column and field,
//! in kprov's own words, found in time linear in the profile's size.

use std::path::Path;

use assert_cmd::Command;

/// Write `profiles/<name>.yaml` (and `m.yaml`, a manifest) under `dir`, run `kprov validate`
/// on it, and return the exit code and the error lines (paths relative to `dir`).
fn validate(dir: &Path, name: &str, profile: &str) -> (Option<i32>, Vec<String>) {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join(format!("{name}.yaml")), profile).unwrap();
    std::fs::write(
        dir.join("m.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n",
    )
    .unwrap();
    let out = Command::cargo_bin("kprov")
        .unwrap()
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("HOME", dir)
        .args([
            "validate",
            "--service",
            name,
            "--profiles",
            "profiles",
            "--source",
            ".",
        ])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(str::to_string)
        .collect();
    (out.status.code(), errors)
}

#[test]
fn a_schema_error_does_not_hide_the_semantic_errors_of_other_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "mixed",
        "images:\n  api:\n    build: {context: nowhere}\n  bad:\n    externl: x\ncomponents:\n  a:\n    manifests: [m.yaml]\n    colour: red\n  b:\n    manifests: [m.yaml]\n    images: [zzz, bad]\n    dependsOn: [a, ghost]\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/mixed.yaml:5:5: images.bad.externl: unknown field `externl` (fields here: build, external, repository)",
            "profiles/mixed.yaml:9:5: components.a.colour: unknown field `colour` (fields here: manifests, images, dependsOn, ready, values)",
            "profiles/mixed.yaml:3:13: images.api.build.context: build context ./nowhere is not a directory",
            "profiles/mixed.yaml:12:5: components.b.images: unknown image \"zzz\" (images: api)",
            "profiles/mixed.yaml:13:5: components.b.dependsOn: unknown component, hook or step \"ghost\"",
        ],
        "a broken entry (images.bad, components.a) is no unknown reference"
    );
}

#[test]
fn a_dependency_cycle_names_the_line_of_an_entry_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "loop",
        "components:\n  b:\n    manifests: [m.yaml]\n    dependsOn: [a]\n  a:\n    manifests: [m.yaml]\n    dependsOn: [c]\nhooks:\n  c:\n    manifests: [m.yaml]\n    after: [b]\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        ["profiles/loop.yaml:7:5: components.a.dependsOn: dependency cycle: a -> c -> b -> a"]
    );
}

#[test]
fn an_include_cycle_names_the_include_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("profiles/stacks")).unwrap();
    std::fs::write(
        dir.path().join("profiles/stacks/one.yaml"),
        "description: one\ninclude:\n  - two.yaml\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("profiles/stacks/two.yaml"),
        "include: [one.yaml]\n",
    )
    .unwrap();
    let (code, errors) = validate(
        dir.path(),
        "svc",
        "include: [stacks/one.yaml]\ncomponents:\n  a: {manifests: [m.yaml]}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("profiles/stacks/two.yaml:1:11: include[0]: include cycle: ")
            && errors[0].ends_with("stacks/one.yaml"),
        "{errors:?}"
    );
}

#[test]
fn a_bad_yaml_error_names_the_right_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    // A block of the wrong type: serde-saphyr places it at 6:7, on the block's first key,
    // which read as `components.a.dependsOn.x`, one line late.
    let (code, errors) = validate(
        dir.path(),
        "types",
        "components:\n  a:\n    manifests: [m.yaml]\n    dependsOn:\n      x: y\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        ["profiles/types.yaml:4:5: components.a.dependsOn: expected a list, found a mapping"]
    );
    // A line indented less than its mapping: the field it is in, not a guess.
    let (_, errors) = validate(
        dir.path(),
        "indent",
        "components:\n  a:\n    manifests: [m.yaml]\n   images: [x]\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("profiles/indent.yaml:4:4: components.a: this line is not indented"),
        "{errors:?}"
    );
}

#[test]
fn cluster_names_follow_kinds_rules() {
    let dir = tempfile::tempdir().unwrap();
    let with =
        |cluster: &str| format!("cluster:\n{cluster}components:\n  a: {{manifests: [m.yaml]}}\n");
    let (code, errors) = validate(dir.path(), "upper", &with("  name: My_Cluster\n"));
    assert_eq!(code, Some(2));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "profiles/upper.yaml:2:3: cluster.name: cluster name \"My_Cluster\" must be lowercase"
        ),
        "{errors:?}"
    );
    // 50 characters fit `<name>-control-plane` in 64; 51 do not.
    let fifty = "c".repeat(50);
    let (code, errors) = validate(dir.path(), "fifty", &with(&format!("  name: {fifty}\n")));
    assert_eq!((code, errors.len()), (Some(0), 0), "{errors:?}");
    let (code, errors) = validate(dir.path(), "long", &with(&format!("  name: {fifty}x\n")));
    assert_eq!(code, Some(2));
    assert!(
        errors[0].contains(&format!("its node container {fifty}x-control-plane has 65 characters, more than 64 (a cluster name of at most 50 fits)")),
        "{errors:?}"
    );
    // Three control planes: `<name>-control-plane3` is the longest.
    let nodes = "  nodes: [{role: control-plane}, {role: control-plane}, {role: control-plane}]\n";
    let (code, errors) = validate(
        dir.path(),
        "ha",
        &with(&format!("  name: {fifty}\n{nodes}")),
    );
    assert_eq!(code, Some(2));
    assert!(
        errors[0].contains("-control-plane3 has 65 characters"),
        "{errors:?}"
    );
    // The default name, kprov-<service>, is checked too.
    let service = "s".repeat(45);
    let (code, errors) = validate(
        dir.path(),
        &service,
        "components:\n  a: {manifests: [m.yaml]}\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        errors[0].contains("(kprov-<service>, the default) is too long"),
        "{errors:?}"
    );
}

#[test]
fn an_empty_profile_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty", ""), ("comments", "# todo\n"), ("braces", "{}\n")] {
        let (code, errors) = validate(dir.path(), name, text);
        assert_eq!(code, Some(2), "{name}");
        assert_eq!(
            errors,
            [format!(
                "profiles/{name}.yaml: the profile is empty: it needs at least one section (components, hooks, images, …)"
            )]
        );
    }
}

#[test]
fn messages_are_kprovs_own_words() {
    let dir = tempfile::tempdir().unwrap();
    let (_, errors) = validate(
        dir.path(),
        "dup",
        "components:\n  a: {manifests: [m.yaml]}\n  a: {manifests: [m.yaml]}\n",
    );
    assert_eq!(
        errors,
        ["profiles/dup.yaml:3:3: components.a: `a` is given twice (first on line 2)"]
    );
    let (_, errors) = validate(
        dir.path(),
        "docs",
        "components:\n  a: {manifests: [m.yaml]}\n---\nhooks: {}\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("a profile is one YAML document, but `---` starts another one here"),
        "{errors:?}"
    );
    for e in errors {
        assert!(!e.contains("from_str") && !e.contains("Options"), "{e}");
    }
}

/// A profile of `components` entries, one of which has an unknown field when `bad`.
fn large(components: usize, bad: bool) -> String {
    let mut out = String::from("service: big\ncomponents:\n");
    for i in 0..components {
        out += &format!("  c{i}:\n    manifests: [m.yaml]\n    values: {{replicas: \"1\"}}\n");
        if bad && i == components / 2 {
            out += "    colour: red\n";
        }
    }
    out
}

#[test]
fn one_error_in_a_large_profile_costs_about_one_more_read() {
    // Was: each entry re-parsed with the rest of the file blanked, quadratic (a 0.85 MB
    // profile took 16 s). Now one parse, then only the entries read again.
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(dir.path().join("m.yaml"), "kind: ConfigMap\n").unwrap();
    std::fs::write(profiles.join("ok.yaml"), large(8_000, false)).unwrap();
    std::fs::write(profiles.join("bad.yaml"), large(8_000, true)).unwrap();
    let time = |f: &dyn Fn()| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let clean = time(&|| {
        kprov::profile::load(&profiles, "ok").unwrap();
    });
    let failed = time(&|| {
        let e = kprov::profile::load(&profiles, "bad").unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].line, Some(3 * 4_000 + 6), "{e}");
    });
    // Generous: the machine is shared. The quadratic reader was hundreds of times slower.
    assert!(
        failed < 10.0 * clean.max(0.05),
        "with one error {failed:.3}s, without {clean:.3}s"
    );
}

#[test]
fn a_cluster_registry_other_than_local_is_named_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "reg",
        "service: reg\ncluster:\n  registry: ghcr.io\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("reg.yaml:3:")
            && e.contains("cluster.registry")
            && e.contains("must be local")),
        "{errors:?}"
    );
}

#[test]
fn a_component_and_a_hook_may_follow_a_step_and_a_cycle_through_it_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "after",
        "components:\n  gateway:\n    manifests: [m.yaml]\n    dependsOn: [seed]\nhooks:\n  h:\n    manifests: [m.yaml]\n    after: [seed]\nsteps:\n  seed:\n    apply: [m.yaml]\n",
    );
    assert_eq!((code, errors.len()), (Some(0), 0), "{errors:?}");
    let (code, errors) = validate(
        dir.path(),
        "loop",
        "components:\n  gateway:\n    manifests: [m.yaml]\n    dependsOn: [seed]\nsteps:\n  seed:\n    after: [gateway]\n    apply: [m.yaml]\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/loop.yaml:4:5: components.gateway.dependsOn: dependency cycle: gateway -> seed -> gateway"
        ]
    );
}

#[test]
fn a_cycle_through_a_value_a_template_uses_is_found_at_the_first_members_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("uses.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\ndata: {id: \"{{ runtime.id }}\"}\n",
    )
    .unwrap();
    // api's manifest uses runtime.id, read from the answer of a step that follows api.
    let (code, errors) = validate(
        dir.path(),
        "vloop",
        "components:\n  api:\n    manifests: [uses.yaml]\nruntime:\n  id:\n    httpResponse: {step: register, path: .id}\nsteps:\n  register:\n    after: [api]\n    http: {url: \"http://127.0.0.1:1/\"}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/vloop.yaml:2:3: components.api: dependency cycle: api -> runtime.id -> register -> api"
        ]
    );
}

#[test]
fn an_http_steps_body_file_and_the_files_its_templates_read_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.yaml"), "kind: RemediationWorkflow\n").unwrap();
    std::fs::write(
        dir.path().join("req.json"),
        "{\n  \"content\": {{ file \"w.yaml\" | json }},\n  \"other\": {{ file \"gone.yaml\" | json }}\n}\n",
    )
    .unwrap();
    let (code, errors) = validate(
        dir.path(),
        "files",
        "steps:\n  ok:\n    http:\n      url: http://127.0.0.1:1/\n      body: '{\"c\":{{ file \"w.yaml\" | json }}}'\n  missing:\n    http:\n      url: http://127.0.0.1:1/\n      body: '{\"c\":{{ file \"nope.yaml\" | json }}}'\n  from-file:\n    http:\n      url: http://127.0.0.1:1/\n      bodyFile: req.json\n  no-file:\n    http:\n      url: http://127.0.0.1:1/\n      bodyFile: nope.json\n  both:\n    http:\n      url: \"http://127.0.0.1:1/{{ values.x }}\"\n      body: '{{ namespace | yaml }}'\n      bodyFile: req.json\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/files.yaml:20:7: steps.both.http.url: unknown template value `values.x`",
            "profiles/files.yaml:21:7: steps.both.http.body: unknown filter `yaml` (filters: json, goJson, sha256, uuid5)",
            "profiles/files.yaml:22:7: steps.both.http.bodyFile: body and bodyFile exclude each other: the request has one body",
            "./req.json:3:12: ./gone.yaml does not exist",
            "profiles/files.yaml:9:7: steps.missing.http.body: ./nope.yaml does not exist",
            "profiles/files.yaml:17:7: steps.no-file.http.bodyFile: ./nope.json does not exist",
        ],
    );
}

#[test]
fn an_http_response_value_reads_an_http_step_at_a_dotted_path() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "answers",
        "runtime:\n  a:\n    httpResponse: {step: ghost, path: .id}\n  b:\n    httpResponse: {step: apply-it, path: .id}\n  c:\n    httpResponse: {step: call, path: id}\n  d:\n    httpResponse: {step: call, path: \".items[0].id\"}\n    field: {apiVersion: v1, kind: ConfigMap, name: x, path: .data.y}\nsteps:\n  apply-it:\n    apply: [m.yaml]\n  call:\n    http: {url: \"http://127.0.0.1:1/\"}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/answers.yaml:3:20: runtime.a.httpResponse.step: \"ghost\" is no step",
            "profiles/answers.yaml:5:20: runtime.b.httpResponse.step: step \"apply-it\" makes no HTTP request: httpResponse reads the answer of an `http` step",
            "profiles/answers.yaml:7:32: runtime.c.httpResponse.path: path \"id\": a dotted path into the answer's JSON, such as .id or .items[0].id",
            "profiles/answers.yaml:8:3: runtime.d: a run-time value needs exactly one of serviceAccountToken, field, key, jobOutput, httpResponse",
        ],
    );
}

#[test]
fn config_secrets_errors_are_placed_at_their_entry_in_the_file_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("profiles/stacks")).unwrap();
    std::fs::write(
        dir.path().join("profiles/stacks/pull.yaml"),
        "config:\n  secrets:\n    - name: stack-pull\n      type: kubernetes.io/dockerconfigjson\n      files: {.dockerconfigjson: ~/missing/auth.json}\n",
    )
    .unwrap();
    let (code, errors) = validate(
        dir.path(),
        "sec",
        "include: [stacks/pull.yaml]\nconfig:\n  secrets:\n    - name: fine\n      type: kubernetes.io/dockerconfigjson\n      files: {.dockerconfigjson: ~/missing/auth.json}\n      optional: true\n      serviceAccounts: [default]\n    - name: tilde\n      files: {k: ~root/k}\n    - name: opaque\n      stringData: {k: v}\n      serviceAccounts: [Bad_Name]\n    - name: keyless\n      type: kubernetes.io/dockerconfigjson\n      stringData: {other: x}\n    - name: half\n      type: kubernetes.io/dockerconfigjson\n      files:\n        .dockerconfigjson: {path: /nonexistent/a.json, optional: true}\n    - name: twice\n      stringData: {k: v}\n      files: {k: m.yaml, gone: nothere.yaml}\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    let home = dir.path().display().to_string();
    assert_eq!(
        errors,
        [
            format!("profiles/stacks/pull.yaml:5:15: config.secrets[0].files..dockerconfigjson: {home}/missing/auth.json does not exist (a host file: `optional: true` on the entry skips the Secret when it is absent)"),
            "profiles/sec.yaml:10:15: config.secrets[1].files.k: ~root/k: only ~/ (this user's $HOME) is expanded; write the absolute path".to_string(),
            "profiles/sec.yaml:13:7: config.secrets[2].serviceAccounts: serviceAccounts get this Secret as an image pull Secret: its type must be kubernetes.io/dockerconfigjson (or kubernetes.io/dockercfg), not Opaque".into(),
            "profiles/sec.yaml:13:7: config.secrets[2].serviceAccounts: ServiceAccount name \"Bad_Name\" is not a Kubernetes object name".into(),
            "profiles/sec.yaml:15:7: config.secrets[3].type: a Secret of type kubernetes.io/dockerconfigjson needs the key .dockerconfigjson (in files or stringData)".into(),
            "profiles/sec.yaml:20:9: config.secrets[4].files..dockerconfigjson: .dockerconfigjson is what a kubernetes.io/dockerconfigjson Secret holds: it cannot be left out (`optional: true` on the entry skips the whole Secret instead)".into(),
            "profiles/sec.yaml:23:26: config.secrets[5].files.gone: ./nothere.yaml does not exist".into(),
            "profiles/sec.yaml:23:15: config.secrets[5].files.k: key k is in both stringData and files: give it once".into(),
        ]
    );
    // The entry in the include is placed in the include (index 0 there), not in the profile;
    // `fine` (index 0 in the profile) is optional, so its absent host file is no error.
    // A misspelt field of a file's mapping is a schema error at its line.
    let (code, errors) = validate(
        dir.path(),
        "typo",
        "config:\n  secrets:\n    - name: s\n      files:\n        k: {path: m.yaml, optinal: true}\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("profiles/typo.yaml:5:")
            && errors[0].contains("optinal")
            && errors[0].contains("path, optional"),
        "{errors:?}"
    );
}

#[test]
fn a_secret_after_an_unknown_unit_or_in_a_cycle_is_named_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("uses.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\ndata: {t: \"{{ runtime.tok }}\"}\n",
    )
    .unwrap();
    // Two entries may share a name in other namespaces: each error is at its own entry.
    let (code, errors) = validate(
        dir.path(),
        "ghost",
        "config:\n  secrets:\n    - {name: pull, namespace: a, stringData: {k: v}}\n    - name: pull\n      namespace: b\n      stringData: {k: v}\n      after: [release, ghost]\ncomponents:\n  release: {manifests: [m.yaml]}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/ghost.yaml:7:7: config.secrets[1].after: \"ghost\" is no component, hook or step"
        ]
    );
    // api's manifest uses a value read from the Secret, which follows api.
    let (code, errors) = validate(
        dir.path(),
        "sloop",
        "config:\n  secrets:\n    - {name: pull, namespace: a, stringData: {k: v}}\n    - name: src\n      stringData: {k: v}\n      after: [api]\ncomponents:\n  api: {manifests: [uses.yaml]}\nruntime:\n  tok:\n    key: {name: src, key: k}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/sloop.yaml:8:3: components.api: dependency cycle: api -> runtime.tok -> secret:default/src -> api"
        ]
    );
    // Without the Secret's after there is no cycle: the value reads the batch's Secret.
    let (code, errors) = validate(
        dir.path(),
        "fine",
        "config:\n  secrets:\n    - {name: pull, namespace: a, stringData: {k: v}}\n    - name: src\n      stringData: {k: v}\n      after: [other]\ncomponents:\n  api: {manifests: [uses.yaml]}\n  other: {manifests: [m.yaml]}\nruntime:\n  tok:\n    key: {name: src, key: k}\n",
    );
    assert_eq!((code, errors.len()), (Some(0), 0), "{errors:?}");
}

#[test]
fn a_secret_given_twice_in_one_namespace_is_an_error_at_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "twice",
        "namespace: app\nconfig:\n  secrets:\n    - {name: pull, namespace: jobs, stringData: {k: v}}\n    - {name: pull, stringData: {k: v}}\n    - {name: pull, namespace: app, stringData: {k: w}}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/twice.yaml:6:8: config.secrets[2].name: Secret app/pull is given twice: one entry per name and namespace"
        ]
    );
}

#[test]
fn a_status_patch_reads_its_files_and_a_document_of_the_wrong_shape_is_named_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("l.yaml"),
        "fields:\n  - name: spec\n    type: object\n    fields: [{name: required, type: bool}]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("w.yaml"), "spec:\n  required: \"yes\"\n").unwrap();
    let (code, errors) = validate(
        dir.path(),
        "stamp",
        "steps:\n  stamp:\n    patchStatus:\n      - apiVersion: v1\n        kind: Thing\n        name: a\n        status:\n          hash: '{{ file \"w.yaml\" | goJson \"l.yaml\" | sha256 }}'\n          id: '{{ file \"gone.yaml\" | sha256 }}'\n          at: '{{ values.when }}'\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        errors,
        [
            "profiles/stamp.yaml:3:5: steps.stamp.patchStatus: patchStatus[0] (Thing a): unknown template value `values.when`",
            "profiles/stamp.yaml:3:5: steps.stamp.patchStatus: patchStatus[0] (Thing a): goJson: w.yaml:2:13: spec.required: expected true or false, found the string \"yes\"",
            "profiles/stamp.yaml:3:5: steps.stamp.patchStatus: patchStatus[0] (Thing a): ./gone.yaml does not exist",
        ],
    );
}

#[test]
fn a_working_dir_needs_a_kind_config_and_a_path_inside_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (code, errors) = validate(
        dir.path(),
        "wd",
        "service: wd\ncluster:\n  workingDir: test/e2e/wd\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    assert_eq!(
        errors,
        [
            "profiles/wd.yaml:3:3: cluster.workingDir: workingDir \"test/e2e/wd\" is where kind runs, for a kindConfig's relative host paths; this profile has no kindConfig (its own paths resolve against --source)"
        ]
    );
    std::fs::write(
        dir.path().join("kind.yaml"),
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n",
    )
    .unwrap();
    for (wd, message) in [
        ("/abs/e2e", "must be a directory relative to --source"),
        ("../e2e", "must stay inside --source (no `..`)"),
    ] {
        let (code, errors) = validate(
            dir.path(),
            "wd",
            &format!("service: wd\ncluster:\n  kindConfig: kind.yaml\n  workingDir: {wd}\n"),
        );
        assert_eq!(code, Some(2), "{errors:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("profiles/wd.yaml:4:3: cluster.workingDir: ")
                && errors[0].contains(message),
            "{errors:?}"
        );
    }
    let (code, errors) = validate(
        dir.path(),
        "wd",
        "service: wd\ncluster:\n  kindConfig: kind.yaml\n  workingDir: test/e2e/wd\n",
    );
    assert_eq!((code, errors), (Some(0), vec![]));
}

#[test]
fn a_kind_config_that_is_not_one_is_named_at_the_kind_config_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kind.yaml"),
        "kind: Deployment\napiVersion: apps/v1\n",
    )
    .unwrap();
    let (code, errors) = validate(
        dir.path(),
        "kc",
        "service: kc\ncluster:\n  kindConfig: kind.yaml\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("profiles/kc.yaml:3:3: cluster.kindConfig: use kind config ")
            && errors[0].ends_with("kind.yaml: kind must be Cluster, found Some(\"Deployment\")"),
        "{errors:?}"
    );
}

#[test]
fn a_host_port_the_kind_config_or_another_port_already_publishes_is_named_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kind.yaml"),
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraPortMappings:\n  - {containerPort: 30081, hostPort: 28090}\n",
    )
    .unwrap();
    let (code, errors) = validate(
        dir.path(),
        "hp",
        "service: hp\ncluster: {kindConfig: kind.yaml}\nports:\n  api: {nodePort: 30081}\n  admin:\n    nodePort: 30082\n    hostPort: 28090\n  metrics:\n    nodePort: 30083\n    hostPort: 9000\n  more:\n    nodePort: 30084\n    hostPort: 9000\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    assert_eq!(
        errors,
        [
            "profiles/hp.yaml:7:5: ports.admin.hostPort: hostPort 28090 is the one the kind config maps NodePort 30081 to (a host port is published once)",
            "profiles/hp.yaml:13:5: ports.more.hostPort: hostPort 9000 is also port metrics's",
        ]
    );
}

#[test]
fn a_configmap_glob_entry_that_takes_nothing_or_a_key_twice_is_named_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sql/sub")).unwrap();
    for f in ["sql/001_a.sql", "sql/002_b.sql", "sql/sub/003_c.sql"] {
        std::fs::write(dir.path().join(f), "SELECT 1;\n").unwrap();
    }
    let (code, errors) = validate(
        dir.path(),
        "cm",
        "config:\n  configMaps:\n    - name: fine\n      files:\n        \"*\": sql/*.sql\n        \"*.md\": sql/*.md\n        \"*.yaml\": sql/*\n        plain: sql/*.sql\n    - name: twice\n      data: {002_b.sql: x}\n      files:\n        \"*.sql\": sql/*.sql\n        001_a.sql: m.yaml\n",
    );
    assert_eq!(code, Some(2), "{errors:?}");
    let src = ".".to_string();
    assert_eq!(
        errors,
        [
            format!("profiles/cm.yaml:6:9: config.configMaps[0].files.*.md: no file matches \"sql/*.md\" under {src}"),
            "profiles/cm.yaml:7:9: config.configMaps[0].files.*.yaml: no file \"sql/*\" matches is named \"*.yaml\" (2 matched, none by that name)".into(),
            "profiles/cm.yaml:8:9: config.configMaps[0].files.plain: \"sql/*.sql\" is a glob: its key must be one too (\"*\" takes each file under its own name)".into(),
            "profiles/cm.yaml:12:9: config.configMaps[1].files.*.sql: key \"002_b.sql\" is given by both data and files entry \"*.sql\" (glob): give it once".into(),
            "profiles/cm.yaml:13:9: config.configMaps[1].files.001_a.sql: key \"001_a.sql\" is given by both files entry \"*.sql\" (glob) and files entry \"001_a.sql\": give it once".into(),
        ]
    );
}
