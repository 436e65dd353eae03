//! The hardening issue's tests: opens racing non-forced destroy and shrink, shrink cutting into
//! live I/O with shared pages, the memory limit under racing writers, the page cache after a
//! forced shrink, REQ_NOWAIT, slab fault injection, CREATE with an id, flush accounting, and
//! a large destroy without stall reports.

use crate::blk::{self, open_direct, read_at, write_at, AlignedBuf, MIB, PAGE};
use crate::harness::{cmd_ok, ensure, wait_until, TestResult};
use crate::rxdsk::{dev_path, Control, Device};
use nix::errno::Errno;
use rxdsk_ioctl::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// One opener racing the control thread: every open that succeeds must keep a device that
/// works and keeps its size until it is closed, because nobody forces anything.
fn opener(path: String, stop: Arc<AtomicBool>, busy: Arc<AtomicU64>) -> TestResult {
    let mut buf = AlignedBuf::zeroed(4096)?;
    while !stop.load(Ordering::Relaxed) {
        let f = match open_direct(&path, false) {
            Ok(f) => f,
            // Claimed (EBUSY) or already gone: both are fine for an open.
            Err(e) if e.contains("Device or resource busy") => {
                busy.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(_) => continue,
        };
        let size = blk::size64(&f)?;
        read_at(&f, &mut buf[..], 0).map_err(|e| {
            format!("read from an open {path} failed ({e}): destroyed under a non-forced open")
        })?;
        let after = blk::size64(&f)?;
        ensure(after == size, || {
            format!("{path} shrank from {size} to {after} while open, without force")
        })?;
    }
    Ok(())
}

/// Item 1: opens race a non-forced shrink and a non-forced destroy; the control side gets
/// EBUSY or succeeds, and a successful open never sees the device shrink or die.
pub fn open_races_claim() -> TestResult {
    let control = Control::open()?;
    let busy = Arc::new(AtomicU64::new(0));
    let (mut refused, mut shrunk) = (0u64, 0u64);
    let rounds = 60;
    for round in 0..rounds {
        let id = control
            .create(16 * MIB, 4096, 0, 0)
            .map_err(|e| format!("CREATE: {e}"))?;
        let dev = Device::adopt(id);
        dev.wait_for_node()?;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (p, s, b) = (dev.path.clone(), stop.clone(), busy.clone());
                std::thread::spawn(move || opener(p, s, b))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut size = 16 * MIB;
        let outcome = loop {
            if Instant::now() > deadline {
                break Err(format!("round {round}: no DESTROY succeeded within 30 s"));
            }
            if size > 4 * MIB {
                match control.resize(id, size - 4 * MIB, 0) {
                    Ok(()) => {
                        size -= 4 * MIB;
                        shrunk += 1;
                    }
                    Err(Errno::EBUSY) => refused += 1,
                    Err(e) => break Err(format!("shrink: {e}")),
                }
            }
            match control.destroy(id, 0) {
                Ok(()) => break Ok(()),
                Err(Errno::EBUSY) => refused += 1,
                Err(e) => break Err(format!("DESTROY: {e}")),
            }
        };
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().map_err(|_| "opener panicked".to_string())??;
        }
        match outcome {
            Ok(()) => dev.forget(),
            Err(e) => return Err(e),
        }
    }
    println!(
        "# {rounds} rounds: {shrunk} shrinks, {refused} EBUSY for the control side, {} for opens",
        busy.load(Ordering::Relaxed)
    );
    ensure(refused > 0, || {
        "the control side never met an opener: the race did not happen".into()
    })
}

/// Races: shrinks cut into live I/O over the whole device; writers share pages (different
/// sectors of one page) and whole-page zero writes race data writes.
pub fn races_shrink_cuts_live_io() -> TestResult {
    const SIZE: u64 = 32 * MIB;
    const FLOOR: u64 = 8 * MIB;
    let dev = Device::create(SIZE, 512)?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(5));
    let mut workers = Vec::new();
    // Two sector writers share every page: writer k owns sector k of each page. Pages below
    // FLOOR must always verify; above it a read may also find zeros (cut by a shrink), and
    // I/O may fail with EIO/ENOSPC or end early while the device is small.
    for k in 0..2u64 {
        let (path, stop, start) = (dev.path.clone(), stop.clone(), start.clone());
        workers.push(std::thread::spawn(move || -> TestResult {
            let f = open_direct(&path, true)?;
            let mut w = AlignedBuf::zeroed(512)?;
            let mut r = AlignedBuf::zeroed(512)?;
            let mut state = 0x5EED + k;
            let (mut verified, mut cut) = (0u64, 0u64);
            start.wait();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                // Not the first MiB: the data/zero pair below owns it.
                let page = 256 + blk::splitmix64(&mut state) % (SIZE / PAGE - 256);
                let off = page * PAGE + k * 512;
                blk::fill_keyed(&mut w[..], 40 + k, i);
                i += 1;
                let wrote = write_at(&f, &w[..], off);
                let read = read_at(&f, &mut r[..], off);
                match (wrote, read) {
                    (Ok(()), Ok(())) if r[..] == w[..] => verified += 1,
                    (Ok(()), Ok(())) if off >= FLOOR && r.iter().all(|&b| b == 0) => cut += 1,
                    (Ok(()), Ok(())) => {
                        return Err(format!("sector {k} of page {page}: other data read back"))
                    }
                    (Err(e), _) | (_, Err(e)) if off < FLOOR => {
                        return Err(format!("I/O below every shrink point failed: {e}"))
                    }
                    (Err(e), _) | (_, Err(e))
                        if matches!(errno_of(&e), nix::libc::EIO | nix::libc::ENOSPC)
                            || e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        cut += 1
                    }
                    (Err(e), _) | (_, Err(e)) => return Err(format!("unexpected error: {e}")),
                }
            }
            println!("# sector writer {k}: {verified} verified, {cut} cut by a shrink");
            ensure(verified > 0, || "nothing verified".into())
        }));
    }
    // A data writer and a zero writer share a page set: a page reads all zeros or exactly
    // the data writer's last page, never a mix and never older data.
    for role in 0..2u64 {
        let (path, stop, start) = (dev.path.clone(), stop.clone(), start.clone());
        workers.push(std::thread::spawn(move || -> TestResult {
            let f = open_direct(&path, true)?;
            let mut w = AlignedBuf::zeroed(PAGE as usize)?;
            let mut r = AlignedBuf::zeroed(PAGE as usize)?;
            start.wait();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                // Pages 0..16 of the first MiB, below every shrink point.
                let off = (i % 16) * PAGE;
                i += 1;
                if role == 1 {
                    w.fill(0);
                    write_at(&f, &w[..], off).map_err(|e| format!("zero write: {e}"))?;
                    continue;
                }
                blk::fill_keyed(&mut w[..], 77, i);
                write_at(&f, &w[..], off).map_err(|e| format!("data write: {e}"))?;
                read_at(&f, &mut r[..], off).map_err(|e| format!("read: {e}"))?;
                if r[..] != w[..] && r.iter().any(|&b| b != 0) {
                    return Err(format!("page at {off}: neither our data nor zeros"));
                }
            }
            Ok(())
        }));
    }
    // The resizer: forced shrinks into the live region and grows back.
    let id = dev.id;
    let (rstop, rstart) = (stop.clone(), start.clone());
    let resizer = std::thread::spawn(move || -> TestResult {
        let c = Control::open()?;
        rstart.wait();
        let mut n = 0u64;
        while !rstop.load(Ordering::Relaxed) && n < 400 {
            let size = FLOOR + (n * 7 % 24) * MIB;
            c.resize(id, size, RXDSK_FLAG_FORCE)
                .map_err(|e| format!("shrink to {size}: {e}"))?;
            c.resize(id, SIZE, 0).map_err(|e| format!("grow: {e}"))?;
            n += 1;
        }
        println!("# {n} shrink/grow cycles");
        Ok(())
    });
    let mut failures = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("worker panicked".into()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    match resizer.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(e),
        Err(_) => failures.push("resizer panicked".into()),
    }
    ensure(failures.is_empty(), || failures.join("\n"))?;
    dev.destroy()
}

/// Item 5: two writers race for the same new page at `limit - 1` pages: both succeed (the
/// loser writes into the winner's page); the limit is never passed; the next new page is
/// ENOSPC.
pub fn mem_limit_racing_writers() -> TestResult {
    const LIMIT: u64 = 64;
    let dev = Device::create_with(64 * MIB, 512, LIMIT * PAGE, 0)?;
    let f = Arc::new(open_direct(&dev.path, true)?);
    let mut page = AlignedBuf::zeroed(PAGE as usize)?;
    blk::fill_keyed(&mut page[..], 3, 3);
    for p in 0..LIMIT - 1 {
        write_at(&f, &page[..], p * PAGE).map_err(|e| format!("fill page {p}: {e}"))?;
    }
    let rounds = 300u64;
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2u64)
        .map(|k| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                let mut w = AlignedBuf::zeroed(512)?;
                let mut enospc = 0;
                for r in 0..rounds {
                    blk::fill_keyed(&mut w[..], 9 + k, r);
                    barrier.wait();
                    // Both write into page LIMIT - 1 + r, which does not exist yet.
                    let off = (LIMIT - 1 + r) * PAGE + k * 512;
                    match write_at(&f, &w[..], off) {
                        Ok(()) => {}
                        Err(e) if errno_of(&e) == nix::libc::ENOSPC => enospc += 1,
                        Err(e) => return Err(format!("racing write: {e}")),
                    }
                    barrier.wait();
                    if k == 0 {
                        // Free the page again for the next round.
                        blk::discard(&f, (LIMIT - 1 + r) * PAGE, PAGE)
                            .map_err(|e| format!("discard: {e}"))?;
                    }
                    barrier.wait();
                }
                Ok(enospc)
            })
        })
        .collect();
    let mut enospc = 0;
    for r in racers {
        enospc += r.join().map_err(|_| "racer panicked".to_string())??;
    }
    ensure(enospc == 0, || {
        format!(
            "{enospc} of {} racing writes failed with ENOSPC although the winner's page took them",
            2 * rounds
        )
    })?;
    let used = dev.info()?.used_bytes;
    ensure(used <= LIMIT * PAGE, || {
        format!("used {used} bytes, over the {} limit", LIMIT * PAGE)
    })?;
    // At the limit exactly: one more new page, then ENOSPC for the next.
    write_at(&f, &page[..], 40 * MIB).map_err(|e| format!("page {LIMIT}: {e}"))?;
    match write_at(&f, &page[..], 41 * MIB) {
        Err(e) if errno_of(&e) == nix::libc::ENOSPC => {}
        other => {
            return Err(format!(
                "page {} past the limit: {other:?}, want ENOSPC",
                LIMIT + 1
            ))
        }
    }
    drop(f);
    dev.destroy()
}

/// Item 6: after a forced shrink and a grow, buffered readers of an open device see zeros
/// past the old cut, as O_DIRECT readers do.
pub fn shrink_drops_stale_page_cache() -> TestResult {
    let dev = Device::create(16 * MIB, 4096)?;
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev.path)
        .map_err(|e| format!("open {}: {e}", dev.path))?;
    let data = vec![0xA5u8; MIB as usize];
    held.write_all_at(&data, 12 * MIB)
        .map_err(|e| format!("buffered write: {e}"))?;
    held.sync_all().map_err(|e| format!("fsync: {e}"))?;
    let mut back = vec![0u8; MIB as usize];
    held.read_exact_at(&mut back, 12 * MIB)
        .map_err(|e| format!("buffered read: {e}"))?;
    ensure(back == data, || "buffered read-back differs".into())?;
    dev.resize(8 * MIB, RXDSK_FLAG_FORCE)
        .map_err(|e| format!("resize 8M --force: {e}"))?;
    dev.resize(16 * MIB, 0)
        .map_err(|e| format!("resize 16M: {e}"))?;
    held.read_exact_at(&mut back, 12 * MIB)
        .map_err(|e| format!("buffered read after shrink+grow: {e}"))?;
    let stale = back.iter().filter(|&&b| b != 0).count();
    ensure(stale == 0, || {
        format!("{stale} stale bytes in the page cache at 12 MiB after shrink to 8M and grow")
    })?;
    let direct = open_direct(&dev.path, false)?;
    let mut d = AlignedBuf::zeroed(MIB as usize)?;
    read_at(&direct, &mut d[..], 12 * MIB).map_err(|e| format!("O_DIRECT read: {e}"))?;
    ensure(d.iter().all(|&b| b == 0), || {
        "O_DIRECT read not zeros".into()
    })?;
    drop((held, direct));
    dev.destroy()
}

/// The REQ_NOWAIT path: with every non-sleeping page allocation of this task failing, an
/// RWF_NOWAIT O_DIRECT write to a new page gets EAGAIN (BLK_STS_AGAIN), and the same write
/// without the flag succeeds.
pub fn nowait_write_eagain() -> TestResult {
    let dev = Device::create(16 * MIB, 4096)?;
    let f = open_direct(&dev.path, true)?;
    let mut buf = AlignedBuf::zeroed(PAGE as usize)?;
    blk::fill_keyed(&mut buf[..], 21, 21);
    let before = dev.stats()?;
    let code = crate::faults::in_failing_child(crate::faults::Fault::PageAllocNoWait, || {
        let iov = [std::io::IoSlice::new(&buf[..])];
        // SAFETY: `f` is an open fd and `iov` describes a live buffer for the call.
        let rc = unsafe {
            nix::libc::pwritev2(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                iov.as_ptr().cast(),
                1,
                (5 * PAGE) as i64,
                nix::libc::RWF_NOWAIT,
            )
        };
        if rc < 0 && Errno::last() == Errno::EAGAIN {
            0
        } else {
            println!(
                "# RWF_NOWAIT write under failing GFP_NOWAIT allocations returned {rc} ({})",
                Errno::last()
            );
            30
        }
    })?;
    ensure(code == 0, || format!("the NOWAIT writer exited {code}"))?;
    let after = dev.stats()?;
    ensure(
        after.alloc_failures > before.alloc_failures && after.pages == 0,
        || {
            format!(
                "alloc_failures {} -> {}, pages {}",
                before.alloc_failures, after.alloc_failures, after.pages
            )
        },
    )?;
    write_at(&f, &buf[..], 5 * PAGE).map_err(|e| format!("the same write without NOWAIT: {e}"))?;
    let mut back = AlignedBuf::zeroed(PAGE as usize)?;
    read_at(&f, &mut back[..], 5 * PAGE).map_err(|e| format!("read: {e}"))?;
    ensure(back[..] == buf[..], || "data differs".into())?;
    drop(f);
    dev.destroy()
}

/// Slab fault injection: XArray node allocations fail (failslab), the write fails with EIO,
/// nothing is held or leaked, and the device works afterwards.
pub fn fault_injection_slab() -> TestResult {
    // 16 GiB: room for pages 1 GiB apart.
    let dev = Device::create(16 << 30, 4096)?;
    let f = open_direct(&dev.path, true)?;
    let mut buf = AlignedBuf::zeroed(PAGE as usize)?;
    blk::fill_keyed(&mut buf[..], 31, 31);
    write_at(&f, &buf[..], 0).map_err(|e| format!("setup write: {e}"))?;
    let before = dev.stats()?;
    // Pages far apart: each needs new XArray nodes (64 slots a node).
    let code = crate::faults::in_failing_child(crate::faults::Fault::Slab, || {
        let mut bad = 0;
        for p in 1..9u64 {
            match write_at(&f, &buf[..], p * 64 * 64 * 64 * PAGE) {
                Err(e) if errno_of(&e) == nix::libc::EIO || errno_of(&e) == nix::libc::ENOMEM => {}
                other => {
                    println!("# write {p} under failslab: {other:?}, want EIO/ENOMEM");
                    bad += 1;
                }
            }
        }
        if bad == 0 {
            0
        } else {
            31
        }
    })?;
    ensure(code == 0, || format!("the failslab writer exited {code}"))?;
    let after = dev.stats()?;
    ensure(after.pages == before.pages, || {
        format!(
            "{} pages held after failed inserts, {} before",
            after.pages, before.pages
        )
    })?;
    ensure(after.alloc_failures > before.alloc_failures, || {
        "no allocation failure reached the driver: XArray node allocation was not exercised".into()
    })?;
    for p in 1..9u64 {
        write_at(&f, &buf[..], p * 64 * 64 * 64 * PAGE)
            .map_err(|e| format!("write after the injection: {e}"))?;
    }
    ensure(dev.stats()?.pages == before.pages + 8, || {
        "new pages not stored afterwards".into()
    })?;
    drop(f);
    dev.destroy()
}

/// CREATE with an id (ABI 1.1): the device gets it, a taken id is EEXIST, a bad one EINVAL;
/// `rxdskctl create --id` and `rxdskctl` alone (a listing).
pub fn create_with_id() -> TestResult {
    let control = Control::open()?;
    let mut req = RxdskCreate {
        size_bytes: 8 * MIB,
        logical_block_size: 4096,
        flags: RXDSK_CREATE_WITH_ID,
        id: 37,
        ..Default::default()
    };
    control
        .create_raw(&mut req)
        .map_err(|e| format!("CREATE id 37: {e}"))?;
    let dev = Device::adopt(req.id);
    ensure(req.id == 37, || format!("got id {}", req.id))?;
    dev.wait_for_node()?;
    let mut again = RxdskCreate { id: 37, ..req };
    ensure(control.create_raw(&mut again) == Err(Errno::EEXIST), || {
        "a second CREATE of id 37 was not EEXIST".into()
    })?;
    for (id, flags) in [(RXDSK_MAX_DEVICES, RXDSK_CREATE_WITH_ID), (5, 0)] {
        let mut bad = RxdskCreate { id, flags, ..req };
        ensure(control.create_raw(&mut bad) == Err(Errno::EINVAL), || {
            format!("CREATE id {id} flags {flags:#x} was not EINVAL")
        })?;
    }
    let out = cmd_ok("rxdskctl", &["create", "-s", "4M", "--id", "rxd41"])?;
    ensure(out.stdout.trim() == dev_path(41), || {
        format!("create --id printed {:?}", out.stdout)
    })?;
    let other = Device::adopt(41);
    let listing = cmd_ok("rxdskctl", &[])?;
    ensure(
        listing.stdout.contains("/dev/rxd37") && listing.stdout.contains("/dev/rxd41"),
        || format!("`rxdskctl` alone printed {:?}", listing.stdout),
    )?;
    other.destroy()?;
    dev.destroy()
}

/// Item 4: a plain RAM device advertises no volatile write cache, so the block layer
/// completes flushes itself and `flushes` stays 0, as its documentation says.
pub fn flush_accounting() -> TestResult {
    let dev = Device::create(8 * MIB, 4096)?;
    let id = dev.id;
    let cache = std::fs::read_to_string(format!("/sys/block/rxd{id}/queue/write_cache"))
        .map_err(|e| format!("write_cache: {e}"))?;
    ensure(cache.trim() == "write through", || {
        format!("write_cache is {:?}, want \"write through\"", cache.trim())
    })?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&dev.path)
        .map_err(|e| format!("open: {e}"))?;
    for _ in 0..10 {
        f.write_all_at(&[1u8; 4096], 0)
            .map_err(|e| format!("write: {e}"))?;
        f.sync_all().map_err(|e| format!("fsync: {e}"))?;
    }
    let s = dev.stats()?;
    ensure(s.flushes == 0 && s.writes > 0, || {
        format!(
            "flushes {} after 10 fsyncs (want 0: none reach a write-through device), writes {}",
            s.flushes, s.writes
        )
    })?;
    drop(f);
    dev.destroy()
}

/// Item 2: destroying and shrinking a device with many pages, and discarding them, yields the
/// CPU and reports no soft lockup or RCU stall with the detectors at their most sensitive.
pub fn large_free_no_stall() -> TestResult {
    let set = |path: &str, v: &str| std::fs::write(path, v).map_err(|e| format!("{path}: {e}"));
    let old_thresh =
        std::fs::read_to_string("/proc/sys/kernel/watchdog_thresh").unwrap_or_default();
    set("/proc/sys/kernel/watchdog_thresh", "1")?;
    let stall = "/sys/module/rcupdate/parameters/rcu_cpu_stall_timeout";
    let old_stall = std::fs::read_to_string(stall).ok();
    if old_stall.is_some() {
        set(stall, "3")?;
    }
    let result = (|| -> TestResult {
        let mem = blk::mem_available()?;
        let size = (mem / 3).min(1 << 30) & !(MIB - 1);
        for step in ["destroy", "shrink", "discard"] {
            let dev = Device::create(size, 4096)?;
            let f = open_direct(&dev.path, true)?;
            let mut chunk = AlignedBuf::zeroed(MIB as usize)?;
            blk::fill_keyed(&mut chunk[..], 8, 8);
            for m in 0..size / MIB {
                write_at(&f, &chunk[..], m * MIB).map_err(|e| format!("fill: {e}"))?;
            }
            let pages = dev.stats()?.pages;
            let t = Instant::now();
            match step {
                "destroy" => {
                    drop(f);
                    dev.destroy()?;
                }
                "shrink" => {
                    dev.resize(4096, RXDSK_FLAG_FORCE)
                        .map_err(|e| format!("shrink: {e}"))?;
                    drop(f);
                    dev.destroy()?;
                }
                _ => {
                    blk::discard(&f, 0, size).map_err(|e| format!("discard: {e}"))?;
                    ensure(
                        wait_until(Duration::from_secs(30), || {
                            dev.pages().is_ok_and(|p| p == 0)
                        }),
                        || "discarded pages not given back within 30 s".into(),
                    )?;
                    drop(f);
                    dev.destroy()?;
                }
            }
            println!("# {step} of {pages} pages: {} ms", t.elapsed().as_millis());
        }
        // Let the detectors look (they sample every second).
        std::thread::sleep(Duration::from_secs(4));
        let dmesg = cmd_ok("dmesg", &[])?.stdout;
        let bad: Vec<&str> = dmesg
            .lines()
            .filter(|l| {
                l.contains("soft lockup")
                    || l.contains("rcu_sched self-detected stall")
                    || l.contains("rcu: INFO")
            })
            .collect();
        ensure(bad.is_empty(), || {
            format!("stall reports: {}", bad.join("\n"))
        })
    })();
    let _ = set("/proc/sys/kernel/watchdog_thresh", old_thresh.trim());
    if let Some(v) = old_stall {
        let _ = set(stall, v.trim());
    }
    result
}

/// The round's one kernel configuration change: each option the backing-device, compression,
/// packaging and NVMe-oF work needs is really in the guest kernel, seen by its effect.
pub fn kernel_config_round2() -> TestResult {
    let exists = |p: &str| std::path::Path::new(p).exists();
    let file_has = |p: &str, needle: &str| {
        std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.contains(needle)))
    };
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let symbol = |s: &str| {
        kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(s))
    };
    let mut missing = Vec::new();
    let mut check = |what: &str, ok: bool| {
        if !ok {
            missing.push(what.to_string());
        }
    };
    check("PCI", exists("/sys/bus/pci"));
    check("VIRTIO_PCI", exists("/sys/bus/pci/drivers/virtio-pci"));
    check("VIRTIO_BLK", exists("/sys/bus/virtio/drivers/virtio_blk"));
    check("VIRTIO_NET", exists("/sys/bus/virtio/drivers/virtio_net"));
    check(
        "HW_RANDOM_VIRTIO",
        exists("/sys/bus/virtio/drivers/virtio_rng"),
    );
    check("BLK_DEV_LOOP", exists("/dev/loop-control"));
    check(
        "BLK_DEV_DM",
        exists("/dev/mapper/control") || symbol("dm_get_device"),
    );
    check("DM_FLAKEY", symbol("flakey_map"));
    check("NET + UNIX", exists("/proc/net/unix"));
    check("INET", exists("/proc/net/tcp"));
    check("IPV6", exists("/proc/net/if_inet6"));
    check("EXT4_FS", file_has("/proc/filesystems", "ext4"));
    check("AUTOFS_FS", file_has("/proc/filesystems", "autofs"));
    check(
        "INOTIFY_USER",
        exists("/proc/sys/fs/inotify/max_user_watches"),
    );
    check("FHANDLE", symbol("__x64_sys_name_to_handle_at"));
    for ns in ["uts", "ipc", "pid", "net"] {
        check(
            &format!("{}_NS", ns.to_uppercase()),
            exists(&format!("/proc/self/ns/{ns}")),
        );
    }
    check(
        "SECCOMP_FILTER",
        exists("/proc/sys/kernel/seccomp/actions_avail"),
    );
    check(
        "BPF_SYSCALL",
        exists("/proc/sys/kernel/unprivileged_bpf_disabled"),
    );
    check("CGROUP_BPF", symbol("__cgroup_bpf_run_filter_skb"));
    check(
        "CGROUP_PIDS",
        file_has("/sys/fs/cgroup/cgroup.controllers", "pids"),
    );
    check("UNIX98_PTYS", exists("/dev/ptmx"));
    check(
        "RTC_CLASS",
        symbol("rtc_class_open") || exists("/sys/class/rtc"),
    );
    check("KCMP", symbol("__x64_sys_kcmp"));
    check(
        "TMPFS_XATTR",
        symbol("shmem_xattr_handler_get") || symbol("shmem_initxattrs"),
    );
    // The NVMe-oF modules load, with their dependencies, and the target appears in configfs.
    for m in ["nvmet", "nvmet-tcp", "nvme-loop", "nvme-tcp"] {
        let out = crate::harness::cmd("modprobe", &[m])?;
        check(
            &format!("{m} (modprobe: {})", out.stderr.trim()),
            out.status == 0,
        );
    }
    let _ = crate::harness::cmd("mount", &["-t", "configfs", "none", "/sys/kernel/config"]);
    check("NVME_TARGET configfs", exists("/sys/kernel/config/nvmet"));
    check("NVME_FABRICS", exists("/dev/nvme-fabrics"));
    for m in [
        "nvme_loop",
        "nvme_tcp",
        "nvmet_tcp",
        "nvmet",
        "nvme_fabrics",
    ] {
        let _ = crate::harness::cmd("rmmod", &[m]);
    }
    let _ = crate::harness::cmd("umount", &["/sys/kernel/config"]);
    ensure(missing.is_empty(), || {
        format!("missing from the guest kernel: {}", missing.join(", "))
    })
}

/// Swap on rxdsk under global memory pressure, not only a memcg limit: first the page cache is
/// filled past all free memory (buffered reads of a null_blk device that stores nothing), then
/// the swap hog runs in its memory cgroup. rxdsk's GFP_NOIO page allocations for the swapped-out
/// pages are not charged to that cgroup: they find no free memory and must reclaim the page
/// cache globally, with lockdep watching on the debug kernel.
pub fn swap_global_pressure() -> TestResult {
    use crate::datapath::{swap_stress, SwapParams};
    use std::io::Read;
    let load = crate::harness::cmd(
        "modprobe",
        &["null_blk", "nr_devices=1", "gb=8", "memory_backed=0"],
    )?;
    ensure(load.status == 0, || {
        format!("modprobe null_blk: {}", load.stderr.trim())
    })?;
    let result = (|| -> TestResult {
        ensure(
            wait_until(Duration::from_secs(5), || {
                crate::harness::is_block_device("/dev/nullb0")
            }),
            || "/dev/nullb0 did not appear".into(),
        )?;
        let avail = blk::mem_available()?;
        let mut cache = File::open("/dev/nullb0").map_err(|e| format!("/dev/nullb0: {e}"))?;
        let mut buf = vec![0u8; MIB as usize];
        for _ in 0..(avail + 256 * MIB) / MIB {
            cache
                .read_exact(&mut buf)
                .map_err(|e| format!("reading /dev/nullb0: {e}"))?;
        }
        let free = blk::meminfo("MemFree")?;
        let total = blk::meminfo("MemTotal")?;
        ensure(free < total / 10, || {
            format!(
                "the page cache left {} MiB of {} free: no global pressure",
                free / MIB,
                total / MIB
            )
        })?;
        let dev = Device::create(512 * MIB, 4096)?;
        let steal0 = blk::vmstat("pgsteal_file")?;
        // The debug kernel's standard hog (80 MiB) needs too little to be sure of taking the
        // 64 MiB of page cache asked below: this one swaps as much as before.
        let mut p = SwapParams::standard(Duration::from_secs(300));
        p.hog_bytes = p.hog_bytes.max(112 * MIB);
        let r = swap_stress(&dev.path, &p)?;
        let stolen = (blk::vmstat("pgsteal_file")? - steal0) * PAGE;
        let s = dev.stats()?;
        println!(
            "# {} MiB free before; swapped out {} MiB through rxdsk ({} MiB written) while {} MiB \
             of page cache were reclaimed",
            free / MIB,
            r.pswpout_bytes / MIB,
            s.write_bytes / MIB,
            stolen / MIB
        );
        ensure(stolen >= 64 * MIB, || {
            format!(
                "only {} MiB of page cache reclaimed: rxdsk's allocations met no global pressure",
                stolen / MIB
            )
        })?;
        drop(cache);
        dev.destroy()
    })();
    let _ = crate::harness::cmd("rmmod", &["null_blk"]);
    result
}

/// This round's one kernel configuration change: dm-log-writes (crash-point tests), dm-cache
/// with smq and bcache (the tiering bench's peers), NVMe-oF in-band authentication on both
/// sides and TLS, each seen by its effect in the guest kernel.
pub fn kernel_config_round3() -> TestResult {
    let exists = |p: &str| std::path::Path::new(p).exists();
    let mut missing = Vec::new();
    let mut check = |what: &str, ok: bool| {
        if !ok {
            missing.push(what.to_string());
        }
    };
    // Built in: their symbols, before any module loads.
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let symbol = |s: &str| {
        kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(s))
    };
    check("DM_LOG_WRITES", symbol("log_writes_map"));
    check("DM_CACHE", symbol("cache_map"));
    check("DM_CACHE_SMQ", symbol("smq_create"));
    check("BCACHE", exists("/sys/fs/bcache"));
    check("TLS", exists("/proc/net/tls_stat"));
    check("KEYS", exists("/proc/key-users"));
    // Both sides' authentication live in modules (nvmet; nvme-core under nvme-tcp).
    for m in ["nvmet", "nvme-tcp"] {
        let load = crate::harness::cmd("modprobe", &[m])?;
        check(
            &format!("{m} (modprobe: {})", load.stderr.trim()),
            load.status == 0,
        );
    }
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let loaded = |s: &str| {
        kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(s))
    };
    check("NVME_TARGET_AUTH", loaded("nvmet_setup_auth"));
    check("NVME_HOST_AUTH", loaded("nvme_auth_negotiate"));
    for m in ["nvme_tcp", "nvme_fabrics", "nvme_core", "nvmet"] {
        let _ = crate::harness::cmd("rmmod", &[m]);
    }
    ensure(missing.is_empty(), || {
        format!("missing from the guest kernel: {}", missing.join(", "))
    })
}
