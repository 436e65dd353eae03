// SPDX-License-Identifier: GPL-2.0

//! rxdsk_bench: an in-kernel load generator for block devices, interleaved across targets.
//!
//! Loaded with up to five target devices and a job shape, it opens every target and runs
//! `bursts` rounds; in each round every target in turn (the order rotates from round to round)
//! gets one burst of `ios` I/Os from each of `threads` work items (each I/O waits for its
//! completion: queue depth 1 per thread). Bursts of different targets are milliseconds apart,
//! so drift of the machine (frequency, steal time, a noisy neighbour) hits all targets alike,
//! and the host can pair them: the ratio of two drivers is the median of per-round ratios.
//! Measuring inside the kernel takes the system-call cost out, so drivers can be compared at
//! native speed (User-Mode Linux) where fio would mostly measure the syscall path.
//!
//! With `memcpy=1`, one more slot after the devices is the memory ceiling: every I/O of a
//! burst copies the same bytes between the submitter's buffer and a kernel buffer as big as
//! the span (vmalloc), page by page as a RAM disk copies a bio, with no block layer around it.
//!
//! With `codec=N`, one more slot, last, is the compressor's ceiling: every page of an I/O is
//! compressed from the submitter's buffer (a write) or decompressed into it (a read, from the
//! buffer's own pages compressed once at load), with the library a compressed RAM disk uses,
//! and nothing else: no block layer, no allocation, no copy.
//!
//! Result lines, per target slot:
//! `rxdsk_bench: slot=0 dev=M:m op=randread read_pct=100 bs=4096 threads=1 bursts=B ios=N
//! errors=E ns=T iops=I mibps=B ns_per_io=P` and `rxdsk_bench: slot=0 burst_ns=t0,t1,...`.

use core::ptr;
use core::num::{NonZeroU32, NonZeroU64};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::{bindings, prelude::*, sync::Arc, sync::Completion, workqueue};

module! {
    type: RxdskBench,
    name: "rxdsk_bench",
    authors: ["The rxdsk developers"],
    description: "In-kernel block device load generator for rxdsk benchmarks",
    license: "GPL",
    params: {
        dev0: u32 { default: 0, description: "Target 0: (major << 20) | minor", },
        dev1: u32 { default: 0, description: "Target 1 (0: none)", },
        dev2: u32 { default: 0, description: "Target 2 (0: none)", },
        dev3: u32 { default: 0, description: "Target 3 (0: none)", },
        dev4: u32 { default: 0, description: "Target 4 (0: none)", },
        dev5: u32 { default: 0, description: "Target 5 (0: none)", },
        read_pct: u32 { default: 100, description: "Percentage of I/Os that read (0: all writes)", },
        random: bool { default: true, description: "Random offsets instead of sequential", },
        block_size: u32 { default: 4096, description: "Bytes per I/O: a power of two, 512..1048576", },
        span_mib: u32 { default: 256, description: "Size of the region of each device used", },
        bursts: u32 { default: 15, description: "Rounds over all targets (1..64)", },
        ios: u32 { default: 10000, description: "I/Os per thread per burst", },
        threads: u32 { default: 1, description: "Concurrent submitters (work items)", },
        compress_pct: u32 { default: 0, description: "Percentage of every 512 bytes written that is zeros (fio's buffer_compress_percentage); 0: all random", },
        memcpy: bool { default: false, description: "One more slot, after the devices: the same I/Os as copies to and from kernel memory", },
        codec: u32 { default: 0, description: "One more slot, last: the same I/Os as compressions (writes) and decompressions (reads) of their pages, no block layer; 1 lz4, 2 lzo-rle, 3 zstd (default levels)", },
    },
}

const BLK_OPEN_READ: bindings::blk_mode_t = 1 << 0;
const BLK_OPEN_WRITE: bindings::blk_mode_t = 1 << 1;
const GFP_COMP: bindings::gfp_t = 1 << bindings::___GFP_COMP_BIT;
const MINORBITS: u32 = 20;
const PAGE_SHIFT: u32 = kernel::page::PAGE_SHIFT as u32;

struct RxdskBench;

/// An open block device, closed on drop.
///
/// # Invariants
///
/// `file` came from `bdev_file_open_by_dev` and is put once, in `drop`.
struct BdevFile {
    file: *mut bindings::file,
}

// SAFETY: An open bdev file may be used and put from any thread.
unsafe impl Send for BdevFile {}
// SAFETY: Only `bdev()` is called through `&self`, which reads an immutable pointer.
unsafe impl Sync for BdevFile {}

impl BdevFile {
    fn open(dev: u32, write: bool) -> Result<Self> {
        let mode = BLK_OPEN_READ | if write { BLK_OPEN_WRITE } else { 0 };
        // SAFETY: No holder and no holder ops: a plain, non-exclusive open.
        let file = unsafe { bindings::bdev_file_open_by_dev(dev, mode, ptr::null_mut(), ptr::null()) };
        Ok(Self { file: kernel::error::from_err_ptr(file)? })
    }

    fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: `file` is an open bdev file (invariant).
        unsafe { bindings::file_bdev(self.file) }
    }
}

impl Drop for BdevFile {
    fn drop(&mut self) {
        // SAFETY: Opened by `open`, put once (invariant).
        unsafe { bindings::fput(self.file) };
    }
}

/// A buffer of physically contiguous pages, freed on drop.
///
/// # Invariants
///
/// `page` is a compound page of `order` from `alloc_pages`.
struct Buffer {
    page: *mut bindings::page,
    order: u32,
}

impl Buffer {
    fn new(bytes: u32, seed: u64, compress_pct: u32) -> Result<Self> {
        let order = bytes.next_power_of_two().trailing_zeros().saturating_sub(PAGE_SHIFT);
        // SAFETY: Allocating pages has no preconditions.
        let page = unsafe { bindings::alloc_pages(bindings::GFP_KERNEL | GFP_COMP, order) };
        if page.is_null() {
            return Err(ENOMEM);
        }
        let buffer = Self { page, order };
        // Random contents: a RAM disk that skips zero pages must not get an easy write. With
        // `compress_pct`, the end of every 512 bytes is zeros instead, as fio makes
        // compressible buffers.
        let mut rng = Rng(seed | 1);
        let random_words = (64 * (100 - compress_pct.min(100)) / 100).max(1) as usize;
        for i in 0..(1usize << order) {
            // SAFETY: Page `i` of the compound page is ours; mapped and unmapped here.
            unsafe {
                let addr = bindings::kmap_local_page(page.add(i)).cast::<u64>();
                for w in 0..(kernel::page::PAGE_SIZE / 8) {
                    let value = if w % 64 < random_words { rng.next() } else { 0 };
                    addr.add(w).write(value);
                }
                bindings::kunmap_local(addr.cast());
            }
        }
        Ok(buffer)
    }
}

// SAFETY: The pages are owned by the buffer and freed once; each submitter uses its own buffer.
unsafe impl Send for Buffer {}
// SAFETY: As above: shared references only hand the page to the I/O of one submitter at a time.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: Allocated with this order (invariant).
        unsafe { bindings::__free_pages(self.page, self.order) };
    }
}

/// The memcpy slot's memory: `span` bytes of vmalloc, one region of `span / threads` bytes
/// per submitter, so that no two submitters ever write the same bytes.
///
/// # Invariants
///
/// `base` is `_owner.as_mut_ptr()`, valid for `_owner.len()` bytes while `_owner` lives (its
/// heap block does not move with the struct); only `copy` accesses it.
struct Memory {
    /// Owns the bytes `base` points into, and frees them on drop; never accessed through.
    _owner: VVec<u8>,
    base: *mut u8,
    region: usize,
}

// SAFETY: The buffer is plain memory; `copy` keeps each submitter within its own region.
unsafe impl Send for Memory {}
// SAFETY: As above: concurrent `copy` calls of different submitters touch disjoint bytes.
unsafe impl Sync for Memory {}

impl Memory {
    fn new(span: usize, threads: NonZeroU32) -> Result<Self> {
        // Zeroed, so every page is there before the first burst (a RAM disk's are, too).
        let mut owner = VVec::from_elem(0u8, span, GFP_KERNEL)?;
        let base = owner.as_mut_ptr();
        let region = span / threads.get() as usize;
        Ok(Self { _owner: owner, base, region })
    }

    /// One I/O of submitter `thread` on block `block` (of `len` bytes): `len` bytes from
    /// `buffer` into the memory (`write`) or back, one page of the buffer at a time.
    fn copy(&self, thread: u32, block: u64, buffer: &Buffer, len: u32, write: bool) {
        let len = len as usize;
        // Whole I/Os in this submitter's region.
        let Some(slots) = self.region.checked_div(len).filter(|&n| n > 0) else {
            return;
        };
        let start = thread as usize * self.region + (block % slots as u64) as usize * len;
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(kernel::page::PAGE_SIZE);
            let page = done / kernel::page::PAGE_SIZE;
            // SAFETY: `start + len <= thread * region + slots * len <= (thread + 1) * region`,
            // and `threads * region <= memory.len()`, so the bytes are in this submitter's
            // region, which no other submitter touches;
            // `base` is valid for the memory's length (invariant). Page `page` is within the
            // buffer's compound page (its order covers `len`, which the caller's buffer was
            // made for) and is mapped only for this copy.
            unsafe {
                let memory = self.base.add(start + done);
                let mapped = bindings::kmap_local_page(buffer.page.add(page)).cast::<u8>();
                if write {
                    ptr::copy_nonoverlapping(mapped, memory, chunk);
                } else {
                    ptr::copy_nonoverlapping(memory, mapped, chunk);
                }
                bindings::kunmap_local(mapped.cast());
            }
            done += chunk;
        }
    }
}

// The kernel's compression libraries, declared once for the module and this bench (which
// uses only some of them).
#[allow(dead_code)]
#[path = "../rxdsk-kmod/sys/codecs.rs"]
mod lib_codecs;

/// The codec slot's library.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CodecKind {
    Lz4,
    LzoRle,
    Zstd,
}

impl CodecKind {
    fn from_param(n: u32) -> Result<Option<Self>> {
        Ok(match n {
            0 => None,
            1 => Some(Self::Lz4),
            2 => Some(Self::LzoRle),
            3 => Some(Self::Zstd),
            _ => return Err(EINVAL),
        })
    }
}

/// Twice a page: more than any of the three libraries' worst case for a page.
const CODEC_OUT: usize = 2 * kernel::page::PAGE_SIZE;

/// One submitter's compressor: workspaces and an output buffer, made per burst.
///
/// # Invariants
///
/// `cctx` and `dctx` are null, or (zstd) contexts initialised inside `work` and `dwork`,
/// which are never resized while `self` lives.
struct Codec {
    kind: CodecKind,
    work: KVVec<u64>,
    dwork: KVVec<u64>,
    cctx: *mut core::ffi::c_void,
    dctx: *mut core::ffi::c_void,
    params: Option<lib_codecs::ZstdParameters>,
    out: KVVec<u8>,
}

impl Codec {
    fn new(kind: CodecKind) -> Result<Self> {
        let words = |bytes: usize| KVVec::from_elem(0u64, bytes.div_ceil(8), GFP_KERNEL);
        let mut c = Self {
            kind,
            work: KVVec::new(),
            dwork: KVVec::new(),
            cctx: ptr::null_mut(),
            dctx: ptr::null_mut(),
            params: None,
            out: KVVec::from_elem(0u8, CODEC_OUT, GFP_KERNEL)?,
        };
        match kind {
            // LZ4_MEM_COMPRESS and LZO1X_1_MEM_COMPRESS (8192 shorts) both fit in 16 KiB + 32.
            CodecKind::Lz4 | CodecKind::LzoRle => c.work = words((1 << 14) + 32)?,
            CodecKind::Zstd => {
                // SAFETY: Pure functions of their arguments.
                let params = unsafe { lib_codecs::zstd_get_params(lib_codecs::zstd_default_clevel(), kernel::page::PAGE_SIZE as u64) };
                // SAFETY: `params.c` was returned just above.
                let (cbytes, dbytes) = unsafe { (lib_codecs::zstd_cctx_workspace_bound(&params.c), lib_codecs::zstd_dctx_workspace_bound()) };
                c.work = words(cbytes)?;
                c.dwork = words(dbytes)?;
                // SAFETY: 8-byte aligned workspaces of at least the bounds, owned by `c` and
                // never resized (INVARIANT).
                unsafe {
                    c.cctx = lib_codecs::zstd_init_cctx(c.work.as_mut_ptr().cast(), cbytes);
                    c.dctx = lib_codecs::zstd_init_dctx(c.dwork.as_mut_ptr().cast(), dbytes);
                }
                if c.cctx.is_null() || c.dctx.is_null() {
                    return Err(ENOMEM);
                }
                c.params = Some(params);
            }
        }
        Ok(c)
    }

    /// Compresses the page at `src` into `out`; returns the length, `None` on failure.
    ///
    /// # Safety
    ///
    /// `src` is valid for reading a page during the call.
    unsafe fn compress(&mut self, src: *const u8) -> Option<usize> {
        let page = kernel::page::PAGE_SIZE;
        let dst = self.out.as_mut_ptr();
        let work = self.work.as_mut_ptr().cast();
        // SAFETY: `src` holds a page (caller), `dst` `CODEC_OUT` bytes, more than each
        // library's worst case for a page; `work` and `cctx` are this kind's (invariant).
        unsafe {
            match (self.kind, &self.params) {
                (CodecKind::Lz4, _) => {
                    let n = lib_codecs::LZ4_compress_fast(src.cast(), dst.cast(), page as i32, CODEC_OUT as i32, 1, work);
                    (n > 0).then_some(n as usize)
                }
                (CodecKind::LzoRle, _) => {
                    let mut len = CODEC_OUT;
                    (lib_codecs::lzorle1x_1_compress(src, page, dst, &mut len, work) == 0).then_some(len)
                }
                (CodecKind::Zstd, Some(params)) => {
                    let n = lib_codecs::zstd_compress_cctx(self.cctx, dst.cast(), CODEC_OUT, src.cast(), page, params);
                    (lib_codecs::zstd_is_error(n) == 0).then_some(n)
                }
                (CodecKind::Zstd, None) => None,
            }
        }
    }

    /// Decompresses `src` into the page at `dst`; whether a whole page came out.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writing a page during the call.
    unsafe fn decompress(&mut self, src: &[u8], dst: *mut u8) -> bool {
        let page = kernel::page::PAGE_SIZE;
        // SAFETY: `src` is a slice; `dst` holds a page (caller); the `_safe` decoders never
        // write past the capacity given; `dctx` lives in `dwork` (invariant).
        unsafe {
            match self.kind {
                CodecKind::Lz4 => lib_codecs::LZ4_decompress_safe(src.as_ptr().cast(), dst.cast(), src.len() as i32, page as i32) == page as i32,
                CodecKind::LzoRle => {
                    let mut out = page;
                    lib_codecs::lzo1x_decompress_safe(src.as_ptr(), src.len(), dst, &mut out) == 0 && out == page
                }
                CodecKind::Zstd => {
                    let n = lib_codecs::zstd_decompress_dctx(self.dctx, dst.cast(), page, src.as_ptr().cast(), src.len());
                    lib_codecs::zstd_is_error(n) == 0 && n == page
                }
            }
        }
    }

    /// One I/O of `len` bytes on the submitter's `buffer`: each of its pages compressed
    /// (`write`) or decompressed into the buffer from `packed`, its pages compressed at load.
    fn io(&mut self, buffer: &Buffer, packed: &[KVec<u8>], len: u32, write: bool) -> bool {
        let pages = (len as usize).div_ceil(kernel::page::PAGE_SIZE);
        let mut ok = true;
        for i in 0..pages {
            // SAFETY: Page `i` is within the buffer's compound page (made for `len` bytes),
            // mapped only for this call; a read writes back what the page already holds.
            unsafe {
                let mapped = bindings::kmap_local_page(buffer.page.add(i)).cast::<u8>();
                ok &= if write {
                    self.compress(mapped).is_some()
                } else {
                    packed.get(i).is_some_and(|p| self.decompress(p, mapped))
                };
                bindings::kunmap_local(mapped.cast());
            }
        }
        ok
    }
}

// SAFETY: The raw pointers point into the codec's own workspaces; nothing ties them to a thread.
unsafe impl Send for Codec {}

/// Per submitter, its buffer's pages compressed (what the codec slot's reads decompress).
fn pack_buffer(kind: CodecKind, buffer: &Buffer, len: u32) -> Result<KVec<KVec<u8>>> {
    let mut codec = Codec::new(kind)?;
    let pages = (len as usize).div_ceil(kernel::page::PAGE_SIZE);
    let mut packed = KVec::with_capacity(pages, GFP_KERNEL)?;
    for i in 0..pages {
        // SAFETY: Page `i` of the buffer, mapped for the call only.
        let n = unsafe {
            let mapped = bindings::kmap_local_page(buffer.page.add(i)).cast::<u8>();
            let n = codec.compress(mapped);
            bindings::kunmap_local(mapped.cast());
            n
        };
        let bytes = codec.out.get(..n.ok_or(EINVAL)?).ok_or(EINVAL)?;
        let mut copy = KVec::with_capacity(bytes.len(), GFP_KERNEL)?;
        copy.extend_from_slice(bytes, GFP_KERNEL)?;
        packed.push(copy, GFP_KERNEL)?;
    }
    Ok(packed)
}

/// xorshift64: cheap, and the same sequence for the same seed on every driver.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// What every burst shares: the open targets, the job shape and one buffer per submitter.
struct Shared {
    targets: KVec<BdevFile>,
    /// Per submitter: filled once with random bytes (a RAM disk that skips zero pages must not
    /// get an easy write), used by that submitter only.
    buffers: KVec<Buffer>,
    /// Per target (the memcpy slot's last).
    errors: KVec<AtomicU64>,
    /// The memcpy slot's memory, with `memcpy=1`: target `targets.len()`.
    memory: Option<Memory>,
    /// The codec slot, with `codec=N`: the last target; per submitter, its buffer packed.
    codec: Option<(CodecKind, KVec<KVec<KVec<u8>>>)>,
    read_pct: u32,
    random: bool,
    block_size: u32,
    // Non-zero types: no division-by-zero panic path (objtool rejects the fall-through).
    blocks: NonZeroU64,
    ios: u32,
    threads: NonZeroU32,
}

/// One burst: every submitter does `ios` I/Os on `target`; the last one to finish completes.
#[pin_data]
struct Burst {
    shared: Arc<Shared>,
    target: usize,
    round: u32,
    remaining: AtomicU32,
    #[pin]
    done: Completion,
}

impl Burst {
    fn finish_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.complete_all();
        }
    }
}

/// One submitter's bio on a block device, reused from I/O to I/O as `bdev_rw_virt` does.
///
/// # Invariants
///
/// `bio` was set up by `bio_init` with `bvec` as its one slot and is uninitialised in `drop`;
/// it is boxed, so the pointer `bio_init` stored to `bvec` stays valid while both live.
struct DeviceIo {
    bdev: *mut bindings::block_device,
    bio: KBox<(bindings::bio, bindings::bio_vec)>,
}

impl DeviceIo {
    fn new(file: &BdevFile) -> Option<Self> {
        let bdev = file.bdev();
        // SAFETY: All-zero is a valid starting state for `bio_init`, which sets up the rest.
        let zeroed: (bindings::bio, bindings::bio_vec) = unsafe { core::mem::zeroed() };
        let mut bio = KBox::new(zeroed, GFP_KERNEL).ok()?;
        let (b, v) = &mut *bio;
        // SAFETY: `b` and `v` live in the box until `drop` (invariant); one bvec slot.
        unsafe { bindings::bio_init(b, bdev, v, 1, bindings::req_op_REQ_OP_READ) };
        Some(Self { bdev, bio })
    }

    /// Reads or writes block `block` of `len` bytes from or to `buffer`, waiting for it.
    fn submit(&mut self, block: u64, len: u32, buffer: &Buffer, read: bool) -> bool {
        let opf = if read { bindings::req_op_REQ_OP_READ } else { bindings::req_op_REQ_OP_WRITE };
        let bio = &mut self.bio.0;
        // SAFETY: The bio was initialised in `new` and its previous I/O has completed
        // (`submit_bio_wait` returned); the buffer outlives the I/O.
        let rc = unsafe {
            bindings::bio_reset(bio, self.bdev, opf);
            bio.bi_iter.bi_sector = block.wrapping_mul(u64::from(len)) >> 9;
            bindings::__bio_add_page(bio, buffer.page, len, 0);
            bindings::submit_bio_wait(bio)
        };
        rc == 0
    }
}

impl Drop for DeviceIo {
    fn drop(&mut self) {
        // SAFETY: Initialised in `new`; no I/O in flight (`submit` waits for each).
        unsafe { bindings::bio_uninit(&mut self.bio.0) };
    }
}

/// Where a submitter's I/Os go.
enum Io<'a> {
    Device(DeviceIo),
    Memory(&'a Memory),
    Codec(Codec, &'a [KVec<u8>]),
}

/// One submitter's burst. Offsets and the read/write choice depend only on the submitter and
/// the round, so every target of a round sees the same I/O sequence.
fn run_burst(s: &Shared, target: usize, thread: u32, round: u32) {
    let Some(buffer) = s.buffers.get(thread as usize) else {
        return;
    };
    let memcpy_slot = s.targets.len();
    let codec_slot = memcpy_slot + usize::from(s.memory.is_some());
    let io = match (s.targets.get(target), &s.memory, &s.codec) {
        (Some(bdev_file), _, _) => DeviceIo::new(bdev_file).map(Io::Device),
        (None, Some(memory), _) if target == memcpy_slot => Some(Io::Memory(memory)),
        (None, _, Some((kind, packed))) if target == codec_slot => match (Codec::new(*kind), packed.get(thread as usize)) {
            (Ok(c), Some(p)) => Some(Io::Codec(c, p)),
            _ => None,
        },
        _ => return,
    };
    let Some(mut io) = io else {
        if let Some(e) = s.errors.get(target) {
            e.fetch_add(u64::from(s.ios), Ordering::Relaxed);
        }
        return;
    };
    let seed = (u64::from(thread) << 32) ^ u64::from(round).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed ^ 0x2545_f491_4f6c_dd1d | 1);
    let mut op_rng = Rng(seed ^ 0x1234_5678_9abc_def1 | 1);
    let stride = s.blocks.get() / NonZeroU64::from(s.threads);
    let start = u64::from(thread).wrapping_mul(stride).wrapping_add(u64::from(round).wrapping_mul(u64::from(s.ios)));
    let mut sequential = start % s.blocks;
    let mut errors = 0;
    for _ in 0..s.ios {
        let block = if s.random {
            rng.next() % s.blocks
        } else {
            sequential = sequential.wrapping_add(1) % s.blocks;
            sequential
        };
        let read = s.read_pct >= 100 || (s.read_pct > 0 && op_rng.next() % 100 < u64::from(s.read_pct));
        let ok = match &mut io {
            Io::Device(d) => d.submit(block, s.block_size, buffer, read),
            Io::Memory(m) => {
                m.copy(thread, block, buffer, s.block_size, !read);
                true
            }
            Io::Codec(c, packed) => c.io(buffer, packed, s.block_size, !read),
        };
        if !ok {
            errors += 1;
        }
    }
    drop(io);
    if let Some(e) = s.errors.get(target) {
        e.fetch_add(errors, Ordering::Relaxed);
    }
}

/// `system_dfl_wq`: unbound, so submitters run on different CPUs (`system_unbound_wq` is
/// deprecated in 7.3 and the kernel crate has no wrapper for its successor yet).
fn unbound_queue() -> &'static workqueue::Queue {
    // SAFETY: `system_dfl_wq` is set up at boot and never destroyed.
    unsafe { workqueue::Queue::from_raw(bindings::system_dfl_wq) }
}

fn now_ns() -> u64 {
    // SAFETY: Reading the monotonic clock has no preconditions.
    let t = unsafe { bindings::ktime_get() };
    t.max(0) as u64
}

/// Runs one burst on `target` and returns how long it took.
fn timed_burst(shared: &Arc<Shared>, target: usize, round: u32) -> Result<u64> {
    let burst = Arc::pin_init(
        try_pin_init!(Burst {
            shared: shared.clone(),
            target,
            round,
            remaining: AtomicU32::new(shared.threads.get()),
            done <- Completion::new(),
        }),
        GFP_KERNEL,
    )?;
    let start = now_ns();
    for thread in 0..shared.threads.get() {
        let b = burst.clone();
        let spawned = unbound_queue().try_spawn(GFP_KERNEL, move || {
            run_burst(&b.shared, b.target, thread, b.round);
            b.finish_one();
        });
        if spawned.is_err() {
            if let Some(e) = shared.errors.get(target) {
                e.fetch_add(u64::from(shared.ios), Ordering::Relaxed);
            }
            burst.finish_one();
        }
    }
    burst.done.wait_for_completion();
    Ok((now_ns() - start).max(1))
}

/// A printk line built piece by piece (the burst times do not fit one format string).
struct Line(KVec<u8>);

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}

const MAX_BURSTS: u32 = 64;
const MAX_TARGETS: usize = 6;

impl kernel::Module for RxdskBench {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        use core::fmt::Write;
        let devs = [
            module_parameters::dev0.value(),
            module_parameters::dev1.value(),
            module_parameters::dev2.value(),
            module_parameters::dev3.value(),
            module_parameters::dev4.value(),
            module_parameters::dev5.value(),
        ];
        let read_pct = module_parameters::read_pct.value().min(100);
        let random = module_parameters::random.value();
        let block_size = module_parameters::block_size.value();
        let span = u64::from(module_parameters::span_mib.value()) << 20;
        let bursts = module_parameters::bursts.value().clamp(1, MAX_BURSTS);
        let ios = module_parameters::ios.value().max(1);
        let threads = NonZeroU32::new(module_parameters::threads.value()).unwrap_or(NonZeroU32::MIN);
        if !block_size.is_power_of_two() || !(512..=1 << 20).contains(&block_size) || span < u64::from(block_size) {
            pr_err!("bad block_size {} or span_mib\n", block_size);
            return Err(EINVAL);
        }
        let blocks = NonZeroU64::new(span / u64::from(block_size)).ok_or(EINVAL)?;
        let mut targets = KVec::with_capacity(MAX_TARGETS, GFP_KERNEL)?;
        let mut errors = KVec::with_capacity(MAX_TARGETS, GFP_KERNEL)?;
        for &dev in devs.iter().filter(|&&d| d != 0) {
            targets.push(BdevFile::open(dev, read_pct < 100)?, GFP_KERNEL)?;
            errors.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        if targets.is_empty() {
            pr_err!("no target: set dev0\n");
            return Err(EINVAL);
        }
        let mut buffers = KVec::with_capacity(threads.get() as usize, GFP_KERNEL)?;
        for thread in 0..threads.get() {
            buffers.push(Buffer::new(block_size, 0x9e37_79b9_7f4a_7c15 ^ u64::from(thread), module_parameters::compress_pct.value())?, GFP_KERNEL)?;
        }
        let memory = if module_parameters::memcpy.value() {
            errors.push(AtomicU64::new(0), GFP_KERNEL)?;
            Some(Memory::new(span as usize, threads)?)
        } else {
            None
        };
        let codec = match CodecKind::from_param(module_parameters::codec.value())? {
            Some(kind) => {
                errors.push(AtomicU64::new(0), GFP_KERNEL)?;
                let mut packed = KVec::with_capacity(buffers.len(), GFP_KERNEL)?;
                for buffer in buffers.iter() {
                    packed.push(pack_buffer(kind, buffer, block_size)?, GFP_KERNEL)?;
                }
                Some((kind, packed))
            }
            None => None,
        };
        let n = core::num::NonZeroUsize::new(targets.len() + usize::from(memory.is_some()) + usize::from(codec.is_some()))
            .ok_or(EINVAL)?;
        let shared = Arc::new(
            Shared { targets, buffers, errors, memory, codec, read_pct, random, block_size, blocks, ios, threads },
            GFP_KERNEL,
        )?;
        // ns[target][round]
        let mut ns: KVec<KVec<u64>> = KVec::with_capacity(n.get(), GFP_KERNEL)?;
        for _ in 0..n.get() {
            ns.push(KVec::with_capacity(bursts as usize, GFP_KERNEL)?, GFP_KERNEL)?;
        }
        for round in 0..bursts {
            for k in 0..n.get() {
                // Rotate the order so that no target always runs right after the same other.
                let target = (k + round as usize) % n;
                let t = timed_burst(&shared, target, round)?;
                if let Some(times) = ns.get_mut(target) {
                    times.push(t, GFP_KERNEL)?;
                }
            }
        }
        let threads = threads.get();
        let ios_per_target = u64::from(ios) * u64::from(threads) * u64::from(bursts);
        for (slot, times) in ns.iter().enumerate() {
            let total_ns: u64 = times.iter().sum::<u64>().max(1);
            // u64 throughout (no 128-bit division in the kernel): at these rates the products
            // stay far below 2^64.
            let iops = ios_per_target.saturating_mul(1_000_000_000) / total_ns;
            let mibps = (ios_per_target.saturating_mul(u64::from(block_size)) >> 20).saturating_mul(1_000_000_000) / total_ns;
            let dev = devs.iter().filter(|&&d| d != 0).nth(slot).copied().unwrap_or(0);
            pr_info!(
                "slot={} dev={}:{} op={}{} read_pct={} bs={} threads={} bursts={} ios={} errors={} ns={} iops={} mibps={} ns_per_io={}\n",
                slot,
                dev >> MINORBITS,
                dev & ((1 << MINORBITS) - 1),
                if random { "rand" } else { "seq" },
                match read_pct {
                    100 => "read",
                    0 => "write",
                    _ => "rw",
                },
                read_pct,
                block_size,
                threads,
                bursts,
                ios_per_target,
                shared.errors.get(slot).map_or(0, |e| e.load(Ordering::Relaxed)),
                total_ns,
                iops,
                mibps,
                total_ns.saturating_mul(u64::from(threads)) / ios_per_target.max(1)
            );
            let mut line = Line(KVec::new());
            for (i, t) in times.iter().enumerate() {
                write!(line, "{}{}", if i == 0 { "" } else { "," }, t).map_err(|_| ENOMEM)?;
            }
            let text = core::str::from_utf8(&line.0).unwrap_or("");
            pr_info!("slot={} burst_ns={}\n", slot, text);
        }
        Ok(RxdskBench)
    }
}
