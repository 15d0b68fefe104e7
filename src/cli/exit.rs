//! Exit codes, in one place. Documented in README.md ("Exit codes").

/// Everything succeeded.
pub const SUCCESS: i32 = 0;
/// A task failed, or kprov could not do what was asked at run time.
pub const FAILURE: i32 = 1;
/// Bad arguments or an invalid profile: nothing was started.
pub const USAGE: i32 = 2;
/// Interrupted (Ctrl-C / SIGTERM): 128 + SIGINT.
pub const INTERRUPTED: i32 = 130;
