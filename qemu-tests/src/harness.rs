//! A small KTAP test runner for the guest and the helpers the tests share.

use std::os::unix::fs::FileTypeExt;
use std::process::Command;

pub type TestResult = Result<(), String>;

pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// Runs the tests in order, printing KTAP; a panicking test is a failure, not an abort.
pub fn run_all(tests: &[Test]) -> bool {
    println!("KTAP version 1");
    println!("1..{}", tests.len());
    let mut all_ok = true;
    for (i, t) in tests.iter().enumerate() {
        let outcome = std::panic::catch_unwind(t.run).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        });
        match outcome {
            Ok(()) => println!("ok {} {}", i + 1, t.name),
            // A test that cannot apply here (a debug-only check on the normal kernel).
            Err(why) if why.starts_with("SKIP:") => {
                println!(
                    "ok {} {} # SKIP {}",
                    i + 1,
                    t.name,
                    why["SKIP:".len()..].trim()
                );
            }
            Err(why) => {
                all_ok = false;
                for line in why.lines() {
                    println!("# {line}");
                }
                println!("not ok {} {}", i + 1, t.name);
            }
        }
    }
    all_ok
}

/// Output of a finished command.
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a program; an error only if it cannot be started.
pub fn cmd(program: &str, args: &[&str]) -> Result<Output, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok(Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a program and requires exit status 0.
pub fn cmd_ok(program: &str, args: &[&str]) -> Result<Output, String> {
    let out = cmd(program, args)?;
    if out.status != 0 {
        return Err(format!(
            "{program} {} exited {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            out.stdout.trim(),
            out.stderr.trim()
        ));
    }
    Ok(out)
}

pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

pub fn is_char_device(path: &str) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

/// Runs a program with a deadline: on timeout it is killed (SIGKILL) and an error returned.
/// Its output goes through files in /tmp, so a chatty program cannot block on a full pipe.
pub fn cmd_timeout(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<Output, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let base = format!("/tmp/rxdsk-cmd-{}-{n}", std::process::id());
    let (out_path, err_path) = (format!("{base}.out"), format!("{base}.err"));
    let out_file = std::fs::File::create(&out_path).map_err(|e| format!("{out_path}: {e}"))?;
    let err_file = std::fs::File::create(&err_path).map_err(|e| format!("{err_path}: {e}"))?;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{program} {} did not finish within {}s (killed)",
                    args.join(" "),
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => break Err(format!("waiting for {program}: {e}")),
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let status = status.map_err(|e| {
        format!(
            "{e}\nstdout: {}\nstderr: {}",
            tail(&stdout, 20),
            tail(&stderr, 20)
        )
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(Output {
        status: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout,
        stderr,
    })
}

/// Like [`cmd_timeout`], and requires exit status 0.
pub fn cmd_timeout_ok(
    program: &str,
    args: &[&str],
    timeout: std::time::Duration,
) -> Result<Output, String> {
    let out = cmd_timeout(program, args, &[], timeout)?;
    if out.status != 0 {
        return Err(format!(
            "{program} {} exited {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            tail(&out.stdout, 20),
            tail(&out.stderr, 20)
        ));
    }
    Ok(out)
}

/// The last `n` lines of `s`, for diagnostics.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `f` in a forked child with uid and gid 65534 and no capabilities; returns its exit
/// status. The child reports details as `# ` lines (KTAP diagnostics) on stdout.
pub fn as_nobody(f: impl FnOnce() -> i32) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, setgid, setgroups, setuid, ForkResult, Gid, Uid};
    // SAFETY: the test binary is single-threaded (it never spawns threads), and the child only
    // makes system calls and writes to stdout before it exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = match setgroups(&[])
                .and(setgid(Gid::from_raw(65534)))
                .and(setuid(Uid::from_raw(65534)))
            {
                Ok(()) => f(),
                Err(e) => {
                    println!("# cannot drop privileges: {e}");
                    12
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            match waitpid(child, None).map_err(|e| format!("waitpid: {e}"))? {
                WaitStatus::Exited(_, code) => Ok(code),
                other => Err(format!("unprivileged child ended with {other:?}")),
            }
        }
    }
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes; returns the last answer.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn is_block_device(path: &str) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// Whether this is the debug kernel flavour (the only one with kmemleak).
pub fn debug_kernel() -> bool {
    std::path::Path::new("/sys/kernel/debug/kmemleak").exists()
}
