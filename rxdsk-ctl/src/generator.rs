//! rxdsk-generator: the systemd generator (systemd.generator(7)) that turns the configuration
//! into units at boot, as zram-generator does for zram. It is rxdskctl itself, called by that
//! name through a symlink.
//!
//! For each configured device it pulls in an instance of the static `rxdsk-setup@.service`
//! (which runs `rxdskctl apply rxdN`) and writes a swap unit or a mount unit that requires it
//! and is ordered after it. A backed device's instance gets a drop-in that waits for the
//! backing device; the template itself flushes a backed device when stopped, after its swap
//! or mount unit has stopped. A device the configuration exports over NVMe-oF gets an
//! instance of the static `rxdsk-export@.service` (ordered after its setup service, so that
//! it unexports before the flush at shutdown), wanted by multi-user.target, with a drop-in
//! that waits for the network for NVMe/TCP.
//!
//! Generators run early and must be fast: this reads the configuration, /proc/cmdline (for
//! `rxdsk.generator=0`), /etc/fstab (whose units it leaves alone) and, for a backing device,
//! where its name leads in /dev and a dm device's name in /sys; it writes files into the
//! directory systemd gives, nothing else (no module, no device access).

use crate::config::{Concerns, Config, DeviceConfig, Usage};
use crate::device::{device_name, device_path};
use std::collections::BTreeSet;
use std::path::Path;

/// The static template, shipped in [`UNIT_DIR`].
pub const SETUP_TEMPLATE: &str = include_str!("../dist/rxdsk-setup@.service");
pub const SETUP_TEMPLATE_NAME: &str = "rxdsk-setup@.service";
/// The static template of the exports, shipped in [`UNIT_DIR`] too.
pub const EXPORT_TEMPLATE: &str = include_str!("../dist/rxdsk-export@.service");
pub const EXPORT_TEMPLATE_NAME: &str = "rxdsk-export@.service";
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// The name systemd runs this generator by.
pub const GENERATOR_NAME: &str = "rxdsk-generator";
pub const RXDSKCTL: &str = "/usr/sbin/rxdskctl";
/// The environment variable that makes the generator read another root than / (tests).
pub const ROOT_VARIABLE: &str = "RXDSK_GENERATOR_ROOT";

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

/// The export service instance of device `id`.
pub fn export_unit(id: u32) -> String {
    format!("rxdsk-export@{}.service", device_name(id))
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

/// The swap or mount unit of a device, if it has one.
pub fn own_unit(dev: &DeviceConfig) -> Option<String> {
    match &dev.usage {
        Usage::Swap { .. } => Some(format!("{}.swap", escape_path(&device_path(dev.id)))),
        Usage::Filesystem {
            mount_point: Some(m),
            ..
        } => Some(format!("{}.mount", escape_path(m))),
        _ => None,
    }
}

/// The files for `config`, by path relative to the output directory; `root` is where the
/// system's /dev and /sys are looked at ("/" normally). The devices `left_out` get no swap
/// or mount unit (fstab has one of that name): their setup service is pulled in as that of
/// a device without one.
pub fn units(config: &Config, root: &Path, left_out: &BTreeSet<u32>) -> Vec<(String, Entry)> {
    let mut files = Vec::new();
    for dev in config.devices.values() {
        let setup = setup_unit(dev.id);
        let path = device_path(dev.id);
        let own = own_unit(dev).filter(|_| !left_out.contains(&dev.id));
        let wanted_by = match (&dev.usage, own) {
            (Usage::Swap { priority, options }, Some(unit)) => {
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
            (
                Usage::Filesystem {
                    fs_type,
                    mount_point: Some(mount_point),
                    options,
                },
                Some(unit),
            ) => {
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
            // A consumer of a dm device: stopped (flushed) before its storage service stops.
            if let Some(node) = dm_node(backing, root) {
                drop_in += &format!("After=blockdev@{}.target\n", escape_path(&node));
            }
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
        if let Some(e) = &dev.export {
            let unit = export_unit(dev.id);
            files.push((
                format!("multi-user.target.wants/{unit}"),
                Entry::Link(format!("{UNIT_DIR}/{EXPORT_TEMPLATE_NAME}")),
            ));
            let mut text = format!(
                "# Written by {GENERATOR_NAME} from {}\n[Unit]\n{}",
                dev.section,
                source_path(dev)
            );
            // The address must be there to listen on.
            if e.transport == crate::export::Transport::Tcp {
                text += "Wants=network-online.target\nAfter=network-online.target\n";
            }
            files.push((
                format!("{unit}.d/50-{GENERATOR_NAME}.conf"),
                Entry::File(text),
            ));
        }
    }
    files
}

/// Directories of /dev that udev and the kernel fill, never an LVM volume group's.
const NOT_VOLUME_GROUPS: [&str; 14] = [
    "disk", "mapper", "block", "char", "bus", "md", "input", "snd", "net", "dri", "serial", "cpu",
    "zvol", "vfio",
];

/// The /dev/mapper/NAME node of a backing device on device-mapper, the name its
/// `blockdev@.target` instance is made of (systemd.special(7): a storage service such as
/// systemd-cryptsetup@.service orders itself before `blockdev@dev-mapper-NAME.target`).
/// From the name given (/dev/mapper/NAME, /dev/disk/by-id/dm-name-NAME, LVM's /dev/VG/LV),
/// else from what the name leads to now (/dev/dm-N and its name in sysfs, under `root`).
/// A name that matches none of these: `None` (an After= on a target no storage service
/// pulls in would be harmless, but says nothing).
pub fn dm_node(backing: &str, root: &Path) -> Option<String> {
    let rest = backing.strip_prefix("/dev/")?;
    if let Some(name) = rest
        .strip_prefix("mapper/")
        .or_else(|| rest.strip_prefix("disk/by-id/dm-name-"))
    {
        return Some(format!("/dev/mapper/{name}"));
    }
    if let Some((vg, lv)) = rest.split_once('/') {
        if !NOT_VOLUME_GROUPS.contains(&vg) && !lv.contains('/') {
            return Some(format!(
                "/dev/mapper/{}-{}",
                vg.replace('-', "--"),
                lv.replace('-', "--")
            ));
        }
    }
    let resolved = std::fs::canonicalize(root.join(&backing[1..])).ok()?;
    let node = resolved.strip_prefix(root.join("dev")).ok()?.to_str()?;
    if !node.starts_with("dm-") || node.contains('/') {
        return None;
    }
    let name = std::fs::read_to_string(root.join(format!("sys/block/{node}/dm/name"))).ok()?;
    Some(format!("/dev/mapper/{}", name.trim()))
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

/// The kernel command line's switch: `rxdsk.generator=0` (or no, false, off) turns the
/// generator off, as `systemd.zram=0` does zram-generator; the last one given counts.
pub const CMDLINE_SWITCH: &str = "rxdsk.generator";

/// `Some("rxdsk.generator=0")` (as given) if `<root>/proc/cmdline` turns the generator off.
fn disabled_on_the_command_line(root: &Path, log: &mut Log) -> Option<String> {
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    let mut off = None;
    for word in cmdline.split_whitespace() {
        let value = match word.split_once('=') {
            Some((key, value)) if key == CMDLINE_SWITCH => value.trim_matches('"'),
            None if word == CMDLINE_SWITCH => "1",
            _ => continue,
        };
        match value {
            "1" | "yes" | "y" | "true" | "t" | "on" => off = None,
            "0" | "no" | "n" | "false" | "f" | "off" => off = Some(word.to_string()),
            _ => log.warning(&format!(
                "ignoring {word} on the kernel command line (expected 0 or 1)"
            )),
        }
    }
    off
}

/// The devices whose swap or mount unit /etc/fstab has too (systemd-fstab-generator would
/// write a unit of the same name), each logged with the line.
fn left_to_fstab(config: &Config, root: &Path, log: &mut Log) -> BTreeSet<u32> {
    let fstab = root.join("etc/fstab");
    let text = std::fs::read_to_string(&fstab).unwrap_or_default();
    let claimed: Vec<(String, usize)> = crate::mtab::entries(&text)
        .into_iter()
        .filter_map(|e| {
            let unit = match e.fs_type.as_str() {
                // Named after the device (UUID= and LABEL= become /dev/disk/by-* names, never
                // an rxdsk device's).
                "swap" if e.spec.starts_with('/') => format!("{}.swap", escape_path(&e.spec)),
                "swap" => return None,
                _ => format!("{}.mount", escape_path(&e.file)),
            };
            Some((unit, e.line))
        })
        .collect();
    let mut left_out = BTreeSet::new();
    for dev in config.devices.values() {
        let Some(unit) = own_unit(dev) else { continue };
        let Some((_, line)) = claimed.iter().find(|(u, _)| *u == unit) else {
            continue;
        };
        let (name, what) = (
            device_name(dev.id),
            if unit.ends_with(".swap") {
                "swap device"
            } else {
                "mount point"
            },
        );
        log.warning(&format!(
            "{name}: {unit} not written: {}:{line} has the same {what} (systemd-fstab-generator \
             writes that unit); {name} is set up, its activation is left to that line (give it \
             x-systemd.requires={})",
            fstab.display(),
            setup_unit(dev.id)
        ));
        left_out.insert(dev.id);
    }
    left_out
}

/// Where the generator's messages go: the kernel log (/dev/kmsg), as systemd.generator(7)
/// asks of generators (their stderr goes nowhere at boot), each line with its syslog priority
/// and `rxdsk-generator[PID]:` (the journal's identifier); or plain lines on stderr (tests,
/// or where /dev/kmsg cannot be opened).
pub struct Log<'a> {
    out: &'a mut dyn std::io::Write,
    kmsg: bool,
}

impl<'a> Log<'a> {
    /// `kmsg`: `out` is /dev/kmsg.
    pub fn new(out: &'a mut dyn std::io::Write, kmsg: bool) -> Self {
        Self { out, kmsg }
    }

    fn line(&mut self, priority: u8, message: &str) {
        let text = if self.kmsg {
            format!(
                "<{priority}>{GENERATOR_NAME}[{}]: {message}\n",
                std::process::id()
            )
        } else {
            format!("{GENERATOR_NAME}: {message}\n")
        };
        // One write: /dev/kmsg makes a record of each. Nothing sensible is left to do if
        // the log cannot be written.
        let _ = self.out.write_all(text.as_bytes());
    }

    pub fn error(&mut self, message: &str) {
        self.line(3, message);
    }

    pub fn warning(&mut self, message: &str) {
        self.line(4, message);
    }

    pub fn notice(&mut self, message: &str) {
        self.line(5, message);
    }
}

/// The generator: `rxdsk-generator NORMAL-DIR [EARLY-DIR LATE-DIR]`; the configuration is
/// read under `root`. A device whose configuration has errors is skipped, the others get
/// their units (as systemd-fstab-generator does with a bad fstab line); the errors and the
/// skipped devices are logged, and the status is then 1. A file that cannot be read might
/// configure any device: then nothing is written.
pub fn main(args: &[std::ffi::OsString], root: &Path, log: &mut Log) -> u8 {
    let Some(dir) = args.first().filter(|_| args.len() == 1 || args.len() == 3) else {
        log.error(&format!(
            "expected 1 or 3 directories (systemd.generator(7)), got {}",
            args.len()
        ));
        return 1;
    };
    if let Some(off) = disabled_on_the_command_line(root, log) {
        log.notice(&format!("disabled by {off} on the kernel command line"));
        return 0;
    }
    let machine = crate::config::Machine::read(root);
    let (config, errors) =
        crate::config::load_lenient(&crate::config::config_files(root), &machine);
    for e in &errors {
        log.error(&e.to_string());
    }
    for w in &config.warnings {
        log.warning(&w.to_string());
    }
    if errors.iter().any(|e| e.concerns == Concerns::Everything) {
        log.error("no device is set up: a file that cannot be read may configure any of them");
        return 1;
    }
    let skipped: BTreeSet<u32> = errors
        .iter()
        .flat_map(|e| match &e.concerns {
            Concerns::Devices(ids) => ids.clone(),
            _ => Vec::new(),
        })
        .collect();
    for id in skipped {
        log.warning(&format!(
            "{}: skipped (its configuration has errors)",
            device_name(id)
        ));
    }
    let left_out = left_to_fstab(&config, root, log);
    if let Err(m) = write(Path::new(dir), &units(&config, root, &left_out)) {
        log.error(&m);
        return 1;
    }
    u8::from(!errors.is_empty())
}

#[cfg(test)]
mod tests;
