// SPDX-License-Identifier: GPL-2.0

//! A per-CPU reader/writer semaphore (`struct percpu_rw_semaphore`): a reader pays a per-CPU
//! increment and never touches a shared cache line while no writer is about; a writer waits
//! until every reader inside has left and holds new ones off until it is done. Readers may
//! sleep inside; so may the writer. Readers enter only in task context (see helpers.c: the
//! read side changes its per-CPU count without masking interrupts).

use core::marker::PhantomData;
use kernel::{bindings, prelude::*, types::Opaque};

mod c {
    use core::ffi::c_void;

    // Defined in helpers.c (`percpu_init_rwsem` is a macro with a lock class per call site;
    // the read side is inline). `struct percpu_rw_semaphore *` passes as `void *`: its
    // bindgen layout trips the FFI lint.
    unsafe extern "C" {
        pub(super) fn rxdsk_percpu_init_rwsem(sem: *mut c_void) -> core::ffi::c_int;
        pub(super) fn rxdsk_percpu_down_read(sem: *mut c_void);
        pub(super) fn rxdsk_percpu_down_read_trylock(sem: *mut c_void) -> bool;
        pub(super) fn rxdsk_percpu_up_read(sem: *mut c_void);
    }
}

/// # Invariants
///
/// `inner` is initialised (by `percpu_init_rwsem`) and freed only by the drop.
#[pin_data(PinnedDrop)]
pub(crate) struct PercpuRwSem {
    #[pin]
    inner: Opaque<bindings::percpu_rw_semaphore>,
}

// SAFETY: The semaphore is made to be shared between tasks; its operations synchronise
// themselves.
unsafe impl Send for PercpuRwSem {}
// SAFETY: As above.
unsafe impl Sync for PercpuRwSem {}

impl PercpuRwSem {
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // INVARIANT: initialised on success.
            inner <- Opaque::try_ffi_init(|sem: *mut bindings::percpu_rw_semaphore| {
                // SAFETY: `percpu_init_rwsem` initialises the semaphore in place (allocating
                // its per-CPU counters); on failure nothing is left to free.
                kernel::error::to_result(unsafe { c::rxdsk_percpu_init_rwsem(sem.cast()) })
            }),
        })
    }

    fn sem(&self) -> *mut bindings::percpu_rw_semaphore {
        self.inner.get()
    }

    /// Enters as a reader, waiting while a writer holds the semaphore. May sleep.
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        // SAFETY: Initialised (invariant); released by the guard, in this task.
        unsafe { c::rxdsk_percpu_down_read(self.sem().cast()) };
        ReadGuard { sem: self, _task: PhantomData }
    }

    /// Enters as a reader if no writer holds or waits for the semaphore; never sleeps.
    pub(crate) fn try_read(&self) -> Option<ReadGuard<'_>> {
        // SAFETY: Initialised (invariant); on success released by the guard, in this task.
        let entered = unsafe { c::rxdsk_percpu_down_read_trylock(self.sem().cast()) };
        // A guard only when entered (`then_some` would build one, and drop it, either way).
        entered.then(|| ReadGuard { sem: self, _task: PhantomData })
    }

    /// Enters as the writer: waits until no reader is inside. May sleep.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        // SAFETY: Initialised (invariant); released by the guard.
        unsafe { bindings::percpu_down_write(self.sem()) };
        WriteGuard { sem: self, _task: PhantomData }
    }
}

#[pinned_drop]
impl PinnedDrop for PercpuRwSem {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Initialised (invariant); nobody holds it (the guards borrow `self`).
        unsafe { bindings::percpu_free_rwsem(self.sem()) };
    }
}

/// A reader's hold; released on drop, in the task that took it (not `Send`).
pub(crate) struct ReadGuard<'a> {
    sem: &'a PercpuRwSem,
    _task: PhantomData<*mut ()>,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Taken by `read`/`try_read` in this task, released once.
        unsafe { c::rxdsk_percpu_up_read(self.sem.sem().cast()) };
    }
}

/// The writer's hold; released on drop, in the task that took it (not `Send`).
pub(crate) struct WriteGuard<'a> {
    sem: &'a PercpuRwSem,
    _task: PhantomData<*mut ()>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Taken by `write`, released once.
        unsafe { bindings::percpu_up_write(self.sem.sem()) };
    }
}
