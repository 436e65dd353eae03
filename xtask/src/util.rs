//! Small process and hashing helpers.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::process::{Command, Stdio};

pub type Cmd = Command;

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with inherited stdio; fails on non-zero status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails on non-zero status.
pub fn run_output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub trait CmdExt {
    /// Stdout whatever the exit status (for queries like dpkg-query that fail on unknown names).
    fn output_lossy(&mut self) -> Result<String>;
}

impl CmdExt for Command {
    fn output_lossy(&mut self) -> Result<String> {
        let out = self
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", describe(self)))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a long build with its output going to `log`, printing a progress line every few
/// seconds (`[label] N steps, now: ...`). On failure, prints the log's tail.
pub fn run_logged(cmd: &mut Command, log: &std::path::Path, label: &str) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    let stderr = child.stderr.take().context("stderr")?;
    let err_file = Arc::clone(&file);
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(lock(&err_file), "{line}");
        }
    });
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut steps = 0u64;
    let stdout = child.stdout.take().context("stdout")?;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(lock(&file), "{line}");
        let t = line.trim_start();
        if line.starts_with("  ") && t.split_whitespace().count() == 2 {
            steps += 1;
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                eprintln!(
                    "[{label}] {:>4}s {steps} steps, now: {t}",
                    start.elapsed().as_secs()
                );
            }
        }
    }
    let _ = err_thread.join();
    let status = child.wait()?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            eprintln!("  | {l}");
        }
        bail!(
            "{label}: {} failed ({status}); full log: {}",
            describe(cmd),
            log.display()
        );
    }
    eprintln!("[{label}] done in {}s", start.elapsed().as_secs());
    Ok(())
}

/// Locks `m`; a thread that panicked while holding it left nothing half-done that matters
/// here (log lines, results of finished work).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
