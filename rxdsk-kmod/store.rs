// SPDX-License-Identifier: GPL-2.0

//! Where a device's data lives: the page stores (plain or compressed) behind one [`Store`],
//! what changed since the last flush to a backing device, and which pages are still only on
//! the backing device. Safe code over `sys`, apart from the stores' own access protocols.

pub(crate) mod changes;
pub(crate) mod compressed;
mod error;
pub(crate) mod plain;
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

    /// Memory held for the data: pages, or for a compressed device everything it really uses.
    pub(crate) fn used_bytes(&self) -> u64 {
        match self {
            Store::Plain(s) => s.pages() * PAGE_SIZE as u64,
            Store::Compressed(s) => s.total_bytes(),
        }
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

    /// Copies from page `index` at `offset` into `dst`, or zeros if there is none.
    pub(crate) fn read(&self, index: u64, offset: usize, dst: IoMem<'_>, nowait: bool) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => {
                s.read(index, offset, dst);
                Ok(())
            }
            Store::Compressed(s) => s.read(index, offset, dst, nowait),
        }
    }

    /// Writes `src` into page `index` at `offset` (the rest of a new page reads as zeros).
    pub(crate) fn write(&self, index: u64, offset: usize, src: &IoMem<'_>, gfp: Gfp, nowait: bool) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => s.write(index, offset, src, gfp, nowait),
            Store::Compressed(s) => s.write(index, offset, src, nowait),
        }
    }

    /// Removes page `index` while I/O may run; returns whether there was one.
    pub(crate) fn erase(&self, index: u64, gfp: Gfp, nowait: bool, batch: &mut Batch<'_>) -> Result<bool, StoreError> {
        match (self, &mut batch.0) {
            (Store::Plain(s), Some(batch)) => s.erase(index, batch, gfp),
            (Store::Plain(s), None) => s.erase(index, &mut s.as_ref().free_batch(), gfp),
            (Store::Compressed(s), _) => s.erase(index, nowait),
        }
    }

    /// Zeroes `len` bytes of page `index` from `offset`, if the page exists.
    pub(crate) fn zero(&self, index: u64, offset: usize, len: usize, nowait: bool) -> Result<(), StoreError> {
        match self {
            Store::Plain(s) => {
                s.zero(index, offset, len);
                Ok(())
            }
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

    /// The first index at or after `from` changed since the last flush.
    pub(crate) fn next_changed(&self, from: u64) -> Option<u64> {
        tracked!(self, |changes, xa| changes.next(xa, from))
    }

    /// Every index changed since the last flush, ascending.
    pub(crate) fn changed_indexes(&self) -> Result<KVVec<u64>> {
        tracked!(self, |changes, xa| changes.indexes(xa))
    }

    /// Pages and holes changed since the last flush.
    pub(crate) fn changed(&self) -> u64 {
        tracked!(self, |changes, xa| changes.count(xa))
    }

    /// Takes `index` for writing back: clears its change and puts the page (or zeros, for a
    /// hole) into `dst`, a whole page. Returns whether there was a page.
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
