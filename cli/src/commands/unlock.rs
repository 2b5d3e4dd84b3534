//! `exarch unlock`: removes locks left by processes that died (stale: their lease ran out, or
//! their process is gone on this host), and unreadable lock files. Live locks are kept and named;
//! `--remove-all` removes them too, for when the admin knows no exarch process is running.

use crate::args::{Global, UnlockArgs};
use anyhow::Result;
use exarch_archive::lock::remove_locks;
use serde_json::json;

pub fn run(g: &Global, a: UnlockArgs) -> Result<()> {
    let storage = super::storage(g)?;
    let host = exarch_archive::repository::host_name();
    let r = remove_locks(storage.as_ref(), &host, a.remove_all)?;
    if a.remove_all && r.removed.iter().any(|(_, i)| i.is_some()) && !g.json {
        crate::logging::warn(
            true,
            "warning: --remove-all removed live locks too; a backup or prune still running will stop when it sees its \
             lock gone",
        );
    }
    if g.json {
        let removed: Vec<_> = r.removed.iter().map(|(n, i)| json!({"name": n, "lock": i})).collect();
        let kept: Vec<_> = r.kept.iter().map(|(n, i)| json!({"name": n, "lock": i})).collect();
        return super::print_json(&json!({"removed": removed, "kept": kept}));
    }
    if !g.quiet {
        for (n, i) in &r.removed {
            match i {
                Some(i) => crate::logging::out(&format!("removed locks/{n}: {}", i.summary())),
                None => crate::logging::out(&format!("removed locks/{n}: unreadable")),
            }
        }
        for (n, i) in &r.kept {
            crate::logging::out(&format!("kept locks/{n}: {} (live; --remove-all removes it)", i.summary()));
        }
        crate::logging::out(&format!("{} lock(s) removed, {} live lock(s) kept", r.removed.len(), r.kept.len()));
    }
    Ok(())
}
