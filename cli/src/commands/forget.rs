//! `exarch forget`: remove named snapshots explicitly (a damaged one, or one that must go now).

use crate::args::{ForgetArgs, Global};
use anyhow::Result;
use exarch_archive::lock::LockKind;
use exarch_archive::repair::forget;

pub fn run(g: &Global, a: ForgetArgs) -> Result<()> {
    let repo = super::open(g)?;
    // A prune lock: no prune decides on a snapshot list that changes under it; backups go on.
    let _lock = if a.dry_run {
        None
    } else {
        Some(super::write_lock(g, &repo, LockKind::Prune, exarch_archive::lock::LockPurpose::Forget)?)
    };
    let mut ids = Vec::new();
    for spec in &a.snapshots {
        let id = repo.resolve_snapshot(spec, a.mailbox.as_deref())?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let removed = forget(&repo, &ids, a.dry_run)?;
    if g.json {
        return super::print_json(&serde_json::json!({ "dry_run": a.dry_run, "removed": removed }));
    }
    if !g.quiet {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        for r in &removed {
            crate::logging::out(&format!("{verb} snapshot {} {} {}", &r.id[..8], r.mailbox, r.time));
        }
        if !a.dry_run {
            crate::logging::out("their data is freed by the next `exarch prune`");
        }
    }
    Ok(())
}
