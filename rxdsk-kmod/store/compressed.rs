// SPDX-License-Identifier: GPL-2.0

//! The compressed page store: an XArray of page descriptors keyed by page index, the data in
//! zsmalloc objects.
//!
//! Every access to an index, read or write, holds its index lock (see [`Shards`]): a write
//! replaces an object that a reader may be decompressing, and a partial write is
//! read-modify-write, so both need the index to themselves. A descriptor and its object are
//! freed under the index lock the moment they are replaced: no reader can hold them then, so
//! no grace period is needed. While a flush writes a cut (see [`Changes`]), an object of the
//! cut that a writer replaces or erases before the flusher took it is kept in `frozen`
//! instead of freed: no copy at all.

use super::changes::Changes;
use super::error::StoreError;
use super::shards::{IndexLock, Shards};
use crate::abi::{RxdskComprStats, RXDSK_PAGE_SIZE};
use crate::sys::compress::{Algorithm, Stream, StreamGuard, Streams};
use crate::sys::ffi::{self, Gfp, PAGE_SIZE};
use crate::sys::iomem::IoMem;
use crate::sys::xarray::{self, Mark, XArray};
use crate::sys::zsmalloc::{Handle, Pool};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{prelude::*, str::CStr};

const WORD: usize = core::mem::size_of::<usize>();

/// What one index holds.
#[derive(Clone, Copy)]
pub(super) struct Obj {
    /// A zsmalloc handle; for a same-filled page, the word.
    value: usize,
    /// Compressed length; 0: same-filled (no object); `PAGE_SIZE`: stored whole.
    len: usize,
}

/// # Invariants
///
/// - `xa` is an initialised XArray whose entries are `KBox<Obj>` pointers owned by the store,
///   each naming a live object of `pool` (unless same-filled); `objects` counts them.
/// - An entry is read, replaced or freed only under its index's shard lock.
/// - `changes` tracks the changes of `xa` for a backing device (see [`Changes`]); what goes
///   to the backing device is the pages' plain data.
#[pin_data(PinnedDrop)]
pub(crate) struct ZStore {
    #[pin]
    xa: XArray<KBox<Obj>>,
    #[pin]
    changes: Changes,
    #[pin]
    shards: Shards,
    /// While a cut is open: for an index of the cut replaced or erased since and not yet
    /// written out, its object at the cut (still counted in the pool and the totals).
    #[pin]
    frozen: XArray<KBox<Obj>>,
    #[pin]
    streams: Streams,
    pool: Pool,
    algorithm: Algorithm,
    huge_class: usize,
    /// 0: no limit; else the bound of [`ZStore::total_bytes`].
    limit_bytes: u64,
    objects: AtomicU64,
    compr_bytes: AtomicU64,
    same_pages: AtomicU64,
    huge_pages: AtomicU64,
    compress_failures: AtomicU64,
    decompress_failures: AtomicU64,
    max_used: AtomicU64,
}

// SAFETY: The XArray is safe from any thread; the descriptors it holds are owned by the store
// and used only under the shard locks.
unsafe impl Send for ZStore {}
// SAFETY: Methods taking `&self` synchronise through the shard locks, the XArray and atomics.
unsafe impl Sync for ZStore {}

/// A place in `frozen` for an object a flush still needs, reserved before the change; let
/// go of if the change does not happen.
struct Keep<'a> {
    frozen: &'a XArray<KBox<Obj>>,
    slot: usize,
    /// Taken by `keep`.
    boxed: Option<KBox<Obj>>,
}

impl Keep<'_> {
    /// Keeps `old`, the object just replaced or erased.
    fn keep(mut self, old: Obj) {
        if let Some(mut boxed) = self.boxed.take() {
            *boxed = old;
            // Reserved: the store needs no memory (should it fail all the same, the object
            // would leak into the pool, which frees it when the device goes).
            if let Err(xarray::StoreError::NoMemory(b) | xarray::StoreError::Occupied(b)) =
                self.frozen.store(self.slot, boxed, ffi::GFP_NOWAIT)
            {
                core::mem::forget(b);
            }
        }
    }
}

impl Drop for Keep<'_> {
    fn drop(&mut self) {
        if self.boxed.is_some() {
            self.frozen.release(self.slot);
        }
    }
}

/// The word every machine word of `page` equals, if any.
fn same_filled(page: &[u8]) -> Option<usize> {
    let first = usize::from_ne_bytes(page.get(..WORD)?.try_into().ok()?);
    page.chunks(WORD).all(|w| w == first.to_ne_bytes()).then_some(first)
}

impl ZStore {
    pub(crate) fn new(name: &CStr, algorithm: Algorithm, limit_bytes: u64) -> Result<impl PinInit<Self, Error>> {
        let pool = Pool::new(name)?;
        let streams = Streams::new(algorithm)?;
        let huge_class = pool.huge_class_size();
        Ok(try_pin_init!(Self {
            xa <- XArray::new(),
            changes <- Changes::new(),
            shards <- Shards::new(),
            frozen <- XArray::new(),
            streams <- streams,
            pool,
            algorithm,
            huge_class,
            limit_bytes,
            objects: AtomicU64::new(0),
            compr_bytes: AtomicU64::new(0),
            same_pages: AtomicU64::new(0),
            huge_pages: AtomicU64::new(0),
            compress_failures: AtomicU64::new(0),
            decompress_failures: AtomicU64::new(0),
            max_used: AtomicU64::new(0),
        }))
    }

    /// Pages stored (DATA in pages).
    pub(crate) fn pages(&self) -> u64 {
        self.objects.load(Ordering::Relaxed)
    }

    /// Memory really used: the pool's pages and our descriptors.
    pub(crate) fn total_bytes(&self) -> u64 {
        (self.pool.total_pages() << kernel::page::PAGE_SHIFT)
            + self.objects.load(Ordering::Relaxed) * core::mem::size_of::<Obj>() as u64
    }

    fn lock(&self, index: u64, nowait: bool) -> Result<IndexLock<'_>, StoreError> {
        self.shards.lock(index, nowait)
    }

    /// Before the object of `index` is replaced or erased, with its index lock held: if the
    /// open cut still has to write it, a place in `frozen` to keep it (allocated now, so that
    /// keeping cannot fail once the change is made).
    fn room_to_keep(&self, index: u64, nowait: bool) -> Result<Option<Keep<'_>>, StoreError> {
        let slot = usize::try_from(index).map_err(|_| StoreError::NoMemory)?;
        if !self.changes.in_cut(&self.xa, slot) || self.frozen.contains(slot) {
            return Ok(None);
        }
        let flags = if nowait { GFP_NOWAIT } else { GFP_KERNEL } | __GFP_NOWARN;
        let boxed = KBox::new(Obj { value: 0, len: 0 }, flags).map_err(|_| StoreError::NoMemory)?;
        let gfp = if nowait { ffi::GFP_NOWAIT } else { ffi::gfp_noio() };
        self.frozen.reserve(slot, gfp).map_err(|_| StoreError::NoMemory)?;
        Ok(Some(Keep { frozen: &self.frozen, slot, boxed: Some(boxed) }))
    }

    fn stream(&self, nowait: bool) -> Result<StreamGuard<'_>, StoreError> {
        self.streams.get(nowait).ok_or(StoreError::WouldBlock)
    }

    /// The descriptor at `index`, if any. Valid while the index's shard lock is held.
    fn load(&self, index: u64) -> Option<NonNull<Obj>> {
        self.xa.load(usize::try_from(index).ok()?)
    }

    /// Decompresses (or expands) `obj` into the page at `dst`.
    ///
    /// # Safety
    ///
    /// `obj` is a live descriptor of this store whose shard lock the caller holds; `dst` is
    /// valid for writing a page and is none of the stream's buffers.
    unsafe fn decode(&self, s: &mut Stream, obj: &Obj, dst: *mut u8) -> Result<(), StoreError> {
        if obj.len == 0 {
            let word = obj.value.to_ne_bytes();
            for i in 0..PAGE_SIZE / WORD {
                // SAFETY: `dst` holds a page (caller); `i * WORD + WORD <= PAGE_SIZE`.
                unsafe { core::ptr::copy_nonoverlapping(word.as_ptr(), dst.add(i * WORD), WORD) };
            }
            return Ok(());
        }
        let scratch = s.out.as_mut_ptr();
        let handle = Handle::from_raw(obj.value);
        // SAFETY: The object is live and stays so under the shard lock (caller); `scratch`
        // (`out`) holds two pages: an object (at most a page) copied to its start, or a
        // compressed one (less than a page) to its second half, fits.
        let r = unsafe {
            self.pool.with_object(handle, obj.len, scratch, |src| {
                if obj.len == PAGE_SIZE {
                    // SAFETY: `src` holds a page; `dst` is another page-sized buffer.
                    core::ptr::copy_nonoverlapping(src, dst, PAGE_SIZE);
                    Ok(())
                } else if ffi::should_garble_object() {
                    // Fault injection: the decompressor gets a garbled copy (in the second
                    // half of `out`; an object straddling pages sits in the first).
                    let copy = s.out.as_mut_ptr().add(PAGE_SIZE);
                    core::ptr::copy_nonoverlapping(src, copy, obj.len);
                    core::ptr::write_bytes(copy.add(obj.len / 4), 0xA5, obj.len - obj.len / 4);
                    // SAFETY: `copy` holds `len` bytes; `dst` a page, not the stream's.
                    s.decompress(copy, obj.len, dst)
                } else {
                    // SAFETY: `src` holds `len` bytes; `dst` a page, not the stream's.
                    s.decompress(src, obj.len, dst)
                }
            })
        };
        r.map_err(|_| {
            self.decompress_failures.fetch_add(1, Ordering::Relaxed);
            StoreError::Corrupt
        })
    }

    /// Copies from page `index` at `offset` into `dst`, or zeros if there is none; returns
    /// whether there was one.
    pub(crate) fn read(&self, index: u64, offset: usize, mut dst: IoMem<'_>, nowait: bool) -> Result<bool, StoreError> {
        let _shard = self.lock(index, nowait)?;
        let Some(obj) = self.load(index) else {
            dst.zero();
            return Ok(false);
        };
        let mut stream = self.stream(nowait)?;
        let s = Option::as_mut(&mut *stream).ok_or(StoreError::NoMemory)?;
        // SAFETY: Entries are live descriptors, not freed while we hold the shard lock.
        let obj = unsafe { obj.as_ref() };
        if offset == 0 && dst.len() == PAGE_SIZE {
            // SAFETY: `dst` is a page of bio memory, no buffer of ours.
            return unsafe { self.decode(s, obj, dst.as_ptr()) }.map(|()| true);
        }
        let page = s.page.as_mut_ptr();
        // SAFETY: `page` is the stream's page buffer, which `decode` does not use itself.
        unsafe { self.decode(s, obj, page) }?;
        dst.copy_from_slice(s.page.get(offset..).unwrap_or(&[]));
        Ok(true)
    }

    /// Writes `src` into page `index` at `offset` (the rest of a new page is zeros): the
    /// page is compressed again and its object replaced. Returns whether the page was there
    /// already.
    pub(crate) fn write(&self, index: u64, offset: usize, src: &IoMem<'_>, nowait: bool) -> Result<bool, StoreError> {
        let _noio = ffi::NoIo::enter();
        let _shard = self.lock(index, nowait)?;
        let keep = self.room_to_keep(index, nowait)?;
        let mut stream = self.stream(nowait)?;
        let s = Option::as_mut(&mut *stream).ok_or(StoreError::NoMemory)?;
        if src.len() != PAGE_SIZE {
            self.load_into_page(index, s)?;
        }
        let end = (offset + src.len()).min(PAGE_SIZE);
        // Our own copy: the compressor must not see bytes change under it.
        src.copy_to_slice(s.page.get_mut(offset..end).unwrap_or(&mut []));
        let existed = self.replace(index, s, nowait, keep)?;
        self.changes.mark(&self.xa, index);
        Ok(existed)
    }

    /// Zeroes `len` bytes of page `index` from `offset`, if the page exists.
    pub(crate) fn zero(&self, index: u64, offset: usize, len: usize, nowait: bool) -> Result<(), StoreError> {
        let _noio = ffi::NoIo::enter();
        let _shard = self.lock(index, nowait)?;
        if self.load(index).is_none() {
            return Ok(());
        }
        let keep = self.room_to_keep(index, nowait)?;
        let mut stream = self.stream(nowait)?;
        let s = Option::as_mut(&mut *stream).ok_or(StoreError::NoMemory)?;
        self.load_into_page(index, s)?;
        if let Some(range) = s.page.get_mut(offset..(offset + len).min(PAGE_SIZE)) {
            range.fill(0);
        }
        self.replace(index, s, nowait, keep)?;
        self.changes.mark(&self.xa, index);
        Ok(())
    }

    /// Puts page `index` (zeros if none) into the stream's page buffer. Shard lock held.
    fn load_into_page(&self, index: u64, s: &mut Stream) -> Result<(), StoreError> {
        let Some(obj) = self.load(index) else {
            s.page.fill(0);
            return Ok(());
        };
        let page = s.page.as_mut_ptr();
        // SAFETY: A live descriptor under our shard lock; `page` is the stream's page buffer,
        // which `decode` does not use itself.
        unsafe { self.decode(s, obj.as_ref(), page) }
    }

    /// Stores the stream's page at `index`, freeing what was there (or keeping it in `keep`);
    /// returns whether there was a page. Shard lock held.
    fn replace(&self, index: u64, s: &mut Stream, nowait: bool, keep: Option<Keep<'_>>) -> Result<bool, StoreError> {
        let slot = usize::try_from(index).map_err(|_| StoreError::NoMemory)?;
        let obj = self.encode(s, nowait)?;
        if let Some(mut existing) = self.load(index) {
            // An overwrite changes the descriptor in place: no allocation, no XArray store.
            // SAFETY: A live descriptor; under the shard lock nobody else reads or writes it.
            let old = core::mem::replace(unsafe { existing.as_mut() }, obj);
            match keep {
                Some(keep) => keep.keep(old),
                None => self.release(old),
            }
            self.max_used.fetch_max(self.total_bytes(), Ordering::Relaxed);
            return Ok(true);
        }
        let flags = if nowait { GFP_NOWAIT } else { GFP_KERNEL } | __GFP_NOWARN;
        let boxed = match KBox::new(obj, flags) {
            Ok(b) => b,
            Err(_) => {
                self.release(obj);
                return Err(StoreError::NoMemory);
            }
        };
        let gfp = if nowait { ffi::GFP_NOWAIT } else { ffi::gfp_noio() };
        let old = match self.xa.store(slot, boxed, gfp) {
            Ok(old) => old,
            Err(xarray::StoreError::NoMemory(obj) | xarray::StoreError::Occupied(obj)) => {
                self.release(*obj);
                return Err(StoreError::NoMemory);
            }
        };
        self.objects.fetch_add(1, Ordering::Relaxed);
        let existed = old.is_some();
        if let Some(old) = old {
            // Just replaced under our shard lock: nobody else can reach it.
            self.free(old);
        }
        self.max_used.fetch_max(self.total_bytes(), Ordering::Relaxed);
        Ok(existed)
    }

    /// Makes an object of the stream's page: a word, a compressed object, or the page whole.
    fn encode(&self, s: &mut Stream, nowait: bool) -> Result<Obj, StoreError> {
        if let Some(word) = same_filled(&s.page) {
            self.same_pages.fetch_add(1, Ordering::Relaxed);
            return Ok(Obj { value: word, len: 0 });
        }
        let (data, len) = match s.compress() {
            Ok(n) if n < self.huge_class => (s.out.as_ptr(), n),
            Ok(_) => (s.page.as_ptr(), PAGE_SIZE),
            Err(_) => {
                self.compress_failures.fetch_add(1, Ordering::Relaxed);
                (s.page.as_ptr(), PAGE_SIZE)
            }
        };
        let gfp = if nowait { ffi::GFP_NOWAIT } else { ffi::gfp_noio() };
        // SAFETY: `data` is one of the stream's buffers, holding at least `len` bytes.
        let handle = unsafe { self.pool.store(data, len, gfp) }.map_err(|_| StoreError::NoMemory)?;
        let obj = Obj { value: handle.into_raw(), len };
        // The limit counts what the system really gives, this object and its descriptor
        // included (as zram: checked once allocated).
        let after = self.total_bytes() + core::mem::size_of::<Obj>() as u64;
        if self.limit_bytes != 0 && after > self.limit_bytes {
            // Not counted yet: free the object alone.
            // SAFETY: Allocated just above; nobody else knows it.
            unsafe { self.pool.free(handle) };
            return Err(StoreError::Limit);
        }
        if len == PAGE_SIZE {
            self.huge_pages.fetch_add(1, Ordering::Relaxed);
        }
        self.compr_bytes.fetch_add(len as u64, Ordering::Relaxed);
        Ok(obj)
    }

    /// Frees the object of a descriptor that was never stored (or just taken out).
    fn release(&self, obj: Obj) {
        if obj.len == 0 {
            self.same_pages.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        if obj.len == PAGE_SIZE {
            self.huge_pages.fetch_sub(1, Ordering::Relaxed);
        }
        self.compr_bytes.fetch_sub(obj.len as u64, Ordering::Relaxed);
        // SAFETY: The object is ours alone (caller).
        unsafe { self.pool.free(Handle::from_raw(obj.value)) };
    }

    fn free(&self, obj: KBox<Obj>) {
        self.objects.fetch_sub(1, Ordering::Relaxed);
        self.release(*obj);
    }

    /// Removes page `index`; returns whether there was one.
    pub(crate) fn erase(&self, index: u64, nowait: bool) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        // As a write: a bio's allocations must not reclaim through this device (its shrinker
        // takes the cut lock for writing, which the bio holds for reading).
        let _noio = ffi::NoIo::enter();
        let _shard = self.lock(index, nowait)?;
        let keep = self.room_to_keep(index, nowait)?;
        if self.changes.tracking() && self.load(index).is_some() {
            // The backing device still holds the old data: a hole first, or nothing at all.
            let gfp = if nowait { ffi::GFP_NOWAIT } else { ffi::gfp_noio() };
            self.changes.hole(slot, gfp)?;
        }
        let Some(old) = self.xa.erase(slot) else { return Ok(false) };
        // Erased under our shard lock: nobody else can reach it.
        match keep {
            Some(keep) => {
                self.objects.fetch_sub(1, Ordering::Relaxed);
                keep.keep(*old);
            }
            None => self.free(old),
        }
        Ok(true)
    }

    /// Discard, write-zeroes and shrink: removes every page in `first..=last`, yielding the
    /// CPU between batches; visits only present pages. Fails only if a hole cannot be recorded
    /// for the backing device (that page stays), or, with `nowait`, if a page is busy.
    pub(crate) fn erase_range(&self, first: u64, last: u64, nowait: bool) -> Result<(), StoreError> {
        let Ok(first) = usize::try_from(first) else { return Ok(()) };
        let last = usize::try_from(last).unwrap_or(usize::MAX);
        let _noio = ffi::NoIo::enter();
        let mut result = Ok(());
        self.xa.walk(Mark::Present, first, last, |slot| {
            if let Err(e) = self.erase(slot as u64, nowait) {
                result = Err(e);
            }
        });
        result
    }

    /// One pass of eviction over the present pages from `from`, visiting at most `visits`:
    /// a page changed since the last flush is skipped, any other is evicted if `choose` says
    /// so; the pool is compacted afterwards so that the memory really goes back. Returns how
    /// many went and where the next pass starts (`None`: the end was reached). The caller
    /// holds the device's cut lock for writing and no cut is open: nothing changes a page
    /// meanwhile.
    pub(crate) fn evict_pass(&self, from: u64, visits: u64, mut choose: impl FnMut(u64) -> bool) -> (u64, Option<u64>) {
        let Ok(mut at) = usize::try_from(from) else { return (0, None) };
        let mut evicted = 0;
        let mut next = None;
        for _ in 0..visits {
            let Some(slot) = self.xa.find(at, usize::MAX, Mark::Present) else { break };
            // A busy index (a reader in it) is skipped: the shards are never waited for here.
            if let Ok(_shard) = self.lock(slot as u64, true) {
                if !self.changes.is_changed(&self.xa, slot) && !self.frozen.contains(slot) && choose(slot as u64) {
                    if let Some(old) = self.xa.erase(slot) {
                        // Erased under our shard lock: nobody else can reach it.
                        self.free(old);
                        evicted += 1;
                    }
                }
            }
            match slot.checked_add(1) {
                Some(n) => {
                    at = n;
                    next = Some(n as u64);
                }
                None => {
                    next = None;
                    break;
                }
            }
        }
        if evicted > 0 {
            self.pool.compact();
        }
        (evicted, next.filter(|_| self.xa.find(at, usize::MAX, Mark::Present).is_some()))
    }

    pub(crate) fn compr_stats(&self) -> RxdskComprStats {
        let (algorithm, level) = self.algorithm.to_abi();
        RxdskComprStats {
            algorithm,
            level,
            orig_data_size: self.pages() * RXDSK_PAGE_SIZE,
            compr_data_size: self.compr_bytes.load(Ordering::Relaxed),
            mem_used_total: self.total_bytes(),
            mem_used_max: self.max_used.load(Ordering::Relaxed),
            same_pages: self.same_pages.load(Ordering::Relaxed),
            huge_pages: self.huge_pages.load(Ordering::Relaxed),
            compress_failures: self.compress_failures.load(Ordering::Relaxed),
            decompress_failures: self.decompress_failures.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
}

#[pinned_drop]
impl PinnedDrop for ZStore {
    fn drop(self: Pin<&mut Self>) {
        // No I/O reaches the store any more: free every object (the XArray's nodes, the pool
        // and the streams go with the fields). A device destroyed while attached still
        // tracks: stop first, so that no hole is recorded and nothing can fail.
        self.changes.stop(&self.xa);
        self.drop_frozen();
        let _ = self.erase_range(0, u64::MAX, false);
    }
}

impl ZStore {
    pub(super) fn changes(&self) -> &Changes {
        &self.changes
    }

    pub(super) fn xa(&self) -> &XArray<KBox<Obj>> {
        &self.xa
    }

    /// Takes `index` for writing back: clears its change and puts the page (or zeros, for a
    /// hole) into `dst`, a whole page. Returns whether there was a page. The page goes out
    /// decompressed: the image holds plain data.
    pub(crate) fn take_changed(&self, index: u64, mut dst: IoMem<'_>) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        self.changes.take(&self.xa, slot);
        let _shard = self.lock(index, false)?;
        let Some(obj) = self.load(index) else {
            dst.zero();
            return Ok(false);
        };
        let mut stream = self.stream(false)?;
        let s = Option::as_mut(&mut *stream).ok_or(StoreError::NoMemory)?;
        // SAFETY: A live descriptor under our shard lock; `dst` is a whole page of the flush's
        // buffer, none of the stream's.
        unsafe { self.decode(s, obj.as_ref(), dst.as_ptr()) }?;
        Ok(true)
    }

    /// The first index at or after `from` that the open cut still has to write.
    pub(crate) fn cut_next(&self, from: u64) -> Option<u64> {
        self.changes.cut_next(&self.xa, &self.frozen, from)
    }

    /// Takes index `index` of the open cut for writing out: puts its content at the cut into
    /// `dst` (a whole page; zeros for a hole), decompressed, and removes it from the cut.
    /// Returns whether the content was a page.
    pub(crate) fn take_cut(&self, index: u64, mut dst: IoMem<'_>) -> Result<bool, StoreError> {
        let Ok(slot) = usize::try_from(index) else { return Ok(false) };
        let _shard = self.lock(index, false)?;
        let kept = self.frozen.erase(slot);
        let obj = match &kept {
            Some(kept) => Some(NonNull::from(&**kept)),
            None if self.changes.in_cut(&self.xa, slot) => self.load(index),
            None => None,
        };
        self.changes.consume(&self.xa, slot);
        let decoded = match obj {
            Some(obj) => {
                let mut stream = self.stream(false)?;
                let s = Option::as_mut(&mut *stream).ok_or(StoreError::NoMemory)?;
                // SAFETY: A kept object (ours now) or a live descriptor under our index lock;
                // `dst` is a whole page of the flush's buffer, none of the stream's.
                unsafe { self.decode(s, obj.as_ref(), dst.as_ptr()) }.map(|()| true)
            }
            None => {
                dst.zero();
                Ok(false)
            }
        };
        if let Some(kept) = kept {
            self.release(*kept);
        }
        decoded
    }

    /// Lets go of what a closed cut kept.
    pub(crate) fn drop_frozen(&self) {
        self.frozen.walk(Mark::Present, 0, usize::MAX, |slot| {
            let _shard = self.lock(slot as u64, false);
            if let Some(kept) = self.frozen.erase(slot) {
                self.release(*kept);
            }
        });
    }

    /// Makes `index` changed again after a failed write-back.
    pub(crate) fn redirty(&self, index: u64) {
        let present = {
            let _shard = self.lock(index, false);
            self.load(index).is_some()
        };
        self.changes.redirty(&self.xa, index, present);
    }

    /// Stores a whole page read from the image at `index`, as clean. A page already there is
    /// kept (writes reach an index only once it is loaded).
    pub(crate) fn fill(&self, index: u64, src: &IoMem<'_>, _gfp: Gfp) -> Result<(), StoreError> {
        let _noio = ffi::NoIo::enter();
        let _shard = self.lock(index, false)?;
        if self.load(index).is_some() {
            return Ok(());
        }
        let mut stream = self.stream(false)?;
        let s = Option::as_mut(&mut *stream).ok_or(StoreError::NoMemory)?;
        s.page.fill(0);
        src.copy_to_slice(&mut s.page);
        self.replace(index, s, false, None).map(drop)
    }
}
