//! rxdskctl: the command-line front end of the rxdsk kernel module.

use clap::Parser;
use rxdsk_ctl::cli::{self, Cli};
use rxdsk_ctl::commands;
use rxdsk_ctl::control::Control;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout, errors to stderr.
            let _ = e.print();
            return ExitCode::from(cli::usage_exit_status(e.kind()));
        }
    };
    let status = commands::run(
        cli.into_command(),
        Control::open,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(status)
}
