//! adapters
pub mod docker;
pub mod kube;
pub mod http;
pub mod kind;
