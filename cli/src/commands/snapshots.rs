//! `exarch snapshots`: list snapshots, oldest first.

use crate::args::{Global, SnapshotsArgs};
use crate::output::bytes;
use anyhow::Result;
use exarch_archive::manifest::text;
use exarch_archive::time::format_unix_ms;
use serde_json::json;

pub fn run(g: &Global, a: SnapshotsArgs) -> Result<()> {
    let repo = super::open(g)?;
    let all = repo.snapshots()?;
    let shown: Vec<_> = all
        .iter()
        .filter(|s| match (&a.mailbox, &s.summary) {
            (Some(m), Ok(sum)) => text(&sum.mailbox) == m.as_str(),
            (Some(_), Err(_)) => true,
            (None, _) => true,
        })
        .collect();
    if g.json {
        let v: Vec<_> = shown
            .iter()
            .map(|s| match &s.summary {
                Ok(m) => json!({
                    "id": s.id.to_hex(),
                    "short_id": s.id.short(),
                    "mailbox": text(&m.mailbox),
                    "time": format_unix_ms(m.time_ms),
                    "run_id": hex::encode(m.run_id),
                    "parent": (m.parent.len() == 32).then(|| hex::encode(&m.parent)),
                    "items": m.items,
                    "bytes": m.bytes,
                    "skipped": m.skipped,
                    "source": text(&m.source),
                    "host": text(&m.host),
                }),
                Err(e) => json!({ "id": s.id.to_hex(), "short_id": s.id.short(), "damaged": e }),
            })
            .collect();
        return super::print_json(&v);
    }
    print_table(&shown);
    Ok(())
}

/// The human table of snapshots (also what `demo` shows).
pub fn print_table(shown: &[&exarch_archive::SnapshotInfo]) {
    println!("{:<8}  {:<20}  {:<32}  {:>8}  {:>10}  host", "ID", "Time", "Mailbox", "Items", "Size");
    for s in shown {
        match &s.summary {
            Ok(m) => println!(
                "{:<8}  {:<20}  {:<32}  {:>8}  {:>10}  {}",
                s.id.short(),
                exarch_archive::time::format_unix(m.time_ms.div_euclid(1000)),
                text(&m.mailbox),
                m.items,
                bytes(m.bytes),
                text(&m.host)
            ),
            Err(e) => println!("{:<8}  DAMAGED: {e}", s.id.short()),
        }
    }
    println!("{} snapshot(s)", shown.len());
}
