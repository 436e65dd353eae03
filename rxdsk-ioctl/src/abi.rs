// SPDX-License-Identifier: GPL-2.0 OR MIT

//! rxdsk ioctl ABI, version 1.
//!
//! Rules (see `Documentation/driver-api/ioctl.rst`): only fixed-width integers, natural alignment
//! with explicit padding, reserved tails that the kernel requires to be zero on input and zeroes
//! on output, sizes and alignments asserted at compile time, numbers encoded with the generic
//! `_IOC` layout. A field is never reinterpreted: new features take reserved space and announce
//! themselves through [`RXDSK_IOC_GET_FEATURES`].

#![allow(dead_code)]

/// ioctl type byte; free in `Documentation/userspace-api/ioctl/ioctl-number.rst`.
pub const RXDSK_IOC_MAGIC: u8 = 0xDB;

/// Incompatible ABI changes bump this; a client must refuse a module with another major.
pub const RXDSK_ABI_MAJOR: u32 = 1;
/// Compatible additions (new commands, new feature bits) bump this.
pub const RXDSK_ABI_MINOR: u32 = 7;

/// Name of the control node under `/dev`.
pub const RXDSK_CONTROL_NAME: &str = "rxdsk-control";
/// Prefix of the block device names (`rxd0`, `rxd1`, ...).
pub const RXDSK_DISK_PREFIX: &str = "rxd";

// Generic `_IOC` bit layout (x86, arm, arm64, riscv, s390, loongarch).
const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS));
    assert!(nr < (1 << IOC_NRBITS));
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((RXDSK_IOC_MAGIC as u32) << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
}
const fn ior<T>(nr: u32) -> u32 {
    ioc(IOC_READ, nr, core::mem::size_of::<T>())
}
const fn iow<T>(nr: u32) -> u32 {
    ioc(IOC_WRITE, nr, core::mem::size_of::<T>())
}
const fn iowr<T>(nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, nr, core::mem::size_of::<T>())
}

/// Command numbers (the `nr` part); the full numbers follow below.
pub mod nr {
    /// See [`super::RXDSK_IOC_GET_VERSION`].
    pub const GET_VERSION: u32 = 0x00;
    /// See [`super::RXDSK_IOC_GET_FEATURES`].
    pub const GET_FEATURES: u32 = 0x01;
    /// See [`super::RXDSK_IOC_CREATE`].
    pub const CREATE: u32 = 0x10;
    /// See [`super::RXDSK_IOC_DESTROY`].
    pub const DESTROY: u32 = 0x11;
    /// See [`super::RXDSK_IOC_RESIZE`].
    pub const RESIZE: u32 = 0x12;
    /// See [`super::RXDSK_IOC_INFO`].
    pub const INFO: u32 = 0x13;
    /// See [`super::RXDSK_IOC_LIST`].
    pub const LIST: u32 = 0x14;
    /// See [`super::RXDSK_IOC_STATS`].
    pub const STATS: u32 = 0x15;
    /// See [`super::RXDSK_IOC_ATTACH`].
    pub const ATTACH: u32 = 0x20;
    /// See [`super::RXDSK_IOC_DETACH`].
    pub const DETACH: u32 = 0x21;
    /// See [`super::RXDSK_IOC_FLUSH`].
    pub const FLUSH: u32 = 0x22;
    /// See [`super::RXDSK_IOC_RESTORE`].
    pub const RESTORE: u32 = 0x23;
    /// [`super::RXDSK_IOC_COMPR_STATS`] (ABI 1.4).
    pub const COMPR_STATS: u32 = 0x16;
}

/// The unit of memory a device allocates and frees.
pub const RXDSK_PAGE_SIZE: u64 = 4096;
/// Largest device: 1 PiB (devices are sparse; this bounds the sector arithmetic, not memory).
pub const RXDSK_MAX_SIZE: u64 = 1 << 50;
/// Device ids are below this.
pub const RXDSK_MAX_DEVICES: u32 = 1024;

/// Answer of [`RXDSK_IOC_GET_VERSION`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskVersion {
    /// [`RXDSK_ABI_MAJOR`] of the module.
    pub abi_major: u32,
    /// [`RXDSK_ABI_MINOR`] of the module.
    pub abi_minor: u32,
    /// The module's version string, NUL-padded.
    pub module_version: [u8; 32],
    /// Zero.
    pub reserved: [u64; 4],
}

/// Answer of [`RXDSK_IOC_GET_FEATURES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskFeatures {
    /// `RXDSK_FEATURE_*` bits the module supports.
    pub features: u64,
    /// `1 << RXDSK_COMPRESS_*` for each algorithm the module can use (ABI 1.4).
    pub compressors: u64,
    /// Zero.
    pub reserved: [u64; 2],
}

/// The module answers [`RXDSK_IOC_GET_VERSION`] and [`RXDSK_IOC_GET_FEATURES`].
pub const RXDSK_FEATURE_VERSION: u64 = 1 << 0;
/// CREATE, DESTROY, INFO, LIST and STATS.
pub const RXDSK_FEATURE_DEVICES: u64 = 1 << 1;
/// RESIZE, growing and (with no opener, or forced) shrinking.
pub const RXDSK_FEATURE_RESIZE: u64 = 1 << 2;
/// Discard and write-zeroes free the pages they cover.
pub const RXDSK_FEATURE_DISCARD: u64 = 1 << 3;
/// Per-device memory limit ([`RxdskCreate::mem_limit_bytes`]).
pub const RXDSK_FEATURE_MEM_LIMIT: u64 = 1 << 4;
/// Read-only devices ([`RXDSK_FLAG_READ_ONLY`]).
pub const RXDSK_FEATURE_READ_ONLY: u64 = 1 << 5;
/// CREATE with [`RXDSK_CREATE_WITH_ID`] (ABI 1.1).
pub const RXDSK_FEATURE_CREATE_ID: u64 = 1 << 6;
/// ATTACH, DETACH, FLUSH and RESTORE: a backing device holds a restorable image (ABI 1.2).
pub const RXDSK_FEATURE_BACKING: u64 = 1 << 7;
/// ATTACH takes a journal size, and FLUSH is atomic when the changes fit in it (ABI 1.3).
pub const RXDSK_FEATURE_JOURNAL: u64 = 1 << 8;
/// RESTORE reads pages from the backing device on first access, or up front with
/// [`RXDSK_RESTORE_PRELOAD`] (ABI 1.3).
pub const RXDSK_FEATURE_LAZY_RESTORE: u64 = 1 << 9;
/// ATTACH in writethrough mode ([`RXDSK_ATTACH_WRITETHROUGH`], ABI 1.3).
pub const RXDSK_FEATURE_WRITETHROUGH: u64 = 1 << 10;
/// CREATE takes a compression algorithm ([`RxdskCreate::compress`]) and COMPR_STATS reports
/// what compression achieves (ABI 1.4).
pub const RXDSK_FEATURE_COMPRESS: u64 = 1 << 11;
/// A flush writes the device as it was at one instant inside it (a point-in-time cut), also
/// while writers run; ATTACH refuses a backing device that is the device itself or leads
/// back to it through other rxdsk devices (`ELOOP`), and a flush interval above
/// [`RXDSK_MAX_FLUSH_INTERVAL`] (`EINVAL`); the module stays loaded while any backing device
/// is attached (ABI 1.5).
pub const RXDSK_FEATURE_POINT_IN_TIME: u64 = 1 << 12;
/// A backed device's memory limit is a cache size: at the limit, clean pages are evicted
/// (read back from the backing device on the next access) and dirty ones are made clean by a
/// flush first, so writes never fail with `ENOSPC`; RESTORE takes a memory limit
/// ([`RxdskRestore::mem_limit_bytes`]) (ABI 1.6).
pub const RXDSK_FEATURE_CACHE: u64 = 1 << 13;
/// ATTACH in writearound mode ([`RXDSK_ATTACH_WRITEAROUND`]): writes go to the backing device
/// and leave no copy in RAM; reads are cached (ABI 1.7).
pub const RXDSK_FEATURE_WRITEAROUND: u64 = 1 << 14;
/// Every feature bit this ABI revision defines.
pub const RXDSK_FEATURES_ALL: u64 = RXDSK_FEATURE_BACKING
    | RXDSK_FEATURE_CACHE
    | RXDSK_FEATURE_WRITEAROUND
    | RXDSK_FEATURE_COMPRESS
    | RXDSK_FEATURE_POINT_IN_TIME
    | RXDSK_FEATURE_JOURNAL
    | RXDSK_FEATURE_LAZY_RESTORE
    | RXDSK_FEATURE_WRITETHROUGH
    | RXDSK_FEATURE_VERSION
    | RXDSK_FEATURE_DEVICES
    | RXDSK_FEATURE_RESIZE
    | RXDSK_FEATURE_DISCARD
    | RXDSK_FEATURE_MEM_LIMIT
    | RXDSK_FEATURE_READ_ONLY
    | RXDSK_FEATURE_CREATE_ID;

/// The longest interval between automatic flushes ATTACH accepts: a week, in seconds.
pub const RXDSK_MAX_FLUSH_INTERVAL: u32 = 7 * 24 * 3600;

/// Device flag: the block device is read-only.
pub const RXDSK_FLAG_READ_ONLY: u64 = 1 << 0;
/// CREATE flag: create the device with the id given in [`RxdskCreate::id`] (`EEXIST` if it is
/// taken, `EINVAL` if it is not below [`RXDSK_MAX_DEVICES`]) instead of the lowest free one.
pub const RXDSK_CREATE_WITH_ID: u64 = 1 << 1;
/// Flags [`RXDSK_IOC_CREATE`] accepts.
pub const RXDSK_CREATE_FLAGS: u64 = RXDSK_FLAG_READ_ONLY | RXDSK_CREATE_WITH_ID;

/// DESTROY/RESIZE flag: act even while the device is open (DESTROY: and while it holds data
/// not yet flushed to its backing device). RESTORE flag: accept an image whose last flush was
/// interrupted.
pub const RXDSK_FLAG_FORCE: u64 = 1 << 0;
/// Device flag (INFO): a backing device is attached.
pub const RXDSK_FLAG_BACKED: u64 = 1 << 1;
/// DETACH flag: let go even though dirty data could not be written (it is lost).
pub const RXDSK_FLAG_DISCARD_DIRTY: u64 = 1 << 1;
/// Device flag (INFO): the backing device is attached in writethrough mode.
pub const RXDSK_FLAG_WRITETHROUGH: u64 = 1 << 2;
/// Device flag (INFO): pages are stored compressed (ABI 1.4; see [`RXDSK_IOC_COMPR_STATS`]).
pub const RXDSK_FLAG_COMPRESSED: u64 = 1 << 3;
/// Device flag (INFO): the backing device is attached in writearound mode (ABI 1.7; set with
/// [`RXDSK_FLAG_WRITETHROUGH`], whose guarantee it keeps).
pub const RXDSK_FLAG_WRITEAROUND: u64 = 1 << 4;
/// ATTACH flag: writethrough mode (a write completes once it is on the backing device too).
pub const RXDSK_ATTACH_WRITETHROUGH: u64 = 1 << 0;
/// ATTACH flag: writearound mode (ABI 1.7): as writethrough, and the pages a write changed
/// leave RAM once they are on the backing device (RAM caches what is read). Only for a device
/// with a memory limit (its cache), and not with [`RXDSK_ATTACH_WRITETHROUGH`] (`EINVAL`).
pub const RXDSK_ATTACH_WRITEAROUND: u64 = 1 << 1;
/// Flags [`RXDSK_IOC_ATTACH`] accepts.
pub const RXDSK_ATTACH_FLAGS: u64 = RXDSK_ATTACH_WRITETHROUGH | RXDSK_ATTACH_WRITEAROUND;
/// RESTORE flag: read every page in before returning (otherwise pages are read from the
/// backing device on first access).
pub const RXDSK_RESTORE_PRELOAD: u64 = 1 << 2;
/// FLUSH out flag: the flush was journaled, so it was atomic.
pub const RXDSK_FLUSH_ATOMIC: u64 = 1 << 0;
/// Compression algorithms ([`RxdskCreate::compress`]): none (pages stored as they are).
pub const RXDSK_COMPRESS_NONE: u32 = 0;
/// LZO1X-1, as zram's `lzo`.
pub const RXDSK_COMPRESS_LZO: u32 = 1;
/// LZO1X-1 with run-length encoding of zeros, as zram's `lzo-rle`.
pub const RXDSK_COMPRESS_LZO_RLE: u32 = 2;
/// LZ4 (level: acceleration, 1 by default).
pub const RXDSK_COMPRESS_LZ4: u32 = 3;
/// Zstandard (level: 1 to 22, 3 by default; negative levels are faster).
pub const RXDSK_COMPRESS_ZSTD: u32 = 4;
/// The algorithms' names, indexed by `RXDSK_COMPRESS_*` (zram's names).
pub const RXDSK_COMPRESS_NAMES: [&str; 5] = ["none", "lzo", "lzo-rle", "lz4", "zstd"];
/// Longest backing device path, NUL included.
pub const RXDSK_PATH_MAX: usize = 256;

/// [`RXDSK_IOC_CREATE`]: in: everything but `id` (unless [`RXDSK_CREATE_WITH_ID`]); out: `id`
/// (the device is `/dev/rxd<id>`).
///
/// `size_bytes` is a non-zero multiple of `logical_block_size` (512 or 4096) and at most
/// [`RXDSK_MAX_SIZE`] (on 32-bit kernels at most 16 TiB, what a page index can address);
/// `mem_limit_bytes` is 0 (no limit) or at least [`RXDSK_PAGE_SIZE`] and caps
/// [`RxdskInfo::used_bytes`] (rounded down to whole pages): a write that needs a new page past
/// it fails with `ENOSPC`, unless a backing device is attached: the limit is then a cache size
/// ([`RXDSK_FEATURE_CACHE`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskCreate {
    pub size_bytes: u64,
    pub mem_limit_bytes: u64,
    /// `RXDSK_FLAG_*` within [`RXDSK_CREATE_FLAGS`].
    pub flags: u64,
    pub logical_block_size: u32,
    /// Out: the id of the new device. In: zero, or with [`RXDSK_CREATE_WITH_ID`] the id wanted.
    pub id: u32,
    /// `RXDSK_COMPRESS_*` (ABI 1.4): pages are stored compressed (`EOPNOTSUPP` for an algorithm
    /// the module cannot use, `EINVAL` for an unknown one). With a backing device its image
    /// holds the pages' plain data.
    pub compress: u32,
    /// The algorithm's level; 0: its default. Must be 0 without compression and for LZO
    /// (which has no levels). `EINVAL` outside the algorithm's range.
    pub compress_level: i32,
    /// Must be zero.
    pub reserved: [u64; 3],
}

/// [`RXDSK_IOC_DESTROY`]: frees the device and all its memory. `EBUSY` while it is open unless
/// `flags` has [`RXDSK_FLAG_FORCE`] (then its openers get I/O errors). Without force, an open
/// racing with the destroy either wins (then the destroy fails with `EBUSY` and nothing
/// changes) or fails with `EBUSY` itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskDestroy {
    pub id: u32,
    /// Must be zero.
    pub pad: u32,
    pub flags: u64,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// [`RXDSK_IOC_RESIZE`]: grows at any time; shrinking frees the pages past the new end and is
/// refused with `EBUSY` while the device is open unless `flags` has [`RXDSK_FLAG_FORCE`] (opens
/// racing with a non-forced shrink fail with `EBUSY` until it is done). Bytes past the new end
/// read as zeros if the device grows again, through the page cache too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskResize {
    pub id: u32,
    /// Must be zero.
    pub pad: u32,
    /// New size: a non-zero multiple of the logical block size, at most [`RXDSK_MAX_SIZE`].
    pub size_bytes: u64,
    pub flags: u64,
    /// Must be zero.
    pub reserved: [u64; 3],
}

/// [`RXDSK_IOC_INFO`]: in: `id`, all else zero; out: the device's configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskInfo {
    pub id: u32,
    pub logical_block_size: u32,
    pub size_bytes: u64,
    /// 0: no limit.
    pub mem_limit_bytes: u64,
    /// `RXDSK_FLAG_*`.
    pub flags: u64,
    /// Memory the device holds now, in bytes: its data pages, including pages already
    /// discarded that the kernel has not yet taken back (they are freed after an RCU grace
    /// period). The same figure [`RxdskCreate::mem_limit_bytes`] limits. Not included: the
    /// XArray's index nodes (576 bytes per 64 pages of dense data, about 0.2 %; up to one
    /// node per page for scattered single pages) and the device's fixed structures.
    pub used_bytes: u64,
    /// How many times the block device is open.
    pub open_count: u32,
    pub pad: u32,
    /// Pages (and discarded pages) changed since the last flush to the backing device.
    pub dirty_pages: u64,
    /// Pages of a lazily restored device not yet read from its backing device.
    pub unloaded_pages: u64,
    /// The backing device's journal, bytes (0: none).
    pub journal_bytes: u64,
    /// The backing device's device number (`/sys/dev/block/MAJOR:MINOR`); 0:0 without one.
    pub backing_major: u32,
    pub backing_minor: u32,
}

/// [`RXDSK_IOC_LIST`]: the kernel writes up to `capacity` device ids (u32, ascending) to the
/// user array at `ids_ptr` and sets `count` to the number of devices; if `count > capacity`
/// the caller retries with a larger array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskList {
    /// User address of a `u32` array (0 is allowed with `capacity` 0).
    pub ids_ptr: u64,
    pub capacity: u32,
    /// Out. Must be zero on input.
    pub count: u32,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// [`RXDSK_IOC_STATS`]: in: `id`, all else zero; out: counters since creation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskStats {
    pub id: u32,
    pub pad: u32,
    /// Completed read bios.
    pub reads: u64,
    /// Completed write bios.
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Discard bios, and the bytes they covered.
    pub discards: u64,
    pub discard_bytes: u64,
    /// Write-zeroes bios, and the bytes they covered.
    pub write_zeroes: u64,
    pub write_zeroes_bytes: u64,
    /// Flush requests (empty flushes and writes with PREFLUSH/FUA) that reached the device.
    /// The block layer sends them only to a device that advertises a volatile write cache; a
    /// plain RAM device does not (its writes are complete when they return), so for it the
    /// block layer completes flushes itself and this stays 0.
    pub flushes: u64,
    /// Pages held now ([`RxdskInfo::used_bytes`] in pages).
    pub pages: u64,
    /// Whole-page writes of zeros that stored no page.
    pub zero_pages: u64,
    /// Writes failed because a page could not be allocated (ENOMEM/EAGAIN).
    pub alloc_failures: u64,
    /// Writes failed because the memory limit was reached (ENOSPC).
    pub limit_failures: u64,
    /// I/O errors returned for any other reason (out of range, read-only, dead device).
    pub io_errors: u64,
    /// Pages (and discarded pages) changed since the last flush to the backing device.
    pub dirty_pages: u64,
    /// Bytes written to the backing device by flushes (data and zeros).
    pub written_back_bytes: u64,
    /// Flushes to the backing device that completed.
    pub backing_flushes: u64,
    /// Failed reads or writes of the backing device.
    pub backing_errors: u64,
    /// The image generation of the last completed flush (0: none).
    pub flush_generation: u64,
    /// Pages read from the backing device by a lazy restore (read misses and preload).
    pub backing_reads: u64,
    /// Flushes that were journaled (atomic).
    pub atomic_flushes: u64,
    pub reserved: [u64; 1],
}

/// [`RXDSK_IOC_COMPR_STATS`]: in: `id`, all else zero; out: what compression achieves now,
/// in the terms of zram's `mm_stat`. `EINVAL` for a device without compression.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskComprStats {
    pub id: u32,
    /// `RXDSK_COMPRESS_*`.
    pub algorithm: u32,
    /// The level in use (the algorithm's default resolved; 0 for LZO).
    pub level: i32,
    pub pad: u32,
    /// Bytes stored, uncompressed (DATA): pages held times the page size.
    pub orig_data_size: u64,
    /// Bytes of compressed objects (COMPR); a page stored whole counts a page.
    pub compr_data_size: u64,
    /// Memory really used (TOTAL): the allocator's pages plus our per-page descriptors.
    pub mem_used_total: u64,
    /// The highest `mem_used_total` seen.
    pub mem_used_max: u64,
    /// Pages of one repeated machine word: no object stored.
    pub same_pages: u64,
    /// Pages that did not compress below the allocator's huge class: stored whole.
    pub huge_pages: u64,
    /// Compressions that failed (the page was stored whole instead).
    pub compress_failures: u64,
    /// Decompressions that failed (the read failed with EIO).
    pub decompress_failures: u64,
    /// Zero.
    pub reserved: [u64; 4],
}

/// [`RXDSK_IOC_ATTACH`]: attaches the block device at `path` (NUL-terminated) as the backing
/// device of device `id`, held exclusively until DETACH or DESTROY. It must hold the device's
/// size, the journal and the 4 KiB metadata block (see `image.rs`). In writeback mode nothing
/// but the header is written until the first FLUSH, which writes the whole image; until then
/// the backing device holds no valid image. In writethrough mode ATTACH writes the whole image
/// before it returns. `EBUSY` if the device already has one or the path is held by someone
/// else; `ENOSPC` if it is too small.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxdskAttach {
    pub id: u32,
    /// Must be zero.
    pub pad: u32,
    /// Within [`RXDSK_ATTACH_FLAGS`]; 0: writeback mode.
    pub flags: u64,
    pub path: [u8; RXDSK_PATH_MAX],
    /// Journal size in bytes, a multiple of 4096 placed after the data; 0: no journal (flushes
    /// are then not atomic).
    pub journal_bytes: u64,
    /// Seconds between automatic flushes (0: only on request), at most
    /// [`RXDSK_MAX_FLUSH_INTERVAL`]; kept in the image, so a restore flushes at the same
    /// interval.
    pub flush_interval_secs: u32,
    /// Must be zero.
    pub pad2: u32,
    /// Must be zero.
    pub reserved: [u64; 2],
}

impl Default for RxdskAttach {
    fn default() -> Self {
        Self {
            id: 0,
            pad: 0,
            flags: 0,
            path: [0; RXDSK_PATH_MAX],
            journal_bytes: 0,
            flush_interval_secs: 0,
            pad2: 0,
            reserved: [0; 2],
        }
    }
}

/// [`RXDSK_IOC_DETACH`]: flushes, then lets the backing device go. `EIO` (attached still) if
/// the flush fails, unless `flags` has [`RXDSK_FLAG_DISCARD_DIRTY`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskDetach {
    pub id: u32,
    /// Must be zero.
    pub pad: u32,
    pub flags: u64,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// [`RXDSK_IOC_FLUSH`]: in: `id`, all else zero. Writes every page changed since the last
/// flush (zeros for discarded ones), flushes the backing device's cache and commits the image
/// header; returns when that is durable. Out: what was written and the new generation.
/// Atomic (out: [`RXDSK_FLUSH_ATOMIC`]) when the backing device has a journal that holds the
/// changes: a power cut during it restores the previous image or the new one, never a mix.
/// `EIO` if the backing device fails: the changed pages stay changed for a later flush (or,
/// if it failed after the journal was committed, are safe in the journal, which the next
/// flush or restore replays).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskFlush {
    pub id: u32,
    /// Must be zero.
    pub pad: u32,
    /// Out: pages written (data or zeros).
    pub pages_written: u64,
    /// Out: bytes written to the backing device, metadata included.
    pub bytes_written: u64,
    /// Out: the image generation now on the device.
    pub generation: u64,
    /// Out: [`RXDSK_FLUSH_ATOMIC`] if the flush was journaled. Must be zero on input.
    pub flags: u64,
    /// Must be zero.
    pub reserved: [u64; 3],
}

/// [`RXDSK_IOC_RESTORE`]: creates a device from the image on the block device at `path`: size
/// size, block size, mode and journal come from its header; a journal committed but not yet
/// copied in place is replayed first. Pages are read from the backing device on first access
/// (a read miss), or all before this returns with [`RXDSK_RESTORE_PRELOAD`] (zero pages store
/// nothing); the device stays attached to it, clean. An image whose last flush was interrupted
/// (without a journal) is refused with `EUCLEAN` unless `flags` has [`RXDSK_FLAG_FORCE`];
/// no image: `EINVAL`. With [`RXDSK_CREATE_WITH_ID`], `id` is the id wanted. `compress` and
/// `compress_level` as in [`RxdskCreate`] (ABI 1.4): the image holds plain data, so any
/// algorithm (or none) can hold it. Out: `id`, `generation`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxdskRestore {
    /// In (with [`RXDSK_CREATE_WITH_ID`]) and out: the device id.
    pub id: u32,
    /// Must be zero.
    pub pad: u32,
    /// [`RXDSK_FLAG_FORCE`], [`RXDSK_CREATE_WITH_ID`].
    pub flags: u64,
    /// Out: the generation of the image restored.
    pub generation: u64,
    pub path: [u8; RXDSK_PATH_MAX],
    /// `RXDSK_COMPRESS_*` (ABI 1.4).
    pub compress: u32,
    pub compress_level: i32,
    /// 0 (no limit) or at least [`RXDSK_PAGE_SIZE`]: the restored device's memory limit, a
    /// cache size ([`RXDSK_FEATURE_CACHE`], ABI 1.6; zero before).
    pub mem_limit_bytes: u64,
    /// Must be zero.
    pub reserved: [u64; 2],
}

impl Default for RxdskRestore {
    fn default() -> Self {
        Self {
            id: 0,
            pad: 0,
            flags: 0,
            generation: 0,
            path: [0; RXDSK_PATH_MAX],
            compress: 0,
            compress_level: 0,
            mem_limit_bytes: 0,
            reserved: [0; 2],
        }
    }
}

/// Flags [`RXDSK_IOC_RESTORE`] accepts.
pub const RXDSK_RESTORE_FLAGS: u64 =
    RXDSK_FLAG_FORCE | RXDSK_CREATE_WITH_ID | RXDSK_RESTORE_PRELOAD;

/// Reads the module's ABI and module versions.
pub const RXDSK_IOC_GET_VERSION: u32 = ior::<RxdskVersion>(nr::GET_VERSION);
/// Reads the feature mask.
pub const RXDSK_IOC_GET_FEATURES: u32 = ior::<RxdskFeatures>(nr::GET_FEATURES);
/// Creates a device.
pub const RXDSK_IOC_CREATE: u32 = iowr::<RxdskCreate>(nr::CREATE);
/// Destroys a device.
pub const RXDSK_IOC_DESTROY: u32 = iow::<RxdskDestroy>(nr::DESTROY);
/// Resizes a device.
pub const RXDSK_IOC_RESIZE: u32 = iow::<RxdskResize>(nr::RESIZE);
/// Reads one device's configuration.
pub const RXDSK_IOC_INFO: u32 = iowr::<RxdskInfo>(nr::INFO);
/// Lists device ids.
pub const RXDSK_IOC_LIST: u32 = iowr::<RxdskList>(nr::LIST);
/// Reads one device's counters.
pub const RXDSK_IOC_STATS: u32 = iowr::<RxdskStats>(nr::STATS);
/// Reads one device's compression counters (ABI 1.4).
pub const RXDSK_IOC_COMPR_STATS: u32 = iowr::<RxdskComprStats>(nr::COMPR_STATS);
/// Attaches a backing device.
pub const RXDSK_IOC_ATTACH: u32 = iow::<RxdskAttach>(nr::ATTACH);
/// Flushes and detaches the backing device.
pub const RXDSK_IOC_DETACH: u32 = iow::<RxdskDetach>(nr::DETACH);
/// Writes changed pages to the backing device.
pub const RXDSK_IOC_FLUSH: u32 = iowr::<RxdskFlush>(nr::FLUSH);
/// Creates a device from a backing device's image.
pub const RXDSK_IOC_RESTORE: u32 = iowr::<RxdskRestore>(nr::RESTORE);

const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<RxdskVersion>() == 72);
    assert!(align_of::<RxdskVersion>() == 8);
    assert!(size_of::<RxdskFeatures>() == 32);
    assert!(align_of::<RxdskFeatures>() == 8);
    assert!(size_of::<RxdskCreate>() == 64);
    assert!(align_of::<RxdskCreate>() == 8);
    assert!(size_of::<RxdskDestroy>() == 32);
    assert!(align_of::<RxdskDestroy>() == 8);
    assert!(size_of::<RxdskResize>() == 48);
    assert!(align_of::<RxdskResize>() == 8);
    assert!(size_of::<RxdskInfo>() == 80);
    assert!(align_of::<RxdskInfo>() == 8);
    assert!(size_of::<RxdskList>() == 32);
    assert!(align_of::<RxdskList>() == 8);
    assert!(size_of::<RxdskStats>() == 184);
    assert!(align_of::<RxdskStats>() == 8);
    assert!(size_of::<RxdskAttach>() == 304);
    assert!(size_of::<RxdskComprStats>() == 112);
    assert!(align_of::<RxdskComprStats>() == 8);
    assert!(size_of::<RxdskDetach>() == 32);
    assert!(size_of::<RxdskFlush>() == 64);
    assert!(size_of::<RxdskRestore>() == 312);
};

/// Copies `s` into a NUL-padded fixed-size field, truncating if needed (the last byte stays NUL).
pub const fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() && i + 1 < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
