//! kprov: provision end-to-end test environments on Kind, and profile every phase.
//!
//! - [`profile`]: service profiles (YAML) and their validation.
//! - [`plan`]: profile → task DAG under a strategy; estimates and the critical path.
//! - [`engine`]: runs a DAG under concurrency limits; knows nothing of Docker or Kubernetes.
//! - [`adapters`]: one file per external system (Docker, Kubernetes, kind, HTTP).
//! - [`tasks`]: the work of each task kind, composed from adapters.
//! - [`provision`]: `kprov up` as a library call: the plan's tasks given their work and run.
//! - [`record`] and [`report`]: run records, and reports as pure functions of them.
//! - [`output`]: reporters of engine events (console, JSON lines).
//! - [`cli`]: argument parsing and commands.

pub mod adapters;
pub mod cli;
pub mod engine;
pub mod output;
pub mod plan;
pub mod profile;
pub mod provision;
pub mod record;
pub mod report;
pub mod tasks;
