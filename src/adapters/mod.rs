//! adapters
pub mod docker;
pub mod http;
pub mod kind;
pub mod kube;
