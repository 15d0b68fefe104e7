//! Checks of `runtime:` values and `steps:`: each names one source or one action, what it
//! follows exists, its files exist and its patterns and timeouts parse.

use std::collections::BTreeMap;

use super::Validator;
use crate::profile::{HttpResponseSpec, HttpStepSpec, StepSpec, template};

impl Validator<'_> {
    /// Names are unique across components, hooks and steps: `after:` lists mix them.
    fn unit_exists(&self, name: &str) -> bool {
        let s = &self.profile.spec;
        s.components.contains_key(name) || s.hooks.contains_key(name) || s.steps.contains_key(name)
    }

    fn timeout(&mut self, section: &str, name: &str, t: Option<&String>) {
        if let Some(t) = t
            && let Err(e) = humantime::parse_duration(t)
        {
            self.err(
                section,
                Some(name),
                &[section, name, "timeout"],
                format!("timeout {t:?}: {e}"),
            );
        }
    }

    /// `after:` may name `name`: a component, hook or step, or an entry left out for a schema
    /// error of its own (naming a broken entry is no error).
    pub(super) fn names_unit(&self, name: &str) -> bool {
        let broken = format!(".{name}");
        self.unit_exists(name) || self.profile.broken.iter().any(|b| b.ends_with(&broken))
    }

    fn after(&mut self, section: &str, name: &str, after: &[String]) {
        for a in after {
            if !self.names_unit(a) {
                self.err(
                    section,
                    Some(name),
                    &[section, name, "after"],
                    format!("{a:?} is no component, hook or step"),
                );
            }
        }
    }

    pub(super) fn runtime(&mut self) {
        let spec = &self.profile.spec;
        for (name, v) in &spec.runtime {
            let at = ["runtime", name.as_str()];
            let sources = [
                v.service_account_token.is_some(),
                v.field.is_some(),
                v.key.is_some(),
                v.job_output.is_some(),
                v.http_response.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                self.err(
                    "runtime",
                    Some(name),
                    &at,
                    "a run-time value needs exactly one of serviceAccountToken, field, key, jobOutput, httpResponse".into(),
                );
            }
            if let Some(h) = &v.http_response {
                self.http_response(name, h);
            }
            if let Some(j) = &v.job_output {
                let jat = ["runtime", name.as_str(), "jobOutput"];
                if !spec.hooks.contains_key(&j.hook) {
                    self.err(
                        "runtime",
                        Some(name),
                        &jat,
                        format!("{:?} is no hook", j.hook),
                    );
                }
                match (&j.config_map, &j.key, &j.log_pattern) {
                    (Some(_), Some(_), None) => {}
                    (None, None, Some(p)) => {
                        if let Err(e) = regex::Regex::new(p) {
                            self.err("runtime", Some(name), &jat, format!("logPattern: {e}"));
                        }
                    }
                    _ => self.err(
                        "runtime",
                        Some(name),
                        &jat,
                        "jobOutput needs configMap and key, or logPattern".into(),
                    ),
                }
            }
            self.after("runtime", name, &v.after);
            self.timeout("runtime", name, v.timeout.as_ref());
        }
    }

    pub(super) fn steps(&mut self) {
        let spec = &self.profile.spec;
        for (name, st) in &spec.steps {
            let at = ["steps", name.as_str()];
            if spec.components.contains_key(name) || spec.hooks.contains_key(name) {
                self.err(
                    "steps",
                    Some(name),
                    &at,
                    format!(
                        "{name:?} is also a component or hook: `after:` could not tell them apart"
                    ),
                );
            }
            let actions = [
                !st.apply.is_empty(),
                !st.patch_status.is_empty(),
                st.http.is_some(),
                !st.rollout_restart.is_empty(),
                !st.command.is_empty(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                self.err(
                    "steps",
                    Some(name),
                    &at,
                    "a step needs exactly one of apply, patchStatus, http, rolloutRestart, command"
                        .into(),
                );
            }
            for i in &st.images {
                if !spec.images.contains_key(i)
                    && !self.profile.broken.contains(&format!("images.{i}"))
                {
                    let known: Vec<&str> = spec.images.keys().map(String::as_str).collect();
                    self.err(
                        "steps",
                        Some(name),
                        &["steps", name, "images"],
                        format!("unknown image {i:?} (images: {})", known.join(", ")),
                    );
                }
            }
            for m in st.apply.iter().filter_map(|m| m.path()) {
                if self.file("steps", Some(name), &["steps", name, "apply"], m) {
                    self.template(m, &st.values);
                }
            }
            if let Some(h) = &st.http {
                self.http_step(name, h, &st.values);
            }
            self.status_patches(name, st);
            self.after("steps", name, &st.after);
            self.timeout("steps", name, st.timeout.as_ref());
        }
    }

    /// The placeholders of each status to patch (what they name, the files they read, what
    /// their filters make of those files), at the step's `patchStatus`.
    fn status_patches(&mut self, name: &str, st: &StepSpec) {
        for (i, p) in st.patch_status.iter().enumerate() {
            for text in template::json_strings(&p.status) {
                for e in self.template_problems(text, &st.values) {
                    let what = format!("patchStatus[{i}] ({} {})", p.object.kind, p.object.name);
                    self.err(
                        "steps",
                        Some(name),
                        &["steps", name, "patchStatus"],
                        format!("{what}: {}", e.message),
                    );
                }
            }
        }
    }

    /// An `httpResponse` value reads an `http` step's answer at a path.
    fn http_response(&mut self, name: &str, h: &HttpResponseSpec) {
        let at = ["runtime", name, "httpResponse", "step"];
        match self.profile.spec.steps.get(&h.step) {
            None if self.profile.broken.contains(&format!("steps.{}", h.step)) => {}
            None => self.err(
                "runtime",
                Some(name),
                &at,
                format!("{:?} is no step", h.step),
            ),
            Some(st) if st.http.is_none() => self.err(
                "runtime",
                Some(name),
                &at,
                format!(
                    "step {:?} makes no HTTP request: httpResponse reads the answer of an `http` step",
                    h.step
                ),
            ),
            Some(_) => {}
        }
        if !h.path.starts_with('.') || h.path.len() < 2 {
            self.err(
                "runtime",
                Some(name),
                &["runtime", name, "httpResponse", "path"],
                format!(
                    "path {:?}: a dotted path into the answer's JSON, such as .id or .items[0].id",
                    h.path
                ),
            );
        }
    }

    /// An `http` step: its method, its body (`body` or `bodyFile`, not both; the file exists)
    /// and the placeholders of its URL, headers and body.
    fn http_step(&mut self, name: &str, h: &HttpStepSpec, values: &BTreeMap<String, String>) {
        let at = ("steps", name);
        if let Some(m) = &h.method
            && !matches!(
                m.as_str(),
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
            )
        {
            self.err(
                "steps",
                Some(name),
                &["steps", name, "http", "method"],
                format!("method {m:?}: one of GET, POST, PUT, PATCH, DELETE, HEAD"),
            );
        }
        for (field, text) in h.templated() {
            let mut path = vec!["steps", name, "http"];
            path.extend(field);
            self.template_string(at, &path, text, values);
        }
        if let Some(f) = &h.body_file {
            let path = ["steps", name, "http", "bodyFile"];
            if h.body.is_some() {
                self.err(
                    "steps",
                    Some(name),
                    &path,
                    "body and bodyFile exclude each other: the request has one body".into(),
                );
            }
            if self.file("steps", Some(name), &path, f) {
                self.template(f, values);
            }
        }
    }
}
