//! cli

/// Parse arguments, run the command, return the exit code.
pub fn main() -> i32 {
    0
}
