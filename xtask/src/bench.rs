//! `cargo xtask bench`: rxdsk against brd, zram (lz4) and null_blk in one boot.
//!
//! Two views: fio in the QEMU guest (what a user sees; emulated under TCG, so ratios there
//! are distorted) and `rxdsk_bench`, our in-kernel load generator, in User-Mode Linux (kernel
//! code at native speed, no system call in the way). Targets are judged on the native table.

use crate::console::Console;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Where a number was measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// In-kernel load generator under UML (or KVM): native instruction speed.
    Native,
    /// fio in a QEMU TCG guest.
    Emulated,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Emulated => "emulated",
        }
    }
}

/// One job shape.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub name: &'static str,
    /// fio `rw=` value.
    pub fio_rw: &'static str,
    pub random: bool,
    /// Percentage of reads (100 read, 0 write).
    pub read_pct: u32,
    pub block_size: u32,
}

pub const JOBS: &[Job] = &[
    Job {
        name: "4k-randread",
        fio_rw: "randread",
        random: true,
        read_pct: 100,
        block_size: 4096,
    },
    Job {
        name: "4k-randwrite",
        fio_rw: "randwrite",
        random: true,
        read_pct: 0,
        block_size: 4096,
    },
    Job {
        name: "4k-randrw70",
        fio_rw: "randrw",
        random: true,
        read_pct: 70,
        block_size: 4096,
    },
    Job {
        name: "1M-seqread",
        fio_rw: "read",
        random: false,
        read_pct: 100,
        block_size: 1 << 20,
    },
    Job {
        name: "1M-seqwrite",
        fio_rw: "write",
        random: false,
        read_pct: 0,
        block_size: 1 << 20,
    },
];

/// A device under test.
pub struct Target {
    pub label: &'static str,
    /// Shell that sets `DEV`; may use `$MODPROBE`, `$RXDSKCTL`, `$SPAN_MB`.
    pub setup: &'static str,
    /// Shell that fails unless `$DEV` belongs to this driver.
    pub check: &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        label: "rxdsk",
        setup: "DEV=$($RXDSKCTL create --size ${SPAN_MB}M --block-size 4096)",
        check: "$RXDSKCTL list -n -o NAME | grep -qx \"$DEV\"",
    },
    Target {
        label: "brd",
        setup: "$MODPROBE brd rd_nr=1 rd_size=$((SPAN_MB * 1024)) max_part=0; DEV=/dev/ram0",
        check: "[ -d /sys/module/brd ] && [ \"$DEV\" = /dev/ram0 ]",
    },
    Target {
        label: "zram",
        setup: "$MODPROBE zram num_devices=1; echo lz4 > /sys/block/zram0/comp_algorithm; \
                echo ${SPAN_MB}M > /sys/block/zram0/disksize; DEV=/dev/zram0",
        check: "[ -d /sys/module/zram ] && [ \"$DEV\" = /dev/zram0 ] && grep -q '\\[lz4\\]' /sys/block/zram0/comp_algorithm",
    },
    Target {
        label: "null_blk",
        setup: "$MODPROBE null_blk nr_devices=1 gb=1 bs=4096 queue_mode=0 irqmode=0; DEV=/dev/nullb0",
        check: "[ -d /sys/module/null_blk ] && [ \"$DEV\" = /dev/nullb0 ]",
    },
    Target {
        label: "null_blk_mem",
        setup: "mkdir -p /sys/kernel/config && { grep -q ' /sys/kernel/config ' /proc/mounts || mount -t configfs none /sys/kernel/config; }; \
                C=/sys/kernel/config/nullb/mb; mkdir $C; echo $SPAN_MB > $C/size; echo 4096 > $C/blocksize; \
                echo 1 > $C/memory_backed; echo 0 > $C/queue_mode; echo 0 > $C/irqmode; echo 1 > $C/power; \
                if [ -b /dev/mb ]; then DEV=/dev/mb; else DEV=/dev/nullb$(cat $C/index); fi",
        check: "[ \"$(cat /sys/kernel/config/nullb/mb/memory_backed)\" = 1 ] && [ -d /sys/block/${DEV#/dev/} ] && [ \"$DEV\" != /dev/nullb0 ]",
    },
];

/// Paths and commands that differ between the QEMU guest and UML (host filesystem).
pub struct Env {
    pub prologue: String,
    pub rxdskctl: String,
    pub modprobe: String,
    pub bench_ko: String,
}

/// Shell shared by both scripts: target setup and checks (fio silently creates a regular file
/// at a missing /dev path, so every job first checks that its target is a block device of the
/// expected driver), and the RAM cost of filling each target.
fn prologue(env: &Env, span_mb: u32) -> String {
    let mut s = format!(
        "set -e\n{}\nSPAN_MB={span_mb}\nRXDSKCTL='{}'\nMODPROBE='{}'\nBENCH_KO='{}'\nNCPU=$(nproc)\n\
         fail() {{ echo \"bench: $*\" >&2; exit 1; }}\n\
         memavail() {{ awk '/MemAvailable/ {{print $2}}' /proc/meminfo; }}\n",
        env.prologue, env.rxdskctl, env.modprobe, env.bench_ko
    );
    for (i, t) in TARGETS.iter().enumerate() {
        s += &format!("{}\nDEV{i}=$DEV\n", t.setup);
        s += &format!(
            "check{i}() {{ DEV=$DEV{i}; [ -b \"$DEV\" ] || fail \"$DEV is not a block device\"; {} || fail \"$DEV is not a {} device\"; }}\n",
            t.check, t.label
        );
    }
    s
}

/// Fills target `i` (so reads touch real data) and reports the memory it took.
fn fill(i: usize, label: &str, fill_cmd: &str) -> String {
    format!(
        "check{i}; sync; echo 3 > /proc/sys/vm/drop_caches; M0=$(memavail); {fill_cmd}; sync; echo 3 > /proc/sys/vm/drop_caches; M1=$(memavail)\n\
         echo \"RXDSK-DATA mem {label} $((M0 - M1)) $SPAN_MB\"\n"
    )
}

/// The native script: `rxdsk_bench` for every job on every target, `repeats` times, the order
/// of targets rotated each round so drift favours none.
pub fn kbench_script(env: &Env, span_mb: u32, repeats: u32, ios_4k: u32) -> String {
    let mut s = prologue(env, span_mb);
    s += "kbench() { # target-index label job args...\n\
          i=$1; label=$2; job=$3; shift 3; check$i\n\
          mm=$(cat /sys/block/${DEV#/dev/}/dev)\n\
          dmesg -c > /dev/null\n\
          insmod $BENCH_KO dev_major=${mm%:*} dev_minor=${mm#*:} span_mib=$SPAN_MB \"$@\" || fail \"rxdsk_bench failed on $DEV\"\n\
          line=$(dmesg | grep 'rxdsk_bench: dev=' | tail -n 1); rmmod rxdsk_bench\n\
          [ -n \"$line\" ] || fail \"no result from rxdsk_bench on $DEV\"\n\
          echo \"RXDSK-DATA kbench $label $job ${line#*rxdsk_bench: }\"\n}\n";
    // Warm-up: the first load of the bench module and its workers costs memory of its own.
    s += "kbench 0 warmup warmup random=0 read_pct=100 block_size=4096 ios=16 threads=$NCPU > /dev/null\n";
    for (i, t) in TARGETS.iter().enumerate() {
        let blocks = span_mb; // 1 MiB writes over the whole span
        s += &fill(i, t.label, &format!("kbench {i} {} fill random=0 read_pct=0 block_size=1048576 ios={blocks} threads=1 > /dev/null", t.label));
    }
    s += "if [ -e /sys/block/zram0/mm_stat ]; then echo \"RXDSK-DATA zram_mm_stat $(cat /sys/block/zram0/mm_stat)\"; fi\n";
    for rep in 0..repeats {
        for job in JOBS {
            let (ios, thread_counts): (u32, &[&str]) = if job.block_size == 4096 {
                (ios_4k, &["1", "$NCPU"])
            } else {
                ((ios_4k / 100).max(64), &["1"])
            };
            for threads in thread_counts {
                for k in 0..TARGETS.len() {
                    let i = (k + rep as usize) % TARGETS.len();
                    s += &format!(
                        "kbench {i} {} {}@t{threads} random={} read_pct={} block_size={} ios={ios} threads={threads}\n",
                        TARGETS[i].label,
                        job.name,
                        u32::from(job.random),
                        job.read_pct,
                        job.block_size,
                    );
                }
            }
        }
    }
    s
}

/// The emulated script: fio, io_uring (libaio if io_uring is missing), direct I/O,
/// numjobs = vCPUs, queue depth 1 and 32, time based, `repeats` rounds with rotation.
pub fn fio_script(env: &Env, span_mb: u32, repeats: u32, runtime_s: u32) -> String {
    let mut s = prologue(env, span_mb);
    s += "ENGINE=io_uring; fio --name=probe --filename=/tmp/probe --size=1M --ioengine=io_uring --direct=0 \
          --rw=read >/dev/null 2>&1 || ENGINE=libaio; rm -f /tmp/probe\n";
    for (i, t) in TARGETS.iter().enumerate() {
        s += &fill(i, t.label, "fio --name=fill --filename=$DEV --rw=write --bs=1M --direct=1 --size=${SPAN_MB}M > /dev/null");
    }
    s += "if [ -e /sys/block/zram0/mm_stat ]; then echo \"RXDSK-DATA zram_mm_stat $(cat /sys/block/zram0/mm_stat)\"; fi\n";
    for rep in 0..repeats {
        for job in JOBS {
            for qd in [1, 32] {
                for k in 0..TARGETS.len() {
                    let i = (k + rep as usize) % TARGETS.len();
                    s += &format!(
                        "check{i}; fio --name={name} --filename=$DEV --rw={rw} --rwmixread={mix} --bs={bs} --direct=1 \
                         --ioengine=$ENGINE --iodepth={qd} --numjobs=$NCPU --group_reporting --time_based \
                         --runtime={runtime_s} --size=${{SPAN_MB}}M --output-format=json --output=/tmp/fio.json > /dev/null\n\
                         echo \"RXDSK-DATA fio {label} {name}@qd{qd} $(tr -d '\\n' < /tmp/fio.json)\"\n",
                        name = job.name,
                        rw = job.fio_rw,
                        mix = job.read_pct,
                        bs = job.block_size,
                        label = TARGETS[i].label,
                    );
                }
            }
        }
    }
    s
}

/// One measurement.
#[derive(Clone, Debug)]
pub struct Sample {
    pub mode: Mode,
    pub target: String,
    /// `4k-randread@qd32` or `4k-randread@t2`.
    pub row: String,
    pub iops: f64,
    pub mbps: f64,
}

fn fio_sample(target: &str, row: &str, json: &str) -> Result<Sample> {
    let value: Value =
        serde_json::from_str(json).with_context(|| format!("fio JSON of {target} {row}"))?;
    let jobs = value
        .get("jobs")
        .and_then(Value::as_array)
        .context("fio JSON without jobs")?;
    let (mut iops, mut bw_kib) = (0.0, 0.0);
    for j in jobs {
        if j.get("error").and_then(Value::as_i64).unwrap_or(0) != 0 {
            bail!("fio reported error {} for {target} {row}", j["error"]);
        }
        for dir in ["read", "write"] {
            iops += j[dir]["iops"].as_f64().unwrap_or(0.0);
            bw_kib += j[dir]["bw"].as_f64().unwrap_or(0.0);
        }
    }
    Ok(Sample {
        mode: Mode::Emulated,
        target: target.into(),
        row: row.into(),
        iops,
        mbps: bw_kib * 1024.0 / 1e6,
    })
}

/// Parses `dev=1:0 op=randread ... iops=123 mibps=4 ...`.
fn kbench_sample(target: &str, row: &str, line: &str) -> Result<Sample> {
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let errors = field("errors").context("rxdsk_bench line without errors=")?;
    if errors != 0.0 {
        bail!("rxdsk_bench saw {errors} I/O errors on {target} {row}: {line}");
    }
    let ns = field("ns").context("no ns=")?;
    let ios = field("ios").context("no ios=")?;
    let bs = field("bs").context("no bs=")?;
    Ok(Sample {
        mode: Mode::Native,
        target: target.into(),
        row: row.into(),
        iops: ios * 1e9 / ns.max(1.0),
        mbps: ios * bs / ns.max(1.0) * 1e3,
    })
}

/// Everything one run produced.
#[derive(Default, Debug)]
pub struct Results {
    pub samples: Vec<Sample>,
    /// Target → KiB of MemAvailable lost to fill `span` MiB.
    pub mem_kib: BTreeMap<String, (f64, f64)>,
    pub zram_mm_stat: Option<Vec<u64>>,
}

pub fn parse(console: &Console, results: &mut Results) -> Result<()> {
    for line in &console.data {
        let mut parts = line.splitn(4, ' ');
        let kind = parts.next().unwrap_or("");
        match kind {
            "fio" | "kbench" => {
                let (Some(target), Some(row), Some(rest)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    bail!("malformed bench line: {line:.120}");
                };
                if row == "fill" || row == "warmup" {
                    continue;
                }
                let sample = if kind == "fio" {
                    fio_sample(target, row, rest)?
                } else {
                    kbench_sample(target, row, rest)?
                };
                results.samples.push(sample);
            }
            "mem" => {
                let (Some(target), Some(kib), Some(span)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    bail!("malformed mem line: {line}");
                };
                results.mem_kib.insert(
                    target.into(),
                    (
                        kib.parse().unwrap_or(f64::NAN),
                        span.parse().unwrap_or(f64::NAN),
                    ),
                );
            }
            "zram_mm_stat" => {
                let rest = line.trim_start_matches("zram_mm_stat").trim();
                results.zram_mm_stat = Some(
                    rest.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One row of the report: medians per target.
#[derive(Debug)]
pub struct Row {
    pub mode: Mode,
    pub job: String,
    /// `qd32` or `t2`.
    pub depth: String,
    pub iops: BTreeMap<String, f64>,
    pub mbps: BTreeMap<String, f64>,
}

impl Row {
    pub fn ratio(&self, other: &str) -> Option<f64> {
        let a = self.iops.get("rxdsk")?;
        let b = self.iops.get(other)?;
        (*b > 0.0).then(|| a / b)
    }
}

pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut keys: Vec<(Mode, String)> = Vec::new();
    for s in samples {
        if !keys.iter().any(|(m, r)| *m == s.mode && *r == s.row) {
            keys.push((s.mode, s.row.clone()));
        }
    }
    keys.into_iter()
        .map(|(mode, row)| {
            let (job, depth) = row.split_once('@').unwrap_or((&row, ""));
            let mut iops = BTreeMap::new();
            let mut mbps = BTreeMap::new();
            for t in TARGETS {
                let of = |f: fn(&Sample) -> f64| {
                    median(
                        samples
                            .iter()
                            .filter(|s| s.mode == mode && s.row == row && s.target == t.label)
                            .map(f)
                            .collect(),
                    )
                };
                let v = of(|s| s.iops);
                if v.is_finite() {
                    iops.insert(t.label.to_string(), v);
                    mbps.insert(t.label.to_string(), of(|s| s.mbps));
                }
            }
            Row {
                mode,
                job: job.into(),
                depth: depth.into(),
                iops,
                mbps,
            }
        })
        .collect()
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}"))
}

/// The terminal (and Markdown) table of one mode.
pub fn table(rows: &[Row], mode: Mode, markdown: bool) -> String {
    let mut head: Vec<String> = vec!["job".into(), "depth".into()];
    head.extend(TARGETS.iter().map(|t| format!("{} IOPS", t.label)));
    head.extend(["rxdsk/brd".into(), "rxdsk/null_blk".into()]);
    let mut lines: Vec<Vec<String>> = vec![head];
    for r in rows.iter().filter(|r| r.mode == mode) {
        let mut l = vec![r.job.clone(), r.depth.clone()];
        for t in TARGETS {
            l.push(
                r.iops
                    .get(t.label)
                    .map_or("-".into(), |v| format!("{v:.0}")),
            );
        }
        l.push(fmt_ratio(r.ratio("brd")));
        l.push(fmt_ratio(r.ratio("null_blk")));
        lines.push(l);
    }
    let mut out = String::new();
    if markdown {
        for (i, l) in lines.iter().enumerate() {
            out += &format!("| {} |\n", l.join(" | "));
            if i == 0 {
                out += &format!("|{}\n", "---|".repeat(l.len()));
            }
        }
    } else {
        let widths: Vec<usize> = (0..lines[0].len())
            .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        for l in &lines {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    if c < 2 {
                        format!("{v:<w$}", w = widths[c])
                    } else {
                        format!("{v:>w$}", w = widths[c])
                    }
                })
                .collect();
            out += &format!("{}\n", cells.join("  ").trim_end());
        }
    }
    out
}

/// `latest.json`: one object per row.
pub fn json_rows(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                o.insert("job".into(), json!(r.job));
                o.insert("iodepth".into(), json!(r.depth));
                o.insert("mode".into(), json!(r.mode.name()));
                for (t, v) in &r.iops {
                    o.insert(format!("{t}_iops"), json!(v.round()));
                }
                for (t, v) in &r.mbps {
                    o.insert(format!("{t}_mbps"), json!((v * 10.0).round() / 10.0));
                }
                o.insert(
                    "rxdsk_vs_brd".into(),
                    json!(r.ratio("brd").map(|x| (x * 1000.0).round() / 1000.0)),
                );
                o.insert(
                    "rxdsk_vs_nullblk".into(),
                    json!(r.ratio("null_blk").map(|x| (x * 1000.0).round() / 1000.0)),
                );
                Value::Object(o)
            })
            .collect(),
    )
}

/// RAM cost lines: MiB of MemAvailable lost per GiB written.
pub fn memory_table(results: &Results) -> String {
    let mut out = String::from("RAM cost (MemAvailable drop per GiB written):\n");
    for (t, (kib, span_mb)) in &results.mem_kib {
        out += &format!(
            "  {t:<14} {:>8.1} MiB/GiB\n",
            kib / 1024.0 / (span_mb / 1024.0)
        );
    }
    if let Some(mm) = &results.zram_mm_stat {
        if mm.len() >= 3 && mm[1] > 0 {
            out += &format!(
                "  zram mm_stat: orig {} MiB, compressed {} MiB, ratio {:.2} (bench data is random: incompressible)\n",
                mm[0] >> 20,
                mm[1] >> 20,
                mm[0] as f64 / mm[1] as f64
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            prologue: String::new(),
            rxdskctl: "rxdskctl".into(),
            modprobe: "modprobe".into(),
            bench_ko: "/b.ko".into(),
        }
    }

    #[test]
    fn every_job_checks_its_target_first() {
        for s in [
            fio_script(&env(), 64, 2, 1),
            kbench_script(&env(), 64, 2, 1000),
        ] {
            let runs: Vec<&str> = s
                .lines()
                .filter(|l| l.contains("--output-format=json") || l.starts_with("kbench "))
                .collect();
            assert!(!runs.is_empty());
            for l in runs {
                assert!(
                    l.starts_with("check") || l.starts_with("kbench "),
                    "unchecked job: {l}"
                );
            }
            assert!(s.contains("kbench() {") || s.contains("fio --name"));
        }
        // kbench() itself checks before it loads the module.
        let k = kbench_script(&env(), 64, 1, 1000);
        let f = k.find("kbench() {").unwrap();
        assert!(k[f..].find("check$i").unwrap() < k[f..].find("insmod").unwrap());
    }

    #[test]
    fn order_of_targets_rotates_between_repeats() {
        let s = fio_script(&env(), 64, 2, 1);
        let firsts: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("4k-randread@qd1"))
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        assert_eq!(firsts.len(), 2 * TARGETS.len());
        assert_ne!(
            firsts[0],
            firsts[TARGETS.len()],
            "round 2 starts with another target"
        );
    }

    #[test]
    fn parses_both_kinds_and_takes_medians() {
        let mut c = Console::default();
        let fio = |iops: f64| {
            format!(
                r#"{{"jobs":[{{"error":0,"read":{{"iops":{iops},"bw":4000}},"write":{{"iops":0,"bw":0}}}}]}}"#
            )
        };
        for (t, v) in [
            ("rxdsk", 1200.0),
            ("rxdsk", 1000.0),
            ("rxdsk", 5000.0),
            ("brd", 1000.0),
            ("null_blk", 2000.0),
        ] {
            c.feed(&format!("RXDSK-DATA fio {t} 4k-randread@qd1 {}", fio(v)));
        }
        c.feed("RXDSK-DATA kbench rxdsk 4k-randread@t1 dev=259:0 op=randread read_pct=100 bs=4096 threads=1 ios=1000 errors=0 ns=1000000 iops=1000000 mibps=3906 ns_per_io=1000");
        c.feed("RXDSK-DATA kbench brd 4k-randread@t1 dev=1:0 op=randread read_pct=100 bs=4096 threads=1 ios=1000 errors=0 ns=2000000 iops=500000 mibps=1953 ns_per_io=2000");
        c.feed("RXDSK-DATA mem rxdsk 262144 256");
        let mut r = Results::default();
        parse(&c, &mut r).unwrap();
        let rows = rows(&r.samples);
        let emu = rows.iter().find(|r| r.mode == Mode::Emulated).unwrap();
        assert_eq!(emu.iops["rxdsk"], 1200.0, "median of 1000, 1200, 5000");
        assert_eq!(emu.ratio("brd"), Some(1.2));
        assert_eq!(emu.ratio("null_blk"), Some(0.6));
        let nat = rows.iter().find(|r| r.mode == Mode::Native).unwrap();
        assert_eq!(nat.ratio("brd"), Some(2.0));
        let j = json_rows(&rows);
        assert_eq!(j[0]["job"], "4k-randread");
        assert_eq!(j[0]["iodepth"], "qd1");
        assert_eq!(j[0]["mode"], "emulated");
        assert_eq!(j[0]["rxdsk_vs_brd"], 1.2);
        assert!(memory_table(&r).contains("1024.0 MiB/GiB"));
        let t = table(&rows, Mode::Native, false);
        assert!(t.contains("2.00"), "{t}");
    }

    #[test]
    fn errors_fail_the_bench() {
        let mut c = Console::default();
        c.feed(r#"RXDSK-DATA fio brd 4k-randread@qd1 {"jobs":[{"error":5,"read":{"iops":1}}]}"#);
        assert!(parse(&c, &mut Results::default()).is_err());
        let mut c = Console::default();
        c.feed("RXDSK-DATA kbench brd 4k-randread@t1 dev=1:0 bs=4096 ios=10 errors=3 ns=10");
        assert!(parse(&c, &mut Results::default()).is_err());
    }
}
