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
