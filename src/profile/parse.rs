//! A profile's YAML text made into a located [`Node`] tree, straight from the events of
//! granit-parser (the YAML parser under serde-saphyr), with the YAML 1.2 core schema's plain
//! scalars (and the YAML 1.1 booleans and merge keys that serde-saphyr also reads).
//!
//! Reading events directly rather than through serde-saphyr's `Spanned` values made reading a
//! 4.73 MB profile 1.7 times faster (1.99 → 1.17 s, `cargo bench --bench profile_errors`), about
//! what serde-saphyr alone takes without positions, and keeps the text an alias's anchor was
//! written with.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::tree::{Node, Plain, Value};

/// Why a text is not one readable YAML document, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub kind: ParseErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParseErrorKind {
    /// The YAML parser's own message.
    Syntax(String),
    /// A second document starts (`---`) where a profile is one.
    MultipleDocuments,
    /// `*alias` names no anchor defined before it.
    UnknownAnchor,
    /// Nested deeper than [`MAX_DEPTH`], or aliases expand past the node budget.
    TooLarge,
}

/// How deep mappings and lists may nest (serde-saphyr's default budget, which profiles were
/// read with before).
pub const MAX_DEPTH: usize = 64;

/// A mapping or list being read: its node (position; value filled in at its end), its anchor
/// id (0: none), and what it holds so far.
enum Open {
    Seq(Node, usize, Vec<Node>),
    Map(Node, usize, Vec<(Node, Node)>, Option<Node>),
}

/// Parse one YAML document into a tree. `Ok(None)`: the text holds no document (empty, or
/// comments only). Duplicate keys are kept, for [`super::tree::duplicates`] to report.
pub fn parse(text: &str) -> Result<Option<Node>, ParseError> {
    let mut b = Builder {
        text,
        // As many nodes as the text has bytes (at least serde-saphyr's default budget): an
        // alias that expands past that is an alias bomb, not a profile.
        budget: text.len().max(250_000),
        nodes: 0,
        anchors: HashMap::new(),
        open: Vec::new(),
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ParseError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            kind: if e.info().contains("unknown anchor") {
                ParseErrorKind::UnknownAnchor
            } else {
                ParseErrorKind::Syntax(e.info().to_string())
            },
        })?;
        b.event(event, &span)?;
    }
    Ok(b.root)
}

struct Builder<'t> {
    text: &'t str,
    budget: usize,
    nodes: usize,
    anchors: HashMap<usize, Node>,
    open: Vec<Open>,
    root: Option<Node>,
    documents: usize,
}

impl Builder<'_> {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), ParseError> {
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let error = |kind| ParseError { line, column, kind };
        let (node, anchor) = match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(error(ParseErrorKind::MultipleDocuments));
                }
                return Ok(());
            }
            Event::Scalar(value, style, anchor, tag) => {
                let (start, len) = span.byte_range().map_or((0, 0), |r| (r.start, r.len()));
                let value = if style == ScalarStyle::Plain && !forces_string(tag.as_deref()) {
                    // Its text as written (an empty value is "", not the parser's "~").
                    let text = self.text.get(start..start + len).unwrap_or("").to_string();
                    match plain(&text) {
                        Some(p) => Value::Plain(p, text),
                        None => Value::Str(text),
                    }
                } else {
                    Value::Str(value.into_owned())
                };
                (Node::located(line, column, value), anchor)
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                if self.open.len() >= MAX_DEPTH {
                    return Err(error(ParseErrorKind::TooLarge));
                }
                let node = Node::located(line, column, Value::Seq(Vec::new()));
                self.open.push(match event {
                    Event::SequenceStart(..) => Open::Seq(node, anchor, Vec::new()),
                    _ => Open::Map(node, anchor, Vec::new(), None),
                });
                return Ok(());
            }
            Event::SequenceEnd | Event::MappingEnd => match self.open.pop() {
                Some(Open::Seq(mut node, anchor, items)) => {
                    node.value = Value::Seq(items);
                    (node, anchor)
                }
                Some(Open::Map(mut node, anchor, pairs, _)) => {
                    node.value = Value::Map(merged(pairs));
                    (node, anchor)
                }
                None => return Ok(()),
            },
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(error(ParseErrorKind::UnknownAnchor));
                };
                self.nodes += target.size();
                if self.nodes > self.budget {
                    return Err(error(ParseErrorKind::TooLarge));
                }
                // Placed where the alias is written (errors in it point there), its text kept.
                let mut node = target.clone();
                node.relocate(line, column);
                (node, 0)
            }
            _ => return Ok(()),
        };
        self.nodes += 1;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.open.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, pairs, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => pairs.push((k, node)),
            },
        }
        Ok(())
    }
}

/// `!!str` (or the non-specific `!`) keeps a plain scalar a string.
fn forces_string(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|t| t.suffix() == "str" || (t.handle() == "!" && t.suffix().is_empty()))
}

/// A mapping's `<<` merge keys resolved as YAML 1.1 defines them: the keys of the merged
/// mapping (or of each mapping in a merged list, the first one winning) that the mapping does
/// not give itself, after its own keys.
fn merged(pairs: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| matches!(&k.value, Value::Str(s) if s == "<<");
    if !pairs.iter().any(|(k, _)| is_merge(k)) {
        return pairs;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| is_merge(k));
    // Keys given so far, so that a merge into a large mapping stays linear.
    let mut given: std::collections::HashSet<String> = own
        .iter()
        .filter_map(|(k, _)| k.text().map(str::to_string))
        .collect();
    for (_, source) in merges {
        let sources = match source.value {
            Value::Seq(items) => items,
            _ => vec![source],
        };
        for source in sources {
            let Value::Map(extra) = source.value else {
                continue;
            };
            for (k, v) in extra {
                let fresh = k.text().is_none_or(|t| given.insert(t.to_string()));
                if fresh {
                    own.push((k, v));
                }
            }
        }
    }
    own
}

/// What a plain scalar resolves to, `None` for a string: null, a boolean (YAML 1.1's
/// yes/no/on/off too, as serde-saphyr reads them), an integer (decimal, `0x`, `0o`, `0b`,
/// with `_` separators) or a float (including `.inf` and `.nan`).
pub fn plain(text: &str) -> Option<Plain> {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Some(Plain::Null);
    }
    let bool_word = |words: [&str; 4]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if bool_word(["true", "yes", "y", "on"]) {
        return Some(Plain::Bool(true));
    }
    if bool_word(["false", "no", "n", "off"]) {
        return Some(Plain::Bool(false));
    }
    // Only a digit, a sign or a `.` starts a number: most plain scalars (keys, names) do not.
    match text.as_bytes()[0] {
        b'0'..=b'9' | b'+' | b'-' | b'.' => integer(text).or_else(|| float(text)),
        _ => None,
    }
}

fn integer(text: &str) -> Option<Plain> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    // Copied only when it holds `_` separators or capitals (`0X1F`).
    let lower = if unsigned
        .bytes()
        .any(|b| b == b'_' || b.is_ascii_uppercase())
    {
        std::borrow::Cow::Owned(unsigned.replace('_', "").to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(unsigned)
    };
    let (radix, digits) = match lower.get(..2) {
        Some("0x") => (16, &lower[2..]),
        Some("0o") => (8, &lower[2..]),
        Some("0b") => (2, &lower[2..]),
        _ => (10, &lower[..]),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if !negative {
        return Some(Plain::UInt(magnitude));
    }
    // -9223372036854775808 is the one magnitude above i64::MAX that fits.
    0i64.checked_sub_unsigned(magnitude).map(Plain::Int)
}

fn float(text: &str) -> Option<Plain> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    let special = match unsigned {
        ".inf" | ".Inf" | ".INF" => Some(f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => Some(f64::NAN),
        _ => None,
    };
    if let Some(f) = special {
        return Some(Plain::Float(if negative { -f } else { f }));
    }
    // YAML 1.2's float: digits with at most one `.`, and an optional exponent.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (digits(a) || a.is_empty()) && (digits(b) || b.is_empty()) && mantissa != "."
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok().map(Plain::Float)
}

#[cfg(test)]
mod tests;
