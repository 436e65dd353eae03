//! Sizes as users type them (`512M`, `4KiB`, `1073741824`) and as util-linux prints them.

/// Unit letters, each 1024 times the previous one.
const UNITS: [char; 5] = ['K', 'M', 'G', 'T', 'P'];

const SUFFIX_HELP: &str =
    "use bytes or a number with K, M, G, T or P (powers of 1024, e.g. 512M or 4KiB)";

/// Parses a byte count: plain digits, optionally followed by `K`, `M`, `G`, `T` or `P` (either
/// case, optionally with `iB`), all powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err(format!("empty size ({SUFFIX_HELP})"));
    }
    if s.starts_with('-') {
        return Err("negative size".into());
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("not a number ({SUFFIX_HELP})"));
    }
    if suffix.starts_with(['.', ',']) {
        return Err("fractional sizes are not supported (use a smaller unit, e.g. 1536M)".into());
    }
    let shift = suffix_shift(suffix)
        .ok_or_else(|| format!("unknown size suffix \"{suffix}\" ({SUFFIX_HELP})"))?;
    let number: u64 = digits.parse().map_err(|_| "size too large".to_string())?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| "size too large".to_string())
}

/// The power of two a suffix stands for, or `None` if it is not one we accept.
fn suffix_shift(suffix: &str) -> Option<u32> {
    let mut chars = suffix.chars();
    let Some(letter) = chars.next() else {
        return Some(0);
    };
    let index = UNITS.iter().position(|u| u.eq_ignore_ascii_case(&letter))?;
    let rest = chars.as_str();
    if rest.is_empty() || rest.eq_ignore_ascii_case("ib") {
        // `index` < 5, so the shift is at most 50.
        Some(10 * (index as u32 + 1))
    } else {
        None
    }
}

/// Formats a byte count like util-linux (`size_to_human_string` with one-letter suffixes):
/// `0B`, `512B`, `4K`, `1.5G`; one decimal, rounded half up, dropped when it is zero.
pub fn format_size(bytes: u64) -> String {
    // Largest power of 1024 not above `bytes` (exponent in bits: 0, 10, ..., 60).
    let mut exp = 0u32;
    while exp < 60 && bytes >= 1u64 << (exp + 10) {
        exp += 10;
    }
    if exp == 0 {
        return format!("{bytes}B");
    }
    let letter = ['B', 'K', 'M', 'G', 'T', 'P', 'E'][(exp / 10) as usize];
    let mut whole = bytes >> exp;
    let rest = bytes & ((1u64 << exp) - 1);
    // Thousandths, truncated, then rounded to tenths: the same two steps as util-linux.
    let thousandths = ((u128::from(rest) * 1000) >> exp) as u64;
    let mut tenth = (thousandths + 50) / 100;
    if tenth == 10 {
        whole += 1;
        tenth = 0;
    }
    if tenth == 0 {
        format!("{whole}{letter}")
    } else {
        format!("{whole}.{tenth}{letter}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn suffixes_are_powers_of_1024_in_any_case() {
        for (s, want) in [
            ("1K", 1024),
            ("1k", 1024),
            ("1KiB", 1024),
            ("1kib", 1024),
            ("4K", 4096),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("1G", 1 << 30),
            ("3GiB", 3 << 30),
            ("2T", 2 << 40),
            ("1P", 1 << 50),
            ("0G", 0),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let err = |s: &str| parse_size(s).unwrap_err();
        assert!(err("").starts_with("empty size"));
        assert_eq!(err("-1"), "negative size");
        assert_eq!(err("-1G"), "negative size");
        assert!(err("1.5G").starts_with("fractional sizes are not supported"));
        assert!(err("1,5G").starts_with("fractional sizes are not supported"));
        assert!(err("G").starts_with("not a number"));
        assert!(err("+1").starts_with("not a number"));
        assert!(err(" 1").starts_with("not a number"));
        assert!(err("1X").starts_with("unknown size suffix \"X\""));
        assert!(err("1KB").starts_with("unknown size suffix \"KB\""));
        assert!(err("1 G").starts_with("unknown size suffix \" G\""));
        assert!(err("1Gi").starts_with("unknown size suffix \"Gi\""));
        assert!(err("1E").starts_with("unknown size suffix \"E\""));
        assert_eq!(err("18446744073709551616"), "size too large");
        assert_eq!(err("16384P"), "size too large");
        assert_eq!(err("17179869184G"), "size too large");
    }

    #[test]
    fn largest_size_that_fits() {
        assert_eq!(parse_size("16383P"), Ok(16383 << 50));
        assert_eq!(parse_size("17179869183G"), Ok(17179869183 << 30));
    }

    #[test]
    fn formats_like_util_linux() {
        for (bytes, want) in [
            (0, "0B"),
            (1, "1B"),
            (512, "512B"),
            (1023, "1023B"),
            (1024, "1K"),
            (1536, "1.5K"),
            (4096, "4K"),
            (4096 + 50, "4K"),
            (4096 + 52, "4.1K"),
            (512 << 20, "512M"),
            (1 << 30, "1G"),
            (3 << 29, "1.5G"),
            ((1 << 30) + (1 << 30) / 10 * 3, "1.3G"),
            (1 << 40, "1T"),
            (1 << 50, "1P"),
            (1 << 60, "1E"),
            (u64::MAX, "16E"),
        ] {
            assert_eq!(format_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn rounding_up_to_the_next_whole_number() {
        // 1.96K rounds to 2.0K, printed as 2K.
        assert_eq!(format_size(2007), "2K");
        // util-linux keeps the unit when rounding reaches 1024.
        assert_eq!(format_size((1 << 20) - 1), "1024K");
    }
}
