//! Times as the command line gives them: snapshot times, date filters and durations.

use anyhow::Result;
use exarch_archive::time::{now_ms, parse_rfc3339_ms};

/// `--time` as Unix ms, or now.
pub(super) fn snapshot_time(t: Option<&str>) -> Result<i64> {
    match t {
        Some(t) => parse_rfc3339_ms(t)
            .ok_or_else(|| crate::usage(format!("--time {t}: not an RFC 3339 time such as 2026-11-23T10:00:00Z"))),
        None => Ok(now_ms()),
    }
}

/// `2026-11-23T10:00:00Z` (any RFC 3339) or `2026-11-23` (midnight UTC; with `end`, the next one).
pub(super) fn parse_date(s: &str, end: bool) -> Option<i64> {
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Some(ms);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s.trim(), &fmt).ok()?;
    let ms = d.midnight().assume_utc().unix_timestamp() * 1000;
    Some(if end { ms + 86_400_000 } else { ms })
}

/// A duration in the one grammar exarch's flags use (humantime's): `90s`, `45m` (minutes),
/// `2h`, `1h30m`, `14d`, `2w`; more than zero and at most 366 days.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let d = humantime::parse_duration(s.trim()).ok()?;
    (!d.is_zero() && d <= std::time::Duration::from_secs(366 * 86_400)).then_some(d)
}

/// `--grace`: like `parse_duration`, and zero is allowed (the minimum is checked by prune).
pub(super) fn parse_grace(s: &str) -> Option<std::time::Duration> {
    let d = humantime::parse_duration(s.trim()).ok()?;
    (d <= std::time::Duration::from_secs(3660 * 86_400)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_grammar_for_durations() {
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)), "m is minutes");
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90d"), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(6 * 3600)));
        for bad in ["", "0s", "30", "x", "9999999999999d", "400d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_grace("0h"), Some(Duration::ZERO));
        assert_eq!(parse_grace("200000000000000d"), None);
    }
}
