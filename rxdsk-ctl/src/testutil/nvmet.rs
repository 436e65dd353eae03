//! A directory laid out as nvmet's configfs, in which the export's own `mkdir` and `rmdir`
//! also do what configfs does: create and remove the attributes and default groups of a
//! group (they call [`kernel_made`] and [`kernel_unmade`] in tests).

use super::Scratch;
use std::fs;
use std::path::{Path, PathBuf};
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
    crate::export::identity::format_uuid(&bytes)
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
pub fn kernel_made(path: &Path) {
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
pub fn kernel_unmade(path: &Path) {
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
pub fn fake_nvmet(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new(name);
    let root = dir.0.join("nvmet");
    for d in ["subsystems", "ports", "hosts"] {
        fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("{e}"));
    }
    fs::write(dir.0.join(".fake-nvmet"), "").unwrap_or_else(|e| panic!("{e}"));
    (dir, root)
}

/// Every file and link under `dir` with its contents or target, to compare states.
pub fn snapshot(dir: &Path) -> Vec<String> {
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
