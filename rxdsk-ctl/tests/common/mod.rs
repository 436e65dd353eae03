//! What the integration tests share.

use std::path::PathBuf;

/// The rxdskctl binary under the generator's name, in a scratch directory removed on drop.
pub struct GeneratorLink {
    pub dir: PathBuf,
    pub link: PathBuf,
}

impl GeneratorLink {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rxdsk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let link = dir.join("rxdsk-generator");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rxdskctl"), &link)
            .unwrap_or_else(|e| panic!("{e}"));
        Self { dir, link }
    }
}

impl Drop for GeneratorLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
