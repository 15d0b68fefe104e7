//! Expected texts are what Go's encoding/json and strconv write for the same values (checked
//! with go1.19 for these inputs; `\b` and `\f` as Go 1.22 and later write them).

use super::*;

fn layout(yaml: &str) -> Layout {
    Layout::from_yaml(yaml).unwrap_or_else(|e| panic!("layout: {e}"))
}

/// A parameter-like struct: field order unlike alphabetical, omitempty and not, pointers.
const PARAM: &str = "\
fields:
  - {name: name, type: string}
  - {name: required, type: bool}
  - {name: description, type: string}
  - {name: enum, type: list, omitempty: true, items: {type: string}}
  - {name: minimum, type: number, pointer: true, omitempty: true}
  - {name: maximum, type: number, pointer: true, omitempty: true}
  - {name: default, type: raw, pointer: true, omitempty: true}
  - {name: tags, type: list, items: {type: string}}
";

#[test]
fn fields_come_out_in_struct_order_with_zeros_and_without_empty_omitempty_ones() {
    let l = layout(PARAM);
    let out = l
        .encode("default: 30\nmaximum: 300\nminimum: 0\nname: GRACE\nextra: dropped\n")
        .unwrap();
    assert_eq!(
        out,
        r#"{"name":"GRACE","required":false,"description":"","minimum":0,"maximum":300,"default":30,"tags":null}"#
    );
    // An empty list is not nil: written when not omitempty, left out when it is.
    let out = l.encode("name: x\nenum: []\ntags: []\n").unwrap();
    assert_eq!(
        out,
        r#"{"name":"x","required":false,"description":"","tags":[]}"#
    );
}

#[test]
fn keys_match_case_insensitively_and_two_keys_for_one_field_are_an_error() {
    let l = layout(PARAM);
    assert_eq!(
        l.encode("NAME: a\nRequired: true\n").unwrap(),
        r#"{"name":"a","required":true,"description":"","tags":null}"#
    );
    let e = l.encode("name: a\nName: b\n").unwrap_err();
    assert_eq!((e.line, e.column, e.path.as_str()), (2, 1, "name"));
    assert_eq!(e.message, "keys `name` and `Name` both set this field");
}

#[test]
fn plain_scalars_in_string_fields_become_strings_as_sigs_yaml_makes_them() {
    let l = layout("fields: [{name: s, type: list, items: {type: string}}]\n");
    let out = l
        .encode(
            "s: [1.10, 1.0, 1234567.0, 3.14159265358979, 1e100, 42, -7, yes, false, ~, \"q\"]\n",
        )
        .unwrap();
    assert_eq!(
        out,
        r#"{"s":["1.1","1","1.234567e+06","3.1415927","+Inf","42","-7","true","false","","q"]}"#
    );
}

#[test]
fn floats_are_written_as_go_writes_a_float64() {
    let cases = [
        (0.0, "0"),
        (1.0, "1"),
        (0.5, "0.5"),
        (300.0, "300"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000_001, "0.000001"),
        (123_456_789_012.0, "123456789012"),
        (-0.25, "-0.25"),
        (1e100, "1e+100"),
        (2.5e-10, "2.5e-10"),
    ];
    for (x, want) in cases {
        let mut out = String::new();
        write_float(x, &mut out);
        assert_eq!(out, want, "{x}");
    }
}

#[test]
fn strings_are_escaped_as_go_escapes_them_html_included() {
    let mut out = String::new();
    write_string(
        "a<b>&c \"q\" \\ \n\r\t\u{1}\u{1f}\u{2028}\u{2029} é ✓ \u{7f}\u{8}\u{c}",
        &mut out,
    );
    assert_eq!(
        out,
        "\"a\\u003cb\\u003e\\u0026c \\\"q\\\" \\\\ \\n\\r\\t\\u0001\\u001f\\u2028\\u2029 é ✓ \u{7f}\\b\\f\""
    );
}

#[test]
fn raw_values_keep_their_json_with_sorted_keys_and_integers_as_written() {
    let l = layout("fields: [{name: r, type: raw}, {name: p, type: raw, pointer: true}]\n");
    let out = l
        .encode("r: {z: 1, a: [2.0, 1.5, \"<x>\", null, true], 10: k, m: {b: 1, a: 2}}\n")
        .unwrap();
    assert_eq!(
        out,
        r#"{"r":{"10":"k","a":[2,1.5,"\u003cx\u003e",null,true],"m":{"a":2,"b":1},"z":1},"p":null}"#
    );
    // A value-type raw field that is not given is JSON null, as apiextensionsv1.JSON writes it.
    assert_eq!(l.encode("{}").unwrap(), r#"{"r":null,"p":null}"#);
}

#[test]
fn structs_maps_and_pointers_follow_go() {
    let l = layout(
        "fields:\n\
         \x20 - {name: kind, type: string, default: Thing}\n\
         \x20 - {name: meta, type: object, omitempty: true, fields: [{name: name, type: string}]}\n\
         \x20 - {name: deps, type: object, pointer: true, omitempty: true, fields: [{name: s, type: list, omitempty: true, items: {type: string}}]}\n\
         \x20 - {name: labels, type: map, omitempty: true, values: {type: string}}\n\
         \x20 - {name: n, type: number, omitempty: true}\n",
    );
    // A struct is never empty, even with omitempty; a nil pointer is; the default fills in.
    assert_eq!(
        l.encode("{}").unwrap(),
        r#"{"kind":"Thing","meta":{"name":""}}"#
    );
    assert_eq!(
        l.encode("kind: K\ndeps: {}\nlabels: {b: 2, a: x}\nn: 0.0\n")
            .unwrap(),
        r#"{"kind":"K","meta":{"name":""},"deps":{},"labels":{"a":"x","b":"2"}}"#
    );
}

#[test]
fn a_value_of_the_wrong_type_is_an_error_at_its_line_and_field() {
    let l = layout(
        "fields:\n  - name: params\n    type: list\n    items: {type: object, fields: [{name: required, type: bool}, {name: min, type: number, pointer: true}]}\n",
    );
    let e = l
        .encode("params:\n  - required: true\n  - required: \"yes\"\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "3:15: params[1].required: expected true or false, found the string \"yes\""
    );
    let e = l.encode("params:\n  - min: ten\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "2:10: params[0].min: expected a number, found the string \"ten\""
    );
    let e = l.encode("params: {a: 1}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "1:9: params: expected a list, found a mapping"
    );
    let e = l.encode("- a\n").unwrap_err();
    assert_eq!(e.message, "the document is not a mapping");
    let e = l.encode("a: 1\n---\nb: 2\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("one YAML document"), "{e}");
}

#[test]
fn a_layout_of_the_wrong_shape_is_an_error_at_its_line() {
    let e = Layout::from_yaml("fields:\n  - {name: a, type: list}\n").unwrap_err();
    assert_eq!(e.to_string(), "2:5: a: a list needs `items`");
    let e = Layout::from_yaml("fields:\n  - {name: a, type: strnig}\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("strnig"), "{e}");
    let e = Layout::from_yaml(
        "fields:\n  - name: o\n    type: object\n    fields:\n      - {type: bool}\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "5:9: o: every field of an object needs a `name`"
    );
    let e = Layout::from_yaml("fields: [{name: b, type: bool, default: x}]\n").unwrap_err();
    assert_eq!(e.message, "only a string has a `default`");
}
