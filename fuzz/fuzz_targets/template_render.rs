//! A manifest template rendered with a set of values: the input is `name=value` lines, a NUL
//! byte, then the template (no NUL: the template alone, with the values a profile gives every
//! manifest). Unknown names and unclosed `{{` are errors; a panic, a hang or a blow-up is a bug.
#![no_main]

use kprov::profile::template::{self, Values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let mut values = Values::new();
    for (k, v) in [
        ("namespace", "kprov"),
        ("service", "demo"),
        ("cluster", "kprov-demo"),
        ("image.api", "localhost/kprov/api:kprov-0123"),
        ("ports.api", "30080"),
        ("values.replicas", "1"),
    ] {
        values.insert(k.into(), v.into());
    }
    let text = match input.split_once('\0') {
        Some((given, text)) => {
            for line in given.lines() {
                let (k, v) = line.split_once('=').unwrap_or((line, ""));
                values.insert(k.trim().into(), v.into());
            }
            text
        }
        None => &input,
    };
    let _ = template::names(text);
    let _ = template::render(text, &values);
});
