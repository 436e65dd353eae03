//! The control node: load, version round trip, errno contract, privilege, unload.

use crate::harness::{as_nobody, cmd, cmd_ok, ensure, is_char_device, TestResult};
use nix::errno::Errno;
use rxdsk_ioctl::{self as abi, RxdskVersion};
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;

const CONTROL: &str = "/dev/rxdsk-control";
pub const MODULE: &str = "/lib/modules/rxdsk.ko";

fn open_control() -> Result<std::fs::File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL)
        .map_err(|e| format!("open {CONTROL}: {e}"))
}

/// Issues a raw ioctl with a buffer; returns the errno or the buffer.
fn raw_ioctl(fd: i32, request: u64, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: `buf` is valid and writable for its whole length, and every request issued here
    // encodes a size no larger than `buf.len()`, so the kernel writes only inside it.
    let rc = unsafe { nix::libc::ioctl(fd, request as _, buf.as_mut_ptr()) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub fn module_load() -> TestResult {
    cmd_ok("insmod", &[MODULE])?;
    ensure(is_char_device(CONTROL), || {
        format!("{CONTROL} is not a character device")
    })?;
    let mode = std::fs::metadata(CONTROL)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode()
        & 0o777;
    ensure(mode == 0o600, || {
        format!("{CONTROL} has mode {mode:o}, want 600 (root only)")
    })?;
    ensure(std::path::Path::new("/sys/module/rxdsk").is_dir(), || {
        "/sys/module/rxdsk missing".into()
    })
}

pub fn version_roundtrip() -> TestResult {
    let out = cmd_ok("rxdskctl", &["version"])?;
    // The version this build defines (the module's is kept in step with the workspace's).
    let want = format!(
        "rxdsk module {} (ABI {}.{}",
        env!("CARGO_PKG_VERSION"),
        abi::RXDSK_ABI_MAJOR,
        abi::RXDSK_ABI_MINOR
    );
    ensure(out.stdout.contains(&want), || {
        format!("`rxdskctl version` printed {:?}, want {want:?}", out.stdout)
    })?;
    let json = cmd_ok("rxdskctl", &["version", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&json.stdout)
        .map_err(|e| format!("bad JSON: {e}: {}", json.stdout))?;
    ensure(
        v["module"]["abi-major"] == abi::RXDSK_ABI_MAJOR
            && v["module"]["abi-minor"] == abi::RXDSK_ABI_MINOR
            && v["module"]["version"] == env!("CARGO_PKG_VERSION"),
        || format!("JSON: {v}"),
    )?;
    ensure(
        v["module"]["features"].as_u64() == Some(abi::RXDSK_FEATURES_ALL),
        || format!("JSON: {v}, want features {:#x}", abi::RXDSK_FEATURES_ALL),
    )
}

pub fn version_no_uninitialised_bytes() -> TestResult {
    let f = open_control()?;
    for pattern in [0xA5u8, 0x5A] {
        let mut buf = [pattern; core::mem::size_of::<RxdskVersion>()];
        raw_ioctl(f.as_raw_fd(), abi::RXDSK_IOC_GET_VERSION as u64, &mut buf)
            .map_err(|e| format!("GET_VERSION: {e}"))?;
        // The module version is NUL padded and the reserved tail zero: no byte keeps the pattern.
        let version_field = &buf[8..40];
        let len = version_field.iter().position(|&b| b == 0).unwrap_or(32);
        ensure(version_field[len..].iter().all(|&b| b == 0), || {
            format!("version padding not zeroed: {buf:02x?}")
        })?;
        ensure(buf[40..].iter().all(|&b| b == 0), || {
            format!("reserved tail not zeroed: {buf:02x?}")
        })?;
        ensure(buf[0..4] == abi::RXDSK_ABI_MAJOR.to_ne_bytes(), || {
            format!("abi_major: {buf:02x?}")
        })?;
    }
    Ok(())
}

pub fn unknown_ioctl_enotty() -> TestResult {
    let f = open_control()?;
    let mut buf = [0u8; 256];
    let cases: &[(&str, u64)] = &[
        (
            "unused command number",
            nix::request_code_read!(abi::RXDSK_IOC_MAGIC, 0xEE, 8),
        ),
        ("foreign ioctl type", nix::request_code_read!(b'L', 0, 8)),
        (
            "GET_VERSION with a wrong size",
            nix::request_code_read!(abi::RXDSK_IOC_MAGIC, abi::nr::GET_VERSION, 64),
        ),
        (
            "GET_VERSION with a wrong direction",
            nix::request_code_write!(abi::RXDSK_IOC_MAGIC, abi::nr::GET_VERSION, 72),
        ),
        (
            "bare _IO",
            nix::request_code_none!(abi::RXDSK_IOC_MAGIC, 0x7F),
        ),
    ];
    for (what, request) in cases {
        let got = raw_ioctl(f.as_raw_fd(), *request, &mut buf);
        ensure(got == Err(Errno::ENOTTY), || {
            format!("{what} ({request:#x}): got {got:?}, want ENOTTY")
        })?;
    }
    Ok(())
}

/// Runs as nobody: 0 if every command fails with EPERM.
pub fn probe_eperm() -> i32 {
    let Ok(f) = open_control() else { return 10 };
    let mut buf = [0u8; core::mem::size_of::<RxdskVersion>()];
    let version = raw_ioctl(f.as_raw_fd(), abi::RXDSK_IOC_GET_VERSION as u64, &mut buf);
    let features = raw_ioctl(f.as_raw_fd(), abi::RXDSK_IOC_GET_FEATURES as u64, &mut buf);
    match (version, features) {
        (Err(Errno::EPERM), Err(Errno::EPERM)) => 0,
        (v, f) => {
            println!("# as nobody: GET_VERSION {v:?}, GET_FEATURES {f:?}");
            11
        }
    }
}

pub fn unprivileged_eperm() -> TestResult {
    // Open the node to everyone: the capability check, not the file mode, must refuse.
    std::fs::set_permissions(CONTROL, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| e.to_string())?;
    let result = as_nobody(probe_eperm);
    std::fs::set_permissions(CONTROL, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let code = result?;
    ensure(code == 0, || {
        format!("unprivileged probe exited {code} (10: open failed, 11: not EPERM)")
    })
}

pub fn module_unload() -> TestResult {
    cmd_ok("rmmod", &["rxdsk"])?;
    ensure(!std::path::Path::new(CONTROL).exists(), || {
        format!("{CONTROL} still exists after rmmod")
    })?;
    ensure(!std::path::Path::new("/sys/module/rxdsk").exists(), || {
        "/sys/module/rxdsk still exists".into()
    })?;
    // A second load/unload cycle works too.
    cmd_ok("insmod", &[MODULE])?;
    cmd_ok("rmmod", &["rxdsk"])?;
    ensure(!std::path::Path::new(CONTROL).exists(), || {
        format!("{CONTROL} still exists after the second rmmod")
    })
}

pub fn rxdskctl_without_module() -> TestResult {
    let out = cmd("rxdskctl", &["version"])?;
    ensure(out.status == 1, || {
        format!("exit status {}, want 1", out.status)
    })?;
    ensure(
        out.stderr
            .contains("rxdskctl: /dev/rxdsk-control: cannot open:")
            && out.stderr.contains("module loaded"),
        || {
            format!(
                "stderr {:?} does not say the module is not loaded",
                out.stderr
            )
        },
    )
}
