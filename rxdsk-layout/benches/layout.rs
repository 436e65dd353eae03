//! Host micro-benchmarks of the I/O-path arithmetic the kernel module runs per bio.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rxdsk_layout::{bvec_piece, pieces, punch};

fn layout(c: &mut Criterion) {
    c.bench_function("pieces_4k_aligned", |b| {
        b.iter(|| {
            pieces(black_box(1 << 30), black_box(4096))
                .map(|p| p.len)
                .sum::<usize>()
        })
    });
    c.bench_function("pieces_1m_unaligned", |b| {
        b.iter(|| {
            pieces(black_box((1 << 30) + 512), black_box(1 << 20))
                .map(|p| p.len)
                .sum::<usize>()
        })
    });
    c.bench_function("punch_1g_unaligned", |b| {
        b.iter(|| punch(black_box(512), black_box((1 << 30) + 1024)))
    });
    c.bench_function("bvec_walk_1m", |b| {
        b.iter(|| {
            let (mut done, mut left, mut n) = (0u32, 1u32 << 20, 0u32);
            while let Some(p) = bvec_piece(black_box(1 << 20), 0, done, left) {
                done += p.len as u32;
                left -= p.len as u32;
                n += 1;
            }
            n
        })
    });
}

/// The data path of a 1 MiB bio as the module runs it, on the host: the bio's pages walked with
/// `bvec_piece`, each cut into store pages with `pieces`, each store page found in a table
/// (scattered, as pages of a RAM disk are), tested for zeros and copied; against one memcpy of
/// the same bytes (the ceiling the native bench's memcpy row measures in the kernel). If the
/// path's arithmetic grows, the gap between the two grows with it.
fn copy_path(c: &mut Criterion) {
    const PAGE: usize = 4096;
    const BIO: usize = 1 << 20;
    const STORE_PAGES: usize = 1 << 14; // 64 MiB of store, beyond the caches
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let bio: Vec<u8> = (0..BIO).map(|_| next() as u8).collect();
    // Store pages allocated one by one, then visited in a shuffled order.
    let mut store: Vec<Box<[u8; PAGE]>> = (0..STORE_PAGES).map(|_| Box::new([0u8; PAGE])).collect();
    let mut order: Vec<usize> = (0..STORE_PAGES).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, next() as usize % (i + 1));
    }
    let mut flat = vec![0u8; STORE_PAGES * PAGE];
    let mut at = 0usize;
    c.bench_function("copy_path_1m_write", |b| {
        b.iter(|| {
            let pos = (at % (STORE_PAGES - BIO / PAGE) * PAGE) as u64;
            at = at.wrapping_add(BIO / PAGE);
            let (mut done, mut left) = (0u32, BIO as u32);
            let mut stored = 0usize;
            while let Some(seg) = bvec_piece(BIO as u32, 0, done, left) {
                let src = &bio[done as usize..done as usize + seg.len];
                let mut from = 0;
                for piece in pieces(pos + u64::from(done), seg.len as u64) {
                    let chunk = &src[from..from + piece.len];
                    let slot = order[piece.index as usize % STORE_PAGES];
                    // A whole page of zeros stores nothing (random data stops the test at once).
                    if piece.len != PAGE || chunk.iter().any(|&b| b != 0) {
                        store[slot][piece.offset..piece.offset + piece.len].copy_from_slice(chunk);
                        stored += 1;
                    }
                    from += piece.len;
                }
                done += seg.len as u32;
                left -= seg.len as u32;
            }
            black_box(stored)
        })
    });
    c.bench_function("memcpy_1m", |b| {
        b.iter(|| {
            let start = at % (STORE_PAGES - BIO / PAGE) * PAGE;
            at = at.wrapping_add(BIO / PAGE);
            flat[start..start + BIO].copy_from_slice(black_box(&bio));
            black_box(flat[start])
        })
    });
}

criterion_group!(benches, layout, copy_path);
criterion_main!(benches);
