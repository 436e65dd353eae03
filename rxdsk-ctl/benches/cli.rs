//! Host micro-benchmarks of rxdskctl's pure code: size parsing and formatting, DEVICE parsing,
//! and rendering a large device list.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rxdsk_ctl::list::{render_json, render_table, Column, Row, Style};
use rxdsk_ctl::{device, size};
use rxdsk_ioctl::RxdskInfo;

fn parsing(c: &mut Criterion) {
    c.bench_function("parse_size", |b| {
        b.iter(|| {
            for s in ["4096", "64K", "512M", "1G", "16T", "3P"] {
                black_box(size::parse_size(black_box(s)).ok());
            }
        })
    });
    c.bench_function("format_size", |b| {
        b.iter(|| {
            for v in [0u64, 512, 4096, 1_610_612_736, u64::MAX] {
                black_box(size::format_size(black_box(v)));
            }
        })
    });
    c.bench_function("parse_device", |b| {
        b.iter(|| {
            for s in ["/dev/rxd0", "rxd17", "1023"] {
                black_box(device::parse_device(black_box(s)).ok());
            }
        })
    });
}

fn rendering(c: &mut Criterion) {
    let infos: Vec<Row> = (0..1024)
        .map(|id| {
            RxdskInfo {
                id,
                logical_block_size: 4096,
                size_bytes: u64::from(id + 1) << 30,
                used_bytes: u64::from(id) << 20,
                ..Default::default()
            }
            .into()
        })
        .collect();
    let style = Style {
        bytes: false,
        no_headings: false,
    };
    c.bench_function("render_table_1024_devices", |b| {
        b.iter(|| black_box(render_table(&infos, &Column::DEFAULT, style)))
    });
    c.bench_function("render_json_1024_devices", |b| {
        b.iter(|| black_box(render_json(&infos, &Column::ALL)))
    });
}

criterion_group!(benches, parsing, rendering);
criterion_main!(benches);
