//! rxdskctl: the command-line front end of the rxdsk kernel module.

use clap::Parser;
use rxdsk_ctl::cli::{self, Cli};
use rxdsk_ctl::commands;
use rxdsk_ctl::control::Control;
use rxdsk_ctl::generator;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Installed as a systemd generator through a symlink of that name.
    let args: Vec<String> = std::env::args().collect();
    let called = args.first().map(|a| std::path::Path::new(a).file_name());
    if called == Some(Some(std::ffi::OsStr::new(generator::GENERATOR_NAME))) {
        return ExitCode::from(generator::main(
            &args[1..],
            std::path::Path::new("/"),
            &mut generator::Log::stderr(&mut std::io::stderr().lock()),
        ));
    }
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
