//! Which snapshots a retention policy keeps, with the calendar meaning restic users know.
//!
//! Snapshots of one group (one mailbox) are walked newest first. `last` keeps the newest N;
//! `hourly`/`daily`/`weekly`/`monthly`/`yearly` keep the newest snapshot of each of the N most
//! recent hours/days/ISO weeks/months/years that have snapshots; `within` keeps everything newer
//! than the newest snapshot minus a duration. A snapshot is kept if any rule keeps it. Calendar
//! buckets are taken in UTC.

use crate::error::{Error, Result};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Within>,
}

impl Policy {
    /// The same policy with every count of 0 dropped: `--keep-last 0` is no rule, as in restic.
    pub fn normalized(&self) -> Policy {
        let n = |c: Option<u32>| c.filter(|&c| c > 0);
        Policy {
            last: n(self.last),
            hourly: n(self.hourly),
            daily: n(self.daily),
            weekly: n(self.weekly),
            monthly: n(self.monthly),
            yearly: n(self.yearly),
            within: self.within,
        }
    }

    /// True when no rule is given (counts of 0 are no rule): nothing is removed.
    pub fn is_empty(&self) -> bool {
        self.normalized() == Policy::default()
    }
}

/// The longest duration accepted (`keep-within`, grace periods): far beyond any retention.
pub const MAX_YEARS: i64 = 1000;

/// A calendar duration such as `1y6m`, `14d`, `2d12h` (restic's syntax).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    pub years: i32,
    pub months: i32,
    pub days: i64,
    pub hours: i64,
}

impl std::str::FromStr for Within {
    type Err = Error;
    fn from_str(s: &str) -> Result<Within> {
        let bad = || {
            Error::Usage(format!(
                "`{s}` is not a duration like 1y2m3d4h (years, months, days, hours; at most {MAX_YEARS} years in all)"
            ))
        };
        let mut w = Within::default();
        let mut num = String::new();
        let mut any = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num.parse().map_err(|_| bad())?;
            num.clear();
            any = true;
            if n > MAX_YEARS * 366 * 24 {
                return Err(bad());
            }
            match c {
                'y' => w.years = i32::try_from(n).map_err(|_| bad())?,
                'm' => w.months = i32::try_from(n).map_err(|_| bad())?,
                'd' => w.days = n,
                'h' => w.hours = n,
                _ => return Err(bad()),
            }
        }
        if !num.is_empty() || !any || w.approx_hours().is_none_or(|h| h > MAX_YEARS * 366 * 24) {
            return Err(bad());
        }
        Ok(w)
    }
}

impl Within {
    /// Hours, counting a year as 366 days and a month as 31 (an upper bound, for limits).
    pub fn approx_hours(&self) -> Option<i64> {
        let days = (self.years as i64).checked_mul(366)?.checked_add((self.months as i64).checked_mul(31)?)?;
        days.checked_add(self.days)?.checked_mul(24)?.checked_add(self.hours)
    }

    /// Milliseconds, counting a year as 365 days and a month as 30 (grace periods).
    pub fn approx_ms(&self) -> Option<i64> {
        let days = (self.years as i64).checked_mul(365)?.checked_add((self.months as i64).checked_mul(30)?)?;
        days.checked_add(self.days)?.checked_mul(24)?.checked_add(self.hours)?.checked_mul(3_600_000)
    }

    /// `t` minus this duration, months clamped to the month's length. A result before the
    /// earliest representable date is that date (everything is newer: nothing is removed).
    fn before(&self, t: OffsetDateTime) -> OffsetDateTime {
        let earliest = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT);
        let total_months =
            t.year() as i64 * 12 + (t.month() as i64 - 1) - (self.years as i64 * 12 + self.months as i64);
        let (y, m) = (total_months.div_euclid(12), (total_months.rem_euclid(12) + 1) as u8);
        let Ok(y) = i32::try_from(y) else { return earliest };
        let Ok(month) = time::Month::try_from(m) else { return earliest };
        let day = t.day().min(month.length(y));
        let Ok(date) = time::Date::from_calendar_date(y, month, day) else { return earliest };
        let shifted = t.replace_date(date);
        self.days
            .checked_mul(86_400)
            .and_then(|d| d.checked_add(self.hours.checked_mul(3600)?))
            .and_then(|secs| shifted.checked_sub(Duration::seconds(secs)))
            .unwrap_or(earliest)
    }
}

fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// For snapshot times (Unix ms) of one group, in any order, whether each is kept.
pub fn apply(policy: &Policy, times_ms: &[i64]) -> Vec<bool> {
    let policy = &policy.normalized();
    if policy.is_empty() {
        return vec![true; times_ms.len()];
    }
    let mut order: Vec<usize> = (0..times_ms.len()).collect();
    order.sort_by(|a, b| times_ms[*b].cmp(&times_ms[*a]).then(b.cmp(a)));
    type Bucket = fn(OffsetDateTime, usize) -> i64;
    let rules: [(Option<u32>, Bucket); 6] = [
        (policy.last, |_, nr| nr as i64),
        (policy.hourly, |t, _| {
            t.year() as i64 * 1_000_000 + t.month() as i64 * 10_000 + t.day() as i64 * 100 + t.hour() as i64
        }),
        (policy.daily, |t, _| t.year() as i64 * 10_000 + t.month() as i64 * 100 + t.day() as i64),
        (policy.weekly, |t, _| {
            let (y, w, _) = t.to_iso_week_date();
            y as i64 * 100 + w as i64
        }),
        (policy.monthly, |t, _| t.year() as i64 * 100 + t.month() as i64),
        (policy.yearly, |t, _| t.year() as i64),
    ];
    let mut left: Vec<Option<u32>> = rules.iter().map(|r| r.0).collect();
    let mut last: Vec<i64> = vec![i64::MIN; rules.len()];
    let newest = order.first().map(|&i| utc(times_ms[i]));
    let mut keep = vec![false; times_ms.len()];
    for (nr, &i) in order.iter().enumerate() {
        let t = utc(times_ms[i]);
        for (r, (_, bucket)) in rules.iter().enumerate() {
            if let Some(n) = left[r] {
                if n == 0 {
                    continue;
                }
                let b = bucket(t, nr);
                if b != last[r] {
                    last[r] = b;
                    left[r] = Some(n - 1);
                    keep[i] = true;
                }
            }
        }
        if let (Some(w), Some(newest)) = (policy.within, newest) {
            if t > w.before(newest) {
                keep[i] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-01-01T12:00:00Z, a Thursday.
    const START: i64 = 1_767_268_800_000;

    fn kept(policy: &Policy, times: &[i64]) -> Vec<usize> {
        apply(policy, times).iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect()
    }

    #[test]
    fn forty_dailies_keep_daily_7_weekly_4() {
        // one snapshot a day for 40 days: days 0..=39, day 39 newest (2026-02-09, a Monday)
        let times: Vec<i64> = (0..40).map(|d| START + d * DAY).collect();
        let p = Policy { daily: Some(7), weekly: Some(4), ..Policy::default() };
        // daily: days 33..=39. weekly (newest of each ISO week, newest first): week of day 39
        // (Mon 2026-02-09) -> day 39; previous week Sun 2026-02-08 -> day 38; then day 31, day 24.
        assert_eq!(kept(&p, &times), vec![24, 31, 33, 34, 35, 36, 37, 38, 39]);
    }

    #[test]
    fn last_within_and_empty() {
        let times: Vec<i64> = (0..10).map(|d| START + d * DAY).collect();
        assert_eq!(kept(&Policy { last: Some(3), ..Policy::default() }, &times), vec![7, 8, 9]);
        let w: Within = "2d".parse().unwrap();
        assert_eq!(kept(&Policy { within: Some(w), ..Policy::default() }, &times), vec![8, 9]);
        assert_eq!(kept(&Policy::default(), &times).len(), 10);
        // a count of 0 is no rule (restic): everything stays
        assert_eq!(kept(&Policy { last: Some(0), ..Policy::default() }, &times).len(), 10);
        assert_eq!(kept(&Policy { last: Some(0), daily: Some(1), ..Policy::default() }, &times), vec![9]);
        // input order does not matter
        let mut rev = times.clone();
        rev.reverse();
        assert_eq!(kept(&Policy { last: Some(1), ..Policy::default() }, &rev), vec![0]);
    }

    #[test]
    fn monthly_yearly_and_several_per_day() {
        let times = vec![START, START + 3_600_000, START + 40 * DAY, START + 400 * DAY];
        assert_eq!(kept(&Policy { daily: Some(10), ..Policy::default() }, &times), vec![1, 2, 3]);
        assert_eq!(kept(&Policy { monthly: Some(2), ..Policy::default() }, &times), vec![2, 3]);
        assert_eq!(kept(&Policy { yearly: Some(5), ..Policy::default() }, &times), vec![2, 3]);
    }

    #[test]
    fn durations_parse_and_subtract_calendar_months() {
        let w: Within = "1y2m3d4h".parse().unwrap();
        assert_eq!(w, Within { years: 1, months: 2, days: 3, hours: 4 });
        assert!("3x".parse::<Within>().is_err());
        assert!("12".parse::<Within>().is_err());
        // absurd durations are refused, not wrapped or panicking
        for bad in ["99999999999d", "20000y", "99999999999999999999h", "1000y1d"] {
            assert!(bad.parse::<Within>().is_err(), "{bad}");
        }
        let long: Within = "999y".parse().unwrap();
        assert!(long.before(utc(START)) < utc(0), "a long window reaches before 1970");
        let max = Within { years: 0, months: 0, days: 0, hours: i64::MAX };
        let _ = max.before(utc(START)); // saturates instead of overflowing
        let t = utc(START); // 2026-01-01T12:00Z
        let one_month: Within = "1m".parse().unwrap();
        assert_eq!(one_month.before(t).date(), time::macros::date!(2025 - 12 - 01));
        let mar31 = t.replace_date(time::macros::date!(2026 - 03 - 31));
        assert_eq!(one_month.before(mar31).date(), time::macros::date!(2026 - 02 - 28));
    }
}
