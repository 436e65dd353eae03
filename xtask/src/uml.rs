//! Runs a script as init of a User-Mode Linux kernel: native-speed kernel code, the host's
//! filesystem as root (hostfs), the console on stdout.

use crate::console::Console;
use crate::kernel::KernelBuild;
use crate::paths;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct UmlRun {
    pub console: Console,
    pub timed_out: bool,
}

/// Boots `kernel` (a UML build) with `script` as init. The script runs with the host's files
/// (so it can use host binaries and the build trees) and must power off at the end.
pub fn run(
    kernel: &KernelBuild,
    script: &str,
    cpus: u32,
    memory_mib: u32,
    timeout: Duration,
    echo: bool,
) -> Result<UmlRun> {
    let dir = paths::target().join("uml");
    std::fs::create_dir_all(&dir)?;
    let init = dir.join("init.sh");
    std::fs::write(&init, format!("#!/bin/sh\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n{script}\n/bin/busybox poweroff -f\n"))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let mut child = Command::new(&kernel.image)
        .arg(format!("mem={memory_mib}M"))
        .arg(format!("ncpus={cpus}"))
        // SMP needs the seccomp userspace mode (ptrace mode is uniprocessor only).
        .arg("seccomp=on")
        .args([
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            "con0=fd:0,fd:1",
            "con=null",
        ])
        .arg(format!("init={}", init.display()))
        // UML backs its RAM with a file in TMPDIR: keep it in memory.
        .env("TMPDIR", "/dev/shm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", kernel.image.display()))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().context("uml stdout")?;
    let stderr = child.stderr.take().context("uml stderr")?;
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("uml: {line}"));
        }
    });
    let log_path = dir.join("console.log");
    let mut log = String::new();
    let mut console = Console::default();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if echo {
                    println!("{line}");
                }
                if let crate::console::Event::KernelReport(r) = console.feed(&line) {
                    println!("KERNEL: {r}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::write(&log_path, &log)?;
    if timed_out || console.exit_status != Some(0) {
        eprintln!(
            "[uml] {}; last lines (full log: {}):",
            if timed_out {
                "timed out"
            } else {
                "script failed"
            },
            log_path.display()
        );
        for l in log.lines().rev().take(30).collect::<Vec<_>>().iter().rev() {
            eprintln!("  | {l}");
        }
    }
    Ok(UmlRun { console, timed_out })
}
