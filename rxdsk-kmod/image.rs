// SPDX-License-Identifier: GPL-2.0

//! The image on a backing device: an [`Image`] owns the attached backing device and the
//! protocol's state (generation, mode, journal), and writes, replays and loads the pages of a
//! device's [`Store`] (see [`format`] for the on-disk layout). The write-back protocols live in
//! `image/direct.rs` (in place, and writethrough) and `image/journal.rs` (atomic).

// The backing device's on-disk format, shared with rxdskctl (`inspect`).
#[allow(unreachable_pub)]
#[path = "../rxdsk-ioctl/src/image.rs"]
pub(crate) mod format;

mod direct;
mod journal;

use crate::abi::RxdskFlush;
use crate::store::{unloaded::Unloaded, Store, StoreError};
use crate::sys::backing::{Backing, PageBuf};
use crate::sys::ffi::{self, Gfp, PAGE_SIZE};
use crate::sys::rwsem::PercpuRwSem;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use format::{
    header_offset, image_fits, ImageError, RxdskImageHeader, RXDSK_IMAGE_FLUSHING, RXDSK_IMAGE_JOURNALED,
    RXDSK_IMAGE_META_SIZE, RXDSK_IMAGE_WRITEAROUND, RXDSK_IMAGE_WRITEBACK, RXDSK_IMAGE_WRITETHROUGH,
};
use kernel::{prelude::*, str::CStr};

/// How writes reach the backing device (the image header's `mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Writes complete in RAM and reach the image on flush.
    Writeback,
    /// A write completes once it is on the backing device too.
    Writethrough,
    /// As writethrough, and the pages it changed then leave RAM (reads are cached).
    Writearound,
}

impl Mode {
    fn header(self) -> u32 {
        match self {
            Mode::Writeback => RXDSK_IMAGE_WRITEBACK,
            Mode::Writethrough => RXDSK_IMAGE_WRITETHROUGH,
            Mode::Writearound => RXDSK_IMAGE_WRITEAROUND,
        }
    }
}

/// Pages per bio when writing back or restoring.
const IO_PAGES: usize = 64;
const PAGE_SHIFT: u32 = kernel::page::PAGE_SHIFT as u32;

/// What the image protocol works on: the device's data and what it reports.
pub(crate) struct DeviceData<'a> {
    pub(crate) id: u32,
    pub(crate) store: &'a Store,
    pub(crate) unloaded: &'a Unloaded,
    pub(crate) stats: &'a ImageStats,
    /// Held for reading by every bio while it changes the store; a flush takes it for
    /// writing for the instant of its cut.
    pub(crate) cut: &'a PercpuRwSem,
    /// The device's size in bytes (fixed while a backing device is attached).
    pub(crate) size: u64,
    pub(crate) logical_block_size: u32,
}

/// Counters of the backing device's traffic, for STATS.
#[derive(Default)]
pub(crate) struct ImageStats {
    pub(crate) written_back: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) atomic_flushes: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) reads: AtomicU64,
}

impl ImageStats {
    /// Counts `e` as a backing device error and passes it on.
    fn error(&self, e: Error) -> Error {
        self.errors.fetch_add(1, Ordering::Relaxed);
        e
    }

    /// Counts `bytes` written to the backing device, in the report and in STATS at once (a
    /// progress display reads the latter while the flush runs).
    fn wrote(&self, written: &mut Written, bytes: u64) {
        written.bytes += bytes;
        self.written_back.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Where [`Image::take_into`] takes a page from.
#[derive(Clone, Copy)]
enum Take {
    /// The open cut of a flush.
    Cut,
    /// The page as it is now (writethrough).
    Now,
}

/// Where one flush's pages go, for the report.
#[derive(Default)]
struct Written {
    pages: u64,
    bytes: u64,
}

/// The backing device of a device, while attached.
pub(crate) struct Image {
    /// The module stays loaded while a backing device is attached: an unload would drop
    /// changes not yet flushed (`rmmod` says the module is in use; DETACH flushes first).
    _module: ffi::ModuleRef,
    file: Backing,
    /// The generation of the image's last completed flush.
    generation: u64,
    /// The backing device's data area holds nothing of ours yet: the next flush zeroes it
    /// before it writes the pages (set by ATTACH, cleared by the first completed flush).
    zero_fill: bool,
    /// `RXDSK_IMAGE_WRITEBACK`, `_WRITETHROUGH` or `_WRITEAROUND`.
    mode: u32,
    /// Size of the journal after the data area; 0: none.
    journal_bytes: u64,
    /// A journal is committed on the device (header JOURNALED) and not yet known to be
    /// copied in place: the next flush replays it before it writes a new one.
    replay_pending: bool,
    /// Seconds between automatic flushes; 0: none.
    flush_interval_secs: u32,
}

/// The header of the image on `path`, read through a shared open (before a device exists).
pub(crate) fn read_header_at(path: &CStr) -> Result<RxdskImageHeader> {
    read_header(&Backing::open_shared(path)?)
}

/// Reads and checks the image header of `file`.
fn read_header(file: &Backing) -> Result<RxdskImageHeader> {
    let offset = header_offset(file.bytes()).ok_or(EINVAL)?;
    let buf = PageBuf::new(1)?;
    file.read(offset, &buf, 1)?;
    let mut bytes = [0u8; 136];
    buf.with_mem(0, |mem| mem.copy_to_slice(&mut bytes));
    RxdskImageHeader::parse(&bytes).map_err(|e| match e {
        ImageError::NotAnImage | ImageError::Invalid => EINVAL,
        ImageError::Version(_) => EPROTO,
        ImageError::Checksum => EUCLEAN,
    })
}

impl Image {
    /// Opens the block device at `path` as a new backing device of `data`'s device (held
    /// exclusively by `holder`), big enough for the data, the journal and the metadata block.
    /// Its header is set to "never flushed" at once, so an old image there cannot be restored
    /// as if it were this device's.
    /// `check` is given the backing device's number as soon as it is open, and may refuse it
    /// (one that leads back to this device: its writes would wait for themselves).
    pub(crate) fn attach(
        data: &DeviceData<'_>,
        path: &CStr,
        holder: *const core::ffi::c_void,
        journal_bytes: u64,
        mode: Mode,
        flush_interval_secs: u32,
        check: impl FnOnce((u32, u32)) -> Result,
    ) -> Result<Self> {
        let file = Backing::open(path, holder)?;
        check(file.devt())?;
        if !image_fits(data.size, journal_bytes, file.bytes()) {
            return Err(ENOSPC);
        }
        let image = Image {
            _module: ffi::ModuleRef::get(),
            file,
            generation: 0,
            zero_fill: true,
            mode: mode.header(),
            journal_bytes,
            replay_pending: false,
            flush_interval_secs,
        };
        image.write_header(data, &image.header(data, 0, RXDSK_IMAGE_FLUSHING, 0))?;
        Ok(image)
    }

    /// Opens the image on `path`, whose header is `header`, for the device restored from it
    /// (held exclusively by `holder`); a committed journal is replayed.
    pub(crate) fn restore(
        data: &DeviceData<'_>,
        path: &CStr,
        holder: *const core::ffi::c_void,
        header: &RxdskImageHeader,
    ) -> Result<Self> {
        let file = Backing::open(path, holder)?;
        if !image_fits(header.size_bytes, header.journal_bytes, file.bytes()) {
            return Err(EINVAL);
        }
        let mut image = Image {
            _module: ffi::ModuleRef::get(),
            file,
            generation: header.generation,
            zero_fill: false,
            mode: header.mode,
            journal_bytes: header.journal_bytes,
            replay_pending: header.state == RXDSK_IMAGE_JOURNALED,
            flush_interval_secs: header.flush_interval_secs,
        };
        if image.replay_pending {
            image.replay(data)?;
        }
        Ok(image)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether writes complete only once on the backing device (writethrough or writearound).
    pub(crate) fn is_writethrough(&self) -> bool {
        self.mode == RXDSK_IMAGE_WRITETHROUGH || self.mode == RXDSK_IMAGE_WRITEAROUND
    }

    pub(crate) fn flush_interval_secs(&self) -> u32 {
        self.flush_interval_secs
    }

    /// Whether the device holds data not yet flushed here.
    pub(crate) fn has_unflushed(&self, data: &DeviceData<'_>) -> bool {
        self.zero_fill || data.store.next_changed(0).is_some()
    }

    /// Makes the image's data area hold the device's clean pages, where eviction reads them
    /// back from: a journal committed but not yet copied in place is replayed. `false` while
    /// the data area holds nothing of ours yet (no flush completed since ATTACH).
    pub(crate) fn settle(&mut self, data: &DeviceData<'_>) -> Result<bool> {
        if self.replay_pending {
            self.replay(data)?;
        }
        Ok(!self.zero_fill)
    }

    /// Whether the image's data area holds the device's clean pages now (what [`Image::settle`]
    /// makes true), so that they can be evicted without I/O first.
    pub(crate) fn is_settled(&self) -> bool {
        !self.replay_pending && !self.zero_fill
    }

    /// Whether a flush would write anything (a periodic flush skips it otherwise).
    pub(crate) fn needs_flush(&self, data: &DeviceData<'_>) -> bool {
        self.replay_pending || self.has_unflushed(data)
    }

    /// The image header for `data`'s device in `state`.
    fn header(&self, data: &DeviceData<'_>, generation: u64, state: u32, time_ns: u64) -> RxdskImageHeader {
        RxdskImageHeader::new(data.logical_block_size, data.size, generation, state, time_ns)
            .with(self.mode, self.journal_bytes, self.flush_interval_secs)
    }

    fn write_header(&self, data: &DeviceData<'_>, header: &RxdskImageHeader) -> Result {
        let offset = header_offset(self.file.bytes()).ok_or(EINVAL)?;
        let buf = PageBuf::new(1)?;
        buf.with_mem(0, |mut mem| {
            mem.zero();
            mem.copy_from_slice(&header.to_bytes());
        });
        self.file.write(offset, &buf, 1, true).inspect_err(|_| {
            data.stats.errors.fetch_add(1, Ordering::Relaxed);
        })?;
        data.stats.written_back.fetch_add(RXDSK_IMAGE_META_SIZE, Ordering::Relaxed);
        Ok(())
    }

    /// The next run of unloaded pages in `from..=last`: its first page and its length, at most
    /// [`IO_PAGES`] (one read of the backing device).
    fn unloaded_run(data: &DeviceData<'_>, from: u64, last: u64) -> Option<(u64, usize)> {
        let start = data.unloaded.next_set(from, last)?;
        let mut n = 1usize;
        while n < IO_PAGES && start + (n as u64) <= last && data.unloaded.is_set(start + n as u64) {
            n += 1;
        }
        Some((start, n))
    }

    /// Reads the unloaded pages of `first..=last` as they are on the backing device, without
    /// storing them: `f(start, n, buf)` for each run of them (pages `start..start + n` in
    /// `buf`), in order. For a settled image, that is their data. Stops at the first error;
    /// `ENOMEM` only if the buffer cannot be had (before any I/O).
    pub(crate) fn read_unloaded(&self, data: &DeviceData<'_>, first: u64, last: u64, mut f: impl FnMut(u64, usize, &PageBuf) -> Result) -> Result {
        let buf = PageBuf::new((last - first + 1).min(IO_PAGES as u64) as usize)?;
        let mut from = first;
        while let Some((start, n)) = Self::unloaded_run(data, from, last) {
            self.file.read(start << PAGE_SHIFT, &buf, n).map_err(|e| data.stats.error(e))?;
            data.stats.reads.fetch_add(n as u64, Ordering::Relaxed);
            f(start, n, &buf)?;
            from = start + n as u64;
            ffi::cond_resched();
        }
        Ok(())
    }

    /// Reads the unloaded pages of `first..=last` into the store, as clean pages (zero pages
    /// store nothing), and clears their bits. The caller holds the lock over the image, which
    /// serialises loaders. A `gfp` without direct reclaim fails with `ENOMEM` at once when
    /// memory is short (the buffer included), leaving the pages not yet read unloaded.
    pub(crate) fn load(&self, data: &DeviceData<'_>, first: u64, last: u64, gfp: Gfp) -> Result {
        let mut from = first;
        while let Some((start, n)) = Self::unloaded_run(data, from, last) {
            let buf = if ffi::may_reclaim(gfp) { PageBuf::new(n)? } else { PageBuf::new_nowait(n)? };
            self.file.read(start << PAGE_SHIFT, &buf, n).map_err(|e| data.stats.error(e))?;
            for i in 0..n {
                let index = start + i as u64;
                let at = index << PAGE_SHIFT;
                // The last page may reach past the end: only its part inside is data.
                let len = (data.size.saturating_sub(at)).min(PAGE_SIZE as u64) as usize;
                let stored = buf.with_mem(i, |mem| {
                    let (part, _) = mem.split_at(len);
                    if part.is_zero() {
                        Ok(())
                    } else {
                        data.store.fill(index, &part, gfp)
                    }
                });
                match stored {
                    Some(Ok(())) => data.unloaded.clear(index),
                    Some(Err(StoreError::Limit)) => return Err(ENOSPC),
                    _ => return Err(ENOMEM),
                }
            }
            data.stats.reads.fetch_add(n as u64, Ordering::Relaxed);
            from = start + n as u64;
            ffi::cond_resched();
        }
        Ok(())
    }

    /// Takes page `index` into slot `slot` of `buf` for writing back: of the open cut (a
    /// flush), or as it is now (writethrough); whether it had a page (else zeros). A page that
    /// cannot be read (a corrupted compressed object) is marked changed again and fails the
    /// flush with EIO.
    fn take_into(data: &DeviceData<'_>, buf: &PageBuf, slot: usize, index: u64, from: Take) -> Result<bool> {
        let taken = buf.with_mem(slot, |mem| match from {
            Take::Cut => data.store.take_cut(index, mem),
            Take::Now => data.store.take_changed(index, mem),
        });
        match taken.ok_or(EINVAL)? {
            Ok(present) => Ok(present),
            Err(_) => {
                data.store.redirty(index);
                Err(data.stats.error(EIO))
            }
        }
    }

    /// Writes the device as it is at one instant, its cut, and commits it as the next
    /// generation: journaled (atomic) when the backing device has a journal that holds the
    /// cut, in place otherwise. The cut is taken with no change to the store under way (the
    /// cut lock held for writing, an instant); every write completed before it is in the
    /// image, none started after it is. Writers go on while the cut is written.
    pub(crate) fn write_back(&mut self, data: &DeviceData<'_>) -> Result<RxdskFlush> {
        if self.replay_pending {
            // The last journal must be in place before a new one overwrites it.
            self.replay(data)?;
        }
        {
            let _no_change = data.cut.write();
            data.store.begin_cut();
        }
        let report = RxdskFlush { id: data.id, ..Default::default() };
        let result = match self.journaled_write_back(data, report) {
            Ok(Some(report)) => Ok(report),
            Ok(None) => self.direct_write_back(data, report),
            Err(e) => Err(e),
        };
        if result.is_ok() {
            data.store.end_cut();
        } else {
            // What the cut still holds joins the next flush's changes.
            let _no_change = data.cut.write();
            data.store.abort_cut();
        }
        result
    }
}

/// What INFO and STATS report of the backing device, readable without the lock over the
/// image (which a flush holds from start to end): a copy of the [`Image`]'s state, updated
/// under that lock.
#[derive(Default)]
pub(crate) struct View {
    /// 0: detached; else `mode + 1`.
    mode: AtomicU32,
    journal_bytes: AtomicU64,
    generation: AtomicU64,
    /// `major << 32 | minor` of the backing device.
    devt: AtomicU64,
}

impl View {
    /// Copies what INFO and STATS show of `image` (`None`: detached).
    pub(crate) fn publish(&self, image: Option<&Image>) {
        let (mode, journal, generation) = image.map_or((0, 0, 0), |i| (i.mode + 1, i.journal_bytes, i.generation));
        let (major, minor) = image.map_or((0, 0), |i| i.file.devt());
        self.devt.store(u64::from(major) << 32 | u64::from(minor), Ordering::Relaxed);
        self.journal_bytes.store(journal, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
        self.mode.store(mode, Ordering::Release);
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.mode.load(Ordering::Acquire) != 0
    }

    /// Writethrough or writearound (see [`Image::is_writethrough`]).
    pub(crate) fn is_writethrough(&self) -> bool {
        let mode = self.mode.load(Ordering::Acquire);
        mode == RXDSK_IMAGE_WRITETHROUGH + 1 || mode == RXDSK_IMAGE_WRITEAROUND + 1
    }

    pub(crate) fn is_writearound(&self) -> bool {
        self.mode.load(Ordering::Acquire) == RXDSK_IMAGE_WRITEAROUND + 1
    }

    pub(crate) fn journal_bytes(&self) -> u64 {
        self.journal_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The backing device's (major, minor); (0, 0) while detached.
    pub(crate) fn devt(&self) -> (u32, u32) {
        let devt = self.devt.load(Ordering::Relaxed);
        ((devt >> 32) as u32, devt as u32)
    }
}
