// SPDX-License-Identifier: GPL-2.0

//! One rxdsk device: a gendisk backed by a page store. Safe Rust over the `disk` and `pages`
//! wrappers.

use crate::abi::{
    RxdskComprStats, RxdskFlush, RxdskInfo, RxdskStats, RXDSK_FLAG_BACKED, RXDSK_FLAG_COMPRESSED, RXDSK_FLAG_READ_ONLY, RXDSK_FLAG_WRITETHROUGH,
    RXDSK_FLUSH_ATOMIC, RXDSK_MAX_SIZE, RXDSK_PAGE_SIZE,
};
use crate::backing::{Backing, PageBuf};
use crate::compress::Algorithm;
use crate::zstore::ZStore;
use crate::deferred::{Deferred, DeferredHandler};
use crate::periodic::{Periodic, PeriodicTask};
use crate::disk::{Bio, BioHandler, DiskConfig, GenDisk, Op, Status};
use crate::image::{
    checksum_continue, header_offset, image_fits, journal_holds, journal_offset, journal_table_blocks, ImageError,
    RxdskImageHeader, JOURNAL_ENTRIES_PER_BLOCK, JOURNAL_HOLE, RXDSK_IMAGE_CLEAN, RXDSK_IMAGE_FLUSHING,
    RXDSK_IMAGE_JOURNALED, RXDSK_IMAGE_META_SIZE, RXDSK_IMAGE_WRITEBACK, RXDSK_IMAGE_WRITETHROUGH,
};
use crate::ffi::{self, PAGE_SIZE, SECTOR_SHIFT};
use crate::iomem::IoMem;
use crate::layout::{self, pieces, punch, shrink};
use crate::changes::Tracked;
use crate::pages::{FreeBatch, PageStore, StoreError};
use crate::stats::{Counter, Failure, Stats};
use crate::unloaded::Unloaded;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    str::{CStr, CString},
    sync::{Arc, Mutex},
};

/// Pages per bio when writing back or restoring.
const IO_PAGES: usize = 64;
/// A read miss loads the aligned cluster of this many pages around it (read-ahead).
const MISS_CLUSTER: u64 = 16;
/// Pages a preload loads per hold of the backing lock (read misses get in between).
const PRELOAD_CHUNK: u64 = 1024;

/// The backing device of a device, while attached.
struct Attached {
    file: Backing,
    /// The generation of the image's last completed flush.
    generation: u64,
    /// The backing device's data area holds nothing of ours yet: the next flush zeroes it
    /// before it writes the pages (set by ATTACH, cleared by the first completed flush).
    zero_fill: bool,
    /// `RXDSK_IMAGE_WRITEBACK` or `RXDSK_IMAGE_WRITETHROUGH`.
    mode: u32,
    /// Size of the journal after the data area; 0: none.
    journal_bytes: u64,
    /// A journal is committed on the device (header JOURNALED) and not yet known to be
    /// copied in place: the next flush replays it before it writes a new one.
    replay_pending: bool,
    /// Seconds between automatic flushes; 0: none.
    flush_interval_secs: u32,
}

/// What INFO and STATS report of the backing device, readable without the backing lock
/// (which a flush holds from start to end): a copy of `Attached`'s fields, updated under it.
#[derive(Default)]
struct BackingView {
    /// 0: detached; else `mode + 1`.
    mode: AtomicU32,
    journal_bytes: AtomicU64,
    generation: AtomicU64,
    /// `major << 32 | minor` of the backing device.
    devt: AtomicU64,
}

/// Where one flush's pages go, for the report.
#[derive(Default)]
struct Written {
    pages: u64,
    bytes: u64,
}

const PAGE_SHIFT: u32 = kernel::page::PAGE_SHIFT as u32;
const _: () = assert!(PAGE_SIZE as u64 == RXDSK_PAGE_SIZE);
const _: () = assert!(PAGE_SIZE == layout::STORE_PAGE_SIZE);

/// The largest size this platform can index: [`RXDSK_MAX_SIZE`], or less where page indexes
/// (`usize`, the XArray's index type) are narrower than 64 bits.
pub(crate) const MAX_SIZE: u64 = layout::max_device_size(RXDSK_MAX_SIZE, usize::MAX as u64);

/// What CREATE asked for, validated.
pub(crate) struct DeviceConfig {
    pub(crate) size_bytes: u64,
    pub(crate) logical_block_size: u32,
    pub(crate) mem_limit_bytes: u64,
    pub(crate) read_only: bool,
    /// Pages are stored compressed with this algorithm.
    pub(crate) compress: Option<Algorithm>,
}

/// # Invariants
///
/// - `disk` was added with `self` as its handler and is removed before `self` is freed
///   (`PinnedDrop`), so the trampoline's reference to `self` is always valid.
/// - `deferred` has `self` as owner from before the disk is added, and is drained after the
///   disk is removed, before `self` is freed.
/// - While `unloaded` has pages, `backing` holds the device they are read from (DETACH
///   loads them all first), and no I/O touches a page whose bit is set: such bios go through
///   `deferred`, which loads the page first.
#[pin_data(PinnedDrop)]
pub(crate) struct Device {
    id: u32,
    /// Declared first: removed and put before the page store goes.
    disk: GenDisk<Device>,
    #[pin]
    store: PageStore,
    /// The compressed store, which replaces `store` (then empty) on a compressed device.
    zstore: Option<Pin<KBox<ZStore>>>,
    #[pin]
    deferred: Deferred<Device>,
    /// The automatic flush; stopped before the backing device goes.
    #[pin]
    periodic: Periodic<Device>,
    unloaded: Unloaded,
    /// Size in bytes; bios reaching past it fail (checked again by us after a shrink).
    capacity: AtomicU64,
    logical_block_size: u32,
    mem_limit_bytes: u64,
    read_only: bool,
    stats: Stats,
    /// Serialises ATTACH, DETACH and FLUSH of this device; `None` while detached.
    #[pin]
    backing: Mutex<Option<Attached>>,
    view: BackingView,
    /// Control operations running without the registry lock (see `registry::LongOp`).
    long_ops: AtomicU32,
    written_back: AtomicU64,
    backing_flushes: AtomicU64,
    atomic_flushes: AtomicU64,
    backing_errors: AtomicU64,
    backing_reads: AtomicU64,
}

impl Device {
    pub(crate) fn create(id: u32, config: &DeviceConfig) -> Result<Arc<Self>> {
        let device = Self::build(id, config, Unloaded::none())?;
        device.add()?;
        Ok(device)
    }

    /// Creates a device from the image on `path`: size, block size, mode and journal from its
    /// header (a committed journal replayed first), attached and clean; pages are read from
    /// the image on first access (or by [`Device::load_all`]). `EUCLEAN` for an
    /// image whose last flush did not complete, unless `force`. Returns the device and the
    /// generation.
    pub(crate) fn restore(id: u32, path: &CStr, force: bool, compress: Option<Algorithm>) -> Result<(Arc<Self>, u64)> {
        // The header first, through a shared open: the exclusive one needs the device.
        let header = read_header(&Backing::open_shared(path)?)?;
        // A committed journal is replayed below: its image is whole.
        if header.state == RXDSK_IMAGE_FLUSHING && !force {
            pr_warn!(
                "rxdsk: {}: generation {} was being flushed when it stopped; not restored without force\n",
                path.to_str().unwrap_or("?"),
                header.flushing_generation
            );
            return Err(EUCLEAN);
        }
        let config = DeviceConfig {
            size_bytes: header.size_bytes,
            logical_block_size: header.logical_block_size,
            mem_limit_bytes: 0,
            read_only: false,
            compress,
        };
        if !crate::control::valid_size(config.size_bytes, config.logical_block_size) {
            return Err(EINVAL);
        }
        let device = Self::build(id, &config, Unloaded::all(config.size_bytes.div_ceil(PAGE_SIZE as u64))?)?;
        let file = Backing::open(path, device.holder())?;
        if !image_fits(header.size_bytes, header.journal_bytes, file.bytes()) {
            return Err(EINVAL);
        }
        let mut attached = Attached {
            file,
            generation: header.generation,
            zero_fill: false,
            mode: header.mode,
            journal_bytes: header.journal_bytes,
            replay_pending: header.state == RXDSK_IMAGE_JOURNALED,
            flush_interval_secs: header.flush_interval_secs,
        };
        if attached.replay_pending {
            device.replay(&mut attached)?;
        }
        device.tracked().start_tracking_clean();
        let generation = attached.generation;
        {
            let mut backing = device.backing.lock();
            *backing = Some(attached);
            device.publish(&backing);
        }
        device.add()?;
        device.periodic.start(header.flush_interval_secs);
        Ok((device, generation))
    }

    /// Loads every page still on the backing device, a chunk per hold of the backing lock.
    pub(crate) fn load_all(&self) -> Result {
        let mut from = 0;
        while let Some(first) = self.unloaded.next_set(from, u64::MAX) {
            let last = first.saturating_add(PRELOAD_CHUNK - 1);
            {
                let backing = self.backing.lock();
                let attached = backing.as_ref().ok_or(ENXIO)?;
                self.load(&attached.file, first, last, kernel::bindings::GFP_KERNEL)?;
            }
            from = last.saturating_add(1);
            ffi::cond_resched();
        }
        Ok(())
    }

    /// Reads the unloaded pages of `first..=last` from `file` into the store, as clean pages
    /// (zero pages store nothing), and clears their bits. The caller holds the backing lock,
    /// which serialises loaders.
    fn load(&self, file: &Backing, first: u64, last: u64, gfp: kernel::bindings::gfp_t) -> Result {
        let size = self.capacity.load(Ordering::Acquire);
        let mut from = first;
        while let Some(start) = self.unloaded.next_set(from, last) {
            let mut n = 1usize;
            while n < IO_PAGES && start + (n as u64) <= last && self.unloaded.is_set(start + n as u64) {
                n += 1;
            }
            let buf = PageBuf::new(n)?;
            file.read(start << PAGE_SHIFT, &buf, n).map_err(|e| self.count_error(e))?;
            for i in 0..n {
                let index = start + i as u64;
                let at = index << PAGE_SHIFT;
                // The last page may reach past the end: only its part inside is data.
                let len = (size.saturating_sub(at)).min(PAGE_SIZE as u64) as usize;
                let stored = buf.with_mem(i, |mem| {
                    let (data, _) = mem.split_at(len);
                    if data.is_zero() {
                        Ok(())
                    } else {
                        self.tracked().fill(index, &data, gfp)
                    }
                });
                match stored {
                    Some(Ok(())) => self.unloaded.clear(index),
                    Some(Err(StoreError::Limit)) => return Err(ENOSPC),
                    _ => return Err(ENOMEM),
                }
            }
            self.backing_reads.fetch_add(n as u64, Ordering::Relaxed);
            from = start + n as u64;
            ffi::cond_resched();
        }
        Ok(())
    }

    /// Whether the bio changes data of a writethrough device (it then completes only once
    /// the change is on the backing device).
    fn needs_write_through(&self, bio: &Bio) -> bool {
        self.view.mode.load(Ordering::Acquire) == RXDSK_IMAGE_WRITETHROUGH + 1
            && matches!(bio.op(), Op::Write | Op::Discard | Op::WriteZeroes)
            && bio.len() > 0
    }

    /// The first and last page a bio touches, if it must wait for pages still on the backing
    /// device.
    fn needs_load(&self, bio: &Bio) -> Option<(u64, u64)> {
        if self.unloaded.count() == 0 {
            return None;
        }
        if !matches!(bio.op(), Op::Read | Op::Write | Op::Discard | Op::WriteZeroes) || bio.len() == 0 {
            return None;
        }
        let first = bio.position() >> PAGE_SHIFT;
        let last = (bio.position().checked_add(bio.len() - 1)?) >> PAGE_SHIFT;
        self.unloaded.next_set(first, last).map(|_| (first, last))
    }

    /// An address that identifies this device as the exclusive holder of its backing device.
    fn holder(&self) -> *const core::ffi::c_void {
        core::ptr::from_ref(self).cast()
    }

    /// Attaches the block device at `path` as backing device: held exclusively, big enough
    /// for the data and the metadata block. Its header is set to "never flushed" at once, so
    /// an old image there cannot be restored as if it were this device's.
    pub(crate) fn attach(&self, path: &CStr, journal_bytes: u64, writethrough: bool, flush_interval_secs: u32) -> Result {
        let mut backing = self.backing.lock();
        if backing.is_some() {
            return Err(EBUSY);
        }
        let size = self.capacity.load(Ordering::Acquire);
        let file = Backing::open(path, self.holder())?;
        if !image_fits(size, journal_bytes, file.bytes()) {
            return Err(ENOSPC);
        }
        let attached = Attached {
            file,
            generation: 0,
            zero_fill: true,
            mode: if writethrough { RXDSK_IMAGE_WRITETHROUGH } else { RXDSK_IMAGE_WRITEBACK },
            journal_bytes,
            replay_pending: false,
            flush_interval_secs,
        };
        self.write_header(&attached.file, &self.header(&attached, 0, RXDSK_IMAGE_FLUSHING, 0))?;
        {
            // With no bio in flight: every writer after this sees tracking on (the freeze and
            // thaw order them), every one before is done and its page is found by the walk.
            let _frozen = self.disk.freeze();
            self.tracked().start_tracking();
        }
        *backing = Some(attached);
        // From here writes are deferred (writethrough) and wait for the lock we hold.
        self.publish(&backing);
        if writethrough {
            // The whole image first: a writethrough image is complete from the start.
            let attached = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
            if let Err(e) = self.write_back(attached) {
                self.tracked().stop_tracking();
                *backing = None;
                self.publish(&backing);
                return Err(e);
            }
            self.publish(&backing);
        }
        // Not under the lock: a running periodic flush waits for it, and `start` waits for
        // that.
        drop(backing);
        self.periodic.start(flush_interval_secs);
        Ok(())
    }

    /// Writethrough: writes the changes in `first..=last` (those of one bio) to the backing
    /// device, durably (FUA; holes as zeroes, then a cache flush). A failure leaves what was
    /// not written changed, for a later flush.
    fn write_through(&self, attached: &mut Attached, first: u64, last: u64) -> Result {
        if attached.replay_pending {
            // In-place writes must not be overwritten by a later replay of an older journal.
            self.replay(attached)?;
        }
        let file = &attached.file;
        let buf = PageBuf::new(((last - first + 1).min(IO_PAGES as u64)) as usize)?;
        let mut taken = KVec::<(u64, bool)>::with_capacity(IO_PAGES, GFP_KERNEL)?;
        let mut zeroed = false;
        let mut from = first;
        while let Some(start) = self.tracked().next_changed(from).filter(|&i| i <= last) {
            // A run of consecutive changed indexes, at most one buffer.
            taken.clear();
            let mut index = start;
            let mut data = 0;
            while taken.len() < IO_PAGES && index <= last && self.tracked().next_changed(index) == Some(index) {
                let present = match self.take_into(&buf, data, index) {
                    Ok(present) => present,
                    Err(e) => {
                        for &(i, _) in taken.iter() {
                            self.tracked().redirty(i);
                        }
                        return Err(e);
                    }
                };
                taken.push((index, present), GFP_KERNEL)?;
                data += usize::from(present);
                index += 1;
                if data == IO_PAGES {
                    break;
                }
            }
            let written = self.write_runs(file, &buf, &taken, &mut zeroed);
            if let Err(e) = written {
                for &(i, _) in taken.iter() {
                    self.tracked().redirty(i);
                }
                return Err(self.count_error(e));
            }
            from = index;
        }
        if zeroed {
            file.flush_cache().map_err(|e| self.count_error(e))?;
        }
        Ok(())
    }

    /// Writes `taken` (consecutive indexes; data pages in `buf` in order) as runs: data with
    /// FUA, holes as zeroes.
    fn write_runs(&self, file: &Backing, buf: &PageBuf, taken: &[(u64, bool)], zeroed: &mut bool) -> Result {
        let mut slot = 0;
        let mut i = 0;
        while i < taken.len() {
            let (first, present) = taken[i];
            let mut run = 1;
            while i + run < taken.len() && taken[i + run].1 == present {
                run += 1;
            }
            let pos = first << PAGE_SHIFT;
            let len = (run as u64) << PAGE_SHIFT;
            if present {
                file.write_from(pos, buf, slot, run, true)?;
                slot += run;
            } else {
                file.zeroout(pos, len)?;
                *zeroed = true;
            }
            self.written_back.fetch_add(len, Ordering::Relaxed);
            i += run;
        }
        Ok(())
    }

    /// Copies what INFO and STATS show of `backing` into the lock-free view.
    fn publish(&self, backing: &Option<Attached>) {
        let (mode, journal, generation) = backing.as_ref().map_or((0, 0, 0), |a| (a.mode + 1, a.journal_bytes, a.generation));
        let (major, minor) = backing.as_ref().map_or((0, 0), |a| a.file.devt());
        self.view.devt.store(u64::from(major) << 32 | u64::from(minor), Ordering::Relaxed);
        self.view.journal_bytes.store(journal, Ordering::Relaxed);
        self.view.generation.store(generation, Ordering::Relaxed);
        self.view.mode.store(mode, Ordering::Release);
    }

    /// Counts a control operation running without the registry lock.
    pub(crate) fn begin_long_op(&self) {
        self.long_ops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_long_op(&self) {
        self.long_ops.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn long_ops(&self) -> u32 {
        self.long_ops.load(Ordering::Relaxed)
    }

    /// The image header for `attached` in `state`.
    fn header(&self, attached: &Attached, generation: u64, state: u32, time_ns: u64) -> RxdskImageHeader {
        let size = self.capacity.load(Ordering::Acquire);
        RxdskImageHeader::new(self.logical_block_size, size, generation, state, time_ns)
            .with(attached.mode, attached.journal_bytes, attached.flush_interval_secs)
    }

    /// Flushes (unless `discard_dirty`), then lets the backing device go.
    pub(crate) fn detach(&self, discard_dirty: bool) -> Result {
        // Before the lock, which a running periodic flush may be waiting for.
        let interval = self.periodic.secs();
        self.periodic.stop();
        let result = self.detach_locked(discard_dirty);
        if result.is_err() {
            // Still attached: keep flushing.
            self.periodic.start(interval);
        }
        result
    }

    fn detach_locked(&self, discard_dirty: bool) -> Result {
        let mut backing = self.backing.lock();
        let attached = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
        // Pages still only on the backing device must come in before it goes.
        self.load(&attached.file, 0, u64::MAX, kernel::bindings::GFP_KERNEL)?;
        if let Err(e) = self.write_back(attached) {
            self.publish(&backing);
            if !discard_dirty {
                return Err(e);
            }
        }
        self.tracked().stop_tracking();
        *backing = None;
        self.publish(&backing);
        Ok(())
    }

    /// Whether the device has a backing device and data not yet flushed to it.
    pub(crate) fn has_unflushed(&self) -> bool {
        self.backing
            .lock()
            .as_ref()
            .is_some_and(|a| a.zero_fill || self.tracked().next_changed(0).is_some())
    }

    pub(crate) fn is_backed(&self) -> bool {
        self.view.mode.load(Ordering::Acquire) != 0
    }

    /// FLUSH: writes back every change and commits the image.
    pub(crate) fn flush(&self) -> Result<RxdskFlush> {
        let mut backing = self.backing.lock();
        let attached = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
        let result = self.write_back(attached);
        self.publish(&backing);
        result
    }

    fn write_header(&self, file: &Backing, header: &RxdskImageHeader) -> Result {
        let offset = header_offset(file.bytes()).ok_or(EINVAL)?;
        let buf = PageBuf::new(1)?;
        buf.with_mem(0, |mut mem| {
            mem.zero();
            mem.copy_from_slice(&header.to_bytes());
        });
        file.write(offset, &buf, 1, true).inspect_err(|_| {
            self.backing_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        self.written_back.fetch_add(RXDSK_IMAGE_META_SIZE, Ordering::Relaxed);
        Ok(())
    }

    /// Writes every change back and commits the next generation: journaled (atomic) when the
    /// backing device has a journal that holds the changes, in place otherwise.
    fn write_back(&self, attached: &mut Attached) -> Result<RxdskFlush> {
        if attached.replay_pending {
            // The last journal must be in place before a new one overwrites it.
            self.replay(attached)?;
        }
        let mut report = RxdskFlush { id: self.id, ..Default::default() };
        if attached.journal_bytes > 0 && !attached.zero_fill {
            let changes = self.tracked().changed_indexes()?;
            if journal_holds(attached.journal_bytes, changes.len() as u64) || changes.is_empty() {
                let written = self.journaled_write_back(attached, &changes)?;
                report.pages_written = written.pages;
                report.bytes_written = written.bytes;
                report.generation = attached.generation;
                report.flags = RXDSK_FLUSH_ATOMIC;
                self.backing_flushes.fetch_add(1, Ordering::Relaxed);
                self.atomic_flushes.fetch_add(1, Ordering::Relaxed);
                return Ok(report);
            }
        }
        self.direct_write_back(attached, report)
    }

    /// Counts `bytes` written to the backing device, in the report and in STATS at once (a
    /// progress display reads the latter while the flush runs).
    fn wrote(&self, written: &mut Written, bytes: u64) {
        written.bytes += bytes;
        self.written_back.fetch_add(bytes, Ordering::Relaxed);
    }

    fn count_error(&self, e: Error) -> Error {
        self.backing_errors.fetch_add(1, Ordering::Relaxed);
        e
    }

    /// The atomic flush of `changes` (see `image.rs`): pages into the journal, its table, a
    /// cache flush, the commit (header JOURNALED, FUA); then the replay copies them in place
    /// and makes the header CLEAN. A failure before the commit leaves the image as it was and
    /// every change marked again; after it, the changes are safe in the journal.
    fn journaled_write_back(&self, attached: &mut Attached, changes: &[u64]) -> Result<Written> {
        let next = attached.generation + 1;
        if changes.is_empty() {
            let header = self.header(attached, next, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
            self.write_header(&attached.file, &header)?;
            attached.generation = next;
            attached.zero_fill = false;
            return Ok(Written { pages: 0, bytes: RXDSK_IMAGE_META_SIZE });
        }
        let mut entries = KVVec::<u64>::with_capacity(changes.len(), GFP_KERNEL)?;
        let result = self.write_journal(attached, changes, &mut entries);
        let written = match result {
            Ok(w) => w,
            Err(e) => {
                // Nothing was committed: the old image stands; the changes wait for a retry.
                for &entry in entries.iter() {
                    self.tracked().redirty(entry & !JOURNAL_HOLE);
                }
                return Err(e);
            }
        };
        attached.replay_pending = true;
        let replayed = self.replay(attached)?;
        Ok(Written { pages: written.pages, bytes: written.bytes + replayed.bytes })
    }

    /// Phase one of a journaled flush, up to and including the commit. `entries` gets one
    /// entry per change taken, also on failure (so that the caller can mark them again).
    fn write_journal(&self, attached: &Attached, changes: &[u64], entries: &mut KVVec<u64>) -> Result<Written> {
        let file = &attached.file;
        let size = self.capacity.load(Ordering::Acquire);
        let table_blocks = journal_table_blocks(changes.len() as u64);
        let table_at = journal_offset(size);
        let mut data_at = table_at + (table_blocks << PAGE_SHIFT);
        let buf = PageBuf::new(IO_PAGES)?;
        let mut slot = 0usize;
        let mut written = Written::default();
        for &index in changes {
            let present = self.take_into(&buf, slot, index)?;
            entries.push(if present { index } else { index | JOURNAL_HOLE }, GFP_KERNEL)?;
            if present {
                slot += 1;
            }
            if slot == IO_PAGES {
                file.write(data_at, &buf, slot, false).map_err(|e| self.count_error(e))?;
                data_at += (slot as u64) << PAGE_SHIFT;
                self.wrote(&mut written, (slot as u64) << PAGE_SHIFT);
                slot = 0;
                ffi::cond_resched();
            }
        }
        if slot > 0 {
            file.write(data_at, &buf, slot, false).map_err(|e| self.count_error(e))?;
            self.wrote(&mut written, (slot as u64) << PAGE_SHIFT);
        }
        written.pages = entries.len() as u64;
        // The table, IO_PAGES blocks at a time; its checksum goes into the commit.
        let mut crc = !0u32;
        let mut at = table_at;
        let mut block = KVec::from_elem(0u8, RXDSK_IMAGE_META_SIZE as usize, GFP_KERNEL)?;
        for chunk in entries.chunks((JOURNAL_ENTRIES_PER_BLOCK as usize) * IO_PAGES) {
            let mut blocks = 0;
            for entries_of_block in chunk.chunks(JOURNAL_ENTRIES_PER_BLOCK as usize) {
                block.fill(0);
                for (i, entry) in entries_of_block.iter().enumerate() {
                    if let Some(raw) = block.get_mut(i * 8..i * 8 + 8) {
                        raw.copy_from_slice(&entry.to_le_bytes());
                    }
                }
                crc = checksum_continue(crc, &block[..entries_of_block.len() * 8]);
                buf.with_mem(blocks, |mut mem| mem.copy_from_slice(&block)).ok_or(EINVAL)?;
                blocks += 1;
            }
            file.write(at, &buf, blocks, false).map_err(|e| self.count_error(e))?;
            at += (blocks as u64) << PAGE_SHIFT;
            self.wrote(&mut written, (blocks as u64) << PAGE_SHIFT);
        }
        file.flush_cache().map_err(|e| self.count_error(e))?;
        let commit = self
            .header(attached, attached.generation, RXDSK_IMAGE_JOURNALED, 0)
            .committing(entries.len() as u64, !crc);
        self.write_header(file, &commit)?;
        written.bytes += RXDSK_IMAGE_META_SIZE;
        Ok(written)
    }

    /// Copies the committed journal in place (from the backing device itself, so that a
    /// restore and a flush replay the same way), flushes the cache and makes the header CLEAN
    /// with the journal's generation. `EUCLEAN` if the table does not match its checksum.
    fn replay(&self, attached: &mut Attached) -> Result<Written> {
        let file = &attached.file;
        let header = read_header(file)?;
        if header.state != RXDSK_IMAGE_JOURNALED {
            // The commit never reached the device (or the replay already finished).
            attached.replay_pending = false;
            return Ok(Written::default());
        }
        let size = header.size_bytes;
        let n = header.journal_entries;
        let table_at = journal_offset(size);
        let buf = PageBuf::new(IO_PAGES)?;
        let mut entries = KVVec::<u64>::with_capacity(n as usize, GFP_KERNEL)?;
        let mut crc = !0u32;
        let mut at = table_at;
        let mut block = KVec::from_elem(0u8, RXDSK_IMAGE_META_SIZE as usize, GFP_KERNEL)?;
        while (entries.len() as u64) < n {
            let blocks = (n - entries.len() as u64).div_ceil(JOURNAL_ENTRIES_PER_BLOCK).min(IO_PAGES as u64) as usize;
            file.read(at, &buf, blocks).map_err(|e| self.count_error(e))?;
            for b in 0..blocks {
                buf.with_mem(b, |mem| mem.copy_to_slice(&mut block)).ok_or(EINVAL)?;
                for raw in block.chunks_exact(8) {
                    if entries.len() as u64 == n {
                        break;
                    }
                    crc = checksum_continue(crc, raw);
                    let mut v = [0u8; 8];
                    v.copy_from_slice(raw);
                    entries.push(u64::from_le_bytes(v), GFP_KERNEL)?;
                }
            }
            at += (blocks as u64) << PAGE_SHIFT;
        }
        if !crc != header.journal_checksum {
            pr_err!("rxdsk: rxd{}: the committed journal's table is damaged; not replayed\n", self.id);
            return Err(EUCLEAN);
        }
        let pages = (size.div_ceil(PAGE_SIZE as u64)) as u64;
        if entries.iter().any(|&e| e & !JOURNAL_HOLE >= pages) {
            return Err(EUCLEAN);
        }
        let mut written = Written::default();
        let mut data_at = table_at + (journal_table_blocks(n) << PAGE_SHIFT);
        let mut rest = &entries[..];
        while !rest.is_empty() {
            // The next entries with at most IO_PAGES data pages among them.
            let mut take = 0;
            let mut data = 0;
            while take < rest.len() && (data < IO_PAGES || rest[take] & JOURNAL_HOLE != 0) {
                if rest[take] & JOURNAL_HOLE == 0 {
                    data += 1;
                }
                take += 1;
            }
            let (chunk, tail) = rest.split_at(take);
            if data > 0 {
                file.read(data_at, &buf, data).map_err(|e| self.count_error(e))?;
                data_at += (data as u64) << PAGE_SHIFT;
            }
            // Write runs of consecutive indexes: data pages from `buf`, holes as zeroes.
            let mut slot = 0;
            let mut i = 0;
            while i < chunk.len() {
                let hole = chunk[i] & JOURNAL_HOLE != 0;
                let first = chunk[i] & !JOURNAL_HOLE;
                let mut run = 1;
                while i + run < chunk.len()
                    && (chunk[i + run] & JOURNAL_HOLE != 0) == hole
                    && chunk[i + run] & !JOURNAL_HOLE == first + run as u64
                {
                    run += 1;
                }
                let pos = first << PAGE_SHIFT;
                let len = (run as u64) << PAGE_SHIFT;
                if hole {
                    file.zeroout(pos, len).map_err(|e| self.count_error(e))?;
                } else {
                    file.write_from(pos, &buf, slot, run, false).map_err(|e| self.count_error(e))?;
                    slot += run;
                }
                self.wrote(&mut written, len);
                i += run;
            }
            written.pages += chunk.len() as u64;
            rest = tail;
            ffi::cond_resched();
        }
        file.flush_cache().map_err(|e| self.count_error(e))?;
        let generation = header.flushing_generation;
        let clean = self.header(attached, generation, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
        self.write_header(&attached.file, &clean)?;
        written.bytes += RXDSK_IMAGE_META_SIZE;
        attached.generation = generation;
        attached.zero_fill = false;
        attached.replay_pending = false;
        Ok(written)
    }

    /// The flush protocol without a journal: header FLUSHING; the data area zeroed if it never
    /// held ours; every changed page (zeros for holes) in index order, `IO_PAGES` at a time;
    /// the backing device's cache flushed; header CLEAN with the next generation (FUA). A
    /// failure leaves every unwritten change marked, and the header FLUSHING.
    fn direct_write_back(&self, attached: &mut Attached, mut report: RxdskFlush) -> Result<RxdskFlush> {
        let size = self.capacity.load(Ordering::Acquire);
        let next = attached.generation + 1;
        let fail = |e: Error| self.count_error(e);
        self.write_header(&attached.file, &self.header(attached, attached.generation, RXDSK_IMAGE_FLUSHING, 0))?;
        if attached.zero_fill {
            attached.file.zeroout(0, size.next_multiple_of(PAGE_SIZE as u64)).map_err(fail)?;
            report.bytes_written += size;
        }
        let buf = PageBuf::new(IO_PAGES)?;
        let mut taken = KVec::<u64>::with_capacity(IO_PAGES, GFP_KERNEL)?;
        let mut from = 0u64;
        loop {
            // A run of consecutive changed indexes, at most IO_PAGES.
            taken.clear();
            let Some(first) = self.tracked().next_changed(from) else { break };
            let mut index = first;
            while taken.len() < IO_PAGES && self.tracked().next_changed(index) == Some(index) {
                if let Err(e) = self.take_into(&buf, taken.len(), index) {
                    for &i in taken.iter() {
                        self.tracked().redirty(i);
                    }
                    return Err(e);
                }
                taken.push(index, GFP_KERNEL)?;
                index += 1;
            }
            if let Err(e) = attached.file.write(first << PAGE_SHIFT, &buf, taken.len(), false) {
                for &i in taken.iter() {
                    self.tracked().redirty(i);
                }
                return Err(fail(e));
            }
            let bytes = (taken.len() as u64) << PAGE_SHIFT;
            report.pages_written += taken.len() as u64;
            report.bytes_written += bytes;
            self.written_back.fetch_add(bytes, Ordering::Relaxed);
            from = index;
            ffi::cond_resched();
        }
        attached.file.flush_cache().map_err(fail)?;
        let header = self.header(attached, next, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
        self.write_header(&attached.file, &header)?;
        report.bytes_written += 2 * RXDSK_IMAGE_META_SIZE;
        attached.generation = next;
        attached.zero_fill = false;
        report.generation = next;
        self.backing_flushes.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    fn build(id: u32, config: &DeviceConfig, unloaded: Unloaded) -> Result<Arc<Self>> {
        let disk = GenDisk::new(&DiskConfig {
            logical_block_size: config.logical_block_size,
            capacity_sectors: config.size_bytes >> SECTOR_SHIFT,
            read_only: config.read_only,
        })?;
        let stats = Stats::new()?;
        let zstore = match config.compress {
            Some(algorithm) => {
                let name = CString::try_from_fmt(fmt!("rxd{}", id))?;
                Some(KBox::pin_init(ZStore::new(&name, algorithm, config.mem_limit_bytes)?, GFP_KERNEL)?)
            }
            None => None,
        };
        let device = Arc::pin_init(
            try_pin_init!(Self {
                id,
                disk,
                store <- PageStore::new(config.mem_limit_bytes >> PAGE_SHIFT),
                zstore,
                deferred <- Deferred::new(),
                periodic <- Periodic::new(),
                unloaded,
                capacity: AtomicU64::new(config.size_bytes),
                logical_block_size: config.logical_block_size,
                mem_limit_bytes: config.mem_limit_bytes,
                read_only: config.read_only,
                stats,
                backing <- new_mutex!(None),
                view: BackingView::default(),
                long_ops: AtomicU32::new(0),
                written_back: AtomicU64::new(0),
                backing_flushes: AtomicU64::new(0),
                atomic_flushes: AtomicU64::new(0),
                backing_errors: AtomicU64::new(0),
                backing_reads: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        Ok(device)
    }

    /// Makes the disk visible; bios start arriving.
    fn add(self: &Arc<Self>) -> Result {
        let name = CString::try_from_fmt(fmt!("rxd{}", self.id))?;
        // SAFETY: `self` lives in an `Arc` (it never moves), holds `deferred`, and drains it
        // in `PinnedDrop` after removing the disk (no bio can be pushed then).
        // INVARIANT: the owner is set before the disk is added.
        unsafe { self.deferred.set_owner(self) };
        // SAFETY: As above: `PinnedDrop` stops the period before the fields go.
        unsafe { self.periodic.set_owner(self) };
        // SAFETY: `self` lives in an `Arc` (it never moves) and owns the disk, which its
        // `PinnedDrop` removes before the memory is freed.
        // INVARIANT: the disk is added with `self` as its handler.
        unsafe { self.disk.add(self, name.to_bytes()) }
    }

    pub(crate) fn logical_block_size(&self) -> u32 {
        self.logical_block_size
    }

    pub(crate) fn openers(&self) -> u32 {
        self.disk.openers()
    }

    /// Claims the device against openers for a non-forced destroy (`EBUSY` if open); the claim
    /// lasts until the device is gone.
    pub(crate) fn claim_for_destroy(&self) -> Result {
        self.disk.claim()?.hold_until_removed();
        Ok(())
    }

    pub(crate) fn info(&self) -> RxdskInfo {
        let backing_flags = match self.view.mode.load(Ordering::Acquire) {
            0 => 0,
            m if m == RXDSK_IMAGE_WRITETHROUGH + 1 => RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH,
            _ => RXDSK_FLAG_BACKED,
        };
        let journal_bytes = self.view.journal_bytes.load(Ordering::Relaxed);
        let devt = self.view.devt.load(Ordering::Relaxed);
        RxdskInfo {
            id: self.id,
            logical_block_size: self.logical_block_size,
            size_bytes: self.capacity.load(Ordering::Relaxed),
            mem_limit_bytes: self.mem_limit_bytes,
            flags: if self.read_only { RXDSK_FLAG_READ_ONLY } else { 0 }
                | if self.is_compressed() { RXDSK_FLAG_COMPRESSED } else { 0 }
                | backing_flags,
            used_bytes: self.used_bytes(),
            open_count: self.openers(),
            pad: 0,
            dirty_pages: self.tracked().changed(),
            unloaded_pages: self.unloaded.count(),
            journal_bytes,
            backing_major: (devt >> 32) as u32,
            backing_minor: devt as u32,
        }
    }

    pub(crate) fn stats(&self) -> RxdskStats {
        let mut s = self.stats.snapshot();
        s.id = self.id;
        s.pages = self.zstore.as_ref().map_or_else(|| self.store.pages(), |z| z.pages());
        s.dirty_pages = self.tracked().changed();
        s.written_back_bytes = self.written_back.load(Ordering::Relaxed);
        s.backing_flushes = self.backing_flushes.load(Ordering::Relaxed);
        s.backing_errors = self.backing_errors.load(Ordering::Relaxed);
        s.flush_generation = self.view.generation.load(Ordering::Relaxed);
        s.backing_reads = self.backing_reads.load(Ordering::Relaxed);
        s.atomic_flushes = self.atomic_flushes.load(Ordering::Relaxed);
        s
    }

    /// The store in use, as the backing device's code sees it.
    fn tracked(&self) -> &dyn Tracked {
        match &self.zstore {
            Some(z) => z.as_ref().get_ref(),
            None => &self.store,
        }
    }

    /// Takes changed page `index` into slot `slot` of `buf` for writing back; whether it had
    /// a page (else zeros). A page that cannot be read (a corrupted compressed object) is
    /// marked changed again and fails the flush with EIO.
    fn take_into(&self, buf: &PageBuf, slot: usize, index: u64) -> Result<bool> {
        match buf.with_mem(slot, |mem| self.tracked().take_changed(index, mem)).ok_or(EINVAL)? {
            Ok(present) => Ok(present),
            Err(_) => {
                self.tracked().redirty(index);
                Err(self.count_error(EIO))
            }
        }
    }

    /// Memory held for the data: pages, or for a compressed device everything it really uses.
    fn used_bytes(&self) -> u64 {
        self.zstore.as_ref().map_or_else(|| self.store.pages() << PAGE_SHIFT, |z| z.total_bytes())
    }

    /// What compression achieves; `EINVAL` for a device without it.
    pub(crate) fn compr_stats(&self) -> Result<RxdskComprStats> {
        let mut s = self.zstore.as_ref().ok_or(EINVAL)?.compr_stats();
        s.id = self.id;
        Ok(s)
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.zstore.is_some()
    }

    /// Grows at once; shrinks only with no opener unless forced, then frees what lies past the
    /// new end once no bio that saw the old size is in flight. `size` is validated by the caller.
    pub(crate) fn resize(&self, size: u64, force: bool) -> Result {
        let old = self.capacity.load(Ordering::Acquire);
        // The image's size is fixed while a backing device is attached: detach first.
        if size != old && self.is_backed() {
            return Err(EBUSY);
        }
        if size >= old {
            self.capacity.store(size, Ordering::Release);
            self.disk.set_capacity(size >> SECTOR_SHIFT);
            return Ok(());
        }
        // Without force, nobody may open the device until the shrink is done (zram's claim).
        let _claim = if force { None } else { Some(self.disk.claim()?) };
        self.capacity.store(size, Ordering::Release);
        self.disk.set_capacity(size >> SECTOR_SHIFT);
        // Bios that passed the bound check against the old size finish before this returns.
        drop(self.disk.freeze());
        let cut = shrink(size);
        if let Some(zs) = &self.zstore {
            if let Some(z) = cut.zero {
                zs.zero(z.index, z.offset, z.len, false).map_err(|_| ENOMEM)?;
            }
            zs.erase_range(cut.first_freed, layout::LAST_PAGE_INDEX, false).map_err(|_| ENOMEM)?;
        } else {
            if let Some(z) = cut.zero {
                // Bytes past the end must read as zeros if the device grows again.
                self.store.zero(z.index, z.offset, z.len);
            }
            self.store.remove_range(cut.first_freed, layout::LAST_PAGE_INDEX);
        }
        // A forced shrink may leave cached pages past the end in an opener's page cache.
        self.disk.invalidate_cache_from(size);
        Ok(())
    }

    fn handle(&self, bio: &Bio) -> Result<(), (Status, Failure)> {
        let op = bio.op();
        if bio.flush_or_fua() || op == Op::Flush {
            // Only reached when the disk advertises a volatile write cache (never for plain
            // RAM, where the block layer completes flushes itself): complete at once.
            self.stats.flush();
            if op == Op::Flush {
                return Ok(());
            }
        }
        let pos = bio.position();
        let len = bio.len();
        let end = pos.checked_add(len).ok_or((Status::IoError, Failure::Io))?;
        if end > self.capacity.load(Ordering::Acquire) {
            return Err((Status::IoError, Failure::Io));
        }
        match op {
            Op::Read => {
                let nowait = bio.nowait();
                bio.for_each_segment((Status::IoError, Failure::Io), |pos, buf| {
                    self.read_span(pos, buf, nowait).map_err(|e| match e {
                        StoreError::WouldBlock => (Status::Again, Failure::Alloc),
                        _ => (Status::IoError, Failure::Io),
                    })
                })?;
                self.stats.account(Counter::Read, len);
            }
            Op::Write => {
                if self.read_only {
                    return Err((Status::IoError, Failure::Io));
                }
                let nowait = bio.nowait();
                let gfp = if nowait { ffi::GFP_NOWAIT } else { ffi::gfp_noio() };
                let mut batch = FreeBatch::new(&self.store);
                bio.for_each_segment((Status::IoError, Failure::Io), |pos, buf| {
                    self.write_span(pos, buf, gfp, nowait, &mut batch).map_err(|e| match e {
                        StoreError::Limit => (Status::NoSpace, Failure::Limit),
                        StoreError::NoMemory | StoreError::WouldBlock if nowait => (Status::Again, Failure::Alloc),
                        StoreError::NoMemory | StoreError::WouldBlock => (Status::IoError, Failure::Alloc),
                        StoreError::Corrupt => (Status::IoError, Failure::Io),
                    })
                })?;
                self.stats.account(Counter::Write, len);
            }
            Op::Discard | Op::WriteZeroes => {
                if self.read_only {
                    return Err((Status::IoError, Failure::Io));
                }
                let nowait = bio.nowait();
                self.free_range(pos, end, nowait).map_err(|e| match e {
                    StoreError::WouldBlock if nowait => (Status::Again, Failure::Alloc),
                    _ => (Status::IoError, Failure::Alloc),
                })?;
                let counter = if op == Op::Discard { Counter::Discard } else { Counter::WriteZeroes };
                self.stats.account(counter, len);
            }
            Op::Flush => {}
            Op::Other => return Err((Status::NotSupported, Failure::Io)),
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at device position `pos`, page by page of the store.
    fn read_span(&self, pos: u64, mut buf: IoMem<'_>, nowait: bool) -> Result<(), StoreError> {
        for piece in pieces(pos, buf.len() as u64) {
            let (chunk, rest) = buf.split_at(piece.len);
            match &self.zstore {
                Some(z) => z.read(piece.index, piece.offset, chunk, nowait)?,
                None => self.store.read(piece.index, piece.offset, chunk),
            }
            buf = rest;
        }
        Ok(())
    }

    /// Writes `buf` at device position `pos`; a whole page of zeros stores no page (the one it
    /// replaces goes with `batch`).
    fn write_span(
        &self,
        pos: u64,
        mut buf: IoMem<'_>,
        gfp: kernel::bindings::gfp_t,
        nowait: bool,
        batch: &mut FreeBatch<'_>,
    ) -> Result<(), StoreError> {
        for piece in pieces(pos, buf.len() as u64) {
            let (chunk, rest) = buf.split_at(piece.len);
            let zero = piece.is_whole() && chunk.is_zero();
            match &self.zstore {
                Some(z) if zero => {
                    z.erase(piece.index, nowait)?;
                }
                Some(z) => z.write(piece.index, piece.offset, &chunk, nowait)?,
                None if zero => {
                    self.store.erase(piece.index, batch, gfp)?;
                }
                None => self.store.write(piece.index, piece.offset, &chunk, gfp, nowait)?,
            }
            if zero {
                self.stats.zero_page();
            }
            buf = rest;
        }
        Ok(())
    }

    /// Discard and write-zeroes: frees every whole page in `pos..end`, zeroes partial ones.
    /// On a compressed device, `nowait` (REQ_NOWAIT) makes a busy page `WouldBlock`.
    fn free_range(&self, pos: u64, end: u64, nowait: bool) -> Result<(), StoreError> {
        let p = punch(pos, end);
        if let Some(z) = &self.zstore {
            for part in [p.head, p.tail].into_iter().flatten() {
                z.zero(part.index, part.offset, part.len, nowait)?;
            }
            if let Some((first, last)) = p.whole {
                z.erase_range(first, last, nowait)?;
            }
            return Ok(());
        }
        if let Some(h) = p.head {
            self.store.zero(h.index, h.offset, h.len);
        }
        if let Some((first, last)) = p.whole {
            self.store.erase_range(first, last)?;
        }
        if let Some(t) = p.tail {
            self.store.zero(t.index, t.offset, t.len);
        }
        Ok(())
    }
}

impl BioHandler for Device {
    fn disk(&self) -> &GenDisk<Self> {
        &self.disk
    }

    fn submit_bio(&self, bio: Bio) {
        if self.needs_load(&bio).is_some() || self.needs_write_through(&bio) {
            if bio.nowait() {
                // Loading waits for the backing device.
                self.stats.failure(Failure::Alloc);
                bio.end(Status::Again);
            } else {
                self.deferred.push(bio);
            }
            return;
        }
        self.complete(bio);
    }
}

impl Device {
    /// A write, discard or write-zeroes of a writethrough device, in the worker: loads what
    /// it touches if needed, applies it to the store, writes the pages to the backing device,
    /// and only then completes it. Under the backing lock, so writethrough bios reach the
    /// backing device one at a time, in the order they change the store.
    fn handle_write_through(&self, bio: Bio) {
        let first = bio.position() >> PAGE_SHIFT;
        let last = bio.position().saturating_add(bio.len() - 1) >> PAGE_SHIFT;
        let mut backing = self.backing.lock();
        let Some(attached) = Option::as_mut(&mut *backing) else {
            // Detached meanwhile: a plain RAM write now.
            drop(backing);
            self.complete(bio);
            return;
        };
        if self.unloaded.next_set(first, last).is_some() {
            let (from, to) = (first & !(MISS_CLUSTER - 1), last | (MISS_CLUSTER - 1));
            if self.load(&attached.file, from, to, ffi::gfp_noio()).is_err() {
                self.stats.failure(Failure::Io);
                bio.end(Status::IoError);
                return;
            }
        }
        if let Err((status, why)) = self.handle(&bio) {
            self.stats.failure(why);
            bio.end(status);
            return;
        }
        match self.write_through(attached, first, last) {
            Ok(()) => bio.end(Status::Ok),
            Err(_) => {
                self.stats.failure(Failure::Io);
                bio.end(Status::IoError);
            }
        }
    }

    fn complete(&self, bio: Bio) {
        match self.handle(&bio) {
            Ok(()) => bio.end(Status::Ok),
            Err((status, why)) => {
                self.stats.failure(why);
                bio.end(status);
            }
        }
    }
}

impl PeriodicTask for Device {
    /// The automatic flush: writes back what changed, if anything did.
    fn run_periodic(&self) {
        let mut backing = self.backing.lock();
        let Some(attached) = Option::as_mut(&mut *backing) else { return };
        if !attached.zero_fill && !attached.replay_pending && self.tracked().next_changed(0).is_none() {
            return;
        }
        if let Err(e) = self.write_back(attached) {
            // At most one line per interval.
            pr_warn!("rxdsk: rxd{}: automatic flush failed ({:?}); retried in {} s\n", self.id, e, attached.flush_interval_secs);
        }
        self.publish(&backing);
    }
}

impl DeferredHandler for Device {
    fn handle_deferred(&self, bio: Bio) {
        if self.needs_write_through(&bio) {
            self.handle_write_through(bio);
            return;
        }
        let loaded = match self.needs_load(&bio) {
            None => Ok(()),
            Some((first, last)) => {
                // The aligned cluster around the miss comes in too (read-ahead).
                let first = first & !(MISS_CLUSTER - 1);
                let last = last | (MISS_CLUSTER - 1);
                let backing = self.backing.lock();
                match backing.as_ref() {
                    Some(attached) => self.load(&attached.file, first, last, ffi::gfp_noio()),
                    None => Err(EIO),
                }
            }
        };
        match loaded {
            Ok(()) => self.complete(bio),
            Err(_) => {
                self.stats.failure(Failure::Io);
                bio.end(Status::IoError);
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Device {
    fn drop(self: Pin<&mut Self>) {
        // No automatic flush runs after this.
        self.periodic.stop();
        // INVARIANT: no bio reaches `self` after this; the store's pages go with its fields.
        self.disk.remove();
        // Bios deferred before the removal are handled before the fields go.
        self.deferred.drain();
    }
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
