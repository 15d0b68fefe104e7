//! Manifest templates: `{{ name }}` placeholders replaced from a flat set of values.
//! Unknown names are errors (with the line), never silently left in place.
//!
//! A placeholder may read a file instead of a value, `{{ file "PATH" }}` (its content as it is;
//! the caller reads it, see [`files`] and [`FILE_PREFIX`]), and may pass what it reads through
//! filters: `{{ runtime.token | json }}`, `{{ file "a.yaml" | json }}` (`json`: as one JSON
//! string, quoted and escaped, so a file's text fits inside a JSON document).

use std::collections::BTreeMap;

/// Values a template may use: `namespace`, `service`, `cluster`, `image.<key>`,
/// `ports.<name>` (the NodePort), `hostPorts.<name>`, `values.<key>`, and `file:<path>` for
/// each file its placeholders read.
pub type Values = BTreeMap<String, String>;

/// The key under which a file's content is looked up: `{{ file "a/b.yaml" }}` reads the value
/// `file:a/b.yaml`.
pub const FILE_PREFIX: &str = "file:";

/// The filters a placeholder may apply, in order, after `|`.
pub const FILTERS: [&str; 1] = ["json"];

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
    filters: Vec<String>,
    line: usize,
    column: usize,
    /// Byte offsets of `{{` and just past `}}` in the whole text.
    start: usize,
    end: usize,
}

/// What is inside `{{ … }}`: `NAME` or `file "PATH"`, then `| FILTER`s.
fn parse_inner(inner: &str) -> Result<(String, Vec<String>), String> {
    let inner = inner.trim();
    let (key, rest) = match inner.strip_prefix("file") {
        Some(after) if after.starts_with(char::is_whitespace) => {
            let after = after.trim_start();
            let Some(quoted) = after.strip_prefix('"') else {
                return Err(format!(
                    "`file` takes a quoted path: {{{{ file \"PATH\" }}}} (found `{inner}`)"
                ));
            };
            let Some(close) = quoted.find('"') else {
                return Err(format!("unclosed `\"` in `{inner}`"));
            };
            let path = &quoted[..close];
            if path.is_empty() {
                return Err("`file` needs a path".into());
            }
            (format!("{FILE_PREFIX}{path}"), &quoted[close + 1..])
        }
        _ => {
            let end = inner.find('|').unwrap_or(inner.len());
            (inner[..end].trim().to_string(), &inner[end..])
        }
    };
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('|') {
        return Err(format!(
            "unexpected `{rest}` after `{key}` (filters follow `|`)"
        ));
    }
    let mut filters = Vec::new();
    for f in rest.split('|').skip(1).map(str::trim) {
        if !FILTERS.contains(&f) {
            return Err(format!(
                "unknown filter `{f}` (filters: {})",
                FILTERS.join(", ")
            ));
        }
        filters.push(f.to_string());
    }
    Ok((key, filters))
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

/// The files a template reads (`{{ file "PATH" }}`), with their positions, in order.
pub fn files(text: &str) -> Result<Vec<(String, usize, usize)>, TemplateError> {
    Ok(names(text)?
        .into_iter()
        .filter_map(|(k, l, c)| k.strip_prefix(FILE_PREFIX).map(|p| (p.to_string(), l, c)))
        .collect())
}

fn apply_filter(filter: &str, value: &str) -> String {
    match filter {
        "json" => serde_json::Value::String(value.to_string()).to_string(),
        other => unreachable!("filter {other} is checked when parsed"),
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
    let mut copied = 0;
    for p in &used {
        out.push_str(&text[copied..p.start]);
        let mut v = values[&p.key].clone();
        for f in &p.filters {
            v = apply_filter(f, &v);
        }
        out.push_str(&v);
        copied = p.end;
    }
    out.push_str(&text[copied..]);
    Ok(out)
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
        assert_eq!(e.message, "unknown filter `yaml` (filters: json)");
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
}
