// SPDX-License-Identifier: GPL-2.0

//! Kernel values and calls that bindgen cannot see (function-like macros and `__force` casts).
//! Their values come from `helpers.c`, compiled against this kernel's headers, so nothing here
//! is a hand-copied number.

use kernel::bindings;

mod c {
    use kernel::bindings;

    // Defined in helpers.c; every one is a `const` object initialised from the kernel's macro.
    unsafe extern "C" {
        pub(super) static rxdsk_blk_feat_synchronous: bindings::blk_features_t;
        pub(super) static rxdsk_blk_feat_nowait: bindings::blk_features_t;
        pub(super) static rxdsk_blk_sts_ok: bindings::blk_status_t;
        pub(super) static rxdsk_blk_sts_notsupp: bindings::blk_status_t;
        pub(super) static rxdsk_blk_sts_nospc: bindings::blk_status_t;
        pub(super) static rxdsk_blk_sts_ioerr: bindings::blk_status_t;
        pub(super) static rxdsk_blk_sts_again: bindings::blk_status_t;
        pub(super) static rxdsk_xa_present: bindings::xa_mark_t;
        pub(super) static rxdsk_gfp_noio: bindings::gfp_t;
        pub(super) static rxdsk_req_op_mask: bindings::blk_opf_t;
        pub(super) static rxdsk_xa_mark_0: bindings::xa_mark_t;
        pub(super) static rxdsk_xa_mark_1: bindings::xa_mark_t;
        pub(super) static rxdsk_blk_open_read: bindings::blk_mode_t;
        pub(super) static rxdsk_blk_open_write: bindings::blk_mode_t;
        pub(super) static rxdsk_blk_open_excl: bindings::blk_mode_t;
        pub(super) fn rxdsk_cond_resched();
        // `struct block_device *`, opaque to the type checker (bindgen's layout contains a
        // zero-sized array the FFI lint rejects).
        pub(super) fn rxdsk_bdev_nr_bytes(bdev: *mut core::ffi::c_void) -> u64;
        pub(super) fn rxdsk_bdev_major(bdev: *mut core::ffi::c_void) -> u32;
        pub(super) fn rxdsk_bdev_minor(bdev: *mut core::ffi::c_void) -> u32;
        pub(super) fn rxdsk_ktime_get_real_ns() -> u64;
        pub(super) fn rxdsk_noio_save() -> core::ffi::c_uint;
        pub(super) fn rxdsk_noio_restore(flags: core::ffi::c_uint);
        pub(super) fn rxdsk_faults_init();
        pub(super) fn rxdsk_faults_exit();
        pub(super) fn rxdsk_should_garble_object() -> bool;
        pub(super) fn rxdsk_wait_below(counter: *mut u64, bound: u64);
        pub(super) fn rxdsk_wake_counter(counter: *mut u64);
        pub(super) fn rxdsk_module_get();
        pub(super) fn rxdsk_set_abi(major: u32, minor: u32, features: u64);
        pub(super) fn rxdsk_module_put();
    }
}

/// Reads one of the `const` objects of helpers.c.
macro_rules! kernel_value {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $sym:ident) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name() -> $ty {
            // SAFETY: The symbol is a `const` object defined in helpers.c with the type declared
            // in `c`, initialised at build time and never written.
            unsafe { c::$sym }
        }
    };
}

kernel_value!(blk_feat_synchronous: bindings::blk_features_t = rxdsk_blk_feat_synchronous);
kernel_value!(blk_feat_nowait: bindings::blk_features_t = rxdsk_blk_feat_nowait);
kernel_value!(blk_sts_ok: bindings::blk_status_t = rxdsk_blk_sts_ok);
kernel_value!(blk_sts_notsupp: bindings::blk_status_t = rxdsk_blk_sts_notsupp);
kernel_value!(blk_sts_nospc: bindings::blk_status_t = rxdsk_blk_sts_nospc);
kernel_value!(blk_sts_ioerr: bindings::blk_status_t = rxdsk_blk_sts_ioerr);
kernel_value!(blk_sts_again: bindings::blk_status_t = rxdsk_blk_sts_again);
kernel_value!(
    /// `XA_PRESENT`: the search mark matching every present entry.
    xa_present: bindings::xa_mark_t = rxdsk_xa_present
);
kernel_value!(
    /// `GFP_NOIO`: may reclaim, but never start I/O (we may be the swap device).
    gfp_noio: bindings::gfp_t = rxdsk_gfp_noio
);
kernel_value!(
    /// `REQ_OP_MASK`: the bits of `bi_opf` that hold the operation.
    req_op_mask: bindings::blk_opf_t = rxdsk_req_op_mask
);

kernel_value!(
    /// `XA_MARK_0`.
    xa_mark_0: bindings::xa_mark_t = rxdsk_xa_mark_0
);
kernel_value!(
    /// `XA_MARK_1`.
    xa_mark_1: bindings::xa_mark_t = rxdsk_xa_mark_1
);

kernel_value!(blk_open_read: bindings::blk_mode_t = rxdsk_blk_open_read);
kernel_value!(blk_open_write: bindings::blk_mode_t = rxdsk_blk_open_write);
kernel_value!(blk_open_excl: bindings::blk_mode_t = rxdsk_blk_open_excl);

/// `bdev_nr_bytes()`.
///
/// # Safety
///
/// `bdev` is a valid block device.
pub(crate) unsafe fn bdev_nr_bytes(bdev: *mut bindings::block_device) -> u64 {
    // SAFETY: The caller passes a valid block device; the helper only reads its size.
    unsafe { c::rxdsk_bdev_nr_bytes(bdev.cast()) }
}

/// `MAJOR()` and `MINOR()` of the block device's number.
///
/// # Safety
///
/// `bdev` is a valid block device.
pub(crate) unsafe fn bdev_devt(bdev: *mut bindings::block_device) -> (u32, u32) {
    // SAFETY: The caller passes a valid block device; the helpers only read its number.
    unsafe { (c::rxdsk_bdev_major(bdev.cast()), c::rxdsk_bdev_minor(bdev.cast())) }
}

/// Wall-clock time, nanoseconds since the Unix epoch.
pub(crate) fn now_real_ns() -> u64 {
    // SAFETY: Reading the clock has no preconditions.
    unsafe { c::rxdsk_ktime_get_real_ns() }
}

/// Monotonic time, nanoseconds since boot.
pub(crate) fn now_mono_ns() -> u64 {
    // SAFETY: Reading the clock has no preconditions.
    let ns = unsafe { bindings::ktime_get() };
    u64::try_from(ns).unwrap_or(0)
}

/// Gives the CPU away if the scheduler wants it: long loops call it between batches, so a
/// non-preemptible kernel sees no soft lockup or RCU stall.
pub(crate) fn cond_resched() {
    // SAFETY: Called only from process context with no spinlock or RCU read lock held (every
    // caller is a control path or a bio handler between pages).
    unsafe { c::rxdsk_cond_resched() }
}

/// Allocation flags of the C allocators (`gfp_t`).
pub(crate) type Gfp = bindings::gfp_t;
/// `GFP_KERNEL`, for the C allocators (control paths only).
pub(crate) const GFP_KERNEL: Gfp = bindings::GFP_KERNEL;
/// Whether an allocation with `gfp` may wait for reclaim (`__GFP_DIRECT_RECLAIM`).
pub(crate) fn may_reclaim(gfp: Gfp) -> bool {
    gfp & (1 << bindings::___GFP_DIRECT_RECLAIM_BIT) != 0
}

/// `GFP_NOWAIT`, for `REQ_NOWAIT` bios.
pub(crate) const GFP_NOWAIT: bindings::gfp_t = bindings::GFP_NOWAIT;
/// Allocation failures are reported to the submitter as I/O errors; no need to warn.
pub(crate) const GFP_NOWARN: bindings::gfp_t = bindings::__GFP_NOWARN;
/// Store pages are only touched through `kmap_local_page`, so they may come from highmem
/// where there is any (`__GFP_HIGHMEM` also exempts an allocation from fault injection's
/// `ignore-gfp-highmem`, which the tests need for user pages; without highmem it means nothing).
#[cfg(CONFIG_HIGHMEM)]
pub(crate) const GFP_HIGHMEM: bindings::gfp_t = bindings::__GFP_HIGHMEM;
#[cfg(not(CONFIG_HIGHMEM))]
pub(crate) const GFP_HIGHMEM: bindings::gfp_t = 0;

pub(crate) const REQ_NOWAIT: bindings::blk_opf_t = 1 << bindings::req_flag_bits___REQ_NOWAIT;
pub(crate) const REQ_PREFLUSH: bindings::blk_opf_t = 1 << bindings::req_flag_bits___REQ_PREFLUSH;
pub(crate) const REQ_FUA: bindings::blk_opf_t = 1 << bindings::req_flag_bits___REQ_FUA;

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

/// A `memalloc_noio` scope: every allocation of this task until the guard drops behaves as
/// `GFP_NOIO` (no I/O for reclaim, which could come back to us as swap). Not `Send`: the scope
/// belongs to the task.
pub(crate) struct NoIo {
    saved: core::ffi::c_uint,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl NoIo {
    pub(crate) fn enter() -> Self {
        // SAFETY: Paired with the restore in `drop`, in the same task (the guard is not `Send`).
        Self { saved: unsafe { c::rxdsk_noio_save() }, _not_send: core::marker::PhantomData }
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: `saved` came from `rxdsk_noio_save` in this task; scopes nest (guards drop in
        // reverse order).
        unsafe { c::rxdsk_noio_restore(self.saved) };
    }
}

/// The module's fault-injection point (`/sys/kernel/debug/fail_rxdsk_decompress`), present
/// from module init to exit.
pub(crate) struct FaultInjection;

impl FaultInjection {
    pub(crate) fn register() -> Self {
        // SAFETY: Called once, from module init; undone by `drop` at exit.
        unsafe { c::rxdsk_faults_init() };
        FaultInjection
    }
}

impl Drop for FaultInjection {
    fn drop(&mut self) {
        // SAFETY: Registered in `register`; nothing uses the attribute after module exit.
        unsafe { c::rxdsk_faults_exit() };
    }
}

/// Whether the decompression fault fires now (never without fault injection in debugfs).
pub(crate) fn should_garble_object() -> bool {
    // SAFETY: `should_fail` on our attribute, valid for the module's lifetime (its storage is
    // static; without registration it simply never fires).
    unsafe { c::rxdsk_should_garble_object() }
}

/// Sleeps until `counter` is below `bound`; whoever lowers it calls [`wake_counter`].
pub(crate) fn wait_below(counter: &core::sync::atomic::AtomicU64, bound: u64) {
    // SAFETY: `wait_var_event` only reads the counter (as a `u64`, which `AtomicU64` has the
    // layout of) and uses its address as the wait key; the reference keeps it alive.
    unsafe { c::rxdsk_wait_below(counter.as_ptr(), bound) }
}

/// Wakes the tasks waiting in [`wait_below`] on `counter`, after the caller changed it.
pub(crate) fn wake_counter(counter: &core::sync::atomic::AtomicU64) {
    // SAFETY: `wake_up_var` only uses the address as the wait key.
    unsafe { c::rxdsk_wake_counter(counter.as_ptr()) }
}

/// A reference to this module, held while a backing device is attached: `rmmod` is refused
/// (the module is in use) until every backing device is detached, so no unflushed change is
/// lost to an unload.
pub(crate) struct ModuleRef(());

impl ModuleRef {
    /// Takes a reference; called from the module's own code, so the module is live.
    pub(crate) fn get() -> Self {
        // SAFETY: `__module_get` on our own module, which is live while its code runs.
        unsafe { c::rxdsk_module_get() };
        ModuleRef(())
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: Pairs with the `__module_get` of `get`.
        unsafe { c::rxdsk_module_put() };
    }
}

/// Publishes the ABI version and feature bits in /sys/module/rxdsk/parameters/abi, readable
/// by anyone (the ioctls need CAP_SYS_ADMIN).
pub(crate) fn publish_abi(major: u32, minor: u32, features: u64) {
    // SAFETY: Formats into a static buffer of helpers.c, read by sysfs only after module init
    // (this runs in init, before the module's parameters become visible).
    unsafe { c::rxdsk_set_abi(major, minor, features) }
}
