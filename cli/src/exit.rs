//! Exit codes and the errors that choose them (the table is in the crate doc of `main.rs`).

use std::process::ExitCode;

pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_DENIED: u8 = 4;

/// A bad argument value found after clap's own parsing: exit 2 like clap's errors.
#[derive(Debug)]
pub struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// Input refused before it reaches the node (a photo file too large): exit 3.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

pub fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    Usage(e.to_string()).into()
}

/// The exit code of a command that failed with `e`.
pub fn of_error(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<Usage>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else if e.downcast_ref::<Refused>().is_some() {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::FAILURE
    }
}
