//! The JSON Go's `encoding/json.Marshal` writes for a YAML document decoded into a Go struct,
//! the struct described by a layout (data, not code): each JSON field in struct order, with its
//! type and `omitempty`.
//!
//! Projects in Go hash such JSON (kubernaut's workflow content hashes): reproducing it byte for
//! byte needs the struct's facts, which a layout file states, and Go's rules, which live here:
//! - the document is read as `sigs.k8s.io/yaml` reads it into the struct: YAML to JSON (a plain
//!   scalar where the struct has a string becomes that string: `1.10` → `"1.1"`, `yes` →
//!   `"true"`), then JSON into the struct: keys matched exactly, else case-insensitively; keys
//!   the struct lacks dropped; a value of the wrong type an error;
//! - fields come out in struct order; an `omitempty` field is left out when empty (`""`,
//!   `false`, `0`, a nil pointer, an empty list or map; never a struct); a field without it is
//!   always written, zero or not (`"required":false`, `"description":""`, `null` for a list
//!   or a pointer that is not set);
//! - map keys sorted; numbers as Go formats a float64 (`1`, `0.5`, `1e+21`, `1e-7`); strings
//!   with Go's escapes, HTML's `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`;
//! - a `raw` field (apiextensionsv1.JSON, json.RawMessage) is the document's value as JSON,
//!   compact, its mappings' keys sorted, its numbers as written by Go (integers as integers).
//!
//! The layout's own format is [`Layout`]; errors in either file name it with line and column.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::parse;
use super::tree::{self, Node, Plain, Value};

/// The Go struct a document is decoded into: its JSON fields, in struct order.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub fields: Vec<Field>,
}

/// One JSON field of a struct (`name`), or the element of a list or map (no `name`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The field's JSON name (its `json:"…"` tag); empty for a list's items or a map's values.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// `json:",omitempty"`: left out when empty (a struct never is, unless a pointer).
    #[serde(default)]
    pub omitempty: bool,
    /// A Go pointer (`*float64`, `*Struct`, `*apiextensionsv1.JSON`): absent or null is nil,
    /// written `null` (or left out with omitempty); any value given, zero included, is written.
    #[serde(default)]
    pub pointer: bool,
    /// A string used when the document gives none (empty): what the Go code sets before it
    /// marshals (kubernaut's `apiVersion` and `kind`).
    pub default: Option<String>,
    /// An object's fields, in struct order.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// A list's element.
    pub items: Option<Box<Field>>,
    /// A map's value (keys are strings).
    pub values: Option<Box<Field>>,
}

/// A field's Go type, as JSON sees it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `string`.
    #[default]
    String,
    /// `bool`.
    Bool,
    /// `float64`.
    Number,
    /// A struct (`fields`).
    Object,
    /// A slice (`items`).
    List,
    /// `map[string]T` (`values`).
    Map,
    /// Any JSON value as given (`apiextensionsv1.JSON`, `json.RawMessage`).
    Raw,
}

/// A problem at a place of a file: the layout, or the document encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub column: usize,
    /// The field's path in the document (`spec.parameters[5].minimum`); empty for the file.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

fn at(node: &Node, path: &str, message: impl Into<String>) -> Error {
    Error {
        line: node.line,
        column: node.column,
        path: path.to_string(),
        message: message.into(),
    }
}

/// One YAML document of `text`, as kprov's profile reader reads it (positions kept).
fn document(text: &str) -> Result<Node, Error> {
    let root = parse::parse(text).map_err(|e| Error {
        line: e.line,
        column: e.column,
        path: String::new(),
        message: match e.kind {
            parse::ParseErrorKind::MultipleDocuments => {
                "one YAML document is read, but `---` starts another one here".into()
            }
            k => super::load::yaml_message(&k),
        },
    })?;
    root.ok_or_else(|| Error {
        line: 1,
        column: 1,
        path: String::new(),
        message: "holds no YAML document".into(),
    })
}

impl Layout {
    /// A layout from its YAML text; a field of the wrong shape is an error at its line.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let root = document(text)?;
        let layout: Self = tree::from_node(&root).map_err(|e| Error {
            line: e.line.unwrap_or(root.line),
            column: e.column.unwrap_or(root.column),
            path: e.field.unwrap_or_default(),
            message: e.message,
        })?;
        check_fields(&layout.fields, root.get("fields").map(|(_, v)| v), "")?;
        Ok(layout)
    }

    /// The JSON Go writes for the YAML document `text` decoded into this struct.
    pub fn encode(&self, text: &str) -> Result<String, Error> {
        let root = document(text)?;
        if !matches!(root.value, Value::Map(_)) {
            return Err(at(&root, "", "the document is not a mapping"));
        }
        let mut out = String::new();
        encode_struct(&self.fields, Some(&root), "", &mut out)?;
        Ok(out)
    }
}

impl Field {
    /// The shape a type needs: an object's fields, a list's items, a map's values, names.
    /// `node` is where the field is written in the layout.
    fn check(&self, node: &Node, path: &str) -> Result<(), Error> {
        let bad = |m: &str| Err(at(node, path, m));
        match (self.kind, &self.items, &self.values) {
            (Kind::List, None, _) => return bad("a list needs `items`"),
            (Kind::Map, _, None) => return bad("a map needs `values`"),
            (Kind::List | Kind::Map, ..) => {}
            (_, Some(_), _) | (_, _, Some(_)) => {
                return bad("only a list has `items`, only a map `values`");
            }
            _ => {}
        }
        if self.kind != Kind::Object && !self.fields.is_empty() {
            return bad("only an object has `fields`");
        }
        if self.default.is_some() && self.kind != Kind::String {
            return bad("only a string has a `default`");
        }
        check_fields(&self.fields, node.get("fields").map(|(_, v)| v), path)?;
        for (key, e) in [("items", &self.items), ("values", &self.values)] {
            if let (Some(e), Some((_, n))) = (e, node.get(key)) {
                e.check(n, &format!("{path}[]"))?;
            }
        }
        Ok(())
    }
}

/// An object's fields, each checked where it is written (`list`: the `fields` list).
fn check_fields(fields: &[Field], list: Option<&Node>, path: &str) -> Result<(), Error> {
    let Some(list) = list else { return Ok(()) };
    let Value::Seq(nodes) = &list.value else {
        return Ok(());
    };
    for (f, n) in fields.iter().zip(nodes) {
        if f.name.is_empty() {
            return Err(at(n, path, "every field of an object needs a `name`"));
        }
        f.check(n, &join(path, &f.name))?;
    }
    Ok(())
}

/// The document's value for each field of a struct: exact key first, then a key equal to the
/// name but for case (as Go's json.Unmarshal matches them). Two keys for one field are an
/// error (Go would keep one of them by rules nobody should rely on).
fn struct_values<'a>(
    fields: &[Field],
    node: &'a Node,
    path: &str,
) -> Result<Vec<Option<&'a Node>>, Error> {
    let Value::Map(pairs) = &node.value else {
        return Err(at(node, path, "expected a mapping"));
    };
    let mut found: Vec<Option<(&Node, &Node)>> = vec![None; fields.len()];
    for (k, v) in pairs {
        let key = k.text().unwrap_or_default();
        let i = fields
            .iter()
            .position(|f| f.name == key)
            .or_else(|| fields.iter().position(|f| f.name.eq_ignore_ascii_case(key)));
        let Some(i) = i else { continue };
        if let Some((first, _)) = found[i] {
            return Err(at(
                k,
                &join(path, &fields[i].name),
                format!(
                    "keys `{}` and `{key}` both set this field",
                    first.text().unwrap_or_default()
                ),
            ));
        }
        found[i] = Some((k, v));
    }
    Ok(found.into_iter().map(|p| p.map(|(_, v)| v)).collect())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// A struct's fields in order; `node` is `None` (or null) for a struct the document leaves out.
fn encode_struct(
    fields: &[Field],
    node: Option<&Node>,
    path: &str,
    out: &mut String,
) -> Result<(), Error> {
    let values = match node.filter(|n| !n.is_null()) {
        Some(n) => struct_values(fields, n, path)?,
        None => vec![None; fields.len()],
    };
    out.push('{');
    let mut first = true;
    for (f, v) in fields.iter().zip(values) {
        let v = v.filter(|n| !n.is_null() || f.kind == Kind::Raw);
        let mut value = String::new();
        let empty = encode_field(f, v, &join(path, &f.name), &mut value)?;
        if f.omitempty && empty {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(&f.name, out);
        out.push(':');
        out.push_str(&value);
    }
    out.push('}');
    Ok(())
}

/// Writes one field's value (its zero when `node` is `None`); returns whether it is empty in
/// omitempty's sense.
fn encode_field(
    f: &Field,
    node: Option<&Node>,
    path: &str,
    out: &mut String,
) -> Result<bool, Error> {
    let node = node.filter(|n| !n.is_null());
    if f.pointer && node.is_none() {
        out.push_str("null");
        return Ok(true);
    }
    let empty = match f.kind {
        Kind::String => {
            let mut s = node
                .map(|n| scalar_string(n, path))
                .transpose()?
                .unwrap_or_default();
            if s.is_empty()
                && let Some(d) = &f.default
            {
                s.clone_from(d);
            }
            write_string(&s, out);
            s.is_empty()
        }
        Kind::Bool => {
            let b = node.map(|n| boolean(n, path)).transpose()?.unwrap_or(false);
            out.push_str(if b { "true" } else { "false" });
            !b
        }
        Kind::Number => {
            let x = node.map(|n| number(n, path)).transpose()?.unwrap_or(0.0);
            write_float(x, out);
            x == 0.0
        }
        Kind::Object => {
            encode_struct(&f.fields, node, path, out)?;
            false
        }
        Kind::List => encode_list(f, node, path, out)?,
        Kind::Map => encode_map(f, node, path, out)?,
        Kind::Raw => match node {
            Some(n) => {
                write_raw(n, path, out)?;
                false
            }
            None => {
                out.push_str("null");
                false
            }
        },
    };
    Ok(empty && !f.pointer)
}

fn encode_list(
    f: &Field,
    node: Option<&Node>,
    path: &str,
    out: &mut String,
) -> Result<bool, Error> {
    let item = f
        .items
        .as_deref()
        .expect("checked when the layout was read");
    let Some(node) = node else {
        out.push_str("null");
        return Ok(true);
    };
    let Value::Seq(items) = &node.value else {
        return Err(at(
            node,
            path,
            format!("expected a list, found {}", what(node)),
        ));
    };
    out.push('[');
    for (i, n) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_field(item, Some(n), &format!("{path}[{i}]"), out)?;
    }
    out.push(']');
    Ok(items.is_empty())
}

fn encode_map(f: &Field, node: Option<&Node>, path: &str, out: &mut String) -> Result<bool, Error> {
    let value = f
        .values
        .as_deref()
        .expect("checked when the layout was read");
    let Some(node) = node else {
        out.push_str("null");
        return Ok(true);
    };
    let Value::Map(pairs) = &node.value else {
        return Err(at(
            node,
            path,
            format!("expected a mapping, found {}", what(node)),
        ));
    };
    let mut sorted: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        let key = map_key(k, path)?;
        let mut text = String::new();
        encode_field(value, Some(v), &format!("{path}.{key}"), &mut text)?;
        if sorted.insert(key.clone(), text).is_some() {
            return Err(at(k, path, format!("key `{key}` is given twice")));
        }
    }
    write_sorted(&sorted, out);
    Ok(sorted.is_empty())
}

fn write_sorted(sorted: &BTreeMap<String, String>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
}

/// What a node holds, for errors.
fn what(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => format!("the string {s:?}"),
        Value::Plain(Plain::Bool(_), t) => format!("the boolean {t}"),
        Value::Plain(Plain::Null, _) => "null".into(),
        Value::Plain(_, t) => format!("the number {t}"),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

/// A scalar where the struct has a string: as sigs.k8s.io/yaml turns YAML numbers and
/// booleans into strings for such a field.
fn scalar_string(n: &Node, path: &str) -> Result<String, Error> {
    match &n.value {
        Value::Str(s) => Ok(s.clone()),
        Value::Plain(p, _) => Ok(match *p {
            Plain::Null => String::new(),
            Plain::Bool(b) => b.to_string(),
            Plain::Int(i) => i.to_string(),
            Plain::UInt(u) => u.to_string(),
            #[allow(clippy::cast_possible_truncation)] // Go formats it as a float32.
            Plain::Float(x) => format_g32(x as f32),
        }),
        _ => Err(at(n, path, format!("expected a string, found {}", what(n)))),
    }
}

fn boolean(n: &Node, path: &str) -> Result<bool, Error> {
    match &n.value {
        Value::Plain(Plain::Bool(b), _) => Ok(*b),
        _ => Err(at(
            n,
            path,
            format!("expected true or false, found {}", what(n)),
        )),
    }
}

#[allow(clippy::cast_precision_loss)] // Go reads the integer's JSON text into a float64.
fn number(n: &Node, path: &str) -> Result<f64, Error> {
    let x = match &n.value {
        Value::Plain(Plain::Int(i), _) => *i as f64,
        Value::Plain(Plain::UInt(u), _) => *u as f64,
        Value::Plain(Plain::Float(x), _) => *x,
        _ => return Err(at(n, path, format!("expected a number, found {}", what(n)))),
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(at(n, path, format!("{} has no JSON form", what(n))))
    }
}

/// A mapping key of a map or raw value, as sigs.k8s.io/yaml makes a string of it.
fn map_key(k: &Node, path: &str) -> Result<String, Error> {
    match &k.value {
        Value::Plain(Plain::Null, _) => Err(at(k, path, "a null key has no JSON form")),
        Value::Str(_) | Value::Plain(..) => scalar_string(k, path),
        _ => Err(at(k, path, "a key must be a scalar")),
    }
}

/// Any value, as Go's json.Marshal writes the `interface{}` sigs.k8s.io/yaml made of it.
fn write_raw(n: &Node, path: &str, out: &mut String) -> Result<(), Error> {
    match &n.value {
        Value::Str(s) => write_string(s, out),
        Value::Plain(Plain::Null, _) => out.push_str("null"),
        Value::Plain(Plain::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        Value::Plain(Plain::Int(i), _) => write!(out, "{i}").expect("to a String"),
        Value::Plain(Plain::UInt(u), _) => write!(out, "{u}").expect("to a String"),
        Value::Plain(Plain::Float(_), _) => write_float(number(n, path)?, out),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_raw(item, &format!("{path}[{i}]"), out)?;
            }
            out.push(']');
        }
        Value::Map(pairs) => {
            let mut sorted = BTreeMap::new();
            for (k, v) in pairs {
                let key = map_key(k, path)?;
                let mut text = String::new();
                write_raw(v, &format!("{path}.{key}"), &mut text)?;
                if sorted.insert(key.clone(), text).is_some() {
                    return Err(at(k, path, format!("key `{key}` is given twice")));
                }
            }
            write_sorted(&sorted, out);
        }
    }
    Ok(())
}

/// A JSON string as Go's encoder writes it (HTML escaping on, as json.Marshal has it).
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go 1.22 and later (kubernaut builds with 1.26); older Go wrote \u0008, \u000c.
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("to a String");
            }
            c if u32::from(c) < 0x20 => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("to a String");
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float64 as Go's JSON encoder writes it: the shortest digits that read back, without an
/// exponent from 1e-6 up to 1e21, else with one (`1e+21`, `1e-7`).
pub fn write_float(x: f64, out: &mut String) {
    let abs = x.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let e = format!("{x:e}");
        let (mantissa, exp) = e.split_once('e').expect("{:e} has an exponent");
        let sign = if exp.starts_with('-') { "-" } else { "+" };
        let digits = exp.trim_start_matches('-');
        write!(out, "{mantissa}e{sign}{digits}").expect("to a String");
    } else {
        write!(out, "{x}").expect("to a String");
    }
}

/// A float32 as Go's `strconv.FormatFloat(x, 'g', -1, 32)` writes it: the shortest digits,
/// with an exponent of at least two digits when it is below -4 or at least 6 (`1e+06`).
fn format_g32(x: f32) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{x:e}");
    let (mantissa, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    if (-4..6).contains(&exp) {
        return format!("{x}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests;
