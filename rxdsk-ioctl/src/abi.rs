// SPDX-License-Identifier: GPL-2.0 OR MIT

//! rxdsk ioctl ABI, version 1.
//!
//! Rules (see `Documentation/driver-api/ioctl.rst`): only fixed-width integers, natural alignment
//! with explicit padding, reserved tails that the kernel requires to be zero on input and zeroes
//! on output, sizes and alignments asserted at compile time, numbers encoded with the generic
//! `_IOC` layout. A field is never reinterpreted: new features take reserved space and announce
//! themselves through [`RXDSK_IOC_GET_FEATURES`].

#![allow(dead_code)]

/// ioctl type byte; free in `Documentation/userspace-api/ioctl/ioctl-number.rst`.
pub const RXDSK_IOC_MAGIC: u8 = 0xDB;

/// Incompatible ABI changes bump this; a client must refuse a module with another major.
pub const RXDSK_ABI_MAJOR: u32 = 1;
/// Compatible additions (new commands, new feature bits) bump this.
pub const RXDSK_ABI_MINOR: u32 = 0;

/// Name of the control node under `/dev`.
pub const RXDSK_CONTROL_NAME: &str = "rxdsk-control";
/// Prefix of the block device names (`rxd0`, `rxd1`, ...).
pub const RXDSK_DISK_PREFIX: &str = "rxd";

// Generic `_IOC` bit layout (x86, arm, arm64, riscv, s390, loongarch).
const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS));
    assert!(nr < (1 << IOC_NRBITS));
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((RXDSK_IOC_MAGIC as u32) << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
}
const fn ior<T>(nr: u32) -> u32 {
    ioc(IOC_READ, nr, core::mem::size_of::<T>())
}
const fn iow<T>(nr: u32) -> u32 {
    ioc(IOC_WRITE, nr, core::mem::size_of::<T>())
}
const fn iowr<T>(nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, nr, core::mem::size_of::<T>())
}

/// Command numbers (the `nr` part); the full numbers follow below.
pub mod nr {
    /// See [`super::RXDSK_IOC_GET_VERSION`].
    pub const GET_VERSION: u32 = 0x00;
    /// See [`super::RXDSK_IOC_GET_FEATURES`].
    pub const GET_FEATURES: u32 = 0x01;
}

/// Answer of [`RXDSK_IOC_GET_VERSION`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskVersion {
    /// [`RXDSK_ABI_MAJOR`] of the module.
    pub abi_major: u32,
    /// [`RXDSK_ABI_MINOR`] of the module.
    pub abi_minor: u32,
    /// The module's version string, NUL-padded.
    pub module_version: [u8; 32],
    /// Zero.
    pub reserved: [u64; 4],
}

/// Answer of [`RXDSK_IOC_GET_FEATURES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxdskFeatures {
    /// `RXDSK_FEATURE_*` bits the module supports.
    pub features: u64,
    /// Zero.
    pub reserved: [u64; 3],
}

/// The module answers [`RXDSK_IOC_GET_VERSION`] and [`RXDSK_IOC_GET_FEATURES`].
pub const RXDSK_FEATURE_VERSION: u64 = 1 << 0;
/// Every feature bit this ABI revision defines.
pub const RXDSK_FEATURES_ALL: u64 = RXDSK_FEATURE_VERSION;

/// Reads the module's ABI and module versions.
pub const RXDSK_IOC_GET_VERSION: u32 = ior::<RxdskVersion>(nr::GET_VERSION);
/// Reads the feature mask.
pub const RXDSK_IOC_GET_FEATURES: u32 = ior::<RxdskFeatures>(nr::GET_FEATURES);

const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<RxdskVersion>() == 72);
    assert!(align_of::<RxdskVersion>() == 8);
    assert!(size_of::<RxdskFeatures>() == 32);
    assert!(align_of::<RxdskFeatures>() == 8);
};

/// Copies `s` into a NUL-padded fixed-size field, truncating if needed (the last byte stays NUL).
pub const fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() && i + 1 < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
