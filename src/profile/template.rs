//! Manifest templates: `{{ name }}` placeholders replaced from a flat set of values.
//! Unknown names are errors (with the line), never silently left in place.
//!
//! A placeholder may read a file instead of a value, `{{ file "PATH" }}` (its content as it is;
//! the caller reads it, see [`files`] and [`FILE_PREFIX`]), and may pass what it reads through
//! filters, in order: `{{ runtime.token | json }}`, `{{ file "a.yaml" | json }}` (`json`: as one
//! JSON string, quoted and escaped, so a file's text fits inside a JSON document).
//!
//! Values computed from the checkout are filters too, not run-time values: a digest of a file
//! is known before the run (so `kprov validate` checks it and `kprov render` shows it), needs
//! no task and no cluster, and follows the file wherever `--source` points. `goJson "LAYOUT"`
//! is the JSON Go's encoding/json writes for the YAML document decoded into the struct a layout
//! file describes (see [`super::gojson`]; the layout is read like a `file`), `sha256` its hex
//! digest, `uuid5 "NAMESPACE"` the name-based UUID of the text under a namespace:
//! `{{ file "w.yaml" | goJson "kprov:layout.yaml" | sha256 | uuid5 "6ba7b810-…" }}`.

use std::collections::BTreeMap;

/// Values a template may use: `namespace`, `service`, `cluster`, `image.<key>`,
/// `ports.<name>` (the NodePort), `hostPorts.<name>`, `values.<key>`, and `file:<path>` for
/// each file its placeholders read.
pub type Values = BTreeMap<String, String>;

/// The key under which a file's content is looked up: `{{ file "a/b.yaml" }}` reads the value
/// `file:a/b.yaml`.
pub const FILE_PREFIX: &str = "file:";

/// The filters a placeholder may apply, in order, after `|`, with what argument each takes.
pub const FILTERS: [(&str, Option<&str>); 4] = [
    ("json", None),
    ("goJson", Some("a layout file")),
    ("sha256", None),
    ("uuid5", Some("a namespace UUID")),
];

/// One `| NAME "ARG"` of a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    name: String,
    arg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Errors as one message, `sep` between them, each at `origin:line:column` when an origin
/// (the template's file) is given.
pub fn joined(errors: &[TemplateError], origin: Option<&str>, sep: &str) -> String {
    errors
        .iter()
        .map(|e| match origin {
            Some(o) => format!("{o}:{}:{}: {}", e.line, e.column, e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// One `{{ … }}` of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    /// The value it reads: a name, or `file:<path>`.
    key: String,
    filters: Vec<Filter>,
    line: usize,
    column: usize,
    /// Byte offsets of `{{` and just past `}}` in the whole text.
    start: usize,
    end: usize,
}

/// A quoted argument at the start of `text` (`"…"`), and what follows it.
fn quoted<'a>(text: &'a str, inner: &str) -> Result<Option<(String, &'a str)>, String> {
    let Some(quoted) = text.strip_prefix('"') else {
        return Ok(None);
    };
    let Some(close) = quoted.find('"') else {
        return Err(format!("unclosed `\"` in `{inner}`"));
    };
    Ok(Some((quoted[..close].to_string(), &quoted[close + 1..])))
}

/// What is inside `{{ … }}`: `NAME` or `file "PATH"`, then `| FILTER`s.
fn parse_inner(inner: &str) -> Result<(String, Vec<Filter>), String> {
    let inner = inner.trim();
    let (key, rest) = match inner.strip_prefix("file") {
        Some(after) if after.starts_with(char::is_whitespace) => {
            let Some((path, rest)) = quoted(after.trim_start(), inner)? else {
                return Err(format!(
                    "`file` takes a quoted path: {{{{ file \"PATH\" }}}} (found `{inner}`)"
                ));
            };
            if path.is_empty() {
                return Err("`file` needs a path".into());
            }
            (format!("{FILE_PREFIX}{path}"), rest)
        }
        _ => {
            let end = inner.find('|').unwrap_or(inner.len());
            (inner[..end].trim().to_string(), &inner[end..])
        }
    };
    let mut rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('|') {
        return Err(format!(
            "unexpected `{rest}` after `{key}` (filters follow `|`)"
        ));
    }
    let mut filters = Vec::new();
    while let Some(after) = rest.strip_prefix('|') {
        let after = after.trim_start();
        let end = after
            .find(|c: char| c.is_whitespace() || c == '|' || c == '"')
            .unwrap_or(after.len());
        let name = &after[..end];
        let (arg, next) = match quoted(after[end..].trim_start(), inner)? {
            Some((a, next)) => (Some(a), next),
            None => (None, &after[end..]),
        };
        filters.push(filter(name, arg)?);
        rest = next.trim_start();
        if !rest.is_empty() && !rest.starts_with('|') {
            return Err(format!("unexpected `{rest}` after filter `{name}`"));
        }
    }
    Ok((key, filters))
}

/// A filter by name, its argument checked against what it takes.
fn filter(name: &str, arg: Option<String>) -> Result<Filter, String> {
    let Some((_, takes)) = FILTERS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = FILTERS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown filter `{name}` (filters: {})",
            names.join(", ")
        ));
    };
    match (takes, &arg) {
        (None, Some(a)) => Err(format!("filter `{name}` takes no argument (found \"{a}\")")),
        (Some(what), None) => Err(format!("filter `{name}` takes {what}: `{name} \"…\"`")),
        (Some(_), Some(a)) if name == "uuid5" => namespace(a)
            .map(|_| Filter {
                name: name.into(),
                arg,
            })
            .map_err(|e| format!("filter `uuid5`: {e}")),
        _ => Ok(Filter {
            name: name.into(),
            arg,
        }),
    }
}

/// A UUIDv5 namespace: a UUID, or one of RFC 4122's by name (`dns`, `url`, `oid`, `x500`).
fn namespace(text: &str) -> Result<uuid::Uuid, String> {
    match text {
        "dns" => Ok(uuid::Uuid::NAMESPACE_DNS),
        "url" => Ok(uuid::Uuid::NAMESPACE_URL),
        "oid" => Ok(uuid::Uuid::NAMESPACE_OID),
        "x500" => Ok(uuid::Uuid::NAMESPACE_X500),
        _ => uuid::Uuid::parse_str(text).map_err(|e| {
            format!("{text:?} is no namespace UUID ({e}; or one of dns, url, oid, x500)")
        }),
    }
}

/// Every placeholder of `text`, in order.
fn placeholders(text: &str) -> Result<Vec<Placeholder>, TemplateError> {
    let mut out = Vec::new();
    let mut line_start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let mut offset = 0;
        while let Some(open) = line[offset..].find("{{").map(|o| o + offset) {
            let at = |column: usize, message: String| TemplateError {
                line: i + 1,
                column,
                message,
            };
            let Some(close) = line[open..].find("}}").map(|c| c + open) else {
                return Err(at(open + 1, "unclosed `{{`".into()));
            };
            let (key, filters) =
                parse_inner(&line[open + 2..close]).map_err(|m| at(open + 1, m))?;
            out.push(Placeholder {
                key,
                filters,
                line: i + 1,
                column: open + 1,
                start: line_start + open,
                end: line_start + close + 2,
            });
            offset = close + 2;
        }
        line_start += line.len();
    }
    Ok(out)
}

/// The names a template refers to, with their positions (a file as `file:<path>`).
pub fn names(text: &str) -> Result<Vec<(String, usize, usize)>, TemplateError> {
    Ok(placeholders(text)?
        .into_iter()
        .map(|p| (p.key, p.line, p.column))
        .collect())
}

/// The files a template reads (`{{ file "PATH" }}`, and the layouts of `goJson "PATH"`), with
/// their positions, in order.
pub fn files(text: &str) -> Result<Vec<(String, usize, usize)>, TemplateError> {
    let mut out = Vec::new();
    for p in placeholders(text)? {
        if let Some(path) = p.key.strip_prefix(FILE_PREFIX) {
            out.push((path.to_string(), p.line, p.column));
        }
        for f in p.filters.iter().filter(|f| f.name == "goJson") {
            out.extend(f.arg.clone().map(|a| (a, p.line, p.column)));
        }
    }
    Ok(out)
}

/// What a placeholder's value is called in a filter's error: its file, or its name.
fn origin(key: &str) -> String {
    match key.strip_prefix(FILE_PREFIX) {
        Some(path) => path.to_string(),
        None => format!("`{key}`"),
    }
}

fn apply_filter(f: &Filter, value: &str, key: &str, values: &Values) -> Result<String, String> {
    let arg = f.arg.as_deref().unwrap_or_default();
    Ok(match f.name.as_str() {
        "json" => serde_json::Value::String(value.to_string()).to_string(),
        "sha256" => {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(value.as_bytes()))
        }
        "uuid5" => {
            let ns = namespace(arg).expect("checked when parsed");
            uuid::Uuid::new_v5(&ns, value.as_bytes()).to_string()
        }
        "goJson" => {
            let Some(text) = values.get(&format!("{FILE_PREFIX}{arg}")) else {
                return Err(format!("file {arg:?} was not read for this template"));
            };
            let layout = super::gojson::Layout::from_yaml(text)
                .map_err(|e| format!("goJson: layout {arg}:{e}"))?;
            layout
                .encode(value)
                .map_err(|e| format!("goJson: {}:{e}", origin(key)))?
        }
        other => unreachable!("filter {other} is checked when parsed"),
    })
}

/// The value of one placeholder, its filters applied in order.
fn filtered(p: &Placeholder, values: &Values) -> Result<String, TemplateError> {
    let mut v = values[&p.key].clone();
    for f in &p.filters {
        v = apply_filter(f, &v, &p.key, values).map_err(|message| TemplateError {
            line: p.line,
            column: p.column,
            message,
        })?;
    }
    Ok(v)
}

/// The problems of the filters of placeholders that read files (`values` holds the files'
/// texts): what a run would find, known before it. Other values are not known before the run.
pub fn check_file_filters(text: &str, values: &Values) -> Vec<TemplateError> {
    let Ok(used) = placeholders(text) else {
        return Vec::new();
    };
    used.iter()
        .filter(|p| p.key.starts_with(FILE_PREFIX) && values.contains_key(&p.key))
        .filter_map(|p| filtered(p, values).err())
        .collect()
}

/// The strings inside a JSON value (a status to patch), each a template of its own.
pub fn json_strings(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().flat_map(json_strings).collect(),
        serde_json::Value::Object(m) => m.values().flat_map(json_strings).collect(),
        _ => Vec::new(),
    }
}

/// Replace every placeholder; every unknown name is reported.
pub fn render(text: &str, values: &Values) -> Result<String, Vec<TemplateError>> {
    let used = placeholders(text).map_err(|e| vec![e])?;
    let unknown: Vec<TemplateError> = used
        .iter()
        .filter(|p| !values.contains_key(&p.key))
        .map(|p| TemplateError {
            line: p.line,
            column: p.column,
            message: unknown_message(&p.key, values),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut copied = 0;
    for p in &used {
        out.push_str(&text[copied..p.start]);
        match filtered(p, values) {
            Ok(v) => out.push_str(&v),
            Err(e) => errors.push(e),
        }
        copied = p.end;
    }
    out.push_str(&text[copied..]);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn unknown_message(name: &str, values: &Values) -> String {
    if let Some(path) = name.strip_prefix(FILE_PREFIX) {
        return format!("file {path:?} was not read for this template");
    }
    let prefix = name.split('.').next().unwrap_or(name);
    let known: Vec<&str> = values
        .keys()
        .filter(|k| k.split('.').next() == Some(prefix))
        .map(String::as_str)
        .collect();
    if known.is_empty() {
        format!("unknown template value `{name}`")
    } else {
        format!(
            "unknown template value `{name}` (known: {})",
            known.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_unknown_names_reported_with_lines() {
        let mut v = Values::new();
        v.insert("namespace".into(), "ks".into());
        v.insert("image.ds".into(), "localhost/ds:kprov-1".into());
        assert_eq!(
            render("ns: {{namespace}}\nimage: {{ image.ds }}\n", &v).unwrap(),
            "ns: ks\nimage: localhost/ds:kprov-1\n"
        );
        let e = render("a: 1\nb: {{ image.x }} {{ nope }}\n", &v).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].line, e[0].column), (2, 4));
        assert!(e[0].message.contains("known: image.ds"), "{}", e[0].message);
        assert_eq!(e[1].message, "unknown template value `nope`");
    }

    #[test]
    fn a_file_placeholder_reads_its_value_and_json_quotes_it() {
        let mut v = Values::new();
        let text = "kind: Workflow\nmetadata:\n  name: \"x\"\n\tdesc: a\\b\n";
        v.insert(format!("{FILE_PREFIX}fixtures/w.yaml"), text.into());
        v.insert("runtime.token".into(), "t\"1".into());
        let body =
            r#"{"content":{{ file "fixtures/w.yaml" | json }},"token":{{runtime.token|json}}}"#;
        let out = render(body, &v).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["content"], text);
        assert_eq!(parsed["token"], "t\"1");
        // Without the filter, the file's text goes in as it is.
        assert_eq!(render("{{ file \"fixtures/w.yaml\" }}", &v).unwrap(), text);
        assert_eq!(
            files(body).unwrap(),
            [("fixtures/w.yaml".to_string(), 1, 12)]
        );
        assert_eq!(
            names(body).unwrap()[1],
            ("runtime.token".to_string(), 1, 56)
        );
    }

    #[test]
    fn a_file_not_read_an_unknown_filter_and_a_bad_file_call_are_errors_with_lines() {
        let v = Values::new();
        let e = render("a\n  {{ file \"x.json\" | json }}\n", &v).unwrap_err();
        assert_eq!((e[0].line, e[0].column), (2, 3));
        assert_eq!(
            e[0].message,
            "file \"x.json\" was not read for this template"
        );
        let e = names("{{ namespace | yaml }}").unwrap_err();
        assert_eq!(
            e.message,
            "unknown filter `yaml` (filters: json, goJson, sha256, uuid5)"
        );
        let e = names("x\n{{ file x.json }}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        assert!(
            e.message.starts_with("`file` takes a quoted path"),
            "{}",
            e.message
        );
        let e = names("{{ file \"x.json }}").unwrap_err();
        assert!(e.message.starts_with("unclosed `\"`"), "{}", e.message);
        let e = names("{{ file \"x.json\" json }}").unwrap_err();
        assert!(e.message.contains("filters follow `|`"), "{}", e.message);
    }

    #[test]
    fn sha256_and_uuid5_filters_give_the_known_vectors() {
        let mut v = Values::new();
        v.insert("values.host".into(), "www.example.com".into());
        v.insert("values.abc".into(), "abc".into());
        // RFC 9562 (which obsoletes RFC 4122), appendix A.4: UUIDv5 of www.example.com in DNS.
        let dns = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        let text = format!(
            "{{{{ values.host | uuid5 \"{dns}\" }}}} {{{{ values.host | uuid5 \"dns\" }}}}"
        );
        assert_eq!(
            render(&text, &v).unwrap(),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2 2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
        // FIPS 180-2's SHA-256 of "abc", then filters in order.
        assert_eq!(
            render("{{ values.abc | sha256 }}", &v).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            render("{{ values.abc | sha256 | json }}", &v).unwrap(),
            "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""
        );
    }

    #[test]
    fn go_json_reads_its_layout_as_a_file_and_names_the_document_in_errors() {
        let text = "h: {{ file \"w.yaml\" | goJson \"kprov:l.yaml\" | sha256 }}";
        assert_eq!(
            files(text).unwrap(),
            [
                ("w.yaml".to_string(), 1, 4),
                ("kprov:l.yaml".to_string(), 1, 4)
            ]
        );
        let mut v = Values::new();
        v.insert(format!("{FILE_PREFIX}w.yaml"), "b: true\na: x\n".into());
        let e = render(text, &v).unwrap_err();
        assert_eq!(
            e[0].message,
            "file \"kprov:l.yaml\" was not read for this template"
        );
        v.insert(
            format!("{FILE_PREFIX}kprov:l.yaml"),
            "fields: [{name: a, type: string}, {name: b, type: bool}]\n".into(),
        );
        let json = render("{{ file \"w.yaml\" | goJson \"kprov:l.yaml\" }}", &v).unwrap();
        assert_eq!(json, r#"{"a":"x","b":true}"#);
        assert!(check_file_filters(text, &v).is_empty());
        v.insert(format!("{FILE_PREFIX}w.yaml"), "a: x\nb: maybe\n".into());
        let e = check_file_filters(text, &v);
        assert_eq!((e[0].line, e[0].column), (1, 4));
        assert_eq!(
            e[0].message,
            "goJson: w.yaml:2:4: b: expected true or false, found the string \"maybe\""
        );
    }

    #[test]
    fn filter_arguments_are_checked_when_parsed() {
        let e = names("{{ namespace | goJson }}").unwrap_err();
        assert_eq!(
            e.message,
            "filter `goJson` takes a layout file: `goJson \"…\"`"
        );
        let e = names("{{ namespace | sha256 \"x\" }}").unwrap_err();
        assert_eq!(e.message, "filter `sha256` takes no argument (found \"x\")");
        let e = names("{{ namespace | uuid5 \"nope\" }}").unwrap_err();
        assert!(
            e.message
                .starts_with("filter `uuid5`: \"nope\" is no namespace UUID"),
            "{}",
            e.message
        );
        let e = names("{{ namespace | uuid5 \"dns\" x }}").unwrap_err();
        assert_eq!(
            e.message,
            "unexpected `x }` after filter `uuid5`".replace(" }", "")
        );
    }
}
