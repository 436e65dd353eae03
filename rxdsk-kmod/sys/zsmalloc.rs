// SPDX-License-Identifier: GPL-2.0

//! The zsmalloc allocator (mm/zsmalloc.c), which has no Rust binding: declared here once, and a
//! pool of compressed objects over it.

use crate::sys::ffi::{self, Gfp};
use core::ptr::NonNull;
use kernel::ffi::{c_char, c_int, c_ulong, c_void};
use kernel::{prelude::*, str::CStr};

// Exported by mm/zsmalloc.c (GPL); the signatures are those of linux/zsmalloc.h.
unsafe extern "C" {
    fn zs_create_pool(name: *const c_char) -> *mut c_void;
    fn zs_destroy_pool(pool: *mut c_void);
    fn zs_malloc(pool: *mut c_void, size: usize, flags: Gfp, nid: c_int) -> c_ulong;
    fn zs_free(pool: *mut c_void, handle: c_ulong);
    fn zs_huge_class_size(pool: *mut c_void) -> usize;
    fn zs_get_total_pages(pool: *mut c_void) -> c_ulong;
    fn zs_compact(pool: *mut c_void) -> c_ulong;
    fn zs_obj_read_begin(pool: *mut c_void, handle: c_ulong, mem_len: usize, local_copy: *mut c_void) -> *mut c_void;
    fn zs_obj_read_end(pool: *mut c_void, handle: c_ulong, mem_len: usize, handle_mem: *mut c_void);
    fn zs_obj_write(pool: *mut c_void, handle: c_ulong, handle_mem: *mut c_void, mem_len: usize);
}

/// A zsmalloc object.
#[derive(Clone, Copy)]
pub(crate) struct Handle(c_ulong);

/// A zsmalloc pool.
///
/// # Invariants
///
/// `pool` came from `zs_create_pool` and is destroyed only by `drop`.
pub(crate) struct Pool {
    pool: NonNull<c_void>,
}

// SAFETY: zsmalloc pools are used from any thread; they lock internally.
unsafe impl Send for Pool {}
// SAFETY: As above.
unsafe impl Sync for Pool {}

impl Pool {
    pub(crate) fn new(name: &CStr) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated; zsmalloc copies it.
        let pool = unsafe { zs_create_pool(name.as_char_ptr()) };
        Ok(Self { pool: NonNull::new(pool).ok_or(ENOMEM)? })
    }

    /// Objects of this size or more take a zspage of their own: such pages are stored whole.
    pub(crate) fn huge_class_size(&self) -> usize {
        // SAFETY: The pool is valid (invariant).
        unsafe { zs_huge_class_size(self.pool.as_ptr()) }
    }

    /// Pages the pool holds now, its own overhead included.
    pub(crate) fn total_pages(&self) -> u64 {
        // SAFETY: The pool is valid (invariant).
        unsafe { zs_get_total_pages(self.pool.as_ptr()) as u64 }
    }

    /// Moves objects together so that emptied zspages go back to the system (after objects
    /// were freed in numbers, as by eviction); may sleep.
    pub(crate) fn compact(&self) {
        // SAFETY: The pool is valid (invariant); compaction is safe alongside any other use
        // of the pool (zram runs it from sysfs while I/O goes on).
        unsafe { zs_compact(self.pool.as_ptr()) };
    }

    /// Allocates an object of `len` bytes (at most a page) holding `data`.
    ///
    /// # Safety
    ///
    /// `data` is valid for reading `len` bytes.
    pub(crate) unsafe fn store(&self, data: *const u8, len: usize, gfp: Gfp) -> Result<Handle> {
        // SAFETY: The pool is valid (invariant); `len` is at most a page (caller).
        let handle = unsafe { zs_malloc(self.pool.as_ptr(), len, gfp | ffi::GFP_NOWARN | ffi::GFP_HIGHMEM, -1) };
        // Errors come back as `ERR_PTR` values.
        if handle == 0 || handle >= (-4095isize) as c_ulong {
            return Err(ENOMEM);
        }
        // SAFETY: A fresh object of `len` bytes; `data` is readable (caller).
        unsafe { zs_obj_write(self.pool.as_ptr(), handle, data.cast_mut().cast(), len) };
        Ok(Handle(handle))
    }

    /// Calls `f` with the address of object `handle`'s `len` bytes (copied into `scratch` when
    /// the object straddles two pages), valid only during the call.
    ///
    /// # Safety
    ///
    /// `handle` is a live object of this pool of `len` bytes that nobody frees during the
    /// call; `scratch` is valid for writing `len` bytes.
    pub(crate) unsafe fn with_object<R>(&self, handle: Handle, len: usize, scratch: *mut u8, f: impl FnOnce(*const u8) -> R) -> R {
        // SAFETY: As the caller guarantees; the mapping is undone below.
        let mem = unsafe { zs_obj_read_begin(self.pool.as_ptr(), handle.0, len, scratch.cast()) };
        let r = f(mem.cast_const().cast());
        // SAFETY: Pairs with the begin above, with the address it returned.
        unsafe { zs_obj_read_end(self.pool.as_ptr(), handle.0, len, mem) };
        r
    }

    /// # Safety
    ///
    /// `handle` is a live object of this pool that nobody uses any more.
    pub(crate) unsafe fn free(&self, handle: Handle) {
        // SAFETY: As the caller guarantees.
        unsafe { zs_free(self.pool.as_ptr(), handle.0) };
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: Valid (invariant); every object was freed by the store first.
        unsafe { zs_destroy_pool(self.pool.as_ptr()) };
    }
}

impl Handle {
    /// The handle stored in a descriptor by [`Handle::into_raw`].
    pub(crate) fn from_raw(value: usize) -> Self {
        Self(value)
    }

    pub(crate) fn into_raw(self) -> usize {
        self.0
    }
}
