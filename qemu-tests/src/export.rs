//! NVMe-over-Fabrics export (issue 15), within one guest over nvme-loop: `rxdskctl export`
//! builds the nvmet subsystem, namespace, allowed host and port in configfs; an allowed host
//! connects and reads and writes the device; another host is refused; a grow reaches the host;
//! the export keeps the device from being destroyed; exported again with a DH-HMAC-CHAP
//! secret, the host is refused without it and connects with it, and sees the serial number
//! and UUID `exports` shows; `unexport` leaves nothing behind.

use crate::blk::{self, open_direct, read_at, write_at, AlignedBuf, MIB};
use crate::harness::{cmd, cmd_ok, ensure, wait_until, TestResult};
use crate::rxdsk::Device;
use std::io::{Read, Write};
use std::time::Duration;

pub const HOST_A: &str = "nqn.2026-12.io.rxdsk:test-host-a";
pub const HOST_B: &str = "nqn.2026-12.io.rxdsk:test-host-b";

/// Each host NQN needs a host id of its own (the fabrics core refuses a second NQN for one id).
fn host_id(hostnqn: &str) -> &'static str {
    if hostnqn == HOST_A {
        "6e2a0d64-7278-4473-8b00-00000000000a"
    } else {
        "6e2a0d64-7278-4473-8b00-00000000000b"
    }
}

/// Connects to `nqn` over nvme-loop as `hostnqn`; the controller's instance number.
fn connect(nqn: &str, hostnqn: &str) -> Result<u32, String> {
    fabrics_connect("transport=loop", nqn, hostnqn)
}

/// Writes a connect request (`transport` and its address options, then the subsystem and
/// host) to /dev/nvme-fabrics; the controller's instance number.
pub fn fabrics_connect(transport: &str, nqn: &str, hostnqn: &str) -> Result<u32, String> {
    fabrics_connect_auth(transport, nqn, hostnqn, None, None)
}

/// [`fabrics_connect`] with DH-HMAC-CHAP: the host's secret (`dhchap_secret=`, what `nvme
/// connect --dhchap-secret` writes) and the controller's (`dhchap_ctrl_secret=`).
pub fn fabrics_connect_auth(
    transport: &str,
    nqn: &str,
    hostnqn: &str,
    secret: Option<&str>,
    ctrl_secret: Option<&str>,
) -> Result<u32, String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/nvme-fabrics")
        .map_err(|e| format!("/dev/nvme-fabrics: {e}"))?;
    let mut request = format!(
        "{transport},nqn={nqn},hostnqn={hostnqn},hostid={}",
        host_id(hostnqn)
    );
    if let Some(s) = secret {
        request += &format!(",dhchap_secret={s}");
    }
    if let Some(c) = ctrl_secret {
        request += &format!(",dhchap_ctrl_secret={c}");
    }
    f.write_all(request.as_bytes())
        .map_err(|e| format!("connect as {hostnqn}: {e}"))?;
    let mut answer = String::new();
    f.read_to_string(&mut answer)
        .map_err(|e| format!("nvme-fabrics answer: {e}"))?;
    answer
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("instance="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("nvme-fabrics answered {answer:?}"))
}

/// `rxdskctl exports -J`: its text, and parsed.
pub fn exports_json() -> Result<(String, serde_json::Value), String> {
    let json = cmd_ok("rxdskctl", &["exports", "-J"])?.stdout;
    let v = serde_json::from_str(&json).map_err(|e| format!("exports -J: {e}: {json}"))?;
    Ok((json, v))
}

/// The namespace block device of controller `instance`.
pub fn namespace(instance: u32) -> Option<String> {
    let dir = format!("/sys/class/nvme/nvme{instance}");
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n.starts_with("nvme") && n.contains('n') && n.ends_with("n1"))
                .then(|| format!("/dev/{n}"))
        })
}

/// Waits for controller `instance`'s namespace to appear and open (its sysfs entry comes a
/// moment before the disk can be opened); its path and an O_DIRECT read-write handle.
pub fn open_namespace(instance: u32) -> Result<(String, std::fs::File), String> {
    let mut opened = Err(format!("controller nvme{instance} shows no namespace"));
    wait_until(Duration::from_secs(30), || {
        opened = namespace(instance)
            .ok_or_else(|| format!("controller nvme{instance} shows no namespace"))
            .and_then(|ns| Ok((ns.clone(), open_direct(&ns, true)?)));
        opened.is_ok()
    });
    opened
}

/// The size of block device `dev` in 512-byte sectors (0 if it has gone).
pub fn sectors(dev: &str) -> u64 {
    let name = dev.trim_start_matches("/dev/");
    std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Mounts configfs, where nvmet is configured, unless it is.
pub fn mount_configfs() -> TestResult {
    if !std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .contains(" /sys/kernel/config ")
    {
        cmd_ok("mount", &["-t", "configfs", "none", "/sys/kernel/config"])?;
    }
    Ok(())
}

/// Deletes controller `instance` and waits until it has gone.
pub fn disconnect(instance: u32) -> TestResult {
    let dir = format!("/sys/class/nvme/nvme{instance}");
    let _ = std::fs::write(format!("{dir}/delete_controller"), "1");
    ensure(
        wait_until(Duration::from_secs(20), || {
            !std::path::Path::new(&dir).exists()
        }),
        || format!("controller nvme{instance} did not go"),
    )
}

/// `rxdskctl export --transport loop --allow-host HOST EXTRA... DEVICE`.
fn export_loop(dev: &Device, host: &str, extra: &[&str]) -> Result<crate::harness::Output, String> {
    let mut args = vec!["export", "--transport", "loop", "--allow-host", host];
    args.extend(extra);
    args.push(&dev.path);
    cmd_ok("rxdskctl", &args)
}

/// Exported again for HOST_A with a DH-HMAC-CHAP secret: HOST_A without it is refused, with
/// it connects and sees the serial number and namespace UUID `exports -J` shows.
fn authenticated_loop(dev: &Device, nqn: &str) -> TestResult {
    const SECRET: &str = "/tmp/rxdsk-loop-host-a.key";
    let _ = std::fs::remove_file(SECRET);
    cmd_ok("rxdskctl", &["gen-dhchap-key", "-o", SECRET])?;
    export_loop(dev, HOST_A, &["--dhchap-secret", &format!("@{SECRET}")])?;
    let secret = std::fs::read_to_string(SECRET).map_err(|e| format!("{SECRET}: {e}"))?;
    ensure(connect(nqn, HOST_A).is_err(), || {
        format!("{HOST_A} connected without its secret")
    })?;
    let instance = fabrics_connect_auth("transport=loop", nqn, HOST_A, Some(secret.trim()), None)?;
    let seen = (|| -> Result<(String, String), String> {
        let (ns, _) = open_namespace(instance)?;
        let read = |p: String| std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"));
        Ok((
            read(format!("/sys/class/nvme/nvme{instance}/serial"))?,
            read(format!(
                "/sys/block/{}/uuid",
                ns.trim_start_matches("/dev/")
            ))?,
        ))
    })();
    let gone = disconnect(instance);
    let (serial, uuid) = seen?;
    gone?;
    let (json, v) = exports_json()?;
    let e = &v["exports"][0];
    ensure(
        e["serial"] == serial.trim() && e["uuid"] == uuid.trim(),
        || format!("the host sees serial {serial:?} and uuid {uuid:?}; exports -J: {json}"),
    )
}

pub fn export_nvme_loop() -> TestResult {
    mount_configfs()?;
    let dev = Device::create(64 * MIB, 4096)?;
    // A bad request changes nothing: TCP without an address leaves no subsystem behind.
    let bad = cmd("rxdskctl", &["export", "--allow-host", HOST_A, &dev.path])?;
    let subsystems = || -> Vec<String> {
        std::fs::read_dir("/sys/kernel/config/nvmet/subsystems")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    ensure(
        bad.status != 0 && bad.stderr.contains("--address") && subsystems().is_empty(),
        || {
            format!(
                "export over TCP without an address: exit {}, {:?}, subsystems {:?}",
                bad.status,
                bad.stderr,
                subsystems()
            )
        },
    )?;
    // Exporting again states the whole host list: HOST_B, allowed first, is revoked.
    export_loop(&dev, HOST_B, &[])?;
    let out = export_loop(&dev, HOST_A, &[])?;
    ensure(
        !std::path::Path::new(&format!("/sys/kernel/config/nvmet/hosts/{HOST_B}")).exists(),
        || format!("{HOST_B} is still known to nvmet after it was revoked"),
    )?;
    let nqn = format!("nqn.2026-12.io.rxdsk:rxd{}", dev.id);
    ensure(out.stdout.contains(&nqn), || {
        format!("export printed {:?}", out.stdout)
    })?;
    let (json, v) = exports_json()?;
    let e = &v["exports"][0];
    ensure(
        e["nqn"] == nqn.as_str()
            && e["device"] == dev.path.as_str()
            && e["transport"] == "loop"
            && e["allow-any-host"] == false
            && e["allowed-hosts"] == serde_json::json!([HOST_A]),
        || format!("exports -J: {json}"),
    )?;
    let listed = cmd_ok(
        "rxdskctl",
        &["list", "--raw", "-n", "-o", "NAME,EXPORT", &dev.path],
    )?
    .stdout;
    ensure(listed.trim() == format!("{} {nqn}", dev.path), || {
        format!("list -o NAME,EXPORT: {listed:?}")
    })?;
    // A host not on the list is refused.
    ensure(connect(&nqn, HOST_B).is_err(), || {
        format!("{HOST_B} connected though not allowed")
    })?;
    let instance = connect(&nqn, HOST_A)?;
    let result = (|| -> TestResult {
        let (ns, remote) = open_namespace(instance)?;
        ensure(sectors(&ns) == 64 * MIB / 512, || {
            format!("{ns}: {} sectors", sectors(&ns))
        })?;
        // Bytes written through the fabric are the device's, and the other way round.
        let local = open_direct(&dev.path, true)?;
        let mut a = AlignedBuf::zeroed(MIB as usize)?;
        let mut b = AlignedBuf::zeroed(MIB as usize)?;
        blk::fill_keyed(&mut a[..], 15, 1);
        write_at(&remote, &a[..], 8 * MIB).map_err(|e| format!("write {ns}: {e}"))?;
        read_at(&local, &mut b[..], 8 * MIB).map_err(|e| format!("read {}: {e}", dev.path))?;
        ensure(a[..] == b[..], || {
            "data written over NVMe/loop differs on the device".into()
        })?;
        blk::fill_keyed(&mut a[..], 15, 2);
        write_at(&local, &a[..], 20 * MIB).map_err(|e| format!("write {}: {e}", dev.path))?;
        read_at(&remote, &mut b[..], 20 * MIB).map_err(|e| format!("read {ns}: {e}"))?;
        ensure(a[..] == b[..], || {
            "the device's data reads differently over NVMe/loop".into()
        })?;
        drop((remote, local));
        // The target holds the device: destroy is refused.
        let busy = cmd("rxdskctl", &["destroy", &dev.path])?;
        ensure(busy.status != 0 && busy.stderr.contains("busy"), || {
            format!(
                "destroy of an exported device: {} {}",
                busy.status, busy.stderr
            )
        })?;
        // A grow reaches the host.
        cmd_ok("rxdskctl", &["resize", &dev.path, "128M"])?;
        ensure(
            wait_until(Duration::from_secs(20), || sectors(&ns) == 128 * MIB / 512),
            || format!("{ns} still has {} sectors after the grow", sectors(&ns)),
        )?;
        Ok(())
    })();
    let gone = disconnect(instance);
    result?;
    gone?;
    authenticated_loop(&dev, &nqn)?;
    cmd_ok("rxdskctl", &["unexport", &dev.path])?;
    ensure(cmd_ok("rxdskctl", &["exports"])?.stdout.is_empty(), || {
        "exports not empty after unexport".into()
    })?;
    ensure(
        !std::path::Path::new(&format!("/sys/kernel/config/nvmet/subsystems/{nqn}")).exists(),
        || "the subsystem is still in configfs".into(),
    )?;
    dev.destroy()
}
