// SPDX-License-Identifier: GPL-2.0

//! The page store: an XArray of pages keyed by page index.
//!
//! Lookups are lock-free (RCU). A new page is inserted with cmpxchg under the XArray lock, and
//! the memory limit is checked under the same lock, so two writers racing for one index keep
//! exactly one page and the loser writes into it instead of failing. Pages erased while I/O may
//! run (discard, write-zeroes, zero-page writes) are freed after an RCU grace period, in
//! batches of [`BATCH`] chained through `page->private` with one RCU callback each; until then
//! they still count as used. Control paths (shrink, destroy) free directly and yield between
//! batches.

use crate::changes::{Changes, Tracked, Xa};
use crate::ffi::{self, PAGE_SIZE};
use crate::iomem::IoMem;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{bindings, prelude::*, sync::rcu};

/// Pages freed per RCU callback, and per `cond_resched()` on the long paths.
pub(crate) const BATCH: u64 = 256;

/// Why a page could not be stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The page allocator (or the XArray's node allocation) failed.
    NoMemory,
    /// The device's memory limit is reached.
    Limit,
    /// Only waiting could tell (the limit is reached while frees or inserts are in flight),
    /// and the bio may not wait (`REQ_NOWAIT`): the submitter retries without it.
    WouldBlock,
    /// A compressed page did not decompress (compressed store only).
    Corrupt,
}

/// # Invariants
///
/// - `xa` is an initialised XArray whose entries are pointers to order-0 pages owned by the
///   store; `pages` counts them.
/// - `pending` counts pages erased from `xa` whose RCU callback has not run yet; the callbacks
///   reference the store, so it waits for them (`rcu_barrier`) before it goes.
/// - `inserting` counts inserts that reserved their page under the XArray lock and have not
///   finished their cmpxchg.
/// - With a limit, `pages + pending <= limit` (reservations are made under the XArray lock).
/// - `changes` tracks the changes of `xa` (see [`Changes`]).
#[pin_data(PinnedDrop)]
pub(crate) struct PageStore {
    #[pin]
    xa: Xa,
    #[pin]
    changes: Changes,
    pages: AtomicU64,
    pending: AtomicU64,
    inserting: AtomicU64,
    /// 0: no limit.
    limit: u64,
}

// SAFETY: The XArray is safe to use from any thread (its own lock and RCU); the page pointers
// it holds are owned by the store, not tied to a thread.
unsafe impl Send for PageStore {}
// SAFETY: All methods taking `&self` synchronise through the XArray lock, RCU or atomics.
unsafe impl Sync for PageStore {}

/// Where an erased page keeps what its batch needs (fields of `struct page` that are unused
/// by a page that is ours and on no list): the next page of the chain, and, in the chain's
/// first page, the store whose `pending` count the batch holds.
fn chain_next(page: *mut bindings::page) -> *mut *mut bindings::page {
    // SAFETY: Only the address of a field is computed; callers own the page.
    unsafe { ptr::addr_of_mut!((*page).__bindgen_anon_1.__bindgen_anon_1.private).cast() }
}

fn chain_owner(page: *mut bindings::page) -> *mut *const PageStore {
    // SAFETY: As in `chain_next`.
    unsafe { ptr::addr_of_mut!((*page).__bindgen_anon_1.__bindgen_anon_1.__bindgen_anon_2.__folio_index).cast() }
}

const _: () = assert!(core::mem::size_of::<kernel::ffi::c_ulong>() == core::mem::size_of::<*mut bindings::page>());

/// Frees a chain of pages linked through [`chain_next`], resetting the fields we borrowed;
/// returns how many there were.
///
/// # Safety
///
/// Every page of the chain is an order-0 page owned by the caller that nobody else can reach.
unsafe fn free_chain(mut page: *mut bindings::page) -> u64 {
    let mut n = 0;
    while !page.is_null() {
        // SAFETY: The page is ours (caller); we read the link before freeing it.
        let next = unsafe { *chain_next(page) };
        // SAFETY: As above; the borrowed fields go back to zero as the allocator expects.
        unsafe {
            *chain_next(page) = ptr::null_mut();
            *chain_owner(page) = ptr::null();
            bindings::__free_pages(page, 0);
        }
        n += 1;
        page = next;
    }
    n
}

/// RCU callback of a [`FreeBatch`]: frees its chain and gives its pages back to the store's
/// count.
///
/// # Safety
///
/// `head` is the `callback_head` of the first page of a chain queued by [`FreeBatch::submit`].
unsafe extern "C" fn free_batch_rcu(head: *mut bindings::callback_head) {
    // SAFETY: `head` is the `callback_head` inside the chain's first `struct page`.
    let first = unsafe { kernel::container_of!(head, bindings::page, __bindgen_anon_1.callback_head) };
    // SAFETY: Set by `submit`; the store waits for its callbacks before it is freed.
    let store = unsafe { &**chain_owner(first) };
    // SAFETY: A grace period has passed since every page of the chain left the XArray, so no
    // reader can still use one; the chain is owned by this callback.
    let n = unsafe { free_chain(first) };
    store.pending.fetch_sub(n, Ordering::Relaxed);
}

/// Pages erased while readers may still use them, freed together after one grace period.
/// Submitted when full and when dropped.
pub(crate) struct FreeBatch<'a> {
    store: &'a PageStore,
    first: *mut bindings::page,
    len: u64,
}

impl<'a> FreeBatch<'a> {
    pub(crate) fn new(store: &'a PageStore) -> Self {
        Self { store, first: ptr::null_mut(), len: 0 }
    }

    /// Takes a page just erased from the store (already counted in `pending`).
    ///
    /// # Safety
    ///
    /// `page` is an order-0 page of `self.store`, unreachable from its XArray, used by no one
    /// but current RCU readers.
    unsafe fn push(&mut self, page: *mut bindings::page) {
        // SAFETY: The page is ours now (caller); `private` links the chain.
        unsafe { *chain_next(page) = self.first };
        self.first = page;
        self.len += 1;
        if self.len >= BATCH {
            self.submit();
        }
    }

    fn submit(&mut self) {
        if self.first.is_null() {
            return;
        }
        let first = core::mem::take(&mut self.first);
        self.len = 0;
        // SAFETY: The chain is ours; its first page records the store for the callback, and
        // its `callback_head` (which overlays `lru`, unused by our pages) queues it.
        unsafe {
            *chain_owner(first) = self.store;
            bindings::call_rcu(ptr::addr_of_mut!((*first).__bindgen_anon_1.callback_head), Some(free_batch_rcu));
        }
    }
}

impl Drop for FreeBatch<'_> {
    fn drop(&mut self) {
        self.submit();
    }
}

impl PageStore {
    pub(crate) fn new(limit_pages: u64) -> impl PinInit<Self> {
        pin_init!(Self {
            xa <- Xa::new(),
            changes <- Changes::new(),
            pages: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            inserting: AtomicU64::new(0),
            limit: limit_pages,
        })
    }

    fn xa(&self) -> *mut bindings::xarray {
        self.xa.get()
    }

    /// Whether page `index` exists now.
    fn present(&self, index: u64) -> bool {
        !self.load(index).is_null()
    }

    /// Pages held now: stored ones plus erased ones not yet given back (what the limit counts).
    pub(crate) fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed) + self.pending.load(Ordering::Relaxed)
    }

    fn load(&self, index: u64) -> *mut bindings::page {
        // Indexes past what `usize` holds were never stored (sizes are bounded at CREATE).
        let Ok(index) = usize::try_from(index) else { return ptr::null_mut() };
        // SAFETY: `xa` is initialised (invariant); `xa_load` takes RCU itself and is safe
        // against concurrent modification.
        unsafe { bindings::xa_load(self.xa(), index) }.cast()
    }

    /// Copies from page `index` at `offset` into `dst`, or zeros if the page does not exist.
    pub(crate) fn read(&self, index: u64, offset: usize, mut dst: IoMem<'_>) {
        let rcu = rcu::read_lock();
        let page = self.load(index);
        if page.is_null() {
            dst.zero();
        } else {
            // SAFETY: The page stays allocated while we hold `rcu` (erased pages are freed
            // after a grace period); the caller keeps `offset + dst.len()` within a page.
            unsafe { copy_from_page(page, offset, &dst) };
        }
        drop(rcu);
    }

    /// Copies `src` into page `index` at `offset` if the page exists; returns whether it did.
    fn write_existing(&self, index: u64, offset: usize, src: &IoMem<'_>) -> bool {
        let rcu = rcu::read_lock();
        let page = self.load(index);
        if !page.is_null() {
            // SAFETY: As in `read`; writers racing on the same bytes are the submitter's race.
            unsafe { copy_to_page(page, offset, src) };
        }
        drop(rcu);
        if !page.is_null() {
            self.changes.mark(&self.xa, index);
        }
        !page.is_null()
    }

    /// Copies `src` into page `index` at `offset`, allocating the page (with `gfp`) if needed.
    /// At the limit it waits for erased pages to come back, unless `nowait`.
    pub(crate) fn write(&self, index: u64, offset: usize, src: &IoMem<'_>, gfp: bindings::gfp_t, nowait: bool) -> Result<(), StoreError> {
        let mut waited_for_frees = false;
        loop {
            if self.write_existing(index, offset, src) {
                return Ok(());
            }
            match self.insert(index, offset, src, gfp, true) {
                Ok(true) => return Ok(()),
                // Another writer inserted the page first: write into theirs. (If a discard
                // removes it again before we get there, we go round once more.)
                Ok(false) => {}
                Err(StoreError::Limit) if self.pending.load(Ordering::Relaxed) > 0 && !waited_for_frees => {
                    if nowait {
                        return Err(StoreError::WouldBlock);
                    }
                    // Erased pages still count until their grace period ends: wait for it.
                    kernel::sync::rcu::rcu_barrier();
                    waited_for_frees = true;
                }
                Err(StoreError::WouldBlock) if !nowait => ffi::cond_resched(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Allocates a page holding `src` at `offset` (zeros elsewhere) and inserts it at `index`.
    /// `Ok(true)`: our page, with the data, is in. `Ok(false)`: another page was there first.
    /// `WouldBlock`: the limit is reached while another insert is in flight (maybe of this
    /// very index): retry once it is done.
    fn insert(&self, index: u64, offset: usize, src: &IoMem<'_>, gfp: bindings::gfp_t, mark: bool) -> Result<bool, StoreError> {
        let slot = usize::try_from(index).map_err(|_| StoreError::NoMemory)?;
        // A full-page write needs no zeroing.
        let zero = if src.len() == PAGE_SIZE { 0 } else { bindings::__GFP_ZERO };
        // SAFETY: Allocating an order-0 page has no preconditions.
        let page = unsafe { bindings::alloc_pages(gfp | zero | ffi::GFP_HIGHMEM | ffi::GFP_NOWARN, 0) };
        if page.is_null() {
            return Err(StoreError::NoMemory);
        }
        // SAFETY: We own the fresh page; the caller keeps the range within it.
        unsafe { copy_to_page(page, offset, src) };
        // SAFETY: `xa` is initialised; the lock is released on every path below.
        unsafe { bindings::xa_lock(self.xa()) };
        // The existence check and the limit check see one state: under the lock.
        let verdict = if !self.load(index).is_null() {
            Ok(false)
        } else if self.limit != 0 && self.pages() >= self.limit {
            Err(if self.inserting.load(Ordering::Relaxed) > 0 { StoreError::WouldBlock } else { StoreError::Limit })
        } else {
            Ok(true)
        };
        if verdict != Ok(true) {
            // SAFETY: Locked above.
            unsafe { bindings::xa_unlock(self.xa()) };
            // SAFETY: The page never became visible to anyone else.
            unsafe { bindings::__free_pages(page, 0) };
            return verdict;
        }
        // INVARIANT: reserved under the lock, so the limit holds.
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.inserting.fetch_add(1, Ordering::Relaxed);
        // SAFETY: The lock is held as `__xa_cmpxchg` requires (it may drop and retake it to
        // allocate nodes, with `gfp`, which has no `__GFP_HIGHMEM`); the page pointer is a
        // valid, 4-byte aligned XArray entry.
        let old = unsafe { bindings::__xa_cmpxchg(self.xa(), slot, ptr::null_mut(), page.cast(), gfp | ffi::GFP_NOWARN) };
        self.inserting.fetch_sub(1, Ordering::Relaxed);
        if old.is_null() && mark && self.changes.tracking() {
            // SAFETY: The lock is held (as after `__xa_cmpxchg`); our page is at `slot`.
            unsafe { bindings::__xa_set_mark(self.xa(), slot, ffi::xa_mark_0()) };
        }
        // SAFETY: Held since `xa_lock` above (`__xa_cmpxchg` returns with it held).
        unsafe { bindings::xa_unlock(self.xa()) };
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


    /// Takes page `slot` out of the XArray; it then counts as pending until freed. While a
    /// backing device is attached the index is recorded as a hole first (the backing device
    /// still holds its old data): if that fails the page stays.
    fn take(&self, slot: usize, gfp: bindings::gfp_t) -> Result<*mut bindings::page, StoreError> {
        if self.changes.tracking() && self.present(slot as u64) {
            self.changes.hole(slot, gfp)?;
        }
        // SAFETY: `xa` is initialised; `xa_erase` takes the lock itself.
        let page: *mut bindings::page = unsafe { bindings::xa_erase(self.xa(), slot) }.cast();
        if !page.is_null() {
            self.pending.fetch_add(1, Ordering::Relaxed);
            self.pages.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(page)
    }

    /// Removes page `index` while I/O may run; it is freed with `batch`. Returns whether there
    /// was one.
    pub(crate) fn erase(&self, index: u64, batch: &mut FreeBatch<'_>, gfp: bindings::gfp_t) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        let page = self.take(slot, gfp)?;
        if page.is_null() {
            return Ok(false);
        }
        // SAFETY: Just erased from this store; only current RCU readers may still use it.
        unsafe { batch.push(page) };
        Ok(true)
    }

    /// Calls `f(slot)` for every present index in `first..=last` (clamped to what `usize`
    /// holds), yielding the CPU every [`BATCH`] pages; visits only present pages, so a huge
    /// sparse range costs what it holds, not its size.
    fn for_each_present(&self, first: u64, last: u64, f: impl FnMut(usize)) {
        let Ok(first) = usize::try_from(first) else { return };
        let last = usize::try_from(last).unwrap_or(usize::MAX);
        self.xa.walk(ffi::xa_present(), first, last, f);
    }

    /// Discard and write-zeroes: removes every page with index in `first..=last` while I/O may
    /// run; they are freed after a grace period, a batch per RCU callback.
    pub(crate) fn erase_range(&self, first: u64, last: u64) -> Result<(), StoreError> {
        let mut batch = FreeBatch::new(self);
        let mut result = Ok(());
        self.for_each_present(first, last, |slot| {
            match self.take(slot, ffi::gfp_noio()) {
                Ok(page) if !page.is_null() => {
                    // SAFETY: Just erased from this store; only current RCU readers may use it.
                    unsafe { batch.push(page) };
                }
                Ok(_) => {}
                Err(e) => result = Err(e),
            }
        });
        result
    }

    /// Shrink: removes every page with index in `first..=last` and frees them before it
    /// returns (after one grace period for readers that found one), yielding the CPU between
    /// batches. May sleep; no RCU callback per page.
    pub(crate) fn remove_range(&self, first: u64, last: u64) {
        let mut chain: *mut bindings::page = ptr::null_mut();
        self.for_each_present(first, last, |slot| {
            // SAFETY: `xa` is initialised; `xa_erase` takes the lock itself. (Shrink is refused
            // while a backing device is attached, so no hole is needed.)
            let page: *mut bindings::page = unsafe { bindings::xa_erase(self.xa(), slot) }.cast();
            if !page.is_null() {
                self.pending.fetch_add(1, Ordering::Relaxed);
                self.pages.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: Just erased: ours, reachable only by current RCU readers; linked
                // into our private chain.
                unsafe { *chain_next(page) = chain };
                chain = page;
            }
        });
        if chain.is_null() {
            return;
        }
        // Readers that found a page before it was erased leave their read-side sections.
        kernel::sync::rcu::synchronize_rcu();
        while !chain.is_null() {
            // Cut BATCH pages off the chain, free them, yield.
            let mut cut = chain;
            let mut n = 1;
            while n < BATCH {
                // SAFETY: Pages of our chain.
                let next = unsafe { *chain_next(cut) };
                if next.is_null() {
                    break;
                }
                cut = next;
                n += 1;
            }
            // SAFETY: As above.
            let rest = unsafe { core::mem::take(&mut *chain_next(cut)) };
            // SAFETY: A grace period has passed since these pages left the XArray; they are
            // ours alone.
            let freed = unsafe { free_chain(chain) };
            self.pending.fetch_sub(freed, Ordering::Relaxed);
            chain = rest;
            ffi::cond_resched();
        }
    }

    /// Zeroes `len` bytes of page `index` from `offset`, if the page exists.
    pub(crate) fn zero(&self, index: u64, offset: usize, len: usize) {
        let rcu = rcu::read_lock();
        let page = self.load(index);
        if !page.is_null() {
            // SAFETY: As in `read`; the caller keeps the range within the page.
            unsafe { zero_page_range(page, offset, len) };
        }
        drop(rcu);
        if !page.is_null() {
            self.changes.mark(&self.xa, index);
        }
    }
}

impl Tracked for PageStore {
    fn tracking(&self) -> (&Changes, &Xa) {
        (&self.changes, &self.xa)
    }

    fn take_changed(&self, index: u64, mut dst: IoMem<'_>) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        self.changes.take(&self.xa, slot);
        let rcu = rcu::read_lock();
        let page = self.load(index);
        if page.is_null() {
            dst.zero();
        } else {
            // SAFETY: As in `read`; `dst` is a whole page.
            unsafe { copy_from_page(page, 0, &dst) };
        }
        drop(rcu);
        Ok(!page.is_null())
    }

    fn redirty(&self, index: u64) {
        self.changes.redirty(&self.xa, index, self.present(index));
    }

    /// Where no page may be yet (writes reach an index only once it is loaded), so a page
    /// already there is kept.
    fn fill(&self, index: u64, src: &IoMem<'_>, gfp: bindings::gfp_t) -> Result<(), StoreError> {
        loop {
            match self.insert(index, 0, src, gfp, false) {
                Ok(_) => return Ok(()),
                Err(StoreError::WouldBlock) => ffi::cond_resched(),
                Err(e) => return Err(e),
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for PageStore {
    fn drop(self: Pin<&mut Self>) {
        // No I/O can reach the store any more (the disk is gone), so pages are freed at once,
        // yielding between batches.
        let mut freed = 0u64;
        self.for_each_present(0, u64::MAX, |slot| {
            // SAFETY: `xa` is initialised and nobody else uses it now.
            let page: *mut bindings::page = unsafe { bindings::xa_erase(self.xa(), slot) }.cast();
            self.pages.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: The entry is a page owned by the store that nobody else can reach now.
            freed += unsafe { free_chain(page) };
        });
        self.pending.fetch_sub(freed, Ordering::Relaxed);
        // Batches erased earlier wait in RCU callbacks that use this store's counters.
        kernel::sync::rcu::rcu_barrier();
        // SAFETY: Every entry is gone; `xa_destroy` releases the XArray's nodes.
        unsafe { bindings::xa_destroy(self.xa()) };
    }
}

/// Calls `f(index)` for every entry of `xa` in `first..=last` carrying `mark`, in index order,
/// yielding the CPU every [`BATCH`] entries; visits only entries, so a huge sparse range costs
/// what it holds, not its size.
///
/// # Safety
///
/// `xa` is an initialised XArray that stays valid during the call.
pub(crate) unsafe fn walk(xa: *mut bindings::xarray, mark: bindings::xa_mark_t, first: usize, last: usize, mut f: impl FnMut(usize)) {
    let mut index = first;
    let mut seen = 0u64;
    while index <= last {
        // SAFETY: `xa` is valid (caller); `xa_find` takes RCU itself and updates `index` to the
        // index of the entry it returns.
        let entry = unsafe { bindings::xa_find(xa, &mut index, last, mark) };
        if entry.is_null() {
            break;
        }
        f(index);
        seen += 1;
        if seen % BATCH == 0 {
            ffi::cond_resched();
        }
        if index == last {
            break;
        }
        index += 1;
    }
}

/// # Safety
///
/// `page` is a valid page that stays allocated during the call; `offset + dst.len()` is at most
/// `PAGE_SIZE`.
unsafe fn copy_from_page(page: *mut bindings::page, offset: usize, dst: &IoMem<'_>) {
    // SAFETY: Valid page (caller); the mapping is undone below in LIFO order.
    let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
    // SAFETY: `addr + offset .. + len` lies in the mapped page (caller); `dst` is valid for
    // `len` bytes (`IoMem`) and is bio memory, never a store page, so the ranges do not overlap.
    unsafe { ptr::copy_nonoverlapping(addr.add(offset), dst.as_ptr(), dst.len()) };
    // SAFETY: `addr` came from `kmap_local_page` above.
    unsafe { bindings::kunmap_local(addr.cast()) };
}

/// # Safety
///
/// As [`copy_from_page`], with `src` for `dst`.
unsafe fn copy_to_page(page: *mut bindings::page, offset: usize, src: &IoMem<'_>) {
    // SAFETY: Valid page (caller); the mapping is undone below in LIFO order.
    let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
    // SAFETY: `src` is valid for `len` bytes (`IoMem`), the destination range lies in the
    // mapped page (caller), and bio memory never overlaps a store page.
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), addr.add(offset), src.len()) };
    // SAFETY: `addr` came from `kmap_local_page` above.
    unsafe { bindings::kunmap_local(addr.cast()) };
}

/// # Safety
///
/// `page` is valid during the call; `offset + len <= PAGE_SIZE`.
unsafe fn zero_page_range(page: *mut bindings::page, offset: usize, len: usize) {
    // SAFETY: Valid page (caller); the mapping is undone below in LIFO order.
    let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
    // SAFETY: The range lies in the mapped page (caller).
    unsafe { ptr::write_bytes(addr.add(offset), 0, len) };
    // SAFETY: `addr` came from `kmap_local_page` above.
    unsafe { bindings::kunmap_local(addr.cast()) };
}
