//! The module's read-only files in sysfs, which anyone may read (the ioctls need
//! CAP_SYS_ADMIN): for each device `/sys/block/rxdN/rxdsk/` (one value a file; `io_stat`,
//! `mm_stat`, `bd_stat` and `cache_stat` lines of numbers), and `/sys/module/rxdsk/version` and
//! `/sys/module/rxdsk/parameters/abi`. Each value is a field of INFO, STATS or COMPR_STATS.

use crate::control::{action, ControlError};
use crate::device::device_path;
use crate::list::Row;
use crate::query::{ModuleVersion, Query};
use nix::errno::Errno;
use rxdsk_ioctl::{
    RxdskComprStats, RxdskInfo, RxdskStats, RXDSK_COMPRESS_NAMES, RXDSK_DISK_PREFIX,
    RXDSK_FLAG_BACKED, RXDSK_FLAG_COMPRESSED, RXDSK_FLAG_READ_ONLY, RXDSK_FLAG_WRITEAROUND,
    RXDSK_FLAG_WRITETHROUGH,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where sysfs is, for tests (a scratch tree); `/sys` without it.
pub const ROOT_VARIABLE: &str = "RXDSK_SYSFS_ROOT";

/// The `rxdsk/` directory of each device, and the module's files, under a sysfs root.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

/// Why a file gave no value.
enum Miss {
    /// The device is gone (destroyed while we read).
    Gone,
    Error(String),
}

impl From<String> for Miss {
    fn from(message: String) -> Self {
        Miss::Error(message)
    }
}

/// The files of one directory, read for `action` (part of every message).
struct Files {
    dir: PathBuf,
    action: &'static str,
}

impl Files {
    /// A file's value: its text without the newline.
    fn text(&self, name: &str) -> Result<String, Miss> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(mut text) => {
                if text.ends_with('\n') {
                    text.pop();
                }
                Ok(text)
            }
            // A device destroyed under us: its directory goes first.
            Err(_) if !self.dir.is_dir() => Err(Miss::Gone),
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
                Err(Miss::Error(format!(
                    "{}: {}: {}",
                    path.display(),
                    self.action,
                    errno.desc()
                )))
            }
        }
    }

    fn garbled(&self, name: &str, what: &str, text: &str) -> Miss {
        Miss::Error(format!(
            "{}: {}: {what}: \"{}\"",
            self.dir.join(name).display(),
            self.action,
            text.escape_debug()
        ))
    }

    fn number<T: FromStr>(&self, name: &str) -> Result<T, Miss> {
        let text = self.text(name)?;
        text.parse()
            .map_err(|_| self.garbled(name, "not a number", &text))
    }

    /// The first `N` numbers of a line of numbers separated by single spaces (a later module
    /// may add more at the end).
    fn numbers<const N: usize>(&self, name: &str) -> Result<[u64; N], Miss> {
        let text = self.text(name)?;
        let values: Option<Vec<u64>> = text.split(' ').map(|v| v.parse().ok()).collect();
        values
            .and_then(|v| <[u64; N]>::try_from(v.get(..N)?).ok())
            .ok_or_else(|| self.garbled(name, &format!("not a line of {N} numbers or more"), &text))
    }

    fn flag(&self, name: &str) -> Result<bool, Miss> {
        match self.text(name)?.as_str() {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(self.garbled(name, "not 0 or 1", other)),
        }
    }

    /// `algorithm`, `level` and `mm_stat`: COMPR_STATS of a compressed device.
    fn compression(&self, id: u32) -> Result<Option<RxdskComprStats>, Miss> {
        let name = self.text("algorithm")?;
        let algorithm = RXDSK_COMPRESS_NAMES
            .iter()
            .position(|&n| n == name)
            .ok_or_else(|| self.garbled("algorithm", "unknown algorithm", &name))?;
        if algorithm == 0 {
            return Ok(None);
        }
        let level = self.number("level")?;
        let [_, orig, compr, total, max, same, huge, compress_failures, decompress_failures] =
            self.numbers("mm_stat")?;
        Ok(Some(RxdskComprStats {
            id,
            algorithm: algorithm as u32,
            level,
            orig_data_size: orig,
            compr_data_size: compr,
            mem_used_total: total,
            mem_used_max: max,
            same_pages: same,
            huge_pages: huge,
            compress_failures,
            decompress_failures,
            ..Default::default()
        }))
    }

    /// INFO of device `id`.
    fn info(&self, id: u32) -> Result<RxdskInfo, Miss> {
        let backing_flags = match self.text("mode")?.as_str() {
            "none" => 0,
            "writeback" => RXDSK_FLAG_BACKED,
            "writethrough" => RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH,
            // As INFO has it: with the writethrough flag, whose guarantee it keeps.
            "writearound" => RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH | RXDSK_FLAG_WRITEAROUND,
            other => {
                return Err(self.garbled(
                    "mode",
                    "not none, writeback, writethrough or writearound",
                    other,
                ))
            }
        };
        let backing = self.text("backing")?;
        let (backing_major, backing_minor) = match backing.as_str() {
            "" => (0, 0),
            devt => devt
                .split_once(':')
                .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
                .ok_or_else(|| self.garbled("backing", "not MAJOR:MINOR", devt))?,
        };
        let read_only = if self.flag("read_only")? {
            RXDSK_FLAG_READ_ONLY
        } else {
            0
        };
        let compressed = if self.text("algorithm")? == "none" {
            0
        } else {
            RXDSK_FLAG_COMPRESSED
        };
        Ok(RxdskInfo {
            id,
            logical_block_size: self.number("block_size")?,
            size_bytes: self.number("size")?,
            mem_limit_bytes: self.number("mem_limit")?,
            flags: read_only | compressed | backing_flags,
            used_bytes: self.number("mem_used")?,
            open_count: self.number("open_count")?,
            pad: 0,
            dirty_pages: self.number("dirty_pages")?,
            unloaded_pages: self.number("unloaded_pages")?,
            journal_bytes: self.number("journal_bytes")?,
            backing_major,
            backing_minor,
        })
    }

    /// STATS of device `id`.
    fn stats(&self, id: u32) -> Result<RxdskStats, Miss> {
        let [reads, writes, read_bytes, write_bytes, discards, discard_bytes, write_zeroes, write_zeroes_bytes, flushes, zero_pages, alloc_failures, limit_failures, io_errors] =
            self.numbers("io_stat")?;
        let [pages, ..] = self.numbers::<9>("mm_stat")?;
        let [backing_reads, written_back_bytes, backing_flushes, atomic_flushes, backing_errors] =
            self.numbers("bd_stat")?;
        Ok(RxdskStats {
            id,
            reads,
            writes,
            read_bytes,
            write_bytes,
            discards,
            discard_bytes,
            write_zeroes,
            write_zeroes_bytes,
            flushes,
            pages,
            zero_pages,
            alloc_failures,
            limit_failures,
            io_errors,
            dirty_pages: self.number("dirty_pages")?,
            written_back_bytes,
            backing_flushes,
            backing_errors,
            flush_generation: self.number("flush_generation")?,
            backing_reads,
            atomic_flushes,
            ..Default::default()
        })
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$RXDSK_SYSFS_ROOT`, else `/sys`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(ROOT_VARIABLE).map_or_else(|| PathBuf::from("/sys"), PathBuf::from),
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn module(&self) -> PathBuf {
        self.root.join("module/rxdsk")
    }

    /// Whether the loaded module has these files (`parameters/abi`): not a module from before
    /// them, nor no module at all.
    pub fn available(&self) -> bool {
        self.module().join("parameters/abi").is_file()
    }

    /// A device's cache counters, while its memory limit is a cache size.
    pub fn cache_stats(&self, id: u32) -> Option<crate::stats::CacheStats> {
        let line = std::fs::read_to_string(self.files(id, "stats").dir.join("cache_stat")).ok()?;
        crate::stats::CacheStats::parse(&line)
    }

    fn files(&self, id: u32, action: &'static str) -> Files {
        Files {
            dir: self
                .root
                .join("block")
                .join(crate::device::device_name(id))
                .join("rxdsk"),
            action,
        }
    }
}

/// `MAJOR.MINOR FEATURES`, the features in hex (`0x1ff`; `0` for none, as printf's `%#x`).
fn parse_abi(text: &str) -> Option<(u32, u32, u64)> {
    let (version, features) = text.split_once(' ')?;
    let (major, minor) = version.split_once('.')?;
    let features = match features {
        "0" => 0,
        hex => u64::from_str_radix(hex.strip_prefix("0x")?, 16).ok()?,
    };
    Some((major.parse().ok()?, minor.parse().ok()?, features))
}

impl Query for Sysfs {
    fn cache(&self, id: u32) -> Option<crate::stats::CacheStats> {
        self.cache_stats(id)
    }

    fn subject(&self) -> String {
        self.module().display().to_string()
    }

    fn ids(&self) -> Result<Vec<u32>, String> {
        let block = self.root.join("block");
        let entries = std::fs::read_dir(&block)
            .map_err(|e| format!("{}: {}: {e}", block.display(), action::LIST))?;
        let mut ids: Vec<u32> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                // Ours: rxdN with an rxdsk/ directory (another driver's disk may share the
                // prefix, never the directory).
                name.strip_prefix(RXDSK_DISK_PREFIX)?;
                let id = crate::device::parse_device(name).ok()?;
                entry.path().join("rxdsk").is_dir().then_some(id)
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn row(&self, id: u32) -> Result<Option<Row>, String> {
        let files = self.files(id, action::INFO);
        let row = files.info(id).and_then(|info| {
            Ok(Row {
                info,
                compr: files.compression(id)?,
                ..Row::default()
            })
        });
        match row {
            Ok(row) => Ok(Some(row)),
            Err(Miss::Gone) => Ok(None),
            Err(Miss::Error(m)) => Err(m),
        }
    }

    fn stats(&self, id: u32) -> Result<(RxdskStats, Option<RxdskComprStats>), String> {
        let files = self.files(id, action::STATS);
        let stats = files
            .stats(id)
            .and_then(|stats| Ok((stats, files.compression(id)?)));
        stats.map_err(|miss| match miss {
            Miss::Gone => {
                ControlError::new(device_path(id), action::STATS, Errno::ENODEV).to_string()
            }
            Miss::Error(m) => m,
        })
    }

    fn version(&self) -> Result<ModuleVersion, String> {
        let files = Files {
            dir: self.module(),
            action: action::VERSION,
        };
        let message = |miss| match miss {
            Miss::Gone => {
                ControlError::new(self.subject(), action::VERSION, Errno::ENOENT).to_string()
            }
            Miss::Error(m) => m,
        };
        let version = files.text("version").map_err(message)?;
        let abi = files.text("parameters/abi").map_err(message)?;
        let (abi_major, abi_minor, features) = parse_abi(&abi)
            .ok_or_else(|| files.garbled("parameters/abi", "not MAJOR.MINOR FEATURES", &abi))
            .map_err(message)?;
        Ok(ModuleVersion {
            version,
            abi_major,
            abi_minor,
            features,
        })
    }
}
