//! A thin typed client for `/dev/rxdsk-control`, and [`Device`], a guard that destroys the
//! device it owns (forcibly) when dropped, so a failing test leaves no device behind.
//!
//! The typed calls return the raw `Errno` so that tests can check the error contract; the raw
//! variants send whatever bytes or numbers a test wants.

use crate::harness::{is_block_device, wait_until};
use nix::errno::Errno;
use rxdsk_ioctl::{
    self as abi, RxdskAttach, RxdskComprStats, RxdskCreate, RxdskDestroy, RxdskDetach, RxdskFlush,
    RxdskInfo, RxdskList, RxdskResize, RxdskStats,
};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::time::Duration;

pub const CONTROL: &str = "/dev/rxdsk-control";

/// Size field of an ioctl number (generic `_IOC` layout: 14 bits at bit 16).
pub fn ioc_size(request: u64) -> usize {
    ((request >> 16) & 0x3FFF) as usize
}

/// The block device node of device `id`.
pub fn dev_path(id: u32) -> String {
    format!("/dev/{}{id}", abi::RXDSK_DISK_PREFIX)
}

/// An open control node. Opened per use, never kept across a test: an open control node pins
/// the module and would make `rmmod` fail.
pub struct Control {
    file: File,
}

impl Control {
    pub fn open() -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL)
            .map_err(|e| format!("open {CONTROL}: {e}"))?;
        Ok(Self { file })
    }

    /// Issues `request` with a pointer to `arg`.
    fn ioctl<T>(&self, request: u32, arg: &mut T) -> Result<(), Errno> {
        // A programming error, not a test outcome: the kernel would access bytes outside `arg`.
        assert_eq!(ioc_size(request as u64), core::mem::size_of::<T>());
        // SAFETY: `arg` is a valid, exclusively borrowed `T`, and `request` encodes exactly
        // `size_of::<T>()` bytes (checked above), so the kernel reads and writes only inside it.
        let rc = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), request as _, arg as *mut T) };
        if rc < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// ATTACH with every field as given.
    pub fn attach(&self, a: &RxdskAttach) -> Result<(), Errno> {
        let mut a = *a;
        self.ioctl(abi::RXDSK_IOC_ATTACH, &mut a)
    }

    /// CREATE with every field as given; on success `c.id` holds the new id.
    pub fn create_raw(&self, c: &mut RxdskCreate) -> Result<(), Errno> {
        self.ioctl(abi::RXDSK_IOC_CREATE, c)
    }

    /// Creates a device; returns its id.
    pub fn create(
        &self,
        size_bytes: u64,
        logical_block_size: u32,
        mem_limit_bytes: u64,
        flags: u64,
    ) -> Result<u32, Errno> {
        let mut c = RxdskCreate {
            size_bytes,
            mem_limit_bytes,
            flags,
            logical_block_size,
            ..Default::default()
        };
        self.create_raw(&mut c)?;
        Ok(c.id)
    }

    pub fn destroy_raw(&self, d: &RxdskDestroy) -> Result<(), Errno> {
        let mut d = *d;
        self.ioctl(abi::RXDSK_IOC_DESTROY, &mut d)
    }

    pub fn destroy(&self, id: u32, flags: u64) -> Result<(), Errno> {
        self.destroy_raw(&RxdskDestroy {
            id,
            flags,
            ..Default::default()
        })
    }

    pub fn resize_raw(&self, r: &RxdskResize) -> Result<(), Errno> {
        let mut r = *r;
        self.ioctl(abi::RXDSK_IOC_RESIZE, &mut r)
    }

    pub fn resize(&self, id: u32, size_bytes: u64, flags: u64) -> Result<(), Errno> {
        self.resize_raw(&RxdskResize {
            id,
            size_bytes,
            flags,
            ..Default::default()
        })
    }

    pub fn info_raw(&self, i: &mut RxdskInfo) -> Result<(), Errno> {
        self.ioctl(abi::RXDSK_IOC_INFO, i)
    }

    pub fn info(&self, id: u32) -> Result<RxdskInfo, Errno> {
        let mut i = RxdskInfo {
            id,
            ..Default::default()
        };
        self.info_raw(&mut i)?;
        Ok(i)
    }

    pub fn stats_raw(&self, s: &mut RxdskStats) -> Result<(), Errno> {
        self.ioctl(abi::RXDSK_IOC_STATS, s)
    }

    /// DETACH of device `id` (flushes first).
    pub fn detach(&self, id: u32) -> Result<(), Errno> {
        let mut d = RxdskDetach {
            id,
            ..Default::default()
        };
        self.ioctl(abi::RXDSK_IOC_DETACH, &mut d)
    }

    /// FLUSH of device `id`: what it wrote.
    pub fn flush(&self, id: u32) -> Result<RxdskFlush, Errno> {
        let mut f = RxdskFlush {
            id,
            ..Default::default()
        };
        self.ioctl(abi::RXDSK_IOC_FLUSH, &mut f)?;
        Ok(f)
    }

    pub fn stats(&self, id: u32) -> Result<RxdskStats, Errno> {
        let mut s = RxdskStats {
            id,
            ..Default::default()
        };
        self.stats_raw(&mut s)?;
        Ok(s)
    }

    pub fn compr_stats(&self, id: u32) -> Result<RxdskComprStats, Errno> {
        let mut s = RxdskComprStats {
            id,
            ..Default::default()
        };
        self.ioctl(abi::RXDSK_IOC_COMPR_STATS, &mut s)?;
        Ok(s)
    }

    /// LIST with every field as given. `l.ids_ptr` must be 0 or point to at least
    /// `l.capacity` writable `u32`s: use [`Control::list_into`] unless testing bad fields.
    fn list_raw(&self, l: &mut RxdskList) -> Result<(), Errno> {
        self.ioctl(abi::RXDSK_IOC_LIST, l)
    }

    /// LIST into `ids` (its length is the capacity) with `count` and `reserved` as given;
    /// returns the `count` the kernel wrote back.
    pub fn list_into(
        &self,
        ids: &mut [u32],
        count_in: u32,
        reserved: [u64; 2],
    ) -> Result<u32, Errno> {
        let mut l = RxdskList {
            ids_ptr: if ids.is_empty() {
                0
            } else {
                ids.as_mut_ptr() as u64
            },
            capacity: ids.len() as u32,
            count: count_in,
            reserved,
        };
        self.list_raw(&mut l)?;
        Ok(l.count)
    }

    /// All device ids, as the kernel reports them (ascending).
    pub fn list(&self) -> Result<Vec<u32>, Errno> {
        let mut cap = 64usize;
        loop {
            let mut ids = vec![0u32; cap];
            let count = self.list_into(&mut ids, 0, [0; 2])? as usize;
            if count <= cap {
                ids.truncate(count);
                return Ok(ids);
            }
            cap = count;
        }
    }

    /// Any request with a buffer. The buffer is extended (with zeros) to the size the request
    /// encodes if it is shorter, so the kernel never touches memory outside it.
    pub fn raw_bytes(&self, request: u64, buf: &mut [u8]) -> Result<i32, Errno> {
        let mut tmp = buf.to_vec();
        if tmp.len() < ioc_size(request) {
            tmp.resize(ioc_size(request), 0);
        }
        if tmp.is_empty() {
            tmp.push(0);
        }
        // SAFETY: `tmp` is valid and writable for at least the size `request` encodes, so the
        // kernel reads and writes only inside it.
        let rc = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), request as _, tmp.as_mut_ptr()) };
        let n = buf.len();
        buf.copy_from_slice(&tmp[..n]);
        if rc < 0 {
            Err(Errno::last())
        } else {
            Ok(rc)
        }
    }

    /// Any request with a plain number as its argument (for `_IO` requests, or a pointer the
    /// process has not mapped, such as 0).
    ///
    /// # Safety
    ///
    /// If `request` makes the kernel write through its argument, `arg` must not be the
    /// address of memory this process uses (0 and other unmapped addresses are fine).
    pub unsafe fn raw_number(&self, request: u64, arg: u64) -> Result<i32, Errno> {
        // SAFETY: the caller guarantees that a write through `arg` cannot hit our memory; a
        // read through it has no effect on us.
        let rc = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), request as _, arg) };
        if rc < 0 {
            Err(Errno::last())
        } else {
            Ok(rc)
        }
    }
}

/// The ids LIST reports now, as a test error if LIST fails.
pub fn list_ids() -> Result<Vec<u32>, String> {
    Control::open()?
        .list()
        .map_err(|e| format!("LIST failed: {e}"))
}

/// A device this test owns: destroyed with FORCE when dropped unless [`Device::destroy`] or
/// [`Device::forget`] was called.
pub struct Device {
    pub id: u32,
    pub path: String,
    armed: bool,
}

impl Device {
    pub fn create(size_bytes: u64, logical_block_size: u32) -> Result<Self, String> {
        Self::create_with(size_bytes, logical_block_size, 0, 0)
    }

    pub fn create_with(
        size_bytes: u64,
        logical_block_size: u32,
        mem_limit_bytes: u64,
        flags: u64,
    ) -> Result<Self, String> {
        let id = Control::open()?
            .create(size_bytes, logical_block_size, mem_limit_bytes, flags)
            .map_err(|e| {
                format!(
                    "CREATE size {size_bytes} block size {logical_block_size} \
                     mem_limit {mem_limit_bytes} flags {flags:#x}: {e}"
                )
            })?;
        let dev = Self::adopt(id);
        dev.wait_for_node()?;
        Ok(dev)
    }

    /// Takes ownership of an existing device (one created by `rxdskctl`, say).
    pub fn adopt(id: u32) -> Self {
        Self {
            id,
            path: dev_path(id),
            armed: true,
        }
    }

    /// Waits for devtmpfs to show the block node.
    pub fn wait_for_node(&self) -> Result<(), String> {
        if wait_until(Duration::from_secs(5), || is_block_device(&self.path)) {
            Ok(())
        } else {
            Err(format!(
                "{} did not appear as a block device within 5s",
                self.path
            ))
        }
    }

    pub fn info(&self) -> Result<RxdskInfo, String> {
        Control::open()?
            .info(self.id)
            .map_err(|e| format!("INFO {}: {e}", self.path))
    }

    pub fn stats(&self) -> Result<RxdskStats, String> {
        Control::open()?
            .stats(self.id)
            .map_err(|e| format!("STATS {}: {e}", self.path))
    }

    pub fn compr_stats(&self) -> Result<RxdskComprStats, String> {
        Control::open()?
            .compr_stats(self.id)
            .map_err(|e| format!("COMPR_STATS {}: {e}", self.path))
    }

    /// A compressed device (`RXDSK_COMPRESS_*`, level 0: the default).
    pub fn create_compressed(
        size_bytes: u64,
        logical_block_size: u32,
        compress: u32,
        mem_limit_bytes: u64,
    ) -> Result<Self, String> {
        let mut c = RxdskCreate {
            size_bytes,
            logical_block_size,
            mem_limit_bytes,
            compress,
            ..Default::default()
        };
        Control::open()?.create_raw(&mut c).map_err(|e| {
            format!(
                "CREATE {} size {size_bytes} block size {logical_block_size}: {e}",
                abi::RXDSK_COMPRESS_NAMES[compress as usize]
            )
        })?;
        let dev = Self::adopt(c.id);
        dev.wait_for_node()?;
        Ok(dev)
    }

    /// Pages held now, by STATS, cross-checked against INFO's `used_bytes`. Discarded pages
    /// are given back by RCU callbacks at any moment, so the cross-check uses a reading where
    /// STATS did not change around INFO.
    pub fn pages(&self) -> Result<u64, String> {
        let mut s = self.stats()?;
        let mut i = self.info()?;
        for _ in 0..50 {
            let again = self.stats()?;
            if again.pages == s.pages {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            s = again;
            i = self.info()?;
        }
        if i.used_bytes != s.pages * abi::RXDSK_PAGE_SIZE {
            return Err(format!(
                "{}: INFO used_bytes {} but STATS pages {} (x4096 = {})",
                self.path,
                i.used_bytes,
                s.pages,
                s.pages * abi::RXDSK_PAGE_SIZE
            ));
        }
        Ok(s.pages)
    }

    /// RESIZE; the errno is the test's subject. (Failing to open the control node, which
    /// other calls report as text, shows up here as ENOENT.)
    pub fn resize(&self, size_bytes: u64, flags: u64) -> Result<(), Errno> {
        Control::open()
            .map_err(|_| Errno::ENOENT)?
            .resize(self.id, size_bytes, flags)
    }

    /// Destroys the device without FORCE; on failure the guard stays armed.
    pub fn destroy(mut self) -> Result<(), String> {
        Control::open()?
            .destroy(self.id, 0)
            .map_err(|e| format!("DESTROY {}: {e}", self.path))?;
        self.armed = false;
        Ok(())
    }

    /// Disarms the guard (the device is gone by other means, e.g. module unload).
    pub fn forget(mut self) {
        self.armed = false;
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(c) = Control::open() {
                // Said, so that a later test's surprise (a device it did not make) has its cause.
                if let Err(e) = c.destroy(self.id, abi::RXDSK_FLAG_FORCE) {
                    println!("# rxd{} left behind: cannot destroy it: {e}", self.id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioc_size_reads_the_size_field() {
        assert_eq!(ioc_size(u64::from(abi::RXDSK_IOC_CREATE)), 64);
        assert_eq!(ioc_size(u64::from(abi::RXDSK_IOC_STATS)), 184);
        assert_eq!(ioc_size(nix::request_code_none!(0xDB, 1)), 0);
    }
}
