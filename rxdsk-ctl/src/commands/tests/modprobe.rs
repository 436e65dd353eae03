//! The commands that create devices load the module when the control node is missing: once,
//! with a clear error when that fails; the others never do.

use super::*;
use crate::testutil::Scratch;
use std::os::unix::fs::PermissionsExt;

/// A fake `modprobe`: a script that logs its arguments to `calls` and runs `body`, and a
/// control node that exists once the script wrote `loaded`.
struct Loader {
    dir: Scratch,
    kernel: Kernel,
}

impl Loader {
    fn new(name: &str, body: &str, may_load: bool) -> Self {
        let dir = Scratch::new(name);
        let script = dir.write(
            "modprobe",
            &format!("#!/bin/sh\ncd \"$(dirname \"$0\")\"\necho \"$*\" >> calls\n{body}\n"),
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let kernel = Kernel {
            modprobe: Modprobe {
                program: script.into(),
                may_load,
            },
            ..no_kernel()
        };
        Loader { dir, kernel }
    }

    /// Loads the module as modprobe does (the control node appears).
    fn loading(name: &str) -> Self {
        Self::new(name, "touch loaded", true)
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("calls")).unwrap_or_default()
    }

    /// `rxdskctl ARGS` against `fake` behind a control node that exists once loaded.
    fn run(&self, fake: &Fake, args: &[&str]) -> Outcome {
        let loaded = self.dir.0.join("loaded");
        let open = || match loaded.exists() {
            true => Ok(fake),
            false => Err(ControlError::new(CONTROL, action::OPEN, Errno::ENOENT)),
        };
        run_opening(open, &self.kernel, args)
    }
}

#[test]
fn create_loads_the_module_once() {
    let loader = Loader::loading("modprobe-create");
    let fake = Fake::new();
    assert_eq!(
        loader.run(&fake, &["create", "-s", "1M"]),
        outcome(0, "/dev/rxd0\n", "")
    );
    assert_eq!(loader.calls(), "rxdsk\n");
    // Loaded now: not again.
    assert_eq!(loader.run(&fake, &["create", "-s", "1M"]).status, 0);
    assert_eq!(loader.calls(), "rxdsk\n");
}

#[test]
fn apply_loads_the_module() {
    let loader = Loader::loading("modprobe-apply");
    let conf = loader.dir.write("rxdsk.conf", "[rxd3]\nsize = 1M\n");
    let fake = Fake::new();
    let o = loader.run(&fake, &["apply", "--config", &conf]);
    assert_eq!(o, outcome(0, "rxd3: created 1M\n", ""));
    assert_eq!(loader.calls(), "rxdsk\n");
}

/// Commands on existing devices: no module, no device; nothing to load it for.
#[test]
fn other_commands_do_not_load_it() {
    let loader = Loader::loading("modprobe-others");
    let fake = Fake::new();
    for args in [
        &["destroy", "0"][..],
        &["resize", "0", "1M"],
        &["list"],
        &["stats", "0"],
    ] {
        let o = loader.run(&fake, args);
        assert_eq!(
            (o.status, o.stderr.as_str()),
            (
                1,
                "rxdskctl: /dev/rxdsk-control: cannot open: no such file (is the rxdsk module \
                 loaded? try: modprobe rxdsk)\n"
            ),
            "{args:?}"
        );
    }
    assert_eq!(loader.calls(), "");
}

#[test]
fn a_module_not_installed_is_said_so() {
    let loader = Loader::new(
        "modprobe-missing",
        "echo \"modprobe: FATAL: Module rxdsk not found in directory /lib/modules/7.3.4\" >&2\n\
         exit 1",
        true,
    );
    let o = loader.run(&Fake::new(), &["create", "-s", "1M"]);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    assert_eq!(
        (o.status, o.stderr),
        (
            1,
            format!(
                "rxdskctl: /dev/rxdsk-control: the rxdsk module is not installed for this kernel \
                 ({}): install the rxdsk-dkms package (see README.md, Install), which builds it \
                 for each installed kernel; {} said: modprobe: FATAL: Module rxdsk not found in \
                 directory /lib/modules/7.3.4\n",
                release.trim(),
                loader.kernel.modprobe.program.to_string_lossy()
            )
        )
    );
    assert_eq!(loader.calls(), "rxdsk\n");
}

#[test]
fn a_failed_load_says_what_modprobe_said() {
    let loader = Loader::new(
        "modprobe-fails",
        "echo \"modprobe: ERROR: could not insert 'rxdsk': Exec format error\" >&2\nexit 1",
        true,
    );
    let o = loader.run(&Fake::new(), &["create", "-s", "1M"]);
    let program = loader
        .kernel
        .modprobe
        .program
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        (o.status, o.stderr),
        (
            1,
            format!(
                "rxdskctl: /dev/rxdsk-control: cannot load the rxdsk module ({program} rxdsk: \
                 exit status: 1); {program} said: modprobe: ERROR: could not insert 'rxdsk': \
                 Exec format error\n"
            )
        )
    );
}

#[test]
fn users_are_told_only_root_can_load_it() {
    let loader = Loader::new("modprobe-user", "touch loaded", false);
    let o = loader.run(&Fake::new(), &["create", "-s", "1M"]);
    assert_eq!(
        (o.status, o.stderr.as_str()),
        (
            1,
            "rxdskctl: /dev/rxdsk-control: the rxdsk module is not loaded, and only root \
             (CAP_SYS_MODULE) can load it: ask an administrator to run modprobe rxdsk, or to \
             load it at boot (modules-load.d(5))\n"
        )
    );
    // Not even tried.
    assert_eq!(loader.calls(), "");
    // Root without CAP_SYS_MODULE (a container): modprobe's EPERM, in those words.
    let loader = Loader::new(
        "modprobe-eperm",
        "echo \"modprobe: ERROR: could not insert 'rxdsk': Operation not permitted\" >&2\nexit 1",
        true,
    );
    let o = loader.run(&Fake::new(), &["create", "-s", "1M"]);
    assert!(
        o.stderr.starts_with(
            "rxdskctl: /dev/rxdsk-control: the rxdsk module is not loaded, and this process may \
             not load modules (no CAP_SYS_MODULE); "
        ),
        "{}",
        o.stderr
    );
}
