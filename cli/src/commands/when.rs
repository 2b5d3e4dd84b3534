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

/// `90s`, `45m`, `2h`, `1h30m`; at most a year.
pub(super) fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (num.is_empty() && total > 0 && total <= 366 * 86_400).then(|| std::time::Duration::from_secs(total))
}
