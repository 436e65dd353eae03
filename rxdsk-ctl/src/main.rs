//! rxdskctl: the command-line front end of the rxdsk kernel module.

use clap::Parser;
use rxdsk_ctl::cli::{self, Cli};
use rxdsk_ctl::commands;
use rxdsk_ctl::control::Control;
use rxdsk_ctl::generator;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// rxdskctl as rxdsk-generator: its log is the kernel's (systemd.generator(7)), except in
/// test mode.
fn run_generator(args: &[OsString]) -> u8 {
    // For tests, as zram-generator's ZRAM_GENERATOR_ROOT: where etc/, proc/, dev/ and sys/
    // are read, and the log goes to stderr (systemd runs generators in a clean environment).
    let test_root = std::env::var_os(generator::ROOT_VARIABLE);
    let kmsg = match test_root {
        Some(_) => None,
        None => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok(),
    };
    let root = test_root.map_or("/".into(), PathBuf::from);
    match kmsg {
        Some(mut kmsg) => generator::main(args, &root, &mut generator::Log::new(&mut kmsg, true)),
        None => {
            let mut stderr = std::io::stderr().lock();
            generator::main(args, &root, &mut generator::Log::new(&mut stderr, false))
        }
    }
}

fn main() -> ExitCode {
    // As the OS gives them: an argument need not be UTF-8 (clap says so if it must be).
    let args: Vec<OsString> = std::env::args_os().collect();
    // Installed as a systemd generator through a symlink of that name.
    let called = args.first().and_then(|a| Path::new(a).file_name());
    if called == Some(generator::GENERATOR_NAME.as_ref()) {
        return ExitCode::from(run_generator(&args[1..]));
    }
    let cli = match Cli::try_parse_from(&args) {
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
        &commands::Kernel::from_env(),
        &mut std::io::stdout().lock(),
        // Not locked for the whole command: a progress bar's thread writes there too.
        &mut std::io::stderr(),
    );
    ExitCode::from(status)
}
