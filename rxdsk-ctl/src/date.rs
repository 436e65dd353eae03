//! Dates from seconds since the epoch, in UTC: for `inspect` and for the packages'
//! changelogs (whose date must be a given one, never the time of the build).

/// The day of the month, month and year of day `days` since 1970-01-01 (Howard Hinnant's
/// days-to-civil).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (day, month, yoe + era * 400 + i64::from(month <= 2))
}

/// Days since the epoch and `hh:mm:ss` of `secs` since the epoch.
fn split(secs: u64) -> (i64, String) {
    let rem = secs % 86_400;
    (
        (secs / 86_400) as i64,
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

/// `YYYY-MM-DD hh:mm:ss UTC` of nanoseconds since the epoch.
pub fn utc(ns: u64) -> String {
    let (days, time) = split(ns / 1_000_000_000);
    let (day, month, year) = civil(days);
    format!("{year:04}-{month:02}-{day:02} {time} UTC")
}

/// RFC 2822 (`Fri, 04 Dec 2026 12:44:38 +0000`, what Debian changelogs carry) of seconds
/// since the epoch.
pub fn rfc2822(secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, time) = split(secs);
    let (day, month, year) = civil(days);
    format!(
        "{}, {day:02} {} {year:04} {time} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_388_278_000_000_000), "2026-12-04 12:44:38 UTC");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00 UTC");
    }

    /// As `date -u -R -d @SECS` prints them.
    #[test]
    fn rfc2822_dates() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(1_796_388_278), "Fri, 04 Dec 2026 12:44:38 +0000");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc2822(951_782_400 + 86_399),
            "Tue, 29 Feb 2000 23:59:59 +0000"
        );
    }
}
