// SPDX-License-Identifier: GPL-2.0

//! The XArray (include/linux/xarray.h): a sparse array of entries indexed by page index, with
//! lock-free lookups under RCU, its own spinlock for changes, and marks per entry. The only
//! place that calls the `xa_*` functions.
//!
//! An `XArray<T>` owns its entries: `T` goes in by value and comes out by value (`erase`,
//! `store`), and what is left when it is dropped is dropped with it. A lookup returns a
//! [`Entry::Shared`] handle, which says nothing about how long the entry lives: that is the
//! owner's protocol (RCU grace periods for the plain store, index locks for the compressed one).

use crate::sys::ffi::{self, Gfp};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use kernel::{bindings, prelude::*, types::Opaque};

/// What an XArray of ours holds.
///
/// # Safety
///
/// `into_raw` returns a non-null pointer aligned to at least 4 bytes (a plain XArray entry), or
/// a value entry (odd); `from_raw` and `shared` accept exactly what `into_raw` returned, and
/// `from_raw` gives ownership back, so it is called once per `into_raw`.
pub(crate) unsafe trait Entry: Sized {
    /// A copyable handle to an entry that is in the array (it owns nothing).
    type Shared: Copy;
    fn into_raw(self) -> NonNull<c_void>;
    /// # Safety
    ///
    /// `raw` came from `into_raw` and is not in any array any more.
    unsafe fn from_raw(raw: NonNull<c_void>) -> Self;
    fn shared(raw: NonNull<c_void>) -> Self::Shared;
}

// SAFETY: `KBox::into_raw` gives a non-null pointer aligned as `T`, which is at least 4 bytes
// for every `T` we store (checked below); `from_raw` takes it back once.
unsafe impl<T> Entry for KBox<T> {
    type Shared = NonNull<T>;

    fn into_raw(self) -> NonNull<c_void> {
        const { assert!(core::mem::align_of::<T>() >= 4) };
        // SAFETY: `KBox::into_raw` never returns null.
        unsafe { NonNull::new_unchecked(KBox::into_raw(self).cast()) }
    }

    unsafe fn from_raw(raw: NonNull<c_void>) -> Self {
        // SAFETY: `raw` came from `KBox::into_raw` (caller) and is given back once.
        unsafe { KBox::from_raw(raw.as_ptr().cast()) }
    }

    fn shared(raw: NonNull<c_void>) -> NonNull<T> {
        raw.cast()
    }
}

/// A value entry that owns nothing: membership of an index in a set (`xa_mk_value(0)`).
#[derive(Clone, Copy)]
pub(crate) struct Present;

// SAFETY: `xa_mk_value(0)` is 1, an odd value entry, which the XArray stores without
// dereferencing; it owns nothing.
unsafe impl Entry for Present {
    type Shared = Present;

    fn into_raw(self) -> NonNull<c_void> {
        // SAFETY: 1 is not null.
        unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(1)) }
    }

    unsafe fn from_raw(_: NonNull<c_void>) -> Self {
        Present
    }

    fn shared(_: NonNull<c_void>) -> Present {
        Present
    }
}

/// A mark an entry can carry, or (`Present`) the search filter matching every entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Present,
    /// `XA_MARK_0`.
    M0,
    /// `XA_MARK_1`.
    M1,
}

impl Mark {
    fn raw(self) -> bindings::xa_mark_t {
        match self {
            Mark::Present => ffi::xa_present(),
            Mark::M0 => ffi::xa_mark_0(),
            Mark::M1 => ffi::xa_mark_1(),
        }
    }
}

mod c {
    use crate::sys::ffi::Gfp;
    use kernel::bindings;

    // Defined in helpers.c (inline in xarray.h).
    unsafe extern "C" {
        pub(super) fn rxdsk_xa_reserve(xa: *mut bindings::xarray, index: usize, gfp: Gfp) -> core::ffi::c_int;
        pub(super) fn rxdsk_xa_release(xa: *mut bindings::xarray, index: usize);
    }
}

/// Why an entry could not be stored; the entry comes back with it.
pub(crate) enum StoreError<T> {
    /// Another entry is at the index (insert only).
    Occupied(T),
    /// No memory for the array's nodes.
    NoMemory(T),
}

/// Entries of an index visited per `cond_resched` by the long walks.
pub(crate) const WALK_BATCH: u64 = 256;

/// # Invariants
///
/// `inner` is an initialised XArray (flags 0: only process context changes it) whose entries
/// all came from `T::into_raw`, owned by the array.
#[pin_data(PinnedDrop)]
pub(crate) struct XArray<T: Entry> {
    #[pin]
    inner: Opaque<bindings::xarray>,
    _entries: PhantomData<T>,
}

// SAFETY: The XArray synchronises itself (its spinlock for changes, RCU for lookups); entries
// are moved between threads with their ownership, so `T: Send` suffices.
unsafe impl<T: Entry + Send> Send for XArray<T> {}
// SAFETY: As above: every `&self` method goes through the XArray's own synchronisation.
unsafe impl<T: Entry + Send> Sync for XArray<T> {}

impl<T: Entry> XArray<T> {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `xa_init_flags` initialises the XArray in place.
            // INVARIANT: empty, flags 0.
            inner <- Opaque::ffi_init(|slot: *mut bindings::xarray| unsafe { bindings::xa_init_flags(slot, 0) }),
            _entries: PhantomData,
        })
    }

    fn xa(&self) -> *mut bindings::xarray {
        self.inner.get()
    }

    /// The entry at `index` now, if any (takes RCU itself).
    pub(crate) fn load(&self, index: usize) -> Option<T::Shared> {
        // SAFETY: The XArray is initialised (invariant); `xa_load` is safe against concurrent
        // changes.
        NonNull::new(unsafe { bindings::xa_load(self.xa(), index) }).map(T::shared)
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        self.load(index).is_some()
    }

    /// Stores `entry` at `index` (allocating nodes with `gfp`); returns what was there.
    pub(crate) fn store(&self, index: usize, entry: T, gfp: Gfp) -> Result<Option<T>, StoreError<T>> {
        let raw = entry.into_raw();
        // SAFETY: Initialised (invariant); `xa_store` takes the lock itself; `raw` is a valid
        // entry (`Entry`).
        let old = unsafe { bindings::xa_store(self.xa(), index, raw.as_ptr(), gfp | ffi::GFP_NOWARN) };
        // SAFETY: `xa_err` only decodes the value.
        if unsafe { bindings::xa_err(old) } != 0 {
            // SAFETY: Not stored: still ours, given back once.
            return Err(StoreError::NoMemory(unsafe { T::from_raw(raw) }));
        }
        // SAFETY: `old` was an entry of the array (invariant), now out of it and ours.
        Ok(NonNull::new(old).map(|old| unsafe { T::from_raw(old) }))
    }

    /// Reserves `index` (allocating its nodes with `gfp`), so that storing there later needs no
    /// memory; lookups and walks do not see a reservation. Undone by [`XArray::release`] or
    /// by a store.
    pub(crate) fn reserve(&self, index: usize, gfp: Gfp) -> Result {
        // SAFETY: Initialised (invariant); `xa_reserve` takes the lock itself.
        kernel::error::to_result(unsafe { c::rxdsk_xa_reserve(self.xa(), index, gfp | ffi::GFP_NOWARN) })
    }

    /// Gives up a reservation of `index` that was not stored to (nothing if an entry is there).
    pub(crate) fn release(&self, index: usize) {
        // SAFETY: Initialised (invariant); `xa_release` only removes a reserved entry.
        unsafe { c::rxdsk_xa_release(self.xa(), index) };
    }

    /// Removes and returns the entry at `index`.
    pub(crate) fn erase(&self, index: usize) -> Option<T> {
        // SAFETY: Initialised (invariant); `xa_erase` takes the lock itself.
        let old = unsafe { bindings::xa_erase(self.xa(), index) };
        // SAFETY: `old` was an entry of the array (invariant), now out of it and ours.
        NonNull::new(old).map(|old| unsafe { T::from_raw(old) })
    }

    pub(crate) fn get_mark(&self, index: usize, mark: Mark) -> bool {
        // SAFETY: Initialised (invariant); `xa_get_mark` takes RCU itself.
        unsafe { bindings::xa_get_mark(self.xa(), index, mark.raw()) }
    }

    /// Marks the entry at `index`; nothing if there is none.
    pub(crate) fn set_mark(&self, index: usize, mark: Mark) {
        // SAFETY: Initialised (invariant); `xa_set_mark` takes the lock itself and ignores an
        // absent index.
        unsafe { bindings::xa_set_mark(self.xa(), index, mark.raw()) };
    }

    pub(crate) fn clear_mark(&self, index: usize, mark: Mark) {
        // SAFETY: Initialised (invariant); `xa_clear_mark` takes the lock itself.
        unsafe { bindings::xa_clear_mark(self.xa(), index, mark.raw()) };
    }

    /// The first index in `from..=last` whose entry matches `filter`.
    pub(crate) fn find(&self, from: usize, last: usize, filter: Mark) -> Option<usize> {
        let mut index = from;
        // SAFETY: Initialised (invariant); `xa_find` takes RCU itself and moves `index` to the
        // entry it returns.
        let entry = unsafe { bindings::xa_find(self.xa(), &mut index, last, filter.raw()) };
        (!entry.is_null()).then_some(index)
    }

    /// Calls `f(index)` for every entry in `first..=last` matching `filter`, in index order,
    /// yielding the CPU every [`WALK_BATCH`] entries; visits only entries, so a huge sparse range
    /// costs what it holds, not its size. `f` may change the array.
    pub(crate) fn walk(&self, filter: Mark, first: usize, last: usize, mut f: impl FnMut(usize)) {
        let mut from = first;
        let mut seen = 0u64;
        while let Some(index) = self.find(from, last, filter) {
            f(index);
            seen += 1;
            if seen % WALK_BATCH == 0 {
                ffi::cond_resched();
            }
            match index.checked_add(1) {
                Some(next) if index < last => from = next,
                _ => break,
            }
        }
    }

    /// Removes every entry (dropping them), yielding the CPU between batches.
    pub(crate) fn clear(&self) {
        self.walk(Mark::Present, 0, usize::MAX, |index| drop(self.erase(index)));
    }

    /// Takes the array's lock, for changes that must see one state.
    pub(crate) fn lock(&self) -> Locked<'_, T> {
        // SAFETY: Initialised (invariant); unlocked by `Locked`'s drop.
        unsafe { bindings::xa_lock(self.xa()) };
        Locked { xa: self }
    }
}

/// The XArray's lock, held; released on drop.
///
/// # Invariants
///
/// The lock of `xa` is held by this task.
pub(crate) struct Locked<'a, T: Entry> {
    xa: &'a XArray<T>,
}

impl<T: Entry> Locked<'_, T> {
    /// Whether an entry is at `index`, seen under the lock.
    pub(crate) fn contains(&self, index: usize) -> bool {
        self.xa.contains(index)
    }

    /// Stores `entry` at `index` if nothing is there. Node allocation with `gfp` may drop and
    /// retake the lock (so `gfp` must not be `__GFP_HIGHMEM`).
    pub(crate) fn insert(&mut self, index: usize, entry: T, gfp: Gfp) -> Result<(), StoreError<T>> {
        let raw = entry.into_raw();
        // SAFETY: The lock is held (invariant), as `__xa_cmpxchg` requires; it returns with the
        // lock held. `raw` is a valid entry.
        let old = unsafe { bindings::__xa_cmpxchg(self.xa.xa(), index, ptr::null_mut(), raw.as_ptr(), gfp | ffi::GFP_NOWARN) };
        if old.is_null() {
            return Ok(());
        }
        // SAFETY: Not stored: ours again, given back once.
        let entry = unsafe { T::from_raw(raw) };
        // SAFETY: `xa_err` only decodes the value.
        if unsafe { bindings::xa_err(old) } != 0 {
            Err(StoreError::NoMemory(entry))
        } else {
            Err(StoreError::Occupied(entry))
        }
    }

    /// Marks the entry at `index` under the lock held.
    pub(crate) fn set_mark(&mut self, index: usize, mark: Mark) {
        // SAFETY: The lock is held (invariant).
        unsafe { bindings::__xa_set_mark(self.xa.xa(), index, mark.raw()) };
    }
}

impl<T: Entry> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        // SAFETY: Held since `lock` (invariant).
        unsafe { bindings::xa_unlock(self.xa.xa()) };
    }
}

#[pinned_drop]
impl<T: Entry> PinnedDrop for XArray<T> {
    fn drop(self: Pin<&mut Self>) {
        // The owner made sure nobody else uses the array now: drop every entry, then the
        // nodes.
        self.clear();
        // SAFETY: Initialised (invariant) and empty.
        unsafe { bindings::xa_destroy(self.xa()) };
    }
}
