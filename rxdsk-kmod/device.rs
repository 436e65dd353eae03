// SPDX-License-Identifier: GPL-2.0

//! One rxdsk device: a gendisk whose bios go to a [`Store`], and, while one is attached, an
//! [`Image`] on a backing device. This file is the device's policy: its lifecycle (create,
//! restore, attach, detach, flush, resize, destroy) and how each bio is dispatched. Safe Rust
//! over `sys`, `store` and `image`.

mod cache;
mod stats;

use crate::abi::{
    RxdskComprStats, RxdskFlush, RxdskInfo, RxdskStats, RXDSK_FLAG_BACKED, RXDSK_FLAG_COMPRESSED, RXDSK_FLAG_READ_ONLY,
    RXDSK_COMPRESS_LZ4, RXDSK_COMPRESS_LZO, RXDSK_COMPRESS_LZO_RLE, RXDSK_COMPRESS_ZSTD, RXDSK_FLAG_WRITEAROUND,
    RXDSK_FLAG_WRITETHROUGH,
    RXDSK_MAX_FLUSH_INTERVAL, RXDSK_MAX_SIZE, RXDSK_PAGE_SIZE,
};
use crate::image::format::{RXDSK_IMAGE_FLUSHING, RXDSK_IMAGE_WRITEAROUND};
use crate::image::{self, DeviceData, Image, ImageStats, Mode, View};
use crate::layout::{self, pieces, punch, shrink};
use crate::store::{unloaded::Unloaded, Batch, Store, StoreError};
use crate::sys::compress::Algorithm;
use crate::sys::deferred::{Deferred, DeferredHandler};
use crate::sys::fanout;
use crate::sys::disk::{Attr, AttrText, Bio, BioHandler, DiskConfig, GenDisk, Op, Segments, Status};
use crate::sys::ffi::{self, Gfp, NoIo, PAGE_SIZE, SECTOR_SHIFT};
use crate::sys::iomem::IoMem;
use crate::sys::periodic::{Periodic, PeriodicTask};
use crate::sys::rwsem::PercpuRwSem;
use crate::sys::shrinker::{ShrinkTask, Shrinker};
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    str::{CStr, CString},
    sync::{
        lock::{mutex::MutexBackend, Guard},
        Arc, Mutex,
    },
};
use cache::Cache;
use stats::{Counter, Failure, Stats};

/// A read miss loads the aligned cluster of this many pages around it (read-ahead).
const MISS_CLUSTER: u64 = 16;
/// Pages a preload loads per hold of the backing lock (read misses get in between).
const PRELOAD_CHUNK: u64 = 1024;
/// A compressed bio this big or bigger is shared with other CPUs (see `Device::in_parts`).
const FAN_OUT_MIN: u64 = 64 * 1024;
/// What a participant takes at a time: 2 pages, whose compression (microseconds) outweighs
/// taking it (an atomic increment), and which is about how long the submitter spins for the
/// last helper when it is done.
const FAN_OUT_CHUNK: u64 = 8 * 1024;

const PAGE_SHIFT: u32 = kernel::page::PAGE_SHIFT as u32;
const _: () = assert!(PAGE_SIZE as u64 == RXDSK_PAGE_SIZE);
const _: () = assert!(PAGE_SIZE == layout::STORE_PAGE_SIZE);

/// The largest size this platform can index: [`RXDSK_MAX_SIZE`], or less where page indexes
/// (`usize`, the XArray's index type) are narrower than 64 bits.
pub(crate) const MAX_SIZE: u64 = layout::max_device_size(RXDSK_MAX_SIZE, usize::MAX as u64);

/// Whether `size` is a size a device with `block_size` blocks can have: non-zero, a multiple
/// of the block size, at most [`MAX_SIZE`].
pub(crate) fn valid_size(size: u64, block_size: u32) -> bool {
    size != 0 && size <= MAX_SIZE && size.checked_rem(u64::from(block_size)) == Some(0)
}

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
/// - While `unloaded` has pages, `backing` holds the image they are read from (DETACH
///   loads them all first), and no I/O touches a page whose bit is set: such bios go through
///   `deferred`, which loads the page first. A bit is set again only by eviction (see
///   `device/cache.rs`), for a clean page, with `backing` and `cut` (for writing) held; so
///   bios that change the store check the bits again under `cut`, and a read that finds no
///   page looks at its bit again.
/// - Every bio that changes the store does so holding `cut` for reading, and checks the
///   capacity and the writethrough mode under it; a flush's cut, a shrink and the start of
///   tracking (ATTACH) take it for writing: no change is under way then, deferred bios
///   included.
/// - `backing` is taken only through [`Device::lock_backing`], in a NOIO scope: the bios of
///   the deferred worker wait for it, and the device may be the swap device.
#[pin_data(PinnedDrop)]
pub(crate) struct Device {
    id: u32,
    /// Declared first: removed and put before the page store goes.
    disk: GenDisk<Device>,
    store: Store,
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
    /// The limit is a cache size while a backing device is attached (see `device/cache.rs`).
    cache: Cache,
    read_only: bool,
    stats: Stats,
    /// Serialises ATTACH, DETACH and FLUSH of this device; `None` while detached.
    #[pin]
    backing: Mutex<Option<Image>>,
    /// Held for reading by every bio while it changes the store (see the invariants).
    #[pin]
    cut: PercpuRwSem,
    view: View,
    image_stats: ImageStats,
    /// Control operations running without the registry lock (see `ctl::registry::LongOp`).
    long_ops: AtomicU32,
    /// Reports being read without the registry lock (see `ctl::registry::Peek`).
    peeks: AtomicU64,
    /// Gives clean pages back under memory pressure, on a device that can evict; freed first
    /// in `PinnedDrop`.
    shrinker: Shrinker<Device>,
    /// Taken by the shrinker's scans, one at a time (see `scan_freeable`).
    #[pin]
    shrinking: Mutex<()>,
}

impl Device {
    pub(crate) fn create(id: u32, config: &DeviceConfig) -> Result<Arc<Self>> {
        let unloaded = if Cache::can_evict(config.size_bytes, config.mem_limit_bytes) {
            Unloaded::blank(config.size_bytes.div_ceil(PAGE_SIZE as u64))?
        } else {
            Unloaded::none()
        };
        let device = Self::build(id, config, unloaded)?;
        device.add()?;
        Ok(device)
    }

    /// Creates a device from the image on `path`: size, block size, mode and journal from its
    /// header (a committed journal replayed first), attached and clean; pages are read from
    /// the image on first access (or by [`Device::load_all`]). `EUCLEAN` for an
    /// image whose last flush did not complete, unless `force`. `mem_limit_bytes` (0: none)
    /// is the cache size (see `device/cache.rs`). Returns the device and the generation.
    pub(crate) fn restore(
        id: u32,
        path: &CStr,
        force: bool,
        compress: Option<Algorithm>,
        mem_limit_bytes: u64,
    ) -> Result<(Arc<Self>, u64)> {
        // The header first, through a shared open: the exclusive one needs the device.
        let header = image::read_header_at(path)?;
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
            mem_limit_bytes,
            read_only: false,
            compress,
        };
        if !valid_size(config.size_bytes, config.logical_block_size) {
            return Err(EINVAL);
        }
        // Writearound drops what it writes: only a device that can evict (has a cache).
        if header.mode == RXDSK_IMAGE_WRITEAROUND && !Cache::can_evict(config.size_bytes, mem_limit_bytes) {
            return Err(EINVAL);
        }
        let device = Self::build(id, &config, Unloaded::all(config.size_bytes.div_ceil(PAGE_SIZE as u64))?)?;
        let image = {
            let _noio = NoIo::enter();
            Image::restore(&device.data(), path, device.holder(), &header)?
        };
        device.store.start_tracking_clean();
        let generation = image.generation();
        {
            let mut backing = device.lock_backing();
            *backing = Some(image);
            device.view.publish(backing.as_ref());
        }
        device.add()?;
        device.periodic.start(header.flush_interval_secs.min(RXDSK_MAX_FLUSH_INTERVAL));
        Ok((device, generation))
    }

    /// What the image protocol works on.
    fn data(&self) -> DeviceData<'_> {
        DeviceData {
            id: self.id,
            store: &self.store,
            unloaded: &self.unloaded,
            stats: &self.image_stats,
            cut: &self.cut,
            size: self.capacity.load(Ordering::Acquire),
            logical_block_size: self.logical_block_size,
        }
    }

    /// Loads every page still on the backing device, a chunk per hold of the backing lock; a
    /// cache device stops at its high-water mark.
    pub(crate) fn load_all(&self) -> Result {
        let mut from = 0;
        while let Some(first) = self.unloaded.next_set(from, u64::MAX) {
            if self.caches() && self.store.used_bytes() >= self.high_water() {
                break;
            }
            let last = first.saturating_add(PRELOAD_CHUNK - 1);
            {
                let backing = self.lock_backing();
                let image = backing.as_ref().ok_or(ENXIO)?;
                image.load(&self.data(), first, last, ffi::GFP_KERNEL)?;
            }
            from = last.saturating_add(1);
            ffi::cond_resched();
        }
        Ok(())
    }

    /// The backing lock, in a NOIO scope (allocations under it must not write to us).
    fn lock_backing(&self) -> BackingLock<'_> {
        let noio = NoIo::enter();
        BackingLock { guard: self.backing.lock(), _noio: noio }
    }

    /// Whether the bio changes the store.
    fn changes_data(bio: &Bio) -> bool {
        matches!(bio.op(), Op::Write | Op::Discard | Op::WriteZeroes) && bio.len() > 0
    }

    /// Whether the bio changes data of a writethrough device (it then completes only once
    /// the change is on the backing device).
    fn needs_write_through(&self, bio: &Bio) -> bool {
        self.view.is_writethrough() && Self::changes_data(bio)
    }

    /// Whether this device's memory limit is a cache size now: it has one, and a backing
    /// device to evict to.
    fn caches(&self) -> bool {
        self.cache.evicts() && self.view.is_attached()
    }

    /// Memory use above which the periodic work and the loader make room ahead of need.
    fn high_water(&self) -> u64 {
        self.cache.high_water()
    }

    fn low_water(&self) -> u64 {
        self.cache.low_water()
    }

    /// Brings memory use down to `goal` bytes: clean pages are evicted, and if that is not
    /// enough, a flush makes the dirty ones clean and they are evicted in turn. The caller
    /// holds the backing lock (`image` is its image). `ENOSPC` if the device still has no
    /// room for a page.
    fn make_room(&self, image: &mut Image, goal: u64) -> Result {
        if self.store.used_bytes() <= goal {
            return Ok(());
        }
        let data = self.data();
        if image.settle(&data)? {
            self.cache.evict_to(&self.store, &self.unloaded, &self.cut, goal, None);
        }
        if self.store.used_bytes() > goal {
            let flushed = image.write_back(&data);
            self.view.publish(Some(image));
            flushed?;
            self.cache.room_flushes.fetch_add(1, Ordering::Relaxed);
            if image.settle(&data)? {
                self.cache.evict_to(&self.store, &self.unloaded, &self.cut, goal, None);
            }
        }
        if self.store.used_bytes() + PAGE_SIZE as u64 > self.mem_limit_bytes {
            return Err(ENOSPC);
        }
        Ok(())
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

    /// Attaches the block device at `path` as backing device (see [`Image::attach`]).
    /// `check` is given the backing device's number once it is open and refuses it (a device
    /// that leads back to this one).
    pub(crate) fn attach(
        &self,
        path: &CStr,
        journal_bytes: u64,
        mode: Mode,
        flush_interval_secs: u32,
        check: impl FnOnce((u32, u32)) -> Result,
    ) -> Result {
        // Writearound drops what it writes: only a device that can evict (has a cache).
        if flush_interval_secs > RXDSK_MAX_FLUSH_INTERVAL || (mode == Mode::Writearound && !self.cache.evicts()) {
            return Err(EINVAL);
        }
        // Held from the size check on: a resize waits for it.
        let mut backing = self.lock_backing();
        if backing.is_some() {
            return Err(EBUSY);
        }
        let image = Image::attach(&self.data(), path, self.holder(), journal_bytes, mode, flush_interval_secs, check)?;
        {
            // With no change under way: every writer after this sees tracking on and the
            // mode, every one before is done and its page is found by the first flush.
            let _no_change = self.cut.write();
            self.store.start_tracking();
            *backing = Some(image);
            // From here writes are deferred (writethrough) and wait for the lock we hold.
            self.view.publish(backing.as_ref());
        }
        if mode != Mode::Writeback {
            // The whole image first: a writethrough image is complete from the start.
            let image = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
            if let Err(e) = image.write_back(&self.data()) {
                drop(self.unpublish(&mut backing));
                return Err(e);
            }
            self.view.publish(backing.as_ref());
        }
        // Not under the lock: a running periodic flush waits for it, and `start` waits for
        // that.
        drop(backing);
        self.periodic.start(flush_interval_secs);
        Ok(())
    }

    /// The device number of the backing device, if one is attached: (0, 0) otherwise.
    pub(crate) fn backing_devt(&self) -> (u32, u32) {
        self.view.devt()
    }

    /// The device number of this device's disk.
    pub(crate) fn devt(&self) -> (u32, u32) {
        self.disk.devt()
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
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

    /// Counts a report read without the registry lock.
    pub(crate) fn begin_peek(&self) {
        self.peeks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_peek(&self) {
        self.peeks.fetch_sub(1, Ordering::Release);
        ffi::wake_counter(&self.peeks);
    }

    /// Waits until no report is being read (none can start: the caller took the device out
    /// of the registry).
    pub(crate) fn wait_for_peeks(&self) {
        ffi::wait_below(&self.peeks, 1);
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
        let mut backing = self.lock_backing();
        let image = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
        let data = self.data();
        // Pages still only on the backing device must come in before it goes.
        image.load(&data, 0, u64::MAX, ffi::GFP_KERNEL)?;
        if let Err(e) = image.write_back(&data) {
            self.view.publish(backing.as_ref());
            if !discard_dirty {
                return Err(e);
            }
        }
        drop(self.unpublish(&mut backing));
        Ok(())
    }

    /// Ends tracking and takes the image out, with no change under way; the caller closes it
    /// after that: closing the backing device takes its `open_mutex`, whose holders allocate
    /// memory, and reclaim may wait for the cut lock (the shrinker's eviction).
    fn unpublish(&self, backing: &mut BackingLock<'_>) -> Option<Image> {
        let _no_change = self.cut.write();
        self.store.stop_tracking();
        let image = backing.take();
        self.view.publish(None);
        image
    }

    /// Whether the device has a backing device and data not yet flushed to it.
    pub(crate) fn has_unflushed(&self) -> bool {
        self.lock_backing().as_ref().is_some_and(|image| image.has_unflushed(&self.data()))
    }

    /// FLUSH: writes back every change and commits the image.
    pub(crate) fn flush(&self) -> Result<RxdskFlush> {
        let mut backing = self.lock_backing();
        let image = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
        let result = image.write_back(&self.data());
        self.view.publish(backing.as_ref());
        result
    }

    fn build(id: u32, config: &DeviceConfig, unloaded: Unloaded) -> Result<Arc<Self>> {
        let disk = GenDisk::new(&DiskConfig {
            logical_block_size: config.logical_block_size,
            capacity_sectors: config.size_bytes >> SECTOR_SHIFT,
            read_only: config.read_only,
        })?;
        let stats = Stats::new()?;
        let name = CString::try_from_fmt(fmt!("rxd{}", id))?;
        let store = Store::new(&name, config.compress, config.mem_limit_bytes)?;
        let device = Arc::pin_init(
            try_pin_init!(Self {
                id,
                disk,
                store,
                deferred <- Deferred::new(),
                periodic <- Periodic::new(),
                unloaded,
                capacity: AtomicU64::new(config.size_bytes),
                logical_block_size: config.logical_block_size,
                mem_limit_bytes: config.mem_limit_bytes,
                cache: Cache::new(config.size_bytes, config.mem_limit_bytes)?,
                read_only: config.read_only,
                stats,
                backing <- new_mutex!(None),
                cut <- PercpuRwSem::new(),
                view: View::default(),
                image_stats: ImageStats::default(),
                long_ops: AtomicU32::new(0),
                peeks: AtomicU64::new(0),
                shrinker: Shrinker::new(),
                shrinking <- new_mutex!(()),
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
        // SAFETY: `self` lives in an `Arc` (it never moves), holds `periodic`, and its
        // `PinnedDrop` stops the period before the fields go.
        unsafe { self.periodic.set_owner(self) };
        if self.cache.evicts() {
            // SAFETY: `self` lives in an `Arc` (it never moves), holds `shrinker`, and frees it
            // first in `PinnedDrop`.
            unsafe { self.shrinker.register(self, self.id)? };
        }
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
        let backing_flags = match (self.view.is_attached(), self.view.is_writethrough(), self.view.is_writearound()) {
            (false, _, _) => 0,
            // Writearound keeps writethrough's guarantee: old clients see that.
            (true, true, true) => RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH | RXDSK_FLAG_WRITEAROUND,
            (true, true, false) => RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH,
            (true, false, _) => RXDSK_FLAG_BACKED,
        };
        let (backing_major, backing_minor) = self.view.devt();
        RxdskInfo {
            id: self.id,
            logical_block_size: self.logical_block_size,
            size_bytes: self.capacity.load(Ordering::Relaxed),
            mem_limit_bytes: self.mem_limit_bytes,
            flags: if self.read_only { RXDSK_FLAG_READ_ONLY } else { 0 }
                | if self.is_compressed() { RXDSK_FLAG_COMPRESSED } else { 0 }
                | backing_flags,
            used_bytes: self.store.held_bytes(),
            open_count: self.openers(),
            pad: 0,
            dirty_pages: self.store.changed(),
            unloaded_pages: self.unloaded.count(),
            journal_bytes: self.view.journal_bytes(),
            backing_major,
            backing_minor,
        }
    }

    pub(crate) fn stats(&self) -> RxdskStats {
        let mut s = self.stats.snapshot();
        let image = &self.image_stats;
        s.id = self.id;
        s.pages = self.store.pages();
        s.dirty_pages = self.store.changed();
        s.written_back_bytes = image.written_back.load(Ordering::Relaxed);
        s.backing_flushes = image.flushes.load(Ordering::Relaxed);
        s.backing_errors = image.errors.load(Ordering::Relaxed);
        s.flush_generation = self.view.generation();
        s.backing_reads = image.reads.load(Ordering::Relaxed);
        s.atomic_flushes = image.atomic_flushes.load(Ordering::Relaxed);
        s
    }

    /// What compression achieves; `EINVAL` for a device without it.
    pub(crate) fn compr_stats(&self) -> Result<RxdskComprStats> {
        let mut s = self.store.compr_stats().ok_or(EINVAL)?;
        s.id = self.id;
        Ok(s)
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.store.is_compressed()
    }

    /// Grows at once; shrinks only with no opener unless forced, then frees what lies past the
    /// new end once no bio that saw the old size is in flight. `size` is validated by the caller.
    pub(crate) fn resize(&self, size: u64, force: bool) -> Result {
        // The image's size is fixed while a backing device is attached: detach first. Held to
        // the end, so that no ATTACH checks the image's fit against a size about to change.
        let backing = self.lock_backing();
        let old = self.capacity.load(Ordering::Acquire);
        if size != old && backing.is_some() {
            return Err(EBUSY);
        }
        if size >= old {
            self.capacity.store(size, Ordering::Release);
            self.disk.set_capacity(size >> SECTOR_SHIFT);
            return Ok(());
        }
        // Without force, nobody may open the device until the shrink is done (zram's claim).
        let _claim = if force { None } else { Some(self.disk.claim()?) };
        {
            // Every bio that changes the store checks the capacity under the cut lock, deferred
            // ones too: none is under way now, and none after this writes past the new end.
            let _no_change = self.cut.write();
            self.capacity.store(size, Ordering::Release);
        }
        self.disk.set_capacity(size >> SECTOR_SHIFT);
        let cut = shrink(size);
        if let Some(z) = cut.zero {
            // Bytes past the end must read as zeros if the device grows again. A compressed
            // page can fail to be stored again: then the shrink is undone, nothing removed.
            if self.store.zero(z.index, z.offset, z.len, ffi::GFP_KERNEL, false).is_err() {
                self.capacity.store(old, Ordering::Release);
                self.disk.set_capacity(old >> SECTOR_SHIFT);
                return Err(ENOMEM);
            }
        }
        self.store.remove_range(cut.first_freed, layout::LAST_PAGE_INDEX).map_err(|_| ENOMEM)?;
        // A forced shrink may leave cached pages past the end in an opener's page cache.
        self.disk.invalidate_cache_from(size);
        drop(backing);
        Ok(())
    }

    /// Applies `bio` to the store; `touch`: its pages count as used (not for the access that
    /// just loaded them, see `Referenced`).
    fn handle(&self, bio: &Bio, touch: bool) -> Result<(), (Status, Failure)> {
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
                self.in_parts(bio, |walk, from, to| {
                    bio.for_each_segment_within(walk, from, to, (Status::IoError, Failure::Io), |pos, buf| {
                        self.read_span(pos, buf, nowait, touch).map_err(|e| match e {
                            StoreError::WouldBlock => (Status::Again, Failure::Alloc),
                            StoreError::Unloaded => (Status::IoError, Failure::Unloaded),
                            _ => (Status::IoError, Failure::Io),
                        })
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
                self.in_parts(bio, |walk, from, to| {
                    let mut batch = self.store.batch();
                    bio.for_each_segment_within(walk, from, to, (Status::IoError, Failure::Io), |pos, buf| {
                        self.write_span(pos, buf, gfp, nowait, touch, &mut batch).map_err(|e| match e {
                            StoreError::Limit => (Status::NoSpace, Failure::Limit),
                            StoreError::NoMemory | StoreError::WouldBlock if nowait => (Status::Again, Failure::Alloc),
                            StoreError::NoMemory | StoreError::WouldBlock => (Status::IoError, Failure::Alloc),
                            StoreError::Corrupt | StoreError::Unloaded => (Status::IoError, Failure::Io),
                        })
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
                    StoreError::Limit => (Status::NoSpace, Failure::Limit),
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

    /// Runs `f(walk, from, to)` over the span of `bio`: on a compressed device, a bio of at
    /// least [`FAN_OUT_MIN`] bytes in chunks of [`FAN_OUT_CHUNK`] (whole pages) shared with
    /// helpers on other CPUs (the compressor is what costs, and it scales with CPUs; a copy
    /// does not pay for the hop); otherwise whole, on this task. `walk` is the participant's
    /// walk of the bio. Every chunk is done when this returns, so the bio's locks (the cut)
    /// cover them all, and the lowest chunk that failed gives the result.
    fn in_parts(
        &self,
        bio: &Bio,
        f: impl Fn(&mut Segments, u64, u64) -> Result<(), (Status, Failure)> + Sync,
    ) -> Result<(), (Status, Failure)> {
        let (pos, len) = (bio.position(), bio.len());
        if !self.is_compressed() || bio.nowait() || len < FAN_OUT_MIN {
            return f(&mut bio.segments(), pos, pos + len);
        }
        let chunks = len.div_ceil(FAN_OUT_CHUNK) as u32;
        let (elsewhere, result) = fanout::fan_out(chunks as usize, chunks as usize, &|| bio.segments(), &|walk, chunk| {
            let (from, to) = layout::split_span(pos, len, chunk as u32, chunks);
            if from < to {
                f(walk, from, to)
            } else {
                Ok(())
            }
        });
        self.stats.parts_elsewhere(elsewhere as u64);
        result
    }

    /// Reads `buf.len()` bytes at device position `pos`, page by page of the store. On a
    /// cache device a page found missing may have been evicted after the bio's check:
    /// `Unloaded` then, and the bio goes to the worker to load it.
    fn read_span(&self, pos: u64, mut buf: IoMem<'_>, nowait: bool, touch: bool) -> Result<(), StoreError> {
        let caches = self.caches();
        for piece in pieces(pos, buf.len() as u64) {
            let (chunk, rest) = buf.split_at(piece.len);
            let present = self.store.read(piece.index, piece.offset, chunk, nowait)?;
            if caches {
                if present {
                    if touch {
                        self.cache.referenced.touch(piece.index);
                    }
                } else {
                    // Pairs with eviction's fence between setting the bit and removing the
                    // page: having seen the page gone, we see the bit.
                    fence(Ordering::SeqCst);
                    if self.unloaded.is_set(piece.index) {
                        return Err(StoreError::Unloaded);
                    }
                }
            }
            buf = rest;
        }
        Ok(())
    }

    /// Writes `buf` at device position `pos`; a whole page of zeros stores no page (the one it
    /// replaces goes with `batch`).
    #[allow(clippy::too_many_arguments)]
    fn write_span(&self, pos: u64, mut buf: IoMem<'_>, gfp: Gfp, nowait: bool, touch: bool, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        let touch = touch && self.caches();
        for piece in pieces(pos, buf.len() as u64) {
            let (chunk, rest) = buf.split_at(piece.len);
            if piece.is_whole() && chunk.is_zero() {
                self.store.erase(piece.index, gfp, nowait, batch)?;
                if touch {
                    // No page stays: nothing to protect.
                    self.cache.referenced.forget(piece.index);
                }
                self.stats.zero_page();
            } else {
                let existed = self.store.write(piece.index, piece.offset, &chunk, gfp, nowait)?;
                // A write to a page in memory is a use of it; one that makes a new page is not
                // (as a load, it starts on probation): writing a cold file must not crowd out
                // the hot set.
                if touch && existed {
                    self.cache.referenced.touch(piece.index);
                }
            }
            buf = rest;
        }
        Ok(())
    }

    /// Discard and write-zeroes: frees every whole page in `pos..end`, zeroes partial ones.
    /// On a compressed device, `nowait` (REQ_NOWAIT) makes a busy page `WouldBlock`.
    fn free_range(&self, pos: u64, end: u64, nowait: bool) -> Result<(), StoreError> {
        let p = punch(pos, end);
        let gfp = if nowait { ffi::GFP_NOWAIT } else { ffi::gfp_noio() };
        for part in [p.head, p.tail].into_iter().flatten() {
            self.store.zero(part.index, part.offset, part.len, gfp, nowait)?;
        }
        if let Some((first, last)) = p.whole {
            self.store.erase_range(first, last, nowait)?;
        }
        Ok(())
    }
}

impl BioHandler for Device {
    fn disk(&self) -> &GenDisk<Self> {
        &self.disk
    }

    /// /sys/block/rxdN/rxdsk/: what INFO, STATS and COMPR_STATS report, for anyone to read.
    fn show(&self, attr: Attr, out: &mut AttrText<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        let info = || self.info();
        let compr = || self.store.compr_stats().unwrap_or_default();
        match attr {
            Attr::Size => writeln!(out, "{}", self.capacity.load(Ordering::Relaxed)),
            Attr::BlockSize => writeln!(out, "{}", self.logical_block_size),
            Attr::MemLimit => writeln!(out, "{}", self.mem_limit_bytes),
            Attr::MemUsed => writeln!(out, "{}", self.store.held_bytes()),
            Attr::ReadOnly => writeln!(out, "{}", u8::from(self.read_only)),
            Attr::OpenCount => writeln!(out, "{}", self.openers()),
            Attr::Algorithm => {
                let name = match self.store.compr_stats().map(|c| c.algorithm) {
                    None => "none",
                    Some(RXDSK_COMPRESS_LZO) => "lzo",
                    Some(RXDSK_COMPRESS_LZO_RLE) => "lzo-rle",
                    Some(RXDSK_COMPRESS_LZ4) => "lz4",
                    Some(RXDSK_COMPRESS_ZSTD) => "zstd",
                    Some(_) => "unknown",
                };
                writeln!(out, "{name}")
            }
            Attr::Level => writeln!(out, "{}", compr().level),
            Attr::Backing => match self.view.devt() {
                (0, 0) => writeln!(out),
                (major, minor) => writeln!(out, "{major}:{minor}"),
            },
            Attr::Mode => writeln!(
                out,
                "{}",
                match (self.view.is_attached(), self.view.is_writethrough(), self.view.is_writearound()) {
                    (false, _, _) => "none",
                    (true, _, true) => "writearound",
                    (true, true, false) => "writethrough",
                    (true, false, false) => "writeback",
                }
            ),
            Attr::JournalBytes => writeln!(out, "{}", self.view.journal_bytes()),
            Attr::DirtyPages => writeln!(out, "{}", info().dirty_pages),
            Attr::UnloadedPages => writeln!(out, "{}", self.unloaded.count()),
            Attr::FlushGeneration => writeln!(out, "{}", self.view.generation()),
            Attr::IoStat => {
                let s = self.stats.snapshot();
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {} {} {} {} {} {}",
                    s.reads,
                    s.writes,
                    s.read_bytes,
                    s.write_bytes,
                    s.discards,
                    s.discard_bytes,
                    s.write_zeroes,
                    s.write_zeroes_bytes,
                    s.flushes,
                    s.zero_pages,
                    s.alloc_failures,
                    s.limit_failures,
                    s.io_errors
                )
            }
            Attr::MmStat => {
                let c = compr();
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {} {} {}",
                    self.store.pages(),
                    c.orig_data_size,
                    c.compr_data_size,
                    c.mem_used_total,
                    c.mem_used_max,
                    c.same_pages,
                    c.huge_pages,
                    c.compress_failures,
                    c.decompress_failures,
                    self.stats.parts_elsewhere_total()
                )
            }
            Attr::CacheStat => {
                let (hits, misses) = self.stats.cache_reads();
                let c = &self.cache;
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {} {}",
                    hits,
                    misses,
                    get(&c.evictions),
                    get(&c.room_flushes),
                    get(&c.throttled),
                    c.referenced.protected_pages(),
                    u8::from(self.caches()),
                    get(&c.reclaimed),
                    get(&c.bypassed)
                )
            }
            Attr::BdStat => {
                let i = &self.image_stats;
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                writeln!(
                    out,
                    "{} {} {} {} {}",
                    get(&i.reads),
                    get(&i.written_back),
                    get(&i.flushes),
                    get(&i.atomic_flushes),
                    get(&i.errors)
                )
            }
        }
    }

    fn submit_bio(&self, bio: Bio) {
        let load = self.needs_load(&bio);
        if bio.op() == Op::Read && self.caches() {
            self.stats.cache_read(load.is_none());
        }
        if load.is_some() {
            self.defer(bio);
            return;
        }
        self.complete(bio);
    }
}

/// What one attempt at a bio came to.
enum Attempt {
    Done(Result<(), (Status, Failure)>),
    /// A page it needs is on the backing device only (evicted after the bio's first check).
    Load,
    /// A cache device is at its limit: room must be made first.
    Room,
    /// Only waiting could tell (the cut lock, for a `REQ_NOWAIT` bio).
    Wait,
}

impl Device {
    /// Hands `bio` to the worker, which may wait for the backing device (a `REQ_NOWAIT` bio
    /// is sent back to be submitted again without it).
    fn defer(&self, bio: Bio) {
        if bio.nowait() {
            self.stats.failure(Failure::Alloc);
            bio.end(Status::Again);
        } else {
            self.deferred.push(bio);
        }
    }

    /// Handles `bio` on the store and ends it, or hands it to the worker (writethrough, a
    /// page to load, a cache device at its limit, a flush taking its cut under `REQ_NOWAIT`).
    fn complete(&self, bio: Bio) {
        match self.attempt(&bio, true, false) {
            Attempt::Done(result) => {
                if self.caches() && Self::changes_data(&bio) && self.store.used_bytes() > self.high_water() {
                    // Room made ahead of need, in the background (the periodic task): a writer
                    // meets the limit only when write-back cannot keep up.
                    self.periodic.kick();
                }
                self.end(bio, result)
            }
            Attempt::Room => {
                self.cache.throttled.fetch_add(1, Ordering::Relaxed);
                self.defer(bio);
            }
            Attempt::Load | Attempt::Wait => self.defer(bio),
        }
    }

    /// One attempt at `bio` on the store; one that changes the store does so under the cut
    /// lock, where the writethrough mode and (on a cache device) the unloaded pages are
    /// checked again. `in_worker`: the writethrough mode is the caller's business.
    fn attempt(&self, bio: &Bio, touch: bool, in_worker: bool) -> Attempt {
        let result = if Self::changes_data(bio) {
            let no_cut = if bio.nowait() { self.cut.try_read() } else { Some(self.cut.read()) };
            let Some(no_cut) = no_cut else {
                // A flush is taking its cut: only waiting could tell.
                return Attempt::Wait;
            };
            if !in_worker && self.needs_write_through(bio) {
                return Attempt::Wait;
            }
            if self.caches() && self.needs_load(bio).is_some() {
                return Attempt::Load;
            }
            let result = self.handle(bio, touch);
            drop(no_cut);
            result
        } else {
            self.handle(bio, touch)
        };
        match result {
            Err((_, Failure::Unloaded)) => Attempt::Load,
            Err((_, Failure::Limit)) if self.caches() => Attempt::Room,
            result => Attempt::Done(result),
        }
    }

    fn end(&self, bio: Bio, result: Result<(), (Status, Failure)>) {
        match result {
            Ok(()) => bio.end(Status::Ok),
            Err((status, why)) => {
                self.stats.failure(why);
                bio.end(status);
            }
        }
    }

    /// A write, discard or write-zeroes of a writethrough device, in the worker: loads what
    /// it touches if needed, applies it to the store, writes the pages to the backing device,
    /// and only then completes it. Under the backing lock, so writethrough bios reach the
    /// backing device one at a time, in the order they change the store.
    fn handle_write_through(&self, bio: Bio) {
        let first = bio.position() >> PAGE_SHIFT;
        let last = bio.position().saturating_add(bio.len() - 1) >> PAGE_SHIFT;
        let mut backing = self.lock_backing();
        let image = match Option::as_mut(&mut *backing) {
            Some(image) if image.is_writethrough() => image,
            _ => {
                // Detached (and maybe attached again in writeback mode) meanwhile: a plain
                // write now, under that attachment's rules.
                drop(backing);
                self.complete(bio);
                return;
            }
        };
        let handled = self.attempt_locked(image, &bio, true);
        if handled.is_err() {
            self.end(bio, handled);
            return;
        }
        let written = image.write_through(&self.data(), first, last).map_err(|_| (Status::IoError, Failure::Io));
        if written.is_ok() && self.view.is_writearound() && self.caches() {
            // On the backing device now: RAM keeps what is read, not what is written.
            self.cache.drop_written(&self.store, &self.unloaded, &self.cut, first, last);
        }
        self.end(bio, written);
    }

    /// Applies `bio` to the store with the backing lock held (`image` is its image): loads
    /// the pages it needs, makes room on a cache device at its limit, and tries again (a
    /// few times: another bio may take the room first).
    fn attempt_locked(&self, image: &mut Image, bio: &Bio, in_worker_writethrough: bool) -> Result<(), (Status, Failure)> {
        let mut touch = true;
        for _ in 0..4 {
            if let Some((first, last)) = self.needs_load(bio) {
                // The access that loads a page does not count as a use of it.
                touch = false;
                self.load_for(image, bio, first, last).map_err(|_| (Status::IoError, Failure::Io))?;
            }
            match self.attempt(bio, touch, in_worker_writethrough) {
                Attempt::Done(result) => return result,
                Attempt::Room => {
                    self.cache.throttled.fetch_add(1, Ordering::Relaxed);
                    self.make_room(image, self.low_water()).map_err(|_| (Status::NoSpace, Failure::Limit))?;
                }
                // Worker bios wait (never `REQ_NOWAIT`); a writethrough one is ours to do.
                Attempt::Load | Attempt::Wait => {}
            }
        }
        Err((Status::NoSpace, Failure::Limit))
    }

    /// A read of a cache device that misses on pages the doorkeeper does not admit (see
    /// `Referenced::admits`): its missing pages are read from the backing device (only
    /// they) and copied into the bio, its pages in memory come from memory, and nothing is
    /// stored or evicted. `None`: the read goes through the cache. Backing lock held (`image` its image): with
    /// the image settled, an unloaded page's data is in its place on the backing device, and
    /// whatever would change that or which pages are in memory (a load, an eviction, a write
    /// to an unloaded page, a flush) waits for the lock.
    fn read_past_cache(&self, image: &Image, bio: &Bio) -> Option<Result<(), (Status, Failure)>> {
        if !self.caches() || bio.op() != Op::Read || !image.is_settled() {
            return None;
        }
        let (first, last) = self.needs_load(bio)?;
        let (pos, end) = (bio.position(), bio.position().checked_add(bio.len())?);
        // Out of range (a shrink since): `handle` fails it.
        if end > self.capacity.load(Ordering::Acquire) || self.cache.referenced.admits(first, last, |i| self.unloaded.is_set(i)) {
            return None;
        }
        let mut walk = bio.segments();
        // The bio's part at `from..to`, all in memory (or holes). Not a use of its pages (no
        // `touch`): a scan passing the cache must not protect what it meets.
        let from_memory = |walk: &mut Segments, from: u64, to: u64| {
            bio.for_each_segment_within(walk, from, to, EIO, |at, dst| self.read_span(at, dst, false, false).map_err(|_| EIO))
        };
        // Each run of unloaded pages from the backing device, what lies between from memory.
        let mut done = pos;
        let result = image
            .read_unloaded(&self.data(), first, last, |start, n, buf| {
                let (from, to) = (pos.max(start << PAGE_SHIFT), end.min((start + n as u64) << PAGE_SHIFT));
                from_memory(&mut walk, done, from)?;
                done = to;
                bio.for_each_segment_within(&mut walk, from, to, EIO, |at, mut dst| {
                    for piece in pieces(at, dst.len() as u64) {
                        let (mut chunk, rest) = dst.split_at(piece.len);
                        let slot = usize::try_from(piece.index - start).map_err(|_| EIO)?;
                        buf.with_mem(slot, |page| chunk.copy_from_io(&page.split_at(piece.offset).1)).ok_or(EIO)?;
                        dst = rest;
                    }
                    Ok(())
                })
            })
            .and_then(|()| from_memory(&mut walk, done, end));
        match result {
            Ok(()) => {
                self.stats.account(Counter::Read, bio.len());
                self.cache.bypassed.fetch_add(1, Ordering::Relaxed);
                Some(Ok(()))
            }
            // No buffer: through the cache, which makes do with less memory (whatever this
            // put into the bio is read again).
            Err(e) if e == ENOMEM => None,
            Err(_) => Some(Err((Status::IoError, Failure::Io))),
        }
    }

    /// Loads what `bio` needs from the backing device (lock held, `image` its image): the
    /// aligned cluster around a miss (read-ahead; a cache device: just the bio's pages); for
    /// a discard or write-zeroes only its
    /// partial pages, as the whole ones it covers are dropped unread. A cache device makes
    /// room first when it is above its high-water mark.
    fn load_for(&self, image: &mut Image, bio: &Bio, first: u64, last: u64) -> Result {
        if self.caches() {
            // Room for the whole range first: making room in the middle of the load could
            // evict the range's own pages, which would come back as ghosts (protected).
            let need = (last - first + 1).saturating_mul(PAGE_SIZE as u64);
            if self.store.used_bytes().saturating_add(need) > self.high_water() {
                self.make_room(image, self.low_water().min(self.cache.size().saturating_sub(need)))?;
            }
        }
        let data = self.data();
        // A cache device loads only what the bio touches: read-ahead would fill a cache that
        // is smaller than the device with neighbours of random misses.
        let (align, caches) = (MISS_CLUSTER - 1, self.caches());
        let cluster = |image: &mut Image, from: u64, to: u64| -> Result {
            if !caches {
                return image.load(&data, from & !align, to | align, ffi::gfp_noio());
            }
            // Without waiting for reclaim first: we hold the backing lock, so the shrinker
            // cannot take our pages for the reclaim we would wait for. Short of memory, the
            // cache shrinks by an eighth at a time (as the shrinker would have made it) and
            // the pages come from its own; at its floor, the load waits for reclaim.
            for _ in 0..8 {
                match image.load(&data, from, to, ffi::GFP_NOWAIT | ffi::GFP_NOWARN) {
                    Err(e) if e == ENOMEM || e == ENOSPC => {
                        if e == ENOMEM {
                            let used = self.store.used_bytes();
                            self.cache.squeeze(self.cache.size().min(used).saturating_sub(used / 8));
                        }
                        self.make_room(image, self.low_water())?;
                    }
                    other => return other,
                }
            }
            image.load(&data, from, to, ffi::gfp_noio())
        };
        if !matches!(bio.op(), Op::Discard | Op::WriteZeroes) {
            if caches {
                // Pages evicted from probation lately come back protected (2Q).
                let mut from = first;
                while let Some(index) = self.unloaded.next_set(from, last) {
                    self.cache.referenced.loaded(index);
                    from = index + 1;
                }
            }
            return cluster(image, first, last);
        }
        let end = bio.position().saturating_add(bio.len());
        let p = punch(bio.position(), end);
        for part in [p.head, p.tail].into_iter().flatten() {
            if self.unloaded.is_set(part.index) {
                cluster(image, part.index, part.index)?;
            }
        }
        if let Some((first, last)) = p.whole {
            // The image holds their old data: each becomes a hole of the next flush.
            let mut from = first;
            while let Some(index) = self.unloaded.next_set(from, last) {
                self.store.record_hole(index, ffi::gfp_noio()).map_err(|_| ENOMEM)?;
                self.unloaded.clear(index);
                from = index + 1;
            }
        }
        Ok(())
    }
}

impl PeriodicTask for Device {
    /// The automatic flush: writes back what changed, if anything did; a cache device above
    /// its high-water mark makes room ahead of need.
    fn run_periodic(&self) {
        let mut backing = self.lock_backing();
        let Some(image) = Option::as_mut(&mut *backing) else { return };
        let data = self.data();
        if self.caches() && self.store.used_bytes() >= self.high_water() {
            if let Err(e) = self.make_room(image, self.low_water()) {
                pr_warn!("rxdsk: rxd{}: cannot make room ({:?})\n", self.id, e);
            }
            return;
        }
        if !image.needs_flush(&data) {
            return;
        }
        if let Err(e) = image.write_back(&data) {
            // At most one line per interval.
            pr_warn!("rxdsk: rxd{}: automatic flush failed ({:?}); retried in {} s\n", self.id, e, image.flush_interval_secs());
        }
        self.view.publish(backing.as_ref());
    }
}

impl ShrinkTask for Device {
    /// A pass of the hand: the cut lock is taken for writing once per scan.
    const BATCH: u64 = cache::PASS;

    /// The pages above the floor while the limit is a cache size (dirty ones included: a
    /// walk to count them would cost more than the scan that skips them).
    fn count_freeable(&self) -> u64 {
        if !self.caches() {
            return 0;
        }
        self.store.pages().saturating_sub(self.cache.floor() / self.store.bytes_per_page())
    }

    /// Evicts up to `nr` clean pages, down to the floor, and keeps the cache at what is left
    /// for a while (see `Cache::squeeze`). Never waits for the backing lock: its holder may
    /// wait for locks (the backing disk's `open_mutex`, in ATTACH) whose holders allocate
    /// memory. When it is busy, or a journal must be replayed first (I/O), the holder makes
    /// the room (the loader and the worker look at the squeezed size). Nothing at all for an
    /// allocation in a NOIO scope: our own I/O path or a flush may be the one allocating, and
    /// eviction waits for bios (the cut lock).
    fn scan_freeable(&self, nr: u64, may_io: bool) -> Option<u64> {
        if !may_io || !self.caches() {
            return None;
        }
        if self.store.used_bytes() <= self.cache.floor() {
            return None;
        }
        // Reclaimers wait for each other (kswapd and direct reclaim come together): one that
        // found the backing lock held by another's scan would make no progress, and the
        // allocation it serves would go to the OOM killer while memory is being freed. A scan
        // waits for nothing unbounded: bios in flight (which allocate without reclaiming
        // through us) and RCU.
        let _one_at_a_time = self.shrinking.lock();
        let (used, per_page) = (self.store.used_bytes(), self.store.bytes_per_page());
        let goal = used.saturating_sub(nr.saturating_mul(per_page)).max(self.cache.floor());
        if goal >= used {
            return None;
        }
        let Some(backing) = BackingLock::try_new(self) else {
            // From the size an earlier call left, not from what is still in memory: calls
            // that come before the holder makes room each take their share.
            let size = self.cache.size().min(used);
            self.cache.squeeze(size.saturating_sub(nr.saturating_mul(per_page)));
            return None;
        };
        // No I/O here (a journal to replay first): the worker settles it at its next bio.
        if !backing.as_ref()?.is_settled() {
            self.cache.squeeze(goal);
            return None;
        }
        let freed = self.cache.evict_to(&self.store, &self.unloaded, &self.cut, goal, Some(4 * nr));
        // Freed by RCU callbacks: reclaim must find them free when we return, not a grace
        // period later (`cache_gives_memory_back` saw the device give back a sixth, not all
        // the way to its floor, when the scan did not wait).
        self.store.wait_evicted();
        self.cache.reclaimed.fetch_add(freed, Ordering::Relaxed);
        self.cache.squeeze(self.store.used_bytes());
        (freed != 0).then_some(freed)
    }
}

impl DeferredHandler for Device {
    fn handle_deferred(&self, bio: Bio) {
        if self.needs_write_through(&bio) {
            self.handle_write_through(bio);
            return;
        }
        if self.needs_load(&bio).is_none() && !self.caches() {
            self.complete(bio);
            return;
        }
        let mut backing = self.lock_backing();
        let Some(image) = Option::as_mut(&mut *backing) else {
            drop(backing);
            // Detached meanwhile: DETACH loads every page first, so none is left to wait for.
            if self.needs_load(&bio).is_none() {
                self.complete(bio);
            } else {
                self.end(bio, Err((Status::IoError, Failure::Io)));
            }
            return;
        };
        if let Some(result) = self.read_past_cache(image, &bio) {
            drop(backing);
            self.end(bio, result);
            return;
        }
        let result = self.attempt_locked(image, &bio, false);
        if self.caches() && self.store.used_bytes() > self.high_water() {
            // Above the size memory pressure left the cache (writes do not look at it). A
            // failure is counted by the image and met again by the next bio that needs room.
            let _ = self.make_room(image, self.low_water());
        }
        drop(backing);
        self.end(bio, result);
    }
}

/// The backing lock held, in a NOIO scope that ends after it is released.
struct BackingLock<'a> {
    /// Declared first: released before the scope ends.
    guard: Guard<'a, Option<Image>, MutexBackend>,
    _noio: NoIo,
}

impl<'a> BackingLock<'a> {
    /// The backing lock of `device` if no one holds it.
    fn try_new(device: &'a Device) -> Option<Self> {
        let noio = NoIo::enter();
        let guard = device.backing.try_lock()?;
        Some(BackingLock { guard, _noio: noio })
    }
}

impl Deref for BackingLock<'_> {
    type Target = Option<Image>;

    fn deref(&self) -> &Option<Image> {
        &self.guard
    }
}

impl DerefMut for BackingLock<'_> {
    fn deref_mut(&mut self) -> &mut Option<Image> {
        &mut self.guard
    }
}

#[pinned_drop]
impl PinnedDrop for Device {
    fn drop(self: Pin<&mut Self>) {
        // No scan runs after this (it waits for one running).
        self.shrinker.free();
        // INVARIANT: no bio reaches `self` after this; the store's pages go with its fields.
        self.disk.remove();
        // Bios deferred before the removal are handled before the fields go.
        self.deferred.drain();
        // Last, after the bios that kick it: no automatic flush runs after this.
        self.periodic.stop();
    }
}
