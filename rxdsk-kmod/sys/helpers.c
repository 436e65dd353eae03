// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel macros that bindgen cannot translate (values with casts, function-like macros),
 * compiled against the headers of the kernel this module is built for, so that the Rust side
 * copies no constant by hand. Declared and wrapped in ffi.rs.
 */
#include <linux/blkdev.h>
#include <linux/gfp.h>
#include <linux/sched.h>
#include <linux/timekeeping.h>
#include <linux/xarray.h>
#include <linux/workqueue.h>
#include <linux/sched/mm.h>
#include <linux/sched/clock.h>
#include <linux/sched/isolation.h>
#include <linux/cpumask.h>
#include <linux/percpu.h>
#include <linux/atomic.h>
#include <linux/cpuhotplug.h>
#include <linux/debugfs.h>
#include <linux/fault-inject.h>

#define RXDSK_CONST(type, name, value)     \
	extern const type rxdsk_##name;    \
	const type rxdsk_##name = (value)

RXDSK_CONST(blk_features_t, blk_feat_synchronous, BLK_FEAT_SYNCHRONOUS);
RXDSK_CONST(blk_features_t, blk_feat_nowait, BLK_FEAT_NOWAIT);
RXDSK_CONST(blk_status_t, blk_sts_ok, BLK_STS_OK);
RXDSK_CONST(blk_status_t, blk_sts_notsupp, BLK_STS_NOTSUPP);
RXDSK_CONST(blk_status_t, blk_sts_nospc, BLK_STS_NOSPC);
RXDSK_CONST(blk_status_t, blk_sts_ioerr, BLK_STS_IOERR);
RXDSK_CONST(blk_status_t, blk_sts_again, BLK_STS_AGAIN);
RXDSK_CONST(xa_mark_t, xa_present, XA_PRESENT);
RXDSK_CONST(gfp_t, gfp_noio, GFP_NOIO);
RXDSK_CONST(blk_opf_t, req_op_mask, REQ_OP_MASK);
RXDSK_CONST(xa_mark_t, xa_mark_0, XA_MARK_0);
RXDSK_CONST(blk_mode_t, blk_open_read, BLK_OPEN_READ);
RXDSK_CONST(blk_mode_t, blk_open_write, BLK_OPEN_WRITE);
RXDSK_CONST(blk_mode_t, blk_open_excl, BLK_OPEN_EXCL);

u64 rxdsk_bdev_nr_bytes(struct block_device *bdev);
u64 rxdsk_bdev_nr_bytes(struct block_device *bdev)
{
	return bdev_nr_bytes(bdev);
}

u32 rxdsk_bdev_major(struct block_device *bdev);
u32 rxdsk_bdev_major(struct block_device *bdev)
{
	return MAJOR(bdev->bd_dev);
}

u32 rxdsk_bdev_minor(struct block_device *bdev);
u32 rxdsk_bdev_minor(struct block_device *bdev)
{
	return MINOR(bdev->bd_dev);
}

u64 rxdsk_ktime_get_real_ns(void);
u64 rxdsk_ktime_get_real_ns(void)
{
	return ktime_get_real_ns();
}

void rxdsk_cond_resched(void);
void rxdsk_cond_resched(void)
{
	cond_resched();
}

/*
 * The workqueue for bios that must wait for the backing device (deferred.rs). WQ_MEM_RECLAIM:
 * its rescuer keeps it moving when we serve reclaim (swap on a device being restored).
 */
static struct workqueue_struct *rxdsk_io_wq;

/*
 * The helpers that share big bios (fanout.rs). Per-CPU and WQ_HIGHPRI: a helper starts at once
 * on the CPU picked for it. WQ_MEM_RECLAIM: they serve writes that reclaim may be waiting for
 * (swap on a compressed device), so they must not need a new worker.
 */
static struct workqueue_struct *rxdsk_fanout_wq;

int rxdsk_io_wq_create(void);
int rxdsk_io_wq_create(void)
{
	rxdsk_io_wq = alloc_workqueue("rxdsk_io", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
	if (!rxdsk_io_wq)
		return -ENOMEM;
	rxdsk_fanout_wq = alloc_workqueue("rxdsk_fanout", WQ_MEM_RECLAIM | WQ_HIGHPRI | WQ_PERCPU, 0);
	if (!rxdsk_fanout_wq) {
		destroy_workqueue(rxdsk_io_wq);
		rxdsk_io_wq = NULL;
		return -ENOMEM;
	}
	return 0;
}

void rxdsk_io_wq_destroy(void);
void rxdsk_io_wq_destroy(void)
{
	destroy_workqueue(rxdsk_fanout_wq);
	rxdsk_fanout_wq = NULL;
	destroy_workqueue(rxdsk_io_wq);
	rxdsk_io_wq = NULL;
}

#define RXDSK_FANOUT_MAX 8

/*
 * Per CPU, the fan-out callers and helpers running there. The scheduler's own idle_cpu() is not
 * exported to modules: a CPU is asked to help only while no other big bio of ours is using it
 * (other work there is not seen; the helper then shares the CPU with it).
 */
static DEFINE_PER_CPU(atomic_t, rxdsk_fanout_busy);

typedef void (*rxdsk_fanout_fn)(const void *ctx, unsigned int participant);

struct rxdsk_fanout_helper {
	struct work_struct work;
	rxdsk_fanout_fn fn;
	const void *ctx;
	unsigned int participant;
	int cpu;
	/* The caller's count of helpers still to finish. */
	atomic_t *running;
};

static void rxdsk_fanout_run(struct work_struct *work)
{
	struct rxdsk_fanout_helper *h = container_of(work, struct rxdsk_fanout_helper, work);
	/* As its submitter's: no reclaim I/O, which could come back to this device. */
	unsigned int noio = memalloc_noio_save();

	h->fn(h->ctx, h->participant);
	memalloc_noio_restore(noio);
	atomic_dec(per_cpu_ptr(&rxdsk_fanout_busy, h->cpu));
	/*
	 * The last touch of the caller's stack: once the count drops, the caller may return. The
	 * workqueue itself no longer touches a work item whose function has started.
	 */
	atomic_dec_return_release(h->running);
}

/* How long the caller spins for helpers that started before it sleeps on them. */
#define RXDSK_FANOUT_SPIN_NS (20 * NSEC_PER_USEC)

/*
 * Runs fn(ctx, 0) on the calling task and fn(ctx, i) for i = 1..helpers-1 each on another
 * online CPU that the task may run on, that is not isolated (isolcpus, cpuset partitions,
 * nohz_full) and that none of our big bios is using (helpers <= max_participants), and returns once all have
 * returned; the participants share the work between them (fanout.rs). A helper that has not
 * started by the time the caller is done is cancelled: it would find nothing left to do. One
 * that has started is usually busy with its last piece of work, so the caller spins for it a
 * little (a wake-up would cost more) and then sleeps on it (it may be waiting for a lock or for
 * memory). The work items live on this stack until then. Returns how many helpers ran.
 *
 * A task in reclaim (PF_MEMALLOC: kswapd, direct reclaim writing to swap) does all the work
 * itself: its allocations may dip into the reserves, a helper's could not, and a helper waiting
 * for memory that its caller is there to free would stall reclaim.
 */
unsigned int rxdsk_fanout(rxdsk_fanout_fn fn, const void *ctx, unsigned int max_participants);
unsigned int rxdsk_fanout(rxdsk_fanout_fn fn, const void *ctx, unsigned int max_participants)
{
	struct rxdsk_fanout_helper helpers[RXDSK_FANOUT_MAX];
	unsigned int n = 1, i, ran = 0;
	int self = raw_smp_processor_id(), cpu;
	atomic_t running;
	u64 deadline;

	if (max_participants > RXDSK_FANOUT_MAX)
		max_participants = RXDSK_FANOUT_MAX;
	if (current->flags & PF_MEMALLOC)
		max_participants = 1;
	atomic_inc(per_cpu_ptr(&rxdsk_fanout_busy, self));
	/* A CPU that goes down meanwhile is harmless: its work then runs on another. */
	for_each_online_cpu_wrap(cpu, self + 1) {
		if (n >= max_participants)
			break;
		if (cpu == self || !cpumask_test_cpu(cpu, current->cpus_ptr) ||
		    !housekeeping_cpu(cpu, HK_TYPE_DOMAIN) || !housekeeping_cpu(cpu, HK_TYPE_WQ) ||
		    atomic_read(per_cpu_ptr(&rxdsk_fanout_busy, cpu)))
			continue;
		atomic_inc(per_cpu_ptr(&rxdsk_fanout_busy, cpu));
		helpers[n++].cpu = cpu;
	}
	atomic_set(&running, n - 1);
	for (i = 1; i < n; i++) {
		INIT_WORK_ONSTACK(&helpers[i].work, rxdsk_fanout_run);
		helpers[i].fn = fn;
		helpers[i].ctx = ctx;
		helpers[i].participant = i;
		helpers[i].running = &running;
		queue_work_on(helpers[i].cpu, rxdsk_fanout_wq, &helpers[i].work);
	}
	fn(ctx, 0);
	for (i = 1; i < n; i++) {
		if (cancel_work(&helpers[i].work)) {
			/* Never ran, never will. */
			atomic_dec(per_cpu_ptr(&rxdsk_fanout_busy, helpers[i].cpu));
			atomic_dec(&running);
			helpers[i].cpu = -1;
		} else {
			ran++;
		}
	}
	/* Pairs with the helpers' release: their writes are ours once the count is 0. */
	deadline = local_clock() + RXDSK_FANOUT_SPIN_NS;
	while (atomic_read_acquire(&running) && !need_resched() && local_clock() < deadline)
		cpu_relax();
	if (atomic_read_acquire(&running)) {
		/* Each started helper has returned (its writes ordered before ours by the wait). */
		for (i = 1; i < n; i++)
			if (helpers[i].cpu >= 0)
				flush_work(&helpers[i].work);
	}
	for (i = 1; i < n; i++)
		destroy_work_on_stack(&helpers[i].work);
	atomic_dec(per_cpu_ptr(&rxdsk_fanout_busy, self));
	return ran;
}

void rxdsk_io_queue(struct work_struct *work);
void rxdsk_io_queue(struct work_struct *work)
{
	queue_work(rxdsk_io_wq, work);
}

void rxdsk_init_work(struct work_struct *work, work_func_t func);
void rxdsk_init_work(struct work_struct *work, work_func_t func)
{
	INIT_WORK(work, func);
}

unsigned int rxdsk_noio_save(void);
unsigned int rxdsk_noio_save(void)
{
	return memalloc_noio_save();
}

void rxdsk_noio_restore(unsigned int flags);
void rxdsk_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}

void rxdsk_init_delayed_work(struct delayed_work *work, work_func_t func);
void rxdsk_init_delayed_work(struct delayed_work *work, work_func_t func)
{
	INIT_DELAYED_WORK(work, func);
}

/* Periodic flushes wait for the backing device for long: the long-running system queue. */
void rxdsk_kick_delayed(struct delayed_work *work);
void rxdsk_kick_delayed(struct delayed_work *work)
{
	mod_delayed_work(system_long_wq, work, 0);
}

void rxdsk_queue_delayed_secs(struct delayed_work *work, unsigned int secs);
void rxdsk_queue_delayed_secs(struct delayed_work *work, unsigned int secs)
{
	queue_delayed_work(system_long_wq, work, secs_to_jiffies(secs));
}

/*
 * fail_rxdsk_decompress in debugfs (the kernel's fault-injection attributes: probability,
 * times, task-filter, ...): when it fires, a compressed object is garbled on its way to the
 * decompressor, so tests see what a corrupted object does. DECLARE_FAULT_ATTR is a macro.
 */
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static DECLARE_FAULT_ATTR(rxdsk_fail_decompress);
static struct dentry *rxdsk_fault_dir;
#endif

void rxdsk_faults_init(void);
void rxdsk_faults_init(void)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	struct dentry *dir = fault_create_debugfs_attr("fail_rxdsk_decompress", NULL,
						       &rxdsk_fail_decompress);

	/* Without debugfs there is simply nothing to inject. */
	rxdsk_fault_dir = IS_ERR(dir) ? NULL : dir;
#endif
}

void rxdsk_faults_exit(void);
void rxdsk_faults_exit(void)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	debugfs_remove_recursive(rxdsk_fault_dir);
	rxdsk_fault_dir = NULL;
#endif
}

bool rxdsk_should_garble_object(void);
bool rxdsk_should_garble_object(void)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	return should_fail(&rxdsk_fail_decompress, 1);
#else
	return false;
#endif
}

/*
 * CPU hotplug for the compression streams (compress.rs): one multi-instance state, each device
 * an instance; the callbacks run in the prepare stage (before a CPU comes up, after it is
 * dead), where they may sleep. The cpuhp_*_instance and _multi_state helpers are inline.
 */
int rxdsk_cpuhp_setup(int (*prepare)(unsigned int cpu, struct hlist_node *node),
		      int (*dead)(unsigned int cpu, struct hlist_node *node));
int rxdsk_cpuhp_setup(int (*prepare)(unsigned int cpu, struct hlist_node *node),
		      int (*dead)(unsigned int cpu, struct hlist_node *node))
{
	return cpuhp_setup_state_multi(CPUHP_BP_PREPARE_DYN, "block/rxdsk:prepare", prepare, dead);
}

void rxdsk_cpuhp_remove(int state);
void rxdsk_cpuhp_remove(int state)
{
	cpuhp_remove_multi_state(state);
}

int rxdsk_cpuhp_add_instance(int state, struct hlist_node *node);
int rxdsk_cpuhp_add_instance(int state, struct hlist_node *node)
{
	return cpuhp_state_add_instance(state, node);
}

void rxdsk_cpuhp_remove_instance(int state, struct hlist_node *node);
void rxdsk_cpuhp_remove_instance(int state, struct hlist_node *node)
{
	cpuhp_state_remove_instance(state, node);
}

/*
 * The cut lock (rwsem.rs): one lock class for every device's semaphore.
 *
 * The read side is percpu_down_read()/percpu_up_read() with the per-CPU count changed by
 * raw_cpu_inc()/raw_cpu_dec() under preempt_disable() instead of this_cpu_inc()/dec(). Our
 * readers are bios changing the store, in task context only (the lock sleeps, so it is never
 * taken where an interrupt could nest a second reader between the load and the store of the
 * count); the count only needs to stay on one CPU, which preempt_disable() ensures. Where
 * this_cpu ops are plain instructions (x86) the two are the same code; where they mask
 * interrupts they are dearer: on SMP User-Mode Linux, where the native bench runs, each mask
 * and unmask is a host sigprocmask() call, four per write (a fifth of a 4 KiB write's time).
 * The slow paths and the writer are the kernel's own.
 */
#include <linux/percpu-rwsem.h>

int rxdsk_percpu_init_rwsem(struct percpu_rw_semaphore *sem);
int rxdsk_percpu_init_rwsem(struct percpu_rw_semaphore *sem)
{
	return percpu_init_rwsem(sem);
}

void rxdsk_percpu_down_read(struct percpu_rw_semaphore *sem);
void rxdsk_percpu_down_read(struct percpu_rw_semaphore *sem)
{
	might_sleep();
	rwsem_acquire_read(&sem->dep_map, 0, 0, _RET_IP_);
	preempt_disable();
	/* As percpu_down_read(): an RCU-sched section against the writer's rcu_sync. */
	if (likely(rcu_sync_is_idle(&sem->rss)))
		raw_cpu_inc(*sem->read_count);
	else
		__percpu_down_read(sem, false, false);
	preempt_enable();
}

bool rxdsk_percpu_down_read_trylock(struct percpu_rw_semaphore *sem);
bool rxdsk_percpu_down_read_trylock(struct percpu_rw_semaphore *sem)
{
	return percpu_down_read_trylock(sem);
}

void rxdsk_percpu_up_read(struct percpu_rw_semaphore *sem);
void rxdsk_percpu_up_read(struct percpu_rw_semaphore *sem)
{
	rwsem_release(&sem->dep_map, _RET_IP_);
	preempt_disable();
	if (likely(rcu_sync_is_idle(&sem->rss)))
		raw_cpu_dec(*sem->read_count);
	else
		__percpu_up_read(sem);
	preempt_enable();
}

/* XArray reservations (xarray.rs): inline in xarray.h. */
int rxdsk_xa_reserve(struct xarray *xa, unsigned long index, gfp_t gfp);
int rxdsk_xa_reserve(struct xarray *xa, unsigned long index, gfp_t gfp)
{
	return xa_reserve(xa, index, gfp);
}

void rxdsk_xa_release(struct xarray *xa, unsigned long index);
void rxdsk_xa_release(struct xarray *xa, unsigned long index)
{
	xa_release(xa, index);
}

RXDSK_CONST(xa_mark_t, xa_mark_1, XA_MARK_1);

/*
 * Waiting for a counter that an RCU callback decrements (page.rs): wait_var_event on its
 * address, woken by wake_up_var after each decrement. Only our own callbacks are waited for.
 */
#include <linux/wait_bit.h>

void rxdsk_wait_below(u64 *counter, u64 bound);
void rxdsk_wait_below(u64 *counter, u64 bound)
{
	wait_var_event(counter, READ_ONCE(*counter) < bound);
}

void rxdsk_wake_counter(u64 *counter);
void rxdsk_wake_counter(u64 *counter)
{
	/* Orders the caller's decrement before the waiter's check of its condition. */
	smp_mb();
	wake_up_var(counter);
}

/*
 * Dropping a block device's cached pages from a position on, as the block layer's own
 * callers do (truncate_bdev_range is internal): under the mapping's invalidate lock, so no
 * read can bring a page back in between.
 */
#include <linux/pagemap.h>

void rxdsk_truncate_bdev_from(struct block_device *bdev, loff_t pos);
void rxdsk_truncate_bdev_from(struct block_device *bdev, loff_t pos)
{
	struct address_space *mapping = bdev->bd_mapping;

	filemap_invalidate_lock(mapping);
	truncate_inode_pages_range(mapping, pos, -1);
	filemap_invalidate_unlock(mapping);
}

/* The device number of a gendisk (disk_devt is inline). */
void rxdsk_disk_devt(struct gendisk *disk, u32 *major, u32 *minor);
void rxdsk_disk_devt(struct gendisk *disk, u32 *major, u32 *minor)
{
	*major = MAJOR(disk_devt(disk));
	*minor = MINOR(disk_devt(disk));
}

/* The module's reference count while a backing device is attached (ffi.rs). */
#include <linux/module.h>

void rxdsk_module_get(void);
void rxdsk_module_get(void)
{
	__module_get(THIS_MODULE);
}

void rxdsk_module_put(void);
void rxdsk_module_put(void)
{
	module_put(THIS_MODULE);
}

/*
 * Read-only attributes under /sys/block/rxdN/rxdsk/ (disk.rs): each show calls the one Rust
 * function registered for the disks' handler type, with the handler (the gendisk's
 * private_data, valid until del_gendisk, which removes these files first) and the
 * attribute's number (disk.rs's `Attr`, in this order).
 */
#include <linux/sysfs.h>

typedef ssize_t (*rxdsk_attr_show_fn)(void *handler, unsigned int attr, char *buf);
static rxdsk_attr_show_fn rxdsk_attr_show;

void rxdsk_set_attr_show(rxdsk_attr_show_fn show);
void rxdsk_set_attr_show(rxdsk_attr_show_fn show)
{
	WRITE_ONCE(rxdsk_attr_show, show);
}

#define RXDSK_ATTR(_name, _n)                                                    \
	static ssize_t _name##_show(struct device *dev,                            \
				    struct device_attribute *attr, char *buf)      \
	{                                                                          \
		rxdsk_attr_show_fn show = READ_ONCE(rxdsk_attr_show);              \
		return show ? show(dev_to_disk(dev)->private_data, _n, buf) : -ENODEV; \
	}                                                                          \
	static DEVICE_ATTR_RO(_name)

RXDSK_ATTR(size, 0);
RXDSK_ATTR(block_size, 1);
RXDSK_ATTR(mem_limit, 2);
RXDSK_ATTR(mem_used, 3);
RXDSK_ATTR(read_only, 4);
RXDSK_ATTR(open_count, 5);
RXDSK_ATTR(algorithm, 6);
RXDSK_ATTR(level, 7);
RXDSK_ATTR(backing, 8);
RXDSK_ATTR(mode, 9);
RXDSK_ATTR(journal_bytes, 10);
RXDSK_ATTR(dirty_pages, 11);
RXDSK_ATTR(unloaded_pages, 12);
RXDSK_ATTR(flush_generation, 13);
RXDSK_ATTR(io_stat, 14);
RXDSK_ATTR(mm_stat, 15);
RXDSK_ATTR(bd_stat, 16);
RXDSK_ATTR(cache_stat, 17);

static struct attribute *rxdsk_disk_attrs[] = {
	&dev_attr_size.attr,		 &dev_attr_block_size.attr,
	&dev_attr_mem_limit.attr,	 &dev_attr_mem_used.attr,
	&dev_attr_read_only.attr,	 &dev_attr_open_count.attr,
	&dev_attr_algorithm.attr,	 &dev_attr_level.attr,
	&dev_attr_backing.attr,		 &dev_attr_mode.attr,
	&dev_attr_journal_bytes.attr,	 &dev_attr_dirty_pages.attr,
	&dev_attr_unloaded_pages.attr, &dev_attr_flush_generation.attr,
	&dev_attr_io_stat.attr,		 &dev_attr_mm_stat.attr,
	&dev_attr_bd_stat.attr,		 &dev_attr_cache_stat.attr,
	NULL,
};

static const struct attribute_group rxdsk_disk_group = {
	.name = "rxdsk",
	.attrs = rxdsk_disk_attrs,
};

const struct attribute_group *rxdsk_disk_groups[] = { &rxdsk_disk_group, NULL };

/*
 * The module's version and ABI for anyone, in /sys/module/rxdsk/: `version` (MODULE_VERSION)
 * and the read-only parameter `abi` ("MAJOR.MINOR FEATURES", set by the Rust side at init;
 * a value given at load time is refused).
 */
#include <linux/moduleparam.h>

MODULE_VERSION("0.1.0");

static char rxdsk_abi[64];

static int rxdsk_abi_set(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static int rxdsk_abi_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", rxdsk_abi);
}

static const struct kernel_param_ops rxdsk_abi_ops = {
	.set = rxdsk_abi_set,
	.get = rxdsk_abi_get,
};
module_param_cb(abi, &rxdsk_abi_ops, NULL, 0444);
MODULE_PARM_DESC(abi, "ioctl ABI version and feature bits (read-only)");

void rxdsk_set_abi(u32 major, u32 minor, u64 features);
void rxdsk_set_abi(u32 major, u32 minor, u64 features)
{
	snprintf(rxdsk_abi, sizeof(rxdsk_abi), "%u.%u %#llx", major, minor, features);
}
