//! A reader and replayer of dm-log-writes logs, and the crash states a log implies.
//!
//! The format, as drivers/md/dm-log-writes.c writes it (all little-endian):
//! - The log's sector size `ss` is the logical block size of the *logged* device. Byte 0 of
//!   the log device holds the super block {magic 0x6a736677736872 (u64), version 1 (u64),
//!   nr_entries (u64), sectorsize (u32)}, zero-padded to `ss` bytes.
//! - Entries follow from byte `ss`, back to back. An entry is one `ss`-byte block
//!   {sector (u64), nr_sectors (u64), flags (u64), data_len (u64)}, zero-padded; a MARK entry
//!   carries its text (data_len bytes, at most ss - 33, no NUL) right after those 32 bytes.
//!   `sector` and `nr_sectors` count `ss`-byte blocks of the logged device, not 512-byte
//!   sectors. A write's data, nr_sectors * ss bytes, follows its entry block; a DISCARD entry
//!   has none (nr_sectors is the discarded length); a FLUSH without data and a MARK have
//!   nr_sectors 0.
//! - Flags: FLUSH 1 (REQ_PREFLUSH), FUA 2, DISCARD 4, MARK 8, METADATA 16 (REQ_META).
//! - nr_entries in the super block is rewritten only after a FUA or MARK entry is logged and
//!   at teardown (`dmsetup remove` logs the mark "dm-log-writes-end" after every write not yet
//!   logged): a log read after a clean teardown is complete, one read while the target lives
//!   (or after the logging machine died) may count fewer entries than it holds
//!   ([`Log::parse_past_super`]).
//!
//! Ordering: a completed write or discard without FUA is held back; when a FLUSH request is
//! issued it takes the writes completed by then, and when it completes they are logged, in
//! completion order, then the FLUSH entry. A FUA write is logged when it completes, a mark
//! when the message comes. So whenever an entry is logged, everything logged before it is
//! on stable storage: the state "entries 0..n" (a *prefix state*) is one a crash can leave,
//! for n just past any entry. At a crash after a FLUSH, FUA or MARK entry, the writes logged
//! after it and before the next FLUSH entry (the next flush's batch, FUA writes completed
//! meanwhile) may each be on the disk or not: a volatile cache writes back in any order, and
//! in-flight writes land or not. [`Log::crash_states`] gives the prefix states at those
//! points and, for each, bounded seeded subsets of those unflushed writes.
//!
//! Not modelled (as in fstests' replay-log): a multi-block write torn within itself (each
//! write is applied whole); the order of a subset's writes against each other (applied in log
//! order); writes that completed while a flush was in flight (logged in the batch after it, so
//! they appear in the next point's subsets only, not with part of that flush's batch); the
//! data of a FLUSH entry itself (a PREFLUSH write: it counts with its prefix, though without
//! FUA it could still be lost, and it is in no subset, since it reaches the disk only after
//! its preflush made the whole batch durable).
//!
//! Replay writes the logged data to a target (a file or a scratch device that held the
//! logged device's content from when logging started, e.g. zeros); discards are written as
//! zeros (rxdsk reads discarded blocks as zeros) or skipped ([`Discard`]).

use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};

pub const MAGIC: u64 = 0x6a_7366_7773_6872;
pub const VERSION: u64 = 1;
pub const FLUSH: u64 = 1 << 0;
pub const FUA: u64 = 1 << 1;
pub const DISCARD: u64 = 1 << 2;
pub const MARK: u64 = 1 << 3;
pub const METADATA: u64 = 1 << 4;
/// The fields of an entry block (or of the super block: 28 bytes, padded the same).
const ENTRY_FIELDS: usize = 32;
/// The end-of-log mark the target logs at teardown.
pub const END_MARK: &str = "dm-log-writes-end";
/// Replay moves data in pieces of this size.
const CHUNK: usize = 1 << 20;
/// Up to this many unflushed writes, random subsets are drawn as distinct bit masks.
const MASK_BITS: usize = 20;

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The first block written or discarded, in units of the log's sector size.
    pub sector: u64,
    /// How many blocks.
    pub nr_sectors: u64,
    pub flags: u64,
    /// A MARK entry's text.
    pub mark: Option<String>,
    /// Where the write's data (nr_sectors * sectorsize bytes) starts in the log.
    pub data_offset: u64,
}

impl Entry {
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag != 0
    }

    /// Whether replaying the entry changes the device (a write with data, or a discard).
    pub fn changes_data(&self) -> bool {
        self.nr_sectors > 0
    }

    /// Whether a crash right after it is a point of [`Log::points`].
    fn is_point(&self) -> bool {
        self.flags & (FLUSH | FUA | MARK) != 0
    }
}

/// A parsed log: the entries, not their data (read from the log when replayed).
#[derive(Clone, Debug)]
pub struct Log {
    pub sectorsize: u32,
    /// nr_entries of the super block.
    pub super_entries: u64,
    pub entries: Vec<Entry>,
}

/// What replay does with a DISCARD entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discard {
    /// Write zeros over the range (what rxdsk reads back from a discarded range).
    Zero,
    /// Leave the target's data.
    Skip,
}

fn io(what: &str, e: std::io::Error) -> String {
    format!("log: {what}: {e}")
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(w)
}

fn read_exact_at<R: Read + Seek>(r: &mut R, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(buf)
}

impl Log {
    /// Parses the super block and the nr_entries entries it counts.
    pub fn parse<R: Read + Seek>(r: &mut R) -> Result<Self, String> {
        Self::parse_with(r, false)
    }

    /// Parses the super block and every entry found, past nr_entries too, up to the first
    /// block that is no entry (all zero, or a non-MARK entry with text) or the end of the
    /// log. For a log whose super block lags (read with the target still loaded, or after
    /// the logging machine crashed); the log device must have been zeroed before logging
    /// started, or stale entries of an earlier run could follow the real ones.
    pub fn parse_past_super<R: Read + Seek>(r: &mut R) -> Result<Self, String> {
        Self::parse_with(r, true)
    }

    fn parse_with<R: Read + Seek>(r: &mut R, past_super: bool) -> Result<Self, String> {
        let mut sup = [0u8; 28];
        read_exact_at(r, 0, &mut sup).map_err(|e| io("super block", e))?;
        let magic = u64_at(&sup, 0);
        if magic != MAGIC {
            return Err(format!(
                "log: magic {magic:#x}, not dm-log-writes' {MAGIC:#x}"
            ));
        }
        let version = u64_at(&sup, 8);
        if version != VERSION {
            return Err(format!("log: version {version}, only {VERSION} is known"));
        }
        let super_entries = u64_at(&sup, 16);
        let sectorsize = u32::from_le_bytes([sup[24], sup[25], sup[26], sup[27]]);
        if !sectorsize.is_power_of_two() || !(512..=65536).contains(&sectorsize) {
            return Err(format!("log: sector size {sectorsize}"));
        }
        let ss = u64::from(sectorsize);
        let len = r.seek(SeekFrom::End(0)).map_err(|e| io("size", e))?;
        let mut block = vec![0u8; sectorsize as usize];
        let mut entries = Vec::new();
        let mut pos = ss;
        loop {
            let i = entries.len() as u64;
            let counted = i < super_entries;
            if !counted && !past_super {
                break;
            }
            let bad = |why: String| -> Result<Option<Entry>, String> {
                if counted {
                    Err(format!("log: entry {i} at byte {pos}: {why}"))
                } else {
                    Ok(None)
                }
            };
            let entry = if pos + ss > len {
                bad(format!("past the end of the log ({len} bytes)"))?
            } else {
                read_exact_at(r, pos, &mut block).map_err(|e| io(&format!("entry {i}"), e))?;
                match parse_entry(&block, pos + ss, len) {
                    Ok(entry) => Some(entry),
                    Err(why) => bad(why)?,
                }
            };
            let Some(entry) = entry else { break };
            pos = entry.data_offset
                + if entry.has(DISCARD) {
                    0
                } else {
                    entry.nr_sectors * ss
                };
            entries.push(entry);
        }
        Ok(Self {
            sectorsize,
            super_entries,
            entries,
        })
    }

    /// The index of the first MARK entry named `name`.
    pub fn find_mark(&self, name: &str) -> Option<usize> {
        self.marks().find(|&(_, m)| m == name).map(|(i, _)| i)
    }

    /// Every MARK entry: (index, text).
    pub fn marks(&self) -> impl Iterator<Item = (usize, &str)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.mark.as_deref()?)))
    }

    /// The crash points, as prefix lengths n (entries 0..n): 0 (before anything logged) and
    /// one past every FLUSH, FUA and MARK entry. The prefix state at each is one a crash
    /// there leaves with the disk cache all written back, or empty.
    pub fn points(&self) -> Vec<usize> {
        std::iter::once(0)
            .chain(
                self.entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.is_point())
                    .map(|(i, _)| i + 1),
            )
            .collect()
    }

    /// The entries that may or may not be on the disk after a crash at prefix `n`: the
    /// writes and discards logged from entry n up to the next point (a FLUSH, FUA or MARK
    /// entry, excluded) or the end of the log.
    ///
    /// Not past a FUA entry: a FUA write is on the disk once it completed (it is logged then),
    /// and the writes logged after it may have been issued only after that (a journal's
    /// copies in place after its commit), so a state holding one of them must hold the FUA
    /// write too. The writes logged after a FUA entry are that point's unflushed writes.
    pub fn unflushed_after(&self, n: usize) -> Vec<usize> {
        self.entries[n.min(self.entries.len())..]
            .iter()
            .take_while(|e| !e.is_point())
            .enumerate()
            .filter(|(_, e)| e.changes_data())
            .map(|(j, _)| n + j)
            .collect()
    }

    /// Replays entries 0..=`through` from `log` (the log device or a copy) onto `target`.
    pub fn replay<R: Read + Seek, T: Write + Seek>(
        &self,
        log: R,
        target: T,
        through: usize,
        discard: Discard,
    ) -> Result<(), String> {
        Replayer::new(self, log, target, discard).advance(through + 1)
    }

    /// The crash states of `plan`, sorted by prefix (as [`Replayer::visit`] wants them): the
    /// prefix state at every point of [`Log::points`] (none of the unflushed writes after it),
    /// then, as the budget allows, for each point all of its unflushed writes and seeded
    /// random subsets of them (distinct; all of them when there are few enough). At most
    /// `plan.max_states` states: beyond that, points are thinned evenly (marks kept first)
    /// and the subsets spread round-robin over the points.
    pub fn crash_states(&self, plan: &CrashPlan) -> Vec<CrashState> {
        let points = self.points();
        let kept = thin(&points, plan.max_states, |&n| {
            n > 0 && self.entries[n - 1].has(MARK)
        });
        let unflushed: Vec<Vec<usize>> = kept.iter().map(|&n| self.unflushed_after(n)).collect();
        // Per point, how many more states it may get: all, then random subsets.
        let caps: Vec<usize> = unflushed
            .iter()
            .map(|u| match u.len() {
                0 => 0,
                v if v < MASK_BITS => (1 + plan.subsets_per_point).min((1 << v) - 1),
                _ => 1 + plan.subsets_per_point,
            })
            .collect();
        let mut budget = plan.max_states.saturating_sub(kept.len());
        let mut more = vec![0usize; kept.len()];
        let mut round = 0;
        while budget > 0 && caps.iter().any(|&c| c > round) {
            for (m, _) in more.iter_mut().zip(&caps).filter(|(_, &c)| c > round) {
                if budget == 0 {
                    break;
                }
                *m += 1;
                budget -= 1;
            }
            round += 1;
        }
        let mut states = Vec::new();
        for ((&n, u), &m) in kept.iter().zip(&unflushed).zip(&more) {
            let state = |extra: Vec<usize>| CrashState {
                prefix: n,
                extra,
                unflushed: u.len(),
            };
            states.push(state(Vec::new()));
            if m > 0 {
                states.push(state(u.clone()));
            }
            let mut rng = plan.seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for subset in random_subsets(u, m.saturating_sub(1), &mut rng) {
                states.push(state(subset));
            }
        }
        states
    }

    /// A state in words: the point (its entry and flags, a mark's name) and the extra writes.
    pub fn describe(&self, state: &CrashState) -> String {
        let mut s = match state.prefix {
            0 => "before the first entry".to_string(),
            n => {
                let e = &self.entries[n - 1];
                let mut s = format!("after entry {} ({})", n - 1, flag_names(e.flags));
                if let Some(m) = &e.mark {
                    s += &format!(" {m:?}");
                }
                s
            }
        };
        if state.unflushed > 0 {
            s += &format!(
                ", with {} of the {} unflushed writes after it",
                state.extra.len(),
                state.unflushed
            );
            if !state.extra.is_empty() && state.extra.len() < state.unflushed {
                let list: Vec<String> = state.extra.iter().take(8).map(|i| i.to_string()).collect();
                s += &format!(
                    " (entries {}{})",
                    list.join(", "),
                    if state.extra.len() > 8 { ", ..." } else { "" }
                );
            }
        }
        s
    }
}

/// Parses the entry block `block`, whose data would start at byte `data_offset` of a log of
/// `len` bytes.
fn parse_entry(block: &[u8], data_offset: u64, len: u64) -> Result<Entry, String> {
    let ss = block.len() as u64;
    let (sector, nr_sectors, flags, data_len) = (
        u64_at(block, 0),
        u64_at(block, 8),
        u64_at(block, 16),
        u64_at(block, 24),
    );
    if flags == 0 && nr_sectors == 0 {
        return Err("an empty entry".into());
    }
    let mark = if flags & MARK != 0 {
        if data_len > ss - ENTRY_FIELDS as u64 {
            return Err(format!("a mark of {data_len} bytes"));
        }
        let text = &block[ENTRY_FIELDS..ENTRY_FIELDS + data_len as usize];
        Some(String::from_utf8_lossy(text).into_owned())
    } else {
        if block[ENTRY_FIELDS..].iter().any(|&b| b != 0) {
            return Err("padding not zero".into());
        }
        None
    };
    let data = if flags & DISCARD != 0 {
        0
    } else {
        nr_sectors
            .checked_mul(ss)
            .ok_or_else(|| format!("{nr_sectors} sectors"))?
    };
    if data_offset.checked_add(data).is_none_or(|end| end > len) {
        return Err(format!(
            "{data} bytes of data past the end of the log ({len} bytes)"
        ));
    }
    Ok(Entry {
        sector,
        nr_sectors,
        flags,
        mark,
        data_offset,
    })
}

/// The names of the flags set, for messages.
pub fn flag_names(flags: u64) -> String {
    let names: Vec<String> = [
        (FLUSH, "FLUSH"),
        (FUA, "FUA"),
        (DISCARD, "DISCARD"),
        (MARK, "MARK"),
        (METADATA, "METADATA"),
    ]
    .iter()
    .filter(|(f, _)| flags & f != 0)
    .map(|(_, n)| n.to_string())
    .chain((flags >> 5 != 0).then(|| format!("{:#x}", flags & !0x1f)))
    .collect();
    if names.is_empty() {
        "write".into()
    } else {
        names.join("|")
    }
}

/// How many crash states to make.
#[derive(Clone, Copy, Debug)]
pub struct CrashPlan {
    /// The seed of the random subsets.
    pub seed: u64,
    /// Random subsets of a point's unflushed writes, besides none (the prefix state) and all.
    pub subsets_per_point: usize,
    /// At most this many states in all.
    pub max_states: usize,
}

/// A state a crash can leave: entries 0..prefix, then `extra` (later writes and discards
/// not yet flushed at that point, in log order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashState {
    pub prefix: usize,
    pub extra: Vec<usize>,
    /// How many unflushed writes followed the point (`extra` is a subset of them).
    pub unflushed: usize,
}

impl fmt::Display for CrashState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entries 0..{}", self.prefix)?;
        if self.unflushed > 0 {
            write!(f, " + {:?} of {} unflushed", self.extra, self.unflushed)?;
        }
        Ok(())
    }
}

/// At most `max` of `points`, evenly spread, those for which `first` holds taken first.
fn thin(points: &[usize], max: usize, first: impl Fn(&usize) -> bool) -> Vec<usize> {
    if points.len() <= max {
        return points.to_vec();
    }
    let (must, others): (Vec<usize>, Vec<usize>) = points.iter().partition(|p| first(p));
    let spread = |from: &[usize], n: usize| -> Vec<usize> {
        (0..n).map(|i| from[i * from.len() / n]).collect()
    };
    let mut kept = if must.len() >= max {
        spread(&must, max)
    } else {
        let mut k = must.clone();
        k.extend(spread(&others, max - must.len()));
        k
    };
    kept.sort_unstable();
    kept
}

/// `count` distinct random proper non-empty subsets of `from` (fewer if there are not as
/// many), each in order.
fn random_subsets(from: &[usize], count: usize, rng: &mut u64) -> Vec<Vec<usize>> {
    let v = from.len();
    if count == 0 || v < 2 {
        return Vec::new();
    }
    let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
        from.iter()
            .enumerate()
            .filter(|&(j, _)| keep(j))
            .map(|(_, &e)| e)
            .collect()
    };
    if v < MASK_BITS {
        // Bit masks 1..2^v - 1: every proper non-empty subset; all of them if they fit.
        let total = (1u64 << v) - 2;
        let masks: Vec<u64> = if count as u64 >= total {
            (1..=total).collect()
        } else {
            let mut seen = std::collections::BTreeSet::new();
            while seen.len() < count {
                seen.insert(1 + crate::blk::splitmix64(rng) % total);
            }
            seen.into_iter().collect()
        };
        return masks
            .into_iter()
            .map(|m| pick(&|j| m >> j & 1 == 1))
            .collect();
    }
    // Many writes: each subset keeps each write with a probability of 1/8 to 7/8 (drawn
    // again if it comes out empty, whole or seen before).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..count * 16 {
        if seen.len() == count {
            break;
        }
        let eighths = 1 + crate::blk::splitmix64(rng) % 7;
        let draws: Vec<bool> = (0..v)
            .map(|_| crate::blk::splitmix64(rng) % 8 < eighths)
            .collect();
        let subset = pick(&|j| draws[j]);
        if !subset.is_empty() && subset.len() < v {
            seen.insert(subset);
        }
    }
    seen.into_iter().collect()
}

/// Replays a log onto a target step by step: forward to a prefix, and into a crash state and
/// back out of it.
pub struct Replayer<'a, R, T> {
    log: &'a Log,
    src: R,
    target: T,
    discard: Discard,
    applied: usize,
    buf: Vec<u8>,
}

impl<'a, R: Read + Seek, T: Write + Seek> Replayer<'a, R, T> {
    /// `target` must hold what the logged device held when logging started.
    pub fn new(log: &'a Log, src: R, target: T, discard: Discard) -> Self {
        Self {
            log,
            src,
            target,
            discard,
            applied: 0,
            buf: vec![0u8; CHUNK],
        }
    }

    /// How many entries (0..applied) are on the target.
    pub fn applied(&self) -> usize {
        self.applied
    }

    /// Applies the entries not applied yet below `prefix`, so that entries 0..prefix are on
    /// the target. A smaller prefix than already applied is an error.
    pub fn advance(&mut self, prefix: usize) -> Result<(), String> {
        if prefix < self.applied || prefix > self.log.entries.len() {
            return Err(format!(
                "replay: cannot go to entries 0..{prefix} from 0..{} (of {})",
                self.applied,
                self.log.entries.len()
            ));
        }
        while self.applied < prefix {
            self.apply(self.applied)?;
            self.applied += 1;
        }
        self.target
            .flush()
            .map_err(|e| format!("replay: flush: {e}"))
    }

    /// The target's byte range an entry changes, if replay changes it.
    fn range(&self, i: usize) -> Option<(u64, u64)> {
        let e = &self.log.entries[i];
        let ss = u64::from(self.log.sectorsize);
        let skip = !e.changes_data() || (e.has(DISCARD) && self.discard == Discard::Skip);
        (!skip).then(|| (e.sector * ss, e.nr_sectors * ss))
    }

    fn apply(&mut self, i: usize) -> Result<(), String> {
        let Some((at, len)) = self.range(i) else {
            return Ok(());
        };
        let e = &self.log.entries[i];
        let discard = e.has(DISCARD);
        let src_at = e.data_offset;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            if discard {
                self.buf[..n].fill(0);
            } else {
                read_exact_at(&mut self.src, src_at + done, &mut self.buf[..n])
                    .map_err(|e| io(&format!("data of entry {i}"), e))?;
            }
            self.target
                .seek(SeekFrom::Start(at + done))
                .and_then(|_| self.target.write_all(&self.buf[..n]))
                .map_err(|e| format!("replay: entry {i}: write at byte {}: {e}", at + done))?;
            done += n as u64;
        }
        Ok(())
    }

    pub fn target(&mut self) -> &mut T {
        &mut self.target
    }

    pub fn into_parts(self) -> (R, T) {
        (self.src, self.target)
    }
}

impl<R: Read + Seek, T: Read + Write + Seek> Replayer<'_, R, T> {
    /// Brings the target to `state` (forward to its prefix, then its extra entries), calls
    /// `f` on it, and takes the extra entries back out (the bytes they overwrote are saved
    /// and written back), leaving the target at the state's prefix. States must come in
    /// order of prefix, as [`Log::crash_states`] gives them.
    ///
    /// `f` must leave the target's bytes as it found them: the saved bytes and the replay's
    /// own position assume it. A check that writes (a restore that updates its image's
    /// header, a file system mount) must work on a copy. A target that is a block device
    /// opened without O_DIRECT is written through the page cache: `f` should `sync_all` it
    /// before anything reads the device around the cache (the kernel's own bios, as a
    /// restore from a backing device does).
    pub fn visit<X>(
        &mut self,
        state: &CrashState,
        f: impl FnOnce(&mut T) -> X,
    ) -> Result<X, String> {
        self.advance(state.prefix)?;
        let mut saved: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut applied = Ok(());
        for &i in &state.extra {
            if i < state.prefix {
                applied = Err(format!("replay: extra entry {i} is inside the prefix"));
                break;
            }
            if let Some((at, len)) = self.range(i) {
                let mut old = vec![0u8; len as usize];
                if let Err(e) = read_exact_at(&mut self.target, at, &mut old) {
                    applied = Err(format!("replay: save {len} bytes at {at}: {e}"));
                    break;
                }
                saved.push((at, old));
            }
            applied = self.apply(i);
            if applied.is_err() {
                break;
            }
        }
        let out = match applied.and_then(|_| self.target.flush().map_err(|e| e.to_string())) {
            Ok(()) => Ok(f(&mut self.target)),
            Err(e) => Err(e),
        };
        for (at, old) in saved.iter().rev() {
            self.target
                .seek(SeekFrom::Start(*at))
                .and_then(|_| self.target.write_all(old))
                .map_err(|e| format!("replay: restore {} bytes at {at}: {e}", old.len()))?;
        }
        self.target
            .flush()
            .map_err(|e| format!("replay: flush: {e}"))?;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// What a logged request did, for the model the tests check replays against.
    #[derive(Clone, Debug)]
    enum Req {
        Write(u64, Vec<u8>),
        Discard(u64, u64),
        None,
    }

    /// Writes a log exactly as dm-log-writes does, from the requests' completions.
    struct LogWriter {
        ss: usize,
        log: Vec<u8>,
        /// Completed writes and discards without FUA, logged at the next flush.
        held: Vec<(u64, Req)>,
        /// Every entry logged, in order: (flags, request).
        logged: Vec<(u64, Req)>,
        /// nr_entries as the super block has it.
        super_entries: u64,
    }

    impl LogWriter {
        fn new(ss: usize) -> Self {
            let mut w = Self {
                ss,
                log: vec![0u8; ss],
                held: Vec::new(),
                logged: Vec::new(),
                super_entries: 0,
            };
            w.write_super();
            w
        }

        fn write_super(&mut self) {
            self.super_entries = self.logged.len() as u64;
            let s = &mut self.log[..28];
            s[..8].copy_from_slice(&MAGIC.to_le_bytes());
            s[8..16].copy_from_slice(&VERSION.to_le_bytes());
            s[16..24].copy_from_slice(&self.super_entries.to_le_bytes());
            s[24..28].copy_from_slice(&(self.ss as u32).to_le_bytes());
        }

        fn log_entry(&mut self, flags: u64, req: Req, mark: &str) {
            let ss = self.ss as u64;
            let (sector, nr, data): (u64, u64, &[u8]) = match &req {
                Req::Write(s, d) => (*s, d.len() as u64 / ss, d),
                Req::Discard(s, n) => (*s, *n, &[]),
                Req::None => (0, 0, &[]),
            };
            let mut block = vec![0u8; self.ss];
            for (i, v) in [sector, nr, flags, mark.len() as u64].iter().enumerate() {
                block[i * 8..(i + 1) * 8].copy_from_slice(&v.to_le_bytes());
            }
            block[32..32 + mark.len()].copy_from_slice(mark.as_bytes());
            self.log.extend_from_slice(&block);
            self.log.extend_from_slice(data);
            self.logged.push((flags, req));
            if flags & (FUA | MARK) != 0 {
                self.write_super();
            }
        }

        /// A write (no FUA) completed.
        fn write(&mut self, sector: u64, data: Vec<u8>) -> &mut Self {
            assert_eq!(data.len() % self.ss, 0);
            self.held.push((0, Req::Write(sector, data)));
            self
        }

        fn discard(&mut self, sector: u64, n: u64) -> &mut Self {
            self.held.push((DISCARD, Req::Discard(sector, n)));
            self
        }

        /// A FUA write completed.
        fn fua(&mut self, sector: u64, data: Vec<u8>) -> &mut Self {
            self.log_entry(FUA, Req::Write(sector, data), "");
            self
        }

        /// A flush was issued and completed (nothing completed in between); with data, a
        /// PREFLUSH|FUA write.
        fn flush_with(&mut self, flags: u64, req: Req) -> &mut Self {
            for (f, r) in std::mem::take(&mut self.held) {
                self.log_entry(f, r, "");
            }
            self.log_entry(flags, req, "");
            self
        }

        fn flush(&mut self) -> &mut Self {
            self.flush_with(FLUSH, Req::None)
        }

        fn mark(&mut self, name: &str) -> &mut Self {
            self.log_entry(MARK, Req::None, name);
            self
        }

        /// The target's teardown: held writes, then the end mark.
        fn finish(&mut self) -> Vec<u8> {
            for (f, r) in std::mem::take(&mut self.held) {
                self.log_entry(f, r, "");
            }
            self.mark(END_MARK);
            self.log.clone()
        }

        /// The model: a device of `len` bytes after entries 0..prefix, then `extra`.
        fn model(&self, len: usize, prefix: usize, extra: &[usize]) -> Vec<u8> {
            let mut dev = vec![0u8; len];
            for i in (0..prefix).chain(extra.iter().copied()) {
                match &self.logged[i].1 {
                    Req::Write(s, d) => {
                        let at = *s as usize * self.ss;
                        dev[at..at + d.len()].copy_from_slice(d);
                    }
                    Req::Discard(s, n) => {
                        dev[*s as usize * self.ss..(*s + *n) as usize * self.ss].fill(0)
                    }
                    Req::None => {}
                }
            }
            dev
        }
    }

    fn data(ss: usize, blocks: usize, fill: u8) -> Vec<u8> {
        (0..ss * blocks).map(|i| fill ^ (i % 251) as u8).collect()
    }

    /// A log with writes, overwrites, a discard, FUA writes, a PREFLUSH|FUA write and marks.
    fn sample(ss: usize) -> LogWriter {
        let mut w = LogWriter::new(ss);
        w.write(0, data(ss, 4, 1))
            .write(8, data(ss, 2, 2))
            .flush()
            .mark("one")
            .write(2, data(ss, 1, 3))
            .fua(20, data(ss, 1, 4))
            .discard(8, 2)
            .write(9, data(ss, 1, 5))
            .flush()
            .write(1, data(ss, 2, 6))
            .flush_with(FLUSH | FUA, Req::Write(30, data(ss, 1, 7)))
            .mark("two")
            .write(0, data(ss, 1, 8));
        w
    }

    const DEV: usize = 32;

    #[test]
    fn parse_what_the_kernel_writes() {
        for ss in [512usize, 4096] {
            let mut w = sample(ss);
            let bytes = w.finish();
            let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
            assert_eq!(log.sectorsize as usize, ss);
            assert_eq!(log.super_entries as usize, w.logged.len());
            assert_eq!(log.entries.len(), w.logged.len());
            for (e, (flags, req)) in log.entries.iter().zip(&w.logged) {
                assert_eq!(e.flags, *flags);
                match req {
                    Req::Write(s, d) => {
                        assert_eq!((e.sector, e.nr_sectors), (*s, (d.len() / ss) as u64));
                        let at = e.data_offset as usize;
                        assert_eq!(&bytes[at..at + d.len()], &d[..]);
                    }
                    Req::Discard(s, n) => assert_eq!((e.sector, e.nr_sectors), (*s, *n)),
                    Req::None => assert_eq!(e.nr_sectors, 0),
                }
            }
            assert_eq!(log.find_mark("one"), Some(3));
            assert_eq!(
                log.find_mark("two").map(|i| log.entries[i].has(MARK)),
                Some(true)
            );
            assert_eq!(log.find_mark("three"), None);
            let marks: Vec<&str> = log.marks().map(|(_, m)| m).collect();
            assert_eq!(marks, ["one", "two", END_MARK]);
            // The held write (sector 0) is logged at teardown, before the end mark.
            assert_eq!(log.entries[log.entries.len() - 2].sector, 0);
            // The kernel's 0x6a736677736872ULL, as it lies on the log device.
            assert_eq!(&bytes[..8], b"rhswfsj\0");
            assert_eq!(flag_names(FLUSH | FUA), "FLUSH|FUA");
            assert_eq!(flag_names(0), "write");
        }
    }

    #[test]
    fn replay_to_each_mark_and_the_end() {
        let mut w = sample(512);
        let bytes = w.finish();
        let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
        for i in 0..log.entries.len() {
            let mut dev = Cursor::new(vec![0u8; DEV * 512]);
            log.replay(Cursor::new(&bytes), &mut dev, i, Discard::Zero)
                .unwrap();
            assert_eq!(
                dev.into_inner(),
                w.model(DEV * 512, i + 1, &[]),
                "through {i}"
            );
        }
        // Skipping discards leaves the discarded blocks' data.
        let i = log.entries.iter().position(|e| e.has(DISCARD)).unwrap();
        let mut dev = Cursor::new(vec![0u8; DEV * 512]);
        log.replay(Cursor::new(&bytes), &mut dev, i, Discard::Skip)
            .unwrap();
        assert_eq!(dev.into_inner(), w.model(DEV * 512, i, &[]));
        // A replayer goes forward only.
        let mut r = Replayer::new(
            &log,
            Cursor::new(&bytes),
            Cursor::new(vec![0u8; DEV * 512]),
            Discard::Zero,
        );
        r.advance(5).unwrap();
        assert_eq!(r.applied(), 5);
        assert!(r.advance(4).is_err());
        assert!(r.advance(log.entries.len() + 1).is_err());
    }

    #[test]
    fn bad_logs_are_refused() {
        let good = sample(512).finish();
        let parse = |b: &[u8]| Log::parse(&mut Cursor::new(b)).map(|l| l.entries.len());
        assert!(parse(&good).is_ok());
        let mut b = good.clone();
        b[0] ^= 1;
        assert!(parse(&b).unwrap_err().contains("magic"));
        let mut b = good.clone();
        b[8] = 2;
        assert!(parse(&b).unwrap_err().contains("version 2"));
        let mut b = good.clone();
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse(&b).unwrap_err().contains("sector size 1000"));
        // Cut inside the last write's data (the end mark's entry goes with it).
        let b = &good[..good.len() - 512 - 100];
        assert!(
            parse(b).unwrap_err().contains("past the end"),
            "{:?}",
            parse(b)
        );
        // A zeroed entry that the super block counts.
        let mut b = good.clone();
        b[512..1024].fill(0);
        assert!(parse(&b)
            .unwrap_err()
            .contains("entry 0 at byte 512: an empty entry"));
        // Text in a write's entry.
        let mut b = good.clone();
        b[512 + 40] = 1;
        assert!(parse(&b).unwrap_err().contains("padding"));
        assert!(parse(&good[..20]).is_err());
    }

    #[test]
    fn a_lagging_super_block() {
        let mut w = sample(4096);
        // Logged so far; the super block was last written at mark "two".
        let bytes = w.log.clone();
        let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
        let two = log.find_mark("two").unwrap();
        assert_eq!(log.entries.len(), two + 1);
        // The next write is held (not logged); a FUA write is logged and counted...
        w.fua(3, data(4096, 1, 9));
        // ... and a flush's batch is logged but not counted.
        w.write(4, data(4096, 1, 10)).flush();
        let bytes = w.log.clone();
        let strict = Log::parse(&mut Cursor::new(&bytes)).unwrap();
        let all = Log::parse_past_super(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(strict.entries.len(), two + 2);
        assert_eq!(all.entries.len(), w.logged.len());
        assert_eq!(all.entries.len(), two + 5);
        // Past the last entry, zeros (a zeroed log device) end the scan.
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 3 * 4096, 0);
        let all = Log::parse_past_super(&mut Cursor::new(&padded)).unwrap();
        assert_eq!(all.entries.len(), w.logged.len());
    }

    fn plan(max_states: usize) -> CrashPlan {
        CrashPlan {
            seed: 42,
            subsets_per_point: 6,
            max_states,
        }
    }

    #[test]
    fn crash_states_follow_the_flushes() {
        let mut w = sample(512);
        let bytes = w.finish();
        let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
        let points = log.points();
        // Start, the 2 flushes, mark one, the FUA write, the PREFLUSH|FUA, mark two, end.
        assert_eq!(points.len(), 8, "{points:?}");
        let states = log.crash_states(&plan(1000));
        for &n in &points {
            // The prefix state is there, and "all" when there are unflushed writes.
            let u = log.unflushed_after(n);
            assert!(states.contains(&CrashState {
                prefix: n,
                extra: vec![],
                unflushed: u.len()
            }));
            if !u.is_empty() {
                assert!(states.contains(&CrashState {
                    prefix: n,
                    extra: u.clone(),
                    unflushed: u.len()
                }));
            }
            let mine: Vec<&CrashState> = states.iter().filter(|s| s.prefix == n).collect();
            // Few unflushed writes: every subset.
            if u.len() <= 2 {
                assert_eq!(mine.len(), 1 << u.len(), "{mine:?}");
            }
            for s in &mine {
                assert!(s.extra.iter().all(|i| u.contains(i)), "{s}");
                assert!(s.extra.windows(2).all(|p| p[0] < p[1]), "{s}");
            }
        }
        assert!(states.windows(2).all(|p| p[0].prefix <= p[1].prefix));
        // After mark "one" comes the FUA write that completed meanwhile: a point of its own,
        // so nothing is unflushed at the mark; after the FUA write, the next batch (the write
        // to 2, the discard, the write to 9), not the FLUSH.
        let one = log.find_mark("one").unwrap();
        assert!(log.unflushed_after(one + 1).is_empty());
        assert!(log.entries[one + 1].has(FUA));
        let u = log.unflushed_after(one + 2);
        assert_eq!(u, vec![one + 2, one + 3, one + 4]);
        assert!(log.entries[u[2] + 1].has(FLUSH));
        let described = log.describe(&states[1]);
        assert!(
            described.starts_with("before the first entry, with 2 of the 2"),
            "{described}"
        );
        let s = CrashState {
            prefix: one + 2,
            extra: vec![u[1]],
            unflushed: 3,
        };
        assert_eq!(
            log.describe(&s),
            format!(
                "after entry {} (FUA), with 1 of the 3 unflushed writes after it (entries {})",
                one + 1,
                u[1]
            )
        );
    }

    #[test]
    fn visiting_states_replays_and_undoes_them() {
        let mut w = sample(512);
        let bytes = w.finish();
        let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
        let states = log.crash_states(&plan(1000));
        let mut r = Replayer::new(
            &log,
            Cursor::new(&bytes),
            Cursor::new(vec![0u8; DEV * 512]),
            Discard::Zero,
        );
        for s in &states {
            let seen = r.visit(s, |t| t.get_ref().clone()).unwrap();
            assert_eq!(seen, w.model(DEV * 512, s.prefix, &s.extra), "{s}");
            // Back at the prefix.
            assert_eq!(
                r.target().get_ref(),
                &w.model(DEV * 512, s.prefix, &[]),
                "{s}"
            );
        }
        // Out of order.
        assert!(r.visit(&states[0], |_| ()).is_err());
    }

    #[test]
    fn the_budget_and_the_seed() {
        // 40 flush batches of 30 writes each: 30 unflushed writes after every flush point.
        let mut w = LogWriter::new(512);
        for batch in 0..40u64 {
            for j in 0..30u64 {
                w.write(j, data(512, 1, (batch + j) as u8));
            }
            w.flush();
            if batch % 10 == 9 {
                w.mark(&format!("m{batch}"));
            }
        }
        let bytes = w.finish();
        let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(log.points().len(), 1 + 40 + 4 + 1);
        for max in [1, 5, 30, 46, 47, 100, 400] {
            let states = log.crash_states(&plan(max));
            assert!(states.len() <= max, "{} > {max}", states.len());
            assert!(states.windows(2).all(|p| p[0].prefix <= p[1].prefix));
            let prefixes: std::collections::BTreeSet<usize> =
                states.iter().map(|s| s.prefix).collect();
            // Marks are kept first.
            for (i, _) in log.marks().take(max) {
                assert!(prefixes.contains(&(i + 1)), "max {max}: mark {i}");
            }
        }
        // 30 unflushed writes at the start and after each flush, but where a mark follows the
        // flush they are the mark's (a point of its own), and after the last mark there are
        // none: 1 + 36 + 3 points.
        let points = log.points();
        let with_writes = points
            .iter()
            .filter(|&&n| !log.unflushed_after(n).is_empty())
            .count();
        assert_eq!(with_writes, 40);
        // 46 prefix states, and at most 7 more (all, 6 random) at 40 points.
        let states = log.crash_states(&plan(1000));
        assert_eq!(states.len(), 46 + 40 * 7);
        let distinct: std::collections::BTreeSet<_> =
            states.iter().map(|s| (s.prefix, s.extra.clone())).collect();
        assert_eq!(distinct.len(), states.len());
        // Budget 100: every point's prefix state, then all-of-them at the 40 points, then 14
        // random subsets.
        let states = log.crash_states(&plan(100));
        assert_eq!(states.len(), 100);
        assert_eq!(states.iter().filter(|s| s.extra.len() == 30).count(), 40);
        assert_eq!(log.crash_states(&plan(1000)), log.crash_states(&plan(1000)));
        let other = CrashPlan {
            seed: 43,
            ..plan(1000)
        };
        assert_ne!(log.crash_states(&plan(1000)), log.crash_states(&other));
    }

    #[test]
    fn many_unflushed_writes_get_varied_subsets() {
        let from: Vec<usize> = (100..400).collect();
        let mut rng = 7;
        let subsets = random_subsets(&from, 50, &mut rng);
        assert_eq!(subsets.len(), 50);
        let sizes: Vec<usize> = subsets.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().any(|&n| n < 100) && sizes.iter().any(|&n| n > 200),
            "{sizes:?}"
        );
        assert!(subsets.iter().all(|s| s.iter().all(|i| from.contains(i))));
        // Few: distinct, and every one when asked for more than there are.
        let from = [3, 5, 9];
        assert_eq!(random_subsets(&from, 100, &mut rng).len(), 6);
        let two = random_subsets(&from, 2, &mut rng);
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        assert!(random_subsets(&[1], 5, &mut rng).is_empty());
    }

    /// A commit record must never be on the disk without the data it commits: the crash
    /// states catch a writer that does not flush between the two, and pass one that does.
    #[test]
    fn crash_states_catch_a_missing_flush() {
        let ss = 512;
        let commit = |seq: u8| vec![seq; ss];
        let committed_data_present = |dev: &[u8]| {
            let seq = dev[0];
            seq == 0 || dev[ss * (seq as usize)..ss * (seq as usize + 1)] == *vec![seq; ss]
        };
        let run = |flush_first: bool, fua_commit: bool| -> (usize, usize) {
            let mut w = LogWriter::new(ss);
            for seq in 1..=5u8 {
                w.write(seq as u64, vec![seq; ss]);
                if flush_first {
                    w.flush();
                }
                if fua_commit {
                    w.fua(0, commit(seq));
                } else {
                    w.write(0, commit(seq));
                }
            }
            w.flush();
            let bytes = w.finish();
            let log = Log::parse(&mut Cursor::new(&bytes)).unwrap();
            let mut r = Replayer::new(
                &log,
                Cursor::new(&bytes),
                Cursor::new(vec![0u8; 8 * ss]),
                Discard::Zero,
            );
            let (mut bad_prefix, mut bad_subset) = (0, 0);
            for s in log.crash_states(&plan(1000)) {
                if !r
                    .visit(&s, |t| committed_data_present(t.get_ref()))
                    .unwrap()
                {
                    if s.extra.is_empty() {
                        bad_prefix += 1;
                    } else {
                        bad_subset += 1;
                    }
                }
            }
            (bad_prefix, bad_subset)
        };
        // Data, flush, FUA commit: right.
        assert_eq!(run(true, true), (0, 0));
        // Data, FUA commit, no flush: the commit is logged (durable) before the data.
        assert!(run(false, true).0 > 0);
        // Data and commit both cached until a flush: only a subset shows it.
        let (p, s) = run(false, false);
        assert_eq!(p, 0);
        assert!(s > 0);
    }
}
