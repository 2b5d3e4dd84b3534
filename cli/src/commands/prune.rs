//! `exarch prune`: retention rules per mailbox, then garbage collection (two-phase deletion).

use crate::args::{Global, PruneArgs};
use crate::output::bytes;
use crate::usage;
use anyhow::Result;
use exarch_archive::lock::LockKind;
use exarch_archive::prune::{prune, PruneOptions};
use exarch_archive::retention::{Policy, Within};

/// The least grace a deleting prune accepts (release notes in README).
const MIN_GRACE_SECS: u64 = 3600;

pub fn run(g: &Global, a: PruneArgs) -> Result<()> {
    let within = match &a.keep_within {
        Some(s) => Some(s.parse::<Within>().map_err(|e| usage(format!("--keep-within: {e}")))?),
        None => None,
    };
    let grace = super::when::parse_grace(&a.grace).ok_or_else(|| {
        usage(format!("--grace {}: a duration such as 24h, 90m or 7d (m is minutes), at most ten years", a.grace))
    })?;
    // Marked packs are deleted by a later prune once the grace has passed; a backup that started
    // before the mark and is still running may need them, and locks are judged by their leases.
    let least = std::time::Duration::from_secs((3 * g.lock_lease).max(MIN_GRACE_SECS));
    if grace < least && !a.delete_now {
        return Err(usage(format!(
            "--grace {}: a prune that deletes waits at least {} (and three --lock-lease) before it deletes \
             what an earlier prune marked, so a backup that may still need those packs is never cut short; \
             to delete at once, take the repository to yourself with --delete-now",
            a.grace,
            humantime::format_duration(least)
        )));
    }
    let grace_ms = grace.as_millis().min(i64::MAX as u128) as i64;
    if !(0.0..=100.0).contains(&a.repack_threshold) {
        return Err(usage("--repack-threshold must be a percentage between 0 and 100"));
    }
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within,
    };
    let repo = super::open(g)?;
    let kind = if a.dry_run {
        LockKind::Shared
    } else if a.delete_now {
        LockKind::Exclusive
    } else {
        LockKind::Prune
    };
    let lock = super::write_lock(g, &repo, kind, exarch_archive::lock::LockPurpose::Prune)?;
    let opts = PruneOptions {
        policy,
        mailbox: a.mailbox.clone(),
        dry_run: a.dry_run,
        delete_now: a.delete_now,
        grace_ms,
        repack_threshold: a.repack_threshold / 100.0,
        own_lock: Some(lock.name().to_string()),
        allow_empty: a.allow_empty,
    };
    // A prune that stops part-way still says what it deleted, then fails with the cause.
    let (r, failed) = match prune(&repo, &opts) {
        Ok(r) => (r, None),
        Err(stopped) => (stopped.report, Some(stopped.error)),
    };
    let nothing_done = r.snapshots_removed.is_empty() && r.packs_marked == 0 && r.packs_deleted == 0;
    if g.json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(e) = &failed {
            v["error"] = serde_json::Value::String(e.to_string());
        }
        super::print_json(&v)?;
    } else if !g.quiet && (failed.is_none() || !nothing_done) {
        print_report(&r);
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn print_report(r: &exarch_archive::prune::PruneReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut mailboxes: Vec<&str> =
        r.snapshots_kept.iter().chain(&r.snapshots_removed).map(|s| s.mailbox.as_str()).collect();
    mailboxes.sort();
    mailboxes.dedup();
    for m in mailboxes {
        let kept = r.snapshots_kept.iter().filter(|s| s.mailbox == m).count();
        let gone: Vec<_> = r.snapshots_removed.iter().filter(|s| s.mailbox == m).collect();
        crate::logging::out(&format!("mailbox {m}: keep {kept}, {verb} {} snapshot(s)", gone.len()));
        for s in gone {
            crate::logging::out(&format!("  {verb} {} {}", &s.id[..8], s.time));
        }
    }
    if r.packs_redundant > 0 {
        crate::logging::out(&format!(
            "{} pack(s) in no index file hold only blobs stored in other packs (an interrupted repack's copies); {} \
             among the marked",
            r.packs_redundant,
            if r.dry_run { "they would be" } else { "they are" }
        ));
    }
    if r.temporaries_removed > 0 {
        crate::logging::out(&format!(
            "{verb} {} temporary file(s) ({}) left by interrupted writers",
            r.temporaries_removed,
            bytes(r.bytes_temporaries)
        ));
    }
    if r.temporaries_kept > 0 {
        crate::logging::out(&format!(
            "left alone: {} temporary file(s) another process may still be writing (a lock is held, or written \
             within the last hour)",
            r.temporaries_kept
        ));
    }
    if r.dry_run {
        crate::logging::out(&format!(
            "would mark {} pack(s) ({}) for deletion, {} of them after copying {} of live data out",
            r.packs_marked,
            bytes(r.bytes_marked),
            r.packs_repacked,
            bytes(r.bytes_repacked)
        ));
        return;
    }
    crate::logging::out(&format!(
        "packs: {} marked for deletion ({}), {} repacked ({} written), {} deleted ({} freed), {} rescued",
        r.packs_marked,
        bytes(r.bytes_marked),
        r.packs_repacked,
        bytes(r.bytes_repacked),
        r.packs_deleted,
        bytes(r.bytes_deleted),
        r.packs_rescued
    ));
    if r.packs_in_flight > 0 {
        crate::logging::out(&format!(
            "left alone: {} pack(s) not indexed yet (a backup is running)",
            r.packs_in_flight
        ));
    }
    for w in &r.marks_waiting {
        crate::logging::out(&format!("waiting: {w}"));
    }
}
