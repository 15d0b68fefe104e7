//! The command line: arguments parsed once, resolved, then handed to the library.

mod args;
mod cache;
mod commands;
pub mod exit;
mod out;
mod render;
mod up;

use clap::Parser;

pub use args::Cli;

/// Parse arguments, run the command, return the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
        }
    };
    crate::output::init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            out::say!("error: failed to start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    // Do not wait for stray blocking work (a stuck stdin reader, say) after the command ends.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
