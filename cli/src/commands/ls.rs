//! `exarch ls SNAPSHOT`: the items of a snapshot, with their searchable properties.

use crate::args::{Global, LsArgs};
use anyhow::Result;
use exarch_archive::manifest::{text, NO_TIME};
use exarch_archive::time::format_unix_ms;
use serde_json::json;
use std::io::Write;

pub fn run(g: &Global, a: LsArgs) -> Result<()> {
    let repo = super::open(g)?;
    let id = repo.resolve_snapshot(&a.snapshot, a.mailbox.as_deref())?;
    let snap = repo.load_snapshot(&id)?;
    let m = snap.manifest();
    let folders: Vec<String> = (0..m.folders.len() as u32).map(|i| m.folder_path(i).join("/")).collect();
    let path_of = |folder: u32, name: &str| {
        let f = folders.get(folder as usize).map(String::as_str).unwrap_or("?");
        if f.is_empty() {
            name.to_string()
        } else {
            format!("{f}/{name}")
        }
    };
    let short_time = |ms: i64| {
        if ms == NO_TIME {
            String::new()
        } else {
            exarch_archive::time::format_unix(ms.div_euclid(1000))
        }
    };
    let time = |ms: i64| {
        if ms == NO_TIME {
            String::new()
        } else {
            format_unix_ms(ms)
        }
    };
    if g.json {
        let items: Vec<_> = m
            .items
            .iter()
            .map(|i| {
                json!({
                    "path": path_of(i.folder.to_native(), &text(&i.name)),
                    "folder": folders.get(i.folder.to_native() as usize),
                    "name": text(&i.name),
                    "size": i.size.to_native(),
                    "received": time(i.received_ms.to_native()),
                    "item_class": text(&i.item_class),
                    "subject": text(&i.subject),
                    "sender": text(&i.sender),
                    "source_id": text(&i.source_id),
                    "change_key": text(&i.change_key),
                    "blob_hash": hex::encode(i.blob_hash),
                    "chunks": i.chunks.len(),
                })
            })
            .collect();
        let skipped: Vec<_> = m
            .skipped
            .iter()
            .map(|s| json!({"folder": folders.get(s.folder.to_native() as usize), "source_id": text(&s.source_id), "error": text(&s.error)}))
            .collect();
        return super::print_json(
            &json!({"id": id.to_hex(), "mailbox": text(&snap.summary.mailbox), "items": items, "skipped": skipped}),
        );
    }
    let mut out = std::io::stdout().lock();
    for i in m.items.iter() {
        writeln!(
            out,
            "{:>10}  {:<20}  {:<16}  {}  {}",
            i.size.to_native(),
            short_time(i.received_ms.to_native()),
            text(&i.item_class),
            path_of(i.folder.to_native(), &text(&i.name)),
            text(&i.subject)
        )?;
    }
    for s in m.skipped.iter() {
        writeln!(
            out,
            "SKIPPED  {}  {}: {}",
            folders.get(s.folder.to_native() as usize).map(String::as_str).unwrap_or("?"),
            text(&s.source_id),
            text(&s.error)
        )?;
    }
    Ok(())
}
