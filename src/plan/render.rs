//! `kprov plan` output: text, JSON, Graphviz dot and Mermaid.

use std::fmt::Write;

use super::{Phase, Plan};
use crate::report::fmt::duration as human;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    Dot,
    Mermaid,
}

pub fn render(plan: &Plan, format: PlanFormat, others: &[(&str, u64)]) -> String {
    match format {
        PlanFormat::Text => text(plan, others),
        PlanFormat::Json => json(plan),
        PlanFormat::Dot => dot(plan),
        PlanFormat::Mermaid => mermaid(plan),
    }
}

fn text(plan: &Plan, others: &[(&str, u64)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for {} (strategy {}, {} tasks)",
        plan.service,
        plan.strategy,
        plan.tasks.len()
    );
    let width = plan.tasks.iter().map(|t| t.id.len()).max().unwrap_or(0);
    for phase in Phase::ALL {
        let tasks: Vec<usize> = (0..plan.tasks.len())
            .filter(|&i| plan.tasks[i].phase == phase)
            .collect();
        if tasks.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{phase}");
        for i in tasks {
            let t = &plan.tasks[i];
            let mark = if plan.critical_path.contains(&t.id) {
                '*'
            } else {
                ' '
            };
            let deps = if plan.deps[i].is_empty() {
                "-".to_string()
            } else {
                plan.deps[i].join(", ")
            };
            let _ = writeln!(
                s,
                " {mark} {:<width$}  ~{:>6}  after {deps}",
                t.id,
                human(plan.estimates_ms[i])
            );
        }
    }
    let _ = writeln!(
        s,
        "\ncritical path (*): {}",
        plan.critical_path.join(" -> ")
    );
    let _ = write!(
        s,
        "estimated makespan: {}",
        human(plan.estimated_makespan_ms)
    );
    if !others.is_empty() {
        let o: Vec<String> = others
            .iter()
            .map(|(n, ms)| format!("{n} {}", human(*ms)))
            .collect();
        let _ = write!(s, " (other strategies: {})", o.join(", "));
    }
    s.push('\n');
    ports_text(&mut s, &plan.ports);
    for note in &plan.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

/// `ports (NodePort -> host port)`, one line per named port, after the estimate.
fn ports_text(s: &mut String, ports: &[super::PlannedPort]) {
    if ports.is_empty() {
        return;
    }
    let width = ports.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let _ = writeln!(s, "\nports (NodePort -> host port)");
    for p in ports {
        let host = match p.host_port {
            Some(h) => format!("{h:<5}  from the {}", p.from),
            None => "free   (chosen when the cluster is created)".into(),
        };
        let _ = writeln!(s, "   {:<width$}  {} -> {host}", p.name, p.node_port);
    }
}

fn json(plan: &Plan) -> String {
    let tasks: Vec<serde_json::Value> = plan
        .tasks
        .iter()
        .zip(&plan.estimates_ms)
        .zip(&plan.deps)
        .map(|((t, e), d)| serde_json::json!({"id": t.id, "kind": t.kind, "phase": t.phase, "deps": d, "estimate_ms": e}))
        .collect();
    let mut v = serde_json::json!({
        "service": plan.service,
        "strategy": plan.strategy,
        "jobs": plan.limits.jobs,
        "tasks": tasks,
        "critical_path": plan.critical_path,
        "estimated_makespan_ms": plan.estimated_makespan_ms,
    });
    if !plan.notes.is_empty() {
        v["notes"] = serde_json::json!(plan.notes);
    }
    if !plan.ports.is_empty() {
        let ports: serde_json::Map<String, serde_json::Value> = plan
            .ports
            .iter()
            .map(|p| (p.name.clone(), serde_json::json!(p)))
            .collect();
        v["ports"] = serde_json::Value::Object(ports);
    }
    let mut out = serde_json::to_string_pretty(&v).expect("plain JSON");
    out.push('\n');
    out
}

fn phase_colour(p: Phase) -> &'static str {
    match p {
        Phase::Build => "#4e79a7",
        Phase::Cluster => "#f28e2b",
        Phase::Load => "#59a14f",
        Phase::Deploy => "#b07aa1",
    }
}

fn dot(plan: &Plan) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontcolor=white];\n",
        plan.service
    );
    for (t, e) in plan.tasks.iter().zip(&plan.estimates_ms) {
        let pen = if plan.critical_path.contains(&t.id) {
            ", penwidth=3, color=black"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  \"{}\" [label=\"{}\\n~{}\", fillcolor=\"{}\"{pen}];",
            t.id,
            t.id,
            human(*e),
            phase_colour(t.phase)
        );
    }
    for (t, deps) in plan.tasks.iter().zip(&plan.deps) {
        for d in deps {
            let _ = writeln!(s, "  \"{d}\" -> \"{}\";", t.id);
        }
    }
    s.push_str("}\n");
    s
}

fn mermaid(plan: &Plan) -> String {
    let node = |id: &str| id.replace([':', '-', '.'], "_");
    let mut s = String::from("flowchart LR\n");
    for t in &plan.tasks {
        let _ = writeln!(s, "  {}[\"{}\"]:::{}", node(&t.id), t.id, t.phase);
    }
    for (t, deps) in plan.tasks.iter().zip(&plan.deps) {
        for d in deps {
            let _ = writeln!(s, "  {} --> {}", node(d), node(&t.id));
        }
    }
    for p in Phase::ALL {
        let _ = writeln!(s, "  classDef {p} fill:{},color:#fff", phase_colour(p));
    }
    if !plan.critical_path.is_empty() {
        let ids: Vec<String> = plan.critical_path.iter().map(|i| node(i)).collect();
        let _ = writeln!(
            s,
            "  classDef critical stroke:#000,stroke-width:3px\n  class {} critical",
            ids.join(",")
        );
    }
    s
}
