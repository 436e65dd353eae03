// SPDX-License-Identifier: GPL-2.0

//! Bios handled in process context, on the module's `rxdsk_io` workqueue: those that must
//! read from the backing device first (the read misses of a lazy restore). Our `submit_bio`
//! runs with `current->bio_list` set, so a bio it submits to another device starts only after
//! it returns: waiting for one there would deadlock (zram's writeback reads met the same
//! problem). A worker may wait.
//!
//! One work item per device and a lock-free list of bios linked through `bi_next` (as
//! `llist` does): queueing allocates nothing, so it cannot fail.

use crate::sys::disk::Bio;
use crate::sys::ffi;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::{bindings, prelude::*, types::Opaque};

mod c {
    use kernel::bindings;

    // Defined in helpers.c.
    unsafe extern "C" {
        pub(super) fn rxdsk_io_wq_create() -> core::ffi::c_int;
        pub(super) fn rxdsk_io_wq_destroy();
        pub(super) fn rxdsk_io_queue(work: *mut bindings::work_struct);
        pub(super) fn rxdsk_init_work(
            work: *mut bindings::work_struct,
            func: Option<unsafe extern "C" fn(*mut bindings::work_struct)>,
        );
    }
}

/// Handles the bios deferred to process context.
pub(crate) trait DeferredHandler: Sync + Sized {
    /// Handles (and ends) `bio`; may sleep and wait for I/O. Allocations inside are GFP_NOIO.
    fn handle_deferred(&self, bio: Bio);
}

/// The module's workqueues (`rxdsk_io`, and `rxdsk_fanout` for [`fan_out`](super::fanout)),
/// from module init to module exit.
///
/// # Invariants
///
/// While an `IoQueue` exists, `rxdsk_io_wq` and `rxdsk_fanout_wq` in helpers.c are valid
/// workqueues.
pub(crate) struct IoQueue(());

impl IoQueue {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Called once, at module init, before any device exists.
        kernel::error::to_result(unsafe { c::rxdsk_io_wq_create() })?;
        // INVARIANT: created above.
        Ok(Self(()))
    }
}

impl Drop for IoQueue {
    fn drop(&mut self) {
        // SAFETY: At module exit, after every device (and so every work item, deferred bio and
        // fan-out helper) is gone; the workqueues were created by `new`.
        unsafe { c::rxdsk_io_wq_destroy() };
    }
}

/// The deferred bios of one device.
///
/// # Invariants
///
/// - `work` is initialised with `run::<T>`.
/// - `owner` is null until [`Deferred::set_owner`], then points to the pinned `T` that holds
///   this `Deferred` and drains it before it is freed.
/// - `head` is a chain (through `bi_next`) of bios owned by this list, newest first.
#[pin_data]
pub(crate) struct Deferred<T: DeferredHandler> {
    #[pin]
    work: Opaque<bindings::work_struct>,
    head: AtomicPtr<bindings::bio>,
    owner: AtomicPtr<T>,
}

// SAFETY: The list is lock-free and its bios are owned by it, not by a thread; `owner` is only
// used as `&T`, and `T: Sync`.
unsafe impl<T: DeferredHandler> Send for Deferred<T> {}
// SAFETY: As above: all shared access goes through atomics and the workqueue.
unsafe impl<T: DeferredHandler> Sync for Deferred<T> {}

impl<T: DeferredHandler> Deferred<T> {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `INIT_WORK` initialises the work item in place.
            // INVARIANT: with `run::<T>`.
            work <- Opaque::ffi_init(|w: *mut bindings::work_struct| unsafe { c::rxdsk_init_work(w, Some(run::<T>)) }),
            head: AtomicPtr::new(ptr::null_mut()),
            owner: AtomicPtr::new(ptr::null_mut()),
        })
    }

    /// Records who handles the bios.
    ///
    /// # Safety
    ///
    /// `owner` is pinned, holds `self`, and calls [`Deferred::drain`] once no bio can be
    /// pushed any more and before it is freed.
    pub(crate) unsafe fn set_owner(&self, owner: &T) {
        // INVARIANT: the caller's promise.
        self.owner.store(ptr::from_ref(owner).cast_mut(), Ordering::Release);
    }

    /// Hands `bio` to the worker.
    pub(crate) fn push(&self, bio: Bio) {
        let raw = bio.into_raw().as_ptr();
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: The bio is ours (taken from `Bio` above) and not yet visible to anyone.
            unsafe { (*raw).bi_next = old };
            match self.head.compare_exchange_weak(old, raw, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        // SAFETY: `work` is initialised (invariant) and the workqueue exists while any device
        // does (`IoQueue`); queueing an already queued work is a no-op, and a running one
        // takes the whole list again after this push.
        unsafe { c::rxdsk_io_queue(self.work.get()) };
    }

    /// Waits until every bio pushed so far has been handled.
    pub(crate) fn drain(&self) {
        // SAFETY: `work` is initialised (invariant).
        unsafe { bindings::flush_work(self.work.get()) };
    }
}

/// The work function: handles every listed bio, oldest first, until the list stays empty.
///
/// # Safety
///
/// `work` is the `work` field of a `Deferred<T>` (invariant of `Deferred`).
unsafe extern "C" fn run<T: DeferredHandler>(work: *mut bindings::work_struct) {
    // SAFETY: `Opaque` is `repr(transparent)`, so the field's address is the work item's.
    let this = unsafe { &*kernel::container_of!(work.cast::<Opaque<bindings::work_struct>>(), Deferred<T>, work) };
    let noio = ffi::NoIo::enter();
    loop {
        let mut chain = this.head.swap(ptr::null_mut(), Ordering::Acquire);
        if chain.is_null() {
            break;
        }
        // Newest first: reverse into submission order.
        let mut fifo: *mut bindings::bio = ptr::null_mut();
        while !chain.is_null() {
            // SAFETY: Every bio of the chain is owned by the list (invariant), now by us.
            unsafe {
                let next = (*chain).bi_next;
                (*chain).bi_next = fifo;
                fifo = chain;
                chain = next;
            }
        }
        while let Some(bio) = NonNull::new(fifo) {
            // SAFETY: As above; the link is cleared before the bio goes on.
            unsafe {
                fifo = (*bio.as_ptr()).bi_next;
                (*bio.as_ptr()).bi_next = ptr::null_mut();
            }
            // SAFETY: A bio handed to our `submit_bio`, owned by us until ended.
            let bio = unsafe { Bio::from_raw(bio.as_ptr()) };
            let owner = this.owner.load(Ordering::Acquire);
            if owner.is_null() {
                // Never happens: bios arrive only once the disk is added, after the owner is
                // set.
                bio.end(crate::sys::disk::Status::IoError);
            } else {
                // SAFETY: The owner outlives every queued work (invariant: it drains first).
                unsafe { (*owner).handle_deferred(bio) };
            }
            ffi::cond_resched();
        }
    }
    drop(noio);
}
