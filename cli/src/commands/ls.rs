//! `exarch ls SNAPSHOT`: the items of a snapshot, with their searchable properties.
//!
//! The manifest is read page by page (SPEC §10.4): the first items print after the head and one
//! page have opened, whatever the snapshot's size, and only one page is held at a time.

use crate::args::{Global, LsArgs};
use anyhow::Result;
use exarch_archive::manifest::{text, ArchivedItem, NO_TIME};
use exarch_archive::time::format_unix_ms;
use serde_json::json;
use std::io::Write;

pub fn run(g: &Global, a: LsArgs) -> Result<()> {
    let repo = super::open(g)?;
    let id = repo.resolve_snapshot(&a.snapshot, a.mailbox.as_deref())?;
    let mut reader = repo.page_reader(&id)?;
    let head = reader.head();
    let folders = head.folder_paths();
    let folder_of = |i: &ArchivedItem| folders.get(i.folder.to_native() as usize).map(String::as_str).unwrap_or("?");
    let skipped: Vec<(String, String, String)> = head
        .skipped
        .iter()
        .map(|s| {
            let f = folders.get(s.folder.to_native() as usize).map(String::as_str).unwrap_or("?");
            (f.to_string(), text(&s.source_id).into_owned(), text(&s.error).into_owned())
        })
        .collect();
    if g.json {
        let time = |ms: i64| if ms == NO_TIME { String::new() } else { format_unix_ms(ms) };
        let item_json = |i: &ArchivedItem| {
            let folder = folder_of(i);
            let name = text(&i.name);
            json!({
                "path": if folder.is_empty() { name.to_string() } else { format!("{folder}/{name}") },
                "folder": folder,
                "name": name,
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
        };
        // Streamed, one item at a time: a million items are never held as JSON values at once.
        let mailbox = text(&reader.summary.mailbox).into_owned();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        write!(out, "{{\"id\": {}, \"mailbox\": {}, \"items\": [", json!(id.to_hex()), json!(mailbox))?;
        let mut n = 0u64;
        let mut emit = |out: &mut dyn Write, i: &ArchivedItem| -> Result<()> {
            out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
            serde_json::to_writer(&mut *out, &item_json(i))?;
            n += 1;
            Ok(())
        };
        reader.for_each_item(|i| emit(&mut out, i))?;
        let skipped: Vec<_> =
            skipped.iter().map(|(f, id, e)| json!({"folder": f, "source_id": id, "error": e})).collect();
        write!(out, "\n], \"skipped\": {}", serde_json::to_string(&skipped)?)?;
        let sent = exarch_archive::storage::request_counts();
        if sent.total() > 0 {
            write!(out, ", \"storage_requests\": {}", serde_json::to_string(&sent)?)?;
        }
        writeln!(out, "}}")?;
        out.flush()?;
        return Ok(());
    }
    // Buffered: standard output is line-buffered, and a million items would be a million writes.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let line = |out: &mut dyn Write, i: &ArchivedItem| -> std::io::Result<()> {
        let ms = i.received_ms.to_native();
        let when = if ms == NO_TIME { String::new() } else { exarch_archive::time::format_unix(ms.div_euclid(1000)) };
        let folder = folder_of(i);
        writeln!(
            out,
            "{:>10}  {:<20}  {:<16}  {}{}{}  {}",
            i.size.to_native(),
            when,
            text(&i.item_class),
            folder,
            if folder.is_empty() { "" } else { "/" },
            text(&i.name),
            text(&i.subject)
        )
    };
    reader.for_each_item(|i| line(&mut out, i).map_err(anyhow::Error::from))?;
    for (folder, source_id, error) in &skipped {
        writeln!(out, "SKIPPED  {folder}  {source_id}: {error}")?;
    }
    out.flush()?;
    Ok(())
}
