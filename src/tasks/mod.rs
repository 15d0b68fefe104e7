//! tasks
pub mod apply;
pub mod build;
pub mod cluster;
pub mod context;
pub mod coverage;
pub mod diagnostics;
pub mod load;
pub mod status;
pub mod tls;
pub mod wait;
