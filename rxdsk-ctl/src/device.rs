//! Device names: `/dev/rxd0`, `rxd0` and `0` all name device 0.

use rxdsk_ioctl::RXDSK_DISK_PREFIX;

/// The block device node of device `id`.
pub fn device_path(id: u32) -> String {
    format!("/dev/{}", device_name(id))
}

/// The kernel's name of device `id` (`rxd0`), as in `/sys/block`.
pub fn device_name(id: u32) -> String {
    format!("{RXDSK_DISK_PREFIX}{id}")
}

/// The device number (major, minor) of the node at `path`.
pub fn devt(path: &str) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(path).ok()?.rdev();
    Some((
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    ))
}

/// Parses a DEVICE argument into a device id.
pub fn parse_device(s: &str) -> Result<u32, String> {
    let bad = || format!("not an rxdsk device: \"{s}\" (expected /dev/rxdN, rxdN or N)");
    let number = match s.strip_prefix("/dev/") {
        Some(name) => name.strip_prefix(RXDSK_DISK_PREFIX).ok_or_else(bad)?,
        None => s.strip_prefix(RXDSK_DISK_PREFIX).unwrap_or(s),
    };
    // Only the canonical spelling: no sign, no leading zeros (`/dev/rxd01` does not exist).
    let canonical = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && (number == "0" || !number.starts_with('0'));
    if !canonical {
        return Err(bad());
    }
    number.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_an_id() {
        assert_eq!(device_path(0), "/dev/rxd0");
        assert_eq!(device_path(1023), "/dev/rxd1023");
    }

    #[test]
    fn accepts_the_three_spellings() {
        for s in ["/dev/rxd7", "rxd7", "7"] {
            assert_eq!(parse_device(s), Ok(7), "{s}");
        }
        assert_eq!(parse_device("0"), Ok(0));
        assert_eq!(parse_device("/dev/rxd0"), Ok(0));
        assert_eq!(parse_device("rxd4294967295"), Ok(u32::MAX));
    }

    #[test]
    fn rejects_anything_else_naming_the_argument() {
        for s in [
            "",
            "rxd",
            "/dev/rxd",
            "/dev/7",
            "/dev/loop0",
            "/dev/rxd0p1",
            "dev/rxd0",
            "/dev//rxd0",
            "rxd-1",
            "-1",
            "+1",
            "01",
            "rxd00",
            " 1",
            "1 ",
            "RXD1",
            "rxd4294967296",
            "0x1",
        ] {
            assert_eq!(
                parse_device(s),
                Err(format!(
                    "not an rxdsk device: \"{s}\" (expected /dev/rxdN, rxdN or N)"
                )),
                "{s:?}"
            );
        }
    }
}
