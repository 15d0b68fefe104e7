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
    /// Binaries built on the host (kubernaut's `go build` fast path), for thin runtime images
    /// that copy them: each a command with declared inputs and outputs, skipped when its
    /// inputs are unchanged.
    #[serde(default)]
    pub binaries: BTreeMap<String, BinarySpec>,
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
    /// Values produced at run time, for later templates as `{{ runtime.NAME }}`.
    #[serde(default)]
    pub runtime: BTreeMap<String, RuntimeSpec>,
    /// Steps run once what they follow is ready (seeding, status patches, calls, restarts).
    #[serde(default)]
    pub steps: BTreeMap<String, StepSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The Kind cluster name (`kind-<name>` is the kubeconfig context).
    pub name: Option<String>,
    /// The user's own kind config file (relative to `--source`), patched rather than replaced.
    pub kind_config: Option<String>,
    /// The directory kind is run from, relative to `--source` (default: `--source`): the
    /// relative `extraMounts[].hostPath`s of `kindConfig` resolve against it, as kind resolves
    /// them against its working directory (kubernaut's suites run kind from their package
    /// directory, `test/e2e/<suite>`, unless they ask for the repository root).
    pub working_dir: Option<String>,
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
    /// `local`: images reach the nodes through kind's local registry (`kprov-registry` on
    /// 127.0.0.1:5001, each node's containerd given a mirror for it, the
    /// `local-registry-hosting` ConfigMap of KEP-1755): pushed once, pulled by every node.
    pub registry: Option<String>,
}

impl ClusterSpec {
    /// `registry: local`: images go through the local registry instead of being streamed.
    pub fn local_registry(&self) -> bool {
        self.registry.as_deref() == Some("local")
    }
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
    /// Where this run takes the image from instead (`kprov up --image`, `--image-registry`):
    /// set from the command line by [`crate::profile::sources::supply`], never read from a file.
    #[serde(skip)]
    pub supplied: Option<Supplied>,
}

/// An image this run does not build or pull as the profile says.
#[derive(Debug, Clone, PartialEq)]
pub enum Supplied {
    /// `--image KEY=REF`: an image already in the engine, used as it is (never pulled).
    Local(String),
    /// `--image-registry R --image-tag T`: `R/<name>:T`. `nodes_pull`: the nodes pull it
    /// (rendered `imagePullPolicy: IfNotPresent`); otherwise kprov pulls it once and streams
    /// it into the nodes like a built image.
    Registry { reference: String, nodes_pull: bool },
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
    /// Host-built binaries (`binaries:`) this image's context holds: built first, and their
    /// outputs, being files of the context, are part of the image's inputs.
    #[serde(default)]
    pub binaries: Vec<String>,
}

/// A command run on the host that writes files (a `go build -o bin/x ./cmd/x`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BinarySpec {
    /// The program and its arguments (argv, never a shell string); run in `--source`.
    pub command: Vec<String>,
    /// Added to the environment (`CGO_ENABLED: "0"`, `GOOS: linux`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Added under `--coverage` (`GOFLAGS: -cover`).
    #[serde(default)]
    pub coverage_env: BTreeMap<String, String>,
    /// Files or globs (relative to `--source`) whose contents decide whether it runs again.
    pub inputs: Vec<String>,
    /// The files it writes (relative to `--source`); all must exist after it ran.
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigSpec {
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    #[serde(default)]
    pub config_maps: Vec<ConfigMapSpec>,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    pub tls: Option<TlsSpec>,
    /// Plain manifest files (RBAC, ...), templated, relative to `--source`.
    #[serde(default)]
    pub manifests: Vec<ManifestEntry>,
}

/// A manifest: a file of the source tree (a template), or one from elsewhere (a URL pinned
/// by sha256, a kustomize directory, a Helm chart), applied as it comes.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestEntry {
    Path(String),
    Remote(crate::tasks::remote::RemoteSource),
}

/// A string is a file; a mapping is a source from elsewhere, whose own errors are kept (an
/// untagged enum would only say that nothing matched).
impl<'de> Deserialize<'de> for ManifestEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = ManifestEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a manifest file, or a mapping with url, kustomize or helm")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ManifestEntry, E> {
                Ok(ManifestEntry::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ManifestEntry, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                crate::tasks::remote::RemoteSource::deserialize(d).map(ManifestEntry::Remote)
            }
        }
        d.deserialize_any(Entry)
    }
}

impl ManifestEntry {
    /// The file it names, for a plain file.
    pub fn path(&self) -> Option<&str> {
        match self {
            ManifestEntry::Path(p) => Some(p),
            ManifestEntry::Remote(_) => None,
        }
    }
}

/// A namespace: its name alone, or with labels and annotations.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NamespaceSpec {
    Name(String),
    Full(NamespaceDetail),
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceDetail {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl NamespaceSpec {
    pub fn name(&self) -> &str {
        match self {
            NamespaceSpec::Name(n) => n,
            NamespaceSpec::Full(d) => &d.name,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMapSpec {
    pub name: String,
    pub namespace: Option<String>,
    /// key → file (relative to `--source`) whose contents become the value; a glob key
    /// (`"*.sql": migrations/*.sql`) takes every matching file under its file name
    /// ([`Profile::config_map_files`](super::Profile::config_map_files)).
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
    /// key → file whose contents become the value: relative to `--source` (or `kprov:`), or a
    /// host file outside it (`~/…` under $HOME, or an absolute path), never printed.
    #[serde(default)]
    pub files: BTreeMap<String, SecretFile>,
    /// Skip the whole Secret (and its `serviceAccounts` links) when one of its files is absent.
    #[serde(default)]
    pub optional: bool,
    /// ServiceAccounts of the Secret's namespace whose `imagePullSecrets` get this Secret, the
    /// others kept (where `kubectl patch serviceaccount NAME -p '{"imagePullSecrets": …}'`
    /// replaces the list), once each exists. Only for image pull Secrets
    /// (`kubernetes.io/dockerconfigjson`).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Components (waited for until ready), hooks and steps (done) the Secret follows: it is
    /// then applied by its own task (`secret:NAMESPACE/NAME`) instead of the config batch,
    /// for a namespace or ServiceAccount that one of them makes (Tekton's release).
    #[serde(default)]
    pub after: Vec<String>,
}

impl SecretSpec {
    /// The namespace the Secret goes into: its own, or the profile's `namespace`.
    pub fn namespace_or<'a>(&'a self, profile_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(profile_namespace)
    }

    /// Applied by its own task after what it follows, not by the config batch.
    pub fn is_late(&self) -> bool {
        !self.after.is_empty()
    }
}

/// A Secret's file: a path, or `{path, optional}` (an absent optional file leaves its key out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretFile {
    pub path: String,
    pub optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretFileDetail {
    path: String,
    #[serde(default)]
    optional: bool,
}

/// A string is the path; a mapping is `{path, optional}`, whose own errors are kept (an
/// untagged enum would only say that nothing matched).
impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct File;
        impl<'de> serde::de::Visitor<'de> for File {
            type Value = SecretFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file path, or a mapping with path and optional")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretFile, E> {
                Ok(SecretFile {
                    path: v.to_string(),
                    optional: false,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretFile, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                let f = SecretFileDetail::deserialize(d)?;
                Ok(SecretFile {
                    path: f.path,
                    optional: f.optional,
                })
            }
        }
        d.deserialize_any(File)
    }
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
    /// Leaf certificates, each with its own Secret name and SAN list (templated).
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    /// A host file the CA's PEM is written to (templated, e.g.
    /// `{{ kubeconfigDir }}/inter-service-ca.pem`), for host-side clients.
    pub ca_file: Option<String>,
}

/// One leaf certificate: a kubernetes.io/tls Secret signed by the CA.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The Secret's name, e.g. `datastorage-tls`.
    pub secret: String,
    pub namespace: Option<String>,
    /// DNS names and IP addresses (templated: `data-storage-service.{{ namespace }}.svc`).
    pub sans: Vec<String>,
}

/// An object kprov reads or changes by name (`kind: ActionType`, `apiVersion: kubernaut.ai/v1`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectSpec {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Default: the profile's namespace (ignored for cluster-scoped kinds).
    pub namespace: Option<String>,
}

/// A value produced at run time. Exactly one source is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// A TokenRequest for a ServiceAccount.
    pub service_account_token: Option<TokenSpec>,
    /// A field of an object, once the field is set.
    pub field: Option<FieldSpec>,
    /// A key of a Secret or ConfigMap (a Secret's data decoded).
    pub key: Option<KeySpec>,
    /// What a hook's Job produced.
    pub job_output: Option<JobOutputSpec>,
    /// A field of the JSON an HTTP step's request was answered with.
    pub http_response: Option<HttpResponseSpec>,
    /// Components, hooks or steps that must be done before the value can be read (default:
    /// the configuration batch).
    #[serde(default)]
    pub after: Vec<String>,
    /// Deadline for the value to appear (humantime; default 2m).
    pub timeout: Option<String>,
    /// Written to `kprov up --export-values FILE` for the caller (a suite's setup); values are
    /// secrets until marked, so none is exported unless it says so.
    #[serde(default)]
    pub export: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenSpec {
    /// The ServiceAccount's name.
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Default 3600.
    pub expiration_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldSpec {
    #[serde(flatten)]
    pub object: ObjectSpec,
    /// A dotted path (`.metadata.uid`, `.status.workflowId`, `.spec.ports[0].nodePort`).
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeySpec {
    /// `Secret` (default) or `ConfigMap`.
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub key: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobOutputSpec {
    /// The hook whose Job produced it.
    pub hook: String,
    /// A ConfigMap the Job writes, and the key to read...
    pub config_map: Option<String>,
    pub key: Option<String>,
    /// ...or a regular expression matched against the Job's log: its first capture group (or
    /// the whole match) is the value.
    pub log_pattern: Option<String>,
}

/// A field of the JSON body an `http` step's request was answered with (the answer that
/// ended the step: one of its `expectStatus`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpResponseSpec {
    /// The step (it must have `http:`); the value follows it.
    pub step: String,
    /// A dotted path into the body, as for `field` (`.workflowId`, `.workflows[0].workflowId`).
    pub path: String,
}

/// A step run once what it follows is ready. Exactly one action is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepSpec {
    /// Components (waited for until ready), hooks and steps (done) this step follows.
    #[serde(default)]
    pub after: Vec<String>,
    /// Manifests to apply (custom resources, webhook configurations), templated.
    #[serde(default)]
    pub apply: Vec<ManifestEntry>,
    /// Images the applied objects run (test fixtures' pods): loaded before it applies.
    #[serde(default)]
    pub images: Vec<String>,
    /// Status to set through the `/status` subresource, per object.
    #[serde(default)]
    pub patch_status: Vec<StatusPatchSpec>,
    /// An HTTP request from the host, retried until it answers as expected.
    pub http: Option<HttpStepSpec>,
    /// Workloads whose rollout is restarted (as `kubectl rollout restart`).
    #[serde(default)]
    pub rollout_restart: Vec<ObjectSpec>,
    /// A host command (argv, never a shell string) with KUBECONFIG, KPROV_CONTEXT and
    /// KPROV_HOST_PORT_<NAME> in its environment.
    #[serde(default)]
    pub command: Vec<String>,
    /// Deadline (humantime; default 5m), covering the wait for what it follows.
    pub timeout: Option<String>,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusPatchSpec {
    #[serde(flatten)]
    pub object: ObjectSpec,
    /// The status fields to set (templated strings inside are rendered).
    pub status: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpStepSpec {
    /// Default GET.
    pub method: Option<String>,
    /// Templated: `http://127.0.0.1:{{ hostPorts.ds }}/api/v1/workflows`.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body, templated.
    pub body: Option<String>,
    /// The request body from a file (relative to `--source`, or `kprov:`), templated as a
    /// manifest is; instead of `body`.
    pub body_file: Option<String>,
    /// Statuses that count as done (default: any 2xx).
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// HTTP basic authentication (an `Authorization: Basic …` header), templated.
    pub basic_auth: Option<BasicAuthSpec>,
    /// Polling: an expected answer ends the step only when its JSON body contains one of
    /// these (see [`crate::provision::steps::json_contains`]); until then it is asked again.
    #[serde(default)]
    pub until: Vec<serde_json::Value>,
    /// An expected answer whose JSON body contains one of these fails the step at once.
    #[serde(default)]
    pub fail_if: Vec<serde_json::Value>,
}

impl HttpStepSpec {
    /// Every templated string of the request, with its field path under `http`.
    pub fn templated(&self) -> Vec<(Vec<&str>, &str)> {
        let mut out = vec![(vec!["url"], self.url.as_str())];
        for (k, v) in &self.headers {
            out.push((vec!["headers", k.as_str()], v.as_str()));
        }
        if let Some(b) = &self.body {
            out.push((vec!["body"], b.as_str()));
        }
        if let Some(a) = &self.basic_auth {
            out.push((vec!["basicAuth", "username"], a.username.as_str()));
            out.push((vec!["basicAuth", "password"], a.password.as_str()));
        }
        out
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthSpec {
    pub username: String,
    pub password: String,
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
    pub manifests: Vec<ManifestEntry>,
    /// Images (keys of `images`) the manifests use; the component waits for their loads.
    #[serde(default)]
    pub images: Vec<String>,
    /// Components, hooks or steps applied or done before this one.
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
    pub manifests: Vec<ManifestEntry>,
    #[serde(default)]
    pub images: Vec<String>,
    /// Components, hooks or steps that must be applied or done first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Deadline for completion (default 5m).
    pub timeout: Option<String>,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}
