//! `exarch repair index|snapshots`: put damaged metadata right, so prune can prove what it deletes.

use crate::args::{Global, RepairCommand};
use anyhow::Result;
use exarch_archive::lock::LockKind;
use exarch_archive::repair::{damaged_snapshots, forget, repair_index};

pub fn run(g: &Global, c: RepairCommand) -> Result<()> {
    match c {
        RepairCommand::Index(a) => index(g, a.dry_run),
        RepairCommand::Snapshots(a) => snapshots(g, a.dry_run),
    }
}

fn index(g: &Global, dry_run: bool) -> Result<()> {
    let repo = super::open(g)?;
    // Nothing else may write index files or packs meanwhile.
    let _lock = super::write_lock(
        g,
        &repo,
        if dry_run { LockKind::Shared } else { LockKind::Exclusive },
        exarch_archive::lock::LockPurpose::Repair,
    )?;
    let r = repair_index(&repo, dry_run)?;
    if g.json {
        return super::print_json(&r);
    }
    if g.quiet {
        return Ok(());
    }
    let would = if dry_run { "would write" } else { "wrote" };
    crate::logging::out(&format!(
        "read the headers of {} pack(s) ({} not indexed before); {would} {} index file(s) with {} location(s)",
        r.packs_indexed, r.packs_added, r.index_files_written, r.entries,
    ));
    if !dry_run {
        crate::logging::out(&format!("replaced {} old index file(s)", r.index_files_removed));
    }
    for f in &r.index_files_damaged {
        crate::logging::out(&format!("old index file {} was damaged", &f[..f.len().min(16)]));
    }
    for (p, why, kept) in &r.packs_damaged {
        crate::logging::out(&format!(
            "pack {}: header damaged ({why}); {kept} location(s) kept from the old index",
            &p[..16]
        ));
    }
    if !r.packs_missing.is_empty() {
        crate::logging::out(&format!(
            "{} pack(s) the old index listed are missing; run `exarch verify` to see which items that affects",
            r.packs_missing.len()
        ));
    }
    Ok(())
}

fn snapshots(g: &Global, dry_run: bool) -> Result<()> {
    let repo = super::open(g)?;
    let _lock = if dry_run {
        None
    } else {
        Some(super::write_lock(g, &repo, LockKind::Prune, exarch_archive::lock::LockPurpose::Repair)?)
    };
    let damaged = damaged_snapshots(&repo)?;
    let ids: Vec<_> = damaged.iter().map(|(id, _)| *id).collect();
    let removed = forget(&repo, &ids, dry_run)?;
    if g.json {
        let v: Vec<_> =
            damaged.iter().map(|(id, why)| serde_json::json!({ "id": id.to_hex(), "error": why })).collect();
        return super::print_json(&serde_json::json!({ "dry_run": dry_run, "removed": v }));
    }
    if !g.quiet {
        if removed.is_empty() {
            crate::logging::out("every snapshot opens; nothing to remove");
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        for (id, why) in &damaged {
            crate::logging::out(&format!("{verb} snapshot {}: {why}", id.short()));
        }
    }
    Ok(())
}
