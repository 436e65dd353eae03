//! `cargo xtask module`: builds rxdsk.ko against our kernel tree with CLIPPY=1, warnings as errors.

use crate::deps::KernelToolchain;
use crate::kernel::KernelBuild;
use crate::paths;
use crate::util::{run_logged, Cmd};
use anyhow::{bail, Result};
use std::fs;
use std::path::PathBuf;

/// rxdsk.ko.
pub fn build(kernel: &KernelBuild, tc: &KernelToolchain) -> Result<PathBuf> {
    build_dir(kernel, tc, "rxdsk-kmod", "rxdsk.ko")
}

/// rxdsk_bench.ko, the in-kernel load generator.
pub fn build_bench(kernel: &KernelBuild, tc: &KernelToolchain) -> Result<PathBuf> {
    build_dir(kernel, tc, "rxdsk-kbench", "rxdsk_bench.ko")
}

fn build_dir(
    kernel: &KernelBuild,
    tc: &KernelToolchain,
    dir: &str,
    ko_name: &str,
) -> Result<PathBuf> {
    let out = paths::target().join(format!("{dir}-{}", kernel.flavour.name));
    fs::create_dir_all(&out)?;
    let mut make = Cmd::new("make");
    tc.apply_env(&mut make);
    make.arg("-C")
        .arg(&kernel.build_dir)
        .arg(format!("M={}", paths::repo().join(dir).display()))
        .arg(format!("MO={}", out.display()))
        .args(tc.make_vars())
        .args(kernel.flavour.make_args)
        .arg(format!("KRUSTFLAGS=-Dwarnings {}", kernel.flavour.module_rustflags).trim_end())
        .args(["CLIPPY=1", "W=1", "modules"]);
    let log = out.join("build.log");
    run_logged(&mut make, &log, dir)?;
    // -Dwarnings covers rustc and clippy; C-side or modpost warnings would still pass, so look.
    let text = fs::read_to_string(&log)?;
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning:") || l.contains("WARNING:"))
        .collect();
    if !warnings.is_empty() {
        bail!("module build printed warnings:\n{}", warnings.join("\n"));
    }
    let ko = out.join(ko_name);
    if !ko.exists() {
        bail!("{} was not produced", ko.display());
    }
    Ok(ko)
}
