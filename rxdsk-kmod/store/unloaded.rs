// SPDX-License-Identifier: GPL-2.0

//! Which pages of a backed device are only on its backing device: not yet loaded after a lazy
//! restore, or evicted again from a device whose memory limit is a cache size.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// One bit per page index, set at restore and cleared once the page is in the store (or known
/// to read as zeros). Eviction sets a bit again ([`Unloaded::set`]), only for a clean page,
/// with the backing lock and the cut lock (for writing) held and before it removes the page:
/// so a writer that checks the bits under the cut lock, and a reader that finds no page and
/// then looks again (after a full fence), never take an evicted page for a zero page.
pub(crate) struct Unloaded {
    words: KVVec<AtomicU64>,
    count: AtomicU64,
}

/// The words of a bitmap of `pages` bits, all clear.
pub(super) fn clear_words(pages: u64) -> Result<KVVec<AtomicU64>> {
    let n = usize::try_from(pages.div_ceil(64)).map_err(|_| ENOMEM)?;
    let mut words = KVVec::with_capacity(n, GFP_KERNEL)?;
    for _ in 0..n {
        words.push(AtomicU64::new(0), GFP_KERNEL)?;
    }
    Ok(words)
}

impl Unloaded {
    /// Nothing to load (a device not restored lazily).
    pub(crate) fn none() -> Self {
        Self { words: KVVec::new(), count: AtomicU64::new(0) }
    }

    /// Every page of `0..pages` unloaded.
    pub(crate) fn all(pages: u64) -> Result<Self> {
        let n = usize::try_from(pages.div_ceil(64)).map_err(|_| ENOMEM)?;
        let mut words = KVVec::with_capacity(n, GFP_KERNEL)?;
        for w in 0..n as u64 {
            let bits = (pages - w * 64).min(64);
            let word = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            words.push(AtomicU64::new(word), GFP_KERNEL)?;
        }
        Ok(Self { words, count: AtomicU64::new(pages) })
    }

    /// A clear map of `pages` pages, for a device whose pages can be evicted.
    pub(crate) fn blank(pages: u64) -> Result<Self> {
        Ok(Self { words: clear_words(pages)?, count: AtomicU64::new(0) })
    }

    /// Pages still to load.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Pages the map covers.
    pub(crate) fn pages(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    fn word(&self, index: u64) -> Option<&AtomicU64> {
        self.words.get(usize::try_from(index / 64).ok()?)
    }

    pub(crate) fn is_set(&self, index: u64) -> bool {
        self.word(index).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (index % 64)) != 0)
    }

    /// Clears the bit of `index` (after its page is in the store: the release orders the two).
    pub(crate) fn clear(&self, index: u64) {
        let Some(w) = self.word(index) else { return };
        let bit = 1 << (index % 64);
        if w.fetch_and(!bit, Ordering::Release) & bit != 0 {
            self.count.fetch_sub(1, Ordering::Release);
        }
    }

    /// Whether the map has a bit for `index`.
    pub(crate) fn covers(&self, index: u64) -> bool {
        self.word(index).is_some()
    }

    /// Sets the bit of `index` (its page is being evicted), if the map covers it.
    pub(crate) fn set(&self, index: u64) {
        let Some(w) = self.word(index) else { return };
        let bit = 1 << (index % 64);
        if w.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            self.count.fetch_add(1, Ordering::Release);
        }
    }

    /// The first unloaded index in `from..=last`.
    pub(crate) fn next_set(&self, from: u64, last: u64) -> Option<u64> {
        if self.count() == 0 {
            return None;
        }
        let last = last.min(self.pages().checked_sub(1)?);
        let mut at = from;
        while at <= last {
            let word = self.word(at)?.load(Ordering::Acquire) >> (at % 64);
            if word != 0 {
                let found = at + u64::from(word.trailing_zeros());
                return (found <= last).then_some(found);
            }
            at = (at / 64 + 1) * 64;
        }
        None
    }
}
