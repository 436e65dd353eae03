// SPDX-License-Identifier: GPL-2.0

//! A backing block device, opened exclusively by path, and synchronous page I/O on it: the only
//! place that touches `struct block_device`, its file and the bios we send it. Used from control
//! paths only (ioctls), never from our own `submit_bio`, so waiting for a bio here cannot
//! deadlock on our own queue.

use crate::sys::ffi::{self, PAGE_SIZE, SECTOR_SHIFT};
use crate::sys::iomem::IoMem;
use core::ptr::NonNull;
use kernel::{bindings, page::Page, prelude::*, str::CStr};

/// Pages of kernel memory for backing I/O.
pub(crate) struct PageBuf {
    pages: KVec<Page>,
}

impl PageBuf {
    pub(crate) fn new(n: usize) -> Result<Self> {
        Self::alloc(n, GFP_KERNEL)
    }

    /// Without waiting for reclaim: `ENOMEM` at once when memory is short.
    pub(crate) fn new_nowait(n: usize) -> Result<Self> {
        Self::alloc(n, GFP_NOWAIT | __GFP_NOWARN)
    }

    fn alloc(n: usize, flags: kernel::alloc::Flags) -> Result<Self> {
        let mut pages = KVec::with_capacity(n, flags)?;
        for _ in 0..n {
            pages.push(Page::alloc_page(flags)?, flags)?;
        }
        Ok(Self { pages })
    }

    /// Calls `f` with page `i` mapped as I/O memory.
    pub(crate) fn with_mem<R>(&self, i: usize, f: impl FnOnce(IoMem<'_>) -> R) -> Option<R> {
        let page = self.pages.get(i)?;
        // SAFETY: The page is ours and valid; the mapping is undone below, after `f`.
        let addr = unsafe { bindings::kmap_local_page(page.as_ptr()) }.cast::<u8>();
        // SAFETY: `kmap_local_page` never returns null and maps `PAGE_SIZE` bytes that stay
        // mapped until the unmap below; `IoMem` creates no reference to them.
        let mem = unsafe { IoMem::new(NonNull::new_unchecked(addr), PAGE_SIZE) };
        let r = f(mem);
        // SAFETY: Mapped above, unmapped once, in LIFO order.
        unsafe { bindings::kunmap_local(addr.cast()) };
        Some(r)
    }
}

/// # Invariants
///
/// `file` came from `bdev_file_open_by_path` and is released once, in
/// `drop`; `bdev` is its block device, valid while `file` is open.
pub(crate) struct Backing {
    file: NonNull<bindings::file>,
    bdev: NonNull<bindings::block_device>,
}

// SAFETY: The file and block device may be used from any thread; the functions called on them
// do their own locking.
unsafe impl Send for Backing {}
// SAFETY: As above: every method takes `&self` and calls thread-safe block-layer functions.
unsafe impl Sync for Backing {}

impl Backing {
    /// Opens `path` read-write and exclusively for `holder` (`EBUSY` if someone else holds it).
    pub(crate) fn open(path: &CStr, holder: *const core::ffi::c_void) -> Result<Self> {
        let mode = ffi::blk_open_read() | ffi::blk_open_write() | ffi::blk_open_excl();
        Self::open_mode(path, mode, holder)
    }

    /// Opens `path` read-only and shared: for reading an image header before a device exists.
    /// Only read through.
    pub(crate) fn open_shared(path: &CStr) -> Result<Self> {
        Self::open_mode(path, ffi::blk_open_read(), core::ptr::null())
    }

    /// `holder` is non-null exactly when `mode` has `BLK_OPEN_EXCL`.
    fn open_mode(path: &CStr, mode: bindings::blk_mode_t, holder: *const core::ffi::c_void) -> Result<Self> {
        // SAFETY: `path` is NUL-terminated; an exclusive open gets the caller's non-null
        // holder, a shared one none (the callers above); no holder operations.
        let file = unsafe { bindings::bdev_file_open_by_path(path.as_char_ptr(), mode, holder.cast_mut(), core::ptr::null()) };
        let file = kernel::error::from_err_ptr(file)?;
        let file = NonNull::new(file).ok_or(EINVAL)?;
        // SAFETY: `file` is an open block device file.
        let bdev = unsafe { bindings::file_bdev(file.as_ptr()) };
        let Some(bdev) = NonNull::new(bdev) else {
            // SAFETY: Opened above, released once.
            unsafe { bindings::bdev_fput(file.as_ptr()) };
            return Err(EINVAL);
        };
        // INVARIANT: opened above; `bdev` is its device.
        Ok(Self { file, bdev })
    }

    /// The backing device's number: (major, minor).
    pub(crate) fn devt(&self) -> (u32, u32) {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { ffi::bdev_devt(self.bdev.as_ptr()) }
    }

    /// Size of the backing device in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { ffi::bdev_nr_bytes(self.bdev.as_ptr()) }
    }

    /// Reads or writes pages `first..first + n` of `buf` at byte `pos` (4 KiB aligned),
    /// waiting for the bio. `fua`: the write is durable when this returns (with a cache flush
    /// before it).
    fn rw(&self, pos: u64, buf: &PageBuf, first: usize, n: usize, op: bindings::blk_opf_t, fua: bool) -> Result {
        let pages = buf.pages.get(first..first.checked_add(n).ok_or(EINVAL)?).ok_or(EINVAL)?;
        let opf = if fua { op | ffi::REQ_PREFLUSH | ffi::REQ_FUA } else { op };
        let nr_vecs = u16::try_from(pages.len()).map_err(|_| EINVAL)?;
        // SAFETY: `bdev` is valid (invariant); `fs_bio_set` is the kernel's initialised bio
        // set, only addressed here; GFP_NOIO: this I/O may serve reclaim.
        let bio = unsafe {
            bindings::bio_alloc_bioset(self.bdev.as_ptr(), nr_vecs, opf, ffi::gfp_noio(), &raw mut bindings::fs_bio_set)
        };
        if bio.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: A fresh bio of ours; the pages stay allocated until `buf` is dropped, after
        // the bio completed below.
        let result = unsafe {
            (*bio).bi_iter.bi_sector = pos >> SECTOR_SHIFT;
            let mut added = true;
            for page in pages {
                added &= bindings::bio_add_page(bio, page.as_ptr(), PAGE_SIZE as u32, 0) == PAGE_SIZE as i32;
            }
            if added {
                kernel::error::to_result(bindings::submit_bio_wait(bio))
            } else {
                Err(EIO)
            }
        };
        // SAFETY: Our bio, completed (or never submitted), put once.
        unsafe { bindings::bio_put(bio) };
        result
    }

    /// Reads the first `n` pages of `buf` from `pos`.
    pub(crate) fn read(&self, pos: u64, buf: &PageBuf, n: usize) -> Result {
        self.rw(pos, buf, 0, n, bindings::req_op_REQ_OP_READ, false)
    }

    /// Writes the first `n` pages of `buf` at `pos`.
    pub(crate) fn write(&self, pos: u64, buf: &PageBuf, n: usize, fua: bool) -> Result {
        self.rw(pos, buf, 0, n, bindings::req_op_REQ_OP_WRITE, fua)
    }

    /// Writes pages `first..first + n` of `buf` at `pos` (durably with `fua`).
    pub(crate) fn write_from(&self, pos: u64, buf: &PageBuf, first: usize, n: usize, fua: bool) -> Result {
        self.rw(pos, buf, first, n, bindings::req_op_REQ_OP_WRITE, fua)
    }

    /// Zeroes `len` bytes at `pos` (sector aligned): write-zeroes or unmap where the device
    /// can, zero pages otherwise.
    pub(crate) fn zeroout(&self, pos: u64, len: u64) -> Result {
        // SAFETY: `bdev` is valid (invariant); flags 0 allow unmapping and falling back to
        // writing zero pages.
        kernel::error::to_result(unsafe {
            bindings::blkdev_issue_zeroout(self.bdev.as_ptr(), pos >> SECTOR_SHIFT, len >> SECTOR_SHIFT, ffi::gfp_noio(), 0)
        })
    }

    /// Flushes the backing device's volatile cache.
    pub(crate) fn flush_cache(&self) -> Result {
        // SAFETY: `bdev` is valid (invariant).
        kernel::error::to_result(unsafe { bindings::blkdev_issue_flush(self.bdev.as_ptr()) })
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: Opened by `open`, released once (invariant).
        unsafe { bindings::bdev_fput(self.file.as_ptr()) };
    }
}
