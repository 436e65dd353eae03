//! Compressed devices (ABI 1.4): data integrity under fio for every algorithm, what
//! COMPR_STATS reports against zram's `mm_stat` on the same data, the memory limit, discard,
//! resize, swap, decompression failures and allocation failures.

use crate::blk::{self, mib, open_direct, read_at, write_at, AlignedBuf, MIB, PAGE};
use crate::datapath::{self, SwapParams, GUEST_DIR};
use crate::harness::{cmd_ok, cmd_timeout, ensure, tail, TestResult};
use crate::rxdsk::Device;
use rxdsk_ioctl::{
    RxdskComprStats, RXDSK_COMPRESS_LZ4, RXDSK_COMPRESS_LZO, RXDSK_COMPRESS_LZO_RLE,
    RXDSK_COMPRESS_NAMES, RXDSK_COMPRESS_ZSTD,
};
use std::time::Duration;

const ALGORITHMS: [u32; 4] = [
    RXDSK_COMPRESS_LZO,
    RXDSK_COMPRESS_LZO_RLE,
    RXDSK_COMPRESS_LZ4,
    RXDSK_COMPRESS_ZSTD,
];

fn name(algorithm: u32) -> &'static str {
    RXDSK_COMPRESS_NAMES[algorithm as usize]
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// What each of fio-compress.fio's two writers covers: 4 MiB, or on the debug kernel (KASAN
/// checks every compressed byte) 2 MiB.
fn fio_part() -> u64 {
    if crate::harness::debug_kernel() {
        2 * MIB
    } else {
        4 * MIB
    }
}

/// fio-compress.fio on `dev`: two writers, sizes from `bssplit` aligned to `align`, data
/// compressible to `pct` percent (0: random), every block verified.
fn fio(dev: &Device, pct: u32, bssplit: &str, align: &str) -> TestResult {
    let job = format!("{GUEST_DIR}/fio-compress.fio");
    let pct = pct.to_string();
    let part = fio_part().to_string();
    let out = cmd_timeout(
        "fio",
        &[&job],
        &[
            ("RXDSK_DEV", dev.path.as_str()),
            ("RXDSK_BSSPLIT", bssplit),
            ("RXDSK_ALIGN", align),
            ("RXDSK_COMPRESS_PCT", &pct),
            ("RXDSK_PART", &part),
        ],
        Duration::from_secs(600),
    )?;
    ensure(out.status == 0, || {
        format!(
            "fio (compressible {pct}%, {bssplit}) on {}: exit {}\n{}\n{}",
            dev.path,
            out.status,
            tail(&out.stderr, 15),
            tail(&out.stdout, 15)
        )
    })
}

/// COMPR_STATS agrees with STATS and INFO: DATA is the pages held, TOTAL is what INFO says
/// is used, and the objects fit in the memory.
fn consistent(dev: &Device) -> Result<RxdskComprStats, String> {
    let c = dev.compr_stats()?;
    let s = dev.stats()?;
    let i = dev.info()?;
    ensure(c.orig_data_size == s.pages * PAGE, || {
        format!("DATA {} but {} pages held", c.orig_data_size, s.pages)
    })?;
    ensure(
        i.used_bytes == c.mem_used_total || i.used_bytes.abs_diff(c.mem_used_total) < 64 * 1024,
        || format!("INFO used {} but TOTAL {}", i.used_bytes, c.mem_used_total),
    )?;
    ensure(
        c.compr_data_size <= c.mem_used_total && c.mem_used_total <= c.mem_used_max,
        || {
            format!(
                "COMPR {} TOTAL {} MAX {}",
                c.compr_data_size, c.mem_used_total, c.mem_used_max
            )
        },
    )?;
    Ok(c)
}

/// Discards the whole device: nothing is stored afterwards and (almost) all memory is back.
fn discard_all(dev: &Device, size: u64) -> Result<RxdskComprStats, String> {
    let f = open_direct(&dev.path, true)?;
    blk::discard(&f, 0, size).map_err(|e| format!("BLKDISCARD {}: {e}", dev.path))?;
    let c = consistent(dev)?;
    ensure(c.orig_data_size == 0 && c.compr_data_size == 0, || {
        format!("after discarding everything: {c:?}")
    })?;
    // Empty zspages are freed at once unless a page of theirs was locked (deferred free).
    ensure(c.mem_used_total <= 16 * PAGE, || {
        format!("TOTAL {} after discarding everything", c.mem_used_total)
    })?;
    Ok(c)
}

/// fio verify on every algorithm: compressible and random data with 4 KiB blocks, then
/// compressible data with 512-byte blocks and writes of 512 bytes to 8 KiB (read-modify-write
/// of compressed pages).
pub fn compress_fio_verify() -> TestResult {
    for algorithm in ALGORITHMS {
        let what = name(algorithm);
        let dev = Device::create_compressed(16 * MIB, 4096, algorithm, 0)?;
        fio(&dev, 60, "4k/40:16k/30:64k/30", "4k")?;
        let c = consistent(&dev)?;
        ensure(
            c.orig_data_size >= fio_part() && c.compr_data_size * 10 < c.orig_data_size * 7,
            || format!("{what}: 60%-compressible data: {c:?}"),
        )?;
        ensure(c.mem_used_total < c.orig_data_size, || {
            format!("{what}: compressible data takes more memory than its size: {c:?}")
        })?;
        discard_all(&dev, 16 * MIB)?;
        fio(&dev, 0, "4k/40:16k/30:64k/30", "4k")?;
        let c = consistent(&dev)?;
        ensure(c.huge_pages * PAGE * 10 >= c.orig_data_size * 9, || {
            format!("{what}: random data not stored whole: {c:?}")
        })?;
        dev.destroy()?;
        let dev = Device::create_compressed(16 * MIB, 512, algorithm, 0)?;
        fio(&dev, 60, "512/25:1536/25:4k/25:8k/25", "512")?;
        consistent(&dev)?;
        dev.destroy()?;
        println!("# {what}: fio verify passed (compressible and random, 4096 and 512)");
    }
    Ok(())
}

/// The size of both devices in the comparison with zram.
const ZRAM_DISKSIZE: u64 = 32 * MIB;

/// zram's `mm_stat` for zram0.
fn zram_mm_stat() -> Result<Vec<u64>, String> {
    let text =
        std::fs::read_to_string("/sys/block/zram0/mm_stat").map_err(|e| format!("mm_stat: {e}"))?;
    text.split_whitespace()
        .map(|v| v.parse().map_err(|e| format!("mm_stat {text:?}: {e}")))
        .collect()
}

fn sys_write(path: &str, value: &str) -> TestResult {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))
}

/// The corpus: the guest image's own programs and modules (real binaries and text), 24 MiB
/// of a tar stream, with how many of its pages are all zeros and how many one repeated
/// non-zero word.
fn corpus() -> Result<(Vec<u8>, u64, u64), String> {
    cmd_ok(
        "sh",
        &[
            "-c",
            "tar -cf - /usr /lib /bin 2>/dev/null | head -c 25165824 > /tmp/corpus",
        ],
    )?;
    let data = std::fs::read("/tmp/corpus").map_err(|e| format!("/tmp/corpus: {e}"))?;
    let _ = std::fs::remove_file("/tmp/corpus");
    ensure(data.len() == 24 * MIB as usize, || {
        format!("corpus of {} bytes", data.len())
    })?;
    let (mut zero, mut same) = (0, 0);
    for page in data.chunks(PAGE as usize) {
        let first = &page[..8];
        if page.chunks(8).all(|w| w == first) {
            if first == [0; 8] {
                zero += 1;
            } else {
                same += 1;
            }
        }
    }
    Ok((data, zero, same))
}

fn write_all(path: &str, data: &[u8]) -> TestResult {
    let f = open_direct(path, true)?;
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    for (i, chunk) in data.chunks(MIB as usize).enumerate() {
        buf[..chunk.len()].copy_from_slice(chunk);
        write_at(&f, &buf[..chunk.len()], i as u64 * MIB)
            .map_err(|e| format!("write {path}: {e}"))?;
    }
    Ok(())
}

/// Ratio honesty: the same real corpus written to zram and to rxdsk with the same algorithm
/// in one boot. Same compressors, same pages, so COMPR must match zram's compr_data_size
/// within 0.5%, DATA must be zram's orig_data_size less the zero pages (which rxdsk does not
/// store at all, zram as same-filled), TOTAL zram's mem_used_total within 3% (ours adds a
/// 16-byte descriptor per page held), and within 1% of the memory zram really uses (its table
/// included: ours come out below it or a few zsmalloc pages above, as the pools' packing
/// varies from run to run). Then a discard gives the memory back.
pub fn compress_vs_zram_ratio() -> TestResult {
    let (data, zero, same) = corpus()?;
    let pages = data.len() as u64 / PAGE;
    if !std::path::Path::new("/sys/block/zram0").exists() {
        cmd_ok("modprobe", &["zram", "num_devices=1"])?;
    }
    for (algorithm, zram_name) in [
        (RXDSK_COMPRESS_LZO, "lzo"),
        (RXDSK_COMPRESS_LZO_RLE, "lzo-rle"),
        (RXDSK_COMPRESS_LZ4, "lz4"),
        (RXDSK_COMPRESS_ZSTD, "zstd"),
    ] {
        sys_write("/sys/block/zram0/reset", "1")?;
        sys_write("/sys/block/zram0/comp_algorithm", zram_name)?;
        sys_write("/sys/block/zram0/disksize", &ZRAM_DISKSIZE.to_string())?;
        write_all("/dev/zram0", &data)?;
        let z = zram_mm_stat()?;
        let (z_orig, z_compr, z_total, z_same, z_huge) = (z[0], z[1], z[2], z[5], z[7]);
        let dev = Device::create_compressed(ZRAM_DISKSIZE, 4096, algorithm, 0)?;
        write_all(&dev.path, &data)?;
        let r = consistent(&dev)?;
        // zram's table (16 bytes per page of its size) is allocated up front and not in
        // mem_used_total; our descriptors (16 bytes per page held) are in TOTAL.
        let z_real = z_total + ZRAM_DISKSIZE / PAGE * 16;
        let corpus_bytes = data.len() as u64;
        println!(
            "# {zram_name}: corpus {} ({zero} zero pages, {same} same-filled): zram DATA {} COMPR {} \
             TOTAL {} (+ table: {z_real}, corpus/memory {:.3}) | rxdsk DATA {} COMPR {} TOTAL {} \
             (corpus/memory {:.3})",
            mib(corpus_bytes),
            z_orig,
            z_compr,
            z_total,
            corpus_bytes as f64 / z_real as f64,
            r.orig_data_size,
            r.compr_data_size,
            r.mem_used_total,
            corpus_bytes as f64 / r.mem_used_total as f64,
        );
        ensure(r.mem_used_total * 100 <= z_real * 101, || {
            format!(
                "{zram_name}: rxdsk holds the corpus in {} bytes, zram in {z_real}: more than 1% \
                 more",
                r.mem_used_total
            )
        })?;
        ensure(z_orig == pages * PAGE && z_same == zero + same, || {
            format!("zram stored {z_orig} bytes, {z_same} same pages: not the corpus as counted")
        })?;
        ensure(
            r.orig_data_size == (pages - zero) * PAGE && r.same_pages == same,
            || {
                format!("{zram_name}: rxdsk DATA {} same {} for {pages} pages, {zero} zero, {same} same", r.orig_data_size, r.same_pages)
            },
        )?;
        ensure(r.compr_data_size.abs_diff(z_compr) * 200 <= z_compr, || {
            format!(
                "{zram_name}: COMPR {} vs zram's {z_compr}",
                r.compr_data_size
            )
        })?;
        ensure(r.huge_pages == z_huge, || {
            format!(
                "{zram_name}: {} pages stored whole, zram {z_huge}",
                r.huge_pages
            )
        })?;
        ensure(
            r.mem_used_total.abs_diff(z_total) * 100 <= z_total * 3,
            || {
                format!(
                    "{zram_name}: TOTAL {} vs zram's {z_total}",
                    r.mem_used_total
                )
            },
        )?;
        discard_all(&dev, ZRAM_DISKSIZE)?;
        dev.destroy()?;
    }
    sys_write("/sys/block/zram0/reset", "1")
}

/// `--mem-limit` on a compressed device limits TOTAL: random pages fail with ENOSPC exactly
/// when the next one would pass it, while compressible data stores more than the limit; a
/// discard makes room again. Shrinking frees what lies past the end and zeroes a partial
/// page; growing back reads zeros; write-zeroes on part of a page keeps the rest.
pub fn compress_limit_discard_resize() -> TestResult {
    let limit = 2 * MIB;
    let dev = Device::create_compressed(16 * MIB, 512, RXDSK_COMPRESS_LZ4, limit)?;
    let f = open_direct(&dev.path, true)?;
    let mut buf = AlignedBuf::zeroed(PAGE as usize)?;
    let mut stored = 0u64;
    let mut failed = None;
    for p in 0..(4 * MIB / PAGE) {
        blk::fill_keyed(&mut buf[..], 77, p);
        match write_at(&f, &buf[..], p * PAGE) {
            Ok(()) => stored += 1,
            Err(e) => {
                failed = Some(errno_of(&e));
                break;
            }
        }
    }
    let c = consistent(&dev)?;
    ensure(failed == Some(nix::libc::ENOSPC), || {
        format!(
            "random pages past a {} limit: {failed:?} after {stored} pages, want ENOSPC",
            mib(limit)
        )
    })?;
    // A page stored whole costs a page and a descriptor: the next one would not have fit.
    ensure(
        c.mem_used_total <= limit && limit - c.mem_used_total < PAGE + 64,
        || {
            format!(
                "ENOSPC with TOTAL {} under a limit of {limit}",
                c.mem_used_total
            )
        },
    )?;
    ensure(dev.stats()?.limit_failures >= 1, || {
        "limit_failures not counted".into()
    })?;
    // Every page stored is random, so whole: the refused one counted in nothing.
    ensure(
        c.huge_pages * PAGE == c.orig_data_size && c.compr_data_size == c.orig_data_size,
        || format!("counters after ENOSPC: {c:?}"),
    )?;
    blk::discard(&f, 0, 16 * MIB).map_err(|e| format!("BLKDISCARD: {e}"))?;
    // Compressible pages: far more data than the limit.
    for p in 0..(8 * MIB / PAGE) {
        buf[..].fill(0);
        buf[..64].copy_from_slice(&[marker(p); 64]);
        buf[2048..2056].copy_from_slice(&p.to_le_bytes());
        write_at(&f, &buf[..], p * PAGE).map_err(|e| format!("compressible page {p}: {e}"))?;
    }
    let c = consistent(&dev)?;
    ensure(
        c.orig_data_size == 8 * MIB && c.mem_used_total <= limit,
        || format!("8 MiB of compressible data under a 2 MiB limit: {c:?}"),
    )?;
    // Write-zeroes of 1 KiB in the middle of page 3 keeps the rest of it.
    blk::zeroout(&f, 3 * PAGE + 1024, 1024).map_err(|e| format!("BLKZEROOUT: {e}"))?;
    read_at(&f, &mut buf[..], 3 * PAGE).map_err(|e| format!("read page 3: {e}"))?;
    ensure(
        buf[..64] == [marker(3); 64]
            && buf[1024..2048].iter().all(|&b| b == 0)
            && buf[2048..2056] == 3u64.to_le_bytes(),
        || "write-zeroes inside a compressed page lost or kept the wrong bytes".into(),
    )?;
    drop(f);
    // Shrink to 2 MiB + 512: pages past it go, the partial page keeps its first 512 bytes.
    dev.resize(2 * MIB + 512, 0)
        .map_err(|e| format!("shrink: {e}"))?;
    let c = consistent(&dev)?;
    ensure(c.orig_data_size == 2 * MIB + PAGE, || {
        format!("after the shrink: {c:?}")
    })?;
    dev.resize(16 * MIB, 0).map_err(|e| format!("grow: {e}"))?;
    let f = open_direct(&dev.path, false)?;
    read_at(&f, &mut buf[..], 2 * MIB).map_err(|e| format!("read after grow: {e}"))?;
    ensure(
        buf[..64] == [marker(2 * MIB / PAGE); 64] && buf[512..].iter().all(|&b| b == 0),
        || "the partial page past the shrink is not zeroed".into(),
    )?;
    read_at(&f, &mut buf[..], 5 * MIB).map_err(|e| format!("read after grow: {e}"))?;
    ensure(buf.iter().all(|&b| b == 0), || {
        "data past the shrink came back".into()
    })?;
    drop(f);
    dev.destroy()
}

/// The first bytes of compressible page `p` (never zero: no page is all zeros).
fn marker(p: u64) -> u8 {
    p as u8 | 1
}

/// Swap on an lz4 device (the zram use case): a hog larger than its cgroup limit.
pub fn compress_swap_lz4() -> TestResult {
    let dev = Device::create_compressed(512 * MIB, 4096, RXDSK_COMPRESS_LZ4, 0)?;
    // Under KASAN every compressed byte is checked twice over: on the debug kernel a lighter
    // load (48 MiB under 24 MiB) takes the same paths.
    let p = if crate::harness::debug_kernel() {
        SwapParams {
            hog_bytes: 48 * MIB,
            mem_max: 24 * MIB,
            timeout: Duration::from_secs(400),
        }
    } else {
        SwapParams::standard(Duration::from_secs(400))
    };
    let r = datapath::swap_stress(&dev.path, &p)?;
    let s = dev.stats()?;
    let must = p.hog_bytes - p.mem_max;
    ensure(
        s.write_bytes >= must && s.read_bytes > 0 && s.io_errors == 0 && s.alloc_failures == 0,
        || {
            format!(
                "swap on lz4: {} out, {} in, stats {s:?} ({r:?})",
                mib(s.write_bytes),
                mib(s.read_bytes)
            )
        },
    )?;
    let c = consistent(&dev)?;
    println!(
        "# swap on lz4: {} swapped out; DATA {} COMPR {} TOTAL {} now",
        mib(s.write_bytes),
        mib(c.orig_data_size),
        mib(c.compr_data_size),
        mib(c.mem_used_total)
    );
    dev.destroy()
}

/// The three kinds of page a compressed device holds: compressible (an object), random
/// (stored whole), one repeated word (no object).
fn three_pages(seed: u64) -> Result<AlignedBuf, String> {
    let mut buf = AlignedBuf::zeroed(3 * PAGE as usize)?;
    let text = b"rxdsk compresses this line of text well enough; ";
    for (i, b) in buf[..PAGE as usize].iter_mut().enumerate() {
        *b = text[(i + seed as usize) % text.len()];
    }
    blk::fill_keyed(&mut buf[PAGE as usize..2 * PAGE as usize], seed, 1);
    for w in buf[2 * PAGE as usize..].chunks_mut(8) {
        w.copy_from_slice(&(0x5a5a_0000_0000_0001 ^ seed).to_ne_bytes());
    }
    Ok(buf)
}

/// A garbled compressed object (fail_rxdsk_decompress garbles its copy on the way to the
/// real decompressor) fails the read, and the read-modify-write of a partial write, with EIO,
/// for every algorithm; pages stored whole or as a word are unaffected; the object itself is
/// intact, so the same read succeeds once the injection stops.
pub fn compress_corrupt_eio() -> TestResult {
    for algorithm in ALGORITHMS {
        let what = name(algorithm);
        let dev = Device::create_compressed(4 * MIB, 512, algorithm, 0)?;
        let f = open_direct(&dev.path, true)?;
        let data = three_pages(algorithm as u64)?;
        write_at(&f, &data[..], 0).map_err(|e| format!("{what}: write: {e}"))?;
        let before = consistent(&dev)?;
        ensure(
            before.huge_pages == 1 && before.same_pages == 1 && before.orig_data_size == 3 * PAGE,
            || {
                format!("{what}: the three pages are not an object, a whole page and a word: {before:?}")
            },
        )?;
        let mut page = AlignedBuf::zeroed(PAGE as usize)?;
        let small = AlignedBuf::zeroed(512)?;
        let code = crate::faults::in_failing_child(crate::faults::Fault::Decompress, || {
            let mut bad = 0;
            if !matches!(read_at(&f, &mut page[..], 0), Err(ref e) if errno_of(e) == nix::libc::EIO)
            {
                bad |= 1;
            }
            if !matches!(write_at(&f, &small[..], 1024), Err(ref e) if errno_of(e) == nix::libc::EIO)
            {
                bad |= 2;
            }
            if read_at(&f, &mut page[..], PAGE).is_err()
                || read_at(&f, &mut page[..], 2 * PAGE).is_err()
            {
                bad |= 4;
            }
            bad
        })?;
        ensure(code == 0, || {
            format!("{what}: under fail_rxdsk_decompress: code {code} (1: read not EIO, 2: partial write not EIO, 4: other pages failed)")
        })?;
        let after = consistent(&dev)?;
        ensure(
            after.decompress_failures >= before.decompress_failures + 2,
            || {
                format!(
                    "{what}: decompress_failures {} -> {}",
                    before.decompress_failures, after.decompress_failures
                )
            },
        )?;
        let mut back = AlignedBuf::zeroed(3 * PAGE as usize)?;
        read_at(&f, &mut back[..], 0)
            .map_err(|e| format!("{what}: read after the injection: {e}"))?;
        ensure(back[..] == data[..], || {
            format!("{what}: data changed by the failed accesses")
        })?;
        drop(f);
        dev.destroy()?;
    }
    Ok(())
}

/// failslab during writes to a compressed device (zsmalloc's handles and zspages, our
/// descriptors, XArray nodes): new pages and overwrites fail with EIO or ENOMEM, an
/// overwritten page keeps its old data, nothing is left allocated (DATA, COMPR and TOTAL as
/// before; kmemleak in the debug flavour), and the same writes succeed afterwards. Then
/// CREATE of a compressed device (pool, streams) under failslab: ENOMEM, no device left.
pub fn compress_fault_injection_slab() -> TestResult {
    let dev = Device::create_compressed(16 << 30, 4096, RXDSK_COMPRESS_LZ4, 0)?;
    let f = open_direct(&dev.path, true)?;
    let data = three_pages(9)?;
    write_at(&f, &data[..], 0).map_err(|e| format!("setup write: {e}"))?;
    let before = consistent(&dev)?;
    let other = three_pages(10)?;
    let code = crate::faults::in_failing_child(crate::faults::Fault::Slab, || {
        let mut bad = 0;
        // Overwrites of the three pages, then new pages far apart (new XArray nodes).
        for p in 0..3u64 {
            let page = &other[(p * PAGE) as usize..((p + 1) * PAGE) as usize];
            if write_at(&f, page, p * PAGE).is_ok() && p != 2 {
                bad += 1;
            }
        }
        for p in 1..9u64 {
            if write_at(&f, &other[..PAGE as usize], p * 64 * 64 * 64 * PAGE).is_ok() {
                bad += 1;
            }
        }
        bad
    })?;
    // A same-filled overwrite (page 2) needs only a descriptor: it may fail or not.
    ensure(code == 0, || {
        format!("{code} writes succeeded under failslab")
    })?;
    let mut back = AlignedBuf::zeroed(3 * PAGE as usize)?;
    read_at(&f, &mut back[..], 0).map_err(|e| format!("read after failslab: {e}"))?;
    ensure(
        back[..2 * PAGE as usize] == data[..2 * PAGE as usize],
        || "a failed overwrite changed the page".into(),
    )?;
    let after = consistent(&dev)?;
    ensure(
        after.orig_data_size == before.orig_data_size
            && after.compr_data_size.abs_diff(before.compr_data_size) <= PAGE
            && after.mem_used_total <= before.mem_used_total + 4 * PAGE,
        || format!("failed writes left memory behind: before {before:?} after {after:?}"),
    )?;
    ensure(dev.stats()?.alloc_failures > 0, || {
        "no allocation failure reached the driver".into()
    })?;
    for p in 1..9u64 {
        write_at(&f, &other[..PAGE as usize], p * 64 * 64 * 64 * PAGE)
            .map_err(|e| format!("write after failslab: {e}"))?;
    }
    ensure(
        consistent(&dev)?.orig_data_size == before.orig_data_size + 8 * PAGE,
        || "new pages not stored after the injection".into(),
    )?;
    drop(f);
    dev.destroy()?;
    // CREATE of a compressed device needs its pool, stream slots and streams (zstd: about
    // 180 KiB each): under failslab it fails with ENOMEM and leaves no device behind.
    let control = crate::rxdsk::Control::open()?;
    let devices = crate::rxdsk::list_ids()?.len();
    let code = crate::faults::in_failing_child(crate::faults::Fault::Slab, || {
        let mut c = rxdsk_ioctl::RxdskCreate {
            size_bytes: 16 * MIB,
            logical_block_size: 4096,
            compress: RXDSK_COMPRESS_ZSTD,
            ..Default::default()
        };
        match control.create_raw(&mut c) {
            Err(nix::errno::Errno::ENOMEM) => 0,
            Ok(()) => 1,
            Err(_) => 2,
        }
    })?;
    ensure(code == 0, || {
        format!("CREATE under failslab: code {code} (1: it succeeded, 2: not ENOMEM)")
    })?;
    ensure(crate::rxdsk::list_ids()?.len() == devices, || {
        "a failed CREATE left a device".into()
    })
}

/// CPU hotplug while a compressed device is busy: two threads write and verify their own
/// pages (zstd: the largest streams) while CPU 1 goes down and comes back five times, which
/// frees its stream and makes a new one each time; every page reads back as written.
pub fn compress_cpu_hotplug() -> TestResult {
    const CPU1: &str = "/sys/devices/system/cpu/cpu1/online";
    ensure(std::path::Path::new(CPU1).exists(), || {
        format!("{CPU1} missing: the guest needs two CPUs with hotplug")
    })?;
    let dev = Device::create_compressed(16 * MIB, 4096, RXDSK_COMPRESS_ZSTD, 0)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            let path = dev.path.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let f = open_direct(&path, true)?;
                let mut page = AlignedBuf::zeroed(PAGE as usize)?;
                let mut back = AlignedBuf::zeroed(PAGE as usize)?;
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for p in 0..256u64 {
                        let off = (t * 1024 + p) * PAGE;
                        // Half random, half zeros: compressible, never same-filled.
                        blk::fill_keyed(&mut page[..2048], rounds, t * 1024 + p);
                        page[2048..].fill(0);
                        write_at(&f, &page[..], off).map_err(|e| format!("write {off}: {e}"))?;
                        read_at(&f, &mut back[..], off).map_err(|e| format!("read {off}: {e}"))?;
                        if back[..] != page[..] {
                            return Err(format!("page at {off} read back wrong in round {rounds}"));
                        }
                    }
                    rounds += 1;
                }
                Ok(rounds)
            })
        })
        .collect();
    let mut toggles = Ok(());
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        if let Err(e) = sys_write(CPU1, "0") {
            toggles = Err(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if let Err(e) = sys_write(CPU1, "1") {
            toggles = Err(e);
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sys_write(CPU1, "1");
    let mut rounds = Vec::new();
    for w in workers {
        rounds.push(w.join().map_err(|_| "a worker panicked".to_string())??);
    }
    toggles?;
    ensure(rounds.iter().all(|&r| r > 0), || {
        format!("a worker made no progress: {rounds:?}")
    })?;
    println!("# CPU 1 down and up 5 times; the workers verified {rounds:?} rounds of 256 pages");
    consistent(&dev)?;
    dev.destroy()
}

/// The 10th number of the device's `mm_stat`: chunks of big bios done by helpers on other CPUs.
fn parallel_parts(dev: &Device) -> Result<u64, String> {
    let name = dev.path.trim_start_matches("/dev/");
    let path = format!("/sys/block/{name}/rxdsk/mm_stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.split_whitespace()
        .nth(9)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: no 10th number in {text:?}"))
}

/// Writes `len` bytes at `off` from one task: half-compressible pages keyed by `round` and
/// their page number, recorded in `model` (the device's expected bytes).
fn write_keyed(
    f: &std::fs::File,
    model: &mut [u8],
    off: u64,
    len: usize,
    round: u64,
) -> TestResult {
    let mut buf = AlignedBuf::zeroed(len)?;
    for (i, page) in buf.chunks_mut(PAGE as usize).enumerate() {
        blk::fill_keyed(&mut page[..2048], round, off / PAGE + i as u64);
        page[2048..].fill(0);
    }
    write_at(f, &buf[..], off).map_err(|e| format!("write of {len} bytes at {off}: {e}"))?;
    model[off as usize..off as usize + len].copy_from_slice(&buf[..]);
    Ok(())
}

/// Reads the whole device back in `block`-byte reads and compares it with `model`.
fn verify_model(f: &std::fs::File, model: &[u8], block: usize, what: &str) -> TestResult {
    let mut back = AlignedBuf::zeroed(block)?;
    for (i, want) in model.chunks(block).enumerate() {
        let off = (i * block) as u64;
        read_at(f, &mut back[..want.len()], off)
            .map_err(|e| format!("{what}: read at {off}: {e}"))?;
        if let Some(bad) = (0..want.len()).find(|&j| back[j] != want[j]) {
            return Err(format!(
                "{what}: byte {} differs ({} read, {} written)",
                off + bad as u64,
                back[bad],
                want[bad]
            ));
        }
    }
    Ok(())
}

/// Big bios on several CPUs: one task writes and reads 1 MiB and 196 KiB bios (49 pages: an
/// uneven split, at offsets that are not multiples of it), so the other CPU is free and its
/// part is handed to it (`mm_stat`'s `parallel_parts` must grow, for writes and for reads);
/// every byte reads back as written, through 1 MiB and through 4 KiB reads; then again while
/// CPU 1 goes down and up under the writer; a 1 MiB read while decompressions fail ends with
/// EIO; then on a 512-byte-block device, with buffers and offsets off the page grid.
pub fn compress_big_bios_in_parts() -> TestResult {
    const SIZE: usize = 16 * MIB as usize;
    const CPU1: &str = "/sys/devices/system/cpu/cpu1/online";
    ensure(std::path::Path::new(CPU1).exists(), || {
        format!("{CPU1} missing: the guest needs two CPUs with hotplug")
    })?;
    let dev = Device::create_compressed(SIZE as u64, 4096, RXDSK_COMPRESS_LZ4, 0)?;
    let f = open_direct(&dev.path, true)?;
    let mut model = vec![0u8; SIZE];
    let before = parallel_parts(&dev)?;
    for k in 0..(SIZE / MIB as usize) {
        write_keyed(&f, &mut model, (k * MIB as usize) as u64, MIB as usize, 1)?;
    }
    let after_writes = parallel_parts(&dev)?;
    ensure(after_writes > before, || {
        format!("1 MiB writes from one task with CPU 1 free: no part went to another CPU ({before} -> {after_writes})")
    })?;
    verify_model(&f, &model, MIB as usize, "1 MiB reads")?;
    let after_reads = parallel_parts(&dev)?;
    ensure(after_reads > after_writes, || {
        format!("1 MiB reads: no part went to another CPU ({after_writes} -> {after_reads})")
    })?;
    let odd = 49 * PAGE as usize;
    let mut off = PAGE as usize;
    while off + odd <= SIZE {
        write_keyed(&f, &mut model, off as u64, odd, 2)?;
        off += odd + 3 * PAGE as usize;
    }
    verify_model(
        &f,
        &model,
        PAGE as usize,
        "4 KiB reads after 196 KiB writes",
    )?;
    verify_model(&f, &model, MIB as usize, "1 MiB reads after 196 KiB writes")?;
    // CPU 1 down and up while one task writes: a part queued on a CPU going down runs on
    // another, and no page is lost.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let stop = stop.clone();
        std::thread::spawn(move || -> TestResult {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 2 {
                sys_write(CPU1, "0")?;
                std::thread::sleep(Duration::from_millis(50));
                sys_write(CPU1, "1")?;
                std::thread::sleep(Duration::from_millis(50));
                n += 1;
            }
            Ok(())
        })
    };
    let mut written = Ok(());
    for round in 3..6u64 {
        for k in 0..(SIZE / MIB as usize) {
            written = written.and_then(|()| {
                write_keyed(
                    &f,
                    &mut model,
                    (k * MIB as usize) as u64,
                    MIB as usize,
                    round,
                )
            });
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let toggled = toggler
        .join()
        .map_err(|_| "the CPU toggler panicked".to_string())?;
    let _ = sys_write(CPU1, "1");
    written?;
    toggled?;
    verify_model(
        &f,
        &model,
        MIB as usize,
        "1 MiB reads after writes across CPU hotplug",
    )?;
    // A chunk that fails fails the bio: a 1 MiB read while every decompression fails (in the
    // submitter and in its helpers alike: which of them takes which chunk is up to the
    // scheduler) ends with EIO, no participant is left waiting, and nothing is changed.
    let mut big = AlignedBuf::zeroed(MIB as usize)?;
    let before = consistent(&dev)?;
    let read = crate::faults::decompression_fails_everywhere(|| read_at(&f, &mut big[..], 0))?;
    let after = consistent(&dev)?;
    ensure(
        matches!(read, Err(ref e) if errno_of(e) == nix::libc::EIO),
        || format!("a 1 MiB read while decompressions fail: {read:?}, not EIO"),
    )?;
    ensure(
        after.decompress_failures > before.decompress_failures,
        || {
            format!(
                "decompress_failures {} -> {} across the failed read",
                before.decompress_failures, after.decompress_failures
            )
        },
    )?;
    verify_model(&f, &model, MIB as usize, "1 MiB reads after the failed one")?;
    consistent(&dev)?;
    let chunks = parallel_parts(&dev)?;
    drop(f);
    dev.destroy()?;
    // 512-byte blocks: bios whose memory does not line up with the device's pages (a buffer 512
    // bytes into a page, at offsets 3.5 KiB into one, of 196.5 KiB + 1.5 KiB), so the chunks cut
    // pieces of the bio's memory in two and walks resume inside a piece.
    const SMALL: usize = 4 * MIB as usize;
    let dev = Device::create_compressed(SMALL as u64, 512, RXDSK_COMPRESS_LZ4, 0)?;
    let f = open_direct(&dev.path, true)?;
    let mut model = vec![0u8; SMALL];
    let len = 49 * PAGE as usize + 1536;
    let mut raw = AlignedBuf::zeroed(len + PAGE as usize)?;
    let mut off = 3584;
    let mut round = 10;
    while off + len <= SMALL {
        let buf = &mut raw[512..512 + len];
        blk::fill_keyed(buf, round, off as u64);
        for half in buf.chunks_mut(1024) {
            half[512..].fill(0);
        }
        write_at(&f, buf, off as u64)
            .map_err(|e| format!("512-byte device: write of {len} at {off}: {e}"))?;
        model[off..off + len].copy_from_slice(buf);
        off += len + 512;
        round += 1;
    }
    let small_chunks = parallel_parts(&dev)?;
    ensure(small_chunks > 0, || {
        "512-byte device, unaligned 197 KiB writes: no part went to another CPU".to_string()
    })?;
    verify_model(&f, &model, PAGE as usize, "512-byte device, 4 KiB reads")?;
    verify_model(&f, &model, MIB as usize, "512-byte device, 1 MiB reads")?;
    consistent(&dev)?;
    println!(
        "# {chunks} chunks of big bios done on the other CPU ({small_chunks} on the 512-byte \
         device); every byte read back as written"
    );
    drop(f);
    dev.destroy()
}

/// A compressed device with a backing device: ext2 with real files on a zstd device, flushed
/// through a journal; the image holds plain data, so the backing disk itself checks clean with
/// e2fsck; a restore may pick another algorithm (lz4) and loads lazily into it; a file written
/// then is flushed too; restored once more without compression, every file reads back the
/// same.
pub fn compress_backing_roundtrip() -> TestResult {
    use crate::backing::{restore, DISK};
    ensure(crate::harness::is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let dev = Device::create_compressed(64 * MIB, 4096, RXDSK_COMPRESS_ZSTD, 0)?;
    cmd_ok("rxdskctl", &["attach", "--journal", "48M", &dev.path, DISK])?;
    let files = format!(
        "set -e; mke2fs -q -F -b 4096 {d}; mkdir -p /mnt/c; mount -t ext2 {d} /mnt/c; \
         mkdir /mnt/c/bin; cp /usr/bin/* /mnt/c/bin/ 2>/dev/null || true; \
         du -sk /mnt/c/bin | awk '$1 < 2048 {{ exit 1 }}'; \
         (cd /mnt/c && find bin -type f | sort | xargs sha256sum) > /tmp/c.sums; umount /mnt/c",
        d = dev.path
    );
    cmd_ok("sh", &["-c", &files])?;
    let c = consistent(&dev)?;
    ensure(c.compr_data_size < c.orig_data_size, || {
        format!("real files did not compress: {c:?}")
    })?;
    cmd_ok("rxdskctl", &["flush", &dev.path])?;
    ensure(dev.info()?.dirty_pages == 0, || {
        "dirty after the flush".into()
    })?;
    // The image is plain data: the disk itself holds a clean filesystem.
    cmd_ok("e2fsck", &["-fn", DISK])?;
    cmd_ok("rxdskctl", &["detach", &dev.path])?;
    dev.destroy()?;
    let check = |d: &Device| {
        cmd_ok(
            "sh",
            &["-c", &format!("set -e; mount -t ext2 -o ro {} /mnt/c; cd /mnt/c; sha256sum -c /tmp/c.sums > /dev/null; cd /; umount /mnt/c", d.path)],
        )
    };
    let lz4 = restore(&["--compress", "lz4"])?;
    ensure(lz4.info()?.unloaded_pages > 0, || {
        "the restore loaded everything at once".into()
    })?;
    check(&lz4)?;
    let c = consistent(&lz4)?;
    ensure(
        c.algorithm == RXDSK_COMPRESS_LZ4
            && c.orig_data_size > 0
            && c.compr_data_size < c.orig_data_size,
        || format!("restored into lz4: {c:?}"),
    )?;
    // Changes after a compressed restore are tracked and flushed like any others.
    let more = format!(
        "set -e; mount -t ext2 {d} /mnt/c; cp /usr/bin/rxdskctl /mnt/c/after-restore; \
         (cd /mnt/c && sha256sum after-restore) >> /tmp/c.sums; umount /mnt/c",
        d = lz4.path
    );
    cmd_ok("sh", &["-c", &more])?;
    ensure(lz4.info()?.dirty_pages > 0, || {
        "writes after a compressed restore are not dirty".into()
    })?;
    cmd_ok("rxdskctl", &["flush", &lz4.path])?;
    cmd_ok("rxdskctl", &["detach", &lz4.path])?;
    lz4.destroy()?;
    let plain = restore(&["--preload"])?;
    ensure(plain.compr_stats().is_err(), || {
        "restored without --compress, yet compressed".into()
    })?;
    check(&plain)?;
    cmd_ok("rxdskctl", &["detach", &plain.path])?;
    plain.destroy()
}
