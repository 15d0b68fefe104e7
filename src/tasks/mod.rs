//! tasks
pub mod build;
pub mod context;
pub mod load;
pub mod apply;
pub mod diagnostics;
pub mod wait;
pub mod coverage;
pub mod tls;
pub mod cluster;
pub mod status;
