//! Service profiles: the YAML model, loading with includes, and validation.

pub mod model;
