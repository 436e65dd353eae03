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
