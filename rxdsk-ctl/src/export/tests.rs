//! Export against a tree laid out as nvmet's configfs: a directory in which `mkdir` and
//! `rmdir` (the export's own) also do what configfs does, creating and removing the
//! attributes and default groups of the group.

use super::*;
use crate::testutil::Scratch;
use std::sync::atomic::{AtomicU32, Ordering};

/// nvmet's defaults are random: a counter stands for them.
static RANDOM: AtomicU32 = AtomicU32::new(1);

fn random_hex(digits: usize) -> String {
    let n = RANDOM.fetch_add(1, Ordering::Relaxed);
    format!("{n:0digits$x}")
}

fn random_uuid() -> String {
    let mut bytes = [0; 16];
    bytes[12..].copy_from_slice(&RANDOM.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    identity::format_uuid(&bytes)
}

/// The attributes (with their initial contents) and default groups of a group.
type Group = (Vec<(&'static str, String)>, &'static [&'static str]);

/// The group at `path`, by the directory it is made in; `None` outside a fake tree.
fn group(path: &Path) -> Option<Group> {
    let parent = path.parent()?;
    if !path.ancestors().any(|a| a.join(".fake-nvmet").exists()) {
        return None;
    }
    Some(match parent.file_name()?.to_str()? {
        "subsystems" => (
            vec![
                ("attr_allow_any_host", "0".into()),
                ("attr_serial", random_hex(16)),
                ("attr_model", "Linux".into()),
            ],
            &["namespaces", "allowed_hosts"],
        ),
        "namespaces" => (
            vec![
                ("device_path", "(null)".into()),
                ("enable", "0".into()),
                ("device_uuid", random_uuid()),
                (
                    "device_nguid",
                    "00000000-0000-0000-0000-000000000000".into(),
                ),
                ("revalidate_size", String::new()),
            ],
            &[],
        ),
        "ports" => (
            vec![
                ("addr_trtype", String::new()),
                ("addr_adrfam", String::new()),
                ("addr_traddr", String::new()),
                ("addr_trsvcid", String::new()),
            ],
            &["subsystems", "referrals"],
        ),
        "hosts" => (
            vec![
                ("dhchap_key", String::new()),
                ("dhchap_ctrl_key", String::new()),
                ("dhchap_hash", "hmac(sha256)".into()),
                ("dhchap_dhgroup", "null".into()),
            ],
            &[],
        ),
        _ => return None,
    })
}

/// After `mkdir path`: the group's attributes and default groups.
pub(super) fn kernel_made(path: &Path) {
    if let Some((attributes, groups)) = group(path) {
        for (name, value) in attributes {
            fs::write(path.join(name), format!("{value}\n")).unwrap_or_else(|e| panic!("{e}"));
        }
        for g in groups {
            fs::create_dir(path.join(g)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// Before `rmdir path`: its attributes go, and its default groups unless something is in
/// them (then the rmdir fails, as configfs's does).
pub(super) fn kernel_unmade(path: &Path) {
    if let Some((attributes, groups)) = group(path) {
        for (name, _) in attributes {
            let _ = fs::remove_file(path.join(name));
        }
        for g in groups {
            let _ = fs::remove_dir(path.join(g));
        }
    }
}

/// A fake nvmet tree (`<dir>/nvmet`, as configfs mounted at `<dir>`).
fn fake_nvmet(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new(name);
    let root = dir.0.join("nvmet");
    for d in ["subsystems", "ports", "hosts"] {
        fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("{e}"));
    }
    fs::write(dir.0.join(".fake-nvmet"), "").unwrap_or_else(|e| panic!("{e}"));
    (dir, root)
}

/// Every file and link under `dir` with its contents or target, to compare states.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_symlink() => {
                    out.push(format!("{rel} -> {:?}", fs::read_link(&p).ok()))
                }
                Ok(m) if m.is_dir() => {
                    out.push(format!("{rel}/"));
                    todo.push(p);
                }
                _ => out.push(format!("{rel} = {:?}", fs::read_to_string(&p).ok())),
            }
        }
    }
    out.sort();
    out
}

fn request(transport: Transport, address: Option<&str>, port: Option<u16>) -> Request {
    Request {
        id: 0,
        transport,
        address: address.map(str::to_string),
        port,
        nqn: None,
        allow_hosts: vec!["nqn.2014-08.org.nvmexpress:uuid:h".into()],
        allow_any_host: false,
    }
}

/// The address and port are checked before anything is changed, each with its reason;
/// what is written to configfs is the address's canonical form.
#[test]
fn addresses_and_ports_are_checked_up_front() {
    let ok = |a: &str| {
        listen_address(&request(Transport::Tcp, Some(a), None))
            .unwrap_or_else(|e| panic!("{a}: {e}"))
    };
    assert_eq!(
        ok("192.0.2.10"),
        Some(Listen {
            family: "ipv4",
            address: "192.0.2.10".into(),
            port: 4420
        })
    );
    assert_eq!(
        ok("2001:DB8:0:0::1"),
        Some(Listen {
            family: "ipv6",
            address: "2001:db8::1".into(),
            port: 4420
        })
    );
    // `lo` is on every Linux machine.
    assert_eq!(
        ok("FE80::0001%lo"),
        Some(Listen {
            family: "ipv6",
            address: "fe80::1%lo".into(),
            port: 4420
        })
    );
    assert_eq!(
        listen_address(&request(Transport::Tcp, Some("192.0.2.1"), Some(8009))),
        Ok(Some(Listen {
            family: "ipv4",
            address: "192.0.2.1".into(),
            port: 8009
        }))
    );
    assert_eq!(
        listen_address(&request(Transport::Loop, None, None)),
        Ok(None)
    );
    let bad = |transport, address: Option<&str>, port| {
        listen_address(&request(transport, address, port)).expect_err("accepted")
    };
    for (address, why) in [
        (
            "192.0.2.300",
            "invalid --address \"192.0.2.300\": not an IPv4 or IPv6 address",
        ),
        (
            "192.0.2.010",
            "invalid --address \"192.0.2.010\": not an IPv4 or IPv6 address",
        ),
        (
            "host.example",
            "invalid --address \"host.example\": not an IPv4 or IPv6 address",
        ),
        ("", "invalid --address \"\": not an IPv4 or IPv6 address"),
        (
            "fe80::1",
            "invalid --address \"fe80::1\": a link-local address needs its interface \
             (fe80::1%eth0, say)",
        ),
        (
            "2001:db8::1%lo",
            "invalid --address \"2001:db8::1%lo\": only a link-local address (fe80::/10) \
             takes %interface",
        ),
        (
            "192.0.2.1%lo",
            "invalid --address \"192.0.2.1%lo\": only a link-local address (fe80::/10) \
             takes %interface",
        ),
        (
            "fe80::1%",
            "invalid --address \"fe80::1%\": no network interface \"\"",
        ),
        (
            "fe80::1%rxdsk-none0",
            "invalid --address \"fe80::1%rxdsk-none0\": no network interface \"rxdsk-none0\"",
        ),
        (
            "fe80::1%../lo",
            "invalid --address \"fe80::1%../lo\": no network interface \"../lo\"",
        ),
    ] {
        assert_eq!(bad(Transport::Tcp, Some(address), None), why, "{address}");
    }
    assert_eq!(
        bad(Transport::Tcp, Some("192.0.2.1"), Some(0)),
        "invalid --port 0: a TCP port is 1 to 65535"
    );
    assert_eq!(
        bad(Transport::Tcp, None, None),
        "--address is needed with --transport tcp"
    );
    assert_eq!(
        bad(Transport::Loop, Some("192.0.2.1"), None),
        "--address and --port are for --transport tcp, not loop"
    );
    assert_eq!(
        bad(Transport::Loop, None, Some(4420)),
        "--address and --port are for --transport tcp, not loop"
    );
}

/// A port that cannot be enabled says why, with the errno of the configfs operation:
/// not always "in use".
#[test]
fn link_failures_name_their_errno() {
    use nix::errno::Errno;
    let listen = Listen {
        family: "ipv4",
        address: "192.0.2.1".into(),
        port: 4420,
    };
    let at = Path::new("/sys/kernel/config/nvmet/ports/1/subsystems/nqn.x");
    let said = |errno: Errno| {
        port_failure(
            at,
            &std::io::Error::from_raw_os_error(errno as i32),
            Some(&listen),
        )
    };
    assert_eq!(
        said(Errno::EADDRINUSE),
        "/sys/kernel/config/nvmet/ports/1/subsystems/nqn.x: cannot enable the port: Address \
         already in use (another program listens on 192.0.2.1 port 4420)"
    );
    assert_eq!(
        said(Errno::EADDRNOTAVAIL),
        "/sys/kernel/config/nvmet/ports/1/subsystems/nqn.x: cannot enable the port: Cannot \
         assign requested address (no interface of this machine has 192.0.2.1)"
    );
    assert_eq!(
        said(Errno::EINVAL),
        "/sys/kernel/config/nvmet/ports/1/subsystems/nqn.x: cannot enable the port: Invalid \
         argument"
    );
    // The real operation's errno: here the directory is missing.
    let dir = crate::testutil::Scratch::new("export-link");
    let e = enable_port(&dir.0, &dir.0.join("missing/x"), Some(&listen)).expect_err("linked");
    assert!(
        e.ends_with("cannot enable the port: No such file or directory"),
        "{e}"
    );
    assert!(!e.contains("in use"), "{e}");
}

#[test]
fn nqns() {
    assert_eq!(default_nqn(3), "nqn.2026-12.io.rxdsk:rxd3");
    assert!(check_nqn(&default_nqn(3)).is_ok());
    assert!(check_nqn("host-a").is_err());
    assert!(check_nqn("nqn.x/../y").is_err());
    assert!(check_nqn(&format!("nqn.{}", "a".repeat(220))).is_err());
}

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:h";

fn loop_request(id: u32, nqn: Option<&str>) -> Request {
    Request {
        id,
        nqn: nqn.map(str::to_string),
        ..request(Transport::Loop, None, None)
    }
}

/// The serial, UUID and NGUID are the NQN's: the same after an unexport and a new export,
/// others for another NQN; `exports` shows them.
#[test]
fn the_identity_is_the_nqns() {
    let (_dir, root) = fake_nvmet("export-identity");
    let first = export(&root, &loop_request(0, None)).unwrap_or_else(|e| panic!("{e}"));
    let want = identity::derive("nqn.2026-12.io.rxdsk:rxd0", NSID);
    assert_eq!(
        (&first.serial, &first.uuid, &first.nguid),
        (&want.serial, &want.uuid, &want.nguid)
    );
    unexport(&root, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snapshot(&root), ["hosts/", "ports/", "subsystems/"]);
    let again = export(&root, &loop_request(0, None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, first);
    // Exporting again (the host list, say) keeps them.
    assert_eq!(export(&root, &loop_request(0, None)), Ok(first.clone()));
    let other = export(
        &root,
        &loop_request(1, Some("nqn.2014-08.org.example:other")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(other.serial, first.serial);
    assert_ne!(other.uuid, first.uuid);
    assert_ne!(other.nguid, first.nguid);
    // By NQN.
    assert_eq!(exports(&root), [other, first.clone()]);
    assert_eq!(
        render(&[first]),
        format!(
            "/dev/rxd0 nqn.2026-12.io.rxdsk:rxd0 loop - - {HOST} {} {}\n",
            want.serial, want.uuid
        )
    );
}

/// A subsystem exported before (by an older rxdskctl, or by hand) keeps the identity its
/// hosts know: nothing is written over a serial or a namespace already enabled.
#[test]
fn an_existing_subsystem_keeps_its_identity() {
    let (_dir, root) = fake_nvmet("export-identity-kept");
    let nqn = default_nqn(0);
    let subsys = root.join("subsystems").join(&nqn);
    mkdir(&subsys).unwrap_or_else(|e| panic!("{e}"));
    let ns = subsys.join("namespaces/1");
    mkdir(&ns).unwrap_or_else(|e| panic!("{e}"));
    for (file, value) in [
        (subsys.join("attr_serial"), "0123456789abcdef"),
        (ns.join("device_path"), "/dev/rxd0"),
        (
            ns.join("device_uuid"),
            "0e1b2d36-0000-4000-8000-000000000001",
        ),
        (ns.join("enable"), "1"),
    ] {
        fs::write(file, value).unwrap_or_else(|e| panic!("{e}"));
    }
    let e = export(&root, &loop_request(0, None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (e.serial.as_str(), e.uuid.as_str()),
        ("0123456789abcdef", "0e1b2d36-0000-4000-8000-000000000001")
    );
}
