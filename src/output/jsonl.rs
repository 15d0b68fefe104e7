//! `--json`: one JSON object per event, for machines.

use serde_json::{Value, json};

use crate::engine::{Event, EventKind};

pub fn event_json(e: &Event) -> Value {
    let at_ms = e.at.as_millis() as u64;
    match &e.kind {
        EventKind::RunStarted { tasks } => {
            json!({"event": "run_started", "at_ms": at_ms, "tasks": tasks})
        }
        EventKind::TaskReady { id } => json!({"event": "task_ready", "at_ms": at_ms, "id": &**id}),
        EventKind::TaskStarted { id, attempt } => {
            json!({"event": "task_started", "at_ms": at_ms, "id": &**id, "attempt": attempt})
        }
        EventKind::TaskProgress { id, message } => {
            json!({"event": "task_progress", "at_ms": at_ms, "id": &**id, "message": message})
        }
        EventKind::TaskRetrying {
            id,
            attempt,
            error,
            delay,
        } => {
            json!({"event": "task_retrying", "at_ms": at_ms, "id": &**id, "attempt": attempt, "error": error, "delay_ms": delay.as_millis() as u64})
        }
        EventKind::TaskFinished {
            id,
            outcome,
            attempts,
            error,
        } => {
            json!({"event": "task_finished", "at_ms": at_ms, "id": &**id, "outcome": outcome, "attempts": attempts, "error": error})
        }
        EventKind::TaskSkipped { id, reason } => {
            json!({"event": "task_skipped", "at_ms": at_ms, "id": &**id, "reason": reason.to_string()})
        }
        EventKind::RunFinished { cancelled } => {
            json!({"event": "run_finished", "at_ms": at_ms, "cancelled": cancelled.map(|c| c.to_string())})
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::TaskOutcome;

    #[test]
    fn a_finished_task_is_one_flat_object() {
        let e = Event {
            at: Duration::from_millis(1500),
            kind: EventKind::TaskFinished {
                id: "build:api".into(),
                outcome: TaskOutcome::Cached,
                attempts: 1,
                error: None,
            },
        };
        assert_eq!(
            event_json(&e).to_string(),
            r#"{"at_ms":1500,"attempts":1,"error":null,"event":"task_finished","id":"build:api","outcome":"cached"}"#
        );
    }
}
