//! `cargo xtask deps`: checks, and as root installs, what the build needs.
//!
//! Debian packages come from the system's own sources (bookworm and bookworm-security carry the
//! matched rustc-web/rust-web-src pair); bindgen-cli goes into the project's tools directory.

use crate::paths;
use crate::util::{run, run_output, Cmd, CmdExt};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Debian packages the build, the guest and the harness need.
const PACKAGES: &[&str] = &[
    "rustc-web",       // /usr/bin/rustc 1.96, the kernel's Rust compiler
    "rust-web-src",    // its matching core/alloc sources
    "rust-web-clippy", // /usr/bin/clippy-driver of the same version, for CLIPPY=1
    "libclang-19-dev", // bindgen needs libclang >= 17
    "clang-19",        // the debug flavour: Rust with KASAN needs an LLVM kernel build
    "lld-19",
    "llvm-19",
    "build-essential",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "kmod",
    "python3",
    "xz-utils",
    "qemu-system-x86",
    "busybox-static",
    "fio",
    "e2fsprogs",
    "dmsetup", // device-mapper in the guest (dm-log-writes, a stalled backing device, dm-cache)
    "bcache-tools", // make-bcache: bcache, a peer of the tiering bench
    "fonts-dejavu-core", // text of the bench chart
    "lintian", // checks the packages of `cargo xtask package`
    "dpkg-dev", // dpkg-shlibdeps for the rxdskctl package
    "man-db",  // the package check renders rxdskctl(8)
];

/// What `test-distro` needs besides [`PACKAGES`], installed on demand by it.
pub const DISTRO_PACKAGES: &[&str] = &[
    "mmdebstrap", // the Debian guest image
    "debhelper",  // dh_* in the kernel's `make bindeb-pkg`
    "rsync",
];

/// bindgen-cli version installed into the tools directory (>= 0.71.1 is required).
const BINDGEN_VERSION: &str = "0.73.2";

/// The toolchain the kernel and the module are built with; never rustup's.
#[derive(Clone, Debug)]
pub struct KernelToolchain {
    pub rustc: PathBuf,
    pub rustdoc: PathBuf,
    pub clippy_driver: PathBuf,
    pub bindgen: PathBuf,
    pub libclang_dir: PathBuf,
}

impl KernelToolchain {
    fn detect() -> Self {
        Self {
            rustc: "/usr/bin/rustc".into(),
            rustdoc: "/usr/bin/rustdoc".into(),
            clippy_driver: "/usr/bin/clippy-driver".into(),
            bindgen: paths::bindgen(),
            libclang_dir: "/usr/lib/llvm-19/lib".into(),
        }
    }

    /// `make` variables that pin every tool, so nothing is taken from a rustup PATH.
    pub fn make_vars(&self) -> Vec<String> {
        vec![
            format!("RUSTC={}", self.rustc.display()),
            format!("RUSTDOC={}", self.rustdoc.display()),
            format!("CLIPPY_DRIVER={}", self.clippy_driver.display()),
            format!("BINDGEN={}", self.bindgen.display()),
        ]
    }

    /// Applies the environment of a kernel build: system PATH without `~/.cargo/bin`, libclang.
    pub fn apply_env(&self, cmd: &mut Cmd) {
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        cmd.env("LIBCLANG_PATH", &self.libclang_dir);
        for var in [
            "RUSTUP_TOOLCHAIN",
            "CARGO",
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTFLAGS",
            "CARGO_TARGET_DIR",
        ] {
            cmd.env_remove(var);
        }
    }

    /// Text that identifies the toolchain in cache keys.
    pub fn fingerprint(&self) -> Result<String> {
        let mut s = String::new();
        s += &run_output(Cmd::new(&self.rustc).arg("-vV"))?;
        s += &run_output(Cmd::new(&self.bindgen).arg("--version"))?;
        s += &run_output(Cmd::new("gcc").arg("--version"))?;
        s += &self.libclang_dir.display().to_string();
        Ok(s)
    }
}

fn missing_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    let out = Cmd::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(packages)
        .output_lossy()?;
    let installed: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|s| s.starts_with("ii"))
        })
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| p.split(':').next().unwrap_or(p))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

/// Installs what is missing of `packages` (as root), or fails with the command to run.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing = missing_packages(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!(
            "missing Debian packages: {}\nrun as root: apt-get update && {cmd}",
            missing.join(" ")
        );
    }
    eprintln!("[deps] installing {}", missing.join(" "));
    run(Cmd::new("apt-get").arg("update").arg("-q")).context("apt-get update")?;
    run(Cmd::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get install")
}

fn is_root() -> bool {
    run_output(Cmd::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

fn bindgen_ok() -> bool {
    let Ok(out) = run_output(Cmd::new(paths::bindgen()).arg("--version")) else {
        return false;
    };
    // "bindgen 0.72.1"
    let version = out.split_whitespace().nth(1).unwrap_or("");
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.len() == 3 && (parts[0], parts[1], parts[2]) >= (0, 71, 1)
}

/// Checks everything and installs what is missing (as root); fails with the exact command
/// otherwise. Fast when all is present: one dpkg-query and one `bindgen --version`.
pub fn ensure() -> Result<KernelToolchain> {
    ensure_packages(PACKAGES)?;
    if !bindgen_ok() {
        eprintln!(
            "[deps] installing bindgen-cli {BINDGEN_VERSION} into {} (takes a few minutes)",
            paths::tools().display()
        );
        run(Cmd::new("cargo")
            .args([
                "install",
                "--locked",
                "--force",
                "bindgen-cli",
                "--version",
                BINDGEN_VERSION,
                "--root",
            ])
            .arg(paths::tools()))
        .context("cargo install bindgen-cli")?;
        if !bindgen_ok() {
            bail!(
                "{} still does not report a version >= 0.71.1",
                paths::bindgen().display()
            );
        }
    }
    let tc = KernelToolchain::detect();
    for tool in [&tc.rustc, &tc.rustdoc, &tc.clippy_driver] {
        if !tool.exists() {
            bail!(
                "{} is missing although its package is installed",
                tool.display()
            );
        }
    }
    if !tc.libclang_dir.join("libclang.so").exists()
        && !tc.libclang_dir.join("libclang-19.so").exists()
    {
        bail!("libclang not found in {}", tc.libclang_dir.display());
    }
    Ok(tc)
}
