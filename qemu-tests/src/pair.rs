//! The two-guest NVMe/TCP test (issue 15). `cargo xtask` boots two guests joined by one
//! virtio-net link (QEMU's socket netdev over the host's 127.0.0.1); each runs one role:
//! - `rxdsk-guest-tests pair-target`: exports an rxdsk device over NVMe/TCP on its IPv6
//!   link-local address for one host that must authenticate (DH-HMAC-CHAP, bidirectional,
//!   with secrets from `rxdskctl gen-dhchap-key`) and serves the host's requests on a control
//!   connection, where it also hands the host the secrets and the identity it derived;
//! - `rxdsk-guest-tests pair-host TARGET-LINK-LOCAL`: checks that a host not on the allow
//!   list is refused, and so is the allowed host without a secret, with a wrong one, or with
//!   a wrong controller secret; connects with the right ones, checks the serial number, UUID
//!   and NGUID it sees against the target's, the bytes both ways, runs fio verify on it,
//!   measures remote and (through the target) local IOPS, asks for a grow and waits to see
//!   it.
//!
//! Each role prints `RXDSK-DATA pair-<role> ok` or `... failed: why`; the host also prints
//! `RXDSK-DATA nvme-iops local N` and `... remote N` for the bench.

use crate::blk::{self, open_direct, read_at, write_at, AlignedBuf, MIB};
use crate::datapath::fio_verify;
use crate::export::{
    disconnect, exports_json, fabrics_connect, fabrics_connect_auth, mount_configfs,
    open_namespace, sectors, HOST_B,
};
use crate::harness::{cmd, cmd_ok, cmd_timeout, debug_kernel, ensure, wait_until, TestResult};
use crate::rxdsk::Device;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv6Addr, SocketAddrV6, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const IFACE: &str = "eth0";
/// The NVMe/TCP port (the IANA one) and the control connection's.
const NVME_PORT: u16 = 4420;
const CONTROL_PORT: u16 = 4421;
/// Not on the target's allow list.
const HOST_C: &str = "nqn.2026-12.io.rxdsk:test-host-c";
const DEVICE_SIZE: u64 = 64 * MIB;
const GROWN_SIZE: u64 = 128 * MIB;
/// How long each side of the IOPS comparison runs.
const IOPS_SECONDS: u32 = 5;
/// The target's files of HOST_B's DH-HMAC-CHAP secret and of the controller's.
const HOST_SECRET: &str = "/tmp/rxdsk-host-b.key";
const CTRL_SECRET: &str = "/tmp/rxdsk-ctrl.key";
/// The Diffie-Hellman group of the exchange: not null, so that it is exercised.
const DHGROUP: &str = "ffdhe2048";

/// Brings `IFACE` up and waits for its link-local address to pass duplicate address
/// detection; the address and the interface's index (its scope id).
fn link_up() -> Result<(Ipv6Addr, u32), String> {
    step(&format!("bringing {IFACE} up"));
    cmd_ok("ip", &["link", "set", IFACE, "up"])?;
    let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{IFACE}/ifindex"))
        .map_err(|e| format!("{IFACE}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{IFACE} ifindex: {e}"))?;
    let mut found = None;
    let ready = wait_until(Duration::from_secs(60), || {
        found = link_local();
        found.is_some()
    });
    match found {
        Some(addr) if ready => Ok((addr, index)),
        _ => Err(format!(
            "{IFACE} has no usable link-local address after 60 s:\n{}",
            std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default()
        )),
    }
}

/// Progress on the console: a stuck role shows where it is.
fn step(what: &str) {
    println!("pair: {what}");
}

/// `IFACE`'s link-local address once it is no longer tentative.
fn link_local() -> Option<Ipv6Addr> {
    const IFA_F_TENTATIVE: u32 = 0x40;
    let table = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _plen, _scope, flags, name] = f.as_slice() else {
            return None;
        };
        let flags = u32::from_str_radix(flags, 16).ok()?;
        let bits = u128::from_str_radix(hex, 16).ok()?;
        let addr = Ipv6Addr::from(bits);
        (*name == IFACE && addr.segments()[0] == 0xfe80 && flags & IFA_F_TENTATIVE == 0)
            .then_some(addr)
    })
}

/// 4k random reads at queue depth 16 on `dev` for `seconds`: fio's IOPS.
fn fio_iops(dev: &str, seconds: u32) -> Result<f64, String> {
    let out = cmd_timeout(
        "fio",
        &[
            "--name=iops",
            &format!("--filename={dev}"),
            "--direct=1",
            "--ioengine=io_uring",
            "--iodepth=16",
            "--rw=randread",
            "--bs=4k",
            "--size=64M",
            "--time_based",
            &format!("--runtime={seconds}"),
            "--output-format=json",
        ],
        &[],
        Duration::from_secs(u64::from(seconds) + 120),
    )?;
    let start = out.stdout.find('{').unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout[start..])
        .map_err(|e| format!("fio on {dev}: exit {}: {e}: {}", out.status, out.stderr))?;
    v["jobs"][0]["read"]["iops"]
        .as_f64()
        .filter(|&iops| out.status == 0 && iops > 0.0)
        .ok_or_else(|| format!("fio on {dev}: exit {}, no IOPS: {}", out.status, out.stderr))
}

/// Prints a role's verdict where `cargo xtask` looks for it; the process exit status.
fn verdict(role: &str, result: TestResult) -> i32 {
    match result {
        Ok(()) => {
            println!("RXDSK-DATA pair-{role} ok");
            0
        }
        Err(why) => {
            for line in why.lines() {
                println!("# {line}");
            }
            let first = why.lines().next().unwrap_or("");
            println!("RXDSK-DATA pair-{role} failed: {first}");
            1
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The target

pub fn target_main(_args: &[String]) -> i32 {
    verdict("target", target())
}

fn target() -> TestResult {
    step("target: starting");
    mount_configfs()?;
    let (addr, scope) = link_up()?;
    // The Diffie-Hellman groups of DH-HMAC-CHAP (the kernel would load it on demand too).
    cmd_ok("modprobe", &["dh_generic"])?;
    step(&format!("{IFACE} has {addr}; exporting"));
    let dev = Device::create(DEVICE_SIZE, 4096)?;
    let traddr = format!("{addr}%{IFACE}");
    // The host's secret transformed with SHA-256, the controller's with SHA-384 (48 bytes).
    cmd_ok(
        "rxdskctl",
        &["gen-dhchap-key", "-m", "1", "-o", HOST_SECRET],
    )?;
    cmd_ok(
        "rxdskctl",
        &["gen-dhchap-key", "-m", "2", "-o", CTRL_SECRET],
    )?;
    let host_secret = format!("@{HOST_SECRET}");
    let ctrl_secret = format!("@{CTRL_SECRET}");
    // Any host, and a secret: refused (nvmet would authenticate nobody), nothing exported.
    let any = cmd(
        "rxdskctl",
        &[
            "export",
            "--address",
            &traddr,
            "--allow-any-host",
            "--dhchap-secret",
            &host_secret,
            &dev.path,
        ],
    )?;
    ensure(
        any.status == 1
            && any
                .stderr
                .contains("--allow-any-host turns authentication off")
            && cmd_ok("rxdskctl", &["exports"])?.stdout.is_empty(),
        || {
            format!(
                "export --allow-any-host with a secret: exit {}, {:?}",
                any.status, any.stderr
            )
        },
    )?;
    cmd_ok(
        "rxdskctl",
        &[
            "export",
            "--transport",
            "tcp",
            "--address",
            &traddr,
            "--port",
            &NVME_PORT.to_string(),
            "--allow-host",
            HOST_B,
            "--dhchap-secret",
            &host_secret,
            "--dhchap-ctrl-secret",
            &ctrl_secret,
            "--dhchap-dhgroup",
            DHGROUP,
            &dev.path,
        ],
    )?;
    let (json, v) = exports_json()?;
    let nqn = format!("nqn.2026-12.io.rxdsk:rxd{}", dev.id);
    let e = &v["exports"][0];
    ensure(
        e["nqn"] == nqn.as_str() && e["transport"] == "tcp" && e["address"] == traddr.as_str(),
        || format!("exports -J: {json}"),
    )?;
    ensure(
        e["authenticated-hosts"]
            == serde_json::json!([{
                "nqn": HOST_B, "hash": "hmac(sha256)", "dhgroup": DHGROUP, "bidirectional": true
            }])
            && !json.contains("DHHC-1"),
        || {
            format!(
                "exports -J does not show the authentication as set (or shows a secret): {json}"
            )
        },
    )?;
    // What the target derived from the NQN, for the host to compare with what it sees.
    let identity: Vec<String> = ["serial", "uuid", "nguid"]
        .iter()
        .map(|k| e[k].as_str().unwrap_or_default().to_string())
        .collect();
    ensure(identity.iter().all(|i| !i.is_empty()), || {
        format!("exports -J has no serial, uuid or nguid: {json}")
    })?;
    let secrets: Vec<String> = [HOST_SECRET, CTRL_SECRET]
        .iter()
        .map(|f| std::fs::read_to_string(f).map(|s| s.trim().to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the secret files: {e}"))?;
    let listener = TcpListener::bind(SocketAddrV6::new(addr, CONTROL_PORT, 0, scope))
        .map_err(|e| format!("control listener on [{traddr}]:{CONTROL_PORT}: {e}"))?;
    step(&format!(
        "exported {nqn} on [{traddr}]:{NVME_PORT}, waiting for the host"
    ));
    let stream = accept(&listener, Duration::from_secs(900))?;
    let ready = format!(
        "ready {nqn} {DEVICE_SIZE} {} {}",
        identity.join(" "),
        secrets.join(" ")
    );
    let served = serve(stream, &dev, &ready);
    // Whatever happened, leave nothing exported behind (a failed unexport is its own error).
    let left = cmd("rxdskctl", &["unexport", &dev.path]);
    served?;
    let left = left?;
    ensure(
        left.status != 0 && left.stderr.contains("not exported"),
        || {
            format!(
                "the export outlived `done`: {} {}",
                left.status, left.stderr
            )
        },
    )?;
    dev.destroy()
}

fn accept(listener: &TcpListener, within: Duration) -> Result<TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("control listener: {e}"))?;
    let deadline = Instant::now() + within;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("control connection: {e}"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(format!("no host connected within {within:?}"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("control accept: {e}")),
        }
    }
}

/// Says `ready` (the first line), then answers the host's requests, one line each, until
/// `done`; an error if any failed.
fn serve(stream: TcpStream, dev: &Device, ready: &str) -> TestResult {
    let mut out = stream
        .try_clone()
        .map_err(|e| format!("control connection: {e}"))?;
    let mut failures = Vec::new();
    writeln!(out, "{ready}").map_err(|e| format!("control: {e}"))?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("control: {e}"))?;
        step(&format!("request: {line}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match answer(&words, dev) {
            Ok(a) => a,
            Err(why) => {
                failures.push(format!("{line}: {why}"));
                format!("error {}", why.lines().next().unwrap_or(""))
            }
        };
        writeln!(out, "{answer}").map_err(|e| format!("control: {e}"))?;
        if words.first() == Some(&"done") {
            return ensure(failures.is_empty(), || failures.join("\n"));
        }
    }
    Err(format!(
        "the host went away before `done`{}",
        failures
            .iter()
            .map(|f| format!("\n{f}"))
            .collect::<String>()
    ))
}

fn number(words: &[&str], i: usize) -> Result<u64, String> {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad request {words:?}"))
}

fn answer(words: &[&str], dev: &Device) -> Result<String, String> {
    match words.first().copied() {
        // The device's bytes at OFFSET are pattern KEY/SEQ (written by the host).
        Some("check") | Some("write") => {
            let (key, seq, off, len) = (
                number(words, 1)?,
                number(words, 2)?,
                number(words, 3)?,
                number(words, 4)?,
            );
            let f = open_direct(&dev.path, true)?;
            let mut want = AlignedBuf::zeroed(len as usize)?;
            blk::fill_keyed(&mut want[..], key, seq);
            if words[0] == "write" {
                write_at(&f, &want[..], off).map_err(|e| format!("write {}: {e}", dev.path))?;
                return Ok("written".into());
            }
            let mut got = AlignedBuf::zeroed(len as usize)?;
            read_at(&f, &mut got[..], off).map_err(|e| format!("read {}: {e}", dev.path))?;
            ensure(got[..] == want[..], || {
                format!("the device's bytes at {off} are not what the host wrote")
            })?;
            Ok("same".into())
        }
        Some("iops") => Ok(format!(
            "iops {:.0}",
            fio_iops(&dev.path, number(words, 1)? as u32)?
        )),
        Some("destroy") => {
            let out = cmd("rxdskctl", &["destroy", &dev.path])?;
            ensure(out.status != 0 && out.stderr.contains("busy"), || {
                format!(
                    "destroy of the exported device: exit {} {}",
                    out.status, out.stderr
                )
            })?;
            Ok("busy".into())
        }
        Some("grow") => {
            cmd_ok(
                "rxdskctl",
                &["resize", &dev.path, &number(words, 1)?.to_string()],
            )?;
            Ok("grown".into())
        }
        Some("refused") => {
            let host = words.get(1).ok_or("refused: which host?")?;
            let log = cmd_ok("dmesg", &[])?.stdout;
            ensure(
                log.lines()
                    .any(|l| l.contains(host) && l.contains("not allowed")),
                || format!("the target's kernel log shows no refusal of {host}"),
            )?;
            Ok("seen".into())
        }
        Some("done") => {
            cmd_ok("rxdskctl", &["unexport", &dev.path])?;
            ensure(cmd_ok("rxdskctl", &["exports"])?.stdout.is_empty(), || {
                "exports not empty after unexport".into()
            })?;
            let ports = std::fs::read_dir("/sys/kernel/config/nvmet/ports")
                .map(|d| d.count())
                .unwrap_or(0);
            ensure(ports == 0, || format!("{ports} nvmet port(s) left"))?;
            Ok("clean".into())
        }
        _ => Err(format!("unknown request {words:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The host

pub fn host_main(args: &[String]) -> i32 {
    let result = match args.first().map(|a| a.parse::<Ipv6Addr>()) {
        Some(Ok(target)) => host(target),
        _ => Err(format!(
            "usage: pair-host TARGET-LINK-LOCAL-ADDRESS (got {args:?})"
        )),
    };
    verdict("host", result)
}

/// The control connection to the target, one request and answer at a time.
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    fn connect(target: SocketAddrV6, within: Duration) -> Result<Self, String> {
        let deadline = Instant::now() + within;
        let stream = loop {
            match TcpStream::connect_timeout(&target.into(), Duration::from_secs(5)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("control connection to {target}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        };
        // fio on the target under TCG takes its time.
        stream
            .set_read_timeout(Some(Duration::from_secs(600)))
            .map_err(|e| format!("control: {e}"))?;
        let writer = stream.try_clone().map_err(|e| format!("control: {e}"))?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("control: {e}"))?;
        ensure(!line.is_empty(), || {
            "the target closed the control connection".into()
        })?;
        Ok(line.trim().to_string())
    }

    /// Sends `request`; the answer, which must start with `expect`.
    fn ask(&mut self, request: &str, expect: &str) -> Result<String, String> {
        writeln!(self.writer, "{request}").map_err(|e| format!("control: {e}"))?;
        let answer = self.line()?;
        ensure(answer.starts_with(expect), || {
            format!("target answered {request:?} with {answer:?}")
        })?;
        Ok(answer)
    }
}

fn host(target: Ipv6Addr) -> TestResult {
    step("host: starting");
    cmd_ok("modprobe", &["nvme-tcp"])?;
    // The Diffie-Hellman groups of DH-HMAC-CHAP (the kernel would load it on demand too).
    cmd_ok("modprobe", &["dh_generic"])?;
    let (addr, scope) = link_up()?;
    step(&format!(
        "{IFACE} has {addr}; calling the target at {target}"
    ));
    let mut control = Control::connect(
        SocketAddrV6::new(target, CONTROL_PORT, 0, scope),
        Duration::from_secs(900),
    )?;
    let ready = control.line()?;
    // The subsystem, the identity the target derived, HOST_B's secret and the controller's.
    let words: Vec<String> = ready.split_whitespace().map(str::to_string).collect();
    let (nqn, identity, secret, ctrl_secret) = match words.as_slice() {
        [r, nqn, size, serial, uuid, nguid, secret, ctrl_secret]
            if r == "ready" && size.parse() == Ok(DEVICE_SIZE) =>
        {
            (nqn, [serial, uuid, nguid], secret, ctrl_secret)
        }
        _ => return Err(format!("target said {ready:?}")),
    };
    let transport = format!("transport=tcp,traddr={target}%{IFACE},trsvcid={NVME_PORT}");
    // A host not on the allow list is refused, and the target's kernel says so.
    ensure(fabrics_connect(&transport, nqn, HOST_C).is_err(), || {
        format!("{HOST_C} connected though not allowed")
    })?;
    control.ask(&format!("refused {HOST_C}"), "seen")?;
    // The allowed host must authenticate: no secret, a wrong one (the same form, other
    // bytes), or the right one with a wrong controller secret (the target fails to prove
    // itself) are all refused.
    let wrong = cmd_ok("rxdskctl", &["gen-dhchap-key", "-m", "1"])?.stdout;
    let wrong_ctrl = cmd_ok("rxdskctl", &["gen-dhchap-key", "-m", "2"])?.stdout;
    // A target that fails an authentication may drop the connection without an answer; the
    // host then waits out its admin timeout (60 s) before it gives up: 15 s for these
    // attempts (an authentication takes 1 to 2 s on the debug kernel under TCG).
    let timeout_knob = "/sys/module/nvme_core/parameters/admin_timeout";
    let default_timeout =
        std::fs::read_to_string(timeout_knob).map_err(|e| format!("{timeout_knob}: {e}"))?;
    std::fs::write(timeout_knob, "15").map_err(|e| format!("{timeout_knob}: {e}"))?;
    for (what, s, c) in [
        ("without a secret", None, None),
        (
            "with a wrong secret",
            Some(wrong.trim()),
            Some(ctrl_secret.as_str()),
        ),
        (
            "with a wrong controller secret",
            Some(secret.as_str()),
            Some(wrong_ctrl.trim()),
        ),
    ] {
        step(&format!("connecting {what}"));
        match fabrics_connect_auth(&transport, nqn, HOST_B, s, c) {
            Err(why) => step(&format!("refused: {why}")),
            Ok(instance) => {
                let _ = disconnect(instance);
                return Err(format!("{HOST_B} connected {what}"));
            }
        }
    }
    std::fs::write(timeout_knob, default_timeout.trim())
        .map_err(|e| format!("{timeout_knob}: {e}"))?;
    step("connecting over NVMe/TCP with the secrets");
    let instance = fabrics_connect_auth(&transport, nqn, HOST_B, Some(secret), Some(ctrl_secret))?;
    let result =
        same_identity(instance, identity).and_then(|()| remote_checks(&mut control, instance));
    let gone = disconnect(instance);
    result?;
    gone?;
    control.ask("done", "clean")?;
    Ok(())
}

/// The serial number of controller `instance` and the UUID and NGUID of its namespace are
/// what the target derived from the NQN (`[serial, uuid, nguid]`).
fn same_identity(instance: u32, identity: [&String; 3]) -> TestResult {
    let (ns, _) = open_namespace(instance)?;
    let disk = ns.trim_start_matches("/dev/");
    let read = |path: String| {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{path}: {e}"))
    };
    let seen = [
        read(format!("/sys/class/nvme/nvme{instance}/serial"))?,
        read(format!("/sys/block/{disk}/uuid"))?,
        read(format!("/sys/block/{disk}/nguid"))?,
    ];
    ensure(seen.iter().zip(identity).all(|(s, i)| s == i), || {
        format!("the host sees serial, uuid, nguid {seen:?}, the target derived {identity:?}")
    })
}

fn remote_checks(control: &mut Control, instance: u32) -> TestResult {
    let (ns, remote) = open_namespace(instance)?;
    ensure(sectors(&ns) == DEVICE_SIZE / 512, || {
        format!("{ns}: {} sectors, want {}", sectors(&ns), DEVICE_SIZE / 512)
    })?;
    // Bytes written over the network are the device's, and the other way round.
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    blk::fill_keyed(&mut buf[..], 21, 1);
    write_at(&remote, &buf[..], 8 * MIB).map_err(|e| format!("write {ns}: {e}"))?;
    control.ask(&format!("check 21 1 {} {MIB}", 8 * MIB), "same")?;
    control.ask(&format!("write 21 2 {} {MIB}", 40 * MIB), "written")?;
    let mut want = AlignedBuf::zeroed(MIB as usize)?;
    blk::fill_keyed(&mut want[..], 21, 2);
    read_at(&remote, &mut buf[..], 40 * MIB).map_err(|e| format!("read {ns}: {e}"))?;
    ensure(buf[..] == want[..], || {
        "the device's bytes read differently over NVMe/TCP".into()
    })?;
    drop(remote);
    // fio verify through the remote namespace: 32 MiB of mixed-size random writes (8 MiB
    // under KASAN, where the bench's IOPS would mean nothing either).
    if debug_kernel() {
        fio_verify(&ns, "fio-remote-debug.fio", 4 * MIB)?;
    } else {
        fio_verify(&ns, "fio-backing.fio", 32 * MIB)?;
        // The bench's comparison: the same reads here over the network, and there locally.
        let remote_iops = fio_iops(&ns, IOPS_SECONDS)?;
        let local = control.ask(&format!("iops {IOPS_SECONDS}"), "iops ")?;
        println!("RXDSK-DATA nvme-iops remote {remote_iops:.0}");
        println!(
            "RXDSK-DATA nvme-iops local {}",
            local.trim_start_matches("iops ")
        );
    }
    // The target holds the device: it cannot be destroyed under us.
    control.ask("destroy", "busy")?;
    // A grow on the target reaches this host.
    control.ask(&format!("grow {GROWN_SIZE}"), "grown")?;
    ensure(
        wait_until(Duration::from_secs(60), || sectors(&ns) == GROWN_SIZE / 512),
        || {
            format!(
                "{ns} still has {} sectors after the grow to {GROWN_SIZE}",
                sectors(&ns)
            )
        },
    )
}
