//! `cargo xtask kernel`: Debian's linux-source through a private apt configuration, built into a
//! small Rust-enabled guest kernel and cached, keyed on source version + config + toolchain.

use crate::deps::KernelToolchain;
use crate::paths;
use crate::util::{run, run_logged, run_output, sha256_hex, Cmd};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The kernel series we pin; another 7.x is taken only when Debian no longer offers it.
const PINNED_SERIES: &str = "7.3";
/// Suites searched for linux-source packages, in order.
const SUITES: &[&str] = &["trixie-backports", "trixie"];
/// Bump when the build recipe changes in a way the cache key cannot see.
const RECIPE_VERSION: &str = "1";
/// Marks a completely extracted source tree; holds the Debian package version.
const SOURCE_STAMP: &str = ".rxdsk-source";
/// Marks a completed build; holds the cache key.
const BUILD_STAMP: &str = ".rxdsk-key";

/// A kernel configuration we build.
#[derive(Clone, Copy, Debug)]
pub struct Flavour {
    pub name: &'static str,
    /// Fragments merged over tinyconfig in order, relative to the repo.
    pub fragments: &'static [&'static str],
    /// Extra `make` arguments for the kernel and for modules built against it.
    pub make_args: &'static [&'static str],
    /// The bootable image, relative to the build tree, and the make target that builds it.
    pub image: &'static str,
    pub image_target: &'static str,
    /// Extra rustc flags for out-of-tree modules built against this kernel.
    pub module_rustflags: &'static str,
}

pub const GUEST: Flavour = Flavour {
    name: "guest",
    fragments: &["xtask/configs/guest.config"],
    make_args: &[],
    image: "arch/x86/boot/bzImage",
    image_target: "bzImage",
    module_rustflags: "",
};

/// KASAN, KFENCE, lockdep, kmemleak, Rust debug assertions. Rust and KASAN together need
/// clang, hence LLVM.
pub const DEBUG: Flavour = Flavour {
    name: "debug",
    fragments: &["xtask/configs/guest.config", "xtask/configs/debug.config"],
    make_args: &["LLVM=-19"],
    image: "arch/x86/boot/bzImage",
    image_target: "bzImage",
    module_rustflags: "",
};

/// User-Mode Linux: kernel code at native speed, for the in-kernel benchmark. UML's C code is
/// built with `-mcmodel=large` and no PIC; its module loader knows no GOT relocations, so our
/// Rust modules are built the same way (static relocations, large code model) instead of the
/// PIE model UML uses for the Rust in vmlinux.
pub const UML: Flavour = Flavour {
    name: "uml",
    fragments: &["xtask/configs/uml.config"],
    make_args: &["ARCH=um"],
    image: "linux",
    image_target: "linux",
    module_rustflags: "-Crelocation-model=static -Ccode-model=large",
};

/// An extracted kernel source tree.
#[derive(Clone, Debug)]
pub struct Source {
    pub dir: PathBuf,
    /// Debian package version, or a description of a user-supplied tree.
    pub version: String,
}

/// A finished kernel build.
#[derive(Clone, Debug)]
pub struct KernelBuild {
    pub build_dir: PathBuf,
    pub release: String,
    /// What to boot: bzImage, or the `linux` executable for UML.
    pub image: PathBuf,
    /// `INSTALL_MOD_PATH` of `modules_install`: holds `lib/modules/<release>/`.
    pub modules_root: PathBuf,
    pub source: Source,
    pub flavour: Flavour,
}

fn src_root() -> PathBuf {
    paths::cache().join("src")
}

/// Extracted trees in the cache, with their Debian versions.
fn cached_sources() -> Vec<Source> {
    let Ok(entries) = fs::read_dir(src_root()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = fs::read_to_string(e.path().join(SOURCE_STAMP)).ok()?;
            Some(Source {
                dir: e.path(),
                version: version.trim().to_string(),
            })
        })
        .collect()
}

/// Orders "7.3.4-1~bpo13+1" style versions by their numeric upstream part.
fn upstream_key(version: &str) -> Vec<u64> {
    version
        .split(['-', '~', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

fn pick_source(mut sources: Vec<Source>) -> Option<Source> {
    sources.sort_by_key(|s| upstream_key(&s.version));
    let pinned = format!("{PINNED_SERIES}.");
    sources
        .iter()
        .rev()
        .find(|s| s.version.starts_with(&pinned))
        .cloned()
        .or_else(|| sources.pop())
}

/// The Debian mirror the system itself uses (so no host is hard-coded here);
/// `RXDSK_DEBIAN_MIRROR` overrides it.
fn debian_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("RXDSK_DEBIAN_MIRROR") {
        return Ok(m);
    }
    // The first Debian archive that is not the security one.
    let mirror = crate::apt::source_texts().iter().find_map(|text| {
        crate::apt::sources(text).into_iter().find_map(|s| {
            (!s.suite.contains("security") && s.uri.trim_end_matches('/').ends_with("/debian"))
                .then_some(s.uri)
        })
    });
    if let Some(uri) = mirror {
        return Ok(uri);
    }
    bail!("cannot find a Debian mirror in /etc/apt; set RXDSK_DEBIAN_MIRROR")
}

/// apt-get/apt-cache over a private configuration: own sources, lists and cache; the
/// system's sources and package state are never read or written.
fn private_apt(tool: &str, apt_dir: &Path) -> Cmd {
    let mut c = Cmd::new(tool);
    c.arg("-q")
        .arg(format!(
            "-oDir::Etc::sourcelist={}",
            apt_dir.join("sources.list").display()
        ))
        .arg("-oDir::Etc::sourceparts=/nonexistent")
        .arg(format!(
            "-oDir::State::Lists={}",
            apt_dir.join("lists").display()
        ))
        .arg(format!("-oDir::Cache={}", apt_dir.join("cache").display()))
        .arg("-oDir::State::status=/dev/null")
        .arg("-oAPT::Sandbox::User=root");
    c
}

fn fetch_source() -> Result<Source> {
    let apt_dir = paths::cache().join("apt");
    for d in ["lists/partial", "cache/archives/partial", "download"] {
        fs::create_dir_all(apt_dir.join(d))?;
    }
    let mirror = debian_mirror()?;
    let list: String = SUITES
        .iter()
        .map(|s| format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {s} main\n"))
        .collect();
    fs::write(apt_dir.join("sources.list"), list)?;
    eprintln!(
        "[kernel] looking up linux-source packages ({})",
        SUITES.join(", ")
    );
    run(private_apt("apt-get", &apt_dir).arg("update")).context("private apt-get update")?;
    let names = run_output(private_apt("apt-cache", &apt_dir).args([
        "search",
        "--names-only",
        r"^linux-source-7\.[0-9]+$",
    ]))?;
    let mut series: Vec<String> = names
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.trim_start_matches("linux-source-").to_string())
        .collect();
    series.sort_by_key(|s| upstream_key(s));
    let chosen = if series.iter().any(|s| s == PINNED_SERIES) {
        PINNED_SERIES.to_string()
    } else if let Some(newest) = series.last() {
        eprintln!("[kernel] NOTE: linux-source-{PINNED_SERIES} is no longer offered; using the newest 7.x: {newest}");
        newest.clone()
    } else {
        bail!("no linux-source-7.x package found in {}", SUITES.join(", "));
    };
    let download = apt_dir.join("download");
    for e in fs::read_dir(&download)?.flatten() {
        let _ = fs::remove_file(e.path());
    }
    eprintln!("[kernel] downloading linux-source-{chosen}");
    run(private_apt("apt-get", &apt_dir)
        .current_dir(&download)
        .args(["download", &format!("linux-source-{chosen}")]))?;
    let deb = fs::read_dir(&download)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let version = run_output(Cmd::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Version"))?
        .trim()
        .to_string();
    let unpack = download.join("unpacked");
    let _ = fs::remove_dir_all(&unpack);
    run(Cmd::new("dpkg").arg("-x").arg(&deb).arg(&unpack))?;
    let tarball = unpack.join(format!("usr/src/linux-source-{chosen}.tar.xz"));
    let dir_name = format!("linux-{}", version.replace(['~', '+'], "_"));
    let final_dir = src_root().join(&dir_name);
    let tmp = src_root().join(format!(".{dir_name}.partial"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    eprintln!("[kernel] extracting linux-source {version}");
    run(Cmd::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tmp)
        .arg("--strip-components=1"))?;
    fs::write(tmp.join(SOURCE_STAMP), &version)?;
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&tmp, &final_dir)?;
    let _ = fs::remove_dir_all(&unpack);
    let _ = fs::remove_file(&deb);
    Ok(Source {
        dir: final_dir,
        version,
    })
}

/// The source tree to build: `--src`, else a cached Debian tree, else a fresh download.
pub fn source(user_src: Option<&Path>) -> Result<Source> {
    if let Some(dir) = user_src {
        let dir = fs::canonicalize(dir).with_context(|| format!("--src {}", dir.display()))?;
        if !dir.join("Makefile").exists() || !dir.join("rust").is_dir() {
            bail!(
                "{} does not look like a kernel source tree with Rust support",
                dir.display()
            );
        }
        let version = run_output(
            Cmd::new("make")
                .arg("-s")
                .arg("-C")
                .arg(&dir)
                .arg("kernelversion"),
        )?;
        return Ok(Source {
            version: format!("{} (user tree {})", version.trim(), dir.display()),
            dir,
        });
    }
    match pick_source(cached_sources()) {
        Some(s) => Ok(s),
        None => fetch_source(),
    }
}

fn config_lines(fragment: &str) -> Vec<&str> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .collect()
}

/// `make` in the source tree for the output tree `out`, with the toolchain pinned and the
/// flavour's arguments: every kernel build (and `bindeb-pkg`) runs through this.
pub fn make(
    src: &Source,
    out: &Path,
    tc: &KernelToolchain,
    flavour: Flavour,
    args: &[&str],
) -> Cmd {
    let mut c = Cmd::new("make");
    tc.apply_env(&mut c);
    c.arg("-C")
        .arg(&src.dir)
        .arg(format!("O={}", out.display()))
        .args(tc.make_vars())
        .args(flavour.make_args)
        .args(args);
    c
}

/// The cache key of a finished build (what its stamp holds).
pub fn build_key(k: &KernelBuild) -> Result<String> {
    let stamp = k.build_dir.join(BUILD_STAMP);
    Ok(fs::read_to_string(&stamp)
        .with_context(|| stamp.display().to_string())?
        .trim()
        .to_string())
}

/// Builds (or finds cached) the flavour's kernel.
pub fn build(
    flavour: Flavour,
    src: &Source,
    tc: &KernelToolchain,
    force: bool,
) -> Result<KernelBuild> {
    let fragment_paths: Vec<PathBuf> = flavour
        .fragments
        .iter()
        .map(|f| paths::repo().join(f))
        .collect();
    let mut fragment = String::new();
    for p in &fragment_paths {
        fragment += &fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
    }
    let mut toolchain = tc.fingerprint()?;
    if flavour.make_args.iter().any(|a| a.starts_with("LLVM=")) {
        toolchain += &run_output(Cmd::new("clang-19").arg("--version"))?;
    }
    let key = sha256_hex(&[
        RECIPE_VERSION.as_bytes(),
        flavour.name.as_bytes(),
        src.version.as_bytes(),
        fragment.as_bytes(),
        toolchain.as_bytes(),
        flavour.make_args.join(" ").as_bytes(),
    ]);
    let dir_name = format!(
        "{}-{}",
        flavour.name,
        &sha256_hex(&[src.dir.to_string_lossy().as_bytes()])[..12]
    );
    let build_dir = paths::cache().join("build").join(dir_name);
    fs::create_dir_all(&build_dir)?;
    let image = build_dir.join(flavour.image);
    let modules_root = build_dir.join("modinstall");
    let stamp = build_dir.join(BUILD_STAMP);
    let cached = fs::read_to_string(&stamp).is_ok_and(|k| k.trim() == key) && image.exists();
    if force {
        let _ = fs::remove_file(&stamp);
    }
    if !cached || force {
        eprintln!(
            "[kernel] building {} kernel from {} in {}",
            flavour.name,
            src.version,
            build_dir.display()
        );
        let make = |args: &[&str]| make(src, &build_dir, tc, flavour, args);
        run_logged(
            &mut make(&["tinyconfig"]),
            &build_dir.join("config.log"),
            "kernel config",
        )?;
        let mut merge = Cmd::new(src.dir.join("scripts/kconfig/merge_config.sh"));
        tc.apply_env(&mut merge);
        merge
            .current_dir(&src.dir)
            .arg("-m")
            .arg("-O")
            .arg(&build_dir)
            .arg(build_dir.join(".config"))
            .args(&fragment_paths);
        run_logged(&mut merge, &build_dir.join("merge.log"), "kernel config")?;
        run_logged(
            &mut make(&["olddefconfig"]),
            &build_dir.join("config.log"),
            "kernel config",
        )?;
        let config = fs::read_to_string(build_dir.join(".config"))?;
        let dropped: Vec<&str> = config_lines(&fragment)
            .into_iter()
            .filter(|l| !config.lines().any(|c| c == *l))
            .collect();
        if !dropped.is_empty() {
            bail!(
                "the kernel config dropped options of the {} flavour: {}",
                flavour.name,
                dropped.join(" ")
            );
        }
        let jobs = format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        );
        run_logged(
            &mut make(&[&jobs, flavour.image_target, "modules"]),
            &build_dir.join("build.log"),
            "kernel",
        )?;
        let _ = fs::remove_dir_all(&modules_root);
        let install_path = format!("INSTALL_MOD_PATH={}", modules_root.display());
        run_logged(
            &mut make(&["modules_install", &install_path, "INSTALL_MOD_STRIP=1"]),
            &build_dir.join("install.log"),
            "kernel modules",
        )?;
        fs::write(&stamp, &key)?;
    }
    let release = fs::read_to_string(build_dir.join("include/config/kernel.release"))
        .context("kernel.release missing from the build tree")?
        .trim()
        .to_string();
    Ok(KernelBuild {
        flavour,
        build_dir,
        release,
        image,
        modules_root,
        source: src.clone(),
    })
}
