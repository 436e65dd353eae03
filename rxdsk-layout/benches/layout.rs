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

criterion_group!(benches, layout);
criterion_main!(benches);
