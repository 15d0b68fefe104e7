//! `cluster.registry: local`: the local registry of kind's guide (docs/user/local-registry),
//! so each image is pushed once and every node pulls it, whatever the number of nodes.
//!
//! - [`ensure_local`] (`registry:local`): the container [`NAME`] from `$KPROV_REGISTRY_IMAGE`
//!   (default [`DEFAULT_IMAGE`]), published on `127.0.0.1:5001`, restarted with the engine,
//!   shared by every cluster on the host. Created, or reused when it exists (a 409 from a
//!   concurrent creator included), started, and waited for until `/v2/` answers.
//! - [`CONTAINERD_PATCH`] goes into the kind config of a cluster kprov creates; [`wire_nodes`]
//!   (in `cluster:create`) then connects the registry to the `kind` network, writes
//!   `/etc/containerd/certs.d/localhost:5001/hosts.toml` into each node and applies the
//!   `local-registry-hosting` ConfigMap of KEP-1755 in `kube-public`.
//! - A cluster kprov does not own ([`advertised`]) must advertise its registry with that
//!   ConfigMap, as kind's guide sets it up: kprov pushes to its `host` and the manifests name
//!   `hostFromContainerRuntime` (else `host`).
//! - [`push`] (`push:<image>`): tagged `<host>/<name>:<first 12 hex of the image ID>`, so an
//!   unchanged image is never pushed twice (the registry is asked first) and a node's
//!   `IfNotPresent` is exact.

use std::time::Duration;

use serde_json::{Value, json};

use crate::adapters::docker::{Engine, ServiceContainer};
use crate::adapters::http::HttpProber;
use crate::adapters::kube::{Kube, Object, ObjectRef};
use crate::engine::{Done, TaskCtx, TaskError};
use crate::tasks::build::{BuiltImage, engine_task_error};

/// The registry container, as kind's guide names its own `kind-registry`.
pub const NAME: &str = "kprov-registry";
/// Where the host (and, through each node's hosts.toml, every node) reaches it.
pub const HOST: &str = "localhost:5001";
const HOST_PORT: u16 = 5001;
const CONTAINER_PORT: u16 = 5000;
/// kind's network: the nodes reach the registry as `kprov-registry:5000` on it.
const NETWORK: &str = "kind";
/// The registry image kind's guide runs; `KPROV_REGISTRY_IMAGE` chooses another.
pub const DEFAULT_IMAGE: &str = "registry:3";
/// Where containerd's CRI plugin looks for per-registry hosts.toml files.
const CERTS_D: &str = "/etc/containerd/certs.d";
/// kind's containerd patch (needless with node images of kind v0.27+, harmless with them).
pub const CONTAINERD_PATCH: &str = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
/// KEP-1755's ConfigMap.
const HOSTING: (&str, &str) = ("kube-public", "local-registry-hosting");
const HELP: &str = "https://kind.sigs.k8s.io/docs/user/local-registry/";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry this run pushes to, and the name the nodes pull it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRegistry {
    /// `host:port` the host pushes to.
    pub push_host: String,
    /// `host:port` the nodes' containerd pulls from (the manifests' references).
    pub pull_host: String,
}

/// The registry image: `$KPROV_REGISTRY_IMAGE`, else [`DEFAULT_IMAGE`].
pub fn image() -> String {
    std::env::var("KPROV_REGISTRY_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// Creates or reuses [`NAME`], starts it and waits until it answers on [`HOST`].
pub async fn ensure_local(
    engine: &Engine,
    ctx: &TaskCtx,
) -> Result<(LocalRegistry, Done), TaskError> {
    let what = format!("start the local registry {NAME}");
    let err = |e| engine_task_error(&what, e);
    let image = image();
    let existing = engine.inspect_container_json(NAME).await.map_err(err)?;
    let done = match existing {
        Some(c) if c.pointer("/State/Running") == Some(&json!(true)) => {
            check_published(&c)?;
            ctx.progress(format!("reusing {NAME} on {HOST}"));
            Done::Cached
        }
        found => {
            if let Some(stopped) = &found {
                check_published(stopped)?;
            } else {
                if engine.inspect_image(&image).await.map_err(err)?.is_none() {
                    crate::tasks::pull::ensure_external(engine, &image, ctx).await?;
                }
                let spec = ServiceContainer {
                    name: NAME.into(),
                    image: image.clone(),
                    ports: vec![("127.0.0.1".into(), HOST_PORT, CONTAINER_PORT)],
                    labels: [("io.kprov.registry".to_string(), "local".to_string())].into(),
                    restart_always: true,
                };
                let created = engine.create_service_container(&spec).await.map_err(err)?;
                ctx.progress(match created {
                    true => format!("created {NAME} from {image}"),
                    false => format!("{NAME} was created by another run: using it"),
                });
            }
            engine.start_container(NAME).await.map_err(|e| {
                TaskError::fatal(format!(
                    "{what}: {e} (is 127.0.0.1:{HOST_PORT} taken, e.g. by kind's own kind-registry? kprov's registry must own it)"
                ))
            })?;
            Done::Ran
        }
    };
    wait_answering(HOST, ctx).await?;
    let local = LocalRegistry {
        push_host: HOST.into(),
        pull_host: HOST.into(),
    };
    Ok((local, done))
}

/// A reused registry container must publish its port on 5001, or nothing reaches it there.
fn check_published(inspect: &Value) -> Result<(), TaskError> {
    let bindings = inspect
        .pointer(&format!("/HostConfig/PortBindings/{CONTAINER_PORT}~1tcp"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let on_5001 = bindings
        .iter()
        .any(|b| b["HostPort"].as_str() == Some(&HOST_PORT.to_string()));
    if on_5001 {
        Ok(())
    } else {
        Err(TaskError::fatal(format!(
            "reuse the local registry {NAME}: it does not publish {CONTAINER_PORT}/tcp on 127.0.0.1:{HOST_PORT} (remove it: `docker rm -f {NAME}`)"
        )))
    }
}

/// Polls `http://<host>/v2/` until it answers 200 (the registry API's version check).
async fn wait_answering(host: &str, ctx: &TaskCtx) -> Result<(), TaskError> {
    let prober = HttpProber::new(Duration::from_secs(2)).map_err(TaskError::fatal)?;
    let url = format!("http://{host}/v2/");
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let last = match prober.call("GET", &url, &[], None).await {
            Ok(a) if a.status == 200 => return Ok(()),
            Ok(a) => format!("it answered {}: {}", a.status, a.body_start()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(TaskError::fatal(format!(
                "the registry at {host} did not answer GET {url} within {}s: {last}",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = ctx.cancel.cancelled() => return Err(TaskError::fatal("wait for the registry: cancelled")),
        }
    }
}

/// The hosts.toml that sends a node's pulls of `localhost:5001/…` to the registry container,
/// as kind's guide writes it, with `server` too so a pull never falls back to the node's own
/// loopback (where a missing tag would read as `connection refused`).
fn hosts_toml() -> String {
    let upstream = format!("http://{NAME}:{CONTAINER_PORT}");
    format!("server = \"{upstream}\"\n\n[host.\"{upstream}\"]\n")
}

/// The ConfigMap of KEP-1755, as kind's guide applies it.
fn hosting_config_map() -> Object {
    Object::new(
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": HOSTING.1, "namespace": HOSTING.0},
            "data": {"localRegistryHosting.v1": format!("host: \"{HOST}\"\nhelp: \"{HELP}\"\n")}}),
        "cluster.registry",
    )
}

/// Wires a cluster kprov created (or reuses) to the registry: the `kind` network, each node's
/// hosts.toml (after checking its containerd reads a hosts directory), the ConfigMap.
pub async fn wire_nodes(
    engine: &Engine,
    nodes: &[String],
    kube: &Kube,
    ctx: &TaskCtx,
) -> Result<(), TaskError> {
    let what = format!("connect the local registry {NAME}");
    engine
        .connect_network(NETWORK, NAME)
        .await
        .map_err(|e| engine_task_error(&what, e))?;
    let dir = format!("{CERTS_D}/{HOST}");
    for node in nodes {
        let dump = engine
            .exec(node, &["containerd", "config", "dump"], &ctx.cancel)
            .await
            .map_err(|e| engine_task_error(&what, e))?;
        let paths = crate::tasks::load::registry_config_path_from_config(&dump.stdout)
            .map_err(|e| TaskError::fatal(format!("{what}: node {node}: {e}")))?;
        if !paths.iter().any(|p| p == CERTS_D) {
            return Err(TaskError::fatal(format!(
                "{what}: node {node}'s containerd reads no registry hosts from {CERTS_D} \
                 (config_path is {:?}): the cluster was made without kprov's containerdConfigPatches \
                 and with a node image older than kind v0.27; delete it and run again",
                paths.join(":")
            )));
        }
        let script = format!("mkdir -p '{dir}' && cat > '{dir}/hosts.toml'");
        let body = futures::stream::iter([bytes::Bytes::from(hosts_toml())]);
        let out = engine
            .exec_with_stdin(node, &["sh", "-c", &script], body, &ctx.cancel, |_, _| {})
            .await
            .map_err(|e| engine_task_error(&what, e))?;
        if !out.success() {
            return Err(TaskError::fatal(format!(
                "{what}: write {dir}/hosts.toml in node {node}: exit {}: {}",
                out.exit_code,
                out.tail(3)
            )));
        }
    }
    ctx.progress(format!("{} node(s) pull {HOST}/… from {NAME}", nodes.len()));
    crate::tasks::apply::apply_objects(kube, &[hosting_config_map()], ctx).await
}

/// The registry a cluster kprov does not own advertises (KEP-1755's ConfigMap), checked to
/// answer from here.
pub async fn advertised(kube: &Kube, ctx: &TaskCtx) -> Result<LocalRegistry, TaskError> {
    let what = "find the cluster's local registry";
    let r = ObjectRef::new("v1", "ConfigMap", Some(HOSTING.0), HOSTING.1);
    let cm = kube
        .get(&r)
        .await
        .map_err(|e| {
            TaskError::fatal(format!(
                "{what}: read ConfigMap {}/{}: {e}",
                HOSTING.0, HOSTING.1
            ))
        })?
        .ok_or_else(|| {
            TaskError::fatal(format!(
                "{what}: the cluster has no ConfigMap {}/{}. With cluster.registry: local and \
                 --kubeconfig/--context, the cluster must run a registry its nodes pull from and \
                 advertise it there (KEP-1755: localRegistryHosting.v1 with host, as kind's guide \
                 {HELP} sets it up); kprov pushes to that host",
                HOSTING.0, HOSTING.1
            ))
        })?;
    let text = cm
        .get("/data/localRegistryHosting.v1")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let local = parse_hosting(text).map_err(|e| {
        TaskError::fatal(format!(
            "{what}: ConfigMap {}/{}: localRegistryHosting.v1: {e}",
            HOSTING.0, HOSTING.1
        ))
    })?;
    wait_answering(&local.push_host, ctx).await?;
    ctx.progress(format!(
        "the cluster's registry: push to {}, nodes pull {}",
        local.push_host, local.pull_host
    ));
    Ok(local)
}

/// KEP-1755's `localRegistryHosting.v1` document: `host` (from the host),
/// `hostFromContainerRuntime` (from the nodes' runtime; default `host`).
fn parse_hosting(text: &str) -> Result<LocalRegistry, String> {
    let v: Value = serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let host = v
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or("it names no host")?;
    let pull = v
        .get("hostFromContainerRuntime")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .unwrap_or(host);
    Ok(LocalRegistry {
        push_host: host.to_string(),
        pull_host: pull.to_string(),
    })
}

/// The registry tag of `image`: the first 12 hex digits of its ID.
fn tag_of(image: &BuiltImage) -> String {
    let hex = image.id.trim_start_matches("sha256:");
    format!("id-{}", &hex[..hex.len().min(12)])
}

/// Pushes `image` (image key `key`) to `registry` as `<name>`; `Done::Cached` when the registry
/// has that tag already. Returns the reference the nodes pull.
pub async fn push(
    engine: &Engine,
    registry: &LocalRegistry,
    name: &str,
    image: &BuiltImage,
    ctx: &TaskCtx,
) -> Result<(BuiltImage, Done), TaskError> {
    let tag = tag_of(image);
    let repository = format!("{}/{name}", registry.push_host);
    let pulled_as = BuiltImage {
        reference: format!("{}/{name}:{tag}", registry.pull_host),
        id: image.id.clone(),
        builder: image.builder,
    };
    let what = format!("push {} as {repository}:{tag}", image.reference);
    if has_tag(&registry.push_host, name, &tag).await? {
        ctx.progress(format!("{repository}:{tag} is in the registry already"));
        return Ok((pulled_as, Done::Cached));
    }
    let err = |e| engine_task_error(&what, e);
    engine
        .tag_image(&image.reference, &repository, &tag)
        .await
        .map_err(err)?;
    let mut last = String::new();
    let pushed = engine
        .push_image(&repository, &tag, &ctx.cancel, |status| {
            if status != last && !status.contains("Pushing") {
                ctx.progress(status.to_string());
                last = status.to_string();
            }
        })
        .await;
    match pushed {
        Ok(()) => {
            ctx.progress(format!("pushed {repository}:{tag}"));
            Ok((pulled_as, Done::Ran))
        }
        Err(e) if e.is_cancelled() => Err(TaskError::fatal(format!("{what}: cancelled"))),
        Err(e) => Err(TaskError::fatal(format!(
            "{what}: the registry said: {}",
            e.detail
        ))),
    }
}

/// Whether the registry at `host` has `name:tag` (a HEAD of its manifest, as a pull would ask).
async fn has_tag(host: &str, name: &str, tag: &str) -> Result<bool, TaskError> {
    let prober = HttpProber::new(Duration::from_secs(10)).map_err(TaskError::fatal)?;
    let url = format!("http://{host}/v2/{name}/manifests/{tag}");
    let accept = [(
        "Accept".to_string(),
        "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
            .to_string(),
    )];
    match prober.call("HEAD", &url, &accept, None).await {
        Ok(a) => Ok(a.status == 200),
        Err(e) => Err(TaskError::fatal(format!(
            "ask the registry at {host} for {name}:{tag}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosting_configmap_is_keps_and_a_clusters_own_is_read_back() {
        let cm = hosting_config_map();
        let text = cm
            .get("/data/localRegistryHosting.v1")
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(
            parse_hosting(text).unwrap(),
            LocalRegistry {
                push_host: "localhost:5001".into(),
                pull_host: "localhost:5001".into()
            }
        );
        assert_eq!(cm.namespace(), Some("kube-public"));
        let other = "host: \"localhost:5000\"\nhostFromContainerRuntime: \"registry:5000\"\n";
        assert_eq!(parse_hosting(other).unwrap().pull_host, "registry:5000");
        assert!(parse_hosting("help: x\n").unwrap_err().contains("no host"));
    }

    #[test]
    fn a_nodes_hosts_toml_sends_localhost_5001_to_the_registry_container() {
        let t = hosts_toml();
        assert!(t.contains("server = \"http://kprov-registry:5000\""), "{t}");
        assert!(t.contains("[host.\"http://kprov-registry:5000\"]"), "{t}");
    }

    #[test]
    fn the_tag_is_the_image_ids_start() {
        let i = BuiltImage {
            reference: "localhost/kprov/api:kprov-1".into(),
            id: "sha256:0123456789abcdef0123".into(),
            builder: None,
        };
        assert_eq!(tag_of(&i), "id-0123456789ab");
    }
}
