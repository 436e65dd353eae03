//! Backing devices (issue "export to a physical disk"), on the suite's scratch virtio disk
//! (/dev/vda, a fresh sparse image each run): attach, flush, restore with every byte checked,
//! discards reaching the image, the image readable at the device's offsets without rxdsk,
//! refusals, and a failing backing device (fail_make_request) leaving an interrupted flush
//! that a restore refuses.

use crate::blk::{self, open_direct, read_at, write_at, AlignedBuf, Expect, MIB, PAGE};
use crate::harness::{cmd, cmd_ok, ensure, is_block_device, TestResult};
use crate::rxdsk::Device;
use rxdsk_ioctl::*;

pub const DISK: &str = "/dev/vda";
const SIZE: u64 = 64 * MIB;

fn rxdskctl(args: &[&str]) -> Result<crate::harness::Output, String> {
    cmd("rxdskctl", args)
}

/// `rxdskctl create --backing DISK [more]`: the restored device.
pub fn restore(more: &[&str]) -> Result<Device, String> {
    restore_from(DISK, more)
}

/// [`restore`] from `disk`.
pub fn restore_from(disk: &str, more: &[&str]) -> Result<Device, String> {
    let mut args = vec!["create", "--backing", disk];
    args.extend_from_slice(more);
    let out = cmd_ok("rxdskctl", &args)?;
    let path = out.stdout.trim();
    let id: u32 = path
        .strip_prefix("/dev/rxd")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("create --backing printed {path:?}"))?;
    let dev = Device::adopt(id);
    dev.wait_for_node()?;
    Ok(dev)
}

fn inspect() -> Result<serde_json::Value, String> {
    let out = cmd_ok("rxdskctl", &["inspect", DISK, "-J"])?;
    serde_json::from_str(&out.stdout).map_err(|e| format!("inspect -J: {e}: {}", out.stdout))
}

/// What the device must hold after the test's writes: the pattern of `seed` below 32 MiB,
/// the pattern of `seed2` over [8, 12) MiB, zeros over the discarded [16, 20) MiB and above.
fn expected(seed: u64, seed2: u64) -> impl Fn(u64) -> Expect {
    move |at| {
        if (8 * MIB..12 * MIB).contains(&at) {
            Expect::Pattern(seed2)
        } else if (16 * MIB..20 * MIB).contains(&at) || at >= 32 * MIB {
            Expect::Zeros
        } else {
            Expect::Pattern(seed)
        }
    }
}

pub fn backing_flush_restore() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let (seed, seed2) = (0xBAC0, 0xBAC1);
    let dev = Device::create(SIZE, 4096)?;
    {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 0, 32 * MIB, seed)?;
    }
    cmd_ok("rxdskctl", &["attach", &dev.path, DISK])?;
    let info = dev.info()?;
    ensure(
        info.flags & RXDSK_FLAG_BACKED != 0 && info.dirty_pages == 8192,
        || format!("after attach: {info:?} (want BACKED and 8192 dirty pages)"),
    )?;
    let v = inspect()?;
    ensure(v["state"] == "flushing" && v["generation"] == 0, || {
        format!("a fresh attach must not look like a valid image: {v}")
    })?;
    // Resize and non-forced destroy are refused while attached with unflushed data.
    ensure(
        dev.resize(2 * SIZE, 0) == Err(nix::errno::Errno::EBUSY),
        || "resize of a backed device was not EBUSY".into(),
    )?;
    let d = rxdskctl(&["destroy", &dev.path])?;
    ensure(
        d.status == 1 && d.stderr.contains("not yet flushed"),
        || format!("destroy with unflushed data: {} {:?}", d.status, d.stderr),
    )?;
    let out = cmd_ok("rxdskctl", &["flush", &dev.path])?;
    ensure(out.stdout.contains("generation 1"), || {
        format!("flush printed {:?}", out.stdout)
    })?;
    ensure(dev.info()?.dirty_pages == 0, || {
        "dirty pages left after a flush".into()
    })?;
    // Change some pages, discard others, flush again.
    {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 8 * MIB, 4 * MIB, seed2)?;
        blk::discard(&f, 16 * MIB, 4 * MIB).map_err(|e| format!("discard: {e}"))?;
    }
    ensure(dev.info()?.dirty_pages == 2048, || {
        format!(
            "{} dirty pages after 1024 written and 1024 discarded",
            dev.info().map(|i| i.dirty_pages).unwrap_or(0)
        )
    })?;
    let out = cmd_ok("rxdskctl", &["flush", "--all", "-J"])?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}"))?;
    ensure(
        v["flushed"][0]["generation"] == 2 && v["flushed"][0]["pages"] == 2048,
        || format!("flush --all -J: {v}"),
    )?;
    let v = inspect()?;
    ensure(
        v["state"] == "clean"
            && v["generation"] == 2
            && v["size"] == SIZE
            && v["block-size"] == 4096,
        || format!("inspect after the flush: {v}"),
    )?;
    let s = dev.stats()?;
    ensure(
        s.backing_flushes == 2 && s.flush_generation == 2 && s.written_back_bytes >= 36 * MIB,
        || format!("stats: {s:?}"),
    )?;
    // The image is readable without rxdsk, at the device's offsets.
    {
        let raw = open_direct(DISK, false)?;
        blk::verify_range(&raw, 0, SIZE, &expected(seed, seed2))
            .map_err(|e| format!("{DISK} read directly: {e}"))?;
    }
    cmd_ok("rxdskctl", &["detach", &dev.path])?;
    ensure(dev.info()?.flags & RXDSK_FLAG_BACKED == 0, || {
        "still backed after detach".into()
    })?;
    dev.destroy()?;
    // Restore: same size and block size, every byte back, clean, attached.
    let back = restore(&[])?;
    let info = back.info()?;
    ensure(
        info.size_bytes == SIZE
            && info.logical_block_size == 4096
            && info.flags & RXDSK_FLAG_BACKED != 0
            && info.dirty_pages == 0,
        || format!("restored: {info:?}"),
    )?;
    {
        let f = open_direct(&back.path, false)?;
        blk::verify_range(&f, 0, SIZE, &expected(seed, seed2))
            .map_err(|e| format!("restored device: {e}"))?;
    }
    // Zero pages and discarded ranges stored nothing: 28 MiB of data.
    ensure(back.pages()? == 28 * MIB / PAGE, || {
        format!("restored device holds {} pages", back.pages().unwrap_or(0))
    })?;
    // A second attach of the same disk is refused: it is held exclusively.
    let other = Device::create(SIZE, 4096)?;
    let a = rxdskctl(&["attach", &other.path, DISK])?;
    ensure(a.status == 1 && a.stderr.contains("busy"), || {
        format!("second attach: {a:?}", a = a.stderr)
    })?;
    other.destroy()?;
    cmd_ok("rxdskctl", &["detach", &back.path])?;
    back.destroy()
}

/// Sets fail_make_request for the disk: after `space` bytes pass, every request fails.
struct FailDisk;

impl FailDisk {
    fn enable(space: u64) -> Result<Self, String> {
        let fmr = "/sys/kernel/debug/fail_make_request";
        let set = |k: &str, v: &str| {
            std::fs::write(format!("{fmr}/{k}"), v).map_err(|e| format!("{fmr}/{k}: {e}"))
        };
        set("verbose", "0")?;
        set("interval", "1")?;
        set("times", "-1")?;
        set("space", &space.to_string())?;
        set("probability", "100")?;
        std::fs::write("/sys/block/vda/make-it-fail", "1")
            .map_err(|e| format!("make-it-fail: {e}"))?;
        Ok(FailDisk)
    }
}

impl Drop for FailDisk {
    fn drop(&mut self) {
        let _ = std::fs::write("/sys/block/vda/make-it-fail", "0");
        let _ = std::fs::write("/sys/kernel/debug/fail_make_request/probability", "0");
    }
}

/// A failing backing device: the flush fails with EIO after its header went out, so the image
/// says "interrupted"; the changes stay dirty, the device keeps working, a restore is refused
/// (naming the generation) unless forced, and a later flush succeeds.
pub fn backing_failure_and_torn_image() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let (seed, seed2) = (0xFA11, 0xFA12);
    let dev = Device::create(SIZE, 4096)?;
    let f = open_direct(&dev.path, true)?;
    blk::write_pattern(&f, 0, 32 * MIB, seed)?;
    cmd_ok("rxdskctl", &["attach", &dev.path, DISK])?;
    cmd_ok("rxdskctl", &["flush", &dev.path])?;
    blk::write_pattern(&f, 8 * MIB, 4 * MIB, seed2)?;
    blk::discard(&f, 16 * MIB, 4 * MIB).map_err(|e| format!("discard: {e}"))?;
    let dirty = dev.info()?.dirty_pages;
    let errors_before = dev.stats()?.backing_errors;
    let failed = {
        // The FLUSHING header (4 KiB) passes, the data does not (injection starts once
        // the budget is no longer larger than a request).
        let _fail = FailDisk::enable(PAGE + 1)?;
        rxdskctl(&["flush", &dev.path])?
    };
    ensure(
        failed.status == 1 && failed.stderr.contains("I/O error"),
        || {
            format!(
                "flush on a failing disk: exit {} {:?}",
                failed.status, failed.stderr
            )
        },
    )?;
    let s = dev.stats()?;
    ensure(
        dev.info()?.dirty_pages == dirty
            && s.backing_errors > errors_before
            && s.flush_generation == 1,
        || {
            format!(
                "after the failed flush: dirty {} (want {dirty}), {s:?}",
                dev.info().map(|i| i.dirty_pages).unwrap_or(0)
            )
        },
    )?;
    // The RAM device keeps working.
    let mut page = AlignedBuf::zeroed(PAGE as usize)?;
    blk::fill_keyed(&mut page[..], 5, 5);
    write_at(&f, &page[..], 40 * MIB).map_err(|e| format!("write after the failure: {e}"))?;
    let mut back = AlignedBuf::zeroed(PAGE as usize)?;
    read_at(&f, &mut back[..], 40 * MIB).map_err(|e| format!("read: {e}"))?;
    ensure(back[..] == page[..], || {
        "the device lost a write after the backing failure".into()
    })?;
    let v = inspect()?;
    ensure(
        v["state"] == "flushing" && v["flushing-generation"] == 2,
        || format!("the interrupted flush is not visible in the image: {v}"),
    )?;
    // Let go of the device, losing the changes (as a power cut would), then restore.
    drop(f);
    {
        let _fail = FailDisk::enable(0)?;
        let d = rxdskctl(&["detach", &dev.path])?;
        ensure(
            d.status == 1 && dev.info()?.flags & RXDSK_FLAG_BACKED != 0,
            || {
                format!(
                    "detach while the flush fails: exit {} {:?}",
                    d.status, d.stderr
                )
            },
        )?;
        cmd_ok("rxdskctl", &["detach", "--discard-dirty", &dev.path])?;
    }
    dev.destroy()?;
    let refused = rxdskctl(&["create", "--backing", DISK])?;
    ensure(
        refused.status == 1 && refused.stderr.contains("generation 2"),
        || {
            format!(
                "restore of a torn image: exit {} {:?}",
                refused.status, refused.stderr
            )
        },
    )?;
    let forced = restore(&["--force"])?;
    {
        // Nothing of the failed flush reached the disk: generation 1's data is all there.
        let f = open_direct(&forced.path, false)?;
        blk::verify_range(&f, 0, SIZE, &|at| {
            if at < 32 * MIB {
                Expect::Pattern(seed)
            } else {
                Expect::Zeros
            }
        })
        .map_err(|e| format!("forced restore: {e}"))?;
    }
    // A later flush commits the image again.
    let out = cmd_ok("rxdskctl", &["flush", &forced.path])?;
    ensure(out.stdout.contains("generation 2"), || {
        format!("flush after the failure: {:?}", out.stdout)
    })?;
    ensure(inspect()?["state"] == "clean", || {
        "not clean after a good flush".into()
    })?;
    cmd_ok("rxdskctl", &["detach", &forced.path])?;
    forced.destroy()
}

/// A journaled flush is atomic. A failure before its commit (injected into the journal
/// writes) leaves the previous image, which a restore gives back exactly, without --force; a
/// failure after the commit (injected into the copy in place) leaves the new image in the
/// journal, which the restore replays. A dirty set larger than the journal is flushed in
/// place, not atomically, and says so.
pub fn backing_journal_atomic() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let (seed, seed2) = (0x10A1, 0x10A2);
    let old = |at: u64| {
        if at < 32 * MIB {
            Expect::Pattern(seed)
        } else {
            Expect::Zeros
        }
    };
    let new = expected(seed, seed2);
    // 2048 changes: 1024 pages of data over [8, 12) MiB, 1024 discarded over [16, 20) MiB.
    let change = |dev: &Device| -> TestResult {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 8 * MIB, 4 * MIB, seed2)?;
        blk::discard(&f, 16 * MIB, 4 * MIB).map_err(|e| format!("discard: {e}"))?;
        let dirty = dev.info()?.dirty_pages;
        ensure(dirty == 2048, || format!("{dirty} dirty pages, want 2048"))
    };
    let dev = Device::create(SIZE, 4096)?;
    {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 0, 32 * MIB, seed)?;
    }
    cmd_ok("rxdskctl", &["attach", "--journal", "16M", &dev.path, DISK])?;
    let v = inspect()?;
    ensure(
        v["journal"] == 16 * MIB && v["journal-pages"] == 4088,
        || format!("inspect after attach --journal 16M: {v}"),
    )?;
    ensure(dev.info()?.journal_bytes == 16 * MIB, || {
        "INFO journal_bytes".into()
    })?;
    cmd_ok("rxdskctl", &["flush", &dev.path])?;
    change(&dev)?;

    // Failure before the commit: 100 pages into the journal.
    let failed = {
        let _fail = FailDisk::enable(100 * PAGE + 1)?;
        rxdskctl(&["flush", &dev.path])?
    };
    ensure(failed.status == 1, || {
        format!(
            "flush on a failing disk: exit {} {:?}",
            failed.status, failed.stderr
        )
    })?;
    let v = inspect()?;
    ensure(v["state"] == "clean" && v["generation"] == 1, || {
        format!("a flush failing before its commit must leave generation 1 clean: {v}")
    })?;
    ensure(dev.info()?.dirty_pages == 2048, || {
        "the failed flush lost dirty pages".into()
    })?;
    // As after a power cut: the changes are gone (the disk fails the detach's flush too);
    // the restore needs no --force.
    {
        let _fail = FailDisk::enable(0)?;
        cmd_ok("rxdskctl", &["detach", "--discard-dirty", &dev.path])?;
    }
    dev.destroy()?;
    let back = restore(&[])?;
    {
        let f = open_direct(&back.path, false)?;
        blk::verify_range(&f, 0, SIZE, &old).map_err(|e| format!("previous image: {e}"))?;
    }

    // Failure after the commit. Budget: the journal (1024 data pages, 4 table blocks), the
    // commit header, the replay's reads (header, table, data), then 100 pages in place.
    change(&back)?;
    let failed = {
        let _fail = FailDisk::enable((1024 + 4 + 1 + 1 + 4 + 1024 + 100) * PAGE + 1)?;
        rxdskctl(&["flush", &back.path])?
    };
    ensure(failed.status == 1, || {
        format!(
            "flush failing in place: exit {} {:?}",
            failed.status, failed.stderr
        )
    })?;
    let v = inspect()?;
    ensure(
        v["state"] == "journaled" && v["flushing-generation"] == 2 && v["journal-entries"] == 2048,
        || format!("a flush failing after its commit must leave generation 2 journaled: {v}"),
    )?;
    ensure(back.info()?.dirty_pages == 0, || {
        "changes committed to the journal still count as dirty".into()
    })?;
    // Power cut: nothing more reaches the disk; the restore replays the journal.
    back.destroy()?;
    let replayed = restore(&[])?;
    {
        let f = open_direct(&replayed.path, false)?;
        blk::verify_range(&f, 0, SIZE, &new).map_err(|e| format!("replayed image: {e}"))?;
    }
    let v = inspect()?;
    ensure(v["state"] == "clean" && v["generation"] == 2, || {
        format!("after the replay: {v}")
    })?;

    // A good journaled flush says it was atomic; one larger than the journal does not.
    {
        let f = open_direct(&replayed.path, true)?;
        blk::write_pattern(&f, 0, MIB, seed2)?;
    }
    let out = cmd_ok("rxdskctl", &["flush", &replayed.path])?;
    ensure(out.stdout.contains("(atomic)"), || {
        format!("small flush: {:?}", out.stdout)
    })?;
    {
        let f = open_direct(&replayed.path, true)?;
        blk::write_pattern(&f, 0, 24 * MIB, seed)?;
    }
    let out = cmd_ok("rxdskctl", &["flush", "-J", &replayed.path])?;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("flush -J: {e}"))?;
    ensure(
        v["flushed"][0]["atomic"] == false && v["flushed"][0]["pages"] == 6144,
        || format!("a flush larger than the journal: {v}"),
    )?;
    let s = replayed.stats()?;
    ensure(s.atomic_flushes == 1 && s.backing_flushes == 2, || {
        format!("{s:?}")
    })?;
    cmd_ok("rxdskctl", &["detach", &replayed.path])?;
    replayed.destroy()
}

/// Reads the whole device.
fn read_all(path: &str) -> Result<Vec<u8>, String> {
    let f = open_direct(path, false)?;
    let mut all = Vec::new();
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    for at in (0..SIZE).step_by(MIB as usize) {
        read_at(&f, &mut buf[..], at).map_err(|e| format!("read {path} at {at}: {e}"))?;
        all.extend_from_slice(&buf[..]);
    }
    Ok(all)
}

/// A restore reads pages from the backing device on first access: a read miss loads its
/// 16-page cluster, a write or discard of an unloaded page loads it first, racing readers all
/// see the image's data; `list` shows the backing device, mode and what is left to load.
/// `--preload` loads everything before it returns and gives the same bytes.
pub fn backing_lazy_restore() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let (seed, seed2) = (0x1A2E, 0x1A2F);
    let pages = SIZE / PAGE;
    let dev = Device::create(SIZE, 4096)?;
    {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 0, 32 * MIB, seed)?;
    }
    cmd_ok("rxdskctl", &["attach", "--journal", "1M", &dev.path, DISK])?;
    cmd_ok("rxdskctl", &["flush", &dev.path])?;
    dev.destroy()?;

    let lazy = restore(&[])?;
    let (info, s) = (lazy.info()?, lazy.stats()?);
    // Only what the kernel's partition scan read (its first cluster) came in.
    let scanned = s.backing_reads;
    ensure(
        scanned <= 16 && info.unloaded_pages == pages - scanned,
        || {
            format!(
                "fresh lazy restore: unloaded {} reads {}",
                info.unloaded_pages, s.backing_reads
            )
        },
    )?;
    let out = cmd_ok(
        "rxdskctl",
        &["list", "-J", "-o", "name,backing,mode,journal,unloaded"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
    let row = &v["rxdsk"][0];
    ensure(
        row["backing"] == DISK
            && row["mode"] == "writeback"
            && row["journal"] == MIB
            && row["unloaded"] == SIZE - scanned * PAGE,
        || format!("list: {v}"),
    )?;
    // One read miss: its aligned 16-page cluster comes in, nothing else.
    let f = open_direct(&lazy.path, true)?;
    let miss = MIB + 2 * PAGE;
    blk::verify_range(&f, miss, PAGE, &|_| Expect::Pattern(seed))
        .map_err(|e| format!("miss: {e}"))?;
    let (info, s) = (lazy.info()?, lazy.stats()?);
    ensure(
        s.backing_reads == scanned + 16 && info.unloaded_pages == pages - scanned - 16,
        || {
            format!(
                "after one read miss: {} reads, {} unloaded",
                s.backing_reads, info.unloaded_pages
            )
        },
    )?;
    // A write and a discard of unloaded pages.
    blk::write_pattern(&f, 20 * MIB, 8 * PAGE, seed2)?;
    blk::discard(&f, 24 * MIB, 4 * MIB).map_err(|e| format!("discard: {e}"))?;
    let expect = move |at: u64| {
        if (20 * MIB..20 * MIB + 8 * PAGE).contains(&at) {
            Expect::Pattern(seed2)
        } else if (24 * MIB..28 * MIB).contains(&at) || at >= 32 * MIB {
            Expect::Zeros
        } else {
            Expect::Pattern(seed)
        }
    };
    // Racing readers over pages still unloaded.
    std::thread::scope(|scope| -> TestResult {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let path = lazy.path.clone();
                scope.spawn(move || -> TestResult {
                    let f = open_direct(&path, false)?;
                    let mut state = 0x5EED + t;
                    for _ in 0..150 {
                        let page = blk::splitmix64(&mut state) % pages;
                        blk::verify_range(&f, page * PAGE, PAGE, &expect)
                            .map_err(|e| format!("reader {t}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a reader panicked".to_string())??;
        }
        Ok(())
    })?;
    blk::verify_range(&f, 0, SIZE, &expect).map_err(|e| format!("lazy device: {e}"))?;
    let info = lazy.info()?;
    ensure(
        info.unloaded_pages == 0 && info.dirty_pages == 8 + 1024,
        || format!("after reading everything: {info:?}"),
    )?;
    drop(f);
    let lazy_bytes = read_all(&lazy.path)?;
    cmd_ok("rxdskctl", &["flush", &lazy.path])?;
    lazy.destroy()?;

    let preloaded = restore(&["--preload"])?;
    let (info, s) = (preloaded.info()?, preloaded.stats()?);
    ensure(info.unloaded_pages == 0 && s.backing_reads == pages, || {
        format!(
            "--preload: unloaded {} reads {}",
            info.unloaded_pages, s.backing_reads
        )
    })?;
    ensure(read_all(&preloaded.path)? == lazy_bytes, || {
        "--preload and the lazy restore differ".into()
    })?;
    ensure(preloaded.stats()?.backing_reads == pages, || {
        "reads of a preloaded device went to the backing device".into()
    })?;
    cmd_ok("rxdskctl", &["detach", &preloaded.path])?;
    preloaded.destroy()
}

/// DETACH of a lazily restored device first loads what is left, so the device keeps every
/// byte without its backing device.
pub fn backing_lazy_detach() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let seed = 0xDE7A;
    let dev = Device::create(SIZE, 512)?;
    {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 4 * MIB, 16 * MIB, seed)?;
    }
    cmd_ok("rxdskctl", &["attach", &dev.path, DISK])?;
    cmd_ok("rxdskctl", &["flush", &dev.path])?;
    dev.destroy()?;
    let lazy = restore(&[])?;
    ensure(lazy.info()?.logical_block_size == 512, || {
        "block size not restored".into()
    })?;
    // A 512-byte write into an unloaded page keeps the rest of the page.
    let f = open_direct(&lazy.path, true)?;
    let mut sector = AlignedBuf::zeroed(512)?;
    blk::fill_keyed(&mut sector[..], 7, 7);
    write_at(&f, &sector[..], 8 * MIB + 1024).map_err(|e| format!("write: {e}"))?;
    cmd_ok("rxdskctl", &["detach", &lazy.path])?;
    let info = lazy.info()?;
    ensure(
        info.unloaded_pages == 0 && info.flags & RXDSK_FLAG_BACKED == 0,
        || format!("after detach: {info:?}"),
    )?;
    let mut back = AlignedBuf::zeroed(512)?;
    read_at(&f, &mut back[..], 8 * MIB + 1024).map_err(|e| format!("read: {e}"))?;
    ensure(back[..] == sector[..], || {
        "the sector write was lost".into()
    })?;
    blk::verify_range(&f, 8 * MIB, 1024, &|_| Expect::Pattern(seed))
        .map_err(|e| format!("the rest of the page: {e}"))?;
    blk::verify_range(&f, 12 * MIB, SIZE - 12 * MIB, &|at| {
        if at < 20 * MIB {
            Expect::Pattern(seed)
        } else {
            Expect::Zeros
        }
    })
    .map_err(|e| format!("after detach: {e}"))?;
    drop(f);
    lazy.destroy()
}

/// Writethrough: attach writes the whole image; every write, discard and write-zeroes
/// completes only once it is on the backing device (read here from the disk itself, at the
/// same offsets), so nothing is ever dirty; fio verify with racing writers; a failing disk
/// fails the write, leaves the page dirty for a flush, and the device keeps working; a
/// restore comes back in writethrough mode.
pub fn backing_writethrough() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let (seed, seed2) = (0x3771, 0x3772);
    let dev = Device::create(SIZE, 4096)?;
    let f = open_direct(&dev.path, true)?;
    blk::write_pattern(&f, 0, 16 * MIB, seed)?;
    cmd_ok(
        "rxdskctl",
        &["attach", "--mode", "writethrough", &dev.path, DISK],
    )?;
    let info = dev.info()?;
    ensure(
        info.flags & RXDSK_FLAG_WRITETHROUGH != 0 && info.dirty_pages == 0,
        || format!("after attach --mode writethrough: {info:?}"),
    )?;
    let v = inspect()?;
    ensure(
        v["mode"] == "writethrough" && v["state"] == "clean" && v["generation"] == 1,
        || format!("inspect: {v}"),
    )?;
    // Each change is on the disk when the call returns.
    blk::write_pattern(&f, 4 * MIB, 4 * MIB, seed2)?;
    blk::discard(&f, 8 * MIB, 2 * MIB).map_err(|e| format!("discard: {e}"))?;
    blk::zeroout(&f, 12 * MIB, MIB).map_err(|e| format!("write-zeroes: {e}"))?;
    ensure(dev.info()?.dirty_pages == 0, || {
        "writethrough left dirty pages".into()
    })?;
    let on_disk = move |at: u64| {
        if (4 * MIB..8 * MIB).contains(&at) {
            Expect::Pattern(seed2)
        } else if (8 * MIB..10 * MIB).contains(&at)
            || (12 * MIB..13 * MIB).contains(&at)
            || at >= 16 * MIB
        {
            Expect::Zeros
        } else {
            Expect::Pattern(seed)
        }
    };
    {
        let disk = open_direct(DISK, false)?;
        blk::verify_range(&disk, 0, SIZE, &on_disk).map_err(|e| format!("the disk: {e}"))?;
    }
    // Racing writers, verified.
    crate::datapath::fio_verify(&dev.path, "fio-backing.fio", 32 * MIB)?;
    ensure(dev.info()?.dirty_pages == 0, || {
        "fio left dirty pages".into()
    })?;
    // A failing disk fails the write; the page stays dirty; the device still works.
    let mut page = AlignedBuf::zeroed(PAGE as usize)?;
    blk::fill_keyed(&mut page[..], 9, 9);
    let failed = {
        let _fail = FailDisk::enable(0)?;
        write_at(&f, &page[..], 60 * MIB)
    };
    ensure(failed.is_err(), || {
        "a write on a failing disk succeeded".into()
    })?;
    ensure(dev.info()?.dirty_pages == 1, || {
        format!(
            "after the failed write: {} dirty",
            dev.info().map(|i| i.dirty_pages).unwrap_or(0)
        )
    })?;
    write_at(&f, &page[..], 60 * MIB).map_err(|e| format!("write after the failure: {e}"))?;
    ensure(dev.info()?.dirty_pages == 0, || {
        "the retried write left the page dirty".into()
    })?;
    let all = read_all(&dev.path)?;
    drop(f);
    // The image is current without a flush: restore it.
    dev.destroy()?;
    let back = restore(&[])?;
    ensure(back.info()?.flags & RXDSK_FLAG_WRITETHROUGH != 0, || {
        "restored without writethrough".into()
    })?;
    ensure(read_all(&back.path)? == all, || {
        "the restored device differs".into()
    })?;
    cmd_ok("rxdskctl", &["detach", &back.path])?;
    back.destroy()
}

/// Polls `f` every 100 ms until it is true or `secs` seconds passed.
fn wait_until(secs: u64, mut f: impl FnMut() -> Result<bool, String>) -> Result<bool, String> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f()? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// `--flush-interval`: changes reach the image without a flush command, the interval is
/// kept in the image, and a restored device flushes on its own too.
pub fn backing_flush_interval() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let seed = 0x1E7F;
    let dev = Device::create(SIZE, 4096)?;
    cmd_ok(
        "rxdskctl",
        &[
            "attach",
            "--journal",
            "4M",
            "--flush-interval",
            "1",
            &dev.path,
            DISK,
        ],
    )?;
    let clean = |dev: &Device, generation: u64| -> Result<bool, String> {
        let (i, s) = (dev.info()?, dev.stats()?);
        Ok(i.dirty_pages == 0 && s.flush_generation > generation)
    };
    ensure(wait_until(30, || clean(&dev, 0))?, || {
        "the first automatic flush did not happen".into()
    })?;
    let before = dev.stats()?.flush_generation;
    {
        let f = open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 0, MIB, seed)?;
    }
    ensure(wait_until(30, || clean(&dev, before))?, || {
        format!("no automatic flush after a write: {:?}", dev.stats())
    })?;
    let v = inspect()?;
    ensure(v["flush-interval"] == 1 && v["state"] == "clean", || {
        format!("{v}")
    })?;
    dev.destroy()?;
    let back = restore(&[])?;
    let before = back.stats()?.flush_generation;
    {
        let f = open_direct(&back.path, true)?;
        blk::verify_range(&f, 0, MIB, &|_| Expect::Pattern(seed)).map_err(|e| e.to_string())?;
        blk::write_pattern(&f, MIB, MIB, seed)?;
    }
    ensure(wait_until(30, || clean(&back, before))?, || {
        "a restored device did not flush on its own".into()
    })?;
    cmd_ok("rxdskctl", &["detach", &back.path])?;
    back.destroy()
}

/// fio verify in writeback mode; after a flush and a restore, fio verifies (verify-only) that
/// the restored device holds every block it wrote.
pub fn backing_writeback_fio() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let dev = Device::create(SIZE, 4096)?;
    cmd_ok("rxdskctl", &["attach", "--journal", "40M", &dev.path, DISK])?;
    crate::datapath::fio_verify(&dev.path, "fio-backing.fio", 32 * MIB)?;
    ensure(dev.info()?.dirty_pages > 0, || {
        "fio's writes are not dirty".into()
    })?;
    cmd_ok("rxdskctl", &["flush", &dev.path])?;
    ensure(dev.info()?.dirty_pages == 0, || {
        "dirty after the flush".into()
    })?;
    dev.destroy()?;
    let back = restore(&[])?;
    let job = format!("{}/fio-backing.fio", crate::datapath::GUEST_DIR);
    let out = crate::harness::cmd_timeout(
        "fio",
        &["--verify_only", &job],
        &[("RXDSK_DEV", back.path.as_str())],
        std::time::Duration::from_secs(300),
    )?;
    ensure(out.status == 0, || {
        format!(
            "fio --verify_only on the restored device: exit {} {}",
            out.status, out.stderr
        )
    })?;
    cmd_ok("rxdskctl", &["detach", &back.path])?;
    back.destroy()
}
