//! Host-side checks: the numbers we compute equal those nix computes from the same types, which
//! are the numbers the C macros `_IOR`/`_IOW`/`_IOWR` give. The kernel module checks the same
//! numbers against `kernel::ioctl` at compile time.

use super::*;
use core::mem::size_of;

#[test]
fn numbers_match_nix() {
    let m = RXDSK_IOC_MAGIC;
    let cases: &[(u32, u64)] = &[
        (
            RXDSK_IOC_GET_VERSION,
            nix::request_code_read!(m, nr::GET_VERSION, size_of::<RxdskVersion>()),
        ),
        (
            RXDSK_IOC_GET_FEATURES,
            nix::request_code_read!(m, nr::GET_FEATURES, size_of::<RxdskFeatures>()),
        ),
        (
            RXDSK_IOC_CREATE,
            nix::request_code_readwrite!(m, nr::CREATE, size_of::<RxdskCreate>()),
        ),
        (
            RXDSK_IOC_DESTROY,
            nix::request_code_write!(m, nr::DESTROY, size_of::<RxdskDestroy>()),
        ),
        (
            RXDSK_IOC_RESIZE,
            nix::request_code_write!(m, nr::RESIZE, size_of::<RxdskResize>()),
        ),
        (
            RXDSK_IOC_INFO,
            nix::request_code_readwrite!(m, nr::INFO, size_of::<RxdskInfo>()),
        ),
        (
            RXDSK_IOC_LIST,
            nix::request_code_readwrite!(m, nr::LIST, size_of::<RxdskList>()),
        ),
        (
            RXDSK_IOC_STATS,
            nix::request_code_readwrite!(m, nr::STATS, size_of::<RxdskStats>()),
        ),
        (
            RXDSK_IOC_ATTACH,
            nix::request_code_write!(m, nr::ATTACH, size_of::<RxdskAttach>()),
        ),
        (
            RXDSK_IOC_DETACH,
            nix::request_code_write!(m, nr::DETACH, size_of::<RxdskDetach>()),
        ),
        (
            RXDSK_IOC_FLUSH,
            nix::request_code_readwrite!(m, nr::FLUSH, size_of::<RxdskFlush>()),
        ),
        (
            RXDSK_IOC_RESTORE,
            nix::request_code_readwrite!(m, nr::RESTORE, size_of::<RxdskRestore>()),
        ),
    ];
    for (ours, nix) in cases {
        assert_eq!(*ours as u64, *nix, "{ours:#x} vs {nix:#x}");
    }
}

#[test]
fn numbers_are_distinct() {
    let all = [
        RXDSK_IOC_GET_VERSION,
        RXDSK_IOC_GET_FEATURES,
        RXDSK_IOC_CREATE,
        RXDSK_IOC_DESTROY,
        RXDSK_IOC_RESIZE,
        RXDSK_IOC_INFO,
        RXDSK_IOC_LIST,
        RXDSK_IOC_STATS,
        RXDSK_IOC_ATTACH,
        RXDSK_IOC_DETACH,
        RXDSK_IOC_FLUSH,
        RXDSK_IOC_RESTORE,
    ];
    for (i, a) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|b| a != b));
    }
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

#[test]
fn image_checksum_is_crc32c() {
    // The standard check value of CRC-32C.
    assert_eq!(image_checksum(b"123456789"), 0xE306_9283);
    assert_eq!(image_checksum(b""), 0);
}

#[test]
fn image_header_round_trip_and_damage() {
    let h = RxdskImageHeader::new(
        512,
        1 << 30,
        7,
        RXDSK_IMAGE_FLUSHING,
        1_700_000_000_000_000_000,
    );
    assert_eq!(h.flushing_generation, 8);
    let mut block = [0u8; 4096];
    block[..136].copy_from_slice(&h.to_bytes());
    assert_eq!(RxdskImageHeader::parse(&block), Ok(h));
    // Any flipped bit of the checked part is caught.
    for byte in [0usize, 9, 20, 33, 60, 127] {
        let mut bad = block;
        bad[byte] ^= 0x10;
        let err = RxdskImageHeader::parse(&bad).unwrap_err();
        assert!(
            matches!(err, ImageError::Checksum | ImageError::NotAnImage),
            "byte {byte}: {err:?}"
        );
    }
    assert_eq!(
        RxdskImageHeader::parse(&[0u8; 4096]),
        Err(ImageError::NotAnImage)
    );
    // A valid checksum over invalid fields is still refused.
    let mut odd = RxdskImageHeader::new(4096, 4096 * 3, 1, RXDSK_IMAGE_CLEAN, 0);
    odd.state = 9;
    odd.checksum = image_checksum(&odd.to_bytes()[..128]);
    assert_eq!(
        RxdskImageHeader::parse(&odd.to_bytes()),
        Err(ImageError::Invalid)
    );
}

#[test]
fn image_geometry() {
    assert_eq!(header_offset(4095), None);
    assert_eq!(header_offset(4096), Some(0));
    assert_eq!(header_offset(1 << 30), Some((1 << 30) - 4096));
    assert_eq!(header_offset((1 << 30) + 1000), Some((1 << 30) - 4096));
    assert!(image_fits((1 << 30) - 4096, 0, 1 << 30));
    assert!(!image_fits(1 << 30, 0, 1 << 30));
    assert!(!image_fits(1, 0, 100));
    // A journal sits after the data rounded up to 4 KiB, before the metadata block.
    assert_eq!(journal_offset(512), 4096);
    assert_eq!(journal_offset(8192), 8192);
    assert!(image_fits(512, 4096, 3 * 4096));
    assert!(!image_fits(512, 8192, 3 * 4096));
    assert!(!image_fits(u64::MAX - 4096, 8192, u64::MAX));
}

#[test]
fn journal_capacity() {
    // n data blocks plus ceil(n / 512) table blocks.
    assert!(
        !journal_holds(4096, 0),
        "an empty journal flush is never needed"
    );
    assert!(journal_holds(2 * 4096, 1));
    assert!(!journal_holds(4096, 1));
    assert!(journal_holds(513 * 4096, 512));
    assert!(!journal_holds(513 * 4096, 513));
    assert!(journal_holds(515 * 4096, 513));
    assert!(!journal_holds(u64::MAX, u64::MAX));
    assert_eq!(journal_table_blocks(1), 1);
    assert_eq!(journal_table_blocks(512), 1);
    assert_eq!(journal_table_blocks(513), 2);
}

#[test]
fn journaled_header_round_trip_and_checks() {
    let base = RxdskImageHeader::new(4096, 1 << 20, 4, RXDSK_IMAGE_JOURNALED, 0).with(
        RXDSK_IMAGE_WRITEBACK,
        64 * 4096,
        30,
    );
    let h = base.committing(10, 0xDEAD_BEEF);
    assert_eq!(h.flushing_generation, 5);
    assert_eq!(h.journal_offset, 1 << 20);
    assert_eq!(h.flush_interval_secs, 30);
    assert_eq!(RxdskImageHeader::parse(&h.to_bytes()), Ok(h));
    // More entries than the journal holds, or none, cannot be a commit.
    for entries in [0, 64] {
        let bad = base.committing(entries, 1);
        assert_eq!(
            RxdskImageHeader::parse(&bad.to_bytes()),
            Err(ImageError::Invalid),
            "{entries} entries"
        );
    }
    // A journal that is not where the data ends, or an unknown mode.
    let mut moved = h;
    moved.journal_offset += 4096;
    assert_eq!(
        RxdskImageHeader::parse(&moved.sealed().to_bytes()),
        Err(ImageError::Invalid)
    );
    let mut mode = h;
    mode.mode = 7;
    assert_eq!(
        RxdskImageHeader::parse(&mode.sealed().to_bytes()),
        Err(ImageError::Invalid)
    );
    let wt = RxdskImageHeader::new(512, 4096, 2, RXDSK_IMAGE_CLEAN, 1).with(
        RXDSK_IMAGE_WRITETHROUGH,
        0,
        0,
    );
    assert_eq!(RxdskImageHeader::parse(&wt.to_bytes()), Ok(wt));
}

#[test]
fn checksum_continues_across_parts() {
    let whole = image_checksum(b"123456789");
    let part = checksum_continue(checksum_continue(!0, b"1234"), b"56789");
    assert_eq!(!part, whole);
}
