//! `cargo xtask test-distro`: issue 14's proof in a real distribution. Our guest kernel as
//! Debian packages (`make bindeb-pkg`, plus `linux-lib-rust-<release>` holding the Rust metadata
//! out-of-tree modules are compiled against, split the way Ubuntu does it), a Debian image of
//! the host's release built with mmdebstrap, and QEMU boots of that image on the packaged kernel
//! that install our packages (DKMS builds rxdsk.ko inside the guest), use them and purge them.
//! Separate from `test`: the in-guest DKMS build under TCG alone takes minutes.

use crate::console::Summary;
use crate::deps::KernelToolchain;
use crate::kernel::{self, KernelBuild};
use crate::util::{run, run_logged, run_output, sha256_hex, Cmd};
use crate::{package, paths, qemu};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bump when the kernel packaging recipe changes in a way the key cannot see.
const DEB_RECIPE: &str = "1";
/// The same for linux-lib-rust alone (rebuilt without re-running bindeb-pkg).
const LIB_RUST_RECIPE: &str = "6";
/// Debian revision of the kernel packages.
const DEB_REVISION: &str = "1";
/// Bump when the image recipe changes in a way the key cannot see.
const IMAGE_RECIPE: &str = "1";
const STAMP: &str = ".rxdsk-key";
const MAINTAINER_NAME: &str = "The rxdsk developers";
const MAINTAINER_EMAIL: &str = "rxdsk-devel@lists.rxdsk.org";

/// What the guest needs besides minbase; the guest has no network, so everything the tests
/// use is here. rustc-web is added with the exact version the kernel was built with.
const IMAGE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "kmod",
    "dkms",
    "make",
    "gcc",
    "libc6-dev",
    "libelf1", // objtool of the headers package
    "e2fsprogs",
    "util-linux",
    "procps",
    "man-db",
    "bash-completion",
];

/// Size of the root file system (sparse).
const IMAGE_SIZE: &str = "4G";
const PAYLOAD_SIZE: &str = "512M";
const BACKING_DISK_BYTES: u64 = 256 << 20;

const GUEST_RUNNER: &str = include_str!("../../qemu-tests/distro/xtask-guest-run");
const GUEST_UNIT: &str = include_str!("../../qemu-tests/distro/xtask-guest-test.service");
/// The payload scripts, by name.
const SCRIPTS: &[(&str, &str)] = &[
    ("lib.sh", include_str!("../../qemu-tests/distro/lib.sh")),
    (
        "install.sh",
        include_str!("../../qemu-tests/distro/install.sh"),
    ),
    (
        "config.sh",
        include_str!("../../qemu-tests/distro/config.sh"),
    ),
    (
        "config-1.sh",
        include_str!("../../qemu-tests/distro/config-1.sh"),
    ),
    (
        "config-2.sh",
        include_str!("../../qemu-tests/distro/config-2.sh"),
    ),
    ("purge.sh", include_str!("../../qemu-tests/distro/purge.sh")),
];
/// Units that would fight the test for the serial console or wake up during it.
const MASKED_UNITS: &[&str] = &[
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
];

/// The kernel as Debian packages, and the kernel image they install (what the guest boots).
pub struct KernelDebs {
    pub release: String,
    pub image: PathBuf,
    pub headers: PathBuf,
    pub lib_rust: PathBuf,
    pub vmlinuz: PathBuf,
}

fn dpkg_arch() -> Result<String> {
    Ok(run_output(Cmd::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string())
}

/// The Debian package and version that ship the kernel's rustc (rustc-web on bookworm).
fn rustc_package(tc: &KernelToolchain) -> Result<(String, String)> {
    let path = fs::canonicalize(&tc.rustc).unwrap_or_else(|_| tc.rustc.clone());
    let owner = run_output(Cmd::new("dpkg-query").arg("-S").arg(&path))
        .or_else(|_| run_output(Cmd::new("dpkg-query").arg("-S").arg(&tc.rustc)))
        .with_context(|| format!("{} belongs to no Debian package", tc.rustc.display()))?;
    let name = owner
        .split(':')
        .next()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .context("dpkg-query -S printed no package")?
        .to_string();
    let version = run_output(Cmd::new("dpkg-query").args(["-W", "-f=${Version}", &name]))?
        .trim()
        .to_string();
    Ok((name, version))
}

/// `make bindeb-pkg` for the guest kernel, in its own tree `build/deb-<hash>/tree` (a copy of
/// the guest tree, so only the packaging steps run; the guest tree's vmlinux stays untouched
/// for other runs), plus `linux-lib-rust-<release>`. Cached on the guest build's key.
pub fn kernel_debs(k: &KernelBuild, tc: &KernelToolchain) -> Result<KernelDebs> {
    let name = k
        .build_dir
        .file_name()
        .context("kernel build directory")?
        .to_string_lossy()
        .into_owned();
    let hash = name
        .strip_prefix(&format!("{}-", k.flavour.name))
        .unwrap_or(&name);
    let dir = paths::cache().join("build").join(format!("deb-{hash}"));
    let tree = dir.join("tree");
    let (rustc_pkg, rustc_version) = rustc_package(tc)?;
    let key = sha256_hex(&[
        DEB_RECIPE.as_bytes(),
        kernel::build_key(k)?.as_bytes(),
        rustc_version.as_bytes(),
    ]);
    let release = k.release.clone();
    let version = format!("{release}-{DEB_REVISION}");
    let arch = dpkg_arch()?;
    let debs = KernelDebs {
        image: dir.join(format!("linux-image-{release}_{version}_{arch}.deb")),
        headers: dir.join(format!("linux-headers-{release}_{version}_{arch}.deb")),
        lib_rust: dir.join(format!("linux-lib-rust-{release}_{version}_{arch}.deb")),
        vmlinuz: dir.join(format!("vmlinuz-{release}")),
        release,
    };
    let stamp = dir.join(STAMP);
    let lib_rust_stamp = dir.join(".lib-rust-key");
    let lib_rust_key = sha256_hex(&[LIB_RUST_RECIPE.as_bytes(), key.as_bytes()]);
    let all_there = [&debs.image, &debs.headers, &debs.vmlinuz]
        .iter()
        .all(|p| p.exists());
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == key) && all_there {
        if !fs::read_to_string(&lib_rust_stamp).is_ok_and(|s| s.trim() == lib_rust_key)
            || !debs.lib_rust.exists()
        {
            lib_rust_deb(&tree, &debs, &version, &arch, &rustc_pkg, &rustc_version)?;
            package::lintian(
                std::slice::from_ref(&debs.lib_rust),
                "lintian-suppressed-lib-rust",
            )?;
            fs::write(&lib_rust_stamp, &lib_rust_key)?;
        }
        eprintln!("[distro] kernel packages cached in {}", dir.display());
        return Ok(debs);
    }
    let start = Instant::now();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    eprintln!(
        "[distro] make bindeb-pkg for {} in {}",
        debs.release,
        tree.display()
    );
    let partial = dir.join("tree.partial");
    run(Cmd::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&k.build_dir)
        .arg(&partial))?;
    fs::rename(&partial, &tree)?;
    let _ = fs::remove_file(tree.join(STAMP));
    let _ = fs::remove_dir_all(tree.join("modinstall"));
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    let pkgversion = format!("KDEB_PKGVERSION={version}");
    // -d: the generated Build-Depends name libdw-dev, which only BTF needs (off here).
    let mut make = kernel::make(
        &k.source,
        &tree,
        tc,
        k.flavour,
        &[&jobs, "bindeb-pkg", &pkgversion, "DPKG_FLAGS=-d"],
    );
    make.env("DEBEMAIL", MAINTAINER_EMAIL)
        .env("DEBFULLNAME", MAINTAINER_NAME);
    run_logged(&mut make, &dir.join("bindeb-pkg.log"), "kernel debs")?;
    lib_rust_deb(&tree, &debs, &version, &arch, &rustc_pkg, &rustc_version)?;
    package::lintian(
        std::slice::from_ref(&debs.lib_rust),
        "lintian-suppressed-lib-rust",
    )?;
    let image_root = dir.join("image-root");
    run(Cmd::new("dpkg-deb")
        .arg("-x")
        .arg(&debs.image)
        .arg(&image_root))?;
    fs::rename(
        image_root.join(format!("boot/vmlinuz-{}", debs.release)),
        &debs.vmlinuz,
    )
    .context("the linux-image package holds no /boot/vmlinuz")?;
    let _ = fs::remove_dir_all(&image_root);
    for p in [&debs.image, &debs.headers, &debs.lib_rust] {
        if !p.exists() {
            bail!("bindeb-pkg made no {}", p.display());
        }
    }
    fs::write(&stamp, &key)?;
    fs::write(&lib_rust_stamp, &lib_rust_key)?;
    eprintln!(
        "[distro] kernel packages built in {} s",
        start.elapsed().as_secs()
    );
    Ok(debs)
}

/// `linux-lib-rust-<release>`: what `make M=` needs beyond the headers package to compile a
/// Rust module (the crates' .rmeta, the proc-macro libraries), in the headers tree that
/// `/lib/modules/<release>/build` points to. Valid only with the rustc that made them.
fn lib_rust_deb(
    tree: &Path,
    debs: &KernelDebs,
    version: &str,
    arch: &str,
    rustc_pkg: &str,
    rustc_version: &str,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let release = &debs.release;
    let name = format!("linux-lib-rust-{release}");
    let stage = tree.join("debian").join(&name);
    let _ = fs::remove_dir_all(&stage);
    let headers = stage.join(format!("usr/src/linux-headers-{release}"));
    fs::create_dir_all(headers.join("rust"))?;
    fs::create_dir_all(stage.join("DEBIAN"))?;
    let mut entries: Vec<PathBuf> = fs::read_dir(tree.join("rust"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rmeta" || x == "so"))
        .collect();
    entries.sort();
    if !entries.iter().any(|p| p.ends_with("libkernel.rmeta")) {
        bail!("{} has no libkernel.rmeta", tree.join("rust").display());
    }
    let mut proc_macros = Vec::new();
    for p in &entries {
        let to = headers
            .join("rust")
            .join(p.file_name().context("file name")?);
        fs::copy(p, &to)?;
        if to.extension().is_some_and(|x| x == "so") {
            // Dynamic symbols (what rustc looks up in a proc macro) survive --strip-unneeded.
            run(Cmd::new("strip")
                .args(["--strip-unneeded", "--remove-section=.comment"])
                .arg(&to))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644))?;
            proc_macros.push(to);
        }
    }
    // DKMS reads BUILD_EXCLUSIVE_CONFIG (CONFIG_RUST) from the headers' .config, which the
    // upstream headers package leaves out (Debian's and Ubuntu's ship it).
    fs::copy(tree.join(".config"), headers.join(".config"))?;
    let doc = stage.join(format!("usr/share/doc/{name}"));
    fs::create_dir_all(&doc)?;
    fs::write(doc.join("copyright"), LINUX_COPYRIGHT)?;
    let changelog = format!(
        "{name} ({version}) unstable; urgency=medium\n\n  * Packaged by `cargo xtask test-distro`.\n\n -- {MAINTAINER_NAME} \
         <{MAINTAINER_EMAIL}>  {}\n",
        run_output(Cmd::new("date").arg("-R"))?.trim()
    );
    gzip_to(&doc.join("changelog.Debian.gz"), changelog.as_bytes())?;
    let (md5sums, bytes) = package::md5sums(&stage)?;
    fs::write(stage.join("DEBIAN/md5sums"), md5sums)?;
    let mut shlibs = Vec::new();
    for so in &proc_macros {
        for dep in package::shlib_depends(so)?.split(", ") {
            if !shlibs.iter().any(|d| d == dep) {
                shlibs.push(dep.to_string());
            }
        }
    }
    let control = format!(
        "Package: {name}\nSource: linux-upstream\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: {MAINTAINER_NAME} <{MAINTAINER_EMAIL}>\n\
         Depends: linux-headers-{release} (= {version}), {rustc_pkg} (= {rustc_version}), {}\n\
         Section: kernel\nPriority: optional\nInstalled-Size: {}\n\
         Description: Rust metadata of Linux {release} for out-of-tree modules\n \
         The compiled crate metadata (core, kernel, bindings, ...) and procedural\n \
         macro libraries of this kernel's Rust support, which out-of-tree Rust\n \
         modules (DKMS) are compiled against. Only the rustc that built the kernel\n \
         can read them, hence the exact {rustc_pkg} dependency.\n",
        shlibs.join(", "),
        bytes.div_ceil(1024)
    );
    fs::write(stage.join("DEBIAN/control"), control)?;
    run(Cmd::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&debs.lib_rust))
}

const LINUX_COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Linux
Source: https://www.kernel.org/

Files: *
Copyright: 1991-2026 Linus Torvalds and many others
License: GPL-2
 This program is free software; you can redistribute it and/or modify it under the terms of
 the GNU General Public License version 2 as published by the Free Software Foundation.
 .
 On Debian systems, the complete text of the GNU General Public License version 2 can be
 found in /usr/share/common-licenses/GPL-2.
";

/// `gzip -9n` (no name, no time stamp) of `data` into `path`.
fn gzip_to(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut child = Cmd::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("gzip")?;
    child.stdin.take().context("gzip stdin")?.write_all(data)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed");
    }
    fs::write(path, out.stdout)?;
    Ok(())
}

/// Builds the DKMS tree of rxdsk-dkms the way DKMS would, against a directory holding only
/// the headers and lib-rust packages' files: they are all an out-of-tree Rust module needs.
pub fn check_headers_suffice(debs: &KernelDebs) -> Result<()> {
    let scratch = paths::target().join("distro/headers-check");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    for deb in [&debs.headers, &debs.lib_rust] {
        run(Cmd::new("dpkg-deb").arg("-x").arg(deb).arg(&scratch))?;
    }
    let tree = scratch.join("rxdsk");
    run(Cmd::new("cp")
        .arg("-a")
        .arg(package::dkms_tree())
        .arg(&tree))?;
    let kdir = scratch.join(format!("usr/src/linux-headers-{}", debs.release));
    let mut make = Cmd::new("make");
    // The guest's environment: only the system rustc, nothing from rustup.
    make.env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .current_dir(&tree)
    .args(["-C", "rxdsk-kmod"])
    .arg(format!("KDIR={}", kdir.display()));
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTFLAGS", "CARGO_TARGET_DIR"] {
        make.env_remove(var);
    }
    run_logged(&mut make, &scratch.join("build.log"), "headers check")?;
    if !tree.join("rxdsk-kmod/rxdsk.ko").exists() {
        bail!("the build against the packaged headers made no rxdsk.ko");
    }
    let _ = fs::remove_dir_all(&scratch);
    Ok(())
}

/// The host's apt sources, for mmdebstrap.
fn debian_sources(codename: &str) -> Result<Vec<String>> {
    let texts = crate::apt::source_texts();
    let lines = source_lines(&texts, codename);
    if lines.is_empty() {
        bail!("no Debian {codename} source in /etc/apt (sources.list, sources.list.d)");
    }
    Ok(lines)
}

/// One `deb URI suite main` line per suite of `codename` in apt source files (deb822 or
/// one-line); other releases and `deb-src` are left out.
fn source_lines(texts: &[String], codename: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut add = |uri: &str, suite: &str| {
        let ours = suite == codename || suite.starts_with(&format!("{codename}-"));
        let line = format!("deb {uri} {suite} main");
        if ours && !lines.contains(&line) {
            lines.push(line);
        }
    };
    for text in texts {
        for source in crate::apt::sources(text) {
            add(&source.uri, &source.suite);
        }
    }
    lines
}

fn host_codename() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("/etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")
}

/// The cached base image: Debian (the host's release) with systemd, DKMS, the kernel's rustc
/// and the test hook; built with mmdebstrap from the host's own Debian sources.
pub fn base_image(tc: &KernelToolchain) -> Result<PathBuf> {
    let codename = host_codename()?;
    let sources = debian_sources(&codename)?;
    let (rustc_pkg, rustc_version) = rustc_package(tc)?;
    let mut include: Vec<String> = IMAGE_PACKAGES.iter().map(|s| s.to_string()).collect();
    include.push(format!("{rustc_pkg}={rustc_version}"));
    let key = sha256_hex(&[
        IMAGE_RECIPE.as_bytes(),
        codename.as_bytes(),
        include.join(",").as_bytes(),
        sources.join("\n").as_bytes(),
        GUEST_RUNNER.as_bytes(),
        GUEST_UNIT.as_bytes(),
        MASKED_UNITS.join(",").as_bytes(),
        IMAGE_SIZE.as_bytes(),
    ]);
    let root_dir = paths::cache().join("distro");
    let dir = root_dir.join(format!("{codename}-{}", &key[..16]));
    let image = dir.join("root.img");
    if fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s.trim() == key) && image.exists() {
        eprintln!("[distro] base image cached: {}", image.display());
        return Ok(image);
    }
    let start = Instant::now();
    let work = root_dir.join(format!(".{codename}-{}.partial", &key[..16]));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    // Downloaded packages are kept between image builds (a new key needs only what changed).
    let debs = root_dir.join("debs");
    fs::create_dir_all(&debs)?;
    let tree = work.join("root");
    eprintln!(
        "[distro] mmdebstrap {codename} (minbase + {}) from {}",
        include.join(" "),
        sources.join("; ")
    );
    let mut mm = Cmd::new("mmdebstrap");
    mm.args([
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        "--skip=download/empty",
        "--skip=essential/unlink",
    ])
    .arg(format!("--include={}", include.join(",")))
    .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
    .arg(format!(
        "--setup-hook=sync-in {} /var/cache/apt/archives/",
        debs.display()
    ))
    .arg(format!(
        "--customize-hook=sync-out /var/cache/apt/archives {}",
        debs.display()
    ))
    .arg("--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb")
    .arg(&codename)
    .arg(&tree)
    .args(&sources);
    run_logged(&mut mm, &work.join("mmdebstrap.log"), "mmdebstrap")?;
    customize(&tree)?;
    let partial_image = work.join("root.img");
    run(Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rxdsk-root", "-d"])
        .arg(&tree)
        .arg(&partial_image)
        .arg(IMAGE_SIZE))?;
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::rename(&partial_image, &image)?;
    fs::write(dir.join(STAMP), &key)?;
    let _ = fs::remove_dir_all(&work);
    // Older images (another key) are never used again: a few GiB each.
    for e in fs::read_dir(&root_dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{codename}-")) && e.path() != dir {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    eprintln!(
        "[distro] base image built in {} s: {}",
        start.elapsed().as_secs(),
        image.display()
    );
    Ok(image)
}

/// The image's own configuration: root on /dev/vda, the test hook enabled, the units that
/// would compete for the serial console masked.
fn customize(tree: &Path) -> Result<()> {
    use std::os::unix::fs::{symlink, PermissionsExt};
    fs::write(tree.join("etc/hostname"), "rxdsk-guest\n")?;
    fs::write(
        tree.join("etc/fstab"),
        "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    )?;
    let runner = tree.join("usr/local/sbin/xtask-guest-run");
    fs::create_dir_all(runner.parent().context("parent")?)?;
    fs::write(&runner, GUEST_RUNNER)?;
    fs::set_permissions(&runner, fs::Permissions::from_mode(0o755))?;
    let units = tree.join("etc/systemd/system");
    fs::create_dir_all(units.join("multi-user.target.wants"))?;
    fs::write(units.join("xtask-guest-test.service"), GUEST_UNIT)?;
    let wants = units.join("multi-user.target.wants/xtask-guest-test.service");
    let _ = fs::remove_file(&wants);
    symlink("/etc/systemd/system/xtask-guest-test.service", &wants)?;
    for unit in MASKED_UNITS {
        let link = units.join(unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link)?;
    }
    Ok(())
}

/// One boot of the test: which payload script, and a name for its log.
struct Stage {
    name: &'static str,
    script: &'static str,
    timeout: Duration,
}

/// What the host knows about the rustc the kernel was built with, for the guest to compare.
fn host_rustc_files(tc: &KernelToolchain) -> Result<(String, String)> {
    let vv = run_output(Cmd::new(&tc.rustc).arg("-vV"))?;
    let rustc = fs::canonicalize(&tc.rustc)?;
    // The compiler itself is librustc_driver; /usr/bin/rustc is a small launcher.
    let libs = run_output(Cmd::new("ldd").arg(&rustc))?;
    let driver = libs
        .lines()
        .filter(|l| l.contains("librustc_driver"))
        .find_map(|l| l.split("=>").nth(1)?.split_whitespace().next())
        .context("ldd finds no librustc_driver for the kernel's rustc")?;
    let files = [rustc, fs::canonicalize(driver)?];
    let sums = run_output(Cmd::new("sha256sum").args(&files))?;
    Ok((vv, sums))
}

/// The payload disk of one boot: the packages, the scripts, `run.sh` for this stage.
fn payload(
    dir: &Path,
    stage: &Stage,
    debs: &[PathBuf],
    rustc: &(String, String),
) -> Result<PathBuf> {
    let tree = dir.join("payload");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("debs"))?;
    for deb in debs {
        let name = deb.file_name().context("deb file name")?;
        fs::copy(deb, tree.join("debs").join(name))?;
    }
    for (name, text) in SCRIPTS {
        fs::write(tree.join(name), text)?;
    }
    fs::write(
        tree.join("run.sh"),
        format!(". \"$1/{}\" \"$1\"\n", stage.script),
    )?;
    fs::write(tree.join("host-rustc-vV"), &rustc.0)?;
    fs::write(tree.join("host-rustc.sha256"), &rustc.1)?;
    let image = dir.join("payload.img");
    let _ = fs::remove_file(&image);
    run(Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rxdsk-payload", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg(PAYLOAD_SIZE))?;
    Ok(image)
}

/// The whole test; prints each boot's results and the times, returns the summary.
pub fn test(k: &KernelBuild, tc: &KernelToolchain, verbose: bool) -> Result<Summary> {
    let total = Instant::now();
    let mut times: Vec<(String, u64)> = Vec::new();
    let t = Instant::now();
    eprintln!("[distro] rxdskctl and rxdsk-dkms packages");
    let ours = package::build(k, tc)?;
    times.push(("cargo xtask package".into(), t.elapsed().as_secs()));
    crate::deps::ensure_packages(crate::deps::DISTRO_PACKAGES)?;
    let t = Instant::now();
    let debs = kernel_debs(k, tc)?;
    times.push((
        "kernel packages (bindeb-pkg, lib-rust)".into(),
        t.elapsed().as_secs(),
    ));
    let t = Instant::now();
    eprintln!("[distro] building rxdsk-dkms' tree against only the headers and lib-rust packages");
    check_headers_suffice(&debs)?;
    times.push((
        "host build against the packaged headers".into(),
        t.elapsed().as_secs(),
    ));
    let t = Instant::now();
    let base = base_image(tc)?;
    times.push((
        "base image (mmdebstrap, mkfs)".into(),
        t.elapsed().as_secs(),
    ));

    let dir = paths::target().join("distro");
    fs::create_dir_all(&dir)?;
    let root = dir.join("root.img");
    let _ = fs::remove_file(&root);
    run(Cmd::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(&base)
        .arg(&root))?;
    let backing = dir.join("backing.img");
    let _ = fs::remove_file(&backing);
    let backing = qemu::DiskSpec {
        path: backing,
        size: Some(BACKING_DISK_BYTES),
    }
    .prepare()?;
    let rustc = host_rustc_files(tc)?;
    let stage = |name, script, secs| Stage {
        name,
        script,
        timeout: Duration::from_secs(secs),
    };
    let stages = [
        stage("install", "install.sh", 3600),
        stage("config-1", "config-1.sh", 1200),
        stage("config-2", "config-2.sh", 1200),
        stage("purge", "purge.sh", 1200),
    ];
    let mut packages = vec![
        debs.image.clone(),
        debs.headers.clone(),
        debs.lib_rust.clone(),
    ];
    packages.extend(ours);
    let mut summary = Summary::default();
    let mut accel = "QEMU";
    for stage in &stages {
        let image = payload(&dir, stage, &packages, &rustc)?;
        let boot = qemu::Boot {
            kernel: debs.vmlinuz.clone(),
            initrd: None,
            cmdline: Some(
                "root=/dev/vda rw console=ttyS0 loglevel=5 panic=-1 oops=panic no_timer_check \
                 init=/lib/systemd/systemd"
                    .into(),
            ),
            shutdown_grace: Duration::from_secs(300),
            mode: "run",
            memory_mib: 2048,
            cpus: 2,
            timeout: stage.timeout,
            log: paths::target().join(format!("console-distro-{}.log", stage.name)),
            disks: vec![root.clone(), image, backing.clone()],
            kill_on: None,
            label: "",
            net: None,
        };
        eprintln!(
            "[distro] boot '{}' ({} kernel from the linux-image package)",
            stage.name, debs.release
        );
        let t = Instant::now();
        let done = qemu::run(
            &boot,
            if verbose {
                qemu::Echo::All
            } else {
                qemu::Echo::Results
            },
        )?;
        let secs = t.elapsed().as_secs();
        accel = done.accel.name();
        times.push((format!("boot '{}'", stage.name), secs));
        for d in &done.console.data {
            if let Some(rest) = d.strip_prefix("time ") {
                let mut w = rest.split_whitespace();
                if let (Some(step), Some(s)) = (w.next(), w.next().and_then(|s| s.parse().ok())) {
                    if s >= 5 {
                        times.push((format!("  {}: {step}", stage.name), s));
                    }
                }
            }
        }
        let mut s = done.console.suite_summary(done.timed_out);
        if done.console.exit_status.is_none() {
            s.problems.push(format!(
                "boot '{}': the test script never finished",
                stage.name
            ));
        }
        if !done.powered_off {
            s.problems.push(format!(
                "boot '{}': the guest did not power off cleanly",
                stage.name
            ));
        }
        for p in &s.problems {
            println!("problem: {p} (console log: {})", boot.log.display());
        }
        let ok = s.ok();
        summary.passed += s.passed;
        summary.failed += s.failed + u32::from(!ok && s.failed == 0);
        summary.skipped += s.skipped;
        summary.problems.extend(s.problems);
        if !ok {
            // Later boots build on this one.
            break;
        }
    }
    eprintln!("[distro] times (guests under {accel}):");
    for (what, secs) in &times {
        eprintln!("  {what:<48} {:>5} s", secs);
    }
    eprintln!("  {:<48} {:>5} s", "total", total.elapsed().as_secs());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_scripts_are_plain_sh() {
        for (name, text) in SCRIPTS {
            assert!(!text.contains("[["), "{name} uses bash syntax");
        }
        assert!(GUEST_UNIT.contains("TTYPath=/dev/ttyS0"));
        assert!(GUEST_RUNNER.contains("RXDSK-EXIT"));
    }

    #[test]
    fn guest_scripts_parse() {
        let dir = std::env::temp_dir().join(format!("rxdsk-distro-sh-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let mut all = SCRIPTS.to_vec();
        all.push(("xtask-guest-run", GUEST_RUNNER));
        for (name, text) in all {
            let path = dir.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            let ok = Cmd::new("sh")
                .arg("-n")
                .arg(&path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sh -n {name}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sources_of_the_host_release_only() {
        let deb822 =
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: https://deb.nodesource.com/node_20.x\n\
                      Suites: nodistro\nComponents: main\n\nTypes: deb-src\n\
                      URIs: http://deb.debian.org/debian\nSuites: trixie\n";
        let one_line =
            "deb [signed-by=/k.gpg] http://deb.debian.org/debian-security bookworm-security main\n\
                        deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n";
        let lines = source_lines(&[deb822.into(), one_line.into()], "bookworm");
        assert_eq!(
            lines,
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
    }
}
