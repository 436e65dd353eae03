//! `list`, `stats` and `version` from a fake sysfs tree: each column and key reads the file
//! that holds it, no control node is opened, and a missing or garbled file is named.

use super::*;
use crate::list::{render_json, Column};
use crate::stats::render_stats_json;
use crate::testutil::Scratch;
use rxdsk_ioctl::{RxdskComprStats, RXDSK_FLAG_BACKED, RXDSK_FLAG_COMPRESSED};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A compressed device with a backing device whose limit is a cache size: every file holds a
/// value of its own, each number of `io_stat`, `mm_stat`, `bd_stat` and `cache_stat` too.
const DEVICE: [(&str, &str); 18] = [
    ("size", "1073741824"),
    ("block_size", "4096"),
    ("mem_limit", "536870912"),
    ("mem_used", "8192"),
    ("read_only", "0"),
    ("open_count", "3"),
    ("algorithm", "zstd"),
    ("level", "3"),
    ("backing", "8:16"),
    ("mode", "writeback"),
    ("journal_bytes", "16777216"),
    ("dirty_pages", "5"),
    ("unloaded_pages", "6"),
    ("flush_generation", "7"),
    ("io_stat", "11 12 13 14 15 16 17 18 19 20 21 22 23"),
    ("mm_stat", "2 41 42 43 44 45 46 47 48"),
    ("bd_stat", "31 32 33 34 35"),
    ("cache_stat", "51 52 53 54 55 56 1 57 58"),
];

/// What `io_stat` holds, in order (the stats document's keys).
const IO_STAT: &str = "reads writes read-bytes write-bytes discards discard-bytes write-zeroes \
                       write-zeroes-bytes flushes zero-pages alloc-failures limit-failures io-errors";

/// A sysfs tree with the module's files and device `rxd0` (`DEVICE`), its backing device
/// `8:16` being `sdb`.
struct Tree(Scratch);

impl Tree {
    fn new(name: &str) -> Self {
        let tree = Tree(Scratch::new(name));
        tree.0.write("module/rxdsk/version", "0.1.0\n");
        tree.0.write("module/rxdsk/parameters/abi", "1.5 0x1ff\n");
        for (file, value) in DEVICE {
            tree.set(0, file, value);
        }
        let disk = tree.0 .0.join("devices/pci0000:00/block/sdb");
        std::fs::create_dir_all(&disk).unwrap_or_else(|e| panic!("{e}"));
        tree.0.write("dev/block/.keep", "");
        std::os::unix::fs::symlink(&disk, tree.0 .0.join("dev/block/8:16"))
            .unwrap_or_else(|e| panic!("{e}"));
        tree
    }

    fn set(&self, id: u32, file: &str, value: &str) {
        self.0.write(
            &format!("block/rxd{id}/rxdsk/{file}"),
            &format!("{value}\n"),
        );
    }

    fn path(&self, rel: &str) -> String {
        self.0 .0.join(rel).display().to_string()
    }

    fn kernel(&self) -> Kernel {
        Kernel {
            sysfs: Sysfs::new(&self.0 .0),
            ..no_kernel()
        }
    }

    /// `rxdskctl ARGS` on this tree, with a fake that knows no device; the control node must
    /// not be opened.
    fn run(&self, args: &[&str]) -> Outcome {
        let (o, opened) = run_in(&Fake::new(), &self.kernel(), args);
        assert!(!opened, "{args:?} opened the control node");
        o
    }

    /// The JSON `rxdskctl ARGS` prints.
    fn json(&self, args: &[&str]) -> Value {
        let o = self.run(args);
        assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{args:?}");
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", o.stdout))
    }

    /// The keys of `list -J`'s rxd0 and of `stats -J rxd0`, nested ones as `compression.KEY`,
    /// with their values.
    fn values(&self) -> BTreeMap<String, Value> {
        let mut values = BTreeMap::new();
        let list = self.json(&["list", "-J"]);
        flatten("list.", &list["rxdsk"][0], &mut values);
        flatten("stats.", &self.json(&["stats", "-J", "rxd0"]), &mut values);
        values
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    let Value::Object(map) = v else {
        panic!("{prefix}: not an object: {v}")
    };
    for (key, value) in map {
        match value {
            Value::Object(_) => flatten(&format!("{prefix}{key}."), value, out),
            _ => {
                out.insert(format!("{prefix}{key}"), value.clone());
            }
        }
    }
}

/// `DEVICE`'s `cache_stat`.
const CACHE: crate::stats::CacheStats = crate::stats::CacheStats {
    read_hits: 51,
    read_misses: 52,
    evictions: 53,
    room_flushes: 54,
    throttled: 55,
    protected_pages: 56,
    reclaimed_pages: 57,
    read_bypasses: 58,
};

/// What `DEVICE` is in the ABI's structures.
fn device_structs() -> (Row, RxdskStats, RxdskComprStats) {
    let compr = RxdskComprStats {
        algorithm: abi::RXDSK_COMPRESS_ZSTD,
        level: 3,
        orig_data_size: 41,
        compr_data_size: 42,
        mem_used_total: 43,
        mem_used_max: 44,
        same_pages: 45,
        huge_pages: 46,
        compress_failures: 47,
        decompress_failures: 48,
        ..Default::default()
    };
    let row = Row {
        info: RxdskInfo {
            logical_block_size: 4096,
            size_bytes: 1 << 30,
            mem_limit_bytes: 512 << 20,
            flags: RXDSK_FLAG_BACKED | RXDSK_FLAG_COMPRESSED,
            used_bytes: 8192,
            open_count: 3,
            dirty_pages: 5,
            unloaded_pages: 6,
            journal_bytes: 16 << 20,
            backing_major: 8,
            backing_minor: 16,
            ..Default::default()
        },
        compr: Some(compr),
        backing: Some("/dev/sdb".into()),
        export: None,
        cache: Some(CACHE),
    };
    let stats = RxdskStats {
        reads: 11,
        writes: 12,
        read_bytes: 13,
        write_bytes: 14,
        discards: 15,
        discard_bytes: 16,
        write_zeroes: 17,
        write_zeroes_bytes: 18,
        flushes: 19,
        pages: 2,
        zero_pages: 20,
        alloc_failures: 21,
        limit_failures: 22,
        io_errors: 23,
        dirty_pages: 5,
        written_back_bytes: 32,
        backing_flushes: 33,
        backing_errors: 35,
        flush_generation: 7,
        backing_reads: 31,
        atomic_flushes: 34,
        ..Default::default()
    };
    (row, stats, compr)
}

/// What the ioctls give, rendered, is what sysfs gives.
#[test]
fn list_and_stats_from_sysfs_are_what_the_ioctls_give() {
    let tree = Tree::new("sysfs-same");
    let (row, stats, compr) = device_structs();
    assert_eq!(
        tree.run(&["list", "-J"]).stdout,
        render_json(&[row], &Column::ALL)
    );
    assert_eq!(
        tree.run(&["stats", "-J", "/dev/rxd0"]).stdout,
        render_stats_json(0, &stats, Some(&compr), Some(&CACHE))
    );
    let v = tree.json(&["list", "-J", "-o", "cached,hit-ratio"]);
    assert_eq!(v["rxdsk"][0]["cached"], 8192);
    // serde_json parses floats to within an ulp.
    let hit_ratio = v["rxdsk"][0]["hit-ratio"].as_f64().unwrap_or_default();
    assert!((hit_ratio - 51.0 / 103.0).abs() < 1e-12, "{hit_ratio}");
    let o = tree.run(&["list", "--raw", "-n", "-o", "NAME,CACHED,HIT-RATIO"]);
    assert_eq!(o.stdout, "/dev/rxd0 8K 0.495\n");
    // An older module's line has no reclaimed count: 0.
    tree.set(0, "cache_stat", "51 52 53 54 55 56 1");
    let v = tree.json(&["stats", "-J", "0"]);
    assert_eq!(v["cache"]["reclaimed-pages"], 0);
    assert_eq!(v["cache"]["read-bypasses"], 0);
    assert_eq!(v["cache"]["protected-pages"], 56);
    assert_eq!(tree.json(&["list", "-J"])["rxdsk"][0]["cached"], 8192);
    let o = tree.run(&["stats", "0"]);
    assert!(
        o.stdout.ends_with(
            "protected-pages: 56\nreclaimed-pages: 0\nread-bypasses: 0\nhit-ratio: 0.495\n"
        ),
        "{}",
        o.stdout
    );
    // Not caching: no cache object, no cache columns.
    tree.set(0, "cache_stat", "51 52 53 54 55 56 0 57 58");
    assert_eq!(tree.json(&["stats", "-J", "0"])["cache"], Value::Null);
    let o = tree.run(&["list", "--raw", "-n", "-o", "NAME,CACHED,HIT-RATIO"]);
    assert_eq!(o.stdout, "/dev/rxd0 - -\n");
    tree.set(0, "cache_stat", original("cache_stat"));
    // A plain device: no compression object, its columns null.
    tree.set(0, "algorithm", "none");
    tree.set(0, "level", "0");
    tree.set(0, "mm_stat", "2 0 0 0 0 0 0 0 0");
    let v = tree.json(&["stats", "-J", "0"]);
    assert_eq!(v["compression"], Value::Null);
    assert_eq!(v["pages"], 2);
    let v = tree.json(&["list", "-J"]);
    for key in ["algorithm", "data", "compr", "total", "ratio"] {
        assert_eq!(v["rxdsk"][0][key], Value::Null, "{key}");
    }
}

/// The value of `file` in `DEVICE`.
fn original(file: &str) -> &'static str {
    DEVICE
        .iter()
        .find(|(f, _)| *f == file)
        .map_or("", |(_, v)| *v)
}

/// Changing one file (one number of a line) changes exactly the keys it holds.
/// Each word of `mode` is the flags INFO gives: a writearound device has the writethrough flag
/// too, as the kernel sets it.
#[test]
fn mode_from_sysfs_is_infos_flags() {
    use rxdsk_ioctl::{RXDSK_FLAG_WRITEAROUND, RXDSK_FLAG_WRITETHROUGH};
    let tree = Tree::new("sysfs-mode");
    let (mut row, _, _) = device_structs();
    let other = row.info.flags & !(RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH);
    for (word, flags) in [
        ("writeback", RXDSK_FLAG_BACKED),
        ("writethrough", RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH),
        (
            "writearound",
            RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH | RXDSK_FLAG_WRITEAROUND,
        ),
    ] {
        tree.set(0, "mode", word);
        row.info.flags = other | flags;
        assert_eq!(
            tree.run(&["list", "-J"]).stdout,
            render_json(std::slice::from_ref(&row), &Column::ALL),
            "{word}"
        );
        let o = tree.run(&["list", "--raw", "-n", "-o", "NAME,MODE"]);
        assert_eq!(o.stdout, format!("/dev/rxd0 {word}\n"));
    }
}

#[test]
fn each_key_reads_its_file() {
    let tree = Tree::new("sysfs-keys");
    let base = tree.values();
    // name and id come from the directory's name, export from configfs.
    let mut covered: BTreeSet<String> = [
        "list.name",
        "list.id",
        "list.export",
        "stats.name",
        "stats.id",
    ]
    .map(String::from)
    .into();
    let mut cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("size", "2147483648".into(), vec!["list.size"]),
        ("block_size", "512".into(), vec!["list.block-size"]),
        ("mem_limit", "0".into(), vec!["list.mem-limit"]),
        ("mem_used", "4096".into(), vec!["list.used", "list.cached"]),
        ("read_only", "1".into(), vec!["list.ro"]),
        ("open_count", "9".into(), vec!["list.open"]),
        (
            "algorithm",
            "lz4".into(),
            vec!["list.algorithm", "stats.compression.algorithm"],
        ),
        ("level", "5".into(), vec!["stats.compression.level"]),
        ("backing", "8:32".into(), vec!["list.backing"]),
        ("mode", "writethrough".into(), vec!["list.mode"]),
        ("mode", "writearound".into(), vec!["list.mode"]),
        (
            "mode",
            "none".into(),
            vec!["list.backed", "list.backing", "list.mode"],
        ),
        ("journal_bytes", "0".into(), vec!["list.journal"]),
        (
            "dirty_pages",
            "50".into(),
            vec!["list.dirty", "stats.dirty-pages"],
        ),
        ("unloaded_pages", "60".into(), vec!["list.unloaded"]),
        (
            "flush_generation",
            "70".into(),
            vec!["stats.flush-generation"],
        ),
    ];
    let lines: [(&str, Vec<Vec<&str>>); 4] = [
        ("io_stat", IO_STAT.split(' ').map(|k| vec![k]).collect()),
        (
            "mm_stat",
            vec![
                vec!["stats.pages"],
                vec![
                    "list.data",
                    "list.ratio",
                    "stats.compression.orig-data-size",
                ],
                vec!["list.compr", "stats.compression.compr-data-size"],
                vec![
                    "list.total",
                    "list.ratio",
                    "stats.compression.mem-used-total",
                ],
                vec!["stats.compression.mem-used-max"],
                vec!["stats.compression.same-pages"],
                vec!["stats.compression.huge-pages"],
                vec!["stats.compression.compress-failures"],
                vec!["stats.compression.decompress-failures"],
            ],
        ),
        (
            "bd_stat",
            [
                "backing-reads",
                "written-back-bytes",
                "backing-flushes",
                "atomic-flushes",
                "backing-errors",
            ]
            .map(|k| vec![k])
            .to_vec(),
        ),
        (
            "cache_stat",
            vec![
                vec![
                    "stats.cache.read-hits",
                    "stats.cache.hit-ratio",
                    "list.hit-ratio",
                ],
                vec![
                    "stats.cache.read-misses",
                    "stats.cache.hit-ratio",
                    "list.hit-ratio",
                ],
                vec!["stats.cache.evictions"],
                vec!["stats.cache.room-flushes"],
                vec!["stats.cache.throttled-writes"],
                vec!["stats.cache.protected-pages"],
                // Not caching (any other value than 1): no cache object, no cache columns.
                vec!["stats.cache", "list.cached", "list.hit-ratio"],
                vec!["stats.cache.reclaimed-pages"],
                vec!["stats.cache.read-bypasses"],
            ],
        ),
    ];
    for (file, keys) in lines {
        for (at, keys) in keys.into_iter().enumerate() {
            let mut value: Vec<&str> = original(file).split(' ').collect();
            value[at] = "999";
            cases.push((file, value.join(" "), keys));
        }
    }
    for (file, value, keys) in cases {
        tree.set(0, file, &value);
        let now = tree.values();
        let changed: BTreeSet<String> = now
            .iter()
            .filter(|(k, v)| base.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        // io_stat's and bd_stat's keys are written bare: they are the stats document's.
        let want: BTreeSet<String> = keys
            .iter()
            .map(|k| match k.contains('.') {
                true => k.to_string(),
                false => format!("stats.{k}"),
            })
            .collect();
        assert_eq!(changed, want, "{file} = {value}");
        covered.extend(want);
        tree.set(0, file, original(file));
    }
    let missing: Vec<&String> = base.keys().filter(|k| !covered.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys no file was seen to change: {missing:?}"
    );
}

#[test]
fn only_devices_with_an_rxdsk_directory_are_listed() {
    let tree = Tree::new("sysfs-ours");
    // Another driver's disks, and an rxd name without our directory.
    tree.0.write("block/loop0/size", "0\n");
    tree.0.write("block/rxd9/size", "0\n");
    tree.0.write("block/rxd01/rxdsk/size", "0\n");
    for file in DEVICE {
        tree.set(12, file.0, file.1);
    }
    let o = tree.run(&["list", "--raw", "-o", "NAME,ID"]);
    assert_eq!(o.stdout, "NAME ID\n/dev/rxd0 0\n/dev/rxd12 12\n");
    let o = tree.run(&["list", "rxd9"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxd9: cannot read device information: no such device\n"
        )
    );
    let o = tree.run(&["stats", "rxd9"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxd9: cannot read statistics: no such device\n"
        )
    );
}

#[test]
fn a_missing_or_garbled_file_is_named() {
    let tree = Tree::new("sysfs-bad");
    let fails = |args: &[&str], want: String| {
        let o = tree.run(args);
        assert_eq!((o.status, o.stderr), (1, want), "{args:?}");
        assert_eq!(o.stdout, "", "{args:?}");
    };
    std::fs::remove_file(tree.path("block/rxd0/rxdsk/size")).unwrap_or_else(|e| panic!("{e}"));
    fails(
        &["list"],
        format!(
            "rxdskctl: {}: cannot read device information: No such file or directory\n",
            tree.path("block/rxd0/rxdsk/size")
        ),
    );
    tree.set(0, "size", "12x");
    fails(
        &["list"],
        format!(
            "rxdskctl: {}: cannot read device information: not a number: \"12x\"\n",
            tree.path("block/rxd0/rxdsk/size")
        ),
    );
    tree.set(0, "size", "4096");
    tree.set(0, "io_stat", "1 2 x");
    fails(
        &["stats", "0"],
        format!(
            "rxdskctl: {}: cannot read statistics: not a line of 13 numbers or more: \"1 2 x\"\n",
            tree.path("block/rxd0/rxdsk/io_stat")
        ),
    );
    tree.set(0, "io_stat", "1 2 3 4 5 6 7 8 9 10 11 12");
    fails(
        &["stats", "0"],
        format!(
            "rxdskctl: {}: cannot read statistics: not a line of 13 numbers or more: \"1 2 3 4 5 \
             6 7 8 9 10 11 12\"\n",
            tree.path("block/rxd0/rxdsk/io_stat")
        ),
    );
    // Numbers a later module adds at the end are left alone.
    tree.set(0, "io_stat", &format!("{} 77", original("io_stat")));
    assert_eq!(tree.run(&["stats", "0"]).status, 0);
    tree.set(0, "mode", "sometimes");
    fails(
        &["list"],
        format!(
            "rxdskctl: {}: cannot read device information: not none, writeback, writethrough \
             or writearound: \"sometimes\"\n",
            tree.path("block/rxd0/rxdsk/mode")
        ),
    );
    tree.set(0, "mode", "none");
    tree.set(0, "algorithm", "brotli");
    fails(
        &["list"],
        format!(
            "rxdskctl: {}: cannot read device information: unknown algorithm: \"brotli\"\n",
            tree.path("block/rxd0/rxdsk/algorithm")
        ),
    );
    tree.0.write("module/rxdsk/parameters/abi", "1.5\n");
    fails(
        &["version", "-J"],
        format!(
            "rxdskctl: {}: cannot read version: not MAJOR.MINOR FEATURES: \"1.5\"\n",
            tree.path("module/rxdsk/parameters/abi")
        ),
    );
}

#[test]
fn version_from_sysfs() {
    let tree = Tree::new("sysfs-version");
    let o = tree.run(&["version"]);
    assert_eq!(
        (o.status, o.stdout.as_str()),
        (
            0,
            format!(
                "rxdskctl 0.1.0 (ABI 1.{})\nrxdsk module 0.1.0 (ABI 1.5, features 0x1ff)\n",
                abi::RXDSK_ABI_MINOR
            )
            .as_str()
        )
    );
    let v = tree.json(&["version", "-J"]);
    assert_eq!(v["module"]["abi-minor"], 5);
    assert_eq!(v["module"]["features"], 0x1ff);
    assert_eq!(v["module"]["version"], "0.1.0");
    // printf's %#x writes no features as 0.
    tree.0.write("module/rxdsk/parameters/abi", "2.0 0\n");
    let o = tree.run(&["version"]);
    assert!(o
        .stdout
        .ends_with("rxdsk module 0.1.0 (ABI 2.0, features 0x0)\n"));
    assert_eq!(
        (o.status, o.stderr),
        (
            1,
            format!(
                "rxdskctl: {}: incompatible module ABI 2.0 (rxdskctl speaks 1.{})\n",
                tree.path("module/rxdsk"),
                abi::RXDSK_ABI_MINOR
            )
        )
    );
}

/// A module from before the sysfs files (no `parameters/abi`): the ioctls answer.
#[test]
fn an_older_module_is_asked_through_the_control_node() {
    let tree = Tree::new("sysfs-old");
    std::fs::remove_file(tree.path("module/rxdsk/parameters/abi"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut fake = Fake::new().with_device(4, 1 << 20, 0);
    fake.stats.insert(4, RxdskStats::default());
    for args in [&["list", "-o", "NAME"][..], &["stats", "4"], &["version"]] {
        let (o, opened) = run_in(&fake, &tree.kernel(), args);
        assert!(opened, "{args:?}");
        assert_eq!(o.status, 0, "{args:?}: {}", o.stderr);
    }
    assert_eq!(
        run_in(&fake, &tree.kernel(), &["list", "-o", "NAME"])
            .0
            .stdout,
        "NAME\n/dev/rxd4\n"
    );
}

/// `inspect` reads an image file and nothing else: no control node, no privilege.
#[test]
fn inspect_needs_no_control_node() {
    let scratch = Scratch::new("inspect-unprivileged");
    let path = scratch.0.join("img").display().to_string();
    crate::testutil::write_image(&path, 1 << 20, 3);

    let (o, opened) = run_with(&Fake::new(), &["inspect", &path]);
    assert!(!opened);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(o.stdout.contains("generation:     3"), "{}", o.stdout);
}
