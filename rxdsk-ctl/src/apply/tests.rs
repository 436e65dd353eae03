//! Planning as a pure function: configuration and state in, steps or errors out.

use super::*;
use rxdsk_ioctl::{
    RXDSK_FLAG_COMPRESSED, RXDSK_FLAG_WRITEAROUND, RXDSK_FLAG_WRITETHROUGH, RXDSK_IMAGE_CLEAN,
    RXDSK_IMAGE_WRITEAROUND, RXDSK_IMAGE_WRITEBACK, RXDSK_IMAGE_WRITETHROUGH,
};

const F: &str = "/etc/rxdsk.conf";
const G: u64 = 1 << 30;
const M: u64 = 1 << 20;

fn config(text: &str) -> Config {
    crate::config::parse(
        &[(F.to_string(), text.to_string())],
        &crate::config::Machine::default(),
    )
    .unwrap_or_else(|e| panic!("{text}: {e:?}"))
}

fn device(id: u32, size: u64) -> DeviceState {
    DeviceState {
        info: RxdskInfo {
            id,
            logical_block_size: 4096,
            size_bytes: size,
            ..Default::default()
        },
        compress: None,
    }
}

fn with_data(mut d: DeviceState) -> DeviceState {
    d.info.used_bytes = 8192;
    d
}

fn state(devices: &[DeviceState]) -> State {
    State {
        devices: devices.iter().map(|d| (d.info.id, *d)).collect(),
        ..Default::default()
    }
}

fn image(size: u64, generation: u64) -> RxdskImageHeader {
    RxdskImageHeader::new(4096, size, generation, RXDSK_IMAGE_CLEAN, 0)
}

fn backing(state: &mut State, path: &str, devno: (u32, u32), image: Option<RxdskImageHeader>) {
    state.backings.insert(
        path.to_string(),
        BackingState {
            devno: Some(devno),
            image: Ok(image),
            bytes: None,
        },
    );
}

/// A blank backing device of `bytes` (no image, nothing on it).
fn blank(state: &mut State, path: &str, devno: (u32, u32), bytes: u64) {
    state.backings.insert(
        path.to_string(),
        BackingState {
            devno: Some(devno),
            image: Ok(None),
            bytes: Some(bytes),
        },
    );
}

fn steps(text: &str, state: &State) -> Vec<Step> {
    let plans = plan(&config(text), &[], state, false).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(plans.len(), 1, "{plans:?}");
    plans[0].steps.clone()
}

/// The dry-run lines of a plan.
fn lines(text: &str, state: &State, activate: bool) -> Vec<String> {
    let plans = plan(&config(text), &[], state, activate).unwrap_or_else(|e| panic!("{e:?}"));
    describe_plan(&plans).into_iter().map(|r| r.text).collect()
}

fn errors(text: &str, state: &State) -> Vec<String> {
    match plan(&config(text), &[], state, false) {
        Ok(p) => panic!("{text} planned {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_new_device_is_created_with_its_id() {
    let s = steps(
        "[rxd3]\nsize=1G\nblock-size=512\ncompress=zstd\ncompress-level=7\nmem-limit=256M\n",
        &State::default(),
    );
    let Step::Create(r) = &s[0] else {
        panic!("{s:?}")
    };
    assert_eq!(
        (
            r.id,
            r.size_bytes,
            r.logical_block_size,
            r.mem_limit_bytes,
            r.compress,
            r.compress_level
        ),
        (3, G, 512, 256 * M, rxdsk_ioctl::RXDSK_COMPRESS_ZSTD, 7)
    );
    assert_eq!(r.flags, rxdsk_ioctl::RXDSK_CREATE_WITH_ID);
    assert_eq!(s.len(), 1);
    assert_eq!(
        lines(
            "[rxd3]\nsize=1G\nblock-size=512\ncompress=zstd\ncompress-level=7\nmem-limit=256M\n",
            &State::default(),
            false
        ),
        ["rxd3: would create 1G, 512-byte blocks, zstd level 7, memory limit 256M"]
    );
}

#[test]
fn a_new_swap_or_filesystem_device_is_formatted() {
    assert_eq!(
        lines("[rxd0]\nsize=1G\ncompress=lz4\nswap-priority=100\n[rxd1]\nsize=64M\nfs-type=ext4\nmount-point=/mnt\n", &State::default(), false),
        [
            "rxd0: would create 1G, lz4",
            "rxd0: would format as swap",
            "rxd1: would create 64M",
            "rxd1: would format as ext4",
        ]
    );
}

#[test]
fn activation_is_planned_only_with_activate_and_only_when_missing() {
    let text = "[rxd0]\nsize=1G\nswap-priority=100\n[rxd1]\nsize=64M\nfs-type=ext4\nmount-point=/mnt/a\noptions=noatime\n[rxd2]\nsize=1G\n";
    assert_eq!(
        lines(text, &State::default(), true),
        [
            "rxd0: would create 1G",
            "rxd0: would format as swap",
            "rxd0: would activate as swap (priority 100)",
            "rxd1: would create 64M",
            "rxd1: would format as ext4",
            "rxd1: would mount on /mnt/a",
            "rxd2: would create 1G",
        ]
    );
    let mut s = state(&[
        with_data(device(0, G)),
        with_data(device(1, 64 * M)),
        device(2, G),
    ]);
    s.swaps = vec!["/dev/rxd0".into()];
    s.mounts = vec![("/dev/rxd1".into(), "/mnt/a".into())];
    assert_eq!(
        lines(text, &s, true),
        ["rxd0: unchanged", "rxd1: unchanged", "rxd2: unchanged"]
    );
    s.mounts = vec![("/dev/sda1".into(), "/mnt/a".into())];
    let e = plan(&config(text), &[], &s, true).err().unwrap_or_default();
    assert_eq!(
        e,
        ["/etc/rxdsk.conf:7: rxd1: /dev/sda1 is mounted on /mnt/a"]
    );
}

#[test]
fn an_existing_device_as_configured_is_unchanged() {
    let s = state(&[with_data(device(0, G))]);
    assert_eq!(
        lines("[rxd0]\nsize=1G\nswap-priority=5\n", &s, false),
        ["rxd0: unchanged"]
    );
    let plans = plan(&config("[rxd0]\nsize=1G\n"), &[], &s, false).unwrap_or_default();
    assert_eq!(
        plans,
        [DevicePlan {
            id: 0,
            steps: vec![]
        }]
    );
}

#[test]
fn an_existing_blank_device_is_formatted() {
    let s = state(&[device(0, G)]);
    assert_eq!(
        lines("[rxd0]\nsize=1G\nfs-type=xfs\n", &s, false),
        ["rxd0: would format as xfs if it holds no data"]
    );
    // Data not yet loaded from a backing device is data.
    let mut d = device(0, G);
    d.info.unloaded_pages = 1;
    assert_eq!(
        lines("[rxd0]\nsize=1G\nfs-type=xfs\n", &state(&[d]), false),
        ["rxd0: unchanged"]
    );
}

#[test]
fn growing_and_shrinking() {
    let s = state(&[with_data(device(0, G))]);
    assert_eq!(
        steps("[rxd0]\nsize=2G\nswap-priority=1\n", &s),
        [Step::Resize { from: G, to: 2 * G }]
    );
    assert_eq!(
        lines("[rxd0]\nsize=2G\n", &s, false),
        ["rxd0: would grow to 2G (from 1G)"]
    );
    // Only an empty device is shrunk unattended; one holding data is left to `rxdskctl resize`.
    assert_eq!(
        errors("[rxd0]\nsize=512M\n", &s),
        ["/etc/rxdsk.conf:2: rxd0: it is 1G, the configuration says 512M: not shrunk, that would cut off the end of its data (rxdskctl resize does it by hand)"]
    );
    assert_eq!(
        lines("[rxd0]\nsize=512M\n", &state(&[device(0, G)]), false),
        ["rxd0: would shrink to 512M (from 1G)"]
    );
    assert_eq!(
        errors("[rxd0]\nsize=512M\nswap-priority=1\n", &s),
        ["/etc/rxdsk.conf:2: rxd0: it is 1G, the configuration says 512M: not shrunk, that would cut off the end of its swap area (rxdskctl resize does it by hand)"]
    );
    assert_eq!(
        errors("[rxd0]\nsize=512M\nfs-type=ext4\n", &s),
        ["/etc/rxdsk.conf:2: rxd0: it is 1G, the configuration says 512M: not shrunk, that would cut off the end of its filesystem (rxdskctl resize does it by hand)"]
    );
}

#[test]
fn what_cannot_change_is_an_error_naming_the_line() {
    let mut d = with_data(device(0, G));
    d.info.logical_block_size = 512;
    assert_eq!(
        errors("[rxd0]\nsize=1G\n", &state(&[d])),
        ["/etc/rxdsk.conf:1: rxd0: the block size is 512, the configuration says 4096; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)"]
    );
    let d = with_data(device(0, G));
    assert_eq!(
        errors("[rxd0]\nsize=1G\nblock-size=512\n", &state(&[d])),
        ["/etc/rxdsk.conf:3: rxd0: the block size is 4096, the configuration says 512; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)"]
    );
    assert_eq!(
        errors("[rxd0]\nsize=1G\nmem-limit=1G\n", &state(&[d])),
        ["/etc/rxdsk.conf:3: rxd0: the memory limit is none, the configuration says 1G; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)"]
    );
    assert_eq!(
        errors("[rxd0]\nsize=1G\ncompress=zstd\n", &state(&[d])),
        ["/etc/rxdsk.conf:3: rxd0: it has no compression, the configuration says zstd; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)"]
    );
    let mut c = d;
    c.info.flags |= RXDSK_FLAG_COMPRESSED;
    c.compress = Some((rxdsk_ioctl::RXDSK_COMPRESS_LZ4, 1));
    assert_eq!(
        errors("[rxd0]\nsize=1G\n", &state(&[c])),
        ["/etc/rxdsk.conf:1: rxd0: it has lz4, the configuration says no compression; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)"]
    );
    assert_eq!(
        errors("[rxd0]\nsize=1G\ncompress=lz4\ncompress-level=4\n", &state(&[c])),
        ["/etc/rxdsk.conf:4: rxd0: it uses lz4 level 1, the configuration says 4; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)"]
    );
    // The level in use is not compared when none is configured.
    assert_eq!(
        lines("[rxd0]\nsize=1G\ncompress=lz4\n", &state(&[c]), false),
        ["rxd0: unchanged"]
    );
}

#[test]
fn every_problem_is_reported_and_nothing_is_planned() {
    let mut d = with_data(device(0, G));
    d.info.logical_block_size = 512;
    let text = "[rxd0]\nsize=512M\nswap-priority=1\ncompress=zstd\n[rxd1]\nsize=1G\n";
    let e = errors(text, &state(&[d]));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e.iter()
            .all(|m| m.starts_with("/etc/rxdsk.conf:") && m.contains(": rxd0: ")),
        "{e:?}"
    );
}

#[test]
fn named_devices_only() {
    let c = config("[rxd0]\nsize=1G\n[rxd1]\nsize=2G\n");
    let p = plan(&c, &[1], &State::default(), false).unwrap_or_default();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].id, 1);
    // A problem of a device not named does not stop the others.
    let mut d = device(0, G);
    d.info.logical_block_size = 512;
    assert!(plan(&c, &[1], &state(&[d]), false).is_ok());
    assert_eq!(
        plan(&c, &[4], &State::default(), false),
        Err(vec![
            "rxd4: not in the configuration (/etc/rxdsk.conf)".to_string()
        ])
    );
    assert_eq!(
        plan(&Config::default(), &[4], &State::default(), false),
        Err(vec![
            "rxd4: not in the configuration (no configuration file)".to_string()
        ])
    );
}

#[test]
fn devices_not_configured_are_left_alone() {
    let s = state(&[device(0, G), device(9, G)]);
    let p = plan(&config("[rxd0]\nsize=1G\n"), &[], &s, false).unwrap_or_default();
    assert_eq!(
        p,
        [DevicePlan {
            id: 0,
            steps: vec![]
        }]
    );
}

const BACKED: &str = "[rxd1]\nbacking=/dev/vdb\nsize=1G\nfs-type=ext4\nmount-point=/srv\n";

#[test]
fn a_backing_device_with_an_image_is_restored() {
    let mut s = State::default();
    backing(&mut s, "/dev/vdb", (252, 16), Some(image(G, 7)));
    assert_eq!(
        steps(BACKED, &s),
        [
            Step::Restore {
                backing: "/dev/vdb".into(),
                preload: false,
                compress: (0, 0),
                mem_limit: 0,
                size: G,
                generation: 7
            },
            Step::Format {
                fs_type: "ext4".into(),
                fresh: false
            }
        ]
    );
    assert_eq!(
        lines(&format!("{BACKED}preload=yes\ncompress=zstd\n"), &s, false),
        [
            "rxd1: would restore 1G from /dev/vdb (generation 7, zstd, preloaded)",
            "rxd1: would format as ext4 if it holds no data",
        ]
    );
    // No size: the image's.
    assert_eq!(steps("[rxd1]\nbacking=/dev/vdb\n", &s).len(), 1);
    // The kernel keeps a backed device's size: another size is an error, not a resize.
    for (size, shown) in [("2G", "2G"), ("512M", "512M")] {
        assert_eq!(
            errors(&format!("[rxd1]\nbacking=/dev/vdb\nsize={size}\n"), &s),
            [format!(
                "/etc/rxdsk.conf:3: rxd1: it keeps its image's size (1G) while /dev/vdb backs it, \
                 the configuration says {shown}; by hand: rxdskctl detach rxd1, rxdskctl resize \
                 rxd1 {}, rxdskctl attach rxd1 /dev/vdb",
                crate::size::parse_size(size).unwrap_or_default()
            )]
        );
    }
}

#[test]
fn a_restore_checks_the_image_against_the_configuration() {
    let mut s = State::default();
    let mut h = image(G, 3);
    h.flush_interval_secs = 60;
    backing(&mut s, "/dev/vdb", (252, 16), Some(h));
    let e = errors(
        "[rxd1]\nbacking=/dev/vdb\nblock-size=512\nmode=writethrough\njournal=8M\nflush-interval=30\n",
        &s,
    );
    assert_eq!(
        e,
        [
            "/etc/rxdsk.conf:3: rxd1: the image on /dev/vdb has block-size 4096, the configuration says 512",
            "/etc/rxdsk.conf:4: rxd1: the image on /dev/vdb has mode writeback, the configuration says writethrough",
            "/etc/rxdsk.conf:5: rxd1: the image on /dev/vdb has journal 0, the configuration says 8388608",
            "/etc/rxdsk.conf:6: rxd1: the image on /dev/vdb has flush-interval 60, the configuration says 30",
        ]
    );
    assert_eq!(h.mode, RXDSK_IMAGE_WRITEBACK);
    let mut torn = image(G, 3);
    torn.state = RXDSK_IMAGE_FLUSHING;
    backing(&mut s, "/dev/vdb", (252, 16), Some(torn));
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\n", &s),
        ["/etc/rxdsk.conf:2: rxd1: the image on /dev/vdb is from a flush that did not complete; restore it by hand if it is wanted (rxdskctl create --backing /dev/vdb --force --id 1)"]
    );
}

#[test]
fn a_backing_device_without_an_image_gets_a_new_device_attached() {
    let mut s = State::default();
    backing(&mut s, "/dev/vdb", (252, 16), None);
    let text = "[rxd1]\nbacking=/dev/vdb\nsize=1G\nmode=writethrough\njournal=16M\nflush-interval=300\nfs-type=ext4\n";
    assert_eq!(
        lines(text, &s, false),
        [
            "rxd1: would create 1G",
            "rxd1: would attach to /dev/vdb (writethrough, journal 16M, flush every 300 s)",
            "rxd1: would format as ext4",
        ]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\n", &s),
        ["/etc/rxdsk.conf:1: rxd1: /dev/vdb: its size cannot be read, so size is needed"]
    );
    s.backings.insert(
        "/dev/vdb".into(),
        BackingState {
            devno: None,
            image: Err("/dev/vdb: cannot open: No such file or directory (os error 2)".into()),
            bytes: None,
        },
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\n", &s),
        ["/etc/rxdsk.conf:2: rxd1: cannot use the backing device: /dev/vdb: cannot open: No such file or directory (os error 2)"]
    );
    // Not examined at all (a bug in the caller) is not taken for "no image".
    assert!(plan(
        &config("[rxd1]\nbacking=/dev/vdb\nsize=1G\n"),
        &[],
        &State::default(),
        false
    )
    .is_err());
}

/// Without size, a new device on a blank backing device is as big as it allows: its size less
/// the journal and the 4 KiB metadata block (the last whole one), rounded down to 4 KiB, as
/// `create --backing` makes it. A size that does not fit is refused before anything is done.
#[test]
fn a_blank_backing_device_without_size_gives_the_largest_device() {
    let mut s = State::default();
    // An odd end: the metadata block is the last whole 4 KiB block.
    blank(&mut s, "/dev/vdb", (252, 16), 10 * G + 1000);
    let text =
        "[rxd1]\nbacking=/dev/vdb\nmem-limit=2G\njournal=256M\nmode=writearound\nfs-type=ext4\n";
    let size = 10 * G - 256 * M - 4096;
    assert!(rxdsk_ioctl::image_fits(size, 256 * M, 10 * G + 1000));
    assert_eq!(
        steps(text, &s),
        [
            Step::Create(RxdskCreate {
                size_bytes: size,
                mem_limit_bytes: 2 * G,
                flags: rxdsk_ioctl::RXDSK_CREATE_WITH_ID,
                logical_block_size: 4096,
                id: 1,
                ..Default::default()
            }),
            Step::Attach {
                backing: "/dev/vdb".into(),
                mode: Mode::Writearound,
                journal: 256 * M,
                flush_interval: 0,
            },
            Step::Format {
                fs_type: "ext4".into(),
                fresh: true,
            },
        ]
    );
    assert_eq!(
        lines(text, &s, false),
        [
            "rxd1: would create 9.7G, memory limit 2G",
            "rxd1: would attach to /dev/vdb (writearound, journal 256M)",
            "rxd1: would format as ext4",
        ]
    );
    // Without a journal, and with 512-byte blocks (a 4 KiB multiple suits both).
    let size_of = |text: &str, s: &State| match steps(text, s).first() {
        Some(Step::Create(r)) => r.size_bytes,
        other => panic!("{other:?}"),
    };
    assert_eq!(size_of("[rxd1]\nbacking=/dev/vdb\n", &s), 10 * G - 4096);
    assert_eq!(
        size_of("[rxd1]\nbacking=/dev/vdb\nblock-size=512\n", &s),
        10 * G - 4096
    );
    // A size that fits is taken as it is.
    assert_eq!(size_of("[rxd1]\nbacking=/dev/vdb\nsize=4G\n", &s), 4 * G);
    assert_eq!(
        size_of("[rxd1]\nbacking=/dev/vdb\nsize=10239M\n", &s),
        10239 * M
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nsize=10G\n", &s),
        ["/etc/rxdsk.conf:3: rxd1: /dev/vdb (10737419240 bytes) cannot hold a device of 10G and \
          the 4 KiB metadata block (at most 10737414144 bytes; without size, the device is as \
          big as it allows)"]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nsize=10G\njournal=4K\n", &s),
        [
            "/etc/rxdsk.conf:3: rxd1: /dev/vdb (10737419240 bytes) cannot hold a device of 10G, a \
          journal of 4K and the 4 KiB metadata block (at most 10737410048 bytes; without size, the \
          device is as big as it allows)"
        ]
    );
    // Too small for anything.
    blank(&mut s, "/dev/vdb", (252, 16), 8192);
    assert_eq!(size_of("[rxd1]\nbacking=/dev/vdb\n", &s), 4096);
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\njournal=4K\n", &s),
        ["/etc/rxdsk.conf:1: rxd1: /dev/vdb: too small for a device and a journal of 4K: it has \
          8192 bytes, and the metadata block takes the last 4 KiB"]
    );
}

#[test]
fn an_existing_device_and_its_backing_device() {
    let mut attached = with_data(device(1, G));
    attached.info.flags |= RXDSK_FLAG_BACKED;
    (attached.info.backing_major, attached.info.backing_minor) = (252, 16);
    attached.info.journal_bytes = 16 * M;
    let mut s = state(&[attached]);
    backing(&mut s, "/dev/vdb", (252, 16), Some(image(G, 4)));
    assert_eq!(
        lines(
            "[rxd1]\nbacking=/dev/vdb\njournal=16M\nmode=writeback\nflush-interval=0\n",
            &s,
            false
        ),
        ["rxd1: unchanged"]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nflush-interval=60\n", &s),
        ["/etc/rxdsk.conf:3: rxd1: its image says flush every 0 s, the configuration says 60 (rxdskctl detach rxd1, then apply, attaches it anew)"]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nmode=writethrough\njournal=4M\n", &s),
        [
            "/etc/rxdsk.conf:3: rxd1: it is attached in writeback mode, the configuration says writethrough (rxdskctl detach rxd1, then apply, attaches it anew)",
            "/etc/rxdsk.conf:4: rxd1: its journal is 16777216 bytes, the configuration says 4194304 (rxdskctl detach rxd1, then apply, attaches it anew)",
        ]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nsize=2G\n", &s),
        ["/etc/rxdsk.conf:3: rxd1: it keeps its image's size (1G) while /dev/vdb backs it, the configuration says 2G; by hand: rxdskctl detach rxd1, rxdskctl resize rxd1 2147483648, rxdskctl attach rxd1 /dev/vdb"]
    );
    backing(&mut s, "/dev/vdc", (252, 32), None);
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdc\n", &s),
        ["/etc/rxdsk.conf:2: rxd1: its backing device is 252:16, not /dev/vdc (252:32)"]
    );
    assert_eq!(
        errors("[rxd1]\nsize=1G\n", &s),
        ["/etc/rxdsk.conf:1: rxd1: it has a backing device (252:16) the configuration does not name (rxdskctl detach rxd1 lets it go)"]
    );
    // Not attached: attached now if the backing device holds no image, refused if it does.
    let mut s = state(&[with_data(device(1, G))]);
    backing(&mut s, "/dev/vdb", (252, 16), None);
    assert_eq!(
        lines("[rxd1]\nbacking=/dev/vdb\n", &s, false),
        ["rxd1: would attach to /dev/vdb (writeback)"]
    );
    // Resized first: the kernel does not resize an attached device.
    assert_eq!(
        lines("[rxd1]\nbacking=/dev/vdb\nsize=2G\n", &s, false),
        [
            "rxd1: would grow to 2G (from 1G)",
            "rxd1: would attach to /dev/vdb (writeback)"
        ]
    );
    backing(&mut s, "/dev/vdb", (252, 16), Some(image(G, 4)));
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\n", &s),
        ["/etc/rxdsk.conf:2: rxd1: /dev/vdb holds an rxdsk image, and attaching the existing device would overwrite it (rxdskctl destroy rxd1, then apply, restores it)"]
    );
}

/// Writearound as the other modes: the attach step's, checked against an attached device's
/// flags (which have writethrough's too) and against an image's mode; an image in writearound
/// mode restores only with a memory limit.
#[test]
fn writearound() {
    let mut cached = device(1, G);
    cached.info.mem_limit_bytes = 256 * M;
    let mut s = state(&[cached]);
    backing(&mut s, "/dev/vdb", (252, 16), None);
    let text = "[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\nmode=writearound\njournal=64M\n";
    assert_eq!(
        steps(text, &s),
        [Step::Attach {
            backing: "/dev/vdb".into(),
            mode: Mode::Writearound,
            journal: 64 * M,
            flush_interval: 0,
        }]
    );
    assert_eq!(
        lines(text, &s, false),
        ["rxd1: would attach to /dev/vdb (writearound, journal 64M)"]
    );
    let plans = plan(&config(text), &[], &s, false).unwrap_or_default();
    assert_eq!(describe_plan(&plans)[0].json["mode"], "writearound");
    // Attached: its flags say which mode.
    let mut attached = with_data(device(1, G));
    attached.info.mem_limit_bytes = 256 * M;
    attached.info.flags |= RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH | RXDSK_FLAG_WRITEAROUND;
    (attached.info.backing_major, attached.info.backing_minor) = (252, 16);
    let mut s = state(&[attached]);
    backing(&mut s, "/dev/vdb", (252, 16), Some(image(G, 4)));
    assert_eq!(
        lines(
            "[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\nmode=writearound\n",
            &s,
            false
        ),
        ["rxd1: unchanged"]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\nmode=writethrough\n", &s),
        ["/etc/rxdsk.conf:4: rxd1: it is attached in writearound mode, the configuration says writethrough (rxdskctl detach rxd1, then apply, attaches it anew)"]
    );
    attached.info.flags &= !RXDSK_FLAG_WRITEAROUND;
    s.devices.insert(1, attached);
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\nmode=writearound\n", &s),
        ["/etc/rxdsk.conf:4: rxd1: it is attached in writethrough mode, the configuration says writearound (rxdskctl detach rxd1, then apply, attaches it anew)"]
    );
    // Restored: the image's mode.
    let mut s = State::default();
    backing(
        &mut s,
        "/dev/vdb",
        (252, 16),
        Some(image(G, 3).with(RXDSK_IMAGE_WRITEAROUND, 0, 0)),
    );
    assert_eq!(
        lines("[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\n", &s, false),
        ["rxd1: would restore 1G from /dev/vdb (generation 3, memory limit 256M)"]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\n", &s),
        ["/etc/rxdsk.conf:2: rxd1: the image on /dev/vdb is in writearound mode, which needs a memory limit (the cache size): set mem-limit"]
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\nmode=writeback\n", &s),
        ["/etc/rxdsk.conf:4: rxd1: the image on /dev/vdb has mode writearound, the configuration says writeback"]
    );
    backing(
        &mut s,
        "/dev/vdb",
        (252, 16),
        Some(image(G, 3).with(RXDSK_IMAGE_WRITETHROUGH, 0, 0)),
    );
    assert_eq!(
        errors("[rxd1]\nbacking=/dev/vdb\nmem-limit=256M\nmode=writearound\n", &s),
        ["/etc/rxdsk.conf:4: rxd1: the image on /dev/vdb has mode writethrough, the configuration says writearound"]
    );
}

#[test]
fn json_of_the_steps_is_stable() {
    let plans = plan(
        &config("[rxd0]\nsize=1G\ncompress=zstd\nswap-priority=3\n"),
        &[],
        &State::default(),
        true,
    )
    .unwrap_or_default();
    let json: Vec<serde_json::Value> = describe_plan(&plans).into_iter().map(|r| r.json).collect();
    assert_eq!(
        serde_json::Value::from(json),
        serde_json::json!([
            {"device": "/dev/rxd0", "action": "create", "done": false, "size": G, "block-size": 4096,
             "compress": "zstd", "compress-level": null, "mem-limit": null},
            {"device": "/dev/rxd0", "action": "format", "done": false, "fs-type": "swap"},
            {"device": "/dev/rxd0", "action": "swapon", "done": false, "priority": 3},
        ])
    );
}

#[test]
fn past_tense_once_done() {
    let steps = [
        (Step::Resize { from: G, to: 2 * G }, "grown to 2G (from 1G)"),
        (
            Step::Resize { from: 2 * G, to: G },
            "shrunk to 1G (from 2G)",
        ),
        (
            Step::Format {
                fs_type: "swap".into(),
                fresh: false,
            },
            "formatted as swap",
        ),
        (
            Step::Swapon {
                priority: None,
                options: None,
            },
            "activated as swap",
        ),
        (
            Step::Mount {
                fs_type: "ext4".into(),
                mount_point: "/m".into(),
                options: None,
            },
            "mounted on /m",
        ),
    ];
    for (s, want) in steps {
        assert_eq!(s.describe(true), want);
    }
}

#[test]
fn blank_means_no_data_at_all() {
    let mut i = RxdskInfo::default();
    assert!(is_blank(&i));
    i.used_bytes = 4096;
    assert!(!is_blank(&i));
    i.used_bytes = 0;
    i.unloaded_pages = 3;
    assert!(!is_blank(&i));
}

#[test]
fn exit_status_like_mount() {
    let mut o = Outcome::default();
    assert_eq!(o.status(), 0);
    o.failures.push("x".into());
    assert_eq!(o.status(), EXIT_FAILED);
    o.done = 1;
    assert_eq!(o.status(), EXIT_PARTIAL);
}

#[test]
fn swap_flags_as_swapon_8_makes_them() {
    assert_eq!(swap_flags(None, None), 0);
    assert_eq!(swap_flags(Some(-1), None), 0);
    assert_eq!(swap_flags(Some(0), None), 0x8000);
    assert_eq!(swap_flags(Some(100), None), 0x8000 | 100);
    assert_eq!(
        swap_flags(Some(32767), Some("discard")),
        0x8000 | 0x7fff | 0x10000
    );
    assert_eq!(swap_flags(None, Some("nofail,discard=once")), 0x30000);
    assert_eq!(swap_flags(None, Some("discard=pages")), 0x50000);
}
