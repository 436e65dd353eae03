//! Backing devices: attach, flush, detach, restore (`create --backing`), a new device on a
//! blank one (`create --backing` too) and `inspect`, which reads an image's metadata without
//! the module.

use crate::backend::Backend;
use crate::cli::{Compression, Mode};
use crate::control::{abi_path, action, ControlError};
use crate::device::device_path;
use crate::request::NewDevice;
use crate::size::format_size;
use nix::errno::Errno;
use rxdsk_ioctl::{
    header_offset, image_fits, journal_table_blocks, ImageError, RxdskAttach, RxdskImageHeader,
    RxdskRestore, JOURNAL_ENTRIES_PER_BLOCK, RXDSK_CREATE_WITH_ID, RXDSK_FEATURE_WRITEAROUND,
    RXDSK_FLAG_BACKED, RXDSK_FLAG_DISCARD_DIRTY, RXDSK_FLAG_FORCE, RXDSK_FLUSH_ATOMIC,
    RXDSK_IMAGE_CLEAN, RXDSK_IMAGE_FLUSHING, RXDSK_IMAGE_JOURNALED, RXDSK_IMAGE_META_SIZE,
    RXDSK_MAX_SIZE, RXDSK_RESTORE_PRELOAD,
};
use std::io::Write;
use std::os::unix::fs::{FileExt, FileTypeExt};

nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// Size in bytes of a block device or regular file.
fn device_bytes(file: &std::fs::File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        let mut size = 0u64;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
        unsafe { blkgetsize64(std::os::fd::AsRawFd::as_raw_fd(file), &mut size) }
            .map_err(std::io::Error::from)?;
        Ok(size)
    } else {
        Ok(meta.len())
    }
}

/// Size in bytes of the block device or file at `path`, with a message naming it on failure.
pub fn size_of(path: &str) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: cannot open: {e}"))?;
    device_bytes(&file).map_err(|e| format!("{path}: cannot read its size: {e}"))
}

/// The largest RAM device a backing device of `device_bytes` holds with a journal of
/// `journal_bytes`: the data area is all that is left before the journal and the metadata
/// block (at [`header_offset`]), rounded down to 4 KiB, so that either block size divides it
/// and the journal starts right after it; at most [`RXDSK_MAX_SIZE`]. `None` if nothing is
/// left.
pub fn largest_size(device_bytes: u64, journal_bytes: u64) -> Option<u64> {
    let data_end = header_offset(device_bytes)?.checked_sub(journal_bytes)?;
    let size = (data_end & !(RXDSK_IMAGE_META_SIZE - 1)).min(RXDSK_MAX_SIZE);
    (size > 0 && image_fits(size, journal_bytes, device_bytes)).then_some(size)
}

/// The size of a new device on the blank backing device `path` of `device_bytes` with a
/// journal of `journal_bytes` ([`largest_size`]), or why there is none.
pub fn size_on(path: &str, device_bytes: u64, journal_bytes: u64) -> Result<u64, String> {
    largest_size(device_bytes, journal_bytes).ok_or_else(|| {
        let journal = if journal_bytes == 0 {
            String::new()
        } else {
            format!(" and a journal of {}", format_size(journal_bytes))
        };
        format!(
            "{path}: too small for a device{journal}: it has {device_bytes} bytes, and the \
             metadata block takes the last 4 KiB"
        )
    })
}

/// Why the blank device `path` is not initialised: it holds something else.
pub fn not_blank(path: &str, what: &str) -> String {
    format!(
        "{path} holds data but no rxdsk image (a filesystem? an image from before it was \
         resized?); {what} initialises only a blank device: wipe it first (blkdiscard, wipefs) \
         or attach it by hand (rxdskctl attach)"
    )
}

/// A 4 KiB block aligned for O_DIRECT.
#[repr(C, align(4096))]
struct Block([u8; 4096]);

/// Why an image header could not be read.
enum ReadError {
    /// The device is readable but holds no image (or is too small for one).
    NoImage(String),
    Other(String),
}

/// Reads and checks the image header of `path`, with a message naming it on failure. A block
/// device is read with O_DIRECT: the module writes the image past the page cache, which may
/// still hold an older header.
pub fn read_image(path: &str) -> Result<RxdskImageHeader, String> {
    read_header(path).map_err(|e| match e {
        ReadError::NoImage(m) | ReadError::Other(m) => m,
    })
}

/// Like [`read_image`], but a device that holds no image is `Ok(None)`, not an error.
pub fn probe_image(path: &str) -> Result<Option<RxdskImageHeader>, String> {
    match read_header(path) {
        Ok(h) => Ok(Some(h)),
        Err(ReadError::NoImage(_)) => Ok(None),
        Err(ReadError::Other(m)) => Err(m),
    }
}

/// How much of each end of a device [`holds_data`] reads: where partition tables, filesystem
/// superblocks and signatures (and an rxdsk image's metadata) live.
const SIGNATURE_SPAN: u64 = 1 << 20;

/// Whether a device that holds no rxdsk image holds anything else: a non-zero byte in its
/// first or last MiB (a filesystem, a partition table, an image from before the device was
/// grown). Only a blank device is initialised unattended.
pub fn holds_data(path: &str) -> Result<bool, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: cannot open: {e}"))?;
    let bytes = device_bytes(&file).map_err(|e| format!("{path}: cannot read its size: {e}"))?;
    let span = SIGNATURE_SPAN.min(bytes);
    let mut buf = vec![0u8; span as usize];
    for at in [0, bytes - span] {
        file.read_exact_at(&mut buf, at)
            .map_err(|e| format!("{path}: cannot read at {at}: {e}"))?;
        if buf.iter().any(|&b| b != 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn read_header(path: &str) -> Result<RxdskImageHeader, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let other = ReadError::Other;
    let file = std::fs::File::open(path).map_err(|e| other(format!("{path}: cannot open: {e}")))?;
    let bytes =
        device_bytes(&file).map_err(|e| other(format!("{path}: cannot read its size: {e}")))?;
    let offset = header_offset(bytes).ok_or_else(|| {
        ReadError::NoImage(format!(
            "{path}: too small to hold an rxdsk image ({bytes} bytes)"
        ))
    })?;
    let is_block = file
        .metadata()
        .is_ok_and(|m| m.file_type().is_block_device());
    let file = if is_block {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
            .map_err(|e| other(format!("{path}: cannot open: {e}")))?
    } else {
        file
    };
    let mut block = Box::new(Block([0u8; 4096]));
    file.read_exact_at(&mut block.0, offset)
        .map_err(|e| other(format!("{path}: cannot read the metadata block: {e}")))?;
    let block = &block.0[..136];
    RxdskImageHeader::parse(block).map_err(|e| match e {
        ImageError::NotAnImage => ReadError::NoImage(format!(
            "{path}: no rxdsk image (no metadata block at {offset})"
        )),
        ImageError::Version(v) => other(format!(
            "{path}: image format version {v}, this rxdskctl reads version 1"
        )),
        ImageError::Checksum => other(format!(
            "{path}: the image's metadata block is damaged (checksum)"
        )),
        ImageError::Invalid => other(format!("{path}: the image's metadata block is invalid")),
    })
}

/// Pages a journal of `journal_bytes` holds in one atomic flush.
pub fn journal_capacity_pages(journal_bytes: u64) -> u64 {
    let blocks = journal_bytes / RXDSK_IMAGE_META_SIZE;
    // n + ceil(n / entries per block) <= blocks
    let mut n = blocks * JOURNAL_ENTRIES_PER_BLOCK / (JOURNAL_ENTRIES_PER_BLOCK + 1);
    while n + journal_table_blocks(n + 1) < blocks {
        n += 1;
    }
    n
}

/// `inspect`: the image metadata as text or JSON.
pub fn render_inspect(path: &str, h: &RxdskImageHeader, json: bool) -> String {
    let clean = h.state == RXDSK_IMAGE_CLEAN;
    let state_word = match h.state {
        RXDSK_IMAGE_CLEAN => "clean",
        RXDSK_IMAGE_FLUSHING => "flushing",
        RXDSK_IMAGE_JOURNALED => "journaled",
        _ => "unknown",
    };
    let mode = Mode::of_image(h.mode).name();
    if json {
        let v = serde_json::json!({
            "backing": path,
            "format-version": h.version,
            "size": h.size_bytes,
            "block-size": h.logical_block_size,
            "generation": h.generation,
            "state": state_word,
            "flushing-generation": (!clean).then_some(h.flushing_generation),
            "last-flush-ns": (h.flush_time_ns != 0).then_some(h.flush_time_ns),
            "mode": mode,
            "journal": h.journal_bytes,
            "journal-pages": journal_capacity_pages(h.journal_bytes),
            "journal-entries": (h.state == RXDSK_IMAGE_JOURNALED).then_some(h.journal_entries),
            "flush-interval": (h.flush_interval_secs != 0).then_some(h.flush_interval_secs),
        });
        format!("{v:#}\n")
    } else {
        let state = if clean {
            "clean".to_string()
        } else if h.state == RXDSK_IMAGE_JOURNALED {
            format!(
                "generation {} committed in the journal ({} pages), replayed by the next restore",
                h.flushing_generation, h.journal_entries
            )
        } else if h.generation == 0 {
            "never flushed (attached, no flush completed)".to_string()
        } else {
            format!("interrupted flush of generation {}", h.flushing_generation)
        };
        let interval = if h.flush_interval_secs == 0 {
            "none (flushes on request)".to_string()
        } else {
            format!("{} s", h.flush_interval_secs)
        };
        let journal = if h.journal_bytes == 0 {
            "none (flushes are not atomic)".to_string()
        } else {
            format!(
                "{} (atomic flushes of up to {} changed pages)",
                format_size(h.journal_bytes),
                journal_capacity_pages(h.journal_bytes)
            )
        };
        let last = if h.flush_time_ns == 0 {
            "never".to_string()
        } else {
            crate::date::utc(h.flush_time_ns)
        };
        format!(
            "backing:        {path}\nformat version: {}\nsize:           {} ({} bytes)\n\
             block size:     {}\ngeneration:     {}\nstate:          {state}\nlast flush:     {last}\n\
             mode:           {mode}\njournal:        {journal}\nflush interval: {interval}\n",
            h.version,
            format_size(h.size_bytes),
            h.size_bytes,
            h.logical_block_size,
            h.generation
        )
    }
}

/// How `create --backing` restores a device.
pub struct RestoreOptions {
    /// Restore an image whose last flush did not complete.
    pub force: bool,
    pub preload: bool,
    pub id: Option<u32>,
    /// `RXDSK_COMPRESS_*` and level, as CREATE.
    pub compress: (u32, i32),
    /// 0: none; else the cache size.
    pub mem_limit: u64,
}

/// `create --backing`: restores a device from the image on `path`; returns its id.
pub fn restore<B: Backend>(
    backend: &B,
    path: &str,
    options: &RestoreOptions,
) -> Result<u32, String> {
    let RestoreOptions {
        force,
        preload,
        id,
        compress,
        mem_limit,
    } = *options;
    // Read here too, to name what is wrong better than an errno can.
    if let Ok(h) = read_image(path) {
        if Mode::of_image(h.mode) == Mode::Writearound {
            let why =
                |m: &str| format!("{path}: cannot restore: its image is in writearound mode, {m}");
            if !supports_writearound(backend)? {
                return Err(why(MODULE_LACKS_WRITEAROUND));
            }
            if mem_limit == 0 {
                return Err(why(
                    "which needs a memory limit (the cache size): give --mem-limit",
                ));
            }
        }
        if h.state == RXDSK_IMAGE_FLUSHING && !force {
            return Err(if h.generation == 0 {
                format!("{path}: cannot restore: the image was never completely flushed")
            } else {
                format!(
                    "{path}: cannot restore: the flush of generation {} did not complete \
                     (generation {} may be partly overwritten); --force restores it anyway",
                    h.flushing_generation, h.generation
                )
            });
        }
    }
    let mut flags = if force { RXDSK_FLAG_FORCE } else { 0 };
    if id.is_some() {
        flags |= RXDSK_CREATE_WITH_ID;
    }
    if preload {
        flags |= RXDSK_RESTORE_PRELOAD;
    }
    let request = RxdskRestore {
        id: id.unwrap_or(0),
        flags,
        path: abi_path(path)?,
        compress: compress.0,
        compress_level: compress.1,
        mem_limit_bytes: mem_limit,
        ..Default::default()
    };
    backend
        .restore(&request)
        .map(|r| r.id)
        .map_err(|errno| ControlError::new(path, action::RESTORE, errno).to_string())
}

/// How `create --backing` sets up a new device on a blank backing device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewBacked {
    pub id: Option<u32>,
    pub mem_limit: Option<u64>,
    pub compress: Option<Compression>,
    pub compress_level: Option<i32>,
    pub mode: Mode,
    pub journal: u64,
    pub flush_interval: u32,
}

/// `create --backing` on a blank backing device: creates a device of `size` (what
/// [`largest_size`] gives), attaches `path` to it and returns its id. A device whose attach
/// fails is destroyed again: either both steps are done or neither. What the kernel would
/// refuse with a bare `EINVAL` (a journal size, writearound without a memory limit or from a
/// module without it) is named before the device is created.
pub fn create_on<B: Backend>(
    backend: &B,
    path: &str,
    size: u64,
    options: &NewBacked,
) -> Result<u32, String> {
    check_journal(options.journal)?;
    let mode = options.mode;
    if mode == Mode::Writearound {
        let why = |m: &str| format!("{path}: cannot attach in writearound mode: {m}");
        if options.mem_limit.unwrap_or(0) == 0 {
            return Err(why(
                "it needs a memory limit (the cache size): give --mem-limit",
            ));
        }
        if !supports_writearound(backend)? {
            return Err(why(
                "the loaded rxdsk module does not support it (ABI 1.7 or later is needed)",
            ));
        }
    }
    let request = NewDevice {
        size,
        block_size: 4096,
        mem_limit: options.mem_limit,
        read_only: false,
        id: options.id,
        compress: options.compress,
        compress_level: options.compress_level,
    }
    .request()?;
    let mut attach = attach_request(path, options.journal, mode, options.flush_interval)?;
    let id = backend.create(&request).map_err(|errno| {
        ControlError {
            subject: options.id.map(device_path),
            action: action::CREATE,
            errno,
        }
        .to_string()
    })?;
    attach.id = id;
    let Err(errno) = backend.attach(&attach) else {
        return Ok(id);
    };
    let failed = ControlError::new(device_path(id), action::ATTACH, errno).to_string();
    // Nothing was written to it, and nobody but udev has seen it yet.
    match backend.destroy(id, RXDSK_FLAG_FORCE) {
        Ok(()) => Err(format!("{failed} (the device was destroyed again)")),
        Err(e) => Err(format!(
            "{failed}; and then {} (rxdskctl destroy --force {} removes it)",
            ControlError::new(device_path(id), action::DESTROY, e),
            device_path(id)
        )),
    }
}

/// What a module without writearound is told.
const MODULE_LACKS_WRITEAROUND: &str =
    "which the loaded rxdsk module does not support (ABI 1.7 or later is needed)";

/// Whether the module attaches in writearound mode (`RXDSK_FEATURE_WRITEAROUND`). A module
/// without GET_FEATURES (`ENOTTY`) predates it.
fn supports_writearound<B: Backend>(backend: &B) -> Result<bool, String> {
    match backend.features() {
        Ok(features) => Ok(features & RXDSK_FEATURE_WRITEAROUND != 0),
        Err(Errno::ENOTTY) => Ok(false),
        Err(errno) => {
            Err(ControlError::new(backend.control_path(), action::FEATURES, errno).to_string())
        }
    }
}

/// What the kernel would refuse with a bare `EINVAL`, named: writearound from a module without
/// it, or on a device without a memory limit (writearound keeps only what is read in RAM, in
/// a cache of that size).
fn check_writearound<B: Backend>(backend: &B, id: u32) -> Result<(), String> {
    let why = |m: &str| {
        format!(
            "{}: cannot attach in writearound mode: {m}",
            device_path(id)
        )
    };
    if !supports_writearound(backend)? {
        return Err(why(
            "the loaded rxdsk module does not support it (ABI 1.7 or later is needed)",
        ));
    }
    let info = backend.info(id).map_err(|errno| {
        let what = if errno == Errno::ENODEV {
            action::ATTACH
        } else {
            action::INFO
        };
        ControlError::new(device_path(id), what, errno).to_string()
    })?;
    if info.mem_limit_bytes == 0 {
        return Err(why("the device has no memory limit (its cache size)"));
    }
    Ok(())
}

pub fn attach<B: Backend>(
    backend: &B,
    id: u32,
    path: &str,
    journal_bytes: u64,
    mode: Mode,
    flush_interval_secs: u32,
) -> Result<(), String> {
    check_journal(journal_bytes)?;
    if mode == Mode::Writearound {
        check_writearound(backend, id)?;
    }
    let request = RxdskAttach {
        id,
        ..attach_request(path, journal_bytes, mode, flush_interval_secs)?
    };
    backend
        .attach(&request)
        .map_err(|errno| ControlError::new(device_path(id), action::ATTACH, errno).to_string())
}

/// ATTACH's request but its device id.
fn attach_request(
    path: &str,
    journal_bytes: u64,
    mode: Mode,
    flush_interval_secs: u32,
) -> Result<RxdskAttach, String> {
    Ok(RxdskAttach {
        flags: mode.attach_flags(),
        path: abi_path(path)?,
        journal_bytes,
        flush_interval_secs,
        ..Default::default()
    })
}

/// A journal is a whole number of 4 KiB blocks.
fn check_journal(journal_bytes: u64) -> Result<(), String> {
    if journal_bytes.checked_rem(RXDSK_IMAGE_META_SIZE) == Some(0) {
        Ok(())
    } else {
        Err(format!(
            "invalid journal size: {journal_bytes} bytes is not a multiple of 4 KiB"
        ))
    }
}

pub fn detach<B: Backend>(backend: &B, id: u32, discard_dirty: bool) -> Result<(), String> {
    let flags = if discard_dirty {
        RXDSK_FLAG_DISCARD_DIRTY
    } else {
        0
    };
    backend
        .detach(id, flags)
        .map_err(|errno| ControlError::new(device_path(id), action::DETACH, errno).to_string())
}

/// `flush`: each device in turn, one summary line each (or a JSON array). Returns the error
/// messages of the devices that failed. With `all` or `if_backed` (the shutdown flush), a
/// device that does not exist or has no backing device is skipped; any other error (LIST,
/// INFO, FLUSH) is a failure, and the other devices are still flushed.
/// `progress(Some(id))` is called before each device's flush, `progress(None)` after it.
pub fn flush<B: Backend>(
    backend: &B,
    devices: &[u32],
    all: bool,
    if_backed: bool,
    json: bool,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Option<u32>),
) -> Result<Vec<String>, std::io::Error> {
    let skip_unbacked = all || if_backed;
    let mut failures = Vec::new();
    let candidates = if all {
        backend.list().unwrap_or_else(|e| {
            failures.push(ControlError::new(backend.control_path(), action::LIST, e).to_string());
            Vec::new()
        })
    } else {
        devices.to_vec()
    };
    let mut ids = Vec::new();
    for id in candidates {
        if !skip_unbacked {
            ids.push(id);
            continue;
        }
        match backend.info(id) {
            Ok(i) if i.flags & RXDSK_FLAG_BACKED != 0 => ids.push(id),
            Ok(_) | Err(Errno::ENODEV) => {}
            Err(e) => {
                failures.push(ControlError::new(device_path(id), action::INFO, e).to_string())
            }
        }
    }
    let mut rows = Vec::new();
    for id in ids {
        let start = std::time::Instant::now();
        progress(Some(id));
        let result = backend.flush(id);
        progress(None);
        match result {
            Ok(f) => {
                let secs = start.elapsed().as_secs_f64();
                if json {
                    rows.push(serde_json::json!({
                        "name": device_path(id),
                        "pages": f.pages_written,
                        "bytes": f.bytes_written,
                        "generation": f.generation,
                        "atomic": f.flags & RXDSK_FLUSH_ATOMIC != 0,
                        "seconds": secs,
                    }));
                } else {
                    writeln!(
                        out,
                        "{}: flushed {} pages ({} written) in {secs:.2} s, generation {}{}",
                        device_path(id),
                        f.pages_written,
                        format_size(f.bytes_written),
                        f.generation,
                        if f.flags & RXDSK_FLUSH_ATOMIC != 0 {
                            " (atomic)"
                        } else {
                            ""
                        }
                    )?;
                }
            }
            // Detached or destroyed since INFO.
            Err(Errno::ENXIO | Errno::ENODEV) if skip_unbacked => {}
            Err(errno) => {
                failures.push(ControlError::new(device_path(id), action::FLUSH, errno).to_string())
            }
        }
    }
    if json {
        write_flushed_json(out, rows)?;
    }
    Ok(failures)
}

/// `flush -J`: `{"flushed": [...]}`.
pub fn write_flushed_json(
    out: &mut dyn Write,
    rows: Vec<serde_json::Value>,
) -> Result<(), std::io::Error> {
    writeln!(out, "{:#}", serde_json::json!({ "flushed": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest device a backing device holds: data, journal and metadata block fit, and
    /// 4 KiB more would not.
    #[test]
    fn the_largest_device_a_backing_device_holds() {
        const K4: u64 = 4096;
        const M: u64 = 1 << 20;
        const G: u64 = 1 << 30;
        // Less than one block, or one: no room for data besides the metadata block.
        for bytes in [0, 1, K4 - 1, K4, 2 * K4 - 1] {
            assert_eq!(largest_size(bytes, 0), None, "{bytes}");
        }
        assert_eq!(largest_size(2 * K4, 0), Some(K4));
        assert_eq!(largest_size(2 * K4, K4), None);
        assert_eq!(largest_size(3 * K4 - 1, 0), Some(K4));
        // The journal and the metadata block come off; a partial last block is not used.
        assert_eq!(largest_size(G, 0), Some(G - K4));
        assert_eq!(largest_size(G, 16 * M), Some(G - 16 * M - K4));
        assert_eq!(largest_size(G + 1000, 256 * M), Some(G - 256 * M - K4));
        assert_eq!(largest_size(G, G), None);
        assert_eq!(largest_size(G, u64::MAX), None);
        // At most the largest device there is.
        assert_eq!(largest_size(u64::MAX, 0), Some(RXDSK_MAX_SIZE));
        assert_eq!(
            largest_size(RXDSK_MAX_SIZE + 2 * K4, 0),
            Some(RXDSK_MAX_SIZE)
        );
        for bytes in (0..64 * K4).step_by(999) {
            for journal in [0, K4, 3 * K4, 1000] {
                match largest_size(bytes, journal) {
                    Some(size) => {
                        assert_eq!(size % K4, 0, "{bytes} {journal}");
                        assert!(image_fits(size, journal, bytes), "{bytes} {journal}");
                        assert!(!image_fits(size + K4, journal, bytes), "{bytes} {journal}");
                    }
                    None => assert!(!image_fits(K4, journal, bytes), "{bytes} {journal}"),
                }
            }
        }
        assert_eq!(size_on("/dev/sdb1", G, 16 * M), Ok(G - 16 * M - K4));
        assert_eq!(
            size_on("/dev/sdb1", 2 * K4, K4),
            Err(
                "/dev/sdb1: too small for a device and a journal of 4K: it has 8192 bytes, and \
                 the metadata block takes the last 4 KiB"
                    .into()
            )
        );
        assert_eq!(
            size_on("/dev/sdb1", K4, 0),
            Err(
                "/dev/sdb1: too small for a device: it has 4096 bytes, and the metadata block \
                 takes the last 4 KiB"
                    .into()
            )
        );
    }

    #[test]
    fn only_a_device_blank_at_both_ends_holds_no_data() {
        let dir = crate::testutil::Scratch::new("holds-data");
        let path = dir.0.join("disk.img");
        let p = path.display().to_string();
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(8 << 20).unwrap();
        assert_eq!(holds_data(&p), Ok(false));
        // A byte in the middle is beyond what is read (no signature lives there).
        f.write_all_at(&[1], 4 << 20).unwrap();
        assert_eq!(holds_data(&p), Ok(false));
        f.write_all_at(&[0x53, 0xef], 1024 + 56).unwrap(); // ext2's magic
        assert_eq!(holds_data(&p), Ok(true));
        f.write_all_at(&[0, 0], 1024 + 56).unwrap();
        f.write_all_at(&[7], (8 << 20) - 1).unwrap();
        assert_eq!(holds_data(&p), Ok(true));
        // Smaller than the span read at each end.
        f.set_len(4096).unwrap();
        assert_eq!(holds_data(&p), Ok(false));
        assert!(holds_data(&format!("{p}.missing")).is_err());
    }

    #[test]
    fn inspect_reads_an_image_file() {
        let dir = std::env::temp_dir().join(format!("rxdskctl-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("img");
        let p = path.to_string_lossy().into_owned();
        let (h, mut data) = crate::testutil::write_image(&p, 1 << 20, 3);
        let at = header_offset(data.len() as u64).unwrap_or_default() as usize;
        assert_eq!(read_image(&p), Ok(h));
        let text = render_inspect(&p, &h, false);
        assert!(
            text.contains("generation:     3") && text.contains("state:          clean"),
            "{text}"
        );
        assert!(text.contains("2026-12-04 12:44:38 UTC"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&render_inspect(&p, &h, true)).unwrap_or_default();
        assert_eq!(v["generation"], 3);
        assert_eq!(v["state"], "clean");
        assert_eq!(v["size"], 1 << 20);
        // Damage the block: named as such.
        data[at + 20] ^= 1;
        std::fs::write(&path, &data).unwrap_or_default();
        assert!(read_image(&p).is_err_and(|e| e.contains("damaged")));
        std::fs::write(&path, vec![0u8; 100]).unwrap_or_default();
        assert!(read_image(&p).is_err_and(|e| e.contains("too small")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
