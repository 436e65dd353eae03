//! The control node and the typed ioctl calls on it.

use crate::backend::Backend;
use nix::errno::Errno;
use rxdsk_ioctl::{
    self as abi, RxdskAttach, RxdskComprStats, RxdskCreate, RxdskDestroy, RxdskDetach,
    RxdskFeatures, RxdskFlush, RxdskInfo, RxdskList, RxdskResize, RxdskRestore, RxdskStats,
    RxdskVersion,
};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
nix::ioctl_readwrite!(
    ioc_create,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::CREATE,
    RxdskCreate
);
nix::ioctl_write_ptr!(
    ioc_destroy,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::DESTROY,
    RxdskDestroy
);
nix::ioctl_write_ptr!(
    ioc_resize,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::RESIZE,
    RxdskResize
);
nix::ioctl_readwrite!(ioc_info, abi::RXDSK_IOC_MAGIC, abi::nr::INFO, RxdskInfo);
nix::ioctl_readwrite!(ioc_list, abi::RXDSK_IOC_MAGIC, abi::nr::LIST, RxdskList);
nix::ioctl_readwrite!(ioc_stats, abi::RXDSK_IOC_MAGIC, abi::nr::STATS, RxdskStats);
nix::ioctl_readwrite!(
    ioc_compr_stats,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::COMPR_STATS,
    RxdskComprStats
);
nix::ioctl_write_ptr!(
    ioc_attach,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::ATTACH,
    RxdskAttach
);
nix::ioctl_write_ptr!(
    ioc_detach,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::DETACH,
    RxdskDetach
);
nix::ioctl_readwrite!(ioc_flush, abi::RXDSK_IOC_MAGIC, abi::nr::FLUSH, RxdskFlush);
nix::ioctl_readwrite!(
    ioc_restore,
    abi::RXDSK_IOC_MAGIC,
    abi::nr::RESTORE,
    RxdskRestore
);

/// A path as the ABI carries it: NUL-terminated in `RXDSK_PATH_MAX` bytes.
pub fn abi_path(path: &str) -> Result<[u8; abi::RXDSK_PATH_MAX], String> {
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= abi::RXDSK_PATH_MAX || bytes.contains(&0) {
        return Err(format!(
            "{path}: not a usable path (1 to {} bytes, no NUL)",
            abi::RXDSK_PATH_MAX - 1
        ));
    }
    let mut out = [0u8; abi::RXDSK_PATH_MAX];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// What was attempted; part of the message, and `ControlError` words some causes by it.
pub mod action {
    pub const OPEN: &str = "cannot open";
    pub const VERSION: &str = "cannot read version";
    pub const FEATURES: &str = "cannot read features";
    pub const CREATE: &str = "cannot create device";
    pub const DESTROY: &str = "cannot destroy";
    pub const RESIZE: &str = "cannot resize";
    pub const INFO: &str = "cannot read device information";
    pub const LIST: &str = "cannot list devices";
    pub const STATS: &str = "cannot read statistics";
    pub const ATTACH: &str = "cannot attach";
    pub const DETACH: &str = "cannot detach";
    pub const FLUSH: &str = "cannot flush";
    pub const RESTORE: &str = "cannot restore";
}

/// Why a call on the control node failed, in the words the user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// What the message is about (`/dev/rxdsk-control`, `/dev/rxd0`), if anything.
    pub subject: Option<String>,
    /// What was attempted (`cannot destroy`), one of [`action`].
    pub action: &'static str,
    pub errno: Errno,
}

impl ControlError {
    pub fn new(subject: impl Into<String>, action: &'static str, errno: Errno) -> Self {
        Self {
            subject: Some(subject.into()),
            action,
            errno,
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cause = match self.errno {
            Errno::ENOENT if self.action == action::OPEN => {
                "no such file (is the rxdsk module loaded? try: modprobe rxdsk)"
            }
            Errno::EACCES | Errno::EPERM => "permission denied (CAP_SYS_ADMIN is required)",
            Errno::ENOTTY => "operation not supported by the loaded rxdsk module (ABI too old?)",
            Errno::EEXIST => "device already exists",
            Errno::ENODEV => "no such device",
            Errno::ENOSPC if self.action == action::CREATE => "no free device id",
            Errno::ENOSPC if self.action == action::ATTACH => {
                "the backing device is smaller than the device plus its 4 KiB metadata block"
            }
            Errno::ELOOP if self.action == action::ATTACH => {
                "the backing device is the device itself, or leads back to it through the backing devices of other rxdsk devices"
            }
            Errno::EBUSY if self.action == action::ATTACH => {
                "device busy (a backing device is attached, or the backing device is in use)"
            }
            Errno::ENXIO if self.action == action::FLUSH || self.action == action::DETACH => {
                "no backing device attached"
            }
            Errno::EIO if self.action == action::FLUSH || self.action == action::DETACH => {
                "I/O error on the backing device (the changes stay in memory; retry the flush)"
            }
            Errno::EINVAL if self.action == action::RESTORE => "no rxdsk image there",
            Errno::EBUSY => "device busy",
            Errno::EUCLEAN if self.action == action::RESTORE => {
                "the image's last flush did not complete (use --force to restore it anyway)"
            }
            Errno::ENOSPC => "no space left",
            Errno::EINVAL => "invalid argument",
            e => e.desc(),
        };
        if let Some(subject) = &self.subject {
            write!(f, "{subject}: ")?;
        }
        write!(f, "{}: {}", self.action, cause)
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
        Self::open_at(Self::path())
    }

    fn open_at(path: PathBuf) -> Result<Self, ControlError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
                ControlError::new(path.display().to_string(), action::OPEN, errno)
            })?;
        Ok(Self { file, path })
    }
}

impl Backend for Control {
    fn control_path(&self) -> String {
        self.path.display().to_string()
    }

    fn version(&self) -> Result<RxdskVersion, Errno> {
        let mut v = RxdskVersion::default();
        // SAFETY: the fd is open for the lifetime of `self` and `v` is a valid, writable
        // structure of exactly the size encoded in the command number.
        unsafe { ioc_get_version(self.file.as_raw_fd(), &mut v) }?;
        Ok(v)
    }

    fn features(&self) -> Result<u64, Errno> {
        let mut f = RxdskFeatures::default();
        // SAFETY: as in `version`.
        unsafe { ioc_get_features(self.file.as_raw_fd(), &mut f) }?;
        Ok(f.features)
    }

    fn create(&self, request: &RxdskCreate) -> Result<u32, Errno> {
        let mut c = *request;
        // SAFETY: as in `version`; the structure is read and written back by the kernel.
        unsafe { ioc_create(self.file.as_raw_fd(), &mut c) }?;
        Ok(c.id)
    }

    fn destroy(&self, id: u32, flags: u64) -> Result<(), Errno> {
        let d = RxdskDestroy {
            id,
            flags,
            ..Default::default()
        };
        // SAFETY: the fd is open and `d` is a valid structure of the encoded size; the kernel
        // only reads it.
        unsafe { ioc_destroy(self.file.as_raw_fd(), &d) }?;
        Ok(())
    }

    fn resize(&self, id: u32, size_bytes: u64, flags: u64) -> Result<(), Errno> {
        let r = RxdskResize {
            id,
            size_bytes,
            flags,
            ..Default::default()
        };
        // SAFETY: as in `destroy`.
        unsafe { ioc_resize(self.file.as_raw_fd(), &r) }?;
        Ok(())
    }

    fn info(&self, id: u32) -> Result<RxdskInfo, Errno> {
        let mut i = RxdskInfo {
            id,
            ..Default::default()
        };
        // SAFETY: as in `version`.
        unsafe { ioc_info(self.file.as_raw_fd(), &mut i) }?;
        Ok(i)
    }

    fn list(&self) -> Result<Vec<u32>, Errno> {
        list_ids(|ids| {
            let mut l = RxdskList {
                ids_ptr: if ids.is_empty() {
                    0
                } else {
                    ids.as_mut_ptr() as u64
                },
                capacity: u32::try_from(ids.len()).map_err(|_| Errno::EOVERFLOW)?,
                ..Default::default()
            };
            // SAFETY: the fd is open, `l` is a valid structure of the encoded size, and
            // `ids_ptr` points to `capacity` writable u32s that outlive the call.
            unsafe { ioc_list(self.file.as_raw_fd(), &mut l) }?;
            Ok(l.count)
        })
    }

    fn stats(&self, id: u32) -> Result<RxdskStats, Errno> {
        let mut s = RxdskStats {
            id,
            ..Default::default()
        };
        // SAFETY: as in `version`.
        unsafe { ioc_stats(self.file.as_raw_fd(), &mut s) }?;
        Ok(s)
    }

    fn compr_stats(&self, id: u32) -> Result<RxdskComprStats, Errno> {
        let mut s = RxdskComprStats {
            id,
            ..Default::default()
        };
        // SAFETY: as in `version`.
        unsafe { ioc_compr_stats(self.file.as_raw_fd(), &mut s) }?;
        Ok(s)
    }

    fn attach(&self, request: &RxdskAttach) -> Result<(), Errno> {
        // SAFETY: the fd is open and `request` is a valid structure of the encoded size; the
        // kernel only reads it.
        unsafe { ioc_attach(self.file.as_raw_fd(), request) }?;
        Ok(())
    }

    fn detach(&self, id: u32, flags: u64) -> Result<(), Errno> {
        let d = RxdskDetach {
            id,
            flags,
            ..Default::default()
        };
        // SAFETY: as in `attach`.
        unsafe { ioc_detach(self.file.as_raw_fd(), &d) }?;
        Ok(())
    }

    fn flush(&self, id: u32) -> Result<RxdskFlush, Errno> {
        let mut f = RxdskFlush {
            id,
            ..Default::default()
        };
        // SAFETY: as in `version`.
        unsafe { ioc_flush(self.file.as_raw_fd(), &mut f) }?;
        Ok(f)
    }

    fn restore(&self, request: &RxdskRestore) -> Result<RxdskRestore, Errno> {
        let mut r = *request;
        // SAFETY: as in `version`.
        unsafe { ioc_restore(self.file.as_raw_fd(), &mut r) }?;
        Ok(r)
    }

    fn wait_for_node(&self, path: &str) -> bool {
        // devtmpfs creates the node when the disk is added, udev may take a moment longer.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The LIST protocol: `call` fills the array it is given and returns the total count; retries
/// with a larger array while devices appear faster than we can look.
pub fn list_ids(mut call: impl FnMut(&mut [u32]) -> Result<u32, Errno>) -> Result<Vec<u32>, Errno> {
    const ATTEMPTS: usize = 8;
    // Room for a few devices created between two calls.
    const SLACK: usize = 16;
    let mut ids = vec![0u32; SLACK];
    for _ in 0..ATTEMPTS {
        let count = usize::try_from(call(&mut ids)?).map_err(|_| Errno::EOVERFLOW)?;
        if count <= ids.len() {
            ids.truncate(count);
            ids.sort_unstable();
            return Ok(ids);
        }
        ids = vec![0u32; count.saturating_add(SLACK)];
    }
    Err(Errno::EAGAIN)
}

/// The NUL-padded module version as text.
pub fn fixed_str_to_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: Option<&str>, action: &'static str, errno: Errno) -> String {
        ControlError {
            subject: subject.map(str::to_string),
            action,
            errno,
        }
        .to_string()
    }

    #[test]
    fn messages_name_subject_action_and_cause() {
        let dev = Some("/dev/rxd0");
        assert_eq!(
            msg(dev, action::DESTROY, Errno::EBUSY),
            "/dev/rxd0: cannot destroy: device busy"
        );
        assert_eq!(
            msg(dev, action::RESIZE, Errno::ENODEV),
            "/dev/rxd0: cannot resize: no such device"
        );
        assert_eq!(
            msg(dev, action::RESIZE, Errno::EINVAL),
            "/dev/rxd0: cannot resize: invalid argument"
        );
        assert_eq!(
            msg(dev, action::STATS, Errno::EPERM),
            "/dev/rxd0: cannot read statistics: permission denied (CAP_SYS_ADMIN is required)"
        );
        assert_eq!(
            msg(None, action::CREATE, Errno::ENOSPC),
            "cannot create device: no free device id"
        );
        assert_eq!(
            msg(dev, action::RESIZE, Errno::ENOSPC),
            "/dev/rxd0: cannot resize: no space left"
        );
        assert_eq!(
            msg(Some("/dev/rxdsk-control"), action::LIST, Errno::ENOTTY),
            "/dev/rxdsk-control: cannot list devices: operation not supported by the loaded \
             rxdsk module (ABI too old?)"
        );
        assert_eq!(
            msg(dev, action::INFO, Errno::EIO),
            "/dev/rxd0: cannot read device information: I/O error"
        );
    }

    #[test]
    fn missing_control_node_suggests_loading_the_module() {
        assert_eq!(
            msg(Some("/dev/rxdsk-control"), action::OPEN, Errno::ENOENT),
            "/dev/rxdsk-control: cannot open: no such file (is the rxdsk module loaded? try: \
             modprobe rxdsk)"
        );
        // ENOENT from anything but opening is not about the module.
        assert_eq!(
            msg(Some("/dev/rxd0"), action::INFO, Errno::ENOENT),
            "/dev/rxd0: cannot read device information: No such file or directory"
        );
    }

    #[test]
    fn open_reports_the_path_and_enoent() {
        let missing = PathBuf::from("/nonexistent/rxdsk-control");
        let err = Control::open_at(missing).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "/nonexistent/rxdsk-control: cannot open: no such file (is the rxdsk module \
                 loaded? try: modprobe rxdsk)"
            )
        );
    }

    #[test]
    fn every_ioctl_reaches_the_kernel() {
        // /dev/null knows no rxdsk command: each call must come back as ENOTTY.
        let control = match Control::open_at(PathBuf::from("/dev/null")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(control.control_path(), "/dev/null");
        assert_eq!(control.version().err(), Some(Errno::ENOTTY));
        assert_eq!(control.features().err(), Some(Errno::ENOTTY));
        let create = RxdskCreate {
            size_bytes: 4096,
            logical_block_size: 4096,
            ..Default::default()
        };
        assert_eq!(control.create(&create).err(), Some(Errno::ENOTTY));
        assert_eq!(control.destroy(0, 0).err(), Some(Errno::ENOTTY));
        assert_eq!(control.resize(0, 4096, 0).err(), Some(Errno::ENOTTY));
        assert_eq!(control.info(0).err(), Some(Errno::ENOTTY));
        assert_eq!(control.list().err(), Some(Errno::ENOTTY));
        assert_eq!(control.stats(0).err(), Some(Errno::ENOTTY));
    }

    #[test]
    fn list_fits_the_first_array() {
        let mut calls = 0;
        let ids = list_ids(|buf| {
            calls += 1;
            buf[..3].copy_from_slice(&[0, 2, 5]);
            Ok(3)
        });
        assert_eq!(ids, Ok(vec![0, 2, 5]));
        assert_eq!(calls, 1);
    }

    #[test]
    fn list_retries_with_a_larger_array() {
        // 40 devices, then 60 while we retry: three calls.
        let mut totals = vec![40u32, 60, 60].into_iter();
        let mut capacities = Vec::new();
        let ids = list_ids(|buf| {
            capacities.push(buf.len());
            let total = totals.next().ok_or(Errno::EIO)?;
            for (i, slot) in buf.iter_mut().take(total as usize).enumerate() {
                *slot = i as u32;
            }
            Ok(total)
        });
        assert_eq!(ids, Ok((0..60).collect::<Vec<u32>>()));
        assert_eq!(capacities, vec![16, 56, 76]);
    }

    #[test]
    fn list_passes_errors_and_gives_up_on_endless_growth() {
        assert_eq!(list_ids(|_| Err(Errno::EPERM)), Err(Errno::EPERM));
        let mut total = 0u32;
        let res = list_ids(|buf| {
            total = buf.len() as u32 + 1;
            Ok(total)
        });
        assert_eq!(res, Err(Errno::EAGAIN));
    }

    #[test]
    fn module_version_text() {
        assert_eq!(fixed_str_to_string(b"0.1.0\0\0\0"), "0.1.0");
        assert_eq!(fixed_str_to_string(b"full"), "full");
    }
}
