//! `exarch verify`: integrity checks, reported in terms of mailboxes, snapshots and items.

use crate::args::{Global, VerifyArgs};
use crate::output::bytes;
use anyhow::Result;
use exarch_archive::verify::{verify, verify_names, ReadData, Report};

fn parse_subset(s: &str) -> Option<ReadData> {
    let (n, m) = s.split_once('/')?;
    let (n, m): (u32, u32) = (n.trim().parse().ok()?, m.trim().parse().ok()?);
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
            (Some(s), _) => parse_subset(s).ok_or_else(|| {
                crate::usage(format!("--read-data-subset {s}: expected N/M with 1 <= N <= M, e.g. 1/5"))
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
    println!(
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
    );
    if !r.unindexed_packs.is_empty() {
        println!(
            "note: {} pack(s) not in any index (an index file was lost, or a backup was interrupted); prune will \
             not delete anything until `exarch repair index` has indexed them",
            r.unindexed_packs.len()
        );
    }
    if r.is_clean() {
        println!("no damage found");
        return;
    }
    println!("DAMAGE:");
    for p in &r.problems {
        println!("  {} {}: {}", p.kind, p.id, p.detail);
    }
    for s in &r.affected {
        let who = s.mailbox.as_deref().unwrap_or("(unknown mailbox)");
        let when = s.time.as_deref().unwrap_or("?");
        if s.manifest_damaged {
            println!(
                "mailbox {who}: snapshot {} ({when}) cannot be read at all; other snapshots are unaffected",
                &s.id[..8]
            );
            continue;
        }
        println!("mailbox {who}: snapshot {} ({when}): {} item(s) damaged", &s.id[..8], s.items.len());
        for it in &s.items {
            let copy = match &it.intact_in {
                Some(id) => format!("an intact version is in snapshot {}", &id[..8]),
                None => "no intact copy in any snapshot".to_string(),
            };
            println!("    {}  \"{}\": {copy}", it.path, it.subject);
        }
    }
}
