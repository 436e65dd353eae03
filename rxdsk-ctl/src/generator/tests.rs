//! The units the generator writes, and `systemd-analyze verify` on them with the template.

use super::*;

fn config(text: &str) -> Config {
    crate::config::parse(
        &[("/etc/rxdsk.conf".to_string(), text.to_string())],
        &crate::config::Machine::default(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn file<'a>(entries: &'a [(String, Entry)], name: &str) -> &'a str {
    match entries.iter().find(|(n, _)| n == name) {
        Some((_, Entry::File(text))) => text,
        other => panic!("{name}: {other:?} in {entries:#?}"),
    }
}

fn link<'a>(entries: &'a [(String, Entry)], name: &str) -> &'a str {
    match entries.iter().find(|(n, _)| n == name) {
        Some((_, Entry::Link(target))) => target,
        other => panic!("{name}: {other:?} in {entries:#?}"),
    }
}

use crate::testutil::{active_example as example, Scratch};

/// The units of `config` on a system that says nothing more (no /dev, /sys or fstab).
fn units_of(config: &Config) -> Vec<(String, Entry)> {
    units(config, Path::new("/nonexistent-root"), &BTreeSet::new())
}

fn drop_in_of(e: &[(String, Entry)], id: u32) -> String {
    file(
        e,
        &format!("rxdsk-setup@rxd{id}.service.d/50-rxdsk-generator.conf"),
    )
    .to_string()
}

/// A backing device on device-mapper (dm-crypt, LVM, ...) is a consumer of its
/// `blockdev@.target` (systemd.special(7)): the setup service is ordered after it, so at
/// shutdown the device is flushed before the storage service takes the dm device away.
#[test]
fn a_dm_backing_device_orders_the_setup_after_its_blockdev_target() {
    for (backing, want) in [
        (
            "/dev/mapper/cache",
            Some("blockdev@dev-mapper-cache.target"),
        ),
        (
            "/dev/mapper/luks-data",
            Some("blockdev@dev-mapper-luks\\x2ddata.target"),
        ),
        (
            "/dev/disk/by-id/dm-name-crypt",
            Some("blockdev@dev-mapper-crypt.target"),
        ),
        // LVM's /dev/VG/LV is /dev/mapper/VG-LV, a '-' in either name doubled.
        (
            "/dev/vg0/fast-cache",
            Some("blockdev@dev-mapper-vg0\\x2dfast\\x2d\\x2dcache.target"),
        ),
        ("/dev/disk/by-id/virtio-c", None),
        ("/dev/vdb", None),
        ("/dev/md/data", None),
    ] {
        let e = units_of(&config(&format!(
            "[rxd1]\nsize=1G\nbacking={backing}\nfs-type=ext4\nmount-point=/m\n"
        )));
        let drop_in = drop_in_of(&e, 1);
        let after: Vec<&str> = drop_in
            .lines()
            .filter_map(|l| l.strip_prefix("After=blockdev@"))
            .collect();
        match want {
            Some(target) => assert_eq!(
                after,
                [target.strip_prefix("blockdev@").unwrap_or_default()],
                "{backing}: {drop_in}"
            ),
            None => assert!(after.is_empty(), "{backing}: {drop_in}"),
        }
    }
}

/// A stable name that leads to a dm device now (/dev/dm-N) is followed to the dm name sysfs
/// gives.
#[test]
fn a_link_to_a_dm_device_is_followed_to_its_name() {
    let s = Scratch::new("generator-dm");
    s.write("dev/dm-2", "");
    s.write("sys/block/dm-2/dm/name", "luks-data\n");
    std::fs::create_dir_all(s.0.join("dev/disk/by-uuid")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../../dm-2", s.0.join("dev/disk/by-uuid/1234"))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = config("[rxd1]\nsize=1G\nbacking=/dev/disk/by-uuid/1234\n");
    let drop_in = drop_in_of(&units(&c, &s.0, &BTreeSet::new()), 1);
    assert!(
        drop_in.contains("\nAfter=blockdev@dev-mapper-luks\\x2ddata.target\n"),
        "{drop_in}"
    );
}

#[test]
fn paths_escape_like_systemd_escape() {
    for (path, want) in [
        ("/dev/rxd0", "dev-rxd0"),
        ("/var/cache/fast", "var-cache-fast"),
        (
            "/dev/disk/by-id/virtio-rxdsk-cache",
            "dev-disk-by\\x2did-virtio\\x2drxdsk\\x2dcache",
        ),
        ("/", "-"),
        ("/.hidden/x", "\\x2ehidden-x"),
        ("/mnt/a.b_c:d", "mnt-a.b_c:d"),
        ("/mnt/é", "mnt-\\xc3\\xa9"),
    ] {
        assert_eq!(escape_path(path), want, "{path}");
    }
}

/// The same answers as systemd's own tool, where it is installed.
#[test]
fn paths_escape_as_the_installed_systemd_escape_does() {
    let paths = [
        "/dev/disk/by-id/virtio-x_y",
        "/srv/a b",
        "/.x/y.z",
        "/mnt/100%",
    ];
    let Ok(out) = std::process::Command::new("systemd-escape")
        .arg("--path")
        .args(paths)
        .output()
    else {
        eprintln!("SKIP: systemd-escape is not installed");
        return;
    };
    let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
    let ours: Vec<String> = paths.iter().map(|p| escape_path(p)).collect();
    assert_eq!(theirs.split_whitespace().collect::<Vec<_>>(), ours);
}

#[test]
fn swap_device() {
    let e = units_of(&config(
        "[rxd0]\nsize=1G\ncompress=zstd\nswap-priority=100\noptions=discard\n",
    ));
    assert_eq!(
        link(&e, "swap.target.wants/dev-rxd0.swap"),
        "../dev-rxd0.swap"
    );
    assert_eq!(
        file(&e, "dev-rxd0.swap"),
        "# Written by rxdsk-generator from /etc/rxdsk.conf:1\n[Unit]\nDescription=rxdsk swap on /dev/rxd0\n\
         Documentation=man:rxdsk.conf(5)\nSourcePath=/etc/rxdsk.conf\nRequires=rxdsk-setup@rxd0.service\n\
         After=rxdsk-setup@rxd0.service\n\n[Swap]\nWhat=/dev/rxd0\nPriority=100\nOptions=discard\n"
    );
    // Pulled in by its swap unit: no link, no drop-in.
    assert_eq!(e.len(), 2, "{e:#?}");
}

#[test]
fn backed_mounted_device() {
    let e = units_of(&config(
        "[rxd1]\nsize=1G\nbacking=/dev/disk/by-id/virtio-c\nflush-interval=60\nfs-type=ext4\n\
         mount-point=/var/cache/fast\noptions=noatime\n",
    ));
    assert_eq!(
        link(&e, "local-fs.target.wants/var-cache-fast.mount"),
        "../var-cache-fast.mount"
    );
    let mount = file(&e, "var-cache-fast.mount");
    assert!(
        mount.contains("Requires=rxdsk-setup@rxd1.service\nAfter=rxdsk-setup@rxd1.service\n"),
        "{mount}"
    );
    assert!(
        mount.ends_with(
            "[Mount]\nWhat=/dev/rxd1\nWhere=/var/cache/fast\nType=ext4\nOptions=noatime\n"
        ),
        "{mount}"
    );
    assert_eq!(
        file(&e, "rxdsk-setup@rxd1.service.d/50-rxdsk-generator.conf"),
        "# Written by rxdsk-generator from /etc/rxdsk.conf:1\n[Unit]\nSourcePath=/etc/rxdsk.conf\n\
         Requires=dev-disk-by\\x2did-virtio\\x2dc.device\nAfter=dev-disk-by\\x2did-virtio\\x2dc.device\n"
    );
}

/// The shutdown flush lives in the static template, not in the generator's drop-in: a
/// daemon-reload with a broken or changed configuration (the generator then writes nothing)
/// must not take it away from a running device.
#[test]
fn the_template_flushes_at_stop_whatever_the_generator_wrote() {
    assert!(
        SETUP_TEMPLATE.contains("\nExecStop=/usr/sbin/rxdskctl flush --if-backed %i\n"),
        "{SETUP_TEMPLATE}"
    );
    assert!(SETUP_TEMPLATE.contains("\nTimeoutStopSec=infinity\n"));
    assert!(SETUP_TEMPLATE.contains("\nTimeoutStartSec=infinity\n"));
}

#[test]
fn raw_and_formatted_only_devices_are_set_up_before_local_filesystems() {
    let e = units_of(&config("[rxd2]\nsize=1G\n[rxd3]\nsize=1G\nfs-type=xfs\n"));
    for n in [2, 3] {
        assert_eq!(
            link(
                &e,
                &format!("local-fs.target.wants/rxdsk-setup@rxd{n}.service")
            ),
            "/usr/lib/systemd/system/rxdsk-setup@.service"
        );
        assert!(file(
            &e,
            &format!("rxdsk-setup@rxd{n}.service.d/50-rxdsk-generator.conf")
        )
        .contains("Before=local-fs.target\n"));
    }
    assert_eq!(e.len(), 4, "{e:#?}");
}

#[test]
fn no_configuration_no_units() {
    assert!(units_of(&Config::default()).is_empty());
}

fn run_main(args: &[&str], root: &Path) -> (u8, String) {
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    let mut err = Vec::new();
    let status = main(&args, root, &mut Log::new(&mut err, false));
    (status, String::from_utf8_lossy(&err).into_owned())
}

#[test]
fn main_writes_units_or_nothing() {
    let s = Scratch::new("generator-main");
    let out = s.0.join("out");
    let out_arg = out.display().to_string();
    // No configuration: nothing written.
    assert_eq!(run_main(&[&out_arg, "/e", "/l"], &s.0), (0, String::new()));
    assert!(!out.exists());
    s.write("etc/rxdsk.conf", "[rxd0]\nsize=1G\nswap-priority=1\n");
    assert_eq!(run_main(&[&out_arg], &s.0), (0, String::new()));
    assert_eq!(s.listing("out"), ["dev-rxd0.swap", "swap.target.wants"]);
    // A bad line in one device's section: that device is skipped and the others are set
    // up; the error and the skip are logged, and the status says something was skipped.
    let out2 = s.0.join("out2").display().to_string();
    s.write(
        "etc/rxdsk.conf.d/10-x.conf",
        "[rxd1]\nsize=1G\nfs-type=ext4\nmount-piont=/x\n",
    );
    let (status, err) = run_main(&[&out2, "/e", "/l"], &s.0);
    assert_eq!(status, 1);
    assert_eq!(
        err,
        format!(
            "rxdsk-generator: {}/etc/rxdsk.conf.d/10-x.conf:4: unknown key \"mount-piont\" in [rxd1] (did you mean \"mount-point\"?)\n\
             rxdsk-generator: rxd1: skipped (its configuration has errors)\n",
            s.0.display()
        )
    );
    assert_eq!(s.listing("out2"), ["dev-rxd0.swap", "swap.target.wants"]);
    let (status, err) = run_main(&["a", "b"], &s.0);
    assert_eq!(status, 1);
    assert!(err.contains("expected 1 or 3 directories"), "{err}");
}

/// Errors that name no device in a readable file (a section that is no device, a key before
/// any section) skip nothing; a file that cannot be read might name any device: nothing is
/// set up.
#[test]
fn errors_outside_any_device_and_unreadable_files() {
    let s = Scratch::new("generator-scope");
    s.write("etc/rxdsk.conf", "[rxd0]\nsize=1G\nswap-priority=1\n");
    s.write(
        "etc/rxdsk.conf.d/10-x.conf",
        "size = 2G\n[zram0]\nsize=1G\n[rxd2]\nsize=1G\n",
    );
    let out = s.0.join("out").display().to_string();
    let (status, err) = run_main(&[&out], &s.0);
    let file = format!("{}/etc/rxdsk.conf.d/10-x.conf", s.0.display());
    assert_eq!(
        err,
        format!(
            "rxdsk-generator: {file}:1: \"size\" outside a section (start one with [rxdN])\n\
             rxdsk-generator: {file}:2: invalid section \"[zram0]\": a section names a device, e.g. [rxd0]\n"
        )
    );
    assert_eq!(status, 1);
    assert_eq!(
        s.listing("out"),
        [
            "dev-rxd0.swap",
            "local-fs.target.wants",
            "rxdsk-setup@rxd2.service.d",
            "swap.target.wants"
        ]
    );
    // A section header meant for a device but misspelt skips that device.
    s.write(
        "etc/rxdsk.conf.d/10-x.conf",
        "[rxd2\nsize=2G\n[rxd2]\nsize=1G\n",
    );
    let out = s.0.join("out-2").display().to_string();
    let (status, err) = run_main(&[&out], &s.0);
    assert_eq!(status, 1);
    assert!(
        err.ends_with("rxdsk-generator: rxd2: skipped (its configuration has errors)\n"),
        "{err}"
    );
    assert_eq!(s.listing("out-2"), ["dev-rxd0.swap", "swap.target.wants"]);
    // Not UTF-8: what it says about which device is unknown.
    s.write("etc/rxdsk.conf.d/10-x.conf", "");
    std::fs::write(
        s.0.join("etc/rxdsk.conf.d/10-x.conf"),
        b"[rxd0]\nsize=\xff\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = s.0.join("out-3");
    let (status, err) = run_main(&[&out.display().to_string()], &s.0);
    assert_eq!(status, 1);
    assert_eq!(
        err,
        format!(
            "rxdsk-generator: {file}: not UTF-8 text\n\
             rxdsk-generator: no device is set up: a file that cannot be read may configure any of them\n"
        )
    );
    assert!(!out.exists());
}

/// A mount point or swap device /etc/fstab has too would get two units of the same name
/// (systemd-fstab-generator writes one): ours is left out, with the reason in the log, and
/// the device is still set up.
#[test]
fn units_fstab_has_are_left_to_it() {
    let s = Scratch::new("generator-fstab");
    s.write(
        "etc/rxdsk.conf",
        "[rxd0]\nsize=1G\nswap-priority=1\n[rxd1]\nsize=1G\nfs-type=ext4\nmount-point=/var/cache/fast\n\
         [rxd2]\nsize=1G\nfs-type=ext4\nmount-point=/srv/other\n[rxd3]\nsize=1G\nfs-type=swap\n",
    );
    s.write(
        "etc/fstab",
        "# <file system> <mount point> <type> <options> <dump> <pass>\n\
         UUID=1234 / ext4 errors=remount-ro 0 1\n\
         /dev/vdb1\t/var/cache/fast/  ext4 defaults 0 2\n\
         \n\
         /dev/rxd0 none swap sw 0 0\n\
         /dev/rxd3 /mnt/odd ext4 defaults 0 0\n\
         /dev/vdc1 /srv/other\\040data ext4 defaults 0 0\n",
    );
    let out = s.0.join("out").display().to_string();
    let (status, err) = run_main(&[&out], &s.0);
    let fstab = format!("{}/etc/fstab", s.0.display());
    assert_eq!(
        err,
        format!(
            "rxdsk-generator: rxd0: dev-rxd0.swap not written: {fstab}:5 has the same swap \
             device (systemd-fstab-generator writes that unit); rxd0 is set up, its activation \
             is left to that line (give it x-systemd.requires=rxdsk-setup@rxd0.service)\n\
             rxdsk-generator: rxd1: var-cache-fast.mount not written: {fstab}:3 has the same \
             mount point (systemd-fstab-generator writes that unit); rxd1 is set up, its \
             activation is left to that line (give it x-systemd.requires=rxdsk-setup@rxd1.service)\n"
        )
    );
    assert_eq!(status, 0);
    assert_eq!(
        s.listing("out"),
        [
            "dev-rxd3.swap",
            "local-fs.target.wants",
            "rxdsk-setup@rxd0.service.d",
            "rxdsk-setup@rxd1.service.d",
            "srv-other.mount",
            "swap.target.wants"
        ]
    );
    assert_eq!(
        s.listing("out/local-fs.target.wants"),
        [
            "rxdsk-setup@rxd0.service",
            "rxdsk-setup@rxd1.service",
            "srv-other.mount"
        ]
    );
}

/// `rxdsk.generator=0` on the kernel command line (as `systemd.zram=0` for zram-generator):
/// nothing is written, whatever the configuration says.
#[test]
fn the_kernel_command_line_can_turn_the_generator_off() {
    let s = Scratch::new("generator-cmdline");
    s.write("etc/rxdsk.conf", "[rxd0]\nsize=1G\nswap-priority=1\n");
    for (n, (cmdline, writes, says)) in [
        (
            "BOOT_IMAGE=/vmlinuz root=/dev/vda rxdsk.generator=0 quiet\n",
            false,
            "disabled by rxdsk.generator=0 on the kernel command line\n",
        ),
        (
            "rxdsk.generator=off",
            false,
            "disabled by rxdsk.generator=off on the kernel command line\n",
        ),
        ("rxdsk.generator=0 rxdsk.generator=1\n", true, ""),
        ("rxdsk.generator\n", true, ""),
        ("root=/dev/vda rxdsk.generator=yes\n", true, ""),
        ("rxdsk.generator=maybe\n", true, "warning"),
        ("rxdsk.generatorx=0 xrxdsk.generator=0\n", true, ""),
    ]
    .into_iter()
    .enumerate()
    {
        s.write("proc/cmdline", cmdline);
        let out = s.0.join(format!("out-{n}"));
        let (status, err) = run_main(&[&out.display().to_string()], &s.0);
        assert_eq!(status, 0, "{cmdline:?}: {err}");
        assert_eq!(out.exists(), writes, "{cmdline:?}: {err}");
        match says {
            "" => assert_eq!(err, "", "{cmdline:?}"),
            "warning" => assert_eq!(
                err,
                "rxdsk-generator: ignoring rxdsk.generator=maybe on the kernel command line \
                 (expected 0 or 1)\n"
            ),
            says => assert_eq!(err, format!("rxdsk-generator: {says}"), "{cmdline:?}"),
        }
    }
}

/// The generator logs the configuration's warnings too, and knows the machine's memory
/// (`size = 50%`) from <root>/proc/meminfo.
#[test]
fn warnings_and_shares_of_ram() {
    let s = Scratch::new("generator-sizes");
    s.write("proc/meminfo", "MemTotal: 2000000 kB\n");
    s.write(
        "etc/rxdsk.conf",
        "[rxd0]\nsize=25%\nswap-priority=1\n[rxd1]\nsize=4096\n",
    );
    let out = s.0.join("out").display().to_string();
    let (status, err) = run_main(&[&out], &s.0);
    assert_eq!(status, 0);
    assert_eq!(
        err,
        format!(
            "rxdsk-generator: {}/etc/rxdsk.conf:5: size = 4096 in [rxd1] is 4096 bytes (4K): a \
             number without a unit is bytes (4096M for MiB)\n",
            s.0.display()
        )
    );
    assert!(s.0.join("out/dev-rxd0.swap").exists());
}

/// systemd may hand any directory name: it need not be UTF-8.
#[test]
fn output_directories_need_not_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new("generator-os-str");
    s.write("etc/rxdsk.conf", "[rxd0]\nsize=1G\nswap-priority=1\n");
    let out = s.0.join(std::ffi::OsStr::from_bytes(b"out\xff"));
    let mut err = Vec::new();
    let status = main(&[out.clone().into()], &s.0, &mut Log::new(&mut err, false));
    assert_eq!((status, err.as_slice()), (0, &b""[..]));
    assert!(out.join("dev-rxd0.swap").is_file());
}

/// In the kernel log (/dev/kmsg, where systemd.generator(7) says generators log), each line
/// carries its priority (errors <3>, warnings <4>) and the journal's identifier.
#[test]
fn kmsg_lines_carry_their_priority() {
    let s = Scratch::new("generator-kmsg");
    s.write(
        "etc/rxdsk.conf",
        "[rxd0]\nsize=1G\nswap-priority=1\n[rxd1]\nsize=1X\n",
    );
    let out = s.0.join("out").display().to_string();
    let mut err = Vec::new();
    let status = main(&[out.into()], &s.0, &mut Log::new(&mut err, true));
    assert_eq!(status, 1);
    let err = String::from_utf8_lossy(&err);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    let tag = format!("rxdsk-generator[{}]: ", std::process::id());
    assert!(lines[0].starts_with(&format!("<3>{tag}")), "{err}");
    assert!(
        lines[1].starts_with(&format!("<4>{tag}rxd1: skipped")),
        "{err}"
    );
}

/// docs/using.md's example, end-of-line comments and all, gives every device its units.
#[test]
fn the_documented_example_gives_units() {
    let s = Scratch::new("generator-readme");
    s.write("etc/rxdsk.conf", crate::testutil::documented_example());
    let out = s.0.join("out").display().to_string();
    assert_eq!(run_main(&[&out], &s.0), (0, String::new()));
    assert_eq!(
        s.listing("out"),
        [
            "dev-rxd0.swap",
            "local-fs.target.wants",
            "rxdsk-setup@rxd1.service.d",
            "swap.target.wants",
            "var-cache-fast.mount"
        ]
    );
}

/// `systemd-analyze verify` on the shipped template and on the units generated from the
/// shipped example, in a scratch root (so that the ExecStart= binaries are found there).
/// Any complaint fails, warnings included.
#[test]
fn units_pass_systemd_analyze_verify() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze is not installed; the units were not verified");
        return;
    }
    let s = Scratch::new("generator-verify");
    s.write(
        &format!("usr/lib/systemd/system/{SETUP_TEMPLATE_NAME}"),
        SETUP_TEMPLATE,
    );
    s.write(
        &format!("usr/lib/systemd/system/{EXPORT_TEMPLATE_NAME}"),
        EXPORT_TEMPLATE,
    );
    s.write("usr/sbin/rxdskctl", "#!/bin/sh\n");
    {
        use std::os::unix::fs::PermissionsExt;
        let bin = s.0.join("usr/sbin/rxdskctl");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let entries = units_of(&config(&example()));
    write(&s.0.join("etc/systemd/system"), &entries).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = entries
        .iter()
        .filter(|(n, _)| !n.contains('/'))
        .map(|(n, _)| n.clone())
        .collect();
    for dev in config(&example()).devices.values() {
        names.push(setup_unit(dev.id));
        if dev.export.is_some() {
            names.push(export_unit(dev.id));
        }
    }
    assert!(names.len() >= 7, "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("rxdsk-export@")),
        "{names:?}"
    );
    let verify = |names: &[String]| {
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", s.0.display()))
            .args(["--man=no", "--generators=no"])
            .args(names)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = verify(&names);
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify {names:?}:\n{said}"
    );
    // The check can fail: a unit with an unknown key is reported.
    s.write(
        "etc/systemd/system/broken.service",
        "[Service]\nExecStart=/usr/sbin/rxdskctl\nBogus=1\n",
    );
    let (_, said) = verify(&["broken.service".to_string()]);
    assert!(said.contains("Bogus"), "{said}");
}

/// An exported device's export service is pulled in by multi-user.target; the static
/// template orders it after the device's setup (so that at shutdown it unexports before the
/// flush), and the generator after the network for NVMe/TCP.
#[test]
fn an_exported_device_gets_its_export_service() {
    let e = units_of(&config(
        "[rxd4]\nsize=1G\nexport=tcp\nexport-address=192.0.2.1\nexport-allow-any-host=yes\n\
         [rxd5]\nsize=1G\nexport=loop\nexport-allow-any-host=yes\n",
    ));
    for n in [4, 5] {
        assert_eq!(
            link(
                &e,
                &format!("multi-user.target.wants/rxdsk-export@rxd{n}.service")
            ),
            "/usr/lib/systemd/system/rxdsk-export@.service"
        );
    }
    assert_eq!(
        file(&e, "rxdsk-export@rxd4.service.d/50-rxdsk-generator.conf"),
        "# Written by rxdsk-generator from /etc/rxdsk.conf:1\n[Unit]\nSourcePath=/etc/rxdsk.conf\n\
         Wants=network-online.target\nAfter=network-online.target\n"
    );
    assert_eq!(
        file(&e, "rxdsk-export@rxd5.service.d/50-rxdsk-generator.conf"),
        "# Written by rxdsk-generator from /etc/rxdsk.conf:6\n[Unit]\nSourcePath=/etc/rxdsk.conf\n"
    );
    // The devices themselves are set up as any raw device.
    assert_eq!(
        link(&e, "local-fs.target.wants/rxdsk-setup@rxd4.service"),
        "/usr/lib/systemd/system/rxdsk-setup@.service"
    );
    for line in [
        "\nRequires=rxdsk-setup@%i.service\n",
        "\nAfter=rxdsk-setup@%i.service sys-kernel-config.mount\n",
        "\nExecStart=/usr/sbin/rxdskctl apply %i\n",
        "\nExecStop=-/usr/sbin/rxdskctl unexport %i\n",
        "\nRemainAfterExit=yes\n",
    ] {
        assert!(
            EXPORT_TEMPLATE.contains(line),
            "{line:?}: {EXPORT_TEMPLATE}"
        );
    }
    // The setup, early in the boot, leaves the export to it.
    assert!(
        SETUP_TEMPLATE.contains("\nExecStart=/usr/sbin/rxdskctl apply --no-export %i\n"),
        "{SETUP_TEMPLATE}"
    );
}
