//! `cargo xtask initramfs`: busybox, fio with its shared libraries, rxdskctl, the guest test
//! programs and scripts, our module and the comparison modules; written as a newc cpio by our
//! own writer, so no root is needed.

use crate::cpio::CpioWriter;
use crate::kernel::KernelBuild;
use crate::paths;
use crate::util::{run, run_output, Cmd};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Userspace programs of the workspace that go into the guest.
const GUEST_BINARIES: &[&str] = &["rxdskctl", "rxdsk-guest-tests"];

struct Builder {
    cpio: CpioWriter<BufWriter<fs::File>>,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
}

impl Builder {
    fn ensure_parents(&mut self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                self.cpio.dir(&prefix)?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        self.ensure_parents(&format!("{}/x", path.trim_matches('/')))
    }

    fn bytes(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        let path = path.trim_matches('/').to_string();
        if !self.files.insert(path.clone()) {
            return Ok(());
        }
        self.ensure_parents(&path)?;
        self.cpio.file(&path, perm, data)?;
        Ok(())
    }

    /// Copies a host file (following symlinks) to `dest` in the archive, keeping its mode.
    fn host_file(&mut self, src: &Path, dest: &str) -> Result<()> {
        let data = fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
        let perm = fs::metadata(src)?.permissions().mode() & 0o7777;
        self.bytes(dest, perm, &data)
    }

    /// Copies a dynamically linked program and every shared library `ldd` names for it.
    fn program(&mut self, src: &Path, dest: &str) -> Result<()> {
        self.host_file(src, dest)?;
        let out = run_output(Cmd::new("ldd").arg(src)).unwrap_or_default();
        for line in out.lines() {
            // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match line.split("=>").nth(1) {
                Some(rhs) => rhs.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                self.host_file(Path::new(p), p)?;
            }
        }
        Ok(())
    }

    /// Copies a host directory tree under `dest`, skipping symlinks (modules' build/source links).
    fn tree(&mut self, src: &Path, dest: &str) -> Result<()> {
        self.dir(dest)?;
        let mut entries: Vec<_> = fs::read_dir(src)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let ty = e.file_type()?;
            let name = format!(
                "{}/{}",
                dest.trim_end_matches('/'),
                e.file_name().to_string_lossy()
            );
            if ty.is_dir() {
                self.tree(&e.path(), &name)?;
            } else if ty.is_file() {
                self.host_file(&e.path(), &name)?;
            }
        }
        Ok(())
    }
}

/// Builds the workspace's guest programs (release) and returns their paths.
pub fn guest_binaries() -> Result<Vec<PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Cmd::new(cargo).current_dir(paths::repo()).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "rxdsk-ctl",
        "-p",
        "qemu-tests",
    ]))?;
    let dir = paths::repo().join("target/release");
    GUEST_BINARIES.iter().map(|b| Ok(dir.join(b))).collect()
}

/// Writes the base initramfs and returns its path.
/// `modules`: our out-of-tree modules, put in `/lib/modules/` by file name.
pub fn build(kernel: &KernelBuild, modules: &[&Path]) -> Result<PathBuf> {
    let out_path = paths::target().join(format!("initramfs-{}.cpio", kernel.flavour.name));
    fs::create_dir_all(paths::target())?;
    let file = fs::File::create(&out_path)?;
    let mut b = Builder {
        cpio: CpioWriter::new(BufWriter::new(file)),
        dirs: BTreeSet::new(),
        files: BTreeSet::new(),
    };
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "root", "mnt",
        "extra", "etc",
    ] {
        b.dir(d)?;
    }
    let guest = paths::repo().join("qemu-tests/guest");
    b.host_file(&guest.join("init"), "init")?;
    b.tree(&guest, "usr/share/rxdsk-tests")?;
    b.bytes(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    b.bytes(
        "etc/group",
        0o644,
        b"root:x:0:\ndisk:x:6:\nnogroup:x:65534:\n",
    )?;
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox missing (package busybox-static)");
    }
    b.host_file(busybox, "bin/busybox")?;
    b.program(Path::new("/usr/bin/fio"), "usr/bin/fio")?;
    // Filesystem checks after a power cut (busybox has no fsck), ext4 for the power cut under
    // a live file system (busybox's mke2fs makes ext2 only).
    b.program(Path::new("/sbin/e2fsck"), "usr/sbin/e2fsck")?;
    b.program(Path::new("/sbin/mke2fs"), "usr/sbin/mkfs.ext4")?;
    // device-mapper tables: dm-log-writes, a backing device that stalls.
    b.program(Path::new("/sbin/dmsetup"), "usr/sbin/dmsetup")?;
    for bin in guest_binaries()? {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        b.program(&bin, &format!("usr/bin/{name}"))?;
    }
    for m in modules {
        let name = m
            .file_name()
            .context("module path without a file name")?
            .to_string_lossy()
            .into_owned();
        b.host_file(m, &format!("lib/modules/{name}"))?;
    }
    let modules = kernel
        .modules_root
        .join("lib/modules")
        .join(&kernel.release);
    b.tree(&modules, &format!("lib/modules/{}", kernel.release))?;
    b.cpio.finish()?;
    Ok(out_path)
}

/// Writes the per-boot overlay (appended to the base archive; the kernel unpacks both): the
/// boot configuration and the user's `--add` paths under `/extra/`.
pub fn overlay(base: &Path, files: &[(&str, Vec<u8>)], extra: &[PathBuf]) -> Result<PathBuf> {
    // A file per call: guests prepared together (the two-guest test) each keep their own.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = base
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .replace("initramfs", &format!("boot{call}"))
        })
        .unwrap_or_default();
    let out_path = paths::target().join(name);
    fs::copy(base, &out_path)?;
    let file = fs::OpenOptions::new().append(true).open(&out_path)?;
    let mut b = Builder {
        cpio: CpioWriter::new(BufWriter::new(file)),
        dirs: BTreeSet::new(),
        files: BTreeSet::new(),
    };
    // Directories already in the base archive are not repeated.
    for d in ["etc", "extra"] {
        b.dirs.insert(d.to_string());
    }
    for (path, data) in files {
        b.bytes(path, 0o755, data)?;
    }
    for p in extra {
        let name = p
            .file_name()
            .with_context(|| format!("--add {}: no file name", p.display()))?
            .to_string_lossy()
            .into_owned();
        let meta = fs::metadata(p).with_context(|| format!("--add {}", p.display()))?;
        if meta.is_dir() {
            b.tree(p, &format!("extra/{name}"))?;
        } else {
            b.host_file(p, &format!("extra/{name}"))?;
        }
    }
    b.cpio.finish()?;
    Ok(out_path)
}
