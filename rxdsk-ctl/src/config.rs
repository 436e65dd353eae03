//! The declarative configuration read by `rxdskctl apply` and the systemd generator:
//! `rxdsk.conf` plus `rxdsk.conf.d/*.conf` drop-ins, INI-style, one `[rxdN]` section per
//! device (see rxdsk.conf(5)).
//!
//! Every line of every file is checked before anything is used, so that a bad line changes
//! nothing; errors name `FILE:LINE` and the devices they concern, so that the generator can
//! leave out only those ([`parse_lenient`]).

use crate::cli::{Compression, Mode};
use crate::device::{device_name, parse_device};
use crate::dhchap::{DhGroup, Hash};
use crate::export::Transport;
use crate::size::parse_size;
use rxdsk_ioctl::{RXDSK_IMAGE_META_SIZE, RXDSK_MAX_DEVICES, RXDSK_PAGE_SIZE};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Directories searched for `rxdsk.conf` and `rxdsk.conf.d/`, highest precedence first (the
/// systemd order: the administrator's /etc over runtime /run over the vendor's /usr).
pub const CONFIG_DIRS: [&str; 4] = ["etc", "run", "usr/local/lib", "usr/lib"];
pub const MAIN_FILE: &str = "rxdsk.conf";
pub const DROP_IN_DIR: &str = "rxdsk.conf.d";

/// Where a setting was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A configuration error: `FILE:LINE: message`, or `FILE: message` for a whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub at: Option<Location>,
    pub file: String,
    pub message: String,
    /// The devices whose configuration it makes unusable.
    pub concerns: Concerns,
}

/// Which devices an error leaves without a usable configuration: the generator skips those
/// and sets up the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Concerns {
    /// None: the line belongs to no device (a section that names none, a key before any
    /// section).
    Nothing,
    /// These devices (the section the line is in, or the devices in conflict).
    Devices(Vec<u32>),
    /// Any device: a file that cannot be read might configure any of them.
    Everything,
}

impl ConfigError {
    fn at(at: &Location, concerns: Option<u32>, message: impl Into<String>) -> Self {
        Self {
            at: Some(at.clone()),
            file: at.file.clone(),
            message: message.into(),
            concerns: concerns.map_or(Concerns::Nothing, |id| Concerns::Devices(vec![id])),
        }
    }

    /// Whether the error concerns device `id`.
    pub fn concerns(&self, id: u32) -> bool {
        match &self.concerns {
            Concerns::Nothing => false,
            Concerns::Devices(ids) => ids.contains(&id),
            Concerns::Everything => true,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What the device is for once it exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A block device and nothing more.
    Raw,
    /// Swap space (mkswap; swapon with the priority).
    Swap {
        priority: Option<i32>,
        options: Option<String>,
    },
    /// A filesystem (mkfs.TYPE), mounted at `mount_point` if there is one.
    Filesystem {
        fs_type: String,
        mount_point: Option<String>,
        options: Option<String>,
    },
}

/// An NVMe-oF export of a device (`export` and the `export-*` keys), as `rxdskctl export`'s
/// options say it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportConfig {
    pub transport: Transport,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub nqn: Option<String>,
    pub allow_hosts: Vec<String>,
    pub allow_any_host: bool,
    /// Files with the hosts' secrets, one per host in the same order (or none).
    pub secrets: Vec<String>,
    /// Files with the controller's secrets, likewise.
    pub ctrl_secrets: Vec<String>,
    pub hash: Option<Hash>,
    pub dhgroup: Option<DhGroup>,
}

impl ExportConfig {
    /// The subsystem NQN of device `id`'s export.
    pub fn nqn(&self, id: u32) -> String {
        self.nqn
            .clone()
            .unwrap_or_else(|| crate::export::default_nqn(id))
    }
}

/// One `[rxdN]` section after all files are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    pub id: u32,
    /// The first `[rxdN]` line of the device.
    pub section: Location,
    pub size: Option<u64>,
    pub block_size: Option<u32>,
    pub mem_limit: Option<u64>,
    pub compress: Option<Compression>,
    pub compress_level: Option<i32>,
    pub backing: Option<String>,
    pub mode: Option<Mode>,
    pub journal: Option<u64>,
    pub flush_interval: Option<u32>,
    pub preload: bool,
    pub usage: Usage,
    pub export: Option<ExportConfig>,
    /// Where each key in effect was set.
    pub origins: BTreeMap<&'static str, Location>,
}

impl DeviceConfig {
    fn new(id: u32, section: Location) -> Self {
        Self {
            id,
            section,
            size: None,
            block_size: None,
            mem_limit: None,
            compress: None,
            compress_level: None,
            backing: None,
            mode: None,
            journal: None,
            flush_interval: None,
            preload: false,
            usage: Usage::Raw,
            export: None,
            origins: BTreeMap::new(),
        }
    }

    /// Where `key` was set, else the device's section line: what an error about it names.
    pub fn location(&self, key: &str) -> &Location {
        self.origins.get(key).unwrap_or(&self.section)
    }

    /// An error about `key` of this device.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::at(self.location(key), Some(self.id), message.to_string())
    }

    /// `[rxdN]`, as errors name the section.
    pub fn section_name(&self) -> String {
        format!("[{}]", device_name(self.id))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub devices: BTreeMap<u32, DeviceConfig>,
    /// The files read, in order.
    pub files: Vec<String>,
    /// Values that are valid but probably not what was meant (a tiny size in bytes).
    pub warnings: Vec<ConfigError>,
}

/// What a configuration's values may depend on besides its files: the machine's memory,
/// for sizes given as a share of it (`size = 50%`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// MemTotal in bytes, if known.
    pub mem_total: Option<u64>,
    /// Where it was read, for messages.
    pub meminfo: String,
}

impl Default for Machine {
    /// Nothing known.
    fn default() -> Self {
        Self {
            mem_total: None,
            meminfo: "/proc/meminfo".into(),
        }
    }
}

impl Machine {
    /// MemTotal from `<root>/proc/meminfo` if that exists (tests, another root), else from the
    /// running system's /proc/meminfo.
    pub fn read(root: &Path) -> Self {
        let under_root = root.join("proc/meminfo");
        let path = if under_root.exists() {
            under_root
        } else {
            PathBuf::from("/proc/meminfo")
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mem_total = text.lines().find_map(|l| {
            let mut fields = l.split_whitespace();
            if fields.next() != Some("MemTotal:") {
                return None;
            }
            let kib: u64 = fields.next()?.parse().ok()?;
            (fields.next() == Some("kB")).then(|| kib.checked_mul(1024))?
        });
        Self {
            mem_total,
            meminfo: path.display().to_string(),
        }
    }
}

/// Every key a section may hold, named as the rxdskctl options they stand for.
pub const KEYS: [&str; 24] = [
    "size",
    "block-size",
    "mem-limit",
    "compress",
    "compress-level",
    "backing",
    "mode",
    "journal",
    "flush-interval",
    "preload",
    "swap-priority",
    "fs-type",
    "mount-point",
    "options",
    "export",
    "export-address",
    "export-port",
    "export-nqn",
    "export-allow-hosts",
    "export-allow-any-host",
    "export-dhchap-secret",
    "export-dhchap-ctrl-secret",
    "export-dhchap-hash",
    "export-dhchap-dhgroup",
];

/// The key values before they are combined: what `set_key` stores.
#[derive(Default)]
struct Values {
    swap_priority: Option<i32>,
    fs_type: Option<String>,
    mount_point: Option<String>,
    options: Option<String>,
    export: ExportConfig,
}

/// The configuration files under `root` ("/" normally), in the order they are read: the main
/// file (the first of `CONFIG_DIRS` that has one), then the drop-ins sorted by file name,
/// each from the highest-precedence directory that has a file of that name.
pub fn config_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(main) = CONFIG_DIRS
        .iter()
        .map(|d| root.join(d).join(MAIN_FILE))
        .find(|p| p.exists())
    {
        files.push(main);
    }
    let mut drop_ins: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Lowest precedence first, so that a higher directory's file replaces the entry.
    for dir in CONFIG_DIRS.iter().rev() {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(DROP_IN_DIR)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !name.starts_with('.') {
                drop_ins.insert(name, e.path());
            }
        }
    }
    files.extend(drop_ins.into_values());
    files
}

/// Reads and parses `files` (a file masked by a symlink to /dev/null reads as empty) for
/// `machine`.
pub fn load(files: &[PathBuf], machine: &Machine) -> Result<Config, Vec<ConfigError>> {
    let texts = read_files(files)?;
    parse(&texts, machine)
}

/// Like [`load`], but a device whose configuration has errors is left out and the others
/// kept; the errors are returned beside them (a file that cannot be read keeps nothing).
pub fn load_lenient(files: &[PathBuf], machine: &Machine) -> (Config, Vec<ConfigError>) {
    match read_files(files) {
        Ok(texts) => parse_lenient(&texts, machine),
        Err(errors) => (Config::default(), errors),
    }
}

/// The text of each file, or why some cannot be read.
fn read_files(files: &[PathBuf]) -> Result<Vec<(String, String)>, Vec<ConfigError>> {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => texts.push((name, text)),
                Err(_) => errors.push(ConfigError {
                    at: None,
                    file: name,
                    message: "not UTF-8 text".into(),
                    concerns: Concerns::Everything,
                }),
            },
            Err(e) => errors.push(ConfigError {
                at: None,
                file: name,
                message: format!("cannot read: {e}"),
                concerns: Concerns::Everything,
            }),
        }
    }
    if errors.is_empty() {
        Ok(texts)
    } else {
        Err(errors)
    }
}

/// One `key = value` line.
struct Assignment {
    id: u32,
    key: &'static str,
    value: String,
    at: Location,
}

/// Parses `(file name, text)` pairs, later files overriding earlier ones key by key; an
/// empty value resets a key. All errors are returned, not just the first.
pub fn parse(texts: &[(String, String)], machine: &Machine) -> Result<Config, Vec<ConfigError>> {
    let (config, errors) = parse_all(texts, machine, true);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Like [`parse`], but a device whose configuration has errors is left out and the others
/// are kept (the generator's way: one bad section does not take every device away).
pub fn parse_lenient(texts: &[(String, String)], machine: &Machine) -> (Config, Vec<ConfigError>) {
    parse_all(texts, machine, false)
}

/// The configuration of the devices without errors, and the errors. `strict`: once a line
/// is bad, only the line errors are reported (the checks across keys wait until every line
/// reads well).
fn parse_all(
    texts: &[(String, String)],
    machine: &Machine,
    strict: bool,
) -> (Config, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut assignments: Vec<Assignment> = Vec::new();
    let mut sections: BTreeMap<u32, Location> = BTreeMap::new();
    for (file, text) in texts {
        parse_file(file, text, &mut sections, &mut assignments, &mut errors);
    }
    // Values are checked line by line, overridden ones too: any bad line is an error.
    for a in &assignments {
        let mut scratch = DeviceConfig::new(a.id, a.at.clone());
        if let Err(m) = set_key(
            &mut scratch,
            &mut Values::default(),
            machine,
            a.key,
            &a.value,
        ) {
            errors.push(ConfigError::at(&a.at, Some(a.id), m));
        }
    }
    let mut config = Config {
        files: texts.iter().map(|(f, _)| f.clone()).collect(),
        ..Default::default()
    };
    if strict && !errors.is_empty() {
        return (config, errors);
    }
    // The devices a line error leaves without a usable configuration are not built.
    sections.retain(|&id, _| !errors.iter().any(|e| e.concerns(id)));
    // The last assignment of each key wins.
    let mut effective: BTreeMap<(u32, &'static str), &Assignment> = BTreeMap::new();
    for a in &assignments {
        effective.insert((a.id, a.key), a);
    }
    for (&id, at) in &sections {
        let mut dev = DeviceConfig::new(id, at.clone());
        let mut values = Values::default();
        for a in effective
            .range((id, "")..)
            .take_while(|((i, _), _)| *i == id)
        {
            let a = a.1;
            if a.value.is_empty() {
                continue;
            }
            dev.origins.insert(a.key, a.at.clone());
            if let Err(m) = set_key(&mut dev, &mut values, machine, a.key, &a.value) {
                errors.push(ConfigError::at(&a.at, Some(id), m));
            }
            if let Some(w) = implausible(a) {
                config.warnings.push(w);
            }
        }
        match finish_device(dev, values) {
            Ok(dev) => {
                config.devices.insert(id, dev);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    check_shared(&config, &mut errors);
    config
        .devices
        .retain(|&id, _| !errors.iter().any(|e| e.concerns(id)));
    let kept = &config.devices;
    config
        .warnings
        .retain(|w| kept.keys().any(|&id| w.concerns(id)));
    (config, errors)
}

/// Less than this, in bytes written as a bare number, is probably a size meant in MiB (what
/// zram-generator's bare numbers are).
const PLAUSIBLE_BYTES: u64 = 1 << 20;

/// A warning for a size written as a bare number of bytes that is below 1 MiB: probably
/// meant as MiB.
fn implausible(a: &Assignment) -> Option<ConfigError> {
    if !matches!(a.key, "size" | "mem-limit") || !a.value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes: u64 = a.value.parse().ok()?;
    // 0 is no size (an error) or no memory limit.
    if bytes == 0 || bytes >= PLAUSIBLE_BYTES {
        return None;
    }
    let message = format!(
        "{} = {} in [{}] is {bytes} bytes ({}): a number without a unit is bytes ({}M for MiB)",
        a.key,
        a.value,
        device_name(a.id),
        crate::size::format_size(bytes),
        a.value
    );
    Some(ConfigError::at(&a.at, Some(a.id), message))
}

/// A device size: a size (bytes, or with a K/M/G/T/P unit), or a whole percentage of the
/// machine's memory rounded down to 4 KiB (so that either block size divides it).
fn parse_device_size(value: &str, machine: &Machine) -> Result<u64, String> {
    let Some(percent) = value.strip_suffix('%') else {
        return parse_size(value);
    };
    if percent.starts_with('-') {
        return Err("negative size".into());
    }
    if percent.is_empty() || !percent.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a share of the memory is a whole number of percent (e.g. 50%)".into());
    }
    let percent: u64 = percent.parse().map_err(|_| "size too large".to_string())?;
    if percent == 0 {
        return Err("a share of the memory is 1% or more".into());
    }
    let total = machine.mem_total.ok_or_else(|| {
        format!(
            "a share of the memory, but {} has no MemTotal",
            machine.meminfo
        )
    })?;
    let bytes = u64::try_from(u128::from(total) * u128::from(percent) / 100)
        .map_err(|_| "size too large".to_string())?;
    Ok(bytes / RXDSK_PAGE_SIZE * RXDSK_PAGE_SIZE)
}

/// The section the lines of a file are in.
#[derive(Clone, Copy)]
enum Section {
    /// Before the first section header.
    None,
    Device(u32),
    /// After a bad section header: the device it seems meant for, if any.
    Bad(Option<u32>),
}

fn parse_file(
    file: &str,
    text: &str,
    sections: &mut BTreeMap<u32, Location>,
    assignments: &mut Vec<Assignment>,
    errors: &mut Vec<ConfigError>,
) {
    let mut section = Section::None;
    // Keys already set in this file, per device: a second one is a mistake, not an override.
    let mut seen: BTreeMap<(u32, &'static str), usize> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let at = Location {
            file: file.to_string(),
            line: index + 1,
        };
        let line = strip_comment(raw).trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                section = Section::Bad(meant_device(rest));
                let message = format!("unclosed section \"{line}\"");
                errors.push(ConfigError::at(&at, meant_device(rest), message));
                continue;
            };
            section = match parse_section(name.trim()) {
                Ok(id) => {
                    sections.entry(id).or_insert_with(|| at.clone());
                    Section::Device(id)
                }
                Err(m) => {
                    errors.push(ConfigError::at(&at, meant_device(name), m));
                    Section::Bad(meant_device(name))
                }
            };
            continue;
        }
        // The device an error on this line concerns.
        let concerns = match section {
            Section::None => None,
            Section::Device(id) => Some(id),
            Section::Bad(meant) => meant,
        };
        let Some((key, value)) = line.split_once('=') else {
            errors.push(ConfigError::at(
                &at,
                concerns,
                format!("expected \"[rxdN]\" or \"KEY = VALUE\", found \"{line}\""),
            ));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(known) = KEYS.iter().copied().find(|k| *k == key) else {
            let place = match section {
                Section::Device(id) => format!(" in [{}]", device_name(id)),
                _ => String::new(),
            };
            errors.push(ConfigError::at(
                &at,
                concerns,
                format!("unknown key \"{key}\"{place}{}", suggestion(key)),
            ));
            continue;
        };
        let id = match section {
            Section::Device(id) => id,
            // After a bad section header its keys are not reported once more each.
            Section::Bad(_) => continue,
            Section::None => {
                errors.push(ConfigError::at(
                    &at,
                    None,
                    format!("\"{key}\" outside a section (start one with [rxdN])"),
                ));
                continue;
            }
        };
        if let Some(first) = seen.insert((id, known), at.line) {
            errors.push(ConfigError::at(
                &at,
                Some(id),
                format!(
                    "\"{key}\" is set twice in [{}] (first on line {first})",
                    device_name(id)
                ),
            ));
            continue;
        }
        assignments.push(Assignment {
            id,
            key: known,
            value: value.to_string(),
            at,
        });
    }
}

/// The device a bad section header seems meant for (`[rxd2`, `[/dev/rxd2]`, `[rxd02]`,
/// `[2]`), so that the generator skips that device rather than set it up without the lines
/// meant for it; `None` for a name that is no device at all (`[swap]`).
fn meant_device(name: &str) -> Option<u32> {
    let name = name.trim_end_matches(']').trim();
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    let digits = name
        .strip_prefix(rxdsk_ioctl::RXDSK_DISK_PREFIX)
        .unwrap_or(name);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id < RXDSK_MAX_DEVICES)
}

/// `line` without a comment at its end: a `#` preceded by white space starts one (a `#`
/// inside a word is kept; no value rxdsk.conf accepts has white space in it).
fn strip_comment(line: &str) -> &str {
    let mut previous_blank = false;
    for (i, c) in line.char_indices() {
        if c == '#' && previous_blank {
            return &line[..i];
        }
        previous_blank = c.is_whitespace();
    }
    line
}

/// `rxdN` to N: sections are devices.
fn parse_section(name: &str) -> Result<u32, String> {
    let bad = || format!("invalid section \"[{name}]\": a section names a device, e.g. [rxd0]");
    if !name.starts_with(rxdsk_ioctl::RXDSK_DISK_PREFIX) {
        return Err(bad());
    }
    let id = parse_device(name).map_err(|_| bad())?;
    if id >= RXDSK_MAX_DEVICES {
        return Err(format!(
            "invalid section \"[{name}]\": device ids are below {RXDSK_MAX_DEVICES}"
        ));
    }
    Ok(id)
}

/// ` (did you mean "size"?)` for a key one or two edits away from a known one, and the
/// names of the `rxdskctl create` options a user may carry over.
fn suggestion(key: &str) -> String {
    let aliases = [
        ("compression", "compress"),
        ("compression-algorithm", "compress"),
        ("compression-level", "compress-level"),
        ("backing-device", "backing"),
        ("backing-mode", "mode"),
        ("priority", "swap-priority"),
        ("restore", "preload"),
    ];
    let near = aliases
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(key))
        .map(|(_, k)| *k)
        .or_else(|| {
            KEYS.iter()
                .copied()
                .map(|k| (strsim::levenshtein(&key.to_ascii_lowercase(), k), k))
                .filter(|&(d, _)| d <= 2)
                .min()
                .map(|(_, k)| k)
        });
    near.map_or(String::new(), |k| format!(" (did you mean \"{k}\"?)"))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err("expected yes or no".into()),
    }
}

fn parse_number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.parse().map_err(|_| "not a number in range".into())
}

/// An absolute path without `.`/`..` components or repeated or trailing slashes: what
/// systemd accepts as a unit's `Where=`, and unambiguous to compare.
fn check_path(value: &str) -> Result<(), String> {
    let normal = value.starts_with('/')
        && (value == "/"
            || value[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if !normal {
        return Err("an absolute path is needed (no \".\", \"..\", \"//\" or trailing /)".into());
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("white space and control characters are not supported in paths".into());
    }
    Ok(())
}

/// Parses one value into `dev` (or `values`, for the keys combined later).
fn set_key(
    dev: &mut DeviceConfig,
    values: &mut Values,
    machine: &Machine,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let invalid = |why: String| format!("invalid {key} \"{value}\" in [rxd{}]: {why}", dev.id);
    if value.is_empty() {
        return Ok(());
    }
    match key {
        "size" => dev.size = Some(parse_device_size(value, machine).map_err(invalid)?),
        "block-size" => {
            dev.block_size = Some(match parse_size(value) {
                Ok(512) => 512,
                Ok(4096) => 4096,
                _ => return Err(invalid("must be 512 or 4096".into())),
            })
        }
        "mem-limit" => {
            let limit = parse_size(value).map_err(invalid)?;
            if limit != 0 && limit < RXDSK_PAGE_SIZE {
                return Err(invalid(format!(
                    "less than one page ({RXDSK_PAGE_SIZE}); use 0 for no limit"
                )));
            }
            dev.mem_limit = Some(limit);
        }
        "compress" => {
            dev.compress = Some(
                <Compression as clap::ValueEnum>::from_str(value, false)
                    .map_err(|_| invalid("expected lzo, lzo-rle, lz4 or zstd".into()))?,
            )
        }
        "compress-level" => dev.compress_level = Some(parse_number(value).map_err(invalid)?),
        "backing" => {
            check_path(value).map_err(invalid)?;
            dev.backing = Some(value.to_string());
        }
        "mode" => {
            dev.mode = Some(
                <Mode as clap::ValueEnum>::from_str(value, false)
                    .map_err(|_| invalid(format!("expected {}", Mode::names())))?,
            )
        }
        "journal" => {
            let bytes = parse_size(value).map_err(invalid)?;
            if bytes.checked_rem(RXDSK_IMAGE_META_SIZE) != Some(0) {
                return Err(invalid("not a multiple of 4 KiB".into()));
            }
            dev.journal = Some(bytes);
        }
        "flush-interval" => dev.flush_interval = Some(parse_number(value).map_err(invalid)?),
        "preload" => dev.preload = parse_bool(value).map_err(invalid)?,
        "swap-priority" => {
            let p: i32 = parse_number(value).map_err(invalid)?;
            if !(-1..=32767).contains(&p) {
                return Err(invalid("must be -1 to 32767".into()));
            }
            values.swap_priority = Some(p);
        }
        "fs-type" => {
            let ok = value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
            if !ok {
                return Err(invalid(
                    "not a filesystem type name (e.g. swap, ext4)".into(),
                ));
            }
            values.fs_type = Some(value.to_string());
        }
        "mount-point" => {
            check_path(value).map_err(invalid)?;
            if value == "/" {
                return Err(invalid(
                    "the root filesystem cannot be set up this late in boot".into(),
                ));
            }
            values.mount_point = Some(value.to_string());
        }
        "options" => {
            if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(invalid(
                    "comma-separated options without white space are expected".into(),
                ));
            }
            values.options = Some(value.to_string());
        }
        _ if key.starts_with("export") => {
            set_export_key(&mut values.export, key, value).map_err(invalid)?
        }
        _ => return Err(format!("unknown key \"{key}\"")),
    }
    Ok(())
}

/// A comma-separated list, each item checked by `check`.
fn list(value: &str, check: impl Fn(&str) -> Result<(), String>) -> Result<Vec<String>, String> {
    let items: Vec<String> = value.split(',').map(|i| i.trim().to_string()).collect();
    for (n, i) in items.iter().enumerate() {
        check(i)?;
        if items[..n].contains(i) {
            return Err(format!("{i} is given twice"));
        }
    }
    Ok(items)
}

/// Parses one `export` key into `e`; the reason if the value is bad.
fn set_export_key(e: &mut ExportConfig, key: &str, value: &str) -> Result<(), String> {
    match key {
        "export" => {
            e.transport = <Transport as clap::ValueEnum>::from_str(value, false)
                .map_err(|_| "expected tcp or loop (the transport)".to_string())?
        }
        "export-address" => {
            crate::export::parse_address(value)?;
            e.address = Some(value.to_string());
        }
        "export-port" => {
            let port: u16 = parse_number(value)?;
            if port == 0 {
                return Err("a TCP port is 1 to 65535".into());
            }
            e.port = Some(port);
        }
        "export-nqn" => {
            crate::export::check_nqn(value)?;
            e.nqn = Some(value.to_string());
        }
        "export-allow-hosts" => e.allow_hosts = list(value, crate::export::check_nqn)?,
        "export-allow-any-host" => e.allow_any_host = parse_bool(value)?,
        "export-dhchap-secret" => e.secrets = list(value, check_path)?,
        "export-dhchap-ctrl-secret" => e.ctrl_secrets = list(value, check_path)?,
        "export-dhchap-hash" => {
            e.hash = Some(
                <Hash as clap::ValueEnum>::from_str(value, false)
                    .map_err(|_| "expected sha256, sha384 or sha512".to_string())?,
            )
        }
        "export-dhchap-dhgroup" => {
            e.dhgroup = Some(
                <DhGroup as clap::ValueEnum>::from_str(value, false).map_err(|_| {
                    "expected null, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144 or ffdhe8192"
                })?,
            )
        }
        _ => return Err(format!("unknown key \"{key}\"")),
    }
    Ok(())
}

/// The checks across the `export` keys of `dev`, whose `export` key is set.
fn finish_export(
    dev: &DeviceConfig,
    e: ExportConfig,
    errors: &mut Vec<ConfigError>,
) -> Option<ExportConfig> {
    let name = dev.section_name();
    let before = errors.len();
    let mut error = |key: &str, message: String| errors.push(dev.error(key, message));
    match (e.transport, &e.address, e.port) {
        (Transport::Tcp, None, _) => error(
            "export",
            format!("export = tcp in {name} needs export-address"),
        ),
        (Transport::Loop, Some(_), _) => error(
            "export-address",
            format!("export-address in {name} is for export = tcp, not loop"),
        ),
        (Transport::Loop, _, Some(_)) => error(
            "export-port",
            format!("export-port in {name} is for export = tcp, not loop"),
        ),
        _ => {}
    }
    match (e.allow_any_host, e.allow_hosts.is_empty()) {
        (false, true) => error(
            "export",
            format!(
                "no host may connect to the export of {name}: set export-allow-hosts (or \
                 export-allow-any-host = yes)"
            ),
        ),
        (true, false) => error(
            "export-allow-any-host",
            format!("export-allow-any-host and export-allow-hosts in {name} exclude each other"),
        ),
        _ => {}
    }
    if let Err(m) = crate::export::pair_secrets(
        &e.allow_hosts,
        e.secrets.clone(),
        e.ctrl_secrets.clone(),
        (e.hash, e.dhgroup),
        e.allow_any_host,
        &crate::export::CONFIG_KEYS,
    ) {
        let key = if e.secrets.is_empty() {
            [
                "export-dhchap-ctrl-secret",
                "export-dhchap-hash",
                "export-dhchap-dhgroup",
            ]
            .into_iter()
            .find(|k| dev.origins.contains_key(k))
            .unwrap_or("export-dhchap-secret")
        } else {
            "export-dhchap-secret"
        };
        error(key, format!("{m} (in {name})"));
    }
    (errors.len() == before).then_some(e)
}

/// The checks that involve more than one key of a device.
fn finish_device(mut dev: DeviceConfig, v: Values) -> Result<DeviceConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let name = dev.section_name();
    let need = |dev: &DeviceConfig, key: &str, what: &str| {
        dev.error(key, format!("{key} in {name} {what}"))
    };
    if dev.size.is_none() && dev.backing.is_none() {
        let message = format!(
            "{name} has no size (set size, or backing: restored from its image, or as big as a \
             blank one)"
        );
        errors.push(dev.error("size", message));
    }
    if let Some(size) = dev.size {
        if let Err(m) = crate::request::check_size(size, Some(dev.block_size.unwrap_or(4096))) {
            errors.push(dev.error("size", format!("{m} (size in {name})")));
        }
    }
    if dev.compress_level.is_some() {
        match dev.compress {
            None => errors.push(need(&dev, "compress-level", "needs compress")),
            Some(c @ (Compression::Lzo | Compression::LzoRle)) => errors.push(need(
                &dev,
                "compress-level",
                &format!(
                    "does not apply: {} has no levels",
                    rxdsk_ioctl::RXDSK_COMPRESS_NAMES[c.abi() as usize]
                ),
            )),
            Some(_) => {}
        }
    }
    if dev.backing.is_none() {
        for key in ["mode", "journal", "flush-interval", "preload"] {
            if dev.origins.contains_key(key) {
                errors.push(need(&dev, key, "needs backing"));
            }
        }
    } else if dev.mode == Some(Mode::Writearound) && dev.mem_limit.unwrap_or(0) == 0 {
        // RAM holds only what is read, in a cache of that size (the kernel's EINVAL without).
        errors.push(dev.error(
            "mode",
            format!("mode = writearound in {name} needs mem-limit (the size of its read cache)"),
        ));
    }
    let swap = v.fs_type.as_deref() == Some("swap") || v.swap_priority.is_some();
    if swap && v.fs_type.as_deref().is_some_and(|t| t != "swap") {
        errors.push(need(&dev, "swap-priority", "is for swap (fs-type = swap)"));
    }
    if swap && v.mount_point.is_some() {
        errors.push(need(&dev, "mount-point", "does not apply to swap"));
    }
    if v.mount_point.is_some() && v.fs_type.is_none() && !swap {
        errors.push(need(&dev, "mount-point", "needs fs-type"));
    }
    if v.options.is_some() && v.fs_type.is_none() && !swap {
        errors.push(need(&dev, "options", "needs fs-type or swap-priority"));
    }
    if dev.origins.contains_key("export") {
        dev.export = finish_export(&dev, v.export, &mut errors);
    } else {
        for key in KEYS.iter().filter(|k| k.starts_with("export-")) {
            if dev.origins.contains_key(key) {
                errors.push(need(&dev, key, "needs export (tcp or loop)"));
            }
        }
    }
    if let (true, Some(options)) = (swap, &v.options) {
        for o in options.split(',') {
            let hint = if o.starts_with("pri=") {
                " (use swap-priority)"
            } else {
                " (discard, discard=once, discard=pages, nofail)"
            };
            if !matches!(o, "discard" | "discard=once" | "discard=pages" | "nofail") {
                errors.push(need(
                    &dev,
                    "options",
                    &format!("has \"{o}\", not a swap option{hint}"),
                ));
            }
        }
    }
    dev.usage = if swap {
        Usage::Swap {
            priority: v.swap_priority,
            options: v.options,
        }
    } else if let Some(fs_type) = v.fs_type {
        Usage::Filesystem {
            fs_type,
            mount_point: v.mount_point,
            options: v.options,
        }
    } else {
        Usage::Raw
    };
    if errors.is_empty() {
        Ok(dev)
    } else {
        Err(errors)
    }
}

/// An error at `key` of `dev` that concerns `other` too: neither can be set up as it says.
fn in_conflict(
    dev: &DeviceConfig,
    other: &DeviceConfig,
    key: &str,
    message: String,
) -> ConfigError {
    ConfigError {
        concerns: Concerns::Devices(vec![other.id, dev.id]),
        ..dev.error(key, message)
    }
}

/// Two devices cannot share a backing device or a mount point.
fn check_shared(config: &Config, errors: &mut Vec<ConfigError>) {
    let mut backings: BTreeMap<&str, &DeviceConfig> = BTreeMap::new();
    let mut mounts: BTreeMap<&str, &DeviceConfig> = BTreeMap::new();
    let mut nqns: BTreeMap<String, &DeviceConfig> = BTreeMap::new();
    for dev in config.devices.values() {
        if let Some(e) = &dev.export {
            let nqn = e.nqn(dev.id);
            if let Some(other) = nqns.insert(nqn.clone(), dev) {
                let message = format!(
                    "{} and {} are exported as the same subsystem {nqn}",
                    other.section_name(),
                    dev.section_name()
                );
                errors.push(in_conflict(dev, other, "export-nqn", message));
            }
        }
        if let Some(b) = &dev.backing {
            if let Some(other) = backings.insert(b, dev) {
                let message = format!(
                    "{} and {} name the same backing device {b}",
                    other.section_name(),
                    dev.section_name()
                );
                errors.push(in_conflict(dev, other, "backing", message));
            }
        }
        if let Usage::Filesystem {
            mount_point: Some(m),
            ..
        } = &dev.usage
        {
            if let Some(other) = mounts.insert(m, dev) {
                let message = format!(
                    "{} and {} name the same mount point {m}",
                    other.section_name(),
                    dev.section_name()
                );
                errors.push(in_conflict(dev, other, "mount-point", message));
            }
        }
    }
}

#[cfg(test)]
mod tests;
