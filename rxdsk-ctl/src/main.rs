//! rxdskctl: the command-line front end of the rxdsk kernel module.

mod backend;
mod control;
mod device;
mod list;
mod size;

use backend::Backend;
use clap::{Parser, Subcommand};
use control::{action, Control, ControlError};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rxdskctl",
    version,
    about = "Set up and control rxdsk RAM block devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the versions of rxdskctl and of the loaded rxdsk module.
    Version {
        /// Use JSON output format.
        #[arg(short = 'J', long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version { json } => cmd_version(json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rxdskctl: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_version(json: bool) -> Result<(), String> {
    let cli_version = env!("CARGO_PKG_VERSION");
    let abi = format!(
        "{}.{}",
        rxdsk_ioctl::RXDSK_ABI_MAJOR,
        rxdsk_ioctl::RXDSK_ABI_MINOR
    );
    if !json {
        println!("rxdskctl {cli_version} (ABI {abi})");
    }
    let control = Control::open().map_err(|e| e.to_string())?;
    let subject = control.control_path();
    let v = control
        .version()
        .map_err(|e| ControlError::new(&subject, action::VERSION, e).to_string())?;
    let features = control
        .features()
        .map_err(|e| ControlError::new(&subject, action::FEATURES, e).to_string())?;
    let module_version = control::fixed_str_to_string(&v.module_version);
    if json {
        let out = serde_json::json!({
            "rxdskctl": { "version": cli_version, "abi_major": rxdsk_ioctl::RXDSK_ABI_MAJOR,
                          "abi_minor": rxdsk_ioctl::RXDSK_ABI_MINOR },
            "module": { "version": module_version, "abi_major": v.abi_major,
                        "abi_minor": v.abi_minor, "features": features },
        });
        println!("{out:#}");
    } else {
        println!(
            "rxdsk module {module_version} (ABI {}.{}, features {features:#x})",
            v.abi_major, v.abi_minor
        );
    }
    if v.abi_major != rxdsk_ioctl::RXDSK_ABI_MAJOR {
        return Err(format!(
            "{}: incompatible module ABI {}.{} (rxdskctl speaks {abi})",
            Control::path().display(),
            v.abi_major,
            v.abi_minor
        ));
    }
    Ok(())
}
