//! What each subcommand does, against any [`Backend`], writing to any output.

use crate::backend::Backend;
use crate::cli::{
    Command, CreateArgs, DestroyArgs, DetachArgs, FlushArgs, InspectArgs, ListArgs, ResizeArgs,
    StatsArgs,
};
use crate::control::{action, ControlError};
use crate::device::device_path;
use crate::failure::Failure;
use crate::list::{render_json, render_raw, render_table, Column, Row, Style};
use crate::modprobe::Modprobe;
use crate::progress::Progress;
use crate::query::{Ioctls, Query};
use crate::request::NewDevice;
use crate::stats::{render_stats_json, render_stats_text};
use crate::sysfs::Sysfs;
use nix::errno::Errno;
use rxdsk_ioctl::{self as abi, RXDSK_FLAG_FORCE};
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// What the commands use besides the control node: sysfs, which `list`, `stats` and
/// `version` read, and `modprobe`, which loads the module for the commands that create
/// devices.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub sysfs: Sysfs,
    pub modprobe: Modprobe,
}

impl Kernel {
    /// `/sys` and `modprobe`, or what `RXDSK_SYSFS_ROOT` and `RXDSK_MODPROBE` say.
    pub fn from_env() -> Self {
        Self {
            sysfs: Sysfs::from_env(),
            modprobe: Modprobe::from_env(),
        }
    }
}

/// Runs `command`; `open` opens the control node for the commands that need it. Returns the
/// exit status.
pub fn run<B: Backend>(
    command: Command,
    open: impl Fn() -> Result<B, ControlError>,
    kernel: &Kernel,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = match command {
        Command::Create(args) => create(&args, || open_loading(&open, &kernel.modprobe), out, err),
        Command::Destroy(args) => destroy(&args, open),
        Command::Resize(args) => resize(&args, open),
        Command::List(args) => {
            query(kernel, &open).and_then(|q| list(&args, q.as_ref(), kernel, out))
        }
        Command::Stats(args) => query(kernel, &open).and_then(|q| stats(&args, q.as_ref(), out)),
        Command::Attach(args) => open().map_err(Failure::from).and_then(|b| {
            crate::backing::attach(
                &b,
                args.device,
                &args.backing,
                args.journal.unwrap_or(0),
                args.mode,
                args.flush_interval.unwrap_or(0),
            )
            .map_err(Failure::from)
        }),
        Command::Flush(args) => flush(&args, open, out),
        Command::Detach(args) => detach(&args, open),
        Command::Inspect(args) => inspect(&args, out),
        Command::Export(args) => export(&args, Path::new(crate::export::NVMET), open, out),
        Command::Unexport { device } => open()
            .map_err(Failure::from)
            .and_then(|b| known_device(&b, device))
            .and_then(|()| {
                crate::export::unexport(Path::new(crate::export::NVMET), device).map_err(|m| {
                    Failure::from(format!("{}: cannot unexport: {m}", device_path(device)))
                })
            }),
        Command::Exports { json } => {
            let list = crate::export::exports(Path::new(crate::export::NVMET));
            let text = if json {
                crate::export::render_json(&list)
            } else {
                crate::export::render(&list)
            };
            out.write_all(text.as_bytes()).map_err(Failure::from)
        }
        Command::GenDhchapKey(args) => crate::dhchap::gen_command(&args, out),
        Command::Version { json } => version(json, || query(kernel, &open), out),
        Command::Apply(args) => {
            crate::apply::run(&args, || open_loading(&open, &kernel.modprobe), out, err)
        }
    }
    .and_then(|()| out.flush().map_err(Failure::Output));
    // Nothing sensible is left to do if stderr fails too.
    match result {
        Ok(()) => 0,
        // A closed pipe (`rxdskctl list | head -1`) is the reader's choice, not an error.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(Failure::Output(e)) => {
            let _ = writeln!(err, "rxdskctl: write error: {e}");
            1
        }
        Err(Failure::Messages(messages)) => {
            for m in messages {
                let _ = writeln!(err, "rxdskctl: {m}");
            }
            1
        }
        Err(Failure::Status(status, messages)) => {
            for m in messages {
                let _ = writeln!(err, "rxdskctl: {m}");
            }
            status
        }
    }
}

/// `list`, `stats` and `version` read sysfs, as anyone may, whoever runs them: the same
/// answers for root and users, from one code path. A module from before those files (or none
/// loaded) is asked through the control node.
fn query<'a, B: Backend + 'a>(
    kernel: &Kernel,
    open: &impl Fn() -> Result<B, ControlError>,
) -> Result<Box<dyn Query + 'a>, Failure> {
    if kernel.sysfs.available() {
        Ok(Box::new(kernel.sysfs.clone()))
    } else {
        Ok(Box::new(Ioctls(open()?)))
    }
}

/// Opens the control node; if it is missing, loads the module (once) and opens it again.
fn open_loading<B>(
    open: &impl Fn() -> Result<B, ControlError>,
    modprobe: &Modprobe,
) -> Result<B, Failure> {
    let missing = |e: &ControlError| e.action == action::OPEN && e.errno == Errno::ENOENT;
    let subject = match open() {
        Err(e) if missing(&e) => e.subject.unwrap_or_default(),
        opened => return Ok(opened?),
    };
    modprobe
        .load()
        .map_err(|m| Failure::from(format!("{subject}: {m}")))?;
    // devtmpfs makes the node as the module registers it; udev may take a moment more.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match open() {
            Err(e) if missing(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) if missing(&e) => {
                return Err(format!(
                    "{subject}: modprobe rxdsk loaded the module, but the control node did not \
                     appear within 2 seconds"
                )
                .into())
            }
            opened => return Ok(opened?),
        }
    }
}

fn flush<B: Backend>(
    args: &FlushArgs,
    open: impl FnOnce() -> Result<B, ControlError>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let backend = match open() {
        Ok(backend) => backend,
        // No control node, no module loaded: no device has anything to flush.
        Err(e) if (args.all || args.if_backed) && e.errno == Errno::ENOENT => {
            if args.json {
                crate::backing::write_flushed_json(out, Vec::new())?;
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let shown = !args.json && std::io::stderr().is_terminal();
    let mut progress: Option<Progress> = None;
    let failures = crate::backing::flush(
        &backend,
        &args.devices,
        args.all,
        args.if_backed,
        args.json,
        out,
        &mut |id| {
            // The last device's bar goes before the next one's comes.
            progress = None;
            progress = id.filter(|_| shown).and_then(Progress::flush);
        },
    )?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Messages(failures))
    }
}

fn detach<B: Backend>(
    args: &DetachArgs,
    open: impl FnOnce() -> Result<B, ControlError>,
) -> Result<(), Failure> {
    let backend = open()?;
    Ok(crate::backing::detach(
        &backend,
        args.device,
        args.discard_dirty,
    )?)
}

fn inspect(args: &InspectArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let h = crate::backing::read_image(&args.backing)?;
    write!(
        out,
        "{}",
        crate::backing::render_inspect(&args.backing, &h, args.json)
    )?;
    Ok(())
}

fn force_flags(force: bool) -> u64 {
    if force {
        RXDSK_FLAG_FORCE
    } else {
        0
    }
}

fn create<B: Backend>(
    args: &CreateArgs,
    open: impl FnOnce() -> Result<B, Failure>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    if let Some(id) = args.id.filter(|&id| id >= abi::RXDSK_MAX_DEVICES) {
        return Err(format!(
            "invalid device id: {id} (ids are below {})",
            abi::RXDSK_MAX_DEVICES
        )
        .into());
    }
    // clap does not check `requires = "backing"` next to --size, which conflicts with it.
    let mut only_backed = given(&[("--force", args.force), ("--preload", args.preload)]);
    only_backed.extend(attach_options(args));
    if args.backing.is_none() && !only_backed.is_empty() {
        return Err(format!(
            "{} only with --backing (rxdskctl attach attaches a backing device to a device \
             created without one)",
            only_backed.join(", ")
        )
        .into());
    }
    let (backend, id) = match &args.backing {
        Some(path) => create_backed(args, path, open)?,
        None => {
            let request = NewDevice::from(args).request()?;
            let backend = open()?;
            let id = backend.create(&request).map_err(|errno| ControlError {
                subject: args.id.map(device_path),
                action: action::CREATE,
                errno,
            })?;
            (backend, id)
        }
    };
    finish_create(&backend, id, out, err)
}

/// The names of the options in `options` that were given.
fn given(options: &[(&'static str, bool)]) -> Vec<&'static str> {
    options
        .iter()
        .filter_map(|&(option, given)| given.then_some(option))
        .collect()
}

/// The options of `create --backing` that only a new device on a blank disk takes (what
/// `attach` takes): a restore keeps the image's.
fn attach_options(args: &CreateArgs) -> Vec<&'static str> {
    given(&[
        ("--mode", args.mode.is_some()),
        ("--journal", args.journal.is_some()),
        ("--flush-interval", args.flush_interval.is_some()),
    ])
}

/// `create --backing`: a restore from the image on `path`, or a new device attached to it if
/// it holds none and is blank.
fn create_backed<B: Backend>(
    args: &CreateArgs,
    path: &str,
    open: impl FnOnce() -> Result<B, Failure>,
) -> Result<(B, u32), Failure> {
    let attaching = attach_options(args);
    match crate::backing::probe_image(path) {
        Ok(None) => return create_blank(args, path, open),
        Ok(Some(_)) if !attaching.is_empty() => {
            return Err(format!(
                "{path}: {} {} not apply: the image on {path} says its own journal, mode and \
                 flush interval, which a restore keeps (rxdskctl inspect {path} shows them)",
                attaching.join(", "),
                if attaching.len() == 1 { "does" } else { "do" }
            )
            .into())
        }
        // Whether it is blank is not known, so those options cannot be honoured.
        Err(m) if !attaching.is_empty() => return Err(m.into()),
        // A restore, which says what is wrong with the image, or the kernel does.
        _ => {}
    }
    let backend = open()?;
    let progress = (args.preload && std::io::stderr().is_terminal())
        .then(|| crate::device::devt(path))
        .flatten()
        .and_then(|(major, minor)| Progress::preload(major, minor));
    let compress = (
        args.compress.map_or(0, |c| c.abi()),
        args.compress_level.unwrap_or(0),
    );
    let restored = crate::backing::restore(
        &backend,
        path,
        &crate::backing::RestoreOptions {
            force: args.force,
            preload: args.preload,
            id: args.id,
            compress,
            mem_limit: args.mem_limit.unwrap_or(0),
        },
    );
    drop(progress);
    let id = restored?;
    Ok((backend, id))
}

/// `create --backing` on a backing device without an image: a new device as big as it
/// allows, attached to it; only on a blank one.
fn create_blank<B: Backend>(
    args: &CreateArgs,
    path: &str,
    open: impl FnOnce() -> Result<B, Failure>,
) -> Result<(B, u32), Failure> {
    use crate::backing;
    if backing::holds_data(path)? {
        return Err(backing::not_blank(path, "create --backing").into());
    }
    let journal = args.journal.unwrap_or(0);
    let size = backing::size_on(path, backing::size_of(path)?, journal)?;
    let backend = open()?;
    let id = backing::create_on(
        &backend,
        path,
        size,
        &backing::NewBacked {
            id: args.id,
            mem_limit: args.mem_limit,
            compress: args.compress,
            compress_level: args.compress_level,
            mode: args.mode.unwrap_or(crate::cli::Mode::Writeback),
            journal,
            flush_interval: args.flush_interval.unwrap_or(0),
        },
    )?;
    Ok((backend, id))
}

/// Waits for the new device's node and prints its path.
fn finish_create<B: Backend>(
    backend: &B,
    id: u32,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let path = device_path(id);
    if !backend.wait_for_node(&path) {
        // The device exists; a script may still find the node a moment later.
        let _ = writeln!(
            err,
            "rxdskctl: {path}: warning: the device node did not appear within 2 seconds"
        );
    }
    writeln!(out, "{path}")?;
    Ok(())
}

fn destroy<B: Backend>(
    args: &DestroyArgs,
    open: impl FnOnce() -> Result<B, ControlError>,
) -> Result<(), Failure> {
    let backend = open()?;
    let flags = force_flags(args.force);
    let failures: Vec<String> = args
        .devices
        .iter()
        .filter_map(|&id| {
            backend.destroy(id, flags).err().map(|e| {
                let unflushed = e == Errno::EBUSY
                    && backend
                        .info(id)
                        .is_ok_and(|i| i.flags & abi::RXDSK_FLAG_BACKED != 0 && i.dirty_pages > 0);
                if unflushed {
                    format!(
                        "{}: {}: it holds data not yet flushed to its backing device \
                         (rxdskctl flush, or --force to lose it)",
                        device_path(id),
                        action::DESTROY
                    )
                } else {
                    ControlError::new(device_path(id), action::DESTROY, e).to_string()
                }
            })
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Messages(failures))
    }
}

fn resize<B: Backend>(
    args: &ResizeArgs,
    open: impl FnOnce() -> Result<B, ControlError>,
) -> Result<(), Failure> {
    crate::request::check_size(args.size, None)?;
    let backend = open()?;
    backend
        .resize(args.device, args.size, force_flags(args.force))
        .map_err(|e| ControlError::new(device_path(args.device), action::RESIZE, e))?;
    // Hosts of an exported device learn the new size (namespace revalidation).
    crate::export::revalidate(Path::new(crate::export::NVMET), args.device);
    Ok(())
}

/// `ENODEV` as the usual error unless device `id` exists.
fn known_device<B: Backend>(backend: &B, id: u32) -> Result<(), Failure> {
    backend
        .info(id)
        .map(|_| ())
        .map_err(|e| ControlError::new(device_path(id), action::INFO, e).into())
}

/// `export` into nvmet's tree at `root`.
fn export<B: Backend>(
    args: &crate::cli::ExportArgs,
    root: &Path,
    open: impl FnOnce() -> Result<B, ControlError>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let cannot =
        |m: String| Failure::from(format!("{}: cannot export: {m}", device_path(args.device)));
    // The secrets, address and port before anything else: a typo needs no module.
    let request = export_request(args, &mut io::stdin().lock()).map_err(cannot)?;
    crate::export::check(&request).map_err(cannot)?;
    let backend = open()?;
    known_device(&backend, args.device)?;
    let e = crate::export::export(root, &request).map_err(cannot)?;
    out.write_all(crate::export::render(&[e]).as_bytes())?;
    Ok(())
}

/// What `export` is asked for, its secrets read (`@FILE`, `-` from `stdin`) and checked.
fn export_request(
    args: &crate::cli::ExportArgs,
    stdin: &mut dyn io::Read,
) -> Result<crate::export::Request, String> {
    use crate::export::OPTIONS;
    let all = args.dhchap_secrets.iter().chain(&args.dhchap_ctrl_secrets);
    if all.filter(|s| *s == "-").count() > 1 {
        return Err("only one secret can come from standard input (-)".into());
    }
    let mut read = |specs: &[String], option: &str| {
        let mut secrets = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let secret = crate::dhchap::read_secret(spec, stdin).map_err(|e| {
                match args.allow_hosts.get(i) {
                    Some(h) => format!("{option} of {h}: {e}"),
                    None => format!("{option}: {e}"),
                }
            })?;
            secrets.push(secret);
        }
        Ok::<_, String>(secrets)
    };
    let secrets = read(&args.dhchap_secrets, OPTIONS.secret)?;
    let ctrl_secrets = read(&args.dhchap_ctrl_secrets, OPTIONS.ctrl_secret)?;
    let allow_hosts = crate::export::authenticate(
        &args.allow_hosts,
        secrets,
        ctrl_secrets,
        (args.dhchap_hash, args.dhchap_dhgroup),
        args.allow_any_host,
        &OPTIONS,
    )?;
    Ok(crate::export::Request {
        id: args.device,
        transport: args.transport,
        address: args.address.clone(),
        port: args.port,
        nqn: args.nqn.clone(),
        allow_hosts,
        allow_any_host: args.allow_any_host,
    })
}

fn list(
    args: &ListArgs,
    query: &dyn Query,
    kernel: &Kernel,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ids = match args.device {
        Some(id) => vec![id],
        None => query.ids()?,
    };
    let mut infos: Vec<Row> = Vec::with_capacity(ids.len());
    for id in ids {
        match query.row(id)? {
            Some(row) => infos.push(row),
            // Destroyed since it was listed: it is simply no longer there.
            None if args.device.is_none() => {}
            None => {
                return Err(ControlError::new(device_path(id), action::INFO, Errno::ENODEV).into())
            }
        }
    }
    let exports = crate::export::exports(Path::new(crate::export::NVMET));
    for row in &mut infos {
        let path = device_path(row.info.id);
        row.export = exports
            .iter()
            .find(|e| e.device == path)
            .map(|e| e.nqn.clone());
        row.backing = crate::list::backing_node(kernel.sysfs.root(), &row.info);
        row.cache = query.cache(row.info.id);
    }
    // JSON is for programs: without -o it carries every column (id included), so scripts
    // never depend on the human default.
    let columns: &[Column] = match (&args.output, args.output_all || args.json) {
        (Some(columns), _) => &columns.0,
        (None, true) => &Column::ALL,
        (None, false) => &Column::DEFAULT,
    };
    let style = Style {
        bytes: args.bytes,
        no_headings: args.noheadings,
    };
    let text = if args.json {
        render_json(&infos, columns)
    } else if args.raw {
        render_raw(&infos, columns, style)
    } else {
        render_table(&infos, columns, style)
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn stats(args: &StatsArgs, query: &dyn Query, out: &mut dyn Write) -> Result<(), Failure> {
    let (stats, compr) = query.stats(args.device)?;
    let cache = query.cache(args.device);
    let text = if args.json {
        render_stats_json(args.device, &stats, compr.as_ref(), cache.as_ref())
    } else {
        render_stats_text(&stats, compr.as_ref(), cache.as_ref(), args.bytes)
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn version<'a>(
    json: bool,
    query: impl FnOnce() -> Result<Box<dyn Query + 'a>, Failure>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let cli_version = env!("CARGO_PKG_VERSION");
    let abi = format!("{}.{}", abi::RXDSK_ABI_MAJOR, abi::RXDSK_ABI_MINOR);
    // Printed before asking the module, so that it shows even without it.
    if !json {
        writeln!(out, "rxdskctl {cli_version} (ABI {abi})")?;
    }
    let query = query()?;
    let m = query.version()?;
    if json {
        let doc = serde_json::json!({
            "rxdskctl": { "version": cli_version, "abi-major": abi::RXDSK_ABI_MAJOR,
                          "abi-minor": abi::RXDSK_ABI_MINOR },
            "module": { "version": m.version, "abi-major": m.abi_major,
                        "abi-minor": m.abi_minor, "features": m.features },
        });
        writeln!(out, "{doc:#}")?;
    } else {
        writeln!(
            out,
            "rxdsk module {} (ABI {}.{}, features {:#x})",
            m.version, m.abi_major, m.abi_minor, m.features
        )?;
    }
    if m.abi_major != abi::RXDSK_ABI_MAJOR {
        return Err(format!(
            "{}: incompatible module ABI {}.{} (rxdskctl speaks {abi})",
            query.subject(),
            m.abi_major,
            m.abi_minor
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
