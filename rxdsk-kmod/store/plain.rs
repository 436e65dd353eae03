// SPDX-License-Identifier: GPL-2.0

//! The plain page store: an XArray of pages keyed by page index.
//!
//! Lookups are lock-free (RCU). A new page is inserted with cmpxchg under the XArray lock, and
//! the memory limit is checked under the same lock, so two writers racing for one index keep
//! exactly one page and the loser writes into it instead of failing. Pages erased while I/O may
//! run (discard, write-zeroes, zero-page writes) are freed after an RCU grace period, in
//! batches with one RCU callback each; until then they still count as used. Control paths
//! (shrink, destroy) free directly and yield between batches.
//!
//! While a flush writes a cut (see [`Changes`]), a writer changes a page only under its index
//! lock, and first keeps a copy of a page of the cut that the flush has not written yet
//! (`frozen`); the flusher takes an index under the same lock. Outside a flush writers take no
//! lock.

use super::changes::Changes;
use super::error::StoreError;
use super::shards::{IndexLock, Shards};
use crate::sys::ffi::{self, Gfp, PAGE_SIZE};
use crate::sys::iomem::IoMem;
use crate::sys::page::{FreeBatch, FreeNow, Retired, SharedPage, StorePage};
use crate::sys::xarray::{self, Mark, XArray};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{prelude::*, sync::rcu};

/// # Invariants
///
/// - `xa` holds the store's pages; `pages` counts them.
/// - A page leaves `xa` only through a [`FreeBatch`] or [`FreeNow`] of `retired`, or a
///   [`FreeBatch`] of `evicted` (freed after a grace period), or when the store goes (no
///   reader left): a page found under the RCU read lock stays allocated until that lock is
///   released.
/// - `inserting` counts inserts that reserved their page under the XArray lock and have not
///   finished their cmpxchg.
/// - With a limit, `pages + retired.pending() <= limit` (reservations are made under the
///   XArray lock). Evicted pages waiting for their grace period are outside it, and at most
///   [`PageStore::evicted_slack`] (see [`PageStore::throttle_evictions`]).
/// - `changes` tracks the changes of `xa` (see [`Changes`]).
/// - While a cut is open, `frozen` holds, for an index of the cut changed since the cut and not
///   yet written out, its page as it was at the cut (a copy, or the page itself once erased);
///   `frozen_pages` counts them. A page is changed, and an index taken by the flusher, only
///   under the index's lock in `shards` while a cut is open; frozen pages leave only through
///   a [`FreeBatch`] (an erased one may still be read by RCU readers).
#[pin_data]
pub(crate) struct PageStore {
    #[pin]
    xa: XArray<StorePage>,
    #[pin]
    changes: Changes,
    #[pin]
    frozen: XArray<StorePage>,
    #[pin]
    shards: Shards,
    frozen_pages: AtomicU64,
    /// Declared after `xa`: waits for the RCU callbacks of pages erased earlier.
    #[pin]
    retired: Retired,
    /// Evicted pages on their way back to the kernel (see [`PageStore::evict_pass`]).
    #[pin]
    evicted: Retired,
    pages: AtomicU64,
    inserting: AtomicU64,
    /// 0: no limit.
    limit: u64,
}

impl PageStore {
    pub(crate) fn new(limit_pages: u64) -> impl PinInit<Self> {
        pin_init!(Self {
            xa <- XArray::new(),
            changes <- Changes::new(),
            frozen <- XArray::new(),
            shards <- Shards::new(),
            frozen_pages: AtomicU64::new(0),
            retired <- Retired::new(),
            evicted <- Retired::new(),
            pages: AtomicU64::new(0),
            inserting: AtomicU64::new(0),
            limit: limit_pages,
        })
    }

    /// A batch for the pages one bio erases, freed together after a grace period.
    pub(crate) fn free_batch(self: Pin<&Self>) -> FreeBatch<'_> {
        // SAFETY: A field of a pinned struct is pinned too (structural pinning, `#[pin]`).
        FreeBatch::new(unsafe { self.map_unchecked(|s| &s.retired) })
    }

    fn retired(self: Pin<&Self>) -> Pin<&Retired> {
        // SAFETY: As in `free_batch`.
        unsafe { self.map_unchecked(|s| &s.retired) }
    }

    fn evicted(self: Pin<&Self>) -> Pin<&Retired> {
        // SAFETY: As in `free_batch`.
        unsafe { self.map_unchecked(|s| &s.evicted) }
    }

    /// How many evicted pages may wait for their grace period beyond the limit: an eighth of
    /// it, at least 4 MiB. A grace period takes milliseconds; waiting for one per eviction
    /// pass made every cache miss wait too.
    fn evicted_slack(&self) -> u64 {
        (self.limit / 8).max((4 << 20) / PAGE_SIZE as u64)
    }

    /// Evicted pages not yet given back to the kernel (RAM held outside the limit).
    pub(crate) fn evicted_pending(&self) -> u64 {
        self.evicted.pending()
    }

    pub(super) fn changes(&self) -> &Changes {
        &self.changes
    }

    pub(super) fn xa(&self) -> &XArray<StorePage> {
        &self.xa
    }

    /// Whether page `index` exists now.
    fn present(&self, index: u64) -> bool {
        self.load(index).is_some()
    }

    /// Pages held now: stored ones plus erased ones not yet given back (what the limit counts).
    pub(crate) fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed) + self.retired.pending()
    }

    /// Pages kept for a flush in progress (outside the limit: at most the cut's size, and only
    /// until the flush has written them).
    pub(crate) fn frozen_pages(&self) -> u64 {
        self.frozen_pages.load(Ordering::Relaxed)
    }

    /// While a cut is open: the lock of `index`, for a change to it. `None` outside a flush.
    fn lock_for_change(&self, index: u64, nowait: bool) -> Result<Option<IndexLock<'_>>, StoreError> {
        if !self.changes.cut_open() {
            return Ok(None);
        }
        self.shards.lock(index, nowait).map(Some)
    }

    /// Before page `slot` changes, with its index lock held: a page of the cut not yet written
    /// out is copied into `frozen` (once). Fails, changing nothing, without memory.
    fn keep_for_cut(&self, slot: usize, gfp: Gfp) -> Result<(), StoreError> {
        if !self.changes.in_cut(&self.xa, slot) || self.frozen.contains(slot) {
            return Ok(());
        }
        if self.limit != 0 && self.pages() + self.frozen_pages() >= self.limit {
            // A writer of a cache device then waits for the flush to end (no copy needed).
            return Err(StoreError::Limit);
        }
        // Allocated before the RCU read lock, under which nothing may sleep.
        let mut copy = StorePage::alloc(gfp, false).ok_or(StoreError::NoMemory)?;
        let rcu = rcu::read_lock();
        match self.xa.load(slot) {
            // SAFETY: `copy_page_from` needs `page` allocated for the call: a stored page is
            // freed only after an RCU grace period (invariant), and we hold `rcu` throughout.
            Some(page) => unsafe { copy.copy_page_from(page) },
            None => return Ok(()),
        }
        drop(rcu);
        self.frozen.store(slot, copy, gfp).map_err(|_| StoreError::NoMemory)?;
        self.frozen_pages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn load(&self, index: u64) -> Option<SharedPage> {
        // Indexes past what `usize` holds were never stored (sizes are bounded at CREATE).
        self.xa.load(usize::try_from(index).ok()?)
    }

    /// Copies from page `index` at `offset` into `dst`, or zeros if the page does not exist;
    /// returns whether it did.
    pub(crate) fn read(&self, index: u64, offset: usize, mut dst: IoMem<'_>) -> bool {
        let rcu = rcu::read_lock();
        let page = self.load(index);
        match page {
            None => dst.zero(),
            // SAFETY: The page stays allocated while we hold `rcu` (invariant); the caller
            // keeps `offset + dst.len()` within a page.
            Some(page) => unsafe { page.copy_to(offset, &dst) },
        }
        drop(rcu);
        page.is_some()
    }

    /// Copies `src` into page `index` at `offset` if the page exists; returns whether it did.
    fn write_existing(&self, index: u64, offset: usize, src: &IoMem<'_>) -> bool {
        let rcu = rcu::read_lock();
        let page = self.load(index);
        if let Some(page) = page {
            // SAFETY: As in `read`; writers racing on the same bytes are the submitter's race.
            unsafe { page.copy_from(offset, src) };
        }
        drop(rcu);
        if page.is_some() {
            self.changes.mark(&self.xa, index);
        }
        page.is_some()
    }

    /// Copies `src` into page `index` at `offset`, allocating the page (with `gfp`) if needed;
    /// returns whether the page was there already. At the limit it waits for erased pages to
    /// come back, unless `nowait`.
    pub(crate) fn write(&self, index: u64, offset: usize, src: &IoMem<'_>, gfp: Gfp, nowait: bool) -> Result<bool, StoreError> {
        let locked = self.lock_for_change(index, nowait)?;
        if locked.is_some() {
            self.keep_for_cut(usize::try_from(index).map_err(|_| StoreError::NoMemory)?, gfp)?;
        }
        let mut waited_for_frees = false;
        loop {
            if self.write_existing(index, offset, src) {
                return Ok(true);
            }
            match self.insert(index, offset, src, gfp, true) {
                Ok(true) => return Ok(false),
                // Another writer inserted the page first: write into theirs. (If a discard
                // removes it again before we get there, we go round once more.)
                Ok(false) => {}
                Err(StoreError::Limit) if self.retired.pending() > 0 && !waited_for_frees => {
                    if nowait {
                        return Err(StoreError::WouldBlock);
                    }
                    // Erased pages still count until their grace period ends: wait for ours
                    // (never for the whole system's callbacks, as `rcu_barrier` would).
                    if !self.retired.wait_for_some() {
                        return Err(StoreError::Limit);
                    }
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
    fn insert(&self, index: u64, offset: usize, src: &IoMem<'_>, gfp: Gfp, mark: bool) -> Result<bool, StoreError> {
        let slot = usize::try_from(index).map_err(|_| StoreError::NoMemory)?;
        // A full-page write needs no zeroing.
        let mut page = StorePage::alloc(gfp, src.len() != PAGE_SIZE).ok_or(StoreError::NoMemory)?;
        page.fill(offset, src);
        let mut locked = self.xa.lock();
        // The existence check and the limit check see one state: under the lock.
        if locked.contains(slot) {
            return Ok(false);
        }
        // Pages kept for a flush count too: on a cache device the limit bounds all the RAM.
        if self.limit != 0 && self.pages() + self.frozen_pages() >= self.limit {
            return Err(if self.inserting.load(Ordering::Relaxed) > 0 { StoreError::WouldBlock } else { StoreError::Limit });
        }
        // INVARIANT: reserved under the lock, so the limit holds.
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.inserting.fetch_add(1, Ordering::Relaxed);
        let inserted = locked.insert(slot, page, gfp);
        self.inserting.fetch_sub(1, Ordering::Relaxed);
        if inserted.is_ok() && mark && self.changes.tracking() {
            locked.set_mark(slot, self.changes.current_mark());
        }
        drop(locked);
        match inserted {
            Ok(()) => Ok(true),
            Err(e) => {
                self.pages.fetch_sub(1, Ordering::Relaxed);
                // Our page never became visible to anyone: it is freed with `e`.
                match e {
                    xarray::StoreError::NoMemory(_) => Err(StoreError::NoMemory),
                    xarray::StoreError::Occupied(_) => Ok(false),
                }
            }
        }
    }

    /// Takes page `slot` out of the XArray. While a backing device is attached the index is
    /// recorded as a hole first (the backing device still holds its old data): if that fails
    /// the page stays.
    fn take(&self, slot: usize, gfp: Gfp) -> Result<Option<StorePage>, StoreError> {
        if self.changes.tracking() && self.present(slot as u64) {
            self.changes.hole(slot, gfp)?;
        }
        Ok(self.xa.erase(slot))
    }

    /// Removes page `index` while I/O may run; it is freed with `batch` (or, if a flush still
    /// has to write it as it was, kept in `frozen`). Returns whether there was one.
    pub(crate) fn erase(&self, index: u64, batch: &mut FreeBatch<'_>, gfp: Gfp, nowait: bool) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        let _locked = self.lock_for_change(index, nowait)?;
        // The page itself is the cut's content: keep it rather than a copy.
        let keep = self.changes.in_cut(&self.xa, slot) && !self.frozen.contains(slot);
        if keep {
            self.frozen.reserve(slot, gfp).map_err(|_| StoreError::NoMemory)?;
        }
        let page = match self.take(slot, gfp) {
            Ok(Some(page)) => page,
            other => {
                if keep {
                    self.frozen.release(slot);
                }
                return other.map(|_| false);
            }
        };
        self.pages.fetch_sub(1, Ordering::Relaxed);
        if keep {
            // Reserved above, so the store needs no memory and cannot fail.
            match self.frozen.store(slot, page, ffi::GFP_NOWAIT) {
                Ok(_) => self.frozen_pages.fetch_add(1, Ordering::Relaxed),
                Err(xarray::StoreError::NoMemory(page) | xarray::StoreError::Occupied(page)) => {
                    batch.push(page);
                    0
                }
            };
            return Ok(true);
        }
        // INVARIANT: freed after a grace period (counted as pending from the push on).
        batch.push(page);
        Ok(true)
    }

    /// Calls `f(slot)` for every present index in `first..=last` (clamped to what `usize`
    /// holds), yielding the CPU between batches; visits only present pages, so a huge sparse
    /// range costs what it holds, not its size.
    fn for_each_present(&self, first: u64, last: u64, f: impl FnMut(usize)) {
        let Ok(first) = usize::try_from(first) else { return };
        let last = usize::try_from(last).unwrap_or(usize::MAX);
        self.xa.walk(Mark::Present, first, last, f);
    }

    /// Discard and write-zeroes: removes every page with index in `first..=last` while I/O may
    /// run; they are freed after a grace period, a batch per RCU callback.
    pub(crate) fn erase_range(self: Pin<&Self>, first: u64, last: u64) -> Result<(), StoreError> {
        let mut batch = self.free_batch();
        let mut result = Ok(());
        self.for_each_present(first, last, |slot| {
            if let Err(e) = self.erase(slot as u64, &mut batch, ffi::gfp_noio(), false) {
                result = Err(e);
            }
        });
        result
    }

    /// Shrink: removes every page with index in `first..=last` and frees them before it
    /// returns (after one grace period for readers that found one), yielding the CPU between
    /// batches. May sleep; no RCU callback per page.
    pub(crate) fn remove_range(self: Pin<&Self>, first: u64, last: u64) {
        let mut doomed = FreeNow::new(self.retired());
        self.for_each_present(first, last, |slot| {
            // Shrink is refused while a backing device is attached, so no hole is needed.
            if let Some(page) = self.xa.erase(slot) {
                // INVARIANT: freed after a grace period (when `doomed` drops).
                doomed.push(page);
                self.pages.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// Before an eviction pass, outside the cut lock (writers would wait with us): if passes
    /// outran the grace periods, waits for one batch of evicted pages to be freed.
    pub(crate) fn throttle_evictions(&self) {
        if self.evicted.pending() >= self.evicted_slack() {
            self.evicted.wait_for_some();
        }
    }

    /// Waits until the pages evicted so far are back with the kernel (a grace period, and our
    /// callbacks): memory reclaim counts on what a shrinker's scan freed being free.
    pub(crate) fn wait_evicted(&self) {
        while self.evicted.pending() > 0 && self.evicted.wait_for_some() {}
    }

    /// One pass of eviction over the present pages from `from`, visiting at most `visits`:
    /// a page changed since the last flush is skipped, any other is evicted if `choose` says
    /// so, and freed by an RCU callback after a grace period (for readers that found it); it
    /// no longer counts against the limit meanwhile (see [`PageStore::evicted_slack`]).
    /// Returns how many went and where the next pass starts (`None`: the end was reached).
    /// The caller holds the device's cut lock for writing and no cut is open: nothing changes
    /// a page meanwhile, so a page seen clean stays so.
    pub(crate) fn evict_pass(self: Pin<&Self>, from: u64, visits: u64, mut choose: impl FnMut(u64) -> bool) -> (u64, Option<u64>) {
        let mut doomed = FreeBatch::new(self.evicted());
        let Ok(mut at) = usize::try_from(from) else { return (0, None) };
        let mut evicted = 0;
        for _ in 0..visits {
            let Some(slot) = self.xa.find(at, usize::MAX, Mark::Present) else { return (evicted, None) };
            if self.changes.is_changed(&self.xa, slot) || self.frozen.contains(slot) || !choose(slot as u64) {
                // Skipped.
            } else if let Some(page) = self.xa.erase(slot) {
                // INVARIANT: freed after a grace period (the callback `doomed` queues).
                doomed.push(page);
                self.pages.fetch_sub(1, Ordering::Relaxed);
                evicted += 1;
            }
            match slot.checked_add(1) {
                Some(next) => at = next,
                None => return (evicted, None),
            }
        }
        (evicted, Some(at as u64))
    }

    /// Zeroes `len` bytes of page `index` from `offset`, if the page exists.
    pub(crate) fn zero(&self, index: u64, offset: usize, len: usize, gfp: Gfp, nowait: bool) -> Result<(), StoreError> {
        let locked = self.lock_for_change(index, nowait)?;
        if locked.is_some() {
            self.keep_for_cut(usize::try_from(index).map_err(|_| StoreError::NoMemory)?, gfp)?;
        }
        let rcu = rcu::read_lock();
        let page = self.load(index);
        if let Some(page) = page {
            // SAFETY: As in `read`; the caller keeps the range within the page.
            unsafe { page.zero(offset, len) };
        }
        drop(rcu);
        if page.is_some() {
            self.changes.mark(&self.xa, index);
        }
        Ok(())
    }

    /// Takes `index` for writing back: clears its change and puts the page (or zeros, for a
    /// hole) into `dst`, a whole page. Returns whether there was a page.
    pub(crate) fn take_changed(&self, index: u64, mut dst: IoMem<'_>) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        self.changes.take(&self.xa, slot);
        let rcu = rcu::read_lock();
        let page = self.load(index);
        match page {
            None => dst.zero(),
            // SAFETY: As in `read`; `dst` is a whole page.
            Some(page) => unsafe { page.copy_to(0, &dst) },
        }
        drop(rcu);
        Ok(page.is_some())
    }

    /// The first index at or after `from` that the open cut still has to write.
    pub(crate) fn cut_next(&self, from: u64) -> Option<u64> {
        self.changes.cut_next(&self.xa, &self.frozen, from)
    }

    /// Takes index `index` of the open cut for writing out: puts its content at the cut into
    /// `dst` (a whole page; zeros for a hole) and removes it from the cut. Returns whether the
    /// content was a page.
    pub(crate) fn take_cut(self: Pin<&Self>, index: u64, mut dst: IoMem<'_>) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        let _locked = self.shards.lock(index, false)?;
        let present = if let Some(kept) = self.frozen.erase(slot) {
            // SAFETY: Ours now (taken out of `frozen`); allocated until pushed below.
            unsafe { kept.shared().copy_to(0, &dst) };
            self.frozen_pages.fetch_sub(1, Ordering::Relaxed);
            // An erased page may still be read by RCU readers: freed after a grace period.
            self.free_batch().push(kept);
            true
        } else if self.changes.in_cut(&self.xa, slot) {
            let rcu = rcu::read_lock();
            let page = self.load(index);
            match page {
                // SAFETY: As in `read`; `dst` is a whole page.
                Some(page) => unsafe { page.copy_to(0, &dst) },
                None => dst.zero(),
            }
            drop(rcu);
            page.is_some()
        } else {
            dst.zero();
            false
        };
        self.changes.consume(&self.xa, slot);
        Ok(present)
    }

    /// Lets go of what a closed cut kept (pages kept for indexes it wrote, or for all of it
    /// after a failure, whose changes the current epoch holds).
    pub(crate) fn drop_frozen(self: Pin<&Self>) {
        let mut batch = self.free_batch();
        self.frozen.walk(Mark::Present, 0, usize::MAX, |slot| {
            if let Some(page) = self.frozen.erase(slot) {
                self.frozen_pages.fetch_sub(1, Ordering::Relaxed);
                batch.push(page);
            }
        });
    }

    /// Makes `index` changed again after a failed write-back.
    pub(crate) fn redirty(&self, index: u64) {
        self.changes.redirty(&self.xa, index, self.present(index));
    }

    /// Stores a whole page read from the image at `index`, as clean; where no page may be yet
    /// (writes reach an index only once it is loaded), so a page already there is kept.
    pub(crate) fn fill(&self, index: u64, src: &IoMem<'_>, gfp: Gfp) -> Result<(), StoreError> {
        loop {
            match self.insert(index, 0, src, gfp, false) {
                Ok(_) => return Ok(()),
                Err(StoreError::WouldBlock) => ffi::cond_resched(),
                Err(e) => return Err(e),
            }
        }
    }
}
