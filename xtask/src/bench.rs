//! `cargo xtask bench`: fio in one guest boot against rxdsk and the RAM disks it is compared
//! with, printed as a table of IOPS with the rxdsk/brd ratio.

use crate::console::Console;
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One fio job shape.
#[derive(Clone, Copy)]
pub struct Job {
    pub name: &'static str,
    pub rw: &'static str,
    pub bs: &'static str,
    pub iodepth: u32,
}

pub const QUICK_JOBS: &[Job] = &[
    Job {
        name: "4k-randread",
        rw: "randread",
        bs: "4k",
        iodepth: 32,
    },
    Job {
        name: "4k-randwrite",
        rw: "randwrite",
        bs: "4k",
        iodepth: 32,
    },
];

/// A device under test: its label and how the guest sets it up and checks it.
pub struct Target {
    pub label: &'static str,
    /// Shell that sets `DEV` to the device path.
    pub setup: &'static str,
    /// Shell that exits non-zero unless `$DEV` is a block device of this driver.
    pub check: &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        label: "rxdsk",
        setup: "DEV=$(rxdskctl create --size ${SIZE_MB}M --block-size 4096)",
        check: "rxdskctl list -n -o NAME | grep -qx \"$DEV\"",
    },
    Target {
        label: "brd",
        setup: "modprobe brd rd_nr=1 rd_size=$((SIZE_MB * 1024)) max_part=0 && DEV=/dev/ram0",
        check: "[ -d /sys/module/brd ] && [ -d /sys/block/ram0 ]",
    },
];

/// The guest script: set up every target, pre-fill it, run every job on every target, and
/// print each fio result as one `RXDSK-DATA bench TARGET JOB JSON` line.
pub fn guest_script(jobs: &[Job], size_mb: u32, runtime_s: u32) -> String {
    let mut s = format!(
        "set -e\nSIZE_MB={size_mb}\nNCPU=$(nproc)\n\
         fail() {{ echo \"bench: $*\" >&2; exit 1; }}\n"
    );
    for (i, t) in TARGETS.iter().enumerate() {
        s += &format!("{}\nDEV{i}=$DEV\n", t.setup);
        // fio silently creates a regular file at a missing /dev path: check before each use.
        s += &format!(
            "check{i}() {{ DEV=$DEV{i}; [ -b \"$DEV\" ] || fail \"$DEV is not a block device\"; {} || fail \"$DEV is not a {} device\"; }}\n",
            t.check, t.label
        );
        s += &format!(
            "check{i}; fio --name=fill --filename=$DEV --rw=write --bs=1M --direct=1 --size=${{SIZE_MB}}M >/dev/null\n"
        );
    }
    for job in jobs {
        for (i, t) in TARGETS.iter().enumerate() {
            s += &format!(
                "check{i}; fio --name={name} --filename=$DEV --rw={rw} --bs={bs} --direct=1 --ioengine=io_uring \
                 --iodepth={qd} --numjobs=$NCPU --group_reporting --time_based --runtime={runtime_s} \
                 --size=${{SIZE_MB}}M --output-format=json --output=/tmp/fio.json >/dev/null\n\
                 echo \"RXDSK-DATA bench {label} {name} $(tr -d '\\n' < /tmp/fio.json)\"\n",
                name = job.name,
                rw = job.rw,
                bs = job.bs,
                qd = job.iodepth,
                label = t.label,
            );
        }
    }
    s
}

/// IOPS of one fio JSON result (read + write, over all jobs).
fn iops(json: &Value) -> Option<f64> {
    let jobs = json.get("jobs")?.as_array()?;
    let mut total = 0.0;
    for j in jobs {
        if j.get("error").and_then(Value::as_i64).unwrap_or(0) != 0 {
            return None;
        }
        total +=
            j["read"]["iops"].as_f64().unwrap_or(0.0) + j["write"]["iops"].as_f64().unwrap_or(0.0);
    }
    Some(total)
}

/// One measured cell.
pub struct Cell {
    pub target: String,
    pub job: String,
    pub iops: f64,
}

pub fn parse(console: &Console) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for line in &console.data {
        let Some(rest) = line.strip_prefix("bench ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(target), Some(job), Some(json)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("malformed bench line: {line:.120}");
        };
        let value: Value =
            serde_json::from_str(json).with_context(|| format!("fio JSON of {target} {job}"))?;
        let iops =
            iops(&value).with_context(|| format!("fio reported an error for {target} {job}"))?;
        cells.push(Cell {
            target: target.into(),
            job: job.into(),
            iops,
        });
    }
    Ok(cells)
}

/// The terminal table: one row per job, IOPS per target, and rxdsk/brd.
pub fn table(cells: &[Cell], jobs: &[Job]) -> String {
    let mut out = format!("{:<16}", "job");
    for t in TARGETS {
        out += &format!("{:>14}", format!("{} IOPS", t.label));
    }
    out += &format!("{:>14}\n", "rxdsk/brd");
    for job in jobs {
        let get = |label: &str| {
            cells
                .iter()
                .find(|c| c.job == job.name && c.target == label)
                .map(|c| c.iops)
        };
        out += &format!("{:<16}", job.name);
        for t in TARGETS {
            out += &match get(t.label) {
                Some(v) => format!("{v:>14.0}"),
                None => format!("{:>14}", "-"),
            };
        }
        out += &match (get("rxdsk"), get("brd")) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:>14.2}\n", a / b),
            _ => format!("{:>14}\n", "-"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_json_and_prints_ratio() {
        let mut console = Console::default();
        let fio = |iops: f64| {
            format!(r#"{{"jobs":[{{"error":0,"read":{{"iops":{iops}}},"write":{{"iops":0}}}}]}}"#)
        };
        console.feed(&format!(
            "RXDSK-DATA bench rxdsk 4k-randread {}",
            fio(1200.0)
        ));
        console.feed(&format!("RXDSK-DATA bench brd 4k-randread {}", fio(1000.0)));
        let cells = parse(&console).unwrap();
        assert_eq!(cells.len(), 2);
        let t = table(&cells, &QUICK_JOBS[..1]);
        assert!(t.contains("1200"), "{t}");
        assert!(t.contains("1.20"), "{t}");
    }

    #[test]
    fn fio_error_is_an_error() {
        let mut console = Console::default();
        console
            .feed(r#"RXDSK-DATA bench brd 4k-randread {"jobs":[{"error":5,"read":{"iops":1}}]}"#);
        assert!(parse(&console).is_err());
    }

    #[test]
    fn script_checks_every_device_before_each_job() {
        let s = guest_script(QUICK_JOBS, 64, 3);
        let fio_jobs = s.matches("--output-format=json").count();
        assert_eq!(fio_jobs, QUICK_JOBS.len() * TARGETS.len());
        for line in s.lines().filter(|l| l.contains("--output-format=json")) {
            assert!(
                line.starts_with("check"),
                "fio without a device check: {line}"
            );
        }
    }
}
