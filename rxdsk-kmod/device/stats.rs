// SPDX-License-Identifier: GPL-2.0

//! I/O counters without a shared cache line: one slot per CPU, summed when read.

use crate::abi::RxdskStats;
use crate::sys::ffi;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// The counters of one CPU; cache-line aligned so CPUs never share a line.
#[repr(C, align(64))]
#[derive(Default)]
struct Slot {
    reads: AtomicU64,
    writes: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    discards: AtomicU64,
    discard_bytes: AtomicU64,
    write_zeroes: AtomicU64,
    write_zeroes_bytes: AtomicU64,
    flushes: AtomicU64,
    zero_pages: AtomicU64,
    alloc_failures: AtomicU64,
    limit_failures: AtomicU64,
    io_errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    parts_elsewhere: AtomicU64,
}

/// Which counter to bump.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Read,
    Write,
    Discard,
    WriteZeroes,
}

/// Why a bio failed, for the failure counters.
#[derive(Clone, Copy)]
pub(crate) enum Failure {
    Alloc,
    Limit,
    Io,
    /// A page was evicted under the bio: it goes to the worker, which loads it (never the
    /// reason a bio ends; counted as an I/O error if it ever were).
    Unloaded,
}

pub(crate) struct Stats {
    slots: KVec<Slot>,
}

impl Stats {
    pub(crate) fn new() -> Result<Self> {
        let n = ffi::nr_cpu_ids().max(1);
        let mut slots = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(Slot::default(), GFP_KERNEL)?;
        }
        Ok(Self { slots })
    }

    fn slot(&self) -> Option<&Slot> {
        // Relaxed increments on this CPU's line; a migration in between only costs a shared
        // line once, never a lost count. CPU ids are below nr_cpu_ids, the slot count.
        self.slots.get(ffi::cpu_hint())
    }

    pub(crate) fn account(&self, counter: Counter, bytes: u64) {
        let Some(s) = self.slot() else { return };
        let (n, b) = match counter {
            Counter::Read => (&s.reads, &s.read_bytes),
            Counter::Write => (&s.writes, &s.write_bytes),
            Counter::Discard => (&s.discards, &s.discard_bytes),
            Counter::WriteZeroes => (&s.write_zeroes, &s.write_zeroes_bytes),
        };
        n.fetch_add(1, Ordering::Relaxed);
        b.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn flush(&self) {
        if let Some(s) = self.slot() {
            s.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn zero_page(&self) {
        if let Some(s) = self.slot() {
            s.zero_pages.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn failure(&self, why: Failure) {
        let Some(s) = self.slot() else { return };
        match why {
            Failure::Alloc => &s.alloc_failures,
            Failure::Limit => &s.limit_failures,
            Failure::Io | Failure::Unloaded => &s.io_errors,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A read of a cache device: a hit (all its pages in memory) or a miss.
    pub(crate) fn cache_read(&self, hit: bool) {
        if let Some(s) = self.slot() {
            if hit { &s.cache_hits } else { &s.cache_misses }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Chunks of big bios that helpers on other CPUs did.
    pub(crate) fn parts_elsewhere(&self, parts: u64) {
        if let Some(s) = self.slot() {
            s.parts_elsewhere.fetch_add(parts, Ordering::Relaxed);
        }
    }

    /// [`Stats::parts_elsewhere`], summed.
    pub(crate) fn parts_elsewhere_total(&self) -> u64 {
        self.slots.iter().fold(0u64, |n, s| n.wrapping_add(s.parts_elsewhere.load(Ordering::Relaxed)))
    }

    /// Read hits and misses of a cache device, summed.
    pub(crate) fn cache_reads(&self) -> (u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.slots.iter().fold((0u64, 0u64), |(h, m), s| (h.wrapping_add(get(&s.cache_hits)), m.wrapping_add(get(&s.cache_misses))))
    }

    /// Sums the slots into the ABI structure (id and pages are filled by the caller).
    pub(crate) fn snapshot(&self) -> RxdskStats {
        let mut out = RxdskStats::default();
        for s in self.slots.iter() {
            let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
            out.reads = out.reads.wrapping_add(get(&s.reads));
            out.writes = out.writes.wrapping_add(get(&s.writes));
            out.read_bytes = out.read_bytes.wrapping_add(get(&s.read_bytes));
            out.write_bytes = out.write_bytes.wrapping_add(get(&s.write_bytes));
            out.discards = out.discards.wrapping_add(get(&s.discards));
            out.discard_bytes = out.discard_bytes.wrapping_add(get(&s.discard_bytes));
            out.write_zeroes = out.write_zeroes.wrapping_add(get(&s.write_zeroes));
            out.write_zeroes_bytes = out.write_zeroes_bytes.wrapping_add(get(&s.write_zeroes_bytes));
            out.flushes = out.flushes.wrapping_add(get(&s.flushes));
            out.zero_pages = out.zero_pages.wrapping_add(get(&s.zero_pages));
            out.alloc_failures = out.alloc_failures.wrapping_add(get(&s.alloc_failures));
            out.limit_failures = out.limit_failures.wrapping_add(get(&s.limit_failures));
            out.io_errors = out.io_errors.wrapping_add(get(&s.io_errors));
        }
        out
    }
}
