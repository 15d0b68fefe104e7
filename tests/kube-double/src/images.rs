//! The kubelet's image work on a sandbox node, done for real against the node's containerd:
//! what it holds (`ctr -n k8s.io images ls`) and pulling an image the way the CRI plugin
//! pulls for the kubelet: through the registry hosts directory the plugin is configured with
//! (`plugins."io.containerd.grpc.v1.cri".registry.config_path`, as kind's
//! `containerdConfigPatches` set it, read from `containerd config dump`) and into the
//! plugin's snapshotter. No `config_path`, no hosts directory: a `localhost:5001/…` reference
//! then goes to the node's own loopback, as it would on a kind node without the patch.
//!
//! Runs in the double's own node, or in a worker's node agent ([`crate::agent`]).

use std::collections::BTreeMap;

/// The node's images (normalised reference → digest), or why they could not be listed.
pub type NodeImages = Result<BTreeMap<String, String>, String>;

/// The commands this node's image work runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub ctr: String,
    pub containerd: String,
}

/// `ctr -n k8s.io images ls` on this node: normalised reference → digest.
pub async fn list(tools: &Tools) -> NodeImages {
    let ctr = &tools.ctr;
    let out = tokio::process::Command::new(ctr)
        .args(["-n", "k8s.io", "images", "ls"])
        .output()
        .await
        .map_err(|e| format!("failed to run `{ctr} -n k8s.io images ls`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{ctr} -n k8s.io images ls` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut images = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let (Some(r), Some(d)) = (cols.first(), cols.get(2)) {
            images.insert(r.to_string(), d.to_string());
        }
    }
    Ok(images)
}

/// What the CRI plugin of this node's containerd pulls with.
#[derive(Debug, Clone, Default, PartialEq)]
struct CriPull {
    /// The first directory of `registry.config_path` (hosts.toml files per registry host).
    hosts_dir: Option<String>,
    snapshotter: Option<String>,
}

/// Reads the CRI plugin's registry `config_path` and snapshotter from a config dump (config
/// version 2, as the sandbox's containerd 1.6 and kind's nodes before containerd 2 write it).
fn cri_pull(config: &str) -> Result<CriPull, String> {
    let table: toml::Table = config
        .parse()
        .map_err(|e: toml::de::Error| format!("`containerd config dump` is not TOML: {e}"))?;
    let cri = table
        .get("plugins")
        .and_then(|p| p.get("io.containerd.grpc.v1.cri"));
    let at = |path: &[&str]| {
        let mut v = cri?;
        for key in path {
            v = v.get(*key)?;
        }
        v.as_str().filter(|s| !s.is_empty()).map(|s| s.to_string())
    };
    Ok(CriPull {
        hosts_dir: at(&["registry", "config_path"])
            .map(|p| p.split(':').next().unwrap_or_default().to_string()),
        snapshotter: at(&["containerd", "snapshotter"]),
    })
}

async fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("failed to run `{cmd} {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        // ctr logs "trying next host" lines before its one `ctr: …` line: that line is the answer.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let answer = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("ctr: "))
            .unwrap_or_else(|| stderr.trim());
        Err(answer.trim().to_string())
    }
}

/// Pulls `image` (normalised, as containerd names it) into the node's `k8s.io` namespace as
/// the CRI plugin would; returns its digest, or the error in the words the kubelet reports
/// (`failed to pull and unpack image "…": …`).
pub async fn pull(tools: &Tools, image: &str) -> Result<String, String> {
    let config = run(&tools.containerd, &["config", "dump"])
        .await
        .map_err(|e| format!("read the node's containerd config: {e}"))?;
    let cri = cri_pull(&config)?;
    let mut args = vec!["-n", "k8s.io", "images", "pull"];
    if let Some(d) = &cri.hosts_dir {
        args.extend(["--hosts-dir", d]);
    }
    if let Some(s) = &cri.snapshotter {
        args.extend(["--snapshotter", s]);
    }
    args.push(image);
    run(&tools.ctr, &args)
        .await
        .map_err(|e| format!("failed to pull and unpack image \"{image}\": {e}"))?;
    let images = list(tools).await?;
    images.get(image).cloned().ok_or_else(|| {
        format!("failed to pull and unpack image \"{image}\": the pull ended but the node does not list it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cri_plugins_hosts_directory_and_snapshotter_come_from_the_config_dump() {
        let dump = r#"version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
"#;
        assert_eq!(
            cri_pull(dump).unwrap(),
            CriPull {
                hosts_dir: Some("/etc/containerd/certs.d".into()),
                snapshotter: Some("native".into())
            }
        );
        // Without kind's patch the plugin has no hosts directory.
        let bare =
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n";
        assert_eq!(cri_pull(bare).unwrap(), CriPull::default());
        assert!(cri_pull("not = [toml").is_err());
    }
}
