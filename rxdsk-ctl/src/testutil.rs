//! Helpers the host tests share.

use std::path::PathBuf;

pub mod nvmet;

/// A scratch directory under the temporary directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rxdskctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Scratch(dir)
    }

    /// Writes `text` at `rel` and returns the file's path.
    pub fn write(&self, rel: &str, text: &str) -> String {
        let path = self.0.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path.display().to_string()
    }

    /// The sorted names in directory `rel`.
    pub fn listing(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shipped example configuration as shipped: every setting commented out.
pub const EXAMPLE: &str = include_str!("../dist/rxdsk.conf.example");

/// The example with its settings (`#key = value`, `#[rxdN]`; prose has `# `) uncommented.
pub fn active_example() -> String {
    EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with('[') || rest.contains('=') && !rest.starts_with(' ') => {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The rxdsk.conf example of docs/using.md (its ```ini block), comments and all.
pub fn documented_example() -> &'static str {
    include_str!("../../docs/using.md")
        .split("```ini\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("no ```ini block in docs/using.md"))
}

/// Writes an image file of a `size`-byte device at flush generation `generation`: zeros and a
/// clean metadata block where a device of that size keeps it; returns the block's contents
/// and the file's bytes.
pub fn write_image(
    path: &str,
    size: u64,
    generation: u64,
) -> (rxdsk_ioctl::RxdskImageHeader, Vec<u8>) {
    use rxdsk_ioctl::{header_offset, RxdskImageHeader, RXDSK_IMAGE_CLEAN};
    let h = RxdskImageHeader::new(
        4096,
        size,
        generation,
        RXDSK_IMAGE_CLEAN,
        1_796_388_278_000_000_000,
    );
    let mut data = vec![0u8; size as usize + 8192];
    let at = header_offset(data.len() as u64).unwrap_or_default() as usize;
    data[at..at + 136].copy_from_slice(&h.to_bytes());
    std::fs::write(path, &data).unwrap_or_else(|e| panic!("{path}: {e}"));
    (h, data)
}
