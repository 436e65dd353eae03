//! The control node and the typed ioctl calls on it.

use rxdsk_ioctl::{self as abi, RxdskFeatures, RxdskVersion};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

nix::ioctl_read!(
    ioc_get_version,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::GET_VERSION,
    RxdskVersion
);
nix::ioctl_read!(
    ioc_get_features,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::GET_FEATURES,
    RxdskFeatures
);

/// Why a call on the control node failed, in the words the user sees.
#[derive(Debug)]
pub struct ControlError {
    /// What the message is about (`/dev/rxdsk-control`, `/dev/rxd0`).
    pub subject: String,
    /// What was attempted (`cannot destroy`).
    pub action: &'static str,
    pub errno: nix::errno::Errno,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use nix::errno::Errno;
        let cause = match self.errno {
            Errno::ENOENT if self.action == "cannot open" => {
                "no such file (is the rxdsk module loaded? try: modprobe rxdsk)"
            }
            Errno::EACCES | Errno::EPERM => "permission denied (CAP_SYS_ADMIN is required)",
            Errno::ENOTTY => "operation not supported by the loaded rxdsk module (ABI too old?)",
            Errno::EBUSY => "device busy",
            e => e.desc(),
        };
        write!(f, "{}: {}: {}", self.subject, self.action, cause)
    }
}

/// An open `/dev/rxdsk-control`.
pub struct Control {
    file: File,
    path: PathBuf,
}

impl Control {
    pub fn path() -> PathBuf {
        std::env::var_os("RXDSK_CONTROL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("/dev/{}", abi::RXDSK_CONTROL_NAME)))
    }

    pub fn open() -> Result<Self, ControlError> {
        let path = Self::path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ControlError {
                subject: path.display().to_string(),
                action: "cannot open",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio())),
            })?;
        Ok(Self { file, path })
    }

    fn err(&self, action: &'static str, errno: nix::errno::Errno) -> ControlError {
        ControlError {
            subject: self.path.display().to_string(),
            action,
            errno,
        }
    }

    pub fn version(&self) -> Result<RxdskVersion, ControlError> {
        let mut v = RxdskVersion::default();
        // SAFETY: the fd is open for the lifetime of `self` and `v` is a valid, writable
        // structure of exactly the size encoded in the command number.
        unsafe { ioc_get_version(self.file.as_raw_fd(), &mut v) }
            .map_err(|e| self.err("cannot read version", e))?;
        Ok(v)
    }

    pub fn features(&self) -> Result<u64, ControlError> {
        let mut f = RxdskFeatures::default();
        // SAFETY: as in `version`.
        unsafe { ioc_get_features(self.file.as_raw_fd(), &mut f) }
            .map_err(|e| self.err("cannot read features", e))?;
        Ok(f.features)
    }
}

fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}

/// The NUL-padded module version as text.
pub fn fixed_str_to_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
