// SPDX-License-Identifier: GPL-2.0

//! What changed since the last flush to the backing device, for either page store (plain or
//! compressed): `XA_MARK_0` on the store's own XArray for every page changed, and an XArray of
//! holes for every page erased. The flusher takes changes index by index; a writer marks again.

use crate::ffi;
use crate::pages::{walk, StoreError, BATCH};
use core::ptr;
use core::sync::atomic::{fence, AtomicBool, Ordering};
use kernel::{bindings, prelude::*, types::Opaque};

/// The entry of `holes`: `xa_mk_value(0)`, a value entry (odd: never a pointer).
const HOLE: *mut core::ffi::c_void = ptr::without_provenance_mut(1);

/// An XArray.
///
/// # Invariants
///
/// `inner` is initialised (by [`Xa::new`]) for as long as the `Xa` lives; its owner empties
/// it and calls `xa_destroy` before it goes.
#[pin_data]
pub(crate) struct Xa {
    #[pin]
    inner: Opaque<bindings::xarray>,
}

impl Xa {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `xa_init_flags` initialises the XArray in place; flags 0 as brd: only
            // process context uses it.
            inner <- Opaque::ffi_init(|slot: *mut bindings::xarray| unsafe { bindings::xa_init_flags(slot, 0) }),
        })
    }

    /// The XArray, initialised (invariant).
    pub(crate) fn get(&self) -> *mut bindings::xarray {
        self.inner.get()
    }

    /// Calls `f(index)` for every entry in `first..=last` carrying `mark`, in index order,
    /// yielding the CPU between batches.
    pub(crate) fn walk(&self, mark: bindings::xa_mark_t, first: usize, last: usize, f: impl FnMut(usize)) {
        // SAFETY: Initialised and valid while `self` is (invariant).
        unsafe { walk(self.get(), mark, first, last, f) }
    }
}

/// # Invariants
///
/// While `tracking` (a backing device is attached), every page of the owner's store changed
/// since the last flush carries `XA_MARK_0` in the store's XArray, and every page erased since
/// then has an entry in `holes` (a value entry: no memory of its own) unless a page was stored
/// there again. Every method is given that same store XArray.
#[pin_data(PinnedDrop)]
pub(crate) struct Changes {
    #[pin]
    holes: Xa,
    tracking: AtomicBool,
}

impl Changes {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self { holes <- Xa::new(), tracking: AtomicBool::new(false) })
    }

    pub(crate) fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// Marks page `index` changed since the last flush, if tracking. The full fence orders the
    /// caller's data change before the mark test, against the flusher's mark clear before its
    /// copy: one of us sees the other, so no change is lost (Dekker).
    pub(crate) fn mark(&self, xa: &Xa, index: u64) {
        if !self.tracking() {
            return;
        }
        let Ok(slot) = usize::try_from(index) else { return };
        fence(Ordering::SeqCst);
        // SAFETY: `xa` is initialised; `xa_get_mark` takes RCU itself.
        if unsafe { bindings::xa_get_mark(xa.get(), slot, ffi::xa_mark_0()) } {
            return;
        }
        // SAFETY: `xa` is initialised; `xa_set_mark` takes the lock itself and ignores an index
        // erased meanwhile.
        unsafe { bindings::xa_set_mark(xa.get(), slot, ffi::xa_mark_0()) };
    }

    /// Records that the page at `slot` is being erased, if tracking (the backing device still
    /// holds its old data). If that fails the page must stay.
    pub(crate) fn hole(&self, slot: usize, gfp: bindings::gfp_t) -> Result<(), StoreError> {
        if !self.tracking() {
            return Ok(());
        }
        self.record_hole(slot, gfp)
    }

    fn record_hole(&self, slot: usize, gfp: bindings::gfp_t) -> Result<(), StoreError> {
        // SAFETY: `holes` is initialised; `xa_store` takes the lock itself; `HOLE` is a value
        // entry (odd), which the XArray stores without dereferencing.
        let old = unsafe { bindings::xa_store(self.holes.get(), slot, HOLE, gfp | ffi::GFP_NOWARN) };
        // SAFETY: `xa_err` only decodes the entry value.
        if unsafe { bindings::xa_err(old) } != 0 {
            return Err(StoreError::NoMemory);
        }
        Ok(())
    }

    /// Starts tracking changes for a backing device: every page held now is changed (the
    /// backing device has none of it yet).
    pub(crate) fn start(&self, xa: &Xa) {
        self.tracking.store(true, Ordering::SeqCst);
        xa.walk(ffi::xa_present(), 0, usize::MAX, |slot| {
            // SAFETY: `xa` is initialised; `xa_set_mark` takes the lock itself.
            unsafe { bindings::xa_set_mark(xa.get(), slot, ffi::xa_mark_0()) };
        });
    }

    /// Starts tracking with nothing changed: the store was just loaded from its image.
    pub(crate) fn start_clean(&self) {
        self.tracking.store(true, Ordering::SeqCst);
    }

    /// Stops tracking and forgets what changed (the backing device is let go).
    pub(crate) fn stop(&self, xa: &Xa) {
        self.tracking.store(false, Ordering::SeqCst);
        xa.walk(ffi::xa_mark_0(), 0, usize::MAX, |slot| {
            // SAFETY: `xa` is initialised; `xa_clear_mark` takes the lock itself.
            unsafe { bindings::xa_clear_mark(xa.get(), slot, ffi::xa_mark_0()) };
        });
        // SAFETY: `holes` holds value entries only; `xa_destroy` empties it, and it stays
        // usable (an empty XArray) afterwards.
        unsafe { bindings::xa_destroy(self.holes.get()) };
    }

    /// The first index at or after `from` changed since the last flush: a marked page or a
    /// hole.
    pub(crate) fn next(&self, xa: &Xa, from: u64) -> Option<u64> {
        let from = usize::try_from(from).ok()?;
        let (mut page_at, mut hole_at) = (from, from);
        // SAFETY: Both XArrays are initialised; `xa_find` takes RCU itself.
        let page = unsafe { bindings::xa_find(xa.get(), &mut page_at, usize::MAX, ffi::xa_mark_0()) };
        // SAFETY: As above.
        let hole = unsafe { bindings::xa_find(self.holes.get(), &mut hole_at, usize::MAX, ffi::xa_present()) };
        match (page.is_null(), hole.is_null()) {
            (true, true) => None,
            (false, true) => Some(page_at as u64),
            (true, false) => Some(hole_at as u64),
            (false, false) => Some(page_at.min(hole_at) as u64),
        }
    }

    /// Every index changed since the last flush, ascending: what a flush starting now must
    /// write. May sleep (allocates with `GFP_KERNEL`: a control path).
    pub(crate) fn indexes(&self, xa: &Xa) -> Result<KVVec<u64>> {
        let mut out = KVVec::new();
        let mut from = 0u64;
        while let Some(index) = self.next(xa, from) {
            out.push(index, GFP_KERNEL)?;
            if (out.len() as u64).checked_rem(BATCH) == Some(0) {
                ffi::cond_resched();
            }
            match index.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// Pages and holes changed since the last flush (a walk: for reports). An index that was
    /// erased and written again is one change, not two.
    pub(crate) fn count(&self, xa: &Xa) -> u64 {
        let mut n = 0;
        xa.walk(ffi::xa_mark_0(), 0, usize::MAX, |_| n += 1);
        self.holes.walk(ffi::xa_present(), 0, usize::MAX, |slot| {
            // SAFETY: `xa` is initialised; `xa_get_mark` takes RCU itself.
            if !unsafe { bindings::xa_get_mark(xa.get(), slot, ffi::xa_mark_0()) } {
                n += 1;
            }
        });
        n
    }

    /// Takes index `slot` for writing back: clears its mark and hole. The caller copies the
    /// page (or zeros) afterwards: a writer that changes it later marks it again.
    pub(crate) fn take(&self, xa: &Xa, slot: usize) {
        // Most changes are pages, not holes: look before taking the lock to erase. (Holes are
        // recorded by writers and erased only by the flusher, who is us: none can appear at
        // `slot` between the look and the erase that we would miss, as the next flush sees it.)
        // SAFETY: `holes` is initialised; `xa_load` takes RCU itself.
        if !unsafe { bindings::xa_load(self.holes.get(), slot) }.is_null() {
            // SAFETY: `holes` is initialised; `xa_erase` takes the lock itself.
            unsafe { bindings::xa_erase(self.holes.get(), slot) };
        }
        // SAFETY: `xa` is initialised; `xa_clear_mark` takes the lock itself.
        unsafe { bindings::xa_clear_mark(xa.get(), slot, ffi::xa_mark_0()) };
        // Pairs with the writers' fence in `mark`.
        fence(Ordering::SeqCst);
    }

    /// Makes `index` changed again after a failed write-back: its page is marked, or if it
    /// has none (`present` false), a hole recorded.
    pub(crate) fn redirty(&self, xa: &Xa, index: u64, present: bool) {
        let Ok(slot) = usize::try_from(index) else { return };
        if present {
            self.mark(xa, index);
        } else if self.record_hole(slot, bindings::GFP_KERNEL).is_err() {
            // A control path: it may wait for memory. Should even that fail, the next
            // attach's full write covers it; here the change would be lost, so warn.
            pr_warn!("rxdsk: cannot record a discarded page for the next flush\n");
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Changes {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `holes` holds value entries only, which own nothing.
        unsafe { bindings::xa_destroy(self.holes.get()) };
    }
}

/// What the backing device's code needs of a page store: the changes since the last flush,
/// and pages filled from the image.
pub(crate) trait Tracked {
    /// The store's change tracking and the XArray it tracks.
    fn tracking(&self) -> (&Changes, &Xa);

    fn start_tracking(&self) {
        let (changes, xa) = self.tracking();
        changes.start(xa);
    }

    fn start_tracking_clean(&self) {
        self.tracking().0.start_clean();
    }

    fn stop_tracking(&self) {
        let (changes, xa) = self.tracking();
        changes.stop(xa);
    }

    fn next_changed(&self, from: u64) -> Option<u64> {
        let (changes, xa) = self.tracking();
        changes.next(xa, from)
    }

    fn changed_indexes(&self) -> Result<KVVec<u64>> {
        let (changes, xa) = self.tracking();
        changes.indexes(xa)
    }

    /// Pages and holes changed since the last flush.
    fn changed(&self) -> u64 {
        let (changes, xa) = self.tracking();
        changes.count(xa)
    }

    /// Takes `index` for writing back: clears its change and puts the page (or zeros, for a
    /// hole) into `dst`, a whole page. Returns whether there was a page.
    fn take_changed(&self, index: u64, dst: crate::iomem::IoMem<'_>) -> Result<bool, StoreError>;
    /// Makes `index` changed again after a failed write-back.
    fn redirty(&self, index: u64);
    /// Stores a whole page read from the image at `index`, as clean. A page already there is
    /// kept.
    fn fill(&self, index: u64, src: &crate::iomem::IoMem<'_>, gfp: bindings::gfp_t) -> Result<(), StoreError>;
}
