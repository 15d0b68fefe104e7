//! The images a Dockerfile builds on, for the build cache key: every stage's `FROM` image and
//! every `COPY --from=<image>`, with `ARG`s substituted as the builder does.
//!
//! A small reader of `FROM`, `ARG` and `COPY --from` only, not a general Dockerfile parser: the
//! one crate there is (`dockerfile-parser` 0.9) has no heredocs and no `escape` directive, so it
//! rejects Dockerfiles the engine builds. What it follows of Docker's rules:
//! - parser directives at the top (`# escape=\``, `# syntax=…`); comment lines (`#` first),
//!   also inside a continued instruction; blank lines inside a continuation; a line ending in
//!   the escape character (trailing blanks allowed) continues on the next;
//! - heredocs (`RUN <<EOF`, `<<-EOF`, `<<"EOF"`) on `RUN`/`COPY`/`ADD`: their bodies are skipped,
//!   so a `FROM` inside a script is not an instruction;
//! - instructions are case-insensitive; `FROM [--platform=…] image [AS name]`;
//! - `ARG`s before the first `FROM` are the global scope, the only variables a `FROM` line sees,
//!   with BuildKit's automatic platform args (`BUILDPLATFORM`, `TARGETARCH`, …); a build arg
//!   overrides a declared `ARG`'s default, and an undeclared build arg is not visible;
//! - `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`;
//!   the escape character before `$` keeps it literal;
//! - `scratch` is no image; a name that an earlier stage took (`AS name`, case-insensitive) is
//!   that stage, not an image; a `COPY --from` may also name a stage by its index.

use std::collections::{BTreeMap, HashMap};

use crate::adapters::oci::Platform;

/// An image a Dockerfile builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The reference after substitution, as the builder resolves it.
    pub reference: String,
    /// The (first) line it is named on.
    pub line: usize,
}

/// A Dockerfile kprov cannot read the bases of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DockerfileError {
    pub line: usize,
    pub message: String,
}

/// The images `text` builds on, in order of first mention, each once. `args` are the build
/// args; `target` is the platform built for (`TARGETPLATFORM`), `build` the builder's own.
pub fn base_images(
    text: &str,
    args: &BTreeMap<String, String>,
    build: &Platform,
    target: &Platform,
) -> Result<Vec<BaseImage>, DockerfileError> {
    let lines = logical_lines(text)?;
    let mut global: HashMap<String, String> = platform_args(build, target);
    let mut stage_scope: Option<HashMap<String, String>> = None;
    let mut stages: Vec<Option<String>> = Vec::new();
    let mut bases: Vec<BaseImage> = Vec::new();
    let add = |reference: String, line: usize, bases: &mut Vec<BaseImage>| {
        if !bases.iter().any(|b| b.reference == reference) {
            bases.push(BaseImage { reference, line });
        }
    };
    for Line {
        number,
        keyword,
        rest,
        escape,
    } in lines
    {
        match keyword.as_str() {
            "ARG" => {
                for word in split_words(&rest) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(unquote(d))),
                        None => (word.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(DockerfileError {
                            line: number,
                            message: format!("ARG {word:?} names no variable"),
                        });
                    }
                    let in_stage = stage_scope.is_some();
                    let scope = stage_scope.as_ref().unwrap_or(&global);
                    let value = match (args.get(&name), default) {
                        (Some(given), _) => Some(given.clone()),
                        (None, Some(d)) => Some(expand(&d, scope, escape)),
                        // Inside a stage, a bare ARG brings the global value in.
                        (None, None) if in_stage => global.get(&name).cloned(),
                        (None, None) => None,
                    };
                    if let Some(v) = value {
                        match stage_scope.as_mut() {
                            Some(stage) => stage.insert(name, v),
                            None => global.insert(name, v),
                        };
                    }
                }
            }
            "FROM" => {
                let words = split_words(&rest);
                let mut it = words.iter().skip_while(|w| w.starts_with("--"));
                let Some(image) = it.next() else {
                    return Err(DockerfileError {
                        line: number,
                        message: "FROM names no image".to_string(),
                    });
                };
                let name = match (it.next(), it.next()) {
                    (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => {
                        Some(name.to_ascii_lowercase())
                    }
                    (None, _) => None,
                    _ => {
                        return Err(DockerfileError {
                            line: number,
                            message: format!("FROM {rest:?}: expected `FROM image [AS name]`"),
                        });
                    }
                };
                let image = unquote(&expand(image, &global, escape));
                if image.is_empty() {
                    return Err(DockerfileError {
                        line: number,
                        message: format!("FROM {rest:?} names an empty image after substitution"),
                    });
                }
                let lower = image.to_ascii_lowercase();
                let is_stage = stages.iter().flatten().any(|s| *s == lower);
                if !is_stage && lower != "scratch" {
                    add(image, number, &mut bases);
                }
                stages.push(name);
                stage_scope = Some(platform_args(build, target));
            }
            "COPY" => {
                let scope = stage_scope.as_ref().unwrap_or(&global);
                for word in split_words(&rest) {
                    if !word.starts_with("--") {
                        break;
                    }
                    let Some(from) = word.strip_prefix("--from=") else {
                        continue;
                    };
                    let from = unquote(&expand(from, scope, escape));
                    let lower = from.to_ascii_lowercase();
                    let by_index = from.parse::<usize>().is_ok_and(|i| i < stages.len());
                    let by_name = stages.iter().flatten().any(|s| *s == lower);
                    if !by_index && !by_name && !from.is_empty() {
                        add(from, number, &mut bases);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(bases)
}

/// BuildKit's automatic platform args.
fn platform_args(build: &Platform, target: &Platform) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

struct Line {
    number: usize,
    /// Upper-cased.
    keyword: String,
    rest: String,
    escape: char,
}

/// Instructions with continuations joined, comments and heredoc bodies dropped.
fn logical_lines(text: &str) -> Result<Vec<Line>, DockerfileError> {
    let physical: Vec<&str> = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while i < physical.len() {
        let Some(body) = physical[i].trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = body.split_once('=') else {
            break;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        if key.eq_ignore_ascii_case("escape") {
            escape = match value.trim() {
                "`" => '`',
                "\\" => '\\',
                other => {
                    return Err(DockerfileError {
                        line: i + 1,
                        message: format!("invalid escape directive {other:?}: use ` or \\"),
                    });
                }
            };
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < physical.len() {
        let start = i;
        let first = physical[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        let mut joined = String::new();
        let mut part = first;
        loop {
            let trimmed = part.trim_end();
            match trimmed.strip_suffix(escape) {
                Some(head) => {
                    joined.push_str(head);
                    // The next non-comment, non-blank line continues this one.
                    let mut next = None;
                    while i < physical.len() {
                        let l = physical[i];
                        i += 1;
                        let t = l.trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            continue;
                        }
                        next = Some(l);
                        break;
                    }
                    match next {
                        Some(l) => part = l,
                        None => break,
                    }
                }
                _ => {
                    joined.push_str(trimmed);
                    break;
                }
            }
        }
        let (keyword, rest) = match joined.split_once(char::is_whitespace) {
            Some((k, r)) => (k.to_ascii_uppercase(), r.trim().to_string()),
            None => (joined.to_ascii_uppercase(), String::new()),
        };
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            i = skip_heredocs(&rest, &physical, i);
        }
        out.push(Line {
            number: start + 1,
            keyword,
            rest,
            escape,
        });
    }
    Ok(out)
}

/// Past the bodies of the heredocs `rest` opens (`<<WORD`, `<<-WORD`, quoted words), from
/// physical line `i`. A terminator that never comes means it was no heredoc: nothing skipped.
fn skip_heredocs(rest: &str, physical: &[&str], mut i: usize) -> usize {
    let mut words = Vec::new();
    let mut s = rest;
    while let Some(pos) = s.find("<<") {
        s = &s[pos + 2..];
        let strip_tabs = s.starts_with('-');
        let t = s.strip_prefix('-').unwrap_or(s);
        let (t, quote) = match t.chars().next() {
            Some(q @ ('"' | '\'')) => (&t[1..], Some(q)),
            _ => (t, None),
        };
        let word: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            continue;
        }
        if let Some(q) = quote
            && !t[word.len()..].starts_with(q)
        {
            continue;
        }
        words.push((word, strip_tabs));
    }
    for (word, strip_tabs) in words {
        let found = physical[i.min(physical.len())..].iter().position(|l| {
            let l = if strip_tabs {
                l.trim_start_matches('\t')
            } else {
                l
            };
            l.trim_end() == word
        });
        match found {
            Some(n) => i += n + 1,
            None => break,
        }
    }
    i
}

/// Whitespace-separated words; quotes keep whitespace inside a word (and stay in it).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                word.push(c);
            }
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.push(c);
            }
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Drops the quotes of `"x"` / `'x'` (also around parts: `a"b c"` → `ab c`).
fn unquote(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// Substitutes `$NAME` / `${NAME…}` from `vars`; unknown names are empty.
fn expand(text: &str, vars: &HashMap<String, String>, escape: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            // `${…}`, with nesting in the word.
            let mut depth = 1;
            let mut j = i + 2;
            while j < chars.len() && depth > 0 {
                match chars[j] {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            if depth > 0 {
                // Unclosed: literal.
                out.extend(&chars[i..]);
                break;
            }
            let inner: String = chars[i + 2..j - 1].iter().collect();
            out.push_str(&expand_braced(&inner, vars, escape));
            i = j;
            continue;
        }
        let name: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        if name.is_empty() {
            out.push('$');
            i += 1;
        } else {
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            i += 1 + name.chars().count();
        }
    }
    out
}

fn expand_braced(inner: &str, vars: &HashMap<String, String>, escape: char) -> String {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_len);
    let value = vars.get(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    let set = match value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match op.chars().next() {
        None => value.cloned().unwrap_or_default(),
        Some('-') => {
            if set {
                value.cloned().unwrap_or_default()
            } else {
                expand(&op[1..], vars, escape)
            }
        }
        Some('+') => {
            if set {
                expand(&op[1..], vars, escape)
            } else {
                String::new()
            }
        }
        // Other modifiers (`#`, `%`, `/`) are rare in FROM lines: the value unchanged.
        Some(_) => value.cloned().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        Platform::linux("amd64")
    }

    fn bases(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        base_images(text, &args, &amd64(), &amd64())
            .unwrap()
            .into_iter()
            .map(|b| b.reference)
            .collect()
    }

    #[test]
    fn every_stage_counts_and_stages_and_scratch_are_not_images() {
        let text = "\
FROM --platform=$BUILDPLATFORM golang:1.22 AS builder
RUN go build
from registry.access.redhat.com/ubi9/ubi-minimal:latest as Runtime
COPY --from=builder /out /app
FROM runtime AS final
FROM scratch
COPY --from=0 /x /x
COPY --from=docker.io/library/busybox:1.36 /bin/busybox /bin/
COPY --chown=1:1 --from=final /y /y
";
        assert_eq!(
            bases(text, &[]),
            vec![
                "golang:1.22",
                "registry.access.redhat.com/ubi9/ubi-minimal:latest",
                "docker.io/library/busybox:1.36"
            ]
        );
    }

    #[test]
    fn global_args_are_substituted_with_build_args_over_defaults() {
        let text = "\
ARG GO_VERSION=1.22
ARG BASE
ARG REGISTRY=quay.io
FROM golang:${GO_VERSION}-bookworm AS build
FROM ${REGISTRY}/org/${BASE:-ubi9}:${TAG:-latest}
ARG GO_VERSION=9.9
FROM golang:$GO_VERSION
";
        assert_eq!(
            bases(text, &[]),
            // A stage's own ARG (9.9) does not reach a later FROM: only the global scope does.
            vec![
                "golang:1.22-bookworm",
                "quay.io/org/ubi9:latest",
                "golang:1.22"
            ]
        );
        assert_eq!(
            bases(
                text,
                &[("GO_VERSION", "1.23"), ("BASE", "alpine"), ("TAG", "x")]
            ),
            // TAG is not declared: a build arg does not reach FROM unless declared.
            vec![
                "golang:1.23-bookworm",
                "quay.io/org/alpine:latest",
                "golang:1.23"
            ]
        );
    }

    #[test]
    fn automatic_platform_args_reach_from_lines() {
        let text =
            "FROM --platform=linux/amd64 example/tool-${TARGETARCH}:v1\nFROM base-$BUILDOS\n";
        assert_eq!(
            bases(text, &[]),
            vec!["example/tool-amd64:v1", "base-linux"]
        );
        let arm = base_images(
            "FROM img:${TARGETARCH}${TARGETVARIANT:+-}${TARGETVARIANT}\n",
            &BTreeMap::new(),
            &amd64(),
            &Platform {
                os: "linux".into(),
                architecture: "arm".into(),
                variant: Some("v7".into()),
            },
        )
        .unwrap();
        assert_eq!(arm[0].reference, "img:arm-v7");
    }

    #[test]
    fn continuations_comments_directives_and_heredocs() {
        let text = "\
# syntax=docker/dockerfile:1
# escape=`

ARG V=3
FROM `
  # a comment inside the continuation
  alpine:$V `

  AS a
RUN <<EOF
FROM not-an-instruction:1
EOF
COPY <<-\"END\" /etc/x
\tFROM also-not:2
\tEND
RUN echo `$HOME
FROM debian:12
";
        assert_eq!(bases(text, &[]), vec!["alpine:3", "debian:12"]);
        // An unterminated `<<` was no heredoc: nothing after it is skipped.
        assert_eq!(
            bases("FROM a:1\nRUN echo '<<x'\nFROM b:2\n", &[]),
            vec!["a:1", "b:2"]
        );
        // The backslash escape continues lines too; `#` lines in the middle are dropped.
        assert_eq!(
            bases("FROM \\\n# c\n  busybox:1 AS b\nfrom b\n", &[]),
            vec!["busybox:1"]
        );
    }

    #[test]
    fn a_from_without_an_image_is_an_error_with_its_line() {
        let args = BTreeMap::new();
        let err = base_images("ARG X\n\nFROM\n", &args, &amd64(), &amd64()).unwrap_err();
        assert_eq!(err.line, 3);
        let err = base_images("FROM $NOTHING\n", &args, &amd64(), &amd64()).unwrap_err();
        assert!(err.message.contains("empty"), "{err}");
        let err = base_images("FROM a b c d\n", &args, &amd64(), &amd64()).unwrap_err();
        assert!(err.message.contains("expected"), "{err}");
    }

    #[test]
    fn expansion_follows_the_shell_forms_docker_supports() {
        let vars: HashMap<String, String> = [("A", "1"), ("E", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = |t: &str| expand(t, &vars, '\\');
        assert_eq!(e("$A-${A}"), "1-1");
        assert_eq!(e("${E:-d}|${E-d}|${U-d}|${U:-${A}x}"), "d||d|1x");
        assert_eq!(e("${A:+s}|${E:+s}|${E+s}|${U+s}"), "s||s|");
        assert_eq!(e("\\$A $ ${A"), "$A $ ${A");
    }
}
