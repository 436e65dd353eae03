// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The on-disk format of a backing device ("image"), version 1.
//!
//! The data sits at the same byte offsets as on the RAM device, so the backing device (or a
//! `dd` copy of it) can be mounted or checked without rxdsk. The metadata is one 4 KiB block at
//! the end, like md's 1.0 superblock: at [`header_offset`] of the backing device's size. All
//! integers are little-endian. Shared verbatim (`#[path]`) by the kernel module and rxdskctl.
//!
//! A flush first writes the header with [`RXDSK_IMAGE_FLUSHING`] and the generation it is
//! writing, then the data, then flushes the device's cache, then writes the header with
//! [`RXDSK_IMAGE_CLEAN`] and that generation (with FUA): an image whose header says FLUSHING
//! was interrupted and is refused by a restore unless forced.

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
    /// [`RXDSK_IMAGE_CLEAN`] or [`RXDSK_IMAGE_FLUSHING`].
    pub state: u32,
    /// Zero.
    pub pad: u32,
    /// The generation being written while `state` is FLUSHING (`generation + 1`).
    pub flushing_generation: u64,
    /// When the last flush completed: nanoseconds since the Unix epoch (0: never).
    pub flush_time_ns: u64,
    /// Zero.
    pub reserved: [u64; 9],
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

/// Whether a RAM device of `size_bytes` fits on a backing device of `device_bytes` (data and
/// metadata, the metadata block 4 KiB aligned).
pub const fn image_fits(size_bytes: u64, device_bytes: u64) -> bool {
    match header_offset(device_bytes) {
        Some(at) => size_bytes <= at,
        None => false,
    }
}

/// CRC-32C (Castagnoli, reflected, as iSCSI, ext4 and btrfs use it) of `bytes`.
pub const fn image_checksum(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
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
    !crc
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
        b[36..40].copy_from_slice(&self.pad.to_le_bytes());
        b[40..48].copy_from_slice(&self.flushing_generation.to_le_bytes());
        b[48..56].copy_from_slice(&self.flush_time_ns.to_le_bytes());
        let mut at = 56;
        for r in &self.reserved {
            b[at..at + 8].copy_from_slice(&r.to_le_bytes());
            at += 8;
        }
        b[128..132].copy_from_slice(&self.checksum.to_le_bytes());
        b[132..136].copy_from_slice(&self.pad2.to_le_bytes());
        b
    }

    /// A header for the given state, with its checksum.
    pub fn new(
        logical_block_size: u32,
        size_bytes: u64,
        generation: u64,
        state: u32,
        flush_time_ns: u64,
    ) -> Self {
        let mut h = Self {
            magic: RXDSK_IMAGE_MAGIC,
            version: RXDSK_IMAGE_VERSION,
            logical_block_size,
            size_bytes,
            generation,
            state,
            flushing_generation: if state == RXDSK_IMAGE_FLUSHING {
                generation.wrapping_add(1)
            } else {
                0
            },
            flush_time_ns,
            ..Self::default()
        };
        h.checksum = image_checksum(&h.to_bytes()[..128]);
        h
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
        let mut reserved = [0u64; 9];
        for (i, r) in reserved.iter_mut().enumerate() {
            *r = u64_at(56 + 8 * i);
        }
        let h = Self {
            magic,
            version: u32_at(8),
            logical_block_size: u32_at(12),
            size_bytes: u64_at(16),
            generation: u64_at(24),
            state: u32_at(32),
            pad: u32_at(36),
            flushing_generation: u64_at(40),
            flush_time_ns: u64_at(48),
            reserved,
            checksum: u32_at(128),
            pad2: u32_at(132),
        };
        if h.version != RXDSK_IMAGE_VERSION {
            return Err(ImageError::Version(h.version));
        }
        let block_ok = h.logical_block_size == 512 || h.logical_block_size == 4096;
        let state_ok = h.state == RXDSK_IMAGE_CLEAN || h.state == RXDSK_IMAGE_FLUSHING;
        if !block_ok
            || !state_ok
            || h.size_bytes == 0
            || h.size_bytes.checked_rem(u64::from(h.logical_block_size)) != Some(0)
            || h.pad != 0
            || h.pad2 != 0
            || h.reserved != [0; 9]
        {
            return Err(ImageError::Invalid);
        }
        Ok(h)
    }
}
