//! Loading the module when the control node is missing (right after install, before anyone
//! ran `modprobe rxdsk`), as zramctl does for zram.

use std::ffi::OsString;
use std::process::{Command, Stdio};

/// The program run instead of `modprobe` (found in `PATH`), for tests.
pub const PROGRAM_VARIABLE: &str = "RXDSK_MODPROBE";

/// The module's name.
const MODULE: &str = "rxdsk";

/// How the module is loaded, and whether we may.
#[derive(Clone, Debug)]
pub struct Modprobe {
    pub program: OsString,
    /// The caller has CAP_SYS_MODULE (loading needs it).
    pub may_load: bool,
}

impl Modprobe {
    /// `$RXDSK_MODPROBE` or `modprobe`; whether we may load from our effective capabilities.
    pub fn from_env() -> Self {
        Self {
            program: std::env::var_os(PROGRAM_VARIABLE).unwrap_or_else(|| "modprobe".into()),
            may_load: has_cap_sys_module(),
        }
    }

    /// Runs `modprobe rxdsk`. The error says why the module could not be loaded and what to
    /// do; modprobe's own words are in it.
    pub fn load(&self) -> Result<(), String> {
        if !self.may_load {
            return Err(
                "the rxdsk module is not loaded, and only root (CAP_SYS_MODULE) can load it: \
                 ask an administrator to run modprobe rxdsk, or to load it at boot \
                 (modules-load.d(5))"
                    .into(),
            );
        }
        let program = self.program.to_string_lossy();
        let output = Command::new(&self.program)
            .arg(MODULE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| {
                format!("the rxdsk module is not loaded, and {program} cannot be run: {e}")
            })?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim();
        let why = if said.contains("not found") {
            format!(
                "the rxdsk module is not installed for this kernel ({}): install the \
                 rxdsk-dkms package (see README.md, Install), which builds it for each installed \
                 kernel",
                kernel_release()
            )
        } else if said.contains("not permitted") {
            "the rxdsk module is not loaded, and this process may not load modules (no \
             CAP_SYS_MODULE)"
                .into()
        } else {
            format!(
                "cannot load the rxdsk module ({program} {MODULE}: {})",
                output.status
            )
        };
        Err(if said.is_empty() {
            why
        } else {
            format!("{why}; {program} said: {said}")
        })
    }
}

/// The running kernel's release, as `uname -r`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "uname -r".into())
}

/// Whether CAP_SYS_MODULE (16) is among our effective capabilities; without
/// /proc/self/status, whether we are root.
fn has_cap_sys_module() -> bool {
    const CAP_SYS_MODULE: u32 = 16;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match effective {
        Some(caps) => caps & (1 << CAP_SYS_MODULE) != 0,
        None => nix::unistd::geteuid().is_root(),
    }
}
