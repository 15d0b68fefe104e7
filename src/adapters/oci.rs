//! OCI image facts kprov needs without a registry: platforms, and (see [`single_platform`])
//! image archives cut down to the one platform the nodes run.

use std::fmt;

/// An OCI platform: `os/architecture[/variant]`, with Go's names (`amd64`, `arm64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<architecture>`.
    pub fn linux(architecture: &str) -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// The platform of this machine: the engine's and (with Kind, whose nodes are containers
    /// on the same engine) the nodes'.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            other => other,
        };
        let mut p = Platform::linux(architecture);
        if architecture == "arm" {
            p.variant = Some("v7".to_string());
        }
        p
    }

    /// Parses `os/architecture[/variant]`.
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?;
        let architecture = parts.next().filter(|s| !s.is_empty())?;
        let variant = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An OCI image index, OCI's media type.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker manifest list (the index's Docker name).
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation BuildKit puts on attestation manifests inside an index.
const ATTESTATION_ANNOTATION: &str = "vnd.docker.reference.type";
/// The annotation containerd names images by.
const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// Blobs up to this size are kept while streaming, in case they are an index or manifest.
const KEEP_BLOB_MAX: u64 = 1 << 20;
/// At most this much blob content is kept in all.
const KEEP_TOTAL_MAX: usize = 32 << 20;
const BLOCK: usize = 512;

/// Why an archive could not be cut down to one platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

/// What [`SinglePlatform`] chose for one image of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The `io.containerd.image.name` annotation, when the archive names the image.
    pub name: Option<String>,
    /// The platform manifest now at the top of `index.json`.
    pub manifest: String,
    /// That manifest's config digest (what the CRI plugin calls the image ID), when the
    /// manifest was in the archive.
    pub config: Option<String>,
    /// The index it was chosen from; `None` when `index.json` named a manifest already.
    pub from_index: Option<String>,
}

/// Cuts an image archive (`docker save` output) down to one platform while it streams: an OCI
/// layout's `index.json` that names an image index (Docker's containerd image store saves
/// multi-platform images that way, with the other platforms' blobs absent) is rewritten to
/// name that index's manifest for `platform` instead, as `docker save --platform` does, so
/// `ctr images import` never looks for the absent blobs. Everything else passes through
/// unchanged, chunk by chunk; `index.json` is held back (it is small) and written last, so
/// the order of the archive does not matter. An archive without `index.json` (the classic
/// store's `manifest.json` format) passes through as it is.
///
/// Memory: the input chunk in hand, plus blobs of at most [`KEEP_BLOB_MAX`] bytes that may be
/// JSON (indexes, manifests, configs), [`KEEP_TOTAL_MAX`] in all.
pub struct SinglePlatform {
    platform: Platform,
    buf: bytes::BytesMut,
    state: State,
    /// PAX / GNU long-name headers (with their data) waiting for the entry they describe.
    pending_ext: Vec<bytes::Bytes>,
    ext_path: Option<String>,
    held_index: Option<Vec<u8>>,
    blobs: std::collections::HashSet<String>,
    kept: std::collections::HashMap<String, Vec<u8>>,
    kept_total: usize,
    selected: Vec<Selected>,
}

enum State {
    Header,
    Data {
        /// Content bytes left, then padding bytes left.
        left: u64,
        padding: u64,
        sink: Sink,
    },
    End,
}

enum Sink {
    Pass,
    Keep { digest: String, data: Vec<u8> },
    HoldIndex(Vec<u8>),
    Ext { pax: bool, data: Vec<u8> },
}

impl SinglePlatform {
    pub fn new(platform: Platform) -> SinglePlatform {
        SinglePlatform {
            platform,
            buf: bytes::BytesMut::new(),
            state: State::Header,
            pending_ext: Vec::new(),
            ext_path: None,
            held_index: None,
            blobs: Default::default(),
            kept: Default::default(),
            kept_total: 0,
            selected: Vec::new(),
        }
    }

    /// What was chosen, once the archive has ended (empty for an archive without an index).
    pub fn selected(&self) -> &[Selected] {
        &self.selected
    }

    /// Feeds a chunk of the archive; returns what to pass on.
    pub fn push(&mut self, chunk: bytes::Bytes) -> Result<Vec<bytes::Bytes>, ArchiveError> {
        let mut out = Vec::new();
        if matches!(self.state, State::End) {
            return Ok(out);
        }
        self.buf.extend_from_slice(&chunk);
        self.step(&mut out)?;
        Ok(out)
    }

    /// The archive's input ended: fails when it ended before its end-of-archive blocks.
    pub fn finish(&mut self) -> Result<Vec<bytes::Bytes>, ArchiveError> {
        match self.state {
            State::End => Ok(Vec::new()),
            _ => Err(ArchiveError(
                "the image archive ended before its end-of-archive marker".to_string(),
            )),
        }
    }

    fn step(&mut self, out: &mut Vec<bytes::Bytes>) -> Result<(), ArchiveError> {
        loop {
            match &mut self.state {
                State::End => {
                    self.buf.clear();
                    return Ok(());
                }
                State::Header => {
                    if self.buf.len() < BLOCK {
                        return Ok(());
                    }
                    let header = self.buf.split_to(BLOCK).freeze();
                    if header.iter().all(|b| *b == 0) {
                        self.end(out)?;
                        continue;
                    }
                    self.header(header, out)?;
                }
                State::Data {
                    left,
                    padding,
                    sink,
                } => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    if *left > 0 {
                        let n = (*left).min(self.buf.len() as u64) as usize;
                        let part = self.buf.split_to(n).freeze();
                        *left -= n as u64;
                        match sink {
                            Sink::Pass => out.push(part),
                            Sink::Keep { data, .. } => {
                                data.extend_from_slice(&part);
                                out.push(part);
                            }
                            Sink::HoldIndex(data) | Sink::Ext { data, .. } => {
                                data.extend_from_slice(&part)
                            }
                        }
                    }
                    if *left == 0 && *padding > 0 {
                        let n = (*padding).min(self.buf.len() as u64) as usize;
                        let pad = self.buf.split_to(n).freeze();
                        *padding -= n as u64;
                        match sink {
                            Sink::Pass | Sink::Keep { .. } => out.push(pad),
                            // Re-padded when the extension goes out.
                            Sink::Ext { .. } | Sink::HoldIndex(_) => {}
                        }
                    }
                    if *left == 0 && *padding == 0 {
                        let State::Data { sink, .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!("in a data state");
                        };
                        self.entry_done(sink);
                    }
                }
            }
        }
    }

    fn header(
        &mut self,
        header: bytes::Bytes,
        out: &mut Vec<bytes::Bytes>,
    ) -> Result<(), ArchiveError> {
        let size = parse_size(&header[124..136])
            .ok_or_else(|| ArchiveError("a tar header in the image archive is corrupt".into()))?;
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let kind = header[156];
        if matches!(kind, b'x' | b'L' | b'g' | b'K') {
            self.pending_ext.push(header);
            self.state = State::Data {
                left: size,
                padding,
                sink: Sink::Ext {
                    pax: kind == b'x',
                    data: Vec::new(),
                },
            };
            return Ok(());
        }
        let name = self.ext_path.take().unwrap_or_else(|| header_name(&header));
        let name = name.trim_start_matches("./").to_string();
        let regular = matches!(kind, b'0' | 0);
        let sink = if regular && name == "index.json" {
            // Rewritten and written last, under a fresh header.
            self.pending_ext.clear();
            Sink::HoldIndex(Vec::new())
        } else {
            out.append(&mut self.pending_ext);
            out.push(header);
            match name.strip_prefix("blobs/sha256/") {
                Some(hex) if regular && hex.len() == 64 => {
                    let digest = format!("sha256:{hex}");
                    self.blobs.insert(digest.clone());
                    if size <= KEEP_BLOB_MAX && self.kept_total + (size as usize) <= KEEP_TOTAL_MAX
                    {
                        Sink::Keep {
                            digest,
                            data: Vec::new(),
                        }
                    } else {
                        Sink::Pass
                    }
                }
                _ => Sink::Pass,
            }
        };
        self.state = State::Data {
            left: size,
            padding,
            sink,
        };
        Ok(())
    }

    fn entry_done(&mut self, sink: Sink) {
        match sink {
            Sink::Pass => {}
            Sink::Keep { digest, data } => {
                if data.first() == Some(&b'{') {
                    self.kept_total += data.len();
                    self.kept.insert(digest, data);
                }
            }
            Sink::HoldIndex(data) => self.held_index = Some(data),
            Sink::Ext { pax, data } => {
                if pax {
                    if let Some(path) = pax_path(&data) {
                        self.ext_path = Some(path);
                    }
                } else {
                    // GNU long name: the data is the name, NUL-terminated.
                    let name = data.split(|b| *b == 0).next().unwrap_or(&[]);
                    self.ext_path = Some(String::from_utf8_lossy(name).into_owned());
                }
                // Data was kept for parsing; the header and data go out together.
                let header = self.pending_ext.pop().expect("its header");
                let padded = data.len().div_ceil(BLOCK) * BLOCK;
                let mut bytes = Vec::with_capacity(BLOCK + padded);
                bytes.extend_from_slice(&header);
                bytes.extend_from_slice(&data);
                bytes.resize(BLOCK + padded, 0);
                self.pending_ext.push(bytes.into());
            }
        }
    }

    fn end(&mut self, out: &mut Vec<bytes::Bytes>) -> Result<(), ArchiveError> {
        self.state = State::End;
        if let Some(index) = self.held_index.take() {
            let (rewritten, selected) =
                rewrite_index(&index, &self.blobs, &self.kept, &self.platform)?;
            self.selected = selected;
            let mut header = [0u8; BLOCK];
            write_header(&mut header, "index.json", rewritten.len() as u64);
            out.push(bytes::Bytes::copy_from_slice(&header));
            let padded = rewritten.len().div_ceil(BLOCK) * BLOCK;
            let mut data = rewritten;
            data.resize(padded, 0);
            out.push(data.into());
        }
        out.push(bytes::Bytes::from(vec![0u8; 2 * BLOCK]));
        self.kept.clear();
        Ok(())
    }
}

/// The `path` record of PAX extended-header data.
fn pax_path(data: &[u8]) -> Option<String> {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[..end]);
    let mut rest: &str = &text;
    let mut found = None;
    while !rest.is_empty() {
        let (len, _) = rest.split_once(' ')?;
        let len: usize = len.parse().ok()?;
        let record = rest.get(..len)?;
        rest = &rest[len..];
        let (_, kv) = record.split_once(' ')?;
        if let Some(path) = kv.trim_end_matches('\n').strip_prefix("path=") {
            found = Some(path.to_string());
        }
    }
    found
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// ustar name: `prefix/name` when the prefix field is set.
fn header_name(header: &[u8]) -> String {
    let name = cstr(&header[0..100]);
    let ustar = &header[257..262] == b"ustar";
    let prefix = if ustar {
        cstr(&header[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// Octal, or base-256 when the high bit of the first byte is set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A ustar header for a regular file (mode 0644, root-owned, mtime 0).
fn write_header(h: &mut [u8; BLOCK], name: &str, size: u64) {
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h[155] = b' ';
}

fn is_index(media_type: Option<&str>) -> bool {
    matches!(
        media_type,
        Some(MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST)
    )
}

fn descriptor_platform(d: &serde_json::Value) -> Option<Platform> {
    let p = d.get("platform")?;
    Some(Platform {
        os: p.get("os")?.as_str()?.to_string(),
        architecture: p.get("architecture")?.as_str()?.to_string(),
        variant: p
            .get("variant")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

impl Platform {
    /// Does an image for `other` run here? OS and architecture must be equal; a variant only
    /// counts when this platform names one (`linux/arm64` takes `linux/arm64/v8`).
    pub fn accepts(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

/// Replaces every image index `index.json` names by its manifest for `platform` (whose blob
/// must be in the archive), keeping the outer descriptor's annotations (the image's names).
pub fn rewrite_index(
    index: &[u8],
    blobs: &std::collections::HashSet<String>,
    kept: &std::collections::HashMap<String, Vec<u8>>,
    platform: &Platform,
) -> Result<(Vec<u8>, Vec<Selected>), ArchiveError> {
    let mut root: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| ArchiveError(format!("the archive's index.json is not JSON: {e}")))?;
    let manifests = root
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| ArchiveError("the archive's index.json lists no manifests".into()))?;
    let mut selected = Vec::new();
    for d in manifests.iter_mut() {
        let digest = d
            .get("digest")
            .and_then(|v| v.as_str())
            .ok_or_else(|| ArchiveError("a descriptor in index.json has no digest".into()))?
            .to_string();
        let name = d
            .get("annotations")
            .and_then(|a| a.get(IMAGE_NAME_ANNOTATION))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let what = name.clone().unwrap_or_else(|| digest.clone());
        let mut from_index = None;
        if is_index(d.get("mediaType").and_then(|v| v.as_str())) {
            let nested = kept.get(&digest).ok_or_else(|| {
                ArchiveError(format!(
                    "{what}: the archive lacks its image index {digest}"
                ))
            })?;
            let nested: serde_json::Value = serde_json::from_slice(nested).map_err(|e| {
                ArchiveError(format!("{what}: image index {digest} is not JSON: {e}"))
            })?;
            let children = nested
                .get("manifests")
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default();
            let attestation = |c: &serde_json::Value| {
                c.get("annotations")
                    .and_then(|a| a.get(ATTESTATION_ANNOTATION))
                    .is_some()
            };
            let child_digest = |c: &serde_json::Value| {
                c.get("digest")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let chosen = children.iter().find(|c| {
                !attestation(c)
                    && descriptor_platform(c).is_some_and(|p| platform.accepts(&p))
                    && blobs.contains(&child_digest(c))
            });
            let Some(chosen) = chosen else {
                let listed: Vec<String> = children
                    .iter()
                    .filter(|c| !attestation(c))
                    .map(|c| {
                        let p = descriptor_platform(c)
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "unknown".to_string());
                        if blobs.contains(&child_digest(c)) {
                            p
                        } else {
                            format!("{p} (absent)")
                        }
                    })
                    .collect();
                return Err(ArchiveError(format!(
                    "{what}: the archive holds no {platform} image (its index lists: {})",
                    if listed.is_empty() {
                        "nothing".to_string()
                    } else {
                        listed.join(", ")
                    }
                )));
            };
            let mut replacement = chosen.clone();
            if let Some(outer) = d.get("annotations").and_then(|a| a.as_object()) {
                let inner = replacement
                    .as_object_mut()
                    .expect("a descriptor is an object")
                    .entry("annotations")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(inner) = inner.as_object_mut() {
                    for (k, v) in outer {
                        inner.insert(k.clone(), v.clone());
                    }
                }
            }
            from_index = Some(digest.clone());
            *d = replacement;
        }
        let manifest = d
            .get("digest")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let config = kept
            .get(&manifest)
            .and_then(|m| serde_json::from_slice::<serde_json::Value>(m).ok())
            .and_then(|m| m.get("config")?.get("digest")?.as_str().map(str::to_string));
        selected.push(Selected {
            name,
            manifest,
            config,
            from_index,
        });
    }
    let bytes =
        serde_json::to_vec(&root).map_err(|e| ArchiveError(format!("write index.json: {e}")))?;
    Ok((bytes, selected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn digest(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn blob(data: &[u8]) -> (String, Vec<u8>) {
        (
            format!("blobs/sha256/{}", &digest(data)["sha256:".len()..]),
            data.to_vec(),
        )
    }

    struct Layout {
        entries: Vec<(String, Vec<u8>)>,
        amd64_manifest: String,
        amd64_config: String,
        nested: String,
    }

    /// Docker's containerd-store shape: index.json → image index → amd64 (present), arm64
    /// (absent) and an attestation (absent).
    fn layout(index_first: bool, amd64_present: bool) -> Layout {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = vec![0u8; 3000];
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 500, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&manifest), "size": manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "b".repeat(64)), "size": 500, "platform": {"os": "unknown", "architecture": "unknown"}, "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            ],
        }))
        .unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [{"mediaType": MEDIA_TYPE_OCI_INDEX, "digest": digest(&nested), "size": nested.len(),
                "annotations": {"io.containerd.image.name": "docker.io/library/app:v1", "org.opencontainers.image.ref.name": "v1"}}],
        }))
        .unwrap();
        let mut entries = vec![
            blob(&nested),
            blob(config),
            blob(&layer),
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("manifest.json".to_string(), b"[]".to_vec()),
        ];
        if amd64_present {
            entries.insert(1, blob(&manifest));
        }
        let index_entry = ("index.json".to_string(), index);
        if index_first {
            entries.insert(0, index_entry);
        } else {
            entries.push(index_entry);
        }
        Layout {
            entries,
            amd64_manifest: digest(&manifest),
            amd64_config: digest(config),
            nested: digest(&nested),
        }
    }

    /// Feeds `archive` in chunks of `size` and collects the output.
    fn run(archive: &[u8], size: usize) -> Result<(Vec<u8>, Vec<Selected>), ArchiveError> {
        let mut r = SinglePlatform::new(Platform::linux("amd64"));
        let mut out = Vec::new();
        for chunk in archive.chunks(size) {
            for b in r.push(bytes::Bytes::copy_from_slice(chunk))? {
                out.extend_from_slice(&b);
            }
        }
        for b in r.finish()? {
            out.extend_from_slice(&b);
        }
        Ok((out, r.selected().to_vec()))
    }

    fn entries_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    #[test]
    fn an_index_is_replaced_by_its_present_platform_manifest_whatever_the_order_and_chunking() {
        for index_first in [false, true] {
            for size in [7, 512, 1000, 1 << 20] {
                let l = layout(index_first, true);
                let (out, selected) = run(&tar_of(&l.entries), size).unwrap();
                let got = entries_of(&out);
                // Every other entry passes through unchanged; index.json comes last.
                let others: Vec<_> = l
                    .entries
                    .iter()
                    .filter(|(n, _)| n != "index.json")
                    .cloned()
                    .collect();
                assert_eq!(&got[..got.len() - 1], &others[..], "chunk {size}");
                let (name, index) = got.last().unwrap();
                assert_eq!(name, "index.json");
                let index: serde_json::Value = serde_json::from_slice(index).unwrap();
                let m = &index["manifests"][0];
                assert_eq!(m["digest"], l.amd64_manifest.as_str());
                assert_eq!(m["platform"]["architecture"], "amd64");
                assert_eq!(
                    m["annotations"]["io.containerd.image.name"],
                    "docker.io/library/app:v1"
                );
                assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
                assert_eq!(
                    selected,
                    vec![Selected {
                        name: Some("docker.io/library/app:v1".into()),
                        manifest: l.amd64_manifest.clone(),
                        config: Some(l.amd64_config.clone()),
                        from_index: Some(l.nested.clone()),
                    }]
                );
            }
        }
    }

    #[test]
    fn an_archive_without_the_wanted_platform_fails_naming_what_it_has() {
        let l = layout(false, false);
        let err = run(&tar_of(&l.entries), 4096).unwrap_err();
        assert!(err.0.contains("docker.io/library/app:v1"), "{err}");
        assert!(err.0.contains("no linux/amd64 image"), "{err}");
        assert!(
            err.0
                .contains("linux/arm64/v8 (absent), linux/amd64 (absent)"),
            "{err}"
        );
    }

    #[test]
    fn a_classic_archive_passes_through_unchanged_and_a_truncated_one_fails() {
        let classic = tar_of(&[
            ("abc/layer.tar".to_string(), vec![1u8; 2000]),
            ("manifest.json".to_string(), b"[{}]".to_vec()),
            ("repositories".to_string(), b"{}".to_vec()),
        ]);
        let (out, selected) = run(&classic, 333).unwrap();
        assert_eq!(entries_of(&out), entries_of(&classic));
        assert!(selected.is_empty());
        assert!(run(&classic[..1536], 333).is_err());
    }

    #[test]
    fn long_names_in_pax_headers_are_followed() {
        let l = layout(false, true);
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in &l.entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            if name == "index.json" {
                // A PAX path record naming index.json, the header's own name something else.
                let pax = [("path", name.as_bytes())];
                b.append_pax_extensions(pax).unwrap();
                b.append_data(&mut h, "ignored-name", data.as_slice())
                    .unwrap();
            } else {
                b.append_data(&mut h, name, data.as_slice()).unwrap();
            }
        }
        let (out, selected) = run(&b.into_inner().unwrap(), 100).unwrap();
        assert_eq!(selected[0].manifest, l.amd64_manifest);
        assert_eq!(entries_of(&out).last().unwrap().0, "index.json");
    }

    #[test]
    fn platforms_parse_print_and_accept() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::linux("arm64").accepts(&p));
        assert!(!p.accepts(&Platform::linux("arm64")));
        assert!(!Platform::linux("amd64").accepts(&p));
        assert_eq!(Platform::parse("linux"), None);
        assert_eq!(Platform::host().os, "linux");
    }
}
