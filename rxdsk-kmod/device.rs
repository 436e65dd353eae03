// SPDX-License-Identifier: GPL-2.0

//! One rxdsk device: a gendisk backed by a page store. Safe Rust over the `disk` and `pages`
//! wrappers.

use crate::abi::{
    RxdskFlush, RxdskInfo, RxdskStats, RXDSK_FLAG_BACKED, RXDSK_FLAG_READ_ONLY, RXDSK_MAX_SIZE,
    RXDSK_PAGE_SIZE,
};
use crate::backing::{Backing, PageBuf};
use crate::disk::{Bio, BioHandler, DiskConfig, GenDisk, Op, Status};
use crate::image::{
    header_offset, image_fits, ImageError, RxdskImageHeader, RXDSK_IMAGE_CLEAN, RXDSK_IMAGE_FLUSHING,
    RXDSK_IMAGE_META_SIZE,
};
use crate::ffi::{self, PAGE_SIZE, SECTOR_SHIFT};
use crate::iomem::IoMem;
use crate::layout::{self, pieces, punch, shrink};
use crate::pages::{FreeBatch, PageStore, StoreError};
use crate::stats::{Counter, Failure, Stats};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    str::{CStr, CString},
    sync::Mutex,
};

/// Pages per bio when writing back or restoring.
const IO_PAGES: usize = 64;

/// The backing device of a device, while attached.
struct Attached {
    file: Backing,
    /// The generation of the image's last completed flush.
    generation: u64,
    /// The backing device's data area holds nothing of ours yet: the next flush zeroes it
    /// before it writes the pages (set by ATTACH, cleared by the first completed flush).
    zero_fill: bool,
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
}

/// # Invariants
///
/// `disk` was added with `self` as its handler and is removed before `self` is freed
/// (`PinnedDrop`), so the trampoline's reference to `self` is always valid.
#[pin_data(PinnedDrop)]
pub(crate) struct Device {
    id: u32,
    /// Declared first: removed and put before the page store goes.
    disk: GenDisk<Device>,
    #[pin]
    store: PageStore,
    /// Size in bytes; bios reaching past it fail (checked again by us after a shrink).
    capacity: AtomicU64,
    logical_block_size: u32,
    mem_limit_bytes: u64,
    read_only: bool,
    stats: Stats,
    /// Serialises ATTACH, DETACH and FLUSH of this device; `None` while detached.
    #[pin]
    backing: Mutex<Option<Attached>>,
    written_back: AtomicU64,
    backing_flushes: AtomicU64,
    backing_errors: AtomicU64,
}

impl Device {
    pub(crate) fn create(id: u32, config: &DeviceConfig) -> Result<Pin<KBox<Self>>> {
        let device = Self::build(id, config)?;
        device.add()?;
        Ok(device)
    }

    /// Creates a device from the image on `path`: size and block size from its header, every
    /// page read in before the disk appears, attached and clean. `EUCLEAN` for an image whose
    /// last flush did not complete, unless `force`. Returns the device and the generation.
    pub(crate) fn restore(id: u32, path: &CStr, force: bool) -> Result<(Pin<KBox<Self>>, u64)> {
        // The header first, through a shared open: the exclusive one needs the device.
        let header = read_header(&Backing::open_shared(path)?)?;
        if header.state != RXDSK_IMAGE_CLEAN && !force {
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
        };
        if !crate::control::valid_size(config.size_bytes, config.logical_block_size) {
            return Err(EINVAL);
        }
        let device = Self::build(id, &config)?;
        let file = Backing::open(path, device.holder())?;
        if !image_fits(header.size_bytes, file.bytes()) {
            return Err(EINVAL);
        }
        device.preload(&file, header.size_bytes)?;
        device.store.start_tracking_clean();
        *device.backing.lock() = Some(Attached { file, generation: header.generation, zero_fill: false });
        device.add()?;
        Ok((device, header.generation))
    }

    /// Reads the data area into the store (zero pages store nothing), before the disk is
    /// visible, so no write can race with it.
    fn preload(&self, file: &Backing, size: u64) -> Result {
        let buf = PageBuf::new(IO_PAGES)?;
        let pages = size.div_ceil(PAGE_SIZE as u64);
        let mut index = 0u64;
        while index < pages {
            let n = (pages - index).min(IO_PAGES as u64) as usize;
            file.read(index << PAGE_SHIFT, &buf, n).inspect_err(|_| {
                self.backing_errors.fetch_add(1, Ordering::Relaxed);
            })?;
            for i in 0..n {
                let at = (index + i as u64) << PAGE_SHIFT;
                // The last page may reach past the end: only its part inside is data.
                let len = (size - at).min(PAGE_SIZE as u64) as usize;
                let stored = buf.with_mem(i, |mem| {
                    let (data, _) = mem.split_at(len);
                    if data.is_zero() {
                        Ok(())
                    } else {
                        self.store.write(index + i as u64, 0, &data, kernel::bindings::GFP_KERNEL, false)
                    }
                });
                match stored {
                    Some(Ok(())) => {}
                    Some(Err(StoreError::Limit)) => return Err(ENOSPC),
                    _ => return Err(ENOMEM),
                }
            }
            index += n as u64;
            ffi::cond_resched();
        }
        Ok(())
    }

    /// An address that identifies this device as the exclusive holder of its backing device.
    fn holder(&self) -> *const core::ffi::c_void {
        core::ptr::from_ref(self).cast()
    }

    /// Attaches the block device at `path` as backing device: held exclusively, big enough
    /// for the data and the metadata block. Its header is set to "never flushed" at once, so
    /// an old image there cannot be restored as if it were this device's.
    pub(crate) fn attach(&self, path: &CStr) -> Result {
        let mut backing = self.backing.lock();
        if backing.is_some() {
            return Err(EBUSY);
        }
        let size = self.capacity.load(Ordering::Acquire);
        let file = Backing::open(path, self.holder())?;
        if !image_fits(size, file.bytes()) {
            return Err(ENOSPC);
        }
        let header = RxdskImageHeader::new(self.logical_block_size, size, 0, RXDSK_IMAGE_FLUSHING, 0);
        self.write_header(&file, &header)?;
        self.store.start_tracking();
        *backing = Some(Attached { file, generation: 0, zero_fill: true });
        Ok(())
    }

    /// Flushes (unless `discard_dirty`), then lets the backing device go.
    pub(crate) fn detach(&self, discard_dirty: bool) -> Result {
        let mut backing = self.backing.lock();
        let attached = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
        if let Err(e) = self.write_back(attached) {
            if !discard_dirty {
                return Err(e);
            }
        }
        self.store.stop_tracking();
        *backing = None;
        Ok(())
    }

    /// Whether the device has a backing device and data not yet flushed to it.
    pub(crate) fn has_unflushed(&self) -> bool {
        self.backing
            .lock()
            .as_ref()
            .is_some_and(|a| a.zero_fill || self.store.next_changed(0).is_some())
    }

    pub(crate) fn is_backed(&self) -> bool {
        self.backing.lock().is_some()
    }

    /// FLUSH: writes back every change and commits the image.
    pub(crate) fn flush(&self) -> Result<RxdskFlush> {
        let mut backing = self.backing.lock();
        let attached = Option::as_mut(&mut *backing).ok_or(ENXIO)?;
        self.write_back(attached)
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

    /// The flush protocol: header FLUSHING; the data area zeroed if it never held ours; every
    /// changed page (zeros for holes) in index order, `IO_PAGES` at a time; the backing
    /// device's cache flushed; header CLEAN with the next generation (FUA). A failure leaves
    /// every unwritten change marked, and the header FLUSHING.
    fn write_back(&self, attached: &mut Attached) -> Result<RxdskFlush> {
        let size = self.capacity.load(Ordering::Acquire);
        let next = attached.generation + 1;
        let lbs = self.logical_block_size;
        let fail = |e: Error| {
            self.backing_errors.fetch_add(1, Ordering::Relaxed);
            e
        };
        self.write_header(&attached.file, &RxdskImageHeader::new(lbs, size, attached.generation, RXDSK_IMAGE_FLUSHING, 0))?;
        let mut report = RxdskFlush { id: self.id, ..Default::default() };
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
            let Some(first) = self.store.next_changed(from) else { break };
            let mut index = first;
            while taken.len() < IO_PAGES && self.store.next_changed(index) == Some(index) {
                let slot = taken.len();
                buf.with_mem(slot, |mem| self.store.take_changed(index, mem));
                taken.push(index, GFP_KERNEL)?;
                index += 1;
            }
            if let Err(e) = attached.file.write(first << PAGE_SHIFT, &buf, taken.len(), false) {
                for &i in taken.iter() {
                    self.store.redirty(i);
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
        let header = RxdskImageHeader::new(lbs, size, next, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
        self.write_header(&attached.file, &header)?;
        report.bytes_written += 2 * RXDSK_IMAGE_META_SIZE;
        attached.generation = next;
        attached.zero_fill = false;
        report.generation = next;
        self.backing_flushes.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    fn build(id: u32, config: &DeviceConfig) -> Result<Pin<KBox<Self>>> {
        let disk = GenDisk::new(&DiskConfig {
            logical_block_size: config.logical_block_size,
            capacity_sectors: config.size_bytes >> SECTOR_SHIFT,
            read_only: config.read_only,
        })?;
        let stats = Stats::new()?;
        let device = KBox::pin_init(
            try_pin_init!(Self {
                id,
                disk,
                store <- PageStore::new(config.mem_limit_bytes >> PAGE_SHIFT),
                capacity: AtomicU64::new(config.size_bytes),
                logical_block_size: config.logical_block_size,
                mem_limit_bytes: config.mem_limit_bytes,
                read_only: config.read_only,
                stats,
                backing <- new_mutex!(None),
                written_back: AtomicU64::new(0),
                backing_flushes: AtomicU64::new(0),
                backing_errors: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        Ok(device)
    }

    /// Makes the disk visible; bios start arriving.
    fn add(self: &Pin<KBox<Self>>) -> Result {
        let name = CString::try_from_fmt(fmt!("rxd{}", self.id))?;
        // SAFETY: `self` is pinned in its box and owns the disk, which its `PinnedDrop`
        // removes before the box is freed.
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
        RxdskInfo {
            id: self.id,
            logical_block_size: self.logical_block_size,
            size_bytes: self.capacity.load(Ordering::Relaxed),
            mem_limit_bytes: self.mem_limit_bytes,
            flags: if self.read_only { RXDSK_FLAG_READ_ONLY } else { 0 }
                | if self.is_backed() { RXDSK_FLAG_BACKED } else { 0 },
            used_bytes: self.store.pages() << PAGE_SHIFT,
            open_count: self.openers(),
            pad: 0,
            dirty_pages: self.store.changed(),
            reserved: [0; 3],
        }
    }

    pub(crate) fn stats(&self) -> RxdskStats {
        let mut s = self.stats.snapshot();
        s.id = self.id;
        s.pages = self.store.pages();
        s.dirty_pages = self.store.changed();
        s.written_back_bytes = self.written_back.load(Ordering::Relaxed);
        s.backing_flushes = self.backing_flushes.load(Ordering::Relaxed);
        s.backing_errors = self.backing_errors.load(Ordering::Relaxed);
        s.flush_generation = self.backing.lock().as_ref().map_or(0, |a| a.generation);
        s
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
        if let Some(z) = cut.zero {
            // Bytes past the end must read as zeros if the device grows again.
            self.store.zero(z.index, z.offset, z.len);
        }
        self.store.remove_range(cut.first_freed, layout::LAST_PAGE_INDEX);
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
                bio.for_each_segment((Status::IoError, Failure::Io), |pos, buf| {
                    self.read_span(pos, buf);
                    Ok(())
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
                    })
                })?;
                self.stats.account(Counter::Write, len);
            }
            Op::Discard | Op::WriteZeroes => {
                if self.read_only {
                    return Err((Status::IoError, Failure::Io));
                }
                self.free_range(pos, end).map_err(|_| (Status::IoError, Failure::Alloc))?;
                let counter = if op == Op::Discard { Counter::Discard } else { Counter::WriteZeroes };
                self.stats.account(counter, len);
            }
            Op::Flush => {}
            Op::Other => return Err((Status::NotSupported, Failure::Io)),
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at device position `pos`, page by page of the store.
    fn read_span(&self, pos: u64, mut buf: IoMem<'_>) {
        for piece in pieces(pos, buf.len() as u64) {
            let (chunk, rest) = buf.split_at(piece.len);
            self.store.read(piece.index, piece.offset, chunk);
            buf = rest;
        }
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
            if piece.is_whole() && chunk.is_zero() {
                self.store.erase(piece.index, batch, gfp)?;
                self.stats.zero_page();
            } else {
                self.store.write(piece.index, piece.offset, &chunk, gfp, nowait)?;
            }
            buf = rest;
        }
        Ok(())
    }

    /// Discard and write-zeroes: frees every whole page in `pos..end`, zeroes partial ones.
    fn free_range(&self, pos: u64, end: u64) -> Result<(), StoreError> {
        let p = punch(pos, end);
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
        match self.handle(&bio) {
            Ok(()) => bio.end(Status::Ok),
            Err((status, why)) => {
                self.stats.failure(why);
                bio.end(status);
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Device {
    fn drop(self: Pin<&mut Self>) {
        // INVARIANT: no bio reaches `self` after this; the store's pages go with its fields.
        self.disk.remove();
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
