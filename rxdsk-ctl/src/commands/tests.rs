//! Command logic against a fake kernel.

use super::*;
use crate::cli::Cli;
use clap::Parser;
use rxdsk_ioctl::{RxdskCreate, RxdskInfo, RxdskStats, RxdskVersion, RXDSK_FLAG_READ_ONLY};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

const CONTROL: &str = "/dev/rxdsk-control";

/// A kernel in memory: devices, injected errors, and a log of the calls.
struct Fake {
    devices: RefCell<BTreeMap<u32, RxdskInfo>>,
    stats: BTreeMap<u32, RxdskStats>,
    /// Errno to return for (operation, id); id 0 for create and list.
    fail: HashMap<(&'static str, u32), Errno>,
    /// Ids LIST reports that are gone by the time of INFO.
    vanished: Vec<u32>,
    node_appears: bool,
    abi_major: u32,
    /// What GET_FEATURES answers.
    features: u64,
    calls: RefCell<Vec<String>>,
    /// Algorithm and level of each device created.
    compress: RefCell<BTreeMap<u32, (u32, i32)>>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            devices: RefCell::new(BTreeMap::new()),
            stats: BTreeMap::new(),
            fail: HashMap::new(),
            vanished: Vec::new(),
            node_appears: true,
            abi_major: abi::RXDSK_ABI_MAJOR,
            features: abi::RXDSK_FEATURES_ALL,
            calls: RefCell::new(Vec::new()),
            compress: RefCell::new(BTreeMap::new()),
        }
    }

    fn with_device(self, id: u32, size: u64, used: u64) -> Self {
        self.devices.borrow_mut().insert(
            id,
            RxdskInfo {
                id,
                logical_block_size: 4096,
                size_bytes: size,
                used_bytes: used,
                ..Default::default()
            },
        );
        self
    }

    fn failing(mut self, op: &'static str, id: u32, errno: Errno) -> Self {
        self.fail.insert((op, id), errno);
        self
    }

    fn log(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    fn check(&self, op: &'static str, id: u32) -> Result<(), Errno> {
        self.fail.get(&(op, id)).map_or(Ok(()), |&e| Err(e))
    }

    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Backend for &Fake {
    fn control_path(&self) -> String {
        CONTROL.into()
    }

    fn version(&self) -> Result<RxdskVersion, Errno> {
        Ok(RxdskVersion {
            abi_major: self.abi_major,
            abi_minor: 0,
            module_version: abi::fixed_str("0.1.0"),
            ..Default::default()
        })
    }

    fn features(&self) -> Result<u64, Errno> {
        self.log("features".into());
        self.check("features", 0)?;
        Ok(self.features)
    }

    fn create(&self, r: &RxdskCreate) -> Result<u32, Errno> {
        self.log(format!(
            "create size={} limit={} flags={} lbs={} id={}",
            r.size_bytes, r.mem_limit_bytes, r.flags, r.logical_block_size, r.id
        ));
        self.check("create", 0)?;
        let mut devices = self.devices.borrow_mut();
        let id = if r.flags & rxdsk_ioctl::RXDSK_CREATE_WITH_ID != 0 {
            if devices.contains_key(&r.id) {
                return Err(Errno::EEXIST);
            }
            r.id
        } else {
            (0..)
                .find(|i| !devices.contains_key(i))
                .ok_or(Errno::ENOSPC)?
        };
        let compressed = if r.compress != 0 {
            abi::RXDSK_FLAG_COMPRESSED
        } else {
            0
        };
        devices.insert(
            id,
            RxdskInfo {
                id,
                logical_block_size: r.logical_block_size,
                size_bytes: r.size_bytes,
                mem_limit_bytes: r.mem_limit_bytes,
                flags: (r.flags & abi::RXDSK_FLAG_READ_ONLY) | compressed,
                ..Default::default()
            },
        );
        self.compress
            .borrow_mut()
            .insert(id, (r.compress, r.compress_level));
        Ok(id)
    }

    fn destroy(&self, id: u32, flags: u64) -> Result<(), Errno> {
        self.log(format!("destroy {id} flags={flags}"));
        self.check("destroy", id)?;
        self.devices
            .borrow_mut()
            .remove(&id)
            .map(|_| ())
            .ok_or(Errno::ENODEV)
    }

    fn resize(&self, id: u32, size_bytes: u64, flags: u64) -> Result<(), Errno> {
        self.log(format!("resize {id} size={size_bytes} flags={flags}"));
        self.check("resize", id)?;
        let mut devices = self.devices.borrow_mut();
        let info = devices.get_mut(&id).ok_or(Errno::ENODEV)?;
        info.size_bytes = size_bytes;
        Ok(())
    }

    fn info(&self, id: u32) -> Result<RxdskInfo, Errno> {
        self.log(format!("info {id}"));
        self.check("info", id)?;
        if self.vanished.contains(&id) {
            return Err(Errno::ENODEV);
        }
        self.devices.borrow().get(&id).copied().ok_or(Errno::ENODEV)
    }

    fn list(&self) -> Result<Vec<u32>, Errno> {
        self.log("list".into());
        self.check("list", 0)?;
        let mut ids: Vec<u32> = self.devices.borrow().keys().copied().collect();
        ids.extend(&self.vanished);
        ids.sort_unstable();
        Ok(ids)
    }

    fn stats(&self, id: u32) -> Result<RxdskStats, Errno> {
        self.log(format!("stats {id}"));
        self.check("stats", id)?;
        self.stats.get(&id).copied().ok_or(Errno::ENODEV)
    }

    fn compr_stats(&self, id: u32) -> Result<rxdsk_ioctl::RxdskComprStats, Errno> {
        self.log(format!("compr_stats {id}"));
        self.check("compr_stats", id)?;
        match self.compress.borrow().get(&id) {
            Some(&(algorithm, level)) if algorithm != 0 => Ok(rxdsk_ioctl::RxdskComprStats {
                id,
                algorithm,
                level,
                ..Default::default()
            }),
            _ => Err(Errno::EINVAL),
        }
    }

    fn attach(&self, a: &rxdsk_ioctl::RxdskAttach) -> Result<(), Errno> {
        let path = crate::control::fixed_str_to_string(&a.path);
        self.log(format!(
            "attach {} {path} flags={} journal={} interval={}",
            a.id, a.flags, a.journal_bytes, a.flush_interval_secs
        ));
        self.check("attach", a.id)?;
        if let Some(info) = self.devices.borrow_mut().get_mut(&a.id) {
            info.flags |= abi::RXDSK_FLAG_BACKED;
        }
        Ok(())
    }

    fn detach(&self, id: u32, flags: u64) -> Result<(), Errno> {
        self.log(format!("detach {id} flags={flags}"));
        self.check("detach", id)
    }

    fn flush(&self, id: u32) -> Result<rxdsk_ioctl::RxdskFlush, Errno> {
        self.log(format!("flush {id}"));
        self.check("flush", id)?;
        Ok(rxdsk_ioctl::RxdskFlush {
            id,
            pages_written: 3,
            bytes_written: 3 * 4096 + 8192,
            generation: 2,
            ..Default::default()
        })
    }

    fn restore(&self, r: &rxdsk_ioctl::RxdskRestore) -> Result<rxdsk_ioctl::RxdskRestore, Errno> {
        self.log(format!("restore flags={} id={}", r.flags, r.id));
        self.check("restore", 0)?;
        let id = if r.flags & abi::RXDSK_CREATE_WITH_ID != 0 {
            r.id
        } else {
            5
        };
        // A restored image: pages still to load.
        self.devices.borrow_mut().insert(
            id,
            RxdskInfo {
                id,
                logical_block_size: 4096,
                size_bytes: 1 << 20,
                flags: abi::RXDSK_FLAG_BACKED,
                unloaded_pages: 256,
                ..Default::default()
            },
        );
        Ok(rxdsk_ioctl::RxdskRestore {
            id,
            generation: 9,
            ..*r
        })
    }

    fn wait_for_node(&self, path: &str) -> bool {
        self.log(format!("wait {path}"));
        self.node_appears
    }
}

/// What a run printed and returned.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: u8,
    stdout: String,
    stderr: String,
}

fn outcome(status: u8, stdout: &str, stderr: &str) -> Outcome {
    Outcome {
        status,
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

/// A system without the module's sysfs files (so the fake's ioctls answer) where loading the
/// module is not allowed.
fn no_kernel() -> Kernel {
    Kernel {
        sysfs: Sysfs::new("/nonexistent/sys"),
        modprobe: Modprobe {
            program: "/nonexistent/modprobe".into(),
            may_load: false,
        },
    }
}

/// Runs `rxdskctl ARGS` against `fake`; also says whether the control node was opened.
fn run_with(fake: &Fake, args: &[&str]) -> (Outcome, bool) {
    run_in(fake, &no_kernel(), args)
}

/// [`run_with`] on `kernel`'s sysfs and modprobe.
fn run_in(fake: &Fake, kernel: &Kernel, args: &[&str]) -> (Outcome, bool) {
    let opened = Cell::new(false);
    let open = || {
        opened.set(true);
        Ok(fake)
    };
    (run_opening(open, kernel, args), opened.get())
}

/// `rxdskctl ARGS`, `open` opening the control node.
fn run_opening<'a>(
    open: impl Fn() -> Result<&'a Fake, ControlError>,
    kernel: &Kernel,
    args: &[&str],
) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("rxdskctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run(cli.into_command(), open, kernel, &mut out, &mut err);
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn run_fake(fake: &Fake, args: &[&str]) -> Outcome {
    run_with(fake, args).0
}

#[test]
fn create_prints_the_new_device() {
    let fake = Fake::new().with_device(0, 4096, 0);
    assert_eq!(
        run_fake(
            &fake,
            &[
                "create",
                "-s",
                "1G",
                "--mem-limit",
                "256M",
                "-r",
                "--block-size",
                "512"
            ]
        ),
        outcome(0, "/dev/rxd1\n", "")
    );
    assert_eq!(
        fake.calls(),
        [
            "create size=1073741824 limit=268435456 flags=1 lbs=512 id=0",
            "wait /dev/rxd1"
        ]
    );
}

#[test]
fn create_defaults_to_4k_blocks_and_no_limit() {
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &["create", "--size", "64M"]),
        outcome(0, "/dev/rxd0\n", "")
    );
    assert_eq!(
        fake.calls()[0],
        "create size=67108864 limit=0 flags=0 lbs=4096 id=0"
    );
    // An explicit 0 also means no limit.
    run_fake(&fake, &["create", "-s", "64M", "--mem-limit", "0"]);
    assert_eq!(
        fake.calls()[2],
        "create size=67108864 limit=0 flags=0 lbs=4096 id=0"
    );
}

#[test]
fn create_with_an_id() {
    let fake = Fake::new().with_device(0, 4096, 0);
    assert_eq!(
        run_fake(&fake, &["create", "-s", "64M", "--id", "/dev/rxd3"]),
        outcome(0, "/dev/rxd3\n", "")
    );
    assert_eq!(
        fake.calls()[0],
        "create size=67108864 limit=0 flags=2 lbs=4096 id=3"
    );
    assert_eq!(
        run_fake(&fake, &["create", "-s", "64M", "--id", "0"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd0: cannot create device: device already exists\n"
        )
    );
    let o = run_fake(&fake, &["create", "-s", "64M", "--id", "1024"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: invalid device id: 1024 (ids are below 1024)\n"
        )
    );
}

#[test]
fn no_command_lists_devices() {
    let fake = Fake::new().with_device(0, 4096, 0);
    assert_eq!(run_fake(&fake, &[]), run_fake(&fake, &["list"]));
    assert!(run_fake(&fake, &[]).stdout.contains("/dev/rxd0"));
}

#[test]
fn create_warns_when_the_node_does_not_appear() {
    let mut fake = Fake::new();
    fake.node_appears = false;
    assert_eq!(
        run_fake(&fake, &["create", "-s", "4K"]),
        outcome(
            0,
            "/dev/rxd0\n",
            "rxdskctl: /dev/rxd0: warning: the device node did not appear within 2 seconds\n"
        )
    );
}

#[test]
fn create_kernel_errors() {
    let fake = Fake::new().failing("create", 0, Errno::ENOSPC);
    assert_eq!(
        run_fake(&fake, &["create", "-s", "1G"]),
        outcome(1, "", "rxdskctl: cannot create device: no free device id\n")
    );
    let fake = Fake::new().failing("create", 0, Errno::EPERM);
    assert_eq!(
        run_fake(&fake, &["create", "-s", "1G"]),
        outcome(
            1,
            "",
            "rxdskctl: cannot create device: permission denied (CAP_SYS_ADMIN is required)\n"
        )
    );
}

#[test]
fn create_checks_sizes_before_opening() {
    let fake = Fake::new();
    for (args, message) in [
        (
            &["create", "-s", "1000"][..],
            "invalid size: 1000 bytes is not a multiple of the block size (4096)",
        ),
        (
            &[
                "create",
                "-s",
                "2560",
                "--block-size",
                "512",
                "--mem-limit",
                "4095",
            ][..],
            "invalid memory limit: 4095 bytes is less than one page (4096); use 0 for no limit",
        ),
        (&["create", "-s", "0"][..], "invalid size: must not be zero"),
        (
            &["create", "-s", "2P"][..],
            "invalid size: 2251799813685248 bytes is larger than the maximum (1P)",
        ),
    ] {
        let (o, opened) = run_with(&fake, args);
        assert_eq!(
            o,
            outcome(1, "", &format!("rxdskctl: {message}\n")),
            "{args:?}"
        );
        assert!(!opened, "{args:?}");
    }
    // The largest device and a 512-byte multiple are fine.
    assert_eq!(run_fake(&fake, &["create", "-s", "1P"]).status, 0);
    assert_eq!(
        run_fake(&fake, &["create", "-s", "2560", "--block-size", "512"]).status,
        0
    );
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.starts_with("create") || c.starts_with("wait")));
    assert_eq!(fake.calls().len(), 4);
}

#[test]
fn destroy_tries_every_device_and_reports_each_failure() {
    let fake = Fake::new()
        .with_device(0, 4096, 0)
        .with_device(1, 4096, 0)
        .with_device(2, 4096, 0)
        .failing("destroy", 0, Errno::EBUSY);
    assert_eq!(
        run_fake(&fake, &["destroy", "/dev/rxd0", "rxd1", "7", "2"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd0: cannot destroy: device busy\n\
             rxdskctl: /dev/rxd7: cannot destroy: no such device\n"
        )
    );
    assert_eq!(
        fake.calls(),
        [
            "destroy 0 flags=0",
            "info 0",
            "destroy 1 flags=0",
            "destroy 7 flags=0",
            "destroy 2 flags=0"
        ]
    );
    assert_eq!(
        fake.devices.borrow().keys().copied().collect::<Vec<_>>(),
        [0]
    );
}

#[test]
fn destroy_success_is_silent_and_force_sets_the_flag() {
    let fake = Fake::new().with_device(3, 4096, 0);
    assert_eq!(
        run_fake(&fake, &["destroy", "--force", "3"]),
        outcome(0, "", "")
    );
    assert_eq!(fake.calls(), ["destroy 3 flags=1"]);
}

#[test]
fn resize() {
    let fake = Fake::new()
        .with_device(0, 4096, 0)
        .failing("resize", 1, Errno::EBUSY);
    assert_eq!(
        run_fake(&fake, &["resize", "rxd0", "2G"]),
        outcome(0, "", "")
    );
    assert_eq!(fake.devices.borrow()[&0].size_bytes, 2 << 30);
    assert_eq!(
        run_fake(&fake, &["resize", "/dev/rxd1", "1M", "--force"]),
        outcome(1, "", "rxdskctl: /dev/rxd1: cannot resize: device busy\n")
    );
    assert_eq!(
        run_fake(&fake, &["resize", "5", "1M"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd5: cannot resize: no such device\n"
        )
    );
    assert_eq!(
        fake.calls(),
        [
            "resize 0 size=2147483648 flags=0",
            "resize 1 size=1048576 flags=1",
            "resize 5 size=1048576 flags=0"
        ]
    );
    let (o, opened) = run_with(&fake, &["resize", "0", "0"]);
    assert_eq!(
        o,
        outcome(1, "", "rxdskctl: invalid size: must not be zero\n")
    );
    assert!(!opened);
}

#[test]
fn list_skips_a_device_destroyed_meanwhile() {
    let mut fake = Fake::new()
        .with_device(0, 1 << 30, 4096)
        .with_device(2, 64 << 20, 0);
    fake.vanished = vec![1];
    assert_eq!(
        run_fake(&fake, &["list"]),
        outcome(
            0,
            "NAME      SIZE USED BLOCK-SIZE MEM-LIMIT RO\n\
             /dev/rxd0   1G   4K       4096         -  0\n\
             /dev/rxd2  64M   0B       4096         -  0\n",
            ""
        )
    );
    assert_eq!(fake.calls(), ["list", "info 0", "info 1", "info 2"]);
}

#[test]
fn list_fails_on_other_info_errors() {
    let fake = Fake::new()
        .with_device(0, 4096, 0)
        .with_device(1, 4096, 0)
        .failing("info", 1, Errno::EIO);
    assert_eq!(
        run_fake(&fake, &["list"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd1: cannot read device information: I/O error\n"
        )
    );
    let fake = Fake::new().failing("list", 0, Errno::EPERM);
    assert_eq!(
        run_fake(&fake, &["list", "-J"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxdsk-control: cannot list devices: permission denied \
             (CAP_SYS_ADMIN is required)\n"
        )
    );
}

#[test]
fn list_formats() {
    let fake = Fake::new().with_device(0, 1 << 30, 4096);
    fake.devices.borrow_mut().insert(
        4,
        RxdskInfo {
            id: 4,
            logical_block_size: 512,
            size_bytes: 3 << 29,
            mem_limit_bytes: 1 << 20,
            flags: RXDSK_FLAG_READ_ONLY,
            open_count: 2,
            ..Default::default()
        },
    );
    assert_eq!(
        run_fake(&fake, &["list", "-n", "-b"]).stdout,
        "/dev/rxd0 1073741824 4096 4096       - 0\n\
         /dev/rxd4 1610612736    0  512 1048576 1\n"
    );
    // One device, as zramctl DEVICE; a missing one is an error naming it.
    assert_eq!(
        run_fake(&fake, &["list", "--raw", "-n", "-o", "NAME,SIZE", "rxd4"]).stdout,
        "/dev/rxd4 1.5G\n"
    );
    let missing = run_fake(&fake, &["list", "/dev/rxd7"]);
    assert_eq!(missing.status, 1);
    assert!(
        missing.stderr.starts_with("rxdskctl: /dev/rxd7: "),
        "{}",
        missing.stderr
    );
    assert_eq!(
        run_fake(&fake, &["list", "--raw", "-o", "name,OPEN,ro"]).stdout,
        "NAME OPEN RO\n/dev/rxd0 0 0\n/dev/rxd4 2 1\n"
    );
    assert_eq!(
        run_fake(&fake, &["list", "--raw", "--output-all", "-n"]).stdout,
        "/dev/rxd0 0 1G 4K 4096 - 0 0 0 0B - - - 0B - - - - - - - -\n/dev/rxd4 4 1.5G 0B 512 1M 1 2 0 0B - - - 0B - - - - - - - -\n"
    );
    let json = run_fake(&fake, &["list", "-J", "-o", "name,mem-limit,ro"]).stdout;
    let compact: String = json.split_whitespace().collect();
    assert_eq!(
        compact,
        r#"{"rxdsk":[{"name":"/dev/rxd0","mem-limit":null,"ro":false},{"name":"/dev/rxd4","mem-limit":1048576,"ro":true}]}"#
    );
    let json = run_fake(&fake, &["list", "--json", "--output-all"]).stdout;
    let compact: String = json.split_whitespace().collect();
    assert_eq!(
        compact,
        r#"{"rxdsk":[{"name":"/dev/rxd0","id":0,"size":1073741824,"used":4096,"block-size":4096,"mem-limit":null,"ro":false,"open":0,"backed":false,"dirty":0,"backing":null,"mode":null,"journal":null,"unloaded":0,"algorithm":null,"data":null,"compr":null,"total":null,"ratio":null,"export":null,"cached":null,"hit-ratio":null},{"name":"/dev/rxd4","id":4,"size":1610612736,"used":0,"block-size":512,"mem-limit":1048576,"ro":true,"open":2,"backed":false,"dirty":0,"backing":null,"mode":null,"journal":null,"unloaded":0,"algorithm":null,"data":null,"compr":null,"total":null,"ratio":null,"export":null,"cached":null,"hit-ratio":null}]}"#
    );
    // JSON ignores -b and -n; without -o it has every column, id included.
    let json = run_fake(&fake, &["list", "-J", "-n"]).stdout;
    let compact: String = json.split_whitespace().collect();
    assert!(
        compact.starts_with(
            r#"{"rxdsk":[{"name":"/dev/rxd0","id":0,"size":1073741824,"used":4096,"block-size":4096,"mem-limit":null,"ro":false,"open":0,"backed":false,"dirty":0,"backing":null,"mode":null,"journal":null,"unloaded":0,"algorithm":null,"data":null,"compr":null,"total":null,"ratio":null,"export":null,"cached":null,"hit-ratio":null},"#
        ),
        "{compact}"
    );
}

#[test]
fn list_without_devices() {
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &["list"]),
        outcome(0, "NAME SIZE USED BLOCK-SIZE MEM-LIMIT RO\n", "")
    );
    assert_eq!(run_fake(&fake, &["list", "-n"]), outcome(0, "", ""));
    assert_eq!(
        run_fake(&fake, &["list", "-J"]),
        outcome(0, "{\n  \"rxdsk\": []\n}\n", "")
    );
}

#[test]
fn stats_text_and_json() {
    let mut fake = Fake::new();
    fake.stats.insert(
        1,
        RxdskStats {
            id: 1,
            reads: 3,
            read_bytes: 12288,
            pages: 2,
            ..Default::default()
        },
    );
    let o = run_fake(&fake, &["stats", "rxd1"]);
    assert_eq!(o.status, 0);
    assert!(
        o.stdout
            .starts_with("reads: 3\nwrites: 0\nread-bytes: 12K\nwrite-bytes: 0B\n"),
        "{}",
        o.stdout
    );
    let o = run_fake(&fake, &["stats", "rxd1", "-b"]);
    assert!(o.stdout.contains("\nread-bytes: 12288\n"), "{}", o.stdout);
    let json = run_fake(&fake, &["stats", "/dev/rxd1", "-J"]).stdout;
    let compact: String = json.split_whitespace().collect();
    assert_eq!(
        compact,
        r#"{"name":"/dev/rxd1","id":1,"reads":3,"writes":0,"read-bytes":12288,"write-bytes":0,"discards":0,"discard-bytes":0,"write-zeroes":0,"write-zeroes-bytes":0,"flushes":0,"pages":2,"zero-pages":0,"alloc-failures":0,"limit-failures":0,"io-errors":0,"dirty-pages":0,"written-back-bytes":0,"backing-flushes":0,"backing-errors":0,"flush-generation":0,"backing-reads":0,"atomic-flushes":0,"compression":null,"cache":null}"#
    );
    assert_eq!(
        run_fake(&fake, &["stats", "9"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd9: cannot read statistics: no such device\n"
        )
    );
}

#[test]
fn version_text_and_json() {
    let fake = Fake::new();
    let features = abi::RXDSK_FEATURES_ALL;
    assert_eq!(
        run_fake(&fake, &["version"]),
        outcome(
            0,
            &format!(
                "rxdskctl 0.1.0 (ABI 1.{})\nrxdsk module 0.1.0 (ABI 1.0, features {features:#x})\n",
                abi::RXDSK_ABI_MINOR
            ),
            ""
        )
    );
    let json = run_fake(&fake, &["version", "-J"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(
        v,
        serde_json::json!({
            "rxdskctl": {"version": "0.1.0", "abi-major": 1, "abi-minor": abi::RXDSK_ABI_MINOR},
            "module": {"version": "0.1.0", "abi-major": 1, "abi-minor": 0,
                       "features": features},
        })
    );
}

#[test]
fn version_refuses_another_abi_major() {
    let mut fake = Fake::new();
    fake.abi_major = 2;
    let o = run_fake(&fake, &["version"]);
    assert_eq!(o.status, 1);
    assert!(
        o.stdout.contains("rxdsk module 0.1.0 (ABI 2.0"),
        "{}",
        o.stdout
    );
    assert_eq!(
        o.stderr,
        format!(
            "rxdskctl: /dev/rxdsk-control: incompatible module ABI 2.0 (rxdskctl speaks 1.{})\n",
            abi::RXDSK_ABI_MINOR
        )
    );
}

#[test]
fn commands_need_the_control_node() {
    let missing = || -> Result<&Fake, ControlError> {
        Err(ControlError::new(CONTROL, action::OPEN, Errno::ENOENT))
    };
    let cause = "rxdskctl: /dev/rxdsk-control: cannot open: no such file (is the rxdsk module \
                 loaded? try: modprobe rxdsk)\n";
    // create and apply load the module first (tests/modprobe.rs).
    for args in [
        &["list"][..],
        &["destroy", "0"],
        &["resize", "0", "1M"],
        &["stats", "0"],
        &["version", "-J"],
    ] {
        assert_eq!(
            run_opening(missing, &no_kernel(), args),
            outcome(1, "", cause),
            "{args:?}"
        );
    }
    // `version` still says which rxdskctl this is.
    let Ok(cli) = Cli::try_parse_from(["rxdskctl", "version"]) else {
        panic!("version");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run(
            cli.into_command(),
            missing,
            &no_kernel(),
            &mut out,
            &mut err
        ),
        1
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("rxdskctl 0.1.0 (ABI 1.{})\n", abi::RXDSK_ABI_MINOR)
    );
}

/// An output that fails every write with `kind`.
struct Broken(io::ErrorKind);

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(self.0))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn output_errors() {
    let fake = Fake::new().with_device(0, 4096, 0);
    let run_into = |kind| {
        let Ok(cli) = Cli::try_parse_from(["rxdskctl", "list"]) else {
            panic!("list");
        };
        let mut err = Vec::new();
        let status = run(
            cli.into_command(),
            || Ok(&fake),
            &no_kernel(),
            &mut Broken(kind),
            &mut err,
        );
        (status, String::from_utf8_lossy(&err).into_owned())
    };
    // `rxdskctl list | head -0`: quiet success.
    assert_eq!(run_into(io::ErrorKind::BrokenPipe), (0, String::new()));
    let (status, err) = run_into(io::ErrorKind::StorageFull);
    assert_eq!(status, 1);
    assert!(err.starts_with("rxdskctl: write error: "), "{err}");
}

#[test]
fn attach_options_reach_the_request() {
    let fake = Fake::new();
    let o = run_fake(
        &fake,
        &[
            "attach",
            "--mode",
            "writethrough",
            "--journal",
            "16M",
            "--flush-interval",
            "30",
            "rxd0",
            "/dev/vda",
        ],
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert_eq!(
        fake.calls(),
        ["attach 0 /dev/vda flags=1 journal=16777216 interval=30"]
    );
    let bad = run_fake(&fake, &["attach", "--journal", "1000", "rxd0", "/dev/vda"]);
    assert_eq!(bad.status, 1);
    assert!(bad.stderr.contains("multiple of 4 KiB"), "{}", bad.stderr);
}

/// A device of `size` bytes whose memory limit (a cache size once attached) is `limit`.
fn with_limit(fake: Fake, id: u32, size: u64, limit: u64) -> Fake {
    let fake = fake.with_device(id, size, 0);
    if let Some(info) = fake.devices.borrow_mut().get_mut(&id) {
        info.mem_limit_bytes = limit;
    }
    fake
}

/// Writearound: ATTACH's flag, after the checks the kernel would answer with a bare EINVAL,
/// each named: a module without the feature, a device without a memory limit.
#[test]
fn attach_writearound() {
    let args = [
        "attach",
        "--mode",
        "writearound",
        "--journal",
        "64M",
        "/dev/rxd0",
        "/dev/sdb1",
    ];
    let fake = with_limit(Fake::new(), 0, 1 << 30, 256 << 20);
    assert_eq!(run_fake(&fake, &args), outcome(0, "", ""));
    assert_eq!(
        fake.calls(),
        [
            "features",
            "info 0",
            "attach 0 /dev/sdb1 flags=2 journal=67108864 interval=0"
        ]
    );
    assert_eq!(abi::RXDSK_ATTACH_WRITEAROUND, 2);
    let fake = Fake::new().with_device(0, 1 << 30, 0);
    assert_eq!(
        run_fake(&fake, &args),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd0: cannot attach in writearound mode: the device has no memory \
             limit (its cache size)\n"
        )
    );
    assert_eq!(fake.calls(), ["features", "info 0"]);
    let mut fake = with_limit(Fake::new(), 0, 1 << 30, 256 << 20);
    fake.features &= !abi::RXDSK_FEATURE_WRITEAROUND;
    assert_eq!(
        run_fake(&fake, &args),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd0: cannot attach in writearound mode: the loaded rxdsk module \
             does not support it (ABI 1.7 or later is needed)\n"
        )
    );
    assert_eq!(fake.calls(), ["features"]);
    // A module without GET_FEATURES is older still.
    let fake = with_limit(Fake::new(), 0, 1 << 30, 256 << 20).failing("features", 0, Errno::ENOTTY);
    assert!(run_fake(&fake, &args)
        .stderr
        .ends_with("does not support it (ABI 1.7 or later is needed)\n"));
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &args),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd0: cannot attach: no such device\n"
        )
    );
    // The other modes ask nothing first.
    for (mode, flags) in [("writeback", 0), ("writethrough", 1)] {
        let fake = Fake::new().with_device(0, 1 << 30, 0);
        let o = run_fake(&fake, &["attach", "--mode", mode, "rxd0", "/dev/sdb1"]);
        assert_eq!(o.status, 0, "{}", o.stderr);
        assert_eq!(
            fake.calls(),
            [format!(
                "attach 0 /dev/sdb1 flags={flags} journal=0 interval=0"
            )]
        );
    }
}

/// An image file of a 1 MiB device attached in writearound mode.
fn writearound_image(dir: &crate::testutil::Scratch) -> String {
    let path = dir.0.join("wa.img").display().to_string();
    let (h, mut data) = crate::testutil::write_image(&path, 1 << 20, 4);
    let h = h.with(abi::RXDSK_IMAGE_WRITEAROUND, 0, 0);
    let at = abi::header_offset(data.len() as u64).unwrap_or_default() as usize;
    data[at..at + 136].copy_from_slice(&h.to_bytes());
    std::fs::write(&path, &data).unwrap_or_else(|e| panic!("{path}: {e}"));
    path
}

/// A writearound image restores in its mode, which needs a cache: without --mem-limit, or with
/// a module without writearound, the restore is refused before RESTORE, and says why.
#[test]
fn restore_of_a_writearound_image() {
    let dir = crate::testutil::Scratch::new("restore-writearound");
    let img = writearound_image(&dir);
    let text = run_fake(&Fake::new(), &["inspect", &img]).stdout;
    assert!(text.contains("\nmode:           writearound\n"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&run_fake(&Fake::new(), &["inspect", "-J", &img]).stdout)
            .unwrap_or_default();
    assert_eq!(json["mode"], "writearound");
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &["create", "--backing", &img]),
        outcome(
            1,
            "",
            &format!(
                "rxdskctl: {img}: cannot restore: its image is in writearound mode, which needs \
                 a memory limit (the cache size): give --mem-limit\n"
            )
        )
    );
    assert_eq!(fake.calls(), ["features"]);
    let mut fake = Fake::new();
    fake.features &= !abi::RXDSK_FEATURE_WRITEAROUND;
    let o = run_fake(&fake, &["create", "--backing", &img, "--mem-limit", "512K"]);
    assert_eq!(
        o.stderr,
        format!(
            "rxdskctl: {img}: cannot restore: its image is in writearound mode, which the loaded \
             rxdsk module does not support (ABI 1.7 or later is needed)\n"
        )
    );
    let fake = Fake::new();
    let o = run_fake(&fake, &["create", "--backing", &img, "--mem-limit", "512K"]);
    assert_eq!(o, outcome(0, "/dev/rxd5\n", ""));
    assert_eq!(
        fake.calls(),
        ["features", "restore flags=0 id=0", "wait /dev/rxd5"]
    );
}

/// A blank backing device file of `bytes` (sparse: all zeros).
fn blank_disk(dir: &crate::testutil::Scratch, bytes: u64) -> String {
    let path = dir.0.join("disk").display().to_string();
    let f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    f.set_len(bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    path
}

/// `create --backing` on a blank backing device: a new device as big as it allows (its size
/// less the journal and the 4 KiB metadata block, rounded down to 4 KiB), attached with the
/// options given.
#[test]
fn create_on_a_blank_backing_device() {
    let dir = crate::testutil::Scratch::new("create-blank");
    let disk = blank_disk(&dir, (64 << 20) + 1000);
    let fake = Fake::new();
    let o = run_fake(
        &fake,
        &[
            "create",
            "--backing",
            &disk,
            "--mem-limit",
            "4M",
            "--journal",
            "1M",
        ],
    );
    assert_eq!(o, outcome(0, "/dev/rxd0\n", ""));
    let size = (64 << 20) - (1 << 20) - 4096;
    assert_eq!(
        fake.calls(),
        [
            format!("create size={size} limit=4194304 flags=0 lbs=4096 id=0"),
            format!("attach 0 {disk} flags=0 journal=1048576 interval=0"),
            "wait /dev/rxd0".into(),
        ]
    );
    assert!(fake.devices.borrow()[&0].flags & abi::RXDSK_FLAG_BACKED != 0);
    // Every option of a new device and of attach; no memory limit is allowed, as for a
    // restore.
    let fake = Fake::new();
    let o = run_fake(
        &fake,
        &[
            "create",
            "--backing",
            &disk,
            "--id",
            "3",
            "--compress",
            "zstd",
            "--compress-level",
            "5",
            "--mode",
            "writethrough",
            "--flush-interval",
            "30",
        ],
    );
    assert_eq!(o, outcome(0, "/dev/rxd3\n", ""));
    assert_eq!(
        fake.calls(),
        [
            format!(
                "create size={} limit=0 flags=2 lbs=4096 id=3",
                (64 << 20) - 4096
            ),
            format!("attach 3 {disk} flags=1 journal=0 interval=30"),
            "wait /dev/rxd3".into(),
        ]
    );
    assert_eq!(fake.compress.borrow()[&3], (abi::RXDSK_COMPRESS_ZSTD, 5));
    // Writearound: the cache size first, then whether the module has the mode.
    let fake = Fake::new();
    let o = run_fake(
        &fake,
        &[
            "create",
            "--backing",
            &disk,
            "--mode",
            "writearound",
            "--mem-limit",
            "8M",
        ],
    );
    assert_eq!(o, outcome(0, "/dev/rxd0\n", ""));
    assert_eq!(
        fake.calls()[..2],
        [
            "features".to_string(),
            format!(
                "create size={} limit=8388608 flags=0 lbs=4096 id=0",
                (64 << 20) - 4096
            )
        ]
    );
    assert_eq!(
        fake.calls()[2],
        format!("attach 0 {disk} flags=2 journal=0 interval=0")
    );
    let fake = Fake::new();
    assert_eq!(
        run_fake(
            &fake,
            &["create", "--backing", &disk, "--mode", "writearound"]
        ),
        outcome(
            1,
            "",
            &format!(
                "rxdskctl: {disk}: cannot attach in writearound mode: it needs a memory limit \
                 (the cache size): give --mem-limit\n"
            )
        )
    );
    let mut fake = Fake::new();
    fake.features &= !abi::RXDSK_FEATURE_WRITEAROUND;
    let o = run_fake(
        &fake,
        &[
            "create",
            "--backing",
            &disk,
            "--mode",
            "writearound",
            "--mem-limit",
            "8M",
        ],
    );
    assert_eq!(
        o.stderr,
        format!(
            "rxdskctl: {disk}: cannot attach in writearound mode: the loaded rxdsk module does \
             not support it (ABI 1.7 or later is needed)\n"
        )
    );
    assert_eq!(fake.calls(), ["features"]);
    // A journal of no whole number of blocks, or one that leaves no room: nothing is done.
    let (o, opened) = run_with(
        &Fake::new(),
        &["create", "--backing", &disk, "--journal", "64M"],
    );
    assert_eq!(
        (o, opened),
        (
            outcome(
                1,
                "",
                &format!(
                    "rxdskctl: {disk}: too small for a device and a journal of 64M: it has \
                     67109864 bytes, and the metadata block takes the last 4 KiB\n"
                )
            ),
            false
        )
    );
    let fake = Fake::new();
    let o = run_fake(&fake, &["create", "--backing", &disk, "--journal", "1000"]);
    assert_eq!(
        o.stderr,
        "rxdskctl: invalid journal size: 1000 bytes is not a multiple of 4 KiB\n"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

/// What only applies with --backing, given with --size, is refused before anything is done
/// (clap does not check it next to --size).
#[test]
fn create_options_that_need_backing() {
    for (option, name) in [
        (&["--journal", "64M"][..], "--journal"),
        (&["--mode", "writethrough"], "--mode"),
        (&["--flush-interval", "5"], "--flush-interval"),
        (&["--force"], "--force"),
        (&["--preload"], "--preload"),
    ] {
        let mut args = vec!["create", "-s", "1G"];
        args.extend(option);
        let (o, opened) = run_with(&Fake::new(), &args);
        assert_eq!(
            (o, opened),
            (
                outcome(
                    1,
                    "",
                    &format!(
                        "rxdskctl: {name} only with --backing (rxdskctl attach attaches a \
                         backing device to a device created without one)\n"
                    )
                ),
                false
            )
        );
    }
}

/// A new device whose attach fails is destroyed again: no device is left behind half set up.
#[test]
fn create_on_a_blank_backing_device_undoes_a_failed_attach() {
    let dir = crate::testutil::Scratch::new("create-blank-fails");
    let disk = blank_disk(&dir, 16 << 20);
    let fake = Fake::new().failing("attach", 0, Errno::EBUSY);
    assert_eq!(
        run_fake(&fake, &["create", "--backing", &disk, "--mem-limit", "4M"]),
        outcome(
            1,
            "",
            "rxdskctl: /dev/rxd0: cannot attach: device busy (a backing device is attached, or \
             the backing device is in use) (the device was destroyed again)\n"
        )
    );
    assert_eq!(
        fake.calls()[1..],
        [
            format!("attach 0 {disk} flags=0 journal=0 interval=0"),
            "destroy 0 flags=1".into()
        ]
    );
    assert!(fake.devices.borrow().is_empty());
    // If even that fails, both are said, and how to finish.
    let fake = Fake::new()
        .failing("attach", 0, Errno::EBUSY)
        .failing("destroy", 0, Errno::EBUSY);
    assert_eq!(
        run_fake(&fake, &["create", "--backing", &disk]).stderr,
        "rxdskctl: /dev/rxd0: cannot attach: device busy (a backing device is attached, or the \
         backing device is in use); and then /dev/rxd0: cannot destroy: device busy (rxdskctl \
         destroy --force /dev/rxd0 removes it)\n"
    );
    // The device could not be created: nothing to undo.
    let fake = Fake::new().failing("create", 0, Errno::ENOSPC);
    assert_eq!(
        run_fake(&fake, &["create", "--backing", &disk]),
        outcome(1, "", "rxdskctl: cannot create device: no free device id\n")
    );
    assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
}

/// Only a blank device is initialised; one with an image is restored as before, and what
/// its image says (journal, mode, flush interval) is not asked for again.
#[test]
fn create_on_a_backing_device_that_holds_something() {
    let dir = crate::testutil::Scratch::new("create-not-blank");
    let disk = blank_disk(&dir, 16 << 20);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[0x53, 0xef], 1024 + 56) // ext2's magic
        })
        .unwrap_or_else(|e| panic!("{disk}: {e}"));
    let (o, opened) = run_with(
        &Fake::new(),
        &["create", "--backing", &disk, "--journal", "1M"],
    );
    assert_eq!(
        (o, opened),
        (
            outcome(
                1,
                "",
                &format!(
                    "rxdskctl: {disk} holds data but no rxdsk image (a filesystem? an image from \
                     before it was resized?); create --backing initialises only a blank device: \
                     wipe it first (blkdiscard, wipefs) or attach it by hand (rxdskctl attach)\n"
                )
            ),
            false
        )
    );
    let img = dir.0.join("img").display().to_string();
    crate::testutil::write_image(&img, 1 << 20, 3);
    let fake = Fake::new();
    assert_eq!(
        run_fake(
            &fake,
            &[
                "create",
                "--backing",
                &img,
                "--journal",
                "1M",
                "--mode",
                "writeback"
            ]
        ),
        outcome(
            1,
            "",
            &format!(
                "rxdskctl: {img}: --mode, --journal do not apply: the image on {img} says its \
                 own journal, mode and flush interval, which a restore keeps (rxdskctl inspect \
                 {img} shows them)\n"
            )
        )
    );
    assert!(fake.calls().is_empty());
    let fake = Fake::new();
    let o = run_fake(&fake, &["create", "--backing", &img, "--mem-limit", "512K"]);
    assert_eq!(o, outcome(0, "/dev/rxd5\n", ""));
    assert_eq!(fake.calls(), ["restore flags=0 id=0", "wait /dev/rxd5"]);
    // Not there at all: the restore says so, as before; with attach options, at once.
    let missing = dir.0.join("missing").display().to_string();
    let fake = Fake::new().failing("restore", 0, Errno::ENOENT);
    let o = run_fake(&fake, &["create", "--backing", &missing]);
    assert_eq!(o.status, 1);
    assert_eq!(fake.calls(), ["restore flags=0 id=0"]);
    let (o, opened) = run_with(
        &Fake::new(),
        &["create", "--backing", &missing, "--journal", "1M"],
    );
    assert!(!opened);
    assert!(
        o.stderr
            .starts_with(&format!("rxdskctl: {missing}: cannot open: ")),
        "{}",
        o.stderr
    );
}

/// A bad address or port is refused before anything is opened or loaded.
#[test]
fn export_checks_the_address_first() {
    let fake = Fake::new().with_device(0, 4096, 0);
    for (args, said) in [
        (
            &["--address", "192.0.2.300"][..],
            "invalid --address \"192.0.2.300\": not an IPv4 or IPv6 address",
        ),
        (
            &["--address", "fe80::1"][..],
            "invalid --address \"fe80::1\": a link-local address needs its interface \
             (fe80::1%eth0, say)",
        ),
        (
            &["--address", "192.0.2.1", "--port", "0"][..],
            "invalid --port 0: a TCP port is 1 to 65535",
        ),
        (
            &["--transport", "loop", "--port", "4420"][..],
            "--address and --port are for --transport tcp, not loop",
        ),
    ] {
        let mut all = vec![
            "export",
            "--allow-host",
            "nqn.2014-08.org.nvmexpress:uuid:h",
        ];
        all.extend(args);
        all.push("rxd0");
        let (o, opened) = run_with(&fake, &all);
        assert_eq!(
            o,
            outcome(
                1,
                "",
                &format!("rxdskctl: /dev/rxd0: cannot export: {said}\n")
            ),
            "{args:?}"
        );
        assert!(!opened, "{args:?}");
    }
}

/// A fake with devices `backed` attached to a backing device and `plain` not.
fn with_backed(backed: &[u32], plain: &[u32]) -> Fake {
    let mut fake = Fake::new();
    for &id in backed.iter().chain(plain) {
        fake = fake.with_device(id, 1 << 20, 0);
    }
    for id in backed {
        if let Some(info) = fake.devices.borrow_mut().get_mut(id) {
            info.flags |= abi::RXDSK_FLAG_BACKED;
        }
    }
    fake
}

fn flushed(fake: &Fake) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.starts_with("flush"))
        .collect()
}

const FLUSHED: &str = "flushed 3 pages (20K written) in 0.00 s, generation 2";

/// The shutdown flush skips what has nothing to flush: a device that does not exist, or
/// has no backing device (by INFO, or detached before FLUSH); nothing else.
#[test]
fn flush_if_backed_skips_only_missing_and_unbacked_devices() {
    let fake = with_backed(&[0, 3], &[1]).failing("flush", 3, Errno::ENXIO);
    let o = run_fake(&fake, &["flush", "--if-backed", "0", "1", "2", "3"]);
    assert_eq!(o, outcome(0, &format!("/dev/rxd0: {FLUSHED}\n"), ""));
    assert_eq!(flushed(&fake), ["flush 0", "flush 3"]);
    // Any other error fails, after the other devices are flushed.
    let fake = with_backed(&[0, 2], &[])
        .failing("info", 0, Errno::EIO)
        .failing("flush", 2, Errno::EIO);
    let o = run_fake(&fake, &["flush", "--if-backed", "0", "2"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxd0: cannot read device information: I/O error\n\
             rxdskctl: /dev/rxd2: cannot flush: I/O error on the backing device (the changes \
             stay in memory; retry the flush)\n"
        )
    );
    assert_eq!(flushed(&fake), ["flush 2"]);
    // Named without --if-backed: a device without a backing device is an error.
    let fake = with_backed(&[], &[1]).failing("flush", 1, Errno::ENXIO);
    let o = run_fake(&fake, &["flush", "1"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxd1: cannot flush: no backing device attached\n"
        )
    );
}

#[test]
fn flush_all_fails_when_the_devices_cannot_be_listed_or_read() {
    let fake = with_backed(&[0], &[]).failing("list", 0, Errno::EPERM);
    let o = run_fake(&fake, &["flush", "--all"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxdsk-control: cannot list devices: permission denied \
             (CAP_SYS_ADMIN is required)\n"
        )
    );
    assert!(flushed(&fake).is_empty());
    let fake = with_backed(&[0, 1], &[2])
        .failing("info", 1, Errno::ENOMEM)
        .failing("flush", 0, Errno::ENXIO);
    let o = run_fake(&fake, &["flush", "--all", "-J"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxd1: cannot read device information: Out of memory\n"
        )
    );
    assert_eq!(flushed(&fake), ["flush 0"]);
    assert_eq!(o.stdout, "{\n  \"flushed\": []\n}\n");
}

/// At shutdown the module may be gone (no control node): then no device has anything to
/// flush. Any other failure to open it is an error.
#[test]
fn flush_if_backed_without_the_module() {
    let run_missing = |args: &[&str], errno: Errno| {
        let missing = || -> Result<&Fake, ControlError> {
            Err(ControlError::new(CONTROL, action::OPEN, errno))
        };
        let o = run_opening(missing, &no_kernel(), args);
        (o.status, o.stderr)
    };
    assert_eq!(
        run_missing(&["flush", "--if-backed", "rxd0"], Errno::ENOENT),
        (0, String::new())
    );
    assert_eq!(run_missing(&["flush", "--all"], Errno::ENOENT).0, 0);
    assert_eq!(run_missing(&["flush", "rxd0"], Errno::ENOENT).0, 1);
    assert_eq!(
        run_missing(&["flush", "--if-backed", "rxd0"], Errno::EACCES),
        (
            1,
            "rxdskctl: /dev/rxdsk-control: cannot open: permission denied (CAP_SYS_ADMIN is \
             required)\n"
                .into()
        )
    );
}

mod apply;
mod json;

/// `gen-dhchap-key` prints a secret the parser takes (no module needed), or writes it to a
/// new file only its owner can read.
#[test]
fn gen_dhchap_key() {
    use std::os::unix::fs::PermissionsExt;
    let fake = Fake::new();
    for (args, transform, len) in [
        (&[][..], 0, 32),
        (&["--hmac", "2"][..], 2, 48),
        (&["-m", "3"][..], 3, 64),
        (&["-m", "1", "--key-length", "64"][..], 1, 64),
        (&["-l", "48"][..], 0, 48),
    ] {
        let mut all = vec!["gen-dhchap-key"];
        all.extend(args);
        let (o, opened) = run_with(&fake, &all);
        assert_eq!(
            (o.status, o.stderr.as_str(), opened),
            (0, "", false),
            "{args:?}"
        );
        let s = crate::dhchap::Secret::parse(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.transform, s.len()), (transform, len), "{args:?}");
        assert_eq!(format!("{}\n", s.encode()), o.stdout);
    }
    // Two runs, two secrets.
    assert_ne!(
        run_fake(&fake, &["gen-dhchap-key"]).stdout,
        run_fake(&fake, &["gen-dhchap-key"]).stdout
    );
    let dir = crate::testutil::Scratch::new("gen-dhchap-key");
    let file = dir.0.join("host.key").display().to_string();
    assert_eq!(
        run_fake(&fake, &["gen-dhchap-key", "-o", &file]),
        outcome(0, "", "")
    );
    let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600));
    assert!(crate::dhchap::read_secret_file(&file).is_ok());
    // An existing file is not overwritten.
    let again = run_fake(&fake, &["gen-dhchap-key", "-o", &file]);
    assert_eq!(again.status, 1);
    assert!(
        again.stderr.contains("cannot write: File exists"),
        "{}",
        again.stderr
    );
    for (args, why) in [
        (&["gen-dhchap-key", "--hmac", "4"][..], "4 is not in 0..=3"),
        (
            &["gen-dhchap-key", "-l", "40"][..],
            "a DH-HMAC-CHAP key is 32, 48 or 64 bytes",
        ),
    ] {
        let e = Cli::try_parse_from(std::iter::once("rxdskctl").chain(args.iter().copied()))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{args:?}: {e}");
    }
}

/// Runs `rxdskctl export ARGS` against `fake` and the nvmet tree at `root`: the exit status
/// and messages, and whether the control node was opened.
fn run_export(fake: &Fake, root: &std::path::Path, args: &[&str]) -> (u8, String, bool) {
    let cli = Cli::try_parse_from(["rxdskctl", "export"].iter().chain(args))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Export(a) = cli.into_command() else {
        panic!("not export")
    };
    let opened = Cell::new(false);
    let mut out = Vec::new();
    let result = export(
        &a,
        root,
        || {
            opened.set(true);
            Ok(fake)
        },
        &mut out,
    );
    match result {
        Ok(()) => (0, String::from_utf8_lossy(&out).into_owned(), opened.get()),
        Err(Failure::Messages(m)) => (1, m.join("\n"), opened.get()),
        Err(e) => panic!("{e:?}"),
    }
}

/// Every secret is read and checked, and how the secrets go with the hosts, before anything
/// is opened or changed: a wrong secret leaves the nvmet tree as it was.
#[test]
fn export_checks_secrets_before_anything_changes() {
    use crate::testutil::nvmet::{fake_nvmet, snapshot};
    const SPEC: &str = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:";
    const H: &str = "nqn.2014-08.org.nvmexpress:uuid:h";
    let fake = Fake::new().with_device(0, 4096, 0);
    let (dir, root) = fake_nvmet("export-secrets");
    let spec = format!("@{}", dir.write("spec.key", &format!("{SPEC}\n")));
    let other = crate::dhchap::Secret::generate(1, 48, &mut &[7u8; 48][..])
        .unwrap_or_else(|e| panic!("{e}"))
        .encode();
    let other = format!("@{}", dir.write("other.key", &other));
    let short = format!(
        "@{}",
        dir.write("short.key", "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMU:\n")
    );
    let base = ["--transport", "loop", "--allow-host", H];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .chain(&["rxd0"])
            .map(|s| s.to_string())
            .collect()
    };
    let (status, said, _) = run_export(
        &fake,
        &root,
        &with(&["--dhchap-secret", &spec])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        (status, said.contains(&format!("{H}(dhchap)"))),
        (0, true),
        "{said}"
    );
    let before = snapshot(&root);
    let changed = format!("{}B{}", &SPEC[..20], &SPEC[21..]);
    let missing = format!("@{}", dir.0.join("none.key").display());
    let h2 = "nqn.2014-08.org.nvmexpress:uuid:h2";
    for (extra, why) in [
        (
            vec!["--dhchap-secret", &changed],
            format!("--dhchap-secret of {H}: CRC-32 mismatch: the secret says a70d69fa"),
        ),
        (
            vec!["--dhchap-secret", &missing],
            format!("--dhchap-secret of {H}: {}: cannot read", &missing[1..]),
        ),
        (
            vec!["--dhchap-secret", &short],
            format!(
                "--dhchap-secret of {H}: {}: the key is 17 bytes",
                &short[1..]
            ),
        ),
        (
            vec!["--dhchap-secret", &spec, "--dhchap-ctrl-secret", &spec],
            format!(
                "the --dhchap-ctrl-secret of {H} is its --dhchap-secret: the two directions \
                 need two secrets"
            ),
        ),
        (
            vec!["--dhchap-ctrl-secret", &other],
            "--dhchap-ctrl-secret needs --dhchap-secret".into(),
        ),
        (
            vec!["--dhchap-dhgroup", "ffdhe2048"],
            "--dhchap-dhgroup needs --dhchap-secret".into(),
        ),
        (
            vec!["--allow-host", h2, "--dhchap-secret", &spec],
            "1 --dhchap-secret for 2 --allow-host: give one for each host, in the same order"
                .into(),
        ),
        (
            vec!["--dhchap-secret", "-", "--dhchap-ctrl-secret", "-"],
            "only one secret can come from standard input (-)".into(),
        ),
    ] {
        let args = with(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, said, opened) = run_export(&fake, &root, &args);
        assert_eq!((status, opened), (1, false), "{extra:?}: {said}");
        assert!(
            said.starts_with(&format!("/dev/rxd0: cannot export: {why}")),
            "{extra:?}: {said}"
        );
        assert!(!said.contains("ia6z") && !said.contains("Hh8g"), "{said}");
        assert_eq!(snapshot(&root), before, "{extra:?}");
    }
    // Any host, and a secret: no authentication would happen.
    let (status, said, opened) = run_export(
        &fake,
        &root,
        &[
            "--transport",
            "loop",
            "--allow-any-host",
            "--dhchap-secret",
            &spec,
            "rxd0",
        ],
    );
    assert_eq!((status, opened), (1, false));
    assert_eq!(
        said,
        "/dev/rxd0: cannot export: --allow-any-host turns authentication off (nvmet \
         authenticates only the hosts it allows by name): give each host with --allow-host \
         and its --dhchap-secret"
    );
    assert_eq!(snapshot(&root), before);
    // A good one replaces the secret.
    let args = with(&["--dhchap-secret", &other, "--dhchap-hash", "sha512"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(run_export(&fake, &root, &args).0, 0);
    let host = root.join("hosts").join(H);
    let read = |f: &str| std::fs::read_to_string(host.join(f)).unwrap_or_default();
    assert_eq!(
        read("dhchap_key"),
        std::fs::read_to_string(&other[1..]).unwrap_or_default()
    );
    assert_eq!(read("dhchap_hash"), "hmac(sha512)");
}
mod modprobe;
mod sysfs;
