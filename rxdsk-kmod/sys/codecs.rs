// SPDX-License-Identifier: GPL-2.0

//! The kernel's LZO, LZ4 and zstd libraries, which have no Rust bindings: their functions as
//! lib/lzo, lib/lz4 and lib/zstd export them (the signatures of linux/lzo.h, linux/lz4.h and
//! linux/zstd.h) and zstd's parameter structures, declared once for the module
//! (`sys/compress.rs`) and the bench's codec slot (rxdsk-kbench, which includes this file).

use core::ffi::{c_char, c_int, c_uint, c_void};

/// zstd's `ZSTD_compressionParameters` (zstd_lib.h; the strategy enum is an `int`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ZstdCompressionParameters {
    pub(crate) window_log: c_uint,
    pub(crate) chain_log: c_uint,
    pub(crate) hash_log: c_uint,
    pub(crate) search_log: c_uint,
    pub(crate) min_match: c_uint,
    pub(crate) target_length: c_uint,
    pub(crate) strategy: c_int,
}

/// zstd's `ZSTD_frameParameters`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ZstdFrameParameters {
    pub(crate) content_size_flag: c_int,
    pub(crate) checksum_flag: c_int,
    pub(crate) no_dict_id_flag: c_int,
}

/// zstd's `ZSTD_parameters` (`zstd_parameters` in linux/zstd.h).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ZstdParameters {
    pub(crate) c: ZstdCompressionParameters,
    pub(crate) f: ZstdFrameParameters,
}

const _: () = assert!(core::mem::size_of::<ZstdParameters>() == 40);

unsafe extern "C" {
    pub(crate) fn lzo1x_1_compress(src: *const u8, src_len: usize, dst: *mut u8, dst_len: *mut usize, wrkmem: *mut c_void) -> c_int;
    pub(crate) fn lzorle1x_1_compress(src: *const u8, src_len: usize, dst: *mut u8, dst_len: *mut usize, wrkmem: *mut c_void)
        -> c_int;
    pub(crate) fn lzo1x_decompress_safe(src: *const u8, src_len: usize, dst: *mut u8, dst_len: *mut usize) -> c_int;
    pub(crate) fn LZ4_compress_fast(
        source: *const c_char,
        dest: *mut c_char,
        input_size: c_int,
        max_output_size: c_int,
        acceleration: c_int,
        wrkmem: *mut c_void,
    ) -> c_int;
    pub(crate) fn LZ4_decompress_safe(source: *const c_char, dest: *mut c_char, compressed_size: c_int, max_size: c_int) -> c_int;
    pub(crate) fn zstd_min_clevel() -> c_int;
    pub(crate) fn zstd_max_clevel() -> c_int;
    pub(crate) fn zstd_default_clevel() -> c_int;
    pub(crate) fn zstd_get_params(level: c_int, estimated_src_size: u64) -> ZstdParameters;
    pub(crate) fn zstd_cctx_workspace_bound(parameters: *const ZstdCompressionParameters) -> usize;
    pub(crate) fn zstd_init_cctx(workspace: *mut c_void, size: usize) -> *mut c_void;
    pub(crate) fn zstd_compress_cctx(
        cctx: *mut c_void,
        dst: *mut c_void,
        dst_capacity: usize,
        src: *const c_void,
        src_size: usize,
        parameters: *const ZstdParameters,
    ) -> usize;
    pub(crate) fn zstd_dctx_workspace_bound() -> usize;
    pub(crate) fn zstd_init_dctx(workspace: *mut c_void, size: usize) -> *mut c_void;
    pub(crate) fn zstd_decompress_dctx(dctx: *mut c_void, dst: *mut c_void, dst_capacity: usize, src: *const c_void, size: usize)
        -> usize;
    pub(crate) fn zstd_is_error(code: usize) -> c_uint;
}
