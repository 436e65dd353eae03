// SPDX-License-Identifier: GPL-2.0

//! The atomic flush (see [`super::format`]): the changed pages into the journal, its table, a
//! cache flush, the commit (header JOURNALED, FUA); then the replay copies them in place and
//! makes the header CLEAN. A restore replays a committed journal the same way.

use super::format::{
    checksum_continue, journal_holds, journal_offset, journal_table_blocks, JOURNAL_ENTRIES_PER_BLOCK, JOURNAL_HOLE,
    RXDSK_IMAGE_CLEAN, RXDSK_IMAGE_JOURNALED, RXDSK_IMAGE_META_SIZE,
};
use super::{read_header, DeviceData, Image, Take, Written, IO_PAGES, PAGE_SHIFT};
use crate::abi::{RxdskFlush, RXDSK_FLUSH_ATOMIC};
use crate::sys::backing::PageBuf;
use crate::sys::ffi::{self, PAGE_SIZE};
use core::sync::atomic::Ordering;
use kernel::prelude::*;

impl Image {
    /// The atomic flush, if the image has a journal that holds every change (and its data
    /// area needs no zeroing first); `None` otherwise, with nothing done.
    pub(super) fn journaled_write_back(&mut self, data: &DeviceData<'_>, mut report: RxdskFlush) -> Result<Option<RxdskFlush>> {
        if self.journal_bytes == 0 || self.zero_fill {
            return Ok(None);
        }
        let changes = data.store.cut_indexes()?;
        if !journal_holds(self.journal_bytes, changes.len() as u64) && !changes.is_empty() {
            return Ok(None);
        }
        let written = self.journal_changes(data, &changes)?;
        report.pages_written = written.pages;
        report.bytes_written = written.bytes;
        report.generation = self.generation;
        report.flags = RXDSK_FLUSH_ATOMIC;
        data.stats.flushes.fetch_add(1, Ordering::Relaxed);
        data.stats.atomic_flushes.fetch_add(1, Ordering::Relaxed);
        Ok(Some(report))
    }

    /// The atomic flush of `changes` (see `image.rs`): pages into the journal, its table, a
    /// cache flush, the commit (header JOURNALED, FUA); then the replay copies them in place
    /// and makes the header CLEAN. A failure before the commit leaves the image as it was and
    /// every change marked again; after it, the changes are safe in the journal.
    fn journal_changes(&mut self, data: &DeviceData<'_>, changes: &[u64]) -> Result<Written> {
        let next = self.generation + 1;
        if changes.is_empty() {
            let header = self.header(data, next, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
            self.write_header(data, &header)?;
            self.generation = next;
            self.zero_fill = false;
            return Ok(Written { pages: 0, bytes: RXDSK_IMAGE_META_SIZE });
        }
        let mut entries = KVVec::<u64>::with_capacity(changes.len(), GFP_KERNEL)?;
        let redirty = |entries: &KVVec<u64>| {
            for &entry in entries.iter() {
                data.store.redirty(entry & !JOURNAL_HOLE);
            }
        };
        let (mut written, checksum) = match self.write_journal(data, changes, &mut entries) {
            Ok(w) => w,
            Err(e) => {
                // Nothing was committed: the old image stands; the changes wait for a retry.
                redirty(&entries);
                return Err(e);
            }
        };
        // From the commit write on, the journal may be committed on the disk even if the
        // write reports a failure: it must be replayed (or found uncommitted) before anything
        // overwrites it, so the replay is pending before the write is issued.
        self.replay_pending = true;
        let commit = self
            .header(data, self.generation, RXDSK_IMAGE_JOURNALED, 0)
            .committing(entries.len() as u64, checksum);
        if let Err(e) = self.write_header(data, &commit) {
            // Committed or not, the next flush writes these again.
            redirty(&entries);
            return Err(e);
        }
        written.bytes += RXDSK_IMAGE_META_SIZE;
        let replayed = self.replay(data)?;
        Ok(Written { pages: written.pages, bytes: written.bytes + replayed.bytes })
    }

    /// Phase one of a journaled flush, up to the commit: the pages, the table, a cache flush.
    /// Returns what it wrote and the table's checksum for the commit. `entries` gets one entry
    /// per change taken, also on failure (so that the caller can mark them again).
    fn write_journal(&self, data: &DeviceData<'_>, changes: &[u64], entries: &mut KVVec<u64>) -> Result<(Written, u32)> {
        let file = &self.file;
        let size = data.size;
        let table_blocks = journal_table_blocks(changes.len() as u64);
        let table_at = journal_offset(size);
        let mut data_at = table_at + (table_blocks << PAGE_SHIFT);
        let buf = PageBuf::new(IO_PAGES)?;
        let mut slot = 0usize;
        let mut written = Written::default();
        for &index in changes {
            let present = Self::take_into(data, &buf, slot, index, Take::Cut)?;
            entries.push(if present { index } else { index | JOURNAL_HOLE }, GFP_KERNEL)?;
            if present {
                slot += 1;
            }
            if slot == IO_PAGES {
                file.write(data_at, &buf, slot, false).map_err(|e| data.stats.error(e))?;
                data_at += (slot as u64) << PAGE_SHIFT;
                data.stats.wrote(&mut written, (slot as u64) << PAGE_SHIFT);
                slot = 0;
                ffi::cond_resched();
            }
        }
        if slot > 0 {
            file.write(data_at, &buf, slot, false).map_err(|e| data.stats.error(e))?;
            data.stats.wrote(&mut written, (slot as u64) << PAGE_SHIFT);
        }
        written.pages = entries.len() as u64;
        // The table, IO_PAGES blocks at a time; its checksum goes into the commit.
        let mut crc = !0u32;
        let mut at = table_at;
        let mut block = KVec::from_elem(0u8, RXDSK_IMAGE_META_SIZE as usize, GFP_KERNEL)?;
        for chunk in entries.chunks((JOURNAL_ENTRIES_PER_BLOCK as usize) * IO_PAGES) {
            let mut blocks = 0;
            for entries_of_block in chunk.chunks(JOURNAL_ENTRIES_PER_BLOCK as usize) {
                block.fill(0);
                for (i, entry) in entries_of_block.iter().enumerate() {
                    if let Some(raw) = block.get_mut(i * 8..i * 8 + 8) {
                        raw.copy_from_slice(&entry.to_le_bytes());
                    }
                }
                crc = checksum_continue(crc, &block[..entries_of_block.len() * 8]);
                buf.with_mem(blocks, |mut mem| mem.copy_from_slice(&block)).ok_or(EINVAL)?;
                blocks += 1;
            }
            file.write(at, &buf, blocks, false).map_err(|e| data.stats.error(e))?;
            at += (blocks as u64) << PAGE_SHIFT;
            data.stats.wrote(&mut written, (blocks as u64) << PAGE_SHIFT);
        }
        file.flush_cache().map_err(|e| data.stats.error(e))?;
        Ok((written, !crc))
    }

    /// Copies the committed journal in place (from the backing device itself, so that a
    /// restore and a flush replay the same way), flushes the cache and makes the header CLEAN
    /// with the journal's generation. `EUCLEAN` if the table does not match its checksum.
    pub(super) fn replay(&mut self, data: &DeviceData<'_>) -> Result<Written> {
        let file = &self.file;
        let header = read_header(file)?;
        if header.state != RXDSK_IMAGE_JOURNALED {
            // The commit never reached the device (or the replay already finished).
            self.replay_pending = false;
            return Ok(Written::default());
        }
        let size = header.size_bytes;
        let n = header.journal_entries;
        let table_at = journal_offset(size);
        let buf = PageBuf::new(IO_PAGES)?;
        let mut entries = KVVec::<u64>::with_capacity(n as usize, GFP_KERNEL)?;
        let mut crc = !0u32;
        let mut at = table_at;
        let mut block = KVec::from_elem(0u8, RXDSK_IMAGE_META_SIZE as usize, GFP_KERNEL)?;
        while (entries.len() as u64) < n {
            let blocks = (n - entries.len() as u64).div_ceil(JOURNAL_ENTRIES_PER_BLOCK).min(IO_PAGES as u64) as usize;
            file.read(at, &buf, blocks).map_err(|e| data.stats.error(e))?;
            for b in 0..blocks {
                buf.with_mem(b, |mem| mem.copy_to_slice(&mut block)).ok_or(EINVAL)?;
                for raw in block.chunks_exact(8) {
                    if entries.len() as u64 == n {
                        break;
                    }
                    crc = checksum_continue(crc, raw);
                    let mut v = [0u8; 8];
                    v.copy_from_slice(raw);
                    entries.push(u64::from_le_bytes(v), GFP_KERNEL)?;
                }
            }
            at += (blocks as u64) << PAGE_SHIFT;
        }
        if !crc != header.journal_checksum {
            pr_err!("rxdsk: rxd{}: the committed journal's table is damaged; not replayed\n", data.id);
            return Err(EUCLEAN);
        }
        let pages = (size.div_ceil(PAGE_SIZE as u64)) as u64;
        if entries.iter().any(|&e| e & !JOURNAL_HOLE >= pages) {
            return Err(EUCLEAN);
        }
        let mut written = Written::default();
        let mut data_at = table_at + (journal_table_blocks(n) << PAGE_SHIFT);
        let mut rest = &entries[..];
        while !rest.is_empty() {
            // The next entries with at most IO_PAGES data pages among them.
            let mut take = 0;
            let mut with_data = 0;
            while take < rest.len() && (with_data < IO_PAGES || rest[take] & JOURNAL_HOLE != 0) {
                if rest[take] & JOURNAL_HOLE == 0 {
                    with_data += 1;
                }
                take += 1;
            }
            let (chunk, tail) = rest.split_at(take);
            if with_data > 0 {
                file.read(data_at, &buf, with_data).map_err(|e| data.stats.error(e))?;
                data_at += (with_data as u64) << PAGE_SHIFT;
            }
            // Write runs of consecutive indexes: data pages from `buf`, holes as zeroes.
            let mut slot = 0;
            let mut i = 0;
            while i < chunk.len() {
                let hole = chunk[i] & JOURNAL_HOLE != 0;
                let first = chunk[i] & !JOURNAL_HOLE;
                let mut run = 1;
                while i + run < chunk.len()
                    && (chunk[i + run] & JOURNAL_HOLE != 0) == hole
                    && chunk[i + run] & !JOURNAL_HOLE == first + run as u64
                {
                    run += 1;
                }
                let pos = first << PAGE_SHIFT;
                let len = (run as u64) << PAGE_SHIFT;
                if hole {
                    file.zeroout(pos, len).map_err(|e| data.stats.error(e))?;
                } else {
                    file.write_from(pos, &buf, slot, run, false).map_err(|e| data.stats.error(e))?;
                    slot += run;
                }
                data.stats.wrote(&mut written, len);
                i += run;
            }
            written.pages += chunk.len() as u64;
            rest = tail;
            ffi::cond_resched();
        }
        file.flush_cache().map_err(|e| data.stats.error(e))?;
        let generation = header.flushing_generation;
        let clean = self.header(data, generation, RXDSK_IMAGE_CLEAN, ffi::now_real_ns());
        self.write_header(data, &clean)?;
        written.bytes += RXDSK_IMAGE_META_SIZE;
        self.generation = generation;
        self.zero_fill = false;
        self.replay_pending = false;
        Ok(written)
    }
}
