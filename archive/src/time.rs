//! Time formatting shared by messages and listings (RFC 3339, UTC).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn format_unix(secs: i64) -> String {
    format_unix_ms(secs.saturating_mul(1000))
}

pub fn format_unix_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// Parses RFC 3339 (`2026-11-23T10:00:00Z`, offsets allowed) into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let ms = super::parse_rfc3339_ms("2026-11-23T10:00:00+01:00").unwrap();
        assert_eq!(super::format_unix_ms(ms), "2026-11-23T09:00:00Z");
        assert!(super::parse_rfc3339_ms("yesterday").is_none());
    }
}
