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
            Failure::Io => &s.io_errors,
        }
        .fetch_add(1, Ordering::Relaxed);
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
