//! A YAML document kept as a tree with every node's position (built by [`super::parse`]), and
//! a serde `Deserializer` over that tree whose errors name the line, column and key path of the
//! offending node.
//!
//! Reading a profile is then one parse of the text, however many errors it holds: the typed
//! model is deserialized from the tree section by section and entry by entry (so one bad entry
//! costs nothing more and hides no other), and positions of later, semantic errors are looked
//! up in it.

use std::{collections::HashSet, fmt};

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, Expected, MapAccess, SeqAccess, Unexpected,
    Visitor,
};

/// One YAML node: where it starts (1-based line and column) and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub column: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A quoted or plain string.
    Str(String),
    /// A plain scalar YAML resolves to null, a boolean or a number, with its text as written
    /// (a string field given `1.10` gets "1.10", a key written `n` is the key "n").
    Plain(Plain, String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl Node {
    pub fn located(line: usize, column: usize, value: Value) -> Node {
        Node {
            line,
            column,
            value,
        }
    }

    /// How many nodes the tree holds (this one included).
    pub fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| k.size() + v.size()).sum(),
            _ => 0,
        }
    }

    /// Place the whole tree at (line, column): where an alias of it is written.
    pub fn relocate(&mut self, line: usize, column: usize) {
        (self.line, self.column) = (line, column);
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.relocate(line, column)),
            Value::Map(pairs) => pairs.iter_mut().for_each(|(k, v)| {
                k.relocate(line, column);
                v.relocate(line, column);
            }),
            _ => {}
        }
    }
    /// The text of a scalar (a key, mostly); `None` for a list or a mapping.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) | Value::Plain(_, s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Plain(Plain::Null, _))
    }

    /// The value under `key` in a mapping, with the key's node.
    pub fn get(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.text() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// A mapping at this node's position holding `pairs` (a piece of a larger mapping).
    pub fn with_pairs(&self, pairs: Vec<(Node, Node)>) -> Node {
        Node {
            line: self.line,
            column: self.column,
            value: Value::Map(pairs),
        }
    }

    /// Where the key path is written: the position of its deepest key found, (line, column).
    pub fn locate(&self, path: &[&str]) -> Option<(usize, usize)> {
        let mut at = self;
        let mut found = None;
        for key in path {
            let Some((k, v)) = at.get(key) else { break };
            found = Some((k.line, k.column));
            at = v;
        }
        found
    }

    /// The key path of the deepest entry that starts before `column` on the last lines of the
    /// tree: which field a syntax error at that column (just after the tree) belongs to.
    pub fn path_before(&self, column: usize) -> String {
        let mut path = String::new();
        let mut at = self;
        loop {
            match &at.value {
                Value::Map(pairs) => match pairs.last() {
                    Some((k, v)) if k.column < column => {
                        push_key(&mut path, k.text().unwrap_or("?"));
                        at = v;
                    }
                    _ => break,
                },
                Value::Seq(items) => match items.last() {
                    Some(v) if v.column < column => {
                        path.push_str(&format!("[{}]", items.len() - 1));
                        at = v;
                    }
                    _ => break,
                },
                _ => break,
            }
        }
        path
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Joins the keys of a path in [`key_index`] (a key may hold `.`).
pub const KEY_SEPARATOR: &str = "\u{1f}";

/// The position of every key in the tree, by its key path joined with [`KEY_SEPARATOR`].
pub fn key_index(root: &Node) -> std::collections::HashMap<String, (usize, usize)> {
    fn walk(
        node: &Node,
        prefix: &str,
        out: &mut std::collections::HashMap<String, (usize, usize)>,
    ) {
        let Value::Map(pairs) = &node.value else {
            return;
        };
        for (k, v) in pairs {
            let path = match prefix {
                "" => k.text().unwrap_or("?").to_string(),
                p => format!("{p}{KEY_SEPARATOR}{}", k.text().unwrap_or("?")),
            };
            walk(v, &path, out);
            out.entry(path).or_insert((k.line, k.column));
        }
    }
    let mut out = std::collections::HashMap::new();
    walk(root, "", &mut out);
    out
}

/// Mappings up to this size are searched for a duplicate key rather than hashed.
const SMALL_MAP: usize = 16;

/// Every key written twice in one mapping, anywhere in the tree: (key node, path, first line).
pub fn duplicates(root: &Node) -> Vec<(usize, usize, String, String)> {
    let mut out = Vec::new();
    dup_walk(root, &mut String::new(), &mut out);
    out
}

fn dup_walk(node: &Node, path: &mut String, out: &mut Vec<(usize, usize, String, String)>) {
    let len = path.len();
    match &node.value {
        Value::Map(pairs) => {
            // A small mapping is searched; a large one hashed (linear either way).
            let mut seen: std::collections::HashMap<&str, usize> = Default::default();
            for (i, (k, v)) in pairs.iter().enumerate() {
                let key = k.text().unwrap_or("?");
                push_key(path, key);
                let first = if pairs.len() <= SMALL_MAP {
                    let before = pairs[..i]
                        .iter()
                        .find(|(b, _)| b.text().unwrap_or("?") == key);
                    before.map(|(b, _)| b.line)
                } else {
                    let first = seen.insert(key, k.line);
                    first.inspect(|&f| {
                        seen.insert(key, f);
                    })
                };
                if let Some(first) = first {
                    let msg = format!("`{key}` is given twice (first on line {first})");
                    out.push((k.line, k.column, path.clone(), msg));
                } else {
                    dup_walk(v, path, out);
                }
                path.truncate(len);
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                use std::fmt::Write;
                let _ = write!(path, "[{i}]");
                dup_walk(v, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A deserialization error with the position and key path of the node it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// What a value was expected to be, in a profile author's words (not Rust's).
fn expected_words(exp: &dyn Expected) -> String {
    let s = exp.to_string();
    if s.starts_with("struct ") || s == "a map" {
        return "a mapping".into();
    }
    match s.as_str() {
        "a sequence" => "a list".into(),
        "a boolean" => "true or false".into(),
        "u8" => "a number from 0 to 255".into(),
        "u16" => "a number from 0 to 65535".into(),
        "u32" | "u64" | "usize" => "a whole number".into(),
        "option" => "a value".into(),
        _ => s,
    }
}

fn found_words(u: Unexpected) -> String {
    match u {
        Unexpected::Bool(b) => format!("`{b}`"),
        Unexpected::Unsigned(n) => format!("the number {n}"),
        Unexpected::Signed(n) => format!("the number {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Str(s) => format!("the string {s:?}"),
        Unexpected::Unit | Unexpected::Option => "nothing (null)".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            line: None,
            column: None,
            field: None,
        }
    }
    fn invalid_type(unexp: Unexpected, exp: &dyn Expected) -> Self {
        Self::custom(format!(
            "expected {}, found {}",
            expected_words(exp),
            found_words(unexp)
        ))
    }
    fn invalid_value(unexp: Unexpected, exp: &dyn Expected) -> Self {
        Self::custom(format!(
            "{} is out of range: expected {}",
            found_words(unexp),
            expected_words(exp)
        ))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        // Aliases kept for old profiles (snake_case) are not advertised.
        let known: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|f| !f.contains('_'))
            .collect();
        Self::custom(format!(
            "unknown field `{field}` (fields here: {})",
            known.join(", ")
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing field `{field}`"))
    }
    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format!("`{field}` is given twice"))
    }
}

/// A key path, built on the stack as the deserializer descends; made a string only for errors.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, k) => {
                parent.render(out);
                push_key(out, k);
            }
            Path::Index(parent, i) => {
                parent.render(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

/// Deserializes a typed value from a [`Node`]. Errors are placed at the node, or at its key
/// when the node starts on a later line than the key (a block under `key:`).
pub struct NodeDe<'a, 'p> {
    node: &'a Node,
    path: &'p Path<'p>,
    at: (usize, usize),
}

/// Deserialize `T` from the tree rooted at `root`.
pub fn from_node<'a, T: Deserialize<'a>>(root: &'a Node) -> Result<T, Error> {
    T::deserialize(NodeDe {
        node: root,
        path: &Path::Root,
        at: (root.line, root.column),
    })
}

/// Deserialize `T` from `value`, found under the key path `keys` (the last key's node is `key`).
pub fn from_entry<'a, T: Deserialize<'a>>(
    keys: &[&str],
    key: &Node,
    value: &'a Node,
) -> Result<T, Error> {
    fn nest<'a, T: Deserialize<'a>>(
        keys: &[&str],
        parent: &Path<'_>,
        at: (usize, usize),
        value: &'a Node,
    ) -> Result<T, Error> {
        match keys.split_first() {
            None => T::deserialize(NodeDe {
                node: value,
                path: parent,
                at,
            }),
            Some((k, rest)) => nest(rest, &Path::Key(parent, k), at, value),
        }
    }
    nest(keys, &Path::Root, anchor(key, value), value)
}

fn anchor(key: &Node, value: &Node) -> (usize, usize) {
    if value.line > key.line || value.line == 0 {
        (key.line, key.column)
    } else {
        (value.line, value.column)
    }
}

/// Give an error that has no position yet the node's position and key path.
fn place(mut e: Error, at: (usize, usize), path: &Path<'_>) -> Error {
    if e.line.is_none() && e.field.is_none() {
        e.line = Some(at.0).filter(|&l| l > 0);
        e.column = Some(at.1).filter(|_| e.line.is_some());
        let mut field = String::new();
        path.render(&mut field);
        e.field = Some(field);
    }
    e
}

impl NodeDe<'_, '_> {
    fn place(&self, e: Error) -> Error {
        place(e, self.at, self.path)
    }

    fn unexpected(&self) -> Unexpected<'_> {
        match &self.node.value {
            Value::Str(s) => Unexpected::Str(s),
            Value::Plain(Plain::Null, _) => Unexpected::Unit,
            Value::Plain(Plain::Bool(b), _) => Unexpected::Bool(*b),
            Value::Plain(Plain::Int(i), _) => Unexpected::Signed(*i),
            Value::Plain(Plain::UInt(u), _) => Unexpected::Unsigned(*u),
            Value::Plain(Plain::Float(f), _) => Unexpected::Float(*f),
            Value::Seq(_) => Unexpected::Seq,
            Value::Map(_) => Unexpected::Map,
        }
    }

    fn mismatch<'de, V: Visitor<'de>>(&self, visitor: &V) -> Error {
        self.place(de::Error::invalid_type(self.unexpected(), visitor))
    }
}

impl<'de, 'a: 'de, 'p> Deserializer<'de> for NodeDe<'a, 'p> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.node.value {
            Value::Str(s) => v.visit_borrowed_str(s),
            Value::Plain(Plain::Null, _) => v.visit_unit(),
            Value::Plain(Plain::Bool(b), _) => v.visit_bool(*b),
            Value::Plain(Plain::Int(i), _) => v.visit_i64(*i),
            Value::Plain(Plain::UInt(u), _) => v.visit_u64(*u),
            Value::Plain(Plain::Float(f), _) => v.visit_f64(*f),
            Value::Seq(_) => return self.deserialize_seq(v),
            Value::Map(_) => return self.deserialize_map(v),
        };
        r.map_err(|e| self.place(e))
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Str(s) => v.visit_borrowed_str(s),
            Value::Plain(Plain::Null, _) => Err(self.mismatch(&v)),
            Value::Plain(_, text) => v.visit_borrowed_str(text),
            _ => Err(self.mismatch(&v)),
        }
        .map_err(|e| self.place(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            v.visit_none().map_err(|e| self.place(e))
        } else {
            let (at, path) = (self.at, self.path);
            v.visit_some(self).map_err(|e| place(e, at, path))
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let Value::Seq(items) = &self.node.value else {
            return Err(self.mismatch(&v));
        };
        v.visit_seq(Items {
            items: items.iter().enumerate(),
            path: self.path,
        })
        .map_err(|e| self.place(e))
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let Value::Map(pairs) = &self.node.value else {
            return Err(self.mismatch(&v));
        };
        v.visit_map(Pairs {
            pairs: pairs.iter(),
            seen: HashSet::new(),
            value: None,
            path: self.path,
        })
        .map_err(|e| self.place(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            v.visit_unit().map_err(|e| self.place(e))
        } else {
            Err(self.mismatch(&v))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Str(s) | Value::Plain(_, s) => v
                .visit_enum(de::value::StrDeserializer::<Error>::new(s))
                .map_err(|e| self.place(e)),
            _ => Err(self.mismatch(&v)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf
    }
}

struct Items<'a, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'p Path<'p>,
}

impl<'de, 'a: 'de> SeqAccess<'de> for Items<'a, '_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, i);
        seed.deserialize(NodeDe {
            node,
            path: &path,
            at: (node.line, node.column),
        })
        .map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Pairs<'a, 'p> {
    pairs: std::slice::Iter<'a, (Node, Node)>,
    /// Keys already given: a repeated key is skipped here ([`duplicates`] reports it).
    seen: HashSet<&'a str>,
    value: Option<(&'a Node, &'a Node)>,
    path: &'p Path<'p>,
}

impl<'de, 'a: 'de> MapAccess<'de> for Pairs<'a, '_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (k, v) in self.pairs.by_ref() {
            let name = k.text().unwrap_or("?");
            if !self.seen.insert(name) {
                continue;
            }
            self.value = Some((k, v));
            let path = Path::Key(self.path, name);
            return seed
                .deserialize(NodeDe {
                    node: k,
                    path: &path,
                    at: (k.line, k.column),
                })
                .map(Some);
        }
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (k, v) = self.value.take().expect("serde asks for a key first");
        let path = Path::Key(self.path, k.text().unwrap_or("?"));
        seed.deserialize(NodeDe {
            node: v,
            path: &path,
            at: anchor(k, v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::parse::parse;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        name: String,
        port: Option<u16>,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        map: BTreeMap<String, String>,
    }

    fn de(text: &str) -> Result<S, Error> {
        from_node(&parse(text).unwrap().unwrap())
    }

    #[test]
    fn plain_scalars_keep_their_text_for_string_fields() {
        let s = de("name: 1.10\nmap: {n: 007, y: yes}\n").unwrap();
        assert_eq!(s.name, "1.10");
        assert_eq!(s.map["n"], "007");
        assert_eq!(s.map["y"], "yes");
    }

    #[test]
    fn a_block_of_the_wrong_type_is_reported_at_its_key() {
        let e = de("name: x\nlist:\n  a: b\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(1)));
        assert_eq!(e.field.as_deref(), Some("list"));
        assert_eq!(e.message, "expected a list, found a mapping");
    }

    #[test]
    fn errors_name_the_field_and_position() {
        let e = de("name: x\nport: 70000\n").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.field.as_deref()),
            (Some(2), Some(7), Some("port"))
        );
        assert!(
            e.message.contains("expected a number from 0 to 65535"),
            "{e:?}"
        );
        let e = de("name: x\nlist: [a, {b: c}]\n").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.field.as_deref()),
            (Some(2), Some(11), Some("list[1]"))
        );
        let e = de("port: 1\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(1), Some("")));
        assert_eq!(e.message, "missing field `name`");
        let e = de("name: x\ncolour: red\n").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.field.as_deref()),
            (Some(2), Some(1), Some("colour"))
        );
        assert_eq!(
            e.message,
            "unknown field `colour` (fields here: name, port, list, map)"
        );
    }

    #[test]
    fn duplicate_keys_are_found_everywhere() {
        let root = parse("name: x\nmap:\n  a: 1\n  a: 2\nname: y\n")
            .unwrap()
            .unwrap();
        let d = duplicates(&root);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].0, d[0].1, d[0].2.as_str()), (4, 3, "map.a"));
        assert_eq!(d[1].3, "`name` is given twice (first on line 1)");
        // The first one counts.
        assert_eq!(from_node::<S>(&root).unwrap().name, "x");
    }

    #[test]
    fn the_field_of_a_syntax_error_is_the_entry_it_follows() {
        let root = parse("components:\n  a:\n    manifests: [m]\n")
            .unwrap()
            .unwrap();
        assert_eq!(root.path_before(4), "components.a");
        assert_eq!(root.path_before(6), "components.a.manifests");
        assert_eq!(root.locate(&["components", "a", "manifests"]), Some((3, 5)));
    }
}
