//! A build context as the docker CLI sends it: the files under the context directory that
//! `.dockerignore` does not exclude, as a tar stream, plus a content hash of them.
//!
//! `.dockerignore` follows Docker's rules (moby's `patternmatcher` and the CLI's walker):
//! - one pattern a line; `#` starts a comment line; blank lines are skipped; surrounding
//!   whitespace is trimmed; patterns are cleaned (`./a/../b` → `b`) and relative to the context
//!   root (a leading `/` is dropped);
//! - `*` matches any run of non-`/` characters, `?` one non-`/` character, `[a-z]` / `[^a]` a
//!   class, `\` escapes the next character, `**` any number of directories (zero included);
//! - a pattern that matches a directory excludes everything under it;
//! - `!pattern` re-includes; the last matching pattern wins;
//! - an excluded directory is not descended into unless some `!` pattern names a path under it;
//! - the Dockerfile and `.dockerignore` are sent even when excluded (the daemon needs them; it
//!   drops them from `COPY` itself).
//!
//! A Dockerfile outside the context is added to the tar under a generated name, as the CLI
//! does (`.dockerfile.<hex>`), and that name is appended to the tar's `.dockerignore` so
//! `COPY . .` does not pick it up. Unlike the CLI's random name, kprov's name is derived from
//! the Dockerfile's contents, so identical inputs make identical tars.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Name of the ignore file at the context root.
pub const DOCKERIGNORE: &str = ".dockerignore";
/// Read and tar chunk size: large enough for throughput, small enough to keep memory flat.
const CHUNK: usize = 256 << 10;
/// Chunks of tar in flight between the tar writer thread and the HTTP body.
const TAR_CHANNEL_DEPTH: usize = 8;

/// Why a context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("read build context {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("parse {path} line {line}: {message}")]
    Pattern {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("read build context {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("read build context: cancelled")]
    Cancelled,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// .dockerignore

/// One compiled `.dockerignore` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// The cleaned pattern text (without `!`).
    text: String,
    exclusion: bool,
    tokens: Vec<Token>,
    /// A pattern starting with `**` and otherwise literal: moby matches it as a plain suffix.
    suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: any number of whole directories, zero included.
    Dirs,
    /// `**` at the end: anything.
    Rest,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text; `source` names the file in errors.
    pub fn parse(text: &str, source: &Path) -> Result<DockerIgnore, ContextError> {
        let mut patterns = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let exclusion = line.starts_with('!');
            if exclusion {
                line = line[1..].trim();
            }
            let text = clean_pattern(line);
            if exclusion && (text.is_empty() || text == ".") {
                return Err(ContextError::Pattern {
                    path: source.to_path_buf(),
                    line: n + 1,
                    message: format!("illegal exclusion pattern {raw:?}"),
                });
            }
            let tokens = compile(&text).map_err(|message| ContextError::Pattern {
                path: source.to_path_buf(),
                line: n + 1,
                message: format!("bad pattern {raw:?}: {message}"),
            })?;
            let suffix = (text.starts_with("**")
                && tokens[1..].iter().all(|t| matches!(t, Token::Char(_))))
            .then(|| text[2..].to_string());
            patterns.push(Pattern {
                text,
                exclusion,
                tokens,
                suffix,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Reads `<context>/.dockerignore`; no file means no patterns.
    pub fn read(context: &Path) -> Result<DockerIgnore, ContextError> {
        let path = context.join(DOCKERIGNORE);
        match fs::read_to_string(&path) {
            Ok(text) => DockerIgnore::parse(&text, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DockerIgnore::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// True when `rel` (a `/`-separated path relative to the context root) is excluded: the
    /// last pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let parents: Vec<&str> = match rel.rfind('/') {
            Some(i) => rel[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for p in &self.patterns {
            // An include only matters while excluded, an exclude only while included.
            if p.exclusion != excluded {
                continue;
            }
            let mut matched = p.matches(rel);
            if !matched {
                let mut prefix = String::new();
                for dir in &parents {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(dir);
                    if p.matches(&prefix) {
                        matched = true;
                        break;
                    }
                }
            }
            if matched {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// For an excluded directory: must the walk still descend, because a `!` pattern names a
    /// path under it? (The CLI's rule: a literal prefix test on the pattern text.)
    fn descend_into_excluded(&self, dir_rel: &str) -> bool {
        let dir_slash = format!("{dir_rel}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", p.text).starts_with(&dir_slash))
    }

    /// The patterns, as cleaned (with `!` for exceptions).
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }
}

/// Go's `filepath.Clean` on a `/` path, then the leading `/` dropped.
fn clean_pattern(pattern: &str) -> String {
    let rooted = pattern.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let cleaned = parts.join("/");
    if cleaned.is_empty() && !rooted {
        ".".to_string()
    } else {
        cleaned
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is `**`: the slash is part of the directory run.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => match chars.get(i) {
                Some(&next) => {
                    tokens.push(Token::Char(next));
                    i += 1;
                }
                None => return Err("trailing backslash".to_string()),
            },
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut items = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unclosed character class".to_string());
                    };
                    if c == ']' && !first {
                        i += 1;
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        i += 1;
                        *chars.get(i).ok_or("unclosed character class")?
                    } else {
                        c
                    };
                    i += 1;
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                        hi = chars[i + 1];
                        i += 2;
                        if hi == '\\' {
                            hi = *chars.get(i).ok_or("unclosed character class")?;
                            i += 1;
                        }
                        if hi < lo {
                            return Err(format!("bad range {lo}-{hi}"));
                        }
                    }
                    items.push((lo, hi));
                }
                tokens.push(Token::Class { negated, items });
            }
            c => tokens.push(Token::Char(c)),
        }
    }
    Ok(tokens)
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        if let Some(suffix) = &self.suffix {
            // moby: `**/foo` matches `foo` and anything ending in `/foo`; `**foo` any suffix.
            return path.ends_with(suffix.as_str())
                || suffix.strip_prefix('/').is_some_and(|s| s == path);
        }
        let path: Vec<char> = path.chars().collect();
        match_tokens(&self.tokens, &path)
    }
}

fn match_tokens(tokens: &[Token], path: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match first {
        Token::Char(c) => path.first() == Some(c) && match_tokens(rest, &path[1..]),
        Token::One => path.first().is_some_and(|&c| c != '/') && match_tokens(rest, &path[1..]),
        Token::Class { negated, items } => {
            path.first()
                .is_some_and(|&c| items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_tokens(rest, &path[1..])
        }
        Token::Star => {
            for i in 0..=path.len() {
                if match_tokens(rest, &path[i..]) {
                    return true;
                }
                if path.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::Dirs => {
            // Zero directories, or any prefix ending in `/`.
            if match_tokens(rest, path) {
                return true;
            }
            (0..path.len()).any(|i| path[i] == '/' && match_tokens(rest, &path[i + 1..]))
        }
        Token::Rest => true,
    }
}

// ---------------------------------------------------------------------------------------------
// The context

/// What a context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(PathBuf),
}

/// One path sent to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `/`-separated, relative to the context root.
    pub rel: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub mtime: u64,
}

/// A scanned build context: what will be sent, in a stable order.
#[derive(Debug, Clone)]
pub struct BuildContext {
    root: PathBuf,
    entries: Vec<Entry>,
    dockerfile_name: String,
    /// A Dockerfile from outside the context: its generated name's contents, and the
    /// `.dockerignore` the tar carries instead of the context's own.
    outside: Option<Outside>,
}

#[derive(Debug, Clone)]
struct Outside {
    dockerfile: Vec<u8>,
    dockerignore: Vec<u8>,
}

impl BuildContext {
    /// Walks `context` (the `.dockerignore` applied) and places `dockerfile` in it. Checks
    /// `cancelled` between entries.
    pub fn scan(
        context: &Path,
        dockerfile: &Path,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<BuildContext, ContextError> {
        let root = fs::canonicalize(context).map_err(io_err(context))?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory(context.to_path_buf()));
        }
        let ignore = DockerIgnore::read(&root)?;
        let dockerfile_abs = fs::canonicalize(dockerfile).map_err(io_err(dockerfile))?;
        let inside = dockerfile_abs.strip_prefix(&root).ok().and_then(rel_slash);

        let mut entries = Vec::new();
        let mut walk = walkdir::WalkDir::new(&root)
            .min_depth(1)
            .follow_links(false)
            .sort_by(|a, b| a.file_name().cmp(b.file_name()))
            .into_iter();
        while let Some(item) = walk.next() {
            if cancelled() {
                return Err(ContextError::Cancelled);
            }
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                ContextError::Io {
                    path,
                    source: e.into(),
                }
            })?;
            let Some(rel) = item.path().strip_prefix(&root).ok().and_then(rel_slash) else {
                continue;
            };
            let file_type = item.file_type();
            let always_sent = rel == DOCKERIGNORE || inside.as_deref() == Some(rel.as_str());
            if !always_sent && ignore.is_excluded(&rel) {
                let holds_dockerfile = inside
                    .as_deref()
                    .is_some_and(|d| d.starts_with(&format!("{rel}/")));
                if file_type.is_dir() && !holds_dockerfile && !ignore.descend_into_excluded(&rel) {
                    walk.skip_current_dir();
                }
                continue;
            }
            let meta = item.metadata().map_err(|e| ContextError::Io {
                path: item.path().to_path_buf(),
                source: e.into(),
            })?;
            let kind = if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_symlink() {
                EntryKind::Symlink(fs::read_link(item.path()).map_err(io_err(item.path()))?)
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                // Sockets, fifos and devices have no place in an image build.
                continue;
            };
            entries.push(Entry {
                rel,
                kind,
                mode: meta.permissions().mode() & 0o7777,
                mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            });
        }

        let (dockerfile_name, outside) = match inside {
            Some(rel) => (rel, None),
            None => {
                let contents = fs::read(&dockerfile_abs).map_err(io_err(&dockerfile_abs))?;
                let name = format!(
                    ".dockerfile.{}",
                    &hex::encode(Sha256::digest(&contents))[..20]
                );
                let mut dockerignore = match fs::read(root.join(DOCKERIGNORE)) {
                    Ok(existing) => existing,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        DOCKERIGNORE.as_bytes().to_vec()
                    }
                    Err(e) => return Err(io_err(&root.join(DOCKERIGNORE))(e)),
                };
                dockerignore.extend_from_slice(format!("\n{name}\n").as_bytes());
                (
                    name,
                    Some(Outside {
                        dockerfile: contents,
                        dockerignore,
                    }),
                )
            }
        };
        Ok(BuildContext {
            root,
            entries,
            dockerfile_name,
            outside,
        })
    }

    /// The Dockerfile's name inside the tar (what the daemon is told to build).
    pub fn dockerfile_name(&self) -> &str {
        &self.dockerfile_name
    }

    /// True when the Dockerfile lies outside the context and travels under a generated name.
    pub fn dockerfile_outside(&self) -> bool {
        self.outside.is_some()
    }

    /// The paths sent, in tar order (without the generated entries of an outside Dockerfile).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The context directory, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Feeds every entry's path, type, mode and contents (or link target) into `hasher`, plus
    /// the Dockerfile's name and an outside Dockerfile's contents. Files are read in chunks.
    /// Modification times are left out: touching a file does not change the image.
    pub fn hash_into(
        &self,
        hasher: &mut Sha256,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), ContextError> {
        let mut buf = vec![0u8; CHUNK];
        field(hasher, b"dockerfile", self.dockerfile_name.as_bytes());
        for entry in self
            .entries
            .iter()
            .filter(|e| self.outside.is_none() || e.rel != DOCKERIGNORE)
        {
            if cancelled() {
                return Err(ContextError::Cancelled);
            }
            field(hasher, b"path", entry.rel.as_bytes());
            field(hasher, b"mode", format!("{:o}", entry.mode).as_bytes());
            match &entry.kind {
                EntryKind::Dir => field(hasher, b"dir", b""),
                EntryKind::Symlink(target) => {
                    field(hasher, b"link", target.as_os_str().as_encoded_bytes())
                }
                EntryKind::File => {
                    let path = self.root.join(&entry.rel);
                    let mut file = File::open(&path).map_err(io_err(&path))?;
                    let len = file.metadata().map_err(io_err(&path))?.len();
                    // The length up front keeps the framing unambiguous while streaming.
                    field(hasher, b"file", &len.to_le_bytes());
                    let mut seen = 0u64;
                    loop {
                        let n = file.read(&mut buf).map_err(io_err(&path))?;
                        if n == 0 {
                            break;
                        }
                        seen += n as u64;
                        hasher.update(&buf[..n]);
                        if cancelled() {
                            return Err(ContextError::Cancelled);
                        }
                    }
                    if seen != len {
                        return Err(changed(&path));
                    }
                }
            }
        }
        if let Some(outside) = &self.outside {
            field(hasher, b"path", DOCKERIGNORE.as_bytes());
            field(hasher, b"file", &outside.dockerignore);
            field(hasher, b"path", self.dockerfile_name.as_bytes());
            field(hasher, b"file", &outside.dockerfile);
        }
        Ok(())
    }

    /// Writes the context as a tar to `out`.
    pub fn write_tar<W: Write>(
        &self,
        out: W,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<W, ContextError> {
        let mut tar = tar::Builder::new(out);
        let tar_err = |e: io::Error| ContextError::Io {
            path: self.root.clone(),
            source: e,
        };
        for entry in &self.entries {
            if cancelled() {
                return Err(ContextError::Cancelled);
            }
            let path = self.root.join(&entry.rel);
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_mtime(entry.mtime);
            header.set_uid(0);
            header.set_gid(0);
            match &entry.kind {
                EntryKind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{}/", entry.rel), io::empty())
                        .map_err(tar_err)?;
                }
                EntryKind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, &entry.rel, target)
                        .map_err(tar_err)?;
                }
                EntryKind::File if self.outside.is_some() && entry.rel == DOCKERIGNORE => {}
                EntryKind::File => {
                    let file = File::open(&path).map_err(io_err(&path))?;
                    let len = file.metadata().map_err(io_err(&path))?.len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(len);
                    let mut reader = ExactReader {
                        inner: file.take(len),
                        left: len,
                    };
                    tar.append_data(&mut header, &entry.rel, &mut reader)
                        .map_err(|e| {
                            if e.kind() == io::ErrorKind::UnexpectedEof {
                                changed(&path)
                            } else {
                                io_err(&path)(e)
                            }
                        })?;
                }
            }
        }
        if let Some(outside) = &self.outside {
            for (name, data) in [
                (DOCKERIGNORE, &outside.dockerignore),
                (self.dockerfile_name.as_str(), &outside.dockerfile),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_mode(0o600);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, name, data.as_slice())
                    .map_err(tar_err)?;
            }
        }
        tar.into_inner().map_err(tar_err)
    }

    /// The tar as a stream of chunks, written by a blocking thread into a bounded channel:
    /// memory stays at a few chunks whatever the context's size. A read error ends the stream
    /// with that error (so the daemon sees a broken body) and is also returned by the handle.
    pub fn into_tar_stream(
        self: Arc<Self>,
        cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> (
        impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static,
        tokio::task::JoinHandle<Result<u64, ContextError>>,
    ) {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(TAR_CHANNEL_DEPTH);
        let handle = tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter {
                tx: tx.clone(),
                buf: BytesMut::with_capacity(CHUNK),
                sent: 0,
            };
            let result = self.write_tar(writer, &*cancelled).and_then(|mut w| {
                w.flush_chunk().map_err(|e| ContextError::Io {
                    path: self.root.clone(),
                    source: e,
                })?;
                Ok(w.sent)
            });
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
            result
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (stream, handle)
    }
}

fn changed(path: &Path) -> ContextError {
    ContextError::Io {
        path: path.to_path_buf(),
        source: io::Error::other("the file changed while it was being read"),
    }
}

/// A length-prefixed field, so no two different inputs feed the same bytes.
fn field(hasher: &mut Sha256, tag: &[u8], value: &[u8]) {
    hasher.update(tag);
    hasher.update((value.len() as u64).to_le_bytes());
    hasher.update(value);
}

/// A relative path as `/`-separated text, `None` for the root itself or odd components.
fn rel_slash(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Fails with `UnexpectedEof` when a file shrank after its header was written.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `Write` into a bounded channel, in chunks of [`CHUNK`] bytes.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
    sent: u64,
}

impl ChannelWriter {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.sent += chunk.len() as u64;
        self.buf.reserve(CHUNK);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the build stopped reading the context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn star_does_not_cross_directories() {
        let i = ignore("*.log\n");
        assert!(i.is_excluded("a.log"));
        assert!(!i.is_excluded("dir/a.log"));
    }

    #[test]
    fn double_star_matches_any_number_of_directories() {
        let i = ignore("**/*.log\n");
        assert!(i.is_excluded("a.log"));
        assert!(i.is_excluded("dir/a.log"));
        assert!(i.is_excluded("dir/sub/a.log"));
        assert!(!i.is_excluded("dir/a.txt"));
        let i = ignore("a/**/b\n");
        assert!(i.is_excluded("a/b"));
        assert!(i.is_excluded("a/x/y/b"));
        assert!(!i.is_excluded("ab"));
    }

    #[test]
    fn trailing_double_star_excludes_everything_under_a_directory_but_not_it() {
        let i = ignore("build/**\n");
        assert!(i.is_excluded("build/x"));
        assert!(i.is_excluded("build/x/y"));
        assert!(!i.is_excluded("build"));
    }

    #[test]
    fn patterns_are_relative_to_the_root_and_cleaned() {
        let i = ignore("/secret\n./tmp/../cache\n");
        assert!(i.is_excluded("secret"));
        assert!(!i.is_excluded("sub/secret"));
        assert!(i.is_excluded("cache"));
        assert_eq!(i.patterns(), vec!["secret", "cache"]);
    }

    #[test]
    fn a_matching_directory_excludes_what_is_under_it() {
        let i = ignore("node_modules\n");
        assert!(i.is_excluded("node_modules"));
        assert!(i.is_excluded("node_modules/x/y.js"));
        assert!(!i.is_excluded("src/node_modules"));
    }

    #[test]
    fn exceptions_reinclude_and_the_last_match_wins() {
        let i = ignore("*.md\n!README.md\n");
        assert!(i.is_excluded("CHANGES.md"));
        assert!(!i.is_excluded("README.md"));
        let i = ignore("!README.md\n*.md\n");
        assert!(i.is_excluded("README.md"));
        let i = ignore("docs\n!docs/keep.txt\n");
        assert!(i.is_excluded("docs/other.txt"));
        assert!(!i.is_excluded("docs/keep.txt"));
        assert!(i.descend_into_excluded("docs"));
        assert!(!ignore("docs\n!*.txt\n").descend_into_excluded("docs"));
    }

    #[test]
    fn comments_blank_lines_and_whitespace_are_skipped() {
        let i = ignore("# comment\n\n   \n  spaced.txt  \n#not-a-pattern\n");
        assert_eq!(i.patterns(), vec!["spaced.txt"]);
        assert!(i.is_excluded("spaced.txt"));
        assert!(!i.is_excluded("#not-a-pattern"));
    }

    #[test]
    fn question_mark_classes_and_escapes() {
        let i = ignore("file?.txt\nv[0-9].bin\nx[^a].c\nliteral\\*\n");
        assert!(i.is_excluded("file1.txt"));
        assert!(!i.is_excluded("file12.txt"));
        assert!(!i.is_excluded("file/.txt"));
        assert!(i.is_excluded("v7.bin"));
        assert!(!i.is_excluded("vx.bin"));
        assert!(i.is_excluded("xb.c"));
        assert!(!i.is_excluded("xa.c"));
        assert!(i.is_excluded("literal*"));
        assert!(!i.is_excluded("literalx"));
    }

    #[test]
    fn leading_double_star_is_a_suffix_match_as_in_moby() {
        let i = ignore("**/foo\n");
        assert!(i.is_excluded("foo"));
        assert!(i.is_excluded("a/b/foo"));
        assert!(!i.is_excluded("afoo"));
    }

    #[test]
    fn bad_patterns_are_reported_with_their_line() {
        let err = DockerIgnore::parse("ok\n[abc\n", Path::new("/ctx/.dockerignore")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = DockerIgnore::parse("!\n", Path::new("/ctx/.dockerignore")).unwrap_err();
        assert!(err.to_string().contains("illegal exclusion"), "{err}");
    }

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    fn tar_names(ctx: &BuildContext) -> Vec<String> {
        let data = ctx.write_tar(Vec::new(), &|| false).unwrap();
        let mut archive = tar::Archive::new(data.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn hash(ctx: &BuildContext) -> String {
        let mut h = Sha256::new();
        ctx.hash_into(&mut h, &|| false).unwrap();
        hex::encode(h.finalize())
    }

    #[test]
    fn scan_applies_dockerignore_but_always_sends_the_dockerfile_and_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        write(
            root,
            ".dockerignore",
            b"Dockerfile\n.dockerignore\n*.log\nsecret/\n!secret/keep\n",
        );
        write(root, "app.txt", b"app");
        write(root, "debug.log", b"noise");
        write(root, "secret/key", b"k");
        write(root, "secret/keep", b"kept");
        let ctx = BuildContext::scan(root, &root.join("Dockerfile"), &|| false).unwrap();
        assert_eq!(ctx.dockerfile_name(), "Dockerfile");
        assert_eq!(
            tar_names(&ctx),
            vec![".dockerignore", "Dockerfile", "app.txt", "secret/keep"]
        );
    }

    #[test]
    fn a_dockerfile_outside_the_context_is_added_under_a_generated_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        write(&root, "app.txt", b"app");
        write(dir.path(), "build/Dockerfile", b"FROM scratch\nCOPY . /\n");
        let ctx =
            BuildContext::scan(&root, &dir.path().join("build/Dockerfile"), &|| false).unwrap();
        let name = ctx.dockerfile_name().to_string();
        assert!(name.starts_with(".dockerfile."), "{name}");
        assert_eq!(
            tar_names(&ctx),
            vec![
                "app.txt".to_string(),
                ".dockerignore".to_string(),
                name.clone()
            ]
        );
        let data = ctx.write_tar(Vec::new(), &|| false).unwrap();
        let mut archive = tar::Archive::new(data.as_slice());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            if path == ".dockerignore" {
                assert!(text.lines().any(|l| l == name), "{text}");
                assert!(text.lines().any(|l| l == ".dockerignore"), "{text}");
            } else if path == name {
                assert_eq!(text, "FROM scratch\nCOPY . /\n");
            }
        }
        // The same Dockerfile gives the same name: identical inputs, identical tars.
        let again =
            BuildContext::scan(&root, &dir.path().join("build/Dockerfile"), &|| false).unwrap();
        assert_eq!(again.dockerfile_name(), name);
    }

    #[test]
    fn the_hash_follows_contents_and_modes_and_ignores_excluded_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        write(root, ".dockerignore", b"*.log\n");
        write(root, "a.txt", b"one");
        let scan = || BuildContext::scan(root, &root.join("Dockerfile"), &|| false).unwrap();
        let first = hash(&scan());
        assert_eq!(hash(&scan()), first, "an unchanged context hashes the same");
        write(root, "debug.log", b"ignored");
        assert_eq!(hash(&scan()), first, "an excluded file does not count");
        write(root, "a.txt", b"two");
        let second = hash(&scan());
        assert_ne!(second, first, "a changed file counts");
        fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(hash(&scan()), second, "a changed mode counts");
    }

    #[test]
    fn cancellation_stops_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", b"FROM scratch\n");
        let err =
            BuildContext::scan(dir.path(), &dir.path().join("Dockerfile"), &|| true).unwrap_err();
        assert!(matches!(err, ContextError::Cancelled));
    }
}
