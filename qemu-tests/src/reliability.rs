//! Reliability: ioctl fuzzing under I/O, page-allocation fault injection, races between
//! control operations and I/O, unload while open, no uninitialised bytes, kmemleak.

use crate::blk::{self, open_direct, read_at, write_at, AlignedBuf};
use crate::harness::{cmd, cmd_ok, ensure, TestResult};
use crate::rxdsk::{Control, Device};
use nix::errno::Errno;
use rxdsk_ioctl::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// How far MemAvailable may stay below its starting value after everything is freed. On the
/// debug kernel KASAN's quarantine keeps freed slab memory for a while (up to 1/32 of RAM), so
/// there the bound is loose and `kmemleak_clean` does the leak check instead.
fn leak_tolerance(normal: u64) -> u64 {
    if std::path::Path::new("/sys/kernel/debug/kmemleak").exists() {
        normal.max(128 * MIB)
    } else {
        normal
    }
}
const MODULE: &str = "/lib/modules/rxdsk.ko";

/// splitmix64: a seeded, reproducible stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        blk::splitmix64(&mut self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("RXDSK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// fio verify loops in the background on a device.
fn spawn_fio_verify(dev: &str, name: &str) -> Result<Child, String> {
    Command::new("fio")
        .args([
            &format!("--name={name}"),
            &format!("--filename={dev}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=16M",
            "--direct=1",
            "--ioengine=io_uring",
            "--iodepth=8",
            "--verify=crc32c",
            "--verify_fatal=1",
            "--loops=4",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start fio: {e}"))
}

fn wait_child(mut child: Child, what: &str, timeout: Duration) -> TestResult {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                return ensure(status.success(), || {
                    format!(
                        "{what} exited {status}\n{}\n{}",
                        crate::harness::tail(&String::from_utf8_lossy(&out.stdout), 15),
                        crate::harness::tail(&String::from_utf8_lossy(&out.stderr), 15)
                    )
                });
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} did not finish within {}s",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// An anonymous mapping for pointer cases: a readable/writable page followed by a guard page
/// (PROT_NONE), and an address that is not mapped at all.
struct Pages {
    base: *mut u8,
    unmapped: u64,
}

impl Pages {
    fn new() -> Result<Self, String> {
        use nix::libc::{
            mmap, mprotect, munmap, MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_NONE, PROT_READ,
            PROT_WRITE,
        };
        // SAFETY: A fresh private anonymous mapping of three pages; nothing else refers to it.
        let base = unsafe {
            mmap(
                std::ptr::null_mut(),
                3 * 4096,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == MAP_FAILED {
            return Err(format!("mmap: {}", Errno::last()));
        }
        // SAFETY: Page 1 and 2 of our own mapping: page 1 becomes the guard, page 2 goes away.
        unsafe {
            if mprotect(base.cast::<u8>().add(4096).cast(), 4096, PROT_NONE) != 0
                || munmap(base.cast::<u8>().add(8192).cast(), 4096) != 0
            {
                return Err(format!("mprotect/munmap: {}", Errno::last()));
            }
        }
        Ok(Self {
            base: base.cast(),
            unmapped: base as u64 + 8192,
        })
    }

    /// An address `len` bytes before the guard page: a buffer that runs into it.
    fn before_guard(&self, len: usize) -> u64 {
        self.base as u64 + 4096 - len.min(4096) as u64
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: Unmaps what `new` mapped (the third page is already gone).
        unsafe { nix::libc::munmap(self.base.cast(), 2 * 4096) };
    }
}

const COMMANDS: [u32; 13] = [
    RXDSK_IOC_GET_VERSION,
    RXDSK_IOC_GET_FEATURES,
    RXDSK_IOC_CREATE,
    RXDSK_IOC_DESTROY,
    RXDSK_IOC_RESIZE,
    RXDSK_IOC_INFO,
    RXDSK_IOC_LIST,
    RXDSK_IOC_STATS,
    RXDSK_IOC_ATTACH,
    RXDSK_IOC_DETACH,
    RXDSK_IOC_FLUSH,
    RXDSK_IOC_RESTORE,
    RXDSK_IOC_COMPR_STATS,
];

/// A random request: fully random, our type with random nr/dir/size, or one of our commands.
fn random_request(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=2 => rng.next() & 0xffff_ffff,
        3..=5 => {
            let dir = rng.below(4);
            let size = if rng.below(2) == 0 {
                rng.below(256)
            } else {
                rng.below(1 << 14)
            };
            (dir << 30) | (size << 16) | (u64::from(RXDSK_IOC_MAGIC) << 8) | rng.below(0x30)
        }
        _ => u64::from(COMMANDS[rng.below(COMMANDS.len() as u64) as usize]),
    }
}

/// Fills a payload: mostly zero with a few random words, so that some calls pass validation
/// and reach deeper code.
fn random_payload(rng: &mut Rng, buf: &mut [u8]) {
    buf.fill(0);
    match rng.below(4) {
        0 => buf.iter_mut().for_each(|b| *b = rng.next() as u8),
        _ => {
            for _ in 0..rng.below(4) {
                let at = rng.below(buf.len().max(1) as u64) as usize & !7;
                let v = match rng.below(5) {
                    0 => rng.below(8),
                    1 => 4096 << rng.below(20),
                    2 => 512 * rng.below(1 << 20),
                    3 => rng.next(),
                    _ => 1 << rng.below(64),
                };
                let bytes = v.to_ne_bytes();
                let end = (at + 8).min(buf.len());
                if at < end {
                    buf[at..end].copy_from_slice(&bytes[..end - at]);
                }
            }
        }
    }
}

/// The id a successful CREATE wrote back into its `RxdskCreate` buffer.
fn created_device_id(out: &[u8]) -> u32 {
    let at = std::mem::offset_of!(RxdskCreate, id);
    u32::from_ne_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]])
}

/// DESTROY and RESIZE must never hit the devices fio is verifying.
fn protect(request: u64, buf: &mut [u8], protected: &[u32]) {
    let r = request as u32;
    if (r == RXDSK_IOC_DESTROY || r == RXDSK_IOC_RESIZE) && buf.len() >= 4 {
        let id = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if protected.contains(&id) {
            buf[..4].copy_from_slice(&(RXDSK_MAX_DEVICES + 7).to_ne_bytes());
        }
    }
}

/// Reads an ABI structure from the start of a byte buffer (any alignment).
fn read_struct<T: Copy + Default>(bytes: &[u8]) -> T {
    let mut v = T::default();
    let n = std::mem::size_of::<T>().min(bytes.len());
    // SAFETY: ABI structures are plain integers, valid for any bytes; at most `size_of::<T>()`
    // bytes are copied into `v`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&mut v as *mut T).cast::<u8>(), n) };
    v
}

/// A call that succeeded must have done what it says: a created device exists with the
/// configuration asked for, a destroyed one is gone, a resized one has the new size.
fn check_effect(
    control: &Control,
    request: u64,
    input: &[u8],
    output: &[u8],
) -> Result<(), String> {
    match request as u32 {
        RXDSK_IOC_CREATE => {
            let asked: RxdskCreate = read_struct(input);
            let got: RxdskCreate = read_struct(output);
            let info = control
                .info(got.id)
                .map_err(|e| format!("CREATE said rxd{} but INFO fails: {e}", got.id))?;
            let want_id = asked.flags & RXDSK_CREATE_WITH_ID != 0;
            if info.size_bytes != asked.size_bytes
                || info.logical_block_size != asked.logical_block_size
                || info.mem_limit_bytes != asked.mem_limit_bytes
                || info.flags != asked.flags & RXDSK_FLAG_READ_ONLY
                || (want_id && got.id != asked.id)
            {
                return Err(format!("CREATE asked {asked:?}, the device is {info:?}"));
            }
        }
        RXDSK_IOC_DESTROY => {
            let d: RxdskDestroy = read_struct(input);
            if control.info(d.id) != Err(Errno::ENODEV) {
                return Err(format!(
                    "DESTROY of rxd{} succeeded but the device is still there",
                    d.id
                ));
            }
        }
        RXDSK_IOC_RESIZE => {
            let r: RxdskResize = read_struct(input);
            let size = control.info(r.id).map(|i| i.size_bytes);
            if size != Ok(r.size_bytes) {
                return Err(format!(
                    "RESIZE of rxd{} to {} succeeded, INFO says {size:?}",
                    r.id, r.size_bytes
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

const FUZZ_CALLS: u32 = 100_000;
const EXPECTED: [Errno; 11] = [
    Errno::EEXIST,
    // ATTACH/RESTORE with a random path; FLUSH/DETACH of a device without backing device.
    Errno::ENOENT,
    Errno::ENOTBLK,
    Errno::ENXIO,
    Errno::EINVAL,
    Errno::ENOTTY,
    Errno::EFAULT,
    Errno::ENODEV,
    Errno::EBUSY,
    Errno::ENOSPC,
    Errno::ENOMEM,
];

pub fn ioctl_fuzz() -> TestResult {
    let control = Control::open()?;
    let before_ids = control.list().map_err(|e| format!("LIST: {e}"))?;
    let mem_before = blk::settled_mem_available(Duration::from_secs(20))?;
    let a = Device::create(64 * MIB, 4096)?;
    let b = Device::create(64 * MIB, 512)?;
    let protected = [a.id, b.id];
    let fio_a = spawn_fio_verify(&a.path, "fuzz-a")?;
    let fio_b = spawn_fio_verify(&b.path, "fuzz-b")?;
    let seed = seed();
    let mut rng = Rng(seed);
    let pages = Pages::new()?;
    let mut unexpected: Vec<String> = Vec::new();
    let mut created = 0u32;
    let (mut ok, mut rejected) = (0u32, 0u32);
    let mut buf = vec![0u8; 1 << 14];
    for i in 0..FUZZ_CALLS {
        let request = random_request(&mut rng);
        let size = crate::rxdsk::ioc_size(request);
        // A CREATE that went through leaves its id in the output buffer.
        let mut created_id = None;
        let result = match rng.below(20) {
            // Pointer cases: NULL, unmapped, misaligned, short buffer before a guard page.
            0 => {
                // SAFETY: Address 0 is never mapped; the kernel must fault cleanly.
                unsafe { control.raw_number(request, 0) }
            }
            1 => {
                // SAFETY: `unmapped` was unmapped by `Pages::new`; nothing of ours is there.
                unsafe { control.raw_number(request, pages.unmapped) }
            }
            2 => {
                let short = rng.below(size.max(1) as u64) as usize;
                // SAFETY: The `short` bytes before the guard page are our scratch page: the
                // kernel may write there (we never read it), and faults on the guard page.
                unsafe { control.raw_number(request, pages.before_guard(short)) }
            }
            3 => {
                // Misaligned but fully valid buffer.
                random_payload(&mut rng, &mut buf[1..size.max(1) + 1]);
                protect(request, &mut buf[1..], &protected);
                let mut tmp = buf[1..size.max(1) + 1].to_vec();
                let r = control.raw_bytes(request, &mut tmp);
                if r.is_ok() {
                    if request as u32 == RXDSK_IOC_CREATE {
                        created_id = Some(created_device_id(&tmp));
                    }
                    if let Err(e) = check_effect(&control, request, &buf[1..size.max(1) + 1], &tmp)
                    {
                        unexpected.push(format!("call {i}: {e}"));
                    }
                }
                r
            }
            _ => {
                let payload = &mut buf[..size.max(1)];
                random_payload(&mut rng, payload);
                protect(request, payload, &protected);
                let input = payload.to_vec();
                let r = control.raw_bytes(request, payload);
                if r.is_ok() {
                    if request as u32 == RXDSK_IOC_CREATE {
                        created_id = Some(created_device_id(payload));
                    }
                    if let Err(e) = check_effect(&control, request, &input, payload) {
                        unexpected.push(format!("call {i}: {e}"));
                    }
                }
                r
            }
        };
        if let Some(id) = created_id {
            // A random CREATE went through: take the device down again at once.
            created += 1;
            if protected.contains(&id) {
                unexpected.push(format!("call {i}: CREATE returned the live id {id}"));
            } else if let Err(e) = control.destroy(id, RXDSK_FLAG_FORCE) {
                unexpected.push(format!("call {i}: destroy of fuzz-created rxd{id}: {e}"));
            }
        }
        match result {
            Ok(_) => ok += 1,
            Err(e) if EXPECTED.contains(&e) => rejected += 1,
            Err(e) => unexpected.push(format!("call {i}: request {request:#x}: {e}")),
        }
        // Valid control traffic between the random calls.
        if i % 2000 == 0 {
            let size = (1 + rng.below(64)) * MIB;
            match control.create(size, if rng.below(2) == 0 { 512 } else { 4096 }, 0, 0) {
                Ok(id) => {
                    created += 1;
                    let _ = control.resize(id, size * 2, 0);
                    let _ = control.resize(id, size / 2 / 4096 * 4096 + 4096, RXDSK_FLAG_FORCE);
                    if let Err(e) = control.destroy(id, 0) {
                        unexpected.push(format!("valid destroy of rxd{id}: {e}"));
                    }
                }
                Err(e) => unexpected.push(format!("valid create of {size} bytes: {e}")),
            }
        }
    }
    println!("# seed {seed}: {FUZZ_CALLS} calls, {ok} accepted, {rejected} rejected cleanly, {created} devices created and destroyed");
    // Whatever the fuzzer left (a CREATE whose id we could not read) goes now.
    let leftover: Vec<u32> = control
        .list()
        .map_err(|e| format!("LIST: {e}"))?
        .into_iter()
        .filter(|id| !protected.contains(id) && !before_ids.contains(id))
        .collect();
    for id in &leftover {
        let _ = control.destroy(*id, RXDSK_FLAG_FORCE);
    }
    wait_child(
        fio_a,
        "fio verify on the first device",
        Duration::from_secs(600),
    )?;
    wait_child(
        fio_b,
        "fio verify on the second device",
        Duration::from_secs(600),
    )?;
    ensure(unexpected.is_empty(), || {
        format!(
            "seed {seed}: unexpected results:\n{}",
            unexpected
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    ensure(leftover.is_empty(), || {
        format!("seed {seed}: devices left behind by the fuzzer: {leftover:?}")
    })?;
    a.destroy()?;
    b.destroy()?;
    let after = control.list().map_err(|e| format!("LIST: {e}"))?;
    ensure(after == before_ids, || {
        format!("LIST {after:?} after the fuzz, {before_ids:?} before")
    })?;
    let mem_after = blk::wait_mem_available(
        mem_before.saturating_sub(leak_tolerance(16 * MIB)),
        Duration::from_secs(60),
    )?;
    ensure(mem_after + leak_tolerance(16 * MIB) >= mem_before, || {
        format!(
            "MemAvailable {} MiB after, {} MiB before: memory leaked",
            mem_after / MIB,
            mem_before / MIB
        )
    })
}

/// In a child marked make-it-fail (no heap use there): writes to new pages must all fail with
/// EIO.
fn failing_writer(dev: &std::fs::File, buf: &[u8], pages: u64) -> i32 {
    for p in 0..pages {
        // New pages far from the ones written before.
        match write_at(dev, buf, (1024 + p) * 4096) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => {}
            other => {
                println!("# write {p} under injected page-allocation failure: {other:?}, want EIO");
                return 24;
            }
        }
    }
    0
}

pub fn fault_injection_page_alloc() -> TestResult {
    let mem_before = blk::settled_mem_available(Duration::from_secs(20))?;
    let dev = Device::create(64 * MIB, 4096)?;
    let mut buf = AlignedBuf::zeroed(4096)?;
    blk::fill_keyed(&mut buf[..], 1, 1);
    {
        let f = open_direct(&dev.path, true)?;
        for p in 0..16 {
            write_at(&f, &buf[..], p * 4096).map_err(|e| format!("setup write: {e}"))?;
        }
    }
    let failures_before = dev.stats()?.alloc_failures;
    let dev_file = open_direct(&dev.path, true)?;
    let code = crate::faults::in_failing_child(crate::faults::Fault::PageAlloc, || {
        failing_writer(&dev_file, &buf[..], 32)
    })?;
    drop(dev_file);
    ensure(code == 0, || {
        format!("failing writer exited {code} (22-23: setup, 24: a write did not fail with EIO)")
    })?;
    let stats = dev.stats()?;
    ensure(stats.alloc_failures > failures_before, || {
        format!("alloc_failures stayed at {}", stats.alloc_failures)
    })?;
    ensure(stats.pages == 16, || {
        format!(
            "{} pages held, want the 16 written before the injection",
            stats.pages
        )
    })?;
    // The device still works: old pages read back, new pages can be written now.
    let f = open_direct(&dev.path, true)?;
    let mut back = AlignedBuf::zeroed(4096)?;
    for p in 0..16 {
        read_at(&f, &mut back[..], p * 4096).map_err(|e| format!("read after injection: {e}"))?;
        ensure(back[..] == buf[..], || {
            format!("page {p} changed across the injection")
        })?;
    }
    for p in 0..32 {
        write_at(&f, &buf[..], (1024 + p) * 4096)
            .map_err(|e| format!("write after injection: {e}"))?;
    }
    ensure(dev.stats()?.pages == 48, || {
        "new pages not stored after the injection ended".into()
    })?;
    drop(f);
    dev.destroy()?;
    let mem_after = blk::wait_mem_available(
        mem_before.saturating_sub(leak_tolerance(8 * MIB)),
        Duration::from_secs(60),
    )?;
    ensure(mem_after + leak_tolerance(8 * MIB) >= mem_before, || {
        format!(
            "MemAvailable {} MiB after, {} MiB before",
            mem_after / MIB,
            mem_before / MIB
        )
    })
}

/// I/O workers, open/close, STATS/INFO/LIST, grow/forced shrink and create/destroy churn at
/// once, for a bounded number of iterations, each worker a thread; then unload rules.
pub fn races_destroy_resize_io() -> TestResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    const IO_REGION: u64 = 8 * MIB;
    let a = Device::create(32 * MIB, 4096)?;
    let b = Device::create(64 * MIB, 512)?;
    let victim = Device::create(32 * MIB, 4096)?;
    // Held open throughout: DESTROY of `a` without FORCE must always be refused.
    let hold_a = std::fs::File::open(&a.path).map_err(|e| format!("open {}: {e}", a.path))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(String, TestResult)>();
    let spawn = |name: String, f: Box<dyn FnOnce() -> TestResult + Send>| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = f();
            let _ = tx.send((name, r));
        });
    };
    // Verified I/O below IO_REGION on a and b: never past any size the resizer sets.
    for (dev, seed) in [
        (a.path.clone(), 11u64),
        (a.path.clone(), 12),
        (b.path.clone(), 13),
        (b.path.clone(), 14),
    ] {
        spawn(
            format!("io {dev} {seed}"),
            Box::new(move || {
                let f = open_direct(&dev, true)?;
                let mut w = AlignedBuf::zeroed(4096)?;
                let mut r = AlignedBuf::zeroed(4096)?;
                let mut rng = Rng(seed);
                for i in 0..1500u64 {
                    // Each worker owns the pages with its seed's parity, so data checks are exact.
                    let page = (rng.below(IO_REGION / 4096 / 2) * 2) + (seed & 1);
                    blk::fill_keyed(&mut w[..], seed, i);
                    write_at(&f, &w[..], page * 4096).map_err(|e| format!("write: {e}"))?;
                    read_at(&f, &mut r[..], page * 4096).map_err(|e| format!("read: {e}"))?;
                    if r[..] != w[..] {
                        return Err(format!("page {page}: read back differs"));
                    }
                }
                Ok(())
            }),
        );
    }
    // I/O on the victim until it is destroyed under it: errors are expected then, nothing else.
    let victim_path = victim.path.clone();
    let stop_v = stop.clone();
    spawn(
        "victim io".into(),
        Box::new(move || {
            let f = open_direct(&victim_path, true)?;
            let mut w = AlignedBuf::zeroed(4096)?;
            blk::fill_keyed(&mut w[..], 5, 5);
            let mut errors = 0u32;
            let mut i = 0u64;
            while !stop_v.load(Ordering::Relaxed) && i < 100_000 {
                if let Err(e) = write_at(&f, &w[..], (i % 1024) * 4096) {
                    match e.raw_os_error() {
                        // Gone under us: I/O errors, or ENOSPC once the device has size 0.
                        Some(nix::libc::EIO)
                        | Some(nix::libc::ENXIO)
                        | Some(nix::libc::ENODEV)
                        | Some(nix::libc::ENOSPC) => errors += 1,
                        _ => return Err(format!("victim write: unexpected {e}")),
                    }
                }
                i += 1;
            }
            println!("# victim: {i} writes, {errors} failed after the forced destroy");
            Ok(())
        }),
    );
    let a_path = a.path.clone();
    spawn(
        "open/close".into(),
        Box::new(move || {
            for _ in 0..2000 {
                drop(std::fs::File::open(&a_path).map_err(|e| format!("open {a_path}: {e}"))?);
            }
            Ok(())
        }),
    );
    let (a_id, b_id) = (a.id, b.id);
    spawn(
        "stats/info/list".into(),
        Box::new(move || {
            let c = Control::open()?;
            for _ in 0..3000 {
                c.stats(a_id).map_err(|e| format!("STATS: {e}"))?;
                c.info(b_id).map_err(|e| format!("INFO: {e}"))?;
                c.list().map_err(|e| format!("LIST: {e}"))?;
            }
            Ok(())
        }),
    );
    spawn(
        "resize".into(),
        Box::new(move || {
            let c = Control::open()?;
            for i in 0..400u64 {
                let size = IO_REGION + (1 + i % 16) * MIB;
                c.resize(b_id, size, RXDSK_FLAG_FORCE)
                    .map_err(|e| format!("RESIZE to {size}: {e}"))?;
            }
            c.resize(b_id, 64 * MIB, 0)
                .map_err(|e| format!("final grow: {e}"))
        }),
    );
    spawn(
        "create/destroy churn".into(),
        Box::new(move || {
            let c = Control::open()?;
            for i in 0..150u64 {
                let id = c
                    .create((1 + i % 8) * MIB, 4096, 0, 0)
                    .map_err(|e| format!("CREATE: {e}"))?;
                match c.destroy(a_id, 0) {
                    Err(Errno::EBUSY) => {}
                    other => {
                        return Err(format!("DESTROY of the open device: {other:?}, want EBUSY"))
                    }
                }
                c.destroy(id, 0)
                    .map_err(|e| format!("DESTROY rxd{id}: {e}"))?;
            }
            Ok(())
        }),
    );
    drop(tx);
    // Destroy the victim under its writer, forced.
    std::thread::sleep(Duration::from_millis(500));
    let victim_id = victim.id;
    victim.forget();
    let forced = Control::open()?.destroy(victim_id, RXDSK_FLAG_FORCE);
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut failures = Vec::new();
    let mut finished = 0;
    while finished < 9 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((name, Err(e))) => {
                finished += 1;
                failures.push(format!("{name}: {e}"));
            }
            Ok(_) => finished += 1,
            Err(_) => {
                return Err(format!(
                    "only {finished} of 9 workers finished within 600s: hang? {failures:?}"
                ))
            }
        }
    }
    drop(hold_a);
    ensure(forced.is_ok(), || {
        format!("forced DESTROY under I/O: {forced:?}")
    })?;
    ensure(failures.is_empty(), || failures.join("\n"))?;
    // a was opened during the churn: the busy check must have held. a's size is untouched.
    ensure(a.info()?.size_bytes == 32 * MIB, || "a changed size".into())?;
    a.destroy()?;
    b.destroy()?;
    Ok(())
}

pub fn unload_refused_while_open() -> TestResult {
    let dev = Device::create(16 * MIB, 4096)?;
    let held = std::fs::File::open(&dev.path).map_err(|e| format!("open: {e}"))?;
    let out = cmd("rmmod", &["rxdsk"])?;
    ensure(out.status != 0, || {
        "rmmod rxdsk succeeded while a device was open".into()
    })?;
    ensure(std::path::Path::new("/sys/module/rxdsk").is_dir(), || {
        "module gone after a refused rmmod".into()
    })?;
    drop(held);
    dev.destroy()?;
    // None open now (devices may exist: unload destroys them).
    let keep = Device::create(16 * MIB, 512)?;
    keep.forget();
    cmd_ok("rmmod", &["rxdsk"])?;
    ensure(!std::path::Path::new("/dev/rxd0").exists(), || {
        "a device node survived the unload".into()
    })?;
    cmd_ok("insmod", &[MODULE])?;
    ensure(
        Control::open()?
            .list()
            .map_err(|e| e.to_string())?
            .is_empty(),
        || "devices after reload".into(),
    )
}

/// Output structures carry no stale bytes: buffers are filled with a pattern first, then every
/// byte the kernel wrote is a field value or zero, and LIST writes no id past `count`.
/// Issues `request` on a copy of `input` followed by 64 bytes of `pattern`; the kernel must
/// leave the pattern alone. Returns the structure it wrote.
fn guarded<T: Copy + Default>(
    c: &Control,
    request: u32,
    input: &T,
    pattern: u8,
) -> Result<T, String> {
    let n = std::mem::size_of::<T>();
    let mut buf = vec![pattern; n + 64];
    // SAFETY: ABI structures are plain integers: viewing one as bytes is sound.
    buf[..n].copy_from_slice(unsafe {
        std::slice::from_raw_parts((input as *const T).cast::<u8>(), n)
    });
    c.raw_bytes(u64::from(request), &mut buf)
        .map_err(|e| format!("request {request:#x}: {e}"))?;
    ensure(buf[n..].iter().all(|&b| b == pattern), || {
        format!(
            "request {request:#x} wrote past its structure: {:02x?}",
            &buf[n..]
        )
    })?;
    Ok(read_struct(&buf))
}

pub fn security_no_uninitialised_bytes() -> TestResult {
    let c = Control::open()?;
    let dev = Device::create(16 * MIB, 4096)?;
    let dev2 = Device::create(16 * MIB, 512)?;
    for pattern in [0xA5u8, 0x5A] {
        let mut f = [pattern; core::mem::size_of::<RxdskFeatures>()];
        c.raw_bytes(u64::from(RXDSK_IOC_GET_FEATURES), &mut f)
            .map_err(|e| format!("GET_FEATURES: {e}"))?;
        // ABI 1.4: the compressors mask, then reserved zeros.
        let compressors = (1u64 << RXDSK_COMPRESS_LZO)
            | (1 << RXDSK_COMPRESS_LZO_RLE)
            | (1 << RXDSK_COMPRESS_LZ4)
            | (1 << RXDSK_COMPRESS_ZSTD);
        ensure(
            u64::from_ne_bytes(f[8..16].try_into().unwrap_or_default()) == compressors,
            || format!("GET_FEATURES compressors: {f:02x?}"),
        )?;
        ensure(f[16..].iter().all(|&b| b == 0), || {
            format!("GET_FEATURES reserved not zeroed: {f:02x?}")
        })?;
        ensure(
            u64::from_ne_bytes(f[..8].try_into().unwrap_or_default()) == RXDSK_FEATURES_ALL,
            || format!("features {f:02x?}"),
        )?;
        // INFO and STATS: input is the id alone (the rest must be zero, so it cannot carry the
        // pattern); the pattern follows the structure, where the kernel must not write, and
        // every byte inside is checked against what it must be.
        let info: RxdskInfo = guarded(
            &c,
            RXDSK_IOC_INFO,
            &RxdskInfo {
                id: dev.id,
                ..Default::default()
            },
            pattern,
        )?;
        let want = RxdskInfo {
            id: dev.id,
            logical_block_size: 4096,
            size_bytes: 16 * MIB,
            used_bytes: info.used_bytes,
            ..Default::default()
        };
        ensure(
            info == want && info.used_bytes.checked_rem(4096) == Some(0),
            || format!("INFO {info:?}, want {want:?}"),
        )?;
        let stats: RxdskStats = guarded(
            &c,
            RXDSK_IOC_STATS,
            &RxdskStats {
                id: dev.id,
                ..Default::default()
            },
            pattern,
        )?;
        ensure(
            stats.id == dev.id && stats.pad == 0 && stats.reserved == [0; 1],
            || format!("STATS id/pad/reserved: {stats:?}"),
        )?;
        // COMPR_STATS of a compressed device: pad and reserved zero, nothing past the end.
        let zdev = Device::create_compressed(16 * MIB, 4096, RXDSK_COMPRESS_ZSTD, 0)?;
        let compr: RxdskComprStats = guarded(
            &c,
            RXDSK_IOC_COMPR_STATS,
            &RxdskComprStats {
                id: zdev.id,
                ..Default::default()
            },
            pattern,
        )?;
        ensure(
            compr.id == zdev.id
                && compr.algorithm == RXDSK_COMPRESS_ZSTD
                && compr.level == 3
                && compr.pad == 0
                && compr.reserved == [0; 4]
                && compr.orig_data_size == 0,
            || format!("COMPR_STATS {compr:?}"),
        )?;
        ensure(zdev.info()?.flags == RXDSK_FLAG_COMPRESSED, || {
            "INFO flags of a compressed device".into()
        })?;
        ensure(c.compr_stats(dev.id) == Err(Errno::EINVAL), || {
            "COMPR_STATS of a plain device is not EINVAL".into()
        })?;
        zdev.destroy()?;
        // LIST into a patterned array larger than needed.
        let mut ids = [u32::from_ne_bytes([pattern; 4]); 8];
        let mut l = RxdskList {
            ids_ptr: ids.as_mut_ptr() as u64,
            capacity: 8,
            ..Default::default()
        };
        const LIST_SIZE: usize = core::mem::size_of::<RxdskList>();
        let mut bytes = [0u8; LIST_SIZE];
        // SAFETY: `RxdskList` is plain integers; we copy it to bytes and back.
        bytes.copy_from_slice(unsafe {
            core::slice::from_raw_parts((&l as *const RxdskList).cast::<u8>(), LIST_SIZE)
        });
        c.raw_bytes(u64::from(RXDSK_IOC_LIST), &mut bytes)
            .map_err(|e| format!("LIST: {e}"))?;
        // SAFETY: As above, the other way round.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut l as *mut RxdskList).cast::<u8>(),
                LIST_SIZE,
            )
        };
        let n = l.count as usize;
        ensure((2..=8).contains(&n), || format!("LIST count {n}"))?;
        ensure(l.reserved == [0; 2], || format!("LIST reserved {l:?}"))?;
        ensure(
            ids[..n].contains(&dev.id) && ids[..n].contains(&dev2.id),
            || format!("LIST ids {ids:?}"),
        )?;
        ensure(
            ids[n..]
                .iter()
                .all(|&v| v == u32::from_ne_bytes([pattern; 4])),
            || format!("LIST wrote past count: {ids:x?}"),
        )?;
        // CREATE writes back the whole structure: reserved stays zero, id is the new device.
        let mut cr = RxdskCreate {
            size_bytes: MIB,
            logical_block_size: 4096,
            ..Default::default()
        };
        c.create_raw(&mut cr).map_err(|e| format!("CREATE: {e}"))?;
        let created = Device::adopt(cr.id);
        ensure(
            cr.reserved == [0; 3]
                && cr.compress == 0
                && cr.compress_level == 0
                && cr.size_bytes == MIB
                && cr.flags == 0,
            || format!("CREATE output {cr:?}"),
        )?;
        created.destroy()?;
    }
    dev.destroy()?;
    dev2.destroy()
}

pub fn kmemleak_clean() -> TestResult {
    const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
    if !std::path::Path::new(KMEMLEAK).exists() {
        return Err("SKIP: no kmemleak (debug flavour only)".into());
    }
    // Objects must stay unreferenced across scans before they are reported: two scans, more
    // than kmemleak's minimum age (5 s) apart (a scan written here is done when write returns).
    for scan in 0..2 {
        if scan > 0 {
            std::thread::sleep(Duration::from_secs(6));
        }
        std::fs::write(KMEMLEAK, "scan").map_err(|e| format!("{KMEMLEAK}: {e}"))?;
    }
    let report = std::fs::read_to_string(KMEMLEAK).map_err(|e| format!("{KMEMLEAK}: {e}"))?;
    let ours: Vec<&str> = report
        .split("unreferenced object")
        .filter(|o| o.contains("rxdsk"))
        .collect();
    ensure(ours.is_empty(), || {
        format!(
            "kmemleak reports {} object(s) of ours:\n{}",
            ours.len(),
            ours.iter()
                .take(3)
                .copied()
                .collect::<Vec<_>>()
                .join("\n---\n")
        )
    })
}
