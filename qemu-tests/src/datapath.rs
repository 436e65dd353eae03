//! Data-path checks that take any block device path: fio verification, discard/write-zeroes
//! content and memory, an ext2 round trip, and swap under memory-cgroup pressure. The rxdsk
//! tests wrap them with device creation and rxdsk's own counters; `rxdsk-guest-tests
//! check-device DEV CHECK...` runs them on another driver (brd) for comparison.

use crate::blk::{self, mib, Expect, MIB, PAGE};
use crate::harness::{cmd_timeout, cmd_timeout_ok, ensure, is_block_device, tail, TestResult};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the guest image keeps the suite's files (qemu-tests/guest/ on the host).
pub const GUEST_DIR: &str = "/usr/share/rxdsk-tests";

// ---------------------------------------------------------------------------------------------
// fio

/// What a verified fio run did, summed over its jobs.
#[derive(Debug, Default)]
pub struct FioSummary {
    pub jobs: usize,
    pub write_bytes: u64,
    pub read_bytes: u64,
}

/// Runs fio job file `job` (in [`GUEST_DIR`]) against `dev` (passed as `RXDSK_DEV`), and
/// requires exit status 0, no job error, at least `min_write` bytes written in total, and every
/// job to have read back (verified) at least what it wrote.
pub fn fio_verify(dev: &str, job: &str, min_write: u64) -> Result<FioSummary, String> {
    fio_verify_env(dev, job, min_write, &[], Duration::from_secs(300))
}

/// [`fio_verify`] with more variables for the job file and a timeout.
pub fn fio_verify_env(
    dev: &str,
    job: &str,
    min_write: u64,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<FioSummary, String> {
    let job_path = format!("{GUEST_DIR}/{job}");
    let out_path = format!("/tmp/{job}.json");
    let _ = std::fs::remove_file(&out_path);
    let out = cmd_timeout(
        "fio",
        &[
            "--output-format=json",
            &format!("--output={out_path}"),
            &job_path,
        ],
        &[&[("RXDSK_DEV", dev)], env].concat(),
        timeout,
    )?;
    let json_text = std::fs::read_to_string(&out_path).unwrap_or_default();
    if out.status != 0 {
        return Err(format!(
            "fio {job} on {dev} exited {}\nstderr: {}\nstdout: {}\noutput: {}",
            out.status,
            tail(&out.stderr, 20),
            tail(&out.stdout, 10),
            tail(&json_text, 10)
        ));
    }
    // fio may print notes before the JSON document.
    let start = json_text
        .find('{')
        .ok_or_else(|| format!("fio {job}: no JSON in {out_path}: {json_text:?}"))?;
    let v: serde_json::Value = serde_json::from_str(&json_text[start..])
        .map_err(|e| format!("fio {job}: bad JSON: {e}"))?;
    let jobs = v["jobs"]
        .as_array()
        .ok_or_else(|| format!("fio {job}: JSON has no jobs array"))?;
    ensure(!jobs.is_empty(), || format!("fio {job}: no jobs ran"))?;
    let mut sum = FioSummary {
        jobs: jobs.len(),
        ..Default::default()
    };
    for j in jobs {
        let name = j["jobname"].as_str().unwrap_or("?");
        let error = j["error"].as_i64();
        ensure(error == Some(0), || {
            format!("fio {job}: job {name} reports error {error:?}")
        })?;
        if let Some(total_err) = j.get("total_err") {
            ensure(total_err.as_u64() == Some(0), || {
                format!("fio {job}: job {name} total_err {total_err}")
            })?;
        }
        let w = j["write"]["io_bytes"].as_u64().unwrap_or(0);
        let r = j["read"]["io_bytes"].as_u64().unwrap_or(0);
        ensure(w > 0 && r >= w, || {
            format!("fio {job}: job {name} wrote {w} bytes but verified (read) only {r}")
        })?;
        sum.write_bytes += w;
        sum.read_bytes += r;
    }
    ensure(sum.write_bytes >= min_write, || {
        format!(
            "fio {job}: {} jobs wrote {} in total, want at least {}",
            sum.jobs,
            mib(sum.write_bytes),
            mib(min_write)
        )
    })?;
    Ok(sum)
}

// ---------------------------------------------------------------------------------------------
// Discard and write-zeroes

/// The two ways to punch a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Punch {
    /// BLKDISCARD
    Discard,
    /// BLKZEROOUT
    ZeroOut,
}

impl Punch {
    pub fn apply(self, f: &std::fs::File, off: u64, len: u64) -> Result<(), String> {
        match self {
            Punch::Discard => blk::discard(f, off, len),
            Punch::ZeroOut => blk::zeroout(f, off, len),
        }
        .map_err(|e| format!("{self:?} [{off}, +{len}): {e}"))
    }
}

/// Counters a driver can report (rxdsk can; brd cannot).
#[derive(Clone, Copy, Debug)]
pub struct PunchCounters {
    /// Pages the device holds.
    pub pages: u64,
    /// Bytes covered by discards or write-zeroes (whichever is being tested).
    pub op_bytes: u64,
}

/// How much MemAvailable may differ from "all the device's pages are gone": per-CPU free lists
/// (a few MiB per CPU), the device's own index nodes and slab, and background noise. That is
/// 1/16 of the 256 MiB the checks write (1/8 of the debug kernel's 128 MiB); the exact page
/// accounting is checked by the counters.
pub const MEM_TOLERANCE: u64 = 16 * MIB;

/// Whole pages in `[off, off + len)`.
pub fn whole_pages(off: u64, len: u64) -> u64 {
    ((off + len) / PAGE).saturating_sub(off.div_ceil(PAGE))
}

/// Writes the pattern over `[0, written)`, punches several ranges (page aligned, one page, and,
/// if `partial` and the device has 512-byte blocks, ranges that start and end inside pages),
/// and checks: zeros inside the ranges and the pattern outside; with `counters`, the pages
/// drop by exactly the whole pages covered and the op bytes by the length; finally punches
/// everything and checks that MemAvailable returns to where it was (within
/// [`MEM_TOLERANCE`]). Returns MemAvailable before the first write.
pub fn punch_check(
    dev: &str,
    op: Punch,
    written: u64,
    partial: bool,
    counters: &dyn Fn() -> Result<Option<PunchCounters>, String>,
) -> Result<u64, String> {
    let seed = 0x5EED_0000 + written + op as u64;
    let f = blk::open_direct(dev, true)?;
    let lbs = blk::logical_block_size(&f)?;
    let base = blk::settled_mem_available(Duration::from_secs(60))?;
    blk::write_pattern(&f, 0, written, seed)?;
    if let Some(c) = counters()? {
        ensure(c.pages == written / PAGE, || {
            format!(
                "after writing {} of random data the device holds {} pages, want {}",
                mib(written),
                c.pages,
                written / PAGE
            )
        })?;
    }
    let after_write = blk::mem_available()?;
    ensure(after_write + written <= base + MEM_TOLERANCE, || {
        format!(
            "MemAvailable went from {} to {} after writing {}: the device's memory is not \
             visible (or not allocated)",
            mib(base),
            mib(after_write),
            mib(written)
        )
    })?;

    let mut ranges = vec![
        (written / 4, written / 8),
        (written / 2 + 5 * PAGE, PAGE),
        (written / 2 + 64 * PAGE, 17 * PAGE),
    ];
    if partial && lbs == 512 {
        ranges.push((written * 3 / 4 + 3 * 512, 10 * PAGE + 2 * 512));
        ranges.push((written * 3 / 4 + 40 * PAGE + 1024, 1024));
        ranges.push((written * 3 / 4 + 60 * PAGE + 512, 2 * PAGE - 1024));
    }
    for &(off, len) in &ranges {
        let before = counters()?;
        op.apply(&f, off, len)?;
        // Freed pages come back after an RCU grace period (rxdsk counts them until then).
        let mut after = counters()?;
        if let Some(b) = before {
            let want = whole_pages(off, len);
            crate::harness::wait_until(Duration::from_secs(10), || {
                after = counters().ok().flatten();
                after.is_some_and(|a| b.pages.checked_sub(a.pages) == Some(want))
            });
        }
        if let (Some(b), Some(a)) = (before, after) {
            let want = whole_pages(off, len);
            ensure(b.pages.checked_sub(a.pages) == Some(want), || {
                format!(
                    "{op:?} of [{off}, +{len}) ({want} whole pages): pages went from {} to {}",
                    b.pages, a.pages
                )
            })?;
            ensure(a.op_bytes.wrapping_sub(b.op_bytes) == len, || {
                format!(
                    "{op:?} of [{off}, +{len}): the {op:?} byte counter grew by {}, want {len}",
                    a.op_bytes.wrapping_sub(b.op_bytes)
                )
            })?;
        }
    }
    let punched = |at: u64| ranges.iter().any(|&(o, l)| at >= o && at < o + l);
    blk::verify_range(&f, 0, written, &|at| {
        if punched(at) {
            Expect::Zeros
        } else {
            Expect::Pattern(seed)
        }
    })
    .map_err(|e| format!("after {op:?} of {ranges:?}: {e}"))?;

    op.apply(&f, 0, written)?;
    // As above: counted until their grace period ends.
    let mut last = counters()?;
    crate::harness::wait_until(Duration::from_secs(10), || {
        last = counters().ok().flatten();
        last.is_none_or(|c| c.pages == 0)
    });
    if let Some(c) = last {
        ensure(c.pages == 0, || {
            format!(
                "after {op:?} of everything written the device still holds {} pages",
                c.pages
            )
        })?;
    }
    let after_punch = blk::wait_mem_available(base - MEM_TOLERANCE, Duration::from_secs(60))?;
    ensure(after_punch + MEM_TOLERANCE >= base, || {
        format!(
            "MemAvailable: {} before writing, {} after writing {}, {} after {op:?} of all of \
             it (tolerance {})",
            mib(base),
            mib(after_write),
            mib(written),
            mib(after_punch),
            mib(MEM_TOLERANCE)
        )
    })?;
    blk::verify_range(&f, 0, written, &|_| Expect::Zeros)
        .map_err(|e| format!("after {op:?} of everything: {e}"))?;
    Ok(base)
}

// ---------------------------------------------------------------------------------------------
// ext2 round trip

const MNT: &str = "/mnt/rxdsk-fs";

/// Unmounts on drop.
struct Mounted(&'static str);

impl Drop for Mounted {
    fn drop(&mut self) {
        let out = cmd_timeout("umount", &[self.0], &[], Duration::from_secs(60));
        if !matches!(out, Ok(ref o) if o.status == 0) {
            let _ = cmd_timeout("umount", &["-l", self.0], &[], Duration::from_secs(60));
        }
    }
}

fn mount_ext2(dev: &str) -> Result<Mounted, String> {
    std::fs::create_dir_all(MNT).map_err(|e| format!("mkdir {MNT}: {e}"))?;
    cmd_timeout_ok("mount", &["-t", "ext2", dev, MNT], Duration::from_secs(120))?;
    Ok(Mounted(MNT))
}

/// Unmounts, reporting failure (the guard then still detaches the mount lazily).
fn unmount(m: Mounted) -> TestResult {
    cmd_timeout_ok("umount", &[m.0], Duration::from_secs(120))?;
    std::mem::forget(m);
    Ok(())
}

/// The files the round trip writes: (path under the mount point, size, content key).
fn fs_files() -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = vec![
        ("big/a.bin".into(), 8 * MIB + 123, 1),
        ("big/b.bin".into(), 3 * MIB, 2),
        ("big/sub/c.bin".into(), MIB + 4097, 3),
        ("small/empty".into(), 0, 4),
        ("small/one".into(), 1, 5),
        ("small/4095".into(), 4095, 6),
        ("small/4096".into(), 4096, 7),
        ("small/4097".into(), 4097, 8),
        ("d1/d2/d3/d4/d5/leaf.txt".into(), 1000, 9),
        ("d1/d2/side.bin".into(), 70_000, 10),
    ];
    for i in 0..40u64 {
        v.push((format!("many/f{i:02}"), 100 + i * 997, 100 + i));
    }
    v
}

/// Every regular file and directory under `root`: relative path → size (directories: None).
fn walk(root: &Path) -> Result<BTreeMap<String, Option<u64>>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in rd {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .display()
                .to_string();
            let meta = e.metadata().map_err(|e| format!("{}: {e}", p.display()))?;
            if rel == "lost+found" {
                continue;
            }
            if meta.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(meta.len()));
            }
        }
    }
    Ok(out)
}

fn sha256_all(paths: &[String]) -> Result<String, String> {
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    Ok(cmd_timeout_ok("sha256sum", &args, Duration::from_secs(120))?.stdout)
}

/// Compares every file with the content it was written with.
fn compare_contents(files: &[(String, u64, u64)]) -> TestResult {
    let mut bad = Vec::new();
    for (rel, size, key) in files {
        let path = format!("{MNT}/{rel}");
        let data = std::fs::read(&path).map_err(|e| format!("read {path}: {e}"))?;
        let mut want = vec![0u8; *size as usize];
        blk::fill_keyed(&mut want, 0xF5, *key);
        if data != want {
            bad.push(format!("{rel} ({} bytes, want {size})", data.len()));
        }
    }
    ensure(bad.is_empty(), || {
        format!("files with wrong content: {}", bad.join(", "))
    })
}

/// mke2fs (block size `fs_block`), mount, write the files, record sha256sum and the tree,
/// unmount, remount, compare sums, tree and contents, unmount. Returns the bytes written.
pub fn fs_roundtrip(dev: &str, fs_block: u32) -> Result<u64, String> {
    ensure(is_block_device(dev), || {
        format!("{dev} is not a block device")
    })?;
    cmd_timeout_ok(
        "mke2fs",
        &["-F", "-b", &fs_block.to_string(), dev],
        Duration::from_secs(120),
    )?;
    let files = fs_files();
    let paths: Vec<String> = files.iter().map(|(r, _, _)| format!("{MNT}/{r}")).collect();
    let m = mount_ext2(dev)?;
    let mut total = 0;
    for (rel, size, key) in &files {
        let path = format!("{MNT}/{rel}");
        if let Some(parent) = Path::new(&path).parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {parent:?}: {e}"))?;
        }
        let mut data = vec![0u8; *size as usize];
        blk::fill_keyed(&mut data, 0xF5, *key);
        std::fs::write(&path, &data).map_err(|e| format!("write {path}: {e}"))?;
        total += size;
    }
    let sums = sha256_all(&paths)?;
    let tree = walk(Path::new(MNT))?;
    ensure(
        tree.values().filter(|v| v.is_some()).count() == files.len(),
        || {
            format!(
                "{} files on the new filesystem, want {}",
                tree.len(),
                files.len()
            )
        },
    )?;
    unmount(m)?;
    // Nothing may come from a cache: the device's contents alone must give the files back.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let m = mount_ext2(dev)?;
    let sums2 = sha256_all(&paths)?;
    ensure(sums == sums2, || {
        format!("sha256sum before unmount:\n{sums}\nafter remount:\n{sums2}")
    })?;
    let tree2 = walk(Path::new(MNT))?;
    ensure(tree == tree2, || {
        format!("tree before unmount: {tree:?}\nafter remount: {tree2:?}")
    })?;
    compare_contents(&files)?;
    unmount(m)?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Swap under a memory cgroup

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A memory cgroup; on drop its processes are killed and it is removed.
struct Cgroup {
    path: String,
}

impl Cgroup {
    fn create(name: &str) -> Result<Self, String> {
        let ctl = format!("{CGROUP_ROOT}/cgroup.subtree_control");
        let controllers = std::fs::read_to_string(format!("{CGROUP_ROOT}/cgroup.controllers"))
            .map_err(|e| format!("{CGROUP_ROOT}/cgroup.controllers: {e} (cgroup2 mounted?)"))?;
        ensure(
            controllers.split_whitespace().any(|c| c == "memory"),
            || format!("no memory controller in {CGROUP_ROOT} ({controllers:?})"),
        )?;
        std::fs::write(&ctl, "+memory").map_err(|e| format!("write +memory to {ctl}: {e}"))?;
        let path = format!("{CGROUP_ROOT}/{name}");
        if Path::new(&path).exists() {
            // Left over from an aborted run.
            drop(Cgroup { path: path.clone() });
        }
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {path}: {e}"))?;
        Ok(Cgroup { path })
    }

    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    fn write(&self, name: &str, value: &str) -> TestResult {
        std::fs::write(self.file(name), value)
            .map_err(|e| format!("write {value:?} to {}: {e}", self.file(name)))
    }

    fn read(&self, name: &str) -> Result<String, String> {
        std::fs::read_to_string(self.file(name)).map_err(|e| format!("{}: {e}", self.file(name)))
    }

    fn read_u64(&self, name: &str) -> Result<u64, String> {
        let s = self.read(name)?;
        s.trim()
            .parse()
            .map_err(|e| format!("{}: {s:?}: {e}", self.file(name)))
    }

    /// A `key value` field of a flat-keyed file (memory.events, memory.stat).
    fn field(&self, name: &str, key: &str) -> Result<u64, String> {
        let s = self.read(name)?;
        s.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| format!("{} has no {key}", self.file(name)))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.file("cgroup.kill"), "1");
        crate::harness::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(self.file("cgroup.procs"))
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        });
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Swap on a device; swapoff on drop unless [`SwapOn::off`] succeeded.
pub struct SwapOn {
    dev: String,
    on: bool,
}

impl SwapOn {
    /// mkswap + swapon; swapoff on drop or with [`SwapOn::off`].
    pub fn on(dev: &str) -> Result<Self, String> {
        cmd_timeout_ok("mkswap", &[dev], Duration::from_secs(120))?;
        cmd_timeout_ok("swapon", &[dev], Duration::from_secs(120))?;
        Ok(SwapOn {
            dev: dev.to_string(),
            on: true,
        })
    }

    pub fn off(&mut self) -> TestResult {
        cmd_timeout_ok("swapoff", &[&self.dev], Duration::from_secs(120))?;
        self.on = false;
        Ok(())
    }
}

impl Drop for SwapOn {
    fn drop(&mut self) {
        if self.on {
            let _ = cmd_timeout("swapoff", &[&self.dev], &[], Duration::from_secs(120));
        }
    }
}

/// The "Used" column (KiB) of `dev` in /proc/swaps, None if it is not listed.
pub fn swap_used_kib(dev: &str) -> Result<Option<u64>, String> {
    let text = std::fs::read_to_string("/proc/swaps").map_err(|e| format!("/proc/swaps: {e}"))?;
    Ok(text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&dev)).then(|| cols.get(3)?.parse().ok())?
    }))
}

#[derive(Debug, Default)]
pub struct SwapReport {
    /// /proc/vmstat pswpout grew by this many bytes during the run.
    pub pswpout_bytes: u64,
    /// Peak of the device's "Used" in /proc/swaps.
    pub peak_used_kib: u64,
    /// Peak of the cgroup's memory.swap.current.
    pub peak_cgroup_swap: u64,
    pub seconds: u64,
}

/// Parameters of a swap run.
pub struct SwapParams {
    /// What the hog allocates, writes and verifies.
    pub hog_bytes: u64,
    /// memory.max of its cgroup.
    pub mem_max: u64,
    pub timeout: Duration,
}

impl SwapParams {
    /// The suite's swap load: a 192 MiB hog under a 48 MiB limit, or on the debug kernel, where
    /// KASAN makes every swapped byte about ten times dearer, 80 MiB under 32 MiB: the same
    /// reclaim and GFP_NOIO paths for lockdep to watch, with fewer bytes.
    pub fn standard(timeout: Duration) -> Self {
        let debug = crate::harness::debug_kernel();
        SwapParams {
            hog_bytes: if debug { 80 * MIB } else { 192 * MIB },
            mem_max: if debug { 32 * MIB } else { 48 * MIB },
            timeout,
        }
    }
}

/// mkswap + swapon `dev`; runs the hog (this binary, `hog MIB SEED`) in a memory cgroup with
/// `mem_max` and unlimited swap; requires the hog to exit 0 (every page verified), pswpout to
/// have grown by at least what cannot fit under the limit, the device to have been used as
/// swap, and no OOM kill; then swapoff. Everything is undone on failure too.
pub fn swap_stress(dev: &str, p: &SwapParams) -> Result<SwapReport, String> {
    ensure(is_block_device(dev), || {
        format!("{dev} is not a block device")
    })?;
    ensure(swap_used_kib(dev)?.is_none(), || {
        format!("{dev} is already in use as swap")
    })?;
    let mut swap = SwapOn::on(dev)?;
    ensure(swap_used_kib(dev)?.is_some(), || {
        format!("swapon {dev} succeeded but /proc/swaps does not list it")
    })?;

    let cg = Cgroup::create("rxdsk-swap")?;
    cg.write("memory.max", &p.mem_max.to_string())?;
    cg.write("memory.swap.max", "max")?;
    let pswpout0 = blk::vmstat("pswpout")?;

    let log_path = "/tmp/rxdsk-hog.log";
    let start = Instant::now();
    let mut hog = Hog::spawn(
        &cg.file("cgroup.procs"),
        log_path,
        p.hog_bytes / MIB,
        0xD0D0_BA11,
        0,
        0,
    )?;
    let mut report = SwapReport::default();
    let deadline = start + p.timeout;
    let status = loop {
        if let Ok(Some(kib)) = swap_used_kib(dev) {
            report.peak_used_kib = report.peak_used_kib.max(kib);
        }
        if let Ok(b) = cg.read_u64("memory.swap.current") {
            report.peak_cgroup_swap = report.peak_cgroup_swap.max(b);
        }
        match hog.try_wait()? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                drop(hog);
                return Err(format!(
                    "the hog did not finish within {}s (killed); peak swap used {} KiB; \
                     its log:\n{}",
                    p.timeout.as_secs(),
                    report.peak_used_kib,
                    tail(&std::fs::read_to_string(log_path).unwrap_or_default(), 10)
                ));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    report.seconds = start.elapsed().as_secs();
    report.pswpout_bytes = (blk::vmstat("pswpout")? - pswpout0) * PAGE;
    let hog_log = std::fs::read_to_string(log_path).unwrap_or_default();
    let oom_kills = cg.field("memory.events", "oom_kill").unwrap_or(0);
    ensure(status == WaitStatus::Exited(hog.pid, 0), || {
        format!(
            "the hog ended with {status:?} after {}s (oom_kill events: {oom_kills}); its log:\n{}",
            report.seconds,
            tail(&hog_log, 10)
        )
    })?;
    ensure(oom_kills == 0, || {
        format!("{oom_kills} OOM kill(s) in the cgroup")
    })?;
    let must_swap = p.hog_bytes - p.mem_max;
    ensure(report.pswpout_bytes >= must_swap, || {
        format!(
            "pswpout grew by only {} while a {} hog ran under memory.max {}: it cannot have \
             fit without swapping at least {}",
            mib(report.pswpout_bytes),
            mib(p.hog_bytes),
            mib(p.mem_max),
            mib(must_swap)
        )
    })?;
    ensure(
        report.peak_used_kib > 0 && report.peak_cgroup_swap > 0,
        || {
            format!(
                "no swap use seen on {dev}: peak Used {} KiB, peak memory.swap.current {}",
                report.peak_used_kib, report.peak_cgroup_swap
            )
        },
    )?;
    drop(cg);
    swap.off()?;
    ensure(swap_used_kib(dev)?.is_none(), || {
        format!("{dev} is still listed in /proc/swaps after swapoff")
    })?;
    Ok(report)
}

/// The memory hog: this binary run as `hog MIB SEED`, forked and exec'ed by hand so that the
/// child joins the cgroup before exec (std's `Command::pre_exec` fails with ENOSYS in the
/// guest). Killed and reaped on drop if still running.
pub struct Hog {
    pid: Pid,
    running: bool,
}

impl Hog {
    /// Starts `hog MIB SEED ZEROS BALLAST` in the cgroup whose `cgroup.procs` is given (the
    /// root's for no limit).
    pub fn spawn(
        cgroup_procs: &str,
        log_path: &str,
        mib_count: u64,
        seed: u64,
        zeros: u32,
        ballast_mib: u64,
    ) -> Result<Self, String> {
        use std::ffi::CString;
        let cstr = |s: &str| CString::new(s).map_err(|e| format!("{s:?}: {e}"));
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let exe = cstr(&exe.display().to_string())?;
        let argv = [
            exe.clone(),
            cstr("hog")?,
            cstr(&mib_count.to_string())?,
            cstr(&seed.to_string())?,
            cstr(&zeros.to_string())?,
            cstr(&ballast_mib.to_string())?,
        ];
        let argv_ptrs: Vec<*const nix::libc::c_char> = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let procs = cstr(cgroup_procs)?;
        let log = std::fs::File::create(log_path).map_err(|e| format!("{log_path}: {e}"))?;
        let log_fd = log.as_raw_fd();
        // SAFETY: the test binary is single-threaded; the child only makes async-signal-safe
        // calls (open, write, close, dup2, execv, _exit) on memory prepared before the fork.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
            nix::unistd::ForkResult::Child => {
                // SAFETY: see above; every pointer is a NUL-terminated string (or the argv
                // array ending in a null pointer) that lives until exec or _exit.
                unsafe {
                    use nix::libc;
                    // Join the cgroup (writing "0" moves the writer) before anything runs.
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        libc::_exit(120);
                    }
                    libc::close(fd);
                    if libc::dup2(log_fd, 1) < 0 || libc::dup2(log_fd, 2) < 0 {
                        libc::_exit(121);
                    }
                    libc::execv(exe.as_ptr(), argv_ptrs.as_ptr());
                    libc::_exit(122)
                }
            }
            nix::unistd::ForkResult::Parent { child } => Ok(Self {
                pid: child,
                running: true,
            }),
        }
    }

    /// Makes the hog the OOM killer's first choice (it should never need one).
    pub fn oom_first(&self) -> Result<(), String> {
        let path = format!("/proc/{}/oom_score_adj", self.pid);
        std::fs::write(&path, "1000").map_err(|e| format!("{path}: {e}"))
    }

    /// The exit status once the hog has ended (120-122: joining the cgroup, redirecting
    /// output or exec failed in the child).
    pub fn try_wait(&mut self) -> Result<Option<WaitStatus>, String> {
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                self.running = false;
                Ok(Some(s))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(format!("waitpid(hog): {e}")),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        if self.running {
            let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// An anonymous private mapping, unmapped on drop.
struct AnonMap {
    ptr: *mut u8,
    len: usize,
}

impl AnonMap {
    fn new(len: usize) -> Result<Self, String> {
        Self::map(len, 0)
    }

    /// A mapping whose pages the kernel allocates at once (`MAP_POPULATE`); none for 0.
    fn populated(len: usize) -> Result<Option<Self>, String> {
        if len == 0 {
            return Ok(None);
        }
        Self::map(len, nix::libc::MAP_POPULATE).map(Some)
    }

    fn map(len: usize, flags: nix::libc::c_int) -> Result<Self, String> {
        // SAFETY: a fresh anonymous private mapping at an address the kernel picks; nothing
        // else refers to it.
        let ptr = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                len,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        if ptr == nix::libc::MAP_FAILED {
            return Err(format!("mmap {len}: {}", std::io::Error::last_os_error()));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn page_mut(&mut self, p: usize) -> &mut [u8] {
        let n = PAGE as usize;
        assert!((p + 1) * n <= self.len);
        // SAFETY: the mapping is `len` bytes, readable and writable, page `p` lies inside it
        // (checked above), and `&mut self` makes this the only reference into it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(p * n), n) }
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, and no reference into
        // it outlives `self`.
        unsafe { nix::libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// `rxdsk-guest-tests hog MIB SEED [ZEROS]`: maps MIB MiB, fills page p with
/// `fill_keyed(SEED, p)` (with ZEROS, only every ZEROS+1st page; the others are written with
/// zeros, which a swap device may store for free), then verifies every page twice (forward,
/// then backward, to make swap-ins go both ways).
/// Exit status 0: all verified; 2: mismatches; 3: bad arguments or no memory.
pub fn hog_main(args: &[String]) -> i32 {
    let (Some(mib_arg), Some(seed_arg)) = (args.first(), args.get(1)) else {
        eprintln!("usage: hog MIB SEED");
        return 3;
    };
    let (Ok(mib_count), Ok(seed)) = (mib_arg.parse::<usize>(), seed_arg.parse::<u64>()) else {
        eprintln!("hog: bad arguments {args:?}");
        return 3;
    };
    let zeros: usize = args.get(2).and_then(|z| z.parse().ok()).unwrap_or(0);
    // Memory taken (populated by the kernel, never checked) before the checked pages: what
    // brings the system near its limit fast.
    let ballast_mib: usize = args.get(3).and_then(|z| z.parse().ok()).unwrap_or(0);
    let _ballast = match AnonMap::populated(ballast_mib * MIB as usize) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("hog: ballast: {e}");
            return 3;
        }
    };
    if ballast_mib > 0 {
        println!("hog: {ballast_mib} MiB of ballast");
    }
    let fill = |page: &mut [u8], p: usize| {
        if p.checked_rem(zeros + 1) == Some(0) {
            blk::fill_keyed(page, seed, p as u64);
        } else {
            page.fill(0);
        }
    };
    let pages = mib_count * (MIB / PAGE) as usize;
    let mut map = match AnonMap::new(pages * PAGE as usize) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("hog: {e}");
            return 3;
        }
    };
    let start = Instant::now();
    for p in 0..pages {
        fill(map.page_mut(p), p);
    }
    println!("hog: wrote {pages} pages in {}s", start.elapsed().as_secs());
    let mut want = [0u8; PAGE as usize];
    for pass in 0..2 {
        let mut bad = 0usize;
        for i in 0..pages {
            let p = if pass == 0 { i } else { pages - 1 - i };
            fill(&mut want, p);
            if map.page_mut(p) != &want[..] {
                if bad < 5 {
                    println!("hog: pass {pass}: page {p} differs");
                }
                bad += 1;
            }
        }
        if bad > 0 {
            println!("hog: pass {pass}: {bad} of {pages} pages differ");
            return 2;
        }
        println!(
            "hog: pass {pass}: {pages} pages verified at {}s",
            start.elapsed().as_secs()
        );
    }
    0
}

// ---------------------------------------------------------------------------------------------
// check-device: the generic checks on any block device

/// `rxdsk-guest-tests check-device DEV CHECK...`: runs generic checks on another driver's
/// device (e.g. brd's /dev/ram0, 1 GiB) and prints KTAP. Checks: fio512, fio4096 (need 1 GiB),
/// discard (page-aligned ranges), discard-partial and zeroout-partial (also ranges inside
/// pages on a 512-byte-block device, and memory given back), ext2-4096, ext2-1024, swap.
/// brd passes all but the partial ones: its discard neither zeroes partial pages nor (through
/// BLKZEROOUT's fallback of writing zeros) frees memory, which shows those checks have teeth.
pub fn check_device_main(args: &[String]) -> i32 {
    let Some(dev) = args.first().cloned() else {
        eprintln!("usage: check-device DEV CHECK...");
        return 3;
    };
    let checks: Vec<String> = args[1..].to_vec();
    println!("KTAP version 1");
    println!("1..{}", checks.len());
    let mut ok = true;
    for (i, c) in checks.iter().enumerate() {
        let start = Instant::now();
        let r: Result<String, String> = match c.as_str() {
            "fio512" => fio_verify(&dev, "fio-verify-512.fio", blk::GIB).map(|s| format!("{s:?}")),
            "fio4096" => {
                fio_verify(&dev, "fio-verify-4096.fio", blk::GIB).map(|s| format!("{s:?}"))
            }
            "discard" => punch_check(&dev, Punch::Discard, 256 * MIB, false, &|| Ok(None))
                .map(|b| format!("base MemAvailable {}", mib(b))),
            "discard-partial" => punch_check(&dev, Punch::Discard, 256 * MIB, true, &|| Ok(None))
                .map(|b| format!("base MemAvailable {}", mib(b))),
            "zeroout-partial" => punch_check(&dev, Punch::ZeroOut, 256 * MIB, true, &|| Ok(None))
                .map(|b| format!("base MemAvailable {}", mib(b))),
            "ext2-4096" => fs_roundtrip(&dev, 4096).map(|b| format!("{b} bytes")),
            "ext2-1024" => fs_roundtrip(&dev, 1024).map(|b| format!("{b} bytes")),
            "swap" => swap_stress(
                &dev,
                &SwapParams {
                    hog_bytes: 192 * MIB,
                    mem_max: 48 * MIB,
                    timeout: Duration::from_secs(300),
                },
            )
            .map(|r| format!("{r:?}")),
            other => Err(format!("unknown check {other}")),
        };
        let secs = start.elapsed().as_secs();
        match r {
            Ok(info) => println!("# {c}: {info} ({secs}s)\nok {} {c}", i + 1),
            Err(e) => {
                ok = false;
                for l in e.lines() {
                    println!("# {l}");
                }
                println!("not ok {} {c} ({secs}s)", i + 1);
            }
        }
    }
    i32::from(!ok)
}

/// `fill DEV MIB SEED`: writes MIB MiB of pseudo-random data keyed by SEED from the start of
/// DEV (O_DIRECT).
pub fn fill_main(args: &[String]) -> i32 {
    let parsed = match args {
        [dev, mib, seed] => mib
            .parse::<u64>()
            .ok()
            .zip(seed.parse::<u64>().ok())
            .map(|(m, s)| (dev, m, s)),
        _ => None,
    };
    let Some((dev, mib, seed)) = parsed else {
        eprintln!("usage: rxdsk-guest-tests fill DEV MIB SEED");
        return 3;
    };
    let written = crate::blk::open_direct(dev, true)
        .and_then(|f| crate::blk::write_pattern(&f, 0, mib * crate::blk::MIB, seed).map(|_| ()));
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fill {dev}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_pages_counts_only_covered_pages() {
        assert_eq!(whole_pages(0, PAGE), 1);
        assert_eq!(whole_pages(512, PAGE), 0);
        assert_eq!(whole_pages(512, 2 * PAGE), 1);
        assert_eq!(whole_pages(3 * 512, 10 * PAGE + 2 * 512), 9);
        assert_eq!(whole_pages(40 * PAGE + 1024, 1024), 0);
        assert_eq!(whole_pages(60 * PAGE + 512, 2 * PAGE - 1024), 0);
        assert_eq!(whole_pages(64 * MIB, 32 * MIB), 32 * MIB / PAGE);
    }
}
