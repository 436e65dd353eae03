// SPDX-License-Identifier: GPL-2.0

//! `/dev/rxdsk-control`: the ioctl front end.
//!
//! Every command needs `CAP_SYS_ADMIN`; unknown commands get `ENOTTY`; input structures with
//! non-zero reserved fields get `EINVAL`; output structures are built whole, so no uninitialised
//! byte reaches user space.

use crate::abi::{self, RxdskFeatures, RxdskVersion};
use crate::sys;
use kernel::{
    fs::File,
    ioctl,
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

// The ABI crate computes its numbers itself (it cannot use the kernel crate); check they equal
// the kernel's `_IOR`/`_IOW`/`_IOWR` for the same types.
const _: () = {
    let ty = abi::RXDSK_IOC_MAGIC as u32;
    assert!(abi::RXDSK_IOC_GET_VERSION == ioctl::_IOR::<RxdskVersion>(ty, abi::nr::GET_VERSION));
    assert!(abi::RXDSK_IOC_GET_FEATURES == ioctl::_IOR::<RxdskFeatures>(ty, abi::nr::GET_FEATURES));
};

// SAFETY: `#[repr(C)]` structures of integers and integer arrays with no implicit padding (the
// ABI asserts their sizes): every bit pattern is valid and every byte is initialised.
unsafe impl FromBytes for RxdskVersion {}
// SAFETY: As above.
unsafe impl AsBytes for RxdskVersion {}
// SAFETY: As above.
unsafe impl FromBytes for RxdskFeatures {}
// SAFETY: As above.
unsafe impl AsBytes for RxdskFeatures {}

/// An open file of the control node; carries no state of its own.
pub(crate) struct Control;

#[vtable]
impl MiscDevice for Control {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(Control, GFP_KERNEL)?)
    }

    fn ioctl(_me: &Control, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // Unknown numbers are ENOTTY whoever asks; known ones need the capability.
        let known = matches!(cmd, abi::RXDSK_IOC_GET_VERSION | abi::RXDSK_IOC_GET_FEATURES);
        if !known {
            return Err(ENOTTY);
        }
        if !sys::capable_sys_admin() {
            return Err(EPERM);
        }
        let user = UserSlice::new(UserPtr::from_addr(arg), ioctl::_IOC_SIZE(cmd));
        match cmd {
            abi::RXDSK_IOC_GET_VERSION => user.writer().write(&version())?,
            abi::RXDSK_IOC_GET_FEATURES => user.writer().write(&RxdskFeatures {
                features: abi::RXDSK_FEATURES_ALL,
                reserved: [0; 3],
            })?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

fn version() -> RxdskVersion {
    RxdskVersion {
        abi_major: abi::RXDSK_ABI_MAJOR,
        abi_minor: abi::RXDSK_ABI_MINOR,
        module_version: abi::fixed_str(crate::MODULE_VERSION),
        reserved: [0; 4],
    }
}
