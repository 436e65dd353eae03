//! DH-HMAC-CHAP secrets, NVMe in-band authentication's, in the representation nvme-cli's
//! `gen-dhchap-key` prints and the kernel reads (`nvme_auth_extract_key` in
//! drivers/nvme/common/auth.c, the target's `dhchap_key` and the host's `dhchap_secret=`):
//!
//! ```text
//! DHHC-1:<hh>:<base64 of the key followed by its CRC-32, little-endian>:
//! ```
//!
//! `hh` is how the key is transformed before use (00 not at all, 01 SHA-256, 02 SHA-384,
//! 03 SHA-512; with the NQN, at authentication time); the key is 32, 48 or 64 bytes, whatever
//! `hh` is; the CRC is the standard CRC-32 (IEEE 802.3, zlib's); the base64 is RFC 4648's
//! standard alphabet with padding, so the string is 59, 83 or 103 characters long.
//!
//! Messages never show a secret: they end up in logs.

use std::fmt;
use std::io::Read;

/// The lengths a key may have, in bytes.
pub const KEY_LENGTHS: [usize; 3] = [32, 48, 64];

/// A DH-HMAC-CHAP secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The transformation, `hh`: 0 to 3.
    pub transform: u8,
    key: Vec<u8>,
}

impl fmt::Debug for Secret {
    /// Without the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Secret {{ transform: {}, {} bytes }}",
            self.transform,
            self.key.len()
        )
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in &mut self.key {
            // SAFETY: `b` is a valid, aligned, exclusive reference to a byte of the key.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl Secret {
    /// A secret of `key` with transformation `transform` (0 to 3); `key` is 32, 48 or 64
    /// bytes.
    pub fn new(transform: u8, key: Vec<u8>) -> Result<Self, String> {
        if transform > 3 {
            return Err(format!(
                "unknown transformation {transform} (0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512)"
            ));
        }
        if !KEY_LENGTHS.contains(&key.len()) {
            return Err(format!(
                "the key is {} bytes; a DH-HMAC-CHAP key is 32, 48 or 64",
                key.len()
            ));
        }
        Ok(Self { transform, key })
    }

    /// A new random secret of `length` bytes read from `random` (/dev/urandom).
    pub fn generate(transform: u8, length: usize, random: &mut dyn Read) -> Result<Self, String> {
        if transform > 3 || !KEY_LENGTHS.contains(&length) {
            // The same message as for a key read.
            Self::new(transform, vec![0; length])?;
        }
        let mut key = vec![0; length];
        random
            .read_exact(&mut key)
            .map_err(|e| format!("cannot read random bytes: {e}"))?;
        Self::new(transform, key)
    }

    /// Parses the DHHC-1 representation (white space around it is ignored), checking its
    /// form, the key's length and its CRC.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let rest = text.strip_prefix("DHHC-1:").ok_or(
            "not a DH-HMAC-CHAP secret: it starts with \"DHHC-1:\" (as `rxdskctl gen-dhchap-key` \
             and `nvme gen-dhchap-key` print it)",
        )?;
        let (hh, rest) = rest
            .split_once(':')
            .ok_or("no \":\" after the transformation (DHHC-1:00:...:)")?;
        let transform = match hh {
            "00" => 0,
            "01" => 1,
            "02" => 2,
            "03" => 3,
            _ => {
                return Err(format!(
                    "unknown transformation \"{hh}\" (00 none, 01 SHA-256, 02 SHA-384, 03 \
                     SHA-512)"
                ))
            }
        };
        let encoded = rest
            .strip_suffix(':')
            .ok_or("no \":\" at the end (DHHC-1:00:...:)")?;
        let mut bytes = base64_decode(encoded)?;
        if bytes.len() < 4 {
            return Err(format!(
                "{} bytes are too few for a key and its CRC-32 (a DH-HMAC-CHAP key is 32, 48 \
                 or 64 bytes)",
                bytes.len()
            ));
        }
        if !KEY_LENGTHS.contains(&(bytes.len() - 4)) {
            let n = bytes.len() - 4;
            bytes.fill(0);
            return Err(format!(
                "the key is {n} bytes; a DH-HMAC-CHAP key is 32, 48 or 64 bytes and its CRC-32 \
                 (48, 72 or 92 base64 characters)"
            ));
        }
        let crc = bytes.split_off(bytes.len() - 4);
        let said = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32(&bytes);
        if said != computed {
            bytes.fill(0);
            return Err(format!(
                "CRC-32 mismatch: the secret says {said:08x}, its key gives {computed:08x} (a \
                 character changed or missing?)"
            ));
        }
        Self::new(transform, bytes)
    }

    /// The DHHC-1 representation.
    pub fn encode(&self) -> String {
        let mut bytes = self.key.clone();
        bytes.extend_from_slice(&crc32(&self.key).to_le_bytes());
        let text = format!("DHHC-1:{:02x}:{}:", self.transform, base64_encode(&bytes));
        bytes.fill(0);
        text
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.key.len()
    }

    /// Never: a secret has 32 bytes or more.
    pub fn is_empty(&self) -> bool {
        self.key.is_empty()
    }
}

/// The standard CRC-32 (IEEE 802.3: reflected polynomial 0xedb88320, initial value and final
/// XOR 0xffffffff), as zlib's `crc32`, nvme-cli's and the kernel's `~crc32(~0, ...)`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64, standard alphabet, with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes RFC 4648 base64 (standard alphabet, padded to a multiple of 4 characters); only
/// the canonical encoding is accepted (the unused bits of the last character are zero), so
/// that a string and its bytes correspond one to one.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    // Not `is_multiple_of`: the workspace supports Rust 1.85.
    if bytes.len().checked_rem(4) != Some(0) {
        return Err(format!(
            "the key is not base64: {} characters, not a multiple of 4",
            bytes.len()
        ));
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err("the key is not base64: too much \"=\" padding".into());
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let mut bits = 0u32;
    let mut count = 0;
    for (i, &c) in bytes[..bytes.len() - padding].iter().enumerate() {
        let value = BASE64.iter().position(|&b| b == c).ok_or_else(|| {
            format!(
                "the key is not base64: character {} is {:?}",
                i + 1,
                char::from(c)
            )
        })?;
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    if bits != 0 {
        out.fill(0);
        return Err("the key is not canonical base64 (its last character has stray bits)".into());
    }
    Ok(out)
}

/// The HMAC the target asks for (`dhchap_hash`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hash {
    #[default]
    #[value(alias = "hmac(sha256)")]
    Sha256,
    #[value(alias = "hmac(sha384)")]
    Sha384,
    #[value(alias = "hmac(sha512)")]
    Sha512,
}

impl Hash {
    /// As configfs writes it.
    pub fn configfs(self) -> &'static str {
        match self {
            Hash::Sha256 => "hmac(sha256)",
            Hash::Sha384 => "hmac(sha384)",
            Hash::Sha512 => "hmac(sha512)",
        }
    }
}

/// The Diffie-Hellman group of the exchange (`dhchap_dhgroup`); `null`: none.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DhGroup {
    #[default]
    Null,
    Ffdhe2048,
    Ffdhe3072,
    Ffdhe4096,
    Ffdhe6144,
    Ffdhe8192,
}

impl DhGroup {
    /// As configfs writes it.
    pub fn configfs(self) -> &'static str {
        match self {
            DhGroup::Null => "null",
            DhGroup::Ffdhe2048 => "ffdhe2048",
            DhGroup::Ffdhe3072 => "ffdhe3072",
            DhGroup::Ffdhe4096 => "ffdhe4096",
            DhGroup::Ffdhe6144 => "ffdhe6144",
            DhGroup::Ffdhe8192 => "ffdhe8192",
        }
    }
}

/// Where a secret given on the command line comes from: `@FILE` (the file's contents), `-`
/// (standard input) or the DHHC-1 string itself (which `ps` shows to every user).
pub fn read_secret(spec: &str, stdin: &mut dyn Read) -> Result<Secret, String> {
    if spec == "-" {
        let mut text = String::new();
        stdin
            .take(4096)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the secret from standard input: {e}"))?;
        return Secret::parse(&text).map_err(|e| format!("standard input: {e}"));
    }
    match spec.strip_prefix('@') {
        Some(path) => read_secret_file(path),
        None => Secret::parse(spec),
    }
}

/// The secret in file `path` (its only line).
pub fn read_secret_file(path: &str) -> Result<Secret, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| format!("{path}: cannot read: {e}"))?;
    let secret = Secret::parse(&text).map_err(|e| format!("{path}: {e}"));
    // SAFETY: zeroes are valid UTF-8.
    unsafe { text.as_bytes_mut().fill(0) };
    secret
}

/// `gen-dhchap-key`: a new random secret, printed or written to a new file that only its
/// owner can read.
pub fn gen_command(
    args: &crate::cli::GenDhchapKeyArgs,
    out: &mut dyn std::io::Write,
) -> Result<(), crate::failure::Failure> {
    let length = args.key_length.unwrap_or(match args.hmac {
        2 => 48,
        3 => 64,
        _ => 32,
    });
    let mut random = std::fs::File::open("/dev/urandom")
        .map_err(|e| format!("/dev/urandom: cannot open: {e}"))?;
    let secret = Secret::generate(args.hmac, length, &mut random)?;
    let line = format!("{}\n", secret.encode());
    match &args.output {
        None => out.write_all(line.as_bytes())?,
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
