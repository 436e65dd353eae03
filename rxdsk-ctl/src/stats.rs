//! `rxdskctl stats`: the counters of one device as text or JSON.

use crate::device::device_path;
use crate::size::format_size;
use rxdsk_ioctl::{RxdskComprStats, RxdskStats, RXDSK_COMPRESS_NAMES};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// How a counter is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    Bytes,
}

type Counter = (&'static str, Kind, fn(&RxdskStats) -> u64);

/// Every counter, in ABI order, named like its ABI field in kebab-case (the JSON keys).
const COUNTERS: [Counter; 21] = [
    ("reads", Kind::Count, |s| s.reads),
    ("writes", Kind::Count, |s| s.writes),
    ("read-bytes", Kind::Bytes, |s| s.read_bytes),
    ("write-bytes", Kind::Bytes, |s| s.write_bytes),
    ("discards", Kind::Count, |s| s.discards),
    ("discard-bytes", Kind::Bytes, |s| s.discard_bytes),
    ("write-zeroes", Kind::Count, |s| s.write_zeroes),
    ("write-zeroes-bytes", Kind::Bytes, |s| s.write_zeroes_bytes),
    ("flushes", Kind::Count, |s| s.flushes),
    ("pages", Kind::Count, |s| s.pages),
    ("zero-pages", Kind::Count, |s| s.zero_pages),
    ("alloc-failures", Kind::Count, |s| s.alloc_failures),
    ("limit-failures", Kind::Count, |s| s.limit_failures),
    ("io-errors", Kind::Count, |s| s.io_errors),
    ("dirty-pages", Kind::Count, |s| s.dirty_pages),
    ("written-back-bytes", Kind::Bytes, |s| s.written_back_bytes),
    ("backing-flushes", Kind::Count, |s| s.backing_flushes),
    ("backing-errors", Kind::Count, |s| s.backing_errors),
    ("flush-generation", Kind::Count, |s| s.flush_generation),
    ("backing-reads", Kind::Count, |s| s.backing_reads),
    ("atomic-flushes", Kind::Count, |s| s.atomic_flushes),
];

type ComprCounter = (&'static str, Kind, fn(&RxdskComprStats) -> u64);

/// A compressed device's counters (COMPR_STATS), named like their ABI fields (zram's
/// mm_stat) in kebab-case.
const COMPR_COUNTERS: [ComprCounter; 8] = [
    ("orig-data-size", Kind::Bytes, |c| c.orig_data_size),
    ("compr-data-size", Kind::Bytes, |c| c.compr_data_size),
    ("mem-used-total", Kind::Bytes, |c| c.mem_used_total),
    ("mem-used-max", Kind::Bytes, |c| c.mem_used_max),
    ("same-pages", Kind::Count, |c| c.same_pages),
    ("huge-pages", Kind::Count, |c| c.huge_pages),
    ("compress-failures", Kind::Count, |c| c.compress_failures),
    ("decompress-failures", Kind::Count, |c| {
        c.decompress_failures
    }),
];

fn algorithm(c: &RxdskComprStats) -> &'static str {
    RXDSK_COMPRESS_NAMES
        .get(c.algorithm as usize)
        .copied()
        .unwrap_or("?")
}

/// What a device whose memory limit is a cache size reports
/// (`/sys/block/rxdN/rxdsk/cache_stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub read_hits: u64,
    pub read_misses: u64,
    pub evictions: u64,
    pub room_flushes: u64,
    pub throttled: u64,
    pub protected_pages: u64,
    /// Pages given back to the kernel under global memory pressure (the device's shrinker);
    /// 0 from a module that does not report it.
    pub reclaimed_pages: u64,
    /// Read misses served from the backing device without being cached (read once lately:
    /// not admitted); 0 from a module that does not report it.
    pub read_bypasses: u64,
}

impl CacheStats {
    /// From `cache_stat`'s line: `None` unless the limit is a cache size now (its seventh
    /// number 1), or for a line of another shape. The eighth and ninth numbers (`reclaimed`,
    /// `bypassed`) are absent from older modules' lines.
    pub fn parse(line: &str) -> Option<Self> {
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        match v[..] {
            [read_hits, read_misses, evictions, room_flushes, throttled, protected_pages, 1, ref later @ ..] => {
                Some(Self {
                    read_hits,
                    read_misses,
                    evictions,
                    room_flushes,
                    throttled,
                    protected_pages,
                    reclaimed_pages: later.first().copied().unwrap_or(0),
                    read_bypasses: later.get(1).copied().unwrap_or(0),
                })
            }
            _ => None,
        }
    }

    /// Read hits over reads, if any.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.read_hits + self.read_misses;
        (reads != 0).then(|| self.read_hits as f64 / reads as f64)
    }

    fn counters(&self) -> [(&'static str, u64); 8] {
        [
            ("read-hits", self.read_hits),
            ("read-misses", self.read_misses),
            ("evictions", self.evictions),
            ("room-flushes", self.room_flushes),
            ("throttled-writes", self.throttled),
            ("protected-pages", self.protected_pages),
            ("reclaimed-pages", self.reclaimed_pages),
            ("read-bypasses", self.read_bypasses),
        ]
    }
}

/// `key: value` lines; byte counters human-readable unless `bytes`; a compressed device's
/// counters follow, then a cache's.
pub fn render_stats_text(
    stats: &RxdskStats,
    compr: Option<&RxdskComprStats>,
    cache: Option<&CacheStats>,
    bytes: bool,
) -> String {
    let mut text = String::new();
    for (name, kind, get) in COUNTERS {
        let value = get(stats);
        let shown = if kind == Kind::Bytes && !bytes {
            format_size(value)
        } else {
            value.to_string()
        };
        text.push_str(&format!("{name}: {shown}\n"));
    }
    if let Some(c) = compr {
        text.push_str(&format!(
            "algorithm: {}\nlevel: {}\n",
            algorithm(c),
            c.level
        ));
        for (name, kind, get) in COMPR_COUNTERS {
            let value = get(c);
            let shown = if kind == Kind::Bytes && !bytes {
                format_size(value)
            } else {
                value.to_string()
            };
            text.push_str(&format!("{name}: {shown}\n"));
        }
    }
    if let Some(c) = cache {
        for (name, value) in c.counters() {
            text.push_str(&format!("{name}: {value}\n"));
        }
        if let Some(r) = c.hit_ratio() {
            text.push_str(&format!("hit-ratio: {r:.3}\n"));
        }
    }
    text
}

/// The `cache` object of `-J`.
struct JsonCache<'a>(&'a CacheStats);

impl Serialize for JsonCache<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let counters = self.0.counters();
        let mut map = serializer.serialize_map(Some(counters.len() + 1))?;
        for (name, value) in counters {
            map.serialize_entry(name, &value)?;
        }
        map.serialize_entry("hit-ratio", &self.0.hit_ratio())?;
        map.end()
    }
}

/// The `compression` object of `-J`.
struct JsonCompr<'a>(&'a RxdskComprStats);

impl Serialize for JsonCompr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(COMPR_COUNTERS.len() + 2))?;
        map.serialize_entry("algorithm", algorithm(self.0))?;
        map.serialize_entry("level", &self.0.level)?;
        for (name, _, get) in COMPR_COUNTERS {
            map.serialize_entry(name, &get(self.0))?;
        }
        map.end()
    }
}

struct JsonStats<'a> {
    id: u32,
    stats: &'a RxdskStats,
    compr: Option<&'a RxdskComprStats>,
    cache: Option<&'a CacheStats>,
}

impl Serialize for JsonStats<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(COUNTERS.len() + 4))?;
        map.serialize_entry("name", &device_path(self.id))?;
        map.serialize_entry("id", &self.id)?;
        for (name, _, get) in COUNTERS {
            map.serialize_entry(name, &get(self.stats))?;
        }
        map.serialize_entry("compression", &self.compr.map(JsonCompr))?;
        map.serialize_entry("cache", &self.cache.map(JsonCache))?;
        map.end()
    }
}

/// `{"name": "/dev/rxdN", "id": N, "reads": ..., ..., "compression": null or {...}, "cache":
/// null or {...}}`, every counter in bytes.
pub fn render_stats_json(
    id: u32,
    stats: &RxdskStats,
    compr: Option<&RxdskComprStats>,
    cache: Option<&CacheStats>,
) -> String {
    // Serializing plain integers and strings cannot fail.
    let mut text = serde_json::to_string_pretty(&JsonStats {
        id,
        stats,
        compr,
        cache,
    })
    .unwrap_or_default();
    text.push('\n');
    text
}

/// The `-J` long help: the keys of the document.
pub fn json_help() -> String {
    let names = |list: &mut dyn Iterator<Item = &'static str>| list.collect::<Vec<_>>().join(", ");
    format!(
        "Use JSON output format (byte counters in bytes): an object with name (the device \
         node), id, the counters {}, and compression: null, or for a compressed device an \
         object with algorithm (a name), level and the counters {}; and cache: null, or while \
         the memory limit of a backed device is a cache size an object with read-hits, \
         read-misses, evictions, room-flushes, throttled-writes, protected-pages, \
         reclaimed-pages (given back under memory pressure), read-bypasses (read misses served \
         from the backing device without being cached; both 0 from a module that does not \
         count them) and hit-ratio (null before any read). Counters are numbers; the keys are a stable \
         interface.",
        names(&mut COUNTERS.iter().map(|c| c.0)),
        names(&mut COMPR_COUNTERS.iter().map(|c| c.0))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RxdskStats {
        RxdskStats {
            id: 2,
            reads: 1,
            writes: 2,
            read_bytes: 4096,
            write_bytes: 3 << 29,
            discards: 5,
            discard_bytes: 512,
            write_zeroes: 7,
            write_zeroes_bytes: 1 << 20,
            flushes: 9,
            pages: 10,
            zero_pages: 11,
            alloc_failures: 12,
            limit_failures: 13,
            io_errors: 14,
            dirty_pages: 15,
            written_back_bytes: 16 << 20,
            backing_flushes: 17,
            backing_errors: 18,
            flush_generation: 19,
            backing_reads: 20,
            atomic_flushes: 21,
            ..Default::default()
        }
    }

    /// An older module's line: seven numbers, nothing reclaimed.
    #[test]
    fn cache_counters_only_while_caching() {
        let c = CacheStats::parse("6 2 10 1 3 4 1\n").expect("a caching line");
        assert_eq!(
            c,
            CacheStats {
                read_hits: 6,
                read_misses: 2,
                evictions: 10,
                room_flushes: 1,
                throttled: 3,
                protected_pages: 4,
                reclaimed_pages: 0,
                read_bypasses: 0,
            }
        );
        assert_eq!(CacheStats::parse("6 2 10 1 3 4 0\n"), None);
        assert_eq!(CacheStats::parse("6 2 10 1 3 4 0 9\n"), None);
        assert_eq!(CacheStats::parse("6 2 x 1 3 4 1\n"), None);
        assert_eq!(CacheStats::parse("6 2 10 1 3 4 1 x\n"), None);
        assert_eq!(CacheStats::parse("6 2 10 1 3 4\n"), None);
        let text = render_stats_text(&sample(), None, Some(&c), false);
        assert!(text.ends_with(
            "read-hits: 6\nread-misses: 2\nevictions: 10\nroom-flushes: 1\nthrottled-writes: 3\nprotected-pages: 4\nreclaimed-pages: 0\nread-bypasses: 0\nhit-ratio: 0.750\n"
        ));
        let json: serde_json::Value =
            serde_json::from_str(&render_stats_json(2, &sample(), None, Some(&c)))
                .unwrap_or_default();
        assert_eq!(json["cache"]["hit-ratio"], 0.75);
        assert_eq!(json["cache"]["evictions"], 10);
        assert_eq!(json["cache"]["reclaimed-pages"], 0);
        let json: serde_json::Value =
            serde_json::from_str(&render_stats_json(2, &sample(), None, None)).unwrap_or_default();
        assert!(json["cache"].is_null());
    }

    /// A module with a shrinker appends `reclaimed`, then `bypassed`; numbers after them are a
    /// later module's.
    #[test]
    fn cache_counters_with_reclaimed_pages() {
        let want = CacheStats {
            read_hits: 6,
            read_misses: 0,
            evictions: 10,
            room_flushes: 1,
            throttled: 3,
            protected_pages: 4,
            reclaimed_pages: 7,
            read_bypasses: 8,
        };
        assert_eq!(CacheStats::parse("6 0 10 1 3 4 1 7 8\n"), Some(want));
        assert_eq!(CacheStats::parse("6 0 10 1 3 4 1 7 8 9\n"), Some(want));
        assert_eq!(
            CacheStats::parse("6 0 10 1 3 4 1 7\n"),
            Some(CacheStats {
                read_bypasses: 0,
                ..want
            })
        );
        let text = render_stats_text(&sample(), None, Some(&want), true);
        assert!(text.ends_with(
            "read-hits: 6\nread-misses: 0\nevictions: 10\nroom-flushes: 1\nthrottled-writes: 3\nprotected-pages: 4\nreclaimed-pages: 7\nread-bypasses: 8\nhit-ratio: 1.000\n"
        ));
        let text = render_stats_json(2, &sample(), None, Some(&want));
        let cache = text.split("\"cache\": {").nth(1).expect("a cache object");
        let keys: Vec<&str> = cache
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "read-hits",
                "read-misses",
                "evictions",
                "room-flushes",
                "throttled-writes",
                "protected-pages",
                "reclaimed-pages",
                "read-bypasses",
                "hit-ratio"
            ]
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(json["cache"]["reclaimed-pages"], 7);
        assert_eq!(json["cache"]["hit-ratio"], 1.0);
        let no_reads = CacheStats {
            read_hits: 0,
            ..want
        };
        let json: serde_json::Value =
            serde_json::from_str(&render_stats_json(2, &sample(), None, Some(&no_reads)))
                .unwrap_or_default();
        assert!(json["cache"]["hit-ratio"].is_null());
        assert!(!render_stats_text(&sample(), None, Some(&no_reads), false).contains("hit-ratio"));
    }

    #[test]
    fn help_names_every_cache_key() {
        let help = json_help();
        for (name, _) in CacheStats::default().counters() {
            assert!(help.contains(name), "{name}");
        }
        assert!(help.contains("hit-ratio"));
    }

    #[test]
    fn text_human() {
        let want = "\
reads: 1
writes: 2
read-bytes: 4K
write-bytes: 1.5G
discards: 5
discard-bytes: 512B
write-zeroes: 7
write-zeroes-bytes: 1M
flushes: 9
pages: 10
zero-pages: 11
alloc-failures: 12
limit-failures: 13
io-errors: 14
dirty-pages: 15
written-back-bytes: 16M
backing-flushes: 17
backing-errors: 18
flush-generation: 19
backing-reads: 20
atomic-flushes: 21
";
        assert_eq!(render_stats_text(&sample(), None, None, false), want);
    }

    #[test]
    fn text_bytes() {
        let text = render_stats_text(&sample(), None, None, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21);
        assert_eq!(lines[15], "written-back-bytes: 16777216");
        assert_eq!(lines[2], "read-bytes: 4096");
        assert_eq!(lines[3], "write-bytes: 1610612736");
        assert_eq!(lines[5], "discard-bytes: 512");
        assert_eq!(lines[7], "write-zeroes-bytes: 1048576");
        assert_eq!(lines[9], "pages: 10");
    }

    #[test]
    fn json_has_the_abi_names_in_kebab_case_in_order() {
        let text = render_stats_json(2, &sample(), None, None);
        let keys: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split('"').next().map(str::to_string))
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "id",
                "reads",
                "writes",
                "read-bytes",
                "write-bytes",
                "discards",
                "discard-bytes",
                "write-zeroes",
                "write-zeroes-bytes",
                "flushes",
                "pages",
                "zero-pages",
                "alloc-failures",
                "limit-failures",
                "io-errors",
                "dirty-pages",
                "written-back-bytes",
                "backing-flushes",
                "backing-errors",
                "flush-generation",
                "backing-reads",
                "atomic-flushes",
                "compression",
                "cache"
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"alloc-failures":12,"atomic-flushes":21,"backing-errors":18,"backing-flushes":17,"backing-reads":20,"cache":null,"compression":null,"dirty-pages":15,"discard-bytes":512,"discards":5,"flush-generation":19,"flushes":9,"id":2,"io-errors":14,"limit-failures":13,"name":"/dev/rxd2","pages":10,"read-bytes":4096,"reads":1,"write-bytes":1610612736,"write-zeroes":7,"write-zeroes-bytes":1048576,"writes":2,"written-back-bytes":16777216,"zero-pages":11}"#
        );
    }
}
