// SPDX-License-Identifier: GPL-2.0

//! rxdsk_bench: an in-kernel load generator for block devices.
//!
//! Loaded with the target's major/minor and a job shape, it opens the device, submits bios in
//! a loop from `threads` work items (each I/O waits for its completion: queue depth 1 per
//! thread), prints one result line and stays loaded until removed. Measuring inside the kernel
//! takes the system-call cost out, so drivers can be compared at native speed (User-Mode Linux)
//! where fio in a VM or in UML would mostly measure the syscall path.
//!
//! Result line: `rxdsk_bench: dev=M:m op=randread read_pct=100 bs=4096 threads=1 ios=N
//! errors=E ns=T iops=I mibps=B ns_per_io=P`.

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{bindings, prelude::*, sync::Arc, sync::Completion, workqueue};

module! {
    type: RxdskBench,
    name: "rxdsk_bench",
    authors: ["The rxdsk developers"],
    description: "In-kernel block device load generator for rxdsk benchmarks",
    license: "GPL",
    params: {
        dev_major: u32 { default: 0, description: "Target block device major", },
        dev_minor: u32 { default: 0, description: "Target block device minor", },
        read_pct: u32 { default: 100, description: "Percentage of I/Os that read (0: all writes)", },
        random: bool { default: true, description: "Random offsets instead of sequential", },
        block_size: u32 { default: 4096, description: "Bytes per I/O: a power of two, 512..1048576", },
        span_mib: u32 { default: 256, description: "Size of the region of the device used", },
        ios: u32 { default: 100000, description: "I/Os per thread", },
        threads: u32 { default: 1, description: "Concurrent submitters (work items)", },
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
    fn open(major: u32, minor: u32, write: bool) -> Result<Self> {
        let mode = BLK_OPEN_READ | if write { BLK_OPEN_WRITE } else { 0 };
        // SAFETY: No holder and no holder ops: a plain, non-exclusive open.
        let file = unsafe { bindings::bdev_file_open_by_dev((major << MINORBITS) | minor, mode, ptr::null_mut(), ptr::null()) };
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
    fn new(bytes: u32, seed: u64) -> Result<Self> {
        let order = bytes.next_power_of_two().trailing_zeros().saturating_sub(PAGE_SHIFT);
        // SAFETY: Allocating pages has no preconditions.
        let page = unsafe { bindings::alloc_pages(bindings::GFP_KERNEL | GFP_COMP, order) };
        if page.is_null() {
            return Err(ENOMEM);
        }
        let buffer = Self { page, order };
        // Random contents: a RAM disk that skips zero pages must not get an easy write.
        let mut rng = Rng(seed | 1);
        for i in 0..(1usize << order) {
            // SAFETY: Page `i` of the compound page is ours; mapped and unmapped here.
            unsafe {
                let addr = bindings::kmap_local_page(page.add(i)).cast::<u64>();
                for w in 0..(kernel::page::PAGE_SIZE / 8) {
                    addr.add(w).write(rng.next());
                }
                bindings::kunmap_local(addr.cast());
            }
        }
        Ok(buffer)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: Allocated with this order (invariant).
        unsafe { bindings::__free_pages(self.page, self.order) };
    }
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

#[pin_data]
struct Job {
    bdev: BdevFile,
    read_pct: u32,
    random: bool,
    block_size: u32,
    blocks: u64,
    ios: u32,
    errors: AtomicU64,
    remaining: AtomicU64,
    #[pin]
    done: Completion,
}

/// One submitter: its own bio and buffer, `ios` synchronous I/Os.
fn run_thread(job: &Job, thread: u32) -> Result {
    let buffer = Buffer::new(job.block_size, 0x9e37_79b9_7f4a_7c15 ^ u64::from(thread))?;
    let op = |rng: &mut Rng| {
        if job.read_pct >= 100 || (job.read_pct > 0 && rng.next() % 100 < u64::from(job.read_pct)) {
            bindings::req_op_REQ_OP_READ
        } else {
            bindings::req_op_REQ_OP_WRITE
        }
    };
    let mut op_rng = Rng(0x1234_5678_9abc_def1 ^ u64::from(thread));
    // SAFETY: All-zero is a valid starting state for `bio_init`, which sets up the rest.
    let mut bio: KBox<bindings::bio> = KBox::new(unsafe { core::mem::zeroed() }, GFP_KERNEL)?;
    // SAFETY: As above, for the single bvec the bio uses.
    let mut bvec: KBox<bindings::bio_vec> = KBox::new(unsafe { core::mem::zeroed() }, GFP_KERNEL)?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (u64::from(thread) << 32) | 1);
    let mut sequential = u64::from(thread) * (job.blocks / u64::from(threads_param()).max(1));
    // SAFETY: `bio` and `bvec` live until `bio_uninit` below; one bvec slot.
    unsafe { bindings::bio_init(&mut *bio, job.bdev.bdev(), &mut *bvec, 1, bindings::req_op_REQ_OP_READ) };
    for _ in 0..job.ios {
        let block = if job.random {
            rng.next() % job.blocks
        } else {
            sequential = (sequential + 1) % job.blocks;
            sequential
        };
        let opf = op(&mut op_rng);
        // SAFETY: The bio was initialised above and its previous I/O has completed
        // (`submit_bio_wait` returned); the buffer outlives the I/O.
        let rc = unsafe {
            bindings::bio_reset(&mut *bio, job.bdev.bdev(), opf);
            bio.bi_iter.bi_sector = (block * u64::from(job.block_size)) >> 9;
            bindings::__bio_add_page(&mut *bio, buffer.page, job.block_size, 0);
            bindings::submit_bio_wait(&mut *bio)
        };
        if rc != 0 {
            job.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    // SAFETY: Initialised above; no I/O in flight.
    unsafe { bindings::bio_uninit(&mut *bio) };
    Ok(())
}

/// `system_dfl_wq`: unbound, so submitters run on different CPUs (`system_unbound_wq` is
/// deprecated in 7.3 and the kernel crate has no wrapper for its successor yet).
fn unbound_queue() -> &'static workqueue::Queue {
    // SAFETY: `system_dfl_wq` is set up at boot and never destroyed.
    unsafe { workqueue::Queue::from_raw(bindings::system_dfl_wq) }
}

fn threads_param() -> u32 {
    module_parameters::threads.value().max(1)
}

fn now_ns() -> i64 {
    // SAFETY: Reading the monotonic clock has no preconditions.
    unsafe { bindings::ktime_get() }
}

impl kernel::Module for RxdskBench {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let major = module_parameters::dev_major.value();
        let minor = module_parameters::dev_minor.value();
        let read_pct = module_parameters::read_pct.value().min(100);
        let random = module_parameters::random.value();
        let block_size = module_parameters::block_size.value();
        let span = u64::from(module_parameters::span_mib.value()) << 20;
        let ios = module_parameters::ios.value();
        let threads = threads_param();
        if !block_size.is_power_of_two() || !(512..=1 << 20).contains(&block_size) || span < u64::from(block_size) {
            pr_err!("bad block_size {} or span_mib\n", block_size);
            return Err(EINVAL);
        }
        let blocks = span / u64::from(block_size);
        let job = Arc::pin_init(
            try_pin_init!(Job {
                bdev: BdevFile::open(major, minor, read_pct < 100)?,
                read_pct,
                random,
                block_size,
                blocks,
                ios,
                errors: AtomicU64::new(0),
                remaining: AtomicU64::new(u64::from(threads)),
                done <- Completion::new(),
            }),
            GFP_KERNEL,
        )?;
        let start = now_ns();
        for thread in 0..threads {
            let worker = job.clone();
            let spawned = unbound_queue().try_spawn(GFP_KERNEL, move || {
                if run_thread(&worker, thread).is_err() {
                    worker.errors.fetch_add(u64::from(worker.ios), Ordering::Relaxed);
                }
                if worker.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    worker.done.complete_all();
                }
            });
            if spawned.is_err() {
                job.errors.fetch_add(u64::from(ios), Ordering::Relaxed);
                if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    job.done.complete_all();
                }
            }
        }
        job.done.wait_for_completion();
        let ns = (now_ns() - start).max(1) as u64;
        let total = u64::from(ios) * u64::from(threads);
        // u64 throughout (no 128-bit division in the kernel): total <= 2^32 * 2^32 is not a
        // concern at these rates, and MiB moved * 10^9 stays far below 2^64.
        let iops = total.saturating_mul(1_000_000_000) / ns;
        let mibps = (total.saturating_mul(u64::from(block_size)) >> 20).saturating_mul(1_000_000_000) / ns;
        pr_info!(
            "dev={}:{} op={}{} read_pct={} bs={} threads={} ios={} errors={} ns={} iops={} mibps={} ns_per_io={}\n",
            major,
            minor,
            if random { "rand" } else { "seq" },
            match read_pct {
                100 => "read",
                0 => "write",
                _ => "rw",
            },
            read_pct,
            block_size,
            threads,
            total,
            job.errors.load(Ordering::Relaxed),
            ns,
            iops,
            mibps,
            ns.saturating_mul(u64::from(threads)) / total.max(1)
        );
        Ok(RxdskBench)
    }
}
