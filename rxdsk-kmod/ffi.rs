// SPDX-License-Identifier: GPL-2.0

//! C constants that bindgen cannot see (function-like macros and `__force` casts), defined once
//! here and tied to what the bindings do expose wherever a check is possible.

use kernel::bindings;

/// `GFP_NOIO`: may reclaim, but never start I/O (we may be the swap device).
pub(crate) const GFP_NOIO: bindings::gfp_t =
    (1 << bindings::___GFP_DIRECT_RECLAIM_BIT) | (1 << bindings::___GFP_KSWAPD_RECLAIM_BIT);
/// `GFP_NOWAIT`, for `REQ_NOWAIT` bios.
pub(crate) const GFP_NOWAIT: bindings::gfp_t = bindings::GFP_NOWAIT;
/// Allocation failures are reported to the submitter as I/O errors; no need to warn.
pub(crate) const GFP_NOWARN: bindings::gfp_t = bindings::__GFP_NOWARN;

// GFP_KERNEL is GFP_NOIO plus __GFP_IO and __GFP_FS.
const _: () = assert!(
    GFP_NOIO | (1 << bindings::___GFP_IO_BIT) | (1 << bindings::___GFP_FS_BIT) == bindings::GFP_KERNEL
);

pub(crate) const BLK_STS_OK: bindings::blk_status_t = 0;
pub(crate) const BLK_STS_NOTSUPP: bindings::blk_status_t = 1;
pub(crate) const BLK_STS_NOSPC: bindings::blk_status_t = 3;
pub(crate) const BLK_STS_IOERR: bindings::blk_status_t = 10;
pub(crate) const BLK_STS_AGAIN: bindings::blk_status_t = 12;

/// The `blk_status_t` values above are `#define`s with casts; check them against the errno
/// the block layer maps them to. Called once at module load.
pub(crate) fn check_blk_status() -> bool {
    use kernel::error::code::*;
    let pairs = [
        (BLK_STS_OK, 0),
        (BLK_STS_NOTSUPP, EOPNOTSUPP.to_errno()),
        (BLK_STS_NOSPC, ENOSPC.to_errno()),
        (BLK_STS_IOERR, EIO.to_errno()),
        (BLK_STS_AGAIN, EAGAIN.to_errno()),
    ];
    pairs.iter().all(|&(status, errno)| {
        // SAFETY: `blk_status_to_errno` is a pure table lookup, valid for any status value.
        unsafe { bindings::blk_status_to_errno(status) == errno }
    })
}

pub(crate) const BLK_FEAT_SYNCHRONOUS: bindings::blk_features_t = 1 << 6;
pub(crate) const BLK_FEAT_NOWAIT: bindings::blk_features_t = 1 << 7;
// Anchor: the one feature bindgen does export sits where include/linux/blkdev.h puts it.
const _: () = assert!(bindings::BLK_FEAT_ROTATIONAL == 1 << 2);

/// `REQ_OP_MASK`: the low `REQ_OP_BITS` (8) bits of `bi_opf` hold the operation.
pub(crate) const REQ_OP_MASK: bindings::blk_opf_t = (1 << 8) - 1;
const _: () = assert!(bindings::req_flag_bits___REQ_FAILFAST_DEV == 8);
pub(crate) const REQ_NOWAIT: bindings::blk_opf_t = 1 << bindings::req_flag_bits___REQ_NOWAIT;
pub(crate) const REQ_PREFLUSH: bindings::blk_opf_t = 1 << bindings::req_flag_bits___REQ_PREFLUSH;
pub(crate) const REQ_FUA: bindings::blk_opf_t = 1 << bindings::req_flag_bits___REQ_FUA;

/// `XA_PRESENT`: the search mark matching every present entry.
pub(crate) const XA_PRESENT: bindings::xa_mark_t = 8;

pub(crate) const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;
pub(crate) const SECTOR_SHIFT: u32 = 9;

/// Whether the current task has `CAP_SYS_ADMIN` in the initial user namespace.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only inspects the current task's credentials; any capability number in
    // range is valid and CAP_SYS_ADMIN is one.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

/// The CPU we are running on, for spreading counters (a hint: we may migrate right after).
pub(crate) fn cpu_hint() -> usize {
    // SAFETY: reading the current CPU id has no preconditions.
    unsafe { bindings::raw_smp_processor_id() as usize }
}

/// Number of possible CPU ids.
pub(crate) fn nr_cpu_ids() -> usize {
    // SAFETY: `nr_cpu_ids` is set during early boot and never changes afterwards.
    unsafe { bindings::nr_cpu_ids as usize }
}
