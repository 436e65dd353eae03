// SPDX-License-Identifier: GPL-2.0

//! A task that runs every N seconds in process context (a delayed work item re-queued by
//! itself), or at once when kicked: the periodic flush of a backing device, and a cache's
//! write-back ahead of need.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use kernel::{bindings, prelude::*, types::Opaque};

mod c {
    use kernel::bindings;

    // Defined in helpers.c.
    unsafe extern "C" {
        pub(super) fn rxdsk_init_delayed_work(
            work: *mut bindings::delayed_work,
            func: Option<unsafe extern "C" fn(*mut bindings::work_struct)>,
        );
        pub(super) fn rxdsk_queue_delayed_secs(work: *mut bindings::delayed_work, secs: core::ffi::c_uint);
        pub(super) fn rxdsk_kick_delayed(work: *mut bindings::delayed_work);
    }
}

/// What runs periodically.
pub(crate) trait PeriodicTask: Sync + Sized {
    /// Runs once; may sleep.
    fn run_periodic(&self);
}

/// # Invariants
///
/// - `work` is initialised with `run::<T>`.
/// - `owner` is null until [`Periodic::set_owner`], then points to the pinned `T` that holds
///   this `Periodic` and calls [`Periodic::stop`] before it is freed.
/// - `secs` is the period; 0: stopped (a running task does not queue itself again).
/// - `kicked`: a kick queued the task and it has not started since (one kick at a time).
#[pin_data]
pub(crate) struct Periodic<T: PeriodicTask> {
    #[pin]
    work: Opaque<bindings::delayed_work>,
    owner: AtomicPtr<T>,
    secs: AtomicU32,
    kicked: AtomicBool,
}

// SAFETY: Shared state is atomic; the work item is the workqueue's to synchronise; `T: Sync`.
unsafe impl<T: PeriodicTask> Send for Periodic<T> {}
// SAFETY: As above.
unsafe impl<T: PeriodicTask> Sync for Periodic<T> {}

impl<T: PeriodicTask> Periodic<T> {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `INIT_DELAYED_WORK` initialises the work item (and its timer) in place.
            // INVARIANT: with `run::<T>`.
            work <- Opaque::ffi_init(|w: *mut bindings::delayed_work| unsafe { c::rxdsk_init_delayed_work(w, Some(run::<T>)) }),
            owner: AtomicPtr::new(ptr::null_mut()),
            secs: AtomicU32::new(0),
            kicked: AtomicBool::new(false),
        })
    }

    /// # Safety
    ///
    /// `owner` is pinned, holds `self`, and calls [`Periodic::stop`] before it is freed.
    pub(crate) unsafe fn set_owner(&self, owner: &T) {
        // INVARIANT: the caller's promise.
        self.owner.store(ptr::from_ref(owner).cast_mut(), Ordering::Release);
    }

    /// Runs the task every `secs` seconds from now on (0: never), replacing any earlier period.
    pub(crate) fn start(&self, secs: u32) {
        self.stop();
        if secs == 0 || self.owner.load(Ordering::Acquire).is_null() {
            return;
        }
        self.secs.store(secs, Ordering::Release);
        // SAFETY: `work` is initialised (invariant) and idle (stopped above).
        unsafe { c::rxdsk_queue_delayed_secs(self.work.get(), secs) };
    }

    /// Stops the period and a kick not yet run, and waits for a running task to finish (a
    /// kick after this runs the task once more). May sleep.
    pub(crate) fn stop(&self) {
        self.secs.store(0, Ordering::Release);
        // SAFETY: `work` is initialised (invariant). With `secs` 0, a task that is running
        // does not queue itself again, so it is idle after this unless kicked again.
        unsafe { bindings::cancel_delayed_work_sync(self.work.get()) };
        // A kick cancelled above did not run: the next one must queue it.
        self.kicked.store(false, Ordering::Release);
    }

    /// Runs the task now (once; the period, if any, goes on after it). Never sleeps: callable
    /// from the I/O path. The owner must not kick after its last [`Periodic::stop`].
    pub(crate) fn kick(&self) {
        if self.owner.load(Ordering::Acquire).is_null() || self.kicked.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: `work` is initialised (invariant); the owner stops us (which cancels this)
        // before it is freed, and kicks no more after that (the caller's promise).
        unsafe { c::rxdsk_kick_delayed(self.work.get()) };
    }

    pub(crate) fn secs(&self) -> u32 {
        self.secs.load(Ordering::Acquire)
    }
}

/// The work function: runs the task, then queues the next run unless stopped.
///
/// # Safety
///
/// `work` is the `work` member of the `delayed_work` of a `Periodic<T>` (invariant).
unsafe extern "C" fn run<T: PeriodicTask>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first member of a `delayed_work` (`to_delayed_work`), which is the
    // `work` field of a `Periodic<T>` (`Opaque` is `repr(transparent)`).
    let this = unsafe {
        let delayed = kernel::container_of!(work, bindings::delayed_work, work);
        &*kernel::container_of!(delayed.cast::<Opaque<bindings::delayed_work>>(), Periodic<T>, work)
    };
    let owner = this.owner.load(Ordering::Acquire);
    if owner.is_null() {
        return;
    }
    // Before the task: a kick while it runs queues it again.
    this.kicked.store(false, Ordering::Release);
    // SAFETY: The owner stops us before it is freed (invariant), and `stop` waits for us.
    unsafe { (*owner).run_periodic() };
    let secs = this.secs();
    if secs != 0 {
        // SAFETY: `work` is initialised; `stop` cancels this queueing if it races with it.
        unsafe { c::rxdsk_queue_delayed_secs(this.work.get(), secs) };
    }
}
