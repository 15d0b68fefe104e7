//! Image sources chosen on the command line, applied to a loaded profile before it is
//! planned: `kprov up --image KEY=REF` (an image already in the engine, kubernaut's CI
//! artefact mode), `--image-registry R --image-tag T` (kubernaut's IMAGE_REGISTRY/IMAGE_TAG:
//! every built image is `R/<name>:T` and nothing is built) and `--registry-pull` (who pulls
//! it). Against a cluster kprov does not own nothing can be streamed into the nodes, so every
//! image must then come from a registry the nodes pull from; a profile that leaves no way is
//! refused here, before anything starts, unless the profile says `cluster.registry: local`
//! (every image kprov has is then pushed to the registry the cluster advertises).

use super::{ImageSpec, Profile, Supplied};

/// What the command line says about where images come from.
#[derive(Debug, Clone, Default)]
pub struct ImageSources {
    /// `--image KEY=REF`, in the order given.
    pub local: Vec<(String, String)>,
    pub registry: Option<Registry>,
    /// `--kubeconfig`/`--context`: the cluster is not kprov's, its nodes cannot be loaded.
    pub existing_cluster: bool,
}

/// `--image-registry R --image-tag T --registry-pull nodes|kprov`.
#[derive(Debug, Clone)]
pub struct Registry {
    pub registry: String,
    pub tag: String,
    pub nodes_pull: bool,
}

/// Parses one `--image KEY=REF`.
pub fn parse_local(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, r)) if !k.is_empty() && !r.is_empty() => Ok((k.to_string(), r.to_string())),
        _ => Err(format!(
            "expected KEY=REF (an image key of the profile and an image in the engine), got {arg:?}"
        )),
    }
}

/// The name an image has in a registry: the last component of its repository
/// (`localhost/kubernaut/datastorage` → `datastorage`), as kubernaut's setup names them;
/// the image key when the profile names no repository.
pub fn registry_name(key: &str, image: &ImageSpec) -> String {
    image
        .repository
        .as_deref()
        .and_then(|r| r.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or(key)
        .to_string()
}

/// Marks each image of `profile` with where this run takes it from. Every problem is
/// returned, each in one sentence naming the image and the option.
pub fn supply(profile: &mut Profile, s: &ImageSources) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    // With `cluster.registry: local` every image kprov has reaches the nodes through the
    // registry, whoever owns the cluster.
    let streamed_only = s.existing_cluster && !profile.local_registry();
    let images = &mut profile.spec.images;
    for (key, reference) in &s.local {
        match images.get_mut(key) {
            Some(_) if streamed_only => {
                errors.push(format!(
                    "--image {key}={reference}: the cluster is not kprov's (--kubeconfig/--context), \
                     so kprov cannot stream a local image into its nodes; push it to a registry \
                     the nodes can reach and use --image-registry"
                ));
            }
            Some(img) => img.supplied = Some(Supplied::Local(reference.clone())),
            None => errors.push(format!(
                "--image {key}={reference}: the profile has no image {key} (its images: {})",
                images.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
    if let Some(r) = &s.registry {
        if streamed_only && !r.nodes_pull {
            errors.push(
                "--registry-pull kprov streams the pulled images into the nodes, which needs a \
                 cluster kprov created; against --kubeconfig/--context use --registry-pull nodes"
                    .into(),
            );
        }
        let registry = r.registry.trim_end_matches('/');
        for (key, img) in images.iter_mut() {
            if img.build.is_some() && img.supplied.is_none() {
                let reference = format!("{registry}/{}:{}", registry_name(key, img), r.tag);
                img.supplied = Some(Supplied::Registry {
                    reference,
                    nodes_pull: r.nodes_pull,
                });
            }
        }
    }
    if streamed_only {
        let mut unreachable = Vec::new();
        for (key, img) in images.iter_mut() {
            match (&img.supplied, &img.external) {
                (Some(_), _) => {}
                // A third-party image: the nodes pull it from where its reference says.
                (None, Some(reference)) => {
                    img.supplied = Some(Supplied::Registry {
                        reference: reference.clone(),
                        nodes_pull: true,
                    })
                }
                (None, None) => unreachable.push(key.clone()),
            }
        }
        if !unreachable.is_empty() {
            errors.push(format!(
                "image(s) {} would be built here, but the cluster is not kprov's \
                 (--kubeconfig/--context): its nodes cannot get a local image. Push them and \
                 give --image-registry R --image-tag T --registry-pull nodes, or let kprov \
                 create the cluster",
                unreachable.join(", ")
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The references the nodes pull themselves (rendered with `imagePullPolicy: IfNotPresent`).
pub fn pulled_by_nodes(profile: &Profile) -> Vec<String> {
    profile
        .spec
        .images
        .values()
        .filter_map(|i| match &i.supplied {
            Some(Supplied::Registry {
                reference,
                nodes_pull: true,
            }) => Some(reference.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        let text = "service: s\nimages:\n  api:\n    build: {context: .}\n    repository: localhost/kubernaut/datastorage\n  worker:\n    build: {context: .}\n  postgres:\n    external: postgres:16-alpine\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), text).unwrap();
        crate::profile::load(dir.path(), "s").unwrap()
    }

    #[test]
    fn a_local_image_replaces_a_build_and_an_unknown_key_is_named() {
        let mut p = profile();
        let s = ImageSources {
            local: vec![
                ("api".into(), "stand-in:1".into()),
                ("nope".into(), "x:1".into()),
            ],
            ..Default::default()
        };
        let e = supply(&mut p, &s).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("no image nope") && e[0].contains("api, postgres, worker"));
        assert_eq!(
            p.spec.images["api"].supplied,
            Some(Supplied::Local("stand-in:1".into()))
        );
    }

    #[test]
    fn registry_mode_names_each_built_image_as_kubernaut_does_and_leaves_third_party_ones() {
        let mut p = profile();
        let s = ImageSources {
            local: vec![("worker".into(), "w:1".into())],
            registry: Some(Registry {
                registry: "ghcr.io/jordigilh/kubernaut/".into(),
                tag: "pr-123".into(),
                nodes_pull: true,
            }),
            existing_cluster: false,
        };
        supply(&mut p, &s).unwrap();
        assert_eq!(
            p.spec.images["api"].supplied,
            Some(Supplied::Registry {
                reference: "ghcr.io/jordigilh/kubernaut/datastorage:pr-123".into(),
                nodes_pull: true
            })
        );
        // --image wins over the registry; a third-party image keeps its own reference.
        assert_eq!(
            p.spec.images["worker"].supplied,
            Some(Supplied::Local("w:1".into()))
        );
        assert_eq!(p.spec.images["postgres"].supplied, None);
        assert_eq!(
            pulled_by_nodes(&p),
            vec!["ghcr.io/jordigilh/kubernaut/datastorage:pr-123".to_string()]
        );
    }

    #[test]
    fn an_existing_cluster_is_refused_when_an_image_has_no_way_into_its_nodes() {
        let mut p = profile();
        let s = ImageSources {
            existing_cluster: true,
            ..Default::default()
        };
        let e = supply(&mut p, &s).unwrap_err();
        assert!(e[0].contains("api, worker") && e[0].contains("--image-registry"));
        // With a registry the nodes pull from, every image has a way, third-party ones too.
        let mut p = profile();
        let s = ImageSources {
            registry: Some(Registry {
                registry: "r.example".into(),
                tag: "t".into(),
                nodes_pull: true,
            }),
            existing_cluster: true,
            ..Default::default()
        };
        supply(&mut p, &s).unwrap();
        let mut pulled = pulled_by_nodes(&p);
        pulled.sort();
        assert_eq!(
            pulled,
            vec![
                "postgres:16-alpine",
                "r.example/datastorage:t",
                "r.example/worker:t"
            ]
        );
    }

    #[test]
    fn registry_pull_by_kprov_and_local_images_need_a_cluster_kprov_created() {
        let mut p = profile();
        let s = ImageSources {
            local: vec![("api".into(), "a:1".into())],
            registry: Some(Registry {
                registry: "r".into(),
                tag: "t".into(),
                nodes_pull: false,
            }),
            existing_cluster: true,
        };
        let e = supply(&mut p, &s).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("--image api=a:1") && e[1].contains("--registry-pull nodes"));
    }

    #[test]
    fn a_local_registry_takes_every_image_into_a_cluster_kprov_does_not_own() {
        let text = "service: s\ncluster: {registry: local}\nimages:\n  api:\n    build: {context: .}\n  db:\n    external: postgres:16\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), text).unwrap();
        let mut p = crate::profile::load(dir.path(), "s").unwrap();
        let s = ImageSources {
            local: vec![("api".into(), "a:1".into())],
            existing_cluster: true,
            ..Default::default()
        };
        supply(&mut p, &s).unwrap();
        // Pushed by kprov, not pulled by the nodes from where the reference says.
        assert!(pulled_by_nodes(&p).is_empty());
        assert_eq!(
            p.spec.images["api"].supplied,
            Some(Supplied::Local("a:1".into()))
        );
    }

    #[test]
    fn an_image_argument_is_key_equals_reference() {
        assert_eq!(
            parse_local("api=localhost/x:1").unwrap(),
            ("api".into(), "localhost/x:1".into())
        );
        for bad in ["api", "=x", "api="] {
            assert!(parse_local(bad).is_err(), "{bad}");
        }
    }
}
