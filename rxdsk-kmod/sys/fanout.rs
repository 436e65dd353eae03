// SPDX-License-Identifier: GPL-2.0

//! One bio's work spread over CPUs: zram compresses a 1 MiB write page by page on the
//! submitting CPU; we ask other CPUs to help and share the bio's chunks with them, so the bio
//! completes when its last page is stored, in the submitter's context (its locks, its cut) as
//! before. The helpers run on the module's `rxdsk_fanout` workqueue (helpers.c; it lives as
//! long as [`IoQueue`](super::deferred::IoQueue)), whose work items live on the submitter's
//! stack until they are done or cancelled.

use core::cell::UnsafeCell;
use core::ffi::{c_uint, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::prelude::*;

mod c {
    use core::ffi::{c_uint, c_void};

    // Defined in helpers.c.
    unsafe extern "C" {
        pub(super) fn rxdsk_fanout(
            f: Option<unsafe extern "C" fn(ctx: *const c_void, participant: c_uint)>,
            ctx: *const c_void,
            max_participants: c_uint,
        ) -> c_uint;
    }
}

/// The most participants (the caller and its helpers) of one call (`RXDSK_FANOUT_MAX` in
/// helpers.c).
pub(crate) const MAX_PARTS: usize = 8;

/// What one participant did: chunks done, and the first chunk it failed with its error.
/// Participant `i` writes slot `i` only, and the caller reads the slots only after every
/// participant returned.
struct Slots<E>([UnsafeCell<Outcome<E>>; MAX_PARTS]);

/// Chunks done, and the first chunk that failed with its error.
type Outcome<E> = (usize, Option<(usize, E)>);

// SAFETY: Each slot is written by one participant alone, and read by the caller after
// `rxdsk_fanout` returned, which waited for every helper (a full barrier between them);
// `E: Send` because a value made on one CPU is read on another.
unsafe impl<E: Send> Sync for Slots<E> {}

struct Call<'a, E, I, F> {
    /// Makes a participant's own state (a walk of the bio), which goes on from chunk to chunk:
    /// a participant's chunks come in increasing order.
    init: &'a I,
    f: &'a F,
    chunks: usize,
    /// The next chunk to take; `chunks` or more: none left (or one failed).
    next: AtomicUsize,
    slots: Slots<E>,
}

/// Participant `participant` takes chunks until none is left.
///
/// # Safety
///
/// `ctx` points to a live `Call<E, I, F>`; `participant < MAX_PARTS`, and no other call runs
/// with the same `participant` of that `Call`.
unsafe extern "C" fn participate<S, E: Send, I: Fn() -> S + Sync, F: Fn(&mut S, usize) -> Result<(), E> + Sync>(
    ctx: *const c_void,
    participant: c_uint,
) {
    // SAFETY: A live `Call` (caller), shared: its closures are `Sync`, its slots and counter too.
    let call = unsafe { &*ctx.cast::<Call<'_, E, I, F>>() };
    let Some(slot) = call.slots.0.get(participant as usize) else { return };
    let (mut done, mut failed) = (0, None);
    let mut state = (call.init)();
    loop {
        let chunk = call.next.fetch_add(1, Ordering::Relaxed);
        if chunk >= call.chunks {
            break;
        }
        match (call.f)(&mut state, chunk) {
            Ok(()) => done += 1,
            Err(e) => {
                // The bio fails: the others stop at their next chunk.
                call.next.fetch_max(call.chunks, Ordering::Relaxed);
                failed = Some((chunk, e));
                break;
            }
        }
    }
    // SAFETY: This participant alone writes this slot (caller), and nobody reads it before
    // the call is over.
    unsafe { *slot.get() = (done, failed) };
}

/// Runs `f(state, chunk)` for every chunk in `0..chunks`, shared out between the calling task and up
/// to `max_participants - 1` helpers (capped at [`MAX_PARTS`] in all), each on an online CPU
/// that no other fan-out is using (the scheduler's `idle_cpu` is not exported; other work there
/// shares its CPU with the helper). Every participant takes the next chunk left until none is,
/// so a helper that starts late takes less (or nothing: then it is cancelled unstarted); each
/// participant's `state` comes from `init` and sees its chunks in increasing order.
/// Returns when all are done: the chunks done by helpers, and the error of the lowest chunk
/// that failed (after a failure no new chunk is started).
///
/// Waits for the helpers (spinning a little for one that started, then sleeping, see helpers.c):
/// process context only, never for a `REQ_NOWAIT` bio. A task in reclaim does it all alone.
pub(crate) fn fan_out<S, E: Send, I: Fn() -> S + Sync, F: Fn(&mut S, usize) -> Result<(), E> + Sync>(
    max_participants: usize,
    chunks: usize,
    init: &I,
    f: &F,
) -> (usize, Result<(), E>) {
    let call = Call {
        init,
        f,
        chunks,
        next: AtomicUsize::new(0),
        slots: Slots(core::array::from_fn(|_| UnsafeCell::new((0, None)))),
    };
    let max = max_participants.clamp(1, MAX_PARTS) as c_uint;
    // SAFETY: What `participate` requires: `ctx` is `&call`, which outlives the C call, as that
    // returns only once every helper has returned or was cancelled before it started; the C
    // side runs each participant number below `max <= MAX_PARTS` at most once, so each slot
    // has one writer.
    unsafe { c::rxdsk_fanout(Some(participate::<S, E, I, F>), core::ptr::from_ref(&call).cast(), max) };
    let mut elsewhere = 0;
    let mut first: Option<(usize, E)> = None;
    for (i, slot) in call.slots.0.into_iter().enumerate() {
        let (done, failed) = slot.into_inner();
        if i > 0 {
            elsewhere += done;
        }
        if let Some((chunk, e)) = failed {
            if first.as_ref().is_none_or(|(c, _)| chunk < *c) {
                first = Some((chunk, e));
            }
        }
    }
    (elsewhere, first.map_or(Ok(()), |(_, e)| Err(e)))
}
