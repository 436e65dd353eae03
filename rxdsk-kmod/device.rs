// SPDX-License-Identifier: GPL-2.0

//! One rxdsk device: a gendisk backed by a page store. Safe Rust over the `disk` and `pages`
//! wrappers.

use crate::abi::{RxdskInfo, RxdskStats, RXDSK_FLAG_READ_ONLY, RXDSK_MAX_SIZE, RXDSK_PAGE_SIZE};
use crate::disk::{Bio, BioHandler, DiskConfig, GenDisk, Op, Status};
use crate::ffi::{self, PAGE_SIZE, SECTOR_SHIFT};
use crate::iomem::IoMem;
use crate::layout::{self, pieces, punch, shrink};
use crate::pages::{FreeBatch, PageStore, StoreError};
use crate::stats::{Counter, Failure, Stats};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{prelude::*, str::CString};

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
}

impl Device {
    pub(crate) fn create(id: u32, config: &DeviceConfig) -> Result<Pin<KBox<Self>>> {
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
            }),
            GFP_KERNEL,
        )?;
        let name = CString::try_from_fmt(fmt!("rxd{id}"))?;
        // SAFETY: `device` is pinned in its box and owns the disk, which its `PinnedDrop`
        // removes before the box is freed.
        // INVARIANT: the disk is added with `device` as its handler.
        unsafe { device.disk.add(&device, name.to_bytes())? };
        Ok(device)
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
            flags: if self.read_only { RXDSK_FLAG_READ_ONLY } else { 0 },
            used_bytes: self.store.pages() << PAGE_SHIFT,
            open_count: self.openers(),
            pad: 0,
            reserved: [0; 4],
        }
    }

    pub(crate) fn stats(&self) -> RxdskStats {
        let mut s = self.stats.snapshot();
        s.id = self.id;
        s.pages = self.store.pages();
        s
    }

    /// Grows at once; shrinks only with no opener unless forced, then frees what lies past the
    /// new end once no bio that saw the old size is in flight. `size` is validated by the caller.
    pub(crate) fn resize(&self, size: u64, force: bool) -> Result {
        let old = self.capacity.load(Ordering::Acquire);
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
                self.free_range(pos, end);
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
                self.store.erase(piece.index, batch);
                self.stats.zero_page();
            } else {
                self.store.write(piece.index, piece.offset, &chunk, gfp, nowait)?;
            }
            buf = rest;
        }
        Ok(())
    }

    /// Discard and write-zeroes: frees every whole page in `pos..end`, zeroes partial ones.
    fn free_range(&self, pos: u64, end: u64) {
        let p = punch(pos, end);
        if let Some(h) = p.head {
            self.store.zero(h.index, h.offset, h.len);
        }
        if let Some((first, last)) = p.whole {
            self.store.erase_range(first, last);
        }
        if let Some(t) = p.tail {
            self.store.zero(t.index, t.offset, t.len);
        }
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
