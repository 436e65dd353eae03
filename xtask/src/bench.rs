//! `cargo xtask bench`: rxdsk against brd, zram (lz4) and null_blk in one boot.
//!
//! Two views: fio in the QEMU guest (what a user sees; emulated under TCG, so ratios there
//! are distorted) and `rxdsk_bench`, our in-kernel load generator, in User-Mode Linux (kernel
//! code at native speed, no system call in the way). Targets are judged on the native table.

use crate::chart::{Entry, Panel};
use crate::console::Console;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

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
        // rxdsk with a backing device attached (writeback): the same writes, tracked dirty.
        label: "rxdsk_wb",
        setup: "WB_BACKING=$($RXDSKCTL create --size $((SPAN_MB + 1))M); \
                DEV=$($RXDSKCTL create --size ${SPAN_MB}M --block-size 4096); $RXDSKCTL attach $DEV $WB_BACKING",
        check: "$RXDSKCTL list --raw -n -o NAME,MODE | grep -qx \"$DEV writeback\"",
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

/// The native bench's ceiling beside the targets: the same I/Os as copies between the
/// submitter's buffer and kernel memory as big as the span, with no block layer (rxdsk-kbench's
/// `memcpy=1`). A RAM disk cannot move its bytes faster.
pub const MEMCPY: &str = "memcpy";

/// Every column of IOPS: the targets, then the memcpy ceiling (native only).
pub fn columns() -> impl Iterator<Item = &'static str> {
    TARGETS.iter().map(|t| t.label).chain([MEMCPY])
}

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
        s += &check_fn(i, t.check, &format!("a {} device", t.label));
    }
    s
}

/// Shell function `check<i>`: fails unless `$DEV<i>` is a block device and `test` holds of
/// it (`what` it then is not).
fn check_fn(i: usize, test: &str, what: &str) -> String {
    format!(
        "check{i}() {{ DEV=$DEV{i}; [ -b \"$DEV\" ] || fail \"$DEV is not a block device\"; {test} || fail \"$DEV is not {what}\"; }}\n"
    )
}

/// Fills target `i` (so reads touch real data) and reports the memory it took.
fn fill(i: usize, label: &str, fill_cmd: &str) -> String {
    format!(
        "check{i}; sync; echo 3 > /proc/sys/vm/drop_caches; M0=$(memavail); {fill_cmd}; sync; echo 3 > /proc/sys/vm/drop_caches; M1=$(memavail)\n\
         echo \"RXDSK-DATA mem {label} $((M0 - M1)) $SPAN_MB\"\n"
    )
}

/// I/Os per submitter per burst of the native bench for a job of `block_size`.
fn burst_ios(ios_4k: u32, block_size: u32) -> u32 {
    if block_size == 4096 {
        ios_4k
    } else {
        (ios_4k / 100).max(8)
    }
}

/// The native script: `rxdsk_bench` for every job with every target loaded at once, so that
/// their bursts interleave (see rxdsk-kbench); `repeats` loads per job, `bursts` rounds each.
pub fn kbench_script(env: &Env, span_mb: u32, repeats: u32, bursts: u32, ios_4k: u32) -> String {
    let mut s = prologue(env, span_mb);
    for (i, t) in TARGETS.iter().enumerate() {
        s += &format!("LABEL{i}={}\n", t.label);
    }
    // The memcpy slot, `m` in a target list (after the devices), and the codec slot, `c`
    // (last; `CODEC` and `LABELc` say which library).
    s += &format!("LABELm={MEMCPY}\n");
    s += "kbench() { # 'target-index...' job args...\n\
          idx=$1; job=$2; shift 2; params=''; slot=0\n\
          for i in $idx; do if [ $i = m ]; then params=\"$params memcpy=1\"; continue; fi\n\
          if [ $i = c ]; then params=\"$params codec=$CODEC\"; continue; fi\n\
          check$i; mm=$(cat /sys/block/${DEV#/dev/}/dev)\n\
          params=\"$params dev$slot=$(( (${mm%:*} << 20) | ${mm#*:} ))\"; slot=$((slot + 1)); done\n\
          dmesg -c > /dev/null\n\
          insmod $BENCH_KO $params span_mib=$SPAN_MB \"$@\" || fail \"rxdsk_bench failed on targets $idx\"\n\
          dmesg | grep 'rxdsk_bench: slot=' > /tmp/kbench.out || true; rmmod rxdsk_bench\n\
          slot=0\n\
          for i in $idx; do eval label=\\$LABEL$i\n\
          line=$(grep \"rxdsk_bench: slot=$slot dev=\" /tmp/kbench.out | tail -n 1)\n\
          times=$(grep \"rxdsk_bench: slot=$slot burst_ns=\" /tmp/kbench.out | tail -n 1)\n\
          [ -n \"$line\" ] && [ -n \"$times\" ] || fail \"no result from rxdsk_bench for $label\"\n\
          echo \"RXDSK-DATA kbench $label $job ${line#*rxdsk_bench: } ${times#*rxdsk_bench: slot=$slot }\"\n\
          slot=$((slot + 1)); done\n}\n";
    let all: Vec<String> = (0..TARGETS.len()).map(|i| i.to_string()).collect();
    let all = all.join(" ");
    let all_and_memcpy = format!("{all} m");
    // Warm-up: the first load of the bench module and its workers costs memory of its own.
    s += &format!("kbench '{all}' warmup random=0 read_pct=100 block_size=4096 bursts=1 ios=16 threads=$NCPU > /dev/null\n");
    for (i, t) in TARGETS.iter().enumerate() {
        let blocks = span_mb; // 1 MiB writes over the whole span
        s += &fill(i, t.label, &format!("kbench {i} fill random=0 read_pct=0 block_size=1048576 bursts=1 ios={blocks} threads=1 > /dev/null"));
    }
    s += "if [ -e /sys/block/zram0/mm_stat ]; then echo \"RXDSK-DATA zram_mm_stat $(cat /sys/block/zram0/mm_stat)\"; fi\n";
    for _ in 0..repeats {
        for job in JOBS {
            let thread_counts: &[&str] = if job.block_size == 4096 {
                &["1", "$NCPU"]
            } else {
                &["1"]
            };
            for threads in thread_counts {
                s += &format!(
                    "kbench '{all_and_memcpy}' {}@t{threads} random={} read_pct={} block_size={} bursts={bursts} ios={} threads={threads}\n",
                    job.name,
                    u32::from(job.random),
                    job.read_pct,
                    job.block_size,
                    burst_ios(ios_4k, job.block_size),
                );
            }
        }
    }
    if let Some(w) = TARGETS.iter().position(|t| t.label == "rxdsk_wb") {
        s += &backing_script(w);
    }
    s += &compression_script(repeats, bursts, ios_4k);
    s += &cache_script(repeats, bursts, ios_4k);
    s
}

/// Index of the cache section's first device in the script (`DEV<i>`, `check<i>`, `LABEL<i>`).
const CACHE_INDEX: usize = 20;
/// MiB of each device the cache rows use (a cache device is twice as big).
const CACHE_SPAN_MB: u32 = 64;
/// The miss rows' pair: (cache device, its backing device read raw, what the backing is).
/// The backing device is memory (no delay), so that the miss path's own cost shows: a slow
/// device cannot be emulated in UML, whose timers tick every 10 ms.
pub const CACHE_MISS_PAIRS: [(&str, &str, &str); 1] =
    [("cache-ram", "nullb-ram", "memory-backed null_blk, no delay")];
/// Label of the plain rxdsk device the hit rows compare with (made and filled beside the
/// cache device, so that both hold pages allocated at the same time).
pub const CACHE_PLAIN: &str = "cache-plain";
/// Label of the cache device whose reads all hit; its rows' other target is [`CACHE_PLAIN`].
pub const CACHE_HIT: &str = "cache-hit";

/// After the other jobs: the cache's two paths (`cache-` rows). The hit path: random and
/// sequential reads of a cache device (writeback, a memory limit of three quarters of its
/// size) whose span is all in RAM and clean, beside the same reads of a plain rxdsk device
/// filled at the same time. The miss path: reads of a cache device that holds a sixteenth of
/// its span, beside raw reads of its own backing device (memory: the miss path's own cost shows),
/// which holds the image the cache device wrote and flushed.
fn cache_script(repeats: u32, bursts: u32, ios_4k: u32) -> String {
    let (hit, plain, ram, cram) = (
        CACHE_INDEX,
        CACHE_INDEX + 1,
        CACHE_INDEX + 2,
        CACHE_INDEX + 3,
    );
    let cache_check = |i: usize, backing: &str| {
        check_fn(
            i,
            &format!("$RXDSKCTL list --raw -n -o NAME,MODE,BACKING | grep -qx \"$DEV writeback {backing}\""),
            "a cache device",
        )
    };
    let mut s = format!("CACHE_SPAN={CACHE_SPAN_MB}; SPAN_MB=$CACHE_SPAN\n");
    // The hit device: backed by a blank rxdsk device, its limit three quarters of its size.
    s += &format!(
        "HIT_BACKING=$($RXDSKCTL create --size $((2 * CACHE_SPAN + 1))M)\n\
         DEV{hit}=$($RXDSKCTL create --backing $HIT_BACKING --mem-limit $((3 * CACHE_SPAN / 2))M); LABEL{hit}={CACHE_HIT}\n"
    );
    s += &cache_check(hit, "$HIT_BACKING");
    s += &format!(
        "DEV{plain}=$($RXDSKCTL create --size $((2 * CACHE_SPAN))M --block-size 4096); LABEL{plain}={CACHE_PLAIN}\n"
    );
    s += &check_fn(
        plain,
        "$RXDSKCTL list --raw -n -o NAME,BACKED | grep -qx \"$DEV 0\"",
        "a plain rxdsk device",
    );
    // The miss device's backing: memory-backed null_blk (the main targets' `mb` is too small).
    let (cache_label, raw_label, _) = CACHE_MISS_PAIRS[0];
    s += &format!(
        "C=/sys/kernel/config/nullb/cram; mkdir $C; echo $((2 * CACHE_SPAN + 2)) > $C/size; echo 4096 > $C/blocksize; \
         echo 1 > $C/memory_backed; echo 0 > $C/queue_mode; echo 0 > $C/irqmode; echo 1 > $C/power; \
         if [ -b /dev/cram ]; then DEV{ram}=/dev/cram; else DEV{ram}=/dev/nullb$(cat $C/index); fi; LABEL{ram}={raw_label}\n\
         DEV{cram}=$($RXDSKCTL create --backing $DEV{ram} --mem-limit $((CACHE_SPAN / 16))M); LABEL{cram}={cache_label}\n"
    );
    s += &check_fn(
        ram,
        "[ \"$(cat /sys/kernel/config/nullb/cram/memory_backed)\" = 1 ]",
        "the memory-backed null_blk",
    );
    s += &cache_check(cram, &format!("$DEV{ram}"));
    // Every cached span written, then flushed: clean pages, and the same bytes in the image.
    for i in [plain, hit, cram] {
        s += &format!(
            "kbench {i} fill random=0 read_pct=0 block_size=1048576 bursts=1 ios=$CACHE_SPAN threads=1 > /dev/null\n\
             check{i}; [ {i} = {plain} ] || $RXDSKCTL flush $DEV > /dev/null\n"
        );
    }
    let misses = format!("{ram} {cram}");
    for _ in 0..repeats {
        for (job, random, block_size) in [("4k-randread", 1, 4096), ("1M-seqread", 0, 1 << 20)] {
            let ios = burst_ios(ios_4k, block_size);
            s += &format!(
                "kbench '{plain} {hit}' cache-hit-{job}@t1 random={random} read_pct=100 block_size={block_size} \
                 bursts={bursts} ios={ios} threads=1\n"
            );
            // A miss costs far more than a hit: fewer I/Os per burst.
            s += &format!(
                "kbench '{misses}' cache-miss-{job}@t1 random={random} read_pct=100 block_size={block_size} \
                 bursts={bursts} ios={} threads=1\n",
                (ios / 4).max(8)
            );
        }
    }
    s += &format!(
        "for i in {hit} {cram}; do check$i; eval label=\\$LABEL$i; \
         echo \"RXDSK-DATA cache-hit-ratio $label $($RXDSKCTL list --raw -n -o NAME,HIT-RATIO | sed -n \"s|^$DEV ||p\")\"; done\n"
    );
    s
}

/// The compression algorithms compared with zram: rxdsk's and zram's name.
pub const COMPRESSORS: [&str; 3] = ["lz4", "zstd", "lzo-rle"];
/// MiB of each compressed device the compression jobs use.
const COMPRESS_SPAN_MB: u32 = 64;
/// Index of the first compressed target in the script (`DEV<i>`, `check<i>`, `LABEL<i>`).
const COMPRESS_INDEX: usize = 10;

/// I/Os per submitter per burst of a compressed row of `block_size`: as many bytes as the
/// 4 KiB rows' bursts, at least 4 I/Os.
fn compressed_ios(ios_4k: u32, block_size: u32) -> u64 {
    (u64::from(ios_4k / 2) * 4096 / u64::from(block_size.max(1))).max(4)
}

/// The codec ceiling's rows: (job, random, read_pct, block size), one thread.
const CODEC_JOBS: [(&str, bool, u32, u32); 3] = [
    ("4k-randwrite", true, 0, 4096),
    ("4k-randread", true, 100, 4096),
    ("1m-seqwrite", false, 0, 1 << 20),
];
/// The codec ceiling's rows are named `codec-<job>@t1`.
const CODEC_ROW_PREFIX: &str = "codec-";

/// `rxdsk_bench`'s `codec=` for an algorithm.
fn codec_param(algorithm: &str) -> u32 {
    match algorithm {
        "lz4" => 1,
        "lzo-rle" => 2,
        _ => 3,
    }
}

/// The label of the codec slot: `lib-lz4`, ...
pub fn codec_label(algorithm: &str) -> String {
    format!("lib-{algorithm}")
}

/// rxdsk's compressed devices against their library alone (native): paired ratios of the
/// `codec-` rows.
pub fn codec_table(results: &Results) -> String {
    let mut out = String::new();
    for algorithm in COMPRESSORS {
        let (r, c) = (compressed_label("rxdsk", algorithm), codec_label(algorithm));
        for (name, _, _, _) in CODEC_JOBS {
            let row = format!("{CODEC_ROW_PREFIX}{name}@t1");
            let Some(spread) = paired_ratio_of(&results.samples, Mode::Native, &row, &r, &c) else {
                continue;
            };
            out += &format!(
                "  {algorithm:<9} {name:<14} {:>10.0} {:>10.0} {:>9.2} [IQR {:.2}-{:.2}]\n",
                median_iops(&results.samples, &r, &row),
                median_iops(&results.samples, &c, &row),
                spread.median,
                spread.p25,
                spread.p75,
            );
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "Compressor ceiling (rxdsk over its library compressing or decompressing the same pages in a loop on one CPU, no block layer):\n  {:<9} {:<14} {:>10} {:>10} {:>9}\n{out}",
        "algorithm", "job", "rxdsk IOPS", "lib IOPS", "rxdsk/lib"
    )
}

/// The label of a compressed target: `rxdsk-lz4`, `zram-lz4`, ...
pub fn compressed_label(driver: &str, algorithm: &str) -> String {
    format!("{driver}-{algorithm}")
}

/// After the other jobs: rxdsk and zram with each of [`COMPRESSORS`], six devices loaded in
/// one `rxdsk_bench` so that their bursts interleave. Two kinds of data: fio-style 50%
/// compressible buffers (reads, writes, 70/30; `c50-` rows) and a real corpus (a tar stream of
/// the host's /usr/lib, read back at random; `corpus-` rows). Each fill reports DATA and TOTAL
/// (rxdsk: COMPR_STATS; zram: mm_stat's orig_data_size and mem_used_total).
fn compression_script(repeats: u32, bursts: u32, ios_4k: u32) -> String {
    let mut s = format!(
        "CSPAN={COMPRESS_SPAN_MB}; SPAN_MB=$CSPAN\n\
         echo 1 > /sys/block/zram0/reset\n"
    );
    let mut idx = Vec::new();
    for (k, algorithm) in COMPRESSORS.iter().enumerate() {
        let r = COMPRESS_INDEX + 2 * k;
        let z = r + 1;
        s += &format!(
            "DEV{r}=$($RXDSKCTL create --size ${{CSPAN}}M --compress {algorithm}); LABEL{r}={rl}\n\
             Z=$(cat /sys/class/zram-control/hot_add); echo {algorithm} > /sys/block/zram$Z/comp_algorithm; \
             echo ${{CSPAN}}M > /sys/block/zram$Z/disksize; DEV{z}=/dev/zram$Z; LABEL{z}={zl}\n\
             check{r}() {{ DEV=$DEV{r}; [ -b \"$DEV\" ] || fail \"$DEV is not a block device\"; \
             $RXDSKCTL list --raw -n -o NAME,ALGORITHM | grep -qx \"$DEV {algorithm}\" || fail \"$DEV is not rxdsk with {algorithm}\"; }}\n\
             check{z}() {{ DEV=$DEV{z}; [ -b \"$DEV\" ] || fail \"$DEV is not a block device\"; \
             grep -q '\\[{algorithm}\\]' /sys/block/${{DEV#/dev/}}/comp_algorithm || fail \"$DEV is not zram with {algorithm}\"; }}\n",
            rl = compressed_label("rxdsk", algorithm),
            zl = compressed_label("zram", algorithm),
        );
        idx.push(r.to_string());
        idx.push(z.to_string());
    }
    let all = idx.join(" ");
    // DATA and TOTAL of every compressed target after a fill.
    s += "cratio() { # phase\n\
          for i in ";
    s += &all;
    s += "; do eval label=\\$LABEL$i; eval DEV=\\$DEV$i\n\
          case $DEV in /dev/zram*) set -- $(cat /sys/block/${DEV#/dev/}/mm_stat); d=$1; t=$3;;\n\
          *) set -- $($RXDSKCTL list --raw -n -b -o NAME,DATA,TOTAL | grep \"^$DEV \"); d=$2; t=$3;; esac\n\
          echo \"RXDSK-DATA cratio $label $1 $d $t\"; done\n}\n";
    // `cratio` shifts its argument away: keep the phase.
    let s = s
        .replace("cratio() { # phase\n", "cratio() { # phase\nphase=$1\n")
        .replace(
            "echo \"RXDSK-DATA cratio $label $1 $d $t\"",
            "echo \"RXDSK-DATA cratio $label $phase $d $t\"",
        );
    let mut s = s;
    let fill = |s: &mut String, args: &str| {
        for i in &idx {
            *s += &format!(
                "kbench {i} fill random=0 read_pct=0 block_size=1048576 bursts=1 ios=$CSPAN threads=1 {args} > /dev/null\n"
            );
        }
    };
    fill(&mut s, "compress_pct=50");
    s += "cratio c50\n";
    let jobs: [(&str, u32); 3] = [
        ("4k-randread", 100),
        ("4k-randwrite", 0),
        ("4k-randrw70", 70),
    ];
    for _ in 0..repeats {
        for (name, read_pct) in jobs {
            for threads in ["1", "$NCPU"] {
                s += &format!(
                    "kbench '{all}' c50-{name}@t{threads} random=1 read_pct={read_pct} block_size=4096 \
                     bursts={bursts} ios={} threads={threads} compress_pct=50\n",
                    ios_4k / 2
                );
            }
        }
    }
    // Big bios, whose pages rxdsk compresses on several CPUs at once (zram: one page after
    // another on the submitter's); as many bytes per burst as the 4 KiB rows.
    let big: [(&str, bool, u32, u32); 3] = [
        ("64k-randwrite", true, 0, 64 << 10),
        ("1m-seqwrite", false, 0, 1 << 20),
        ("1m-seqread", false, 100, 1 << 20),
    ];
    for _ in 0..repeats {
        for (name, random, read_pct, block_size) in big {
            let ios = compressed_ios(ios_4k, block_size);
            for threads in ["1", "$NCPU"] {
                s += &format!(
                    "kbench '{all}' c50-{name}@t{threads} random={} read_pct={read_pct} block_size={block_size} \
                     bursts={bursts} ios={ios} threads={threads} compress_pct=50\n",
                    u8::from(random)
                );
            }
        }
    }
    // The compressor's ceiling: each rxdsk device beside its library compressing (writes) and
    // decompressing (reads) the same pages in a loop on the submitter's CPU.
    for (k, algorithm) in COMPRESSORS.iter().enumerate() {
        let r = COMPRESS_INDEX + 2 * k;
        s += &format!(
            "CODEC={}; LABELc={}\n",
            codec_param(algorithm),
            codec_label(algorithm)
        );
        for _ in 0..repeats {
            for (name, random, read_pct, block_size) in CODEC_JOBS {
                let ios = compressed_ios(ios_4k, block_size);
                s += &format!(
                    "kbench '{r} c' {CODEC_ROW_PREFIX}{name}@t1 random={} read_pct={read_pct} block_size={block_size} \
                     bursts={bursts} ios={ios} threads=1 compress_pct=50\n",
                    u8::from(random)
                );
            }
        }
    }
    s += "tar -cf - /usr/lib 2>/dev/null | head -c $((CSPAN * 1048576)) > /tmp/corpus\n";
    for i in &idx {
        s += &format!("check{i}; dd if=/tmp/corpus of=$DEV bs=1M oflag=direct 2> /dev/null\n");
    }
    s += "rm -f /tmp/corpus; cratio corpus\n";
    for _ in 0..repeats {
        for threads in ["1", "$NCPU"] {
            s += &format!(
                "kbench '{all}' corpus-4k-randread@t{threads} random=1 read_pct=100 block_size=4096 \
                 bursts={bursts} ios={} threads={threads}\n",
                ios_4k / 2
            );
        }
    }
    s
}

/// After the jobs, on the target with a backing device (index `w`): the time of a flush of
/// the whole span against a copy of the same bytes onto the same backing device (`dd`, direct
/// I/O), each as the program itself measures it (from its first I/O to its last, without its
/// start-up, which is slow in UML); 4 KiB random writes with no flush running and while
/// flushes run back to back (what the cut costs writers); then 4 KiB random reads of a lazily
/// restored device, each (nearly) a read miss.
fn backing_script(w: usize) -> String {
    format!(
        "check{w}; $RXDSKCTL flush $DEV > /dev/null\n\
         kbench {w} backing-refill random=0 read_pct=0 block_size=1048576 bursts=1 ios=$SPAN_MB threads=1 > /dev/null\n\
         check{w}; $RXDSKCTL flush -J $DEV > /tmp/flush.json\n\
         F=$(sed -n 's/.*\"seconds\": *\\([0-9.e-]*\\).*/\\1/p' /tmp/flush.json)\n\
         FB=$(sed -n 's/.*\"bytes\": *\\([0-9]*\\).*/\\1/p' /tmp/flush.json)\n\
         kbench {w} backing-write-quiet random=1 read_pct=0 block_size=4096 bursts=1 ios=100000 threads=1\n\
         rm -f /tmp/stop-flushing; ( while [ ! -e /tmp/stop-flushing ]; do $RXDSKCTL flush $DEV > /dev/null; done ) & FLUSHING=$!\n\
         kbench {w} backing-write-flushing random=1 read_pct=0 block_size=4096 bursts=1 ios=100000 threads=1\n\
         touch /tmp/stop-flushing; wait $FLUSHING\n\
         $RXDSKCTL detach $DEV\n\
         C=$(dd if=$DEV of=$WB_BACKING bs=1M count=$SPAN_MB iflag=direct oflag=direct 2>&1 | sed -n 's/.*copied, \\([0-9.e-]*\\) s.*/\\1/p')\n\
         echo \"RXDSK-DATA backing flush_s=$F flush_bytes=$FB copy_s=$C bytes=$((SPAN_MB * 1048576))\"\n\
         $RXDSKCTL destroy $DEV; DEV{w}=$($RXDSKCTL create --backing $WB_BACKING)\n\
         kbench {w} backing-miss random=1 read_pct=100 block_size=4096 bursts=1 ios=256 threads=1\n"
    )
}

/// How long and how often `cargo xtask bench` measures.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Loads of the bench module (native) and rounds of fio jobs (emulated) per job.
    pub repeats: u32,
    /// Interleaved bursts per load of the bench module.
    pub bursts: u32,
    /// 4 KiB I/Os per submitter and target in one burst (a hundredth of that for 1 MiB jobs).
    pub ios_4k: u32,
    /// Duration of one time-based fio job. Under TCG each fio start costs about a second on
    /// top, which is what bounds `--quick`.
    pub runtime_ms: u32,
    /// MiB of each device that the jobs touch and the RAM cost is measured over.
    pub span_mb: u32,
    /// Passed to the criterion host benchmarks.
    pub criterion_args: &'static [&'static str],
    /// The tiering guest's sizes and Zipf run lengths.
    pub tiering: TieringPlan,
}

impl Plan {
    /// `--quick`: one short round, under three minutes once the builds are cached.
    pub const QUICK: Plan = Plan {
        repeats: 1,
        bursts: 9,
        ios_4k: 2_000,
        runtime_ms: 500,
        span_mb: 128,
        criterion_args: &["--warm-up-time", "0.3", "--measurement-time", "0.5"],
        tiering: TieringPlan {
            region_mb: 256,
            cache_mb: 32,
            warm_ios: 4_000,
            ios: 2_000,
        },
    };
    /// The default, thorough run.
    pub const THOROUGH: Plan = Plan {
        repeats: 3,
        bursts: 15,
        ios_4k: 12_000,
        runtime_ms: 3_000,
        span_mb: 256,
        criterion_args: &[],
        tiering: TieringPlan {
            region_mb: 256,
            cache_mb: 32,
            warm_ios: 16_000,
            ios: 8_000,
        },
    };
}

/// The emulated script: fio, io_uring (libaio if io_uring is missing), direct I/O,
/// numjobs = vCPUs, queue depth 1 and 32, time based, `repeats` rounds with rotation.
pub fn fio_script(env: &Env, span_mb: u32, repeats: u32, runtime_ms: u32) -> String {
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
                         --runtime={runtime_ms}ms --size=${{SPAN_MB}}M --output-format=json --output=/tmp/fio.json > /dev/null\n\
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
    /// Time per unit of work of each paired measurement, in the order measured: one per burst
    /// for the native bench (ns per burst, every target doing the same I/Os), one per run
    /// for fio (1/IOPS). The k-th cost of two targets in the same round ran side by side.
    pub costs: Vec<f64>,
    /// Which load of the row this is (0, 1, ...), set by `parse`.
    pub round: usize,
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
        costs: vec![1.0 / iops.max(f64::MIN_POSITIVE)],
        round: 0,
    })
}

/// Parses `slot=0 dev=1:0 op=randread ... ios=123 errors=0 ns=456 ... burst_ns=1,2,3`.
fn kbench_sample(target: &str, row: &str, line: &str) -> Result<Sample> {
    let raw = |name: &str| -> Option<&str> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let field = |name: &str| -> Option<f64> { raw(name)?.parse().ok() };
    let errors = field("errors").context("rxdsk_bench line without errors=")?;
    if errors != 0.0 {
        bail!("rxdsk_bench saw {errors} I/O errors on {target} {row}: {line}");
    }
    let ios = field("ios").context("no ios=")?;
    let bs = field("bs").context("no bs=")?;
    let costs: Vec<f64> = raw("burst_ns")
        .context("no burst_ns=")?
        .split(',')
        .map(|t| t.parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad burst_ns in {line:.160}"))?;
    let bursts = field("bursts").unwrap_or(costs.len() as f64);
    if costs.is_empty() || costs.len() as f64 != bursts {
        bail!(
            "rxdsk_bench reported {} burst times for {bursts} bursts: {line:.160}",
            costs.len()
        );
    }
    // IOPS from the median burst: a burst hit by a hiccup of the host does not move it.
    let per_burst = ios / bursts;
    let burst_ns = median(costs.clone()).max(1.0);
    Ok(Sample {
        mode: Mode::Native,
        target: target.into(),
        row: row.into(),
        iops: per_burst * 1e9 / burst_ns,
        mbps: per_burst * bs / burst_ns * 1e3,
        costs,
        round: 0,
    })
}

/// Everything one run produced.
#[derive(Default, Debug)]
pub struct Results {
    pub samples: Vec<Sample>,
    /// Target → KiB of MemAvailable lost to fill `span` MiB.
    pub mem_kib: BTreeMap<String, (f64, f64)>,
    pub zram_mm_stat: Option<Vec<u64>>,
    /// The backing-device measurements: `flush_s`, `flush_bytes`, `copy_s`, `bytes`,
    /// `miss_iops`.
    pub backing: BTreeMap<String, f64>,
    /// `(label, phase)` of a compressed target → (DATA, TOTAL) in bytes after its fill.
    pub cratio: BTreeMap<(String, String), (f64, f64)>,
    /// The tiering bench: `(target, phase)` → what the phase measured.
    pub tiering: BTreeMap<(String, String), TierPhase>,
    /// Tiering peers that could not be set up → why.
    pub tiering_skipped: BTreeMap<String, String>,
    /// Cache device of the native cache rows → its read hit ratio over them.
    pub cache_hit_ratio: BTreeMap<String, f64>,
}

/// The backing-device lines of the report (native), against their targets.
pub fn backing_table(results: &Results, rows: &[Row]) -> String {
    let b = &results.backing;
    let mut out = String::from(
        "Backing device (rxdsk_wb: rxdsk attached in writeback mode to a second rxdsk device):\n",
    );
    if let (Some(f), Some(fb), Some(c), Some(bytes)) = (
        b.get("flush_s"),
        b.get("flush_bytes"),
        b.get("copy_s"),
        b.get("bytes"),
    ) {
        let (flush, copy) = (fb / f / 1e6, bytes / c / 1e6);
        out += &format!(
            "  flush of the whole {:.0} MiB span ({:.0} MiB written, metadata included): {flush:.0} MB/s; \
             dd of the same bytes to the same device: {copy:.0} MB/s; flush/dd {:.2} (target >= 0.80)\n",
            bytes / 1048576.0,
            fb / 1048576.0,
            flush / copy
        );
    }
    let wb: Vec<String> = rows
        .iter()
        .filter(|r| r.mode == Mode::Native && r.job.contains("write"))
        .filter_map(|r| {
            Some(format!(
                "{}@{} {:.2}",
                r.job,
                r.depth,
                r.ratios.get(WB_RATIO)?.median
            ))
        })
        .collect();
    if !wb.is_empty() {
        out += &format!(
            "  write IOPS with a backing device over without (target >= 0.95): {}\n",
            wb.join(", ")
        );
    }
    if let (Some(quiet), Some(flushing)) = (b.get("quiet_write_iops"), b.get("flushing_write_iops"))
    {
        out += &format!(
            "  4 KiB random writes while flushes run back to back: {flushing:.0} IOPS; with none running: \
             {quiet:.0} IOPS; during/without {:.2} (target >= 0.70)\n",
            flushing / quiet
        );
    }
    if let Some(miss) = b.get("miss_iops") {
        let hit = rows
            .iter()
            .find(|r| r.mode == Mode::Native && r.job == "4k-randread" && r.depth == "t1")
            .and_then(|r| r.iops.get("rxdsk"));
        out += &format!(
            "  lazy restore, 4 KiB random read miss (loads its 64 KiB cluster): {:.1} us per read{}\n",
            1e6 / miss,
            hit.map_or(String::new(), |h| format!(" (a loaded page: {:.1} us)", 1e6 / h))
        );
    }
    out
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
                if row == "fill" || row == "warmup" || row == "backing-refill" {
                    continue;
                }
                if let Some(key) = match row {
                    "backing-miss" => Some("miss_iops"),
                    "backing-write-quiet" => Some("quiet_write_iops"),
                    "backing-write-flushing" => Some("flushing_write_iops"),
                    _ => None,
                } {
                    let sample = kbench_sample(target, row, rest)?;
                    results.backing.insert(key.into(), sample.iops);
                    continue;
                }
                let mut sample = if kind == "fio" {
                    fio_sample(target, row, rest)?
                } else {
                    kbench_sample(target, row, rest)?
                };
                sample.round = results
                    .samples
                    .iter()
                    .filter(|s| {
                        s.mode == sample.mode && s.target == sample.target && s.row == sample.row
                    })
                    .count();
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
            "backing" => {
                for kv in line.split_whitespace().skip(1) {
                    if let Some((k, v)) = kv.split_once('=') {
                        results
                            .backing
                            .insert(k.into(), v.parse().unwrap_or(f64::NAN));
                    }
                }
            }
            "cratio" => {
                let f: Vec<&str> = line.split_whitespace().skip(1).collect();
                let [label, phase, data, total] = f[..] else {
                    bail!("malformed cratio line: {line}");
                };
                results.cratio.insert(
                    (label.into(), phase.into()),
                    (
                        data.parse().unwrap_or(f64::NAN),
                        total.parse().unwrap_or(f64::NAN),
                    ),
                );
            }
            "tiering" => {
                let phase = tier_phase(line)?;
                results.tiering.insert(phase.0, phase.1);
            }
            "tiering-skip" => {
                let mut f = line.splitn(3, ' ').skip(1);
                let (Some(label), reason) = (f.next(), f.next()) else {
                    bail!("malformed tiering-skip line: {line:.120}");
                };
                results.tiering_skipped.insert(
                    label.into(),
                    reason.unwrap_or("no reason given").trim().into(),
                );
            }
            "cache-hit-ratio" => {
                let f: Vec<&str> = line.split_whitespace().skip(1).collect();
                let [label, ratio] = f[..] else {
                    bail!("malformed cache-hit-ratio line: {line}");
                };
                results
                    .cache_hit_ratio
                    .insert(label.into(), ratio.parse().unwrap_or(f64::NAN));
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

fn median(v: Vec<f64>) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile of `v`, linearly interpolated; NaN if `v` is empty.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return f64::NAN;
    }
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

/// A ratio's median and interquartile range over paired measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    /// How many pairs.
    pub pairs: usize,
}

/// rxdsk's speed over `other`'s from measurements that ran side by side: for each pair (same
/// round, same position) the ratio of `other`'s cost to rxdsk's.
fn paired_ratio(samples: &[Sample], mode: Mode, row: &str, other: &'static str) -> Option<Spread> {
    paired_ratio_of(samples, mode, row, "rxdsk", other)
}

/// `target`'s speed over `other`'s, as [`paired_ratio`].
fn paired_ratio_of(
    samples: &[Sample],
    mode: Mode,
    row: &str,
    target: &str,
    other: &str,
) -> Option<Spread> {
    let of = |t: &str, s: &Sample| s.mode == mode && s.row == row && s.target == t;
    let mut ratios = Vec::new();
    for a in samples.iter().filter(|s| of(target, s)) {
        for b in samples
            .iter()
            .filter(|b| of(other, b) && b.round == a.round)
        {
            for (ca, cb) in a.costs.iter().zip(&b.costs) {
                if *ca > 0.0 && cb.is_finite() {
                    ratios.push(cb / ca);
                }
            }
        }
    }
    (!ratios.is_empty()).then(|| Spread {
        p25: quantile(ratios.clone(), 0.25),
        median: quantile(ratios.clone(), 0.5),
        p75: quantile(ratios.clone(), 0.75),
        pairs: ratios.len(),
    })
}

/// The targets rxdsk's ratios are reported against.
pub const RATIO_TARGETS: [&str; 3] = ["brd", "null_blk", MEMCPY];
/// Key of [`Row::ratios`] for rxdsk with a backing device over plain rxdsk.
pub const WB_RATIO: &str = "wb/rxdsk";

/// One row of the report: medians per target.
#[derive(Debug)]
pub struct Row {
    pub mode: Mode,
    pub job: String,
    /// `qd32` or `t2`.
    pub depth: String,
    pub iops: BTreeMap<String, f64>,
    pub mbps: BTreeMap<String, f64>,
    /// rxdsk against each of [`RATIO_TARGETS`], from paired measurements.
    pub ratios: BTreeMap<String, Spread>,
}

impl Row {
    /// rxdsk's speed over `other`'s: the median of paired ratios, else the ratio of medians.
    pub fn ratio(&self, other: &str) -> Option<f64> {
        if let Some(s) = self.ratios.get(other) {
            return Some(s.median);
        }
        let a = self.iops.get("rxdsk")?;
        let b = self.iops.get(other)?;
        (*b > 0.0).then(|| a / b)
    }
}

pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut keys: Vec<(Mode, String)> = Vec::new();
    // The compressed targets' rows and the cache rows have tables of their own.
    for s in samples
        .iter()
        .filter(|s| columns().any(|t| t == s.target) && !s.row.starts_with("cache-"))
    {
        if !keys.iter().any(|(m, r)| *m == s.mode && *r == s.row) {
            keys.push((s.mode, s.row.clone()));
        }
    }
    keys.into_iter()
        .map(|(mode, row)| {
            let (job, depth) = row.split_once('@').unwrap_or((&row, ""));
            let mut iops = BTreeMap::new();
            let mut mbps = BTreeMap::new();
            for t in columns() {
                let of = |f: fn(&Sample) -> f64| {
                    median(
                        samples
                            .iter()
                            .filter(|s| s.mode == mode && s.row == row && s.target == t)
                            .map(f)
                            .collect(),
                    )
                };
                let v = of(|s| s.iops);
                if v.is_finite() {
                    iops.insert(t.to_string(), v);
                    mbps.insert(t.to_string(), of(|s| s.mbps));
                }
            }
            let mut ratios: BTreeMap<String, Spread> = RATIO_TARGETS
                .iter()
                .filter_map(|t| Some((t.to_string(), paired_ratio(samples, mode, &row, t)?)))
                .collect();
            if let Some(s) = paired_ratio_of(samples, mode, &row, "rxdsk_wb", "rxdsk") {
                ratios.insert(WB_RATIO.into(), s);
            }
            Row {
                mode,
                job: job.into(),
                depth: depth.into(),
                iops,
                mbps,
                ratios,
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
    head.extend(columns().map(|t| format!("{t} IOPS")));
    for t in RATIO_TARGETS.into_iter().chain([WB_RATIO]) {
        let name = if t == WB_RATIO {
            t.to_string()
        } else {
            format!("rxdsk/{t}")
        };
        head.extend([name, "IQR".into()]);
    }
    let mut lines: Vec<Vec<String>> = vec![head];
    for r in rows.iter().filter(|r| r.mode == mode) {
        let mut l = vec![r.job.clone(), r.depth.clone()];
        for t in columns() {
            l.push(r.iops.get(t).map_or("-".into(), |v| format!("{v:.0}")));
        }
        for t in RATIO_TARGETS {
            l.push(fmt_ratio(r.ratio(t)));
            l.push(
                r.ratios
                    .get(t)
                    .map_or("-".into(), |s| format!("{:.2}-{:.2}", s.p25, s.p75)),
            );
        }
        let wb = r.ratios.get(WB_RATIO);
        l.push(fmt_ratio(wb.map(|s| s.median)));
        l.push(wb.map_or("-".into(), |s| format!("{:.2}-{:.2}", s.p25, s.p75)));
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
                o.insert(
                    "rxdsk_vs_memcpy".into(),
                    json!(r.ratio(MEMCPY).map(|x| (x * 1000.0).round() / 1000.0)),
                );
                o.insert(
                    "rxdsk_wb_vs_rxdsk".into(),
                    json!(r
                        .ratios
                        .get(WB_RATIO)
                        .map(|s| (s.median * 1000.0).round() / 1000.0)),
                );
                for (t, key) in [
                    ("brd", "rxdsk_vs_brd"),
                    ("null_blk", "rxdsk_vs_nullblk"),
                    (MEMCPY, "rxdsk_vs_memcpy"),
                    (WB_RATIO, "rxdsk_wb_vs_rxdsk"),
                ] {
                    if let Some(s) = r.ratios.get(t) {
                        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
                        o.insert(format!("{key}_p25"), json!(r3(s.p25)));
                        o.insert(format!("{key}_p75"), json!(r3(s.p75)));
                        o.insert(format!("{key}_pairs"), json!(s.pairs));
                    }
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// RAM cost lines: MiB of MemAvailable lost per GiB written.
/// rxdsk against zram with the same algorithm on the same data (native): IOPS, rxdsk/zram
/// from paired bursts with its IQR, and DATA/TOTAL of each after the data's fill. zram's
/// TOTAL is its mm_stat mem_used_total, which leaves out its table (16 bytes per page of its
/// size); rxdsk's includes its descriptors (16 bytes per page held).
/// The compressed targets' rows (`c50-...`, `corpus-...`), in the order measured.
fn compressed_rows(samples: &[Sample]) -> Vec<&str> {
    let mut rows: Vec<&str> = Vec::new();
    for s in samples {
        if (s.row.starts_with("c50-") || s.row.starts_with("corpus-")) && !rows.contains(&&*s.row) {
            rows.push(&s.row);
        }
    }
    rows
}

pub fn compression_table(results: &Results) -> String {
    let row_names = compressed_rows(&results.samples);
    if row_names.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "Compression (rxdsk vs zram, same algorithm, same data; target: rxdsk/zram >= 1.10 at a ratio >= zram's):\n",
    );
    out += &format!(
        "  {:<9} {:<24} {:>12} {:>12} {:>11} {:>13} {:>11} {:>11}\n",
        "algorithm",
        "job",
        "rxdsk IOPS",
        "zram IOPS",
        "rxdsk/zram",
        "IQR",
        "rxdsk ratio",
        "zram ratio"
    );
    let median_iops = |label: &str, row: &str| median_iops(&results.samples, label, row);
    for algorithm in COMPRESSORS {
        let (r, z) = (
            compressed_label("rxdsk", algorithm),
            compressed_label("zram", algorithm),
        );
        for row in &row_names {
            let phase = if row.starts_with("c50-") {
                "c50"
            } else {
                "corpus"
            };
            let ratio = |label: &str| {
                results
                    .cratio
                    .get(&(label.to_string(), phase.to_string()))
                    .filter(|(_, t)| *t > 0.0)
                    .map_or("-".into(), |(d, t)| format!("{:.3}", d / t))
            };
            let spread = paired_ratio_of(&results.samples, Mode::Native, row, &r, &z);
            out += &format!(
                "  {:<9} {:<24} {:>12.0} {:>12.0} {:>11} {:>13} {:>11} {:>11}\n",
                algorithm,
                row,
                median_iops(&r, row),
                median_iops(&z, row),
                spread.map_or("-".into(), |s| format!("{:.2}", s.median)),
                spread.map_or("-".into(), |s| format!("{:.2}-{:.2}", s.p25, s.p75)),
                ratio(&r),
                ratio(&z),
            );
        }
    }
    out
}

/// The median IOPS of `target` on `row` (the native-only rows: compression, cache).
fn median_iops(samples: &[Sample], target: &str, row: &str) -> f64 {
    median(
        samples
            .iter()
            .filter(|s| s.target == target && s.row == row)
            .map(|s| s.iops)
            .collect(),
    )
}

/// The cache's hit and miss paths (native), each a paired ratio with its IQR.
pub fn cache_table(results: &Results) -> String {
    let samples = &results.samples;
    let mut jobs: Vec<&str> = Vec::new();
    for s in samples {
        if let Some(job) = s.row.strip_prefix("cache-hit-") {
            if !jobs.contains(&job) {
                jobs.push(job);
            }
        }
    }
    if jobs.is_empty() {
        return String::new();
    }
    let spread = |row: String, target: &str, other: &str| {
        paired_ratio_of(samples, Mode::Native, &row, target, other).map_or("-".into(), |r| {
            format!("{:.2} [{:.2}-{:.2}]", r.median, r.p25, r.p75)
        })
    };
    let iops = |row: String, target: &str| median_iops(samples, target, &row);
    let hit_ratio = |label: &str| {
        results
            .cache_hit_ratio
            .get(label)
            .map_or(String::new(), |r| format!(", read hit ratio {r:.3}"))
    };
    let mut out = format!(
        "Cache (a backed device whose memory limit is smaller than the device), paired ratios [IQR]:\n  \
         hit path: a cache device with its span in RAM over a plain rxdsk device (target >= 0.95){}:\n",
        hit_ratio(CACHE_HIT)
    );
    for job in &jobs {
        let row = format!("cache-hit-{job}");
        out += &format!(
            "    {job:<18} {}  ({:.0} vs {:.0} IOPS)\n",
            spread(row.clone(), CACHE_HIT, CACHE_PLAIN),
            iops(row.clone(), CACHE_HIT),
            iops(row, CACHE_PLAIN)
        );
    }
    out += "  miss path: a cache device holding 1/16 of its span over a raw read of its backing device (target >= 0.90):\n";
    for (cache, raw, what) in CACHE_MISS_PAIRS {
        out += &format!("    backing: {what}{}\n", hit_ratio(cache));
        for job in &jobs {
            let row = format!("cache-miss-{job}");
            let (c, r) = (iops(row.clone(), cache), iops(row.clone(), raw));
            out += &format!(
                "      {job:<16} {}  ({c:.0} vs {r:.0} IOPS; a miss adds {:.1} us)\n",
                spread(row, cache, raw),
                1e6 / c - 1e6 / r
            );
        }
    }
    out
}

/// The targets against the ceilings (native): rxdsk over the memcpy slot on the 1 MiB rows
/// (target >= 0.80) and over null_blk without memory (the block layer alone) on the 4 KiB rows.
pub fn ceiling_table(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.mode == Mode::Native) {
        let big = r.job.starts_with("1M-");
        let other = if big { MEMCPY } else { "null_blk" };
        let Some(s) = r.ratios.get(other) else {
            continue;
        };
        let target = match (big, s.median >= 0.8) {
            (true, true) => "target >= 0.80, met",
            (true, false) => "target >= 0.80, NOT met",
            (false, _) => "no target yet",
        };
        out += &format!(
            "  {:<16} {:<4} rxdsk/{other:<9} {:.2} [IQR {:.2}-{:.2}] ({target})\n",
            r.job, r.depth, s.median, s.p25, s.p75,
        );
    }
    if out.is_empty() {
        return out;
    }
    format!("Ceilings (the same I/Os with no RAM disk: memcpy to kernel memory, null_blk without memory):\n{out}")
}

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

/// The tiering bench's sizes and run lengths: one QEMU guest, one target after the other over
/// the same slow device (qemu-tests/guest/bench-tiering.sh).
#[derive(Clone, Copy, Debug)]
pub struct TieringPlan {
    /// MiB of the slow device the workloads touch.
    pub region_mb: u32,
    /// MiB of cache for every target: rxdsk's memory limit, dm-cache's and bcache's ramdisk.
    pub cache_mb: u32,
    /// Zipf reads before the measured run.
    pub warm_ios: u32,
    /// Zipf reads of each measured run (before and after the second scan).
    pub ios: u32,
}

/// The Zipf exponent of the tiering workload.
pub const TIERING_ZIPF_THETA: f64 = 1.2;

/// The tiering bench's targets, in the order they run; rxdsk's hit ratio is judged against the
/// others'.
pub const TIERING_TARGETS: [&str; 3] = ["rxdsk", "dm-cache", "bcache"];

/// Where the guest finds the Zipf traces (`warm.iolog`, `zipf.iolog`, ...).
const TIERING_TRACES: &str = "etc/rxdsk-tiering";

/// The measured Zipf phases: the run after the warm-up, the run after the second scan.
const TIER_ZIPF: &str = "zipf";
const TIER_ZIPF_AFTER_SCAN: &str = "zipf-after-scan";

/// `count` pages of a Zipf(`theta`) trace over `pages` pages: rank r (from 1) with probability
/// proportional to r^-theta, ranks scattered over the region by a fixed multiplier prime to
/// `pages` (fio's own zipf does the same with a hash). Our generator, not fio's: fio 3.33 makes
/// the same sequence whatever `--randseed` (its zipf seed comes from the file name unless
/// `--randrepeat=0`, which also moves the hot pages), so a measured run after a warm-up would
/// replay the warm-up.
pub fn zipf_trace(pages: u64, theta: f64, count: usize, seed: u64) -> Vec<u64> {
    let pages = pages.max(1);
    let mut cdf = Vec::with_capacity(pages as usize);
    let mut total = 0.0;
    for rank in 1..=pages {
        total += (rank as f64).powf(-theta);
        cdf.push(total);
    }
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut spread = (pages as f64 * 0.618_033_988_7) as u64 | 1;
    while gcd(spread, pages) != 1 {
        spread += 2;
    }
    // xorshift64*: reproducible, no dependency.
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let u = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cdf.partition_point(|c| *c <= u * total) as u64;
            (rank.min(pages - 1) * spread) % pages
        })
        .collect()
}

/// The hit ratio over `measured` of a plain LRU cache of `capacity` pages that saw `before`
/// first (starting empty).
pub fn lru_hit_ratio(before: &[u64], measured: &[u64], capacity: usize) -> f64 {
    let mut last_use: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut by_age: BTreeMap<usize, u64> = BTreeMap::new();
    let mut hits = 0;
    for (time, &page) in before.iter().chain(measured).enumerate() {
        let hit = match last_use.insert(page, time) {
            Some(previous) => {
                by_age.remove(&previous);
                true
            }
            None => false,
        };
        by_age.insert(time, page);
        if by_age.len() > capacity {
            if let Some((_, oldest)) = by_age.pop_first() {
                last_use.remove(&oldest);
            }
        }
        if hit && time >= before.len() {
            hits += 1;
        }
    }
    hits as f64 / measured.len().max(1) as f64
}

/// fio's iolog (version 2) of 4 KiB reads of `pages`; the guest redirects it to the target.
fn iolog(pages: &[u64]) -> String {
    let mut s = String::from("fio version 2 iolog\n/dev/tier add\n/dev/tier open\n");
    for p in pages {
        s += &format!("/dev/tier read {} 4096\n", p * 4096);
    }
    s + "/dev/tier close\n"
}

impl TieringPlan {
    /// The slow disk: the region, rxdsk's metadata block, room to spare.
    pub fn disk_bytes(&self) -> u64 {
        (u64::from(self.region_mb) + 64) << 20
    }

    fn pages(&self) -> u64 {
        u64::from(self.region_mb) * 256
    }

    fn cache_pages(&self) -> u64 {
        u64::from(self.cache_mb) * 256
    }

    /// The guest's run script (the bench's logic is in the guest script).
    pub fn script(&self) -> String {
        format!(
            "DISK=/dev/vda REGION_MB={} CACHE_MB={} TRACES=/{TIERING_TRACES} sh /usr/share/rxdsk-tests/bench-tiering.sh",
            self.region_mb, self.cache_mb
        )
    }

    /// One Zipf stream cut in three: the warm-up, the measured run, the run after the scan.
    fn traces(&self) -> [Vec<u64>; 3] {
        let (warm, ios) = (self.warm_ios as usize, self.ios as usize);
        let all = zipf_trace(
            self.pages(),
            TIERING_ZIPF_THETA,
            warm + 2 * ios,
            0x7133_5eed,
        );
        [
            all[..warm].to_vec(),
            all[warm..warm + ios].to_vec(),
            all[warm + ios..].to_vec(),
        ]
    }

    /// The traces as initramfs overlay files.
    pub fn trace_files(&self) -> Vec<(String, Vec<u8>)> {
        let [warm, zipf, after] = self.traces();
        [
            ("warm", warm),
            (TIER_ZIPF, zipf),
            (TIER_ZIPF_AFTER_SCAN, after),
        ]
        .into_iter()
        .map(|(name, t)| {
            (
                format!("{TIERING_TRACES}/{name}.iolog"),
                iolog(&t).into_bytes(),
            )
        })
        .collect()
    }

    /// The hit ratio of a cache that always holds the most frequent pages (what no policy
    /// beats on independent Zipf draws): the share of the cache's worth of top ranks.
    pub fn ideal_hit_ratio(&self) -> f64 {
        let pages = self.pages();
        let cached = self.cache_pages().min(pages);
        let weight = |rank: u64| (rank as f64).powf(-TIERING_ZIPF_THETA);
        let top: f64 = (1..=cached).map(weight).sum();
        let all: f64 = (1..=pages).map(weight).sum();
        top / all
    }

    /// A plain LRU of the cache's pages on the same traces: the measured run after the
    /// warm-up, and the run after the scan (which leaves an LRU nothing of the hot set).
    pub fn lru_hit_ratios(&self) -> (f64, f64) {
        let [warm, zipf, after] = self.traces();
        let capacity = self.cache_pages() as usize;
        (
            lru_hit_ratio(&warm, &zipf, capacity),
            lru_hit_ratio(&[], &after, capacity),
        )
    }
}

/// One phase of one tiering target: the cache's own read counters over it (Zipf runs) and
/// fio's rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TierPhase {
    /// Read hits and misses; `None` for a scan (not counted).
    pub reads: Option<(u64, u64)>,
    pub iops: f64,
    pub mbps: f64,
}

impl TierPhase {
    pub fn hit_ratio(&self) -> Option<f64> {
        let (hits, misses) = self.reads?;
        (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
    }
}

/// Parses `tiering LABEL PHASE HITS MISSES FIO-JSON` (HITS and MISSES both `-` for a phase
/// that is not counted) into `((label, phase), phase)`.
fn tier_phase(line: &str) -> Result<((String, String), TierPhase)> {
    let f: Vec<&str> = line.splitn(6, ' ').collect();
    let [_, label, phase, hits, misses, json] = f[..] else {
        bail!("malformed tiering line: {line:.120}");
    };
    let reads = match (hits, misses) {
        ("-", "-") => None,
        _ => {
            let count = |what: &str, v: &str| -> Result<u64> {
                v.parse().with_context(|| {
                    format!("tiering {label} {phase}: {what} {v:?} is not a count")
                })
            };
            Some((count("hits", hits)?, count("misses", misses)?))
        }
    };
    let fio = fio_sample(label, phase, json)?;
    Ok((
        (label.into(), phase.into()),
        TierPhase {
            reads,
            iops: fio.iops,
            mbps: fio.mbps,
        },
    ))
}

/// The tiering section of the report: its lines, its JSON, rxdsk's Zipf hit ratio over
/// dm-cache's (the figure to beat).
pub struct Tiering {
    pub table: String,
    pub json: Value,
    pub vs_dmcache: Option<f64>,
}

impl Tiering {
    /// From a tiering guest's results; `accel` names the emulation (TCG or KVM).
    pub fn new(results: &Results, plan: &TieringPlan, accel: &str) -> Tiering {
        let phase = |t: &str, p: &str| results.tiering.get(&(t.to_string(), p.to_string()));
        let ratio = |t: &str, p: &str| phase(t, p).and_then(TierPhase::hit_ratio);
        // The fixed targets first, then any other the guest reported.
        let mut targets: Vec<String> = TIERING_TARGETS.iter().map(|t| t.to_string()).collect();
        for (t, _) in results.tiering.keys() {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        let mut table = format!(
            "Tiering (EMULATED: QEMU/{accel}; hit ratios are hardware-independent, IOPS and MB/s are emulated):\n\
             cache {} MiB over {} MiB of a virtio disk (plain: the host's page cache under it, no dm-delay in the \
             guest kernel), filled through each cache, scanned (1 MiB reads), then Zipf({TIERING_ZIPF_THETA}) \
             4 KiB reads at queue depth 1, the same trace for every target: {} measured after {} warm-up, then \
             a second scan and {} more\n",
            plan.cache_mb, plan.region_mb, plan.ios, plan.warm_ios, plan.ios
        );
        table += &format!(
            "  {:<10} {:>14} {:>10} {:>14} {:>10}\n",
            "target", "Zipf hit ratio", "Zipf IOPS", "after a scan", "scan MB/s"
        );
        let num =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        let r3 = |v: Option<f64>| v.map(|x| (x * 1000.0).round() / 1000.0);
        let mut rows = Vec::new();
        for t in &targets {
            if let Some(reason) = results.tiering_skipped.get(t) {
                table += &format!("  {t:<10} not set up ({reason})\n");
                continue;
            }
            let (zipf, after, scan) = (
                phase(t, TIER_ZIPF),
                phase(t, TIER_ZIPF_AFTER_SCAN),
                phase(t, "scan"),
            );
            if zipf.is_none() && after.is_none() && scan.is_none() {
                table += &format!("  {t:<10} no result\n");
                continue;
            }
            table += &format!(
                "  {t:<10} {:>14} {:>10} {:>14} {:>10}\n",
                num(ratio(t, TIER_ZIPF), 3),
                num(zipf.map(|p| p.iops), 0),
                num(ratio(t, TIER_ZIPF_AFTER_SCAN), 3),
                num(scan.map(|p| p.mbps), 1),
            );
            rows.push(json!({
                "target": t,
                "zipf_hit_ratio": r3(ratio(t, TIER_ZIPF)),
                "zipf_reads": zipf.and_then(|p| p.reads),
                "zipf_iops": zipf.map(|p| p.iops.round()),
                "zipf_after_scan_hit_ratio": r3(ratio(t, TIER_ZIPF_AFTER_SCAN)),
                "zipf_after_scan_reads": after.and_then(|p| p.reads),
                "scan_mbps": scan.map(|p| (p.mbps * 10.0).round() / 10.0),
            }));
        }
        let vs =
            |other: &str, p: &str| Some(ratio("rxdsk", p)? / ratio(other, p).filter(|r| *r > 0.0)?);
        for other in targets.iter().filter(|t| *t != "rxdsk") {
            if let Some(v) = vs(other, TIER_ZIPF) {
                table += &format!(
                    "  rxdsk/{other} Zipf hit ratio: {v:.3}{}; after a scan: {}\n",
                    if other == "dm-cache" {
                        " (target > 1)"
                    } else {
                        ""
                    },
                    num(vs(other, TIER_ZIPF_AFTER_SCAN), 3)
                );
            }
        }
        let (lru, lru_after) = plan.lru_hit_ratios();
        let ideal = plan.ideal_hit_ratio();
        table += &format!(
            "  references on the same trace: a plain LRU of {pages} pages {lru:.3} (after a scan: {lru_after:.3}); \
             the {pages} most frequent pages always cached {ideal:.3}\n  \
             (hits and misses: each cache's own read counters, per bio; bcache's bypassed reads count as reads)\n",
            pages = plan.cache_pages()
        );
        let vs_dmcache = vs("dm-cache", TIER_ZIPF);
        let json = json!({
            "mode": Mode::Emulated.name(),
            "accel": accel,
            "region_mib": plan.region_mb,
            "cache_mib": plan.cache_mb,
            "zipf_theta": TIERING_ZIPF_THETA,
            "warm_ios": plan.warm_ios,
            "ios": plan.ios,
            "targets": rows,
            "not_set_up": results.tiering_skipped,
            "rxdsk_vs_dmcache_hit_ratio": r3(vs_dmcache),
            "rxdsk_vs_dmcache_after_scan_hit_ratio": r3(vs("dm-cache", TIER_ZIPF_AFTER_SCAN)),
            "lru_hit_ratio": r3(Some(lru)),
            "lru_after_scan_hit_ratio": r3(Some(lru_after)),
            "ideal_hit_ratio": r3(Some(ideal)),
        });
        Tiering {
            table,
            json,
            vs_dmcache,
        }
    }
}

/// `make-bcache` and the shared libraries it links, as initramfs overlay files, if the host
/// has it (Debian's bcache-tools); else why not.
pub fn bcache_tools() -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let program = Path::new("/usr/sbin/make-bcache");
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if !program.exists() {
        return Err("make-bcache is not on the host: apt-get install bcache-tools".into());
    }
    let mut files = vec![("usr/sbin/make-bcache".to_string(), read(program)?)];
    let ldd = crate::util::run_output(crate::util::Cmd::new("ldd").arg(program))
        .map_err(|e| format!("ldd make-bcache: {e}"))?;
    for line in ldd.lines() {
        // "libuuid.so.1 => /lib/x86_64-linux-gnu/libuuid.so.1 (0x...)"
        if let Some(lib) = line
            .split("=>")
            .nth(1)
            .and_then(|rhs| rhs.split_whitespace().next())
            .filter(|p| p.starts_with('/'))
        {
            files.push((
                lib.trim_start_matches('/').to_string(),
                read(Path::new(lib))?,
            ));
        }
    }
    Ok(files)
}

/// What one bench run reports: on the terminal and in `latest.{json,md,txt,png,svg}`.
pub struct Report<'a> {
    /// Kernel, CPUs, span, rounds.
    pub header: String,
    pub native_head: String,
    /// The native (UML) RAM cost.
    pub native_mem: &'a Results,
    /// The emulated view's heading and RAM cost; `None` with `--native-only`.
    pub emulated: Option<(String, &'a Results)>,
    pub rows: &'a [Row],
    /// The NVMe/TCP export's remote against local IOPS (two guests); `None` with
    /// `--native-only`.
    pub network: Option<String>,
    /// rxdsk against dm-cache and bcache in one guest; `None` with `--native-only`.
    pub tiering: Option<Tiering>,
}

/// The network export's lines: 4k random-read IOPS on the exporting guest itself and from the
/// other guest over NVMe/TCP, measured in one two-guest run.
pub fn network_table(accel: &str, local: f64, remote: f64) -> String {
    format!(
        "Network export (EMULATED: two QEMU/{accel} guests, NVMe/TCP over virtio-net carried on \
         127.0.0.1; the emulated network dominates, so only the order of magnitude means anything):\n\
         {:<34} {:>12}\n{:<34} {:>12.0}\n{:<34} {:>12.0}\n{:<34} {:>12.3}\n",
        "4k random reads, iodepth 16",
        "IOPS",
        "local (rxdsk on the target)",
        local,
        "remote (nvme-tcp host)",
        remote,
        "remote/local",
        remote / local
    )
}

impl Report<'_> {
    /// The terminal table, also `latest.txt`.
    pub fn text(&self) -> String {
        let mut text = format!(
            "{}\n\n{}\n{}\n",
            self.header,
            self.native_head,
            table(self.rows, Mode::Native, false)
        );
        if let Some((head, _)) = &self.emulated {
            text += &format!("{head}\n{}\n", table(self.rows, Mode::Emulated, false));
        }
        text += &ceiling_table(self.rows);
        text += &format!("native (UML) {}", memory_table(self.native_mem));
        text += &compression_table(self.native_mem);
        text += &codec_table(self.native_mem);
        text += &cache_table(self.native_mem);
        if !self.native_mem.backing.is_empty() {
            text += &format!("native (UML) {}", backing_table(self.native_mem, self.rows));
        }
        if let Some((_, mem)) = &self.emulated {
            text += &format!("\nemulated (QEMU) {}", memory_table(mem));
        }
        if let Some(net) = &self.network {
            text += &format!("\n{net}");
        }
        if let Some(t) = &self.tiering {
            text += &format!("\n{}", t.table);
        }
        text
    }

    /// `latest.md`.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# rxdsk bench\n\n{}\n\n## {}\n\n{}\n",
            self.header,
            self.native_head,
            table(self.rows, Mode::Native, true)
        );
        if let Some((head, _)) = &self.emulated {
            md += &format!("## {head}\n\n{}\n", table(self.rows, Mode::Emulated, true));
        }
        md += &format!(
            "```\n{}{}",
            ceiling_table(self.rows),
            memory_table(self.native_mem)
        );
        md += &compression_table(self.native_mem);
        md += &codec_table(self.native_mem);
        md += &cache_table(self.native_mem);
        if !self.native_mem.backing.is_empty() {
            md += &backing_table(self.native_mem, self.rows);
        }
        if let Some((_, mem)) = &self.emulated {
            md += &memory_table(mem);
        }
        if let Some(net) = &self.network {
            md += &format!("\n{net}");
        }
        if let Some(t) = &self.tiering {
            md += &format!("\n{}", t.table);
        }
        md + "```\n"
    }

    /// Writes `latest.{json,md,txt,png,svg}` into `out` (created if need be): every bench run,
    /// `--native-only` too, leaves its machine-readable results there.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
        let file = |name: &str, contents: String| {
            let path = out.join(name);
            std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))
        };
        file(
            "latest.json",
            serde_json::to_string_pretty(&json_rows(self.rows))?,
        )?;
        file("latest.md", self.markdown())?;
        file("latest.txt", self.text())?;
        if let Some(t) = &self.tiering {
            file("tiering.json", serde_json::to_string_pretty(&t.json)?)?;
        }
        crate::chart::write(&self.panels(), &out.join("latest.png"))
    }

    /// The chart's panels: the ratios with targets, one panel per section.
    pub fn panels(&self) -> Vec<Panel> {
        let single = |v: f64| Spread {
            p25: v,
            median: v,
            p75: v,
            pairs: 1,
        };
        let entry = |group: String, series: String, spread: Spread, target: Option<f64>| Entry {
            group,
            series,
            spread,
            target,
        };
        let ratio_entries = |mode: Mode, targets: bool| -> Vec<Entry> {
            let mut out = Vec::new();
            for r in self.rows.iter().filter(|r| r.mode == mode) {
                for other in RATIO_TARGETS {
                    let Some(s) = r.ratios.get(other) else {
                        continue;
                    };
                    let target = match other {
                        "brd" => Some(1.0),
                        MEMCPY if r.job.starts_with("1M-") => Some(0.8),
                        _ => None,
                    };
                    out.push(entry(
                        format!("{}@{}", r.job, r.depth),
                        format!("rxdsk/{other}"),
                        *s,
                        target.filter(|_| targets),
                    ));
                }
            }
            out
        };
        let mut panels = vec![Panel {
            title: format!("{}: rxdsk against brd and the ceilings", self.native_head),
            entries: ratio_entries(Mode::Native, true),
        }];
        let samples = &self.native_mem.samples;
        // Two panels, 4 KiB pages and big bios, so that every row's label fits under it.
        let (mut pages, mut big) = (Vec::new(), Vec::new());
        for row in compressed_rows(samples) {
            for algorithm in COMPRESSORS {
                let (r, z) = (
                    compressed_label("rxdsk", algorithm),
                    compressed_label("zram", algorithm),
                );
                if let Some(s) = paired_ratio_of(samples, Mode::Native, row, &r, &z) {
                    let panel = if row.contains("-4k-") {
                        &mut pages
                    } else {
                        &mut big
                    };
                    panel.push(entry(
                        row.to_string(),
                        format!("rxdsk/zram {algorithm}"),
                        s,
                        Some(1.10),
                    ));
                }
            }
        }
        for (what, entries) in [("4 KiB pages", pages), ("big bios", big)] {
            if !entries.is_empty() {
                panels.push(Panel {
                    title: format!(
                        "native: compressed devices, rxdsk against zram with the same algorithm: {what}"
                    ),
                    entries,
                });
            }
        }
        let mut backing = Vec::new();
        for r in self
            .rows
            .iter()
            .filter(|r| r.mode == Mode::Native && r.job.contains("write"))
        {
            if let Some(s) = r.ratios.get(WB_RATIO) {
                backing.push(entry(
                    format!("{}@{}", r.job, r.depth),
                    "with a backing device/without".into(),
                    *s,
                    Some(0.95),
                ));
            }
        }
        let b = &self.native_mem.backing;
        if let (Some(f), Some(fb), Some(c), Some(bytes)) = (
            b.get("flush_s"),
            b.get("flush_bytes"),
            b.get("copy_s"),
            b.get("bytes"),
        ) {
            backing.push(entry(
                "flush of the span".into(),
                "flush/dd of the same bytes".into(),
                single((fb / f) / (bytes / c)),
                Some(0.80),
            ));
        }
        if let (Some(quiet), Some(flushing)) =
            (b.get("quiet_write_iops"), b.get("flushing_write_iops"))
        {
            backing.push(entry(
                "4k-randwrite while flushing".into(),
                "writes during flushes/without".into(),
                single(flushing / quiet),
                Some(0.70),
            ));
        }
        panels.push(Panel {
            title: "native: the backing device".into(),
            entries: backing,
        });
        if let Some((head, _)) = &self.emulated {
            panels.push(Panel {
                title: format!("{head} (no targets: emulation distorts ratios)"),
                entries: ratio_entries(Mode::Emulated, false),
            });
        }
        if let Some(v) = self.tiering.as_ref().and_then(|t| t.vs_dmcache) {
            // A hit ratio does not depend on the emulation: this one has its target.
            panels.push(Panel {
                title: "tiering: Zipf hit ratio, same cache size over the same slow device".into(),
                entries: vec![entry(
                    "Zipf(1.2) 4 KiB reads".into(),
                    "rxdsk/dm-cache".into(),
                    single(v),
                    Some(1.0),
                )],
            });
        }
        panels
    }
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
            fio_script(&env(), 64, 2, 1000),
            kbench_script(&env(), 64, 2, 5, 1000),
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
        let k = kbench_script(&env(), 64, 1, 5, 1000);
        let f = k.find("kbench() {").unwrap();
        assert!(k[f..].find("check$i").unwrap() < k[f..].find("insmod").unwrap());
    }

    /// Runs the script's `kbench` function with the kernel's side stubbed (two devices, and
    /// result lines for three slots): the module's parameters and the function's output.
    fn run_kbench_function(script: &str, call: &str) -> (String, String) {
        let f = script.find("kbench() {").unwrap();
        let end = f + script[f..].find("\n}\n").unwrap() + 3;
        let dir = std::env::temp_dir().join(format!(
            "rxdsk-kbench-{}-{}",
            std::process::id(),
            call.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let stub = format!(
            "set -e\nfail() {{ echo \"FAIL $*\"; exit 1; }}\n\
             LABEL0=rxdsk; LABEL1=brd; LABELm={MEMCPY}; LABELc=lib-lz4; CODEC=1; DEV0=/dev/a; DEV1=/dev/b\n\
             check0() {{ DEV=$DEV0; }}; check1() {{ DEV=$DEV1; }}\n\
             cat() {{ echo 7:3; }}; rmmod() {{ :; }}\n\
             insmod() {{ echo \"$*\" > {params}; }}\n\
             dmesg() {{ [ \"$1\" = -c ] || printf 'rxdsk_bench: slot=0 dev=7:3 a\\nrxdsk_bench: slot=0 burst_ns=1\\n\
             rxdsk_bench: slot=1 dev=7:3 b\\nrxdsk_bench: slot=1 burst_ns=2\\n\
             rxdsk_bench: slot=2 dev=0:0 c\\nrxdsk_bench: slot=2 burst_ns=3\\n'; }}\n\
             BENCH_KO=ko; SPAN_MB=8\n{}\n{call}\n",
            &script[f..end],
            params = dir.join("params").display(),
        )
        .replace("/tmp/kbench.out", &dir.join("out").display().to_string());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&stub)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let params = std::fs::read_to_string(dir.join("params")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (params, stdout)
    }

    /// The codec slot (`c`) adds `codec=$CODEC`, comes last (after memcpy) and is reported
    /// under `LABELc`; every algorithm's rxdsk device meets its library on three rows.
    #[test]
    fn the_codec_slot_comes_last() {
        let (params, stdout) = run_kbench_function(
            &kbench_script(&env(), 64, 1, 5, 1000),
            "kbench '0 m c' job2",
        );
        assert!(
            params.contains(" memcpy=1 codec=1")
                && params.contains("dev0=")
                && !params.contains("dev1="),
            "{params}"
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "RXDSK-DATA kbench rxdsk job2 slot=0 dev=7:3 a burst_ns=1",
                "RXDSK-DATA kbench memcpy job2 slot=1 dev=7:3 b burst_ns=2",
                "RXDSK-DATA kbench lib-lz4 job2 slot=2 dev=0:0 c burst_ns=3",
            ],
            "{stdout}"
        );
        let script = kbench_script(&env(), 64, 1, 5, 1000);
        for (k, algorithm) in COMPRESSORS.iter().enumerate() {
            let r = COMPRESS_INDEX + 2 * k;
            assert!(script.contains(&format!(
                "CODEC={}; LABELc=lib-{algorithm}\n",
                codec_param(algorithm)
            )));
            let rows = script
                .lines()
                .filter(|l| l.starts_with(&format!("kbench '{r} c' codec-")))
                .count();
            assert_eq!(rows, CODEC_JOBS.len(), "{algorithm}");
        }
    }

    /// The script's `kbench` function, run by sh with the kernel's side stubbed: the memcpy
    /// slot (`m`) adds `memcpy=1`, takes the slot after the devices and is reported as memcpy.
    #[test]
    fn the_memcpy_slot_follows_the_devices() {
        let script = kbench_script(&env(), 64, 1, 5, 1000);
        let main_jobs: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("kbench '0 ") && l.contains("@t"))
            .collect();
        assert_eq!(main_jobs.len(), JOBS.len() + 3, "{main_jobs:?}");
        assert!(
            main_jobs.iter().all(|l| l.contains(" m' ")),
            "{main_jobs:?}"
        );
        assert!(script
            .lines()
            .filter(|l| l.contains(" fill "))
            .all(|l| !l.contains(" m'")));
        let (params, stdout) = run_kbench_function(&script, "kbench '0 1 m' job1");
        assert!(
            params.contains(" memcpy=1") && params.contains("dev1="),
            "{params}"
        );
        assert!(!params.contains("dev2="), "{params}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "RXDSK-DATA kbench rxdsk job1 slot=0 dev=7:3 a burst_ns=1",
                "RXDSK-DATA kbench brd job1 slot=1 dev=7:3 b burst_ns=2",
                "RXDSK-DATA kbench memcpy job1 slot=2 dev=0:0 c burst_ns=3",
            ],
            "{stdout}"
        );
    }

    /// rxdsk over the memcpy slot is a paired ratio like the others, and the ceiling lines
    /// judge the 1 MiB rows against 0.80.
    #[test]
    fn memcpy_is_a_ceiling_with_a_target() {
        let mut c = Console::default();
        for (t, times) in [
            ("rxdsk", "100,100,100"),
            ("brd", "100,100,100"),
            (MEMCPY, "70,70,70"),
        ] {
            c.feed(&format!(
                "RXDSK-DATA kbench {t} 1M-seqread@t1 slot=0 dev=1:0 bs=1048576 bursts=3 ios=30 errors=0 ns=1 burst_ns={times}"
            ));
        }
        let mut r = Results::default();
        parse(&c, &mut r).unwrap();
        let rows = rows(&r.samples);
        assert!((rows[0].ratio(MEMCPY).unwrap() - 0.7).abs() < 1e-9);
        let t = ceiling_table(&rows);
        assert!(
            t.contains("rxdsk/memcpy") && t.contains("0.70") && t.contains("NOT met"),
            "{t}"
        );
        assert!(table(&rows, Mode::Native, false).contains("memcpy IOPS"));
        assert_eq!(json_rows(&rows)[0]["rxdsk_vs_memcpy"], 0.7);
    }

    #[test]
    fn order_of_targets_rotates_between_repeats() {
        let s = fio_script(&env(), 64, 2, 1000);
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
        c.feed("RXDSK-DATA kbench rxdsk 4k-randread@t1 slot=0 dev=259:0 op=randread read_pct=100 bs=4096 threads=1 bursts=2 ios=1000 errors=0 ns=1000000 iops=1000000 mibps=3906 ns_per_io=1000 burst_ns=500000,500000");
        c.feed("RXDSK-DATA kbench brd 4k-randread@t1 slot=1 dev=1:0 op=randread read_pct=100 bs=4096 threads=1 bursts=2 ios=1000 errors=0 ns=2000000 iops=500000 mibps=1953 ns_per_io=2000 burst_ns=1000000,1000000");
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
        c.feed("RXDSK-DATA kbench brd 4k-randread@t1 dev=1:0 bs=4096 bursts=1 ios=10 errors=3 ns=10 burst_ns=10");
        assert!(parse(&c, &mut Results::default()).is_err());
        // A line whose burst times do not match its burst count is malformed.
        let mut c = Console::default();
        c.feed("RXDSK-DATA kbench brd 4k-randread@t1 dev=1:0 bs=4096 bursts=3 ios=30 errors=0 ns=10 burst_ns=1,2");
        assert!(parse(&c, &mut Results::default()).is_err());
    }

    /// Parses native lines `(target, comma-separated burst times)`, 1000 I/Os per burst.
    fn native_rows(lines: &[(&str, &str)]) -> Vec<Row> {
        let mut c = Console::default();
        for (t, times) in lines {
            let bursts = times.split(',').count();
            c.feed(&format!(
                "RXDSK-DATA kbench {t} 4k-randread@t1 slot=0 dev=1:0 bs=4096 bursts={bursts} ios={} errors=0 ns=1 burst_ns={times}",
                bursts * 1000
            ));
        }
        let mut r = Results::default();
        parse(&c, &mut r).unwrap();
        rows(&r.samples)
    }

    #[test]
    fn cache_rows_have_a_table_of_their_own() {
        let mut c = Console::default();
        let line = |t: &str, row: &str, times: &str| {
            format!(
                "RXDSK-DATA kbench {t} {row} slot=0 dev=1:0 bs=4096 bursts=2 ios=2000 errors=0 ns=1 burst_ns={times}"
            )
        };
        for l in [
            line(CACHE_PLAIN, "cache-hit-4k-randread@t1", "100,100"),
            line(CACHE_HIT, "cache-hit-4k-randread@t1", "100,125"),
            line("nullb-ram", "cache-miss-4k-randread@t1", "100,100"),
            line("cache-ram", "cache-miss-4k-randread@t1", "1000,1000"),
            "RXDSK-DATA cache-hit-ratio cache-ram 0.057".to_string(),
        ] {
            c.feed(&l);
        }
        let mut r = Results::default();
        parse(&c, &mut r).unwrap();
        assert!(
            rows(&r.samples).is_empty(),
            "cache rows stay out of the main table"
        );
        let t = cache_table(&r);
        // Paired: 100/100 and 100/125 give a median of 0.90; the misses 100/1000, 0.10.
        assert!(t.contains("4k-randread@t1     0.90 [0.85-0.95]"), "{t}");
        assert!(t.contains("0.10 [0.10-0.10]"), "{t}");
        assert!(t.contains("read hit ratio 0.057"), "{t}");
    }

    #[test]
    fn native_ratio_is_the_median_of_paired_bursts() {
        // Round 0: the machine slows down halfway (bursts 2 and 3 take 10x for both), which
        // moves neither the pairs' ratios nor their median; a lone hiccup in one brd burst
        // (burst 4) moves the mean but barely the median.
        let rows = native_rows(&[
            ("rxdsk", "100,100,1000,1000,100"),
            ("brd", "110,110,1100,1100,900"),
            ("null_blk", "50,50,500,500,50"),
        ]);
        let s = rows[0].ratios["brd"];
        assert_eq!(s.pairs, 5);
        assert!((s.median - 1.1).abs() < 1e-9, "{s:?}");
        assert!(
            (s.p25 - 1.1).abs() < 1e-9 && (s.p75 - 1.1).abs() < 1e-9,
            "{s:?}"
        );
        assert!((rows[0].ratio("null_blk").unwrap() - 0.5).abs() < 1e-9);
        // IOPS from the median burst: 1000 I/Os per burst, brd's median burst 900 ns.
        assert!((rows[0].iops["brd"] - 1000.0 * 1e9 / 900.0).abs() < 1e-3);
        let t = table(&rows, Mode::Native, false);
        assert!(t.contains("1.10") && t.contains("1.10-1.10"), "{t}");
        let j = json_rows(&rows);
        assert_eq!(j[0]["rxdsk_vs_brd_pairs"], 5);
    }

    #[test]
    fn pairs_only_within_a_round() {
        // Two loads: brd's first load pairs with rxdsk's first, not its second.
        let rows = native_rows(&[
            ("rxdsk", "100"),
            ("brd", "200"),
            ("rxdsk", "1000"),
            ("brd", "1000"),
        ]);
        let s = rows[0].ratios["brd"];
        assert_eq!(s.pairs, 2);
        assert!((s.median - 1.5).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn network_table_says_emulated_and_gives_the_ratio() {
        let t = network_table("TCG", 80000.0, 2000.0);
        assert!(
            t.starts_with("Network export (EMULATED: two QEMU/TCG guests"),
            "{t}"
        );
        assert!(t.contains("80000") && t.contains("2000"), "{t}");
        assert!(t.lines().last().unwrap().ends_with("0.025"), "{t}");
    }

    fn fio_json(iops: f64, bw_kib: f64, error: i32) -> String {
        format!(
            r#"{{"jobs":[{{"error":{error},"read":{{"iops":{iops},"bw":{bw_kib}}},"write":{{"iops":0,"bw":0}}}}]}}"#
        )
    }

    /// The guest's lines make the tiering table: each target's hit ratios from its counters,
    /// fio's rates, a peer that was not set up and why, rxdsk over dm-cache.
    #[test]
    fn tiering_lines_make_the_table() {
        let mut c = Console::default();
        for line in [
            format!("tiering rxdsk scan - - {}", fio_json(100.0, 102400.0, 0)),
            format!(
                "tiering rxdsk zipf 1800 200 {}",
                fio_json(2000.0, 8000.0, 0)
            ),
            format!(
                "tiering rxdsk zipf-after-scan 1700 300 {}",
                fio_json(1900.0, 7600.0, 0)
            ),
            format!(
                "tiering dm-cache zipf 1500 500 {}",
                fio_json(1500.0, 6000.0, 0)
            ),
            format!(
                "tiering dm-cache zipf-after-scan 1000 1000 {}",
                fio_json(900.0, 3600.0, 0)
            ),
            "tiering-skip bcache no make-bcache in the guest".into(),
        ] {
            c.feed(&format!("RXDSK-DATA {line}"));
        }
        let mut r = Results::default();
        parse(&c, &mut r).unwrap();
        let plan = Plan::QUICK.tiering;
        let t = Tiering::new(&r, &plan, "TCG");
        assert!(
            t.table.starts_with("Tiering (EMULATED: QEMU/TCG"),
            "{}",
            t.table
        );
        let line = |name: &str| {
            t.table
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_default()
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("rxdsk"), "0.900 2000 0.850 104.9");
        assert_eq!(line("dm-cache"), "0.750 1500 0.500 -");
        assert_eq!(line("bcache"), "not set up (no make-bcache in the guest)");
        assert!(
            t.table
                .contains("rxdsk/dm-cache Zipf hit ratio: 1.200 (target > 1); after a scan: 1.700"),
            "{}",
            t.table
        );
        assert!((t.vs_dmcache.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(t.json["rxdsk_vs_dmcache_hit_ratio"], 1.2);
        assert_eq!(t.json["targets"][0]["zipf_hit_ratio"], 0.9);
        assert_eq!(t.json["targets"][0]["zipf_reads"], json!([1800, 200]));
        assert_eq!(t.json["targets"][1]["scan_mbps"], Value::Null);
        assert_eq!(
            t.json["not_set_up"]["bcache"],
            "no make-bcache in the guest"
        );

        // The report carries the section and writes tiering.json beside latest.*.
        let rows = native_rows(&[("rxdsk", "100"), ("brd", "120")]);
        let report = Report {
            header: "h".into(),
            native_head: "NATIVE: test".into(),
            native_mem: &Results::default(),
            emulated: None,
            rows: &rows,
            network: None,
            tiering: Some(t),
        };
        assert!(report.text().contains("rxdsk/dm-cache Zipf hit ratio"));
        assert!(report.markdown().contains("rxdsk/dm-cache Zipf hit ratio"));
        let out = std::env::temp_dir().join(format!("rxdsk-tiering-{}", std::process::id()));
        report.write(&out).unwrap();
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("tiering.json")).unwrap())
                .unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        assert_eq!(json["cache_mib"], plan.cache_mb);
    }

    #[test]
    fn malformed_tiering_lines_fail_the_bench() {
        let ok = fio_json(1.0, 4.0, 0);
        for line in [
            format!("tiering rxdsk zipf x 2 {ok}"),
            format!("tiering rxdsk zipf -1 2 {ok}"),
            format!("tiering rxdsk zipf - 2 {ok}"),
            "tiering rxdsk zipf 1 2".into(),
            "tiering rxdsk zipf 1 2 not-json".into(),
            format!("tiering rxdsk zipf 1 2 {}", fio_json(1.0, 4.0, 5)),
            "tiering-skip".into(),
        ] {
            let mut c = Console::default();
            c.feed(&format!("RXDSK-DATA {line}"));
            assert!(parse(&c, &mut Results::default()).is_err(), "{line}");
        }
    }

    /// The best a cache of 32 MiB can do over 256 MiB under Zipf(1.2) (computed elsewhere:
    /// H(8192, 1.2) / H(65536, 1.2) = 0.944), and 1 when everything fits.
    #[test]
    fn tiering_ideal_hit_ratio() {
        let plan = Plan::QUICK.tiering;
        assert_eq!((plan.region_mb, plan.cache_mb), (256, 32));
        assert!((plan.ideal_hit_ratio() - 0.9444).abs() < 1e-3);
        let all = TieringPlan {
            cache_mb: 512,
            ..plan
        };
        assert!((all.ideal_hit_ratio() - 1.0).abs() < 1e-12);
    }

    /// The trace is reproducible, stays in the region, follows the distribution (rank 1 draws
    /// 1/H(n, θ) of the reads) and scatters the ranks (no two share a page).
    #[test]
    fn zipf_trace_is_zipf() {
        let (pages, n) = (65536, 200_000);
        let t = zipf_trace(pages, 1.2, n, 7);
        assert_eq!(t, zipf_trace(pages, 1.2, n, 7));
        assert_ne!(t, zipf_trace(pages, 1.2, n, 8));
        assert!(t.iter().all(|p| *p < pages));
        let mut counts: std::collections::HashMap<u64, usize> = Default::default();
        for p in &t {
            *counts.entry(*p).or_default() += 1;
        }
        let mut by_count: Vec<usize> = counts.values().copied().collect();
        by_count.sort_unstable_by(|a, b| b.cmp(a));
        let h: f64 = (1..=pages).map(|r| (r as f64).powf(-1.2)).sum();
        let top = by_count[0] as f64 / n as f64;
        assert!((top - 1.0 / h).abs() < 0.01, "{top} against {}", 1.0 / h);
        // Rank 2 draws 2^-1.2 of rank 1's.
        let second = by_count[1] as f64 / by_count[0] as f64;
        assert!((second - 2f64.powf(-1.2)).abs() < 0.03, "{second}");
        // A region that is not a power of two still gets every rank its own page.
        let odd = zipf_trace(1000, 0.5, 50_000, 1);
        assert!(odd.iter().all(|p| *p < 1000));
        assert!(odd.iter().collect::<std::collections::HashSet<_>>().len() > 900);
    }

    #[test]
    fn lru_reference() {
        // Capacity 2: 1 2 1 3 leaves {1, 3}; then 1 hits, 2 and 3 miss.
        assert!((lru_hit_ratio(&[1, 2, 1, 3], &[1, 2, 3], 2) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(lru_hit_ratio(&[], &[5, 5, 5, 5], 1), 0.75);
        // A cache of the region's size misses each page once.
        assert_eq!(lru_hit_ratio(&[1, 2], &[1, 2, 3, 3], 4), 0.75);
        let (lru, after_scan) = Plan::QUICK.tiering.lru_hit_ratios();
        assert!(lru > after_scan && lru < Plan::QUICK.tiering.ideal_hit_ratio());
    }

    /// The run script calls the guest script with the plan, the traces are iologs of the
    /// plan's lengths where the script reads them, and the guest script reports every target
    /// under the label the table expects.
    #[test]
    fn tiering_script_matches_the_guest_script() {
        let plan = Plan::QUICK.tiering;
        let run = plan.script();
        assert!(
            run.contains("REGION_MB=256 CACHE_MB=32 TRACES=/etc/rxdsk-tiering")
                && run.ends_with("sh /usr/share/rxdsk-tests/bench-tiering.sh"),
            "{run}"
        );
        let files = plan.trace_files();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/rxdsk-tiering/warm.iolog",
                "etc/rxdsk-tiering/zipf.iolog",
                "etc/rxdsk-tiering/zipf-after-scan.iolog"
            ]
        );
        for ((_, data), ios) in files.iter().zip([plan.warm_ios, plan.ios, plan.ios]) {
            let text = String::from_utf8_lossy(data);
            assert!(text.starts_with("fio version 2 iolog\n/dev/tier add\n/dev/tier open\n"));
            assert!(text.ends_with("/dev/tier close\n"));
            assert_eq!(
                text.lines().filter(|l| l.contains(" read ")).count(),
                ios as usize
            );
        }
        let guest =
            std::fs::read_to_string(crate::paths::repo().join("qemu-tests/guest/bench-tiering.sh"))
                .unwrap();
        for label in TIERING_TARGETS {
            assert!(
                guest
                    .lines()
                    .any(|l| l.starts_with("bench_target ") && l.ends_with(&format!(" {label}"))),
                "{label}"
            );
        }
        for phase in ["replay warm", "measure zipf", "measure zipf-after-scan"] {
            assert!(guest.contains(&format!("\t{phase}\n")), "{phase}");
        }
        assert!(guest.contains("RXDSK-DATA tiering $LABEL $1 $2 $3"));
        assert!(plan.disk_bytes() > u64::from(plan.region_mb) << 20);
    }

    #[test]
    fn native_only_report_writes_every_file() {
        let rows = native_rows(&[("rxdsk", "100,100"), ("brd", "120,120")]);
        let mut mem = Results::default();
        mem.mem_kib.insert("rxdsk".into(), (1024.0, 1024.0));
        let report = Report {
            header: "rxdsk bench (native only)".into(),
            native_head: "NATIVE: test".into(),
            native_mem: &mem,
            emulated: None,
            rows: &rows,
            network: None,
            tiering: None,
        };
        let out = std::env::temp_dir().join(format!("rxdsk-report-{}", std::process::id()));
        report.write(&out).unwrap();
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("latest.json")).unwrap())
                .unwrap();
        assert_eq!(json[0]["mode"], "native");
        assert_eq!(json[0]["rxdsk_vs_brd"], 1.2);
        let md = std::fs::read_to_string(out.join("latest.md")).unwrap();
        assert!(
            md.contains("## NATIVE: test") && !md.contains("EMULATED"),
            "{md}"
        );
        let txt = std::fs::read_to_string(out.join("latest.txt")).unwrap();
        assert_eq!(txt, report.text());
        assert!(txt.contains("native (UML) RAM cost") && !txt.contains("emulated"));
        for f in ["latest.png", "latest.svg"] {
            assert!(out.join(f).is_file(), "{f}");
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}
