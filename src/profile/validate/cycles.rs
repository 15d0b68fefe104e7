//! Dependency cycles among components, hooks, steps, run-time values and late Secrets: what
//! each follows (`dependsOn`, `after`, a value's hook or step, the late Secret a `key:` value
//! reads) and the values its templates use.

use std::collections::{BTreeMap, BTreeSet};

use super::Validator;

/// One node of the graph: where it is written, and what it follows.
struct Node<'a> {
    section: &'static str,
    /// Its name in that section.
    name: &'a str,
    /// The key its cycle is reported at (none: the entry's own line).
    key: Option<&'static str>,
    deps: Vec<String>,
}

/// The cycles of a dependency graph, each as its members from the smallest id on;
/// self-dependencies are left out (reported where they are written).
fn find_cycles(graph: &BTreeMap<String, Node<'_>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = graph.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        if mark[start.as_str()] != Mark::New {
            continue;
        }
        // Depth first, with an explicit stack: (node, index of its next dependency).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Open);
        while let Some((node, next)) = stack.last().copied() {
            let Some(dep) = graph[node].deps.get(next) else {
                mark.insert(node, Mark::Done);
                stack.pop();
                continue;
            };
            stack.last_mut().expect("non-empty").1 += 1;
            let Some((dep, _)) = graph.get_key_value(dep.as_str()) else {
                continue;
            };
            match mark[dep.as_str()] {
                Mark::New => {
                    mark.insert(dep, Mark::Open);
                    stack.push((dep, 0));
                }
                Mark::Open if dep != node => {
                    let pos = stack.iter().position(|(n, _)| n == dep).expect("open");
                    let mut cycle: Vec<String> =
                        stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                    let min = (0..cycle.len())
                        .min_by_key(|&i| cycle[i].clone())
                        .expect("non-empty");
                    cycle.rotate_left(min);
                    cycles.push(cycle);
                }
                _ => {}
            }
        }
    }
    cycles
}

/// The graph's id of run-time value `name` (its names are apart from the units').
fn value_id(name: &str) -> String {
    format!("{}{name}", crate::plan::uses::PREFIX)
}

impl Validator<'_> {
    /// Every component, hook, step, run-time value and late Secret, keyed by name
    /// (`runtime.<name>` for a value, `secret:<namespace>/<name>` for a Secret), with what it
    /// follows and the values it uses.
    fn graph<'s>(&'s self) -> BTreeMap<String, Node<'s>> {
        use crate::plan;
        let spec = &self.profile.spec;
        let uses = crate::plan::uses::runtime_uses_read(self.profile, self.source, &self.texts);
        let unit = |section, name: &'s str, key, after: &[String]| -> Node<'s> {
            let id = crate::plan::unit_id(self.profile, name);
            let used = uses.get(&id).into_iter().flatten().map(|v| value_id(v));
            let deps = after.iter().cloned().chain(used).collect();
            Node {
                section,
                name,
                key: (!after.is_empty()).then_some(key),
                deps,
            }
        };
        let mut graph: BTreeMap<String, Node<'s>> = BTreeMap::new();
        for (n, c) in &spec.components {
            graph.insert(n.clone(), unit("components", n, "dependsOn", &c.depends_on));
        }
        for (n, h) in &spec.hooks {
            graph.insert(n.clone(), unit("hooks", n, "after", &h.after));
        }
        for (n, st) in &spec.steps {
            graph.insert(n.clone(), unit("steps", n, "after", &st.after));
        }
        for (n, v) in &spec.runtime {
            let mut deps = v.after.clone();
            deps.extend(v.job_output.iter().map(|j| j.hook.clone()));
            deps.extend(v.http_response.iter().map(|h| h.step.clone()));
            let read = v
                .key
                .as_ref()
                .and_then(|k| plan::late_secret_read(self.profile, k));
            deps.extend(read.map(|s| plan::secret_id(self.profile, s)));
            let key = match (&v.http_response, &v.job_output) {
                _ if !v.after.is_empty() => Some("after"),
                (Some(_), _) => Some("httpResponse"),
                (_, Some(_)) => Some("jobOutput"),
                _ => None,
            };
            let node = Node {
                section: "runtime",
                name: n,
                key,
                deps,
            };
            graph.insert(value_id(n), node);
        }
        // Only a `key:` value leads to a late Secret, so a cycle through one holds a value,
        // whose id (`runtime.…`) sorts first: the cycle is reported there, never here.
        for sec in spec.config.secrets.iter().filter(|s| s.is_late()) {
            let node = Node {
                section: "config.secrets",
                name: &sec.name,
                key: Some("after"),
                deps: sec.after.clone(),
            };
            graph.insert(plan::secret_id(self.profile, sec), node);
        }
        graph
    }

    /// Each dependency cycle, once, at the `dependsOn` (or `after`) of its first member.
    pub(super) fn cycles(&mut self) {
        let graph = self.graph();
        let mut reported: BTreeSet<String> = BTreeSet::new();
        let mut errors = Vec::new();
        for cycle in find_cycles(&graph) {
            if cycle.iter().all(|m| reported.contains(m)) {
                continue;
            }
            reported.extend(cycle.iter().cloned());
            let first = &graph[&cycle[0]];
            let mut chain = cycle.clone();
            chain.push(cycle[0].clone());
            let message = format!("dependency cycle: {}", chain.join(" -> "));
            errors.push((first.section, first.name.to_string(), first.key, message));
        }
        for (section, name, key, message) in errors {
            let mut path = vec![section, name.as_str()];
            path.extend(key);
            self.err(section, Some(&name), &path, message);
        }
    }
}
