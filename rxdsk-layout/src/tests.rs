//! Exhaustive checks over small ranges around page boundaries, plus the extremes.

extern crate std;
use super::*;
use std::vec;
use std::vec::Vec;

const P: u64 = STORE_PAGE_SIZE as u64;

/// Positions worth trying: around the first pages' boundaries and near the top.
fn positions() -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    for page in 0..3u64 {
        for d in [0, 1, 511, 512, 513, 2048, 4095] {
            v.push(page * P + d);
        }
    }
    v.extend([u64::MAX - 2 * P, u64::MAX - P + 1, u64::MAX - 1]);
    v
}

fn lengths() -> Vec<u64> {
    let mut v: Vec<u64> = vec![
        0,
        1,
        511,
        512,
        4095,
        4096,
        4097,
        8191,
        8192,
        3 * P + 7,
        1 << 20,
    ];
    v.push(u64::MAX);
    v
}

#[test]
fn pieces_tile_the_range_page_by_page() {
    for pos in positions() {
        for len in lengths() {
            let want = len.min(u64::MAX - pos);
            let mut at = pos;
            let mut total = 0u64;
            for (i, p) in pieces(pos, len).enumerate().take(400) {
                assert!(
                    p.len >= 1 && p.offset + p.len <= STORE_PAGE_SIZE,
                    "{pos} {len}: {p:?}"
                );
                assert_eq!(
                    p.index * P + p.offset as u64,
                    at,
                    "{pos} {len}: piece {i} not contiguous"
                );
                if i > 0 {
                    assert_eq!(p.offset, 0, "only the first piece starts inside a page");
                }
                at += p.len as u64;
                total += p.len as u64;
            }
            if want <= 300 * P {
                assert_eq!(total, want, "{pos} {len}");
                assert_eq!(pieces(pos, len).count() as u64, pieces_expected(pos, want));
            }
        }
    }
}

fn pieces_expected(pos: u64, len: u64) -> u64 {
    if len == 0 {
        0
    } else {
        (pos + len - 1) / P - pos / P + 1
    }
}

#[test]
fn whole_pages_are_recognised() {
    let v: Vec<bool> = pieces(P - 1, 2 * P + 2).map(|p| p.is_whole()).collect();
    assert_eq!(v, [false, true, true, false]);
}

/// A byte model of punch: which bytes are zeroed (partial pages) or freed (whole pages).
#[test]
fn punch_zeroes_partial_pages_and_frees_whole_ones_exactly() {
    for pos in positions().into_iter().filter(|&p| p < 4 * P) {
        for len in [0u64, 1, 512, 4095, 4096, 4097, 8192, 3 * P + 5] {
            let end = pos + len;
            let r = punch(pos, end);
            let mut covered = Vec::new();
            if let Some(h) = r.head {
                assert!(!h.is_whole() && h.offset != 0, "{pos}..{end}: head {h:?}");
                covered.push((
                    h.index * P + h.offset as u64,
                    h.index * P + (h.offset + h.len) as u64,
                ));
            }
            if let Some((first, last)) = r.whole {
                assert!(first <= last);
                assert!(
                    first * P >= pos && (last + 1) * P <= end,
                    "{pos}..{end}: whole {first}..={last}"
                );
                covered.push((first * P, (last + 1) * P));
            }
            if let Some(t) = r.tail {
                assert!(t.offset == 0 && !t.is_whole(), "{pos}..{end}: tail {t:?}");
                assert_ne!(Some(t.index), r.head.map(|h| h.index));
                covered.push((t.index * P, t.index * P + t.len as u64));
            }
            // The pieces are in order, contiguous and cover exactly pos..end.
            let mut at = pos;
            for (a, b) in &covered {
                assert_eq!(*a, at, "{pos}..{end}: {r:?}");
                at = *b;
            }
            assert_eq!(at, end.max(pos), "{pos}..{end}: {r:?}");
            // Every page wholly inside the range is freed.
            for page in pos.div_ceil(P)..end / P {
                assert!(
                    r.whole.is_some_and(|(f, l)| (f..=l).contains(&page)),
                    "{pos}..{end}: page {page} kept"
                );
            }
        }
    }
    assert_eq!(punch(10, 5), Punch::default());
}

#[test]
fn shrink_zeroes_the_tail_and_frees_what_follows() {
    assert_eq!(
        shrink(0),
        Shrink {
            zero: None,
            first_freed: 0
        }
    );
    assert_eq!(
        shrink(P),
        Shrink {
            zero: None,
            first_freed: 1
        }
    );
    assert_eq!(
        shrink(P + 512),
        Shrink {
            zero: Some(PagePiece {
                index: 1,
                offset: 512,
                len: 3584
            }),
            first_freed: 2
        }
    );
    let s = shrink(u64::MAX);
    assert_eq!(s.first_freed, LAST_PAGE_INDEX + 1);
    assert_eq!(s.zero.map(|z| z.index), Some(LAST_PAGE_INDEX));
}

/// `bvec_piece` against a byte-by-byte model of `bvec_iter_bvec` + `bvec_iter_advance_single`.
#[test]
fn bvec_walk_matches_the_c_iterator() {
    for bv_offset in [0u32, 1, 512, 4095] {
        for bv_len in [1u32, 512, 4096, 4097, 3 * 4096 + 100] {
            for remaining in [1u32, 512, 4096, bv_len, bv_len + 4096] {
                let mut done = 0;
                let mut left = remaining;
                let mut walked = 0u32;
                let mut steps = 0;
                while left > 0 && done < bv_len {
                    let p = bvec_piece(bv_len, bv_offset, done, left)
                        .expect("a piece while bytes are left");
                    let abs = bv_offset + done;
                    assert_eq!(p.page_index, (abs / 4096) as usize);
                    assert_eq!(p.offset, (abs % 4096) as usize);
                    assert!(p.len >= 1 && p.offset + p.len <= STORE_PAGE_SIZE);
                    done += p.len as u32;
                    left -= p.len as u32;
                    walked += p.len as u32;
                    steps += 1;
                    assert!(steps < 100);
                }
                assert_eq!(walked, remaining.min(bv_len));
            }
        }
    }
    assert_eq!(bvec_piece(4096, 0, 4096, 10), None, "bvec used up");
    assert_eq!(
        bvec_piece(4096, 0, 5000, 10),
        None,
        "malformed: done past the bvec"
    );
    assert_eq!(bvec_piece(4096, 0, 0, 0), None, "bio used up");
}

#[test]
fn max_device_size_fits_the_index_type() {
    const ABI_MAX: u64 = 1 << 50;
    // 64-bit: every size the ABI allows is indexable.
    assert_eq!(max_device_size(ABI_MAX, u64::MAX), ABI_MAX);
    // 32-bit: 2^32 pages of 4 KiB, 16 TiB; the last byte's page index is u32::MAX.
    let size32 = max_device_size(ABI_MAX, u64::from(u32::MAX));
    assert_eq!(size32, 1 << 44);
    assert_eq!((size32 - 1) >> 12, u64::from(u32::MAX));
    // A tiny index type caps even a small ABI maximum, rounded to whole pages.
    assert_eq!(max_device_size(ABI_MAX, 0), 4096);
    assert_eq!(max_device_size(4096 * 3, u64::MAX), 4096 * 3);
}

#[test]
fn split_span_tiles_the_range_without_sharing_a_page() {
    for pos in positions() {
        for len in lengths() {
            for parts in 1..=9u32 {
                let mut next = pos;
                let end = pos.saturating_add(len);
                let mut last_page: Option<u64> = None;
                for part in 0..parts {
                    let (start, stop) = split_span(pos, len, part, parts);
                    assert_eq!(start, next, "pos {pos} len {len} part {part}/{parts}");
                    assert!(stop >= start && stop <= end);
                    if stop > start {
                        if let Some(last) = last_page {
                            assert!(
                                start >> 12 > last,
                                "a page shared: pos {pos} len {len} {part}/{parts}"
                            );
                        }
                        last_page = Some((stop - 1) >> 12);
                        if part + 1 < parts {
                            assert_eq!(stop % 4096, 0, "an inner boundary off a page");
                        }
                    }
                    next = stop;
                }
                assert_eq!(next, end);
            }
        }
    }
}

#[test]
fn split_span_parts_are_near_equal() {
    // 1 MiB at a page boundary in 2, 3 and 8 parts: page counts differ by at most one.
    for parts in [2u32, 3, 8] {
        let sizes: Vec<u64> = (0..parts)
            .map(|p| {
                let (a, b) = split_span(1 << 20, 1 << 20, p, parts);
                (b - a) / 4096
            })
            .collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "{sizes:?}");
        assert_eq!(sizes.iter().sum::<u64>(), 256);
    }
    // Fewer pages than parts: the extra parts are empty, none is split.
    assert_eq!(split_span(0, 4096, 0, 2), (0, 0));
    assert_eq!(split_span(0, 4096, 1, 2), (0, 4096));
    assert_eq!(split_span(100, 10, 0, 1), (100, 110));
}
