//! rxdsk-generator: the systemd generator (systemd.generator(7)) that turns the configuration
//! into units at boot, as zram-generator does for zram. It is rxdskctl itself, called by that
//! name through a symlink.
//!
//! For each configured device it pulls in an instance of the static `rxdsk-setup@.service`
//! (which runs `rxdskctl apply rxdN`) and writes a swap unit or a mount unit that requires it
//! and is ordered after it. A backed device's instance gets a drop-in that waits for the
//! backing device; the template itself flushes a backed device when stopped, after its swap
//! or mount unit has stopped.
//!
//! Generators run early and must be fast: this reads the configuration and writes files into
//! the directory systemd gives, nothing else (no module, no device access).

use crate::config::{Config, DeviceConfig, Usage};
use crate::device::{device_name, device_path};
use std::path::Path;

/// The static template, shipped in [`UNIT_DIR`].
pub const SETUP_TEMPLATE: &str = include_str!("../dist/rxdsk-setup@.service");
pub const SETUP_TEMPLATE_NAME: &str = "rxdsk-setup@.service";
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// The name systemd runs this generator by.
pub const GENERATOR_NAME: &str = "rxdsk-generator";
pub const RXDSKCTL: &str = "/usr/sbin/rxdskctl";

/// A file the generator writes, relative to its output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(String),
    /// A symlink to this target.
    Link(String),
}

/// `systemd-escape --path`: the unit name of a path (without the suffix).
pub fn escape_path(path: &str) -> String {
    let trimmed: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if trimmed.is_empty() {
        return "-".into();
    }
    let joined = trimmed.join("/");
    let mut out = String::new();
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The setup service instance of device `id`.
pub fn setup_unit(id: u32) -> String {
    format!("rxdsk-setup@{}.service", device_name(id))
}

/// Where a device's unit came from, for `systemctl status` and people reading it.
fn source_path(dev: &DeviceConfig) -> String {
    format!("SourcePath={}\n", dev.section.file)
}

fn header(dev: &DeviceConfig, description: &str) -> String {
    format!(
        "# Written by {GENERATOR_NAME} from {}\n[Unit]\nDescription={description}\n\
         Documentation=man:rxdsk.conf(5)\n{}Requires={setup}\nAfter={setup}\n",
        dev.section,
        source_path(dev),
        setup = setup_unit(dev.id)
    )
}

/// The files for `config`, by path relative to the output directory.
pub fn units(config: &Config) -> Vec<(String, Entry)> {
    let mut files = Vec::new();
    for dev in config.devices.values() {
        let setup = setup_unit(dev.id);
        let path = device_path(dev.id);
        let wanted_by = match &dev.usage {
            Usage::Swap { priority, options } => {
                let unit = format!("{}.swap", escape_path(&path));
                let mut text = header(dev, &format!("rxdsk swap on {path}"));
                text += &format!("\n[Swap]\nWhat={path}\n");
                if let Some(p) = priority {
                    text += &format!("Priority={p}\n");
                }
                if let Some(o) = options {
                    text += &format!("Options={o}\n");
                }
                files.push((
                    format!("swap.target.wants/{unit}"),
                    Entry::Link(format!("../{unit}")),
                ));
                files.push((unit, Entry::File(text)));
                None
            }
            Usage::Filesystem {
                fs_type,
                mount_point: Some(mount_point),
                options,
            } => {
                let unit = format!("{}.mount", escape_path(mount_point));
                let mut text = header(dev, &format!("rxdsk filesystem {path} on {mount_point}"));
                text += &format!("\n[Mount]\nWhat={path}\nWhere={mount_point}\nType={fs_type}\n");
                if let Some(o) = options {
                    text += &format!("Options={o}\n");
                }
                files.push((
                    format!("local-fs.target.wants/{unit}"),
                    Entry::Link(format!("../{unit}")),
                ));
                files.push((unit, Entry::File(text)));
                None
            }
            // A device with no unit of its own is set up before local filesystems too.
            _ => Some("local-fs.target"),
        };
        let mut drop_in = String::new();
        if let Some(target) = wanted_by {
            files.push((
                format!("{target}.wants/{setup}"),
                Entry::Link(format!("{UNIT_DIR}/{SETUP_TEMPLATE_NAME}")),
            ));
            drop_in += &format!("Before={target}\n");
        }
        if let Some(backing) = &dev.backing {
            let device_unit = format!("{}.device", escape_path(backing));
            drop_in += &format!("Requires={device_unit}\nAfter={device_unit}\n");
        }
        let mut text = String::new();
        if !drop_in.is_empty() {
            text += &format!("[Unit]\n{}{drop_in}", source_path(dev));
        }
        if !text.is_empty() {
            files.push((
                format!("{setup}.d/50-{GENERATOR_NAME}.conf"),
                Entry::File(format!(
                    "# Written by {GENERATOR_NAME} from {}\n{text}",
                    dev.section
                )),
            ));
        }
    }
    files
}

/// Writes `entries` under `dir`.
pub fn write(dir: &Path, entries: &[(String, Entry)]) -> Result<(), String> {
    for (rel, entry) in entries {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("{}: cannot create: {e}", parent.display()))?;
        }
        let result = match entry {
            Entry::File(text) => std::fs::write(&path, text),
            Entry::Link(target) => std::os::unix::fs::symlink(target, &path),
        };
        result.map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}

/// The generator: `rxdsk-generator NORMAL-DIR [EARLY-DIR LATE-DIR]`; the configuration is
/// read under `root`. Returns the exit status; on any error nothing is written.
pub fn main(args: &[String], root: &Path, err: &mut dyn std::io::Write) -> u8 {
    let Some(dir) = args.first().filter(|_| args.len() == 1 || args.len() == 3) else {
        let _ = writeln!(
            err,
            "{GENERATOR_NAME}: expected 1 or 3 directories (systemd.generator(7)), got {}",
            args.len()
        );
        return 1;
    };
    let config = match crate::config::load(&crate::config::config_files(root)) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                let _ = writeln!(err, "{GENERATOR_NAME}: {e}");
            }
            return 1;
        }
    };
    match write(Path::new(dir), &units(&config)) {
        Ok(()) => 0,
        Err(m) => {
            let _ = writeln!(err, "{GENERATOR_NAME}: {m}");
            1
        }
    }
}

#[cfg(test)]
mod tests;
