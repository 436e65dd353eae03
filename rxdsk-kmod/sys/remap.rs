// SPDX-License-Identifier: GPL-2.0

//! Reads sent straight to the backing device, as dm remaps a bio: a clone of the bio for the
//! same sectors of the backing device (the image's data area starts at its sector 0) reads
//! into the submitter's pages and ends the original when it completes. No page of ours, no
//! copy, no worker. The clones come from a bio set of our own (a stacking driver must not
//! take the file systems' reserve) without waiting: short of one, the caller does the read
//! its usual way. The clones in flight are counted, and the backing device is let go only
//! once none is.

use crate::sys::backing::Backing;
use crate::sys::disk::Bio;
use crate::sys::ffi;
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use kernel::{bindings, prelude::*, types::Opaque};

/// Room before each clone for the `Remap` it belongs to (see `end_clone`).
const FRONT_PAD: usize = core::mem::size_of::<*const Remap>();

/// # Invariants
///
/// - `clones` is initialised by `bioset_init` with [`FRONT_PAD`] bytes in front of each bio,
///   and exited only by the drop, when no clone is in flight.
/// - `target` is null, or the block device of a [`Backing`] that stays open until
///   [`Remap::clear_target`] has returned (the safety contract of [`Remap::set_target`]);
///   `block_size` is its logical block size.
/// - `in_flight` counts the callers of [`Remap::try_read`] past their increment, and the
///   clones submitted and not yet completed: `clear_target` and the drop wait for it to be 0.
#[pin_data(PinnedDrop)]
pub(crate) struct Remap {
    #[pin]
    clones: Opaque<bindings::bio_set>,
    target: AtomicPtr<bindings::block_device>,
    block_size: AtomicU32,
    in_flight: AtomicU64,
}

// SAFETY: The bio set and the block device are made to be used from any context; the rest is
// atomics.
unsafe impl Send for Remap {}
// SAFETY: As above: every method takes `&self` and synchronises through the atomics.
unsafe impl Sync for Remap {}

impl Remap {
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // INVARIANT: initialised on success, with the front pad.
            clones <- Opaque::try_ffi_init(|set: *mut bindings::bio_set| {
                // SAFETY: `set` is ours to initialise, zeroed first as `bioset_init` expects
                // (it leaves the fields of what it does not set up alone, such as the per-CPU
                // cache a bio with `REQ_ALLOC_CACHE` looks for); no bvec pool (a clone shares
                // its original's) and no rescuer (allocations never wait, see `try_read`). On
                // failure `bioset_init` frees what it allocated.
                kernel::error::to_result(unsafe {
                    core::ptr::write_bytes(set, 0, 1);
                    bindings::bioset_init(set, bindings::BIO_POOL_SIZE, FRONT_PAD as u32, 0)
                })
            }),
            target: AtomicPtr::new(core::ptr::null_mut()),
            block_size: AtomicU32::new(0),
            in_flight: AtomicU64::new(0),
        })
    }

    /// Sends reads to `backing` from now on.
    ///
    /// # Safety
    ///
    /// `backing` stays open until [`Remap::clear_target`] has returned, and is not replaced
    /// before that.
    pub(crate) unsafe fn set_target(&self, backing: &Backing) {
        let bdev = backing.bdev();
        // SAFETY: `bdev` belongs to the open `backing`.
        let block_size = unsafe { ffi::bdev_logical_block_size(bdev) };
        self.block_size.store(block_size, Ordering::Relaxed);
        // INVARIANT: the caller keeps `backing` open until `clear_target`.
        self.target.store(bdev, Ordering::SeqCst);
    }

    /// Sends no more reads to the backing device, and waits until those sent have completed.
    /// May sleep.
    pub(crate) fn clear_target(&self) {
        self.target.store(core::ptr::null_mut(), Ordering::SeqCst);
        // Pairs with `try_read`'s fence: a caller that still saw the target is counted here.
        fence(Ordering::SeqCst);
        ffi::wait_below(&self.in_flight, 1);
    }

    fn exit(&self) {
        // SAFETY: `self` is valid now; after the decrement it may be freed, which
        // `exit_at` allows for.
        unsafe { Self::exit_at(self) };
    }

    /// Leaves the count, touching nothing of `remap` after it: once the count drops, the
    /// owner may free it.
    ///
    /// # Safety
    ///
    /// `remap` is valid until the decrement, and counted in `in_flight` by the caller.
    unsafe fn exit_at(remap: *const Remap) {
        // SAFETY: Valid until the decrement (caller); no reference outlives it.
        let counter = unsafe { &raw const (*remap).in_flight };
        // SAFETY: As above: the counter is alive until this decrement completes.
        unsafe { (*counter).fetch_sub(1, Ordering::Release) };
        ffi::wake_counter_at(counter);
    }

    /// Sends read `bio` to the backing device if there is one, the bio is aligned to its
    /// logical block size, and `allowed()` (asked once the target is taken: what it checks
    /// cannot be undone before `clear_target` returns) says so; gives it back otherwise, or
    /// when no clone is to be had without waiting.
    pub(crate) fn try_read(&self, bio: Bio, allowed: impl FnOnce() -> bool) -> Result<(), Bio> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // Pairs with `clear_target`'s fence: either it waits for us, or we see no target.
        fence(Ordering::SeqCst);
        let bdev = self.target.load(Ordering::SeqCst);
        let block = u64::from(self.block_size.load(Ordering::Relaxed)).max(1);
        if bdev.is_null() || bio.position() % block != 0 || bio.len() % block != 0 || !allowed() {
            self.exit();
            return Err(bio);
        }
        let raw = bio.into_raw().as_ptr();
        // SAFETY: `raw` is a valid bio we own and have not ended; `bdev` is open (invariant:
        // `clear_target` waits for us); `clones` is initialised (invariant). GFP_NOWAIT: in
        // `submit_bio`, a wait for a clone could wait for bios queued behind us.
        let clone = unsafe {
            bindings::bio_alloc_clone(bdev, raw, ffi::GFP_NOWAIT | ffi::GFP_NOWARN, self.clones.get())
        };
        if clone.is_null() {
            self.exit();
            // SAFETY: `raw` came from `into_raw` just above and was not ended.
            return Err(unsafe { Bio::from_raw(raw) });
        }
        // SAFETY: `clone` is a fresh bio of `clones`, with `FRONT_PAD` bytes before it
        // (invariant) that hold `self` for `end_clone`; `raw` stays valid until `end_clone`
        // ends it, and `self` until the count drops (its drop waits for it).
        unsafe {
            clone.cast::<u8>().sub(FRONT_PAD).cast::<*const Remap>().write(self);
            (*clone).bi_private = raw.cast();
            (*clone).bi_end_io = Some(end_clone);
            bindings::submit_bio_noacct(clone);
        }
        Ok(())
    }
}

/// Completion of a clone (any context): ends the original with its status.
///
/// # Safety
///
/// `clone` is a bio that `Remap::try_read` submitted, completing.
unsafe extern "C" fn end_clone(clone: *mut bindings::bio) {
    // SAFETY: Set up by `try_read`: the `Remap` in the front pad (alive until the count below
    // drops) and the original bio in `bi_private`, ours to end once, here.
    unsafe {
        let remap = clone.cast::<u8>().sub(FRONT_PAD).cast::<*const Remap>().read();
        let original = (*clone).bi_private.cast::<bindings::bio>();
        (*original).bi_status = (*clone).bi_status;
        bindings::bio_put(clone);
        bindings::bio_endio(original);
        Remap::exit_at(remap);
    }
}

#[pinned_drop]
impl PinnedDrop for Remap {
    fn drop(self: Pin<&mut Self>) {
        // The owner cleared the target; no clone may be left when the set goes.
        ffi::wait_below(&self.in_flight, 1);
        // SAFETY: Initialised (invariant), no clone in flight (waited above), exited once.
        unsafe { bindings::bioset_exit(self.clones.get()) };
    }
}
