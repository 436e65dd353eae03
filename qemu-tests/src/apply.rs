//! `rxdskctl apply` end to end: a configuration (main file and a drop-in, under `--root`)
//! with a swap device, a compressed raw device, an ext2 filesystem and a backed ext2
//! filesystem on the scratch disk. Checked with the ioctls, /proc/swaps and /proc/mounts:
//! the first apply creates, formats, activates; the second changes nothing; a larger size
//! grows; a bad line or a compression the device does not have changes nothing and names
//! FILE:LINE; a destroyed backed device is restored from its image and mounted with its
//! files.

use crate::backing::DISK;
use crate::blk::{self, MIB};
use crate::harness::{cmd, cmd_ok, cmd_timeout, ensure, Output, TestResult};
use crate::rxdsk::{list_ids, Device};
use std::time::Duration;

const ROOT: &str = "/tmp/rxdsk-apply";

/// Turns swap off and unmounts what the test activated, before its devices are destroyed.
struct Deactivate {
    swaps: Vec<String>,
    mounts: Vec<String>,
}

impl Drop for Deactivate {
    fn drop(&mut self) {
        for m in &self.mounts {
            let _ = cmd("umount", &[m]);
        }
        for s in &self.swaps {
            let _ = cmd("swapoff", &[s]);
        }
        let _ = std::fs::remove_dir_all(ROOT);
    }
}

fn write(rel: &str, text: &str) -> Result<String, String> {
    let path = format!("{ROOT}/{rel}");
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    Ok(path)
}

/// `rxdskctl apply --root ROOT ARGS`, with ROOT/bin first in PATH (busybox has mke2fs but no
/// mkfs.ext2, which apply runs for fs-type ext2; its wrapper asks for 4096-byte blocks, which
/// e2fsprogs would choose here, since busybox's 1024 cannot be mounted on 4096-byte sectors).
fn apply(args: &[&str]) -> Result<Output, String> {
    let mut all = vec!["apply", "--root", ROOT];
    all.extend_from_slice(args);
    let path = format!("{ROOT}/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    cmd_timeout(
        "rxdskctl",
        &all,
        &[("PATH", &path)],
        Duration::from_secs(120),
    )
}

fn expect_output(what: &str, out: &Output, status: i32, stdout: &str, stderr: &str) -> TestResult {
    ensure(
        out.status == status && out.stdout == stdout && out.stderr == stderr,
        || {
            format!(
                "`{what}`: status {}, stdout {:?}, stderr {:?}; want {status}, {stdout:?}, {stderr:?}",
                out.status, out.stdout, out.stderr
            )
        },
    )
}

/// Size, block size and compression algorithm (0: none) of a device, from the ioctls.
fn shape(dev: &Device) -> Result<(u64, u32, u32), String> {
    let info = dev.info()?;
    let algorithm = if info.flags & rxdsk_ioctl::RXDSK_FLAG_COMPRESSED != 0 {
        dev.compr_stats()?.algorithm
    } else {
        0
    };
    Ok((info.size_bytes, info.logical_block_size, algorithm))
}

/// The priority /proc/swaps gives `path`, if it is active.
fn swap_priority(path: &str) -> Option<i64> {
    let swaps = std::fs::read_to_string("/proc/swaps").ok()?;
    swaps.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&path)).then(|| f.get(4)?.parse().ok())?
    })
}

/// The filesystem type `source` is mounted with on `target`, if it is.
fn mounted(source: &str, target: &str) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&source) && f.get(1) == Some(&target))
            .then(|| f.get(2).map(|t| t.to_string()))?
    })
}

/// Zeroes the scratch disk's metadata block, so that it holds no image from earlier tests.
/// Makes the backing disk blank where apply looks (its first and last MiB, where signatures
/// and the image's metadata live), as a new disk is.
fn wipe_image() -> TestResult {
    let f = blk::open_direct(DISK, true)?;
    let bytes = blk::size64(&f)?;
    ensure(bytes >= 2 * MIB, || format!("{DISK}: too small"))?;
    for at in [0, bytes - MIB] {
        blk::zeroout(&f, at, MIB).map_err(|e| format!("BLKZEROOUT {DISK} at {at}: {e}"))?;
    }
    Ok(())
}

pub fn apply_config() -> TestResult {
    let _ = std::fs::remove_dir_all(ROOT);
    let taken = list_ids()?;
    let ids: Vec<u32> = (100..1024).filter(|i| !taken.contains(i)).take(4).collect();
    let [swap, raw, fs, backed] = ids[..] else {
        return Err(format!("no 4 free device ids above 100 (LIST {taken:?})"));
    };
    let devs: Vec<Device> = ids.iter().map(|&id| Device::adopt(id)).collect();
    let path = |id: u32| format!("/dev/rxd{id}");
    let (fs_mnt, backed_mnt) = (format!("{ROOT}/fs"), format!("{ROOT}/data"));
    let deactivate = Deactivate {
        swaps: vec![path(swap)],
        mounts: vec![fs_mnt.clone(), backed_mnt.clone()],
    };
    wipe_image()?;
    let wrapper = write("bin/mkfs.ext2", "#!/bin/sh\nexec mke2fs -b 4096 \"$@\"\n")?;
    cmd_ok("chmod", &["755", &wrapper])?;
    let main = |raw_size: &str, raw_compress: &str| {
        format!(
            "# apply_config\n[rxd{swap}]\nsize = 64M\nswap-priority = 5\n\n\
             [rxd{raw}]\nsize = {raw_size}\nblock-size = 512\ncompress = {raw_compress}\n"
        )
    };
    write("etc/rxdsk.conf", &main("32M", "lz4"))?;
    let drop_in_text = format!(
        "[rxd{fs}]\nsize = 64M\nfs-type = ext2\nmount-point = {fs_mnt}\n\n\
         [rxd{backed}]\nbacking = {DISK}\nsize = 32M\nfs-type = ext2\nmount-point = {backed_mnt}\n"
    );
    let drop_in = write("etc/rxdsk.conf.d/20-fs.conf", &drop_in_text)?;

    // A backing disk that holds something else (here a filesystem) is never initialised: the
    // plan fails and nothing at all is made.
    cmd_ok("mke2fs", &["-q", "-F", "-b", "4096", DISK, "8192"])?;
    let out = apply(&["--activate"])?;
    ensure(
        out.status == 1
            && out
                .stderr
                .contains(&format!("{DISK} holds data but no rxdsk image"))
            && out.stdout.is_empty(),
        || {
            format!(
                "apply with ext2 on the backing disk: exit {}, stdout {:?}, stderr {:?}",
                out.status, out.stdout, out.stderr
            )
        },
    )?;
    let left = list_ids()?;
    ensure(ids.iter().all(|id| !left.contains(id)), || {
        format!("devices made though the plan failed: {left:?}")
    })?;
    wipe_image()?;

    // First run: everything is made.
    let out = apply(&["--activate"])?;
    let want = format!(
        "rxd{swap}: created 64M\nrxd{swap}: formatted as swap\nrxd{swap}: activated as swap (priority 5)\n\
         rxd{raw}: created 32M, 512-byte blocks, lz4\n\
         rxd{fs}: created 64M\nrxd{fs}: formatted as ext2\nrxd{fs}: mounted on {fs_mnt}\n\
         rxd{backed}: created 32M\nrxd{backed}: attached to {DISK} (writeback)\n\
         rxd{backed}: formatted as ext2\nrxd{backed}: mounted on {backed_mnt}\n"
    );
    expect_output("rxdskctl apply --activate", &out, 0, &want, "")?;
    let lz4 = rxdsk_ioctl::RXDSK_COMPRESS_LZ4;
    let shapes = |want: [(u64, u32, u32); 4]| -> TestResult {
        for (dev, w) in devs.iter().zip(want) {
            let s = shape(dev)?;
            ensure(s == w, || {
                format!(
                    "{}: (size, block size, algorithm) {s:?}, want {w:?}",
                    dev.path
                )
            })?;
        }
        Ok(())
    };
    shapes([
        (64 * MIB, 4096, 0),
        (32 * MIB, 512, lz4),
        (64 * MIB, 4096, 0),
        (32 * MIB, 4096, 0),
    ])?;
    ensure(swap_priority(&path(swap)) == Some(5), || {
        format!(
            "/proc/swaps: {}",
            std::fs::read_to_string("/proc/swaps").unwrap_or_default()
        )
    })?;
    for (id, mnt) in [(fs, &fs_mnt), (backed, &backed_mnt)] {
        let t = mounted(&path(id), mnt);
        ensure(t.as_deref() == Some("ext2"), || {
            format!("{} on {mnt}: {t:?}", path(id))
        })?;
    }
    let info = devs[3].info()?;
    ensure(info.flags & rxdsk_ioctl::RXDSK_FLAG_BACKED != 0, || {
        format!("rxd{backed} not backed: {info:?}")
    })?;
    std::fs::write(format!("{fs_mnt}/hello"), "fs\n")
        .map_err(|e| format!("{fs_mnt}/hello: {e}"))?;
    std::fs::write(format!("{backed_mnt}/hello"), "kept\n")
        .map_err(|e| format!("{backed_mnt}/hello: {e}"))?;

    // Second run: nothing to do, nothing done.
    let before: Vec<_> = devs.iter().map(|d| d.info()).collect::<Result<_, _>>()?;
    let out = apply(&["--activate"])?;
    let want: String = ids
        .iter()
        .map(|id| format!("rxd{id}: unchanged\n"))
        .collect();
    expect_output("rxdskctl apply --activate (again)", &out, 0, &want, "")?;
    let out = apply(&["-J"])?;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("apply -J: {e}: {}", out.stdout))?;
    let actions: Vec<&str> = v["actions"].as_array().map_or(Vec::new(), |a| {
        a.iter().filter_map(|x| x["action"].as_str()).collect()
    });
    ensure(out.status == 0 && actions == ["unchanged"; 4], || {
        format!("apply -J again: {v}")
    })?;
    for (d, b) in devs.iter().zip(&before) {
        let now = d.info()?;
        ensure(
            now.size_bytes == b.size_bytes && now.flags == b.flags,
            || {
                format!(
                    "{} changed by an apply with nothing to do: {b:?} -> {now:?}",
                    d.path
                )
            },
        )?;
    }

    // A larger size grows the device.
    write("etc/rxdsk.conf", &main("48M", "lz4"))?;
    let out = apply(&[])?;
    let want = format!(
        "rxd{swap}: unchanged\nrxd{raw}: grown to 48M (from 32M)\nrxd{fs}: unchanged\nrxd{backed}: unchanged\n"
    );
    expect_output("rxdskctl apply (grow)", &out, 0, &want, "")?;
    ensure(devs[1].info()?.size_bytes == 48 * MIB, || {
        format!("rxd{raw} not grown")
    })?;

    // A bad line anywhere: its FILE:LINE, and nothing changed (the other file's new size too).
    write("etc/rxdsk.conf", &main("64M", "lz4"))?;
    std::fs::write(&drop_in, format!("{drop_in_text}sise = 1G\n"))
        .map_err(|e| format!("{drop_in}: {e}"))?;
    let out = apply(&[])?;
    let line = drop_in_text.lines().count() + 1;
    let want = format!("rxdskctl: {drop_in}:{line}: unknown key \"sise\" in [rxd{backed}] (did you mean \"size\"?)\n");
    expect_output("rxdskctl apply (bad line)", &out, 1, "", &want)?;
    ensure(devs[1].info()?.size_bytes == 48 * MIB, || {
        format!("rxd{raw} changed despite a bad line")
    })?;
    let mut all = taken.clone();
    all.extend(&ids);
    all.sort_unstable();
    let now = list_ids()?;
    ensure(now == all, || {
        format!("LIST {now:?} after a bad line, {all:?} before")
    })?;

    // What cannot change without recreating: an error at its line, and nothing changed.
    std::fs::write(&drop_in, &drop_in_text).map_err(|e| format!("{drop_in}: {e}"))?;
    let conf = write("etc/rxdsk.conf", &main("64M", "zstd"))?;
    let out = apply(&[])?;
    let want = format!(
        "rxdskctl: {conf}:9: rxd{raw}: it has lz4, the configuration says zstd; that cannot change \
         without recreating the device (rxdskctl destroy rxd{raw}, then apply again)\n"
    );
    expect_output("rxdskctl apply (compression differs)", &out, 1, "", &want)?;
    ensure(devs[1].info()?.size_bytes == 48 * MIB, || {
        format!("rxd{raw} grown despite the error")
    })?;
    write("etc/rxdsk.conf", &main("48M", "lz4"))?;

    // The backed device, unmounted, flushed and destroyed, comes back from its image with
    // its files, before it is mounted.
    cmd_ok("umount", &[&backed_mnt])?;
    cmd_ok("rxdskctl", &["flush", &path(backed)])?;
    cmd_ok("rxdskctl", &["destroy", &path(backed)])?;
    let out = apply(&["--activate", &format!("rxd{backed}")])?;
    let prefix = format!("rxd{backed}: restored 32M from {DISK} (generation ");
    let mount_line = format!("rxd{backed}: mounted on {backed_mnt}\n");
    ensure(
        out.status == 0
            && out.stdout.starts_with(&prefix)
            && out.stdout.ends_with(&mount_line)
            && out.stdout.lines().count() == 2,
        || {
            format!(
                "apply after destroy: status {}, stdout {:?}, stderr {:?}",
                out.status, out.stdout, out.stderr
            )
        },
    )?;
    let hello = std::fs::read_to_string(format!("{backed_mnt}/hello"))
        .map_err(|e| format!("{backed_mnt}/hello after the restore: {e}"))?;
    ensure(hello == "kept\n", || {
        format!("{backed_mnt}/hello after the restore: {hello:?}")
    })?;
    let fs_hello = std::fs::read_to_string(format!("{fs_mnt}/hello")).unwrap_or_default();
    ensure(fs_hello == "fs\n", || {
        format!("{fs_mnt}/hello: {fs_hello:?}")
    })?;
    drop(deactivate);
    // The unmount wrote to it: flushed, so that it may be destroyed without force.
    cmd_ok("rxdskctl", &["flush", &path(backed)])?;
    for d in devs {
        d.destroy()?;
    }
    let now = list_ids()?;
    ensure(now == taken, || {
        format!("LIST {now:?} after the test, {taken:?} before")
    })
}
