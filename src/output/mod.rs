//! Reporters of engine events: the console (live on a terminal, one plain line per event
//! otherwise or under CI) and JSON lines; plus logging set-up.

mod console;
mod jsonl;

use std::{collections::HashMap, io::IsTerminal, sync::Arc};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::Event;
use crate::plan::Phase;

pub use console::Console;
pub use jsonl::event_json;

/// Logs go to stderr; `-v` raises the level, RUST_LOG overrides it.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "kprov=info",
        _ => "kprov=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .try_init();
}

/// Colour only on a terminal, and never when NO_COLOR is set.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live progress view (a terminal, not CI).
    Live,
    /// One line per event (not a terminal, or CI set).
    Plain,
    /// JSON lines on stdout.
    Json,
}

impl Mode {
    pub fn detect(json: bool) -> Mode {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        if json {
            Mode::Json
        } else if ci || !std::io::stderr().is_terminal() {
            Mode::Plain
        } else {
            Mode::Live
        }
    }
}

/// What the reporters know of the tasks: their phases, for per-phase counts.
#[derive(Debug, Clone, Default)]
pub struct TaskInfo {
    pub phases: HashMap<Arc<str>, Phase>,
}

/// Drain `events` to the chosen reporter until the sender is dropped.
pub async fn report(
    mut events: UnboundedReceiver<Event>,
    mode: Mode,
    info: TaskInfo,
    verbose: bool,
) {
    match mode {
        Mode::Json => {
            use std::io::Write;
            while let Some(e) = events.recv().await {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", event_json(&e));
            }
        }
        Mode::Plain | Mode::Live => {
            let mut console = Console::new(
                mode == Mode::Live,
                info,
                verbose,
                Box::new(std::io::stderr()),
            );
            while let Some(e) = events.recv().await {
                console.event(&e);
            }
            console.finish();
        }
    }
}
