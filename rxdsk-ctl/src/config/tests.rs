//! The parser, the merge of drop-ins and every error message, with its FILE:LINE.

use super::*;

fn texts(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

fn ok(files: &[(&str, &str)]) -> Config {
    parse(&texts(files), &Machine::default()).unwrap_or_else(|e| panic!("{files:?}: {e:?}"))
}

fn lenient(files: &[(&str, &str)]) -> (Config, Vec<ConfigError>) {
    parse_lenient(&texts(files), &Machine::default())
}

/// The error lines, as rxdskctl prints them after `rxdskctl: `.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match parse(&texts(files), &Machine::default()) {
        Ok(c) => panic!("{files:?} parsed: {c:?}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(&[("/etc/rxdsk.conf", text)]);
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].clone()
}

#[test]
fn a_full_device() {
    let c = ok(&[(
        "/etc/rxdsk.conf",
        "# comment\n; another\n\n[rxd0]\nsize = 1G\nblock-size=512\nmem-limit = 512M\n\
         compress = zstd\ncompress-level = 5\nswap-priority = 100\noptions = discard\n",
    )]);
    let d = &c.devices[&0];
    assert_eq!(d.size, Some(1 << 30));
    assert_eq!(d.block_size, Some(512));
    assert_eq!(d.mem_limit, Some(512 << 20));
    assert_eq!(d.compress, Some(Compression::Zstd));
    assert_eq!(d.compress_level, Some(5));
    assert_eq!(
        d.usage,
        Usage::Swap {
            priority: Some(100),
            options: Some("discard".into())
        }
    );
    assert_eq!(d.location("size").to_string(), "/etc/rxdsk.conf:5");
    assert_eq!(d.section.to_string(), "/etc/rxdsk.conf:4");
    // Unset keys point at the section.
    assert_eq!(d.location("backing").to_string(), "/etc/rxdsk.conf:4");
}

#[test]
fn backed_filesystem_and_raw_devices() {
    let c = ok(&[(
        "/etc/rxdsk.conf",
        "[rxd1]\nbacking = /dev/disk/by-id/virtio-data\nsize = 256M\nmode = writethrough\n\
         journal = 16M\nflush-interval = 60\npreload = yes\nfs-type = ext4\n\
         mount-point = /var/cache/fast\noptions = noatime,nodev\n\n[rxd7]\nsize=4096\n",
    )]);
    let d = &c.devices[&1];
    assert_eq!(d.backing.as_deref(), Some("/dev/disk/by-id/virtio-data"));
    assert_eq!(
        (d.mode, d.journal, d.flush_interval, d.preload),
        (Some(Mode::Writethrough), Some(16 << 20), Some(60), true)
    );
    assert_eq!(
        d.usage,
        Usage::Filesystem {
            fs_type: "ext4".into(),
            mount_point: Some("/var/cache/fast".into()),
            options: Some("noatime,nodev".into())
        }
    );
    assert_eq!(c.devices[&7].usage, Usage::Raw);
    assert_eq!(c.devices[&7].block_size, None);
    // A backed device may leave its size to the image.
    let c = ok(&[("/etc/rxdsk.conf", "[rxd2]\nbacking=/dev/vdb\n")]);
    assert_eq!(c.devices[&2].size, None);
}

/// Every mode by its name; writearound with the memory limit it needs (its read cache).
#[test]
fn each_mode_by_name() {
    for mode in crate::cli::Mode::ALL {
        let c = ok(&[(
            "/etc/rxdsk.conf",
            &format!(
                "[rxd1]\nbacking=/dev/vdb\nmem-limit=1G\nmode = {}\n",
                mode.name()
            ),
        )]);
        assert_eq!(c.devices[&1].mode, Some(mode));
    }
    // A drop-in may set the limit the mode needs.
    let c = ok(&[
        (
            "/etc/rxdsk.conf",
            "[rxd1]\nbacking=/dev/vdb\nmode=writearound\n",
        ),
        ("/etc/rxdsk.conf.d/cache.conf", "[rxd1]\nmem-limit=2G\n"),
    ]);
    assert_eq!(
        (c.devices[&1].mode, c.devices[&1].mem_limit),
        (Some(Mode::Writearound), Some(2 << 30))
    );
}

#[test]
fn fs_type_swap_without_priority_and_formatted_only() {
    let c = ok(&[(
        "/etc/rxdsk.conf",
        "[rxd0]\nsize=1G\nfs-type=swap\n[rxd1]\nsize=1G\nfs-type=xfs\n",
    )]);
    assert_eq!(
        c.devices[&0].usage,
        Usage::Swap {
            priority: None,
            options: None
        }
    );
    assert_eq!(
        c.devices[&1].usage,
        Usage::Filesystem {
            fs_type: "xfs".into(),
            mount_point: None,
            options: None
        }
    );
}

#[test]
fn drop_ins_override_key_by_key_and_empty_values_reset() {
    let c = ok(&[
        (
            "/usr/lib/rxdsk.conf.d/00-vendor.conf",
            "[rxd0]\nsize = 1G\ncompress = lz4\nswap-priority = 10\n",
        ),
        (
            "/etc/rxdsk.conf.d/50-local.conf",
            "[rxd0]\nsize = 2G\ncompress =\n",
        ),
    ]);
    let d = &c.devices[&0];
    assert_eq!(d.size, Some(2 << 30));
    assert_eq!(d.compress, None);
    assert_eq!(
        d.location("size").to_string(),
        "/etc/rxdsk.conf.d/50-local.conf:2"
    );
    assert_eq!(
        d.section.to_string(),
        "/usr/lib/rxdsk.conf.d/00-vendor.conf:1"
    );
    assert!(matches!(
        d.usage,
        Usage::Swap {
            priority: Some(10),
            ..
        }
    ));
    assert_eq!(c.files.len(), 2);
}

#[test]
fn section_spellings() {
    let c = ok(&[("f", "[ rxd3 ]\nsize=1M\n[rxd1023]\nsize=1M\n")]);
    assert_eq!(c.devices.keys().copied().collect::<Vec<_>>(), [3, 1023]);
    for (text, want) in [
        (
            "[swap]\n",
            "f:1: invalid section \"[swap]\": a section names a device, e.g. [rxd0]",
        ),
        (
            "[0]\n",
            "f:1: invalid section \"[0]\": a section names a device, e.g. [rxd0]",
        ),
        (
            "[/dev/rxd0]\n",
            "f:1: invalid section \"[/dev/rxd0]\": a section names a device, e.g. [rxd0]",
        ),
        (
            "[rxd01]\n",
            "f:1: invalid section \"[rxd01]\": a section names a device, e.g. [rxd0]",
        ),
        (
            "[rxd1024]\n",
            "f:1: invalid section \"[rxd1024]\": device ids are below 1024",
        ),
        ("[rxd0\nsize=1G\n", "f:1: unclosed section \"[rxd0\""),
    ] {
        assert_eq!(errors(&[("f", text)]), [want], "{text:?}");
    }
}

#[test]
fn the_error_of_the_brief() {
    let e = errors(&[
        ("/etc/rxdsk.conf", "[rxd1]\nsize=1G\n"),
        (
            "/etc/rxdsk.conf.d/10-swap.conf",
            "# swap\n\n[rxd0]\n\n# size\n\nsise = 1G\n",
        ),
    ]);
    assert_eq!(
        e,
        [
            // The checks across keys wait until every line reads well.
            "/etc/rxdsk.conf.d/10-swap.conf:7: unknown key \"sise\" in [rxd0] (did you mean \"size\"?)",
        ]
    );
}

#[test]
fn unknown_keys_suggest_the_option_names() {
    assert_eq!(
        one_error("[rxd0]\nsize=1G\ncompression = zstd\n"),
        "/etc/rxdsk.conf:3: unknown key \"compression\" in [rxd0] (did you mean \"compress\"?)"
    );
    assert_eq!(
        one_error("[rxd0]\nsize=1G\nblocksize = 512\n"),
        "/etc/rxdsk.conf:3: unknown key \"blocksize\" in [rxd0] (did you mean \"block-size\"?)"
    );
    assert_eq!(
        one_error("[rxd0]\nsize=1G\nrestore = preload\n"),
        "/etc/rxdsk.conf:3: unknown key \"restore\" in [rxd0] (did you mean \"preload\"?)"
    );
    assert_eq!(
        one_error("[rxd0]\nsize=1G\nwhatever = 1\n"),
        "/etc/rxdsk.conf:3: unknown key \"whatever\" in [rxd0]"
    );
    assert_eq!(
        one_error("size = 1G\n"),
        "/etc/rxdsk.conf:1: \"size\" outside a section (start one with [rxdN])"
    );
    assert_eq!(
        one_error("[rxd0]\nsize 1G\n"),
        "/etc/rxdsk.conf:2: expected \"[rxdN]\" or \"KEY = VALUE\", found \"size 1G\""
    );
}

#[test]
fn keys_of_a_bad_section_are_not_reported_again() {
    assert_eq!(
        errors(&[("f", "[zram0]\nsize=1G\ncompress=zstd\n")]),
        ["f:1: invalid section \"[zram0]\": a section names a device, e.g. [rxd0]"]
    );
}

#[test]
fn a_key_twice_in_one_file() {
    assert_eq!(
        one_error("[rxd0]\nsize=1G\n\nsize=2G\n"),
        "/etc/rxdsk.conf:4: \"size\" is set twice in [rxd0] (first on line 2)"
    );
    // In two sections of one device in one file, too.
    assert_eq!(
        one_error("[rxd0]\nsize=1G\n[rxd1]\nsize=1G\n[rxd0]\nsize=2G\n"),
        "/etc/rxdsk.conf:6: \"size\" is set twice in [rxd0] (first on line 2)"
    );
}

#[test]
fn every_bad_value_is_named() {
    let cases = [
        ("size = 1.5G", "invalid size \"1.5G\" in [rxd0]: fractional sizes are not supported (use a smaller unit, e.g. 1536M)"),
        ("size = -1", "invalid size \"-1\" in [rxd0]: negative size"),
        ("block-size = 1024", "invalid block-size \"1024\" in [rxd0]: must be 512 or 4096"),
        ("mem-limit = 100", "invalid mem-limit \"100\" in [rxd0]: less than one page (4096); use 0 for no limit"),
        ("compress = gzip", "invalid compress \"gzip\" in [rxd0]: expected lzo, lzo-rle, lz4 or zstd"),
        ("compress-level = high", "invalid compress-level \"high\" in [rxd0]: not a number in range"),
        ("backing = vdb", "invalid backing \"vdb\" in [rxd0]: an absolute path is needed (no \".\", \"..\", \"//\" or trailing /)"),
        ("backing = /dev//vdb", "invalid backing \"/dev//vdb\" in [rxd0]: an absolute path is needed (no \".\", \"..\", \"//\" or trailing /)"),
        ("mode = async", "invalid mode \"async\" in [rxd0]: expected writeback, writethrough or writearound"),
        ("journal = 1000", "invalid journal \"1000\" in [rxd0]: not a multiple of 4 KiB"),
        ("flush-interval = -5", "invalid flush-interval \"-5\" in [rxd0]: not a number in range"),
        ("preload = maybe", "invalid preload \"maybe\" in [rxd0]: expected yes or no"),
        ("swap-priority = 40000", "invalid swap-priority \"40000\" in [rxd0]: must be -1 to 32767"),
        ("swap-priority = -2", "invalid swap-priority \"-2\" in [rxd0]: must be -1 to 32767"),
        ("fs-type = ext4;rm", "invalid fs-type \"ext4;rm\" in [rxd0]: not a filesystem type name (e.g. swap, ext4)"),
        ("mount-point = /mnt/../etc", "invalid mount-point \"/mnt/../etc\" in [rxd0]: an absolute path is needed (no \".\", \"..\", \"//\" or trailing /)"),
        ("mount-point = /mnt/x/", "invalid mount-point \"/mnt/x/\" in [rxd0]: an absolute path is needed (no \".\", \"..\", \"//\" or trailing /)"),
        ("mount-point = /", "invalid mount-point \"/\" in [rxd0]: the root filesystem cannot be set up this late in boot"),
        ("mount-point = /mnt/my data", "invalid mount-point \"/mnt/my data\" in [rxd0]: white space and control characters are not supported in paths"),
        ("options = a, b", "invalid options \"a, b\" in [rxd0]: comma-separated options without white space are expected"),
    ];
    for (line, want) in cases {
        let text = format!("[rxd0]\nsize = 1G\n{line}\n");
        let text = text.replacen("size = 1G\nsize", "size", 1);
        let e = errors(&[("/etc/rxdsk.conf", &text)]);
        assert!(
            e.iter()
                .any(|m| m.ends_with(want) && m.starts_with("/etc/rxdsk.conf:")),
            "{line}: {e:?}"
        );
    }
}

#[test]
fn a_bad_line_overridden_later_is_still_an_error() {
    let e = errors(&[
        ("/usr/lib/rxdsk.conf.d/a.conf", "[rxd0]\nsize = lots\n"),
        ("/etc/rxdsk.conf.d/b.conf", "[rxd0]\nsize = 1G\n"),
    ]);
    assert_eq!(
        e,
        ["/usr/lib/rxdsk.conf.d/a.conf:2: invalid size \"lots\" in [rxd0]: not a number (use bytes or a number with K, M, G, T or P (powers of 1024, e.g. 512M or 4KiB))"]
    );
}

#[test]
fn combinations_that_do_not_fit() {
    let cases = [
        ("[rxd0]\ncompress-level = 3\nsize=1G\n", "/etc/rxdsk.conf:2: compress-level in [rxd0] needs compress"),
        ("[rxd0]\nsize=1G\ncompress=lzo\ncompress-level = 3\n", "/etc/rxdsk.conf:4: compress-level in [rxd0] does not apply: lzo has no levels"),
        ("[rxd0]\nsize=1G\nmode=writeback\n", "/etc/rxdsk.conf:3: mode in [rxd0] needs backing"),
        ("[rxd0]\nsize=1G\nmode=writearound\nmem-limit=64M\n", "/etc/rxdsk.conf:3: mode in [rxd0] needs backing"),
        ("[rxd0]\nsize=1G\nbacking=/dev/vdb\nmode=writearound\n", "/etc/rxdsk.conf:4: mode = writearound in [rxd0] needs mem-limit (the size of its read cache)"),
        ("[rxd0]\nbacking=/dev/vdb\nmem-limit=0\nmode=writearound\n", "/etc/rxdsk.conf:4: mode = writearound in [rxd0] needs mem-limit (the size of its read cache)"),
        ("[rxd0]\nsize=1G\njournal=4K\n", "/etc/rxdsk.conf:3: journal in [rxd0] needs backing"),
        ("[rxd0]\nsize=1G\nflush-interval=5\n", "/etc/rxdsk.conf:3: flush-interval in [rxd0] needs backing"),
        ("[rxd0]\nsize=1G\npreload=no\n", "/etc/rxdsk.conf:3: preload in [rxd0] needs backing"),
        ("[rxd0]\nsize=1G\nfs-type=ext4\nswap-priority=5\n", "/etc/rxdsk.conf:4: swap-priority in [rxd0] is for swap (fs-type = swap)"),
        ("[rxd0]\nsize=1G\nswap-priority=5\nmount-point=/mnt\n", "/etc/rxdsk.conf:4: mount-point in [rxd0] does not apply to swap"),
        ("[rxd0]\nsize=1G\nmount-point=/mnt\n", "/etc/rxdsk.conf:3: mount-point in [rxd0] needs fs-type"),
        ("[rxd0]\nsize=1G\noptions=ro\n", "/etc/rxdsk.conf:3: options in [rxd0] needs fs-type or swap-priority"),
        ("[rxd0]\n", "/etc/rxdsk.conf:1: [rxd0] has no size (set size, or backing: restored from its image, or as big as a blank one)"),
        ("[rxd0]\nsize=1G\nfs-type=swap\noptions=noatime\n", "/etc/rxdsk.conf:4: options in [rxd0] has \"noatime\", not a swap option (discard, discard=once, discard=pages, nofail)"),
        ("[rxd0]\nsize=1G\nfs-type=swap\noptions=pri=3\n", "/etc/rxdsk.conf:4: options in [rxd0] has \"pri=3\", not a swap option (use swap-priority)"),
        ("[rxd0]\nsize = 0\n", "/etc/rxdsk.conf:2: invalid size: must not be zero (size in [rxd0])"),
        ("[rxd0]\nsize = 1000\nblock-size=512\n", "/etc/rxdsk.conf:2: invalid size: 1000 bytes is not a multiple of the block size (512) (size in [rxd0])"),
        ("[rxd0]\nsize = 6144\n", "/etc/rxdsk.conf:2: invalid size: 6144 bytes is not a multiple of the block size (4096) (size in [rxd0])"),
    ];
    for (text, want) in cases {
        assert_eq!(one_error(text), want, "{text:?}");
    }
}

#[test]
fn devices_cannot_share_a_backing_device_or_a_mount_point() {
    assert_eq!(
        errors(&[(
            "f",
            "[rxd0]\nbacking=/dev/vdb\n[rxd1]\nbacking=/dev/vdb\n\
             [rxd2]\nsize=1G\nfs-type=ext4\nmount-point=/m\n[rxd3]\nsize=1G\nfs-type=ext4\nmount-point=/m\n",
        )]),
        [
            "f:4: [rxd0] and [rxd1] name the same backing device /dev/vdb",
            "f:12: [rxd2] and [rxd3] name the same mount point /m",
        ]
    );
}

#[test]
fn all_errors_of_all_files_at_once() {
    let e = errors(&[
        ("a", "[rxd0]\nsize=1G\nbogus=1\n"),
        ("b", "[rxd1]\nsize=1X\n[nope]\n"),
    ]);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("a:3: unknown key \"bogus\""), "{e:?}");
    assert!(e[1].starts_with("b:3: invalid section"), "{e:?}");
    assert!(e[2].starts_with("b:2: invalid size \"1X\""), "{e:?}");
}

#[test]
fn empty_configuration() {
    assert_eq!(ok(&[]).devices.len(), 0);
    assert_eq!(ok(&[("f", "# nothing\n")]).devices.len(), 0);
}

/// Keys one or two edits away, and the names of `create`'s options, are suggested.
#[test]
fn suggestions() {
    let mean = |k: &str| format!(" (did you mean \"{k}\"?)");
    assert_eq!(suggestion("sise"), mean("size"));
    assert_eq!(suggestion("mount-pint"), mean("mount-point"));
    assert_eq!(suggestion("Block_Size"), mean("block-size"));
    assert_eq!(suggestion("COMPRESSION"), mean("compress"));
    assert_eq!(suggestion("kitten"), "");
    assert_eq!(suggestion(""), "");
}

/// A scratch directory tree for the file-finding tests.
fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("rxdsk-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (rel, text) in files {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
    root
}

#[test]
fn files_follow_systemd_precedence() {
    let root = tree(
        "precedence",
        &[
            ("usr/lib/rxdsk.conf", "[rxd0]\nsize=1G\n"),
            ("etc/rxdsk.conf", "[rxd0]\nsize=2G\n"),
            ("usr/lib/rxdsk.conf.d/10-a.conf", ""),
            ("run/rxdsk.conf.d/10-a.conf", ""),
            ("etc/rxdsk.conf.d/20-b.conf", ""),
            ("usr/lib/rxdsk.conf.d/20-b.conf", ""),
            ("usr/lib/rxdsk.conf.d/30-c.conf", ""),
            ("usr/local/lib/rxdsk.conf.d/05-d.conf", ""),
            ("etc/rxdsk.conf.d/notes.txt", ""),
            ("etc/rxdsk.conf.d/.hidden.conf", ""),
        ],
    );
    let files: Vec<String> = config_files(&root)
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        files,
        [
            "etc/rxdsk.conf",
            "usr/local/lib/rxdsk.conf.d/05-d.conf",
            "run/rxdsk.conf.d/10-a.conf",
            "etc/rxdsk.conf.d/20-b.conf",
            "usr/lib/rxdsk.conf.d/30-c.conf",
        ]
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn load_reads_files_and_masks() {
    let root = tree(
        "load",
        &[
            ("etc/rxdsk.conf", "[rxd0]\nsize=1G\n"),
            ("usr/lib/rxdsk.conf.d/50-x.conf", "[rxd0]\nsize=2G\n"),
        ],
    );
    // A symlink to /dev/null masks the vendor's drop-in.
    std::fs::create_dir_all(root.join("etc/rxdsk.conf.d")).unwrap_or_default();
    std::os::unix::fs::symlink("/dev/null", root.join("etc/rxdsk.conf.d/50-x.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = load(&config_files(&root), &Machine::default()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.devices[&0].size, Some(1 << 30));
    let missing = root.join("etc/none.conf");
    let e = load(std::slice::from_ref(&missing), &Machine::default())
        .err()
        .unwrap_or_default();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The example shipped in the package, with its settings uncommented, is valid.
#[test]
fn the_shipped_example_is_valid() {
    let active = crate::testutil::active_example();
    let c = ok(&[("example", &active)]);
    assert!(c.devices.len() >= 3, "{c:?}");
    assert!(c
        .devices
        .values()
        .any(|d| matches!(d.usage, Usage::Swap { .. }) && d.compress.is_some()));
    assert!(c.devices.values().any(|d| d.backing.is_some()
        && matches!(&d.usage, Usage::Filesystem { fs_type, mount_point: Some(_), .. } if fs_type == "ext4")));
    // As shipped, it configures nothing.
    assert_eq!(
        ok(&[("example", crate::testutil::EXAMPLE)]).devices.len(),
        0
    );
}

#[test]
fn comments_at_the_end_of_a_line() {
    let c = ok(&[(
        "/etc/rxdsk.conf",
        "[rxd0]   # compressed swap\nsize = 4G # four\ncompress = zstd\t# tab before\n",
    )]);
    let d = &c.devices[&0];
    assert_eq!(d.size, Some(4 << 30));
    assert_eq!(d.compress, Some(Compression::Zstd));
    // `#` with no white space before it is part of the value, and here a bad one.
    assert_eq!(
        one_error("[rxd0]\nsize = 4G\nswap-priority = 100#x\n"),
        "/etc/rxdsk.conf:3: invalid swap-priority \"100#x\" in [rxd0]: not a number in range"
    );
    // A value that is nothing but a comment is empty: the key is reset.
    let c = ok(&[
        ("/etc/rxdsk.conf", "[rxd0]\nsize=1G\ncompress=lz4\n"),
        ("/etc/rxdsk.conf.d/a.conf", "[rxd0]\ncompress = # none\n"),
    ]);
    assert_eq!(c.devices[&0].compress, None);
}

/// docs/using.md's example of rxdsk.conf, as printed there (with its comments), is valid.
#[test]
fn the_documented_example_is_valid() {
    let c = ok(&[("using.md", crate::testutil::documented_example())]);
    assert_eq!(c.devices.keys().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(c.devices[&1].flush_interval, Some(300));
    assert_eq!(
        c.devices[&1].backing.as_deref(),
        Some("/dev/disk/by-id/virtio-rxdsk-cache")
    );
}

#[test]
fn lenient_parsing_keeps_the_devices_without_errors() {
    let (c, e) = lenient(&[
        (
            "/etc/rxdsk.conf",
            "[rxd0]\nsize=1G\n[rxd1]\nsize=lots\n[rxd2]\nsize=1G\nfs-type=ext4\nmount-point=/m\n\
             [rxd3]\nsize=1G\nfs-type=ext4\nmount-point=/m\n[rxd4]\nsize=1G\n[/dev/rxd5]\nsize=1G\n",
        ),
        ("/etc/rxdsk.conf.d/a.conf", "[rxd4]\nmode=writeback\n"),
    ]);
    // rxd1: a bad value; rxd2 and rxd3: in conflict; rxd4: a check across keys; rxd5: a
    // section header meant for it.
    assert_eq!(c.devices.keys().copied().collect::<Vec<_>>(), [0]);
    let concerns: Vec<&Concerns> = e.iter().map(|e| &e.concerns).collect();
    assert_eq!(
        concerns,
        [
            &Concerns::Devices(vec![5]),
            &Concerns::Devices(vec![1]),
            &Concerns::Devices(vec![4]),
            &Concerns::Devices(vec![2, 3]),
        ],
        "{e:?}"
    );
    // The checks across keys run for the devices whose lines read well.
    let (c, e) = lenient(&[(
        "f",
        "[rxd2]\nsize=1G\nfs-type=ext4\nmount-point=/m\n[rxd3]\nsize=1G\nfs-type=ext4\n\
         mount-point=/m\n[rxd4]\nsize=1G\nmode=writeback\n[rxd6]\nsize=1G\n",
    )]);
    assert_eq!(c.devices.keys().copied().collect::<Vec<_>>(), [6]);
    assert_eq!(
        e.iter().map(|e| e.concerns.clone()).collect::<Vec<_>>(),
        [Concerns::Devices(vec![4]), Concerns::Devices(vec![2, 3])]
    );
}

#[test]
fn the_device_a_bad_section_header_was_meant_for() {
    for (name, want) in [
        ("rxd2", Some(2)),
        ("/dev/rxd2]", Some(2)),
        ("rxd02", Some(2)),
        (" 2 ", Some(2)),
        ("rxd1024", None),
        ("swap", None),
        ("zram0", None),
        ("rxd", None),
    ] {
        assert_eq!(meant_device(name), want, "{name:?}");
    }
}

fn with_ram(kib: u64) -> Machine {
    Machine {
        mem_total: Some(kib * 1024),
        meminfo: "/proc/meminfo".into(),
    }
}

#[test]
fn size_as_a_share_of_ram() {
    let on = |text: &str, kib: u64| parse(&texts(&[("f", text)]), &with_ram(kib));
    // 2000003 kB: 1024001536 bytes are half, 1024000000 once rounded down to 4 KiB.
    let c = on("[rxd0]\nsize = 50%\n", 2_000_003).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.devices[&0].size, Some(1_024_000_000));
    // Rounded down to 4 KiB, so any block size fits; more than the memory is allowed (a
    // compressed device holds more than it takes).
    let c = on("[rxd0]\nsize=150%\nblock-size=512\ncompress=zstd\n", 1001)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.devices[&0].size, Some(1_536_000 / 4096 * 4096));
    let err = |text: &str, kib: u64| match on(text, kib) {
        Ok(c) => panic!("{text}: {c:?}"),
        Err(e) => e.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    for (value, why) in [
        ("0%", "a share of the memory is 1% or more"),
        (
            "1.5%",
            "a share of the memory is a whole number of percent (e.g. 50%)",
        ),
        (
            "%",
            "a share of the memory is a whole number of percent (e.g. 50%)",
        ),
        ("-5%", "negative size"),
    ] {
        assert_eq!(
            err(&format!("[rxd0]\nsize = {value}\n"), 2_000_003),
            [format!("f:2: invalid size \"{value}\" in [rxd0]: {why}")],
            "{value}"
        );
    }
    // A share too small for one 4 KiB page is no size at all.
    assert_eq!(
        err("[rxd0]\nsize = 1%\n", 100),
        ["f:2: invalid size: must not be zero (size in [rxd0])"]
    );
    // Unknown memory.
    assert_eq!(
        parse(&texts(&[("f", "[rxd0]\nsize=10%\n")]), &Machine::default())
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["f:2: invalid size \"10%\" in [rxd0]: a share of the memory, but /proc/meminfo has no MemTotal"]
    );
}

#[test]
fn a_bare_number_below_a_mib_is_warned_about() {
    let c = ok(&[(
        "f",
        "[rxd0]\nsize = 4096\n[rxd1]\nsize = 1048576\n[rxd2]\nsize = 4K\n\
         [rxd3]\nsize = 64M\nmem-limit = 65536\n",
    )]);
    let warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "f:2: size = 4096 in [rxd0] is 4096 bytes (4K): a number without a unit is bytes \
             (4096M for MiB)",
            "f:9: mem-limit = 65536 in [rxd3] is 65536 bytes (64K): a number without a unit is \
             bytes (65536M for MiB)",
        ]
    );
    // Only the value in effect is looked at.
    let c = ok(&[("a", "[rxd0]\nsize = 4096\n"), ("b", "[rxd0]\nsize = 4G\n")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_machine_s_memory_comes_from_the_root_or_the_system() {
    let root = tree(
        "meminfo",
        &[("proc/meminfo", "MemFree: 3 kB\nMemTotal: 1024 kB\n")],
    );
    let m = Machine::read(&root);
    assert_eq!(m.mem_total, Some(1 << 20));
    assert_eq!(m.meminfo, root.join("proc/meminfo").display().to_string());
    let _ = std::fs::remove_dir_all(&root);
    // A root without proc/meminfo: the system's own.
    let empty = tree("meminfo-none", &[]);
    let m = Machine::read(&empty);
    assert_eq!(m.meminfo, "/proc/meminfo");
    if std::path::Path::new("/proc/meminfo").exists() {
        assert!(m.mem_total.is_some_and(|b| b > 0));
    }
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn an_export_with_authenticated_hosts() {
    let c = ok(&[(
        "/etc/rxdsk.conf",
        "[rxd2]\nsize = 1G\nexport = tcp\nexport-address = fe80::1%eth0\nexport-port = 4421\n\
         export-nqn = nqn.2014-08.org.example:fast\n\
         export-allow-hosts = nqn.2014-08.org.example:a, nqn.2014-08.org.example:b\n\
         export-dhchap-secret = /etc/rxdsk/a.key,/etc/rxdsk/b.key\n\
         export-dhchap-ctrl-secret = /etc/rxdsk/ca.key,/etc/rxdsk/cb.key\n\
         export-dhchap-hash = sha512\nexport-dhchap-dhgroup = ffdhe3072\n\
         [rxd3]\nsize = 1G\nexport = loop\nexport-allow-any-host = yes\n",
    )]);
    assert_eq!(
        c.devices[&2].export,
        Some(ExportConfig {
            transport: Transport::Tcp,
            address: Some("fe80::1%eth0".into()),
            port: Some(4421),
            nqn: Some("nqn.2014-08.org.example:fast".into()),
            allow_hosts: vec![
                "nqn.2014-08.org.example:a".into(),
                "nqn.2014-08.org.example:b".into()
            ],
            allow_any_host: false,
            secrets: vec!["/etc/rxdsk/a.key".into(), "/etc/rxdsk/b.key".into()],
            ctrl_secrets: vec!["/etc/rxdsk/ca.key".into(), "/etc/rxdsk/cb.key".into()],
            hash: Some(Hash::Sha512),
            dhgroup: Some(DhGroup::Ffdhe3072),
        })
    );
    let e = c.devices[&3].export.clone().unwrap_or_default();
    assert_eq!((e.transport, e.allow_any_host), (Transport::Loop, true));
    assert_eq!(e.nqn(3), "nqn.2026-12.io.rxdsk:rxd3");
    assert_eq!(
        c.devices[&2].export.as_ref().map(|e| e.nqn(2)).as_deref(),
        Some("nqn.2014-08.org.example:fast")
    );
}

#[test]
fn export_errors_name_their_line() {
    let dev = "[rxd0]\nsize = 1G\n";
    for (keys, want) in [
        (
            "export-address = 192.0.2.1\n",
            "/etc/rxdsk.conf:3: export-address in [rxd0] needs export (tcp or loop)",
        ),
        (
            "export = tcp\nexport-allow-hosts = nqn.2014-08.org.example:a\n",
            "/etc/rxdsk.conf:3: export = tcp in [rxd0] needs export-address",
        ),
        (
            "export = loop\nexport-address = 192.0.2.1\nexport-allow-any-host = yes\n",
            "/etc/rxdsk.conf:4: export-address in [rxd0] is for export = tcp, not loop",
        ),
        (
            "export = loop\n",
            "/etc/rxdsk.conf:3: no host may connect to the export of [rxd0]: set \
             export-allow-hosts (or export-allow-any-host = yes)",
        ),
        (
            "export = loop\nexport-allow-any-host = yes\nexport-dhchap-secret = /k\n",
            "/etc/rxdsk.conf:5: export-allow-any-host turns authentication off (nvmet \
             authenticates only the hosts it allows by name): give each host with \
             export-allow-hosts and its export-dhchap-secret (in [rxd0])",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a,nqn.x:b\nexport-dhchap-secret = /k\n",
            "/etc/rxdsk.conf:5: 1 export-dhchap-secret for 2 export-allow-hosts: give one for \
             each host, in the same order (in [rxd0])",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a\nexport-dhchap-hash = sha384\n",
            "/etc/rxdsk.conf:5: export-dhchap-hash needs export-dhchap-secret (in [rxd0])",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a\nexport-dhchap-secret = /k\n\
             export-dhchap-ctrl-secret = /k\n",
            "/etc/rxdsk.conf:5: the export-dhchap-ctrl-secret of nqn.x:a is its \
             export-dhchap-secret: the two directions need two secrets (in [rxd0])",
        ),
        (
            "export = rdma\n",
            "/etc/rxdsk.conf:3: invalid export \"rdma\" in [rxd0]: expected tcp or loop (the \
             transport)",
        ),
        (
            "export = tcp\nexport-address = fe80::1\n",
            "/etc/rxdsk.conf:4: invalid export-address \"fe80::1\" in [rxd0]: a link-local \
             address needs its interface (fe80::1%eth0, say)",
        ),
        (
            "export = tcp\nexport-address = 192.0.2.1\nexport-port = 0\n",
            "/etc/rxdsk.conf:5: invalid export-port \"0\" in [rxd0]: a TCP port is 1 to 65535",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a,host-b\n",
            "/etc/rxdsk.conf:4: invalid export-allow-hosts \"nqn.x:a,host-b\" in [rxd0]: invalid \
             NQN \"host-b\"",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a,nqn.x:a\n",
            "/etc/rxdsk.conf:4: invalid export-allow-hosts \"nqn.x:a,nqn.x:a\" in [rxd0]: \
             nqn.x:a is given twice",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a\nexport-dhchap-secret = keys/a\n",
            "/etc/rxdsk.conf:5: invalid export-dhchap-secret \"keys/a\" in [rxd0]: an absolute \
             path is needed",
        ),
        (
            "export = loop\nexport-allow-hosts = nqn.x:a\nexport-dhchap-secret = /k\n\
             export-dhchap-dhgroup = ffdhe1024\n",
            "/etc/rxdsk.conf:6: invalid export-dhchap-dhgroup \"ffdhe1024\" in [rxd0]: expected \
             null, ffdhe2048",
        ),
    ] {
        let e = one_error(&format!("{dev}{keys}"));
        assert!(e.starts_with(want), "{keys:?}:\n{e}\n{want}");
    }
}

#[test]
fn devices_cannot_share_an_export_nqn() {
    let e = one_error(
        "[rxd0]\nsize=1G\nexport=loop\nexport-allow-any-host=yes\n\
         [rxd1]\nsize=1G\nexport=loop\nexport-allow-any-host=yes\nexport-nqn=nqn.2026-12.io.rxdsk:rxd0\n",
    );
    assert_eq!(
        e,
        "/etc/rxdsk.conf:9: [rxd0] and [rxd1] are exported as the same subsystem \
         nqn.2026-12.io.rxdsk:rxd0"
    );
}
