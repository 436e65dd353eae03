// SPDX-License-Identifier: GPL-2.0

//! What changed since the last flush to the backing device, for either page store (plain or
//! compressed), in two epochs so that a flush can take a consistent cut.
//!
//! A change is a mark on the store's own XArray (a page written) or an entry in a holes
//! XArray (a page erased: the backing device still holds its old data). The epoch in use
//! picks the mark ([`Mark::M0`] or [`Mark::M1`]) and the holes. A flush takes its cut under
//! the device's cut lock, held for writing, so that no change to the store is under way:
//! [`Changes::begin_cut`] flips the epoch, and what the old epoch holds is exactly what changed
//! before the cut. The flusher consumes it index by index while writers go on in the new
//! epoch; the store keeps, for an index of the cut that a writer changes before the flusher
//! got to it, the content it had at the cut (see the stores' `frozen`).

use super::error::StoreError;
use crate::sys::ffi::{self, Gfp};
use crate::sys::xarray::{Entry, Mark, Present, XArray, WALK_BATCH};
use core::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use kernel::prelude::*;

/// # Invariants
///
/// - While `tracking` (a backing device is attached), every page of the owner's store changed
///   since the last cut carries the current epoch's mark in the store's XArray, and every page
///   erased since then has an entry in the current epoch's holes (unless it was stored again).
/// - `epoch` changes only in [`Changes::begin_cut`], under the owner's cut lock held for
///   writing (no change to the store under way); `cut` is set there and cleared by
///   [`Changes::end_cut`] or [`Changes::abort_cut`] once the old epoch's marks and holes are
///   consumed or merged into the current epoch. While `cut` is clear, the other epoch holds
///   nothing.
/// - Every method is given the owner's store XArray.
#[pin_data]
pub(crate) struct Changes {
    #[pin]
    holes0: XArray<Present>,
    #[pin]
    holes1: XArray<Present>,
    tracking: AtomicBool,
    /// 0 or 1: the epoch writers record changes in.
    epoch: AtomicUsize,
    /// A cut is being written: the other epoch holds what it still has to write.
    cut: AtomicBool,
}

/// The mark of epoch `e`.
fn mark_of(e: usize) -> Mark {
    if e == 0 {
        Mark::M0
    } else {
        Mark::M1
    }
}

impl Changes {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            holes0 <- XArray::new(),
            holes1 <- XArray::new(),
            tracking: AtomicBool::new(false),
            epoch: AtomicUsize::new(0),
            cut: AtomicBool::new(false),
        })
    }

    fn holes(&self, e: usize) -> &XArray<Present> {
        if e == 0 {
            &self.holes0
        } else {
            &self.holes1
        }
    }

    fn current(&self) -> usize {
        self.epoch.load(Ordering::Acquire)
    }

    /// The mark a page changed now gets.
    pub(crate) fn current_mark(&self) -> Mark {
        mark_of(self.current())
    }

    /// The mark of the pages the open cut still has to write.
    fn cut_mark(&self) -> Mark {
        mark_of(self.current() ^ 1)
    }

    pub(crate) fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// Whether a cut is being written: writers then keep what the cut still needs.
    pub(crate) fn cut_open(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Whether the page at `slot` is in the open cut and not yet written: its content at the
    /// cut must be kept before it changes. Only meaningful while the cut is open.
    pub(crate) fn in_cut<T: Entry>(&self, xa: &XArray<T>, slot: usize) -> bool {
        self.cut_open() && xa.get_mark(slot, self.cut_mark())
    }

    /// Whether the page at `slot` changed since the last flush, in either epoch (a page the
    /// backing device does not hold as it is: never evicted).
    pub(crate) fn is_changed<T: Entry>(&self, xa: &XArray<T>, slot: usize) -> bool {
        xa.get_mark(slot, Mark::M0) || xa.get_mark(slot, Mark::M1)
    }

    /// Marks page `index` changed, if tracking. The full fence orders the caller's data change
    /// before the mark test, against a writethrough flusher's mark clear before its copy: one
    /// of us sees the other, so no change is lost (Dekker).
    pub(crate) fn mark<T: Entry>(&self, xa: &XArray<T>, index: u64) {
        if !self.tracking() {
            return;
        }
        let Ok(slot) = usize::try_from(index) else { return };
        fence(Ordering::SeqCst);
        let mark = self.current_mark();
        if xa.get_mark(slot, mark) {
            return;
        }
        // An index erased meanwhile is ignored.
        xa.set_mark(slot, mark);
    }

    /// Records that the page at `slot` is being erased, if tracking (the backing device still
    /// holds its old data). If that fails the page must stay.
    pub(crate) fn hole(&self, slot: usize, gfp: Gfp) -> Result<(), StoreError> {
        if !self.tracking() {
            return Ok(());
        }
        self.record_hole(self.current(), slot, gfp)
    }

    fn record_hole(&self, e: usize, slot: usize, gfp: Gfp) -> Result<(), StoreError> {
        self.holes(e).store(slot, Present, gfp).map(drop).map_err(|_| StoreError::NoMemory)
    }

    /// Starts tracking changes for a backing device: every page held now is changed (the
    /// backing device has none of it yet). Called with no change to the store under way.
    pub(crate) fn start<T: Entry>(&self, xa: &XArray<T>) {
        self.tracking.store(true, Ordering::SeqCst);
        let mark = self.current_mark();
        xa.walk(Mark::Present, 0, usize::MAX, |slot| xa.set_mark(slot, mark));
    }

    /// Starts tracking with nothing changed: the store was just loaded from its image.
    pub(crate) fn start_clean(&self) {
        self.tracking.store(true, Ordering::SeqCst);
    }

    /// Stops tracking and forgets what changed (the backing device is let go).
    pub(crate) fn stop<T: Entry>(&self, xa: &XArray<T>) {
        self.tracking.store(false, Ordering::SeqCst);
        self.cut.store(false, Ordering::Release);
        for e in 0..2 {
            let mark = mark_of(e);
            xa.walk(mark, 0, usize::MAX, |slot| xa.clear_mark(slot, mark));
            self.holes(e).clear();
        }
    }

    /// The first index at or after `from` marked `mark` or in `holes`.
    fn next_of<T: Entry>(xa: &XArray<T>, mark: Mark, holes: &XArray<Present>, from: usize) -> Option<usize> {
        let page = xa.find(from, usize::MAX, mark);
        let hole = holes.find(from, usize::MAX, Mark::Present);
        match (page, hole) {
            (Some(p), Some(h)) => Some(p.min(h)),
            (p, h) => p.or(h),
        }
    }

    /// The first index at or after `from` changed in the current epoch.
    pub(crate) fn next<T: Entry>(&self, xa: &XArray<T>, from: u64) -> Option<u64> {
        let e = self.current();
        Self::next_of(xa, mark_of(e), self.holes(e), usize::try_from(from).ok()?).map(|i| i as u64)
    }

    /// The first index at or after `from` changed in either epoch (the open cut's included).
    fn next_any<T: Entry>(&self, xa: &XArray<T>, from: usize) -> Option<usize> {
        let a = Self::next_of(xa, Mark::M0, &self.holes0, from);
        let b = Self::next_of(xa, Mark::M1, &self.holes1, from);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first index at or after `from` that the open cut still has to write: a page or a
    /// hole of the cut's epoch, or an index whose content at the cut the store keeps in
    /// `frozen`.
    pub(crate) fn cut_next<T: Entry, F: Entry>(&self, xa: &XArray<T>, frozen: &XArray<F>, from: u64) -> Option<u64> {
        if !self.cut_open() {
            return None;
        }
        let from = usize::try_from(from).ok()?;
        let e = self.current() ^ 1;
        let changed = Self::next_of(xa, mark_of(e), self.holes(e), from);
        let kept = frozen.find(from, usize::MAX, Mark::Present);
        match (changed, kept) {
            (Some(a), Some(b)) => Some(a.min(b) as u64),
            (a, b) => a.or(b).map(|i| i as u64),
        }
    }

    /// Takes the cut: what the current epoch holds becomes the cut, and writers go on in the
    /// other epoch. The caller holds the cut lock for writing: no change to the store is under
    /// way.
    pub(crate) fn begin_cut(&self) {
        // INVARIANT: no cut is open, so the other epoch is empty; flipped under the cut lock.
        self.epoch.fetch_xor(1, Ordering::AcqRel);
        self.cut.store(true, Ordering::Release);
    }

    /// Takes index `slot` of the cut for writing out: no longer in it.
    pub(crate) fn consume<T: Entry>(&self, xa: &XArray<T>, slot: usize) {
        let e = self.current() ^ 1;
        if self.holes(e).contains(slot) {
            self.holes(e).erase(slot);
        }
        xa.clear_mark(slot, mark_of(e));
    }

    /// Closes a cut whose indexes were all consumed.
    pub(crate) fn end_cut(&self) {
        self.cut.store(false, Ordering::Release);
    }

    /// Closes a cut that could not be written whole: what it still holds joins the current
    /// epoch (the next flush writes it). The caller holds the cut lock for writing.
    pub(crate) fn abort_cut<T: Entry>(&self, xa: &XArray<T>) {
        let (e, c) = (self.current(), self.current() ^ 1);
        xa.walk(mark_of(c), 0, usize::MAX, |slot| {
            xa.set_mark(slot, mark_of(e));
            xa.clear_mark(slot, mark_of(c));
        });
        self.holes(c).walk(Mark::Present, 0, usize::MAX, |slot| {
            self.holes(c).erase(slot);
            if !xa.get_mark(slot, mark_of(e)) && self.record_hole(e, slot, ffi::GFP_KERNEL).is_err() {
                pr_warn!("rxdsk: cannot record a discarded page for the next flush\n");
            }
        });
        self.cut.store(false, Ordering::Release);
    }

    /// Pages and holes changed since the last completed flush (a walk: for reports). An index
    /// that was erased and written again is one change, not two.
    pub(crate) fn count<T: Entry>(&self, xa: &XArray<T>) -> u64 {
        let mut n = 0u64;
        let mut from = 0;
        while let Some(index) = self.next_any(xa, from) {
            n += 1;
            if n % WALK_BATCH == 0 {
                ffi::cond_resched();
            }
            match index.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        n
    }

    /// Takes index `slot` of the current epoch for writing back at once (writethrough): clears
    /// its mark and hole. The caller copies the page (or zeros) afterwards: a writer that
    /// changes it later marks it again.
    pub(crate) fn take<T: Entry>(&self, xa: &XArray<T>, slot: usize) {
        let e = self.current();
        // Most changes are pages, not holes: look before taking the lock to erase. (Holes are
        // recorded by writers and erased only by the flusher, who is us: none can appear at
        // `slot` between the look and the erase that we would miss, as the next flush sees it.)
        if self.holes(e).contains(slot) {
            self.holes(e).erase(slot);
        }
        xa.clear_mark(slot, mark_of(e));
        // Pairs with the writers' fence in `mark`.
        fence(Ordering::SeqCst);
    }

    /// Makes `index` changed again in the current epoch after a failed write-back: its page is
    /// marked, or if it has none (`present` false), a hole recorded.
    pub(crate) fn redirty<T: Entry>(&self, xa: &XArray<T>, index: u64, present: bool) {
        let Ok(slot) = usize::try_from(index) else { return };
        if present {
            self.mark(xa, index);
        } else if self.record_hole(self.current(), slot, ffi::GFP_KERNEL).is_err() {
            // A control path: it may wait for memory. Should even that fail, the next
            // attach's full write covers it; here the change would be lost, so warn.
            pr_warn!("rxdsk: cannot record a discarded page for the next flush\n");
        }
    }
}
