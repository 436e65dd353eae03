//! `rxdskctl` end to end against the real module: create, list -J, resize, stats -J, destroy,
//! the busy error and a bad block size. Each step is cross-checked with the ioctls.

use crate::blk::{self, MIB, PAGE};
use crate::harness::{cmd, cmd_ok, ensure, TestResult};
use crate::rxdsk::{list_ids, Device};
use serde_json::Value;

fn json(out: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(out).map_err(|e| format!("`{what}` printed invalid JSON ({e}): {out}"))
}

/// The first value stored under `key` anywhere in `v`.
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

/// The `list -J` entry of `path`.
fn list_entry(path: &str) -> Result<Value, String> {
    let out = cmd_ok("rxdskctl", &["list", "-J"])?;
    let v = json(&out.stdout, "rxdskctl list -J")?;
    let arr = v["rxdsk"]
        .as_array()
        .ok_or_else(|| format!("`rxdskctl list -J` has no \"rxdsk\" array: {v}"))?;
    let ids = list_ids()?;
    ensure(arr.len() == ids.len(), || {
        format!(
            "`rxdskctl list -J` shows {} devices, LIST {ids:?}: {v}",
            arr.len()
        )
    })?;
    arr.iter()
        .find(|e| e["name"] == path)
        .cloned()
        .ok_or_else(|| format!("`rxdskctl list -J` has no entry named {path}: {v}"))
}

/// Compares the fields of a `list -J` entry with what they must be.
fn expect_entry(e: &Value, want: &[(&str, Value)]) -> TestResult {
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, w)| e.get(*k) != Some(w))
        .map(|(k, w)| format!("{k}: {:?}, want {w}", e.get(*k)))
        .collect();
    ensure(bad.is_empty(), || {
        format!("`rxdskctl list -J` entry {e}: {}", bad.join("; "))
    })
}

pub fn cli_end_to_end() -> TestResult {
    let before = list_ids()?;
    let out = cmd_ok("rxdskctl", &["create", "--size", "64M"])?;
    let path = out.stdout.trim().to_string();
    let id: u32 = path
        .strip_prefix("/dev/rxd")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "`rxdskctl create --size 64M` printed {:?}, want /dev/rxdN",
                out.stdout
            )
        })?;
    let dev = Device::adopt(id);
    ensure(out.stdout == format!("{path}\n"), || {
        format!(
            "`rxdskctl create` printed {:?}, want only the path",
            out.stdout
        )
    })?;
    dev.wait_for_node()?;
    let info = dev.info()?;
    ensure(
        info.size_bytes == 64 * MIB && info.logical_block_size == 4096 && info.flags == 0,
        || format!("`rxdskctl create --size 64M` made {info:?}"),
    )?;

    let e = list_entry(&path)?;
    expect_entry(
        &e,
        &[
            ("id", id.into()),
            ("size", (64 * MIB).into()),
            ("used", 0.into()),
            ("block-size", 4096.into()),
            ("mem-limit", Value::Null),
            ("ro", false.into()),
            ("open", 0.into()),
        ],
    )?;

    {
        let f = blk::open_direct(&path, true)?;
        blk::write_pattern(&f, 0, PAGE, 3)?;
    }
    cmd_ok("rxdskctl", &["resize", &format!("rxd{id}"), "128M"])?;
    let size = dev.info()?.size_bytes;
    ensure(size == 128 * MIB, || {
        format!("after `rxdskctl resize rxd{id} 128M` INFO says {size} bytes")
    })?;
    let e = list_entry(&path)?;
    expect_entry(
        &e,
        &[
            ("size", (128 * MIB).into()),
            ("used", PAGE.into()),
            ("open", 0.into()),
        ],
    )?;

    let out = cmd_ok("rxdskctl", &["stats", &id.to_string(), "-J"])?;
    let v = json(&out.stdout, "rxdskctl stats -J")?;
    let pages = dev.stats()?.pages;
    let shown = find_key(&v, "pages").cloned();
    ensure(shown == Some(pages.into()), || {
        format!("`rxdskctl stats {id} -J` pages: {shown:?}, STATS says {pages}: {v}")
    })?;

    {
        let _open = blk::open_direct(&path, false)?;
        let out = cmd("rxdskctl", &["destroy", &path])?;
        let want = format!("rxdskctl: {path}: cannot destroy: device busy");
        ensure(out.status == 1 && out.stderr.trim() == want, || {
            format!(
                "`rxdskctl destroy {path}` while open: status {}, stderr {:?}; want 1 and {want:?}",
                out.status, out.stderr
            )
        })?;
        ensure(list_ids()?.contains(&id), || {
            format!("{path} was destroyed although open")
        })?;
        let e = list_entry(&path)?;
        expect_entry(&e, &[("open", 1.into())])?;
    }
    cmd_ok("rxdskctl", &["destroy", &path])?;
    let now = list_ids()?;
    if now.contains(&id) {
        return Err(format!(
            "`rxdskctl destroy {path}` exited 0 but LIST still has {id}"
        ));
    }
    dev.forget();
    ensure(now == before, || {
        format!("LIST {now:?}, before the test {before:?}")
    })?;

    let out = cmd(
        "rxdskctl",
        &["create", "--size", "64M", "--block-size", "1000"],
    )?;
    if out.status == 0 {
        if let Some(n) = out
            .stdout
            .trim()
            .strip_prefix("/dev/rxd")
            .and_then(|n| n.parse().ok())
        {
            drop(Device::adopt(n));
        }
    }
    ensure(out.status == 1 && !out.stderr.trim().is_empty(), || {
        format!(
            "`rxdskctl create --size 64M --block-size 1000`: status {}, stderr {:?}; want 1 and \
             an error message",
            out.status, out.stderr
        )
    })?;
    let now = list_ids()?;
    ensure(now == before, || {
        format!("a refused create left LIST at {now:?}, before {before:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_key_searches_nested_values() {
        let v: Value = serde_json::json!({"rxdsk": [{"name": "/dev/rxd0", "stats": {"pages": 3}}]});
        assert_eq!(find_key(&v, "pages"), Some(&Value::from(3)));
        assert_eq!(find_key(&v, "nope"), None);
        let flat: Value = serde_json::json!({"pages": 1, "x": {"pages": 2}});
        assert_eq!(find_key(&flat, "pages"), Some(&Value::from(1)));
    }
}
