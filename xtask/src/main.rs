//! `cargo xtask`: provisions the toolchain, builds the kernel, module and initramfs, boots QEMU,
//! runs the guest suite. Run without arguments for the task list.

mod bench;
mod console;
mod cpio;
mod deps;
mod initramfs;
mod kernel;
mod module;
mod paths;
mod qemu;
mod util;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use util::{run, Cmd};

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
    #[arg(long)]
    debug: bool,
}

impl KernelArgs {
    fn flavour(&self) -> kernel::Flavour {
        if self.debug {
            kernel::DEBUG
        } else {
            kernel::GUEST
        }
    }
}

#[derive(Args, Clone)]
struct VmArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 3072)]
    mem: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Put a file or directory into the guest under /extra/ (repeatable).
    #[arg(long = "add", value_name = "PATH")]
    add: Vec<PathBuf>,
    /// Echo the whole serial console.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Task {
    /// Check, and as root install, the build dependencies.
    Deps,
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
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 1200)]
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
    /// The main job: boot, create a device, run a short fio workload, show list and stats.
    Demo {
        #[command(flatten)]
        vm: VmArgs,
    },
    /// fio on rxdsk and brd in one boot: IOPS and the rxdsk/brd ratio.
    Bench {
        #[command(flatten)]
        vm: VmArgs,
        /// Seconds per fio job.
        #[arg(long, default_value_t = 5)]
        runtime: u32,
    },
    /// Everything CI runs: host checks (fmt, clippy, unit tests) and the VM suite.
    Test {
        #[command(flatten)]
        vm: VmArgs,
    },
}

/// Kernel, module and initramfs, ready to boot.
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
    Ok(qemu::Boot {
        kernel: a.kernel.bzimage.clone(),
        initrd,
        mode,
        memory_mib: vm.mem,
        cpus: vm.cpus,
        timeout: Duration::from_secs(timeout),
        log: paths::target().join(format!("console-{mode}-{}.log", a.kernel.flavour.name)),
    })
}

fn test_vm(vm: &VmArgs, timeout: u64) -> Result<bool> {
    let a = prepare(&vm.kernel)?;
    let b = boot(&a, vm, "test", &[], timeout)?;
    eprintln!("[vm] running the guest suite (kernel {})", a.kernel.release);
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
        "[vm] {} guest, {}s",
        done.accel.name(),
        start.elapsed().as_secs()
    );
    println!("{}", summary.line());
    Ok(summary.ok())
}

/// Runs a script in the guest; returns its exit status (1 if it never reported one, or if the
/// kernel reported a problem while it ran).
fn vm_run(vm: &VmArgs, script: String, timeout: u64) -> Result<i32> {
    let a = prepare(&vm.kernel)?;
    let b = boot(
        &a,
        vm,
        "run",
        &[("etc/rxdsk-run.sh", script.into_bytes())],
        timeout,
    )?;
    let done = qemu::run(
        &b,
        if vm.verbose {
            qemu::Echo::All
        } else {
            qemu::Echo::RunOutput
        },
    )?;
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
        return Ok(1);
    }
    Ok(status)
}

fn bench_vm(vm: &VmArgs, runtime: u32) -> Result<i32> {
    let a = prepare(&vm.kernel)?;
    let jobs = bench::QUICK_JOBS;
    let script = bench::guest_script(jobs, 512, runtime);
    let b = boot(
        &a,
        vm,
        "run",
        &[("etc/rxdsk-run.sh", script.into_bytes())],
        1800,
    )?;
    let done = qemu::run(
        &b,
        if vm.verbose {
            qemu::Echo::All
        } else {
            qemu::Echo::RunOutput
        },
    )?;
    if done.console.exit_status != Some(0) || !done.console.reports.is_empty() {
        anyhow::bail!(
            "the bench failed in the guest (see above; console log: {})",
            b.log.display()
        );
    }
    let cells = bench::parse(&done.console)?;
    println!(
        "fio, {} vCPUs, {} MiB guest, kernel {}, accelerator {}{}",
        vm.cpus,
        vm.mem,
        a.kernel.release,
        done.accel.name(),
        if done.accel == qemu::Accel::Tcg {
            " (emulated: ratios are not native)"
        } else {
            ""
        }
    );
    print!("{}", bench::table(&cells, jobs));
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
            Task::Deps => {
                deps::ensure()?;
                eprintln!("[deps] all build dependencies are present");
                0
            }
            Task::Kernel { kernel, rebuild } => {
                let (k, _) = prepare_kernel(&kernel, rebuild)?;
                println!("{}", k.bzimage.display());
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
            Task::TestVm { vm, timeout } => i32::from(!test_vm(&vm, timeout)?),
            Task::Vm {
                vm,
                run: Some(cmd),
                timeout,
            } => vm_run(&vm, cmd, timeout)?,
            Task::Vm { vm, run: None, .. } => {
                let a = prepare(&vm.kernel)?;
                qemu::interactive(&boot(&a, &vm, "shell", &[], 0)?)?
            }
            Task::Demo { vm } => vm_run(&vm, "sh /usr/share/rxdsk-tests/demo.sh".into(), 900)?,
            Task::Bench { vm, runtime } => bench_vm(&vm, runtime)?,
            Task::Test { vm } => {
                host_checks()?;
                i32::from(!test_vm(&vm, 1200)?)
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
