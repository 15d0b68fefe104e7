//! The service profile schema (`profiles/<service>.yaml`). Documented in README.md
//! ("Profile reference"). Keys are camelCase like the kind config they mirror; unknown keys
//! are rejected.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A service profile as written in one file, before includes are merged.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileFile {
    /// The service name; defaults to the file's stem.
    pub service: Option<String>,
    pub description: Option<String>,
    /// Other profile files (relative to this file) whose contents are merged into this one.
    #[serde(default)]
    pub include: Vec<String>,
    /// The namespace components go into unless a manifest says otherwise.
    pub namespace: Option<String>,
    pub cluster: Option<ClusterSpec>,
    #[serde(default)]
    pub images: BTreeMap<String, ImageSpec>,
    /// CRD files or globs, relative to `--source`.
    #[serde(default)]
    pub crds: Vec<String>,
    #[serde(default)]
    pub config: ConfigSpec,
    /// Named ports: a NodePort inside the cluster, published on a host port.
    #[serde(default)]
    pub ports: BTreeMap<String, PortSpec>,
    #[serde(default)]
    pub components: BTreeMap<String, ComponentSpec>,
    #[serde(default)]
    pub hooks: BTreeMap<String, HookSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The Kind cluster name (`kind-<name>` is the kubeconfig context).
    pub name: Option<String>,
    /// The user's own kind config file (relative to `--source`), patched rather than replaced.
    pub kind_config: Option<String>,
    /// Node image, e.g. `kindest/node:v1.36.1@sha256:…`.
    pub node_image: Option<String>,
    /// Where to write the kubeconfig (default: kind's, i.e. $KUBECONFIG or ~/.kube/config).
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Added to every node (or, for a user's kind config, to its control-plane nodes).
    #[serde(default)]
    pub extra_mounts: Vec<Mount>,
    #[serde(default)]
    pub extra_port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub kubeadm_config_patches: Vec<String>,
    #[serde(default)]
    pub containerd_config_patches: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    /// control-plane | worker
    pub role: String,
    pub image: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_mounts: Vec<Mount>,
    #[serde(default)]
    pub extra_port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    /// 0 or absent: a free host port is chosen when the cluster is created.
    #[serde(default)]
    pub host_port: u16,
    pub listen_address: Option<String>,
    pub protocol: Option<String>,
}

/// An image the service needs: built from source, or a third-party reference.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSpec {
    pub build: Option<BuildSpec>,
    /// A third-party reference (`postgres:16-alpine`) that must be present locally or pullable.
    pub external: Option<String>,
    /// The repository to tag a built image with (default `localhost/kprov/<name>`); the tag
    /// itself is derived from the build inputs.
    pub repository: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildSpec {
    /// Build context, relative to `--source`.
    pub context: String,
    /// Dockerfile, relative to `--source` (default `<context>/Dockerfile`).
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Extra build args for `--coverage` builds (e.g. `GOFLAGS: -cover`). An image with
    /// coverage args is "instrumented": its Deployments get the coverage env and volume.
    #[serde(default)]
    pub coverage_args: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigSpec {
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub config_maps: Vec<ConfigMapSpec>,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    pub tls: Option<TlsSpec>,
    /// Plain manifest files (RBAC, ...), templated, relative to `--source`.
    #[serde(default)]
    pub manifests: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMapSpec {
    pub name: String,
    pub namespace: Option<String>,
    /// key → file (relative to `--source`) whose contents become the value.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretSpec {
    pub name: String,
    pub namespace: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// Generated TLS material: a CA ConfigMap and a leaf Secret per named service.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsSpec {
    /// The CA ConfigMap's name (key `ca.crt`), e.g. `inter-service-ca`.
    pub ca_config_map: String,
    /// Services that get a `<name>-tls` Secret of type kubernetes.io/tls.
    #[serde(default)]
    pub services: Vec<String>,
    /// Names of RSA-2048 signing-key Secrets (`tls.key`, `tls.crt`), e.g. `datastorage-signing`.
    #[serde(default)]
    pub signing_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    pub node_port: u16,
    /// 0 or absent: a free host port is chosen when the cluster is created.
    #[serde(default)]
    pub host_port: u16,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Manifest templates, relative to `--source`.
    pub manifests: Vec<String>,
    /// Images (keys of `images`) the manifests use; the component waits for their loads.
    #[serde(default)]
    pub images: Vec<String>,
    /// Components or hooks applied before this one.
    #[serde(default, alias = "depends_on")]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub ready: ReadySpec,
    /// Extra template values for this component's manifests (`{{ values.KEY }}`).
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// What "ready" means for a component.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReadySpec {
    /// Wait for the Deployments, StatefulSets and Jobs in its manifests (default true).
    #[serde(default = "yes")]
    pub workloads: bool,
    /// An HTTP endpoint checked from the host, e.g. `http://localhost:{{ ports.ds-health }}/readyz`.
    pub http: Option<String>,
    /// Deadline for this component (humantime, e.g. `5m`; default 5m).
    pub timeout: Option<String>,
}

impl Default for ReadySpec {
    fn default() -> Self {
        ReadySpec {
            workloads: true,
            http: None,
            timeout: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// A Job (or other manifests) that must complete before what depends on it starts.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HookSpec {
    pub manifests: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
    /// Components or hooks that must be applied first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Deadline for completion (default 5m).
    pub timeout: Option<String>,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}
