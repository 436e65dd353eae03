//! Reads a guest's serial console: KTAP results, the exit marker of `vm --run`, and kernel
//! reports (BUG, WARNING, Oops, KASAN, lockdep, hung tasks, "Call Trace") that fail a run
//! whatever the tests said. Pure code, tested on recorded logs.

/// The first thing the guest's init prints: everything before it is the kernel's own boot.
pub const INIT_STARTED: &str = "RXDSK-INIT";
/// Printed by the guest's init before the output of a `--run` command.
pub const RUN_BEGIN: &str = "RXDSK-RUN-BEGIN";
/// Printed by the guest's init after a `--run` command: `RXDSK-EXIT: <status>`.
pub const RUN_EXIT: &str = "RXDSK-EXIT:";
/// Prefix of machine-readable lines a guest script sends to the host (bench results).
pub const DATA: &str = "RXDSK-DATA ";

/// Fragments of kernel messages that mean something went wrong in the kernel.
const REPORT_MARKERS: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "Kernel panic",
    "kernel BUG at",
    "Call Trace:",
    "KASAN",
    "KFENCE",
    "UBSAN",
    "general protection fault",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "blocked for more than",
    "soft lockup",
    "hard LOCKUP",
    "rcu_sched detected stall",
    "detected stalls on CPUs",
    "unreferenced object",
    "panicked at",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub number: u32,
    pub name: String,
    pub outcome: Outcome,
}

/// What one console line turned out to be, for live printing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Plan(u32),
    Result(TestResult),
    Diagnostic(String),
    KernelReport(String),
    Exit(i32),
    Data,
    Other,
}

#[derive(Debug, Default)]
pub struct Console {
    pub plan: Option<u32>,
    pub results: Vec<TestResult>,
    pub reports: Vec<String>,
    pub exit_status: Option<i32>,
    pub run_started: bool,
    /// The guest's init printed [`INIT_STARTED`].
    pub init_started: bool,
    /// Lines that started with [`DATA`], without the prefix.
    pub data: Vec<String>,
}

/// Splits "[   12.345678] text" into the kernel message text; None for user-space lines.
fn kernel_message(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, text) = rest.split_once(']')?;
    let stamp = stamp.trim();
    let (secs, micros) = stamp.split_once('.')?;
    if secs.chars().all(|c| c.is_ascii_digit())
        && micros.chars().all(|c| c.is_ascii_digit())
        && !secs.is_empty()
    {
        Some(text.trim_start())
    } else {
        None
    }
}

fn parse_result(line: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
        (false, r)
    } else {
        (true, line.strip_prefix("ok ")?)
    };
    let (num, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let number = num.parse().ok()?;
    let rest = rest.trim_start_matches("- ");
    let (name, directive) = match rest.split_once(" # ") {
        Some((n, d)) => (n.trim(), Some(d.trim())),
        None => (rest.trim(), None),
    };
    let outcome = match directive {
        Some(d) if d.to_ascii_uppercase().starts_with("SKIP") => {
            Outcome::Skip(d[4..].trim().to_string())
        }
        _ if ok => Outcome::Pass,
        _ => Outcome::Fail,
    };
    Some(TestResult {
        number,
        name: name.to_string(),
        outcome,
    })
}

impl Console {
    pub fn feed(&mut self, raw: &str) -> Event {
        let line = raw.trim_end_matches(['\r', '\n']);
        if let Some(text) = kernel_message(line) {
            if REPORT_MARKERS.iter().any(|m| text.contains(m)) {
                self.reports.push(text.to_string());
                return Event::KernelReport(text.to_string());
            }
            return Event::Other;
        }
        if let Some(d) = line.strip_prefix(DATA) {
            self.data.push(d.to_string());
            return Event::Data;
        }
        if line.trim() == INIT_STARTED {
            self.init_started = true;
            return Event::Other;
        }
        if line.trim() == RUN_BEGIN {
            self.run_started = true;
            return Event::Other;
        }
        if let Some(status) = line.trim().strip_prefix(RUN_EXIT) {
            if let Ok(s) = status.trim().parse() {
                self.exit_status = Some(s);
                return Event::Exit(s);
            }
        }
        if let Some(n) = line.strip_prefix("1..").and_then(|n| n.trim().parse().ok()) {
            self.plan = Some(n);
            return Event::Plan(n);
        }
        if let Some(r) = parse_result(line) {
            self.results.push(r.clone());
            return Event::Result(r);
        }
        if let Some(d) = line.strip_prefix('#') {
            return Event::Diagnostic(d.trim().to_string());
        }
        Event::Other
    }

    /// All planned results are in.
    pub fn suite_complete(&self) -> bool {
        self.plan.is_some_and(|n| self.results.len() as u32 >= n)
    }

    /// The suite's summary: passed, failed, skipped, and why it failed if it did. A missing
    /// plan, missing results (a hang or a crash), a timeout or any kernel report is a failure.
    pub fn suite_summary(&self, timed_out: bool) -> Summary {
        let passed = self
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .count() as u32;
        let skipped = self
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skip(_)))
            .count() as u32;
        let mut failed = self
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .count() as u32;
        let mut problems = Vec::new();
        match self.plan {
            None => {
                failed += 1;
                problems.push("the guest never printed a KTAP plan".to_string());
            }
            Some(n) if (self.results.len() as u32) < n => {
                let missing = n - self.results.len() as u32;
                failed += missing;
                problems.push(format!("{missing} planned test(s) never reported"));
            }
            _ => {}
        }
        if timed_out {
            problems.push("the guest timed out".to_string());
        }
        if !self.reports.is_empty() {
            failed += 1;
            problems.push(format!(
                "{} kernel report line(s) in the console, first: {}",
                self.reports.len(),
                self.reports[0]
            ));
        }
        Summary {
            passed,
            failed,
            skipped,
            problems,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub problems: Vec<String>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.problems.is_empty()
    }

    pub fn line(&self) -> String {
        if self.skipped > 0 {
            format!(
                "{} passed, {} failed, {} skipped",
                self.passed, self.failed, self.skipped
            )
        } else {
            format!("{} passed, {} failed", self.passed, self.failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse(log: &str, timed_out: bool) -> Summary {
        let mut c = Console::default();
        for line in log.lines() {
            c.feed(line);
        }
        c.suite_summary(timed_out)
    }

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// What `qemu::run` asks before booting a guest again: was a report made before init ran?
    #[test]
    fn init_mark_separates_the_kernels_boot() {
        let mut c = Console::default();
        let early =
            c.feed("[    0.002059] BUG: KASAN: wild-memory-access in do_raw_spin_lock+0xbc/0x1d0");
        assert!(matches!(early, Event::KernelReport(_)) && !c.init_started);
        assert_eq!(c.feed("RXDSK-INIT\r\n"), Event::Other);
        assert!(c.init_started);
        let late = c.feed("[   12.000000] WARNING: CPU: 1 PID: 80 at drivers/block/x.c:1");
        assert!(matches!(late, Event::KernelReport(_)) && c.init_started);
        assert_eq!(c.reports.len(), 2);
    }

    #[test]
    fn clean_log_passes() {
        let s = analyse(&fixture("clean.log"), false);
        assert!(s.ok(), "{s:?}");
        assert_eq!(s.line(), "7 passed, 0 failed");
    }

    #[test]
    fn failing_ktap_line_fails() {
        let s = analyse(&fixture("ktap-failure.log"), false);
        assert!(!s.ok());
        assert_eq!((s.passed, s.failed), (6, 1));
    }

    #[test]
    fn kernel_warning_fails() {
        let s = analyse(&fixture("warning.log"), false);
        assert!(!s.ok());
        assert_eq!(s.passed, 7, "the tests themselves passed");
        assert!(
            s.problems.iter().any(|p| p.contains("WARNING: CPU")),
            "{s:?}"
        );
    }

    #[test]
    fn oops_fails() {
        let s = analyse(&fixture("oops.log"), false);
        assert!(!s.ok());
        assert!(
            s.problems.iter().any(|p| p.contains("kernel report")),
            "{s:?}"
        );
        assert!(
            s.problems.iter().any(|p| p.contains("never reported")),
            "{s:?}"
        );
    }

    #[test]
    fn recorded_sysrq_panic_fails() {
        let s = analyse(&fixture("panic.log"), false);
        assert!(!s.ok());
        assert!(
            s.problems.iter().any(|p| p.contains("Kernel panic")),
            "{s:?}"
        );
    }

    #[test]
    fn hang_fails() {
        let s = analyse(&fixture("hang.log"), true);
        assert!(!s.ok());
        assert!(s.problems.iter().any(|p| p.contains("timed out")));
        assert_eq!(s.failed, 3, "three planned tests never reported");
    }

    #[test]
    fn skip_directive_and_user_space_warning_text() {
        let log = "KTAP version 1\n1..2\nok 1 a # SKIP no zram\nWARNING: printed by a user program\nok 2 b\n";
        let s = analyse(log, false);
        assert!(s.ok(), "{s:?}");
        assert_eq!((s.passed, s.skipped), (1, 1));
    }

    #[test]
    fn run_exit_marker() {
        let mut c = Console::default();
        assert_eq!(c.feed(RUN_BEGIN), Event::Other);
        assert!(c.run_started);
        assert_eq!(c.feed("RXDSK-EXIT: 3\r"), Event::Exit(3));
        assert_eq!(c.exit_status, Some(3));
    }

    #[test]
    fn timestamps_are_recognised() {
        assert_eq!(
            kernel_message("[    0.000000] Linux version"),
            Some("Linux version")
        );
        assert_eq!(kernel_message("[ok] not a stamp"), None);
        assert_eq!(kernel_message("ok 1 x"), None);
    }
}
