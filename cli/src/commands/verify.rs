//! `exarch verify`: integrity checks, reported in terms of mailboxes, snapshots and items.

use crate::args::{Global, VerifyArgs};
use crate::output::bytes;
use anyhow::Result;
use exarch_archive::verify::{verify, verify_names, ReadData, Report};

/// `N/M`, or `week/M` / `day/M`: the slice for this week or day (UTC, counted from 1970-01-01), so
/// that a verify scheduled weekly (daily) reads every pack over M weeks (days) with one setting.
fn parse_subset(s: &str, now_ms: i64) -> Option<ReadData> {
    let (n, m) = s.split_once('/')?;
    let m: u32 = m.trim().parse().ok()?;
    let days = now_ms.div_euclid(86_400_000);
    let n: u32 = match n.trim() {
        "week" if m >= 1 => (days.div_euclid(7).rem_euclid(i64::from(m)) + 1) as u32,
        "day" if m >= 1 => (days.rem_euclid(i64::from(m)) + 1) as u32,
        n => n.parse().ok()?,
    };
    (m >= 1 && (1..=m).contains(&n)).then_some(ReadData::Subset { n, m })
}

pub fn run(g: &Global, a: VerifyArgs) -> Result<()> {
    let report = if a.no_key {
        let storage = super::storage(g)?;
        if !storage.exists(exarch_archive::FileKind::Config, "config")? {
            return Err(exarch_archive::repository::missing_config(storage.as_ref()).into());
        }
        verify_names(storage.as_ref())?
    } else {
        let read = match (&a.read_data_subset, a.read_data) {
            (Some(s), _) => parse_subset(s, exarch_archive::time::now_ms()).ok_or_else(|| {
                crate::usage(format!(
                    "--read-data-subset {s}: expected N/M with 1 <= N <= M (e.g. 1/5), week/M or day/M"
                ))
            })?,
            (None, true) => ReadData::All,
            (None, false) => ReadData::None,
        };
        let repo = super::open(g)?;
        let _lock = super::read_lock(g, &repo, exarch_archive::lock::LockPurpose::Verify)?;
        verify(&repo, read)?
    };
    if g.json {
        super::print_json(&serde_json::json!({ "ok": report.is_clean(), "report": report }))?;
    } else {
        print_report(&report, a.no_key);
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(crate::Exit(
            crate::EXIT_DAMAGE,
            format!(
                "repository damaged: {} problem(s), {} snapshot(s) affected",
                report.problems.len(),
                report.affected.len()
            ),
        )
        .into())
    }
}

pub fn print_report(r: &Report, no_key: bool) {
    let c = &r.checked;
    crate::logging::out(&format!(
        "checked {} key slot(s), {} pack(s) ({}), {} index file(s), {} snapshot(s){}",
        c.key_slots,
        c.packs,
        bytes(c.pack_bytes),
        c.index_files,
        c.snapshots,
        if no_key {
            " by name only (no key)".to_string()
        } else {
            format!("; {} blob(s) read, {} item(s) hashed", c.blobs_read, c.items_hashed)
        }
    ));
    if !r.unindexed_packs.is_empty() {
        crate::logging::out(&format!(
            "note: {} pack(s) not in any index (an index file was lost, or a backup or repack was interrupted); \
             prune deletes nothing until `exarch repair index` has indexed them, unless each blob in them is \
             indexed in another pack",
            r.unindexed_packs.len()
        ));
    }
    if r.is_clean() {
        crate::logging::out("no damage found");
        return;
    }
    crate::logging::out("DAMAGE:");
    for p in &r.problems {
        crate::logging::out(&format!("  {} {}: {}", p.kind, p.id, p.detail));
    }
    for s in &r.affected {
        let who = s.mailbox.as_deref().unwrap_or("(unknown mailbox)");
        let when = s.time.as_deref().unwrap_or("?");
        if s.manifest_damaged {
            crate::logging::out(&format!(
                "mailbox {who}: snapshot {} ({when}) cannot be read at all; other snapshots are unaffected",
                &s.id[..8]
            ));
            continue;
        }
        crate::logging::out(&format!(
            "mailbox {who}: snapshot {} ({when}): {} item(s) damaged",
            &s.id[..8],
            s.items.len()
        ));
        for it in &s.items {
            let copy = match &it.intact_in {
                Some(id) => format!("an intact version is in snapshot {}", &id[..8]),
                None => "no intact copy in any snapshot".to_string(),
            };
            crate::logging::out(&format!("    {}  \"{}\": {copy}", it.path, it.subject));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_fixed_and_rotating() {
        let day = 86_400_000i64;
        assert_eq!(parse_subset("2/7", 0), Some(ReadData::Subset { n: 2, m: 7 }));
        assert_eq!(parse_subset("8/7", 0), None);
        assert_eq!(parse_subset("0/7", 0), None);
        assert_eq!(parse_subset("week/0", 0), None);
        // Seven consecutive weeks read seven different slices; days within a week the same one.
        let weeks: std::collections::BTreeSet<u32> = (0..7)
            .filter_map(|w| match parse_subset("week/7", 20_000 * day + w * 7 * day) {
                Some(ReadData::Subset { n, .. }) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(weeks.len(), 7);
        assert_eq!(parse_subset("week/7", 20_001 * day), parse_subset("week/7", 20_005 * day + 5));
        assert_eq!(parse_subset("day/3", 10 * day), Some(ReadData::Subset { n: 2, m: 3 }));
    }
}
