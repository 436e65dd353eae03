//! `rxdskctl apply` carried out against the fake kernel and a fake system.

use super::*;
use crate::apply::{execute, plan, read_state, BackingState, System};

use crate::testutil::Scratch;

#[test]
fn apply_creates_then_leaves_alone_then_grows() {
    let dir = Scratch::new("apply-cycle");
    let conf = dir.write(
        "rxdsk.conf",
        "[rxd2]\nsize = 64M\ncompress = zstd\n\n[rxd0]\nsize=1G\nblock-size=512\n",
    );
    let fake = Fake::new().with_device(7, 4096, 0);
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(
        o,
        outcome(
            0,
            "rxd0: created 1G, 512-byte blocks\nrxd2: created 64M, zstd\n",
            ""
        )
    );
    let creates: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("create"))
        .collect();
    assert_eq!(
        creates,
        [
            "create size=1073741824 limit=0 flags=2 lbs=512 id=0",
            "create size=67108864 limit=0 flags=2 lbs=4096 id=2"
        ]
    );
    fake.calls.borrow_mut().clear();
    assert_eq!(
        run_fake(&fake, &["apply", "--config", &conf]),
        outcome(0, "rxd0: unchanged\nrxd2: unchanged\n", "")
    );
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.starts_with("create") && !c.starts_with("resize")),
        "{:?}",
        fake.calls()
    );
    let conf = dir.write(
        "rxdsk.conf",
        "[rxd2]\nsize = 128M\ncompress = zstd\n\n[rxd0]\nsize=1G\nblock-size=512\n",
    );
    assert_eq!(
        run_fake(&fake, &["apply", "--config", &conf, "-J"]).stdout,
        format!(
            "{:#}\n",
            serde_json::json!({"dry-run": false, "actions": [
                {"device": "/dev/rxd0", "action": "unchanged", "done": true},
                {"device": "/dev/rxd2", "action": "grow", "done": true, "from": 64 << 20, "size": 128 << 20},
            ]})
        )
    );
    assert_eq!(fake.devices.borrow()[&2].size_bytes, 128 << 20);
    // Device 7 is not configured: never looked at beyond LIST, never changed.
    assert!(
        fake.calls().iter().all(|c| !c.ends_with(" 7")),
        "{:?}",
        fake.calls()
    );
}

#[test]
fn a_bad_line_changes_nothing_and_needs_no_module() {
    let dir = Scratch::new("apply-bad");
    let good = dir.write("etc/rxdsk.conf", "[rxd0]\nsize = 64M\n");
    dir.write(
        "etc/rxdsk.conf.d/10-swap.conf",
        "[rxd1]\nsize=1G\n\nsise = 2G\n",
    );
    let fake = Fake::new();
    let root = dir.0.display().to_string();
    let (o, opened) = run_with(&fake, &["apply", "--root", &root]);
    assert_eq!(
        o,
        outcome(
            1,
            "",
            &format!(
                "rxdskctl: {root}/etc/rxdsk.conf.d/10-swap.conf:4: unknown key \"sise\" in [rxd1] (did you mean \"size\"?)\n"
            )
        )
    );
    assert!(!opened && fake.calls().is_empty());
    // Asked for rxd1, whose line is bad: refused too.
    let o = run_fake(&fake, &["apply", "--root", &root, "rxd1"]);
    assert_eq!((o.status, o.stdout.as_str()), (1, ""));
    assert!(
        o.stderr.contains("10-swap.conf:4: unknown key \"sise\""),
        "{}",
        o.stderr
    );
    assert!(fake.calls().is_empty());
    // The main file alone is fine.
    assert_eq!(run_fake(&fake, &["apply", "--config", &good]).status, 0);
}

/// At boot each setup service applies its own device: an error in another device's section
/// is that device's problem (the generator skipped it), reported here as a warning only.
#[test]
fn a_device_asked_for_is_applied_despite_errors_in_other_sections() {
    let dir = Scratch::new("apply-other-bad");
    dir.write("etc/rxdsk.conf", "[rxd0]\nsize = 64M\n");
    dir.write(
        "etc/rxdsk.conf.d/10-swap.conf",
        "[rxd1]\nsize=1G\n\nsise = 2G\n",
    );
    let root = dir.0.display().to_string();
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &["apply", "--root", &root, "rxd0"]),
        outcome(
            0,
            "rxd0: created 64M\n",
            &format!(
                "rxdskctl: warning: {root}/etc/rxdsk.conf.d/10-swap.conf:4: unknown key \"sise\" in [rxd1] (did you mean \"size\"?) (ignored: apply was asked for rxd0)\n"
            )
        )
    );
    assert!(!fake.devices.borrow().contains_key(&1));
    // A file that cannot be read might say anything about rxd0: refused.
    std::fs::write(dir.0.join("etc/rxdsk.conf.d/10-swap.conf"), b"\xff")
        .unwrap_or_else(|e| panic!("{e}"));
    let o = run_fake(&fake, &["apply", "--root", &root, "rxd0", "-n"]);
    assert_eq!(o.status, 1, "{o:?}");
    assert!(
        o.stderr.ends_with("10-swap.conf: not UTF-8 text\n"),
        "{}",
        o.stderr
    );
}

#[test]
fn dry_run_changes_nothing() {
    let dir = Scratch::new("apply-dry");
    let conf = dir.write("c.conf", "[rxd0]\nsize = 64M\nswap-priority = 10\n");
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &["apply", "-n", "--config", &conf, "--activate"]),
        outcome(
            0,
            "rxd0: would create 64M\nrxd0: would format as swap\nrxd0: would activate as swap (priority 10)\n",
            ""
        )
    );
    assert!(fake.devices.borrow().is_empty());
    assert!(
        fake.calls().iter().all(|c| c == "list"),
        "{:?}",
        fake.calls()
    );
}

#[test]
fn a_plan_error_changes_nothing() {
    let dir = Scratch::new("apply-mismatch");
    let conf = dir.write(
        "c.conf",
        "[rxd0]\nsize = 64M\ncompress = lz4\n[rxd1]\nsize = 1G\n",
    );
    let fake = Fake::new().with_device(0, 64 << 20, 4096);
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(o.status, 1);
    assert_eq!(
        o.stderr,
        format!("rxdskctl: {conf}:3: rxd0: it has no compression, the configuration says lz4; that cannot change without recreating the device (rxdskctl destroy rxd0, then apply again)\n")
    );
    assert!(!fake.devices.borrow().contains_key(&1));
    // Named devices only: rxd1 alone is fine.
    assert_eq!(
        run_fake(&fake, &["apply", "--config", &conf, "rxd1"]),
        outcome(0, "rxd1: created 1G\n", "")
    );
}

/// As apply --help says (mount(8)'s convention, per device): 32 when every device with work
/// to do failed, even if some of its steps were done; 64 when some device was set up and
/// another failed.
#[test]
fn a_device_that_fails_half_way_has_failed() {
    let dir = Scratch::new("apply-half-way");
    // Created, then formatting fails: no such mkfs.
    let conf = dir.write("c.conf", "[rxd0]\nsize = 64M\nfs-type = rxdsk-no-such-fs\n");
    let fake = Fake::new();
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(
        (o.status, o.stdout.as_str()),
        (crate::apply::EXIT_FAILED, "rxd0: created 64M\n")
    );
    assert!(
        o.stderr
            .starts_with("rxdskctl: /dev/rxd0: cannot format: cannot run mkfs.rxdsk-no-such-fs"),
        "{}",
        o.stderr
    );
    let conf = dir.write(
        "c.conf",
        "[rxd1]\nsize = 64M\nfs-type = rxdsk-no-such-fs\n[rxd2]\nsize = 64M\n",
    );
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(o.status, crate::apply::EXIT_PARTIAL, "{o:?}");
}

#[test]
fn kernel_failures_are_reported_with_mount_style_status() {
    let dir = Scratch::new("apply-fail");
    let conf = dir.write("c.conf", "[rxd0]\nsize = 64M\n[rxd1]\nsize = 64M\n");
    let fake = Fake::new().failing("create", 0, Errno::ENOMEM);
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(o.status, crate::apply::EXIT_FAILED);
    assert_eq!(
        o.stderr,
        "rxdskctl: /dev/rxd0: cannot create device: Out of memory\n\
         rxdskctl: /dev/rxd1: cannot create device: Out of memory\n"
    );
    let fake = Fake::new()
        .with_device(1, 32 << 20, 4096)
        .failing("resize", 1, Errno::ENOSPC);
    let o = run_fake(&fake, &["apply", "--config", &conf, "-J"]);
    assert_eq!(o.status, crate::apply::EXIT_PARTIAL);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    assert_eq!(v["actions"][0]["action"], "create");
    assert_eq!(v["actions"][1]["action"], "grow");
    assert_eq!(v["actions"][1]["done"], false);
    assert_eq!(
        v["actions"][1]["error"],
        "/dev/rxd1: cannot resize: no space left"
    );
    assert_eq!(
        o.stderr,
        "rxdskctl: /dev/rxd1: cannot resize: no space left\n"
    );
}

#[test]
fn restores_from_an_image_file() {
    let dir = Scratch::new("apply-restore");
    let img = dir.0.join("backing.img");
    let h = rxdsk_ioctl::RxdskImageHeader::new(4096, 1 << 20, 4, rxdsk_ioctl::RXDSK_IMAGE_CLEAN, 0);
    let mut data = vec![0u8; (1 << 20) + 8192];
    let at = rxdsk_ioctl::header_offset(data.len() as u64).unwrap_or_default() as usize;
    data[at..at + 136].copy_from_slice(&h.to_bytes());
    std::fs::write(&img, &data).unwrap_or_else(|e| panic!("{e}"));
    let conf = dir.write(
        "c.conf",
        &format!("[rxd3]\nbacking = {}\nfs-type = ext4\n", img.display()),
    );
    let fake = Fake::new();
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    // The restored image holds data: not formatted (no mkfs was run on the host).
    assert_eq!(
        o,
        outcome(
            0,
            &format!("rxd3: restored 1M from {} (generation 4)\n", img.display()),
            ""
        )
    );
    assert!(
        fake.calls().contains(&"restore flags=2 id=3".to_string()),
        "{:?}",
        fake.calls()
    );
    // A backing file without an image: created and attached.
    std::fs::write(&img, vec![0u8; 3 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let conf = dir.write(
        "c.conf",
        &format!(
            "[rxd4]\nbacking = {}\nsize = 1M\njournal = 1M\n",
            img.display()
        ),
    );
    assert_eq!(
        run_fake(&fake, &["apply", "--config", &conf]),
        outcome(
            0,
            &format!(
                "rxd4: created 1M\nrxd4: attached to {} (writeback, journal 1M)\n",
                img.display()
            ),
            ""
        )
    );
    // Writearound: created with its cache size, then attached with its flag (the module's
    // feature and the device's limit checked first).
    std::fs::write(&img, vec![0u8; 3 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let conf = dir.write(
        "c.conf",
        &format!(
            "[rxd6]\nbacking = {}\nsize = 1M\nmem-limit = 512K\nmode = writearound\n",
            img.display()
        ),
    );
    fake.calls.borrow_mut().clear();
    assert_eq!(
        run_fake(&fake, &["apply", "--config", &conf]),
        outcome(
            0,
            &format!(
                "rxd6: created 1M, memory limit 512K\nrxd6: attached to {} (writearound)\n",
                img.display()
            ),
            ""
        )
    );
    let calls = fake.calls();
    let attach = format!("attach 6 {} flags=2 journal=0 interval=0", img.display());
    assert_eq!(
        calls[calls.len() - 3..],
        ["features".to_string(), "info 6".into(), attach],
        "{calls:?}"
    );
}

/// A blank backing device and no size: the device is as big as the backing device allows,
/// and attached to it; a backing device with data is refused and nothing is done. The
/// backing device is examined for real (a file here).
#[test]
fn apply_on_a_blank_backing_device_without_size() {
    let dir = Scratch::new("apply-blank");
    let disk = dir.0.join("disk").display().to_string();
    let file = std::fs::File::create(&disk).unwrap_or_else(|e| panic!("{disk}: {e}"));
    file.set_len(32 << 20)
        .unwrap_or_else(|e| panic!("{disk}: {e}"));
    let conf = dir.write(
        "rxdsk.conf",
        &format!("[rxd1]\nbacking = {disk}\njournal = 1M\nmem-limit = 4M\n"),
    );
    let fake = Fake::new();
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(
        o,
        outcome(
            0,
            &format!(
                "rxd1: created 31M, memory limit 4M\nrxd1: attached to {disk} (writeback, \
                 journal 1M)\n"
            ),
            ""
        )
    );
    let size = (32 << 20) - (1 << 20) - 4096;
    let calls: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("create") || c.starts_with("attach"))
        .collect();
    assert_eq!(
        calls,
        [
            format!("create size={size} limit=4194304 flags=2 lbs=4096 id=1"),
            format!("attach 1 {disk} flags=0 journal=1048576 interval=0"),
        ]
    );
    // Something on it: refused while planning.
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[1], (32 << 20) - 1)
        .unwrap_or_else(|e| panic!("{disk}: {e}"));
    let fake = Fake::new();
    let o = run_fake(&fake, &["apply", "--config", &conf]);
    assert_eq!(
        o,
        outcome(
            1,
            "",
            &format!(
                "rxdskctl: {conf}:2: rxd1: cannot use the backing device: {disk} holds data but \
                 no rxdsk image (a filesystem? an image from before it was resized?); apply \
                 initialises only a blank device: wipe it first (blkdiscard, wipefs) or attach \
                 it by hand (rxdskctl attach)\n"
            )
        )
    );
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("create")),
        "{:?}",
        fake.calls()
    );
}

/// Programs and tables of a system in memory.
#[derive(Default)]
struct FakeSystem {
    ran: RefCell<Vec<String>>,
    fail: Option<&'static str>,
    /// A fake nvmet tree, if exports are looked at.
    nvmet: Option<std::path::PathBuf>,
}

impl System for FakeSystem {
    fn backing_state(&self, path: &str) -> BackingState {
        self.ran.borrow_mut().push(format!("examine {path}"));
        BackingState {
            devno: None,
            image: Err(format!("{path}: not in this test")),
            bytes: None,
        }
    }

    fn swaps(&self) -> Vec<String> {
        Vec::new()
    }

    fn mounts(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        self.ran
            .borrow_mut()
            .push(format!("{program} {}", args.join(" ")));
        if self.fail == Some(program) {
            return Err(format!("{program} failed"));
        }
        Ok(())
    }

    fn create_dir(&self, path: &str) -> Result<(), String> {
        self.ran.borrow_mut().push(format!("mkdir {path}"));
        Ok(())
    }

    fn swapon(&self, path: &str, flags: i32) -> Result<(), String> {
        self.ran
            .borrow_mut()
            .push(format!("swapon(2) {path} {flags:#x}"));
        Ok(())
    }

    fn exports(&self) -> Vec<crate::export::Export> {
        self.nvmet
            .as_deref()
            .map_or(Vec::new(), crate::export::exports)
    }

    fn export(&self, request: &crate::export::Request) -> Result<(), String> {
        self.ran
            .borrow_mut()
            .push(format!("export rxd{}", request.id));
        let root = self.nvmet.as_deref().ok_or("no nvmet in this test")?;
        crate::export::export(root, request).map(|_| ())
    }
}

fn plans_for(fake: &Fake, system: &FakeSystem, text: &str) -> Vec<crate::apply::DevicePlan> {
    let config = crate::config::parse(
        &[("f".to_string(), text.to_string())],
        &crate::config::Machine::default(),
    )
    .unwrap_or_default();
    let state = read_state(&fake, &config, &[], system, true).unwrap_or_default();
    plan(&config, &[], &state, true).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn formats_and_activates() {
    let fake = Fake::new();
    let system = FakeSystem::default();
    let text = "[rxd0]\nsize=64M\nswap-priority=7\noptions=discard\n[rxd1]\nsize=64M\nfs-type=ext4\nmount-point=/mnt/fast\noptions=noatime\n";
    let plans = plans_for(&fake, &system, text);
    let o = execute(&&fake, &system, &plans);
    assert_eq!(o.status(), 0, "{:?}", o.failures);
    assert_eq!(
        system.ran.borrow().clone(),
        [
            "mkswap /dev/rxd0",
            "swapon(2) /dev/rxd0 0x18007",
            "mkfs.ext4 /dev/rxd1",
            "mkdir /mnt/fast",
            "mount -t ext4 -o noatime /dev/rxd1 /mnt/fast",
        ]
    );
    let texts: Vec<String> = o.reports.iter().map(|r| r.text.clone()).collect();
    assert_eq!(
        texts,
        [
            "rxd0: created 64M",
            "rxd0: formatted as swap",
            "rxd0: activated as swap (priority 7)",
            "rxd1: created 64M",
            "rxd1: formatted as ext4",
            "rxd1: mounted on /mnt/fast",
        ]
    );
}

#[test]
fn never_formats_a_device_that_holds_data() {
    let fake = Fake::new();
    let system = FakeSystem::default();
    let plans = plans_for(&fake, &system, "[rxd0]\nsize=64M\nfs-type=ext4\n");
    // Written to between the plan and its execution.
    let create = crate::apply::Step::Create(
        crate::request::NewDevice {
            size: 64 << 20,
            block_size: 4096,
            id: Some(0),
            ..Default::default()
        }
        .request()
        .unwrap_or_default(),
    );
    assert_eq!(plans[0].steps[0], create);
    (&fake)
        .create(&rxdsk_ioctl::RxdskCreate {
            size_bytes: 64 << 20,
            logical_block_size: 4096,
            flags: abi::RXDSK_CREATE_WITH_ID,
            ..Default::default()
        })
        .unwrap_or_default();
    if let Some(i) = fake.devices.borrow_mut().get_mut(&0) {
        i.used_bytes = 4096;
    }
    let o = execute(
        &&fake,
        &system,
        &plans[0..1]
            .iter()
            .map(|p| crate::apply::DevicePlan {
                id: p.id,
                steps: p.steps[1..].to_vec(),
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.status(), 0);
    assert!(system.ran.borrow().is_empty(), "{:?}", system.ran.borrow());
    assert!(o.reports.is_empty());
}

#[test]
fn a_failed_step_ends_its_device() {
    let fake = Fake::new();
    let system = FakeSystem {
        fail: Some("mkswap"),
        ..Default::default()
    };
    let plans = plans_for(
        &fake,
        &system,
        "[rxd0]\nsize=64M\nswap-priority=1\n[rxd1]\nsize=64M\n",
    );
    let o = execute(&&fake, &system, &plans);
    assert_eq!(o.status(), crate::apply::EXIT_PARTIAL);
    assert_eq!(o.failures, ["/dev/rxd0: cannot format: mkswap failed"]);
    assert_eq!(system.ran.borrow().clone(), ["mkswap /dev/rxd0"]);
    assert!(fake.devices.borrow().contains_key(&1));
}

#[test]
fn a_device_asked_for_alone_looks_at_nothing_else() {
    let fake = Fake::new();
    let system = FakeSystem::default();
    let config = crate::config::parse(
        &[(
            "f".to_string(),
            "[rxd0]\nsize=64M\n[rxd1]\nbacking=/dev/vdb\n".to_string(),
        )],
        &crate::config::Machine::default(),
    )
    .unwrap_or_default();
    let state = read_state(&&fake, &config, &[0], &system, false).unwrap_or_default();
    assert!(system.ran.borrow().is_empty(), "{:?}", system.ran.borrow());
    assert!(plan(&config, &[0], &state, false).is_ok());
    read_state(&&fake, &config, &[], &system, false).unwrap_or_default();
    assert_eq!(system.ran.borrow().clone(), ["examine /dev/vdb"]);
}

#[test]
fn no_configuration_nothing_to_do() {
    let dir = Scratch::new("apply-empty");
    let root = dir.0.display().to_string();
    let fake = Fake::new();
    let (o, opened) = run_with(&fake, &["apply", "--root", &root]);
    assert_eq!((o, opened), (outcome(0, "", ""), false));
    let o = run_fake(&fake, &["apply", "--root", &root, "-J"]);
    assert_eq!(o.stdout, "{\n  \"actions\": [],\n  \"dry-run\": false\n}\n");
    // A device asked for that is not configured is an error.
    let o = run_fake(&fake, &["apply", "--root", &root, "rxd3"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: rxd3: not in the configuration (no configuration file)\n"
        )
    );
}

/// A size that is a share of the machine's memory (MemTotal of <root>/proc/meminfo), and the
/// warning about a bare number that is a tiny device, in the dry run and the run itself.
#[test]
fn sizes_as_a_share_of_ram_and_implausible_ones() {
    let dir = Scratch::new("apply-sizes");
    // 2000003 kB: half is 1024001536 bytes, 1024000000 once rounded down to 4 KiB.
    dir.write(
        "proc/meminfo",
        "MemTotal:        2000003 kB\nMemFree:          100000 kB\n",
    );
    dir.write(
        "etc/rxdsk.conf",
        "[rxd0]\nsize = 50%\n[rxd1]\nsize = 8192\n",
    );
    let root = dir.0.display().to_string();
    let fake = Fake::new();
    let warning = format!(
        "rxdskctl: warning: {root}/etc/rxdsk.conf:4: size = 8192 in [rxd1] is 8192 bytes (8K): \
         a number without a unit is bytes (8192M for MiB)\n"
    );
    assert_eq!(
        run_fake(&fake, &["apply", "-n", "--root", &root]),
        outcome(
            0,
            "rxd0: would create 976.6M\nrxd1: would create 8K\n",
            &warning
        )
    );
    let o = run_fake(&fake, &["apply", "--root", &root]);
    assert_eq!((o.status, o.stderr.as_str()), (0, warning.as_str()));
    assert_eq!(fake.devices.borrow()[&0].size_bytes, 1_024_000_000);
    // Without MemTotal there is no share of it.
    dir.write("proc/meminfo", "MemFree: 1 kB\n");
    let o = run_fake(&fake, &["apply", "-n", "--root", &root, "rxd0"]);
    assert_eq!(o.status, 1);
    assert_eq!(
        o.stderr,
        format!(
            "rxdskctl: {root}/etc/rxdsk.conf:2: invalid size \"50%\" in [rxd0]: a share of the \
             memory, but {root}/proc/meminfo has no MemTotal\n"
        )
    );
}

/// An export in the configuration is made once, with its hosts' secrets from their files;
/// a second run leaves it unchanged; a changed setting exports again; a secret that cannot be
/// used stops the plan.
#[test]
fn exports_are_applied_idempotently() {
    use crate::testutil::nvmet::{fake_nvmet, snapshot};
    let (dir, root) = fake_nvmet("apply-export");
    let host_key = crate::dhchap::Secret::generate(1, 32, &mut &[1u8; 32][..])
        .unwrap_or_else(|e| panic!("{e}"))
        .encode();
    let hk = dir.write("keys/h.key", &format!("{host_key}\n"));
    let ck = dir.write(
        "keys/c.key",
        "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:\n",
    );
    let fake = Fake::new();
    let system = FakeSystem {
        nvmet: Some(root.clone()),
        ..Default::default()
    };
    let text = |hash: &str| {
        format!(
            "[rxd0]\nsize=64M\nexport=loop\nexport-allow-hosts=nqn.2014-08.org.example:h\n\
             export-dhchap-secret={hk}\nexport-dhchap-ctrl-secret={ck}\nexport-dhchap-hash={hash}\n"
        )
    };
    let plans = plans_for(&fake, &system, &text("sha256"));
    let o = execute(&&fake, &system, &plans);
    assert_eq!(o.status(), 0, "{:?}", o.failures);
    let texts: Vec<String> = o.reports.iter().map(|r| r.text.clone()).collect();
    assert_eq!(
        texts,
        [
            "rxd0: created 64M",
            "rxd0: exported as nqn.2026-12.io.rxdsk:rxd0 over loop to nqn.2014-08.org.example:h \
             (DH-HMAC-CHAP)"
        ]
    );
    let host = root.join("hosts/nqn.2014-08.org.example:h");
    let read = |f: &str| std::fs::read_to_string(host.join(f)).unwrap_or_default();
    assert_eq!(read("dhchap_key"), host_key);
    assert!(read("dhchap_ctrl_key").starts_with("DHHC-1:00:ia6z"));
    let done = snapshot(&root);
    // Unchanged.
    let plans = plans_for(&fake, &system, &text("sha256"));
    assert!(plans[0].steps.is_empty(), "{plans:?}");
    assert_eq!(
        execute(&&fake, &system, &plans)
            .reports
            .iter()
            .map(|r| r.text.clone())
            .collect::<Vec<_>>(),
        ["rxd0: unchanged"]
    );
    assert_eq!(snapshot(&root), done);
    // Another hash: exported again.
    let plans = plans_for(&fake, &system, &text("sha512"));
    assert_eq!(plans[0].steps.len(), 1);
    assert_eq!(plans[0].steps[0].action(), "export");
    assert_eq!(execute(&&fake, &system, &plans).status(), 0);
    assert_eq!(read("dhchap_hash"), "hmac(sha512)");
    assert!(plans_for(&fake, &system, &text("sha512"))[0]
        .steps
        .is_empty());
    // A secret that cannot be used: nothing is planned, nothing changes.
    let done = snapshot(&root);
    dir.write("keys/h.key", "DHHC-1:00:AAAA:\n");
    let config = crate::config::parse(
        &[("f".to_string(), text("sha384"))],
        &crate::config::Machine::default(),
    )
    .unwrap_or_default();
    let state = read_state(&&fake, &config, &[], &system, true).unwrap_or_default();
    let e = plan(&config, &[], &state, true).expect_err("planned");
    assert_eq!(
        e,
        [format!(
            "f:5: rxd0: cannot use the secret: {hk}: 3 bytes are too few for a key and its \
             CRC-32 (a DH-HMAC-CHAP key is 32, 48 or 64 bytes)"
        )]
    );
    assert_eq!(snapshot(&root), done);
}

/// `--no-export` (the setup service at boot) leaves the export to the export service; a dry
/// run says what the export would be.
#[test]
fn no_export_and_dry_run() {
    let dir = Scratch::new("apply-no-export");
    let conf = dir.write(
        "rxdsk.conf",
        "[rxd1]\nsize=64M\nexport=tcp\nexport-address=192.0.2.1\nexport-allow-any-host=yes\n",
    );
    let fake = Fake::new();
    assert_eq!(
        run_fake(&fake, &["apply", "-n", "--config", &conf]),
        outcome(
            0,
            "rxd1: would create 64M\nrxd1: would export as nqn.2026-12.io.rxdsk:rxd1 over tcp \
             192.0.2.1 port 4420 to any host\n",
            ""
        )
    );
    assert_eq!(
        run_fake(&fake, &["apply", "--no-export", "--config", &conf]),
        outcome(0, "rxd1: created 64M\n", "")
    );
}
