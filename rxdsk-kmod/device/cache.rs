// SPDX-License-Identifier: GPL-2.0

//! A backed device's memory limit as a cache size: when its pages would take more, clean
//! pages are evicted (they become unloaded: read back from the backing device on the next
//! access, as after a lazy restore), and dirty ones are made clean first by a flush, the same
//! consistent-cut flush as any other. Nothing is ever written to the image outside a flush.
//!
//! Which pages go: 2Q, scan-resistant (see [`Referenced`]); the hand sweeps the present pages
//! in index order. Eviction runs only with the backing lock held (never while a flush
//! writes its cut) and, a pass at a time, with the cut lock held for writing (no bio changes
//! the store meanwhile, and each one checks the unloaded bits again under the cut lock).

use crate::store::{referenced::Referenced, unloaded::Unloaded, Store};
use crate::sys::ffi::{self, PAGE_SIZE};
use crate::sys::rwsem::PercpuRwSem;
use core::sync::atomic::{fence, AtomicU64, Ordering};
use kernel::prelude::*;

/// Pages one pass of the hand looks at, with the cut lock held for writing.
const PASS: u64 = 1024;
/// The bitmaps eviction needs (5 bits per page: unloaded, and the policy's four) are kept up
/// to this size of device.
const MAX_CACHED_DEVICE: u64 = 2 << 40;

/// What a device whose limit is a cache size keeps for eviction, and its counters.
pub(crate) struct Cache {
    /// The memory limit, bytes (0: none).
    limit: u64,
    pub(super) referenced: Referenced,
    pub(super) evictions: AtomicU64,
    pub(super) room_flushes: AtomicU64,
    pub(super) throttled: AtomicU64,
}

impl Cache {
    /// For a device of `size_bytes` with `limit_bytes` of memory (0: none): a device that
    /// never evicts (no limit, or too big for the bitmaps) gets empty bitmaps.
    pub(super) fn new(size_bytes: u64, limit_bytes: u64) -> Result<Self> {
        let cache_pages = if Self::can_evict(size_bytes, limit_bytes) { limit_bytes / PAGE_SIZE as u64 } else { 0 };
        let referenced = Referenced::new(size_bytes.div_ceil(PAGE_SIZE as u64), cache_pages)?;
        Ok(Self {
            limit: limit_bytes,
            referenced,
            evictions: AtomicU64::new(0),
            room_flushes: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        })
    }

    /// Whether the device evicts once a backing device is attached (it has the bitmaps).
    pub(super) fn evicts(&self) -> bool {
        self.referenced.cache_pages() != 0
    }

    pub(super) fn can_evict(size_bytes: u64, limit_bytes: u64) -> bool {
        limit_bytes != 0 && size_bytes <= MAX_CACHED_DEVICE
    }

    /// Memory use above which the periodic work and the loader make room ahead of need.
    pub(super) fn high_water(&self) -> u64 {
        self.limit.saturating_sub((self.limit / 16).max(16 * PAGE_SIZE as u64))
    }

    /// What making room brings memory use down to: a batch below the high-water mark, so that
    /// writers are not throttled at every page.
    pub(super) fn low_water(&self) -> u64 {
        self.limit.saturating_sub((self.limit / 8).max(32 * PAGE_SIZE as u64))
    }

    /// Evicts clean pages until memory use is at most `goal`, or three sweeps of the hand
    /// found nothing more to take. Pages on probation go first, while it holds more than its
    /// floor; protected ones only while they are more than their target (the low-water mark
    /// less the floor), by CLOCK, or once probation is empty. Backing lock held, no cut open.
    pub(super) fn evict_to(&self, store: &Store, unloaded: &Unloaded, cut: &PercpuRwSem, goal: u64) {
        let referenced = &self.referenced;
        let floor = referenced.probation_floor();
        let target = (self.low_water() / PAGE_SIZE as u64).saturating_sub(floor);
        let mut looked = 0u64;
        let budget = 3 * store.pages() + PASS;
        while store.used_bytes() > goal && looked < budget {
            let (used, pages) = (store.used_bytes(), store.pages().max(1));
            // As many pages as bring use to the goal, at what a page takes on average (less
            // than a page when compressed): a pass must not take more than it needs.
            let mut wanted = (used - goal).div_ceil((used / pages).max(1));
            let mut probation = referenced.probation(pages);
            let (evicted, next) = {
                let _no_change = cut.write();
                store.evict_pass(referenced.hand(), PASS, |index| {
                    if wanted == 0 || !unloaded.covers(index) {
                        // Enough for this pass, or past the map (the device grew): kept.
                        return false;
                    }
                    let protected = referenced.protected_pages();
                    let evict = if !referenced.is_protected(index) {
                        let take = probation > floor || protected <= target;
                        if take {
                            probation = probation.saturating_sub(1);
                            referenced.evict_probation(index);
                        }
                        take
                    } else {
                        (protected > target || probation == 0) && referenced.evicts_protected(index)
                    };
                    if evict {
                        wanted -= 1;
                        unloaded.set(index);
                        // The bit before the page goes: a reader that finds no page looks at
                        // the bit after a fence of its own (see `Device::read_span`).
                        fence(Ordering::SeqCst);
                    }
                    evict
                })
            };
            referenced.set_hand(next.unwrap_or(0));
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
            looked += PASS;
            ffi::cond_resched();
        }
    }
}
