//! The kind CLI and kind's conventions: node labels and names, the `kind-<name>` context, and
//! the kubeconfig file kind writes (which file, how it merges, its `<path>.lock`).
//!
//! The CLI is found as `$KPROV_KIND`, else `kind` on PATH, and always run with an argv (never
//! a shell string) through `tokio::process`; a cancelled call kills the child.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Every node container carries `io.x-k8s.kind.cluster=<cluster name>`.
pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
/// ... and `io.x-k8s.kind.role=<control-plane|worker|external-load-balancer>`.
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";
pub const CONTROL_PLANE: &str = "control-plane";
/// The port the API server listens on inside the control-plane node.
pub const API_SERVER_PORT: u16 = 6443;
/// Where kubeadm leaves the admin kubeconfig inside the control-plane node.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// The `apiVersion` of a kind cluster config.
pub const CONFIG_API_VERSION: &str = "kind.x-k8s.io/v1alpha4";

/// The kubeconfig context (and cluster and user entry) kind names after a cluster.
pub fn context_name(cluster: &str) -> String {
    format!("kind-{cluster}")
}

/// The container name kind gives the `index`-th (0-based) node of a role:
/// `n-control-plane`, `n-control-plane2`, `n-worker`, `n-worker2`...
pub fn node_name(cluster: &str, role: &str, index: usize) -> String {
    if index == 0 {
        format!("{cluster}-{role}")
    } else {
        format!("{cluster}-{role}{}", index + 1)
    }
}

/// The label filter that finds a cluster's node containers.
pub fn cluster_label(cluster: &str) -> String {
    format!("{CLUSTER_LABEL}={cluster}")
}

/// kind's rule for cluster names: they become container and host names.
pub fn validate_cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid cluster name {name:?}: use lowercase letters, digits, '-' and '.', starting with a letter or digit (at most 50 characters)"
        ))
    }
}

/// A failed kind call or kubeconfig operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action}: {detail}")]
pub struct KindError {
    pub action: String,
    pub detail: String,
    /// Everything the command printed (stdout then stderr), for retry decisions and reports.
    pub output: String,
    pub cancelled: bool,
}

impl KindError {
    fn new(action: impl Into<String>, detail: impl Into<String>) -> Self {
        KindError {
            action: action.into(),
            detail: detail.into(),
            output: String::new(),
            cancelled: false,
        }
    }
}

/// Output of `kind create cluster` that the seeds saw go away on a second try.
pub fn is_transient_create_failure(output: &str) -> bool {
    output.contains("crun: unknown version specified") || output.contains("OCI runtime error")
}

/// What `kind create cluster` is given.
#[derive(Debug, Clone, Default)]
pub struct CreateArgs {
    pub name: String,
    /// The kind config (JSON is valid YAML), sent on stdin as `--config -`.
    pub config: String,
    pub image: Option<String>,
    pub kubeconfig: Option<PathBuf>,
}

impl CreateArgs {
    /// `create cluster --name N --config - [--image I] --wait 0s [--kubeconfig P]`
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = ["create", "cluster", "--name", &self.name, "--config", "-"]
            .iter()
            .map(Into::into)
            .collect();
        if let Some(image) = &self.image {
            argv.push("--image".into());
            argv.push(image.into());
        }
        // kprov's own wait point checks readiness; kind's --wait only watches the control plane.
        argv.push("--wait".into());
        argv.push("0s".into());
        if let Some(k) = &self.kubeconfig {
            argv.push("--kubeconfig".into());
            argv.push(k.into());
        }
        argv
    }
}

/// The environment variable kind reads its provider (`docker`, `podman`, `nerdctl`) from.
pub const PROVIDER_ENV: &str = "KIND_EXPERIMENTAL_PROVIDER";

/// The provider kind must be told (`Some("podman")`: set [`PROVIDER_ENV`]; `None`: leave it
/// as it is) so that kind creates nodes on the engine kprov builds and loads on: `engine` is
/// kprov's engine (`docker` / `podman`, reached at `host`), `set` the [`PROVIDER_ENV`] kprov
/// was given. A provider other than the engine's is refused, naming both and the fix: kind
/// would make the nodes on one engine while kprov looks for them on another.
pub fn provider_for(
    engine: &str,
    host: &str,
    set: Option<&str>,
) -> Result<Option<&'static str>, String> {
    let wanted = match engine {
        "podman" => Some("podman"),
        _ => None,
    };
    match set.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(wanted),
        Some(p) if p == engine => Ok(wanted),
        Some(p) => Err(format!(
            "{PROVIDER_ENV} is {p}, but kprov's engine at {host} is {engine}: kind would create \
             the nodes with {p} while kprov builds, loads and looks for them on {engine}. Unset \
             {PROVIDER_ENV} (kprov tells kind the provider of its engine) or set it to {engine}, \
             or point DOCKER_HOST at a {p} engine"
        )),
    }
}

/// The kind command-line tool.
#[derive(Debug, Clone)]
pub struct KindCli {
    program: PathBuf,
    /// Set as [`PROVIDER_ENV`] for every kind command ([`KindCli::with_provider`]).
    provider: Option<&'static str>,
}

impl KindCli {
    /// `$KPROV_KIND`, else `kind` on PATH; `None` when neither exists (a `KPROV_KIND` that names
    /// no executable counts as none: [`KindCli::locate`] says why).
    pub fn find() -> Option<KindCli> {
        KindCli::locate().ok().flatten()
    }

    /// `$KPROV_KIND`, else `kind` on PATH; `Ok(None)` when kind is not on PATH, an error when
    /// `KPROV_KIND` is set but names no executable file (it is never silently passed over).
    pub fn locate() -> Result<Option<KindCli>, KindError> {
        KindCli::locate_from(std::env::var_os("KPROV_KIND"), std::env::var_os("PATH"))
    }

    /// [`KindCli::locate`] with the values of `KPROV_KIND` and `PATH` given.
    pub fn locate_from(
        kprov_kind: Option<OsString>,
        path: Option<OsString>,
    ) -> Result<Option<KindCli>, KindError> {
        if let Some(p) = kprov_kind.filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            let problem = match p.metadata() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "which does not exist",
                Err(_) => "which cannot be read",
                Ok(m) if !m.is_file() => "which is not a file",
                Ok(_) if !is_executable(&p) => "which is not executable",
                Ok(_) => return Ok(Some(KindCli::at(p))),
            };
            return Err(KindError::new(
                "find the kind CLI",
                format!(
                    "KPROV_KIND is {}, {problem} (point it at the kind binary, or unset it to use kind on PATH)",
                    p.display()
                ),
            ));
        }
        let Some(path) = path else {
            return Ok(None);
        };
        Ok(std::env::split_paths(&path)
            .map(|d| d.join("kind"))
            .find(|p| is_executable(p))
            .map(KindCli::at))
    }

    pub fn at(program: impl Into<PathBuf>) -> KindCli {
        KindCli {
            program: program.into(),
            provider: None,
        }
    }

    /// Every kind command runs with [`PROVIDER_ENV`] set to `provider` (from [`provider_for`]).
    pub fn with_provider(mut self, provider: Option<&'static str>) -> KindCli {
        self.provider = provider;
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs `kind create cluster`; each line it prints goes to `on_line`.
    pub async fn create_cluster(
        &self,
        args: &CreateArgs,
        cancel: &CancellationToken,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), KindError> {
        let action = format!("create kind cluster {}", args.name);
        self.run(
            &action,
            &args.argv(),
            Some(args.config.as_bytes()),
            cancel,
            on_line,
        )
        .await
        .map(|_| ())
    }

    /// `kind delete cluster --name N [--kubeconfig P]`.
    pub async fn delete_cluster(
        &self,
        name: &str,
        kubeconfig: Option<&Path>,
        cancel: &CancellationToken,
    ) -> Result<(), KindError> {
        let mut argv: Vec<OsString> = vec![
            "delete".into(),
            "cluster".into(),
            "--name".into(),
            name.into(),
        ];
        if let Some(k) = kubeconfig {
            argv.push("--kubeconfig".into());
            argv.push(k.into());
        }
        self.run(
            &format!("delete kind cluster {name}"),
            &argv,
            None,
            cancel,
            &mut |_| {},
        )
        .await
        .map(|_| ())
    }

    /// `kind get clusters`.
    pub async fn get_clusters(&self, cancel: &CancellationToken) -> Result<Vec<String>, KindError> {
        let out = self
            .run(
                "list kind clusters",
                &["get".into(), "clusters".into()],
                None,
                cancel,
                &mut |_| {},
            )
            .await?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("No kind"))
            .map(Into::into)
            .collect())
    }

    /// `kind get kubeconfig --name N`: the kubeconfig kind writes for the cluster (its server is
    /// the API server's published host address: the load balancer's in an HA cluster, as
    /// `networking.apiServerAddress` asked, `[::1]` for IPv6).
    pub async fn get_kubeconfig(
        &self,
        name: &str,
        cancel: &CancellationToken,
    ) -> Result<String, KindError> {
        let argv: Vec<OsString> = vec![
            "get".into(),
            "kubeconfig".into(),
            "--name".into(),
            name.into(),
        ];
        let out = self
            .run(
                &format!("get the kubeconfig of kind cluster {name}"),
                &argv,
                None,
                cancel,
                &mut |_| {},
            )
            .await?;
        Ok(out.stdout)
    }

    /// `kind version`.
    pub async fn version(&self, cancel: &CancellationToken) -> Result<String, KindError> {
        let out = self
            .run(
                "ask kind for its version",
                &["version".into()],
                None,
                cancel,
                &mut |_| {},
            )
            .await?;
        Ok(out.stdout.trim().to_string())
    }

    async fn run(
        &self,
        action: &str,
        argv: &[OsString],
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Captured, KindError> {
        let mut command = tokio::process::Command::new(&self.program);
        if let Some(provider) = self.provider {
            command.env(PROVIDER_ENV, provider);
        }
        let mut child = command
            .args(argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so cancellation can end kind and every child it started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                KindError::new(
                    action,
                    format!("cannot run {}: {e}", self.program.display()),
                )
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Written beside the output readers (a full pipe must not stall kind), then closed
            // so kind reads EOF. A kind that exits without reading explains itself in its output.
            let input = input.to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
        let forward = |reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>, is_err: bool| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            })
        };
        forward(Box::new(stdout), false);
        forward(Box::new(stderr), true);
        drop(tx);

        let mut captured = Captured::default();
        let status = loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some((is_err, line)) => {
                        on_line(&line);
                        let buf = if is_err { &mut captured.stderr } else { &mut captured.stdout };
                        buf.push_str(&line);
                        buf.push('\n');
                    }
                    None => break child.wait().await,
                },
                () = cancel.cancelled() => {
                    super::process::end_process_group(&mut child).await;
                    let mut e = KindError::new(action, "cancelled");
                    e.cancelled = true;
                    return Err(e);
                }
            }
        };
        let status =
            status.map_err(|e| KindError::new(action, format!("waiting for kind: {e}")))?;
        if status.success() {
            Ok(captured)
        } else {
            let output = format!("{}{}", captured.stdout, captured.stderr);
            Err(KindError {
                action: action.to_string(),
                detail: format!("kind exited with {status}:\n{}", tail(&output, 20)),
                output,
                cancelled: false,
            })
        }
    }
}

#[derive(Debug, Default)]
struct Captured {
    stdout: String,
    stderr: String,
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- kubeconfig, as kind writes it ----

/// The file kind (and kubectl) would merge a new context into: the explicit path; else of
/// $KUBECONFIG's list the only entry, or the first that exists, or the last; else ~/.kube/config.
pub fn kubeconfig_path_for_merge(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(env) = std::env::var_os("KUBECONFIG") {
        for p in std::env::split_paths(&env) {
            if !p.as_os_str().is_empty() && !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    match paths.len() {
        0 => home_dir().join(".kube").join("config"),
        1 => paths.remove(0),
        _ => paths
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .unwrap_or_else(|| paths.pop().expect("non-empty")),
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// kind's kubeconfig for a cluster, from the node's admin.conf: the cluster, user and context
/// all named `kind-<cluster>`, the server replaced by `server` (`https://` and the API server's
/// published address, [`api_server_endpoint`]). For when the kind CLI is not there to ask.
pub fn kind_kubeconfig(admin_conf: &str, cluster: &str, server: &str) -> Result<Value, KindError> {
    let action = format!("read {ADMIN_CONF} of cluster {cluster}");
    let conf: Value =
        serde_saphyr::from_str(admin_conf).map_err(|e| KindError::new(&action, e.to_string()))?;
    let first = |key: &str, inner: &str| -> Result<Value, KindError> {
        conf.get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|e| e.get(inner))
            .cloned()
            .ok_or_else(|| KindError::new(&action, format!("it has no {key}[0].{inner}")))
    };
    let mut cluster_entry = first("clusters", "cluster")?;
    let user_entry = first("users", "user")?;
    cluster_entry
        .as_object_mut()
        .ok_or_else(|| KindError::new(&action, "clusters[0].cluster is not a mapping"))?
        .insert("server".into(), Value::String(server.into()));
    let name = context_name(cluster);
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster_entry}],
        "users": [{"name": name, "user": user_entry}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }))
}

/// The `kind-<cluster>` cluster, user and context of a kubeconfig kind printed
/// (`kind get kubeconfig`), as an entry for [`write_kubeconfig`]: kept as kind wrote them.
pub fn kind_entries(kubeconfig: &str, cluster: &str) -> Result<Value, KindError> {
    let action = format!("read the kubeconfig kind gave for cluster {cluster}");
    let conf: Value =
        serde_saphyr::from_str(kubeconfig).map_err(|e| KindError::new(&action, e.to_string()))?;
    let name = Value::String(context_name(cluster));
    let mut entry = json!({"apiVersion": "v1", "kind": "Config", "current-context": name});
    for key in ["clusters", "users", "contexts"] {
        let found = conf
            .get(key)
            .and_then(Value::as_array)
            .and_then(|list| list.iter().find(|e| e.get("name") == Some(&name)))
            .cloned()
            .ok_or_else(|| KindError::new(&action, format!("it has no {key} entry {name}")))?;
        entry[key] = json!([found]);
    }
    if entry
        .pointer("/clusters/0/cluster/server")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(KindError::new(
            &action,
            format!("cluster {name} has no server"),
        ));
    }
    Ok(entry)
}

/// The role label of an HA cluster's load balancer, which then serves the API to the host.
pub const LOAD_BALANCER: &str = "external-load-balancer";

/// Where the host reaches the API server published by this node (kind's rule for the node
/// that serves it: the load balancer, else the one control plane), as `host:port` from the
/// node's inspect JSON: the `desktop.docker.io/ports/6443/tcp` label when set, else the first
/// binding of `6443/tcp` with the address Docker bound (`127.0.0.1`, `::1` as `[::1]`, or
/// whatever `networking.apiServerAddress` asked).
pub fn api_server_endpoint(inspect: &Value) -> Option<String> {
    let label = format!("desktop.docker.io/ports/{API_SERVER_PORT}/tcp");
    if let Some(v) = inspect
        .pointer("/Config/Labels")
        .and_then(|l| l.get(&label))
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        return Some(v.to_string());
    }
    let binding = inspect
        .pointer("/NetworkSettings/Ports")?
        .get(format!("{API_SERVER_PORT}/tcp"))?
        .as_array()?
        .first()?;
    let ip = binding.get("HostIp").and_then(Value::as_str).unwrap_or("");
    let port = binding.get("HostPort").and_then(Value::as_str)?;
    if port.is_empty() || port == "0" {
        return None;
    }
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// Merges `entry` (one cluster, user and context, as [`kind_kubeconfig`] makes) into `existing`
/// as kind does: entries of the same name replaced in place, others appended, other contexts
/// kept, the current context set to the new one.
pub fn merge_kubeconfig_value(existing: &mut Value, entry: &Value) {
    if !existing.is_object() {
        *existing = json!({});
    }
    let map = existing.as_object_mut().expect("object");
    for key in ["clusters", "users", "contexts"] {
        let list = map.entry(key).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let list = list.as_array_mut().expect("array");
        for new in entry
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match list.iter_mut().find(|e| e.get("name") == new.get("name")) {
                Some(slot) => *slot = new.clone(),
                None => list.push(new.clone()),
            }
        }
    }
    if let Some(current) = entry.get("current-context") {
        map.insert("current-context".into(), current.clone());
    }
    for (k, v) in [("apiVersion", "v1"), ("kind", "Config")] {
        map.entry(k).or_insert_with(|| Value::String(v.into()));
    }
}

/// Removes a cluster's `kind-<name>` entries (and the current context, if it was that one).
/// Returns whether anything was removed.
pub fn remove_from_kubeconfig_value(existing: &mut Value, cluster: &str) -> bool {
    let name = Value::String(context_name(cluster));
    let Some(map) = existing.as_object_mut() else {
        return false;
    };
    let mut removed = false;
    for key in ["clusters", "users", "contexts"] {
        if let Some(list) = map.get_mut(key).and_then(Value::as_array_mut) {
            let before = list.len();
            list.retain(|e| e.get("name") != Some(&name));
            removed |= list.len() != before;
        }
    }
    if map.get("current-context") == Some(&name) {
        map.insert("current-context".into(), Value::String(String::new()));
    }
    removed
}

/// Merges `entry` into the kubeconfig file at `path` under kind's `<path>.lock`, writing it
/// with mode 0600 (a new file, or an existing one tightened).
pub async fn write_kubeconfig(path: &Path, entry: &Value) -> Result<(), KindError> {
    let entry = entry.clone();
    edit_kubeconfig(path, move |v| {
        merge_kubeconfig_value(v, &entry);
        true
    })
    .await
    .map(|_| ())
}

/// Removes a cluster's entries from the kubeconfig file at `path`, under its lock.
pub async fn forget_kubeconfig(path: &Path, cluster: &str) -> Result<bool, KindError> {
    if !path.exists() {
        return Ok(false);
    }
    let cluster = cluster.to_string();
    edit_kubeconfig(path, move |v| remove_from_kubeconfig_value(v, &cluster)).await
}

async fn edit_kubeconfig(
    path: &Path,
    edit: impl FnOnce(&mut Value) -> bool + Send + 'static,
) -> Result<bool, KindError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || edit_kubeconfig_blocking(&path, edit))
        .await
        .map_err(|e| KindError::new("edit the kubeconfig", e.to_string()))?
}

/// The file a kubeconfig path names, its symlinks followed (a dangling link names the file it
/// would create, as writing through it would). Relative links resolve against their own
/// directory.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other(format!(
        "too many levels of symbolic links from {}",
        path.display()
    )))
}

fn edit_kubeconfig_blocking(
    path: &Path,
    edit: impl FnOnce(&mut Value) -> bool,
) -> Result<bool, KindError> {
    let action = format!("write kubeconfig {}", path.display());
    let err = |detail: String| KindError::new(&action, detail);
    // A symlinked kubeconfig (~/.kube/config -> a dotfiles checkout) stays a link: its target
    // is what gets written.
    let target = resolve_links(path).map_err(|e| err(e.to_string()))?;
    for file in [path, target.as_path()] {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    // kind and kubectl lock `<the path they were given>.lock`; a writer given the target locks
    // its own. Both are held (the given path's first), so neither kind of writer interleaves.
    let _lock = KubeconfigLock::acquire(path).map_err(err)?;
    let _target_lock = if target != path {
        Some(KubeconfigLock::acquire(&target).map_err(err)?)
    } else {
        None
    };
    let path = target.as_path();
    let mut value = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => json!({}),
        Ok(text) => serde_saphyr::from_str::<Value>(&text).map_err(|e| {
            err(format!(
                "cannot parse the existing file (left untouched): {e}"
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(err(e.to_string())),
    };
    if !edit(&mut value) {
        return Ok(false);
    }
    let text = serde_saphyr::to_string(&value).map_err(|e| err(e.to_string()))?;
    write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
    Ok(true)
}

/// Writes through a 0600 temp file renamed over `path`: never a half-written kubeconfig.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".kprov-{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// kind's (and client-go's) lock: `<path>.lock` created with O_EXCL, removed on drop.
struct KubeconfigLock(PathBuf);

impl KubeconfigLock {
    fn acquire(path: &Path) -> Result<KubeconfigLock, String> {
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        // Other writers hold it for milliseconds; a lock older than this loop is left over.
        let mut last = None;
        for attempt in 0..30 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(KubeconfigLock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(if attempt < 10 { 20 } else { 100 }));
                }
                Err(e) => return Err(format!("cannot create lock {}: {e}", lock.display())),
            }
        }
        Err(format!(
            "{} is held by another writer ({}); remove it if no kind or kprov is running",
            lock.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }
}

impl Drop for KubeconfigLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The published host port of each container port, from a container's inspect JSON
/// (`NetworkSettings.Ports`: `{"6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]}`).
pub fn published_ports(inspect: &Value) -> BTreeMap<u16, u16> {
    let mut ports = BTreeMap::new();
    let Some(map) = inspect
        .pointer("/NetworkSettings/Ports")
        .and_then(Value::as_object)
    else {
        return ports;
    };
    for (key, bindings) in map {
        let Some(container) = key.split('/').next().and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let host = bindings
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| {
                b.get("HostPort")
                    .and_then(Value::as_str)?
                    .parse::<u16>()
                    .ok()
            })
            .find(|p| *p != 0);
        if let Some(host) = host {
            ports.insert(container, host);
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN_CONF_SAMPLE: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://t1-control-plane:6443
  name: t1
contexts:
- context:
    cluster: t1
    user: kubernetes-admin
  name: kubernetes-admin@t1
current-context: kubernetes-admin@t1
kind: Config
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn node_names_follow_kind() {
        assert_eq!(node_name("c", "control-plane", 0), "c-control-plane");
        assert_eq!(node_name("c", "control-plane", 1), "c-control-plane2");
        assert_eq!(node_name("c", "worker", 2), "c-worker3");
        assert_eq!(context_name("c"), "kind-c");
    }

    #[test]
    fn create_argv_sends_the_config_on_stdin_and_does_not_wait() {
        let args = CreateArgs {
            name: "x".into(),
            config: "{}".into(),
            image: Some("kindest/node:v1".into()),
            kubeconfig: Some("/k".into()),
        };
        let argv: Vec<String> = args
            .argv()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            argv,
            [
                "create",
                "cluster",
                "--name",
                "x",
                "--config",
                "-",
                "--image",
                "kindest/node:v1",
                "--wait",
                "0s",
                "--kubeconfig",
                "/k"
            ]
        );
    }

    #[test]
    fn the_seeds_transient_create_errors_are_recognised() {
        assert!(is_transient_create_failure(
            "ERROR: failed to create cluster: crun: unknown version specified"
        ));
        assert!(is_transient_create_failure("... OCI runtime error: ..."));
        assert!(!is_transient_create_failure(
            "node(s) already exist for a cluster with the name \"x\""
        ));
    }

    #[test]
    fn kind_kubeconfig_renames_entries_and_points_at_the_published_port() {
        let k = kind_kubeconfig(ADMIN_CONF_SAMPLE, "t1", "https://127.0.0.1:40001").unwrap();
        assert_eq!(k["current-context"], "kind-t1");
        assert_eq!(k["clusters"][0]["name"], "kind-t1");
        assert_eq!(
            k["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:40001"
        );
        assert_eq!(
            k["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(k["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(
            k["contexts"][0]["context"],
            json!({"cluster": "kind-t1", "user": "kind-t1"})
        );
    }

    #[test]
    fn merge_replaces_same_named_entries_and_keeps_the_others() {
        let mut existing = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "other", "cluster": {"server": "https://o"}}, {"name": "kind-t1", "cluster": {"server": "https://old"}}],
            "users": [{"name": "other", "user": {}}],
            "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
            "current-context": "other",
        });
        let entry = kind_kubeconfig(ADMIN_CONF_SAMPLE, "t1", "https://127.0.0.1:40001").unwrap();
        merge_kubeconfig_value(&mut existing, &entry);
        let clusters = existing["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[1]["cluster"]["server"], "https://127.0.0.1:40001");
        assert_eq!(existing["contexts"].as_array().unwrap().len(), 2);
        assert_eq!(existing["current-context"], "kind-t1");
        assert!(remove_from_kubeconfig_value(&mut existing, "t1"));
        assert_eq!(existing["clusters"].as_array().unwrap().len(), 1);
        assert_eq!(existing["current-context"], "");
        assert!(!remove_from_kubeconfig_value(&mut existing, "t1"));
    }

    #[tokio::test]
    async fn kubeconfig_is_written_0600_merged_and_unlocked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "apiVersion: v1\nkind: Config\ncontexts:\n- name: keep\n  context: {cluster: c, user: u}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let entry = kind_kubeconfig(ADMIN_CONF_SAMPLE, "t1", "https://127.0.0.1:1").unwrap();
        write_kubeconfig(&path, &entry).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let names: Vec<&str> = back["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["keep", "kind-t1"]);
        assert!(!dir.path().join("sub/config.lock").exists());
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn kinds_own_entries_are_kept_as_kind_wrote_them() {
        let printed = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://[::1]:40123
    tls-server-name: t1-control-plane
  name: kind-t1
contexts:
- context:
    cluster: kind-t1
    user: kind-t1
  name: kind-t1
current-context: kind-t1
kind: Config
preferences: {}
users:
- name: kind-t1
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";
        let entry = kind_entries(printed, "t1").unwrap();
        assert_eq!(
            entry["clusters"],
            json!([{"name": "kind-t1", "cluster": {
                "certificate-authority-data": "Q0E=",
                "server": "https://[::1]:40123",
                "tls-server-name": "t1-control-plane"}}])
        );
        assert_eq!(entry["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(entry["current-context"], "kind-t1");
        let e = kind_entries(printed, "t2").unwrap_err();
        assert!(
            e.to_string().contains("no clusters entry \"kind-t2\""),
            "{e}"
        );
        let e = kind_entries(
            &printed.replace("server: https://[::1]:40123", "server: ''"),
            "t1",
        )
        .unwrap_err();
        assert!(e.to_string().contains("has no server"), "{e}");
    }

    #[test]
    fn the_api_server_endpoint_is_the_address_docker_published() {
        let binding = |ip: &str| json!({"NetworkSettings": {"Ports": {"6443/tcp": [{"HostIp": ip, "HostPort": "40123"}]}}});
        assert_eq!(
            api_server_endpoint(&binding("127.0.0.1")).as_deref(),
            Some("127.0.0.1:40123")
        );
        assert_eq!(
            api_server_endpoint(&binding("192.168.1.7")).as_deref(),
            Some("192.168.1.7:40123")
        );
        assert_eq!(
            api_server_endpoint(&binding("::1")).as_deref(),
            Some("[::1]:40123")
        );
        let mut desktop = binding("127.0.0.1");
        desktop["Config"] =
            json!({"Labels": {"desktop.docker.io/ports/6443/tcp": "10.0.1.7:6443"}});
        assert_eq!(
            api_server_endpoint(&desktop).as_deref(),
            Some("10.0.1.7:6443")
        );
        assert_eq!(
            api_server_endpoint(&json!({"NetworkSettings": {"Ports": {"6443/tcp": null}}})),
            None
        );
    }

    #[tokio::test]
    async fn a_symlinked_kubeconfig_stays_a_link_and_its_target_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        std::fs::create_dir_all(&dotfiles).unwrap();
        std::fs::write(
            dotfiles.join("kubeconfig"),
            "apiVersion: v1\nkind: Config\ncontexts:\n- name: keep\n  context: {cluster: c, user: u}\n",
        )
        .unwrap();
        let kube = dir.path().join("home/.kube");
        std::fs::create_dir_all(&kube).unwrap();
        // A chain: config -> current (relative) -> dotfiles/kubeconfig (absolute).
        std::os::unix::fs::symlink(dotfiles.join("kubeconfig"), kube.join("current")).unwrap();
        std::os::unix::fs::symlink("current", kube.join("config")).unwrap();
        let path = kube.join("config");
        let entry = kind_kubeconfig(ADMIN_CONF_SAMPLE, "t1", "https://127.0.0.1:1").unwrap();
        write_kubeconfig(&path, &entry).await.unwrap();
        for link in ["config", "current"] {
            assert!(
                std::fs::symlink_metadata(kube.join(link))
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{link} is still a link"
            );
        }
        let back: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(dotfiles.join("kubeconfig")).unwrap())
                .unwrap();
        let names: Vec<&str> = back["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["keep", "kind-t1"]);
        assert!(forget_kubeconfig(&path, "t1").await.unwrap());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let back = std::fs::read_to_string(dotfiles.join("kubeconfig")).unwrap();
        assert!(!back.contains("kind-t1"), "{back}");
        // Nothing left beside the link or the target: no locks, no temp files.
        for d in [&kube, &dotfiles] {
            let mut left: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            left.sort();
            assert!(
                left == ["config", "current"] || left == ["kubeconfig"],
                "{left:?}"
            );
        }
        // A dangling link: the file it names is created, the link kept.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("new/kubeconfig"), &dangling).unwrap();
        write_kubeconfig(&dangling, &entry).await.unwrap();
        assert!(dir.path().join("new/kubeconfig").is_file());
        assert!(
            std::fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[tokio::test]
    async fn a_held_lock_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(dir.path().join("config.lock"), "").unwrap();
        let entry = kind_kubeconfig(ADMIN_CONF_SAMPLE, "t1", "https://127.0.0.1:1").unwrap();
        let e = write_kubeconfig(&path, &entry).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("config.lock is held by another writer"),
            "{e}"
        );
        assert!(!path.exists());
    }

    /// A stand-in `kind` (a shell script) that records its argv and stdin, then runs `rest`.
    fn fake_kind(dir: &Path, rest: &str) -> KindCli {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("kind");
        let script = format!(
            "#!/bin/sh\necho \"$@\" > '{0}/argv'\ncat > '{0}/stdin'\necho $$ > '{0}/pid'\n{rest}\n",
            dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        KindCli::at(path)
    }

    #[tokio::test]
    async fn create_passes_argv_and_the_config_on_stdin_and_reports_output_lines() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_kind(
            dir.path(),
            "echo 'Creating cluster' >&2\necho ' ✓ Ensuring node image'",
        );
        let args = CreateArgs {
            name: "c1".into(),
            config: "{\"kind\":\"Cluster\"}".into(),
            ..Default::default()
        };
        let mut lines = Vec::new();
        cli.create_cluster(&args, &CancellationToken::new(), &mut |l| {
            lines.push(l.to_string())
        })
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("argv")).unwrap(),
            "create cluster --name c1 --config - --wait 0s\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stdin")).unwrap(),
            "{\"kind\":\"Cluster\"}"
        );
        lines.sort();
        assert_eq!(lines, [" ✓ Ensuring node image", "Creating cluster"]);
    }

    #[tokio::test]
    async fn a_failed_create_keeps_kinds_output_for_the_retry_decision() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_kind(
            dir.path(),
            "echo 'ERROR: failed to create cluster: OCI runtime error' >&2\nexit 1",
        );
        let args = CreateArgs {
            name: "c1".into(),
            config: "{}".into(),
            ..Default::default()
        };
        let e = cli
            .create_cluster(&args, &CancellationToken::new(), &mut |_| {})
            .await
            .unwrap_err();
        assert!(is_transient_create_failure(&e.output));
        assert!(
            e.to_string()
                .starts_with("create kind cluster c1: kind exited with exit status: 1"),
            "{e}"
        );
        assert!(!e.cancelled);
    }

    #[tokio::test]
    async fn cancelling_a_create_kills_kind() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_kind(dir.path(), "exec sleep 60");
        let args = CreateArgs {
            name: "c1".into(),
            config: "{}".into(),
            ..Default::default()
        };
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let pid_file = dir.path().join("pid");
        tokio::spawn(async move {
            while !pid_file.exists() {
                tokio::task::yield_now().await;
            }
            trigger.cancel();
        });
        let e = cli
            .create_cluster(&args, &cancel, &mut |_| {})
            .await
            .unwrap_err();
        assert!(e.cancelled);
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "kind (pid {pid}) was ended and reaped"
        );
    }

    #[test]
    fn published_ports_read_docker_inspect() {
        let inspect = json!({"NetworkSettings": {"Ports": {
            "6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}],
            "30080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
            "80/tcp": null,
        }}});
        assert_eq!(
            published_ports(&inspect),
            BTreeMap::from([(6443, 41234), (30080, 8080)])
        );
    }

    #[test]
    fn a_kprov_kind_that_names_no_executable_says_so() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let on_path = dir.path().join("bin");
        std::fs::create_dir_all(&on_path).unwrap();
        let kind = on_path.join("kind");
        std::fs::write(&kind, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = Some(on_path.clone().into_os_string());
        let missing = dir.path().join("nope/kind");
        let e = KindCli::locate_from(Some(missing.clone().into()), path.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "find the kind CLI: KPROV_KIND is {}, which does not exist (point it at the kind binary, or unset it to use kind on PATH)",
                missing.display()
            )
        );
        let e = KindCli::locate_from(Some(on_path.clone().into()), path.clone()).unwrap_err();
        assert!(e.to_string().contains("which is not a file"), "{e}");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let e = KindCli::locate_from(Some(plain.into()), path.clone()).unwrap_err();
        assert!(e.to_string().contains("which is not executable"), "{e}");
        // Set and right; unset or empty: PATH; neither: none.
        let found = KindCli::locate_from(Some(kind.clone().into()), None).unwrap();
        assert_eq!(found.unwrap().program(), kind);
        for unset in [None, Some(OsString::new())] {
            let found = KindCli::locate_from(unset, path.clone()).unwrap();
            assert_eq!(found.unwrap().program(), kind);
        }
        assert!(KindCli::locate_from(None, None).unwrap().is_none());
    }

    #[test]
    fn kind_is_told_podman_when_the_engine_is_podman_and_a_mismatch_is_refused() {
        let host = "unix:///run/kprov-podman/podman.sock";
        assert_eq!(provider_for("podman", host, None), Ok(Some("podman")));
        assert_eq!(provider_for("podman", host, Some("")), Ok(Some("podman")));
        assert_eq!(
            provider_for("podman", host, Some("podman")),
            Ok(Some("podman"))
        );
        assert_eq!(provider_for("docker", host, None), Ok(None));
        assert_eq!(provider_for("docker", host, Some("docker")), Ok(None));
        let e = provider_for("podman", host, Some("docker")).unwrap_err();
        assert!(e.starts_with("KIND_EXPERIMENTAL_PROVIDER is docker, but kprov's engine at unix:///run/kprov-podman/podman.sock is podman"), "{e}");
        assert!(e.contains("Unset KIND_EXPERIMENTAL_PROVIDER"), "{e}");
        let e = provider_for("docker", "unix:///var/run/docker.sock", Some("podman")).unwrap_err();
        assert!(
            e.contains("is podman, but kprov's engine at unix:///var/run/docker.sock is docker"),
            "{e}"
        );
        assert!(provider_for("docker", host, Some("nerdctl")).is_err());
    }

    #[tokio::test]
    async fn the_provider_reaches_every_kind_command() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_kind(
            dir.path(),
            "echo \"provider=${KIND_EXPERIMENTAL_PROVIDER:-unset}\"",
        )
        .with_provider(Some("podman"));
        let out = cli.version(&CancellationToken::new()).await.unwrap();
        assert_eq!(out, "provider=podman");
        let cli = cli.with_provider(None);
        let out = cli.version(&CancellationToken::new()).await.unwrap();
        assert!(out.starts_with("provider="), "{out}");
    }

    #[test]
    fn cluster_names_are_checked_like_kind() {
        assert!(validate_cluster_name("aianalysis-e2e").is_ok());
        assert!(validate_cluster_name("Bad_Name").is_err());
        assert!(validate_cluster_name("").is_err());
    }
}
