//! Manifest templates: `{{ name }}` placeholders replaced from a flat set of values.
//! Unknown names are errors (with the line), never silently left in place.

use std::collections::BTreeMap;

/// Values a template may use: `namespace`, `service`, `cluster`, `image.<key>`,
/// `ports.<name>` (the NodePort), `hostPorts.<name>`, `values.<key>`.
pub type Values = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The names a template refers to, with their positions.
pub fn names(text: &str) -> Result<Vec<(String, usize, usize)>, TemplateError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open..].find("}}") else {
                return Err(TemplateError {
                    line: i + 1,
                    column: offset + open + 1,
                    message: "unclosed `{{`".into(),
                });
            };
            let name = rest[open + 2..open + close].trim();
            out.push((name.to_string(), i + 1, offset + open + 1));
            offset += open + close + 2;
            rest = &rest[open + close + 2..];
        }
    }
    Ok(out)
}

/// Replace every placeholder; every unknown name is reported.
pub fn render(text: &str, values: &Values) -> Result<String, Vec<TemplateError>> {
    let used = names(text).map_err(|e| vec![e])?;
    let unknown: Vec<TemplateError> = used
        .iter()
        .filter(|(n, ..)| !values.contains_key(n))
        .map(|(n, line, column)| TemplateError {
            line: *line,
            column: *column,
            message: unknown_message(n, values),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let close = open + rest[open..].find("}}").expect("checked by names()");
        out.push_str(&rest[..open]);
        out.push_str(&values[rest[open + 2..close].trim()]);
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn unknown_message(name: &str, values: &Values) -> String {
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
}
