// SPDX-License-Identifier: GPL-2.0

//! Compression: the kernel's LZO, LZ4 and zstd libraries (declared in `codecs.rs`), and the
//! compression streams (a workspace and buffers each, one per CPU that is up, following CPU
//! hotplug, each behind a mutex, as zram's `zcomp`).

use crate::abi::{RXDSK_COMPRESS_LZ4, RXDSK_COMPRESS_LZO, RXDSK_COMPRESS_LZO_RLE, RXDSK_COMPRESS_ZSTD};
use crate::sys::codecs::*;
use crate::sys::ffi::{self, PAGE_SIZE};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use kernel::ffi::{c_int, c_void};
use kernel::{bindings, new_mutex, prelude::*, sync::Mutex, types::Opaque};

/// `LZO1X_1_MEM_COMPRESS`: 8192 `unsigned short`s.
const LZO_WORKSPACE: usize = 8192 * 2;
/// `LZ4_MEM_COMPRESS` (`LZ4_STREAMSIZE`): `(1 << 14) + 32` bytes.
const LZ4_WORKSPACE: usize = (1 << 14) + 32;
/// Output buffer: LZO's worst case for a page (`lzo1x_worst_compress`) exceeds a page.
const OUT_BYTES: usize = 2 * PAGE_SIZE;

/// A compression algorithm and its level, validated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Lzo,
    LzoRle,
    /// Acceleration (1 and up).
    Lz4(i32),
    /// zstd level, within the library's range.
    Zstd(i32),
}

impl Algorithm {
    /// From CREATE's `compress` and `compress_level` (0: the default level); `None` without
    /// compression, `EINVAL` for an unknown algorithm or a level out of range.
    pub(crate) fn from_abi(compress: u32, level: i32) -> Result<Option<Self>> {
        Ok(Some(match compress {
            0 if level == 0 => return Ok(None),
            RXDSK_COMPRESS_LZO if level == 0 => Self::Lzo,
            RXDSK_COMPRESS_LZO_RLE if level == 0 => Self::LzoRle,
            RXDSK_COMPRESS_LZ4 if (0..=65537).contains(&level) => Self::Lz4(level.max(1)),
            RXDSK_COMPRESS_ZSTD => {
                // SAFETY: These only read constants of the library.
                let (min, max, default) = unsafe { (zstd_min_clevel(), zstd_max_clevel(), zstd_default_clevel()) };
                match level {
                    0 => Self::Zstd(default),
                    l if (min..=max).contains(&l) => Self::Zstd(l),
                    _ => return Err(EINVAL),
                }
            }
            _ => return Err(EINVAL),
        }))
    }

    /// `RXDSK_COMPRESS_*` and the level in use.
    pub(crate) fn to_abi(self) -> (u32, i32) {
        match self {
            Self::Lzo => (RXDSK_COMPRESS_LZO, 0),
            Self::LzoRle => (RXDSK_COMPRESS_LZO_RLE, 0),
            Self::Lz4(a) => (RXDSK_COMPRESS_LZ4, a),
            Self::Zstd(l) => (RXDSK_COMPRESS_ZSTD, l),
        }
    }
}

/// Every algorithm this module can use, as GET_FEATURES reports them (linked in: always all).
pub(crate) const ALL_ALGORITHMS: u64 =
    1 << RXDSK_COMPRESS_LZO | 1 << RXDSK_COMPRESS_LZO_RLE | 1 << RXDSK_COMPRESS_LZ4 | 1 << RXDSK_COMPRESS_ZSTD;

/// A compression or decompression the library refused (corrupt input, output too large).
pub(crate) struct CodecError;

/// One compression stream: the algorithm's workspaces and two buffers.
///
/// # Invariants
///
/// `cctx` and `dctx` are null, or zstd contexts initialised inside `work` and `dwork` (which
/// are never resized, so they stay valid as long as `self`).
pub(crate) struct Stream {
    algorithm: Algorithm,
    /// Compression workspace (u64 for the 8-byte alignment the libraries expect).
    work: KVVec<u64>,
    /// zstd's decompression workspace.
    dwork: KVVec<u64>,
    cctx: *mut c_void,
    dctx: *mut c_void,
    zstd: Option<ZstdParameters>,
    /// Compressed output, and the place an object straddling two pages is copied to.
    pub(crate) out: KVVec<u8>,
    /// A page: the data being compressed, or a page decompressed for a partial access.
    pub(crate) page: KVVec<u8>,
}

// SAFETY: The raw pointers point into the stream's own buffers; nothing ties them to a thread.
unsafe impl Send for Stream {}

fn buffer<T: Copy + Default>(bytes: usize) -> Result<KVVec<T>> {
    Ok(KVVec::from_elem(T::default(), bytes.div_ceil(core::mem::size_of::<T>()), GFP_KERNEL)?)
}

impl Stream {
    fn new(algorithm: Algorithm) -> Result<Self> {
        let mut s = Stream {
            algorithm,
            work: KVVec::new(),
            dwork: KVVec::new(),
            cctx: core::ptr::null_mut(),
            dctx: core::ptr::null_mut(),
            zstd: None,
            out: buffer(OUT_BYTES)?,
            page: buffer(PAGE_SIZE)?,
        };
        match algorithm {
            Algorithm::Lzo | Algorithm::LzoRle => s.work = buffer(LZO_WORKSPACE)?,
            Algorithm::Lz4(_) => s.work = buffer(LZ4_WORKSPACE)?,
            Algorithm::Zstd(level) => {
                // SAFETY: Pure functions of their arguments.
                let params = unsafe { zstd_get_params(level, PAGE_SIZE as u64) };
                // SAFETY: `params.c` is a valid parameter set returned just above.
                let cbytes = unsafe { zstd_cctx_workspace_bound(&params.c) };
                // SAFETY: As above.
                let dbytes = unsafe { zstd_dctx_workspace_bound() };
                s.work = buffer(cbytes)?;
                s.dwork = buffer(dbytes)?;
                // SAFETY: The workspaces are 8-byte aligned, at least as large as the bounds,
                // and owned by the stream (INVARIANT: never resized).
                unsafe {
                    s.cctx = zstd_init_cctx(s.work.as_mut_ptr().cast(), cbytes);
                    s.dctx = zstd_init_dctx(s.dwork.as_mut_ptr().cast(), dbytes);
                }
                if s.cctx.is_null() || s.dctx.is_null() {
                    return Err(ENOMEM);
                }
                s.zstd = Some(params);
            }
        }
        Ok(s)
    }

    /// Compresses the page in `self.page` into `self.out`; returns the compressed length.
    pub(crate) fn compress(&mut self) -> Result<usize, CodecError> {
        let src = self.page.as_ptr();
        let dst = self.out.as_mut_ptr();
        let work = self.work.as_mut_ptr().cast::<c_void>();
        let mut len = OUT_BYTES;
        // SAFETY: `src` is a page and `dst` holds `OUT_BYTES`, more than LZO's and LZ4's worst
        // case for a page and zstd's stated capacity; `work` is the algorithm's workspace
        // (`cctx` initialised in it, invariant).
        let ok = unsafe {
            match self.algorithm {
                Algorithm::Lzo => lzo1x_1_compress(src, PAGE_SIZE, dst, &mut len, work) == 0,
                Algorithm::LzoRle => lzorle1x_1_compress(src, PAGE_SIZE, dst, &mut len, work) == 0,
                Algorithm::Lz4(acceleration) => {
                    let n = LZ4_compress_fast(
                        src.cast(),
                        dst.cast(),
                        PAGE_SIZE as c_int,
                        OUT_BYTES as c_int,
                        acceleration,
                        work,
                    );
                    len = n as usize;
                    n > 0
                }
                Algorithm::Zstd(_) => match &self.zstd {
                    Some(params) => {
                        len = zstd_compress_cctx(self.cctx, dst.cast(), OUT_BYTES, src.cast(), PAGE_SIZE, params);
                        zstd_is_error(len) == 0
                    }
                    None => false,
                },
            }
        };
        if ok && len <= OUT_BYTES {
            Ok(len)
        } else {
            Err(CodecError)
        }
    }

    /// Decompresses `len` bytes at `src` into the page at `dst`, which must come out whole.
    ///
    /// # Safety
    ///
    /// `src` is valid for reading `len` bytes and `dst` for writing a page during the call;
    /// neither overlaps the stream's workspaces.
    pub(crate) unsafe fn decompress(&mut self, src: *const u8, len: usize, dst: *mut u8) -> Result<(), CodecError> {
        // SAFETY: Buffers as the caller guarantees; the `_safe` decoders never write past the
        // capacity given, whatever the input; `dctx` lives in `dwork` (invariant).
        let produced = unsafe {
            match self.algorithm {
                Algorithm::Lzo | Algorithm::LzoRle => {
                    let mut out = PAGE_SIZE;
                    if lzo1x_decompress_safe(src, len, dst, &mut out) != 0 {
                        return Err(CodecError);
                    }
                    out
                }
                Algorithm::Lz4(_) => {
                    let n = LZ4_decompress_safe(src.cast(), dst.cast(), len as c_int, PAGE_SIZE as c_int);
                    if n < 0 {
                        return Err(CodecError);
                    }
                    n as usize
                }
                Algorithm::Zstd(_) => {
                    let n = zstd_decompress_dctx(self.dctx, dst.cast(), PAGE_SIZE, src.cast(), len);
                    if zstd_is_error(n) != 0 {
                        return Err(CodecError);
                    }
                    n
                }
            }
        };
        if produced == PAGE_SIZE {
            Ok(())
        } else {
            Err(CodecError)
        }
    }
}

mod hotplug {
    use kernel::bindings;
    use kernel::ffi::c_int;

    // Defined in helpers.c (the cpuhp helpers are inline).
    unsafe extern "C" {
        pub(super) fn rxdsk_cpuhp_setup(
            prepare: Option<unsafe extern "C" fn(cpu: kernel::ffi::c_uint, node: *mut bindings::hlist_node) -> c_int>,
            dead: Option<unsafe extern "C" fn(cpu: kernel::ffi::c_uint, node: *mut bindings::hlist_node) -> c_int>,
        ) -> c_int;
        pub(super) fn rxdsk_cpuhp_remove(state: c_int);
        pub(super) fn rxdsk_cpuhp_add_instance(state: c_int, node: *mut bindings::hlist_node) -> c_int;
        pub(super) fn rxdsk_cpuhp_remove_instance(state: c_int, node: *mut bindings::hlist_node);
    }
}

/// The module's CPU-hotplug state for streams (dynamic); negative while not set up.
static HOTPLUG_STATE: AtomicI32 = AtomicI32::new(-1);

/// The module's registration of the streams' hotplug callbacks, from module init to exit.
pub(crate) struct Hotplug(c_int);

impl Hotplug {
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: The callbacks match the multi-instance signature and only use instances
        // registered by `Streams` (which remove themselves before they go); called once, at
        // module init, before any device exists.
        let state = unsafe { hotplug::rxdsk_cpuhp_setup(Some(stream_prepare), Some(stream_dead)) };
        if state < 0 {
            return Err(Error::from_errno(state));
        }
        HOTPLUG_STATE.store(state, Ordering::Release);
        Ok(Self(state))
    }
}

impl Drop for Hotplug {
    fn drop(&mut self) {
        HOTPLUG_STATE.store(-1, Ordering::Release);
        // SAFETY: Set up in `register`; every device (and instance) is gone at module exit.
        unsafe { hotplug::rxdsk_cpuhp_remove(self.0) };
    }
}

/// The streams of one device, as zram's `zcomp`: one per CPU that is up, made before the CPU
/// comes up and freed once it is dead (CPU hotplug, prepare stage). A task uses the stream of
/// the CPU it runs on; the mutex covers a migration or preemption in between.
///
/// # Invariants
///
/// `slots` has an entry for every possible CPU id. While `registered`, `node` is an instance
/// of [`HOTPLUG_STATE`] and the slot of every CPU that is up (or coming up) holds a stream.
#[pin_data(PinnedDrop)]
pub(crate) struct Streams {
    #[pin]
    node: Opaque<bindings::hlist_node>,
    registered: AtomicBool,
    algorithm: Algorithm,
    slots: KVec<Pin<KBox<Mutex<Option<Stream>>>>>,
}

// SAFETY: The hotplug node is only touched by the hotplug core under its own lock; the slots
// are mutexes.
unsafe impl Send for Streams {}
// SAFETY: As above.
unsafe impl Sync for Streams {}

/// A locked stream slot; holds a stream (checked by [`Streams::get`]).
pub(crate) type StreamGuard<'a> = kernel::sync::lock::Guard<'a, Option<Stream>, kernel::sync::lock::mutex::MutexBackend>;

impl Streams {
    /// Empty slots for every possible CPU; the streams of the CPUs that are up are made when
    /// the instance is registered (at the end of the initialisation).
    pub(crate) fn new(algorithm: Algorithm) -> Result<impl PinInit<Self, Error>> {
        let n = ffi::nr_cpu_ids().max(1);
        let mut slots = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(KBox::pin_init(new_mutex!(None), GFP_KERNEL)?, GFP_KERNEL)?;
        }
        Ok(try_pin_init!(Self {
            node <- Opaque::try_ffi_init(|_: *mut bindings::hlist_node| Ok::<(), Error>(())),
            registered: AtomicBool::new(false),
            algorithm,
            slots,
        })
        .pin_chain(|this| {
            let state = HOTPLUG_STATE.load(Ordering::Acquire);
            if state < 0 {
                return Err(EINVAL);
            }
            // SAFETY: `this` is pinned, so `node` stays put until `PinnedDrop` removes it; the
            // callbacks find `this` from it. On failure the core has undone the CPUs it did.
            let ret = unsafe { hotplug::rxdsk_cpuhp_add_instance(state, this.node.get()) };
            if ret < 0 {
                return Err(Error::from_errno(ret));
            }
            // INVARIANT: registered; the core made the stream of every CPU that is up.
            this.registered.store(true, Ordering::Release);
            Ok(())
        }))
    }

    /// The stream of the CPU we run on, waiting for it (`None` without waiting: `nowait`).
    pub(crate) fn get(&self, nowait: bool) -> Option<StreamGuard<'_>> {
        loop {
            let slot = self.slots.get(ffi::cpu_hint()).or_else(|| self.slots.first())?;
            let guard = if nowait { slot.try_lock()? } else { slot.lock() };
            if guard.is_some() {
                return Some(guard);
            }
            // The CPU we were on went down, and its stream with it, before we got the lock:
            // take the one of the CPU we run on now.
            drop(guard);
            if nowait {
                return None;
            }
            ffi::cond_resched();
        }
    }

    /// From the hotplug node to its `Streams`.
    ///
    /// # Safety
    ///
    /// `node` is the `node` of a registered `Streams`.
    unsafe fn from_node<'a>(node: *mut bindings::hlist_node) -> &'a Streams {
        // SAFETY: `Opaque` is `repr(transparent)`; `node` is inside a live `Streams` (caller).
        unsafe { &*kernel::container_of!(node.cast::<Opaque<bindings::hlist_node>>(), Streams, node) }
    }
}

#[pinned_drop]
impl PinnedDrop for Streams {
    fn drop(self: Pin<&mut Self>) {
        if self.registered.load(Ordering::Acquire) {
            // SAFETY: Registered in `new` with this state (which outlives every device); the
            // core frees the streams of the CPUs that are up (teardown) before it returns.
            unsafe { hotplug::rxdsk_cpuhp_remove_instance(HOTPLUG_STATE.load(Ordering::Acquire), self.node.get()) };
        }
    }
}

/// Hotplug prepare: makes the stream of `cpu` before it comes up (and for every CPU that is up
/// when a device registers). May sleep.
///
/// # Safety
///
/// Called by the hotplug core with the `node` of a registered [`Streams`].
unsafe extern "C" fn stream_prepare(cpu: kernel::ffi::c_uint, node: *mut bindings::hlist_node) -> c_int {
    // SAFETY: The core passes a registered instance (caller).
    let streams = unsafe { Streams::from_node(node) };
    let Some(slot) = streams.slots.get(cpu as usize) else { return EINVAL.to_errno() };
    if slot.lock().is_some() {
        return 0;
    }
    // Made without the slot's lock: writers hold it (under the device's cut lock) while they
    // compress, and this allocation may reclaim, which may wait for the cut lock (the
    // shrinker's eviction).
    let stream = match Stream::new(streams.algorithm) {
        Ok(stream) => stream,
        Err(e) => {
            pr_err!("rxdsk: cannot allocate a compression stream for CPU {}\n", cpu);
            return e.to_errno();
        }
    };
    let spare = {
        let mut guard = slot.lock();
        if guard.is_none() {
            *guard = Some(stream);
            None
        } else {
            Some(stream)
        }
    };
    // One made meanwhile by another caller: ours goes, outside the lock.
    drop(spare);
    0
}

/// Hotplug dead: frees the stream of `cpu`, which is down (or the device goes). A task that
/// picked it before sees an empty slot and takes another.
///
/// # Safety
///
/// As [`stream_prepare`].
unsafe extern "C" fn stream_dead(cpu: kernel::ffi::c_uint, node: *mut bindings::hlist_node) -> c_int {
    // SAFETY: The core passes a registered instance (caller).
    let streams = unsafe { Streams::from_node(node) };
    if let Some(slot) = streams.slots.get(cpu as usize) {
        *slot.lock() = None;
    }
    0
}
