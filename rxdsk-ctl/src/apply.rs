//! `rxdskctl apply`: makes the devices what the configuration says, idempotently.
//!
//! Three stages: the state is read (devices, backing devices, swaps, mounts), a plan is made
//! from the configuration and that state by a pure function ([`plan`]), then the plan is
//! carried out. Anything wrong in the configuration, or a device that cannot become what it
//! says without being recreated, stops the command in the planning stage: nothing is changed.
//! A step that fails while carrying out the plan ends that device's steps; the other devices
//! go on. A device the configuration exports over NVMe-oF is exported last (or exported again
//! when its export is not as configured), unless `--no-export`.

use crate::backend::Backend;
use crate::cli::{ApplyArgs, Compression, Mode};
use crate::config::{Config, DeviceConfig, ExportConfig, Usage};
use crate::device::{device_name, device_path};
use crate::failure::Failure;
use crate::request::NewDevice;
use crate::size::format_size;
use rxdsk_ioctl::{
    RxdskCreate, RxdskImageHeader, RxdskInfo, RXDSK_COMPRESS_NAMES, RXDSK_FLAG_BACKED,
    RXDSK_IMAGE_FLUSHING,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The `apply` subcommand: configuration, state, plan, then the plan carried out (or only
/// printed).
pub fn run<B: Backend>(
    args: &ApplyArgs,
    open: impl FnOnce() -> Result<B, Failure>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let root = args.root.as_deref().unwrap_or(Path::new("/"));
    let files = if args.config.is_empty() {
        crate::config::config_files(root)
    } else {
        args.config.clone()
    };
    let machine = crate::config::Machine::read(root);
    let mut config = load(&files, &machine, &args.devices, err)?;
    if args.no_export {
        for dev in config.devices.values_mut() {
            dev.export = None;
        }
    }
    // Nothing configured, nothing asked for: no module needed either.
    if config.devices.is_empty() && args.devices.is_empty() {
        if args.json {
            let doc = serde_json::json!({ "dry-run": args.dry_run, "actions": [] });
            writeln!(out, "{doc:#}")?;
        }
        return Ok(());
    }
    let backend = open()?;
    let state = read_state(&backend, &config, &args.devices, &Host, args.activate)?;
    let plans = plan(&config, &args.devices, &state, args.activate).map_err(Failure::Messages)?;
    let (reports, failures, status) = if args.dry_run {
        (describe_plan(&plans), Vec::new(), 0)
    } else {
        let outcome = execute(&backend, &Host, &plans);
        let status = outcome.status();
        (outcome.reports, outcome.failures, status)
    };
    if args.json {
        let doc = serde_json::json!({
            "dry-run": args.dry_run,
            "actions": reports.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
        });
        writeln!(out, "{doc:#}")?;
    } else {
        for r in reports.iter().filter(|r| !r.failed) {
            writeln!(out, "{}", r.text)?;
        }
    }
    if status == 0 {
        Ok(())
    } else {
        out.flush()?;
        Err(Failure::Status(status, failures))
    }
}

/// The configuration for `apply`. Strict: any error refuses everything, except that with
/// devices named (a setup service at boot names its own) an error that concerns none of them
/// is only a warning, as the generator skipped the devices it concerns.
fn load(
    files: &[std::path::PathBuf],
    machine: &crate::config::Machine,
    only: &[u32],
    err: &mut dyn Write,
) -> Result<Config, Failure> {
    let (config, errors) = if only.is_empty() {
        match crate::config::load(files, machine) {
            Ok(config) => (config, Vec::new()),
            Err(errors) => (Config::default(), errors),
        }
    } else {
        crate::config::load_lenient(files, machine)
    };
    let (fatal, other): (Vec<_>, Vec<_>) = errors
        .into_iter()
        .partition(|e| only.is_empty() || only.iter().any(|&id| e.concerns(id)));
    if !fatal.is_empty() {
        return Err(Failure::Messages(
            fatal.iter().map(ToString::to_string).collect(),
        ));
    }
    for w in config
        .warnings
        .iter()
        .filter(|w| only.is_empty() || only.iter().any(|&id| w.concerns(id)))
    {
        writeln!(err, "rxdskctl: warning: {w}")?;
    }
    let asked: Vec<String> = only.iter().map(|&id| device_name(id)).collect();
    for e in other {
        writeln!(
            err,
            "rxdskctl: warning: {e} (ignored: apply was asked for {})",
            asked.join(", ")
        )?;
    }
    Ok(config)
}

/// Exit status when every device with work to do failed (mount(8)'s "mount failure").
pub const EXIT_FAILED: u8 = 32;
/// Exit status when some devices were set up and others failed (mount(8)'s "some mount
/// succeeded").
pub const EXIT_PARTIAL: u8 = 64;

/// What is known of a backing device the configuration names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingState {
    /// Its device number, `None` if it cannot be found.
    pub devno: Option<(u32, u32)>,
    /// The image on it: `Ok(None)` if it holds none, `Err` if it cannot be read.
    pub image: Result<Option<RxdskImageHeader>, String>,
    /// Its size in bytes, `None` if it cannot be read: what a new device on it may be.
    pub bytes: Option<u64>,
}

/// An existing device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceState {
    pub info: RxdskInfo,
    /// `RXDSK_COMPRESS_*` and level, for a compressed device.
    pub compress: Option<(u32, i32)>,
}

/// The part of the system's state a plan depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The configured devices that exist.
    pub devices: BTreeMap<u32, DeviceState>,
    /// By the path the configuration gives.
    pub backings: BTreeMap<String, BackingState>,
    /// Active swap areas (/proc/swaps).
    pub swaps: Vec<String>,
    /// Mounted filesystems: (source, mount point).
    pub mounts: Vec<(String, String)>,
    /// The NVMe-oF exports of the configured devices that have an export.
    pub exports: BTreeMap<u32, crate::export::Export>,
    /// The secrets the exports name, by file.
    pub secrets: BTreeMap<String, Result<crate::dhchap::Secret, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Create(RxdskCreate),
    Restore {
        backing: String,
        preload: bool,
        compress: (u32, i32),
        /// 0: none; else the cache size (ABI 1.6).
        mem_limit: u64,
        size: u64,
        generation: u64,
    },
    Attach {
        backing: String,
        mode: Mode,
        journal: u64,
        flush_interval: u32,
    },
    Resize {
        from: u64,
        to: u64,
    },
    /// mkswap or mkfs.TYPE, only if the device holds no data when the step runs; `fresh`:
    /// created empty by this plan.
    Format {
        fs_type: String,
        fresh: bool,
    },
    Swapon {
        priority: Option<i32>,
        options: Option<String>,
    },
    Mount {
        fs_type: String,
        mount_point: String,
        options: Option<String>,
    },
    /// Export over NVMe-oF (or again, as configured).
    Export(Box<crate::export::Request>),
}

/// The steps for one device; none: it is as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    pub id: u32,
    pub steps: Vec<Step>,
}

/// Whether a device holds no data at all: nothing stored and nothing left to load from a
/// backing device. Only such a device is formatted, so that no data is ever formatted over.
pub fn is_blank(info: &RxdskInfo) -> bool {
    info.used_bytes == 0 && info.unloaded_pages == 0
}

fn compress_name(algorithm: u32) -> &'static str {
    RXDSK_COMPRESS_NAMES
        .get(algorithm as usize)
        .copied()
        .unwrap_or("?")
}

/// The CREATE request for a configured device, checked as `rxdskctl create` checks it.
fn create_request(dev: &DeviceConfig, size: u64) -> Result<RxdskCreate, String> {
    NewDevice {
        size,
        block_size: dev.block_size.unwrap_or(4096),
        mem_limit: dev.mem_limit,
        read_only: false,
        id: Some(dev.id),
        compress: dev.compress,
        compress_level: dev.compress_level,
    }
    .request()
}

fn compress_of(dev: &DeviceConfig) -> (u32, i32) {
    (
        dev.compress.map_or(0, Compression::abi),
        dev.compress_level.unwrap_or(0),
    )
}

/// Plans the configured devices (`only` those, if any are named) against `state`. Errors
/// are complete messages, one per problem, all of them.
pub fn plan(
    config: &Config,
    only: &[u32],
    state: &State,
    activate: bool,
) -> Result<Vec<DevicePlan>, Vec<String>> {
    let mut errors: Vec<String> = only
        .iter()
        .filter(|id| !config.devices.contains_key(id))
        .map(|&id| {
            format!(
                "{}: not in the configuration ({})",
                device_name(id),
                if config.files.is_empty() {
                    "no configuration file".to_string()
                } else {
                    config.files.join(", ")
                }
            )
        })
        .collect();
    let mut plans = Vec::new();
    for dev in config.devices.values() {
        if !only.is_empty() && !only.contains(&dev.id) {
            continue;
        }
        match plan_device(dev, state, activate) {
            Ok(steps) => plans.push(DevicePlan { id: dev.id, steps }),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(errors)
    }
}

/// `FILE:LINE: rxdN: message`, at the key the problem is about.
type ErrorAt<'a> = &'a dyn Fn(&str, String) -> String;

fn plan_device(
    dev: &DeviceConfig,
    state: &State,
    activate: bool,
) -> Result<Vec<Step>, Vec<String>> {
    let name = device_name(dev.id);
    let err = |key: &str, message: String| format!("{}: {name}: {message}", dev.location(key));
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    // A backing device nobody looked at (a bug) is not taken for one without an image.
    let backing = dev.backing.as_ref().map(|b| {
        let s = state.backings.get(b).cloned().unwrap_or(BackingState {
            devno: None,
            image: Err(format!("{b}: not examined")),
            bytes: None,
        });
        (b.as_str(), s)
    });
    match state.devices.get(&dev.id) {
        None => plan_new(dev, backing.as_ref(), &err, &mut steps, &mut errors),
        Some(current) => plan_existing(
            dev,
            current,
            backing.as_ref(),
            &err,
            &mut steps,
            &mut errors,
        ),
    }
    if activate {
        plan_activation(dev, state, &mut steps, &mut errors);
    }
    if let Some(e) = &dev.export {
        plan_export(dev, e, state, &err, &mut steps, &mut errors);
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

/// The kernel keeps a backed device's size (its image's) while it is attached.
fn fixed_size(name: &str, backing: &str, have: u64, want: u64) -> String {
    format!(
        "it keeps its image's size ({}) while {backing} backs it, the configuration says {}; \
         by hand: rxdskctl detach {name}, rxdskctl resize {name} {want}, rxdskctl attach {name} \
         {backing}",
        format_size(have),
        format_size(want)
    )
}

fn plan_new(
    dev: &DeviceConfig,
    backing: Option<&(&str, BackingState)>,
    err: ErrorAt,
    steps: &mut Vec<Step>,
    errors: &mut Vec<String>,
) {
    let Some((b, bs)) = backing else {
        match dev.size.map(|size| create_request(dev, size)) {
            Some(Ok(request)) => {
                steps.push(Step::Create(request));
                push_format(dev, steps, true);
            }
            Some(Err(m)) => errors.push(err("size", m)),
            // The configuration checks refuse a device without size or backing.
            None => errors.push(err("size", "no size".into())),
        }
        return;
    };
    match &bs.image {
        Err(why) => errors.push(err(
            "backing",
            format!("cannot use the backing device: {why}"),
        )),
        Ok(Some(h)) => {
            check_image(dev, h, err, errors);
            if let Some(size) = dev.size.filter(|&s| s != h.size_bytes) {
                let name = device_name(dev.id);
                errors.push(err("size", fixed_size(&name, b, h.size_bytes, size)));
            }
            steps.push(Step::Restore {
                backing: b.to_string(),
                preload: dev.preload,
                compress: compress_of(dev),
                mem_limit: dev.mem_limit.unwrap_or(0),
                size: h.size_bytes,
                generation: h.generation,
            });
            push_format(dev, steps, false);
        }
        // Without a size, as big as the blank backing device allows.
        Ok(None) => match new_size(dev, b, bs).and_then(|size| create_request(dev, size)) {
            Err(m) => errors.push(err("size", m)),
            Ok(request) => {
                steps.push(Step::Create(request));
                steps.push(attach_step(dev, b));
                push_format(dev, steps, true);
            }
        },
    }
}

/// The size of a new device on the blank backing device `b`: without a configured size, the
/// largest that fits there with the journal and the metadata block
/// ([`crate::backing::largest_size`], as `create --backing` makes it); a configured size
/// that does not fit is an error, named before anything is created.
fn new_size(dev: &DeviceConfig, b: &str, bs: &BackingState) -> Result<u64, String> {
    let journal = dev.journal.unwrap_or(0);
    let Some(bytes) = bs.bytes else {
        return dev
            .size
            .ok_or_else(|| format!("{b}: its size cannot be read, so size is needed"));
    };
    match dev.size {
        None => crate::backing::size_on(b, bytes, journal),
        Some(size) if rxdsk_ioctl::image_fits(size, journal, bytes) => Ok(size),
        Some(size) => {
            let most = crate::backing::largest_size(bytes, journal)
                .map_or("none fits".to_string(), |s| format!("at most {s} bytes"));
            let journal = if journal == 0 {
                String::new()
            } else {
                format!(", a journal of {}", format_size(journal))
            };
            Err(format!(
                "{b} ({bytes} bytes) cannot hold a device of {}{journal} and the 4 KiB metadata \
                 block ({most}; without size, the device is as big as it allows)",
                format_size(size),
            ))
        }
    }
}

fn plan_existing(
    dev: &DeviceConfig,
    current: &DeviceState,
    backing: Option<&(&str, BackingState)>,
    err: ErrorAt,
    steps: &mut Vec<Step>,
    errors: &mut Vec<String>,
) {
    let name = device_name(dev.id);
    let info = &current.info;
    let backed = info.flags & RXDSK_FLAG_BACKED != 0;
    let recreate = |what: String| {
        format!(
            "{what}; that cannot change without recreating the device (rxdskctl destroy \
             {name}, then apply again)"
        )
    };
    // Unset keys are compared as their defaults, except the block size a restore takes from
    // the image.
    let want_bs = dev.block_size.or(if dev.backing.is_some() {
        None
    } else {
        Some(4096)
    });
    if let Some(bs) = want_bs.filter(|&bs| bs != info.logical_block_size) {
        errors.push(err(
            "block-size",
            recreate(format!(
                "the block size is {}, the configuration says {bs}",
                info.logical_block_size
            )),
        ));
    }
    let want_limit = dev.mem_limit.unwrap_or(0);
    if want_limit != info.mem_limit_bytes {
        let show = |l: u64| {
            if l == 0 {
                "none".to_string()
            } else {
                format_size(l)
            }
        };
        errors.push(err(
            "mem-limit",
            recreate(format!(
                "the memory limit is {}, the configuration says {}",
                show(info.mem_limit_bytes),
                show(want_limit)
            )),
        ));
    }
    let want = dev.compress.map(Compression::abi);
    let have = current.compress.map(|(a, _)| a);
    if want != have {
        let show = |a: Option<u32>| a.map_or("no compression", compress_name);
        errors.push(err(
            "compress",
            recreate(format!(
                "it has {}, the configuration says {}",
                show(have),
                show(want)
            )),
        ));
    } else if let (Some(level), Some((a, have_level))) = (dev.compress_level, current.compress) {
        if level != have_level {
            errors.push(err(
                "compress-level",
                recreate(format!(
                    "it uses {} level {have_level}, the configuration says {level}",
                    compress_name(a)
                )),
            ));
        }
    }
    // The size first: a device is resized before it is attached, never while.
    match dev.size {
        Some(size) if size != info.size_bytes && backed => {
            let b = backing.map_or("its backing device", |(b, _)| b);
            errors.push(err("size", fixed_size(&name, b, info.size_bytes, size)));
        }
        // Only an empty device is shrunk unattended: whatever is stored past the new end
        // would be gone.
        Some(size) if size < info.size_bytes && !is_blank(info) => errors.push(err(
            "size",
            format!(
                "it is {}, the configuration says {}: not shrunk, that would cut off the end of \
                 its {} (rxdskctl resize does it by hand)",
                format_size(info.size_bytes),
                format_size(size),
                match dev.usage {
                    Usage::Swap { .. } => "swap area",
                    Usage::Raw => "data",
                    _ => "filesystem",
                }
            ),
        )),
        Some(size) if size != info.size_bytes => steps.push(Step::Resize {
            from: info.size_bytes,
            to: size,
        }),
        _ => {}
    }
    match (backing, backed) {
        (None, true) => errors.push(err(
            "backing",
            format!(
                "it has a backing device ({}:{}) the configuration does not name (rxdskctl \
                 detach {name} lets it go)",
                info.backing_major, info.backing_minor
            ),
        )),
        (None, false) => {}
        (Some((b, bs)), true) => check_attached(dev, info, b, bs, err, errors),
        (Some((b, bs)), false) => match &bs.image {
            Ok(None) => steps.push(attach_step(dev, b)),
            Ok(Some(_)) => errors.push(err(
                "backing",
                format!(
                    "{b} holds an rxdsk image, and attaching the existing device would overwrite \
                     it (rxdskctl destroy {name}, then apply, restores it)"
                ),
            )),
            Err(why) => errors.push(err(
                "backing",
                format!("cannot use the backing device: {why}"),
            )),
        },
    }
    if is_blank(info) {
        push_format(dev, steps, false);
    }
}

/// An attached device: the configured backing device, mode, journal and flush interval.
fn check_attached(
    dev: &DeviceConfig,
    info: &RxdskInfo,
    b: &str,
    bs: &BackingState,
    err: ErrorAt,
    errors: &mut Vec<String>,
) {
    let name = device_name(dev.id);
    let ours = (info.backing_major, info.backing_minor);
    if bs.devno != Some(ours) {
        let theirs = bs.devno.map_or(" (not found)".to_string(), |(ma, mi)| {
            format!(" ({ma}:{mi})")
        });
        errors.push(err(
            "backing",
            format!(
                "its backing device is {}:{}, not {b}{theirs}",
                ours.0, ours.1
            ),
        ));
        return;
    }
    let again = format!("(rxdskctl detach {name}, then apply, attaches it anew)");
    let have = Mode::of_flags(info.flags);
    if let Some(m) = dev.mode.filter(|&m| m != have) {
        errors.push(err(
            "mode",
            format!(
                "it is attached in {} mode, the configuration says {} {again}",
                have.name(),
                m.name()
            ),
        ));
    }
    let interval = bs
        .image
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(|h| h.flush_interval_secs);
    if let (Some(i), Some(have)) = (dev.flush_interval, interval) {
        if i != have {
            errors.push(err(
                "flush-interval",
                format!("its image says flush every {have} s, the configuration says {i} {again}"),
            ));
        }
    }
    if let Some(j) = dev.journal.filter(|&j| j != info.journal_bytes) {
        errors.push(err(
            "journal",
            format!(
                "its journal is {} bytes, the configuration says {j} {again}",
                info.journal_bytes
            ),
        ));
    }
}

/// A restore takes block size, mode, journal and flush interval from the image: a
/// configuration that says otherwise is an error rather than silently ignored.
fn check_image(dev: &DeviceConfig, h: &RxdskImageHeader, err: ErrorAt, errors: &mut Vec<String>) {
    let b = dev.backing.as_deref().unwrap_or_default();
    if h.state == RXDSK_IMAGE_FLUSHING {
        errors.push(err(
            "backing",
            format!(
                "the image on {b} is from a flush that did not complete; restore it by hand \
                 if it is wanted (rxdskctl create --backing {b} --force --id {})",
                dev.id
            ),
        ));
    }
    let differs = |key: &str, image: String, config: String| {
        err(
            key,
            format!("the image on {b} has {key} {image}, the configuration says {config}"),
        )
    };
    if let Some(bs) = dev.block_size.filter(|&bs| bs != h.logical_block_size) {
        errors.push(differs(
            "block-size",
            h.logical_block_size.to_string(),
            bs.to_string(),
        ));
    }
    let image_mode = Mode::of_image(h.mode);
    if let Some(m) = dev.mode.filter(|&m| m != image_mode) {
        errors.push(differs("mode", image_mode.name().into(), m.name().into()));
    } else if image_mode == Mode::Writearound && dev.mem_limit.unwrap_or(0) == 0 {
        // The kernel's EINVAL, named before anything is done.
        errors.push(err(
            "backing",
            format!(
                "the image on {b} is in writearound mode, which needs a memory limit (the \
                 cache size): set mem-limit"
            ),
        ));
    }
    if let Some(j) = dev.journal.filter(|&j| j != h.journal_bytes) {
        errors.push(differs(
            "journal",
            h.journal_bytes.to_string(),
            j.to_string(),
        ));
    }
    if let Some(i) = dev.flush_interval.filter(|&i| i != h.flush_interval_secs) {
        errors.push(differs(
            "flush-interval",
            h.flush_interval_secs.to_string(),
            i.to_string(),
        ));
    }
}

fn attach_step(dev: &DeviceConfig, backing: &str) -> Step {
    Step::Attach {
        backing: backing.to_string(),
        mode: dev.mode.unwrap_or(Mode::Writeback),
        journal: dev.journal.unwrap_or(0),
        flush_interval: dev.flush_interval.unwrap_or(0),
    }
}

fn push_format(dev: &DeviceConfig, steps: &mut Vec<Step>, fresh: bool) {
    let fs_type = match &dev.usage {
        Usage::Raw => return,
        Usage::Swap { .. } => "swap",
        Usage::Filesystem { fs_type, .. } => fs_type,
    };
    steps.push(Step::Format {
        fs_type: fs_type.to_string(),
        fresh,
    });
}

fn plan_activation(
    dev: &DeviceConfig,
    state: &State,
    steps: &mut Vec<Step>,
    errors: &mut Vec<String>,
) {
    let path = device_path(dev.id);
    match &dev.usage {
        Usage::Swap { priority, options } if !state.swaps.contains(&path) => {
            steps.push(Step::Swapon {
                priority: *priority,
                options: options.clone(),
            });
        }
        Usage::Filesystem {
            fs_type,
            mount_point: Some(mount_point),
            options,
        } => {
            let on_it: Vec<&String> = state
                .mounts
                .iter()
                .filter(|(_, target)| target == mount_point)
                .map(|(source, _)| source)
                .collect();
            if on_it.last() == Some(&&path) {
                return;
            }
            if let Some(other) = on_it.last() {
                errors.push(format!(
                    "{}: {}: {other} is mounted on {mount_point}",
                    dev.location("mount-point"),
                    device_name(dev.id)
                ));
                return;
            }
            steps.push(Step::Mount {
                fs_type: fs_type.clone(),
                mount_point: mount_point.clone(),
                options: options.clone(),
            });
        }
        _ => {}
    }
}

/// The export of a device, unless it is as configured: the secrets read, the request checked
/// (a link-local address's interface must exist now).
fn plan_export(
    dev: &DeviceConfig,
    e: &ExportConfig,
    state: &State,
    err: ErrorAt,
    steps: &mut Vec<Step>,
    errors: &mut Vec<String>,
) {
    let before = errors.len();
    let mut read = |files: &[String], key: &str| -> Vec<crate::dhchap::Secret> {
        let mut secrets = Vec::new();
        for f in files {
            match state.secrets.get(f) {
                Some(Ok(s)) => secrets.push(s.clone()),
                Some(Err(why)) => errors.push(err(key, format!("cannot use the secret: {why}"))),
                None => errors.push(err(key, format!("{f}: not read"))),
            }
        }
        secrets
    };
    let secrets = read(&e.secrets, "export-dhchap-secret");
    let ctrl_secrets = read(&e.ctrl_secrets, "export-dhchap-ctrl-secret");
    if errors.len() != before {
        return;
    }
    let request = crate::export::authenticate(
        &e.allow_hosts,
        secrets,
        ctrl_secrets,
        (e.hash, e.dhgroup),
        e.allow_any_host,
        &crate::export::CONFIG_KEYS,
    )
    .map(|allow_hosts| crate::export::Request {
        id: dev.id,
        transport: e.transport,
        address: e.address.clone(),
        port: e.port,
        nqn: e.nqn.clone(),
        allow_hosts,
        allow_any_host: e.allow_any_host,
    })
    .and_then(|r| {
        crate::export::check(&r)
            .map(|_| r)
            .map_err(|m| m.replace("--address", "export-address"))
    });
    let request = match request {
        Ok(r) => r,
        Err(m) => return errors.push(err("export", m)),
    };
    let nqn = e.nqn(dev.id);
    match state.exports.get(&dev.id) {
        Some(current) if current.nqn != nqn => errors.push(err(
            "export-nqn",
            format!(
                "it is exported as {}, the configuration says {nqn} (rxdskctl unexport {}, \
                 then apply)",
                current.nqn,
                device_name(dev.id)
            ),
        )),
        Some(current) if crate::export::is_as_requested(current, &request) => {}
        _ => steps.push(Step::Export(Box::new(request))),
    }
}

impl Step {
    /// The action's name in JSON, and the verb of `--dry-run`.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Create(_) => "create",
            Step::Restore { .. } => "restore",
            Step::Attach { .. } => "attach",
            Step::Resize { from, to } if to > from => "grow",
            Step::Resize { .. } => "shrink",
            Step::Format { .. } => "format",
            Step::Swapon { .. } => "swapon",
            Step::Mount { .. } => "mount",
            Step::Export(_) => "export",
        }
    }

    /// The line after `rxdN: `: what was done, or (`done` false) what would be.
    pub fn describe(&self, done: bool) -> String {
        let verb = |past: &str, base: &str| {
            if done {
                past.to_string()
            } else {
                format!("would {base}")
            }
        };
        match self {
            Step::Create(r) => {
                let mut text = format!(
                    "{} {}",
                    verb("created", "create"),
                    format_size(r.size_bytes)
                );
                if r.logical_block_size != 4096 {
                    text += &format!(", {}-byte blocks", r.logical_block_size);
                }
                if r.compress != 0 {
                    text += &format!(", {}", compress_name(r.compress));
                    if r.compress_level != 0 {
                        text += &format!(" level {}", r.compress_level);
                    }
                }
                if r.mem_limit_bytes != 0 {
                    text += &format!(", memory limit {}", format_size(r.mem_limit_bytes));
                }
                text
            }
            Step::Restore {
                backing,
                preload,
                compress,
                mem_limit,
                size,
                generation,
            } => {
                let mut text = format!(
                    "{} {} from {backing} (generation {generation}",
                    verb("restored", "restore"),
                    format_size(*size)
                );
                if compress.0 != 0 {
                    text += &format!(", {}", compress_name(compress.0));
                }
                if *mem_limit != 0 {
                    text += &format!(", memory limit {}", format_size(*mem_limit));
                }
                text += if *preload { ", preloaded)" } else { ")" };
                text
            }
            Step::Attach {
                backing,
                mode,
                journal,
                flush_interval,
            } => {
                let mut text = format!(
                    "{} to {backing} ({}",
                    verb("attached", "attach"),
                    mode.name()
                );
                if *journal != 0 {
                    text += &format!(", journal {}", format_size(*journal));
                }
                if *flush_interval != 0 {
                    text += &format!(", flush every {flush_interval} s");
                }
                text + ")"
            }
            Step::Resize { from, to } if to > from => format!(
                "{} to {} (from {})",
                verb("grown", "grow"),
                format_size(*to),
                format_size(*from)
            ),
            Step::Resize { from, to } => format!(
                "{} to {} (from {})",
                verb("shrunk", "shrink"),
                format_size(*to),
                format_size(*from)
            ),
            Step::Format { fs_type, fresh } => {
                let text = format!("{} as {fs_type}", verb("formatted", "format"));
                if done || *fresh {
                    text
                } else {
                    text + " if it holds no data"
                }
            }
            Step::Swapon { priority, .. } => {
                let text = format!("{} as swap", verb("activated", "activate"));
                match priority {
                    Some(p) => format!("{text} (priority {p})"),
                    None => text,
                }
            }
            Step::Mount { mount_point, .. } => {
                format!("{} on {mount_point}", verb("mounted", "mount"))
            }
            Step::Export(r) => {
                let mut text = format!(
                    "{} as {} over {}",
                    verb("exported", "export"),
                    r.nqn
                        .clone()
                        .unwrap_or_else(|| crate::export::default_nqn(r.id)),
                    r.transport.name()
                );
                if let Some(a) = &r.address {
                    text += &format!(
                        " {a} port {}",
                        r.port.unwrap_or(crate::export::DEFAULT_PORT)
                    );
                }
                if r.allow_any_host {
                    return text + " to any host";
                }
                let hosts: Vec<&str> = r.allow_hosts.iter().map(|h| h.nqn.as_str()).collect();
                text += &format!(" to {}", hosts.join(", "));
                if r.allow_hosts.iter().any(|h| h.auth.is_some()) {
                    text += " (DH-HMAC-CHAP)";
                }
                text
            }
        }
    }

    /// The JSON object of the step (with "device", "action" and "done").
    pub fn json(&self, id: u32, done: bool) -> serde_json::Value {
        use serde_json::json;
        let mut v = match self {
            Step::Create(r) => json!({
                "size": r.size_bytes,
                "block-size": r.logical_block_size,
                "compress": (r.compress != 0).then(|| compress_name(r.compress)),
                "compress-level": (r.compress != 0 && r.compress_level != 0).then_some(r.compress_level),
                "mem-limit": (r.mem_limit_bytes != 0).then_some(r.mem_limit_bytes),
            }),
            Step::Restore {
                backing,
                preload,
                mem_limit,
                size,
                generation,
                ..
            } => {
                json!({ "backing": backing, "preload": preload, "size": size, "generation": generation,
                        "mem-limit": (*mem_limit != 0).then_some(*mem_limit) })
            }
            Step::Attach {
                backing,
                mode,
                journal,
                flush_interval,
            } => json!({
                "backing": backing,
                "mode": mode.name(),
                "journal": journal,
                "flush-interval": (*flush_interval != 0).then_some(flush_interval),
            }),
            Step::Resize { from, to } => json!({ "from": from, "size": to }),
            Step::Format { fs_type, .. } => json!({ "fs-type": fs_type }),
            Step::Swapon { priority, .. } => json!({ "priority": priority }),
            Step::Mount {
                fs_type,
                mount_point,
                options,
            } => json!({ "fs-type": fs_type, "mount-point": mount_point, "options": options }),
            Step::Export(r) => json!({
                "nqn": r.nqn.clone().unwrap_or_else(|| crate::export::default_nqn(r.id)),
                "transport": r.transport.name(),
                "address": r.address,
                "port": r.address.as_ref().map(|_| r.port.unwrap_or(crate::export::DEFAULT_PORT)),
                "allowed-hosts": r.allow_hosts.iter().map(|h| h.nqn.clone()).collect::<Vec<_>>(),
                "allow-any-host": r.allow_any_host,
                "authenticated": r.allow_hosts.iter().any(|h| h.auth.is_some()),
            }),
        };
        v["device"] = device_path(id).into();
        v["action"] = self.action().into();
        v["done"] = done.into();
        v
    }
}

/// `SWAP_FLAG_*` of linux/swap.h (the libc crate has swapon(2) but not these).
const SWAP_FLAG_PREFER: i32 = 0x8000;
const SWAP_FLAG_PRIO_MASK: i32 = 0x7fff;
const SWAP_FLAG_DISCARD: i32 = 0x10000;
const SWAP_FLAG_DISCARD_ONCE: i32 = 0x20000;
const SWAP_FLAG_DISCARD_PAGES: i32 = 0x40000;

/// swapon(2) flags for a priority and swap options, as swapon(8) makes them: a priority of
/// -1 is the kernel's default; `nofail` concerns only systemd (the configuration checks
/// refuse other options).
pub fn swap_flags(priority: Option<i32>, options: Option<&str>) -> i32 {
    let mut flags = match priority {
        Some(p) if p >= 0 => SWAP_FLAG_PREFER | (p & SWAP_FLAG_PRIO_MASK),
        _ => 0,
    };
    for option in options.unwrap_or_default().split(',') {
        flags |= match option {
            "discard" => SWAP_FLAG_DISCARD,
            "discard=once" => SWAP_FLAG_DISCARD | SWAP_FLAG_DISCARD_ONCE,
            "discard=pages" => SWAP_FLAG_DISCARD | SWAP_FLAG_DISCARD_PAGES,
            _ => 0,
        };
    }
    flags
}

/// What `apply` needs of the system besides the module: backing devices, the swap and
/// mount tables, the formatting and mounting programs, swapon(2).
pub trait System {
    fn backing_state(&self, path: &str) -> BackingState;
    fn swaps(&self) -> Vec<String>;
    fn mounts(&self) -> Vec<(String, String)>;
    /// Runs a program to completion; `Err` holds its complaint.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String>;
    fn create_dir(&self, path: &str) -> Result<(), String>;
    /// swapon(2) itself: swapon(8) differs between util-linux and busybox (no -p there).
    fn swapon(&self, path: &str, flags: i32) -> Result<(), String>;
    /// The NVMe-oF exports (nvmet's configfs).
    fn exports(&self) -> Vec<crate::export::Export>;
    fn export(&self, request: &crate::export::Request) -> Result<(), String>;
}

/// The real system.
pub struct Host;

impl System for Host {
    fn backing_state(&self, path: &str) -> BackingState {
        let devno = crate::device::devt(path);
        // A device without an image is initialised only if blank: a wrong name, a filesystem
        // or a grown device (whose image is no longer where it is looked for) is not.
        let image = match crate::backing::probe_image(path) {
            Ok(None) => match crate::backing::holds_data(path) {
                Ok(false) => Ok(None),
                Ok(true) => Err(crate::backing::not_blank(path, "apply")),
                Err(m) => Err(m),
            },
            other => other,
        };
        let bytes = crate::backing::size_of(path).ok();
        BackingState {
            devno,
            image,
            bytes,
        }
    }

    fn swaps(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/swaps")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    fn mounts(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        crate::mtab::entries(&text)
            .into_iter()
            .map(|e| (e.spec, e.file))
            .collect()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim();
        let said = if said.is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            said.to_string()
        };
        Err(format!(
            "{program} {} failed ({}){}",
            args.join(" "),
            out.status,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ))
    }

    fn create_dir(&self, path: &str) -> Result<(), String> {
        std::fs::create_dir_all(path).map_err(|e| format!("{path}: cannot create: {e}"))
    }

    fn swapon(&self, path: &str, flags: i32) -> Result<(), String> {
        let c_path =
            std::ffi::CString::new(path).map_err(|_| format!("{path}: not a usable path"))?;
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
        let r = unsafe { nix::libc::swapon(c_path.as_ptr(), flags) };
        if r == 0 {
            Ok(())
        } else {
            Err(format!("swapon: {}", std::io::Error::last_os_error()))
        }
    }

    fn exports(&self) -> Vec<crate::export::Export> {
        crate::export::exports(Path::new(crate::export::NVMET))
    }

    fn export(&self, request: &crate::export::Request) -> Result<(), String> {
        crate::export::export(Path::new(crate::export::NVMET), request).map(|_| ())
    }
}

/// Reads what [`plan`] needs for the configured devices.
pub fn read_state<B: Backend>(
    backend: &B,
    config: &Config,
    only: &[u32],
    system: &dyn System,
    activate: bool,
) -> Result<State, String> {
    use nix::errno::Errno;
    let existing = backend.list().map_err(|e| {
        crate::control::ControlError::new(backend.control_path(), crate::control::action::LIST, e)
            .to_string()
    })?;
    let mut state = State::default();
    // Only the devices asked for: at boot each setup service looks at its own device and
    // backing device, which may be the only one there yet.
    for dev in config
        .devices
        .values()
        .filter(|d| only.is_empty() || only.contains(&d.id))
    {
        if existing.contains(&dev.id) {
            let info = match backend.info(dev.id) {
                Ok(info) => info,
                // Destroyed meanwhile.
                Err(Errno::ENODEV) => continue,
                Err(e) => {
                    return Err(crate::control::ControlError::new(
                        device_path(dev.id),
                        crate::control::action::INFO,
                        e,
                    )
                    .to_string())
                }
            };
            let compress = if info.flags & rxdsk_ioctl::RXDSK_FLAG_COMPRESSED != 0 {
                let c = backend.compr_stats(dev.id).map_err(|e| {
                    crate::control::ControlError::new(
                        device_path(dev.id),
                        crate::control::action::STATS,
                        e,
                    )
                    .to_string()
                })?;
                Some((c.algorithm, c.level))
            } else {
                None
            };
            state.devices.insert(dev.id, DeviceState { info, compress });
        }
        if let Some(b) = &dev.backing {
            state.backings.insert(b.clone(), system.backing_state(b));
        }
    }
    if activate {
        state.swaps = system.swaps();
        state.mounts = system.mounts();
    }
    let exported: Vec<&DeviceConfig> = config
        .devices
        .values()
        .filter(|d| d.export.is_some() && (only.is_empty() || only.contains(&d.id)))
        .collect();
    if !exported.is_empty() {
        let exports = system.exports();
        for dev in &exported {
            let path = device_path(dev.id);
            if let Some(e) = exports.iter().find(|e| e.device == path) {
                state.exports.insert(dev.id, e.clone());
            }
            let e = dev.export.as_ref().map_or(Default::default(), Clone::clone);
            for f in e.secrets.iter().chain(&e.ctrl_secrets) {
                state
                    .secrets
                    .insert(f.clone(), crate::dhchap::read_secret_file(f));
            }
        }
    }
    Ok(state)
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub id: u32,
    /// A failed step is reported on stderr, and only in JSON here.
    pub failed: bool,
    pub text: String,
    pub json: serde_json::Value,
}

/// The outcome of carrying out a plan.
#[derive(Debug, Default)]
pub struct Outcome {
    pub reports: Vec<Report>,
    /// `rxdN: step: why`, one per failed device.
    pub failures: Vec<String>,
    /// How many devices with work to do did all of it.
    pub done: usize,
}

impl Outcome {
    /// As mount(8) (`mount -a`), per device with work to do: 0 all done; [`EXIT_FAILED`] if
    /// every one failed (a device whose first steps were done and a later one failed has
    /// failed); [`EXIT_PARTIAL`] if some were done and some failed.
    pub fn status(&self) -> u8 {
        match (self.failures.is_empty(), self.done) {
            (true, _) => 0,
            (false, 0) => EXIT_FAILED,
            (false, _) => EXIT_PARTIAL,
        }
    }
}

fn unchanged(id: u32) -> Report {
    Report {
        id,
        failed: false,
        text: format!("{}: unchanged", device_name(id)),
        json: serde_json::json!({ "device": device_path(id), "action": "unchanged", "done": true }),
    }
}

/// What `--dry-run` prints: the plan, not carried out.
pub fn describe_plan(plans: &[DevicePlan]) -> Vec<Report> {
    let mut reports = Vec::new();
    for p in plans {
        if p.steps.is_empty() {
            reports.push(unchanged(p.id));
        }
        for s in &p.steps {
            reports.push(Report {
                id: p.id,
                failed: false,
                text: format!("{}: {}", device_name(p.id), s.describe(false)),
                json: s.json(p.id, false),
            });
        }
    }
    reports
}

/// Carries out the plans, device by device; a failed step ends its device's plan.
pub fn execute<B: Backend>(backend: &B, system: &dyn System, plans: &[DevicePlan]) -> Outcome {
    let mut outcome = Outcome::default();
    for p in plans {
        if p.steps.is_empty() {
            outcome.reports.push(unchanged(p.id));
            continue;
        }
        let failures = outcome.failures.len();
        for step in &p.steps {
            match execute_step(backend, system, p.id, step) {
                Ok(false) => {}
                Ok(true) => {
                    outcome.reports.push(Report {
                        id: p.id,
                        failed: false,
                        text: format!("{}: {}", device_name(p.id), step.describe(true)),
                        json: step.json(p.id, true),
                    });
                }
                Err(why) => {
                    let mut json = step.json(p.id, false);
                    json["error"] = why.clone().into();
                    outcome.reports.push(Report {
                        id: p.id,
                        failed: true,
                        text: format!("{}: failed to {}: {why}", device_name(p.id), step.action()),
                        json,
                    });
                    // Kernel errors already name the device.
                    let path = device_path(p.id);
                    outcome
                        .failures
                        .push(if why.starts_with(&format!("{path}: ")) {
                            why
                        } else {
                            format!("{path}: cannot {}: {why}", step.action())
                        });
                    break;
                }
            }
        }
        if outcome.failures.len() == failures {
            outcome.done += 1;
        }
    }
    outcome
}

/// Carries out one step; `Ok(false)`: nothing needed doing after all.
fn execute_step<B: Backend>(
    backend: &B,
    system: &dyn System,
    id: u32,
    step: &Step,
) -> Result<bool, String> {
    use crate::control::{action, ControlError};
    let path = device_path(id);
    match step {
        Step::Create(request) => {
            backend
                .create(request)
                .map_err(|e| ControlError::new(&path, action::CREATE, e).to_string())?;
            wait_for_node(backend, &path)?;
        }
        Step::Restore {
            backing,
            preload,
            compress,
            mem_limit,
            ..
        } => {
            crate::backing::restore(
                backend,
                backing,
                &crate::backing::RestoreOptions {
                    force: false,
                    preload: *preload,
                    id: Some(id),
                    compress: *compress,
                    mem_limit: *mem_limit,
                },
            )?;
            wait_for_node(backend, &path)?;
        }
        Step::Attach {
            backing,
            mode,
            journal,
            flush_interval,
        } => crate::backing::attach(backend, id, backing, *journal, *mode, *flush_interval)?,
        Step::Resize { to, .. } => {
            backend
                .resize(id, *to, 0)
                .map_err(|e| ControlError::new(&path, action::RESIZE, e).to_string())?;
            crate::export::revalidate(std::path::Path::new(crate::export::NVMET), id);
        }
        Step::Format { fs_type, .. } => {
            // Checked again now: a restored image, or a writer since the plan, holds data.
            let info = backend
                .info(id)
                .map_err(|e| ControlError::new(&path, action::INFO, e).to_string())?;
            if !is_blank(&info) {
                return Ok(false);
            }
            if fs_type == "swap" {
                system.run("mkswap", &[&path])?;
            } else {
                system.run(&format!("mkfs.{fs_type}"), &[&path])?;
            }
        }
        Step::Swapon { priority, options } => {
            system.swapon(&path, swap_flags(*priority, options.as_deref()))?
        }
        Step::Mount {
            fs_type,
            mount_point,
            options,
        } => {
            system.create_dir(mount_point)?;
            let mut args = vec!["-t", fs_type.as_str()];
            if let Some(o) = options {
                args.extend(["-o", o]);
            }
            args.extend([path.as_str(), mount_point.as_str()]);
            system.run("mount", &args)?;
        }
        Step::Export(request) => system.export(request)?,
    }
    Ok(true)
}

fn wait_for_node<B: Backend>(backend: &B, path: &str) -> Result<(), String> {
    if backend.wait_for_node(path) {
        Ok(())
    } else {
        Err(format!(
            "{path}: the device node did not appear within 2 seconds"
        ))
    }
}

#[cfg(test)]
mod tests;
