//! One file per external system, each the only importer of its crate, in kprov's vocabulary:
//! the container engine (bollard), the Kubernetes API (kube-rs), the kind CLI (argv), and
//! host-side HTTP (reqwest), and host processes (argv, process groups). Adapters know nothing
//! of scheduling.

pub mod docker;
pub mod helm;
pub mod http;
pub mod kind;
pub mod kube;
pub mod kubectl;
pub mod oci;
pub mod process;
