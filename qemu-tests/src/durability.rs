//! Durability under live use (issue 22): a flush writes the device as it was at one instant,
//! also while a writer runs, and the races that used to lose a change do not.
//!
//! The writer is the seeded one of [`crate::stamp`]: op k stamps one block with k (or
//! discards a few), one op at a time, so the device's state at any instant is the state after
//! some prefix of the ops. A flush that starts when `lo` ops have completed and returns when
//! at most `hi` have started must leave an image whose state is a prefix P with lo <= P <= hi.
//!
//! Backing devices here are brd RAM disks (`/dev/ram0`..): fast under TCG, and discarded
//! (zeros) before each use.

use crate::blk::{self, open_direct, read_at, AlignedBuf, MIB, PAGE};
use crate::harness::{cmd, cmd_ok, cmd_timeout, ensure, is_block_device, wait_until, TestResult};
use crate::logwrites::{CrashPlan, Discard, Log, Replayer};
use crate::rxdsk::{Control, Device};
use crate::stamp::{self, History, Workload};
use rxdsk_ioctl::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// brd RAM disks for backing devices: this many, of this size.
const RAM_DISKS: usize = 8;
const RAM_DISK_BYTES: u64 = 128 * MIB;
/// The stamped devices: 16 MiB, as in the check that found the torn flushes.
const SIZE: u64 = 16 * MIB;
const JOURNAL: &str = "20M";

/// `/dev/ramN`, loaded on first use and discarded (all zeros) before it is handed out.
pub fn ram_disk(n: usize) -> Result<String, String> {
    let path = format!("/dev/ram{n}");
    if !is_block_device(&path) {
        let kib = (RAM_DISK_BYTES / 1024).to_string();
        cmd_ok(
            "modprobe",
            &[
                "brd",
                &format!("rd_nr={RAM_DISKS}"),
                &format!("rd_size={kib}"),
            ],
        )?;
        ensure(
            wait_until(Duration::from_secs(5), || is_block_device(&path)),
            || format!("{path} did not appear after modprobe brd"),
        )?;
    }
    let f = open_direct(&path, true)?;
    let size = blk::size64(&f)?;
    blk::discard(&f, 0, size).map_err(|e| format!("BLKDISCARD {path}: {e}"))?;
    Ok(path)
}

/// `dmsetup` without udev (the guest has none): it makes the /dev/mapper nodes itself.
pub fn dmsetup(args: &[&str]) -> Result<crate::harness::Output, String> {
    let mut all = vec!["--noudevsync"];
    all.extend_from_slice(args);
    let out = cmd_timeout(
        "dmsetup",
        &all,
        &[("DM_DISABLE_UDEV", "1")],
        Duration::from_secs(60),
    )?;
    if out.status != 0 {
        return Err(format!("dmsetup {}: {}", args.join(" "), out.stderr.trim()));
    }
    Ok(out)
}

fn rxdskctl(args: &[&str]) -> Result<String, String> {
    Ok(cmd_ok("rxdskctl", args)?.stdout.trim().to_string())
}

/// The device that `rxdskctl create ...` printed the node of.
fn adopt_printed(path: &str) -> Result<Device, String> {
    let id: u32 = path
        .strip_prefix("/dev/rxd")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("rxdskctl printed {path:?}, not a device"))?;
    let dev = Device::adopt(id);
    dev.wait_for_node()?;
    Ok(dev)
}

/// A fresh device of `SIZE`, compressed with lz4 or plain.
fn create(compressed: bool) -> Result<Device, String> {
    let mut args = vec!["create", "--size", "16M"];
    if compressed {
        args.extend_from_slice(&["--compress", "lz4"]);
    }
    adopt_printed(&rxdskctl(&args)?)
}

/// The seeded writer, in a thread of its own, until stopped or `max` ops are done.
pub struct Running {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<u64, String>>>,
}

impl Running {
    pub fn start(path: &str, w: Workload, max: u64) -> Result<Self, String> {
        let mut writer = stamp::Writer::open(path, &w)?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (stop2, done2) = (stop.clone(), done.clone());
        let handle = std::thread::spawn(move || {
            for (k, op) in w.ops().take(max as usize) {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                writer.apply(k, op)?;
                done2.store(k, Ordering::Release);
            }
            Ok(done2.load(Ordering::Acquire))
        });
        Ok(Self {
            stop,
            done,
            handle: Some(handle),
        })
    }

    /// Ops completed so far: the op in progress, if any, is the next one.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Stops the writer; returns how many ops it completed.
    pub fn finish(mut self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err("the writer thread panicked".into()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Whether `observed` is the state after a prefix P of `w`'s first `n` ops with
/// `lo <= P <= hi`; the prefixes found, or why not.
fn check_prefix(
    w: &Workload,
    n: u64,
    lo: u64,
    hi: u64,
    observed: &[stamp::Class],
) -> Result<Vec<u64>, String> {
    let history = History::new(w, n);
    let ranges = stamp::check(&history, observed).map_err(|d| d.to_string())?;
    let inside: Vec<u64> = ranges
        .iter()
        .filter_map(|r| {
            let (a, b) = (*r.start().max(&lo), *r.end().min(&hi));
            (a <= b).then_some(a)
        })
        .collect();
    if inside.is_empty() {
        return Err(format!(
            "the image is the state after ops {ranges:?}, not after a prefix within {lo}..={hi} \
             (completed before the flush started ..= started before it returned)"
        ));
    }
    Ok(inside)
}

/// Flushes while the writer runs, `rounds` times, and checks after each flush that the
/// backing device's data area is one instant of the device: a prefix between the ops done
/// when the flush started and those started when it returned.
fn flushes_are_instants(compressed: bool, journal: bool, seed: u64, rounds: u32) -> TestResult {
    let disk = ram_disk(0)?;
    let dev = create(compressed)?;
    let mut attach = vec!["attach"];
    if journal {
        attach.extend_from_slice(&["--journal", JOURNAL]);
    }
    attach.extend_from_slice(&[&dev.path, &disk]);
    rxdskctl(&attach)?;
    let w = Workload::new(seed, SIZE / PAGE);
    let writer = Running::start(&dev.path, w, u64::MAX)?;
    // Let the writer get going so that every flush has a dirty set to cut.
    wait_until(Duration::from_secs(30), || writer.done() >= 2000);
    let mut report = Vec::new();
    for round in 0..rounds {
        let lo = writer.done();
        rxdskctl(&["flush", &dev.path])?;
        let hi = writer.done() + 1;
        let observed = stamp::observe(&disk, &w)?;
        let found = check_prefix(&w, hi, lo, hi, &observed).map_err(|e| {
            format!(
                "round {round} ({} store, journal {journal}): {e}",
                if compressed { "lz4" } else { "plain" }
            )
        })?;
        report.push(format!("{lo}..={hi}: {}", found[0]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = writer.finish()?;
    rxdskctl(&["detach", &dev.path])?;
    dev.destroy()?;
    println!(
        "# {total} ops; each flush an instant (ops done at start..=started at return: prefix): {}",
        report.join(", ")
    );
    Ok(())
}

/// A flush taken while the seeded writer runs writes one instant: plain store, with and
/// without a journal.
pub fn flush_point_in_time_plain() -> TestResult {
    flushes_are_instants(false, true, 0x5EED_0001, 6)?;
    flushes_are_instants(false, false, 0x5EED_0002, 6)
}

/// The same on a compressed (lz4) device.
pub fn flush_point_in_time_compressed() -> TestResult {
    flushes_are_instants(true, true, 0x5EED_0003, 6)?;
    flushes_are_instants(true, false, 0x5EED_0004, 6)
}

/// Reads the first `len` bytes of two block devices (O_DIRECT) and names the first 4 KiB
/// block where they differ.
fn first_difference(a: &str, b: &str, len: u64) -> Result<Option<u64>, String> {
    let (fa, fb) = (open_direct(a, false)?, open_direct(b, false)?);
    let mut ba = AlignedBuf::zeroed(MIB as usize)?;
    let mut bb = AlignedBuf::zeroed(MIB as usize)?;
    let mut at = 0;
    while at < len {
        let n = MIB.min(len - at) as usize;
        read_at(&fa, &mut ba[..n], at).map_err(|e| format!("{a} at {at}: {e}"))?;
        read_at(&fb, &mut bb[..n], at).map_err(|e| format!("{b} at {at}: {e}"))?;
        if let Some(i) = (0..n / PAGE as usize).find(|&i| {
            let r = i * PAGE as usize..(i + 1) * PAGE as usize;
            ba[r.clone()] != bb[r]
        }) {
            return Ok(Some(at / PAGE + i as u64));
        }
        at += n as u64;
    }
    Ok(None)
}

/// Defect 1: a whole-zero write, discard or write-zeroes racing a flush lost its change on
/// the plain store (the hole recorded, the flusher taking the index and copying the page still
/// there, the page removed after: the image kept the old data and nothing was marked). Here a
/// device full of data is erased page by page, in index order (so that flushes running back
/// to back walk the changes right behind the eraser), by discards, write-zeroes and zero
/// writes in turn; after a last flush every page of the image must be zeros.
pub fn erase_races_flush() -> TestResult {
    let disk = ram_disk(1)?;
    let dev = create(false)?;
    rxdskctl(&["attach", &dev.path, &disk])?;
    let pages = SIZE / PAGE;
    let rounds = if crate::harness::debug_kernel() { 2 } else { 4 };
    let (mut erasures, mut flushes) = (0u64, 0u32);
    for round in 0..rounds {
        blk::write_pattern(&open_direct(&dev.path, true)?, 0, SIZE, 0xE4A5 + round)?;
        rxdskctl(&["flush", &dev.path])?;
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = {
            let (stop, id) = (stop.clone(), dev.id);
            std::thread::spawn(move || -> Result<u32, String> {
                // The ioctl itself, back to back (a process per flush would leave gaps).
                let ctl = Control::open()?;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    ctl.flush(id).map_err(|e| format!("FLUSH: {e}"))?;
                    n += 1;
                }
                Ok(n)
            })
        };
        let erased = (|| -> TestResult {
            let f = open_direct(&dev.path, true)?;
            let zeros = AlignedBuf::zeroed(PAGE as usize)?;
            for page in 0..pages {
                let at = page * PAGE;
                match page % 3 {
                    0 => blk::discard(&f, at, PAGE).map_err(|e| format!("discard: {e}"))?,
                    1 => blk::zeroout(&f, at, PAGE).map_err(|e| format!("write-zeroes: {e}"))?,
                    _ => blk::write_at(&f, &zeros, at).map_err(|e| format!("zero write: {e}"))?,
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        flushes += flusher
            .join()
            .map_err(|_| "the flusher panicked".to_string())??;
        erased?;
        erasures += pages;
        rxdskctl(&["flush", &dev.path])?;
        let stale = {
            let f = open_direct(&disk, false)?;
            let mut buf = AlignedBuf::zeroed(SIZE as usize)?;
            read_at(&f, &mut buf, 0).map_err(|e| e.to_string())?;
            let stale: Vec<u64> = buf
                .chunks(PAGE as usize)
                .enumerate()
                .filter(|(_, p)| p.iter().any(|&b| b != 0))
                .map(|(i, _)| i as u64)
                .collect();
            stale
        };
        ensure(stale.is_empty(), || {
            format!(
                "round {round}: after erasing every page while flushes ran and a last flush, {} pages of the image still hold data (first: {:?})",
                stale.len(),
                &stale[..stale.len().min(8)]
            )
        })?;
    }
    rxdskctl(&["detach", &dev.path])?;
    dev.destroy()?;
    println!("# {erasures} erasures raced {flushes} flushes: every one reached the image");
    Ok(())
}

/// Defect 2: ATTACH checked the image's fit against the size without the lock RESIZE takes,
/// so a grow in between made the data overlap the journal or the header. Here grows and
/// shrinks race attaches to a backing device that fits only the small size: whenever a
/// device is attached, its size must fit its backing device.
pub fn resize_races_attach() -> TestResult {
    let disk = ram_disk(2)?;
    // The backing device fits 16 MiB of data plus a 40 MiB journal and the header, not more.
    let small = 16 * MIB;
    let big = 32 * MIB;
    let dev = Device::create(small, 4096)?;
    let stop = Arc::new(AtomicBool::new(false));
    let resizer = {
        let stop = stop.clone();
        let id = dev.id;
        std::thread::spawn(move || -> Result<u32, String> {
            let ctl = Control::open()?;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for size in [big, small] {
                    // EBUSY while attached is the answer to a resize of an attached device.
                    let _ = ctl.resize(id, size, 0);
                }
                n += 1;
            }
            Ok(n)
        })
    };
    let journal = format!("{}", RAM_DISK_BYTES - small - MIB);
    let mut attached = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut bad = None;
    while Instant::now() < deadline && bad.is_none() {
        let out = cmd(
            "rxdskctl",
            &["attach", "--journal", &journal, &dev.path, &disk],
        )?;
        if out.status == 0 {
            attached += 1;
            let size = dev.info()?.size_bytes;
            if size != small {
                bad = Some(size);
            }
            rxdskctl(&["detach", &dev.path])?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let resizes = resizer
        .join()
        .map_err(|_| "the resizer panicked".to_string())??;
    let _ = dev.resize(small, 0);
    dev.destroy()?;
    ensure(bad.is_none(), || {
        format!(
            "a device of {} MiB was attached to a backing device that fits {} MiB of data",
            bad.unwrap_or(0) / MIB,
            small / MIB
        )
    })?;
    ensure(attached > 0, || "no attach succeeded in 8 s".into())?;
    println!("# {attached} attaches raced {resizes} grow/shrink pairs: every attached size fit");
    Ok(())
}

/// Writes an image of `SIZE` with a stamped workload of `ops` ops onto `disk`, flushed and
/// detached: a device to restore lazily.
fn stamped_image(disk: &str, w: &Workload, ops: u64) -> Result<(), String> {
    let dev = create(false)?;
    let writer = Running::start(&dev.path, *w, ops)?;
    let done = writer.finish_when_done()?;
    ensure(done == ops, || {
        format!("the writer did {done} of {ops} ops")
    })?;
    rxdskctl(&["attach", "--journal", JOURNAL, &dev.path, disk])?;
    rxdskctl(&["detach", &dev.path])?;
    dev.destroy()
}

impl Running {
    /// Waits until the writer has done all its ops (or failed).
    pub fn finish_when_done(mut self) -> Result<u64, String> {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err("the writer thread panicked".into()),
        }
    }
}

/// Defect 6: a read of a lazily restored device racing DETACH failed with EIO (its worker
/// decided to load, DETACH loaded everything and let go, the worker found no backing
/// device). Readers race a detach, several rounds: no read may fail, and every block must
/// read as the image holds it.
pub fn reads_race_detach() -> TestResult {
    let disk = ram_disk(3)?;
    let w = Workload::new(0x00DE_7AC4, SIZE / PAGE);
    let ops = 6000;
    stamped_image(&disk, &w, ops)?;
    let history = Arc::new(History::new(&w, ops));
    for round in 0..8 {
        let dev = adopt_printed(&rxdskctl(&["create", "--backing", &disk])?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..3u64 {
            let (stop, path, history) = (stop.clone(), dev.path.clone(), history.clone());
            readers.push(std::thread::spawn(move || -> Result<u64, String> {
                let f = open_direct(&path, false)?;
                let mut buf = AlignedBuf::zeroed(PAGE as usize)?;
                let mut rng = 0x5EAD_0000 + r;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let b = blk::splitmix64(&mut rng) % w.blocks;
                    read_at(&f, &mut buf, b * PAGE)
                        .map_err(|e| format!("read of block {b} failed: {e}"))?;
                    let class = stamp::classify(&buf, w.seed, b);
                    let want = history.state(b, ops).class();
                    if class != want {
                        return Err(format!(
                            "block {b} reads {class:?}, the image holds {want:?}"
                        ));
                    }
                    n += 1;
                }
                Ok(n)
            }));
        }
        // The readers' misses wait for the backing lock while DETACH holds it: DETACH through
        // the ioctl at once (a process would start after the readers loaded every page).
        std::thread::sleep(Duration::from_millis(5));
        let detached = Control::open()?.detach(dev.id);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let mut reads = 0;
        for r in readers {
            reads += r.join().map_err(|_| "a reader panicked".to_string())??;
        }
        detached.map_err(|e| format!("round {round}: DETACH: {e}"))?;
        dev.destroy()?;
        println!("# round {round}: {reads} reads raced the detach of a lazily restored device, none failed");
    }
    Ok(())
}

/// Defect 3: attaching in writethrough mode published the mode after the queue went on, so
/// writes in between completed in RAM only and could miss the initial write-back: a write
/// that completed was not on the disk. Here the writer runs through the attach; once it has
/// stopped (every write completed, nothing flushed since), the image must equal the device.
pub fn writethrough_attach_under_writes() -> TestResult {
    for round in 0..3u64 {
        let disk = ram_disk(4)?;
        let dev = create(false)?;
        let w = Workload::new(0x3A7C_0000 + round, SIZE / PAGE);
        let writer = Running::start(&dev.path, w, u64::MAX)?;
        wait_until(Duration::from_secs(30), || writer.done() >= 500);
        rxdskctl(&["attach", "--mode", "writethrough", &dev.path, &disk])?;
        let at_attach = writer.done();
        wait_until(Duration::from_secs(30), || writer.done() >= at_attach + 500);
        let total = writer.finish()?;
        let diff = first_difference(&dev.path, &disk, SIZE)?;
        rxdskctl(&["detach", &dev.path])?;
        dev.destroy()?;
        ensure(diff.is_none(), || {
            format!("round {round}: after {total} writes through a writethrough attach, the image differs from the device at block {diff:?} (no flush since)")
        })?;
    }
    println!(
        "# writes through a writethrough attach, 3 rounds: every completed write is on the disk"
    );
    Ok(())
}

/// Defect 9: a device could back itself, or two devices each other: a writethrough write
/// waited on its own worker forever. Sizes alone refuse most cycles (a backing device must
/// hold the device and its metadata), but not one made after the fact: A (8 MiB) backed by B
/// (64 MiB) in writethrough mode, B then shrunk by force to 4 MiB, and B attached to A. Every
/// cycle is refused (ELOOP, naming the loop), whatever the mode; a chain that does not loop is
/// fine.
pub fn backing_cycles_refused() -> TestResult {
    let a = Device::create(8 * MIB, 4096)?;
    let b = Device::create(64 * MIB, 4096)?;
    let refused = |args: &[&str], what: &str| -> TestResult {
        let out = cmd_timeout("rxdskctl", args, &[], Duration::from_secs(60))?;
        ensure(out.status != 0, || format!("{what} was accepted"))?;
        ensure(out.stderr.contains("leads back"), || {
            format!(
                "{what}: the error does not name the loop: {}",
                out.stderr.trim()
            )
        })
    };
    rxdskctl(&["attach", "--mode", "writethrough", &a.path, &b.path])?;
    // B is open (A holds it): only a forced shrink makes it small enough to fit in A.
    b.resize(4 * MIB, RXDSK_FLAG_FORCE)
        .map_err(|e| format!("forced shrink of the backing device: {e}"))?;
    refused(
        &["attach", "--mode", "writethrough", &b.path, &a.path],
        "two devices backing each other",
    )?;
    refused(
        &["attach", &b.path, &a.path],
        "two devices backing each other (writeback)",
    )?;
    let d = Device::create(8 * MIB, 4096)?;
    refused(
        &["attach", "--mode", "writethrough", &d.path, &d.path],
        "a device backing itself (writethrough)",
    )?;
    d.destroy()?;
    // A chain that does not loop: B (grown again) backed by C.
    b.resize(64 * MIB, 0).map_err(|e| format!("grow: {e}"))?;
    let c = Device::create(128 * MIB, 4096)?;
    rxdskctl(&["attach", &b.path, &c.path])?;
    rxdskctl(&["flush", &b.path])?;
    // A's image no longer fits in B (shrunk under it): let go without writing it.
    rxdskctl(&["detach", "--discard-dirty", &a.path])?;
    rxdskctl(&["detach", &b.path])?;
    a.destroy()?;
    b.destroy()?;
    c.destroy()?;
    Ok(())
}

/// Defect 5: `rmmod` dropped unflushed data (module exit destroyed every device). While a
/// backing device is attached the module stays loaded; DETACH flushes, and then it unloads.
pub fn unload_refused_while_backed() -> TestResult {
    let disk = ram_disk(5)?;
    let dev = create(false)?;
    rxdskctl(&["attach", &dev.path, &disk])?;
    blk::write_pattern(&open_direct(&dev.path, true)?, 0, MIB, 0x4D0D)?;
    let out = cmd("rmmod", &["rxdsk"])?;
    let loaded = std::path::Path::new("/sys/module/rxdsk").exists();
    if !loaded {
        // Put it back for the tests that follow before failing.
        let _ = cmd("insmod", &[crate::control::MODULE]);
        return Err(
            "rmmod unloaded the module with a backing device attached and data not flushed".into(),
        );
    }
    ensure(out.status != 0, || "rmmod said it succeeded".into())?;
    rxdskctl(&["detach", &dev.path])?;
    let sums = {
        let f = open_direct(&disk, false)?;
        let mut buf = AlignedBuf::zeroed(MIB as usize)?;
        read_at(&f, &mut buf, 0).map_err(|e| e.to_string())?;
        let mut want = AlignedBuf::zeroed(MIB as usize)?;
        blk::fill_pattern(&mut want, 0, 0x4D0D);
        buf[..] == want[..]
    };
    dev.destroy()?;
    ensure(sums, || {
        "DETACH did not leave the written data on the backing device".into()
    })?;
    println!("# rmmod refused while attached: {}", out.stderr.trim());
    Ok(())
}

/// Defect 12: a discard of pages still only on the backing device (a lazy restore) read
/// them all in first. Whole pages are dropped unread, and reach the image as holes.
pub fn discard_unloaded_reads_nothing() -> TestResult {
    let disk = ram_disk(6)?;
    let w = Workload::new(0xD15C_A4D0, SIZE / PAGE);
    stamped_image(&disk, &w, 4000)?;
    let dev = adopt_printed(&rxdskctl(&["create", "--backing", &disk])?)?;
    let before = dev.stats()?.backing_reads;
    let f = open_direct(&dev.path, true)?;
    blk::discard(&f, 0, SIZE).map_err(|e| format!("BLKDISCARD: {e}"))?;
    let after = dev.stats()?.backing_reads;
    let unloaded = dev.info()?.unloaded_pages;
    drop(f);
    rxdskctl(&["flush", &dev.path])?;
    let zeros = stamp::observe(&disk, &w)?
        .iter()
        .all(|c| *c == stamp::Class::Zero);
    rxdskctl(&["detach", &dev.path])?;
    dev.destroy()?;
    ensure(after == before, || {
        format!(
            "the discard read {} pages from the backing device",
            after - before
        )
    })?;
    ensure(unloaded == 0, || {
        format!("{unloaded} pages still marked as only on the backing device")
    })?;
    ensure(zeros, || {
        "the discarded pages did not reach the image as zeros".into()
    })
}

/// Defect 12: the flush interval was unbounded (a jiffies overflow); ATTACH refuses one
/// above a week.
pub fn flush_interval_bounded() -> TestResult {
    let disk = ram_disk(7)?;
    let dev = Device::create(8 * MIB, 4096)?;
    let ctl = Control::open()?;
    let mut req = RxdskAttach {
        id: dev.id,
        flush_interval_secs: RXDSK_MAX_FLUSH_INTERVAL + 1,
        ..Default::default()
    };
    req.path[..disk.len()].copy_from_slice(disk.as_bytes());
    let too_long = ctl.attach(&req);
    req.flush_interval_secs = RXDSK_MAX_FLUSH_INTERVAL;
    let longest = ctl.attach(&req);
    let _ = rxdskctl(&["detach", &dev.path]);
    dev.destroy()?;
    ensure(too_long == Err(nix::errno::Errno::EINVAL), || {
        format!("an interval above a week: {too_long:?}, not EINVAL")
    })?;
    ensure(longest.is_ok(), || {
        format!("an interval of a week: {longest:?}")
    })
}

/// Defect 10: a shrink did not wait for bios deferred to the worker before it removed the
/// pages past the new end, so one could store a page there after. Writes to the end of a
/// lazily restored device (deferred) race a detach and a shrink; grown again, everything
/// past the shrink reads zeros.
pub fn shrink_waits_for_deferred_writes() -> TestResult {
    let disk = ram_disk(3)?;
    let w = Workload::new(0x5412_0000, SIZE / PAGE);
    stamped_image(&disk, &w, 3000)?;
    for round in 0..4 {
        let dev = adopt_printed(&rxdskctl(&["create", "--backing", &disk])?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for t in 0..2u64 {
            let (stop, path) = (stop.clone(), dev.path.clone());
            writers.push(std::thread::spawn(move || {
                let Ok(f) = open_direct(&path, true) else {
                    return 0;
                };
                let Ok(mut buf) = AlignedBuf::zeroed(PAGE as usize) else {
                    return 0;
                };
                buf.fill(0xAB);
                let mut rng = 0x77 + t;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let b = SIZE / PAGE / 2 + blk::splitmix64(&mut rng) % (SIZE / PAGE / 2);
                    // Past the end after the shrink: those fail, as they should.
                    if blk::write_at(&f, &buf, b * PAGE).is_ok() {
                        n += 1;
                    }
                }
                n
            }));
        }
        std::thread::sleep(Duration::from_millis(100));
        rxdskctl(&["detach", &dev.path])?;
        let shrunk = dev.resize(SIZE / 2, RXDSK_FLAG_FORCE);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        for t in writers {
            let _ = t.join();
        }
        shrunk.map_err(|e| format!("round {round}: shrink: {e}"))?;
        dev.resize(SIZE, 0).map_err(|e| format!("grow: {e}"))?;
        let f = open_direct(&dev.path, false)?;
        let mut buf = AlignedBuf::zeroed((SIZE / 2) as usize)?;
        read_at(&f, &mut buf, SIZE / 2).map_err(|e| e.to_string())?;
        let stale = buf
            .chunks(PAGE as usize)
            .position(|p| p.iter().any(|&b| b != 0));
        drop(f);
        dev.destroy()?;
        ensure(stale.is_none(), || {
            format!(
                "round {round}: block {} past the shrink holds data after growing again",
                SIZE / PAGE / 2 + stale.unwrap_or(0) as u64
            )
        })?;
    }
    Ok(())
}

/// Defect 11: a destroy waited for a running automatic flush, and a restore read its image
/// (and replayed its journal), under the registry lock, so every control operation on every
/// device waited too. With two backing devices stalled (suspended dm devices): a device whose
/// automatic flush is stuck is destroyed, and a device is restored from the other; while both
/// wait, LIST, STATS, and CREATE and DESTROY of another device complete.
pub fn control_never_waits_for_io() -> TestResult {
    let (ram, image_ram) = (ram_disk(7)?, ram_disk(6)?);
    let w = Workload::new(0x5741_1000, SIZE / PAGE);
    stamped_image(&image_ram, &w, 2000)?;
    let sectors = (RAM_DISK_BYTES / 512).to_string();
    for (name, dev) in [("rxstall", &ram), ("rxstall2", &image_ram)] {
        let _ = dmsetup(&["remove", name]);
        dmsetup(&[
            "create",
            name,
            "--table",
            &format!("0 {sectors} linear {dev} 0"),
        ])?;
        let node = format!("/dev/mapper/{name}");
        ensure(
            wait_until(Duration::from_secs(5), || is_block_device(&node)),
            || format!("{node} did not appear"),
        )?;
    }
    let dev = create(false)?;
    rxdskctl(&[
        "attach",
        "--flush-interval",
        "1",
        &dev.path,
        "/dev/mapper/rxstall",
    ])?;
    blk::write_pattern(&open_direct(&dev.path, true)?, 0, 4 * MIB, 0x57A1)?;
    dmsetup(&["suspend", "--noflush", "rxstall"])?;
    dmsetup(&["suspend", "--noflush", "rxstall2"])?;
    // The automatic flush starts within a second and waits for the stalled device.
    std::thread::sleep(Duration::from_millis(2500));
    let bg = |args: Vec<String>| {
        std::thread::spawn(move || {
            cmd(
                "rxdskctl",
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        })
    };
    let destroy = bg(vec!["destroy".into(), dev.path.clone()]);
    let restore = bg(vec![
        "create".into(),
        "--backing".into(),
        "/dev/mapper/rxstall2".into(),
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    let quick = |args: &[&str]| -> TestResult {
        let out = cmd_timeout("rxdskctl", args, &[], Duration::from_secs(30)).map_err(|e| {
            format!(
                "`rxdskctl {}` waited for the stalled I/O: {e}",
                args.join(" ")
            )
        })?;
        ensure(out.status == 0, || {
            format!("rxdskctl {}: {}", args.join(" "), out.stderr.trim())
        })
    };
    let result = (|| -> TestResult {
        quick(&["list"])?;
        quick(&["list", "-J"])?;
        let other = cmd_timeout(
            "rxdskctl",
            &["create", "--size", "8M"],
            &[],
            Duration::from_secs(30),
        )
        .map_err(|e| format!("`rxdskctl create` waited for the stalled I/O: {e}"))?;
        let other = other.stdout.trim().to_string();
        quick(&["stats", &other])?;
        quick(&["destroy", &other])?;
        Ok(())
    })();
    dmsetup(&["resume", "rxstall"])?;
    dmsetup(&["resume", "rxstall2"])?;
    let destroyed = destroy.join().map_err(|_| "destroy thread".to_string())??;
    let restored = restore.join().map_err(|_| "restore thread".to_string())??;
    if destroyed.status == 0 {
        dev.forget();
    } else {
        let _ = rxdskctl(&["detach", &dev.path]);
        dev.destroy()?;
    }
    let restored_dev = (restored.status == 0).then(|| adopt_printed(restored.stdout.trim()));
    if let Some(Ok(r)) = restored_dev {
        let _ = rxdskctl(&["detach", &r.path]);
        r.destroy()?;
    }
    let _ = dmsetup(&["remove", "rxstall"]);
    let _ = dmsetup(&["remove", "rxstall2"]);
    result?;
    ensure(destroyed.status == 0, || {
        format!(
            "the destroy failed once the device resumed: {}",
            destroyed.stderr.trim()
        )
    })?;
    ensure(restored.status == 0, || {
        format!(
            "the restore failed once the device resumed: {}",
            restored.stderr.trim()
        )
    })?;
    println!("# with an automatic flush and a restore stalled: list, stats, create and destroy went on; both finished once resumed");
    Ok(())
}

/// Records a device's backing writes with dm-log-writes while the seeded writer runs and
/// flushes (journaled) commit, then replays the log: every prefix up to a flush or FUA, and
/// random subsets of the writes not yet flushed there (what a disk with a volatile cache may
/// keep), must restore to one instant of the device (a prefix of the ops), and never be
/// refused once a first flush has completed.
pub fn crash_states_replayed() -> TestResult {
    let data = ram_disk(0)?;
    let log_dev = ram_disk(1)?;
    let target = ram_disk(2)?;
    let copy = ram_disk(3)?;
    let sectors = (RAM_DISK_BYTES / 512).to_string();
    let _ = dmsetup(&["remove", "rxlog"]);
    dmsetup(&[
        "create",
        "rxlog",
        "--table",
        &format!("0 {sectors} log-writes {data} {log_dev}"),
    ])?;
    let logged = "/dev/mapper/rxlog";
    ensure(
        wait_until(Duration::from_secs(5), || is_block_device(logged)),
        || format!("{logged} did not appear"),
    )?;
    let dev = create(false)?;
    let w = Workload::new(0x1063_0001, SIZE / PAGE);
    let recorded = (|| -> Result<u64, String> {
        rxdskctl(&["attach", "--journal", JOURNAL, &dev.path, logged])?;
        let writer = Running::start(&dev.path, w, u64::MAX)?;
        for n in 0..4 {
            wait_until(Duration::from_secs(30), || writer.done() >= 300 * (n + 1));
            rxdskctl(&["flush", &dev.path])?;
            dmsetup(&["message", "rxlog", "0", "mark", &format!("flush{n}")])?;
        }
        let total = writer.finish()?;
        rxdskctl(&["detach", &dev.path])?;
        Ok(total)
    })();
    dev.destroy()?;
    dmsetup(&["remove", "rxlog"])?;
    let total = recorded?;
    let mut log_file = std::fs::File::open(&log_dev).map_err(|e| format!("{log_dev}: {e}"))?;
    let log = Log::parse_past_super(&mut log_file)?;
    // dm-log-writes stops logging when its device is full: the last mark shows it did not.
    ensure(log.find_mark("flush3").is_some(), || {
        format!(
            "the log holds {} entries and not the last flush's mark: it ran out of space",
            log.entries.len()
        )
    })?;
    let plan = CrashPlan {
        seed: 0xC4A5_4000,
        subsets_per_point: 2,
        max_states: if crate::harness::debug_kernel() {
            24
        } else {
            48
        },
    };
    let states = log.crash_states(&plan);
    let src = std::fs::File::open(&log_dev).map_err(|e| format!("{log_dev}: {e}"))?;
    let tgt = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&target)
        .map_err(|e| format!("{target}: {e}"))?;
    let mut replayer = Replayer::new(&log, src, tgt, Discard::Zero);
    let history = History::new(&w, total);
    let (mut restored, mut refused, mut failures) = (0, 0, Vec::new());
    for state in &states {
        let verdict = replayer.visit(state, |t| -> Result<&'static str, String> {
            t.sync_all().map_err(|e| format!("sync {target}: {e}"))?;
            copy_device(&target, &copy)?;
            let header = cmd("rxdskctl", &["inspect", &copy])
                .map(|o| o.stdout)
                .unwrap_or_default();
            let out = cmd("rxdskctl", &["create", "--backing", &copy])?;
            if out.status != 0 {
                // Before the first flush completed: no image yet, or the first (in place) flush
                // interrupted.
                return if [
                    "generation 1 ",
                    "no rxdsk image",
                    "never completely flushed",
                ]
                .iter()
                .any(|m| out.stderr.contains(m))
                {
                    Ok("refused: no flush completed yet")
                } else {
                    Err(format!("refused: {}\n{header}", out.stderr.trim()))
                };
            }
            let dev = adopt_printed(out.stdout.trim())?;
            let observed = stamp::observe(&dev.path, &w);
            let _ = rxdskctl(&["detach", &dev.path]);
            dev.destroy()?;
            stamp::check(&history, &observed?)
                .map_err(|d| format!("{d}\nimage before the restore:\n{header}"))?;
            Ok("restored")
        })?;
        match verdict {
            Ok("restored") => restored += 1,
            Ok(_) => refused += 1,
            Err(e) => failures.push(format!(
                "{}: {e}\n{}",
                log.describe(state),
                where_written(&log, state)
            )),
        }
    }
    ensure(failures.is_empty(), || {
        format!(
            "{} of {} crash states failed:\n{}",
            failures.len(),
            states.len(),
            failures.join("\n")
        )
    })?;
    ensure(restored > 0, || "no crash state restored".into())?;
    println!(
        "# {} logged writes, {} crash states: {restored} restored to an instant of the writer, {refused} before the first flush completed (refused)",
        log.entries.len(),
        states.len()
    );
    Ok(())
}

/// Where a crash state's writes went: the point's entry and the extra writes, by region of
/// the image (data, journal, metadata block).
fn where_written(log: &Log, state: &crate::logwrites::CrashState) -> String {
    let ss = u64::from(log.sectorsize);
    let region = |e: &crate::logwrites::Entry| {
        let at = e.sector * ss;
        if at < SIZE {
            "data"
        } else if at < SIZE + 20 * MIB {
            "journal"
        } else {
            "metadata"
        }
    };
    let mut out = String::new();
    if let Some(e) = state.prefix.checked_sub(1).map(|i| &log.entries[i]) {
        out += &format!(
            "point entry: {} bytes at {} ({})",
            e.nr_sectors * ss,
            e.sector * ss,
            region(e)
        );
    }
    let mut counts = std::collections::BTreeMap::new();
    for &i in &state.extra {
        *counts.entry(region(&log.entries[i])).or_insert(0) += 1;
    }
    let mut all = std::collections::BTreeMap::new();
    for e in &log.entries[state.prefix..(state.prefix + state.unflushed).min(log.entries.len())] {
        *all.entry(format!(
            "{} {}",
            region(e),
            crate::logwrites::flag_names(e.flags)
        ))
        .or_insert(0) += 1;
    }
    out + &format!("; extra writes by region: {counts:?}; the entries after the point: {all:?}")
}

/// Copies what an image of a `SIZE` device with a `JOURNAL` journal occupies of block device
/// `from` onto `to` (same size): the data and the journal, and the metadata block at the end.
fn copy_device(from: &str, to: &str) -> TestResult {
    let (src, dst) = (open_direct(from, false)?, open_direct(to, true)?);
    let size = blk::size64(&src)?;
    let used = SIZE + 20 * MIB;
    let mut buf = AlignedBuf::zeroed(4 * MIB as usize)?;
    for (start, end) in [(0, used.min(size)), (size - PAGE, size)] {
        let mut at = start;
        while at < end {
            let n = (4 * MIB).min(end - at) as usize;
            read_at(&src, &mut buf[..n], at).map_err(|e| format!("{from} at {at}: {e}"))?;
            blk::write_at(&dst, &buf[..n], at).map_err(|e| format!("{to} at {at}: {e}"))?;
            at += n as u64;
        }
    }
    Ok(())
}

/// The power cuts under live use (`cargo xtask test`'s power cuts; `rxdsk-guest-tests
/// powercut cut|check VARIANT ...`): the first boot sets a device up on /dev/vda and runs a
/// workload through flushes until it prints `RXDSK-DATA powercut-kill`, when the host kills it;
/// a fresh boot restores and checks. Variants:
/// - `stamp-journal-{plain,lz4}[-N]`: the seeded writer, a journal, automatic flushes every
///   second and explicit ones back to back; killed after a seeded number of ops, whatever
///   the flushes are doing. The restore is never refused and gives an instant of the writer
///   at least as late as the start of the last flush that returned.
/// - `stamp-direct-{plain,lz4}`: no journal; killed right after a flush returned, the writer
///   still running. The restore gives an instant within that flush.
/// - `ext4-live`: ext4 on a device with a journal and automatic flushes every second, the
///   file workload of [`crate::fsload`] running (creates, appends with fsync, renames,
///   deletes) with explicit flushes beside it. After the restore the file system mounts,
///   every file fsynced before the last flush that returned has its content, and `e2fsck
///   -fn` is clean.
pub fn powercut_main(args: &[String]) -> i32 {
    let result = match args {
        [mode, variant, rest @ ..] if mode == "cut" => powercut_cut(variant, rest),
        [mode, variant, rest @ ..] if mode == "check" => powercut_check(variant, rest),
        _ => Err("usage: powercut cut VARIANT | powercut check VARIANT DISK SEED BOUNDS...".into()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            println!("powercut: {e}");
            1
        }
    }
}

/// The disk of a cut boot.
const CUT_DISK: &str = "/dev/vda";
/// The writer's ops before it stops by itself (far beyond any cut).
const MAX_OPS: u64 = 400_000;

/// The seed of a variant, and the op count (seeded too) at which a journal variant is cut.
fn variant_seed(variant: &str) -> u64 {
    variant
        .bytes()
        .fold(0x0C07_0000u64, |h, b| h.rotate_left(5) ^ u64::from(b))
}

fn announce(line: &str) {
    use std::io::Write;
    println!("RXDSK-DATA {line}");
    let _ = std::io::stdout().flush();
}

fn kill_me() -> ! {
    announce("powercut-kill");
    loop {
        std::thread::sleep(Duration::from_secs(600));
    }
}

fn powercut_cut(variant: &str, _rest: &[String]) -> Result<(), String> {
    let seed = variant_seed(variant);
    if variant == "ext4-live" {
        return cut_ext4(seed);
    }
    let compressed = variant.contains("lz4");
    let journal = variant.contains("journal");
    // A cache: 2 MiB of memory for the 16 MiB device, so that the writer's random pages force
    // eviction all through the run (and a flush for room, a point-in-time flush too, when the
    // dirty pages fill it between two flushes).
    let cache = variant.contains("cache");
    let dev = if cache {
        adopt_printed(&rxdskctl(&[
            "create",
            "--size",
            "16M",
            "--mem-limit",
            "2M",
        ])?)?
    } else {
        create(compressed)?
    };
    let mut attach = vec!["attach"];
    if journal {
        attach.extend_from_slice(&["--journal", JOURNAL, "--flush-interval", "1"]);
    }
    attach.extend_from_slice(&[&dev.path, CUT_DISK]);
    rxdskctl(&attach)?;
    let w = Workload::new(seed, SIZE / PAGE);
    let writer = Running::start(&dev.path, w, MAX_OPS)?;
    if !journal {
        wait_until(Duration::from_secs(60), || writer.done() >= 3000);
        let lo = writer.done();
        rxdskctl(&["flush", &dev.path])?;
        let hi = writer.done() + 1;
        announce(&format!("powercut-sha {seed} {lo} {hi}"));
        kill_me();
    }
    announce(&format!("powercut-sha {seed} -"));
    // Explicit flushes back to back beside the automatic ones; each that returns bounds the
    // restore from below.
    let flushes = Arc::new(AtomicU64::new(0));
    let done = writer.done.clone();
    {
        let (flushes, id) = (flushes.clone(), dev.id);
        std::thread::spawn(move || {
            let Ok(ctl) = Control::open() else { return };
            loop {
                let lo = done.load(Ordering::Acquire);
                if ctl.flush(id).is_ok() {
                    announce(&format!("powercut-bound {lo}"));
                    flushes.fetch_add(1, Ordering::Release);
                }
            }
        });
    }
    // Cut at a seeded moment once several flushes completed, whatever the next one is doing.
    let mut rng = seed;
    let cut_at = writer.done() + 2000 + blk::splitmix64(&mut rng) % 6000;
    // On a cache, the cut comes only once pages were evicted (the flushes back to back keep
    // most pages clean: flushes for room are rare here).
    let evicting = || !cache || crate::cache::cache_stat(&dev).is_ok_and(|s| s.evictions > 0);
    let ready = || writer.done() >= cut_at && flushes.load(Ordering::Acquire) >= 4 && evicting();
    wait_until(Duration::from_secs(300), ready);
    if !evicting() {
        return Err("no eviction on the cache device".into());
    }
    std::thread::sleep(Duration::from_micros(blk::splitmix64(&mut rng) % 20_000));
    kill_me();
}

fn powercut_check(variant: &str, rest: &[String]) -> Result<(), String> {
    let [disk, seed, bounds @ ..] = rest else {
        return Err("check: DISK SEED BOUNDS... expected".into());
    };
    let seed: u64 = seed.parse().map_err(|_| format!("seed {seed:?}"))?;
    let num = |s: &String| s.parse::<u64>().map_err(|_| format!("bound {s:?}"));
    if variant == "ext4-live" {
        let durable = bounds
            .iter()
            .rev()
            .find(|b| *b != "-")
            .map(num)
            .transpose()?
            .unwrap_or(0);
        return check_ext4(disk, seed, durable);
    }
    // Direct: LO HI of the flush; journal: "-" then the powercut-bound of the last flush that
    // returned, if the host saw one.
    let (lo, hi) = match bounds {
        [lo, hi] if lo != "-" => (num(lo)?, num(hi)?),
        [_, lo] => (num(lo)?, MAX_OPS),
        _ => (0, MAX_OPS),
    };
    let out = cmd("rxdskctl", &["create", "--backing", disk])?;
    ensure(out.status == 0, || {
        format!("the restore was refused: {}", out.stderr.trim())
    })?;
    let dev = adopt_printed(out.stdout.trim())?;
    let w = Workload::new(seed, SIZE / PAGE);
    let observed = stamp::observe(&dev.path, &w);
    let _ = rxdskctl(&["detach", &dev.path]);
    dev.destroy()?;
    let found = check_prefix(&w, hi.min(MAX_OPS), lo, hi, &observed?)?;
    println!(
        "restored: the state after op {} (at least {lo}, at most {hi})",
        found[0]
    );
    Ok(())
}

fn cut_ext4(seed: u64) -> Result<(), String> {
    let dev = adopt_printed(&rxdskctl(&["create", "--size", "96M"])?)?;
    rxdskctl(&[
        "attach",
        "--journal",
        "96M",
        "--flush-interval",
        "1",
        &dev.path,
        CUT_DISK,
    ])?;
    cmd_ok("mkfs.ext4", &["-q", "-F", "-b", "4096", &dev.path])?;
    let mnt = std::path::Path::new("/mnt/live");
    std::fs::create_dir_all(mnt).map_err(|e| e.to_string())?;
    cmd_ok("mount", &["-t", "ext4", &dev.path, "/mnt/live"])?;
    let root = mnt.join("w");
    crate::fsload::prepare(&root)?;
    announce(&format!("powercut-sha {seed} -"));
    let durable = Arc::new(AtomicU64::new(0));
    // How many explicit flushes returned with a bound above 0: the cut waits for a few, so
    // that the check has files it must find.
    let flushed = Arc::new(AtomicU64::new(0));
    let flusher = {
        let (durable, flushed, path) = (durable.clone(), flushed.clone(), dev.path.clone());
        std::thread::spawn(move || loop {
            let s = durable.load(Ordering::Acquire);
            if cmd("rxdskctl", &["flush", &path]).is_ok_and(|o| o.status == 0) {
                announce(&format!("powercut-bound {s}"));
                if s > 0 {
                    flushed.fetch_add(1, Ordering::Release);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        })
    };
    let mut rng = seed;
    let cut_at = 150 + blk::splitmix64(&mut rng) % 250;
    for (k, op) in crate::fsload::FsLoad::new(seed) {
        crate::fsload::perform(&root, seed, &op)?;
        durable.store(k, Ordering::Release);
        if k >= cut_at && flushed.load(Ordering::Acquire) >= 3 {
            kill_me();
        }
    }
    drop(flusher);
    Err("the file workload ended".into())
}

fn check_ext4(disk: &str, seed: u64, durable: u64) -> Result<(), String> {
    let out = cmd("rxdskctl", &["create", "--backing", disk])?;
    ensure(out.status == 0, || {
        format!("the restore was refused: {}", out.stderr.trim())
    })?;
    let dev = adopt_printed(out.stdout.trim())?;
    let mnt = "/mnt/restored";
    std::fs::create_dir_all(mnt).map_err(|e| e.to_string())?;
    let checked = (|| -> Result<String, String> {
        // The mount replays ext4's journal.
        cmd_ok("mount", &["-t", "ext4", &dev.path, mnt])?;
        let files =
            crate::fsload::check(&std::path::Path::new(mnt).join("w"), seed, durable, 100_000);
        cmd_ok("umount", &[mnt])?;
        let files = files?;
        let fsck = cmd("e2fsck", &["-fn", &dev.path])?;
        ensure(fsck.status == 0, || {
            format!("e2fsck -fn found problems:\n{}", fsck.stdout)
        })?;
        Ok(files)
    })();
    let _ = rxdskctl(&["detach", &dev.path]);
    dev.destroy()?;
    println!(
        "restored: ext4 mounts, e2fsck -fn is clean; files fsynced by op {durable}: {}",
        checked?
    );
    Ok(())
}
