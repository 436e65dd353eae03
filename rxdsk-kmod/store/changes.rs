// SPDX-License-Identifier: GPL-2.0

//! What changed since the last flush to the backing device, for either page store (plain or
//! compressed): [`Mark::M0`] on the store's own XArray for every page changed, and an XArray of
//! holes for every page erased. The flusher takes changes index by index; a writer marks again.

use super::error::StoreError;
use crate::sys::ffi::{self, Gfp};
use crate::sys::xarray::{Entry, Mark, Present, XArray, WALK_BATCH};
use core::sync::atomic::{fence, AtomicBool, Ordering};
use kernel::prelude::*;

/// # Invariants
///
/// While `tracking` (a backing device is attached), every page of the owner's store changed
/// since the last flush carries [`Mark::M0`] in the store's XArray, and every page erased since
/// then has an entry in `holes` unless a page was stored there again. Every method is given
/// that same store XArray.
#[pin_data]
pub(crate) struct Changes {
    #[pin]
    holes: XArray<Present>,
    tracking: AtomicBool,
}

impl Changes {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self { holes <- XArray::new(), tracking: AtomicBool::new(false) })
    }

    pub(crate) fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// Marks page `index` changed since the last flush, if tracking. The full fence orders the
    /// caller's data change before the mark test, against the flusher's mark clear before its
    /// copy: one of us sees the other, so no change is lost (Dekker).
    pub(crate) fn mark<T: Entry>(&self, xa: &XArray<T>, index: u64) {
        if !self.tracking() {
            return;
        }
        let Ok(slot) = usize::try_from(index) else { return };
        fence(Ordering::SeqCst);
        if xa.get_mark(slot, Mark::M0) {
            return;
        }
        // An index erased meanwhile is ignored.
        xa.set_mark(slot, Mark::M0);
    }

    /// Records that the page at `slot` is being erased, if tracking (the backing device still
    /// holds its old data). If that fails the page must stay.
    pub(crate) fn hole(&self, slot: usize, gfp: Gfp) -> Result<(), StoreError> {
        if !self.tracking() {
            return Ok(());
        }
        self.record_hole(slot, gfp)
    }

    fn record_hole(&self, slot: usize, gfp: Gfp) -> Result<(), StoreError> {
        self.holes.store(slot, Present, gfp).map(drop).map_err(|_| StoreError::NoMemory)
    }

    /// Starts tracking changes for a backing device: every page held now is changed (the
    /// backing device has none of it yet).
    pub(crate) fn start<T: Entry>(&self, xa: &XArray<T>) {
        self.tracking.store(true, Ordering::SeqCst);
        xa.walk(Mark::Present, 0, usize::MAX, |slot| xa.set_mark(slot, Mark::M0));
    }

    /// Starts tracking with nothing changed: the store was just loaded from its image.
    pub(crate) fn start_clean(&self) {
        self.tracking.store(true, Ordering::SeqCst);
    }

    /// Stops tracking and forgets what changed (the backing device is let go).
    pub(crate) fn stop<T: Entry>(&self, xa: &XArray<T>) {
        self.tracking.store(false, Ordering::SeqCst);
        xa.walk(Mark::M0, 0, usize::MAX, |slot| xa.clear_mark(slot, Mark::M0));
        self.holes.clear();
    }

    /// The first index at or after `from` changed since the last flush: a marked page or a
    /// hole.
    pub(crate) fn next<T: Entry>(&self, xa: &XArray<T>, from: u64) -> Option<u64> {
        let from = usize::try_from(from).ok()?;
        let page = xa.find(from, usize::MAX, Mark::M0);
        let hole = self.holes.find(from, usize::MAX, Mark::Present);
        match (page, hole) {
            (Some(p), Some(h)) => Some(p.min(h) as u64),
            (p, h) => p.or(h).map(|i| i as u64),
        }
    }

    /// Every index changed since the last flush, ascending: what a flush starting now must
    /// write. May sleep (allocates with `GFP_KERNEL`: a control path).
    pub(crate) fn indexes<T: Entry>(&self, xa: &XArray<T>) -> Result<KVVec<u64>> {
        let mut out = KVVec::new();
        let mut from = 0u64;
        while let Some(index) = self.next(xa, from) {
            out.push(index, GFP_KERNEL)?;
            if (out.len() as u64).checked_rem(WALK_BATCH) == Some(0) {
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
    pub(crate) fn count<T: Entry>(&self, xa: &XArray<T>) -> u64 {
        let mut n = 0;
        xa.walk(Mark::M0, 0, usize::MAX, |_| n += 1);
        self.holes.walk(Mark::Present, 0, usize::MAX, |slot| {
            if !xa.get_mark(slot, Mark::M0) {
                n += 1;
            }
        });
        n
    }

    /// Takes index `slot` for writing back: clears its mark and hole. The caller copies the
    /// page (or zeros) afterwards: a writer that changes it later marks it again.
    pub(crate) fn take<T: Entry>(&self, xa: &XArray<T>, slot: usize) {
        // Most changes are pages, not holes: look before taking the lock to erase. (Holes are
        // recorded by writers and erased only by the flusher, who is us: none can appear at
        // `slot` between the look and the erase that we would miss, as the next flush sees it.)
        if self.holes.contains(slot) {
            self.holes.erase(slot);
        }
        xa.clear_mark(slot, Mark::M0);
        // Pairs with the writers' fence in `mark`.
        fence(Ordering::SeqCst);
    }

    /// Makes `index` changed again after a failed write-back: its page is marked, or if it
    /// has none (`present` false), a hole recorded.
    pub(crate) fn redirty<T: Entry>(&self, xa: &XArray<T>, index: u64, present: bool) {
        let Ok(slot) = usize::try_from(index) else { return };
        if present {
            self.mark(xa, index);
        } else if self.record_hole(slot, ffi::GFP_KERNEL).is_err() {
            // A control path: it may wait for memory. Should even that fail, the next
            // attach's full write covers it; here the change would be lost, so warn.
            pr_warn!("rxdsk: cannot record a discarded page for the next flush\n");
        }
    }
}
