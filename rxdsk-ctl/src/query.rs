//! What `list`, `stats` and `version` read, from either source: sysfs (anyone may read it;
//! see [`crate::sysfs`]) or, for a module without those files, the ioctls on the control node
//! (CAP_SYS_ADMIN).

use crate::backend::Backend;
use crate::control::{action, fixed_str_to_string, ControlError};
use crate::device::device_path;
use crate::list::Row;
use nix::errno::Errno;
use rxdsk_ioctl::{RxdskComprStats, RxdskStats, RXDSK_FLAG_COMPRESSED};

/// The module's version and ABI, as GET_VERSION and GET_FEATURES give them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleVersion {
    pub version: String,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub features: u64,
}

/// The read-only queries. Errors are whole messages (`/dev/rxd0: cannot read statistics: no
/// such device`).
pub trait Query {
    /// What messages about the module as a whole name: the control node, or the sysfs
    /// directory.
    fn subject(&self) -> String;
    /// All device ids, ascending.
    fn ids(&self) -> Result<Vec<u32>, String>;
    /// Device `id` as `list` shows it (INFO, and COMPR_STATS of a compressed device); `None`
    /// if there is no such device.
    fn row(&self, id: u32) -> Result<Option<Row>, String>;
    /// STATS, and COMPR_STATS of a compressed device.
    fn stats(&self, id: u32) -> Result<(RxdskStats, Option<RxdskComprStats>), String>;
    fn version(&self) -> Result<ModuleVersion, String>;
    /// The cache counters of device `id`, while its memory limit is a cache size (a module
    /// without sysfs files has none).
    fn cache(&self, _id: u32) -> Option<crate::stats::CacheStats> {
        None
    }
}

/// The queries through the ioctls of an open control node.
pub struct Ioctls<B>(pub B);

impl<B: Backend> Query for Ioctls<B> {
    fn subject(&self) -> String {
        self.0.control_path()
    }

    fn ids(&self) -> Result<Vec<u32>, String> {
        self.0
            .list()
            .map_err(|e| ControlError::new(self.0.control_path(), action::LIST, e).to_string())
    }

    fn row(&self, id: u32) -> Result<Option<Row>, String> {
        let error = |e| Err(ControlError::new(device_path(id), action::INFO, e).to_string());
        let info = match self.0.info(id) {
            Ok(info) => info,
            Err(Errno::ENODEV) => return Ok(None),
            Err(e) => return error(e),
        };
        let compr = if info.flags & RXDSK_FLAG_COMPRESSED != 0 {
            match self.0.compr_stats(id) {
                Ok(c) => Some(c),
                // Destroyed since INFO.
                Err(Errno::ENODEV) => return Ok(None),
                Err(e) => return error(e),
            }
        } else {
            None
        };
        Ok(Some(Row {
            info,
            compr,
            ..Row::default()
        }))
    }

    fn stats(&self, id: u32) -> Result<(RxdskStats, Option<RxdskComprStats>), String> {
        let error = |e| ControlError::new(device_path(id), action::STATS, e).to_string();
        let stats = self.0.stats(id).map_err(error)?;
        let compr = match self.0.compr_stats(id) {
            Ok(c) => Some(c),
            // Not a compressed device (or a module before ABI 1.4).
            Err(Errno::EINVAL | Errno::ENOTTY) => None,
            Err(e) => return Err(error(e)),
        };
        Ok((stats, compr))
    }

    fn version(&self) -> Result<ModuleVersion, String> {
        let subject = self.0.control_path();
        let v = self
            .0
            .version()
            .map_err(|e| ControlError::new(&subject, action::VERSION, e).to_string())?;
        let features = self
            .0
            .features()
            .map_err(|e| ControlError::new(&subject, action::FEATURES, e).to_string())?;
        Ok(ModuleVersion {
            version: fixed_str_to_string(&v.module_version),
            abi_major: v.abi_major,
            abi_minor: v.abi_minor,
            features,
        })
    }
}
