//! The identity an export shows its hosts, derived from the subsystem's NQN so that it is
//! the same every time the device is exported (nvmet's defaults are random: a new serial
//! and namespace UUID on every export change the hosts' /dev/disk/by-id names and their
//! multipath identity).
//!
//! The derivation, with SHA-256 and `NAMESPACE` (below):
//! - `digest(name) = SHA-256(NAMESPACE's 16 bytes || name)`, `name` as UTF-8 bytes;
//! - the subsystem's serial number (`attr_serial`): the first 10 bytes of `digest(NQN)` in
//!   lower-case hexadecimal, 20 characters (the field's size);
//! - namespace NSID's UUID (`device_uuid`): the first 16 bytes of `digest(NQN "/" NSID)`
//!   (NSID in decimal; an NQN has no `/`) with the version (8) and variant (10) bits set, as
//!   RFC 9562's name-based UUIDv8 with SHA-256 (its appendix B.2);
//! - its NGUID (`device_nguid`): the other 16 bytes of that digest, as they are.
//!
//! `NAMESPACE` is itself that UUIDv8 of the name `rxdsk.io` in RFC 9562's DNS namespace
//! (6ba7b810-9dad-11d1-80b4-00c04fd430c8): 921aa972-280f-8cf5-b9d2-c57c41082bdd.

use sha2::{Digest, Sha256};

/// The UUID namespace of rxdsk's names (see the module's documentation).
pub const NAMESPACE: [u8; 16] = [
    0x92, 0x1a, 0xa9, 0x72, 0x28, 0x0f, 0x8c, 0xf5, 0xb9, 0xd2, 0xc5, 0x7c, 0x41, 0x08, 0x2b, 0xdd,
];

/// RFC 9562's namespace for DNS names.
pub const DNS_NAMESPACE: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// What the hosts see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub serial: String,
    pub uuid: String,
    pub nguid: String,
}

/// The identity of subsystem `nqn` and its namespace `nsid`.
pub fn derive(nqn: &str, nsid: u32) -> Identity {
    let serial = Sha256::new()
        .chain_update(NAMESPACE)
        .chain_update(nqn)
        .finalize();
    let (uuid, rest) = name_based(&NAMESPACE, format!("{nqn}/{nsid}").as_bytes());
    Identity {
        serial: serial[..10].iter().map(|b| format!("{b:02x}")).collect(),
        uuid: format_uuid(&uuid),
        nguid: format_uuid(&rest),
    }
}

/// RFC 9562's name-based UUIDv8 with SHA-256 of `name` in `namespace`, and the digest's other
/// 16 bytes.
pub fn name_based(namespace: &[u8; 16], name: &[u8]) -> ([u8; 16], [u8; 16]) {
    let d = Sha256::new()
        .chain_update(namespace)
        .chain_update(name)
        .finalize();
    let mut uuid = [0; 16];
    let mut rest = [0; 16];
    uuid.copy_from_slice(&d[..16]);
    rest.copy_from_slice(&d[16..]);
    uuid[6] = uuid[6] & 0x0f | 0x80;
    uuid[8] = uuid[8] & 0x3f | 0x80;
    (uuid, rest)
}

/// 8-4-4-4-12 lower-case hexadecimal, as configfs writes UUIDs and NGUIDs (`%pUb`).
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9562, appendix B.2: "Example of a UUIDv8 Value (Name-Based)".
    #[test]
    fn the_rfcs_name_based_example() {
        let (uuid, _) = name_based(&DNS_NAMESPACE, b"www.example.com");
        assert_eq!(format_uuid(&uuid), "5c146b14-3c52-8afd-938a-375d0df1fbf6");
        assert_eq!(
            format_uuid(&DNS_NAMESPACE),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
    }

    #[test]
    fn the_namespace_is_derived_as_documented() {
        assert_eq!(name_based(&DNS_NAMESPACE, b"rxdsk.io").0, NAMESPACE);
        assert_eq!(
            format_uuid(&NAMESPACE),
            "921aa972-280f-8cf5-b9d2-c57c41082bdd"
        );
    }

    /// Values computed with Python's hashlib and uuid from the documented derivation.
    #[test]
    fn known_values() {
        assert_eq!(
            derive("nqn.2026-12.io.rxdsk:rxd0", 1),
            Identity {
                serial: "9011c443db2e840c0a09".into(),
                uuid: "9644d744-eb19-8326-bd90-0271ad626c55".into(),
                nguid: "23c21efa-2f33-5cd4-7dac-9add7f3ba115".into(),
            }
        );
        assert_eq!(
            derive("nqn.2026-12.io.rxdsk:rxd1", 1),
            Identity {
                serial: "31acbaf54e2b05278bfe".into(),
                uuid: "5087299d-275a-875b-aea2-3e52a8546d78".into(),
                nguid: "ae55a2e0-2962-06c0-5e7d-e7d97ac7166e".into(),
            }
        );
    }

    #[test]
    fn stable_and_distinct() {
        let a = derive("nqn.2026-12.io.rxdsk:rxd0", 1);
        assert_eq!(a, derive("nqn.2026-12.io.rxdsk:rxd0", 1));
        let others = [
            derive("nqn.2026-12.io.rxdsk:rxd00", 1),
            derive("nqn.2026-12.io.rxdsk:rxd0", 2),
            derive("nqn.2014-08.org.example:rxd0", 1),
        ];
        for o in &others {
            assert_ne!(a.uuid, o.uuid);
            assert_ne!(a.nguid, o.nguid);
        }
        // The serial is the subsystem's.
        assert_eq!(a.serial, others[1].serial);
        assert_ne!(a.serial, others[0].serial);
        // What attr_serial takes: at most 20 printable ASCII characters.
        assert_eq!(a.serial.len(), 20);
        assert!(a.serial.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        // The version and variant bits.
        assert_eq!(&a.uuid[14..15], "8");
        assert!("89ab".contains(&a.uuid[19..20]));
    }
}
