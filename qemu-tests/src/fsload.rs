//! A seeded file workload for a file system on the device (ext4), and the checker of what a
//! power cut left of it.
//!
//! [`FsLoad`] is a deterministic sequence of operations from a seed, in a fixed directory
//! tree under a root ([`prepare`]): create a file with some content, append to a file, rename
//! a file (within or across directories), delete a file. [`perform`] carries out one op on
//! the file system and makes it durable before it returns: op k's seq is k, and once
//! `perform` of op k has returned, the state after ops 1..=k is durable. The sequence being a
//! function of the seed alone, the checker replays it without the (killed) writer's memory:
//! [`durable_at`] is the state after ops 1..=S (path -> file and length), and [`check`]
//! compares a restored tree with it.
//!
//! What makes an op durable, and what the checker may therefore require:
//! - POSIX (fsync, with _POSIX_SYNCHRONIZED_IO): fsync(fd) returns once all modified data and
//!   attributes of the file (its size among them) are on the storage device. It says nothing
//!   about the directory entry naming the file: Linux's fsync(2) asks for an fsync of the
//!   directory for that. So a create is durable after fsync of the file and of its directory;
//!   an append after fsync of the file; a rename and an unlink after fsync of the directories
//!   involved (both, across directories). POSIX makes rename atomic to other processes only;
//!   across a crash, ext4's journal commits a rename whole: the file has its old name or its
//!   new one, never both or neither.
//! - Nothing is promised about an op whose fsync had not returned (after S): it may be on
//!   disk wholly, partly or not at all. ext4 (data=ordered) never exposes blocks that were
//!   not written, so a partly durable append shows a prefix of the appended bytes.
//!
//! So, given S (an op whose `perform` returned before the cut) and N (at least every op the
//! writer may have started), [`check`] requires: every file live after op S is there, under
//! its name after op S or a name a later op gave it (or absent if a later op deletes it),
//! under one name only, with at least its length after op S; every file's content is a
//! prefix of that file's content stream (appends only ever extend it); a file deleted or
//! renamed away by op S does not show up under the old name; files created after S may be
//! there (any prefix of their content) or not; nothing else is in the tree.

use crate::blk;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// The directories under the root ("" is the root itself).
pub const DIRS: &[&str] = &["", "a", "b", "a/c", "b/d", "e"];
/// The workload keeps between `MIN_LIVE` and `MAX_LIVE` files, of at most `MAX_LEN` bytes.
const MIN_LIVE: usize = 6;
const MAX_LIVE: usize = 48;
const MAX_LEN: u64 = 256 * 1024;
/// A new file's length is below this.
const CREATE_LEN: u64 = 8192;
/// How many errors a failed check lists.
const ERRORS: usize = 16;

/// One op of the workload. Paths are relative to the root; every name holds the file's
/// number, so no two files ever share a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsOp {
    /// Create `path` with bytes 0..len of the file's content; fsync the file and its
    /// directory.
    Create { file: u64, path: String, len: u64 },
    /// Append bytes from..to of the file's content; fsync the file.
    Append {
        file: u64,
        path: String,
        from: u64,
        to: u64,
    },
    /// Rename; fsync the directory (both, across directories).
    Rename { file: u64, from: String, to: String },
    /// Unlink; fsync the directory.
    Delete { file: u64, path: String },
}

impl FsOp {
    pub fn file(&self) -> u64 {
        match *self {
            FsOp::Create { file, .. }
            | FsOp::Append { file, .. }
            | FsOp::Rename { file, .. }
            | FsOp::Delete { file, .. } => file,
        }
    }
}

/// A live file in the model.
#[derive(Clone, Debug)]
struct Live {
    path: String,
    len: u64,
    renames: u64,
}

/// The op sequence of a seed: an iterator of (seq, op), seq from 1, without end.
pub struct FsLoad {
    rng: u64,
    seq: u64,
    next_file: u64,
    live: BTreeMap<u64, Live>,
}

impl FsLoad {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: seed ^ 0x6673_6C6F_6164,
            seq: 0,
            next_file: 0,
            live: BTreeMap::new(),
        }
    }

    fn rand(&mut self, below: u64) -> u64 {
        blk::splitmix64(&mut self.rng) % below
    }

    fn path(&mut self, file: u64, renames: u64) -> String {
        let dir = DIRS[self.rand(DIRS.len() as u64) as usize];
        let name = match renames {
            0 => format!("f{file}"),
            r => format!("f{file}.{r}"),
        };
        match dir {
            "" => name,
            dir => format!("{dir}/{name}"),
        }
    }
}

impl Iterator for FsLoad {
    type Item = (u64, FsOp);

    fn next(&mut self) -> Option<(u64, FsOp)> {
        self.seq += 1;
        let roll = self.rand(100);
        let pick = self.rand(self.live.len().max(1) as u64) as usize;
        let chosen = self.live.iter().nth(pick).map(|(&f, l)| (f, l.clone()));
        let op = match chosen {
            Some((file, l))
                if self.live.len() >= MIN_LIVE && (roll >= 25 || self.live.len() >= MAX_LIVE) =>
            {
                // Small appends leave partial blocks; a full file is deleted instead.
                let add = if self.rand(3) == 0 {
                    1 + self.rand(200)
                } else {
                    1 + self.rand(16384)
                };
                if roll < 70 && l.len + add <= MAX_LEN {
                    FsOp::Append {
                        file,
                        path: l.path,
                        from: l.len,
                        to: l.len + add,
                    }
                } else if roll < 85 {
                    FsOp::Rename {
                        file,
                        from: l.path,
                        to: self.path(file, l.renames + 1),
                    }
                } else {
                    FsOp::Delete { file, path: l.path }
                }
            }
            _ => {
                let file = self.next_file;
                self.next_file += 1;
                FsOp::Create {
                    file,
                    path: self.path(file, 0),
                    len: self.rand(CREATE_LEN),
                }
            }
        };
        apply(&mut self.live, &op);
        Some((self.seq, op))
    }
}

/// The model's effect of an op.
fn apply(live: &mut BTreeMap<u64, Live>, op: &FsOp) {
    match op {
        FsOp::Create { file, path, len } => {
            live.insert(
                *file,
                Live {
                    path: path.clone(),
                    len: *len,
                    renames: 0,
                },
            );
        }
        FsOp::Append { file, to, .. } => {
            if let Some(l) = live.get_mut(file) {
                l.len = *to;
            }
        }
        FsOp::Rename { file, to, .. } => {
            if let Some(l) = live.get_mut(file) {
                l.path = to.clone();
                l.renames += 1;
            }
        }
        FsOp::Delete { file, .. } => {
            live.remove(file);
        }
    }
}

/// What is durable after ops 1..=`s` of `seed`: path -> (file, length).
pub fn durable_at(seed: u64, s: u64) -> BTreeMap<String, (u64, u64)> {
    let mut live = BTreeMap::new();
    for (_, op) in FsLoad::new(seed).take(s as usize) {
        apply(&mut live, &op);
    }
    live.into_iter()
        .map(|(f, l)| (l.path, (f, l.len)))
        .collect()
}

/// Bytes from..to of file `file`'s content stream (every version of the file is a prefix).
pub fn content(seed: u64, file: u64, from: u64, to: u64) -> Vec<u8> {
    let mut buf = vec![0u8; (to - from) as usize];
    let mut key = seed ^ file.wrapping_mul(0xA24B_AED4_963E_E407);
    blk::fill_pattern(&mut buf, from, blk::splitmix64(&mut key));
    buf
}

fn fsync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync directory {}: {e}", dir.display()))
}

/// Makes the root and its directories, durably (the root's parent is fsynced too).
pub fn prepare(root: &Path) -> Result<(), String> {
    for dir in DIRS {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    }
    for dir in DIRS.iter().rev() {
        fsync_dir(&root.join(dir))?;
    }
    fsync_dir(root.parent().unwrap_or(root))
}

/// Performs op `op` of `seed` under `root` and makes it durable (see the module's
/// description): when this returns, the op's seq is durable.
pub fn perform(root: &Path, seed: u64, op: &FsOp) -> Result<(), String> {
    let parent = |p: &str| root.join(p).parent().unwrap_or(root).to_path_buf();
    let failed = |what: &str, e: std::io::Error| format!("{op:?}: {what}: {e}");
    match op {
        FsOp::Create { file, path, len } => {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(root.join(path))
                .map_err(|e| failed("create", e))?;
            f.write_all(&content(seed, *file, 0, *len))
                .and_then(|_| f.sync_all())
                .map_err(|e| failed("write and fsync", e))?;
            fsync_dir(&parent(path))
        }
        FsOp::Append {
            file,
            path,
            from,
            to,
        } => {
            let mut f = OpenOptions::new()
                .append(true)
                .open(root.join(path))
                .map_err(|e| failed("open", e))?;
            let at = f.metadata().map_err(|e| failed("stat", e))?.len();
            if at != *from {
                return Err(format!("{op:?}: the file holds {at} bytes"));
            }
            f.write_all(&content(seed, *file, *from, *to))
                .and_then(|_| f.sync_all())
                .map_err(|e| failed("append and fsync", e))
        }
        FsOp::Rename { from, to, .. } => {
            fs::rename(root.join(from), root.join(to)).map_err(|e| failed("rename", e))?;
            fsync_dir(&parent(to))?;
            if parent(from) != parent(to) {
                fsync_dir(&parent(from))?;
            }
            Ok(())
        }
        FsOp::Delete { path, .. } => {
            fs::remove_file(root.join(path)).map_err(|e| failed("unlink", e))?;
            fsync_dir(&parent(path))
        }
    }
}

/// One file's history over ops 1..=N.
#[derive(Default)]
struct FileHistory {
    /// Its names, from the op that gave each.
    paths: Vec<(u64, String)>,
    /// Its lengths, from the op that set each.
    lens: Vec<(u64, u64)>,
    deleted: Option<u64>,
    /// Under which names it is found.
    found: Vec<String>,
}

impl FileHistory {
    fn created(&self) -> u64 {
        self.paths[0].0
    }

    /// The last entry of `v` set by op `s` or before.
    fn at<T: Clone>(v: &[(u64, T)], s: u64) -> Option<(u64, T)> {
        v.iter().rev().find(|(k, _)| *k <= s).cloned()
    }
}

/// The files of the tree under `root` (relative paths), and anything else in it that is not
/// one of [`DIRS`].
fn walk(root: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let (mut files, mut strange) = (Vec::new(), Vec::new());
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let path = root.join(&dir);
        let list = fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in list {
            let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            if kind.is_dir() && DIRS.contains(&rel.as_str()) {
                dirs.push(rel);
            } else if kind.is_file() {
                files.push(rel);
            } else if !(dir.is_empty() && name == "lost+found") {
                strange.push(rel);
            }
        }
    }
    Ok((files, strange))
}

/// Checks the tree under `root` after a power cut: `s` is an op known durable (its
/// [`perform`] returned), `n` at least the number of ops the writer may have started. See
/// the module's description for what is required. Returns a summary, or the errors found.
pub fn check(root: &Path, seed: u64, s: u64, n: u64) -> Result<String, String> {
    assert!(
        s <= n,
        "the durable op {s} is beyond the {n} ops considered"
    );
    let mut files: BTreeMap<u64, FileHistory> = BTreeMap::new();
    let mut owner: BTreeMap<String, u64> = BTreeMap::new();
    for (k, op) in FsLoad::new(seed).take(n as usize) {
        let h = files.entry(op.file()).or_default();
        match op {
            FsOp::Create { file, path, len } => {
                h.paths.push((k, path.clone()));
                h.lens.push((k, len));
                owner.insert(path, file);
            }
            FsOp::Append { to, .. } => h.lens.push((k, to)),
            FsOp::Rename { file, to, .. } => {
                h.paths.push((k, to.clone()));
                owner.insert(to, file);
            }
            FsOp::Delete { .. } => h.deleted = Some(k),
        }
    }
    let mut errors = Vec::new();
    let (found, strange) = walk(root)?;
    for path in strange {
        errors.push(format!("{path}: not a file of the workload's tree"));
    }
    let mut later = 0;
    for path in &found {
        let Some(&file) = owner.get(path) else {
            errors.push(format!("{path}: no op of 1..={n} made this file"));
            continue;
        };
        let h = files.get_mut(&file).expect("a file of the history");
        h.found.push(path.clone());
        let data = match fs::read(root.join(path)) {
            Ok(data) => data,
            Err(e) => {
                errors.push(format!("{path}: {e}"));
                continue;
            }
        };
        let len = data.len() as u64;
        let longest = h.lens.iter().map(|&(_, l)| l).max().unwrap_or(0);
        if len > longest {
            errors.push(format!(
                "{path}: {len} bytes, file {file} never had more than {longest}"
            ));
        } else if data != content(seed, file, 0, len) {
            let at = data
                .iter()
                .zip(content(seed, file, 0, len))
                .position(|(a, b)| *a != b)
                .unwrap_or(0);
            errors.push(format!(
                "{path}: {len} bytes, not file {file}'s content from byte {at}"
            ));
        }
        if h.created() > s {
            later += 1;
            continue;
        }
        if let Some(d) = h.deleted.filter(|&d| d <= s) {
            errors.push(format!("{path}: deleted by op {d}, durable, yet here"));
            continue;
        }
        let (named, name) = FileHistory::at(&h.paths, s).expect("created by op s");
        let (sized, durable_len) = FileHistory::at(&h.lens, s).expect("created by op s");
        let renamed_later = h.paths.iter().any(|(k, p)| *k > s && p == path);
        if *path != name && !renamed_later {
            errors.push(format!(
                "{path}: op {named} renamed file {file} to {name}, durable, yet the old name is here"
            ));
        }
        if len < durable_len {
            errors.push(format!(
                "{path}: {len} bytes, op {sized} made {durable_len} durable"
            ));
        }
        if renamed_later || len > durable_len {
            later += 1;
        }
    }
    let mut live = 0;
    for (file, h) in &files {
        if h.found.len() > 1 {
            errors.push(format!(
                "file {file} is there under {} names: {:?}",
                h.found.len(),
                h.found
            ));
        }
        if h.created() > s || h.deleted.is_some_and(|d| d <= s) {
            continue;
        }
        live += 1;
        let deleted_later = h.deleted.is_some();
        if h.found.is_empty() && !deleted_later {
            let (named, name) = FileHistory::at(&h.paths, s).expect("created by op s");
            let (sized, len) = FileHistory::at(&h.lens, s).expect("created by op s");
            errors.push(format!(
                "file {file} is missing: durable as {name} (op {named}) with {len} bytes (op {sized})"
            ));
        }
    }
    if errors.is_empty() {
        return Ok(format!(
            "{} files found for the {live} live after op {s}: {later} with changes of ops {}..={n}",
            found.len(),
            s + 1
        ));
    }
    let total = errors.len();
    errors.truncate(ERRORS);
    if total > ERRORS {
        errors.push(format!("... {} more", total - ERRORS));
    }
    Err(format!(
        "the tree is not what ops 1..={s} (of {n}) leave durable:\n  {}",
        errors.join("\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("rxdsk-fsload-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let root = dir.join("root");
            prepare(&root).unwrap();
            Self(dir)
        }

        fn root(&self) -> PathBuf {
            self.0.join("root")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const SEED: u64 = 0xF5;

    fn ops(n: u64) -> Vec<(u64, FsOp)> {
        FsLoad::new(SEED).take(n as usize).collect()
    }

    /// A scratch tree after ops 1..=s.
    fn after(name: &str, s: u64) -> Scratch {
        let dir = Scratch::new(name);
        for (_, op) in ops(s) {
            perform(&dir.root(), SEED, &op).unwrap();
        }
        dir
    }

    fn fails(root: &Path, s: u64, n: u64, with: &str) {
        match check(root, SEED, s, n) {
            Ok(summary) => panic!("passed: {summary}"),
            Err(e) => assert!(e.contains(with), "{e}\n(wanted {with:?})"),
        }
    }

    #[test]
    fn the_workload_mixes_its_ops_and_is_deterministic() {
        let all = ops(2000);
        assert_eq!(all, ops(2000));
        let count = |f: fn(&FsOp) -> bool| all.iter().filter(|(_, op)| f(op)).count();
        let creates = count(|op| matches!(op, FsOp::Create { .. }));
        let appends = count(|op| matches!(op, FsOp::Append { .. }));
        let renames = count(|op| matches!(op, FsOp::Rename { .. }));
        let deletes = count(|op| matches!(op, FsOp::Delete { .. }));
        assert!(
            creates > 100 && appends > 500 && renames > 150 && deletes > 100,
            "{creates} {appends} {renames} {deletes}"
        );
        let across = count(|op| match op {
            FsOp::Rename { from, to, .. } => Path::new(from).parent() != Path::new(to).parent(),
            _ => false,
        });
        assert!(across > 50, "{across} renames across directories");
        let live = durable_at(SEED, 2000);
        assert!(
            (MIN_LIVE..=MAX_LIVE).contains(&live.len()),
            "{}",
            live.len()
        );
        assert!(live.values().all(|&(_, len)| len <= MAX_LEN));
        // Content: any piece is the matching slice of the whole.
        let whole = content(SEED, 3, 0, 10_000);
        assert_eq!(content(SEED, 3, 1234, 5677), whole[1234..5677]);
        assert_ne!(content(SEED, 4, 0, 100), whole[..100]);
    }

    #[test]
    fn a_complete_run_passes() {
        let (s, n) = (400, 600);
        let dir = after("complete", s);
        let summary = check(&dir.root(), SEED, s, s).unwrap();
        assert!(summary.contains(" 0 with changes"), "{summary}");
        // Ops the writer may have started after S change nothing here.
        check(&dir.root(), SEED, s, n).unwrap();
        // The tree is the model's.
        let model = durable_at(SEED, s);
        let (found, strange) = walk(&dir.root()).unwrap();
        assert!(strange.is_empty());
        let mut found = found;
        found.sort();
        assert_eq!(found, model.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn later_ops_in_part_pass() {
        let (s, n) = (300, 360);
        let dir = after("later", s);
        let root = dir.root();
        // Some later ops durable, one append in part, the rest not at all.
        for (k, op) in ops(n).into_iter().skip(s as usize).take(40) {
            match (&op, k % 3) {
                (
                    FsOp::Append {
                        file,
                        path,
                        from,
                        to,
                    },
                    0,
                ) => {
                    let mut f = OpenOptions::new()
                        .append(true)
                        .open(root.join(path))
                        .unwrap();
                    f.write_all(&content(SEED, *file, *from, (from + to) / 2))
                        .unwrap();
                    // The rest of the ops depend on this one's length: stop here.
                    break;
                }
                _ => perform(&root, SEED, &op).unwrap(),
            }
        }
        let summary = check(&root, SEED, s, n).unwrap();
        assert!(!summary.contains(" 0 with changes"), "{summary}");
    }

    /// The first op after `s` (up to `n`) that `f` accepts.
    fn find(s: u64, n: u64, f: impl Fn(&FsOp) -> bool) -> FsOp {
        ops(n)
            .into_iter()
            .skip(s as usize)
            .map(|(_, op)| op)
            .find(|op| f(op))
            .expect("such an op")
    }

    /// The last op up to `s` that `f` accepts, with its seq.
    fn find_before(s: u64, f: impl Fn(&FsOp) -> bool) -> (u64, FsOp) {
        ops(s)
            .into_iter()
            .rev()
            .find(|(_, op)| f(op))
            .expect("such an op")
    }

    #[test]
    fn lost_and_damaged_files_fail() {
        let (s, n) = (300, 320);
        let dir = after("damage", s);
        let root = dir.root();
        let model = durable_at(SEED, s);
        // A live file that no later op deletes.
        let deleted_later = |file: u64| {
            ops(n)[s as usize..]
                .iter()
                .any(|(_, op)| matches!(op, FsOp::Delete { file: f, .. } if *f == file))
        };
        let (path, &(file, len)) = model
            .iter()
            .find(|(_, &(f, len))| !deleted_later(f) && len > 10)
            .unwrap();
        let keep = fs::read(root.join(path)).unwrap();
        // Missing.
        fs::remove_file(root.join(path)).unwrap();
        fails(
            &root,
            s,
            n,
            &format!("file {file} is missing: durable as {path}"),
        );
        // Shorter than made durable.
        fs::write(root.join(path), &keep[..keep.len() - 1]).unwrap();
        fails(&root, s, n, &format!("{path}: {} bytes, op", len - 1));
        // A byte changed.
        let mut bad = keep.clone();
        bad[7] ^= 1;
        fs::write(root.join(path), &bad).unwrap();
        fails(
            &root,
            s,
            n,
            &format!("not file {file}'s content from byte 7"),
        );
        // Longer than ever written.
        let mut long = keep.clone();
        long.extend(content(SEED, file, len, MAX_LEN + 1));
        fs::write(root.join(path), &long).unwrap();
        fails(&root, s, n, "never had more than");
        fs::write(root.join(path), &keep).unwrap();
        check(&root, SEED, s, n).unwrap();
        // Something else in the tree.
        fs::write(root.join("a/stray"), b"x").unwrap();
        fails(&root, s, n, "a/stray: no op of 1..=320 made this file");
        fs::remove_file(root.join("a/stray")).unwrap();
        fs::create_dir(root.join("b/x")).unwrap();
        fails(&root, s, n, "b/x: not a file of the workload's tree");
        fs::remove_dir(root.join("b/x")).unwrap();
        check(&root, SEED, s, n).unwrap();
    }

    #[test]
    fn undone_names_fail() {
        let (s, n) = (300, 300);
        let dir = after("names", s);
        let root = dir.root();
        // A durable delete undone.
        let (k, op) = find_before(s, |op| matches!(op, FsOp::Delete { .. }));
        let FsOp::Delete { file, path } = op else {
            unreachable!()
        };
        let (_, len) = durable_at(SEED, k - 1)[&path];
        fs::write(root.join(&path), content(SEED, file, 0, len)).unwrap();
        fails(
            &root,
            s,
            n,
            &format!("{path}: deleted by op {k}, durable, yet here"),
        );
        fs::remove_file(root.join(&path)).unwrap();
        // A durable rename undone: the file back under its old name.
        let live = durable_at(SEED, s);
        let (k, op) = find_before(s, |op| match op {
            FsOp::Rename { to, .. } => live.contains_key(to),
            _ => false,
        });
        let FsOp::Rename { file, from, to } = op else {
            unreachable!()
        };
        fs::rename(root.join(&to), root.join(&from)).unwrap();
        fails(
            &root,
            s,
            n,
            &format!(
                "{from}: op {k} renamed file {file} to {to}, durable, yet the old name is here"
            ),
        );
        // Under both names.
        fs::copy(root.join(&from), root.join(&to)).unwrap();
        fails(&root, s, n, &format!("file {file} is there under 2 names"));
        fs::remove_file(root.join(&from)).unwrap();
        check(&root, SEED, s, n).unwrap();
    }

    #[test]
    fn a_later_rename_may_or_may_not_be_there() {
        let s = 300;
        let dir = after("rename", s);
        let root = dir.root();
        let live = durable_at(SEED, s);
        let op = find(s, s + 200, |op| match op {
            FsOp::Rename { from, .. } => live.contains_key(from),
            _ => false,
        });
        let FsOp::Rename { from, to, .. } = &op else {
            unreachable!()
        };
        let n = ops(s + 200)
            .iter()
            .find(|(_, o)| *o == op)
            .map(|(k, _)| *k)
            .unwrap();
        check(&root, SEED, s, n).unwrap();
        fs::rename(root.join(from), root.join(to)).unwrap();
        check(&root, SEED, s, n).unwrap();
        // Not with the rename's op out of the ops considered.
        fails(&root, s, n - 1, &format!("{to}: no op of"));
    }
}
