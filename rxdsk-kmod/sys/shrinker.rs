// SPDX-License-Identifier: GPL-2.0

//! A shrinker (mm/shrinker.c): under memory pressure the kernel asks its owner to give
//! memory back. Registered once the owner has its final address; freed before the owner goes
//! (`shrinker_free` waits for a scan that is running).

use kernel::ffi::{c_uint, c_ulong};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::{bindings, prelude::*};

/// `__GFP_IO`: the allocation being served may start I/O (it is not in a NOIO scope).
const GFP_IO: bindings::gfp_t = 1 << bindings::___GFP_IO_BIT;
/// `SHRINK_STOP`: nothing more can be done this round.
const SHRINK_STOP: c_ulong = c_ulong::MAX;
/// `SHRINK_EMPTY`: nothing is freeable.
const SHRINK_EMPTY: c_ulong = c_ulong::MAX - 1;

/// What gives memory back.
pub(crate) trait ShrinkTask: Sync + Sized {
    /// Pages a scan could free now (an estimate; 0: none).
    fn count_freeable(&self) -> u64;

    /// Frees up to `nr` pages for an allocation that may start I/O if `may_io` (otherwise it
    /// runs in a NOIO scope, maybe in the owner's own I/O path, and must not wait for it).
    /// Returns the pages freed; `None`: nothing can be done now.
    fn scan_freeable(&self, nr: u64, may_io: bool) -> Option<u64>;

    /// Pages the kernel asks for per scan.
    const BATCH: u64;
}

/// # Invariants
///
/// `registered` is null, or a shrinker registered with `count::<T>` and `scan::<T>` whose
/// `private_data` points to the `T` that holds this `Shrinker`, which does not move and calls
/// [`Shrinker::free`] before it is freed.
pub(crate) struct Shrinker<T: ShrinkTask> {
    registered: AtomicPtr<bindings::shrinker>,
    _owner: PhantomData<T>,
}

// SAFETY: The pointer is only swapped atomically and handed to the kernel, which synchronises
// the shrinker's use; `T: Sync`.
unsafe impl<T: ShrinkTask> Send for Shrinker<T> {}
// SAFETY: As for `Send`: shared state is one atomic pointer.
unsafe impl<T: ShrinkTask> Sync for Shrinker<T> {}

impl<T: ShrinkTask> Shrinker<T> {
    pub(crate) const fn new() -> Self {
        // INVARIANT: null.
        Self { registered: AtomicPtr::new(ptr::null_mut()), _owner: PhantomData }
    }

    /// Registers a shrinker named `rxdsk-rxd<id>` for `owner` (once; a second call is a no-op).
    ///
    /// # Safety
    ///
    /// `owner` holds `self`, never moves, and calls [`Shrinker::free`] before it is freed.
    pub(crate) unsafe fn register(&self, owner: &T, id: u32) -> Result {
        if !self.registered.load(Ordering::Acquire).is_null() {
            return Ok(());
        }
        // SAFETY: The format is a NUL-terminated string with one `%u`, given a `c_uint`.
        let shrinker = unsafe { bindings::shrinker_alloc(0, c"rxdsk-rxd%u".as_char_ptr(), id as c_uint) };
        if shrinker.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `shrinker` is allocated and not registered yet: its fields are ours to set.
        unsafe {
            (*shrinker).count_objects = Some(count::<T>);
            (*shrinker).scan_objects = Some(scan::<T>);
            (*shrinker).batch = isize::try_from(T::BATCH).unwrap_or(0);
            (*shrinker).private_data = ptr::from_ref(owner).cast_mut().cast();
        }
        // SAFETY: Allocated by `shrinker_alloc`, fully set up above.
        unsafe { bindings::shrinker_register(shrinker) };
        // INVARIANT: registered for `owner`, the caller's promise.
        self.registered.store(shrinker, Ordering::Release);
        Ok(())
    }

    /// Unregisters the shrinker, waiting for a scan that is running. May sleep.
    pub(crate) fn free(&self) {
        let shrinker = self.registered.swap(ptr::null_mut(), Ordering::AcqRel);
        if !shrinker.is_null() {
            // SAFETY: Registered by `register` (invariant) and taken out of `self` above, so
            // freed once.
            unsafe { bindings::shrinker_free(shrinker) };
        }
    }
}

impl<T: ShrinkTask> Drop for Shrinker<T> {
    fn drop(&mut self) {
        self.free();
    }
}

/// # Safety
///
/// `shrinker` is registered by [`Shrinker::register`] for a `T` (its `private_data`).
unsafe extern "C" fn count<T: ShrinkTask>(shrinker: *mut bindings::shrinker, _sc: *mut bindings::shrink_control) -> c_ulong {
    // SAFETY: `private_data` is the owner, alive until it frees the shrinker, which waits for
    // us (the invariant of `Shrinker`).
    let owner = unsafe { &*(*shrinker).private_data.cast::<T>() };
    match owner.count_freeable() {
        0 => SHRINK_EMPTY,
        // Below `SHRINK_EMPTY`, which would mean none.
        n => c_ulong::try_from(n).unwrap_or(c_ulong::MAX).min(SHRINK_EMPTY - 1),
    }
}

/// # Safety
///
/// `shrinker` is registered by [`Shrinker::register`] for a `T`; `sc` is the kernel's
/// shrink control for this call.
unsafe extern "C" fn scan<T: ShrinkTask>(shrinker: *mut bindings::shrinker, sc: *mut bindings::shrink_control) -> c_ulong {
    // SAFETY: As in `count`.
    let owner = unsafe { &*(*shrinker).private_data.cast::<T>() };
    // SAFETY: `sc` is valid for the call; read field by field, no reference kept.
    let (nr, gfp) = unsafe { ((*sc).nr_to_scan, (*sc).gfp_mask) };
    match owner.scan_freeable(u64::try_from(nr).unwrap_or(u64::MAX), gfp & GFP_IO != 0) {
        Some(freed) => c_ulong::try_from(freed).unwrap_or(c_ulong::MAX).min(SHRINK_EMPTY - 1),
        None => SHRINK_STOP,
    }
}
