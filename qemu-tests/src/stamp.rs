//! The seeded writer of the crash-consistency tests and the checker of what a power cut left.
//!
//! A [`Workload`] is a deterministic sequence of operations from a seed over a device of
//! `blocks` 4 KiB blocks: op k (k = 1, 2, ...) either writes block b with the stamp of
//! (seed, k, b) or discards a few blocks; most ops go anywhere, some hit a small hot range so
//! that its blocks are overwritten many times. The writer is single-threaded ([`Writer`]): it
//! issues op k, waits for it to complete, then issues op k + 1. A point-in-time image, taken at
//! any instant, therefore holds the device's state after some prefix 1..=P of the ops (P = 0:
//! nothing done yet).
//!
//! After a power cut, [`observe`] classifies every block of the restored device and [`check`]
//! returns every P whose state equals what was observed, or a [`Diagnosis`]: how many blocks
//! disagree with the closest P, and which, with what they hold and what that P implies.
//!
//! A stamped block: bytes 0..32 a header of four little-endian u64 (magic `rxdstamp`, seed, k,
//! b), bytes 32..4088 a body derived from (seed, k, b), bytes 4088..4096 a checksum of bytes
//! 0..4088. A block torn between two writes, a stamp written to another block and a stamp of
//! another run are all told apart from an intact stamp. Discarded and never-written blocks
//! read as zeros.

use crate::blk::{self, AlignedBuf, MIB, PAGE};
use std::fmt;
use std::fs::File;
use std::ops::{Range, RangeInclusive};

/// The size of a block of the workload.
pub const BLOCK: usize = PAGE as usize;
const MAGIC: u64 = u64::from_le_bytes(*b"rxdstamp");
const HEADER: usize = 32;
const SUM_AT: usize = BLOCK - 8;
/// The hot range: this many blocks (fewer on a smaller device) get this share of the ops.
const HOT_BLOCKS: u64 = 16;
const HOT_PERCENT: u64 = 30;
/// This share of the ops are discards, of 1 to `MAX_DISCARD` blocks.
const DISCARD_PERCENT: u64 = 8;
const MAX_DISCARD: u64 = 8;
/// How many disagreeing blocks a diagnosis lists.
const EXAMPLES: usize = 8;

/// One operation of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write the op's stamp to this block.
    Write { block: u64 },
    /// Discard `len` blocks from `start`.
    Discard { start: u64, len: u64 },
}

impl Op {
    /// The blocks the op changes.
    pub fn blocks(&self) -> Range<u64> {
        match *self {
            Op::Write { block } => block..block + 1,
            Op::Discard { start, len } => start..start + len,
        }
    }
}

/// The operation sequence of one seed over a device of `blocks` blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub seed: u64,
    pub blocks: u64,
}

impl Workload {
    pub fn new(seed: u64, blocks: u64) -> Self {
        assert!(blocks > 0, "a workload needs at least one block");
        Self { seed, blocks }
    }

    /// The blocks that get `HOT_PERCENT` % of the ops.
    pub fn hot_range(&self) -> Range<u64> {
        let len = HOT_BLOCKS.min(self.blocks);
        let mut state = self.seed ^ 0x686F_7452_616E_6765;
        let start = blk::splitmix64(&mut state) % (self.blocks - len + 1);
        start..start + len
    }

    /// The ops in order, from op 1, without end (take as many as wanted).
    pub fn ops(&self) -> Ops {
        Ops {
            blocks: self.blocks,
            hot: self.hot_range(),
            rng: self.seed,
            k: 0,
        }
    }
}

/// The iterator of [`Workload::ops`]: (k, op k).
pub struct Ops {
    blocks: u64,
    hot: Range<u64>,
    rng: u64,
    k: u64,
}

impl Iterator for Ops {
    type Item = (u64, Op);

    fn next(&mut self) -> Option<(u64, Op)> {
        self.k += 1;
        let kind = blk::splitmix64(&mut self.rng);
        let pick = blk::splitmix64(&mut self.rng);
        let range = if (kind >> 32) % 100 < HOT_PERCENT {
            self.hot.clone()
        } else {
            0..self.blocks
        };
        let span = range.end - range.start;
        let op = if kind % 100 < DISCARD_PERCENT {
            let len = 1 + (pick >> 40) % MAX_DISCARD.min(span);
            Op::Discard {
                start: range.start + pick % (span - len + 1),
                len,
            }
        } else {
            Op::Write {
                block: range.start + pick % span,
            }
        };
        Some((self.k, op))
    }
}

/// The key of a stamp's body: distinct for every (k, b) below 2^32 each.
fn body_key(k: u64, b: u64) -> u64 {
    let mut state = k.rotate_left(32) ^ b;
    blk::splitmix64(&mut state)
}

/// Fills `buf` (one block) with the stamp of op `k` on block `b` of the run `seed`.
pub fn stamp(buf: &mut [u8], seed: u64, k: u64, b: u64) {
    assert_eq!(buf.len(), BLOCK, "a stamp is one block");
    for (i, word) in [MAGIC, seed, k, b].into_iter().enumerate() {
        buf[i * 8..(i + 1) * 8].copy_from_slice(&word.to_le_bytes());
    }
    blk::fill_keyed(&mut buf[HEADER..SUM_AT], seed, body_key(k, b));
    let sum = blk::checksum(&buf[..SUM_AT]);
    buf[SUM_AT..].copy_from_slice(&sum.to_le_bytes());
}

/// What a block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// All zeros: never written, or discarded.
    Zero,
    /// The intact stamp of op k for this block.
    Stamp(u64),
    /// Anything else.
    Garbage(Garbage),
}

/// Why a block is no intact stamp of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garbage {
    /// No stamp header.
    Unrecognised,
    /// A stamp of another run (this seed).
    OtherSeed(u64),
    /// The intact stamp of another block: data landed at the wrong place.
    Misplaced { block: u64, op: u64 },
    /// A stamp header (of this op) over a block that is not that stamp: torn between two
    /// writes, or corrupted.
    Damaged { op: u64 },
}

/// Classifies one block (`bytes`, 4 KiB) read at block `b` of a device written by the run
/// `seed`.
pub fn classify(bytes: &[u8], seed: u64, b: u64) -> Class {
    assert_eq!(bytes.len(), BLOCK, "classify takes one block");
    if bytes.iter().all(|&x| x == 0) {
        return Class::Zero;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..(i + 1) * 8]);
        u64::from_le_bytes(w)
    };
    let (magic, their_seed, k, their_block) = (word(0), word(1), word(2), word(3));
    if magic != MAGIC || k == 0 {
        return Class::Garbage(Garbage::Unrecognised);
    }
    if their_seed != seed {
        return Class::Garbage(Garbage::OtherSeed(their_seed));
    }
    let mut want = [0u8; BLOCK];
    stamp(&mut want, seed, k, their_block);
    if want[..] != *bytes {
        return Class::Garbage(Garbage::Damaged { op: k });
    }
    if their_block != b {
        return Class::Garbage(Garbage::Misplaced {
            block: their_block,
            op: k,
        });
    }
    Class::Stamp(k)
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Class::Zero => write!(f, "zeros"),
            Class::Stamp(k) => write!(f, "op {k}'s stamp"),
            Class::Garbage(Garbage::Unrecognised) => write!(f, "unrecognised data"),
            Class::Garbage(Garbage::OtherSeed(seed)) => {
                write!(f, "a stamp of another run (seed {seed:#x})")
            }
            Class::Garbage(Garbage::Misplaced { block, op }) => {
                write!(f, "op {op}'s stamp of block {block} (misplaced)")
            }
            Class::Garbage(Garbage::Damaged { op }) => {
                write!(f, "a damaged stamp of op {op} (torn or corrupted)")
            }
        }
    }
}

/// What a block holds after a prefix of the ops, by the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Never written nor discarded: zeros.
    Never,
    /// Discarded by this op and not written since: zeros.
    Discarded(u64),
    /// Written by this op.
    Stamp(u64),
}

impl Held {
    /// The class a block in this state reads as.
    pub fn class(self) -> Class {
        match self {
            Held::Never | Held::Discarded(_) => Class::Zero,
            Held::Stamp(k) => Class::Stamp(k),
        }
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Held::Never => write!(f, "zeros (never written)"),
            Held::Discarded(d) => write!(f, "zeros (discarded by op {d})"),
            Held::Stamp(k) => write!(f, "op {k}'s stamp"),
        }
    }
}

/// Every block's history of writes and discards over ops 1..=`ops` of a workload.
pub struct History {
    ops: u64,
    /// Block b's events are `events[first[b]..first[b + 1]]`, in op order, each `k << 1`
    /// for a write by op k, `k << 1 | 1` for a discard.
    first: Vec<usize>,
    events: Vec<u64>,
}

impl History {
    /// The history of ops 1..=`ops`: `ops` must be at least the number of ops the writer may
    /// have issued (ops it never issued only widen the answer; missing ones make it wrong).
    pub fn new(w: &Workload, ops: u64) -> Self {
        let blocks = w.blocks as usize;
        let mut first = vec![0usize; blocks + 1];
        for (_, op) in w.ops().take(ops as usize) {
            for b in op.blocks() {
                first[b as usize + 1] += 1;
            }
        }
        for b in 0..blocks {
            first[b + 1] += first[b];
        }
        let mut next = first.clone();
        let mut events = vec![0u64; first[blocks]];
        for (k, op) in w.ops().take(ops as usize) {
            let discard = u64::from(matches!(op, Op::Discard { .. }));
            for b in op.blocks() {
                events[next[b as usize]] = k << 1 | discard;
                next[b as usize] += 1;
            }
        }
        Self { ops, first, events }
    }

    /// How many ops the history covers.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    pub fn blocks(&self) -> u64 {
        (self.first.len() - 1) as u64
    }

    fn events(&self, b: u64) -> &[u64] {
        &self.events[self.first[b as usize]..self.first[b as usize + 1]]
    }

    /// What block `b` holds after ops 1..=`p`.
    pub fn state(&self, b: u64, p: u64) -> Held {
        let ev = self.events(b);
        match ev.partition_point(|&e| e >> 1 <= p) {
            0 => Held::Never,
            i if ev[i - 1] & 1 == 1 => Held::Discarded(ev[i - 1] >> 1),
            i => Held::Stamp(ev[i - 1] >> 1),
        }
    }

    /// Calls `each` with every range of prefix lengths P (half-open, within 0..=ops, in
    /// order, disjoint) after which block `b` reads as `class`.
    fn consistent(&self, b: u64, class: Class, mut each: impl FnMut(Range<u64>)) {
        let ev = self.events(b);
        let end = self.ops + 1;
        let until = |i: usize| ev.get(i).map_or(end, |&e| e >> 1);
        match class {
            Class::Zero => {
                each(0..until(0));
                for (i, &e) in ev.iter().enumerate() {
                    if e & 1 == 1 {
                        each(e >> 1..until(i + 1));
                    }
                }
            }
            Class::Stamp(k) if k <= self.ops => {
                if let Ok(i) = ev.binary_search(&(k << 1)) {
                    each(k..until(i + 1));
                }
            }
            Class::Stamp(_) | Class::Garbage(_) => {}
        }
    }

    /// Why `held` at block `b` is not the state after op `p` (`want`).
    fn explain(&self, b: u64, held: Class, want: Held, p: u64) -> String {
        let ev = self.events(b);
        let later_discard = ev
            .iter()
            .find(|&&e| e & 1 == 1 && e >> 1 > p)
            .map(|e| e >> 1);
        match (held, want) {
            (Class::Stamp(k), _) if k > self.ops => {
                format!("op {k} is beyond the {} ops considered", self.ops)
            }
            (Class::Stamp(k), _) if ev.binary_search(&(k << 1)).is_err() => {
                format!("op {k} never wrote block {b}")
            }
            (Class::Stamp(k), _) if k > p => format!("op {k} came after op {p}"),
            (Class::Stamp(_), Held::Stamp(j)) => format!("op {j}'s write is missing"),
            (Class::Stamp(_), Held::Discarded(d)) => format!("op {d}'s discard is missing"),
            (Class::Zero, Held::Stamp(j)) => match later_discard {
                Some(d) => format!("op {j}'s write is missing, or op {d}'s discard came in"),
                None => format!("op {j}'s write is missing"),
            },
            _ => "no op leaves this".into(),
        }
    }
}

/// Why no prefix of the ops gives the observed state.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub ops: u64,
    pub blocks: u64,
    /// The closest prefixes: ops 1..=P for every P in this range disagree with the fewest
    /// blocks.
    pub best: RangeInclusive<u64>,
    /// How many blocks disagree with the state after `best.start()`.
    pub disagree: u64,
    /// The first few of them.
    pub examples: Vec<Mismatch>,
    /// How many blocks read as zeros, stamps and anything else.
    pub zero: u64,
    pub stamped: u64,
    pub garbage: u64,
}

/// A block that disagrees with a prefix state.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub block: u64,
    pub held: Class,
    pub want: Held,
    /// What that means, in words (a write after the cut, a missing write or discard...).
    pub note: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, q) = (*self.best.start(), *self.best.end());
        write!(
            f,
            "no prefix of ops 1..={} leaves this state ({} zero, {} stamped, {} other blocks); \
             the closest, after op {p}",
            self.ops, self.zero, self.stamped, self.garbage
        )?;
        if q > p {
            write!(f, " (or any up to op {q})")?;
        }
        write!(
            f,
            ", differs in {} of {} blocks:",
            self.disagree, self.blocks
        )?;
        for m in &self.examples {
            write!(
                f,
                "\n  block {}: holds {}, after op {p} it would hold {}: {}",
                m.block, m.held, m.want, m.note
            )?;
        }
        if self.disagree > self.examples.len() as u64 {
            write!(f, "\n  ...")?;
        }
        Ok(())
    }
}

/// The prefix lengths P (0..=ops) after which the device reads as `observed` (one class per
/// block, as [`observe`] gives), as inclusive ranges in order; or why there is none.
///
/// Cost: O(ops + events + blocks) time, O(ops) memory (a counter per P: for every block, the
/// P it agrees with form a few ranges given by its history; a P every block agrees with is
/// an answer).
pub fn check(h: &History, observed: &[Class]) -> Result<Vec<RangeInclusive<u64>>, Diagnosis> {
    assert_eq!(observed.len() as u64, h.blocks(), "one class per block");
    let end = h.ops + 1;
    // Per P, how many blocks agree with it: +1 where a block's range starts, -1 past its end,
    // then a running sum.
    let mut agree = vec![0i64; end as usize + 1];
    for (b, &class) in observed.iter().enumerate() {
        h.consistent(b as u64, class, |r| {
            agree[r.start as usize] += 1;
            agree[r.end as usize] -= 1;
        });
    }
    for p in 1..agree.len() {
        agree[p] += agree[p - 1];
    }
    agree.truncate(end as usize);
    let all = observed.len() as i64;
    let mut ranges = Vec::new();
    let mut p = 0usize;
    while p < agree.len() {
        if agree[p] == all {
            let q = p + agree[p..].iter().take_while(|&&n| n == all).count();
            ranges.push(p as u64..=(q - 1) as u64);
            p = q;
        } else {
            p += 1;
        }
    }
    if !ranges.is_empty() {
        return Ok(ranges);
    }
    let most = agree.iter().copied().max().unwrap_or(0);
    let best = agree.iter().position(|&n| n == most).unwrap_or(0);
    let best_end = best + agree[best..].iter().take_while(|&&n| n == most).count() - 1;
    let mut d = Diagnosis {
        ops: h.ops,
        blocks: h.blocks(),
        best: best as u64..=best_end as u64,
        disagree: 0,
        examples: Vec::new(),
        zero: 0,
        stamped: 0,
        garbage: 0,
    };
    for (b, &held) in observed.iter().enumerate() {
        match held {
            Class::Zero => d.zero += 1,
            Class::Stamp(_) => d.stamped += 1,
            Class::Garbage(_) => d.garbage += 1,
        }
        let want = h.state(b as u64, best as u64);
        if want.class() != held {
            d.disagree += 1;
            if d.examples.len() < EXAMPLES {
                d.examples.push(Mismatch {
                    block: b as u64,
                    held,
                    want,
                    note: h.explain(b as u64, held, want, best as u64),
                });
            }
        }
    }
    Err(d)
}

/// Reads blocks 0..`w.blocks` of `path` (O_DIRECT) and classifies each.
pub fn observe(path: &str, w: &Workload) -> Result<Vec<Class>, String> {
    let f = blk::open_direct(path, false)?;
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    let mut classes = Vec::with_capacity(w.blocks as usize);
    let per_read = MIB / PAGE;
    let mut b = 0u64;
    while b < w.blocks {
        let n = per_read.min(w.blocks - b) as usize;
        blk::read_at(&f, &mut buf[..n * BLOCK], b * PAGE)
            .map_err(|e| format!("{path}: read blocks {b}..{}: {e}", b + n as u64))?;
        for (i, block) in buf[..n * BLOCK].chunks_exact(BLOCK).enumerate() {
            classes.push(classify(block, w.seed, b + i as u64));
        }
        b += n as u64;
    }
    Ok(classes)
}

/// Performs ops on a block device: a write of one block with O_DIRECT (it has completed
/// when [`Writer::apply`] returns), a discard with BLKDISCARD.
pub struct Writer {
    path: String,
    file: File,
    buf: AlignedBuf,
    seed: u64,
}

impl Writer {
    /// Opens `path` for `w`: the device must hold at least `w.blocks` blocks.
    pub fn open(path: &str, w: &Workload) -> Result<Self, String> {
        let file = blk::open_direct(path, true)?;
        let size = blk::size64(&file)?;
        if size < w.blocks * PAGE {
            return Err(format!(
                "{path} holds {size} bytes, the workload needs {} blocks of {BLOCK}",
                w.blocks
            ));
        }
        Ok(Self {
            path: path.to_string(),
            file,
            buf: AlignedBuf::zeroed(BLOCK)?,
            seed: w.seed,
        })
    }

    /// Performs op `k` (as [`Workload::ops`] gave it) and waits for its completion.
    pub fn apply(&mut self, k: u64, op: Op) -> Result<(), String> {
        match op {
            Op::Write { block } => {
                stamp(&mut self.buf, self.seed, k, block);
                blk::write_at(&self.file, &self.buf, block * PAGE)
                    .map_err(|e| format!("{}: op {k}: write block {block}: {e}", self.path))
            }
            Op::Discard { start, len } => blk::discard(&self.file, start * PAGE, len * PAGE)
                .map_err(|e| {
                    format!(
                        "{}: op {k}: BLKDISCARD blocks {start}..{}: {e}",
                        self.path,
                        start + len
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a device after ops 1..=p, simulated.
    fn device_after(w: &Workload, p: u64) -> Vec<u8> {
        let mut dev = vec![0u8; w.blocks as usize * BLOCK];
        for (k, op) in w.ops().take(p as usize) {
            for b in op.blocks() {
                let block = &mut dev[b as usize * BLOCK..(b as usize + 1) * BLOCK];
                match op {
                    Op::Write { .. } => stamp(block, w.seed, k, b),
                    Op::Discard { .. } => block.fill(0),
                }
            }
        }
        dev
    }

    fn classes_of(w: &Workload, dev: &[u8]) -> Vec<Class> {
        dev.chunks_exact(BLOCK)
            .enumerate()
            .map(|(b, block)| classify(block, w.seed, b as u64))
            .collect()
    }

    /// Every P whose state is `observed`, by brute force.
    fn brute_force(h: &History, observed: &[Class]) -> Vec<u64> {
        (0..=h.ops())
            .filter(|&p| (0..h.blocks()).all(|b| h.state(b, p).class() == observed[b as usize]))
            .collect()
    }

    fn flatten(ranges: &[RangeInclusive<u64>]) -> Vec<u64> {
        ranges.iter().flat_map(|r| r.clone()).collect()
    }

    fn diagnosis(h: &History, observed: &[Class]) -> Diagnosis {
        match check(h, observed) {
            Ok(r) => panic!("the state passed as a prefix state: {r:?}"),
            Err(d) => d,
        }
    }

    #[test]
    fn stamps_classify() {
        let (seed, b) = (7, 12);
        let mut x = vec![0u8; BLOCK];
        assert_eq!(classify(&x, seed, b), Class::Zero);
        stamp(&mut x, seed, 5, b);
        assert_eq!(classify(&x, seed, b), Class::Stamp(5));
        assert_eq!(
            classify(&x, seed, b + 1),
            Class::Garbage(Garbage::Misplaced { block: b, op: 5 })
        );
        assert_eq!(
            classify(&x, seed + 1, b),
            Class::Garbage(Garbage::OtherSeed(seed))
        );
        // Torn: the first half of op 9's write over op 5's block, and the other way round.
        let mut y = vec![0u8; BLOCK];
        stamp(&mut y, seed, 9, b);
        let mut torn = x.clone();
        torn[..BLOCK / 2].copy_from_slice(&y[..BLOCK / 2]);
        assert_eq!(
            classify(&torn, seed, b),
            Class::Garbage(Garbage::Damaged { op: 9 })
        );
        torn[..BLOCK / 2].copy_from_slice(&x[..BLOCK / 2]);
        torn[BLOCK / 2..].copy_from_slice(&y[BLOCK / 2..]);
        assert_eq!(
            classify(&torn, seed, b),
            Class::Garbage(Garbage::Damaged { op: 5 })
        );
        // Half written over zeros, one sector missing, one bit flipped.
        let mut half = vec![0u8; BLOCK];
        half[..BLOCK / 2].copy_from_slice(&y[..BLOCK / 2]);
        assert_eq!(
            classify(&half, seed, b),
            Class::Garbage(Garbage::Damaged { op: 9 })
        );
        let mut sector = y.clone();
        sector[512..1024].fill(0);
        assert_eq!(
            classify(&sector, seed, b),
            Class::Garbage(Garbage::Damaged { op: 9 })
        );
        let mut flip = y.clone();
        flip[BLOCK - 1] ^= 0x10;
        assert_eq!(
            classify(&flip, seed, b),
            Class::Garbage(Garbage::Damaged { op: 9 })
        );
        half.copy_from_slice(&y);
        half[..BLOCK / 2].fill(0);
        assert_eq!(
            classify(&half, seed, b),
            Class::Garbage(Garbage::Unrecognised)
        );
        // Two ops' stamps of one block differ everywhere past the header.
        assert!(x[HEADER..SUM_AT]
            .chunks(8)
            .zip(y[HEADER..SUM_AT].chunks(8))
            .all(|(a, b)| a != b));
    }

    #[test]
    fn workload_is_deterministic_with_discards_and_a_hot_range() {
        let w = Workload::new(0x5eed, 1000);
        let a: Vec<_> = w.ops().take(20_000).collect();
        assert_eq!(a, w.ops().take(20_000).collect::<Vec<_>>());
        assert_ne!(
            a,
            Workload::new(0x5eee, 1000)
                .ops()
                .take(20_000)
                .collect::<Vec<_>>()
        );
        assert!(a.iter().enumerate().all(|(i, &(k, _))| k == i as u64 + 1));
        let discards = a
            .iter()
            .filter(|(_, op)| matches!(op, Op::Discard { .. }))
            .count();
        assert!((1000..2500).contains(&discards), "{discards} discards");
        assert!(a
            .iter()
            .any(|(_, op)| matches!(op, Op::Discard { len, .. } if *len > 1)));
        assert!(a.iter().all(|(_, op)| op.blocks().end <= 1000));
        let hot = w.hot_range();
        assert_eq!(hot.end - hot.start, HOT_BLOCKS);
        let hot_writes = a
            .iter()
            .filter(|(_, op)| matches!(op, Op::Write { block } if hot.contains(block)))
            .count();
        // About 30 % of 92 % of the ops land on 16 blocks: each is overwritten hundreds of
        // times.
        assert!(hot_writes > 4000, "{hot_writes} writes to the hot range");
        // A device smaller than the hot range works too.
        for (_, op) in Workload::new(3, 1).ops().take(1000) {
            assert_eq!(op.blocks(), 0..1);
        }
    }

    #[test]
    fn prefix_states_pass_and_the_answer_is_exact() {
        for seed in 0..6u64 {
            let w = Workload::new(seed, 64);
            let n = 3000;
            let h = History::new(&w, n);
            for p in [0, 1, 2, 17, 500, 1999, n] {
                let observed = classes_of(&w, &device_after(&w, p));
                let got = check(&h, &observed).unwrap_or_else(|d| panic!("P = {p}: {d}"));
                let got = flatten(&got);
                assert!(got.contains(&p), "P = {p} not in {got:?}");
                assert_eq!(got, brute_force(&h, &observed), "seed {seed}, P = {p}");
            }
        }
    }

    #[test]
    fn random_damage_agrees_with_brute_force() {
        let w = Workload::new(99, 32);
        let n = 1500;
        let h = History::new(&w, n);
        let mut rng = 1u64;
        for _ in 0..200 {
            let p = blk::splitmix64(&mut rng) % (n + 1);
            let mut observed: Vec<Class> = (0..w.blocks).map(|b| h.state(b, p).class()).collect();
            // Give 1 to 3 blocks their state after another prefix.
            for _ in 0..1 + blk::splitmix64(&mut rng) % 3 {
                let b = blk::splitmix64(&mut rng) % w.blocks;
                let q = blk::splitmix64(&mut rng) % (n + 1);
                observed[b as usize] = h.state(b, q).class();
            }
            let want = brute_force(&h, &observed);
            match check(&h, &observed) {
                Ok(r) => assert_eq!(flatten(&r), want),
                Err(d) => {
                    assert!(want.is_empty(), "{d} but {want:?} fit");
                    assert!(d.disagree >= 1 && d.disagree <= 3, "{d}");
                }
            }
        }
    }

    /// A prefix P of `w` after which blocks change often enough that a one-block change is
    /// caught: the state after P, and the history.
    fn setup() -> (Workload, History, u64, Vec<Class>) {
        let w = Workload::new(0xC0FFEE, 48);
        let h = History::new(&w, 4000);
        let p = 2500;
        let observed = classes_of(&w, &device_after(&w, p));
        (w, h, p, observed)
    }

    /// `observed` with block `b` reading as `class`: no prefix state, and the diagnosis names
    /// that one block. Returns the diagnosis and its text.
    fn one_block_off(
        h: &History,
        mut observed: Vec<Class>,
        b: u64,
        class: Class,
    ) -> (Diagnosis, String) {
        observed[b as usize] = class;
        assert!(brute_force(h, &observed).is_empty());
        let d = diagnosis(h, &observed);
        let text = d.to_string();
        assert_eq!(d.disagree, 1, "{text}");
        assert_eq!(d.examples[0].block, b, "{text}");
        assert_eq!(d.examples[0].held, class, "{text}");
        (d, text)
    }

    #[test]
    fn a_block_from_a_later_op_fails() {
        let (w, h, p, observed) = setup();
        // The next write after P to some block whose state changes in between elsewhere.
        let (k, b) = w
            .ops()
            .skip(p as usize + 5)
            .find_map(|(k, op)| match op {
                Op::Write { block } => Some((k, block)),
                _ => None,
            })
            .unwrap();
        let (d, text) = one_block_off(&h, observed, b, Class::Stamp(k));
        assert!(d.best.contains(&p), "{text}");
        assert!(text.contains(&format!("op {k} came after op")), "{text}");
    }

    #[test]
    fn a_torn_block_fails() {
        let (w, h, p, observed) = setup();
        // A stamped block, torn by a write after P: its first half is new.
        let (b, k) = (0..w.blocks)
            .find_map(|b| match h.state(b, p) {
                Held::Stamp(k) => Some((b, k)),
                _ => None,
            })
            .expect("a stamped block");
        let (mut torn, mut newer) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
        stamp(&mut torn, w.seed, k, b);
        stamp(&mut newer, w.seed, p + 1, b);
        torn[..BLOCK / 2].copy_from_slice(&newer[..BLOCK / 2]);
        let class = classify(&torn, w.seed, b);
        assert_eq!(class, Class::Garbage(Garbage::Damaged { op: p + 1 }));
        let (d, text) = one_block_off(&h, observed, b, class);
        assert_eq!(d.examples[0].want, Held::Stamp(k));
        assert!(text.contains("torn or corrupted"), "{text}");
    }

    #[test]
    fn a_block_from_an_earlier_op_fails() {
        let (w, h, p, observed) = setup();
        // A hot block holding its write before the last one up to P: a lost write.
        let hot = w.hot_range();
        let (b, older, newest) = hot
            .clone()
            .find_map(|b| {
                let ev = h.events(b);
                let writes: Vec<u64> = ev
                    .iter()
                    .filter(|&&e| e & 1 == 0 && e >> 1 <= p)
                    .map(|e| e >> 1)
                    .collect();
                match h.state(b, p) {
                    Held::Stamp(j) if writes.len() >= 2 => Some((b, writes[writes.len() - 2], j)),
                    _ => None,
                }
            })
            .expect("a hot block written twice");
        let (d, text) = one_block_off(&h, observed, b, Class::Stamp(older));
        assert!(d.best.contains(&p), "{text}");
        assert!(
            text.contains(&format!("op {newest}'s write is missing")),
            "{text}"
        );
    }

    #[test]
    fn a_lost_discard_fails() {
        let (w, h, p, observed) = setup();
        // A block discarded up to P after a write: it shows the write instead of zeros.
        let (b, d_op, written) = (0..w.blocks)
            .find_map(|b| match h.state(b, p) {
                Held::Discarded(d) => {
                    let before = h.state(b, d - 1);
                    match before {
                        Held::Stamp(k) => Some((b, d, k)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .expect("a discarded block that had been written");
        let (d, text) = one_block_off(&h, observed, b, Class::Stamp(written));
        assert_eq!(d.examples[0].want, Held::Discarded(d_op));
        assert!(
            text.contains(&format!("op {d_op}'s discard is missing")),
            "{text}"
        );
    }

    #[test]
    fn other_damage_is_named() {
        let (_, h, _, mut observed) = setup();
        observed[3] = Class::Stamp(h.ops() + 10);
        observed[4] = Class::Garbage(Garbage::Misplaced { block: 9, op: 3 });
        let text = diagnosis(&h, &observed).to_string();
        assert!(text.contains("beyond the 4000 ops considered"), "{text}");
        assert!(
            text.contains("op 3's stamp of block 9 (misplaced)"),
            "{text}"
        );
        // A stamp from an op that wrote another block.
        let (w, h, p, mut observed) = setup();
        let (k, other) = w
            .ops()
            .take(p as usize)
            .find_map(|(k, op)| match op {
                Op::Write { block } if block != 5 => Some((k, block)),
                _ => None,
            })
            .unwrap();
        assert_ne!(other, 5);
        observed[5] = Class::Stamp(k);
        let text = diagnosis(&h, &observed).to_string();
        assert!(
            text.contains(&format!("op {k} never wrote block 5")),
            "{text}"
        );
    }

    #[test]
    fn a_million_ops_over_a_hundred_thousand_blocks() {
        let w = Workload::new(0xB16, 100_000);
        let n = 1_000_000;
        let t = std::time::Instant::now();
        let h = History::new(&w, n);
        let p = 700_000;
        let mut observed: Vec<Class> = (0..w.blocks).map(|b| h.state(b, p).class()).collect();
        let ranges = check(&h, &observed).unwrap();
        assert!(flatten(&ranges).contains(&p), "{ranges:?}");
        let hot = w.hot_range().start;
        observed[hot as usize] = Class::Zero;
        observed[hot as usize + 1] = h.state(hot + 1, n).class();
        let d = diagnosis(&h, &observed);
        assert!(d.disagree <= 2, "{d}");
        // Debug build, shared CI cores: generous.
        assert!(t.elapsed().as_secs() < 60, "took {:?}", t.elapsed());
    }
}
