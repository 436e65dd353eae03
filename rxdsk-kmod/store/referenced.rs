// SPDX-License-Identifier: GPL-2.0

//! The eviction policy's memory of which pages are used: 2Q with bitmaps and a clock hand (as
//! 2Q's A1in, Am and A1out). A page loaded from the backing device is on probation; a hit
//! while it is there, or a miss shortly after it was evicted from probation (its ghost bit
//! still set), protects it. Eviction takes pages on probation while probation holds more than
//! a quarter of the cache, and only then protected ones, by CLOCK (a protected page used
//! since the hand last passed gets a second chance). A scan touches each page once: its pages
//! pass through probation and never displace the protected (hot) set.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use kernel::prelude::*;

/// Fewer missing pages than this in a read are cached at once (the doorkeeper judges big
/// reads only): 64 KiB.
const BYPASS_MIN_PAGES: u64 = 16;

/// One bit per page index.
struct Bits(KVVec<AtomicU64>);

impl Bits {
    fn new(pages: u64) -> Result<Self> {
        Ok(Self(super::unloaded::clear_words(pages)?))
    }

    fn locate(&self, index: u64) -> Option<(&AtomicU64, u64)> {
        Some((self.0.get(usize::try_from(index / 64).ok()?)?, 1 << (index % 64)))
    }

    /// Sets the bit; returns whether it was clear (a load first: a set bit costs no write).
    fn set(&self, index: u64) -> bool {
        let Some((w, bit)) = self.locate(index) else { return false };
        w.load(Ordering::Relaxed) & bit == 0 && w.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Clears the bit; returns whether it was set.
    fn clear(&self, index: u64) -> bool {
        let Some((w, bit)) = self.locate(index) else { return false };
        w.load(Ordering::Relaxed) & bit != 0 && w.fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }

    fn get(&self, index: u64) -> bool {
        self.locate(index).is_some_and(|(w, bit)| w.load(Ordering::Relaxed) & bit != 0)
    }

    /// Clears every bit, yielding the CPU now and then (a device of terabytes has megabytes).
    fn clear_all(&self) {
        for (i, w) in self.0.iter().enumerate() {
            w.store(0, Ordering::Relaxed);
            if i % 4096 == 4095 {
                crate::sys::ffi::cond_resched();
            }
        }
    }
}

/// Pages remembered for a while: two generations of bits; once the one being filled has
/// gained a generation's worth of pages, the older is cleared and filled next. Changed with
/// the backing lock held (one writer at a time).
struct Recent {
    bits: [Bits; 2],
    /// Names the generation being filled.
    generation: AtomicUsize,
    in_generation: AtomicU64,
}

impl Recent {
    fn new(pages: u64) -> Result<Self> {
        Ok(Self { bits: [Bits::new(pages)?, Bits::new(pages)?], generation: AtomicUsize::new(0), in_generation: AtomicU64::new(0) })
    }

    fn contains(&self, index: u64) -> bool {
        self.bits[0].get(index) || self.bits[1].get(index)
    }

    /// Forgets `index`; whether it was remembered.
    fn take(&self, index: u64) -> bool {
        // Both generations cleared (no short circuit).
        let (newer, older) = (self.bits[0].clear(index), self.bits[1].clear(index));
        newer || older
    }

    /// Remembers `index`, in generations of `span` pages (only new ones count).
    fn add(&self, index: u64, span: u64) {
        let g = self.generation.load(Ordering::Relaxed);
        if self.bits[g & 1].set(index) && self.in_generation.fetch_add(1, Ordering::Relaxed) + 1 >= span {
            self.bits[(g + 1) & 1].clear_all();
            self.generation.store(g + 1, Ordering::Relaxed);
            self.in_generation.store(0, Ordering::Relaxed);
        }
    }
}

/// The bits of an index are changed by hits (any context, lock-free) and by eviction and
/// loading (with the device's backing lock held); a race between the two can at worst give a
/// page one more or one less pass of the hand, never lose a page. The counts are estimates
/// for the same reason.
pub(crate) struct Referenced {
    /// Protected pages.
    protected: Bits,
    /// Protected pages used since the hand last passed.
    used: Bits,
    /// Pages evicted from probation lately, in generations of half a cache.
    ghosts: Recent,
    /// Pages a read missed lately without being loaded (the doorkeeper, see
    /// [`Referenced::admits`]), in generations of a cache.
    seen: Recent,
    protected_pages: AtomicU64,
    /// The cache, in pages.
    cache_pages: u64,
    /// The next index the hand looks at.
    hand: AtomicU64,
}

impl Referenced {
    /// For `pages` page indexes and a cache of `cache_pages` (0: a device that never evicts,
    /// which gets no bitmaps).
    pub(crate) fn new(pages: u64, cache_pages: u64) -> Result<Self> {
        let pages = if cache_pages == 0 { 0 } else { pages };
        Ok(Self {
            protected: Bits::new(pages)?,
            used: Bits::new(pages)?,
            ghosts: Recent::new(pages)?,
            seen: Recent::new(pages)?,
            protected_pages: AtomicU64::new(0),
            cache_pages,
            hand: AtomicU64::new(0),
        })
    }

    fn protect(&self, index: u64) {
        if self.protected.set(index) {
            self.protected_pages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A hit on page `index`: protects a page on probation, marks a protected one used.
    pub(crate) fn touch(&self, index: u64) {
        if self.protected.get(index) {
            self.used.set(index);
        } else {
            self.protect(index);
        }
    }

    /// Page `index` was just loaded: protected (and used) if it was evicted from probation
    /// lately, else on probation.
    pub(crate) fn loaded(&self, index: u64) {
        if self.ghosts.take(index) {
            self.protect(index);
            self.used.set(index);
        }
    }

    /// The doorkeeper, for a read of `first..=last` that misses on the pages `missing` says:
    /// whether those go into the cache. A small miss (fewer than [`BYPASS_MIN_PAGES`]) does,
    /// at once: a random read's page starts on probation, where 2Q keeps it from the hot set's
    /// way, and a second access protects it. A big one does if each of its missing pages was
    /// missed lately (seen) or evicted from probation lately (a ghost); otherwise they are
    /// remembered as seen and the read is served from the backing device (and memory) alone,
    /// so that data read once in big reads (a scan, a copy) neither takes pages nor evicts
    /// any, as bcache sends sequential reads around its cache. Seen pages are forgotten a
    /// generation later, a generation being as many pages as the cache holds, so a second
    /// scan of a device over twice the cache is not cached either. Backing lock held (one
    /// caller at a time).
    pub(crate) fn admits(&self, first: u64, last: u64, missing: impl Fn(u64) -> bool) -> bool {
        let mut count = 0;
        let mut all_seen = true;
        for i in (first..=last).filter(|&i| missing(i)) {
            count += 1;
            all_seen &= self.seen.contains(i) || self.ghosts.contains(i);
        }
        if count < BYPASS_MIN_PAGES || all_seen {
            return true;
        }
        for index in (first..=last).filter(|&i| missing(i)) {
            self.seen.add(index, self.cache_pages);
        }
        false
    }

    /// Page `index` left the store for good (erased): nothing to protect.
    pub(crate) fn forget(&self, index: u64) {
        if self.protected.clear(index) {
            self.protected_pages.fetch_sub(1, Ordering::Relaxed);
        }
        self.used.clear(index);
    }

    /// Pages on probation, of `present` pages in the store.
    pub(crate) fn probation(&self, present: u64) -> u64 {
        present.saturating_sub(self.protected_pages.load(Ordering::Relaxed))
    }

    /// The cache, in pages; 0 for a device that never evicts.
    pub(crate) fn cache_pages(&self) -> u64 {
        self.cache_pages
    }

    /// What probation keeps before protected pages are evicted: a quarter of the cache.
    pub(crate) fn probation_floor(&self) -> u64 {
        self.cache_pages / 4
    }

    pub(crate) fn is_protected(&self, index: u64) -> bool {
        self.protected.get(index)
    }

    /// Evicting page `index`, on probation: remembered as a ghost.
    pub(crate) fn evict_probation(&self, index: u64) {
        // Only eviction gets here, with the backing lock held: one at a time.
        self.ghosts.add(index, self.cache_pages / 2);
    }

    /// The hand at protected page `index` (probation being at its floor): whether to evict
    /// it. One used since the last pass gets a second chance.
    pub(crate) fn evicts_protected(&self, index: u64) -> bool {
        if self.used.clear(index) {
            return false;
        }
        self.forget(index);
        true
    }

    /// Protected pages now.
    pub(crate) fn protected_pages(&self) -> u64 {
        self.protected_pages.load(Ordering::Relaxed)
    }

    pub(crate) fn hand(&self) -> u64 {
        self.hand.load(Ordering::Relaxed)
    }

    pub(crate) fn set_hand(&self, index: u64) {
        self.hand.store(index, Ordering::Relaxed);
    }
}
