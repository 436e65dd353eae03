//! `rxdskctl list`: output columns and the table, raw and JSON renderings.

use crate::cli::Mode;
use crate::device::device_path;
use crate::size::format_size;
use crate::stats::CacheStats;
use comfy_table::{presets, CellAlignment, Table};
use rxdsk_ioctl::{
    RxdskComprStats, RxdskInfo, RXDSK_COMPRESS_NAMES, RXDSK_FLAG_BACKED, RXDSK_FLAG_READ_ONLY,
    RXDSK_PAGE_SIZE,
};
use serde::ser::{Serialize, SerializeMap, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Id,
    Size,
    Used,
    BlockSize,
    MemLimit,
    Ro,
    Open,
    Backed,
    Dirty,
    Backing,
    Mode,
    Journal,
    Unloaded,
    Algorithm,
    Data,
    Compr,
    Total,
    Ratio,
    Export,
    Cached,
    HitRatio,
}

/// One device of the list: its INFO, for a compressed device its COMPR_STATS, the node of its
/// backing device ([`backing_node`]), the NQN it is exported as over NVMe-oF, and its cache
/// counters while its memory limit is a cache size.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub info: RxdskInfo,
    pub compr: Option<RxdskComprStats>,
    pub backing: Option<String>,
    pub export: Option<String>,
    pub cache: Option<CacheStats>,
}

impl From<RxdskInfo> for Row {
    fn from(info: RxdskInfo) -> Self {
        Row {
            info,
            ..Row::default()
        }
    }
}

/// DATA / TOTAL, as zramctl's ratio: what the stored data would take over what it takes.
fn ratio(c: &RxdskComprStats) -> Option<f64> {
    (c.mem_used_total != 0).then(|| c.orig_data_size as f64 / c.mem_used_total as f64)
}

impl Column {
    /// Every column, in the order `--output-all` and the JSON keys use (new ones last, so
    /// `--raw --output-all` fields keep their places).
    pub const ALL: [Column; 22] = [
        Column::Name,
        Column::Id,
        Column::Size,
        Column::Used,
        Column::BlockSize,
        Column::MemLimit,
        Column::Ro,
        Column::Open,
        Column::Backed,
        Column::Dirty,
        Column::Backing,
        Column::Mode,
        Column::Journal,
        Column::Unloaded,
        Column::Algorithm,
        Column::Data,
        Column::Compr,
        Column::Total,
        Column::Ratio,
        Column::Export,
        Column::Cached,
        Column::HitRatio,
    ];
    pub const DEFAULT: [Column; 6] = [
        Column::Name,
        Column::Size,
        Column::Used,
        Column::BlockSize,
        Column::MemLimit,
        Column::Ro,
    ];

    pub fn header(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Id => "ID",
            Column::Size => "SIZE",
            Column::Used => "USED",
            Column::BlockSize => "BLOCK-SIZE",
            Column::MemLimit => "MEM-LIMIT",
            Column::Ro => "RO",
            Column::Open => "OPEN",
            Column::Backed => "BACKED",
            Column::Dirty => "DIRTY",
            Column::Backing => "BACKING",
            Column::Mode => "MODE",
            Column::Journal => "JOURNAL",
            Column::Unloaded => "UNLOADED",
            Column::Algorithm => "ALGORITHM",
            Column::Data => "DATA",
            Column::Compr => "COMPR",
            Column::Total => "TOTAL",
            Column::Ratio => "RATIO",
            Column::Export => "EXPORT",
            Column::Cached => "CACHED",
            Column::HitRatio => "HIT-RATIO",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Column::Name => "device node",
            Column::Id => "device id",
            Column::Size => "device size",
            Column::Used => "memory the device holds",
            Column::BlockSize => "logical block size in bytes",
            Column::MemLimit => "memory limit (- for none)",
            Column::Ro => "read-only device",
            Column::Open => "how many times the device is open",
            Column::Backed => "a backing device is attached",
            Column::Dirty => "data changed since the last flush to the backing device",
            Column::Backing => "the backing device (- for none)",
            Column::Mode => "writeback, writethrough or writearound (- without a backing device)",
            Column::Journal => "journal size on the backing device (- for none)",
            Column::Unloaded => "data of a restored device not yet read from its backing device",
            Column::Algorithm => "compression algorithm (- for none)",
            Column::Data => "uncompressed data stored (compressed devices)",
            Column::Compr => "compressed size of the data (compressed devices)",
            Column::Total => "memory used, allocator overhead included (compressed devices)",
            Column::Ratio => "DATA / TOTAL (compressed devices)",
            Column::Export => "the NVMe-oF subsystem NQN it is served as (- for none)",
            Column::Cached => "memory held while the limit is a cache size (- otherwise)",
            Column::HitRatio => "read hits / reads (- if not caching, or before any read)",
        }
    }

    /// The JSON key: the header in lower case.
    fn key(self) -> &'static str {
        match self {
            Column::Name => "name",
            Column::Id => "id",
            Column::Size => "size",
            Column::Used => "used",
            Column::BlockSize => "block-size",
            Column::MemLimit => "mem-limit",
            Column::Ro => "ro",
            Column::Open => "open",
            Column::Backed => "backed",
            Column::Dirty => "dirty",
            Column::Backing => "backing",
            Column::Mode => "mode",
            Column::Journal => "journal",
            Column::Unloaded => "unloaded",
            Column::Algorithm => "algorithm",
            Column::Data => "data",
            Column::Compr => "compr",
            Column::Total => "total",
            Column::Ratio => "ratio",
            Column::Export => "export",
            Column::Cached => "cached",
            Column::HitRatio => "hit-ratio",
        }
    }

    /// Whether the column holds text (left-aligned in the table), not a number.
    fn is_text(self) -> bool {
        matches!(
            self,
            Column::Name | Column::Backing | Column::Mode | Column::Algorithm | Column::Export
        )
    }

    fn from_name(name: &str) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|c| c.header().eq_ignore_ascii_case(name))
    }
}

/// The columns `-o` selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns(pub Vec<Column>);

/// Parses `-o`: comma-separated column names in any case; a leading `+` appends them to the
/// default columns.
pub fn parse_columns(s: &str) -> Result<Columns, String> {
    let (mut columns, list) = match s.strip_prefix('+') {
        Some(rest) => (Column::DEFAULT.to_vec(), rest),
        None => (Vec::new(), s),
    };
    for name in list.split(',') {
        if name.is_empty() {
            return Err("empty column name".into());
        }
        let column = Column::from_name(name).ok_or_else(|| format!("unknown column: {name}"))?;
        if columns.contains(&column) {
            return Err(format!("column given twice: {}", column.header()));
        }
        columns.push(column);
    }
    Ok(Columns(columns))
}

/// The `--help` text listing the columns.
pub fn columns_help() -> String {
    let mut text = String::from("Available output columns:\n");
    for c in Column::ALL {
        text.push_str(&format!("  {:>10}  {}\n", c.header(), c.description()));
    }
    let defaults: Vec<&str> = Column::DEFAULT.iter().map(|c| c.header()).collect();
    text.push_str(&format!("Default: {}", defaults.join(",")));
    text
}

/// The `-J` long help: the keys of the document.
pub fn json_help() -> String {
    let keys: Vec<&str> = Column::ALL.iter().map(|c| c.key()).collect();
    format!(
        "Use JSON output format: an object with rxdsk, an array of one object per device whose \
         keys are the columns asked for (-o; all of them without it) in lower case: {}. Sizes \
         are numbers in bytes (whatever -b says), ro and backed are booleans, ratio and \
         hit-ratio are numbers; a column that does not apply to a device is null (cached and \
         hit-ratio unless its memory limit is a cache size, hit-ratio also before any read). \
         The keys are a stable interface.",
        keys.join(", ")
    )
}

/// How list output looks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// Sizes in bytes instead of human-readable.
    pub bytes: bool,
    /// No header line.
    pub no_headings: bool,
}

fn is_read_only(info: &RxdskInfo) -> bool {
    info.flags & RXDSK_FLAG_READ_ONLY != 0
}

/// One cell of the table or of raw output.
pub fn cell(row: &Row, column: Column, style: Style) -> String {
    let info = &row.info;
    let compr = row.compr.as_ref();
    let cache = row.cache.as_ref();
    let size = |bytes: u64| {
        if style.bytes {
            bytes.to_string()
        } else {
            format_size(bytes)
        }
    };
    match column {
        Column::Name => device_path(info.id),
        Column::Id => info.id.to_string(),
        Column::Size => size(info.size_bytes),
        Column::Used => size(info.used_bytes),
        Column::BlockSize => info.logical_block_size.to_string(),
        Column::MemLimit if info.mem_limit_bytes == 0 => "-".into(),
        Column::MemLimit => size(info.mem_limit_bytes),
        Column::Ro => u8::from(is_read_only(info)).to_string(),
        Column::Open => info.open_count.to_string(),
        Column::Backed => u8::from(info.flags & RXDSK_FLAG_BACKED != 0).to_string(),
        Column::Dirty => size(info.dirty_pages * RXDSK_PAGE_SIZE),
        Column::Backing => row.backing.clone().unwrap_or_else(|| "-".into()),
        Column::Mode => mode_of(info).unwrap_or("-").into(),
        Column::Journal if info.journal_bytes == 0 => "-".into(),
        Column::Journal => size(info.journal_bytes),
        Column::Unloaded => size(info.unloaded_pages * RXDSK_PAGE_SIZE),
        Column::Algorithm => compr.map_or("-", algorithm_name).into(),
        Column::Data => compr.map_or("-".into(), |c| size(c.orig_data_size)),
        Column::Compr => compr.map_or("-".into(), |c| size(c.compr_data_size)),
        Column::Total => compr.map_or("-".into(), |c| size(c.mem_used_total)),
        Column::Ratio => compr
            .and_then(ratio)
            .map_or("-".into(), |r| format!("{r:.2}")),
        Column::Export => row.export.clone().unwrap_or_else(|| "-".into()),
        Column::Cached => cache.map_or("-".into(), |_| size(info.used_bytes)),
        Column::HitRatio => cache
            .and_then(CacheStats::hit_ratio)
            .map_or("-".into(), |r| format!("{r:.3}")),
    }
}

fn algorithm_name(c: &RxdskComprStats) -> &'static str {
    RXDSK_COMPRESS_NAMES
        .get(c.algorithm as usize)
        .copied()
        .unwrap_or("?")
}

/// A writearound device has the writethrough flag too: [`Mode::of_flags`] looks at
/// writearound first.
fn mode_of(info: &RxdskInfo) -> Option<&'static str> {
    (info.flags & RXDSK_FLAG_BACKED != 0).then(|| Mode::of_flags(info.flags).name())
}

/// The backing device's node, from its device number: `dev/block/MAJ:MIN` under the sysfs
/// root `sysfs` links to the disk's sysfs directory, whose name is the node's. `MAJ:MIN` if
/// sysfs does not say.
pub fn backing_node(sysfs: &std::path::Path, info: &RxdskInfo) -> Option<String> {
    if info.flags & RXDSK_FLAG_BACKED == 0 {
        return None;
    }
    let devt = format!("{}:{}", info.backing_major, info.backing_minor);
    let name = std::fs::read_link(sysfs.join("dev/block").join(&devt))
        .ok()
        .and_then(|target| Some(target.file_name()?.to_string_lossy().into_owned()));
    Some(name.map_or(devt, |n| format!("/dev/{n}")))
}

/// An aligned table without borders: one space between columns, text left, numbers right
/// (as util-linux's tables).
pub fn render_table(infos: &[Row], columns: &[Column], style: Style) -> String {
    if style.no_headings && infos.is_empty() {
        return String::new();
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    // Deterministic plain text: never look at the terminal (we style nothing anyway).
    table.force_no_tty();
    if !style.no_headings {
        table.set_header(columns.iter().map(|c| c.header()));
    }
    for info in infos {
        table.add_row(columns.iter().map(|&c| cell(info, c, style)));
    }
    for (i, &c) in columns.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, 1));
            if !c.is_text() {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    let mut text = String::new();
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `--raw`: one line per device, values separated by a single space.
pub fn render_raw(infos: &[Row], columns: &[Column], style: Style) -> String {
    let mut lines: Vec<String> = Vec::new();
    if !style.no_headings {
        lines.push(
            columns
                .iter()
                .map(|c| c.header())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    for info in infos {
        lines.push(
            columns
                .iter()
                .map(|&c| cell(info, c, style))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// One device as a JSON object with the selected keys in column order.
struct JsonDevice<'a> {
    row: &'a Row,
    columns: &'a [Column],
}

impl Serialize for JsonDevice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let info = &self.row.info;
        let compr = self.row.compr.as_ref();
        let cache = self.row.cache.as_ref();
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for &c in self.columns {
            let key = c.key();
            match c {
                Column::Name => map.serialize_entry(key, &device_path(info.id))?,
                Column::Id => map.serialize_entry(key, &info.id)?,
                Column::Size => map.serialize_entry(key, &info.size_bytes)?,
                Column::Used => map.serialize_entry(key, &info.used_bytes)?,
                Column::BlockSize => map.serialize_entry(key, &info.logical_block_size)?,
                Column::MemLimit => {
                    let limit = Some(info.mem_limit_bytes).filter(|&l| l != 0);
                    map.serialize_entry(key, &limit)?
                }
                Column::Ro => map.serialize_entry(key, &is_read_only(info))?,
                Column::Open => map.serialize_entry(key, &info.open_count)?,
                Column::Backed => {
                    map.serialize_entry(key, &(info.flags & RXDSK_FLAG_BACKED != 0))?
                }
                Column::Dirty => map.serialize_entry(key, &(info.dirty_pages * RXDSK_PAGE_SIZE))?,
                Column::Backing => map.serialize_entry(key, &self.row.backing)?,
                Column::Mode => map.serialize_entry(key, &mode_of(info))?,
                Column::Journal => {
                    let journal = Some(info.journal_bytes).filter(|&j| j != 0);
                    map.serialize_entry(key, &journal)?
                }
                Column::Unloaded => {
                    map.serialize_entry(key, &(info.unloaded_pages * RXDSK_PAGE_SIZE))?
                }
                Column::Algorithm => map.serialize_entry(key, &compr.map(algorithm_name))?,
                Column::Data => map.serialize_entry(key, &compr.map(|c| c.orig_data_size))?,
                Column::Compr => map.serialize_entry(key, &compr.map(|c| c.compr_data_size))?,
                Column::Total => map.serialize_entry(key, &compr.map(|c| c.mem_used_total))?,
                Column::Ratio => map.serialize_entry(key, &compr.and_then(ratio))?,
                Column::Export => map.serialize_entry(key, &self.row.export)?,
                // While caching, the device's memory is its cache.
                Column::Cached => map.serialize_entry(key, &cache.map(|_| info.used_bytes))?,
                Column::HitRatio => {
                    map.serialize_entry(key, &cache.and_then(CacheStats::hit_ratio))?
                }
            }
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct JsonList<'a> {
    rxdsk: Vec<JsonDevice<'a>>,
}

/// `-J`: `{"rxdsk": [...]}`, numbers in bytes whatever `-b` says.
pub fn render_json(infos: &[Row], columns: &[Column]) -> String {
    let list = JsonList {
        rxdsk: infos
            .iter()
            .map(|row| JsonDevice { row, columns })
            .collect(),
    };
    // Serializing plain integers, strings and booleans cannot fail.
    let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxdsk_ioctl::{RXDSK_FLAG_WRITEAROUND, RXDSK_FLAG_WRITETHROUGH};

    fn info(id: u32, size: u64, used: u64, bs: u32, limit: u64, ro: bool, open: u32) -> RxdskInfo {
        RxdskInfo {
            id,
            logical_block_size: bs,
            size_bytes: size,
            mem_limit_bytes: limit,
            flags: if ro { RXDSK_FLAG_READ_ONLY } else { 0 },
            used_bytes: used,
            open_count: open,
            ..Default::default()
        }
    }

    fn sample() -> Vec<Row> {
        vec![
            info(0, 1 << 30, 4096, 4096, 0, false, 0).into(),
            info(3, 3 << 29, 0, 512, 512 << 20, true, 2).into(),
            info(12, 64 << 20, 10 << 20, 4096, 1 << 30, false, 1).into(),
        ]
    }

    const HUMAN: Style = Style {
        bytes: false,
        no_headings: false,
    };

    #[test]
    fn columns_parse_case_insensitively_in_order() {
        assert_eq!(
            parse_columns("name,Block-Size,OPEN"),
            Ok(Columns(vec![Column::Name, Column::BlockSize, Column::Open]))
        );
        assert_eq!(
            parse_columns("+id,open"),
            Ok(Columns(vec![
                Column::Name,
                Column::Size,
                Column::Used,
                Column::BlockSize,
                Column::MemLimit,
                Column::Ro,
                Column::Id,
                Column::Open,
            ]))
        );
    }

    #[test]
    fn columns_reject_unknown_empty_and_repeated() {
        assert_eq!(parse_columns("NAME,FOO"), Err("unknown column: FOO".into()));
        assert_eq!(parse_columns(""), Err("empty column name".into()));
        assert_eq!(parse_columns("NAME,,SIZE"), Err("empty column name".into()));
        assert_eq!(parse_columns("NAME,"), Err("empty column name".into()));
        assert_eq!(
            parse_columns("size,SIZE"),
            Err("column given twice: SIZE".into())
        );
        assert_eq!(
            parse_columns("+NAME"),
            Err("column given twice: NAME".into())
        );
    }

    #[test]
    fn cells_human_and_bytes() {
        let d = &sample()[1];
        let bytes = Style {
            bytes: true,
            no_headings: false,
        };
        let human: Vec<String> = Column::ALL.iter().map(|&c| cell(d, c, HUMAN)).collect();
        assert_eq!(
            human,
            [
                "/dev/rxd3",
                "3",
                "1.5G",
                "0B",
                "512",
                "512M",
                "1",
                "2",
                "0",
                "0B",
                "-",
                "-",
                "-",
                "0B",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-"
            ]
        );
        let raw: Vec<String> = Column::ALL.iter().map(|&c| cell(d, c, bytes)).collect();
        assert_eq!(
            raw,
            [
                "/dev/rxd3",
                "3",
                "1610612736",
                "0",
                "512",
                "536870912",
                "1",
                "2",
                "0",
                "0",
                "-",
                "-",
                "-",
                "0",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-"
            ]
        );
        assert_eq!(cell(&sample()[0], Column::MemLimit, bytes), "-");
        assert_eq!(cell(&sample()[0], Column::Ro, bytes), "0");
        let backed: Row = RxdskInfo {
            flags: RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH,
            journal_bytes: 16 << 20,
            unloaded_pages: 256,
            ..sample()[0].info
        }
        .into();
        assert_eq!(cell(&backed, Column::Mode, HUMAN), "writethrough");
        assert_eq!(cell(&backed, Column::Journal, HUMAN), "16M");
        assert_eq!(cell(&backed, Column::Unloaded, HUMAN), "1M");
        assert_eq!(cell(&backed, Column::Ratio, HUMAN), "-");
        let compressed = Row {
            compr: Some(RxdskComprStats {
                algorithm: rxdsk_ioctl::RXDSK_COMPRESS_ZSTD,
                orig_data_size: 8 << 20,
                compr_data_size: 2 << 20,
                mem_used_total: 3 << 20,
                ..Default::default()
            }),
            ..sample().swap_remove(0)
        };
        assert_eq!(cell(&compressed, Column::Algorithm, HUMAN), "zstd");
        assert_eq!(cell(&compressed, Column::Data, HUMAN), "8M");
        assert_eq!(cell(&compressed, Column::Compr, HUMAN), "2M");
        assert_eq!(cell(&compressed, Column::Total, HUMAN), "3M");
        assert_eq!(cell(&compressed, Column::Ratio, HUMAN), "2.67");
    }

    /// The kernel sets the writethrough flag on a writearound device too (what older clients
    /// show): the writearound flag decides. Without the backed flag there is no mode at all.
    #[test]
    fn mode_column_names_each_mode() {
        let cases = [
            (RXDSK_FLAG_BACKED, "writeback"),
            (RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH, "writethrough"),
            (
                RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH | RXDSK_FLAG_WRITEAROUND,
                "writearound",
            ),
            (RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITEAROUND, "writearound"),
            (0, "-"),
        ];
        let style = Style {
            bytes: true,
            no_headings: true,
        };
        for (flags, want) in cases {
            let mut row = sample().swap_remove(0);
            row.info.flags = flags;
            assert_eq!(cell(&row, Column::Mode, HUMAN), want, "{flags:#x}");
            assert_eq!(
                render_raw(&[row.clone()], &[Column::Mode], style),
                format!("{want}\n")
            );
            let json: serde_json::Value =
                serde_json::from_str(&render_json(&[row], &[Column::Mode])).unwrap_or_default();
            let mode = &json["rxdsk"][0]["mode"];
            if flags == 0 {
                assert!(mode.is_null(), "{json}");
            } else {
                assert_eq!(mode, want, "{flags:#x}");
            }
        }
        assert!(columns_help().contains("writeback, writethrough or writearound"));
    }

    #[test]
    fn table_default_columns() {
        let want = "\
NAME       SIZE USED BLOCK-SIZE MEM-LIMIT RO
/dev/rxd0    1G   4K       4096         -  0
/dev/rxd3  1.5G   0B        512      512M  1
/dev/rxd12  64M  10M       4096        1G  0
";
        assert_eq!(render_table(&sample(), &Column::DEFAULT, HUMAN), want);
    }

    /// As util-linux's tables: text left-aligned, numbers right-aligned.
    #[test]
    fn table_text_columns_left_numbers_right() {
        let mut rows = sample();
        rows[0].info.flags = RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH;
        rows[0].export = Some("nqn.2026-12.io.rxdsk:rxd0".into());
        rows[1].compr = Some(RxdskComprStats {
            algorithm: rxdsk_ioctl::RXDSK_COMPRESS_LZO_RLE,
            ..Default::default()
        });
        rows[1].export = Some("nqn.x".into());
        let cols = [
            Column::Name,
            Column::Mode,
            Column::Algorithm,
            Column::Size,
            Column::Export,
            Column::Ro,
        ];
        let want = "\
NAME       MODE         ALGORITHM SIZE EXPORT                    RO
/dev/rxd0  writethrough -           1G nqn.2026-12.io.rxdsk:rxd0  0
/dev/rxd3  -            lzo-rle   1.5G nqn.x                      1
/dev/rxd12 -            -          64M -                          0
";
        assert_eq!(render_table(&rows, &cols, HUMAN), want);
    }

    #[test]
    fn table_in_bytes_with_chosen_columns_and_no_headings() {
        let style = Style {
            bytes: true,
            no_headings: true,
        };
        let want = concat!(
            " 0 /dev/rxd0  1073741824 0\n",
            " 3 /dev/rxd3  1610612736 2\n",
            "12 /dev/rxd12   67108864 1\n",
        );
        let cols = [Column::Id, Column::Name, Column::Size, Column::Open];
        assert_eq!(render_table(&sample(), &cols, style), want);
    }

    #[test]
    fn table_without_devices() {
        assert_eq!(
            render_table(&[], &Column::DEFAULT, HUMAN),
            "NAME SIZE USED BLOCK-SIZE MEM-LIMIT RO\n"
        );
        let quiet = Style {
            bytes: false,
            no_headings: true,
        };
        assert_eq!(render_table(&[], &Column::DEFAULT, quiet), "");
        assert_eq!(render_raw(&[], &Column::DEFAULT, quiet), "");
    }

    #[test]
    fn raw_output() {
        let want = "\
NAME SIZE USED BLOCK-SIZE MEM-LIMIT RO
/dev/rxd0 1G 4K 4096 - 0
/dev/rxd3 1.5G 0B 512 512M 1
/dev/rxd12 64M 10M 4096 1G 0
";
        assert_eq!(render_raw(&sample(), &Column::DEFAULT, HUMAN), want);
        let bytes = Style {
            bytes: true,
            no_headings: true,
        };
        assert_eq!(
            render_raw(&sample()[..1], &[Column::Size, Column::Used], bytes),
            "1073741824 4096\n"
        );
    }

    #[test]
    fn json_all_columns_in_bytes_with_null_limit() {
        let text = render_json(&sample()[..2], &Column::ALL);
        let compact: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            compact.to_string(),
            r#"{"rxdsk":[{"algorithm":null,"backed":false,"backing":null,"block-size":4096,"cached":null,"compr":null,"data":null,"dirty":0,"export":null,"hit-ratio":null,"id":0,"journal":null,"mem-limit":null,"mode":null,"name":"/dev/rxd0","open":0,"ratio":null,"ro":false,"size":1073741824,"total":null,"unloaded":0,"used":4096},{"algorithm":null,"backed":false,"backing":null,"block-size":512,"cached":null,"compr":null,"data":null,"dirty":0,"export":null,"hit-ratio":null,"id":3,"journal":null,"mem-limit":536870912,"mode":null,"name":"/dev/rxd3","open":2,"ratio":null,"ro":true,"size":1610612736,"total":null,"unloaded":0,"used":0}]}"#
        );
        // Keys come in column order (serde_json's Value sorts them, so check the text).
        let want_first = r#"{
  "rxdsk": [
    {
      "name": "/dev/rxd0",
      "id": 0,
      "size": 1073741824,
      "used": 4096,
      "block-size": 4096,
      "mem-limit": null,
      "ro": false,
      "open": 0,
      "backed": false,
      "dirty": 0,
      "backing": null,
      "mode": null,
      "journal": null,
      "unloaded": 0,
      "algorithm": null,
      "data": null,
      "compr": null,
      "total": null,
      "ratio": null,
      "export": null,
      "cached": null,
      "hit-ratio": null
    },"#;
        assert!(text.starts_with(want_first), "{text}");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn json_selected_columns_only_in_given_order() {
        assert_eq!(
            render_json(&sample()[2..], &[Column::Ro, Column::Name]),
            "{\n  \"rxdsk\": [\n    {\n      \"ro\": false,\n      \"name\": \"/dev/rxd12\"\n    }\n  ]\n}\n"
        );
        assert_eq!(
            render_json(&[], &Column::DEFAULT),
            "{\n  \"rxdsk\": []\n}\n"
        );
    }

    /// A device whose limit is a cache size: CACHED is the memory it holds, HIT-RATIO its
    /// read hits over reads; both absent ("-", null) otherwise, HIT-RATIO before any read too.
    #[test]
    fn cache_columns() {
        let mut rows = sample();
        let cache = CacheStats {
            read_hits: 2,
            read_misses: 1,
            ..Default::default()
        };
        rows[0].cache = Some(cache);
        rows[2].cache = Some(CacheStats::default());
        let cols = [Column::Name, Column::Used, Column::Cached, Column::HitRatio];
        let want = "\
NAME       USED CACHED HIT-RATIO
/dev/rxd0    4K     4K     0.667
/dev/rxd3    0B      -         -
/dev/rxd12  10M    10M         -
";
        assert_eq!(render_table(&rows, &cols, HUMAN), want);
        let bytes = Style {
            bytes: true,
            no_headings: true,
        };
        assert_eq!(
            render_raw(&rows, &cols[2..], bytes),
            "4096 0.667\n- -\n10485760 -\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&rows, &cols)).unwrap_or_default();
        let devices = &json["rxdsk"];
        assert_eq!(devices[0]["cached"], 4096);
        assert_eq!(devices[0]["hit-ratio"], 2.0 / 3.0);
        assert!(devices[1]["cached"].is_null());
        assert!(devices[1]["hit-ratio"].is_null());
        assert_eq!(devices[2]["cached"], 10 << 20);
        assert!(devices[2]["hit-ratio"].is_null());
        // Optional columns: the default set stays as it was.
        assert!(!Column::DEFAULT.contains(&Column::Cached));
        assert_eq!(
            parse_columns("+cached,HIT-RATIO").map(|c| c.0[6..].to_vec()),
            Ok(vec![Column::Cached, Column::HitRatio])
        );
    }

    #[test]
    fn help_lists_every_column() {
        let help = columns_help();
        for c in Column::ALL {
            assert!(help.contains(c.header()), "{}", c.header());
        }
        assert!(help.ends_with("Default: NAME,SIZE,USED,BLOCK-SIZE,MEM-LIMIT,RO"));
    }
}
