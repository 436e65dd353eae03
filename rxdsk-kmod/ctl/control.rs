// SPDX-License-Identifier: GPL-2.0

//! `/dev/rxdsk-control`: the ioctl front end.
//!
//! Every command needs `CAP_SYS_ADMIN`; unknown commands get `ENOTTY`; input with a non-zero
//! reserved or padding field, or unknown flags, gets `EINVAL` before anything changes; output
//! structures are built whole, so no uninitialised byte reaches user space.

use crate::abi::{self, *};
use super::registry::Registry;
use crate::image::Mode;
use crate::device::{valid_size, DeviceConfig, MAX_SIZE};
use crate::sys::compress::Algorithm;
use crate::sys::ffi;
use core::ptr::NonNull;
use kernel::{
    fs::File,
    ioctl,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    str::CStr,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

// The ABI crate computes its numbers itself (it cannot use the kernel crate); check they equal
// the kernel's `_IOR`/`_IOW`/`_IOWR` for the same types.
const _: () = {
    let ty = RXDSK_IOC_MAGIC as u32;
    assert!(RXDSK_IOC_GET_VERSION == ioctl::_IOR::<RxdskVersion>(ty, nr::GET_VERSION));
    assert!(RXDSK_IOC_GET_FEATURES == ioctl::_IOR::<RxdskFeatures>(ty, nr::GET_FEATURES));
    assert!(RXDSK_IOC_CREATE == ioctl::_IOWR::<RxdskCreate>(ty, nr::CREATE));
    assert!(RXDSK_IOC_DESTROY == ioctl::_IOW::<RxdskDestroy>(ty, nr::DESTROY));
    assert!(RXDSK_IOC_RESIZE == ioctl::_IOW::<RxdskResize>(ty, nr::RESIZE));
    assert!(RXDSK_IOC_INFO == ioctl::_IOWR::<RxdskInfo>(ty, nr::INFO));
    assert!(RXDSK_IOC_LIST == ioctl::_IOWR::<RxdskList>(ty, nr::LIST));
    assert!(RXDSK_IOC_STATS == ioctl::_IOWR::<RxdskStats>(ty, nr::STATS));
    assert!(RXDSK_IOC_ATTACH == ioctl::_IOW::<RxdskAttach>(ty, nr::ATTACH));
    assert!(RXDSK_IOC_DETACH == ioctl::_IOW::<RxdskDetach>(ty, nr::DETACH));
    assert!(RXDSK_IOC_FLUSH == ioctl::_IOWR::<RxdskFlush>(ty, nr::FLUSH));
    assert!(RXDSK_IOC_RESTORE == ioctl::_IOWR::<RxdskRestore>(ty, nr::RESTORE));
    assert!(RXDSK_IOC_COMPR_STATS == ioctl::_IOWR::<RxdskComprStats>(ty, nr::COMPR_STATS));
};

macro_rules! abi_bytes {
    ($($t:ty),*) => {$(
        // SAFETY: `#[repr(C)]` structures of integers and integer arrays with no implicit
        // padding (the ABI asserts their sizes): every bit pattern is valid and every byte is
        // initialised.
        unsafe impl FromBytes for $t {}
        // SAFETY: As above.
        unsafe impl AsBytes for $t {}
    )*};
}
abi_bytes!(
    RxdskComprStats,
    RxdskVersion,
    RxdskFeatures,
    RxdskCreate,
    RxdskDestroy,
    RxdskResize,
    RxdskInfo,
    RxdskList,
    RxdskStats,
    RxdskAttach,
    RxdskDetach,
    RxdskFlush,
    RxdskRestore
);

/// The NUL-terminated path of a request; every byte after the NUL must be zero too.
fn request_path(path: &[u8; RXDSK_PATH_MAX]) -> Result<&CStr> {
    let nul = path.iter().position(|&b| b == 0).ok_or(EINVAL)?;
    if nul == 0 || path[nul..].iter().any(|&b| b != 0) {
        return Err(EINVAL);
    }
    CStr::from_bytes_with_nul(&path[..=nul]).map_err(|_| EINVAL)
}

/// Version string reported by `RXDSK_IOC_GET_VERSION`; kept in step with the workspace version.
pub(crate) const MODULE_VERSION: &str = "0.1.0";

/// The control node and the registry its ioctls act on, registered together.
///
/// # Invariants
///
/// `misc` is the only `MiscDeviceRegistration<Control>`: the node's `open` finds `registry`
/// from it. Declared first, it is deregistered before the registry (and its devices) goes.
#[pin_data]
pub(crate) struct ControlNode {
    #[pin]
    misc: MiscDeviceRegistration<Control>,
    #[pin]
    registry: Registry,
}

impl ControlNode {
    pub(crate) fn register() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            registry <- Registry::new(),
            misc <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"rxdsk-control" }),
        })
    }
}

/// An open file of the control node.
///
/// # Invariants
///
/// `registry` points to the module's registry, which outlives every open file of the control
/// node (an open file pins the module).
pub(crate) struct Control {
    registry: NonNull<Registry>,
}

// SAFETY: `Registry` is `Sync` (a mutex inside); the pointer is only used to get `&Registry`.
unsafe impl Send for Control {}
// SAFETY: As above.
unsafe impl Sync for Control {}

impl Control {
    fn registry(&self) -> &Registry {
        // SAFETY: Valid for the file's lifetime (type invariants).
        unsafe { self.registry.as_ref() }
    }
}

fn check_zero(fields: &[u64]) -> Result {
    if fields.iter().all(|&f| f == 0) {
        Ok(())
    } else {
        Err(EINVAL)
    }
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = KBox<Self>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let misc = core::ptr::from_ref(misc).cast_mut();
        // SAFETY: The only registration of `Control` is the `misc` field of a `ControlNode`
        // (invariant), so `misc` lies inside a live one.
        let node = unsafe { &*kernel::container_of!(misc, ControlNode, misc) };
        // INVARIANT: the node, and so its registry, outlives this open file (the module holds
        // the node; an open file pins the module).
        Ok(KBox::new(Control { registry: NonNull::from(&node.registry) }, GFP_KERNEL)?)
    }

    fn ioctl(me: &Control, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // Unknown numbers are ENOTTY whoever asks; known ones need the capability.
        let known = matches!(
            cmd,
            RXDSK_IOC_GET_VERSION
                | RXDSK_IOC_GET_FEATURES
                | RXDSK_IOC_CREATE
                | RXDSK_IOC_DESTROY
                | RXDSK_IOC_RESIZE
                | RXDSK_IOC_INFO
                | RXDSK_IOC_LIST
                | RXDSK_IOC_STATS
                | RXDSK_IOC_ATTACH
                | RXDSK_IOC_DETACH
                | RXDSK_IOC_FLUSH
                | RXDSK_IOC_RESTORE
                | RXDSK_IOC_COMPR_STATS
        );
        if !known {
            return Err(ENOTTY);
        }
        if !ffi::capable_sys_admin() {
            return Err(EPERM);
        }
        let user = UserSlice::new(UserPtr::from_addr(arg), ioctl::_IOC_SIZE(cmd));
        let registry = me.registry();
        match cmd {
            RXDSK_IOC_GET_VERSION => user.writer().write(&version())?,
            RXDSK_IOC_GET_FEATURES => user.writer().write(&RxdskFeatures {
                features: RXDSK_FEATURES_ALL,
                compressors: crate::sys::compress::ALL_ALGORITHMS,
                reserved: [0; 2],
            })?,
            RXDSK_IOC_CREATE => {
                let (mut reader, mut writer) = user.reader_writer();
                let mut req: RxdskCreate = reader.read()?;
                check_zero(&req.reserved)?;
                let block_ok = matches!(req.logical_block_size, 512 | 4096);
                let with_id = req.flags & RXDSK_CREATE_WITH_ID != 0;
                if (req.id != 0 && !with_id)
                    || req.id >= RXDSK_MAX_DEVICES
                    || req.flags & !RXDSK_CREATE_FLAGS != 0
                    || !block_ok
                    || !valid_size(req.size_bytes, req.logical_block_size)
                    || (req.mem_limit_bytes != 0 && req.mem_limit_bytes < RXDSK_PAGE_SIZE)
                {
                    return Err(EINVAL);
                }
                let compress = Algorithm::from_abi(req.compress, req.compress_level)?;
                req.id = registry.create(with_id.then_some(req.id), &DeviceConfig {
                    compress,
                    size_bytes: req.size_bytes,
                    logical_block_size: req.logical_block_size,
                    mem_limit_bytes: req.mem_limit_bytes,
                    read_only: req.flags & RXDSK_FLAG_READ_ONLY != 0,
                })?;
                if let Err(e) = writer.write(&req) {
                    // The caller cannot learn the id: undo rather than leak a device.
                    let _ = registry.destroy(req.id, true);
                    return Err(e);
                }
            }
            RXDSK_IOC_DESTROY => {
                let req: RxdskDestroy = user.reader().read()?;
                check_zero(&req.reserved)?;
                if req.pad != 0 || req.flags & !RXDSK_FLAG_FORCE != 0 {
                    return Err(EINVAL);
                }
                registry.destroy(req.id, req.flags & RXDSK_FLAG_FORCE != 0)?;
            }
            RXDSK_IOC_RESIZE => {
                let req: RxdskResize = user.reader().read()?;
                check_zero(&req.reserved)?;
                if req.pad != 0 || req.flags & !RXDSK_FLAG_FORCE != 0 || req.size_bytes > MAX_SIZE {
                    return Err(EINVAL);
                }
                registry.resize(req.id, req.size_bytes, req.flags & RXDSK_FLAG_FORCE != 0)?;
            }
            RXDSK_IOC_INFO => {
                let (mut reader, mut writer) = user.reader_writer();
                let req: RxdskInfo = reader.read()?;
                // Everything but the id is output: the whole input must be zero besides it.
                if req != (RxdskInfo { id: req.id, ..Default::default() }) {
                    return Err(EINVAL);
                }
                let id = req.id;
                writer.write(&registry.info(id)?)?;
            }
            RXDSK_IOC_STATS => {
                let (mut reader, mut writer) = user.reader_writer();
                let req: RxdskStats = reader.read()?;
                let id = req.id;
                // Everything but the id is output: the whole input must be zero besides it.
                if req != (RxdskStats { id, ..Default::default() }) {
                    return Err(EINVAL);
                }
                writer.write(&registry.stats(id)?)?;
            }
            RXDSK_IOC_COMPR_STATS => {
                let (mut reader, mut writer) = user.reader_writer();
                let req: RxdskComprStats = reader.read()?;
                let id = req.id;
                // Everything but the id is output: the whole input must be zero besides it.
                if req != (RxdskComprStats { id, ..Default::default() }) {
                    return Err(EINVAL);
                }
                writer.write(&registry.compr_stats(id)?)?;
            }
            RXDSK_IOC_LIST => {
                let (mut reader, mut writer) = user.reader_writer();
                let mut req: RxdskList = reader.read()?;
                check_zero(&req.reserved)?;
                if req.count != 0 {
                    return Err(EINVAL);
                }
                let ids = registry.ids()?;
                let n = ids.len().min(req.capacity as usize);
                if n > 0 {
                    let mut out = UserSlice::new(UserPtr::from_addr(req.ids_ptr as usize), n * 4).writer();
                    for id in &ids[..n] {
                        out.write(id)?;
                    }
                }
                req.count = ids.len() as u32;
                writer.write(&req)?;
            }
            RXDSK_IOC_ATTACH => {
                let req: RxdskAttach = user.reader().read()?;
                check_zero(&req.reserved)?;
                if req.pad != 0
                    || req.pad2 != 0
                    || req.flags & !RXDSK_ATTACH_FLAGS != 0
                    || req.journal_bytes.checked_rem(RXDSK_PAGE_SIZE) != Some(0)
                    || req.journal_bytes > MAX_SIZE
                {
                    return Err(EINVAL);
                }
                let mode = match (req.flags & RXDSK_ATTACH_WRITETHROUGH != 0, req.flags & RXDSK_ATTACH_WRITEAROUND != 0) {
                    (false, false) => Mode::Writeback,
                    (true, false) => Mode::Writethrough,
                    (false, true) => Mode::Writearound,
                    (true, true) => return Err(EINVAL),
                };
                registry.attach(req.id, request_path(&req.path)?, req.journal_bytes, mode, req.flush_interval_secs)?;
            }
            RXDSK_IOC_DETACH => {
                let req: RxdskDetach = user.reader().read()?;
                check_zero(&req.reserved)?;
                if req.pad != 0 || req.flags & !RXDSK_FLAG_DISCARD_DIRTY != 0 {
                    return Err(EINVAL);
                }
                registry.detach(req.id, req.flags & RXDSK_FLAG_DISCARD_DIRTY != 0)?;
            }
            RXDSK_IOC_FLUSH => {
                let (mut reader, mut writer) = user.reader_writer();
                let req: RxdskFlush = reader.read()?;
                if req != (RxdskFlush { id: req.id, ..Default::default() }) {
                    return Err(EINVAL);
                }
                writer.write(&registry.flush(req.id)?)?;
            }
            RXDSK_IOC_RESTORE => {
                let (mut reader, mut writer) = user.reader_writer();
                let mut req: RxdskRestore = reader.read()?;
                check_zero(&req.reserved)?;
                let with_id = req.flags & RXDSK_CREATE_WITH_ID != 0;
                if req.pad != 0
                    || req.generation != 0
                    || req.flags & !RXDSK_RESTORE_FLAGS != 0
                    || (req.id != 0 && !with_id)
                    || req.id >= RXDSK_MAX_DEVICES
                    || (req.mem_limit_bytes != 0 && req.mem_limit_bytes < RXDSK_PAGE_SIZE)
                {
                    return Err(EINVAL);
                }
                let path = request_path(&req.path)?;
                let compress = Algorithm::from_abi(req.compress, req.compress_level)?;
                let (id, generation) = registry.restore(
                    with_id.then_some(req.id),
                    path,
                    req.flags & RXDSK_FLAG_FORCE != 0,
                    req.flags & RXDSK_RESTORE_PRELOAD != 0,
                    compress,
                    req.mem_limit_bytes,
                )?;
                req.id = id;
                req.generation = generation;
                if let Err(e) = writer.write(&req) {
                    // The caller cannot learn the id: undo rather than leak a device.
                    let _ = registry.destroy(id, true);
                    return Err(e);
                }
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

fn version() -> RxdskVersion {
    RxdskVersion {
        abi_major: RXDSK_ABI_MAJOR,
        abi_minor: RXDSK_ABI_MINOR,
        module_version: abi::fixed_str(MODULE_VERSION),
        reserved: [0; 4],
    }
}
