//! rxdsk devices: lifecycle and ids, the errno contract of every command, privilege, read-only,
//! zero pages, the memory limit, discard and write-zeroes, online resize, and the data-path
//! checks of [`crate::datapath`] on rxdsk devices with rxdsk's counters cross-checked.

use crate::blk::{self, mib, Expect, GIB, MIB, PAGE};
use crate::datapath::{self, Punch, PunchCounters, SwapParams, MEM_TOLERANCE};
use crate::harness::{as_nobody, cmd_ok, ensure, is_char_device, wait_until, TestResult};
use crate::rxdsk::{dev_path, list_ids, Control, Device, CONTROL};
use nix::errno::Errno;
use rxdsk_ioctl::{
    self as abi, RxdskCreate, RxdskDestroy, RxdskInfo, RxdskResize, RxdskStats, RXDSK_CREATE_FLAGS,
    RXDSK_CREATE_WITH_ID, RXDSK_FLAG_FORCE, RXDSK_FLAG_READ_ONLY, RXDSK_MAX_DEVICES,
    RXDSK_MAX_SIZE,
};
use std::fmt::Debug;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// `got` must be the error `want`.
fn expect_errno<T: Debug>(what: &str, got: Result<T, Errno>, want: Errno) -> TestResult {
    match got {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: got {other:?}, want {want}")),
    }
}

/// LIST must still report exactly `before`.
fn expect_list(before: &[u32], what: &str) -> TestResult {
    let now = list_ids()?;
    ensure(now == before, || {
        format!("after {what}: LIST reports {now:?}, before it {before:?}")
    })
}

fn expect_no_devices(when: &str) -> TestResult {
    let ids = list_ids()?;
    ensure(ids.is_empty(), || {
        format!("{when}: LIST reports devices {ids:?}, want none")
    })
}

/// Waits for a destroyed device's node and sysfs directory to go.
fn expect_gone(id: u32) -> TestResult {
    let path = dev_path(id);
    let sys = format!("/sys/block/rxd{id}");
    ensure(
        wait_until(Duration::from_secs(5), || {
            !std::path::Path::new(&path).exists() && !std::path::Path::new(&sys).exists()
        }),
        || format!("{path} or {sys} still exists 5s after its device was destroyed"),
    )
}

fn sysfs(id: u32, file: &str) -> Result<String, String> {
    let p = format!("/sys/block/rxd{id}/{file}");
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{p}: {e}"))
}

/// INFO of a device that nothing has been done to yet.
fn expect_fresh_info(
    i: &RxdskInfo,
    id: u32,
    size: u64,
    lbs: u32,
    limit: u64,
    flags: u64,
) -> TestResult {
    let want = RxdskInfo {
        id,
        logical_block_size: lbs,
        size_bytes: size,
        mem_limit_bytes: limit,
        flags,
        used_bytes: 0,
        open_count: 0,
        pad: 0,
        dirty_pages: 0,
        unloaded_pages: 0,
        journal_bytes: 0,
        backing_major: 0,
        backing_minor: 0,
    };
    ensure(*i == want, || format!("INFO {i:?}, want {want:?}"))
}

/// Writes one block of the pattern of `seed` at `off` and reads it back.
fn write_read_back(dev: &Device, off: u64, len: u64, seed: u64) -> TestResult {
    let f = blk::open_direct(&dev.path, true)?;
    blk::write_pattern(&f, off, len, seed)?;
    blk::verify_range(&f, off, len, &|_| Expect::Pattern(seed))
        .map_err(|e| format!("{}: {e}", dev.path))
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

/// 100 create/destroy cycles alternating 512/4096-byte blocks: the id is always 0 (lowest
/// free), INFO and sysfs show the configuration, LIST follows; then ids are reused lowest
/// first with several devices, LIST honours its capacity, and LIST is empty at the end.
pub fn create_destroy_cycles() -> TestResult {
    expect_no_devices("at the start")?;
    for i in 0..100u32 {
        let lbs = if i % 2 == 0 { 512 } else { 4096 };
        let size = MIB + u64::from(i) * u64::from(lbs);
        let dev = Device::create(size, lbs).map_err(|e| format!("cycle {i}: {e}"))?;
        ensure(dev.id == 0, || {
            format!(
                "cycle {i}: CREATE chose id {}, want 0 (the lowest free id)",
                dev.id
            )
        })?;
        expect_fresh_info(&dev.info()?, 0, size, lbs, 0, 0)
            .map_err(|e| format!("cycle {i}: {e}"))?;
        let sys_lbs = sysfs(0, "queue/logical_block_size")?;
        let sys_sectors = sysfs(0, "size")?;
        ensure(
            sys_lbs == lbs.to_string() && sys_sectors == (size / 512).to_string(),
            || {
                format!(
                    "cycle {i}: sysfs logical_block_size {sys_lbs}, size {sys_sectors} sectors; \
                     want {lbs} and {}",
                    size / 512
                )
            },
        )?;
        let ids = list_ids()?;
        ensure(ids == [0], || format!("cycle {i}: LIST {ids:?}, want [0]"))?;
        if i % 10 == 0 {
            write_read_back(&dev, 4096, 4096, u64::from(i))
                .map_err(|e| format!("cycle {i}: {e}"))?;
        }
        dev.destroy().map_err(|e| format!("cycle {i}: {e}"))?;
        expect_no_devices(&format!("cycle {i}"))?;
        expect_gone(0).map_err(|e| format!("cycle {i}: {e}"))?;
    }

    let a = Device::create(MIB, 4096)?;
    let b = Device::create(MIB, 512)?;
    let c = Device::create(MIB, 4096)?;
    ensure((a.id, b.id, c.id) == (0, 1, 2), || {
        format!(
            "three devices got ids {}, {}, {}; want 0, 1, 2",
            a.id, b.id, c.id
        )
    })?;
    b.destroy()?;
    let b = Device::create(2 * MIB, 4096)?;
    ensure(b.id == 1, || {
        format!(
            "after destroying id 1 of 0..=2, CREATE chose {}, want 1",
            b.id
        )
    })?;
    a.destroy()?;
    let a = Device::create(2 * MIB, 512)?;
    ensure(a.id == 0, || {
        format!("after destroying id 0, CREATE chose {}, want 0", a.id)
    })?;
    let ids = list_ids()?;
    ensure(ids == [0, 1, 2], || format!("LIST {ids:?}, want [0, 1, 2]"))?;

    // A short array: count says 3, only the first slot is written.
    let ctl = Control::open()?;
    let sentinel = 0xDEAD_BEEF;
    let mut arr = [sentinel; 3];
    let count = ctl
        .list_into(&mut arr[..1], 0, [0; 2])
        .map_err(|e| format!("LIST with capacity 1: {e}"))?;
    ensure(count == 3 && arr == [0, sentinel, sentinel], || {
        format!("LIST with capacity 1: count {count}, array {arr:x?}; want 3 and [0, untouched]")
    })?;
    let count = ctl
        .list_into(&mut [], 0, [0; 2])
        .map_err(|e| format!("LIST with capacity 0: {e}"))?;
    ensure(count == 3, || {
        format!("LIST with capacity 0: count {count}, want 3")
    })?;
    drop(ctl);
    for d in [a, b, c] {
        d.destroy()?;
    }
    expect_no_devices("at the end")?;
    for id in 0..3 {
        expect_gone(id)?;
    }
    Ok(())
}

/// DESTROY of an open device: EBUSY, and the device keeps working; after close it goes.
/// With FORCE it goes while open, and the opener then gets errors.
pub fn destroy_busy() -> TestResult {
    let dev = Device::create(16 * MIB, 4096)?;
    let f = blk::open_direct(&dev.path, true)?;
    let open = dev.info()?.open_count;
    ensure(open >= 1, || {
        format!("INFO open_count {open} while {} is open", dev.path)
    })?;
    let ctl = Control::open()?;
    expect_errno(
        "DESTROY of an open device",
        ctl.destroy(dev.id, 0),
        Errno::EBUSY,
    )?;
    ensure(list_ids()?.contains(&dev.id), || {
        format!("{} vanished from LIST after a refused DESTROY", dev.path)
    })?;
    let sums = blk::write_pattern(&f, 0, 2 * MIB, 77)
        .map_err(|e| format!("after a refused DESTROY: {e}"))?;
    blk::verify_checksums(&f, 0, 2 * MIB, &sums)
        .map_err(|e| format!("after a refused DESTROY: {e}"))?;
    drop(f);
    let open = dev.info()?.open_count;
    ensure(open == 0, || format!("INFO open_count {open} after close"))?;
    let id = dev.id;
    dev.destroy()?;
    ensure(!list_ids()?.contains(&id), || {
        format!("id {id} still listed after DESTROY")
    })?;
    expect_gone(id)?;

    let dev = Device::create(16 * MIB, 512)?;
    let f = blk::open_direct(&dev.path, true)?;
    blk::write_pattern(&f, 0, MIB, 78)?;
    ctl.destroy(dev.id, RXDSK_FLAG_FORCE)
        .map_err(|e| format!("DESTROY with FORCE of an open device: {e}"))?;
    let id = dev.id;
    dev.forget();
    ensure(!list_ids()?.contains(&id), || {
        format!("id {id} still listed after a forced DESTROY")
    })?;
    let mut buf = blk::AlignedBuf::zeroed(PAGE as usize)?;
    let read = blk::read_at(&f, &mut buf, 0);
    ensure(read.is_err(), || {
        "a read through an fd opened before a forced DESTROY succeeded, want an I/O error".into()
    })?;
    let write = blk::write_at(&f, &buf, 0);
    ensure(write.is_err(), || {
        "a write through an fd opened before a forced DESTROY succeeded, want an I/O error".into()
    })?;
    drop(f);
    expect_gone(id)
}

// ---------------------------------------------------------------------------------------------
// The errno contract

/// Every malformed request gets its errno and changes nothing; LIST is checked after each.
pub fn bad_input_rejected() -> TestResult {
    let ctl = Control::open()?;
    let size = 8 * MIB;
    let dev = Device::create(size, 4096)?;
    let before = list_ids()?;
    let unchanged = |what: &str| -> TestResult {
        expect_list(&before, what)?;
        let i = dev.info()?;
        ensure(i.size_bytes == size && i.flags == 0, || {
            format!("after {what}: {} changed: {i:?}", dev.path)
        })
    };

    // CREATE: the base request is valid; each case breaks one thing.
    let ok = RxdskCreate {
        size_bytes: MIB,
        logical_block_size: 4096,
        ..Default::default()
    };
    let mut creates: Vec<(String, RxdskCreate)> = vec![
        (
            "size 0".into(),
            RxdskCreate {
                size_bytes: 0,
                ..ok
            },
        ),
        (
            "size not a multiple of 4096".into(),
            RxdskCreate {
                size_bytes: MIB + 512,
                ..ok
            },
        ),
        (
            "size not a multiple of 512".into(),
            RxdskCreate {
                size_bytes: 1000,
                logical_block_size: 512,
                ..ok
            },
        ),
        (
            "size above RXDSK_MAX_SIZE".into(),
            RxdskCreate {
                size_bytes: RXDSK_MAX_SIZE + 4096,
                ..ok
            },
        ),
        (
            "size near u64::MAX".into(),
            RxdskCreate {
                size_bytes: !4095u64,
                ..ok
            },
        ),
        (
            "mem_limit 1".into(),
            RxdskCreate {
                mem_limit_bytes: 1,
                ..ok
            },
        ),
        (
            "mem_limit 4095".into(),
            RxdskCreate {
                mem_limit_bytes: 4095,
                ..ok
            },
        ),
        (
            "the lowest unknown flag".into(),
            RxdskCreate {
                flags: 1 << RXDSK_CREATE_FLAGS.trailing_ones(),
                ..ok
            },
        ),
        (
            "an id without RXDSK_CREATE_WITH_ID".into(),
            RxdskCreate { id: 9, ..ok },
        ),
        (
            "RXDSK_CREATE_WITH_ID with an id past the maximum".into(),
            RxdskCreate {
                flags: RXDSK_CREATE_WITH_ID,
                id: RXDSK_MAX_DEVICES,
                ..ok
            },
        ),
        (
            "unknown flag 1<<63".into(),
            RxdskCreate {
                flags: 1 << 63,
                ..ok
            },
        ),
        ("non-zero id on input".into(), RxdskCreate { id: 5, ..ok }),
    ];
    for lbs in [0u32, 1000, 1024, 2048, 8192] {
        creates.push((
            format!("block size {lbs}"),
            RxdskCreate {
                logical_block_size: lbs,
                ..ok
            },
        ));
    }
    for i in 0..3 {
        let mut c = ok;
        c.reserved[i] = 1;
        creates.push((format!("reserved[{i}] = 1"), c));
    }
    // ABI 1.4: an unknown algorithm, a level without compression, a level for LZO (which has
    // none), a zstd level out of range.
    for (compress, compress_level) in [
        (99, 0),
        (0, 5),
        (rxdsk_ioctl::RXDSK_COMPRESS_LZO, 1),
        (rxdsk_ioctl::RXDSK_COMPRESS_ZSTD, 1000),
        (rxdsk_ioctl::RXDSK_COMPRESS_LZ4, -1),
    ] {
        creates.push((
            format!("compress {compress} level {compress_level}"),
            RxdskCreate {
                compress,
                compress_level,
                ..ok
            },
        ));
    }
    for (what, c) in creates {
        let mut c = c;
        let got = ctl.create_raw(&mut c);
        if got.is_ok() {
            // Do not leak it.
            drop(Device::adopt(c.id));
        }
        expect_errno(&format!("CREATE with {what}"), got, Errno::EINVAL)?;
        unchanged(&format!("CREATE with {what}"))?;
    }
    // The limits themselves are valid.
    for (what, c) in [
        (
            "size RXDSK_MAX_SIZE",
            RxdskCreate {
                size_bytes: RXDSK_MAX_SIZE,
                ..ok
            },
        ),
        (
            "mem_limit 4096",
            RxdskCreate {
                mem_limit_bytes: 4096,
                ..ok
            },
        ),
    ] {
        let mut c = c;
        ctl.create_raw(&mut c)
            .map_err(|e| format!("CREATE with {what} (valid): {e}"))?;
        Device::adopt(c.id).destroy()?;
        unchanged(&format!("CREATE and DESTROY with {what}"))?;
    }

    // DESTROY, RESIZE, INFO, STATS, LIST with bad fields, on an existing device.
    let id = dev.id;
    let d = RxdskDestroy {
        id,
        ..Default::default()
    };
    let destroys = [
        ("pad 1", RxdskDestroy { pad: 1, ..d }),
        (
            "reserved[0] 1",
            RxdskDestroy {
                reserved: [1, 0],
                ..d
            },
        ),
        (
            "reserved[1] 1",
            RxdskDestroy {
                reserved: [0, 1],
                ..d
            },
        ),
        ("flag 1<<1", RxdskDestroy { flags: 1 << 1, ..d }),
        (
            "flag 1<<63",
            RxdskDestroy {
                flags: 1 << 63 | RXDSK_FLAG_FORCE,
                ..d
            },
        ),
    ];
    for (what, d) in destroys {
        expect_errno(
            &format!("DESTROY with {what}"),
            ctl.destroy_raw(&d),
            Errno::EINVAL,
        )?;
        unchanged(&format!("DESTROY with {what}"))?;
    }
    let r = RxdskResize {
        id,
        size_bytes: 2 * size,
        ..Default::default()
    };
    let mut resizes = vec![
        ("pad 1".to_string(), RxdskResize { pad: 1, ..r }),
        ("flag 1<<1".into(), RxdskResize { flags: 1 << 1, ..r }),
        ("size 0".into(), RxdskResize { size_bytes: 0, ..r }),
        (
            "size not a multiple of 4096".into(),
            RxdskResize {
                size_bytes: size + 512,
                ..r
            },
        ),
        (
            "size above RXDSK_MAX_SIZE".into(),
            RxdskResize {
                size_bytes: RXDSK_MAX_SIZE + 4096,
                ..r
            },
        ),
    ];
    for i in 0..3 {
        let mut x = r;
        x.reserved[i] = 1;
        resizes.push((format!("reserved[{i}] 1"), x));
    }
    for (what, r) in resizes {
        expect_errno(
            &format!("RESIZE with {what}"),
            ctl.resize_raw(&r),
            Errno::EINVAL,
        )?;
        unchanged(&format!("RESIZE with {what}"))?;
    }
    let mut infos = vec![(
        "pad 1".to_string(),
        RxdskInfo {
            id,
            pad: 1,
            ..Default::default()
        },
    )];
    infos.push((
        "dirty_pages 1 (an output field)".to_string(),
        RxdskInfo {
            id,
            dirty_pages: 1,
            ..Default::default()
        },
    ));
    infos.push((
        "backing_minor 1 (an output field, the last one)".to_string(),
        RxdskInfo {
            id,
            backing_minor: 1,
            ..Default::default()
        },
    ));
    for (what, mut i) in infos {
        expect_errno(
            &format!("INFO with {what}"),
            ctl.info_raw(&mut i),
            Errno::EINVAL,
        )?;
    }
    let mut stats = vec![(
        "pad 1".to_string(),
        RxdskStats {
            id,
            pad: 1,
            ..Default::default()
        },
    )];
    stats.push((
        "flush_generation 1 (an output field)".to_string(),
        RxdskStats {
            id,
            flush_generation: 1,
            ..Default::default()
        },
    ));
    for i in 0..RxdskStats::default().reserved.len() {
        let mut x = RxdskStats {
            id,
            ..Default::default()
        };
        x.reserved[i] = 1;
        stats.push((format!("reserved[{i}] 1"), x));
    }
    for (what, mut s) in stats {
        expect_errno(
            &format!("STATS with {what}"),
            ctl.stats_raw(&mut s),
            Errno::EINVAL,
        )?;
    }
    let mut ids = [0u32; 4];
    expect_errno(
        "LIST with count 1 on input",
        ctl.list_into(&mut ids, 1, [0; 2]),
        Errno::EINVAL,
    )?;
    expect_errno(
        "LIST with reserved[0] 1",
        ctl.list_into(&mut ids, 0, [1, 0]),
        Errno::EINVAL,
    )?;
    expect_errno(
        "LIST with reserved[1] 1",
        ctl.list_into(&mut ids, 0, [0, 1]),
        Errno::EINVAL,
    )?;
    unchanged("INFO, STATS and LIST with bad fields")?;

    // Unknown ids.
    for unknown in [1023u32, 1024, 4096, u32::MAX]
        .into_iter()
        .chain((0..8).filter(|i| !before.contains(i)).take(1))
    {
        let w = |op: &str| format!("{op} of unknown id {unknown}");
        expect_errno(&w("DESTROY"), ctl.destroy(unknown, 0), Errno::ENODEV)?;
        expect_errno(
            &w("forced DESTROY"),
            ctl.destroy(unknown, RXDSK_FLAG_FORCE),
            Errno::ENODEV,
        )?;
        expect_errno(&w("RESIZE"), ctl.resize(unknown, MIB, 0), Errno::ENODEV)?;
        expect_errno(&w("INFO"), ctl.info(unknown), Errno::ENODEV)?;
        expect_errno(&w("STATS"), ctl.stats(unknown), Errno::ENODEV)?;
        unchanged(&w("commands"))?;
    }

    // Unknown commands, and known numbers with the wrong size or direction.
    let m = abi::RXDSK_IOC_MAGIC;
    let unknown_cmds: [(&str, u64); 5] = [
        (
            "unused number 0x16",
            nix::request_code_readwrite!(m, 0x16, 64),
        ),
        (
            "unused number 0xFF",
            nix::request_code_readwrite!(m, 0xFF, 64),
        ),
        (
            "CREATE with size 56",
            nix::request_code_readwrite!(m, abi::nr::CREATE, 56),
        ),
        (
            "CREATE as _IOW",
            nix::request_code_write!(m, abi::nr::CREATE, 64),
        ),
        (
            "DESTROY as _IOWR",
            nix::request_code_readwrite!(m, abi::nr::DESTROY, 32),
        ),
    ];
    for (what, req) in unknown_cmds {
        let mut buf = [0u8; 64];
        expect_errno(what, ctl.raw_bytes(req, &mut buf), Errno::ENOTTY)?;
        unchanged(what)?;
    }
    // SAFETY: an _IO request carries no pointer; the kernel does not access memory through 0.
    let bare = unsafe { ctl.raw_number(nix::request_code_none!(m, abi::nr::CREATE), 0) };
    expect_errno("bare _IO with CREATE's number", bare, Errno::ENOTTY)?;

    // A NULL argument: EFAULT, nothing created or changed.
    for (what, req) in [
        ("CREATE", abi::RXDSK_IOC_CREATE),
        ("DESTROY", abi::RXDSK_IOC_DESTROY),
        ("RESIZE", abi::RXDSK_IOC_RESIZE),
        ("INFO", abi::RXDSK_IOC_INFO),
        ("LIST", abi::RXDSK_IOC_LIST),
        ("STATS", abi::RXDSK_IOC_STATS),
    ] {
        // SAFETY: address 0 is never mapped (mmap_min_addr), so a kernel write through it
        // cannot touch our memory.
        let got = unsafe { ctl.raw_number(u64::from(req), 0) };
        expect_errno(&format!("{what} with a NULL argument"), got, Errno::EFAULT)?;
        unchanged(&format!("{what} with a NULL argument"))?;
    }
    drop(ctl);
    dev.destroy()
}

/// Runs as nobody: every command, GET_VERSION and GET_FEATURES included, fails with EPERM.
fn probe_device_eperm(id: u32, size: u64) -> i32 {
    let ctl = match Control::open() {
        Ok(c) => c,
        Err(e) => {
            println!("# as nobody: {e}");
            return 10;
        }
    };
    let mut v = [0u8; 72];
    let mut f = [0u8; 32];
    let results: Vec<(&str, Result<(), Errno>)> = vec![
        ("CREATE", ctl.create(MIB, 4096, 0, 0).map(|_| ())),
        ("DESTROY", ctl.destroy(id, 0)),
        ("DESTROY FORCE", ctl.destroy(id, RXDSK_FLAG_FORCE)),
        ("RESIZE grow", ctl.resize(id, 2 * size, 0)),
        (
            "RESIZE shrink FORCE",
            ctl.resize(id, size / 2, RXDSK_FLAG_FORCE),
        ),
        ("INFO", ctl.info(id).map(|_| ())),
        ("STATS", ctl.stats(id).map(|_| ())),
        ("LIST", ctl.list().map(|_| ())),
        (
            "GET_VERSION",
            ctl.raw_bytes(u64::from(abi::RXDSK_IOC_GET_VERSION), &mut v)
                .map(|_| ()),
        ),
        (
            "GET_FEATURES",
            ctl.raw_bytes(u64::from(abi::RXDSK_IOC_GET_FEATURES), &mut f)
                .map(|_| ()),
        ),
    ];
    let mut code = 0;
    for (what, r) in results {
        if r != Err(Errno::EPERM) {
            println!("# as nobody: {what} gave {r:?}, want EPERM");
            code = 11;
        }
    }
    code
}

/// With the control node opened to everyone, an unprivileged caller gets EPERM for every
/// command and changes nothing.
pub fn device_commands_unprivileged() -> TestResult {
    let size = 8 * MIB;
    let dev = Device::create(size, 4096)?;
    let before = list_ids()?;
    std::fs::set_permissions(CONTROL, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("chmod 0666 {CONTROL}: {e}"))?;
    let id = dev.id;
    let result = as_nobody(move || probe_device_eperm(id, size));
    std::fs::set_permissions(CONTROL, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod 0600 {CONTROL}: {e}"))?;
    let code = result?;
    ensure(code == 0, || {
        format!("unprivileged probe exited {code} (10: open failed, 11: not EPERM, see above)")
    })?;
    expect_list(&before, "unprivileged commands")?;
    let i = dev.info()?;
    ensure(i.size_bytes == size, || {
        format!("unprivileged commands changed {}: {i:?}", dev.path)
    })?;
    dev.destroy()
}

// ---------------------------------------------------------------------------------------------
// Device behaviour

/// A read-only device: INFO and sysfs say so, writes are refused, reads give zeros.
pub fn read_only_device() -> TestResult {
    let dev = Device::create_with(16 * MIB, 4096, 0, RXDSK_FLAG_READ_ONLY)?;
    expect_fresh_info(
        &dev.info()?,
        dev.id,
        16 * MIB,
        4096,
        0,
        RXDSK_FLAG_READ_ONLY,
    )?;
    let ro = sysfs(dev.id, "ro")?;
    ensure(ro == "1", || {
        format!("/sys/block/rxd{}/ro is {ro}, want 1", dev.id)
    })?;
    match blk::open_direct(&dev.path, true) {
        // Refusing the open for writing is one way to refuse writes.
        Err(_) => {}
        Ok(f) => {
            let mut data = blk::AlignedBuf::zeroed(PAGE as usize)?;
            blk::fill_keyed(&mut data, 1, 2);
            let w = blk::write_at(&f, &data, 0);
            ensure(w.is_err(), || {
                "a write to a read-only device succeeded".into()
            })?;
        }
    }
    let f = blk::open_direct(&dev.path, false)?;
    blk::verify_range(&f, 0, 16 * MIB, &|_| Expect::Zeros)?;
    let s = dev.stats()?;
    ensure(s.pages == 0 && s.write_bytes == 0, || {
        format!("a read-only device stored data: {s:?}")
    })?;
    drop(f);
    dev.destroy()
}

/// Never-written sectors read as zeros; a whole-page write of zeros stores no page and counts
/// in zero_pages; zeros over a stored page leave zeros and no extra page.
pub fn zero_page_write() -> TestResult {
    let dev = Device::create(16 * MIB, 4096)?;
    let f = blk::open_direct(&dev.path, true)?;
    blk::verify_range(&f, 0, 16 * MIB, &|_| Expect::Zeros)
        .map_err(|e| format!("a new device: {e}"))?;
    let zeros = blk::AlignedBuf::zeroed(MIB as usize)?;
    let s0 = dev.stats()?;
    blk::write_at(&f, &zeros[..PAGE as usize], 10 * PAGE).map_err(|e| format!("write: {e}"))?;
    let s1 = dev.stats()?;
    ensure(s1.zero_pages == s0.zero_pages + 1 && s1.pages == 0, || {
        format!(
            "after a 4 KiB write of zeros: zero_pages {} -> {}, pages {} (want +1 and 0)",
            s0.zero_pages, s1.zero_pages, s1.pages
        )
    })?;
    ensure(dev.pages()? == 0, || "INFO used_bytes not 0".into())?;
    blk::write_at(&f, &zeros, 2 * MIB).map_err(|e| format!("write: {e}"))?;
    let s2 = dev.stats()?;
    ensure(
        s2.zero_pages == s1.zero_pages + 256 && s2.pages == 0,
        || {
            format!(
                "after a 1 MiB write of zeros: zero_pages {} -> {}, pages {} (want +256 and 0)",
                s1.zero_pages, s2.zero_pages, s2.pages
            )
        },
    )?;
    blk::write_pattern(&f, 20 * PAGE, PAGE, 5)?;
    ensure(dev.pages()? == 1, || {
        "a 4 KiB write of data did not store 1 page".into()
    })?;
    let s3 = dev.stats()?;
    blk::write_at(&f, &zeros[..PAGE as usize], 20 * PAGE).map_err(|e| format!("write: {e}"))?;
    let s4 = dev.stats()?;
    // The replaced page is freed after an RCU grace period; until then it still counts.
    let freed = crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        dev.pages().is_ok_and(|p| p == 0)
    });
    ensure(s4.zero_pages == s3.zero_pages + 1 && freed, || {
        format!(
            "zeros over a stored page: zero_pages {} -> {}, pages {} -> {} (want +1, and 0 pages \
             once the grace period is over)",
            s3.zero_pages, s4.zero_pages, s3.pages, s4.pages
        )
    })?;
    blk::verify_range(&f, 0, 16 * MIB, &|_| Expect::Zeros)
        .map_err(|e| format!("after the zero writes: {e}"))?;
    drop(f);
    dev.destroy()
}

/// A 1 MiB limit: 256 pages fit, the 257th new page fails with ENOSPC and counts in
/// limit_failures; overwrites and reads keep working; a freed page can be used again.
pub fn mem_limit_enospc() -> TestResult {
    let size = 16 * MIB;
    let dev = Device::create_with(size, 4096, MIB, 0)?;
    expect_fresh_info(&dev.info()?, dev.id, size, 4096, MIB, 0)?;
    let f = blk::open_direct(&dev.path, true)?;
    let seed = 0x11A1;
    // Spread the pages out: page 3i for i in 0..256.
    for i in 0..256u64 {
        blk::write_pattern(&f, 3 * i * PAGE, PAGE, seed)
            .map_err(|e| format!("page {} of 256 under a 1 MiB limit: {e}", i + 1))?;
    }
    ensure(dev.pages()? == 256, || {
        "256 pages written but not held".into()
    })?;
    let s0 = dev.stats()?;
    let mut buf = blk::AlignedBuf::zeroed(PAGE as usize)?;
    let over = 3 * 256 * PAGE;
    blk::fill_pattern(&mut buf, over, seed);
    match blk::write_at(&f, &buf, over) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {}
        other => {
            return Err(format!(
                "the 257th page under a 1 MiB limit: got {other:?}, want ENOSPC"
            ))
        }
    }
    let s1 = dev.stats()?;
    ensure(
        s1.limit_failures == s0.limit_failures + 1 && s1.pages == 256 && s1.alloc_failures == 0,
        || {
            format!(
                "after the refused write: limit_failures {} -> {}, pages {}, alloc_failures {}; \
                 want +1, 256, 0",
                s0.limit_failures, s1.limit_failures, s1.pages, s1.alloc_failures
            )
        },
    )?;
    // Overwrite an existing page at the limit.
    blk::write_pattern(&f, 15 * PAGE, PAGE, seed + 1)
        .map_err(|e| format!("overwriting a stored page at the limit: {e}"))?;
    let stored = |at: u64| (at / PAGE).is_multiple_of(3) && at / PAGE < 3 * 256;
    blk::verify_range(&f, 0, size, &|at| {
        if at / PAGE == 15 {
            Expect::Pattern(seed + 1)
        } else if stored(at) {
            Expect::Pattern(seed)
        } else {
            Expect::Zeros
        }
    })
    .map_err(|e| format!("reading at the limit: {e}"))?;
    ensure(dev.pages()? == 256, || {
        "pages changed by overwrite/read".into()
    })?;
    // Freeing a page makes room for one new page, and only one.
    blk::discard(&f, 0, PAGE).map_err(|e| format!("BLKDISCARD of page 0: {e}"))?;
    // Freed after an RCU grace period; counted until then.
    let freed = crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        dev.pages().is_ok_and(|p| p == 255)
    });
    ensure(freed, || {
        "discarding a page did not free it (within 10 s)".into()
    })?;
    blk::write_at(&f, &buf, over).map_err(|e| format!("a new page after freeing one: {e}"))?;
    match blk::write_at(&f, &buf, over + PAGE) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {}
        other => {
            return Err(format!(
                "a second new page after freeing one: got {other:?}, want ENOSPC"
            ))
        }
    }
    ensure(dev.pages()? == 256, || "pages not at the limit".into())?;
    drop(f);
    dev.destroy()
}

/// Discard or write-zeroes on a device with `lbs`-byte blocks: see
/// [`datapath::punch_check`] (exact page counts and byte counters, zeros and pattern,
/// MemAvailable); then data is written again and DESTROY must give all of it back.
fn punch_device(lbs: u32, op: Punch) -> TestResult {
    // Half as much on the debug kernel (KASAN): still eight times the memory tolerance.
    let written = if crate::harness::debug_kernel() {
        128 * MIB
    } else {
        256 * MIB
    };
    let dev = Device::create(320 * MIB, lbs)?;
    let counters = || -> Result<Option<PunchCounters>, String> {
        let pages = dev.pages()?;
        let s = dev.stats()?;
        Ok(Some(PunchCounters {
            pages,
            op_bytes: match op {
                Punch::Discard => s.discard_bytes,
                Punch::ZeroOut => s.write_zeroes_bytes,
            },
        }))
    };
    let base = datapath::punch_check(&dev.path, op, written, true, &counters)?;
    let s = dev.stats()?;
    ensure(s.io_errors == 0 && s.alloc_failures == 0, || {
        format!("errors counted: {s:?}")
    })?;
    {
        let f = blk::open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 0, written / 2, 99)?;
    }
    // Pages discarded last are counted until their grace period ends.
    let settled = crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        dev.pages().is_ok_and(|p| p == written / 2 / PAGE)
    });
    ensure(settled, || "rewritten pages not held".into())?;
    let before = blk::mem_available()?;
    ensure(before + written / 2 <= base + MEM_TOLERANCE, || {
        format!(
            "MemAvailable {} before, {} after rewriting {}",
            mib(base),
            mib(before),
            mib(written / 2)
        )
    })?;
    dev.destroy()?;
    let after = blk::wait_mem_available(base - MEM_TOLERANCE, Duration::from_secs(60))?;
    ensure(after + MEM_TOLERANCE >= base, || {
        format!(
            "MemAvailable {} at the start, {} with {} stored, {} after DESTROY (tolerance {})",
            mib(base),
            mib(before),
            mib(written / 2),
            mib(after),
            mib(MEM_TOLERANCE)
        )
    })
}

pub fn discard_512() -> TestResult {
    punch_device(512, Punch::Discard)
}

pub fn discard_4096() -> TestResult {
    punch_device(4096, Punch::Discard)
}

pub fn write_zeroes_512() -> TestResult {
    punch_device(512, Punch::ZeroOut)
}

pub fn write_zeroes_4096() -> TestResult {
    punch_device(4096, Punch::ZeroOut)
}

/// Online resize: grow while open (BLKGETSIZE64 follows, data intact), shrink refused while
/// open, shrink when closed frees exactly the pages past the end and keeps the data below
/// it, shrink with FORCE while open, and regrown space reads as zeros.
pub fn resize_online() -> TestResult {
    let dev = Device::create(64 * MIB, 4096)?;
    let f = blk::open_direct(&dev.path, true)?;
    let sums = blk::write_pattern(&f, 0, 48 * MIB, 0x2E51)?;
    ensure(dev.pages()? == 48 * MIB / PAGE, || {
        "written pages not held".into()
    })?;
    let expect_size = |f: &std::fs::File, want: u64, when: &str| -> TestResult {
        let bdev = blk::size64(f)?;
        let info = dev.info()?.size_bytes;
        ensure(bdev == want && info == want, || {
            format!("{when}: BLKGETSIZE64 {bdev}, INFO size {info}, want {want}")
        })
    };

    dev.resize(128 * MIB, 0)
        .map_err(|e| format!("growing 64 -> 128 MiB while open: {e}"))?;
    expect_size(&f, 128 * MIB, "after growing to 128 MiB")?;
    blk::verify_checksums(&f, 0, 48 * MIB, &sums).map_err(|e| format!("after growing: {e}"))?;
    blk::verify_range(&f, 48 * MIB, 80 * MIB, &|_| Expect::Zeros)
        .map_err(|e| format!("after growing: {e}"))?;

    expect_errno(
        "shrinking 128 -> 32 MiB while open",
        dev.resize(32 * MIB, 0),
        Errno::EBUSY,
    )?;
    expect_size(&f, 128 * MIB, "after a refused shrink")?;
    ensure(dev.pages()? == 48 * MIB / PAGE, || {
        "a refused shrink freed pages".into()
    })?;
    drop(f);

    dev.resize(32 * MIB, 0)
        .map_err(|e| format!("shrinking 128 -> 32 MiB with no opener: {e}"))?;
    let pages = dev.pages()?;
    ensure(pages == 32 * MIB / PAGE, || {
        format!(
            "after shrinking to 32 MiB the device holds {pages} pages, want {}",
            32 * MIB / PAGE
        )
    })?;
    let f = blk::open_direct(&dev.path, true)?;
    expect_size(&f, 32 * MIB, "after shrinking to 32 MiB")?;
    blk::verify_checksums(&f, 0, 32 * MIB, &sums[..(32 * MIB / PAGE) as usize])
        .map_err(|e| format!("after shrinking to 32 MiB: {e}"))?;

    expect_errno(
        "shrinking 32 -> 16 MiB while another fd has it open",
        dev.resize(16 * MIB, 0),
        Errno::EBUSY,
    )?;
    ensure(dev.pages()? == 32 * MIB / PAGE, || {
        "a refused shrink freed pages".into()
    })?;
    dev.resize(16 * MIB, RXDSK_FLAG_FORCE)
        .map_err(|e| format!("shrinking 32 -> 16 MiB with FORCE while open: {e}"))?;
    expect_size(&f, 16 * MIB, "after a forced shrink to 16 MiB")?;
    let pages = dev.pages()?;
    ensure(pages == 16 * MIB / PAGE, || {
        format!(
            "after a forced shrink to 16 MiB the device holds {pages} pages, want {}",
            16 * MIB / PAGE
        )
    })?;
    blk::verify_checksums(&f, 0, 16 * MIB, &sums[..(16 * MIB / PAGE) as usize])
        .map_err(|e| format!("after a forced shrink: {e}"))?;

    dev.resize(32 * MIB, 0)
        .map_err(|e| format!("growing 16 -> 32 MiB: {e}"))?;
    expect_size(&f, 32 * MIB, "after growing back to 32 MiB")?;
    blk::verify_range(&f, 16 * MIB, 16 * MIB, &|_| Expect::Zeros)
        .map_err(|e| format!("space past an earlier shrink must read as zeros: {e}"))?;
    blk::verify_checksums(&f, 0, 16 * MIB, &sums[..(16 * MIB / PAGE) as usize])?;
    ensure(dev.pages()? == 16 * MIB / PAGE, || {
        "growing stored pages".into()
    })?;
    drop(f);
    dev.destroy()
}

// ---------------------------------------------------------------------------------------------
// Data path on rxdsk

/// After a data-path run the device counted no error and its page count is consistent.
fn expect_clean_stats(dev: &Device, max_pages: u64) -> Result<RxdskStats, String> {
    let s = dev.stats()?;
    let pages = dev.pages()?;
    ensure(
        s.io_errors == 0 && s.alloc_failures == 0 && s.limit_failures == 0 && pages <= max_pages,
        || {
            format!(
                "{}: counters after the run: {s:?} (at most {max_pages} pages)",
                dev.path
            )
        },
    )?;
    Ok(s)
}

fn fio_on_rxdsk(lbs: u32, job: &str) -> TestResult {
    let dev = Device::create(GIB, lbs)?;
    {
        let f = blk::open_direct(&dev.path, false)?;
        let got = blk::logical_block_size(&f)?;
        ensure(got == lbs, || format!("BLKSSZGET {got}, want {lbs}"))?;
    }
    let sum = datapath::fio_verify(&dev.path, job, GIB)?;
    let s = expect_clean_stats(&dev, GIB / PAGE)?;
    ensure(
        s.write_bytes >= sum.write_bytes && s.read_bytes >= sum.read_bytes && s.pages > 0,
        || format!("fio moved {sum:?} but the device counted {s:?}"),
    )?;
    dev.destroy()
}

pub fn fio_verify_512() -> TestResult {
    fio_on_rxdsk(512, "fio-verify-512.fio")
}

pub fn fio_verify_4096() -> TestResult {
    fio_on_rxdsk(4096, "fio-verify-4096.fio")
}

fn ext2_on_rxdsk(lbs: u32, fs_block: u32) -> TestResult {
    let dev = Device::create(64 * MIB, lbs)?;
    let total = datapath::fs_roundtrip(&dev.path, fs_block)?;
    let s = expect_clean_stats(&dev, 64 * MIB / PAGE)?;
    ensure(s.write_bytes >= total, || {
        format!("{total} bytes of files written, but the device counted {s:?}")
    })?;
    dev.destroy()
}

/// ext2 with 4 KiB blocks on a 4096-byte-block device.
pub fn ext2_roundtrip_4096() -> TestResult {
    ext2_on_rxdsk(4096, 4096)
}

/// ext2 with 1 KiB blocks on a 512-byte-block device: sub-page writes and reads.
pub fn ext2_roundtrip_512() -> TestResult {
    ext2_on_rxdsk(512, 1024)
}

/// Swap on a 512 MiB device for a hog larger than its memory limit (`SwapParams::standard`).
pub fn swap_stress() -> TestResult {
    let dev = Device::create(512 * MIB, 4096)?;
    let p = SwapParams::standard(Duration::from_secs(300));
    let r = datapath::swap_stress(&dev.path, &p)?;
    let s = expect_clean_stats(&dev, 512 * MIB / PAGE)?;
    let must = p.hog_bytes - p.mem_max;
    ensure(s.write_bytes >= must && s.read_bytes > 0, || {
        format!(
            "the device took {} of swap-out and {} of swap-in, want at least {} out and some \
             in ({r:?})",
            mib(s.write_bytes),
            mib(s.read_bytes),
            mib(must)
        )
    })?;
    dev.destroy()
}

/// Module unload with devices holding data: rmmod succeeds, the devices and their memory go,
/// and the module loads again with no device.
pub fn unload_destroys_devices() -> TestResult {
    expect_no_devices("at the start")?;
    let base = blk::settled_mem_available(Duration::from_secs(60))?;
    let a = Device::create(64 * MIB, 4096)?;
    let b = Device::create(64 * MIB, 512)?;
    for d in [&a, &b] {
        let f = blk::open_direct(&d.path, true)?;
        blk::write_pattern(&f, 0, 48 * MIB, u64::from(d.id))?;
    }
    let (ida, idb) = (a.id, b.id);
    let held = blk::mem_available()?;
    ensure(held + 96 * MIB <= base + MEM_TOLERANCE, || {
        format!(
            "MemAvailable {} before, {} with 96 MiB stored",
            mib(base),
            mib(held)
        )
    })?;
    cmd_ok("rmmod", &["rxdsk"])?;
    a.forget();
    b.forget();
    for id in [ida, idb] {
        expect_gone(id)?;
    }
    let after = blk::wait_mem_available(base - MEM_TOLERANCE, Duration::from_secs(60))?;
    let reload = cmd_ok("insmod", &[crate::control::MODULE]);
    ensure(after + MEM_TOLERANCE >= base, || {
        format!(
            "MemAvailable {} before, {} with 96 MiB stored, {} after rmmod (tolerance {})",
            mib(base),
            mib(held),
            mib(after),
            mib(MEM_TOLERANCE)
        )
    })?;
    reload?;
    ensure(is_char_device(CONTROL), || {
        format!("{CONTROL} missing after reloading")
    })?;
    expect_no_devices("after unloading and reloading")
}
