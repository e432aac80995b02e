//! What the CLI writes to stdout and stderr. A reader that goes away early (`dormant show -D IMG --json |
//! head -1`) is a normal end of a command's output, not a failure: it had all it wanted. Rust ignores
//! SIGPIPE, so such a write fails with EPIPE, and `println!` would panic on it; every line the CLI prints
//! goes through here instead. SIGPIPE itself stays ignored: dormant also writes to pipes and sockets
//! (swrk's socket, the parasite's pipes) where a peer that died must be an error to handle, never death.

use std::fmt::Arguments;
use std::io::{self, Write};

use crate::error::CliError;

/// Writes to stdout; EPIPE ends the output quietly (`Ok`), any other failure is an error.
pub fn stdout(args: Arguments<'_>) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Stdout(e)),
        _ => Ok(()),
    }
}

/// Writes to stderr; a stderr that cannot be written to has no one to tell.
pub fn stderr(args: Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `println!` to stdout through [`stdout`]: evaluates to `Result<(), CliError>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` through [`stderr`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, outln};
