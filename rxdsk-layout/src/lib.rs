//! rxdsk's I/O-path arithmetic, testable and benchmarkable on the host.
//!
//! The definitions live in `layout.rs`, which holds no crate-level attributes so that the
//! kernel module can include it verbatim with `#[path]`, as it does the ABI.
#![no_std]

mod layout;
pub use layout::*;

#[cfg(test)]
mod tests;
