// SPDX-License-Identifier: GPL-2.0

//! Windows onto I/O memory that others may change while we use it: the data pages of a bio
//! (O_DIRECT user buffers, page-cache pages under writeback). Such memory is never put behind a
//! Rust reference; it is copied and tested through raw pointers only, as
//! `kernel::page::Page::{read_raw, write_raw}` do. A concurrent change makes the copied bytes a
//! mix of old and new, which is the submitter's race (the same as for any block device), never
//! undefined behaviour on our side.

use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::bindings;

/// `len` bytes of mapped I/O memory at `ptr`, for lifetime `'a`.
///
/// # Invariants
///
/// `ptr .. ptr + len` is mapped, readable and writable for `'a`, and no Rust reference to it
/// exists (others may still write it concurrently).
pub(crate) struct IoMem<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a ()>,
}

impl<'a> IoMem<'a> {
    /// # Safety
    ///
    /// `ptr .. ptr + len` is mapped, readable and writable for `'a`, and the caller creates no
    /// Rust reference to it during `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        // INVARIANT: the caller's promise.
        Self { ptr, len, _mapping: PhantomData }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte; valid for [`IoMem::len`] bytes (type invariants).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Splits at `mid` (clamped to the length): the first `mid` bytes and the rest.
    pub(crate) fn split_at(self, mid: usize) -> (IoMem<'a>, IoMem<'a>) {
        let mid = mid.min(self.len);
        // SAFETY: `mid <= len`, so the offset stays inside the window.
        let rest = unsafe { self.ptr.add(mid) };
        // INVARIANT: both halves lie inside the original window and inherit its promise.
        (
            IoMem { ptr: self.ptr, len: mid, _mapping: PhantomData },
            IoMem { ptr: rest, len: self.len - mid, _mapping: PhantomData },
        )
    }

    /// Whether every byte is zero right now (a concurrent writer may change that at once; a
    /// zero page stored for racing data is the submitter's race, like any torn write).
    pub(crate) fn is_zero(&self) -> bool {
        // SAFETY: The window is mapped and readable (invariant); `memchr_inv` only reads it,
        // through a raw pointer, byte or word at a time.
        unsafe { bindings::memchr_inv(self.as_ptr().cast(), 0, self.len) }.is_null()
    }

    /// Copies `src` (kernel memory we own) to the start of the window; at most `len` bytes.
    pub(crate) fn copy_from_slice(&mut self, src: &[u8]) {
        let n = src.len().min(self.len);
        // SAFETY: The window is writable for `len >= n` bytes (invariant); `src` is a distinct
        // kernel buffer, so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr(), n) };
    }

    /// Copies the start of `src`, another window, to the start of this one; at most the
    /// shorter length. The windows may overlap (then as `memmove`).
    pub(crate) fn copy_from_io(&mut self, src: &IoMem<'_>) {
        let n = src.len.min(self.len);
        // SAFETY: Both windows are mapped for at least `n` bytes (invariants), this one
        // writable; `ptr::copy` allows the ranges to overlap. Neither is behind a Rust
        // reference.
        unsafe { core::ptr::copy(src.as_ptr(), self.as_ptr(), n) };
    }

    /// Copies the start of the window into `dst`; at most `len` bytes.
    pub(crate) fn copy_to_slice(&self, dst: &mut [u8]) {
        let n = dst.len().min(self.len);
        // SAFETY: The window is readable for `len >= n` bytes (invariant); `dst` is a distinct
        // kernel buffer.
        unsafe { core::ptr::copy_nonoverlapping(self.as_ptr(), dst.as_mut_ptr(), n) };
    }

    /// Fills the window with zeros.
    pub(crate) fn zero(&mut self) {
        // SAFETY: The window is mapped and writable (invariant).
        unsafe { core::ptr::write_bytes(self.as_ptr(), 0, self.len) };
    }
}
