//! The rxdskctl binary becomes the systemd generator when called as `rxdsk-generator`.

mod common;

use std::process::Command;

#[test]
fn called_as_rxdsk_generator() {
    let g = common::GeneratorLink::new("generator-name");
    let (dir, link) = (&g.dir, &g.link);
    let out = Command::new(link)
        .args(["a", "b"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("rxdsk-generator: expected 1 or 3 directories"),
        "{err}"
    );
    // This host's own configuration, if it has one, is not ours to judge; without one the
    // generator writes nothing.
    if !std::path::Path::new("/etc/rxdsk.conf").exists()
        && !std::path::Path::new("/etc/rxdsk.conf.d").exists()
    {
        let target = dir.join("out");
        let status = Command::new(link)
            .arg(&target)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success());
        assert!(!target.exists());
    }
}
