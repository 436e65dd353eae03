//! Where things live: the checkout, and the caches kept outside it so that a fresh clone on the
//! same machine (CI's) reuses the tools, kernel sources and kernel build trees.

use std::path::PathBuf;

/// Root of the workspace checkout.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `$RXDSK_CACHE_DIR`, else `$XDG_CACHE_HOME/rxdsk`, else `~/.cache/rxdsk`.
pub fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("RXDSK_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("rxdsk");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("rxdsk")
}

/// Project-local tools (bindgen-cli).
pub fn tools() -> PathBuf {
    cache().join("tools")
}

pub fn bindgen() -> PathBuf {
    tools().join("bin").join("bindgen")
}

/// Build outputs that belong to this checkout (initramfs, guest logs).
pub fn target() -> PathBuf {
    repo().join("target").join("xtask")
}
