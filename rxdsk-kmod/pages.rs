// SPDX-License-Identifier: GPL-2.0

//! The page store: an XArray of pages keyed by page index.
//!
//! Lookups are lock-free (RCU); pages are inserted with cmpxchg under the XArray lock, so two
//! writers racing for the same index keep exactly one page. Pages removed while I/O may be
//! running (discard, write-zeroes, shrink) are freed after an RCU grace period, so a reader that
//! found a page can copy from it until it leaves its read-side section.

use crate::ffi::{self, PAGE_SIZE};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{bindings, prelude::*, sync::rcu, types::Opaque};

/// Why a page could not be stored.
pub(crate) enum StoreError {
    /// The page allocator (or the XArray's node allocation) failed.
    NoMemory,
    /// The device's memory limit is reached.
    Limit,
}

/// # Invariants
///
/// - `xa` is an initialised XArray whose entries are pointers to order-0 pages owned by the
///   store; `pages` counts them.
/// - Pages erased while readers may exist are freed only after an RCU grace period.
#[pin_data(PinnedDrop)]
pub(crate) struct PageStore {
    #[pin]
    xa: Opaque<bindings::xarray>,
    pages: AtomicU64,
    /// 0: no limit.
    limit: u64,
}

// SAFETY: The XArray is safe to use from any thread (its own lock and RCU); the page pointers
// it holds are owned by the store, not tied to a thread.
unsafe impl Send for PageStore {}
// SAFETY: All methods taking `&self` synchronise through the XArray lock, RCU or atomics.
unsafe impl Sync for PageStore {}

/// RCU callback that frees a page erased from a store.
///
/// # Safety
///
/// `head` is the `callback_head` of a page passed to [`free_page_after_rcu`].
unsafe extern "C" fn free_page_rcu(head: *mut bindings::callback_head) {
    // SAFETY: `head` is the `callback_head` inside a `struct page` that `erase_rcu` queued; the
    // union holding it starts at the offset computed here.
    let page = unsafe { kernel::container_of!(head, bindings::page, __bindgen_anon_1.callback_head) };
    // SAFETY: The page was allocated by `alloc_pages(_, 0)`, and no reader can still see it: a
    // grace period has passed since it left the XArray.
    unsafe { bindings::__free_pages(page, 0) };
}

/// Frees `page` after the current RCU grace period.
///
/// # Safety
///
/// `page` is an order-0 page that is no longer reachable from any XArray and is not used by
/// anyone but current RCU readers.
unsafe fn free_page_after_rcu(page: *mut bindings::page) {
    // SAFETY: The page is unreachable (caller's contract), so its `callback_head` (which shares
    // space with fields only the page cache and slab use) is ours to use until it is freed.
    unsafe { bindings::call_rcu(ptr::addr_of_mut!((*page).__bindgen_anon_1.callback_head), Some(free_page_rcu)) };
}

/// Whether every byte of `data` is zero; word at a time, stops at the first non-zero word.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    // SAFETY: Every bit pattern is a valid `u64`; `align_to` splits off unaligned edges.
    let (head, words, tail) = unsafe { data.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

impl PageStore {
    pub(crate) fn new(limit_pages: u64) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `xa_init_flags` initialises the XArray in place; flags 0 as brd: only
            // process context uses it.
            xa <- Opaque::ffi_init(|slot: *mut bindings::xarray| unsafe { bindings::xa_init_flags(slot, 0) }),
            pages: AtomicU64::new(0),
            limit: limit_pages,
        })
    }

    fn xa(&self) -> *mut bindings::xarray {
        self.xa.get()
    }

    /// Pages held now.
    pub(crate) fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    /// Copies from page `index` at `offset` into `dst`, or zeros if the page does not exist.
    pub(crate) fn read(&self, index: u64, offset: usize, dst: &mut [u8]) {
        let rcu = rcu::read_lock();
        // SAFETY: `xa` is initialised (invariant); `xa_load` takes RCU itself and is safe
        // against concurrent modification.
        let page = unsafe { bindings::xa_load(self.xa(), index as usize) }.cast::<bindings::page>();
        if page.is_null() {
            dst.fill(0);
        } else {
            // SAFETY: The page stays allocated while we hold `rcu` (erased pages are freed
            // after a grace period); `offset + dst.len()` is within it.
            unsafe { copy_from_page(page, offset, dst) };
        }
        drop(rcu);
    }

    /// Copies `src` into page `index` at `offset` if the page exists; returns whether it did.
    fn write_existing(&self, index: u64, offset: usize, src: &[u8]) -> bool {
        let rcu = rcu::read_lock();
        // SAFETY: As in `read`.
        let page = unsafe { bindings::xa_load(self.xa(), index as usize) }.cast::<bindings::page>();
        if !page.is_null() {
            // SAFETY: As in `read`; writers racing on the same bytes are the submitter's race.
            unsafe { copy_to_page(page, offset, src) };
        }
        drop(rcu);
        !page.is_null()
    }

    /// Copies `src` into page `index` at `offset`, allocating the page (with `gfp`) if needed.
    pub(crate) fn write(&self, index: u64, offset: usize, src: &[u8], gfp: bindings::gfp_t) -> Result<(), StoreError> {
        loop {
            if self.write_existing(index, offset, src) || self.insert(index, offset, src, gfp)? {
                return Ok(());
            }
            // Another writer inserted the page first: write into theirs. (If a discard removes
            // it again before we get there, we go round once more.)
        }
    }

    /// Allocates a page holding `src` at `offset` (zeros elsewhere) and inserts it at `index`.
    /// `Ok(true)`: our page, with the data, is in. `Ok(false)`: another page was there first.
    fn insert(&self, index: u64, offset: usize, src: &[u8], gfp: bindings::gfp_t) -> Result<bool, StoreError> {
        let held = self.pages.fetch_add(1, Ordering::Relaxed);
        if self.limit != 0 && held >= self.limit {
            self.pages.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Limit);
        }
        // A full-page write needs no zeroing.
        let zero = if src.len() == PAGE_SIZE { 0 } else { bindings::__GFP_ZERO };
        // SAFETY: Allocating an order-0 page has no preconditions.
        let page = unsafe { bindings::alloc_pages(gfp | zero | ffi::GFP_NOWARN, 0) };
        if page.is_null() {
            self.pages.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::NoMemory);
        }
        // SAFETY: We own the fresh page; the range is within it.
        unsafe { copy_to_page(page, offset, src) };
        // SAFETY: `xa` is initialised; `xa_lock`/`xa_unlock` bracket `__xa_cmpxchg` as its
        // contract requires; the page pointer is a valid, 4-byte aligned XArray entry.
        let old = unsafe {
            bindings::xa_lock(self.xa());
            let old = bindings::__xa_cmpxchg(self.xa(), index as usize, ptr::null_mut(), page.cast(), gfp);
            bindings::xa_unlock(self.xa());
            old
        };
        if old.is_null() {
            return Ok(true);
        }
        self.pages.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: The page never became visible to anyone else.
        unsafe { bindings::__free_pages(page, 0) };
        // SAFETY: `xa_err` only decodes the entry value.
        if unsafe { bindings::xa_err(old) } != 0 {
            return Err(StoreError::NoMemory);
        }
        Ok(false)
    }

    /// Removes page `index` (freed after a grace period); returns whether there was one.
    pub(crate) fn erase(&self, index: u64) -> bool {
        // SAFETY: `xa` is initialised; `xa_erase` takes the lock itself.
        let page = unsafe { bindings::xa_erase(self.xa(), index as usize) }.cast::<bindings::page>();
        if page.is_null() {
            return false;
        }
        self.pages.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: The page is out of the XArray; only current RCU readers may still use it.
        unsafe { free_page_after_rcu(page) };
        true
    }

    /// Removes every page with index in `first..=last`; returns how many there were. Visits
    /// only present pages, so a huge sparse range costs what it holds, not its size.
    pub(crate) fn erase_range(&self, first: u64, last: u64) -> u64 {
        let mut index: usize = first as usize;
        let mut erased = 0;
        while index as u64 <= last {
            // SAFETY: `xa` is initialised; `xa_find` takes RCU itself and updates `index` to
            // the index of the entry it returns.
            let entry = unsafe { bindings::xa_find(self.xa(), &mut index, last as usize, ffi::XA_PRESENT) };
            if entry.is_null() {
                break;
            }
            if self.erase(index as u64) {
                erased += 1;
            }
            if index as u64 == last {
                break;
            }
            index += 1;
        }
        erased
    }

    /// Zeroes `len` bytes of page `index` from `offset`, if the page exists.
    pub(crate) fn zero(&self, index: u64, offset: usize, len: usize) {
        let rcu = rcu::read_lock();
        // SAFETY: As in `read`.
        let page = unsafe { bindings::xa_load(self.xa(), index as usize) }.cast::<bindings::page>();
        if !page.is_null() {
            // SAFETY: As in `read`; the range is within the page.
            unsafe { zero_page_range(page, offset, len) };
        }
        drop(rcu);
    }
}

#[pinned_drop]
impl PinnedDrop for PageStore {
    fn drop(self: Pin<&mut Self>) {
        // No I/O can reach the store any more (the disk is gone), so pages are freed at once.
        let mut index: usize = 0;
        loop {
            // SAFETY: `xa` is initialised and nobody else uses it now.
            let entry = unsafe { bindings::xa_find(self.xa(), &mut index, usize::MAX, ffi::XA_PRESENT) };
            if entry.is_null() {
                break;
            }
            // SAFETY: The entry is a page owned by the store and unreachable by anyone else.
            unsafe { bindings::__free_pages(entry.cast(), 0) };
            if index == usize::MAX {
                break;
            }
            index += 1;
        }
        // SAFETY: Every entry is freed; `xa_destroy` releases the XArray's nodes.
        unsafe { bindings::xa_destroy(self.xa()) };
    }
}

/// # Safety
///
/// `page` is a valid page that stays allocated during the call; `offset + dst.len()` is at most
/// `PAGE_SIZE`.
unsafe fn copy_from_page(page: *mut bindings::page, offset: usize, dst: &mut [u8]) {
    // SAFETY: Valid page (caller); the mapping is undone below in LIFO order.
    let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
    // SAFETY: `addr + offset .. + len` lies in the mapped page (caller); `dst` is a distinct
    // buffer (a bio page), so the ranges do not overlap.
    unsafe { ptr::copy_nonoverlapping(addr.add(offset), dst.as_mut_ptr(), dst.len()) };
    // SAFETY: `addr` came from `kmap_local_page` above.
    unsafe { bindings::kunmap_local(addr.cast()) };
}

/// # Safety
///
/// As [`copy_from_page`].
unsafe fn copy_to_page(page: *mut bindings::page, offset: usize, src: &[u8]) {
    // SAFETY: As in `copy_from_page`.
    let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
    // SAFETY: As in `copy_from_page`.
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), addr.add(offset), src.len()) };
    // SAFETY: As in `copy_from_page`.
    unsafe { bindings::kunmap_local(addr.cast()) };
}

/// # Safety
///
/// `page` is valid during the call; `offset + len <= PAGE_SIZE`.
unsafe fn zero_page_range(page: *mut bindings::page, offset: usize, len: usize) {
    // SAFETY: As in `copy_from_page`.
    let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
    // SAFETY: The range lies in the mapped page (caller).
    unsafe { ptr::write_bytes(addr.add(offset), 0, len) };
    // SAFETY: As in `copy_from_page`.
    unsafe { bindings::kunmap_local(addr.cast()) };
}
