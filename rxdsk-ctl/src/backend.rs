//! What the commands need from the kernel, as a trait so that the command logic can be tested
//! on the host with a fake.

use nix::errno::Errno;
use rxdsk_ioctl::{
    RxdskAttach, RxdskComprStats, RxdskCreate, RxdskFlush, RxdskInfo, RxdskRestore, RxdskStats,
    RxdskVersion,
};

pub trait Backend {
    /// The control node, the subject of errors that concern no single device.
    fn control_path(&self) -> String;
    fn version(&self) -> Result<RxdskVersion, Errno>;
    fn features(&self) -> Result<u64, Errno>;
    /// Creates a device and returns its id.
    fn create(&self, request: &RxdskCreate) -> Result<u32, Errno>;
    fn destroy(&self, id: u32, flags: u64) -> Result<(), Errno>;
    fn resize(&self, id: u32, size_bytes: u64, flags: u64) -> Result<(), Errno>;
    fn info(&self, id: u32) -> Result<RxdskInfo, Errno>;
    /// All device ids, ascending.
    fn list(&self) -> Result<Vec<u32>, Errno>;
    fn stats(&self, id: u32) -> Result<RxdskStats, Errno>;
    /// Compression counters of a compressed device (`EINVAL` for another).
    fn compr_stats(&self, id: u32) -> Result<RxdskComprStats, Errno>;
    fn attach(&self, request: &RxdskAttach) -> Result<(), Errno>;
    fn detach(&self, id: u32, flags: u64) -> Result<(), Errno>;
    fn flush(&self, id: u32) -> Result<RxdskFlush, Errno>;
    /// Creates a device from an image; returns the kernel's answer (id, generation).
    fn restore(&self, request: &RxdskRestore) -> Result<RxdskRestore, Errno>;
    /// Waits briefly for the block device node to appear; false if it did not.
    fn wait_for_node(&self, path: &str) -> bool;
}
