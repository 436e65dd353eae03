// SPDX-License-Identifier: GPL-2.0

//! Where a device's data lives: the page stores (plain or compressed) behind one [`Store`],
//! what changed since the last flush to a backing device, and which pages are still only on
//! the backing device. Safe code over `sys`, apart from the stores' own access protocols.
//!
//! A flush writes a consistent cut of the store: [`Store::begin_cut`] is called under the
//! device's cut lock held for writing (no change under way), and from then on the flush reads
//! every index of the cut as it was at that instant ([`Store::take_cut`]), while writers go
//! on: a page of the cut that a writer changes first is kept for the flush.

pub(crate) mod changes;
pub(crate) mod compressed;
mod error;
pub(crate) mod plain;
pub(crate) mod referenced;
mod shards;
pub(crate) mod unloaded;

use crate::abi::RxdskComprStats;
use crate::sys::compress::Algorithm;
use crate::sys::ffi::{Gfp, PAGE_SIZE};
use crate::sys::iomem::IoMem;
use crate::sys::page::FreeBatch;
use compressed::ZStore;
pub(crate) use error::StoreError;
use kernel::{prelude::*, str::CStr};
use plain::PageStore;

/// The pages of a device.
pub(crate) enum Store {
    Plain(Pin<KBox<PageStore>>),
    Compressed(Pin<KBox<ZStore>>),
}

/// What one bio's erasures free together (plain store: after one grace period).
pub(crate) struct Batch<'a>(Option<FreeBatch<'a>>);

/// Runs `$body` with `$changes` and `$xa` bound to the change tracking of `$store` and the
/// XArray it tracks, whichever the kind of store.
macro_rules! tracked {
    ($store:expr, |$changes:ident, $xa:ident| $body:expr) => {
        match $store {
            Store::Plain(s) => {
                let ($changes, $xa) = (s.changes(), s.xa());
                $body
            }
            Store::Compressed(s) => {
                let ($changes, $xa) = (s.changes(), s.xa());
                $body
            }
        }
    };
}

impl Store {
    /// An empty store: compressed with `compress`, else plain; `limit_bytes` 0: no limit.
    pub(crate) fn new(name: &CStr, compress: Option<Algorithm>, limit_bytes: u64) -> Result<Self> {
        Ok(match compress {
            Some(algorithm) => Store::Compressed(KBox::pin_init(ZStore::new(name, algorithm, limit_bytes)?, GFP_KERNEL)?),
            None => Store::Plain(KBox::pin_init(PageStore::new(limit_bytes / PAGE_SIZE as u64), GFP_KERNEL)?),
        })
    }

    pub(crate) fn is_compressed(&self) -> bool {
        matches!(self, Store::Compressed(_))
    }

    /// Pages stored (DATA in pages); the plain store counts pages not yet given back too.
    pub(crate) fn pages(&self) -> u64 {
        match self {
            Store::Plain(s) => s.pages(),
            Store::Compressed(s) => s.pages(),
        }
    }

    /// Memory held for the data: pages (those a flush keeps included), or for a compressed
    /// device everything it really uses.
    pub(crate) fn used_bytes(&self) -> u64 {
        match self {
            Store::Plain(s) => (s.pages() + s.frozen_pages()) * PAGE_SIZE as u64,
            Store::Compressed(s) => s.total_bytes(),
        }
    }

    /// Memory the store holds: [`Store::used_bytes`] and evicted pages still waiting for
    /// their RCU grace period (outside the limit, and bounded: see `PageStore::evict_pass`).
    pub(crate) fn held_bytes(&self) -> u64 {
        match self {
            Store::Plain(s) => self.used_bytes() + s.evicted_pending() * PAGE_SIZE as u64,
            Store::Compressed(_) => self.used_bytes(),
        }
    }

    /// Before an eviction pass, with no lock held that writers take: waits if evicted pages
    /// are waiting for their grace period beyond their slack (a compressed store frees them
    /// at once).
    pub(crate) fn throttle_evictions(&self) {
        if let Store::Plain(s) = self {
            s.throttle_evictions();
        }
    }

    /// Waits until evicted pages are back with the kernel (a compressed store frees them at
    /// once).
    pub(crate) fn wait_evicted(&self) {
        if let Store::Plain(s) = self {
            s.wait_evicted();
        }
    }

    /// What a page takes on average, in bytes (less than a page when compressed; at least 1).
    pub(crate) fn bytes_per_page(&self) -> u64 {
        (self.used_bytes() / self.pages().max(1)).max(1)
    }

    /// What compression achieves; `None` for a plain store.
    pub(crate) fn compr_stats(&self) -> Option<RxdskComprStats> {
        match self {
            Store::Plain(_) => None,
            Store::Compressed(s) => Some(s.compr_stats()),
        }
    }

    pub(crate) fn batch(&self) -> Batch<'_> {
        match self {
            Store::Plain(s) => Batch(Some(s.as_ref().free_batch())),
            Store::Compressed(_) => Batch(None),
        }
    }

    /// Copies from page `index` at `offset` into `dst`, or zeros if there is none; returns
    /// whether there was one.
    pub(crate) fn read(&self, index: u64, offset: usize, dst: IoMem<'_>, nowait: bool) -> Result<bool, StoreError> {
        match self {
            Store::Plain(s) => Ok(s.read(index, offset, dst)),
            Store::Compressed(s) => s.read(index, offset, dst, nowait),
        }
    }

    /// One pass of eviction from index `from`, at most `visits` pages looked at: pages
    /// changed since the last flush stay, others go if `choose` says so. Returns how many
    /// went and where the next pass starts (`None`: past the last page). The caller holds the
    /// device's cut lock for writing and no cut is open.
    pub(crate) fn evict_pass(&self, from: u64, visits: u64, choose: impl FnMut(u64) -> bool) -> (u64, Option<u64>) {
        match self {
            Store::Plain(s) => s.as_ref().evict_pass(from, visits, choose),
            Store::Compressed(s) => s.evict_pass(from, visits, choose),
        }
    }

    /// Writes `src` into page `index` at `offset` (the rest of a new page reads as zeros);
    /// returns whether the page was there already.
    pub(crate) fn write(&self, index: u64, offset: usize, src: &IoMem<'_>, gfp: Gfp, nowait: bool) -> Result<bool, StoreError> {
        match self {
            Store::Plain(s) => s.write(index, offset, src, gfp, nowait),
            Store::Compressed(s) => s.write(index, offset, src, nowait),
        }
    }

    /// Removes page `index` while I/O may run; returns whether there was one.
    pub(crate) fn erase(&self, index: u64, gfp: Gfp, nowait: bool, batch: &mut Batch<'_>) -> Result<bool, StoreError> {
        match (self, &mut batch.0) {
            (Store::Plain(s), Some(batch)) => s.erase(index, batch, gfp, nowait),
            (Store::Plain(s), None) => s.erase(index, &mut s.as_ref().free_batch(), gfp, nowait),
            (Store::Compressed(s), _) => s.erase(index, nowait),
        }
    }

    /// Zeroes `len` bytes of page `index` from `offset`, if the page exists.
    pub(crate) fn zero(&self, index: u64, offset: usize, len: usize, gfp: Gfp, nowait: bool) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => s.zero(index, offset, len, gfp, nowait),
            Store::Compressed(s) => s.zero(index, offset, len, nowait),
        }
    }

    /// Discard and write-zeroes: removes every page in `first..=last` while I/O may run.
    pub(crate) fn erase_range(&self, first: u64, last: u64, nowait: bool) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => s.as_ref().erase_range(first, last),
            Store::Compressed(s) => s.erase_range(first, last, nowait),
        }
    }

    /// Shrink: removes every page in `first..=last` and frees it before returning.
    pub(crate) fn remove_range(&self, first: u64, last: u64) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => {
                s.as_ref().remove_range(first, last);
                Ok(())
            }
            Store::Compressed(s) => s.erase_range(first, last, false),
        }
    }

    /// Starts tracking changes for a backing device: every page held now is changed (the
    /// backing device has none of it yet).
    pub(crate) fn start_tracking(&self) {
        tracked!(self, |changes, xa| changes.start(xa))
    }

    /// Starts tracking with nothing changed: the store was just loaded from its image.
    pub(crate) fn start_tracking_clean(&self) {
        tracked!(self, |changes, _xa| changes.start_clean())
    }

    /// Stops tracking and forgets what changed (the backing device is let go).
    pub(crate) fn stop_tracking(&self) {
        tracked!(self, |changes, xa| changes.stop(xa))
    }

    /// The first index at or after `from` changed since the last flush (no cut open).
    pub(crate) fn next_changed(&self, from: u64) -> Option<u64> {
        tracked!(self, |changes, xa| changes.next(xa, from))
    }

    /// Records that page `index`, which is not in the store, changed to zeros since the last
    /// flush (a discarded page that was never loaded from the image).
    pub(crate) fn record_hole(&self, index: u64, gfp: Gfp) -> Result<(), StoreError> {
        let slot = usize::try_from(index).map_err(|_| StoreError::NoMemory)?;
        tracked!(self, |changes, _xa| changes.hole(slot, gfp))
    }

    /// Takes a flush's cut. The caller holds the device's cut lock for writing, so that no
    /// change to the store is under way: every change completed before is in the cut, none
    /// that starts after is.
    pub(crate) fn begin_cut(&self) {
        tracked!(self, |changes, _xa| changes.begin_cut())
    }

    /// The first index at or after `from` that the open cut still has to write.
    pub(crate) fn cut_next(&self, from: u64) -> Option<u64> {
        match self {
            Store::Plain(s) => s.cut_next(from),
            Store::Compressed(s) => s.cut_next(from),
        }
    }

    /// Every index the open cut still has to write, ascending. May sleep (a control path).
    pub(crate) fn cut_indexes(&self) -> Result<KVVec<u64>> {
        let mut out = KVVec::new();
        let mut from = 0u64;
        while let Some(index) = self.cut_next(from) {
            out.push(index, GFP_KERNEL)?;
            if out.len() % 256 == 0 {
                crate::sys::ffi::cond_resched();
            }
            match index.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// Takes index `index` of the open cut for writing out: its content at the cut goes into
    /// `dst`, a whole page (zeros for a hole). Returns whether the content was a page.
    pub(crate) fn take_cut(&self, index: u64, dst: IoMem<'_>) -> Result<bool, StoreError> {
        match self {
            Store::Plain(s) => s.as_ref().take_cut(index, dst),
            Store::Compressed(s) => s.take_cut(index, dst),
        }
    }

    /// Closes a cut whose every index was taken.
    pub(crate) fn end_cut(&self) {
        tracked!(self, |changes, _xa| changes.end_cut());
        self.drop_frozen();
    }

    /// Closes a cut that could not be written whole: what it still holds joins the changes of
    /// the next flush. The caller holds the device's cut lock for writing.
    pub(crate) fn abort_cut(&self) {
        tracked!(self, |changes, xa| changes.abort_cut(xa));
        self.drop_frozen();
    }

    fn drop_frozen(&self) {
        match self {
            Store::Plain(s) => s.as_ref().drop_frozen(),
            Store::Compressed(s) => s.drop_frozen(),
        }
    }

    /// Pages and holes changed since the last flush.
    pub(crate) fn changed(&self) -> u64 {
        tracked!(self, |changes, xa| changes.count(xa))
    }

    /// Takes `index` for writing back at once (writethrough, no cut open): clears its change
    /// and puts the page (or zeros, for a hole) into `dst`, a whole page. Returns whether there
    /// was a page.
    pub(crate) fn take_changed(&self, index: u64, dst: IoMem<'_>) -> Result<bool, StoreError> {
        match self {
            Store::Plain(s) => s.take_changed(index, dst),
            Store::Compressed(s) => s.take_changed(index, dst),
        }
    }

    /// Makes `index` changed again after a failed write-back.
    pub(crate) fn redirty(&self, index: u64) {
        match self {
            Store::Plain(s) => s.redirty(index),
            Store::Compressed(s) => s.redirty(index),
        }
    }

    /// Stores a whole page read from the image at `index`, as clean. A page already there is
    /// kept.
    pub(crate) fn fill(&self, index: u64, src: &IoMem<'_>, gfp: Gfp) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => s.fill(index, src, gfp),
            Store::Compressed(s) => s.fill(index, src, gfp),
        }
    }
}
