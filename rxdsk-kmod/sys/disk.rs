// SPDX-License-Identifier: GPL-2.0

//! A bio-based gendisk and the bios it receives: the only place that touches `struct gendisk`,
//! `struct bio` and their functions. Above this, device logic is safe Rust.

use crate::sys::ffi::{self, PAGE_SIZE, SECTOR_SHIFT};
use crate::sys::iomem::IoMem;
use crate::layout::bvec_piece;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{bindings, prelude::*, static_lock_class};

mod c {
    use kernel::bindings;

    // Defined in helpers.c.
    unsafe extern "C" {
        /// The attribute groups of every disk: /sys/block/<disk>/rxdsk/.
        pub(super) static rxdsk_disk_groups: [*const bindings::attribute_group; 2];
        pub(super) fn rxdsk_set_attr_show(
            show: Option<unsafe extern "C" fn(handler: *mut core::ffi::c_void, attr: u32, buf: *mut u8) -> isize>,
        );
        // `struct block_device *` as in ffi.rs (its bindgen layout trips the FFI lint).
        pub(super) fn rxdsk_truncate_bdev_from(bdev: *mut core::ffi::c_void, pos: bindings::loff_t);
        // `struct gendisk *` likewise.
        pub(super) fn rxdsk_disk_devt(disk: *mut core::ffi::c_void, major: *mut u32, minor: *mut u32);
    }
}

/// What a driver does with the bios of its disk.
pub(crate) trait BioHandler: Sync + Sized {
    /// Handles one bio; ends it (exactly once) with [`Bio::end`]. A bio dropped without
    /// `end` is ended with an I/O error and reported.
    fn submit_bio(&self, bio: Bio);
    /// The disk this handler was added to, for its open-claim flag.
    fn disk(&self) -> &GenDisk<Self>;
    /// Writes the value of `attr` (a file of /sys/block/<disk>/rxdsk/) as text, with its
    /// newline.
    fn show(&self, attr: Attr, out: &mut AttrText<'_>) -> core::fmt::Result;
}

/// The files of /sys/block/<disk>/rxdsk/, numbered as helpers.c registers them. Each holds
/// one value (the `*_stat` files a line of them, as zram's).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Size,
    BlockSize,
    MemLimit,
    MemUsed,
    ReadOnly,
    OpenCount,
    Algorithm,
    Level,
    Backing,
    Mode,
    JournalBytes,
    DirtyPages,
    UnloadedPages,
    FlushGeneration,
    IoStat,
    MmStat,
    BdStat,
    CacheStat,
}

impl Attr {
    const ALL: [Attr; 18] = [
        Attr::Size,
        Attr::BlockSize,
        Attr::MemLimit,
        Attr::MemUsed,
        Attr::ReadOnly,
        Attr::OpenCount,
        Attr::Algorithm,
        Attr::Level,
        Attr::Backing,
        Attr::Mode,
        Attr::JournalBytes,
        Attr::DirtyPages,
        Attr::UnloadedPages,
        Attr::FlushGeneration,
        Attr::IoStat,
        Attr::MmStat,
        Attr::BdStat,
        Attr::CacheStat,
    ];
}

/// The page a sysfs `show` writes its text into.
pub(crate) struct AttrText<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for AttrText<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).filter(|&e| e <= self.buf.len()).ok_or(core::fmt::Error)?;
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Queue limits and features of a new disk.
pub(crate) struct DiskConfig {
    pub(crate) logical_block_size: u32,
    pub(crate) capacity_sectors: u64,
    pub(crate) read_only: bool,
}

/// An allocated, possibly added, gendisk that sends its bios to a `T`.
///
/// # Invariants
///
/// - `disk` came from `__blk_alloc_disk` and is put exactly once, in `drop`.
/// - If `added`, the disk was added with `private_data` pointing to a `T` that stays valid
///   until `remove` returns (the caller's promise to [`GenDisk::add`]).
/// - `claimed` is written only with the disk's `open_mutex` held, and while it is set `open`
///   fails with `EBUSY` (zram's claim): a control operation that checked "no opener" under that
///   mutex keeps it true until it lets go.
pub(crate) struct GenDisk<T: BioHandler> {
    disk: NonNull<bindings::gendisk>,
    added: AtomicBool,
    claimed: AtomicBool,
    _handler: PhantomData<T>,
}

// SAFETY: The gendisk may be used from any thread; the functions called on it do their own
// locking, and `added` is atomic.
unsafe impl<T: BioHandler> Send for GenDisk<T> {}
// SAFETY: As above.
unsafe impl<T: BioHandler> Sync for GenDisk<T> {}

impl<T: BioHandler> GenDisk<T> {
    const FOPS: bindings::block_device_operations = bindings::block_device_operations {
        submit_bio: Some(Self::submit_bio_trampoline),
        open: Some(Self::open_trampoline),
        // An open disk pins the module: unloading is refused while any device is open.
        owner: kernel::module::this_module::<crate::LocalModule>().as_ptr(),
        // SAFETY: All-zero is valid for the remaining fields (null pointers, `None`).
        ..unsafe { core::mem::zeroed() }
    };

    /// # Safety
    ///
    /// Called by the block layer with a valid bio of a disk added by [`GenDisk::add`].
    unsafe extern "C" fn submit_bio_trampoline(bio: *mut bindings::bio) {
        // SAFETY: A bio submitted to our disk has a valid `bi_bdev` whose `bd_disk` is our
        // gendisk; its `private_data` is the `T` given to `add`, valid until `remove` returns,
        // which waits for bios in flight (type invariants).
        let handler = unsafe { &*(*(*(*bio).bi_bdev).bd_disk).private_data.cast::<T>() };
        // SAFETY: The bio is valid and now ours until we end it.
        handler.submit_bio(unsafe { Bio::from_raw(bio) });
    }

    /// # Safety
    ///
    /// Called by sysfs with the `private_data` of a disk added by [`GenDisk::add`] whose
    /// attribute files exist (they go before `remove` returns), `attr` one of [`Attr`]'s
    /// numbers, and `buf` a page.
    unsafe extern "C" fn show_trampoline(handler: *mut core::ffi::c_void, attr: u32, buf: *mut u8) -> isize {
        let Some(&attr) = Attr::ALL.get(attr as usize) else { return EINVAL.to_errno() as isize };
        // SAFETY: The handler is valid while its disk's files exist (caller, type invariants).
        let handler = unsafe { &*handler.cast::<T>() };
        // SAFETY: sysfs hands a page that is ours for the call; nobody else uses it.
        let page = unsafe { core::slice::from_raw_parts_mut(buf, PAGE_SIZE) };
        let mut out = AttrText { buf: page, len: 0 };
        match handler.show(attr, &mut out) {
            Ok(()) => out.len as isize,
            Err(_) => EOVERFLOW.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the block layer, with `disk->open_mutex` held, for a disk added by
    /// [`GenDisk::add`].
    unsafe extern "C" fn open_trampoline(disk: *mut bindings::gendisk, _mode: bindings::blk_mode_t) -> kernel::ffi::c_int {
        // SAFETY: An added disk's `private_data` is its `T`, valid until `remove` returns, and
        // `remove` marks the disk dead (no more opens) before that.
        let handler = unsafe { &*(*disk).private_data.cast::<T>() };
        // `claimed` changes only under `open_mutex`, which the caller holds.
        if handler.disk().claimed.load(Ordering::Relaxed) {
            EBUSY.to_errno()
        } else {
            0
        }
    }

    pub(crate) fn new(config: &DiskConfig) -> Result<Self> {
        // SAFETY: All-zero `queue_limits` means "defaults" to the block layer.
        let mut lim: bindings::queue_limits = unsafe { core::mem::zeroed() };
        lim.logical_block_size = config.logical_block_size;
        lim.physical_block_size = PAGE_SIZE as u32;
        lim.io_min = PAGE_SIZE as u32;
        lim.max_hw_discard_sectors = u32::MAX;
        lim.max_discard_segments = 1;
        lim.discard_granularity = PAGE_SIZE as u32;
        lim.max_write_zeroes_sectors = u32::MAX;
        lim.max_hw_wzeroes_unmap_sectors = u32::MAX;
        lim.features = ffi::blk_feat_synchronous() | ffi::blk_feat_nowait();
        // SAFETY: `lim` is valid for the call; the lock class key is static.
        let disk = unsafe { bindings::__blk_alloc_disk(&mut lim, bindings::NUMA_NO_NODE, static_lock_class!().as_ptr()) };
        // `__blk_alloc_disk` returns an ERR_PTR on failure.
        let disk = kernel::error::from_err_ptr(disk)?;
        let disk = NonNull::new(disk).ok_or(ENOMEM)?;
        // SAFETY: The disk is freshly allocated and not yet visible to anyone.
        unsafe {
            let d = disk.as_ptr();
            (*d).major = 0; // dynamic dev_t from the extended range
            (*d).first_minor = 0;
            (*d).minors = 0;
            (*d).fops = &Self::FOPS;
            bindings::set_capacity(d, config.capacity_sectors);
            bindings::set_disk_ro(d, config.read_only);
        }
        Ok(Self { disk, added: AtomicBool::new(false), claimed: AtomicBool::new(false), _handler: PhantomData })
    }

    /// Names the disk and makes it visible; bios start arriving at `handler`.
    ///
    /// # Safety
    ///
    /// `handler` must stay valid (and not move) until [`GenDisk::remove`] returns or `self` is
    /// dropped.
    pub(crate) unsafe fn add(&self, handler: &T, name: &[u8]) -> Result {
        let d = self.disk.as_ptr();
        // SAFETY: The disk is not added yet, so we are its only user.
        unsafe {
            let dst = &mut (*d).disk_name;
            let n = name.len().min(dst.len() - 1);
            dst[..n].copy_from_slice(&name[..n]);
            dst[n] = 0;
            (*d).private_data = ptr::from_ref(handler).cast_mut().cast();
        }
        // SAFETY: Registering the show function of `T`'s disks has no precondition; every disk
        // of this module has a handler of type `T` (one driver).
        unsafe { c::rxdsk_set_attr_show(Some(Self::show_trampoline)) };
        // SAFETY: The disk is fully set up; no parent device; the attribute groups are
        // static, NULL-terminated, and their show functions find `handler` as above.
        kernel::error::to_result(unsafe {
            bindings::device_add_disk(ptr::null_mut(), d, (&raw const c::rxdsk_disk_groups).cast::<*const bindings::attribute_group>().cast_mut())
        })?;
        // INVARIANT: added with `private_data` = `handler`, valid until `remove` (caller).
        self.added.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes the disk from the system: waits for bios in flight, fails later ones and any
    /// new opens. Openers that remain get I/O errors. Idempotent.
    pub(crate) fn remove(&self) {
        if self.added.swap(false, Ordering::AcqRel) {
            // SAFETY: The disk was added and is removed once.
            unsafe { bindings::del_gendisk(self.disk.as_ptr()) };
        }
    }

    /// Changes the size seen by the system and tells user space.
    pub(crate) fn set_capacity(&self, sectors: u64) {
        // SAFETY: The disk is valid (invariant); the function takes the locks it needs.
        unsafe { bindings::set_capacity_and_notify(self.disk.as_ptr(), sectors) };
    }

    /// How many times the block device is open now; a snapshot for reports. Decisions use
    /// [`GenDisk::claim`], which reads it under `open_mutex`.
    pub(crate) fn openers(&self) -> u32 {
        // SAFETY: `part0` of a valid disk is valid; `bd_openers` is an atomic_t read as
        // `atomic_read` (READ_ONCE) does.
        unsafe {
            let part0 = (*self.disk.as_ptr()).part0;
            ptr::read_volatile(ptr::addr_of!((*part0).bd_openers.counter)) as u32
        }
    }

    /// Claims the disk for a control operation that must not meet an opener (a non-forced
    /// destroy or shrink): `EBUSY` if it is open or already claimed; otherwise no open succeeds
    /// until the claim is dropped.
    pub(crate) fn claim(&self) -> Result<Claim<'_, T>> {
        // SAFETY: `open_mutex` of a valid disk is an initialised mutex.
        let mutex = unsafe { ptr::addr_of_mut!((*self.disk.as_ptr()).open_mutex) };
        // SAFETY: As above; locked and unlocked in pairs, in process context.
        unsafe { bindings::mutex_lock(mutex) };
        let busy = self.openers() > 0 || self.claimed.load(Ordering::Relaxed);
        if !busy {
            // INVARIANT: set under `open_mutex`.
            self.claimed.store(true, Ordering::Relaxed);
        }
        // SAFETY: Locked above by this task.
        unsafe { bindings::mutex_unlock(mutex) };
        if busy {
            Err(EBUSY)
        } else {
            Ok(Claim { disk: self })
        }
    }

    /// Drops every cached page of the block device from byte `pos` on (a partial page is
    /// zeroed past `pos`): after a shrink, the cache must not keep bytes past the end that a
    /// later grow would show instead of zeros. Under the mapping's invalidate lock, as the
    /// block layer's own truncations.
    pub(crate) fn invalidate_cache_from(&self, pos: u64) {
        // SAFETY: `part0` of a valid disk is a valid block device with its page-cache mapping;
        // the helper takes the locks it needs.
        unsafe { c::rxdsk_truncate_bdev_from((*self.disk.as_ptr()).part0.cast(), pos as bindings::loff_t) };
    }

    /// The disk's device number: (major, minor).
    pub(crate) fn devt(&self) -> (u32, u32) {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: The disk is valid (invariant); the helper only reads its number.
        unsafe { c::rxdsk_disk_devt(self.disk.as_ptr().cast(), &mut major, &mut minor) };
        (major, minor)
    }
}

/// See [`GenDisk::claim`]. Dropping it lets opens through again.
pub(crate) struct Claim<'a, T: BioHandler> {
    disk: &'a GenDisk<T>,
}

impl<T: BioHandler> Claim<'_, T> {
    /// Keeps the claim until the disk is removed (a destroy: nobody may open it in between).
    pub(crate) fn hold_until_removed(self) {
        core::mem::forget(self);
    }
}

impl<T: BioHandler> Drop for Claim<'_, T> {
    fn drop(&mut self) {
        let d = self.disk.disk.as_ptr();
        // SAFETY: `open_mutex` of a valid disk; locked and unlocked in pairs.
        unsafe { bindings::mutex_lock(ptr::addr_of_mut!((*d).open_mutex)) };
        // INVARIANT: cleared under `open_mutex`.
        self.disk.claimed.store(false, Ordering::Relaxed);
        // SAFETY: Locked above by this task.
        unsafe { bindings::mutex_unlock(ptr::addr_of_mut!((*d).open_mutex)) };
    }
}

impl<T: BioHandler> Drop for GenDisk<T> {
    fn drop(&mut self) {
        self.remove();
        // SAFETY: Allocated by `__blk_alloc_disk`, put once (invariant).
        unsafe { bindings::put_disk(self.disk.as_ptr()) };
    }
}

/// The operation of a bio.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
    Other,
}

/// Completion status of a bio.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    NotSupported,
    NoSpace,
    IoError,
    /// `REQ_NOWAIT` could not be honoured: the submitter retries without it.
    Again,
}

impl Status {
    fn raw(self) -> bindings::blk_status_t {
        match self {
            Status::Ok => ffi::blk_sts_ok(),
            Status::NotSupported => ffi::blk_sts_notsupp(),
            Status::NoSpace => ffi::blk_sts_nospc(),
            Status::IoError => ffi::blk_sts_ioerr(),
            Status::Again => ffi::blk_sts_again(),
        }
    }
}

/// A bio being handled; ended exactly once by [`Bio::end`], which consumes it. One dropped
/// without `end` (a bug) would hang its submitter, so `Drop` ends it with an I/O error and
/// says so in the log.
///
/// # Invariants
///
/// `raw` is a valid bio owned by the driver until it is ended.
#[must_use = "a bio must be ended with Bio::end"]
pub(crate) struct Bio {
    raw: NonNull<bindings::bio>,
}

/// Where a walk of a bio's data stands (see [`Bio::for_each_segment_within`]): a copy of its
/// iterator, and the device position it has reached.
pub(crate) struct Segments {
    iter: bindings::bvec_iter,
    pos: u64,
}

/// Moves `iter` on by `n` bytes of its current bvec (of `bv_len` bytes), as
/// bvec_iter_advance_single() does; `n` is at most what is left of the bvec and of the bio.
fn advance(iter: &mut bindings::bvec_iter, bv_len: u32, n: u32) {
    let done = iter.bi_offset + n;
    if done >= bv_len {
        iter.bi_idx += 1;
        iter.bi_offset = 0;
    } else {
        iter.bi_offset = done;
    }
    iter.bi_size -= n;
}

// SAFETY: Shared, a `Bio` is only read: its operation, position, size and data pages (each
// walk copies the iterator); the pages' bytes are reached only through `IoMem`. So the parts of
// one bio may be handled on several CPUs at once (fanout.rs). Ending it takes the `Bio` by value.
unsafe impl Sync for Bio {}

impl Bio {
    /// # Safety
    ///
    /// `raw` is a valid bio handed to the driver's `submit_bio`.
    pub(crate) unsafe fn from_raw(raw: *mut bindings::bio) -> Self {
        // SAFETY: The block layer never passes a null bio.
        Self { raw: unsafe { NonNull::new_unchecked(raw) } }
    }

    fn opf(&self) -> bindings::blk_opf_t {
        // SAFETY: Valid bio (invariant).
        unsafe { (*self.raw.as_ptr()).bi_opf }
    }

    pub(crate) fn op(&self) -> Op {
        match self.opf() & ffi::req_op_mask() {
            bindings::req_op_REQ_OP_READ => Op::Read,
            bindings::req_op_REQ_OP_WRITE => Op::Write,
            bindings::req_op_REQ_OP_FLUSH => Op::Flush,
            bindings::req_op_REQ_OP_DISCARD => Op::Discard,
            bindings::req_op_REQ_OP_WRITE_ZEROES => Op::WriteZeroes,
            _ => Op::Other,
        }
    }

    pub(crate) fn nowait(&self) -> bool {
        self.opf() & ffi::REQ_NOWAIT != 0
    }

    pub(crate) fn flush_or_fua(&self) -> bool {
        self.opf() & (ffi::REQ_PREFLUSH | ffi::REQ_FUA) != 0
    }

    /// First byte on the device.
    pub(crate) fn position(&self) -> u64 {
        // SAFETY: Valid bio (invariant).
        unsafe { (*self.raw.as_ptr()).bi_iter.bi_sector << SECTOR_SHIFT }
    }

    /// Bytes left to transfer (or covered, for discard and write-zeroes).
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: Valid bio (invariant).
        u64::from(unsafe { (*self.raw.as_ptr()).bi_iter.bi_size })
    }

    /// A walk of the bio's data from its start (see [`Bio::for_each_segment_within`]).
    pub(crate) fn segments(&self) -> Segments {
        // SAFETY: Valid bio (invariant); the walk copies its iterator, as bio_for_each_segment
        // does, so the bio itself is unchanged.
        let iter = unsafe { (*self.raw.as_ptr()).bi_iter };
        Segments { pos: iter.bi_sector << SECTOR_SHIFT, iter }
    }

    /// Calls `f(device_position, segment)` for each piece of the bio's data at device
    /// positions `from..to`, in order, going on from where `walk` (of this bio) stopped: the
    /// pieces before `from` are skipped unmapped (whole bvecs at a time), the ones across an
    /// end cut there; a piece never crosses a page boundary of the bio's memory. `walk` is
    /// left at `to` (or the end), so a walk serves windows taken in increasing order (the
    /// chunks a fan-out participant takes) without going over the bio again. Stops at the
    /// first error. A malformed iterator (a zero-length piece) ends the walk with `malformed`.
    pub(crate) fn for_each_segment_within<E>(
        &self,
        walk: &mut Segments,
        from: u64,
        to: u64,
        malformed: E,
        mut f: impl FnMut(u64, IoMem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        // SAFETY: Valid bio (invariant).
        let vecs = unsafe { (*self.raw.as_ptr()).bi_io_vec };
        let Segments { iter, pos } = walk;
        while iter.bi_size > 0 && *pos < to {
            // SAFETY: While `bi_size` is non-zero, `bi_idx` indexes a valid bvec of the bio.
            let bv = unsafe { &*vecs.add(iter.bi_idx as usize) };
            let Some(rest_of_bvec) = bv.bv_len.checked_sub(iter.bi_offset).map(|n| n.min(iter.bi_size)) else {
                return Err(malformed);
            };
            if rest_of_bvec > 0 && *pos + u64::from(rest_of_bvec) <= from {
                advance(iter, bv.bv_len, rest_of_bvec);
                *pos += u64::from(rest_of_bvec);
                continue;
            }
            let Some(seg) = bvec_piece(bv.bv_len, bv.bv_offset, iter.bi_offset, iter.bi_size) else {
                return Err(malformed);
            };
            let seg_end = *pos + seg.len as u64;
            // The part of the piece inside the window, and what comes before it.
            let skip = from.saturating_sub(*pos).min(seg.len as u64) as usize;
            let take = (seg_end.min(to).saturating_sub(*pos) as usize).saturating_sub(skip);
            if take > 0 {
                // SAFETY: `bv_page + page_index` is the page holding `bv_offset + bi_offset` of
                // this multi-page bvec (struct pages of one bvec are contiguous); we map it for
                // the call.
                let page = unsafe { bv.bv_page.add(seg.page_index) };
                // SAFETY: The page is valid while the bio is ours; the mapping is undone below.
                let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
                // SAFETY: `kmap_local_page` never returns null; `offset + len <= PAGE_SIZE`
                // (bvec_piece) and `skip + take <= len`, so the window lies inside the mapping,
                // which lasts until the unmap below, after `f` returned; the window is only
                // passed on as an `IoMem`, which creates no reference to memory its submitter
                // may still change.
                let buf = unsafe { IoMem::new(NonNull::new_unchecked(addr.add(seg.offset + skip)), take) };
                let result = f(*pos + skip as u64, buf);
                // SAFETY: Mapped above.
                unsafe { bindings::kunmap_local(addr.cast()) };
                result?;
            }
            let done = (skip + take) as u32;
            advance(iter, bv.bv_len, done);
            *pos += u64::from(done);
        }
        Ok(())
    }

    /// Gives up ownership without ending the bio: whoever takes the pointer must end it (or
    /// turn it back into a `Bio` with [`Bio::from_raw`]).
    pub(crate) fn into_raw(self) -> NonNull<bindings::bio> {
        ManuallyDrop::new(self).raw
    }

    /// Completes the bio.
    pub(crate) fn end(self, status: Status) {
        let me = ManuallyDrop::new(self);
        // SAFETY: Valid bio (invariant), ended once: `self` is consumed and its `Drop` skipped.
        unsafe { Self::end_raw(me.raw, status) };
    }

    /// # Safety
    ///
    /// `raw` is a valid bio owned by the driver, ended by no one else before or after.
    unsafe fn end_raw(raw: NonNull<bindings::bio>, status: Status) {
        let raw = raw.as_ptr();
        // SAFETY: Valid and ours to end (caller).
        unsafe {
            (*raw).bi_status = status.raw();
            bindings::bio_endio(raw);
        }
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        // Reached only when a handler forgot `end`: fail the bio rather than hang its
        // submitter, and make the bug visible.
        pr_err!("a bio was dropped without being ended; failing it\n");
        // SAFETY: Valid bio not ended yet (`end` skips this `Drop`), ended once here.
        unsafe { Self::end_raw(self.raw, Status::IoError) };
    }
}
