//! The rxdskctl binary becomes the systemd generator when called as `rxdsk-generator`.

mod common;

use std::process::Command;

#[test]
fn called_as_rxdsk_generator() {
    let g = common::GeneratorLink::new("generator-name");
    let (dir, link) = (&g.dir, &g.link);
    // In test mode (RXDSK_GENERATOR_ROOT) the log is stderr, not the kernel's.
    let out = Command::new(link)
        .args(["a", "b"])
        .env("RXDSK_GENERATOR_ROOT", dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("rxdsk-generator: expected 1 or 3 directories"),
        "{err}"
    );
    // Under a root of its own (RXDSK_GENERATOR_ROOT): without a configuration nothing is
    // written; with one, its units; with rxdsk.generator=0 on the kernel command line,
    // nothing.
    let root = dir.join("root");
    let run = |out: &str| {
        let out = dir.join(out);
        let status = Command::new(link)
            .arg(&out)
            .env("RXDSK_GENERATOR_ROOT", &root)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            status.code(),
            out.join("dev-rxd0.swap").exists(),
            out.exists(),
        )
    };
    std::fs::create_dir_all(root.join("etc")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run("out-1"), (Some(0), false, false));
    std::fs::write(
        root.join("etc/rxdsk.conf"),
        "[rxd0]\nsize=1G\nfs-type=swap\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run("out-2"), (Some(0), true, true));
    std::fs::create_dir_all(root.join("proc")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("proc/cmdline"), "quiet rxdsk.generator=0\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run("out-3"), (Some(0), false, false));
}
