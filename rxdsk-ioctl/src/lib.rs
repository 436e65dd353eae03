//! The rxdsk ioctl ABI, shared by the kernel module and `rxdskctl`.
//!
//! The definitions live in `abi.rs`, which holds no crate-level attributes so that the kernel
//! module can include it verbatim with `#[path]`: one source of truth for both sides.
#![no_std]

mod abi;
pub use abi::*;
mod image;
pub use image::*;

#[cfg(test)]
mod tests;
