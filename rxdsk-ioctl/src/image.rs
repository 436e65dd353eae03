// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The on-disk format of a backing device ("image"), version 1.
//!
//! The data sits at the same byte offsets as on the RAM device, so the backing device (or a
//! `dd` copy of it) can be mounted or checked without rxdsk. The metadata is one 4 KiB block at
//! the end, like md's 1.0 superblock: at [`header_offset`] of the backing device's size. All
//! integers are little-endian. Shared verbatim (`#[path]`) by the kernel module and rxdskctl.
//!
//! Layout of a backing device of `B` bytes holding a RAM device of `S` bytes:
//!
//! ```text
//! 0 .. S                      data, at the RAM device's offsets
//! J .. J + journal_bytes      the journal (J = S rounded up to 4 KiB; none if journal_bytes is 0)
//! header_offset(B) .. + 4096  the metadata block (the header, then zeros)
//! ```
//!
//! A flush without a journal (or with a dirty set larger than the journal) first writes the
//! header with [`RXDSK_IMAGE_FLUSHING`], then the data in place, then flushes the device's
//! cache, then writes the header [`RXDSK_IMAGE_CLEAN`] with the next generation (with FUA): an
//! image whose header says FLUSHING was interrupted and is refused by a restore unless forced.
//!
//! A journaled flush is atomic: it writes the changed pages' data into the journal, then the
//! journal's table (one little-endian u64 per changed page: its index, [`JOURNAL_HOLE`] set for
//! a page that reads as zeros and has no data in the journal), flushes the cache, and commits
//! by writing the header [`RXDSK_IMAGE_JOURNALED`] with the table's entry count and checksum.
//! Only then are the pages copied in place, the cache flushed and the header made CLEAN. A
//! restore replays a committed journal first. So a power cut before the commit leaves the
//! previous image untouched, one after it gives the new one. The header lies in the first 512
//! bytes of its block, inside one sector, whose write is atomic on every disk.

#![allow(dead_code)]

/// First bytes of the header.
pub const RXDSK_IMAGE_MAGIC: [u8; 8] = *b"RXDSKIMG";
/// The format version this code writes and reads.
pub const RXDSK_IMAGE_VERSION: u32 = 1;
/// Size of the metadata block at the end of the backing device.
pub const RXDSK_IMAGE_META_SIZE: u64 = 4096;

/// The last completed flush is on the device: the image is consistent.
pub const RXDSK_IMAGE_CLEAN: u32 = 1;
/// A flush (of `flushing_generation`) started and did not complete: the data may be a mix.
pub const RXDSK_IMAGE_FLUSHING: u32 = 2;
/// A journaled flush of `flushing_generation` is committed: the journal holds it whole, the
/// data area may hold part of it. A restore replays the journal, then the image is CLEAN.
pub const RXDSK_IMAGE_JOURNALED: u32 = 3;

/// `mode`: writes complete in RAM and reach the image on flush.
pub const RXDSK_IMAGE_WRITEBACK: u32 = 0;
/// `mode`: every write completes only once it is on the backing device too.
pub const RXDSK_IMAGE_WRITETHROUGH: u32 = 1;
/// `mode`: as writethrough, and written pages leave RAM (ABI 1.7).
pub const RXDSK_IMAGE_WRITEAROUND: u32 = 2;

/// Journal table entry bit: the page reads as zeros; no data for it in the journal.
pub const JOURNAL_HOLE: u64 = 1 << 63;
/// Journal table entries per 4 KiB block.
pub const JOURNAL_ENTRIES_PER_BLOCK: u64 = RXDSK_IMAGE_META_SIZE / 8;

/// The header, at the start of the metadata block (the rest of the block is zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskImageHeader {
    /// [`RXDSK_IMAGE_MAGIC`].
    pub magic: [u8; 8],
    /// [`RXDSK_IMAGE_VERSION`].
    pub version: u32,
    /// 512 or 4096.
    pub logical_block_size: u32,
    /// Size of the RAM device, bytes; the data area is `0..size_bytes`.
    pub size_bytes: u64,
    /// How many flushes completed; 0: none yet (a fresh attach).
    pub generation: u64,
    /// [`RXDSK_IMAGE_CLEAN`], [`RXDSK_IMAGE_FLUSHING`] or [`RXDSK_IMAGE_JOURNALED`].
    pub state: u32,
    /// [`RXDSK_IMAGE_WRITEBACK`], [`RXDSK_IMAGE_WRITETHROUGH`] or [`RXDSK_IMAGE_WRITEAROUND`]:
    /// what the device was attached with; a restore attaches it the same way.
    pub mode: u32,
    /// The generation being written while `state` is FLUSHING or JOURNALED
    /// (`generation + 1`); zero otherwise.
    pub flushing_generation: u64,
    /// When the last flush completed: nanoseconds since the Unix epoch (0: never).
    pub flush_time_ns: u64,
    /// Byte offset of the journal ([`journal_offset`] of `size_bytes`), 0 without one.
    pub journal_offset: u64,
    /// Size of the journal in bytes, a multiple of 4096; 0: no journal.
    pub journal_bytes: u64,
    /// While JOURNALED: entries in the journal's table; zero otherwise.
    pub journal_entries: u64,
    /// While JOURNALED: [`image_checksum`] of the table's `8 * journal_entries` bytes.
    pub journal_checksum: u32,
    /// Seconds between automatic flushes (0: none); a restore keeps it.
    pub flush_interval_secs: u32,
    /// Zero.
    pub reserved: [u64; 5],
    /// [`image_checksum`] of every byte before this field.
    pub checksum: u32,
    /// Zero.
    pub pad2: u32,
}

const _: () = assert!(core::mem::size_of::<RxdskImageHeader>() == 136);

/// Where the header starts on a backing device of `device_bytes`: the last whole 4 KiB
/// block; `None` if the device is smaller than one block.
pub const fn header_offset(device_bytes: u64) -> Option<u64> {
    let aligned = device_bytes & !(RXDSK_IMAGE_META_SIZE - 1);
    if aligned < RXDSK_IMAGE_META_SIZE {
        None
    } else {
        Some(aligned - RXDSK_IMAGE_META_SIZE)
    }
}

/// Where the journal of a RAM device of `size_bytes` starts: the data's end, 4 KiB aligned.
pub const fn journal_offset(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(RXDSK_IMAGE_META_SIZE) * RXDSK_IMAGE_META_SIZE
}

/// Whether a RAM device of `size_bytes` with a journal of `journal_bytes` fits on a backing
/// device of `device_bytes` (data, journal and metadata block).
pub const fn image_fits(size_bytes: u64, journal_bytes: u64, device_bytes: u64) -> bool {
    let Some(end) = journal_offset(size_bytes).checked_add(journal_bytes) else {
        return false;
    };
    match header_offset(device_bytes) {
        Some(at) => end <= at,
        None => false,
    }
}

/// 4 KiB blocks the table of `entries` journal entries takes.
pub const fn journal_table_blocks(entries: u64) -> u64 {
    entries.div_ceil(JOURNAL_ENTRIES_PER_BLOCK)
}

/// Whether a journal of `journal_bytes` holds a flush of `entries` changed pages, all of them
/// with data (the worst case: holes take no data block).
pub const fn journal_holds(journal_bytes: u64, entries: u64) -> bool {
    match entries.checked_add(journal_table_blocks(entries)) {
        Some(blocks) => entries > 0 && blocks <= journal_bytes / RXDSK_IMAGE_META_SIZE,
        None => false,
    }
}

/// CRC-32C (Castagnoli, reflected, as iSCSI, ext4 and btrfs use it) of `bytes`.
pub const fn image_checksum(bytes: &[u8]) -> u32 {
    !checksum_continue(!0, bytes)
}

/// Feeds `bytes` into a running CRC-32C: start from `!0`, finish with `!`; `image_checksum`
/// of a concatenation equals feeding its parts in order.
pub const fn checksum_continue(mut crc: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        crc ^= bytes[i] as u32;
        let mut bit = 0;
        while bit < 8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
            bit += 1;
        }
        i += 1;
    }
    crc
}

/// Why a header was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// No rxdsk image here (wrong magic).
    NotAnImage,
    /// A newer format this code does not know.
    Version(u32),
    /// The checksum does not match: the block is damaged.
    Checksum,
    /// A field has a value no writer produces.
    Invalid,
}

impl RxdskImageHeader {
    /// The bytes of the header, little-endian, as they are stored.
    pub fn to_bytes(self) -> [u8; 136] {
        let mut b = [0u8; 136];
        b[0..8].copy_from_slice(&self.magic);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.logical_block_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.size_bytes.to_le_bytes());
        b[24..32].copy_from_slice(&self.generation.to_le_bytes());
        b[32..36].copy_from_slice(&self.state.to_le_bytes());
        b[36..40].copy_from_slice(&self.mode.to_le_bytes());
        b[40..48].copy_from_slice(&self.flushing_generation.to_le_bytes());
        b[48..56].copy_from_slice(&self.flush_time_ns.to_le_bytes());
        b[56..64].copy_from_slice(&self.journal_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.journal_bytes.to_le_bytes());
        b[72..80].copy_from_slice(&self.journal_entries.to_le_bytes());
        b[80..84].copy_from_slice(&self.journal_checksum.to_le_bytes());
        b[84..88].copy_from_slice(&self.flush_interval_secs.to_le_bytes());
        let mut at = 88;
        for r in &self.reserved {
            b[at..at + 8].copy_from_slice(&r.to_le_bytes());
            at += 8;
        }
        b[128..132].copy_from_slice(&self.checksum.to_le_bytes());
        b[132..136].copy_from_slice(&self.pad2.to_le_bytes());
        b
    }

    /// A header for the given state, with its checksum, for an image without a journal
    /// attached in writeback mode ([`Self::with`] changes that).
    pub fn new(
        logical_block_size: u32,
        size_bytes: u64,
        generation: u64,
        state: u32,
        flush_time_ns: u64,
    ) -> Self {
        let h = Self {
            magic: RXDSK_IMAGE_MAGIC,
            version: RXDSK_IMAGE_VERSION,
            logical_block_size,
            size_bytes,
            generation,
            state,
            flushing_generation: if state == RXDSK_IMAGE_CLEAN {
                0
            } else {
                generation.wrapping_add(1)
            },
            flush_time_ns,
            ..Self::default()
        };
        h.sealed()
    }

    /// The same header with `mode`, a journal of `journal_bytes` (placed after the data) and
    /// automatic flushes every `flush_interval_secs`, checksum updated.
    pub fn with(mut self, mode: u32, journal_bytes: u64, flush_interval_secs: u32) -> Self {
        self.mode = mode;
        self.flush_interval_secs = flush_interval_secs;
        self.journal_bytes = journal_bytes;
        self.journal_offset = if journal_bytes == 0 {
            0
        } else {
            journal_offset(self.size_bytes)
        };
        self.sealed()
    }

    /// The same header, committing a journal of `entries` whose table has `checksum`.
    pub fn committing(mut self, entries: u64, checksum: u32) -> Self {
        self.journal_entries = entries;
        self.journal_checksum = checksum;
        self.sealed()
    }

    /// Sets the checksum over the other fields.
    pub fn sealed(mut self) -> Self {
        self.checksum = image_checksum(&self.to_bytes()[..128]);
        self
    }

    /// Parses and validates the first 136 bytes of a metadata block.
    pub fn parse(b: &[u8]) -> Result<Self, ImageError> {
        if b.len() < 136 {
            return Err(ImageError::NotAnImage);
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(v)
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != RXDSK_IMAGE_MAGIC {
            return Err(ImageError::NotAnImage);
        }
        if image_checksum(&b[..128]) != u32_at(128) {
            return Err(ImageError::Checksum);
        }
        let mut reserved = [0u64; 5];
        for (i, r) in reserved.iter_mut().enumerate() {
            *r = u64_at(88 + 8 * i);
        }
        let h = Self {
            magic,
            version: u32_at(8),
            logical_block_size: u32_at(12),
            size_bytes: u64_at(16),
            generation: u64_at(24),
            state: u32_at(32),
            mode: u32_at(36),
            flushing_generation: u64_at(40),
            flush_time_ns: u64_at(48),
            journal_offset: u64_at(56),
            journal_bytes: u64_at(64),
            journal_entries: u64_at(72),
            journal_checksum: u32_at(80),
            flush_interval_secs: u32_at(84),
            reserved,
            checksum: u32_at(128),
            pad2: u32_at(132),
        };
        if h.version != RXDSK_IMAGE_VERSION {
            return Err(ImageError::Version(h.version));
        }
        let block_ok = h.logical_block_size == 512 || h.logical_block_size == 4096;
        let state_ok = match h.state {
            RXDSK_IMAGE_CLEAN => h.flushing_generation == 0 && h.journal_entries == 0,
            RXDSK_IMAGE_FLUSHING => h.journal_entries == 0,
            RXDSK_IMAGE_JOURNALED => {
                h.flushing_generation == h.generation.wrapping_add(1)
                    && journal_holds(h.journal_bytes, h.journal_entries)
            }
            _ => false,
        };
        let journal_ok = if h.journal_bytes == 0 {
            h.journal_offset == 0
        } else {
            h.journal_offset == journal_offset(h.size_bytes)
                && h.journal_bytes.checked_rem(RXDSK_IMAGE_META_SIZE) == Some(0)
        };
        let mode_ok = matches!(
            h.mode,
            RXDSK_IMAGE_WRITEBACK | RXDSK_IMAGE_WRITETHROUGH | RXDSK_IMAGE_WRITEAROUND
        );
        if !block_ok
            || !state_ok
            || !journal_ok
            || !mode_ok
            || h.size_bytes == 0
            || h.size_bytes.checked_rem(u64::from(h.logical_block_size)) != Some(0)
            || h.pad2 != 0
            || h.reserved != [0; 5]
        {
            return Err(ImageError::Invalid);
        }
        Ok(h)
    }
}
