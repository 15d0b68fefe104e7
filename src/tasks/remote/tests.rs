use super::*;

const PIN: &str = "4F0C5A1D2E3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5";

fn parse(yaml: &str) -> Result<RemoteSource, String> {
    serde_saphyr::from_str::<RemoteSource>(yaml).map_err(|e| e.to_string())
}

#[test]
fn the_three_forms_read_as_the_profile_writes_them() {
    assert_eq!(
        parse(&format!(
            "{{url: https://example.org/release.yaml, sha256: {PIN}}}"
        ))
        .unwrap(),
        RemoteSource::Url {
            url: "https://example.org/release.yaml".into(),
            sha256: Some(Sha256Digest(PIN.to_ascii_lowercase())),
        }
    );
    assert_eq!(
        parse("url: https://example.org/release.yaml").unwrap(),
        RemoteSource::Url {
            url: "https://example.org/release.yaml".into(),
            sha256: None,
        },
        "unpinned: pinned by the first download"
    );
    assert_eq!(
        parse("kustomize: deploy/overlays/e2e").unwrap(),
        RemoteSource::Kustomize {
            dir: "deploy/overlays/e2e".into()
        }
    );
    let helm = "helm: charts/kubernaut\nrelease: kubernaut\nnamespace: kubernaut-system\n\
                values: [f.yaml]\nset: {a: b, replicas: 2, enabled: true}\n";
    assert_eq!(
        parse(helm).unwrap(),
        RemoteSource::Helm {
            chart: "charts/kubernaut".into(),
            release: "kubernaut".into(),
            namespace: Some("kubernaut-system".into()),
            values: vec!["f.yaml".into()],
            set: [("a", "b"), ("enabled", "true"), ("replicas", "2")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        }
    );
}

#[test]
fn a_chart_without_a_release_is_named_after_its_directory() {
    match parse("helm: charts/kubernaut").unwrap() {
        RemoteSource::Helm {
            release, namespace, ..
        } => {
            assert_eq!(release, "kubernaut");
            assert_eq!(namespace, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_entries_are_refused_in_words() {
    let cases: [(&str, &str); 7] = [
        (
            &format!("{{url: ftp://x/a.yaml, sha256: {PIN}}}"),
            "must start with http://",
        ),
        (
            "{url: https://x/a.yaml, sha256: abc}",
            "is not 64 hex digits",
        ),
        (
            &format!("{{kustomize: d, sha256: {PIN}}}"),
            "kustomize takes no other keys",
        ),
        (
            "{kustomize: d, helm: c}",
            "exactly one of url, kustomize, helm",
        ),
        ("{kustomize: d, colour: blue}", "colour"),
        ("release: r", "exactly one of url, kustomize, helm"),
        (
            &format!("{{url: https://x/a.yaml, sha256: {PIN}, release: r}}"),
            "for helm charts",
        ),
    ];
    for (yaml, want) in cases {
        let e = parse(yaml).unwrap_err();
        assert!(e.contains(want), "{yaml}: {e}");
    }
}

#[test]
fn a_digest_may_carry_its_algorithm_and_prints_with_it() {
    let d = Sha256Digest::parse(&format!("sha256:{PIN}")).unwrap();
    assert_eq!(d.hex(), PIN.to_ascii_lowercase());
    assert_eq!(
        d.to_string(),
        format!("sha256:{}", PIN.to_ascii_lowercase())
    );
}

#[test]
fn origins_name_what_was_read() {
    let url = parse(&format!("{{url: https://x/r.yaml, sha256: {PIN}}}")).unwrap();
    assert_eq!(url.origin(), "https://x/r.yaml");
    assert_eq!(
        parse("kustomize: deploy").unwrap().origin(),
        "kustomize deploy"
    );
    assert_eq!(
        parse("helm: charts/k").unwrap().origin(),
        "helm template charts/k"
    );
}
