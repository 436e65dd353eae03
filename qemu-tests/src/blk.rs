//! Block-device helpers: O_DIRECT files and aligned buffers, the block ioctls, deterministic
//! page contents and checksums, and /proc readers.

use std::alloc::Layout;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::ptr::NonNull;
use std::time::Duration;

pub const PAGE: u64 = 4096;
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// A zero-filled heap buffer aligned to 4096 bytes, as O_DIRECT wants.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The buffer owns its allocation alone (nothing else points into it); moving it to
// another thread moves that ownership, as for a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Result<Self, String> {
        let layout = Self::layout(len)?;
        // SAFETY: `layout` has a non-zero size (checked in `layout`).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| format!("cannot allocate {len} bytes"))?;
        Ok(Self { ptr, len })
    }

    fn layout(len: usize) -> Result<Layout, String> {
        if len == 0 {
            return Err("zero-length buffer".into());
        }
        Layout::from_size_align(len, PAGE as usize).map_err(|e| format!("layout {len}: {e}"))
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation) bytes that we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: `ptr` came from `alloc_zeroed` with this same layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

/// Opens a block device with O_DIRECT (read-only or read-write).
pub fn open_direct(path: &str, write: bool) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)
        .map_err(|e| {
            format!(
                "open {path} O_DIRECT{}: {e}",
                if write { " rw" } else { "" }
            )
        })
}

pub fn write_at(f: &File, buf: &[u8], off: u64) -> std::io::Result<()> {
    f.write_all_at(buf, off)
}

pub fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    f.read_exact_at(buf, off)
}

nix::ioctl_read!(ioc_blkgetsize64, 0x12, 114, u64);
nix::ioctl_write_ptr_bad!(ioc_blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
nix::ioctl_write_ptr_bad!(ioc_blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
nix::ioctl_read_bad!(ioc_blksszget, nix::request_code_none!(0x12, 104), i32);

/// BLKGETSIZE64: the size the block layer sees.
pub fn size64(f: &File) -> Result<u64, String> {
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which points to `size`.
    unsafe { ioc_blkgetsize64(f.as_raw_fd(), &mut size) }
        .map_err(|e| format!("BLKGETSIZE64: {e}"))?;
    Ok(size)
}

/// BLKSSZGET: the logical block size.
pub fn logical_block_size(f: &File) -> Result<u32, String> {
    let mut size = 0i32;
    // SAFETY: BLKSSZGET writes one int to the pointer, which points to `size`.
    unsafe { ioc_blksszget(f.as_raw_fd(), &mut size) }.map_err(|e| format!("BLKSSZGET: {e}"))?;
    Ok(size as u32)
}

/// BLKDISCARD of `[off, off + len)`.
pub fn discard(f: &File, off: u64, len: u64) -> Result<(), nix::errno::Errno> {
    let range = [off, len];
    // SAFETY: BLKDISCARD reads two u64 from the pointer, which points to `range`.
    unsafe { ioc_blkdiscard(f.as_raw_fd(), &range) }.map(|_| ())
}

/// BLKZEROOUT of `[off, off + len)`.
pub fn zeroout(f: &File, off: u64, len: u64) -> Result<(), nix::errno::Errno> {
    let range = [off, len];
    // SAFETY: BLKZEROOUT reads two u64 from the pointer, which points to `range`.
    unsafe { ioc_blkzeroout(f.as_raw_fd(), &range) }.map(|_| ())
}

/// One step of splitmix64.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with bytes from a PRNG keyed on (`seed`, `key`): the same pair always gives the
/// same bytes, different pairs unrelated ones.
pub fn fill_keyed(buf: &mut [u8], seed: u64, key: u64) {
    let mut state = seed ^ key.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    splitmix64(&mut state);
    for chunk in buf.chunks_mut(8) {
        let w = splitmix64(&mut state).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// Fills `buf`, which starts at byte `off` of a device, page by page with the pattern of
/// `seed`: page `p` of the device always holds `fill_keyed(seed, p)`. `off` and `buf.len()`
/// are multiples of 512; partial pages get the matching slice of their page's pattern.
pub fn fill_pattern(buf: &mut [u8], off: u64, seed: u64) {
    let mut page = [0u8; PAGE as usize];
    let mut pos = 0usize;
    while pos < buf.len() {
        let abs = off + pos as u64;
        let p = abs / PAGE;
        let in_page = (abs % PAGE) as usize;
        let n = (PAGE as usize - in_page).min(buf.len() - pos);
        fill_keyed(&mut page, seed, p);
        buf[pos..pos + n].copy_from_slice(&page[in_page..in_page + n]);
        pos += n;
    }
}

/// A 64-bit checksum (not cryptographic; it catches corruption).
pub fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ data.len() as u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(23) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    let mut s = h;
    splitmix64(&mut s)
}

/// Writes the pattern of `seed` to `[off, off + len)` in chunks of up to 1 MiB (O_DIRECT).
/// Returns the checksum of every page written, in order.
pub fn write_pattern(f: &File, off: u64, len: u64, seed: u64) -> Result<Vec<u64>, String> {
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    let mut sums = Vec::with_capacity((len / PAGE) as usize);
    let mut pos = off;
    while pos < off + len {
        let n = (off + len - pos).min(MIB) as usize;
        fill_pattern(&mut buf[..n], pos, seed);
        write_at(f, &buf[..n], pos).map_err(|e| format!("write {n} bytes at {pos}: {e}"))?;
        sums.extend(buf[..n].chunks(PAGE as usize).map(checksum));
        pos += n as u64;
    }
    Ok(sums)
}

/// Reads `[off, off + len)` (O_DIRECT, chunks of up to 1 MiB) and compares every page's
/// checksum with `sums` (as [`write_pattern`] returned them for this range).
pub fn verify_checksums(f: &File, off: u64, len: u64, sums: &[u64]) -> Result<(), String> {
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    let mut pos = off;
    let mut idx = 0usize;
    let mut bad = Vec::new();
    while pos < off + len {
        let n = (off + len - pos).min(MIB) as usize;
        read_at(f, &mut buf[..n], pos).map_err(|e| format!("read {n} bytes at {pos}: {e}"))?;
        for (i, chunk) in buf[..n].chunks(PAGE as usize).enumerate() {
            let want = sums.get(idx + i).copied();
            if want != Some(checksum(chunk)) {
                bad.push(pos / PAGE + i as u64);
            }
        }
        idx += n.div_ceil(PAGE as usize);
        pos += n as u64;
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} page(s) in [{off}, {}) fail their checksum, first: page {:?}",
            bad.len(),
            off + len,
            &bad[..bad.len().min(8)]
        ))
    }
}

/// What a byte range of the device must hold.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    Pattern(u64),
    Zeros,
}

/// Reads `[off, off + len)` and compares it with `expect(byte offset)` per 512-byte sector;
/// returns the first mismatching sectors in the error.
pub fn verify_range(
    f: &File,
    off: u64,
    len: u64,
    expect: &dyn Fn(u64) -> Expect,
) -> Result<(), String> {
    let mut buf = AlignedBuf::zeroed(MIB as usize)?;
    let mut want = AlignedBuf::zeroed(MIB as usize)?;
    let mut pos = off;
    let mut bad: Vec<(u64, Expect)> = Vec::new();
    let mut nbad = 0u64;
    let mut page = [0u8; PAGE as usize];
    let mut cached: Option<(u64, u64)> = None;
    while pos < off + len {
        let n = (off + len - pos).min(MIB) as usize;
        read_at(f, &mut buf[..n], pos).map_err(|e| format!("read {n} bytes at {pos}: {e}"))?;
        for s in 0..n / 512 {
            let at = pos + (s * 512) as u64;
            let e = expect(at);
            let w = &mut want[s * 512..(s + 1) * 512];
            match e {
                Expect::Pattern(seed) => {
                    let p = at / PAGE;
                    if cached != Some((seed, p)) {
                        fill_keyed(&mut page, seed, p);
                        cached = Some((seed, p));
                    }
                    let o = (at % PAGE) as usize;
                    w.copy_from_slice(&page[o..o + 512]);
                }
                Expect::Zeros => w.fill(0),
            }
            if buf[s * 512..(s + 1) * 512] != *w {
                nbad += 1;
                if bad.len() < 8 {
                    bad.push((at, e));
                }
            }
        }
        pos += n as u64;
    }
    if nbad == 0 {
        Ok(())
    } else {
        let list: Vec<String> = bad
            .iter()
            .map(|(at, e)| format!("byte {at} (want {e:?})"))
            .collect();
        Err(format!(
            "{nbad} sector(s) of [{off}, {}) hold the wrong data; first: {}",
            off + len,
            list.join(", ")
        ))
    }
}

/// A field of /proc/meminfo, in bytes.
pub fn meminfo(field: &str) -> Result<u64, String> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|e| format!("/proc/meminfo {field}: {e}"))?;
            return Ok(kb * KIB);
        }
    }
    Err(format!("/proc/meminfo has no {field}"))
}

pub fn mem_available() -> Result<u64, String> {
    meminfo("MemAvailable")
}

/// MemAvailable once it has stopped moving: two readings 1 s apart within 512 KiB (or the
/// last reading after `timeout`). Memory freed by an earlier test may still be on its way
/// back: rxdsk frees pages in RCU callbacks, and once fewer than ~10000 are queued (~40 MiB of
/// pages) RCU runs them in small batches, so the tail trickles back at a few MiB/s under TCG.
/// A baseline taken during that tail would be too low.
pub fn settled_mem_available(timeout: Duration) -> Result<u64, String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = mem_available()?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = mem_available()?;
        if now.abs_diff(last) < 512 * KIB || std::time::Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Waits (up to `timeout`) for MemAvailable to reach at least `floor`; returns the last
/// reading. Freed pages reach the free lists with some delay (per-CPU lists, RCU).
pub fn wait_mem_available(floor: u64, timeout: Duration) -> Result<u64, String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let now = mem_available()?;
        if now >= floor || std::time::Instant::now() >= deadline {
            return Ok(now);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A counter of /proc/vmstat.
pub fn vmstat(field: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/vmstat").map_err(|e| format!("/proc/vmstat: {e}"))?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == field).then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("/proc/vmstat has no {field}"))
}

/// MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_per_page_whatever_the_write_boundaries() {
        let seed = 42;
        let mut whole = vec![0u8; 3 * PAGE as usize];
        fill_pattern(&mut whole, 0, seed);
        // The same bytes written in odd 512-byte-aligned pieces.
        let mut pieces = vec![0u8; 3 * PAGE as usize];
        for (start, end) in [(0usize, 1536usize), (1536, 4608), (4608, 12288)] {
            fill_pattern(&mut pieces[start..end], start as u64, seed);
        }
        assert_eq!(whole, pieces);
        let mut page1 = vec![0u8; PAGE as usize];
        fill_keyed(&mut page1, seed, 1);
        assert_eq!(&whole[PAGE as usize..2 * PAGE as usize], &page1[..]);
        assert_ne!(&whole[..PAGE as usize], &page1[..]);
        assert!(whole.iter().any(|&b| b != 0));
    }

    #[test]
    fn checksum_sees_one_bit() {
        let mut a = vec![0u8; PAGE as usize];
        fill_keyed(&mut a, 1, 2);
        let sum = checksum(&a);
        a[4000] ^= 1;
        assert_ne!(checksum(&a), sum);
        assert_ne!(checksum(&[0u8; 8]), checksum(&[0u8; 16]));
    }

    #[test]
    fn aligned_buffer() {
        let b = AlignedBuf::zeroed(3 * 4096).unwrap();
        assert_eq!(b.as_ptr() as usize % 4096, 0);
        assert!(b.iter().all(|&x| x == 0));
        assert!(AlignedBuf::zeroed(0).is_err());
    }
}
