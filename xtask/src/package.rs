//! `cargo xtask package`: Debian packages in `target/packages/`, built with dpkg-deb from staged
//! trees and checked with lintian:
//! - `rxdskctl_<version>_<arch>.deb`: the CLI, its man pages (rxdskctl(8) and one per
//!   subcommand, generated from the clap definition) and bash/zsh/fish completions;
//! - `rxdsk-dkms_<version>_all.deb`: the module's sources in `/usr/src/rxdsk-<version>/` with a
//!   dkms.conf in Debian's dh-dkms layout, so DKMS builds rxdsk.ko for each kernel with Rust
//!   support. The staged source tree is also built against our guest kernel here, to prove it
//!   is complete.

use crate::deps::KernelToolchain;
use crate::kernel::KernelBuild;
use crate::paths;
use crate::util::{run, run_logged, run_output, Cmd};
use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use std::fs;
use std::path::{Path, PathBuf};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Debian revision of our packages.
const REVISION: &str = "1";
const MAINTAINER: &str = "The rxdsk developers <rxdsk-devel@lists.rxdsk.org>";
const HOMEPAGE: &str = "https://rxdsk.org";

/// `target/packages/`: the packages, and their staging trees under `stage/`.
fn packages_dir() -> PathBuf {
    paths::repo().join("target/packages")
}

fn debian_version() -> String {
    format!("{VERSION}-{REVISION}")
}

/// The files of a package being assembled under `root`.
struct Stage {
    root: PathBuf,
    name: &'static str,
}

impl Stage {
    fn new(name: &'static str) -> Result<Self> {
        let root = packages_dir().join("stage").join(name);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("DEBIAN"))?;
        Ok(Self { root, name })
    }

    /// Writes `data` at `rel` (relative to the root) with `mode`.
    fn file(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().context("a file at the root")?)?;
        fs::write(&path, data).with_context(|| path.display().to_string())?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// A symlink at `rel` to `target` (relative, as Debian policy wants within /usr).
    fn symlink(&self, rel: &str, target: &str) -> Result<()> {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().context("a link at the root")?)?;
        std::os::unix::fs::symlink(target, &path).with_context(|| path.display().to_string())
    }

    /// Writes `data` gzip-compressed (`gzip -9n`: best compression, no name or time stamp).
    fn gz(&self, rel: &str, data: &[u8]) -> Result<()> {
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
        self.file(rel, &out.stdout, 0o644)
    }

    /// The Debian documentation every package carries: copyright and changelog.
    fn doc(&self) -> Result<()> {
        let dir = format!("usr/share/doc/{}", self.name);
        self.file(&format!("{dir}/copyright"), COPYRIGHT.as_bytes(), 0o644)?;
        let changelog = format!(
            "{} ({}) unstable; urgency=medium\n\n  * Built by `cargo xtask package` from the \
             rxdsk repository.\n\n -- {MAINTAINER}  {}\n",
            self.name,
            debian_version(),
            changelog_date()?
        );
        self.gz(&format!("{dir}/changelog.Debian.gz"), changelog.as_bytes())
    }

    /// DEBIAN/control (with Installed-Size) and DEBIAN/md5sums, then the .deb in `out`.
    fn build(&self, control: &str, out: &Path) -> Result<PathBuf> {
        let (md5sums, bytes) = md5sums(&self.root)?;
        self.file("DEBIAN/md5sums", md5sums.as_bytes(), 0o644)?;
        let control = format!("{control}Installed-Size: {}\n", bytes.div_ceil(1024));
        self.file("DEBIAN/control", control.as_bytes(), 0o644)?;
        let arch = control
            .lines()
            .find_map(|l| l.strip_prefix("Architecture: "))
            .context("no Architecture")?;
        let deb = out.join(format!("{}_{}_{arch}.deb", self.name, debian_version()));
        run(Cmd::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&self.root)
            .arg(&deb))?;
        Ok(deb)
    }
}

/// A staged package tree's DEBIAN/md5sums text (its regular files, sorted) and their total
/// size in bytes (for Installed-Size).
pub fn md5sums(root: &Path) -> Result<(String, u64)> {
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort();
    let mut md5sums = String::new();
    let mut bytes = 0u64;
    for rel in &files {
        let path = root.join(rel);
        // md5sums lists regular files only.
        if fs::symlink_metadata(&path)?.file_type().is_symlink() {
            continue;
        }
        bytes += fs::metadata(&path)?.len();
        let sum = run_output(Cmd::new("md5sum").arg(&path))?;
        let hash = sum.split_whitespace().next().unwrap_or_default();
        md5sums += &format!("{hash}  {rel}\n");
    }
    Ok((md5sums, bytes))
}

/// Relative paths of the regular files under `dir`, DEBIAN excluded.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
        if rel == "DEBIAN" {
            continue;
        }
        if e.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// The changelog's date, RFC 2822: SOURCE_DATE_EPOCH's if set (reproducible-builds.org),
/// else the last commit's; never the time of the build.
pub fn changelog_date() -> Result<String> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    changelog_date_from(epoch.as_deref(), || {
        run_output(
            Cmd::new("git")
                .current_dir(paths::repo())
                .args(["log", "-1", "--format=%ct"]),
        )
        .ok()
    })
}

/// [`changelog_date`] from SOURCE_DATE_EPOCH's value and the last commit's time (`git log
/// --format=%ct`, if there is a commit).
fn changelog_date_from(
    source_date_epoch: Option<&str>,
    last_commit: impl FnOnce() -> Option<String>,
) -> Result<String> {
    let secs = match source_date_epoch {
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not seconds since the epoch"))?,
        None => last_commit()
            .and_then(|t| t.trim().parse().ok())
            .context("no date for the changelog: not a git checkout; set SOURCE_DATE_EPOCH")?,
    };
    Ok(rxdsk_ctl::date::rfc2822(secs))
}

const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rxdsk
Upstream-Contact: The rxdsk developers <rxdsk-devel@lists.rxdsk.org>

Files: *
Copyright: 2026 The rxdsk developers
License: GPL-2
 This program is free software; you can redistribute it and/or modify it under the terms of
 the GNU General Public License version 2 as published by the Free Software Foundation.
 .
 On Debian systems, the complete text of the GNU General Public License version 2 can be
 found in /usr/share/common-licenses/GPL-2.
";

/// rxdsk.conf(5), written by hand.
const CONF_MAN_PAGE: &str = include_str!("../../rxdsk-ctl/dist/rxdsk.conf.5");
const CONF_EXAMPLE: &str = include_str!("../../rxdsk-ctl/dist/rxdsk.conf.example");

/// rxdskctl(8) and rxdskctl-SUBCOMMAND(8), roff.
fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let cmd = rxdsk_ctl::cli::Cli::command();
    let mut pages = Vec::new();
    let mut render = |name: String, cmd: clap::Command| -> Result<()> {
        let mut buf = Vec::new();
        let bin = name.replacen('-', " ", 1);
        clap_mangen::Man::new(cmd.name(name.clone()).bin_name(bin))
            .section("8")
            .manual("rxdsk")
            .source(format!("rxdsk {VERSION}"))
            .render(&mut buf)?;
        pages.push((name, buf));
        Ok(())
    };
    render("rxdskctl".into(), cmd.clone())?;
    for sub in cmd.get_subcommands() {
        render(format!("rxdskctl-{}", sub.get_name()), sub.clone())?;
    }
    Ok(pages)
}

fn completion(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = rxdsk_ctl::cli::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rxdskctl", &mut buf);
    buf
}

fn rxdskctl_deb(out: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Cmd::new(&cargo).current_dir(paths::repo()).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "rxdsk-ctl",
        "--bin",
        "rxdskctl",
    ]))?;
    let built = paths::repo().join("target/release/rxdskctl");
    let s = Stage::new("rxdskctl")?;
    s.file("usr/sbin/rxdskctl", &fs::read(&built)?, 0o755)?;
    run(Cmd::new("strip")
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
        ])
        .arg(s.root.join("usr/sbin/rxdskctl")))?;
    for (name, roff) in man_pages()? {
        s.gz(&format!("usr/share/man/man8/{name}.8.gz"), &roff)?;
    }
    use clap_complete::Shell;
    s.file(
        "usr/share/bash-completion/completions/rxdskctl",
        &completion(Shell::Bash),
        0o644,
    )?;
    s.file(
        "usr/share/zsh/vendor-completions/_rxdskctl",
        &completion(Shell::Zsh),
        0o644,
    )?;
    s.file(
        "usr/share/fish/vendor_completions.d/rxdskctl.fish",
        &completion(Shell::Fish),
        0o644,
    )?;
    // Boot-time setup: the generator (rxdskctl under another name), the setup and export
    // templates, rxdsk.conf(5) and an example; no /etc/rxdsk.conf, as zram-generator ships
    // none.
    s.symlink(
        "usr/lib/systemd/system-generators/rxdsk-generator",
        "../../../sbin/rxdskctl",
    )?;
    s.file(
        &format!(
            "usr/lib/systemd/system/{}",
            rxdsk_ctl::generator::SETUP_TEMPLATE_NAME
        ),
        rxdsk_ctl::generator::SETUP_TEMPLATE.as_bytes(),
        0o644,
    )?;
    s.file(
        &format!(
            "usr/lib/systemd/system/{}",
            rxdsk_ctl::generator::EXPORT_TEMPLATE_NAME
        ),
        rxdsk_ctl::generator::EXPORT_TEMPLATE.as_bytes(),
        0o644,
    )?;
    s.gz(
        "usr/share/man/man5/rxdsk.conf.5.gz",
        CONF_MAN_PAGE.as_bytes(),
    )?;
    s.file(
        "usr/share/doc/rxdskctl/examples/rxdsk.conf",
        CONF_EXAMPLE.as_bytes(),
        0o644,
    )?;
    // The README and the user's guide (docs/using.md); the design and developer documents
    // stay in the repository.
    s.gz(
        "usr/share/doc/rxdskctl/README.md.gz",
        &fs::read(paths::repo().join("README.md"))?,
    )?;
    s.gz(
        "usr/share/doc/rxdskctl/using.md.gz",
        &fs::read(paths::repo().join("docs/using.md"))?,
    )?;
    s.doc()?;
    let arch = run_output(Cmd::new("dpkg").arg("--print-architecture"))?;
    let control = format!(
        "Package: rxdskctl\nVersion: {}\nArchitecture: {}\nMaintainer: {MAINTAINER}\n\
         Depends: {}\nRecommends: rxdsk-dkms (= {})\nSection: admin\nPriority: optional\n\
         Homepage: {HOMEPAGE}\n\
         Description: control tool for the rxdsk RAM block device\n \
         rxdskctl creates, lists, resizes and destroys rxdsk RAM block devices\n \
         through the module's versioned ioctl ABI (/dev/rxdsk-control), with\n \
         util-linux style output: human-readable tables, or JSON for scripts.\n \
         .\n \
         Devices listed in /etc/rxdsk.conf are set up at boot by a systemd\n \
         generator: as swap, as mounted filesystems, or restored from a backing\n \
         disk and flushed to it at shutdown.\n",
        debian_version(),
        arch.trim(),
        shlib_depends(&s.root.join("usr/sbin/rxdskctl"))?,
        debian_version()
    );
    s.build(&control, out)
}

/// The Depends line for a binary's shared libraries, from dpkg-shlibdeps.
pub fn shlib_depends(binary: &Path) -> Result<String> {
    let scratch = packages_dir().join("shlibdeps");
    fs::create_dir_all(scratch.join("debian"))?;
    fs::write(
        scratch.join("debian/control"),
        "Source: rxdsk\n\nPackage: rxdskctl\nArchitecture: any\n",
    )?;
    let out = run_output(
        Cmd::new("dpkg-shlibdeps")
            .current_dir(&scratch)
            .args(["-O", "--warnings=0", "-e"])
            .arg(binary),
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// What the DKMS tree holds: the module's directory and every file one of its sources
/// includes from elsewhere with `#[path = "../..."]` (the ABI, the image format, the layout
/// arithmetic), in the repository's relative layout so those includes resolve.
fn dkms_sources() -> Result<Vec<String>> {
    let repo = paths::repo();
    let mut sources = vec!["rxdsk-kmod".to_string()];
    let mut dirs = vec![repo.join("rxdsk-kmod")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            for line in fs::read_to_string(&path)?.lines() {
                let Some(rest) = line.trim().strip_prefix("#[path = \"") else {
                    continue;
                };
                let rel = rest
                    .split('"')
                    .next()
                    .context("a #[path] without its closing quote")?;
                // Relative to the including file's directory; kept only if outside the module.
                let target = normalize(&path.parent().unwrap_or(&dir).join(rel));
                if let Ok(inside) = target.strip_prefix(&repo) {
                    if !inside.starts_with("rxdsk-kmod") {
                        let inside = inside.to_string_lossy().into_owned();
                        if !sources.contains(&inside) {
                            sources.push(inside);
                        }
                    }
                }
            }
        }
    }
    Ok(sources)
}

/// `path` with its `..` and `.` components resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn dkms_conf() -> String {
    format!(
        "PACKAGE_NAME=\"rxdsk\"\nPACKAGE_VERSION=\"{VERSION}\"\n\
         BUILT_MODULE_NAME[0]=\"rxdsk\"\nBUILT_MODULE_LOCATION[0]=\"rxdsk-kmod/\"\n\
         DEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n\
         MAKE[0]=\"make -C rxdsk-kmod KDIR=${{kernel_source_dir}}\"\n\
         CLEAN=\"make -C rxdsk-kmod KDIR=${{kernel_source_dir}} clean\"\n\
         AUTOINSTALL=\"yes\"\n\
         # Rust modules need a kernel built with Rust and its Rust metadata (see the README).\n\
         BUILD_EXCLUSIVE_CONFIG=\"CONFIG_RUST\"\n{DKMS_NEEDS_RUST_METADATA}"
    )
}

/// dkms.conf is a shell script that DKMS sources with `kernel_source_dir` set (dkms(8)):
/// a kernel whose build tree lacks the Rust metadata a module is built against (Debian's own
/// headers: CONFIG_RUST=y but no rust/) is made a BUILD_EXCLUSIVE mismatch, which DKMS skips
/// (status 77; dh-dkms' postinst says "Skipped.") instead of failing `dpkg --configure`. A
/// PRE_BUILD script could not do it: bookworm's dkms 3.0.10 ignores its exit status.
const DKMS_NEEDS_RUST_METADATA: &str = "\
# No Rust metadata in this kernel's build tree (rust/libkernel.rmeta, rust/libmacros.so):\n\
# nothing to build against, so match no kernel and let DKMS skip it.\n\
if [ ! -e \"${kernel_source_dir}/rust/libkernel.rmeta\" ] || \\\n\
   [ ! -e \"${kernel_source_dir}/rust/libmacros.so\" ]; then\n\
    BUILD_EXCLUSIVE_KERNEL=\"^no-rust-metadata-in-the-build-tree$\"\n\
fi\n";

const DKMS_POSTINST: &str = "#!/bin/sh
set -e
case \"$1\" in
    configure)
        /usr/lib/dkms/common.postinst rxdsk @VERSION@ \"\" \"\" \"$2\"
        ;;
esac
";

const DKMS_PRERM: &str = "#!/bin/sh
set -e
case \"$1\" in
    remove|upgrade|deconfigure)
        if [ \"$(dkms status -m rxdsk -v @VERSION@)\" ]; then
            dkms remove -m rxdsk -v @VERSION@ --all
        fi
        ;;
esac
";

fn copy_tree(from: &Path, s: &Stage, rel: &str) -> Result<()> {
    if from.is_dir() {
        for e in fs::read_dir(from)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            copy_tree(&e.path(), s, &format!("{rel}/{name}"))?;
        }
        Ok(())
    } else {
        s.file(rel, &fs::read(from)?, 0o644)
    }
}

fn dkms_deb(out: &Path) -> Result<(PathBuf, PathBuf)> {
    let s = Stage::new("rxdsk-dkms")?;
    let src = format!("usr/src/rxdsk-{VERSION}");
    for rel in dkms_sources()? {
        copy_tree(&paths::repo().join(&rel), &s, &format!("{src}/{rel}"))?;
    }
    s.file(&format!("{src}/dkms.conf"), dkms_conf().as_bytes(), 0o644)?;
    s.file(
        "DEBIAN/postinst",
        DKMS_POSTINST.replace("@VERSION@", VERSION).as_bytes(),
        0o755,
    )?;
    s.file(
        "DEBIAN/prerm",
        DKMS_PRERM.replace("@VERSION@", VERSION).as_bytes(),
        0o755,
    )?;
    s.doc()?;
    let control = format!(
        "Package: rxdsk-dkms\nVersion: {}\nArchitecture: all\nMaintainer: {MAINTAINER}\n\
         Depends: dkms (>= 3.0.0)\nSection: kernel\nPriority: optional\nHomepage: {HOMEPAGE}\n\
         Description: rxdsk RAM block device kernel module (DKMS source)\n \
         This package provides the source code of rxdsk.ko, a RAM block device\n \
         written in Rust with online grow and shrink, discard that frees memory,\n \
         per-device memory limits and a stable ioctl ABI. DKMS builds it for each\n \
         installed kernel that was built with CONFIG_RUST and ships the Rust\n \
         metadata external modules need.\n",
        debian_version()
    );
    let deb = s.build(&control, out)?;
    Ok((deb, s.root.join(src)))
}

/// Builds the staged DKMS tree as DKMS would (`make -C rxdsk-kmod KDIR=...`), against our
/// guest kernel: the sources in the package are complete.
fn check_dkms_tree(tree: &Path, kernel: &KernelBuild, tc: &KernelToolchain) -> Result<()> {
    let mut make = Cmd::new("make");
    tc.apply_env(&mut make);
    make.current_dir(tree)
        .args(["-C", "rxdsk-kmod"])
        .arg(format!("KDIR={}", kernel.build_dir.display()))
        .args(tc.make_vars())
        .args(kernel.flavour.make_args);
    run_logged(&mut make, &tree.join("../dkms-build.log"), "dkms tree")?;
    let ko = tree.join("rxdsk-kmod/rxdsk.ko");
    if !ko.exists() {
        bail!("the DKMS tree built no {}", ko.display());
    }
    // Leave the package's tree as shipped.
    let mut clean = Cmd::new("make");
    tc.apply_env(&mut clean);
    clean
        .current_dir(tree)
        .args(["-C", "rxdsk-kmod"])
        .arg(format!("KDIR={}", kernel.build_dir.display()))
        .args(tc.make_vars())
        .arg("clean");
    run_logged(
        &mut clean,
        &tree.join("../dkms-clean.log"),
        "dkms tree clean",
    )
}

/// lintian on packages, with the tags suppressed in `xtask/<suppressed>` (each with its
/// reason); any error or warning fails.
pub fn lintian(debs: &[PathBuf], suppressed: &str) -> Result<()> {
    let out = Cmd::new("lintian")
        .args(["--fail-on", "error,warning", "--suppress-tags-from-file"])
        .arg(paths::repo().join("xtask").join(suppressed))
        .args(debs)
        .output()
        .context("cannot run lintian (package lintian)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.trim().is_empty() {
        eprintln!("{}", text.trim_end());
    }
    if !out.status.success() {
        bail!(
            "lintian found problems{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Installs the rxdskctl package into an empty root with dpkg (no chroot: `--root`), checks
/// that the man page renders and the bash completion loads, purges it, and requires that
/// nothing but dpkg's own database is left.
fn check_install(deb: &Path) -> Result<()> {
    let root = packages_dir().join("install-root");
    let _ = fs::remove_dir_all(&root);
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::write(root.join("var/lib/dpkg/status"), "")?;
    let dpkg = |args: &[&str]| -> Result<()> {
        run(Cmd::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args([
                "--force-depends",
                "--force-script-chrootless",
                "--force-not-root",
            ])
            .args(["--log=/dev/null"])
            .args(args))
    };
    dpkg(&["--install", &deb.display().to_string()])?;
    let page = root.join("usr/share/man/man8/rxdskctl.8.gz");
    let text = run_output(Cmd::new("man").arg("-l").arg(&page).env("MANWIDTH", "80"))?;
    if !text.contains("rxdskctl - Set up and control rxdsk RAM block devices") {
        bail!("man -l {} rendered:\n{text}", page.display());
    }
    let page = root.join("usr/share/man/man5/rxdsk.conf.5.gz");
    let text = run_output(Cmd::new("man").arg("-l").arg(&page).env("MANWIDTH", "80"))?;
    if !text.contains("rxdsk.conf, rxdsk.conf.d - rxdsk RAM block devices to set up at boot") {
        bail!("man -l {} rendered:\n{text}", page.display());
    }
    let generator = root.join("usr/lib/systemd/system-generators/rxdsk-generator");
    if fs::canonicalize(&generator)? != fs::canonicalize(root.join("usr/sbin/rxdskctl"))? {
        bail!("{} does not lead to rxdskctl", generator.display());
    }
    let completion = root.join("usr/share/bash-completion/completions/rxdskctl");
    let loaded = run_output(Cmd::new("bash").arg("-c").arg(format!(
        "source {} && complete -p rxdskctl",
        completion.display()
    )))?;
    if !loaded.contains("rxdskctl") {
        bail!("the bash completion did not register: {loaded}");
    }
    dpkg(&["--purge", "rxdskctl"])?;
    let mut left = Vec::new();
    collect(&root, &root, &mut left)?;
    left.retain(|f| !f.starts_with("var/lib/dpkg/"));
    if !left.is_empty() {
        bail!("files left after purging rxdskctl: {left:?}");
    }
    Ok(())
}

/// The DKMS source tree as staged for the rxdsk-dkms package (after [`build`]).
pub fn dkms_tree() -> PathBuf {
    packages_dir()
        .join("stage/rxdsk-dkms")
        .join(format!("usr/src/rxdsk-{VERSION}"))
}

/// Builds both packages into `target/packages/`, checks them, returns their paths.
pub fn build(kernel: &KernelBuild, tc: &KernelToolchain) -> Result<Vec<PathBuf>> {
    let out = packages_dir();
    fs::create_dir_all(&out)?;
    let ctl = rxdskctl_deb(&out)?;
    let (dkms, tree) = dkms_deb(&out)?;
    eprintln!("[package] building the DKMS source tree against the guest kernel");
    check_dkms_tree(&tree, kernel, tc)?;
    let debs = vec![ctl, dkms];
    eprintln!("[package] lintian");
    lintian(&debs, "lintian-suppressed")?;
    eprintln!("[package] install, man page, bash completion and purge of rxdskctl");
    check_install(&debs[0])?;
    Ok(debs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_subcommand() {
        let pages = man_pages().unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "rxdskctl",
            "rxdskctl-create",
            "rxdskctl-list",
            "rxdskctl-resize",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        let main = String::from_utf8_lossy(&pages[0].1);
        assert!(main.contains(".TH rxdskctl 8"), "{main}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        let bash = String::from_utf8_lossy(&completion(clap_complete::Shell::Bash)).into_owned();
        assert!(bash.contains("create") && bash.contains("--mem-limit"));
    }

    #[test]
    fn dkms_tree_has_every_included_file() {
        let sources = dkms_sources().unwrap_or_else(|e| panic!("{e}"));
        for want in [
            "rxdsk-kmod",
            "rxdsk-ioctl/src/abi.rs",
            "rxdsk-ioctl/src/image.rs",
            "rxdsk-layout/src/layout.rs",
        ] {
            assert!(sources.iter().any(|s| s == want), "{sources:?}");
        }
    }

    /// dkms.conf is a shell script DKMS sources with `kernel_source_dir` set (dkms(8)): a
    /// kernel whose build tree has no Rust metadata must not match the BUILD_EXCLUSIVE_*
    /// directives, so that DKMS skips it (status 77, "Skipped." in dpkg --configure, with
    /// bookworm's dkms 3.0.10 as with later ones) instead of failing the build. Checked the
    /// way DKMS checks BUILD_EXCLUSIVE_KERNEL, on trees with and without the metadata.
    #[test]
    fn dkms_skips_a_kernel_without_rust_metadata() {
        let dir = std::env::temp_dir().join(format!("xtask-dkms-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let with = dir.join("with/build");
        fs::create_dir_all(with.join("rust")).unwrap();
        for f in ["rust/libkernel.rmeta", "rust/libmacros.so", ".config"] {
            fs::write(with.join(f), "").unwrap();
        }
        let without = dir.join("without/build");
        fs::create_dir_all(&without).unwrap();
        fs::write(without.join(".config"), "CONFIG_RUST=y\n").unwrap();
        let conf = dir.join("dkms.conf");
        fs::write(&conf, dkms_conf()).unwrap();
        let excluded = |tree: &Path| {
            let out = Cmd::new("bash")
                .arg("-c")
                .arg(
                    "kernelver=7.3.4 arch=x86_64 kernel_source_dir=\"$1\"; . \"$2\"; \
                     [[ $BUILD_EXCLUSIVE_KERNEL && ! $kernelver =~ $BUILD_EXCLUSIVE_KERNEL ]] \
                     && echo excluded || echo built",
                )
                .arg("bash")
                .arg(tree)
                .arg(&conf)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(excluded(&with), "built");
        assert_eq!(excluded(&without), "excluded");
        let _ = fs::remove_dir_all(&dir);
    }

    /// The changelog's date is the last commit's, or SOURCE_DATE_EPOCH's
    /// (reproducible-builds.org): never the time of the build.
    #[test]
    fn changelog_dates_are_reproducible() {
        let git = || Some("951782400".to_string());
        assert_eq!(
            changelog_date_from(Some("1796388278"), git).unwrap(),
            "Fri, 04 Dec 2026 12:44:38 +0000"
        );
        assert_eq!(
            changelog_date_from(None, git).unwrap(),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            changelog_date_from(Some("0"), git).unwrap(),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        let e = changelog_date_from(None, || None).unwrap_err().to_string();
        assert!(e.contains("SOURCE_DATE_EPOCH"), "{e}");
        let e = changelog_date_from(Some("yesterday"), git)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SOURCE_DATE_EPOCH"), "{e}");
        // In this checkout, the last commit's.
        let date = changelog_date().unwrap();
        assert_eq!(date, changelog_date().unwrap());
        assert!(date.ends_with(" +0000"), "{date}");
    }

    #[test]
    fn dkms_conf_follows_debian() {
        let c = dkms_conf();
        assert!(c.contains("BUILD_EXCLUSIVE_CONFIG=\"CONFIG_RUST\""));
        assert!(c.contains(&format!("PACKAGE_VERSION=\"{VERSION}\"")));
        assert!(c.contains("BUILT_MODULE_LOCATION[0]=\"rxdsk-kmod/\""));
    }
}

#[cfg(test)]
mod module_version {
    /// The module states its version twice (modinfo's MODULE_VERSION in C, GET_VERSION's in
    /// Rust): both are the workspace's, which the packages carry.
    #[test]
    fn the_module_versions_are_the_workspace_s() {
        let repo = crate::paths::repo();
        let read = |p: &str| std::fs::read_to_string(repo.join(p)).unwrap();
        let c = read("rxdsk-kmod/sys/helpers.c");
        assert!(
            c.contains(&format!("MODULE_VERSION(\"{}\");", super::VERSION)),
            "helpers.c's MODULE_VERSION is not {}",
            super::VERSION
        );
        let rust = read("rxdsk-kmod/ctl/control.rs");
        assert!(
            rust.contains(&format!(
                "pub(crate) const MODULE_VERSION: &str = \"{}\";",
                super::VERSION
            )),
            "control.rs's MODULE_VERSION is not {}",
            super::VERSION
        );
    }
}
