// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel macros that bindgen cannot translate (values with casts, function-like macros),
 * compiled against the headers of the kernel this module is built for, so that the Rust side
 * copies no constant by hand. Declared and wrapped in ffi.rs.
 */
#include <linux/blkdev.h>
#include <linux/gfp.h>
#include <linux/sched.h>
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

void rxdsk_cond_resched(void);
void rxdsk_cond_resched(void)
{
	cond_resched();
}
