//! Export against a tree laid out as nvmet's configfs (`testutil::nvmet`).

use super::*;
use crate::testutil::nvmet::{fake_nvmet, snapshot};

fn request(transport: Transport, address: Option<&str>, port: Option<u16>) -> Request {
    Request {
        id: 0,
        transport,
        address: address.map(str::to_string),
        port,
        nqn: None,
        allow_hosts: vec![AllowedHost::new("nqn.2014-08.org.nvmexpress:uuid:h")],
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

const H2: &str = "nqn.2014-08.org.nvmexpress:uuid:h2";

fn secret(transform: u8, fill: u8) -> Secret {
    Secret::generate(transform, 32, &mut &[fill; 32][..]).unwrap_or_else(|e| panic!("{e}"))
}

fn auth(fill: u8, ctrl: Option<u8>) -> Option<Auth> {
    Some(Auth {
        secret: secret(1, fill),
        ctrl_secret: ctrl.map(|c| secret(1, c)),
        hash: Hash::Sha384,
        dhgroup: DhGroup::Ffdhe2048,
    })
}

fn with_hosts(id: u32, hosts: &[(&str, Option<Auth>)]) -> Request {
    Request {
        allow_hosts: hosts
            .iter()
            .map(|(nqn, auth)| AllowedHost {
                nqn: nqn.to_string(),
                auth: auth.clone(),
            })
            .collect(),
        ..loop_request(id, None)
    }
}

fn host_file(root: &Path, host: &str, file: &str) -> String {
    read(&root.join("hosts").join(host).join(file))
}

/// Each host gets its own secrets, hash and group in nvmet; `exports` says which
/// authenticate, never with a secret.
#[test]
fn secrets_are_written_per_host() {
    let (_dir, root) = fake_nvmet("export-auth");
    let r = with_hosts(0, &[(HOST, auth(1, Some(2))), (H2, None)]);
    let e = export(&root, &r).unwrap_or_else(|e| panic!("{e}"));
    let a = r.allow_hosts[0].auth.clone().unwrap_or_else(|| panic!());
    assert_eq!(host_file(&root, HOST, "dhchap_key"), a.secret.encode());
    assert_eq!(
        Some(host_file(&root, HOST, "dhchap_ctrl_key")),
        a.ctrl_secret.as_ref().map(Secret::encode)
    );
    assert_eq!(host_file(&root, HOST, "dhchap_hash"), "hmac(sha384)");
    assert_eq!(host_file(&root, HOST, "dhchap_dhgroup"), "ffdhe2048");
    assert_eq!(host_file(&root, H2, "dhchap_key"), "");
    assert_eq!(
        e.authenticated_hosts,
        [Authenticated {
            nqn: HOST.into(),
            hash: "hmac(sha384)".into(),
            dhgroup: "ffdhe2048".into(),
            bidirectional: true,
        }]
    );
    assert!(is_as_requested(&e, &r));
    let json = render_json(std::slice::from_ref(&e));
    assert!(
        !json.contains("DHHC") && !json.contains(&a.secret.encode()[10..20]),
        "{json}"
    );
    assert!(json.contains("\"authenticated-hosts\""), "{json}");
    assert!(!format!("{e:?}").contains("DHHC"), "{e:?}");
    let line = render(&[e]);
    assert!(
        line.contains(&format!(" {HOST}(dhchap+ctrl),{H2} ")),
        "{line}"
    );
}

/// nvmet cannot take a secret away from a host: the host is made anew, without it.
#[test]
fn a_secret_taken_away_is_gone() {
    let (_dir, root) = fake_nvmet("export-auth-off");
    export(&root, &with_hosts(0, &[(HOST, auth(1, Some(2)))])).unwrap_or_else(|e| panic!("{e}"));
    // Without the controller's secret.
    let r = with_hosts(0, &[(HOST, auth(1, None))]);
    let e = export(&root, &r).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host_file(&root, HOST, "dhchap_ctrl_key"), "");
    assert!(!host_file(&root, HOST, "dhchap_key").is_empty());
    assert!(is_as_requested(&e, &r));
    assert!(!e.authenticated_hosts[0].bidirectional);
    // Without any.
    let r = with_hosts(0, &[(HOST, None)]);
    let e = export(&root, &r).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host_file(&root, HOST, "dhchap_key"), "");
    assert!(is_as_requested(&e, &r));
    assert!(e.authenticated_hosts.is_empty());
    assert_eq!(e.allowed_hosts, [HOST]);
    // A host revoked goes, secrets and all.
    export(&root, &with_hosts(0, &[(H2, auth(3, None))])).unwrap_or_else(|e| panic!("{e}"));
    assert!(!root.join("hosts").join(HOST).exists());
    unexport(&root, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snapshot(&root), ["hosts/", "ports/", "subsystems/"]);
}

/// nvmet keeps a host's secrets for every subsystem that allows it: another export cannot
/// change them, and nothing is changed when it tries.
#[test]
fn a_host_another_export_allows_keeps_its_secrets() {
    let (_dir, root) = fake_nvmet("export-auth-shared");
    export(&root, &with_hosts(0, &[(HOST, auth(1, None))])).unwrap_or_else(|e| panic!("{e}"));
    let before = snapshot(&root);
    for other in [auth(4, None), auth(1, Some(2)), None] {
        let r = Request {
            nqn: Some("nqn.2014-08.org.example:other".into()),
            ..with_hosts(1, &[(HOST, other)])
        };
        assert_eq!(
            export(&root, &r),
            Err(format!(
                "host {HOST} is allowed by nqn.2026-12.io.rxdsk:rxd0 too, with other DH-HMAC-CHAP \
                 settings: nvmet keeps them per host, so they would change for \
                 nqn.2026-12.io.rxdsk:rxd0 as well (give the same secrets, or unexport \
                 nqn.2026-12.io.rxdsk:rxd0 first)"
            ))
        );
        assert_eq!(snapshot(&root), before);
    }
    // The same secrets: both exports allow the host.
    let r = Request {
        nqn: Some("nqn.2014-08.org.example:other".into()),
        ..with_hosts(1, &[(HOST, auth(1, None))])
    };
    assert!(export(&root, &r).is_ok());
    // The first one goes: the host stays, for the other.
    unexport(&root, 0).unwrap_or_else(|e| panic!("{e}"));
    assert!(!host_file(&root, HOST, "dhchap_key").is_empty());
}

/// What `apply` compares: the subsystem, its one port and address, the hosts and their
/// settings; an export to another address leaves the old port.
#[test]
fn an_export_as_requested_or_not() {
    let (_dir, root) = fake_nvmet("export-compare");
    let r = Request {
        transport: Transport::Tcp,
        address: Some("192.0.2.1".into()),
        ..with_hosts(0, &[(HOST, auth(1, None))])
    };
    let e = export(&root, &r).unwrap_or_else(|e| panic!("{e}"));
    assert!(is_as_requested(&e, &r));
    let differ = [
        Request {
            address: Some("192.0.2.2".into()),
            ..r.clone()
        },
        Request {
            port: Some(4421),
            ..r.clone()
        },
        Request {
            transport: Transport::Loop,
            address: None,
            ..r.clone()
        },
        with_hosts(0, &[(HOST, auth(2, None))]),
        Request {
            allow_hosts: vec![AllowedHost::new(HOST)],
            ..r.clone()
        },
        Request {
            allow_hosts: vec![r.allow_hosts[0].clone(), AllowedHost::new(H2)],
            ..r.clone()
        },
        Request {
            nqn: Some("nqn.2014-08.org.example:other".into()),
            ..r.clone()
        },
    ];
    for d in &differ {
        assert!(!is_as_requested(&e, d), "{d:?}");
    }
    let moved = export(&root, &differ[0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((moved.address.as_str(), moved.ports), ("192.0.2.2", 1));
    assert_eq!(names(&root.join("ports")).len(), 1);
    assert!(is_as_requested(&moved, &differ[0]));
}

#[test]
fn hosts_named_once_and_not_with_any_host() {
    let twice = with_hosts(0, &[(HOST, None), (HOST, auth(1, None))]);
    assert_eq!(check(&twice), Err(format!("host {HOST} is given twice")));
    let both = Request {
        allow_any_host: true,
        ..with_hosts(0, &[(HOST, None)])
    };
    assert_eq!(
        check(&both),
        Err("--allow-any-host and --allow-host exclude each other".into())
    );
}

/// How secrets go with hosts, whatever they are (secrets or the files they are in).
#[test]
fn secrets_paired_with_hosts_by_order() {
    let hosts = [HOST.to_string(), H2.to_string()];
    let pair = |s: Vec<&'static str>, c: Vec<&'static str>, settings, any| {
        pair_secrets(&hosts, s, c, settings, any, &OPTIONS)
    };
    assert_eq!(
        pair(vec!["a", "b"], vec!["c", "d"], (None, None), false),
        Ok(vec![
            (HOST.to_string(), Some(("a", Some("c")))),
            (H2.to_string(), Some(("b", Some("d")))),
        ])
    );
    assert_eq!(
        pair(vec![], vec![], (None, None), false),
        Ok(vec![(HOST.to_string(), None), (H2.to_string(), None)])
    );
    for (s, c, settings, any, why) in [
        (
            vec!["a"],
            vec![],
            (None, None),
            false,
            "1 --dhchap-secret for 2 --allow-host: give one for each host, in the same order",
        ),
        (
            vec!["a", "b"],
            vec!["c"],
            (None, None),
            false,
            "1 --dhchap-ctrl-secret for 2 --allow-host",
        ),
        (
            vec![],
            vec![],
            (Some(Hash::Sha512), None),
            false,
            "--dhchap-hash needs --dhchap-secret",
        ),
        (
            vec!["a", "b"],
            vec!["c", "b"],
            (None, None),
            false,
            "the --dhchap-ctrl-secret of nqn.2014-08.org.nvmexpress:uuid:h2 is its \
             --dhchap-secret",
        ),
        (
            vec!["a"],
            vec![],
            (None, None),
            true,
            "--allow-any-host turns authentication off",
        ),
    ] {
        let e = pair(s, c, settings, any).expect_err(why);
        assert!(e.starts_with(why), "{e}");
    }
}
