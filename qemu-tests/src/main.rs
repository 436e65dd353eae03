//! The rxdsk guest suite. Runs as the guest's workload (started by /init) and prints KTAP on
//! the serial console, which `cargo xtask test-vm` reads.

mod control;
mod harness;

use harness::Test;

const TESTS: &[Test] = &[
    Test {
        name: "module_load",
        run: control::module_load,
    },
    Test {
        name: "version_roundtrip",
        run: control::version_roundtrip,
    },
    Test {
        name: "version_no_uninitialised_bytes",
        run: control::version_no_uninitialised_bytes,
    },
    Test {
        name: "unknown_ioctl_enotty",
        run: control::unknown_ioctl_enotty,
    },
    Test {
        name: "unprivileged_eperm",
        run: control::unprivileged_eperm,
    },
    Test {
        name: "module_unload",
        run: control::module_unload,
    },
    Test {
        name: "rxdskctl_without_module",
        run: control::rxdskctl_without_module,
    },
];

fn main() {
    let ok = harness::run_all(TESTS);
    std::process::exit(if ok { 0 } else { 1 });
}
