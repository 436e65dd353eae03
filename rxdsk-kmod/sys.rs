// SPDX-License-Identifier: GPL-2.0

//! The thin layer over raw `bindings::` that the rest of the driver uses; nothing above this
//! module touches `bindings` or `unsafe`.

use kernel::bindings;

/// Whether the current task has `CAP_SYS_ADMIN` in the initial user namespace.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only inspects the current task's credentials; any capability number in
    // range is valid and CAP_SYS_ADMIN is one.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}
