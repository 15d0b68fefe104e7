//! The work of each task kind, composed from the adapters: build and load (or push) images,
//! the local registry, create or reuse the cluster, apply, generate TLS, wait, collect diagnostics; plus the coverage patch
//! and the `status`/`coverage` commands' reading of a running environment.

pub mod apply;
pub mod binary;
pub mod build;
pub mod cluster;
pub mod context;
pub mod coverage;
pub mod diagnostics;
pub mod dockerfile;
pub mod image_cache;
pub mod load;
pub mod pull;
pub mod pull_secrets;
pub mod registry;
pub mod remote;
pub mod status;
pub mod tls;
pub mod wait;
