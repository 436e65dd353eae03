// SPDX-License-Identifier: GPL-2.0

//! Writing pages in place: the flush without a journal (refused by a restore if it did not
//! complete), and writethrough, which writes each bio's pages before the bio completes.

use super::format::{RXDSK_IMAGE_CLEAN, RXDSK_IMAGE_FLUSHING, RXDSK_IMAGE_META_SIZE};
use super::{DeviceData, Image, Take, IO_PAGES, PAGE_SHIFT};
use crate::abi::RxdskFlush;
use crate::sys::backing::{Backing, PageBuf};
use crate::sys::ffi::{self, PAGE_SIZE};
use core::sync::atomic::Ordering;
use kernel::prelude::*;

impl Image {
    /// Writethrough: writes the changes in `first..=last` (those of one bio) to the backing
    /// device, durably (FUA; holes as zeroes, then a cache flush). A failure leaves what was
    /// not written changed, for a later flush.
    pub(crate) fn write_through(&mut self, data: &DeviceData<'_>, first: u64, last: u64) -> Result {
        if self.replay_pending {
            // In-place writes must not be overwritten by a later replay of an older journal.
            self.replay(data)?;
        }
        let file = &self.file;
        let buf = PageBuf::new(((last - first + 1).min(IO_PAGES as u64)) as usize)?;
        let mut taken = KVec::<(u64, bool)>::with_capacity(IO_PAGES, GFP_KERNEL)?;
        let mut zeroed = false;
        let mut from = first;
        while let Some(start) = data.store.next_changed(from).filter(|&i| i <= last) {
            // A run of consecutive changed indexes, at most one buffer.
            taken.clear();
            let mut index = start;
            let mut filled = 0;
            while taken.len() < IO_PAGES && index <= last && data.store.next_changed(index) == Some(index) {
                let present = match Self::take_into(data, &buf, filled, index, Take::Now) {
                    Ok(present) => present,
                    Err(e) => {
                        for &(i, _) in taken.iter() {
                            data.store.redirty(i);
                        }
                        return Err(e);
                    }
                };
                taken.push((index, present), GFP_KERNEL)?;
                filled += usize::from(present);
                index += 1;
                if filled == IO_PAGES {
                    break;
                }
            }
            let written = Self::write_runs(data, file, &buf, &taken, &mut zeroed);
            if let Err(e) = written {
                for &(i, _) in taken.iter() {
                    data.store.redirty(i);
                }
                return Err(data.stats.error(e));
            }
            from = index;
        }
        if zeroed {
            file.flush_cache().map_err(|e| data.stats.error(e))?;
        }
        Ok(())
    }

    /// Writes `taken` (consecutive indexes; data pages in `buf` in order) as runs: data with
    /// FUA, holes as zeroes.
    fn write_runs(data: &DeviceData<'_>, file: &Backing, buf: &PageBuf, taken: &[(u64, bool)], zeroed: &mut bool) -> Result {
        let mut slot = 0;
        let mut i = 0;
        while i < taken.len() {
            let (first, present) = taken[i];
            let mut run = 1;
            while i + run < taken.len() && taken[i + run].1 == present {
                run += 1;
            }
            let pos = first << PAGE_SHIFT;
            let len = (run as u64) << PAGE_SHIFT;
            if present {
                file.write_from(pos, buf, slot, run, true)?;
                slot += run;
            } else {
                file.zeroout(pos, len)?;
                *zeroed = true;
            }
            data.stats.written_back.fetch_add(len, Ordering::Relaxed);
            i += run;
        }
        Ok(())
    }

    /// The flush protocol without a journal: header FLUSHING; the data area zeroed if it never
    /// held ours; every changed page (zeros for holes) in index order, `IO_PAGES` at a time;
    /// the backing device's cache flushed; header CLEAN with the next generation (FUA). A
    /// failure leaves every unwritten change marked, and the header FLUSHING.
    pub(super) fn direct_write_back(&mut self, data: &DeviceData<'_>, mut report: RxdskFlush) -> Result<RxdskFlush> {
        let size = data.size;
        let next = self.generation + 1;
        let fail = |e: Error| data.stats.error(e);
        self.write_header(data, &self.header(data, self.generation, RXDSK_IMAGE_FLUSHING, 0))?;
        if self.zero_fill {
            self.file.zeroout(0, size.next_multiple_of(PAGE_SIZE as u64)).map_err(fail)?;
            report.bytes_written += size;
        }
        let buf = PageBuf::new(IO_PAGES)?;
        let mut taken = KVec::<u64>::with_capacity(IO_PAGES, GFP_KERNEL)?;
        let mut from = 0u64;
        loop {
            // A run of consecutive changed indexes, at most IO_PAGES.
            taken.clear();
            let Some(first) = data.store.cut_next(from) else { break };
            let mut index = first;
            while taken.len() < IO_PAGES && data.store.cut_next(index) == Some(index) {
                if let Err(e) = Self::take_into(data, &buf, taken.len(), index, Take::Cut) {
                    for &i in taken.iter() {
                        data.store.redirty(i);
                    }
                    return Err(e);
                }
                taken.push(index, GFP_KERNEL)?;
                index += 1;
            }
            if let Err(e) = self.file.write(first << PAGE_SHIFT, &buf, taken.len(), false) {
                for &i in taken.iter() {
                    data.store.redirty(i);
                }
                return Err(fail(e));
            }
            let bytes = (taken.len() as u64) << PAGE_SHIFT;
            report.pages_written += taken.len() as u64;
            report.bytes_written += bytes;
            data.stats.written_back.fetch_add(bytes, Ordering::Relaxed);
            from = index;
            ffi::cond_resched();
        }
        self.file.flush_cache().map_err(fail)?;
        let header = self.header(data, next, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
        self.write_header(data, &header)?;
        report.bytes_written += 2 * RXDSK_IMAGE_META_SIZE;
        self.generation = next;
        self.zero_fill = false;
        report.generation = next;
        data.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }
}
