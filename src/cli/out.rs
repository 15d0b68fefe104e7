//! Writing to stdout and stderr without panicking when the reader has gone.
//!
//! `println!` panics (exit 101) when stdout is a pipe whose reader has exited, as in
//! `kprov plan --service demo | head -1`: Rust ignores SIGPIPE, so the write fails with EPIPE.
//! kprov follows ripgrep's convention instead: a closed pipe means the reader has seen enough,
//! so output stops quietly and the command ends with the status it has already established
//! (0 for a report, 2 for `validate` of an invalid profile). SIGPIPE is not restored to its
//! default (which would end kprov with status 141): it would also kill `kprov up` halfway on a
//! closed socket or child pipe, leaving a cluster behind.

use std::io::{self, Write};

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The reader has closed the pipe: write nothing more.
    Closed,
}

fn write_to(mut w: impl Write, text: &str) -> io::Result<Written> {
    match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        Ok(()) => Ok(Written::Done),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Written::Closed),
        Err(e) => Err(e),
    }
}

/// Write `text` to stdout. Any error other than a closed pipe (a full disk, say) is reported
/// on stderr and returned as exit code 1.
pub fn stdout(text: &str) -> Result<Written, i32> {
    write_to(io::stdout().lock(), text).map_err(|e| {
        stderr(&format!("error: failed to write the output: {e}\n"));
        super::exit::FAILURE
    })
}

/// Write `text` to stderr, best effort: there is nowhere left to report a failure to.
pub fn stderr(text: &str) -> Written {
    write_to(io::stderr().lock(), text).unwrap_or(Written::Closed)
}

/// `eprintln!` that never panics.
macro_rules! say {
    ($($arg:tt)*) => {
        {
            let _ = $crate::cli::out::stderr(&format!("{}\n", format_args!($($arg)*)));
        }
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        assert_eq!(write_to(Closed, "x").unwrap(), Written::Closed);
        assert_eq!(write_to(Vec::new(), "x").unwrap(), Written::Done);
    }
}
