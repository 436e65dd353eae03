//! Fault injection for the tests: a child process marked `make-it-fail` while page or slab
//! allocations fail with the knobs set here (restored when the injection ends).

use crate::harness::TestResult;
use std::time::{Duration, Instant};

/// What fails for the marked task.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Every page allocation that may sleep but is not a user page (those are __GFP_HIGHMEM
    /// and retried forever): the driver's GFP_NOIO pages.
    PageAlloc,
    /// Only page allocations that cannot sleep: the driver's GFP_NOWAIT pages for REQ_NOWAIT.
    PageAllocNoWait,
    /// Every slab allocation, sleeping or not: the XArray's nodes among them.
    Slab,
    /// rxdsk's own fault point: compressed objects reach the decompressor garbled.
    Decompress,
}

impl Fault {
    fn dir(self) -> &'static str {
        match self {
            Fault::PageAlloc | Fault::PageAllocNoWait => "/sys/kernel/debug/fail_page_alloc",
            Fault::Slab => "/sys/kernel/debug/failslab",
            Fault::Decompress => "/sys/kernel/debug/fail_rxdsk_decompress",
        }
    }

    fn knobs(self) -> Vec<(&'static str, &'static str)> {
        let mut k = vec![
            ("verbose", "0"),
            ("task-filter", "Y"),
            ("interval", "1"),
            ("times", "-1"),
            ("space", "0"),
        ];
        match self {
            Fault::PageAlloc => k.extend([
                ("ignore-gfp-wait", "N"),
                ("ignore-gfp-highmem", "Y"),
                ("min-order", "0"),
            ]),
            Fault::PageAllocNoWait => k.extend([
                ("ignore-gfp-wait", "Y"),
                ("ignore-gfp-highmem", "Y"),
                ("min-order", "0"),
            ]),
            Fault::Slab => k.extend([("ignore-gfp-wait", "N"), ("cache-filter", "N")]),
            Fault::Decompress => {}
        }
        k.push(("probability", "100"));
        k
    }
}

/// Injection switched on; switched off (kernel defaults back) when dropped.
struct Injection(Fault);

fn set(dir: &str, knob: &str, value: &str) -> TestResult {
    std::fs::write(format!("{dir}/{knob}"), value)
        .map_err(|e| format!("{dir}/{knob} <- {value}: {e}"))
}

impl Injection {
    fn enable(fault: Fault) -> Result<Self, String> {
        let dir = fault.dir();
        if !std::path::Path::new(dir).is_dir() {
            return Err(format!(
                "{dir} missing: the kernel lacks this fault injection or debugfs"
            ));
        }
        let guard = Injection(fault);
        for (k, v) in fault.knobs() {
            set(dir, k, v)?;
        }
        Ok(guard)
    }
}

impl Drop for Injection {
    fn drop(&mut self) {
        let dir = self.0.dir();
        let _ = set(dir, "probability", "0");
        let _ = set(dir, "times", "1");
        let _ = set(dir, "task-filter", "N");
        if !matches!(self.0, Fault::Decompress) {
            let _ = set(dir, "ignore-gfp-wait", "Y");
        }
        if matches!(self.0, Fault::PageAlloc | Fault::PageAllocNoWait) {
            let _ = set(dir, "ignore-gfp-highmem", "Y");
            let _ = set(dir, "min-order", "1");
        }
        let _ = set(dir, "verbose", "2");
    }
}

/// Runs `f` while the decompression fault fires for every task (kernel workers included, such
/// as the helpers that share a big bio): only rxdsk's decompressions consult it, so nothing
/// else in the guest is affected. Switched off when `f` returns.
pub fn decompression_fails_everywhere<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let injection = Injection::enable(Fault::Decompress)?;
    set(Fault::Decompress.dir(), "task-filter", "N")?;
    let r = f();
    drop(injection);
    Ok(r)
}

/// Makes the forked child's stack and heap its own before its allocations start to fail: a
/// first write to a page shared with the parent (copy-on-write) needs memory, and a fault that
/// cannot get it is retried for ever ("VM_FAULT_OOM leaked out to the #PF handler").
#[inline(never)]
fn prefault() {
    let mut stack = [0u8; 256 * 1024];
    for i in (0..stack.len()).step_by(4096) {
        stack[i] = 1;
    }
    std::hint::black_box(&stack);
    let heap = std::hint::black_box(vec![1u8; 1 << 20]);
    drop(heap);
}

/// Runs `f` in a forked child marked `make-it-fail` while `fault` is injected; returns the
/// child's exit code. `f` must not allocate on the heap (a failed user allocation could
/// abort it): prepare buffers before. A child that does not finish within 120 s is killed
/// after the injection is switched off.
pub fn in_failing_child(fault: Fault, f: impl FnOnce() -> i32) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use std::io::Write;
    let injection = Injection::enable(fault)?;
    // SAFETY: The test harness runs this with no other thread alive; the child only makes
    // system calls and exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            prefault();
            let code = match std::fs::OpenOptions::new()
                .write(true)
                .open("/proc/self/make-it-fail")
            {
                Ok(mut mark) => {
                    if mark.write_all(b"1").is_ok() {
                        let code = f();
                        let _ = mark.write_all(b"0");
                        code
                    } else {
                        23
                    }
                }
                Err(_) => 22,
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG))
                    .map_err(|e| format!("waitpid: {e}"))?
                {
                    WaitStatus::StillAlive if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    WaitStatus::StillAlive => {
                        // Where it is stuck, before it goes: a retry loop shows in its stack.
                        let stack = std::fs::read_to_string(format!("/proc/{child}/stack"))
                            .unwrap_or_else(|e| format!("(no stack: {e})"));
                        let state = std::fs::read_to_string(format!("/proc/{child}/stat"))
                            .unwrap_or_default();
                        drop(injection);
                        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                        let _ = waitpid(child, None);
                        return Err(format!(
                            "the failing child did not finish within 120 s; its state: {}; its kernel stack:\n{stack}",
                            state.split_whitespace().nth(2).unwrap_or("?")
                        ));
                    }
                    WaitStatus::Exited(_, code) => return Ok(code),
                    other => return Err(format!("the failing child ended with {other:?}")),
                }
            }
        }
    }
}
