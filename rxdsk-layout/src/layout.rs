// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Where the bytes of an I/O land in the page store: pure arithmetic on positions, shared by
//! the kernel module (included with `#[path]`) and host tests. Nothing here allocates, locks or
//! panics: every function is total on its documented domain and uses checked or saturating
//! arithmetic where an input could overflow.

/// The unit the store allocates, frees and looks up (the module asserts it equals the kernel's
/// `PAGE_SIZE`).
pub const STORE_PAGE_SIZE: usize = 4096;
const PAGE_SHIFT: u32 = STORE_PAGE_SIZE.trailing_zeros();
const PAGE_MASK: u64 = STORE_PAGE_SIZE as u64 - 1;

/// A piece of a byte range that lies within one store page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePiece {
    /// Index of the store page.
    pub index: u64,
    /// First byte within the page.
    pub offset: usize,
    /// Bytes, `1..=STORE_PAGE_SIZE - offset`.
    pub len: usize,
}

impl PagePiece {
    /// Whether the piece is a whole page.
    pub fn is_whole(&self) -> bool {
        self.len == STORE_PAGE_SIZE
    }
}

/// The per-page pieces of the byte range `pos..pos + len`, in order.
#[derive(Clone, Debug)]
pub struct Pieces {
    pos: u64,
    left: u64,
}

impl Iterator for Pieces {
    type Item = PagePiece;

    fn next(&mut self) -> Option<PagePiece> {
        if self.left == 0 {
            return None;
        }
        let offset = (self.pos & PAGE_MASK) as usize;
        let len = ((STORE_PAGE_SIZE - offset) as u64).min(self.left) as usize;
        let piece = PagePiece {
            index: self.pos >> PAGE_SHIFT,
            offset,
            len,
        };
        self.pos = self.pos.wrapping_add(len as u64);
        self.left -= len as u64;
        Some(piece)
    }
}

/// Splits the byte range `pos..pos + len` into per-page pieces. A range that would run past
/// `u64::MAX` is cut there.
pub fn pieces(pos: u64, len: u64) -> Pieces {
    Pieces {
        pos,
        left: len.min(u64::MAX - pos),
    }
}

/// What a discard or write-zeroes of `pos..end` does to the store: zero the partial page at
/// each end, free every page it covers whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Punch {
    /// Partial first page to zero.
    pub head: Option<PagePiece>,
    /// Pages `first..=last` to free.
    pub whole: Option<(u64, u64)>,
    /// Partial last page to zero (never the same page as `head`).
    pub tail: Option<PagePiece>,
}

/// The effect of discarding `pos..end` (`end <= pos` is an empty range).
pub fn punch(pos: u64, end: u64) -> Punch {
    let mut out = Punch::default();
    if end <= pos {
        return out;
    }
    let mut pos = pos;
    let head = (pos & PAGE_MASK) as usize;
    if head != 0 {
        let len = (end - pos).min((STORE_PAGE_SIZE - head) as u64);
        out.head = Some(PagePiece {
            index: pos >> PAGE_SHIFT,
            offset: head,
            len: len as usize,
        });
        pos += len;
    }
    let whole_end = end & !PAGE_MASK;
    if pos < whole_end {
        out.whole = Some((pos >> PAGE_SHIFT, (whole_end >> PAGE_SHIFT) - 1));
        pos = whole_end;
    }
    if pos < end {
        out.tail = Some(PagePiece {
            index: pos >> PAGE_SHIFT,
            offset: 0,
            len: (end - pos) as usize,
        });
    }
    out
}

/// What shrinking a device to `size` bytes does to the store: the bytes past `size` in its
/// last page are zeroed (they must read as zeros if the device grows again), and every page
/// from `first_freed` on is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shrink {
    pub zero: Option<PagePiece>,
    pub first_freed: u64,
}

/// The effect of shrinking to `size` bytes.
pub fn shrink(size: u64) -> Shrink {
    let tail = (size & PAGE_MASK) as usize;
    Shrink {
        zero: (tail != 0).then(|| PagePiece {
            index: size >> PAGE_SHIFT,
            offset: tail,
            len: STORE_PAGE_SIZE - tail,
        }),
        first_freed: size.div_ceil(STORE_PAGE_SIZE as u64),
    }
}

/// The last page index a device may hold: the highest index [`pieces`] can produce.
pub const LAST_PAGE_INDEX: u64 = u64::MAX >> PAGE_SHIFT;

/// The largest device size whose page indexes all fit in `0..=max_index` (the platform's page
/// index type, `usize::MAX` as u64), capped at `abi_max`: on 64-bit that is `abi_max`, on
/// 32-bit 16 TiB. Devices are refused above it instead of having their indexes truncated.
pub const fn max_device_size(abi_max: u64, max_index: u64) -> u64 {
    let pages = max_index.saturating_add(1);
    let bytes = if pages > (u64::MAX >> PAGE_SHIFT) {
        u64::MAX
    } else {
        pages << PAGE_SHIFT
    };
    if bytes < abi_max {
        bytes
    } else {
        abi_max
    }
}

/// One single-page piece of a (possibly multi-page) bio vector: `bvec_iter_bvec()` of the C
/// headers. `page_index` counts pages from the bvec's first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BvecPiece {
    pub page_index: usize,
    pub offset: usize,
    pub len: usize,
}

/// The piece of a bvec of `bv_len` bytes at `bv_offset` in its first page, after `done` of its
/// bytes were handled, with `remaining` bytes left in the bio. `None` if nothing is left or
/// the iterator is malformed (`done > bv_len`), so a walker can never spin on a zero length.
pub fn bvec_piece(bv_len: u32, bv_offset: u32, done: u32, remaining: u32) -> Option<BvecPiece> {
    let mp_len = bv_len.checked_sub(done)?.min(remaining) as usize;
    let mp_offset = bv_offset as usize + done as usize;
    let offset = mp_offset % STORE_PAGE_SIZE;
    let len = mp_len.min(STORE_PAGE_SIZE - offset);
    (len > 0).then_some(BvecPiece {
        page_index: mp_offset / STORE_PAGE_SIZE,
        offset,
        len,
    })
}

/// Part `part` of `parts` of the byte range `pos..pos + len`, split at page boundaries into
/// near-equal runs of whole pages, as `(start, end)`: the parts tile the range in order, no
/// page is split between two parts (so two parts never lock the same page), and a part may be
/// empty only when the range has fewer pages than `parts`. `parts == 0` is taken as 1.
pub fn split_span(pos: u64, len: u64, part: u32, parts: u32) -> (u64, u64) {
    let parts = u64::from(parts.max(1));
    let part = u64::from(part).min(parts);
    let end = pos.saturating_add(len);
    let first_page = pos >> PAGE_SHIFT;
    let pages = (end.saturating_add(PAGE_MASK) >> PAGE_SHIFT).saturating_sub(first_page);
    // Boundary `k` is after `floor(pages * k / parts)` pages, computed without overflow (and
    // without 128-bit division, which the kernel lacks): `r * k < parts^2 <= 2^64`.
    let boundary = |k: u64| -> u64 {
        if k == 0 {
            return pos;
        }
        if k >= parts {
            return end;
        }
        let (q, r) = (pages / parts, pages % parts);
        let page = first_page + q * k + r * k / parts;
        page.saturating_mul(STORE_PAGE_SIZE as u64).clamp(pos, end)
    };
    (boundary(part), boundary(part + 1))
}
