//! Host-side checks: the numbers we compute equal those nix computes from the same types, which
//! are the numbers the C macros `_IOR`/`_IOW`/`_IOWR` give. The kernel module checks the same
//! numbers against `kernel::ioctl` at compile time.

use super::*;

#[test]
fn numbers_match_nix() {
    assert_eq!(
        RXDSK_IOC_GET_VERSION as u64,
        nix::request_code_read!(
            RXDSK_IOC_MAGIC,
            nr::GET_VERSION,
            core::mem::size_of::<RxdskVersion>()
        ) as u64
    );
    assert_eq!(
        RXDSK_IOC_GET_FEATURES as u64,
        nix::request_code_read!(
            RXDSK_IOC_MAGIC,
            nr::GET_FEATURES,
            core::mem::size_of::<RxdskFeatures>()
        ) as u64
    );
}

#[test]
fn known_encoding() {
    // _IOR(0xDB, 0x00, 72 bytes) written out by hand: dir=2, size=72, type=0xDB, nr=0.
    assert_eq!(RXDSK_IOC_GET_VERSION, (2 << 30) | (72 << 16) | (0xDB << 8));
}

#[test]
fn fixed_str_pads_and_truncates() {
    assert_eq!(fixed_str::<4>("ab"), [b'a', b'b', 0, 0]);
    assert_eq!(fixed_str::<4>("abcdef"), [b'a', b'b', b'c', 0]);
}
