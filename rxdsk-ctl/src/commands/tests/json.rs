//! `-J` output is a stable interface: one key convention everywhere (lower-case
//! kebab-case, as util-linux), numbers as numbers, booleans as booleans, and every key
//! documented in the `-J` help (and so in the man pages).

use super::*;
use crate::apply::Step;
use clap::CommandFactory;
use serde_json::Value;
use std::collections::BTreeSet;

/// Every object key in `v`, nested ones too.
fn keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

/// The long help of `SUBCOMMAND -J`, as words.
fn documented(subcommand: &str) -> BTreeSet<String> {
    let cmd = Cli::command();
    let help = cmd
        .find_subcommand(subcommand)
        .and_then(|c| c.get_arguments().find(|a| a.get_id() == "json"))
        .and_then(|a| a.get_long_help())
        .map(|h| h.to_string())
        .unwrap_or_else(|| panic!("{subcommand} -J has no long help"));
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_string)
        .collect()
}

fn kebab(key: &str) -> bool {
    !key.is_empty()
        && key.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Checks the keys of `text`, the `-J` output of `subcommand`.
fn check(subcommand: &str, text: &str) -> Value {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{subcommand}: {e}: {text}"));
    let mut all = BTreeSet::new();
    keys(&v, &mut all);
    let words = documented(subcommand);
    for k in &all {
        assert!(
            kebab(k),
            "{subcommand} -J: key {k:?} is not kebab-case: {text}"
        );
        assert!(
            words.contains(k),
            "{subcommand} -J: key {k:?} is not in the -J help"
        );
    }
    v
}

#[test]
fn list_stats_version_and_flush() {
    let fake = with_backed(&[0], &[]);
    fake.devices.borrow_mut().insert(
        4,
        RxdskInfo {
            id: 4,
            logical_block_size: 4096,
            size_bytes: 1 << 20,
            flags: abi::RXDSK_FLAG_COMPRESSED,
            ..Default::default()
        },
    );
    fake.compress
        .borrow_mut()
        .insert(4, (abi::RXDSK_COMPRESS_ZSTD, 3));
    let mut fake = fake;
    fake.stats.insert(4, RxdskStats::default());
    let v = check("list", &run_fake(&fake, &["list", "-J"]).stdout);
    assert_eq!(v["rxdsk"][1]["ratio"], Value::Null);
    assert_eq!(v["rxdsk"][0]["backed"], true);
    let v = check("stats", &run_fake(&fake, &["stats", "-J", "4"]).stdout);
    assert_eq!(v["read-bytes"], 0);
    assert_eq!(v["compression"]["orig-data-size"], 0);
    assert_eq!(v["compression"]["level"], 3);
    let v = check("version", &run_fake(&fake, &["version", "-J"]).stdout);
    assert_eq!(v["module"]["abi-major"], abi::RXDSK_ABI_MAJOR);
    let v = check("flush", &run_fake(&fake, &["flush", "-J", "0"]).stdout);
    assert_eq!(v["flushed"][0]["atomic"], false);
    assert!(v["flushed"][0]["seconds"].is_number());
}

#[test]
fn apply_inspect_and_exports() {
    let dir = crate::testutil::Scratch::new("json-keys");
    let conf = dir.write(
        "c.conf",
        "[rxd0]\nsize=64M\ncompress=zstd\nswap-priority=3\n[rxd1]\nsize=64M\nfs-type=ext4\n\
         mount-point=/mnt/x\noptions=noatime\n",
    );
    let fake = Fake::new();
    let o = run_fake(
        &fake,
        &["apply", "-n", "-J", "--activate", "--config", &conf],
    );
    check("apply", &o.stdout);
    // The steps this run does not plan.
    let steps = [
        Step::Restore {
            backing: "/dev/vdb".into(),
            preload: true,
            compress: (0, 0),
            mem_limit: 0,
            size: 1 << 20,
            generation: 3,
        },
        Step::Attach {
            backing: "/dev/vdb".into(),
            mode: crate::cli::Mode::Writearound,
            journal: 4096,
            flush_interval: 5,
        },
        Step::Export(Box::new(crate::export::Request {
            id: 0,
            transport: crate::export::Transport::Tcp,
            address: Some("192.0.2.1".into()),
            port: None,
            nqn: None,
            allow_hosts: vec![crate::export::AllowedHost::new("nqn.x")],
            allow_any_host: false,
        })),
        Step::Resize { from: 1, to: 2 },
    ];
    let mut actions: Vec<Value> = steps.iter().map(|s| s.json(0, true)).collect();
    let mut failed = steps[3].json(0, false);
    failed["error"] = "why".into();
    actions.push(failed);
    let doc = serde_json::json!({ "dry-run": false, "actions": actions });
    check("apply", &doc.to_string());
    let h = rxdsk_ioctl::RxdskImageHeader::new(4096, 1 << 20, 3, abi::RXDSK_IMAGE_JOURNALED, 1);
    check(
        "inspect",
        &crate::backing::render_inspect("/dev/vdb", &h, true),
    );
    let e = crate::export::Export {
        nqn: "nqn.2026-12.io.rxdsk:rxd0".into(),
        device: "/dev/rxd0".into(),
        transport: "tcp".into(),
        address: "192.0.2.1".into(),
        port: Some(4420),
        allow_any_host: false,
        allowed_hosts: vec!["nqn.x".into(), "nqn.y".into()],
        authenticated_hosts: vec![crate::export::Authenticated {
            nqn: "nqn.x".into(),
            hash: "hmac(sha256)".into(),
            dhgroup: "null".into(),
            bidirectional: true,
        }],
        hosts: Vec::new(),
        ports: 1,
        serial: "9011c443db2e840c0a09".into(),
        uuid: "9644d744-eb19-8326-bd90-0271ad626c55".into(),
        nguid: "23c21efa-2f33-5cd4-7dac-9add7f3ba115".into(),
    };
    let looped = crate::export::Export {
        transport: "loop".into(),
        address: String::new(),
        port: None,
        ..e.clone()
    };
    let v = check("exports", &crate::export::render_json(&[e, looped]));
    assert_eq!(v["exports"][0]["port"], 4420);
    assert_eq!(v["exports"][1]["port"], Value::Null);
    assert_eq!(v["exports"][0]["allow-any-host"], false);
}
