// SPDX-License-Identifier: GPL-2.0

//! The pages of the plain store (`struct page`): allocated one at a time, mapped only for the
//! length of a copy (`kmap_local_page`), and, once taken out of the store while RCU readers
//! may still copy from them, freed after a grace period: in batches of [`BATCH`] chained
//! through `page->private`, one RCU callback per batch, or all at once after a synchronous
//! grace period (shrink).

use crate::sys::ffi::{self, Gfp, PAGE_SIZE};
use crate::sys::iomem::IoMem;
use crate::sys::xarray::Entry;
use core::ffi::c_void;
use core::marker::PhantomPinned;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{bindings, prelude::*};

/// Pages freed per RCU callback, and per `cond_resched()` on the long paths.
pub(crate) const BATCH: u64 = 256;

/// An order-0 page of data, owned.
///
/// # Invariants
///
/// `page` is an order-0 page from `alloc_pages`, owned by this value (freed by its drop).
pub(crate) struct StorePage {
    page: NonNull<bindings::page>,
}

// SAFETY: A page is plain memory, not tied to a thread.
unsafe impl Send for StorePage {}

impl StorePage {
    /// A new page (zeroed if asked), or `None` if the allocator has none for `gfp`. Highmem is
    /// fine: the page is only reached through `kmap_local_page`.
    pub(crate) fn alloc(gfp: Gfp, zeroed: bool) -> Option<Self> {
        let zero = if zeroed { bindings::__GFP_ZERO } else { 0 };
        // SAFETY: Allocating an order-0 page has no preconditions.
        let page = unsafe { bindings::alloc_pages(gfp | zero | ffi::GFP_HIGHMEM | ffi::GFP_NOWARN, 0) };
        // INVARIANT: a fresh order-0 page, ours.
        NonNull::new(page).map(|page| Self { page })
    }

    /// Copies the whole of `page` into this page (ours alone).
    ///
    /// # Safety
    ///
    /// `page` stays allocated during the call.
    pub(crate) unsafe fn copy_page_from(&mut self, page: SharedPage) {
        // SAFETY: Both pages are allocated (ours; `page` by the caller) and distinct; each
        // stays mapped only during the copy, the inner mapping undone first.
        unsafe {
            self.shared().with_mapped(|to| {
                page.with_mapped(|from| ptr::copy_nonoverlapping(from, to, PAGE_SIZE));
            })
        };
    }

    /// A handle for copies while the page is shared.
    pub(crate) fn shared(&self) -> SharedPage {
        SharedPage(self.page)
    }

    /// Copies `src` into the page at `offset` while it is ours alone (not yet in a store).
    pub(crate) fn fill(&mut self, offset: usize, src: &IoMem<'_>) {
        if offset.checked_add(src.len()).is_some_and(|end| end <= PAGE_SIZE) {
            // SAFETY: We own the page (invariant), so it stays allocated; the range lies in it.
            unsafe { self.shared().copy_from(offset, src) };
        }
    }
}

impl Drop for StorePage {
    fn drop(&mut self) {
        // SAFETY: Ours (invariant), freed once.
        unsafe { bindings::__free_pages(self.page.as_ptr(), 0) };
    }
}

// SAFETY: `struct page` pointers are at least 4-byte aligned; `from_raw` takes back what
// `into_raw` gave, once.
unsafe impl Entry for StorePage {
    type Shared = SharedPage;

    fn into_raw(self) -> NonNull<c_void> {
        let page = self.page;
        core::mem::forget(self);
        page.cast()
    }

    unsafe fn from_raw(raw: NonNull<c_void>) -> Self {
        // INVARIANT: `raw` came from `into_raw` of a `StorePage` (caller), whose page we own
        // again.
        Self { page: raw.cast() }
    }

    fn shared(raw: NonNull<c_void>) -> SharedPage {
        SharedPage(raw.cast())
    }
}

/// A page of a store that others may use at the same time: copies go through raw pointers,
/// and the caller vouches that the page stays allocated.
#[derive(Clone, Copy)]
pub(crate) struct SharedPage(NonNull<bindings::page>);

impl SharedPage {
    /// Maps the page for `f`, which gets its address.
    ///
    /// # Safety
    ///
    /// The page stays allocated during the call.
    unsafe fn with_mapped<R>(self, f: impl FnOnce(*mut u8) -> R) -> R {
        // SAFETY: A valid page (caller); unmapped below, in LIFO order.
        let addr = unsafe { bindings::kmap_local_page(self.0.as_ptr()) }.cast::<u8>();
        let r = f(addr);
        // SAFETY: `addr` came from `kmap_local_page` above.
        unsafe { bindings::kunmap_local(addr.cast()) };
        r
    }

    /// Copies from the page at `offset` into `dst`.
    ///
    /// # Safety
    ///
    /// The page stays allocated during the call; `offset + dst.len() <= PAGE_SIZE`.
    pub(crate) unsafe fn copy_to(self, offset: usize, dst: &IoMem<'_>) {
        // SAFETY: Allocated (caller); the range lies in the mapped page (caller); `dst` is valid
        // for its length (`IoMem`) and is bio or buffer memory, never a store page, so the
        // ranges do not overlap.
        unsafe { self.with_mapped(|addr| ptr::copy_nonoverlapping(addr.add(offset), dst.as_ptr(), dst.len())) }
    }

    /// Copies `src` into the page at `offset`.
    ///
    /// # Safety
    ///
    /// As [`SharedPage::copy_to`], with `src` for `dst`.
    pub(crate) unsafe fn copy_from(self, offset: usize, src: &IoMem<'_>) {
        // SAFETY: As in `copy_to`, the other way round.
        unsafe { self.with_mapped(|addr| ptr::copy_nonoverlapping(src.as_ptr(), addr.add(offset), src.len())) }
    }

    /// Zeroes `len` bytes of the page from `offset`.
    ///
    /// # Safety
    ///
    /// The page stays allocated during the call; `offset + len <= PAGE_SIZE`.
    pub(crate) unsafe fn zero(self, offset: usize, len: usize) {
        // SAFETY: Allocated (caller); the range lies in the mapped page (caller).
        unsafe { self.with_mapped(|addr| ptr::write_bytes(addr.add(offset), 0, len)) }
    }
}

/// Where a retired page keeps what its batch needs (fields of `struct page` unused by a page
/// that is ours and on no list): the next page of the chain, and, in the chain's first page,
/// the [`Retired`] whose count the batch holds.
fn chain_next(page: *mut bindings::page) -> *mut *mut bindings::page {
    // SAFETY: Only the address of a field is computed; callers own the page.
    unsafe { ptr::addr_of_mut!((*page).__bindgen_anon_1.__bindgen_anon_1.private).cast() }
}

fn chain_owner(page: *mut bindings::page) -> *mut *const Retired {
    // SAFETY: As in `chain_next`.
    unsafe { ptr::addr_of_mut!((*page).__bindgen_anon_1.__bindgen_anon_1.__bindgen_anon_2.__folio_index).cast() }
}

const _: () = assert!(core::mem::size_of::<kernel::ffi::c_ulong>() == core::mem::size_of::<*mut bindings::page>());

/// Frees up to `max` pages of a chain linked through [`chain_next`], resetting the fields we
/// borrowed; returns how many it freed and the rest of the chain.
///
/// # Safety
///
/// Every page of the chain is an order-0 page owned by the caller that nobody else can reach.
unsafe fn free_chain(mut page: *mut bindings::page, max: u64) -> (u64, *mut bindings::page) {
    let mut n = 0;
    while !page.is_null() && n < max {
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
    (n, page)
}

/// The pages a store took out while readers may still use them, until they are freed;
/// [`Retired::pending`] counts them (they still count as used).
///
/// # Invariants
///
/// Every RCU callback queued by a [`FreeBatch`] of this `Retired` points to it; the drop waits
/// for them all (`rcu_barrier`), so it outlives them.
#[pin_data(PinnedDrop)]
pub(crate) struct Retired {
    pending: AtomicU64,
    /// Of those, the pages already handed to RCU (the others wait in a batch being filled).
    queued: AtomicU64,
    #[pin]
    _pin: PhantomPinned,
}

impl Retired {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self { pending: AtomicU64::new(0), queued: AtomicU64::new(0), _pin: PhantomPinned })
    }

    /// Pages retired and not yet freed.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Waits until some of the pages handed to RCU now are freed (one grace period, for our
    /// own callbacks only); `false` at once if none are (the pending ones wait in a batch not
    /// yet handed over, perhaps the caller's own).
    pub(crate) fn wait_for_some(&self) -> bool {
        let queued = self.queued.load(Ordering::Acquire);
        if queued == 0 {
            return false;
        }
        ffi::wait_below(&self.queued, queued);
        true
    }
}

#[pinned_drop]
impl PinnedDrop for Retired {
    fn drop(self: Pin<&mut Self>) {
        // Batches retired earlier wait in RCU callbacks that use our count.
        kernel::sync::rcu::rcu_barrier();
    }
}

/// RCU callback of a [`FreeBatch`]: frees its chain and gives its pages back to the count.
///
/// # Safety
///
/// `head` is the `callback_head` of the first page of a chain queued by [`FreeBatch::submit`].
unsafe extern "C" fn free_batch_rcu(head: *mut bindings::callback_head) {
    // SAFETY: `head` is the `callback_head` inside the chain's first `struct page`.
    let first = unsafe { kernel::container_of!(head, bindings::page, __bindgen_anon_1.callback_head) };
    // SAFETY: Set by `submit`; the `Retired` outlives its callbacks (invariant).
    let retired = unsafe { &**chain_owner(first) };
    // SAFETY: A grace period has passed since every page of the chain left its store, so no
    // reader can still use one; the chain is owned by this callback.
    let (n, _) = unsafe { free_chain(first, u64::MAX) };
    retired.pending.fetch_sub(n, Ordering::Relaxed);
    retired.queued.fetch_sub(n, Ordering::Release);
    ffi::wake_counter(&retired.queued);
}

/// Pages taken out of a store while readers may still use them, freed together after one grace
/// period. Submitted when full and when dropped.
pub(crate) struct FreeBatch<'a> {
    retired: Pin<&'a Retired>,
    first: *mut bindings::page,
    len: u64,
}

impl<'a> FreeBatch<'a> {
    pub(crate) fn new(retired: Pin<&'a Retired>) -> Self {
        Self { retired, first: ptr::null_mut(), len: 0 }
    }

    /// Takes a page just taken out of its store (no new reader can find it); it counts as
    /// pending until freed.
    pub(crate) fn push(&mut self, page: StorePage) {
        let page = page.into_raw().cast::<bindings::page>().as_ptr();
        self.retired.pending.fetch_add(1, Ordering::Relaxed);
        // SAFETY: The page is ours now; `private` links the chain.
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
        self.retired.queued.fetch_add(self.len, Ordering::Relaxed);
        self.len = 0;
        // SAFETY: The chain is ours; its first page records the `Retired` for the callback
        // (which outlives it, invariant), and its `callback_head` (which overlays `lru`, unused
        // by our pages) queues it.
        unsafe {
            *chain_owner(first) = ptr::from_ref(self.retired.get_ref());
            bindings::call_rcu(ptr::addr_of_mut!((*first).__bindgen_anon_1.callback_head), Some(free_batch_rcu));
        }
    }
}

impl Drop for FreeBatch<'_> {
    fn drop(&mut self) {
        self.submit();
    }
}

/// Pages taken out of a store that are freed before the taker goes on, after one synchronous
/// grace period (for readers that found one just before), yielding the CPU between batches:
/// no RCU callback per page. Freed on drop.
pub(crate) struct FreeNow<'a> {
    retired: Pin<&'a Retired>,
    chain: *mut bindings::page,
}

impl<'a> FreeNow<'a> {
    pub(crate) fn new(retired: Pin<&'a Retired>) -> Self {
        Self { retired, chain: ptr::null_mut() }
    }

    pub(crate) fn push(&mut self, page: StorePage) {
        let page = page.into_raw().cast::<bindings::page>().as_ptr();
        self.retired.pending.fetch_add(1, Ordering::Relaxed);
        // SAFETY: The page is ours now; `private` links our private chain.
        unsafe { *chain_next(page) = self.chain };
        self.chain = page;
    }
}

impl Drop for FreeNow<'_> {
    fn drop(&mut self) {
        if self.chain.is_null() {
            return;
        }
        // Readers that found a page before it was taken out leave their read-side sections.
        kernel::sync::rcu::synchronize_rcu();
        while !self.chain.is_null() {
            // SAFETY: A grace period has passed since these pages left the store; they are ours
            // alone.
            let (freed, rest) = unsafe { free_chain(self.chain, BATCH) };
            self.retired.pending.fetch_sub(freed, Ordering::Relaxed);
            self.chain = rest;
            ffi::cond_resched();
        }
    }
}
