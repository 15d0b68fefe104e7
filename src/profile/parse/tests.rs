use std::path::Path;

use super::*;

fn value_of(text: &str) -> Value {
    let root = parse(text).unwrap().unwrap();
    root.get("k").expect("key k").1.value.clone()
}

/// The tree as serde-saphyr's untyped JSON value reads the same text.
fn json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Str(s) => J::String(s.clone()),
        Value::Plain(Plain::Null, _) => J::Null,
        Value::Plain(Plain::Bool(b), _) => J::Bool(*b),
        Value::Plain(Plain::Int(i), _) => J::from(*i),
        Value::Plain(Plain::UInt(u), _) => J::from(*u),
        Value::Plain(Plain::Float(f), _) => J::from(*f),
        Value::Seq(items) => J::Array(items.iter().map(json).collect()),
        Value::Map(pairs) => J::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.text().unwrap_or("?").to_string(), json(v)))
                .collect(),
        ),
    }
}

/// Every profile and stack kprov ships, read here and by serde-saphyr (another reader of the
/// same parser's events, with its own scalar resolution), gives the same values.
#[test]
fn shipped_profiles_read_as_serde_saphyr_reads_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["profiles", "profiles/stacks"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let ours = json(&parse(&text).unwrap().unwrap());
        let theirs: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(ours, theirs, "{}", path.display());
    }
}

#[test]
fn plain_scalars_resolve_as_the_core_schema_says() {
    use Plain::*;
    let cases: &[(&str, Option<Plain>)] = &[
        ("", Some(Null)),
        ("~", Some(Null)),
        ("NULL", Some(Null)),
        ("nULL", None),
        ("True", Some(Bool(true))),
        ("yes", Some(Bool(true))),
        ("OFF", Some(Bool(false))),
        ("0", Some(UInt(0))),
        ("-1", Some(Int(-1))),
        ("+7", Some(UInt(7))),
        ("0x1F", Some(UInt(31))),
        ("0o17", Some(UInt(15))),
        ("0b101", Some(UInt(5))),
        ("1_000", Some(UInt(1000))),
        ("18446744073709551615", Some(UInt(u64::MAX))),
        ("-9223372036854775808", Some(Int(i64::MIN))),
        ("1.5", Some(Float(1.5))),
        (".5", Some(Float(0.5))),
        ("-1e-3", Some(Float(-0.001))),
        ("-.inf", Some(Float(f64::NEG_INFINITY))),
        // Where serde-saphyr differs, the core schema is followed: a leading zero is still a
        // decimal integer (serde-saphyr: the float 7.0), and `.inf` is a float (serde-saphyr
        // rejects the whole file).
        ("007", Some(UInt(7))),
        (".INF", Some(Float(f64::INFINITY))),
        ("1.10", Some(Float(1.1))),
        // Too large for 64 bits: a float, as serde-saphyr reads it.
        ("18446744073709551616", Some(Float(18446744073709551616.0))),
        // Strings.
        ("1.2.3", None),
        ("v1", None),
        ("0x", None),
        ("0xZZ", None),
        ("1e", None),
        ("e3", None),
        (".", None),
        ("-", None),
        ("12:30", None),
        ("2024-01-01", None),
        ("inf", None),
        ("-.nan", None),
    ];
    for (text, want) in cases {
        assert_eq!(plain(text), *want, "{text:?}");
    }
    assert!(matches!(plain(".nan"), Some(Float(f)) if f.is_nan()));
}

#[test]
fn plain_scalars_keep_their_text_and_quoted_ones_are_strings() {
    assert_eq!(
        value_of("k: 1.10\n"),
        Value::Plain(Plain::Float(1.1), "1.10".into())
    );
    assert_eq!(value_of("k:\n"), Value::Plain(Plain::Null, String::new()));
    assert_eq!(value_of("k: '1.10'\n"), Value::Str("1.10".into()));
    assert_eq!(value_of("k: !!str 10\n"), Value::Str("10".into()));
    assert_eq!(value_of("k: |\n  a\n  b\n"), Value::Str("a\nb\n".into()));
}

#[test]
fn nodes_are_placed_where_they_are_written() {
    let root = parse("a:\n  b: [x, {c: d}]\n  e:\n    - f\n")
        .unwrap()
        .unwrap();
    assert_eq!((root.line, root.column), (1, 1));
    let (key, a) = root.get("a").unwrap();
    assert_eq!(
        ((key.line, key.column), (a.line, a.column)),
        ((1, 1), (2, 3))
    );
    let (_, b) = a.get("b").unwrap();
    let Value::Seq(items) = &b.value else {
        panic!("{b:?}")
    };
    assert_eq!((b.line, b.column), (2, 6));
    assert_eq!((items[1].line, items[1].column), (2, 10));
    let (key, e) = a.get("e").unwrap();
    assert_eq!(
        ((key.line, key.column), (e.line, e.column)),
        ((3, 3), (4, 5))
    );
}

#[test]
fn an_alias_is_placed_at_its_use_and_keeps_its_anchors_text() {
    let root = parse("a: &x {n: 007}\nb: *x\n").unwrap().unwrap();
    let (_, b) = root.get("b").unwrap();
    let (key, n) = b.get("n").unwrap();
    assert_eq!((key.line, key.column, n.line, n.column), (2, 4, 2, 4));
    assert_eq!(n.value, Value::Plain(Plain::UInt(7), "007".into()));
}

#[test]
fn merge_keys_add_what_the_mapping_does_not_give() {
    let root = parse("a: &a {x: 1, y: 2}\nb: &b {z: 3, x: 4}\nc:\n  <<: [*a, *b]\n  y: 5\n")
        .unwrap()
        .unwrap();
    let c = json(root.get("c").unwrap().1);
    assert_eq!(c, serde_json::json!({"y": 5, "x": 1, "z": 3}));
    let keys: Vec<_> = match &root.get("c").unwrap().1.value {
        Value::Map(p) => p
            .iter()
            .map(|(k, _)| k.text().unwrap().to_string())
            .collect(),
        _ => unreachable!(),
    };
    assert_eq!(keys, ["y", "x", "z"]);
}

#[test]
fn what_is_not_one_readable_document_is_an_error_at_its_place() {
    let kind = |text: &str| {
        parse(text)
            .map(|_| ())
            .map_err(|e| (e.line, e.column, e.kind))
    };
    assert_eq!(parse("# only a comment\n").unwrap(), None);
    assert_eq!(
        kind("a: 1\n---\nb: 2\n"),
        Err((2, 1, ParseErrorKind::MultipleDocuments))
    );
    assert_eq!(
        kind("a: *nope\n"),
        Err((1, 4, ParseErrorKind::UnknownAnchor))
    );
    let deep = format!("k: {}{}\n", "[".repeat(100), "]".repeat(100));
    assert_eq!(kind(&deep).unwrap_err().2, ParseErrorKind::TooLarge);
    let Err((line, column, ParseErrorKind::Syntax(msg))) = kind("a: [1, 2\nb: 3\n") else {
        panic!("a syntax error")
    };
    assert!(
        line >= 2 && column >= 1 && !msg.is_empty(),
        "{line}:{column} {msg}"
    );
}

/// The billion laughs: nine levels of ten aliases each would be 10^9 nodes.
#[test]
fn aliases_that_expand_past_the_budget_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        let list = [prev.as_str(); 10].join(", ");
        text += &format!("a{i}: &a{i} [{list}]\n");
    }
    let e = parse(&text).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooLarge);
}
