//! An argument that is not UTF-8 is a usage error (or, for the generator, a directory name
//! like any other), never a panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

mod common;

fn bad() -> &'static OsStr {
    OsStr::from_bytes(b"rxd\xff")
}

#[test]
fn a_non_utf8_argument_is_a_usage_error() {
    for (args, says) in [
        (vec![OsStr::new("list"), bad()], "invalid UTF-8"),
        (vec![OsStr::new("destroy"), bad()], "invalid UTF-8"),
        (vec![bad()], "unrecognized subcommand"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rxdskctl"))
            .args(&args)
            .env("RXDSK_CONTROL", "/nonexistent/rxdsk-control")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_generator_takes_any_directory_name() {
    let g = common::GeneratorLink::new("generator-utf8");
    let dir = &g.dir;
    let out = Command::new(&g.link)
        .arg(dir.join(bad()))
        .arg(dir.join(bad()).join("early"))
        .arg(dir.join(bad()).join("late"))
        .env("RXDSK_GENERATOR_ROOT", dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "{:?}: {err}",
        out.status
    );
}
