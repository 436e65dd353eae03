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

/// How long the cache stays at the size memory pressure left it (then its limit again).
const PRESSURE_NS: u64 = 1_000_000_000;
/// Pages one pass of the hand looks at, with the cut lock held for writing.
pub(super) const PASS: u64 = 1024;
/// The bitmaps eviction needs (7 bits per page: unloaded, and the policy's six) are kept up
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
    /// Pages given back to the kernel under memory pressure (the shrinker).
    pub(super) reclaimed: AtomicU64,
    /// Read misses served from the backing device without being cached (the doorkeeper did
    /// not admit them, see `Referenced::admits`).
    pub(super) bypassed: AtomicU64,
    /// What memory pressure last left the device (bytes), and when (monotonic ns; 0: never,
    /// or expired): for [`PRESSURE_NS`] after, that is the cache's size, so that loads do not
    /// take back at once what the shrinker gave.
    squeezed_to: AtomicU64,
    squeezed_at: AtomicU64,
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
            reclaimed: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            squeezed_to: AtomicU64::new(0),
            squeezed_at: AtomicU64::new(0),
        })
    }

    /// Whether the device evicts once a backing device is attached (it has the bitmaps).
    pub(super) fn evicts(&self) -> bool {
        self.referenced.cache_pages() != 0
    }

    pub(super) fn can_evict(size_bytes: u64, limit_bytes: u64) -> bool {
        limit_bytes != 0 && size_bytes <= MAX_CACHED_DEVICE
    }

    /// The memory the cache may use now: its limit, or less for a while after memory
    /// pressure (see [`Cache::squeeze`]).
    pub(super) fn size(&self) -> u64 {
        let at = self.squeezed_at.load(Ordering::Acquire);
        if at == 0 {
            return self.limit;
        }
        if ffi::now_mono_ns().saturating_sub(at) < PRESSURE_NS {
            return self.limit.min(self.squeezed_to.load(Ordering::Relaxed));
        }
        // Expired: later calls read no clock. A squeeze meanwhile (a new time) stays.
        let _ = self.squeezed_at.compare_exchange(at, 0, Ordering::Relaxed, Ordering::Relaxed);
        self.limit
    }

    /// Memory pressure left the device at `bytes`: its cache is that size (at least the
    /// floor) for a while.
    pub(super) fn squeeze(&self, bytes: u64) {
        self.squeezed_to.store(bytes.max(self.floor()), Ordering::Relaxed);
        self.squeezed_at.store(ffi::now_mono_ns().max(1), Ordering::Release);
    }

    /// Memory use above which the periodic work and the loader make room ahead of need.
    pub(super) fn high_water(&self) -> u64 {
        let size = self.size();
        size.saturating_sub((size / 16).max(16 * PAGE_SIZE as u64))
    }

    /// What making room brings memory use down to: a batch below the high-water mark, so that
    /// writers are not throttled at every page.
    pub(super) fn low_water(&self) -> u64 {
        let size = self.size();
        size.saturating_sub((size / 8).max(32 * PAGE_SIZE as u64))
    }

    /// What memory pressure leaves the device: an eighth of its limit (at least 64 pages).
    /// Below it the shrinker takes nothing, so the device keeps working on a small cache.
    pub(super) fn floor(&self) -> u64 {
        (self.limit / 8).max(64 * PAGE_SIZE as u64).min(self.limit)
    }

    /// Evicts the clean pages of `first..=last`, just written through to the backing device
    /// (writearound). Backing lock held, no cut open.
    pub(super) fn drop_written(&self, store: &Store, unloaded: &Unloaded, cut: &PercpuRwSem, first: u64, last: u64) {
        store.throttle_evictions();
        let _no_change = cut.write();
        // At most one visit per page of the range finds every page present in it.
        store.evict_pass(first, last - first + 1, |index| {
            if index > last || !unloaded.covers(index) {
                return false;
            }
            self.referenced.forget(index);
            unloaded.set(index);
            // As in `evict_to`: the bit before the page goes.
            fence(Ordering::SeqCst);
            true
        });
    }

    /// Evicts clean pages until memory use is at most `goal`, or the hand looked at `budget`
    /// pages (`None`: three sweeps) and found nothing more to take. Pages on probation go
    /// first, while it holds more than its floor (a quarter of the cache, or of the goal);
    /// protected ones only while they are more than their target (the goal, at most the
    /// low-water mark, less the floor), by CLOCK, or once probation is empty. Backing lock
    /// held, no cut open.
    pub(super) fn evict_to(&self, store: &Store, unloaded: &Unloaded, cut: &PercpuRwSem, goal: u64, budget: Option<u64>) -> u64 {
        let referenced = &self.referenced;
        // Both segments shrink with a goal below the low-water mark (memory pressure): the
        // policy's balance is kept at the smaller size, not defended against the shrinker.
        let goal_pages = (goal / PAGE_SIZE as u64).min(self.low_water() / PAGE_SIZE as u64);
        let floor = referenced.probation_floor().min(goal_pages / 4);
        let target = goal_pages.saturating_sub(floor);
        let (mut looked, mut total) = (0u64, 0u64);
        let budget = budget.unwrap_or(3 * store.pages() + PASS);
        while store.used_bytes() > goal && looked < budget {
            let used = store.used_bytes();
            // As many pages as bring use to the goal, at what a page takes on average: a pass
            // must not take more than it needs.
            let mut wanted = used.saturating_sub(goal).div_ceil(store.bytes_per_page());
            let mut probation = referenced.probation(store.pages().max(1));
            store.throttle_evictions();
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
            total += evicted;
            looked += PASS;
            ffi::cond_resched();
        }
        total
    }
}
