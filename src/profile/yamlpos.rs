//! Positions in block-style YAML, found from indentation alone: which key path a line
//! belongs to, where a key path is written, and the line ranges of a mapping's entries.
//! Used to name fields in errors and to check a profile one entry at a time, so that every
//! error in a file is reported rather than only the first.

/// A line of YAML that starts a `key:` entry, with its indentation.
struct KeyLine<'a> {
    indent: usize,
    key: &'a str,
}

fn key_line(line: &str) -> Option<KeyLine<'_>> {
    let trimmed = line.trim_start();
    let indent = line.len() - trimmed.len();
    if trimmed.starts_with('#') || trimmed.starts_with("---") {
        return None;
    }
    // A sequence item that starts with a key (`- name: x`) counts at the key's column.
    let (indent, rest) = match trimmed.strip_prefix("- ") {
        Some(rest) => (
            indent + 2 + (rest.len() - rest.trim_start().len()),
            rest.trim_start(),
        ),
        None => (indent, trimmed),
    };
    let colon = rest.find(':')?;
    let after = &rest[colon + 1..];
    if !(after.is_empty() || after.starts_with(' ') || after.starts_with('\t')) {
        return None;
    }
    let key = rest[..colon].trim().trim_matches(|c| c == '"' || c == '\'');
    if key.is_empty() || key.contains(' ') && !rest.starts_with(['"', '\'']) {
        return None;
    }
    Some(KeyLine { indent, key })
}

/// The dotted key path of the entry that line `line` (1-based) belongs to, e.g.
/// `components.datastorage.images`.
pub fn path_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut path: Vec<&str> = Vec::new();
    let mut limit = usize::MAX;
    for l in lines.iter().take(line.min(lines.len())).rev() {
        if let Some(k) = key_line(l)
            && k.indent < limit
        {
            path.push(k.key);
            limit = k.indent;
            if limit == 0 {
                break;
            }
        }
    }
    path.reverse();
    path.join(".")
}

/// Where the key path is written: (line, column), both 1-based.
pub fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut found = None;
    let mut depth = 0;
    let mut parent_indent: Option<usize> = None;
    for (i, l) in text.lines().enumerate() {
        let Some(k) = key_line(l) else { continue };
        if let Some(p) = parent_indent
            && k.indent <= p
        {
            // Left the parent's block without finding the next key.
            return found;
        }
        if k.key == path[depth] {
            found = Some((i + 1, k.indent + 1));
            depth += 1;
            if depth == path.len() {
                return found;
            }
            parent_indent = Some(k.indent);
        }
    }
    found
}

/// The 1-based line ranges (inclusive) of each top-level key's block, in file order.
pub fn top_level_blocks(text: &str) -> Vec<(String, usize, usize)> {
    child_blocks(text, 1, text.lines().count(), 0)
}

/// The blocks of the keys directly inside lines `first..=last` whose indentation is more
/// than `parent_indent` (for the top level, pass 0 and the whole file).
pub fn child_blocks(
    text: &str,
    first: usize,
    last: usize,
    min_indent: usize,
) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks: Vec<(String, usize, usize)> = Vec::new();
    let mut child_indent: Option<usize> = None;
    for n in first..=last.min(lines.len()) {
        let l = lines[n - 1];
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        if let Some(k) = key_line(l)
            && k.indent >= min_indent
            && !l.trim_start().starts_with("- ")
            && child_indent.is_none_or(|c| c == k.indent)
        {
            child_indent = Some(k.indent);
            if let Some(b) = blocks.last_mut() {
                b.2 = n - 1;
            }
            blocks.push((k.key.to_string(), n, last.min(lines.len())));
        }
    }
    blocks
}

/// The text with every line outside the given 1-based inclusive ranges blanked, so that
/// parsing it reports the same line and column numbers as the whole file.
pub fn keep_lines(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, l) in text.lines().enumerate() {
        let n = i + 1;
        if ranges.iter().any(|&(a, b)| a <= n && n <= b) {
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "service: x\ncomponents:\n  a:\n    images: [x]\n    ready:\n      http: u\n  b:\n    manifests:\n      - m.yaml\nhooks: {}\n";

    #[test]
    fn path_at_names_the_enclosing_keys() {
        assert_eq!(path_at(DOC, 6), "components.a.ready.http");
        assert_eq!(path_at(DOC, 9), "components.b.manifests");
        assert_eq!(path_at(DOC, 1), "service");
    }

    #[test]
    fn locate_finds_nested_keys() {
        assert_eq!(locate(DOC, &["components", "b"]), Some((7, 3)));
        assert_eq!(
            locate(DOC, &["components", "a", "ready", "http"]),
            Some((6, 7))
        );
        assert_eq!(locate(DOC, &["hooks"]), Some((10, 1)));
    }

    #[test]
    fn blocks_split_a_mapping_into_its_entries() {
        let top = top_level_blocks(DOC);
        let names: Vec<_> = top.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(names, ["service", "components", "hooks"]);
        let (_, first, last) = top[1].clone();
        let comps = child_blocks(DOC, first + 1, last, 1);
        assert_eq!(comps, vec![("a".into(), 3, 6), ("b".into(), 7, 9)]);
    }
}
