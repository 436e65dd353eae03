//! `rxdskctl list`, `stats` and `version` for anyone: they read sysfs, and give an
//! unprivileged user what the ioctls give root; `create` stays root's.

use crate::backing::DISK;
use crate::blk::{self, MIB};
use crate::harness::{as_nobody, cmd, cmd_ok, ensure, is_block_device, TestResult};
use crate::rxdsk::{dev_path, list_ids, Control, Device};
use rxdsk_ioctl::{self as abi, RxdskComprStats, RxdskInfo, RxdskStats};
use serde_json::{json, Value};

/// What root reads of a device through the ioctls (and the cache counters, which only
/// sysfs has: `cache_stat`'s numbers).
#[derive(Clone, PartialEq)]
struct Seen {
    info: RxdskInfo,
    stats: RxdskStats,
    compr: Option<RxdskComprStats>,
    cache: Vec<u64>,
}

impl Seen {
    fn read(dev: &Device) -> Result<Self, String> {
        let info = dev.info()?;
        let compr = match info.flags & abi::RXDSK_FLAG_COMPRESSED {
            0 => None,
            _ => Some(dev.compr_stats()?),
        };
        let path = format!("/sys/block/rxd{}/rxdsk/cache_stat", dev.id);
        let line = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let cache = line
            .split_whitespace()
            .map(|w| w.parse().map_err(|_| format!("{path}: {line:?}")))
            .collect::<Result<_, String>>()?;
        Ok(Seen {
            info,
            stats: dev.stats()?,
            compr,
            cache,
        })
    }

    /// `cache_stat` while the limit is a cache size (its seventh number 1): the counters, and
    /// `reclaimed`, the eighth number (0 from a module before it).
    fn caching(&self) -> Option<([u64; 6], [u64; 2])> {
        match self.cache[..] {
            [hits, misses, evictions, room_flushes, throttled, protected, 1, ref later @ ..] => {
                Some((
                    [hits, misses, evictions, room_flushes, throttled, protected],
                    [
                        later.first().copied().unwrap_or(0),
                        later.get(1).copied().unwrap_or(0),
                    ],
                ))
            }
            _ => None,
        }
    }

    /// Read hits over reads while caching, if any read.
    fn hit_ratio(&self) -> Value {
        match self.caching() {
            Some(([hits, misses, ..], _)) if hits + misses != 0 => {
                (hits as f64 / (hits + misses) as f64).into()
            }
            _ => Value::Null,
        }
    }

    /// The keys of its `list -J` entry, as they must be (ratio and export aside).
    fn list_entry(&self) -> Vec<(&'static str, Value)> {
        let i = &self.info;
        let c = self.compr.as_ref();
        let backed = i.flags & abi::RXDSK_FLAG_BACKED != 0;
        let mode = match (backed, i.flags & abi::RXDSK_FLAG_WRITETHROUGH != 0) {
            (false, _) => Value::Null,
            (true, true) => "writethrough".into(),
            (true, false) => "writeback".into(),
        };
        let nonzero = |v: u64| if v == 0 { Value::Null } else { v.into() };
        let compr = |f: fn(&RxdskComprStats) -> u64| c.map_or(Value::Null, |c| f(c).into());
        vec![
            ("name", dev_path(i.id).into()),
            ("id", i.id.into()),
            ("size", i.size_bytes.into()),
            ("used", i.used_bytes.into()),
            ("block-size", i.logical_block_size.into()),
            ("mem-limit", nonzero(i.mem_limit_bytes)),
            ("ro", (i.flags & abi::RXDSK_FLAG_READ_ONLY != 0).into()),
            ("open", i.open_count.into()),
            ("backed", backed.into()),
            ("dirty", (i.dirty_pages * abi::RXDSK_PAGE_SIZE).into()),
            ("backing", if backed { DISK.into() } else { Value::Null }),
            ("mode", mode),
            ("journal", nonzero(i.journal_bytes)),
            ("unloaded", (i.unloaded_pages * abi::RXDSK_PAGE_SIZE).into()),
            (
                "algorithm",
                c.map_or(Value::Null, |c| {
                    abi::RXDSK_COMPRESS_NAMES[c.algorithm as usize].into()
                }),
            ),
            ("data", compr(|c| c.orig_data_size)),
            ("compr", compr(|c| c.compr_data_size)),
            ("total", compr(|c| c.mem_used_total)),
            // While caching, the device's memory is its cache.
            (
                "cached",
                self.caching().map_or(Value::Null, |_| i.used_bytes.into()),
            ),
            ("hit-ratio", self.hit_ratio()),
        ]
    }

    /// Its `stats -J` document, as it must be.
    fn stats_doc(&self) -> Value {
        let s = &self.stats;
        let compression = self.compr.as_ref().map_or(Value::Null, |c| {
            json!({
                "algorithm": abi::RXDSK_COMPRESS_NAMES[c.algorithm as usize],
                "level": c.level,
                "orig-data-size": c.orig_data_size,
                "compr-data-size": c.compr_data_size,
                "mem-used-total": c.mem_used_total,
                "mem-used-max": c.mem_used_max,
                "same-pages": c.same_pages,
                "huge-pages": c.huge_pages,
                "compress-failures": c.compress_failures,
                "decompress-failures": c.decompress_failures,
            })
        });
        let cache = match self.caching() {
            Some((
                [hits, misses, evictions, room_flushes, throttled, protected],
                [reclaimed, bypassed],
            )) => {
                json!({
                    "read-hits": hits, "read-misses": misses, "evictions": evictions,
                    "room-flushes": room_flushes, "throttled-writes": throttled,
                    "protected-pages": protected, "reclaimed-pages": reclaimed,
                    "read-bypasses": bypassed,
                    "hit-ratio": self.hit_ratio(),
                })
            }
            None => Value::Null,
        };
        json!({
            "name": dev_path(s.id), "id": s.id,
            "reads": s.reads, "writes": s.writes,
            "read-bytes": s.read_bytes, "write-bytes": s.write_bytes,
            "discards": s.discards, "discard-bytes": s.discard_bytes,
            "write-zeroes": s.write_zeroes, "write-zeroes-bytes": s.write_zeroes_bytes,
            "flushes": s.flushes, "pages": s.pages, "zero-pages": s.zero_pages,
            "alloc-failures": s.alloc_failures, "limit-failures": s.limit_failures,
            "io-errors": s.io_errors, "dirty-pages": s.dirty_pages,
            "written-back-bytes": s.written_back_bytes, "backing-flushes": s.backing_flushes,
            "backing-errors": s.backing_errors, "flush-generation": s.flush_generation,
            "backing-reads": s.backing_reads, "atomic-flushes": s.atomic_flushes,
            "compression": compression,
            "cache": cache,
        })
    }
}

/// Whether two JSON values agree: floats to within rounding (serde_json parses them to within
/// an ulp, so `hit-ratio` read back may differ from ours in the last bit), all else exactly.
fn agree(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| agree(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| agree(v, w)))
        }
        _ => a == b,
    }
}

/// GET_VERSION and GET_FEATURES as `version -J`'s module object.
fn module_doc() -> Result<Value, String> {
    let control = Control::open()?;
    let mut v = [0u8; 72];
    let mut f = [0u8; 32];
    control
        .raw_bytes(u64::from(abi::RXDSK_IOC_GET_VERSION), &mut v)
        .map_err(|e| format!("GET_VERSION: {e}"))?;
    control
        .raw_bytes(u64::from(abi::RXDSK_IOC_GET_FEATURES), &mut f)
        .map_err(|e| format!("GET_FEATURES: {e}"))?;
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let name = &v[8..40];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let mut features = [0u8; 8];
    features.copy_from_slice(&f[..8]);
    Ok(json!({
        "version": String::from_utf8_lossy(&name[..end]),
        "abi-major": word(&v[0..4]),
        "abi-minor": word(&v[4..8]),
        "features": u64::from_ne_bytes(features),
    }))
}

/// `rxdskctl ARGS` as JSON, in the unprivileged child (diagnostics as `# ` lines).
fn json_of(args: &[&str]) -> Option<Value> {
    match cmd("rxdskctl", args) {
        Ok(o) if o.status == 0 => match serde_json::from_str(&o.stdout) {
            Ok(v) => Some(v),
            Err(e) => {
                println!(
                    "# as nobody: rxdskctl {}: invalid JSON ({e}): {}",
                    args.join(" "),
                    o.stdout
                );
                None
            }
        },
        Ok(o) => {
            println!(
                "# as nobody: rxdskctl {} exited {}: {}",
                args.join(" "),
                o.status,
                o.stderr.trim()
            );
            None
        }
        Err(e) => {
            println!("# as nobody: {e}");
            None
        }
    }
}

/// Runs as nobody: the queries give what root saw, and create is refused. Exit codes: 20 a
/// query failed, 21 a value differs, 22 create was not refused as it must be.
fn check_as_nobody(devices: &[Seen], module: &Value) -> i32 {
    let mut code = 0;
    let mut differs = |what: String| {
        println!("# as nobody: {what}");
        code = 21;
    };
    let Some(list) = json_of(&["list", "-J"]) else {
        return 20;
    };
    for seen in devices {
        let name = dev_path(seen.info.id);
        let entry = list["rxdsk"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name.as_str()));
        let Some(entry) = entry else {
            differs(format!("list -J has no {name}: {list}"));
            continue;
        };
        for (key, want) in seen.list_entry() {
            if !agree(&entry[key], &want) {
                differs(format!(
                    "list -J {name} {key}: {}, root's INFO: {want}",
                    entry[key]
                ));
            }
        }
        let Some(stats) = json_of(&["stats", "-J", &name]) else {
            return 20;
        };
        let want = seen.stats_doc();
        if !agree(&stats, &want) {
            differs(format!("stats -J {name}: {stats}, root's STATS: {want}"));
        }
    }
    let Some(version) = json_of(&["version", "-J"]) else {
        return 20;
    };
    if &version["module"] != module {
        differs(format!(
            "version -J module: {}, root's GET_VERSION and GET_FEATURES: {module}",
            version["module"]
        ));
    }
    match cmd("rxdskctl", &["version"]) {
        Ok(o) if o.status == 0 => {
            let want = format!(
                "rxdsk module {} (ABI {}.{}, features {:#x})",
                module["version"].as_str().unwrap_or_default(),
                module["abi-major"],
                module["abi-minor"],
                module["features"].as_u64().unwrap_or_default()
            );
            if !o.stdout.contains(&want) {
                differs(format!(
                    "version printed {:?}, want a line {want:?}",
                    o.stdout
                ));
            }
        }
        other => {
            println!(
                "# as nobody: rxdskctl version: {:?}",
                other.map(|o| o.stderr)
            );
            return 20;
        }
    }
    let want = "rxdskctl: /dev/rxdsk-control: cannot open: permission denied (CAP_SYS_ADMIN is \
                required)";
    match cmd("rxdskctl", &["create", "-s", "1M"]) {
        Ok(o) if o.status == 1 && o.stderr.trim() == want && o.stdout.is_empty() => {}
        Ok(o) => {
            println!(
                "# as nobody: create -s 1M exited {}, stdout {:?}, stderr {:?}; want 1 and {want:?}",
                o.status, o.stdout, o.stderr
            );
            return 22;
        }
        Err(e) => {
            println!("# as nobody: {e}");
            return 22;
        }
    }
    code
}

/// As nobody, `rxdskctl list -J`, `stats -J` and `version` work and show what root's ioctls
/// show, for a plain device and for a compressed one with a backing device (journal, flushed
/// once); `rxdskctl create` is refused with the permission error.
pub fn queries_unprivileged() -> TestResult {
    ensure(is_block_device(DISK), || {
        format!("{DISK} missing: the suite's scratch disk")
    })?;
    let before = list_ids()?;
    let plain = Device::create(16 * MIB, 4096)?;
    let compressed = Device::create_compressed(16 * MIB, 4096, abi::RXDSK_COMPRESS_LZ4, 64 * MIB)?;
    for (dev, seed) in [(&plain, 0x5E1), (&compressed, 0x5E2)] {
        let f = blk::open_direct(&dev.path, true)?;
        blk::write_pattern(&f, 0, 4 * MIB, seed)?;
    }
    cmd_ok(
        "rxdskctl",
        &["attach", &compressed.path, DISK, "--journal", "1M"],
    )?;
    cmd_ok("rxdskctl", &["flush", &compressed.path])?;
    {
        // Changed since the flush: dirty pages to show.
        let f = blk::open_direct(&compressed.path, true)?;
        blk::write_pattern(&f, 8 * MIB, MIB, 0x5E3)?;
    }
    let module = module_doc()?;
    // The devices are idle now; a reading taken before and after the unprivileged one that
    // agree leave it nothing else to show (the counters only grow).
    let mut result = Err("not run".to_string());
    for _ in 0..3 {
        let seen = vec![Seen::read(&plain)?, Seen::read(&compressed)?];
        let module = module.clone();
        let checked = seen.clone();
        let code = as_nobody(move || check_as_nobody(&checked, &module))?;
        let after = vec![Seen::read(&plain)?, Seen::read(&compressed)?];
        result = ensure(code == 0, || {
            format!(
                "the unprivileged queries exited {code} (20: a query failed, 21: a value \
                 differs from root's ioctls, 22: create not refused; see above)"
            )
        });
        if after == seen {
            break;
        }
        result = Err("the devices' counters kept changing while idle".into());
    }
    result?;
    let mut want = before;
    want.extend([plain.id, compressed.id]);
    want.sort_unstable();
    let now = list_ids()?;
    ensure(now == want, || {
        format!("after the unprivileged create LIST is {now:?}, want {want:?}")
    })?;
    cmd_ok("rxdskctl", &["detach", &compressed.path])?;
    compressed.destroy()?;
    plain.destroy()
}
