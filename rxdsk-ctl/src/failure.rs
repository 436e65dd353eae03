//! Why a subcommand failed, as `commands::run` reports it: messages on stderr and an exit
//! status.

use crate::control::ControlError;
use std::io;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Lines for stderr, each printed after `rxdskctl: `.
    Messages(Vec<String>),
    /// Writing the output failed.
    Output(io::Error),
    /// Lines for stderr, and an exit status other than 1.
    Status(u8, Vec<String>),
}

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        Failure::Messages(vec![e.to_string()])
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Messages(vec![message])
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}
