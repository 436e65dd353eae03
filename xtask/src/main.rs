//! `cargo xtask`: provisions the toolchain, builds the kernel, module and initramfs, boots QEMU,
//! runs the guest suite. Run without arguments for the task list.

mod apt;
mod bench;
mod chart;
mod console;
mod cpio;
mod deps;
mod distro;
#[cfg(test)]
mod doclinks;
mod initramfs;
mod kernel;
mod layers;
mod module;
mod package;
mod paths;
mod qemu;
mod uml;
mod util;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use util::{lock, run, Cmd};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "rxdsk build, VM and test automation",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Args, Clone, Default)]
struct KernelArgs {
    /// Build from this kernel source tree instead of Debian's linux-source.
    #[arg(long, value_name = "DIR")]
    src: Option<PathBuf>,
    /// Use the debug kernel flavour (KASAN, KFENCE, lockdep, kmemleak, fault injection).
    #[arg(long, conflicts_with = "uml")]
    debug: bool,
    /// Use the User-Mode Linux flavour (native-speed bench kernel; `kernel` and `module` only).
    #[arg(long)]
    uml: bool,
}

impl KernelArgs {
    fn flavour(&self) -> kernel::Flavour {
        if self.debug {
            kernel::DEBUG
        } else if self.uml {
            kernel::UML
        } else {
            kernel::GUEST
        }
    }
}

#[derive(Args, Clone)]
struct VmArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// Guest memory in MiB [default: 3072; the debug flavour 2048, where the tests that fill
    /// all memory (global pressure, the shrinker) pay KASAN and kmemleak on every page of it].
    #[arg(long)]
    mem: Option<u32>,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Put a file or directory into the guest under /extra/ (repeatable).
    #[arg(long = "add", value_name = "PATH")]
    add: Vec<PathBuf>,
    /// Attach a raw image file as a virtio disk (/dev/vda, /dev/vdb, ... in order; repeatable);
    /// created, or grown sparse, to SIZE (512M, 2G) if given.
    #[arg(long = "disk", value_name = "FILE[:SIZE]")]
    disks: Vec<qemu::DiskSpec>,
    /// Echo the whole serial console.
    #[arg(short, long)]
    verbose: bool,
}

impl VmArgs {
    fn mem_mib(&self) -> u32 {
        self.mem
            .unwrap_or(if self.kernel.debug { 2048 } else { 3072 })
    }
}

/// Which guest tests run.
#[derive(Args, Clone, Default)]
struct TestSelection {
    /// Run only this test (repeatable; module_load is needed by most device tests).
    #[arg(long, value_name = "TEST")]
    only: Vec<String>,
    /// Skip this test (repeatable).
    #[arg(long, value_name = "TEST")]
    skip: Vec<String>,
}

impl TestSelection {
    fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut files = Vec::new();
        if !self.only.is_empty() {
            files.push(("etc/rxdsk-tests-only", self.only.join("\n").into_bytes()));
        }
        if !self.skip.is_empty() {
            files.push(("etc/rxdsk-tests-skip", self.skip.join("\n").into_bytes()));
        }
        files
    }
}

/// Size of the guest suite's scratch disk (sparse on the host).
const SCRATCH_DISK_BYTES: u64 = 512 << 20;
/// The second scratch disk: a 1 GiB device, its journal and its metadata.
const BIG_SCRATCH_DISK_BYTES: u64 = 1088 << 20;

/// The slow data-volume tests, left out of CI's short run on the debug flavour (they run in
/// full on the normal flavour in the same CI run, and in `cargo xtask soak`). Swap runs on
/// both: GFP_NOIO under reclaim is what lockdep must watch.
const DEBUG_SHORT_SKIP: &[&str] = &[
    "fio_verify_512",
    "fio_verify_4096",
    "ext2_roundtrip_512",
    // Accounting against zram's: the same on both kernels; the compressed paths it takes run
    // under KASAN in the other compress_ tests.
    "compress_vs_zram_ratio",
    // The cache's policy measured (hit ratios): the same on both kernels; eviction's locking
    // runs under lockdep and KASAN in cache_bigger_than_ram_plain and _lz4.
    "cache_hot_set_survives_scan",
    // The 1 GiB / 64 MiB geometry: the code it runs is cache_bigger_than_ram_plain's,
    // which runs on the debug kernel at 64 MiB / 8 MiB.
    "cache_one_gib_plain",
];

#[derive(Subcommand)]
enum Task {
    /// Check, and as root install, the build dependencies.
    Deps,
    /// The kernel module's import graph, file by file, and what breaks its layering (imports
    /// that reach up, circles, `bindings::` outside `sys/`); non-zero exit if anything does.
    Layers,
    /// Build (or reuse the cached) guest kernel.
    Kernel {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Rebuild even if the cache is up to date.
        #[arg(long)]
        rebuild: bool,
    },
    /// Build rxdsk.ko against the guest kernel (CLIPPY=1, warnings are errors).
    Module {
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Build the guest initramfs.
    Initramfs {
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Boot the guest and run the guest test suite.
    TestVm {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        select: TestSelection,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Interactive guest shell with rxdsk loaded, or run one command with --run.
    Vm {
        #[command(flatten)]
        vm: VmArgs,
        /// Run this shell command in the guest, print its output, exit with its status.
        #[arg(long, value_name = "CMD")]
        run: Option<String>,
        /// Give up on --run after this many seconds.
        #[arg(long, default_value_t = 1200)]
        timeout: u64,
    },
    /// Power cuts: a guest killed (SIGKILL) during or right after a flush, a fresh guest
    /// restoring from the same disk (part of `test`).
    PowerCut {
        #[command(flatten)]
        vm: VmArgs,
        /// Only this variant (repeatable; e.g. stamp-journal-cache)
        #[arg(long = "only", value_name = "VARIANT")]
        only: Vec<String>,
    },
    /// Two guests on one link (QEMU socket netdev over 127.0.0.1): one exports an rxdsk device
    /// over NVMe/TCP, the other connects by IPv6 link-local address (part of `test`).
    TestNvmeTcp {
        #[command(flatten)]
        vm: VmArgs,
    },
    /// The main job: boot, create a device, run a short fio workload, show list and stats.
    Demo {
        #[command(flatten)]
        vm: VmArgs,
    },
    /// rxdsk against brd, zram and null_blk: native (in-kernel, UML) and fio (QEMU) tables.
    Bench {
        #[command(flatten)]
        vm: VmArgs,
        /// One short round (under three minutes after the build) instead of the thorough run.
        #[arg(long)]
        quick: bool,
        /// Only the native (UML) table: for iterating on performance.
        #[arg(long)]
        native_only: bool,
        /// Only the tiering section (rxdsk against dm-cache and bcache, one guest): for
        /// iterating on it; writes target/bench/tiering.{txt,json}.
        #[arg(long, conflicts_with = "native_only")]
        only_tiering: bool,
    },
    /// Long fio verify with discards and online grow/shrink, on the debug kernel flavour.
    Soak {
        #[command(flatten)]
        vm: VmArgs,
        /// How long to run at least.
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// GiB to write and verify at least (it runs until both minimums are reached).
        #[arg(long, default_value_t = 8)]
        min_gib: u32,
    },
    /// Debian packages in target/packages/: rxdskctl (CLI, man pages, completions) and
    /// rxdsk-dkms (module sources for DKMS), checked with lintian.
    Package,
    /// Proof in a real distribution: the kernel as Debian packages, a Debian image
    /// (mmdebstrap), boots that install our packages (DKMS builds rxdsk.ko in the guest), use
    /// them and purge them. Separate from `test`: about 25 minutes under TCG.
    TestDistro {
        /// Echo the whole serial console.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Everything CI runs: host checks (fmt, clippy, unit tests), the packages, the guest suite
    /// on both kernel flavours, the power cuts, NVMe/TCP between two guests, the Debian guest.
    Test {
        #[command(flatten)]
        vm: VmArgs,
    },
}

/// Kernel, module and initramfs, ready to boot.
#[derive(Clone)]
struct Artifacts {
    kernel: kernel::KernelBuild,
    initramfs: PathBuf,
}

fn prepare_kernel(
    args: &KernelArgs,
    rebuild: bool,
) -> Result<(kernel::KernelBuild, deps::KernelToolchain)> {
    let tc = deps::ensure()?;
    let src = kernel::source(args.src.as_deref())?;
    let k = kernel::build(args.flavour(), &src, &tc, rebuild)?;
    Ok((k, tc))
}

fn prepare(args: &KernelArgs) -> Result<Artifacts> {
    let (k, tc) = prepare_kernel(args, false)?;
    let ko = module::build(&k, &tc)?;
    let bench_ko = module::build_bench(&k, &tc)?;
    let initramfs = initramfs::build(&k, &[&ko, &bench_ko])?;
    Ok(Artifacts {
        kernel: k,
        initramfs,
    })
}

fn boot(
    a: &Artifacts,
    vm: &VmArgs,
    mode: &'static str,
    files: &[(&str, Vec<u8>)],
    timeout: u64,
) -> Result<qemu::Boot> {
    let initrd = initramfs::overlay(&a.initramfs, files, &vm.add)?;
    let disks = vm
        .disks
        .iter()
        .map(qemu::DiskSpec::prepare)
        .collect::<Result<Vec<_>>>()?;
    Ok(qemu::Boot {
        disks,
        kernel: a.kernel.image.clone(),
        initrd: Some(initrd),
        cmdline: None,
        shutdown_grace: Duration::from_secs(10),
        mode,
        memory_mib: vm.mem_mib(),
        cpus: vm.cpus,
        timeout: Duration::from_secs(timeout),
        log: paths::target().join(format!("console-{mode}-{}.log", a.kernel.flavour.name)),
        kill_on: None,
        label: "",
        net: None,
    })
}

/// Runs the guest suite; prints each test and the flavour's summary, returns the summary.
fn test_vm(vm: &VmArgs, select: &TestSelection, timeout: u64) -> Result<console::Summary> {
    test_vm_labelled(&prepare(&vm.kernel)?, vm, select, timeout, "")
}

/// [`test_vm`] on prepared artifacts, every echoed line starting with `label`.
fn test_vm_labelled(
    a: &Artifacts,
    vm: &VmArgs,
    select: &TestSelection,
    timeout: u64,
    label: &'static str,
) -> Result<console::Summary> {
    let mut b = boot(a, vm, "test", &select.files(), timeout)?;
    b.label = label;
    // Fresh, sparse scratch disks for the backing-device tests: /dev/vda in the guest
    // unless --disk put others first, and a bigger one after it (/dev/vdb) for the 1 GiB
    // cache device.
    for (name, size) in [
        ("scratch", SCRATCH_DISK_BYTES),
        ("scratch-big", BIG_SCRATCH_DISK_BYTES),
    ] {
        let path = paths::target().join(format!("{name}-{}.img", a.kernel.flavour.name));
        let _ = std::fs::remove_file(&path);
        b.disks.push(
            qemu::DiskSpec {
                path,
                size: Some(size),
            }
            .prepare()?,
        );
    }
    eprintln!(
        "{label}[vm] running the guest suite ({} kernel {})",
        a.kernel.flavour.name, a.kernel.release
    );
    let start = Instant::now();
    let done = qemu::run(
        &b,
        if vm.verbose {
            qemu::Echo::All
        } else {
            qemu::Echo::Results
        },
    )?;
    let summary = done.console.suite_summary(done.timed_out);
    for p in &summary.problems {
        println!("problem: {p}");
    }
    eprintln!(
        "{label}[vm] {} guest, {}s",
        done.accel.name(),
        start.elapsed().as_secs()
    );
    Ok(summary)
}

/// Boots the guest in run mode with `script` as its workload; returns what the console showed
/// and where the console log is.
fn run_script(
    a: &Artifacts,
    vm: &VmArgs,
    script: String,
    timeout: u64,
) -> Result<(qemu::Finished, PathBuf)> {
    let b = boot(
        a,
        vm,
        "run",
        &[("etc/rxdsk-run.sh", script.into_bytes())],
        timeout,
    )?;
    let echo = if vm.verbose {
        qemu::Echo::All
    } else {
        qemu::Echo::RunOutput
    };
    Ok((qemu::run(&b, echo)?, b.log))
}

/// Runs a script in the guest; returns its exit status (1 if it never reported one, or if the
/// kernel reported a problem while it ran).
fn vm_run(vm: &VmArgs, script: String, timeout: u64) -> Result<i32> {
    let a = prepare(&vm.kernel)?;
    let (done, _) = run_script(&a, vm, script, timeout)?;
    Ok(script_status(&done))
}

/// The main job: the device tour, then a device flushed to a backing disk, the guest stopped
/// dead, and the data restored in a second boot on the same disk.
fn demo(vm: &VmArgs) -> Result<i32> {
    let a = prepare(&vm.kernel)?;
    let (done, _) = run_script(&a, vm, "sh /usr/share/rxdsk-tests/demo.sh".into(), 900)?;
    let status = script_status(&done);
    if status != 0 {
        return Ok(status);
    }
    let disk = paths::target().join("demo-backing.img");
    eprintln!(
        "[demo] part 2: the backing disk {} carries a device across a dead stop",
        disk.display()
    );

    let _ = std::fs::remove_file(&disk);
    let with_disk = |size| {
        let mut v = vm.clone();
        v.disks.insert(
            0,
            qemu::DiskSpec {
                path: disk.clone(),
                size,
            },
        );
        v
    };
    let (first, _) = run_script(
        &a,
        &with_disk(Some(512 << 20)),
        "sh /usr/share/rxdsk-tests/demo-backing-1.sh".into(),
        900,
    )?;
    let sha = first
        .console
        .data
        .iter()
        .find_map(|d| d.strip_prefix("demo-sha "))
        .map(str::to_string);
    let Some(sha) = sha else {
        eprintln!("[demo] the first boot reported no checksum");
        return Ok(1);
    };
    if first.console.exit_status.is_some() || !first.console.reports.is_empty() {
        eprintln!("[demo] the first boot did not stop dead after the flush, or the kernel reported problems");
        return Ok(1);
    }
    eprintln!(
        "[demo] the first guest stopped without a shutdown; booting a fresh one on the same disk"
    );
    let (second, _) = run_script(
        &a,
        &with_disk(None),
        format!("sh /usr/share/rxdsk-tests/demo-backing-2.sh {sha}"),
        900,
    )?;
    let status = script_status(&second);
    if status != 0 {
        return Ok(status);
    }
    demo_live_power_cut(&a, vm)
}

/// The main job, part 3: the power cut under live use of `cargo xtask test`
/// (`power_cut_stamp_direct_plain`), shown: a writer stamps every block it writes with its
/// operation's number while flushes are taken, QEMU is killed right after one returned with
/// the writer still running, and a fresh guest restores the device and finds it equal to the
/// state after a prefix of the writes, no older than that flush.
fn demo_live_power_cut(a: &Artifacts, vm: &VmArgs) -> Result<i32> {
    const VARIANT: &str = "stamp-direct-plain";
    eprintln!(
        "[demo] part 3: a power cut under live use: a writer runs through the flushes, the guest \
         is killed right after one returns, a fresh guest restores and checks the device"
    );
    let disk = paths::target().join("demo-live.img");
    let _ = std::fs::remove_file(&disk);
    let with_disk = |size| {
        let mut v = vm.clone();
        v.disks = vec![qemu::DiskSpec {
            path: disk.clone(),
            size,
        }];
        v
    };
    let mut b = boot(
        a,
        &with_disk(Some(512 << 20)),
        "run",
        &[(
            "etc/rxdsk-run.sh",
            format!("sh /usr/share/rxdsk-tests/powercut.sh cut {VARIANT}").into_bytes(),
        )],
        900,
    )?;
    b.kill_on = Some("powercut-kill");
    let first = qemu::run(&b, qemu::Echo::RunOutput)?;
    let args = match cut_verdict(&first) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("[demo] the cut boot failed: {why}");
            return Ok(1);
        }
    };
    if let [_seed, lo, hi] = args.split_whitespace().collect::<Vec<_>>()[..] {
        eprintln!(
            "[demo] a seeded writer (4 KiB writes, each block stamped with its operation's number, \
             and discards) ran while the device was flushed: the flush began after operation {lo} \
             and returned before operation {hi}"
        );
    }
    eprintln!(
        "[demo] the guest was killed (SIGKILL) right after, the writer still running; a fresh \
         guest restores the device and finds which state it holds"
    );
    let (second, _) = run_script(
        a,
        &with_disk(None),
        format!("sh /usr/share/rxdsk-tests/powercut.sh check {VARIANT} /dev/vda {args}"),
        900,
    )?;
    Ok(script_status(&second))
}

/// The variants of `qemu-tests/guest/powercut.sh`: a writer that stops before the flush
/// first, then cuts under live use (a writer running through the flushes and the cut; two
/// rounds of the random cut with a journal, on each store).
const POWER_CUTS: [&str; 13] = [
    "after-flush",
    "journal-before-commit",
    "journal-after-commit",
    "no-journal",
    "filesystem",
    "stamp-journal-plain",
    "stamp-journal-plain-2",
    "stamp-journal-lz4",
    "stamp-journal-lz4-2",
    "stamp-direct-plain",
    "stamp-direct-lz4",
    "stamp-journal-cache",
    "ext4-live",
];

/// The power cuts the debug flavour runs: each kind once (the second rounds of the random cut,
/// `-2`, run on the normal flavour).
fn debug_power_cuts() -> Vec<&'static str> {
    POWER_CUTS
        .into_iter()
        .filter(|v| !v.ends_with("-2"))
        .collect()
}

/// What the check boot of a power cut needs from its cut boot (the arguments after the disk of
/// `powercut.sh check`), or why the cut failed.
fn cut_verdict(first: &qemu::Finished) -> Result<String, String> {
    let shas = first
        .console
        .data
        .iter()
        .find_map(|d| d.strip_prefix("powercut-sha "));
    // Under live use: the last flush that returned before the cut bounds the restore.
    let bound = first
        .console
        .data
        .iter()
        .rev()
        .find_map(|d| d.strip_prefix("powercut-bound "));
    match shas {
        _ if !first.killed => Err("the guest never asked for the cut".into()),
        _ if !first.console.reports.is_empty() => Err("the kernel reported problems".into()),
        None => Err("the guest printed no checksum".into()),
        Some(shas) => Ok(match bound {
            Some(b) => format!("{shas} {b}"),
            None => shas.to_string(),
        }),
    }
}

/// The power cuts: a boot per variant on its own fresh disk, killed with SIGKILL the moment
/// the guest says so; then one boot with all the disks (in variant order: /dev/vda, vdb, ...)
/// that restores and checks each. Result lines start with `label`.
fn power_cuts(
    a: &Artifacts,
    vm: &VmArgs,
    variants: &[&str],
    label: &'static str,
) -> Result<console::Summary> {
    let verdicts: Vec<_> = variants
        .iter()
        .map(|v| power_cut(a, vm, v, label))
        .collect();
    power_cut_checks(a, vm, variants, verdicts, label)
}

/// The power-cut disk of `variant` on `a`'s flavour.
fn power_cut_disk(a: &Artifacts, variant: &str) -> PathBuf {
    paths::target().join(format!("powercut-{}-{variant}.img", a.kernel.flavour.name))
}

/// A guest booted with `disks` that runs `script`; killed when it asks for the cut if `kill`.
fn power_cut_boot(
    a: &Artifacts,
    vm: &VmArgs,
    disks: Vec<qemu::DiskSpec>,
    script: String,
    kill: bool,
    log: String,
    label: &'static str,
) -> Result<qemu::Finished> {
    let mut v = vm.clone();
    v.disks = disks;
    let mut b = boot(
        a,
        &v,
        "run",
        &[("etc/rxdsk-run.sh", script.into_bytes())],
        600,
    )?;
    b.label = label;
    b.kill_on = kill.then_some("powercut-kill");
    b.log = paths::target().join(log);
    qemu::run(&b, qemu::Echo::Results)
}

/// One power cut's first boot, on a fresh disk: what its check needs, or why it failed.
fn power_cut(
    a: &Artifacts,
    vm: &VmArgs,
    variant: &str,
    label: &'static str,
) -> Result<String, String> {
    let disk = power_cut_disk(a, variant);
    let _ = std::fs::remove_file(&disk);
    let spec = qemu::DiskSpec {
        path: disk,
        size: Some(512 << 20),
    };
    let first = power_cut_boot(
        a,
        vm,
        vec![spec],
        format!("sh /usr/share/rxdsk-tests/powercut.sh cut {variant}"),
        true,
        format!("console-powercut-{}-{variant}.log", a.kernel.flavour.name),
        label,
    )
    .map_err(|e| format!("the guest did not run: {e:#}"))?;
    cut_verdict(&first)
}

/// One restoring boot for every variant that was cut (`verdicts` in `variants`' order); prints
/// a result line per variant.
fn power_cut_checks(
    a: &Artifacts,
    vm: &VmArgs,
    variants: &[&str],
    verdicts: Vec<Result<String, String>>,
    label: &'static str,
) -> Result<console::Summary> {
    let flavour = a.kernel.flavour.name;
    let mut script = String::new();
    let mut disks = Vec::new();
    for (variant, verdict) in variants.iter().zip(&verdicts) {
        if let Ok(shas) = verdict {
            let dev = format!("/dev/vd{}", char::from(b'a' + disks.len() as u8));
            disks.push(qemu::DiskSpec {
                path: power_cut_disk(a, variant),
                size: None,
            });
            script += &format!(
                "if sh /usr/share/rxdsk-tests/powercut.sh check {variant} {dev} {shas}; \
                 then echo 'RXDSK-DATA powercut-result {variant} ok'; \
                 else echo 'RXDSK-DATA powercut-result {variant} failed'; fi\n"
            );
        }
    }
    let checked = if disks.is_empty() {
        None
    } else {
        Some(power_cut_boot(
            a,
            vm,
            disks,
            script,
            false,
            format!("console-powercut-{flavour}-check.log"),
            label,
        )?)
    };
    let mut summary = console::Summary::default();
    for (n, (variant, verdict)) in variants.iter().zip(verdicts).enumerate() {
        let result = verdict.and_then(|_| {
            let done = checked.as_ref().ok_or("no check boot")?;
            if !done.console.reports.is_empty() {
                return Err("the kernel reported problems in the check boot".to_string());
            }
            match done
                .console
                .data
                .iter()
                .find_map(|d| d.strip_prefix(&format!("powercut-result {variant} ")))
            {
                Some("ok") => Ok(String::new()),
                Some(_) => Err("the restore check failed".into()),
                None => Err("the check boot did not get to it".into()),
            }
        });
        let name = format!("power_cut_{}", variant.replace('-', "_"));
        match result {
            Ok(_) => {
                summary.passed += 1;
                println!("{label}  {:>3} {name:<48} ok", n + 1);
            }
            Err(why) => {
                summary.failed += 1;
                println!("{label}  {:>3} {name:<48} FAIL", n + 1);
                println!("{label}        # {why}; console logs: target/xtask/console-powercut-{flavour}-{{{variant},check}}.log");
            }
        }
    }
    Ok(summary)
}

/// Work shared by the lanes of `test`: each lane, once its own guest is done, takes the next
/// job until none is left.
#[derive(Default)]
struct Queue<'a>(Mutex<VecDeque<Box<dyn FnOnce() + Send + 'a>>>);

impl<'a> Queue<'a> {
    fn push(&self, job: impl FnOnce() + Send + 'a) {
        lock(&self.0).push_back(Box::new(job));
    }

    fn drain(&self) {
        while let Some(job) = lock(&self.0).pop_front() {
            job();
        }
    }
}

/// One flavour's power cuts taken one by one from a [`Queue`]: whichever lane finishes the
/// last cut runs the check boot.
struct CutRound<'a> {
    a: &'a Artifacts,
    vm: &'a VmArgs,
    label: &'static str,
    variants: Vec<&'static str>,
    /// Each variant's verdict once its cut has run.
    verdicts: Mutex<Vec<Option<Result<String, String>>>>,
    summary: Mutex<Option<Result<console::Summary>>>,
}

impl<'a> CutRound<'a> {
    fn new(
        a: &'a Artifacts,
        vm: &'a VmArgs,
        variants: Vec<&'static str>,
        label: &'static str,
    ) -> Self {
        Self {
            a,
            vm,
            label,
            verdicts: Mutex::new(vec![None; variants.len()]),
            variants,
            summary: Mutex::new(None),
        }
    }

    fn cut(&self, i: usize) {
        let verdict = power_cut(self.a, self.vm, self.variants[i], self.label);
        let all = {
            let mut verdicts = lock(&self.verdicts);
            verdicts[i] = Some(verdict);
            // The last cut to end takes them all.
            verdicts
                .iter()
                .all(Option::is_some)
                .then(|| verdicts.iter_mut().filter_map(Option::take).collect())
        };
        if let Some(verdicts) = all {
            let checked = power_cut_checks(self.a, self.vm, &self.variants, verdicts, self.label);
            *lock(&self.summary) = Some(checked);
        }
    }

    fn summary(&self) -> Result<console::Summary> {
        lock(&self.summary)
            .take()
            .unwrap_or_else(|| Err(anyhow::anyhow!("the power cuts were not all run")))
    }
}

/// Whether a socket listens on 127.0.0.1:`port` (/proc/net/tcp: little-endian address, hex
/// port, state 0A).
fn listening_on_loopback(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
    })
}

/// What the two-guest NVMe/TCP run measured: 4k random-read IOPS over the network and on the
/// target itself (emulated under TCG: only their ratio means anything).
pub struct NvmeIops {
    pub local: f64,
    pub remote: f64,
}

/// The two-guest NVMe/TCP test: guest A exports an rxdsk device over NVMe/TCP, guest B
/// connects to it across a virtio-net link carried by QEMU's socket netdev on 127.0.0.1; they
/// address each other by IPv6 link-local address and coordinate over a TCP connection of
/// their own (qemu-tests/src/pair.rs). Prints the result like a suite line.
fn nvme_tcp_pair(a: &Artifacts, vm: &VmArgs) -> Result<(console::Summary, Option<NvmeIops>)> {
    let flavour = a.kernel.flavour.name;
    // A free port on the loopback address for guest A's end of the link.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let target_link = qemu::Link {
        mac: "52:54:00:72:78:0a".into(),
        listen: true,
        port,
    };
    let host_link = qemu::Link {
        mac: "52:54:00:72:78:0b".into(),
        listen: false,
        port,
    };
    let target_addr = target_link.link_local()?;
    let guest = |role: &str, script: String, link: qemu::Link, label: &'static str| {
        let mut v = vm.clone();
        v.disks.clear();
        let mut b = boot(
            a,
            &v,
            "run",
            &[("etc/rxdsk-run.sh", script.into_bytes())],
            1500,
        )?;
        b.net = Some(link);
        b.label = label;
        b.log = paths::target().join(format!("console-nvme-{role}-{flavour}.log"));
        let _ = std::fs::remove_file(&b.log);
        anyhow::Ok(b)
    };
    let target = guest(
        "target",
        "rxdsk-guest-tests pair-target".into(),
        target_link,
        "[nvme-a] ",
    )?;
    let host = guest(
        "host",
        format!("rxdsk-guest-tests pair-host {target_addr}"),
        host_link,
        "[nvme-b] ",
    )?;
    let started = Instant::now();
    let target_run = std::thread::spawn(move || qemu::run(&target, qemu::Echo::Results));
    // The host's QEMU connects to the target's listening socket once, at start: wait until the
    // kernel lists it (a probing connect would be taken for the peer).
    while !listening_on_loopback(port) && started.elapsed() < Duration::from_secs(120) {
        if target_run.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let host_done = qemu::run(&host, qemu::Echo::Results);
    let target_done = target_run
        .join()
        .map_err(|_| anyhow::anyhow!("the target guest's runner panicked"))?;
    let (target_done, host_done) = (target_done?, host_done?);
    let role_verdict = |done: &qemu::Finished, role: &str| -> Result<(), String> {
        let data = |prefix: &str| {
            done.console
                .data
                .iter()
                .find_map(|d| d.strip_prefix(prefix).map(str::to_string))
        };
        if !done.console.reports.is_empty() {
            return Err(format!("the {role}'s kernel reported problems"));
        }
        match data(&format!("pair-{role} ")) {
            Some(v) if v == "ok" => Ok(()),
            Some(why) => Err(format!("{role}: {why}")),
            None if done.timed_out => Err(format!("the {role} guest timed out")),
            None => Err(format!("the {role} guest gave no verdict")),
        }
    };
    let iops = |which: &str| {
        host_done.console.data.iter().find_map(|d| {
            d.strip_prefix(&format!("nvme-iops {which} "))?
                .parse::<f64>()
                .ok()
        })
    };
    let measured = match (iops("local"), iops("remote")) {
        (Some(local), Some(remote)) => Some(NvmeIops { local, remote }),
        _ => None,
    };
    let result = role_verdict(&target_done, "target").and(role_verdict(&host_done, "host"));
    let mut summary = console::Summary::default();
    let name = "nvme_tcp_two_guests";
    let took = started.elapsed().as_secs();
    match result {
        Ok(()) => {
            summary.passed = 1;
            println!("  {:>3} {name:<48} ok ({took} s)", 1);
        }
        Err(why) => {
            summary.failed = 1;
            println!("  {:>3} {name:<48} FAIL", 1);
            println!(
                "        # {why}; console logs: target/xtask/console-nvme-{{target,host}}-{flavour}.log"
            );
        }
    }
    if let Some(m) = &measured {
        println!(
            "        # 4k random reads (emulated, {}): remote {:.0} IOPS, local {:.0} IOPS",
            host_done.accel.name(),
            m.remote,
            m.local
        );
    }
    Ok((summary, measured))
}

/// A finished script's exit status: 1 if it never reported one, or if the kernel reported a
/// problem while it ran.
fn script_status(done: &qemu::Finished) -> i32 {
    let status = match done.console.exit_status {
        Some(s) => s,
        None => {
            eprintln!(
                "[vm] the command did not finish{}",
                if done.timed_out { " (timeout)" } else { "" }
            );
            1
        }
    };
    if !done.console.reports.is_empty() && status == 0 {
        eprintln!("[vm] the kernel reported problems (see above): failing");
        return 1;
    }
    status
}

/// The heading of the native table and chart panel.
fn native_head(cpus: u32) -> String {
    format!(
        "NATIVE: rxdsk_bench (in-kernel, queue depth 1 per thread) in User-Mode Linux, {cpus} CPUs"
    )
}

/// The tiering bench: one guest with a fresh slow disk (/dev/vda) runs bench-tiering.sh on the
/// Zipf traces made here, with make-bcache put in beside it when the host has it.
fn bench_tiering(a: &Artifacts, vm: &VmArgs, plan: &bench::TieringPlan) -> Result<bench::Tiering> {
    let disk = paths::target().join(format!("bench-tiering-{}.img", a.kernel.flavour.name));
    let _ = std::fs::remove_file(&disk);
    let mut with_disk = vm.clone();
    with_disk.disks.insert(
        0,
        qemu::DiskSpec {
            path: disk.clone(),
            size: Some(plan.disk_bytes()),
        },
    );
    let mut files = vec![("etc/rxdsk-run.sh".to_string(), plan.script().into_bytes())];
    files.extend(plan.trace_files());
    match bench::bcache_tools() {
        Ok(tools) => files.extend(tools),
        Err(why) => eprintln!("[bench] tiering: bcache cannot be set up: {why}"),
    }
    let files: Vec<(&str, Vec<u8>)> = files
        .iter()
        .map(|(path, data)| (path.as_str(), data.clone()))
        .collect();
    let mut b = boot(a, &with_disk, "run", &files, 1200)?;
    // Its own log: other `run` guests write console-run-*.log.
    b.log = paths::target().join(format!(
        "console-bench-tiering-{}.log",
        a.kernel.flavour.name
    ));
    let echo = if vm.verbose {
        qemu::Echo::All
    } else {
        qemu::Echo::RunOutput
    };
    let done = qemu::run(&b, echo)?;
    let _ = std::fs::remove_file(&disk);
    if done.console.exit_status != Some(0) || !done.console.reports.is_empty() {
        bail!(
            "the tiering bench failed in the guest (console log: {})",
            b.log.display()
        );
    }
    let mut results = bench::Results::default();
    bench::parse(&done.console, &mut results)?;
    Ok(bench::Tiering::new(&results, plan, done.accel.name()))
}

/// `cargo xtask bench`: the native table (rxdsk_bench under UML) and the user's view (fio in
/// QEMU), medians of several rounds; outputs under target/bench/.
fn bench_all(vm: &VmArgs, quick: bool, native_only: bool, only_tiering: bool) -> Result<i32> {
    let bench::Plan {
        repeats,
        bursts,
        ios_4k,
        runtime_ms,
        span_mb,
        criterion_args,
        tiering: tiering_plan,
    } = if quick {
        bench::Plan::QUICK
    } else {
        bench::Plan::THOROUGH
    };
    let out = paths::repo().join("target/bench");
    if only_tiering {
        let tiering = bench_tiering(&prepare(&vm.kernel)?, vm, &tiering_plan)?;
        print!("{}", tiering.table);
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("tiering.txt"), &tiering.table)?;
        std::fs::write(
            out.join("tiering.json"),
            serde_json::to_string_pretty(&tiering.json)?,
        )?;
        eprintln!("[bench] wrote {}/tiering.{{txt,json}}", out.display());
        return Ok(0);
    }
    let tc = deps::ensure()?;
    let src = kernel::source(vm.kernel.src.as_deref())?;
    let mut results = bench::Results::default();

    // Native: UML runs kernel code at native speed.
    let uml = kernel::build(kernel::UML, &src, &tc, false)?;
    let rxdsk_uml = module::build(&uml, &tc)?;
    let bench_uml = module::build_bench(&uml, &tc)?;
    let rxdskctl = initramfs::guest_binaries()?
        .into_iter()
        .find(|p| p.ends_with("rxdskctl"))
        .context("rxdskctl")?;
    let env = bench::Env {
        prologue: format!(
            "mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; \
             mount -t tmpfs tmpfs /tmp; \
             for dep in $(modinfo -F depends {ko} | tr , ' '); do modprobe -d {root} $dep; done; insmod {ko}",
            ko = rxdsk_uml.display(),
            root = uml.modules_root.display()
        ),
        rxdskctl: rxdskctl.display().to_string(),
        modprobe: format!("modprobe -d {}", uml.modules_root.display()),
        bench_ko: bench_uml.display().to_string(),
    };
    eprintln!(
        "[bench] native: rxdsk_bench in User-Mode Linux ({repeats} load(s) of {bursts} interleaved bursts per job)"
    );
    let script = format!(
        "( {} ); echo \"RXDSK-EXIT: $?\"",
        bench::kbench_script(&env, span_mb, repeats, bursts, ios_4k)
    );
    let native = uml::run(
        &uml,
        &script,
        vm.cpus,
        3072,
        Duration::from_secs(1800),
        vm.verbose,
    )?;
    if native.timed_out
        || native.console.exit_status != Some(0)
        || !native.console.reports.is_empty()
    {
        bail!("the native bench failed in UML (see above)");
    }
    bench::parse(&native.console, &mut results)?;

    if native_only {
        let rows = bench::rows(&results.samples);
        let report = bench::Report {
            header: format!(
                "rxdsk bench (native only), kernel {} ({}), {} CPUs, span {span_mb} MiB, {} load(s), medians",
                uml.release, uml.source.version, vm.cpus, repeats
            ),
            native_head: native_head(vm.cpus),
            native_mem: &results,
            emulated: None,
            rows: &rows,
            network: None,
            tiering: None,
        };
        print!("{}", report.text());
        report.write(&out)?;
        eprintln!(
            "[bench] wrote {}/latest.{{json,md,txt,png,svg}}",
            out.display()
        );
        return Ok(0);
    }
    let native_mem = std::mem::take(&mut results.mem_kib);

    // The user's view: fio in the QEMU guest.
    let a = prepare(&vm.kernel)?;
    let env = bench::Env {
        prologue: String::new(),
        rxdskctl: "rxdskctl".into(),
        modprobe: "modprobe".into(),
        bench_ko: "/lib/modules/rxdsk_bench.ko".into(),
    };
    eprintln!(
        "[bench] emulated: fio in QEMU ({repeats} round(s) of {} s jobs)",
        f64::from(runtime_ms) / 1000.0
    );
    let script = bench::fio_script(&env, span_mb, repeats, runtime_ms);
    let (done, log) = run_script(&a, vm, script, 3600)?;
    if done.console.exit_status != Some(0) || !done.console.reports.is_empty() {
        bail!(
            "the fio bench failed in the guest (console log: {})",
            log.display()
        );
    }
    bench::parse(&done.console, &mut results)?;
    if done.accel == qemu::Accel::Kvm {
        // Under KVM the guest runs natively too; keep the label honest all the same.
        eprintln!("[bench] note: the fio view ran under KVM");
    }

    eprintln!(
        "[bench] emulated: tiering, rxdsk against dm-cache and bcache ({} MiB cache over {} MiB, one guest)",
        tiering_plan.cache_mb, tiering_plan.region_mb
    );
    let tiering = bench_tiering(&a, vm, &tiering_plan)?;

    eprintln!("[bench] emulated: NVMe/TCP export between two guests, remote against local IOPS");
    let (pair, iops) = nvme_tcp_pair(&a, vm)?;
    let network = match iops {
        Some(m) if pair.ok() => bench::network_table(done.accel.name(), m.local, m.remote),
        _ => bail!("the two-guest NVMe/TCP run failed (see above)"),
    };

    let rows = bench::rows(&results.samples);
    let header = format!(
        "rxdsk bench, kernel {} ({}), {} vCPUs, {} MiB guest RAM, span {span_mb} MiB, {} round(s), medians",
        a.kernel.release,
        a.kernel.source.version,
        vm.cpus,
        vm.mem_mib(),
        repeats
    );
    let emu_head = format!(
        "EMULATED: fio in QEMU/{}{}, direct I/O, numjobs={}",
        done.accel.name(),
        if done.accel == qemu::Accel::Tcg {
            " (software emulation: ratios are distorted)"
        } else {
            ""
        },
        vm.cpus
    );
    let mem_native = bench::Results {
        mem_kib: native_mem,
        ..Default::default()
    };
    let report = bench::Report {
        header,
        native_head: native_head(vm.cpus),
        native_mem: &mem_native,
        emulated: Some((emu_head, &results)),
        rows: &rows,
        network: Some(network),
        tiering: Some(tiering),
    };
    print!("{}", report.text());
    report.write(&out)?;
    eprintln!("[bench] host micro-benchmarks (criterion): I/O-path arithmetic, rxdskctl parsing and rendering");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for (package, bench) in [("rxdsk-layout", "layout"), ("rxdsk-ctl", "cli")] {
        run(Cmd::new(&cargo)
            .current_dir(paths::repo())
            .args(["bench", "--quiet", "-p", package, "--bench", bench, "--"])
            .args(criterion_args))?;
    }
    eprintln!(
        "[bench] wrote {}/latest.{{json,md,txt,png,svg}}",
        out.display()
    );
    Ok(0)
}

fn host_checks() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let repo = paths::repo();
    eprintln!("[host] cargo fmt --check");
    run(Cmd::new(&cargo)
        .current_dir(&repo)
        .args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("[host] cargo clippy -D warnings");
    run(Cmd::new(&cargo).current_dir(&repo).args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("[host] cargo test --workspace");
    run(Cmd::new(&cargo)
        .current_dir(&repo)
        .args(["test", "--quiet", "--workspace"]))?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<i32> = (|| {
        Ok(match cli.task {
            Task::Package => {
                let (k, tc) = prepare_kernel(&KernelArgs::default(), false)?;
                for deb in package::build(&k, &tc)? {
                    println!("{}", deb.display());
                }
                0
            }
            Task::Layers => {
                let files = layers::scan(&paths::repo().join("rxdsk-kmod"))?;
                print!("{}", layers::render(&files));
                let problems = layers::problems(&files);
                for p in &problems {
                    println!("problem: {p}");
                }
                let bindings: usize = files.iter().map(|f| f.bindings).sum();
                println!(
                    "{} files, layers {} (lowest first), {bindings} lines with bindings::, {} problems",
                    files.len(),
                    layers::LAYERS.join(" < "),
                    problems.len()
                );
                i32::from(!problems.is_empty())
            }
            Task::Deps => {
                deps::ensure()?;
                eprintln!("[deps] all build dependencies are present");
                0
            }
            Task::Kernel { kernel, rebuild } => {
                let (k, _) = prepare_kernel(&kernel, rebuild)?;
                println!("{}", k.image.display());
                eprintln!("[kernel] {} from {}", k.release, k.source.version);
                0
            }
            Task::Module { kernel } => {
                let (k, tc) = prepare_kernel(&kernel, false)?;
                println!("{}", module::build(&k, &tc)?.display());
                0
            }
            Task::Initramfs { kernel } => {
                println!("{}", prepare(&kernel)?.initramfs.display());
                0
            }
            Task::TestVm {
                vm,
                select,
                timeout,
            } => {
                let summary = test_vm(&vm, &select, timeout)?;
                println!("{}", summary.line());
                i32::from(!summary.ok())
            }
            Task::Vm {
                vm,
                run: Some(cmd),
                timeout,
            } => vm_run(&vm, cmd, timeout)?,
            Task::Vm { vm, run: None, .. } => {
                let a = prepare(&vm.kernel)?;
                qemu::interactive(&boot(&a, &vm, "shell", &[], 0)?)?
            }
            Task::Demo { vm } => demo(&vm)?,
            Task::PowerCut { vm, only } => {
                let mut variants = if vm.kernel.debug {
                    debug_power_cuts()
                } else {
                    POWER_CUTS.to_vec()
                };
                if !only.is_empty() {
                    variants.retain(|v| only.iter().any(|o| o == v));
                    if variants.is_empty() {
                        eprintln!("xtask: power-cut --only: no such variant in {POWER_CUTS:?}");
                        return Ok(2);
                    }
                }
                let summary = power_cuts(&prepare(&vm.kernel)?, &vm, &variants, "")?;
                println!("{}", summary.line());
                i32::from(!summary.ok())
            }
            Task::TestNvmeTcp { vm } => {
                let (summary, _) = nvme_tcp_pair(&prepare(&vm.kernel)?, &vm)?;
                println!("{}", summary.line());
                i32::from(!summary.ok())
            }
            Task::Bench {
                vm,
                quick,
                native_only,
                only_tiering,
            } => bench_all(&vm, quick, native_only, only_tiering)?,
            Task::Soak {
                mut vm,
                minutes,
                min_gib,
            } => {
                vm.kernel.debug = true;
                vm.kernel.uml = false;
                // Under KASAN and TCG a GiB takes 10-15 minutes on 2 cores: allow 25 per GiB,
                // and twice the minimum time, before calling it a hang.
                let timeout = u64::from(minutes) * 60 * 2 + u64::from(min_gib) * 25 * 60 + 600;
                eprintln!(
                    "[soak] at least {minutes} min and {min_gib} GiB verified (gives up after {} min)",
                    timeout / 60
                );
                vm_run(
                    &vm,
                    format!("sh /usr/share/rxdsk-tests/soak.sh {minutes} {min_gib}"),
                    timeout,
                )?
            }
            Task::TestDistro { verbose } => {
                let (k, tc) = prepare_kernel(&KernelArgs::default(), false)?;
                let summary = distro::test(&k, &tc, verbose)?;
                println!("{}", summary.line());
                i32::from(!summary.ok())
            }
            Task::Test { vm } => {
                host_checks()?;
                eprintln!("[test] packages: build, lintian, DKMS tree, install and purge");
                let (k, tc) = prepare_kernel(&KernelArgs::default(), false)?;
                package::build(&k, &tc)?;
                // Both flavours' kernels, modules and images first, one after the other (never
                // two kernel builds at once). Then two lanes, one guest each most of the time
                // (most tests keep one vCPU busy, so two guests share the two cores well): the
                // debug flavour's suite in one, the normal one's in the other; then each lane
                // takes the remaining work from one queue, longest first, until it is empty.
                let mut debug_vm = vm.clone();
                debug_vm.kernel.debug = true;
                let normal_artifacts = prepare(&vm.kernel)?;
                let debug_artifacts = prepare(&debug_vm.kernel)?;
                eprintln!(
                    "[test] the suite on the debug flavour (KASAN, lockdep, kmemleak), short form, \
                     in a second guest beside the normal one (its lines start with [debug]); \
                     then power cuts, NVMe/TCP between two guests and a Debian guest, in \
                     whichever lane is free"
                );
                let cuts = CutRound::new(&normal_artifacts, &vm, POWER_CUTS.to_vec(), "");
                let debug_cuts =
                    CutRound::new(&debug_artifacts, &debug_vm, debug_power_cuts(), "[debug] ");
                let pairs = Mutex::new(None);
                let distro = Mutex::new(None);
                let queue = Queue::default();
                queue.push(|| {
                    eprintln!(
                        "[test] a Debian guest: kernel packages, our packages installed (DKMS), \
                         boot-time setup from /etc/rxdsk.conf across reboots, purge"
                    );
                    *lock(&distro) = Some(distro::test(&k, &tc, false));
                });
                queue.push(|| {
                    eprintln!("[test] NVMe/TCP between two guests, on each kernel flavour");
                    *lock(&pairs) = Some([
                        nvme_tcp_pair(&normal_artifacts, &vm).map(|(s, _)| s),
                        nvme_tcp_pair(&debug_artifacts, &debug_vm).map(|(s, _)| s),
                    ]);
                });
                // The debug flavour's cuts (a minute each) before the normal one's (seconds),
                // so that the lanes end close together.
                for round in [&debug_cuts, &cuts] {
                    for i in 0..round.variants.len() {
                        queue.push(move || round.cut(i));
                    }
                }
                let (full, debug) = std::thread::scope(|scope| {
                    let debug_lane = scope.spawn(|| {
                        let short = TestSelection {
                            skip: DEBUG_SHORT_SKIP.iter().map(|s| s.to_string()).collect(),
                            ..Default::default()
                        };
                        let summary =
                            test_vm_labelled(&debug_artifacts, &debug_vm, &short, 3000, "[debug] ");
                        queue.drain();
                        summary
                    });
                    let full = test_vm_labelled(
                        &normal_artifacts,
                        &vm,
                        &TestSelection::default(),
                        1800,
                        "",
                    );
                    queue.drain();
                    let debug = debug_lane
                        .join()
                        .map_err(|_| anyhow::anyhow!("the debug lane panicked"));
                    (full, debug)
                });
                let debug = debug?;
                let not_run = || anyhow::anyhow!("left in the queue");
                let pairs = lock(&pairs)
                    .take()
                    .unwrap_or_else(|| [Err(not_run()), Err(not_run())]);
                let distro = lock(&distro).take().unwrap_or_else(|| Err(not_run()));
                let (cuts, debug_cuts) = (cuts.summary(), debug_cuts.summary());
                let [pair, debug_pair] = pairs;
                let (full, cuts, debug, debug_cuts) = (full?, cuts?, debug?, debug_cuts?);
                let (pair, debug_pair, distro) = (pair?, debug_pair?, distro?);
                println!("guest flavour: {}", full.line());
                println!(
                    "power cuts (normal, debug): {}, {}",
                    cuts.line(),
                    debug_cuts.line()
                );
                println!(
                    "NVMe/TCP, two guests (normal, debug): {}, {}",
                    pair.line(),
                    debug_pair.line()
                );
                println!("Debian guest: {}", distro.line());
                println!("debug flavour: {}", debug.line());
                let parts = [
                    &full,
                    &cuts,
                    &pair,
                    &debug_pair,
                    &distro,
                    &debug,
                    &debug_cuts,
                ];
                let total = console::Summary {
                    passed: parts.iter().map(|s| s.passed).sum(),
                    failed: parts.iter().map(|s| s.failed).sum(),
                    skipped: parts.iter().map(|s| s.skipped).sum(),
                    problems: Vec::new(),
                };
                println!("{}", total.line());
                i32::from(!parts.iter().all(|s| s.ok()))
            }
        })
    })();
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_listening_loopback_socket_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(super::listening_on_loopback(port));
        drop(l);
        assert!(!super::listening_on_loopback(port));
    }
}
