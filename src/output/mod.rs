//! Reporters of engine events: the console (live on a terminal, plain lines otherwise) and
//! JSON lines; plus logging set-up.

/// Logs go to stderr; `-v` raises the level, RUST_LOG overrides it.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "kprov=info",
        _ => "kprov=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .try_init();
}
