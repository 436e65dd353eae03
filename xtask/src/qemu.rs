//! Boots the guest in QEMU: KVM when it makes real progress, else TCG; streams the serial
//! console through [`Console`], with a timeout that prints the console's tail.

use crate::console::{Console, Event, Outcome};
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long KVM gets to print its first console line before we call it unusable.
const KVM_PROBE: Duration = Duration::from_secs(5);
/// In test mode, a guest that reports no result for this long is stuck: stop it rather than
/// wait for the whole run's timeout. Generous: the slowest test takes a few minutes under
/// KASAN and TCG.
const TEST_STALL: Duration = Duration::from_secs(900);
/// A guest whose console stays silent this long before its init starts is stuck in the
/// kernel's own early boot (seen twice under TCG on a loaded host: a timer calibration that
/// never ends); it is booted again, as after a report (see [`run`]).
const BOOT_STALL: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Boot {
    pub kernel: PathBuf,
    /// The harness's initramfs; None boots a root disk (`cmdline` says which).
    pub initrd: Option<PathBuf>,
    /// Replaces the initramfs command line (a distribution's init on a root disk).
    pub cmdline: Option<String>,
    /// After `RXDSK-EXIT`, how long the guest may take to power off by itself before QEMU is
    /// stopped (a clean shutdown matters when the next boot reuses the disks).
    pub shutdown_grace: Duration,
    /// `test`, `run` or `shell`: what the guest's init does.
    pub mode: &'static str,
    pub memory_mib: u32,
    pub cpus: u32,
    pub timeout: Duration,
    pub log: PathBuf,
    /// Raw image files attached as virtio disks, in order: /dev/vda, /dev/vdb, ...
    pub disks: Vec<PathBuf>,
    /// A power cut: when the guest prints this `RXDSK-DATA` payload, QEMU is killed at once
    /// (SIGKILL: no shutdown, nothing more reaches the disks).
    pub kill_on: Option<&'static str>,
    /// Put before every line echoed (a guest running beside another one says which it is).
    pub label: &'static str,
    /// A virtio-net link to one other guest, over a TCP socket on the host's loopback address.
    pub net: Option<Link>,
}

/// One end of a two-guest Ethernet link: QEMU's socket netdev, which carries the frames over
/// a TCP connection to 127.0.0.1 (the host sees nothing else of the guests' traffic).
#[derive(Clone, Debug)]
pub struct Link {
    /// The guest's MAC address, `52:54:00:..`.
    pub mac: String,
    /// This end listens on 127.0.0.1:`port` (start it first), or connects to it.
    pub listen: bool,
    pub port: u16,
}

impl Link {
    /// The IPv6 link-local address the guest's kernel forms from the MAC (EUI-64, the default
    /// address generation mode): how one guest names the other without any configuration.
    pub fn link_local(&self) -> Result<std::net::Ipv6Addr> {
        let bytes: Vec<u8> = self
            .mac
            .split(':')
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<_, _>>()
            .with_context(|| format!("MAC address {}", self.mac))?;
        let &[a, b, c, d, e, f] = bytes.as_slice() else {
            anyhow::bail!("MAC address {} has not 6 bytes", self.mac);
        };
        let w = |hi: u8, lo: u8| u16::from_be_bytes([hi, lo]);
        Ok(std::net::Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            w(a ^ 0x02, b),
            w(c, 0xff),
            w(0xfe, d),
            w(e, f),
        ))
    }
}

/// A `--disk FILE[:SIZE]` argument: an image file, created (sparse) or grown to SIZE if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub size: Option<u64>,
}

impl std::str::FromStr for DiskSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (path, size) = match s.rsplit_once(':') {
            Some((p, sz)) => (p, Some(parse_size(sz)?)),
            None => (s, None),
        };
        if path.is_empty() {
            return Err("empty disk file name".into());
        }
        Ok(Self {
            path: path.into(),
            size,
        })
    }
}

/// `512`, `64M`, `2G` (powers of 1024), as the disk sizes of `--disk`.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("bad disk size {s:?} (want e.g. 512M or 2G)"))?;
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("bad disk size unit in {s:?} (K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0 && b % 512 == 0)
        .ok_or_else(|| format!("disk size {s:?} must be a non-zero multiple of 512 bytes"))
}

impl DiskSpec {
    /// Creates the file if needed and grows it (sparse) to the size asked; never shrinks one.
    pub fn prepare(&self) -> anyhow::Result<PathBuf> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.path)
            .with_context(|| format!("disk image {}", self.path.display()))?;
        let len = f.metadata()?.len();
        if let Some(size) = self.size.filter(|&s| s > len) {
            f.set_len(size)?;
        }
        if f.metadata()?.len() == 0 {
            anyhow::bail!(
                "disk image {} is empty: give a size, e.g. --disk {}:1G",
                self.path.display(),
                self.path.display()
            );
        }
        Ok(std::fs::canonicalize(&self.path)?)
    }
}

/// Remembers, until the host reboots, that KVM made no progress here, so later runs skip the
/// probe's wait.
fn kvm_verdict_file() -> PathBuf {
    crate::paths::cache().join("kvm-unusable")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn remember_kvm_unusable() {
    let _ = std::fs::create_dir_all(crate::paths::cache());
    let _ = std::fs::write(kvm_verdict_file(), boot_id());
}

fn kvm_usable() -> bool {
    match std::env::var("RXDSK_ACCEL").as_deref() {
        Ok("tcg") => return false,
        Ok("kvm") => return true,
        _ => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let known_bad =
        std::fs::read_to_string(kvm_verdict_file()).is_ok_and(|id| id.trim() == boot_id());
    if known_bad {
        eprintln!(
            "[vm] KVM made no progress earlier since this host booted; using TCG \
             (RXDSK_ACCEL=kvm retries; recorded in {})",
            kvm_verdict_file().display()
        );
    }
    !known_bad
}

fn command(boot: &Boot, accel: Accel, interactive: bool) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    match accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
    };
    // no_timer_check: under TCG on a loaded host the boot-time check of the 8254 timer's
    // interrupt can miss it and log an "MP-BIOS bug" (seen with several guests at once).
    // pty.legacy_count=0: no BSD ptys (nothing here uses them), whose 256 pairs took 1.8 s of
    // the debug kernel's boot under TCG (initcall_debug).
    let append = boot.cmdline.clone().unwrap_or_else(|| {
        format!(
            "console=ttyS0 earlyprintk=serial,ttyS0,115200 loglevel=5 panic=-1 oops=panic \
             no_timer_check pty.legacy_count=0 rdinit=/init rxdsk_mode={} rxdsk_accel={}",
            boot.mode,
            accel.name()
        )
    });
    c.args([
        // q35: its ACPI tables route PCI interrupts with static packages; the i440fx
        // machine builds them in an AML loop that KASAN under TCG does not finish in time.
        "-machine",
        "q35",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display",
        "none",
    ])
    .args([
        "-m",
        &format!("{}M", boot.memory_mib),
        "-smp",
        &boot.cpus.to_string(),
    ])
    .arg("-kernel")
    .arg(&boot.kernel)
    .args(["-append", &append]);
    if let Some(initrd) = &boot.initrd {
        c.arg("-initrd").arg(initrd);
    }
    for (i, disk) in boot.disks.iter().enumerate() {
        // The image is the guest's disk: host page cache as its volatile write cache, flushed
        // when the guest flushes (so a killed QEMU loses nothing the guest had flushed).
        c.arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=disk{i},cache=writeback,aio=threads",
                disk.display()
            ))
            .args([
                "-device",
                &format!("virtio-blk-pci,drive=disk{i},serial=rxdsk-disk{i}"),
            ]);
    }
    if let Some(link) = &boot.net {
        let end = if link.listen { "listen" } else { "connect" };
        c.args([
            "-netdev",
            &format!("socket,id=net0,{end}=127.0.0.1:{}", link.port),
            "-device",
            &format!("virtio-net-pci,netdev=net0,mac={}", link.mac),
        ]);
    }
    if interactive {
        c.args(["-serial", "mon:stdio"]);
    } else {
        c.args(["-serial", "stdio", "-monitor", "none"])
            .stdin(Stdio::null());
    }
    c
}

/// Starts QEMU with piped output; returns the child and a channel of console lines.
fn spawn(boot: &Boot, accel: Accel) -> Result<(Child, mpsc::Receiver<String>)> {
    let mut child = command(boot, accel, false)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        while r
            .read_until(b'\n', &mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                break;
            }
            buf.clear();
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("qemu: {line}\n"));
        }
    });
    Ok((child, rx))
}

/// Starts the guest, probing KVM first; returns the running child, its lines, the accelerator
/// and the lines already received.
fn start(boot: &Boot) -> Result<(Child, mpsc::Receiver<String>, Accel, Vec<String>)> {
    if kvm_usable() {
        let (mut child, rx) = spawn(boot, Accel::Kvm)?;
        match rx.recv_timeout(KVM_PROBE) {
            Ok(first) if !first.starts_with("qemu: ") => {
                eprintln!("[vm] accelerator: KVM");
                return Ok((child, rx, Accel::Kvm, vec![first]));
            }
            Ok(err) => eprintln!("[vm] KVM failed ({}); falling back to TCG", err.trim()),
            Err(_) => {
                eprintln!(
                    "[vm] KVM printed nothing within {}s (nested or overloaded); falling back to TCG",
                    KVM_PROBE.as_secs()
                );
                remember_kvm_unusable();
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let (child, rx) = spawn(boot, Accel::Tcg)?;
    eprintln!("[vm] accelerator: TCG (software emulation: timings are not native)");
    Ok((child, rx, Accel::Tcg, Vec::new()))
}

/// What a finished non-interactive boot produced.
pub struct Finished {
    pub console: Console,
    pub timed_out: bool,
    pub accel: Accel,
    /// QEMU was killed on `Boot::kill_on`.
    pub killed: bool,
    /// The guest ended by itself (QEMU exited) rather than being stopped.
    pub powered_off: bool,
}

/// How to show console lines while the guest runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Test results, diagnostics of failures, and kernel reports.
    Results,
    /// Everything after the run marker, plus kernel reports.
    RunOutput,
    /// Every line.
    All,
}

/// How one boot of [`run`] ended.
enum Attempt {
    Finished(Finished),
    /// The kernel reported a problem before the guest's init started: none of our code (not
    /// the module, not a test) had run, and no disk had been written.
    BootReport(String),
}

/// Boots the guest and follows its console to the end. A kernel report before the guest's
/// init starts (see [`crate::console::INIT_STARTED`]) cannot come from rxdsk or a test: under
/// TCG on a loaded host an early interrupt can trip the kernel's own boot code. Nor can a
/// console silent for [`BOOT_STALL`] before init (an early calibration loop that never ends).
/// That boot is stopped and the guest booted once more, saying so; the console of the stopped
/// boot is kept beside the log. A second such boot fails the run like any other report or
/// timeout.
pub fn run(boot: &Boot, echo: Echo) -> Result<Finished> {
    // Only the harness's init prints the mark (a distribution's init on a root disk does not).
    let mut may_retry = boot.initrd.is_some();
    loop {
        match run_attempt(boot, echo, may_retry)? {
            Attempt::Finished(f) => return Ok(f),
            Attempt::BootReport(report) => {
                let kept = boot.log.with_extension("boot-failed.log");
                let _ = std::fs::rename(&boot.log, &kept);
                eprintln!(
                    "{}[vm] the guest kernel failed while booting, before its init ran \
                     (\"{report}\"; console kept as {}): booting it again",
                    boot.label,
                    kept.display()
                );
                may_retry = false;
            }
        }
    }
}

fn run_attempt(boot: &Boot, echo: Echo, may_retry: bool) -> Result<Attempt> {
    let (mut child, rx, accel, first) = start(boot)?;
    let mut log =
        std::fs::File::create(&boot.log).with_context(|| boot.log.display().to_string())?;
    let mut console = Console::default();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut diagnostics: Vec<String> = Vec::new();
    let deadline = Instant::now() + boot.timeout;
    let mut last_result = Instant::now();
    let mut last_line = Instant::now();
    let mut timed_out = false;
    let mut stalled = false;
    let mut killed = false;
    let mut powered_off = false;
    let mut pending = first.into_iter();
    loop {
        let limit = if boot.mode == "test" {
            deadline.min(last_result + TEST_STALL)
        } else {
            deadline
        };
        let boot_watch = may_retry && !console.init_started;
        let limit = if boot_watch {
            limit.min(last_line + BOOT_STALL)
        } else {
            limit
        };
        let line = match pending.next() {
            Some(l) => l,
            None => match rx.recv_timeout(limit.saturating_duration_since(Instant::now())) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    powered_off = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if boot_watch && limit < deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(Attempt::BootReport(format!(
                        "no console output for {} s before its init started",
                        BOOT_STALL.as_secs()
                    )));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    stalled = limit < deadline;
                    break;
                }
            },
        };
        last_line = Instant::now();
        let _ = log.write_all(line.as_bytes());
        tail.push_back(line.clone());
        if tail.len() > 60 {
            tail.pop_front();
        }
        let event = console.feed(&line);
        if let Event::KernelReport(report) = &event {
            if may_retry && !console.init_started {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Attempt::BootReport(report.clone()));
            }
        }
        if matches!(event, Event::Data)
            && boot.kill_on.is_some()
            && console.data.last().map(String::as_str) == boot.kill_on
        {
            let _ = child.kill();
            let _ = child.wait();
            killed = true;
            break;
        }
        let text = line.trim_end();
        let took = last_result.elapsed();
        if let Event::Result(_) = &event {
            last_result = Instant::now();
        }
        match (&event, echo) {
            (_, Echo::All) => println!("{text}"),
            (Event::KernelReport(_), _) => println!("{}KERNEL: {text}", boot.label),
            (Event::Diagnostic(d), Echo::Results) => diagnostics.push(d.clone()),
            (Event::Result(r), Echo::Results) => {
                let verdict = match &r.outcome {
                    Outcome::Pass => "ok".to_string(),
                    Outcome::Fail => "FAIL".to_string(),
                    Outcome::Skip(why) => format!("skip ({why})"),
                };
                println!(
                    "{}  {:>3} {:<48} {verdict:<8} {:>6.1} s",
                    boot.label,
                    r.number,
                    r.name,
                    took.as_secs_f64()
                );
                if r.outcome == Outcome::Fail {
                    for d in &diagnostics {
                        println!("{}        # {d}", boot.label);
                    }
                }
                diagnostics.clear();
            }
            (Event::Exit(_) | Event::Data, Echo::RunOutput) => {}
            (_, Echo::RunOutput)
                if console.run_started && !text.starts_with(crate::console::RUN_BEGIN) =>
            {
                println!("{text}")
            }
            _ => {}
        }
        if console.exit_status.is_some() || (boot.mode == "test" && console.suite_complete()) {
            // Give the guest a moment to print late reports and power off.
            let grace = Instant::now() + boot.shutdown_grace;
            loop {
                match rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
                    Ok(l) => {
                        let _ = log.write_all(l.as_bytes());
                        let report = matches!(console.feed(&l), Event::KernelReport(_));
                        if echo == Echo::All {
                            println!("{}", l.trim_end());
                        } else if report {
                            println!("KERNEL: {}", l.trim_end());
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        powered_off = true;
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                }
            }
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let trouble = (timed_out && !killed)
        || (boot.mode == "test" && !console.suite_complete())
        || !console.reports.is_empty();
    if trouble && echo != Echo::All {
        eprintln!(
            "[vm] {}; last console lines (full log: {}):",
            if stalled {
                format!("no test result for {} s: stopped", TEST_STALL.as_secs())
            } else if timed_out {
                "timed out".to_string()
            } else {
                "guest output ended early or reported problems".to_string()
            },
            boot.log.display()
        );
        for l in &tail {
            eprintln!("  | {}", l.trim_end());
        }
    }
    Ok(Attempt::Finished(Finished {
        console,
        timed_out,
        accel,
        killed,
        powered_off,
    }))
}

/// Interactive guest on this terminal (Ctrl-A X quits QEMU).
pub fn interactive(boot: &Boot) -> Result<i32> {
    let accel = if kvm_usable() {
        probe_kvm(boot)
    } else {
        Accel::Tcg
    };
    eprintln!(
        "[vm] accelerator: {} — Ctrl-A X quits, `poweroff` ends the guest",
        accel.name()
    );
    let status = command(boot, accel, true)
        .status()
        .context("cannot start qemu-system-x86_64")?;
    Ok(status.code().unwrap_or(1))
}

/// Boots a throw-away guest to see whether KVM makes progress.
fn probe_kvm(boot: &Boot) -> Accel {
    let Ok((mut child, rx)) = spawn(boot, Accel::Kvm) else {
        return Accel::Tcg;
    };
    let accel = match rx.recv_timeout(KVM_PROBE) {
        Ok(first) if !first.starts_with("qemu: ") => Accel::Kvm,
        _ => {
            eprintln!(
                "[vm] KVM made no progress within {}s; using TCG",
                KVM_PROBE.as_secs()
            );
            Accel::Tcg
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    accel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_from_mac() {
        let link = Link {
            mac: "52:54:00:12:34:0a".into(),
            listen: true,
            port: 1,
        };
        assert_eq!(
            link.link_local().unwrap().to_string(),
            "fe80::5054:ff:fe12:340a"
        );
        let bad = Link {
            mac: "52:54:00:12:34".into(),
            ..link
        };
        assert!(bad.link_local().is_err());
    }

    #[test]
    fn disk_specs() {
        let d: DiskSpec = "img.raw:64M".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d.path, d.size), ("img.raw".into(), Some(64 << 20)));
        let d: DiskSpec = "/tmp/a.img".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d.path, d.size), ("/tmp/a.img".into(), None));
        assert_eq!(
            "x:2G".parse::<DiskSpec>().map(|d| d.size),
            Ok(Some(2 << 30))
        );
        for bad in ["x:", "x:1Q", "x:100", ":1G", "x:0"] {
            assert!(bad.parse::<DiskSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prepare_creates_sparse_and_never_shrinks() {
        let dir = std::env::temp_dir().join(format!("rxdsk-disk-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("d.img");
        let spec = |size| DiskSpec {
            path: path.clone(),
            size,
        };
        assert!(spec(None).prepare().is_err(), "a new empty image");
        let _ = std::fs::remove_file(&path);
        spec(Some(1 << 20))
            .prepare()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(1 << 20)
        );
        spec(Some(4096)).prepare().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(1 << 20)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
