//! `cargo xtask module`: builds rxdsk.ko against our kernel tree with CLIPPY=1, warnings as errors.

use crate::deps::KernelToolchain;
use crate::kernel::KernelBuild;
use crate::paths;
use crate::util::{run_logged, Cmd};
use anyhow::{bail, Result};
use std::fs;
use std::path::PathBuf;

pub fn build(kernel: &KernelBuild, tc: &KernelToolchain) -> Result<PathBuf> {
    let out = paths::target().join(format!("kmod-{}", kernel.flavour.name));
    fs::create_dir_all(&out)?;
    let mut make = Cmd::new("make");
    tc.apply_env(&mut make);
    make.arg("-C")
        .arg(&kernel.build_dir)
        .arg(format!("M={}", paths::repo().join("rxdsk-kmod").display()))
        .arg(format!("MO={}", out.display()))
        .args(tc.make_vars())
        .args(kernel.flavour.make_args)
        .args(["CLIPPY=1", "KRUSTFLAGS=-Dwarnings", "W=1", "modules"]);
    let log = out.join("build.log");
    run_logged(&mut make, &log, "module")?;
    // -Dwarnings covers rustc and clippy; C-side or modpost warnings would still pass, so look.
    let text = fs::read_to_string(&log)?;
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning:") || l.contains("WARNING:"))
        .collect();
    if !warnings.is_empty() {
        bail!("module build printed warnings:\n{}", warnings.join("\n"));
    }
    let ko = out.join("rxdsk.ko");
    if !ko.exists() {
        bail!("{} was not produced", ko.display());
    }
    Ok(ko)
}
