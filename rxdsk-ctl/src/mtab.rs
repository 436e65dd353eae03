//! Mount tables: fstab(5) and /proc/self/mounts, whose fields write space, tab, newline and
//! backslash as octal escapes.

/// One line of a mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Its line number, from 1.
    pub line: usize,
    /// What is mounted (a device, `UUID=...`).
    pub spec: String,
    /// Where (`none` for swap in fstab).
    pub file: String,
    /// The filesystem type (`swap` for swap in fstab); empty if the line has none.
    pub fs_type: String,
}

/// The entries of a mount table: every line with at least two fields, comments (`#`) and
/// blank lines left out.
pub fn entries(text: &str) -> Vec<MountEntry> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .filter_map(|(i, l)| {
            let mut fields = l.split_whitespace().map(unescape);
            Some(MountEntry {
                line: i + 1,
                spec: fields.next()?,
                file: fields.next()?,
                fs_type: fields.next().unwrap_or_default(),
            })
        })
        .collect()
}

/// A field with its octal escapes (`\040` for a space) undone.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape("/mnt/my\\040data"), "/mnt/my data");
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("plain\\"), "plain\\");
        assert_eq!(unescape("x\\09"), "x\\09");
    }

    #[test]
    fn fstab_entries() {
        let e = entries(
            "# comment\n\n  # indented comment\nUUID=1 / ext4 defaults 0 1\n\
             /dev/rxd0\tnone swap sw\n/dev/vdb /srv/my\\040data\nlonely\n",
        );
        let short: Vec<(usize, &str, &str, &str)> = e
            .iter()
            .map(|e| (e.line, e.spec.as_str(), e.file.as_str(), e.fs_type.as_str()))
            .collect();
        assert_eq!(
            short,
            [
                (4, "UUID=1", "/", "ext4"),
                (5, "/dev/rxd0", "none", "swap"),
                (6, "/dev/vdb", "/srv/my data", ""),
            ]
        );
    }
}
